//! Kept policy versions (`policy_versions`, schema v7) and the activation
//! records of the audit log, found through their partial index.

use std::path::Path;

use rusqlite::{Connection, OptionalExtension, TransactionBehavior};

use super::schema;
use crate::chain;
use crate::versions::{PolicyVersion, PolicyVersionSummary, ACTIVATE_PHASE};
use crate::{AuditEntry, AuditRecord, StoreError};
use rein_engine::PolicySource;

/// Keeps `version`'s sources unless intact ones are kept already (the
/// hash binds the texts, so there is nothing to update); sources that no
/// longer hash to it are replaced. Durable when it returns.
pub(crate) fn save(path: &Path, version: &PolicyVersion) -> Result<(), StoreError> {
    version.check()?;
    let sources = serde_json::to_string(&version.sources).map_err(|e| {
        StoreError(format!(
            "cannot encode the sources of policy version {}: {e}",
            version.version
        ))
    })?;
    let mut conn = schema::open_side_writer(path)?;
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let kept = read_row(&tx, &version.version)?;
    if kept.as_ref().is_some_and(|k| k.check().is_ok()) {
        return Ok(()); // the transaction ends without changes
    }
    tx.execute(
        "INSERT INTO policy_versions (version, label, sources, saved_at) VALUES (?1, ?2, ?3, ?4) \
         ON CONFLICT (version) DO UPDATE SET label = excluded.label, sources = excluded.sources",
        rusqlite::params![version.version, version.label, sources, version.saved_at],
    )?;
    tx.commit()?;
    Ok(())
}

fn read_row(conn: &Connection, version: &str) -> Result<Option<PolicyVersion>, StoreError> {
    let row: Option<(String, Option<String>, String, String)> = conn
        .query_row(
            "SELECT version, label, sources, saved_at FROM policy_versions WHERE version = ?1",
            [version],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .optional()?;
    row.map(decode).transpose()
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

/// The kept sources of `version` (its full hash), checked against it.
pub(crate) fn load(conn: &Connection, version: &str) -> Result<Option<PolicyVersion>, StoreError> {
    let Some(kept) = read_row(conn, version)? else {
        return Ok(None);
    };
    kept.check()?;
    Ok(Some(kept))
}

/// Every kept version, newest first, each marked intact or not.
pub(crate) fn list(conn: &Connection) -> Result<Vec<PolicyVersionSummary>, StoreError> {
    let mut stmt =
        conn.prepare("SELECT version, label, sources, saved_at FROM policy_versions ORDER BY saved_at DESC, version")?;
    let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?;
    let mut out = Vec::new();
    for row in rows {
        let row: (String, Option<String>, String, String) = row?;
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

/// The activation records, in sequence order, each checked against its
/// hash and read from its body (as `read::query_audit` does).
pub(crate) fn activations(conn: &Connection) -> Result<Vec<AuditRecord>, StoreError> {
    // `phase = 'activate'` is the condition of the partial index
    // `audit_activations`: only activation records are visited.
    let mut stmt =
        conn.prepare_cached("SELECT seq, body, prev_hash, hash FROM audit WHERE phase = 'activate' ORDER BY seq")?;
    let mut rows = stmt.query([])?;
    let mut out = Vec::new();
    while let Some(r) = rows.next()? {
        let seq: i64 = r.get(0)?;
        let body: String = r.get(1)?;
        let prev_hash: String = r.get(2)?;
        let hash: String = r.get(3)?;
        if chain::record_hash(&prev_hash, &body) != hash {
            return Err(StoreError(format!(
                "audit record {seq} does not match its hash (it was changed); run verify"
            )));
        }
        let entry: AuditEntry = serde_json::from_str(&body)
            .map_err(|e| StoreError(format!("audit record {seq} is corrupt ({e}); run verify")))?;
        if entry.phase != ACTIVATE_PHASE {
            return Err(StoreError(format!(
                "audit record {seq} was selected by its `phase` column, but its body is not an activation \
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
