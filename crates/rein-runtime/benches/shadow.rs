//! What shadow mode costs (issue 16: a candidate adds at most 1.2× the
//! enforced decision's cost), in one run so that the variants are
//! compared side by side:
//!
//! * `engine/enforced`: `Policy::decide` of the refund example's request
//!   (`examples/refund/request.json`, 1500 EUR: several rules evaluated);
//! * `engine/enforced_and_candidate`: the same, then the candidate (the
//!   example with another threshold) decides it too, and its decision is
//!   turned into the record the runtime keeps: what shadow mode adds to a
//!   decision, the audit record aside;
//! * `engine/enforced_and_candidate_shared`: the same with the request
//!   checked once (`Prepared::under`: the candidate has the same
//!   contracts), as the runtime decides a stateless action;
//! * `engine/record_only`: the record of a decided candidate alone;
//! * `engine/with_shadow_rules`: the example with two `mode: shadow`
//!   rules on `refund`, against `engine/enforced` (the same policy
//!   without them);
//! * `runtime/enforced` and `runtime/with_candidate`: `Runtime::decide`
//!   over a store that keeps nothing (the audit's fsync, about a
//!   millisecond, would hide the rest): the whole in-process pipeline,
//!   identity step, approvals, the record built and redacted, with and
//!   without a candidate.
//!
//! With mimalloc, the allocator of the `rein` binary.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use criterion::{criterion_group, criterion_main, Criterion};
use rein_engine::{Policy, Request};
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

fn request() -> Request {
    Request::from_json(serde_json::from_str(&example("request.json")).unwrap()).unwrap()
}

/// The example policy, the candidate (small refunds up to 10, not 100),
/// and the example with two shadow rules on `refund`.
fn policies() -> (Policy, Policy, Policy) {
    let text = example("policy.yaml");
    let candidate = text.replace("when: input.amount <= 100\n", "when: input.amount <= 10\n");
    assert_ne!(candidate, text);
    let shadow_rules = format!(
        "{text}\n  - id: new_cap\n    action: refund\n    mode: shadow\n    when: input.amount > 1000 && actor.role != \"admin\"\n    effect: block\n  - id: any_note\n    action: refund\n    mode: shadow\n    when: has(input.note)\n    effect: require_approval\n"
    );
    (
        Policy::from_yaml_str(&text).unwrap(),
        Policy::from_yaml_str(&candidate).unwrap(),
        Policy::from_yaml_str(&shadow_rules).unwrap(),
    )
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
    let (policy, candidate, with_shadow_rules) = policies();
    let req = request();
    // The variants must decide what the bench says they decide.
    assert_eq!(policy.decide(&req).effect(), with_shadow_rules.decide(&req).effect());
    assert!(with_shadow_rules.decide(&req).shadow_rules().is_some());

    let mut g = c.benchmark_group("engine");
    g.bench_function("enforced", |b| b.iter(|| black_box(policy.decide(black_box(&req)))));
    g.bench_function("enforced_and_candidate", |b| {
        b.iter(|| {
            let enforced = policy.decide(black_box(&req));
            let shadow = candidate.decide(black_box(&req));
            // What the runtime keeps of it: ids and effects, as JSON.
            let record = serde_json::json!({
                "enforced": enforced.effect(),
                "candidate": {
                    "policy_version": candidate.version(),
                    "effect": shadow.effect(),
                    "rules": shadow.rules(),
                    "deciding": shadow.deciding_rules(),
                },
            });
            black_box((enforced, record))
        })
    });
    g.bench_function("enforced_and_candidate_shared", |b| {
        b.iter(|| {
            // As the runtime does with a candidate of the same contracts:
            // the request checked once, decided under both.
            let prepared = policy.prepare(black_box(&req)).unwrap();
            let enforced = prepared.decide();
            let shadow = prepared.under(&candidate).unwrap().decide();
            let record = serde_json::json!({
                "enforced": enforced.effect(),
                "candidate": {
                    "policy_version": candidate.version(),
                    "effect": shadow.effect(),
                    "rules": shadow.rules(),
                    "deciding": shadow.deciding_rules(),
                },
            });
            black_box((enforced, record))
        })
    });
    let decided = candidate.decide(&req);
    g.bench_function("record_only", |b| {
        b.iter(|| {
            let shadow = black_box(&decided);
            black_box(serde_json::json!({
                "enforced": shadow.effect(),
                "candidate": {
                    "policy_version": candidate.version(),
                    "effect": shadow.effect(),
                    "rules": shadow.rules(),
                    "deciding": shadow.deciding_rules(),
                },
            }))
        })
    });
    g.bench_function("with_shadow_rules", |b| {
        b.iter(|| black_box(with_shadow_rules.decide(black_box(&req))))
    });
    g.finish();

    let tokio = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let config = || RuntimeConfig {
        hmac_key: b"shadow bench key".to_vec(),
        ..RuntimeConfig::default()
    };
    let plain = Runtime::new(policy.clone(), Arc::new(NoAudit { seq: AtomicU64::new(0) }), config());
    let shadowed = Runtime::new(policy.clone(), Arc::new(NoAudit { seq: AtomicU64::new(0) }), config());
    shadowed.set_shadow(Some(candidate.clone()));
    let mut g = c.benchmark_group("runtime");
    g.bench_function("enforced", |b| {
        b.iter(|| black_box(tokio.block_on(plain.decide(req.clone(), None))))
    });
    g.bench_function("with_candidate", |b| {
        b.iter(|| black_box(tokio.block_on(shadowed.decide(req.clone(), None))))
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(4)).warm_up_time(Duration::from_secs(1));
    targets = bench
}
criterion_main!(benches);
