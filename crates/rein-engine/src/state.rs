//! State a decision reads and writes, kept outside the engine: limit
//! buckets (what earlier allowed calls used) and sessions (earlier calls,
//! labels).
//!
//! The engine stays free of I/O. A policy lists at compile time what each
//! action's rules need; a decision reads exactly that through a
//! [`StateView`] and returns the [`StateEffects`] it would have if it is
//! finally allowed. Whoever keeps the state (the runtime, over an in-memory
//! mirror persisted by the store; or a library user with
//! [`MemoryState`](crate::MemoryState)) makes the read, the decision and the
//! write atomic, and applies the writes ([`StateWrite`]) once the final
//! effect is known (after an approval is used, and only if the audit
//! record is written).

use crate::ast::Effect;
use jiff::{SignedDuration, Timestamp};
pub use rust_decimal::Decimal;

/// A limit's bucket: the rule that carries the limit and the values of
/// its `per` keys, in the order the rule lists them.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub struct BucketKey {
    /// The rule's id.
    pub rule: String,
    /// Each `per` key: its expression as written and its value as
    /// canonical JSON text (`"bot-1"`, `42`). Empty for one global bucket.
    pub per: Vec<(String, String)>,
}

impl BucketKey {
    /// One string naming the bucket, stable across versions (the store's
    /// key): the JSON array `[rule, [[expr, value], …]]`.
    pub fn id(&self) -> String {
        serde_json::to_string(&(&self.rule, &self.per)).unwrap_or_default()
    }

    /// Reads back [`BucketKey::id`].
    pub fn from_id(id: &str) -> Option<BucketKey> {
        let (rule, per): (String, Vec<(String, String)>) = serde_json::from_str(id).ok()?;
        Some(BucketKey { rule, per })
    }

    /// `actor.id=bot-1, input.customer_id=c-7` (values as JSON text, strings
    /// unquoted), or `all` for a global bucket: what reasons and listings
    /// show.
    pub fn describe(&self) -> String {
        if self.per.is_empty() {
            return "all".into();
        }
        self.per
            .iter()
            .map(|(expr, value)| {
                let shown = serde_json::from_str::<String>(value).unwrap_or_else(|_| value.clone());
                format!("{expr}={shown}")
            })
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// What a limit asks of the state.
#[derive(Clone, Debug)]
pub struct LimitQuery<'a> {
    /// The bucket.
    pub bucket: &'a BucketKey,
    /// The sliding window: uses at or after `now - window` count.
    pub window: SignedDuration,
    /// The decision's time.
    pub now: Timestamp,
    /// The most the bucket may hold before this call (`max - cost`), for
    /// [`LimitUse::retry_after_seconds`]; negative when this call alone is
    /// over the limit.
    pub room: Decimal,
}

/// What a bucket has used in a window.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LimitUse {
    /// Sum of the amounts used in the window (count limits use 1 per call).
    pub used: Decimal,
    /// Whole seconds (rounded up) until enough uses leave the window that
    /// `used <= room`; `Some(0)` if that holds now; `None` if it never will
    /// (the room is negative).
    pub retry_after_seconds: Option<u64>,
}

/// One earlier call of a session, as the state keeps it. Input and output
/// are the engine's rendering of the typed values
/// ([`crate::Prepared::input_json`]), with each sensitive field replaced by
/// its keyed hash ([`StateView::keyed_hash`] of the rendered value).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SessionCall {
    /// The decision that recorded it.
    pub decision_id: String,
    /// The action's name.
    pub action: String,
    /// When it was decided.
    pub time: Timestamp,
    /// Its final effect (after approvals).
    pub effect: Effect,
    /// Its input.
    pub input: serde_json::Value,
    /// Its output, once reported and let through by the `after` rules.
    pub output: Option<serde_json::Value>,
}

/// Why state could not be read or written. A decision that meets one is
/// `block`, with this as its reason.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("state: {0}")]
pub struct StateError(pub String);

/// What a decision may read of the state. Implementations answer from what
/// they hold; the caller makes read, decision and write atomic.
pub trait StateView {
    /// The use of one limit bucket in its window.
    fn limit_use(&self, query: &LimitQuery<'_>) -> Result<LimitUse, StateError>;

    /// The labels attached to `session` so far (an unknown session has
    /// none), sorted, without repeats.
    fn session_labels(&self, session: &str) -> Result<Vec<String>, StateError>;

    /// Whether `session` has `label` (what `"x" in session.labels` asks).
    /// The default looks through [`StateView::session_labels`]; a state
    /// can answer without copying the labels.
    fn session_has_label(&self, session: &str, label: &str) -> Result<bool, StateError> {
        Ok(self.session_labels(session)?.iter().any(|l| l == label))
    }

    /// Calls `f` with each call of `session` decided at or after `since`,
    /// oldest first (an unknown session has none).
    fn session_calls(&self, session: &str, since: Timestamp, f: &mut dyn FnMut(&SessionCall))
        -> Result<(), StateError>;

    /// The keyed hash a sensitive field is stored as, of a value rendered
    /// as JSON: what a sensitive field of an earlier call is compared with.
    fn keyed_hash(&self, value: &serde_json::Value) -> String;
}

/// One limit unit use a decision takes if it is finally allowed.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Consumption {
    /// The bucket.
    pub bucket: BucketKey,
    /// 1 for a count limit, the value of the `sum` expression otherwise.
    pub amount: Decimal,
}

