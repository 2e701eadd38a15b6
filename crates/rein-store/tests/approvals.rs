//! Approvals against every backend (a real SQLite file, a real PostgreSQL
//! database; see `common::differential!`): the state machine, its
//! refusals, and races.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[macro_use]
mod common;

use std::sync::Arc;

use common::{entry, open_temp, TestStore};
use rein_store::{ApprovalError, ApprovalRecord, ApprovalState, Store, Verification};
use serde_json::json;

differential!(
    create_get_list,
    grant_then_use_once,
    open_approvals_leave_out_the_expired_and_the_decided,
    an_empty_role_list_reads_back_as_the_role,
    a_link_of_the_requesters_chain_may_not_decide,
    refusals,
    concurrent_uses_exactly_one_wins,
    concurrent_decisions_exactly_one_wins,
    failing_approval_does_not_fail_its_batch,
    a_grant_holds_from_the_grant_and_forgets_the_secrets,
    open_approvals_are_found_by_request_and_client,
    the_first_key_fingerprint_is_kept,
    an_outcome_is_appended_once,
    a_clients_pending_approvals_leave_out_the_expired_before_the_limit,
    imports_are_verbatim_and_refuse_a_known_id,
);

const NOW: &str = "2025-06-01T12:00:00Z";
const LATER: &str = "2025-06-01T12:30:00Z";
/// After the expiry, written with another offset on purpose.
const TOO_LATE: &str = "2025-06-01T15:00:00.000001+02:00";

fn approval(id: &str) -> ApprovalRecord {
    ApprovalRecord {
        id: id.into(),
        request_hash: "a".repeat(64),
        decision_id: format!("dec-{id}"),
        rules: vec!["big-refund".into()],
        role: "finance".into(),
        roles: vec!["finance".into()],
        action: "refund".into(),
        requested_by: Some("agent-7".into()),
        requested_via: Some("support-bot".into()),
        requested_chain: Vec::new(),
        summary: json!({"amount": 5000, "currency": "EUR"}),
        created_at: NOW.into(),
        expires_at: "2025-06-01T13:00:00Z".into(),
        state: ApprovalState::Pending,
        decided_by: None,
        decided_at: None,
        comment: None,
        hold_seconds: None,
        sealed: None,
    }
}

async fn create_get_list(store: TestStore) {
    assert_eq!(store.get_approval("nope").await.unwrap(), None);
    store.create_approval(approval("ap1")).await.unwrap();
    let mut second = approval("ap2");
    second.created_at = "2025-06-01T12:05:00+00:00".into();
    second.requested_by = None;
    store.create_approval(second.clone()).await.unwrap();
    assert_eq!(store.get_approval("ap1").await.unwrap(), Some(approval("ap1")));
    assert_eq!(store.get_approval("ap2").await.unwrap(), Some(second));

    let dup = store.create_approval(approval("ap1")).await.unwrap_err();
    assert!(dup.0.contains("already exists"), "{dup}");
    let mut bad_time = approval("ap3");
    bad_time.expires_at = "soon".into();
    assert!(store.create_approval(bad_time).await.is_err());

    store
        .decide_approval("ap1", false, "boss", Some("no"), LATER)
        .await
        .unwrap()
        .unwrap();
    let ids = |v: Vec<ApprovalRecord>| v.into_iter().map(|a| a.id).collect::<Vec<_>>();
    assert_eq!(
        ids(store.list_approvals(None, 10).await.unwrap()),
        ["ap2", "ap1"],
        "newest first"
    );
    assert_eq!(
        ids(store.list_approvals(Some(ApprovalState::Pending), 10).await.unwrap()),
        ["ap2"]
    );
    assert_eq!(
        ids(store.list_approvals(Some(ApprovalState::Denied), 10).await.unwrap()),
        ["ap1"]
    );
    assert_eq!(ids(store.list_approvals(None, 1).await.unwrap()), ["ap2"]);
}

