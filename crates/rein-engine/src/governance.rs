//! Governance: rules about a policy's rules, enforced when the policy
//! loads, in Actra's governance format.
//!
//! ```yaml
//! version: 1
//! governance:
//!   rules:
//!     - id: keep_fraud_guard
//!       applies_to: {actions: [refund]}     # optional gate
//!       select: {where: {effect: block, scope: {global: true}}}
//!       must: {min_count: 1}                # or exists, max_count, forbid, allowed_fields
//!       error: a global fraud block must stay
//! ```
//!
//! A governance rule selects policy rules (by `id`, `effect`, `scope` and
//! the fields their conditions read, all filters optional and combined
//! with "and") and states one constraint on the selection. Every violated
//! governance rule is reported, each naming the policy rules at fault.
//!
//! The same file governs native policies. A native rule is *global* when
//! its targets include `*`; otherwise it is scoped to every action its
//! targets name or match. Its condition reads `domain.field` for every
//! path from `input` (domain `action`, which governance may also call
//! `input`), `actor`, `snapshot` or `output`, by the path's first field.
//!
//! One deliberate difference from Actra: the fields a rule reads include
//! the right-hand side of comparisons (`value: {subject: ...}`). Actra only
//! looks at the left-hand side, so a rule could read a forbidden field
//! past `allowed_fields` by putting it on the right.

use crate::actra::read::{Cx, Record};
use crate::actra::scalars::Typed;
use crate::ast::{Effect, Expr, ExprKind, PolicyFile, Spanned};
use crate::diagnostics::{did_you_mean, Diagnostic};
use crate::source::{SourceFile, Span};

/// A governance file, read.
#[derive(Clone, Debug)]
pub(crate) struct GovernanceDoc {
    pub source: SourceFile,
    pub rules: Vec<GovRule>,
}

/// One governance rule.
#[derive(Clone, Debug)]
pub(crate) struct GovRule {
    pub id: Spanned<String>,
    /// `applies_to.actions`: the rule runs only if some policy rule is
    /// scoped to one of these actions.
    pub applies_to: Option<Vec<String>>,
    pub select: Where,
    pub must: Spanned<Must>,
    pub error: String,
}

/// `select.where`: every filter optional, all must hold.
#[derive(Clone, Debug, Default)]
pub(crate) struct Where {
    pub id: Option<String>,
    pub effect: Option<String>,
    pub global: Option<bool>,
    pub action: Option<String>,
    pub domain: Option<String>,
    pub field: Option<String>,
}

/// The constraint on the selection.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Must {
    Exists(bool),
    MinCount(u64),
    MaxCount(u64),
    Forbid(bool),
    AllowedFields(Vec<String>),
}

/// A policy rule as governance sees it.
#[derive(Clone, Debug)]
pub(crate) struct RuleView {
    pub id: String,
    pub effect: Effect,
    pub scope: ViewScope,
    /// `(domain, field)` read on the left of a comparison (for native
    /// rules: every read).
    pub left: Vec<(String, String)>,
    /// `(domain, field)` read on the right of a comparison.
    pub right: Vec<(String, String)>,
    /// Where the rule is, to name it in messages.
    pub file: SourceFile,
    pub span: Span,
}

/// Which requests a policy rule is about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum ViewScope {
    Global,
    Actions(Vec<String>),
    Actor,
}

/// How to enforce.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Mode {
    /// Count right-hand field references as reads (Rein); Actra does not.
    pub right_hand_reads: bool,
    /// The policy is native: `input` in governance means `action`.
    pub native: bool,
}

// ---------------------------------------------------------------------------
// Reading
// ---------------------------------------------------------------------------

