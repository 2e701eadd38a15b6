//! Opening connections and the versioned schema.
//!
//! The schema version lives in `PRAGMA user_version` (a field of the file
//! header, changed inside the migration's transaction, so a migration is
//! all or nothing) and the file is tagged with `PRAGMA application_id` so
//! that an unrelated SQLite file is refused rather than altered.

use std::path::Path;
use std::time::Duration;

use rusqlite::config::DbConfig;
use rusqlite::{Connection, OpenFlags, TransactionBehavior};

use super::SqliteOptions;

use crate::StoreError;

/// The schema this build writes and reads.
pub(crate) const SCHEMA_VERSION: i64 = 8;

/// `PRAGMA application_id` of a Rein store: "REIN" in ASCII.
const APPLICATION_ID: i64 = 0x5245_494E;

/// How long a connection waits for another one's lock (another process
/// writing the same file, a checkpoint) before giving up with an error.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Migration `i` takes the schema from version `i` to `i + 1`.
const MIGRATIONS: &[Migration] = &[
    Migration::Sql(V1),
    Migration::Sql(V2),
    Migration::Sql(V3),
    Migration::Sql(V4),
    Migration::Sql(V5),
    Migration::AddColumns(V6),
    Migration::Sql(V7),
    Migration::Sql(V8),
];

/// One step of [`MIGRATIONS`].
enum Migration {
    /// Statements run as they are.
    Sql(&'static str),
    /// Columns `(table, column, type)` added unless the table has them
    /// already (SQLite has no `ADD COLUMN IF NOT EXISTS`): a file whose
    /// version was set back by hand keeps what it holds, as `V5`'s
    /// `IF NOT EXISTS` does for tables.
    AddColumns(&'static [(&'static str, &'static str, &'static str)]),
}

impl Migration {
    fn run(&self, conn: &Connection) -> rusqlite::Result<()> {
        match self {
            Migration::Sql(sql) => conn.execute_batch(sql),
            Migration::AddColumns(columns) => {
                for (table, column, kind) in *columns {
                    let present: i64 = conn.query_row(
                        "SELECT count(*) FROM pragma_table_info(?1) WHERE name = ?2",
                        [table, column],
                        |r| r.get(0),
                    )?;
                    if present == 0 {
                        conn.execute_batch(&format!("ALTER TABLE {table} ADD COLUMN {column} {kind}"))?;
                    }
                }
                Ok(())
            }
        }
    }
}

/// Version 1. `audit.body` is the canonical text of `chain.rs` and, with
/// `prev_hash` and `hash`, the only part the chain covers; the other audit
/// columns are copies taken from it for the query filters.
const V1: &str = r#"
CREATE TABLE audit (
    seq         INTEGER PRIMARY KEY,   -- the rowid: rows are stored in chain order
    time        TEXT NOT NULL,         -- fixed-width UTC (chain::format_time), or as given if unparseable
    decision_id TEXT NOT NULL,
    phase       TEXT NOT NULL,
    action      TEXT NOT NULL,
    actor_id    TEXT,                  -- the actor's `id` field, if it is a string
    session     TEXT,
    effect      TEXT NOT NULL,
    rules       TEXT NOT NULL,         -- JSON array of rule ids
    body        TEXT NOT NULL,
    prev_hash   TEXT NOT NULL,
    hash        TEXT NOT NULL
);
CREATE INDEX audit_time     ON audit (time);
CREATE INDEX audit_decision ON audit (decision_id);
CREATE INDEX audit_action   ON audit (action);
CREATE INDEX audit_effect   ON audit (effect);
-- Partial: most records of a deployment may have no session; an equality
-- filter implies IS NOT NULL, so SQLite still uses these.
CREATE INDEX audit_actor    ON audit (actor_id) WHERE actor_id IS NOT NULL;
CREATE INDEX audit_session  ON audit (session) WHERE session IS NOT NULL;

-- The log is append-only. These do not stop someone determined (they can
-- drop them; the chain is what detects that), they make a mistaken manual
-- UPDATE or DELETE fail loudly.
CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;

-- The newest record, written in the same transaction as the records, so
-- that removing the newest records is detected.
CREATE TABLE chain_head (
    id   INTEGER PRIMARY KEY CHECK (id = 1),
    seq  INTEGER NOT NULL,
    hash TEXT NOT NULL
);
INSERT INTO chain_head (id, seq, hash) VALUES (1, 0, '0000000000000000000000000000000000000000000000000000000000000000'); -- chain::GENESIS

