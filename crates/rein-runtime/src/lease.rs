//! The state lease of a store shared by several processes (PostgreSQL):
//! the mirror of the state is exact only while this process holds the
//! store's lease, since no other process decides on the state meanwhile.
//!
//! Every stateful decision enters the lease ([`Lease::enter`]) before it
//! reads the mirror and leaves it (drops its [`LeaseGuard`]) once its
//! record's fenced append ([`rein_store::Store::append_leased`]) has
//! returned. The lease is taken by one task at a time; on taking it, the
//! mirror is brought up to date with what other processes wrote since
//! (or reloaded whole). It is given back as soon as no decision holds it:
//! either nothing in this process is deciding on the state (idle), or it
//! has been held longer than `lease_hold` (decisions arriving then wait
//! until the holders finish, and take it again after the other processes
//! queued on it had their turn).
//!
//! Whatever may have left the mirror out of step with the store (a lease
//! lost, an append whose fate is unknown, a decision cancelled mid-way, a
//! reset, a wider window) marks it stale: nobody more enters under the
//! lease held, and the next lease reloads the mirror whole.

use rein_store::Store;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// How long a process keeps the lease while its decisions keep arriving,
/// unless configured (see [`crate::RuntimeConfig::lease_hold`]).
pub const DEFAULT_LEASE_HOLD: Duration = Duration::from_millis(20);

/// How often, at most, [`Lease::health`] tries to take the lease (and
/// gives it back at once) while the latest acquisition failed: a replica
/// that a load balancer took out of rotation (its health answers 503)
/// gets no decision that would try again, and must not stay unhealthy
/// once the lease can be had again.
pub(crate) const PROBE_EVERY: Duration = Duration::from_secs(1);

/// What the lease brings the mirror up to date with: called by the task
/// that took the lease, while no decision holds it.
#[async_trait::async_trait]
pub(crate) trait Sync: Send + std::marker::Sync + 'static {
    /// Applies other processes' writes to the mirror.
    fn apply(&self, writes: &[rein_store::StateWrite]);
    /// Rebuilds the mirror from the store's state.
    async fn reload(&self, store: &dyn Store) -> Result<(), String>;
}

enum Phase {
    /// Not held.
    Free,
    /// A task is taking it (and syncing the mirror).
    Acquiring,
    /// Held: decisions may enter while it is not stale, closing nor held
    /// for longer than the bound.
    Held {
        generation: u64,
        since: Instant,
        seen_seq: u64,
    },
    /// A task is giving it back.
    Releasing,
}

struct Inner {
    phase: Phase,
    /// Decisions holding the lease.
    holders: usize,
    /// Decisions waiting to enter.
    waiting: usize,
    /// The mirror may miss writes: the next lease reloads it whole.
    stale: bool,
    /// Nobody more enters under the lease held; it is given back once its
    /// holders leave.
    closing: bool,
    /// What the next acquisition asks for: the writes of records after it.
    after_seq: u64,
    /// The highest seq appended under the lease held.
    appended: u64,
    /// The number of the latest acquisition started.
    attempt: u64,
    /// The latest acquisition that failed, and why.
    failed: Option<(u64, String)>,
    /// The latest acquisition that succeeded (0: none yet).
    succeeded: u64,
    /// How many times the mirror was marked stale from outside
    /// ([`Lease::invalidate`]): an acquisition under way when it was
    /// synced what may no longer be enough.
    invalidations: u64,
    /// When [`Lease::health`] last started an acquisition to probe.
    probed: Option<Instant>,
}

struct Shared {
    store: Arc<dyn Store>,
    sync: Arc<dyn Sync>,
    hold: Duration,
    inner: Mutex<Inner>,
    changed: Notify,
}

/// A process's side of the state lease of a shared store.
pub(crate) struct Lease {
    shared: Arc<Shared>,
}

