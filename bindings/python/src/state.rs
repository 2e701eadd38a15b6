//! `State`: limits and sessions in memory for in-process decisions, as
//! `rein check --state` keeps them in a file.

use crate::errors::rein_error;
use jiff::{SignedDuration, Timestamp};
use parking_lot::Mutex;
use pyo3::prelude::*;
use rein_engine::{Decision, MemoryState, Policy, Prepared};

/// How long a session is kept after its last write (the default of
/// `rein serve` and `rein check --state`).
const SESSION_IDLE: SignedDuration = SignedDuration::from_hours(24);

/// How often old uses and idle sessions are dropped: pruning walks every
/// bucket and session, too much work for every decision.
const PRUNE_EVERY: SignedDuration = SignedDuration::from_secs(60);

/// Limits and sessions kept in memory for in-process decisions (what `rein check --state` keeps
/// in a file). Thread-safe; share one per process (a decision reads it, decides and records
/// what it writes atomically, so two threads cannot both take a limit's last unit). Without a
/// State, a decision whose rules read state is `block`.
///
/// A decision with a State records its final effect as its own (nobody can grant an approval
/// in-process): an allowed call takes its limit units and attaches its labels; every call of a
/// session whose calls rules read is recorded. Uses older than the longest window of the
/// policies that used it, and sessions idle for 24 h, are dropped (checked once a minute).
#[pyclass(frozen, module = "rein._native")]
pub struct State {
    inner: Mutex<Inner>,
}

struct Inner {
    memory: MemoryState,
    /// When old entries were last dropped.
    pruned_at: Option<Timestamp>,
    /// The longest `max_window` of the policies that decided with this
    /// state: pruning for a shorter one would forget what a longer one
    /// still counts.
    max_window: SignedDuration,
}

impl State {
    fn with_memory(memory: MemoryState) -> State {
        State {
            inner: Mutex::new(Inner {
                memory,
                pruned_at: None,
                max_window: SignedDuration::ZERO,
            }),
        }
    }

    /// Decides `prepared` reading the state, and applies what the decision
    /// writes (its final effect is its own: nobody grants approvals
    /// in-process) under `decision_id` at `time`, atomically: two threads
    /// cannot both take the last unit of a limit.
    pub(crate) fn decide<'p>(
        &self,
        policy: &Policy,
        prepared: &Prepared<'p>,
        decision_id: &str,
        time: Timestamp,
    ) -> Decision<'p> {
        let mut inner = self.inner.lock();
        inner.prune(policy, time);
        let (decision, effects) = prepared.decide_with_state(&inner.memory);
        let writes = effects.writes(decision_id, decision.effect(), time);
        inner.memory.apply(&writes);
        decision
    }

    /// Explains `prepared` reading the state, writing nothing.
    pub(crate) fn explain(&self, prepared: &Prepared<'_>) -> rein_engine::Explanation {
        let inner = self.inner.lock();
        prepared.explain_with_state(&inner.memory).0
    }
}

impl Inner {
    fn prune(&mut self, policy: &Policy, time: Timestamp) {
        self.max_window = self.max_window.max(policy.max_window());
        let now = Timestamp::now();
        let due = self
            .pruned_at
            .is_none_or(|at| now.duration_since(at) >= PRUNE_EVERY || now < at);
        if due {
            // Only what no request from now on, or at this request's time,
            // can see is dropped (a request may carry a time of its own).
            self.memory.prune(time.min(now), self.max_window, SESSION_IDLE);
            self.pruned_at = Some(now);
        }
    }
}

fn random_key() -> PyResult<[u8; 32]> {
    let mut key = [0u8; 32];
    getrandom::fill(&mut key)
        .map_err(|e| pyo3::exceptions::PyOSError::new_err(format!("the system random generator failed: {e}")))?;
    Ok(key)
}

#[pymethods]
impl State {
    /// An empty state; sensitive values are hashed with a random key.
    #[new]
    pub(crate) fn py_new() -> PyResult<State> {
        Ok(State::with_memory(MemoryState::with_key(random_key()?)))
    }

    /// The state as `rein check --state` saves it, JSON text. It holds the key sensitive values
    /// are hashed with: keep it private.
    fn to_json(&self, py: Python<'_>) -> PyResult<String> {
        // Without the GIL: waiting for the lock (a decision in another
        // thread) must not stop every other thread.
        let json = py.detach(|| self.inner.lock().memory.to_json().map(|j| j.to_string()));
        json.map_err(|e| rein_error(py, e.0))
    }

    /// A state saved by `to_json` or by `rein check --state`; raises `ReinError` when the text
    /// is not one.
    #[staticmethod]
    fn from_json(py: Python<'_>, text: &str) -> PyResult<State> {
        let value: serde_json::Value =
            serde_json::from_str(text).map_err(|e| rein_error(py, format!("the state is not JSON: {e}")))?;
        let memory = MemoryState::from_json(&value).map_err(|e| rein_error(py, format!("the state: {}", e.0)))?;
        Ok(State::with_memory(memory))
    }

    fn __repr__(&self, py: Python<'_>) -> String {
        let size = py.detach(|| self.inner.lock().memory.len());
        format!(
            "<State buckets={} uses={} sessions={} calls={} labels={}>",
            size.buckets, size.uses, size.sessions, size.calls, size.labels
        )
    }
}
