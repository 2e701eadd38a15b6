//! `rein diff OLD NEW`: per action, requests whose `before` decision
//! changes between two policies, each an example the solver built and both
//! policies' engines decided as stated; plus the structural changes
//! (`rein_engine::compare`).
//!
//! "No change from X to Y" is the solver's `unsat` over both policies'
//! over-approximations lowered into one logic (the same field, the same
//! unknown expression, is the same variable in both): proved. A change the
//! solver proposes but the engines do not confirm is listed as possible,
//! not shown as fact.

use crate::lint::Unknown;
use crate::smt::Solver;
use crate::{confirm_decision, example_json, field_vars, find_example, Found};
use rein_engine::analysis::{self, ActionModel, Decides, Logic, Term};
use rein_engine::compare::PolicyComparison;
use rein_engine::{Effect, Phase, Policy};

/// One kind of change of decision found for an action.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Change {
    /// OLD's decision.
    pub from: Effect,
    /// NEW's decision.
    pub to: Effect,
    /// A request both engines decided so; `None` when the solver found
    /// candidates that the engines did not confirm (a possible change).
    pub example: Option<serde_json::Value>,
    /// The rules of each side that decided the example (old, new).
    pub rules: Option<(Vec<String>, Vec<String>)>,
    /// Why no confirmed example is shown, when none is.
    pub note: Option<String>,
}

/// What changes for one action.
#[derive(Clone, Debug, serde::Serialize)]
pub struct ActionDiff {
    /// The action.
    pub action: String,
    /// Only one policy has it: `old` or `new`.
    pub only_in: Option<&'static str>,
    /// Its contracts (input, actor, snapshot, tool facts) differ.
    pub contract_changed: bool,
    /// Its `after` rules changed (not analysed here; see `rein plan`).
    pub after_changed: bool,
    /// Decision changes found.
    pub changes: Vec<Change>,
}

/// The whole comparison.
#[derive(Clone, Debug, serde::Serialize)]
pub struct DiffReport {
    /// Actions with some change, by name.
    pub actions: Vec<ActionDiff>,
    /// Structural changes: rules, contracts, defaults, combining.
    pub structure: PolicyComparison,
    /// Questions the solver could not answer.
    pub unknown: Vec<Unknown>,
    /// The solver's counts.
    pub solver: crate::smt::Stats,
}

impl DiffReport {
    /// True unless the two policies are proved to decide every request the
    /// same (`rein diff` exits 1): a decision change, a possible one, an
    /// open question, a contract change or a change the analysis does not
    /// cover (`after` rules) all count.
    pub fn differs(&self) -> bool {
        !self.unknown.is_empty()
            || self
                .actions
                .iter()
                .any(|a| a.only_in.is_some() || a.contract_changed || a.after_changed || !a.changes.is_empty())
            || self.structure.default_after.is_some()
            || self.structure.bound_actor.is_some()
    }
}

const EFFECTS: [Effect; 3] = [Effect::Allow, Effect::RequireApproval, Effect::Block];

/// Compares the `before` decisions of two policies, action by action.
pub fn diff(old: &Policy, new: &Policy, solver: &mut Solver) -> DiffReport {
    let structure = rein_engine::compare::compare(old, new);
    let mut logic = Logic::new();
    let old_models = analysis::lower(old, &mut logic);
    let new_models = analysis::lower(new, &mut logic);
    let wanted = field_vars(&logic);
    let mut names: Vec<&str> = old_models
        .iter()
        .chain(new_models.iter())
        .map(|m| m.action.as_str())
        .collect();
    names.sort_unstable();
    names.dedup();
    let mut actions = Vec::new();
    let mut unknown = Vec::new();
    for name in names {
        let o = old_models.iter().find(|m| m.action == name);
        let n = new_models.iter().find(|m| m.action == name);
        let comparison = structure.action(name);
        let contract_changed = comparison.is_some_and(|c| !c.contract_unchanged(&structure));
        let after_changed = comparison.is_some_and(|c| {
            c.rules_added
                .iter()
                .chain(c.rules_removed.iter())
                .any(|r| r.phase == Phase::After)
                || c.rules_changed.iter().any(|r| r.phase == Phase::After)
        });
        let side = |m: Option<&ActionModel>| match m {
            // An action a policy does not know is blocked.
            None => Decides {
                allow: Term::Bool(false),
                approval: Term::Bool(false),
                block: Term::Bool(true),
            },
            Some(m) => {
                // A request that breaks the contract is blocked before any rule.
                let d = m.decides();
                Decides {
                    allow: Term::and(vec![m.contract.clone(), d.allow]),
                    approval: Term::and(vec![m.contract.clone(), d.approval]),
                    block: Term::or(vec![Term::not(m.contract.clone()), d.block]),
                }
            }
        };
        let (dold, dnew) = (side(o), side(n));
        let mut changes = Vec::new();
        for from in EFFECTS {
            for to in EFFECTS {
                if from == to {
                    continue;
                }
                let q = Term::and(vec![dold.effect(from).clone(), dnew.effect(to).clone()]);
                let found = find_example(solver, &logic, &q, &wanted, |values| {
                    // The example is built from the contract of the side
                    // that knows the action, NEW first.
                    let req = analysis::build_request(new, &logic, name, values)
                        .or_else(|| analysis::build_request(old, &logic, name, values))?;
                    let (a, b) = (confirm_decision(old, &req)?, confirm_decision(new, &req)?);
                    (a.effect() == from && b.effect() == to).then(|| {
                        let ids =
                            |d: &rein_engine::Decision| d.deciding_rules().iter().map(|s| s.to_string()).collect();
                        (example_json(&req), (ids(&a), ids(&b)))
                    })
                });
                match found {
                    Found::Confirmed((example, rules)) => changes.push(Change {
                        from,
                        to,
                        example: Some(example),
                        rules: Some(rules),
                        note: None,
                    }),
                    Found::None => {}
                    Found::Unconfirmed(why) => changes.push(Change {
                        from,
                        to,
                        example: None,
                        rules: None,
                        note: Some(format!("possible, not confirmed: {why}")),
                    }),
                    Found::Unknown(why) => unknown.push(Unknown {
                        check: None,
                        action: name.to_string(),
                        rule: None,
                        question: format!("does any request go from {} to {}?", from.as_str(), to.as_str()),
                        reason: why,
                    }),
                }
            }
        }
        let only_in = match (o, n) {
            (Some(_), None) => Some("old"),
            (None, Some(_)) => Some("new"),
            _ => None,
        };
        if only_in.is_some() || contract_changed || after_changed || !changes.is_empty() {
            actions.push(ActionDiff {
                action: name.to_string(),
                only_in,
                contract_changed,
                after_changed,
                changes,
            });
        }
    }
    DiffReport {
        actions,
        structure,
        unknown,
        solver: solver.stats,
    }
}
