//! The enforcement pipeline every surface calls: decide, turn a granted
//! approval into `allow` or open a pending one, append the decision to the
//! audit log, and only then answer. Outcomes go the same way through the
//! `after` rules.
//!
//! **Invariant:** an [`Answer`] exists only after its audit record is
//! durable. If anything on the way fails (the store, the approval lookup),
//! the answer is `block` and says why.

#![deny(missing_docs)]

mod budget;
mod direct;
pub mod identity;
mod lease;
mod recent;
mod refused;
mod replay;
mod shadow;
mod state;
pub mod trace;
pub mod versions;

use arc_swap::ArcSwap;
use jiff::{SignedDuration, Timestamp};
use recent::Recent;
use rein_engine::state::StateWrite;
use rein_engine::{Basis, Decision, Effect, Explanation, Phase, Policy, Request};
use rein_store::chain::format_time;
use rein_store::redact::Redactor;
use rein_store::seal::{key_fingerprint, Sealer};
use rein_store::{
    ApprovalError, ApprovalRecord, ApprovalState, AuditEntry, AuditRecord, CandidateRecord, ShadowRulesRecord, Store,
    StoreError,
};
use serde::Serialize;
use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

pub use identity::{ActionScope, Binding, BoundActor, ChainLink, Credential, Prepared};
pub use lease::DEFAULT_LEASE_HOLD;
pub use refused::{Refusal, MAX_REFUSED_BODY_KEPT};
pub use replay::{
    replay, ActionPlan, ChangeGroup, PlanReport, Planner, ReplayChange, ReplayReport, Replayed, SkipGroup,
};
pub use shadow::{shadow_report, ShadowDifference, ShadowReport, REPORT_EXAMPLES};
use state::Access;
pub use state::{DEFAULT_MAX_STATE_BYTES, DEFAULT_SESSION_IDLE, MAX_BUCKET_ID_BYTES, MAX_SESSION_ID_BYTES};

/// Settings of a runtime.
#[derive(Clone, Debug)]
pub struct RuntimeConfig {
    /// Key for the keyed hashes that replace sensitive fields in the audit
    /// log. Keep it secret and stable: the same value hashes the same way
    /// only under the same key.
    pub hmac_key: Vec<u8>,
    /// How long a grant holds, from the grant, when the rule sets no `ttl`.
    pub default_approval_ttl: SignedDuration,
    /// How long a pending approval waits for a person before it expires
    /// (then the request must be sent again, opening a new one).
    pub pending_approval_wait: SignedDuration,
    /// How many recent decisions are kept in memory to check their
    /// outcomes against the original, unredacted request.
    pub recent_decisions: usize,
    /// Whether a request's own `time` is what `now` reads. Off by default:
    /// the caller is usually the agent, and an agent that chose its clock
    /// could step around time-based rules. Turn it on only for trusted
    /// callers (tests, replays).
    pub trust_request_time: bool,
    /// How long a session is kept after its last call (its calls and
    /// labels): a session idle longer starts empty. 24 hours by default.
    pub session_idle: SignedDuration,
    /// The most memory, in bytes (estimated), the state of limits and
    /// sessions may hold. A decision that would add to a full state is
    /// `block` (nothing held is evicted: it may be what a rule needs);
    /// room frees up as entries leave their windows and sessions expire.
    pub max_state_bytes: usize,
    /// On a store shared by several processes: how long this process
    /// keeps the state lease while its stateful decisions keep arriving
    /// (those arriving later wait until the lease was given back and
    /// taken again, so that other processes get their turn). 20 ms by
    /// default. Unused on a store of one process.
    pub lease_hold: std::time::Duration,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            hmac_key: Vec::new(),
            default_approval_ttl: SignedDuration::from_hours(1),
            pending_approval_wait: SignedDuration::from_hours(1),
            recent_decisions: 10_000,
            trust_request_time: false,
            session_idle: state::DEFAULT_SESSION_IDLE,
            max_state_bytes: state::DEFAULT_MAX_STATE_BYTES,
            lease_hold: lease::DEFAULT_LEASE_HOLD,
        }
    }
}

/// The enforcement runtime: a policy that can be swapped atomically, a
/// store, and the redactor. Share it behind an `Arc`.
pub struct Runtime {
    policy: ArcSwap<Loaded>,
    /// The candidate policy decided in shadow beside the enforced one
    /// (see [`Runtime::set_shadow`]); empty without one.
    shadow: arc_swap::ArcSwapOption<Policy>,
    store: Arc<dyn Store>,
    redactor: Redactor,
    sealer: Sealer,
    config: RuntimeConfig,
    recent: Recent,
    /// Whether the last audit append failed (read on every append, so
    /// that the lock below is taken only on a change).
    audit_failing: AtomicBool,
    /// Why the last audit append failed; `None` once one succeeds.
    audit_failure: Mutex<Option<String>>,
    /// Whether the audit key was checked against the store's fingerprint:
    /// [`KEY_UNCHECKED`], [`KEY_OK`] or [`KEY_MISMATCH`].
    key_state: AtomicU8,
    /// When the last write probe of [`Runtime::audit_health_probed`] ran,
    /// so that callers (an unauthenticated `/healthz`) cannot make the
    /// store write more than once per [`PROBE_INTERVAL`].
    last_probe: Mutex<Option<Instant>>,
    /// The state stateful rules read (limits, sessions).
    state: state::StateKeeper,
    /// Decisions whose outcome is being reported right now: a second
    /// report of one of them is refused at once, so that two reports never
    /// reserve writes for the same call together.
    reporting: Mutex<std::collections::HashSet<String>>,
    /// Approval changes this runtime made, for in-process listeners (the
    /// console's live inbox, webhooks); see [`Runtime::approval_events`].
    events: tokio::sync::broadcast::Sender<ApprovalEvent>,
}

/// How many approval events a slow listener may fall behind before it
/// misses some (it then sees `RecvError::Lagged` and should re-read the
/// store).
const APPROVAL_EVENTS_CAPACITY: usize = 256;

/// A change to an approval made by this runtime, sent once the store has
/// accepted it (see [`Runtime::approval_events`]). Only this process's
/// changes: other replicas' approvals are seen by reading the store.
#[derive(Clone, Debug)]
pub enum ApprovalEvent {
    /// A pending approval was opened (a `require_approval` decision that
    /// found no open one to reuse). The record's `summary` is redacted,
    /// and `sealed` holds the sensitive values only encrypted.
    Opened(ApprovalRecord),
    /// An approval was granted or denied.
    Decided {
        /// The approval's id.
        id: String,
        /// Its state now (`Granted` or `Denied`).
        state: ApprovalState,
    },
}

/// A claim on reporting one decision's outcome (see `Runtime::reporting`),
/// given back when the report is done.
struct Reporting<'a> {
    claims: &'a Mutex<std::collections::HashSet<String>>,
    decision_id: String,
}

impl Drop for Reporting<'_> {
    fn drop(&mut self) {
        self.claims
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&self.decision_id);
    }
}

/// Shortest time between two write probes of the store.
const PROBE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

const KEY_UNCHECKED: u8 = 0;
const KEY_OK: u8 = 1;
const KEY_MISMATCH: u8 = 2;

/// A policy and what the runtime derives from it once, when it is loaded
/// rather than for every decision.
struct Loaded {
    policy: Arc<Policy>,
    /// The sensitive paths of each action of the policy (empty for most).
    sensitive: HashMap<String, Arc<[String]>>,
    /// Every sensitive path of any action, for what cannot be tied to one
    /// action of the policy (a refused body, an unknown action, an outcome
    /// whose decision cannot be found).
    all_sensitive: Vec<String>,
}

impl Loaded {
    fn new(policy: Policy) -> Loaded {
        let sensitive = policy
            .actions()
            .map(|a| (a.to_string(), policy.sensitive_fields(a).into()))
            .collect::<HashMap<String, Arc<[String]>>>();
        let mut all_sensitive: Vec<String> = sensitive.values().flat_map(|p| p.iter().cloned()).collect();
        all_sensitive.sort();
        all_sensitive.dedup();
        Loaded {
            policy: Arc::new(policy),
            sensitive,
            all_sensitive,
        }
    }

    /// The paths to redact in a request for `action`. An action the policy
    /// does not know (a misspelt `Pay`, the empty name of an outcome whose
    /// decision is not found) has no contract to say which of its fields
    /// are secret, so every path any action marks sensitive is redacted:
    /// a card number sent under the wrong action name is not kept in clear.
    fn sensitive(&self, action: &str) -> &[String] {
        self.sensitive.get(action).map_or(&self.all_sensitive, |p| p)
    }
}

/// Records a person's decision on an approval in the audit log, phase
/// `approval`: who granted or denied which approval, with their comment,
/// filed under the decision that asked for it; a refused attempt (not
/// allowed, self-approval, expired…) is recorded as `block` with why. The
/// grant itself lives in the approvals table, outside the chain: this record
/// puts every grant under the chain's protection.
///
/// The approval change is already committed when this runs (it is recorded
/// as what happened); if the record cannot be appended, the error says so.
pub async fn record_approval_decision(
    store: &dyn Store,
    id: &str,
    grant: bool,
    approver: &str,
    comment: Option<&str>,
    result: &Result<ApprovalRecord, RuntimeError>,
    policy_version: &str,
) -> Result<(), RuntimeError> {
    let verb = if grant { "grant" } else { "deny" };
    let (decision_id, action, rules, effect, reason) = match result {
        Ok(r) => (
            r.decision_id.clone(),
            r.action.clone(),
            r.rules.clone(),
            if grant { Effect::Allow } else { Effect::Block },
            format!("approval `{id}` {} by `{approver}`", r.state.as_str()),
        ),
        Err(e) => {
            // Filed under the decision that asked, when the approval exists.
            let asked = store.get_approval(id).await.ok().flatten();
            let (decision_id, action, rules) =
                asked.map_or_else(Default::default, |a| (a.decision_id, a.action, a.rules));
            (
                decision_id,
                action,
                rules,
                Effect::Block,
                format!("`{approver}` could not {verb} approval `{id}`: {e}"),
            )
        }
    };
    let entry = AuditEntry {
        decision_id,
        time: format_time(Timestamp::now()),
        phase: "approval".to_string(),
        action,
        input: serde_json::json!({"approval": id, "decision": verb, "comment": comment}),
        actor: serde_json::json!({"id": approver}),
        snapshot: serde_json::Value::Null,
        output: None,
        error: None,
        session: None,
        effect: effect.as_str().to_string(),
        rules,
        reasons: vec![reason],
        policy_version: policy_version.to_string(),
        latency_us: 0,
        approval: Some(id.to_string()),
        client: None,
        policy_version_label: None,
        actor_source: None,
        shadow: None,
        activation: None,
        trace: None,
    };
    store.append(entry).await.map(|_| ()).map_err(|e| {
        RuntimeError::Store(StoreError(format!(
            "the {verb} of approval `{id}` could not be recorded in the audit log: {}",
            e.0
        )))
    })
}

