//! Structural comparison of two loaded policies: per action, the rules
//! added, removed and changed (matched by id, compared by content, not by
//! where or how they were written), the contracts' fields added, removed,
//! retyped or constrained differently, the defaults and the combining
//! mode; and, per rule, the fields its condition reads ([`fields_read`]),
//! with those the contract marks sensitive.
//!
//! Pure: no I/O. Used by `rein plan` (which records can be replayed, and
//! which rules a record's decision depends on) and `rein diff` (the
//! structural part of its report).
//!
//! What "the same rule" means: the same id in the same phase of the same
//! action, with the same effect, reason, approval, labels, limit (maximum,
//! window, cost and keys) and condition. Conditions are compared as their
//! typed trees, with every field read named by its path (so a contract
//! whose fields were reordered does not change a rule), with spans left
//! out (so moving a rule to another file, reindenting it or rewrapping its
//! condition does not change it). Two conditions that mean the same but
//! are written differently (`a && b` and `b && a`) are reported as
//! changed: this module compares structure, the semantic diff compares
//! meaning.

use crate::ast::{Combining, Effect, Phase};
use crate::ir::{ActionIr, CompiledPolicy, CompiledRule, Node, NodeKind, Root, Step};
use crate::policy::Policy;
use crate::types::{Constraints, FieldDef, ObjectType, Type};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

/// Everything that differs between two policies, structurally.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct PolicyComparison {
    /// The `before` default, when it changed (old, new).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default_before: Option<(Effect, Effect)>,
    /// The `after` default, when it changed (old, new).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default_after: Option<(Effect, Effect)>,
    /// How matches combine (`deny_overrides`, `first_match`), when it
    /// changed (old, new).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub combining: Option<(String, String)>,
    /// Changes to the actor contract (every action reads it).
    pub actor: Vec<FieldChange>,
    /// Changes to the snapshot contract (every action reads it).
    pub snapshot: Vec<FieldChange>,
    /// The actor fields the policy requires bound by the credential, when
    /// that list changed (old, new).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bound_actor: Option<(Vec<String>, Vec<String>)>,
    /// Actions only the new policy has a contract for, sorted.
    pub actions_added: Vec<String>,
    /// Actions only the old policy has a contract for, sorted.
    pub actions_removed: Vec<String>,
    /// Actions both policies know, sorted by name; those with no change
    /// included (with empty lists), so a caller can look any up.
    pub actions: Vec<ActionComparison>,
}

/// What differs for one action both policies know.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct ActionComparison {
    /// The action.
    pub action: String,
    /// Changes to its input contract.
    pub input: Vec<FieldChange>,
    /// Changes to its output contract (a contract declared or dropped is
    /// the change of the path `output`).
    pub output: Vec<FieldChange>,
    /// Its `tool:` facts changed (their types or values).
    pub tool_changed: bool,
    /// Rules that apply to it only under the new policy.
    pub rules_added: Vec<RuleRef>,
    /// Rules that applied to it only under the old policy.
    pub rules_removed: Vec<RuleRef>,
    /// Rules of both whose content differs.
    pub rules_changed: Vec<RuleChange>,
    /// Ids of the rules that apply to it, in the same phase, unchanged.
    pub rules_unchanged: Vec<RuleRef>,
    /// Under first-match combining (Actra) in either policy: the order of
    /// the rules both have differs in some phase (order decides there).
    pub order_changed: bool,
}

impl ActionComparison {
    /// True when the contracts the action's requests are checked against
    /// (its input and output, the actor, the snapshot, its tool facts) are
    /// the same in both policies; `comparison` is the whole policy's
    /// comparison this one belongs to.
    pub fn contract_unchanged(&self, comparison: &PolicyComparison) -> bool {
        self.input.is_empty()
            && self.output.is_empty()
            && !self.tool_changed
            && comparison.actor.is_empty()
            && comparison.snapshot.is_empty()
            && comparison.bound_actor.is_none()
    }

