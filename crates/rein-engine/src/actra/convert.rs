//! `rein convert`: prints the native policy that decides as an Actra
//! schema and policy do.
//!
//! Actra decides by first match (an action's own rules in file order, then
//! the global rules, then `allow`); native rules all count at once and
//! `block` beats `require_approval` beats `allow`. The converted rules are
//! therefore made exclusive: each rule's condition also requires that none
//! of the rules before it, in Actra's order, holds. At most one rule
//! matches any request, and it is the rule Actra would report.
//!
//! A global rule comes after different rules for each action, so it
//! becomes one native rule for the actions that have no rules of their
//! own (keeping its id) and one per action that has some (`<id>@<action>`).
//! Actor-scoped rules, which Actra never evaluates, are left out. Every
//! field is optional, as in Actra; `action.type` becomes the native
//! `action` variable (the action's name). Native contracts refuse fields
//! they do not declare, where Actra ignores them: declare any extra field
//! the callers send.

use super::ast::{FieldDecl, FieldType, PolicyDoc, Rule, Schema, Scope};
use super::lower::{condition, join, TypeField};
use crate::ast::{BinaryOp, Expr, ExprKind, UnaryOp};
use crate::diagnostics::{Diagnostic, LoadError, Severity};
use crate::source::{SourceFile, Span};
use crate::syntax::native::{valid_action_name, valid_field_name};
use crate::syntax::yaml::{self, YamlValue};
use std::fmt::Write;
use std::path::Path;

/// A converted policy.
#[derive(Clone, Debug)]
pub struct Conversion {
    /// The native policy file's text.
    pub text: String,
    /// Warnings about the Actra files (they load, but something is off).
    pub warnings: Vec<Diagnostic>,
}

/// Converts Actra schema and policy files to one native policy file.
pub fn convert(schema: &Path, policy: &Path) -> Result<Conversion, LoadError> {
    let mut diags = Vec::new();
    let schema = super::read_source(schema, &mut diags);
    let policy = super::read_source(policy, &mut diags);
    match (schema, policy) {
        (Some(s), Some(p)) => convert_sources(&s, &p),
        _ => Err(LoadError::new(diags)),
    }
}

/// [`convert`] from text (named `schema.yaml` and `policy.yaml`).
pub fn convert_strs(schema: &str, policy: &str) -> Result<Conversion, LoadError> {
    convert_sources(
        &SourceFile::new("schema.yaml", schema),
        &SourceFile::new("policy.yaml", policy),
    )
}

fn convert_sources(schema_file: &SourceFile, policy_file: &SourceFile) -> Result<Conversion, LoadError> {
    let mut diags = Vec::new();
    let schema = super::read::read_schema(schema_file, &mut diags);
    let policy = super::read::read_policy(policy_file, &mut diags);
    let (Some(schema), Some(policy)) = (schema, policy) else {
        return Err(LoadError::new(diags));
    };
    super::check::check(&schema, &policy, &mut diags);
    convertible(&schema, &mut diags);
    if diags.iter().any(|d| d.severity == Severity::Error) {
        return Err(LoadError::new(diags));
    }
    let text = print(&schema, &policy);
    // The output must load: a converter that printed a broken file would
    // only move the problem.
    if let Err(e) = crate::policy::Policy::from_sources([("converted.yaml", text.as_str())]) {
        let mut d = Diagnostic::general("internal error: the converted policy does not load");
        d.help = Some(e.to_string());
        diags.push(d);
        return Err(LoadError::new(diags));
    }
    Ok(Conversion { text, warnings: diags })
}

