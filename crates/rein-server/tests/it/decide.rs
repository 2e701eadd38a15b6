//! POST /v1/decide: the three effects, and every kind of bad input.

use crate::common::*;
use axum::http::{Method, StatusCode};
use serde_json::{json, Value};

#[tokio::test]
async fn allow_block_and_require_approval() {
    let h = Harness::new().await;
    let version = h.state.runtime().policy().version().to_string();

    let allow = h.decide(refund(40, "bot-1")).await;
    assert_eq!(allow["effect"], "allow");
    assert_eq!(allow["rules"], json!(["small_refund"]));
    assert_eq!(allow["phase"], "before");
    assert_eq!(allow["policy_version"], version.as_str());
    assert!(allow["decision_id"].as_str().is_some_and(|s| !s.is_empty()));
    // Record 1 is the start's activation of the policy.
    assert_eq!(allow["audit_seq"], 2);
    assert!(allow.get("approval").is_none());

    let block = h.decide(refund(5000, "bot-1")).await;
    assert_eq!(block["effect"], "block");
    assert_eq!(block["rules"], json!(["large_refund"]));
    assert!(block["reasons"][0].as_str().unwrap().contains("need an admin"));
    assert_eq!(block["audit_seq"], 3);

    let pending = h.decide(refund(500, "bot-1")).await;
    assert_eq!(pending["effect"], "require_approval");
    assert_eq!(pending["approval"]["role"], "support");
    assert!(pending["approval"]["id"].as_str().is_some());
    assert!(pending["approval"]["expires_at"].as_str().is_some());
}

#[tokio::test]
async fn contract_violations_and_unknown_actions_are_recorded_blocks() {
    let h = Harness::new().await;
    let mut bad = refund(40, "bot-1");
    bad["input"]["amount"] = json!("forty");
    let d = h.decide(bad).await;
    assert_eq!(d["effect"], "block");
    assert_eq!(d["violation"]["path"], "input.amount", "{d}");

    let d = h.decide(json!({"action": "transfer_all_funds", "input": {}})).await;
    assert_eq!(d["effect"], "block");
    assert_eq!(d["violation"]["path"], "action", "{d}");
    assert!(d["audit_seq"].as_u64().is_some());

    let mut extra = refund(40, "bot-1");
    extra["input"]["sneaky"] = json!(true);
    assert_eq!(h.decide(extra).await["effect"], "block");
}

