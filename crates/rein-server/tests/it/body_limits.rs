//! `max_body_bytes` (`rein serve --max-body`) bounds the body of every
//! route, over real HTTP: a body of exactly the limit is read and acted on,
//! one byte more is refused (413 with a JSON error; for a hook event, a
//! refusal in the agent's format) and, on the agent routes, recorded.

use crate::common::*;
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::path::Path;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const LIMIT: usize = 4096;

/// `value` as JSON, padded with trailing spaces (still the same JSON) to
/// exactly `len` bytes.
fn padded(value: &Value, len: usize) -> Vec<u8> {
    let mut bytes = serde_json::to_vec(value).unwrap();
    assert!(bytes.len() <= len, "the body is already {} bytes", bytes.len());
    bytes.resize(len, b' ');
    bytes
}

async fn post(client: &reqwest::Client, url: String, token: &str, body: Vec<u8>) -> (StatusCode, Value) {
    let resp = client
        .post(url)
        .bearer_auth(token)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    let status = resp.status();
    let text = resp.text().await.unwrap();
    let value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"));
    (status, value)
}

fn assert_too_large(status: StatusCode, body: &Value) {
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    assert_error(body, "payload_too_large");
    assert!(
        body["error"]["message"].as_str().unwrap().contains(&LIMIT.to_string()),
        "the message names the limit: {body}"
    );
}

/// The POST routes this file covers; a route added to the server without
/// a case here fails [`every_route_that_takes_a_body_is_covered`].
const COVERED: [&str; 10] = [
    "/v1/decide",
    "/v1/tokens/delegate",
    "/v1/outcome",
    "/v1/explain",
    "/v1/hooks/{agent}",
    "/v1/approvals/{id}/grant",
    "/v1/approvals/{id}/deny",
    "/v1/policy/reload",
    "/v1/policy/rollback",
    "/v1/limits/reset",
];

#[test]
fn every_route_that_takes_a_body_is_covered() {
    for route in rein_server::routes() {
        if route.method != reqwest::Method::GET {
            assert!(
                COVERED.contains(&route.path),
                "{} {} has no body-limit case in this file",
                route.method,
                route.path
            );
        }
    }
}

