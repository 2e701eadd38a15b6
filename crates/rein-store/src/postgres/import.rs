//! Imports for a migration (`rein migrate`): records verbatim and state.

use std::collections::HashMap;

use super::writer::{self, AuditColumns, StateStatements};
use super::PostgresStore;
use crate::chain;
use crate::sqlite::columns::Columns;
use crate::sqlite::state::{self as sqlite_state, PreparedWrite};
use crate::{AuditRecord, StateWrite, StoreError};

/// Adds `records` as they are, in one transaction: refused unless the first
/// continues the log exactly (its seq the next, its `prev_hash` the head's
/// hash) and each the one before it, and unless each one's hash is that of
/// its canonical body (the records of a chain that verifies). The chain
/// head moves to the last; the claims of `append_once` implied by imported
/// outcomes (phase `after`, as SQLite's version 4 filled them) are added.
/// (A superset of the source's claims: an `after` record appended without
/// a claim there, a refused body naming a decision, claims its decision
/// here too. The trait has no way to read a store's claims as they are.)
pub(crate) async fn records(store: &PostgresStore, records: Vec<AuditRecord>) -> Result<(), StoreError> {
    if records.is_empty() {
        return Ok(());
    }
    // Encoded before the transaction: the bodies and their columns.
    let bodies: Vec<String> = records.iter().map(|r| chain::canonical(r.seq, &r.entry)).collect();
    let columns: Vec<Columns<'_>> = records.iter().map(|r| Columns::from_entry(&r.entry)).collect();
    let mut client = store.client().await?;
    let stmt = client.prepare_cached(writer::INSERT_AUDIT).await?;
    let tx = client.transaction().await?;
    let head = tx
        .query_opt("SELECT seq, hash FROM chain_head WHERE id = 1 FOR UPDATE", &[])
        .await?
        .ok_or_else(|| StoreError("the chain head is missing (the database was altered); run verify".into()))?;
    let head_seq: i64 = head.try_get(0)?;
    let head_hash: String = head.try_get(1)?;
    let mut seq = u64::try_from(head_seq).map_err(|_| StoreError(format!("corrupt chain head: seq {head_seq}")))?;
    let mut prev = head_hash;
    let mut cols = AuditColumns::default();
    let mut claims: (Vec<&str>, Vec<&str>) = (Vec::new(), Vec::new());
    for ((r, body), c) in records.iter().zip(&bodies).zip(&columns) {
        if r.seq != seq + 1 {
            return Err(StoreError(format!(
                "cannot import record {}: the log's newest record is {seq}, the next must be {}",
                r.seq,
                seq + 1
            )));
        }
        if r.prev_hash != prev {
            return Err(StoreError(format!(
                "cannot import record {}: its prev_hash {} is not the hash of record {seq} ({prev})",
                r.seq, r.prev_hash
            )));
        }
        if chain::record_hash(&r.prev_hash, body) != r.hash {
            return Err(StoreError(format!(
                "cannot import record {}: its hash is not that of its content (it was changed)",
                r.seq
            )));
        }
        let seq_i = i64::try_from(r.seq).map_err(|_| StoreError("the audit log is full".into()))?;
        cols.push_columns(
            seq_i,
            [&c.time, &c.decision_id, &c.phase, &c.action, &c.effect, &c.rules],
            c.actor_id.as_deref(),
            c.session.as_deref(),
            body.clone(),
            r.prev_hash.clone(),
            r.hash.clone(),
        );
        if r.entry.phase == "after" {
            claims.0.push(&r.entry.decision_id);
            claims.1.push(&r.entry.phase);
        }
        seq = r.seq;
        prev = r.hash.clone();
    }
    cols.insert(&*tx, &stmt).await?;
    if !claims.0.is_empty() {
        tx.execute(
            "INSERT INTO appended_once (decision_id, phase) SELECT * FROM unnest($1::text[], $2::text[]) \
             ON CONFLICT DO NOTHING",
            &[&claims.0, &claims.1],
        )
        .await?;
    }
    let seq_i = i64::try_from(seq).map_err(|_| StoreError("the audit log is full".into()))?;
    tx.execute(
        "UPDATE chain_head SET seq = $1, hash = $2 WHERE id = 1",
        &[&seq_i, &prev],
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

/// The decision a write names.
fn decision_of(w: &StateWrite) -> &str {
    match w {
        StateWrite::Use { decision_id, .. }
        | StateWrite::Output { decision_id, .. }
        | StateWrite::Label { decision_id, .. } => decision_id,
        StateWrite::Call { call, .. } => &call.decision_id,
    }
}

/// Adds state `writes` (as `load_state` returns them), each with the seq of
/// its decision's record (an output: its outcome's record, if recorded),
/// and bumps the state's epoch (a lease taken after it reloads the state
/// whole), in one transaction. Refuses a write whose decision has no record
/// in the log.
pub(crate) async fn state(store: &PostgresStore, writes: Vec<StateWrite>) -> Result<(), StoreError> {
    let mut client = store.client().await?;
    if writes.is_empty() {
        client
            .execute("UPDATE rein_state_lease SET epoch = epoch + 1 WHERE id = 1", &[])
            .await?;
        return Ok(());
    }
    let decisions: Vec<String> = {
        let mut d: Vec<String> = writes.iter().map(|w| decision_of(w).to_owned()).collect();
        d.sort_unstable();
        d.dedup();
        d
    };
    let mut prepared: Vec<(String, PreparedWrite)> = Vec::with_capacity(writes.len());
    for w in writes {
        let decision = decision_of(&w).to_owned();
        let mut one = sqlite_state::prepare(&decision, vec![w])?;
        if let Some(p) = one.pop() {
            prepared.push((decision, p));
        }
    }
    let stmts = StateStatements::prepare(&client).await?;
    let tx = client.transaction().await?;
    // (decision) → (seq of its `before` record or its first, seq of its
    // `after` record).
    let mut seqs: HashMap<String, (Option<i64>, Option<i64>)> = HashMap::new();
    for r in tx
        .query(
            "SELECT decision_id, min(seq) FILTER (WHERE phase <> 'after'), max(seq) FILTER (WHERE phase = 'after') \
             FROM audit WHERE decision_id = ANY($1) GROUP BY decision_id",
            &[&decisions],
        )
        .await?
    {
        seqs.insert(r.try_get(0)?, (r.try_get(1)?, r.try_get(2)?));
    }
    let mut rows: Vec<(i64, &PreparedWrite)> = Vec::with_capacity(prepared.len());
    for (decision, p) in &prepared {
        let Some(&(first, after)) = seqs.get(decision) else {
            return Err(StoreError(format!(
                "cannot import the state of decision `{decision}`: the log has no record of it"
            )));
        };
        let seq = match p {
            PreparedWrite::Output { .. } => after.or(first),
            _ => first.or(after),
        };
        let seq = seq.ok_or_else(|| StoreError(format!("decision `{decision}` has no record")))?;
        rows.push((seq, p));
    }
    // Outputs after the calls they fill in (as `write_state` writes them).
    writer::write_state(&*tx, &stmts, &rows).await?;
    tx.execute("UPDATE rein_state_lease SET epoch = epoch + 1 WHERE id = 1", &[])
        .await?;
    tx.commit().await?;
    Ok(())
}
