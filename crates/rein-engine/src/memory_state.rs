//! State kept in memory: the [`StateView`] of tests, of `rein check
//! --state FILE` and of the runtime's mirror of its store.
//!
//! Pure data and logic, no I/O and no clock: every time comes from the
//! writes and the queries. Limit uses and session calls are kept in time
//! order (a write may arrive out of order: concurrent reservations), so a
//! window is found by binary search and a read allocates nothing (except
//! [`StateView::session_labels`], whose answer is a list).
//!
//! A window is `[now - window, …)`: a use or call later than `now` counts
//! too, so a clock that steps back (or a request carrying an earlier time)
//! never frees units that were taken. A use leaves the window the instant
//! after `time + window`, which is what `retry_after_seconds` waits for
//! (rounded up to whole seconds: 3601 for a use made now in a 1h window).
//!
//! ```
//! use rein_engine::state::{BucketKey, LimitQuery, StateView, StateWrite};
//! use rein_engine::MemoryState;
//! use rust_decimal::Decimal;
//!
//! let mut state = MemoryState::with_key([7; 32]);
//! let bucket = BucketKey { rule: "refund_rate".into(), per: vec![] };
//! let at: jiff::Timestamp = "2026-01-01T10:00:00Z".parse().unwrap();
//! state.apply(&[StateWrite::Use { decision_id: "d1".into(), bucket: bucket.clone(), time: at, amount: Decimal::ONE }]);
//! let query = LimitQuery { bucket: &bucket, window: jiff::SignedDuration::from_hours(1), now: at, room: Decimal::ZERO };
//! let used = state.limit_use(&query).unwrap();
//! assert_eq!(used.used, Decimal::ONE);
//! assert_eq!(used.retry_after_seconds, Some(3601)); // the use counts until 11:00:00 inclusive
//! ```

use crate::state::{BucketKey, Decimal, LimitQuery, LimitUse, SessionCall, StateError, StateView, StateWrite};
use jiff::{SignedDuration, Timestamp};
use std::collections::{HashMap, VecDeque};
use std::fmt::Write as _;
use std::sync::Arc;

/// How a [`MemoryState`] hashes a sensitive value (rendered as JSON) into
/// the text it is stored and compared as.
pub type Hasher = Arc<dyn Fn(&serde_json::Value) -> String + Send + Sync>;

/// The version of [`MemoryState::to_json`]'s format; [`MemoryState::from_json`]
/// refuses any other.
pub const STATE_FORMAT_VERSION: u64 = 1;

/// The `format` field of a saved state, so that another JSON file given by
/// mistake is refused with a clear message.
const STATE_FORMAT_NAME: &str = "rein-state";

/// One use of a limit bucket.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Use {
    time: Timestamp,
    amount: Decimal,
    decision_id: String,
    /// The sum of the amounts of this use and every use before it in its
    /// bucket ([`recount`]), so that a window's use is one subtraction
    /// after a binary search, whatever the number of uses; `None` once
    /// that sum overflows a decimal (the window is then added up use by
    /// use, which reports the overflow).
    running: Option<Decimal>,
}

/// A label of a session, with the decision that attached it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SessionLabel {
    /// The label.
    pub label: String,
    /// The decision whose rule attached it.
    pub decision_id: String,
    /// When.
    pub time: Timestamp,
}

#[derive(Clone, Debug, Default)]
struct Session {
    /// In time order.
    calls: VecDeque<SessionCall>,
    /// In the order they were attached.
    labels: Vec<SessionLabel>,
    /// The latest time of any write of the session that was pruned, so
    /// that undoing a write recomputes `last_seen` without forgetting them.
    pruned_seen: Option<Timestamp>,
}

impl Session {
    /// The latest time of any of its writes, `None` when it holds none.
    fn last_seen(&self) -> Option<Timestamp> {
        let calls = self.calls.back().map(|c| c.time);
        let labels = self.labels.iter().map(|l| l.time).max();
        [calls, labels, self.pruned_seen].into_iter().flatten().max()
    }
}

/// What [`MemoryState::buckets`] lists of one bucket.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct BucketStatus {
    /// The bucket.
    pub bucket: BucketKey,
    /// The rule that carries the limit (the bucket's rule).
    pub rule: String,
    /// What the bucket used in the window.
    pub used: Decimal,
    /// The limit.
    pub max: Decimal,
    /// The window.
    pub window: SignedDuration,
    /// When the oldest use in the window leaves it (the first instant it
    /// no longer counts).
    pub next_free: Option<Timestamp>,
}

/// What [`MemoryState::session`] shows of a session.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct SessionSnapshot {
    /// The session's id.
    pub id: String,
    /// Its recorded calls, oldest first.
    pub calls: Vec<SessionCall>,
    /// Its labels, in the order they were attached.
    pub labels: Vec<SessionLabel>,
    /// The latest time of any of its writes.
    pub last_seen: Option<Timestamp>,
}

/// How much a [`MemoryState`] holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct StateSize {
    /// Limit buckets with at least one use.
    pub buckets: usize,
    /// Limit uses, over all buckets.
    pub uses: usize,
    /// Sessions.
    pub sessions: usize,
    /// Recorded calls, over all sessions.
    pub calls: usize,
    /// Labels (one per attaching decision), over all sessions.
    pub labels: usize,
}

/// Limit buckets and sessions in memory; see the [module documentation](self).
///
/// Maps are keyed with the standard library's randomly seeded hasher: the
/// keys (actor ids, session ids) come from requests, and a fixed hash
/// would let a client make every lookup slow.
#[derive(Clone)]
pub struct MemoryState {
    hasher: Hasher,
    /// The key of [`MemoryState::with_key`], kept to save the state with it.
    key: Option<[u8; 32]>,
    /// Each bucket's uses, in time order. No bucket is empty.
    buckets: HashMap<BucketKey, VecDeque<Use>>,
    /// No session is without calls, labels or a pruned time.
    sessions: HashMap<String, Session>,
}

impl std::fmt::Debug for MemoryState {
    // By hand: the hasher is a closure, and the key must not be printed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryState")
            .field("keyed", &self.key.is_some())
            .field("size", &self.len())
            .finish_non_exhaustive()
    }
}

impl MemoryState {
    /// An empty state that hashes sensitive values with `hasher`. It cannot
    /// be saved with [`MemoryState::to_json`] (its key is not known).
    pub fn new(hasher: Hasher) -> MemoryState {
        MemoryState {
            hasher,
            key: None,
            buckets: HashMap::new(),
            sessions: HashMap::new(),
        }
    }

    /// An empty state that hashes sensitive values as
    /// `"blake3:<hex>"` of BLAKE3 keyed with `key`, over the value's
    /// canonical JSON (keys sorted, no spaces).
    pub fn with_key(key: [u8; 32]) -> MemoryState {
        let hasher: Hasher = Arc::new(move |value: &serde_json::Value| keyed_hash_of(&key, value));
        MemoryState {
            key: Some(key),
            ..MemoryState::new(hasher)
        }
    }

