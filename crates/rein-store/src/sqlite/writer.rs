//! The single writer thread and its group commit.
//!
//! Every write (audit appends and approval changes) goes through one thread
//! that owns the only write connection. It takes whatever commands are
//! queued (up to [`MAX_BATCH`]), runs them in order in ONE transaction,
//! commits once (one fsync for the whole batch) and only then answers each
//! waiter. Because there is one writer, the chain needs no locking: the
//! order of the channel is the order of the chain, and of concurrent
//! approval changes exactly one sees the approval in its old state.

use std::sync::mpsc::{Receiver, TryRecvError};

use rusqlite::{params, Connection, ErrorCode, OptionalExtension};
use tokio::sync::oneshot;

use std::borrow::Cow;

use super::approvals;
use super::checkpoint::Checkpointer;
use super::columns::Columns;
use super::state::{self, PreparedWrite, StateOp};
use crate::approval_gate::Gate;
use crate::chain::{self, CanonicalParts};
use crate::{ApprovalError, ApprovalRecord, AuditEntry, AuditRecord, StoreError};

/// Most commands in one transaction. Bounds the latency a batch adds to its
/// first waiter and the memory of one batch.
const MAX_BATCH: usize = 1024;

/// The answer to an approval command.
pub(crate) type ApprovalReply = Result<Result<ApprovalRecord, ApprovalError>, StoreError>;

/// The answer to a state command: rows removed.
pub(crate) type StateReply = Result<u64, StoreError>;

/// What the writer thread is asked to do.
pub(crate) enum Command {
    /// Append an entry, encoded by the caller.
    Append(
        Box<PreparedAppend>,
        oneshot::Sender<Delivery<Result<AuditRecord, StoreError>>>,
    ),
    /// Create, decide or use an approval.
    Approval(ApprovalOp, oneshot::Sender<Delivery<ApprovalReply>>),
    /// Prune or reset state.
    State(StateOp, oneshot::Sender<Delivery<StateReply>>),
    /// Finish what was queued before, close the connection, stop; then
    /// acknowledge (if asked).
    Shutdown(Option<oneshot::Sender<()>>),
}

/// An approval change.
pub(crate) enum ApprovalOp {
    /// Insert a new approval (its time keys already normalised).
    Create {
        record: Box<ApprovalRecord>,
        created_key: String,
        expires_key: String,
    },
    /// Grant or deny a pending approval.
    Decide {
        id: String,
        grant: bool,
        approver: String,
        comment: Option<String>,
        now: String,
        now_key: String,
    },
    /// Use a granted approval.
    Use {
        id: String,
        request_hash: String,
        now_key: String,
    },
}

/// An entry with everything that does not depend on its place in the chain
/// already computed, by the appending task rather than the writer thread
/// (the writer is the serial part, so it does as little as possible).
pub(crate) struct PreparedAppend {
    entry: AuditEntry,
    /// Append only if no record of the same decision and phase exists
    /// (an outcome is reported once).
    once: bool,
    parts: CanonicalParts,
    /// The `time` column, when it differs from `entry.time`.
    time_key: Option<String>,
    actor_id: Option<String>,
    rules_json: String,
    /// The decision's state writes, inserted in the record's transaction
    /// (empty, unallocated, for a decision without state).
    state: Vec<PreparedWrite>,
}

impl PreparedAppend {
    pub(crate) fn new(entry: AuditEntry, once: bool, state: Vec<PreparedWrite>) -> Self {
        let parts = CanonicalParts::new(&entry);
        let columns = Columns::from_entry(&entry);
        let time_key = match columns.time {
            Cow::Borrowed(_) => None,
            Cow::Owned(t) => Some(t),
        };
        let actor_id = columns.actor_id.map(Cow::into_owned);
        let rules_json = columns.rules.into_owned();
        PreparedAppend {
            once,
            parts,
            time_key,
            actor_id,
            rules_json,
            entry,
            state,
        }
    }
}