#[tokio::test]
async fn decide_and_outcome_take_the_limit_and_refuse_and_record_one_byte_more() {
    let h = Harness::with(|c| c.max_body_bytes = LIMIT).await;
    let server = h.serve().await;
    let client = reqwest::Client::new();
    let records = || async { h.state.runtime().store().audit_len().await.unwrap() };

    let request = refund(40, "bot-1");
    let (status, body) = post(&client, server.url("/v1/decide"), AGENT, padded(&request, LIMIT)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["effect"], "allow", "{body}");
    let decision = body["decision_id"].as_str().unwrap().to_string();
    // After the start's activation record.
    assert_eq!(records().await, 2);

    let (status, body) = post(&client, server.url("/v1/decide"), AGENT, padded(&request, LIMIT + 1)).await;
    assert_too_large(status, &body);
    assert_eq!(body["effect"], "block", "{body}");
    assert_eq!(records().await, 3, "the refused body is recorded");

    let outcome = json!({"decision_id": decision, "output": {"refund_id": "re_1"}});
    let (status, body) = post(&client, server.url("/v1/outcome"), AGENT, padded(&outcome, LIMIT)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_ne!(body["error"]["code"], "payload_too_large", "{body}");
    let before = records().await;
    let (status, body) = post(&client, server.url("/v1/outcome"), AGENT, padded(&outcome, LIMIT + 1)).await;
    assert_too_large(status, &body);
    assert_eq!(body["effect"], "block", "{body}");
    assert_eq!(records().await, before + 1, "the refused outcome is recorded");
    server.shutdown().await;
}

#[tokio::test]
async fn explain_takes_the_limit_and_refuses_one_byte_more_without_recording() {
    let h = Harness::with(|c| c.max_body_bytes = LIMIT).await;
    let server = h.serve().await;
    let client = reqwest::Client::new();
    let request = refund(40, "bot-1");
    let started = h.state.runtime().store().audit_len().await.unwrap();
    let (status, body) = post(&client, server.url("/v1/explain"), AGENT, padded(&request, LIMIT)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["decision"]["effect"], "allow", "{body}");
    let (status, body) = post(&client, server.url("/v1/explain"), AGENT, padded(&request, LIMIT + 1)).await;
    assert_too_large(status, &body);
    assert_eq!(body["effect"], "block", "{body}");
    assert_eq!(h.state.runtime().store().audit_len().await.unwrap(), started);
    server.shutdown().await;
}

/// An error answer closes the connection and says so: it may be sent
/// before the body is read, and a kept-alive client told nothing would
/// send its next request on a connection being closed.
#[tokio::test]
async fn error_answers_say_the_connection_closes() {
    let h = Harness::with(|c| c.max_body_bytes = LIMIT).await;
    let server = h.serve().await;
    let client = reqwest::Client::new();
    let body = serde_json::to_vec(&refund(40, "bot-1")).unwrap();
    for (token, path, body) in [
        ("not-a-token-of-this-server", "/v1/decide", body.clone()),
        (ALICE, "/v1/decide", body.clone()),
        (AGENT, "/v1/nope", body.clone()),
        (AGENT, "/v1/decide", padded(&refund(40, "bot-1"), LIMIT + 1)),
    ] {
        let resp = client
            .post(server.url(path))
            .bearer_auth(token)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert!(resp.status().is_client_error(), "{path}: {}", resp.status());
        assert_eq!(resp.headers()["connection"], "close", "{path}: {}", resp.status());
    }
    // A decision keeps it open.
    let resp = client
        .post(server.url("/v1/decide"))
        .bearer_auth(AGENT)
        .json(&refund(40, "bot-1"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(resp.headers().get("connection").is_none());
    server.shutdown().await;
}

#[tokio::test]
async fn grant_deny_and_reload_take_the_limit_and_refuse_one_byte_more() {
    let h = Harness::with(|c| c.max_body_bytes = LIMIT).await;
    let server = h.serve().await;
    let client = reqwest::Client::new();
    let pending = |amount| {
        let client = client.clone();
        let url = server.url("/v1/decide");
        async move {
            let (_, body) = post(
                &client,
                url,
                AGENT,
                serde_json::to_vec(&refund(amount, "bot-1")).unwrap(),
            )
            .await;
            assert_eq!(body["effect"], "require_approval", "{body}");
            body["approval"]["id"].as_str().unwrap().to_string()
        }
    };
    // A comment that fills the body to the byte.
    let comment = |len: usize| {
        let bare = serde_json::to_vec(&json!({"comment": ""})).unwrap().len();
        json!({"comment": "c".repeat(len - bare)})
    };

    for verb in ["grant", "deny"] {
        let id = pending(if verb == "grant" { 500 } else { 600 }).await;
        let url = server.url(&format!("/v1/approvals/{id}/{verb}"));
        let over = serde_json::to_vec(&comment(LIMIT + 1)).unwrap();
        assert_eq!(over.len(), LIMIT + 1);
        let (status, body) = post(&client, url.clone(), ALICE, over).await;
        assert_too_large(status, &body);
        let still = h.state.runtime().store().get_approval(&id).await.unwrap().unwrap();
        assert_eq!(still.state.as_str(), "pending", "a refused {verb} decides nothing");

        let exact = serde_json::to_vec(&comment(LIMIT)).unwrap();
        assert_eq!(exact.len(), LIMIT);
        let (status, body) = post(&client, url, ALICE, exact).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let state = if verb == "grant" { "granted" } else { "denied" };
        assert_eq!(body["state"], state, "{body}");
        assert_eq!(body["comment"].as_str().unwrap().len(), LIMIT - 14, "{body}");
    }

    let url = server.url("/v1/policy/reload");
    let (status, body) = post(&client, url.clone(), ADMIN, vec![b' '; LIMIT + 1]).await;
    assert_too_large(status, &body);
    let (status, body) = post(&client, url, ADMIN, vec![b' '; LIMIT]).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let url = server.url("/v1/policy/rollback");
    let current = json!({"version": h.state.runtime().policy().version()});
    let (status, body) = post(&client, url.clone(), ADMIN, padded(&current, LIMIT + 1)).await;
    assert_too_large(status, &body);
    let (status, body) = post(&client, url, ADMIN, padded(&current, LIMIT)).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let url = server.url("/v1/limits/reset");
    let (status, body) = post(&client, url.clone(), ADMIN, padded(&json!({}), LIMIT + 1)).await;
    assert_too_large(status, &body);
    let (status, body) = post(&client, url, ADMIN, padded(&json!({}), LIMIT)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["reset"], 0);
    server.shutdown().await;
}

/// The hook route answers in the agent's format: an event of exactly the
/// limit is decided, one byte more is refused (a deny the agent acts on,
/// not an HTTP error it would read as "no opinion") and recorded, for each
/// agent. Before, this route took 16 MiB whatever the limit said.
#[tokio::test]
async fn hook_events_take_the_limit_and_are_refused_and_recorded_one_byte_more() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let h = Harness::with(|c| {
        c.max_body_bytes = LIMIT;
        c.policy_paths = vec![
            root.join("policies/agents/coding-agent.yaml"),
            root.join("examples/claude-code/policy.yaml"),
        ];
    })
    .await;
    let server = h.serve().await;
    let client = reqwest::Client::new();
    let records = || async { h.state.runtime().store().audit_len().await.unwrap() };
    let cases = [
        ("claude-code", "PreToolUse", "Bash"),
        ("codex", "PreToolUse", "Bash"),
        ("gemini", "BeforeTool", "run_shell_command"),
    ];
    for (agent, event, tool) in cases {
        let url = server.url(&format!("/v1/hooks/{agent}"));
        let event = json!({"session_id": "s", "cwd": "/tmp/rein-hook-project", "hook_event_name": event,
                           "tool_name": tool, "tool_input": {"command": "ls"}});

        let before = records().await;
        let (status, body) = post(&client, url.clone(), AGENT, padded(&event, LIMIT)).await;
        assert_eq!(status, StatusCode::OK, "{agent}: {body}");
        assert!(!body.to_string().contains("could not read"), "{agent}: {body}");
        assert!(records().await > before, "{agent}: the event was decided and recorded");

        let before = records().await;
        let (status, body) = post(&client, url, AGENT, padded(&event, LIMIT + 1)).await;
        assert_eq!(status, StatusCode::OK, "{agent}: {body}");
        let text = body.to_string();
        assert!(text.contains("deny"), "{agent}: {body}");
        assert!(!text.contains("allow"), "{agent}: {body}");
        assert!(text.contains(&format!("larger than {LIMIT} bytes")), "{agent}: {body}");
        assert_eq!(
            records().await,
            before + 1,
            "{agent}: one record for the refusal, not one per part"
        );
        let refusal = h
            .state
            .runtime()
            .store()
            .query_audit(&rein_store::AuditQuery {
                after_seq: Some(before),
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(refusal[0].entry.effect, "block");
        assert_eq!(
            refusal[0].entry.input["code"], "payload_too_large",
            "{:?}",
            refusal[0].entry.input
        );
        assert_eq!(refusal[0].entry.input["body_bytes"], LIMIT + 1);
        // Nothing of the refused body is kept: the record is small whatever
        // was sent.
        let bytes = serde_json::to_vec(&refusal[0]).unwrap().len();
        assert!(bytes < 1024, "{agent}: the refusal's record is {bytes} bytes");
    }
    server.shutdown().await;
}

/// A body sent in chunks, with no `Content-Length` to refuse up front, is
/// refused once the limit is passed while reading, on every route that
/// reads one.
#[tokio::test]
async fn chunked_bodies_over_the_limit_are_refused_while_reading() {
    let h = Harness::with(|c| c.max_body_bytes = LIMIT).await;
    let server = h.serve().await;
    let addr = server.base.trim_start_matches("http://").to_string();
    let routes = [
        ("/v1/decide", AGENT),
        ("/v1/outcome", AGENT),
        ("/v1/approvals/none/grant", ALICE),
        ("/v1/approvals/none/deny", ALICE),
        ("/v1/policy/reload", ADMIN),
    ];
    for (path, token) in routes {
        let (status, body) = chunked_post(&addr, path, token, LIMIT + 1).await;
        assert_eq!(status, 413, "{path}: {body}");
        assert!(body.contains("payload_too_large"), "{path}: {body}");
    }
    let (status, body) = chunked_post(&addr, "/v1/hooks/claude-code", AGENT, LIMIT + 1).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("deny") && body.contains("larger than"), "{body}");
    server.shutdown().await;
}

/// POSTs `len` bytes of spaces in chunks of 1,000 over a raw connection
/// (`Transfer-Encoding: chunked`); the status and the raw answer body.
async fn chunked_post(addr: &str, path: &str, token: &str, len: usize) -> (u16, String) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut left = len;
    while left > 0 {
        let n = left.min(1000);
        let chunk = format!("{n:x}\r\n{}\r\n", " ".repeat(n));
        // The server may answer and close before the last chunk.
        if stream.write_all(chunk.as_bytes()).await.is_err() {
            break;
        }
        left -= n;
    }
    let _ = stream.write_all(b"0\r\n\r\n").await;
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer).await;
    let text = String::from_utf8_lossy(&answer).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line: {text}"));
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

#[tokio::test]
async fn delegate_takes_the_limit_and_refuses_one_byte_more() {
    let h = Harness::with(|c| c.max_body_bytes = LIMIT).await;
    let server = h.serve().await;
    let client = reqwest::Client::new();
    let url = server.url("/v1/tokens/delegate");
    let request = json!({"actor": "subagent:r", "actions": ["refund"], "ttl": "5m"});
    let (status, body) = post(&client, url.clone(), AGENT, padded(&request, LIMIT + 1)).await;
    assert_too_large(status, &body);
    let (status, body) = post(&client, url, AGENT, padded(&request, LIMIT)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body["token"].as_str().unwrap().starts_with("rein_d1."), "{body}");
    server.shutdown().await;
}
