//! Reads: a small pool of read connections and the audit queries.
//!
//! In WAL mode readers see the last commit and never wait for the writer,
//! so reads run on their own connections, on tokio's blocking pool.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use rusqlite::types::{Value as SqlValue, ValueRef};
use rusqlite::{Connection, OptionalExtension};

use super::columns::Columns;
use super::{schema, SqliteOptions};
use crate::chain::{self, Verifier};
use crate::rule_index::{self, RuleDigest};
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

    /// Adds an open connection to the idle ones.
    pub(crate) fn keep(&self, conn: Connection) {
        if let Ok(mut idle) = self.idle.lock() {
            idle.push(conn);
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

/// Rows of a time range above which the range is "broad": the query
/// walks the records in `seq` order and checks their time, rather than
/// reading the range from the time index and sorting it (see
/// [`query_audit`]).
const NARROW_TIME_RANGE: i64 = 20_000;

/// The index that drives an audit query: the one whose filter is the most
/// selective given, by the columns' nature (SQLite has no statistics of
/// its own unless `ANALYZE` ran, and its guesses picked the effect's index
/// for an actor and an effect, reading most of the log).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Driver {
    /// `(column, index)`: an equality filter's index, in `seq` order.
    Column(&'static str, &'static str),
    /// The rule index.
    Rule,
    /// The trace index (partial: only the records that have a trace).
    Trace,
    /// The time index, for a narrow range; sorted after.
    Time,
    /// The records in `seq` order.
    Seq,
}

/// Records matching `q`, in sequence order (newest first when
/// `q.descending`).
///
/// Every equality filter has an index that yields its records in `seq`
/// order (see the schema's V8); the query reads the most selective one
/// (a decision id, then a session, an actor, a rule, an action, an effect)
/// and checks the other filters on each record it reads, so a page reads
/// about as many rows as it returns unless the filters together are much
/// rarer than the driving one alone. A time range with no selective
/// filter is read from the time index when it holds at most
/// [`NARROW_TIME_RANGE`] records (counted first, from the index alone),
/// else by walking the records in `seq` order.
pub(crate) fn query_audit(conn: &Connection, q: &AuditQuery) -> Result<Vec<AuditRecord>, StoreError> {
    query_audit_with(conn, q, NARROW_TIME_RANGE)
}

/// [`query_audit`] with `narrow` as the bound of a narrow time range (the
/// tests take every path with small logs).
fn query_audit_with(conn: &Connection, q: &AuditQuery, narrow: i64) -> Result<Vec<AuditRecord>, StoreError> {
    let since = q.since.as_deref().map(chain::parse_time).transpose()?;
    let until = q.until.as_deref().map(chain::parse_time).transpose()?;
    let bound = |n: u64| SqlValue::Integer(i64::try_from(n).unwrap_or(i64::MAX));
    let timed = since.is_some() || until.is_some();
    let driver = if q.decision_id.is_some() {
        Driver::Column("decision_id", "audit_decision")
    } else if q.trace.is_some() {
        Driver::Trace
    } else if q.session.is_some() {
        Driver::Column("session", "audit_session")
    } else if q.actor.is_some() {
        Driver::Column("actor_id", "audit_actor")
    } else if q.rule.is_some() {
        Driver::Rule
    } else if timed && narrow_time_range(conn, since.as_deref(), until.as_deref(), q, narrow)? {
        Driver::Time
    } else if q.action.is_some() {
        Driver::Column("action", "audit_action")
    } else if q.effect.is_some() {
        Driver::Column("effect", "audit_effect")
    } else {
        Driver::Seq
    };
    let limit = q.limit.unwrap_or(DEFAULT_LIMIT).min(MAX_LIMIT);
    // A broad time range alone: where its records are in the log.
    let window = if driver == Driver::Seq && timed && q.action.is_none() && q.effect.is_none() && q.trace.is_none() {
        match seq_window(conn, since.as_deref(), until.as_deref(), q, limit)? {
            Window::Empty => return Ok(Vec::new()),
            other => other,
        }
    } else {
        Window::Whole
    };
    let mut args: Vec<SqlValue> = Vec::new();
    let (mut sql, seq) = match driver {
        Driver::Rule => (
            String::from(
                "SELECT audit.seq, audit.body, audit.prev_hash, audit.hash FROM audit_rules CROSS JOIN audit \
                 ON audit.seq = audit_rules.seq WHERE 1 = 1",
            ),
            "audit_rules.seq",
        ),
        Driver::Column(_, index) => (
            format!("SELECT audit.seq, audit.body, audit.prev_hash, audit.hash FROM audit INDEXED BY {index} WHERE 1 = 1"),
            "audit.seq",
        ),
        Driver::Trace => (
            String::from(
                "SELECT audit.seq, audit.body, audit.prev_hash, audit.hash FROM audit INDEXED BY audit_trace WHERE 1 = 1",
            ),
            "audit.seq",
        ),
        Driver::Time => (
            String::from(
                "SELECT audit.seq, audit.body, audit.prev_hash, audit.hash FROM audit INDEXED BY audit_time WHERE 1 = 1",
            ),
            "audit.seq",
        ),
        Driver::Seq => (
            String::from("SELECT audit.seq, audit.body, audit.prev_hash, audit.hash FROM audit WHERE 1 = 1"),
            "audit.seq",
        ),
    };
    let mut filter = |clause: &str, value: SqlValue| {
        args.push(value);
        sql.push_str(" AND ");
        sql.push_str(&clause.replace('?', &format!("?{}", args.len())));
    };
    // A term of another filter than the driver's is written `+column`,
    // which SQLite does not read through an index.
    let time_column = if driver == Driver::Time {
        "audit.time"
    } else {
        "+audit.time"
    };
    if let Some(since) = &since {
        filter(&format!("{time_column} >= ?"), SqlValue::Text(since.clone()));
    }
    if let Some(until) = &until {
        filter(&format!("{time_column} < ?"), SqlValue::Text(until.clone()));
    }
    for (column, value) in [
        ("actor_id", &q.actor),
        ("action", &q.action),
        ("effect", &q.effect),
        ("session", &q.session),
        ("decision_id", &q.decision_id),
    ] {
        if let Some(v) = value {
            let plus = if matches!(driver, Driver::Column(c, _) if c == column) {
                ""
            } else {
                "+"
            };
            filter(&format!("{plus}audit.{column} = ?"), SqlValue::Text(v.clone()));
        }
    }
    if let Some(rule) = &q.rule {
        if driver == Driver::Rule {
            filter("audit_rules.rule = ?", SqlValue::Text(rule.clone()));
        } else {
            filter(
                "EXISTS (SELECT 1 FROM audit_rules WHERE audit_rules.rule = ? AND audit_rules.seq = audit.seq)",
                SqlValue::Text(rule.clone()),
            );
        }
    }
    if let Some(trace) = &q.trace {
        // No column: the body is canonical and `trace` its last key, so a
        // record with one ends `,"trace":"00-<trace id>-<parent id>-<flags>"}`
        // (see `chain`); a string value cannot hold that text (its quotes
        // are escaped). The body is what the chain covers: exact. The same
        // two expressions as the partial index `audit_trace` (V8), which
        // SQLite uses only when they match it term for term.
        filter(
            "substr(audit.body, -67, 13) = ',\"trace\":\"00-' AND substr(audit.body, -54, 32) = ?",
            SqlValue::Text(trace.clone()),
        );
    }
    if let Some(after) = q.after_seq {
        filter(&format!("{seq} > ?"), bound(after));
    }
    if let Some(before) = q.before_seq {
        filter(&format!("{seq} < ?"), bound(before));
    }
    if let Window::Seqs(lo, hi) = window {
        filter(&format!("{seq} >= ?"), SqlValue::Integer(lo));
        filter(&format!("{seq} <= ?"), SqlValue::Integer(hi));
    }
    sql.push_str(&format!(
        " ORDER BY {seq} {} LIMIT {limit}",
        if q.descending { "DESC" } else { "ASC" }
    ));

    let mut stmt = conn.prepare_cached(&sql)?;
    let mut rows = stmt.query(rusqlite::params_from_iter(args))?;
    let mut out = Vec::new();
    while let Some(r) = rows.next()? {
        let seq: i64 = r.get(0)?;
        let body: String = r.get(1)?;
        let prev_hash: String = r.get(2)?;
        let hash: String = r.get(3)?;
        // A record whose body no longer hashes to its stored hash was
        // changed: it is refused rather than shown as recorded. (A record
        // rewritten with its hash recomputed breaks the link to the next
        // one, which only `verify`, walking the whole chain, sees.)
        if chain::record_hash(&prev_hash, &body) != hash {
            return Err(StoreError(format!(
                "audit record {seq} does not match its hash (it was changed); run verify"
            )));
        }
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
            prev_hash,
            hash,
        });
    }
    Ok(out)
}

