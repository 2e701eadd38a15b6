//! Streamable HTTP servers behind the gateway (MCP-spec 2025-11-25
//! `basic/transports`, and the stateless 2026-07-28 revision).
//!
//! (Owner: transport helper. Interface fixed; bodies to be written.)

use crate::upstream::{Limits, Link, UpstreamError, UpstreamSpec};

/// Opens a link to a Streamable HTTP server.
pub async fn connect(spec: &UpstreamSpec, limits: &Limits) -> Result<Link, UpstreamError> {
    let _ = (spec, limits);
    todo!("transport helper")
}
