//! What-if before rollout: re-decide every recorded `before` request under
//! another policy and report each decision that would change.

use rein_engine::{Effect, Phase, Policy, Request};
use rein_store::{AuditQuery, AuditRecord, Store, StoreError};
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

/// Records shown as examples per group of a plan.
const PLAN_EXAMPLES: usize = 3;

/// What a rollout plan found: the recorded `before` decisions re-decided
/// under a new policy, grouped per action by how their effect changes.
/// The baseline is what was recorded (the policy's effect, before any
/// approval step).
#[derive(Clone, Debug, Default, Serialize)]
pub struct PlanReport {
    /// The new policy's version.
    pub new_version: String,
    /// The version of the policy given as the one that recorded the
    /// traffic (`--current`), if one was.
    pub current_version: Option<String>,
    /// The versions of the policies records were read back with (the
    /// `--current` one, those the store kept), sorted.
    pub recording_versions: Vec<String>,
    /// `before` records read.
    pub records: u64,
    /// Records re-decided (those skipped are not).
    pub replayed: u64,
    /// Among them, records with sensitive fields, replayed because no rule
    /// that changed reads one.
    pub replayed_sensitive: u64,
    /// Re-decided with the same effect.
    pub unchanged: u64,
    /// Re-decided with another effect.
    pub changed: u64,
    /// Changes to `block` from another effect.
    pub new_blocks: u64,
    /// Changes to a less strict effect (`block` → `require_approval` or
    /// `allow`, `require_approval` → `allow`).
    pub widened: u64,
    /// The same effect, but other rules matched.
    pub rules_only: u64,
    /// Per action (sorted): what changed.
    pub actions: Vec<ActionPlan>,
    /// Records not re-decided, grouped by why.
    pub skipped: Vec<SkipGroup>,
    /// What this replay could not reproduce (state before the window,
    /// approvals granted), when it applies.
    pub limits: Vec<String>,
}

/// One action's part of a plan.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ActionPlan {
    /// The action.
    pub action: String,
    /// Its records re-decided.
    pub replayed: u64,
    /// Its decisions whose effect changes, grouped.
    pub changes: Vec<ChangeGroup>,
}

/// Decisions of one action that change the same way.
#[derive(Clone, Debug, Serialize)]
pub struct ChangeGroup {
    /// The recorded effect.
    pub from: String,
    /// The effect under the new policy.
    pub to: Effect,
    /// What decides the new effect: the matched rules whose effect it is,
    /// or `default`, `contract`, `error in <rule>`, `state`, `credential`.
    pub by: Vec<String>,
    /// How many.
    pub count: u64,
    /// Their share of the action's replayed records, in percent.
    pub percent: f64,
    /// A few decision ids, oldest first.
    pub examples: Vec<String>,
}

/// Records not re-decided for one reason.
#[derive(Clone, Debug, Serialize)]
pub struct SkipGroup {
    /// Why (`reads sensitive field input.card (rule large_refund)`).
    pub reason: String,
    /// How many.
    pub count: u64,
    /// A few decision ids.
    pub examples: Vec<String>,
}

/// What [`Planner::push`] did with a record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Replayed {
    /// Not a `before` record.
    Ignored,
    /// Re-decided: the new effect and the rules that matched.
    Decided {
        /// The effect under the new policy.
        effect: Effect,
        /// The rules that matched under it.
        rules: Vec<String>,
    },
    /// Not re-decided, and why.
    Skipped(String),
}

/// One action's change groups, keyed by (recorded effect, new effect, what
/// decided).
type Groups = BTreeMap<(String, String, Vec<String>), ChangeGroup>;

/// Re-decides recorded `before` records under a new policy, one at a time
/// in recorded order, and builds a [`PlanReport`].
///
/// Records with sensitive fields hold them only as keyed hashes. Such a
/// record is re-decided only when the decision under the new policy is
/// computable from what it holds: the policy that recorded it is known
/// (`current`, or one added with [`Planner::add_recording_policy`], and
/// the record names its version), the action's contracts
/// (input, actor, snapshot, tool facts) are the same in both, the recorded
/// decision was made by its rules (or by the default, or refused by the
/// contract), and every rule of the new policy that is not the same rule in
/// the recording policy reads no sensitive field: the unchanged rules keep
/// their recorded outcome, the others are evaluated
/// ([`Policy::decide_redacted`]). Anything else is skipped, with why.
///
/// Actions whose rules read or write state under the new policy are
/// re-decided against a fresh in-memory state fed by the replay itself, in
/// recorded order: state from before the window is not there, and a call
/// whose approval was granted counts as allowed only if the recorded
/// decision was allowed with that approval.
pub struct Planner<'p> {
    new: &'p Policy,
    /// The policies known to have recorded traffic, with their comparison
    /// to the new one.
    recording: Vec<(Policy, rein_engine::compare::PolicyComparison)>,
    state: rein_engine::MemoryState,
    report: PlanReport,
    actions: BTreeMap<String, (u64, Groups)>,
    skipped: BTreeMap<String, SkipGroup>,
    stateful_replayed: u64,
    state_writers_skipped: u64,
}

