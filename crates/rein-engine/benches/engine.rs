//! Engine-only benchmarks on the example policies: deciding a prepared
//! request, a `Request`, and JSON text, and loading a policy. (The large
//! generated workloads and the side-by-side comparison with Cedar live in
//! `crates/rein-bench`.)

// A benchmark that cannot load its input should stop loudly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

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

const REFUND_REQUEST: &str = r#"{"action":"refund","input":{"order_id":"ord_abc123","amount":500,"currency":"EUR"},"actor":{"id":"bot","role":"agent"},"snapshot":{"fraud_flag":false,"refunds_today":1,"account_age_days":400}}"#;

// Out of line, so that `bench/callgrind_per_call.py` finds each by name
// (`engine::via_text$`): instructions per call on a busy machine.
#[inline(never)]
fn via_request(policy: &Policy, text: &str) -> rein_engine::Effect {
    policy.decide(&Request::from_json_str(text).unwrap()).effect()
}

#[inline(never)]
fn via_text(policy: &Policy, text: &str) -> rein_engine::Effect {
    policy.decide_json_str(text).unwrap().effect()
}

#[inline(never)]
fn value_only(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap()
}

fn decide(c: &mut Criterion) {
    let policy = Policy::from_yaml_str(&example("refund")).unwrap();
    let request = Request::from_json_str(REFUND_REQUEST).unwrap();
    let prepared = policy.prepare(&request).unwrap();
    let mut g = c.benchmark_group("refund_example");
    g.bench_function("prepared", |b| b.iter(|| black_box(prepared.decide())));
    g.bench_function("request", |b| b.iter(|| black_box(policy.decide(black_box(&request)))));
    g.bench_function("json_text", |b| {
        b.iter(|| black_box(via_request(&policy, black_box(REFUND_REQUEST))))
    });
    g.bench_function("json_text_direct", |b| {
        b.iter(|| black_box(via_text(&policy, black_box(REFUND_REQUEST))))
    });
    // What reading the text alone costs serde_json (into a `Value`, as the
    // JSON-text floor of `crates/rein-bench` does).
    g.bench_function("json_value_only", |b| {
        b.iter(|| black_box(value_only(black_box(REFUND_REQUEST))))
    });
    g.bench_function("load", |b| {
        let text = example("refund");
        b.iter(|| black_box(Policy::from_yaml_str(black_box(&text)).unwrap()))
    });
    g.finish();
}

/// `mayMatchIgnoreCase` over shell operands against secret globs, as a
/// coding-agent hook policy asks it: an operand automaton is built per call.
fn may_match(c: &mut Criterion) {
    let policy = Policy::from_yaml_str(
        r#"
default: allow
contracts:
  actions:
    read:
      input: {paths: {type: list, items: string}}
rules:
  - id: secrets
    action: read
    when: 'input.paths.exists(p, p.mayMatchIgnoreCase("**/.ssh/**") || p.mayMatchIgnoreCase("**/.env") || p.mayMatchIgnoreCase("**/.aws/credentials"))'
    effect: block
"#,
    )
    .unwrap();
    let mut g = c.benchmark_group("may_match");
    for (name, path) in [
        ("literal", "/home/u/project/src/main.rs"),
        ("glob_hit", "/home/u/.ss?/id_*"),
        ("glob_miss", "/home/u/project/src/*.rs"),
    ] {
        let prepared = policy
            .prepare(&Request::new("read").input(serde_json::json!({ "paths": [path] })))
            .unwrap();
        g.bench_function(name, |b| b.iter(|| black_box(prepared.decide())));
    }
    g.finish();
}

/// A state that answers at once: what the engine itself spends on a
/// stateful decision (keys, bucket, session reads), apart from any store.
struct FixedState {
    labels: Vec<String>,
}

impl rein_engine::StateView for FixedState {
    fn limit_use(
        &self,
        _: &rein_engine::state::LimitQuery<'_>,
    ) -> Result<rein_engine::state::LimitUse, rein_engine::state::StateError> {
        Ok(rein_engine::state::LimitUse {
            used: rein_engine::state::Decimal::ONE,
            retry_after_seconds: Some(0),
        })
    }

    fn session_labels(&self, _: &str) -> Result<Vec<String>, rein_engine::state::StateError> {
        Ok(self.labels.clone())
    }

    fn session_calls(
        &self,
        _: &str,
        _: jiff::Timestamp,
        _: &mut dyn FnMut(&rein_engine::state::SessionCall),
    ) -> Result<(), rein_engine::state::StateError> {
        Ok(())
    }

    fn keyed_hash(&self, value: &serde_json::Value) -> String {
        value.to_string()
    }
}

/// The refund example's decision with one limit and one session condition
/// added, beside the same request on the example as it is.
fn stateful(c: &mut Criterion) {
    let stateless = Policy::from_yaml_str(&example("refund")).unwrap();
    let text = format!(
        "{}\n  - id: refund_rate\n    action: refund\n    effect: block\n    limit: {{count: 5, per: [actor.id], window: 1h}}\n  - id: tainted\n    action: refund\n    when: '\"untrusted\" in session.labels'\n    effect: require_approval\n",
        example("refund").trim_end()
    );
    let policy = Policy::from_yaml_str(&text).unwrap();
    let mut request = Request::from_json_str(REFUND_REQUEST).unwrap();
    request.session = Some("s-1".into());
    request.time = Some("2026-01-01T00:00:00Z".parse().unwrap());
    let plain = stateless.prepare(&request).unwrap();
    let prepared = policy.prepare(&request).unwrap();
    let state = FixedState {
        labels: vec!["secret".into()],
    };
    let mut g = c.benchmark_group("refund_stateful");
    g.bench_function("stateless_prepared", |b| b.iter(|| black_box(plain.decide())));
    g.bench_function("limit_and_session_prepared", |b| {
        b.iter(|| black_box(prepared.decide_with_state(black_box(&state))))
    });
    g.finish();
}

criterion_group!(benches, decide, may_match, stateful);
criterion_main!(benches);
