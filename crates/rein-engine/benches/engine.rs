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

fn decide(c: &mut Criterion) {
    let policy = Policy::from_yaml_str(&example("refund")).unwrap();
    let request = Request::from_json_str(REFUND_REQUEST).unwrap();
    let prepared = policy.prepare(&request).unwrap();
    let mut g = c.benchmark_group("refund_example");
    g.bench_function("prepared", |b| b.iter(|| black_box(prepared.decide())));
    g.bench_function("request", |b| b.iter(|| black_box(policy.decide(black_box(&request)))));
    g.bench_function("json_text", |b| {
        b.iter(|| black_box(policy.decide(&Request::from_json_str(black_box(REFUND_REQUEST)).unwrap())))
    });
    g.bench_function("load", |b| {
        let text = example("refund");
        b.iter(|| black_box(Policy::from_yaml_str(black_box(&text)).unwrap()))
    });
    g.finish();
}

criterion_group!(benches, decide);
criterion_main!(benches);
