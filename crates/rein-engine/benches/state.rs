//! Stateful control (limits, sessions) in process, against the in-memory
//! state, side by side with the same policy's stateless twin; and the
//! refund example's stateless decision, to compare with a build of the
//! engine before the feature.
//!
//! ```text
//! cargo bench -p rein-engine --bench state
//! bash bench/state_engine.sh     # this file built here and on the commit before the feature, run alternately
//! ```
//!
//! Built with `--cfg rein_baseline` (what `bench/state_engine.sh` does on
//! the older commit, through `cargo rustc`), only the stateless refund
//! group is compiled: the older engine has no state API. The group's code
//! and names are the same in both builds, so their medians compare.

// `rein_baseline` is set only by `bench/state_engine.sh`, on the command
// line of this one target, so cargo's list of expected cfgs does not know it.
#![allow(unexpected_cfgs)]
// A benchmark that cannot load its input should stop loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use criterion::{criterion_group, criterion_main, Criterion};
use rein_engine::{Policy, Request};
use std::hint::black_box;
use std::path::Path;

fn example(name: &str) -> String {
    std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../examples")
            .join(name)
            .join("policy.yaml"),
    )
    .unwrap()
}

/// The request `benches/engine.rs` times: an agent's refund of 500 (the
/// example asks for approval).
const REFUND_REQUEST: &str = r#"{"action":"refund","input":{"order_id":"ord_abc123","amount":500,"currency":"EUR"},"actor":{"id":"bot","role":"agent"},"snapshot":{"fraud_flag":false,"refunds_today":1,"account_age_days":400}}"#;

/// The refund example (no stateful rules), exactly as `benches/engine.rs`
/// times it: what must stay within 5% of the engine before the feature.
fn refund_example(c: &mut Criterion) {
    let policy = Policy::from_yaml_str(&example("refund")).unwrap();
    let request = Request::from_json_str(REFUND_REQUEST).unwrap();
    let prepared = policy.prepare(&request).unwrap();
    let mut g = c.benchmark_group("stateless_refund_example");
    g.bench_function("prepared", |b| b.iter(|| black_box(prepared.decide())));
    g.bench_function("request", |b| b.iter(|| black_box(policy.decide(black_box(&request)))));
    g.bench_function("json_text", |b| {
        b.iter(|| black_box(policy.decide(&Request::from_json_str(black_box(REFUND_REQUEST)).unwrap())))
    });
    g.finish();
}

#[cfg(not(rein_baseline))]
mod stateful {
    use super::*;
    use jiff::{SignedDuration, Timestamp};
    use rein_engine::{Effect, MemoryState, Phase};

    /// Contracts and the stateless rules every policy here shares.
    /// `{refund_labels}` is where the refund's allow rule may attach a label.
    const COMMON: &str = r#"
version: "bench-state"
default: block
contracts:
  actor:
    id: string
    role: {type: enum, values: [agent, support, admin]}
    groups: list<string>
  snapshot:
    fraud_flag: bool
    refunds_today: {type: int, min: 0}
  actions:
    order.lookup:
      input:
        order_id: {type: string, pattern: "^ord_[a-z0-9]{6,}$"}
    refund:
      input:
        order_id: {type: string, pattern: "^ord_[a-z0-9]{6,}$"}
        amount: {type: number, min: 0, max: 100000}
        currency: {type: string, pattern: "^[A-Z]{3}$"}
rules:
  - id: lookups
    action: order.lookup
    effect: allow
    labels: [customer_data]
  - id: small_refund
    action: refund
    when: input.amount <= 100
    effect: allow
{refund_labels}
  - id: fraud_guard
    action: refund
    when: snapshot.fraud_flag
    effect: block
"#;

    /// One limit (per actor, never reached here, so every call is allowed
    /// and consumes) and one session condition (labels).
    const STATEFUL_RULES: &str = r#"
  - id: refund_rate
    action: refund
    effect: block
    limit: {count: 1000000, per: [actor.id], window: 1h}
    reason: at most a million refunds an hour per agent
  - id: untrusted_session
    action: refund
    when: '"untrusted" in session.labels'
    effect: block
    reason: this session read untrusted content
"#;

    /// The same with a session count (a loop guard over the recorded calls)
    /// instead of labels.
    const STATEFUL_COUNT_RULES: &str = r#"
  - id: refund_rate
    action: refund
    effect: block
    limit: {count: 1000000, per: [actor.id], window: 1h}
    reason: at most a million refunds an hour per agent
  - id: refund_loop
    action: refund
    when: session.count("refund", duration("10m")) >= 1000
    effect: block
    reason: too many refunds in this session
"#;

    /// The twin: the same number of rules and comparisons, on request
    /// fields instead of state.
    const STATELESS_RULES: &str = r#"
  - id: refund_rate
    action: refund
    when: snapshot.refunds_today >= 1000000
    effect: block
    reason: at most a million refunds a day
  - id: untrusted_session
    action: refund
    when: '"untrusted" in actor.groups'
    effect: block
    reason: this actor is untrusted
"#;

    fn policy(rules: &str, label_every_refund: bool) -> Policy {
        let labels = if label_every_refund {
            "    labels: [refunded]"
        } else {
            ""
        };
        Policy::from_yaml_str(&format!("{}{rules}", COMMON.replace("{refund_labels}", labels))).unwrap()
    }

    /// Earlier allowed refunds in the state of the main group.
    const USES: u32 = 100;

    /// The decision time of every timed request.
    fn now() -> Timestamp {
        "2026-01-01T12:00:00Z".parse().unwrap()
    }

