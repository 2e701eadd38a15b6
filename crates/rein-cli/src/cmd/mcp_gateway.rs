//! `rein mcp gateway`, `rein mcp contracts`, `rein mcp pin`.

use super::{PolicyArgs, EXIT_ALLOW, EXIT_BLOCK, EXIT_USAGE};
use anyhow::Context;
use clap::{ArgMatches, Args, Command, FromArgMatches};
use rein_engine::syntax::yaml::{self, YamlValue};
use rein_mcp::gateway::{Gateway, GatewayConfig, GatewayError, ServerConfig};
use rein_mcp::pin::{Drift, LockFile, ServerPins};
use rein_mcp::proxy::SessionInfo;
use rein_mcp::upstream::{Limits, UpstreamSpec};
use serde_json::Value as Json;
use std::collections::BTreeMap;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// Options of `rein mcp gateway` as clap reads them; the order of
/// `--server` and `--url` (which pairs them) is read beside, see
/// [`GatewayArgs`].
#[derive(Args, Debug)]
pub struct GatewayOpts {
    #[command(flatten)]
    policy: PolicyArgs,
    /// A server behind the gateway: its name (`mcp.<name>.<tool>` in the
    /// policy, `/mcp/<name>` over HTTP). Followed by `--url URL` for a
    /// Streamable HTTP server; the one server without `--url` runs the
    /// command after `--`.
    #[arg(long = "server", value_name = "NAME")]
    servers: Vec<String>,
    /// The Streamable HTTP endpoint of the `--server` given just before.
    #[arg(long = "url", value_name = "URL")]
    urls: Vec<String>,
    /// A YAML or JSON file listing the servers instead of --server:
    /// `servers: {a: {url: URL}, b: {command: [prog, arg…], env: {K: V},
    /// cwd: DIR}}`.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["servers", "urls", "command"])]
    config: Option<PathBuf>,
    /// Serve Streamable HTTP at http://ADDR/mcp/<server> (a loopback
    /// IP:PORT, `localhost:PORT` or a port alone: the endpoint has no
    /// authentication, so other addresses are refused). Without it, the
    /// gateway speaks MCP on its own stdin and stdout, in front of one
    /// server.
    #[arg(long, value_name = "ADDR", value_parser = loopback_addr)]
    listen: Option<SocketAddr>,
    /// The store for the audit log, approvals and state, as `rein serve`'s:
    /// a SQLite file (created if absent; its directory must exist) or a
    /// PostgreSQL URL.
    #[arg(
        long,
        value_name = "FILE|URL",
        default_value = "rein.db",
        env = "REIN_DB",
        hide_env_values = true
    )]
    db: String,
    /// The key for hashing sensitive fields in the audit log. Default:
    /// `rein-audit.key` beside the database, created on first start.
    #[arg(long, value_name = "FILE")]
    audit_key: Option<PathBuf>,
    /// How long a call the policy sends for approval waits for a person
    /// (`rein approvals grant ID`) before it is refused.
    #[arg(long, value_name = "DURATION", default_value = "600s", value_parser = duration)]
    approval_timeout: Duration,
    /// How long a server may take to answer a request before the call is
    /// refused (`-32603`) and cancelled on the server.
    #[arg(long, value_name = "DURATION", default_value = "300s", value_parser = duration)]
    upstream_timeout: Duration,
    /// How long a server may take to start and list its tools.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = duration)]
    startup_timeout: Duration,
    /// The largest message, in MiB, taken from a client or a server; a
    /// larger one is refused.
    #[arg(long, value_name = "MIB", default_value_t = 16,
          value_parser = clap::value_parser!(u64).range(1..=1024))]
    max_message_mib: u64,
    /// The `actor` of every request the gateway decides (a JSON object,
    /// e.g. '{"id": "claude", "team": "infra"}'). Default: none.
    #[arg(long, value_name = "JSON")]
    actor: Option<String>,
    /// Let the user of an MCP client that supports elicitation grant or
    /// deny, in the client, a call held for approval whose rules all name
    /// this role (`approval: {role: ROLE}` in the policy). The person who
    /// answers is the agent's user, not an approver of `rein approvals`:
    /// name a role meant for them. Without it, only `rein approvals` and
    /// the HTTP API decide.
    #[arg(long, value_name = "ROLE")]
    elicit_approvals: Option<String>,
    /// The stdio server's command and arguments, after `--`.
    #[arg(last = true, value_name = "COMMAND")]
    command: Vec<String>,
}

