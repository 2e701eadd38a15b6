//! The decision server of the load tools (`bench/http.sh`, `load.sh`,
//! `soak.sh`, `icount.sh`), in three
//! variants that share tokens, policy, allocator and runtime:
//!
//! - `--store sqlite --db FILE`: the real server, set up exactly as
//!   `rein serve` sets it up (`AppState::from_config`, `rein_server::serve`,
//!   the store closed at the end): the durable, fsync'd audit log.
//! - `--store none`: the same router and runtime over [`NoAudit`], a store
//!   that acknowledges every append without keeping it: auditing off, to
//!   measure what the audit log costs. **Benchmark-only**; the product has
//!   no such store and no way to turn auditing off.
//! - `--mode floor`: a bare axum route that parses the body into a
//!   `serde_json::Value` and answers a constant decision: the HTTP floor.
//!
//! The bound address is printed on stdout (`listening 127.0.0.1:PORT`), and
//! written to `--port-file` if given, so `--listen 127.0.0.1:0` works. Stops
//! on SIGINT or SIGTERM.
//!
//! ```text
//! decide_server --store sqlite --db DB --tokens T --audit-key K [--policy P] [--listen ADDR]
//! decide_server --store none --tokens T --audit-key K [--policy P] [--listen ADDR]
//! decide_server --mode floor [--listen ADDR]
//! ```

// A benchmark tool either starts or aborts loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use anyhow::{bail, Context};
use axum::body::Bytes;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use rein_engine::Policy;
use rein_server::{AppState, ServerConfig, Tokens};
use rein_store::{
    ApprovalError, ApprovalRecord, ApprovalState, AuditEntry, AuditQuery, AuditRecord, Store, StoreError, Verification,
};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::net::TcpListener;

// As the `rein` binary.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// BENCHMARK ONLY: auditing off. Every append is acknowledged at once with
/// the next sequence number and nothing is kept; there are no approvals.
struct NoAudit {
    seq: AtomicU64,
}

#[async_trait::async_trait]
impl Store for NoAudit {
    async fn append(&self, entry: AuditEntry) -> Result<AuditRecord, StoreError> {
        let seq = self.seq.fetch_add(1, Ordering::Relaxed) + 1;
        Ok(AuditRecord {
            seq,
            entry,
            prev_hash: String::new(),
            hash: String::new(),
        })
    }

    // Outcomes are not deduplicated here: nothing is kept to compare with.
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
        Err(StoreError("the benchmark's no-audit store keeps no approvals".into()))
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

/// What the floor answers: the shape and size of a real allow answer.
const FLOOR_ANSWER: &str = r#"{"decision_id":"019ab2c4-0000-7000-8000-000000000000","effect":"allow","phase":"before","rules":["small_refund"],"reasons":["refunds up to 100 are routine"],"policy_version":"0000000000000000000000000000000000000000000000000000000000000000","audit_seq":1}"#;

async fn floor(body: Bytes) -> Response {
    match serde_json::from_slice::<serde_json::Value>(&body) {
        Ok(v) => {
            std::hint::black_box(v);
            ([(header::CONTENT_TYPE, "application/json")], FLOOR_ANSWER).into_response()
        }
        Err(e) => (StatusCode::BAD_REQUEST, e.to_string()).into_response(),
    }
}

#[derive(Default)]
struct Args {
    mode: String,
    store: String,
    db: Option<PathBuf>,
    policy: PathBuf,
    tokens: Option<PathBuf>,
    audit_key: Option<PathBuf>,
    listen: String,
    port_file: Option<PathBuf>,
    threads: Option<usize>,
}

fn parse_args() -> anyhow::Result<Args> {
    let mut a = Args {
        mode: "decide".into(),
        store: "sqlite".into(),
        policy: "examples/refund/policy.yaml".into(),
        listen: "127.0.0.1:0".into(),
        ..Args::default()
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--mode" => a.mode = value()?,
            "--store" => a.store = value()?,
            "--db" => a.db = Some(value()?.into()),
            "--policy" => a.policy = value()?.into(),
            "--tokens" => a.tokens = Some(value()?.into()),
            "--audit-key" => a.audit_key = Some(value()?.into()),
            "--listen" => a.listen = value()?,
            "--port-file" => a.port_file = Some(value()?.into()),
            "--threads" => a.threads = Some(value()?.parse()?),
            "-h" | "--help" => {
                println!("see the module documentation in crates/rein-bench/src/bin/decide_server.rs");
                std::process::exit(0);
            }
            other => bail!("unknown argument `{other}`"),
        }
    }
    Ok(a)
}

/// Completes on SIGINT or SIGTERM. The handlers are installed when this is
/// called (before binding), not when the future is first polled.
fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()> + Send + 'static> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => {}
        }
    })
}

async fn bind(args: &Args) -> anyhow::Result<TcpListener> {
    let addr: SocketAddr = args.listen.parse().context("--listen")?;
    if !addr.ip().is_loopback() {
        bail!("the benchmark server listens on loopback only, not {addr}");
    }
    let listener = TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    if let Some(f) = &args.port_file {
        std::fs::write(f, format!("{}\n", bound.port()))?;
    }
    println!("listening {bound}");
    Ok(listener)
}

async fn run(args: Args) -> anyhow::Result<()> {
    let stop = shutdown_signal()?;
    match (args.mode.as_str(), args.store.as_str()) {
        ("floor", _) => {
            let app = Router::new().route("/v1/decide", post(floor));
            let listener = bind(&args).await?;
            axum::serve(listener, app).with_graceful_shutdown(stop).await?;
            Ok(())
        }
        ("decide", "sqlite") => {
            // What `rein serve` does (`rein_server::run`), minus SIGHUP
            // reload and logging setup, plus the ephemeral port.
            let db = args.db.clone().context("--store sqlite needs --db FILE")?;
            let mut config = ServerConfig::new(vec![args.policy.clone()], db);
            config.tokens_path = args.tokens.clone();
            config.hmac_key_path = args.audit_key.clone();
            let state = AppState::from_config(&config).await?;
            let listener = bind(&args).await?;
            let served = rein_server::serve(listener, state.clone(), stop).await;
            let closed = state.close().await;
            served.and(closed)
        }
        ("decide", "none") => {
            let tokens_file = args.tokens.clone().context("--store none needs --tokens FILE")?;
            let key_file = args.audit_key.clone().context("--store none needs --audit-key FILE")?;
            let paths = vec![args.policy.clone()];
            let policy = Policy::load(&paths).map_err(|e| anyhow::anyhow!("{}", e.render(false)))?;
            let tokens = Tokens::load(&tokens_file)?;
            let key = std::fs::read(&key_file).with_context(|| key_file.display().to_string())?;
            let config = ServerConfig::new(paths, PathBuf::from("unused.db"));
            let store: Arc<dyn Store> = Arc::new(NoAudit { seq: AtomicU64::new(0) });
            let state = AppState::new(&config, policy, store, tokens, key);
            let listener = bind(&args).await?;
            rein_server::serve(listener, state, stop).await
        }
        (m, s) => bail!("unknown variant --mode {m} --store {s}"),
    }
}

fn main() -> anyhow::Result<()> {
    let args = parse_args()?;
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    // As `rein serve`, unless told otherwise.
    builder.worker_threads(args.threads.unwrap_or_else(rein_server::default_workers).max(1));
    let rt = builder.enable_all().build()?;
    rt.block_on(run(args))
}
