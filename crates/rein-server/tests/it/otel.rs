//! The caller's `traceparent` in the audit record, and decision traces
//! sent to a real OTLP HTTP receiver over loopback.

use crate::common::{refund, Harness, ADMIN, AGENT};
use axum::body::Bytes;
use axum::http::{Method, StatusCode};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;
use serde_json::{json, Value};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT_ID: &str = "00f067aa0ba902b7";
const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

/// POSTs `body` to `path` of the server with `headers`.
async fn post(base: &str, path: &str, token: &str, body: &Value, headers: &[(&str, &str)]) -> (StatusCode, Value) {
    let mut req = reqwest::Client::new()
        .post(format!("{base}{path}"))
        .bearer_auth(token)
        .json(body);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.send().await.unwrap();
    (resp.status(), resp.json().await.unwrap())
}

/// The audit records of trace `query` (a trace id or a traceparent).
async fn by_trace(h: &Harness, query: &str) -> Vec<Value> {
    let (status, body) = h
        .call(Method::GET, &format!("/v1/audit?trace={query}"), Some(ADMIN), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["records"].as_array().unwrap().clone()
}

#[tokio::test]
async fn a_valid_traceparent_is_kept_in_the_record_and_found_by_its_trace_id() {
    let h = Harness::new().await;
    let served = h.serve().await;
    let (status, answer) = post(
        &served.base,
        "/v1/decide",
        AGENT,
        &refund(20, "bot-1"),
        &[("traceparent", TRACEPARENT)],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["effect"], "allow", "{answer}");
    // Reported with the same trace: both records carry it.
    let (status, outcome) = post(
        &served.base,
        "/v1/outcome",
        AGENT,
        &json!({"decision_id": answer["decision_id"], "output": {"refund_id": "r1"}}),
        &[("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-1111111111111111-00")],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{outcome}");
    // Another decision, without one.
    post(&served.base, "/v1/decide", AGENT, &refund(30, "bot-1"), &[]).await;
    for query in [TRACE_ID, TRACEPARENT] {
        let records = by_trace(&h, query).await;
        assert_eq!(records.len(), 2, "{records:?}");
        assert_eq!(records[0]["decision_id"], answer["decision_id"]);
        assert_eq!(records[0]["phase"], "before");
        assert_eq!(records[0]["trace"], TRACEPARENT);
        assert_eq!(records[1]["phase"], "after");
        assert_eq!(
            records[1]["trace"],
            "00-4bf92f3577b34da6a3ce929d0e0e4736-1111111111111111-00"
        );
    }
    assert!(by_trace(&h, "0af7651916cd43dd8448eb211c80319c").await.is_empty());
    // The chain holds with them.
    let (_, verify) = h.call(Method::GET, "/v1/audit/verify", Some(ADMIN), None).await;
    assert_eq!(verify["intact"], true, "{verify}");
    assert_eq!(verify["records"], 4, "{verify}");
    // A malformed trace filter is refused without being quoted back.
    let (status, body) = h
        .call(Method::GET, "/v1/audit?trace=%3Cscript%3E", Some(ADMIN), None)
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(!body.to_string().contains("<script>"), "{body}");
}

#[tokio::test]
async fn an_invalid_traceparent_is_ignored_and_never_blocks() {
    let h = Harness::new().await;
    let served = h.serve().await;
    for bad in [
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
        "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
        "<script>alert(1)</script>",
    ] {
        let (status, answer) = post(
            &served.base,
            "/v1/decide",
            AGENT,
            &refund(20, "bot-1"),
            &[("traceparent", bad)],
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{bad}: {answer}");
        assert_eq!(answer["effect"], "allow", "{bad}: {answer}");
        assert!(!answer.to_string().contains("traceparent"), "{answer}");
    }
    let (_, body) = h.call(Method::GET, "/v1/audit", Some(ADMIN), None).await;
    let records = body["records"].as_array().unwrap();
    assert_eq!(records.len(), 7, "six decisions after the activation");
    assert!(records.iter().all(|r| r.get("trace").is_none()), "{body}");
}

#[tokio::test]
async fn a_hook_event_keeps_its_traceparent() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let h = Harness::with(|c| {
        c.policy_paths = vec![
            root.join("policies/agents/coding-agent.yaml"),
            root.join("examples/claude-code/policy.yaml"),
        ];
    })
    .await;
    let served = h.serve().await;
    let event = json!({"session_id": "s", "cwd": "/tmp/rein-hook-project", "hook_event_name": "PreToolUse",
                       "tool_name": "Bash", "tool_input": {"command": "ls"}, "tool_use_id": "toolu_1"});
    let (status, body) = post(
        &served.base,
        "/v1/hooks/claude-code",
        AGENT,
        &event,
        &[("traceparent", TRACEPARENT)],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["hookSpecificOutput"]["permissionDecision"], "allow", "{body}");
    let records = by_trace(&h, TRACE_ID).await;
    assert!(!records.is_empty());
    assert!(records.iter().all(|r| r["trace"] == TRACEPARENT), "{records:?}");
}

/// An OTLP HTTP collector keeping every export request, decoded.
#[derive(Clone, Default)]
struct Collector(Arc<Mutex<Vec<ExportTraceServiceRequest>>>);

impl Collector {
    async fn start() -> (Collector, url::Url) {
        let c = Collector::default();
        let app = axum::Router::new()
            .route(
                "/v1/traces",
                axum::routing::post(
                    |axum::extract::State(c): axum::extract::State<Collector>, headers: axum::http::HeaderMap, body: Bytes| async move {
                        assert_eq!(headers["content-type"], "application/x-protobuf");
                        let request = ExportTraceServiceRequest::decode(body).expect("OTLP protobuf");
                        c.0.lock().unwrap().push(request);
                        StatusCode::OK
                    },
                ),
            )
            .with_state(c.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        (c, url::Url::parse(&format!("http://{addr}")).unwrap())
    }

    fn spans(&self) -> Vec<Span> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .flat_map(|r| r.resource_spans.iter())
            .flat_map(|r| r.scope_spans.iter())
            .flat_map(|s| s.spans.iter().cloned())
            .collect()
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn attribute(span: &Span, key: &str) -> Option<String> {
    use opentelemetry_proto::tonic::common::v1::any_value::Value as V;
    span.attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref()?.value.as_ref())
        .map(|v| match v {
            V::StringValue(s) => s.clone(),
            V::IntValue(i) => i.to_string(),
            other => format!("{other:?}"),
        })
}

#[tokio::test]
async fn a_decision_is_a_trace_under_the_callers_span() {
    let (collector, endpoint) = Collector::start().await;
    let h = Harness::with(|c| c.otlp_endpoint = Some(endpoint)).await;
    let served = h.serve().await;
    let (status, answer) = post(
        &served.base,
        "/v1/decide",
        AGENT,
        &refund(20, "bot-1"),
        &[("traceparent", TRACEPARENT)],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    // And one without a caller's trace: a trace of its own.
    let (_, second) = post(&served.base, "/v1/decide", AGENT, &refund(30, "bot-1"), &[]).await;
    h.state.flush_traces().await;
    let mut spans = collector.spans();
    for _ in 0..200 {
        if spans.len() >= 10 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        spans = collector.spans();
    }
    let roots: Vec<&Span> = spans.iter().filter(|s| s.name == "rein.decide").collect();
    assert_eq!(roots.len(), 2, "{spans:#?}");
    let root = roots
        .iter()
        .find(|s| attribute(s, "rein.decision_id").as_deref() == answer["decision_id"].as_str())
        .unwrap();
    assert_eq!(hex(&root.trace_id), TRACE_ID);
    assert_eq!(hex(&root.parent_span_id), PARENT_ID);
    assert_eq!(attribute(root, "rein.effect").as_deref(), Some("allow"));
    assert_eq!(attribute(root, "rein.action").as_deref(), Some("refund"));
    assert_eq!(attribute(root, "http.route").as_deref(), Some("/v1/decide"));
    assert_eq!(
        attribute(root, "rein.audit_seq"),
        answer["audit_seq"].as_u64().map(|s| s.to_string())
    );
    let mut children: Vec<&str> = spans
        .iter()
        .filter(|s| s.parent_span_id == root.span_id)
        .map(|s| s.name.as_str())
        .collect();
    children.sort_unstable();
    assert_eq!(
        children,
        ["rein.audit.append", "rein.contract", "rein.policy", "rein.state"]
    );
    for child in spans.iter().filter(|s| s.parent_span_id == root.span_id) {
        assert_eq!(child.trace_id, root.trace_id);
        assert!(child.start_time_unix_nano >= root.start_time_unix_nano, "{child:?}");
        assert!(child.end_time_unix_nano <= root.end_time_unix_nano, "{child:?}");
    }
    // No request value is in any span (the input's order id, say).
    assert!(!format!("{spans:?}").contains("ord_abc123"));
    let other = roots
        .iter()
        .find(|s| attribute(s, "rein.decision_id").as_deref() == second["decision_id"].as_str())
        .unwrap();
    assert_ne!(hex(&other.trace_id), TRACE_ID);
    assert!(other.parent_span_id.is_empty(), "a root of its own");
    // The decision is found from the caller's trace in the audit log too.
    let records = by_trace(&h, TRACE_ID).await;
    assert_eq!(records.len(), 1);
    assert_eq!(records[0]["decision_id"], answer["decision_id"]);
}