/// `rein mcp gateway`'s arguments: the options, and where each `--server`
/// and `--url` stood on the command line.
#[derive(Debug)]
pub struct GatewayArgs {
    // Boxed: the options are most of the size of `rein mcp`'s arguments.
    opts: Box<GatewayOpts>,
    server_at: Vec<usize>,
    url_at: Vec<usize>,
}

impl FromArgMatches for GatewayArgs {
    fn from_arg_matches(matches: &ArgMatches) -> Result<Self, clap::Error> {
        let positions = |id: &str| matches.indices_of(id).map(Iterator::collect).unwrap_or_default();
        Ok(GatewayArgs {
            opts: Box::new(GatewayOpts::from_arg_matches(matches)?),
            server_at: positions("servers"),
            url_at: positions("urls"),
        })
    }

    fn update_from_arg_matches(&mut self, matches: &ArgMatches) -> Result<(), clap::Error> {
        *self = GatewayArgs::from_arg_matches(matches)?;
        Ok(())
    }
}

impl Args for GatewayArgs {
    fn augment_args(cmd: Command) -> Command {
        GatewayOpts::augment_args(cmd)
    }

    fn augment_args_for_update(cmd: Command) -> Command {
        GatewayOpts::augment_args_for_update(cmd)
    }
}

/// One server to list: `--server NAME` with `--url URL` or a command after
/// `--`.
#[derive(Args, Debug)]
pub struct OneServer {
    /// The server's name (`mcp.<name>.<tool>` in the policy).
    #[arg(long, value_name = "NAME")]
    server: String,
    /// The server's Streamable HTTP endpoint (instead of a command).
    #[arg(long, value_name = "URL", conflicts_with = "command")]
    url: Option<String>,
    /// How long the server may take to start and list its tools.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = duration)]
    startup_timeout: Duration,
    /// The stdio server's command and arguments, after `--`.
    #[arg(last = true, value_name = "COMMAND", required_unless_present = "url")]
    command: Vec<String>,
}

#[derive(Args, Debug)]
pub struct ContractsArgs {
    #[command(flatten)]
    target: OneServer,
}

#[derive(Args, Debug)]
pub struct PinArgs {
    #[command(flatten)]
    policy: PolicyArgs,
    #[command(flatten)]
    target: OneServer,
    /// Compare the server's tools with the pins and print what changed
    /// (exit 1 if anything did), writing nothing.
    #[arg(long)]
    check: bool,
}

