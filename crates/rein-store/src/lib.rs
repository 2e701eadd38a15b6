//! What Rein keeps between decisions: the tamper-evident audit log and the
//! approvals, behind the [`Store`] trait. [`SqliteStore`] is the embedded
//! default (one file, WAL mode, group commit); a PostgreSQL backend for
//! several replicas implements the same trait.
//!
//! The store is the only crate that talks to a database. It records what
//! it is given and never decides anything.

#![deny(missing_docs)]

pub mod chain;
mod lock;
mod model;
pub mod redact;
pub mod seal;
mod sqlite;
pub mod versions;

pub use lock::StateLock;
pub use model::{
    ActorSources, ApprovalError, ApprovalRecord, ApprovalState, AuditEntry, AuditQuery, AuditRecord, StoredStateSize,
    Verification,
};
pub use rein_engine::state::StateWrite;
pub use sqlite::{SqliteOptions, SqliteStore};
pub use versions::{Activation, ActivationCause, PolicyVersion, PolicyVersionSummary};

/// A failure of the storage itself (I/O, a corrupt file, a closed writer).
/// Callers fail closed on it: a decision that cannot be recorded is `block`.
#[derive(Debug, thiserror::Error)]
#[error("store error: {0}")]
pub struct StoreError(pub String);

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError(e.to_string())
    }
}

/// What a store that keeps no state answers to a state operation.
const NO_STATE: &str = "this store keeps no state";

/// What a store that keeps no policy versions answers.
const NO_VERSIONS: &str = "this store keeps no policy versions";

