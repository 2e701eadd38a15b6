//! GET /v1/audit/export (JSON Lines, streamed) and newest-first paging of
//! GET /v1/audit, over HTTP.

use crate::common::*;
use axum::http::StatusCode;
use rein_store::{AuditEntry, AuditQuery};
use serde_json::{json, Value};

/// A record appended straight to the server's store (faster than a
/// decision, for logs of several export pages).
fn entry(i: u64) -> AuditEntry {
    AuditEntry {
        decision_id: format!("bulk-{i}"),
        time: "2026-03-01T10:00:00.000000Z".into(),
        phase: "before".into(),
        action: if i.is_multiple_of(2) { "refund" } else { "order.lookup" }.into(),
        input: json!({"n": i}),
        actor: json!({"id": format!("bulk-{}", i % 3)}),
        snapshot: json!({}),
        output: None,
        error: None,
        session: Some(format!("bulk-session-{}", i % 4)),
        effect: "allow".into(),
        rules: if i.is_multiple_of(5) {
            vec!["bulk-rule".into()]
        } else {
            vec![]
        },
        reasons: vec![],
        policy_version: "bulk".into(),
        latency_us: 1,
        approval: None,
        client: None,
        policy_version_label: None,
        actor_source: None,
        shadow: None,
        activation: None,
        trace: None,
    }
}

fn lines(text: &str) -> Vec<Value> {
    assert!(text.is_empty() || text.ends_with('\n'), "every line ends: {text:?}");
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON line ({e}): {l}")))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_streams_the_filtered_set_as_json_lines() {
    let h = Harness::new().await;
    let server = h.serve().await;
    let client = reqwest::Client::new();
    h.decide(refund(40, "bot-1")).await;
    h.decide(refund(5000, "bot-2")).await;
    h.decide(refund(30, "bot-2")).await;

    let export = |path: String, token: &'static str| {
        let req = client.get(server.url(&path)).bearer_auth(token);
        async move {
            let resp = req.send().await.unwrap();
            let status = resp.status();
            let kind = resp
                .headers()
                .get("content-type")
                .map(|v| v.to_str().unwrap().to_owned());
            (status, kind, resp.text().await.unwrap())
        }
    };
    let (status, kind, text) = export("/v1/audit/export".into(), ADMIN).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(kind.as_deref(), Some("application/x-ndjson"));
    let all = lines(&text);
    // The records exactly as /v1/audit returns them, in sequence order.
    let (_, listed) = h.call(axum::http::Method::GET, "/v1/audit", Some(ADMIN), None).await;
    assert_eq!(Value::Array(all.clone()), listed["records"]);
    assert_eq!(all.len(), 4);

    let (_, _, text) = export("/v1/audit/export?actor=bot-2".into(), ADMIN).await;
    let bot2 = lines(&text);
    assert_eq!(bot2.len(), 2);
    assert!(bot2.iter().all(|r| r["actor"]["id"] == "bot-2"));
    let (_, _, text) = export("/v1/audit/export?rule=large_refund&actor=bot-2".into(), ADMIN).await;
    assert_eq!(lines(&text).len(), 1);
    let (_, _, text) = export("/v1/audit/export?actor=nobody".into(), ADMIN).await;
    assert_eq!(text, "");
    // An HTML form's empty fields filter nothing.
    let (_, _, text) = export("/v1/audit/export?actor=&rule=&since=".into(), ADMIN).await;
    assert_eq!(lines(&text).len(), 4);

    // Admin only; bad filters are refused before anything is sent.
    for token in [AGENT, ALICE] {
        let (status, _, _) = export("/v1/audit/export".into(), token).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
    }
    for bad in ["since=yesterday", "effect=maybe", "limit=5", "actr=x", "after_seq=-1"] {
        let (status, kind, body) = export(format!("/v1/audit/export?{bad}"), ADMIN).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
        assert_eq!(kind.as_deref(), Some("application/json"), "{bad}");
    }
}

/// An export of many pages is every record, once, in order; newest-first
/// paging of /v1/audit walks the same set backwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_pages_through_a_long_log_and_paging_goes_newest_first() {
    let h = Harness::new().await;
    let store = std::sync::Arc::clone(h.state.runtime().store());
    let tasks: Vec<_> = (1..=2_600)
        .map(|i| {
            let store = std::sync::Arc::clone(&store);
            tokio::spawn(async move { store.append(entry(i)).await.unwrap() })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let total = store.audit_len().await.unwrap();
    let server = h.serve().await;
    let client = reqwest::Client::new();
    let text = |path: &str| {
        let req = client.get(server.url(path)).bearer_auth(ADMIN);
        async move { req.send().await.unwrap().text().await.unwrap() }
    };
    let all = lines(&text("/v1/audit/export").await);
    let seqs: Vec<u64> = all.iter().map(|r| r["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, (1..=total).collect::<Vec<_>>());
    // The chain links across the pages.
    for pair in all.windows(2) {
        assert_eq!(pair[1]["prev_hash"], pair[0]["hash"]);
    }
    let want: Vec<u64> = store
        .query_audit(&AuditQuery {
            rule: Some("bulk-rule".into()),
            session: Some("bulk-session-2".into()),
            limit: Some(10_000),
            ..AuditQuery::default()
        })
        .await
        .unwrap()
        .iter()
        .map(|r| r.seq)
        .collect();
    assert!(!want.is_empty());
    let filtered = lines(&text("/v1/audit/export?rule=bulk-rule&session=bulk-session-2").await);
    assert_eq!(
        filtered.iter().map(|r| r["seq"].as_u64().unwrap()).collect::<Vec<_>>(),
        want
    );
    // A window by sequence number.
    let window = lines(&text("/v1/audit/export?after_seq=1000&before_seq=1003").await);
    assert_eq!(
        window.iter().map(|r| r["seq"].as_u64().unwrap()).collect::<Vec<_>>(),
        [1001, 1002]
    );

    // /v1/audit newest first, following next_before_seq.
    let mut path = "/v1/audit?order=desc&limit=700&actor=bulk-1".to_string();
    let mut got = Vec::new();
    loop {
        let page: Value = serde_json::from_str(&text(&path).await).unwrap();
        got.extend(
            page["records"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["seq"].as_u64().unwrap()),
        );
        let Some(next) = page.get("next_before_seq") else { break };
        assert!(page.get("next_after_seq").is_none());
        path = format!("/v1/audit?order=desc&limit=700&actor=bulk-1&before_seq={next}");
    }
    let mut want: Vec<u64> = all
        .iter()
        .filter(|r| r["actor"]["id"] == "bulk-1")
        .map(|r| r["seq"].as_u64().unwrap())
        .collect();
    want.reverse();
    assert_eq!(got, want);
    let bad: Value = serde_json::from_str(&text("/v1/audit?order=sideways").await).unwrap();
    assert_error(&bad, "invalid_query");
}
