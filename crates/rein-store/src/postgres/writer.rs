//! The writer task and its group commit.
//!
//! Each process has one writer task with a dedicated connection. It takes
//! whatever appends are queued (those that arrived while its previous batch
//! committed, up to [`MAX_BATCH`]) and writes them in ONE transaction:
//!
//! 1. if an item was decided under the state lease, the fence:
//!    `SELECT generation FROM rein_state_lease WHERE id = 1 FOR SHARE`; the
//!    items of another generation are refused (only they: the rest of the
//!    batch goes on). `FOR SHARE` also makes the next lease's
//!    `UPDATE … generation + 1` wait for this batch, so that its delta sees
//!    the batch's state writes. If an item writes state WITHOUT a lease,
//!    the same row's `epoch` is bumped instead (every process then reloads
//!    the state at its next lease: such writes are in no delta);
//! 2. the claims of `append_once` items, one `INSERT … ON CONFLICT DO
//!    NOTHING RETURNING` (a duplicate is refused alone; an item refused by
//!    the fence claims nothing). Before the head's lock: a claim may wait
//!    for another replica's transaction that claims the same outcome, and
//!    must not wait while holding the head;
//! 3. `SELECT seq, hash FROM chain_head WHERE id = 1 FOR UPDATE`: the lock
//!    that serialises the appends of every replica into one chain;
//! 4. numbering and hashing with `chain.rs`, exactly as SQLite's writer
//!    does (same canonical body, `prev_hash`, hash);
//! 5. one `INSERT … SELECT FROM unnest(…)` of the records, the state rows
//!    of their decisions (with their `seq`), the chain head moved, COMMIT.
//!
//! Steps 1 to 3 go in one round trip (with BEGIN), 5 in another (with
//! COMMIT): the head is locked for one round trip and the commit's flush.
//!
//! Appends are answered only after COMMIT. A batch that fails answers every
//! append in it with the error and drops its connection; the next batch
//! opens a fresh one (a restarted database is picked up without restarting
//! the process).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, GenericClient, Statement};

use super::{connect, Inner};
use crate::chain::{self, CanonicalParts};
use crate::sqlite::columns::Columns;
use crate::sqlite::state::{self as sqlite_state, PreparedWrite};
use crate::{AuditEntry, AuditRecord, StateWrite, StoreError};

/// Most appends in one transaction: bounds the latency a batch adds to
/// its first waiter and the size of one statement's arrays.
pub(crate) const MAX_BATCH: usize = 1024;

/// What an append is answered: the record, or `None` for an `append_once`
/// whose decision and phase were recorded already.
pub(crate) type AppendReply = Result<Option<AuditRecord>, StoreError>;

/// One append queued for the writer.
pub(crate) struct Command {
    pub(crate) append: Box<PreparedAppend>,
    pub(crate) reply: oneshot::Sender<AppendReply>,
}

/// An entry with everything that does not depend on its place in the chain
/// computed by the appending task (the writer is the serial part).
pub(crate) struct PreparedAppend {
    entry: AuditEntry,
    /// Append only if no record of the same decision and phase was claimed.
    once: bool,
    /// The state lease it was decided under (`append_leased`).
    generation: Option<u64>,
    parts: CanonicalParts,
    time_col: String,
    actor_id: Option<String>,
    rules_json: String,
    state: Vec<PreparedWrite>,
}

impl PreparedAppend {
    /// Encodes `entry` and its decision's state `writes`; refuses a write
    /// of another decision (as SQLite does) and a negative limit use.
    pub(crate) fn new(
        entry: AuditEntry,
        once: bool,
        writes: Vec<StateWrite>,
        generation: Option<u64>,
    ) -> Result<PreparedAppend, StoreError> {
        let state = if writes.is_empty() {
            Vec::new()
        } else {
            sqlite_state::prepare(&entry.decision_id, writes)?
        };
        let parts = CanonicalParts::new(&entry);
        let columns = Columns::from_entry(&entry);
        let time_col = columns.time.into_owned();
        let actor_id = columns.actor_id.map(std::borrow::Cow::into_owned);
        let rules_json = columns.rules.into_owned();
        Ok(PreparedAppend {
            entry,
            once,
            generation,
            parts,
            time_col,
            actor_id,
            rules_json,
            state,
        })
    }
}