/// Reads a governance file. `None` when it cannot be read at all;
/// otherwise the rules that could be read (errors are in `diags` either
/// way), so that they are enforced too.
pub(crate) fn read(file: &SourceFile, diags: &mut Vec<Diagnostic>) -> Option<GovernanceDoc> {
    let mut cx = Cx { file, diags };
    let root = cx.parse("governance", "`version` and `governance: {rules: [...]}`")?;
    let top = cx.record(&root, "the governance file")?;
    cx.unknown_keys(&top, &["version", "governance"], "the governance file");
    let version = cx
        .required(&top, "version", "the governance file")
        .and_then(|n| cx.version(n));
    let body = cx
        .required(&top, "governance", "the governance file")
        .and_then(|n| cx.record(n, "`governance`"));
    let mut rules = Vec::new();
    if let Some(body) = body {
        cx.unknown_keys(&body, &["rules"], "`governance`");
        if let Some(items) = cx
            .required(&body, "rules", "`governance`")
            .and_then(|n| cx.list(n, "`governance.rules`"))
        {
            for item in items {
                if let Some(r) = rule(&mut cx, item) {
                    rules.push(r);
                }
            }
        }
    }
    // A missing or bad `version` was reported; the rules still count.
    let _ = version;
    Some(GovernanceDoc {
        source: file.clone(),
        rules,
    })
}

fn rule(cx: &mut Cx<'_>, node: &crate::syntax::yaml::YamlNode) -> Option<GovRule> {
    let rec = cx.record(node, "a governance rule")?;
    cx.unknown_keys(
        &rec,
        &["id", "applies_to", "select", "must", "error"],
        "a governance rule",
    );
    let id = cx
        .required(&rec, "id", "this governance rule")
        .and_then(|n| cx.string(n, "the governance rule `id`"));
    let named = match &id {
        Some(id) => format!("governance rule `{}`", id.value),
        None => "this governance rule".to_string(),
    };
    let applies_to = match rec.get("applies_to") {
        Some(n) if !crate::actra::scalars::is_null(n, cx.text()) => {
            let r = cx.record(n, "`applies_to`");
            match r {
                Some(r) => {
                    cx.unknown_keys(&r, &["actions"], "`applies_to`");
                    match cx
                        .required(&r, "actions", "`applies_to`")
                        .and_then(|a| cx.list(a, "`applies_to.actions`"))
                    {
                        Some(items) => {
                            let mut names = Vec::new();
                            for i in items {
                                names.push(cx.string(i, "an action name")?.value);
                            }
                            if names.is_empty() {
                                cx.warning(n.span, format!("{named} applies to no action, so it never runs"));
                            }
                            Some(Some(names))
                        }
                        None => None,
                    }
                }
                None => None,
            }
        }
        _ => Some(None),
    };
    let select = cx
        .required(&rec, "select", &named)
        .and_then(|n| cx.record(n, "`select`"))
        .and_then(|s| {
            cx.unknown_keys(&s, &["where"], "`select`");
            cx.required(&s, "where", "`select`").and_then(|w| filter(cx, w))
        });
    let must = cx.required(&rec, "must", &named).and_then(|n| must(cx, n));
    let error = cx.required(&rec, "error", &named).and_then(|n| cx.string(n, "`error`"));
    if let Some(d) = cx.diags.last_mut() {
        if d.message.ends_with("has no `error`") {
            d.help = Some("every governance rule carries the message shown when it is violated".into());
        }
    }
    Some(GovRule {
        id: id?,
        applies_to: applies_to?,
        select: select?,
        must: must?,
        error: error?.value,
    })
}

/// An optional string filter: absent or `null` means no filter.
fn opt_string(cx: &mut Cx<'_>, rec: &Record<'_>, key: &str) -> Option<Option<String>> {
    match rec.get(key) {
        Some(n) if !crate::actra::scalars::is_null(n, cx.text()) => {
            cx.string(n, &format!("`{key}`")).map(|s| Some(s.value))
        }
        _ => Some(None),
    }
}

