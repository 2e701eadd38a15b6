//! The differential property test: a random sequence of appends (with
//! state writes, outcomes reported once), approval operations, prunes and
//! resets applied to a SQLite store and to a PostgreSQL store gives the
//! same answer to every operation and the same observable store after:
//! every audit record field by field (hashes included), the state loaded
//! (whole and within random bounds), every approval, the state's size.
//!
//! Needs `REIN_TEST_PG` (see `common`); without it, it is skipped (and
//! fails under `CI=true`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::TestStore;
use jiff::{SignedDuration, Timestamp};
use proptest::prelude::*;
use rein_engine::state::{BucketKey, Decimal, SessionCall, StateWrite};
use rein_engine::Effect;
use rein_store::{
    ApprovalError, ApprovalRecord, ApprovalState, AuditEntry, AuditQuery, AuditRecord, Store, StoreError, Verification,
};
use serde_json::json;

/// One operation, with every value drawn small so that operations meet
/// (the same decision, approval, session, bucket).
#[derive(Clone, Debug)]
enum Op {
    /// A decision's `before` record with its state.
    Decide {
        uses: Vec<(u8, u8, u32, u32)>,
        call: Option<(u8, u8)>,
        label: Option<(u8, u8)>,
        at: u32,
    },
    /// The outcome of decision `pick` (modulo those made), reported once,
    /// filling in the output of its call in `session`.
    Outcome { pick: usize, session: u8, value: i64 },
    /// A record without state, appended twice with `once` (the second is
    /// refused).
    Plain { at: u32, once: bool },
    /// A new pending approval `id`.
    CreateApproval {
        id: u8,
        expires_min: u32,
        hold: Option<u32>,
        by: u8,
        via: Option<u8>,
        chain: Vec<u8>,
        sealed: bool,
    },
    /// Grant or deny approval `id` as `approver`, `at_min` after the start.
    DecideApproval {
        id: u8,
        grant: bool,
        approver: u8,
        at_min: u32,
    },
    /// Use approval `id` for request `hash` at `at_min`.
    UseApproval { id: u8, hash: u8, at_min: u32 },
    /// Prune to the bounds.
    Prune { window: u32, idle: u32 },
    /// Reset limits: a rule, a bucket, both or none.
    Reset { rule: Option<u8>, bucket: Option<(u8, u8)> },
}

fn op_strategy() -> impl Strategy<Value = Op> {
    let secs = 0u32..7_200;
    prop_oneof![
        6 => (
            prop::collection::vec((0u8..3, 0u8..3, 0u32..1000, 0u32..3), 0..3),
            prop::option::of((0u8..4, 0u8..3)),
            prop::option::of((0u8..4, 0u8..3)),
            secs.clone(),
        )
            .prop_map(|(uses, call, label, at)| Op::Decide { uses, call, label, at }),
        3 => (any::<usize>(), 0u8..4, any::<i64>()).prop_map(|(pick, session, value)| Op::Outcome {
            pick,
            session,
            value
        }),
        1 => (secs.clone(), any::<bool>()).prop_map(|(at, once)| Op::Plain { at, once }),
        3 => (
            0u8..6,
            0u32..120,
            prop::option::of(0u32..3600),
            0u8..4,
            prop::option::of(0u8..4),
            prop::collection::vec(0u8..6, 0..3),
            any::<bool>(),
        )
            .prop_map(|(id, expires_min, hold, by, via, chain, sealed)| Op::CreateApproval {
                id,
                expires_min,
                hold,
                by,
                via,
                chain,
                sealed
            }),
        3 => (0u8..6, any::<bool>(), 0u8..6, 0u32..150).prop_map(|(id, grant, approver, at_min)| {
            Op::DecideApproval { id, grant, approver, at_min }
        }),
        3 => (0u8..6, 0u8..2, 0u32..150).prop_map(|(id, hash, at_min)| Op::UseApproval { id, hash, at_min }),
        1 => (secs.clone(), secs).prop_map(|(window, idle)| Op::Prune { window, idle }),
        1 => (prop::option::of(0u8..3), prop::option::of((0u8..3, 0u8..3)))
            .prop_map(|(rule, bucket)| Op::Reset { rule, bucket }),
    ]
}