/// A decision's hold on the lease: the mirror may be read (and reserved
/// in) while it lives. Dropped without [`LeaseGuard::done`] (a decision
/// cancelled mid-way, whose append may or may not have been written), the
/// mirror is marked stale.
pub(crate) struct LeaseGuard {
    shared: Arc<Shared>,
    generation: u64,
    clean: bool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Every change of `Inner` is a few field writes that cannot panic
        // half-way: a poisoned lock holds a consistent value.
        self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Starts giving the lease back (phase `Held`, no holders).
fn start_release(shared: &Arc<Shared>, inner: &mut Inner) {
    let Phase::Held {
        generation, seen_seq, ..
    } = inner.phase
    else {
        return;
    };
    let Ok(handle) = tokio::runtime::Handle::try_current() else {
        // No runtime to give it back from (never so for a decision, which
        // runs on one): the next decision to enter does.
        inner.closing = true;
        tracing::error!("the state lease could not be given back here; the next decision does");
        return;
    };
    inner.phase = Phase::Releasing;
    // No other process wrote state while this one held the lease: what it
    // must read next time starts after what it saw and what it wrote.
    inner.after_seq = inner.after_seq.max(seen_seq).max(inner.appended);
    let shared = Arc::clone(shared);
    handle.spawn(async move {
        let released = shared.store.release_state_lease(generation).await;
        let mut inner = shared.lock();
        if let Err(e) = released {
            tracing::warn!(error = %e, generation, "the state lease could not be given back cleanly");
            inner.stale = true;
        }
        inner.phase = Phase::Free;
        inner.closing = false;
        drop(inner);
        shared.changed.notify_waiters();
    });
}

/// Starts taking the lease (phase `Free`); returns the attempt's number.
fn start_acquire(shared: &Arc<Shared>, inner: &mut Inner) -> u64 {
    inner.phase = Phase::Acquiring;
    inner.attempt += 1;
    let attempt = inner.attempt;
    let after_seq = inner.after_seq;
    let reload = inner.stale;
    let invalidations = inner.invalidations;
    let shared = Arc::clone(shared);
    // In a task of its own: a decision cancelled while it waits must not
    // leave the lease half taken.
    tokio::spawn(async move {
        // Should the store panic, the lease is not left `Acquiring` (every
        // stateful decision would wait forever): it fails.
        let mut unwinding = Unwinding {
            shared: Arc::clone(&shared),
            attempt,
            armed: true,
            taken: None,
        };
        let fail = |shared: &Shared, why: String| {
            let mut inner = shared.lock();
            inner.phase = Phase::Free;
            inner.stale = true;
            inner.failed = Some((attempt, why));
            drop(inner);
            shared.changed.notify_waiters();
        };
        let lease = match shared.store.acquire_state_lease(after_seq).await {
            Ok(lease) => lease,
            Err(e) => {
                unwinding.armed = false;
                tracing::error!(error = %e, "the state lease could not be taken");
                // Whether the store holds it is not known: it is told to
                // give it up (it marks it lost on a broken connection).
                return fail(&shared, format!("the state lease could not be taken: {e}"));
            }
        };
        unwinding.taken = Some(lease.generation);
        let synced = if reload || lease.reload {
            shared.sync.reload(shared.store.as_ref()).await
        } else {
            shared.sync.apply(&lease.writes);
            Ok(())
        };
        unwinding.armed = false;
        if let Err(e) = synced {
            tracing::error!(error = %e, "the state could not be brought up to date under the lease");
            let _ = shared.store.release_state_lease(lease.generation).await;
            return fail(
                &shared,
                format!("the state could not be brought up to date under the lease: {e}"),
            );
        }
        let mut inner = shared.lock();
        inner.phase = Phase::Held {
            generation: lease.generation,
            since: Instant::now(),
            seen_seq: lease.seen_seq,
        };
        inner.appended = 0;
        inner.after_seq = lease.seen_seq;
        inner.succeeded = inner.succeeded.max(attempt);
        if inner.invalidations == invalidations {
            inner.stale = false;
            inner.closing = false;
        } else {
            // Marked stale while it was being synced (a wider window, a
            // reset): nobody decides under it; it is taken again.
            inner.stale = true;
            inner.closing = true;
        }
        if inner.waiting == 0 || inner.closing {
            // Everyone who wanted it went away meanwhile, or it is not to
            // be decided under.
            start_release(&shared, &mut inner);
        }
        drop(inner);
        shared.changed.notify_waiters();
    });
    attempt
}

/// Fails an acquisition whose task unwound (a panic in the store).
struct Unwinding {
    shared: Arc<Shared>,
    attempt: u64,
    armed: bool,
    /// The lease taken, if the unwinding came after: given back.
    taken: Option<u64>,
}

impl Drop for Unwinding {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let mut inner = self.shared.lock();
        if matches!(inner.phase, Phase::Acquiring) {
            inner.phase = Phase::Free;
            inner.stale = true;
            inner.failed = Some((
                self.attempt,
                "the state lease could not be taken (the store failed)".into(),
            ));
        }
        drop(inner);
        if let (Some(generation), Ok(handle)) = (self.taken, tokio::runtime::Handle::try_current()) {
            let shared = Arc::clone(&self.shared);
            handle.spawn(async move {
                let _ = shared.store.release_state_lease(generation).await;
            });
        }
        self.shared.changed.notify_waiters();
    }
}

