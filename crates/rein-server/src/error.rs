//! The one error shape every route answers with:
//! `{"error": {"code": "snake_case_code", "message": "..."}}`.
//!
//! On the agent routes (decide, outcome) an error body also says
//! `"effect": "block"`, so that a client that only looks at `effect` can
//! never read an error as permission.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Map, Value};

/// An error answer: status, machine-readable code, message for people.
#[derive(Debug)]
pub(crate) struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    /// Adds `"effect": "block"`; set on the agent routes.
    block: bool,
    /// Extra top-level members (the diagnostics of a failed reload).
    extra: Map<String, Value>,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            block: false,
            extra: Map::new(),
        }
    }

    pub(crate) fn bad_request(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub(crate) fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// A failure of the store or another part the server depends on.
    pub(crate) fn unavailable(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message)
    }

    pub(crate) fn status(&self) -> StatusCode {
        self.status
    }

    pub(crate) fn code(&self) -> &'static str {
        self.code
    }

    pub(crate) fn message(&self) -> &str {
        &self.message
    }

    /// Marks the answer as a `block` decision (agent routes).
    pub(crate) fn blocking(mut self, block: bool) -> ApiError {
        self.block = block;
        self
    }

    pub(crate) fn with(mut self, key: &str, value: Value) -> ApiError {
        self.extra.insert(key.to_string(), value);
        self
    }

    pub(crate) fn body(&self) -> Value {
        let mut body = self.extra.clone();
        body.insert("error".into(), json!({"code": self.code, "message": self.message}));
        if self.block {
            body.insert("effect".into(), json!("block"));
        }
        Value::Object(body)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, axum::Json(self.body())).into_response();
        // Many errors are answered before the body is read (a token
        // refused, a body too large or too slow, no such route), and then
        // the connection cannot carry another request: hyper closes it. A
        // kept-alive client told nothing would send its next request on
        // it and read the close as an outage. Errors are rare: every one
        // says so (HTTP/2 drops the header; its streams are independent).
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        if self.status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

/// The body of a fail-closed answer produced outside any handler (a panic,
/// a timeout): an error that is also a `block` decision.
pub(crate) fn block_response(status: StatusCode, code: &'static str, message: &str) -> Response {
    ApiError::new(status, code, message).blocking(true).into_response()
}