/// Runs the gateway until its client leaves (stdio) or SIGINT/SIGTERM
/// (`--listen`).
pub fn run_gateway(args: GatewayArgs, color: bool) -> anyhow::Result<u8> {
    super::serve::init_log(color);
    let servers = servers(&args)?;
    let opts = *args.opts;
    let policy_paths = opts.policy.paths();
    if policy_paths.is_empty() {
        anyhow::bail!("give the policy with --policy (or as an argument)");
    }
    if opts.listen.is_none() && servers.len() != 1 {
        anyhow::bail!(
            "without --listen the gateway serves one server on its stdin and stdout (got {}); use --listen for several",
            servers.len()
        );
    }
    let actor = match &opts.actor {
        None => Json::Null,
        Some(text) => match rein_engine::json::parse_strict(text.as_bytes()) {
            Ok(actor @ Json::Object(_)) => actor,
            Ok(_) => anyhow::bail!("--actor must be a JSON object"),
            Err(e) => anyhow::bail!("--actor is not valid JSON: {e}"),
        },
    };
    let config = GatewayConfig {
        policy_paths: policy_paths.clone(),
        servers,
        limits: Limits {
            max_message_bytes: usize::try_from(opts.max_message_mib << 20)?,
            upstream_timeout: opts.upstream_timeout,
            startup_timeout: opts.startup_timeout,
        },
        approval_timeout: opts.approval_timeout,
        actor,
        elicit_approval_role: opts.elicit_approvals.clone(),
    };
    let mut store_config = rein_server::ServerConfig::at(policy_paths, rein_store::StoreLocation::parse(&opts.db));
    store_config.hmac_key_path = opts.audit_key;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(rein_server::default_workers())
        .enable_all()
        .build()?;
    rt.block_on(async move {
        // Bound first: an address in use stops the start before the store
        // is opened or a server started.
        let listener = match opts.listen {
            Some(addr) => Some(
                tokio::net::TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("cannot listen on {addr}"))?,
            ),
            None => None,
        };
        let prepared = match Gateway::prepare(&config, color).await {
            Ok(prepared) => prepared,
            Err(GatewayError::Policy(rendered)) => {
                eprint!("{rendered}");
                if !rendered.ends_with('\n') {
                    eprintln!();
                }
                eprintln!("error: the policy (with the contracts derived from the servers' tools) did not load");
                return Ok(EXIT_USAGE);
            }
            Err(e) => return Err(e.into()),
        };
        for notice in &prepared.notices {
            tracing::warn!("{notice}");
        }
        let lock_path = rein_mcp::pin::lock_path(&config.policy_paths);
        for server in prepared.servers.values().filter(|s| s.pinned) {
            tracing::info!(
                "MCP server `{}` is pinned: its {} tools are those of {}",
                server.name,
                server.catalog.tools.len(),
                lock_path.display()
            );
        }
        for w in prepared.policy.warnings() {
            tracing::warn!(warning = %w, "policy warning");
        }
        let opened = store_config.open_store().await.map_err(|e| {
            if e.to_string().contains(rein_store::StateLock::HELD) {
                // The usual cause: a client starting one stdio gateway per
                // server (or two clients) on one store.
                e.context(format!(
                    "the store {} is kept by another Rein process; a gateway keeps its store for its lifetime, so \
                     give each stdio gateway a --db of its own, or run one `rein mcp gateway --listen` for every \
                     server and client",
                    store_config.store.redacted()
                ))
            } else {
                e
            }
        })?;
        let closer = opened.closer();
        let runtime_config = store_config.runtime_config(opened.hmac_key);
        let runtime = Arc::new(rein_runtime::Runtime::new(
            prepared.policy,
            Arc::clone(&opened.store),
            runtime_config,
        ));
        if let Some(lock) = opened.state_lock {
            runtime.hold_state_lock(lock);
        }
        rein_server::ready_runtime(&runtime, &store_config).await?;
        // Without it no held call could be granted (`rein approvals grant`
        // on the store takes an approver's token from it); `rein serve`
        // cannot make it while the gateway keeps the store.
        if store_config.ensure_tokens_file_quietly()? {
            tracing::info!(
                "created the tokens file {} (one token per role; keep it secret)",
                store_config.tokens_file().display()
            );
        }
        approvals_notice(&store_config);
        let gateway = Arc::new(Gateway::new(&config, prepared.servers, Arc::clone(&runtime)));
        let pruner = tokio::spawn(rein_server::prune_state_every_minute(Arc::clone(&runtime)));
        let served = match listener {
            Some(listener) => serve_http(gateway, listener).await,
            None => serve_stdio(gateway).await,
        };
        pruner.abort();
        // What was queued is committed before the process ends.
        let closed = closer.close().await;
        runtime.release_state_lock();
        served.and(closed)?;
        Ok(EXIT_ALLOW)
    })
}

/// Says how a held call is granted, with this store's path: `rein
/// approvals` looks for `./rein.db` unless told, and on the store file it
/// takes an approver's token from the tokens file beside the store, which
/// the gateway does not create (`rein serve` does, and cannot run on a
/// store the gateway holds).
fn approvals_notice(store: &rein_server::ServerConfig) {
    let Some(db) = store.sqlite_path() else {
        // `rein approvals grant` decides on a PostgreSQL store through a
        // server only (its token checked against the server's tokens).
        tracing::info!(
            "calls held for approval: grant them through a `rein serve` on the same database: `rein approvals \
             grant ID --server URL --token <an approver's token>`"
        );
        return;
    };
    let db = std::path::absolute(db).unwrap_or_else(|_| db.to_path_buf());
    let tokens = store.tokens_file();
    let tokens = std::path::absolute(&tokens).unwrap_or(tokens);
    if tokens.exists() {
        tracing::info!(
            "calls held for approval: `rein approvals list --db {}`, then `rein approvals grant ID --db {} --token \
             <an approver's token of {}>`",
            db.display(),
            db.display(),
            tokens.display()
        );
    } else {
        tracing::warn!(
            "no tokens file {}: a call the policy sends for approval cannot be granted (`rein approvals grant` \
             needs an approver's token from it) and is refused after --approval-timeout; write one (see \
             docs/mcp.md, Approvals) before such calls come",
            tokens.display()
        );
    }
}

