//! The state on PostgreSQL across replicas: state rows written with their
//! records, the state lease (one holder, the fence, the delta of what
//! others wrote), and policy publication.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
mod postgres_support;

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use postgres_support::TestDb;
use rein_engine::state::{BucketKey, Decimal, SessionCall, StateWrite};
use rein_engine::Effect;
use rein_store::{AuditEntry, Store, Verification};
use serde_json::json;

fn t(s: &str) -> Timestamp {
    s.parse().unwrap()
}

fn entry(decision_id: &str, phase: &str) -> AuditEntry {
    let mut e = common::entry(2);
    e.decision_id = decision_id.into();
    e.phase = phase.into();
    e
}

fn bucket(actor: &str) -> BucketKey {
    BucketKey {
        rule: "spend".into(),
        per: vec![("actor.id".into(), serde_json::to_string(actor).unwrap())],
    }
}

fn use_of(decision_id: &str, actor: &str, amount: &str) -> StateWrite {
    StateWrite::Use {
        decision_id: decision_id.into(),
        bucket: bucket(actor),
        time: t("2026-01-01T00:00:01.5Z"),
        amount: Decimal::from_str(amount).unwrap(),
    }
}

fn call(session: &str, decision_id: &str) -> StateWrite {
    StateWrite::Call {
        session: session.into(),
        call: SessionCall {
            decision_id: decision_id.into(),
            action: "refund".into(),
            time: t("2026-01-01T00:00:02Z"),
            effect: Effect::Allow,
            input: json!({"amount": 3}),
            output: None,
        },
    }
}

fn output(session: &str, decision_id: &str) -> StateWrite {
    StateWrite::Output {
        session: session.into(),
        decision_id: decision_id.into(),
        output: json!({"ok": true}),
    }
}

fn label(session: &str, decision_id: &str, label: &str) -> StateWrite {
    StateWrite::Label {
        session: session.into(),
        decision_id: decision_id.into(),
        label: label.into(),
        time: t("2026-01-01T00:00:03Z"),
    }
}

