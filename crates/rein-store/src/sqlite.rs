//! The embedded store: one SQLite file in WAL mode.
//!
//! Writes go to one writer thread that batches whatever is queued into one
//! transaction and one fsync (group commit, see `writer`); reads use their
//! own connections on tokio's blocking pool (see `read`).

mod approvals;
mod checkpoint;
pub(crate) mod columns;
mod read;
mod schema;
pub(crate) mod state;
mod versions;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use tokio::sync::oneshot;

use self::read::Readers;
use self::state::StateOp;
use self::writer::{ApprovalOp, ApprovalReply, Command, PreparedAppend, StateReply};
use crate::{
    chain, ApprovalError, ApprovalRecord, ApprovalState, AuditEntry, AuditQuery, AuditRecord, PolicyVersion,
    PolicyVersionSummary, Store, StoreError, StoredStateSize, Verification,
};
use rein_engine::state::{BucketKey, StateWrite};

/// The `store_meta` key of the audit key's fingerprint.
const KEY_FINGERPRINT: &str = "audit_key_fingerprint";
/// The `store_meta` key [`Store::probe_write`] writes.
const WRITE_PROBE: &str = "last_write_probe";

/// Runs blocking `f` off the async workers when inside a tokio runtime.
async fn run_blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    match tokio::runtime::Handle::try_current() {
        Ok(rt) => rt
            .spawn_blocking(f)
            .await
            .map_err(|e| StoreError(format!("a store task failed: {e}")))?,
        Err(_) => f(),
    }
}

/// Opens a store that cannot be opened in place for reading (see
/// [`SqliteStore::open_read_only`]): immutable when it has no WAL to read,
/// else a private copy of the file and its WAL. Returns what the readers
/// use (the source to open, the copy to keep, a first connection); `None`
/// when the file has a `-shm` already (its failure is not this one).
#[allow(clippy::type_complexity)]
fn read_protected(
    path: &Path,
    options: SqliteOptions,
) -> Result<Option<(PathBuf, Option<tempfile::TempDir>, rusqlite::Connection)>, StoreError> {
    let with_suffix = |suffix: &str| {
        let mut p = path.as_os_str().to_owned();
        p.push(suffix);
        PathBuf::from(p)
    };
    if with_suffix("-shm").exists() {
        return Ok(None);
    }
    let wal = with_suffix("-wal");
    let wal_len = std::fs::metadata(&wal).map_or(0, |m| m.len());
    let (source, snapshot) = if wal_len == 0 {
        (PathBuf::from(immutable_uri(path)?), None)
    } else {
        let dir = tempfile::Builder::new()
            .prefix("rein-store-copy-")
            .tempdir()
            .map_err(|e| StoreError(format!("cannot make a private copy of {}: {e}", path.display())))?;
        let copy = dir.path().join("rein.db");
        for (from, to) in [
            (path.to_path_buf(), copy.clone()),
            (wal, dir.path().join("rein.db-wal")),
        ] {
            std::fs::copy(&from, &to)
                .map_err(|e| StoreError(format!("cannot copy {} to read it: {e}", from.display())))?;
        }
        (copy, Some(dir))
    };
    let conn = schema::open_reader(&source, options)?;
    schema::check_readable(&conn, path)?;
    Ok(Some((source, snapshot, conn)))
}

/// `file:` URI of `path` with `immutable=1`: SQLite reads it without
/// locks, a WAL or its index.
fn immutable_uri(path: &Path) -> Result<String, StoreError> {
    let absolute =
        std::path::absolute(path).map_err(|e| StoreError(format!("cannot resolve {}: {e}", path.display())))?;
    let text = absolute
        .to_str()
        .ok_or_else(|| StoreError(format!("{} is not valid UTF-8", path.display())))?;
    let mut uri = String::from("file:");
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"/-._~".contains(&b) {
            uri.push(char::from(b));
        } else {
            uri.push_str(&format!("%{b:02X}"));
        }
    }
    uri.push_str("?immutable=1");
    Ok(uri)
}

/// The most approvals [`Store::list_approvals`] returns at once.
const MAX_APPROVALS: u64 = 10_000;