CREATE TABLE approvals (
    id           TEXT PRIMARY KEY,
    request_hash TEXT NOT NULL,
    decision_id  TEXT NOT NULL,
    rules        TEXT NOT NULL,        -- JSON array
    role         TEXT NOT NULL,
    action       TEXT NOT NULL,
    requested_by TEXT,
    summary      TEXT NOT NULL,        -- JSON
    created_at   TEXT NOT NULL,        -- as given
    expires_at   TEXT NOT NULL,        -- as given
    created_key  TEXT NOT NULL,        -- created_at in fixed-width UTC, for ordering
    expires_key  TEXT NOT NULL,        -- expires_at in fixed-width UTC, compared as text
    state        TEXT NOT NULL CHECK (state IN ('pending', 'granted', 'denied', 'used')),
    decided_by   TEXT,
    decided_at   TEXT,
    comment      TEXT
);
CREATE INDEX approvals_created       ON approvals (created_key);
CREATE INDEX approvals_state_created ON approvals (state, created_key);
"#;

/// Version 2: only two audit indexes are kept, on `time` and `decision_id`.
/// Both grow at their right edge (times and v7 decision ids increase), so an
/// append touches one leaf page of each. The four others (action, effect,
/// actor, session) each cost an insert into the middle of a B-tree and a
/// page written to the WAL for every commit, on the serial writer thread;
/// filters on those columns now scan the table in `seq` order (they stop
/// at the query's limit), and a time range or a decision id narrows them
/// through its index.
const V2: &str = r#"
DROP INDEX audit_action;
DROP INDEX audit_effect;
DROP INDEX audit_actor;
DROP INDEX audit_session;
"#;

/// Version 3: an approval keeps every role it needs (`roles`, a JSON array;
/// NULL in rows written before, read as `[role]`) and the authenticated
/// client that sent the request (`requested_via`), who may not approve it.
const V3: &str = r#"
ALTER TABLE approvals ADD COLUMN roles TEXT;
ALTER TABLE approvals ADD COLUMN requested_via TEXT;
"#;

/// Version 4:
/// - `store_meta`: facts about the store itself; `audit_key_fingerprint`
///   is a keyed fingerprint of the audit key the store was first used with,
///   so that a different key is refused at start instead of silently
///   hashing sensitive values differently;
/// - an approval keeps how long a grant holds (`hold_seconds`, counted
///   from the grant) and the request's sensitive values encrypted for its
///   approvers (`sealed`, cleared once decided or expired);
/// - approvals are found by request (`request_hash`): an identical request
///   reuses the pending approval instead of opening another;
/// - `appended_once`: the decisions whose outcome was reported (an outcome
///   is reported once), filled from the outcomes already in the log.
const V4: &str = r#"
CREATE TABLE appended_once (
    decision_id TEXT NOT NULL,
    phase       TEXT NOT NULL,
    PRIMARY KEY (decision_id, phase)
) WITHOUT ROWID;
INSERT OR IGNORE INTO appended_once (decision_id, phase)
    SELECT decision_id, phase FROM audit WHERE phase = 'after';
CREATE TABLE store_meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
ALTER TABLE approvals ADD COLUMN hold_seconds INTEGER;
ALTER TABLE approvals ADD COLUMN sealed TEXT;
CREATE INDEX approvals_request ON approvals (request_hash, created_key);
CREATE INDEX approvals_sealed  ON approvals (expires_key) WHERE sealed IS NOT NULL;
"#;

