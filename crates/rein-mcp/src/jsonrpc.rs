//! JSON-RPC 2.0 messages as the gateway sees them: the bytes as received
//! (forwarded unchanged when the gateway does not change the message) and
//! what kind of message they are.
//!
//! Messages are read with the engine's strict JSON reader: an object with a
//! key twice is refused, so the gateway can never decide on one value of a
//! field while the server reads another.

use bytes::Bytes;
use serde_json::{json, Value as Json};
use std::fmt;

/// JSON-RPC error codes the gateway uses (MCP-spec `basic`, JSON-RPC 2.0).
pub mod code {
    /// The text is not JSON.
    pub const PARSE_ERROR: i64 = -32700;
    /// The JSON is not a JSON-RPC message (or is a batch).
    pub const INVALID_REQUEST: i64 = -32600;
    /// The method is not served.
    pub const METHOD_NOT_FOUND: i64 = -32601;
    /// Bad parameters, also an unknown tool.
    pub const INVALID_PARAMS: i64 = -32602;
    /// A fault of the gateway or of the server behind it (down, hung,
    /// crashed, answered garbage).
    pub const INTERNAL_ERROR: i64 = -32603;
}

/// A request or response id: a string or an integer, compared exactly as
/// sent (`1` and `"1"` are different ids).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Id {
    /// An integer id (JSON-RPC allows any number; MCP uses integers).
    Int(i64),
    /// A string id.
    Str(String),
}

impl Id {
    /// Reads an id; `None` for anything that is not a string or an integer.
    pub fn from_json(value: &Json) -> Option<Id> {
        match value {
            Json::String(s) => Some(Id::Str(s.clone())),
            Json::Number(n) => n.as_i64().map(Id::Int),
            _ => None,
        }
    }

    /// The id as JSON.
    pub fn to_json(&self) -> Json {
        match self {
            Id::Int(n) => json!(n),
            Id::Str(s) => json!(s),
        }
    }
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Id::Int(n) => write!(f, "{n}"),
            Id::Str(s) => write!(f, "{s:?}"),
        }
    }
}

/// What a message is.
#[derive(Clone, Debug, PartialEq)]
pub enum Kind {
    /// A request: it expects a response with the same id.
    Request {
        /// Its id.
        id: Id,
        /// Its method, e.g. `tools/call`.
        method: String,
    },
    /// A notification: no id, no response.
    Notification {
        /// Its method, e.g. `notifications/cancelled`.
        method: String,
    },
    /// A response to a request.
    Response {
        /// The id of the request it answers (`None`: `"id": null`, an error
        /// about a message whose id could not be read).
        id: Option<Id>,
        /// Whether it is an error response.
        error: bool,
    },
}

/// One JSON-RPC message: its bytes as received and its parsed form.
#[derive(Clone, Debug)]
pub struct Message {
    /// The bytes as received (one line on stdio, without the newline; one
    /// body or SSE `data` over HTTP).
    pub bytes: Bytes,
    /// The whole message, parsed.
    pub json: Json,
    /// What it is.
    pub kind: Kind,
}

/// Why bytes are not a JSON-RPC message.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum ParseError {
    /// Not JSON (or JSON the strict reader refuses: a repeated key, a
    /// number a double rounds to a whole number).
    #[error("not valid JSON: {0}")]
    Json(String),
    /// JSON, but not a JSON-RPC 2.0 message.
    #[error("not a JSON-RPC 2.0 message: {0}")]
    Invalid(String),
}

impl ParseError {
    /// The JSON-RPC error code for answering it.
    pub fn code(&self) -> i64 {
        match self {
            ParseError::Json(_) => code::PARSE_ERROR,
            ParseError::Invalid(_) => code::INVALID_REQUEST,
        }
    }
}

impl Message {
    /// Parses one message. A batch (a JSON array) is refused: MCP removed
    /// batches in 2025-06-18.
    pub fn parse(bytes: Bytes) -> Result<Message, ParseError> {
        let json = rein_engine::json::parse_strict(&bytes).map_err(|e| ParseError::Json(e.to_string()))?;
        let kind = classify(&json)?;
        Ok(Message { bytes, json, kind })
    }

    /// Builds a message from JSON the gateway wrote itself.
    pub fn from_json(json: Json) -> Message {
        let bytes = Bytes::from(serde_json::to_vec(&json).unwrap_or_default());
        let kind = classify(&json).unwrap_or(Kind::Response { id: None, error: true });
        Message { bytes, json, kind }
    }

    /// The method of a request or notification.
    pub fn method(&self) -> Option<&str> {
        match &self.kind {
            Kind::Request { method, .. } | Kind::Notification { method } => Some(method),
            Kind::Response { .. } => None,
        }
    }

    /// The id of a request or response.
    pub fn id(&self) -> Option<&Id> {
        match &self.kind {
            Kind::Request { id, .. } => Some(id),
            Kind::Response { id, .. } => id.as_ref(),
            Kind::Notification { .. } => None,
        }
    }

