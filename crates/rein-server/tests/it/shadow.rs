//! Shadow mode over a loopback port: `--shadow` at start, `POST`, `GET`
//! and `DELETE /v1/policy/shadow`, `GET /v1/policy/shadow/report`; the
//! answers stay the enforced policy's, a reload keeps the candidate.

use crate::common::*;
use axum::http::{Method, StatusCode};
use serde_json::{json, Value};

/// The example policy with large refunds (over 100) blocked for agents.
fn stricter(dir: &std::path::Path) -> std::path::PathBuf {
    let original = std::fs::read_to_string(example_policy()).unwrap();
    let text = original.replace("when: input.amount <= 100\n", "when: input.amount <= 10\n");
    assert_ne!(text, original);
    let path = dir.join("candidate.yaml");
    std::fs::write(&path, text).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_candidate_set_over_http_is_recorded_never_answered_and_reported() {
    let h = Harness::new().await;
    let candidate = stricter(h.dir.path());
    let server = h.serve().await;
    let client = reqwest::Client::new();
    let call = |method: reqwest::Method, path: &str, token: &str, body: Option<Value>| {
        let mut req = client.request(method, server.url(path)).bearer_auth(token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        async move {
            let resp = req.send().await.unwrap();
            let status = resp.status();
            (status, resp.json::<Value>().await.unwrap())
        }
    };
    let decide = |body: Value| call(reqwest::Method::POST, "/v1/decide", AGENT, Some(body));

    // None at first.
    let (status, body) = call(reqwest::Method::GET, "/v1/policy/shadow", ADMIN, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["shadow"], Value::Null);

    // Only admins.
    let set = json!({"paths": [candidate.display().to_string()]});
    for token in [AGENT, ALICE] {
        let (status, _) = call(reqwest::Method::POST, "/v1/policy/shadow", token, Some(set.clone())).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
    }
    let (status, _) = call(reqwest::Method::GET, "/v1/policy/shadow/report", AGENT, None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    let (_, before) = decide(refund(40, "bot-1")).await;
    assert_eq!(before["effect"], "allow");

    let (status, body) = call(reqwest::Method::POST, "/v1/policy/shadow", ADMIN, Some(set.clone())).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let version = body["shadow"]["policy_version"].as_str().unwrap().to_string();
    assert_ne!(body["shadow"]["enforced_version"], body["shadow"]["policy_version"]);
    let (_, shown) = call(reqwest::Method::GET, "/v1/policy/shadow", ADMIN, None).await;
    assert_eq!(shown["shadow"]["policy_version"], version.as_str());

    // The answer is the enforced one; the record keeps the candidate's.
    let (_, a) = decide(refund(40, "bot-1")).await;
    assert_eq!(a["effect"], "allow", "{a}");
    assert_eq!(a["rules"], before["rules"]);
    assert!(a.get("shadow").is_none(), "the answer says nothing of the shadow: {a}");
    let (_, b) = decide(refund(5, "bot-1")).await;
    assert_eq!(b["effect"], "allow");
    let (_, records) = call(reqwest::Method::GET, "/v1/audit", ADMIN, None).await;
    // The decisions only: the start's activation record comes first.
    let records: Vec<&Value> = records["records"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["phase"] != "activate")
        .collect();
    assert!(records[0].get("shadow").is_none(), "no candidate yet");
    assert_eq!(records[1]["shadow"]["candidate"]["policy_version"], version.as_str());
    assert_eq!(records[1]["shadow"]["candidate"]["effect"], "block");
    assert_eq!(records[1]["shadow"]["enforced"], "allow");

    let (status, report) = call(reqwest::Method::GET, "/v1/policy/shadow/report", ADMIN, None).await;
    assert_eq!(status, StatusCode::OK, "{report}");
    assert_eq!(report["candidate_decided"], 2);
    let diffs = report["differences"].as_array().unwrap();
    assert_eq!(diffs.len(), 1, "{report}");
    assert_eq!(diffs[0]["action"], "refund");
    assert_eq!(diffs[0]["enforced"], "allow");
    assert_eq!(diffs[0]["shadow"], "block");
    assert_eq!(diffs[0]["count"], 1);
    assert_eq!(diffs[0]["examples"], json!([a["decision_id"]]));

    // A time range: nothing after the last record.
    let (status, later) = call(
        reqwest::Method::GET,
        "/v1/policy/shadow/report?since=2999-01-01T00:00:00Z",
        ADMIN,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(later["records"], 0);
    let (status, bad) = call(
        reqwest::Method::GET,
        "/v1/policy/shadow/report?since=yesterday",
        ADMIN,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");

    // A reload keeps the candidate.
    let (status, _) = call(reqwest::Method::POST, "/v1/policy/reload", ADMIN, None).await;
    assert_eq!(status, StatusCode::OK);
    let (_, shown) = call(reqwest::Method::GET, "/v1/policy/shadow", ADMIN, None).await;
    assert_eq!(shown["shadow"]["policy_version"], version.as_str());

    // Stopped: the records no longer carry it.
    let (status, body) = call(reqwest::Method::DELETE, "/v1/policy/shadow", ADMIN, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["previous_version"], version.as_str());
    let (_, c) = decide(refund(40, "bot-1")).await;
    let (_, records) = call(
        reqwest::Method::GET,
        &format!("/v1/audit?decision_id={}", c["decision_id"].as_str().unwrap()),
        ADMIN,
        None,
    )
    .await;
    assert!(records["records"][0].get("shadow").is_none());
    server.shutdown().await;
}

#[tokio::test]
async fn a_candidate_that_does_not_load_is_refused_and_the_previous_one_stays() {
    let h = Harness::new().await;
    let good = stricter(h.dir.path());
    let (status, body) = h
        .call(
            Method::POST,
            "/v1/policy/shadow",
            Some(ADMIN),
            Some(json!({"paths": [good.display().to_string()]})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let version = body["shadow"]["policy_version"].clone();

    let broken = h.dir.path().join("broken.yaml");
    let text = std::fs::read_to_string(&good)
        .unwrap()
        .replace("when: input.amount <= 10\n", "when: input.amount <= \"10\"\n");
    std::fs::write(&broken, text).unwrap();
    let (status, body) = h
        .call(
            Method::POST,
            "/v1/policy/shadow",
            Some(ADMIN),
            Some(json!({"paths": [broken.display().to_string()]})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_error(&body, "policy_invalid");
    let d = &body["diagnostics"][0];
    assert!(d["file"].as_str().unwrap().ends_with("broken.yaml"), "{d}");
    assert!(d["line"].as_u64().unwrap() > 1);
    let (_, shown) = h.call(Method::GET, "/v1/policy/shadow", Some(ADMIN), None).await;
    assert_eq!(shown["shadow"]["policy_version"], version);

    // Malformed requests.
    for bad in [
        json!({}),
        json!({"paths": []}),
        json!({"paths": ["a.yaml"], "off": true}),
        json!("x"),
        json!({"paths": ["/etc/passwd"]}),
    ] {
        let (status, body) = h.call(Method::POST, "/v1/policy/shadow", Some(ADMIN), Some(bad)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    }
    let (status, _) = h
        .call(
            Method::POST,
            "/v1/policy/shadow",
            Some(ADMIN),
            Some(json!({"paths": [h.dir.path().join("missing.yaml").display().to_string()]})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
}

#[tokio::test]
async fn serve_with_shadow_starts_with_the_candidate_or_not_at_all() {
    let dir = tempfile::tempdir().unwrap();
    let candidate = stricter(dir.path());
    let h = Harness::with(|c| c.shadow_paths = vec![candidate.clone()]).await;
    let candidate_version = rein_engine::Policy::load(&[&candidate]).unwrap().version().to_string();
    let (_, shown) = h.call(Method::GET, "/v1/policy/shadow", Some(ADMIN), None).await;
    assert_eq!(shown["shadow"]["policy_version"], candidate_version.as_str());
    let a = h.decide(refund(40, "bot-1")).await;
    assert_eq!(a["effect"], "allow");

    let broken = dir.path().join("broken.yaml");
    std::fs::write(&broken, "rules: [\n").unwrap();
    let dir2 = tempfile::tempdir().unwrap();
    let policy = dir2.path().join("policy.yaml");
    std::fs::copy(example_policy(), &policy).unwrap();
    let tokens = dir2.path().join("tokens.yaml");
    std::fs::write(&tokens, tokens_yaml()).unwrap();
    let mut config = rein_server::ServerConfig::new(vec![policy], dir2.path().join("rein.db"));
    config.tokens_path = Some(tokens);
    config.shadow_paths = vec![broken];
    let err = rein_server::AppState::from_config(&config).await.err().unwrap();
    assert!(err.to_string().contains("the shadow candidate does not load"), "{err}");
}