async fn serve_stdio(gateway: Arc<Gateway>) -> anyhow::Result<()> {
    let Some(server) = gateway.servers.keys().next().cloned() else {
        anyhow::bail!("no server to serve");
    };
    let info = SessionInfo {
        session: Some(format!("mcp-{}", random_hex(8)?)),
        client: format!("mcp:{server}"),
    };
    tracing::info!(server = %server, session = info.session.as_deref().unwrap_or("-"), "rein MCP gateway on stdin/stdout");
    let limits = gateway.limits.clone();
    let handle = rein_mcp::proxy::start_session(gateway, &server, info)?;
    let stop = stop_signal()?;
    tokio::select! {
        served = rein_mcp::stdio::serve_stdio(handle, &limits) => served.context("the client's stdin or stdout failed")?,
        () = stop => {}
    }
    Ok(())
}

async fn serve_http(gateway: Arc<Gateway>, listener: tokio::net::TcpListener) -> anyhow::Result<()> {
    let addr = listener.local_addr()?;
    for name in gateway.servers.keys() {
        tracing::info!(server = %name, "serving http://{addr}/mcp/{name}");
    }
    let stop = stop_signal()?;
    rein_mcp::gateway::serve_http(gateway, listener, stop).await?;
    tracing::info!("rein MCP gateway stopped");
    Ok(())
}

/// SIGINT or SIGTERM, installed now (a signal before it would kill the
/// process without closing the store).
fn stop_signal() -> anyhow::Result<impl std::future::Future<Output = ()> + Send + 'static> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut interrupt = signal(SignalKind::interrupt()).context("cannot install the SIGINT handler")?;
    let mut terminate = signal(SignalKind::terminate()).context("cannot install the SIGTERM handler")?;
    Ok(async move {
        tokio::select! {
            _ = interrupt.recv() => tracing::info!("SIGINT: shutting down"),
            _ = terminate.recv() => tracing::info!("SIGTERM: shutting down"),
        }
    })
}

/// Prints the contracts derived from a server's tools.
pub fn run_contracts(args: ContractsArgs, _color: bool) -> anyhow::Result<u8> {
    let (name, spec) = one_server(&args.target)?;
    let catalog = list(&spec, args.target.startup_timeout)?;
    let derived = rein_mcp::contracts::derive(&name, &catalog);
    for unmapped in &derived.unmapped {
        let place = if unmapped.path.is_empty() {
            String::new()
        } else {
            format!(" {}", unmapped.path)
        };
        eprintln!("warning: tool `{}`{place}: {}", unmapped.tool, unmapped.reason);
    }
    let mut out = std::io::stdout().lock();
    out.write_all(derived.yaml.as_bytes())?;
    Ok(EXIT_ALLOW)
}

