//! The MCP gateway's readers of what peers send: any bytes as a JSON-RPC
//! message, any JSON as a tool's schemas (the derived contracts must load:
//! the gateway refuses to start otherwise, so a schema that makes `derive`
//! write YAML the engine refuses is a way for a server to stop the gateway),
//! and any JSON as a lock file. None may panic.
#![no_main]
use libfuzzer_sys::fuzz_target;
use serde_json::json;

fuzz_target!(|data: &[u8]| {
    let _ = rein_mcp::jsonrpc::Message::parse(bytes::Bytes::copy_from_slice(data));
    let Ok(value) = rein_engine::json::parse_strict(data) else { return };
    let _ = rein_mcp::pin::LockFile::from_json(&value);
    // The value as an input schema, and as an output schema, of one tool.
    let tool = json!({"name": "t", "description": "fuzzed", "inputSchema": value, "outputSchema": value});
    let Ok(catalog) = rein_mcp::catalog::Catalog::from_pages([&json!({"tools": [tool]})]) else { return };
    let derived = rein_mcp::contracts::derive("fuzz", &catalog);
    let sources: [(&str, &str); 0] = [];
    if let Err(e) = rein_engine::Policy::from_sources_with_derived(sources, &[("<derived>".to_string(), derived.yaml.clone())]) {
        panic!("derived contracts do not load:\n{}\n{}", derived.yaml, e.render(false));
    }
});
