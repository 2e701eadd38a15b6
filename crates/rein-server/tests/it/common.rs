//! The test harness: a server over a temp dir, and helpers to call it.

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use http_body_util::BodyExt;
use rein_server::{app, AppState, ServerConfig};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use tempfile::TempDir;
use tower::ServiceExt;

pub const AGENT: &str = "agent-token-0123456789abcdef";
/// A second agent, `agent-2`: it may not use what `agent-1` asked for.
pub const AGENT2: &str = "agent2-token-0123456789abcdef";
pub const ALICE: &str = "alice-token-0123456789abcdef";
/// An approver whose name is the `actor.id` of [`refund`] requests made
/// with `actor_id = "bot-7"`: it may not approve those.
pub const BOT7: &str = "bot7-token-0123456789abcdef";
pub const ADMIN: &str = "admin-token-0123456789abcdef";

pub fn tokens_yaml() -> String {
    format!(
        "tokens:\n  - {{name: agent-1, role: agent, token: {AGENT}}}\n  - {{name: agent-2, role: agent, token: {AGENT2}}}\n  - {{name: alice, role: approver, token: {ALICE}}}\n  - {{name: bot-7, role: approver, token: {BOT7}}}\n  - {{name: ops, role: admin, token: {ADMIN}}}\n"
    )
}

/// The refund example policy, as shipped.
pub fn example_policy() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/refund/policy.yaml")
}

/// A server in a temp dir: its own copy of the example policy (so that
/// tests can break it), its tokens file, its SQLite file.
pub struct Harness {
    pub dir: TempDir,
    pub state: AppState,
}

impl Harness {
    pub async fn new() -> Harness {
        Harness::with(|_| {}).await
    }

    /// A server whose configuration `tweak` may change first.
    pub async fn with(tweak: impl FnOnce(&mut ServerConfig)) -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let policy = dir.path().join("policy.yaml");
        std::fs::copy(example_policy(), &policy).unwrap();
        let tokens = dir.path().join("tokens.yaml");
        std::fs::write(&tokens, tokens_yaml()).unwrap();
        let mut config = ServerConfig::new(vec![policy], dir.path().join("rein.db"));
        config.tokens_path = Some(tokens);
        tweak(&mut config);
        let state = AppState::from_config(&config).await.unwrap();
        Harness { dir, state }
    }

    /// A server over the policy `text` instead of the example.
    pub async fn with_policy(text: &str, tweak: impl FnOnce(&mut ServerConfig)) -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let policy = dir.path().join("policy.yaml");
        std::fs::write(&policy, text).unwrap();
        let tokens = dir.path().join("tokens.yaml");
        std::fs::write(&tokens, tokens_yaml()).unwrap();
        let mut config = ServerConfig::new(vec![policy], dir.path().join("rein.db"));
        config.tokens_path = Some(tokens);
        tweak(&mut config);
        let state = AppState::from_config(&config).await.unwrap();
        Harness { dir, state }
    }

    /// The same server started again on its files (after [`AppState::close`]).
    pub async fn restart(self, tweak: impl FnOnce(&mut ServerConfig)) -> Harness {
        let Harness { dir, state } = self;
        state.close().await.unwrap();
        drop(state);
        let mut config = ServerConfig::new(vec![dir.path().join("policy.yaml")], dir.path().join("rein.db"));
        config.tokens_path = Some(dir.path().join("tokens.yaml"));
        tweak(&mut config);
        let state = AppState::from_config(&config).await.unwrap();
        Harness { dir, state }
    }

    pub fn policy_path(&self) -> PathBuf {
        self.dir.path().join("policy.yaml")
    }

    pub fn db_path(&self) -> PathBuf {
        self.dir.path().join("rein.db")
    }

    /// Calls the router in-process with a JSON body.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let bytes = body.map(|b| serde_json::to_vec(&b).unwrap());
        self.call_raw(method, path, token, bytes).await
    }

    /// Calls the router in-process with raw body bytes.
    pub async fn call_raw(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Vec<u8>>,
    ) -> (StatusCode, Value) {
        let (status, text) = self.call_text(method, path, token, body).await;
        let value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
        };
        (status, value)
    }

    /// Calls the router in-process; the body as text.
    pub async fn call_text(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Vec<u8>>,
    ) -> (StatusCode, String) {
        let mut req = Request::builder().method(method).uri(path);
        if let Some(t) = token {
            req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
        }
        let req = match body {
            Some(b) => req.header(header::CONTENT_TYPE, "application/json").body(Body::from(b)),
            None => req.body(Body::empty()),
        }
        .unwrap();
        let response = app(self.state.clone()).oneshot(req).await.unwrap();
        let status = response.status();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8(bytes.to_vec()).unwrap())
    }

    pub async fn decide(&self, request: Value) -> Value {
        let (status, body) = self.call(Method::POST, "/v1/decide", Some(AGENT), Some(request)).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body
    }

    /// Serves on a loopback port; the server stops when the guard drops.
    pub async fn serve(&self) -> Served {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let state = self.state.clone();
        let task = tokio::spawn(async move {
            rein_server::serve(listener, state, async {
                let _ = stopped.await;
            })
            .await
        });
        Served {
            base: format!("http://{addr}"),
            stop: Some(stop),
            task: Some(task),
        }
    }
}

/// A server on a loopback port.
pub struct Served {
    pub base: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

impl Served {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Stops the server and waits for it to finish.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.unwrap().unwrap();
        }
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// A refund request of `amount` by actor `actor_id` (role agent).
pub fn refund(amount: u64, actor_id: &str) -> Value {
    json!({
        "action": "refund",
        "input": {"order_id": "ord_abc123", "amount": amount, "currency": "EUR"},
        "actor": {"id": actor_id, "role": "agent"},
        "snapshot": {"fraud_flag": false, "refunds_today": 0, "account_age_days": 400},
        "session": "sess-1"
    })
}

/// `request` with `"approval": id`.
pub fn with_approval(mut request: Value, id: &str) -> Value {
    request["approval"] = json!(id);
    request
}

/// Asserts an error body: the code, and that it never reads as allow.
pub fn assert_error(body: &Value, code: &str) {
    assert_eq!(body["error"]["code"], code, "{body}");
    assert!(
        body["error"]["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    assert_ne!(body["effect"], "allow", "{body}");
}

/// Asserts an error body of an agent route: it also says `block`.
pub fn assert_block_error(body: &Value, code: &str) {
    assert_error(body, code);
    assert_eq!(body["effect"], "block", "{body}");
}
