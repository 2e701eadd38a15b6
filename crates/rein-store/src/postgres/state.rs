//! The state of stateful rules in PostgreSQL: loading, pruning, resets and
//! sizes. (The writes themselves are the writer's, in the transaction of
//! their decision's record, with its `seq`.)
//!
//! Same results as `sqlite/state.rs` for the same writes: times are the
//! same fixed-width UTC keys in `COLLATE "C"` columns (stored rounded up
//! to the microsecond by the writer; bounds here rounded down, so that a
//! load or a prune keeps, never drops, an edge row), and rows of one time
//! come in insertion order (`row_order`, SQLite's rowid).
//!
//! # Pruning a shared store
//!
//! Replicas may serve policies of different `max_window` (one that could
//! not load the version published yet, a rolling switch) and different
//! session idle times. A replica pruning with its own narrower window
//! would delete uses that a replica on a wider one still counts (it then
//! allows past its limit at its next reload). So every replica records, in
//! `store_meta`, the window and idle time it reads the state with (a
//! monotone maximum: [`widest_spans`]) and prunes with the widest recorded
//! (the runtime does), plus twice [`MAX_CLOCK_SKEW`], the clock difference
//! the lease tolerates (two replicas, each within it of the database's
//! clock but off in opposite directions, differ by twice that). The
//! runtime prunes from the earlier of its clock and the database's
//! ([`database_now`]), and not at all when they differ by more than the
//! skew. [`crate::Store::prune_state`] itself removes what it is told to,
//! as SQLite's does.

use std::str::FromStr;

use jiff::{SignedDuration, Timestamp};
use rein_engine::state::{BucketKey, Decimal, SessionCall};
use rein_engine::Effect;
use tokio_postgres::IsolationLevel;

use super::lease::MAX_CLOCK_SKEW;
use super::PostgresStore;
use crate::sqlite::state::{corrupt, parse_json, parse_time};
use crate::{chain, StateWrite, StoreError, StoredStateSize};

/// The `store_meta` key of the widest window (microseconds) any replica
/// loaded or pruned the state with.
const WIDEST_WINDOW: &str = "widest_state_window_us";
/// The `store_meta` key of the widest session idle time (microseconds).
const WIDEST_IDLE: &str = "widest_session_idle_us";

/// [`crate::Store::widest_state_spans`]: records `max_window` and
/// `session_idle` (monotone maxima, in microseconds, in `store_meta`) and
/// returns the widest recorded, each widened by twice [`MAX_CLOCK_SKEW`]
/// (a replica whose clock is ahead by up to that prunes nothing another,
/// behind by up to that, still counts).
pub(crate) async fn widest_spans(
    store: &PostgresStore,
    max_window: SignedDuration,
    session_idle: SignedDuration,
) -> Result<(SignedDuration, SignedDuration), StoreError> {
    let conn = store.client().await?;
    let stmt = conn
        .prepare_cached(
            "INSERT INTO store_meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE \
             SET value = greatest(store_meta.value::int8, EXCLUDED.value::int8)::text RETURNING value",
        )
        .await?;
    let skew = SignedDuration::try_from(MAX_CLOCK_SKEW * 2).unwrap_or(SignedDuration::MAX);
    let mut widest = [SignedDuration::ZERO; 2];
    for (i, (key, span)) in [(WIDEST_WINDOW, max_window), (WIDEST_IDLE, session_idle)]
        .into_iter()
        .enumerate()
    {
        let micros = i64::try_from(span.as_micros().max(0)).unwrap_or(i64::MAX);
        let value: String = conn.query_one(&stmt, &[&key, &micros.to_string()]).await?.try_get(0)?;
        let recorded: i64 = value
            .parse()
            .map_err(|_| StoreError(format!("the store's `store_meta` holds a corrupt `{key}`: `{value}`")))?;
        widest[i] = SignedDuration::from_micros(recorded).saturating_add(skew);
    }
    Ok((widest[0], widest[1]))
}

/// [`crate::Store::database_now`]: the database's clock.
pub(crate) async fn database_now(store: &PostgresStore) -> Result<Timestamp, StoreError> {
    let conn = store.client().await?;
    let stmt = conn
        .prepare_cached("SELECT (extract(epoch FROM clock_timestamp()) * 1000000)::int8")
        .await?;
    let micros: i64 = conn.query_one(&stmt, &[]).await?.try_get(0)?;
    Timestamp::from_microsecond(micros).map_err(|e| {
        StoreError(format!(
            "the database's clock reads an impossible time ({micros} µs): {e}"
        ))
    })
}