/// Every malformed body is a 400 (or 413) that says `block`, names the
/// problem, and was not decided, but recorded as a `block`.
#[tokio::test]
async fn bad_input_is_refused_with_block() {
    let h = Harness::with(|c| c.max_body_bytes = 64 * 1024).await;
    let deep = format!(
        "{{\"action\": \"refund\", \"input\": {}1{}}}",
        "[".repeat(65),
        "]".repeat(65)
    );
    let ok_depth = format!(
        "{{\"action\": \"refund\", \"input\": {{\"a\": {}1{}}}}}",
        "[".repeat(60),
        "]".repeat(60)
    );
    let huge = serde_json::to_vec(&json!({"action": "refund", "input": {"note": "x".repeat(70 * 1024)}})).unwrap();
    let cases: Vec<(&str, Vec<u8>, StatusCode, &str, &str)> = vec![
        (
            "not json",
            b"refund 40 please".to_vec(),
            StatusCode::BAD_REQUEST,
            "invalid_json",
            "not valid JSON",
        ),
        (
            "truncated",
            b"{\"action\": \"refund\"".to_vec(),
            StatusCode::BAD_REQUEST,
            "invalid_json",
            "line 1",
        ),
        (
            "empty",
            Vec::new(),
            StatusCode::BAD_REQUEST,
            "invalid_json",
            "not valid JSON",
        ),
        (
            "array",
            b"[1, 2]".to_vec(),
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "an array",
        ),
        (
            "string",
            b"\"allow\"".to_vec(),
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "a string",
        ),
        (
            "no action",
            br#"{"input": {}}"#.to_vec(),
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "action",
        ),
        (
            "action not a string",
            br#"{"action": 5}"#.to_vec(),
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "invalid type",
        ),
        (
            "unknown key",
            br#"{"action": "refund", "inputs": {}}"#.to_vec(),
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "unknown field `inputs`; a decide request has `action`, `input`, `actor`, `snapshot`, `session`, `time`, `approval`",
        ),
        (
            "error is an outcome's",
            br#"{"action": "refund", "error": "x"}"#.to_vec(),
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "unknown field `error`",
        ),
        // A repeated key: another reader of the body might take the other
        // value, so neither is trusted.
        (
            "repeated top-level key",
            br#"{"action": "order.lookup", "action": "refund"}"#.to_vec(),
            StatusCode::BAD_REQUEST,
            "invalid_json",
            "the key `action` appears twice",
        ),
        (
            "repeated nested key",
            br#"{"action": "refund", "snapshot": {"fraud_flag": true, "fraud_flag": false}}"#.to_vec(),
            StatusCode::BAD_REQUEST,
            "invalid_json",
            "the key `fraud_flag` appears twice",
        ),
        (
            "session not a string",
            br#"{"action": "refund", "session": 7}"#.to_vec(),
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "invalid type",
        ),
        (
            "bad time",
            br#"{"action": "refund", "time": "yesterday"}"#.to_vec(),
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "invalid request",
        ),
        (
            "approval not a string",
            br#"{"action": "refund", "approval": 12}"#.to_vec(),
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "`approval` must be a string",
        ),
        (
            "output on decide",
            br#"{"action": "refund", "output": {}}"#.to_vec(),
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "/v1/outcome",
        ),
        (
            "phase on decide",
            br#"{"action": "refund", "phase": "after"}"#.to_vec(),
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "/v1/outcome",
        ),
        (
            "too deep",
            deep.into_bytes(),
            StatusCode::BAD_REQUEST,
            "too_deep",
            "64 levels",
        ),
        (
            "too large",
            huge,
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            "65536 bytes",
        ),
    ];
    let n = cases.len() as u64;
    for (i, (name, body, status, code, needle)) in cases.into_iter().enumerate() {
        let (got, resp) = h.call_raw(Method::POST, "/v1/decide", Some(AGENT), Some(body)).await;
        assert_eq!(got, status, "{name}: {resp}");
        assert_block_error(&resp, code);
        let message = resp["error"]["message"].as_str().unwrap();
        assert!(message.contains(needle), "{name}: `{message}` lacks `{needle}`");
        // Not decided, but recorded: a block that says why.
        // After the start's activation record.
        assert_eq!(resp["audit_seq"], i as u64 + 2, "{name}: {resp}");
        let recorded = h
            .state
            .runtime()
            .store()
            .query_audit(&rein_store::AuditQuery {
                decision_id: resp["decision_id"].as_str().map(str::to_owned),
                ..Default::default()
            })
            .await
            .unwrap();
        let [rec] = recorded.as_slice() else {
            panic!("{name}: {recorded:?}")
        };
        assert_eq!(rec.entry.effect, "block", "{name}");
        assert_eq!(rec.entry.phase, "before", "{name}");
        assert!(rec.entry.reasons[0].contains(code), "{name}: {:?}", rec.entry.reasons);
        assert_eq!(rec.entry.input["code"], code, "{name}");
        assert_eq!(rec.entry.input["status"], status.as_u16(), "{name}");
    }
    assert_eq!(h.state.runtime().store().audit_len().await.unwrap(), n + 1);
    assert_eq!(
        h.state.runtime().store().verify_audit().await.unwrap(),
        rein_store::Verification::Intact { records: n + 1 }
    );

    // 60 levels is within the limit: decided (and blocked by the contract).
    let (status, resp) = h
        .call_raw(Method::POST, "/v1/decide", Some(AGENT), Some(ok_depth.into_bytes()))
        .await;
    assert_eq!(status, StatusCode::OK, "{resp}");
    assert_eq!(resp["effect"], "block");
}

#[tokio::test]
async fn oversized_body_without_content_length_is_refused_while_reading() {
    let h = Harness::with(|c| c.max_body_bytes = 1024).await;
    // A chunked body: no length announced, so the limit bites while reading.
    let (mut tx, body) = http_body_util::Channel::<axum::body::Bytes>::new(4);
    tokio::spawn(async move {
        for _ in 0..10 {
            if tx.send_data(axum::body::Bytes::from(vec![b' '; 200])).await.is_err() {
                break;
            }
        }
    });
    let req = axum::http::Request::post("/v1/decide")
        .header("authorization", format!("Bearer {AGENT}"))
        .body(axum::body::Body::new(body))
        .unwrap();
    assert!(req.headers().get("content-length").is_none());
    let resp = tower::ServiceExt::oneshot(rein_server::app(h.state.clone()), req)
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let bytes = http_body_util::BodyExt::collect(resp.into_body())
        .await
        .unwrap()
        .to_bytes();
    let body: Value = serde_json::from_slice(&bytes).unwrap();
    assert_block_error(&body, "payload_too_large");
}

#[tokio::test]
async fn missing_token_never_decides() {
    let h = Harness::new().await;
    let (status, body) = h
        .call(Method::POST, "/v1/decide", None, Some(refund(40, "bot-1")))
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_block_error(&body, "unauthorized");
    let (status, body) = h
        .call(Method::POST, "/v1/decide", Some(ALICE), Some(refund(40, "bot-1")))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_block_error(&body, "forbidden");
    // Only the start's activation record.
    assert_eq!(h.state.runtime().store().audit_len().await.unwrap(), 1);
}

