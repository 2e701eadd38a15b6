//! The records the store keeps. Plain data, serializable; the store never
//! interprets a request, it only keeps it.

use serde::{Deserialize, Serialize};

/// What the runtime appends for every decision and every reported outcome.
/// Fields marked sensitive in a contract are already replaced by keyed
/// hashes (see [`crate::redact`]) before an entry reaches the store.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// Unique id of the decision (a before-decision and its outcome share
    /// it; `phase` tells them apart).
    pub decision_id: String,
    /// When the decision was made (RFC 3339, UTC).
    pub time: String,
    /// `before` or `after`.
    pub phase: String,
    /// The action's name.
    pub action: String,
    /// The action's input (redacted).
    pub input: serde_json::Value,
    /// The actor (redacted).
    pub actor: serde_json::Value,
    /// The snapshot (redacted).
    pub snapshot: serde_json::Value,
    /// The output, for phase `after` (redacted).
    pub output: Option<serde_json::Value>,
    /// The error the action reported instead of an output, for phase `after`.
    pub error: Option<String>,
    /// The session id, if the request had one.
    pub session: Option<String>,
    /// `allow`, `block` or `require_approval`.
    pub effect: String,
    /// Ids of the matched rules.
    pub rules: Vec<String>,
    /// The decision's reasons.
    pub reasons: Vec<String>,
    /// Hash of the policy that decided.
    pub policy_version: String,
    /// Time spent deciding, in microseconds.
    pub latency_us: u64,
    /// The approval this decision created or used, if any.
    pub approval: Option<String>,
    /// The authenticated client that sent the request (a server token's
    /// name), when there was one. Added after the first records were
    /// written: absent from the canonical encoding when `None`, so that
    /// older records keep their hashes (see [`crate::chain`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client: Option<String>,
    /// The policy's own `version:` label, beside its hash, when it has one.
    /// Absent from the canonical encoding when `None`, as `client`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_version_label: Option<String>,
    /// Where each top-level actor field came from: `"credential"` (bound
    /// to the server token that sent the request, which the body could
    /// not change) or `"caller"` (what the body said). Set by `rein serve`
    /// for requests it decides; absent, as `client`, when `None`, so that
    /// older records keep their hashes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor_source: Option<ActorSources>,
    /// What a policy run in shadow beside the enforced one decided (a
    /// candidate policy, or the enforced policy's `mode: shadow` rules):
    /// recorded, never enforced. A [`ShadowRecord`] as JSON (the one shape
    /// the runtime writes); absent, as `client`, when `None`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shadow: Option<serde_json::Value>,
    /// For a policy activation record (phase `activate`): the version
    /// activated, who activated it, and its load diagnostics. Absent, as
    /// `client`, when `None`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub activation: Option<serde_json::Value>,
    /// The caller's W3C trace context (`traceparent`: version `00`,
    /// lowercase, validated) when the request carried one, so that a
    /// decision can be found from the agent's own trace (see
    /// [`AuditQuery::trace`]). Absent, as `client`, when `None`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace: Option<String>,
}

/// The shape of [`AuditEntry::shadow`]: what ran in shadow beside the
/// enforced decision of a `before` or `after` record. Written by the
/// runtime only; it never holds text taken from the request (no reasons,
/// no evaluation or contract messages, which may quote a sensitive
/// value): effects, rule ids, the basis and Rein's own error texts.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShadowRecord {
    /// The enforced policy's own effect for the request, before any
    /// approval was used or opened (the record's `effect` is the answer
    /// after that step): what the shadow effects are compared with.
    pub enforced: String,
    /// The enforced policy's `mode: shadow` rules, when the action has
    /// some for the phase and its rules were evaluated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rules: Option<ShadowRulesRecord>,
    /// The candidate policy's decision, when one runs beside the enforced
    /// one (`rein serve --shadow`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub candidate: Option<CandidateRecord>,
}

/// What the enforced policy's `mode: shadow` rules said.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShadowRulesRecord {
    /// The effect with the shadow rules enforced.
    pub effect: String,
    /// The shadow rules that matched.
    pub rules: Vec<String>,
    /// Those of them whose effect is `effect` (what would have decided).
    pub deciding: Vec<String>,
    /// The shadow rules that could not be evaluated (an error blocks).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<String>,
}

