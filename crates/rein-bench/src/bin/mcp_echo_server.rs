//! A trivial MCP server over stdio for bench/mcp_gateway.sh: one tool,
//! `echo`, that returns its `text`. Std and serde_json only, so that what
//! the bench measures is the gateway, not the server.

use serde_json::{json, Value};
use std::io::{BufRead, BufWriter, Write};

fn main() {
    let stdin = std::io::stdin();
    let mut out = BufWriter::new(std::io::stdout().lock());
    for line in stdin.lock().lines() {
        let Ok(line) = line else { break };
        let Ok(message) = serde_json::from_str::<Value>(&line) else {
            continue;
        };
        let (Some(id), Some(method)) = (message.get("id"), message.get("method").and_then(Value::as_str)) else {
            continue;
        };
        let result = match method {
            "initialize" => json!({
                "protocolVersion": message["params"]["protocolVersion"].as_str().unwrap_or("2025-11-25"),
                "capabilities": {"tools": {}},
                "serverInfo": {"name": "mcp-echo", "version": "0.1"}
            }),
            "tools/list" => json!({"tools": [{
                "name": "echo",
                "description": "returns its text",
                "inputSchema": {"type": "object", "properties": {"text": {"type": "string"}},
                                "required": ["text"], "additionalProperties": false},
                "annotations": {"readOnlyHint": true, "openWorldHint": false}
            }]}),
            "tools/call" => {
                let text = message["params"]["arguments"]["text"].as_str().unwrap_or_default();
                json!({"content": [{"type": "text", "text": text}]})
            }
            "ping" => json!({}),
            _ => {
                let reply =
                    json!({"jsonrpc": "2.0", "id": id, "error": {"code": -32601, "message": "Method not found"}});
                let _ = writeln!(out, "{reply}");
                let _ = out.flush();
                continue;
            }
        };
        let reply = json!({"jsonrpc": "2.0", "id": id, "result": result});
        if writeln!(out, "{reply}").and_then(|()| out.flush()).is_err() {
            break;
        }
    }
}
