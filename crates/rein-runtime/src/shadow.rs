//! Shadow mode: a candidate policy decided beside the enforced one, and the
//! enforced policy's own `mode: shadow` rules, recorded in each audit
//! record's `shadow` field ([`ShadowRecord`]) and never enforced; and the
//! report of where they differed from what was enforced.
//!
//! What the candidate may not do, whatever it is: change the answer (it is
//! decided on the request after the enforced policy has decided it, and
//! only its record is kept), open or use an approval (its
//! `require_approval` is recorded as such), or write state (a stateful
//! candidate reads the runtime's mirror as it is and reserves nothing, so
//! its limits count the calls the *enforced* policy let through, and its
//! session facts are those the enforced policy recorded). A candidate that
//! panics or cannot read the state is recorded as an error.

use crate::identity::{self, Credential};
use crate::state::{Access, StateKeeper};
use rein_engine::{Basis, Decision, Effect, Phase, Policy, Prepared, Request};
use rein_store::{AuditQuery, CandidateRecord, ShadowRecord, ShadowRulesRecord, Store, StoreError};
use serde::Serialize;
use std::collections::BTreeMap;

/// What a panicking candidate is recorded with.
pub(crate) const PANICKED: &str = "the candidate policy panicked while deciding; the enforced decision stands";

/// At most this many example decision ids per line of a report.
pub const REPORT_EXAMPLES: usize = 5;

/// What the `mode: shadow` rules of `decision` said, if it has some.
pub(crate) fn rules_record(decision: &Decision) -> Option<ShadowRulesRecord> {
    let shadow = decision.shadow_rules()?;
    let deciding = if shadow.errors.is_empty() {
        shadow
            .rules
            .iter()
            .filter(|r| r.effect == shadow.effect)
            .map(|r| r.id.clone())
            .collect()
    } else {
        Vec::new()
    };
    Some(ShadowRulesRecord {
        effect: shadow.effect.as_str().to_string(),
        rules: shadow.rules.into_iter().map(|r| r.id).collect(),
        deciding,
        errors: shadow.errors.into_iter().map(|e| e.rule).collect(),
    })
}

/// The candidate's decision as it is recorded. Only ids, effects, the
/// basis and Rein's own texts: nothing quoted from the request.
fn candidate_record(candidate: &Policy, decided: Result<Decision, String>) -> CandidateRecord {
    let mut record = CandidateRecord {
        policy_version: candidate.version().to_string(),
        policy_version_label: candidate.version_label().map(str::to_string),
        effect: Effect::Block.as_str().to_string(),
        ..CandidateRecord::default()
    };
    let decision = match decided {
        Ok(decision) => decision,
        Err(why) => {
            record.basis = "error".to_string();
            record.error = Some(why);
            return record;
        }
    };
    record.effect = decision.effect().as_str().to_string();
    record.basis = match decision.basis() {
        Basis::Rules => "rules",
        Basis::Default => "default",
        Basis::Contract(_) => "contract",
        Basis::EvalError => "eval_error",
        Basis::State(_) => "state",
        Basis::Credential(_) => "credential",
    }
    .to_string();
    match decision.basis() {
        Basis::Contract(v) => record.violation = Some(v.path.clone()),
        Basis::State(why) | Basis::Credential(why) => record.error = Some(why.clone()),
        _ => {}
    }
    record.rules = decision.rules().into_iter().map(str::to_string).collect();
    record.deciding = decision.deciding_rules().into_iter().map(str::to_string).collect();
    record.errors = decision.errors().into_iter().map(|e| e.rule).collect();
    record.shadow_rules = rules_record(&decision);
    record
}

/// Whether `candidate` decides `request`'s action in `phase` with state:
/// then it is decided before the enforced decision reserves its writes, so
/// that it reads the state the enforced decision read (not this call's own
/// reservation).
pub(crate) fn needs_state(candidate: &Policy, request: &Request, phase: Phase) -> bool {
    candidate.uses_state() && candidate.action_state(&request.action, phase).any()
}

/// Decides `request` (already bound to its credential, its session scoped,
/// its time and phase set, as the enforced policy saw it) under the
/// candidate. `identity` is, for a `before` decision, the request's
/// credential and whether the enforced identity step refused the request
/// before any rule (then the candidate's identity step runs on a copy: the
/// same credential refuses it the same way, and the candidate may require
/// other bound fields); `None` for an `after` decision, which has no
/// identity step. `prepared` is the request as the enforced policy
/// prepared it for the candidate ([`rein_engine::Prepared::under`]: the
/// same contracts), if it could. Never panics: a panic is recorded.
pub(crate) fn decide_candidate(
    candidate: &Policy,
    request: &Request,
    identity: Option<(Option<&Credential>, bool)>,
    prepared: Option<Prepared>,
    state: &StateKeeper,
    access: Access<'_>,
) -> CandidateRecord {
    let decided = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let refusal = match identity {
            None => None,
            Some((bound, true)) => {
                let mut copy = request.clone();
                identity::bind(candidate, &mut copy, bound).refusal
            }
            Some((bound, false)) => identity::unbound_requirement(candidate, bound),
        };
        if let Some(why) = refusal {
            return Ok(candidate.unbound_block(request.phase, why));
        }
        if !needs_state(candidate, request, request.phase) {
            return Ok(match prepared {
                Some(prepared) => prepared.decide(),
                None => candidate.decide(request),
            });
        }
        match candidate.prepare(request) {
            Err(violation) => Ok(*violation),
            Ok(prepared) => state.decide_read_only(&prepared, access),
        }
    }));
    candidate_record(candidate, decided.unwrap_or_else(|_| Err(PANICKED.to_string())))
}