/// The embedded [`Store`]: one SQLite file (plus its `-wal` and `-shm`
/// companions) in WAL mode, every commit synced to disk.
///
/// Appends and approval changes are run by one writer thread, which commits
/// whatever is queued as one transaction (group commit): under load, many
/// decisions share one fsync. Reads use separate connections and never wait
/// for the writer; they run on tokio's blocking pool (or block the caller
/// when polled outside a tokio runtime).
///
/// Call [`SqliteStore::close`] to stop cleanly; dropping the store does the
/// same, blocking until the writer has finished what was queued.
pub struct SqliteStore {
    path: PathBuf,
    commands: mpsc::Sender<Command>,
    writer: Mutex<Option<JoinHandle<()>>>,
    readers: Arc<Readers>,
    /// A private copy of a write-protected store read through it (see
    /// [`SqliteStore::open_read_only`]), removed when the store is dropped.
    _snapshot: Option<tempfile::TempDir>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

/// How a [`SqliteStore`] runs; [`SqliteOptions::default`] suits a server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SqliteOptions {
    /// Copy the WAL into the database file on a background thread.
    pub background_checkpoints: bool,
    /// Checkpoint the WAL into the database file (and remove it) when the
    /// last connection closes.
    pub checkpoint_on_close: bool,
    /// WAL size, in pages, at which a commit checkpoints it (and the WAL
    /// starts over).
    pub writer_checkpoint_pages: u32,
}

impl Default for SqliteOptions {
    fn default() -> SqliteOptions {
        SqliteOptions {
            background_checkpoints: true,
            checkpoint_on_close: true,
            writer_checkpoint_pages: checkpoint::WRITER_AUTOCHECKPOINT,
        }
    }
}

impl SqliteOptions {
    /// For a process that appends a few records and exits (a coding agent's
    /// hook). No checkpoint thread; and the WAL is left for the next process
    /// instead of being copied back and removed at every exit, which costs
    /// five syncs (the WAL's creation, its header, the directory, the copy,
    /// the database) where a commit needs one. The first connection of each
    /// process reads the WAL's live frames to rebuild its index, so the WAL
    /// is kept short: a commit checkpoints it at 64 pages (every twenty or
    /// so processes). Durability is the same: every commit syncs the WAL.
    pub fn short_lived() -> SqliteOptions {
        SqliteOptions {
            background_checkpoints: false,
            checkpoint_on_close: false,
            writer_checkpoint_pages: 64,
        }
    }
}

impl SqliteStore {
    /// Opens the store at `path`, creating the file if needed (not its
    /// directory), and brings its schema up to date. Refuses a file whose
    /// schema is newer than this build, or that is not a Rein store.
    ///
    /// Blocking (file I/O and a possible migration): call it at start-up,
    /// or from `spawn_blocking`.
    pub fn open(path: impl AsRef<Path>) -> Result<SqliteStore, StoreError> {
        SqliteStore::open_with(path, SqliteOptions::default())
    }

    /// Opens the store as [`SqliteStore::open`] does, running as `options`
    /// say.
    pub fn open_with(path: impl AsRef<Path>, options: SqliteOptions) -> Result<SqliteStore, StoreError> {
        let path = path.as_ref().to_path_buf();
        let conn = schema::open_writer(&path, options)?;
        let checkpointer = match options.background_checkpoints {
            true => Some(checkpoint::Checkpointer::start(&path)?),
            false => None,
        };
        let (commands, rx) = mpsc::channel();
        let writer = std::thread::Builder::new()
            .name("rein-store-writer".into())
            .spawn(move || writer::run(conn, rx, checkpointer))
            .map_err(|e| StoreError(format!("cannot start the store's writer thread: {e}")))?;
        Ok(SqliteStore {
            readers: Arc::new(Readers::new(path.clone(), options)),
            path,
            commands,
            writer: Mutex::new(Some(writer)),
            _snapshot: None,
        })
    }