/// What a decision writes to the state, depending on its final effect.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct StateEffects {
    /// The session the request named, if any.
    pub session: Option<String>,
    /// Units taken if the call is finally allowed.
    pub consume: Vec<Consumption>,
    /// Labels the session gets if the decision is finally `allow`.
    pub labels: Vec<String>,
    /// The call as the session keeps it, if some rule of the policy reads
    /// this action's calls (`session.count`, `session.sum`,
    /// `session.calls`) and the request has a session. Its `effect` is set
    /// by [`StateEffects::writes`]; its `decision_id` by the caller.
    pub call: Option<SessionCall>,
    /// For an `after` decision: the output as the session keeps it
    /// (rendered, sensitive fields hashed), recorded if it is let through.
    pub output: Option<serde_json::Value>,
}

impl StateEffects {
    /// True when the decision writes nothing whatever its effect.
    pub fn is_empty(&self) -> bool {
        self.consume.is_empty() && self.labels.is_empty() && self.call.is_none() && self.output.is_none()
    }

    /// The writes of a `before` or `after` decision `decision_id` whose
    /// final effect is `effect`, at `time`: the call is always recorded
    /// (a loop guard must see refused retries), units and labels only when
    /// allowed, an output only when let through.
    pub fn writes(&self, decision_id: &str, effect: Effect, time: Timestamp) -> Vec<StateWrite> {
        let mut out = Vec::new();
        let allowed = effect == Effect::Allow;
        if allowed {
            for c in &self.consume {
                out.push(StateWrite::Use {
                    decision_id: decision_id.to_string(),
                    bucket: c.bucket.clone(),
                    time,
                    amount: c.amount,
                });
            }
        }
        let Some(session) = &self.session else {
            return out;
        };
        if let Some(call) = &self.call {
            let mut call = call.clone();
            call.decision_id = decision_id.to_string();
            call.effect = effect;
            call.time = time;
            out.push(StateWrite::Call {
                session: session.clone(),
                call,
            });
        }
        if allowed {
            if let Some(output) = &self.output {
                out.push(StateWrite::Output {
                    session: session.clone(),
                    decision_id: decision_id.to_string(),
                    output: output.clone(),
                });
            }
            for label in &self.labels {
                out.push(StateWrite::Label {
                    session: session.clone(),
                    decision_id: decision_id.to_string(),
                    label: label.clone(),
                    time,
                });
            }
        }
        out
    }
}

/// One change to the state: what the store persists (in the transaction
/// of the decision's audit record) and a mirror applies. Every write names
/// the decision it belongs to, so that a decision's writes can be undone
/// together (a reservation whose approval or audit write failed).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum StateWrite {
    /// A limit bucket used `amount` at `time`.
    Use {
        /// The decision.
        decision_id: String,
        /// The bucket.
        bucket: BucketKey,
        /// When.
        time: Timestamp,
        /// How much (exact decimal).
        amount: Decimal,
    },
    /// A call joins a session's history.
    Call {
        /// The session.
        session: String,
        /// The call (its `decision_id` names the decision).
        call: SessionCall,
    },
    /// The output of an earlier call of the session, let through by the
    /// `after` rules.
    Output {
        /// The session.
        session: String,
        /// The decision of the call (the `before` decision's id).
        decision_id: String,
        /// The output, rendered, sensitive fields hashed.
        output: serde_json::Value,
    },
    /// A label attached to a session.
    Label {
        /// The session.
        session: String,
        /// The decision whose rule attached it.
        decision_id: String,
        /// The label.
        label: String,
        /// When.
        time: Timestamp,
    },
}

/// What one action's rules need of the state in one phase
/// ([`crate::Policy::action_state`]). An action with neither decides
/// exactly as a stateless policy does.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ActionState {
    /// Its rules read the state: a limit, or a session fact
    /// (`session.id`, `session.labels`, `session.count`, `session.sum`,
    /// `session.calls`).
    pub reads: bool,
    /// Its decisions write to the state: limit units, the call or its
    /// output recorded in the session, or session labels.
    pub writes: bool,
}

impl ActionState {
    /// True when the decision reads or writes state, so it must be made
    /// with [`crate::Prepared::decide_with_state`].
    pub fn any(&self) -> bool {
        self.reads || self.writes
    }
}

/// What a limit counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LimitKind {
    /// At most `max` matching calls (`count: N`).
    Count,
    /// At most `max` as the sum of an input field (`sum:` with `max:`).
    Sum,
}

/// One limit of a policy, for listings ([`crate::Policy::limits`]).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LimitInfo {
    /// The rule that carries it.
    pub rule: String,
    /// Count or sum.
    pub kind: LimitKind,
    /// The most a bucket may use in the window (exact).
    pub max: Decimal,
    /// The sliding window.
    pub window: SignedDuration,
}
