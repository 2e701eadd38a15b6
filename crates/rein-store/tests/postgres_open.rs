//! Opening a PostgreSQL store: migrations, versions, refusals.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
mod postgres_support;

use postgres_support::TestDb;
use rein_store::{PostgresOptions, PostgresStore, Store};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_migrates_once_and_reopens() {
    let Some(db) = TestDb::new().await else { return };
    // Several replicas starting at once: one migrates, the others wait.
    let opens: Vec<_> = (0..3)
        .map(|_| {
            let url = db.url.clone();
            tokio::spawn(async move { PostgresStore::open(&url, PostgresOptions::default()).await })
        })
        .collect();
    for open in opens {
        let store = open.await.unwrap().unwrap();
        assert!(store.is_shared());
    }
    let raw = db.raw().await;
    let version: i32 = raw
        .query_one("SELECT version FROM rein_schema_version", &[])
        .await
        .unwrap()
        .get(0);
    assert!(version >= 1);
    // A newer schema is refused.
    raw.execute("UPDATE rein_schema_version SET version = version + 100", &[])
        .await
        .unwrap();
    let err = PostgresStore::open(&db.url, PostgresOptions::default())
        .await
        .unwrap_err();
    assert!(err.0.contains("newer"), "{err}");
    drop(raw);
    db.drop_db().await;
}

/// Closing a store: what was queued is committed and answered, what comes
/// after fails, the lease is given up; the database keeps every answered
/// record.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_commits_what_was_queued_and_refuses_the_rest() {
    let Some(db) = TestDb::new().await else { return };
    let store = std::sync::Arc::new(db.open().await);
    let lease = store.acquire_state_lease(0).await.unwrap();
    let mut handles = Vec::new();
    for i in 0..50 {
        let store = std::sync::Arc::clone(&store);
        handles.push(tokio::spawn(async move {
            let mut e = common::entry(i);
            e.decision_id = format!("c-{i}");
            store.append(e).await.is_ok()
        }));
    }
    store.close().await.unwrap();
    let mut answered = 0;
    for h in handles {
        if h.await.unwrap() {
            answered += 1;
        }
    }
    let err = store.append(common::entry(99)).await.unwrap_err();
    assert!(err.0.contains("closed"), "{err}");
    assert!(store.audit_len().await.is_err());
    assert!(store.acquire_state_lease(0).await.is_err());
    store.close().await.unwrap();
    // The lease went with the store: another takes it at once.
    let other = db.open().await;
    let next = tokio::time::timeout(std::time::Duration::from_secs(5), other.acquire_state_lease(0))
        .await
        .unwrap()
        .unwrap();
    assert!(next.generation > lease.generation);
    assert_eq!(
        other.verify_audit().await.unwrap(),
        rein_store::Verification::Intact { records: answered }
    );
    drop(other);
    db.drop_db().await;
}
