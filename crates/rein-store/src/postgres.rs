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
//! A pool (`deadpool-postgres`, [`PostgresOptions::pool_size`]) for reads
//! and small writes ([`PostgresStore::client`]); the writer task, the lease
//! and the LISTEN task (started by the first call of
//! [`Store::policy_publications`]) each have a dedicated connection,
//! replaced when it breaks: a replica uses at most `pool_size + 3`
//! connections. Every connection sets `statement_timeout`,
//! `idle_in_transaction_session_timeout` and `synchronous_commit = on` (in
//! the startup `options`) and TCP keepalives. TLS and `sslmode`: see
//! `connect` (the server is always verified, against the PEM file named by
//! [`CA_FILE_ENV`] or the system's roots).
//!
//! The lease is a session-level advisory lock and publication a LISTEN:
//! both need a real session. Connect to PostgreSQL directly or through a
//! pooler in SESSION mode (PgBouncer's transaction mode breaks both, and
//! refuses the startup `options` unless told to ignore them).
//!
//! # Failures
//!
//! Every failure is a [`StoreError`] naming what failed; nothing is retried
//! behind the caller's back except the connection itself: a batch that
//! fails (the database down, a timeout, a constraint) fails every append in
//! it, and the next batch opens a fresh connection; pooled connections
//! broken by a restart are dropped by the pool; the lease is lost with its
//! connection (appends decided under it are refused) and taken again on a
//! new one; the listener reconnects with backoff. An append is answered
//! only after its COMMIT returned: an answered record is durable. (A COMMIT
//! whose answer is lost with the connection is reported as a failure,
//! although the records may be stored: a blocked decision may be in the
//! log, an answered one is always there.)

mod approvals;
mod connect;
mod import;
mod lease;
mod publish;
mod read;
mod schema;
mod state;
mod versions;
mod writer;

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};

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
            idle_in_transaction_timeout: Duration::from_secs(5),
        }
    }
}

/// The [`Store`] on PostgreSQL, shared by several processes
/// ([`Store::is_shared`]). See the [module documentation](self).
pub struct PostgresStore {
    pool: Pool,
    options: PostgresOptions,
    inner: Arc<Inner>,
    /// The writer task's queue (see `writer`).
    writer: mpsc::UnboundedSender<writer::Message>,
    /// The state lease; one taker at a time in the process.
    lease: tokio::sync::Mutex<lease::Lease>,
    /// The lease held, as appends check it (see `lease::check_held`).
    lease_mark: lease::Mark,
    /// Publications heard, once a caller asked (the listener starts then).
    publications: OnceLock<watch::Receiver<Option<String>>>,
    /// Dropped with the store: the listener task then ends.
    alive: watch::Sender<()>,
}

/// What the store's background tasks share with it.
pub(crate) struct Inner {
    /// The parsed URL with the store's settings (see `connect::config`).
    pub(crate) config: tokio_postgres::Config,
    /// The TLS connector of every connection.
    pub(crate) tls: connect::Tls,
    /// The URL without its password, for messages.
    pub(crate) shown: String,
    /// The options the store was opened with.
    pub(crate) options: PostgresOptions,
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

impl PostgresStore {
    /// How long a frozen state-lease holder (SIGSTOP, a paused VM) keeps the
    /// other replicas from the lease at most, about: its lease connection
    /// idles out after this (a live holder's heartbeat keeps it busy).
    pub const LEASE_IDLE_TIMEOUT: std::time::Duration = lease::LEASE_IDLE_TIMEOUT;

    /// The largest difference between the database's clock and a
    /// replica's that the state lease accepts; beyond it the lease is
    /// refused (stateful decisions block, naming the skew).
    pub const MAX_CLOCK_SKEW: std::time::Duration = lease::MAX_CLOCK_SKEW;