/// The fixed-width key of a bound (a window's start), rounded down: as
/// SQLite's `state::bound_key`.
fn bound_key(t: Timestamp) -> String {
    chain::format_time(t)
}

/// [`crate::Store::load_state`], read in one snapshot.
pub(crate) async fn load(
    store: &PostgresStore,
    window_start: Timestamp,
    idle_start: Timestamp,
) -> Result<Vec<StateWrite>, StoreError> {
    let window_key = bound_key(window_start);
    let idle_key = bound_key(idle_start);
    let mut conn = store.client().await?;
    // One snapshot for the three reads: a call is never loaded without
    // the session row that admitted it, nor a use of a record half seen.
    let tx = conn
        .build_transaction()
        .isolation_level(IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await?;
    // (time, write): sorted by time at the end, stably, so an output stays
    // right after its call.
    let mut out: Vec<(Timestamp, StateWrite)> = Vec::new();
    let stmt = tx
        .prepare_cached(
            "SELECT decision_id, bucket, time, amount FROM limit_uses WHERE time >= $1 ORDER BY time, row_order",
        )
        .await?;
    for r in tx.query(&stmt, &[&window_key]).await? {
        let bucket: String = r.try_get(1)?;
        let time: String = r.try_get(2)?;
        let amount: String = r.try_get(3)?;
        let time = parse_time("limit_uses", &time)?;
        let write = StateWrite::Use {
            decision_id: r.try_get(0)?,
            bucket: BucketKey::from_id(&bucket).ok_or_else(|| corrupt("limit_uses", format!("bucket `{bucket}`")))?,
            time,
            amount: Decimal::from_str(&amount).map_err(|e| corrupt("limit_uses", format!("amount `{amount}`: {e}")))?,
        };
        out.push((time, write));
    }
    let stmt = tx
        .prepare_cached(
            "SELECT c.decision_id, c.session, c.action, c.time, c.effect, c.input, c.output \
             FROM session_calls c JOIN sessions s ON s.id = c.session \
             WHERE s.last_seen >= $2 AND c.time >= $1 ORDER BY c.time, c.row_order",
        )
        .await?;
    for r in tx.query(&stmt, &[&window_key, &idle_key]).await? {
        let decision_id: String = r.try_get(0)?;
        let session: String = r.try_get(1)?;
        let time: String = r.try_get(3)?;
        let effect: String = r.try_get(4)?;
        let input: String = r.try_get(5)?;
        let output: Option<String> = r.try_get(6)?;
        let time = parse_time("session_calls", &time)?;
        let call = SessionCall {
            decision_id: decision_id.clone(),
            action: r.try_get(2)?,
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
    let stmt = tx
        .prepare_cached(
            "SELECT l.session, l.label, l.decision_id, l.time \
             FROM session_labels l JOIN sessions s ON s.id = l.session \
             WHERE s.last_seen >= $1 ORDER BY l.time, l.row_order",
        )
        .await?;
    for r in tx.query(&stmt, &[&idle_key]).await? {
        let time: String = r.try_get(3)?;
        let time = parse_time("session_labels", &time)?;
        out.push((
            time,
            StateWrite::Label {
                session: r.try_get(0)?,
                label: r.try_get(1)?,
                decision_id: r.try_get(2)?,
                time,
            },
        ));
    }
    tx.commit().await?;
    out.sort_by_key(|(time, _)| *time);
    Ok(out.into_iter().map(|(_, w)| w).collect())
}

/// [`crate::Store::prune_state`], in one transaction.
pub(crate) async fn prune(
    store: &PostgresStore,
    window_start: Timestamp,
    idle_start: Timestamp,
) -> Result<u64, StoreError> {
    let window_key = bound_key(window_start);
    let idle_key = bound_key(idle_start);
    let mut conn = store.client().await?;
    let tx = conn.transaction().await?;
    let mut n = 0;
    for (sql, key) in [
        ("DELETE FROM limit_uses WHERE time < $1", &window_key),
        ("DELETE FROM session_calls WHERE time < $1", &window_key),
        // An idle session's calls are all older than its last write:
        // found through the time index.
        (
            "DELETE FROM session_calls WHERE time < $1 \
             AND session IN (SELECT id FROM sessions WHERE last_seen < $1)",
            &idle_key,
        ),
        (
            "DELETE FROM session_labels WHERE session IN (SELECT id FROM sessions WHERE last_seen < $1)",
            &idle_key,
        ),
        ("DELETE FROM sessions WHERE last_seen < $1", &idle_key),
    ] {
        let stmt = tx.prepare_cached(sql).await?;
        n += tx.execute(&stmt, &[key]).await?;
    }
    tx.commit().await?;
    Ok(n)
}

/// [`crate::Store::reset_limits`]: the uses removed and the lease's epoch
/// bumped in one transaction, so that every replica reloads its state at
/// its next lease (the deltas of a lease replay additions only).
pub(crate) async fn reset_limits(
    store: &PostgresStore,
    rule: Option<String>,
    bucket: Option<String>,
) -> Result<u64, StoreError> {
    let bucket = bucket
        .map(|id| {
            BucketKey::from_id(&id).ok_or_else(|| {
                StoreError(format!(
                    "`{id}` is not a bucket id (a JSON array `[rule, [[key, value], …]]`)"
                ))
            })
        })
        .transpose()?;
    let mut conn = store.client().await?;
    let tx = conn.transaction().await?;
    let removed = match (&rule, &bucket) {
        (Some(rule), Some(bucket)) if *rule != bucket.rule => 0,
        (_, Some(bucket)) => {
            let stmt = tx.prepare_cached("DELETE FROM limit_uses WHERE bucket = $1").await?;
            tx.execute(&stmt, &[&bucket.id()]).await?
        }
        (Some(rule), None) => {
            // A bucket id is `[<rule as JSON>,[…]]`: a rule's buckets are
            // those whose id starts with `[<rule as JSON>,`.
            let stmt = tx
                .prepare_cached("DELETE FROM limit_uses WHERE starts_with(bucket, $1)")
                .await?;
            tx.execute(&stmt, &[&rule_prefix(rule)]).await?
        }
        (None, None) => {
            let stmt = tx.prepare_cached("DELETE FROM limit_uses").await?;
            tx.execute(&stmt, &[]).await?
        }
    };
    if removed > 0 {
        let stmt = tx
            .prepare_cached("UPDATE rein_state_lease SET epoch = epoch + 1 WHERE id = 1")
            .await?;
        if tx.execute(&stmt, &[]).await? != 1 {
            return Err(StoreError(
                "the store's state lease row is missing (the database was altered)".into(),
            ));
        }
    }
    tx.commit().await?;
    Ok(removed)
}

/// The start every bucket id of `rule` has (see `BucketKey::id`).
fn rule_prefix(rule: &str) -> String {
    let quoted = serde_json::Value::String(rule.to_owned()).to_string();
    format!("[{quoted},")
}

/// [`crate::Store::state_size`]: rows per state table, and the bytes of
/// the store's tables (with their indexes and TOAST) as `file_bytes`.
pub(crate) async fn size(store: &PostgresStore) -> Result<StoredStateSize, StoreError> {
    let mut conn = store.client().await?;
    let tx = conn
        .build_transaction()
        .isolation_level(IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await?;
    let stmt = tx
        .prepare_cached(
            "SELECT (SELECT count(DISTINCT bucket) FROM limit_uses), (SELECT count(*) FROM limit_uses), \
             (SELECT count(*) FROM sessions), (SELECT count(*) FROM session_calls), \
             (SELECT count(*) FROM session_labels), \
             (SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0)::bigint FROM pg_class c \
              WHERE c.relnamespace = (SELECT oid FROM pg_namespace WHERE nspname = current_schema()) \
              AND c.relkind = 'r')",
        )
        .await?;
    let r = tx.query_one(&stmt, &[]).await?;
    let n = |i: usize| -> Result<u64, StoreError> { Ok(u64::try_from(r.try_get::<_, i64>(i)?).unwrap_or(0)) };
    let size = StoredStateSize {
        buckets: n(0)?,
        limit_uses: n(1)?,
        sessions: n(2)?,
        session_calls: n(3)?,
        session_labels: n(4)?,
        file_bytes: n(5)?,
    };
    tx.commit().await?;
    Ok(size)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn a_rules_prefix_starts_its_buckets_only() {
        let prefix = rule_prefix("refund");
        let inside =
            |rule: &str, per: Vec<(String, String)>| BucketKey { rule: rule.into(), per }.id().starts_with(&prefix);
        assert!(inside("refund", vec![]));
        assert!(inside("refund", vec![("actor.id".into(), "\"z\"".into())]));
        assert!(!inside("refund_rate", vec![]));
        assert!(!inside("refun", vec![]));
        assert!(!inside("refund\"", vec![]));
    }
}