fn filter(cx: &mut Cx<'_>, node: &crate::syntax::yaml::YamlNode) -> Option<Where> {
    let rec = cx.record(node, "`where`")?;
    for (key, k, _) in &rec.entries {
        if !["id", "effect", "scope", "when"].contains(&key.as_str()) {
            let hint = did_you_mean(key, ["id", "effect", "scope", "when"])
                .map(|s| format!("did you mean `{s}`? "))
                .unwrap_or_default();
            cx.warning(k.span, format!("unknown filter `{key}` is ignored"))
                .help = Some(format!(
                "{hint}the filters are `id`, `effect`, `scope` and `when`; an ignored filter selects more rules than meant"
            ));
        }
    }
    let mut w = Where {
        id: opt_string(cx, &rec, "id")?,
        effect: opt_string(cx, &rec, "effect")?,
        ..Where::default()
    };
    if let (Some(e), Some(n)) = (&w.effect, rec.get("effect")) {
        if Effect::parse(e).is_none() {
            let hint = did_you_mean(e, ["allow", "block", "require_approval"])
                .map(|s| format!("did you mean `{s}`? "))
                .unwrap_or_default();
            cx.warning(
                n.span,
                format!("no rule has effect `{e}`, so this filter selects nothing"),
            )
            .help = Some(format!("{hint}the effects are `allow`, `block` and `require_approval`"));
        }
    }
    if let Some(s) = rec
        .get("scope")
        .filter(|n| !crate::actra::scalars::is_null(n, cx.text()))
    {
        let sr = cx.record(s, "`where.scope`")?;
        for (key, k, _) in &sr.entries {
            match key.as_str() {
                "global" | "action" => {}
                "actor" => {
                    cx.warning(k.span, "`where.scope.actor` is ignored")
                        .help = Some("governance cannot select actor-scoped rules; Actra ignores this key too, so the filter does not narrow the selection".into());
                }
                other => {
                    cx.warning(k.span, format!("unknown key `{other}` in `where.scope` is ignored"))
                        .help = Some("a scope filter has `global` and `action`".into());
                }
            }
        }
        w.global = match sr.get("global") {
            Some(g) => match cx.typed(g) {
                Typed::Null => None,
                Typed::Bool(b) => Some(b),
                other => {
                    cx.error(
                        g.span,
                        format!(
                            "expected `where.scope.global` to be `true` or `false`, found {}",
                            other.kind()
                        ),
                    );
                    return None;
                }
            },
            None => None,
        };
        w.action = opt_string(cx, &sr, "action")?;
        if w.global == Some(true) && w.action.is_some() {
            cx.warning(
                s.span,
                "this filter selects nothing: a global rule is scoped to no single action",
            );
        }
    }
    if let Some(wn) = rec
        .get("when")
        .filter(|n| !crate::actra::scalars::is_null(n, cx.text()))
    {
        let wr = cx.record(wn, "`where.when`")?;
        cx.unknown_keys(&wr, &["subject"], "`where.when`");
        if let Some(sn) = wr
            .get("subject")
            .filter(|n| !crate::actra::scalars::is_null(n, cx.text()))
        {
            let sr = cx.record(sn, "`where.when.subject`")?;
            cx.unknown_keys(&sr, &["domain", "field"], "`where.when.subject`");
            w.domain = opt_string(cx, &sr, "domain")?;
            w.field = opt_string(cx, &sr, "field")?;
        }
    }
    Some(w)
}

