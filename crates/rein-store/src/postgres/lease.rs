//! The state lease (design of issue 18, §4): one process at a time decides
//! on limits and sessions, against its own copy brought up to date.
//!
//! Taking it: on a DEDICATED connection (a session-level advisory lock
//! lives as long as its connection, so a process killed gives it up),
//! `pg_advisory_lock` (waits for the holder), then `UPDATE
//! rein_state_lease SET generation = generation + 1` (which waits for any
//! fenced batch in flight: those hold the row `FOR SHARE`), then, in one
//! snapshot, the newest record's seq and the state written by records
//! after the caller's `after_seq`. Appends decided under the lease carry its
//! generation; the writer refuses those of an older one (the fence).
//!
//! If the lease connection breaks, the lease is lost: the store notices
//! (the connection is closed) and the next acquire opens a new one.

use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use jiff::Timestamp;
use rein_engine::state::{BucketKey, Decimal, SessionCall, StateWrite};
use rein_engine::Effect;
use tokio_postgres::Client;

use super::{connect, Inner};
use crate::{StateLease, StoreError};

/// The advisory lock key of the state lease ("REINSTAT" in ASCII). Advisory
/// locks are per database: stores in other databases do not share it.
pub(crate) const STATE_LOCK: i64 = 0x5245_494E_5354_4154;

/// The lease this process holds, as appends check it without waiting for
/// the lease's lock: its generation and whether its connection is still
/// open (cleared when released or lost).
pub(crate) type Mark = Arc<Mutex<Option<(u64, Arc<AtomicBool>)>>>;

/// Refuses an append decided under `generation` unless this process still
/// holds that lease on a live connection. (The fence in the writer's
/// transaction is what makes it exact; this refuses early what this
/// process already knows to be lost: a lease whose connection broke holds
/// no lock, even before another process takes it.)
pub(crate) fn check_held(mark: &Mark, generation: u64) -> Result<(), StoreError> {
    let held = mark.lock().ok().and_then(|m| m.clone());
    match held {
        Some((g, open)) if g == generation && open.load(Ordering::Acquire) => Ok(()),
        Some((g, open)) if g == generation && !open.load(Ordering::Acquire) => Err(StoreError(format!(
            "{}: lease {generation}'s connection to the database broke; the decision was not recorded",
            super::writer::FENCED
        ))),
        _ => Err(StoreError(format!(
            "{}: lease {generation} is not held by this process (released, lost or replaced); the decision was \
             not recorded",
            super::writer::FENCED
        ))),
    }
}

/// The lease's side of the store: its connection, what it holds, the epoch
/// it last saw.
pub(crate) struct Lease {
    conn: Option<Client>,
    /// Whether `conn` is still open (cleared by its connection's task).
    open: Arc<AtomicBool>,
    /// The generation held, if any.
    held: Option<u64>,
    /// The epoch of the state this process last loaded or leased: a lease
    /// whose epoch differs tells the caller to reload.
    epoch: Option<i64>,
    mark: Mark,
    /// The store was closed: no lease is taken any more.
    closed: bool,
}

impl Lease {
    /// No lease held; `epoch` the one the store saw at open.
    pub(crate) fn new(epoch: Option<i64>, mark: Mark) -> Lease {
        Lease {
            conn: None,
            open: Arc::new(AtomicBool::new(false)),
            held: None,
            epoch,
            mark,
            closed: false,
        }
    }

    fn set_mark(&self, held: Option<u64>) {
        if let Ok(mut mark) = self.mark.lock() {
            *mark = held.map(|g| (g, Arc::clone(&self.open)));
        }
    }

    /// Forgets the connection (closing it gives the advisory lock up).
    fn lose(&mut self) {
        self.conn = None;
        self.held = None;
        self.open.store(false, Ordering::Release);
        self.set_mark(None);
    }

    /// Gives up whatever is held, for good: the connection closes.
    pub(crate) fn close(&mut self) {
        self.lose();
        self.closed = true;
    }

