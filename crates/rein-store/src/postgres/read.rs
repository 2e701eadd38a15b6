//! Reads of the audit log: queries, the chain's verification, its length,
//! the activation records. Same order, filters and verdicts as
//! `sqlite/read.rs`.

use tokio_postgres::types::ToSql;

use super::PostgresStore;
use crate::chain::{self, Verifier};
use crate::rule_index::{self, RuleDigest};
use crate::sqlite::columns::Columns;
use crate::versions::ACTIVATE_PHASE;
use crate::{AuditEntry, AuditQuery, AuditRecord, StoreError, Verification};

/// Default of [`AuditQuery::limit`] (as SQLite's).
const DEFAULT_LIMIT: u64 = 1_000;
/// The cap on [`AuditQuery::limit`] (as SQLite's).
const MAX_LIMIT: u64 = 10_000;
/// Rows fetched at a time by `verify`.
const VERIFY_PAGE: i32 = 5_000;

/// A record read back: checked against its hash, its entry read from its
/// body (the text the chain covers), not from the filter columns.
fn record(seq: i64, body: &str, prev_hash: String, hash: String) -> Result<AuditRecord, StoreError> {
    if chain::record_hash(&prev_hash, body) != hash {
        return Err(StoreError(format!(
            "audit record {seq} does not match its hash (it was changed); run verify"
        )));
    }
    let entry: AuditEntry = serde_json::from_str(body)
        .map_err(|e| StoreError(format!("audit record {seq} is corrupt ({e}); run verify")))?;
    Ok(AuditRecord {
        seq: u64::try_from(seq).map_err(|_| StoreError(format!("audit record {seq} has a negative seq")))?,
        entry,
        prev_hash,
        hash,
    })
}

/// Records matching `q`, in sequence order (newest first when
/// `q.descending`). A rule filter drives the query from the rule index;
/// the other equality filters have `(column, seq)` indexes (schema V2), so
/// a page reads about as many rows as it returns.
pub(crate) async fn query_audit(store: &PostgresStore, q: &AuditQuery) -> Result<Vec<AuditRecord>, StoreError> {
    query_audit_with(store, q, NARROW_TIME_RANGE).await
}

