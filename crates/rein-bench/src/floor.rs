//! The floor: a hand-written evaluator of a [`Workload`], the least work a
//! policy engine could do for the same decision.
//!
//! [`Floor`] indexes the workload's rules by action name in a hash map (the
//! same hasher as Rein's action index) and keeps each action's rules
//! together: one `Vec` of rules, each a range into one `Vec` of the
//! workload's own [`Cmp`]s. A request is typed ([`TypedRequest`]: the action
//! name and every field's value by its index in [`FIELDS`]), so reading a
//! field is an index. Like Rein, it evaluates every rule of the action and
//! records which matched (Rein's decision lists every matching rule), and
//! combines them deny-overrides with `default: allow`; an unknown action is
//! blocked.
//!
//! [`Floor::decide_json`] is the floor from JSON text: `serde_json` into a
//! tree shaped as the product's `serde_json::Value` (a `BTreeMap` per
//! object, whatever features the bench build unifies), the action's rules
//! looked up, each declared field read from the tree into its slot, then
//! the same evaluator. It does not refuse what
//! Rein's reader refuses (unknown or repeated keys, inexact numbers): it is
//! a floor, not a reader.

use crate::{Cmp, Domain, GenRequest, Op, Val, Verdict, Workload, FIELDS};
use rustc_hash::FxHashMap;
use tree::Tree;

mod tree;

/// The most rules one action may have: matches are recorded as bits of a
/// `u64`.
pub const MAX_RULES_PER_ACTION: usize = 64;

/// A field's value as the floor reads it, borrowed from where the request
/// lives (a [`TypedRequest`] or a parsed JSON `Value`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FieldVal<'a> {
    /// An integer.
    Int(i64),
    /// A string.
    Str(&'a str),
}

impl From<Val> for FieldVal<'static> {
    fn from(v: Val) -> Self {
        match v {
            Val::Int(i) => FieldVal::Int(i),
            Val::Str(s) => FieldVal::Str(s),
        }
    }
}

/// A request as a hand-written evaluator would hold it: the action's name
/// and each field's value at its index in [`FIELDS`].
#[derive(Clone, Debug)]
pub struct TypedRequest {
    /// The action's name.
    pub action: String,
    /// One value per field of [`FIELDS`].
    pub values: Vec<FieldVal<'static>>,
}

impl From<&GenRequest> for TypedRequest {
    fn from(r: &GenRequest) -> Self {
        TypedRequest {
            action: r.action.clone(),
            values: r.values.iter().map(|&v| FieldVal::from(v)).collect(),
        }
    }
}

/// What the floor decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FloorDecision {
    /// Allow or block.
    pub verdict: Verdict,
    /// Bit `k` is set when the action's `k`-th rule (in policy order)
    /// matched.
    pub matched: u64,
}

impl FloorDecision {
    const UNKNOWN: FloorDecision = FloorDecision {
        verdict: Verdict::Block,
        matched: 0,
    };
}

/// One rule: its effect and its conjuncts, `cmps[start..end]` of its action.
#[derive(Clone, Copy, Debug)]
struct FloorRule {
    effect: Verdict,
    start: u32,
    end: u32,
}

/// One action's rules, contiguous.
#[derive(Clone, Debug)]
struct FloorAction {
    rules: Vec<FloorRule>,
    cmps: Vec<Cmp>,
    /// Each rule's index in [`Workload::rules`], for checking what matched
    /// (never read while deciding).
    ids: Vec<usize>,
}

/// The hand-written evaluator of one workload (see the module docs).
#[derive(Clone, Debug)]
pub struct Floor {
    actions: FxHashMap<String, FloorAction>,
}

