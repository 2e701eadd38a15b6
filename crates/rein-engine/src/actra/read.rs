//! Reads Actra's schema and policy files into [`super::ast`].
//!
//! Acceptance follows Actra 0.7.8: the same keys are required, a `null`
//! list or mapping reads as empty, strings are taken as written, and where
//! Actra tries several forms in order ("untagged" scopes, conditions and
//! values) the first form that fits wins, as there. What Actra ignores
//! silently (unknown keys, keys that lose to a sibling) is a warning here,
//! so that a typo does not go unnoticed; what it reports as "data did not
//! match any variant" is a pointed error.

use super::ast::{ActionDecl, Atom, Cond, FieldDecl, FieldType, Lit, Operand, PolicyDoc, Rule, Schema, Scope, Subject};
use super::scalars::{self, Typed};
use crate::ast::{Effect, Spanned};
use crate::diagnostics::{did_you_mean, Diagnostic};
use crate::source::{SourceFile, Span};
use crate::syntax::yaml::{self, YamlNode, YamlValue};

/// Reading state for one file.
pub(crate) struct Cx<'a> {
    pub file: &'a SourceFile,
    pub diags: &'a mut Vec<Diagnostic>,
}

/// A mapping read as one of Actra's records: keys as strings, in order.
pub(crate) struct Record<'n> {
    pub entries: Vec<(String, &'n YamlNode, &'n YamlNode)>,
    pub span: Span,
}

impl<'n> Record<'n> {
    pub fn get(&self, key: &str) -> Option<&'n YamlNode> {
        self.entries.iter().find(|(k, _, _)| k == key).map(|(_, _, v)| *v)
    }

    pub fn has(&self, key: &str) -> bool {
        self.get(key).is_some()
    }
}