    /// `params` of a request or notification (`Null` when absent).
    pub fn params(&self) -> &Json {
        self.json.get("params").unwrap_or(&Json::Null)
    }

    /// `result` of a response (`None` for an error response).
    pub fn result(&self) -> Option<&Json> {
        self.json.get("result")
    }

    /// The protocol revision a stateless-era (2026-07-28) request names in
    /// its `_meta`; `None` for handshake-era messages.
    pub fn meta_protocol_version(&self) -> Option<&str> {
        self.params()
            .get("_meta")
            .and_then(|m| m.get("io.modelcontextprotocol/protocolVersion"))
            .and_then(Json::as_str)
    }
}

fn classify(json: &Json) -> Result<Kind, ParseError> {
    let Some(object) = json.as_object() else {
        let what = if json.is_array() {
            "a batch (JSON array); MCP has no batches since 2025-06-18"
        } else {
            "not an object"
        };
        return Err(ParseError::Invalid(what.into()));
    };
    if object.get("jsonrpc").and_then(Json::as_str) != Some("2.0") {
        return Err(ParseError::Invalid("`jsonrpc` is not \"2.0\"".into()));
    }
    let id = match object.get("id") {
        None => None,
        Some(Json::Null) => Some(None),
        Some(value) => {
            Some(Some(Id::from_json(value).ok_or_else(|| {
                ParseError::Invalid("`id` is neither a string nor an integer".into())
            })?))
        }
    };
    match (object.get("method"), id) {
        (Some(Json::String(method)), Some(Some(id))) => Ok(Kind::Request {
            id,
            method: method.clone(),
        }),
        (Some(Json::String(method)), None) => Ok(Kind::Notification { method: method.clone() }),
        (Some(Json::String(_)), Some(None)) => Err(ParseError::Invalid("a request's `id` is null".into())),
        (Some(_), _) => Err(ParseError::Invalid("`method` is not a string".into())),
        (None, Some(id)) => {
            let result = object.contains_key("result");
            let error = object.contains_key("error");
            if result == error {
                return Err(ParseError::Invalid(
                    "a response needs exactly one of `result` and `error`".into(),
                ));
            }
            Ok(Kind::Response { id, error })
        }
        (None, None) => Err(ParseError::Invalid("neither `method` nor `id`".into())),
    }
}

/// A success response.
pub fn response(id: &Id, result: Json) -> Message {
    Message::from_json(json!({"jsonrpc": "2.0", "id": id.to_json(), "result": result}))
}

/// An error response; `id` `None` answers a message whose id could not be
/// read.
pub fn error(id: Option<&Id>, code: i64, message: impl Into<String>) -> Message {
    let id = id.map_or(Json::Null, Id::to_json);
    Message::from_json(json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message.into()}}))
}

/// A request the gateway sends itself.
pub fn request(id: &Id, method: &str, params: Json) -> Message {
    Message::from_json(json!({"jsonrpc": "2.0", "id": id.to_json(), "method": method, "params": params}))
}

/// A notification the gateway sends itself.
pub fn notification(method: &str, params: Json) -> Message {
    Message::from_json(json!({"jsonrpc": "2.0", "method": method, "params": params}))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Message, ParseError> {
        Message::parse(Bytes::from(text.to_string()))
    }

    #[test]
    fn kinds() {
        let m = parse(r#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"x"}}"#).unwrap();
        assert_eq!(
            m.kind,
            Kind::Request {
                id: Id::Int(3),
                method: "tools/call".into()
            }
        );
        assert_eq!(m.params()["name"], "x");
        let m = parse(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#).unwrap();
        assert_eq!(m.method(), Some("notifications/initialized"));
        let m = parse(r#"{"result":{},"jsonrpc":"2.0","id":"a"}"#).unwrap();
        assert_eq!(
            m.kind,
            Kind::Response {
                id: Some(Id::Str("a".into())),
                error: false
            }
        );
        let m = parse(r#"{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"x"}}"#).unwrap();
        assert_eq!(m.kind, Kind::Response { id: None, error: true });
    }

    #[test]
    fn refusals() {
        for bad in [
            "not json",
            "[]",
            r#"[{"jsonrpc":"2.0","id":1,"method":"ping"}]"#,
            r#"{"id":1,"method":"ping"}"#,
            r#"{"jsonrpc":"2.0","id":1.5,"method":"ping"}"#,
            r#"{"jsonrpc":"2.0","id":null,"method":"ping"}"#,
            r#"{"jsonrpc":"2.0","id":1}"#,
            r#"{"jsonrpc":"2.0","id":1,"result":1,"error":{}}"#,
            // A repeated key: a server reading the last one would act on
            // another value than the one decided on.
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","name":"b"}}"#,
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn built_messages_round_trip() {
        let m = error(Some(&Id::Int(7)), code::INVALID_PARAMS, "unknown tool");
        let back = Message::parse(m.bytes.clone()).unwrap();
        assert_eq!(
            back.kind,
            Kind::Response {
                id: Some(Id::Int(7)),
                error: true
            }
        );
        assert_eq!(back.json["error"]["code"], -32602);
    }
}