/// The operations the runtime needs from storage. Every method is atomic;
/// `append` returns only once the record is durable.
#[async_trait::async_trait]
pub trait Store: Send + Sync + 'static {
    /// Appends one entry to the audit log, chained to the previous record,
    /// and returns it as stored once it is durable (fsync). Concurrent
    /// appends are batched into one transaction and one fsync (group
    /// commit); their order in the chain is their order of arrival.
    async fn append(&self, entry: AuditEntry) -> Result<AuditRecord, StoreError>;

    /// Appends `entry` as [`Store::append`] does, unless the log already
    /// holds a record of the same decision and phase: then nothing is
    /// written and the answer is `Ok(None)` (an outcome is reported once).
    /// The check and the append are one step: of concurrent callers,
    /// exactly one appends. (No default: a wrapper must forward it, not
    /// lose its atomicity.)
    async fn append_once(&self, entry: AuditEntry) -> Result<Option<AuditRecord>, StoreError>;

    /// Appends `entry` as [`Store::append`] does, and persists `writes`
    /// (the state changes of its decision) in the same transaction: after
    /// a crash, both are there or neither is. With no writes it is exactly
    /// [`Store::append`]. Every write must name `entry`'s decision (a
    /// write of another decision is refused, with the record), so that no
    /// state row is ever kept without its own decision's record. The
    /// default refuses writes: a store that keeps no state must not drop
    /// them silently.
    async fn append_with_state(&self, entry: AuditEntry, writes: Vec<StateWrite>) -> Result<AuditRecord, StoreError> {
        if writes.is_empty() {
            return self.append(entry).await;
        }
        Err(StoreError(NO_STATE.into()))
    }

    /// [`Store::append_once`] with `writes`, as [`Store::append_with_state`]:
    /// an append refused as a duplicate (`Ok(None)`) writes none of them.
    async fn append_once_with_state(
        &self,
        entry: AuditEntry,
        writes: Vec<StateWrite>,
    ) -> Result<Option<AuditRecord>, StoreError> {
        if writes.is_empty() {
            return self.append_once(entry).await;
        }
        Err(StoreError(NO_STATE.into()))
    }

    /// The state kept, as the writes that rebuild it, in time order: limit
    /// uses at or after `window_start`; for each session written to at or
    /// after `idle_start`, its calls at or after `window_start` (each one's
    /// output, if reported, as an [`StateWrite::Output`] right after it)
    /// and all its labels. The default refuses: a stateful policy on a
    /// store without state must fail, not start empty.
    async fn load_state(
        &self,
        window_start: jiff::Timestamp,
        idle_start: jiff::Timestamp,
    ) -> Result<Vec<StateWrite>, StoreError> {
        let _ = (window_start, idle_start);
        Err(StoreError(NO_STATE.into()))
    }

    /// Removes what [`Store::load_state`] would no longer return: limit
    /// uses and calls before `window_start`, sessions last written to
    /// before `idle_start` with their calls and labels. Returns the number
    /// of rows removed.
    async fn prune_state(&self, window_start: jiff::Timestamp, idle_start: jiff::Timestamp) -> Result<u64, StoreError> {
        let _ = (window_start, idle_start);
        Err(StoreError(NO_STATE.into()))
    }

    /// Removes the limit uses of `rule`'s buckets, or of the one bucket
    /// whose id ([`rein_engine::state::BucketKey::id`]) is `bucket`, or
    /// both filters; every use when neither is given. Returns the number
    /// of uses removed.
    async fn reset_limits(&self, rule: Option<String>, bucket: Option<String>) -> Result<u64, StoreError> {
        let _ = (rule, bucket);
        Err(StoreError(NO_STATE.into()))
    }

    /// How much state the store keeps.
    async fn state_size(&self) -> Result<StoredStateSize, StoreError> {
        Err(StoreError(NO_STATE.into()))
    }

    /// Keeps a policy version's sources (see [`versions`]), durably, unless
    /// intact ones are kept already; refuses sources that do not hash to
    /// the version. A server calls it before it records the activation.
    /// The default refuses: a store that keeps none must say so.
    async fn save_policy_version(&self, version: &PolicyVersion) -> Result<(), StoreError> {
        let _ = version;
        Err(StoreError(NO_VERSIONS.into()))
    }

    /// The kept sources of the version whose full hash is `version`,
    /// `None` if none are kept. Sources that no longer hash to the version
    /// are an error, never returned.
    async fn policy_version(&self, version: &str) -> Result<Option<PolicyVersion>, StoreError> {
        let _ = version;
        Err(StoreError(NO_VERSIONS.into()))
    }

    /// Every kept version, newest first, without texts, each marked
    /// whether its texts still hash to it.
    async fn policy_versions(&self) -> Result<Vec<PolicyVersionSummary>, StoreError> {
        Err(StoreError(NO_VERSIONS.into()))
    }

    /// The activation records (phase `activate`), in sequence order. The
    /// default pages through [`Store::query_audit`]; a store should use an
    /// index.
    async fn activations(&self) -> Result<Vec<AuditRecord>, StoreError> {
        let mut out = Vec::new();
        let mut after_seq = 0;
        loop {
            let page = self
                .query_audit(&AuditQuery {
                    after_seq: Some(after_seq),
                    limit: Some(10_000),
                    ..AuditQuery::default()
                })
                .await?;
            let Some(last) = page.last() else { break };
            after_seq = last.seq;
            out.extend(page.into_iter().filter(|r| r.entry.phase == versions::ACTIVATE_PHASE));
        }
        Ok(out)
    }

    /// Records `fingerprint` as the fingerprint of the store's audit key
    /// if it has none yet, and returns the one it keeps (the first ever
    /// recorded): the caller compares.
    async fn bind_key_fingerprint(&self, fingerprint: &str) -> Result<String, StoreError>;

    /// The fingerprint of the audit key the store was first used with, if
    /// one was recorded.
    async fn key_fingerprint(&self) -> Result<Option<String>, StoreError>;

    /// Makes a small durable write outside the audit log (the time of the
    /// probe, in the store's metadata): whether the store takes writes
    /// again after appends failed (a disk that was full). No default: a
    /// store that cannot tell must say so with an error, not pass.
    async fn probe_write(&self) -> Result<(), StoreError>;

    /// The newest pending approval not expired at `now` (RFC 3339) for the
    /// request with `request_hash` sent by `client`: an identical request
    /// reuses it instead of opening another.
    async fn find_open_approval(
        &self,
        request_hash: &str,
        client: Option<&str>,
        now: &str,
    ) -> Result<Option<ApprovalRecord>, StoreError>;

    /// The approvals asked for by `client`, newest first, optionally only
    /// those in `state` (`Pending`: those not expired at this moment, so
    /// that expired ones do not use up `limit`).
    async fn list_client_approvals(
        &self,
        client: &str,
        state: Option<ApprovalState>,
        limit: u64,
    ) -> Result<Vec<ApprovalRecord>, StoreError>;

    /// Records matching every filter set, in sequence order.
    async fn query_audit(&self, query: &AuditQuery) -> Result<Vec<AuditRecord>, StoreError>;

    /// Walks the whole chain and reports the first record that does not
    /// fit: changed, removed, inserted or reordered.
    async fn verify_audit(&self) -> Result<Verification, StoreError>;

    /// Number of records in the audit log.
    async fn audit_len(&self) -> Result<u64, StoreError>;

    /// Stores a new pending approval.
    async fn create_approval(&self, approval: ApprovalRecord) -> Result<(), StoreError>;

    /// Pending approvals that have not expired at `now` (RFC 3339): those a
    /// person can still decide, newest first. The default filters
    /// [`Store::list_approvals`]; a store should do it in its query, so that
    /// expired ones do not take up the `limit`.
    async fn list_open_approvals(&self, now: &str, limit: u64) -> Result<Vec<ApprovalRecord>, StoreError> {
        let now = chain::parse_time(now)?;
        let pending = self.list_approvals(Some(ApprovalState::Pending), limit).await?;
        Ok(pending
            .into_iter()
            .filter(|a| chain::parse_time(&a.expires_at).is_ok_and(|expires| expires > now))
            .collect())
    }

    /// The approval with this id.
    async fn get_approval(&self, id: &str) -> Result<Option<ApprovalRecord>, StoreError>;

    /// Approvals, newest first, optionally only those in `state`.
    async fn list_approvals(&self, state: Option<ApprovalState>, limit: u64)
        -> Result<Vec<ApprovalRecord>, StoreError>;

    /// Grants (`grant = true`) or denies a pending, unexpired approval, as
    /// one atomic step. Refuses an approver who is the requester.
    async fn decide_approval(
        &self,
        id: &str,
        grant: bool,
        approver: &str,
        comment: Option<&str>,
        now: &str,
    ) -> Result<Result<ApprovalRecord, ApprovalError>, StoreError>;

    /// Uses a granted, unexpired approval for the request with
    /// `request_hash`, as one atomic step: of concurrent uses, exactly one
    /// succeeds.
    async fn use_approval(
        &self,
        id: &str,
        request_hash: &str,
        now: &str,
    ) -> Result<Result<ApprovalRecord, ApprovalError>, StoreError>;
}