    /// The longest this process keeps the state lease in the database,
    /// whatever its decisions do: beyond it the lease connection is ended
    /// (the lock freed for the other replicas; what is appended under the
    /// lease later is refused by the fence).
    pub const LEASE_HOLD_CAP: std::time::Duration = lease::LEASE_HOLD_CAP;

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
        // The state's epoch now: a lease taken later under another epoch (a
        // reset, an import since) tells the caller to reload.
        let epoch: i64 = client
            .query_one("SELECT epoch FROM rein_state_lease WHERE id = 1", &[])
            .await?
            .try_get(0)?;
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
        let inner = Arc::new(Inner {
            config,
            tls,
            shown,
            options,
        });
        let (writer, queue) = mpsc::unbounded_channel();
        tokio::spawn(writer::run(Arc::clone(&inner), queue));
        let (alive, _) = watch::channel(());
        let lease_mark = lease::Mark::default();
        let store = PostgresStore {
            pool,
            options,
            inner,
            writer,
            lease: tokio::sync::Mutex::new(lease::Lease::new(Some(epoch), Arc::clone(&lease_mark))),
            lease_mark,
            publications: OnceLock::new(),
            alive,
        };
        // As SQLite at every start: sealed secrets of approvals that
        // expired while nothing changed an approval go now.
        approvals::forget_expired_at_start(&store).await?;
        Ok(store)
    }

    /// The options the store was opened with.
    pub fn options(&self) -> PostgresOptions {
        self.options
    }

    /// Closes the store: the appends queued before are committed and
    /// answered, later ones fail (decisions then block); the writer's, the
    /// lease's (giving the lease up) and the listener's connections close,
    /// and so does the pool. Calling it again does nothing.
    pub async fn close(&self) -> Result<(), StoreError> {
        let (ack, acked) = oneshot::channel();
        if self.writer.send(writer::Message::Close(ack)).is_ok() {
            // An error: the writer is gone already.
            let _ = acked.await;
        }
        self.alive.send_replace(());
        self.lease.lock().await.close();
        self.pool.close();
        Ok(())
    }

    /// A pooled connection (returned to the pool when dropped). Fails after
    /// [`PostgresOptions::pool_wait_timeout`] when none can be had.
    pub(crate) async fn client(&self) -> Result<deadpool_postgres::Object, StoreError> {
        Ok(self.pool.get().await?)
    }

    /// Queues an append for the writer and waits for its commit.
    async fn append_prepared(
        &self,
        entry: AuditEntry,
        once: bool,
        writes: Vec<StateWrite>,
        generation: Option<u64>,
    ) -> Result<Option<AuditRecord>, StoreError> {
        // Encoding happens here, on the caller's task, in parallel with
        // other appenders; the writer only numbers, hashes and inserts.
        let append = Box::new(writer::PreparedAppend::new(entry, once, writes, generation)?);
        let (reply, answer) = oneshot::channel();
        self.writer
            .send(writer::Message::Append(writer::Command { append, reply }))
            .map_err(|_| StoreError("the store is closed (its writer task has stopped)".into()))?;
        answer
            .await
            .map_err(|_| StoreError("the store's writer task stopped before answering".into()))?
    }

    async fn append_one(&self, entry: AuditEntry, writes: Vec<StateWrite>) -> Result<AuditRecord, StoreError> {
        self.append_prepared(entry, false, writes, None)
            .await?
            .ok_or_else(|| StoreError("internal error: an append was refused as a duplicate".into()))
    }
}

/// The `store_meta` key of the audit key's fingerprint (as SQLite's).
const KEY_FINGERPRINT: &str = "audit_key_fingerprint";
/// The `store_meta` key [`Store::probe_write`] writes (as SQLite's).
const WRITE_PROBE: &str = "last_write_probe";

#[async_trait::async_trait]
impl Store for PostgresStore {
    async fn append(&self, entry: AuditEntry) -> Result<AuditRecord, StoreError> {
        self.append_one(entry, Vec::new()).await
    }

    async fn append_once(&self, entry: AuditEntry) -> Result<Option<AuditRecord>, StoreError> {
        self.append_prepared(entry, true, Vec::new(), None).await
    }

