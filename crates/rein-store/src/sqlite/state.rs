//! The state of stateful rules in SQLite (schema v5): limit uses, session
//! calls, labels and last-seen times.
//!
//! A decision's writes are encoded by the appending task
//! ([`prepare`]) and inserted by the writer thread in the transaction of
//! the decision's audit record ([`write`]), so a crash leaves both or
//! neither. Pruning and resets are writer commands too ([`StateOp`]);
//! loading and sizes are reads.
//!
//! Times are stored as the audit log's fixed-width UTC keys, compared as
//! text. Those keep microseconds: a stored time is rounded up to the next
//! microsecond, so that a use or a call stays in its window (and a session
//! stays active) a fraction longer, never shorter; the bounds of loads and
//! prunes are rounded down, so that they keep, never drop, an edge row.

use std::collections::HashMap;
use std::str::FromStr;

use jiff::{SignedDuration, Timestamp};
use rein_engine::state::{BucketKey, Decimal, SessionCall, StateWrite};
use rein_engine::Effect;
use rusqlite::{params, Connection};

use crate::chain;
use crate::{StoreError, StoredStateSize};

/// The fixed-width key of a stored time, rounded up to the microsecond.
pub(crate) fn time_key(t: Timestamp) -> String {
    let below = t.subsec_nanosecond().rem_euclid(1000);
    let t = match below {
        0 => t,
        _ => t
            .checked_add(SignedDuration::from_nanos(i64::from(1000 - below)))
            .unwrap_or(t),
    };
    chain::format_time(t)
}

/// The fixed-width key of a bound (a window's start), rounded down.
pub(crate) fn bound_key(t: Timestamp) -> String {
    chain::format_time(t)
}

/// One write, encoded for its row by the appending task.
#[derive(Debug)]
pub(crate) enum PreparedWrite {
    Use {
        decision_id: String,
        bucket: String,
        time: String,
        amount: String,
    },
    Call {
        session: String,
        decision_id: String,
        action: String,
        time: String,
        effect: &'static str,
        input: String,
        output: Option<String>,
    },
    Output {
        session: String,
        decision_id: String,
        output: String,
    },
    Label {
        session: String,
        label: String,
        decision_id: String,
        time: String,
    },
}

fn json(value: &serde_json::Value) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|e| StoreError(format!("cannot encode a state value: {e}")))
}

/// The decision a write belongs to.
fn decision_of(w: &StateWrite) -> &str {
    match w {
        StateWrite::Use { decision_id, .. }
        | StateWrite::Output { decision_id, .. }
        | StateWrite::Label { decision_id, .. } => decision_id,
        StateWrite::Call { call, .. } => &call.decision_id,
    }
}

/// Encodes `writes`, the state of decision `decision_id`, for the writer.
/// Refuses a write of another decision: a state row is kept with the
/// record of its own decision, so that one is never without the other.
pub(crate) fn prepare(decision_id: &str, writes: Vec<StateWrite>) -> Result<Vec<PreparedWrite>, StoreError> {
    let mut out = Vec::with_capacity(writes.len());
    for w in writes {
        if decision_of(&w) != decision_id {
            return Err(StoreError(format!(
                "a state write of decision `{}` came with the record of decision `{decision_id}`",
                decision_of(&w)
            )));
        }
        out.push(match w {
            StateWrite::Use {
                decision_id,
                bucket,
                time,
                amount,
            } => {
                // A limit only ever adds: a negative use would give units back.
                if amount.is_sign_negative() && !amount.is_zero() {
                    return Err(StoreError(format!(
                        "a limit use of {amount} for decision `{decision_id}` is negative"
                    )));
                }
                PreparedWrite::Use {
                    decision_id,
                    bucket: bucket.id(),
                    time: time_key(time),
                    amount: amount.to_string(),
                }
            }
            StateWrite::Call { session, call } => PreparedWrite::Call {
                session,
                time: time_key(call.time),
                effect: call.effect.as_str(),
                input: json(&call.input)?,
                output: call.output.as_ref().map(json).transpose()?,
                decision_id: call.decision_id,
                action: call.action,
            },
            StateWrite::Output {
                session,
                decision_id,
                output,
            } => PreparedWrite::Output {
                output: json(&output)?,
                session,
                decision_id,
            },
            StateWrite::Label {
                session,
                decision_id,
                label,
                time,
            } => PreparedWrite::Label {
                session,
                label,
                decision_id,
                time: time_key(time),
            },
        });
    }
    Ok(out)
}