impl<'a> Cx<'a> {
    pub fn text(&self) -> &'a str {
        self.file.text()
    }

    pub fn error(&mut self, span: Span, message: impl Into<String>) -> &mut Diagnostic {
        self.diags.push(Diagnostic::error(self.file, span, message));
        let last = self.diags.len() - 1;
        &mut self.diags[last]
    }

    pub fn warning(&mut self, span: Span, message: impl Into<String>) -> &mut Diagnostic {
        self.diags.push(Diagnostic::error(self.file, span, message).warning());
        let last = self.diags.len() - 1;
        &mut self.diags[last]
    }

    pub fn typed<'n>(&self, node: &'n YamlNode) -> Typed<'n> {
        scalars::typed(node, self.text())
    }

    /// Parses the file's YAML; an empty file is an error naming `what`
    /// belongs in it.
    pub fn parse(&mut self, what: &str, expected: &str) -> Option<YamlNode> {
        match yaml::parse(self.text()) {
            Ok(root) if matches!(root.value, YamlValue::Null) => {
                self.error(root.span, format!("the {what} file is empty")).help =
                    Some(format!("an Actra {what} is a mapping with {expected}"));
                None
            }
            Ok(root) => Some(root),
            Err(e) => {
                self.error(e.span, format!("invalid YAML: {}", e.message));
                None
            }
        }
    }

    /// A mapping read as a record; `null` reads as an empty one.
    pub fn record<'n>(&mut self, node: &'n YamlNode, what: &str) -> Option<Record<'n>> {
        let entries = match &node.value {
            YamlValue::Map(entries) => entries.as_slice(),
            _ if scalars::is_null(node, self.text()) => &[],
            _ => {
                let found = self.typed(node).kind();
                self.error(node.span, format!("expected {what} to be a mapping, found {found}"));
                return None;
            }
        };
        let mut out = Vec::with_capacity(entries.len());
        for (k, v) in entries {
            match scalars::text_of(k, self.text()) {
                Some(key) => out.push((key, k, v)),
                None => {
                    self.error(
                        k.span,
                        format!("keys of {what} must be names, found {}", self.typed(k).kind()),
                    );
                }
            }
        }
        Some(Record {
            entries: out,
            span: node.span,
        })
    }

    /// Warns about keys Actra ignores.
    pub fn unknown_keys(&mut self, rec: &Record<'_>, known: &[&str], what: &str) {
        for (key, k, _) in &rec.entries {
            if known.contains(&key.as_str()) {
                continue;
            }
            let help = match did_you_mean(key, known.iter().copied()) {
                Some(s) => format!("did you mean `{s}`? Actra ignores unknown keys silently, and so does Rein"),
                None => format!("{what} has {}; Actra ignores other keys, and so does Rein", list(known)),
            };
            self.warning(k.span, format!("unknown key `{key}` in {what} is ignored"))
                .help = Some(help);
        }
    }

    /// A key that must be there.
    pub fn required<'n>(&mut self, rec: &Record<'n>, key: &str, what: &str) -> Option<&'n YamlNode> {
        let found = rec.get(key);
        if found.is_none() {
            self.error(rec.span, format!("{what} has no `{key}`"));
        }
        found
    }

    /// A string as Actra reads one where it expects a string: any scalar,
    /// as written.
    pub fn string(&mut self, node: &YamlNode, what: &str) -> Option<Spanned<String>> {
        match scalars::text_of(node, self.text()) {
            Some(s) => Some(Spanned::new(s, node.span)),
            None => {
                let found = self.typed(node).kind();
                self.error(node.span, format!("expected {what} to be a string, found {found}"));
                None
            }
        }
    }

    /// A `version`: a whole number from 0 to 4294967295 (never checked
    /// further, as in Actra).
    pub fn version(&mut self, node: &YamlNode) -> Option<u32> {
        match self.typed(node) {
            Typed::UInt(v) => match u32::try_from(v) {
                Ok(v) => Some(v),
                Err(_) => {
                    self.error(node.span, format!("`version` {v} is too large")).help =
                        Some("a version is a whole number up to 4294967295".into());
                    None
                }
            },
            other => {
                self.error(
                    node.span,
                    format!("expected `version` to be a whole number, found {}", other.kind()),
                )
                .help = Some("write e.g. `version: 1` (unquoted; Actra refuses a quoted or negative version)".into());
                None
            }
        }
    }

    /// A list; `null` reads as an empty one.
    pub fn list<'n>(&mut self, node: &'n YamlNode, what: &str) -> Option<&'n [YamlNode]> {
        match &node.value {
            YamlValue::Seq(items) => Some(items),
            _ if scalars::is_null(node, self.text()) => Some(&[]),
            _ => {
                let found = self.typed(node).kind();
                self.error(node.span, format!("expected {what} to be a list, found {found}"));
                None
            }
        }
    }

    /// Runs a reader on a scratch list of diagnostics, to try one of
    /// several forms without reporting its errors yet.
    fn trial<T>(&mut self, read: impl FnOnce(&mut Cx<'_>) -> Option<T>) -> (Option<T>, Vec<Diagnostic>) {
        let mut scratch = Vec::new();
        let mut cx = Cx {
            file: self.file,
            diags: &mut scratch,
        };
        let out = read(&mut cx);
        let failed = scratch
            .iter()
            .any(|d| d.severity == crate::diagnostics::Severity::Error);
        if failed {
            (None, scratch)
        } else {
            (out, scratch)
        }
    }
}

fn list(keys: &[&str]) -> String {
    let quoted: Vec<String> = keys.iter().map(|k| format!("`{k}`")).collect();
    match quoted.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("{} and {last}", rest.join(", ")),
        Some((last, _)) => last.clone(),
        None => String::new(),
    }
}

// ---------------------------------------------------------------------------
// Schema
// ---------------------------------------------------------------------------

/// Reads a schema file. `None` when it has errors (already in `diags`).
pub(crate) fn read_schema(file: &SourceFile, diags: &mut Vec<Diagnostic>) -> Option<Schema> {
    let mut cx = Cx { file, diags };
    let root = cx.parse("schema", "`version`, `actions`, `actor` and `snapshot`")?;
    let top = cx.record(&root, "the schema")?;
    cx.unknown_keys(&top, &["version", "actions", "actor", "snapshot"], "the schema");
    let version = cx.required(&top, "version", "the schema").and_then(|n| cx.version(n));
    let actions = cx
        .required(&top, "actions", "the schema")
        .and_then(|n| actions(&mut cx, n));
    let actor = cx
        .required(&top, "actor", "the schema")
        .and_then(|n| domain(&mut cx, n, "actor"));
    let snapshot = cx
        .required(&top, "snapshot", "the schema")
        .and_then(|n| domain(&mut cx, n, "snapshot"));
    let (_, actions, actor, snapshot) = (version?, actions?, actor?, snapshot?);
    Some(Schema {
        source: file.clone(),
        actions,
        actor,
        snapshot,
    })
}

