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
//!
//! A holder that is frozen without its connection breaking (SIGSTOP, a
//! paused VM, a stuck runtime) must not stop every other replica for good:
//! the lease connection carries `idle_session_timeout` =
//! [`LEASE_IDLE_TIMEOUT`], and a heartbeat task keeps it busy every
//! [`LEASE_HEARTBEAT`] while the process runs. A frozen process stops
//! beating, the server ends its session and the advisory lock goes with it:
//! another replica takes the lease within about [`LEASE_IDLE_TIMEOUT`], and
//! what the frozen one appends when it wakes is refused by the fence (its
//! generation is no longer the newest).
//!
//! A holder that is alive but never gives the lease back (a decision hung
//! while it holds it) must not stop the others for good either: the lease
//! is held in the database at most [`LEASE_HOLD_CAP`] at a time. Beyond
//! it the heartbeat marks the lease lost (appends under it are refused at
//! once), ends the lease connection's session (the lock goes with it) and
//! stops beating (should that fail, the idle timeout ends it); what is
//! appended under it later is refused by the fence.
//!
//! At every acquisition the database's clock is compared with this
//! process's ([`MAX_CLOCK_SKEW`]): windows and session idle times are
//! judged on each replica's clock, so a replica whose clock is off would
//! count (and prune) differently from the others.

use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use jiff::Timestamp;
use rein_engine::state::{BucketKey, Decimal, SessionCall, StateWrite};
use rein_engine::Effect;
use tokio_postgres::Client;

use super::{connect, Inner};
use crate::sqlite::state::{corrupt, parse_json, parse_time};
use crate::{StateLease, StoreError};

/// The advisory lock key of the state lease ("REINSTAT" in ASCII). Advisory
/// locks are per database: stores in other databases do not share it.
pub(crate) const STATE_LOCK: i64 = 0x5245_494E_5354_4154;

/// How long the lease connection may stay idle before the server ends it
/// (`idle_session_timeout`), freeing the lock of a frozen holder. Other
/// replicas wait at most about this long (plus [`LEASE_HEARTBEAT`]) for a
/// holder that froze; below the statement timeout (10 s by default) so
/// that a waiting `pg_advisory_lock` gets the lock rather than failing.
pub(crate) const LEASE_IDLE_TIMEOUT: Duration = Duration::from_secs(5);

/// How often a live process touches its lease connection (a `SELECT 1`),
/// well within [`LEASE_IDLE_TIMEOUT`] even on a loaded machine.
pub(crate) const LEASE_HEARTBEAT: Duration = Duration::from_secs(1);

/// The longest this process keeps the state lease in the database at a
/// time (see the module documentation). Decisions hold it for milliseconds
/// (the runtime gives it back after `lease_hold`, 20 ms by default, once
/// its holders are done); far above the statement timeout (10 s by
/// default) that bounds an append under it, so that only a holder that
/// is stuck loses it.
pub(crate) const LEASE_HOLD_CAP: Duration = Duration::from_secs(30);

/// When the lease was taken on a connection (`None` while not held):
/// shared with that connection's heartbeat, which enforces the cap.
type Since = Arc<Mutex<Option<Instant>>>;

/// Whether a lease taken at `since` has been held past `cap` at `now`.
fn over_cap(since: Option<Instant>, now: Instant, cap: Duration) -> bool {
    since.is_some_and(|since| now.saturating_duration_since(since) > cap)
}

/// The largest difference allowed between the database's clock and this
/// process's, beyond the round trip's uncertainty, when the lease is
/// taken. Windows, session idle times and pruning are judged on each
/// replica's own clock: replicas whose clocks differ by more would count a
/// limit differently (one allows what another would block) and prune what
/// another still counts. NTP keeps clocks within milliseconds; 2 s is far
/// beyond that and still small against any window a policy states.
pub(crate) const MAX_CLOCK_SKEW: Duration = Duration::from_secs(2);