/// The state rows of a batch, gathered so that limit uses and calls are
/// inserted with multi-row statements and each session's last write is
/// set once per batch (one statement per row costs a reset, a bind and a
/// VDBE run each; see `writer::insert_rows`). Nothing is allocated for a
/// batch without state.
#[derive(Default)]
pub(crate) struct Pending<'a> {
    uses: Vec<&'a PreparedWrite>,
    calls: Vec<&'a PreparedWrite>,
    /// Sessions written to, with their latest time in the batch (made on
    /// the first: a batch without state does not even seed a hasher).
    touched: Option<HashMap<&'a str, &'a str>>,
}

/// Rows per multi-row INSERT, largest first (as `writer::INSERT_CHUNKS`).
const CHUNKS: [usize; 3] = [16, 4, 1];

impl<'a> Pending<'a> {
    /// Adds one decision's writes. Outputs and labels are written at once
    /// (an output after the calls gathered so far, which it may fill in).
    pub(crate) fn add(&mut self, conn: &Connection, writes: &'a [PreparedWrite]) -> Result<(), StoreError> {
        for w in writes {
            match w {
                PreparedWrite::Use { .. } => self.uses.push(w),
                PreparedWrite::Call { session, time, .. } => {
                    self.calls.push(w);
                    self.touch(session, time);
                }
                PreparedWrite::Output {
                    session,
                    decision_id,
                    output,
                } => {
                    self.insert_calls(conn)?;
                    // Matched on the session too: an outcome fills in a
                    // call of its own session only. A call no longer kept
                    // (pruned) is no error: there is nothing to fill in.
                    conn.prepare_cached(
                        "UPDATE session_calls SET output = ?3 WHERE decision_id = ?1 AND session = ?2",
                    )?
                    .execute(params![decision_id, session, output])?;
                }
                PreparedWrite::Label {
                    session,
                    label,
                    decision_id,
                    time,
                } => {
                    conn.prepare_cached(
                        "INSERT INTO session_labels (session, label, decision_id, time) VALUES (?1, ?2, ?3, ?4)",
                    )?
                    .execute(params![session, label, decision_id, time])?;
                    self.touch(session, time);
                }
            }
        }
        Ok(())
    }

    fn touch(&mut self, session: &'a str, time: &'a str) {
        let latest = self.touched.get_or_insert_default().entry(session).or_insert(time);
        *latest = (*latest).max(time);
    }

    /// Writes everything gathered; called before anything that reads the
    /// state in the batch's transaction, and at its end.
    pub(crate) fn flush(&mut self, conn: &Connection) -> Result<(), StoreError> {
        insert_chunked(conn, &mut self.uses, use_sql, |stmt, i, w| {
            if let PreparedWrite::Use {
                decision_id,
                bucket,
                time,
                amount,
            } = w
            {
                for v in [decision_id, bucket, time, amount] {
                    *i += 1;
                    stmt.raw_bind_parameter(*i, v)?;
                }
            }
            Ok(())
        })?;
        self.insert_calls(conn)?;
        for (session, time) in self.touched.take().into_iter().flatten() {
            conn.prepare_cached(
                "INSERT INTO sessions (id, last_seen) VALUES (?1, ?2) \
                 ON CONFLICT (id) DO UPDATE SET last_seen = max(last_seen, excluded.last_seen)",
            )?
            .execute(params![session, time])?;
        }
        Ok(())
    }

