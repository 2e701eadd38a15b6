//! Reads: a small pool of read connections and the audit queries.
//!
//! In WAL mode readers see the last commit and never wait for the writer,
//! so reads run on their own connections, on tokio's blocking pool.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use rusqlite::types::{Value as SqlValue, ValueRef};
use rusqlite::Connection;

use super::schema;
use crate::chain::{self, Verifier};
use crate::{AuditEntry, AuditQuery, AuditRecord, StoreError, Verification};

/// Idle read connections kept open; more are opened on demand when reads
/// overlap, and closed afterwards.
const MAX_IDLE: usize = 4;

/// Default and maximum of [`AuditQuery::limit`].
pub(crate) const DEFAULT_LIMIT: u64 = 1_000;
/// The cap on [`AuditQuery::limit`].
pub(crate) const MAX_LIMIT: u64 = 10_000;

/// Read connections to one store file.
pub(crate) struct Readers {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
}

impl Readers {
    pub(crate) fn new(path: PathBuf) -> Self {
        Readers {
            path,
            idle: Mutex::new(Vec::new()),
        }
    }

    /// Runs `f` on a read connection, on tokio's blocking pool (or right
    /// here, blocking, when polled outside a tokio runtime, where
    /// `spawn_blocking` would panic).
    pub(crate) async fn run<T, F>(self: &Arc<Self>, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let this = Arc::clone(self);
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => rt
                .spawn_blocking(move || this.with(f))
                .await
                .map_err(|e| StoreError(format!("a read of the store failed: {e}")))?,
            Err(_) => this.with(f),
        }
    }

    fn with<T>(&self, f: impl FnOnce(&mut Connection) -> Result<T, StoreError>) -> Result<T, StoreError> {
        let idle = self.idle.lock().ok().and_then(|mut idle| idle.pop());
        let mut conn = match idle {
            Some(conn) => conn,
            None => schema::open_reader(&self.path)?,
        };
        let result = f(&mut conn);
        // A connection left inside a transaction by an error is not reused.
        if conn.is_autocommit() {
            if let Ok(mut idle) = self.idle.lock() {
                if idle.len() < MAX_IDLE {
                    idle.push(conn);
                }
            }
        }
        result
    }
}

/// Records matching `q`, in sequence order.
pub(crate) fn query_audit(conn: &Connection, q: &AuditQuery) -> Result<Vec<AuditRecord>, StoreError> {
    let mut sql = String::from("SELECT seq, body, prev_hash, hash FROM audit WHERE 1 = 1");
    let mut args: Vec<SqlValue> = Vec::new();
    let mut filter = |clause: &str, value: SqlValue| {
        args.push(value);
        sql.push_str(" AND ");
        sql.push_str(&clause.replace('?', &format!("?{}", args.len())));
    };
    if let Some(since) = &q.since {
        filter("time >= ?", SqlValue::Text(chain::parse_time(since)?));
    }
    if let Some(until) = &q.until {
        filter("time < ?", SqlValue::Text(chain::parse_time(until)?));
    }
    for (column, value) in [
        ("actor_id", &q.actor),
        ("action", &q.action),
        ("effect", &q.effect),
        ("session", &q.session),
        ("decision_id", &q.decision_id),
    ] {
        if let Some(v) = value {
            filter(&format!("{column} = ?"), SqlValue::Text(v.clone()));
        }
    }
    if let Some(rule) = &q.rule {
        filter(
            "EXISTS (SELECT 1 FROM json_each(audit.rules) WHERE json_each.value = ?)",
            SqlValue::Text(rule.clone()),
        );
    }
    if let Some(after) = q.after_seq {
        filter("seq > ?", SqlValue::Integer(i64::try_from(after).unwrap_or(i64::MAX)));
    }
    let limit = q.limit.unwrap_or(DEFAULT_LIMIT).min(MAX_LIMIT);
    sql.push_str(" ORDER BY seq LIMIT ");
    sql.push_str(&limit.to_string());

    let mut stmt = conn.prepare_cached(&sql)?;
    let mut rows = stmt.query(rusqlite::params_from_iter(args))?;
    let mut out = Vec::new();
    while let Some(r) = rows.next()? {
        let seq: i64 = r.get(0)?;
        let body: String = r.get(1)?;
        // The entry is read from the body, the text the chain covers, not
        // from the filter columns.
        let entry: AuditEntry = serde_json::from_str(&body)
            .map_err(|e| StoreError(format!("audit record {seq} is corrupt ({e}); run verify")))?;
        out.push(AuditRecord {
            seq: u64::try_from(seq).map_err(|_| StoreError(format!("audit record {seq} has a negative seq")))?,
            entry,
            prev_hash: r.get(2)?,
            hash: r.get(3)?,
        });
    }
    Ok(out)
}

/// Number of records: the highest sequence number (records have no gaps).
pub(crate) fn audit_len(conn: &Connection) -> Result<u64, StoreError> {
    let n: i64 = conn.query_row("SELECT coalesce(max(seq), 0) FROM audit", [], |r| r.get(0))?;
    Ok(u64::try_from(n).unwrap_or(0))
}

fn text<'a>(v: ValueRef<'a>) -> Option<&'a str> {
    match v {
        ValueRef::Text(t) => std::str::from_utf8(t).ok(),
        _ => None,
    }
}

/// Streams every record, in sequence order, through the chain verifier.
/// Rows are borrowed from SQLite, never copied: the cost per record is one
/// SHA-256 over its body.
pub(crate) fn verify_audit(conn: &mut Connection) -> Result<Verification, StoreError> {
    // One read transaction: the head and the rows are the same snapshot,
    // whatever the writer commits meanwhile.
    let tx = conn.transaction()?;
    let head: Option<(i64, String)> = {
        let mut stmt = tx.prepare("SELECT seq, hash FROM chain_head WHERE id = 1")?;
        let mut rows = stmt.query([])?;
        match rows.next()? {
            Some(r) => Some((r.get(0)?, r.get(1)?)),
            None => None,
        }
    };
    let mut verifier = Verifier::new();
    {
        let mut stmt = tx.prepare("SELECT seq, body, prev_hash, hash FROM audit ORDER BY seq")?;
        let mut rows = stmt.query([])?;
        while let Some(r) = rows.next()? {
            let raw_seq: i64 = r.get(0)?;
            let Ok(seq) = u64::try_from(raw_seq) else {
                verifier.push_unreadable(0, &format!("a row has the sequence number {raw_seq}"));
                break;
            };
            match (text(r.get_ref(1)?), text(r.get_ref(2)?), text(r.get_ref(3)?)) {
                (Some(body), Some(prev_hash), Some(hash)) => {
                    if !verifier.push(seq, body, prev_hash, hash) {
                        break;
                    }
                }
                _ => {
                    verifier.push_unreadable(seq, "its body or hashes are not text");
                    break;
                }
            }
        }
    }
    tx.finish()?;
    let head = head
        .as_ref()
        .map(|(seq, hash)| (u64::try_from(*seq).unwrap_or(u64::MAX), hash.as_str()));
    Ok(verifier.finish(head))
}
