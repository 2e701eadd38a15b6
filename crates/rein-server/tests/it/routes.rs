//! The role matrix of every route, and the OpenAPI document against the
//! router.

use crate::common::*;
use axum::http::{Method, StatusCode};
use rein_server::{routes, Role, RouteInfo};
use serde_json::{json, Value};
use std::collections::BTreeSet;

/// A path and body that the route accepts (200) from a permitted caller.
/// Approvals are fresh for each call, since grant and deny use them up.
/// The outcome reports on a decision `token` asked for (only that token
/// may report it).
async fn valid_call(h: &Harness, route: &RouteInfo, token: &str) -> (String, Option<Value>) {
    let pending = || async {
        h.decide(refund(500, "bot-1")).await["approval"]["id"]
            .as_str()
            .unwrap()
            .to_string()
    };
    match route.path {
        "/v1/decide" | "/v1/explain" => (route.path.into(), Some(refund(40, "bot-1"))),
        "/v1/outcome" => {
            let (_, decided) = h
                .call(Method::POST, "/v1/decide", Some(token), Some(refund(40, "bot-1")))
                .await;
            let id = decided["decision_id"].clone();
            (
                route.path.into(),
                Some(json!({"decision_id": id, "output": {"refund_id": "re_1"}})),
            )
        }
        "/v1/approvals/{id}" => (format!("/v1/approvals/{}", pending().await), None),
        "/v1/approvals/{id}/grant" => (format!("/v1/approvals/{}/grant", pending().await), Some(json!({}))),
        "/v1/approvals/{id}/deny" => (
            format!("/v1/approvals/{}/deny", pending().await),
            Some(json!({"comment": "no"})),
        ),
        "/v1/hooks/{agent}" => (
            "/v1/hooks/claude-code".into(),
            Some(json!({"hook_event_name": "SessionStart", "cwd": "/p", "session_id": "s", "source": "startup"})),
        ),
        "/v1/limits/reset" => (route.path.into(), Some(json!({}))),
        "/v1/tokens/delegate" => (
            route.path.into(),
            Some(json!({"actor": "subagent:r", "actions": ["refund"], "ttl": "5m"})),
        ),
        "/v1/sessions/{id}" => ("/v1/sessions/s-1".into(), None),
        "/v1/policy/versions/{version}" => (
            format!("/v1/policy/versions/{}", h.state.runtime().policy().version()),
            None,
        ),
        "/v1/policy/rollback" => (
            route.path.into(),
            Some(json!({"version": h.state.runtime().policy().version()})),
        ),
        "/v1/what-can" => (
            route.path.into(),
            Some(json!({
                "actor": {"id": "bot-1", "role": "agent"},
                "snapshot": {"fraud_flag": false, "refunds_today": 0, "account_age_days": 400}
            })),
        ),
        "/v1/policy/shadow" if route.method == Method::POST => (
            route.path.into(),
            Some(json!({"paths": [h.policy_path().display().to_string()]})),
        ),
        other => (other.into(), None),
    }
}

#[tokio::test]
async fn role_matrix_of_every_route() {
    let h = Harness::new().await;
    let callers = [(AGENT, Role::Agent), (ALICE, Role::Approver), (ADMIN, Role::Admin)];
    let all = routes();
    assert_eq!(all.len(), 27);
    for route in &all {
        for (token, role) in callers {
            let (path, body) = valid_call(&h, route, token).await;
            let (status, text) = h
                .call_text(
                    route.method.clone(),
                    &path,
                    Some(token),
                    body.map(|b| serde_json::to_vec(&b).unwrap()),
                )
                .await;
            // Agents read the approvals their own requests opened (those
            // `valid_call` opens are theirs).
            let allowed = route.role.is_none_or(|needed| role.permits(needed)) || route.own == Some(role);
            if allowed {
                assert_eq!(status, StatusCode::OK, "{} {path} as {role}: {text}", route.method);
            } else {
                assert_eq!(
                    status,
                    StatusCode::FORBIDDEN,
                    "{} {path} as {role}: {text}",
                    route.method
                );
                let body: Value = serde_json::from_str(&text).unwrap();
                assert_error(&body, "forbidden");
                assert!(body["error"]["message"]
                    .as_str()
                    .unwrap()
                    .contains(&format!("needs `{}`", route.role.unwrap())));
                // Refusals on the agent routes are decisions too: block.
                if route.role == Some(Role::Agent) {
                    assert_eq!(body["effect"], "block");
                }
            }
        }
        let (path, body) = valid_call(&h, route, AGENT).await;
        let bytes = body.map(|b| serde_json::to_vec(&b).unwrap());
        for token in [
            None,
            Some("not-a-known-token-at-all"),
            Some(""),
            Some(&AGENT[..AGENT.len() - 1]),
        ] {
            let (status, text) = h.call_text(route.method.clone(), &path, token, bytes.clone()).await;
            if route.role.is_none() {
                assert_eq!(status, StatusCode::OK, "{} {path}: {text}", route.method);
            } else {
                assert_eq!(
                    status,
                    StatusCode::UNAUTHORIZED,
                    "{} {path} with {token:?}: {text}",
                    route.method
                );
                assert_error(&serde_json::from_str(&text).unwrap(), "unauthorized");
            }
        }
    }
}

