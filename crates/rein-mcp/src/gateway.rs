//! The gateway as a whole: its servers, what it knows of their tools, the
//! runtime every decision goes through. Built once at start-up: each
//! server's tools are read from the lock file (pinned) or listed from the
//! server (unpinned), their contracts derived and compiled into the policy
//! beside the policy's own files.
//!
//! Start-up is in two steps so that the caller opens the store (and takes
//! its locks) only for a policy that loads: [`Gateway::prepare`] gives the
//! policy and the servers, [`Gateway::new`] puts them together with the
//! runtime made over that policy.

use crate::catalog::{self, Catalog};
use crate::contracts::{self, Unmapped};
use crate::jsonrpc::{self, Id, Kind, Message};
use crate::pin::{self, LockFile};
use crate::proxy::{upstream_connector, Connector};
use crate::upstream::{Limits, Link, UpstreamEvent, UpstreamSpec};
use rein_engine::Policy;
use rein_runtime::Runtime;
use serde_json::{json, Value as Json};
use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// The default time a call waits for a person's approval: 10 minutes.
pub const DEFAULT_APPROVAL_TIMEOUT: Duration = Duration::from_secs(600);

/// One server behind the gateway, as configured.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// Its name: the `<server>` of `mcp.<server>.<tool>` and of
    /// `/mcp/<server>`.
    pub name: String,
    /// Where it runs.
    pub spec: UpstreamSpec,
}

/// How the gateway runs.
#[derive(Clone, Debug)]
pub struct GatewayConfig {
    /// The policy files or folders.
    pub policy_paths: Vec<PathBuf>,
    /// The servers.
    pub servers: Vec<ServerConfig>,
    /// Message size and upstream time bounds.
    pub limits: Limits,
    /// How long a `require_approval` call waits for a person.
    pub approval_timeout: Duration,
    /// The `actor` of every request (`Null`: none).
    pub actor: Json,
    /// The approval role whose held calls the user of an MCP client may
    /// grant or deny in the client, asked through MCP elicitation (when the
    /// client declares the capability); `None`: only `rein approvals` and
    /// the HTTP API decide.
    pub elicit_approval_role: Option<String>,
}

/// One server as the gateway runs it.
#[derive(Debug)]
pub struct Server {
    /// Its name.
    pub name: String,
    /// Where it runs.
    pub spec: UpstreamSpec,
    /// The tools the contracts were derived from: the pins when `pinned`,
    /// else the tools the server listed at start-up. A call to a tool
    /// outside it, or one the server now lists differently, is refused.
    pub catalog: Catalog,
    /// Whether a lock file pins this server.
    pub pinned: bool,
    /// What of its tools' schemas could not be mapped to contracts.
    pub unmapped: Vec<Unmapped>,
}

/// The running gateway, shared by every session.
pub struct Gateway {
    /// Decides, records, keeps approvals and state.
    pub runtime: Arc<Runtime>,
    /// The servers by name.
    pub servers: BTreeMap<String, Arc<Server>>,
    /// Bounds.
    pub limits: Limits,
    /// How long a call waits for approval.
    pub approval_timeout: Duration,
    /// The `actor` of every request.
    pub actor: Json,
    /// See [`GatewayConfig::elicit_approval_role`].
    pub elicit_approval_role: Option<String>,
}

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// The policy (with the derived contracts) does not load; the text is
    /// the rendered diagnostics.
    #[error("{0}")]
    Policy(String),
    /// The lock file could not be read (it names itself and the reason).
    #[error("{0}")]
    Lock(String),
    /// A server could not be listed or its pins read.
    #[error("server `{server}`: {reason}")]
    Server {
        /// The server.
        server: String,
        /// Why.
        reason: String,
    },
}

/// The protocol revision the gateway's own connections ask for.
pub const LISTING_PROTOCOL_VERSION: &str = "2025-11-25";

/// The most `tools/list` pages read from one server (a server that keeps
/// giving cursors is refused rather than followed forever).
pub const MAX_LIST_PAGES: usize = 1000;