/// Version 5: the state of stateful rules (limits, sessions), written by
/// the writer in the transaction of the audit record of the decision that
/// made it (see `state`). Times are fixed-width UTC keys as in `audit.time`
/// (rounded up to the microsecond, see `state::time_key`), compared as text.
/// - `limit_uses`: what allowed calls took from a limit bucket
///   (`bucket` is `BucketKey::id`, `amount` exact decimal text); loaded
///   and pruned by time;
/// - `session_calls`: the recorded calls of each session (input and, once
///   reported, output as JSON; `output` is set by the outcome's decision,
///   found by `decision_id`); loaded and pruned by time (an idle session's
///   calls are all older than its last write);
/// - `session_labels`: every label attached to a session, with the
///   decision that attached it, loaded by session;
/// - `sessions`: when each session was last written to, which decides
///   what is loaded and when a session is dropped as idle.
///
/// Indexes are only those the writer's statements and the load need: every
/// index is one more B-tree page written to the WAL per commit on the
/// serial writer (see V2). Indexes grow mostly at their right edge (times,
/// v7 decision ids), except labels by session. A reset of limits (rare, by
/// an operator) and a scan of `sessions` (one row per live session) go
/// without.
///
/// `IF NOT EXISTS`: a file whose version was set back by hand (as tests do
/// to make an older file from a current one, dropping what earlier
/// versions added) may still hold these tables; the migration
/// keeps them.
const V5: &str = r#"
CREATE TABLE IF NOT EXISTS limit_uses (
    decision_id TEXT NOT NULL,
    bucket      TEXT NOT NULL,
    time        TEXT NOT NULL,
    amount      TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS limit_uses_time ON limit_uses (time);
CREATE TABLE IF NOT EXISTS session_calls (
    decision_id TEXT NOT NULL,
    session     TEXT NOT NULL,
    action      TEXT NOT NULL,
    time        TEXT NOT NULL,
    effect      TEXT NOT NULL,
    input       TEXT NOT NULL,
    output      TEXT
);
CREATE INDEX IF NOT EXISTS session_calls_time     ON session_calls (time);
CREATE INDEX IF NOT EXISTS session_calls_decision ON session_calls (decision_id);
CREATE TABLE IF NOT EXISTS session_labels (
    session     TEXT NOT NULL,
    label       TEXT NOT NULL,
    decision_id TEXT NOT NULL,
    time        TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS session_labels_session ON session_labels (session, time);
CREATE TABLE IF NOT EXISTS sessions (
    id        TEXT PRIMARY KEY,
    last_seen TEXT NOT NULL
) WITHOUT ROWID;
"#;

/// Version 6: an approval keeps the id of every link of the requester's
/// delegation chain (`requested_chain`, a JSON array of strings; NULL in
/// rows written before, read as no chain), none of whom may approve it.
const V6: &[(&str, &str, &str)] = &[("approvals", "requested_chain", "TEXT")];

/// Version 7: policy versions.
/// - `policy_versions`: the sources of every policy version a server
///   activated (`sources`, a JSON array of `{name, text, derived}`), kept
///   under its version hash, which binds them: every read checks that the
///   texts still hash to it (see `versions`);
/// - `audit_activations`: a partial index of the activation records
///   (phase `activate`). An append of any other record only evaluates its
///   condition and writes no page of it (see V2 on indexes and the
///   writer), and the history is read without scanning the log.
///
/// `IF NOT EXISTS`, as V5: a file whose version was set back by hand keeps
/// them.
const V7: &str = r#"
CREATE TABLE IF NOT EXISTS policy_versions (
    version  TEXT PRIMARY KEY,
    label    TEXT,
    sources  TEXT NOT NULL,
    saved_at TEXT NOT NULL             -- fixed-width UTC, when first kept
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS audit_activations ON audit (seq) WHERE phase = 'activate';
"#;

/// Version 8: the audit log is read newest first, by any filter, in
/// pages of a few dozen records (the console), on logs of millions of
/// records: each filter needs an index that yields its records in `seq`
/// order, so that a page reads its rows and stops.
/// - `audit_actor`, `audit_action`, `audit_effect`, `audit_session`: an
///   index on the column is ordered by (value, rowid), and the rowid is
///   `seq`: an equality filter reads one range, in `seq` order, either way.
///   V2 dropped the first versions of these to spare the writer; they are
///   back because without them a filter on a rare value reads the whole
///   log. Each costs the writer one B-tree insert per record, near the end
///   of its value's range (its newest entries), so the pages it dirties
///   are few and hot.
/// - `audit_rules` (the rule index, see `rule_index`): `(rule, seq)` for
///   every distinct rule id of each record, filled by the trigger
///   `audit_rules_add` from each new record's `rules` column and here from
///   the records already in the log. Append-only as the log.
/// - `audit_trace`: the trace id of the records that carry a caller's
///   `traceparent`, read from the body (the canonical encoding ends with
///   it, see `read::query_audit`); partial, so a record without one costs
///   the check of its last characters only.
///
/// `IF NOT EXISTS`, as V5: a file whose version was set back by hand keeps
/// them (the fill is `OR IGNORE`).
const V8: &str = r#"
CREATE INDEX IF NOT EXISTS audit_actor   ON audit (actor_id) WHERE actor_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS audit_session ON audit (session) WHERE session IS NOT NULL;
CREATE INDEX IF NOT EXISTS audit_action  ON audit (action);
CREATE INDEX IF NOT EXISTS audit_effect  ON audit (effect);
CREATE TABLE IF NOT EXISTS audit_rules (
    rule TEXT NOT NULL,
    seq  INTEGER NOT NULL,
    PRIMARY KEY (rule, seq)
) WITHOUT ROWID;
INSERT OR IGNORE INTO audit_rules (rule, seq)
    SELECT j.value, audit.seq FROM audit, json_each(audit.rules) AS j WHERE j.type = 'text';
CREATE TRIGGER IF NOT EXISTS audit_rules_add AFTER INSERT ON audit
BEGIN
    INSERT OR IGNORE INTO audit_rules (rule, seq)
        SELECT j.value, NEW.seq FROM json_each(NEW.rules) AS j WHERE j.type = 'text';
END;
CREATE TRIGGER IF NOT EXISTS audit_rules_no_update BEFORE UPDATE ON audit_rules
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_rules_no_delete BEFORE DELETE ON audit_rules
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE INDEX IF NOT EXISTS audit_trace ON audit (substr(body, -54, 32))
    WHERE substr(body, -67, 13) = ',"trace":"00-';
"#;

fn open_error(path: &Path, e: impl std::fmt::Display) -> StoreError {
    StoreError(format!("cannot open the store at {}: {e}", path.display()))
}

/// Opens (creating if needed) the writer's connection: WAL mode, every
/// commit durable, schema migrated to [`SCHEMA_VERSION`].
pub(crate) fn open_writer(path: &Path, options: SqliteOptions) -> Result<Connection, StoreError> {
    if path.is_dir() {
        return Err(open_error(path, "it is a directory; give the database file"));
    }
    let mut conn = Connection::open(path).map_err(|e| open_error(path, e))?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(|e| open_error(path, e))?;
    set_close_checkpoint(&conn, path, options)?;
    // WAL: readers never block the writer nor the writer them, and a
    // commit is one sequential write to the log.
    let mode: String = conn
        .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
        .map_err(|e| open_error(path, e))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(open_error(
            path,
            format!("cannot use write-ahead logging (journal mode is `{mode}`)"),
        ));
    }
    // FULL: in WAL mode, NORMAL may lose the last commits on power loss;
    // `append` promises durability, so every commit syncs the log.
    conn.pragma_update(None, "synchronous", "FULL")
        .map_err(|e| open_error(path, e))?;
    // Most checkpointing happens on another thread (`checkpoint`); the
    // writer's own is a bound on the WAL's size.
    conn.pragma_update(None, "wal_autocheckpoint", options.writer_checkpoint_pages)
        .map_err(|e| open_error(path, e))?;
    migrate(&mut conn).map_err(|e| StoreError(format!("{} ({})", e.0, path.display())))?;
    // Sealed secrets of approvals that expired while nothing changed an
    // approval (which clears them too) go at the next start.
    let now = crate::chain::format_time(jiff::Timestamp::now());
    conn.execute(
        "UPDATE approvals SET sealed = NULL WHERE sealed IS NOT NULL AND expires_key <= ?1",
        [now],
    )
    .map_err(|e| open_error(path, e))?;
    // The writer keeps every statement it runs prepared (see `writer`).
    conn.set_prepared_statement_cache_capacity(32);
    Ok(conn)
}

/// Opens the background checkpointer's connection (see `checkpoint`). The
/// file must already exist. Checkpoints sync the WAL before copying and the
/// database after, as the writer's would.
pub(crate) fn open_checkpointer(path: &Path) -> Result<Connection, StoreError> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX | OpenFlags::SQLITE_OPEN_URI;
    let conn = Connection::open_with_flags(path, flags).map_err(|e| open_error(path, e))?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(|e| open_error(path, e))?;
    conn.pragma_update(None, "synchronous", "FULL")
        .map_err(|e| open_error(path, e))?;
    // This connection never writes: no automatic checkpoint of its own.
    conn.pragma_update(None, "wal_autocheckpoint", 0)
        .map_err(|e| open_error(path, e))?;
    Ok(conn)
}

/// Opens a connection for reads only. The file must already exist (the
/// writer created it).
pub(crate) fn open_reader(path: &Path, options: SqliteOptions) -> Result<Connection, StoreError> {
    // Read-write flags without CREATE, plus `query_only`: a read-only open
    // would need the WAL index file to exist already, which it may not
    // once the writer has closed.
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX | OpenFlags::SQLITE_OPEN_URI;
    let conn = Connection::open_with_flags(path, flags).map_err(|e| open_error(path, e))?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(|e| open_error(path, e))?;
    conn.pragma_update(None, "query_only", true)
        .map_err(|e| open_error(path, e))?;
    // Whichever connection closes last would checkpoint: readers too.
    set_close_checkpoint(&conn, path, options)?;
    Ok(conn)
}

fn set_close_checkpoint(conn: &Connection, path: &Path, options: SqliteOptions) -> Result<(), StoreError> {
    if !options.checkpoint_on_close {
        conn.set_db_config(DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, true)
            .map_err(|e| open_error(path, e))?;
    }
    Ok(())
}

/// Checks, on a read connection, that the file is a Rein store whose schema
/// this build reads, without changing anything: a read-only open neither
/// creates nor migrates (an auditor's copy may be write-protected, and an
/// older server may still use the file).
pub(crate) fn check_readable(conn: &Connection, path: &Path) -> Result<(), StoreError> {
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(|e| open_error(path, e))?;
    let app_id: i64 = conn
        .query_row("PRAGMA application_id", [], |r| r.get(0))
        .map_err(|e| open_error(path, e))?;
    if version == 0 {
        return Err(open_error(
            path,
            "it is not a Rein store (it has no Rein schema; is it empty?)",
        ));
    }
    if app_id != APPLICATION_ID {
        return Err(open_error(
            path,
            format!("it is not a Rein store (application_id is {app_id:#x})"),
        ));
    }
    if version != SCHEMA_VERSION {
        let advice = if version < SCHEMA_VERSION {
            "a command that writes (`rein serve`, `rein approvals grant`) upgrades it; this one only reads"
        } else {
            "use a newer Rein"
        };
        return Err(open_error(
            path,
            format!("its schema version is {version} and this build reads version {SCHEMA_VERSION}; {advice}"),
        ));
    }
    Ok(())
}

/// The value of `key` in `store_meta`, if set.
pub(crate) fn read_meta(conn: &Connection, key: &str) -> Result<Option<String>, StoreError> {
    use rusqlite::OptionalExtension;
    Ok(conn
        .query_row("SELECT value FROM store_meta WHERE key = ?1", [key], |r| r.get(0))
        .optional()?)
}

/// Sets `key` in `store_meta` to `value` unless it is set already, on a
/// connection of its own (it runs once, at start), and returns the value
/// kept: the first one ever set.
pub(crate) fn bind_meta(path: &Path, key: &str, value: &str) -> Result<String, StoreError> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX | OpenFlags::SQLITE_OPEN_URI;
    let mut conn = Connection::open_with_flags(path, flags).map_err(|e| open_error(path, e))?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(|e| open_error(path, e))?;
    conn.pragma_update(None, "synchronous", "FULL")
        .map_err(|e| open_error(path, e))?;
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, true)
        .map_err(|e| open_error(path, e))?;
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    tx.execute(
        "INSERT INTO store_meta (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO NOTHING",
        [key, value],
    )?;
    let kept = read_meta(&tx, key)?.unwrap_or_else(|| value.to_owned());
    tx.commit()?;
    Ok(kept)
}