/// Pins a server's tools in the lock file, or (`--check`) compares them.
pub fn run_pin(args: PinArgs, _color: bool) -> anyhow::Result<u8> {
    let policy_paths = args.policy.paths();
    if policy_paths.is_empty() {
        anyhow::bail!("give the policy with --policy (or as an argument): the lock file is kept beside it");
    }
    let (name, spec) = one_server(&args.target)?;
    let lock_path = rein_mcp::pin::lock_path(&policy_paths);
    let lock = LockFile::read(&lock_path)?;
    let catalog = list(&spec, args.target.startup_timeout)?;
    let mut out = std::io::stdout().lock();
    if args.check {
        let Some(pins) = lock.as_ref().and_then(|l| l.servers.get(&name)) else {
            writeln!(out, "server `{name}` is not pinned in {}", lock_path.display())?;
            return Ok(EXIT_BLOCK);
        };
        let drift = pins.compare(&catalog);
        if drift.is_empty() {
            writeln!(out, "server `{name}`: its {} tools are as pinned", catalog.tools.len())?;
            return Ok(EXIT_ALLOW);
        }
        for d in &drift {
            writeln!(out, "{}", describe_drift(d))?;
        }
        writeln!(
            out,
            "server `{name}`: {} change{} since it was pinned; run `rein mcp pin` without --check to accept",
            drift.len(),
            if drift.len() == 1 { "" } else { "s" }
        )?;
        return Ok(EXIT_BLOCK);
    }
    let mut lock = lock.unwrap_or_default();
    let now = jiff::Timestamp::now().to_string();
    let pins = ServerPins::from_catalog(&spec.describe(), &catalog, &now);
    let previous = lock.servers.insert(name.clone(), pins);
    lock.write(&lock_path)?;
    writeln!(
        out,
        "{} {} tool{} of server `{name}` in {}",
        if previous.is_some() { "re-pinned" } else { "pinned" },
        catalog.tools.len(),
        if catalog.tools.len() == 1 { "" } else { "s" },
        lock_path.display()
    )?;
    Ok(EXIT_ALLOW)
}

fn describe_drift(drift: &Drift) -> String {
    match drift {
        Drift::Added { tool } => format!("added: tool `{tool}`"),
        Drift::Removed { tool } => format!("removed: tool `{tool}`"),
        Drift::Changed { tool, parts } => format!("changed: tool `{tool}` ({})", parts.join(", ")),
    }
}

/// Lists a server's tools on a runtime of its own.
fn list(spec: &UpstreamSpec, startup_timeout: Duration) -> anyhow::Result<rein_mcp::catalog::Catalog> {
    let limits = Limits {
        startup_timeout,
        ..Limits::default()
    };
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(rein_mcp::gateway::list_tools(spec, &limits))
        .map_err(|e| anyhow::anyhow!("cannot list the tools of {}: {e}", spec.describe()))
}

fn one_server(target: &OneServer) -> anyhow::Result<(String, UpstreamSpec)> {
    if !rein_mcp::catalog::valid_server_name(&target.server) {
        anyhow::bail!(
            "`{}` cannot name a server: 1 to 64 letters, digits, `_` or `-`",
            target.server
        );
    }
    let spec = match &target.url {
        Some(url) => UpstreamSpec::Http { url: url.clone() },
        None => stdio_spec(&target.command)?,
    };
    Ok((target.server.clone(), spec))
}

fn stdio_spec(command: &[String]) -> anyhow::Result<UpstreamSpec> {
    let Some((program, args)) = command.split_first() else {
        anyhow::bail!("give the server's command after `--`, or its --url");
    };
    Ok(UpstreamSpec::Stdio {
        program: program.clone(),
        args: args.to_vec(),
        env: Vec::new(),
        cwd: None,
    })
}

/// The servers of the command line (or of --config): each `--url` belongs
/// to the `--server` just before it; the one server without a URL runs the
/// command after `--`.
fn servers(args: &GatewayArgs) -> anyhow::Result<Vec<ServerConfig>> {
    let opts = &args.opts;
    if let Some(path) = &opts.config {
        return config_file(path);
    }
    if opts.servers.is_empty() {
        anyhow::bail!(
            "name the server behind the gateway: --server NAME -- <command…> (or --url URL), or --config FILE"
        );
    }
    let mut urls: Vec<Option<String>> = vec![None; opts.servers.len()];
    for (url, at) in opts.urls.iter().zip(&args.url_at) {
        let Some(owner) = args.server_at.iter().rposition(|s| s < at) else {
            anyhow::bail!("--url {url} comes before any --server: write --server NAME --url URL");
        };
        if urls[owner].is_some() {
            anyhow::bail!("server `{}` has two --url", opts.servers[owner]);
        }
        urls[owner] = Some(url.clone());
    }
    let mut command_taken = false;
    let mut servers = Vec::new();
    for (name, url) in opts.servers.iter().zip(urls) {
        if !rein_mcp::catalog::valid_server_name(name) {
            anyhow::bail!("`{name}` cannot name a server: 1 to 64 letters, digits, `_` or `-`");
        }
        let spec = match url {
            Some(url) => UpstreamSpec::Http { url },
            None if command_taken => anyhow::bail!(
                "server `{name}` has no --url, and the command after `--` is another server's: give each stdio \
                 server in --config"
            ),
            None => {
                command_taken = true;
                stdio_spec(&opts.command)
                    .with_context(|| format!("server `{name}` has no --url and no command after `--`"))?
            }
        };
        servers.push(ServerConfig {
            name: name.clone(),
            spec,
        });
    }
    if !command_taken && !opts.command.is_empty() {
        anyhow::bail!("every --server has a --url: the command after `--` belongs to none (name it with --server)");
    }
    Ok(servers)
}

