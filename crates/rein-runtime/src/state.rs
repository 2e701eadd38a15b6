//! The state stateful rules read (limit buckets, sessions): an in-memory
//! mirror of what the store keeps, so that a decision reads it in
//! microseconds and two concurrent requests can never both take the last
//! unit of a limit.
//!
//! A stateful decision reserves its writes in the mirror under the mirror's
//! lock (read, decide and apply are one step), then the store persists them
//! in the transaction of the decision's audit record; if the approval step
//! changes the effect the reservation is redone, and if the record cannot
//! be written it is undone. Only one process may keep a mirror of a SQLite
//! store: a server holds the store's [`StateLock`] for its lifetime, a hook
//! process from load to commit. On a store shared by several processes
//! (PostgreSQL) there is no lock file: the mirror is exact only under the
//! store's state lease ([`crate::lease`]), which every stateful decision
//! enters before it reads the mirror.

use super::*;
use rein_engine::state::{BucketKey, StateEffects, StateWrite};
use rein_engine::{BucketStatus, Explanation, Hasher, MemoryState, Prepared, SessionSnapshot};
use rein_store::StateLock;

use crate::budget::Ledger;
use crate::lease::{Lease, LeaseGuard};

/// The longest session id a stateful decision takes: ids are keys the
/// state keeps (and the store indexes) for every call; a UUID is 36 bytes.
pub const MAX_SESSION_ID_BYTES: usize = 256;

/// The longest bucket id (a limit's rule and `per` values, as JSON) a
/// decision may add a use to: the values come from the request.
pub const MAX_BUCKET_ID_BYTES: usize = 1024;

/// How much memory the state may hold unless configured (see
/// [`crate::RuntimeConfig::max_state_bytes`]).
pub const DEFAULT_MAX_STATE_BYTES: usize = 512 * 1024 * 1024;

impl Mirror {
    fn apply(&mut self, writes: &[StateWrite]) {
        self.state.apply(writes);
        self.ledger.apply(writes);
    }

    fn undo(&mut self, writes: &[StateWrite]) {
        self.state.undo(writes);
        self.ledger.undo(writes);
    }

    fn prune(&mut self, now: Timestamp, max_window: SignedDuration, session_idle: SignedDuration) -> usize {
        self.ledger.prune(now, max_window, session_idle);
        self.state.prune(now, max_window, session_idle)
    }
}

/// Why a decision needing state blocks before the state is loaded.
const NOT_LOADED: &str = "state not loaded: this decision needs state (limits or session rules), and the runtime has \
                          not loaded it from the store";

/// How long a session is kept after its last call unless configured.
pub const DEFAULT_SESSION_IDLE: SignedDuration = SignedDuration::from_hours(24);

/// The mirror and what it was loaded for.
struct Mirror {
    state: MemoryState,
    /// What the state holds, in bytes (see [`crate::budget`]).
    ledger: Ledger,
    /// Whether the store's state was loaded (decisions needing state block
    /// until it is).
    loaded: bool,
    /// The window the mirror holds history for (the policy's `max_window`
    /// when it was loaded, widened on a reload that asks for more).
    max_window: SignedDuration,
}

/// The mirror behind its lock, with what rebuilding it takes: shared by
/// the keeper and the lease (which brings it up to date when taken).
pub(crate) struct MirrorCell {
    mirror: Mutex<Mirror>,
    session_idle: SignedDuration,
    /// How the mirror hashes sensitive fields (kept to start it afresh).
    hasher: Hasher,
}

impl MirrorCell {
    fn lock(&self) -> Result<std::sync::MutexGuard<'_, Mirror>, String> {
        self.mirror
            .lock()
            .map_err(|_| "state: the in-memory state is poisoned (a decision panicked while holding it)".to_string())
    }
}

#[async_trait::async_trait]
impl crate::lease::Sync for MirrorCell {
    fn apply(&self, writes: &[StateWrite]) {
        // A poisoned mirror refuses every decision anyway.
        if let Ok(mut mirror) = self.lock() {
            mirror.apply(writes);
        }
    }