/// A decision waiting to enter, counted while it waits (also when it is
/// cancelled: the count goes down on drop).
struct Waiting<'a> {
    shared: &'a Arc<Shared>,
    counted: bool,
}

impl Waiting<'_> {
    fn count(&mut self, inner: &mut Inner) {
        if !self.counted {
            inner.waiting += 1;
            self.counted = true;
        }
    }

    fn uncount(&mut self, inner: &mut Inner) {
        if self.counted {
            inner.waiting -= 1;
            self.counted = false;
        }
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        if !self.counted {
            return;
        }
        let mut inner = self.shared.lock();
        inner.waiting -= 1;
        if inner.waiting == 0 && inner.holders == 0 && matches!(inner.phase, Phase::Held { .. }) {
            start_release(self.shared, &mut inner);
        }
    }
}

impl Lease {
    /// The lease of `store`, brought up to date through `sync`, held at
    /// most `hold` while decisions keep arriving.
    pub fn new(store: Arc<dyn Store>, sync: Arc<dyn Sync>, hold: Duration) -> Lease {
        Lease {
            shared: Arc::new(Shared {
                store,
                sync,
                hold,
                inner: Mutex::new(Inner {
                    phase: Phase::Free,
                    holders: 0,
                    waiting: 0,
                    // Nothing synced yet: the first lease loads the state.
                    stale: true,
                    closing: false,
                    after_seq: 0,
                    appended: 0,
                    attempt: 0,
                    failed: None,
                    succeeded: 0,
                    invalidations: 0,
                    probed: None,
                }),
                changed: Notify::new(),
            }),
        }
    }