/// The servers of a `--config` file.
fn config_file(path: &Path) -> anyhow::Result<Vec<ServerConfig>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let root = yaml::parse(&text).map_err(|e| anyhow::anyhow!("{}: {}", path.display(), e.message))?;
    let json = yaml_json(&root.value).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    let file: ConfigFile = serde_json::from_value(json).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    if file.servers.is_empty() {
        anyhow::bail!("{}: `servers` lists no server", path.display());
    }
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut servers = Vec::new();
    for (name, entry) in file.servers {
        if !rein_mcp::catalog::valid_server_name(&name) {
            anyhow::bail!(
                "{}: `{name}` cannot name a server: 1 to 64 letters, digits, `_` or `-`",
                path.display()
            );
        }
        let spec = match (entry.url, entry.command) {
            (Some(url), None) => UpstreamSpec::Http { url },
            (None, Some(command)) => {
                let Some((program, args)) = command.split_first() else {
                    anyhow::bail!("{}: server `{name}`: `command` is empty", path.display());
                };
                // A relative folder is the config file's. A folder that is
                // not there is said now, not at the server's first call.
                let cwd = entry.cwd.map(|c| dir.join(c));
                if let Some(cwd) = &cwd {
                    if !cwd.is_dir() {
                        anyhow::bail!(
                            "{}: server `{name}`: `cwd` {} is not a folder",
                            path.display(),
                            cwd.display()
                        );
                    }
                }
                UpstreamSpec::Stdio {
                    program: program.clone(),
                    args: args.to_vec(),
                    env: entry.env.into_iter().collect(),
                    cwd,
                }
            }
            _ => anyhow::bail!(
                "{}: server `{name}` needs exactly one of `url` and `command`",
                path.display()
            ),
        };
        servers.push(ServerConfig { name, spec });
    }
    Ok(servers)
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    servers: BTreeMap<String, ConfigServer>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigServer {
    url: Option<String>,
    command: Option<Vec<String>>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    cwd: Option<PathBuf>,
}

/// A YAML value as JSON (keys must be strings).
fn yaml_json(value: &YamlValue) -> Result<Json, String> {
    Ok(match value {
        YamlValue::Null => Json::Null,
        YamlValue::Bool(b) => Json::Bool(*b),
        YamlValue::Int(i) => Json::from(*i),
        YamlValue::Float(f) => serde_json::Number::from_f64(*f).map_or(Json::Null, Json::Number),
        YamlValue::String(s) => Json::String(s.clone()),
        YamlValue::Seq(items) => Json::Array(items.iter().map(|i| yaml_json(&i.value)).collect::<Result<_, _>>()?),
        YamlValue::Map(entries) => {
            let mut map = serde_json::Map::new();
            for (k, v) in entries {
                let YamlValue::String(key) = &k.value else {
                    return Err("a key that is not a string".into());
                };
                map.insert(key.clone(), yaml_json(&v.value)?);
            }
            Json::Object(map)
        }
    })
}