    async fn reload(&self, store: &dyn Store) -> Result<(), String> {
        let now = Timestamp::now();
        let window = self.lock()?.max_window;
        // Told to the store first: from now on no replica prunes what this
        // one reads (see `StateKeeper::prune`).
        store
            .widest_state_spans(window, self.session_idle)
            .await
            .map_err(|e| e.to_string())?;
        let window_start = now.checked_sub(window).map_err(|e| e.to_string())?;
        let idle_start = now.checked_sub(self.session_idle).map_err(|e| e.to_string())?;
        let writes = store
            .load_state(window_start, idle_start)
            .await
            .map_err(|e| e.to_string())?;
        let mut mirror = self.lock()?;
        mirror.state = MemoryState::new(self.hasher.clone());
        mirror.ledger = Ledger::default();
        mirror.apply(&writes);
        tracing::info!(
            writes = writes.len(),
            "state reloaded from the shared store under the lease"
        );
        Ok(())
    }
}

/// How a decision may read the mirror.
#[derive(Clone, Copy)]
pub(crate) enum Access<'a> {
    /// Without a lease: the store is this process's alone.
    Local,
    /// Under the shared store's lease.
    Leased(&'a LeaseGuard),
    /// The lease could not be had, for this reason.
    Refused(&'a str),
}

impl<'a> Access<'a> {
    /// The access a decision holding `lease` (a `Result` of
    /// [`StateKeeper::enter`]) has.
    pub fn of(lease: &'a Option<Result<LeaseGuard, String>>) -> Access<'a> {
        match lease {
            None => Access::Local,
            Some(Ok(guard)) => Access::Leased(guard),
            Some(Err(why)) => Access::Refused(why),
        }
    }
}

/// The runtime's keeper of state: the mirror behind a lock and, when this
/// process owns the store's state, the lock file that says so; or, on a
/// shared store, the state lease.
pub(crate) struct StateKeeper {
    cell: Arc<MirrorCell>,
    lock: Mutex<Option<StateLock>>,
    /// Loads run one at a time (start, reloads).
    loading: tokio::sync::Mutex<()>,
    session_idle: SignedDuration,
    /// The most the state may hold, in bytes (as the ledger counts them).
    max_bytes: usize,
    /// The state lease, when the store is shared by several processes.
    lease: Option<Lease>,
}

/// A reservation: the writes applied to the mirror for a decision not yet
/// recorded.
pub(crate) struct Reserved {
    pub effects: StateEffects,
    /// What the mirror holds of this decision; empty once handed to the
    /// store (see [`Reserved::take`]).
    pub writes: Vec<StateWrite>,
    pub time: Timestamp,
    /// The effect `writes` are the writes of.
    effect: Effect,
}

impl Reserved {
    /// The writes, handed over (to the store): rather than a copy kept for
    /// an undo, [`StateKeeper::undo_reserved`] rebuilds them if needed.
    pub fn take(&mut self) -> Vec<StateWrite> {
        std::mem::take(&mut self.writes)
    }
}

/// A reservation not yet handed to the store: dropped before that (the
/// request timed out during the approval step, say), it is taken back, so
/// that a request that was never recorded holds no units. Once the append
/// is under way it is disarmed: the store may still commit it, and a
/// mirror that counted less than the store would let a limit be passed.
pub(crate) struct Pending<'a> {
    keeper: &'a StateKeeper,
    pub reserved: Reserved,
    armed: bool,
}

impl Pending<'_> {
    /// The writes are being handed to the store: keep them whatever
    /// happens to this request now (the caller undoes them if the append
    /// fails).
    pub fn submit(&mut self) -> Vec<StateWrite> {
        self.armed = false;
        self.reserved.take()
    }
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.keeper.undo(&self.reserved.writes);
        }
    }
}

/// Whether `decision_id`'s call in `session` holds an output.
fn call_has_output(state: &MemoryState, session: Option<&str>, decision_id: &str) -> bool {
    let Some(session) = session else {
        return false;
    };
    let mut found = false;
    // Every call of the session: the call's time is not known here.
    let _ = rein_engine::state::StateView::session_calls(state, session, Timestamp::MIN, &mut |c| {
        found |= c.decision_id == decision_id && c.output.is_some();
    });
    found
}

