//! Shared by the store benchmarks.
#![allow(clippy::unwrap_used, dead_code)]

use rein_engine::state::{BucketKey, Decimal, SessionCall, StateWrite};
use rein_engine::Effect;
use rein_store::AuditEntry;
use serde_json::json;

/// A decision of realistic size (about 600 bytes of canonical text).
pub fn entry(i: u64) -> AuditEntry {
    AuditEntry {
        decision_id: format!("01JZ{i:022}"),
        time: "2025-06-01T12:00:00.123456Z".into(),
        phase: "before".into(),
        action: "refund".into(),
        input: json!({
            "order_id": format!("ord-{i}"),
            "amount": 129.9,
            "currency": "EUR",
            "reason": "damaged in transit",
            "card": "hmac-sha256:5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843",
        }),
        actor: json!({"id": format!("agent-{}", i % 16), "roles": ["support-agent"], "tenant": "acme"}),
        snapshot: json!({"refunds_today": i % 7, "customer_since": "2021-03-04T00:00:00Z"}),
        output: None,
        error: None,
        session: Some(format!("sess-{}", i % 64)),
        effect: "allow".into(),
        rules: vec!["refund-limit".into(), "require-reason".into()],
        reasons: vec!["amount below the daily limit".into()],
        policy_version: "3f9a1c0e5b7d2a4c6e8f0a1b3c5d7e9f1a2b4c6d8e0f1a3b5c7d9e1f2a4b6c8d".into(),
        latency_us: 42,
        approval: None,
        client: None,
        policy_version_label: None,
        actor_source: None,
        shadow: None,
        activation: None,
        trace: None,
    }
}

/// Where bench stores live: `REIN_BENCH_DIR` if set (to measure a given
/// disk), else the system temporary directory.
pub fn bench_dir() -> tempfile::TempDir {
    match std::env::var_os("REIN_BENCH_DIR") {
        Some(dir) => tempfile::tempdir_in(dir),
        None => tempfile::tempdir(),
    }
    .unwrap()
}

/// The state writes of a typical stateful decision `i` (as [`entry`]):
/// one limit use (a sum per customer) and the call in its session's
/// history.
pub fn writes(i: u64) -> Vec<StateWrite> {
    let decision_id = format!("01JZ{i:022}");
    let time = jiff::Timestamp::now();
    vec![
        StateWrite::Use {
            decision_id: decision_id.clone(),
            bucket: BucketKey {
                rule: "refund_budget".into(),
                per: vec![("input.customer_id".into(), format!("\"c-{}\"", i % 256))],
            },
            time,
            amount: Decimal::new(12990, 2),
        },
        StateWrite::Call {
            session: format!("sess-{}", i % 64),
            call: SessionCall {
                decision_id,
                action: "refund".into(),
                time,
                effect: Effect::Allow,
                input: json!({"order_id": format!("ord-{i}"), "amount": 129.9, "currency": "EUR"}),
                output: None,
            },
        },
    ]
}