/// [`query_audit`] with `narrow` as the bound of a narrow time range (the
/// tests take every path with small logs).
async fn query_audit_with(store: &PostgresStore, q: &AuditQuery, narrow: i64) -> Result<Vec<AuditRecord>, StoreError> {
    let since = q.since.as_deref().map(chain::parse_time).transpose()?;
    let until = q.until.as_deref().map(chain::parse_time).transpose()?;
    let client = store.client().await?;
    // A narrow time range with no selective filter is read from the time
    // index and sorted: the planner, assuming the range's records spread
    // evenly over the log, would walk the log backwards from its newest
    // record instead, reading everything newer than the range (seconds
    // on a large log for a range in the past). Ordering by `seq + 0`
    // takes that path away from it.
    let selective = q.decision_id.is_some() || q.session.is_some() || q.actor.is_some() || q.rule.is_some();
    let time_driven = !selective
        && (since.is_some() || until.is_some())
        && narrow_time_range(&client, since.as_deref(), until.as_deref(), narrow).await?;
    let limit = q.limit.unwrap_or(DEFAULT_LIMIT).min(MAX_LIMIT);
    // A broad time range alone, in the past: the page's span of `seq`,
    // from the time index alone (as SQLite's `seq_window`).
    let mut window = None;
    if !selective
        && !time_driven
        && (since.is_some() || until.is_some())
        && q.action.is_none()
        && q.effect.is_none()
        && q.trace.is_none()
    {
        match seq_window(&client, since.as_deref(), until.as_deref(), q, limit).await? {
            Window::Empty => return Ok(Vec::new()),
            Window::Whole => {}
            Window::Seqs(lo, hi) => window = Some((lo, hi)),
        }
    }
    let mut args: Vec<Box<dyn ToSql + Sync + Send>> = Vec::new();
    let (mut sql, seq) = match &q.rule {
        Some(rule) => {
            args.push(Box::new(rule.clone()));
            (
                String::from(
                    "SELECT audit.seq, audit.body, audit.prev_hash, audit.hash FROM audit_rules JOIN audit \
                     ON audit.seq = audit_rules.seq WHERE audit_rules.rule = $1",
                ),
                "audit_rules.seq",
            )
        }
        None => (
            String::from("SELECT audit.seq, audit.body, audit.prev_hash, audit.hash FROM audit WHERE true"),
            "audit.seq",
        ),
    };
    let mut filter = |clause: &str, value: Box<dyn ToSql + Sync + Send>| {
        args.push(value);
        sql.push_str(" AND ");
        sql.push_str(&clause.replace('?', &format!("${}", args.len())));
    };
    if let Some(since) = &since {
        filter("audit.time >= ?", Box::new(since.clone()));
    }
    if let Some(until) = &until {
        filter("audit.time < ?", Box::new(until.clone()));
    }
    for (column, value) in [
        ("audit.actor_id", &q.actor),
        ("audit.action", &q.action),
        ("audit.effect", &q.effect),
        ("audit.session", &q.session),
        ("audit.decision_id", &q.decision_id),
    ] {
        if let Some(v) = value {
            filter(&format!("{column} = ?"), Box::new(v.clone()));
        }
    }
    let bound = |n: u64| Box::new(i64::try_from(n).unwrap_or(i64::MAX));
    if let Some(trace) = &q.trace {
        // As SQLite's: no column, the body's canonical tail (see
        // `sqlite/read.rs`), written as the partial index `audit_trace`
        // (V2) is, so that the planner can use it.
        filter(
            "left(right(audit.body, 67), 13) = ',\"trace\":\"00-' AND substr(right(audit.body, 67), 14, 32) = ?",
            Box::new(trace.clone()),
        );
    }
    if let Some(after) = q.after_seq {
        filter(&format!("{seq} > ?"), bound(after));
    }
    if let Some(before) = q.before_seq {
        filter(&format!("{seq} < ?"), bound(before));
    }
    if let Some((lo, hi)) = window {
        filter(&format!("{seq} >= ?"), Box::new(lo));
        filter(&format!("{seq} <= ?"), Box::new(hi));
    }
    // A parameter, not a literal: the statement is prepared once per set of
    // filters on each pooled connection, whatever the limit.
    args.push(Box::new(i64::try_from(limit).unwrap_or(i64::MAX)));
    sql.push_str(&format!(
        " ORDER BY {seq}{} {} LIMIT ${}",
        if time_driven { " + 0" } else { "" },
        if q.descending { "DESC" } else { "ASC" },
        args.len()
    ));
    let stmt = client.prepare_cached(&sql).await?;
    let params: Vec<&(dyn ToSql + Sync)> = args.iter().map(|a| a.as_ref() as &(dyn ToSql + Sync)).collect();
    let rows = client.query(&stmt, &params).await?;
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let seq: i64 = r.try_get(0)?;
        let body: &str = r.try_get(1)?;
        let rec = record(seq, body, r.try_get(2)?, r.try_get(3)?)?;
        // The row was selected by its columns, which the chain does not
        // cover: a record brought in by an edited column is refused.
        if let Some(filter) = unmatched_filter(q, &rec.entry, since.as_deref(), until.as_deref()) {
            return Err(StoreError(format!(
                "audit record {seq} was selected by its `{filter}` column, but its body does not match the filter \
                 (the column was edited); run verify"
            )));
        }
        out.push(rec);
    }
    Ok(out)
}

/// Where the records of a broad time range (the query's only filter) are
/// (as SQLite's).
enum Window {
    /// Walk the log in `seq` order: the range reaches the end it starts
    /// from.
    Whole,
    /// None within the query's `seq` bounds.
    Empty,
    /// The page's records are exactly those of the range between these
    /// sequence numbers (inclusive).
    Seqs(i64, i64),
}