/// Grants (`grant = true`) or denies the pending approval `id` in `store`
/// for `approver`, and records the attempt in the audit log (see
/// [`record_approval_decision`]), whether it succeeded or not. The
/// approver must hold every role the approval names (unless
/// `approver.roles` is `None`: every role) and may not be the actor who
/// asked nor the client that sent the request. This is what the server
/// runs, and what `rein approvals grant` runs on the store file.
pub async fn decide_approval_in(
    store: &dyn Store,
    id: &str,
    grant: bool,
    approver: Approver<'_>,
    comment: Option<&str>,
    policy_version: &str,
) -> Result<ApprovalRecord, RuntimeError> {
    let name = approver.name;
    let result = try_decide_approval(store, id, grant, approver, comment).await;
    record_approval_decision(store, id, grant, name, comment, &result, policy_version).await?;
    result
}

async fn try_decide_approval(
    store: &dyn Store,
    id: &str,
    grant: bool,
    approver: Approver<'_>,
    comment: Option<&str>,
) -> Result<ApprovalRecord, RuntimeError> {
    {
        let record = store
            .get_approval(id)
            .await?
            .ok_or_else(|| ApprovalError::NotFound(id.to_string()))?;
        // The store checks the approver's name as written; every id, in
        // canonical form, and the ids of their credential are checked
        // here (a request made under any of them is theirs). Checked
        // before the roles, as the store does.
        if record.state == ApprovalState::Pending && approver.asked_for(&record) {
            return Err(ApprovalError::SelfApproval(approver.name.to_string()).into());
        }
        if let Some(role) = approver.missing_role(&record) {
            return Err(RuntimeError::NotAllowed {
                approver: approver.name.to_string(),
                role: role.to_string(),
            });
        }
    }
    let now = format_time(Timestamp::now());
    Ok(store.decide_approval(id, grant, approver.name, comment, &now).await??)
}

/// [`Policy::decide`] in its two steps, each timed: the contract check,
/// then the rules (only when traces are exported; the same decision).
fn timed_decide<'p>(policy: &'p Policy, request: &Request, timer: &mut trace::Timer) -> Decision<'p> {
    timer.begin("rein.contract");
    let decision = match policy.prepare(request) {
        Ok(prepared) => {
            timer.begin("rein.policy");
            prepared.decide()
        }
        Err(violation) => *violation,
    };
    timer.end();
    decision
}

/// The id of every link of `actor.chain` (bound by the credential, or
/// as the caller sent it: more ids only refuse more approvers), in order,
/// each once; an element that is not a link with a string id is skipped.
fn chain_ids(actor: &serde_json::Value) -> Vec<String> {
    let mut ids: Vec<String> = Vec::new();
    let links = actor.get("chain").and_then(serde_json::Value::as_array);
    for id in links.into_iter().flatten().filter_map(|l| l.get("id")?.as_str()) {
        if !ids.iter().any(|known| known == id) {
            ids.push(id.to_string());
        }
    }
    ids
}

/// The root a dotted path starts with: `input` of `input.lines[0].sku`.
fn root_of(path: &str) -> &str {
    path.split(['.', '[']).next().unwrap_or(path)
}

/// `time` in the fixed-width form times are compared in, if it parses.
fn chain_key(time: &str) -> Option<String> {
    rein_store::chain::parse_time(time).ok()
}

/// Shortest text of a sensitive value taken out of the recorded reasons:
/// shorter ones would match inside unrelated words and numbers (and are
/// guessable anyway).
const MIN_SCRUBBED: usize = 3;

/// Collects, into `out`, the texts (strings, numbers) of `original` where
/// `redacted` differs from it: the values redaction replaced by hashes.
fn redacted_texts(original: &serde_json::Value, redacted: &serde_json::Value, out: &mut Vec<String>) {
    use serde_json::Value;
    if original == redacted {
        return;
    }
    match (original, redacted) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in a {
                match b.get(k) {
                    Some(w) => redacted_texts(v, w, out),
                    None => leaf_texts(v, out),
                }
            }
        }
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => {
            for (v, w) in a.iter().zip(b) {
                redacted_texts(v, w, out);
            }
        }
        _ => leaf_texts(original, out),
    }
}

fn leaf_texts(value: &serde_json::Value, out: &mut Vec<String>) {
    use serde_json::Value;
    match value {
        Value::String(s) => out.push(s.clone()),
        Value::Number(n) => out.push(n.to_string()),
        Value::Array(items) => items.iter().for_each(|v| leaf_texts(v, out)),
        Value::Object(map) => map.values().for_each(|v| leaf_texts(v, out)),
        Value::Bool(_) | Value::Null => {}
    }
}

/// The reasons with every sensitive text in them replaced, longest first
/// (so that a value containing another is replaced whole).
fn scrub_reasons(reasons: &[String], secrets: &[String]) -> Vec<String> {
    let mut secrets: Vec<&str> = secrets
        .iter()
        .map(String::as_str)
        .filter(|s| s.len() >= MIN_SCRUBBED)
        .collect();
    if secrets.is_empty() {
        return reasons.to_vec();
    }
    secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    reasons
        .iter()
        .map(|r| {
            secrets.iter().fold(
                r.clone(),
                |r, s| if r.contains(s) { r.replace(s, "<sensitive>") } else { r },
            )
        })
        .collect()
}

/// The decision an outcome reports on, as found in memory or in the log.
struct Original {
    /// The request and its effect, or why they cannot be had.
    request: Result<(Request, Effect), String>,
    /// The client that asked for the decision (`Some(None)`: none), when
    /// the decision is known.
    asked_by: Option<Option<Arc<str>>>,
}

impl Original {
    fn unknown(why: String) -> Original {
        Original {
            request: Err(why),
            asked_by: None,
        }
    }
}

/// A pending approval created by a `require_approval` decision.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PendingApproval {
    /// Its id: re-send the identical request with `"approval": id` once it
    /// is granted.
    pub id: String,
    /// The role that may grant it; several, comma-separated, when the rules
    /// that asked name different roles (see `roles`).
    pub role: String,
    /// Every role its approver must hold, sorted.
    pub roles: Vec<String>,
    /// Until when it can be granted (RFC 3339); once granted, it holds for
    /// the rule's `ttl` from the grant.
    pub expires_at: String,
    /// Whether it is the approval an identical earlier request opened,
    /// still pending, rather than a new one.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub reused: bool,
}

/// The answer to a decide or outcome call, recorded in the audit log.
#[derive(Clone, Debug, Serialize)]
pub struct Answer {
    /// Id of the decision; outcomes refer to it.
    pub decision_id: String,
    /// The final effect.
    pub effect: Effect,
    /// `before` or `after`.
    pub phase: Phase,
    /// Matched rules.
    pub rules: Vec<String>,
    /// Why.
    pub reasons: Vec<String>,
    /// The approval opened by this decision, if it requires one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub approval: Option<PendingApproval>,
    /// The contract violation, if the request broke its contract.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub violation: Option<rein_engine::Violation>,
    /// Labels the matched rules attach to the session.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub labels: Vec<String>,
    /// For a refusal by a limit: seconds until enough of it frees up for
    /// this call (absent when nothing frees up in time, or for another
    /// refusal).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_after_seconds: Option<u64>,
    /// Hash of the policy that decided.
    pub policy_version: String,
    /// The policy's own `version:` label, when it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy_version_label: Option<String>,
    /// Sequence number of the audit record; `None` only when recording
    /// failed, and then the effect is `block`.
    pub audit_seq: Option<u64>,
    /// The matched rules, each with its own effect and reason: lets a
    /// caller name the rules that decided (those whose effect is the
    /// answer's) without the rules that allowed, which `rules` lists too.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub matched: Vec<rein_engine::MatchedRule>,
    /// The rules whose conditions could not be evaluated, with why (the
    /// reasons say it too); kept to tell them apart from other reasons.
    #[serde(skip)]
    pub errors: Vec<rein_engine::RuleError>,
    /// The delegation chain the request's credential binds
    /// (`[{kind, id}, …]`, from the person down to the acting agent), as
    /// the rules read it in `actor.chain`; absent when none is bound.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chain: Option<Vec<ChainLink>>,
}

/// What [`Runtime::explain_from`] answers.
#[derive(Clone, Debug)]
pub enum Explained {
    /// The decision with the trace of every rule considered.
    Decided(Explanation),
    /// The runtime would block the request before its rules are
    /// considered: the state they read cannot be had (not loaded, full, a
    /// session id or limit key longer than it keeps).
    Refused {
        /// Why, as a decision would say it.
        reason: String,
        /// Hash of the policy in force.
        policy_version: String,
        /// The policy's own `version:` label, when it has one.
        policy_version_label: Option<String>,
    },
}

impl Explained {
    /// The form of `rein explain --json`: `{"decision": ..., "rules": [...]}`
    /// (a refusal is a `block` decision with its reason and no rule).
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            Explained::Decided(explanation) => explanation.to_json(),
            Explained::Refused {
                reason,
                policy_version,
                policy_version_label,
            } => {
                let mut decision = serde_json::json!({
                    "effect": Effect::Block,
                    "phase": Phase::Before,
                    "rules": [],
                    "reasons": [reason],
                    "default_applied": false,
                    "policy_version": policy_version,
                });
                if let Some(label) = policy_version_label {
                    decision["policy_version_label"] = serde_json::json!(label);
                }
                serde_json::json!({"decision": decision, "rules": []})
            }
        }
    }

    /// The effect the explained decision has.
    pub fn effect(&self) -> Effect {
        match self {
            Explained::Decided(explanation) => explanation.decision.effect(),
            Explained::Refused { .. } => Effect::Block,
        }
    }
}