    /// True when nothing about the action differs (contracts aside).
    pub fn rules_unchanged_all(&self) -> bool {
        self.rules_added.is_empty()
            && self.rules_removed.is_empty()
            && self.rules_changed.is_empty()
            && !self.order_changed
    }

    /// Whether anything about the action differs.
    pub fn is_changed(&self, comparison: &PolicyComparison) -> bool {
        !self.contract_unchanged(comparison) || !self.rules_unchanged_all()
    }
}

/// A rule, named in a comparison.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct RuleRef {
    /// Its id.
    pub id: String,
    /// The phase whose rule list holds it for this action.
    pub phase: Phase,
    /// Its effect.
    pub effect: Effect,
}

/// A rule both policies have (same id, same action and phase) whose content
/// differs.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct RuleChange {
    /// Its id.
    pub id: String,
    /// The phase.
    pub phase: Phase,
    /// Its effect in the old policy.
    pub old_effect: Effect,
    /// Its effect in the new one.
    pub new_effect: Effect,
    /// What differs: among `effect`, `condition`, `reason`, `approval`,
    /// `labels`, `limit`.
    pub what: Vec<String>,
}

/// One change to a contract field.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct FieldChange {
    /// The field's path (`input.amount`, `input.items[].sku`, `actor`).
    pub path: String,
    /// What changed.
    #[serde(flatten)]
    pub kind: FieldChangeKind,
}

/// How a contract field changed.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "change", rename_all = "snake_case")]
pub enum FieldChangeKind {
    /// Only the new contract declares it.
    Added {
        /// Its type.
        ty: String,
    },
    /// Only the old contract declared it.
    Removed {
        /// Its type.
        ty: String,
    },
    /// Its type changed (objects are compared field by field instead).
    Retyped {
        /// The old type.
        old: String,
        /// The new type.
        new: String,
    },
    /// Its constraints, optionality, or markings (`sensitive`,
    /// `per_call`), or an object's handling of undeclared fields, changed.
    Constraints {
        /// The old settings, as text.
        old: String,
        /// The new settings, as text.
        new: String,
    },
}

/// A field a rule reads.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
pub struct FieldRead {
    /// Its path from the root (`input.customer.email`, `actor`, `tool.kind`).
    /// A read of an object, a list or a map reads everything under it.
    pub path: String,
    /// The fields marked `sensitive` at, above or under the path: what the
    /// audit log keeps only as keyed hashes (empty when none).
    pub sensitive: Vec<String>,
}

/// What a rule reads for one action.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct RuleReads {
    /// The fields read (condition, limit cost and keys), sorted, each once.
    pub fields: Vec<FieldRead>,
    /// It reads state kept outside the request (a limit, a session fact).
    pub state: bool,
    /// It reads the request's time (`now`).
    pub now: bool,
}

impl RuleReads {
    /// The first sensitive field read, if any.
    pub fn first_sensitive(&self) -> Option<&str> {
        self.fields
            .iter()
            .flat_map(|f| f.sensitive.first())
            .next()
            .map(String::as_str)
    }
}

impl PolicyComparison {
    /// The comparison of one action both policies know.
    pub fn action(&self, name: &str) -> Option<&ActionComparison> {
        self.actions
            .binary_search_by(|a| a.action.as_str().cmp(name))
            .ok()
            .and_then(|i| self.actions.get(i))
    }

    /// True when the two policies are structurally the same.
    pub fn is_empty(&self) -> bool {
        self.default_before.is_none()
            && self.default_after.is_none()
            && self.combining.is_none()
            && self.actor.is_empty()
            && self.snapshot.is_empty()
            && self.bound_actor.is_none()
            && self.actions_added.is_empty()
            && self.actions_removed.is_empty()
            && self.actions.iter().all(|a| !a.is_changed(self))
    }
}

