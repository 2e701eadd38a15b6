//! `rein serve`

use super::{PolicyArgs, EXIT_ALLOW};
use clap::Args;
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Args, Debug)]
#[command(after_help = "Examples:\n  \
    # the example policy; rein.db, rein-tokens.yaml and the keys in the current folder\n  \
    rein serve examples/refund/policy.yaml\n\n  \
    # your own tokens file (actors bound to tokens, JWT issuers)\n  \
    rein serve policy.yaml --tokens tokens.yaml --listen 127.0.0.1:8700\n\n  \
    # then, with a token of the file:\n  \
    curl -s http://127.0.0.1:8700/v1/decide -H \"Authorization: Bearer $TOKEN\" \\\n      \
    -d @examples/refund/request.json\n\n\
        Routes: GET /openapi.json. Tokens, JWT issuers and delegation: docs/identity.md.")]
pub struct ServeArgs {
    #[command(flatten)]
    policy: PolicyArgs,
    /// The store for the audit log, approvals, state and policy versions:
    /// a SQLite file (created if absent; its directory must exist), or a
    /// PostgreSQL URL (`postgres://user:password@host:5432/db?sslmode=require`)
    /// shared by several replicas: then give every replica the same
    /// --audit-key, --tokens and --delegation-key (docs/replicas.md). TLS
    /// as the URL's `sslmode` says (`disable`, `prefer`, `require`); the
    /// server's certificate is verified against the CA file in
    /// `REIN_DB_CA_FILE`, else the system's roots.
    #[arg(
        long,
        value_name = "FILE|URL",
        default_value = "rein.db",
        env = "REIN_DB",
        hide_env_values = true
    )]
    db: String,
    /// Address to listen on: IP:PORT, `localhost:PORT`, or a port alone
    /// (on loopback). The default is loopback only.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8700", value_parser = listen_addr)]
    listen: SocketAddr,
    /// Bearer tokens with roles, and what each binds: `tokens: [{name,
    /// role, token, approves, actor, chain, actions}]`, e.g. `{name: bot,
    /// role: agent, token: "…", actor: {id: bot, tenant: acme}, chain:
    /// ["user:alice", "agent:bot"], actions: [refund, "order.*"]}`; and JWT
    /// issuers whose tokens it accepts: `issuers: [{name, issuer, audience,
    /// jwks_file or jwks_url, …}]` (docs/identity.md). Read at start: a
    /// mistake stops it with the file's line and column.
    /// Default: `rein-tokens.yaml` beside the database (on PostgreSQL: in
    /// the current folder), created with one fresh token per role if absent.
    #[arg(long, value_name = "FILE")]
    tokens: Option<PathBuf>,
    /// The key for hashing sensitive fields in the audit log (an existing
    /// file). Default: `rein-audit.key` beside the database (on
    /// PostgreSQL: in the current folder), created on first start (not once
    /// the store has records: a new key would not match the hashes already
    /// kept; a replica with another key than the store's is refused).
    #[arg(long, value_name = "FILE")]
    audit_key: Option<PathBuf>,
    /// The Ed25519 key (a file of 32 random bytes) that signs delegation
    /// tokens (`rein token delegate`); replicas that accept each other's
    /// delegation tokens share it. Default: `rein-delegation.key` beside
    /// the database (on PostgreSQL: in the current folder), created on
    /// first start. A new key ends every delegation token signed with the
    /// old one.
    #[arg(long, value_name = "FILE")]
    delegation_key: Option<PathBuf>,
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
    /// How long a session is kept after its last call (`24h`, `90m`, `168h`):
    /// its calls and labels, which stateful rules read. A session idle
    /// longer starts empty, as a new one.
    #[arg(long, value_name = "DURATION", default_value = "24h", value_parser = session_idle)]
    session_idle: jiff::SignedDuration,
    /// The most memory the state of limits and sessions may hold, in MiB
    /// (recorded calls keep their inputs and outputs). At the bound a
    /// decision that would add to it is `block`, saying so; nothing held
    /// is forgotten, and room frees up as windows pass and sessions expire.
    #[arg(long, value_name = "MIB", default_value_t = 512,
          value_parser = clap::value_parser!(u64).range(1..=(1 << 20)))]
    state_max_mib: u64,
    /// Take a request's own `time` as the decision's time, for rules and
    /// limit windows. For tests and trusted replays only: an agent that
    /// chose its clock could step around time-based rules and limits.
    #[arg(long)]
    trust_request_time: bool,
    /// A candidate policy (files or directories, as POLICY) decided in
    /// shadow beside the enforced one: every decision's audit record keeps
    /// what it decided, answers stay the enforced policy's, and it opens
    /// no approval and writes no state. A candidate that does not load
    /// stops the start. A reload keeps it as loaded; change it with `POST
    /// /v1/policy/shadow`, stop it with `DELETE` (docs/shadow.md); see the
    /// differences with `rein audit shadow-report`.
    #[arg(long = "shadow", num_args = 1.., value_name = "CANDIDATE_POLICY")]
    shadow: Vec<PathBuf>,
    /// On a PostgreSQL store shared by replicas: publish this replica's
    /// policy files at start, so that EVERY replica switches to them (a
    /// deploy of new files). Without it a replica serves the version
    /// already published (loaded from the database, its own files
    /// differing: logged, and said in /healthz) and publishes its files
    /// only when none is published yet, so that a replica restarted with
    /// older files never moves the others back. A reload (SIGHUP, POST
    /// /v1/policy/reload) publishes the files too. No effect on SQLite.
    #[arg(long)]
    publish: bool,
    /// Mark the web console's cookies `Secure` (browsers then send them
    /// over HTTPS only): for a console reached through a proxy that ends
    /// TLS. The console is at /console on the listen address.
    #[arg(long)]
    console_secure_cookie: bool,
    /// Announce each approval this server opens to this webhook (http or
    /// https; repeatable): a JSON POST in Slack's shape (`text`, `blocks`)
    /// with Rein's fields under `rein` and a link to the approval's page,
    /// never the request's input or any sensitive value. Retried with
    /// backoff on network errors, 429 and 5xx (five attempts).
    #[arg(long = "notify-webhook", value_name = "URL", value_parser = http_url)]
    notify_webhook: Vec<url::Url>,
    /// The base URL people reach this server at (the links in
    /// notifications, e.g. `https://rein.example.com`). Default: the
    /// address it listens on.
    #[arg(long, value_name = "URL", value_parser = http_url)]
    public_url: Option<url::Url>,
    /// Export a trace of each decision (spans for the contract check, the
    /// policy, state and the audit append) over OTLP HTTP/protobuf to this
    /// collector (`http://localhost:4318`; `/v1/traces` is added). Off
    /// unless set. A caller's `traceparent` is kept in the audit record
    /// either way.
    #[arg(long, value_name = "URL", env = "OTEL_EXPORTER_OTLP_ENDPOINT", value_parser = http_url)]
    otlp_endpoint: Option<url::Url>,
}