/// One holder at a time; the next gets what the previous wrote; an append
/// decided under a lease taken over since is refused with nothing written.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_lease_is_exclusive_fenced_and_hands_over_the_delta() {
    let Some(db) = TestDb::new().await else { return };
    let a = Arc::new(db.open().await);
    let b = Arc::new(db.open().await);
    assert!(a.is_shared());

    let la = a.acquire_state_lease(0).await.unwrap();
    assert!(!la.reload);
    assert!(la.writes.is_empty());
    assert_eq!(la.seen_seq, 0);

    // B waits while A holds it.
    let waiting = {
        let b = Arc::clone(&b);
        tokio::spawn(async move { b.acquire_state_lease(0).await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !waiting.is_finished(),
        "a second holder while the first holds the lease"
    );

    // A decides under its lease: the writes go with the record.
    let d1 = vec![use_of("d1", "alice", "2.5"), call("s1", "d1")];
    let r1 = a
        .append_leased(entry("d1", "before"), d1.clone(), false, la.generation)
        .await
        .unwrap()
        .unwrap();
    // A decision that only read the state is fenced too.
    a.append_leased(entry("d1-read", "before"), vec![], false, la.generation)
        .await
        .unwrap()
        .unwrap();
    a.release_state_lease(la.generation).await.unwrap();

    let lb = tokio::time::timeout(Duration::from_secs(5), waiting)
        .await
        .expect("B gets the lease once A released it")
        .unwrap()
        .unwrap();
    assert!(lb.generation > la.generation);
    assert!(!lb.reload);
    assert_eq!(lb.seen_seq, 2);
    assert_eq!(lb.writes, d1, "B is handed what A wrote");

    // A's old lease: refused, nothing written.
    let err = a
        .append_leased(
            entry("d-late", "before"),
            vec![use_of("d-late", "alice", "1")],
            false,
            la.generation,
        )
        .await
        .unwrap_err();
    assert!(err.0.contains("lease"), "{err}");
    assert_eq!(a.audit_len().await.unwrap(), 2);

    // B: the output of A's call (its outcome), a label, another use.
    let r2 = b
        .append_leased(entry("d1", "after"), vec![output("s1", "d1")], true, lb.generation)
        .await
        .unwrap()
        .unwrap();
    let d3 = vec![use_of("d3", "bob", "1"), label("s1", "d3", "pii")];
    b.append_leased(entry("d3", "before"), d3.clone(), false, lb.generation)
        .await
        .unwrap()
        .unwrap();
    // A duplicate outcome under the lease: nothing, and no state.
    assert!(b
        .append_leased(entry("d1", "after"), vec![output("s1", "d1")], true, lb.generation)
        .await
        .unwrap()
        .is_none());
    b.release_state_lease(lb.generation).await.unwrap();
    assert!(b.release_state_lease(lb.generation).await.is_err(), "released twice");

    // A takes it again after what it saw (its own record r1 and the read).
    let la2 = a.acquire_state_lease(2).await.unwrap();
    assert!(!la2.reload);
    assert_eq!(la2.seen_seq, 4);
    let mut expected = vec![output("s1", "d1")];
    expected.extend(d3.clone());
    assert_eq!(la2.writes, expected);
    assert!(r2.seq > r1.seq);
    // From the start: everything, in record order.
    a.release_state_lease(la2.generation).await.unwrap();
    let all = b.acquire_state_lease(0).await.unwrap();
    let mut everything = d1.clone();
    everything.push(output("s1", "d1"));
    everything.extend(d3);
    assert_eq!(all.writes, everything);
    b.release_state_lease(all.generation).await.unwrap();

    // A change the deltas do not replay (a reset, an import) bumps the
    // epoch: the next lease says reload, with no writes.
    db.raw()
        .await
        .execute("UPDATE rein_state_lease SET epoch = epoch + 1", &[])
        .await
        .unwrap();
    let reload = a.acquire_state_lease(4).await.unwrap();
    assert!(reload.reload);
    assert!(reload.writes.is_empty());
    a.release_state_lease(reload.generation).await.unwrap();
    let again = a.acquire_state_lease(4).await.unwrap();
    assert!(!again.reload, "reloaded once");
    a.release_state_lease(again.generation).await.unwrap();
    assert_eq!(a.verify_audit().await.unwrap(), Verification::Intact { records: 4 });
    db.drop_db().await;
}

/// The fence in the append's transaction: a process that still believes it
/// holds a lease (another took one since, unknown to it) has its leased
/// appends refused, alone: the appends batched with them commit.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_fence_refuses_an_older_generation_in_the_database() {
    let Some(db) = TestDb::new().await else { return };
    let a = Arc::new(db.open().await);
    let la = a.acquire_state_lease(0).await.unwrap();
    a.append_leased(
        entry("d0", "before"),
        vec![use_of("d0", "alice", "1")],
        false,
        la.generation,
    )
    .await
    .unwrap()
    .unwrap();
    // Another replica's lease, taken while A's connection was thought dead.
    db.raw()
        .await
        .execute("UPDATE rein_state_lease SET generation = generation + 1", &[])
        .await
        .unwrap();
    let mut handles = Vec::new();
    for i in 0..20 {
        let a = Arc::clone(&a);
        handles.push(tokio::spawn(async move {
            a.append(entry(&format!("plain-{i}"), "before")).await.map(|_| ())
        }));
    }
    let fenced = a
        .append_leased(
            entry("d1", "before"),
            vec![use_of("d1", "alice", "1")],
            false,
            la.generation,
        )
        .await
        .unwrap_err();
    assert!(fenced.0.contains("lease"), "{fenced}");
    for h in handles {
        h.await.unwrap().unwrap();
    }
    assert_eq!(a.audit_len().await.unwrap(), 21);
    // A fenced outcome claims nothing: reported again (under the newest
    // lease, or without one), it is recorded.
    let outcome = entry("d0", "after");
    assert!(a
        .append_leased(outcome.clone(), vec![], true, la.generation)
        .await
        .is_err());
    assert!(a.append_once(outcome.clone()).await.unwrap().is_some());
    assert!(a.append_once(outcome).await.unwrap().is_none());
    assert_eq!(a.audit_len().await.unwrap(), 22);
    let uses: i64 = db
        .raw()
        .await
        .query_one("SELECT count(*) FROM limit_uses", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(uses, 1, "the fenced decision's state is not written");
    a.release_state_lease(la.generation).await.unwrap();
    db.drop_db().await;
}

/// A state write of another decision than the record's is refused, with
/// the record.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_of_another_decision_is_refused() {
    let Some(db) = TestDb::new().await else { return };
    let store = db.open().await;
    let err = store
        .append_with_state(entry("d1", "before"), vec![use_of("d2", "alice", "1")])
        .await
        .unwrap_err();
    assert!(err.0.contains("d2"), "{err}");
    let negative = store
        .append_with_state(entry("d1", "before"), vec![use_of("d1", "alice", "-1")])
        .await;
    assert!(negative.is_err());
    assert_eq!(store.audit_len().await.unwrap(), 0);
    // Without a lease, state goes with its record all the same.
    store
        .append_with_state(
            entry("d1", "before"),
            vec![use_of("d1", "alice", "1"), call("s9", "d1")],
        )
        .await
        .unwrap();
    let raw = db.raw().await;
    let seqs: Vec<i64> = raw
        .query(
            "SELECT seq FROM limit_uses UNION ALL SELECT seq FROM session_calls",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(seqs, [1, 1]);
    let (last_seen, seq): (String, i64) = {
        let r = raw
            .query_one("SELECT last_seen, seq FROM sessions WHERE id = 's9'", &[])
            .await
            .unwrap();
        (r.get(0), r.get(1))
    };
    assert_eq!(last_seen, "2026-01-01T00:00:02.000000Z");
    assert_eq!(seq, 1);
    db.drop_db().await;
}

/// A lease whose connection died is lost: another replica takes it at once,
/// and the appends decided under the lost one are refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_lease_whose_connection_broke_is_lost() {
    let Some(db) = TestDb::new().await else { return };
    let a = db.open().await;
    let b = db.open().await;
    let la = a.acquire_state_lease(0).await.unwrap();
    // The lease's connection is cut (a network failure, a failover).
    let raw = db.raw().await;
    let killed: i64 = raw
        .query_one(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_locks WHERE locktype = 'advisory' AND granted \
             AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(killed, 1);
    let lb = tokio::time::timeout(Duration::from_secs(5), b.acquire_state_lease(0))
        .await
        .expect("the lock went with the connection")
        .unwrap();
    assert!(a
        .append_leased(
            entry("d1", "before"),
            vec![use_of("d1", "alice", "1")],
            false,
            la.generation
        )
        .await
        .is_err());
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(a.release_state_lease(la.generation).await.is_err(), "A's lease is lost");
    b.release_state_lease(lb.generation).await.unwrap();
    // A takes it again on a new connection.
    let la2 = tokio::time::timeout(Duration::from_secs(5), a.acquire_state_lease(0))
        .await
        .unwrap()
        .unwrap();
    assert!(la2.generation > lb.generation);
    a.append_leased(
        entry("d2", "before"),
        vec![use_of("d2", "alice", "1")],
        false,
        la2.generation,
    )
    .await
    .unwrap()
    .unwrap();
    a.release_state_lease(la2.generation).await.unwrap();
    db.drop_db().await;
}

/// A publication on one replica reaches the others' channels, also after
/// their listening connection broke.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_publication_reaches_every_replica() {
    let Some(db) = TestDb::new().await else { return };
    let a = db.open().await;
    let b = db.open().await;
    assert_eq!(a.published_policy().await.unwrap(), None);
    let mut rx = b.policy_publications().expect("a shared store tells");
    // Let the listener start.
    tokio::time::sleep(Duration::from_millis(500)).await;
    a.publish_policy("v1").await.unwrap();
    tokio::time::timeout(Duration::from_secs(5), rx.changed())
        .await
        .expect("notified")
        .unwrap();
    assert_eq!(rx.borrow_and_update().as_deref(), Some("v1"));
    assert_eq!(b.published_policy().await.unwrap().as_deref(), Some("v1"));

    // The listener's connection is cut; a version published meanwhile is
    // seen once it is back.
    let raw = db.raw().await;
    let killed: i64 = raw
        .query_one(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
             WHERE datname = current_database() AND pid <> pg_backend_pid() \
             AND query LIKE 'SELECT version FROM rein_policy_published%'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(killed >= 1);
    a.publish_policy("v2").await.unwrap();
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            rx.changed().await.unwrap();
            if rx.borrow_and_update().as_deref() == Some("v2") {
                break;
            }
        }
    })
    .await
    .expect("the publication made while the listener was away is seen");
    db.drop_db().await;
}

