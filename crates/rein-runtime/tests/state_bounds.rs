//! Stateful rules under attack: what an agent can do to the state through
//! the runtime (report an outcome twice, flood it with sessions) must never
//! loosen a rule, and must fail closed with a clear reason.

// Helpers outside `#[test]` functions panic on failure too; that is the report.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use rein_engine::{Effect, Policy, Request};
use rein_runtime::{Runtime, RuntimeConfig};
use rein_store::SqliteStore;
use serde_json::json;
use std::path::Path;
use std::sync::Arc;

const POLICY: &str = r#"
default: allow
contracts:
  actor: {id: string}
  actions:
    pay:
      input: {to: string}
      output: {charged: {type: int, min: 0}}
rules:
  - id: spend_cap
    action: pay
    when: session.sum("pay", "output.charged", duration("1h")) >= 100
    effect: block
    reason: at most 100 charged an hour per session
"#;

fn config() -> RuntimeConfig {
    RuntimeConfig {
        hmac_key: b"state bounds key".to_vec(),
        ..RuntimeConfig::default()
    }
}

async fn open(db: &Path, policy: &str) -> Arc<Runtime> {
    let store = Arc::new(SqliteStore::open(db).unwrap());
    let rt = Runtime::new(Policy::from_yaml_str(policy).unwrap(), store, config());
    rt.open_state().await.unwrap();
    Arc::new(rt)
}

fn pay(session: &str) -> Request {
    Request::new("pay")
        .input(json!({"to": "shop"}))
        .actor(json!({"id": "bot-1"}))
        .session(session)
}

/// An outcome reported a second time is refused; it must not take the
/// first report's output out of the session (the state would then count
/// less than was charged, and the cap would let more through).
#[tokio::test]
async fn a_second_outcome_report_leaves_the_first_output_in_the_session() {
    let dir = tempfile::tempdir().unwrap();
    let rt = open(&dir.path().join("rein.db"), POLICY).await;
    let first = rt.decide(pay("s1"), None).await;
    assert_eq!(first.effect, Effect::Allow, "{:?}", first.reasons);
    let out = rt
        .outcome(&first.decision_id, Some(json!({"charged": 100})), None)
        .await;
    assert_eq!(out.effect, Effect::Allow, "{:?}", out.reasons);
    // The same report again, and one with another output: both refused.
    for charged in [100, 0] {
        let again = rt
            .outcome_from(&first.decision_id, Some(json!({"charged": charged})), None, None)
            .await;
        assert!(again.is_err(), "a second report must be refused");
    }
    let session = rt.session("s1").unwrap().unwrap();
    assert_eq!(session.calls[0].output, Some(json!({"charged": 100})));
    let next = rt.decide(pay("s1"), None).await;
    assert_eq!(next.effect, Effect::Block, "the cap is reached: {:?}", next.reasons);
}

/// Two reports of one outcome at once: one is recorded, and the session
/// keeps exactly its output.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_outcome_reports_keep_the_recorded_output() {
    let dir = tempfile::tempdir().unwrap();
    let rt = open(&dir.path().join("rein.db"), POLICY).await;
    for round in 0..20 {
        let session = format!("s{round}");
        let first = rt.decide(pay(&session), None).await;
        assert_eq!(first.effect, Effect::Allow, "{:?}", first.reasons);
        let reports: Vec<_> = [100, 0, 100, 0]
            .into_iter()
            .map(|charged| {
                let rt = rt.clone();
                let id = first.decision_id.clone();
                tokio::spawn(async move {
                    let answer = rt
                        .outcome_from(&id, Some(json!({"charged": charged})), None, None)
                        .await;
                    (charged, answer)
                })
            })
            .collect();
        let mut recorded = Vec::new();
        for r in reports {
            let (charged, answer) = r.await.unwrap();
            if let Ok(answer) = answer {
                assert_eq!(answer.effect, Effect::Allow, "{:?}", answer.reasons);
                recorded.push(charged);
            }
        }
        assert_eq!(recorded.len(), 1, "exactly one report is recorded: {recorded:?}");
        let held = rt.session(&session).unwrap().unwrap();
        assert_eq!(
            held.calls[0].output,
            Some(json!({"charged": recorded[0]})),
            "round {round}"
        );
    }
}
