//! The Streamable HTTP client against a real loopback server (axum, in
//! process) that answers in JSON and in SSE, keeps a session, and fails in
//! the ways servers do.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, Method, Response, StatusCode};
use bytes::Bytes;
use futures_util::StreamExt;
use rein_mcp::http_client::connect;
use rein_mcp::jsonrpc::{Id, Message};
use rein_mcp::upstream::{Limits, Link, UpstreamEvent, UpstreamSpec};
use serde_json::{json, Value};
use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(20);
const SESSION: &str = "sess-1";
const LIMIT: usize = 1 << 20;

/// What the test server saw.
#[derive(Default)]
struct Seen {
    /// Each POST: the message's method (`response` for a response) and the
    /// request's headers.
    posts: Vec<(String, HeaderMap)>,
    gets: usize,
    deletes: Vec<HeaderMap>,
}

struct TestServer {
    seen: Mutex<Seen>,
    /// Whether GET opens a stream (else 405).
    get_stream: bool,
    /// Set when the client closed the `slow` call's stream.
    slow_closed: Arc<AtomicBool>,
}

struct DropFlag(Arc<AtomicBool>);

impl Drop for DropFlag {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

fn event(message: &Value) -> String {
    format!("event: message\ndata: {message}\n\n")
}

fn sse(status: StatusCode, session: bool, chunks: Vec<String>, hold_open: Option<DropFlag>) -> Response<Body> {
    let chunks = futures_util::stream::iter(chunks.into_iter().map(|c| Ok::<_, Infallible>(Bytes::from(c))));
    let body = match hold_open {
        None => Body::from_stream(chunks),
        Some(flag) => Body::from_stream(chunks.chain(futures_util::stream::pending()).map(move |c| {
            let _alive = &flag;
            c
        })),
    };
    let mut response = Response::builder()
        .status(status)
        .header("content-type", "text/event-stream");
    if session {
        response = response.header("mcp-session-id", SESSION);
    }
    response.body(body).unwrap()
}

fn json_response(status: StatusCode, body: String) -> Response<Body> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Body::from(body))
        .unwrap()
}

fn plain(status: StatusCode, body: &'static str) -> Response<Body> {
    Response::builder().status(status).body(Body::from(body)).unwrap()
}

