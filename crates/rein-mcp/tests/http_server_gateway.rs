//! `http_server::router` over a real `Gateway` (a runtime over a temporary
//! SQLite store): what is refused before any session starts. Sessions
//! themselves are the proxy's and are tested with it; the transport is
//! tested with scripted sessions in `http_server.rs`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use rein_mcp::catalog::Catalog;
use rein_mcp::gateway::{Gateway, Server, DEFAULT_APPROVAL_TIMEOUT};
use rein_mcp::upstream::{Limits, UpstreamSpec};
use rein_runtime::{Runtime, RuntimeConfig};
use rein_store::SqliteStore;
use serde_json::{json, Value as Json};
use std::collections::BTreeMap;
use std::sync::Arc;

#[tokio::test]
async fn the_gateway_router_refuses_before_starting_anything() {
    let dir = tempfile::tempdir().unwrap();
    let policy = rein_engine::Policy::from_yaml_str("default: allow\n").unwrap();
    let store = SqliteStore::open(dir.path().join("rein.db")).unwrap();
    let config = RuntimeConfig {
        hmac_key: vec![7; 32],
        ..RuntimeConfig::default()
    };
    let runtime = Arc::new(Runtime::new(policy, Arc::new(store), config));
    let spec = UpstreamSpec::Stdio {
        program: "true".into(),
        args: vec![],
        env: vec![],
        cwd: None,
    };
    let server = Server {
        name: "fs".into(),
        spec,
        catalog: Catalog::default(),
        pinned: false,
        unmapped: vec![],
    };
    let gateway = Gateway {
        runtime,
        servers: BTreeMap::from([("fs".to_string(), Arc::new(server))]),
        limits: Limits {
            max_message_bytes: 2048,
            ..Limits::default()
        },
        approval_timeout: DEFAULT_APPROVAL_TIMEOUT,
        actor: Json::Null,
        elicit_approval_role: None,
    };
    let app = rein_mcp::http_server::router(Arc::new(gateway));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let post = |server: &str, body: String| {
        client
            .post(format!("{base}/mcp/{server}"))
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .body(body)
    };
    let init = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {}}).to_string();

    // Only the gateway's servers are served.
    assert_eq!(post("github", init.clone()).send().await.unwrap().status(), 404);
    // A web page's request.
    let response = post("fs", init.clone())
        .header("origin", "http://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    // The gateway's message bound applies to bodies.
    let big = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {"x": "a".repeat(4096)}});
    assert_eq!(post("fs", big.to_string()).send().await.unwrap().status(), 413);
    // No session named, not initialize.
    let list = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}).to_string();
    assert_eq!(post("fs", list.clone()).send().await.unwrap().status(), 400);
    let unknown = post("fs", list)
        .header("mcp-session-id", "00000000000000000000000000000000")
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);
}