    /// Opens an existing store for reading only: it is neither created nor
    /// migrated, no writer thread starts, and the file may be
    /// write-protected. Appends and approval changes fail with
    /// [`StoreError`]. Refuses a file that is not a Rein store or whose
    /// schema is not the one this build reads.
    ///
    /// A WAL-mode file needs its `-shm` index beside it, which SQLite
    /// creates on open: a write-protected copy in a folder the reader
    /// cannot write has none. Then a copy with no WAL (or an empty one) is
    /// read as immutable, in place; one whose newest records are still in
    /// its WAL is copied, with the WAL, into a private temporary folder and
    /// read there (the whole file is copied once: its records are read as
    /// stored, nothing is written beside the original).
    pub fn open_read_only(path: impl AsRef<Path>) -> Result<SqliteStore, StoreError> {
        let path = path.as_ref().to_path_buf();
        if !path.is_file() {
            let why = if path.exists() {
                "it is not a file"
            } else {
                "it does not exist"
            };
            return Err(StoreError(format!(
                "cannot open the store at {}: {why}",
                path.display()
            )));
        }
        let options = SqliteOptions {
            background_checkpoints: false,
            checkpoint_on_close: false,
            writer_checkpoint_pages: 0,
        };
        let (source, snapshot, conn) = match schema::open_reader(&path, options)
            .and_then(|conn| schema::check_readable(&conn, &path).map(|()| conn))
        {
            Ok(conn) => (path.clone(), None, conn),
            Err(first) => match read_protected(&path, options) {
                Ok(Some(opened)) => opened,
                // Not a case for it: the first error says what is wrong.
                Ok(None) => return Err(first),
                // Read another way, the file still does not do: this says
                // why (an older schema, not a store...).
                Err(second) => return Err(second),
            },
        };
        let readers = Readers::new(source, options);
        readers.keep(conn);
        // No writer: the receiver is dropped at once, so every write fails
        // at once with "the store is closed".
        let (commands, _) = mpsc::channel();
        Ok(SqliteStore {
            readers: Arc::new(readers),
            path,
            commands,
            writer: Mutex::new(None),
            _snapshot: snapshot,
        })
    }

    /// The file this store keeps.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Stops the writer cleanly: what was queued before is committed and
    /// answered, later writes fail with [`StoreError`], the write connection
    /// is closed (checkpointing the WAL into the file) and the thread is
    /// joined. Reads keep working until the store is dropped. Calling it
    /// again does nothing.
    pub async fn close(&self) -> Result<(), StoreError> {
        let (ack, acked) = oneshot::channel();
        if self.commands.send(Command::Shutdown(Some(ack))).is_ok() {
            // An error here means the writer is gone already; joining below
            // tells whether it ended well.
            let _ = acked.await;
        }
        let handle = self.writer.lock().map_err(|_| poisoned())?.take();
        if let Some(handle) = handle {
            // The writer has acknowledged, so it is about to return: joining
            // blocks only briefly, but keep it off the async workers anyway.
            let joined = match tokio::runtime::Handle::try_current() {
                Ok(rt) => rt
                    .spawn_blocking(move || handle.join())
                    .await
                    .map_err(|e| StoreError(format!("cannot join the store's writer thread: {e}")))?,
                Err(_) => handle.join(),
            };
            joined.map_err(|_| StoreError("the store's writer thread panicked".into()))?;
        }
        Ok(())
    }

    async fn append_prepared(
        &self,
        entry: AuditEntry,
        once: bool,
        writes: Vec<StateWrite>,
    ) -> Result<AuditRecord, StoreError> {
        // Encoding happens here, on the caller's task, in parallel with
        // other appenders; the writer only numbers, hashes and inserts.
        let state = if writes.is_empty() {
            Vec::new()
        } else {
            state::prepare(&entry.decision_id, writes)?
        };
        let prepared = Box::new(PreparedAppend::new(entry, once, state));
        let (reply, answer) = oneshot::channel();
        self.send(Command::Append(prepared, reply))?;
        answer
            .await
            .map_err(|_| writer_gone())?
            .into_value()
            .ok_or_else(writer_gone)?
    }

    fn send(&self, cmd: Command) -> Result<(), StoreError> {
        // The receiver is dropped as soon as the writer thread ends (closed,
        // or died), so this fails at once instead of waiting forever.
        self.commands
            .send(cmd)
            .map_err(|_| StoreError("the store is closed (its writer thread has stopped)".into()))
    }