/// Compares two policies structurally (see the module's doc).
pub fn compare(old: &Policy, new: &Policy) -> PolicyComparison {
    let (o, n) = (old.compiled(), new.compiled());
    let mut out = PolicyComparison::default();
    if o.default != n.default {
        out.default_before = Some((o.default, n.default));
    }
    if o.default_after != n.default_after {
        out.default_after = Some((o.default_after, n.default_after));
    }
    if o.combining != n.combining {
        out.combining = Some((combining_name(o.combining), combining_name(n.combining)));
    }
    compare_objects(&o.actor, &n.actor, "actor", &mut out.actor);
    compare_objects(&o.snapshot, &n.snapshot, "snapshot", &mut out.snapshot);
    if o.bound_actor != n.bound_actor {
        out.bound_actor = Some((o.bound_actor.clone(), n.bound_actor.clone()));
    }
    let old_actions: BTreeMap<&str, &ActionIr> = o.actions.iter().map(|a| (a.name(), a)).collect();
    let new_actions: BTreeMap<&str, &ActionIr> = n.actions.iter().map(|a| (a.name(), a)).collect();
    for (name, new_action) in &new_actions {
        match old_actions.get(name) {
            None => out.actions_added.push(name.to_string()),
            Some(old_action) => out.actions.push(compare_action(o, old_action, n, new_action)),
        }
    }
    out.actions_removed = old_actions
        .keys()
        .filter(|a| !new_actions.contains_key(*a))
        .map(|a| a.to_string())
        .collect();
    out
}

/// The fields rule `rule_id` reads when it decides `action` in `phase`
/// under `policy`. `None` when the rule does not apply to that action in
/// that phase.
///
/// Over-approximated, never under: a read of an object, list or map reads
/// every field under it (`input.customer` reads `input.customer.email`), a
/// computed access (`input.tags[k]`, a comprehension over `input.items`,
/// a field of a computed object) reads the whole operand, and `has(f)`
/// reads `f`.
pub fn fields_read(policy: &Policy, action: &str, phase: Phase, rule_id: &str) -> Option<RuleReads> {
    let p = policy.compiled();
    let a = p.action_index.get(action).and_then(|&i| p.actions.get(i as usize))?;
    let rule = a
        .rules(phase)
        .iter()
        .find(|r| p.rules.get(r.rule as usize).is_some_and(|i| i.id == rule_id))?;
    Some(rule_reads(p, a, rule))
}

/// The effect of the rule with id `rule_id` (`None`: the policy has no
/// such rule).
pub fn rule_effect(policy: &Policy, rule_id: &str) -> Option<Effect> {
    policy
        .compiled()
        .rules
        .iter()
        .find(|r| r.id == rule_id)
        .map(|r| r.effect)
}

fn combining_name(c: Combining) -> String {
    match c {
        Combining::DenyOverrides => "deny_overrides",
        Combining::FirstMatch => "first_match",
    }
    .to_string()
}