    fn insert_calls(&mut self, conn: &Connection) -> Result<(), StoreError> {
        insert_chunked(conn, &mut self.calls, call_sql, |stmt, i, w| {
            if let PreparedWrite::Call {
                session,
                decision_id,
                action,
                time,
                effect,
                input,
                output,
            } = w
            {
                for v in [decision_id, session, action, time] {
                    *i += 1;
                    stmt.raw_bind_parameter(*i, v)?;
                }
                *i += 1;
                stmt.raw_bind_parameter(*i, effect)?;
                *i += 1;
                stmt.raw_bind_parameter(*i, input)?;
                *i += 1;
                stmt.raw_bind_parameter(*i, output)?;
            }
            Ok(())
        })
    }
}

/// Inserts `rows` with as few statements as [`CHUNKS`] allow (`sql(n)`
/// is the statement for `n` rows, `bind` binds one row from parameter
/// `i + 1` on); leaves `rows` empty.
fn insert_chunked(
    conn: &Connection,
    rows: &mut Vec<&PreparedWrite>,
    sql: fn(usize) -> String,
    bind: impl Fn(&mut rusqlite::CachedStatement<'_>, &mut usize, &PreparedWrite) -> rusqlite::Result<()>,
) -> Result<(), StoreError> {
    let mut rest: &[&PreparedWrite] = rows;
    while !rest.is_empty() {
        let n = CHUNKS.into_iter().find(|&n| n <= rest.len()).unwrap_or(1);
        let (chunk, tail) = rest.split_at(n);
        let mut stmt = conn.prepare_cached(&sql(n))?;
        let mut i = 0;
        for w in chunk {
            bind(&mut stmt, &mut i, w)?;
        }
        stmt.raw_execute()?;
        rest = tail;
    }
    rows.clear();
    Ok(())
}

/// `INSERT … VALUES (…), (…)` of `n` rows of `columns` columns.
fn multi_row_sql(head: &str, columns: usize, n: usize) -> String {
    let mut sql = String::from(head);
    let row = format!("({})", vec!["?"; columns].join(", "));
    for k in 0..n {
        if k > 0 {
            sql.push(',');
        }
        sql.push_str(&row);
    }
    sql
}

fn use_sql(n: usize) -> String {
    multi_row_sql(
        "INSERT INTO limit_uses (decision_id, bucket, time, amount) VALUES ",
        4,
        n,
    )
}

fn call_sql(n: usize) -> String {
    multi_row_sql(
        "INSERT INTO session_calls (decision_id, session, action, time, effect, input, output) VALUES ",
        7,
        n,
    )
}

/// A state change run by the writer thread on its own (not part of a
/// decision).
#[derive(Debug)]
pub(crate) enum StateOp {
    /// Remove what is older than the window or idle (see
    /// [`crate::Store::prune_state`]); the keys are bounds.
    Prune { window_key: String, idle_key: String },
    /// Remove limit uses (see [`crate::Store::reset_limits`]).
    Reset {
        rule: Option<String>,
        bucket: Option<BucketKey>,
    },
}

/// Runs `op` inside the writer's transaction; returns the rows removed.
pub(crate) fn run(conn: &Connection, op: &StateOp) -> Result<u64, StoreError> {
    let changed = match op {
        StateOp::Prune { window_key, idle_key } => {
            let mut n = conn
                .prepare_cached("DELETE FROM limit_uses WHERE time < ?1")?
                .execute([window_key])?;
            n += conn
                .prepare_cached("DELETE FROM session_calls WHERE time < ?1")?
                .execute([window_key])?;
            // An idle session's calls are all older than its last write:
            // found through the time index.
            n += conn
                .prepare_cached(
                    "DELETE FROM session_calls WHERE time < ?1 \
                     AND session IN (SELECT id FROM sessions WHERE last_seen < ?1)",
                )?
                .execute([idle_key])?;
            n += conn
                .prepare_cached(
                    "DELETE FROM session_labels WHERE session IN (SELECT id FROM sessions WHERE last_seen < ?1)",
                )?
                .execute([idle_key])?;
            n += conn
                .prepare_cached("DELETE FROM sessions WHERE last_seen < ?1")?
                .execute([idle_key])?;
            n
        }
        StateOp::Reset { rule, bucket } => match (rule, bucket) {
            (Some(rule), Some(bucket)) if *rule != bucket.rule => 0,
            // Scans the table: resets are rare, and an index by bucket
            // would cost every use a write in the middle of a B-tree.
            (_, Some(bucket)) => conn
                .prepare_cached("DELETE FROM limit_uses WHERE bucket = ?1")?
                .execute([bucket.id()])?,
            (Some(rule), None) => {
                // A bucket id is `[<rule as JSON>,[…]]`: a rule's buckets
                // are one range of ids.
                let (from, to) = rule_range(rule);
                conn.prepare_cached("DELETE FROM limit_uses WHERE bucket >= ?1 AND bucket < ?2")?
                    .execute([from, to])?
            }
            (None, None) => conn.prepare_cached("DELETE FROM limit_uses")?.execute([])?,
        },
    };
    Ok(u64::try_from(changed).unwrap_or(u64::MAX))
}

/// The range of bucket ids (`BucketKey::id`) of `rule`'s buckets: from
/// `[<rule>,` (inclusive) to `[<rule>-` (exclusive; `-` follows `,`).
fn rule_range(rule: &str) -> (String, String) {
    let quoted = serde_json::Value::String(rule.to_owned()).to_string();
    (format!("[{quoted},"), format!("[{quoted}-"))
}

/// A corrupt row of a state table (both stores' loads say it so).
pub(crate) fn corrupt(table: &str, what: impl std::fmt::Display) -> StoreError {
    StoreError(format!("the store's `{table}` table holds a corrupt row ({what})"))
}

/// A stored time key, or which row is corrupt.
pub(crate) fn parse_time(table: &str, key: &str) -> Result<Timestamp, StoreError> {
    key.parse().map_err(|e| corrupt(table, format!("time `{key}`: {e}")))
}

/// A stored JSON text, or which row is corrupt.
pub(crate) fn parse_json(table: &str, text: &str) -> Result<serde_json::Value, StoreError> {
    serde_json::from_str(text).map_err(|e| corrupt(table, format!("JSON: {e}")))
}

/// The state to rebuild a mirror from (see [`crate::Store::load_state`]),
/// read in one snapshot.
pub(crate) fn load(conn: &mut Connection, window_key: &str, idle_key: &str) -> Result<Vec<StateWrite>, StoreError> {
    let tx = conn.transaction()?;
    // (time, write): sorted by time at the end, stably, so an output stays
    // right after its call.
    let mut out: Vec<(Timestamp, StateWrite)> = Vec::new();
    {
        let mut stmt = tx.prepare_cached(
            "SELECT decision_id, bucket, time, amount FROM limit_uses WHERE time >= ?1 ORDER BY time, rowid",
        )?;
        let mut rows = stmt.query([window_key])?;
        while let Some(r) = rows.next()? {
            let bucket: String = r.get(1)?;
            let time: String = r.get(2)?;
            let amount: String = r.get(3)?;
            let time = parse_time("limit_uses", &time)?;
            let write = StateWrite::Use {
                decision_id: r.get(0)?,
                bucket: BucketKey::from_id(&bucket)
                    .ok_or_else(|| corrupt("limit_uses", format!("bucket `{bucket}`")))?,
                time,
                amount: Decimal::from_str(&amount)
                    .map_err(|e| corrupt("limit_uses", format!("amount `{amount}`: {e}")))?,
            };
            out.push((time, write));
        }
    }
    {
        let mut stmt = tx.prepare_cached(
            "SELECT c.decision_id, c.session, c.action, c.time, c.effect, c.input, c.output \
             FROM session_calls c JOIN sessions s ON s.id = c.session \
             WHERE s.last_seen >= ?2 AND c.time >= ?1 ORDER BY c.time, c.rowid",
        )?;
        let mut rows = stmt.query([window_key, idle_key])?;
        while let Some(r) = rows.next()? {
            let decision_id: String = r.get(0)?;
            let session: String = r.get(1)?;
            let time: String = r.get(3)?;
            let effect: String = r.get(4)?;
            let input: String = r.get(5)?;
            let output: Option<String> = r.get(6)?;
            let time = parse_time("session_calls", &time)?;
            let call = SessionCall {
                decision_id: decision_id.clone(),
                action: r.get(2)?,
                time,
                effect: Effect::parse(&effect).ok_or_else(|| corrupt("session_calls", format!("effect `{effect}`")))?,
                input: parse_json("session_calls", &input)?,
                output: None,
            };
            out.push((
                time,
                StateWrite::Call {
                    session: session.clone(),
                    call,
                },
            ));
            if let Some(output) = output {
                out.push((
                    time,
                    StateWrite::Output {
                        session,
                        decision_id,
                        output: parse_json("session_calls", &output)?,
                    },
                ));
            }
        }
    }
    {
        let mut stmt = tx.prepare_cached(
            "SELECT l.session, l.label, l.decision_id, l.time \
             FROM session_labels l JOIN sessions s ON s.id = l.session \
             WHERE s.last_seen >= ?1 ORDER BY l.time, l.rowid",
        )?;
        let mut rows = stmt.query([idle_key])?;
        while let Some(r) = rows.next()? {
            let time: String = r.get(3)?;
            let time = parse_time("session_labels", &time)?;
            out.push((
                time,
                StateWrite::Label {
                    session: r.get(0)?,
                    label: r.get(1)?,
                    decision_id: r.get(2)?,
                    time,
                },
            ));
        }
    }
    tx.finish()?;
    out.sort_by_key(|(time, _)| *time);
    Ok(out.into_iter().map(|(_, w)| w).collect())
}

/// Rows per state table (the file size is added by the caller).
pub(crate) fn size(conn: &mut Connection) -> Result<StoredStateSize, StoreError> {
    let tx = conn.transaction()?;
    let count = |sql: &str| -> Result<u64, StoreError> {
        let n: i64 = tx.query_row(sql, [], |r| r.get(0))?;
        Ok(u64::try_from(n).unwrap_or(0))
    };
    let size = StoredStateSize {
        buckets: count("SELECT count(*) FROM (SELECT DISTINCT bucket FROM limit_uses)")?,
        limit_uses: count("SELECT count(*) FROM limit_uses")?,
        sessions: count("SELECT count(*) FROM sessions")?,
        session_calls: count("SELECT count(*) FROM session_calls")?,
        session_labels: count("SELECT count(*) FROM session_labels")?,
        file_bytes: 0,
    };
    tx.finish()?;
    Ok(size)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn stored_times_round_up_and_bounds_down() {
        let t: Timestamp = "2026-01-01T00:00:00.000001500Z".parse().unwrap();
        assert_eq!(time_key(t), "2026-01-01T00:00:00.000002Z");
        assert_eq!(bound_key(t), "2026-01-01T00:00:00.000001Z");
        let exact: Timestamp = "2026-01-01T00:00:00.000001Z".parse().unwrap();
        assert_eq!(time_key(exact), bound_key(exact));
        let before_epoch: Timestamp = "1969-12-31T23:59:59.9999995Z".parse().unwrap();
        assert_eq!(time_key(before_epoch), "1970-01-01T00:00:00.000000Z");
    }

    #[test]
    fn a_rules_range_holds_its_buckets_only() {
        let (from, to) = rule_range("refund");
        let inside = |rule: &str, per: Vec<(String, String)>| {
            let id = BucketKey { rule: rule.into(), per }.id();
            from <= id && id < to
        };
        assert!(inside("refund", vec![]));
        assert!(inside("refund", vec![("actor.id".into(), "\"z\"".into())]));
        assert!(!inside("refund_rate", vec![]));
        assert!(!inside("refun", vec![]));
        assert!(!inside("refund\"", vec![]));
    }
}