/// A candidate policy's decision of the same request.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CandidateRecord {
    /// The candidate's version hash.
    pub policy_version: String,
    /// Its `version:` label, if it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_version_label: Option<String>,
    /// Its effect (`block` when it could not decide).
    pub effect: String,
    /// Why: `rules`, `default`, `contract`, `eval_error`, `state`,
    /// `credential`, or `error` (the candidate failed: see `error`).
    pub basis: String,
    /// The rules that matched.
    #[serde(default)]
    pub rules: Vec<String>,
    /// Those of them whose effect is the decision's.
    #[serde(default)]
    pub deciding: Vec<String>,
    /// The rules that could not be evaluated.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<String>,
    /// For basis `contract`: the field the request broke.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub violation: Option<String>,
    /// What its `mode: shadow` rules said, if it has some for the action.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shadow_rules: Option<ShadowRulesRecord>,
    /// For basis `error` or `state`: Rein's own text of what went wrong
    /// (a panic, state not loaded, a session required).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Where each top-level actor field came from ([`AuditEntry::actor_source`]):
/// field → `"credential"` or `"caller"`. The values are borrowed when the
/// runtime writes them (a decision allocates no copy of either word) and
/// owned when read back; either way they encode as the same JSON string.
pub type ActorSources = std::collections::BTreeMap<String, std::borrow::Cow<'static, str>>;

/// An entry as stored: its place in the chain and the hashes that bind it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// Position in the log, from 1, without gaps.
    pub seq: u64,
    /// What was recorded.
    #[serde(flatten)]
    pub entry: AuditEntry,
    /// Hash of the previous record (hex); 64 zeros for the first.
    pub prev_hash: String,
    /// SHA-256 (hex) over `prev_hash` and the canonical encoding of this
    /// record's `seq` and entry (see [`crate::chain`]).
    pub hash: String,
}

/// Filters for [`crate::Store::query_audit`]; every one set must hold.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct AuditQuery {
    /// Records at or after this time (RFC 3339).
    pub since: Option<String>,
    /// Records before this time (RFC 3339).
    pub until: Option<String>,
    /// The actor's `id` field equals this.
    pub actor: Option<String>,
    /// The action equals this.
    pub action: Option<String>,
    /// The effect equals this.
    pub effect: Option<String>,
    /// This rule is among the matched rules.
    pub rule: Option<String>,
    /// The session equals this.
    pub session: Option<String>,
    /// The decision id equals this.
    pub decision_id: Option<String>,
    /// Records whose `trace` (the caller's `traceparent`) carries this
    /// trace id (32 lowercase hex digits).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace: Option<String>,
    /// Records with a sequence number above this (for paging oldest
    /// first).
    pub after_seq: Option<u64>,
    /// Records with a sequence number below this (keyset paging newest
    /// first: the last page's smallest `seq`).
    #[serde(default)]
    pub before_seq: Option<u64>,
    /// Newest first (`seq` descending) instead of oldest first.
    #[serde(default)]
    pub descending: bool,
    /// At most this many records (the store may cap it).
    pub limit: Option<u64>,
}

/// The outcome of walking the chain.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Verification {
    /// Every record links to the previous one and hashes as stored.
    Intact {
        /// Number of records checked.
        records: u64,
    },
    /// The first record that does not fit, and why.
    Broken {
        /// The sequence number of the first bad record (or where a record
        /// is missing).
        seq: u64,
        /// What is wrong: changed, removed, inserted or reordered.
        problem: String,
    },
}

/// The life of an approval.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ApprovalState {
    /// Waiting for a person.
    Pending,
    /// Granted, not yet used.
    Granted,
    /// Denied.
    Denied,
    /// Granted and used by the identical request.
    Used,
}

impl ApprovalState {
    /// The stored spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            ApprovalState::Pending => "pending",
            ApprovalState::Granted => "granted",
            ApprovalState::Denied => "denied",
            ApprovalState::Used => "used",
        }
    }
}

