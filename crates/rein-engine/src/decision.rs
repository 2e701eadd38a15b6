//! The answer to a request: effect, the rules that matched and why, the
//! approval obligation, and the policy version.

use crate::ast::{Effect, Phase};
use crate::contract::Violation;
use crate::ir::{Approval, CompiledPolicy};
use serde_json::json;
use smallvec::SmallVec;
use std::ops::Deref;
use std::sync::{Arc, OnceLock};

/// The rules a decision matched, by position in the policy: a few inline,
/// so that the common decision allocates nothing.
pub(crate) type Matched = SmallVec<[u32; 4]>;

/// Up to this many actions, an unknown action's refusal suggests the closest
/// name (the hint compares the name with every action).
const MAX_ACTIONS_FOR_HINT: usize = 32;

/// The compiled policy a [`Decision`] or a [`crate::Prepared`] reads:
/// borrowed from the [`crate::Policy`] that made it, so that deciding
/// changes no reference count (a write to memory every thread sharing the
/// policy would contend on), or owned, by a value kept past that borrow
/// ([`Decision::into_owned`], [`crate::Prepared::into_owned`]).
#[derive(Clone, Debug)]
pub(crate) enum PolicyRef<'p> {
    /// Borrowed: the `Arc` itself, so that [`PolicyRef::into_owned`] can
    /// share it.
    Borrowed(&'p Arc<CompiledPolicy>),
    /// Owned: one reference of its own.
    Owned(Arc<CompiledPolicy>),
}

impl Deref for PolicyRef<'_> {
    type Target = CompiledPolicy;

    #[inline]
    fn deref(&self) -> &CompiledPolicy {
        match self {
            PolicyRef::Borrowed(p) => p,
            PolicyRef::Owned(p) => p,
        }
    }
}

impl PolicyRef<'_> {
    /// The same policy, owned: one reference count more for a borrowed
    /// one.
    pub(crate) fn into_owned(self) -> PolicyRef<'static> {
        match self {
            PolicyRef::Borrowed(p) => PolicyRef::Owned(Arc::clone(p)),
            PolicyRef::Owned(p) => PolicyRef::Owned(p),
        }
    }
}

/// The refusal of an action the policy does not know, its text written
/// only when read: the "did you mean" hint compares the name with every
/// action, too slow to pay on every refused request (a caller sending bad
/// names must stay cheap to refuse) when most refusals are never read by a
/// person.
#[derive(Clone, Debug)]
pub(crate) struct UnknownAction {
    /// The name the request gave.
    pub name: Box<str>,
    /// The violation's path (`action`, or `action.type` in Actra's shape).
    pub path: &'static str,
    /// Why the name is unknown, after `unknown action `name`: `.
    pub why: &'static str,
    /// The basis, written on first read.
    pub rendered: OnceLock<Basis>,
}

impl UnknownAction {
    /// The violation, with the closest action's name when there is one.
    fn violation(&self, policy: &CompiledPolicy) -> Violation {
        let name = &*self.name;
        // Bounded so that reading a refusal stays cheap too.
        let hint = if policy.actions.len() <= MAX_ACTIONS_FOR_HINT && name.len() <= 256 {
            let known = policy.actions.iter().map(|a| a.name());
            crate::diagnostics::did_you_mean(name, known).map(|s| format!(" (did you mean `{s}`?)"))
        } else {
            None
        };
        Violation {
            path: self.path.into(),
            message: format!("unknown action `{name}`: {}{}", self.why, hint.unwrap_or_default()),
        }
    }
}

/// Why the decision has its effect.
#[derive(Clone, Debug, PartialEq)]
pub enum Basis {
    /// One or more rules matched.
    Rules,
    /// No rule matched; the policy's default applied.
    Default,
    /// The request broke its contract (or named an unknown action).
    Contract(Violation),
    /// A condition failed to evaluate; the decision fails closed.
    EvalError,
    /// The decision needs state it could not have: no session for rules
    /// that read one, no state at all, or a state that failed. Fails
    /// closed (`block`); the text says why.
    State(String),
    /// The request's credential does not bind an actor field the policy
    /// requires bound (`bound: true`): blocked before any rule, the text
    /// from [`crate::Policy::unbound_required`].
    Credential(String),
}

/// A rule that matched, with its own effect and the reason it gives.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct MatchedRule {
    /// The rule's id.
    pub id: String,
    /// The rule's own effect (the decision's may differ).
    pub effect: Effect,
    /// Its `reason`, or `rule `id` matched (effect)` when it has none.
    pub reason: String,
}