impl StateKeeper {
    /// Guards `reserved` until it is handed to the store.
    pub fn pending(&self, reserved: Reserved) -> Pending<'_> {
        Pending {
            keeper: self,
            reserved,
            armed: true,
        }
    }

    /// A keeper of `store`'s state; with `shared` (the store is shared by
    /// several processes), under its lease, held at most this long while
    /// decisions keep arriving.
    pub fn new(
        redactor: &Redactor,
        session_idle: SignedDuration,
        max_bytes: usize,
        shared: Option<(Arc<dyn Store>, std::time::Duration)>,
    ) -> StateKeeper {
        // Sensitive fields of earlier calls are kept as keyed hashes under
        // the audit key: the same hashes as in the audit log.
        let redactor = redactor.clone();
        let hasher: Hasher = Arc::new(move |v: &serde_json::Value| redactor.hash(v));
        let cell = Arc::new(MirrorCell {
            mirror: Mutex::new(Mirror {
                state: MemoryState::new(hasher.clone()),
                ledger: Ledger::default(),
                loaded: false,
                max_window: SignedDuration::ZERO,
            }),
            session_idle,
            hasher,
        });
        let lease = shared.map(|(store, hold)| Lease::new(store, cell.clone(), hold));
        StateKeeper {
            cell,
            lock: Mutex::new(None),
            loading: tokio::sync::Mutex::new(()),
            session_idle,
            max_bytes,
            lease,
        }
    }

    fn mirror(&self) -> Result<std::sync::MutexGuard<'_, Mirror>, String> {
        self.cell.lock()
    }

    /// Whether the state is that of a store shared by several processes,
    /// read only under its lease.
    pub fn shared(&self) -> bool {
        self.lease.is_some()
    }

    /// See [`Runtime::state_lease_health`].
    pub fn lease_health(&self) -> Result<(), String> {
        self.lease.as_ref().map_or(Ok(()), Lease::health)
    }

    /// Enters the state lease of a shared store (`None` for a store of
    /// this process alone): `Err` says why the decision cannot have it
    /// (it blocks). A state not loaded is refused without taking it.
    pub async fn enter(&self) -> Option<Result<LeaseGuard, String>> {
        let lease = self.lease.as_ref()?;
        if !self.loaded() {
            return Some(Err(NOT_LOADED.to_string()));
        }
        Some(lease.enter().await)
    }

    /// Whether a decision with `access` may read the mirror (`Err`: why
    /// it blocks): on a shared store, only under the lease.
    fn may_access(&self, access: Access<'_>) -> Result<(), String> {
        match (&self.lease, access) {
            (None, _) => Ok(()),
            (Some(_), Access::Leased(guard)) => guard.current(),
            (Some(_), Access::Refused(why)) => Err(format!(
                "state: {why} (on a shared store, a decision reads the state only under the state lease)"
            )),
            (Some(_), Access::Local) => {
                Err("state: this decision does not hold the shared store's state lease".to_string())
            }
        }
    }

    /// Keeps `lock` until the runtime is dropped.
    pub fn hold(&self, lock: StateLock) {
        if let Ok(mut held) = self.lock.lock() {
            *held = Some(lock);
        }
    }

    /// Drops the lock and unloads the mirror: another process may change
    /// the store's state from now on.
    pub fn release(&self) {
        if let Ok(mut mirror) = self.mirror() {
            mirror.loaded = false;
        }
        if let Some(lease) = &self.lease {
            lease.invalidate();
        }
        if let Ok(mut held) = self.lock.lock() {
            held.take();
        }
    }

    /// Decides `prepared` against the mirror and reserves the writes of the
    /// effect it would have (`approval_given`: a `require_approval` with an
    /// approval id is reserved as `allow`, what it becomes if the approval
    /// holds). `Err` (fail closed) when the state is not loaded.
    pub fn decide<'p>(
        &self,
        prepared: &Prepared<'p>,
        decision_id: &str,
        approval_given: bool,
        time: Timestamp,
        access: Access<'_>,
    ) -> Result<(Decision<'p>, Reserved), String> {
        // Checked under the mirror's lock: a decision beside this one that
        // finds the lease lost marks it so before it takes its own
        // reservation back (under this lock), so this one either sees the
        // lease lost or reads a mirror still holding that reservation.
        let mut mirror = self.mirror()?;
        self.may_access(access)?;
        Self::may_read(&mirror, prepared)?;
        let (decision, mut effects) = prepared.decide_with_state(&mirror.state);
        if effects.output.is_some() && call_has_output(&mirror.state, effects.session.as_deref(), decision_id) {
            // The outcome of this call was reported already (this report
            // will be refused as a duplicate): its output stays the one
            // recorded. Written, then undone, it would leave the call with
            // none, and a rule over outputs would count less than was
            // reported.
            effects.output = None;
        }
        let tentative = match decision.effect() {
            Effect::RequireApproval if approval_given => Effect::Allow,
            effect => effect,
        };
        let writes = effects.writes(decision_id, tentative, time);
        self.may_write(&mirror, &effects, &writes)?;
        mirror.apply(&writes);
        Ok((
            decision,
            Reserved {
                effects,
                writes,
                time,
                effect: tentative,
            },
        ))
    }

    /// Explains `prepared` against the mirror as [`StateKeeper::decide`]
    /// decides it (`Err`: why that would block), reserving and writing
    /// nothing: what the request would get now, without changing what the
    /// next one gets.
    pub fn explain(&self, prepared: &Prepared<'_>, time: Timestamp, access: Access<'_>) -> Result<Explanation, String> {
        // Under the mirror's lock (see `decide`).
        let mirror = self.mirror()?;
        self.may_access(access)?;
        Self::may_read(&mirror, prepared)?;
        let (explanation, effects) = prepared.explain_with_state(&mirror.state);
        // The writes `decide` would make, under an id of a decision id's
        // length, for the same bounds on them.
        let writes = effects.writes(
            "00000000-0000-0000-0000-000000000000",
            explanation.decision.effect(),
            time,
        );
        self.may_write(&mirror, &effects, &writes)?;
        Ok(explanation)
    }

    /// Decides `prepared` for a shadow candidate: against the mirror as it
    /// is, reserving and writing nothing (its effects are dropped). `Err`
    /// when the mirror cannot be read, or when the candidate panicked: the
    /// panic is caught while the lock is still held, so that it does not
    /// poison the mirror for the enforced decisions.
    pub fn decide_read_only<'p>(&self, prepared: &Prepared<'p>, access: Access<'_>) -> Result<Decision<'p>, String> {
        // Under the mirror's lock (see `decide`).
        let mirror = self.mirror()?;
        self.may_access(access)?;
        Self::may_read(&mirror, prepared)?;
        let decided = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            prepared.decide_with_state(&mirror.state).0
        }));
        drop(mirror);
        decided.map_err(|_| crate::shadow::PANICKED.to_string())
    }

    /// Why a decision may not read the mirror (`Err`): it is not loaded,
    /// or the session id is longer than the state keeps.
    fn may_read(mirror: &Mirror, prepared: &Prepared) -> Result<(), String> {
        if !mirror.loaded {
            return Err(NOT_LOADED.to_string());
        }
        if let Some(session) = prepared.session().filter(|s| s.len() > MAX_SESSION_ID_BYTES) {
            return Err(format!(
                "state: the session id is {} bytes long; at most {MAX_SESSION_ID_BYTES} are taken",
                session.len()
            ));
        }
        Ok(())
    }

    /// Why a decision may not make `writes` (`Err`): a limit key longer
    /// than the state keeps, or a state full.
    fn may_write(&self, mirror: &Mirror, effects: &StateEffects, writes: &[StateWrite]) -> Result<(), String> {
        if let Some(c) = effects
            .consume
            .iter()
            .find(|c| c.bucket.id().len() > MAX_BUCKET_ID_BYTES)
        {
            return Err(format!(
                "state: the limit `{}` would count this call under a key of {} bytes; at most \
                 {MAX_BUCKET_ID_BYTES} are taken",
                c.bucket.rule,
                c.bucket.id().len()
            ));
        }
        let cost = Ledger::cost(writes);
        let held = mirror.ledger.total();
        if cost > 0 && held.saturating_add(cost) > self.max_bytes {
            // Nothing is evicted to make room: what is held may be what a
            // rule needs (a session's label, a limit's uses).
            return Err(format!(
                "state full: the limits and sessions held take about {} MiB, and this decision would add {} \
                 bytes (at most {} MiB; older entries leave as their windows pass and idle sessions expire)",
                held / (1024 * 1024),
                cost,
                self.max_bytes / (1024 * 1024)
            ));
        }
        Ok(())
    }

    /// Replaces a reservation by the writes of the final effect.
    pub fn settle(&self, reserved: &mut Reserved, decision_id: &str, effect: Effect) {
        if effect == reserved.effect {
            return;
        }
        let writes = reserved.effects.writes(decision_id, effect, reserved.time);
        if let Ok(mut mirror) = self.mirror() {
            mirror.undo(&reserved.writes);
            mirror.apply(&writes);
        }
        reserved.writes = writes;
        reserved.effect = effect;
    }

    /// Takes back a reservation whose writes were handed to the store
    /// (the append failed, or the record exists already).
    pub fn undo_reserved(&self, reserved: &Reserved, decision_id: &str) {
        if reserved.writes.is_empty() {
            self.undo(&reserved.effects.writes(decision_id, reserved.effect, reserved.time));
        } else {
            self.undo(&reserved.writes);
        }
    }

    /// Takes a reservation back (its record could not be written).
    pub fn undo(&self, writes: &[StateWrite]) {
        if writes.is_empty() {
            return;
        }
        if let Ok(mut mirror) = self.mirror() {
            mirror.undo(writes);
        }
    }

    /// Loads the mirror from `store` for `policy` if the policy uses state:
    /// the history of the last `max_window` and the sessions active within
    /// the idle time. Once loaded, a policy with a longer `max_window`
    /// loads the older history it lacks.
    pub async fn open(&self, store: &dyn Store, policy: &Policy, now: Timestamp) -> Result<(), StoreError> {
        if !policy.uses_state() {
            return Ok(());
        }
        let _one_at_a_time = self.loading.lock().await;
        let wanted = policy.max_window();
        let (loaded, held) = {
            let mirror = self.mirror().map_err(StoreError)?;
            (mirror.loaded, mirror.max_window)
        };
        if loaded && wanted <= held {
            return Ok(());
        }
        if let Some(lease) = &self.lease {
            // Loaded whole under the lease (the state others write is
            // only exact there), now: a store that cannot be read fails
            // here rather than at the first decision.
            {
                let mut mirror = self.mirror().map_err(StoreError)?;
                mirror.max_window = mirror.max_window.max(wanted);
                mirror.loaded = true;
            }
            lease.invalidate();
            let mut guard = lease.enter().await.map_err(StoreError)?;
            guard.done();
            return Ok(());
        }
        let window_start = now.checked_sub(wanted).map_err(|e| StoreError(e.to_string()))?;
        let idle_start = now
            .checked_sub(self.session_idle)
            .map_err(|e| StoreError(e.to_string()))?;
        let writes = store.load_state(window_start, idle_start).await?;
        let mut mirror = self.mirror().map_err(StoreError)?;
        if !mirror.loaded {
            // Afresh: a mirror released earlier (its store closed) still
            // holds what it had, which the store's copy has too.
            mirror.state = MemoryState::new(self.cell.hasher.clone());
            mirror.ledger = Ledger::default();
            mirror.apply(&writes);
            mirror.loaded = true;
            mirror.max_window = wanted;
            tracing::info!(writes = writes.len(), "state loaded from the store");
            return Ok(());
        }
        // Wider than what is held: the mirror keeps exactly the history
        // since `now - held` once pruned at `now`; what is older comes from
        // the store. Labels are kept whatever their age, so all are there.
        let held_start = now.checked_sub(mirror.max_window).unwrap_or(now);
        let idle = self.session_idle;
        let held_window = mirror.max_window;
        mirror.prune(now, held_window, idle);
        let older_calls: std::collections::HashSet<&str> = writes
            .iter()
            .filter_map(|w| match w {
                StateWrite::Call { call, .. } if call.time < held_start => Some(call.decision_id.as_str()),
                _ => None,
            })
            .collect();
        let older: Vec<StateWrite> = writes
            .iter()
            .filter(|w| match w {
                StateWrite::Use { time, .. } => *time < held_start,
                StateWrite::Call { call, .. } => call.time < held_start,
                StateWrite::Output { decision_id, .. } => older_calls.contains(decision_id.as_str()),
                StateWrite::Label { .. } => false,
            })
            .cloned()
            .collect();
        mirror.apply(&older);
        mirror.max_window = wanted;
        tracing::info!(writes = older.len(), "older state loaded for a longer max_window");
        Ok(())
    }

    /// Whether the mirror is loaded.
    pub fn loaded(&self) -> bool {
        self.mirror().is_ok_and(|m| m.loaded)
    }

    /// Drops from the mirror and from `store` what no window can read any
    /// more: uses and calls older than `max_window`, sessions idle longer
    /// than the idle time. Returns how many entries the mirror and the
    /// store dropped.
    pub async fn prune(&self, store: &dyn Store, policy: &Policy, now: Timestamp) -> Result<(u64, u64), StoreError> {
        // On a shared store, bounded by the database's clock too: a
        // replica whose clock runs ahead must not delete what the others
        // still count.
        let now = if self.shared() {
            match shared_prune_time(
                now,
                store.database_now().await?,
                rein_store::PostgresStore::MAX_CLOCK_SKEW,
            ) {
                Ok(at) => at,
                Err(why) => {
                    tracing::warn!("state not pruned: {why}");
                    return Ok((0, 0));
                }
            }
        } else {
            now
        };
        let (dropped, window) = {
            // On a shared store too, without the lease: what is dropped is
            // what no decision reads any more, whatever others write.
            let mut mirror = self.mirror().map_err(StoreError)?;
            if !mirror.loaded {
                return Ok((0, 0));
            }
            // Never narrower than what the policy now reads.
            let window = mirror.max_window.max(policy.max_window());
            let dropped = mirror.prune(now, window, self.session_idle);
            (dropped, window)
        };
        // On a shared store, never narrower than the widest window and idle
        // time any replica reads the state with (it may serve a policy
        // reading further back than this one).
        let (window, idle) = if self.shared() {
            let (widest_window, widest_idle) = store.widest_state_spans(window, self.session_idle).await?;
            (window.max(widest_window), self.session_idle.max(widest_idle))
        } else {
            (window, self.session_idle)
        };
        let window_start = now.checked_sub(window).map_err(|e| StoreError(e.to_string()))?;
        let idle_start = now.checked_sub(idle).map_err(|e| StoreError(e.to_string()))?;
        let stored = store.prune_state(window_start, idle_start).await?;
        Ok((dropped as u64, stored))
    }

    /// Narrows the window the mirror keeps to `policy`'s after a reload.
    pub fn follow(&self, policy: &Policy) {
        if self.shared() {
            // Kept at the widest window seen: the store's rows are pruned
            // with it, and other processes may serve a policy reading
            // further back.
            return;
        }
        if let Ok(mut mirror) = self.mirror() {
            if mirror.loaded && policy.uses_state() {
                mirror.max_window = policy.max_window();
            }
        }
    }

    pub fn buckets(&self, now: Timestamp, policy: &Policy) -> Result<Vec<BucketStatus>, String> {
        let mirror = self.mirror()?;
        Ok(mirror.state.buckets(now, &policy.limits()))
    }

    pub fn session(&self, id: &str) -> Result<Option<SessionSnapshot>, String> {
        let mirror = self.mirror()?;
        Ok(mirror.state.session(id))
    }

    /// Resets limit uses in the store, then in the mirror.
    pub async fn reset(&self, store: &dyn Store, rule: Option<&str>, bucket: Option<&str>) -> Result<u64, StoreError> {
        let key = match bucket {
            Some(id) => Some(BucketKey::from_id(id).ok_or_else(|| {
                StoreError(format!(
                    "`{id}` is not a bucket id (the `bucket` of a limits listing, a JSON array)"
                ))
            })?),
            None => None,
        };
        if let (Some(rule), Some(key)) = (rule, &key) {
            if key.rule != rule {
                return Err(StoreError(format!(
                    "bucket `{}` belongs to rule `{}`, not `{rule}`",
                    bucket.unwrap_or_default(),
                    key.rule
                )));
            }
        }
        let reset = store
            .reset_limits(rule.map(str::to_string), bucket.map(str::to_string))
            .await;
        if let Some(lease) = &self.lease {
            // Whatever the answer, the store may have changed: reloaded
            // whole under the next lease.
            lease.invalidate();
            return reset;
        }
        let reset = reset?;
        let mut mirror = self.mirror().map_err(StoreError)?;
        mirror.state.reset(rule, key.as_ref());
        Ok(reset)
    }
}

