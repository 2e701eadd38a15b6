//! Type checking of what reads state: the session functions, comparisons
//! with sensitive fields of earlier calls, and rule limits.

use super::{node, ExprChecker, SessionAction, SESSION_HELP};
use crate::ast::{Expr, ExprKind, LimitAst, LimitMeasure, Name, NumberLit};
use crate::diagnostics::did_you_mean;
use crate::ir::{LimitIr, Node, NodeKind, PerKey, Root};
use crate::source::Span;
use crate::state::Decimal;
use crate::types::{Constraints, FieldDef, ObjectType, Type};
use crate::value::{format_duration, Value};
use jiff::SignedDuration;
use std::sync::Arc;

const SESSION_MEMBERS: [&str; 5] = ["id", "labels", "count", "sum", "calls"];

impl ExprChecker<'_> {
    /// `session.id`, `session.labels`.
    pub(super) fn session_field(&mut self, field: &Name, span: Span) -> Node {
        self.session.reads = true;
        match field.text.as_str() {
            "id" => node(NodeKind::SessionId, span, Type::String),
            "labels" => {
                self.session.labels = true;
                node(NodeKind::SessionLabels, span, Type::List(Box::new(Type::String)))
            }
            f @ ("count" | "sum" | "calls") => {
                let n = self.err_node(field.span, format!("`session.{f}` is a function"));
                self.help(SESSION_HELP);
                n
            }
            other => {
                let n = self.err_node(field.span, format!("the session has no `{other}`"));
                match did_you_mean(other, SESSION_MEMBERS) {
                    Some(s) => self.help(&format!("did you mean `session.{s}`?")),
                    None => self.help(SESSION_HELP),
                }
                n
            }
        }
    }

    fn help(&mut self, text: &str) {
        if let Some(d) = self.diags.last_mut() {
            d.help = Some(text.to_string());
        }
    }

    /// `session.count(...)`, `session.sum(...)`, `session.calls(...)`.
    pub(super) fn session_call(&mut self, function: &Name, args: &[Expr], span: Span) -> Node {
        self.session.reads = true;
        let name = function.text.as_str();
        let usage = match name {
            "count" => "`session.count(\"<action or glob>\", duration(\"1h\"))`",
            "sum" => "`session.sum(\"<action>\", \"input.<field>\", duration(\"1h\"))`",
            "calls" => "`session.calls(\"<action>\", duration(\"1h\"))`",
            f @ ("id" | "labels") => {
                let n = self.err_node(function.span, format!("`session.{f}` is not a function"));
                self.help(&format!("write `session.{f}`"));
                return n;
            }
            other => {
                let n = self.err_node(function.span, format!("the session has no function `{other}`"));
                match did_you_mean(other, ["count", "sum", "calls"]) {
                    Some(s) => self.help(&format!("did you mean `session.{s}`?")),
                    None => self.help(SESSION_HELP),
                }
                return n;
            }
        };
        let arity = if name == "sum" { 3 } else { 2 };
        if args.len() != arity {
            let n = self.err_node(span, format!("`session.{name}` takes {arity} arguments"));
            self.help(&format!("write {usage}"));
            return n;
        }
        let window_arg = &args[arity - 1];
        let window = self.window_arg(window_arg, name);
        match name {
            "count" => {
                let Some(pattern) = self.literal_arg(&args[0], "the action pattern of `session.count`") else {
                    return error_node(span);
                };
                let Some(ids) = self.actions_matching(&pattern, args[0].span, true) else {
                    return error_node(span);
                };
                let mut names: Vec<String> = ids.iter().map(|&i| self.action_name(i)).collect();
                names.sort();
                names.dedup();
                self.session.recorded.extend(ids);
                node(
                    NodeKind::SessionCount {
                        actions: names.into_boxed_slice(),
                        window: window.unwrap_or(SignedDuration::ZERO),
                    },
                    span,
                    Type::Int,
                )
            }
            "sum" => {
                let action = self.literal_arg(&args[0], "the action of `session.sum`");
                let field = self.literal_arg(&args[1], "the field of `session.sum`");
                let (Some(action), Some(field)) = (action, field) else {
                    return error_node(span);
                };
                let Some(id) = self
                    .actions_matching(&action, args[0].span, false)
                    .and_then(|ids| ids.first().copied())
                else {
                    return error_node(span);
                };
                let Some((output, path, int)) = self.sum_field(id, &field, args[1].span) else {
                    return error_node(span);
                };
                self.session.recorded.push(id);
                node(
                    NodeKind::SessionSum {
                        action,
                        output,
                        path: path.into_boxed_slice(),
                        int,
                        window: window.unwrap_or(SignedDuration::ZERO),
                    },
                    span,
                    if int { Type::Int } else { Type::Number },
                )
            }
            _ => {
                let Some(action) = self.literal_arg(&args[0], "the action of `session.calls`") else {
                    return error_node(span);
                };
                let Some(id) = self
                    .actions_matching(&action, args[0].span, false)
                    .and_then(|ids| ids.first().copied())
                else {
                    return error_node(span);
                };
                self.session.recorded.push(id);
                let call = self.scope.actions[id as usize].call.clone();
                node(
                    NodeKind::SessionCalls {
                        action,
                        window: window.unwrap_or(SignedDuration::ZERO),
                    },
                    span,
                    Type::List(Box::new(Type::Object(call))),
                )
            }
        }
    }

    fn action_name(&self, id: u32) -> String {
        self.scope
            .actions
            .get(id as usize)
            .map_or_else(String::new, |a| a.name.clone())
    }

    fn literal_arg(&mut self, e: &Expr, what: &str) -> Option<String> {
        match &e.kind {
            ExprKind::String(s) => Some(s.clone()),
            _ => {
                self.error(e.span, format!("{what} must be a string literal")).help =
                    Some("it is resolved against the policy's actions when the policy loads".into());
                None
            }
        }
    }

    /// The ids of the actions `pattern` names: an action name, or (when
    /// `glob` is allowed) a glob such as `mcp.*`. At least one, else an
    /// error.
    fn actions_matching(&mut self, pattern: &str, span: Span, glob: bool) -> Option<Vec<u32>> {
        let actions = self.scope.actions;
        if let Some(i) = actions.iter().position(|a| a.name == pattern) {
            return Some(vec![u32::try_from(i).unwrap_or(u32::MAX)]);
        }
        if glob && pattern.contains(['*', '?', '[']) {
            let matcher = match globset::Glob::new(pattern) {
                Ok(g) => g.compile_matcher(),
                Err(e) => {
                    self.error(span, format!("invalid action glob `{pattern}`: {}", e.kind()));
                    return None;
                }
            };
            let ids: Vec<u32> = actions
                .iter()
                .enumerate()
                .filter(|(_, a)| matcher.is_match(a.name.as_str()))
                .map(|(i, _)| u32::try_from(i).unwrap_or(u32::MAX))
                .collect();
            if ids.is_empty() {
                self.error(span, format!("`{pattern}` matches no action of the policy"))
                    .help = Some("a session function reads earlier calls of actions with a contract".into());
                return None;
            }
            return Some(ids);
        }
        let help = match did_you_mean(pattern, actions.iter().map(|a| a.name.as_str())) {
            Some(s) => format!("did you mean `{s}`?"),
            None => "name an action with a contract under `contracts.actions`".to_string(),
        };
        self.error(span, format!("the policy has no action `{pattern}`")).help = Some(help);
        None
    }

    /// The field `session.sum` adds: `"input.x"` or `"output.x"` (nested
    /// fields with dots), numeric and not sensitive. Returns whether it is
    /// an output field, the path of names, and whether it is an int.
    fn sum_field(&mut self, id: u32, field: &str, span: Span) -> Option<(bool, Vec<String>, bool)> {
        let action = &self.scope.actions[id as usize];
        let mut parts = field.split('.');
        let (output, mut obj) = match parts.next() {
            Some("input") => (false, action.input.clone()),
            Some("output") => match &action.output {
                Some(o) => (true, o.clone()),
                None => {
                    let name = action.name.clone();
                    self.error(span, format!("action `{name}` declares no output contract"))
                        .help = Some(format!("add `output:` fields to the contract of `{name}`"));
                    return None;
                }
            },
            _ => {
                self.error(span, format!("`{field}` is not a field of a call")).help =
                    Some("write `\"input.<field>\"` or `\"output.<field>\"`".into());
                return None;
            }
        };
        let names: Vec<String> = parts.map(str::to_string).collect();
        if names.is_empty() {
            self.error(span, format!("`{field}` names no field")).help =
                Some("write `\"input.<field>\"` or `\"output.<field>\"`".into());
            return None;
        }
        let mut walked = if output { "output" } else { "input" }.to_string();
        for (i, name) in names.iter().enumerate() {
            let Some((_, def)) = obj.field(name) else {
                let help = match did_you_mean(name, obj.fields.iter().map(|f| f.name.as_str())) {
                    Some(s) => format!("did you mean `{s}`?"),
                    None => format!(
                        "it has: {}",
                        obj.fields
                            .iter()
                            .map(|f| format!("`{}`", f.name))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                };
                self.error(
                    span,
                    format!("`{walked}` of action `{}` has no field `{name}`", action.name),
                )
                .help = Some(help);
                return None;
            };
            walked = format!("{walked}.{name}");
            if def.sensitive {
                self.error(
                    span,
                    format!(
                        "`{walked}` is sensitive: earlier calls keep only its keyed hash, which cannot be added up"
                    ),
                );
                return None;
            }
            let last = i + 1 == names.len();
            if last && matches!(def.ty, Type::Int | Type::Number) && !never_negative(def) {
                // A negative amount would lower the total, so a budget rule
                // over it could be emptied by one call with a negative
                // amount; the same reason `sum:` of a limit needs `min: 0`.
                let ty = def.ty.clone();
                self.error(span, format!("`{walked}` can go negative; give it `min: 0`"))
                    .help = Some(format!(
                    "`session.sum` must only grow: declare the field `{{type: {ty}, min: 0}}` in the contract of `{}`",
                    action.name
                ));
                return None;
            }
            match (&def.ty, last) {
                (Type::Int, true) => return Some((output, names, true)),
                (Type::Number, true) => return Some((output, names, false)),
                (Type::Object(inner), false) => obj = inner.clone(),
                (other, true) => {
                    self.error(span, format!("`session.sum` adds numbers, and `{walked}` is {other}"));
                    return None;
                }
                (other, false) => {
                    self.error(span, format!("`{walked}` is {other}, not an object with fields"));
                    return None;
                }
            }
        }
        None
    }

    /// A window: a constant duration, longer than 0 and at most the
    /// policy's `max_window`. `None` after an error.
    fn window_arg(&mut self, e: &Expr, function: &str) -> Option<SignedDuration> {
        let n = self.check(e);
        match (&n.kind, &n.ty) {
            (NodeKind::Const(Value::Duration(d)), _) => self.check_window(*d, e.span),
            (_, Type::Error) => None,
            _ => {
                self.error(
                    e.span,
                    format!("the window of `session.{function}` must be a constant duration"),
                )
                .help = Some("write it like `duration(\"1h\")`".into());
                None
            }
        }
    }

    /// A window longer than 0 and at most `max_window`.
    pub(crate) fn check_window(&mut self, d: SignedDuration, span: Span) -> Option<SignedDuration> {
        if !d.is_positive() {
            self.error(span, "a window must be longer than 0");
            return None;
        }
        let max = self.scope.max_window;
        if d > max {
            self.error(
                span,
                format!(
                    "the window {} is longer than the policy's `max_window` ({})",
                    format_duration(d),
                    format_duration(max)
                ),
            )
            .help = Some(
                "shorten the window, or raise `max_window` at the top of the policy (state is kept that long)".into(),
            );
            return None;
        }
        Some(d)
    }

    /// `==` / `!=` where a side is a sensitive field of an earlier call.
    pub(super) fn hashed_cmp(&mut self, ne: bool, l: Node, r: Node, exprs: (&Expr, &Expr), span: Span) -> Node {
        let (hashed, clear, hashed_expr) = if matches!(l.ty, Type::Hashed(_)) {
            (l, r, exprs.0)
        } else {
            (r, l, exprs.1)
        };
        if matches!(clear.ty, Type::Hashed(_)) {
            self.error(
                span,
                format!(
                    "`{}` and `{}` are both sensitive fields of earlier calls, kept as keyed hashes",
                    exprs.0, exprs.1
                ),
            )
            .help = Some("compare a sensitive field of an earlier call with a value of this request".into());
            return error_node(span);
        }
        let Type::Hashed(inner) = &hashed.ty else {
            return error_node(span);
        };
        if !matches!(**inner, Type::String | Type::Int | Type::Bool) {
            self.error(
                span,
                format!(
                    "`{hashed_expr}` is a sensitive field of an earlier call, kept as the keyed hash of its {inner} value: \
                     only a string, an int or a bool has one text form to hash, so it cannot be compared"
                ),
            );
            return error_node(span);
        }
        let same = matches!(
            (&**inner, &clear.ty),
            (Type::String, Type::String) | (Type::Int, Type::Int) | (Type::Bool, Type::Bool) | (_, Type::Error)
        );
        if !same {
            self.error(
                span,
                format!(
                    "`{hashed_expr}` (a sensitive {inner} of an earlier call) can only be compared with a value of type {inner}, not {}",
                    clear.ty
                ),
            )
            .help = Some("its keyed hash is compared with the hash of the other side, so both must be of one type".into());
            return error_node(span);
        }
        node(
            NodeKind::HashedCmp {
                ne,
                hashed: Box::new(hashed),
                clear: Box::new(clear),
            },
            span,
            Type::Bool,
        )
    }

    /// A rule's limit, checked in the scope of its `when` (whose `has(...)`
    /// guards hold, since the limit only counts calls the condition lets
    /// through).
    pub(crate) fn limit(&mut self, when: Option<&Expr>, limit: &LimitAst) -> Option<LimitIr> {
        if let Some(w) = when {
            self.facts(w, true);
        }
        let mut per = Vec::with_capacity(limit.per.len());
        let mut ok = true;
        for e in &limit.per {
            let n = self.check(e);
            match &n.ty {
                Type::String | Type::Int | Type::Bool => {}
                Type::Error => ok = false,
                other => {
                    ok = false;
                    self.error(
                        e.span,
                        format!("a `per` key must be a string, an int or a bool, not {other}"),
                    )
                    .help = Some("a key names a bucket, like `actor.id` or `input.customer_id`".into());
                }
            }
            let text = self
                .file
                .text()
                .get(e.span.start as usize..e.span.end as usize)
                .map_or_else(|| e.to_string(), |t| t.split_whitespace().collect::<Vec<_>>().join(" "));
            let hashed = self.reads_sensitive(&n);
            per.push(PerKey { text, node: n, hashed });
        }
        let (max, cost) = match &limit.measure {
            LimitMeasure::Count(n) => (Decimal::from(n.value), None),
            LimitMeasure::Sum { expr, max } => {
                let n = self.check(expr);
                ok &= self.check_sum(expr, &n);
                (max.value, Some(n))
            }
        };
        let window = self.check_window(limit.window.value, limit.window.span);
        match (ok, window) {
            (true, Some(window)) => Some(LimitIr {
                max,
                cost,
                per,
                window,
                span: limit.span,
            }),
            _ => None,
        }
    }

    /// `sum:` names a numeric input field that cannot go negative and is
    /// not sensitive (the amounts used are kept in clear).
    fn check_sum(&mut self, e: &Expr, n: &Node) -> bool {
        let NodeKind::Path {
            root: Root::Input,
            path,
        } = &n.kind
        else {
            if !matches!(n.ty, Type::Error) {
                self.error(e.span, "`sum` must name a numeric field of the input").help =
                    Some("write e.g. `sum: input.amount`".into());
            }
            return false;
        };
        let mut obj = self.scope.input.clone();
        let mut def_min = None;
        let mut ty = Type::Error;
        for (i, idx) in path.iter().enumerate() {
            let Some(def) = obj.fields.get(*idx as usize) else {
                return false;
            };
            if def.sensitive {
                self.error(
                    e.span,
                    format!("`{e}` is sensitive: the amounts a limit uses are kept in clear"),
                );
                return false;
            }
            if i + 1 == path.len() {
                def_min = def.constraints.min;
                ty = def.ty.clone();
            } else if let Type::Object(inner) = &def.ty {
                let inner = inner.clone();
                obj = inner;
            }
        }
        if !matches!(ty, Type::Int | Type::Number) {
            self.error(e.span, format!("`sum` adds numbers, and `{e}` is {ty}"));
            return false;
        }
        match def_min {
            Some(m) if is_non_negative(&m) => true,
            _ => {
                let action = self.scope.action.to_string();
                self.error(e.span, format!("`{e}` can go negative; give it `min: 0`"))
                    .help = Some(format!(
                    "a sum must only grow: declare the field `{{type: {ty}, min: 0}}` in the contract of `{action}`"
                ));
                false
            }
        }
    }

    /// True when `n` reads a field marked sensitive (at any depth), so a
    /// bucket keyed by it keeps the keyed hash of its value.
    fn reads_sensitive(&self, n: &Node) -> bool {
        let own = match &n.kind {
            NodeKind::Path { root, path } => {
                let start = match root {
                    Root::Input => Some(self.scope.input.clone()),
                    Root::Output => self.scope.output.cloned(),
                    Root::Actor => Some(self.scope.actor.clone()),
                    Root::Snapshot => Some(self.scope.snapshot.clone()),
                    Root::Tool => self.scope.tool.cloned(),
                };
                start.is_some_and(|o| path_is_sensitive(&o, path))
            }
            NodeKind::Select { operand, index } => match &operand.ty {
                Type::Object(o) => o.fields.get(*index as usize).is_some_and(|f| f.sensitive),
                _ => false,
            },
            _ => false,
        };
        own || n.children().into_iter().any(|c| self.reads_sensitive(c))
    }
}