fn actions(cx: &mut Cx<'_>, node: &YamlNode) -> Option<Vec<ActionDecl>> {
    let rec = cx.record(node, "`actions`")?;
    let mut out = Vec::new();
    let mut ok = true;
    for (name, key, body) in &rec.entries {
        let what = format!("action `{name}`");
        let Some(r) = cx.record(body, &what) else {
            ok = false;
            continue;
        };
        cx.unknown_keys(&r, &["fields"], &what);
        let Some(fields_node) = cx.required(&r, "fields", &what) else {
            if let Some(d) = cx.diags.last_mut() {
                d.help = Some(
                    "every action lists its fields, e.g. `fields: {amount: number}` (or `fields: {}` for none)".into(),
                );
            }
            ok = false;
            continue;
        };
        match fields(cx, fields_node, &format!("the fields of action `{name}`")) {
            Some(fields) => out.push(ActionDecl {
                name: Spanned::new(name.clone(), key.span),
                fields,
            }),
            None => ok = false,
        }
    }
    ok.then_some(out)
}

/// `actor:` or `snapshot:`: a record with `fields`.
fn domain(cx: &mut Cx<'_>, node: &YamlNode, name: &str) -> Option<Vec<FieldDecl>> {
    let what = format!("`{name}`");
    let rec = cx.record(node, &what)?;
    cx.unknown_keys(&rec, &["fields"], &what);
    let Some(f) = cx.required(&rec, "fields", &what) else {
        if let Some(d) = cx.diags.last_mut() {
            d.help = Some(format!(
                "write `{name}: {{fields: {{...}}}}`; an empty `fields:` declares no fields"
            ));
        }
        return None;
    };
    fields(cx, f, &format!("the fields of `{name}`"))
}

fn fields(cx: &mut Cx<'_>, node: &YamlNode, what: &str) -> Option<Vec<FieldDecl>> {
    let rec = cx.record(node, what)?;
    let mut out = Vec::new();
    let mut ok = true;
    for (name, key, ty) in &rec.entries {
        match field_type(cx, ty, name) {
            Some(t) => out.push(FieldDecl {
                name: Spanned::new(name.clone(), key.span),
                ty: t,
            }),
            None => ok = false,
        }
    }
    ok.then_some(out)
}

fn field_type(cx: &mut Cx<'_>, node: &YamlNode, field: &str) -> Option<FieldType> {
    let Some(text) = scalars::text_of(node, cx.text()) else {
        let d = cx.error(
            node.span,
            format!("the type of field `{field}` must be `string`, `number` or `boolean`"),
        );
        if let YamlValue::Map(entries) = &node.value {
            if entries
                .iter()
                .any(|(k, _)| matches!(&k.value, YamlValue::String(s) if s == "type"))
            {
                d.help = Some(format!(
                    "Actra's schema takes the type alone: write `{field}: number`, not `{{type: number}}`"
                ));
            }
        }
        return None;
    };
    let ty = match text.as_str() {
        "string" => FieldType::String,
        "number" => FieldType::Number,
        "boolean" => FieldType::Boolean,
        other => {
            let hint = match other.to_ascii_lowercase().as_str() {
                "string" | "str" | "text" => Some("string"),
                "number" | "int" | "integer" | "float" | "double" | "decimal" => Some("number"),
                "boolean" | "bool" => Some("boolean"),
                _ => None,
            };
            let d = cx.error(node.span, format!("unknown type `{other}` for field `{field}`"));
            d.help = Some(match hint {
                Some(h) => {
                    format!("did you mean `{h}`? Actra's types are `string`, `number` and `boolean`, in lower case")
                }
                None => "Actra's types are `string`, `number` and `boolean`".to_string(),
            });
            return None;
        }
    };
    Some(ty)
}