/// Errors of approval management (not of decisions, which never fail).
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The approval cannot be granted, denied or used.
    #[error(transparent)]
    Approval(#[from] ApprovalError),
    /// The approver may not decide approvals of this role.
    #[error("`{approver}` may not decide approvals for role `{role}`")]
    NotAllowed {
        /// Who tried.
        approver: String,
        /// The role the approval needs.
        role: String,
    },
    /// The audit key is not the one the store was first used with: its
    /// hashes would not match those already recorded.
    #[error(
        "the audit key is not the one this store was first used with (its fingerprint is {stored}, this key's is \
         {given}); use the original key (rein-audit.key beside the database, or --audit-key), or start a new store"
    )]
    KeyMismatch {
        /// The fingerprint the store keeps.
        stored: String,
        /// The fingerprint of the key given.
        given: String,
    },
}

/// Why an outcome report was refused without being checked or recorded.
#[derive(Debug, thiserror::Error)]
pub enum OutcomeRefused {
    /// The decision was asked for by another client.
    #[error("decision `{decision_id}` was asked for by another client; only that client may report its outcome")]
    OtherClient {
        /// The decision.
        decision_id: String,
    },
    /// The decision's outcome was already reported.
    #[error("the outcome of decision `{decision_id}` was already reported; an outcome is reported once")]
    AlreadyReported {
        /// The decision.
        decision_id: String,
    },
}

/// Who decides an approval, and for which approval roles.
#[derive(Clone, Debug)]
pub struct Approver<'a> {
    /// Their name, recorded on the approval; it may not be the requester's.
    pub name: &'a str,
    /// The approval roles (a rule's `approval.role`) they may decide;
    /// `None` means every role.
    pub roles: Option<&'a [String]>,
    /// Their credential, if any: every id it speaks for (the bound actor
    /// `id`, each link of its chain) is theirs, whatever their token's
    /// name, and a request made under any of them is their own.
    pub credential: Option<&'a Credential>,
}

impl Approver<'_> {
    /// Whether `approval` was asked for by this approver: any of their ids
    /// (their name, the actor id bound to their credential, each link of
    /// its chain) is any of the requester's (the actor id the request
    /// named, the client that sent it, each link of its chain). So neither
    /// a second actor id on the requester's credential nor a credential
    /// delegated from the requester (whose chain holds the requester) may
    /// approve.
    pub fn asked_for(&self, approval: &ApprovalRecord) -> bool {
        // Compared in canonical form: another spelling of one id is the
        // same person.
        let requester: Vec<String> = approval
            .requested_by
            .iter()
            .chain(&approval.requested_via)
            .chain(&approval.requested_chain)
            .map(|id| identity::canonical_text(id))
            .collect();
        let is_requester = |id: &String| requester.contains(id);
        is_requester(&identity::canonical_text(self.name))
            || self.credential.is_some_and(|c| c.ids().iter().any(is_requester))
    }

    /// The first role `approval` needs that this approver does not hold.
    pub fn missing_role<'r>(&self, approval: &'r ApprovalRecord) -> Option<&'r str> {
        let roles = self.roles?;
        approval
            .roles
            .iter()
            .find(|need| !roles.iter().any(|r| r == "*" || r == *need))
            .map(String::as_str)
    }

    /// Whether this approver may decide `approval` (holds its roles and did
    /// not ask for it), hence see what it covers.
    pub fn may_decide(&self, approval: &ApprovalRecord) -> bool {
        self.missing_role(approval).is_none() && !self.asked_for(approval)
    }
}

impl Runtime {
    /// A runtime deciding with `policy` and recording in `store`.
    pub fn new(policy: Policy, store: Arc<dyn Store>, config: RuntimeConfig) -> Runtime {
        Runtime {
            policy: ArcSwap::from_pointee(Loaded::new(policy)),
            shadow: arc_swap::ArcSwapOption::empty(),
            redactor: Redactor::new(&config.hmac_key),
            sealer: Sealer::new(&config.hmac_key),
            recent: Recent::new(config.recent_decisions),
            state: state::StateKeeper::new(
                &Redactor::new(&config.hmac_key),
                config.session_idle,
                config.max_state_bytes,
                store.is_shared().then(|| (Arc::clone(&store), config.lease_hold)),
            ),
            store,
            config,
            audit_failing: AtomicBool::new(false),
            audit_failure: Mutex::new(None),
            key_state: AtomicU8::new(KEY_UNCHECKED),
            last_probe: Mutex::new(None),
            reporting: Mutex::new(std::collections::HashSet::new()),
            events: tokio::sync::broadcast::channel(APPROVAL_EVENTS_CAPACITY).0,
        }
    }

    /// A receiver of the approval changes this runtime makes from now on
    /// (opened, granted, denied), each sent after the store accepted it.
    /// A receiver that falls more than a few hundred events behind gets
    /// `Lagged` and should re-read the store; changes made by other
    /// processes sharing the store are not sent.
    pub fn approval_events(&self) -> tokio::sync::broadcast::Receiver<ApprovalEvent> {
        self.events.subscribe()
    }

    /// Sends `event` (built only when someone listens: no receiver, no
    /// copy of the record).
    fn emit(&self, event: impl FnOnce() -> ApprovalEvent) {
        if self.events.receiver_count() > 0 {
            // An error means every receiver went away in between: nothing to do.
            let _ = self.events.send(event());
        }
    }

    /// Checks the audit key against the fingerprint the store keeps,
    /// recording this key's if the store has none yet (a new store, or one
    /// from before fingerprints). Call it at start to refuse a wrong key
    /// with a clear message; the first append checks it anyway, and with a
    /// wrong key every decision is `block`.
    pub async fn check_audit_key(&self) -> Result<(), RuntimeError> {
        let given = key_fingerprint(&self.config.hmac_key);
        let stored = match self.store.key_fingerprint().await? {
            Some(stored) => stored,
            // Written once in the store's life; later starts only read.
            None => self.store.bind_key_fingerprint(&given).await?,
        };
        if stored == given {
            self.key_state.store(KEY_OK, Ordering::Release);
            Ok(())
        } else {
            self.key_state.store(KEY_MISMATCH, Ordering::Release);
            Err(RuntimeError::KeyMismatch { stored, given })
        }
    }

    /// Whether the audit log takes appends: `Err` with why while the last
    /// append failed (a full disk, a broken file), `Ok` again once one
    /// succeeds. Every decision is `block` while appends fail.
    pub fn audit_health(&self) -> Result<(), String> {
        match self.audit_failure.lock() {
            Ok(failure) => match failure.as_ref() {
                Some(why) => Err(why.clone()),
                None => Ok(()),
            },
            Err(_) => Err("the runtime's health state is poisoned".into()),
        }
    }

    /// As [`Runtime::audit_health`], but while appends fail, first tries a
    /// small write to the store ([`Store::probe_write`]): once it takes
    /// writes again (space was freed), the failure is cleared. Otherwise
    /// only a decision could clear it, and a server out of rotation for
    /// being unhealthy gets none. A wrong audit key stays a failure. At
    /// most one probe runs per second, however often this is asked.
    pub async fn audit_health_probed(&self) -> Result<(), String> {
        if !self.audit_failing.load(Ordering::Acquire) || self.key_state.load(Ordering::Acquire) == KEY_MISMATCH {
            return self.audit_health();
        }
        let due = match self.last_probe.lock() {
            Ok(mut last) => {
                let due = last.is_none_or(|at| at.elapsed() >= PROBE_INTERVAL);
                if due {
                    *last = Some(Instant::now());
                }
                due
            }
            Err(_) => false,
        };
        if !due {
            return self.audit_health();
        }
        match self.store.probe_write().await {
            Ok(()) => {
                tracing::info!("the store takes writes again; the audit log is healthy");
                self.set_audit_failure(None);
                Ok(())
            }
            Err(e) => {
                tracing::warn!(error = %e, "the store still takes no writes");
                self.audit_health()
            }
        }
    }

    fn set_audit_failure(&self, failure: Option<String>) {
        let failing = failure.is_some();
        if !failing && !self.audit_failing.load(Ordering::Acquire) {
            return; // the common case: healthy, and still so
        }
        if let Ok(mut f) = self.audit_failure.lock() {
            *f = failure;
            self.audit_failing.store(failing, Ordering::Release);
        }
    }

    /// The policy now in force.
    pub fn policy(&self) -> Arc<Policy> {
        Arc::clone(&self.policy.load().policy)
    }

    /// Swaps the policy; decisions already under way finish with the old
    /// one. Records no activation: a server swaps through
    /// [`Runtime::activate`].
    pub fn set_policy(&self, policy: Policy) {
        self.policy.store(Arc::new(Loaded::new(policy)));
    }

    /// Sets (or, with `None`, removes) the candidate policy decided in
    /// shadow beside the enforced one: from the next decision on, every
    /// `before` and `after` decision is also decided by the candidate and
    /// its decision recorded in the audit record's `shadow` field, never
    /// answered (see [`shadow`](crate::shadow_report) and `docs/shadow.md`).
    /// Decisions under way finish with the candidate they started with.
    /// A stateful candidate reads the state the runtime keeps for the
    /// enforced policy (loaded only if that one is stateful) and writes
    /// none.
    pub fn set_shadow(&self, candidate: Option<Policy>) {
        self.shadow.store(candidate.map(Arc::new));
    }