/// True when a numeric field's contract keeps it at 0 or more.
fn never_negative(def: &FieldDef) -> bool {
    def.constraints.min.as_ref().is_some_and(is_non_negative)
}

fn is_non_negative(min: &NumberLit) -> bool {
    min.cmp_exact(NumberLit::Int(0)) != std::cmp::Ordering::Less
}

fn path_is_sensitive(obj: &Arc<ObjectType>, path: &[u32]) -> bool {
    let mut obj = obj.clone();
    for idx in path {
        let Some(def) = obj.fields.get(*idx as usize) else {
            return false;
        };
        if def.sensitive {
            return true;
        }
        match &def.ty {
            Type::Object(inner) => {
                let inner = inner.clone();
                obj = inner;
            }
            _ => return false,
        }
    }
    false
}

fn error_node(span: Span) -> Node {
    node(NodeKind::Const(Value::Null), span, Type::Error)
}

/// What the session functions know of an action: its contracts and the
/// type of one of its earlier calls.
pub(crate) fn session_action(name: &str, input: &Arc<ObjectType>, output: Option<&Arc<ObjectType>>) -> SessionAction {
    let mut fields = vec![field("input", Type::Object(hashed_object(input)), false)];
    if let Some(o) = output {
        fields.push(field("output", Type::Object(hashed_object(o)), true));
    }
    let mut effect = field("effect", Type::String, false);
    effect.constraints.allowed = Some(
        ["allow", "require_approval", "block"]
            .iter()
            .map(|e| Value::Str((*e).into()))
            .collect(),
    );
    effect.constraints.is_enum = true;
    fields.push(effect);
    fields.push(field("time", Type::Timestamp, false));
    SessionAction {
        name: name.to_string(),
        input: input.clone(),
        output: output.cloned(),
        call: Arc::new(object(format!("an earlier call of `{name}`"), fields)),
    }
}