/// The time a store shared by several processes is pruned at: the earlier
/// of this process's clock (`now`) and the database's (`db_now`); `Err`
/// (nothing is pruned) when the database tells no time, or when the two
/// differ by more than `max_skew` (this host's clock, or the database's,
/// is off: what is old by one may be counted by the other replicas).
fn shared_prune_time(
    now: Timestamp,
    db_now: Option<Timestamp>,
    max_skew: std::time::Duration,
) -> Result<Timestamp, String> {
    let Some(db_now) = db_now else {
        return Err("the shared store tells no database time to bound the pruning by".into());
    };
    let skew = now.duration_since(db_now);
    let allowed = SignedDuration::try_from(max_skew).unwrap_or(SignedDuration::ZERO);
    if skew.abs() > allowed {
        return Err(format!(
            "this replica's clock is {:+.3} s off the database's (at most {} s allowed); check NTP on this host and \
             the database's",
            skew.as_secs_f64(),
            max_skew.as_secs_f64()
        ));
    }
    Ok(now.min(db_now))
}

impl Runtime {
    /// Loads the state stateful rules read from the store, if the policy
    /// uses any (`rein serve` and `rein hook` call it after [`Runtime::new`],
    /// a hook after taking the store's [`StateLock`]). Until it has run,
    /// every decision that needs state is `block` ("state not loaded").
    ///
    /// On a store shared by several processes ([`Store::is_shared`]) no
    /// [`StateLock`] is taken (nor may be): the state is loaded under the
    /// store's state lease, which every stateful decision enters from then
    /// on (see [`RuntimeConfig::lease_hold`]).
    pub async fn open_state(&self) -> Result<(), RuntimeError> {
        let policy = self.policy();
        Ok(self.state.open(self.store.as_ref(), &policy, Timestamp::now()).await?)
    }