const START: &str = "2026-01-01T00:00:00Z";

fn at(secs: u32) -> Timestamp {
    START.parse::<Timestamp>().unwrap() + SignedDuration::from_secs(i64::from(secs))
}

/// `minutes` after the start, as RFC 3339 text (approval times).
fn minutes(minutes: u32) -> String {
    at(minutes * 60).to_string()
}

fn bucket(rule: u8, key: u8) -> BucketKey {
    BucketKey {
        rule: format!("rule{rule}"),
        per: vec![("actor.id".into(), serde_json::to_string(&format!("k{key}")).unwrap())],
    }
}

/// `common::entry(n)` (its actor, action, effect, rules and session vary
/// with `n`, for the queries) as decision `decision_id`'s `phase` record.
fn entry(n: usize, decision_id: &str, phase: &str, time: Timestamp) -> AuditEntry {
    let mut e = common::entry(n as u64);
    e.decision_id = decision_id.into();
    e.phase = phase.into();
    e.time = time.to_string();
    e
}

fn person(n: u8) -> String {
    ["alice", "bob", "carol", "dave", "erin", "frank"][usize::from(n)].into()
}

/// What an operation answered, comparable across backends: a store error
/// compares by being one (its text names the backend's own failure).
// The variants' sizes differ with the features the workspace unifies
// (serde_json's `preserve_order` in some builds); a test's answers are few.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, PartialEq)]
enum Answer {
    Record(Option<AuditRecord>),
    Approval(Result<ApprovalRecord, ApprovalError>),
    Created,
    Count(u64),
    StoreError,
}

fn answer<T>(result: Result<T, StoreError>, f: impl FnOnce(T) -> Answer) -> Answer {
    result.map_or(Answer::StoreError, f)
}

/// The state of a sequence being applied: decisions made so far.
#[derive(Default)]
struct Run {
    decisions: Vec<String>,
}

