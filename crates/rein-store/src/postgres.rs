//! The shared store: one PostgreSQL database for several `rein serve`
//! replicas (see the design of issue 18).
//!
//! - **One audit chain** for every replica, its append serialised in the
//!   database: each process's writer task commits whatever appends arrived
//!   while its previous batch committed as one transaction that locks the
//!   `chain_head` row `FOR UPDATE`, chains the batch with `chain.rs` (the
//!   same canonical bodies and hashes as SQLite, so records are
//!   byte-identical and `rein migrate` copies them verbatim), inserts the
//!   rows and moves the head (see `writer`).
//! - **State** rows carry the `seq` of their decision's record; the state
//!   lease (`lease`) lets one process at a time decide on limits and
//!   sessions and hands it what others wrote since.
//! - **Policy** publication through a row and `NOTIFY rein_policy`
//!   (`publish`).
//!
//! # Times
//!
//! Every time the store compares or orders is kept as text in the fixed
//! width UTC form of [`crate::chain::format_time`]
//! (`YYYY-MM-DDTHH:MM:SS.ffffffZ`), exactly as in SQLite, in columns
//! declared `COLLATE "C"` (byte order): `audit.time` (or the time as given
//! when it does not parse), approvals' `created_key` / `expires_key` (their
//! `created_at` / `expires_at` are kept as given), the state's `time` and
//! `last_seen` (rounded up to the microsecond when stored, bounds rounded
//! down, as `sqlite/state.rs`), `policy_versions.saved_at`. Filters and
//! ordering therefore match SQLite's. No `timestamptz` column: a record's
//! time must read back exactly as it was hashed.
//!
//! # Connections
//!
//! A pool (`deadpool-postgres`) for reads and small writes
//! ([`PostgresStore::client`]); the writer task, the lease and the LISTEN
//! task each have a dedicated connection, replaced when it breaks.

// The skeleton leaves some of its parts unused until they are filled in.
#![allow(dead_code)]

mod approvals;
mod connect;
mod schema;
mod state;

use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};

use crate::{
    ApprovalError, ApprovalRecord, ApprovalState, AuditEntry, AuditQuery, AuditRecord, PolicyVersion,
    PolicyVersionSummary, StateLease, StateWrite, Store, StoreError, StoredStateSize, Verification,
};

pub use connect::CA_FILE_ENV;

/// How a [`PostgresStore`] connects and waits; [`PostgresOptions::default`]
/// suits a server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PostgresOptions {
    /// Most pooled connections (reads, approvals, small writes); the
    /// writer, the lease and the notification listener have one each
    /// besides.
    pub pool_size: usize,
    /// How long a caller waits for a pooled connection before the
    /// operation fails (the database down or overloaded).
    pub pool_wait_timeout: Duration,
    /// How long opening a connection may take.
    pub connect_timeout: Duration,
    /// The server's `statement_timeout` on every connection: a statement
    /// that runs longer fails (and so does its decision: block).
    pub statement_timeout: Duration,
    /// The server's `idle_in_transaction_session_timeout`: a process frozen
    /// inside a transaction (holding the chain head's row lock) is cut off
    /// so that other replicas go on.
    pub idle_in_transaction_timeout: Duration,
}

impl Default for PostgresOptions {
    fn default() -> PostgresOptions {
        PostgresOptions {
            pool_size: 16,
            pool_wait_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(5),
            statement_timeout: Duration::from_secs(10),
            idle_in_transaction_timeout: Duration::from_secs(20),
        }
    }
}

/// The [`Store`] on PostgreSQL, shared by several processes
/// ([`Store::is_shared`]). See the [module documentation](self).
pub struct PostgresStore {
    pool: Pool,
    options: PostgresOptions,
    inner: Arc<Inner>,
}

/// What the store's background tasks share with it.
pub(crate) struct Inner {
    /// The parsed URL with the store's settings (see `connect::config`).
    pub(crate) config: tokio_postgres::Config,
    /// The TLS connector of every connection.
    pub(crate) tls: connect::Tls,
    /// The URL without its password, for messages.
    pub(crate) shown: String,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore")
            .field("url", &self.inner.shown)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl From<tokio_postgres::Error> for StoreError {
    fn from(e: tokio_postgres::Error) -> Self {
        StoreError(format!("PostgreSQL: {}", schema::pg_text(&e)))
    }
}

impl From<deadpool_postgres::PoolError> for StoreError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        match e {
            deadpool_postgres::PoolError::Backend(e) => e.into(),
            deadpool_postgres::PoolError::Timeout(_) => {
                StoreError("PostgreSQL: no connection to the database in time (down, unreachable or overloaded)".into())
            }
            other => StoreError(format!("PostgreSQL: cannot get a connection: {other}")),
        }
    }
}

