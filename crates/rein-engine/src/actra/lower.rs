//! Turns a checked Actra schema and policy into Rein's untyped tree, so
//! that the native checker compiles it and the one evaluator decides it.
//!
//! - The schema becomes contracts in which every field is optional (Actra
//!   has no required fields: a missing field only makes its comparisons
//!   false) and undeclared fields are ignored, as Actra ignores them.
//! - Each comparison becomes `has(field) && field <op> value`, so that a
//!   missing field makes it false, `not_equals` included, as in Actra.
//! - Rules are listed with each action's own rules first, in file order,
//!   then the global rules in file order, under
//!   [`Combining::FirstMatch`](crate::ast::Combining::FirstMatch), with the
//!   default `allow`. Actor-scoped rules are left out: Actra never
//!   evaluates them.
//!
//! Conditions are also printed as Rein conditions into a small generated
//! source, which is what `rein explain` shows for each rule.

use super::ast::{ActionDecl, Atom, Cond, FieldDecl, FieldType, Lit, Op, Operand, PolicyDoc, Schema, Scope, Subject};
use crate::ast::{
    ActionContractAst, BinaryOp, Combining, ContractsAst, Effect, Expr, ExprKind, ExtraFields, FieldAst, FieldsAst,
    Name, Phase, PolicyFile, RuleAst, Spanned, TypeAst, UnaryOp,
};
use crate::source::{SourceFile, Span};

/// Largest integer a float holds exactly: literals up to it print as
/// integers and compare the same way.
const EXACT_INT: f64 = 9_007_199_254_740_992.0;

/// The files Rein compiles for one Actra policy: the schema's contracts,
/// the policy's version and default, and the rules with their conditions
/// in a generated source.
pub(crate) fn lower(schema: &Schema, policy: &PolicyDoc) -> Vec<PolicyFile> {
    let contracts = ContractsAst {
        actor: Some(fields(&schema.actor, Span::default())),
        snapshot: Some(fields(&schema.snapshot, Span::default())),
        actions: schema.actions.iter().map(action_contract).collect(),
    };
    let schema_file = PolicyFile {
        source: schema.source.clone(),
        version: None,
        default: None,
        default_after: None,
        max_window: None,
        contracts,
        rules: Vec::new(),
        combining: Combining::FirstMatch,
        derived: false,
    };
    let policy_file = PolicyFile {
        source: policy.source.clone(),
        version: Some(Spanned::new(policy.version.to_string(), Span::default())),
        default: Some(Spanned::new(Effect::Allow, Span::default())),
        default_after: None,
        max_window: None,
        contracts: ContractsAst::default(),
        rules: Vec::new(),
        combining: Combining::FirstMatch,
        derived: false,
    };

    // Evaluation order: each action's own rules, then the global ones.
    let ordered = policy
        .rules
        .iter()
        .filter(|r| matches!(r.scope.value, Scope::Action(_)))
        .chain(
            policy
                .rules
                .iter()
                .filter(|r| matches!(r.scope.value, Scope::Global(_))),
        );
    let mut text = String::new();
    let mut pending = Vec::new();
    for rule in ordered {
        let expr = condition(&rule.when, TypeField::Input);
        text.push_str(&format!("# rule {}\n", rule.id.value));
        let start = text.len();
        let printed = expr.to_string();
        text.push_str(&printed);
        text.push('\n');
        pending.push((rule, expr, start, printed));
    }
    let conditions_source = SourceFile::new(format!("{} (as Rein conditions)", policy.source.name()), text);
    let all_actions: Vec<&ActionDecl> = schema.actions.iter().collect();
    let rules = pending
        .into_iter()
        .map(|(rule, expr, start, printed)| {
            let when = with_spans(expr, &printed, start);
            let targets = match &rule.scope.value {
                Scope::Action(name) => vec![name.clone()],
                _ => all_actions
                    .iter()
                    .map(|a| Spanned::new(a.name.value.clone(), rule.scope.span))
                    .collect(),
            };
            RuleAst {
                id: rule.id.clone(),
                targets,
                phase: Phase::Before,
                when: Some(when),
                effect: rule.effect.clone(),
                reason: None,
                approval: None,
                labels: Vec::new(),
                limit: None,
                shadow: false,
                file: 2,
                span: rule.span,
            }
        })
        .collect();
    let rules_file = PolicyFile {
        source: conditions_source,
        version: None,
        default: None,
        default_after: None,
        max_window: None,
        contracts: ContractsAst::default(),
        rules,
        combining: Combining::FirstMatch,
        derived: false,
    };
    vec![schema_file, policy_file, rules_file]
}

