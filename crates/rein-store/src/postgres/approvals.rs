//! Approvals in PostgreSQL: single-use across replicas with conditional
//! UPDATEs (see DESIGN-18 §5). Same semantics and errors as
//! `sqlite/approvals.rs` and the SQLite writer's approval commands.

use super::PostgresStore;
use crate::{ApprovalError, ApprovalRecord, ApprovalState, StoreError};

fn not_yet() -> StoreError {
    StoreError("PostgreSQL approvals: not implemented yet".into())
}

/// [`crate::Store::find_open_approval`].
pub(crate) async fn find_open(
    store: &PostgresStore,
    request_hash: &str,
    client: Option<&str>,
    now: &str,
) -> Result<Option<ApprovalRecord>, StoreError> {
    let _ = (store, request_hash, client, now);
    Err(not_yet())
}

/// [`crate::Store::list_client_approvals`].
pub(crate) async fn list_client(
    store: &PostgresStore,
    client: &str,
    state: Option<ApprovalState>,
    limit: u64,
) -> Result<Vec<ApprovalRecord>, StoreError> {
    let _ = (store, client, state, limit);
    Err(not_yet())
}

/// [`crate::Store::create_approval`].
pub(crate) async fn create(store: &PostgresStore, approval: ApprovalRecord) -> Result<(), StoreError> {
    let _ = (store, approval);
    Err(not_yet())
}

/// [`crate::Store::list_open_approvals`].
pub(crate) async fn list_open(store: &PostgresStore, now: &str, limit: u64) -> Result<Vec<ApprovalRecord>, StoreError> {
    let _ = (store, now, limit);
    Err(not_yet())
}

/// [`crate::Store::get_approval`].
pub(crate) async fn get(store: &PostgresStore, id: &str) -> Result<Option<ApprovalRecord>, StoreError> {
    let _ = (store, id);
    Err(not_yet())
}

/// [`crate::Store::list_approvals`].
pub(crate) async fn list(
    store: &PostgresStore,
    state: Option<ApprovalState>,
    limit: u64,
) -> Result<Vec<ApprovalRecord>, StoreError> {
    let _ = (store, state, limit);
    Err(not_yet())
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
    let _ = (store, id, grant, approver, comment, now);
    Err(not_yet())
}

/// [`crate::Store::use_approval`].
pub(crate) async fn use_approval(
    store: &PostgresStore,
    id: &str,
    request_hash: &str,
    now: &str,
) -> Result<Result<ApprovalRecord, ApprovalError>, StoreError> {
    let _ = (store, id, request_hash, now);
    Err(not_yet())
}

/// [`crate::Store::import_approvals`].
pub(crate) async fn import(store: &PostgresStore, approvals: Vec<ApprovalRecord>) -> Result<(), StoreError> {
    let _ = (store, approvals);
    Err(not_yet())
}
