//! Contracts derived from the real `tools/list` results of the reference
//! MCP servers (`tests/fixtures/*.tools.json`, captured with
//! `tests/fixtures/capture_tools.py` from npm
//! `@modelcontextprotocol/server-filesystem` and `server-everything`
//! 2026.8.31).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use rein_mcp::catalog::Catalog;
use rein_mcp::contracts::{derive, Derived};
use serde_json::Value as Json;

fn fixture(name: &str) -> Catalog {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap();
    let page: Json = serde_json::from_str(&text).unwrap();
    Catalog::from_pages([&page]).unwrap()
}

fn report(derived: &Derived) -> String {
    let mut out = derived.yaml.clone();
    out.push_str("\n# --- unmapped ---\n");
    for u in &derived.unmapped {
        out.push_str(&format!("# {u}\n"));
    }
    out
}

#[test]
fn server_filesystem() {
    let derived = derive("fs", &fixture("server-filesystem.tools.json"));
    assert_eq!(derived.actions.len(), 14);
    insta::assert_snapshot!(report(&derived));
}

#[test]
fn server_everything() {
    let derived = derive("everything", &fixture("server-everything.tools.json"));
    assert_eq!(derived.actions.len(), 13);
    insta::assert_snapshot!(report(&derived));
}