/// Names the native format cannot hold.
fn convertible(schema: &Schema, diags: &mut Vec<Diagnostic>) {
    let file = &schema.source;
    let field_names = |fields: &[FieldDecl], diags: &mut Vec<Diagnostic>| {
        for f in fields {
            if !valid_field_name(&f.name.value) {
                diags.push(
                    Diagnostic::error(
                        file,
                        f.name.span,
                        format!("field `{}` has no native spelling", f.name.value),
                    )
                    .with_help("native field names start with a letter or `_` and hold letters, digits and `_`; rename it to convert"),
                );
            }
        }
    };
    field_names(&schema.actor, diags);
    // The native format reserves `actor.chain` for the delegation chain.
    for f in schema
        .actor
        .iter()
        .filter(|f| f.name.value == crate::check::CHAIN_FIELD)
    {
        diags.push(
            Diagnostic::error(
                file,
                f.name.span,
                format!("actor field `{}` has no native spelling", f.name.value),
            )
            .with_help(
                "the native format reserves `actor.chain` for the delegation chain (a list of `{kind, id}`); \
                 rename the field to convert",
            ),
        );
    }
    field_names(&schema.snapshot, diags);
    for a in &schema.actions {
        if !valid_action_name(&a.name.value) {
            diags.push(
                Diagnostic::error(
                    file,
                    a.name.span,
                    format!("action `{}` has no native spelling", a.name.value),
                )
                .with_help("native action names hold letters, digits, `_`, `-` and `.`; rename it to convert"),
            );
        }
        let (types, others): (Vec<FieldDecl>, Vec<FieldDecl>) =
            a.fields.iter().cloned().partition(|f| f.name.value == "type");
        field_names(&others, diags);
        if let Some(t) = types.last() {
            if t.ty != FieldType::String {
                diags.push(
                    Diagnostic::error(
                        file,
                        t.name.span,
                        format!(
                            "field `type` of action `{}` is declared as a {}",
                            a.name.value,
                            t.ty.as_str()
                        ),
                    )
                    .with_help(
                        "`action.type` is the action's name, a string; declare it as `string` (or drop it) to convert",
                    ),
                );
            }
        }
    }
}

/// A name or text as a YAML scalar: plain when it reads back as the same
/// string, double-quoted otherwise.
fn scalar(s: &str) -> String {
    let line = format!("k: {s}\n");
    let plain_ok = !s.is_empty()
        && s.trim() == s
        && matches!(yaml::parse(&line).map(|n| n.value), Ok(YamlValue::Map(ref m))
            if m.len() == 1 && m[0].1.value == YamlValue::String(s.to_string()));
    if plain_ok {
        s.to_string()
    } else {
        serde_json::Value::String(s.to_string()).to_string()
    }
}

/// Field declarations; `skip_type` leaves out an action's `type`, which
/// native requests carry as the action's name.
fn fields_block(out: &mut String, fields: &[FieldDecl], indent: usize, skip_type: bool) {
    let pad = " ".repeat(indent);
    for f in fields.iter().filter(|f| !(skip_type && f.name.value == "type")) {
        let ty = match f.ty {
            FieldType::String => "string?",
            FieldType::Number => "number?",
            FieldType::Boolean => "bool?",
        };
        let _ = writeln!(out, "{pad}{}: {ty}", scalar(&f.name.value));
    }
}

/// `!(cond)` for an earlier rule.
fn not(e: Expr) -> Expr {
    Expr {
        kind: ExprKind::Unary {
            op: UnaryOp::Not,
            operand: Box::new(e),
        },
        span: Span::default(),
    }
}

fn cond(r: &Rule) -> Expr {
    condition(&r.when, TypeField::ActionName)
}

/// A rule's own condition, then the negations of the rules before it: the
/// conjuncts of its native condition.
fn exclusive(own: Expr, before: Vec<Expr>) -> Vec<Expr> {
    let mut parts = vec![own];
    parts.extend(before.into_iter().map(not));
    parts
}

