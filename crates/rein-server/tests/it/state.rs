//! Stateful rules through the server: exact limits under concurrency over
//! real HTTP, windows with trusted request times, restart, sessions,
//! approvals over a limit, and the limits and sessions routes.

use crate::common::*;
use axum::http::{Method, StatusCode};
use serde_json::{json, Value};

const CLIENTS: usize = 32;

const POLICY: &str = r#"
default: allow
contracts:
  actor: {id: string}
  actions:
    refund:
      input:
        amount: {type: number, min: 0}
    payout:
      input:
        amount: {type: number, min: 0}
    big_refund:
      input:
        amount: {type: int, min: 0}
    read_secret:
      input: {path: string}
    send:
      input: {to: string}
rules:
  - id: refund_rate
    action: refund
    effect: block
    limit: {count: 7, window: 1h}
    reason: at most 7 refunds an hour
  - id: payout_budget
    action: payout
    effect: block
    limit: {sum: input.amount, max: 1.5, per: [actor.id], window: 1h}
  - id: big_rate
    action: big_refund
    effect: require_approval
    approval: {role: finance}
    limit: {count: 1, window: 1h}
  - id: secret_read
    action: read_secret
    effect: allow
    labels: [secret]
  - id: no_send_after_secret
    action: send
    when: '"secret" in session.labels'
    effect: block
"#;

fn request(action: &str, input: Value) -> Value {
    json!({"action": action, "input": input, "actor": {"id": "bot-1"}})
}

/// `CLIENTS` concurrent decide calls of `body` over the loopback port;
/// the effects.
async fn concurrently(server: &Served, body: Value) -> Vec<String> {
    let client = reqwest::Client::new();
    let calls: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let (client, url, body) = (client.clone(), server.url("/v1/decide"), body.clone());
            tokio::spawn(async move {
                let resp = client.post(url).bearer_auth(AGENT).json(&body).send().await.unwrap();
                assert_eq!(resp.status().as_u16(), 200);
                let body: Value = resp.json().await.unwrap();
                body["effect"].as_str().unwrap().to_string()
            })
        })
        .collect();
    let mut effects = Vec::new();
    for c in calls {
        effects.push(c.await.unwrap());
    }
    effects
}

