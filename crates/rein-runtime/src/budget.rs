//! How much memory the state mirror holds, so that it stays bounded.
//!
//! The mirror keeps what requests send: recorded calls hold their input
//! and output (up to a request body each), buckets are named by request
//! values, sessions by the request's session id. An agent that sends many
//! large recorded calls, or many sessions, must not be able to grow the
//! server's memory without bound; at the bound a decision that would add
//! to the state is refused (`block`, with why), and nothing held is
//! evicted: forgetting a session's label or a limit's use would loosen a
//! rule.
//!
//! The ledger follows the mirror write by write (apply, undo, prune) with
//! the size of each entry, estimated from its values: strings by their
//! length, every node and entry by a fixed overhead. It never counts less
//! than the mirror holds: what it cannot follow exactly (a reset of
//! limits) stays counted until it leaves its window.

use jiff::{SignedDuration, Timestamp};
use rein_engine::state::StateWrite;
use std::collections::{BTreeMap, HashMap};

/// Bytes counted for an entry besides its values (map slots, vectors,
/// timestamps, the decision id).
const ENTRY_OVERHEAD: usize = 128;

/// Bytes counted for a JSON node besides its text.
const NODE_OVERHEAD: usize = 16;

/// An estimate of the memory `value` takes.
pub(crate) fn json_bytes(value: &serde_json::Value) -> usize {
    use serde_json::Value;
    NODE_OVERHEAD
        + match value {
            Value::Null | Value::Bool(_) | Value::Number(_) => 0,
            Value::String(s) => s.len(),
            Value::Array(items) => items.iter().map(json_bytes).sum(),
            Value::Object(map) => map.iter().map(|(k, v)| k.len() + json_bytes(v)).sum(),
        }
}

/// A recorded call, as the ledger follows it.
struct CallEntry {
    time: Timestamp,
    decision_id: String,
    bytes: usize,
    /// The bytes of its output, once applied.
    output: usize,
}

#[derive(Default)]
struct SessionEntry {
    /// The latest time of any write applied (not lowered by an undo: the
    /// ledger then drops the session later than the mirror, never sooner).
    last_seen: Option<Timestamp>,
    calls: Vec<CallEntry>,
    /// The bytes of its labels and of its own entry.
    fixed: usize,
}

impl SessionEntry {
    fn bytes(&self) -> usize {
        self.fixed + self.calls.iter().map(|c| c.bytes + c.output).sum::<usize>()
    }
}

/// The ledger of what the mirror holds; see the [module documentation](self).
#[derive(Default)]
pub(crate) struct Ledger {
    sessions: HashMap<String, SessionEntry>,
    /// Bytes of limit uses by time (for pruning by window).
    uses: BTreeMap<Timestamp, usize>,
    total: usize,
}

impl Ledger {
    /// The bytes counted.
    pub(crate) fn total(&self) -> usize {
        self.total
    }

    /// The bytes `writes` add when applied (an estimate, as the ledger
    /// counts them).
    pub(crate) fn cost(writes: &[StateWrite]) -> usize {
        writes.iter().map(write_bytes).sum()
    }

    pub(crate) fn apply(&mut self, writes: &[StateWrite]) {
        for w in writes {
            let bytes = write_bytes(w);
            match w {
                StateWrite::Use { time, .. } => {
                    *self.uses.entry(*time).or_default() += bytes;
                }
                StateWrite::Call { session, call } => {
                    self.touch(session, call.time);
                    if let Some(s) = self.sessions.get_mut(session.as_str()) {
                        s.calls.push(CallEntry {
                            time: call.time,
                            decision_id: call.decision_id.clone(),
                            bytes,
                            output: 0,
                        });
                    }
                }
                StateWrite::Output {
                    session, decision_id, ..
                } => {
                    // As the mirror: an output of a call not held is dropped.
                    let Some(call) = self
                        .sessions
                        .get_mut(session)
                        .and_then(|s| s.calls.iter_mut().rev().find(|c| &c.decision_id == decision_id))
                    else {
                        continue;
                    };
                    // Replacing an output: the old one's bytes go.
                    self.total -= call.output;
                    call.output = bytes;
                }
                StateWrite::Label { session, time, .. } => {
                    self.touch(session, *time);
                    if let Some(s) = self.sessions.get_mut(session.as_str()) {
                        s.fixed += bytes;
                    }
                }
            }
            self.total += bytes;
        }
    }

    /// Makes the entry of `session` if new (a known one is found without
    /// allocating its key), and sees it at `time`.
    fn touch(&mut self, session: &str, time: Timestamp) {
        if !self.sessions.contains_key(session) {
            self.total += ENTRY_OVERHEAD + session.len();
            self.sessions.insert(
                session.to_string(),
                SessionEntry {
                    fixed: ENTRY_OVERHEAD + session.len(),
                    ..SessionEntry::default()
                },
            );
        }
        if let Some(s) = self.sessions.get_mut(session) {
            s.last_seen = Some(s.last_seen.map_or(time, |t| t.max(time)));
        }
    }

