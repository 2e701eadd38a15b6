//! The gateway's Streamable HTTP endpoint: each server at
//! `http://HOST:PORT/mcp/<server>`.
//!
//! (Owner: HTTP server helper. Interface fixed; bodies to be written.)