/// `must`: Actra tries `exists`, `min_count`, `max_count`, `forbid`,
/// `allowed_fields` in that order; the first that fits wins.
fn must(cx: &mut Cx<'_>, node: &crate::syntax::yaml::YamlNode) -> Option<Spanned<Must>> {
    let help = "a constraint is one of `exists: true|false`, `min_count: n`, `max_count: n`, `forbid: true` and `allowed_fields: [domain.field, ...]`";
    let Typed::Map(_) = cx.typed(node) else {
        let found = cx.typed(node).kind();
        cx.error(node.span, format!("expected `must` to be a mapping, found {found}"))
            .help = Some(help.into());
        return None;
    };
    let rec = cx.record(node, "`must`")?;
    let typed = |key: &str, cx: &Cx<'_>| rec.get(key).map(|n| cx.typed(n));
    let chosen = if let Some(Typed::Bool(b)) = typed("exists", cx) {
        Some((Must::Exists(b), "exists"))
    } else if let Some(Typed::UInt(n)) = typed("min_count", cx) {
        Some((Must::MinCount(n), "min_count"))
    } else if let Some(Typed::UInt(n)) = typed("max_count", cx) {
        Some((Must::MaxCount(n), "max_count"))
    } else if let Some(Typed::Bool(b)) = typed("forbid", cx) {
        Some((Must::Forbid(b), "forbid"))
    } else if let Some(Typed::Seq(items)) = typed("allowed_fields", cx) {
        let names: Option<Vec<String>> = items.iter().map(|i| cx.typed(i).as_str().map(str::to_string)).collect();
        names.map(|n| (Must::AllowedFields(n), "allowed_fields"))
    } else {
        None
    };
    let Some((must, key)) = chosen else {
        let known = ["exists", "min_count", "max_count", "forbid", "allowed_fields"];
        let d = match rec.entries.iter().find(|(k, _, _)| known.contains(&k.as_str())) {
            Some((k, _, v)) => {
                let want = match k.as_str() {
                    "exists" | "forbid" => "`true` or `false`",
                    "allowed_fields" => "a list of `domain.field` strings",
                    _ => "a whole number, 0 or more",
                };
                cx.error(
                    v.span,
                    format!("expected `{k}` to be {want}, found {}", cx.typed(v).kind()),
                )
            }
            None => cx.error(node.span, "`must` states no constraint"),
        };
        d.help = Some(help.into());
        return None;
    };
    for (k, key_node, _) in &rec.entries {
        if k != key {
            cx.warning(key_node.span, format!("`must.{k}` is ignored: this rule's constraint is `{key}`"))
                .help = Some("a governance rule states one constraint (Actra keeps the first of `exists`, `min_count`, `max_count`, `forbid`, `allowed_fields` that fits); write one rule per constraint".into());
        }
    }
    if must == Must::Forbid(false) {
        cx.warning(node.span, "`forbid: false` never fails");
    }
    Some(Spanned::new(must, node.span))
}

// ---------------------------------------------------------------------------
// Enforcing
// ---------------------------------------------------------------------------