/// The result of one command inside a batch, before the commit decides
/// whether it stands.
enum Outcome {
    Appended {
        seq: u64,
        prev_hash: String,
        hash: String,
    },
    Approval(Box<ApprovalReply>),
    State(StateReply),
    /// An append refused because its decision already has a record of
    /// its phase ([`PreparedAppend::once`]).
    Duplicate,
    /// For a command that writes nothing, keeping outcomes aligned with
    /// commands.
    Nothing,
}

/// The writer thread's body. Returns when asked to shut down or when every
/// sender is gone; dropping `rx` then makes every later send fail at once,
/// so callers never wait on a writer that is not there.
pub(crate) fn run(mut conn: Connection, rx: Receiver<Command>, checkpointer: Option<Checkpointer>) {
    let mut batch: Vec<Command> = Vec::with_capacity(MAX_BATCH);
    loop {
        match rx.recv() {
            Ok(cmd) => batch.push(cmd),
            Err(_) => break, // the store was dropped
        }
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(cmd) => batch.push(cmd),
                Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
            }
        }
        let shutdown_at = batch.iter().position(|c| matches!(c, Command::Shutdown(_)));
        let Some(at) = shutdown_at else {
            commit_batch(&mut conn, std::mem::take(&mut batch));
            continue;
        };
        // Commands before the shutdown are honoured; those after it (and any
        // still in the channel) are refused.
        let mut rest = batch.split_off(at);
        commit_batch(&mut conn, std::mem::take(&mut batch));
        let mut acks = Vec::new();
        while let Ok(cmd) = rx.try_recv() {
            rest.push(cmd);
        }
        drop(rx);
        for cmd in rest {
            match cmd {
                Command::Shutdown(ack) => acks.extend(ack),
                other => refuse(other, "the store is closed"),
            }
        }
        // The background checkpointer stops first, so that closing the
        // write connection (the last one, unless reads are under way)
        // checkpoints the WAL into the main file.
        drop(checkpointer);
        let _ = conn.close();
        for ack in acks {
            let _ = ack.send(());
        }
        return;
    }
    // Every sender is gone: stop the checkpointer before the connection
    // closes (see the shutdown above).
    drop(checkpointer);
}

/// The answer to one command, carrying the answers of the rest of its
/// batch.
///
/// Waking a task from the writer thread is a system call (and often a
/// context switch) for every waiter. So the writer wakes only the first
/// waiter of a batch, handing it the other answers; that waiter, now
/// running on its async runtime, delivers them ([`Delivery::into_value`]),
/// and the runtime wakes those tasks among its own threads. Whoever drops
/// a delivery delivers what it carries (`Drop`), so no answer is lost if
/// the first waiter has gone away.
pub(crate) struct Delivery<T> {
    value: Option<T>,
    rest: Vec<Reply>,
}

impl<T> Delivery<T> {
    fn alone(value: T) -> Delivery<T> {
        Delivery {
            value: Some(value),
            rest: Vec::new(),
        }
    }

    /// The answer; the answers it carries are delivered first.
    pub(crate) fn into_value(mut self) -> Option<T> {
        self.value.take()
    }
}

impl<T> Drop for Delivery<T> {
    fn drop(&mut self) {
        deliver(std::mem::take(&mut self.rest));
    }
}

/// The answer to one committed command.
// Built once per command and moved into the batch's list: a box would add
// an allocation per record for nothing.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Reply {
    Append(
        oneshot::Sender<Delivery<Result<AuditRecord, StoreError>>>,
        Result<AuditRecord, StoreError>,
    ),
    Approval(oneshot::Sender<Delivery<ApprovalReply>>, ApprovalReply),
    State(oneshot::Sender<Delivery<StateReply>>, StateReply),
}

