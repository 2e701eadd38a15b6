//! One approval, many concurrent grants and uses over a real loopback port:
//! exactly one grant and exactly one allow.

use crate::common::*;
use serde_json::{json, Value};

const CONCURRENT: usize = 16;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_grants_and_uses_of_one_approval() {
    let h = Harness::new().await;
    let server = h.serve().await;
    let client = reqwest::Client::new();
    let request = refund(500, "bot-1");

    let first: Value = client
        .post(server.url("/v1/decide"))
        .bearer_auth(AGENT)
        .json(&request)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(first["effect"], "require_approval");
    let id = first["approval"]["id"].as_str().unwrap().to_string();

    // Many approvers (alice and the admin) grant at once: one wins.
    let grants = (0..CONCURRENT).map(|i| {
        let client = client.clone();
        let url = server.url(&format!("/v1/approvals/{id}/grant"));
        let token = if i % 2 == 0 { ALICE } else { ADMIN };
        tokio::spawn(async move {
            let resp = client
                .post(url)
                .bearer_auth(token)
                .json(&json!({}))
                .send()
                .await
                .unwrap();
            let status = resp.status().as_u16();
            let body: Value = resp.json().await.unwrap();
            (status, body)
        })
    });
    let mut granted = 0;
    for g in grants {
        let (status, body) = g.await.unwrap();
        match status {
            200 => granted += 1,
            409 => assert_eq!(body["error"]["code"], "wrong_state", "{body}"),
            other => panic!("grant answered {other}: {body}"),
        }
    }
    assert_eq!(granted, 1);

    // Many agents use it at once: one allow, every other one block.
    let uses = (0..CONCURRENT).map(|_| {
        let client = client.clone();
        let url = server.url("/v1/decide");
        let body = with_approval(request.clone(), &id);
        tokio::spawn(async move {
            let resp = client.post(url).bearer_auth(AGENT).json(&body).send().await.unwrap();
            assert_eq!(resp.status().as_u16(), 200);
            resp.json::<Value>().await.unwrap()
        })
    });
    let mut effects = Vec::new();
    for u in uses {
        effects.push(u.await.unwrap()["effect"].as_str().unwrap().to_string());
    }
    assert_eq!(effects.iter().filter(|e| *e == "allow").count(), 1, "{effects:?}");
    assert_eq!(
        effects.iter().filter(|e| *e == "block").count(),
        CONCURRENT - 1,
        "{effects:?}"
    );

    // Every one of them is in the audit log, and the chain holds.
    let audit: Value = client
        .get(server.url("/v1/audit?action=refund&limit=1000"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let records = audit["records"].as_array().unwrap();
    let (decisions, grants): (Vec<&Value>, Vec<&Value>) = records.iter().partition(|r| r["phase"] == "before");
    assert_eq!(decisions.len(), 1 + CONCURRENT);
    assert_eq!(decisions.iter().filter(|r| r["effect"] == "allow").count(), 1);
    // Every grant attempt is recorded too: the one that won, and the others
    // refused.
    assert_eq!(grants.len(), CONCURRENT);
    assert!(grants.iter().all(|r| r["phase"] == "approval"));
    assert_eq!(grants.iter().filter(|r| r["effect"] == "allow").count(), 1);
    let verify = client
        .get(server.url("/v1/audit/verify"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(verify.status().as_u16(), 200);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_stops_the_listener() {
    let h = Harness::new().await;
    let server = h.serve().await;
    let url = server.url("/healthz");
    let client = reqwest::Client::new();
    assert_eq!(client.get(&url).send().await.unwrap().status().as_u16(), 200);
    server.shutdown().await;
    // A fresh client, so that no kept-alive connection is reused.
    assert!(reqwest::Client::new().get(&url).send().await.is_err());
}
