//! Fail-closed: a store that errs, panics or hangs never yields `allow`.

use crate::common::*;
use axum::http::{Method, StatusCode};
use rein_engine::Policy;
use rein_server::{AppState, ServerConfig, Tokens};
use rein_store::{
    ApprovalError, ApprovalRecord, ApprovalState, AuditEntry, AuditQuery, AuditRecord, Store, StoreError, Verification,
};
use std::sync::Arc;
use std::time::Duration;

#[derive(Clone, Copy, PartialEq)]
enum Fault {
    Fail,
    Panic,
    Hang,
}

struct FaultyStore(Fault);

impl FaultyStore {
    /// The fault on the decide and outcome path (append, audit lookup).
    async fn fault<T>(&self) -> Result<T, StoreError> {
        match self.0 {
            Fault::Fail => Err(StoreError("disk on fire".into())),
            Fault::Panic => panic!("the store panicked"),
            Fault::Hang => {
                tokio::time::sleep(Duration::from_secs(3600)).await;
                Err(StoreError("woke up".into()))
            }
        }
    }

    /// Elsewhere a panicking store only fails, so that /metrics still
    /// answers.
    async fn other<T>(&self) -> Result<T, StoreError> {
        match self.0 {
            Fault::Panic => Err(StoreError("broken".into())),
            _ => self.fault().await,
        }
    }
}

#[async_trait::async_trait]
impl Store for FaultyStore {
    async fn append_once(&self, _: AuditEntry) -> Result<Option<AuditRecord>, StoreError> {
        self.fault().await
    }
    // The key's metadata reads fine: the fault is on the decide path.
    async fn bind_key_fingerprint(&self, fingerprint: &str) -> Result<String, StoreError> {
        Ok(fingerprint.to_string())
    }
    async fn key_fingerprint(&self) -> Result<Option<String>, StoreError> {
        Ok(None)
    }
    async fn probe_write(&self) -> Result<(), StoreError> {
        self.other().await
    }
    async fn find_open_approval(
        &self,
        _: &str,
        _: Option<&str>,
        _: &str,
    ) -> Result<Option<ApprovalRecord>, StoreError> {
        self.other().await
    }
    async fn list_client_approvals(
        &self,
        _: &str,
        _: Option<ApprovalState>,
        _: u64,
    ) -> Result<Vec<ApprovalRecord>, StoreError> {
        self.other().await
    }
    async fn append(&self, _: AuditEntry) -> Result<AuditRecord, StoreError> {
        self.fault().await
    }
    async fn query_audit(&self, _: &AuditQuery) -> Result<Vec<AuditRecord>, StoreError> {
        self.fault().await
    }
    async fn verify_audit(&self) -> Result<Verification, StoreError> {
        self.other().await
    }
    async fn audit_len(&self) -> Result<u64, StoreError> {
        self.other().await
    }
    async fn create_approval(&self, _: ApprovalRecord) -> Result<(), StoreError> {
        self.other().await
    }
    async fn get_approval(&self, _: &str) -> Result<Option<ApprovalRecord>, StoreError> {
        self.other().await
    }
    async fn list_approvals(&self, _: Option<ApprovalState>, _: u64) -> Result<Vec<ApprovalRecord>, StoreError> {
        self.other().await
    }
    async fn decide_approval(
        &self,
        _: &str,
        _: bool,
        _: &str,
        _: Option<&str>,
        _: &str,
    ) -> Result<Result<ApprovalRecord, ApprovalError>, StoreError> {
        self.other().await
    }
    async fn use_approval(
        &self,
        _: &str,
        _: &str,
        _: &str,
    ) -> Result<Result<ApprovalRecord, ApprovalError>, StoreError> {
        self.fault().await
    }
}

/// A harness over a faulty store; the temp dir holds nothing but keeps the
/// harness shape.
fn faulty(fault: Fault) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let mut config = ServerConfig::new(vec![example_policy()], dir.path().join("unused.db"));
    config.request_timeout = Duration::from_millis(300);
    let policy = Policy::load(&config.policy_paths).unwrap();
    let tokens = Tokens::parse("tokens.yaml", &tokens_yaml()).unwrap();
    let state = AppState::new(&config, policy, Arc::new(FaultyStore(fault)), tokens, vec![7; 32]);
    Harness { dir, state }
}