/// A batch whose state write fails is not committed: every append in it is
/// answered with the error, nothing of it is stored (records, state, head),
/// and the next batch commits on a fresh connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failed_batch_fails_its_appends_and_the_next_one_commits() {
    let Some(db) = TestDb::new().await else { return };
    let store = Arc::new(db.open().await);
    store.append(entry("first", "before")).await.unwrap();
    db.raw()
        .await
        .batch_execute("ALTER TABLE limit_uses ADD CONSTRAINT no_evil CHECK (decision_id <> 'evil')")
        .await
        .unwrap();
    let err = store
        .append_with_state(entry("evil", "before"), vec![use_of("evil", "alice", "1")])
        .await
        .unwrap_err();
    assert!(err.0.contains("not committed"), "{err}");
    assert_eq!(store.audit_len().await.unwrap(), 1);
    // Others racing with a failing one: each is either stored or refused
    // with the error; what was acknowledged is exactly what is stored.
    let mut handles = Vec::new();
    for i in 0..40 {
        let store = Arc::clone(&store);
        handles.push(tokio::spawn(async move {
            if i % 10 == 5 {
                store
                    .append_with_state(entry("evil", "before"), vec![use_of("evil", "bob", "1")])
                    .await
                    .map(|r| (r.seq, r.entry.decision_id))
            } else {
                let id = format!("ok-{i}");
                store
                    .append_with_state(entry(&id, "before"), vec![use_of(&id, "bob", "1")])
                    .await
                    .map(|r| (r.seq, r.entry.decision_id))
            }
        }));
    }
    let mut acked = Vec::new();
    for h in handles {
        match h.await.unwrap() {
            Ok(rec) => acked.push(rec),
            Err(e) => assert!(e.0.contains("not committed"), "{e}"),
        }
    }
    assert!(acked.iter().all(|(_, d)| d != "evil"));
    let n = acked.len() as u64;
    assert_eq!(
        store.verify_audit().await.unwrap(),
        Verification::Intact { records: 1 + n }
    );
    let uses: i64 = db
        .raw()
        .await
        .query_one("SELECT count(*) FROM limit_uses", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(uses as u64, n, "state only with acknowledged records");
    let rec = store.append(entry("after", "before")).await.unwrap();
    assert_eq!(rec.seq, 2 + n);
    db.drop_db().await;
}