    /// Keeps the store's state lock for the runtime's life: this process is
    /// the one that keeps the store's state. (A store shared by several
    /// processes has none: see [`Runtime::open_state`].)
    pub fn hold_state_lock(&self, lock: StateLock) {
        self.state.hold(lock);
    }

    /// Gives the store's state lock up (the store was closed: nothing more
    /// is written through this runtime). Stateful decisions block from now
    /// on, as the state is no longer this process's to keep.
    pub fn release_state_lock(&self) {
        self.state.release();
    }

    /// Whether the state is loaded (see [`Runtime::open_state`]).
    pub fn state_loaded(&self) -> bool {
        self.state.loaded()
    }

    /// Swaps the policy as [`Runtime::set_policy`] does, loading first the
    /// state the new policy reads if it is stateful (and the older history
    /// a longer `max_window` needs). On a load error the old policy stays.
    pub async fn set_policy_with_state(&self, policy: Policy) -> Result<(), RuntimeError> {
        self.state.open(self.store.as_ref(), &policy, Timestamp::now()).await?;
        self.state.follow(&policy);
        self.set_policy(policy);
        Ok(())
    }

    /// Prunes the state: what no window of the policy can read any more and
    /// the sessions idle longer than [`RuntimeConfig::session_idle`], in
    /// memory and in the store. Returns the entries dropped (memory, store).
    ///
    /// On a shared store, without the lease (what is dropped is what no
    /// decision reads), with the widest window this process has served:
    /// the store's rows younger than that are kept for every process.
    ///
    /// On a shared store, `now` is bounded by the database's clock: the
    /// earlier of the two is pruned at, and nothing is pruned (a warning
    /// is logged) when they differ by more than the clock skew the state
    /// lease tolerates.
    ///
    /// On a shared store, a replica that does not serve the version
    /// published to the replicas (it could not load it, or has not switched
    /// yet) prunes nothing: its windows may be narrower than the fleet's.
    /// (The store never prunes narrower than the widest window any replica
    /// has read the state with either: see the PostgreSQL store.)
    pub async fn prune_state(&self, now: Timestamp) -> Result<(u64, u64), RuntimeError> {
        let policy = self.policy();
        if self.store.is_shared() {
            if let Some(published) = self.store.published_policy().await? {
                if published != policy.version() {
                    tracing::info!(
                        served = %policy.version(),
                        %published,
                        "state not pruned: this replica does not serve the policy version published"
                    );
                    return Ok((0, 0));
                }
            }
        }
        Ok(self.state.prune(self.store.as_ref(), &policy, now).await?)
    }