async fn grant_then_use_once(store: TestStore) {
    store.create_approval(approval("ap")).await.unwrap();
    let granted = store
        .decide_approval("ap", true, "boss", Some("fine"), LATER)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(granted.state, ApprovalState::Granted);
    assert_eq!(granted.decided_by.as_deref(), Some("boss"));
    assert_eq!(granted.decided_at.as_deref(), Some(LATER));
    assert_eq!(granted.comment.as_deref(), Some("fine"));

    let again = store
        .decide_approval("ap", false, "boss", None, LATER)
        .await
        .unwrap()
        .unwrap_err();
    assert!(
        matches!(again, ApprovalError::WrongState { ref state, .. } if state == "granted"),
        "{again:?}"
    );

    let used = store.use_approval("ap", &"a".repeat(64), LATER).await.unwrap().unwrap();
    assert_eq!(used.state, ApprovalState::Used);
    let twice = store
        .use_approval("ap", &"a".repeat(64), LATER)
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(
        twice,
        ApprovalError::WrongState {
            id: "ap".into(),
            state: "used".into(),
            expected: "granted".into()
        }
    );
}

/// Open approvals: pending and not expired at the time given.
async fn open_approvals_leave_out_the_expired_and_the_decided(store: TestStore) {
    let ids = |v: Vec<ApprovalRecord>| v.into_iter().map(|a| a.id).collect::<Vec<_>>();
    store.create_approval(approval("ap1")).await.unwrap();
    let mut short = approval("ap2");
    short.expires_at = "2025-06-01T12:30:00Z".into();
    store.create_approval(short).await.unwrap();
    store.create_approval(approval("ap3")).await.unwrap();
    store
        .decide_approval("ap3", false, "boss", None, NOW)
        .await
        .unwrap()
        .unwrap();
    let open = |now: &'static str| {
        let store = &store;
        async move { ids(store.list_open_approvals(now, 10).await.unwrap()) }
    };
    assert_eq!(open("2025-06-01T12:10:00Z").await, ["ap2", "ap1"]);
    assert_eq!(open("2025-06-01T12:45:00Z").await, ["ap1"]);
    assert!(open("2025-06-01T13:00:00Z").await.is_empty(), "expiry is exclusive");
    // Every pending one is still listed by state.
    assert_eq!(
        ids(store.list_approvals(Some(ApprovalState::Pending), 10).await.unwrap()),
        ["ap2", "ap1"]
    );
}

/// An approval stored without its list of roles still needs its role: an
/// empty list never reads back as "no role needed".
async fn an_empty_role_list_reads_back_as_the_role(store: TestStore) {
    let mut a = approval("ap");
    a.roles.clear();
    store.create_approval(a).await.unwrap();
    assert_eq!(store.get_approval("ap").await.unwrap().unwrap().roles, ["finance"]);
}

/// The requester's chain is kept as given, and an approver whose name is
/// any link of it is refused as the requester would be; other names
/// decide it.
async fn a_link_of_the_requesters_chain_may_not_decide(store: TestStore) {
    let mut a = approval("ap");
    a.requested_chain = vec!["alice".into(), "support-bot".into(), "researcher".into()];
    store.create_approval(a.clone()).await.unwrap();
    assert_eq!(store.get_approval("ap").await.unwrap(), Some(a));
    for (grant, who) in [(true, "alice"), (false, "researcher")] {
        assert_eq!(
            store
                .decide_approval("ap", grant, who, None, LATER)
                .await
                .unwrap()
                .unwrap_err(),
            ApprovalError::SelfApproval(who.into())
        );
    }
    let granted = store
        .decide_approval("ap", true, "bob", None, LATER)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(granted.state, ApprovalState::Granted);
    assert_eq!(granted.requested_chain, ["alice", "support-bot", "researcher"]);
}

