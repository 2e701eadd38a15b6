//! Checks a policy against its schema as Actra's compiler does (scopes,
//! domains, fields, operators, types), plus the checks Rein adds: rule ids
//! must be unique and non-empty, and actor-scoped rules, which Actra
//! stores but never evaluates, are flagged. Every problem is reported, not
//! only the first.

use super::ast::{Atom, Cond, FieldDecl, FieldType, Lit, Op, Operand, PolicyDoc, Rule, Schema, Scope, Subject};
use crate::diagnostics::{did_you_mean, Diagnostic};
use crate::source::Span;
use rustc_hash::FxHashMap;

/// The three domains a subject can name.
pub(crate) const DOMAINS: [&str; 3] = ["action", "actor", "snapshot"];

/// Checks every rule; problems go to `diags`.
pub(crate) fn check(schema: &Schema, policy: &PolicyDoc, diags: &mut Vec<Diagnostic>) {
    for a in &schema.actions {
        if let Some(t) = a.fields.iter().rev().find(|f| f.name.value == "type") {
            if t.ty != FieldType::String {
                diags.push(
                    Diagnostic::error(
                        &schema.source,
                        t.name.span,
                        format!(
                            "field `type` of action `{}` is declared as a {}, but `action.type` is the action's name",
                            a.name.value,
                            t.ty.as_str()
                        ),
                    )
                    .warning()
                    .with_help("every request for this action breaks its contract in Rein (Actra never matches the field); declare `type: string` or drop it"),
                );
            }
        }
    }
    let file = &policy.source;
    let mut seen: FxHashMap<&str, Span> = FxHashMap::default();
    for rule in &policy.rules {
        let id = &rule.id;
        if id.value.trim().is_empty() {
            diags.push(Diagnostic::error(file, id.span, "this rule's `id` is empty").with_help(
                "give every rule a unique, non-empty id: decisions and the audit log name the rule that decided",
            ));
        } else if let Some(first) = seen.get(id.value.as_str()) {
            let (line, _) = file.line_col(first.start as usize);
            diags.push(
                Diagnostic::error(file, id.span, format!("rule id `{}` is used twice", id.value)).with_help(format!(
                    "it was first used on line {line}; with two rules of one id a decision cannot say which rule decided (Actra accepts this, Rein does not)"
                )),
            );
        } else {
            seen.insert(&id.value, id.span);
        }
        check_rule(schema, rule, file, diags);
    }
}

fn check_rule(schema: &Schema, rule: &Rule, file: &crate::source::SourceFile, diags: &mut Vec<Diagnostic>) {
    let no_fields: &[FieldDecl] = &[];
    let action_fields = match &rule.scope.value {
        Scope::Action(name) => match schema.action(&name.value) {
            Some(a) => Some(a.fields.as_slice()),
            None => {
                let known = schema.actions.iter().map(|a| a.name.value.as_str());
                let help = match did_you_mean(&name.value, known) {
                    Some(s) => format!("did you mean `{s}`?"),
                    None if schema.actions.is_empty() => "the schema declares no actions".to_string(),
                    None => format!(
                        "the schema declares {}",
                        schema
                            .actions
                            .iter()
                            .map(|a| format!("`{}`", a.name.value))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                };
                diags.push(
                    Diagnostic::error(
                        file,
                        name.span,
                        format!(
                            "rule `{}` is scoped to action `{}`, which the schema does not declare",
                            rule.id.value, name.value
                        ),
                    )
                    .with_help(help),
                );
                // The fields are unknown: skip the checks that need them.
                None
            }
        },
        Scope::Global(true) => Some(no_fields),
        Scope::Global(false) => {
            diags.push(
                Diagnostic::error(file, rule.scope.span, "`global: false` is not a scope").with_help(
                    "write `scope: {global: true}` for a rule about every action, or `scope: {action: <name>}`",
                ),
            );
            Some(no_fields)
        }
        Scope::Actor(name) => {
            diags.push(
                Diagnostic::error(
                    file,
                    rule.scope.span,
                    format!("rule `{}` is scoped to actor `{}` and will never apply", rule.id.value, name.value),
                )
                .warning()
                .with_help(
                    "Actra stores actor-scoped rules but never evaluates them, and Rein's Actra mode does the same; to decide on the actor, use `scope: {global: true}` with a condition on `actor.<field>`",
                ),
            );
            Some(no_fields)
        }
    };
    let Some(action_fields) = action_fields else {
        return;
    };
    let cx = RuleCx {
        schema,
        action_fields,
        global: !matches!(rule.scope.value, Scope::Action(_)),
        file,
    };
    match &rule.when {
        Cond::Atom(a) => cx.atom(a, diags),
        Cond::All(items, span) | Cond::Any(items, span) => {
            if items.len() < 2 {
                let key = if matches!(rule.when, Cond::All(..)) {
                    "all"
                } else {
                    "any"
                };
                diags.push(
                    Diagnostic::error(
                        file,
                        *span,
                        format!(
                            "`{key}` holds {} comparison{}; Actra needs at least two",
                            items.len(),
                            if items.len() == 1 { "" } else { "s" }
                        ),
                    )
                    .with_help("write a single comparison without `all`/`any`"),
                );
            }
            for a in items {
                cx.atom(a, diags);
            }
        }
    }
}

struct RuleCx<'a> {
    schema: &'a Schema,
    action_fields: &'a [FieldDecl],
    global: bool,
    file: &'a crate::source::SourceFile,
}

