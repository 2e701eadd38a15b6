//! The gateway as a whole: its servers, what it knows of their tools, the
//! runtime every decision goes through. Built once at start-up: each
//! server's tools are read from the lock file (pinned) or listed from the
//! server (unpinned), their contracts derived and compiled into the policy
//! beside the policy's own files.
//!
//! (Owner: gateway helper. Interface fixed; bodies to be written.)

use crate::catalog::Catalog;
use crate::contracts::Unmapped;
use crate::upstream::{Limits, UpstreamSpec};
use rein_runtime::Runtime;
use serde_json::Value as Json;
use std::collections::BTreeMap;
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
}

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// The policy (with the derived contracts) does not load; the text is
    /// the rendered diagnostics.
    #[error("{0}")]
    Policy(String),
    /// A server could not be listed or its pins read.
    #[error("server `{server}`: {reason}")]
    Server {
        /// The server.
        server: String,
        /// Why.
        reason: String,
    },
}

/// Lists a server's tools over a short-lived connection of its own
/// (`initialize`, `notifications/initialized`, `tools/list` page by page),
/// for pinning, `rein mcp contracts` and the catalog of an unpinned server.
pub async fn list_tools(spec: &UpstreamSpec, limits: &Limits) -> Result<Catalog, String> {
    let _ = (spec, limits);
    todo!("gateway helper")
}