/// What start-up found, before the runtime exists.
#[derive(Debug)]
pub struct Prepared {
    /// The policy files with every server's derived contracts.
    pub policy: Policy,
    /// The servers by name.
    pub servers: BTreeMap<String, Arc<Server>>,
    /// What the operator should know, one line each: servers running
    /// unpinned, schema parts that could not be mapped, tools that cannot
    /// be governed.
    pub notices: Vec<String>,
}

impl Gateway {
    /// Reads each server's tools (from the lock file when pinned, else
    /// from the server), derives their contracts and loads the policy with
    /// them. `color`: whether the policy's diagnostics, on failure, are
    /// rendered with ANSI colours.
    pub async fn prepare(config: &GatewayConfig, color: bool) -> Result<Prepared, GatewayError> {
        Gateway::prepare_with(config, color, upstream_connector()).await
    }

    /// [`Gateway::prepare`], reaching unpinned servers through `connector`.
    pub async fn prepare_with(
        config: &GatewayConfig,
        color: bool,
        connector: Connector,
    ) -> Result<Prepared, GatewayError> {
        let mut names = HashSet::new();
        for server in &config.servers {
            if !catalog::valid_server_name(&server.name) {
                return Err(GatewayError::Server {
                    server: server.name.clone(),
                    reason: "a server name is 1 to 64 letters, digits, `_` or `-`".into(),
                });
            }
            if !names.insert(server.name.as_str()) {
                return Err(GatewayError::Server {
                    server: server.name.clone(),
                    reason: "named twice".into(),
                });
            }
            if let UpstreamSpec::Http { url } = &server.spec {
                crate::http_client::check_url(url).map_err(|e| GatewayError::Server {
                    server: server.name.clone(),
                    reason: e.to_string(),
                })?;
            }
        }
        let lock_path = pin::lock_path(&config.policy_paths);
        let lock = LockFile::read(&lock_path)
            .map_err(|e| GatewayError::Lock(e.to_string()))?
            .unwrap_or_default();
        // Unpinned servers are listed together: start-up takes the longest
        // listing, not their sum.
        let listings = config.servers.iter().map(|server| {
            let connector = Arc::clone(&connector);
            let pins = lock.servers.get(&server.name);
            async move {
                match pins {
                    Some(pins) => Ok((pins.catalog(), true)),
                    None => list_tools_with(&server.spec, &config.limits, &connector)
                        .await
                        .map(|catalog| (catalog, false))
                        .map_err(|reason| GatewayError::Server {
                            server: server.name.clone(),
                            reason: format!("its tools could not be listed: {reason}"),
                        }),
                }
            }
        });
        let listed = futures_util::future::join_all(listings).await;
        let mut servers = BTreeMap::new();
        let mut derived = Vec::new();
        let mut notices = Vec::new();
        for (server, listed) in config.servers.iter().zip(listed) {
            let (catalog, pinned) = listed?;
            let contracts = contracts::derive(&server.name, &catalog);
            if let Some(pins) = lock.servers.get(&server.name) {
                let runs = server.spec.describe();
                if pins.source != runs {
                    notices.push(format!(
                        "MCP server `{}` was pinned as `{}` and now runs as `{runs}`: its tools are held to the pins",
                        server.name, pins.source
                    ));
                }
            }
            if !pinned {
                // The whole command, so that it can be run as it is.
                let target = match &server.spec {
                    UpstreamSpec::Http { .. } => format!("--url {}", &server.spec.describe()["http: ".len()..]),
                    UpstreamSpec::Stdio { .. } => format!("-- {}", &server.spec.describe()["stdio: ".len()..]),
                };
                notices.push(format!(
                    "MCP server `{}` runs unpinned: the {} tool{} it listed at start {} held to that; pin \
                     them with `rein mcp pin --policy {} --server {} {target}` to keep them from changing between \
                     starts",
                    server.name,
                    catalog.tools.len(),
                    if catalog.tools.len() == 1 { "" } else { "s" },
                    if catalog.tools.len() == 1 { "is" } else { "are" },
                    config
                        .policy_paths
                        .first()
                        .map_or(std::path::Path::new("."), PathBuf::as_path)
                        .display(),
                    server.name
                ));
            }
            for unmapped in &contracts.unmapped {
                let place = if unmapped.path.is_empty() {
                    String::new()
                } else {
                    format!(" {}", unmapped.path)
                };
                notices.push(format!(
                    "MCP server `{}`: tool `{}`{place}: {}",
                    server.name, unmapped.tool, unmapped.reason
                ));
            }
            derived.push((
                format!("<contracts derived from MCP server `{}`>", server.name),
                contracts.yaml,
            ));
            servers.insert(
                server.name.clone(),
                Arc::new(Server {
                    name: server.name.clone(),
                    spec: server.spec.clone(),
                    catalog,
                    pinned,
                    unmapped: contracts.unmapped,
                }),
            );
        }
        derived.push((
            "<the MCP gateway's snapshot contract>".to_string(),
            contracts::SNAPSHOT_CONTRACT_YAML.to_string(),
        ));
        let paths = config.policy_paths.clone();
        let policy = tokio::task::spawn_blocking(move || Policy::load_with_derived(&paths, &derived))
            .await
            .map_err(|e| GatewayError::Policy(format!("the policy loader failed: {e}")))?
            .map_err(|e| GatewayError::Policy(e.render(color)))?;
        Ok(Prepared {
            policy,
            servers,
            notices,
        })
    }