// ---------------------------------------------------------------------------
// Policy
// ---------------------------------------------------------------------------

/// Reads a policy file. `None` when it cannot be read at all; otherwise
/// the rules that could be read, so that they are checked too (errors are
/// in `diags` either way).
pub(crate) fn read_policy(file: &SourceFile, diags: &mut Vec<Diagnostic>) -> Option<PolicyDoc> {
    let mut cx = Cx { file, diags };
    let root = cx.parse("policy", "`version` and `rules`")?;
    let top = cx.record(&root, "the policy")?;
    cx.unknown_keys(&top, &["version", "rules"], "the policy");
    let version = cx.required(&top, "version", "the policy").and_then(|n| cx.version(n));
    let rules_node = cx.required(&top, "rules", "the policy");
    let mut rules = Vec::new();
    if let Some(items) = rules_node.and_then(|n| cx.list(n, "`rules`")) {
        for item in items {
            if let Some(r) = rule(&mut cx, item) {
                rules.push(r);
            }
        }
    }
    Some(PolicyDoc {
        source: file.clone(),
        version: version.unwrap_or_default(),
        rules,
    })
}

fn rule(cx: &mut Cx<'_>, node: &YamlNode) -> Option<Rule> {
    let rec = cx.record(node, "a rule")?;
    let id = cx
        .required(&rec, "id", "this rule")
        .and_then(|n| cx.string(n, "the rule `id`"));
    let named = match &id {
        Some(id) => format!("rule `{}`", id.value),
        None => "this rule".to_string(),
    };
    for (key, k, _) in &rec.entries {
        if !["id", "scope", "when", "effect"].contains(&key.as_str()) {
            let help = match did_you_mean(key, ["id", "scope", "when", "effect"]) {
                Some(s) => format!("did you mean `{s}`?"),
                None => {
                    "an Actra rule has `id`, `scope`, `when` and `effect`; Actra ignores other keys silently".into()
                }
            };
            cx.warning(k.span, format!("key `{key}` of {named} is ignored")).help = Some(help);
        }
    }
    let scope = cx.required(&rec, "scope", &named).and_then(|n| scope(cx, n));
    let when = cx.required(&rec, "when", &named).and_then(|n| condition(cx, n));
    let effect = cx.required(&rec, "effect", &named).and_then(|n| effect(cx, n));
    Some(Rule {
        id: id?,
        scope: scope?,
        when: when?,
        effect: effect?,
        span: node.span,
    })
}

fn effect(cx: &mut Cx<'_>, node: &YamlNode) -> Option<Spanned<Effect>> {
    let s = cx.string(node, "`effect`")?;
    if let Some(e) = Effect::parse(&s.value) {
        return Some(Spanned::new(e, s.span));
    }
    let known = ["allow", "block", "require_approval"];
    let d = cx.error(s.span, format!("unknown effect `{}`", s.value));
    d.help = Some(match did_you_mean(&s.value.to_ascii_lowercase(), known) {
        Some(k) => format!("did you mean `{k}`? Actra spells effects exactly `allow`, `block` and `require_approval`"),
        None => "an effect is `allow`, `block` or `require_approval`".into(),
    });
    None
}

