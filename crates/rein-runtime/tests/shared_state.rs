//! Several runtimes (replicas) deciding on one shared store, at unit
//! level: one SQLite file behind an in-process state lease
//! ([`shared::LeasedSqlite`], each handle one process). The PostgreSQL
//! tests (`shared_pg.rs`) run the same scenarios on the real store.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod shared;

use rein_engine::{Effect, Request};
use rein_store::{SqliteStore, Store};
use serde_json::json;
use shared::*;
use std::sync::atomic::Ordering;
use std::sync::Arc;

fn core(dir: &tempfile::TempDir) -> Arc<LeaseCore> {
    LeaseCore::new(Arc::new(SqliteStore::open(dir.path().join("rein.db")).unwrap()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_limit_holds_exactly_across_three_replicas() {
    let dir = tempfile::tempdir().unwrap();
    let core = core(&dir);
    let handles: Vec<_> = (0..3).map(|_| LeasedSqlite::new(&core)).collect();
    let mut replicas = Vec::new();
    for h in &handles {
        replicas.push(replica(h.clone()).await);
    }
    limits_hold_exactly(&replicas, handles[0].as_ref(), 96).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_session_written_through_one_replica_is_read_by_another() {
    let dir = tempfile::tempdir().unwrap();
    let core = core(&dir);
    let a = replica(LeasedSqlite::new(&core)).await;
    let b = replica(LeasedSqlite::new(&core)).await;
    sessions_are_shared(&a, &b).await;
}

/// A decision whose lease was lost while it was being recorded (the
/// lease's connection killed, another replica taking the lease and the
/// last unit) is refused by the fence and blocks; the replica then takes
/// the lease again, reloads, and refuses too: nothing is ever allowed
/// against a mirror that missed the other's write.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_lost_lease_never_allows_against_a_stale_mirror() {
    let dir = tempfile::tempdir().unwrap();
    let core = core(&dir);
    let ha = LeasedSqlite::new(&core);
    let hb = LeasedSqlite::new(&core);
    let a = replica(ha.clone()).await;
    let b = replica(hb.clone()).await;
    for i in 0..REFUNDS - 1 {
        let rt = if i % 2 == 0 { &a } else { &b };
        assert_eq!(rt.decide(refund(i), None).await.effect, Effect::Allow);
    }
    // A takes the last unit in its mirror; its append stalls.
    ha.stall.store(true, Ordering::SeqCst);
    let stalled = ha.wait_stalled();
    let a2 = Arc::clone(&a);
    let pending = tokio::spawn(async move { a2.decide(refund(100), None).await });
    stalled.await;
    // Its lease's connection dies; B takes the lease and the last unit.
    ha.kill_lease();
    let won = b.decide(refund(101), None).await;
    assert_eq!(won.effect, Effect::Allow, "{:?}", won.reasons);
    ha.unstall();
    let lost = pending.await.unwrap();
    assert_eq!(lost.effect, Effect::Block, "a decision whose lease was lost is refused");
    assert!(
        lost.reasons[0].contains("lease"),
        "the reason names the lease: {:?}",
        lost.reasons
    );
    // A takes the lease again and reloads: the limit is full.
    let after = a.decide(refund(102), None).await;
    assert_eq!(after.effect, Effect::Block, "{:?}", after.reasons);
    assert!(
        after.reasons.iter().any(|r| r.contains("10 refunds")),
        "{:?}",
        after.reasons
    );
    assert_eq!(allowed_records(ha.as_ref(), "refund").await, REFUNDS);
}

/// No lease, no stateful decision: the lease error is the reason; the
/// next decision once it can be had decides again (and exactly).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_lease_that_cannot_be_taken_blocks_and_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let core = core(&dir);
    let ha = LeasedSqlite::new(&core);
    let a = replica(ha.clone()).await;
    let b = replica(LeasedSqlite::new(&core)).await;
    assert_eq!(a.decide(refund(0), None).await.effect, Effect::Allow);
    ha.fail_acquire.store(true, Ordering::SeqCst);
    for i in 0..3 {
        let blocked = a.decide(refund(i), None).await;
        assert_eq!(blocked.effect, Effect::Block);
        assert!(
            blocked.reasons[0].contains("state lease could not be taken") && blocked.reasons[0].contains("refused"),
            "{:?}",
            blocked.reasons
        );
    }
    // A stateless action does not need it.
    let note = Request::new("note")
        .input(json!({"text": "hi"}))
        .actor(json!({"id": "bot"}));
    assert_eq!(a.decide(note, None).await.effect, Effect::Allow);
    // Meanwhile the other replica uses all but one unit.
    for i in 0..REFUNDS - 2 {
        assert_eq!(b.decide(refund(i), None).await.effect, Effect::Allow);
    }
    ha.fail_acquire.store(false, Ordering::SeqCst);
    assert_eq!(a.decide(refund(1), None).await.effect, Effect::Allow);
    assert_eq!(a.decide(refund(2), None).await.effect, Effect::Block);
    assert_eq!(b.decide(refund(3), None).await.effect, Effect::Block);
}

/// A reset through one replica is seen by every replica (the store's
/// epoch changed: each reloads its mirror whole under its next lease).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_reset_reaches_every_replica() {
    let dir = tempfile::tempdir().unwrap();
    let core = core(&dir);
    let a = replica(LeasedSqlite::new(&core)).await;
    let b = replica(LeasedSqlite::new(&core)).await;
    assert_eq!(race(&[a.clone(), b.clone()], 20, refund).await, REFUNDS);
    assert_eq!(b.decide(refund(0), None).await.effect, Effect::Block);
    a.reset_limits(Some("refund_rate"), None).await.unwrap();
    assert_eq!(race(&[a.clone(), b.clone()], 20, refund).await, REFUNDS);
}

/// Stateless decisions never take the lease; a stateful one takes it and
/// gives it back once idle (another replica can take it at once).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_lease_is_taken_only_for_state_and_given_back_when_idle() {
    let dir = tempfile::tempdir().unwrap();
    let core = core(&dir);
    let ha = LeasedSqlite::new(&core);
    let hb = LeasedSqlite::new(&core);
    let a = replica(ha.clone()).await;
    let b = replica(hb.clone()).await;
    let taken = ha.acquired.load(Ordering::SeqCst);
    for _ in 0..5 {
        let note = Request::new("note")
            .input(json!({"text": "hi"}))
            .actor(json!({"id": "bot"}));
        assert_eq!(a.decide(note, None).await.effect, Effect::Allow);
    }
    assert_eq!(
        ha.acquired.load(Ordering::SeqCst),
        taken,
        "stateless decisions take no lease"
    );
    assert_eq!(a.decide(refund(0), None).await.effect, Effect::Allow);
    assert_eq!(ha.acquired.load(Ordering::SeqCst), taken + 1);
    // B gets it while A is idle (a held lease would make this wait forever).
    let b_decides = tokio::time::timeout(std::time::Duration::from_secs(5), b.decide(refund(1), None));
    assert_eq!(
        b_decides.await.expect("the idle lease was given back").effect,
        Effect::Allow
    );
}