impl Reply {
    /// Sends this answer carrying `rest`; gives `rest` back if the waiter
    /// has gone away.
    fn send(self, rest: Vec<Reply>) -> Result<(), Vec<Reply>> {
        fn give_back<T>(mut d: Delivery<T>) -> Vec<Reply> {
            // Taken out so that dropping the delivery does not send them.
            std::mem::take(&mut d.rest)
        }
        match self {
            Reply::Append(to, value) => to
                .send(Delivery {
                    value: Some(value),
                    rest,
                })
                .map_err(give_back),
            Reply::Approval(to, value) => to
                .send(Delivery {
                    value: Some(value),
                    rest,
                })
                .map_err(give_back),
            Reply::State(to, value) => to
                .send(Delivery {
                    value: Some(value),
                    rest,
                })
                .map_err(give_back),
        }
    }
}

/// Sends `replies`: the first waiter still there gets its answer and
/// carries the others (see [`Delivery`]). A waiter that gave up (its future
/// was dropped) is no error: its record is appended all the same.
fn deliver(replies: Vec<Reply>) {
    let mut rest = replies.into_iter();
    while let Some(first) = rest.next() {
        match first.send(rest.collect()) {
            Ok(()) => return,
            Err(back) => rest = back.into_iter(),
        }
    }
}

/// Answers a command with an error without running it.
fn refuse(cmd: Command, why: &str) {
    match cmd {
        Command::Append(_, reply) => {
            let _ = reply.send(Delivery::alone(Err(StoreError(why.to_owned()))));
        }
        Command::Approval(_, reply) => {
            let _ = reply.send(Delivery::alone(Err(StoreError(why.to_owned()))));
        }
        Command::State(_, reply) => {
            let _ = reply.send(Delivery::alone(Err(StoreError(why.to_owned()))));
        }
        Command::Shutdown(ack) => {
            if let Some(ack) = ack {
                let _ = ack.send(());
            }
        }
    }
}

/// Runs `batch` in one transaction and answers every command: with its
/// result if the commit succeeded, with an error otherwise (then nothing of
/// the batch is in the database).
fn commit_batch(conn: &mut Connection, batch: Vec<Command>) {
    if batch.is_empty() {
        return;
    }
    let mut outcomes = Vec::with_capacity(batch.len());
    match write_batch(conn, &batch, &mut outcomes) {
        Ok(()) => {
            let mut replies = Vec::with_capacity(batch.len());
            for (cmd, outcome) in batch.into_iter().zip(outcomes) {
                match (cmd, outcome) {
                    (Command::Append(prepared, reply), Outcome::Appended { seq, prev_hash, hash }) => {
                        let record = AuditRecord {
                            seq,
                            entry: prepared.entry,
                            prev_hash,
                            hash,
                        };
                        replies.push(Reply::Append(reply, Ok(record)));
                    }
                    (Command::Append(prepared, reply), Outcome::Duplicate) => {
                        let e = &prepared.entry;
                        replies.push(Reply::Append(
                            reply,
                            Err(StoreError(format!(
                                "{DUPLICATE}: decision `{}` already has a `{}` record",
                                e.decision_id, e.phase
                            ))),
                        ));
                    }
                    (Command::Approval(_, reply), Outcome::Approval(result)) => {
                        replies.push(Reply::Approval(reply, *result));
                    }
                    (Command::State(_, reply), Outcome::State(result)) => {
                        replies.push(Reply::State(reply, result));
                    }
                    (cmd, _) => refuse(cmd, "internal error: batch outcome mismatch"),
                }
            }
            deliver(replies);
        }
        Err(e) => {
            // Nothing of the batch may stay: end the transaction if the
            // failure left it open.
            if !conn.is_autocommit() {
                let _ = conn.execute_batch("ROLLBACK");
            }
            let why = format!("the write was not committed: {}", e.0);
            for cmd in batch {
                refuse(cmd, &why);
            }
        }
    }
}

/// Writes the batch and commits. The chain head is read inside the
/// transaction rather than kept in memory: after a failed commit, or if
/// another process appended to the same file, the next batch still chains
/// onto what is actually stored.
///
/// `BEGIN`, `COMMIT` and every statement come from the connection's
/// statement cache: the writer runs them thousands of times a second, and
/// parsing SQL each time showed in profiles.
fn write_batch(conn: &mut Connection, batch: &[Command], outcomes: &mut Vec<Outcome>) -> Result<(), StoreError> {
    conn.prepare_cached("BEGIN IMMEDIATE")?.execute([])?;
    // On error the caller rolls back (`commit_batch`).
    write_in_transaction(conn, batch, outcomes)?;
    conn.prepare_cached("COMMIT")?.execute([])?;
    Ok(())
}