async fn refusals(store: TestStore) {
    store.create_approval(approval("ap")).await.unwrap();

    assert_eq!(
        store
            .decide_approval("ghost", true, "boss", None, LATER)
            .await
            .unwrap()
            .unwrap_err(),
        ApprovalError::NotFound("ghost".into())
    );
    assert_eq!(
        store.use_approval("ghost", "x", LATER).await.unwrap().unwrap_err(),
        ApprovalError::NotFound("ghost".into())
    );
    // Self-approval, for grant and deny alike, by the actor the request
    // names or by the client that sent it; the approval stays pending.
    for (grant, who) in [
        (true, "agent-7"),
        (false, "agent-7"),
        (true, "support-bot"),
        (false, "support-bot"),
    ] {
        assert_eq!(
            store
                .decide_approval("ap", grant, who, None, LATER)
                .await
                .unwrap()
                .unwrap_err(),
            ApprovalError::SelfApproval(who.into())
        );
    }
    // Using before it is granted.
    assert!(matches!(
        store
            .use_approval("ap", &"a".repeat(64), LATER)
            .await
            .unwrap()
            .unwrap_err(),
        ApprovalError::WrongState { .. }
    ));
    // Expired: exactly at the expiry counts as expired.
    for now in [TOO_LATE, "2025-06-01T13:00:00Z"] {
        assert_eq!(
            store
                .decide_approval("ap", true, "boss", None, now)
                .await
                .unwrap()
                .unwrap_err(),
            ApprovalError::Expired("ap".into())
        );
    }
    assert_eq!(
        store.get_approval("ap").await.unwrap().unwrap().state,
        ApprovalState::Pending
    );
    // A `now` that is not a time is a caller bug, not a decision.
    assert!(store.decide_approval("ap", true, "boss", None, "now").await.is_err());

    store
        .decide_approval("ap", true, "boss", None, LATER)
        .await
        .unwrap()
        .unwrap();
    // Wrong request: refused, and still usable by the right one.
    assert_eq!(
        store
            .use_approval("ap", &"b".repeat(64), LATER)
            .await
            .unwrap()
            .unwrap_err(),
        ApprovalError::RequestMismatch("ap".into())
    );
    assert_eq!(
        store.get_approval("ap").await.unwrap().unwrap().state,
        ApprovalState::Granted
    );
    // Expired when used.
    assert_eq!(
        store
            .use_approval("ap", &"a".repeat(64), TOO_LATE)
            .await
            .unwrap()
            .unwrap_err(),
        ApprovalError::Expired("ap".into())
    );
    assert_eq!(
        store.get_approval("ap").await.unwrap().unwrap().state,
        ApprovalState::Granted
    );
    store.use_approval("ap", &"a".repeat(64), LATER).await.unwrap().unwrap();
}

async fn concurrent_uses_exactly_one_wins(store: TestStore) {
    let store = store.arc();
    store.create_approval(approval("ap")).await.unwrap();
    store
        .decide_approval("ap", true, "boss", None, LATER)
        .await
        .unwrap()
        .unwrap();
    let tasks: Vec<_> = (0..32)
        .map(|_| {
            let store = Arc::clone(&store);
            tokio::spawn(async move { store.use_approval("ap", &"a".repeat(64), LATER).await.unwrap() })
        })
        .collect();
    let mut wins = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(rec) => {
                assert_eq!(rec.state, ApprovalState::Used);
                wins += 1;
            }
            Err(e) => assert!(
                matches!(e, ApprovalError::WrongState { ref state, .. } if state == "used"),
                "{e:?}"
            ),
        }
    }
    assert_eq!(wins, 1);
}

async fn concurrent_decisions_exactly_one_wins(store: TestStore) {
    let store = store.arc();
    store.create_approval(approval("ap")).await.unwrap();
    let tasks: Vec<_> = (0..16)
        .map(|i| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                store
                    .decide_approval("ap", i % 2 == 0, &format!("approver-{i}"), None, LATER)
                    .await
            })
        })
        .collect();
    let mut wins = 0;
    for task in tasks {
        if task.await.unwrap().unwrap().is_ok() {
            wins += 1;
        }
    }
    assert_eq!(wins, 1);
}

/// An approval change that fails (duplicate id) shares a batch with audit
/// appends without failing them.
async fn failing_approval_does_not_fail_its_batch(store: TestStore) {
    let store = store.arc();
    store.create_approval(approval("ap")).await.unwrap();
    let mut appends = Vec::new();
    let mut creates = Vec::new();
    for i in 0..40u64 {
        let s = Arc::clone(&store);
        appends.push(tokio::spawn(async move { s.append(entry(i)).await }));
        let s = Arc::clone(&store);
        creates.push(tokio::spawn(async move {
            s.create_approval(approval(if i % 2 == 0 { "ap" } else { "" })).await
        }));
    }
    for a in appends {
        a.await.unwrap().unwrap();
    }
    let results: Vec<bool> = futures_join(creates).await;
    assert_eq!(
        results.iter().filter(|ok| **ok).count(),
        1,
        "only the first empty-id create succeeds"
    );
    assert_eq!(
        store.verify_audit().await.unwrap(),
        Verification::Intact { records: 40 }
    );
}

