//! Reads: a small pool of read connections and the audit queries.
//!
//! In WAL mode readers see the last commit and never wait for the writer,
//! so reads run on their own connections, on tokio's blocking pool.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use rusqlite::types::{Value as SqlValue, ValueRef};
use rusqlite::Connection;

use super::columns::Columns;
use super::{schema, SqliteOptions};
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
    options: SqliteOptions,
    idle: Mutex<Vec<Connection>>,
}

impl Readers {
    pub(crate) fn new(path: PathBuf, options: SqliteOptions) -> Self {
        Readers {
            path,
            options,
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
            None => schema::open_reader(&self.path, self.options)?,
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
    let since = q.since.as_deref().map(chain::parse_time).transpose()?;
    let until = q.until.as_deref().map(chain::parse_time).transpose()?;
    if let Some(since) = &since {
        filter("time >= ?", SqlValue::Text(since.clone()));
    }
    if let Some(until) = &until {
        filter("time < ?", SqlValue::Text(until.clone()));
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
        // The row was selected by its columns, which the chain does not
        // cover: a record brought in by an edited column is refused.
        if let Some(filter) = unmatched_filter(q, &entry, since.as_deref(), until.as_deref()) {
            return Err(StoreError(format!(
                "audit record {seq} was selected by its `{filter}` column, but its body does not match the filter \
                 (the column was edited); run verify"
            )));
        }
        out.push(AuditRecord {
            seq: u64::try_from(seq).map_err(|_| StoreError(format!("audit record {seq} has a negative seq")))?,
            entry,
            prev_hash: r.get(2)?,
            hash: r.get(3)?,
        });
    }
    Ok(out)
}

/// The first filter of `q` that `entry` (read from a body) does not
/// satisfy, by its column name. `since` and `until` are already normalised.
fn unmatched_filter(
    q: &AuditQuery,
    entry: &AuditEntry,
    since: Option<&str>,
    until: Option<&str>,
) -> Option<&'static str> {
    let c = Columns::from_entry(entry);
    let eq = |want: &Option<String>, got: Option<&str>| want.as_deref().is_none_or(|w| Some(w) == got);
    if since.is_some_and(|s| *c.time < *s) || until.is_some_and(|u| *c.time >= *u) {
        return Some("time");
    }
    [
        ("actor_id", eq(&q.actor, c.actor_id.as_deref())),
        ("action", eq(&q.action, Some(&c.action))),
        ("effect", eq(&q.effect, Some(&c.effect))),
        ("session", eq(&q.session, c.session.as_deref())),
        ("decision_id", eq(&q.decision_id, Some(&c.decision_id))),
        ("rules", q.rule.as_ref().is_none_or(|r| entry.rules.contains(r))),
    ]
    .into_iter()
    .find(|(_, ok)| !ok)
    .map(|(name, _)| name)
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

/// Streams every record, in sequence order, through the chain verifier,
/// then checks that its query columns are what its body says (the chain
/// covers only the body). Rows are borrowed from SQLite, never copied: the
/// cost per record is one SHA-256 over its body and one parse of its
/// top-level fields.
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
    // A record whose columns disagree with its body is reported only if the
    // chain itself holds past it: a record inserted or rewritten without
    // care also has wrong columns, and the chain's account of it (does not
    // link, inserted) is the better one.
    let mut pending: Option<(u64, String)> = None;
    let mut column_verdict = None;
    {
        let mut stmt = tx.prepare(
            "SELECT seq, body, prev_hash, hash, time, decision_id, phase, action, actor_id, session, effect, rules \
             FROM audit ORDER BY seq",
        )?;
        let mut rows = stmt.query([])?;
        while let Some(r) = rows.next()? {
            let raw_seq: i64 = r.get(0)?;
            let Ok(seq) = u64::try_from(raw_seq) else {
                verifier.push_unreadable(0, &format!("a row has the sequence number {raw_seq}"));
                break;
            };
            let (Some(body), Some(prev_hash), Some(hash)) =
                (text(r.get_ref(1)?), text(r.get_ref(2)?), text(r.get_ref(3)?))
            else {
                verifier.push_unreadable(seq, "its body or hashes are not text");
                break;
            };
            if !verifier.push(seq, body, prev_hash, hash) {
                break;
            }
            if let Some((bad, problem)) = pending.take() {
                // The chain holds past the record: its columns are the
                // problem.
                column_verdict = Some(changed(bad, &problem));
                break;
            }
            pending = column_problem(r, body).map(|problem| (seq, problem));
        }
    }
    tx.finish()?;
    if let Some(verdict) = column_verdict {
        return Ok(verdict);
    }
    let head = head
        .as_ref()
        .map(|(seq, hash)| (u64::try_from(*seq).unwrap_or(u64::MAX), hash.as_str()));
    Ok(match (verifier.finish(head), pending) {
        (Verification::Intact { .. }, Some((seq, problem))) => changed(seq, &problem),
        (verdict, _) => verdict,
    })
}

fn changed(seq: u64, problem: &str) -> Verification {
    Verification::Broken {
        seq,
        problem: format!("record {seq} was changed: {problem}"),
    }
}

/// Why the query columns of row `r` (columns 4..=11 of the verify query)
/// disagree with `body`, if they do.
fn column_problem(r: &rusqlite::Row<'_>, body: &str) -> Option<String> {
    let derived = match Columns::from_body(body) {
        Ok(c) => c,
        Err(why) => return Some(why),
    };
    let mut cols: [Option<&str>; 8] = [None; 8];
    for (i, col) in cols.iter_mut().enumerate() {
        match r.get_ref(i + 4) {
            Ok(ValueRef::Null) => {}
            Ok(v) => match text(v) {
                Some(t) => *col = Some(t),
                None => return Some(format!("its query column {} is not text", i + 4)),
            },
            Err(e) => return Some(format!("its query columns cannot be read ({e})")),
        }
    }
    derived.mismatch(cols)
}