    /// Whether this process could take the shared store's state lease the
    /// last time it tried: `Err` names why the latest acquisition failed
    /// (the holder frozen or unreachable, the database down, the clocks of
    /// the database and this host apart), while this process's stateful
    /// decisions block. Always `Ok` for a store of this process alone, and
    /// before any stateful decision. For `/healthz`.
    pub fn state_lease_health(&self) -> Result<(), String> {
        self.state.lease_health()
    }

    /// Every limit bucket with uses in its window at `now`: its use, its
    /// limit and when the next unit frees up. (On a shared store, this
    /// process's copy: see [`Runtime::limits_current`].)
    pub fn limits(&self, now: Timestamp) -> Result<Vec<BucketStatus>, RuntimeError> {
        let policy = self.policy();
        self.state
            .buckets(now, &policy)
            .map_err(|e| RuntimeError::Store(StoreError(e)))
    }

    /// What a session holds: its calls (oldest first) and labels. `None`
    /// for a session not seen (or expired).
    ///
    /// On a store shared by several processes this is this process's copy,
    /// as of its last stateful decision: [`Runtime::session_current`]
    /// reads it under the state lease.
    pub fn session(&self, id: &str) -> Result<Option<SessionSnapshot>, RuntimeError> {
        self.state.session(id).map_err(|e| RuntimeError::Store(StoreError(e)))
    }