    fn request(action: &str, time: Timestamp) -> Request {
        let input = if action == "refund" {
            serde_json::json!({"order_id": "ord_abc123", "amount": 40, "currency": "EUR"})
        } else {
            serde_json::json!({"order_id": "ord_abc123"})
        };
        Request::new(action)
            .input(input)
            .actor(serde_json::json!({"id": "bot-1", "role": "agent", "groups": ["support"]}))
            .snapshot(serde_json::json!({"fraud_flag": false, "refunds_today": 1}))
            .session("s-1")
            .time(time)
    }

    /// Decides `action` at `time` against `state` and applies the writes
    /// of its allow, as the runtime does.
    fn record(policy: &Policy, state: &mut MemoryState, action: &str, time: Timestamp, id: &str) {
        let prepared = policy.prepare(&request(action, time)).unwrap();
        let (decision, effects) = prepared.decide_with_state(state);
        assert_eq!(decision.effect(), Effect::Allow, "fill: {decision:?}");
        state.apply(&effects.writes(id, decision.effect(), time));
    }

    /// The state of a busy agent's hour: one order lookup (which labels the
    /// session), then `calls` allowed refunds of the same actor and session
    /// over the 50 minutes before [`now`] (each consumed a unit; each was
    /// recorded, or labelled, if the policy reads that).
    fn filled_state(policy: &Policy, calls: u32) -> MemoryState {
        let mut state = MemoryState::with_key([7; 32]);
        let start = now() - SignedDuration::from_mins(50);
        record(policy, &mut state, "order.lookup", start, "fill-lookup");
        for i in 0..calls {
            let time = start + SignedDuration::from_secs(i64::from(i) * 3000 / i64::from(calls.max(1)));
            record(policy, &mut state, "refund", time, &format!("fill-{i}"));
        }
        state
    }

    pub fn decide(c: &mut Criterion) {
        let stateful = policy(STATEFUL_RULES, false);
        let labelling = policy(STATEFUL_RULES, true);
        let counting = policy(STATEFUL_COUNT_RULES, false);
        let twin = policy(STATELESS_RULES, false);
        assert!(stateful.action_state("refund", Phase::Before).any());
        // The twin's refund takes the stateless path (its lookups' labels,
        // which no rule reads, are the only state it could write).
        assert!(
            !twin.action_state("refund", Phase::Before).any(),
            "the twin's refund must be stateless"
        );
        // 100 earlier uses in the bucket, in the session (the scaling with
        // the uses in the window is the group `state_limit_uses`).
        let state = filled_state(&stateful, USES);
        let label_state = filled_state(&labelling, USES);
        let count_state = filled_state(&counting, USES);

        let at_now = request("refund", now());
        let prepared = stateful.prepare(&at_now).unwrap();
        let prepared_labelling = labelling.prepare(&at_now).unwrap();
        let prepared_count = counting.prepare(&at_now).unwrap();
        let prepared_twin = twin.prepare(&at_now).unwrap();
        // What is timed is what the names say: allowed, reading the state,
        // taking a unit; the twin allowed without state.
        for (p, st) in [
            (&prepared, &state),
            (&prepared_labelling, &label_state),
            (&prepared_count, &count_state),
        ] {
            let (d, effects) = p.decide_with_state(st);
            assert_eq!(d.effect(), Effect::Allow, "{d:?}");
            assert_eq!(effects.consume.len(), 1, "{effects:?}");
        }
        assert!(prepared_count.decide_with_state(&count_state).1.call.is_some());
        assert_eq!(prepared_twin.decide().effect(), Effect::Allow);

        let mut g = c.benchmark_group("state");
        g.bench_function("limit_and_labels/prepared", |b| {
            b.iter(|| black_box(prepared.decide_with_state(black_box(&state))))
        });
        g.bench_function("limit_and_session_count/prepared", |b| {
            b.iter(|| black_box(prepared_count.decide_with_state(black_box(&count_state))))
        });
        // Every allowed refund attaches a label a rule reads: the session
        // holds one label entry per call (100 here).
        g.bench_function("limit_and_labels_every_call/prepared", |b| {
            b.iter(|| black_box(prepared_labelling.decide_with_state(black_box(&label_state))))
        });
        g.bench_function("stateless_twin/prepared", |b| {
            b.iter(|| black_box(prepared_twin.decide()))
        });
        g.bench_function("limit_and_labels/request", |b| {
            b.iter(|| {
                let p = stateful.prepare(black_box(&at_now)).unwrap();
                black_box(p.decide_with_state(&state))
            })
        });
        g.bench_function("stateless_twin/request", |b| {
            b.iter(|| black_box(twin.decide(black_box(&at_now))))
        });
        // The runtime's in-memory step: decide, render the writes of the
        // allow, apply them (the reservation), and undo them (as a refused
        // approval or a failed audit write does) so the state stays as it was.
        let mut cycle_state = filled_state(&stateful, USES);
        g.bench_function("limit_and_labels/decide_apply_undo", |b| {
            b.iter(|| {
                let (d, effects) = prepared.decide_with_state(&cycle_state);
                let writes = effects.writes("bench", d.effect(), now());
                cycle_state.apply(&writes);
                cycle_state.undo(&writes);
                black_box(writes)
            })
        });
        g.finish();

        // The same decision as `state/limit_and_labels/prepared` with more
        // or fewer uses of the bucket in the window.
        let mut g = c.benchmark_group("state_limit_uses");
        for uses in [10, 100, 1_000, 10_000] {
            let state = filled_state(&stateful, uses);
            g.bench_function(uses.to_string(), |b| {
                b.iter(|| black_box(prepared.decide_with_state(black_box(&state))))
            });
        }
        g.finish();
    }
}

#[cfg(not(rein_baseline))]
criterion_group!(benches, stateful::decide, refund_example);
#[cfg(rein_baseline)]
criterion_group!(benches, refund_example);
criterion_main!(benches);