fn print(schema: &Schema, policy: &PolicyDoc) -> String {
    let mut out = String::new();
    let base = |f: &SourceFile| {
        Path::new(f.name())
            .file_name()
            .map_or_else(|| f.name().to_string(), |n| n.to_string_lossy().into_owned())
    };
    let _ = writeln!(
        out,
        "# Converted by `rein convert` from the Actra schema `{}` and policy `{}`.",
        base(&schema.source),
        base(&policy.source)
    );
    out.push_str(
        "#\n\
         # Actra decides by first match: an action's own rules in file order, then\n\
         # the global rules, then `allow`. Native rules all count at once, so each\n\
         # rule below also requires that no rule before it (in Actra's order) holds.\n\
         # Every field is optional, as in Actra; undeclared fields are refused here\n\
         # (Actra ignores them), so declare any other field your callers send.\n",
    );
    let _ = writeln!(out, "version: {}", policy.version);
    out.push_str("default: allow\n");
    out.push_str("contracts:\n");
    if !schema.actor.is_empty() {
        out.push_str("  actor:\n");
        fields_block(&mut out, &schema.actor, 4, false);
    }
    if !schema.snapshot.is_empty() {
        out.push_str("  snapshot:\n");
        fields_block(&mut out, &schema.snapshot, 4, false);
    }
    if schema.actions.is_empty() {
        out.push_str("  actions: {}\n");
    } else {
        out.push_str("  actions:\n");
        for a in &schema.actions {
            if a.fields.iter().all(|f| f.name.value == "type") {
                let _ = writeln!(out, "    {}: {{}}", scalar(&a.name.value));
            } else {
                let _ = writeln!(out, "    {}:\n      input:", scalar(&a.name.value));
                fields_block(&mut out, &a.fields, 8, true);
            }
        }
    }

    let actor_rules: Vec<&Rule> = policy
        .rules
        .iter()
        .filter(|r| matches!(r.scope.value, Scope::Actor(_)))
        .collect();
    let globals: Vec<&Rule> = policy
        .rules
        .iter()
        .filter(|r| matches!(r.scope.value, Scope::Global(_)))
        .collect();
    let mut used: Vec<String> = policy.rules.iter().map(|r| r.id.value.clone()).collect();
    let mut rules_out = String::new();
    let mut lone_actions: Vec<&str> = Vec::new();
    for a in &schema.actions {
        let own: Vec<&Rule> = policy
            .rules
            .iter()
            .filter(|r| matches!(&r.scope.value, Scope::Action(n) if n.value == a.name.value))
            .collect();
        if own.is_empty() {
            lone_actions.push(&a.name.value);
            continue;
        }
        let mut before: Vec<Expr> = Vec::new();
        for r in &own {
            rule_text(
                &mut rules_out,
                &r.id.value,
                &[&a.name.value],
                exclusive(cond(r), before.clone()),
                r,
                None,
            );
            before.push(cond(r));
        }
        for (k, g) in globals.iter().enumerate() {
            let mut prior = before.clone();
            prior.extend(globals[..k].iter().map(|g| cond(g)));
            let id = unique(&format!("{}@{}", g.id.value, a.name.value), &mut used);
            let reason = format!(
                "global rule `{}`, for action `{}` (which has rules of its own)",
                g.id.value, a.name.value
            );
            rule_text(
                &mut rules_out,
                &id,
                &[&a.name.value],
                exclusive(cond(g), prior),
                g,
                Some(&reason),
            );
        }
    }
    if !lone_actions.is_empty() {
        for (k, g) in globals.iter().enumerate() {
            let prior: Vec<Expr> = globals[..k].iter().map(|g| cond(g)).collect();
            rule_text(
                &mut rules_out,
                &g.id.value,
                &lone_actions,
                exclusive(cond(g), prior),
                g,
                None,
            );
        }
    }
    if !actor_rules.is_empty() {
        let ids: Vec<String> = actor_rules.iter().map(|r| format!("`{}`", r.id.value)).collect();
        let _ = writeln!(
            out,
            "# Left out: actor-scoped rules, which Actra never evaluates: {}.",
            ids.join(", ")
        );
    }
    if rules_out.is_empty() {
        out.push_str("rules: []\n");
    } else {
        out.push_str("rules:\n");
        out.push_str(&rules_out);
    }
    out
}

/// `base`, or `base-2`, `base-3`... if already taken.
fn unique(base: &str, used: &mut Vec<String>) -> String {
    let mut id = base.to_string();
    let mut n = 2;
    while used.contains(&id) {
        id = format!("{base}-{n}");
        n += 1;
    }
    used.push(id.clone());
    id
}

fn rule_text(out: &mut String, id: &str, actions: &[&str], parts: Vec<Expr>, rule: &Rule, reason: Option<&str>) {
    let _ = writeln!(out, "  - id: {}", scalar(id));
    match actions {
        [one] => {
            let _ = writeln!(out, "    action: {}", scalar(one));
        }
        many => {
            let names: Vec<String> = many.iter().map(|a| scalar(a)).collect();
            let _ = writeln!(out, "    action: [{}]", names.join(", "));
        }
    }
    let count = parts.len();
    let whole = join(BinaryOp::And, parts.clone());
    let text = whole.to_string();
    if text.len() <= 72 && scalar(&text) == text {
        let _ = writeln!(out, "    when: {text}");
    } else if count <= 8 {
        // One conjunct per line: the rule's own condition, then "and not"
        // each rule before it.
        out.push_str("    when: |-\n");
        for (i, p) in parts.iter().enumerate() {
            let part = match p.kind {
                ExprKind::Binary { op: BinaryOp::Or, .. } | ExprKind::Conditional { .. } => format!("({p})"),
                _ => p.to_string(),
            };
            let lead = if i == 0 { "" } else { "&& " };
            let _ = writeln!(out, "      {lead}{part}");
        }
    } else {
        let _ = writeln!(out, "    when: |-\n      {text}");
    }
    let _ = writeln!(out, "    effect: {}", rule.effect.value);
    if let Some(r) = reason {
        let _ = writeln!(out, "    reason: {}", scalar(r));
    }
}
