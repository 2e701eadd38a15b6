//! What-if before rollout: re-decide every recorded `before` request under
//! another policy and report each decision that would change.

use rein_engine::{Effect, Phase, Policy, Request};
use rein_store::{AuditQuery, Store, StoreError};
use serde::Serialize;
use std::collections::BTreeMap;

/// One recorded decision that the new policy would decide differently.
#[derive(Clone, Debug, Serialize)]
pub struct ReplayChange {
    /// Sequence number of the audit record.
    pub seq: u64,
    /// The decision.
    pub decision_id: String,
    /// The action.
    pub action: String,
    /// The effect the policy gave then (before any approval was applied).
    pub old_effect: String,
    /// The effect under the new policy.
    pub new_effect: Effect,
    /// The recorded matched rules.
    pub old_rules: Vec<String>,
    /// The matched rules under the new policy.
    pub new_rules: Vec<String>,
    /// The new decision's reasons.
    pub new_reasons: Vec<String>,
}

/// The result of a replay.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ReplayReport {
    /// `before` records re-decided.
    pub replayed: u64,
    /// Records not re-decided because their action has sensitive fields,
    /// which the log keeps only hashed.
    pub skipped_sensitive: u64,
    /// Every decision that would change.
    pub changes: Vec<ReplayChange>,
    /// Per rule: how many replayed decisions newly match it (`+`) or no
    /// longer match it (`-`).
    pub rule_deltas: BTreeMap<String, (u64, u64)>,
    /// Changes counted by `old effect -> new effect`.
    pub effect_changes: BTreeMap<String, u64>,
}

/// Re-decides every recorded `before` request under `policy`. Requests are
/// re-decided at their recorded time, so rules reading `now` replay as
/// they were decided.
pub async fn replay(store: &dyn Store, policy: &Policy) -> Result<ReplayReport, StoreError> {
    let mut report = ReplayReport::default();
    let mut after_seq = 0;
    loop {
        let page = store
            .query_audit(&AuditQuery {
                after_seq: Some(after_seq),
                limit: Some(10_000),
                ..AuditQuery::default()
            })
            .await?;
        let Some(last) = page.last() else { break };
        after_seq = last.seq;
        for record in page {
            let e = &record.entry;
            if e.phase != "before" {
                continue;
            }
            if !policy.sensitive_fields(&e.action).is_empty() {
                report.skipped_sensitive += 1;
                continue;
            }
            let mut request = Request::new(e.action.clone())
                .input(e.input.clone())
                .actor(e.actor.clone())
                .snapshot(e.snapshot.clone());
            request.session = e.session.clone();
            request.time = e.time.parse().ok();
            report.replayed += 1;
            if refused_by_credential(e) {
                // Contradicting the credential, or outside a delegated
                // scope: blocked before any rule, whatever the policy.
                continue;
            }
            // As the runtime judges it: the fields the record says came
            // from the credential are those it bound.
            let unbound = match &e.actor_source {
                Some(sources) => policy.unbound_required(|f| sources.get(f).is_some_and(|s| s == "credential")),
                None => policy.bound_actor_fields().first().map(|missing| {
                    format!(
                        "actor.{missing} must be set by the credential; this request has no credential that binds it"
                    )
                }),
            };
            let decision = match unbound {
                Some(why) => policy.unbound_block(Phase::Before, why),
                None => policy.decide(&request),
            };
            let new_rules: Vec<String> = decision.rules().into_iter().map(str::to_string).collect();
            let old_effect = policy_effect(e);
            let same = decision.effect().as_str() == old_effect && new_rules == e.rules;
            if same {
                continue;
            }
            for r in &new_rules {
                if !e.rules.contains(r) {
                    report.rule_deltas.entry(r.clone()).or_default().0 += 1;
                }
            }
            for r in &e.rules {
                if !new_rules.contains(r) {
                    report.rule_deltas.entry(r.clone()).or_default().1 += 1;
                }
            }
            if decision.effect().as_str() != old_effect {
                *report
                    .effect_changes
                    .entry(format!("{old_effect} -> {}", decision.effect()))
                    .or_default() += 1;
            }
            report.changes.push(ReplayChange {
                seq: record.seq,
                decision_id: e.decision_id.clone(),
                action: e.action.clone(),
                old_effect: old_effect.to_string(),
                new_effect: decision.effect(),
                old_rules: e.rules.clone(),
                new_rules,
                new_reasons: decision.reasons(),
            });
        }
    }
    Ok(report)
}

/// Whether the runtime blocked a recorded request before its rules for
/// what its credential says (see `identity::bind`): a field contradicting
/// a bound one, or an action outside a link's scope. No policy changes
/// that. (A field the policy required bound is judged again: another
/// policy may not require it.)
fn refused_by_credential(e: &rein_store::AuditEntry) -> bool {
    e.effect == "block"
        && e.rules.is_empty()
        && e.reasons.first().is_some_and(|r| {
            r.starts_with("delegation: action `")
                || (r.starts_with("actor.")
                    && r.split("; ")
                        .next()
                        .is_some_and(|first| first.ends_with(" is set by the credential")))
                || r.contains("is set by the credential; the request's actor is not an object")
        })
}

/// The effect the policy itself gave a recorded request. The runtime only
/// involves an approval (using one, or opening one) when the policy said
/// `require_approval`, and records its failures with an `approval` reason;
/// the recorded effect is the answer after those steps.
fn policy_effect(e: &rein_store::AuditEntry) -> &str {
    let approval_step = e.approval.is_some()
        || e.reasons
            .first()
            .is_some_and(|r| r.starts_with("approval") || r.starts_with("the approval could not be opened"));
    if approval_step {
        "require_approval"
    } else {
        &e.effect
    }
}