    /// Applies writes, in whatever order of time they come: uses and calls
    /// are kept in time order (a write at the same time as earlier ones
    /// goes after them). An output whose call is not held (pruned, or
    /// never recorded) is dropped.
    pub fn apply(&mut self, writes: &[StateWrite]) {
        for w in writes {
            match w {
                StateWrite::Use {
                    decision_id,
                    bucket,
                    time,
                    amount,
                } => {
                    let uses = match self.buckets.get_mut(bucket) {
                        Some(uses) => uses,
                        None => self.buckets.entry(bucket.clone()).or_default(),
                    };
                    let at = uses.partition_point(|u| u.time <= *time);
                    uses.insert(
                        at,
                        Use {
                            time: *time,
                            amount: *amount,
                            decision_id: decision_id.clone(),
                            running: None,
                        },
                    );
                    // Uses arrive in time order: this is the last one, and
                    // the recount touches it alone.
                    recount(uses, at);
                }
                StateWrite::Call { session, call } => {
                    // A known session is found without allocating its key.
                    let held = match self.sessions.get_mut(session) {
                        Some(held) => held,
                        None => self.sessions.entry(session.clone()).or_default(),
                    };
                    let calls = &mut held.calls;
                    let at = calls.partition_point(|c| c.time <= call.time);
                    calls.insert(at, call.clone());
                }
                StateWrite::Output {
                    session,
                    decision_id,
                    output,
                } => {
                    if let Some(call) = self
                        .sessions
                        .get_mut(session)
                        .and_then(|s| s.calls.iter_mut().rev().find(|c| &c.decision_id == decision_id))
                    {
                        call.output = Some(output.clone());
                    }
                }
                StateWrite::Label {
                    session,
                    decision_id,
                    label,
                    time,
                } => {
                    let held = match self.sessions.get_mut(session) {
                        Some(held) => held,
                        None => self.sessions.entry(session.clone()).or_default(),
                    };
                    held.labels.push(SessionLabel {
                        label: label.clone(),
                        decision_id: decision_id.clone(),
                        time: *time,
                    });
                }
            }
        }
    }

    /// Removes exactly these writes, as applied earlier (a reservation whose
    /// approval or audit record failed): for each, one matching use, call
    /// or label (the same decision, time and value), and an output is reset
    /// to none. A write that is not held is skipped; so a label that
    /// another decision attached stays.
    pub fn undo(&mut self, writes: &[StateWrite]) {
        for w in writes {
            match w {
                StateWrite::Use {
                    decision_id,
                    bucket,
                    time,
                    amount,
                } => {
                    let Some(uses) = self.buckets.get_mut(bucket) else {
                        continue;
                    };
                    let from = uses.partition_point(|u| u.time < *time);
                    let found = (from..uses.len())
                        .take_while(|&i| uses[i].time == *time)
                        .find(|&i| uses[i].decision_id == *decision_id && uses[i].amount == *amount);
                    if let Some(i) = found {
                        uses.remove(i);
                        recount(uses, i);
                    }
                    if uses.is_empty() {
                        self.buckets.remove(bucket);
                    }
                }
                StateWrite::Call { session, call } => {
                    let Some(s) = self.sessions.get_mut(session) else {
                        continue;
                    };
                    let from = s.calls.partition_point(|c| c.time < call.time);
                    let found = (from..s.calls.len())
                        .take_while(|&i| s.calls[i].time == call.time)
                        .find(|&i| {
                            let held = &s.calls[i];
                            held.decision_id == call.decision_id
                                && held.action == call.action
                                && held.effect == call.effect
                                && held.input == call.input
                        });
                    if let Some(i) = found {
                        s.calls.remove(i);
                    }
                    self.drop_if_empty(session);
                }
                StateWrite::Output {
                    session,
                    decision_id,
                    output,
                } => {
                    if let Some(call) = self
                        .sessions
                        .get_mut(session)
                        .and_then(|s| s.calls.iter_mut().rev().find(|c| &c.decision_id == decision_id))
                    {
                        if call.output.as_ref() == Some(output) {
                            call.output = None;
                        }
                    }
                }
                StateWrite::Label {
                    session,
                    decision_id,
                    label,
                    time,
                } => {
                    let Some(s) = self.sessions.get_mut(session) else {
                        continue;
                    };
                    // The latest such entry: the one this write added, if
                    // the same label was attached twice by the decision.
                    if let Some(i) = s
                        .labels
                        .iter()
                        .rposition(|l| l.label == *label && l.decision_id == *decision_id && l.time == *time)
                    {
                        s.labels.remove(i);
                    }
                    self.drop_if_empty(session);
                }
            }
        }
    }

    fn drop_if_empty(&mut self, session: &str) {
        if self.sessions.get(session).is_some_and(|s| s.last_seen().is_none()) {
            self.sessions.remove(session);
        }
    }

    /// Drops what no decision can read any more: uses and calls older than
    /// `now - max_window`, and sessions whose last write is older than
    /// `now - session_idle` (with their labels). Returns how many uses,
    /// calls, labels and sessions it dropped.
    pub fn prune(&mut self, now: Timestamp, max_window: SignedDuration, session_idle: SignedDuration) -> usize {
        let window_start = now.saturating_sub(max_window).unwrap_or(Timestamp::MIN);
        let idle_start = now.saturating_sub(session_idle).unwrap_or(Timestamp::MIN);
        let mut dropped = 0;
        self.buckets.retain(|_, uses| {
            let old = uses.partition_point(|u| u.time < window_start);
            uses.drain(..old);
            if old > 0 {
                // From zero again, so that the running sums stay small.
                recount(uses, 0);
            }
            dropped += old;
            !uses.is_empty()
        });
        self.sessions.retain(|_, s| {
            if s.last_seen().is_none_or(|t| t < idle_start) {
                dropped += 1 + s.calls.len() + s.labels.len();
                return false;
            }
            let old = s.calls.partition_point(|c| c.time < window_start);
            if old > 0 {
                let latest = s.calls[old - 1].time;
                s.pruned_seen = Some(s.pruned_seen.map_or(latest, |t| t.max(latest)));
                s.calls.drain(..old);
                dropped += old;
            }
            dropped += drop_repeated_old_labels(s, window_start);
            true
        });
        dropped
    }

    /// The buckets of `limits` that used something in their limit's window
    /// at `now`, sorted by bucket. Buckets of rules not in `limits` (a
    /// policy that changed) are left out.
    pub fn buckets(&self, now: Timestamp, limits: &[crate::state::LimitInfo]) -> Vec<BucketStatus> {
        let mut out: Vec<BucketStatus> = self
            .buckets
            .iter()
            .filter_map(|(bucket, uses)| {
                let limit = limits.iter().find(|l| l.rule == bucket.rule)?;
                let start = window_start(now, limit.window);
                let from = uses.partition_point(|u| u.time < start);
                let oldest = uses.get(from)?;
                Some(BucketStatus {
                    bucket: bucket.clone(),
                    rule: bucket.rule.clone(),
                    used: sum(uses.range(from..)).unwrap_or(Decimal::MAX),
                    max: limit.max,
                    window: limit.window,
                    next_free: leaves_at(oldest.time, limit.window),
                })
            })
            .collect();
        out.sort_by(|a, b| a.bucket.cmp(&b.bucket));
        out
    }

    /// A session's calls (oldest first), labels and last write; `None` for
    /// a session the state does not hold.
    pub fn session(&self, id: &str) -> Option<SessionSnapshot> {
        let s = self.sessions.get(id)?;
        Some(SessionSnapshot {
            id: id.to_string(),
            calls: s.calls.iter().cloned().collect(),
            labels: s.labels.clone(),
            last_seen: s.last_seen(),
        })
    }

    /// Empties the buckets of rule `rule` (if given) that are `bucket` (if
    /// given); with neither, every bucket. Returns how many uses it dropped.
    pub fn reset(&mut self, rule: Option<&str>, bucket: Option<&BucketKey>) -> usize {
        let mut dropped = 0;
        self.buckets.retain(|key, uses| {
            let hit = rule.is_none_or(|r| key.rule == r) && bucket.is_none_or(|b| key == b);
            if hit {
                dropped += uses.len();
            }
            !hit
        });
        dropped
    }

