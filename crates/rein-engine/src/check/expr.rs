//! Type checking of conditions against the contracts, producing typed IR.
//!
//! Every error is pushed as a diagnostic and checking continues with
//! [`Type::Error`], which is compatible with everything, so one mistake is
//! reported once and the rest of the expression is still checked.

mod session;

pub(crate) use session::session_action;

use crate::ast::{BinaryOp, Expr, ExprKind, Name, Phase, UnaryOp};
use crate::check::contracts::{compile_glob, compile_regex};
use crate::diagnostics::{did_you_mean, Diagnostic};
use crate::eval::{parse_cidr, parse_ip, parse_timestamp};
use crate::globs::GlobAutomaton;
use crate::ir::{ArithOp, Builtin, CmpOp, Lazy, MacroKind, Node, NodeKind, Root, Step};
use crate::source::{SourceFile, Span};
use crate::types::{Constraints, ObjectType, Type};
use crate::value::Value;
use jiff::SignedDuration;
use rustc_hash::FxHashSet;
use std::sync::Arc;

/// The variables visible to one rule checked for one action.
pub(crate) struct Scope<'a> {
    pub action: &'a str,
    pub phase: Phase,
    pub input: &'a Arc<ObjectType>,
    pub output: Option<&'a Arc<ObjectType>>,
    pub actor: &'a Arc<ObjectType>,
    pub snapshot: &'a Arc<ObjectType>,
    /// The type of the action's `tool:` facts, if it declares any.
    pub tool: Option<&'a Arc<ObjectType>>,
    /// The action declares `tool:` facts that were refused (reported
    /// already): reading them is not a second error.
    pub tool_refused: bool,
    /// Every action of the policy, by id, for the session functions.
    pub actions: &'a [SessionAction],
    /// The longest window a session function may use.
    pub max_window: SignedDuration,
}

/// What the session functions know of one action of the policy.
pub(crate) struct SessionAction {
    pub name: String,
    pub input: Arc<ObjectType>,
    pub output: Option<Arc<ObjectType>>,
    /// The type of one of its earlier calls (`session.calls`): `input`,
    /// `output` (optional, if it has an output contract), `effect`,
    /// `time`, with sensitive fields typed as hashes.
    pub call: Arc<ObjectType>,
}

/// What a rule's expressions read of the session, gathered while checking.
#[derive(Default)]
pub(crate) struct SessionUse {
    /// Some session fact (id, labels, count, sum, calls).
    pub reads: bool,
    /// `session.labels` in particular.
    pub labels: bool,
    /// Actions whose calls it reads (count, sum, calls): they are recorded.
    pub recorded: Vec<u32>,
}

pub(crate) struct ExprChecker<'a> {
    pub file: &'a SourceFile,
    pub diags: &'a mut Vec<Diagnostic>,
    pub scope: Scope<'a>,
    locals: Vec<(String, Type, u32)>,
    /// Beside `locals`, the enum values a loop variable may take (an
    /// element of a list of enums), so that `l == "typo"` is caught as on
    /// the field itself.
    local_enums: Vec<Option<EnumShape>>,
    next_local: u32,
    /// Paths proven present by an enclosing `has(...)`.
    guards: Vec<Vec<String>>,
    /// What the checked expressions read of the session.
    pub session: SessionUse,
}

const ROOT_NAMES: [&str; 9] = [
    "input", "output", "error", "actor", "snapshot", "action", "now", "session", "tool",
];

const SESSION_HELP: &str = "read the session through `session.id`, `session.labels`, \
     `session.count(\"<action or glob>\", duration(\"1h\"))`, \
     `session.sum(\"<action>\", \"input.<field>\", duration(\"1h\"))` or \
     `session.calls(\"<action>\", duration(\"1h\"))`";

impl<'a> ExprChecker<'a> {
    pub fn new(file: &'a SourceFile, diags: &'a mut Vec<Diagnostic>, scope: Scope<'a>) -> Self {
        ExprChecker {
            file,
            diags,
            scope,
            locals: Vec::new(),
            local_enums: Vec::new(),
            next_local: 0,
            guards: Vec::new(),
            session: SessionUse::default(),
        }
    }

    /// Checks a rule's `when`, which must be boolean.
    pub fn condition(&mut self, e: &Expr) -> Node {
        let node = self.check(e);
        if !matches!(node.ty, Type::Bool | Type::Error) {
            self.error(
                e.span,
                format!("a condition must be a boolean, but this is {}", node.ty),
            )
            .help = Some("compare it with something, e.g. `input.amount > 100`".into());
        }
        node
    }

    fn error(&mut self, span: Span, message: impl Into<String>) -> &mut Diagnostic {
        self.diags.push(Diagnostic::error(self.file, span, message));
        let last = self.diags.len() - 1;
        &mut self.diags[last]
    }

    fn err_node(&mut self, span: Span, message: impl Into<String>) -> Node {
        self.error(span, message);
        node(NodeKind::Const(Value::Null), span, Type::Error)
    }

    fn check(&mut self, e: &Expr) -> Node {
        let span = e.span;
        match &e.kind {
            ExprKind::Null => node(NodeKind::Const(Value::Null), span, Type::Null),
            ExprKind::Bool(b) => node(NodeKind::Const(Value::Bool(*b)), span, Type::Bool),
            ExprKind::Int(i) => node(NodeKind::Const(Value::Int(*i)), span, Type::Int),
            ExprKind::Float(f) => node(NodeKind::Const(Value::Float(*f)), span, Type::Number),
            ExprKind::String(s) => node(NodeKind::Const(Value::Str(s.into())), span, Type::String),
            ExprKind::Ident(name) => self.ident(name, span),
            ExprKind::Select { operand, field } => self.select(operand, field, span),
            ExprKind::Index { operand, index } => self.index(operand, index, span),
            ExprKind::Call { target, function, args } => self.call(target.as_deref(), function, args, span),
            ExprKind::List(items) => self.list(items, span),
            ExprKind::Map(entries) => self.map(entries, span),
            ExprKind::Unary { op, operand } => self.unary(*op, operand, span),
            ExprKind::Binary { op, lhs, rhs } => self.binary(*op, lhs, rhs, span),
            ExprKind::Conditional { cond, then, otherwise } => {
                let c = self.expect_bool(cond, "the condition of `? :`");
                let mark = self.guards.len();
                self.facts(cond, true);
                let t = self.check(then);
                self.guards.truncate(mark);
                self.facts(cond, false);
                let o = self.check(otherwise);
                self.guards.truncate(mark);
                let ty = if t.ty.accepts(&o.ty) {
                    t.ty.clone()
                } else if o.ty.accepts(&t.ty) {
                    o.ty.clone()
                } else {
                    self.error(
                        span,
                        format!("the branches of `? :` have different types: {} and {}", t.ty, o.ty),
                    );
                    Type::Error
                };
                node(
                    NodeKind::Cond {
                        cond: Box::new(c),
                        then: Box::new(t),
                        otherwise: Box::new(o),
                    },
                    span,
                    ty,
                )
            }
        }
    }