async fn allowed_records(h: &Harness, action: &str) -> usize {
    let (status, body) = h
        .call(
            Method::GET,
            &format!("/v1/audit?action={action}&effect=allow&limit=1000"),
            Some(ADMIN),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["records"].as_array().unwrap().len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn thirty_two_clients_get_exactly_the_count_limit() {
    let h = Harness::with_policy(POLICY, |_| {}).await;
    let server = h.serve().await;
    let effects = concurrently(&server, request("refund", json!({"amount": 1}))).await;
    assert_eq!(effects.iter().filter(|e| *e == "allow").count(), 7, "{effects:?}");
    assert_eq!(effects.iter().filter(|e| *e == "block").count(), CLIENTS - 7);
    assert_eq!(allowed_records(&h, "refund").await, 7);
    let (_, limits) = h.call(Method::GET, "/v1/limits", Some(ALICE), None).await;
    assert_eq!(limits["limits"][0]["used"], "7", "{limits}");
    assert_eq!(limits["limits"][0]["max"], "7");
    assert_eq!(limits["limits"][0]["describe"], "all");
    assert_eq!(limits["limits"][0]["window_seconds"], 3600);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn thirty_two_clients_get_exactly_the_sum_budget() {
    let h = Harness::with_policy(POLICY, |_| {}).await;
    let server = h.serve().await;
    // 0.1 at a time against 1.5: exactly 15, however the floats add up.
    let effects = concurrently(&server, request("payout", json!({"amount": 0.1}))).await;
    assert_eq!(effects.iter().filter(|e| *e == "allow").count(), 15, "{effects:?}");
    assert_eq!(allowed_records(&h, "payout").await, 15);
    let (_, limits) = h.call(Method::GET, "/v1/limits", Some(ALICE), None).await;
    assert_eq!(limits["limits"][0]["used"], "1.5", "{limits}");
    server.shutdown().await;
}

#[tokio::test]
async fn a_refusal_by_a_limit_says_when_to_retry_in_the_answer_only() {
    let h = Harness::with_policy(POLICY, |c| c.trust_request_time = true).await;
    let t0 = jiff::Timestamp::now() - jiff::SignedDuration::from_hours(2);
    let at = |secs: i64| {
        let mut r = request("refund", json!({"amount": 1}));
        r["time"] = json!((t0 + jiff::SignedDuration::from_secs(secs)).to_string());
        r
    };
    for i in 0..7 {
        assert_eq!(h.decide(at(i)).await["effect"], "allow");
    }
    // The first use (at t0) leaves the window at t0 + 1h.
    let (status, body) = h.call(Method::POST, "/v1/decide", Some(AGENT), Some(at(3600))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["effect"], "block");
    assert_eq!(body["retry_after_seconds"], 1, "{body}");
    assert!(
        body["reasons"][0]
            .as_str()
            .unwrap()
            .starts_with("refund_rate: 7 of 7 used for all in the last 1h"),
        "{body}"
    );
    let outside = h.decide(at(3601)).await;
    assert_eq!(outside["effect"], "allow", "{outside}");
    assert!(outside.get("retry_after_seconds").is_none());
}

#[tokio::test]
async fn limits_sessions_and_labels_survive_a_restart() {
    let h = Harness::with_policy(POLICY, |_| {}).await;
    for _ in 0..7 {
        assert_eq!(
            h.decide(request("refund", json!({"amount": 1}))).await["effect"],
            "allow"
        );
    }
    let mut read = request("read_secret", json!({"path": "/k"}));
    read["session"] = json!("s-1");
    let read = h.decide(read).await;
    assert_eq!(read["effect"], "allow");
    assert_eq!(read["labels"], json!(["secret"]));

    let h = h.restart(|_| {}).await;
    assert_eq!(
        h.decide(request("refund", json!({"amount": 1}))).await["effect"],
        "block"
    );
    let mut send = request("send", json!({"to": "x"}));
    send["session"] = json!("s-1");
    assert_eq!(h.decide(send.clone()).await["effect"], "block");
    let (status, session) = h.call(Method::GET, "/v1/sessions/s-1", Some(ALICE), None).await;
    assert_eq!(status, StatusCode::OK, "{session}");
    assert_eq!(session["labels"][0]["label"], "secret");
    assert_eq!(session["labels"][0]["decision_id"], read["decision_id"]);
    // An unknown session starts empty: sending is allowed there.
    send["session"] = json!("s-new");
    assert_eq!(h.decide(send.clone()).await["effect"], "allow");
    // Without a session, a rule that reads it blocks.
    send.as_object_mut().unwrap().remove("session");
    let none = h.decide(send).await;
    assert_eq!(none["effect"], "block");
    assert!(none["reasons"].to_string().contains("session required"), "{none}");
}

#[tokio::test]
async fn the_state_routes_need_their_roles() {
    let h = Harness::with_policy(POLICY, |_| {}).await;
    for (method, path, token, expected) in [
        (Method::GET, "/v1/limits", AGENT, StatusCode::FORBIDDEN),
        (Method::GET, "/v1/limits", ALICE, StatusCode::OK),
        (Method::GET, "/v1/limits", ADMIN, StatusCode::OK),
        (Method::GET, "/v1/sessions/s-x", AGENT, StatusCode::FORBIDDEN),
        (Method::GET, "/v1/sessions/s-x", ALICE, StatusCode::OK),
        (Method::POST, "/v1/limits/reset", AGENT, StatusCode::FORBIDDEN),
        (Method::POST, "/v1/limits/reset", ALICE, StatusCode::FORBIDDEN),
        (Method::POST, "/v1/limits/reset", ADMIN, StatusCode::OK),
    ] {
        let body = (method == Method::POST).then(|| json!({}));
        let (status, answer) = h.call(method.clone(), path, Some(token), body).await;
        assert_eq!(status, expected, "{method} {path}: {answer}");
    }
    for bad in [
        json!({"rule": "no_such_rule"}),
        json!({"bucket": "not json"}),
        json!({"rule": "payout_budget", "bucket": "[\"refund_rate\",[]]"}),
        json!({"other": 1}),
    ] {
        let (status, answer) = h
            .call(Method::POST, "/v1/limits/reset", Some(ADMIN), Some(bad.clone()))
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {answer}");
    }
}

#[tokio::test]
async fn reset_frees_the_limit() {
    let h = Harness::with_policy(POLICY, |_| {}).await;
    for _ in 0..7 {
        h.decide(request("refund", json!({"amount": 1}))).await;
    }
    assert_eq!(
        h.decide(request("refund", json!({"amount": 1}))).await["effect"],
        "block"
    );
    let (status, body) = h
        .call(
            Method::POST,
            "/v1/limits/reset",
            Some(ADMIN),
            Some(json!({"rule": "refund_rate"})),
        )
        .await;
    assert_eq!((status, body["reset"].clone()), (StatusCode::OK, json!(7)));
    assert_eq!(
        h.decide(request("refund", json!({"amount": 1}))).await["effect"],
        "allow"
    );
}

#[tokio::test]
async fn a_granted_approval_over_a_limit_consumes_on_the_re_send() {
    let h = Harness::with_policy(POLICY, |_| {}).await;
    let big = request("big_refund", json!({"amount": 900}));
    assert_eq!(h.decide(big.clone()).await["effect"], "allow");
    let asked = h.decide(big.clone()).await;
    assert_eq!(asked["effect"], "require_approval", "{asked}");
    let id = asked["approval"]["id"].as_str().unwrap().to_string();
    let (status, _) = h
        .call(
            Method::POST,
            &format!("/v1/approvals/{id}/grant"),
            Some(ALICE),
            Some(json!({})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let granted = h.decide(with_approval(big.clone(), &id)).await;
    assert_eq!(granted["effect"], "allow", "{granted}");
    let (_, limits) = h.call(Method::GET, "/v1/limits", Some(ALICE), None).await;
    let big_rate = limits["limits"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["rule"] == "big_rate")
        .unwrap()
        .clone();
    assert_eq!(big_rate["used"], "2", "{limits}");
}

#[tokio::test]
async fn a_second_server_on_the_same_store_is_refused() {
    let h = Harness::with_policy(POLICY, |_| {}).await;
    let mut config = rein_server::ServerConfig::new(vec![h.policy_path()], h.db_path());
    config.tokens_path = Some(h.dir.path().join("tokens.yaml"));
    let err = rein_server::AppState::from_config(&config)
        .await
        .err()
        .expect("refused");
    let text = format!("{err:#}");
    assert!(text.contains("lock"), "{text}");
}

#[tokio::test]
async fn a_reload_to_a_stateful_policy_loads_the_state_first() {
    let stateless = "default: allow\ncontracts:\n  actor: {id: string}\n  actions:\n    refund:\n      input:\n        amount: {type: number, min: 0}\n";
    let h = Harness::with_policy(stateless, |_| {}).await;
    assert_eq!(
        h.decide(request("refund", json!({"amount": 1}))).await["effect"],
        "allow"
    );
    std::fs::write(h.policy_path(), POLICY).unwrap();
    let (status, body) = h.call(Method::POST, "/v1/policy/reload", Some(ADMIN), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // Loaded, not blocked ("state not loaded"): the limit counts from here.
    for _ in 0..7 {
        let a = h.decide(request("refund", json!({"amount": 1}))).await;
        assert_eq!(a["effect"], "allow", "{a}");
    }
    assert_eq!(
        h.decide(request("refund", json!({"amount": 1}))).await["effect"],
        "block"
    );
}