/// `--listen`: an address as `rein serve` takes it, on loopback only. The
/// endpoint has no authentication of its own (anyone who reaches it calls
/// the servers' tools as the gateway's actor), so an address other
/// machines reach is refused rather than served.
fn loopback_addr(text: &str) -> Result<SocketAddr, String> {
    const FORMS: &str = "127.0.0.1:PORT, [::1]:PORT, localhost:PORT or a port alone";
    let addr = super::serve::listen_addr(text).map_err(|_| format!("must be a loopback address: {FORMS}"))?;
    if !addr.ip().is_loopback() {
        return Err(format!(
            "{} is not a loopback address, and the gateway's HTTP endpoint has no authentication of its own: \
             listen on {FORMS} (to serve other machines, put an authenticating reverse proxy in front)",
            addr.ip()
        ));
    }
    Ok(addr)
}

/// A duration option: `600s`, `10m`, `1h30m`; more than zero.
fn duration(text: &str) -> Result<Duration, String> {
    match text.parse::<jiff::SignedDuration>() {
        Ok(d) if d.is_positive() => Duration::try_from(d).map_err(|e| e.to_string()),
        Ok(_) => Err("must be longer than zero".to_string()),
        Err(_) => Err("must be a duration like 600s, 10m or 1h30m".to_string()),
    }
}

fn random_hex(bytes: usize) -> anyhow::Result<String> {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf).map_err(|e| anyhow::anyhow!("the system random generator failed: {e}"))?;
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(duration("600s").unwrap(), Duration::from_secs(600));
        assert_eq!(duration("1h30m").unwrap(), Duration::from_secs(5400));
        for bad in ["", "0s", "-5s", "soon", "5"] {
            assert!(duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn config_files_list_servers() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gateway.yaml");
        std::fs::write(
            &path,
            "servers:\n  web: {url: 'http://127.0.0.1:3001/mcp'}\n  fs:\n    command: [npx, server-filesystem, /tmp]\n    env: {A: b}\n",
        )
        .unwrap();
        let servers = config_file(&path).unwrap();
        assert_eq!(servers.len(), 2);
        assert_eq!(servers[0].name, "fs");
        assert!(
            matches!(&servers[0].spec, UpstreamSpec::Stdio { program, env, .. } if program == "npx" && env == &[("A".to_string(), "b".to_string())])
        );
        assert_eq!(
            servers[1].spec,
            UpstreamSpec::Http {
                url: "http://127.0.0.1:3001/mcp".into()
            }
        );
        for bad in [
            "servers: {}\n",
            "servers: {a: {url: u, command: [x]}}\n",
            "servers: {a: {}}\n",
            "servers: {a: {url: u, token: t}}\n",
            "servers: {'a/b': {url: u}}\n",
            "server: {a: {url: u}}\n",
        ] {
            std::fs::write(&path, bad).unwrap();
            assert!(config_file(&path).is_err(), "{bad}");
        }
        for (bad, says) in [
            ("servers: {a: {command: []}}\n", "server `a`: `command` is empty"),
            (
                "servers: {a: {command: [x], cwd: no-such-folder}}\n",
                "server `a`: `cwd` ",
            ),
        ] {
            std::fs::write(&path, bad).unwrap();
            let error = config_file(&path).unwrap_err().to_string();
            assert!(error.contains(says), "{bad}: {error}");
            assert!(error.starts_with(&path.display().to_string()), "{error}");
        }
        std::fs::create_dir(dir.path().join("work")).unwrap();
        std::fs::write(&path, "servers: {a: {command: [x], cwd: work}}\n").unwrap();
        let servers = config_file(&path).unwrap();
        assert!(
            matches!(&servers[0].spec, UpstreamSpec::Stdio { cwd: Some(cwd), .. } if cwd == &dir.path().join("work"))
        );
    }

    #[test]
    fn the_http_endpoint_listens_on_loopback_only() {
        for ok in ["127.0.0.1:8765", "[::1]:0", "localhost:8765", "8765", "127.0.0.2:1"] {
            assert!(loopback_addr(ok).unwrap().ip().is_loopback(), "{ok}");
        }
        for bad in ["0.0.0.0:8765", "[::]:8765", "192.168.1.10:8765", "8.8.8.8:1"] {
            let error = loopback_addr(bad).unwrap_err();
            assert!(error.contains("no authentication"), "{bad}: {error}");
        }
        for bad in ["", "foo", "99999", "localhost"] {
            let error = loopback_addr(bad).unwrap_err();
            assert!(error.starts_with("must be a loopback address"), "{bad}: {error}");
        }
    }
}