    async fn append_once_prepared(
        &self,
        entry: AuditEntry,
        writes: Vec<StateWrite>,
    ) -> Result<Option<AuditRecord>, StoreError> {
        // Checked by the writer in the transaction that appends, so that
        // of two concurrent outcomes for one decision exactly one is kept.
        match self.append_prepared(entry, true, writes).await {
            Ok(record) => Ok(Some(record)),
            Err(e) if e.0.starts_with(writer::DUPLICATE) => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn state_op(&self, op: StateOp) -> StateReply {
        let (reply, answer) = oneshot::channel();
        self.send(Command::State(op, reply))?;
        answer
            .await
            .map_err(|_| writer_gone())?
            .into_value()
            .ok_or_else(writer_gone)?
    }

    /// Bytes of the store's file and its write-ahead log.
    fn file_bytes(&self) -> u64 {
        let wal = {
            let mut p = self.path.as_os_str().to_owned();
            p.push("-wal");
            PathBuf::from(p)
        };
        [self.path.as_path(), wal.as_path()]
            .iter()
            .map(|p| std::fs::metadata(p).map_or(0, |m| m.len()))
            .sum()
    }

    async fn approval(&self, op: ApprovalOp) -> ApprovalReply {
        let (reply, answer) = oneshot::channel();
        self.send(Command::Approval(op, reply))?;
        answer
            .await
            .map_err(|_| writer_gone())?
            .into_value()
            .ok_or_else(writer_gone)?
    }
}

fn writer_gone() -> StoreError {
    StoreError("the store's writer thread stopped before answering".into())
}

fn poisoned() -> StoreError {
    StoreError("the store's writer handle is poisoned".into())
}

impl Drop for SqliteStore {
    fn drop(&mut self) {
        let _ = self.commands.send(Command::Shutdown(None));
        let handle = match self.writer.get_mut() {
            Ok(h) => h.take(),
            Err(poisoned) => poisoned.into_inner().take(),
        };
        if let Some(handle) = handle {
            // Waits for the batch in progress (at most one commit).
            let _ = handle.join();
        }
    }
}

#[async_trait::async_trait]
impl Store for SqliteStore {
    async fn append(&self, entry: AuditEntry) -> Result<AuditRecord, StoreError> {
        self.append_prepared(entry, false, Vec::new()).await
    }

    async fn append_once(&self, entry: AuditEntry) -> Result<Option<AuditRecord>, StoreError> {
        self.append_once_prepared(entry, Vec::new()).await
    }

    async fn append_with_state(&self, entry: AuditEntry, writes: Vec<StateWrite>) -> Result<AuditRecord, StoreError> {
        self.append_prepared(entry, false, writes).await
    }

    async fn append_once_with_state(
        &self,
        entry: AuditEntry,
        writes: Vec<StateWrite>,
    ) -> Result<Option<AuditRecord>, StoreError> {
        self.append_once_prepared(entry, writes).await
    }

    async fn load_state(
        &self,
        window_start: jiff::Timestamp,
        idle_start: jiff::Timestamp,
    ) -> Result<Vec<StateWrite>, StoreError> {
        let window_key = state::bound_key(window_start);
        let idle_key = state::bound_key(idle_start);
        self.readers
            .run(move |conn| state::load(conn, &window_key, &idle_key))
            .await
    }

    async fn prune_state(&self, window_start: jiff::Timestamp, idle_start: jiff::Timestamp) -> Result<u64, StoreError> {
        self.state_op(StateOp::Prune {
            window_key: state::bound_key(window_start),
            idle_key: state::bound_key(idle_start),
        })
        .await
    }

    async fn reset_limits(&self, rule: Option<String>, bucket: Option<String>) -> Result<u64, StoreError> {
        let bucket = bucket
            .map(|id| {
                BucketKey::from_id(&id).ok_or_else(|| {
                    StoreError(format!(
                        "`{id}` is not a bucket id (a JSON array `[rule, [[key, value], …]]`)"
                    ))
                })
            })
            .transpose()?;
        self.state_op(StateOp::Reset { rule, bucket }).await
    }

    async fn state_size(&self) -> Result<StoredStateSize, StoreError> {
        let mut size = self.readers.run(state::size).await?;
        size.file_bytes = self.file_bytes();
        Ok(size)
    }

    async fn bind_key_fingerprint(&self, fingerprint: &str) -> Result<String, StoreError> {
        let path = self.path.clone();
        let fingerprint = fingerprint.to_owned();
        run_blocking(move || schema::bind_meta(&path, KEY_FINGERPRINT, &fingerprint)).await
    }

    async fn key_fingerprint(&self) -> Result<Option<String>, StoreError> {
        self.readers.run(|conn| schema::read_meta(conn, KEY_FINGERPRINT)).await
    }

    async fn probe_write(&self) -> Result<(), StoreError> {
        // Appends go through the writer thread: a disk that takes a write
        // says nothing while that thread is gone (closed, or died).
        let writer_alive = self
            .writer
            .lock()
            .map_err(|_| poisoned())?
            .as_ref()
            .is_some_and(|h| !h.is_finished());
        if !writer_alive {
            return Err(StoreError("the store's writer thread has stopped".into()));
        }
        let path = self.path.clone();
        let now = chain::format_time(jiff::Timestamp::now());
        run_blocking(move || schema::write_meta(&path, WRITE_PROBE, &now)).await
    }

    async fn save_policy_version(&self, version: &PolicyVersion) -> Result<(), StoreError> {
        // A read-only store (no writer) takes no writes, as for appends.
        let writer_alive = self
            .writer
            .lock()
            .map_err(|_| poisoned())?
            .as_ref()
            .is_some_and(|h| !h.is_finished());
        if !writer_alive {
            return Err(StoreError("the store is closed (its writer thread has stopped)".into()));
        }
        let path = self.path.clone();
        let version = version.clone();
        run_blocking(move || versions::save(&path, &version)).await
    }

    async fn policy_version(&self, version: &str) -> Result<Option<PolicyVersion>, StoreError> {
        let version = version.to_owned();
        self.readers.run(move |conn| versions::load(conn, &version)).await
    }

    async fn policy_versions(&self) -> Result<Vec<PolicyVersionSummary>, StoreError> {
        self.readers.run(|conn| versions::list(conn)).await
    }

    async fn activations(&self) -> Result<Vec<AuditRecord>, StoreError> {
        self.readers.run(|conn| versions::activations(conn)).await
    }

    async fn find_open_approval(
        &self,
        request_hash: &str,
        client: Option<&str>,
        now: &str,
    ) -> Result<Option<ApprovalRecord>, StoreError> {
        let now_key = chain::parse_time(now)?;
        let hash = request_hash.to_owned();
        let client = client.map(str::to_owned);
        self.readers
            .run(move |conn| approvals::find_open(conn, &hash, client.as_deref(), &now_key))
            .await
    }

    async fn list_client_approvals(
        &self,
        client: &str,
        state: Option<ApprovalState>,
        limit: u64,
    ) -> Result<Vec<ApprovalRecord>, StoreError> {
        let limit = limit.min(MAX_APPROVALS);
        let client = client.to_owned();
        let now_key = chain::parse_time(&chain::format_time(jiff::Timestamp::now()))?;
        self.readers
            .run(move |conn| approvals::list_by_client(conn, &client, state, &now_key, limit))
            .await
    }

    async fn query_audit(&self, query: &AuditQuery) -> Result<Vec<AuditRecord>, StoreError> {
        let query = query.clone();
        self.readers.run(move |conn| read::query_audit(conn, &query)).await
    }

    async fn verify_audit(&self) -> Result<Verification, StoreError> {
        self.readers.run(read::verify_audit).await
    }

    async fn audit_len(&self) -> Result<u64, StoreError> {
        self.readers.run(|conn| read::audit_len(conn)).await
    }

    async fn create_approval(&self, approval: ApprovalRecord) -> Result<(), StoreError> {
        let created_key = chain::parse_time(&approval.created_at)?;
        let expires_key = chain::parse_time(&approval.expires_at)?;
        let op = ApprovalOp::Create {
            record: Box::new(approval),
            created_key,
            expires_key,
        };
        match self.approval(op).await? {
            Ok(_) => Ok(()),
            Err(e) => Err(StoreError(e.to_string())),
        }
    }

    async fn get_approval(&self, id: &str) -> Result<Option<ApprovalRecord>, StoreError> {
        let id = id.to_owned();
        self.readers.run(move |conn| approvals::load(conn, &id)).await
    }

    async fn list_approvals(
        &self,
        state: Option<ApprovalState>,
        limit: u64,
    ) -> Result<Vec<ApprovalRecord>, StoreError> {
        let limit = limit.min(MAX_APPROVALS);
        self.readers.run(move |conn| approvals::list(conn, state, limit)).await
    }

    async fn list_open_approvals(&self, now: &str, limit: u64) -> Result<Vec<ApprovalRecord>, StoreError> {
        let limit = limit.min(MAX_APPROVALS);
        let now_key = chain::parse_time(now)?;
        self.readers
            .run(move |conn| approvals::list_open(conn, &now_key, limit))
            .await
    }

    async fn decide_approval(
        &self,
        id: &str,
        grant: bool,
        approver: &str,
        comment: Option<&str>,
        now: &str,
    ) -> Result<Result<ApprovalRecord, ApprovalError>, StoreError> {
        let op = ApprovalOp::Decide {
            id: id.to_owned(),
            grant,
            approver: approver.to_owned(),
            comment: comment.map(str::to_owned),
            now: now.to_owned(),
            now_key: chain::parse_time(now)?,
        };
        self.approval(op).await
    }

    async fn use_approval(
        &self,
        id: &str,
        request_hash: &str,
        now: &str,
    ) -> Result<Result<ApprovalRecord, ApprovalError>, StoreError> {
        let op = ApprovalOp::Use {
            id: id.to_owned(),
            request_hash: request_hash.to_owned(),
            now_key: chain::parse_time(now)?,
        };
        self.approval(op).await
    }
}