async fn futures_join(tasks: Vec<tokio::task::JoinHandle<Result<(), rein_store::StoreError>>>) -> Vec<bool> {
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.unwrap().is_ok());
    }
    out
}

/// A grant holds for `hold_seconds` from the grant, not from the request;
/// the sealed secrets are gone once decided.
async fn a_grant_holds_from_the_grant_and_forgets_the_secrets(store: TestStore) {
    let mut a = approval("ap");
    a.hold_seconds = Some(600);
    a.sealed = Some("xchacha20poly1305:00".into());
    store.create_approval(a).await.unwrap();
    let stored = store.get_approval("ap").await.unwrap().unwrap();
    assert_eq!(stored.hold_seconds, Some(600));
    assert_eq!(stored.sealed.as_deref(), Some("xchacha20poly1305:00"));
    // Granted at 12:55, five minutes before the wait would have ended:
    // the grant holds ten minutes from then.
    let granted = store
        .decide_approval("ap", true, "boss", None, "2025-06-01T12:55:00Z")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(granted.expires_at, "2025-06-01T13:05:00.000000Z");
    assert_eq!(granted.sealed, None);
    let used = store
        .use_approval("ap", &"a".repeat(64), "2025-06-01T13:02:00Z")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(used.state, ApprovalState::Used);

    // Denied: the secrets go too.
    let mut b = approval("bp");
    b.sealed = Some("xchacha20poly1305:00".into());
    store.create_approval(b).await.unwrap();
    store
        .decide_approval("bp", false, "boss", None, LATER)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(store.get_approval("bp").await.unwrap().unwrap().sealed, None);

    // Expired undecided: forgotten at the next approval change.
    let mut c = approval("cp");
    c.sealed = Some("xchacha20poly1305:00".into());
    store.create_approval(c).await.unwrap();
    let mut d = approval("dp");
    d.created_at = TOO_LATE.into();
    d.expires_at = "2025-06-02T13:00:00Z".into();
    store.create_approval(d).await.unwrap();
    assert_eq!(store.get_approval("cp").await.unwrap().unwrap().sealed, None);
}

/// The pending approval of an identical request from the same client is
/// found; another client's, a decided or an expired one is not.
async fn open_approvals_are_found_by_request_and_client(store: TestStore) {
    let hash = "a".repeat(64);
    store.create_approval(approval("ap")).await.unwrap();
    let found = store
        .find_open_approval(&hash, Some("support-bot"), LATER)
        .await
        .unwrap();
    assert_eq!(found.map(|a| a.id).as_deref(), Some("ap"));
    assert_eq!(
        store.find_open_approval(&hash, Some("other"), LATER).await.unwrap(),
        None
    );
    assert_eq!(store.find_open_approval(&hash, None, LATER).await.unwrap(), None);
    assert_eq!(
        store
            .find_open_approval(&"b".repeat(64), Some("support-bot"), LATER)
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        store
            .find_open_approval(&hash, Some("support-bot"), TOO_LATE)
            .await
            .unwrap(),
        None
    );
    let mut none = approval("np");
    none.requested_via = None;
    store.create_approval(none).await.unwrap();
    assert_eq!(
        store
            .find_open_approval(&hash, None, LATER)
            .await
            .unwrap()
            .map(|a| a.id)
            .as_deref(),
        Some("np")
    );
    store
        .decide_approval("ap", false, "boss", None, LATER)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        store
            .find_open_approval(&hash, Some("support-bot"), LATER)
            .await
            .unwrap(),
        None
    );

    let mine = store.list_client_approvals("support-bot", None, 10).await.unwrap();
    assert_eq!(mine.into_iter().map(|a| a.id).collect::<Vec<_>>(), ["ap"]);
    assert!(store
        .list_client_approvals("nobody", None, 10)
        .await
        .unwrap()
        .is_empty());
    assert!(store
        .list_client_approvals("support-bot", Some(ApprovalState::Pending), 10)
        .await
        .unwrap()
        .is_empty());
}

