//! Reviewer's attacks on the PostgreSQL store (issue 18). Each test states
//! what it attacks; a failing one is a finding (see the review report).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
mod postgres_support;

use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use postgres_support::TestDb;
use rein_engine::state::{BucketKey, Decimal, StateWrite};
use rein_store::{AuditEntry, PostgresOptions, PostgresStore, Store, StoreLocation, Verification};

fn entry(decision_id: &str) -> AuditEntry {
    let mut e = common::entry(2);
    e.decision_id = decision_id.into();
    e.phase = "before".into();
    e
}

fn use_of(decision_id: &str) -> StateWrite {
    StateWrite::Use {
        decision_id: decision_id.into(),
        bucket: BucketKey {
            rule: "spend".into(),
            per: vec![("actor.id".into(), "\"alice\"".into())],
        },
        time: "2026-01-01T00:00:01Z".parse().unwrap(),
        amount: Decimal::from_str("1").unwrap(),
    }
}

/// libpq and tokio-postgres accept the password as a query parameter
/// (`?password=`): it must not be shown either.
#[test]
fn review_a_query_string_password_is_not_shown() {
    for url in [
        "postgres://rein@db.internal/rein?password=s3cretpw",
        "postgres://rein@db.internal/rein?sslmode=require&password=s3cretpw",
    ] {
        let shown = StoreLocation::parse(url).redacted();
        assert!(!shown.contains("s3cretpw"), "redacted() shows the password: {shown}");
    }
}

/// The same through the store's own open error (it names the URL).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn review_an_open_error_names_no_query_string_password() {
    let options = PostgresOptions {
        connect_timeout: Duration::from_secs(1),
        ..PostgresOptions::default()
    };
    // A port nobody listens on.
    let err = PostgresStore::open("postgres://rein@127.0.0.1:9/rein?password=s3cretpw", options)
        .await
        .unwrap_err();
    assert!(!err.0.contains("s3cretpw"), "{err}");
}

/// A lease holder that stops answering without its connection breaking (a
/// process paused by SIGSTOP, a VM paused, a stuck runtime: the kernel
/// still acks keepalives) keeps the advisory lock forever: no other replica
/// can decide on the state again until it is killed. Expected: the lease is
/// bounded (e.g. `idle_session_timeout` on the lease connection), so a
/// second replica gets it within a bound.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn review_a_frozen_lease_holder_does_not_stop_every_replica_for_good() {
    let Some(db) = TestDb::new().await else { return };
    let a = db.open().await;
    let b = db.open().await;
    let la = a.acquire_state_lease(0).await.unwrap();
    // A is now "frozen": it never releases nor uses the lease.
    let started = Instant::now();
    let bound = Duration::from_secs(40);
    let mut last_err = None;
    let mut got = None;
    while started.elapsed() < bound {
        match tokio::time::timeout(Duration::from_secs(15), b.acquire_state_lease(0)).await {
            Ok(Ok(lease)) => {
                got = Some(lease);
                break;
            }
            Ok(Err(e)) => last_err = Some(e.0),
            Err(_) => last_err = Some("acquire hung for 15 s".into()),
        }
    }
    drop(la);
    assert!(
        got.is_some(),
        "no other replica could take the state lease for {} s while its holder was frozen; last error: {last_err:?}",
        started.elapsed().as_secs()
    );
    db.drop_db().await;
}

/// The fence under a race: A appends under its lease while its lease
/// connection is killed and B takes the lease at once. Every append A was
/// answered `Ok` for must reach B (in B's delta, B's `seen_seq` covering
/// it); none may commit after B's delta was read.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn review_an_acknowledged_leased_write_is_never_missed_by_the_next_holder() {
    let Some(db) = TestDb::new().await else { return };
    let a = Arc::new(db.open().await);
    let b = Arc::new(db.open().await);
    let raw = db.raw().await;
    let mut b_after = 0u64;
    let mut acked_total = 0;
    for round in 0..25 {
        let la = a.acquire_state_lease(0).await.unwrap();
        // A's leased appends in flight.
        let mut appends = Vec::new();
        for i in 0..8 {
            let a = Arc::clone(&a);
            let id = format!("r{round}-{i}");
            appends.push(tokio::spawn(async move {
                let r = a
                    .append_leased(entry(&id), vec![use_of(&id)], false, la.generation)
                    .await;
                (id, r)
            }));
        }
        if round % 2 == 1 {
            tokio::task::yield_now().await;
        }
        // A's lease connection dies (it holds the advisory lock).
        raw.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' AND granted \
             AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
            &[],
        )
        .await
        .unwrap();
        let lb = tokio::time::timeout(Duration::from_secs(15), b.acquire_state_lease(b_after))
            .await
            .expect("B takes the lease")
            .unwrap();
        let seen: std::collections::HashSet<String> = lb
            .writes
            .iter()
            .filter_map(|w| match w {
                StateWrite::Use { decision_id, .. } => Some(decision_id.clone()),
                _ => None,
            })
            .collect();
        for h in appends {
            let (id, r) = h.await.unwrap();
            if let Ok(Some(rec)) = r {
                acked_total += 1;
                assert!(
                    rec.seq <= lb.seen_seq && (rec.seq <= b_after || seen.contains(&id)),
                    "round {round}: A's acknowledged leased write {id} (seq {}) is not in B's delta (after {b_after}, \
                     seen {})",
                    rec.seq,
                    lb.seen_seq
                );
            }
        }
        b_after = lb.seen_seq;
        b.release_state_lease(lb.generation).await.unwrap();
        let _ = a.release_state_lease(la.generation).await;
    }
    eprintln!("acknowledged leased appends of A: {acked_total}");
    assert_eq!(
        a.verify_audit().await.unwrap(),
        Verification::Intact {
            records: a.audit_len().await.unwrap()
        }
    );
    db.drop_db().await;
}

/// A state write made without the lease while another process HOLDS the
/// lease is not seen by that holder until its next lease (only the epoch
/// moves). Shown here at the store level: the holder's decisions in that
/// window read a mirror without the write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn review_an_unleased_state_write_during_a_lease_is_invisible_to_the_holder() {
    let Some(db) = TestDb::new().await else { return };
    let a = db.open().await;
    let b = db.open().await;
    let la = a.acquire_state_lease(0).await.unwrap();
    // B (a caller without the lease: `append_with_state`) writes a use.
    b.append_with_state(entry("unleased"), vec![use_of("unleased")])
        .await
        .unwrap();
    // A, still holding its lease, decides and appends: accepted, though
    // A's copy never saw B's use.
    let r = a
        .append_leased(entry("a1"), vec![use_of("a1")], false, la.generation)
        .await;
    a.release_state_lease(la.generation).await.unwrap();
    assert!(
        r.is_err(),
        "a leased append was accepted after a state write the holder could not see"
    );
    db.drop_db().await;
}