impl RuleCx<'_> {
    fn error(&self, span: Span, message: impl Into<String>) -> Diagnostic {
        Diagnostic::error(self.file, span, message)
    }

    /// The type of a subject's field, or a diagnostic.
    fn subject(&self, s: &Subject, diags: &mut Vec<Diagnostic>) -> Option<FieldType> {
        let fields = match s.domain.value.as_str() {
            "action" => self.action_fields,
            "actor" => self.schema.actor.as_slice(),
            "snapshot" => self.schema.snapshot.as_slice(),
            other => {
                let help = match did_you_mean(other, DOMAINS) {
                    Some(d) => format!("did you mean `{d}`?"),
                    None if other == "input" => "Actra calls the action's fields `action`".to_string(),
                    None => "the domains are `action`, `actor` and `snapshot`".to_string(),
                };
                diags.push(
                    self.error(s.domain.span, format!("unknown domain `{other}`"))
                        .with_help(help),
                );
                return None;
            }
        };
        if let Some(f) = fields.iter().rev().find(|f| f.name.value == s.field.value) {
            return Some(f.ty);
        }
        let d = self.error(
            s.field.span,
            format!("unknown field `{}` in `{}`", s.field.value, s.domain.value),
        );
        let help = if s.domain.value == "action" && self.global {
            "a rule that is not scoped to one action cannot read `action` fields: scope it with `scope: {action: <name>}`".to_string()
        } else {
            match did_you_mean(&s.field.value, fields.iter().map(|f| f.name.value.as_str())) {
                Some(n) => format!("did you mean `{n}`?"),
                None if fields.is_empty() => format!("`{}` has no fields here", s.domain.value),
                None => format!(
                    "declared: {}",
                    fields
                        .iter()
                        .map(|f| format!("`{}`", f.name.value))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            }
        };
        diags.push(d.with_help(help));
        None
    }

    fn atom(&self, a: &Atom, diags: &mut Vec<Diagnostic>) {
        let lhs = self.subject(&a.subject, diags);
        let op = Op::parse(&a.operator.value);
        if op.is_none() {
            let names = Op::ALL.iter().map(|(n, _)| *n);
            let help = match did_you_mean(&a.operator.value.to_ascii_lowercase(), names) {
                Some(n) => format!("did you mean `{n}`?"),
                None => match a.operator.value.as_str() {
                    ">" | "gt" => "write `greater_than`".to_string(),
                    "<" | "lt" => "write `less_than`".to_string(),
                    "==" | "eq" => "write `equals`".to_string(),
                    "!=" | "ne" => "write `not_equals`".to_string(),
                    _ => "the operators are `equals`, `not_equals`, `greater_than` and `less_than` (and `in`, `not_in` with a list); Actra has no `>=`/`<=`".to_string(),
                },
            };
            diags.push(
                self.error(a.operator.span, format!("unknown operator `{}`", a.operator.value))
                    .with_help(help),
            );
        }
        let rhs = match &a.value {
            Operand::Subject(s) => self.subject(s, diags),
            Operand::Literal(l) => Some(l.value.ty()),
            Operand::List(items, _) => match (lhs, items.iter().find(|l| Some(l.value.ty()) != lhs)) {
                (Some(lhs), Some(bad)) => {
                    diags.push(self.error(
                        bad.span,
                        format!(
                            "type mismatch: `{}` is a {}, but this item is {}",
                            a.subject.path(),
                            lhs.as_str(),
                            article(bad.value.ty())
                        ),
                    ));
                    None
                }
                _ => lhs,
            },
        };
        let (Some(op), Some(lhs)) = (op, lhs) else {
            return;
        };
        let path = a.subject.path();
        match (op, &a.value) {
            (Op::In | Op::NotIn, Operand::List(..)) => return,
            (Op::In | Op::NotIn, _) => {
                diags.push(
                    self.error(a.operator.span, format!("`{}` needs a list of values", op.as_str())).with_help(format!(
                        "write `value: {{literal: [a, b]}}` (Actra itself refuses `{}` for every type; Rein reads it with a list)",
                        op.as_str()
                    )),
                );
                return;
            }
            (_, Operand::List(_, span)) => {
                diags.push(
                    self.error(*span, format!("`{}` compares with one value, not a list", op.as_str()))
                        .with_help("use `in` or `not_in` to test membership in a list"),
                );
                return;
            }
            _ => {}
        }
        if matches!(op, Op::GreaterThan | Op::LessThan) && lhs != FieldType::Number {
            diags.push(
                self.error(
                    a.operator.span,
                    format!("`{}` compares numbers, but `{path}` is a {}", op.as_str(), lhs.as_str()),
                )
                .with_help("strings and booleans take `equals` and `not_equals` only"),
            );
            return;
        }
        let Some(rhs) = rhs else { return };
        if rhs != lhs {
            let (span, what) = match &a.value {
                Operand::Literal(l) => (l.span, format!("the literal is {}", article(rhs))),
                Operand::Subject(s) => (s.span, format!("`{}` is a {}", s.path(), rhs.as_str())),
                Operand::List(_, span) => (*span, format!("the list holds {}", article(rhs))),
            };
            let mut d = self.error(
                span,
                format!("type mismatch: `{path}` is a {}, but {what}", lhs.as_str()),
            );
            if let Operand::Literal(l) = &a.value {
                if let (Lit::Str(s), FieldType::Number | FieldType::Boolean) = (&l.value, lhs) {
                    d = d.with_help(format!(
                        "`{s}` is read as text; write it without quotes (Actra's YAML reads `010`, `1_000` and `yes` as text too)"
                    ));
                } else if lhs == FieldType::String {
                    d = d.with_help("quote the value to compare text");
                }
            }
            diags.push(d);
        }
    }
}

fn article(ty: FieldType) -> &'static str {
    match ty {
        FieldType::String => "a string",
        FieldType::Number => "a number",
        FieldType::Boolean => "a boolean",
    }
}