/// Where the records of a broad time range (the query's only filter) are.
enum Window {
    /// Read the log in `seq` order: the range reaches the end it starts
    /// from, so its records come first.
    Whole,
    /// None within the query's `seq` bounds.
    Empty,
    /// The page's records are exactly those of the range between these
    /// sequence numbers (inclusive).
    Seqs(i64, i64),
}

/// For a broad time range that does not reach the end of the log a query
/// starts from (a window in the past, read newest first), the `seq` span
/// of the page's records, found from the time index alone (it holds each
/// record's `seq`): a walk of the log from its end would read every
/// record newer than the range first.
fn seq_window(
    conn: &Connection,
    since: Option<&str>,
    until: Option<&str>,
    q: &AuditQuery,
    limit: u64,
) -> Result<Window, StoreError> {
    let seq_bound = |n: Option<u64>, none: i64| n.map_or(none, |n| i64::try_from(n).unwrap_or(i64::MAX));
    let (after, before) = (seq_bound(q.after_seq, 0), seq_bound(q.before_seq, i64::MAX));
    let order = if q.descending { "DESC" } else { "ASC" };
    // The first record the walk would read.
    let first: Option<String> = conn
        .prepare_cached(&format!(
            "SELECT time FROM audit WHERE seq > ?1 AND seq < ?2 ORDER BY seq {order} LIMIT 1"
        ))?
        .query_row(rusqlite::params![after, before], |r| r.get(0))
        .optional()?;
    let Some(first) = first else { return Ok(Window::Empty) };
    let inside = since.is_none_or(|s| *first >= *s) && until.is_none_or(|u| *first < *u);
    if inside {
        return Ok(Window::Whole);
    }
    // Only the bounds given: a record whose time did not parse is kept as
    // given, and must not fall outside an invented bound.
    let mut sql = String::from(
        "SELECT min(seq), max(seq) FROM (SELECT seq FROM audit INDEXED BY audit_time WHERE seq > ?1 AND seq < ?2",
    );
    let mut args: Vec<SqlValue> = vec![SqlValue::Integer(after), SqlValue::Integer(before)];
    for (op, bound) in [(">=", since), ("<", until)] {
        if let Some(b) = bound {
            args.push(SqlValue::Text(b.to_owned()));
            sql.push_str(&format!(" AND time {op} ?{}", args.len()));
        }
    }
    sql.push_str(&format!(" ORDER BY seq {order} LIMIT {limit})"));
    let span: (Option<i64>, Option<i64>) = conn
        .prepare_cached(&sql)?
        .query_row(rusqlite::params_from_iter(args), |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(match span {
        (Some(lo), Some(hi)) => Window::Seqs(lo, hi),
        _ => Window::Empty,
    })
}

/// Whether the time range of a query (within its `seq` bounds) holds at
/// most [`NARROW_TIME_RANGE`] records: counted from the time index alone,
/// stopping at the bound.
fn narrow_time_range(
    conn: &Connection,
    since: Option<&str>,
    until: Option<&str>,
    q: &AuditQuery,
    narrow: i64,
) -> Result<bool, StoreError> {
    let seq_bound = |n: Option<u64>, none: i64| n.map_or(none, |n| i64::try_from(n).unwrap_or(i64::MAX));
    let n: i64 = conn
        .prepare_cached(
            "SELECT count(*) FROM (SELECT 1 FROM audit INDEXED BY audit_time WHERE time >= ?1 AND time < ?2 \
             AND seq > ?3 AND seq < ?4 LIMIT ?5)",
        )?
        .query_row(
            rusqlite::params![
                since.unwrap_or(""),
                // Above every time key the writer makes (they start with a
                // digit); only this count, which picks a plan, uses it.
                until.unwrap_or("~"),
                seq_bound(q.after_seq, 0),
                seq_bound(q.before_seq, i64::MAX),
                narrow.saturating_add(1),
            ],
            |r| r.get(0),
        )?;
    Ok(n <= narrow)
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

/// Rows of the verify query per batch handed from the reading thread to the
/// checking one.
const VERIFY_BATCH: usize = 1024;

/// Streams every record, in sequence order, through the chain verifier,
/// then checks that its query columns are what its body says (the chain
/// covers only the body). The cost per record is one SHA-256 over its body
/// and one parse of its top-level fields, besides reading it: this thread
/// reads rows out of SQLite into batches (one buffer per batch, reused) and
/// a second thread hashes and checks them in order, so the two overlap.
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
    let checked = {
        let mut stmt = tx.prepare(
            "SELECT seq, body, prev_hash, hash, time, decision_id, phase, action, actor_id, session, effect, rules \
             FROM audit ORDER BY seq",
        )?;
        let mut rows = stmt.query([])?;
        let done = std::sync::atomic::AtomicBool::new(false);
        let done = &done;
        std::thread::scope(|scope| -> Result<Checked, StoreError> {
            let (full_tx, full_rx) = std::sync::mpsc::sync_channel::<Batch>(2);
            let (empty_tx, empty_rx) = std::sync::mpsc::channel::<Batch>();
            let checker = scope.spawn(move || check_batches(full_rx, empty_tx, done));
            let mut batch = Batch::default();
            let mut read_error = None;
            loop {
                let row = match rows.next() {
                    Ok(Some(r)) => r,
                    Ok(None) => break,
                    Err(e) => {
                        read_error = Some(e);
                        break;
                    }
                };
                let stop = batch.push(row);
                if stop || batch.rows.len() >= VERIFY_BATCH {
                    let next = empty_rx.try_recv().unwrap_or_default();
                    // A closed channel means the checker has its verdict.
                    if full_tx.send(std::mem::replace(&mut batch, next)).is_err() || stop {
                        break;
                    }
                    if done.load(std::sync::atomic::Ordering::Relaxed) {
                        break;
                    }
                }
            }
            if !batch.rows.is_empty() || batch.ending.is_some() {
                let _ = full_tx.send(batch);
            }
            drop(full_tx);
            let checked = checker
                .join()
                .map_err(|_| StoreError("the audit verification thread panicked".into()))?;
            match read_error {
                // Reading stopped early only because the verdict was in.
                Some(e) if !checked.verifier.is_broken() && checked.column_verdict.is_none() => Err(e.into()),
                _ => Ok(checked),
            }
        })?
    };
    if let Some(verdict) = checked.column_verdict {
        return Ok(verdict);
    }
    let head = head
        .as_ref()
        .map(|(seq, hash)| (u64::try_from(*seq).unwrap_or(u64::MAX), hash.as_str()));
    let verdict = match (checked.verifier.finish(head), checked.pending) {
        (Verification::Intact { .. }, Some((seq, problem))) => changed(seq, &problem),
        (verdict, _) => verdict,
    };
    // The chain and the columns hold: the rule index must hold the pairs
    // the bodies name, no more, no fewer (read in the same snapshot).
    let verdict = match verdict {
        Verification::Intact { records } => {
            let mut index = RuleDigest::default();
            {
                let mut stmt = tx.prepare("SELECT seq, rule FROM audit_rules")?;
                let mut rows = stmt.query([])?;
                while let Some(r) = rows.next()? {
                    let seq: i64 = r.get(0)?;
                    let rule = r.get_ref(1)?;
                    let rule = text(rule).unwrap_or("\u{0}not text");
                    index.add(u64::try_from(seq).unwrap_or(u64::MAX), rule);
                }
            }
            if index == checked.rules {
                Verification::Intact { records }
            } else {
                let first: Option<i64> = tx.query_row(RULE_INDEX_MISMATCH, [], |r| r.get(0))?;
                let (seq, problem) = rule_index::mismatch_problem(first.and_then(|s| u64::try_from(s).ok()));
                Verification::Broken { seq, problem }
            }
        }
        broken => broken,
    };
    tx.finish()?;
    Ok(verdict)
}

/// The first record whose rule index rows differ from its `rules` column
/// (which `verify` has checked against the body): only run once the
/// digests disagree.
const RULE_INDEX_MISMATCH: &str = "SELECT min(seq) FROM (\
     SELECT seq, rule FROM (SELECT audit.seq AS seq, j.value AS rule FROM audit, json_each(audit.rules) AS j \
         EXCEPT SELECT seq, rule FROM audit_rules) \
     UNION ALL \
     SELECT seq, rule FROM (SELECT seq, rule FROM audit_rules \
         EXCEPT SELECT audit.seq, j.value FROM audit, json_each(audit.rules) AS j))";

/// What the checking thread found.
struct Checked {
    verifier: Verifier,
    /// A record whose columns disagree with its body. Reported only if the
    /// chain itself holds past it: a record inserted or rewritten without
    /// care also has wrong columns, and the chain's account of it (does not
    /// link, inserted) is the better one.
    pending: Option<(u64, String)>,
    column_verdict: Option<Verification>,
    /// The `(seq, rule)` pairs the bodies name, for the rule index.
    rules: RuleDigest,
}

/// Checks batches in order until the chain breaks or the batches end.
fn check_batches(
    full: std::sync::mpsc::Receiver<Batch>,
    empty: std::sync::mpsc::Sender<Batch>,
    done: &std::sync::atomic::AtomicBool,
) -> Checked {
    let mut c = Checked {
        verifier: Verifier::new(),
        pending: None,
        column_verdict: None,
        rules: RuleDigest::default(),
    };
    'batches: for mut batch in full {
        for row in &batch.rows {
            let text = |r: &std::ops::Range<usize>| batch.data.get(r.clone()).unwrap_or_default();
            let body = text(&row.body);
            if !c.verifier.push(row.seq, body, text(&row.prev), text(&row.hash)) {
                break 'batches;
            }
            if let Some((bad, problem)) = c.pending.take() {
                // The chain holds past the record: its columns are the
                // problem.
                c.column_verdict = Some(changed(bad, &problem));
                break 'batches;
            }
            let problem = match &row.columns {
                Err(why) => Some(why.clone()),
                Ok(cols) => match Columns::from_body(body) {
                    Err(why) => Some(why),
                    Ok(derived) => derived
                        .mismatch(cols.clone().map(|c| c.map(|r| text(&r))))
                        .or_else(|| c.rules.add_record(row.seq, &derived.rules).err()),
                },
            };
            c.pending = problem.map(|p| (row.seq, p));
        }
        match batch.ending {
            Some(Ending::BadSeq(raw)) => {
                c.verifier
                    .push_unreadable(0, &format!("a row has the sequence number {raw}"));
                break;
            }
            Some(Ending::Unreadable(seq)) => {
                c.verifier.push_unreadable(seq, "its body or hashes are not text");
                break;
            }
            None => {}
        }
        batch.clear();
        let _ = empty.send(batch);
    }
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    c
}