/// The start of the error of an append refused by the fence: its lease is
/// no longer the newest.
pub(crate) const FENCED: &str = "the state lease was lost";

/// The writer's connection and its prepared statements.
struct Conn {
    client: Client,
    stmts: Statements,
}

/// The statements the writer runs, prepared once per connection (each
/// would otherwise cost a round trip to prepare).
pub(crate) struct Statements {
    fence: Statement,
    fence_and_bump: Statement,
    head: Statement,
    claim: Statement,
    insert_audit: Statement,
    set_head: Statement,
    pub(crate) state: StateStatements,
}

impl Statements {
    async fn prepare(client: &Client) -> Result<Statements, StoreError> {
        Ok(Statements {
            fence: client
                .prepare("SELECT generation FROM rein_state_lease WHERE id = 1 FOR SHARE")
                .await?,
            fence_and_bump: client
                .prepare("UPDATE rein_state_lease SET epoch = epoch + 1 WHERE id = 1 RETURNING generation")
                .await?,
            head: client
                .prepare("SELECT seq, hash FROM chain_head WHERE id = 1 FOR UPDATE")
                .await?,
            claim: client
                .prepare(
                    "INSERT INTO appended_once (decision_id, phase) \
                     SELECT d, p FROM unnest($1::text[], $2::text[], $3::bigint[]) AS u(d, p, g) \
                     WHERE g IS NULL OR g = (SELECT generation FROM rein_state_lease WHERE id = 1) \
                     ON CONFLICT DO NOTHING RETURNING decision_id, phase",
                )
                .await?,
            insert_audit: client.prepare(INSERT_AUDIT).await?,
            set_head: client
                .prepare("UPDATE chain_head SET seq = $1, hash = $2 WHERE id = 1")
                .await?,
            state: StateStatements::prepare(client).await?,
        })
    }
}

/// One INSERT for every record of a batch, in order.
pub(crate) const INSERT_AUDIT: &str = "INSERT INTO audit (seq, time, decision_id, phase, action, actor_id, session, \
     effect, rules, body, prev_hash, hash) \
     SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], \
     $8::text[], $9::text[], $10::text[], $11::text[], $12::text[])";

/// The statements that write state rows (the writer's, and an import's).
pub(crate) struct StateStatements {
    uses: Statement,
    calls: Statement,
    outputs: Statement,
    labels: Statement,
    sessions: Statement,
}

impl StateStatements {
    pub(crate) async fn prepare(client: &Client) -> Result<StateStatements, StoreError> {
        // WITH ORDINALITY … ORDER BY: rows get their `row_order` in the
        // order of the arrays (the order of the decisions), as SQLite's
        // rowid.
        Ok(StateStatements {
            uses: client
                .prepare(
                    "INSERT INTO limit_uses (seq, decision_id, bucket, time, amount) \
                     SELECT s, d, b, t, a FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[]) \
                     WITH ORDINALITY AS u(s, d, b, t, a, n) ORDER BY n",
                )
                .await?,
            calls: client
                .prepare(
                    "INSERT INTO session_calls (seq, output_seq, decision_id, session, action, time, effect, input, \
                     output) \
                     SELECT s, os, d, se, a, t, e, i, o FROM unnest($1::bigint[], $2::bigint[], $3::text[], \
                     $4::text[], $5::text[], $6::text[], $7::text[], $8::text[], $9::text[]) \
                     WITH ORDINALITY AS u(s, os, d, se, a, t, e, i, o, n) ORDER BY n",
                )
                .await?,
            // Matched on the session too: an outcome fills in a call of its
            // own session only; a call no longer kept (pruned) is no error.
            outputs: client
                .prepare(
                    "UPDATE session_calls c SET output = o.output, output_seq = o.seq \
                     FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[]) AS o(decision_id, session, \
                     output, seq) \
                     WHERE c.decision_id = o.decision_id AND c.session = o.session",
                )
                .await?,
            labels: client
                .prepare(
                    "INSERT INTO session_labels (seq, session, label, decision_id, time) \
                     SELECT s, se, l, d, t FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], \
                     $5::text[]) WITH ORDINALITY AS u(s, se, l, d, t, n) ORDER BY n",
                )
                .await?,
            sessions: client
                .prepare(
                    "INSERT INTO sessions (id, last_seen, seq) \
                     SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[]) \
                     ON CONFLICT (id) DO UPDATE SET last_seen = greatest(sessions.last_seen, excluded.last_seen), \
                     seq = greatest(sessions.seq, excluded.seq)",
                )
                .await?,
        })
    }
}

