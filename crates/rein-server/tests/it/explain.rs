//! POST /v1/explain: the decision /v1/decide would give now, with the
//! trace of every rule, reserving, writing and recording nothing.

use crate::common::*;
use axum::http::{Method, StatusCode};
use serde_json::{json, Value};

const STATEFUL: &str = r#"
default: allow
contracts:
  actor: {id: string}
  actions:
    refund:
      input:
        amount: {type: number, min: 0}
    read_secret:
      input: {path: string}
    send:
      input: {to: string}
rules:
  - id: refund_rate
    action: refund
    effect: block
    limit: {count: 3, window: 1h}
    reason: at most 3 refunds an hour
  - id: secret_read
    action: read_secret
    effect: allow
    labels: [secret]
  - id: no_send_after_secret
    action: send
    when: '"secret" in session.labels'
    effect: block
    reason: nothing leaves a session that read a secret
"#;

async fn explain(h: &Harness, token: &str, body: Value) -> (StatusCode, Value) {
    h.call(Method::POST, "/v1/explain", Some(token), Some(body)).await
}

/// The records of decisions (the start's activation record aside).
async fn audit_records(h: &Harness) -> usize {
    let (status, body) = h.call(Method::GET, "/v1/audit?limit=1000", Some(ADMIN), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let records = body["records"].as_array().unwrap();
    records.iter().filter(|r| r["phase"] != "activate").count()
}

fn request(action: &str, input: Value, session: &str) -> Value {
    json!({"action": action, "input": input, "actor": {"id": "bot-1"}, "session": session})
}

/// The explained decision is the one decide gives, for each effect, with
/// the trace of every rule; explaining records nothing and opens no
/// approval.
#[tokio::test]
async fn explains_what_decide_decides_and_records_nothing() {
    for amount in [40, 5000, 500] {
        let h = Harness::new().await;
        let (status, explained) = explain(&h, AGENT, refund(amount, "bot-1")).await;
        assert_eq!(status, StatusCode::OK, "{explained}");
        let decision = &explained["decision"];
        assert!(decision.get("decision_id").is_none(), "{explained}");
        // Every rule of the action is traced, matched or not.
        let traced: Vec<&str> = explained["rules"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["id"].as_str().unwrap())
            .collect();
        assert!(
            traced.contains(&"small_refund") && traced.contains(&"fraud_guard"),
            "{traced:?}"
        );
        let (again_status, again) = explain(&h, AGENT, refund(amount, "bot-1")).await;
        assert_eq!(again_status, StatusCode::OK);
        assert_eq!(again, explained);
        assert_eq!(audit_records(&h).await, 0, "explain recorded something");
        let (_, approvals) = h.call(Method::GET, "/v1/approvals", Some(ALICE), None).await;
        assert_eq!(approvals["approvals"], json!([]), "explain opened an approval");

        let decided = h.decide(refund(amount, "bot-1")).await;
        for key in ["effect", "rules", "reasons", "policy_version", "phase"] {
            assert_eq!(
                decision[key], decided[key],
                "{key} for {amount}: {explained} vs {decided}"
            );
        }
        assert_eq!(audit_records(&h).await, 1);
        if amount == 500 {
            assert_eq!(decision["effect"], "require_approval");
            assert_eq!(decision["approval"][0]["role"], "support", "{explained}");
        }
    }
}

/// A contract violation and an unknown action are explained as the
/// `block` decide gives, naming the field.
#[tokio::test]
async fn a_request_that_breaks_its_contract_is_explained_as_block() {
    let h = Harness::new().await;
    let mut bad = refund(40, "bot-1");
    bad["input"]["amount"] = json!("forty");
    let (status, e) = explain(&h, AGENT, bad).await;
    assert_eq!(status, StatusCode::OK, "{e}");
    assert_eq!(e["decision"]["effect"], "block");
    assert_eq!(e["decision"]["violation"]["path"], "input.amount", "{e}");
    assert_eq!(e["rules"], json!([]));
    let (_, e) = explain(&h, AGENT, json!({"action": "transfer_all_funds"})).await;
    assert_eq!(e["decision"]["effect"], "block");
    assert_eq!(e["decision"]["violation"]["path"], "action", "{e}");
    assert_eq!(audit_records(&h).await, 0);
}

/// A limit is read, never counted: explaining many times leaves every
/// unit to decide, and once decide used them up, explain says block with
/// the limit's reason.
#[tokio::test]
async fn limits_are_read_not_reserved() {
    let h = Harness::with_policy(STATEFUL, |_| {}).await;
    let r = request("refund", json!({"amount": 1}), "s-1");
    for _ in 0..10 {
        let (status, e) = explain(&h, AGENT, r.clone()).await;
        assert_eq!(status, StatusCode::OK, "{e}");
        assert_eq!(e["decision"]["effect"], "allow", "{e}");
    }
    for _ in 0..3 {
        assert_eq!(h.decide(r.clone()).await["effect"], "allow");
    }
    let (_, e) = explain(&h, AGENT, r.clone()).await;
    assert_eq!(e["decision"]["effect"], "block", "{e}");
    assert_eq!(e["decision"]["rules"], json!(["refund_rate"]));
    assert!(
        e["decision"]["reasons"][0]
            .as_str()
            .unwrap()
            .starts_with("refund_rate: 3 of 3 used"),
        "{e}"
    );
    assert_eq!(h.decide(r).await["effect"], "block");
    let (_, limits) = h.call(Method::GET, "/v1/limits", Some(ALICE), None).await;
    assert_eq!(limits["limits"][0]["used"], "3", "{limits}");
    assert_eq!(audit_records(&h).await, 4);
}

/// Sessions are read in the token's scope, and explaining a call that
/// labels its session adds no label.
#[tokio::test]
async fn sessions_are_read_in_the_tokens_scope_and_never_written() {
    let h = Harness::with_policy(STATEFUL, |_| {}).await;
    let send = |s: &str| request("send", json!({"to": "x"}), s);
    // Explaining the read labels nothing.
    let (_, e) = explain(&h, AGENT, request("read_secret", json!({"path": "/k"}), "s-1")).await;
    assert_eq!(e["decision"]["effect"], "allow", "{e}");
    assert_eq!(e["decision"]["labels"], json!(["secret"]), "{e}");
    let (_, e) = explain(&h, AGENT, send("s-1")).await;
    assert_eq!(e["decision"]["effect"], "allow", "{e}");

    let read = h.decide(request("read_secret", json!({"path": "/k"}), "s-1")).await;
    let (_, e) = explain(&h, AGENT, send("s-1")).await;
    assert_eq!(e["decision"]["effect"], "block", "{e}");
    assert_eq!(e["decision"]["rules"], json!(["no_send_after_secret"]));
    let traced = &e["rules"][0];
    assert_eq!(traced["id"], "no_send_after_secret");
    assert_eq!(traced["outcome"]["result"], "matched", "{e}");
    // Another token's session of the same name is its own.
    let (_, e) = explain(&h, AGENT2, send("s-1")).await;
    assert_eq!(e["decision"]["effect"], "allow", "{e}");
    let (_, session) = h
        .call(Method::GET, "/v1/sessions/s-1?client=agent-1", Some(ALICE), None)
        .await;
    // The one label is decide's: explaining the read added none.
    assert_eq!(session["labels"].as_array().unwrap().len(), 1, "{session}");
    assert_eq!(session["labels"][0]["decision_id"], read["decision_id"], "{session}");
}

/// What decide refuses before its rules (here a session id longer than
/// the state keeps) explain answers as the same `block`.
#[tokio::test]
async fn a_request_the_state_cannot_take_is_explained_as_block() {
    let h = Harness::with_policy(STATEFUL, |_| {}).await;
    let long = "s".repeat(300);
    let r = request("send", json!({"to": "x"}), &long);
    let (status, e) = explain(&h, AGENT, r.clone()).await;
    assert_eq!(status, StatusCode::OK, "{e}");
    assert_eq!(e["decision"]["effect"], "block");
    assert!(
        e["decision"]["reasons"][0]
            .as_str()
            .unwrap()
            .contains("the session id is"),
        "{e}"
    );
    assert_eq!(e["rules"], json!([]));
    let decided = h.decide(r).await;
    assert_eq!(decided["effect"], "block");
    assert_eq!(decided["reasons"][0], e["decision"]["reasons"][0]);
}

/// Bad bodies, an approval id, a missing or wrong token: errors that say
/// `block`, none recorded.
#[tokio::test]
async fn bad_requests_are_refused_with_block_and_not_recorded() {
    let h = Harness::new().await;
    for (body, code) in [
        (b"refund 40".to_vec(), "invalid_json"),
        (b"[1]".to_vec(), "invalid_request"),
        (br#"{"action": "refund", "output": {}}"#.to_vec(), "invalid_request"),
        (br#"{"action": "refund", "inputs": {}}"#.to_vec(), "invalid_request"),
        (
            serde_json::to_vec(&with_approval(refund(500, "bot-1"), "ap-1")).unwrap(),
            "invalid_request",
        ),
    ] {
        let (status, e) = h.call_raw(Method::POST, "/v1/explain", Some(AGENT), Some(body)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{e}");
        assert_block_error(&e, code);
    }
    let (status, e) = h
        .call(Method::POST, "/v1/explain", None, Some(refund(40, "bot-1")))
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_block_error(&e, "unauthorized");
    let (status, e) = explain(&h, ALICE, refund(40, "bot-1")).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_block_error(&e, "forbidden");
    let (status, e) = h.call(Method::GET, "/v1/explain", Some(AGENT), None).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_block_error(&e, "method_not_allowed");
    assert_eq!(audit_records(&h).await, 0);
}