#[tokio::test]
async fn approval_null_is_no_approval() {
    let h = Harness::new().await;
    let mut r = refund(40, "bot-1");
    r["approval"] = Value::Null;
    r["time"] = json!("2026-01-31T12:00:00Z");
    assert_eq!(h.decide(r).await["effect"], "allow");
}

/// What a refused body leaves in the log is bounded, and no field that any
/// action marks sensitive (here `output.customer_email`) is kept in clear,
/// nor anything outside a request's members.
#[tokio::test]
async fn refused_bodies_are_recorded_without_secrets_and_within_bounds() {
    let h = Harness::new().await;
    let record = |resp: &Value| {
        let store = h.state.runtime().store().clone();
        let id = resp["decision_id"].as_str().unwrap().to_owned();
        async move {
            let q = rein_store::AuditQuery {
                decision_id: Some(id),
                ..Default::default()
            };
            store.query_audit(&q).await.unwrap().remove(0).entry
        }
    };

    // A request with an output (not part of a decide call) carrying a
    // sensitive field, and a misspelt member.
    let body = json!({
        "action": "refund",
        "input": {"amount": 40},
        "output": {"customer_email": "ann@example.com"},
        "inputs": {"card": "4111111111111111"}
    });
    let (status, resp) = h.call(Method::POST, "/v1/decide", Some(AGENT), Some(body)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let e = record(&resp).await;
    let text = serde_json::to_string(&e).unwrap();
    assert!(!text.contains("ann@example.com"), "{text}");
    assert!(!text.contains("4111111111111111"), "{text}");
    assert_eq!(e.action, "refund");
    assert_eq!(e.input["body_kept"], "whole");
    assert_eq!(e.input["body"]["input"]["amount"], 40);
    assert!(e.input["body"]["output"]["customer_email"]
        .as_str()
        .unwrap()
        .starts_with("hmac-sha256:"));
    assert!(e.input["body_hmac"].as_str().unwrap().starts_with("hmac-sha256:"));

    // Not JSON: with sensitive fields in the policy, only its hash is kept.
    let (_, resp) = h
        .call_raw(
            Method::POST,
            "/v1/decide",
            Some(AGENT),
            Some(b"customer_email=ann@example.com".to_vec()),
        )
        .await;
    let e = record(&resp).await;
    assert!(!serde_json::to_string(&e).unwrap().contains("ann@"));
    assert_eq!(e.input["body_kept"], "hash");
    assert_eq!(e.input["body_bytes"], 30);

    // A large body is kept by length and hash only.
    let big = json!({"action": "refund", "phase": "after", "input": {"note": "x".repeat(10_000)}});
    let (_, resp) = h.call(Method::POST, "/v1/decide", Some(AGENT), Some(big)).await;
    let e = record(&resp).await;
    assert_eq!(e.input["body_kept"], "hash");
    assert!(serde_json::to_string(&e).unwrap().len() < 2048);

    // A refused outcome is filed under the decision it names, phase after.
    let (status, resp) = h
        .call(
            Method::POST,
            "/v1/outcome",
            Some(AGENT),
            Some(json!({"decision_id": "dec-1", "output": {}, "error": "both"})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_block_error(&resp, "invalid_request");
    assert_eq!(resp["decision_id"], "dec-1");
    let e = record(&resp).await;
    assert_eq!((e.phase.as_str(), e.effect.as_str()), ("after", "block"));
}

/// `rules` lists every rule that matched; `matched` gives each its own
/// effect and reason, so that a client can name the rules that decided.
#[tokio::test]
async fn matched_rules_come_with_their_own_effects() {
    let h = Harness::new().await;
    let mut blank = refund(40, "bot-1");
    blank["input"]["note"] = json!("  ");
    let d = h.decide(blank).await;
    assert_eq!(d["effect"], "block");
    assert_eq!(d["rules"], json!(["small_refund", "no_blank_note_on_refund"]));
    assert_eq!(d["reasons"], json!(["a note, when given, must say something"]));
    assert_eq!(
        d["matched"],
        json!([
            {"id": "small_refund", "effect": "allow", "reason": "refunds up to 100 are routine"},
            {"id": "no_blank_note_on_refund", "effect": "block", "reason": "a note, when given, must say something"},
        ]),
        "{d}"
    );
    // A decision no rule made has none.
    let unknown = h.decide(json!({"action": "launch_rockets"})).await;
    assert!(unknown.get("matched").is_none(), "{unknown}");
}