/// Writes the state rows of `writes` (each with the seq of its decision's
/// record, in chain order) in `tx`.
pub(crate) async fn write_state<C: GenericClient>(
    client: &C,
    stmts: &StateStatements,
    writes: &[(i64, &PreparedWrite)],
) -> Result<(), StoreError> {
    if writes.is_empty() {
        return Ok(());
    }
    #[derive(Default)]
    struct Uses<'a> {
        seq: Vec<i64>,
        decision: Vec<&'a str>,
        bucket: Vec<&'a str>,
        time: Vec<&'a str>,
        amount: Vec<&'a str>,
    }
    #[derive(Default)]
    struct Calls<'a> {
        seq: Vec<i64>,
        output_seq: Vec<Option<i64>>,
        decision: Vec<&'a str>,
        session: Vec<&'a str>,
        action: Vec<&'a str>,
        time: Vec<&'a str>,
        effect: Vec<&'a str>,
        input: Vec<&'a str>,
        output: Vec<Option<&'a str>>,
    }
    #[derive(Default)]
    struct Labels<'a> {
        seq: Vec<i64>,
        session: Vec<&'a str>,
        label: Vec<&'a str>,
        decision: Vec<&'a str>,
        time: Vec<&'a str>,
    }
    let mut uses = Uses::default();
    let mut calls = Calls::default();
    let mut labels = Labels::default();
    // (decision, session) → (output, seq): the last output of a call wins.
    let mut outputs: HashMap<(&str, &str), (&str, i64)> = HashMap::new();
    // session → (latest time, latest seq).
    let mut touched: HashMap<&str, (&str, i64)> = HashMap::new();
    fn bump<'a>(touched: &mut HashMap<&'a str, (&'a str, i64)>, session: &'a str, time: &'a str, seq: i64) {
        let e = touched.entry(session).or_insert((time, seq));
        e.0 = e.0.max(time);
        e.1 = e.1.max(seq);
    }
    for &(seq, w) in writes {
        match w {
            PreparedWrite::Use {
                decision_id,
                bucket,
                time,
                amount,
            } => {
                uses.seq.push(seq);
                uses.decision.push(decision_id);
                uses.bucket.push(bucket);
                uses.time.push(time);
                uses.amount.push(amount);
            }
            PreparedWrite::Call {
                session,
                decision_id,
                action,
                time,
                effect,
                input,
                output,
            } => {
                calls.seq.push(seq);
                calls.output_seq.push(output.as_ref().map(|_| seq));
                calls.decision.push(decision_id);
                calls.session.push(session);
                calls.action.push(action);
                calls.time.push(time);
                calls.effect.push(effect);
                calls.input.push(input);
                calls.output.push(output.as_deref());
                bump(&mut touched, session, time, seq);
            }
            PreparedWrite::Output {
                session,
                decision_id,
                output,
            } => {
                outputs.insert((decision_id.as_str(), session.as_str()), (output.as_str(), seq));
            }
            PreparedWrite::Label {
                session,
                label,
                decision_id,
                time,
            } => {
                labels.seq.push(seq);
                labels.session.push(session);
                labels.label.push(label);
                labels.decision.push(decision_id);
                labels.time.push(time);
                bump(&mut touched, session, time, seq);
            }
        }
    }
    // Sorted: rows are locked in one order by every writer (no deadlock
    // between two statements that touch the same calls or sessions, a
    // prune among them).
    let mut outputs: Vec<_> = outputs.into_iter().collect();
    outputs.sort_unstable();
    let out_decision: Vec<&str> = outputs.iter().map(|((d, _), _)| *d).collect();
    let out_session: Vec<&str> = outputs.iter().map(|((_, s), _)| *s).collect();
    let out_output: Vec<&str> = outputs.iter().map(|(_, (o, _))| *o).collect();
    let out_seq: Vec<i64> = outputs.iter().map(|(_, (_, s))| *s).collect();
    let mut touched: Vec<_> = touched.into_iter().collect();
    touched.sort_unstable();
    let touched_id: Vec<&str> = touched.iter().map(|(s, _)| *s).collect();
    let touched_seen: Vec<&str> = touched.iter().map(|(_, (t, _))| *t).collect();
    let touched_seq: Vec<i64> = touched.iter().map(|(_, (_, s))| *s).collect();
    // Sent together (one round trip), in this order: the server runs them
    // in order, so an output finds a call inserted just before it.
    let use_params: [&(dyn ToSql + Sync); 5] = [&uses.seq, &uses.decision, &uses.bucket, &uses.time, &uses.amount];
    let call_params: [&(dyn ToSql + Sync); 9] = [
        &calls.seq,
        &calls.output_seq,
        &calls.decision,
        &calls.session,
        &calls.action,
        &calls.time,
        &calls.effect,
        &calls.input,
        &calls.output,
    ];
    let output_params: [&(dyn ToSql + Sync); 4] = [&out_decision, &out_session, &out_output, &out_seq];
    let label_params: [&(dyn ToSql + Sync); 5] = [
        &labels.seq,
        &labels.session,
        &labels.label,
        &labels.decision,
        &labels.time,
    ];
    let session_params: [&(dyn ToSql + Sync); 3] = [&touched_id, &touched_seen, &touched_seq];
    tokio::try_join!(
        biased;
        run_if(!uses.seq.is_empty(), client, &stmts.uses, &use_params),
        run_if(!calls.seq.is_empty(), client, &stmts.calls, &call_params),
        run_if(!out_seq.is_empty(), client, &stmts.outputs, &output_params),
        run_if(!labels.seq.is_empty(), client, &stmts.labels, &label_params),
        run_if(!touched_seq.is_empty(), client, &stmts.sessions, &session_params),
    )?;
    Ok(())
}

