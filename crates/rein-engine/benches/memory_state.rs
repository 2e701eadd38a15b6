//! The in-memory state's reads and writes, on a state holding many
//! buckets and sessions: what a stateful decision adds to a stateless one
//! (`limit_use` for a limit, `session_labels` / `session_calls` for a
//! session condition, `apply` and `undo` of its writes).

// A benchmark that cannot build its input should stop loudly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use criterion::{criterion_group, criterion_main, Criterion};
use jiff::{SignedDuration, Timestamp};
use rein_engine::state::{BucketKey, Decimal, LimitQuery, SessionCall, StateView, StateWrite};
use rein_engine::{Effect, MemoryState};
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

criterion_group!(benches, reads_and_writes);
criterion_main!(benches);