    /// Waits until this decision holds the lease, taking it if needed.
    /// `Err` says why it cannot be had (the decision blocks).
    pub async fn enter(&self) -> Result<LeaseGuard, String> {
        let shared = &self.shared;
        let mut waiting = Waiting { shared, counted: false };
        // The acquisition this decision waits on: its failure is ours.
        let mut awaited: Option<u64> = None;
        loop {
            let changed = shared.changed.notified();
            let mut changed = std::pin::pin!(changed);
            changed.as_mut().enable();
            {
                let mut inner = shared.lock();
                match inner.phase {
                    Phase::Held { generation, since, .. } => {
                        if !inner.stale && !inner.closing && since.elapsed() < shared.hold {
                            waiting.uncount(&mut inner);
                            inner.holders += 1;
                            return Ok(LeaseGuard {
                                shared: Arc::clone(shared),
                                generation,
                                clean: false,
                            });
                        }
                        // Held long enough, or no longer to be trusted:
                        // given back once its holders leave.
                        inner.closing = true;
                        if inner.holders == 0 {
                            start_release(shared, &mut inner);
                        }
                    }
                    Phase::Free => {
                        if let (Some(mine), Some((failed, why))) = (awaited, &inner.failed) {
                            if *failed >= mine {
                                let why = why.clone();
                                waiting.uncount(&mut inner);
                                return Err(why);
                            }
                        }
                        awaited = Some(start_acquire(shared, &mut inner));
                    }
                    Phase::Acquiring => {
                        awaited.get_or_insert(inner.attempt);
                    }
                    Phase::Releasing => {}
                }
                waiting.count(&mut inner);
            }
            changed.await;
        }
    }

    /// `Err` (why) when the latest acquisition that ended failed: this
    /// process's stateful decisions block until one succeeds (a holder
    /// frozen elsewhere, the database down, the clocks apart). `Ok` while
    /// none failed since the last success, or none was tried.
    ///
    /// While `Err`, it tries again (at most every [`PROBE_EVERY`], when
    /// nobody is taking the lease): an acquisition in the background that
    /// gives the lease back once taken. Its success turns this `Ok`
    /// without a decision having to arrive.
    pub fn health(&self) -> Result<(), String> {
        let mut inner = self.shared.lock();
        let why = match &inner.failed {
            Some((attempt, why)) if *attempt > inner.succeeded => why.clone(),
            _ => return Ok(()),
        };
        self.probe(&mut inner);
        Err(why)
    }

    /// Starts an acquisition nobody waits for (given back once taken),
    /// unless one is under way, the lease is held, or one was started
    /// less than [`PROBE_EVERY`] ago.
    fn probe(&self, inner: &mut Inner) {
        if !matches!(inner.phase, Phase::Free) || inner.probed.is_some_and(|at| at.elapsed() < PROBE_EVERY) {
            return;
        }
        if tokio::runtime::Handle::try_current().is_err() {
            // No runtime here to take it from: the next call on one does.
            return;
        }
        inner.probed = Some(Instant::now());
        tracing::info!("the state lease could not be taken last time: trying again");
        start_acquire(&self.shared, inner);
    }

    /// Marks the mirror stale: nobody more enters under the lease held,
    /// and the next lease reloads the mirror whole (a reset, a wider
    /// window, a store closed).
    pub fn invalidate(&self) {
        let mut inner = self.shared.lock();
        inner.invalidations += 1;
        inner.stale = true;
        inner.closing = true;
        if inner.holders == 0 && inner.waiting == 0 {
            start_release(&self.shared, &mut inner);
        }
    }
}

impl LeaseGuard {
    /// The generation of the lease held: every append of the decision
    /// carries it.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// `Err` unless the lease is still this process's, as far as it knows,
    /// and the mirror trusted: a decision reads the mirror only then (a
    /// decision beside it may have found the lease lost).
    pub fn current(&self) -> Result<(), String> {
        let inner = self.shared.lock();
        match inner.phase {
            Phase::Held { generation, .. } if generation == self.generation && !inner.stale => Ok(()),
            _ => Err(format!(
                "state: the shared state's lease (generation {}) was lost while this decision waited to read it; \
                 it is taken again for the next decision",
                self.generation
            )),
        }
    }

    /// The decision's record was appended as `seq` under the lease.
    pub fn appended(&self, seq: u64) {
        let mut inner = self.shared.lock();
        inner.appended = inner.appended.max(seq);
    }

    /// The lease may have been lost, or an append's fate is unknown: the
    /// mirror is stale, and no decision enters under this lease any more.
    pub fn lost(&mut self) {
        let mut inner = self.shared.lock();
        inner.stale = true;
        inner.closing = true;
        self.clean = true;
    }