/// Executes `stmt` unless `run` is false. Its request is sent when first
/// polled (see the pipelining in [`write_state`]).
async fn run_if<C: GenericClient>(
    run: bool,
    client: &C,
    stmt: &Statement,
    params: &[&(dyn ToSql + Sync)],
) -> Result<u64, StoreError> {
    if !run {
        return Ok(0);
    }
    Ok(client.execute(stmt, params).await?)
}

/// What became of one append of a committed batch.
enum Outcome {
    Appended {
        seq: u64,
        prev_hash: String,
        hash: String,
    },
    /// `append_once` of a decision and phase claimed already.
    Duplicate,
    /// Decided under a lease that is no longer the newest (the newest is
    /// this one).
    Fenced(u64),
}

/// What the writer task is sent.
pub(crate) enum Message {
    /// An append to commit.
    Append(Command),
    /// Commit what was queued before, refuse what comes after, close the
    /// connection, end; then acknowledge.
    Close(oneshot::Sender<()>),
}

/// The writer task's body: runs until it is closed or every sender is gone
/// (the store was dropped: what was queued is committed first).
pub(crate) async fn run(inner: Arc<Inner>, mut rx: mpsc::UnboundedReceiver<Message>) {
    let mut conn: Option<Conn> = None;
    let mut messages: Vec<Message> = Vec::with_capacity(MAX_BATCH);
    loop {
        if rx.recv_many(&mut messages, MAX_BATCH).await == 0 {
            return;
        }
        let mut batch = Vec::with_capacity(messages.len());
        let mut closing = Vec::new();
        for message in messages.drain(..) {
            match message {
                Message::Append(cmd) if closing.is_empty() => batch.push(cmd),
                Message::Append(cmd) => refuse(cmd),
                Message::Close(ack) => closing.push(ack),
            }
        }
        if !batch.is_empty() {
            commit_batch(&inner, &mut conn, batch).await;
        }
        if !closing.is_empty() {
            // No more sends succeed; what is still queued is refused.
            rx.close();
            while let Ok(message) = rx.try_recv() {
                match message {
                    Message::Append(cmd) => refuse(cmd),
                    Message::Close(ack) => closing.push(ack),
                }
            }
            drop(conn);
            for ack in closing {
                let _ = ack.send(());
            }
            return;
        }
    }
}

