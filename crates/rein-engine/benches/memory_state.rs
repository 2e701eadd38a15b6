//! The in-memory state's reads and writes, on a state holding many
//! buckets and sessions: what a stateful decision adds to a stateless one
//! (`limit_use` for a limit, `session_labels` / `session_calls` for a
//! session condition, `apply` and `undo` of its writes).

// A benchmark that cannot build its input should stop loudly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use criterion::{criterion_group, criterion_main, Criterion};
use jiff::{SignedDuration, Timestamp};
use rein_engine::state::{BucketKey, Decimal, LimitQuery, SessionCall, StateView, StateWrite};
use rein_engine::{Effect, MemoryState, Policy, Request};
use std::hint::black_box;

fn bucket(actor: usize) -> BucketKey {
    BucketKey {
        rule: "refund_rate".into(),
        per: vec![("actor.id".into(), format!("\"bot-{actor}\""))],
    }
}

/// 10,000 buckets with 5 uses each in the last hour, 10,000 sessions with
/// 20 calls and 2 labels each.
fn filled(now: Timestamp) -> MemoryState {
    let mut state = MemoryState::with_key([1; 32]);
    let mut writes = Vec::new();
    for i in 0..10_000 {
        for u in 0..5 {
            writes.push(StateWrite::Use {
                decision_id: format!("d{i}-{u}"),
                bucket: bucket(i),
                time: now - SignedDuration::from_mins(50 - 10 * u),
                amount: Decimal::ONE,
            });
        }
        let session = format!("s{i}");
        for c in 0..20 {
            writes.push(StateWrite::Call {
                session: session.clone(),
                call: SessionCall {
                    decision_id: format!("c{i}-{c}"),
                    action: if c % 2 == 0 { "read".into() } else { "web.fetch".into() },
                    time: now - SignedDuration::from_mins(60 - 2 * c),
                    effect: Effect::Allow,
                    input: serde_json::json!({"path": format!("/p/{c}")}),
                    output: None,
                },
            });
        }
        for label in ["secret", "untrusted"] {
            writes.push(StateWrite::Label {
                session: session.clone(),
                decision_id: format!("c{i}-0"),
                label: label.into(),
                time: now - SignedDuration::from_mins(60),
            });
        }
    }
    state.apply(&writes);
    state
}

fn reads_and_writes(c: &mut Criterion) {
    let now: Timestamp = "2026-01-01T12:00:00Z".parse().unwrap();
    let mut state = filled(now);
    let key = bucket(4242);
    let query = LimitQuery {
        bucket: &key,
        window: SignedDuration::from_hours(1),
        now,
        room: Decimal::from(4),
    };
    let mut g = c.benchmark_group("memory_state");
    g.bench_function("limit_use", |b| {
        b.iter(|| black_box(state.limit_use(black_box(&query)).unwrap()))
    });
    g.bench_function("session_labels", |b| {
        b.iter(|| black_box(state.session_labels(black_box("s4242")).unwrap()))
    });
    g.bench_function("session_has_label", |b| {
        b.iter(|| {
            black_box(
                state
                    .session_has_label(black_box("s4242"), black_box("untrusted"))
                    .unwrap(),
            )
        })
    });
    g.bench_function("session_calls_count_10m", |b| {
        let since = now - SignedDuration::from_mins(10);
        b.iter(|| {
            let mut n = 0;
            state
                .session_calls(black_box("s4242"), since, &mut |c| n += usize::from(c.action == "read"))
                .unwrap();
            black_box(n)
        })
    });
    let writes = [
        StateWrite::Use {
            decision_id: "new".into(),
            bucket: key.clone(),
            time: now,
            amount: Decimal::ONE,
        },
        StateWrite::Call {
            session: "s4242".into(),
            call: SessionCall {
                decision_id: "new".into(),
                action: "read".into(),
                time: now,
                effect: Effect::Allow,
                input: serde_json::json!({"path": "/p/new"}),
                output: None,
            },
        },
    ];
    g.bench_function("apply_and_undo", |b| {
        b.iter(|| {
            state.apply(black_box(&writes));
            state.undo(black_box(&writes));
        })
    });
    g.finish();
}

/// One limit and one session condition: what the issue's 2 µs target is
/// about. `decide_with_state` alone, then the whole in-process round as a
/// runtime makes it (prepare the request, decide, build the writes, apply
/// them; undone after each round to keep the state the same).
fn stateful_decision(c: &mut Criterion) {
    let policy = Policy::from_yaml_str(
        r#"
default: allow
contracts:
  actor: {id: string}
  actions:
    refund:
      input: {amount: {type: number, min: 0}}
rules:
  - id: refund_rate
    action: refund
    effect: block
    limit: {count: 5, per: [actor.id], window: 1h}
  - id: exfiltration
    action: refund
    when: '"secret" in session.labels'
    effect: block
"#,
    )
    .unwrap();
    let now: Timestamp = "2026-01-01T12:00:00Z".parse().unwrap();
    let mut state = filled(now);
    // bot-4242 has 5 uses in its bucket already: make it one with room.
    let request = Request::new("refund")
        .input(serde_json::json!({"amount": 10}))
        .actor(serde_json::json!({"id": "bot-777777"}))
        .time(now);
    let request = Request {
        session: Some("s4242-other".into()),
        ..request
    };
    let prepared = policy.prepare(&request).unwrap();
    let mut g = c.benchmark_group("stateful_decision");
    g.bench_function("decide_with_state", |b| {
        b.iter(|| black_box(prepared.decide_with_state(black_box(&state))))
    });
    g.bench_function("prepare_decide_apply_undo", |b| {
        b.iter(|| {
            let prepared = policy.prepare(black_box(&request)).unwrap();
            let (decision, effects) = prepared.decide_with_state(&state);
            let writes = effects.writes("d-bench", decision.effect(), now);
            state.apply(&writes);
            state.undo(&writes);
            black_box(decision)
        })
    });
    g.bench_function("stateless_prepare_decide", |b| {
        let stateless = Policy::from_yaml_str(
            r#"
default: allow
contracts:
  actor: {id: string}
  actions:
    refund:
      input: {amount: {type: number, min: 0}}
rules:
  - id: big
    action: refund
    when: input.amount > 1000
    effect: block
"#,
        )
        .unwrap();
        b.iter(|| black_box(stateless.prepare(black_box(&request)).unwrap().decide()))
    });
    g.finish();
}

criterion_group!(benches, reads_and_writes, stateful_decision);
criterion_main!(benches);