/// For a broad time range that does not reach the end of the log a query
/// starts from, the `seq` span of the page's records, from the `(time,
/// seq)` index alone (`seq + 0` keeps the planner off the primary key).
async fn seq_window(
    client: &deadpool_postgres::Object,
    since: Option<&str>,
    until: Option<&str>,
    q: &AuditQuery,
    limit: u64,
) -> Result<Window, StoreError> {
    let seq_bound = |n: Option<u64>, none: i64| n.map_or(none, |n| i64::try_from(n).unwrap_or(i64::MAX));
    let (after, before) = (seq_bound(q.after_seq, 0), seq_bound(q.before_seq, i64::MAX));
    let order = if q.descending { "DESC" } else { "ASC" };
    let stmt = client
        .prepare_cached(&format!(
            "SELECT time FROM audit WHERE seq > $1 AND seq < $2 ORDER BY seq {order} LIMIT 1"
        ))
        .await?;
    let Some(first) = client.query_opt(&stmt, &[&after, &before]).await? else {
        return Ok(Window::Empty);
    };
    let first: &str = first.try_get(0)?;
    if since.is_none_or(|s| first >= s) && until.is_none_or(|u| first < u) {
        return Ok(Window::Whole);
    }
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let mut params: Vec<&(dyn ToSql + Sync)> = vec![&after, &before, &limit];
    let mut sql = String::from("SELECT min(seq), max(seq) FROM (SELECT seq FROM audit WHERE seq > $1 AND seq < $2");
    if let Some(since) = &since {
        params.push(since);
        sql.push_str(&format!(" AND time >= ${}", params.len()));
    }
    if let Some(until) = &until {
        params.push(until);
        sql.push_str(&format!(" AND time < ${}", params.len()));
    }
    sql.push_str(&format!(" ORDER BY seq + 0 {order} LIMIT $3) AS r"));
    let stmt = client.prepare_cached(&sql).await?;
    let row = client.query_one(&stmt, &params).await?;
    Ok(
        match (row.try_get::<_, Option<i64>>(0)?, row.try_get::<_, Option<i64>>(1)?) {
            (Some(lo), Some(hi)) => Window::Seqs(lo, hi),
            _ => Window::Empty,
        },
    )
}

/// Rows of a time range above which it is not read from the time index
/// (as SQLite's `NARROW_TIME_RANGE`).
const NARROW_TIME_RANGE: i64 = 20_000;

/// Whether the time range of a query holds at most
/// [`NARROW_TIME_RANGE`] records, counted from the time index and stopping
/// at the bound.
async fn narrow_time_range(
    client: &deadpool_postgres::Object,
    since: Option<&str>,
    until: Option<&str>,
    narrow: i64,
) -> Result<bool, StoreError> {
    // Only the bounds given, so that the range reads the index, and no
    // `seq` bound: the index has no `seq`, and they only narrow it more.
    let mut sql = String::from("SELECT count(*) FROM (SELECT 1 FROM audit WHERE true ");
    let cap = narrow.saturating_add(1);
    let mut params: Vec<&(dyn ToSql + Sync)> = vec![&cap];
    if let Some(since) = &since {
        params.push(since);
        sql.push_str(&format!("AND time >= ${} ", params.len()));
    }
    if let Some(until) = &until {
        params.push(until);
        sql.push_str(&format!("AND time < ${} ", params.len()));
    }
    sql.push_str("LIMIT $1) AS r");
    let stmt = client.prepare_cached(&sql).await?;
    let n: i64 = client.query_one(&stmt, &params).await?.try_get(0)?;
    Ok(n <= narrow)
}

/// The first filter of `q` that `entry` (read from a body) does not
/// satisfy, by its column name (as `sqlite/read.rs`).
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
pub(crate) async fn audit_len(store: &PostgresStore) -> Result<u64, StoreError> {
    let client = store.client().await?;
    let n: i64 = client
        .query_one("SELECT coalesce(max(seq), 0)::bigint FROM audit", &[])
        .await?
        .try_get(0)?;
    Ok(u64::try_from(n).unwrap_or(0))
}

fn changed(seq: u64, problem: &str) -> Verification {
    Verification::Broken {
        seq,
        problem: format!("record {seq} was changed: {problem}"),
    }
}

