//! POST /v1/policy/reload: a broken policy is refused with diagnostics and
//! the old one keeps deciding; a good one is swapped in.

use crate::common::*;
use axum::http::{Method, StatusCode};
use serde_json::Value;

#[tokio::test]
async fn broken_policy_is_refused_and_the_old_one_serves() {
    let h = Harness::new().await;
    let old_version = h.state.runtime().policy().version().to_string();
    assert_eq!(h.decide(refund(40, "bot-1")).await["effect"], "allow");

    let original = std::fs::read_to_string(h.policy_path()).unwrap();
    // A type error: comparing a number with a string.
    let broken = original.replace("when: input.amount <= 100", "when: input.amount <= \"100\"");
    assert_ne!(broken, original);
    std::fs::write(h.policy_path(), &broken).unwrap();

    let (status, body) = h.call(Method::POST, "/v1/policy/reload", Some(ADMIN), None).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_error(&body, "policy_invalid");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("old policy keeps serving"));
    let diagnostics = body["diagnostics"].as_array().unwrap();
    assert!(!diagnostics.is_empty());
    let d = &diagnostics[0];
    assert_eq!(d["severity"], "error");
    assert!(d["file"].as_str().unwrap().ends_with("policy.yaml"), "{d}");
    assert!(d["line"].as_u64().unwrap() > 1, "{d}");
    assert!(d["message"].as_str().is_some_and(|m| !m.is_empty()));

    // Not even YAML.
    std::fs::write(h.policy_path(), "rules: [\n").unwrap();
    let (status, body) = h.call(Method::POST, "/v1/policy/reload", Some(ADMIN), None).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");

    // The old policy still decides, and says so.
    let d = h.decide(refund(40, "bot-1")).await;
    assert_eq!(d["effect"], "allow");
    assert_eq!(d["policy_version"], old_version.as_str());
    let (_, health) = h.call(Method::GET, "/healthz", None, None).await;
    assert_eq!(health["policy_version"], old_version.as_str());

    // A valid change is swapped in.
    let stricter = original.replace("when: input.amount <= 100\n", "when: input.amount <= 10\n");
    assert_ne!(stricter, original);
    std::fs::write(h.policy_path(), &stricter).unwrap();
    let (status, body) = h.call(Method::POST, "/v1/policy/reload", Some(ADMIN), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let new_version = body["policy_version"].as_str().unwrap().to_string();
    assert_ne!(new_version, old_version);
    assert_eq!(body["previous_version"], old_version.as_str());
    let d = h.decide(refund(40, "bot-1")).await;
    assert_eq!(d["effect"], "block", "{d}");
    assert_eq!(d["policy_version"], new_version.as_str());

    let (_, metrics) = h.call_text(Method::GET, "/metrics", None, None).await;
    for line in [
        "rein_policy_reloads_total{result=\"failure\"} 2",
        "rein_policy_reloads_total{result=\"success\"} 1",
    ] {
        assert!(metrics.lines().any(|l| l == line), "missing `{line}`");
    }
}

#[tokio::test]
async fn a_vanished_policy_file_is_refused_too() {
    let h = Harness::new().await;
    let version = h.state.runtime().policy().version().to_string();
    std::fs::remove_file(h.policy_path()).unwrap();
    let (status, body) = h.call(Method::POST, "/v1/policy/reload", Some(ADMIN), None).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(!body["diagnostics"].as_array().unwrap().is_empty());
    let d: Value = h.decide(refund(40, "bot-1")).await;
    assert_eq!(d["policy_version"], version.as_str());
}
