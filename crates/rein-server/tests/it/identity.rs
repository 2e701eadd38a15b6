//! Actors bound to credentials: the tokens file's `actor:` fields are set
//! on every request made with the token; a body contradicting one is
//! blocked and recorded; the audit record says where each field came from.

use crate::common::*;
use axum::http::{Method, StatusCode};
use serde_json::{json, Value};

/// An agent token bound to `{id: support-bot, role: agent}`.
const BOUND: &str = "bound-token-0123456789abcdef";
/// An approver token whose credential binds the actor id `support-bot`:
/// the same principal as [`BOUND`]'s requests, under another token name.
const LEAD: &str = "lead-token-0123456789abcdef";

async fn harness() -> Harness {
    Harness::with(|config| {
        let path = config.tokens_path.clone().unwrap();
        let tokens = format!(
            "{}  - name: bound-bot\n    role: agent\n    token: {BOUND}\n    actor: {{id: support-bot, role: agent}}\n  - name: lead\n    role: approver\n    token: {LEAD}\n    actor: {{id: support-bot}}\n",
            tokens_yaml()
        );
        std::fs::write(path, tokens).unwrap();
    })
    .await
}

fn refund_as(amount: u64, actor: Value) -> Value {
    let mut request = refund(amount, "x");
    request["actor"] = actor;
    request
}