/// A request for a person's approval.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ApprovalRecord {
    /// Unique id.
    pub id: String,
    /// Keyed hash (`hmac-sha256:<hex>`, under the audit key) of the
    /// canonical request it covers, so that the request's sensitive fields
    /// cannot be guessed from it.
    pub request_hash: String,
    /// The decision that asked for it.
    pub decision_id: String,
    /// The rule(s) that required approval.
    pub rules: Vec<String>,
    /// The role an approver must have; when the rules that asked name
    /// several, all of them, comma-separated (for people: `roles` is what
    /// is checked).
    pub role: String,
    /// Every role an approver must hold (the distinct `approval.role` of
    /// each rule that asked), sorted. Stores written before this field
    /// existed read it as `[role]`.
    #[serde(default)]
    pub roles: Vec<String>,
    /// The action, for people reading the list.
    pub action: String,
    /// Who asked (the actor's `id`), who may therefore not approve.
    pub requested_by: Option<String>,
    /// The authenticated client that sent the request (the name of the
    /// server token), who may not approve it either: the actor's `id` is
    /// whatever the request says.
    #[serde(default)]
    pub requested_via: Option<String>,
    /// The id of every link of the requester's delegation chain
    /// (`actor.chain`, from the person down to the acting agent), none of
    /// whom may approve it either: a parent approving what its delegated
    /// child asked is approving its own request. Empty in approvals
    /// written before this field existed (schema v6), and for requests
    /// without a chain.
    #[serde(default)]
    pub requested_chain: Vec<String>,
    /// A short description for people (the request, redacted).
    pub summary: serde_json::Value,
    /// When it was created (RFC 3339).
    pub created_at: String,
    /// After this time it can no longer be granted or used (RFC 3339).
    /// While pending, the end of the wait for a person; once granted,
    /// the grant time plus `hold_seconds`.
    pub expires_at: String,
    /// How long a grant holds, from the grant (the rule's `ttl`). `None`
    /// in approvals written before this field existed: their expiry stays
    /// as it was set at creation.
    #[serde(default)]
    pub hold_seconds: Option<u64>,
    /// The request's sensitive values, encrypted for the approvers (see
    /// [`crate::seal`]); deleted once the approval is decided or expired.
    /// Never serialized: the runtime opens it for callers allowed to see
    /// it.
    #[serde(default, skip_serializing)]
    pub sealed: Option<String>,
    /// Where it stands.
    pub state: ApprovalState,
    /// Who granted or denied it.
    pub decided_by: Option<String>,
    /// When it was granted or denied (RFC 3339).
    pub decided_at: Option<String>,
    /// The approver's comment.
    pub comment: Option<String>,
}

/// Why an approval could not be granted, denied or used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ApprovalError {
    /// No approval has this id.
    #[error("no approval `{0}`")]
    NotFound(String),
    /// It is not in a state that allows this (already decided, used...).
    #[error("approval `{id}` is {state}, not {expected}")]
    WrongState {
        /// The approval.
        id: String,
        /// Its state.
        state: String,
        /// The state the operation needs.
        expected: String,
    },
    /// Its expiry has passed.
    #[error("approval `{0}` has expired")]
    Expired(String),
    /// The approver is the one who asked.
    #[error("`{0}` asked for this approval and cannot approve it")]
    SelfApproval(String),
    /// The request presented is not the one approved.
    #[error("approval `{0}` was granted for a different request")]
    RequestMismatch(String),
    /// The request was sent by another client than the one that asked.
    #[error("approval `{0}` was asked for by another client; only that client may use it")]
    OtherClient(String),
    /// The policy now asks this request's approval of a role the grant was
    /// not asked of (it was reloaded since): the grant does not cover it.
    #[error("approval `{id}` was granted for roles {granted:?}; the policy now asks for role `{needed}`: ask again")]
    RolesChanged {
        /// The approval.
        id: String,
        /// The roles it was asked of.
        granted: Vec<String>,
        /// A role the policy asks for now that it was not asked of.
        needed: String,
    },
}

/// How much state a store keeps ([`crate::Store::state_size`]): rows per
/// table, and the size of its files.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredStateSize {
    /// Distinct limit buckets with a use kept.
    pub buckets: u64,
    /// Limit uses kept.
    pub limit_uses: u64,
    /// Sessions kept.
    pub sessions: u64,
    /// Session calls kept.
    pub session_calls: u64,
    /// Session labels kept.
    pub session_labels: u64,
    /// Bytes of the store's files (the database and its write-ahead log),
    /// audit log and approvals included.
    pub file_bytes: u64,
}
