//! `rein serve`

use super::{PolicyArgs, EXIT_ALLOW};
use clap::Args;
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct ServeArgs {
    #[command(flatten)]
    policy: PolicyArgs,
    /// The SQLite file for the audit log and approvals (created if absent;
    /// its directory must exist).
    #[arg(long, value_name = "FILE", default_value = "rein.db")]
    db: PathBuf,
    /// Address to listen on. The default is loopback only.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8700")]
    listen: SocketAddr,
    /// Bearer tokens with roles (`tokens: [{name, role, token, approves}]`).
    /// Default: `rein-tokens.yaml` beside the database, created with one
    /// fresh token per role if absent.
    #[arg(long, value_name = "FILE")]
    tokens: Option<PathBuf>,
    /// The key for hashing sensitive fields in the audit log (an existing
    /// file). Default: `rein-audit.key` beside the database, created on
    /// first start (not once the store has records: a new key would not
    /// match the hashes already kept).
    #[arg(long, value_name = "FILE")]
    audit_key: Option<PathBuf>,
    /// Largest request body on every route (decisions, outcomes, hook
    /// events, approvals), in bytes (1 KiB to 1 GiB); a larger one is
    /// refused, and an agent's is recorded as a `block`.
    #[arg(long, value_name = "BYTES", default_value_t = 1024 * 1024,
          value_parser = clap::value_parser!(u64).range(1024..=(1 << 30)))]
    max_body: u64,
    /// Threads answering requests. Default: one less than the CPUs (at
    /// least one); the audit log's writer has a thread of its own.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=1024))]
    workers: Option<u16>,
}

/// Runs the server; `color` (from `--color`, NO_COLOR and whether stderr
/// is a terminal) decides whether the log has ANSI colours.
pub fn run(args: ServeArgs, color: bool) -> anyhow::Result<u8> {
    let filter = tracing_subscriber::EnvFilter::try_from_env("REIN_LOG").unwrap_or_else(|_| "info".into());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(color)
        .try_init();
    let mut config = rein_server::ServerConfig::new(args.policy.paths(), args.db);
    config.listen = args.listen;
    config.tokens_path = args.tokens;
    config.hmac_key_path = args.audit_key;
    config.max_body_bytes = usize::try_from(args.max_body)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.workers.map_or_else(rein_server::default_workers, usize::from))
        .enable_all()
        .build()?;
    rt.block_on(rein_server::run(config))?;
    Ok(EXIT_ALLOW)
}
