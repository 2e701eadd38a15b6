//! The servers behind the gateway: a child process over stdio or a
//! Streamable HTTP endpoint, both seen by the gateway as one [`Link`] that
//! carries JSON-RPC messages each way.

use crate::jsonrpc::{Id, Message};
use std::path::PathBuf;
use std::time::Duration;
use tokio::sync::mpsc;

/// Where a server runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UpstreamSpec {
    /// A program the gateway starts and speaks to over stdin/stdout.
    Stdio {
        /// The program (looked up on `PATH` as a shell would).
        program: String,
        /// Its arguments.
        args: Vec<String>,
        /// Extra environment variables (the rest is inherited).
        env: Vec<(String, String)>,
        /// Its working directory (the gateway's when `None`).
        cwd: Option<PathBuf>,
    },
    /// A Streamable HTTP endpoint, e.g. `http://127.0.0.1:3001/mcp`.
    Http {
        /// The endpoint's URL.
        url: String,
    },
}

impl UpstreamSpec {
    /// How the server is named in messages and in the lock file:
    /// `stdio: <program> <args…>` or `http: <url>` (without the URL's query
    /// and fragment, which may hold a token: the lock file is meant to be
    /// committed).
    pub fn describe(&self) -> String {
        match self {
            UpstreamSpec::Stdio { program, args, .. } => {
                let mut text = format!("stdio: {program}");
                for arg in args {
                    text.push(' ');
                    text.push_str(arg);
                }
                text
            }
            UpstreamSpec::Http { url } => {
                let end = url.find(['?', '#']).unwrap_or(url.len());
                format!("http: {}", &url[..end])
            }
        }
    }
}

/// Bounds on what a server may send and how long it may take.
#[derive(Clone, Debug)]
pub struct Limits {
    /// The largest message, in bytes, read from a server or a client: a
    /// longer one is a fault, never buffered whole.
    pub max_message_bytes: usize,
    /// How long a server may take to answer a request the gateway
    /// forwarded before the request is refused (and cancelled upstream).
    pub upstream_timeout: Duration,
    /// How long a server may take to start (spawn and answer `initialize`).
    pub startup_timeout: Duration,
}

/// The default [`Limits::max_message_bytes`]: 16 MiB.
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 16 << 20;
/// The default [`Limits::upstream_timeout`]: 5 minutes.
pub const DEFAULT_UPSTREAM_TIMEOUT: Duration = Duration::from_secs(300);
/// The default [`Limits::startup_timeout`]: 30 seconds (Claude Code's own
/// `MCP_TIMEOUT` for a server's start).
pub const DEFAULT_STARTUP_TIMEOUT: Duration = Duration::from_secs(30);

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
            upstream_timeout: DEFAULT_UPSTREAM_TIMEOUT,
            startup_timeout: DEFAULT_STARTUP_TIMEOUT,
        }
    }
}

/// What comes from a server.
#[derive(Debug)]
pub enum UpstreamEvent {
    /// A well-formed message.
    Message(Message),
    /// One request the gateway sent could not be delivered or answered
    /// (over HTTP: the POST failed or its stream ended without the
    /// response); answer it with this reason.
    RequestFailed {
        /// The request's id, as the gateway sent it.
        id: Id,
        /// Why, for the client (`upstream … refused the connection`).
        reason: String,
    },
    /// The server broke the protocol (a line that is not JSON-RPC, a
    /// message over the size limit): every request in flight to it fails
    /// with this reason; the link stays open.
    Fault(String),
    /// The link is gone (the process exited, the stream closed); every
    /// request in flight fails with this reason. A new link is made for
    /// the next message.
    Closed(String),
}

/// A live connection to a server: send messages on `tx`, receive on `rx`.
/// Dropping the link shuts the server down (stdio: stdin closed, then
/// SIGTERM, then SIGKILL; HTTP: the session is deleted).
pub struct Link {
    /// Messages to the server.
    pub tx: mpsc::Sender<Message>,
    /// What the server sends; ends after [`UpstreamEvent::Closed`].
    pub rx: mpsc::Receiver<UpstreamEvent>,
}

/// Why a server could not be reached at all.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// The program could not be started.
    #[error("could not start `{program}`: {reason}")]
    Spawn {
        /// The program.
        program: String,
        /// The OS error.
        reason: String,
    },
    /// The URL is not one the gateway can reach.
    #[error("bad upstream URL `{url}`: {reason}")]
    Url {
        /// The URL.
        url: String,
        /// What is wrong.
        reason: String,
    },
}

/// Opens a link to a server.
pub async fn connect(spec: &UpstreamSpec, limits: &Limits) -> Result<Link, UpstreamError> {
    match spec {
        UpstreamSpec::Stdio { .. } => crate::stdio::connect_child(spec, limits).await,
        UpstreamSpec::Http { .. } => crate::http_client::connect(spec, limits).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptions() {
        let stdio = UpstreamSpec::Stdio {
            program: "npx".into(),
            args: vec!["-y".into(), "server".into()],
            env: vec![],
            cwd: None,
        };
        assert_eq!(stdio.describe(), "stdio: npx -y server");
        let http = UpstreamSpec::Http {
            url: "http://127.0.0.1:3001/mcp?key=secret#x".into(),
        };
        assert_eq!(http.describe(), "http: http://127.0.0.1:3001/mcp");
    }
}