    /// How much the state holds.
    pub fn len(&self) -> StateSize {
        StateSize {
            buckets: self.buckets.len(),
            uses: self.buckets.values().map(VecDeque::len).sum(),
            sessions: self.sessions.len(),
            calls: self.sessions.values().map(|s| s.calls.len()).sum(),
            labels: self.sessions.values().map(|s| s.labels.len()).sum(),
        }
    }

    /// True when the state holds nothing.
    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty() && self.sessions.is_empty()
    }

    /// The state as JSON, with its key (hex), for `rein check --state FILE`:
    /// `{"format": "rein-state", "version": 1, "key": …, "buckets": […],
    /// "sessions": […]}`. Fails for a state made with [`MemoryState::new`],
    /// whose key is not known.
    pub fn to_json(&self) -> Result<serde_json::Value, StateError> {
        let key = self.key.ok_or_else(|| {
            StateError("this state hashes with a hasher of its own, whose key cannot be saved".into())
        })?;
        let mut buckets: Vec<SavedBucket> = self
            .buckets
            .iter()
            .map(|(bucket, uses)| SavedBucket {
                bucket: bucket.clone(),
                uses: uses
                    .iter()
                    .map(|u| SavedUse {
                        decision_id: u.decision_id.clone(),
                        time: u.time,
                        amount: u.amount,
                    })
                    .collect(),
            })
            .collect();
        buckets.sort_by(|a, b| a.bucket.cmp(&b.bucket));
        let mut sessions: Vec<SavedSession> = self
            .sessions
            .iter()
            .map(|(id, s)| SavedSession {
                id: id.clone(),
                calls: s.calls.iter().cloned().collect(),
                labels: s.labels.clone(),
                pruned_seen: s.pruned_seen,
            })
            .collect();
        sessions.sort_by(|a, b| a.id.cmp(&b.id));
        let saved = SavedState {
            format: STATE_FORMAT_NAME.into(),
            version: STATE_FORMAT_VERSION,
            key: hex(&key),
            buckets,
            sessions,
        };
        serde_json::to_value(saved).map_err(|e| StateError(format!("cannot render the state: {e}")))
    }

    /// Reads back [`MemoryState::to_json`]. Refuses another format or
    /// version, a key that is not 64 hex digits, and anything that does not
    /// fit the format, saying what.
    pub fn from_json(value: &serde_json::Value) -> Result<MemoryState, StateError> {
        let format = value.get("format").and_then(serde_json::Value::as_str);
        if format != Some(STATE_FORMAT_NAME) {
            return Err(StateError(format!(
                "not a Rein state file (its `format` is not \"{STATE_FORMAT_NAME}\")"
            )));
        }
        match value.get("version").and_then(serde_json::Value::as_u64) {
            Some(STATE_FORMAT_VERSION) => {}
            Some(v) => {
                return Err(StateError(format!(
                    "state format version {v} is not supported (this Rein reads version {STATE_FORMAT_VERSION})"
                )))
            }
            None => return Err(StateError("the state file has no numeric `version`".into())),
        }
        let saved: SavedState =
            serde::Deserialize::deserialize(value).map_err(|e| StateError(format!("malformed state file: {e}")))?;
        let key = unhex(&saved.key)
            .ok_or_else(|| StateError("malformed state file: `key` must be 64 hexadecimal digits".into()))?;
        let mut state = MemoryState::with_key(key);
        for b in saved.buckets {
            if b.uses.iter().any(|u| u.amount.is_sign_negative()) {
                return Err(StateError(format!(
                    "malformed state file: bucket {} has a negative use",
                    b.bucket.describe()
                )));
            }
            let uses: Vec<Use> = b
                .uses
                .into_iter()
                .map(|u| Use {
                    time: u.time,
                    amount: u.amount,
                    decision_id: u.decision_id,
                    running: None,
                })
                .collect();
            if !uses.is_empty() {
                state.buckets.entry(b.bucket).or_default().extend(uses);
            }
        }
        // The file is not trusted to be in order, nor to name a bucket
        // once: a window search needs each bucket's uses in time order.
        for uses in state.buckets.values_mut() {
            uses.make_contiguous().sort_by_key(|u| u.time);
            recount(uses, 0);
        }
        for s in saved.sessions {
            let mut calls = s.calls;
            calls.sort_by_key(|c| c.time);
            let session = Session {
                calls: calls.into(),
                labels: s.labels,
                pruned_seen: s.pruned_seen,
            };
            if session.last_seen().is_some() {
                let held = state.sessions.entry(s.id).or_default();
                held.calls.extend(session.calls);
                held.labels.extend(session.labels);
                held.pruned_seen = held.pruned_seen.max(session.pruned_seen);
                held.calls.make_contiguous().sort_by_key(|c| c.time);
            }
        }
        Ok(state)
    }
}

/// A session that keeps attaching a label (every secret read attaches
/// `secret` again) would hold an entry per decision for as long as it is
/// active. The session has the label as long as one entry is held, and an
/// entry older than the longest window belongs to a decision long
/// committed (undo only takes back fresh reservations): so of the older
/// entries, only the first of each label is kept. Returns how many went.
fn drop_repeated_old_labels(s: &mut Session, window_start: Timestamp) -> usize {
    let before = s.labels.len();
    let mut seen: Vec<&str> = Vec::new();
    let mut keep = vec![true; before];
    for (i, l) in s.labels.iter().enumerate() {
        if seen.contains(&l.label.as_str()) {
            keep[i] = l.time >= window_start;
        } else {
            seen.push(&l.label);
        }
    }
    if keep.iter().all(|k| *k) {
        return 0;
    }
    // What goes still counts for when the session was last seen.
    let latest_dropped = s
        .labels
        .iter()
        .zip(&keep)
        .filter(|(_, k)| !**k)
        .map(|(l, _)| l.time)
        .max();
    s.pruned_seen = s.pruned_seen.max(latest_dropped);
    let mut flags = keep.into_iter();
    s.labels.retain(|_| flags.next().unwrap_or(true));
    before - s.labels.len()
}

/// The first instant of a window of `window` ending at `now`.
fn window_start(now: Timestamp, window: SignedDuration) -> Timestamp {
    now.saturating_sub(window).unwrap_or(Timestamp::MIN)
}

/// The first instant a use at `time` no longer counts in a window of
/// `window` (it counts while `time >= now - window`).
fn leaves_at(time: Timestamp, window: SignedDuration) -> Option<Timestamp> {
    time.checked_add(window)
        .ok()?
        .checked_add(SignedDuration::from_nanos(1))
        .ok()
}

impl StateView for MemoryState {
    fn limit_use(&self, query: &LimitQuery<'_>) -> Result<LimitUse, StateError> {
        let never = query.room < Decimal::ZERO;
        let Some(uses) = self.buckets.get(query.bucket) else {
            return Ok(LimitUse {
                used: Decimal::ZERO,
                retry_after_seconds: (!never).then_some(0),
            });
        };
        let start = window_start(query.now, query.window);
        let from = uses.partition_point(|u| u.time < start);
        let in_window = uses.range(from..);
        // The window's use from the running sums: everything up to the last
        // use, less everything before the window.
        let before = match from {
            0 => Some(Decimal::ZERO),
            i => uses.get(i - 1).and_then(|u| u.running),
        };
        let total = uses.back().map_or(Some(Decimal::ZERO), |u| u.running);
        let fast = total.zip(before).map(|(total, before)| (total, total - before));
        // Approved calls may go past a limit, and a state file is not
        // trusted: a sum too large for a decimal is an error (the decision
        // blocks), never a panic.
        let used = match fast {
            Some((_, used)) => used,
            None => sum(in_window.clone()).ok_or_else(|| {
                StateError(format!(
                    "the use of bucket {} is too large to add up",
                    query.bucket.describe()
                ))
            })?,
        };
        let retry_after_seconds = if never {
            None
        } else if used <= query.room {
            Some(0)
        } else if let Some((total, _)) = fast {
            // The oldest uses leave first: room is there once the uses
            // after the first to leave fit (`total - running`, never rising
            // along the bucket, so a binary search finds it; equal times
            // leave together).
            let room = query.room;
            let first_to_go = uses.partition_point(|u| u.time < start || u.running.is_none_or(|r| total - r > room));
            uses.get(first_to_go)
                .and_then(|u| seconds_until(query.now, leaves_at(u.time, query.window)?))
        } else {
            // The oldest uses leave first; the room is there once enough
            // of them left. Equal times leave together.
            let mut left = used;
            let mut free_at = None;
            for u in in_window {
                left -= u.amount;
                if left <= query.room {
                    free_at = Some(u.time);
                    break;
                }
            }
            // Amounts are never negative, so the loop ends with `left` at
            // 0 <= room at the latest; `None` only if that was broken.
            free_at.and_then(|t| seconds_until(query.now, leaves_at(t, query.window)?))
        };
        Ok(LimitUse {
            used,
            retry_after_seconds,
        })
    }