impl Run {
    async fn apply(&mut self, store: &dyn Store, op: &Op, n: usize) -> Answer {
        match op {
            Op::Decide {
                uses,
                call,
                label,
                at: secs,
            } => {
                let id = format!("d{n:04}");
                let time = at(*secs);
                let mut writes = Vec::new();
                for (rule, key, units, scale) in uses {
                    writes.push(StateWrite::Use {
                        decision_id: id.clone(),
                        bucket: bucket(*rule, *key),
                        time,
                        amount: Decimal::new(i64::from(*units), *scale),
                    });
                }
                if let Some((session, action)) = call {
                    writes.push(StateWrite::Call {
                        session: format!("s{session}"),
                        call: SessionCall {
                            decision_id: id.clone(),
                            action: format!("a{action}"),
                            time,
                            effect: Effect::Allow,
                            input: json!({"n": n, "amount": 0.1, "name": "x\u{e9}"}),
                            output: None,
                        },
                    });
                }
                if let Some((session, label)) = label {
                    writes.push(StateWrite::Label {
                        session: format!("s{session}"),
                        decision_id: id.clone(),
                        label: format!("l{label}"),
                        time,
                    });
                }
                self.decisions.push(id.clone());
                answer(
                    store.append_with_state(entry(n, &id, "before", time), writes).await,
                    |r| Answer::Record(Some(r)),
                )
            }
            Op::Outcome { pick, session, value } => {
                let Some(id) = (!self.decisions.is_empty()).then(|| &self.decisions[pick % self.decisions.len()])
                else {
                    return Answer::Created;
                };
                let writes = vec![StateWrite::Output {
                    session: format!("s{session}"),
                    decision_id: id.clone(),
                    output: json!({"value": value}),
                }];
                answer(
                    store
                        .append_once_with_state(entry(n, id, "after", at(7_200)), writes)
                        .await,
                    Answer::Record,
                )
            }
            Op::Plain { at: secs, once } => {
                // Every other one an activation record (found by its index).
                let phase = if secs % 2 == 0 { "activate" } else { "after" };
                let e = entry(n, &format!("p{n:04}"), phase, at(*secs));
                if *once {
                    let first = store.append_once(e.clone()).await;
                    let second = store.append_once(e).await;
                    assert!(matches!(second, Ok(None)), "{second:?}");
                    answer(first, Answer::Record)
                } else {
                    answer(store.append(e).await, |r| Answer::Record(Some(r)))
                }
            }
            Op::CreateApproval {
                id,
                expires_min,
                hold,
                by,
                via,
                chain,
                sealed,
            } => {
                let a = ApprovalRecord {
                    id: format!("ap{id}"),
                    request_hash: format!("hash{}", id % 2),
                    decision_id: format!("d-ap{id}"),
                    rules: vec!["big".into(), "odd \"one\"".into()],
                    role: "finance".into(),
                    roles: vec!["finance".into()],
                    action: "refund".into(),
                    requested_by: Some(person(*by)),
                    requested_via: via.map(person),
                    requested_chain: chain.iter().copied().map(person).collect(),
                    summary: json!({"amount": 5000, "note": "ü"}),
                    // Ties of creation time: ordered by insertion, as in SQLite.
                    created_at: minutes(u32::from(*id % 2)),
                    expires_at: minutes(*expires_min),
                    hold_seconds: hold.map(u64::from),
                    sealed: sealed.then(|| "xchacha20poly1305:00".into()),
                    state: ApprovalState::Pending,
                    decided_by: None,
                    decided_at: None,
                    comment: None,
                };
                answer(store.create_approval(a).await, |()| Answer::Created)
            }
            Op::DecideApproval {
                id,
                grant,
                approver,
                at_min,
            } => answer(
                store
                    .decide_approval(
                        &format!("ap{id}"),
                        *grant,
                        &person(*approver),
                        Some("why"),
                        &minutes(*at_min),
                    )
                    .await,
                Answer::Approval,
            ),
            Op::UseApproval { id, hash, at_min } => answer(
                store
                    .use_approval(&format!("ap{id}"), &format!("hash{hash}"), &minutes(*at_min))
                    .await,
                Answer::Approval,
            ),
            Op::Prune { window, idle } => answer(store.prune_state(at(*window), at(*idle)).await, Answer::Count),
            Op::Reset { rule, bucket: b } => answer(
                store
                    .reset_limits(rule.map(|r| format!("rule{r}")), b.map(|(r, k)| bucket(r, k).id()))
                    .await,
                Answer::Count,
            ),
        }
    }
}