    /// Takes the lease (see the module documentation).
    pub(crate) async fn acquire(&mut self, inner: &Inner, after_seq: u64) -> Result<StateLease, StoreError> {
        if self.closed {
            return Err(StoreError("the store is closed".into()));
        }
        if self.conn.as_ref().is_some_and(Client::is_closed) {
            // The connection died: the lock went with it.
            self.lose();
        }
        if self.conn.is_none() {
            let (client, ended) = connect::dedicated(&inner.config, &inner.tls, |_| {}).await?;
            let open = Arc::new(AtomicBool::new(true));
            let watched = Arc::clone(&open);
            tokio::spawn(async move {
                // Ends with the connection, however it ends.
                let _ = ended.await;
                watched.store(false, Ordering::Release);
            });
            self.conn = Some(client);
            self.open = open;
        }
        let result = self.take(after_seq).await;
        if result.is_err() {
            // Whatever went wrong, nothing half-held stays: closing the
            // connection gives the lock up if it was taken.
            self.lose();
        }
        result
    }

    async fn take(&mut self, after_seq: u64) -> Result<StateLease, StoreError> {
        let client = self
            .conn
            .as_ref()
            .ok_or_else(|| StoreError("the state lease has no connection".into()))?;
        // Held already (a caller that did not release): the lock is ours,
        // a new generation fences what was decided under the old one.
        if self.held.is_none() {
            client.execute("SELECT pg_advisory_lock($1)", &[&STATE_LOCK]).await?;
        }
        let row = client
            .query_one(
                "UPDATE rein_state_lease SET generation = generation + 1 WHERE id = 1 RETURNING generation, epoch",
                &[],
            )
            .await?;
        let generation: i64 = row.try_get(0)?;
        let epoch: i64 = row.try_get(1)?;
        let generation =
            u64::try_from(generation).map_err(|_| StoreError(format!("corrupt lease generation {generation}")))?;
        self.held = Some(generation);
        self.set_mark(Some(generation));
        let reload = self.epoch.is_some_and(|seen| seen != epoch);
        self.epoch = Some(epoch);
        let client = self
            .conn
            .as_mut()
            .ok_or_else(|| StoreError("the state lease has no connection".into()))?;
        let (seen_seq, writes) = delta(client, after_seq, !reload).await?;
        Ok(StateLease {
            generation,
            reload,
            writes,
            seen_seq,
        })
    }

    /// Gives up the lease `generation`.
    pub(crate) async fn release(&mut self, generation: u64) -> Result<(), StoreError> {
        if self.conn.as_ref().is_some_and(Client::is_closed) {
            self.lose();
            return Err(StoreError(format!(
                "the state lease {generation} was lost (its connection to the database broke)"
            )));
        }
        match self.held {
            Some(held) if held == generation => {}
            Some(held) => {
                return Err(StoreError(format!(
                    "cannot release state lease {generation}: the lease held is {held}"
                )))
            }
            None => {
                return Err(StoreError(format!(
                    "cannot release state lease {generation}: no lease is held"
                )))
            }
        }
        let Some(client) = self.conn.as_ref() else {
            self.held = None;
            return Err(StoreError("the state lease has no connection".into()));
        };
        match client.query_one("SELECT pg_advisory_unlock($1)", &[&STATE_LOCK]).await {
            Ok(row) => {
                self.held = None;
                self.set_mark(None);
                let released: bool = row.try_get(0)?;
                if released {
                    Ok(())
                } else {
                    self.lose();
                    Err(StoreError(format!(
                        "the state lease {generation} was not held by this process's connection"
                    )))
                }
            }
            Err(e) => {
                // Closing the connection gives it up for sure.
                self.lose();
                Err(e.into())
            }
        }
    }
}

fn corrupt(table: &str, what: impl std::fmt::Display) -> StoreError {
    StoreError(format!("the store's `{table}` table holds a corrupt row ({what})"))
}

fn parse_time(table: &str, key: &str) -> Result<Timestamp, StoreError> {
    key.parse().map_err(|e| corrupt(table, format!("time `{key}`: {e}")))
}

fn parse_json(table: &str, text: &str) -> Result<serde_json::Value, StoreError> {
    serde_json::from_str(text).map_err(|e| corrupt(table, format!("JSON: {e}")))
}

