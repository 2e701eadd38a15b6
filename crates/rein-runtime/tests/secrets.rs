//! Sensitive values never reach the store in clear, whatever shape the
//! request has and whatever path they take (records, refusals, approvals,
//! reasons, violation messages): checked on the raw bytes of the SQLite
//! files.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use rein_engine::{Phase, Policy, Request};
use rein_runtime::{Approver, Refusal, Runtime, RuntimeConfig};
use rein_store::SqliteStore;
use serde_json::json;
use std::sync::Arc;

const POLICY: &str = r#"
default: allow
contracts:
  actor:
    id: string
    email: {type: string, sensitive: true, optional: true}
  snapshot:
    api_key: {type: string, sensitive: true, optional: true}
  actions:
    pay:
      input:
        amount: {type: int, min: 0}
        card: {type: string, sensitive: true, pattern: "^[A-Za-z0-9-]+$"}
        lines:
          type: list
          optional: true
          items:
            type: object
            fields:
              sku: string
              secret: {type: string, sensitive: true}
      output:
        token: {type: string, sensitive: true}
    lower:
      input:
        card: {type: string, sensitive: true}
rules:
  - id: big
    action: pay
    when: input.amount > 100
    effect: require_approval
    approval: {role: finance}
  - id: lowered
    action: lower
    when: int(input.card.lowerAscii()) > 5
    effect: block
  - id: suffixed
    action: lower
    when: int(input.card + "x") > 5
    effect: block
  - id: uppered
    action: lower
    when: int(input.card.upperAscii()) > 5
    effect: block
"#;

/// The secret, in every spelling a rule could turn it into.
const SECRET: &str = "SeCrEtCaRd7731";

fn spellings() -> Vec<String> {
    vec![
        SECRET.to_string(),
        SECRET.to_lowercase(),
        SECRET.to_uppercase(),
        format!("{SECRET}x"),
        "s3cr3t-line-value".to_string(),
        "tok-9f8e7d6c5b".to_string(),
        "mail-4417@example.org".to_string(),
        "key-5511aa".to_string(),
    ]
}

/// Every shape the values could come in: the right one, and roots, lists
/// and fields of the wrong shape.
fn requests() -> Vec<Request> {
    let actor = json!({"id": "bot", "email": "mail-4417@example.org"});
    let snapshot = json!({"api_key": "key-5511aa"});
    let inputs = [
        json!({"amount": 5, "card": SECRET}),
        json!({"amount": 500, "card": SECRET}),
        json!([{"amount": 5, "card": SECRET}]),
        json!(SECRET),
        json!({"amount": 5, "card": [SECRET]}),
        json!({"amount": 5, "card": {"number": SECRET}}),
        json!({"amount": 5, "card": "bad card !", "cardd": SECRET}),
        json!({"amount": -1, "card": SECRET}),
        json!({"amount": 5, "card": "ok", "lines": [{"sku": "a", "secret": "s3cr3t-line-value"}]}),
        json!({"amount": 5, "card": "ok", "lines": {"sku": "a", "secret": "s3cr3t-line-value"}}),
        json!({"amount": 5, "card": "ok", "lines": "s3cr3t-line-value"}),
        json!({"amount": 5, "card": "ok", "lines": [["s3cr3t-line-value"]]}),
    ];
    let mut out = Vec::new();
    for input in inputs {
        for action in ["pay", "Pay"] {
            out.push(
                Request::new(action)
                    .input(input.clone())
                    .actor(actor.clone())
                    .snapshot(snapshot.clone()),
            );
        }
    }
    for actor in [
        json!([{"id": "bot", "email": "mail-4417@example.org"}]),
        json!({"id": "bot", "email": ["mail-4417@example.org"]}),
        json!("mail-4417@example.org"),
    ] {
        out.push(
            Request::new("pay")
                .input(json!({"amount": 5, "card": "ok"}))
                .actor(actor),
        );
    }
    for snapshot in [
        json!([{"api_key": "key-5511aa"}]),
        json!({"api_key": {"v": "key-5511aa"}}),
    ] {
        out.push(
            Request::new("pay")
                .input(json!({"amount": 5, "card": "ok"}))
                .actor(json!({"id": "bot"}))
                .snapshot(snapshot),
        );
    }
    for card in [SECRET, &SECRET.to_lowercase()] {
        out.push(
            Request::new("lower")
                .input(json!({"card": card}))
                .actor(json!({"id": "bot"})),
        );
    }
    out
}

