//! Static analysis of Rein policies: what a policy's rules can and cannot
//! do, decided by an SMT solver over the conditions' logic (`rein lint`,
//! `rein diff`). Sound by construction: a claim that no input exists (a rule
//! never matches, one rule covers another) is made only on the solver's
//! `unsat` over an over-approximation of the rules
//! ([`rein_engine::analysis`]); an example input the solver proposes is
//! confirmed by deciding it with the engine before it is shown; a timeout is
//! reported `unknown`.
//!
//! The solver is Z3, run as a child process ([`smt`]).

pub mod diff;
pub mod lint;
pub mod smt;

pub use diff::{diff, DiffReport};
pub use lint::{lint, lint_with, Finding, Kind, Level, LintConfig, LintReport};
pub use smt::{Answer, Solver, SolverConfig, SolverError};

use rein_engine::analysis::{Literal, Logic, Origin, Term};
use rein_engine::{Decision, Policy, Request};
use rustc_hash::FxHashMap;

impl Answer {
    /// True on a proved `unsat`.
    pub fn is_unsat(&self) -> bool {
        matches!(self, Answer::Unsat)
    }
}

/// A request the engine decided as the finding says.
#[derive(Clone, Debug)]
pub(crate) struct Example {
    pub request: serde_json::Value,
}

/// What a search for a confirmed example found.
pub(crate) enum Found<T> {
    /// An example the engine confirmed.
    Confirmed(T),
    /// Proved: no request exists.
    None,
    /// The solver proposed requests, but the engine decided none of them as
    /// expected (what the encoding does not follow differs).
    Unconfirmed(String),
    /// The solver could not answer.
    Unknown(String),
}

/// How many models are tried before an example counts as unconfirmed.
const MAX_TRIES: usize = 3;

/// Asks the solver for models of `query` until `confirm` accepts one (each
/// refused model is excluded from the next try).
pub(crate) fn find_example<T>(
    solver: &mut Solver,
    logic: &Logic,
    query: &Term,
    wanted: &[u32],
    mut confirm: impl FnMut(&FxHashMap<u32, Literal>) -> Option<T>,
) -> Found<T> {
    let mut q = query.clone();
    for attempt in 0..MAX_TRIES {
        match solver.check(logic, &q, wanted) {
            Answer::Unsat if attempt == 0 => return Found::None,
            Answer::Unsat => break,
            Answer::Unknown(why) => return Found::Unknown(why),
            Answer::Sat(values) => {
                if let Some(t) = confirm(&values) {
                    return Found::Confirmed(t);
                }
                // Exclude this assignment of the request's fields.
                let same: Vec<Term> = values
                    .iter()
                    .filter_map(|(v, lit)| Some(Term::eq(Term::Var(*v), literal_term(lit)?)))
                    .collect();
                q = Term::and(vec![q, Term::not(Term::and(same))]);
            }
        }
    }
    Found::Unconfirmed("the solver's examples were not confirmed by the engine (conditions not encoded exactly)".into())
}

fn literal_term(l: &Literal) -> Option<Term> {
    match l {
        Literal::Bool(b) => Some(Term::Bool(*b)),
        Literal::Int(i) => Some(Term::Int(*i)),
        Literal::Str(s) => Some(Term::Str(s.clone())),
        // A real read back as a double may not be the model's exact value:
        // it is left out of the exclusion rather than excluded wrongly.
        Literal::Real(_) => None,
    }
}

/// The variables that make up a request: field values and presence.
pub(crate) fn field_vars(logic: &Logic) -> Vec<u32> {
    logic
        .vars
        .iter()
        .enumerate()
        .filter(|(_, v)| matches!(v.origin, Origin::Field { .. } | Origin::Present { .. }))
        .filter_map(|(i, _)| u32::try_from(i).ok())
        .collect()
}

/// The engine's decision of a request. An action whose rules read state
/// is decided against an empty state (no earlier calls, no limit used), as
/// `rein check --state` would on a fresh state file; `None` when the
/// request does not even prepare.
pub(crate) fn confirm_decision<'p>(policy: &'p Policy, request: &Request) -> Option<Decision<'p>> {
    let state = policy.action_state(&request.action, rein_engine::Phase::Before);
    if !state.reads {
        return Some(policy.decide(request));
    }
    let prepared = policy.prepare(request).ok()?;
    let empty = rein_engine::MemoryState::with_key([0; 32]);
    Some(prepared.decide_with_state(&empty).0)
}

/// A request as JSON, as `rein check` reads it.
pub(crate) fn example_json(r: &Request) -> serde_json::Value {
    let mut o = serde_json::Map::new();
    o.insert("action".into(), serde_json::Value::String(r.action.clone()));
    o.insert("input".into(), r.input.clone());
    if r.actor.as_object().is_some_and(|a| !a.is_empty()) {
        o.insert("actor".into(), r.actor.clone());
    }
    if r.snapshot.as_object().is_some_and(|a| !a.is_empty()) {
        o.insert("snapshot".into(), r.snapshot.clone());
    }
    if let Some(session) = &r.session {
        o.insert("session".into(), serde_json::Value::String(session.clone()));
    }
    if let Some(time) = &r.time {
        o.insert("time".into(), serde_json::Value::String(time.to_string()));
    }
    serde_json::Value::Object(o)
}
