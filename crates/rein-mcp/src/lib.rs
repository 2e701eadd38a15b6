//! Rein's MCP gateway: a transparent proxy between MCP clients and servers
//! that decides every `tools/call` through the Rein runtime.
//!
//! A thin adapter: it reads MCP, builds Rein requests
//! (`mcp.<server>.<tool>` with the call's arguments as `input`) and answers
//! in MCP; deciding, approvals, audit and state are the runtime's.
//!
//! | module | role |
//! |---|---|
//! | `jsonrpc` | JSON-RPC messages: bytes as received, strictly parsed, classified |
//! | `catalog` | a server's tools as listed; annotations with the spec's defaults; digests |
//! | `contracts` | JSON Schema → Rein contracts (policy YAML), with what could not be mapped |
//! | `pin` | the lock file; drift between pins and what a server lists |
//! | `upstream` | the servers behind the gateway as one message link |
//! | `stdio` | child processes over stdin/stdout; the gateway's own stdin/stdout as a client |
//! | `http_client` | Streamable HTTP servers behind the gateway |
//! | `http_server` | the gateway's Streamable HTTP endpoint, `/mcp/<server>` |
//! | `gateway` | start-up: catalogs, contracts, the policy, the runtime |
//! | `proxy` | one client session: pass-through and the governed methods |

pub mod catalog;
pub mod contracts;
pub mod gateway;
pub mod http_client;
pub mod http_server;
pub mod jsonrpc;
pub mod pin;
pub mod proxy;
pub mod stdio;
pub mod upstream;
