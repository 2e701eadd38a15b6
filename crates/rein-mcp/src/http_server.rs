//! The gateway's Streamable HTTP endpoint: each server at
//! `http://HOST:PORT/mcp/<server>`.
//!
//! (Owner: HTTP server helper. Interface fixed; bodies to be written.)

use crate::gateway::Gateway;
use std::sync::Arc;

/// The routes `/mcp/{server}` (POST, GET, DELETE) over a gateway.
pub fn router(gateway: Arc<Gateway>) -> axum::Router {
    let _ = gateway;
    todo!("HTTP server helper")
}
