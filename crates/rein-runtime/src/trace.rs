//! A caller's W3C trace context and what the runtime notes of a decision
//! for tracing, without any tracing library: the server (or any surface)
//! runs a decision inside [`scope`] with the caller's validated
//! `traceparent`, which the audit record keeps ([`AuditEntry::trace`]),
//! and, when it exports traces, a [`SpanLog`] the runtime fills with the
//! times of each step (contract check, rules, state, audit append). The
//! exporter builds the spans from them afterwards.
//!
//! Outside a scope (the default: no `traceparent`, no exporter) a decision
//! reads one task-local and allocates nothing for this.
//!
//! [`AuditEntry::trace`]: rein_store::AuditEntry::trace

use rein_engine::Effect;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

/// Length of a version-`00` `traceparent`: `00-` + 32 + `-` + 16 + `-` + 2.
pub const TRACEPARENT_LEN: usize = 55;

/// A validated W3C `traceparent` (version `00`), in its lowercase text form.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TraceParent(String);

impl TraceParent {
    /// Reads a `traceparent` header value as the W3C Trace Context says a
    /// version-`00` one is written: `00-<trace id: 32 hex>-<parent id: 16
    /// hex>-<flags: 2 hex>`, the ids not all zeros, lowercase. Anything else
    /// is `None` (the caller ignores it, as the specification asks): an
    /// uppercase digit, another version, surrounding text. Bounded: the
    /// value is looked at only if it has the exact length.
    pub fn parse(value: &[u8]) -> Option<TraceParent> {
        if value.len() != TRACEPARENT_LEN || !value.starts_with(b"00-") || value[35] != b'-' || value[52] != b'-' {
            return None;
        }
        let hex = |part: &[u8]| part.iter().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        let (trace_id, parent_id, flags) = (&value[3..35], &value[36..52], &value[53..55]);
        if !hex(trace_id) || !hex(parent_id) || !hex(flags) {
            return None;
        }
        if trace_id.iter().all(|&b| b == b'0') || parent_id.iter().all(|&b| b == b'0') {
            return None;
        }
        // Only ASCII hex digits and dashes remain: valid UTF-8.
        std::str::from_utf8(value).ok().map(|s| TraceParent(s.to_string()))
    }

    /// The header's text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The trace id (32 lowercase hex digits).
    pub fn trace_id(&self) -> &str {
        &self.0[3..35]
    }

    /// The caller's span id (16 lowercase hex digits).
    pub fn parent_id(&self) -> &str {
        &self.0[36..52]
    }

    /// The trace flags (bit 0: sampled).
    pub fn flags(&self) -> u8 {
        u8::from_str_radix(&self.0[53..55], 16).unwrap_or(0)
    }

    /// The text form.
    pub fn into_string(self) -> String {
        self.0
    }
}

/// Whether `id` is a trace id as [`TraceParent::trace_id`] gives it (what
/// an audit query filters by): 32 lowercase hex digits, not all zeros.
pub fn is_trace_id(id: &str) -> bool {
    id.len() == 32 && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) && id.bytes().any(|b| b != b'0')
}

/// A step of a decision, timed: a child span of the decision's.
#[derive(Clone, Debug)]
pub struct Step {
    /// `rein.contract`, `rein.policy`, `rein.state` or `rein.audit.append`.
    pub name: &'static str,
    /// When it started.
    pub start: SystemTime,
    /// When it ended.
    pub end: SystemTime,
}

/// One decision (or outcome) as the runtime made it: the root span.
#[derive(Clone, Debug)]
pub struct DecisionSpan {
    /// The decision's id.
    pub decision_id: String,
    /// `before` (a decision) or `after` (an outcome).
    pub phase: &'static str,
    /// The action (as sent; bounded by the exporter).
    pub action: String,
    /// The answer's effect.
    pub effect: Effect,
    /// The audit record's sequence number, if it was recorded.
    pub audit_seq: Option<u64>,
    /// When the decision started.
    pub start: SystemTime,
    /// When its answer was ready.
    pub end: SystemTime,
    /// Its steps, in order.
    pub steps: Vec<Step>,
}

/// Where the runtime puts the [`DecisionSpan`]s of the decisions made in
/// a [`scope`] (a hook event may make several).
#[derive(Debug, Default)]
pub struct SpanLog(Mutex<Vec<DecisionSpan>>);

impl SpanLog {
    /// Takes what was noted so far.
    pub fn take(&self) -> Vec<DecisionSpan> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner))
    }

    fn push(&self, span: DecisionSpan) {
        // A bound, in case a scope is misused for a stream of decisions.
        let mut spans = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if spans.len() < 1024 {
            spans.push(span);
        }
    }
}

/// What a [`scope`] carries to the decisions made in it.
#[derive(Clone, Debug, Default)]
pub struct TraceScope {
    /// The caller's trace context, kept in the audit records.
    pub parent: Option<TraceParent>,
    /// Where to note each decision's steps; `None` when traces are not
    /// exported.
    pub spans: Option<Arc<SpanLog>>,
}

tokio::task_local! {
    static SCOPE: TraceScope;
}