    /// The candidate policy decided in shadow, if any.
    pub fn shadow_policy(&self) -> Option<Arc<Policy>> {
        self.shadow.load_full()
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// Decides a request. `approval` is the id of a granted approval for
    /// this identical request; it turns `require_approval` into `allow`,
    /// once. Never fails: every error becomes a `block` answer.
    pub async fn decide(&self, request: Request, approval: Option<String>) -> Answer {
        self.decide_from(request, approval, None).await
    }

    /// Decides a request as [`Runtime::decide`] does, for a request sent by
    /// the authenticated client `client` (a server token's name): an
    /// approval it opens may not be decided by that client, whatever actor
    /// the request names.
    pub async fn decide_from(&self, request: Request, approval: Option<String>, client: Option<&str>) -> Answer {
        self.decide_bound(request, approval, client, None).await
    }

    /// Decides a request as [`Runtime::decide_from`] does, for a client
    /// whose credential (`bound`; `None` when the caller has none, as
    /// hooks and the MCP gateway run in process) binds actor fields and a
    /// delegation chain. Before any rule ([`identity::bind`]): bound
    /// fields and the chain (`actor.chain`) are set on the request's
    /// actor; a request naming another value for one is blocked
    /// ("actor.<field> is set by the credential") and recorded as sent; an
    /// action outside the scope of a link of the chain is blocked naming
    /// the link; and a policy requiring bound fields blocks a request
    /// whose credential does not bind them, or that has none. With
    /// `bound` given, the audit record says where each actor field came
    /// from (`actor_source`) and the answer carries the chain.
    pub async fn decide_bound(
        &self,
        mut request: Request,
        approval: Option<String>,
        client: Option<&str>,
        bound: Option<&Credential>,
    ) -> Answer {
        let started = Instant::now();
        let mut timer = trace::Timer::start();
        let loaded = self.policy.load_full();
        let policy = &loaded.policy;
        let binding = identity::bind(policy, &mut request, bound);
        let now = Timestamp::now();
        // State and approvals see the session in the client's scope; the
        // audit record keeps the id the client sent (beside its client),
        // and so does the request kept for the outcome, which scopes it
        // again with the reporting client (the same one).
        let sent_session = request.session.clone();
        scope_session(&mut request, client);
        request.phase = Phase::Before;
        request.output = None;
        if request.time.is_none() || !self.config.trust_request_time {
            request.time = Some(now);
        }
        let id = uuid::Uuid::now_v7();
        let decision_id = id.to_string();
        // A stateless action takes the path it always took: no lock, no
        // state read, nothing reserved.
        let mut reserved = None;
        // Why the approval given cannot hold, found before a stateful
        // decision reserves (see `approval_may_hold`).
        let mut approval_refused = None;
        // The candidate in shadow, if any (loaded once, so that the whole
        // decision sees one). A stateful one is decided before the enforced
        // decision reserves its writes, so that it reads the same state;
        // any other after it.
        let candidate = self.shadow.load_full();
        let refused = binding.refusal.is_some();
        // (`uses_state` first: a bool, so a stateless policy does not even
        // look the action up.)
        let stateful = !refused && policy.uses_state() && policy.action_state(&request.action, Phase::Before).any();
        let candidate_stateful = candidate
            .as_deref()
            .is_some_and(|c| shadow::needs_state(c, &request, Phase::Before));
        timer.begin("rein.state");
        if stateful {
            // Reserved as allowed only with an approval that can hold: a
            // made-up id would otherwise take units for as long as the
            // approval step takes, and a stream of them keep a shared
            // limit full for everyone else. (Looked up before the state
            // lease is entered: it reads no state.)
            if let Some(id) = &approval {
                approval_refused = self.approval_may_hold(policy, &request, id, client).await.err();
            }
        }
        // On a shared store the state is read only under its lease, held
        // from before the read until the record is appended (through the
        // approval step and its redone reservation).
        let mut lease = if (stateful || candidate_stateful) && self.state.shared() {
            self.state.enter().await
        } else {
            None
        };
        // The request prepared for the candidate by the enforced policy's
        // contract check, when their contracts are the same.
        let mut shared = None;
        let mut candidate_record = match &candidate {
            Some(c) if candidate_stateful => Some(shadow::decide_candidate(
                c,
                &request,
                Some((bound, refused)),
                None,
                &self.state,
                Access::of(&lease),
            )),
            _ => None,
        };
        if !stateful {
            // Only the candidate read the state: its read is over, and its
            // record is not the enforced decision's to fence (a candidate
            // never changes the answer).
            if let Some(Ok(guard)) = &mut lease {
                guard.done();
            }
            lease = None;
        }
        timer.end();
        let decided = if let Some(refusal) = binding.refusal {
            // Judged before any rule: the request claims to be someone its
            // credential says it is not, goes beyond what was delegated to
            // it, or lacks an identity the policy requires bound.
            Err(refusal)
        } else if stateful {
            let time = request.time.unwrap_or(now);
            let approval_given = approval.is_some() && approval_refused.is_none();
            self.decide_stateful(
                policy,
                &request,
                &decision_id,
                approval_given,
                time,
                &mut reserved,
                Access::of(&lease),
                &mut timer,
            )
        } else if let Some(c) = candidate.as_deref().filter(|_| candidate_record.is_none()) {
            // With a candidate of the same contracts, the request is
            // checked once and decided under both.
            timer.begin("rein.contract");
            match policy.prepare(&request) {
                Ok(prepared) => {
                    timer.begin("rein.policy");
                    let decision = prepared.decide();
                    timer.end();
                    shared = prepared.under(c);
                    Ok(decision)
                }
                Err(violation) => Ok(*violation),
            }
        } else if timer.on() {
            Ok(timed_decide(policy, &request, &mut timer))
        } else {
            Ok(policy.decide(&request))
        };
        timer.end();
        let mut pending = reserved.map(|r| self.state.pending(r));
        let (mut answer, decision) = match decided {
            Ok(decision) => (
                answer_from(&decision_id, &decision, policy, pending.is_some()),
                Some(decision),
            ),
            Err(why) => {
                let mut answer = blank_answer(&decision_id, Phase::Before, policy);
                fail(&mut answer, why);
                (answer, None)
            }
        };
        answer.chain = bound.and_then(|c| c.chain.clone());
        let mut approval_ref = None;
        // What ran in shadow is noted before the approval step changes the
        // answer's effect: it is compared with the policy's own.
        let enforced_effect = decision.as_ref().map_or(Effect::Block, Decision::effect);
        let rules_record = decision.as_ref().and_then(shadow::rules_record);
        if let (Some(c), None) = (&candidate, &candidate_record) {
            candidate_record = Some(shadow::decide_candidate(
                c,
                &request,
                Some((bound, refused)),
                shared,
                &self.state,
                Access::of(&lease),
            ));
        }

        if let Some(decision) = &decision {
            self.approval_step(
                &loaded,
                &request,
                decision,
                &decision_id,
                &mut answer,
                approval,
                &mut approval_ref,
                now,
                client,
                approval_refused,
            )
            .await;
        }
        // The reservation now holds what the final effect writes.
        if let Some(pending) = &mut pending {
            self.state.settle(&mut pending.reserved, &decision_id, answer.effect);
        }

        request.session = sent_session;
        let sensitive = loaded.sensitive(&request.action);
        let known = policy.has_action(&request.action);
        let (mut entry, moved) = self.entry(
            sensitive,
            known,
            &decision_id,
            &mut request,
            &answer,
            None,
            None,
            approval_ref,
            started,
            now,
        );
        entry.client = client.map(str::to_string);
        entry.actor_source = binding.sources;
        entry.shadow = shadow::record_value(enforced_effect, rules_record, candidate_record);
        entry.trace = timer.parent.take();
        let traced_action = timer.on().then(|| entry.action.clone());
        let writes = pending.as_mut().map(state::Pending::submit).unwrap_or_default();
        let guard = match &mut lease {
            Some(Ok(guard)) => Some(guard),
            _ => None,
        };
        timer.begin("rein.audit.append");
        let recorded = self.record(&mut answer, entry, writes, guard).await;
        timer.end();
        match recorded {
            Some(recorded) => {
                if moved {
                    // The request's values went into the record unchanged (no
                    // field to redact); take them back rather than copy them.
                    request.action = recorded.action;
                    request.input = recorded.input;
                    request.actor = recorded.actor;
                    request.snapshot = recorded.snapshot;
                    request.session = recorded.session;
                }
                self.recent.insert(
                    id.as_u128(),
                    Arc::new(request),
                    answer.effect,
                    client.map(Arc::<str>::from),
                );
            }
            // Not recorded, so not consumed: the reservation is taken back.
            None => {
                if let Some(pending) = &pending {
                    self.state.undo_reserved(&pending.reserved, &decision_id);
                }
            }
        }
        // The mirror holds what the store does of this decision; the lease
        // is left after that (never before the append returned).
        drop(pending);
        if let Some(Ok(guard)) = &mut lease {
            guard.done();
        }
        drop(lease);
        if let Some(action) = traced_action {
            timer.finish(&decision_id, "before", &action, answer.effect, answer.audit_seq);
        }
        answer
    }

    /// Explains `request` as [`Runtime::decide_from`] would decide it now
    /// for `client`: with the policy in force and, for a stateful action,
    /// the state as it is (limits, the client's session), but reserving,
    /// writing and recording nothing, and using no approval: a
    /// `require_approval` stays one, and no approval is opened.
    pub fn explain_from(&self, request: Request, client: Option<&str>) -> Explained {
        self.explain_bound(request, client, None)
    }

    /// Explains `request` as [`Runtime::decide_bound`] would decide it
    /// now for `client` with its credential `bound` (`None`: none): what
    /// the identity step refuses (a contradicted field, an action outside
    /// a link's scope, a required field not bound) is a refusal, as it
    /// would be a `block`; otherwise the rules see the actor with the
    /// credential's fields and chain set.
    ///
    /// On a store shared by several processes, a stateful action's state
    /// is read only under the state lease, which this (not async) call
    /// cannot wait for: it is refused; use [`Runtime::explain_bound_async`].
    pub fn explain_bound(&self, request: Request, client: Option<&str>, bound: Option<&Credential>) -> Explained {
        self.explain_in(request, client, bound, Access::Local)
    }

    /// Explains `request` as [`Runtime::explain_bound`] does, entering
    /// first, on a store shared by several processes, the state lease if
    /// the action reads state (a lease that cannot be had is a refusal).
    pub async fn explain_bound_async(
        &self,
        request: Request,
        client: Option<&str>,
        bound: Option<&Credential>,
    ) -> Explained {
        let policy = self.policy();
        let mut lease = if self.state.shared()
            && policy.uses_state()
            && policy.action_state(&request.action, Phase::Before).any()
        {
            self.state.enter().await
        } else {
            None
        };
        let explained = self.explain_in(request, client, bound, Access::of(&lease));
        if let Some(Ok(guard)) = &mut lease {
            guard.done();
        }
        explained
    }

    fn explain_in(
        &self,
        mut request: Request,
        client: Option<&str>,
        bound: Option<&Credential>,
        access: Access<'_>,
    ) -> Explained {
        let policy = self.policy();
        if let Some(reason) = identity::bind(&policy, &mut request, bound).refusal {
            return Explained::Refused {
                reason,
                policy_version: policy.version().to_string(),
                policy_version_label: policy.version_label().map(str::to_string),
            };
        }
        let now = Timestamp::now();
        scope_session(&mut request, client);
        request.phase = Phase::Before;
        request.output = None;
        request.error = None;
        if request.time.is_none() || !self.config.trust_request_time {
            request.time = Some(now);
        }
        if !(policy.uses_state() && policy.action_state(&request.action, Phase::Before).any()) {
            return Explained::Decided(policy.explain(&request));
        }
        let prepared = match policy.prepare(&request) {
            Ok(prepared) => prepared,
            // A contract violation reads no state.
            Err(violation) => {
                return Explained::Decided(Explanation {
                    decision: violation.into_owned(),
                    rules: Vec::new(),
                })
            }
        };
        match self.state.explain(&prepared, request.time.unwrap_or(now), access) {
            Ok(explanation) => Explained::Decided(explanation),
            Err(reason) => Explained::Refused {
                reason,
                policy_version: policy.version().to_string(),
                policy_version_label: policy.version_label().map(str::to_string),
            },
        }
    }

    /// Whether approval `id` is granted, to `client`, for this identical
    /// request (`Err` says why not): what the approval step checks again,
    /// atomically, as it uses it. A stateful decision reserves its units
    /// as allowed only if so: a made-up id would otherwise take them for
    /// as long as the approval step takes, and a stream of such requests
    /// keep a shared limit full for everyone else. And an approval that
    /// did not hold here is not used (nor spent) by the approval step:
    /// granted in between, it would allow a call whose units were not
    /// reserved, past the limit.
    async fn approval_may_hold(
        &self,
        policy: &Policy,
        request: &Request,
        id: &str,
        client: Option<&str>,
    ) -> Result<(), String> {
        let a = match self.store.get_approval(id).await {
            Ok(Some(a)) => a,
            Ok(None) => return Err(ApprovalError::NotFound(id.to_string()).to_string()),
            Err(e) => return Err(format!("it could not be looked up: {e}")),
        };
        if a.requested_via.as_deref() != client {
            return Err(ApprovalError::OtherClient(id.to_string()).to_string());
        }
        if a.state != ApprovalState::Granted {
            return Err(ApprovalError::WrongState {
                id: id.to_string(),
                state: a.state.as_str().to_string(),
                expected: ApprovalState::Granted.as_str().to_string(),
            }
            .to_string());
        }
        if a.request_hash != approval_hash(&self.redactor, request, &policy.per_call_fields(&request.action)) {
            return Err(ApprovalError::RequestMismatch(id.to_string()).to_string());
        }
        Ok(())
    }

    /// Decides a stateful action against the state, reserving its writes
    /// (into `reserved`). `Err` with the reason to block: a contract
    /// violation is decided as always (it reads no state), and a state
    /// that is not loaded or cannot be read (on a shared store: its lease
    /// not held) blocks.
    #[allow(clippy::too_many_arguments)]
    fn decide_stateful<'p>(
        &self,
        policy: &'p Policy,
        request: &Request,
        decision_id: &str,
        approval_given: bool,
        time: Timestamp,
        reserved: &mut Option<state::Reserved>,
        access: Access<'_>,
        timer: &mut trace::Timer,
    ) -> Result<Decision<'p>, String> {
        timer.begin("rein.contract");
        let prepared = match policy.prepare(request) {
            Ok(prepared) => prepared,
            Err(violation) => return Ok(*violation),
        };
        // The rules read the state as they are evaluated: one step.
        timer.begin("rein.policy");
        let (decision, reservation) = self
            .state
            .decide(&prepared, decision_id, approval_given, time, access)?;
        timer.end();
        *reserved = Some(reservation);
        Ok(decision)
    }

    /// Turns a granted approval into `allow`, or opens (or reuses) the
    /// pending approval a `require_approval` asks for.
    #[allow(clippy::too_many_arguments)]
    async fn approval_step(
        &self,
        loaded: &Loaded,
        request: &Request,
        decision: &Decision<'_>,
        decision_id: &str,
        answer: &mut Answer,
        approval: Option<String>,
        approval_ref: &mut Option<String>,
        now: Timestamp,
        client: Option<&str>,
        refused: Option<String>,
    ) {
        let policy = &loaded.policy;
        match (approval, decision.effect()) {
            // Found not to hold before the decision reserved: not used.
            (Some(id), Effect::RequireApproval) if refused.is_some() => {
                fail(answer, format!("approval: {}", refused.unwrap_or_default()));
                *approval_ref = Some(id);
            }
            (Some(id), Effect::RequireApproval) => {
                let hash = approval_hash(&self.redactor, request, &policy.per_call_fields(&request.action));
                let terms = approval_terms(decision, self.config.default_approval_ttl);
                match self.use_approval(&id, &hash, &terms, now, client).await {
                    Ok(Ok(granted)) => {
                        answer.effect = Effect::Allow;
                        let by = granted.decided_by.unwrap_or_default();
                        answer.reasons.push(format!("approved by `{by}` (approval `{id}`)"));
                        // Allowed: nothing to wait for.
                        answer.retry_after_seconds = None;
                    }
                    Ok(Err(e)) => fail(answer, format!("approval: {e}")),
                    Err(e) => fail(answer, format!("approval could not be checked: {e}")),
                }
                *approval_ref = Some(id);
            }
            (None, Effect::RequireApproval) => match self
                .open_or_reuse_approval(loaded, request, decision, decision_id, now, client)
                .await
            {
                Ok(pending) => {
                    *approval_ref = Some(pending.id.clone());
                    answer.approval = Some(pending);
                }
                Err(e) => fail(answer, format!("the approval could not be opened: {e}")),
            },
            // An approval is only ever needed for `require_approval`; a
            // blocked request stays blocked and an allowed one does not
            // spend it.
            _ => {}
        }
    }

    /// Checks the outcome of a decided action: the output contract and the
    /// `after` rules. `block` means the output must be withheld.
    ///
    /// An action that reports an error instead of an output goes through
    /// the same `after` rules, which read the error text as `error`: there
    /// is no output contract to check, a rule that reads `output` does not
    /// apply, and with no rule matching the policy's after default decides
    /// (allow unless the policy sets it). `block` then means the error
    /// text must be withheld (it may carry what the output would have).
    ///
    /// The outcome is that of a decision made without a client (see
    /// [`Runtime::outcome_from`]); a refused report is answered `block`
    /// and not recorded.
    pub async fn outcome(&self, decision_id: &str, output: Option<serde_json::Value>, error: Option<String>) -> Answer {
        match self.outcome_from(decision_id, output, error, None).await {
            Ok(answer) => answer,
            Err(refused) => {
                let mut answer = blank_answer(decision_id, Phase::After, &self.policy.load().policy);
                fail(&mut answer, refused.to_string());
                answer
            }
        }
    }

    /// Checks the outcome of a decided action, as [`Runtime::outcome`]
    /// does, reported by the authenticated client `client` (a server
    /// token's name; `None` without one), which the record names. Only the
    /// client that asked for the decision may report its outcome, once: a
    /// report from another client, or a second one, is refused without
    /// being checked or recorded.
    pub async fn outcome_from(
        &self,
        decision_id: &str,
        output: Option<serde_json::Value>,
        error: Option<String>,
        client: Option<&str>,
    ) -> Result<Answer, OutcomeRefused> {
        self.outcome_bound(decision_id, output, error, client, None).await
    }

    /// Checks an outcome as [`Runtime::outcome_from`] does, reported by a
    /// client whose credential binds the actor fields `bound`: the record
    /// says where each actor field of the decided request came from
    /// (`actor_source`), as the decision's record does.
    pub async fn outcome_bound(
        &self,
        decision_id: &str,
        output: Option<serde_json::Value>,
        error: Option<String>,
        client: Option<&str>,
        bound: Option<&Credential>,
    ) -> Result<Answer, OutcomeRefused> {
        let started = Instant::now();
        let mut timer = trace::Timer::start();
        let now = Timestamp::now();
        let loaded = self.policy.load_full();
        let policy = &loaded.policy;
        let original = match self.recent.get(decision_id) {
            Some((request, effect, asked_by)) => Original {
                request: Ok((request, effect)),
                asked_by: Some(asked_by),
            },
            None => self.recorded_request(&loaded, decision_id).await,
        };
        // A decision that is not found has no client to compare: its
        // outcome is recorded as `block`.
        if let Some(asked_by) = &original.asked_by {
            if asked_by.as_deref() != client {
                tracing::warn!(decision_id = %decision_id, client = ?client, "refused an outcome from another client");
                return Err(OutcomeRefused::OtherClient {
                    decision_id: decision_id.to_string(),
                });
            }
        }
        // One report of a decision at a time: another one arriving while
        // this one is under way is a duplicate (the store would refuse it).
        // (A set of ids cannot be left half-changed: a poisoned lock is
        // taken as it is.)
        let claimed = self
            .reporting
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(decision_id.to_string());
        if !claimed {
            return Err(OutcomeRefused::AlreadyReported {
                decision_id: decision_id.to_string(),
            });
        }
        let _claim = Reporting {
            claims: &self.reporting,
            decision_id: decision_id.to_string(),
        };
        let mut reserved = None;
        // The state lease, on a shared store, when the after rules or the
        // candidate read state: held until the record is appended.
        let mut lease = None;
        let candidate = self.shadow.load_full();
        // The enforced effect, what the `mode: shadow` rules and the
        // candidate said: set only where the after rules ran.
        let mut shadowed: Option<(Effect, Option<ShadowRulesRecord>, Option<CandidateRecord>)> = None;
        let (mut request, mut answer) = match original.request {
            Err(reason) => {
                let mut answer = blank_answer(decision_id, Phase::After, policy);
                fail(&mut answer, reason);
                (Request::new(String::new()), answer)
            }
            Ok((mut request, before_effect)) => {
                request.phase = Phase::After;
                request.time = Some(now);
                let answer = if before_effect != Effect::Allow {
                    let mut answer = blank_answer(decision_id, Phase::After, policy);
                    let reason = format!(
                        "the action was not allowed (the decision was `{before_effect}`), so it must not have run"
                    );
                    fail(&mut answer, reason);
                    answer
                } else {
                    // An error goes through the after rules as `error` (no
                    // output contract to check; rules about the output do
                    // not apply), an output as `output`.
                    match &error {
                        Some(err) => request.error = Some(err.clone()),
                        None => request.output = Some(output.clone().unwrap_or(serde_json::Value::Null)),
                    }
                    // The after rules' state is the session of the
                    // client that asked (and reports: checked above).
                    let sent_session = request.session.clone();
                    scope_session(&mut request, client);
                    let stateful = policy.uses_state() && policy.action_state(&request.action, Phase::After).any();
                    let candidate_stateful = candidate
                        .as_deref()
                        .is_some_and(|c| shadow::needs_state(c, &request, Phase::After));
                    timer.begin("rein.state");
                    if (stateful || candidate_stateful) && self.state.shared() {
                        lease = self.state.enter().await;
                    }
                    timer.end();
                    // As for `before`: a stateful candidate first, so that
                    // it reads what the enforced decision read.
                    let early = candidate
                        .as_ref()
                        .filter(|_| candidate_stateful)
                        .map(|c| shadow::decide_candidate(c, &request, None, None, &self.state, Access::of(&lease)));
                    if !stateful {
                        // Only the candidate read the state (see `decide_bound`).
                        if let Some(Ok(guard)) = &mut lease {
                            guard.done();
                        }
                        lease = None;
                    }
                    let mut rules_record = None;
                    let (answer, enforced_effect) = self.decide_after(
                        policy,
                        &request,
                        decision_id,
                        now,
                        &mut reserved,
                        &mut rules_record,
                        Access::of(&lease),
                        &mut timer,
                    );
                    let candidate_record = early.or_else(|| {
                        candidate
                            .as_ref()
                            .map(|c| shadow::decide_candidate(c, &request, None, None, &self.state, Access::of(&lease)))
                    });
                    shadowed = Some((enforced_effect, rules_record, candidate_record));
                    request.session = sent_session;
                    answer
                };
                (request, answer)
            }
        };
        let sources = bound.map(|b| identity::actor_sources(&request.actor, b));
        let sensitive = loaded.sensitive(&request.action);
        let known = policy.has_action(&request.action);
        let (mut entry, _) = self.entry(
            sensitive,
            known,
            decision_id,
            &mut request,
            &answer,
            output,
            error,
            None,
            started,
            now,
        );
        entry.client = client.map(str::to_string);
        entry.actor_source = sources;
        if let Some((enforced, rules, candidate)) = shadowed {
            entry.shadow = shadow::record_value(enforced, rules, candidate);
        }
        entry.trace = timer.parent.take();
        let traced_action = timer.on().then(|| entry.action.clone());
        let writes = reserved.as_mut().map(state::Reserved::take).unwrap_or_default();
        let guard = match &mut lease {
            Some(Ok(guard)) => Some(guard),
            _ => None,
        };
        timer.begin("rein.audit.append");
        let recorded = self.record_once(&mut answer, entry, writes, guard).await;
        timer.end();
        if recorded != Some(true) {
            // Not recorded (or reported before): nothing of it is kept.
            if let Some(reserved) = &reserved {
                self.state.undo_reserved(reserved, decision_id);
            }
        }
        // Left once the mirror holds what the store does of this outcome.
        if let Some(Ok(guard)) = &mut lease {
            guard.done();
        }
        drop(lease);
        if let Some(action) = traced_action {
            timer.finish(decision_id, "after", &action, answer.effect, answer.audit_seq);
        }
        match recorded {
            Some(_) => Ok(answer),
            None => Err(OutcomeRefused::AlreadyReported {
                decision_id: decision_id.to_string(),
            }),
        }
    }

    /// The `after` decision of an outcome (`request` holds the output or
    /// the error), against the state if the action's `after` rules use it;
    /// the writes are reserved into `reserved` (the output as the session
    /// keeps it, labels), kept only if the record is written.
    /// Also returns the policy's effect, and notes in `rules` what the
    /// action's `mode: shadow` rules said.
    #[allow(clippy::too_many_arguments)]
    fn decide_after(
        &self,
        policy: &Policy,
        request: &Request,
        decision_id: &str,
        time: Timestamp,
        reserved: &mut Option<state::Reserved>,
        rules: &mut Option<ShadowRulesRecord>,
        access: Access<'_>,
        timer: &mut trace::Timer,
    ) -> (Answer, Effect) {
        if !(policy.uses_state() && policy.action_state(&request.action, Phase::After).any()) {
            let decision = match timer.on() {
                true => timed_decide(policy, request, timer),
                false => policy.decide(request),
            };
            *rules = shadow::rules_record(&decision);
            return (answer_from(decision_id, &decision, policy, false), decision.effect());
        }
        match self.decide_stateful(policy, request, decision_id, false, time, reserved, access, timer) {
            Ok(decision) => {
                *rules = shadow::rules_record(&decision);
                (answer_from(decision_id, &decision, policy, true), decision.effect())
            }
            Err(why) => {
                let mut answer = blank_answer(decision_id, Phase::After, policy);
                fail(&mut answer, why);
                (answer, Effect::Block)
            }
        }
    }

    /// Grants a pending approval. The approver may not be the actor who
    /// asked nor the client that sent the request, and must hold every role
    /// the approval names.
    pub async fn grant(
        &self,
        id: &str,
        approver: Approver<'_>,
        comment: Option<&str>,
    ) -> Result<ApprovalRecord, RuntimeError> {
        self.decide_approval(id, true, approver, comment).await
    }

    /// Denies a pending approval, under the same conditions as [`Runtime::grant`].
    pub async fn deny(
        &self,
        id: &str,
        approver: Approver<'_>,
        comment: Option<&str>,
    ) -> Result<ApprovalRecord, RuntimeError> {
        self.decide_approval(id, false, approver, comment).await
    }

    /// Grants (`grant = true`) or denies a pending approval; see
    /// [`Runtime::grant`].
    pub async fn decide_approval(
        &self,
        id: &str,
        grant: bool,
        approver: Approver<'_>,
        comment: Option<&str>,
    ) -> Result<ApprovalRecord, RuntimeError> {
        let version = self.policy.load().policy.version().to_string();
        // As `decide_approval_in`, with the event sent once the store
        // took the change (even if its audit record then fails: the
        // approval did change, and the error says the record is missing).
        let name = approver.name;
        let result = try_decide_approval(self.store.as_ref(), id, grant, approver, comment).await;
        if let Ok(record) = &result {
            self.emit(|| ApprovalEvent::Decided {
                id: record.id.clone(),
                state: record.state,
            });
        }
        record_approval_decision(self.store.as_ref(), id, grant, name, comment, &result, &version).await?;
        result
    }

    /// The approvals asked for by `client`, newest first, optionally only
    /// those in `state` (`Pending`: those that can still be decided): what
    /// an agent may read of its own requests.
    pub async fn client_approvals(
        &self,
        client: &str,
        state: Option<ApprovalState>,
        limit: u64,
    ) -> Result<Vec<ApprovalRecord>, RuntimeError> {
        Ok(self.store.list_client_approvals(client, state, limit).await?)
    }

    /// The request an approval covers, sensitive values included, opened
    /// from its sealed copy, for `viewer`: only an approver who may decide
    /// it sees them, and only while it is pending (the copy is deleted once
    /// it is decided or expired). `Ok(None)` when there is nothing to show.
    pub fn sealed_request(
        &self,
        approval: &ApprovalRecord,
        viewer: &Approver<'_>,
    ) -> Result<Option<serde_json::Value>, RuntimeError> {
        let Some(sealed) = &approval.sealed else {
            return Ok(None);
        };
        let now = format_time(Timestamp::now());
        let open = chain_key(&approval.expires_at).is_some_and(|expires| expires > now);
        if approval.state != ApprovalState::Pending || !open || !viewer.may_decide(approval) {
            return Ok(None);
        }
        Ok(Some(self.sealer.open(&approval.id, sealed)?))
    }

    /// Approvals, newest first. `Pending` lists only those that can still
    /// be decided: an expired one can no longer be granted (it is listed
    /// with every state, `None`, still marked pending).
    pub async fn approvals(
        &self,
        state: Option<ApprovalState>,
        limit: u64,
    ) -> Result<Vec<ApprovalRecord>, RuntimeError> {
        Ok(match state {
            Some(ApprovalState::Pending) => {
                let now = format_time(Timestamp::now());
                self.store.list_open_approvals(&now, limit).await?
            }
            _ => self.store.list_approvals(state, limit).await?,
        })
    }

    /// Uses the granted approval `id` for the request with `hash`, sent by
    /// `client`: it must be the client that asked for it (the approval's
    /// `requested_via`), so that another agent re-sending the identical
    /// request cannot spend it; and it must have been asked of every role
    /// the policy now asks (`terms`: roles, and how long a grant holds):
    /// after a reload that asks a stricter role, a grant by the old one
    /// does not cover the request, and after one that shortens the `ttl`,
    /// the grant holds the shorter time from the grant.
    async fn use_approval(
        &self,
        id: &str,
        hash: &str,
        (roles, hold): &(Vec<String>, u64),
        now: Timestamp,
        client: Option<&str>,
    ) -> Result<Result<ApprovalRecord, ApprovalError>, StoreError> {
        // `requested_via` and `roles` never change once written: checked
        // before the atomic use, they cannot change in between.
        match self.store.get_approval(id).await? {
            None => return Ok(Err(ApprovalError::NotFound(id.to_string()))),
            Some(a) if a.requested_via.as_deref() != client => {
                return Ok(Err(ApprovalError::OtherClient(id.to_string())));
            }
            Some(a) => {
                if let Some(needed) = roles.iter().find(|r| !a.roles.contains(r)) {
                    return Ok(Err(ApprovalError::RolesChanged {
                        id: id.to_string(),
                        granted: a.roles,
                        needed: needed.clone(),
                    }));
                }
                // Only a granted approval is used (the store checks the
                // state); one without a readable grant time is not trusted.
                if a.state == ApprovalState::Granted {
                    let held = a
                        .decided_at
                        .as_deref()
                        .and_then(|at| at.parse::<Timestamp>().ok())
                        .and_then(|at| {
                            at.checked_add(SignedDuration::from_secs(i64::try_from(*hold).ok()?))
                                .ok()
                        });
                    if held.is_none_or(|until| until <= now) {
                        return Ok(Err(ApprovalError::Expired(id.to_string())));
                    }
                }
            }
        }
        self.store.use_approval(id, hash, &format_time(now)).await
    }

    /// The pending approval of this identical request from this client if
    /// one is still open (asking again does not open another), else a new
    /// one.
    async fn open_or_reuse_approval(
        &self,
        loaded: &Loaded,
        request: &Request,
        decision: &Decision<'_>,
        decision_id: &str,
        now: Timestamp,
        client: Option<&str>,
    ) -> Result<PendingApproval, StoreError> {
        let hash = approval_hash(&self.redactor, request, &loaded.policy.per_call_fields(&request.action));
        let (roles, hold) = approval_terms(decision, self.config.default_approval_ttl);
        if let Some(open) = self.store.find_open_approval(&hash, client, &format_time(now)).await? {
            // Asked under the same terms (a reload may have changed them).
            if open.roles == roles && open.hold_seconds == Some(hold) {
                return Ok(PendingApproval {
                    id: open.id,
                    role: open.role,
                    roles: open.roles,
                    expires_at: open.expires_at,
                    reused: true,
                });
            }
        }
        self.open_approval(loaded, request, decision, decision_id, now, client, hash)
            .await
    }

    #[allow(clippy::too_many_arguments)]
    async fn open_approval(
        &self,
        loaded: &Loaded,
        request: &Request,
        decision: &Decision<'_>,
        decision_id: &str,
        now: Timestamp,
        client: Option<&str>,
        request_hash: String,
    ) -> Result<PendingApproval, StoreError> {
        let obligations = decision.obligations();
        let (roles, hold) = approval_terms(decision, self.config.default_approval_ttl);
        let role = roles.join(", ");
        // The wait for a person is bounded; the grant then holds `hold`
        // seconds from the grant (the store sets that expiry).
        let expires = now.checked_add(self.config.pending_approval_wait).unwrap_or(now);
        let id = uuid::Uuid::now_v7().to_string();
        // The approver cannot see the sensitive values in the redacted
        // summary: they get a sealed copy, deleted once decided or expired.
        let sealed = match loaded.sensitive(&request.action).is_empty() {
            true => None,
            false => Some(self.sealer.seal(
                &id,
                &serde_json::json!({"input": request.input, "actor": request.actor, "snapshot": request.snapshot}),
            )?),
        };
        let record = ApprovalRecord {
            id: id.clone(),
            request_hash,
            decision_id: decision_id.to_string(),
            rules: obligations.iter().map(|o| o.rule.clone()).collect(),
            role: role.clone(),
            roles: roles.clone(),
            action: request.action.clone(),
            // A number is an id as much as a string (`1001`).
            requested_by: request.actor.get("id").and_then(|v| match v {
                serde_json::Value::String(s) => Some(s.clone()),
                serde_json::Value::Number(n) => Some(n.to_string()),
                _ => None,
            }),
            requested_via: client.map(str::to_string),
            requested_chain: chain_ids(&request.actor),
            summary: self.redacted_request(loaded, request),
            created_at: format_time(now),
            expires_at: format_time(expires),
            state: ApprovalState::Pending,
            decided_by: None,
            decided_at: None,
            comment: None,
            hold_seconds: Some(hold),
            sealed,
        };
        let expires_at = record.expires_at.clone();
        let opened = (self.events.receiver_count() > 0).then(|| record.clone());
        self.store.create_approval(record).await?;
        if let Some(record) = opened {
            self.emit(|| ApprovalEvent::Opened(record));
        }
        Ok(PendingApproval {
            id,
            role,
            roles,
            expires_at,
            reused: false,
        })
    }

    /// The original request of a decision no longer in memory, from the
    /// audit log. Sensitive fields are stored only as keyed hashes, so a
    /// request that had any cannot be rebuilt; the outcome then blocks.
    async fn recorded_request(&self, loaded: &Loaded, decision_id: &str) -> Original {
        let query = rein_store::AuditQuery {
            decision_id: Some(decision_id.to_string()),
            ..Default::default()
        };
        let records = match self.store.query_audit(&query).await {
            Ok(records) => records,
            Err(e) => return Original::unknown(format!("the decision could not be looked up: {e}")),
        };
        let Some(before) = records.into_iter().find(|r| r.entry.phase == "before") else {
            return Original::unknown(format!("no decision `{decision_id}` was recorded"));
        };
        let e = before.entry;
        let asked_by = Some(e.client.as_deref().map(Arc::<str>::from));
        if !loaded.sensitive(&e.action).is_empty() {
            return Original {
                request: Err(format!(
                    "decision `{decision_id}` is no longer in memory and action `{}` has sensitive fields, which the audit log keeps only hashed; decide again",
                    e.action
                )),
                asked_by,
            };
        }
        let effect = Effect::parse(&e.effect).unwrap_or(Effect::Block);
        let mut request = Request::new(e.action)
            .input(e.input)
            .actor(e.actor)
            .snapshot(e.snapshot);
        request.session = e.session;
        Original {
            request: Ok((request, effect)),
            asked_by,
        }
    }

    fn redacted_request(&self, loaded: &Loaded, request: &Request) -> serde_json::Value {
        let paths = loaded.sensitive(&request.action);
        let mut input = request.input.clone();
        let mut actor = request.actor.clone();
        let mut snapshot = request.snapshot.clone();
        self.redactor.redact(&mut input, paths, "input");
        self.redactor.redact(&mut actor, paths, "actor");
        self.redactor.redact(&mut snapshot, paths, "snapshot");
        serde_json::json!({"action": request.action, "input": input, "actor": actor, "snapshot": snapshot, "session": request.session})
    }

    /// The audit entry of a decision. With no field to redact, the
    /// request's values are moved into the entry (and `true` is returned:
    /// the caller may take them back from the stored record); otherwise the
    /// entry gets redacted copies and the request is left as it was.
    ///
    /// With fields to redact, a root (`input`, `actor`, `snapshot`,
    /// `output`) that does not fit its contract — the contract violation is
    /// in it, or the action is not one the policy knows (`known_action`
    /// false) — is hashed whole when any sensitive path lies under it:
    /// nothing says where its secrets are. And the reasons the engine wrote
    /// from the values (a contract violation, an evaluation error) are
    /// withheld when anything was redacted, since they may quote a
    /// sensitive value, transformed past recognition (`input.card + "x"`).
    /// An outcome's error text is kept as its keyed hash when the action
    /// has sensitive output fields: it may quote them.
    #[allow(clippy::too_many_arguments)]
    fn entry(
        &self,
        sensitive: &[String],
        known_action: bool,
        decision_id: &str,
        request: &mut Request,
        answer: &Answer,
        output: Option<serde_json::Value>,
        error: Option<String>,
        approval: Option<String>,
        started: Instant,
        now: Timestamp,
    ) -> (AuditEntry, bool) {
        let violated_root = answer.violation.as_ref().map(|v| root_of(&v.path));
        let misfit =
            |root: &str| (!known_action || violated_root == Some(root)) && sensitive.iter().any(|p| root_of(p) == root);
        let redact = |original: &serde_json::Value, root: &str| {
            let mut v = original.clone();
            if misfit(root) && !v.is_null() {
                v = serde_json::Value::String(self.redactor.hash(&v));
            } else {
                self.redactor.redact(&mut v, sensitive, root);
            }
            v
        };
        let moved = sensitive.is_empty();
        // Texts of the sensitive values, to keep them out of the reasons,
        // which are stored in clear (an evaluation error may quote a value).
        let mut secrets = Vec::new();
        let (action, input, actor, snapshot, session) = if moved {
            (
                std::mem::take(&mut request.action),
                std::mem::take(&mut request.input),
                std::mem::take(&mut request.actor),
                std::mem::take(&mut request.snapshot),
                request.session.take(),
            )
        } else {
            let input = redact(&request.input, "input");
            let actor = redact(&request.actor, "actor");
            let snapshot = redact(&request.snapshot, "snapshot");
            for (original, redacted) in [
                (&request.input, &input),
                (&request.actor, &actor),
                (&request.snapshot, &snapshot),
            ] {
                redacted_texts(original, redacted, &mut secrets);
            }
            (request.action.clone(), input, actor, snapshot, request.session.clone())
        };
        let output = output.map(|o| {
            let redacted = if moved { o.clone() } else { redact(&o, "output") };
            redacted_texts(&o, &redacted, &mut secrets);
            redacted
        });
        // An error text has no contract: it may quote what the output would
        // have held, so with sensitive output fields only its keyed hash is
        // kept (the after rules read it in clear before this).
        let error = error.map(|e| {
            if sensitive.iter().any(|p| root_of(p) == "output") {
                let hashed = self.redactor.hash(&serde_json::Value::String(e.clone()));
                secrets.push(e);
                hashed
            } else {
                e
            }
        });
        let mut reasons = scrub_reasons(&answer.reasons, &secrets);
        if !secrets.is_empty() {
            self.withhold_engine_reasons(answer, &mut reasons);
        }
        let entry = AuditEntry {
            decision_id: decision_id.to_string(),
            time: format_time(now),
            phase: answer.phase.as_str().to_string(),
            action,
            input,
            actor,
            snapshot,
            output,
            error,
            session,
            effect: answer.effect.as_str().to_string(),
            rules: answer.rules.clone(),
            reasons,
            policy_version: answer.policy_version.clone(),
            latency_us: u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
            approval,
            client: None,
            policy_version_label: answer.policy_version_label.clone(),
            actor_source: None,
            shadow: None,
            activation: None,
            trace: None,
        };
        (entry, moved)
    }

    /// Replaces, in `reasons`, the texts the engine wrote from the request's
    /// values (its contract violation, its rules' evaluation errors) by
    /// what is safe to keep: where, and a keyed hash of the message.
    fn withhold_engine_reasons(&self, answer: &Answer, reasons: &mut [String]) {
        let withheld = |message: &str| {
            format!(
                "(message withheld: it may quote a sensitive value; {})",
                self.redactor.hash_bytes(message.as_bytes())
            )
        };
        // Found by the message they quote, not by rebuilding the engine's
        // wording: a reason whose wording changes is still withheld.
        let quotes = |reason: &str, message: &str| !message.is_empty() && reason.contains(message);
        for reason in reasons.iter_mut() {
            if let Some(v) = answer.violation.as_ref().filter(|v| quotes(reason, &v.message)) {
                *reason = format!("contract: {}: {}", v.path, withheld(&v.message));
            } else if let Some(e) = answer.errors.iter().find(|e| quotes(reason, &e.message)) {
                *reason = format!("rule `{}` could not be evaluated: {}", e.rule, withheld(&e.message));
            }
        }
    }

    /// Appends the record and returns the entry as stored; on failure the
    /// answer becomes `block`.
    ///
    /// `writes` (a stateful decision's) go in the same transaction as the
    /// record: both are kept or neither.
    ///
    /// A decision taken under the state lease (`lease`) is appended fenced
    /// ([`Store::append_leased`]), its writes or none: refused once the
    /// lease is no longer the newest, as any append error it blocks.
    async fn record(
        &self,
        answer: &mut Answer,
        entry: AuditEntry,
        writes: Vec<StateWrite>,
        lease: Option<&mut lease::LeaseGuard>,
    ) -> Option<AuditEntry> {
        if !self.key_checked(answer).await {
            return None;
        }
        let appended = match lease {
            Some(guard) => match self.append_leased(guard, entry, writes, false).await {
                Ok(Some(rec)) => Ok(rec),
                Ok(None) => {
                    guard.lost();
                    Err(StoreError(
                        "the store answered a decision's append as a duplicate; the state is reloaded".into(),
                    ))
                }
                Err(e) => Err(e),
            },
            None if writes.is_empty() => self.store.append(entry).await,
            None => self.store.append_with_state(entry, writes).await,
        };
        self.recorded(answer, appended)
    }

    /// Appends under the state lease `guard` (see [`Runtime::record`]). An
    /// error loses the lease as far as this process knows: whether the
    /// append was written is not known, or another process took the lease
    /// meanwhile, so the mirror is reloaded under the next lease.
    async fn append_leased(
        &self,
        guard: &mut lease::LeaseGuard,
        entry: AuditEntry,
        writes: Vec<StateWrite>,
        once: bool,
    ) -> Result<Option<AuditRecord>, StoreError> {
        match self.store.append_leased(entry, writes, once, guard.generation()).await {
            Ok(appended) => {
                if let Some(rec) = &appended {
                    guard.appended(rec.seq);
                }
                Ok(appended)
            }
            Err(e) => {
                guard.lost();
                Err(StoreError(format!(
                    "{} (the decision was taken under the shared state's lease, which is now taken again and the \
                     state reloaded)",
                    e.0
                )))
            }
        }
    }

    /// Appends the record unless its decision already has one of its phase
    /// (an outcome): `None` then, and nothing is written. `Some(true)` once
    /// recorded; `Some(false)` when it could not be, and the answer became
    /// `block`. `writes` go in the record's transaction.
    async fn record_once(
        &self,
        answer: &mut Answer,
        entry: AuditEntry,
        writes: Vec<StateWrite>,
        lease: Option<&mut lease::LeaseGuard>,
    ) -> Option<bool> {
        if !self.key_checked(answer).await {
            return Some(false);
        }
        let appended = match lease {
            Some(guard) => self.append_leased(guard, entry, writes, true).await,
            None if writes.is_empty() => self.store.append_once(entry).await,
            None => self.store.append_once_with_state(entry, writes).await,
        };
        match appended {
            Ok(None) => None,
            Ok(Some(rec)) => Some(self.recorded(answer, Ok(rec)).is_some()),
            Err(e) => Some(self.recorded(answer, Err(e)).is_some()),
        }
    }

    /// Whether the audit key is the store's (checked once, at the first
    /// append, unless [`Runtime::check_audit_key`] ran at start); if not,
    /// the answer becomes `block` and nothing may be recorded: hashes under
    /// another key would not match those already kept.
    async fn key_checked(&self, answer: &mut Answer) -> bool {
        let why = match self.key_state.load(Ordering::Acquire) {
            KEY_OK => return true,
            KEY_UNCHECKED => match self.check_audit_key().await {
                Ok(()) => return true,
                Err(e) => e.to_string(),
            },
            _ => "the audit key is not the one this store was first used with".to_string(),
        };
        tracing::error!(error = %why, decision_id = %answer.decision_id, "audit key refused; answering block");
        self.set_audit_failure(Some(why.clone()));
        answer.approval = None;
        fail(
            answer,
            format!("the decision could not be recorded in the audit log: {why}"),
        );
        false
    }

    fn recorded(&self, answer: &mut Answer, appended: Result<AuditRecord, StoreError>) -> Option<AuditEntry> {
        match appended {
            Ok(rec) => {
                self.set_audit_failure(None);
                answer.audit_seq = Some(rec.seq);
                Some(rec.entry)
            }
            Err(e) => {
                tracing::error!(error = %e, decision_id = %answer.decision_id, "audit append failed; answering block");
                self.set_audit_failure(Some(format!("the last audit append failed: {e}")));
                answer.approval = None;
                fail(
                    answer,
                    format!("the decision could not be recorded in the audit log: {e}"),
                );
                None
            }
        }
    }
}

