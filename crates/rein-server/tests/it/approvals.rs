//! The approval flow end to end, and every way it can be refused.

use crate::common::*;
use axum::http::{Method, StatusCode};
use serde_json::json;

#[tokio::test]
async fn require_approval_grant_use_once() {
    let h = Harness::new().await;
    let request = refund(500, "bot-1");

    let first = h.decide(request.clone()).await;
    assert_eq!(first["effect"], "require_approval");
    let id = first["approval"]["id"].as_str().unwrap().to_string();

    // Re-sending before it is granted does not allow.
    let early = h.decide(with_approval(request.clone(), &id)).await;
    assert_eq!(early["effect"], "block", "{early}");
    assert!(early["reasons"][0].as_str().unwrap().contains("pending"), "{early}");

    let (status, list) = h
        .call(Method::GET, "/v1/approvals?state=pending", Some(ALICE), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    let listed = list["approvals"].as_array().unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["id"], id.as_str());
    assert_eq!(listed[0]["requested_by"], "bot-1");
    assert_eq!(listed[0]["rules"], json!(["medium_refund_needs_support"]));
    assert_eq!(listed[0]["summary"]["input"]["amount"], 500);

    let (status, granted) = h
        .call(
            Method::POST,
            &format!("/v1/approvals/{id}/grant"),
            Some(ALICE),
            Some(json!({"comment": "customer called"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{granted}");
    assert_eq!(granted["state"], "granted");
    assert_eq!(granted["decided_by"], "alice");
    assert_eq!(granted["comment"], "customer called");

    // A different request cannot use it.
    let other = h.decide(with_approval(refund(600, "bot-1"), &id)).await;
    assert_eq!(other["effect"], "block", "{other}");
    assert!(
        other["reasons"][0].as_str().unwrap().contains("different request"),
        "{other}"
    );

    let allowed = h.decide(with_approval(request.clone(), &id)).await;
    assert_eq!(allowed["effect"], "allow", "{allowed}");
    assert!(
        allowed["reasons"].to_string().contains("approved by `alice`"),
        "{allowed}"
    );

    let again = h.decide(with_approval(request.clone(), &id)).await;
    assert_eq!(again["effect"], "block", "{again}");
    assert!(again["reasons"][0].as_str().unwrap().contains("used"), "{again}");

    let (status, record) = h
        .call(Method::GET, &format!("/v1/approvals/{id}"), Some(ALICE), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(record["state"], "used");
    let (_, used) = h
        .call(Method::GET, "/v1/approvals?state=used&limit=5", Some(ADMIN), None)
        .await;
    assert_eq!(used["approvals"].as_array().unwrap().len(), 1);
    let (_, pending) = h
        .call(Method::GET, "/v1/approvals?state=pending", Some(ALICE), None)
        .await;
    assert_eq!(pending["approvals"], json!([]));

    // Granting it again is a conflict.
    let (status, body) = h
        .call(Method::POST, &format!("/v1/approvals/{id}/grant"), Some(ALICE), None)
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_error(&body, "wrong_state");
}

#[tokio::test]
async fn no_actor_approves_its_own_request() {
    let h = Harness::new().await;
    let request = refund(500, "bot-7");
    let id = h.decide(request.clone()).await["approval"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    // The approver token named `bot-7` is the actor who asked.
    let (status, body) = h
        .call(Method::POST, &format!("/v1/approvals/{id}/grant"), Some(BOT7), None)
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_error(&body, "self_approval");
    assert!(body["error"]["message"].as_str().unwrap().contains("bot-7"));
    assert_eq!(h.decide(with_approval(request.clone(), &id)).await["effect"], "block");
    // It is still pending: someone else can grant it.
    let (status, _) = h
        .call(Method::POST, &format!("/v1/approvals/{id}/grant"), Some(ALICE), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(h.decide(with_approval(request, &id)).await["effect"], "allow");
}

/// The token that sent a request may not approve it, whatever actor the
/// request names: the actor's id is the client's to choose.
#[tokio::test]
async fn no_client_approves_the_request_it_sent() {
    let h = Harness::new().await;
    let request = refund(500, "someone-else");
    let (status, first) = h
        .call(Method::POST, "/v1/decide", Some(ADMIN), Some(request.clone()))
        .await;
    assert_eq!(status, StatusCode::OK, "{first}");
    assert_eq!(first["effect"], "require_approval", "{first}");
    let id = first["approval"]["id"].as_str().unwrap().to_string();
    let (status, body) = h
        .call(Method::POST, &format!("/v1/approvals/{id}/grant"), Some(ADMIN), None)
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_error(&body, "self_approval");
    let (_, record) = h
        .call(Method::GET, &format!("/v1/approvals/{id}"), Some(ALICE), None)
        .await;
    assert_eq!(
        (record["state"].as_str(), record["requested_via"].as_str()),
        (Some("pending"), Some("ops"))
    );
    let (status, _) = h
        .call(Method::POST, &format!("/v1/approvals/{id}/grant"), Some(ALICE), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    let (_, allowed) = h
        .call(
            Method::POST,
            "/v1/decide",
            Some(ADMIN),
            Some(with_approval(request, &id)),
        )
        .await;
    assert_eq!(allowed["effect"], "allow", "{allowed}");
}

#[tokio::test]
async fn denied_approvals_stay_blocked() {
    let h = Harness::new().await;
    let request = refund(500, "bot-1");
    let id = h.decide(request.clone()).await["approval"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let (status, denied) = h
        .call(
            Method::POST,
            &format!("/v1/approvals/{id}/deny"),
            Some(ALICE),
            Some(json!({"comment": "no"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(denied["state"], "denied");
    assert_eq!(h.decide(with_approval(request, &id)).await["effect"], "block");
    let (status, body) = h
        .call(Method::POST, &format!("/v1/approvals/{id}/grant"), Some(ALICE), None)
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_error(&body, "wrong_state");
}

#[tokio::test]
async fn approval_errors_and_bad_queries() {
    let h = Harness::new().await;
    for path in [
        "/v1/approvals/nope",
        "/v1/approvals/nope/grant",
        "/v1/approvals/nope/deny",
    ] {
        let method = if path.ends_with("nope") {
            Method::GET
        } else {
            Method::POST
        };
        let (status, body) = h.call(method, path, Some(ALICE), None).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
        assert_error(&body, "not_found");
    }
    let id = h.decide(refund(500, "bot-1")).await["approval"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    for (path, code) in [
        ("/v1/approvals?state=open", "invalid_query"),
        ("/v1/approvals?limit=0", "invalid_query"),
        ("/v1/approvals?limit=lots", "invalid_query"),
        ("/v1/approvals?stat=pending", "invalid_query"),
    ] {
        let (status, body) = h.call(Method::GET, path, Some(ALICE), None).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}: {body}");
        assert_error(&body, code);
    }
    for body in [json!({"comment": 5}), json!({"reason": "x"}), json!([1])] {
        let (status, resp) = h
            .call(
                Method::POST,
                &format!("/v1/approvals/{id}/grant"),
                Some(ALICE),
                Some(body),
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{resp}");
        assert_error(&resp, "invalid_request");
    }
    let (status, resp) = h
        .call_raw(
            Method::POST,
            &format!("/v1/approvals/{id}/grant"),
            Some(ALICE),
            Some(b"{oops".to_vec()),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_error(&resp, "invalid_json");
    // None of that touched it.
    let (_, record) = h
        .call(Method::GET, &format!("/v1/approvals/{id}"), Some(ALICE), None)
        .await;
    assert_eq!(record["state"], "pending");
}

/// Asking three times opens one approval; the token that asked can read it
/// (and only its own), not decide it.
#[tokio::test]
async fn an_identical_request_reuses_its_approval_and_the_agent_reads_its_own() {
    let h = Harness::new().await;
    let request = refund(500, "bot-1");
    let first = h.decide(request.clone()).await;
    let id = first["approval"]["id"].as_str().unwrap().to_string();
    assert!(first["approval"].get("reused").is_none(), "{first}");
    for _ in 0..2 {
        let again = h.decide(request.clone()).await;
        assert_eq!(again["effect"], "require_approval");
        assert_eq!(again["approval"]["id"], id.as_str(), "{again}");
        assert_eq!(again["approval"]["reused"], true, "{again}");
    }
    let (_, pending) = h
        .call(Method::GET, "/v1/approvals?state=pending", Some(ALICE), None)
        .await;
    assert_eq!(pending["approvals"].as_array().unwrap().len(), 1, "{pending}");

    // Another agent token asking the same opens its own.
    let (_, theirs) = h
        .call(Method::POST, "/v1/decide", Some(AGENT2), Some(request.clone()))
        .await;
    let theirs = theirs["approval"]["id"].as_str().unwrap().to_string();
    assert_ne!(theirs, id);

    for (token, mine, other) in [(AGENT, &id, &theirs), (AGENT2, &theirs, &id)] {
        let (status, list) = h.call(Method::GET, "/v1/approvals", Some(token), None).await;
        assert_eq!(status, StatusCode::OK, "{list}");
        let ids: Vec<&str> = list["approvals"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["id"].as_str().unwrap())
            .collect();
        assert_eq!(ids, [mine.as_str()]);
        let (status, own) = h
            .call(Method::GET, &format!("/v1/approvals/{mine}"), Some(token), None)
            .await;
        assert_eq!(
            (status, own["state"].as_str()),
            (StatusCode::OK, Some("pending")),
            "{own}"
        );
        let (status, body) = h
            .call(Method::GET, &format!("/v1/approvals/{other}"), Some(token), None)
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
        let (status, body) = h
            .call(Method::POST, &format!("/v1/approvals/{mine}/grant"), Some(token), None)
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    }
    let (_, all) = h.call(Method::GET, "/v1/approvals", Some(ALICE), None).await;
    assert_eq!(all["approvals"].as_array().unwrap().len(), 2);
}

/// A granted approval allows the identical request once, from the token
/// that asked: another agent token re-sending it is refused.
#[tokio::test]
async fn a_grant_is_used_only_by_the_token_that_asked() {
    let h = Harness::new().await;
    let request = refund(500, "bot-1");
    let id = h.decide(request.clone()).await["approval"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let (status, _) = h
        .call(Method::POST, &format!("/v1/approvals/{id}/grant"), Some(ALICE), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    let (_, stolen) = h
        .call(
            Method::POST,
            "/v1/decide",
            Some(AGENT2),
            Some(with_approval(request.clone(), &id)),
        )
        .await;
    assert_eq!(stolen["effect"], "block", "{stolen}");
    assert!(
        stolen["reasons"][0].as_str().unwrap().contains("another client"),
        "{stolen}"
    );
    let allowed = h.decide(with_approval(request.clone(), &id)).await;
    assert_eq!(allowed["effect"], "allow", "{allowed}");
    // The answer and the record show the policy's label beside its hash.
    assert_eq!(allowed["policy_version_label"], "2026-11-24.1");
    let (_, records) = h
        .call(
            Method::GET,
            &format!("/v1/audit?decision_id={}", allowed["decision_id"].as_str().unwrap()),
            Some(ADMIN),
            None,
        )
        .await;
    assert_eq!(
        records["records"][0]["policy_version_label"], "2026-11-24.1",
        "{records}"
    );
    assert_eq!(records["records"][0]["client"], "agent-1", "{records}");
}

/// An approver who may decide an approval sees the sensitive values it
/// covers while it is pending; the agent, an approver of another role and
/// everyone after the decision do not.
#[tokio::test]
async fn approvers_see_the_sensitive_values_of_what_they_decide() {
    let policy = r#"
default: allow
contracts:
  actions:
    pay:
      input:
        amount: int
        card: {type: string, sensitive: true}
rules:
  - id: big
    action: pay
    when: input.amount > 100
    effect: require_approval
    approval: {role: finance, ttl: 5m}
"#;
    let h = Harness::with(|_| {}).await;
    std::fs::write(h.policy_path(), policy).unwrap();
    let tokens = format!(
        "{}  - {{name: sam, role: approver, token: sam-token-0123456789abcdef, approves: [support]}}\n",
        tokens_yaml()
    );
    std::fs::write(h.dir.path().join("tokens.yaml"), tokens).unwrap();
    let h = Harness {
        state: {
            let mut config = rein_server::ServerConfig::new(vec![h.policy_path()], h.db_path());
            config.tokens_path = Some(h.dir.path().join("tokens.yaml"));
            h.state.close().await.unwrap();
            rein_server::AppState::from_config(&config).await.unwrap()
        },
        dir: h.dir,
    };
    let card = "5555444433332222";
    let asked = h
        .decide(json!({"action": "pay", "input": {"amount": 500, "card": card}, "actor": {"id": "bot"}}))
        .await;
    let id = asked["approval"]["id"].as_str().unwrap().to_string();
    let (status, seen) = h
        .call(Method::GET, &format!("/v1/approvals/{id}"), Some(ALICE), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{seen}");
    assert_eq!(seen["request"]["input"]["card"], card, "{seen}");
    assert_ne!(seen["summary"]["input"]["card"], card, "the summary stays redacted");
    for token in [AGENT, "sam-token-0123456789abcdef"] {
        let (status, body) = h
            .call(Method::GET, &format!("/v1/approvals/{id}"), Some(token), None)
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert!(!body.to_string().contains(card), "{body}");
    }
    let (_, list) = h.call(Method::GET, "/v1/approvals", Some(ALICE), None).await;
    assert!(!list.to_string().contains(card), "{list}");
    let (status, _) = h
        .call(Method::POST, &format!("/v1/approvals/{id}/grant"), Some(ALICE), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    let (_, after) = h
        .call(Method::GET, &format!("/v1/approvals/{id}"), Some(ALICE), None)
        .await;
    assert!(after.get("request").is_none(), "{after}");
    // The grant holds five minutes from now.
    let expires: jiff::Timestamp = after["expires_at"].as_str().unwrap().parse().unwrap();
    let left = expires.duration_since(jiff::Timestamp::now());
    assert!(
        left > jiff::SignedDuration::from_mins(4) && left <= jiff::SignedDuration::from_mins(5),
        "{left:?}"
    );
    h.state.close().await.unwrap();
    let bytes = std::fs::read(h.db_path()).unwrap();
    assert!(
        !bytes.windows(card.len()).any(|w| w == card.as_bytes()),
        "the card is on disk in clear"
    );
}
