//! Reading a JSON request body within limits: size (413), nesting depth
//! (400) and syntax (400), each with a message that says what to fix.

use crate::error::ApiError;
use axum::body::Body;
use axum::http::{header, HeaderMap, StatusCode};
use http_body_util::BodyExt;
use serde_json::Value;

/// Deepest nesting of arrays and objects a body may have. Requests are a
/// handful of levels deep; serde_json's own limit (128) is a guard against
/// stack overflow, not a policy, and deep documents cost the contract
/// checker and the audit encoder time for nothing.
pub(crate) const MAX_JSON_DEPTH: usize = 64;

/// Parses JSON text after the cheap depth check.
pub(crate) fn parse_json(bytes: &[u8]) -> Result<Value, ApiError> {
    if exceeds_depth(bytes, MAX_JSON_DEPTH) {
        return Err(ApiError::bad_request(
            "too_deep",
            format!("the body nests arrays and objects more than {MAX_JSON_DEPTH} levels deep"),
        ));
    }
    // A key repeated in one object is refused: another reader of the same
    // body (a proxy, the agent's library) might take the other value.
    rein_engine::json::parse_strict(bytes)
        .map_err(|e| ApiError::bad_request("invalid_json", format!("the body is not valid JSON: {e}")))
}

/// Reads the whole body, refusing more than `limit` bytes (413).
pub(crate) async fn read_limited(headers: &HeaderMap, mut body: Body, limit: usize) -> Result<Vec<u8>, ApiError> {
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("the body is larger than {limit} bytes"),
        )
    };
    // A declared length over the limit is refused before reading anything.
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    let mut buf = Vec::with_capacity(declared.map_or(0, |n| usize::try_from(n).unwrap_or(0)).min(limit));
    while let Some(frame) = body.frame().await {
        let frame =
            frame.map_err(|e| ApiError::bad_request("unreadable_body", format!("the body could not be read: {e}")))?;
        if let Ok(data) = frame.into_data() {
            if buf.len() + data.len() > limit {
                return Err(too_large());
            }
            buf.extend_from_slice(&data);
        }
    }
    Ok(buf)
}

/// Whether arrays and objects nest deeper than `max` anywhere in `bytes`.
/// One pass over the bytes, tracking only whether we are inside a string,
/// so that brackets in string values do not count. Invalid JSON is left to
/// the parser; this only has to be right for valid JSON and never panic.
pub(crate) fn exceeds_depth(bytes: &[u8], max: usize) -> bool {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for &b in bytes {
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > max {
                    return true;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nested(n: usize) -> String {
        format!("{}{}", "[".repeat(n), "]".repeat(n))
    }

    #[test]
    fn depth_counts_only_structure() {
        assert!(!exceeds_depth(nested(64).as_bytes(), 64));
        assert!(exceeds_depth(nested(65).as_bytes(), 64));
        // Brackets inside strings, escaped quotes included, do not count.
        let s = format!(r#"{{"a": "\"{}"}}"#, "[".repeat(100));
        assert!(!exceeds_depth(s.as_bytes(), 64));
        // Siblings do not add up.
        let wide = format!("[{}]", vec!["[[]]"; 100].join(","));
        assert!(!exceeds_depth(wide.as_bytes(), 3));
    }

    #[test]
    fn parse_reports_depth_before_syntax() {
        let e = parse_json(nested(200).as_bytes()).unwrap_err();
        assert_eq!(e.body()["error"]["code"], "too_deep");
        let e = parse_json(b"{\"a\": ").unwrap_err();
        assert_eq!(e.body()["error"]["code"], "invalid_json");
    }
}