/// A rule whose condition could not be evaluated.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct RuleError {
    /// The rule.
    pub rule: String,
    /// What went wrong.
    pub message: String,
}

/// The decision for one request. Cheap to build: it refers to the policy's
/// rules by position instead of copying their texts, and borrows the policy
/// that made it (`'p`): keep one longer with [`Decision::into_owned`].
#[derive(Clone, Debug)]
pub struct Decision<'p> {
    pub(crate) effect: Effect,
    pub(crate) phase: Phase,
    /// Read through [`Decision::basis`]: for an unknown action (`unknown`
    /// set) it is `Basis::Contract` with an empty violation.
    pub(crate) basis: Basis,
    pub(crate) matched: Matched,
    pub(crate) errors: Vec<(u32, String)>,
    pub(crate) policy: PolicyRef<'p>,
    /// What limits added (only decisions made with state have it, so a
    /// stateless decision stays one pointer wider).
    pub(crate) limits: Option<Box<LimitNotes>>,
    /// What the action's `mode: shadow` rules said (only when the action
    /// has some for the phase and its rules were evaluated, so a policy
    /// without them pays one pointer).
    pub(crate) shadow: Option<Box<ShadowNotes>>,
    /// An unknown action's refusal, its violation written when first read
    /// (one pointer on every other decision).
    pub(crate) unknown: Option<Box<UnknownAction>>,
}

/// What the `mode: shadow` rules of a decision's action said.
#[derive(Clone, Debug)]
pub(crate) struct ShadowNotes {
    /// The shadow rules whose condition held, in policy order.
    pub matched: Matched,
    /// The shadow rules that could not be evaluated.
    pub errors: Vec<(u32, String)>,
    /// The effect the decision would have had with them enforced.
    pub effect: Effect,
}

/// What a decision's `mode: shadow` rules said: recorded, never enforced
/// (see [`Decision::shadow_rules`]).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct ShadowRules {
    /// The effect the decision would have had with its shadow rules
    /// enforced (combined with the enforced rules as usual; an error in a
    /// shadow rule would have blocked).
    pub effect: Effect,
    /// The shadow rules whose condition held, each with its own effect.
    pub rules: Vec<MatchedRule>,
    /// The shadow rules that could not be evaluated.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<RuleError>,
}

/// What the limits of a decision made with state said.
#[derive(Clone, Debug, Default)]
pub(crate) struct LimitNotes {
    /// One per matching limit rule of effect block or require_approval.
    pub notes: Vec<LimitNote>,
}

/// What one matching limit rule said.
#[derive(Clone, Debug)]
pub(crate) struct LimitNote {
    /// The rule.
    pub rule: u32,
    /// `"<rule>: <used> of <max> used for <bucket> in the last <window>"`.
    pub reason: String,
    /// Seconds until the bucket has room for this call; `None` if it never
    /// will.
    pub retry_after_seconds: Option<u64>,
}

/// An approval a `require_approval` decision obliges, naming its rule.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Obligation {
    /// The rule that asked for approval.
    pub rule: String,
    /// Who may approve and for how long.
    #[serde(flatten)]
    pub approval: Approval,
}

impl<'p> Decision<'p> {
    /// A decision with no rule matched, no error and no notes.
    pub(crate) fn new(effect: Effect, phase: Phase, basis: Basis, policy: PolicyRef<'p>) -> Decision<'p> {
        Decision {
            effect,
            phase,
            basis,
            matched: Matched::new(),
            errors: Vec::new(),
            policy,
            limits: None,
            shadow: None,
            unknown: None,
        }
    }

    /// The `block` of a request naming an action the policy does not know:
    /// `path` and `why` as [`UnknownAction`] says. Formats nothing.
    pub(crate) fn unknown_action(
        phase: Phase,
        name: &str,
        path: &'static str,
        why: &'static str,
        policy: PolicyRef<'p>,
    ) -> Decision<'p> {
        let placeholder = Basis::Contract(Violation {
            path: String::new(),
            message: String::new(),
        });
        let mut d = Decision::new(Effect::Block, phase, placeholder, policy);
        d.unknown = Some(Box::new(UnknownAction {
            name: name.into(),
            path,
            why,
            rendered: OnceLock::new(),
        }));
        d
    }

