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

/// Serves one session over the gateway's own stdin and stdout until stdin
/// ends: each line a message to the gateway (an invalid one answered with
/// an error, id null), each message from the gateway a line on stdout.
pub async fn serve_stdio(handle: crate::proxy::SessionHandle, limits: &Limits) -> std::io::Result<()> {
    let _ = (handle, limits);
    todo!("transport helper")
}