impl<'p> Planner<'p> {
    /// A planner for `new`; `current` is the policy that recorded the
    /// traffic, if known.
    pub fn new(new: &'p Policy, current: Option<&'p Policy>) -> Planner<'p> {
        Planner {
            new,
            recording: current
                .map(|c| (c.clone(), rein_engine::compare::compare(c, new)))
                .into_iter()
                .collect(),
            // The replay's own key: no audit key is needed, since only
            // calls replayed here are in this state.
            state: rein_engine::MemoryState::with_key([0x3c; 32]),
            report: PlanReport {
                new_version: new.version().to_string(),
                current_version: current.map(|c| c.version().to_string()),
                ..PlanReport::default()
            },
            actions: BTreeMap::new(),
            skipped: BTreeMap::new(),
            stateful_replayed: 0,
            state_writers_skipped: 0,
        }
    }

    /// Adds a policy that recorded some of the traffic (a version the store
    /// kept, say): records naming its version are read back with it.
    pub fn add_recording_policy(&mut self, policy: Policy) {
        if !self.knows_version(policy.version()) {
            let comparison = rein_engine::compare::compare(&policy, self.new);
            self.recording.push((policy, comparison));
        }
    }

    /// Whether the policy of version `version` is known to the planner.
    pub fn knows_version(&self, version: &str) -> bool {
        self.recording.iter().any(|(p, _)| p.version() == version)
    }

    /// The recording policy of version `version`, with its comparison.
    fn recorded_by(&self, version: &str) -> Option<&(Policy, rein_engine::compare::PolicyComparison)> {
        self.recording.iter().find(|(p, _)| p.version() == version)
    }

    /// Re-decides one record (records of other phases are ignored) and
    /// says what became of it. Feed records in recorded order.
    pub fn push(&mut self, record: &AuditRecord) -> Replayed {
        let e = &record.entry;
        if e.phase != "before" {
            return Replayed::Ignored;
        }
        self.report.records += 1;
        let old_effect = policy_effect(e).to_string();
        let new = self.new;
        let mut request = Request::new(e.action.clone())
            .input(e.input.clone())
            .actor(e.actor.clone())
            .snapshot(e.snapshot.clone());
        request.session = e.session.clone();
        request.time = e.time.parse().ok();
        let sensitive = self.is_redacted(e);
        let new_state = new.action_state(&e.action, Phase::Before);
        let (effect, by, rules) = if refused_by_credential(e) {
            (Effect::Block, vec!["credential".to_string()], Vec::new())
        } else if let Some(why) = unbound(new, e) {
            let d = new.unbound_block(Phase::Before, why);
            (d.effect(), vec!["credential".to_string()], Vec::new())
        } else if sensitive {
            match self.decide_sensitive(e, &request) {
                Ok(described) => {
                    self.report.replayed_sensitive += 1;
                    described
                }
                Err(why) => {
                    if new_state.any() {
                        self.state_writers_skipped += 1;
                    }
                    self.skip(why.clone(), &e.decision_id);
                    return Replayed::Skipped(why);
                }
            }
        } else if new_state.any() {
            self.stateful_replayed += 1;
            let d = match new.prepare(&request) {
                Ok(prepared) => {
                    let (d, effects) = prepared.decide_with_state(&self.state);
                    // An approval recorded as granted and used lets the
                    // call through, as it did then.
                    let granted = d.effect() == Effect::RequireApproval && e.effect == "allow" && e.approval.is_some();
                    let final_effect = if granted { Effect::Allow } else { d.effect() };
                    let time = request.time.unwrap_or(jiff::Timestamp::UNIX_EPOCH);
                    self.state.apply(&effects.writes(&e.decision_id, final_effect, time));
                    d
                }
                Err(d) => *d,
            };
            describe(&d)
        } else {
            describe(&new.decide(&request))
        };
        self.report.replayed += 1;
        let entry = self.actions.entry(e.action.clone()).or_default();
        entry.0 += 1;
        if effect.as_str() == old_effect {
            self.report.unchanged += 1;
            let mut recorded = e.rules.clone();
            recorded.sort();
            let mut rules = rules;
            rules.sort();
            if rules != recorded {
                self.report.rules_only += 1;
            }
            return Replayed::Decided { effect, rules };
        }
        self.report.changed += 1;
        if effect == Effect::Block {
            self.report.new_blocks += 1;
        }
        if strictness(effect.as_str()) < strictness(&old_effect) {
            self.report.widened += 1;
        }
        let group = entry
            .1
            .entry((old_effect.clone(), effect.as_str().to_string(), by.clone()))
            .or_insert_with(|| ChangeGroup {
                from: old_effect,
                to: effect,
                by,
                count: 0,
                percent: 0.0,
                examples: Vec::new(),
            });
        group.count += 1;
        if group.examples.len() < PLAN_EXAMPLES {
            group.examples.push(e.decision_id.clone());
        }
        Replayed::Decided { effect, rules }
    }

    /// The report, once every record was pushed.
    pub fn finish(mut self) -> PlanReport {
        for (action, (replayed, groups)) in std::mem::take(&mut self.actions) {
            let mut changes: Vec<ChangeGroup> = groups
                .into_values()
                .map(|mut g| {
                    g.percent = if replayed == 0 {
                        0.0
                    } else {
                        g.count as f64 * 100.0 / replayed as f64
                    };
                    g
                })
                .collect();
            changes.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.examples.cmp(&b.examples)));
            self.report.actions.push(ActionPlan {
                action,
                replayed,
                changes,
            });
        }
        let mut versions: Vec<String> = self.recording.iter().map(|(p, _)| p.version().to_string()).collect();
        versions.sort();
        self.report.recording_versions = versions;
        let mut skipped: Vec<SkipGroup> = self.skipped.into_values().collect();
        skipped.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.reason.cmp(&b.reason)));
        self.report.skipped = skipped;
        if self.stateful_replayed > 0 {
            self.report.limits.push(
                "stateful rules (limits, session facts) were replayed against a state built from the replayed \
                 window alone: uses and calls from before it are not counted, nor outputs reported after a call"
                    .to_string(),
            );
            self.report.limits.push(
                "approvals are not asked again: a call needing one counts as allowed in the replayed state only \
                 where the recorded decision was allowed with an approval"
                    .to_string(),
            );
            if self.state_writers_skipped > 0 {
                self.report.limits.push(format!(
                    "{} skipped records of actions that write state are missing from the replayed state: later \
                     stateful decisions may differ",
                    self.state_writers_skipped
                ));
            }
        }
        self.report
    }

    fn skip(&mut self, reason: String, decision_id: &str) {
        let group = self.skipped.entry(reason.clone()).or_insert_with(|| SkipGroup {
            reason,
            count: 0,
            examples: Vec::new(),
        });
        group.count += 1;
        if group.examples.len() < PLAN_EXAMPLES {
            group.examples.push(decision_id.to_string());
        }
    }

    /// Whether the record holds keyed hashes in place of values: its action
    /// has sensitive fields under the policy that recorded it (if known) or
    /// the new one, or a value reads as a keyed hash (a field sensitive in
    /// some other version).
    fn is_redacted(&self, e: &rein_store::AuditEntry) -> bool {
        // A `before` record holds no output: its sensitive paths do not
        // count.
        let in_request = |p: &Policy| p.sensitive_fields(&e.action).iter().any(|f| !f.starts_with("output."));
        let recorded_by = self.recorded_by(&e.policy_version).map(|(p, _)| in_request(p));
        let declared = recorded_by.unwrap_or_else(|| in_request(self.new));
        declared || [&e.input, &e.actor, &e.snapshot].into_iter().any(holds_hash)
    }

    /// The new decision of a record with sensitive fields, or why it
    /// cannot be computed.
    fn decide_sensitive(&self, e: &rein_store::AuditEntry, request: &Request) -> Result<Described, String> {
        if self.recording.is_empty() {
            return Err("sensitive fields, and no --current policy to tell which rules changed".into());
        }
        let Some((current, comparison)) = self.recorded_by(&e.policy_version) else {
            return Err(format!(
                "sensitive fields, recorded under policy version {}, which is not known (not --current)",
                short(&e.policy_version)
            ));
        };
        if comparison.combining.is_some() {
            // Under first match, the rules after the deciding one were not
            // evaluated: the record does not say whether they held.
            return Err("sensitive fields, and the combining of rules changed".into());
        }
        if comparison.actions_added.contains(&e.action) {
            return Err(format!("sensitive fields, and `{}` has a new contract", e.action));
        }
        let Some(action) = comparison.action(&e.action) else {
            // Unknown to the recording policy, or removed: refused by name
            // under the new one if it does not know it either.
            return self
                .new
                .decide_redacted(request, &|_| None)
                .map(|d| describe(&d))
                .map_err(|why| format!("sensitive fields: {why}"));
        };
        if !action.contract_unchanged(comparison) {
            return Err(format!("sensitive fields, and the contract of `{}` changed", e.action));
        }
        if current.action_state(&e.action, Phase::Before).any() {
            // Its rules were decided with state, which the record does not
            // hold (and a state refusal is made before any rule).
            return Err(format!(
                "sensitive fields, and the rules of `{}` read or write state under the policy that recorded it",
                e.action
            ));
        }
        // What the recording policy decided, read back from the record.
        if e.effect == "block" && e.rules.is_empty() && e.reasons.first().is_some_and(|r| r.starts_with("contract: ")) {
            // The same contracts refuse it again, before any rule.
            return Ok((Effect::Block, vec!["contract".to_string()], Vec::new()));
        }
        // The recorded outcome of a rule is known only if the decision was
        // made by its rules: no refusal before them (credential, state), no
        // rule that failed. The reasons tell: they must be those the
        // recording policy gives for exactly the recorded matches (a
        // failed rule or a refusal has other reasons; an approval step,
        // which follows only a decision of the rules, replaces them).
        let Some(by_rules) = current.decision_from_matches(&e.action, &e.rules) else {
            return Err("sensitive fields, and the recorded rules are not rules of the policy that recorded it".into());
        };
        let approval_step = policy_effect(e) != e.effect || e.approval.is_some();
        let read_back = by_rules.effect().as_str() == policy_effect(e)
            && (by_rules.reasons() == e.reasons || (approval_step && by_rules.effect() == Effect::RequireApproval));
        if !read_back {
            return Err(
                "sensitive fields, and the recorded decision was not made by its rules alone (refused before \
                 them, or a rule failed)"
                    .into(),
            );
        }
        let unchanged: Vec<&str> = action
            .rules_unchanged
            .iter()
            .filter(|r| r.phase == Phase::Before)
            .map(|r| r.id.as_str())
            .collect();
        let known = |id: &str| unchanged.contains(&id).then(|| e.rules.iter().any(|r| r == id));
        self.new
            .decide_redacted(request, &known)
            .map(|d| describe(&d))
            .map_err(|why| format!("sensitive fields: {why}"))
    }
}