/// The `shadow` value of a record: `None` when nothing ran in shadow.
pub(crate) fn record_value(
    enforced: Effect,
    rules: Option<ShadowRulesRecord>,
    candidate: Option<CandidateRecord>,
) -> Option<serde_json::Value> {
    if rules.is_none() && candidate.is_none() {
        return None;
    }
    let record = ShadowRecord {
        enforced: enforced.as_str().to_string(),
        rules,
        candidate,
    };
    serde_json::to_value(record).ok()
}

/// Where the shadow decisions of recorded traffic differed from the
/// enforced ones.
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct ShadowReport {
    /// Records read (`before` and `after`, in the time range).
    pub records: u64,
    /// Records a candidate policy decided in shadow.
    pub candidate_decided: u64,
    /// Records of actions with `mode: shadow` rules.
    pub rules_decided: u64,
    /// Candidate decisions that failed (`basis: error`): a panic, or state
    /// it could not read.
    pub candidate_errors: u64,
    /// Records whose `shadow` field could not be read (written by another
    /// version, or damaged): counted, never guessed.
    pub unreadable: u64,
    /// One line per (source, action, phase, enforced → shadow effect,
    /// deciding rules), most frequent first.
    pub differences: Vec<ShadowDifference>,
}

/// One kind of difference, with its count and a few examples.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct ShadowDifference {
    /// `candidate` (the policy run with `--shadow`, named by its version
    /// hash) or `rules` (the enforced policy's `mode: shadow` rules).
    pub source: String,
    /// The candidate's version hash; `None` for `rules`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub candidate_version: Option<String>,
    /// The action.
    pub action: String,
    /// `before` or `after`.
    pub phase: String,
    /// The enforced policy's effect (before any approval step).
    pub enforced: String,
    /// The shadow effect.
    pub shadow: String,
    /// What decided the shadow effect: its rules (comma-separated), or
    /// `(default)`, `(contract: FIELD)`, `(error)`, `(state)`,
    /// `(credential)`, `(eval error: RULES)`.
    pub rule: String,
    /// How many records.
    pub count: u64,
    /// Up to [`REPORT_EXAMPLES`] decision ids, oldest first.
    pub examples: Vec<String>,
}

type Key = (String, Option<String>, String, String, String, String, String);

/// Reads the `before` and `after` records between `since` and `until`
/// (RFC 3339; either open) and counts where a shadow decision differed
/// from the enforced one. Read-only.
pub async fn shadow_report(
    store: &dyn Store,
    since: Option<String>,
    until: Option<String>,
) -> Result<ShadowReport, StoreError> {
    let mut report = ShadowReport::default();
    let mut lines: BTreeMap<Key, (u64, Vec<String>)> = BTreeMap::new();
    let mut after_seq = 0;
    loop {
        let page = store
            .query_audit(&AuditQuery {
                since: since.clone(),
                until: until.clone(),
                after_seq: Some(after_seq),
                limit: Some(10_000),
                ..AuditQuery::default()
            })
            .await?;
        let Some(last) = page.last() else { break };
        after_seq = last.seq;
        for record in page {
            let e = &record.entry;
            if e.phase != "before" && e.phase != "after" {
                continue;
            }
            report.records += 1;
            let Some(value) = &e.shadow else { continue };
            let Ok(shadow) = serde_json::from_value::<ShadowRecord>(value.clone()) else {
                report.unreadable += 1;
                continue;
            };
            let mut note = |key: Key| {
                let line = lines.entry(key).or_default();
                line.0 += 1;
                if line.1.len() < REPORT_EXAMPLES {
                    line.1.push(e.decision_id.clone());
                }
            };
            if let Some(rules) = &shadow.rules {
                report.rules_decided += 1;
                if rules.effect != shadow.enforced {
                    let rule = if rules.errors.is_empty() {
                        rules.deciding.join(", ")
                    } else {
                        format!("(eval error: {})", rules.errors.join(", "))
                    };
                    // No shadow rule decided: the enforced rules or the
                    // default did, and only an enforced error differs.
                    let rule = if rule.is_empty() {
                        "(enforced rules)".to_string()
                    } else {
                        rule
                    };
                    note((
                        "rules".into(),
                        None,
                        e.action.clone(),
                        e.phase.clone(),
                        shadow.enforced.clone(),
                        rules.effect.clone(),
                        rule,
                    ));
                }
            }
            if let Some(c) = &shadow.candidate {
                report.candidate_decided += 1;
                if c.basis == "error" {
                    report.candidate_errors += 1;
                }
                if c.effect != shadow.enforced {
                    let rule = match c.basis.as_str() {
                        "rules" => c.deciding.join(", "),
                        "contract" => format!("(contract: {})", c.violation.as_deref().unwrap_or("?")),
                        "eval_error" => format!("(eval error: {})", c.errors.join(", ")),
                        other => format!("({other})"),
                    };
                    note((
                        "candidate".into(),
                        Some(c.policy_version.clone()),
                        e.action.clone(),
                        e.phase.clone(),
                        shadow.enforced.clone(),
                        c.effect.clone(),
                        rule,
                    ));
                }
            }
        }
    }
    report.differences = lines
        .into_iter()
        .map(
            |((source, candidate_version, action, phase, enforced, shadow, rule), (count, examples))| {
                ShadowDifference {
                    source,
                    candidate_version,
                    action,
                    phase,
                    enforced,
                    shadow,
                    rule,
                    count,
                    examples,
                }
            },
        )
        .collect();
    // Most frequent first; ties keep the key order (stable sort).
    report.differences.sort_by_key(|d| std::cmp::Reverse(d.count));
    Ok(report)
}