#[tokio::test]
async fn auth_scheme_is_case_insensitive_and_other_schemes_are_refused() {
    let h = Harness::new().await;
    for (header, want) in [
        (format!("bearer {ADMIN}"), StatusCode::OK),
        (format!("BEARER  {ADMIN} "), StatusCode::OK),
        (format!("Basic {ADMIN}"), StatusCode::UNAUTHORIZED),
        (ADMIN.to_string(), StatusCode::UNAUTHORIZED),
    ] {
        let req = axum::http::Request::get("/v1/audit/verify")
            .header("authorization", header.clone())
            .body(axum::body::Body::empty())
            .unwrap();
        let resp = tower::ServiceExt::oneshot(rein_server::app(h.state.clone()), req)
            .await
            .unwrap();
        assert_eq!(resp.status(), want, "{header}");
        if want == StatusCode::UNAUTHORIZED {
            assert_eq!(resp.headers()["www-authenticate"], "Bearer");
        }
    }
}

#[tokio::test]
async fn unknown_routes_and_methods_answer_json() {
    let h = Harness::new().await;
    let (status, body) = h.call(Method::GET, "/v1/nope", Some(ADMIN), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_error(&body, "no_such_route");
    let (status, body) = h.call(Method::GET, "/v1/decide", Some(AGENT), None).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_error(&body, "method_not_allowed");
}

#[tokio::test]
async fn openapi_lists_exactly_the_routes_with_their_roles() {
    let h = Harness::new().await;
    let (status, doc) = h.call(Method::GET, "/openapi.json", None, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(doc["openapi"], "3.1.0");
    let mut documented = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let role = op.get("x-rein-role").and_then(Value::as_str).map(str::to_string);
            let own = op.get("x-rein-own-role").and_then(Value::as_str).map(str::to_string);
            documented.insert((method.to_uppercase(), path.clone(), role, own));
            assert!(
                op["responses"].as_object().is_some_and(|r| !r.is_empty()),
                "{method} {path}"
            );
        }
    }
    let served: BTreeSet<_> = routes()
        .into_iter()
        .map(|r| {
            (
                r.method.to_string(),
                r.path.to_string(),
                r.role.map(|x| x.to_string()),
                r.own.map(|x| x.to_string()),
            )
        })
        .collect();
    assert_eq!(documented, served);
    // Every `$ref` points at a schema that exists.
    let text = serde_json::to_string(&doc).unwrap();
    for piece in text.split("\"$ref\":\"#/components/schemas/").skip(1) {
        let name = piece.split('"').next().unwrap();
        assert!(
            doc["components"]["schemas"].get(name).is_some(),
            "missing schema {name}"
        );
    }
}

#[tokio::test]
async fn healthz_and_metrics_need_no_token() {
    let h = Harness::new().await;
    let (status, body) = h.call(Method::GET, "/healthz", None, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["status"], "ok");
    assert_eq!(
        body["policy_version"].as_str().unwrap(),
        h.state.runtime().policy().version()
    );

    h.decide(refund(40, "bot-1")).await;
    h.decide(refund(5000, "bot-1")).await;
    h.decide(refund(500, "bot-1")).await;
    h.decide(json!({"action": "launch_rockets"})).await;
    let _ = h
        .call(Method::GET, "/v1/audit", Some("wrong-token-wrong-token"), None)
        .await;
    let _ = h.call(Method::GET, "/v1/audit", Some(AGENT), None).await;
    let _ = h.call(Method::POST, "/v1/policy/reload", Some(ADMIN), None).await;
    let (status, text) = h.call_text(Method::GET, "/metrics", None, None).await;
    assert_eq!(status, StatusCode::OK);
    for line in [
        "rein_decisions_total{action=\"refund\",effect=\"allow\"} 1",
        "rein_decisions_total{action=\"refund\",effect=\"block\"} 1",
        "rein_decisions_total{action=\"refund\",effect=\"require_approval\"} 1",
        "rein_decisions_total{action=\"<unknown>\",effect=\"block\"} 1",
        "rein_auth_failures_total{reason=\"unknown\"} 1",
        "rein_auth_failures_total{reason=\"forbidden\"} 1",
        "rein_approvals_pending 1",
        "rein_policy_reloads_total{result=\"success\"} 1",
        // Four decisions, and the activation records of the start and
        // of the reload.
        "rein_audit_append_duration_seconds_count 6",
        "rein_decision_duration_seconds_count{phase=\"before\"} 4",
    ] {
        assert!(text.lines().any(|l| l == line), "missing `{line}` in:\n{text}");
    }
}