/// Explaining reads the shared state under the lease (async), and the
/// plain (not async) explain refuses rather than read an unguarded mirror.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn explain_reads_the_shared_state_under_the_lease() {
    let dir = tempfile::tempdir().unwrap();
    let core = core(&dir);
    let a = replica(LeasedSqlite::new(&core)).await;
    let b = replica(LeasedSqlite::new(&core)).await;
    for i in 0..REFUNDS {
        assert_eq!(b.decide(refund(i), None).await.effect, Effect::Allow);
    }
    let explained = a.explain_bound_async(refund(0), None, None).await;
    assert_eq!(explained.effect(), Effect::Block, "{:?}", explained.to_json());
    let plain = a.explain_bound(refund(0), None, None);
    assert_eq!(plain.effect(), Effect::Block);
    assert!(plain.to_json().to_string().contains("lease"), "{}", plain.to_json());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_approval_is_used_once_across_replicas_of_one_store() {
    let dir = tempfile::tempdir().unwrap();
    let core = core(&dir);
    let a = replica(LeasedSqlite::new(&core)).await;
    let b = replica(LeasedSqlite::new(&core)).await;
    an_approval_is_used_once_across_replicas(&a, &b).await;
}

/// A stateful candidate in shadow beside a stateless enforced decision
/// reads the shared state under the lease (what another replica wrote);
/// when the lease cannot be had, the candidate's record says so and the
/// enforced answer stands: a candidate never changes the answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stateful_candidate_reads_the_shared_state_under_the_lease() {
    let dir = tempfile::tempdir().unwrap();
    let core = core(&dir);
    let ha = LeasedSqlite::new(&core);
    let a = replica(ha.clone()).await;
    let b = replica(LeasedSqlite::new(&core)).await;
    let candidate = format!(
        "{POLICY}  - id: no_note_after_secret\n    action: note\n    when: '\"secret\" in session.labels'\n    effect: block\n"
    );
    a.set_shadow(Some(rein_engine::Policy::from_yaml_str(&candidate).unwrap()));
    let read = Request::new("read_secret")
        .input(json!({"path": "/k"}))
        .actor(json!({"id": "bot"}))
        .session("s9");
    assert_eq!(b.decide(read, None).await.effect, Effect::Allow);
    let note = || {
        Request::new("note")
            .input(json!({"text": "hi"}))
            .actor(json!({"id": "bot"}))
            .session("s9")
    };
    let candidate_of = |decided: rein_runtime::Answer| {
        let ha = ha.clone();
        async move {
            let records = ha
                .query_audit(&rein_store::AuditQuery {
                    decision_id: Some(decided.decision_id.clone()),
                    ..Default::default()
                })
                .await
                .unwrap();
            records[0].entry.shadow.as_ref().unwrap()["candidate"].clone()
        }
    };
    let decided = a.decide(note(), None).await;
    assert_eq!(decided.effect, Effect::Allow);
    let c = candidate_of(decided).await;
    assert_eq!(
        c["effect"], "block",
        "the candidate read the label another replica wrote: {c}"
    );
    ha.fail_acquire.store(true, Ordering::SeqCst);
    let decided = a.decide(note(), None).await;
    assert_eq!(decided.effect, Effect::Allow, "the enforced answer stands");
    let c = candidate_of(decided).await;
    assert_eq!(c["basis"], "error", "{c}");
    assert!(c["error"].as_str().unwrap().contains("lease"), "{c}");
}