    fn ident(&mut self, name: &str, span: Span) -> Node {
        if let Some((_, ty, id)) = self.locals.iter().rev().find(|(n, _, _)| n == name) {
            return node(NodeKind::Local(*id), span, ty.clone());
        }
        let path = |root| NodeKind::Path {
            root,
            path: Box::new([]),
        };
        match name {
            "input" => node(path(Root::Input), span, Type::Object(self.scope.input.clone())),
            "actor" => node(path(Root::Actor), span, Type::Object(self.scope.actor.clone())),
            "snapshot" => node(path(Root::Snapshot), span, Type::Object(self.scope.snapshot.clone())),
            "action" => node(NodeKind::ActionName, span, Type::String),
            "now" => node(NodeKind::Now, span, Type::Timestamp),
            "tool" => match self.scope.tool {
                Some(t) => node(path(Root::Tool), span, Type::Object(t.clone())),
                None if self.scope.tool_refused => node(NodeKind::Const(Value::Null), span, Type::Error),
                None => {
                    let action = self.scope.action.to_string();
                    let n = self.err_node(span, format!("action `{action}` declares no `tool` facts"));
                    if let Some(d) = self.diags.last_mut() {
                        d.help = Some(format!(
                            "add `tool:` (a mapping of constants) to the contract of `{action}`, or target only actions that declare it"
                        ));
                    }
                    n
                }
            },
            "session" => {
                let n = self.err_node(span, "`session` is not a value of its own");
                if let Some(d) = self.diags.last_mut() {
                    d.help = Some(SESSION_HELP.into());
                }
                n
            }
            "error" => {
                if self.scope.phase == Phase::Before {
                    let n = self.err_node(span, "`error` is only available in rules with `phase: after`");
                    if let Some(d) = self.diags.last_mut() {
                        d.help = Some("add `phase: after` to check the error an action reported".into());
                    }
                    return n;
                }
                node(NodeKind::ErrorText, span, Type::String)
            }
            "output" => {
                if self.scope.phase == Phase::Before {
                    let n = self.err_node(span, "`output` is only available in rules with `phase: after`");
                    if let Some(d) = self.diags.last_mut() {
                        d.help = Some("add `phase: after` to check the action's result".into());
                    }
                    return n;
                }
                match self.scope.output {
                    Some(o) => node(path(Root::Output), span, Type::Object(o.clone())),
                    None => {
                        let action = self.scope.action.to_string();
                        let n = self.err_node(
                            span,
                            format!("action `{action}` declares no output contract, so rules cannot read `output`"),
                        );
                        if let Some(d) = self.diags.last_mut() {
                            d.help = Some(format!("add `output:` fields to the contract of `{action}`"));
                        }
                        n
                    }
                }
            }
            _ => {
                let locals: Vec<String> = self.locals.iter().map(|(n, _, _)| n.clone()).collect();
                let candidates = ROOT_NAMES.iter().copied().chain(locals.iter().map(String::as_str));
                let help = match did_you_mean(name, candidates) {
                    Some(s) => format!("did you mean `{s}`?"),
                    None => {
                        "conditions can read `input`, `output` and `error` (phase after), `actor`, `snapshot`, `action`, `now` and `tool`"
                            .into()
                    }
                };
                let n = self.err_node(span, format!("unknown variable `{name}`"));
                if let Some(d) = self.diags.last_mut() {
                    d.help = Some(help);
                }
                n
            }
        }
    }

    /// The guard key of a static path (`input.customer.tier`), with
    /// comprehension variables named by their slot.
    fn path_key(&self, e: &Expr) -> Option<Vec<String>> {
        match &e.kind {
            ExprKind::Ident(name) => Some(vec![match self.locals.iter().rev().find(|(n, _, _)| n == name) {
                Some((_, _, id)) => format!("${id}"),
                None => name.clone(),
            }]),
            ExprKind::Select { operand, field } => {
                let mut k = self.path_key(operand)?;
                k.push(field.text.clone());
                Some(k)
            }
            // A literal index names the same element each time it is read,
            // so `has(l[0].f)` guards `l[0].f` (and the help that suggests
            // that guard is true). `[` cannot start a field name.
            ExprKind::Index { operand, index } => {
                let step = match &index.kind {
                    ExprKind::Int(i) => format!("[{i}]"),
                    ExprKind::String(s) => format!("[{s:?}]"),
                    _ => return None,
                };
                let mut k = self.path_key(operand)?;
                k.push(step);
                Some(k)
            }
            _ => None,
        }
    }

    /// True when `e` is the bare name `session` (not a loop variable).
    fn is_session(&self, e: &Expr) -> bool {
        matches!(&e.kind, ExprKind::Ident(n) if n == "session" && !self.locals.iter().any(|(x, _, _)| x == n))
    }