fn field(name: &str, ty: Type, optional: bool) -> FieldDef {
    FieldDef {
        name: name.to_string(),
        ty,
        optional,
        sensitive: false,
        per_call: false,
        empty_when_absent: false,
        constraints: Constraints::default(),
    }
}

fn object(name: String, fields: Vec<FieldDef>) -> ObjectType {
    let index = fields.iter().enumerate().map(|(i, f)| (f.name.clone(), i)).collect();
    ObjectType {
        name,
        fields,
        index,
        extra: crate::ast::ExtraFields::Reject,
    }
}

/// `obj` as an earlier call holds it: each sensitive field typed as a hash
/// of its type. The same object when nothing in it is sensitive, so that
/// `c.input == input` still type-checks.
fn hashed_object(obj: &Arc<ObjectType>) -> Arc<ObjectType> {
    if !has_sensitive(&Type::Object(obj.clone())) {
        return obj.clone();
    }
    let fields = obj
        .fields
        .iter()
        .map(|f| FieldDef {
            name: f.name.clone(),
            ty: if f.sensitive {
                Type::Hashed(Box::new(f.ty.clone()))
            } else {
                hashed_type(&f.ty)
            },
            optional: f.optional,
            sensitive: f.sensitive,
            per_call: f.per_call,
            empty_when_absent: f.empty_when_absent,
            constraints: copy_constraints(&f.constraints),
        })
        .collect();
    Arc::new(object(format!("{} (an earlier call)", obj.name), fields))
}