/// State written without the lease (by a caller that does not take it)
/// cannot be handed over as a delta: every process reloads at its next
/// lease instead.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_written_without_the_lease_makes_every_holder_reload() {
    let Some(db) = TestDb::new().await else { return };
    let a = db.open().await;
    let b = db.open().await;
    let la = a.acquire_state_lease(0).await.unwrap();
    let r = a
        .append_leased(
            entry("d1", "before"),
            vec![use_of("d1", "alice", "1")],
            false,
            la.generation,
        )
        .await
        .unwrap()
        .unwrap();
    a.release_state_lease(la.generation).await.unwrap();
    // B writes state without a lease; stateless appends bump nothing.
    b.append(entry("plain", "before")).await.unwrap();
    b.append_with_state(entry("d2", "before"), vec![use_of("d2", "bob", "1")])
        .await
        .unwrap();
    let la = a.acquire_state_lease(r.seq).await.unwrap();
    assert!(la.reload, "the unleased write is in no delta: reload");
    assert!(la.writes.is_empty());
    a.release_state_lease(la.generation).await.unwrap();
    let again = a.acquire_state_lease(la.seen_seq).await.unwrap();
    assert!(!again.reload);
    a.release_state_lease(again.generation).await.unwrap();
    db.drop_db().await;
}

/// A limit of N across three replicas, many tasks each, each replica
/// deciding against its own copy brought up to date by the lease's delta
/// (as the runtime does): exactly N uses are recorded.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_limit_holds_exactly_across_replicas() {
    let Some(db) = TestDb::new().await else { return };
    const N: u64 = 60;
    /// One replica's copy of the state: the units used, and the seq its
    /// copy is up to date with.
    struct Mirror {
        used: u64,
        after_seq: u64,
    }
    let mut handles = Vec::new();
    for r in 0..3 {
        let store = Arc::new(db.open().await);
        let mirror = Arc::new(tokio::sync::Mutex::new(Mirror { used: 0, after_seq: 0 }));
        for t in 0..4 {
            let store = Arc::clone(&store);
            let mirror = Arc::clone(&mirror);
            handles.push(tokio::spawn(async move {
                let mut allowed = 0u64;
                for i in 0.. {
                    let mut m = mirror.lock().await;
                    let lease = store.acquire_state_lease(m.after_seq).await.unwrap();
                    assert!(!lease.reload);
                    for w in &lease.writes {
                        if let StateWrite::Use { amount, .. } = w {
                            assert_eq!(amount.to_string(), "1");
                            m.used += 1;
                        }
                    }
                    m.after_seq = m.after_seq.max(lease.seen_seq);
                    let id = format!("r{r}-t{t}-{i}");
                    let (effect, writes) = if m.used < N {
                        ("allow", vec![use_of(&id, "alice", "1")])
                    } else {
                        ("block", vec![])
                    };
                    let mut e = entry(&id, "before");
                    e.effect = effect.into();
                    let rec = store
                        .append_leased(e, writes.clone(), false, lease.generation)
                        .await
                        .unwrap()
                        .unwrap();
                    if !writes.is_empty() {
                        m.used += 1;
                        allowed += 1;
                    }
                    m.after_seq = m.after_seq.max(rec.seq);
                    store.release_state_lease(lease.generation).await.unwrap();
                    if effect == "block" {
                        break;
                    }
                }
                allowed
            }));
        }
    }
    let mut allowed = 0;
    for h in handles {
        allowed += h.await.unwrap();
    }
    assert_eq!(allowed, N, "exactly N allowed across the replicas");
    let raw = db.raw().await;
    let uses: i64 = raw
        .query_one("SELECT count(*) FROM limit_uses", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(uses as u64, N);
    db.drop_db().await;
}