    /// [`Runtime::limits`], read, on a store shared by several processes,
    /// under the state lease (with what every process wrote); the same
    /// as [`Runtime::limits`] otherwise.
    pub async fn limits_current(&self, now: Timestamp) -> Result<Vec<BucketStatus>, RuntimeError> {
        self.under_lease(|| self.limits(now)).await
    }

    /// [`Runtime::session`], read, on a store shared by several processes,
    /// under the state lease; the same as [`Runtime::session`] otherwise.
    pub async fn session_current(&self, id: &str) -> Result<Option<SessionSnapshot>, RuntimeError> {
        self.under_lease(|| self.session(id)).await
    }

    /// Runs `read` (of the mirror) under the state lease, if the store is
    /// shared.
    async fn under_lease<T>(&self, read: impl FnOnce() -> Result<T, RuntimeError>) -> Result<T, RuntimeError> {
        match self.state.enter().await {
            None => read(),
            Some(Err(why)) => Err(RuntimeError::Store(StoreError(why))),
            Some(Ok(mut guard)) => {
                let read = guard
                    .current()
                    .map_err(|e| RuntimeError::Store(StoreError(e)))
                    .and_then(|()| read());
                guard.done();
                read
            }
        }
    }

    /// Forgets the uses of the limits of `rule` (every rule if `None`), or
    /// of one `bucket` (its id, as listed), in the store and in memory.
    /// Returns how many uses the store dropped.
    pub async fn reset_limits(&self, rule: Option<&str>, bucket: Option<&str>) -> Result<u64, RuntimeError> {
        Ok(self.state.reset(self.store.as_ref(), rule, bucket).await?)
    }
}