fn hashed_type(ty: &Type) -> Type {
    match ty {
        Type::List(t) => Type::List(Box::new(hashed_type(t))),
        Type::Map(t) => Type::Map(Box::new(hashed_type(t))),
        Type::Object(o) => Type::Object(hashed_object(o)),
        other => other.clone(),
    }
}

fn has_sensitive(ty: &Type) -> bool {
    match ty {
        Type::List(t) | Type::Map(t) => has_sensitive(t),
        Type::Object(o) => o.fields.iter().any(|f| f.sensitive || has_sensitive(&f.ty)),
        _ => false,
    }
}

/// What the checker reads of a field's constraints (enum values, at any
/// depth); patterns are only checked on requests, never on stored calls.
fn copy_constraints(c: &Constraints) -> Constraints {
    Constraints {
        min: c.min,
        max: c.max,
        min_len: c.min_len,
        max_len: c.max_len,
        pattern: None,
        allowed: c.allowed.clone(),
        is_enum: c.is_enum,
        items: c.items.as_deref().map(|i| Box::new(copy_constraints(i))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(fields: Vec<FieldDef>) -> Arc<ObjectType> {
        Arc::new(object("t".into(), fields))
    }

    fn sensitive(name: &str, ty: Type) -> FieldDef {
        let mut f = field(name, ty, false);
        f.sensitive = true;
        f
    }

    #[test]
    fn an_earlier_call_keeps_its_contract_unless_something_in_it_is_sensitive() {
        let plain = obj(vec![field("a", Type::String, false)]);
        let action = session_action("x", &plain, None);
        let Type::Object(input) = &action.call.fields[0].ty else {
            panic!("input is an object")
        };
        // The same type, so that `c.input == input` type-checks.
        assert!(Arc::ptr_eq(input, &plain));
        assert!(action.call.field("output").is_none());
        let names: Vec<&str> = action.call.fields.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["input", "effect", "time"]);

        let inner = obj(vec![sensitive("card", Type::String), field("n", Type::Int, false)]);
        let input = obj(vec![
            field("items", Type::List(Box::new(Type::Object(inner.clone()))), false),
            sensitive("pin", Type::Int),
        ]);
        let action = session_action("y", &input, Some(&plain));
        let (_, out) = action.call.field("output").unwrap();
        assert!(out.optional);
        let Type::Object(copy) = &action.call.fields[0].ty else {
            panic!("input is an object")
        };
        assert!(!Arc::ptr_eq(copy, &input));
        assert!(matches!(&copy.field("pin").unwrap().1.ty, Type::Hashed(t) if matches!(**t, Type::Int)));
        let Type::List(items) = &copy.field("items").unwrap().1.ty else {
            panic!("items is a list")
        };
        let Type::Object(item) = items.as_ref() else {
            panic!("an item is an object")
        };
        assert!(matches!(&item.field("card").unwrap().1.ty, Type::Hashed(_)));
        assert!(matches!(&item.field("n").unwrap().1.ty, Type::Int));
        // Enum values survive the copy, so typos are still caught.
        let (_, effect) = action.call.field("effect").unwrap();
        assert!(effect.constraints.is_enum);
        assert_eq!(effect.constraints.allowed.as_ref().map(Vec::len), Some(3));
    }

    #[test]
    fn a_hash_compares_only_with_its_own_type() {
        let hashed = Type::Hashed(Box::new(Type::String));
        assert!(hashed.accepts(&Type::Hashed(Box::new(Type::String))));
        assert!(!hashed.accepts(&Type::String));
        assert!(!Type::String.accepts(&hashed));
        assert!(!hashed.comparable_with(&Type::String));
        assert!(!hashed.is_numeric());
    }
}