fn raw_files(dir: &std::path::Path) -> Vec<u8> {
    let mut bytes = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.file_name().unwrap().to_string_lossy().starts_with("rein.db") {
            bytes.extend(std::fs::read(&path).unwrap());
        }
    }
    bytes
}

fn assert_no_secret(bytes: &[u8], what: &str) {
    for s in spellings() {
        assert!(
            !bytes.windows(s.len()).any(|w| w == s.as_bytes()),
            "{what}: `{s}` is in the store's files"
        );
    }
}

#[tokio::test]
async fn no_sensitive_value_reaches_the_store_in_clear() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(dir.path().join("rein.db")).unwrap());
    let config = RuntimeConfig {
        hmac_key: b"secrets test key".to_vec(),
        ..RuntimeConfig::default()
    };
    let rt = Runtime::new(Policy::from_yaml_str(POLICY).unwrap(), store.clone(), config);
    let mut decided = Vec::new();
    for request in requests() {
        let answer = rt.decide_from(request, None, Some("agent-1")).await;
        assert!(answer.audit_seq.is_some(), "{:?}", answer.reasons);
        decided.push(answer);
    }
    // The evaluation errors quote the transformed card in the answer (the
    // caller sent it), never in the record.
    let lowered = decided
        .iter()
        .rev()
        .take(2)
        .any(|a| a.reasons.iter().any(|r| r.contains("`secretcard7731`")));
    assert!(lowered, "the test must provoke a quoting error");
    // Outcomes whose output has the wrong shape, or names an unknown decision.
    let outputs = [
        json!([{"token": "tok-9f8e7d6c5b"}]),
        json!("tok-9f8e7d6c5b"),
        json!({"token": ["tok-9f8e7d6c5b"]}),
        json!({"token": "tok-9f8e7d6c5b"}),
        json!({"token": 5, "other": "tok-9f8e7d6c5b"}),
    ];
    for output in &outputs {
        let request = Request::new("pay")
            .input(json!({"amount": 5, "card": "ok"}))
            .actor(json!({"id": "bot"}));
        let a = rt.decide_from(request, None, Some("agent-1")).await;
        assert_eq!(a.effect, rein_engine::Effect::Allow, "{:?}", a.reasons);
        let o = rt
            .outcome_from(&a.decision_id, Some(output.clone()), None, Some("agent-1"))
            .await
            .unwrap();
        assert!(o.audit_seq.is_some());
    }
    let _ = rt.outcome("unknown-decision", Some(outputs[0].clone()), None).await;
    // An error instead of the output: free text, which may quote what the
    // output would have held (the action has sensitive output fields).
    let failed = "the provider refused token tok-9f8e7d6c5b";
    let request = Request::new("pay")
        .input(json!({"amount": 5, "card": "ok"}))
        .actor(json!({"id": "bot"}));
    let a = rt.decide_from(request, None, Some("agent-1")).await;
    let o = rt
        .outcome_from(&a.decision_id, None, Some(failed.into()), Some("agent-1"))
        .await
        .unwrap();
    assert!(o.audit_seq.is_some());
    let _ = rt.outcome("unknown-decision-2", None, Some(failed.into())).await;
    // Refused bodies, of every shape.
    for body in [
        json!({"action": "pay", "input": [{"card": SECRET}], "bogus": 1}),
        json!({"action": "pay", "inputs": {"card": SECRET}}),
        json!({"action": "pay", "actor": [{"email": "mail-4417@example.org"}], "x": 1}),
        json!({"decision_id": "d", "output": [{"token": "tok-9f8e7d6c5b"}], "y": 2}),
    ] {
        let bytes = serde_json::to_vec(&body).unwrap();
        rt.record_refusal(Refusal {
            phase: Phase::Before,
            status: 400,
            code: "invalid_request",
            message: "unknown field",
            body: Some(&bytes),
            declared_len: None,
            client: Some("agent-1"),
        })
        .await;
    }
    // An approval, decided: its record too.
    let pending = decided
        .iter()
        .find_map(|a| a.approval.clone())
        .expect("an approval was opened");
    rt.grant(
        &pending.id,
        Approver {
            name: "boss",
            roles: None,
            credential: None,
        },
        Some("fine"),
    )
    .await
    .unwrap();
    store.close().await.unwrap();
    drop(rt);
    drop(store);
    assert_no_secret(&raw_files(dir.path()), "after every shape");
}
