//! Policy versions: every activation (start, reload, rollback) recorded in
//! the audit chain with its sources kept, the history, rollbacks and their
//! refusals, the version named on every answer, and decisions racing
//! swaps finishing on the version they started with.

use crate::common::*;
use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use rein_engine::{Policy, PolicySource};
use rein_store::{Activation, ActivationCause};
use serde_json::{json, Value};
use tower::ServiceExt;

/// The example policy with refunds up to 10 (not 100) routine, labelled
/// `label`.
fn stricter(original: &str, label: &str) -> String {
    let text = original
        .replace("when: input.amount <= 100\n", "when: input.amount <= 10\n")
        .replace("version: \"2026-11-24.1\"", &format!("version: \"{label}\""));
    assert_ne!(text, original);
    text
}

async fn reload(h: &Harness) -> Value {
    let (status, body) = h.call(Method::POST, "/v1/policy/reload", Some(ADMIN), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

async fn rollback(h: &Harness, version: &str) -> (StatusCode, Value) {
    h.call(
        Method::POST,
        "/v1/policy/rollback",
        Some(ADMIN),
        Some(json!({"version": version})),
    )
    .await
}

async fn activations(h: &Harness) -> Vec<(u64, Activation)> {
    let records = h.state.runtime().store().activations().await.unwrap();
    records
        .iter()
        .map(|r| (r.seq, Activation::of_entry(&r.entry).unwrap()))
        .collect()
}

/// The answer's `rein-policy-version` header and body.
async fn with_header(
    h: &Harness,
    method: Method,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (String, Value) {
    let mut req = Request::builder().method(method).uri(path);
    if let Some(t) = token {
        req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
    }
    let req = match body {
        Some(b) => req
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(serde_json::to_vec(&b).unwrap())),
        None => req.body(Body::empty()),
    }
    .unwrap();
    let response = app(h.state.clone()).oneshot(req).await.unwrap();
    let version = response.headers()["rein-policy-version"].to_str().unwrap().to_string();
    let bytes = http_body_util::BodyExt::collect(response.into_body())
        .await
        .unwrap()
        .to_bytes();
    (version, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

use rein_server::app;

#[tokio::test]
async fn start_reload_and_rollback_are_activations_in_the_chain() {
    let h = Harness::new().await;
    let v1 = h.state.runtime().policy().version().to_string();
    let original = std::fs::read_to_string(h.policy_path()).unwrap();

    // The start is recorded first, its sources kept.
    let recorded = activations(&h).await;
    let [(seq, start)] = recorded.as_slice() else {
        panic!("{recorded:?}")
    };
    assert_eq!(*seq, 1, "the start's activation is the first record");
    assert_eq!(
        (start.cause, start.by.as_str(), start.previous.as_deref()),
        (ActivationCause::Start, "start", None)
    );
    assert_eq!(start.version, v1);
    assert_eq!(start.label.as_deref(), Some("2026-11-24.1"));
    assert!(start.files[0].ends_with("policy.yaml"), "{:?}", start.files);
    let (status, history) = h.call(Method::GET, "/v1/policy/versions", Some(ADMIN), None).await;
    assert_eq!(status, StatusCode::OK, "{history}");
    assert_eq!(history["current"]["policy_version"], v1.as_str());
    let versions = history["versions"].as_array().unwrap();
    assert_eq!(versions.len(), 1);
    assert_eq!(versions[0]["current"], true);
    assert_eq!(versions[0]["sources"], "kept");
    assert_eq!(versions[0]["last_by"], "start");
    assert_eq!(h.decide(refund(40, "bot-1")).await["effect"], "allow");

    // A reload by the admin token `ops`.
    std::fs::write(h.policy_path(), stricter(&original, "2026-11-24.2")).unwrap();
    let reloaded = reload(&h).await;
    let v2 = reloaded["policy_version"].as_str().unwrap().to_string();
    assert_ne!(v2, v1);
    assert_eq!(reloaded["previous_version"], v1.as_str());
    assert_eq!(reloaded["cause"], "reload");
    assert_eq!(reloaded["sources_kept"], true);
    let d = h.decide(refund(40, "bot-1")).await;
    assert_eq!(
        (d["effect"].as_str(), d["policy_version"].as_str()),
        (Some("block"), Some(v2.as_str())),
        "{d}"
    );

    // A refused reload keeps v2 and records nothing.
    let records = h.state.runtime().store().audit_len().await.unwrap();
    std::fs::write(h.policy_path(), "rules: [\n").unwrap();
    let (status, _) = h.call(Method::POST, "/v1/policy/reload", Some(ADMIN), None).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(h.state.runtime().store().audit_len().await.unwrap(), records);
    assert_eq!(h.state.runtime().policy().version(), v2);

    // A rollback by label serves v1 again until the next reload.
    let (status, rolled) = rollback(&h, "2026-11-24.1").await;
    assert_eq!(status, StatusCode::OK, "{rolled}");
    assert_eq!(rolled["policy_version"], v1.as_str());
    assert_eq!(rolled["previous_version"], v2.as_str());
    assert_eq!(rolled["cause"], "rollback");
    assert!(
        rolled["note"].as_str().unwrap().contains("until the next reload"),
        "{rolled}"
    );
    let (header, d) = with_header(&h, Method::POST, "/v1/decide", Some(AGENT), Some(refund(40, "bot-1"))).await;
    assert_eq!(
        (d["effect"].as_str(), d["policy_version"].as_str()),
        (Some("allow"), Some(v1.as_str())),
        "{d}"
    );
    assert_eq!(header, v1);
    let (header, health) = with_header(&h, Method::GET, "/healthz", None, None).await;
    assert_eq!(
        (header.as_str(), health["policy_version"].as_str()),
        (v1.as_str(), Some(v1.as_str()))
    );
    let (header, explained) =
        with_header(&h, Method::POST, "/v1/explain", Some(AGENT), Some(refund(40, "bot-1"))).await;
    assert_eq!(
        (header.as_str(), explained["decision"]["policy_version"].as_str()),
        (v1.as_str(), Some(v1.as_str()))
    );
    // A hook's answer is in the agent's format: the header names the version.
    let event = json!({"hook_event_name": "SessionStart", "cwd": "/p", "session_id": "s", "source": "startup"});
    let (header, _) = with_header(&h, Method::POST, "/v1/hooks/claude-code", Some(AGENT), Some(event)).await;
    assert_eq!(header, v1);
    // And by a unique prefix of its hash.
    let (status, rolled) = rollback(&h, &v2[..8]).await;
    assert_eq!(status, StatusCode::OK, "{rolled}");
    assert_eq!(rolled["policy_version"], v2.as_str());

    // An outcome named by an activation's id is no decision's.
    let activation_id = rolled["activation_id"].as_str().unwrap();
    let (_, outcome) = h
        .call(
            Method::POST,
            "/v1/outcome",
            Some(AGENT),
            Some(json!({"decision_id": activation_id, "output": {"refund_id": "re_1"}})),
        )
        .await;
    assert_eq!(outcome["effect"], "block", "{outcome}");

    let recorded = activations(&h).await;
    let summary: Vec<(ActivationCause, &str, &str, Option<&str>)> = recorded
        .iter()
        .map(|(_, a)| (a.cause, a.by.as_str(), a.version.as_str(), a.previous.as_deref()))
        .collect();
    assert_eq!(
        summary,
        [
            (ActivationCause::Start, "start", v1.as_str(), None),
            (ActivationCause::Reload, "ops", v2.as_str(), Some(v1.as_str())),
            (ActivationCause::Rollback, "ops", v1.as_str(), Some(v2.as_str())),
            (ActivationCause::Rollback, "ops", v2.as_str(), Some(v1.as_str())),
        ]
    );
    let (status, verified) = h.call(Method::GET, "/v1/audit/verify", Some(ADMIN), None).await;
    assert_eq!(status, StatusCode::OK, "{verified}");
    assert_eq!(verified["intact"], true);
    let (_, history) = h.call(Method::GET, "/v1/policy/versions", Some(ADMIN), None).await;
    let versions = history["versions"].as_array().unwrap();
    assert_eq!(versions.len(), 2);
    assert_eq!(
        (versions[0]["version"].as_str(), versions[0]["current"].as_bool()),
        (Some(v2.as_str()), Some(true))
    );
    assert_eq!(versions[0]["activations"], 2);
    assert_eq!(versions[1]["last_cause"], "rollback");
    // The kept sources, as `rein policy show` reads them.
    let (status, shown) = h
        .call(
            Method::GET,
            &format!("/v1/policy/versions/{}", &v1[..6]),
            Some(ADMIN),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{shown}");
    assert_eq!(shown["sources"][0]["text"], original.as_str());

    // A restart serves the files again, and names what served before it.
    std::fs::write(h.policy_path(), &original).unwrap();
    let h = h.restart(|_| {}).await;
    assert_eq!(h.state.runtime().policy().version(), v1);
    let (_, last) = activations(&h).await.pop().unwrap();
    assert_eq!(
        (last.cause, last.previous.as_deref()),
        (ActivationCause::Start, Some(v2.as_str()))
    );
}

#[tokio::test]
async fn rollbacks_that_cannot_be_trusted_are_refused() {
    let h = Harness::new().await;
    let v1 = h.state.runtime().policy().version().to_string();
    let original = std::fs::read_to_string(h.policy_path()).unwrap();
    // Two more versions whose hashes share their first four hex digits,
    // found by hashing variants of the policy (as the server will).
    let variant = |i: u32| stricter(&original, "dup") + &format!("# variant {i}\n");
    let hash = |i: u32| {
        Policy::version_of(&[PolicySource {
            name: "policy.yaml".into(),
            text: variant(i),
            derived: false,
        }])
    };
    let mut seen = std::collections::HashMap::new();
    let (a, b) = (0..100_000)
        .find_map(|i| {
            let h = hash(i);
            match seen.insert(h[..4].to_string(), i) {
                Some(j) if hash(j) != h => Some((j, i)),
                _ => None,
            }
        })
        .unwrap();
    for i in [a, b] {
        std::fs::write(h.policy_path(), variant(i)).unwrap();
        reload(&h).await;
    }
    let va = hash(a);
    let vb = hash(b);
    let serving = h.state.runtime().policy().version().to_string();
    assert_eq!(serving, vb);
    let records = h.state.runtime().store().audit_len().await.unwrap();

    let refused = |status: StatusCode, body: &Value, code: &str| {
        assert_eq!(body["error"]["code"], code, "{body}");
        assert!(
            body["error"]["message"].as_str().unwrap().contains("keeps serving"),
            "{body}"
        );
        status
    };
    // A prefix both share, and a label both carry: ambiguous.
    for given in [&va[..4], "dup"] {
        let (status, body) = rollback(&h, given).await;
        assert_eq!(refused(status, &body, "ambiguous_version"), StatusCode::CONFLICT);
        let candidates = body["candidates"].as_array().unwrap();
        assert_eq!(candidates.len(), 2, "{body}");
    }
    // Unknown, too short to be a prefix, or empty.
    for given in ["ffff0000", &v1[..3], ""] {
        let (status, body) = rollback(&h, given).await;
        assert_eq!(
            refused(status, &body, "unknown_version"),
            StatusCode::NOT_FOUND,
            "{given}"
        );
    }
    // Not `{"version": …}`.
    let (status, _) = h
        .call(
            Method::POST,
            "/v1/policy/rollback",
            Some(ADMIN),
            Some(json!({"hash": v1})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    // Only admins.
    let (status, _) = h
        .call(
            Method::POST,
            "/v1/policy/rollback",
            Some(ALICE),
            Some(json!({"version": v1})),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // v1's kept sources changed behind the server's back (to allow
    // refunds up to 100000): refused, on show and on rollback.
    let conn = rusqlite::Connection::open(h.db_path()).unwrap();
    let changed = conn
        .execute(
            "UPDATE policy_versions SET sources = replace(sources, 'input.amount <= 100\\n', 'input.amount <= 100000\\n') \
             WHERE version = ?1",
            [&v1],
        )
        .unwrap();
    assert_eq!(changed, 1);
    drop(conn);
    let (status, body) = rollback(&h, &v1).await;
    assert_eq!(refused(status, &body, "sources_changed"), StatusCode::CONFLICT);
    let (status, body) = h
        .call(Method::GET, &format!("/v1/policy/versions/{v1}"), Some(ADMIN), None)
        .await;
    assert_eq!(refused(status, &body, "sources_changed"), StatusCode::CONFLICT);
    let (_, history) = h.call(Method::GET, "/v1/policy/versions", Some(ADMIN), None).await;
    let listed = history["versions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["version"] == v1.as_str())
        .cloned();
    assert_eq!(listed.unwrap()["sources"], "changed");

    // Nothing was swapped or recorded by any of them.
    assert_eq!(h.state.runtime().policy().version(), serving);
    assert_eq!(h.state.runtime().store().audit_len().await.unwrap(), records);
    let d = h.decide(refund(40, "bot-1")).await;
    assert_eq!(d["policy_version"], serving.as_str());
}

/// Decisions race rollbacks between two versions that decide a refund of
/// 40 differently: every answer, and every record, reports the effect and
/// rules of the version it names (a decision holds the policy it started
/// with, whatever is swapped in meanwhile), and that version was activated
/// before the record in the chain.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decisions_racing_swaps_finish_on_their_version() {
    let h = Harness::new().await;
    let v1 = h.state.runtime().policy().version().to_string();
    let original = std::fs::read_to_string(h.policy_path()).unwrap();
    std::fs::write(h.policy_path(), stricter(&original, "2026-11-24.2")).unwrap();
    let v2 = reload(&h).await["policy_version"].as_str().unwrap().to_string();

    // Eight deciders decide for as long as twenty swaps back and forth
    // take (and at least ten times each), so that they overlap whatever
    // the machine's load.
    let swapping = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let state = h.state.clone();
    let (v1s, v2s, still) = (v1.clone(), v2.clone(), std::sync::Arc::clone(&swapping));
    let swapper = tokio::spawn(async move {
        for swap in 0..20 {
            let to = if swap % 2 == 0 { &v1s } else { &v2s };
            state.rollback_policy(to, "ops").await.unwrap();
            tokio::task::yield_now().await;
        }
        still.store(false, std::sync::atomic::Ordering::Release);
    });
    let mut deciders = Vec::new();
    for _ in 0..8 {
        let runtime = std::sync::Arc::clone(h.state.runtime());
        let swapping = std::sync::Arc::clone(&swapping);
        deciders.push(tokio::spawn(async move {
            let mut answers = Vec::new();
            while answers.len() < 10 || swapping.load(std::sync::atomic::Ordering::Acquire) {
                let request = rein_engine::Request::from_json(refund(40, "bot-1")).unwrap();
                answers.push(runtime.decide(request, None).await);
            }
            answers
        }));
    }
    swapper.await.unwrap();
    let mut finished = Vec::new();
    for d in deciders {
        finished.push(d.await.unwrap());
    }
    let answered: usize = finished.iter().map(Vec::len).sum();
    let mut seen = std::collections::BTreeSet::new();
    for answers in finished {
        for answer in answers {
            let json = serde_json::to_value(&answer).unwrap();
            let expected = if answer.policy_version == v1 { "allow" } else { "block" };
            assert!(answer.policy_version == v1 || answer.policy_version == v2, "{json}");
            assert_eq!(json["effect"], expected, "{json}");
            if expected == "allow" {
                assert_eq!(json["rules"], json!(["small_refund"]), "{json}");
            }
            seen.insert(answer.policy_version.clone());
        }
    }
    // Every record, page by page: a fast run answers more than one page.
    let mut records = Vec::new();
    loop {
        let page = h
            .state
            .runtime()
            .store()
            .query_audit(&rein_store::AuditQuery {
                after_seq: records.last().map(|r: &rein_store::AuditRecord| r.seq),
                limit: Some(10_000),
                ..Default::default()
            })
            .await
            .unwrap();
        if page.is_empty() {
            break;
        }
        records.extend(page);
    }
    let mut activated = std::collections::HashSet::new();
    let mut decisions = 0;
    for r in &records {
        if let Some(a) = Activation::of_entry(&r.entry) {
            activated.insert(a.version);
            continue;
        }
        decisions += 1;
        assert!(
            activated.contains(&r.entry.policy_version),
            "record {} precedes its version's activation",
            r.seq
        );
        let expected = if r.entry.policy_version == v1 { "allow" } else { "block" };
        assert_eq!(r.entry.effect, expected, "record {}", r.seq);
    }
    assert_eq!(decisions, answered);
    assert_eq!(
        h.state.runtime().store().verify_audit().await.unwrap(),
        rein_store::Verification::Intact {
            records: records.len() as u64
        }
    );
    // Both versions decided something (the race was a race).
    assert_eq!(seen.len(), 2, "{seen:?}");
}

/// Over a loopback port: the history, a rollback and the version header.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn versions_over_http() {
    let h = Harness::new().await;
    let v1 = h.state.runtime().policy().version().to_string();
    let original = std::fs::read_to_string(h.policy_path()).unwrap();
    std::fs::write(h.policy_path(), stricter(&original, "2026-11-24.2")).unwrap();
    let server = h.serve().await;
    let client = reqwest::Client::new();
    let reloaded: Value = client
        .post(server.url("/v1/policy/reload"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let v2 = reloaded["policy_version"].as_str().unwrap().to_string();
    let history = client
        .get(server.url("/v1/policy/versions"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(history.headers()["rein-policy-version"], v2.as_str());
    let history: Value = history.json().await.unwrap();
    assert_eq!(history["versions"].as_array().unwrap().len(), 2);
    let rolled = client
        .post(server.url("/v1/policy/rollback"))
        .bearer_auth(ADMIN)
        .json(&json!({"version": v1}))
        .send()
        .await
        .unwrap();
    assert_eq!(rolled.status(), reqwest::StatusCode::OK);
    assert_eq!(rolled.headers()["rein-policy-version"], v1.as_str());
    let decided = client
        .post(server.url("/v1/decide"))
        .bearer_auth(AGENT)
        .json(&refund(40, "bot-1"))
        .send()
        .await
        .unwrap();
    assert_eq!(decided.headers()["rein-policy-version"], v1.as_str());
    let decided: Value = decided.json().await.unwrap();
    assert_eq!(
        (decided["effect"].as_str(), decided["policy_version"].as_str()),
        (Some("allow"), Some(v1.as_str()))
    );
    // Refused answers name the version too.
    let refused = client
        .post(server.url("/v1/decide"))
        .bearer_auth(AGENT)
        .body("{")
        .send()
        .await
        .unwrap();
    assert_eq!(refused.headers()["rein-policy-version"], v1.as_str());
    server.shutdown().await;
}
