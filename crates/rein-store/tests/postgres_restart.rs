//! PostgreSQL stopped and started again under a store: appends, the lease
//! and publication fail while it is down (clearly, in bounded time) and
//! work again once it is back, on the same store object.
//!
//! Runs its OWN throwaway cluster (initdb into a temporary directory, on a
//! free port), never the shared one. Needs PostgreSQL's server binaries
//! (`/usr/lib/postgresql/<major>/bin`, or the folder in
//! `REIN_TEST_PG_BIN`); skipped with a note without them, except under
//! `CI=true` with `REIN_TEST_PG` set, where that is a failure.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
mod postgres_support;

use std::time::{Duration, Instant};

use postgres_support::cluster::cluster;

use rein_store::{PostgresOptions, PostgresStore, Store, Verification};

fn quick() -> PostgresOptions {
    PostgresOptions {
        pool_size: 4,
        pool_wait_timeout: Duration::from_secs(2),
        connect_timeout: Duration::from_secs(2),
        statement_timeout: Duration::from_secs(5),
        idle_in_transaction_timeout: Duration::from_secs(10),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_database_is_used_again_without_a_restart() {
    let Some(cluster) = cluster("") else { return };
    let store = PostgresStore::open(&cluster.url(), quick()).await.unwrap();
    let other = PostgresStore::open(&cluster.url(), quick()).await.unwrap();
    let mut rx = other.policy_publications().unwrap();
    for i in 0..5 {
        store.append(common::entry(i)).await.unwrap();
    }
    let lease = store.acquire_state_lease(0).await.unwrap();

    cluster.stop("fast");
    // Down: every write fails, in bounded time, with a clear error.
    let started = Instant::now();
    let err = store.append(common::entry(5)).await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(10), "{:?}", started.elapsed());
    assert!(err.0.contains("not committed"), "{err}");
    assert!(store.append_once(common::entry(6)).await.is_err());
    assert!(store.audit_len().await.is_err());
    assert!(store
        .append_leased(common::entry(7), vec![], false, lease.generation)
        .await
        .is_err());
    assert!(other.acquire_state_lease(0).await.is_err());
    assert!(store.publish_policy("v1").await.is_err());
    assert!(store.probe_write().await.is_err());

    cluster.start();
    // Back: the same store objects work again.
    let rec = store.append(common::entry(8)).await.unwrap();
    assert_eq!(rec.seq, 6);
    assert!(store.append_once(common::entry(9)).await.unwrap().is_some());
    store.probe_write().await.unwrap();
    // The lease held across the restart was lost with its connection: its
    // appends are refused, a new one is taken.
    assert!(store
        .append_leased(common::entry(10), vec![], false, lease.generation)
        .await
        .is_err());
    let again = store.acquire_state_lease(5).await.unwrap();
    assert!(again.generation > lease.generation);
    store
        .append_leased(common::entry(11), vec![], false, again.generation)
        .await
        .unwrap()
        .unwrap();
    store.release_state_lease(again.generation).await.unwrap();
    // The listener reconnected: a publication reaches the other replica.
    store.publish_policy("v2").await.unwrap();
    tokio::time::timeout(Duration::from_secs(15), async {
        loop {
            rx.changed().await.unwrap();
            if rx.borrow_and_update().as_deref() == Some("v2") {
                break;
            }
        }
    })
    .await
    .expect("the listener is back");
    assert_eq!(store.verify_audit().await.unwrap(), Verification::Intact { records: 8 });
    drop(store);
    drop(other);
    drop(cluster);
}
