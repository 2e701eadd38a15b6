//! A probe of what a stateful decision costs in instructions on a store of
//! one process (no lease), for callgrind; ignored in normal runs:
//!
//! `valgrind --tool=callgrind --callgrind-out-file=cg.out \
//!   target/release/deps/lease_cost-* --ignored --exact one_process_stateful_decisions --test-threads 1`

#![allow(clippy::unwrap_used, clippy::expect_used)]

use jiff::Timestamp;
use rein_engine::state::StateWrite;
use rein_engine::{Effect, Policy, Request};
use rein_runtime::{Runtime, RuntimeConfig};
use rein_store::{
    ApprovalError, ApprovalRecord, ApprovalState, AuditEntry, AuditQuery, AuditRecord, Store, StoreError, Verification,
};
use serde_json::json;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Keeps nothing: the cost measured is the runtime's.
struct Memory {
    seq: AtomicU64,
}

fn refused<T>() -> Result<T, StoreError> {
    Err(StoreError("not in this probe".into()))
}

#[async_trait::async_trait]
impl Store for Memory {
    async fn append(&self, entry: AuditEntry) -> Result<AuditRecord, StoreError> {
        Ok(AuditRecord {
            seq: self.seq.fetch_add(1, Ordering::Relaxed) + 1,
            entry,
            prev_hash: String::new(),
            hash: String::new(),
        })
    }
    async fn append_once(&self, entry: AuditEntry) -> Result<Option<AuditRecord>, StoreError> {
        self.append(entry).await.map(Some)
    }
    async fn append_with_state(&self, entry: AuditEntry, _: Vec<StateWrite>) -> Result<AuditRecord, StoreError> {
        self.append(entry).await
    }
    async fn load_state(&self, _: Timestamp, _: Timestamp) -> Result<Vec<StateWrite>, StoreError> {
        Ok(Vec::new())
    }
    async fn bind_key_fingerprint(&self, f: &str) -> Result<String, StoreError> {
        Ok(f.to_owned())
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
        refused()
    }
    async fn query_audit(&self, _: &AuditQuery) -> Result<Vec<AuditRecord>, StoreError> {
        refused()
    }
    async fn verify_audit(&self) -> Result<Verification, StoreError> {
        refused()
    }
    async fn audit_len(&self) -> Result<u64, StoreError> {
        refused()
    }
    async fn create_approval(&self, _: ApprovalRecord) -> Result<(), StoreError> {
        refused()
    }
    async fn get_approval(&self, _: &str) -> Result<Option<ApprovalRecord>, StoreError> {
        refused()
    }
    async fn list_approvals(&self, _: Option<ApprovalState>, _: u64) -> Result<Vec<ApprovalRecord>, StoreError> {
        refused()
    }
    async fn decide_approval(
        &self,
        _: &str,
        _: bool,
        _: &str,
        _: Option<&str>,
        _: &str,
    ) -> Result<Result<ApprovalRecord, ApprovalError>, StoreError> {
        refused()
    }
    async fn use_approval(
        &self,
        _: &str,
        _: &str,
        _: &str,
    ) -> Result<Result<ApprovalRecord, ApprovalError>, StoreError> {
        refused()
    }
}

const POLICY: &str = r#"
default: allow
max_window: 1h
contracts:
  actor: {id: string}
  actions:
    refund:
      input: {customer: string}
rules:
  - id: refund_rate
    action: refund
    effect: block
    limit: {count: 1000000, per: [input.customer], window: 1h}
"#;

/// Decisions of a stateful action (a limit), one process, no lease.
#[test]
#[ignore = "a probe for callgrind"]
fn one_process_stateful_decisions() {
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let runtime = Runtime::new(
        Policy::from_yaml_str(POLICY).unwrap(),
        Arc::new(Memory { seq: AtomicU64::new(0) }),
        RuntimeConfig {
            hmac_key: b"probe".to_vec(),
            ..RuntimeConfig::default()
        },
    );
    rt.block_on(async {
        runtime.open_state().await.unwrap();
        let n: usize = std::env::var("N").ok().and_then(|n| n.parse().ok()).unwrap_or(10_000);
        for i in 0..n {
            let request = Request::new("refund")
                .input(json!({"customer": format!("c{}", i % 100)}))
                .actor(json!({"id": "bot"}));
            assert_eq!(runtime.decide(request, None).await.effect, Effect::Allow);
        }
    });
}