fn not_yet(what: &str) -> StoreError {
    StoreError(format!("PostgreSQL store: {what} is not implemented yet"))
}

impl PostgresStore {
    /// Connects to the database at `url` (`postgres://…`; see `connect` for
    /// TLS and [`CA_FILE_ENV`]), brings its schema up to date and starts the
    /// store's tasks. Refuses a database whose schema is newer than this
    /// build, or that holds tables of something else. Must be called inside
    /// a tokio runtime.
    pub async fn open(url: &str, options: PostgresOptions) -> Result<PostgresStore, StoreError> {
        let shown = crate::StoreLocation::Postgres(url.to_owned()).redacted();
        let config = connect::config(url, &options)?;
        let tls = connect::tls()?;
        let (mut client, _ended) = connect::dedicated(&config, &tls, |_| {})
            .await
            .map_err(|e| StoreError(format!("cannot open the store at {shown}: {}", e.0)))?;
        schema::migrate(&mut client)
            .await
            .map_err(|e| StoreError(format!("cannot open the store at {shown}: {}", e.0)))?;
        drop(client);
        let manager = Manager::from_config(
            config.clone(),
            tls.clone(),
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(options.pool_size.max(1))
            .wait_timeout(Some(options.pool_wait_timeout))
            .create_timeout(Some(options.connect_timeout))
            .recycle_timeout(Some(options.connect_timeout))
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .build()
            .map_err(|e| StoreError(format!("cannot set up the connection pool: {e}")))?;
        Ok(PostgresStore {
            pool,
            options,
            inner: Arc::new(Inner { config, tls, shown }),
        })
    }

    /// The options the store was opened with.
    pub fn options(&self) -> PostgresOptions {
        self.options
    }

    /// A pooled connection (returned to the pool when dropped). Fails after
    /// [`PostgresOptions::pool_wait_timeout`] when none can be had.
    pub(crate) async fn client(&self) -> Result<deadpool_postgres::Object, StoreError> {
        Ok(self.pool.get().await?)
    }
}

#[async_trait::async_trait]
impl Store for PostgresStore {
    async fn append(&self, entry: AuditEntry) -> Result<AuditRecord, StoreError> {
        let _ = entry;
        Err(not_yet("append"))
    }

    async fn append_once(&self, entry: AuditEntry) -> Result<Option<AuditRecord>, StoreError> {
        let _ = entry;
        Err(not_yet("append_once"))
    }

    async fn append_with_state(&self, entry: AuditEntry, writes: Vec<StateWrite>) -> Result<AuditRecord, StoreError> {
        let _ = (entry, writes);
        Err(not_yet("append_with_state"))
    }

    async fn append_once_with_state(
        &self,
        entry: AuditEntry,
        writes: Vec<StateWrite>,
    ) -> Result<Option<AuditRecord>, StoreError> {
        let _ = (entry, writes);
        Err(not_yet("append_once_with_state"))
    }

    async fn load_state(
        &self,
        window_start: jiff::Timestamp,
        idle_start: jiff::Timestamp,
    ) -> Result<Vec<StateWrite>, StoreError> {
        state::load(self, window_start, idle_start).await
    }

    async fn prune_state(&self, window_start: jiff::Timestamp, idle_start: jiff::Timestamp) -> Result<u64, StoreError> {
        state::prune(self, window_start, idle_start).await
    }

    async fn reset_limits(&self, rule: Option<String>, bucket: Option<String>) -> Result<u64, StoreError> {
        state::reset_limits(self, rule, bucket).await
    }

    async fn state_size(&self) -> Result<StoredStateSize, StoreError> {
        state::size(self).await
    }

    fn is_shared(&self) -> bool {
        true
    }

    async fn acquire_state_lease(&self, after_seq: u64) -> Result<StateLease, StoreError> {
        let _ = after_seq;
        Err(not_yet("the state lease"))
    }

    async fn release_state_lease(&self, generation: u64) -> Result<(), StoreError> {
        let _ = generation;
        Err(not_yet("the state lease"))
    }