fn write_in_transaction(conn: &Connection, batch: &[Command], outcomes: &mut Vec<Outcome>) -> Result<(), StoreError> {
    let head: Option<(i64, String)> = conn
        .prepare_cached("SELECT seq, hash FROM chain_head WHERE id = 1")?
        .query_row([], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    // Appending after a missing head would start a second chain: refuse,
    // so that the tampering is looked at (verify reports it).
    let (head_seq, head_hash) =
        head.ok_or_else(|| StoreError("the chain head is missing (the file was altered); run verify".into()))?;
    let mut seq = u64::try_from(head_seq).map_err(|_| StoreError(format!("corrupt chain head: seq {head_seq}")))?;
    let mut prev = head_hash;
    let mut appended = false;
    let mut rows: Vec<Row<'_>> = Vec::new();
    let mut state_rows = state::Pending::default();
    for cmd in batch {
        match cmd {
            Command::Append(p, _) if p.once && !claim_once(conn, &p.entry)? => {
                insert_rows(conn, &mut rows, outcomes)?;
                outcomes.push(Outcome::Duplicate);
            }
            Command::Append(p, _) => {
                // The decision's state, in the transaction of its record
                // (a refused duplicate, above, writes none).
                if !p.state.is_empty() {
                    state_rows.add(conn, &p.state)?;
                }
                seq += 1;
                let body = p.parts.with_seq(seq);
                let hash_hex = chain::record_hash_hex(&prev, &body);
                let hash = String::from_utf8_lossy(&hash_hex).into_owned();
                rows.push(Row {
                    seq: i64::try_from(seq).map_err(|_| StoreError("the audit log is full".into()))?,
                    p,
                    body,
                    prev_hash: std::mem::replace(&mut prev, hash.clone()),
                    hash,
                });
                appended = true;
            }
            Command::Approval(op, _) => {
                // Records queued before it are written first: the order of
                // the batch is the order of the writes.
                insert_rows(conn, &mut rows, outcomes)?;
                outcomes.push(Outcome::Approval(Box::new(approval_in_savepoint(conn, op)?)));
            }
            Command::State(op, _) => {
                insert_rows(conn, &mut rows, outcomes)?;
                // A prune or reset sees the state appended before it.
                state_rows.flush(conn)?;
                outcomes.push(Outcome::State(in_savepoint(conn, "state", || state::run(conn, op))?));
            }
            // Split off before the batch is written; kept aligned regardless.
            Command::Shutdown(_) => {
                insert_rows(conn, &mut rows, outcomes)?;
                outcomes.push(Outcome::Nothing);
            }
        }
    }
    insert_rows(conn, &mut rows, outcomes)?;
    state_rows.flush(conn)?;
    if appended {
        conn.prepare_cached("UPDATE chain_head SET seq = ?1, hash = ?2 WHERE id = 1")?
            .execute(params![i64::try_from(seq).unwrap_or(i64::MAX), prev])?;
    }
    Ok(())
}

/// The start of the error of an append refused as a duplicate; the store
/// tells it from other failures by it ([`crate::Store::append_once`]).
pub(crate) const DUPLICATE: &str = "already recorded";

/// Claims the one record of `entry`'s decision and phase allowed to be
/// appended with [`PreparedAppend::once`]; `false` if it was claimed
/// already (in this batch or before). Claims live in `appended_once`,
/// written in the batch's transaction, so they stand or fall with it. Only
/// such appends claim: a refused body filed under a decision (any client
/// can send one naming any decision) does not take its outcome's place.
fn claim_once(conn: &Connection, entry: &AuditEntry) -> Result<bool, StoreError> {
    let claimed = conn
        .prepare_cached("INSERT INTO appended_once (decision_id, phase) VALUES (?1, ?2) ON CONFLICT DO NOTHING")?
        .execute(params![entry.decision_id, entry.phase])?;
    Ok(claimed == 1)
}

/// A record ready to insert: numbered, hashed, chained.
struct Row<'a> {
    seq: i64,
    p: &'a PreparedAppend,
    body: String,
    prev_hash: String,
    hash: String,
}

