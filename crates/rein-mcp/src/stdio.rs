//! stdio: a server as a child process (one JSON-RPC message per line on its
//! stdin and stdout, stderr passed through to the gateway's), and the
//! gateway's own stdin and stdout as the client of a stdio gateway.
//!
//! (Owner: transport helper. Interface fixed; bodies to be written.)

use crate::upstream::{Limits, Link, UpstreamError, UpstreamSpec};

/// Starts a stdio server.
pub async fn connect_child(spec: &UpstreamSpec, limits: &Limits) -> Result<Link, UpstreamError> {
    let _ = (spec, limits);
    todo!("transport helper")
}