    pub(crate) fn undo(&mut self, writes: &[StateWrite]) {
        for w in writes {
            let bytes = write_bytes(w);
            let taken = match w {
                StateWrite::Use { time, .. } => match self.uses.get_mut(time) {
                    Some(held) if *held >= bytes => {
                        *held -= bytes;
                        if *held == 0 {
                            self.uses.remove(time);
                        }
                        bytes
                    }
                    _ => 0,
                },
                StateWrite::Call { session, call } => self
                    .sessions
                    .get_mut(session)
                    .and_then(|s| {
                        let i = s
                            .calls
                            .iter()
                            .rposition(|c| c.decision_id == call.decision_id && c.time == call.time)?;
                        let c = s.calls.remove(i);
                        Some(c.bytes + c.output)
                    })
                    .unwrap_or(0),
                StateWrite::Output {
                    session, decision_id, ..
                } => self
                    .sessions
                    .get_mut(session)
                    .and_then(|s| s.calls.iter_mut().rev().find(|c| &c.decision_id == decision_id))
                    .map(|c| std::mem::take(&mut c.output))
                    .unwrap_or(0),
                StateWrite::Label { session, .. } => match self.sessions.get_mut(session) {
                    Some(s) if s.fixed >= bytes => {
                        s.fixed -= bytes;
                        bytes
                    }
                    _ => 0,
                },
            };
            self.total -= taken;
        }
    }

    /// Drops what the mirror's prune at the same bounds drops: uses and
    /// calls older than `now - max_window`, sessions idle longer than
    /// `session_idle`.
    pub(crate) fn prune(&mut self, now: Timestamp, max_window: SignedDuration, session_idle: SignedDuration) {
        let window_start = now.saturating_sub(max_window).unwrap_or(Timestamp::MIN);
        let idle_start = now.saturating_sub(session_idle).unwrap_or(Timestamp::MIN);
        let kept = self.uses.split_off(&window_start);
        let old = std::mem::replace(&mut self.uses, kept);
        let mut dropped: usize = old.values().sum();
        self.sessions.retain(|_, s| {
            if s.last_seen.is_none_or(|t| t < idle_start) {
                dropped += s.bytes();
                return false;
            }
            s.calls.retain(|c| {
                let keep = c.time >= window_start;
                if !keep {
                    dropped += c.bytes + c.output;
                }
                keep
            });
            true
        });
        self.total -= dropped.min(self.total);
    }
}

/// The bytes one write adds.
fn write_bytes(w: &StateWrite) -> usize {
    ENTRY_OVERHEAD
        + match w {
            StateWrite::Use { bucket, .. } => {
                bucket.rule.len() + bucket.per.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>()
            }
            StateWrite::Call { call, .. } => call.action.len() + json_bytes(&call.input),
            StateWrite::Output { output, .. } => json_bytes(output),
            StateWrite::Label { label, .. } => label.len(),
        }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use rein_engine::state::{BucketKey, Decimal, SessionCall};
    use rein_engine::Effect;

    fn writes(id: &str, session: &str, time: Timestamp) -> Vec<StateWrite> {
        vec![
            StateWrite::Use {
                decision_id: id.into(),
                bucket: BucketKey {
                    rule: "r".into(),
                    per: vec![("actor.id".into(), "\"bot\"".into())],
                },
                time,
                amount: Decimal::ONE,
            },
            StateWrite::Call {
                session: session.into(),
                call: SessionCall {
                    decision_id: id.into(),
                    action: "note".into(),
                    time,
                    effect: Effect::Allow,
                    input: serde_json::json!({"text": "x".repeat(1000)}),
                    output: None,
                },
            },
            StateWrite::Output {
                session: session.into(),
                decision_id: id.into(),
                output: serde_json::json!({"n": 1}),
            },
            StateWrite::Label {
                session: session.into(),
                decision_id: id.into(),
                label: "secret".into(),
                time,
            },
        ]
    }

    #[test]
    fn undo_and_prune_give_back_what_apply_counted() {
        let t0: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let mut ledger = Ledger::default();
        let a = writes("d1", "s1", t0);
        let b = writes("d2", "s2", t0.checked_add(SignedDuration::from_hours(2)).unwrap());
        ledger.apply(&a);
        let one_session = ENTRY_OVERHEAD + 2;
        assert_eq!(ledger.total(), Ledger::cost(&a) + one_session);
        assert!(ledger.total() > 1000);
        ledger.apply(&b);
        ledger.undo(&b);
        // The session's own entry stays counted until it expires.
        assert_eq!(ledger.total(), Ledger::cost(&a) + 2 * one_session);
        ledger.apply(&b);
        // Three hours on, a window of one hour: d1's use and call go; both
        // sessions are still active (idle time one day).
        let now = t0.checked_add(SignedDuration::from_hours(3)).unwrap();
        ledger.prune(now, SignedDuration::from_hours(1), SignedDuration::from_hours(24));
        assert!(ledger.total() >= Ledger::cost(&b) + 2 * one_session);
        assert!(ledger.total() < Ledger::cost(&a) + Ledger::cost(&b));
        let much_later = t0.checked_add(SignedDuration::from_hours(100)).unwrap();
        ledger.prune(
            much_later,
            SignedDuration::from_hours(1),
            SignedDuration::from_hours(24),
        );
        assert_eq!(ledger.total(), 0);
    }
}