fn compare_action(o: &CompiledPolicy, oa: &ActionIr, n: &CompiledPolicy, na: &ActionIr) -> ActionComparison {
    let mut out = ActionComparison {
        action: na.name().to_string(),
        ..ActionComparison::default()
    };
    compare_objects(&oa.input, &na.input, "input", &mut out.input);
    match (&oa.output, &na.output) {
        (Some(a), Some(b)) => compare_objects(a, b, "output", &mut out.output),
        (None, Some(_)) => out.output.push(FieldChange {
            path: "output".into(),
            kind: FieldChangeKind::Added { ty: "object".into() },
        }),
        (Some(_), None) => out.output.push(FieldChange {
            path: "output".into(),
            kind: FieldChangeKind::Removed { ty: "object".into() },
        }),
        (None, None) => {}
    }
    out.tool_changed = match (&oa.tool, &na.tool) {
        (None, None) => false,
        (Some(a), Some(b)) => {
            let mut changes = Vec::new();
            compare_objects(&a.ty, &b.ty, "tool", &mut changes);
            !changes.is_empty() || canon_values(&a.values, &a.ty) != canon_values(&b.values, &b.ty)
        }
        _ => true,
    };
    for phase in [Phase::Before, Phase::After] {
        let old_rules: BTreeMap<&str, &CompiledRule> = oa
            .rules(phase)
            .iter()
            .filter_map(|r| Some((o.rules.get(r.rule as usize)?.id.as_str(), r)))
            .collect();
        let new_rules: BTreeMap<&str, &CompiledRule> = na
            .rules(phase)
            .iter()
            .filter_map(|r| Some((n.rules.get(r.rule as usize)?.id.as_str(), r)))
            .collect();
        let effect =
            |p: &CompiledPolicy, r: &CompiledRule| p.rules.get(r.rule as usize).map_or(Effect::Block, |i| i.effect);
        for (id, nr) in &new_rules {
            let new_effect = effect(n, nr);
            match old_rules.get(id) {
                None => out.rules_added.push(RuleRef {
                    id: id.to_string(),
                    phase,
                    effect: new_effect,
                }),
                Some(or) => {
                    let what = rule_differences(o, oa, or, n, na, nr);
                    if what.is_empty() {
                        out.rules_unchanged.push(RuleRef {
                            id: id.to_string(),
                            phase,
                            effect: new_effect,
                        });
                    } else {
                        out.rules_changed.push(RuleChange {
                            id: id.to_string(),
                            phase,
                            old_effect: effect(o, or),
                            new_effect,
                            what,
                        });
                    }
                }
            }
        }
        if o.combining == Combining::FirstMatch || n.combining == Combining::FirstMatch {
            let order = |p: &CompiledPolicy, a: &ActionIr, other: &BTreeMap<&str, &CompiledRule>| -> Vec<String> {
                a.rules(phase)
                    .iter()
                    .filter_map(|r| p.rules.get(r.rule as usize).map(|i| i.id.clone()))
                    .filter(|id| other.contains_key(id.as_str()))
                    .collect()
            };
            if order(o, oa, &new_rules) != order(n, na, &old_rules) {
                out.order_changed = true;
            }
        }
        for (id, or) in &old_rules {
            if !new_rules.contains_key(id) {
                out.rules_removed.push(RuleRef {
                    id: id.to_string(),
                    phase,
                    effect: effect(o, or),
                });
            }
        }
    }
    out
}

/// What differs between two compilations of a rule for one action.
fn rule_differences(
    o: &CompiledPolicy,
    oa: &ActionIr,
    or: &CompiledRule,
    n: &CompiledPolicy,
    na: &ActionIr,
    nr: &CompiledRule,
) -> Vec<String> {
    let mut what = Vec::new();
    let (Some(oi), Some(ni)) = (o.rules.get(or.rule as usize), n.rules.get(nr.rule as usize)) else {
        // Not reachable for a checked policy; a rule that cannot be looked
        // up is not known to be the same.
        return vec!["effect".into()];
    };
    if oi.effect != ni.effect {
        what.push("effect".into());
    }
    let (oc, nc) = (Canon::new(o, oa), Canon::new(n, na));
    if or.cond.as_ref().map(|c| oc.node(c)) != nr.cond.as_ref().map(|c| nc.node(c)) {
        what.push("condition".into());
    }
    if oi.reason != ni.reason {
        what.push("reason".into());
    }
    if oi.approval != ni.approval {
        what.push("approval".into());
    }
    if oi.labels != ni.labels {
        what.push("labels".into());
    }
    let limit = |c: &Canon<'_>, r: &CompiledRule| {
        r.limit.as_ref().map(|l| {
            let mut s = format!("max {} window {:?} cost ", l.max.normalize(), l.window);
            match &l.cost {
                Some(cost) => s.push_str(&c.node(cost)),
                None => s.push_str("count"),
            }
            for key in &l.per {
                let _ = write!(s, " per {} hashed {}", c.node(&key.node), key.hashed);
            }
            s
        })
    };
    if limit(&oc, or) != limit(&nc, nr) {
        what.push("limit".into());
    }
    what
}