#[tokio::test]
async fn a_failing_store_blocks_every_decision() {
    let h = faulty(Fault::Fail);
    let d = h.decide(refund(40, "bot-1")).await;
    assert_eq!(d["effect"], "block", "{d}");
    assert!(
        d["reasons"][0].as_str().unwrap().contains("could not be recorded"),
        "{d}"
    );
    assert_eq!(d["audit_seq"], serde_json::Value::Null);

    let (status, body) = h.call(Method::GET, "/healthz", None, None).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["status"], "unavailable");
    assert_error(&body, "unavailable");

    let (status, body) = h.call(Method::GET, "/v1/approvals", Some(ALICE), None).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_error(&body, "unavailable");
    let (status, _) = h.call(Method::GET, "/v1/audit/verify", Some(ADMIN), None).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);

    let (_, metrics) = h.call_text(Method::GET, "/metrics", None, None).await;
    assert!(
        metrics.contains("rein_store_errors_total{operation=\"append\"} 1"),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_panic_answers_block() {
    let h = faulty(Fault::Panic);
    for path in ["/v1/decide", "/v1/outcome"] {
        let body = if path == "/v1/decide" {
            refund(40, "bot-1")
        } else {
            serde_json::json!({"decision_id": "x", "output": {}})
        };
        let (status, resp) = h.call(Method::POST, path, Some(AGENT), Some(body)).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{path}: {resp}");
        assert_block_error(&resp, "internal");
    }
    // The server is still there.
    let (status, _) = h.call(Method::GET, "/openapi.json", None, None).await;
    assert_eq!(status, StatusCode::OK);
    let (_, metrics) = h.call_text(Method::GET, "/metrics", None, None).await;
    assert!(metrics.contains("rein_fail_closed_total{cause=\"panic\"}"), "{metrics}");
}

#[tokio::test]
async fn a_hung_store_times_out_to_block() {
    let h = faulty(Fault::Hang);
    let started = std::time::Instant::now();
    let (status, resp) = h
        .call(Method::POST, "/v1/decide", Some(AGENT), Some(refund(40, "bot-1")))
        .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{resp}");
    assert_block_error(&resp, "timeout");
    assert!(started.elapsed() < Duration::from_secs(5));
}

/// A client that sends its headers a byte at a time, or stops halfway,
/// is cut off after the request timeout: otherwise anyone who can reach
/// the port (no token needed: the headers are not complete) holds
/// connections, and their file descriptors, open for ever. A client that
/// sends its request in time on the same kind of connection is answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_headers_are_cut_off_after_the_request_timeout() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let h = Harness::with(|c| c.request_timeout = Duration::from_millis(500)).await;
    let served = h.serve().await;
    let addr = served.base.trim_start_matches("http://").to_string();

    let closed_within = |mut stream: tokio::net::TcpStream, trickle: bool| async move {
        let started = std::time::Instant::now();
        stream
            .write_all(b"POST /v1/decide HTTP/1.1\r\nHost: x\r\n")
            .await
            .unwrap();
        let mut buf = [0u8; 1024];
        loop {
            assert!(started.elapsed() < Duration::from_secs(5), "still open after 5 s");
            if trickle {
                // A write may fail once the server has closed: that is the
                // end this test waits for.
                let _ = stream.write_all(b"X").await;
            }
            // Anything read (the end, an error, a 408) ends the wait.
            if tokio::time::timeout(Duration::from_millis(100), stream.read(&mut buf))
                .await
                .is_ok()
            {
                return started.elapsed();
            }
        }
    };
    for trickle in [false, true] {
        let stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
        let took = closed_within(stream, trickle).await;
        assert!(took >= Duration::from_millis(400), "closed too early ({took:?})");
    }

    let client = reqwest::Client::new();
    let resp = client
        .post(served.url("/v1/decide"))
        .bearer_auth(AGENT)
        .json(&refund(40, "bot-7"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), reqwest::StatusCode::OK);
    served.shutdown().await;
}

/// An agent's body sent a byte at a time is refused before the request
/// timeout (`408 body_timeout`, `block`) and, like any body that cannot be
/// decided, recorded: the request timeout would drop the handler and leave
/// no record of the attempt.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_body_is_refused_and_recorded() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let h = Harness::with(|c| c.request_timeout = Duration::from_millis(800)).await;
    let served = h.serve().await;
    let addr = served.base.trim_start_matches("http://").to_string();
    let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let head = format!(
        "POST /v1/decide HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {AGENT}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    let started = std::time::Instant::now();
    loop {
        assert!(started.elapsed() < Duration::from_secs(5), "no answer");
        let _ = stream.write_all(b" ").await;
        match tokio::time::timeout(Duration::from_millis(50), stream.read(&mut buf)).await {
            Ok(Ok(0) | Err(_)) => break,
            Ok(Ok(n)) => {
                answer.extend_from_slice(&buf[..n]);
                if answer.ends_with(b"}") {
                    break;
                }
            }
            Err(_) => {}
        }
    }
    let text = String::from_utf8_lossy(&answer).to_string();
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    let body: serde_json::Value = serde_json::from_str(&text[text.find("\r\n\r\n").unwrap() + 4..]).unwrap();
    assert_block_error(&body, "body_timeout");
    let id = body["decision_id"].as_str().unwrap();
    let records = h
        .state
        .runtime()
        .store()
        .query_audit(&AuditQuery {
            decision_id: Some(id.to_string()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].entry.effect, "block");
    assert_eq!(records[0].entry.client.as_deref(), Some("agent-1"));
    served.shutdown().await;
}