async fn mcp(State(server): State<Arc<TestServer>>, method: Method, headers: HeaderMap, body: Bytes) -> Response<Body> {
    if method == Method::GET {
        server.seen.lock().unwrap().gets += 1;
        if !server.get_stream {
            return plain(StatusCode::METHOD_NOT_ALLOWED, "");
        }
        let request = json!({"jsonrpc": "2.0", "id": "s1", "method": "roots/list"});
        return sse(
            StatusCode::OK,
            false,
            vec![event(&request)],
            Some(DropFlag(Arc::default())),
        );
    }
    if method == Method::DELETE {
        server.seen.lock().unwrap().deletes.push(headers);
        return plain(StatusCode::OK, "");
    }
    let message: Value = serde_json::from_slice(&body).unwrap();
    let name = message["method"].as_str().unwrap_or("response").to_string();
    server.seen.lock().unwrap().posts.push((name.clone(), headers.clone()));
    let id = message["id"].clone();
    let respond = |result: Value| json!({"jsonrpc": "2.0", "id": id, "result": result});

    if name == "initialize" {
        let log = json!({"jsonrpc": "2.0", "method": "notifications/message", "params": {"level": "info", "data": "starting"}});
        // The priming event (an id, empty data) first, as servers send it.
        let chunks = vec![
            "id: 0\ndata: \n\n".to_string(),
            event(&log),
            event(&respond(
                json!({"protocolVersion": "2025-06-18", "capabilities": {}, "serverInfo": {"name": "t", "version": "1"}}),
            )),
        ];
        return sse(StatusCode::OK, true, chunks, None);
    }
    if name == "server/discover" {
        let error = json!({"jsonrpc": "2.0", "id": id, "error": {"code": -32601, "message": "Method not found"}});
        return json_response(StatusCode::NOT_FOUND, error.to_string());
    }
    let tool = message["params"]["name"].as_str().unwrap_or("").to_string();
    if tool == "modern" {
        return json_response(
            StatusCode::OK,
            respond(json!({"resultType": "complete", "content": []})).to_string(),
        );
    }
    match headers.get("mcp-session-id").map(|v| v.to_str().unwrap()) {
        None => {
            let error = json!({"jsonrpc": "2.0", "id": null, "error": {"code": -32000, "message": "Bad Request: Server not initialized"}});
            return json_response(StatusCode::BAD_REQUEST, error.to_string());
        }
        Some(SESSION) => {}
        Some(_) => return plain(StatusCode::NOT_FOUND, ""),
    }
    if id.is_null() || name == "response" {
        return plain(StatusCode::ACCEPTED, "");
    }
    let progress =
        json!({"jsonrpc": "2.0", "method": "notifications/progress", "params": {"progressToken": 1, "progress": 1}});
    match (name.as_str(), tool.as_str()) {
        ("tools/list", _) => json_response(
            StatusCode::OK,
            serde_json::to_string_pretty(&respond(json!({"tools": []}))).unwrap(),
        ),
        (_, "echo") => {
            // CRLF line endings are SSE too.
            let text = format!("{}{}", event(&progress), event(&respond(json!({"content": []}))));
            sse(StatusCode::OK, false, vec![text.replace('\n', "\r\n")], None)
        }
        (_, "boom") => plain(StatusCode::INTERNAL_SERVER_ERROR, "kaboom \u{1b}[31m"),
        (_, "huge") => {
            let big =
                json!({"jsonrpc": "2.0", "method": "notifications/message", "params": {"data": "x".repeat(2 * LIMIT)}});
            // Sent in pieces, as a network would.
            let text = event(&big);
            let mut chunks: Vec<String> = text
                .as_bytes()
                .chunks(64 * 1024)
                .map(|c| String::from_utf8(c.to_vec()).unwrap())
                .collect();
            chunks.push(event(&respond(json!({"content": []}))));
            sse(StatusCode::OK, false, chunks, None)
        }
        (_, "garbage") => sse(
            StatusCode::OK,
            false,
            vec![
                "data: not json at all\n\n".into(),
                event(&respond(json!({"content": []}))),
            ],
            None,
        ),
        (_, "silent") => sse(StatusCode::OK, false, vec![event(&progress)], None),
        (_, "slow") => sse(
            StatusCode::OK,
            false,
            vec![event(&progress)],
            Some(DropFlag(server.slow_closed.clone())),
        ),
        (_, "expire") => plain(StatusCode::NOT_FOUND, ""),
        (_, "redirect") => Response::builder()
            .status(StatusCode::TEMPORARY_REDIRECT)
            .header("location", "/elsewhere")
            .body(Body::empty())
            .unwrap(),
        _ => json_response(StatusCode::OK, respond(json!({})).to_string()),
    }
}

async fn start(get_stream: bool) -> (Arc<TestServer>, String) {
    let server = Arc::new(TestServer {
        seen: Mutex::default(),
        get_stream,
        slow_closed: Arc::default(),
    });
    let router = axum::Router::new()
        .route("/mcp", axum::routing::any(mcp))
        .with_state(server.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/mcp", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    (server, url)
}

fn limits() -> Limits {
    Limits {
        max_message_bytes: LIMIT,
        startup_timeout: Duration::from_secs(10),
        ..Limits::default()
    }
}

fn message(value: Value) -> Message {
    Message::parse(Bytes::from(value.to_string())).unwrap()
}

/// The next event, leaving aside the server's own `roots/list` request
/// (from the GET stream, which interleaves with everything).
async fn next(link: &mut Link, from_get: &mut Vec<Message>) -> UpstreamEvent {
    loop {
        let event = tokio::time::timeout(WAIT, link.rx.recv())
            .await
            .expect("an event in time")
            .expect("the link is open");
        match event {
            UpstreamEvent::Message(m) if m.method() == Some("roots/list") => from_get.push(m),
            other => return other,
        }
    }
}

fn expect_message(event: UpstreamEvent) -> Message {
    match event {
        UpstreamEvent::Message(m) => m,
        other => panic!("{other:?}"),
    }
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).map(|v| v.to_str().unwrap())
}