/// Compares two object types field by field, by name, pushing each
/// difference (recursing into objects, lists and maps of objects).
fn compare_objects(a: &ObjectType, b: &ObjectType, prefix: &str, out: &mut Vec<FieldChange>) {
    if a.extra != b.extra {
        out.push(FieldChange {
            path: prefix.to_string(),
            kind: FieldChangeKind::Constraints {
                old: format!("undeclared fields: {:?}", a.extra).to_lowercase(),
                new: format!("undeclared fields: {:?}", b.extra).to_lowercase(),
            },
        });
    }
    for f in &a.fields {
        let path = format!("{prefix}.{}", f.name);
        match b.field(&f.name) {
            None => out.push(FieldChange {
                path,
                kind: FieldChangeKind::Removed { ty: f.ty.to_string() },
            }),
            Some((_, g)) => compare_fields(f, g, path, out),
        }
    }
    for g in &b.fields {
        if a.field(&g.name).is_none() {
            out.push(FieldChange {
                path: format!("{prefix}.{}", g.name),
                kind: FieldChangeKind::Added { ty: g.ty.to_string() },
            });
        }
    }
}

fn compare_fields(f: &FieldDef, g: &FieldDef, path: String, out: &mut Vec<FieldChange>) {
    let (sa, sb) = (field_settings(f), field_settings(g));
    if sa != sb {
        out.push(FieldChange {
            path: path.clone(),
            kind: FieldChangeKind::Constraints { old: sa, new: sb },
        });
    }
    compare_types(&f.ty, &g.ty, path, out);
}

fn compare_types(a: &Type, b: &Type, path: String, out: &mut Vec<FieldChange>) {
    match (a, b) {
        (Type::Object(x), Type::Object(y)) => compare_objects(x, y, &path, out),
        (Type::List(x), Type::List(y)) | (Type::Map(x), Type::Map(y)) => compare_types(x, y, format!("{path}[]"), out),
        _ if type_text(a) != type_text(b) => out.push(FieldChange {
            path,
            kind: FieldChangeKind::Retyped {
                old: type_text(a),
                new: type_text(b),
            },
        }),
        _ => {}
    }
}

/// A type as text, objects written out with their fields (the display
/// names only the object).
fn type_text(t: &Type) -> String {
    match t {
        Type::Object(o) => {
            let fields: Vec<String> = o
                .fields
                .iter()
                .map(|f| format!("{}: {}", f.name, type_text(&f.ty)))
                .collect();
            format!("object {{{}}}", fields.join(", "))
        }
        Type::List(t) => format!("list<{}>", type_text(t)),
        Type::Map(t) => format!("map<{}>", type_text(t)),
        other => other.to_string(),
    }
}

/// A field's settings other than its type, as text.
fn field_settings(f: &FieldDef) -> String {
    let mut s = String::new();
    let mut flag = |on: bool, name: &str| {
        if on {
            s.push_str(name);
            s.push(' ');
        }
    };
    flag(f.optional, "optional");
    flag(f.sensitive, "sensitive");
    flag(f.per_call, "per_call");
    flag(f.empty_when_absent, "empty_when_absent");
    s.push_str(&constraints_text(&f.constraints));
    s.trim().to_string()
}