/// In one snapshot: the newest record's seq, and (if `with_writes`) the
/// state written by records after `after_seq` up to it, in the order of
/// their records (within a record: uses, calls, outputs, labels).
pub(crate) async fn delta(
    client: &mut Client,
    after_seq: u64,
    with_writes: bool,
) -> Result<(u64, Vec<StateWrite>), StoreError> {
    let tx = client
        .build_transaction()
        .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await?;
    let seen: i64 = tx
        .query_one("SELECT seq FROM chain_head WHERE id = 1", &[])
        .await?
        .try_get(0)?;
    let seen_seq = u64::try_from(seen).map_err(|_| StoreError(format!("corrupt chain head: seq {seen}")))?;
    if !with_writes {
        tx.commit().await?;
        return Ok((seen_seq, Vec::new()));
    }
    let after = i64::try_from(after_seq).unwrap_or(i64::MAX);
    // (seq, kind, row order, write): sorted at the end.
    let mut out: Vec<(i64, u8, i64, StateWrite)> = Vec::new();
    for r in tx
        .query(
            "SELECT seq, row_order, decision_id, bucket, time, amount FROM limit_uses \
             WHERE seq > $1 AND seq <= $2",
            &[&after, &seen],
        )
        .await?
    {
        let bucket: &str = r.try_get(3)?;
        let time: &str = r.try_get(4)?;
        let amount: &str = r.try_get(5)?;
        out.push((
            r.try_get(0)?,
            0,
            r.try_get(1)?,
            StateWrite::Use {
                decision_id: r.try_get(2)?,
                bucket: BucketKey::from_id(bucket)
                    .ok_or_else(|| corrupt("limit_uses", format!("bucket `{bucket}`")))?,
                time: parse_time("limit_uses", time)?,
                amount: Decimal::from_str(amount)
                    .map_err(|e| corrupt("limit_uses", format!("amount `{amount}`: {e}")))?,
            },
        ));
    }
    for r in tx
        .query(
            "SELECT seq, output_seq, row_order, decision_id, session, action, time, effect, input, output \
             FROM session_calls WHERE (seq > $1 AND seq <= $2) OR (output_seq > $1 AND output_seq <= $2)",
            &[&after, &seen],
        )
        .await?
    {
        let seq: i64 = r.try_get(0)?;
        let output_seq: Option<i64> = r.try_get(1)?;
        let row_order: i64 = r.try_get(2)?;
        let decision_id: String = r.try_get(3)?;
        let session: String = r.try_get(4)?;
        let output: Option<&str> = r.try_get(9)?;
        if seq > after && seq <= seen {
            let effect: &str = r.try_get(7)?;
            let input: &str = r.try_get(8)?;
            let time: &str = r.try_get(6)?;
            out.push((
                seq,
                1,
                row_order,
                StateWrite::Call {
                    session: session.clone(),
                    call: SessionCall {
                        decision_id: decision_id.clone(),
                        action: r.try_get(5)?,
                        time: parse_time("session_calls", time)?,
                        effect: Effect::parse(effect)
                            .ok_or_else(|| corrupt("session_calls", format!("effect `{effect}`")))?,
                        input: parse_json("session_calls", input)?,
                        output: None,
                    },
                },
            ));
        }
        if let (Some(output_seq), Some(output)) = (output_seq, output) {
            if output_seq > after && output_seq <= seen {
                out.push((
                    output_seq,
                    2,
                    row_order,
                    StateWrite::Output {
                        session,
                        decision_id,
                        output: parse_json("session_calls", output)?,
                    },
                ));
            }
        }
    }
    for r in tx
        .query(
            "SELECT seq, row_order, session, label, decision_id, time FROM session_labels \
             WHERE seq > $1 AND seq <= $2",
            &[&after, &seen],
        )
        .await?
    {
        let time: &str = r.try_get(5)?;
        out.push((
            r.try_get(0)?,
            3,
            r.try_get(1)?,
            StateWrite::Label {
                session: r.try_get(2)?,
                label: r.try_get(3)?,
                decision_id: r.try_get(4)?,
                time: parse_time("session_labels", time)?,
            },
        ));
    }
    tx.commit().await?;
    out.sort_by_key(|(seq, kind, row, _)| (*seq, *kind, *row));
    Ok((seen_seq, out.into_iter().map(|(_, _, _, w)| w).collect()))
}