/// A connection of its own for a rare durable write outside the writer
/// thread (a kept policy version): every commit synced, no checkpoint at
/// close (the writer's connection owns the WAL).
pub(crate) fn open_side_writer(path: &Path) -> Result<Connection, StoreError> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX | OpenFlags::SQLITE_OPEN_URI;
    let conn = Connection::open_with_flags(path, flags).map_err(|e| open_error(path, e))?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(|e| open_error(path, e))?;
    conn.pragma_update(None, "synchronous", "FULL")
        .map_err(|e| open_error(path, e))?;
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, true)
        .map_err(|e| open_error(path, e))?;
    Ok(conn)
}

/// Sets `key` to `value` in `store_meta`, durably (as [`bind_meta`]
/// writes): fails when the file takes no writes.
pub(crate) fn write_meta(path: &Path, key: &str, value: &str) -> Result<(), StoreError> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX | OpenFlags::SQLITE_OPEN_URI;
    let conn = Connection::open_with_flags(path, flags).map_err(|e| open_error(path, e))?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(|e| open_error(path, e))?;
    conn.pragma_update(None, "synchronous", "FULL")
        .map_err(|e| open_error(path, e))?;
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, true)
        .map_err(|e| open_error(path, e))?;
    conn.execute(
        "INSERT INTO store_meta (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        [key, value],
    )?;
    Ok(())
}