/// Walks every record in sequence order through the chain verifier, in
/// pages of one snapshot (the head and the rows agree, whatever replicas
/// commit meanwhile), and checks each record's query columns against its
/// body, as SQLite's verify does.
pub(crate) async fn verify_audit(store: &PostgresStore) -> Result<Verification, StoreError> {
    let mut client = store.client().await?;
    let tx = client
        .build_transaction()
        .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await?;
    // A long log takes longer than one statement may: the walk is bounded
    // by its pages, not by the server's timeouts.
    tx.batch_execute("SET LOCAL statement_timeout = 0; SET LOCAL idle_in_transaction_session_timeout = 0")
        .await?;
    let head = tx
        .query_opt("SELECT seq, hash FROM chain_head WHERE id = 1", &[])
        .await?
        .map(|r| -> Result<(i64, String), StoreError> { Ok((r.try_get(0)?, r.try_get(1)?)) })
        .transpose()?;
    let stmt = tx
        .prepare(
            "SELECT seq, body, prev_hash, hash, time, decision_id, phase, action, actor_id, session, effect, rules \
             FROM audit ORDER BY seq",
        )
        .await?;
    let portal = tx.bind(&stmt, &[]).await?;
    let mut verifier = Verifier::new();
    // A record whose columns disagree with its body, reported only if the
    // chain holds past it (see `sqlite/read.rs`).
    let mut pending: Option<(u64, String)> = None;
    let mut column_verdict = None;
    // The `(seq, rule)` pairs the bodies name, for the rule index.
    let mut rules = RuleDigest::default();
    'pages: loop {
        let rows = tx.query_portal(&portal, VERIFY_PAGE).await?;
        if rows.is_empty() {
            break;
        }
        for r in rows {
            let raw_seq: i64 = r.try_get(0)?;
            let Ok(seq) = u64::try_from(raw_seq) else {
                verifier.push_unreadable(0, &format!("a row has the sequence number {raw_seq}"));
                break 'pages;
            };
            let body: &str = r.try_get(1)?;
            let prev: &str = r.try_get(2)?;
            let hash: &str = r.try_get(3)?;
            if !verifier.push(seq, body, prev, hash) {
                break 'pages;
            }
            if let Some((bad, problem)) = pending.take() {
                column_verdict = Some(changed(bad, &problem));
                break 'pages;
            }
            let mut stored: [Option<&str>; 8] = [None; 8];
            for (i, col) in stored.iter_mut().enumerate() {
                *col = r.try_get(i + 4)?;
            }
            let problem = match Columns::from_body(body) {
                Err(why) => Some(why),
                Ok(derived) => derived
                    .mismatch(stored)
                    .or_else(|| rules.add_record(seq, &derived.rules).err()),
            };
            pending = problem.map(|p| (seq, p));
        }
    }
    drop(portal);
    if let Some(verdict) = column_verdict {
        tx.commit().await?;
        return Ok(verdict);
    }
    let head = head
        .as_ref()
        .map(|(seq, hash)| (u64::try_from(*seq).unwrap_or(u64::MAX), hash.as_str()));
    let verdict = match (verifier.finish(head), pending) {
        (Verification::Intact { .. }, Some((seq, problem))) => changed(seq, &problem),
        (verdict, _) => verdict,
    };
    // The chain and the columns hold: the rule index must hold the pairs
    // the bodies name, no more, no fewer (in the same snapshot).
    let verdict = match verdict {
        Verification::Intact { records } => {
            let stmt = tx.prepare("SELECT seq, rule FROM audit_rules").await?;
            let portal = tx.bind(&stmt, &[]).await?;
            let mut index = RuleDigest::default();
            loop {
                let rows = tx.query_portal(&portal, VERIFY_PAGE).await?;
                if rows.is_empty() {
                    break;
                }
                for r in rows {
                    let seq: i64 = r.try_get(0)?;
                    let rule: &str = r.try_get(1)?;
                    index.add(u64::try_from(seq).unwrap_or(u64::MAX), rule);
                }
            }
            drop(portal);
            if index == rules {
                Verification::Intact { records }
            } else {
                let first: Option<i64> = tx.query_one(RULE_INDEX_MISMATCH, &[]).await?.try_get(0)?;
                let (seq, problem) = rule_index::mismatch_problem(first.and_then(|s| u64::try_from(s).ok()));
                Verification::Broken { seq, problem }
            }
        }
        broken => broken,
    };
    tx.commit().await?;
    Ok(verdict)
}

/// The first record whose rule index rows differ from its `rules` column
/// (which `verify` has checked against the body): only run once the
/// digests disagree.
const RULE_INDEX_MISMATCH: &str = "SELECT min(seq)::bigint FROM (\
     (SELECT audit.seq, e #>> '{}' FROM audit, jsonb_array_elements(audit.rules::jsonb) AS e \
         EXCEPT SELECT seq, rule FROM audit_rules) \
     UNION ALL \
     (SELECT seq, rule FROM audit_rules \
         EXCEPT SELECT audit.seq, e #>> '{}' FROM audit, jsonb_array_elements(audit.rules::jsonb) AS e)) AS d (seq, rule)";