fn constraints_text(c: &Constraints) -> String {
    let mut s = String::new();
    if let Some(v) = c.min {
        let _ = write!(s, "min {v:?} ");
    }
    if let Some(v) = c.max {
        let _ = write!(s, "max {v:?} ");
    }
    if let Some(v) = c.min_len {
        let _ = write!(s, "min_len {v} ");
    }
    if let Some(v) = c.max_len {
        let _ = write!(s, "max_len {v} ");
    }
    if let Some(p) = &c.pattern {
        let _ = write!(s, "pattern {:?} ", p.source());
    }
    if let Some(allowed) = &c.allowed {
        let mut values: Vec<String> = allowed.iter().map(|v| format!("{v:?}")).collect();
        values.sort();
        let _ = write!(
            s,
            "{} [{}] ",
            if c.is_enum { "enum" } else { "allowed" },
            values.join(", ")
        );
    }
    if let Some(items) = &c.items {
        let _ = write!(s, "items ({}) ", constraints_text(items));
    }
    s.trim().to_string()
}

fn canon_values(values: &[crate::value::Value], ty: &ObjectType) -> String {
    let fields: BTreeMap<&str, String> = ty
        .fields
        .iter()
        .zip(values)
        .map(|(f, v)| (f.name.as_str(), v.to_json(&f.ty).to_string()))
        .collect();
    format!("{fields:?}")
}

/// Prints a condition's typed tree as text that does not depend on spans
/// or on the order of contract fields: every field read is named.
struct Canon<'p> {
    policy: &'p CompiledPolicy,
    action: &'p ActionIr,
}

impl<'p> Canon<'p> {
    fn new(policy: &'p CompiledPolicy, action: &'p ActionIr) -> Canon<'p> {
        Canon { policy, action }
    }

    fn node(&self, node: &Node) -> String {
        let mut s = String::new();
        self.write(node, &mut s);
        s
    }

    fn root_type(&self, root: Root) -> Option<&'p ObjectType> {
        match root {
            Root::Input => Some(&self.action.input),
            Root::Output => self.action.output.as_deref(),
            Root::Actor => Some(&self.policy.actor),
            Root::Snapshot => Some(&self.policy.snapshot),
            Root::Tool => self.action.tool.as_ref().map(|t| &*t.ty),
        }
    }

    fn write(&self, node: &Node, s: &mut String) {
        use NodeKind as K;
        s.push('(');
        match &node.kind {
            K::Const(v) => {
                let _ = write!(s, "const {}", v.to_json(&node.ty));
            }
            K::Path { root, path } => {
                let _ = write!(s, "path {}", path_name(self.root_type(*root), *root, path));
            }
            K::Select { operand, index } => {
                let name = match &operand.ty {
                    Type::Object(o) => o.fields.get(*index as usize).map_or("?", |f| f.name.as_str()),
                    _ => "?",
                };
                let _ = write!(s, "select {name} ");
                self.write(operand, s);
            }
            K::MapGet { operand, key } => {
                let _ = write!(s, "mapget {key:?} ");
                self.write(operand, s);
            }
            K::Has { base, steps } => {
                s.push_str("has ");
                self.write(base, s);
                let mut ty = Some(&base.ty);
                for step in steps.iter() {
                    match step {
                        Step::Field(i) => {
                            let field = match ty {
                                Some(Type::Object(o)) => o.fields.get(*i as usize),
                                _ => None,
                            };
                            let _ = write!(s, " .{}", field.map_or("?", |f| f.name.as_str()));
                            ty = field.map(|f| &f.ty);
                        }
                        Step::Key(k) => {
                            let _ = write!(s, " [{k:?}]");
                            ty = match ty {
                                Some(Type::Map(t)) => Some(t),
                                _ => None,
                            };
                        }
                    }
                }
            }
            K::InStrings { elem, set } => {
                let sorted: BTreeSet<&String> = set.iter().collect();
                let _ = write!(s, "instrings {sorted:?} ");
                self.write(elem, s);
            }
            K::Matches { operand, regex } => {
                let _ = write!(s, "matches {:?} ", regex.source());
                self.write(operand, s);
            }
            K::Glob { operand, matcher } => {
                let _ = write!(s, "glob {:?} ", matcher.source());
                self.write(operand, s);
            }
            K::GlobOverlap {
                operand,
                automaton,
                operand_is_glob,
                ignore_case,
            } => {
                let _ = write!(
                    s,
                    "globoverlap {:?} {operand_is_glob} {ignore_case} ",
                    automaton.source()
                );
                self.write(operand, s);
            }
            other => {
                // Every other kind: its name and fields that are not nodes
                // (operators, builtins, windows, names), then its children.
                let _ = write!(s, "{}", kind_head(other));
                for child in node.children() {
                    s.push(' ');
                    self.write(child, s);
                }
            }
        }
        let _ = write!(s, " : {})", type_text(&node.ty));
    }
}