    fn select(&mut self, operand: &Expr, field: &Name, span: Span) -> Node {
        if self.is_session(operand) {
            return self.session_field(field, span);
        }
        let base = self.check(operand);
        match &base.ty {
            Type::Object(obj) => {
                let Some((idx, def)) = obj.field(&field.text) else {
                    let obj = obj.clone();
                    return self.unknown_field(&obj, operand, field);
                };
                if def.optional {
                    let key = self.path_key(&Expr {
                        kind: ExprKind::Select {
                            operand: Box::new(operand.clone()),
                            field: field.clone(),
                        },
                        span,
                    });
                    let guarded = key.as_ref().is_some_and(|k| self.guards.contains(k));
                    if !guarded {
                        let shown = describe_path(operand, field);
                        self.error(span, format!("`{shown}` is optional and may be absent here"))
                            .help = Some(format!("guard the read: `has({shown}) && ...`"));
                    }
                }
                let ty = def.ty.clone();
                let idx = u32::try_from(idx).unwrap_or(u32::MAX);
                let kind = match base.kind {
                    NodeKind::Path { root, path } => {
                        let mut p = path.into_vec();
                        p.push(idx);
                        NodeKind::Path {
                            root,
                            path: p.into_boxed_slice(),
                        }
                    }
                    other => NodeKind::Select {
                        operand: Box::new(Node {
                            kind: other,
                            span: base.span,
                            ty: base.ty.clone(),
                        }),
                        index: idx,
                    },
                };
                node(kind, span, ty)
            }
            Type::Map(elem) => {
                let ty = (**elem).clone();
                node(
                    NodeKind::MapGet {
                        operand: Box::new(base),
                        key: field.text.clone(),
                    },
                    span,
                    ty,
                )
            }
            Type::Url => {
                let (func, ty) = match field.text.as_str() {
                    "host" => (Builtin::UrlHost, Type::String),
                    "scheme" => (Builtin::UrlScheme, Type::String),
                    "port" => (Builtin::UrlPort, Type::Int),
                    "path" => (Builtin::UrlPath, Type::String),
                    "query" => (Builtin::UrlQuery, Type::String),
                    other => {
                        let help = did_you_mean(other, ["host", "scheme", "port", "path", "query"]).map_or(
                            "a url has `host`, `scheme`, `port`, `path` and `query`".to_string(),
                            |s| format!("did you mean `{s}`?"),
                        );
                        self.error(field.span, format!("a url has no part `{other}`")).help = Some(help);
                        return node(NodeKind::Const(Value::Null), span, Type::Error);
                    }
                };
                node(
                    NodeKind::Call {
                        func,
                        args: Box::new([base]),
                    },
                    span,
                    ty,
                )
            }
            Type::Error | Type::Dyn => node(NodeKind::Const(Value::Null), span, Type::Error),
            other => {
                let msg = format!("{other} has no fields, so `.{}` cannot be read", field.text);
                self.err_node(field.span, msg)
            }
        }
    }