    /// This decision, owning (a reference to) its policy: for a caller that
    /// keeps it past the borrow of the policy (the runtime's answers, a
    /// host language's objects).
    pub fn into_owned(self) -> Decision<'static> {
        Decision {
            effect: self.effect,
            phase: self.phase,
            basis: self.basis,
            matched: self.matched,
            errors: self.errors,
            policy: self.policy.into_owned(),
            limits: self.limits,
            shadow: self.shadow,
            unknown: self.unknown,
        }
    }

    /// The effect: allow, block or require approval.
    pub fn effect(&self) -> Effect {
        self.effect
    }

    /// The phase decided.
    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// Why the effect is what it is.
    pub fn basis(&self) -> &Basis {
        match &self.unknown {
            Some(u) => u.rendered.get_or_init(|| Basis::Contract(u.violation(&self.policy))),
            None => &self.basis,
        }
    }

    /// Ids of every rule whose condition held, in policy order.
    pub fn rules(&self) -> Vec<&str> {
        self.matched
            .iter()
            .filter_map(|&i| self.policy.rules.get(i as usize))
            .map(|r| r.id.as_str())
            .collect()
    }

    /// Why the decision has its effect: the reason of each matched rule
    /// whose own effect is the decision's (its `reason`, or a generic line),
    /// in policy order; or the reason for the default, a contract violation
    /// or an error. A `block` does not list the reasons of rules that
    /// allowed (they did not decide); [`Decision::rules`] and
    /// [`Decision::matched_rules`] still list every rule that matched.
    pub fn reasons(&self) -> Vec<String> {
        match self.basis() {
            Basis::Contract(v) => vec![format!("contract: {v}")],
            Basis::Default => vec![format!("no rule matched; the policy default is `{}`", self.effect)],
            Basis::EvalError => self
                .errors
                .iter()
                .map(|(i, msg)| format!("rule `{}` could not be evaluated: {msg}", self.rule_id(*i)))
                .collect(),
            Basis::State(why) | Basis::Credential(why) => vec![why.clone()],
            Basis::Rules => {
                let mut out = Vec::new();
                for &i in &self.matched {
                    let Some(r) = self.policy.rules.get(i as usize) else {
                        continue;
                    };
                    if r.effect != self.effect {
                        continue;
                    }
                    // A limit says how much was used before the rule's own
                    // reason.
                    if let Some(notes) = &self.limits {
                        out.extend(notes.notes.iter().filter(|n| n.rule == i).map(|n| n.reason.clone()));
                    }
                    out.push(
                        r.reason
                            .clone()
                            .unwrap_or_else(|| format!("rule `{}` matched ({})", r.id, r.effect)),
                    );
                }
                out
            }
        }
    }

    /// For a decision refused by limits: whole seconds until the limits
    /// that decided leave room for this call (the largest over them).
    /// `None` when a rule without a limit also decided, or when a limit can
    /// never hold this call: retrying would not help, and an agent told to
    /// retry would only loop.
    pub fn retry_after_seconds(&self) -> Option<u64> {
        if self.basis != Basis::Rules || self.effect == Effect::Allow {
            return None;
        }
        let notes = self.limits.as_ref()?;
        let mut wait: u64 = 0;
        for &i in &self.matched {
            let deciding = self
                .policy
                .rules
                .get(i as usize)
                .is_some_and(|r| r.effect == self.effect);
            if !deciding {
                continue;
            }
            let note = notes.notes.iter().find(|n| n.rule == i)?;
            wait = wait.max(note.retry_after_seconds?);
        }
        Some(wait)
    }

    /// Ids of the matched rules whose own effect is the decision's: the
    /// rules that decided, in policy order (empty unless the decision rests
    /// on rules).
    pub fn deciding_rules(&self) -> Vec<&str> {
        if self.basis != Basis::Rules {
            return Vec::new();
        }
        self.matched
            .iter()
            .filter_map(|&i| self.policy.rules.get(i as usize))
            .filter(|r| r.effect == self.effect)
            .map(|r| r.id.as_str())
            .collect()
    }

    /// The rules that matched, each with its own effect and reason (empty
    /// unless the decision rests on rules). Lets a caller explain a refusal
    /// without the rules that allowed.
    pub fn matched_rules(&self) -> Vec<MatchedRule> {
        if self.basis != Basis::Rules {
            return Vec::new();
        }
        self.matched
            .iter()
            .filter_map(|&i| self.policy.rules.get(i as usize))
            .map(|r| MatchedRule {
                id: r.id.clone(),
                effect: r.effect,
                reason: r
                    .reason
                    .clone()
                    .unwrap_or_else(|| format!("rule `{}` matched ({})", r.id, r.effect)),
            })
            .collect()
    }

    /// What the action's `mode: shadow` rules said: the ones that matched
    /// and the effect the decision would have had with them enforced.
    /// `None` when the action has no shadow rules for this phase, or when
    /// no rule was evaluated (a contract violation, a refusal before the
    /// rules): they never change [`Decision::effect`].
    pub fn shadow_rules(&self) -> Option<ShadowRules> {
        let notes = self.shadow.as_deref()?;
        let rules = notes
            .matched
            .iter()
            .filter_map(|&i| self.policy.rules.get(i as usize))
            .map(|r| MatchedRule {
                id: r.id.clone(),
                effect: r.effect,
                reason: r
                    .reason
                    .clone()
                    .unwrap_or_else(|| format!("rule `{}` matched ({})", r.id, r.effect)),
            })
            .collect();
        let errors = notes
            .errors
            .iter()
            .map(|(i, m)| RuleError {
                rule: self.rule_id(*i).to_string(),
                message: m.clone(),
            })
            .collect();
        Some(ShadowRules {
            effect: notes.effect,
            rules,
            errors,
        })
    }

    fn rule_id(&self, i: u32) -> &str {
        self.policy.rules.get(i as usize).map_or("?", |r| r.id.as_str())
    }

    /// The contract violation, if the request broke its contract.
    pub fn violation(&self) -> Option<&Violation> {
        match self.basis() {
            Basis::Contract(v) => Some(v),
            _ => None,
        }
    }

    /// Rules whose conditions failed to evaluate, with the error.
    pub fn errors(&self) -> Vec<RuleError> {
        self.errors
            .iter()
            .map(|(i, m)| RuleError {
                rule: self.rule_id(*i).to_string(),
                message: m.clone(),
            })
            .collect()
    }

    /// For `require_approval`: who must approve, per rule that asked.
    /// Rules without an `approval` block oblige the `approver` role.
    pub fn obligations(&self) -> Vec<Obligation> {
        if self.effect != Effect::RequireApproval || self.basis != Basis::Rules {
            return Vec::new();
        }
        self.matched
            .iter()
            .filter_map(|&i| self.policy.rules.get(i as usize))
            .filter(|r| r.effect == Effect::RequireApproval)
            .map(|r| Obligation {
                rule: r.id.clone(),
                approval: r.approval.clone().unwrap_or(Approval {
                    role: "approver".to_string(),
                    ttl_seconds: None,
                }),
            })
            .collect()
    }

    /// Session labels the matched rules attach (deduplicated, sorted).
    pub fn labels(&self) -> Vec<&str> {
        let mut out: Vec<&str> = self
            .matched
            .iter()
            .filter_map(|&i| self.policy.rules.get(i as usize))
            .flat_map(|r| r.labels.iter().map(String::as_str))
            .collect();
        out.sort_unstable();
        out.dedup();
        out
    }

    /// The hash of the policy that decided.
    pub fn policy_version(&self) -> &str {
        &self.policy.version_hash
    }

    /// The `version` label the policy's author wrote (see
    /// [`crate::Policy::version_label`]), if any.
    pub fn policy_version_label(&self) -> Option<&str> {
        self.policy.version_label.as_deref()
    }

    /// The JSON form printed by `rein check` and sent by the server.
    pub fn to_json(&self) -> serde_json::Value {
        let mut out = json!({
            "effect": self.effect,
            "phase": self.phase,
            "rules": self.rules(),
            "reasons": self.reasons(),
            "default_applied": self.basis == Basis::Default,
            "policy_version": self.policy_version(),
        });
        if let Some(label) = self.policy_version_label() {
            out["policy_version_label"] = json!(label);
        }
        let obligations = self.obligations();
        if !obligations.is_empty() {
            out["approval"] = json!(obligations);
        }
        let labels = self.labels();
        if !labels.is_empty() {
            out["labels"] = json!(labels);
        }
        if let Some(v) = self.violation() {
            out["violation"] = json!(v);
        }
        if let Some(r) = self.retry_after_seconds() {
            out["retry_after_seconds"] = json!(r);
        }
        if let Some(shadow) = self.shadow_rules() {
            out["shadow"] = json!(shadow);
        }
        if !self.errors.is_empty() {
            out["errors"] = self
                .errors()
                .iter()
                .map(|e| json!({"rule": e.rule, "message": e.message}))
                .collect();
        }
        out
    }
}