/// Refuses the lease when the database's clock (`db_micros`, read between
/// `before` and `after` on this process's clock) differs from this
/// process's by more than [`MAX_CLOCK_SKEW`] (plus half the round trip,
/// what cannot be told apart).
pub(crate) fn check_clock_skew(db_micros: i64, before: Timestamp, after: Timestamp) -> Result<(), StoreError> {
    let before = i128::from(before.as_microsecond());
    let after = i128::from(after.as_microsecond());
    let middle = (before + after) / 2;
    let slack = (after - before).abs() / 2;
    let skew = i128::from(db_micros) - middle;
    let allowed = i128::try_from(MAX_CLOCK_SKEW.as_micros()).unwrap_or(i128::MAX) + slack;
    if skew.abs() <= allowed {
        return Ok(());
    }
    #[allow(clippy::cast_precision_loss)]
    let seconds = skew as f64 / 1e6;
    Err(StoreError(format!(
        "clock skew: the database's clock is {seconds:+.3} s off this replica's (at most {} s allowed); \
         limits and sessions are judged on each replica's clock, so stateful decisions block until the clocks \
         agree (check NTP on this host and the database's)",
        MAX_CLOCK_SKEW.as_secs()
    )))
}

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
            "{}: lease {generation}'s connection to the database broke, or the lease was held past its cap; the \
             decision was not recorded",
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
    /// Shared with the heartbeat task (which holds it weakly: dropping
    /// this closes the connection).
    conn: Option<Arc<Client>>,
    /// Whether `conn` is still open (cleared by its connection's task, or
    /// by its heartbeat once the lease was held past the cap).
    open: Arc<AtomicBool>,
    /// When the lease held on `conn` was taken.
    since: Since,
    /// The generation held, if any.
    held: Option<u64>,
    /// The epoch of the state this process last loaded or leased: a lease
    /// whose epoch differs tells the caller to reload.
    epoch: Option<i64>,
    mark: Mark,
    /// The store was closed: no lease is taken any more.
    closed: bool,
    /// The latest clock check found the clocks apart: the next
    /// acquisitions check them before taking the lock (a skewed replica
    /// does not take every replica's lock, nor reconnect, at each try).
    skewed: bool,
}

