//! What a caller asks: an action with its input, who asks, and the state
//! the decision depends on.

use crate::ast::Phase;
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

/// One request for a decision, as JSON callers send it:
/// `{"action": "refund", "input": {...}, "actor": {...}, "snapshot": {...}}`.
///
/// Unknown top-level keys are refused, so a typo such as `"inputs"` cannot
/// silently send an empty input; so is a key repeated in any object (see
/// [`crate::json`]).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Request {
    /// The action's name.
    pub action: String,
    /// The action's arguments (an object).
    #[serde(
        default,
        skip_serializing_if = "Json::is_null",
        deserialize_with = "crate::json::strict_value"
    )]
    pub input: Json,
    /// Who asks (an object).
    #[serde(
        default,
        skip_serializing_if = "Json::is_null",
        deserialize_with = "crate::json::strict_value"
    )]
    pub actor: Json,
    /// External state the decision depends on (an object).
    #[serde(
        default,
        skip_serializing_if = "Json::is_null",
        deserialize_with = "crate::json::strict_value"
    )]
    pub snapshot: Json,
    /// The action's result, for phase `after`.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::json::strict_option"
    )]
    pub output: Option<Json>,
    /// The error the action reported instead of an output, for phase
    /// `after`: its after rules read it as `error`, and no output contract
    /// is checked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The session (agent run) this request belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<String>,
    /// When the request was made (RFC 3339); what `now` reads in conditions.
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "rfc3339_time")]
    pub time: Option<jiff::Timestamp>,
    /// Before the action runs (default) or after, on its output.
    #[serde(default, skip_serializing_if = "is_before")]
    pub phase: Phase,
}

/// Reads `time` as a contract reads a timestamp, by RFC 3339's grammar
/// alone (jiff's own reading also takes other ISO 8601 forms), with a
/// message that says what is wrong.
fn rfc3339_time<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<jiff::Timestamp>, D::Error> {
    use serde::de::Error;
    let Some(text) = Option::<String>::deserialize(d)? else {
        return Ok(None);
    };
    Request::parse_time(&text).map(Some).map_err(D::Error::custom)
}

fn is_before(p: &Phase) -> bool {
    *p == Phase::Before
}

/// A request that is not even well-formed JSON of the request shape.
#[derive(Debug, thiserror::Error)]
#[error("invalid request: {0}")]
pub struct RequestError(String);

impl Request {
    /// Starts a request for `action` with empty input, actor and snapshot.
    pub fn new(action: impl Into<String>) -> Request {
        Request {
            action: action.into(),
            ..Request::default()
        }
    }

    /// Sets the input.
    pub fn input(mut self, input: Json) -> Request {
        self.input = input;
        self
    }

    /// Sets the actor.
    pub fn actor(mut self, actor: Json) -> Request {
        self.actor = actor;
        self
    }

    /// Sets the snapshot.
    pub fn snapshot(mut self, snapshot: Json) -> Request {
        self.snapshot = snapshot;
        self
    }

    /// Sets the output and makes this an `after` request.
    pub fn output(mut self, output: Json) -> Request {
        self.output = Some(output);
        self.phase = Phase::After;
        self
    }

    /// Sets the error the action reported and makes this an `after`
    /// request.
    pub fn error(mut self, error: impl Into<String>) -> Request {
        self.error = Some(error.into());
        self.phase = Phase::After;
        self
    }

    /// Sets the session id.
    pub fn session(mut self, session: impl Into<String>) -> Request {
        self.session = Some(session.into());
        self
    }

    /// Sets the request time.
    pub fn time(mut self, time: jiff::Timestamp) -> Request {
        self.time = Some(time);
        self
    }

    /// Sets the phase.
    pub fn phase(mut self, phase: Phase) -> Request {
        self.phase = phase;
        self
    }

    /// Reads a request's `time` as a contract reads a timestamp, by RFC
    /// 3339's grammar alone (jiff's own reading also takes other ISO 8601
    /// forms); the error says what is wrong, naming `time`.
    pub fn parse_time(text: &str) -> Result<jiff::Timestamp, String> {
        let instant = crate::instant::Instant::parse(text)
            .ok_or_else(|| format!("`time`: `{text}` is not an RFC 3339 timestamp (e.g. `2026-01-31T12:00:00Z`)"))?;
        instant
            .to_jiff()
            .ok_or_else(|| format!("`time`: `{text}` is after 9999-12-30T22:00:00Z, the latest `time`"))
    }

    /// Reads a request from a JSON value.
    pub fn from_json(value: Json) -> Result<Request, RequestError> {
        serde_json::from_value(value).map_err(|e| RequestError(e.to_string()))
    }

    /// Reads a request from JSON text.
    pub fn from_json_str(text: &str) -> Result<Request, RequestError> {
        let request = serde_json::from_str(text).map_err(|e| RequestError(e.to_string()))?;
        crate::json::check_number_texts(text.as_bytes()).map_err(|e| RequestError(e.to_string()))?;
        Ok(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn refuses_unknown_keys_and_reads_phase() {
        assert!(Request::from_json(json!({"action": "a", "inputs": {}})).is_err());
        // A repeated key, at the top or deeper, is refused.
        for text in [
            r#"{"action": "a", "action": "b"}"#,
            r#"{"action": "a", "input": {"amount": 5, "amount": 5000}}"#,
            r#"{"action": "a", "phase": "after", "output": {"x": 1, "x": 2}}"#,
        ] {
            let e = Request::from_json_str(text).unwrap_err().to_string();
            assert!(
                e.contains("duplicate field") || e.contains("appears twice"),
                "{text}: {e}"
            );
        }
        let r = Request::from_json(json!({"action": "a", "phase": "after", "output": {"x": 1}})).unwrap();
        assert_eq!(r.phase, Phase::After);
        let built = Request::new("a").output(json!({"x": 1}));
        assert_eq!(built, r);
    }
}