/// Checks every governance rule against the policy's rules; each violated
/// one is an error in `diags`.
pub(crate) fn enforce(doc: &GovernanceDoc, rules: &[RuleView], mode: Mode, diags: &mut Vec<Diagnostic>) {
    for g in &doc.rules {
        if let Some(actions) = &g.applies_to {
            let applies = rules.iter().any(|r| match &r.scope {
                ViewScope::Actions(names) => names.iter().any(|n| actions.contains(n)),
                _ => false,
            });
            if !applies {
                continue;
            }
        }
        let selected: Vec<&RuleView> = rules.iter().filter(|r| selects(&g.select, r, mode)).collect();
        let n = selected.len() as u64;
        let (ok, detail, offenders): (bool, String, Vec<String>) = match &g.must.value {
            Must::Exists(true) => (
                n > 0,
                "it selects no rule, and must select at least one".into(),
                Vec::new(),
            ),
            Must::Exists(false) | Must::Forbid(true) => (
                n == 0,
                format!("it selects {}, and must select none", count(n)),
                selected.iter().map(|r| name(r)).collect(),
            ),
            Must::Forbid(false) => (true, String::new(), Vec::new()),
            Must::MinCount(min) => (
                n >= *min,
                format!("it selects {}, and must select at least {min}", count(n)),
                Vec::new(),
            ),
            Must::MaxCount(max) => (
                n <= *max,
                format!("it selects {}, and may select at most {max}", count(n)),
                selected.iter().map(|r| name(r)).collect(),
            ),
            Must::AllowedFields(allowed) => {
                let allowed: Vec<String> = allowed.iter().map(|a| normalize_path(a, mode)).collect();
                let mut offenders = Vec::new();
                for r in &selected {
                    let mut bad: Vec<String> = reads(r, mode)
                        .map(|(d, f)| format!("{d}.{f}"))
                        .filter(|p| !allowed.contains(p))
                        .collect();
                    bad.sort();
                    bad.dedup();
                    if !bad.is_empty() {
                        let fields: Vec<String> = bad.iter().map(|b| format!("`{b}`")).collect();
                        offenders.push(format!("{} reads {}", name(r), fields.join(", ")));
                    }
                }
                (
                    offenders.is_empty(),
                    "a selected rule reads a field outside `allowed_fields`".into(),
                    offenders,
                )
            }
        };
        if ok {
            continue;
        }
        let message = if g.error.is_empty() {
            format!("governance rule `{}` is violated", g.id.value)
        } else {
            format!("governance rule `{}` is violated: {}", g.id.value, g.error)
        };
        let help = if offenders.is_empty() {
            detail
        } else {
            format!("{detail}: {}", offenders.join("; "))
        };
        diags.push(Diagnostic::error(&doc.source, g.id.span, message).with_help(help));
    }
}

fn count(n: u64) -> String {
    format!("{n} rule{}", if n == 1 { "" } else { "s" })
}

/// `rule `id` (file:line)`
fn name(r: &RuleView) -> String {
    let (line, _) = r.file.line_col(r.span.start as usize);
    format!("rule `{}` ({}:{line})", r.id, r.file.name())
}

fn normalize_domain(d: &str, mode: Mode) -> &str {
    if mode.native && d == "input" {
        "action"
    } else {
        d
    }
}

fn normalize_path(p: &str, mode: Mode) -> String {
    match p.split_once('.') {
        Some((d, f)) => format!("{}.{f}", normalize_domain(d, mode)),
        None => p.to_string(),
    }
}

fn reads(r: &RuleView, mode: Mode) -> impl Iterator<Item = (&str, &str)> {
    let right: &[(String, String)] = if mode.right_hand_reads { &r.right } else { &[] };
    r.left.iter().chain(right).map(|(d, f)| (d.as_str(), f.as_str()))
}

fn selects(w: &Where, r: &RuleView, mode: Mode) -> bool {
    if w.id.as_ref().is_some_and(|id| *id != r.id) {
        return false;
    }
    if w.effect.as_ref().is_some_and(|e| e != r.effect.as_str()) {
        return false;
    }
    match w.global {
        Some(true) if r.scope != ViewScope::Global => return false,
        Some(false) if r.scope == ViewScope::Global => return false,
        _ => {}
    }
    if let Some(a) = &w.action {
        match &r.scope {
            ViewScope::Actions(names) if names.contains(a) => {}
            _ => return false,
        }
    }
    if w.domain.is_some() || w.field.is_some() {
        let domain = w.domain.as_deref().map(|d| normalize_domain(d, mode));
        let hit = reads(r, mode)
            .any(|(d, f)| domain.is_none_or(|want| want == d) && w.field.as_deref().is_none_or(|want| want == f));
        if !hit {
            return false;
        }
    }
    true
}

// ---------------------------------------------------------------------------
// Native rules as governance sees them
// ---------------------------------------------------------------------------