impl Lease {
    /// No lease held; `epoch` the one the store saw at open.
    pub(crate) fn new(epoch: Option<i64>, mark: Mark) -> Lease {
        Lease {
            conn: None,
            open: Arc::new(AtomicBool::new(false)),
            since: Since::default(),
            held: None,
            epoch,
            mark,
            closed: false,
            skewed: false,
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
        self.set_since(None);
        self.set_mark(None);
    }

    fn set_since(&self, since: Option<Instant>) {
        if let Ok(mut held) = self.since.lock() {
            *held = since;
        }
    }

    /// Whether the lease connection can no longer be used: closed, or
    /// given up by its heartbeat (held past the cap).
    fn broken(&self) -> bool {
        self.conn.as_ref().is_some_and(|c| c.is_closed()) || (self.conn.is_some() && !self.open.load(Ordering::Acquire))
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
        if self.broken() {
            // The connection died (the lock went with it), or was given up.
            self.lose();
        }
        if self.conn.is_none() {
            let config = connect::lease_config(&inner.config, LEASE_IDLE_TIMEOUT);
            let (client, ended) = connect::dedicated(&config, &inner.tls, |_| {}).await?;
            let open = Arc::new(AtomicBool::new(true));
            let watched = Arc::clone(&open);
            tokio::spawn(async move {
                // Ends with the connection, however it ends.
                let _ = ended.await;
                watched.store(false, Ordering::Release);
            });
            let client = Arc::new(client);
            let since = Since::default();
            tokio::spawn(heartbeat(
                Arc::downgrade(&client),
                Arc::clone(&since),
                Arc::clone(&open),
                LEASE_HOLD_CAP,
                LEASE_HEARTBEAT,
            ));
            self.conn = Some(client);
            self.open = open;
            self.since = since;
        }
        if self.held.is_none() && self.skewed {
            // Refused without the lock taken: the connection holds
            // nothing and is kept.
            self.check_clock().await?;
        }
        let result = self.take(after_seq).await;
        if result.is_err() {
            // Whatever went wrong, nothing half-held stays: closing the
            // connection gives the lock up if it was taken.
            self.lose();
        }
        result
    }

    /// Compares the database's clock with this process's (a cheap read,
    /// no lock taken).
    async fn check_clock(&self) -> Result<(), StoreError> {
        let client = self
            .conn
            .as_ref()
            .ok_or_else(|| StoreError("the state lease has no connection".into()))?;
        let before = Timestamp::now();
        let row = client
            .query_one("SELECT (extract(epoch FROM clock_timestamp()) * 1000000)::int8", &[])
            .await?;
        let after = Timestamp::now();
        check_clock_skew(row.try_get(0)?, before, after)
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
            // Counted from when the lock is the process's (kept across a
            // re-take without release: the cap bounds the lock's hold).
            self.set_since(Some(Instant::now()));
        }
        let before = Timestamp::now();
        let row = client
            .query_one(
                "UPDATE rein_state_lease SET generation = generation + 1 WHERE id = 1 \
                 RETURNING generation, epoch, (extract(epoch FROM clock_timestamp()) * 1000000)::int8",
                &[],
            )
            .await?;
        let after = Timestamp::now();
        let generation: i64 = row.try_get(0)?;
        let epoch: i64 = row.try_get(1)?;
        // Refused (the caller's `acquire` then gives the lock up): the
        // generation moved, which only fences what was decided before.
        if let Err(e) = check_clock_skew(row.try_get(2)?, before, after) {
            self.skewed = true;
            return Err(e);
        }
        self.skewed = false;
        let generation =
            u64::try_from(generation).map_err(|_| StoreError(format!("corrupt lease generation {generation}")))?;
        self.held = Some(generation);
        self.set_mark(Some(generation));
        let reload = self.epoch.is_some_and(|seen| seen != epoch);
        self.epoch = Some(epoch);
        let client = self
            .conn
            .as_ref()
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
        if self.broken() {
            self.lose();
            return Err(StoreError(format!(
                "the state lease {generation} was lost (its connection to the database broke, or it was held \
                 longer than {} s)",
                LEASE_HOLD_CAP.as_secs()
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
                self.set_since(None);
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

/// Keeps the lease connection from idling out while this process runs (see
/// [`LEASE_IDLE_TIMEOUT`]), every `every`; ends with the connection. Once
/// the lease taken on it (at `since`) has been held past `cap`, it gives
/// the lease up: `open` cleared (appends under it are refused at once),
/// the connection's session ended (the lock freed), no more beats (should
/// ending it fail, the server's idle timeout does).
async fn heartbeat(client: Weak<Client>, since: Since, open: Arc<AtomicBool>, cap: Duration, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(client) = client.upgrade() else { return };
        if client.is_closed() {
            return;
        }
        let taken = since.lock().ok().and_then(|s| *s);
        if over_cap(taken, Instant::now(), cap) {
            // (Told to the runtime through what fails next: an append
            // under the lease, its release; both name the cap.)
            open.store(false, Ordering::Release);
            let _ = client
                .simple_query("SELECT pg_terminate_backend(pg_backend_pid())")
                .await;
            return;
        }
        // A failure ends the connection, which the lease notices.
        let _ = client.simple_query("").await;
    }
}

/// In one snapshot: the newest record's seq, and (if `with_writes`) the
/// state written by records after `after_seq` up to it, in the order of
/// their records (within a record: uses, calls, outputs, labels).
///
/// The transaction is begun and ended by hand (the connection is shared
/// with the heartbeat, whose empty queries may run inside it: harmless);
/// on an error the caller drops the connection, which rolls it back.
pub(crate) async fn delta(
    client: &Client,
    after_seq: u64,
    with_writes: bool,
) -> Result<(u64, Vec<StateWrite>), StoreError> {
    client
        .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        .await?;
    let tx = client;
    let seen: i64 = tx
        .query_one("SELECT seq FROM chain_head WHERE id = 1", &[])
        .await?
        .try_get(0)?;
    let seen_seq = u64::try_from(seen).map_err(|_| StoreError(format!("corrupt chain head: seq {seen}")))?;
    if !with_writes {
        tx.batch_execute("COMMIT").await?;
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
    tx.batch_execute("COMMIT").await?;
    out.sort_by_key(|(seq, kind, row, _)| (*seq, *kind, *row));
    Ok((seen_seq, out.into_iter().map(|(_, _, _, w)| w).collect()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn at(micros: i64) -> Timestamp {
        Timestamp::from_microsecond(micros).unwrap()
    }

    const T: i64 = 1_800_000_000_000_000;

    #[test]
    fn clocks_within_the_bound_are_accepted() {
        let max = i64::try_from(MAX_CLOCK_SKEW.as_micros()).unwrap();
        for db in [T, T + max, T - max, T + 1_000] {
            check_clock_skew(db, at(T), at(T)).unwrap();
        }
        // The round trip's half is not held against the clocks.
        check_clock_skew(T + max + 400_000, at(T), at(T + 1_000_000)).unwrap();
    }

    #[test]
    fn clocks_beyond_the_bound_are_refused_naming_the_skew() {
        let max = i64::try_from(MAX_CLOCK_SKEW.as_micros()).unwrap();
        let err = check_clock_skew(T + max + 1, at(T), at(T)).unwrap_err();
        assert!(err.0.contains("clock skew"), "{err}");
        assert!(err.0.contains("+2.000 s"), "{err}");
        let err = check_clock_skew(T - 5_500_000, at(T), at(T)).unwrap_err();
        assert!(err.0.contains("-5.500 s"), "{err}");
        // A slow round trip (1 s) widens the slack by its half only: from
        // its middle, 0.5 s more than the bound is still refused.
        assert!(check_clock_skew(T + 500_000 + max + 500_001, at(T), at(T + 1_000_000)).is_err());
    }

    #[test]
    fn the_hold_cap_counts_from_when_the_lease_was_taken() {
        let t = Instant::now();
        let cap = Duration::from_millis(300);
        assert!(!over_cap(None, t + Duration::from_secs(3600), cap), "not held");
        assert!(!over_cap(Some(t), t, cap));
        assert!(!over_cap(Some(t), t + cap, cap));
        assert!(over_cap(Some(t), t + cap + Duration::from_millis(1), cap));
        // A clock read before the lease was taken is not past it.
        assert!(!over_cap(Some(t + cap * 4), t, cap));
        // Far above what an append under the lease may take (the
        // statement timeout), so that only a stuck holder loses it.
        assert!(LEASE_HOLD_CAP >= crate::PostgresOptions::default().statement_timeout * 3);
    }

    /// The heartbeat of a lease held past its cap gives it up: the lease
    /// is marked lost, and the lock is freed in the database (another
    /// session takes it).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_lease_held_past_its_cap_is_given_up_in_the_database() {
        let Ok(url) = std::env::var("REIN_TEST_PG") else {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "REIN_TEST_PG is unset under CI"
            );
            eprintln!("note: REIN_TEST_PG is not set; skipped");
            return;
        };
        let connect = || async {
            let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await.unwrap();
            tokio::spawn(connection);
            client
        };
        // A key of this test's own (advisory locks leave nothing behind).
        let key: i64 = 0x7465_7374_0000_0000 | i64::from(std::process::id());
        let holder = Arc::new(connect().await);
        let other = connect().await;
        holder.execute("SELECT pg_advisory_lock($1)", &[&key]).await.unwrap();
        let since = Since::default();
        *since.lock().unwrap() = Some(Instant::now());
        let open = Arc::new(AtomicBool::new(true));
        let beating = tokio::spawn(heartbeat(
            Arc::downgrade(&holder),
            Arc::clone(&since),
            Arc::clone(&open),
            Duration::from_secs(2),
            Duration::from_millis(50),
        ));
        let taken: bool = other
            .query_one("SELECT pg_try_advisory_lock($1)", &[&key])
            .await
            .unwrap()
            .get(0);
        assert!(!taken, "held, within its cap");
        assert!(open.load(Ordering::Acquire));
        // Given up within the cap and a beat or two (bound: 8 s).
        tokio::time::timeout(Duration::from_secs(8), beating)
            .await
            .unwrap()
            .unwrap();
        assert!(
            !open.load(Ordering::Acquire),
            "marked lost: appends under it are refused"
        );
        let start = Instant::now();
        loop {
            let taken: bool = other
                .query_one("SELECT pg_try_advisory_lock($1)", &[&key])
                .await
                .unwrap()
                .get(0);
            if taken {
                break;
            }
            assert!(start.elapsed() < Duration::from_secs(5), "the lock was not freed");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // The server ended the session before it freed the lock; the
        // client's connection task notices the closed socket a moment
        // later (bounded wait, same bound as the lock's).
        let start = Instant::now();
        while !holder.is_closed() {
            assert!(start.elapsed() < Duration::from_secs(5), "its session was ended");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let _ = other.execute("SELECT pg_advisory_unlock($1)", &[&key]).await;
    }

    #[test]
    fn the_idle_timeout_leaves_room_for_the_heartbeat_and_a_waiting_acquire() {
        assert!(LEASE_HEARTBEAT * 3 <= LEASE_IDLE_TIMEOUT);
        // A replica waiting in `pg_advisory_lock` (statement timeout) gets
        // the lock of a frozen holder before its wait fails.
        assert!(LEASE_IDLE_TIMEOUT + LEASE_HEARTBEAT < crate::PostgresOptions::default().statement_timeout);
    }
}