/// An http or https URL (a webhook, the public URL, the OTLP collector).
fn http_url(text: &str) -> Result<url::Url, String> {
    let url = url::Url::parse(text).map_err(|e| format!("not a URL: {e}"))?;
    match url.scheme() {
        "http" | "https" if url.host().is_some() => Ok(url),
        "http" | "https" => Err("the URL has no host".to_string()),
        other => Err(format!("`{other}` is not http or https")),
    }
}

/// The log of a long-running command (`rein serve`, `rein mcp gateway`):
/// stderr (a stdio gateway's stdout carries MCP messages only), filtered by
/// `REIN_LOG` (default `info`), coloured when `color`.
pub(super) fn init_log(color: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("REIN_LOG").unwrap_or_else(|_| "info".into());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(color)
        .try_init();
}

/// Runs the server; `color` (from `--color`, NO_COLOR and whether stderr
/// is a terminal) decides whether the log has ANSI colours.
pub fn run(args: ServeArgs, color: bool) -> anyhow::Result<u8> {
    init_log(color);
    let mut config = rein_server::ServerConfig::at(args.policy.paths(), rein_store::StoreLocation::parse(&args.db));
    config.listen = args.listen;
    config.tokens_path = args.tokens;
    config.hmac_key_path = args.audit_key;
    config.delegation_key_path = args.delegation_key;
    config.max_body_bytes = usize::try_from(args.max_body)?;
    config.session_idle = args.session_idle;
    config.max_state_bytes = usize::try_from(args.state_max_mib.saturating_mul(1024 * 1024))?;
    config.trust_request_time = args.trust_request_time;
    config.shadow_paths = args.shadow;
    config.publish = args.publish;
    config.console_secure_cookie = args.console_secure_cookie;
    config.notify_webhooks = args.notify_webhook;
    config.public_url = args.public_url;
    config.otlp_endpoint = args.otlp_endpoint;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.workers.map_or_else(rein_server::default_workers, usize::from))
        .enable_all()
        .build()?;
    let location = config.store.clone();
    // An error of the driver may quote the URL: never its password.
    rt.block_on(rein_server::run(config))
        .map_err(|e| anyhow::anyhow!("{}", rein_server::scrub_password(&location, &format!("{e:#}"))))?;
    Ok(EXIT_ALLOW)
}

/// A `--session-idle` value: a positive duration (`24h`, `90m`, `1h30m`).
fn session_idle(text: &str) -> Result<jiff::SignedDuration, String> {
    match text.parse::<jiff::SignedDuration>() {
        Ok(d) if d.is_positive() => Ok(d),
        Ok(_) => Err("must be longer than zero".to_string()),
        Err(_) => Err("must be a duration like 24h, 90m or 1h30m".to_string()),
    }
}

/// A `--listen` value: an IP address and port; `localhost:PORT` and a bare
/// port mean loopback (a bare port never means every interface).
pub(super) fn listen_addr(text: &str) -> Result<SocketAddr, String> {
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Ok(addr);
    }
    let port = text.strip_prefix("localhost:").unwrap_or(text);
    match port.parse::<u16>() {
        Ok(port) => Ok(SocketAddr::from((std::net::Ipv4Addr::LOCALHOST, port))),
        Err(_) => Err(
            "must be IP:PORT (127.0.0.1:8700, or 0.0.0.0:8700 for every interface), localhost:PORT \
                       or a port"
                .to_string(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_takes_an_address_localhost_or_a_port() {
        let ok = |t: &str| listen_addr(t).unwrap().to_string();
        assert_eq!(ok("127.0.0.1:8700"), "127.0.0.1:8700");
        assert_eq!(ok("0.0.0.0:9000"), "0.0.0.0:9000");
        assert_eq!(ok("[::1]:8700"), "[::1]:8700");
        assert_eq!(ok("localhost:8701"), "127.0.0.1:8701");
        assert_eq!(ok("8702"), "127.0.0.1:8702");
        for bad in ["", "host:80", "8700x", "70000", "localhost", ":8700"] {
            assert!(listen_addr(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn session_idle_takes_a_positive_duration() {
        assert_eq!(session_idle("24h").unwrap(), jiff::SignedDuration::from_hours(24));
        assert_eq!(session_idle("1h30m").unwrap(), jiff::SignedDuration::from_mins(90));
        // Days are not a fixed length (time zones): hours say it.
        for bad in ["", "0s", "-1h", "soon", "24", "7d"] {
            assert!(session_idle(bad).is_err(), "{bad}");
        }
    }
}