async fn eventually(what: &str, check: impl Fn() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !check() {
        assert!(Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn call(id: i64, tool: &str) -> Message {
    message(json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {"name": tool, "arguments": {}}}))
}

#[tokio::test]
async fn a_session_over_streamable_http() {
    let (server, url) = start(true).await;
    let mut link = connect(&UpstreamSpec::Http { url: url.clone() }, &limits())
        .await
        .unwrap();
    let mut from_get = Vec::new();

    // Sent back to back: the client's `initialized` and the next request
    // must wait for the session the `initialize` response brings.
    link.tx
        .send(message(json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "c", "version": "1"}}})))
        .await
        .unwrap();
    link.tx
        .send(message(
            json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
        ))
        .await
        .unwrap();
    link.tx
        .send(message(json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"})))
        .await
        .unwrap();
    let log = expect_message(next(&mut link, &mut from_get).await);
    assert_eq!(log.method(), Some("notifications/message"));
    let init = expect_message(next(&mut link, &mut from_get).await);
    assert_eq!(init.id(), Some(&Id::Int(1)));
    let list = expect_message(next(&mut link, &mut from_get).await);
    assert_eq!(list.id(), Some(&Id::Int(2)));
    // The bytes as the server sent them (pretty-printed).
    assert!(list.bytes.contains(&b'\n'));

    {
        let seen = server.seen.lock().unwrap();
        let methods: Vec<&str> = seen.posts.iter().map(|(m, _)| m.as_str()).collect();
        assert_eq!(methods, ["initialize", "notifications/initialized", "tools/list"]);
        let (_, first) = &seen.posts[0];
        assert_eq!(header(first, "accept"), Some("application/json, text/event-stream"));
        assert_eq!(header(first, "content-type"), Some("application/json"));
        assert_eq!(header(first, "mcp-session-id"), None);
        assert_eq!(header(first, "mcp-protocol-version"), None);
        for (_, later) in &seen.posts[1..] {
            assert_eq!(header(later, "mcp-session-id"), Some(SESSION));
            assert_eq!(header(later, "mcp-protocol-version"), Some("2025-06-18"));
        }
    }

    // SSE with CRLF: the notification, then the response.
    link.tx.send(call(3, "echo")).await.unwrap();
    let progress = expect_message(next(&mut link, &mut from_get).await);
    assert_eq!(progress.method(), Some("notifications/progress"));
    assert_eq!(
        expect_message(next(&mut link, &mut from_get).await).id(),
        Some(&Id::Int(3))
    );

    // An HTTP error: the request fails with the status and the body's head.
    link.tx.send(call(4, "boom")).await.unwrap();
    match next(&mut link, &mut from_get).await {
        UpstreamEvent::RequestFailed { id, reason } => {
            assert_eq!(id, Id::Int(4));
            assert_eq!(
                reason,
                format!(r#"upstream `{url}` answered HTTP 500 Internal Server Error: "kaboom \x1b[31m""#)
            );
        }
        other => panic!("{other:?}"),
    }

    // A redirect is not followed: the message goes only where configured.
    link.tx.send(call(41, "redirect")).await.unwrap();
    match next(&mut link, &mut from_get).await {
        UpstreamEvent::RequestFailed { id, reason } => {
            assert_eq!(id, Id::Int(41));
            assert!(reason.contains("HTTP 307 Temporary Redirect"), "{reason}");
        }
        other => panic!("{other:?}"),
    }

    // A message over the bound is dropped; the stream goes on.
    link.tx.send(call(5, "huge")).await.unwrap();
    match next(&mut link, &mut from_get).await {
        UpstreamEvent::Fault(reason) => assert_eq!(
            reason,
            format!("upstream `{url}` sent a message over {LIMIT} bytes (the gateway's limit); it was dropped")
        ),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        expect_message(next(&mut link, &mut from_get).await).id(),
        Some(&Id::Int(5))
    );

    link.tx.send(call(6, "garbage")).await.unwrap();
    match next(&mut link, &mut from_get).await {
        UpstreamEvent::Fault(reason) => {
            assert!(
                reason.contains("not a JSON-RPC message") && reason.contains("\"not json at all\""),
                "{reason}"
            )
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        expect_message(next(&mut link, &mut from_get).await).id(),
        Some(&Id::Int(6))
    );

    // A stream that ends without the response.
    link.tx.send(call(7, "silent")).await.unwrap();
    assert_eq!(
        expect_message(next(&mut link, &mut from_get).await).method(),
        Some("notifications/progress")
    );
    match next(&mut link, &mut from_get).await {
        UpstreamEvent::RequestFailed { id, reason } => {
            assert_eq!(id, Id::Int(7));
            assert!(reason.contains("without a response"), "{reason}");
        }
        other => panic!("{other:?}"),
    }

    // Stateless era: `Mcp-Method`, `Mcp-Name` (Base64 when not plain
    // ASCII) and the `_meta` version as the header.
    let meta = json!({"io.modelcontextprotocol/protocolVersion": "2026-07-28", "io.modelcontextprotocol/clientCapabilities": {}});
    link.tx
        .send(message(json!({"jsonrpc": "2.0", "id": 8, "method": "tools/call", "params": {"name": "modern", "arguments": {}, "_meta": meta}})))
        .await
        .unwrap();
    assert_eq!(
        expect_message(next(&mut link, &mut from_get).await).id(),
        Some(&Id::Int(8))
    );
    // A JSON-RPC error in an HTTP error is the server's answer, passed on.
    link.tx
        .send(message(
            json!({"jsonrpc": "2.0", "id": 9, "method": "server/discover", "params": {"_meta": meta}}),
        ))
        .await
        .unwrap();
    let discover = expect_message(next(&mut link, &mut from_get).await);
    assert_eq!(discover.id(), Some(&Id::Int(9)));
    assert_eq!(discover.json["error"]["code"], -32601);
    {
        let seen = server.seen.lock().unwrap();
        let (_, modern) = seen
            .posts
            .iter()
            .find(|(m, h)| m == "tools/call" && header(h, "mcp-method").is_some())
            .unwrap();
        assert_eq!(header(modern, "mcp-method"), Some("tools/call"));
        assert_eq!(header(modern, "mcp-name"), Some("modern"));
        assert_eq!(header(modern, "mcp-protocol-version"), Some("2026-07-28"));
        let (_, discover) = seen.posts.iter().find(|(m, _)| m == "server/discover").unwrap();
        assert_eq!(header(discover, "mcp-method"), Some("server/discover"));
        assert_eq!(header(discover, "mcp-name"), None);
        // Handshake-era calls carry neither.
        let (_, echo) = seen
            .posts
            .iter()
            .find(|(m, h)| m == "tools/call" && header(h, "mcp-method").is_none())
            .unwrap();
        assert_eq!(header(echo, "mcp-name"), None);
    }

    // The GET stream opened once after `initialized`, and the server's own
    // request came through it; the client's answer is POSTed (202).
    eventually("the server's request from the GET stream", || !from_get.is_empty()).await;
    assert_eq!(from_get.len(), 1);
    assert_eq!(server.seen.lock().unwrap().gets, 1);
    link.tx
        .send(message(json!({"jsonrpc": "2.0", "id": "s1", "result": {"roots": []}})))
        .await
        .unwrap();
    eventually("the answer to the server's request", || {
        server.seen.lock().unwrap().posts.iter().any(|(m, _)| m == "response")
    })
    .await;

    // Cancelling a call closes its stream.
    link.tx.send(call(10, "slow")).await.unwrap();
    assert_eq!(
        expect_message(next(&mut link, &mut from_get).await).method(),
        Some("notifications/progress")
    );
    assert!(!server.slow_closed.load(Ordering::SeqCst));
    link.tx
        .send(message(
            json!({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 10}}),
        ))
        .await
        .unwrap();
    eventually("the cancelled call's stream closed", || {
        server.slow_closed.load(Ordering::SeqCst)
    })
    .await;

    // Dropping the link deletes the session.
    drop(link);
    eventually("the session deleted", || {
        !server.seen.lock().unwrap().deletes.is_empty()
    })
    .await;
    let seen = server.seen.lock().unwrap();
    assert_eq!(header(&seen.deletes[0], "mcp-session-id"), Some(SESSION));
}

#[tokio::test]
async fn an_expired_session_closes_the_link() {
    let (server, url) = start(false).await;
    let mut link = connect(&UpstreamSpec::Http { url: url.clone() }, &limits())
        .await
        .unwrap();
    let mut none = Vec::new();
    link.tx
        .send(message(
            json!({"jsonrpc": "2.0", "id": "a", "method": "initialize", "params": {}}),
        ))
        .await
        .unwrap();
    link.tx
        .send(message(
            json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
        ))
        .await
        .unwrap();
    let _log = next(&mut link, &mut none).await;
    let _init = next(&mut link, &mut none).await;
    link.tx.send(call(1, "expire")).await.unwrap();
    match next(&mut link, &mut none).await {
        UpstreamEvent::RequestFailed { id, reason } => {
            assert_eq!(id, Id::Int(1));
            assert!(reason.contains("HTTP 404"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    match next(&mut link, &mut none).await {
        UpstreamEvent::Closed(reason) => assert_eq!(reason, format!("upstream `{url}` ended the session (HTTP 404)")),
        other => panic!("{other:?}"),
    }
    assert!(tokio::time::timeout(WAIT, link.rx.recv()).await.unwrap().is_none());
    // 405 to the GET stream is no event; it was tried once.
    assert_eq!(server.seen.lock().unwrap().gets, 1);
    assert!(none.is_empty());
}

#[tokio::test]
async fn requests_before_initialize_and_to_a_dead_server_fail_with_their_reason() {
    let (_server, url) = start(false).await;
    let mut link = connect(&UpstreamSpec::Http { url: url.clone() }, &limits())
        .await
        .unwrap();
    let mut none = Vec::new();
    // No session: the server's 400 and its body are the reason.
    link.tx
        .send(message(json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"})))
        .await
        .unwrap();
    match next(&mut link, &mut none).await {
        UpstreamEvent::RequestFailed { id, reason } => {
            assert_eq!(id, Id::Int(1));
            assert!(
                reason.contains("HTTP 400 Bad Request") && reason.contains("Server not initialized"),
                "{reason}"
            );
        }
        other => panic!("{other:?}"),
    }

    // Nothing listens on the port.
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let dead = format!("http://127.0.0.1:{port}/mcp");
    let mut link = connect(&UpstreamSpec::Http { url: dead.clone() }, &limits())
        .await
        .unwrap();
    link.tx
        .send(message(json!({"jsonrpc": "2.0", "id": 2, "method": "ping"})))
        .await
        .unwrap();
    match next(&mut link, &mut none).await {
        UpstreamEvent::RequestFailed { id, reason } => {
            assert_eq!(id, Id::Int(2));
            assert!(
                reason.starts_with(&format!("upstream `{dead}` could not be reached")),
                "{reason}"
            );
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn tls_upstreams_are_refused_with_a_clear_error() {
    let error = connect(
        &UpstreamSpec::Http {
            url: "https://mcp.example.com/mcp".into(),
        },
        &limits(),
    )
    .await
    .err()
    .unwrap();
    assert!(
        error.to_string().contains("TLS upstreams are not supported yet"),
        "{error}"
    );
}

#[tokio::test]
async fn a_call_past_the_upstream_timeout_fails_and_its_stream_is_closed() {
    let (server, url) = start(false).await;
    let limits = Limits {
        upstream_timeout: Duration::from_secs(1),
        ..limits()
    };
    let mut link = connect(&UpstreamSpec::Http { url: url.clone() }, &limits)
        .await
        .unwrap();
    let mut none = Vec::new();
    link.tx
        .send(message(
            json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {}}),
        ))
        .await
        .unwrap();
    let _log = next(&mut link, &mut none).await;
    let _init = next(&mut link, &mut none).await;
    link.tx.send(call(1, "slow")).await.unwrap();
    let _progress = next(&mut link, &mut none).await;
    match next(&mut link, &mut none).await {
        UpstreamEvent::RequestFailed { id, reason } => {
            assert_eq!(id, Id::Int(1));
            assert_eq!(reason, format!("upstream `{url}` did not answer within 1 s"));
        }
        other => panic!("{other:?}"),
    }
    eventually("the stream closed", || server.slow_closed.load(Ordering::SeqCst)).await;
}
