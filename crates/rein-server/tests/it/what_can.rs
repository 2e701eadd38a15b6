//! `POST /v1/what-can` over a loopback port: an agent asks about itself
//! (its actor bound by its credential as `/v1/decide` binds it, its
//! delegated scope applied); an approver or admin may ask for any actor.

use crate::common::*;
use reqwest::StatusCode;
use serde_json::{json, Value};

/// An agent token bound to `{id: support-bot, role: agent}`.
const BOUND: &str = "bound-token-0123456789abcdef";
/// An agent whose chain and scope (`refund` only) come from the tokens file.
const SCOPED: &str = "scoped-token-0123456789abcdef";

const SNAPSHOT: &str = r#"{"fraud_flag": false, "refunds_today": 0, "account_age_days": 400}"#;

async fn harness() -> Harness {
    Harness::with(|config| {
        let path = config.tokens_path.clone().unwrap();
        let tokens = format!(
            "{}  - name: bound-bot\n    role: agent\n    token: {BOUND}\n    actor: {{id: support-bot, role: agent}}\n  - name: scoped\n    role: agent\n    token: {SCOPED}\n    actor: {{id: scoped-bot, role: support}}\n    chain: [\"user:alice\", \"agent:scoped-bot\"]\n    actions: [\"refund\"]\n",
            tokens_yaml()
        );
        std::fs::write(path, tokens).unwrap();
    })
    .await
}

async fn post(served: &Served, token: &str, body: Value) -> (StatusCode, Value) {
    let resp = reqwest::Client::new()
        .post(served.url("/v1/what-can"))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = resp.status();
    let text = resp.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

fn action<'a>(answer: &'a Value, name: &str) -> &'a Value {
    answer["actions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["action"] == name)
        .unwrap_or_else(|| panic!("no {name} in {answer}"))
}

#[tokio::test]
async fn an_agent_asks_about_itself_as_its_credential_binds_it() {
    let h = harness().await;
    let served = h.serve().await;
    let snapshot: Value = serde_json::from_str(SNAPSHOT).unwrap();
    // No actor in the body: the credential's.
    let (status, answer) = post(&served, BOUND, json!({"snapshot": snapshot})).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["actor"]["id"], "support-bot", "{answer}");
    assert_eq!(answer["actor"]["role"], "agent", "{answer}");
    let answered = action(&answer, "refund");
    assert_eq!(answered["status"], "allowed_when", "{answer}");
    assert_eq!(
        answered["approval"]["cel"],
        "input.amount <= 1000 && (!has(input.note) || input.note.trim() != \"\") && input.amount > 100"
    );
    // The answer names the version served, as decisions do.
    let decided = h.decide(refund(40, "x")).await;
    assert_eq!(answer["policy_version"], decided["policy_version"]);
    assert_eq!(answer["policy_version_label"], "2026-11-24.1");

    // It cannot ask as someone else: a contradicted bound field is refused.
    let (status, body) = post(
        &served,
        BOUND,
        json!({"actor": {"id": "support-bot", "role": "admin"}, "snapshot": snapshot}),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["error"]["code"], "identity", "{body}");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("actor.role is set by the credential"));
    let (status, _) = post(&served, BOUND, json!({"actor": {"id": "root"}, "snapshot": snapshot})).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn approvers_and_admins_may_ask_for_any_actor() {
    let h = harness().await;
    let served = h.serve().await;
    let snapshot: Value = serde_json::from_str(SNAPSHOT).unwrap();
    for token in [ADMIN, ALICE] {
        let (status, answer) = post(
            &served,
            token,
            json!({"actor": {"id": "root", "role": "admin"}, "snapshot": snapshot, "action": "ref*"}),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{answer}");
        assert_eq!(answer["actions"].as_array().unwrap().len(), 1, "{answer}");
        assert_eq!(
            action(&answer, "refund")["approval"]["cel"],
            "(!has(input.note) || input.note.trim() != \"\") && input.amount > 1000"
        );
        assert_eq!(answer["actor"], json!({"id": "root", "role": "admin"}));
    }
}

#[tokio::test]
async fn a_delegated_scope_leaves_other_actions_never_allowed() {
    let h = harness().await;
    let served = h.serve().await;
    let snapshot: Value = serde_json::from_str(SNAPSHOT).unwrap();
    let (status, answer) = post(&served, SCOPED, json!({"snapshot": snapshot})).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(
        answer["actor"]["chain"],
        json!([{"kind": "user", "id": "alice"}, {"kind": "agent", "id": "scoped-bot"}])
    );
    let lookup = action(&answer, "order.lookup");
    assert_eq!(lookup["status"], "never_allowed", "{answer}");
    assert_eq!(lookup["allowed"]["kind"], "never");
    assert!(lookup["error"].as_str().unwrap().contains("scoped-bot"), "{lookup}");
    // The action in scope is answered from the rules.
    assert_eq!(action(&answer, "refund")["status"], "allowed_when", "{answer}");
}

#[tokio::test]
async fn bad_bodies_and_actors_are_refused() {
    let h = harness().await;
    let served = h.serve().await;
    // The admin's actor breaks the actor contract: the field is named.
    let (status, body) = post(
        &served,
        ADMIN,
        json!({"actor": {"id": "x", "role": "pirate"}, "snapshot": serde_json::from_str::<Value>(SNAPSHOT).unwrap()}),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["code"], "contract");
    assert_eq!(body["field"], "actor.role", "{body}");
    let (status, body) = post(&served, ADMIN, json!({"actor": {}, "extra": 1})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["code"], "invalid_request");
    let (status, _) = post(&served, "not-a-token-0123456789abcdef", json!({})).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}