/// Rows copied out of SQLite: their text back to back in one buffer.
#[derive(Default)]
struct Batch {
    data: String,
    rows: Vec<BatchRow>,
    /// A row after `rows` that cannot be read, which ends the verification.
    ending: Option<Ending>,
}

#[derive(Clone, Copy)]
enum Ending {
    /// A row whose `seq` is not a positive integer.
    BadSeq(i64),
    /// A row whose body or hashes are not text.
    Unreadable(u64),
}

struct BatchRow {
    seq: u64,
    body: std::ops::Range<usize>,
    prev: std::ops::Range<usize>,
    hash: std::ops::Range<usize>,
    /// The eight query columns (`None` for NULL), or why they cannot be read.
    columns: Result<[Option<std::ops::Range<usize>>; 8], String>,
}

impl Batch {
    fn clear(&mut self) {
        self.data.clear();
        self.rows.clear();
        self.ending = None;
    }

    fn text(&mut self, t: &str) -> std::ops::Range<usize> {
        let start = self.data.len();
        self.data.push_str(t);
        start..self.data.len()
    }

    /// Copies one row in; `true` when the row ends the verification (it
    /// cannot be read, so nothing after it matters).
    fn push(&mut self, r: &rusqlite::Row<'_>) -> bool {
        let raw_seq: i64 = match r.get(0) {
            Ok(s) => s,
            Err(_) => {
                self.ending = Some(Ending::BadSeq(0));
                return true;
            }
        };
        let Ok(seq) = u64::try_from(raw_seq) else {
            self.ending = Some(Ending::BadSeq(raw_seq));
            return true;
        };
        let texts = [1, 2, 3].map(|i| r.get_ref(i).ok().and_then(text));
        let [Some(body), Some(prev), Some(hash)] = texts else {
            self.ending = Some(Ending::Unreadable(seq));
            return true;
        };
        let (body, prev, hash) = (self.text(body), self.text(prev), self.text(hash));
        let mut columns = [const { None }; 8];
        let mut problem = None;
        for (i, col) in columns.iter_mut().enumerate() {
            match r.get_ref(i + 4) {
                Ok(ValueRef::Null) => {}
                Ok(v) => match text(v) {
                    Some(t) => *col = Some(self.text(t)),
                    None => {
                        problem = Some(format!("its query column {} is not text", i + 4));
                        break;
                    }
                },
                Err(e) => {
                    problem = Some(format!("its query columns cannot be read ({e})"));
                    break;
                }
            }
        }
        self.rows.push(BatchRow {
            seq,
            body,
            prev,
            hash,
            columns: problem.map_or(Ok(columns), Err),
        });
        false
    }
}

