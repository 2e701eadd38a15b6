//! POST /v1/outcome: the `after` rules and the output contract.

use crate::common::*;
use axum::http::{Method, StatusCode};
use serde_json::{json, Value};

async fn outcome(h: &Harness, body: Value) -> (StatusCode, Value) {
    h.call(Method::POST, "/v1/outcome", Some(AGENT), Some(body)).await
}

/// A fresh allowed decision's id: an outcome is reported once per decision.
async fn allowed(h: &Harness) -> Value {
    let allowed = h.decide(refund(40, "bot-1")).await;
    assert_eq!(allowed["effect"], "allow");
    allowed["decision_id"].clone()
}

#[tokio::test]
async fn good_and_bad_outputs() {
    let h = Harness::new().await;
    let id = allowed(&h).await;
    let (status, ok) = outcome(&h, json!({"decision_id": id, "output": {"refund_id": "re_123"}})).await;
    assert_eq!(status, StatusCode::OK, "{ok}");
    assert_eq!(ok["effect"], "allow");
    assert_eq!(ok["phase"], "after");
    assert_eq!(ok["decision_id"], id);

    // The `after` rule: an unexpected refund id is withheld.
    let (status, bad) = outcome(
        &h,
        json!({"decision_id": allowed(&h).await, "output": {"refund_id": "xx_123"}}),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(bad["effect"], "block", "{bad}");
    assert_eq!(bad["rules"], json!(["refund_id_format"]));

    // The output contract: a wrong type is withheld too.
    let (_, wrong) = outcome(
        &h,
        json!({"decision_id": allowed(&h).await, "output": {"refund_id": 7}}),
    )
    .await;
    assert_eq!(wrong["effect"], "block", "{wrong}");
    assert_eq!(wrong["violation"]["path"], "output.refund_id", "{wrong}");

    // An error instead of an output goes through the after rules as
    // `error`: `refund_id_format` reads the output, so it does not apply,
    // and the after default (allow) decides. It is recorded.
    let failed_id = allowed(&h).await;
    let (_, failed) = outcome(&h, json!({"decision_id": failed_id, "error": "provider timeout"})).await;
    assert_eq!(failed["effect"], "allow", "{failed}");

    for id in [&id, &failed_id] {
        let (_, records) = h
            .call(
                Method::GET,
                &format!("/v1/audit?decision_id={}", id.as_str().unwrap()),
                Some(ADMIN),
                None,
            )
            .await;
        let phases: Vec<(&str, &str)> = records["records"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| (r["phase"].as_str().unwrap(), r["client"].as_str().unwrap()))
            .collect();
        assert_eq!(phases, [("before", "agent-1"), ("after", "agent-1")]);
    }
}

/// An outcome is reported once, by the token that asked for the decision:
/// another agent token is refused (403), a second report too (409), over
/// real HTTP, and neither is recorded.
#[tokio::test]
async fn outcomes_belong_to_the_token_that_asked_and_are_reported_once() {
    let h = Harness::new().await;
    let served = h.serve().await;
    let client = reqwest::Client::new();
    let post = |token: &'static str, body: Value| {
        let client = client.clone();
        let url = served.url("/v1/outcome");
        async move {
            let r = client.post(url).bearer_auth(token).json(&body).send().await.unwrap();
            (r.status(), r.json::<Value>().await.unwrap())
        }
    };
    let id = allowed(&h).await;
    // A refused body naming the decision, from another token, is recorded
    // under it but does not take the outcome's place.
    let (status, body) = post(AGENT2, json!({"decision_id": id, "outputs": {}})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let report = json!({"decision_id": id, "output": {"refund_id": "re_1"}});
    let (status, body) = post(AGENT2, report.clone()).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_block_error(&body, "other_client");
    let (status, body) = post(AGENT, report.clone()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["effect"], "allow");
    for token in [AGENT, AGENT2] {
        let (status, body) = post(token, json!({"decision_id": id, "output": {"refund_id": "xx_9"}})).await;
        assert!(
            status == StatusCode::CONFLICT || status == StatusCode::FORBIDDEN,
            "{status} {body}"
        );
        assert_eq!(body["effect"], "block", "{body}");
    }
    let (status, body) = post(AGENT, report).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_block_error(&body, "outcome_already_reported");
    let (_, records) = h
        .call(
            Method::GET,
            &format!("/v1/audit?decision_id={}", id.as_str().unwrap()),
            Some(ADMIN),
            None,
        )
        .await;
    let phases: Vec<&str> = records["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["phase"].as_str().unwrap())
        .collect();
    assert_eq!(
        phases,
        ["before", "after", "after"],
        "the refused body and the one outcome: {records}"
    );
    served.shutdown().await;
}

#[tokio::test]
async fn outcomes_of_what_was_not_allowed_block() {
    let h = Harness::new().await;
    let blocked = h.decide(refund(5000, "bot-1")).await;
    let (_, o) = outcome(
        &h,
        json!({"decision_id": blocked["decision_id"], "output": {"refund_id": "re_1"}}),
    )
    .await;
    assert_eq!(o["effect"], "block", "{o}");
    let (_, o) = outcome(
        &h,
        json!({"decision_id": "no-such-decision", "output": {"refund_id": "re_1"}}),
    )
    .await;
    assert_eq!(o["effect"], "block", "{o}");
}

#[tokio::test]
async fn bad_outcome_bodies_block() {
    let h = Harness::new().await;
    let id = h.decide(refund(40, "bot-1")).await["decision_id"].clone();
    for (body, needle) in [
        (json!({"output": {"refund_id": "re_1"}}), "decision_id"),
        (json!({"decision_id": 5}), "invalid type"),
        (json!({"decision_id": id, "output": {}, "error": "x"}), "not both"),
        (json!({"decision_id": id, "outptu": {}}), "outptu"),
        (json!({"decision_id": id, "error": {"code": 1}}), "invalid type"),
    ] {
        let (status, resp) = outcome(&h, body.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {resp}");
        assert_block_error(&resp, "invalid_request");
        assert!(resp["error"]["message"].as_str().unwrap().contains(needle), "{resp}");
    }
    let (status, resp) = h
        .call_raw(Method::POST, "/v1/outcome", Some(AGENT), Some(b"{".to_vec()))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_block_error(&resp, "invalid_json");
}