fn action_contract(a: &ActionDecl) -> ActionContractAst {
    ActionContractAst {
        name: a.name.clone(),
        input: fields(&a.fields, a.name.span),
        output: None,
        description: None,
        tool: None,
    }
}

/// A domain's fields: all optional, undeclared ones ignored.
fn fields(decls: &[FieldDecl], span: Span) -> FieldsAst {
    FieldsAst {
        fields: decls
            .iter()
            .map(|f| FieldAst {
                name: f.name.clone(),
                ty: Spanned::new(type_ast(f.ty), f.name.span),
                optional: true,
                sensitive: false,
                per_call: false,
                bound: None,
                type_omitted: false,
                constraints: Default::default(),
                description: None,
            })
            .collect(),
        extra: ExtraFields::Ignore,
        span,
    }
}

pub(crate) fn type_ast(t: FieldType) -> TypeAst {
    match t {
        FieldType::String => TypeAst::String,
        FieldType::Number => TypeAst::Number,
        FieldType::Boolean => TypeAst::Bool,
    }
}

/// Uses the spans of the printed text when it reads back as the same
/// expression; otherwise (a field name that is no identifier, such as
/// `a b`) every node points at the whole condition.
fn with_spans(expr: Expr, printed: &str, start: usize) -> Expr {
    let offset = u32::try_from(start).unwrap_or(u32::MAX);
    if let Ok(mut parsed) = crate::syntax::cel::parse(printed) {
        if parsed.to_string() == printed {
            parsed.shift(&|o| o.saturating_add(offset));
            return parsed;
        }
    }
    let whole = Span::new(start, start + printed.len());
    let mut expr = expr;
    set_span(&mut expr, whole);
    expr
}

fn set_span(e: &mut Expr, span: Span) {
    e.span = span;
    match &mut e.kind {
        ExprKind::Select { operand, field } => {
            field.span = span;
            set_span(operand, span);
        }
        ExprKind::Call { target, function, args } => {
            function.span = span;
            if let Some(t) = target {
                set_span(t, span);
            }
            args.iter_mut().for_each(|a| set_span(a, span));
        }
        ExprKind::List(items) => items.iter_mut().for_each(|a| set_span(a, span)),
        ExprKind::Unary { operand, .. } => set_span(operand, span),
        ExprKind::Binary { lhs, rhs, .. } => {
            set_span(lhs, span);
            set_span(rhs, span);
        }
        _ => {}
    }
}

fn e(kind: ExprKind) -> Expr {
    Expr {
        kind,
        span: Span::default(),
    }
}

fn name(text: &str) -> Name {
    Name {
        text: text.to_string(),
        span: Span::default(),
    }
}

fn binary(op: BinaryOp, lhs: Expr, rhs: Expr) -> Expr {
    e(ExprKind::Binary {
        op,
        lhs: Box::new(lhs),
        rhs: Box::new(rhs),
    })
}

/// `&&` or `||` over a list: a chain while short, a balanced tree beyond,
/// so that long `all`/`any` lists stay within the parser's and the
/// checker's depth limits.
pub(crate) fn join(op: BinaryOp, mut items: Vec<Expr>) -> Expr {
    match items.len() {
        0 => e(ExprKind::Bool(op == BinaryOp::And)),
        1 => items.pop().unwrap_or_else(|| e(ExprKind::Bool(true))),
        n if n <= 8 => {
            let mut it = items.into_iter();
            let first = it.next().unwrap_or_else(|| e(ExprKind::Bool(true)));
            it.fold(first, |acc, x| binary(op, acc, x))
        }
        n => {
            let right = items.split_off(n / 2);
            binary(op, join(op, items), join(op, right))
        }
    }
}