fn changed(seq: u64, problem: &str) -> Verification {
    Verification::Broken {
        seq,
        problem: format!("record {seq} was changed: {problem}"),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::{SqliteStore, Store};
    use proptest::prelude::*;
    use proptest::test_runner::{Config, TestRunner};

    /// Record `i`'s time: mostly increasing with `seq`, some out of order.
    fn time(i: u64) -> String {
        let minute = if i % 7 == 3 { i / 2 } else { i };
        format!("2025-06-01T{:02}:{:02}:00.000000Z", minute / 60 % 24, minute % 60)
    }

    /// A trace id filter reads the partial index `audit_trace` (the plan
    /// says so) and finds exactly the records of that trace, with any other
    /// filter, in either order.
    #[test]
    fn a_trace_is_found_through_its_index() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rein.db");
        let store = SqliteStore::open(&path).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let wanted = "4bf92f3577b34da6a3ce929d0e0e4736";
        for i in 1..=60u64 {
            let mut e: crate::AuditEntry = serde_json::from_value(serde_json::json!({
                "decision_id": format!("d{i}"), "time": time(i), "phase": "before", "action": "a",
                "input": {"trace": format!("00-{wanted}-00f067aa0ba902b7-01")}, "actor": {"id": "x"},
                "snapshot": {}, "output": null, "error": null, "session": null,
                "effect": if i % 2 == 0 { "allow" } else { "block" }, "rules": [], "reasons": [],
                "policy_version": "v", "latency_us": 1, "approval": null
            }))
            .unwrap();
            e.trace = match i % 3 {
                0 => Some(format!("00-{wanted}-{i:016x}-01")),
                1 => Some(format!("00-{:032x}-{i:016x}-01", i + 1)),
                _ => None,
            };
            rt.block_on(store.append(e)).unwrap();
        }
        let conn = schema::open_reader(&path, SqliteOptions::default()).unwrap();
        let plan: Vec<String> = conn
            .prepare(
                "EXPLAIN QUERY PLAN SELECT audit.seq FROM audit INDEXED BY audit_trace \
                 WHERE substr(audit.body, -67, 13) = ',\"trace\":\"00-' AND substr(audit.body, -54, 32) = ?1",
            )
            .unwrap()
            .query_map([wanted], |r| r.get::<_, String>(3))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert!(plan.iter().any(|p| p.contains("audit_trace")), "{plan:?}");
        for (effect, descending) in [
            (None, false),
            (None, true),
            (Some("allow"), true),
            (Some("block"), false),
        ] {
            let q = AuditQuery {
                trace: Some(wanted.into()),
                effect: effect.map(str::to_string),
                descending,
                ..AuditQuery::default()
            };
            let got: Vec<u64> = query_audit(&conn, &q).unwrap().iter().map(|r| r.seq).collect();
            // The log's first record is the store's own (none here: the
            // store was opened without a policy), so seq = i.
            let mut want: Vec<u64> = (1..=60u64)
                .filter(|i| i % 3 == 0)
                .filter(|i| match effect {
                    Some("allow") => i % 2 == 0,
                    Some(_) => i % 2 == 1,
                    None => true,
                })
                .collect();
            if descending {
                want.reverse();
            }
            assert_eq!(got, want, "{q:?}");
        }
    }

    /// Whichever path a time range takes (the time index, the log walked
    /// from its end, or the window found from the time index), a query
    /// returns exactly the records in the range, in order.
    #[test]
    fn every_time_range_path_returns_the_range() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rein.db");
        let store = SqliteStore::open(&path).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let n = 300u64;
        for i in 1..=n {
            let mut e: crate::AuditEntry = serde_json::from_value(serde_json::json!({
                "decision_id": format!("d{i}"), "time": time(i), "phase": "before", "action": "a",
                "input": {}, "actor": {"id": "x"}, "snapshot": {}, "output": null, "error": null,
                "session": null, "effect": "allow", "rules": [], "reasons": [], "policy_version": "v",
                "latency_us": 1, "approval": null
            }))
            .unwrap();
            if i % 50 == 0 {
                e.time = "not a time".into();
            }
            rt.block_on(store.append(e)).unwrap();
        }
        let conn = schema::open_reader(&path, SqliteOptions::default()).unwrap();
        let times: Vec<String> = (1..=n)
            .map(|i| if i % 50 == 0 { "not a time".to_string() } else { time(i) })
            .collect();
        let minutes = (0..=n)
            .map(|m| format!("2025-06-01T{:02}:{:02}:00.000000Z", m / 60 % 24, m % 60))
            .collect::<Vec<_>>();
        let strategy = (
            proptest::option::of(proptest::sample::select(minutes.clone())),
            proptest::option::of(proptest::sample::select(minutes)),
            proptest::option::of(0..=n + 1),
            proptest::option::of(0..=n + 1),
            any::<bool>(),
            1u64..40,
        );
        let mut runner = TestRunner::new(Config {
            cases: 300,
            ..Config::default()
        });
        runner
            .run(&strategy, |(since, until, after, before, descending, limit)| {
                if since.is_none() && until.is_none() {
                    return Ok(());
                }
                let q = AuditQuery {
                    since: since.clone(),
                    until: until.clone(),
                    after_seq: after,
                    before_seq: before,
                    descending,
                    limit: Some(limit),
                    ..AuditQuery::default()
                };
                let mut want: Vec<u64> = (1..=n)
                    .filter(|&s| after.is_none_or(|a| s > a) && before.is_none_or(|b| s < b))
                    .filter(|&s| {
                        let t = times[(s - 1) as usize].as_str();
                        since.as_deref().is_none_or(|x| t >= x) && until.as_deref().is_none_or(|x| t < x)
                    })
                    .collect();
                if descending {
                    want.reverse();
                }
                want.truncate(limit as usize);
                for narrow in [0, 3, i64::MAX] {
                    let got: Vec<u64> = query_audit_with(&conn, &q, narrow)
                        .unwrap()
                        .iter()
                        .map(|r| r.seq)
                        .collect();
                    prop_assert_eq!(&got, &want, "narrow {}: {:?}", narrow, q);
                }
                Ok(())
            })
            .unwrap();
    }
}
