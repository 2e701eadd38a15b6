//! A replica still serving an older policy
//! with a NARROWER window (it could not load the version published, or has
//! not switched yet) prunes the shared store's state with its own window.
//! A replica serving the wider window then loses those uses at its next
//! reload of the state (any lost lease, reset or epoch bump) and allows
//! past the limit. (Only where a newer version widens `max_window`:
//! windows never exceed it.)

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use jiff::{SignedDuration, Timestamp};
use rein_engine::{Effect, Policy, Request};
use rein_runtime::{Runtime, RuntimeConfig};
use rein_store::{PostgresOptions, PostgresStore, Store};
use serde_json::json;
use std::sync::Arc;

const OLD: &str = r#"
version: narrow
default: allow
max_window: 1h
contracts:
  actor: {id: string}
  actions:
    refund:
      input: {customer: string}
    note:
      input: {text: string}
rules:
  - id: refund_rate
    action: refund
    effect: block
    limit: {count: 2, window: 1h}
  - id: note_rate
    action: note
    effect: block
    limit: {count: 100, window: 1h}
"#;

const NEW: &str = r#"
version: wide
default: allow
max_window: 2h
contracts:
  actor: {id: string}
  actions:
    refund:
      input: {customer: string}
    note:
      input: {text: string}
rules:
  - id: refund_rate
    action: refund
    effect: block
    limit: {count: 2, window: 2h}
  - id: note_rate
    action: note
    effect: block
    limit: {count: 100, window: 1h}
"#;

async fn client(url: &str) -> tokio_postgres::Client {
    let (c, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(async move {
        let _ = conn.await;
    });
    c
}

fn config() -> RuntimeConfig {
    RuntimeConfig {
        hmac_key: b"review prune key".to_vec(),
        trust_request_time: true,
        session_idle: SignedDuration::from_hours(4),
        ..RuntimeConfig::default()
    }
}

fn refund(time: Timestamp) -> Request {
    Request::new("refund")
        .input(json!({"customer": "c1"}))
        .actor(json!({"id": "bot"}))
        .time(time)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_narrower_replica_never_prunes_uses_a_wider_one_still_counts() {
    let Ok(admin) = std::env::var("REIN_TEST_PG") else {
        eprintln!("note: REIN_TEST_PG is not set; skipped");
        return;
    };
    let name = format!("rein_t_prune_{}", uuid::Uuid::now_v7().simple());
    client(&admin)
        .await
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .unwrap();
    let url = format!("{}/{name}", admin.rsplit_once('/').unwrap().0);
    let open = || async { Arc::new(PostgresStore::open(&url, PostgresOptions::default()).await.unwrap()) };
    // B serves the published, wider version; A is still on the older one.
    let b_store: Arc<dyn Store> = open().await;
    let b = Runtime::new(Policy::from_yaml_str(NEW).unwrap(), b_store, config());
    b.open_state().await.unwrap();
    let a_store: Arc<dyn Store> = open().await;
    let a = Runtime::new(Policy::from_yaml_str(OLD).unwrap(), a_store, config());
    a.open_state().await.unwrap();

    let now = Timestamp::now();
    let earlier = now - SignedDuration::from_mins(90);
    // Two refunds 90 minutes ago, through B: the limit (2 per 2h) is full.
    for _ in 0..2 {
        assert_eq!(b.decide(refund(earlier), None).await.effect, Effect::Allow);
    }
    assert_eq!(b.decide(refund(now), None).await.effect, Effect::Block);
    // A prunes with its 1h window (the server does every minute).
    let (_, pruned) = a.prune_state(now).await.unwrap();
    eprintln!("A pruned {pruned} rows from the shared store");
    // B's state is reloaded under its next lease (here: a reset of another
    // rule; a lost lease connection or any epoch bump does the same).
    b.reset_limits(Some("note_rate"), None).await.unwrap();
    let again = b.decide(refund(now), None).await;
    assert_eq!(
        again.effect,
        Effect::Block,
        "B allowed a third refund within 2h: its uses were pruned by a replica serving a 1h window"
    );
    drop((a, b));
    let _ = client(&admin)
        .await
        .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .await;
}

/// A replica that does not serve the version published to the replicas
/// (it could not load it, or has not switched yet) prunes nothing of the
/// shared store; once it serves it, it prunes.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replica_not_serving_the_published_version_prunes_nothing() {
    let Ok(admin) = std::env::var("REIN_TEST_PG") else {
        eprintln!("note: REIN_TEST_PG is not set; skipped");
        return;
    };
    let name = format!("rein_t_prune_{}", uuid::Uuid::now_v7().simple());
    client(&admin)
        .await
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .unwrap();
    let url = format!("{}/{name}", admin.rsplit_once('/').unwrap().0);
    let store: Arc<dyn Store> = Arc::new(PostgresStore::open(&url, PostgresOptions::default()).await.unwrap());
    let a = Runtime::new(Policy::from_yaml_str(OLD).unwrap(), Arc::clone(&store), config());
    a.open_state().await.unwrap();
    let now = Timestamp::now();
    // An old use, outside every window now (5 h > 1 h).
    assert_eq!(
        a.decide(refund(now - SignedDuration::from_hours(5)), None).await.effect,
        Effect::Allow
    );
    store.publish_policy("some-other-version").await.unwrap();
    assert_eq!(a.prune_state(Timestamp::now()).await.unwrap(), (0, 0));
    assert_eq!(store.state_size().await.unwrap().limit_uses, 1);
    let served = a.policy().version().to_string();
    store.publish_policy(&served).await.unwrap();
    // A replica whose clock is far off the database's prunes nothing
    // (ahead, it would delete what the others still count).
    for off in [SignedDuration::from_hours(10), SignedDuration::from_secs(-10)] {
        assert_eq!(a.prune_state(Timestamp::now() + off).await.unwrap(), (0, 0));
        assert_eq!(store.state_size().await.unwrap().limit_uses, 1);
    }
    let (_, pruned) = a.prune_state(Timestamp::now()).await.unwrap();
    assert!(pruned >= 1, "pruned {pruned}");
    assert_eq!(store.state_size().await.unwrap().limit_uses, 0);
    drop(a);
    drop(store);
    let _ = client(&admin)
        .await
        .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .await;
}
