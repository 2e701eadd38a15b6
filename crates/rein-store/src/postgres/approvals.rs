//! Approvals in PostgreSQL: single-use across replicas with conditional
//! UPDATEs (see DESIGN-18 §5). Same semantics and errors as
//! `sqlite/approvals.rs` and the SQLite writer's approval commands.
//!
//! SQLite serialises approval changes on its one writer thread; here
//! several processes change them at once, so each change is correct on
//! its own:
//! - a use is ONE conditional `UPDATE … WHERE state = 'granted' AND …
//!   RETURNING`: of concurrent uses (any replicas) exactly one gets the row
//!   back; the others then read why it was refused;
//! - a decision locks the row (`SELECT … FOR UPDATE`) in its transaction,
//!   checks as SQLite does, and repeats the conditions in its UPDATE: a
//!   concurrent decision waits for the lock and then finds it decided.
//!
//! Times are compared as the fixed-width UTC keys of
//! [`chain::parse_time`] in `COLLATE "C"` columns, as in SQLite.

use deadpool_postgres::GenericClient;
use tokio_postgres::types::ToSql;
use tokio_postgres::Row;

use super::PostgresStore;
use crate::approval_gate::{ApprovalRow, Gate};
use crate::{chain, ApprovalError, ApprovalRecord, ApprovalState, StoreError};

/// The most approvals one list returns (as SQLite's `MAX_APPROVALS`).
const MAX_APPROVALS: u64 = 10_000;

/// The columns [`from_row`] reads, in its order.
use crate::approval_gate::COLUMNS;

/// Newest first; ties of `created_key` in insertion order reversed (as
/// SQLite's `rowid DESC`).
const NEWEST_FIRST: &str = "ORDER BY created_key DESC, row_order DESC";