/// A new decision as a plan counts it: effect, what decided it, the rules
/// that matched.
type Described = (Effect, Vec<String>, Vec<String>);

/// What decided `d`: the matched rules whose effect is the decision's, or
/// the kind of refusal.
fn describe(d: &rein_engine::Decision) -> Described {
    use rein_engine::Basis;
    let rules: Vec<String> = d.rules().into_iter().map(str::to_string).collect();
    let by = match d.basis() {
        Basis::Rules => d
            .matched_rules()
            .into_iter()
            .filter(|m| m.effect == d.effect())
            .map(|m| m.id)
            .collect(),
        Basis::Default => vec!["default".to_string()],
        Basis::Contract(_) => vec!["contract".to_string()],
        Basis::EvalError => d.errors().into_iter().map(|e| format!("error in {}", e.rule)).collect(),
        Basis::State(_) => vec!["state".to_string()],
        Basis::Credential(_) => vec!["credential".to_string()],
    };
    (d.effect(), by, rules)
}

/// How strict an effect is: `allow` < `require_approval` < `block`.
fn strictness(effect: &str) -> u8 {
    match effect {
        "allow" => 0,
        "require_approval" => 1,
        _ => 2,
    }
}

/// Why `policy` blocks a recorded request before any rule for a required
/// bound actor field, judged on the record's `actor_source` as the runtime
/// judged it.
fn unbound(policy: &Policy, e: &rein_store::AuditEntry) -> Option<String> {
    match &e.actor_source {
        Some(sources) => policy.unbound_required(|f| sources.get(f).is_some_and(|s| s == "credential")),
        None => policy.bound_actor_fields().first().map(|missing| {
            format!("actor.{missing} must be set by the credential; this request has no credential that binds it")
        }),
    }
}

/// Whether a string anywhere in `v` is a keyed hash as the audit log
/// writes them in place of a sensitive value.
fn holds_hash(v: &serde_json::Value) -> bool {
    match v {
        serde_json::Value::String(s) => s.starts_with(rein_store::redact::REDACTED_PREFIX),
        serde_json::Value::Array(items) => items.iter().any(holds_hash),
        serde_json::Value::Object(map) => map.values().any(holds_hash),
        _ => false,
    }
}

/// The first 12 digits of a version hash.
fn short(version: &str) -> &str {
    version.get(..12).unwrap_or(version)
}