fn refuse(cmd: Command) {
    let _ = cmd.reply.send(Err(StoreError(
        "the store is closed (its writer task has stopped)".into(),
    )));
}

/// Runs one batch and answers every append of it.
async fn commit_batch(inner: &Inner, conn: &mut Option<Conn>, batch: Vec<Command>) {
    let limit = inner.options.statement_timeout + inner.options.connect_timeout;
    let result = match tokio::time::timeout(limit, write_batch(inner, conn, &batch)).await {
        Ok(result) => result,
        Err(_) => Err(StoreError(format!(
            "the database did not answer within {} s",
            limit.as_secs()
        ))),
    };
    match result {
        Ok(outcomes) => {
            for (cmd, outcome) in batch.into_iter().zip(outcomes) {
                let Command { append, reply } = cmd;
                let answer = match outcome {
                    Outcome::Appended { seq, prev_hash, hash } => Ok(Some(AuditRecord {
                        seq,
                        entry: append.entry,
                        prev_hash,
                        hash,
                    })),
                    Outcome::Duplicate => Ok(None),
                    Outcome::Fenced(newest) => Err(StoreError(format!(
                        "{FENCED}: decision `{}` was decided under lease {} but lease {newest} was taken since \
                         (the state may have changed); it was not recorded",
                        append.entry.decision_id,
                        append.generation.unwrap_or(0),
                    ))),
                };
                // A waiter that gave up is no error: the record stands.
                let _ = reply.send(answer);
            }
        }
        Err(e) => {
            // Whatever state the connection is in (inside a failed
            // transaction, broken), the next batch starts on a fresh one.
            *conn = None;
            let why = format!("the write was not committed: {}", e.0);
            for cmd in batch {
                let _ = cmd.reply.send(Err(StoreError(why.clone())));
            }
        }
    }
}

/// The writer's connection, opened if there is none or it broke.
async fn connection<'c>(inner: &Inner, conn: &'c mut Option<Conn>) -> Result<&'c mut Conn, StoreError> {
    if conn.as_ref().is_some_and(|c| c.client.is_closed()) {
        *conn = None;
    }
    if conn.is_none() {
        let (client, _ended) = connect::dedicated(&inner.config, &inner.tls, |_| {}).await?;
        let stmts = Statements::prepare(&client).await?;
        *conn = Some(Conn { client, stmts });
    }
    conn.as_mut()
        .ok_or_else(|| StoreError("the writer has no connection".into()))
}