    async fn append_leased(
        &self,
        entry: AuditEntry,
        writes: Vec<StateWrite>,
        once: bool,
        generation: u64,
    ) -> Result<Option<AuditRecord>, StoreError> {
        let _ = (entry, writes, once, generation);
        Err(not_yet("append_leased"))
    }

    async fn publish_policy(&self, version: &str) -> Result<(), StoreError> {
        let _ = version;
        Err(not_yet("publish_policy"))
    }

    async fn published_policy(&self) -> Result<Option<String>, StoreError> {
        Err(not_yet("published_policy"))
    }

    fn policy_publications(&self) -> Option<tokio::sync::watch::Receiver<Option<String>>> {
        None
    }

    async fn import_records(&self, records: Vec<AuditRecord>) -> Result<(), StoreError> {
        let _ = records;
        Err(not_yet("import_records"))
    }

    async fn import_approvals(&self, approvals: Vec<ApprovalRecord>) -> Result<(), StoreError> {
        approvals::import(self, approvals).await
    }

    async fn import_state(&self, writes: Vec<StateWrite>) -> Result<(), StoreError> {
        let _ = writes;
        Err(not_yet("import_state"))
    }

    async fn save_policy_version(&self, version: &PolicyVersion) -> Result<(), StoreError> {
        let _ = version;
        Err(not_yet("save_policy_version"))
    }

    async fn policy_version(&self, version: &str) -> Result<Option<PolicyVersion>, StoreError> {
        let _ = version;
        Err(not_yet("policy_version"))
    }

    async fn policy_versions(&self) -> Result<Vec<PolicyVersionSummary>, StoreError> {
        Err(not_yet("policy_versions"))
    }

    async fn activations(&self) -> Result<Vec<AuditRecord>, StoreError> {
        Err(not_yet("activations"))
    }

    async fn bind_key_fingerprint(&self, fingerprint: &str) -> Result<String, StoreError> {
        let _ = fingerprint;
        Err(not_yet("bind_key_fingerprint"))
    }

    async fn key_fingerprint(&self) -> Result<Option<String>, StoreError> {
        Err(not_yet("key_fingerprint"))
    }

    async fn probe_write(&self) -> Result<(), StoreError> {
        Err(not_yet("probe_write"))
    }

    async fn find_open_approval(
        &self,
        request_hash: &str,
        client: Option<&str>,
        now: &str,
    ) -> Result<Option<ApprovalRecord>, StoreError> {
        approvals::find_open(self, request_hash, client, now).await
    }

    async fn list_client_approvals(
        &self,
        client: &str,
        state: Option<ApprovalState>,
        limit: u64,
    ) -> Result<Vec<ApprovalRecord>, StoreError> {
        approvals::list_client(self, client, state, limit).await
    }

    async fn query_audit(&self, query: &AuditQuery) -> Result<Vec<AuditRecord>, StoreError> {
        let _ = query;
        Err(not_yet("query_audit"))
    }

    async fn verify_audit(&self) -> Result<Verification, StoreError> {
        Err(not_yet("verify_audit"))
    }

    async fn audit_len(&self) -> Result<u64, StoreError> {
        Err(not_yet("audit_len"))
    }

    async fn create_approval(&self, approval: ApprovalRecord) -> Result<(), StoreError> {
        approvals::create(self, approval).await
    }

    async fn list_open_approvals(&self, now: &str, limit: u64) -> Result<Vec<ApprovalRecord>, StoreError> {
        approvals::list_open(self, now, limit).await
    }

    async fn get_approval(&self, id: &str) -> Result<Option<ApprovalRecord>, StoreError> {
        approvals::get(self, id).await
    }

    async fn list_approvals(
        &self,
        state: Option<ApprovalState>,
        limit: u64,
    ) -> Result<Vec<ApprovalRecord>, StoreError> {
        approvals::list(self, state, limit).await
    }

    async fn decide_approval(
        &self,
        id: &str,
        grant: bool,
        approver: &str,
        comment: Option<&str>,
        now: &str,
    ) -> Result<Result<ApprovalRecord, ApprovalError>, StoreError> {
        approvals::decide(self, id, grant, approver, comment, now).await
    }

    async fn use_approval(
        &self,
        id: &str,
        request_hash: &str,
        now: &str,
    ) -> Result<Result<ApprovalRecord, ApprovalError>, StoreError> {
        approvals::use_approval(self, id, request_hash, now).await
    }
}
