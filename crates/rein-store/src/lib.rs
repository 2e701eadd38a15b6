//! What Rein keeps between decisions: the tamper-evident audit log and the
//! approvals, behind the [`Store`] trait. [`SqliteStore`] is the embedded
//! default (one file, WAL mode, group commit); a PostgreSQL backend for
//! several replicas implements the same trait.
//!
//! The store is the only crate that talks to a database. It records what
//! it is given and never decides anything.

#![deny(missing_docs)]

pub mod chain;
mod model;
pub mod redact;
pub mod seal;
mod sqlite;

pub use model::{ApprovalError, ApprovalRecord, ApprovalState, AuditEntry, AuditQuery, AuditRecord, Verification};
pub use sqlite::{SqliteOptions, SqliteStore};

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