/// `scope`: Actra tries `{action}`, then `{actor}`, then `{global}`; the
/// first that fits wins and the other keys are ignored.
fn scope(cx: &mut Cx<'_>, node: &YamlNode) -> Option<Spanned<Scope>> {
    let Typed::Map(_) = cx.typed(node) else {
        let found = cx.typed(node).kind();
        cx.error(node.span, format!("expected `scope` to be a mapping, found {found}"))
            .help = Some("a scope is `{action: <name>}`, `{global: true}` or `{actor: <name>}`".into());
        return None;
    };
    let rec = cx.record(node, "`scope`")?;
    let action = rec.get("action").map(|n| (n, cx.typed(n)));
    let global = rec.get("global").map(|n| (n, cx.typed(n)));
    let actor = rec.get("actor").map(|n| (n, cx.typed(n)));
    let chosen = match (&action, &actor, &global) {
        (Some((n, Typed::Str(s))), _, _) => Some((Scope::Action(Spanned::new(s.clone(), n.span)), "action")),
        (_, Some((n, Typed::Str(s))), _) => Some((Scope::Actor(Spanned::new(s.clone(), n.span)), "actor")),
        (_, _, Some((_, Typed::Bool(b)))) => Some((Scope::Global(*b), "global")),
        _ => None,
    };
    let Some((scope, key)) = chosen else {
        let d = match (&action, &global, &actor) {
            (Some((n, t)), _, _) => cx.error(
                n.span,
                format!("expected `scope.action` to be an action name, found {}", t.kind()),
            ),
            (_, Some((n, t)), _) => cx.error(
                n.span,
                format!("expected `scope.global` to be `true`, found {}", t.kind()),
            ),
            (_, _, Some((n, t))) => cx.error(
                n.span,
                format!("expected `scope.actor` to be a name, found {}", t.kind()),
            ),
            _ => cx.error(node.span, "this scope names no action"),
        };
        d.help = Some("a scope is `{action: <name>}`, `{global: true}` or `{actor: <name>}`".into());
        return None;
    };
    for (k, key_node, _) in &rec.entries {
        if k == key {
            continue;
        }
        let help = if ["action", "global", "actor"].contains(&k.as_str()) {
            format!("Actra keeps the first of `action`, `actor` and `global` that fits and ignores the rest; this is a `{key}` scope")
        } else {
            "a scope has one of `action`, `global` and `actor`; Actra ignores other keys".to_string()
        };
        cx.warning(key_node.span, format!("`scope.{k}` is ignored")).help = Some(help);
    }
    Some(Spanned::new(scope, node.span))
}

/// `when`: a comparison, `{all: [...]}` or `{any: [...]}`, tried in that
/// order as Actra does.
fn condition(cx: &mut Cx<'_>, node: &YamlNode) -> Option<Cond> {
    match &node.value {
        YamlValue::Map(_) => {}
        YamlValue::Seq(_) => {
            cx.error(node.span, "a condition written as a list is not read")
                .help = Some(
                "write the comparison as a mapping: `{subject: {domain: ..., field: ...}, operator: ..., value: ...}` (Actra also reads a list of the three; Rein does not, see docs/actra-compat.md)".into(),
            );
            return None;
        }
        _ => {
            let found = cx.typed(node).kind();
            cx.error(node.span, format!("expected `when` to be a condition, found {found}"))
                .help = Some(
                "a condition is `{subject: {domain, field}, operator, value}`, `{all: [...]}` or `{any: [...]}`".into(),
            );
            return None;
        }
    }
    let rec = cx.record(node, "`when`")?;
    let atom_keys = ["subject", "operator", "value"].iter().any(|k| rec.has(k));
    let (atom_result, atom_diags) = cx.trial(|cx| atom(cx, node));
    if let Some(a) = atom_result {
        cx.diags.extend(atom_diags);
        for k in ["all", "any"] {
            if let Some((_, key, _)) = rec.entries.iter().find(|(n, _, _)| n == k) {
                cx.warning(key.span, format!("`{k}` is ignored: this condition is the comparison beside it"))
                    .help = Some("Actra keeps the first form that fits (a comparison, then `all`, then `any`) and drops the rest; split them into separate rules".into());
            }
        }
        return Some(Cond::Atom(a));
    }
    let mut tried = Vec::new();
    for (k, all) in [("all", true), ("any", false)] {
        let Some(items) = rec.get(k) else { continue };
        let (result, diags) = cx.trial(|cx| group(cx, items, k));
        if let Some(atoms) = result {
            cx.diags.extend(diags);
            for (other, key, _) in &rec.entries {
                if other != k && ["all", "any", "subject", "operator", "value"].contains(&other.as_str()) {
                    cx.warning(key.span, format!("`{other}` is ignored: this condition is the `{k}` beside it"))
                        .help = Some("Actra keeps the first form that fits (a comparison, then `all`, then `any`) and drops the rest".into());
                }
            }
            return Some(if all {
                Cond::All(atoms, node.span)
            } else {
                Cond::Any(atoms, node.span)
            });
        }
        tried.push(diags);
    }
    // Nothing fits: report the form the author most likely meant.
    if atom_keys {
        cx.diags.extend(atom_diags);
    } else if let Some(diags) = tried.into_iter().next() {
        cx.diags.extend(diags);
    } else {
        cx.error(node.span, "this condition has no comparison")
            .help = Some(
            "a condition is `{subject: {domain, field}, operator, value}`, `{all: [...]}` or `{any: [...]}` (Actra has no `not` and no nesting)".into(),
        );
    }
    None
}