    fn session_labels(&self, session: &str) -> Result<Vec<String>, StateError> {
        let Some(s) = self.sessions.get(session) else {
            return Ok(Vec::new());
        };
        let mut labels: Vec<String> = s.labels.iter().map(|l| l.label.clone()).collect();
        labels.sort_unstable();
        labels.dedup();
        Ok(labels)
    }

    fn session_has_label(&self, session: &str, label: &str) -> Result<bool, StateError> {
        // No copy: a session holds a handful of labels.
        Ok(self
            .sessions
            .get(session)
            .is_some_and(|s| s.labels.iter().any(|l| l.label == label)))
    }

    fn session_calls(
        &self,
        session: &str,
        since: Timestamp,
        f: &mut dyn FnMut(&SessionCall),
    ) -> Result<(), StateError> {
        if let Some(s) = self.sessions.get(session) {
            let from = s.calls.partition_point(|c| c.time < since);
            s.calls.range(from..).for_each(f);
        }
        Ok(())
    }

    fn keyed_hash(&self, value: &serde_json::Value) -> String {
        (self.hasher)(value)
    }
}

/// Sets the running sums of `uses` from position `from` on (those before
/// it are right).
fn recount(uses: &mut VecDeque<Use>, from: usize) {
    let mut running = match from {
        0 => Some(Decimal::ZERO),
        i => uses.get(i - 1).and_then(|u| u.running),
    };
    for u in uses.range_mut(from..) {
        running = running.and_then(|r| r.checked_add(u.amount));
        u.running = running;
    }
}

/// The sum of the uses' amounts; `None` if it overflows a decimal.
fn sum<'a>(mut uses: impl Iterator<Item = &'a Use>) -> Option<Decimal> {
    uses.try_fold(Decimal::ZERO, |total, u| total.checked_add(u.amount))
}

/// Whole seconds from `now` until `then`, rounded up (0 if `then` is not
/// after `now`).
fn seconds_until(now: Timestamp, then: Timestamp) -> Option<u64> {
    let d = then.duration_since(now);
    if d <= SignedDuration::ZERO {
        return Some(0);
    }
    let whole = u64::try_from(d.as_secs()).ok()?;
    Some(if d.subsec_nanos() > 0 { whole + 1 } else { whole })
}

/// `"blake3:<hex>"` of BLAKE3 keyed with `key` over the canonical JSON of
/// `value`.
pub(crate) fn keyed_hash_of(key: &[u8; 32], value: &serde_json::Value) -> String {
    let mut text = String::with_capacity(64);
    canonical_json(&mut text, value);
    let hash = blake3::keyed_hash(key, text.as_bytes());
    format!("blake3:{}", hash.to_hex())
}

/// Canonical JSON: keys sorted by their UTF-8 bytes at every level, no
/// whitespace, `serde_json`'s number and string formatting. Independent of
/// whether some crate turns on `serde_json`'s `preserve_order`.
fn canonical_json(out: &mut String, v: &serde_json::Value) {
    use serde_json::Value;
    match v {
        Value::Null | Value::Bool(_) | Value::Number(_) | Value::String(_) => {
            // Display of a scalar Value is its compact JSON text.
            let _ = write!(out, "{v}");
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                canonical_json(out, item);
            }
            out.push(']');
        }
        Value::Object(map) => {
            let mut members: Vec<(&String, &Value)> = map.iter().collect();
            members.sort_unstable_by(|a, b| a.0.cmp(b.0));
            out.push('{');
            for (i, (k, v)) in members.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                let _ = write!(out, "{}", Value::String(k.clone()));
                out.push(':');
                canonical_json(out, v);
            }
            out.push('}');
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

fn unhex(text: &str) -> Option<[u8; 32]> {
    if text.len() != 64 || !text.is_ascii() {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

#[derive(serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct SavedState {
    format: String,
    version: u64,
    key: String,
    buckets: Vec<SavedBucket>,
    sessions: Vec<SavedSession>,
}

#[derive(serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct SavedBucket {
    bucket: BucketKey,
    uses: Vec<SavedUse>,
}

#[derive(serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct SavedUse {
    decision_id: String,
    time: Timestamp,
    amount: Decimal,
}