type Params<'a> = &'a [&'a (dyn ToSql + Sync)];

fn limit_param(limit: u64) -> i64 {
    i64::try_from(limit.min(MAX_APPROVALS)).unwrap_or(i64::MAX)
}

/// [`crate::Store::find_open_approval`].
pub(crate) async fn find_open(
    store: &PostgresStore,
    request_hash: &str,
    client: Option<&str>,
    now: &str,
) -> Result<Option<ApprovalRecord>, StoreError> {
    let now_key = chain::parse_time(now)?;
    let conn = store.client().await?;
    let found = select(
        &conn,
        &format!(
            "WHERE request_hash = $1 AND requested_via IS NOT DISTINCT FROM $2 AND state = 'pending' \
             AND expires_key > $3 {NEWEST_FIRST} LIMIT 1"
        ),
        &[&request_hash, &client, &now_key],
    )
    .await?;
    Ok(found.into_iter().next())
}

/// [`crate::Store::list_client_approvals`].
pub(crate) async fn list_client(
    store: &PostgresStore,
    client: &str,
    state: Option<ApprovalState>,
    limit: u64,
) -> Result<Vec<ApprovalRecord>, StoreError> {
    let limit = limit_param(limit);
    let conn = store.client().await?;
    match state {
        // Pending and not yet expired, as `list_open`.
        Some(ApprovalState::Pending) => {
            let now_key = chain::format_time(jiff::Timestamp::now());
            select(
                &conn,
                &format!("WHERE requested_via = $1 AND state = 'pending' AND expires_key > $2 {NEWEST_FIRST} LIMIT $3"),
                &[&client, &now_key, &limit],
            )
            .await
        }
        Some(state) => {
            select(
                &conn,
                &format!("WHERE requested_via = $1 AND state = $2 {NEWEST_FIRST} LIMIT $3"),
                &[&client, &state.as_str(), &limit],
            )
            .await
        }
        None => {
            select(
                &conn,
                &format!("WHERE requested_via = $1 {NEWEST_FIRST} LIMIT $2"),
                &[&client, &limit],
            )
            .await
        }
    }
}

/// [`crate::Store::create_approval`].
pub(crate) async fn create(store: &PostgresStore, approval: ApprovalRecord) -> Result<(), StoreError> {
    let created_key = chain::parse_time(&approval.created_at)?;
    let expires_key = chain::parse_time(&approval.expires_at)?;
    let mut conn = store.client().await?;
    let tx = conn.transaction().await?;
    forget_expired_secrets(&tx, &created_key).await?;
    insert(&tx, &approval, &created_key, &expires_key).await?;
    tx.commit().await?;
    Ok(())
}

/// Inserts `r` as it is (any state), refusing an id the table has.
async fn insert(
    conn: &impl GenericClient,
    r: &ApprovalRecord,
    created_key: &str,
    expires_key: &str,
) -> Result<(), StoreError> {
    let rules = chain::canonical_str_list(&r.rules);
    // Stored as given; an empty list reads back as `[role]` (see `from_row`).
    let roles = chain::canonical_str_list(&r.roles);
    let requested_chain = chain::canonical_str_list(&r.requested_chain);
    let summary = chain::canonical_value(&r.summary);
    let hold_seconds = r.hold_seconds.map(|s| i64::try_from(s).unwrap_or(i64::MAX));
    let stmt = conn
        .prepare_cached(
            "INSERT INTO approvals (id, request_hash, decision_id, rules, role, action, requested_by, summary, \
             created_at, expires_at, created_key, expires_key, state, decided_by, decided_at, comment, roles, \
             requested_via, hold_seconds, sealed, requested_chain) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21) \
             ON CONFLICT (id) DO NOTHING",
        )
        .await?;
    let inserted = conn
        .execute(
            &stmt,
            &[
                &r.id,
                &r.request_hash,
                &r.decision_id,
                &rules,
                &r.role,
                &r.action,
                &r.requested_by,
                &summary,
                &r.created_at,
                &r.expires_at,
                &created_key,
                &expires_key,
                &r.state.as_str(),
                &r.decided_by,
                &r.decided_at,
                &r.comment,
                &roles,
                &r.requested_via,
                &hold_seconds,
                &r.sealed,
                &requested_chain,
            ],
        )
        .await?;
    if inserted != 1 {
        return Err(StoreError(format!("an approval with id `{}` already exists", r.id)));
    }
    Ok(())
}

/// [`crate::Store::list_open_approvals`].
pub(crate) async fn list_open(store: &PostgresStore, now: &str, limit: u64) -> Result<Vec<ApprovalRecord>, StoreError> {
    let now_key = chain::parse_time(now)?;
    let limit = limit_param(limit);
    let conn = store.client().await?;
    select(
        &conn,
        &format!("WHERE state = 'pending' AND expires_key > $1 {NEWEST_FIRST} LIMIT $2"),
        &[&now_key, &limit],
    )
    .await
}

/// [`crate::Store::get_approval`].
pub(crate) async fn get(store: &PostgresStore, id: &str) -> Result<Option<ApprovalRecord>, StoreError> {
    let conn = store.client().await?;
    load(&conn, id).await
}

/// The approval with `id`, if any.
async fn load(conn: &impl GenericClient, id: &str) -> Result<Option<ApprovalRecord>, StoreError> {
    Ok(select(conn, "WHERE id = $1", &[&id]).await?.into_iter().next())
}

/// [`crate::Store::list_approvals`].
pub(crate) async fn list(
    store: &PostgresStore,
    state: Option<ApprovalState>,
    limit: u64,
) -> Result<Vec<ApprovalRecord>, StoreError> {
    let limit = limit_param(limit);
    let conn = store.client().await?;
    match state {
        Some(state) => {
            select(
                &conn,
                &format!("WHERE state = $1 {NEWEST_FIRST} LIMIT $2"),
                &[&state.as_str(), &limit],
            )
            .await
        }
        None => select(&conn, &format!("{NEWEST_FIRST} LIMIT $1"), &[&limit]).await,
    }
}

/// The gate of approval `id`; `lock`: its row locked until the end of the
/// transaction.
async fn gate(conn: &impl GenericClient, id: &str, lock: bool) -> Result<Option<Gate>, StoreError> {
    let sql = format!(
        "SELECT state, requested_by, expires_key, request_hash, requested_via, hold_seconds, requested_chain \
         FROM approvals WHERE id = $1{}",
        if lock { " FOR UPDATE" } else { "" }
    );
    let stmt = conn.prepare_cached(&sql).await?;
    let Some(r) = conn.query_opt(&stmt, &[&id]).await? else {
        return Ok(None);
    };
    Ok(Some(Gate {
        state: r.try_get(0)?,
        requested_by: r.try_get(1)?,
        expires_key: r.try_get(2)?,
        request_hash: r.try_get(3)?,
        requested_via: r.try_get(4)?,
        hold_seconds: r.try_get(5)?,
        requested_chain: r.try_get(6)?,
    }))
}

/// Clears the sealed secrets of approvals that expired before `now_key`
/// without being decided: nobody can decide them any more.
async fn forget_expired_secrets(conn: &impl GenericClient, now_key: &str) -> Result<(), StoreError> {
    let stmt = conn
        .prepare_cached("UPDATE approvals SET sealed = NULL WHERE sealed IS NOT NULL AND expires_key <= $1")
        .await?;
    conn.execute(&stmt, &[&now_key]).await?;
    Ok(())
}

/// Clears the sealed secrets of approvals that expired while nothing
/// changed an approval (which clears them too): for the store's open, as
/// SQLite's does at every start.
pub(crate) async fn forget_expired_at_start(store: &PostgresStore) -> Result<(), StoreError> {
    let conn = store.client().await?;
    forget_expired_secrets(&conn, &chain::format_time(jiff::Timestamp::now())).await
}

/// [`crate::Store::decide_approval`].
pub(crate) async fn decide(
    store: &PostgresStore,
    id: &str,
    grant: bool,
    approver: &str,
    comment: Option<&str>,
    now: &str,
) -> Result<Result<ApprovalRecord, ApprovalError>, StoreError> {
    let now_key = chain::parse_time(now)?;
    let mut conn = store.client().await?;
    let tx = conn.transaction().await?;
    // Locked: a concurrent decision (any replica) waits, then finds it
    // decided.
    let Some(g) = gate(&tx, id, true).await? else {
        return Ok(Err(ApprovalError::NotFound(id.to_owned())));
    };
    if let Err(refused) = g.may_decide(id, approver, &now_key)? {
        return Ok(Err(refused));
    }
    let expiry = g.decided_expiry(grant, now)?;
    let (expires_at, expires_key) = match &expiry {
        Some((at, key)) => (Some(at.as_str()), Some(key.as_str())),
        None => (None, None),
    };
    // The conditions are repeated in the UPDATE so that the change is
    // correct on its own. Decided, the approval no longer needs the
    // request's secrets.
    let state = if grant { "granted" } else { "denied" };
    let stmt = tx
        .prepare_cached(
            "UPDATE approvals SET state = $2, decided_by = $3, decided_at = $4, comment = $5, sealed = NULL, \
             expires_at = coalesce($7, expires_at), expires_key = coalesce($8, expires_key) \
             WHERE id = $1 AND state = 'pending' AND expires_key > $6",
        )
        .await?;
    let changed = tx
        .execute(
            &stmt,
            &[
                &id,
                &state,
                &approver,
                &now,
                &comment,
                &now_key,
                &expires_at,
                &expires_key,
            ],
        )
        .await?;
    forget_expired_secrets(&tx, &now_key).await?;
    if changed != 1 {
        return Err(StoreError(format!(
            "approval `{id}` changed while it was being decided"
        )));
    }
    let record = reload(&tx, id).await?;
    tx.commit().await?;
    Ok(Ok(record))
}

async fn reload(conn: &impl GenericClient, id: &str) -> Result<ApprovalRecord, StoreError> {
    load(conn, id)
        .await?
        .ok_or_else(|| StoreError(format!("approval `{id}` vanished while it was being changed")))
}

/// [`crate::Store::use_approval`].
pub(crate) async fn use_approval(
    store: &PostgresStore,
    id: &str,
    request_hash: &str,
    now: &str,
) -> Result<Result<ApprovalRecord, ApprovalError>, StoreError> {
    let now_key = chain::parse_time(now)?;
    let conn = store.client().await?;
    // One statement, atomic in the database: of concurrent uses from any
    // number of processes, exactly one finds the row still granted (the
    // others wait for its row lock, then re-check the conditions against
    // the committed row and match nothing).
    let stmt = conn
        .prepare_cached(&format!(
            "UPDATE approvals SET state = 'used' \
             WHERE id = $1 AND state = 'granted' AND expires_key > $2 AND request_hash = $3 \
             RETURNING {COLUMNS}"
        ))
        .await?;
    // Refused: why, checked in SQLite's order. A state only moves forward
    // (pending, granted, used), so the reason read is the one that refused
    // the use, unless the approval was granted in between (a decision of
    // another replica committing): then the use is tried again. It can be
    // granted once only, so the second try is final; the bound is a guard.
    for _ in 0..3 {
        if let Some(row) = conn.query_opt(&stmt, &[&id, &now_key, &request_hash]).await? {
            return Ok(Ok(from_row(&row)?));
        }
        let Some(g) = gate(&conn, id, false).await? else {
            return Ok(Err(ApprovalError::NotFound(id.to_owned())));
        };
        if g.state != "granted" {
            return Ok(Err(ApprovalError::WrongState {
                id: id.to_owned(),
                state: g.state,
                expected: "granted".into(),
            }));
        }
        if now_key.as_str() >= g.expires_key.as_str() {
            return Ok(Err(ApprovalError::Expired(id.to_owned())));
        }
        if g.request_hash != request_hash {
            return Ok(Err(ApprovalError::RequestMismatch(id.to_owned())));
        }
    }
    Err(StoreError(format!("approval `{id}` changed while it was being used")))
}

/// [`crate::Store::import_approvals`]: every approval as it is (any state,
/// sealed secrets and all), in one transaction; an id the store has
/// refuses the whole import.
pub(crate) async fn import(store: &PostgresStore, approvals: Vec<ApprovalRecord>) -> Result<(), StoreError> {
    let mut keyed = Vec::with_capacity(approvals.len());
    for a in &approvals {
        keyed.push((chain::parse_time(&a.created_at)?, chain::parse_time(&a.expires_at)?));
    }
    let mut conn = store.client().await?;
    let tx = conn.transaction().await?;
    for (a, (created_key, expires_key)) in approvals.iter().zip(&keyed) {
        insert(&tx, a, created_key, expires_key)
            .await
            .map_err(|e| StoreError(format!("cannot import the approvals: {}", e.0)))?;
    }
    tx.commit().await?;
    Ok(())
}

/// The approvals `SELECT {COLUMNS} FROM approvals {rest}` returns.
async fn select(conn: &impl GenericClient, rest: &str, params: Params<'_>) -> Result<Vec<ApprovalRecord>, StoreError> {
    let stmt = conn
        .prepare_cached(&format!("SELECT {COLUMNS} FROM approvals {rest}"))
        .await?;
    let rows = conn.query(&stmt, params).await?;
    rows.iter().map(from_row).collect()
}

fn from_row(r: &Row) -> Result<ApprovalRecord, StoreError> {
    ApprovalRow {
        id: r.try_get(0)?,
        request_hash: r.try_get(1)?,
        decision_id: r.try_get(2)?,
        rules: r.try_get(3)?,
        role: r.try_get(4)?,
        action: r.try_get(5)?,
        requested_by: r.try_get(6)?,
        summary: r.try_get(7)?,
        created_at: r.try_get(8)?,
        expires_at: r.try_get(9)?,
        state: r.try_get(10)?,
        decided_by: r.try_get(11)?,
        decided_at: r.try_get(12)?,
        comment: r.try_get(13)?,
        roles: r.try_get(14)?,
        requested_via: r.try_get(15)?,
        hold_seconds: r.try_get(16)?,
        sealed: r.try_get(17)?,
        requested_chain: r.try_get(18)?,
    }
    .into_record()
}