#[cfg(test)]
mod prune_time_tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    const SKEW: std::time::Duration = std::time::Duration::from_secs(2);

    fn t(seconds: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + seconds).unwrap()
    }

    #[test]
    fn a_shared_store_is_pruned_at_the_earlier_clock() {
        assert_eq!(shared_prune_time(t(0), Some(t(0)), SKEW), Ok(t(0)));
        // This replica ahead: the database's time.
        assert_eq!(shared_prune_time(t(2), Some(t(0)), SKEW), Ok(t(0)));
        // Behind: its own.
        assert_eq!(shared_prune_time(t(-2), Some(t(0)), SKEW), Ok(t(-2)));
        let ms = SignedDuration::from_millis;
        assert_eq!(
            shared_prune_time(t(0) + ms(1500), Some(t(0)), SKEW),
            Ok(t(0)),
            "never later than the database's clock"
        );
    }

    #[test]
    fn clocks_apart_or_unknown_prune_nothing() {
        let us = SignedDuration::from_micros;
        for now in [t(2) + us(1), t(-2) - us(1), t(3600), t(-3600)] {
            let why = shared_prune_time(now, Some(t(0)), SKEW).unwrap_err();
            assert!(why.contains("off the database's"), "{why}");
        }
        assert!(shared_prune_time(t(3600), Some(t(0)), SKEW)
            .unwrap_err()
            .contains("+3600.000 s"));
        assert!(shared_prune_time(t(0), None, SKEW).is_err());
    }
}
