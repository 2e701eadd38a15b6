//! Reading approvals back from their rows.

use rusqlite::{Connection, OptionalExtension, Row};

use crate::approval_gate::ApprovalRow;
use crate::{ApprovalRecord, ApprovalState, StoreError};

/// The columns [`from_row`] reads, in its order.
pub(crate) use crate::approval_gate::COLUMNS;

/// The approval with `id`, if any.
pub(crate) fn load(conn: &Connection, id: &str) -> Result<Option<ApprovalRecord>, StoreError> {
    let mut stmt = conn.prepare_cached(&format!("SELECT {COLUMNS} FROM approvals WHERE id = ?1"))?;
    let row = stmt.query_row([id], |r| Ok(from_row(r))).optional()?;
    row.transpose()
}

/// Approvals, newest first, optionally only those in `state`.
pub(crate) fn list(
    conn: &Connection,
    state: Option<ApprovalState>,
    limit: u64,
) -> Result<Vec<ApprovalRecord>, StoreError> {
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    match state {
        Some(state) => select(
            conn,
            "WHERE state = ?1 ORDER BY created_key DESC, rowid DESC LIMIT ?2",
            rusqlite::params![state.as_str(), limit],
        ),
        None => select(conn, "ORDER BY created_key DESC, rowid DESC LIMIT ?1", [limit]),
    }
}

/// Pending approvals whose expiry key is after `now_key`, newest first.
pub(crate) fn list_open(conn: &Connection, now_key: &str, limit: u64) -> Result<Vec<ApprovalRecord>, StoreError> {
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    select(
        conn,
        "WHERE state = 'pending' AND expires_key > ?1 ORDER BY created_key DESC, rowid DESC LIMIT ?2",
        rusqlite::params![now_key, limit],
    )
}

/// The newest pending approval, not expired at `now_key`, for the request
/// with `request_hash` sent by `client` (`None`: sent without one).
pub(crate) fn find_open(
    conn: &Connection,
    request_hash: &str,
    client: Option<&str>,
    now_key: &str,
) -> Result<Option<ApprovalRecord>, StoreError> {
    let found = select(
        conn,
        "WHERE request_hash = ?1 AND requested_via IS ?2 AND state = 'pending' AND expires_key > ?3 \
         ORDER BY created_key DESC, rowid DESC LIMIT 1",
        rusqlite::params![request_hash, client, now_key],
    )?;
    Ok(found.into_iter().next())
}

/// Approvals asked for by `client`, newest first, optionally only those in
/// `state`.
pub(crate) fn list_by_client(
    conn: &Connection,
    client: &str,
    state: Option<ApprovalState>,
    now_key: &str,
    limit: u64,
) -> Result<Vec<ApprovalRecord>, StoreError> {
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    match state {
        // Pending and not yet expired, as `list_open`.
        Some(ApprovalState::Pending) => select(
            conn,
            "WHERE requested_via = ?1 AND state = 'pending' AND expires_key > ?2 \
             ORDER BY created_key DESC, rowid DESC LIMIT ?3",
            rusqlite::params![client, now_key, limit],
        ),
        Some(state) => select(
            conn,
            "WHERE requested_via = ?1 AND state = ?2 ORDER BY created_key DESC, rowid DESC LIMIT ?3",
            rusqlite::params![client, state.as_str(), limit],
        ),
        None => select(
            conn,
            "WHERE requested_via = ?1 ORDER BY created_key DESC, rowid DESC LIMIT ?2",
            rusqlite::params![client, limit],
        ),
    }
}

/// The approvals `SELECT {COLUMNS} FROM approvals {rest}` returns.
fn select(conn: &Connection, rest: &str, params: impl rusqlite::Params) -> Result<Vec<ApprovalRecord>, StoreError> {
    let mut stmt = conn.prepare_cached(&format!("SELECT {COLUMNS} FROM approvals {rest}"))?;
    let mut rows = stmt.query(params)?;
    let mut out = Vec::new();
    while let Some(r) = rows.next()? {
        out.push(from_row(r)?);
    }
    Ok(out)
}

fn from_row(r: &Row<'_>) -> Result<ApprovalRecord, StoreError> {
    ApprovalRow {
        id: r.get(0)?,
        request_hash: r.get(1)?,
        decision_id: r.get(2)?,
        rules: r.get(3)?,
        role: r.get(4)?,
        action: r.get(5)?,
        requested_by: r.get(6)?,
        summary: r.get(7)?,
        created_at: r.get(8)?,
        expires_at: r.get(9)?,
        state: r.get(10)?,
        decided_by: r.get(11)?,
        decided_at: r.get(12)?,
        comment: r.get(13)?,
        roles: r.get(14)?,
        requested_via: r.get(15)?,
        hold_seconds: r.get(16)?,
        sealed: r.get(17)?,
        requested_chain: r.get(18)?,
    }
    .into_record()
}