/// Writes one batch in one transaction, its statements pipelined in two
/// round trips: BEGIN, the fence, the claims and the head's lock; then the
/// rows, the state, the head and COMMIT. (A statement that fails aborts the transaction: the COMMIT after
/// it rolls back, and the failure is the batch's.)
async fn write_batch(inner: &Inner, conn: &mut Option<Conn>, batch: &[Command]) -> Result<Vec<Outcome>, StoreError> {
    let Conn { client, stmts } = connection(inner, conn).await?;
    let client = &*client;
    let mut outcomes: Vec<Option<Outcome>> = batch.iter().map(|_| None).collect();
    let fenced = batch.iter().any(|c| c.append.generation.is_some());
    // State written without the lease (a caller that does not take it)
    // reaches no other process's delta: the epoch moves, so that every
    // process reloads the state at its next lease. The row is locked before
    // the head, in the order every batch takes them.
    let unleased_state = batch
        .iter()
        .any(|c| c.append.generation.is_none() && !c.append.state.is_empty());
    // The claims of `append_once` items, in the same round trip and before
    // the head's lock (a claim may wait for another replica's transaction
    // that claimed the same outcome; it must not wait holding the head).
    // Items decided under a lease that is not the newest claim nothing (the
    // statement reads the generation the fence locked).
    let once: Vec<usize> = (0..batch.len()).filter(|&i| batch[i].append.once).collect();
    let once_ids: Vec<&str> = once
        .iter()
        .map(|&i| batch[i].append.entry.decision_id.as_str())
        .collect();
    let once_phases: Vec<&str> = once.iter().map(|&i| batch[i].append.entry.phase.as_str()).collect();
    let once_generations: Vec<Option<i64>> = once
        .iter()
        .map(|&i| batch[i].append.generation.map(|g| i64::try_from(g).unwrap_or(-1)))
        .collect();
    let claim_params: [&(dyn ToSql + Sync); 3] = [&once_ids, &once_phases, &once_generations];
    let (_, newest, claimed, head) = tokio::try_join!(
        biased;
        async { client.batch_execute("BEGIN").await.map_err(StoreError::from) },
        async {
            let stmt = match (unleased_state, fenced) {
                (true, _) => &stmts.fence_and_bump,
                (false, true) => &stmts.fence,
                (false, false) => return Ok(None),
            };
            let row = client.query_one(stmt, &[]).await?;
            Ok::<_, StoreError>(Some(row.try_get::<_, i64>(0)?))
        },
        async {
            if once.is_empty() {
                return Ok(Vec::new());
            }
            Ok::<_, StoreError>(client.query(&stmts.claim, &claim_params).await?)
        },
        async { client.query_opt(&stmts.head, &[]).await.map_err(StoreError::from) },
    )?;
    if let Some(newest) = newest {
        let newest = u64::try_from(newest).map_err(|_| StoreError(format!("corrupt lease generation {newest}")))?;
        for (cmd, outcome) in batch.iter().zip(outcomes.iter_mut()) {
            if cmd.append.generation.is_some_and(|g| g != newest) {
                *outcome = Some(Outcome::Fenced(newest));
            }
        }
    }
    // Of several items of one decision and phase in the batch, the first
    // gets the claim.
    let mut claims: HashSet<(String, String)> = HashSet::with_capacity(claimed.len());
    for row in claimed {
        claims.insert((row.try_get(0)?, row.try_get(1)?));
    }
    for &i in &once {
        if outcomes[i].is_some() {
            continue;
        }
        let e = &batch[i].append.entry;
        if !claims.remove(&(e.decision_id.clone(), e.phase.clone())) {
            outcomes[i] = Some(Outcome::Duplicate);
        }
    }
    // Appending after a missing head would start a second chain: refuse, so
    // that the tampering is looked at (verify reports it).
    let head =
        head.ok_or_else(|| StoreError("the chain head is missing (the database was altered); run verify".into()))?;
    let head_seq: i64 = head.try_get(0)?;
    let mut prev: String = head.try_get(1)?;
    let mut seq = u64::try_from(head_seq).map_err(|_| StoreError(format!("corrupt chain head: seq {head_seq}")))?;

    let mut cols = AuditColumns::with_capacity(batch.len());
    let mut state: Vec<(i64, &PreparedWrite)> = Vec::new();
    for (cmd, outcome) in batch.iter().zip(outcomes.iter_mut()) {
        if outcome.is_some() {
            continue;
        }
        let p = &cmd.append;
        seq += 1;
        let seq_i = i64::try_from(seq).map_err(|_| StoreError("the audit log is full".into()))?;
        let body = p.parts.with_seq(seq);
        let hash = String::from_utf8_lossy(&chain::record_hash_hex(&prev, &body)).into_owned();
        state.extend(p.state.iter().map(|w| (seq_i, w)));
        cols.push(seq_i, p, body, prev.clone(), hash.clone());
        *outcome = Some(Outcome::Appended {
            seq,
            prev_hash: std::mem::replace(&mut prev, hash.clone()),
            hash,
        });
    }
    // Every item has its outcome (fenced, duplicate or numbered) before
    // anything is committed.
    if outcomes.iter().any(Option::is_none) {
        return Err(StoreError(
            "internal error: an append of the batch has no outcome".into(),
        ));
    }
    let appended = !cols.seq.is_empty();
    let head_seq = i64::try_from(seq).map_err(|_| StoreError("the audit log is full".into()))?;
    let head_params: [&(dyn ToSql + Sync); 2] = [&head_seq, &prev];
    tokio::try_join!(
        biased;
        async {
            if appended {
                cols.insert(client, &stmts.insert_audit).await?;
            }
            Ok::<_, StoreError>(())
        },
        write_state(client, &stmts.state, &state),
        run_if(appended, client, &stmts.set_head, &head_params),
        async { client.batch_execute("COMMIT").await.map_err(StoreError::from) },
    )?;
    Ok(outcomes.into_iter().flatten().collect())
}