#[derive(serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct SavedSession {
    id: String,
    calls: Vec<SessionCall>,
    labels: Vec<SessionLabel>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pruned_seen: Option<Timestamp>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ast::Effect;
    use proptest::prelude::*;
    use serde_json::json;

    fn t(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    fn at(secs: i64) -> Timestamp {
        t("2026-01-01T10:00:00Z") + SignedDuration::from_secs(secs)
    }

    fn bucket(rule: &str, who: &str) -> BucketKey {
        BucketKey {
            rule: rule.into(),
            per: vec![("actor.id".into(), format!("\"{who}\""))],
        }
    }

    fn dec(text: &str) -> Decimal {
        text.parse().unwrap()
    }

    fn use_(id: &str, b: &BucketKey, time: Timestamp, amount: &str) -> StateWrite {
        StateWrite::Use {
            decision_id: id.into(),
            bucket: b.clone(),
            time,
            amount: dec(amount),
        }
    }

    fn call(session: &str, id: &str, action: &str, time: Timestamp) -> StateWrite {
        StateWrite::Call {
            session: session.into(),
            call: SessionCall {
                decision_id: id.into(),
                action: action.into(),
                time,
                effect: Effect::Allow,
                input: json!({"n": id}),
                output: None,
            },
        }
    }

    fn label(session: &str, id: &str, text: &str, time: Timestamp) -> StateWrite {
        StateWrite::Label {
            session: session.into(),
            decision_id: id.into(),
            label: text.into(),
            time,
        }
    }

    fn query<'a>(b: &'a BucketKey, now: Timestamp, room: &str) -> LimitQuery<'a> {
        LimitQuery {
            bucket: b,
            window: SignedDuration::from_hours(1),
            now,
            room: dec(room),
        }
    }

    fn calls_since(state: &MemoryState, session: &str, since: Timestamp) -> Vec<String> {
        let mut out = Vec::new();
        state
            .session_calls(session, since, &mut |c| out.push(c.decision_id.clone()))
            .unwrap();
        out
    }

    #[test]
    fn an_unknown_bucket_has_used_nothing() {
        let state = MemoryState::with_key([0; 32]);
        let b = bucket("r", "a");
        let u = state.limit_use(&query(&b, at(0), "4")).unwrap();
        assert_eq!((u.used, u.retry_after_seconds), (Decimal::ZERO, Some(0)));
        // This call alone is over the limit: no wait helps.
        let u = state.limit_use(&query(&b, at(0), "-1")).unwrap();
        assert_eq!(u.retry_after_seconds, None);
    }

    #[test]
    fn a_use_counts_until_exactly_one_window_later_and_not_after() {
        let mut state = MemoryState::with_key([0; 32]);
        let b = bucket("r", "a");
        state.apply(&[use_("d1", &b, at(0), "1")]);
        let just_inside = at(3600);
        assert_eq!(state.limit_use(&query(&b, just_inside, "5")).unwrap().used, dec("1"));
        let just_outside = just_inside + SignedDuration::from_nanos(1);
        assert_eq!(state.limit_use(&query(&b, just_outside, "5")).unwrap().used, dec("0"));
        // Before its time (a reservation by a concurrent request with a
        // later clock) it counts too.
        assert_eq!(state.limit_use(&query(&b, at(-10), "5")).unwrap().used, dec("1"));
    }

    #[test]
    fn buckets_are_separate() {
        let mut state = MemoryState::with_key([0; 32]);
        let (a, b) = (bucket("r", "a"), bucket("r", "b"));
        state.apply(&[use_("d1", &a, at(0), "1"), use_("d2", &a, at(1), "1")]);
        assert_eq!(state.limit_use(&query(&a, at(2), "5")).unwrap().used, dec("2"));
        assert_eq!(state.limit_use(&query(&b, at(2), "5")).unwrap().used, dec("0"));
        let other_rule = bucket("s", "a");
        assert_eq!(state.limit_use(&query(&other_rule, at(2), "5")).unwrap().used, dec("0"));
    }

    #[test]
    fn sums_are_exact_decimals() {
        let mut state = MemoryState::with_key([0; 32]);
        let b = bucket("budget", "a");
        state.apply(&[use_("d1", &b, at(0), "0.1"), use_("d2", &b, at(1), "0.2")]);
        let u = state.limit_use(&query(&b, at(2), "0.3")).unwrap();
        assert_eq!(u.used, dec("0.3"));
        assert_eq!(u.retry_after_seconds, Some(0));
    }

    #[test]
    fn retry_after_waits_until_enough_old_uses_left() {
        let mut state = MemoryState::with_key([0; 32]);
        let b = bucket("r", "a");
        // Applied out of order: kept in time order all the same.
        state.apply(&[
            use_("d3", &b, at(1200), "1"),
            use_("d1", &b, at(0), "1"),
            use_("d2", &b, at(600), "1"),
        ]);
        // Room 2: one use must leave; the oldest (10:00) leaves right after
        // 11:00:00, i.e. in 3600 s and a fraction: 3601 whole seconds.
        assert_eq!(
            state.limit_use(&query(&b, at(0), "2")).unwrap().retry_after_seconds,
            Some(3601)
        );
        assert_eq!(
            state.limit_use(&query(&b, at(1800), "2")).unwrap().retry_after_seconds,
            Some(1801)
        );
        // Room 1: two must leave, the second at 10:10.
        assert_eq!(
            state.limit_use(&query(&b, at(1800), "1")).unwrap().retry_after_seconds,
            Some(2401)
        );
        // Room 0: all three, the last at 10:20.
        assert_eq!(
            state.limit_use(&query(&b, at(1800), "0")).unwrap().retry_after_seconds,
            Some(3001)
        );
        // A fraction of a second is rounded up.
        let mut state = MemoryState::with_key([0; 32]);
        state.apply(&[use_("d1", &b, at(0) + SignedDuration::from_millis(500), "1")]);
        assert_eq!(
            state.limit_use(&query(&b, at(0), "0")).unwrap().retry_after_seconds,
            Some(3601)
        );
        assert_eq!(
            state.limit_use(&query(&b, at(3600), "0")).unwrap().retry_after_seconds,
            Some(1)
        );
    }

    #[test]
    fn retry_after_of_a_sum_counts_amounts() {
        let mut state = MemoryState::with_key([0; 32]);
        let b = bucket("budget", "a");
        state.apply(&[use_("d1", &b, at(0), "1500"), use_("d2", &b, at(60), "400")]);
        // max 2000, this call 300: room 1700; 1900 used, the first use must
        // leave (then 400 <= 1700).
        let u = state.limit_use(&query(&b, at(120), "1700")).unwrap();
        assert_eq!(u.used, dec("1900"));
        assert_eq!(u.retry_after_seconds, Some(3600 - 120 + 1));
        // Room 100: both must leave.
        let u = state.limit_use(&query(&b, at(120), "100")).unwrap();
        assert_eq!(u.retry_after_seconds, Some(3600 + 60 - 120 + 1));
    }

    #[test]
    fn a_use_too_large_to_add_up_is_an_error_not_a_panic() {
        let mut state = MemoryState::with_key([0; 32]);
        let b = bucket("budget", "a");
        state.apply(&[
            use_("d1", &b, at(0), "70000000000000000000000000000"),
            use_("d2", &b, at(1), "70000000000000000000000000000"),
        ]);
        let e = state.limit_use(&query(&b, at(2), "1")).unwrap_err();
        assert!(e.0.contains("too large to add up"), "{e}");
        let limits = [crate::state::LimitInfo {
            rule: "budget".into(),
            kind: crate::state::LimitKind::Sum,
            max: dec("1"),
            window: SignedDuration::from_hours(1),
        }];
        assert_eq!(state.buckets(at(2), &limits)[0].used, Decimal::MAX);
    }

    #[test]
    fn a_bucket_named_twice_in_a_file_is_merged_in_time_order() {
        let mut v = MemoryState::with_key([1; 32]).to_json().unwrap();
        let b = bucket("r", "a");
        v["buckets"] = json!([
            {"bucket": b, "uses": [{"decision_id": "late", "time": at(600), "amount": "1"}]},
            {"bucket": b, "uses": [{"decision_id": "early", "time": at(0), "amount": "1"}]},
        ]);
        let state = MemoryState::from_json(&v).unwrap();
        assert_eq!(state.len().buckets, 1);
        assert_eq!(
            state.limit_use(&query(&b, at(600), "1")).unwrap().retry_after_seconds,
            Some(3001)
        );
    }

    #[test]
    fn uses_at_the_same_time_leave_together() {
        let mut state = MemoryState::with_key([0; 32]);
        let b = bucket("r", "a");
        state.apply(&[use_("d1", &b, at(0), "1"), use_("d2", &b, at(0), "1")]);
        assert_eq!(
            state.limit_use(&query(&b, at(0), "0")).unwrap().retry_after_seconds,
            Some(3601)
        );
    }

    #[test]
    fn session_calls_come_in_time_order_from_since() {
        let mut state = MemoryState::with_key([0; 32]);
        state.apply(&[
            call("s1", "d2", "read", at(20)),
            call("s1", "d1", "read", at(10)),
            call("s1", "d3", "read", at(30)),
            call("s2", "x", "read", at(15)),
        ]);
        assert_eq!(calls_since(&state, "s1", at(0)), ["d1", "d2", "d3"]);
        // `since` is inclusive.
        assert_eq!(calls_since(&state, "s1", at(20)), ["d2", "d3"]);
        assert_eq!(
            calls_since(&state, "s1", at(20) + SignedDuration::from_nanos(1)),
            ["d3"]
        );
        assert!(calls_since(&state, "nobody", at(0)).is_empty());
    }

    #[test]
    fn labels_are_sorted_without_repeats() {
        let mut state = MemoryState::with_key([0; 32]);
        state.apply(&[
            label("s1", "d1", "secret", at(0)),
            label("s1", "d2", "untrusted", at(1)),
            label("s1", "d3", "secret", at(2)),
        ]);
        assert_eq!(state.session_labels("s1").unwrap(), ["secret", "untrusted"]);
        assert!(state.session_labels("s2").unwrap().is_empty());
        assert!(state.session_has_label("s1", "secret").unwrap());
        assert!(state.session_has_label("s1", "untrusted").unwrap());
        assert!(!state.session_has_label("s1", "secre").unwrap());
        assert!(!state.session_has_label("s2", "secret").unwrap());
    }

    #[test]
    fn an_output_joins_its_call() {
        let mut state = MemoryState::with_key([0; 32]);
        state.apply(&[call("s1", "d1", "pay", at(0))]);
        let output = StateWrite::Output {
            session: "s1".into(),
            decision_id: "d1".into(),
            output: json!({"ok": true}),
        };
        state.apply(std::slice::from_ref(&output));
        assert_eq!(state.session("s1").unwrap().calls[0].output, Some(json!({"ok": true})));
        state.undo(&[output]);
        assert_eq!(state.session("s1").unwrap().calls[0].output, None);
        // An output whose call is not held is dropped, not an error.
        state.apply(&[StateWrite::Output {
            session: "s9".into(),
            decision_id: "d9".into(),
            output: json!(1),
        }]);
        assert!(state.session("s9").is_none());
    }

    #[test]
    fn undo_removes_exactly_the_writes_given() {
        let mut state = MemoryState::with_key([0; 32]);
        let b = bucket("r", "a");
        let earlier = [
            use_("d1", &b, at(0), "1"),
            call("s1", "d1", "read", at(0)),
            label("s1", "d1", "secret", at(0)),
        ];
        let reservation = [
            use_("d2", &b, at(0), "1"),
            call("s1", "d2", "read", at(0)),
            label("s1", "d2", "secret", at(0)),
        ];
        state.apply(&earlier);
        let before = state.len();
        state.apply(&reservation);
        assert_eq!(state.limit_use(&query(&b, at(1), "9")).unwrap().used, dec("2"));
        state.undo(&reservation);
        assert_eq!(state.len(), before);
        assert_eq!(state.limit_use(&query(&b, at(1), "9")).unwrap().used, dec("1"));
        assert_eq!(calls_since(&state, "s1", at(0)), ["d1"]);
        // The label an earlier decision attached stays.
        assert_eq!(state.session_labels("s1").unwrap(), ["secret"]);
        assert_eq!(state.session("s1").unwrap().labels[0].decision_id, "d1");
        // Undoing again finds nothing more to remove.
        state.undo(&reservation);
        assert_eq!(state.len(), before);
        // Undoing everything leaves nothing, not empty buckets or sessions.
        state.undo(&earlier);
        assert_eq!(state.len(), StateSize::default());
        assert!(state.is_empty());
    }

    #[test]
    fn undo_of_a_session_write_recomputes_last_seen() {
        let mut state = MemoryState::with_key([0; 32]);
        state.apply(&[call("s1", "d1", "read", at(0))]);
        let later = [call("s1", "d2", "read", at(50)), label("s1", "d2", "x", at(60))];
        state.apply(&later);
        assert_eq!(state.session("s1").unwrap().last_seen, Some(at(60)));
        state.undo(&later);
        assert_eq!(state.session("s1").unwrap().last_seen, Some(at(0)));
    }

    #[test]
    fn prune_drops_old_uses_and_calls_and_idle_sessions() {
        let mut state = MemoryState::with_key([0; 32]);
        let b = bucket("r", "a");
        let day = SignedDuration::from_hours(24);
        state.apply(&[
            use_("d1", &b, at(0), "1"),
            use_("d2", &b, at(100), "1"),
            call("s1", "d1", "read", at(0)),
            call("s1", "d2", "read", at(100)),
            label("s1", "d1", "secret", at(0)),
            call("s2", "d3", "read", at(0)),
        ]);
        // At exactly one max_window later nothing is old yet.
        assert_eq!(state.prune(at(0) + day, day, day), 0);
        assert_eq!(state.len().uses, 2);
        // One nanosecond later the uses and calls at 10:00 are, and s2
        // (last seen then) is idle: its call and itself go.
        let now = at(0) + day + SignedDuration::from_nanos(1);
        assert_eq!(state.prune(now, day, day), 1 + 1 + 1 + 1);
        assert_eq!(
            state.len(),
            StateSize {
                buckets: 1,
                uses: 1,
                sessions: 1,
                calls: 1,
                labels: 1
            }
        );
        // Labels never expire within a session.
        assert_eq!(state.session_labels("s1").unwrap(), ["secret"]);
        assert_eq!(state.session("s1").unwrap().last_seen, Some(at(100)));
        // Once s1 is idle, it goes with its label.
        let dropped = state.prune(at(100) + day + SignedDuration::from_secs(1), day, day);
        assert_eq!(dropped, 1 + 1 + 1 + 1);
        assert!(state.is_empty());
    }

    #[test]
    fn prune_keeps_one_old_entry_per_label_and_every_recent_one() {
        let mut state = MemoryState::with_key([0; 32]);
        let hour = SignedDuration::from_hours(1);
        let day = SignedDuration::from_hours(24);
        let mut old = Vec::new();
        for i in 0..100 {
            old.push(label("s1", &format!("d{i}"), "secret", at(i)));
        }
        old.push(label("s1", "x", "untrusted", at(50)));
        state.apply(&old);
        let recent = [
            label("s1", "r1", "secret", at(7200)),
            label("s1", "r2", "new", at(7200)),
        ];
        state.apply(&recent);
        // 99 repeated `secret` entries older than the window go.
        assert_eq!(state.prune(at(7200), hour, day), 99);
        let s = state.session("s1").unwrap();
        let kept: Vec<(&str, &str)> = s
            .labels
            .iter()
            .map(|l| (l.label.as_str(), l.decision_id.as_str()))
            .collect();
        assert_eq!(
            kept,
            [("secret", "d0"), ("untrusted", "x"), ("secret", "r1"), ("new", "r2")]
        );
        assert_eq!(state.session_labels("s1").unwrap(), ["new", "secret", "untrusted"]);
        // A fresh reservation can still be undone exactly.
        state.undo(&recent);
        assert_eq!(state.session_labels("s1").unwrap(), ["secret", "untrusted"]);
        assert_eq!(state.prune(at(7200), hour, day), 0);
    }

    #[test]
    fn dropped_labels_still_count_for_last_seen() {
        let mut state = MemoryState::with_key([0; 32]);
        let hour = SignedDuration::from_hours(1);
        state.apply(&[label("s1", "d1", "secret", at(0)), label("s1", "d2", "secret", at(100))]);
        assert_eq!(state.prune(at(7200), hour, SignedDuration::from_hours(24)), 1);
        assert_eq!(state.session("s1").unwrap().last_seen, Some(at(100)));
    }

    #[test]
    fn a_pruned_call_still_counts_for_last_seen() {
        let mut state = MemoryState::with_key([0; 32]);
        let hour = SignedDuration::from_hours(1);
        state.apply(&[call("s1", "d1", "read", at(0))]);
        // A short window drops the call, a long idle time keeps the session.
        state.prune(at(7200), hour, SignedDuration::from_hours(24));
        let s = state.session("s1").unwrap();
        assert!(s.calls.is_empty());
        assert_eq!(s.last_seen, Some(at(0)));
        state.prune(
            at(0) + SignedDuration::from_hours(25),
            hour,
            SignedDuration::from_hours(24),
        );
        assert!(state.session("s1").is_none());
    }

    #[test]
    fn reset_by_rule_bucket_or_all() {
        let mut state = MemoryState::with_key([0; 32]);
        let (ra, rb, sa) = (bucket("r", "a"), bucket("r", "b"), bucket("s", "a"));
        let writes = [
            use_("1", &ra, at(0), "1"),
            use_("2", &ra, at(1), "1"),
            use_("3", &rb, at(0), "1"),
            use_("4", &sa, at(0), "1"),
        ];
        state.apply(&writes);
        assert_eq!(state.reset(None, Some(&ra)), 2);
        assert_eq!(state.limit_use(&query(&ra, at(2), "9")).unwrap().used, dec("0"));
        assert_eq!(state.len().buckets, 2);
        // A rule and a bucket of another rule: nothing.
        assert_eq!(state.reset(Some("s"), Some(&rb)), 0);
        assert_eq!(state.reset(Some("r"), None), 1);
        assert_eq!(state.len().buckets, 1);
        state.apply(&writes);
        assert_eq!(state.reset(None, None), 5);
        assert_eq!(state.len(), StateSize::default());
    }

    #[test]
    fn buckets_list_what_each_limit_used_in_its_window() {
        use crate::state::{LimitInfo, LimitKind};
        let mut state = MemoryState::with_key([0; 32]);
        let (ra, rb, old, gone) = (
            bucket("r", "a"),
            bucket("r", "b"),
            bucket("r", "c"),
            bucket("gone", "a"),
        );
        state.apply(&[
            use_("1", &ra, at(600), "1"),
            use_("2", &ra, at(0), "1"),
            use_("3", &rb, at(1800), "1"),
            use_("4", &old, at(-1), "1"),
            use_("5", &gone, at(0), "1"),
        ]);
        let limits = [LimitInfo {
            rule: "r".into(),
            kind: LimitKind::Count,
            max: dec("5"),
            window: SignedDuration::from_hours(1),
        }];
        let listed = state.buckets(at(3600), &limits);
        // `c`'s only use left the window; `gone` is no limit of the policy.
        assert_eq!(
            listed.iter().map(|b| b.bucket.clone()).collect::<Vec<_>>(),
            [ra.clone(), rb.clone()]
        );
        assert_eq!(listed[0].used, dec("2"));
        assert_eq!(listed[0].max, dec("5"));
        assert_eq!(listed[0].rule, "r");
        assert_eq!(listed[0].window, SignedDuration::from_hours(1));
        assert_eq!(listed[0].next_free, Some(at(3600) + SignedDuration::from_nanos(1)));
        assert_eq!(listed[1].next_free, Some(at(5400) + SignedDuration::from_nanos(1)));
        assert!(state.buckets(at(3600), &[]).is_empty());
    }

    #[test]
    fn session_snapshot_shows_calls_labels_and_last_seen() {
        let mut state = MemoryState::with_key([0; 32]);
        state.apply(&[
            call("s1", "d2", "read", at(20)),
            call("s1", "d1", "read", at(10)),
            label("s1", "d1", "secret", at(10)),
        ]);
        let s = state.session("s1").unwrap();
        assert_eq!(s.id, "s1");
        assert_eq!(
            s.calls.iter().map(|c| c.decision_id.as_str()).collect::<Vec<_>>(),
            ["d1", "d2"]
        );
        assert_eq!(
            s.labels,
            [SessionLabel {
                label: "secret".into(),
                decision_id: "d1".into(),
                time: at(10)
            }]
        );
        assert_eq!(s.last_seen, Some(at(20)));
        assert!(state.session("s2").is_none());
    }

    #[test]
    fn keyed_hash_is_blake3_of_canonical_json() {
        let key = [3u8; 32];
        let state = MemoryState::with_key(key);
        let h = state.keyed_hash(&json!({"b": [true, null, 1.5], "a": "x"}));
        let expected = blake3::keyed_hash(&key, br#"{"a":"x","b":[true,null,1.5]}"#);
        assert_eq!(h, format!("blake3:{}", expected.to_hex()));
        // Key order does not matter; the key and the value do.
        assert_eq!(h, state.keyed_hash(&json!({"a": "x", "b": [true, null, 1.5]})));
        assert_ne!(
            h,
            MemoryState::with_key([4; 32]).keyed_hash(&json!({"a": "x", "b": [true, null, 1.5]}))
        );
        assert_ne!(state.keyed_hash(&json!("1")), state.keyed_hash(&json!(1)));
        // Strings are escaped as JSON, so no two values share a text.
        assert_eq!(
            state.keyed_hash(&json!({"k\"": "a\nb"})),
            format!("blake3:{}", blake3::keyed_hash(&key, br#"{"k\"":"a\nb"}"#).to_hex())
        );
    }

    #[test]
    fn a_custom_hasher_is_used_and_cannot_be_saved() {
        let state = MemoryState::new(Arc::new(|v| format!("h:{v}")));
        assert_eq!(state.keyed_hash(&json!(1)), "h:1");
        let e = state.to_json().unwrap_err();
        assert!(e.0.contains("key cannot be saved"), "{e}");
    }

    #[test]
    fn debug_does_not_show_the_key() {
        let state = MemoryState::with_key([0xab; 32]);
        let shown = format!("{state:?}");
        assert!(!shown.contains("abab") && !shown.contains("171"), "{shown}");
    }

    fn sample() -> MemoryState {
        let mut state = MemoryState::with_key([9; 32]);
        let b = bucket("budget", "a");
        state.apply(&[
            use_("d1", &b, at(0), "0.1"),
            use_("d2", &b, at(5), "1500.25"),
            call("s1", "d1", "read", at(0)),
            label("s1", "d1", "secret", at(0)),
            StateWrite::Output {
                session: "s1".into(),
                decision_id: "d1".into(),
                output: json!({"text": "hello"}),
            },
        ]);
        state
    }

    #[test]
    fn json_round_trip_keeps_everything_and_the_key() {
        let state = sample();
        let json = state.to_json().unwrap();
        assert_eq!(json["version"], 1);
        assert_eq!(json["format"], "rein-state");
        assert_eq!(json["key"], "09".repeat(32));
        // Through text, as `rein check --state FILE` does.
        let text = serde_json::to_string(&json).unwrap();
        let back = MemoryState::from_json(&serde_json::from_str(&text).unwrap()).unwrap();
        assert_eq!(back.len(), state.len());
        assert_eq!(back.session("s1"), state.session("s1"));
        let b = bucket("budget", "a");
        assert_eq!(back.limit_use(&query(&b, at(6), "0")).unwrap().used, dec("1500.35"));
        assert_eq!(back.keyed_hash(&json!("x")), state.keyed_hash(&json!("x")));
        assert_eq!(back.to_json().unwrap(), json);
    }

    #[test]
    fn from_json_refuses_what_it_cannot_read_with_the_reason() {
        let good = sample().to_json().unwrap();
        let refused = |edit: &dyn Fn(&mut serde_json::Value), want: &str| {
            let mut v = good.clone();
            edit(&mut v);
            let e = MemoryState::from_json(&v).unwrap_err().to_string();
            assert!(e.contains(want), "{e} (wanted `{want}`)");
        };
        refused(&|v| v["version"] = json!(2), "version 2 is not supported");
        refused(&|v| v["version"] = json!("1"), "no numeric `version`");
        refused(&|v| v["format"] = json!("other"), "not a Rein state file");
        refused(&|v| *v = json!([1, 2]), "not a Rein state file");
        refused(&|v| v["key"] = json!("abc"), "64 hexadecimal digits");
        refused(&|v| v["key"] = json!("zz".repeat(32)), "64 hexadecimal digits");
        refused(&|v| v["key"] = json!("é".repeat(32)), "64 hexadecimal digits");
        refused(&|v| v["extra"] = json!(1), "malformed state file");
        refused(&|v| v["buckets"][0]["uses"][0]["amount"] = json!("x"), "malformed");
        refused(&|v| v["buckets"][0]["uses"][0]["amount"] = json!("-1"), "negative use");
        refused(
            &|v| v["sessions"][0]["calls"][0]["time"] = json!("yesterday"),
            "malformed",
        );
    }

    #[test]
    fn from_json_sorts_what_the_file_holds_out_of_order() {
        let mut v = MemoryState::with_key([1; 32]).to_json().unwrap();
        let b = bucket("r", "a");
        v["buckets"] = json!([{"bucket": b, "uses": [
            {"decision_id": "late", "time": at(600), "amount": "1"},
            {"decision_id": "early", "time": at(0), "amount": "1"},
        ]}]);
        let state = MemoryState::from_json(&v).unwrap();
        assert_eq!(
            state.limit_use(&query(&b, at(600), "1")).unwrap().retry_after_seconds,
            Some(3001)
        );
    }

    // The property test: random writes, applied in random order, then a
    // random subset undone, give the reads of a naive model holding only
    // the writes not undone.

    #[derive(Clone, Debug)]
    struct Model {
        writes: Vec<StateWrite>,
    }

    impl Model {
        fn used(&self, b: &BucketKey, start: Timestamp) -> Decimal {
            self.writes
                .iter()
                .filter_map(|w| match w {
                    StateWrite::Use {
                        bucket, time, amount, ..
                    } if bucket == b && *time >= start => Some(*amount),
                    _ => None,
                })
                .sum()
        }

        fn labels(&self, session: &str) -> Vec<String> {
            let mut out: Vec<String> = self
                .writes
                .iter()
                .filter_map(|w| match w {
                    StateWrite::Label { session: s, label, .. } if s == session => Some(label.clone()),
                    _ => None,
                })
                .collect();
            out.sort();
            out.dedup();
            out
        }

        fn calls(&self, session: &str, since: Timestamp) -> Vec<(String, Option<serde_json::Value>)> {
            let mut calls: Vec<&SessionCall> = self
                .writes
                .iter()
                .filter_map(|w| match w {
                    StateWrite::Call { session: s, call } if s == session && call.time >= since => Some(call),
                    _ => None,
                })
                .collect();
            // Stable: equal times keep the order they were applied in.
            calls.sort_by_key(|c| c.time);
            calls
                .into_iter()
                .map(|c| {
                    let output = self.writes.iter().find_map(|w| match w {
                        StateWrite::Output {
                            session: s,
                            decision_id,
                            output,
                        } if s == session && *decision_id == c.decision_id => Some(output.clone()),
                        _ => None,
                    });
                    (c.decision_id.clone(), output)
                })
                .collect()
        }
    }

    /// One decision's writes: uses, maybe a call, labels, maybe an output.
    fn decision_writes() -> impl Strategy<Value = (String, Vec<StateWrite>)> {
        (
            0..1_000_000u32,
            0i64..7200,
            prop::collection::vec((0..3usize, 0u32..500), 0..3),
            0..3usize,
            any::<bool>(),
            prop::collection::vec(0..3usize, 0..2),
            any::<bool>(),
        )
            .prop_map(|(id, secs, uses, session, has_call, labels, has_output)| {
                let id = format!("d{id}");
                let time = at(secs);
                let session = format!("s{session}");
                let mut out: Vec<StateWrite> = uses
                    .into_iter()
                    .enumerate()
                    // One use per bucket and decision, as a policy gives.
                    .map(|(i, (who, cents))| {
                        use_(
                            &id,
                            &bucket(&format!("r{i}"), &format!("a{who}")),
                            time,
                            &format!("{cents}.05"),
                        )
                    })
                    .collect();
                if has_call {
                    out.push(call(&session, &id, "act", time));
                    if has_output {
                        out.push(StateWrite::Output {
                            session: session.clone(),
                            decision_id: id.clone(),
                            output: json!({"of": id}),
                        });
                    }
                }
                for l in labels {
                    out.push(label(&session, &id, &format!("l{l}"), time));
                }
                (id, out)
            })
    }

    proptest! {
        #[test]
        fn undo_matches_a_model(
            decisions in prop::collection::vec((decision_writes(), any::<bool>()), 0..25),
            now_secs in 0i64..9000,
            window_secs in 1i64..7200,
            room in 0u32..2000,
        ) {
            // Decision ids are unique, as the runtime's are.
            let mut seen = std::collections::HashSet::new();
            let decisions: Vec<_> = decisions
                .into_iter()
                .filter(|((id, _), _)| seen.insert(id.clone()))
                .map(|((_, writes), undone)| (writes, undone))
                .collect();
            let mut state = MemoryState::with_key([5; 32]);
            let mut model = Model { writes: Vec::new() };
            for (writes, _) in &decisions {
                state.apply(writes);
            }
            for (writes, undone) in &decisions {
                if *undone {
                    state.undo(writes);
                } else {
                    model.writes.extend(writes.iter().cloned());
                }
            }
            let now = at(now_secs);
            let window = SignedDuration::from_secs(window_secs);
            let start = now - window;
            for rule in 0..3 {
                for who in 0..3 {
                    let b = bucket(&format!("r{rule}"), &format!("a{who}"));
                    let q = LimitQuery { bucket: &b, window, now, room: Decimal::from(room) };
                    let u = state.limit_use(&q).unwrap();
                    prop_assert_eq!(u.used, model.used(&b, start));
                    // The retry time is when the model's use fits the room.
                    match u.retry_after_seconds {
                        Some(0) => prop_assert!(u.used <= q.room),
                        Some(s) => {
                            let then = now + SignedDuration::from_secs(s as i64);
                            prop_assert!(model.used(&b, then - window) <= q.room);
                            let before = now + SignedDuration::from_secs(s as i64 - 1);
                            prop_assert!(model.used(&b, before - window) > q.room);
                        }
                        None => prop_assert!(false, "room is not negative"),
                    }
                }
            }
            for session in 0..3 {
                let s = format!("s{session}");
                prop_assert_eq!(state.session_labels(&s).unwrap(), model.labels(&s));
                for l in 0..3 {
                    let label = format!("l{l}");
                    prop_assert_eq!(state.session_has_label(&s, &label).unwrap(), model.labels(&s).contains(&label));
                }
                let mut got = Vec::new();
                state.session_calls(&s, start, &mut |c| got.push((c.decision_id.clone(), c.output.clone()))).unwrap();
                prop_assert_eq!(got, model.calls(&s, start));
            }
            let model_uses = model.writes.iter().filter(|w| matches!(w, StateWrite::Use { .. })).count();
            prop_assert_eq!(state.len().uses, model_uses);
            // What is saved reads back the same.
            let back = MemoryState::from_json(&state.to_json().unwrap()).unwrap();
            prop_assert_eq!(back.len(), state.len());
            // Pruning with this window as the longest never changes what a
            // decision at `now` reads (nor when a session was last seen).
            let mut pruned = state.clone();
            pruned.prune(now, window, SignedDuration::from_hours(1000));
            for rule in 0..3 {
                for who in 0..3 {
                    let b = bucket(&format!("r{rule}"), &format!("a{who}"));
                    let q = LimitQuery { bucket: &b, window, now, room: Decimal::from(room) };
                    prop_assert_eq!(pruned.limit_use(&q).unwrap(), state.limit_use(&q).unwrap());
                }
            }
            for session in 0..3 {
                let s = format!("s{session}");
                prop_assert_eq!(pruned.session_labels(&s).unwrap(), state.session_labels(&s).unwrap());
                prop_assert_eq!(calls_since(&pruned, &s, start), calls_since(&state, &s, start));
                prop_assert_eq!(
                    pruned.session(&s).map(|x| x.last_seen),
                    state.session(&s).map(|x| x.last_seen)
                );
            }
        }
    }
}