/// The rules of native policy files, for [`enforce`].
pub(crate) fn native_views(files: &[PolicyFile]) -> Vec<RuleView> {
    let actions: Vec<&str> = files
        .iter()
        .flat_map(|f| f.contracts.actions.iter().map(|a| a.name.value.as_str()))
        .collect();
    let mut out = Vec::new();
    for f in files {
        // A `mode: shadow` rule enforces nothing: it neither keeps a rule
        // governance requires nor is one it forbids.
        for rule in f.rules.iter().filter(|r| !r.shadow) {
            let scope = if rule.targets.iter().any(|t| t.value == "*") {
                ViewScope::Global
            } else {
                let mut names: Vec<String> = Vec::new();
                for t in &rule.targets {
                    if actions.contains(&t.value.as_str()) || !t.value.contains(['*', '?', '[']) {
                        names.push(t.value.clone());
                    } else if let Ok(g) = globset::Glob::new(&t.value) {
                        let m = g.compile_matcher();
                        names.extend(actions.iter().filter(|a| m.is_match(a)).map(|a| a.to_string()));
                    }
                }
                names.sort();
                names.dedup();
                ViewScope::Actions(names)
            };
            let mut reads = Vec::new();
            if let Some(w) = &rule.when {
                collect_reads(w, &mut Vec::new(), &mut reads);
            }
            reads.sort();
            reads.dedup();
            out.push(RuleView {
                id: rule.id.value.clone(),
                effect: rule.effect.value,
                scope,
                left: reads,
                right: Vec::new(),
                file: f.source.clone(),
                span: rule.id.span,
            });
        }
    }
    out
}

const MACROS: [&str; 5] = ["exists", "all", "exists_one", "filter", "map"];

/// Every `root.field` path in an expression, roots being `input` (read as
/// domain `action`), `actor`, `snapshot` and `output`, unless a macro
/// variable hides the name.
fn collect_reads(e: &Expr, bound: &mut Vec<String>, out: &mut Vec<(String, String)>) {
    match &e.kind {
        ExprKind::Select { operand, field } => {
            if let ExprKind::Ident(root) = &operand.kind {
                if !bound.contains(root) {
                    let domain = match root.as_str() {
                        "input" => Some("action"),
                        "actor" => Some("actor"),
                        "snapshot" => Some("snapshot"),
                        "output" => Some("output"),
                        _ => None,
                    };
                    if let Some(d) = domain {
                        out.push((d.to_string(), field.text.clone()));
                    }
                }
            } else {
                collect_reads(operand, bound, out);
            }
        }
        ExprKind::Call { target, function, args } => {
            if let Some(t) = target {
                collect_reads(t, bound, out);
            }
            match (target, args.as_slice()) {
                (Some(_), [var, body]) if MACROS.contains(&function.text.as_str()) => {
                    if let ExprKind::Ident(v) = &var.kind {
                        bound.push(v.clone());
                        collect_reads(body, bound, out);
                        bound.pop();
                    } else {
                        collect_reads(body, bound, out);
                    }
                }
                _ => args.iter().for_each(|a| collect_reads(a, bound, out)),
            }
        }
        ExprKind::Index { operand, index } => {
            collect_reads(operand, bound, out);
            collect_reads(index, bound, out);
        }
        ExprKind::List(items) => items.iter().for_each(|i| collect_reads(i, bound, out)),
        ExprKind::Map(entries) => entries.iter().for_each(|(k, v)| {
            collect_reads(k, bound, out);
            collect_reads(v, bound, out);
        }),
        ExprKind::Unary { operand, .. } => collect_reads(operand, bound, out),
        ExprKind::Binary { lhs, rhs, .. } => {
            collect_reads(lhs, bound, out);
            collect_reads(rhs, bound, out);
        }
        ExprKind::Conditional { cond, then, otherwise } => {
            collect_reads(cond, bound, out);
            collect_reads(then, bound, out);
            collect_reads(otherwise, bound, out);
        }
        ExprKind::Null
        | ExprKind::Bool(_)
        | ExprKind::Int(_)
        | ExprKind::Float(_)
        | ExprKind::String(_)
        | ExprKind::Ident(_) => {}
    }
}