/// Brings the schema to [`SCHEMA_VERSION`], refusing files that are newer
/// or not Rein stores. Runs under the write lock, so two processes opening
/// a new file at once do not both create it.
fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let version: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    let app_id: i64 = tx.query_row("PRAGMA application_id", [], |r| r.get(0))?;
    if version > SCHEMA_VERSION {
        return Err(StoreError(format!(
            "the store's schema version is {version}, newer than this build of Rein supports \
             ({SCHEMA_VERSION}); use a newer Rein"
        )));
    }
    if version == 0 {
        let tables: i64 = tx.query_row(
            "SELECT count(*) FROM sqlite_master WHERE name NOT LIKE 'sqlite_%'",
            [],
            |r| r.get(0),
        )?;
        if tables > 0 {
            return Err(StoreError(
                "this SQLite file is not a Rein store (it has other tables)".into(),
            ));
        }
    } else if app_id != APPLICATION_ID {
        return Err(StoreError(format!(
            "this SQLite file is not a Rein store (application_id is {app_id:#x})"
        )));
    }
    if version == SCHEMA_VERSION {
        return Ok(()); // nothing to write; the transaction ends without changes
    }
    for (from, step) in MIGRATIONS
        .iter()
        .enumerate()
        .skip(usize::try_from(version).unwrap_or(usize::MAX))
    {
        step.run(&tx)
            .map_err(|e| StoreError(format!("migration of the schema from version {from} failed: {e}")))?;
    }
    tx.pragma_update(None, "application_id", APPLICATION_ID)?;
    tx.pragma_update(None, "user_version", SCHEMA_VERSION)?;
    tx.commit()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn v1_head_starts_at_genesis() {
        assert!(V1.contains(&format!("VALUES (1, 0, '{}')", crate::chain::GENESIS)));
    }

    #[test]
    fn a_version_1_store_is_migrated() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(V1).unwrap();
        conn.pragma_update(None, "application_id", APPLICATION_ID).unwrap();
        conn.pragma_update(None, "user_version", 1).unwrap();
        migrate(&mut conn).unwrap();
        let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap();
        assert_eq!(version, SCHEMA_VERSION);
        let mut stmt = conn
            .prepare("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'audit' ORDER BY name")
            .unwrap();
        let indexes: Vec<String> = stmt
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        // Version 7's partial index holds only activation records; version
        // 8 brings back the filter indexes version 2 dropped.
        assert_eq!(
            indexes,
            [
                "audit_action",
                "audit_activations",
                "audit_actor",
                "audit_decision",
                "audit_effect",
                "audit_session",
                "audit_time",
                "audit_trace"
            ]
        );
        let mut stmt = conn
            .prepare("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'approvals' ORDER BY name")
            .unwrap();
        let indexes: Vec<String> = stmt
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert!(indexes.contains(&"approvals_request".to_string()), "{indexes:?}");
        // Version 3's and 4's columns and tables.
        conn.prepare("SELECT roles, requested_via, hold_seconds, sealed FROM approvals")
            .unwrap();
        conn.prepare("SELECT key, value FROM store_meta").unwrap();
        conn.prepare("SELECT decision_id, phase FROM appended_once").unwrap();
        // Version 5's state tables.
        conn.prepare("SELECT decision_id, bucket, time, amount FROM limit_uses")
            .unwrap();
        conn.prepare("SELECT decision_id, session, action, time, effect, input, output FROM session_calls")
            .unwrap();
        conn.prepare("SELECT session, label, decision_id, time FROM session_labels")
            .unwrap();
        conn.prepare("SELECT id, last_seen FROM sessions").unwrap();
        // Version 6's column.
        conn.prepare("SELECT requested_chain FROM approvals").unwrap();
        // Version 7's table.
        conn.prepare("SELECT version, label, sources, saved_at FROM policy_versions")
            .unwrap();
    }

    /// A version 7 store gains the filter indexes and the rule index,
    /// filled from the records already there (their bytes unchanged); new
    /// records are indexed by the trigger; the rule filter and the others
    /// read an index, not the whole log.
    #[test]
    fn a_version_7_store_is_migrated() {
        let mut conn = Connection::open_in_memory().unwrap();
        for step in &MIGRATIONS[..7] {
            step.run(&conn).unwrap();
        }
        conn.pragma_update(None, "application_id", APPLICATION_ID).unwrap();
        conn.pragma_update(None, "user_version", 7).unwrap();
        let insert = |conn: &Connection, seq: i64, rules: &str| {
            conn.execute(
                "INSERT INTO audit (seq, time, decision_id, phase, action, effect, rules, body, prev_hash, hash) \
                 VALUES (?1, 't', 'd', 'before', 'a', 'allow', ?2, 'body', 'p', 'h')",
                rusqlite::params![seq, rules],
            )
            .unwrap();
        };
        insert(&conn, 1, r#"["r1","r2"]"#);
        insert(&conn, 2, "[]");
        insert(&conn, 3, r#"["r2","r2"]"#);
        let bodies = |conn: &Connection| -> Vec<(i64, String, String, String)> {
            conn.prepare("SELECT seq, body, prev_hash, hash FROM audit ORDER BY seq")
                .unwrap()
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap()
        };
        let before = bodies(&conn);
        migrate(&mut conn).unwrap();
        let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap();
        assert_eq!(version, SCHEMA_VERSION);
        assert_eq!(bodies(&conn), before);
        let index = |conn: &Connection| -> Vec<(String, i64)> {
            conn.prepare("SELECT rule, seq FROM audit_rules ORDER BY rule, seq")
                .unwrap()
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap()
        };
        let pairs = |p: &[(&str, i64)]| p.iter().map(|(r, s)| (r.to_string(), *s)).collect::<Vec<_>>();
        assert_eq!(index(&conn), pairs(&[("r1", 1), ("r2", 1), ("r2", 3)]));
        insert(&conn, 4, r#"["r3","r1"]"#);
        assert_eq!(
            index(&conn),
            pairs(&[("r1", 1), ("r1", 4), ("r2", 1), ("r2", 3), ("r3", 4)])
        );
        assert!(conn.execute("DELETE FROM audit_rules WHERE seq = 1", []).is_err());
        let plan = |sql: &str| -> String {
            conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
                .unwrap()
                .query_map([], |r| r.get::<_, String>(3))
                .unwrap()
                .collect::<Result<Vec<_>, _>>()
                .unwrap()
                .join("; ")
        };
        for (column, index) in [
            ("actor_id", "audit_actor"),
            ("action", "audit_action"),
            ("effect", "audit_effect"),
            ("session", "audit_session"),
        ] {
            let p = plan(&format!(
                "SELECT seq FROM audit WHERE {column} = 'x' AND seq < 10 ORDER BY seq DESC LIMIT 50"
            ));
            assert!(p.contains(index) && !p.contains("TEMP B-TREE"), "{column}: {p}");
        }
        // Set back by hand (everything kept): migrated again.
        conn.pragma_update(None, "user_version", 7).unwrap();
        migrate(&mut conn).unwrap();
        assert_eq!(index(&conn).len(), 5);
    }

    /// A version 6 store gains the kept policy versions and the partial
    /// index of activation records, which the history's query uses; its
    /// records stay as they were.
    #[test]
    fn a_version_6_store_is_migrated() {
        let mut conn = Connection::open_in_memory().unwrap();
        for step in &MIGRATIONS[..6] {
            step.run(&conn).unwrap();
        }
        conn.pragma_update(None, "application_id", APPLICATION_ID).unwrap();
        conn.pragma_update(None, "user_version", 6).unwrap();
        conn.execute(
            "INSERT INTO audit (seq, time, decision_id, phase, action, effect, rules, body, prev_hash, hash) \
             VALUES (1, 't', 'd', 'before', 'a', 'allow', '[]', '{}', 'p', 'h')",
            [],
        )
        .unwrap();
        migrate(&mut conn).unwrap();
        let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap();
        assert_eq!(version, SCHEMA_VERSION);
        let n: i64 = conn.query_row("SELECT count(*) FROM audit", [], |r| r.get(0)).unwrap();
        assert_eq!(n, 1);
        conn.prepare("SELECT version, label, sources, saved_at FROM policy_versions")
            .unwrap();
        let plan: Vec<String> = conn
            .prepare("EXPLAIN QUERY PLAN SELECT seq, body FROM audit WHERE phase = 'activate' ORDER BY seq")
            .unwrap()
            .query_map([], |r| r.get(3))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert!(plan.iter().any(|p| p.contains("audit_activations")), "{plan:?}");
        // Set back by hand (the table and index kept): migrated again.
        conn.pragma_update(None, "user_version", 6).unwrap();
        migrate(&mut conn).unwrap();
    }

    /// A version 5 store's approvals gain `requested_chain`, NULL in the
    /// rows already there; a file that has the column already (its
    /// version set back by hand) is migrated without adding it twice.
    #[test]
    fn a_version_5_store_is_migrated() {
        let mut conn = Connection::open_in_memory().unwrap();
        for step in &MIGRATIONS[..5] {
            step.run(&conn).unwrap();
        }
        conn.pragma_update(None, "application_id", APPLICATION_ID).unwrap();
        conn.pragma_update(None, "user_version", 5).unwrap();
        conn.execute(
            "INSERT INTO approvals (id, request_hash, decision_id, rules, role, action, summary, created_at, \
             expires_at, created_key, expires_key, state) \
             VALUES ('a', 'h', 'd', '[]', 'r', 'x', '{}', 't', 't', 't', 't', 'pending')",
            [],
        )
        .unwrap();
        migrate(&mut conn).unwrap();
        let chain: Option<String> = conn
            .query_row("SELECT requested_chain FROM approvals WHERE id = 'a'", [], |r| r.get(0))
            .unwrap();
        assert_eq!(chain, None);
        conn.pragma_update(None, "user_version", 5).unwrap();
        migrate(&mut conn).unwrap();
        let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap();
        assert_eq!(version, SCHEMA_VERSION);
    }

    /// A version 4 store keeps its records and approvals and gains the
    /// state tables, with the indexes the state's queries use.
    #[test]
    fn a_version_4_store_is_migrated() {
        let mut conn = Connection::open_in_memory().unwrap();
        for step in &MIGRATIONS[..4] {
            step.run(&conn).unwrap();
        }
        conn.pragma_update(None, "application_id", APPLICATION_ID).unwrap();
        conn.pragma_update(None, "user_version", 4).unwrap();
        conn.execute(
            "INSERT INTO store_meta (key, value) VALUES ('audit_key_fingerprint', 'fp')",
            [],
        )
        .unwrap();
        migrate(&mut conn).unwrap();
        let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap();
        assert_eq!(version, SCHEMA_VERSION);
        assert_eq!(
            read_meta(&conn, "audit_key_fingerprint").unwrap().as_deref(),
            Some("fp")
        );
        let mut stmt = conn
            .prepare(
                "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name IN \
                 ('limit_uses', 'session_calls', 'session_labels', 'sessions') AND name NOT LIKE 'sqlite_%' \
                 ORDER BY name",
            )
            .unwrap();
        let indexes: Vec<String> = stmt
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(
            indexes,
            [
                "limit_uses_time",
                "session_calls_decision",
                "session_calls_time",
                "session_labels_session",
            ]
        );
        // The queries of the state use those indexes, not a scan.
        // (As `state` writes them.)
        for (sql, index) in [
            (
                "SELECT * FROM limit_uses WHERE time >= 't' ORDER BY time, rowid",
                "limit_uses_time",
            ),
            ("DELETE FROM limit_uses WHERE time < 't'", "limit_uses_time"),
            (
                "UPDATE session_calls SET output = 'o' WHERE decision_id = 'd' AND session = 's'",
                "session_calls_decision",
            ),
            (
                "SELECT c.decision_id FROM session_calls c JOIN sessions s ON s.id = c.session \
                 WHERE s.last_seen >= 'i' AND c.time >= 'w' ORDER BY c.time, c.rowid",
                "session_calls_time",
            ),
            (
                "DELETE FROM session_calls WHERE time < 'i' \
                 AND session IN (SELECT id FROM sessions WHERE last_seen < 'i')",
                "session_calls_time",
            ),
            (
                "DELETE FROM session_labels WHERE session IN (SELECT id FROM sessions WHERE last_seen < 'i')",
                "session_labels_session",
            ),
        ] {
            let plan: Vec<String> = conn
                .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
                .unwrap()
                .query_map([], |r| r.get(3))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
            assert!(plan.iter().any(|p| p.contains(index)), "{sql}: {plan:?}");
        }
    }
}