/// The audit key's fingerprint: the first one bound is kept, also by the
/// next process.
async fn the_first_key_fingerprint_is_kept(mut store: TestStore) {
    assert_eq!(store.key_fingerprint().await.unwrap(), None);
    assert_eq!(store.bind_key_fingerprint("fp-a").await.unwrap(), "fp-a");
    assert_eq!(store.bind_key_fingerprint("fp-b").await.unwrap(), "fp-a");
    assert_eq!(store.key_fingerprint().await.unwrap().as_deref(), Some("fp-a"));
    store.reopen().await;
    assert_eq!(store.key_fingerprint().await.unwrap().as_deref(), Some("fp-a"));
    assert_eq!(store.bind_key_fingerprint("fp-c").await.unwrap(), "fp-a");
}

/// A read-only open of a SQLite file reads the fingerprint.
#[tokio::test]
async fn a_read_only_store_reads_the_key_fingerprint() {
    let (dir, store) = open_temp();
    assert_eq!(store.bind_key_fingerprint("fp-a").await.unwrap(), "fp-a");
    store.close().await.unwrap();
    drop(store);
    let read_only = rein_store::SqliteStore::open_read_only(dir.path().join("rein.db")).unwrap();
    assert_eq!(read_only.key_fingerprint().await.unwrap().as_deref(), Some("fp-a"));
}

/// Of many concurrent appends of one decision's outcome, exactly one is
/// kept; the others are told, and the chain stays intact.
async fn an_outcome_is_appended_once(store: TestStore) {
    let store = store.arc();
    let mut before = entry(1);
    before.phase = "before".into();
    store.append(before).await.unwrap();
    let mut outcome = entry(1);
    outcome.phase = "after".into();
    // A record appended as usual under the decision (a refused body that
    // names it, which anyone can send) does not take the outcome's place.
    store.append(outcome.clone()).await.unwrap();
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let store = Arc::clone(&store);
            let outcome = outcome.clone();
            tokio::spawn(async move { store.append_once(outcome).await.unwrap() })
        })
        .collect();
    let mut kept = 0;
    for t in tasks {
        kept += usize::from(t.await.unwrap().is_some());
    }
    assert_eq!(kept, 1);
    assert_eq!(store.append_once(outcome.clone()).await.unwrap(), None);
    // Another decision's outcome, and another phase, are not affected.
    let mut other = entry(3);
    other.phase = "after".into();
    assert!(store.append_once(other).await.unwrap().is_some());
    assert_eq!(store.audit_len().await.unwrap(), 4);
    assert_eq!(store.verify_audit().await.unwrap(), Verification::Intact { records: 4 });
}

#[tokio::test]
async fn expired_secrets_go_at_the_next_start_sqlite() {
    expired_secrets_go_at_the_next_start(TestStore::sqlite().await).await;
}

#[tokio::test]
#[ignore = "PostgresStore::open does not yet call postgres::approvals::forget_expired_at_start"]
async fn expired_secrets_go_at_the_next_start_postgres() {
    if let Some(store) = TestStore::postgres("expired_secrets_go_at_the_next_start_postgres").await {
        expired_secrets_go_at_the_next_start(store).await;
    }
}

/// Sealed secrets of an approval that expired with nothing else happening
/// are gone at the next start.
async fn expired_secrets_go_at_the_next_start(mut store: TestStore) {
    let mut a = approval("ap");
    a.sealed = Some("xchacha20poly1305:00".into());
    store.create_approval(a).await.unwrap();
    assert!(store.get_approval("ap").await.unwrap().unwrap().sealed.is_some());
    // NOW is long past: the approval expired meanwhile.
    store.reopen().await;
    assert_eq!(store.get_approval("ap").await.unwrap().unwrap().sealed, None);
}

/// A client's pending approvals are those not expired yet, chosen before
/// the limit: newer expired ones do not use it up.
async fn a_clients_pending_approvals_leave_out_the_expired_before_the_limit(store: TestStore) {
    let mut live = approval("live");
    live.created_at = "2025-06-01T11:00:00Z".into();
    live.expires_at = "2099-01-01T00:00:00Z".into();
    store.create_approval(live).await.unwrap();
    for id in ["old1", "old2", "old3"] {
        store.create_approval(approval(id)).await.unwrap();
    }
    let pending = store
        .list_client_approvals("support-bot", Some(ApprovalState::Pending), 1)
        .await
        .unwrap();
    assert_eq!(pending.into_iter().map(|a| a.id).collect::<Vec<_>>(), ["live"]);
}

