//! The decision server for load tests: `rein serve`'s router over the
//! durable SQLite store, or with auditing off, so the audit log's cost is
//! measured in the same run. Benchmark-only: the product has no way to turn
//! auditing off.
//!
//! ```text
//! bench_server sqlite POLICY DB ADDR TOKEN
//! bench_server none   POLICY -  ADDR TOKEN
//! ```

use rein_engine::Policy;
use rein_server::{AppState, Role, ServerConfig, TokenEntry, Tokens};
use rein_store::{
    ApprovalError, ApprovalRecord, ApprovalState, AuditEntry, AuditQuery, AuditRecord, SqliteStore, Store, StoreError,
    Verification,
};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Auditing off: appends are acknowledged and dropped.
struct NoAudit(AtomicU64);

#[async_trait::async_trait]
impl Store for NoAudit {
    async fn append(&self, entry: AuditEntry) -> Result<AuditRecord, StoreError> {
        let seq = self.0.fetch_add(1, Ordering::Relaxed) + 1;
        Ok(AuditRecord {
            seq,
            entry,
            prev_hash: String::new(),
            hash: String::new(),
        })
    }
    async fn query_audit(&self, _: &AuditQuery) -> Result<Vec<AuditRecord>, StoreError> {
        Ok(Vec::new())
    }
    async fn verify_audit(&self) -> Result<Verification, StoreError> {
        Ok(Verification::Intact { records: 0 })
    }
    async fn audit_len(&self) -> Result<u64, StoreError> {
        Ok(0)
    }
    async fn create_approval(&self, _: ApprovalRecord) -> Result<(), StoreError> {
        Ok(())
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
        Ok(Err(ApprovalError::NotFound(id.to_string())))
    }
    async fn use_approval(
        &self,
        id: &str,
        _: &str,
        _: &str,
    ) -> Result<Result<ApprovalRecord, ApprovalError>, StoreError> {
        Ok(Err(ApprovalError::NotFound(id.to_string())))
    }
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [mode, policy_path, db, addr, token] = args.as_slice() else {
        anyhow::bail!("usage: bench_server sqlite|none POLICY DB|- ADDR TOKEN");
    };
    let policy = Policy::load(&[policy_path]).map_err(|e| anyhow::anyhow!("{e}"))?;
    let store: Arc<dyn Store> = match mode.as_str() {
        "sqlite" => Arc::new(SqliteStore::open(db)?),
        "none" => Arc::new(NoAudit(AtomicU64::new(0))),
        other => anyhow::bail!("unknown mode `{other}`"),
    };
    let config = ServerConfig::new(vec![policy_path.into()], db.into());
    let tokens = Tokens::from_entries([TokenEntry {
        name: "bench".into(),
        role: Role::Admin,
        token: token.clone(),
        approves: None,
    }])?;
    let state = AppState::new(&config, policy, store, tokens, b"bench key".to_vec());
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind(addr.as_str()).await?;
        let shutdown = async {
            let _ = tokio::signal::ctrl_c().await;
        };
        rein_server::serve(listener, state, shutdown).await
    })
}
