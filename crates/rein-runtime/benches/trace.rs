//! What tracing costs a decision (issue 19: "no cost when off"), side by
//! side, `Runtime::decide` of the refund example's request over a store
//! that keeps nothing (the audit's fsync would hide the rest):
//!
//! * `off`: no trace scope: no `traceparent`, no exporter (the default;
//!   what every decision pays for the feature is one task-local read and
//!   branches on `None`);
//! * `traceparent`: in a scope with the caller's `traceparent` only (kept
//!   in the audit record; no spans);
//! * `spans`: with a span log too, as with `--otlp-endpoint` (the steps
//!   timed and noted; the log drained each time, not exported);
//! * `scope_empty`: in a scope with neither (what a scope itself costs).
//!
//! With mimalloc, the allocator of the `rein` binary.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use criterion::{criterion_group, criterion_main, Criterion};
use rein_engine::{Policy, Request};
use rein_runtime::trace::{scope, SpanLog, TraceParent, TraceScope};
use rein_runtime::{Runtime, RuntimeConfig};
use rein_store::{
    ApprovalError, ApprovalRecord, ApprovalState, AuditEntry, AuditQuery, AuditRecord, Store, StoreError, Verification,
};
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn example(name: &str) -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/refund/").to_string() + name).unwrap()
}

/// BENCHMARK ONLY: a store that keeps nothing (as `decide_server`'s
/// `NoAudit`): every append is acknowledged with the next number.
struct NoAudit {
    seq: AtomicU64,
}

#[async_trait::async_trait]
impl Store for NoAudit {
    async fn append(&self, entry: AuditEntry) -> Result<AuditRecord, StoreError> {
        let seq = self.seq.fetch_add(1, Ordering::Relaxed) + 1;
        black_box(&entry);
        Ok(AuditRecord {
            seq,
            entry,
            prev_hash: String::new(),
            hash: String::new(),
        })
    }
    async fn append_once(&self, entry: AuditEntry) -> Result<Option<AuditRecord>, StoreError> {
        self.append(entry).await.map(Some)
    }
    async fn bind_key_fingerprint(&self, fingerprint: &str) -> Result<String, StoreError> {
        Ok(fingerprint.to_owned())
    }
    async fn key_fingerprint(&self) -> Result<Option<String>, StoreError> {
        Ok(None)
    }
    async fn probe_write(&self) -> Result<(), StoreError> {
        Ok(())
    }
    async fn find_open_approval(
        &self,
        _: &str,
        _: Option<&str>,
        _: &str,
    ) -> Result<Option<ApprovalRecord>, StoreError> {
        Ok(None)
    }
    async fn list_client_approvals(
        &self,
        _: &str,
        _: Option<ApprovalState>,
        _: u64,
    ) -> Result<Vec<ApprovalRecord>, StoreError> {
        Ok(Vec::new())
    }
    async fn query_audit(&self, _: &AuditQuery) -> Result<Vec<AuditRecord>, StoreError> {
        Ok(Vec::new())
    }
    async fn verify_audit(&self) -> Result<Verification, StoreError> {
        Ok(Verification::Intact { records: 0 })
    }
    async fn audit_len(&self) -> Result<u64, StoreError> {
        Ok(self.seq.load(Ordering::Relaxed))
    }
    async fn create_approval(&self, _: ApprovalRecord) -> Result<(), StoreError> {
        Err(StoreError("the benchmark's store keeps no approvals".into()))
    }
    async fn get_approval(&self, _: &str) -> Result<Option<ApprovalRecord>, StoreError> {
        Ok(None)
    }
    async fn list_approvals(&self, _: Option<ApprovalState>, _: u64) -> Result<Vec<ApprovalRecord>, StoreError> {
        Ok(Vec::new())
    }
    async fn decide_approval(
        &self,
        id: &str,
        _: bool,
        _: &str,
        _: Option<&str>,
        _: &str,
    ) -> Result<Result<ApprovalRecord, ApprovalError>, StoreError> {
        Ok(Err(ApprovalError::NotFound(id.to_owned())))
    }
    async fn use_approval(
        &self,
        id: &str,
        _: &str,
        _: &str,
    ) -> Result<Result<ApprovalRecord, ApprovalError>, StoreError> {
        Ok(Err(ApprovalError::NotFound(id.to_owned())))
    }
}

fn bench(c: &mut Criterion) {
    let policy = Policy::from_yaml_str(&example("policy.yaml")).unwrap();
    // 20 EUR: allowed (no approval to open: the store keeps none).
    let mut json: serde_json::Value = serde_json::from_str(&example("request.json")).unwrap();
    json["input"]["amount"] = serde_json::json!(20);
    let req = Request::from_json(json).unwrap();
    let tokio = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let rt = Runtime::new(
        policy,
        Arc::new(NoAudit { seq: AtomicU64::new(0) }),
        RuntimeConfig {
            hmac_key: b"trace bench key".to_vec(),
            ..RuntimeConfig::default()
        },
    );
    assert_eq!(
        tokio.block_on(rt.decide(req.clone(), None)).effect,
        rein_engine::Effect::Allow
    );
    let parent = TraceParent::parse(b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").unwrap();
    let log = Arc::new(SpanLog::default());
    let mut g = c.benchmark_group("decide");
    g.bench_function("off", |b| {
        b.iter(|| black_box(tokio.block_on(rt.decide(req.clone(), None))))
    });
    g.bench_function("scope_empty", |b| {
        b.iter(|| {
            let s = TraceScope::default();
            black_box(tokio.block_on(scope(s, rt.decide(req.clone(), None))))
        })
    });
    g.bench_function("traceparent", |b| {
        b.iter(|| {
            let s = TraceScope {
                parent: Some(parent.clone()),
                spans: None,
            };
            black_box(tokio.block_on(scope(s, rt.decide(req.clone(), None))))
        })
    });
    g.bench_function("spans", |b| {
        b.iter(|| {
            let s = TraceScope {
                parent: Some(parent.clone()),
                spans: Some(Arc::clone(&log)),
            };
            let answer = tokio.block_on(scope(s, rt.decide(req.clone(), None)));
            black_box(log.take());
            black_box(answer)
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(4)).warm_up_time(Duration::from_secs(1));
    targets = bench
}
criterion_main!(benches);