/// An import (a migration) keeps approvals as they are, in any state,
/// sealed secrets and all, and refuses an id the store has, changing
/// nothing of it.
async fn imports_are_verbatim_and_refuse_a_known_id(store: TestStore) {
    let mut granted = approval("granted");
    granted.state = ApprovalState::Granted;
    granted.decided_by = Some("boss".into());
    granted.decided_at = Some(LATER.into());
    granted.comment = Some("ok".into());
    granted.hold_seconds = Some(600);
    granted.requested_chain = vec!["alice".into(), "bot".into()];
    let mut used = approval("used");
    used.state = ApprovalState::Used;
    used.created_at = "2025-06-01T12:01:00+01:00".into();
    let mut denied = approval("denied");
    denied.state = ApprovalState::Denied;
    denied.requested_via = None;
    let mut pending = approval("pending");
    pending.sealed = Some("xchacha20poly1305:01".into());
    pending.expires_at = "2099-01-01T00:00:00Z".into();
    let all = vec![granted.clone(), used.clone(), denied.clone(), pending.clone()];
    if let Err(e) = store.import_approvals(all.clone()).await {
        // A store that cannot import says so (SQLite is only ever a source).
        assert!(!store.is_shared() && e.0.contains("cannot import"), "{e}");
        return;
    }
    for a in &all {
        assert_eq!(store.get_approval(&a.id).await.unwrap().as_ref(), Some(a));
    }
    // What an imported approval does next is what it would have done.
    assert!(store
        .use_approval("granted", &"a".repeat(64), LATER)
        .await
        .unwrap()
        .is_ok());
    assert!(store
        .use_approval("used", &"a".repeat(64), LATER)
        .await
        .unwrap()
        .is_err());
    // A known id: refused, and the kept one unchanged.
    let mut again = approval("pending");
    again.state = ApprovalState::Granted;
    let e = store.import_approvals(vec![again]).await.unwrap_err();
    assert!(e.0.contains("pending"), "{e}");
    assert_eq!(store.get_approval("pending").await.unwrap(), Some(pending));
    // All or nothing: a batch with a known id adds none of the others.
    let e = store
        .import_approvals(vec![approval("new"), approval("denied")])
        .await
        .unwrap_err();
    assert!(e.0.contains("denied"), "{e}");
    assert_eq!(store.get_approval("new").await.unwrap(), None);
}

/// Replicas: three stores on one PostgreSQL database (as three `rein serve`
/// processes), 16 tasks each, race to use one granted approval: exactly
/// one use succeeds in all; racing to decide another, exactly one
/// decision stands.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replicas_race_for_one_approval_postgres() {
    let test = "replicas_race_for_one_approval_postgres";
    let Some(first) = TestStore::postgres(test).await else {
        return;
    };
    let url = first.pg_url().unwrap().to_owned();
    let mut replicas: Vec<Arc<dyn rein_store::Store>> = vec![first.arc()];
    for _ in 0..2 {
        replicas.push(Arc::new(common::open_postgres(&url).await));
    }
    first.create_approval(approval("ap")).await.unwrap();
    first.create_approval(approval("bp")).await.unwrap();
    replicas[1]
        .decide_approval("ap", true, "boss", None, LATER)
        .await
        .unwrap()
        .unwrap();
    let mut uses = Vec::new();
    let mut decisions = Vec::new();
    for (r, replica) in replicas.iter().enumerate() {
        for i in 0..16 {
            let store = Arc::clone(replica);
            uses.push(tokio::spawn(async move {
                store.use_approval("ap", &"a".repeat(64), LATER).await.unwrap()
            }));
            let store = Arc::clone(replica);
            decisions.push(tokio::spawn(async move {
                store
                    .decide_approval("bp", i % 2 == 0, &format!("approver-{r}-{i}"), None, LATER)
                    .await
                    .unwrap()
            }));
        }
    }
    let mut used = 0;
    for task in uses {
        match task.await.unwrap() {
            Ok(rec) => {
                assert_eq!(rec.state, ApprovalState::Used);
                used += 1;
            }
            Err(e) => assert!(
                matches!(e, ApprovalError::WrongState { ref state, .. } if state == "used"),
                "{e:?}"
            ),
        }
    }
    assert_eq!(used, 1, "one use across replicas");
    let mut decided = Vec::new();
    for task in decisions {
        match task.await.unwrap() {
            Ok(rec) => decided.push(rec),
            Err(e) => assert!(matches!(e, ApprovalError::WrongState { .. }), "{e:?}"),
        }
    }
    assert_eq!(decided.len(), 1, "one decision across replicas");
    // What stands is what the winner was told.
    let stored = replicas[2].get_approval("bp").await.unwrap().unwrap();
    assert_eq!(stored, decided[0]);
}

