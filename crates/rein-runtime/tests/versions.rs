//! Activations through the runtime on a real SQLite store: the records
//! readers of the log meet (replay, outcome lookups, the history).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use rein_engine::{Policy, Request};
use rein_runtime::versions::{history, kept_version, resolve_version, SourcesState, VersionError};
use rein_runtime::{replay, Runtime, RuntimeConfig};
use rein_store::{ActivationCause, SqliteStore, Store, Verification};
use serde_json::json;
use std::sync::Arc;

const V1: &str = "version: one\ncontracts:\n  actor: {id: string}\n  actions:\n    note:\n      input: {text: string}\nrules:\n  - id: short\n    action: note\n    when: size(input.text) < 5\n    effect: allow\n";

fn runtime(dir: &tempfile::TempDir, policy: &str) -> (Runtime, Arc<SqliteStore>) {
    let store = Arc::new(SqliteStore::open(dir.path().join("rein.db")).unwrap());
    let policy = Policy::from_sources([("policy.yaml", policy)]).unwrap();
    let config = RuntimeConfig {
        hmac_key: vec![7; 32],
        ..RuntimeConfig::default()
    };
    (Runtime::new(policy, store.clone(), config), store)
}

fn note(text: &str) -> Request {
    Request::new("note")
        .input(json!({"text": text}))
        .actor(json!({"id": "bot"}))
}

#[tokio::test]
async fn activations_are_skipped_by_replay_and_outcomes_and_listed_in_the_history() {
    let dir = tempfile::tempdir().unwrap();
    let (rt, store) = runtime(&dir, V1);
    let v1 = rt.policy().version().to_string();
    let started = rt.record_start().await.unwrap();
    assert_eq!((started.audit_seq, started.previous_version.as_deref()), (1, None));
    assert_eq!(rt.decide(note("hi"), None).await.effect.as_str(), "allow");
    let v2_text = V1.replace("< 5", "< 2").replace("version: one", "version: two");
    let v2 = Policy::from_sources([("policy.yaml", v2_text.as_str())]).unwrap();
    let activated = rt.activate(v2, "ops", ActivationCause::Reload).await.unwrap();
    assert_eq!(activated.previous_version.as_deref(), Some(v1.as_str()));
    let d = rt.decide(note("hi"), None).await;
    assert_eq!(
        (d.effect.as_str(), d.policy_version.as_str()),
        ("block", activated.policy_version.as_str())
    );

    // Replay re-decides the two decisions, not the activations.
    let report = replay(store.as_ref(), &Policy::from_sources([("p.yaml", V1)]).unwrap())
        .await
        .unwrap();
    assert_eq!(report.replayed, 2);
    assert_eq!(report.changes.len(), 1);

    // An outcome naming an activation's id finds no decision: block.
    let outcome = rt.outcome(&activated.activation_id, Some(json!({})), None).await;
    assert_eq!(outcome.effect.as_str(), "block");
    assert!(outcome.reasons[0].contains("no decision"), "{:?}", outcome.reasons);

    let h = history(store.as_ref(), None).await.unwrap();
    assert_eq!(h.len(), 2);
    assert!(h[0].current && h[0].version == activated.policy_version);
    assert_eq!(h[0].label.as_deref(), Some("two"));
    assert_eq!((h[1].version.as_str(), h[1].sources), (v1.as_str(), SourcesState::Kept));
    assert_eq!(resolve_version(&h, "one").unwrap().version, v1);
    let kept = kept_version(store.as_ref(), &v1[..5]).await.unwrap();
    assert_eq!(Policy::from_kept_sources(&kept.sources, &v1).unwrap().version(), v1);
    assert!(matches!(
        kept_version(store.as_ref(), "three").await,
        Err(VersionError::Lookup(_))
    ));
    assert_eq!(store.verify_audit().await.unwrap(), Verification::Intact { records: 5 });

    // A version whose state cannot be recorded is not swapped in.
    store.close().await.unwrap();
    let v3 = Policy::from_sources([("policy.yaml", V1.replace("< 5", "< 9"))]).unwrap();
    assert!(rt.activate(v3, "ops", ActivationCause::Reload).await.is_err());
    assert_eq!(rt.policy().version(), activated.policy_version);
}