/// The head of a node kind without node children: its variant and scalar
/// fields.
fn kind_head(kind: &NodeKind) -> String {
    use NodeKind as K;
    match kind {
        K::ActionName => "action".into(),
        K::Now => "now".into(),
        K::ErrorText => "error".into(),
        K::Local(i) => format!("local {i}"),
        K::Index { .. } => "index".into(),
        K::Not(_) => "not".into(),
        K::Neg(_) => "neg".into(),
        K::And(..) => "and".into(),
        K::Or(..) => "or".into(),
        K::Cond { .. } => "cond".into(),
        K::Cmp { op, .. } => format!("cmp {op:?}"),
        K::Arith { op, .. } => format!("arith {op:?}"),
        K::In { .. } => "in".into(),
        K::Call { func, .. } => format!("call {func:?}"),
        K::List(_) => "list".into(),
        K::MapLit(_) => "map".into(),
        K::Comprehension { kind, var, .. } => format!("comprehension {kind:?} {var}"),
        K::SessionId => "session.id".into(),
        K::SessionLabels => "session.labels".into(),
        K::SessionHasLabel { .. } => "session.has_label".into(),
        K::SessionCount { actions, window } => format!("session.count {actions:?} {window:?}"),
        K::SessionSum {
            action,
            output,
            path,
            int,
            window,
        } => format!("session.sum {action:?} {output} {path:?} {int} {window:?}"),
        K::SessionCalls { action, window } => format!("session.calls {action:?} {window:?}"),
        K::HashedCmp { ne, .. } => format!("hashedcmp {ne}"),
        // Written by `Canon::write` itself.
        K::Const(_)
        | K::Path { .. }
        | K::Select { .. }
        | K::MapGet { .. }
        | K::Has { .. }
        | K::InStrings { .. }
        | K::Matches { .. }
        | K::Glob { .. }
        | K::GlobOverlap { .. } => "?".into(),
    }
}

fn root_name(root: Root) -> &'static str {
    match root {
        Root::Input => "input",
        Root::Output => "output",
        Root::Actor => "actor",
        Root::Snapshot => "snapshot",
        Root::Tool => "tool",
    }
}

/// A static path's text (`input.customer.email`).
fn path_name(ty: Option<&ObjectType>, root: Root, path: &[u32]) -> String {
    let mut s = root_name(root).to_string();
    let mut obj = ty;
    for &i in path {
        let field = obj.and_then(|o| o.fields.get(i as usize));
        s.push('.');
        s.push_str(field.map_or("?", |f| f.name.as_str()));
        obj = match field.map(|f| &f.ty) {
            Some(Type::Object(o)) => Some(o),
            _ => None,
        };
    }
    s
}

/// The reads of one compiled rule (condition, limit cost and keys).
pub(crate) fn rule_reads(p: &CompiledPolicy, a: &ActionIr, rule: &CompiledRule) -> RuleReads {
    let mut reads = Reads {
        policy: p,
        action: a,
        out: RuleReads::default(),
        seen: BTreeSet::new(),
    };
    if let Some(cond) = &rule.cond {
        reads.walk(cond);
    }
    if let Some(limit) = &rule.limit {
        reads.out.state = true;
        if let Some(cost) = &limit.cost {
            reads.walk(cost);
        }
        for key in &limit.per {
            reads.walk(&key.node);
        }
    }
    reads.out.fields.sort();
    reads.out
}