/// Runs `f` (a decision, a hook event) with `scope`: its decisions keep
/// the caller's `traceparent` in their audit records and note their steps
/// in `scope.spans`.
pub async fn scope<F: std::future::Future>(scope: TraceScope, f: F) -> F::Output {
    SCOPE.scope(scope, f).await
}

/// The caller's `traceparent` and the span log of the current scope
/// (one task-local read; both `None` outside a scope).
fn current() -> (Option<String>, Option<Arc<SpanLog>>) {
    SCOPE
        .try_with(|s| (s.parent.as_ref().map(|p| p.as_str().to_string()), s.spans.clone()))
        .unwrap_or_default()
}

/// The caller's `traceparent` of the current scope, if any.
pub(crate) fn current_parent() -> Option<String> {
    current().0
}

/// What a decision keeps of its scope: the caller's `traceparent` for the
/// audit record, and its steps being noted (only inside a scope that
/// exports traces: otherwise every method is a branch on `None`).
pub(crate) struct Timer {
    /// The caller's `traceparent`, for the audit record.
    pub(crate) parent: Option<String>,
    log: Option<(Arc<SpanLog>, SystemTime, Vec<Step>)>,
    open: Option<(&'static str, SystemTime)>,
}

impl Timer {
    /// A timer for the decision starting now.
    pub(crate) fn start() -> Timer {
        let (parent, log) = current();
        Timer {
            parent,
            log: log.map(|log| (log, SystemTime::now(), Vec::with_capacity(4))),
            open: None,
        }
    }

    /// Whether steps are noted.
    pub(crate) fn on(&self) -> bool {
        self.log.is_some()
    }

    /// Starts step `name` (ending the one open, if any).
    pub(crate) fn begin(&mut self, name: &'static str) {
        if self.log.is_some() {
            self.end();
            self.open = Some((name, SystemTime::now()));
        }
    }

    /// Ends the open step.
    pub(crate) fn end(&mut self) {
        if let (Some((_, _, steps)), Some((name, start))) = (&mut self.log, self.open.take()) {
            steps.push(Step {
                name,
                start,
                end: SystemTime::now(),
            });
        }
    }

    /// Notes the decision, done.
    pub(crate) fn finish(
        mut self,
        decision_id: &str,
        phase: &'static str,
        action: &str,
        effect: Effect,
        audit_seq: Option<u64>,
    ) {
        self.end();
        if let Some((log, start, steps)) = self.log.take() {
            log.push(DecisionSpan {
                decision_id: decision_id.to_string(),
                phase,
                action: action.chars().take(128).collect(),
                effect,
                audit_seq,
                start,
                end: SystemTime::now(),
                steps,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proptest::prelude::*;

    const GOOD: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn a_valid_traceparent_is_read() {
        let t = TraceParent::parse(GOOD.as_bytes()).unwrap();
        assert_eq!(t.as_str(), GOOD);
        assert_eq!(t.trace_id(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(t.parent_id(), "00f067aa0ba902b7");
        assert_eq!(t.flags(), 1);
        assert!(is_trace_id(t.trace_id()));
    }

    #[test]
    fn invalid_traceparents_are_ignored() {
        for bad in [
            "",
            "00",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", // another version
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01", // uppercase
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01", // zero trace id
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01", // zero parent id
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0g",
            "00-4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7-01",
            " 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0\u{e9}",
            "00-\"bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ] {
            assert!(TraceParent::parse(bad.as_bytes()).is_none(), "{bad}");
        }
        assert!(!is_trace_id("00000000000000000000000000000000"));
        assert!(!is_trace_id("4BF92F3577B34DA6A3CE929D0E0E4736"));
        assert!(!is_trace_id("4bf92f3577b34da6a3ce929d0e0e473"));
    }

    proptest! {
        /// Whatever the bytes, parsing never panics, and what it accepts is
        /// exactly the version-00 shape, lowercase hex, ids not zero; the
        /// text kept is the text sent (nothing else can be reflected).
        #[test]
        fn parse_accepts_exactly_the_w3c_shape(bytes in proptest::collection::vec(any::<u8>(), 0..80)) {
            if let Some(t) = TraceParent::parse(&bytes) {
                prop_assert_eq!(t.as_str().as_bytes(), &bytes[..]);
                prop_assert_eq!(t.as_str().len(), TRACEPARENT_LEN);
                prop_assert!(t.as_str().starts_with("00-"));
                prop_assert!(is_trace_id(t.trace_id()));
                prop_assert!(t.parent_id().bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
                prop_assert!(t.parent_id().bytes().any(|b| b != b'0'));
            }
        }

        /// Every well-formed one is accepted.
        #[test]
        fn parse_accepts_every_well_formed(trace in "[0-9a-f]{32}", parent in "[0-9a-f]{16}", flags in "[0-9a-f]{2}") {
            let text = format!("00-{trace}-{parent}-{flags}");
            let zero = trace.bytes().all(|b| b == b'0') || parent.bytes().all(|b| b == b'0');
            prop_assert_eq!(TraceParent::parse(text.as_bytes()).is_some(), !zero);
        }
    }
}