    /// The gateway over prepared servers and a runtime made over the
    /// prepared policy.
    pub fn new(config: &GatewayConfig, servers: BTreeMap<String, Arc<Server>>, runtime: Arc<Runtime>) -> Gateway {
        Gateway {
            runtime,
            servers,
            limits: config.limits.clone(),
            approval_timeout: config.approval_timeout,
            actor: config.actor.clone(),
            elicit_approval_role: config.elicit_approval_role.clone(),
        }
    }
}

/// Lists a server's tools over a short-lived connection of its own
/// (`initialize`, `notifications/initialized`, `tools/list` page by page),
/// for pinning, `rein mcp contracts` and the catalog of an unpinned server.
pub async fn list_tools(spec: &UpstreamSpec, limits: &Limits) -> Result<Catalog, String> {
    list_tools_with(spec, limits, &upstream_connector()).await
}

/// [`list_tools`] through `connector`; the whole listing, start included,
/// takes at most `limits.startup_timeout`.
pub async fn list_tools_with(spec: &UpstreamSpec, limits: &Limits, connector: &Connector) -> Result<Catalog, String> {
    let listing = async {
        let link = connector(spec, limits).await.map_err(|e| e.to_string())?;
        list_tools_over(link).await
    };
    match tokio::time::timeout(limits.startup_timeout, listing).await {
        Ok(listed) => listed,
        Err(_) => Err(format!(
            "{} did not list its tools within {} s",
            spec.describe(),
            limits.startup_timeout.as_secs()
        )),
    }
}

/// Lists the tools of the server at the other end of `link` (the link is
/// dropped at the end, which shuts the server down). Not bounded in time:
/// see [`list_tools_with`].
pub async fn list_tools_over(mut link: Link) -> Result<Catalog, String> {
    let mut next = 0u64;
    let mut ask = |link: &Link, method: &str, params: Json| {
        next += 1;
        let id = Id::Str(format!("rein-gw-{next}"));
        let request = jsonrpc::request(&id, method, params);
        let tx = link.tx.clone();
        async move {
            tx.send(request)
                .await
                .map(|()| id)
                .map_err(|_| "the server closed the connection".to_string())
        }
    };
    let initialize = json!({
        "protocolVersion": LISTING_PROTOCOL_VERSION,
        "capabilities": listing_capabilities(),
        "clientInfo": {"name": "rein-mcp-gateway", "version": env!("CARGO_PKG_VERSION")},
    });
    let id = ask(&link, "initialize", initialize).await?;
    answer(&mut link, &id)
        .await
        .map_err(|e| format!("`initialize` failed: {e}"))?;
    link.tx
        .send(jsonrpc::notification("notifications/initialized", json!({})))
        .await
        .map_err(|_| "the server closed the connection".to_string())?;
    let mut pages = Vec::new();
    let mut cursors = HashSet::new();
    let mut params = json!({});
    loop {
        if pages.len() >= MAX_LIST_PAGES {
            return Err(format!("more than {MAX_LIST_PAGES} pages of tools"));
        }
        let id = ask(&link, "tools/list", params).await?;
        let page = answer(&mut link, &id)
            .await
            .map_err(|e| format!("`tools/list` failed: {e}"))?;
        let cursor = page.get("nextCursor").and_then(Json::as_str).map(str::to_string);
        pages.push(page);
        match cursor {
            // A cursor seen before would list the same pages again.
            Some(cursor) if !cursors.insert(cursor.clone()) => {
                return Err(format!("the server gave the cursor `{cursor}` twice"));
            }
            Some(cursor) => params = json!({"cursor": cursor}),
            None => break,
        }
    }
    Catalog::from_pages(pages.iter())
}