/// The variable a domain is read from in Rein's conditions.
pub(crate) fn root(domain: &str) -> &'static str {
    match domain {
        "action" => "input",
        "actor" => "actor",
        _ => "snapshot",
    }
}

/// How `action.type` is read: as the input field the schema declares, or
/// (in converted native policies, whose requests name the action apart
/// from its input) as the action's name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TypeField {
    Input,
    ActionName,
}

fn is_action_type(s: &Subject, mode: TypeField) -> bool {
    mode == TypeField::ActionName && s.domain.value == "action" && s.field.value == "type"
}

fn field(s: &Subject, mode: TypeField) -> Expr {
    if is_action_type(s, mode) {
        return e(ExprKind::Ident("action".to_string()));
    }
    e(ExprKind::Select {
        operand: Box::new(e(ExprKind::Ident(root(&s.domain.value).to_string()))),
        field: name(&s.field.value),
    })
}

/// `has(field)`; nothing for the action's name, which is always there.
fn has(s: &Subject, mode: TypeField) -> Option<Expr> {
    if is_action_type(s, mode) {
        return None;
    }
    Some(e(ExprKind::Call {
        target: None,
        function: name("has"),
        args: vec![field(s, mode)],
    }))
}

fn literal(l: &Lit) -> Expr {
    e(match l {
        Lit::Str(s) => ExprKind::String(s.clone()),
        Lit::Bool(b) => ExprKind::Bool(*b),
        Lit::Num(n) if n.fract() == 0.0 && n.abs() <= EXACT_INT => ExprKind::Int(*n as i64),
        Lit::Num(n) => ExprKind::Float(*n),
    })
}

/// A rule's condition as a Rein expression.
pub(crate) fn condition(c: &Cond, mode: TypeField) -> Expr {
    match c {
        Cond::Atom(a) => atom(a, mode),
        Cond::All(items, _) => join(BinaryOp::And, items.iter().map(|a| atom(a, mode)).collect()),
        Cond::Any(items, _) => join(BinaryOp::Or, items.iter().map(|a| atom(a, mode)).collect()),
    }
}

/// One comparison, false when a field it reads is missing.
fn atom(a: &Atom, mode: TypeField) -> Expr {
    let op = Op::parse(&a.operator.value).unwrap_or(Op::Equals);
    let lhs = field(&a.subject, mode);
    let mut guard: Vec<Expr> = has(&a.subject, mode).into_iter().collect();
    let is_nan = |l: &Lit| matches!(l, Lit::Num(n) if n.is_nan());
    let cmp = match (&a.value, op) {
        // NaN equals and orders with nothing; `!=` holds for any number.
        (Operand::Literal(l), Op::Equals | Op::GreaterThan | Op::LessThan) if is_nan(&l.value) => {
            return e(ExprKind::Bool(false))
        }
        (Operand::Literal(l), Op::NotEquals) if is_nan(&l.value) => {
            return has(&a.subject, mode).unwrap_or_else(|| e(ExprKind::Bool(true)))
        }
        (Operand::Literal(l), _) => literal(&l.value),
        (Operand::List(items, _), _) => e(ExprKind::List(
            items
                .iter()
                .filter(|l| !is_nan(&l.value))
                .map(|l| literal(&l.value))
                .collect(),
        )),
        (Operand::Subject(s), _) => {
            guard.extend(has(s, mode));
            field(s, mode)
        }
    };
    let test = match op {
        Op::Equals => binary(BinaryOp::Eq, lhs, cmp),
        Op::NotEquals => binary(BinaryOp::Ne, lhs, cmp),
        Op::GreaterThan => binary(BinaryOp::Gt, lhs, cmp),
        Op::LessThan => binary(BinaryOp::Lt, lhs, cmp),
        Op::In => binary(BinaryOp::In, lhs, cmp),
        Op::NotIn => e(ExprKind::Unary {
            op: UnaryOp::Not,
            operand: Box::new(binary(BinaryOp::In, lhs, cmp)),
        }),
    };
    guard.push(test);
    join(BinaryOp::And, guard)
}