    async fn append_with_state(&self, entry: AuditEntry, writes: Vec<StateWrite>) -> Result<AuditRecord, StoreError> {
        self.append_one(entry, writes).await
    }

    async fn append_once_with_state(
        &self,
        entry: AuditEntry,
        writes: Vec<StateWrite>,
    ) -> Result<Option<AuditRecord>, StoreError> {
        self.append_prepared(entry, true, writes, None).await
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

    async fn widest_state_spans(
        &self,
        max_window: jiff::SignedDuration,
        session_idle: jiff::SignedDuration,
    ) -> Result<(jiff::SignedDuration, jiff::SignedDuration), StoreError> {
        state::widest_spans(self, max_window, session_idle).await
    }

    async fn database_now(&self) -> Result<Option<jiff::Timestamp>, StoreError> {
        state::database_now(self).await.map(Some)
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
        self.lease.lock().await.acquire(&self.inner, after_seq).await
    }

    async fn release_state_lease(&self, generation: u64) -> Result<(), StoreError> {
        self.lease.lock().await.release(generation).await
    }

    async fn append_leased(
        &self,
        entry: AuditEntry,
        writes: Vec<StateWrite>,
        once: bool,
        generation: u64,
    ) -> Result<Option<AuditRecord>, StoreError> {
        lease::check_held(&self.lease_mark, generation)?;
        self.append_prepared(entry, once, writes, Some(generation)).await
    }

    async fn publish_policy(&self, version: &str) -> Result<(), StoreError> {
        publish::publish(self, version).await
    }

    async fn published_policy(&self) -> Result<Option<String>, StoreError> {
        publish::published(self).await
    }

    fn policy_publications(&self) -> Option<watch::Receiver<Option<String>>> {
        // The listener (a connection of its own) starts with the first
        // caller: a command that never asks does not pay for it.
        let rx = self.publications.get_or_init(|| {
            let (tx, rx) = watch::channel(None);
            publish::start(Arc::clone(&self.inner), tx, self.alive.subscribe());
            rx
        });
        Some(rx.clone())
    }

    async fn import_records(&self, records: Vec<AuditRecord>) -> Result<(), StoreError> {
        import::records(self, records).await
    }

    async fn import_approvals(&self, approvals: Vec<ApprovalRecord>) -> Result<(), StoreError> {
        approvals::import(self, approvals).await
    }

    async fn import_state(&self, writes: Vec<StateWrite>) -> Result<(), StoreError> {
        import::state(self, writes).await
    }

    async fn save_policy_version(&self, version: &PolicyVersion) -> Result<(), StoreError> {
        versions::save(self, version).await
    }

    async fn policy_version(&self, version: &str) -> Result<Option<PolicyVersion>, StoreError> {
        versions::load(self, version).await
    }

    async fn policy_versions(&self) -> Result<Vec<PolicyVersionSummary>, StoreError> {
        versions::list(self).await
    }

    async fn activations(&self) -> Result<Vec<AuditRecord>, StoreError> {
        read::activations(self).await
    }

    async fn bind_key_fingerprint(&self, fingerprint: &str) -> Result<String, StoreError> {
        versions::bind_meta(self, KEY_FINGERPRINT, fingerprint).await
    }

    async fn key_fingerprint(&self) -> Result<Option<String>, StoreError> {
        versions::read_meta(self, KEY_FINGERPRINT).await
    }

    async fn probe_write(&self) -> Result<(), StoreError> {
        // Appends go through the writer task: a database that takes a write
        // says nothing while that task is gone.
        if self.writer.is_closed() {
            return Err(StoreError("the store's writer task has stopped".into()));
        }
        let now = crate::chain::format_time(jiff::Timestamp::now());
        versions::write_meta(self, WRITE_PROBE, &now).await
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
        read::query_audit(self, query).await
    }

    async fn verify_audit(&self) -> Result<Verification, StoreError> {
        read::verify_audit(self).await
    }

    async fn audit_len(&self) -> Result<u64, StoreError> {
        read::audit_len(self).await
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