/// The items of `all`/`any`: comparisons only.
fn group(cx: &mut Cx<'_>, node: &YamlNode, key: &str) -> Option<Vec<Atom>> {
    let YamlValue::Seq(items) = &node.value else {
        let found = cx.typed(node).kind();
        cx.error(
            node.span,
            format!("expected `{key}` to be a list of comparisons, found {found}"),
        );
        return None;
    };
    let mut out = Vec::with_capacity(items.len());
    let mut ok = true;
    for item in items {
        if let YamlValue::Map(entries) = &item.value {
            if let Some((k, _)) = entries
                .iter()
                .find(|(k, _)| matches!(&k.value, YamlValue::String(s) if s == "all" || s == "any"))
            {
                cx.error(
                    k.span,
                    format!("`{key}` holds comparisons only: Actra conditions do not nest"),
                )
                .help = Some("write the inner group as its own rule, or use Rein's native format, which nests".into());
                ok = false;
                continue;
            }
        }
        match atom(cx, item) {
            Some(a) => out.push(a),
            None => ok = false,
        }
    }
    ok.then_some(out)
}

/// `{subject, operator, value}`
fn atom(cx: &mut Cx<'_>, node: &YamlNode) -> Option<Atom> {
    match &node.value {
        YamlValue::Map(_) => {}
        YamlValue::Seq(_) => {
            cx.error(node.span, "a comparison written as a list is not read").help =
                Some("write it as a mapping with `subject`, `operator` and `value`".into());
            return None;
        }
        _ => {
            let found = cx.typed(node).kind();
            cx.error(node.span, format!("expected a comparison, found {found}"))
                .help = Some("a comparison is `{subject: {domain, field}, operator, value}`".into());
            return None;
        }
    }
    let rec = cx.record(node, "a comparison")?;
    let subject = cx
        .required(&rec, "subject", "this comparison")
        .and_then(|n| subject(cx, n, "subject"));
    let operator = cx.required(&rec, "operator", "this comparison").and_then(|n| match cx.typed(n) {
        Typed::Str(s) => Some(Spanned::new(s, n.span)),
        other => {
            cx.error(n.span, format!("expected `operator` to be a name, found {}", other.kind()))
                .help = Some("the operators are `equals`, `not_equals`, `greater_than` and `less_than` (and `in`, `not_in` with a list)".into());
            None
        }
    });
    let value = cx
        .required(&rec, "value", "this comparison")
        .and_then(|n| operand(cx, n));
    if let Some(d) = cx.diags.last_mut() {
        if d.message == "this comparison has no `value`" {
            d.help = Some("compare with a literal, `value: {literal: 100}`, or a field, `value: {subject: {domain: actor, field: limit}}`".into());
        }
    }
    Some(Atom {
        subject: subject?,
        operator: operator?,
        value: value?,
    })
}