/// The `before` record of decision `answer`.
async fn record_of(h: &Harness, answer: &Value) -> Value {
    let id = answer["decision_id"].as_str().unwrap();
    let (status, body) = h
        .call(Method::GET, &format!("/v1/audit?decision_id={id}"), Some(ADMIN), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let records = body["records"].as_array().unwrap();
    assert_eq!(records.len(), 1, "{body}");
    records[0].clone()
}

async fn decide_with(h: &Harness, token: &str, request: Value) -> Value {
    let (status, body) = h.call(Method::POST, "/v1/decide", Some(token), Some(request)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

async fn assert_chain_intact(h: &Harness) {
    let (status, v) = h.call(Method::GET, "/v1/audit/verify", Some(ADMIN), None).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["intact"], true, "{v}");
}

#[tokio::test]
async fn a_bound_field_named_otherwise_is_blocked_and_recorded() {
    let h = harness().await;
    // A 500 refund by an admin would be allowed (medium_refund_by_staff).
    let answer = decide_with(&h, BOUND, refund_as(500, json!({"id": "support-bot", "role": "admin"}))).await;
    assert_eq!(answer["effect"], "block", "{answer}");
    assert_eq!(
        answer["reasons"],
        json!(["actor.role is set by the credential"]),
        "{answer}"
    );
    assert_eq!(answer["rules"], json!([]), "{answer}");
    // The attempt is in the audit log as sent, never overwritten.
    let record = record_of(&h, &answer).await;
    assert_eq!(record["effect"], "block");
    // Every token binds a chain: without `chain:` in the tokens file, its
    // own name (`token:<name>`).
    assert_eq!(
        record["actor"],
        json!({"id": "support-bot", "role": "admin", "chain": [{"kind": "token", "id": "bound-bot"}]})
    );
    assert_eq!(
        record["actor_source"],
        json!({"id": "credential", "role": "caller", "chain": "credential"})
    );
    assert_eq!(record["client"], "bound-bot");
    // Both fields wrong: both named.
    let answer = decide_with(&h, BOUND, refund_as(50, json!({"id": "admin-bot", "role": "admin"}))).await;
    assert_eq!(answer["effect"], "block", "{answer}");
    assert_eq!(
        answer["reasons"][0],
        "actor.id is set by the credential; actor.role is set by the credential"
    );
    // An actor that is not an object cannot carry the bound fields.
    let answer = decide_with(&h, BOUND, refund_as(50, json!("support-bot"))).await;
    assert_eq!(answer["effect"], "block", "{answer}");
    // (The first bound field named; every token binds `chain` too.)
    assert!(answer["reasons"][0]
        .as_str()
        .unwrap()
        .ends_with("is set by the credential; the request's actor is not an object"));
    // A number is not the string the credential binds.
    let answer = decide_with(&h, BOUND, refund_as(50, json!({"id": "support-bot", "role": 1}))).await;
    assert_eq!(answer["reasons"][0], "actor.role is set by the credential", "{answer}");
    // Explain refuses it alike.
    let (status, explained) = h
        .call(
            Method::POST,
            "/v1/explain",
            Some(BOUND),
            Some(refund_as(500, json!({"id": "support-bot", "role": "admin"}))),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{explained}");
    assert_eq!(explained["decision"]["effect"], "block", "{explained}");
    assert!(
        explained.to_string().contains("actor.role is set by the credential"),
        "{explained}"
    );
    assert_chain_intact(&h).await;
}

#[tokio::test]
async fn unbound_fields_stay_the_callers() {
    let h = harness().await;
    // The same body with a token that binds nothing: judged as it says.
    let answer = decide_with(&h, AGENT, refund_as(500, json!({"id": "support-bot", "role": "admin"}))).await;
    assert_eq!(answer["effect"], "allow", "{answer}");
    let record = record_of(&h, &answer).await;
    assert_eq!(
        record["actor"],
        json!({"id": "support-bot", "role": "admin", "chain": [{"kind": "token", "id": "agent-1"}]})
    );
    assert_eq!(
        record["actor_source"],
        json!({"id": "caller", "role": "caller", "chain": "credential"})
    );
    // A field the credential does not bind is the caller's beside bound ones.
    let answer = decide_with(
        &h,
        BOUND,
        refund_as(
            50,
            json!({"id": "support-bot", "role": "agent", "on_behalf_of": ["alice"]}),
        ),
    )
    .await;
    assert_eq!(answer["effect"], "allow", "{answer}");
    let record = record_of(&h, &answer).await;
    assert_eq!(
        record["actor_source"],
        json!({"id": "credential", "role": "credential", "on_behalf_of": "caller", "chain": "credential"})
    );
    assert_chain_intact(&h).await;
}

#[tokio::test]
async fn bound_fields_fill_the_request_and_decide() {
    let h = harness().await;
    // No actor at all: the contract needs id and role, which the credential
    // gives; `actor.role == "agent"` then asks for approval.
    let mut request = refund(500, "x");
    request.as_object_mut().unwrap().remove("actor");
    let answer = decide_with(&h, BOUND, request).await;
    assert_eq!(answer["effect"], "require_approval", "{answer}");
    assert_eq!(answer["rules"], json!(["medium_refund_needs_support"]), "{answer}");
    let record = record_of(&h, &answer).await;
    assert_eq!(
        record["actor"],
        json!({"id": "support-bot", "role": "agent", "chain": [{"kind": "token", "id": "bound-bot"}]})
    );
    assert_eq!(
        record["actor_source"],
        json!({"id": "credential", "role": "credential", "chain": "credential"})
    );
    // The approval was asked for by the bound id.
    let id = answer["approval"]["id"].as_str().unwrap().to_string();
    let (status, approval) = h
        .call(Method::GET, &format!("/v1/approvals/{id}"), Some(ADMIN), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{approval}");
    assert_eq!(approval["requested_by"], "support-bot", "{approval}");
    // The same values as the credential's are fine.
    let answer = decide_with(&h, BOUND, refund_as(50, json!({"id": "support-bot", "role": "agent"}))).await;
    assert_eq!(answer["effect"], "allow", "{answer}");
    // The outcome's record says the same of the decided actor.
    let decision_id = answer["decision_id"].as_str().unwrap();
    let (status, outcome) = h
        .call(
            Method::POST,
            "/v1/outcome",
            Some(BOUND),
            Some(json!({"decision_id": decision_id, "output": {"refund_id": "r1"}})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{outcome}");
    let (_, records) = h
        .call(
            Method::GET,
            &format!("/v1/audit?decision_id={decision_id}"),
            Some(ADMIN),
            None,
        )
        .await;
    let after = records["records"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["phase"] == "after")
        .unwrap()
        .clone();
    assert_eq!(
        after["actor_source"],
        json!({"id": "credential", "role": "credential", "chain": "credential"}),
        "{after}"
    );
    assert_chain_intact(&h).await;
}

/// Self-approval is judged on the identity bound to the approver's
/// credential: `lead` is a token of another name whose actor id is the
/// requester's, so it may not approve.
#[tokio::test]
async fn self_approval_is_judged_on_the_bound_id() {
    let h = harness().await;
    let mut request = refund(500, "x");
    request.as_object_mut().unwrap().remove("actor");
    let answer = decide_with(&h, BOUND, request.clone()).await;
    let id = answer["approval"]["id"].as_str().unwrap().to_string();
    // Not listed for it as one it may decide, and refused when it tries.
    let (status, body) = h
        .call(Method::POST, &format!("/v1/approvals/{id}/grant"), Some(LEAD), None)
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_error(&body, "self_approval");
    let (status, body) = h
        .call(Method::POST, &format!("/v1/approvals/{id}/deny"), Some(LEAD), None)
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_error(&body, "self_approval");
    // Another approver may.
    let (status, body) = h
        .call(Method::POST, &format!("/v1/approvals/{id}/grant"), Some(ALICE), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let answer = decide_with(&h, BOUND, with_approval(request, &id)).await;
    assert_eq!(answer["effect"], "allow", "{answer}");
    assert_chain_intact(&h).await;
}