struct Reads<'p> {
    policy: &'p CompiledPolicy,
    action: &'p ActionIr,
    out: RuleReads,
    seen: BTreeSet<String>,
}

impl<'p> Reads<'p> {
    fn walk(&mut self, node: &Node) {
        use NodeKind as K;
        match &node.kind {
            K::Path { root, path } => self.path(*root, path),
            K::Has { base, steps } => match &base.kind {
                // `has(input.a.b)`: the presence of `input.a.b`, read as a
                // read of it.
                K::Path { root, path } if steps.iter().all(|s| matches!(s, Step::Field(_))) => {
                    let mut full: Vec<u32> = path.to_vec();
                    full.extend(steps.iter().filter_map(|s| match s {
                        Step::Field(i) => Some(*i),
                        Step::Key(_) => None,
                    }));
                    self.path(*root, &full);
                }
                _ => self.walk(base),
            },
            K::Now => self.out.now = true,
            K::SessionId
            | K::SessionLabels
            | K::SessionHasLabel { .. }
            | K::SessionCount { .. }
            | K::SessionSum { .. }
            | K::SessionCalls { .. }
            | K::HashedCmp { .. } => {
                self.out.state = true;
                for child in node.children() {
                    self.walk(child);
                }
            }
            // Everything else reads what its children read (a computed
            // access reads its whole operand, which is a child).
            _ => {
                for child in node.children() {
                    self.walk(child);
                }
            }
        }
    }

    fn path(&mut self, root: Root, path: &[u32]) {
        let ty = match root {
            Root::Input => Some(&*self.action.input),
            Root::Output => self.action.output.as_deref(),
            Root::Actor => Some(&*self.policy.actor),
            Root::Snapshot => Some(&*self.policy.snapshot),
            Root::Tool => self.action.tool.as_ref().map(|t| &*t.ty),
        };
        let name = path_name(ty, root, path);
        if !self.seen.insert(name.clone()) {
            return;
        }
        let mut sensitive = Vec::new();
        // Sensitive above or at the path: the whole value is kept hashed.
        let mut obj = ty;
        let mut prefix = root_name(root).to_string();
        let mut last: Option<&Type> = None;
        let mut fell_off = false;
        for &i in path {
            let Some(field) = obj.and_then(|o| o.fields.get(i as usize)) else {
                fell_off = true;
                break;
            };
            prefix.push('.');
            prefix.push_str(&field.name);
            if field.sensitive && root != Root::Tool {
                sensitive.push(prefix.clone());
            }
            last = Some(&field.ty);
            obj = match &field.ty {
                Type::Object(o) => Some(o),
                _ => None,
            };
        }
        if fell_off {
            // A path the types do not explain: read as the whole root.
            if let Some(t) = ty {
                sensitive_under(t, root_name(root), &mut sensitive);
            }
        } else if root != Root::Tool {
            // Under the path: everything a whole read of it takes in.
            match (path.is_empty(), ty, last) {
                (true, Some(t), _) => sensitive_under(t, &prefix, &mut sensitive),
                (false, _, Some(t)) => sensitive_under_type(t, &prefix, &mut sensitive),
                _ => {}
            }
        }
        sensitive.dedup();
        self.out.fields.push(FieldRead { path: name, sensitive });
    }
}

fn sensitive_under_type(t: &Type, prefix: &str, out: &mut Vec<String>) {
    match t {
        Type::Object(o) => sensitive_under(o, prefix, out),
        Type::List(inner) | Type::Map(inner) => sensitive_under_type(inner, &format!("{prefix}[]"), out),
        _ => {}
    }
}

fn sensitive_under(o: &ObjectType, prefix: &str, out: &mut Vec<String>) {
    for f in &o.fields {
        let path = format!("{prefix}.{}", f.name);
        if f.sensitive {
            out.push(path.clone());
        }
        sensitive_under_type(&f.ty, &path, out);
    }
}

#[cfg(test)]
mod tests;