/// What an approval covers: the request without its time, so the same
/// request re-sent later matches, and without the fields the contracts mark
/// `per_call` (`per_call`: `input.x`, `snapshot.tool_use_id`): they name
/// one attempt, and the retry after a grant is another attempt.
/// What an approval covers, as a keyed hash (HMAC-SHA256 under the audit
/// key) of the canonical request without its per-call fields. Keyed, since
/// the request is in clear, sensitive fields included: a plain hash stored
/// beside the redacted summary would let anyone with the file test guesses
/// of a secret (a 4-digit PIN in 10,000 tries).
fn approval_hash(redactor: &Redactor, request: &Request, per_call: &[String]) -> String {
    fn without<'v>(value: &'v serde_json::Value, root: &str, per_call: &[String]) -> Cow<'v, serde_json::Value> {
        let mut names = per_call
            .iter()
            .filter_map(|p| p.strip_prefix(root)?.strip_prefix('.'))
            .peekable();
        match value {
            serde_json::Value::Object(m) if names.peek().is_some() => {
                let mut m = m.clone();
                for name in names {
                    m.remove(name);
                }
                Cow::Owned(serde_json::Value::Object(m))
            }
            other => Cow::Borrowed(other),
        }
    }
    let without = |value, root| without(value, root, per_call);
    redactor.hash(&serde_json::json!({
        "action": request.action,
        "input": without(&request.input, "input"),
        "actor": without(&request.actor, "actor"),
        "snapshot": without(&request.snapshot, "snapshot"),
        "session": request.session,
    }))
}