/// `{domain, field}`
fn subject(cx: &mut Cx<'_>, node: &YamlNode, what: &str) -> Option<Subject> {
    match &node.value {
        YamlValue::Map(_) => {}
        YamlValue::Seq(_) => {
            cx.error(node.span, format!("`{what}` written as a list is not read"))
                .help = Some("write `{domain: action, field: amount}`".into());
            return None;
        }
        _ => {
            let found = cx.typed(node).kind();
            cx.error(node.span, format!("expected `{what}` to be a mapping, found {found}"))
                .help = Some("write `{domain: action, field: amount}`".into());
            return None;
        }
    }
    let rec = cx.record(node, &format!("`{what}`"))?;
    cx.unknown_keys(&rec, &["domain", "field"], &format!("`{what}`"));
    let name = |key: &str, cx: &mut Cx<'_>| -> Option<Spanned<String>> {
        let n = cx.required(&rec, key, &format!("`{what}`"))?;
        match cx.typed(n) {
            Typed::Str(s) => Some(Spanned::new(s, n.span)),
            other => {
                cx.error(
                    n.span,
                    format!("expected `{what}.{key}` to be a name, found {}", other.kind()),
                )
                .help = Some("Actra reads only names written as strings here; quote it".into());
                None
            }
        }
    };
    let domain = name("domain", cx);
    let field = name("field", cx);
    Some(Subject {
        domain: domain?,
        field: field?,
        span: node.span,
    })
}

/// `value`: `{literal: ...}`, then `{subject: ...}`.
fn operand(cx: &mut Cx<'_>, node: &YamlNode) -> Option<Operand> {
    let Typed::Map(_) = cx.typed(node) else {
        let found = cx.typed(node).kind();
        cx.error(node.span, format!("expected `value` to be a mapping, found {found}"))
            .help = Some("write `value: {literal: 100}` or `value: {subject: {domain: ..., field: ...}}`".into());
        return None;
    };
    let rec = cx.record(node, "`value`")?;
    cx.unknown_keys(&rec, &["literal", "subject"], "`value`");
    if let Some(lit_node) = rec.get("literal") {
        let (lit, diags) = cx.trial(|cx| literal_operand(cx, lit_node));
        if let Some(lit) = lit {
            cx.diags.extend(diags);
            if let Some((_, key, _)) = rec.entries.iter().find(|(k, _, _)| k == "subject") {
                cx.warning(key.span, "`value.subject` is ignored: the `literal` beside it wins")
                    .help = Some("Actra keeps `literal` and drops `subject`; remove one of them".into());
            }
            return Some(lit);
        }
        if rec.get("subject").is_none() {
            cx.diags.extend(diags);
            return None;
        }
    }
    match rec.get("subject") {
        Some(s) => subject(cx, s, "value.subject").map(Operand::Subject),
        None => {
            cx.error(node.span, "`value` has neither `literal` nor `subject`").help =
                Some("write `value: {literal: 100}` or `value: {subject: {domain: ..., field: ...}}`".into());
            None
        }
    }
}

fn literal_operand(cx: &mut Cx<'_>, node: &YamlNode) -> Option<Operand> {
    if let YamlValue::Seq(items) = &node.value {
        let mut out = Vec::with_capacity(items.len());
        let mut ok = true;
        for item in items {
            match scalar_literal(cx, item) {
                Some(l) => out.push(l),
                None => ok = false,
            }
        }
        return ok.then_some(Operand::List(out, node.span));
    }
    scalar_literal(cx, node).map(Operand::Literal)
}

fn scalar_literal(cx: &mut Cx<'_>, node: &YamlNode) -> Option<Spanned<Lit>> {
    let lit = match cx.typed(node) {
        Typed::Str(s) => Lit::Str(s),
        Typed::Bool(b) => Lit::Bool(b),
        Typed::UInt(u) => Lit::Num(u as f64),
        Typed::Int(i) => Lit::Num(i as f64),
        Typed::Float(f) => Lit::Num(f),
        Typed::BigInt => {
            cx.error(node.span, "this integer does not fit in 64 bits");
            return None;
        }
        Typed::Null => {
            cx.error(node.span, "a literal cannot be null").help =
                Some("Actra's literals are strings, numbers and booleans; quote `\"null\"` to mean the text".into());
            return None;
        }
        Typed::Map(_) | Typed::Seq(_) => {
            let found = cx.typed(node).kind();
            cx.error(node.span, format!("a literal cannot be {found}"))
                .help = Some("Actra's literals are strings, numbers and booleans (Rein also reads a list of them for `in` and `not_in`)".into());
            return None;
        }
    };
    Some(Spanned::new(lit, node.span))
}