/// Rows per INSERT statement, largest first: a batch of records is written
/// with as few statements as these sizes allow (one statement per row costs
/// a reset, a bind and a VDBE run each; a multi-row INSERT shares them).
const INSERT_CHUNKS: [usize; 3] = [16, 4, 1];

/// The INSERT statement for `n` rows.
fn insert_sql(n: usize) -> String {
    let mut sql = String::from(
        "INSERT INTO audit (seq, time, decision_id, phase, action, actor_id, session, effect, rules, body, \
         prev_hash, hash) VALUES ",
    );
    for i in 0..n {
        if i > 0 {
            sql.push(',');
        }
        sql.push_str("(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)");
    }
    sql
}

/// Inserts `rows` (in order) and records their outcomes; leaves `rows`
/// empty.
fn insert_rows(conn: &Connection, rows: &mut Vec<Row<'_>>, outcomes: &mut Vec<Outcome>) -> Result<(), StoreError> {
    let mut rest: &[Row<'_>] = rows;
    while !rest.is_empty() {
        let n = INSERT_CHUNKS.into_iter().find(|&n| n <= rest.len()).unwrap_or(1);
        let (chunk, tail) = rest.split_at(n);
        let mut insert = conn.prepare_cached(&insert_sql(n))?;
        let mut i = 0;
        for r in chunk {
            let e = &r.p.entry;
            let mut bind = |v: &dyn rusqlite::ToSql| -> Result<(), StoreError> {
                i += 1;
                insert.raw_bind_parameter(i, v)?;
                Ok(())
            };
            bind(&r.seq)?;
            bind(&r.p.time_key.as_deref().unwrap_or(&e.time))?;
            bind(&e.decision_id)?;
            bind(&e.phase)?;
            bind(&e.action)?;
            bind(&r.p.actor_id)?;
            bind(&e.session)?;
            bind(&e.effect)?;
            bind(&r.p.rules_json)?;
            bind(&r.body)?;
            bind(&r.prev_hash)?;
            bind(&r.hash)?;
        }
        insert.raw_execute()?;
        rest = tail;
    }
    for r in rows.drain(..) {
        outcomes.push(Outcome::Appended {
            seq: u64::try_from(r.seq).unwrap_or(0),
            prev_hash: r.prev_hash,
            hash: r.hash,
        });
    }
    Ok(())
}

/// Runs one approval change inside a savepoint, so that its failure (a
/// duplicate id, say) undoes only its own writes and does not fail the
/// audit records batched with it. Returns `Err` only if the savepoint
/// itself cannot be managed, which fails the whole batch.
fn approval_in_savepoint(conn: &Connection, op: &ApprovalOp) -> Result<ApprovalReply, StoreError> {
    in_savepoint(conn, "approval", || approval_op(conn, op))
}

/// Runs `f` inside the savepoint `name`, rolled back if `f` fails (see
/// [`approval_in_savepoint`]).
fn in_savepoint<T, E>(
    conn: &Connection,
    name: &str,
    f: impl FnOnce() -> Result<T, E>,
) -> Result<Result<T, E>, StoreError> {
    conn.execute_batch(&format!("SAVEPOINT {name}"))?;
    let result = f();
    match &result {
        Ok(_) => conn.execute_batch(&format!("RELEASE {name}"))?,
        Err(_) => conn.execute_batch(&format!("ROLLBACK TO {name}; RELEASE {name}"))?,
    }
    Ok(result)
}

fn approval_op(conn: &Connection, op: &ApprovalOp) -> ApprovalReply {
    match op {
        ApprovalOp::Create {
            record,
            created_key,
            expires_key,
        } => create(conn, record, created_key, expires_key).map(|()| Ok((**record).clone())),
        ApprovalOp::Decide {
            id,
            grant,
            approver,
            comment,
            now,
            now_key,
        } => decide(conn, id, *grant, approver, comment.as_deref(), now, now_key),
        ApprovalOp::Use {
            id,
            request_hash,
            now_key,
        } => use_approval(conn, id, request_hash, now_key),
    }
}

fn create(conn: &Connection, r: &ApprovalRecord, created_key: &str, expires_key: &str) -> Result<(), StoreError> {
    forget_expired_secrets(conn, created_key)?;
    let rules = chain::canonical_str_list(&r.rules);
    // Stored as given; an empty list reads back as `[role]` (see `approvals`).
    let roles = chain::canonical_str_list(&r.roles);
    let requested_chain = chain::canonical_str_list(&r.requested_chain);
    let summary = chain::canonical_value(&r.summary);
    let result = conn
        .prepare_cached(
            "INSERT INTO approvals (id, request_hash, decision_id, rules, role, action, requested_by, summary, \
             created_at, expires_at, created_key, expires_key, state, decided_by, decided_at, comment, roles, \
             requested_via, hold_seconds, sealed, requested_chain) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21)",
        )?
        .execute(params![
            r.id,
            r.request_hash,
            r.decision_id,
            rules,
            r.role,
            r.action,
            r.requested_by,
            summary,
            r.created_at,
            r.expires_at,
            created_key,
            expires_key,
            r.state.as_str(),
            r.decided_by,
            r.decided_at,
            r.comment,
            roles,
            r.requested_via,
            r.hold_seconds.map(|s| i64::try_from(s).unwrap_or(i64::MAX)),
            r.sealed,
            requested_chain,
        ]);
    match result {
        Ok(_) => Ok(()),
        Err(rusqlite::Error::SqliteFailure(f, _)) if f.code == ErrorCode::ConstraintViolation => {
            Err(StoreError(format!("an approval with id `{}` already exists", r.id)))
        }
        Err(e) => Err(e.into()),
    }
}

fn gate(conn: &Connection, id: &str) -> Result<Option<Gate>, StoreError> {
    Ok(conn
        .prepare_cached(
            "SELECT state, requested_by, expires_key, request_hash, requested_via, hold_seconds, requested_chain \
             FROM approvals WHERE id = ?1",
        )?
        .query_row([id], |r| {
            Ok(Gate {
                state: r.get(0)?,
                requested_by: r.get(1)?,
                expires_key: r.get(2)?,
                request_hash: r.get(3)?,
                requested_via: r.get(4)?,
                hold_seconds: r.get(5)?,
                requested_chain: r.get(6)?,
            })
        })
        .optional()?)
}

/// Clears the sealed secrets of approvals that expired before `now_key`
/// without being decided: nobody can decide them any more.
fn forget_expired_secrets(conn: &Connection, now_key: &str) -> Result<(), StoreError> {
    conn.prepare_cached("UPDATE approvals SET sealed = NULL WHERE sealed IS NOT NULL AND expires_key <= ?1")?
        .execute([now_key])?;
    Ok(())
}

fn reload(conn: &Connection, id: &str) -> ApprovalReply {
    match approvals::load(conn, id)? {
        Some(record) => Ok(Ok(record)),
        None => Err(StoreError(format!(
            "approval `{id}` vanished while it was being changed"
        ))),
    }
}

fn decide(
    conn: &Connection,
    id: &str,
    grant: bool,
    approver: &str,
    comment: Option<&str>,
    now: &str,
    now_key: &str,
) -> ApprovalReply {
    let Some(g) = gate(conn, id)? else {
        return Ok(Err(ApprovalError::NotFound(id.to_owned())));
    };
    if let Err(refused) = g.may_decide(id, approver, now_key)? {
        return Ok(Err(refused));
    }
    let expiry = g.decided_expiry(grant, now)?;
    let (expires_at, expires_key) = match &expiry {
        Some((at, key)) => (Some(at.as_str()), Some(key.as_str())),
        None => (None, None),
    };
    // The conditions are repeated in the UPDATE so that the change is
    // correct on its own, whatever runs the checks above. Decided, the
    // approval no longer needs the request's secrets.
    let state = if grant { "granted" } else { "denied" };
    let changed = conn
        .prepare_cached(
            "UPDATE approvals SET state = ?2, decided_by = ?3, decided_at = ?4, comment = ?5, sealed = NULL, \
             expires_at = coalesce(?7, expires_at), expires_key = coalesce(?8, expires_key) \
             WHERE id = ?1 AND state = 'pending' AND expires_key > ?6",
        )?
        .execute(params![
            id,
            state,
            approver,
            now,
            comment,
            now_key,
            expires_at,
            expires_key
        ])?;
    forget_expired_secrets(conn, now_key)?;
    if changed != 1 {
        return Err(StoreError(format!(
            "approval `{id}` changed while it was being decided"
        )));
    }
    reload(conn, id)
}

fn use_approval(conn: &Connection, id: &str, request_hash: &str, now_key: &str) -> ApprovalReply {
    let Some(g) = gate(conn, id)? else {
        return Ok(Err(ApprovalError::NotFound(id.to_owned())));
    };
    if g.state != "granted" {
        return Ok(Err(ApprovalError::WrongState {
            id: id.to_owned(),
            state: g.state,
            expected: "granted".into(),
        }));
    }
    if now_key >= g.expires_key.as_str() {
        return Ok(Err(ApprovalError::Expired(id.to_owned())));
    }
    if g.request_hash != request_hash {
        return Ok(Err(ApprovalError::RequestMismatch(id.to_owned())));
    }
    let changed = conn
        .prepare_cached(
            "UPDATE approvals SET state = 'used' \
             WHERE id = ?1 AND state = 'granted' AND expires_key > ?2 AND request_hash = ?3",
        )?
        .execute(params![id, now_key, request_hash])?;
    if changed != 1 {
        return Err(StoreError(format!("approval `{id}` changed while it was being used")));
    }
    reload(conn, id)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]

    use super::*;

    fn approval_reply(n: usize) -> ApprovalReply {
        Ok(Err(ApprovalError::NotFound(n.to_string())))
    }

    /// Every waiter gets its answer, through the first waiter still there
    /// (waiters that went away are skipped).
    #[test]
    fn every_answer_arrives_whoever_carries_it() {
        for gone in [vec![], vec![0], vec![0, 1], vec![1], vec![0, 1, 2, 3]] {
            let mut receivers = Vec::new();
            let mut replies = Vec::new();
            for n in 0..4 {
                let (tx, rx) = oneshot::channel();
                replies.push(Reply::Approval(tx, approval_reply(n)));
                receivers.push(Some(rx));
            }
            for &g in &gone {
                receivers[g] = None;
            }
            deliver(replies);
            // In order: reading a delivery hands on the answers it carries.
            for (n, rx) in receivers.iter_mut().enumerate() {
                if let Some(mut rx) = rx.take() {
                    let d = rx
                        .try_recv()
                        .unwrap_or_else(|e| panic!("{gone:?}: answer {n} missing: {e}"));
                    assert_eq!(d.into_value().unwrap().unwrap(), approval_reply(n).unwrap());
                }
            }
        }
    }

    /// A delivery dropped unread still hands on what it carries.
    #[test]
    fn a_dropped_delivery_hands_on_its_answers() {
        let (tx0, mut rx0) = oneshot::channel();
        let (tx1, mut rx1) = oneshot::channel();
        deliver(vec![
            Reply::Approval(tx0, approval_reply(0)),
            Reply::Approval(tx1, approval_reply(1)),
        ]);
        assert!(rx1.try_recv().is_err(), "carried by the first waiter");
        drop(rx0.try_recv().unwrap());
        assert_eq!(
            rx1.try_recv().unwrap().into_value().unwrap().unwrap(),
            approval_reply(1).unwrap()
        );
    }
}