/// What an approval asked by `decision` needs: every role of the rules
/// that asked, sorted (the approver must hold each; rule order does not
/// pick one), and how long a grant holds, in seconds: the shortest `ttl`
/// of those rules (the strictest obligation wins), else `default_ttl`.
fn approval_terms(decision: &Decision, default_ttl: SignedDuration) -> (Vec<String>, u64) {
    let obligations = decision.obligations();
    let mut roles: Vec<String> = obligations.iter().map(|o| o.approval.role.clone()).collect();
    roles.sort();
    roles.dedup();
    if roles.is_empty() {
        roles.push("approver".to_string());
    }
    let hold = obligations
        .iter()
        .filter_map(|o| o.approval.ttl_seconds)
        .min()
        .unwrap_or_else(|| u64::try_from(default_ttl.as_secs()).unwrap_or(0));
    (roles, hold)
}

/// The answer of decision `d`; `stateful` when it was decided with state
/// (its limits may add reasons of their own).
fn answer_from(decision_id: &str, d: &Decision, policy: &Policy, stateful: bool) -> Answer {
    // The matched rules carry the reasons already: built once, not again
    // by `Decision::reasons` (only a decision without them needs that). As
    // there, the reasons are those of the rules whose effect decided: a
    // block does not give an allowing rule's reason.
    let matched = d.matched_rules();
    // A decision with state has limits that add reasons of their own (the
    // use of the limit), which only `Decision::reasons` gives.
    let reasons = if matched.is_empty() || stateful {
        d.reasons()
    } else {
        matched
            .iter()
            .filter(|m| m.effect == d.effect())
            .map(|m| m.reason.clone())
            .collect()
    };
    Answer {
        decision_id: decision_id.to_string(),
        effect: d.effect(),
        phase: d.phase(),
        rules: d.rules().into_iter().map(str::to_string).collect(),
        reasons,
        approval: None,
        violation: match d.basis() {
            Basis::Contract(v) => Some(v.clone()),
            _ => None,
        },
        labels: d.labels().into_iter().map(str::to_string).collect(),
        retry_after_seconds: d.retry_after_seconds(),
        policy_version: d.policy_version().to_string(),
        policy_version_label: policy.version_label().map(str::to_string),
        audit_seq: None,
        matched,
        errors: d.errors(),
        chain: None,
    }
}

