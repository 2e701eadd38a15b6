//! GET /v1/audit and /v1/audit/verify over HTTP.

use crate::common::*;
use axum::http::StatusCode;
use serde_json::{json, Value};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_filters_pages_and_verify_over_http() {
    let h = Harness::new().await;
    let server = h.serve().await;
    let client = reqwest::Client::new();
    let get = |path: &str| {
        let req = client.get(server.url(path)).bearer_auth(ADMIN);
        async move {
            let resp = req.send().await.unwrap();
            let status = resp.status();
            (status, resp.json::<Value>().await.unwrap())
        }
    };

    let decide = |body: Value| {
        let req = client.post(server.url("/v1/decide")).bearer_auth(AGENT).json(&body);
        async move { req.send().await.unwrap().json::<Value>().await.unwrap() }
    };
    let a = decide(refund(40, "bot-1")).await;
    decide(refund(5000, "bot-2")).await;
    decide(refund(30, "bot-2")).await;
    let mut other_session = refund(20, "bot-1");
    other_session["session"] = json!("sess-2");
    decide(other_session).await;
    decide(json!({"action": "order.lookup", "input": {"order_id": "ord_abc123"}, "actor": {"id": "bot-1", "role": "agent"}, "snapshot": {"fraud_flag": false, "refunds_today": 0, "account_age_days": 1}})).await;

    let (status, all) = get("/v1/audit").await;
    assert_eq!(status, StatusCode::OK);
    let records = all["records"].as_array().unwrap();
    // The server's start is record 1 (its policy's activation).
    assert_eq!(records.len(), 6);
    let seqs: Vec<u64> = records.iter().map(|r| r["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, vec![1, 2, 3, 4, 5, 6]);
    assert_eq!(records[0]["phase"], "activate");
    assert_eq!(records[1]["decision_id"], a["decision_id"]);
    assert!(records[1]["hash"].as_str().is_some_and(|s| s.len() == 64));
    assert!(all.get("next_after_seq").is_none());

    let count = |v: &Value| v["records"].as_array().unwrap().len();
    assert_eq!(count(&get("/v1/audit?actor=bot-2").await.1), 2);
    assert_eq!(count(&get("/v1/audit?action=order.lookup").await.1), 1);
    // The four allowed decisions and the activation.
    assert_eq!(count(&get("/v1/audit?effect=allow").await.1), 5);
    assert_eq!(count(&get("/v1/audit?rule=large_refund").await.1), 1);
    assert_eq!(count(&get("/v1/audit?session=sess-2").await.1), 1);
    assert_eq!(
        count(&get("/v1/audit?actor=bot-1&effect=allow&action=refund").await.1),
        2
    );
    let id = a["decision_id"].as_str().unwrap();
    assert_eq!(count(&get(&format!("/v1/audit?decision_id={id}")).await.1), 1);
    assert_eq!(count(&get("/v1/audit?since=2000-01-01T00:00:00Z").await.1), 6);
    assert_eq!(count(&get("/v1/audit?until=2000-01-01T00:00:00%2B01:00").await.1), 0);

    // Paging.
    let (_, page) = get("/v1/audit?limit=2").await;
    assert_eq!(count(&page), 2);
    assert_eq!(page["next_after_seq"], 2);
    let (_, page) = get("/v1/audit?limit=2&after_seq=5").await;
    assert_eq!(page["records"][0]["seq"], 6);
    assert!(page.get("next_after_seq").is_none());

    for bad in [
        "/v1/audit?since=yesterday",
        "/v1/audit?effect=maybe",
        "/v1/audit?limit=100000",
        "/v1/audit?after_seq=-1",
        "/v1/audit?actr=bot-1",
    ] {
        let (status, body) = get(bad).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
        assert_error(&body, "invalid_query");
    }

    let (status, v) = get("/v1/audit/verify").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(v, json!({"intact": true, "records": 6}));

    // Tamper with record 3 (the refund of 5000) behind the server's back (an attacker with the
    // file drops the append-only trigger first): verify names it.
    let conn = rusqlite::Connection::open(h.db_path()).unwrap();
    conn.execute("DROP TRIGGER audit_no_update", []).unwrap();
    let changed = conn
        .execute(
            "UPDATE audit SET body = replace(body, '\"block\"', '\"allow\"') WHERE seq = 3",
            [],
        )
        .unwrap();
    assert_eq!(changed, 1);
    drop(conn);
    let (status, v) = get("/v1/audit/verify").await;
    assert_eq!(status, StatusCode::CONFLICT, "{v}");
    assert_eq!(v["intact"], false);
    assert_eq!(v["seq"], 3);
    assert_error(&v, "audit_broken");
    server.shutdown().await;
}
