//! The state of stateful rules in PostgreSQL: loading, pruning, resets and
//! sizes. (The writes themselves are the writer's, in the transaction of
//! their decision's record, with its `seq`.)

use super::PostgresStore;
use crate::{StateWrite, StoreError, StoredStateSize};

fn not_yet() -> StoreError {
    StoreError("PostgreSQL state: not implemented yet".into())
}

/// [`crate::Store::load_state`].
pub(crate) async fn load(
    store: &PostgresStore,
    window_start: jiff::Timestamp,
    idle_start: jiff::Timestamp,
) -> Result<Vec<StateWrite>, StoreError> {
    let _ = (store, window_start, idle_start);
    Err(not_yet())
}

/// [`crate::Store::prune_state`].
pub(crate) async fn prune(
    store: &PostgresStore,
    window_start: jiff::Timestamp,
    idle_start: jiff::Timestamp,
) -> Result<u64, StoreError> {
    let _ = (store, window_start, idle_start);
    Err(not_yet())
}

/// [`crate::Store::reset_limits`].
pub(crate) async fn reset_limits(
    store: &PostgresStore,
    rule: Option<String>,
    bucket: Option<String>,
) -> Result<u64, StoreError> {
    let _ = (store, rule, bucket);
    Err(not_yet())
}

/// [`crate::Store::state_size`].
pub(crate) async fn size(store: &PostgresStore) -> Result<StoredStateSize, StoreError> {
    let _ = store;
    Err(not_yet())
}