/// The activation records, in sequence order, through the partial index.
pub(crate) async fn activations(store: &PostgresStore) -> Result<Vec<AuditRecord>, StoreError> {
    let client = store.client().await?;
    let stmt = client
        .prepare_cached("SELECT seq, body, prev_hash, hash FROM audit WHERE phase = 'activate' ORDER BY seq")
        .await?;
    let rows = client.query(&stmt, &[]).await?;
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let seq: i64 = r.try_get(0)?;
        let body: &str = r.try_get(1)?;
        let rec = record(seq, body, r.try_get(2)?, r.try_get(3)?)?;
        if rec.entry.phase != ACTIVATE_PHASE {
            return Err(StoreError(format!(
                "audit record {seq} was selected by its `phase` column, but its body is not an activation \
                 (the column was edited); run verify"
            )));
        }
        out.push(rec);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use crate::{PostgresOptions, Store};

    /// Record `i`'s time: mostly increasing with `seq`, some out of order.
    fn time(i: u64) -> String {
        let minute = if i % 7 == 3 { i / 2 } else { i };
        format!("2025-06-01T{:02}:{:02}:00.000000Z", minute / 60 % 24, minute % 60)
    }

    /// As SQLite's: whichever path a time range takes, a query returns
    /// exactly the records in the range, in order. Runs on the cluster of
    /// `REIN_TEST_PG` (a database of its own, dropped after).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_time_range_path_returns_the_range() {
        let Some(admin) = std::env::var("REIN_TEST_PG").ok().filter(|u| !u.is_empty()) else {
            eprintln!("skipped: REIN_TEST_PG is not set");
            return;
        };
        let mut bytes = [0u8; 6];
        getrandom::fill(&mut bytes).unwrap();
        let name = format!("rein_t_{}", crate::chain::hex(&bytes));
        let (client, conn) = tokio_postgres::connect(&admin, tokio_postgres::NoTls).await.unwrap();
        tokio::spawn(conn);
        client.batch_execute(&format!("CREATE DATABASE {name}")).await.unwrap();
        let (base, query) = admin.split_once('?').map_or((admin.as_str(), ""), |(b, q)| (b, q));
        let url = format!(
            "{}/{name}{}",
            &base[..base.rfind('/').unwrap()],
            if query.is_empty() {
                String::new()
            } else {
                format!("?{query}")
            }
        );
        let result = {
            let store = PostgresStore::open(&url, PostgresOptions::default()).await.unwrap();
            check(&store).await
        };
        client
            .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .await
            .unwrap();
        result.unwrap();
    }

    async fn check(store: &PostgresStore) -> Result<(), String> {
        let n = 200u64;
        for i in 1..=n {
            let e: crate::AuditEntry = serde_json::from_value(serde_json::json!({
                "decision_id": format!("d{i}"), "time": time(i), "phase": "before", "action": "a",
                "input": {}, "actor": {"id": "x"}, "snapshot": {}, "output": null, "error": null,
                "session": null, "effect": "allow", "rules": [], "reasons": [], "policy_version": "v",
                "latency_us": 1, "approval": null
            }))
            .unwrap();
            store.append(e).await.map_err(|e| e.to_string())?;
        }
        let minute = |m: u64| format!("2025-06-01T{:02}:{:02}:00.000000Z", m / 60 % 24, m % 60);
        // A fixed spread of ranges, bounds and directions.
        for k in 0..150u64 {
            let since = (k % 5 != 0).then(|| minute((k * 37) % (n + 1)));
            let until = (k % 4 != 1).then(|| minute((k * 53 + 20) % (n + 1)));
            if since.is_none() && until.is_none() {
                continue;
            }
            let after = (k % 3 == 0).then_some((k * 11) % n);
            let before = (k % 6 < 3).then_some((k * 29) % (n + 2));
            let descending = k % 2 == 0;
            let limit = 1 + k % 23;
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
                    let t = time(s);
                    since.as_deref().is_none_or(|x| t.as_str() >= x) && until.as_deref().is_none_or(|x| t.as_str() < x)
                })
                .collect();
            if descending {
                want.reverse();
            }
            want.truncate(limit as usize);
            for narrow in [0, 3, i64::MAX] {
                let got: Vec<u64> = query_audit_with(store, &q, narrow)
                    .await
                    .map_err(|e| e.to_string())?
                    .iter()
                    .map(|r| r.seq)
                    .collect();
                if got != want {
                    return Err(format!("narrow {narrow}: {q:?}: got {got:?}, want {want:?}"));
                }
            }
        }
        Ok(())
    }
}