    /// The decision is over, its writes recorded or taken back: what the
    /// mirror holds of it is what the store does.
    pub fn done(&mut self) {
        self.clean = true;
    }
}

impl Drop for LeaseGuard {
    fn drop(&mut self) {
        let mut inner = self.shared.lock();
        inner.holders -= 1;
        if !self.clean {
            // Cancelled mid-way: its append may be in flight.
            inner.stale = true;
            inner.closing = true;
        }
        // Given back as soon as nothing in this process decides under it
        // (other processes may be waiting: this one cannot tell), unless
        // decisions woken to enter it are on their way in (the last of
        // them gives it back).
        let admissible = !inner.stale
            && !inner.closing
            && matches!(inner.phase, Phase::Held { since, .. } if since.elapsed() < self.shared.hold);
        if inner.holders == 0 && (inner.waiting == 0 || !admissible) {
            start_release(&self.shared, &mut inner);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use rein_store::{
        ApprovalError, ApprovalRecord, ApprovalState, AuditEntry, AuditQuery, AuditRecord, StateLease, StateWrite,
        StoreError, Verification,
    };
    use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

    /// The database's side: one lock, a generation.
    #[derive(Default)]
    struct Db {
        lock: Arc<tokio::sync::Mutex<()>>,
        generation: AtomicU64,
    }

    /// One process's connection to [`Db`].
    struct Fake {
        db: Arc<Db>,
        held: Mutex<Option<tokio::sync::OwnedMutexGuard<()>>>,
        acquired: AtomicU64,
        /// Acquisitions tried (failed or not).
        tried: AtomicU64,
        fail: AtomicBool,
        /// Taking the lease waits for this many permits' worth of notices.
        slow: tokio::sync::Semaphore,
        gate: AtomicBool,
    }

    impl Fake {
        fn new(db: &Arc<Db>) -> Arc<Fake> {
            Arc::new(Fake {
                db: Arc::clone(db),
                held: Mutex::new(None),
                acquired: AtomicU64::new(0),
                tried: AtomicU64::new(0),
                fail: AtomicBool::new(false),
                slow: tokio::sync::Semaphore::new(0),
                gate: AtomicBool::new(false),
            })
        }

        fn holds(&self) -> bool {
            self.held.lock().unwrap().is_some()
        }
    }

    fn refused<T>() -> Result<T, StoreError> {
        Err(StoreError("not in this test".into()))
    }

    #[async_trait::async_trait]
    impl Store for Fake {
        fn is_shared(&self) -> bool {
            true
        }
        async fn acquire_state_lease(&self, _after_seq: u64) -> Result<StateLease, StoreError> {
            if self.gate.load(Ordering::SeqCst) {
                self.slow.acquire().await.unwrap().forget();
            }
            self.tried.fetch_add(1, Ordering::SeqCst);
            if self.fail.load(Ordering::SeqCst) {
                return Err(StoreError("connection refused (test)".into()));
            }
            let guard = Arc::clone(&self.db.lock).lock_owned().await;
            let generation = self.db.generation.fetch_add(1, Ordering::SeqCst) + 1;
            assert!(self.held.lock().unwrap().replace(guard).is_none(), "taken twice");
            self.acquired.fetch_add(1, Ordering::SeqCst);
            Ok(StateLease {
                generation,
                reload: false,
                writes: Vec::new(),
                seen_seq: generation,
            })
        }
        async fn release_state_lease(&self, _generation: u64) -> Result<(), StoreError> {
            assert!(
                self.held.lock().unwrap().take().is_some(),
                "given back without being held"
            );
            Ok(())
        }
        async fn append(&self, _: AuditEntry) -> Result<AuditRecord, StoreError> {
            refused()
        }
        async fn append_once(&self, _: AuditEntry) -> Result<Option<AuditRecord>, StoreError> {
            refused()
        }
        async fn bind_key_fingerprint(&self, _: &str) -> Result<String, StoreError> {
            refused()
        }
        async fn key_fingerprint(&self) -> Result<Option<String>, StoreError> {
            refused()
        }
        async fn probe_write(&self) -> Result<(), StoreError> {
            refused()
        }
        async fn find_open_approval(
            &self,
            _: &str,
            _: Option<&str>,
            _: &str,
        ) -> Result<Option<ApprovalRecord>, StoreError> {
            refused()
        }
        async fn list_client_approvals(
            &self,
            _: &str,
            _: Option<ApprovalState>,
            _: u64,
        ) -> Result<Vec<ApprovalRecord>, StoreError> {
            refused()
        }
        async fn query_audit(&self, _: &AuditQuery) -> Result<Vec<AuditRecord>, StoreError> {
            refused()
        }
        async fn verify_audit(&self) -> Result<Verification, StoreError> {
            refused()
        }
        async fn audit_len(&self) -> Result<u64, StoreError> {
            refused()
        }
        async fn create_approval(&self, _: ApprovalRecord) -> Result<(), StoreError> {
            refused()
        }
        async fn get_approval(&self, _: &str) -> Result<Option<ApprovalRecord>, StoreError> {
            refused()
        }
        async fn list_approvals(&self, _: Option<ApprovalState>, _: u64) -> Result<Vec<ApprovalRecord>, StoreError> {
            refused()
        }
        async fn decide_approval(
            &self,
            _: &str,
            _: bool,
            _: &str,
            _: Option<&str>,
            _: &str,
        ) -> Result<Result<ApprovalRecord, ApprovalError>, StoreError> {
            refused()
        }
        async fn use_approval(
            &self,
            _: &str,
            _: &str,
            _: &str,
        ) -> Result<Result<ApprovalRecord, ApprovalError>, StoreError> {
            refused()
        }
    }

    #[derive(Default)]
    struct Counts {
        applied: AtomicUsize,
        reloaded: AtomicUsize,
    }

    #[async_trait::async_trait]
    impl Sync for Counts {
        fn apply(&self, _: &[StateWrite]) {
            self.applied.fetch_add(1, Ordering::SeqCst);
        }
        async fn reload(&self, _: &dyn Store) -> Result<(), String> {
            self.reloaded.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }
    }

    fn lease(store: &Arc<Fake>, hold: Duration) -> (Lease, Arc<Counts>) {
        let counts = Arc::new(Counts::default());
        (Lease::new(store.clone(), counts.clone(), hold), counts)
    }

    /// Waits (a little) until `f` holds.
    async fn eventually(f: impl Fn() -> bool) {
        for _ in 0..500 {
            if f() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        panic!("never came true");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_first_lease_reloads_and_an_idle_one_is_given_back() {
        let db = Arc::new(Db::default());
        let store = Fake::new(&db);
        let (lease, counts) = lease(&store, DEFAULT_LEASE_HOLD);
        let mut g = lease.enter().await.unwrap();
        assert!(g.current().is_ok());
        assert_eq!(
            counts.reloaded.load(Ordering::SeqCst),
            1,
            "nothing synced yet: loaded whole"
        );
        g.done();
        drop(g);
        eventually(|| !store.holds()).await;
        let mut g = lease.enter().await.unwrap();
        g.done();
        drop(g);
        assert_eq!(counts.reloaded.load(Ordering::SeqCst), 1);
        assert_eq!(
            counts.applied.load(Ordering::SeqCst),
            1,
            "the second brought up to date"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_holder_dropped_mid_way_makes_the_next_lease_reload() {
        let db = Arc::new(Db::default());
        let store = Fake::new(&db);
        let (lease, counts) = lease(&store, DEFAULT_LEASE_HOLD);
        let mut g = lease.enter().await.unwrap();
        g.done();
        drop(g);
        // Cancelled: its append may be in flight.
        drop(lease.enter().await.unwrap());
        let mut g = lease.enter().await.unwrap();
        g.done();
        assert_eq!(counts.reloaded.load(Ordering::SeqCst), 2);
        // A lost lease: the holders beside it may no longer read.
        let mut other = lease.enter().await;
        g.lost();
        if let Ok(other) = &mut other {
            assert!(other.current().is_err(), "a lease found lost is no longer read under");
            other.done();
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failed_acquisition_fails_its_waiters_and_the_next_tries_again() {
        let db = Arc::new(Db::default());
        let store = Fake::new(&db);
        let (lease, _) = lease(&store, DEFAULT_LEASE_HOLD);
        assert_eq!(lease.health(), Ok(()), "nothing tried yet");
        store.fail.store(true, Ordering::SeqCst);
        let (a, b) = tokio::join!(lease.enter(), lease.enter());
        assert!(a.err().unwrap().contains("connection refused"));
        assert!(b.err().unwrap().contains("connection refused"));
        // The health names why (for `/healthz`).
        assert!(lease.health().unwrap_err().contains("connection refused"));
        store.fail.store(false, Ordering::SeqCst);
        lease.enter().await.unwrap().done();
        assert_eq!(lease.health(), Ok(()));
    }

    /// A replica whose last acquisition failed gets no decision (a load
    /// balancer took it out of rotation): its health tries again by
    /// itself, at most every [`PROBE_EVERY`], and turns `Ok` once the
    /// lease can be had; the lease taken so is given back at once.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_unhealthy_lease_recovers_without_decisions() {
        let db = Arc::new(Db::default());
        let store = Fake::new(&db);
        let (lease, counts) = lease(&store, DEFAULT_LEASE_HOLD);
        store.fail.store(true, Ordering::SeqCst);
        assert!(lease.enter().await.is_err());
        assert_eq!(store.tried.load(Ordering::SeqCst), 1);
        // Still failing: polled often, it tries at most once a second.
        let start = Instant::now();
        while start.elapsed() < Duration::from_millis(300) {
            assert!(lease.health().unwrap_err().contains("connection refused"));
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        eventually(|| matches!(lease.shared.lock().phase, Phase::Free)).await;
        let tried = store.tried.load(Ordering::SeqCst);
        assert!(tried <= 2, "{tried} tries in 300 ms");
        assert!(lease.health().is_err(), "the probe failed too");
        // The database is back; no decision arrives.
        store.fail.store(false, Ordering::SeqCst);
        let start = Instant::now();
        while lease.health().is_err() {
            assert!(
                start.elapsed() < PROBE_EVERY * 3,
                "still unhealthy {:?} after the lease could be had",
                start.elapsed()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(store.acquired.load(Ordering::SeqCst), 1);
        // Given back, nobody holding it, and the mirror synced (whole:
        // the failure left it stale).
        eventually(|| !store.holds() && matches!(lease.shared.lock().phase, Phase::Free)).await;
        assert_eq!(counts.reloaded.load(Ordering::SeqCst), 1);
        // A decision after takes it again as usual.
        let mut g = lease.enter().await.unwrap();
        g.current().unwrap();
        g.done();
        drop(g);
        // Healthy: no more probing.
        let tried = store.tried.load(Ordering::SeqCst);
        for _ in 0..5 {
            assert_eq!(lease.health(), Ok(()));
        }
        eventually(|| !store.holds()).await;
        assert_eq!(store.tried.load(Ordering::SeqCst), tried);
    }

    /// A mirror marked stale while a lease was being taken (and synced by
    /// what was asked before): nobody decides under that lease; the next
    /// one reloads.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_invalidation_during_an_acquisition_is_not_lost() {
        let db = Arc::new(Db::default());
        let store = Fake::new(&db);
        let (lease, counts) = lease(&store, DEFAULT_LEASE_HOLD);
        lease.enter().await.unwrap().done();
        eventually(|| !store.holds()).await;
        store.gate.store(true, Ordering::SeqCst);
        let lease = Arc::new(lease);
        let l2 = Arc::clone(&lease);
        let entering = tokio::spawn(async move {
            let mut g = l2.enter().await.unwrap();
            g.current().unwrap();
            g.done();
        });
        eventually(|| matches!(lease.shared.lock().phase, Phase::Acquiring)).await;
        lease.invalidate();
        store.slow.add_permits(2);
        entering.await.unwrap();
        assert_eq!(
            counts.reloaded.load(Ordering::SeqCst),
            2,
            "reloaded after the invalidation"
        );
    }

    /// A decision cancelled while the lease was being taken for it: the
    /// lease, once taken, is given back (nobody is left to), not kept.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_lease_taken_for_nobody_is_given_back() {
        let db = Arc::new(Db::default());
        let store = Fake::new(&db);
        store.gate.store(true, Ordering::SeqCst);
        let (lease, _) = lease(&store, DEFAULT_LEASE_HOLD);
        let entered = tokio::time::timeout(Duration::from_millis(20), lease.enter()).await;
        assert!(entered.is_err(), "still taking it");
        store.slow.add_permits(1);
        eventually(|| store.acquired.load(Ordering::SeqCst) == 1).await;
        eventually(|| !store.holds()).await;
    }

    /// Two processes with a stream of decisions each: never do both hold
    /// the lease, and each gets its turn (the bound), whatever decisions
    /// are cancelled on the way (at random points).
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn two_processes_never_hold_it_together_and_both_get_turns() {
        let db = Arc::new(Db::default());
        let stores = [Fake::new(&db), Fake::new(&db)];
        let inside = Arc::new([AtomicUsize::new(0), AtomicUsize::new(0)]);
        let served = Arc::new([AtomicUsize::new(0), AtomicUsize::new(0)]);
        let leases: Vec<Arc<Lease>> = stores
            .iter()
            .map(|s| Arc::new(lease(s, Duration::from_millis(2)).0))
            .collect();
        let mut tasks = Vec::new();
        for p in 0..2usize {
            for t in 0..8u64 {
                let lease = Arc::clone(&leases[p]);
                let inside = Arc::clone(&inside);
                let served = Arc::clone(&served);
                let db = Arc::clone(&db);
                tasks.push(tokio::spawn(async move {
                    // A small deterministic generator per task.
                    let mut x = t.wrapping_mul(0x9E37_79B9_7F4A_7C15).wrapping_add(p as u64 + 1);
                    for _ in 0..60 {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        let work = async {
                            let mut g = lease.enter().await.unwrap();
                            // Counted out on drop too (cancelled inside),
                            // before the guard is dropped.
                            struct In<'a>(&'a AtomicUsize);
                            impl Drop for In<'_> {
                                fn drop(&mut self) {
                                    self.0.fetch_sub(1, Ordering::SeqCst);
                                }
                            }
                            inside[p].fetch_add(1, Ordering::SeqCst);
                            let _in = In(&inside[p]);
                            assert_eq!(inside[1 - p].load(Ordering::SeqCst), 0, "both processes hold it");
                            assert_eq!(g.generation(), db.generation.load(Ordering::SeqCst));
                            if x % 3 == 0 {
                                tokio::task::yield_now().await;
                            }
                            served[p].fetch_add(1, Ordering::SeqCst);
                            g.done();
                            drop(_in);
                        };
                        if x % 7 == 0 {
                            // Cancelled at some point of waiting or holding.
                            let _ = tokio::time::timeout(Duration::from_micros(x % 300), work).await;
                        } else {
                            work.await;
                        }
                    }
                }));
            }
        }
        for t in tasks {
            t.await.unwrap();
        }
        assert!(served[0].load(Ordering::SeqCst) > 0 && served[1].load(Ordering::SeqCst) > 0);
        eventually(|| !stores[0].holds() && !stores[1].holds()).await;
    }
}