/// With the database gone under a running store, every approval operation
/// and every state read fails with a store error, within the store's
/// bounds: never a use or a grant answered as done.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_database_fails_every_approval_operation_postgres() {
    let test = "a_lost_database_fails_every_approval_operation_postgres";
    let Some(store) = TestStore::postgres(test).await else {
        return;
    };
    store.create_approval(approval("ap")).await.unwrap();
    store.create_approval(approval("bp")).await.unwrap();
    store
        .decide_approval("ap", true, "boss", None, LATER)
        .await
        .unwrap()
        .unwrap();
    store.drop_database_now().await;
    async fn bounded<T>(f: impl std::future::Future<Output = T>) -> Result<T, tokio::time::error::Elapsed> {
        tokio::time::timeout(std::time::Duration::from_secs(30), f).await
    }
    let used = bounded(store.use_approval("ap", &"a".repeat(64), LATER)).await.unwrap();
    assert!(used.is_err(), "{used:?}");
    let decided = bounded(store.decide_approval("bp", true, "boss", None, LATER))
        .await
        .unwrap();
    assert!(decided.is_err(), "{decided:?}");
    assert!(bounded(store.create_approval(approval("cp"))).await.unwrap().is_err());
    assert!(bounded(store.get_approval("ap")).await.unwrap().is_err());
    assert!(bounded(store.list_open_approvals(LATER, 10)).await.unwrap().is_err());
    let start = jiff::Timestamp::UNIX_EPOCH;
    assert!(bounded(store.load_state(start, start)).await.unwrap().is_err());
    assert!(bounded(store.reset_limits(None, None)).await.unwrap().is_err());
}

/// Uses racing the grant itself, from three replicas: each is answered
/// "pending" (before the grant) or exactly as SQLite would after it; never
/// a store error; exactly one use succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn uses_racing_the_grant_across_replicas_postgres() {
    let test = "uses_racing_the_grant_across_replicas_postgres";
    let Some(first) = TestStore::postgres(test).await else {
        return;
    };
    let url = first.pg_url().unwrap().to_owned();
    let mut replicas: Vec<Arc<dyn rein_store::Store>> = vec![first.arc()];
    for _ in 0..2 {
        replicas.push(Arc::new(common::open_postgres(&url).await));
    }
    for round in 0..5 {
        let id = format!("ap{round}");
        first.create_approval(approval(&id)).await.unwrap();
        let mut uses = Vec::new();
        for replica in &replicas {
            for _ in 0..8 {
                let (store, id) = (Arc::clone(replica), id.clone());
                uses.push(tokio::spawn(async move {
                    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
                    loop {
                        match store.use_approval(&id, &"a".repeat(64), LATER).await.unwrap() {
                            Err(ApprovalError::WrongState { state, .. })
                                if state == "pending" && std::time::Instant::now() < deadline =>
                            {
                                tokio::task::yield_now().await;
                            }
                            other => return other,
                        }
                    }
                }));
            }
        }
        replicas[round % 3]
            .decide_approval(&id, true, "boss", None, LATER)
            .await
            .unwrap()
            .unwrap();
        let mut used = 0;
        for task in uses {
            match task.await.unwrap() {
                Ok(rec) => {
                    assert_eq!(rec.state, ApprovalState::Used);
                    used += 1;
                }
                Err(e) => assert!(
                    matches!(e, ApprovalError::WrongState { ref state, .. } if state == "used"),
                    "{e:?}"
                ),
            }
        }
        assert_eq!(used, 1, "round {round}");
    }
}