    fn unknown_field(&mut self, obj: &ObjectType, operand: &Expr, field: &Name) -> Node {
        let owner = describe_owner(operand, obj, self.scope.action);
        let names = obj.fields.iter().map(|f| f.name.as_str());
        let help = match did_you_mean(&field.text, names) {
            Some(s) => format!("did you mean `{s}`?"),
            None if obj.fields.is_empty() => format!("{owner} declares no fields"),
            None => format!(
                "{owner} has: {}",
                obj.fields
                    .iter()
                    .map(|f| format!("`{}`", f.name))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        };
        let n = self.err_node(field.span, format!("{owner} has no field `{}`", field.text));
        if let Some(d) = self.diags.last_mut() {
            d.help = Some(help);
        }
        n
    }

    fn index(&mut self, operand: &Expr, index: &Expr, span: Span) -> Node {
        let base = self.check(operand);
        let idx = self.check(index);
        let ty = match (&base.ty, &idx.ty) {
            (Type::List(elem), Type::Int | Type::Error) => (**elem).clone(),
            (Type::Map(elem), Type::String | Type::Error) => (**elem).clone(),
            (Type::Error | Type::Dyn, _) => Type::Error,
            (Type::List(_), other) => {
                self.error(index.span, format!("a list index must be an int, not {other}"));
                Type::Error
            }
            (Type::Map(_), other) => {
                self.error(index.span, format!("a map key must be a string, not {other}"));
                Type::Error
            }
            (other, _) => {
                self.error(operand.span, format!("{other} cannot be indexed with `[...]`"));
                Type::Error
            }
        };
        node(
            NodeKind::Index {
                operand: Box::new(base),
                index: Box::new(idx),
            },
            span,
            ty,
        )
    }

    fn list(&mut self, items: &[Expr], span: Span) -> Node {
        let mut nodes = Vec::with_capacity(items.len());
        let mut elem = Type::Dyn;
        for item in items {
            let n = self.check(item);
            if matches!(elem, Type::Dyn) {
                elem = n.ty.clone();
            } else if elem.accepts(&n.ty) {
            } else if n.ty.accepts(&elem) {
                elem = n.ty.clone();
            } else {
                self.error(
                    item.span,
                    format!(
                        "list elements must share one type: this is {}, earlier ones are {elem}",
                        n.ty
                    ),
                );
            }
            nodes.push(n);
        }
        node(
            NodeKind::List(nodes.into_boxed_slice()),
            span,
            Type::List(Box::new(elem)),
        )
    }

    fn map(&mut self, entries: &[(Expr, Expr)], span: Span) -> Node {
        let mut out = Vec::with_capacity(entries.len());
        let mut elem = Type::Dyn;
        for (k, v) in entries {
            let kn = self.check(k);
            if !matches!(kn.ty, Type::String | Type::Error) {
                self.error(k.span, format!("map keys must be strings, not {}", kn.ty));
            }
            let vn = self.check(v);
            if matches!(elem, Type::Dyn) {
                elem = vn.ty.clone();
            } else if !elem.accepts(&vn.ty) {
                self.error(
                    v.span,
                    format!(
                        "map values must share one type: this is {}, earlier ones are {elem}",
                        vn.ty
                    ),
                );
            }
            out.push((kn, vn));
        }
        node(
            NodeKind::MapLit(out.into_boxed_slice()),
            span,
            Type::Map(Box::new(elem)),
        )
    }

    fn unary(&mut self, op: UnaryOp, operand: &Expr, span: Span) -> Node {
        match op {
            UnaryOp::Not => {
                let n = self.expect_bool(operand, "`!`");
                node(NodeKind::Not(Box::new(n)), span, Type::Bool)
            }
            UnaryOp::Neg => {
                let n = self.check(operand);
                if !(n.ty.is_numeric() || matches!(n.ty, Type::Duration)) {
                    self.error(span, format!("`-` needs a number or a duration, not {}", n.ty));
                }
                let ty = n.ty.clone();
                node(NodeKind::Neg(Box::new(n)), span, ty)
            }
        }
    }

    fn expect_bool(&mut self, e: &Expr, what: impl std::fmt::Display) -> Node {
        let n = self.check(e);
        if !matches!(n.ty, Type::Bool | Type::Error) {
            self.error(e.span, format!("{what} needs a boolean, not {}", n.ty));
        }
        n
    }

    fn binary(&mut self, op: BinaryOp, lhs: &Expr, rhs: &Expr, span: Span) -> Node {
        match op {
            BinaryOp::And | BinaryOp::Or => {
                let l = self.expect_bool(lhs, format_args!("`{}`", op.symbol()));
                let mark = self.guards.len();
                // `has(x) && x.y` and `!has(x) || x.y` are guarded reads.
                self.facts(lhs, op == BinaryOp::And);
                let r = self.expect_bool(rhs, format_args!("`{}`", op.symbol()));
                self.guards.truncate(mark);
                let kind = if op == BinaryOp::And {
                    NodeKind::And(Box::new(l), Box::new(r))
                } else {
                    NodeKind::Or(Box::new(l), Box::new(r))
                };
                node(kind, span, Type::Bool)
            }
            BinaryOp::Eq | BinaryOp::Ne => {
                let l = self.check(lhs);
                let r = self.check(rhs);
                if matches!(l.ty, Type::Hashed(_)) || matches!(r.ty, Type::Hashed(_)) {
                    return self.hashed_cmp(op == BinaryOp::Ne, l, r, (lhs, rhs), span);
                }
                if !l.ty.comparable_with(&r.ty) {
                    self.error(
                        span,
                        format!("cannot compare {} with {} using `{}`", l.ty, r.ty, op.symbol()),
                    );
                }
                self.check_enum_literal(lhs, &l, &r);
                self.check_enum_literal(rhs, &r, &l);
                let op = if op == BinaryOp::Eq { CmpOp::Eq } else { CmpOp::Ne };
                node(
                    NodeKind::Cmp {
                        op,
                        lhs: Box::new(l),
                        rhs: Box::new(r),
                    },
                    span,
                    Type::Bool,
                )
            }
            BinaryOp::Lt | BinaryOp::Le | BinaryOp::Gt | BinaryOp::Ge => {
                let l = self.check(lhs);
                let r = self.check(rhs);
                let ok = (l.ty.is_numeric() && r.ty.is_numeric())
                    || matches!(
                        (&l.ty, &r.ty),
                        (Type::String, Type::String)
                            | (Type::Timestamp, Type::Timestamp)
                            | (Type::Duration, Type::Duration)
                            | (Type::Bool, Type::Bool)
                            | (Type::Error, _)
                            | (_, Type::Error)
                    );
                if !ok {
                    let d = self.error(
                        span,
                        format!("cannot order {} and {} with `{}`", l.ty, r.ty, op.symbol()),
                    );
                    if matches!(
                        (&l.ty, &r.ty),
                        (Type::Timestamp, Type::String) | (Type::String, Type::Timestamp)
                    ) {
                        d.help = Some("turn the text into a timestamp: `timestamp(\"2026-01-01T00:00:00Z\")`".into());
                    } else if matches!(
                        (&l.ty, &r.ty),
                        (Type::Duration, Type::String) | (Type::String, Type::Duration)
                    ) {
                        d.help = Some("turn the text into a duration: `duration(\"1h\")`".into());
                    }
                }
                let op = match op {
                    BinaryOp::Lt => CmpOp::Lt,
                    BinaryOp::Le => CmpOp::Le,
                    BinaryOp::Gt => CmpOp::Gt,
                    _ => CmpOp::Ge,
                };
                node(
                    NodeKind::Cmp {
                        op,
                        lhs: Box::new(l),
                        rhs: Box::new(r),
                    },
                    span,
                    Type::Bool,
                )
            }
            BinaryOp::In => {
                let l = self.check(lhs);
                let r = self.check(rhs);
                // `"x" in session.labels` asks the state for one label
                // instead of copying them all.
                if let (Type::String, NodeKind::SessionLabels) = (&l.ty, &r.kind) {
                    return node(NodeKind::SessionHasLabel { label: Box::new(l) }, span, Type::Bool);
                }
                match &r.ty {
                    Type::List(elem) => {
                        if !l.ty.comparable_with(elem) {
                            self.error(span, format!("{} can never be in a list<{elem}>", l.ty));
                        }
                    }
                    Type::Map(_) => {
                        if !matches!(l.ty, Type::String | Type::Error) {
                            self.error(
                                lhs.span,
                                format!("map keys are strings, so {} can never be a key", l.ty),
                            );
                        }
                    }
                    Type::Error => {}
                    other => {
                        self.error(
                            rhs.span,
                            format!("`in` needs a list or a map on its right, not {other}"),
                        );
                    }
                }
                // `"x" in f` where `f` is a list of enums: `x` must be one.
                if let (NodeKind::Const(Value::Str(lit)), Type::List(_)) = (&l.kind, &r.ty) {
                    if let Some(EnumShape {
                        path,
                        values: Some(values),
                        ..
                    }) = self.enum_shape(rhs).and_then(|s| s.items.map(|b| *b))
                    {
                        let literal = std::iter::once(lit.to_string()).collect();
                        self.report_enum_literals(lhs.span, &path, &values, &literal);
                    }
                }
                if let (Type::String, NodeKind::List(items)) = (&l.ty, &r.kind) {
                    let consts: Option<FxHashSet<String>> = items
                        .iter()
                        .map(|i| match &i.kind {
                            NodeKind::Const(Value::Str(s)) => Some(s.to_string()),
                            _ => None,
                        })
                        .collect();
                    if let Some(set) = consts {
                        self.check_enum_set(lhs, &l, &set);
                        return node(NodeKind::InStrings { elem: Box::new(l), set }, span, Type::Bool);
                    }
                }
                node(
                    NodeKind::In {
                        elem: Box::new(l),
                        coll: Box::new(r),
                    },
                    span,
                    Type::Bool,
                )
            }
            BinaryOp::Add | BinaryOp::Sub | BinaryOp::Mul | BinaryOp::Div | BinaryOp::Rem => {
                let l = self.check(lhs);
                let r = self.check(rhs);
                let ty = arith_type(op, &l.ty, &r.ty);
                let ty = match ty {
                    Some(t) => t,
                    None => {
                        self.error(
                            span,
                            format!("`{}` does not apply to {} and {}", op.symbol(), l.ty, r.ty),
                        );
                        Type::Error
                    }
                };
                let op = match op {
                    BinaryOp::Add => ArithOp::Add,
                    BinaryOp::Sub => ArithOp::Sub,
                    BinaryOp::Mul => ArithOp::Mul,
                    BinaryOp::Div => ArithOp::Div,
                    _ => ArithOp::Rem,
                };
                node(
                    NodeKind::Arith {
                        op,
                        lhs: Box::new(l),
                        rhs: Box::new(r),
                    },
                    span,
                    ty,
                )
            }
        }
    }

    /// The enum a node reads, if any, with its allowed values: an enum
    /// field, an element of a field's list or map of enums (`f[0]`,
    /// `f["k"]`, at any depth), or a loop variable over such a list.
    fn enum_values(&self, e: &Expr) -> Option<(String, Vec<String>)> {
        let shape = self.enum_shape(e)?;
        Some((shape.path, shape.values?))
    }

    /// The enum values of what `e` reads and of its elements, when `e` is a
    /// static path.
    fn enum_shape(&self, e: &Expr) -> Option<EnumShape> {
        match &e.kind {
            ExprKind::Select { operand, field } => {
                let obj = self.object_of(operand)?;
                let (_, def) = obj.field(&field.text)?;
                Some(EnumShape::of(describe_path(operand, field), &def.constraints))
            }
            ExprKind::Index { operand, .. } => self.enum_shape(operand)?.items.map(|b| *b),
            ExprKind::Ident(n) => {
                let at = self.locals.iter().rposition(|(x, _, _)| x == n)?;
                self.local_enums.get(at)?.clone()
            }
            _ => None,
        }
    }

    /// True when [`ExprChecker::enum_values`] of `e`, `depth` element
    /// levels down, finds no enum or one that allows every literal: then
    /// `check_enum_set` has nothing to report. Builds nothing.
    fn enum_admits(&self, e: &Expr, depth: usize, literals: &[&str]) -> bool {
        match &e.kind {
            ExprKind::Select { operand, field } => {
                let Some(obj) = self.object_of(operand) else {
                    return true;
                };
                let Some((_, def)) = obj.field(&field.text) else {
                    return true;
                };
                let mut c = &def.constraints;
                for _ in 0..depth {
                    match c.items.as_deref() {
                        Some(i) => c = i,
                        None => return true,
                    }
                }
                match c.allowed.as_ref().filter(|_| c.is_enum) {
                    Some(vs) => literals.iter().all(|l| vs.iter().any(|v| v.as_str() == Some(*l))),
                    None => true,
                }
            }
            ExprKind::Index { operand, .. } => self.enum_admits(operand, depth + 1, literals),
            ExprKind::Ident(n) => {
                let Some(mut shape) = self
                    .locals
                    .iter()
                    .rposition(|(x, _, _)| x == n)
                    .and_then(|at| self.local_enums.get(at))
                    .and_then(Option::as_ref)
                else {
                    return true;
                };
                for _ in 0..depth {
                    match shape.items.as_deref() {
                        Some(i) => shape = i,
                        None => return true,
                    }
                }
                match &shape.values {
                    Some(vs) => literals.iter().all(|l| vs.iter().any(|v| v == l)),
                    None => true,
                }
            }
            _ => true,
        }
    }

    /// The object type a static path expression has (without reporting).
    fn object_of(&self, e: &Expr) -> Option<Arc<ObjectType>> {
        match &e.kind {
            ExprKind::Ident(n) => {
                if let Some((_, ty, _)) = self.locals.iter().rev().find(|(x, _, _)| x == n) {
                    return match ty {
                        Type::Object(o) => Some(o.clone()),
                        _ => None,
                    };
                }
                match n.as_str() {
                    "input" => Some(self.scope.input.clone()),
                    "actor" => Some(self.scope.actor.clone()),
                    "snapshot" => Some(self.scope.snapshot.clone()),
                    "output" => self.scope.output.cloned(),
                    "tool" => self.scope.tool.cloned(),
                    _ => None,
                }
            }
            ExprKind::Select { operand, field } => {
                let parent = self.object_of(operand)?;
                match &parent.field(&field.text)?.1.ty {
                    Type::Object(o) => Some(o.clone()),
                    _ => None,
                }
            }
            _ => None,
        }
    }

    fn check_enum_literal(&mut self, e: &Expr, _n: &Node, other: &Node) {
        let NodeKind::Const(Value::Str(lit)) = &other.kind else {
            return;
        };
        // Most comparisons name an allowed value (or no enum at all): that
        // is decided without building the set, the path or the values a
        // message would show.
        if self.enum_admits(e, 0, &[lit.as_str()]) {
            return;
        }
        self.check_enum_set(e, _n, &std::iter::once(lit.to_string()).collect());
    }

    fn check_enum_set(&mut self, e: &Expr, _n: &Node, literals: &FxHashSet<String>) {
        if self.enum_admits(e, 0, &literals.iter().map(String::as_str).collect::<Vec<_>>()) {
            return;
        }
        let Some((path, values)) = self.enum_values(e) else {
            return;
        };
        self.report_enum_literals(e.span, &path, &values, literals);
    }

    fn report_enum_literals(&mut self, span: Span, path: &str, values: &[String], literals: &FxHashSet<String>) {
        let mut bad: Vec<&String> = literals.iter().filter(|l| !values.contains(l)).collect();
        bad.sort();
        for lit in bad {
            let help = match did_you_mean(lit, values.iter().map(String::as_str)) {
                Some(s) => format!("did you mean `{s}`?"),
                None => format!("`{path}` is one of: {}", values.join(", ")),
            };
            self.error(
                span,
                format!("`{lit}` is not a value of `{path}`, so this comparison can never hold"),
            )
            .help = Some(help);
        }
    }

    /// Records the paths that `e` proves present when it evaluates to `when`.
    fn facts(&mut self, e: &Expr, when: bool) {
        match &e.kind {
            ExprKind::Call {
                target: None,
                function,
                args,
            } if when && function.text == "has" && args.len() == 1 => {
                if let Some(mut key) = args.first().and_then(|a| self.path_key(a)) {
                    while key.len() > 1 {
                        self.guards.push(key.clone());
                        key.pop();
                    }
                }
            }
            ExprKind::Unary {
                op: UnaryOp::Not,
                operand,
            } => self.facts(operand, !when),
            ExprKind::Binary {
                op: BinaryOp::And,
                lhs,
                rhs,
            } if when => {
                self.facts(lhs, true);
                self.facts(rhs, true);
            }
            ExprKind::Binary {
                op: BinaryOp::Or,
                lhs,
                rhs,
            } if !when => {
                self.facts(lhs, false);
                self.facts(rhs, false);
            }
            _ => {}
        }
    }

    fn call(&mut self, target: Option<&Expr>, function: &Name, args: &[Expr], span: Span) -> Node {
        if let Some(t) = target {
            if self.is_session(t) {
                return self.session_call(function, args, span);
            }
        }
        let name = function.text.as_str();
        match (target, name) {
            (None, "has") => return self.has(args, span, function),
            (Some(range), "exists" | "all" | "exists_one" | "filter" | "map") => {
                return self.comprehension(range, name, args, span, function)
            }
            _ => {}
        }
        // Literal-only arguments are compiled at load time.
        match (target, name, args) {
            (Some(t), "matches", [pattern]) | (None, "matches", [t, pattern]) => {
                let s = self.expect_string(t, "`matches`");
                let Some(p) = self.literal_string(pattern, "the pattern of `matches`") else {
                    return node(NodeKind::Const(Value::Null), span, Type::Error);
                };
                return match compile_regex(&p) {
                    Ok(regex) => node(
                        NodeKind::Matches {
                            operand: Box::new(s),
                            regex: Lazy::compiled(p, regex),
                        },
                        span,
                        Type::Bool,
                    ),
                    Err(e) => {
                        self.error(pattern.span, format!("invalid regular expression: {e}"))
                            .help = Some("patterns use Rust `regex` syntax (no look-around or back-references)".into());
                        node(NodeKind::Const(Value::Null), span, Type::Error)
                    }
                };
            }
            (Some(t), "glob", [pattern]) => {
                let s = self.expect_string(t, "`glob`");
                let Some(p) = self.literal_string(pattern, "the pattern of `glob`") else {
                    return node(NodeKind::Const(Value::Null), span, Type::Error);
                };
                return match compile_glob(&p) {
                    Ok(matcher) => node(
                        NodeKind::Glob {
                            operand: Box::new(s),
                            matcher: Lazy::compiled(p, matcher),
                        },
                        span,
                        Type::Bool,
                    ),
                    Err(e) => self.err_node(pattern.span, format!("invalid glob pattern: {e}")),
                };
            }
            (Some(t), "mayMatch" | "mayMatchIgnoreCase" | "globIgnoreCase", [pattern]) => {
                let what = format!("`{name}`");
                let s = self.expect_string(t, &what);
                let Some(p) = self.literal_string(pattern, &format!("the pattern of `{name}`")) else {
                    return node(NodeKind::Const(Value::Null), span, Type::Error);
                };
                return match GlobAutomaton::new(&p) {
                    Ok(automaton) => node(
                        NodeKind::GlobOverlap {
                            operand: Box::new(s),
                            automaton: Lazy::compiled(p, automaton),
                            operand_is_glob: name != "globIgnoreCase",
                            ignore_case: name != "mayMatch",
                        },
                        span,
                        Type::Bool,
                    ),
                    Err(e) => self.err_node(pattern.span, format!("invalid glob pattern: {e}")),
                };
            }
            (None, "timestamp" | "duration" | "ip" | "cidr" | "url", [arg]) => {
                if let ExprKind::String(text) = &arg.kind {
                    return self.constant_conversion(name, text, arg.span, span);
                }
            }
            _ => {}
        }
        let mut checked: Vec<Node> = Vec::with_capacity(args.len() + 1);
        if let Some(t) = target {
            checked.push(self.check(t));
        }
        for a in args {
            checked.push(self.check(a));
        }
        let types: Vec<Type> = checked.iter().map(|n| n.ty.clone()).collect();
        let sig = signature(target.is_some(), name, &types);
        match sig {
            Ok((func, ty)) => node(
                NodeKind::Call {
                    func,
                    args: checked.into_boxed_slice(),
                },
                span,
                ty,
            ),
            Err(SigError::Unknown) => {
                let known = if target.is_some() { METHOD_NAMES } else { FUNCTION_NAMES };
                let help = match did_you_mean(name, known.iter().copied()) {
                    Some(s) => format!("did you mean `{s}`?"),
                    None => format!("available: {}", known.join(", ")),
                };
                let what = if target.is_some() { "method" } else { "function" };
                let n = self.err_node(function.span, format!("unknown {what} `{name}`"));
                if let Some(d) = self.diags.last_mut() {
                    d.help = Some(help);
                }
                n
            }
            Err(SigError::Mismatch(expected)) => {
                if types.iter().any(|t| matches!(t, Type::Error)) {
                    return node(NodeKind::Const(Value::Null), span, Type::Error);
                }
                let got = types.iter().map(|t| t.to_string()).collect::<Vec<_>>().join(", ");
                let n = self.err_node(span, format!("`{name}` cannot be applied to ({got})"));
                if let Some(d) = self.diags.last_mut() {
                    d.help = Some(format!("`{name}` takes {expected}"));
                }
                n
            }
        }
    }

    fn constant_conversion(&mut self, name: &str, text: &str, arg_span: Span, span: Span) -> Node {
        let result = match name {
            "timestamp" => parse_timestamp(text).map(|t| (Value::Timestamp(t), Type::Timestamp)),
            "duration" => crate::value::parse_duration(text)
                .map(|d| (Value::Duration(d), Type::Duration))
                .ok_or_else(|| {
                    crate::eval::EvalError(format!("`{text}` is not a duration (write e.g. `1h30m`, `250ms`)"))
                }),
            "ip" => parse_ip(text).map(|ip| (Value::Ip(ip), Type::Ip)),
            "cidr" => parse_cidr(text).map(|(ip, n)| (Value::Cidr(ip, n), Type::Cidr)),
            _ => url::Url::parse(text)
                .map(|u| (Value::Url(Box::new(u)), Type::Url))
                .map_err(|e| crate::eval::EvalError(format!("`{text}` is not a URL: {e}"))),
        };
        match result {
            Ok((v, ty)) => node(NodeKind::Const(v), span, ty),
            Err(e) => self.err_node(arg_span, e.0),
        }
    }

    fn expect_string(&mut self, e: &Expr, what: &str) -> Node {
        let n = self.check(e);
        if !matches!(n.ty, Type::String | Type::Error) {
            self.error(e.span, format!("{what} applies to strings, not {}", n.ty));
        }
        n
    }

    fn literal_string(&mut self, e: &Expr, what: &str) -> Option<String> {
        match &e.kind {
            ExprKind::String(s) => Some(s.clone()),
            _ => {
                self.error(e.span, format!("{what} must be a string literal")).help =
                    Some("patterns are compiled once when the policy loads, so they cannot be computed".into());
                None
            }
        }
    }

    fn has(&mut self, args: &[Expr], span: Span, function: &Name) -> Node {
        let [arg] = args else {
            return self.err_node(function.span, "`has` takes one field, like `has(input.note)`");
        };
        // Walk down the chain of selects to the base expression.
        let mut chain: Vec<&Name> = Vec::new();
        let mut cur = arg;
        while let ExprKind::Select { operand, field } = &cur.kind {
            chain.push(field);
            cur = operand;
        }
        if chain.is_empty() {
            return self.err_node(arg.span, "`has` needs a field, like `has(input.note)`");
        }
        chain.reverse();
        let base = self.check(cur);
        let mut ty = base.ty.clone();
        let mut steps = Vec::with_capacity(chain.len());
        let mut walked = cur.clone();
        for field in chain {
            let next = match &ty {
                Type::Object(obj) => match obj.field(&field.text) {
                    Some((idx, def)) => {
                        steps.push(Step::Field(u32::try_from(idx).unwrap_or(u32::MAX)));
                        def.ty.clone()
                    }
                    None => {
                        let obj = obj.clone();
                        self.unknown_field(&obj, &walked, field);
                        return node(NodeKind::Const(Value::Null), span, Type::Bool);
                    }
                },
                Type::Map(elem) => {
                    steps.push(Step::Key(field.text.clone()));
                    (**elem).clone()
                }
                Type::Error | Type::Dyn => return node(NodeKind::Const(Value::Null), span, Type::Error),
                other => {
                    let msg = format!("{other} has no fields, so `has` cannot test `.{}`", field.text);
                    return self.err_node(field.span, msg);
                }
            };
            walked = Expr {
                kind: ExprKind::Select {
                    operand: Box::new(walked),
                    field: field.clone(),
                },
                span: field.span,
            };
            ty = next;
        }
        node(
            NodeKind::Has {
                base: Box::new(base),
                steps: steps.into_boxed_slice(),
            },
            span,
            Type::Bool,
        )
    }

    fn comprehension(&mut self, range: &Expr, name: &str, args: &[Expr], span: Span, function: &Name) -> Node {
        let [var, body] = args else {
            let msg = format!("`{name}` takes a variable and an expression, like `{name}(x, x > 0)`");
            return self.err_node(function.span, msg);
        };
        let ExprKind::Ident(var_name) = &var.kind else {
            return self.err_node(
                var.span,
                format!("the first argument of `{name}` must be a variable name"),
            );
        };
        let r = self.check(range);
        let elem = match &r.ty {
            Type::List(t) => (**t).clone(),
            Type::Map(_) => Type::String,
            Type::Error | Type::Dyn => Type::Error,
            other => {
                self.error(
                    range.span,
                    format!("`{name}` iterates over a list or a map, not {other}"),
                );
                Type::Error
            }
        };
        let id = self.next_local;
        self.next_local += 1;
        // A map's loop variable is a key, which no enum constrains.
        let elem_enum = match &r.ty {
            Type::List(_) => self.enum_shape(range).and_then(|s| s.items.map(|b| *b)),
            _ => None,
        };
        self.locals.push((var_name.clone(), elem.clone(), id));
        self.local_enums.push(elem_enum);
        let b = self.check(body);
        self.locals.pop();
        self.local_enums.pop();
        let kind = match name {
            "exists" => MacroKind::Exists,
            "all" => MacroKind::All,
            "exists_one" => MacroKind::ExistsOne,
            "filter" => MacroKind::Filter,
            _ => MacroKind::Map,
        };
        if kind != MacroKind::Map && !matches!(b.ty, Type::Bool | Type::Error) {
            self.error(
                body.span,
                format!("the body of `{name}` must be a boolean, not {}", b.ty),
            );
        }
        let ty = match kind {
            MacroKind::Filter => Type::List(Box::new(elem)),
            MacroKind::Map => Type::List(Box::new(b.ty.clone())),
            _ => Type::Bool,
        };
        node(
            NodeKind::Comprehension {
                kind,
                range: Box::new(r),
                var: id,
                body: Box::new(b),
            },
            span,
            ty,
        )
    }
}

fn node(kind: NodeKind, span: Span, ty: Type) -> Node {
    Node { kind, span, ty }
}

/// The enum values a contract allows for a value and, for a list or map,
/// for its elements, at every depth.
#[derive(Clone, Debug)]
struct EnumShape {
    /// How a message names the value (`input.levels[]` for an element).
    path: String,
    /// The values, when the value is an enum.
    values: Option<Vec<String>>,
    /// The same for the elements.
    items: Option<Box<EnumShape>>,
}

impl EnumShape {
    fn of(path: String, c: &Constraints) -> EnumShape {
        let values = c
            .allowed
            .as_ref()
            .filter(|_| c.is_enum)
            .map(|vs| vs.iter().filter_map(|v| v.as_str().map(str::to_string)).collect());
        let items = c
            .items
            .as_deref()
            .map(|i| Box::new(EnumShape::of(format!("{path}[]"), i)));
        EnumShape { path, values, items }
    }
}

/// How the checker names the object of an action's `tool:` facts (see
/// `check::tool`).
const TOOL_OWNER: &str = "the `tool` facts of action";

fn describe_path(operand: &Expr, field: &Name) -> String {
    format!("{operand}.{}", field.text)
}

fn describe_owner(operand: &Expr, obj: &ObjectType, action: &str) -> String {
    match &operand.kind {
        ExprKind::Ident(n) if n == "input" => format!("the input of action `{action}`"),
        ExprKind::Ident(n) if n == "output" => format!("the output of action `{action}`"),
        ExprKind::Ident(n) if n == "actor" || n == "snapshot" => format!("the {n} contract"),
        ExprKind::Ident(n) if n == "tool" && obj.name.starts_with(TOOL_OWNER) => obj.name.clone(),
        _ if obj.name.starts_with(TOOL_OWNER) => format!("`{operand}` of action `{action}`"),
        _ => format!("`{operand}` ({})", obj.name),
    }
}

fn arith_type(op: BinaryOp, l: &Type, r: &Type) -> Option<Type> {
    use Type::*;
    Some(match (op, l, r) {
        (_, Error, _) | (_, _, Error) => Error,
        (_, Int, Int) => Int,
        (_, Int | Number, Int | Number) => Number,
        (BinaryOp::Add, String, String) => String,
        (BinaryOp::Add, List(a), List(b)) if a.accepts(b) || b.accepts(a) => List(a.clone()),
        (BinaryOp::Add, Timestamp, Duration) | (BinaryOp::Add, Duration, Timestamp) => Timestamp,
        (BinaryOp::Sub, Timestamp, Duration) => Timestamp,
        (BinaryOp::Sub, Timestamp, Timestamp) => Duration,
        (BinaryOp::Add | BinaryOp::Sub, Duration, Duration) => Duration,
        _ => return None,
    })
}

enum SigError {
    Unknown,
    Mismatch(&'static str),
}

const FUNCTION_NAMES: &[&str] = &[
    "has",
    "size",
    "int",
    "double",
    "number",
    "string",
    "timestamp",
    "duration",
    "url",
    "ip",
    "cidr",
    "matches",
];
const METHOD_NAMES: &[&str] = &[
    "size",
    "startsWith",
    "endsWith",
    "contains",
    "matches",
    "lowerAscii",
    "upperAscii",
    "trim",
    "glob",
    "globIgnoreCase",
    "mayMatch",
    "mayMatchIgnoreCase",
    "normalize",
    "under",
    "exists",
    "all",
    "exists_one",
    "filter",
    "map",
    "containsIP",
    "inCidr",
];

/// Resolves a call to a builtin. `types` holds the receiver first for
/// method calls.
fn signature(method: bool, name: &str, types: &[Type]) -> Result<(Builtin, Type), SigError> {
    use Type::*;
    let any_error = types.iter().any(|t| matches!(t, Error | Dyn));
    let ok = |b, t| Ok((b, t));
    let string_method = |b: Builtin, ret: Type, expected: &'static str| match types {
        [String | Error, String | Error] => Ok((b, ret)),
        _ => Err(SigError::Mismatch(expected)),
    };
    match (method, name) {
        (_, "size") => match types {
            [String | List(_) | Map(_)] => ok(Builtin::Size, Int),
            [_] if any_error => ok(Builtin::Size, Int),
            _ => Err(SigError::Mismatch("a string, a list or a map")),
        },
        (true, "startsWith") => string_method(Builtin::StartsWith, Bool, "a string prefix"),
        (true, "endsWith") => string_method(Builtin::EndsWith, Bool, "a string suffix"),
        (true, "contains") => string_method(Builtin::Contains, Bool, "a string to look for"),
        (true, "under") => string_method(Builtin::Under, Bool, "a directory path"),
        (true, "lowerAscii" | "upperAscii" | "trim" | "normalize") => match types {
            [String | Error] => ok(
                match name {
                    "lowerAscii" => Builtin::LowerAscii,
                    "upperAscii" => Builtin::UpperAscii,
                    "trim" => Builtin::Trim,
                    _ => Builtin::NormalizePath,
                },
                String,
            ),
            _ => Err(SigError::Mismatch("no arguments and applies to a string")),
        },
        (true, "containsIP") => match types {
            [Cidr | Error, Ip | Error] => ok(Builtin::CidrContains, Bool),
            _ => Err(SigError::Mismatch(
                "an ip, as in `cidr(\"10.0.0.0/8\").containsIP(ip(input.addr))`",
            )),
        },
        (true, "inCidr") => match types {
            [Ip | Error, Cidr | Error] => ok(Builtin::CidrContains, Bool),
            _ => Err(SigError::Mismatch(
                "a cidr, as in `ip(input.addr).inCidr(cidr(\"10.0.0.0/8\"))`",
            )),
        },
        (false, "int") => match types {
            [Int | Number | String | Timestamp | Error] => ok(Builtin::ToInt, Int),
            _ => Err(SigError::Mismatch("a number, a string or a timestamp")),
        },
        (false, "double" | "number") => match types {
            [Int | Number | String | Error] => ok(Builtin::ToNumber, Number),
            _ => Err(SigError::Mismatch("a number or a string")),
        },
        (false, "string") => match types {
            [List(_) | Map(_) | Object(_) | Hashed(_)] => Err(SigError::Mismatch("a scalar value")),
            [_] => ok(Builtin::ToString, String),
            _ => Err(SigError::Mismatch("one value")),
        },
        (false, "timestamp") => match types {
            [String | Timestamp | Error] => ok(Builtin::ToTimestamp, Timestamp),
            _ => Err(SigError::Mismatch("an RFC 3339 string")),
        },
        (false, "duration") => match types {
            [String | Duration | Error] => ok(Builtin::ToDuration, Duration),
            _ => Err(SigError::Mismatch("a duration string like `1h30m`")),
        },
        (false, "url") => match types {
            [String | Error] => ok(Builtin::ParseUrl, Url),
            _ => Err(SigError::Mismatch("a string")),
        },
        (false, "ip") => match types {
            [String | Error] => ok(Builtin::ParseIp, Ip),
            _ => Err(SigError::Mismatch("a string")),
        },
        (false, "cidr") => match types {
            [String | Error] => ok(Builtin::ParseCidr, Cidr),
            _ => Err(SigError::Mismatch("a string")),
        },
        _ => Err(SigError::Unknown),
    }
}