/// The capabilities the listing connection declares: every one a client
/// may have. Servers offer some tools only to clients that can serve them
/// (server-everything lists its sampling and elicitation tools only then),
/// and the catalog must hold every tool any client may be offered: a tool
/// missing from it is taken as added since, hidden and refused. The
/// requests they allow the server are answered `-32601` (see [`answer`]).
pub fn listing_capabilities() -> Json {
    json!({
        "roots": {"listChanged": true},
        "sampling": {"context": {}, "tools": {}},
        "elicitation": {"form": {}, "url": {}},
        "tasks": {
            "list": {},
            "cancel": {},
            "requests": {"sampling": {"createMessage": {}}, "elicitation": {"create": {}}},
        },
    })
}

/// Waits for the result of request `id`, answering what the server asks
/// meanwhile: `ping` with an empty result, anything else with `-32601`.
async fn answer(link: &mut Link, id: &Id) -> Result<Json, String> {
    loop {
        let event = link.rx.recv().await.ok_or("the server closed the connection")?;
        let message: Message = match event {
            UpstreamEvent::Message(message) => message,
            UpstreamEvent::RequestFailed { id: failed, reason } if &failed == id => return Err(reason),
            UpstreamEvent::RequestFailed { .. } => continue,
            UpstreamEvent::Fault(reason) | UpstreamEvent::Closed(reason) => return Err(reason),
        };
        match &message.kind {
            Kind::Response { id: Some(got), .. } if got == id => {
                return match message.result() {
                    Some(result) => Ok(result.clone()),
                    None => Err(crate::proxy::error_text(&message)),
                };
            }
            Kind::Request { id: asked, method } => {
                let reply = if method == "ping" {
                    jsonrpc::response(asked, json!({}))
                } else {
                    jsonrpc::error(
                        Some(asked),
                        jsonrpc::code::METHOD_NOT_FOUND,
                        "the gateway only lists tools on this connection",
                    )
                };
                link.tx
                    .send(reply)
                    .await
                    .map_err(|_| "the server closed the connection".to_string())?;
            }
            Kind::Response { .. } | Kind::Notification { .. } => {}
        }
    }
}

/// How long requests under way (and open streams) get to finish after
/// shutdown is asked for, before they are cut: an SSE stream a client
/// keeps open would otherwise hold the gateway up forever.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Serves `/mcp/<server>` for every server of `gateway` on `listener`
/// until `shutdown` completes; requests under way then get
/// [`SHUTDOWN_GRACE`] to finish.
pub async fn serve_http(
    gateway: Arc<Gateway>,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use axum::serve::ListenerExt as _;
    let app = crate::http_server::router(gateway);
    // As `http_server::serve`: without TCP_NODELAY an SSE reply waits on
    // Nagle and delayed ACKs (tens of milliseconds).
    let listener = listener.tap_io(|tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!("could not set TCP_NODELAY on a connection: {e}");
        }
    });
    let stopping = Arc::new(tokio::sync::Notify::new());
    let notify = Arc::clone(&stopping);
    let served = axum::serve(listener, app).with_graceful_shutdown(async move {
        shutdown.await;
        notify.notify_one();
    });
    let served = std::future::IntoFuture::into_future(served);
    tokio::pin!(served);
    tokio::select! {
        result = &mut served => result,
        () = async {
            stopping.notified().await;
            tokio::time::sleep(SHUTDOWN_GRACE).await;
        } => {
            tracing::warn!("connections still open {} s after shutdown began were cut", SHUTDOWN_GRACE.as_secs());
            Ok(())
        }
    }
}