impl Floor {
    /// The evaluator of `w`'s rules.
    ///
    /// # Panics
    /// If an action has more than [`MAX_RULES_PER_ACTION`] rules.
    pub fn new(w: &Workload) -> Floor {
        let actions = w
            .actions
            .iter()
            .zip(&w.rules_by_action)
            .map(|(name, rule_ids)| {
                assert!(
                    rule_ids.len() <= MAX_RULES_PER_ACTION,
                    "action {name} has {} rules",
                    rule_ids.len()
                );
                let mut action = FloorAction {
                    rules: Vec::with_capacity(rule_ids.len()),
                    cmps: Vec::new(),
                    ids: rule_ids.clone(),
                };
                for &r in rule_ids {
                    let rule = &w.rules[r];
                    let start = action.cmps.len() as u32;
                    action.cmps.extend_from_slice(&rule.when);
                    action.rules.push(FloorRule {
                        effect: rule.effect,
                        start,
                        end: action.cmps.len() as u32,
                    });
                }
                (name.clone(), action)
            })
            .collect();
        Floor { actions }
    }

    /// Decides a typed request.
    pub fn decide_typed(&self, r: &TypedRequest) -> FloorDecision {
        match self.actions.get(r.action.as_str()) {
            Some(a) => a.decide(&r.values),
            None => FloorDecision::UNKNOWN,
        }
    }

    /// Decides a request given as Rein's JSON text (`{"action", "input",
    /// "actor", "snapshot"}`). A field that is absent or of the wrong kind
    /// blocks, as Rein's contract check does. `Err` when the text is not
    /// JSON or has no string `action`.
    pub fn decide_json(&self, text: &str) -> Result<FloorDecision, String> {
        let v: Tree = serde_json::from_str(text).map_err(|e| e.to_string())?;
        let action = v.get("action").and_then(Tree::as_str).ok_or("no string `action`")?;
        let Some(a) = self.actions.get(action) else {
            return Ok(FloorDecision::UNKNOWN);
        };
        let mut values = [FieldVal::Int(0); FIELDS.len()];
        for (slot, f) in values.iter_mut().zip(FIELDS) {
            let field = v.get(f.root.name()).and_then(|root| root.get(f.name));
            *slot = match (f.domain, field) {
                (Domain::Int(_), Some(&Tree::Int(i))) => FieldVal::Int(i),
                (Domain::Str(_), Some(Tree::Str(s))) => FieldVal::Str(s),
                _ => return Ok(FloorDecision::UNKNOWN),
            };
        }
        Ok(a.decide(&values))
    }

    /// The indices in [`Workload::rules`] of the rules `d.matched` names,
    /// for `action` (empty for an unknown action).
    pub fn matched_rules(&self, action: &str, d: &FloorDecision) -> Vec<usize> {
        self.actions.get(action).map_or_else(Vec::new, |a| {
            a.ids
                .iter()
                .enumerate()
                .filter(|(k, _)| d.matched >> k & 1 == 1)
                .map(|(_, &id)| id)
                .collect()
        })
    }
}

impl FloorAction {
    fn decide(&self, values: &[FieldVal<'_>]) -> FloorDecision {
        let mut matched = 0u64;
        let mut blocked = false;
        for (k, rule) in self.rules.iter().enumerate() {
            let when = &self.cmps[rule.start as usize..rule.end as usize];
            if when.iter().all(|c| holds(c, values[c.field])) {
                matched |= 1 << k;
                blocked |= rule.effect == Verdict::Block;
            }
        }
        FloorDecision {
            verdict: if blocked { Verdict::Block } else { Verdict::Allow },
            matched,
        }
    }
}

/// `c` applied to the field's value; a value of the other kind never
/// satisfies it.
#[inline]
fn holds(c: &Cmp, value: FieldVal<'_>) -> bool {
    match (value, c.lit) {
        (FieldVal::Int(a), Val::Int(b)) => match c.op {
            Op::Lt => a < b,
            Op::Le => a <= b,
            Op::Gt => a > b,
            Op::Ge => a >= b,
            Op::Eq => a == b,
            Op::Ne => a != b,
        },
        (FieldVal::Str(a), Val::Str(b)) => match c.op {
            Op::Eq => a == b,
            Op::Ne => a != b,
            _ => false,
        },
        _ => false,
    }
}
