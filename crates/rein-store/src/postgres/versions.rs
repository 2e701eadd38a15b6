//! Kept policy versions (`policy_versions`) and the store's metadata
//! (`store_meta`), with the semantics of `sqlite/versions.rs` and
//! `sqlite/schema.rs`'s metadata.

use super::PostgresStore;
use crate::versions::{PolicyVersion, PolicyVersionSummary};
use crate::StoreError;
use rein_engine::PolicySource;

/// Keeps `version`'s sources unless intact ones are kept already (the hash
/// binds the texts, so there is nothing to update); sources that no longer
/// hash to it are replaced. Refuses sources that do not hash to the
/// version. Durable when it returns.
pub(crate) async fn save(store: &PostgresStore, version: &PolicyVersion) -> Result<(), StoreError> {
    version.check()?;
    let sources = serde_json::to_string(&version.sources).map_err(|e| {
        StoreError(format!(
            "cannot encode the sources of policy version {}: {e}",
            version.version
        ))
    })?;
    let mut client = store.client().await?;
    let tx = client.transaction().await?;
    // Locked, so that of two replicas saving a damaged row at once one
    // replaces it and the other finds it intact.
    let kept = tx
        .query_opt(
            "SELECT version, label, sources, saved_at FROM policy_versions WHERE version = $1 FOR UPDATE",
            &[&version.version],
        )
        .await?
        .map(decode_row)
        .transpose()?;
    if kept.as_ref().is_some_and(|k| k.check().is_ok()) {
        tx.commit().await?;
        return Ok(());
    }
    tx.execute(
        "INSERT INTO policy_versions (version, label, sources, saved_at) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (version) DO UPDATE SET label = excluded.label, sources = excluded.sources",
        &[&version.version, &version.label, &sources, &version.saved_at],
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

fn decode_row(r: tokio_postgres::Row) -> Result<PolicyVersion, StoreError> {
    decode((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?, r.try_get(3)?))
}

fn decode(
    (version, label, sources, saved_at): (String, Option<String>, String, String),
) -> Result<PolicyVersion, StoreError> {
    let sources: Vec<PolicySource> = serde_json::from_str(&sources)
        .map_err(|e| StoreError(format!("the kept sources of policy version {version} are corrupt: {e}")))?;
    Ok(PolicyVersion {
        version,
        label,
        sources,
        saved_at,
    })
}

/// The kept sources of `version`, checked against it.
pub(crate) async fn load(store: &PostgresStore, version: &str) -> Result<Option<PolicyVersion>, StoreError> {
    let client = store.client().await?;
    let Some(row) = client
        .query_opt(
            "SELECT version, label, sources, saved_at FROM policy_versions WHERE version = $1",
            &[&version],
        )
        .await?
    else {
        return Ok(None);
    };
    let kept = decode_row(row)?;
    kept.check()?;
    Ok(Some(kept))
}

/// Every kept version, newest first, each marked intact or not.
pub(crate) async fn list(store: &PostgresStore) -> Result<Vec<PolicyVersionSummary>, StoreError> {
    let client = store.client().await?;
    let rows = client
        .query(
            "SELECT version, label, sources, saved_at FROM policy_versions ORDER BY saved_at DESC, version",
            &[],
        )
        .await?;
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let row: (String, Option<String>, String, String) =
            (r.try_get(0)?, r.try_get(1)?, r.try_get(2)?, r.try_get(3)?);
        let (version, label, saved_at) = (row.0.clone(), row.1.clone(), row.3.clone());
        out.push(match decode(row) {
            Ok(kept) => PolicyVersionSummary {
                intact: kept.check().is_ok(),
                files: kept.sources.iter().map(|s| s.name.clone()).collect(),
                version,
                label,
                saved_at,
            },
            Err(_) => PolicyVersionSummary {
                version,
                label,
                files: Vec::new(),
                saved_at,
                intact: false,
            },
        });
    }
    Ok(out)
}

/// The value of `key` in `store_meta`, if set.
pub(crate) async fn read_meta(store: &PostgresStore, key: &str) -> Result<Option<String>, StoreError> {
    let client = store.client().await?;
    Ok(client
        .query_opt("SELECT value FROM store_meta WHERE key = $1", &[&key])
        .await?
        .map(|r| r.try_get(0))
        .transpose()?)
}

/// Sets `key` to `value` unless it is set, and returns the value kept: the
/// first ever set, whichever replica set it (a concurrent insert makes
/// `ON CONFLICT DO NOTHING` wait for its commit; the read after it, a new
/// snapshot, sees the winner).
pub(crate) async fn bind_meta(store: &PostgresStore, key: &str, value: &str) -> Result<String, StoreError> {
    let client = store.client().await?;
    client
        .execute(
            "INSERT INTO store_meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING",
            &[&key, &value],
        )
        .await?;
    let kept: Option<String> = client
        .query_opt("SELECT value FROM store_meta WHERE key = $1", &[&key])
        .await?
        .map(|r| r.try_get(0))
        .transpose()?;
    kept.ok_or_else(|| StoreError(format!("the store's `{key}` vanished as it was set")))
}

/// Sets `key` to `value`, durably.
pub(crate) async fn write_meta(store: &PostgresStore, key: &str, value: &str) -> Result<(), StoreError> {
    let client = store.client().await?;
    client
        .execute(
            "INSERT INTO store_meta (key, value) VALUES ($1, $2) \
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            &[&key, &value],
        )
        .await?;
    Ok(())
}