/// Sessions belong to the client that names them: the session `s` of the
/// client `c` is kept as `c/s` (in `c`, `%` and `/` escaped as `%25` and
/// `%2F`, so that no two clients' sessions share a name). One client can
/// then neither read nor add to another's session: its labels, its calls,
/// an approval step recorded there. A request without a client (the
/// library, a local hook) keeps the id it names; so does a blank id, which
/// names no session.
pub fn scoped_session(client: Option<&str>, session: &str) -> String {
    match client {
        Some(c) if !session.trim().is_empty() => {
            format!("{}/{session}", c.replace('%', "%25").replace('/', "%2F"))
        }
        _ => session.to_string(),
    }
}

/// Puts `request`'s session in the scope of `client` ([`scoped_session`]).
pub(crate) fn scope_session(request: &mut Request, client: Option<&str>) {
    if let Some(session) = &mut request.session {
        *session = scoped_session(client, session);
    }
}

fn blank_answer(decision_id: &str, phase: Phase, policy: &Policy) -> Answer {
    Answer {
        decision_id: decision_id.to_string(),
        effect: Effect::Block,
        phase,
        rules: Vec::new(),
        reasons: Vec::new(),
        approval: None,
        violation: None,
        labels: Vec::new(),
        retry_after_seconds: None,
        policy_version: policy.version().to_string(),
        policy_version_label: policy.version_label().map(str::to_string),
        audit_seq: None,
        matched: Vec::new(),
        errors: Vec::new(),
        chain: None,
    }
}

/// Turns an answer into `block` with `reason` first.
fn fail(answer: &mut Answer, reason: String) {
    answer.effect = Effect::Block;
    answer.reasons.insert(0, reason);
}