/// Everything a caller can observe of a store, but its file sizes.
async fn observe(store: &dyn Store, window: u32, idle: u32) -> impl PartialEq + std::fmt::Debug {
    let mut size = store.state_size().await.unwrap();
    size.file_bytes = 0;
    let pending = store.list_approvals(Some(ApprovalState::Pending), 100).await.unwrap();
    let open: Vec<_> = store
        .list_open_approvals(&minutes(30), 100)
        .await
        .unwrap()
        .into_iter()
        .map(|a| a.id)
        .collect();
    let mut found_ids = Vec::new();
    for via in [Some("alice"), Some("bob"), None] {
        for hash in ["hash0", "hash1"] {
            found_ids.push(
                store
                    .find_open_approval(hash, via, &minutes(30))
                    .await
                    .unwrap()
                    .map(|a| a.id),
            );
        }
    }
    // Each filter alone, some together, paging.
    let q = AuditQuery::default;
    let mut queries = vec![
        q(),
        AuditQuery {
            actor: Some("bob".into()),
            ..q()
        },
        AuditQuery {
            action: Some("refund".into()),
            ..q()
        },
        AuditQuery {
            effect: Some("block".into()),
            ..q()
        },
        AuditQuery {
            rule: Some("common".into()),
            ..q()
        },
        AuditQuery {
            session: Some("s1".into()),
            ..q()
        },
        AuditQuery {
            decision_id: Some("d0001".into()),
            ..q()
        },
        AuditQuery {
            since: Some(at(600).to_string()),
            until: Some(at(3_600).to_string()),
            ..q()
        },
        AuditQuery {
            after_seq: Some(5),
            limit: Some(7),
            ..q()
        },
        AuditQuery {
            actor: Some("carol".into()),
            effect: Some("require_approval".into()),
            after_seq: Some(2),
            ..q()
        },
    ];
    let mut found_records = Vec::new();
    for query in queries.drain(..) {
        found_records.push(store.query_audit(&query).await.unwrap());
    }
    let mut by_client = Vec::new();
    for client in ["alice", "bob", "carol"] {
        for state in [None, Some(ApprovalState::Granted), Some(ApprovalState::Used)] {
            by_client.push(store.list_client_approvals(client, state, 100).await.unwrap());
        }
    }
    (
        found_records,
        store.activations().await.unwrap(),
        by_client,
        store.audit_len().await.unwrap(),
        store.verify_audit().await.unwrap(),
        store.load_state(at(0), at(0)).await.unwrap(),
        store.load_state(at(window), at(idle)).await.unwrap(),
        store.list_approvals(None, 100).await.unwrap(),
        pending,
        open,
        found_ids,
        size,
    )
}

async fn run(ops: Vec<Op>, window: u32, idle: u32) {
    let sqlite = TestStore::sqlite().await;
    let Some(postgres) = TestStore::postgres("differential::same_answers_on_both_backends").await else {
        return;
    };
    let (mut on_sqlite, mut on_postgres) = (Run::default(), Run::default());
    for (n, op) in ops.iter().enumerate() {
        let a = on_sqlite.apply(&*sqlite, op, n).await;
        let b = on_postgres.apply(&*postgres, op, n).await;
        assert_eq!(a, b, "operation {n}: {op:?}");
    }
    let a = observe(&*sqlite, window, idle).await;
    let b = observe(&*postgres, window, idle).await;
    assert_eq!(a, b);
    assert!(matches!(
        postgres.verify_audit().await.unwrap(),
        Verification::Intact { .. }
    ));
}

proptest! {
    // Each case makes a PostgreSQL database.
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn same_answers_on_both_backends(
        ops in prop::collection::vec(op_strategy(), 1..60),
        window in 0u32..7_200,
        idle in 0u32..7_200,
    ) {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        rt.block_on(run(ops, window, idle));
    }
}

/// A fixed sequence touching every kind of operation, as a quick check
/// before the random ones.
#[test]
fn a_fixed_sequence_on_both_backends() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let ops = vec![
        Op::Decide {
            uses: vec![(0, 0, 1, 1), (0, 0, 20, 2), (1, 1, 999, 3)],
            call: Some((0, 0)),
            label: Some((0, 0)),
            at: 5,
        },
        Op::Outcome {
            pick: 0,
            session: 0,
            value: 7,
        },
        Op::Outcome {
            pick: 0,
            session: 0,
            value: 8,
        },
        Op::Plain { at: 6, once: true },
        Op::CreateApproval {
            id: 1,
            expires_min: 60,
            hold: Some(600),
            by: 0,
            via: Some(1),
            chain: vec![2],
            sealed: true,
        },
        Op::DecideApproval {
            id: 1,
            grant: true,
            approver: 2,
            at_min: 10,
        },
        Op::DecideApproval {
            id: 1,
            grant: true,
            approver: 3,
            at_min: 10,
        },
        Op::UseApproval {
            id: 1,
            hash: 1,
            at_min: 12,
        },
        Op::UseApproval {
            id: 1,
            hash: 1,
            at_min: 13,
        },
        Op::Reset {
            rule: Some(0),
            bucket: None,
        },
        Op::Prune { window: 3, idle: 3 },
    ];
    rt.block_on(run(ops, 0, 0));
}