/// The audit rows of a batch, as the arrays of [`INSERT_AUDIT`].
#[derive(Default)]
pub(crate) struct AuditColumns<'a> {
    seq: Vec<i64>,
    time: Vec<&'a str>,
    decision_id: Vec<&'a str>,
    phase: Vec<&'a str>,
    action: Vec<&'a str>,
    actor_id: Vec<Option<&'a str>>,
    session: Vec<Option<&'a str>>,
    effect: Vec<&'a str>,
    rules: Vec<&'a str>,
    body: Vec<String>,
    prev_hash: Vec<String>,
    hash: Vec<String>,
}

impl<'a> AuditColumns<'a> {
    fn with_capacity(n: usize) -> Self {
        AuditColumns {
            seq: Vec::with_capacity(n),
            time: Vec::with_capacity(n),
            decision_id: Vec::with_capacity(n),
            phase: Vec::with_capacity(n),
            action: Vec::with_capacity(n),
            actor_id: Vec::with_capacity(n),
            session: Vec::with_capacity(n),
            effect: Vec::with_capacity(n),
            rules: Vec::with_capacity(n),
            body: Vec::with_capacity(n),
            prev_hash: Vec::with_capacity(n),
            hash: Vec::with_capacity(n),
        }
    }

    fn push(&mut self, seq: i64, p: &'a PreparedAppend, body: String, prev_hash: String, hash: String) {
        let e = &p.entry;
        self.push_columns(
            seq,
            [
                p.time_col.as_str(),
                &e.decision_id,
                &e.phase,
                &e.action,
                &e.effect,
                &p.rules_json,
            ],
            p.actor_id.as_deref(),
            e.session.as_deref(),
            body,
            prev_hash,
            hash,
        );
    }

    /// Adds a row: `fixed` is time, decision_id, phase, action, effect,
    /// rules.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn push_columns(
        &mut self,
        seq: i64,
        fixed: [&'a str; 6],
        actor_id: Option<&'a str>,
        session: Option<&'a str>,
        body: String,
        prev_hash: String,
        hash: String,
    ) {
        let [time, decision_id, phase, action, effect, rules] = fixed;
        self.seq.push(seq);
        self.time.push(time);
        self.decision_id.push(decision_id);
        self.phase.push(phase);
        self.action.push(action);
        self.actor_id.push(actor_id);
        self.session.push(session);
        self.effect.push(effect);
        self.rules.push(rules);
        self.body.push(body);
        self.prev_hash.push(prev_hash);
        self.hash.push(hash);
    }

    /// Inserts the rows with `stmt` (prepared from [`INSERT_AUDIT`]).
    pub(crate) async fn insert<C: GenericClient>(&self, client: &C, stmt: &Statement) -> Result<u64, StoreError> {
        Ok(client
            .execute(
                stmt,
                &[
                    &self.seq,
                    &self.time,
                    &self.decision_id,
                    &self.phase,
                    &self.action,
                    &self.actor_id,
                    &self.session,
                    &self.effect,
                    &self.rules,
                    &self.body,
                    &self.prev_hash,
                    &self.hash,
                ],
            )
            .await?)
    }
}
