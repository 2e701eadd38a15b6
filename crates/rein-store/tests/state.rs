//! The state of stateful rules against every backend (a real SQLite file,
//! a real PostgreSQL database; see `common::differential!`): round trip,
//! the record and its state in one transaction (failures, duplicates,
//! `kill -9`), prune, reset, and a property test of random writes in
//! random batches; and for SQLite alone: migration, the state lock,
//! read-only stores.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[macro_use]
mod common;

differential!(
    state_round_trips,
    times_finer_than_a_microsecond_round_up,
    load_keeps_the_window_and_active_sessions,
    an_output_fills_in_its_own_sessions_call,
    a_negative_use_is_refused_with_its_record,
    writes_of_another_decision_are_refused,
    a_failed_batch_writes_no_state_and_no_record,
    a_duplicate_outcome_writes_no_state,
    prune_drops_old_uses_and_calls_and_idle_sessions,
    reset_removes_a_rules_or_a_buckets_uses,
);

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{open_temp, TestStore};
use jiff::{SignedDuration, Timestamp};
use rein_engine::state::{BucketKey, Decimal, SessionCall, StateWrite};
use rein_engine::Effect;
use rein_store::{
    ApprovalError, ApprovalRecord, ApprovalState, AuditEntry, AuditQuery, AuditRecord, SqliteStore, StateLock, Store,
    StoreError, StoredStateSize, Verification,
};
use serde_json::json;

fn t(s: &str) -> Timestamp {
    s.parse().unwrap()
}

/// The start of time, for loads that keep everything.
fn dawn() -> Timestamp {
    t("2000-01-01T00:00:00Z")
}

fn entry(decision_id: &str, phase: &str) -> AuditEntry {
    let mut e = common::entry(1);
    e.decision_id = decision_id.into();
    e.phase = phase.into();
    e
}

fn bucket(rule: &str, actor: &str) -> BucketKey {
    BucketKey {
        rule: rule.into(),
        per: vec![("actor.id".into(), serde_json::to_string(actor).unwrap())],
    }
}

fn use_of(decision_id: &str, bucket: BucketKey, time: &str, amount: &str) -> StateWrite {
    StateWrite::Use {
        decision_id: decision_id.into(),
        bucket,
        time: t(time),
        amount: Decimal::from_str(amount).unwrap(),
    }
}

fn call(session: &str, decision_id: &str, action: &str, time: &str, effect: Effect) -> StateWrite {
    StateWrite::Call {
        session: session.into(),
        call: SessionCall {
            decision_id: decision_id.into(),
            action: action.into(),
            time: t(time),
            effect,
            input: json!({"order_id": decision_id, "amount": 12.5, "card": "blake3:00ff"}),
            output: None,
        },
    }
}

fn output(session: &str, decision_id: &str, value: serde_json::Value) -> StateWrite {
    StateWrite::Output {
        session: session.into(),
        decision_id: decision_id.into(),
        output: value,
    }
}

fn label(session: &str, decision_id: &str, label: &str, time: &str) -> StateWrite {
    StateWrite::Label {
        session: session.into(),
        decision_id: decision_id.into(),
        label: label.into(),
        time: t(time),
    }
}

/// The time a write is ordered by (an output: none; it follows its call).
fn time_of(w: &StateWrite) -> Option<Timestamp> {
    match w {
        StateWrite::Use { time, .. } | StateWrite::Label { time, .. } => Some(*time),
        StateWrite::Call { call, .. } => Some(call.time),
        StateWrite::Output { .. } => None,
    }
}

/// Loaded writes are in time order, and each output right after its call.
fn assert_time_order(writes: &[StateWrite]) {
    let mut last = None;
    for (i, w) in writes.iter().enumerate() {
        match (w, i.checked_sub(1).map(|j| &writes[j])) {
            (
                StateWrite::Output {
                    session, decision_id, ..
                },
                Some(StateWrite::Call { session: s, call }),
            ) => assert!(s == session && call.decision_id == *decision_id, "{writes:#?}"),
            (StateWrite::Output { .. }, _) => panic!("output {i} does not follow its call: {writes:#?}"),
            _ => {
                let time = time_of(w);
                assert!(last <= time, "write {i} out of time order: {writes:#?}");
                last = time;
            }
        }
    }
}

async fn state_round_trips(store: TestStore) {
    let b1 = bucket("refund_rate", "bot-1");
    let global = BucketKey {
        rule: "budget".into(),
        per: vec![],
    };
    let d1 = vec![
        use_of("d1", b1.clone(), "2026-01-01T10:00:00Z", "1"),
        use_of("d1", global.clone(), "2026-01-01T10:00:00Z", "0.1"),
        call("s1", "d1", "refund", "2026-01-01T10:00:00Z", Effect::Allow),
        label("s1", "d1", "touched_refunds", "2026-01-01T10:00:00Z"),
    ];
    let d2 = vec![
        use_of("d2", global.clone(), "2026-01-01T10:00:01.000002Z", "0.20"),
        call("s1", "d2", "refund", "2026-01-01T10:00:01.000002Z", Effect::Block),
        call(
            "s2",
            "d2",
            "read_secret",
            "2026-01-01T10:00:01.5Z",
            Effect::RequireApproval,
        ),
    ];
    store
        .append_with_state(entry("d1", "before"), d1.clone())
        .await
        .unwrap();
    store
        .append_with_state(entry("d2", "before"), d2.clone())
        .await
        .unwrap();
    // The outcome of d1 fills in its call's output.
    let out = vec![output("s1", "d1", json!({"refunded": true, "id": "r-1"}))];
    let after = store
        .append_once_with_state(entry("d1", "after"), out.clone())
        .await
        .unwrap();
    assert!(after.is_some());

    let loaded = store.load_state(dawn(), dawn()).await.unwrap();
    let expected = vec![
        d1[0].clone(),
        d1[1].clone(),
        d1[2].clone(),
        out[0].clone(),
        d1[3].clone(),
        d2[0].clone(),
        d2[1].clone(),
        d2[2].clone(),
    ];
    assert_eq!(loaded, expected);
    assert_time_order(&loaded);
    // Sums are exact decimals: 0.1 + 0.20 is 0.3, not 0.30000000000000004.
    let sum: Decimal = loaded
        .iter()
        .filter_map(|w| match w {
            StateWrite::Use { bucket, amount, .. } if *bucket == global => Some(*amount),
            _ => None,
        })
        .sum();
    assert_eq!(sum, Decimal::from_str("0.3").unwrap());

    assert_eq!(
        store.state_size().await.unwrap(),
        StoredStateSize {
            buckets: 2,
            limit_uses: 3,
            sessions: 2,
            session_calls: 3,
            session_labels: 1,
            file_bytes: store.state_size().await.unwrap().file_bytes,
        }
    );
    assert!(store.state_size().await.unwrap().file_bytes > 0);
    assert_eq!(store.verify_audit().await.unwrap(), Verification::Intact { records: 3 });
}

/// A time finer than a microsecond is kept rounded up: a use stays in its
/// window a fraction longer, never shorter.
async fn times_finer_than_a_microsecond_round_up(store: TestStore) {
    let fine = t("2026-01-01T10:00:00.000000001Z");
    let w = StateWrite::Use {
        decision_id: "d1".into(),
        bucket: bucket("r", "a"),
        time: fine,
        amount: Decimal::ONE,
    };
    store.append_with_state(entry("d1", "before"), vec![w]).await.unwrap();
    let loaded = store.load_state(fine, fine).await.unwrap();
    match loaded.as_slice() {
        [StateWrite::Use { time, .. }] => assert_eq!(*time, t("2026-01-01T10:00:00.000001Z")),
        other => panic!("{other:?}"),
    }
}

/// What a load leaves out: uses and calls before the window; sessions idle
/// since before `idle_start`, with their labels. An active session's
/// labels are all kept, however old.
async fn load_keeps_the_window_and_active_sessions(store: TestStore) {
    let b = bucket("r", "a");
    let writes = vec![
        // Before the window.
        use_of("old", b.clone(), "2026-01-01T08:59:59.999999Z", "1"),
        call("active", "old", "x", "2026-01-01T08:59:59.999999Z", Effect::Allow),
        label("active", "old", "early", "2026-01-01T08:00:00Z"),
        // Idle session: last written before idle_start.
        call("idle", "old", "x", "2026-01-01T09:30:00Z", Effect::Allow),
        label("idle", "old", "tainted", "2026-01-01T09:30:00Z"),
    ];
    store
        .append_with_state(entry("old", "before"), writes.clone())
        .await
        .unwrap();
    let recent = vec![
        // Exactly at the window's start: kept.
        use_of("new", b.clone(), "2026-01-01T09:00:00Z", "1"),
        call("active", "new", "x", "2026-01-01T10:00:00Z", Effect::Allow),
    ];
    store
        .append_with_state(entry("new", "before"), recent.clone())
        .await
        .unwrap();
    let loaded = store
        .load_state(t("2026-01-01T09:00:00Z"), t("2026-01-01T09:45:00Z"))
        .await
        .unwrap();
    assert_eq!(loaded, vec![writes[2].clone(), recent[0].clone(), recent[1].clone()]);
}

/// An outcome fills in a call of its own session only, and a later
/// outcome replaces an earlier one.
async fn an_output_fills_in_its_own_sessions_call(store: TestStore) {
    store
        .append_with_state(
            entry("d1", "before"),
            vec![call("s1", "d1", "x", "2026-01-01T10:00:00Z", Effect::Allow)],
        )
        .await
        .unwrap();
    // Another session naming d1 changes nothing.
    store
        .append_with_state(entry("d1", "after"), vec![output("s2", "d1", json!("forged"))])
        .await
        .unwrap();
    let loaded = store.load_state(dawn(), dawn()).await.unwrap();
    assert_eq!(loaded.len(), 1, "{loaded:?}");
    store
        .append_with_state(entry("d1", "after"), vec![output("s1", "d1", json!(1))])
        .await
        .unwrap();
    store
        .append_with_state(entry("d1", "after"), vec![output("s1", "d1", json!(2))])
        .await
        .unwrap();
    let loaded = store.load_state(dawn(), dawn()).await.unwrap();
    assert_eq!(loaded[1], output("s1", "d1", json!(2)));
    // A call and its output in one append: the output fills in the call
    // inserted just before it in the same transaction.
    store
        .append_with_state(
            entry("d9", "before"),
            vec![
                call("s1", "d9", "x", "2026-01-01T10:00:05Z", Effect::Allow),
                output("s1", "d9", json!(9)),
            ],
        )
        .await
        .unwrap();
    let loaded = store.load_state(dawn(), dawn()).await.unwrap();
    assert_eq!(loaded[3], output("s1", "d9", json!(9)), "{loaded:?}");
    // An outcome for a call not kept (pruned, or never recorded) is no error.
    store
        .append_with_state(entry("gone", "after"), vec![output("s1", "gone", json!(3))])
        .await
        .unwrap();
    assert_eq!(store.load_state(dawn(), dawn()).await.unwrap().len(), 4);
}

/// A negative limit use would give units back: refused, and the record
/// with it.
async fn a_negative_use_is_refused_with_its_record(store: TestStore) {
    let e = store
        .append_with_state(
            entry("d1", "before"),
            vec![use_of("d1", bucket("r", "a"), "2026-01-01T10:00:00Z", "-1")],
        )
        .await
        .unwrap_err();
    assert!(e.0.contains("negative"), "{e}");
    assert_eq!(store.audit_len().await.unwrap(), 0);
}

/// A write of another decision than the record's is refused, with the
/// record: a state row is never kept without its own decision's record.
async fn writes_of_another_decision_are_refused(store: TestStore) {
    for w in [
        use_of("other", bucket("r", "a"), "2026-01-01T10:00:00Z", "1"),
        call("s", "other", "x", "2026-01-01T10:00:00Z", Effect::Allow),
        output("s", "other", json!(1)),
        label("s", "other", "l", "2026-01-01T10:00:00Z"),
    ] {
        let e = store
            .append_with_state(entry("d1", "before"), vec![w.clone()])
            .await
            .unwrap_err();
        assert!(e.0.contains("`other`") && e.0.contains("`d1`"), "{e}");
        let e = store
            .append_once_with_state(entry("d1", "after"), vec![w])
            .await
            .unwrap_err();
        assert!(e.0.contains("`other`"), "{e}");
    }
    assert_eq!(store.audit_len().await.unwrap(), 0);
    // The outcome of d1 was not claimed by the refused ones.
    assert!(store
        .append_once_with_state(entry("d1", "after"), vec![])
        .await
        .unwrap()
        .is_some());
}

/// A batch that fails leaves neither its records nor their state, whether
/// the failure comes from a record or from a state write; and the next
/// batch writes both.
async fn a_failed_batch_writes_no_state_and_no_record(test: TestStore) {
    let store = test.arc();
    store
        .append_with_state(
            entry("only-use-0", "before"),
            vec![use_of("only-use-0", bucket("r", "a"), "2026-01-01T10:00:00Z", "1")],
        )
        .await
        .unwrap();
    for (round, (table, condition)) in [
        // The record fails after its state was written in the transaction.
        ("audit", "NEW.decision_id LIKE '%bad'"),
        // A state write fails after other records' state was written.
        ("session_labels", "NEW.label = 'bad'"),
    ]
    .into_iter()
    .enumerate()
    {
        test.raw_exec(
            &format!(
                "CREATE TRIGGER fail BEFORE INSERT ON {table} WHEN {condition} \
                 BEGIN SELECT RAISE(ABORT, 'disk on fire'); END;"
            ),
            &format!(
                "CREATE OR REPLACE FUNCTION fail() RETURNS trigger LANGUAGE plpgsql AS $$ \
                 BEGIN IF {condition} THEN RAISE EXCEPTION 'disk on fire'; END IF; RETURN NEW; END $$; \
                 CREATE TRIGGER fail BEFORE INSERT ON {table} FOR EACH ROW EXECUTE FUNCTION fail();"
            ),
        )
        .await;
        let records_before = store.audit_len().await.unwrap();
        let tasks: Vec<_> = (0..8)
            .map(|i| {
                let store = Arc::clone(&store);
                let (id, lbl) = match i {
                    7 => (format!("r{round}-bad"), "bad"),
                    _ => (format!("r{round}-ok-{i}"), "fine"),
                };
                let writes = vec![
                    use_of(&id, bucket("r", "a"), "2026-01-01T10:00:01Z", "1"),
                    call("s", &id, "x", "2026-01-01T10:00:01Z", Effect::Allow),
                    label("s", &id, lbl, "2026-01-01T10:00:01Z"),
                ];
                tokio::spawn(async move { store.append_with_state(entry(&id, "before"), writes).await })
            })
            .collect();
        let mut failed = 0;
        for task in tasks {
            if let Err(e) = task.await.unwrap() {
                assert!(e.0.contains("not committed") && e.0.contains("disk on fire"), "{e}");
                failed += 1;
            }
        }
        assert!(failed >= 1, "the bad one failed");
        assert_eq!(store.audit_len().await.unwrap(), records_before + 8 - failed);
        test.raw_exec("DROP TRIGGER fail", &format!("DROP TRIGGER fail ON {table}"))
            .await;
        assert_state_matches_records(&test).await;
    }
    store
        .append_with_state(
            entry("only-use-1", "before"),
            vec![use_of("only-use-1", bucket("r", "a"), "2026-01-01T10:00:02Z", "1")],
        )
        .await
        .unwrap();
    assert_state_matches_records(&test).await;
    assert!(matches!(
        store.verify_audit().await.unwrap(),
        Verification::Intact { .. }
    ));
}

/// The decision ids of the audit records of `phase`, and of each state
/// table's rows, read from the database.
async fn decisions_in(store: &TestStore) -> (BTreeSet<String>, [BTreeSet<String>; 3], BTreeSet<String>) {
    let ids = |sql: &'static str| async move {
        store
            .raw_column(sql)
            .await
            .into_iter()
            .map(Option::unwrap)
            .collect::<BTreeSet<String>>()
    };
    (
        ids("SELECT decision_id FROM audit WHERE phase = 'before'").await,
        [
            ids("SELECT decision_id FROM limit_uses").await,
            ids("SELECT decision_id FROM session_calls").await,
            ids("SELECT decision_id FROM session_labels").await,
        ],
        ids("SELECT decision_id FROM session_calls WHERE output IS NOT NULL").await,
    )
}

/// Every state row has its `before` record, and every such record has
/// its use, call and label (those named `only-use-…` a use only).
async fn assert_state_matches_records(store: &TestStore) {
    let (records, tables, _) = decisions_in(store).await;
    let with_all: BTreeSet<_> = records.iter().filter(|d| !d.starts_with("only-use")).cloned().collect();
    for (table, ids) in ["limit_uses", "session_calls", "session_labels"].iter().zip(tables) {
        assert!(ids.is_subset(&records), "{table}: {ids:?} not all in {records:?}");
        assert!(with_all.is_subset(&ids), "{table}: {with_all:?} not all in {ids:?}");
    }
}

/// An outcome refused as a duplicate writes none of its state.
async fn a_duplicate_outcome_writes_no_state(test: TestStore) {
    let store = test.arc();
    store
        .append_with_state(
            entry("d1", "before"),
            vec![call("s1", "d1", "x", "2026-01-01T10:00:00Z", Effect::Allow)],
        )
        .await
        .unwrap();
    let first = vec![
        output("s1", "d1", json!("first")),
        label("s1", "d1", "after-label", "2026-01-01T10:00:01Z"),
    ];
    assert!(store
        .append_once_with_state(entry("d1", "after"), first.clone())
        .await
        .unwrap()
        .is_some());
    let second = vec![
        output("s1", "d1", json!("second")),
        label("s1", "d1", "second-label", "2026-01-01T10:00:02Z"),
        use_of("d1", bucket("r", "a"), "2026-01-01T10:00:02Z", "1"),
    ];
    assert!(store
        .append_once_with_state(entry("d1", "after"), second)
        .await
        .unwrap()
        .is_none());
    let loaded = store.load_state(dawn(), dawn()).await.unwrap();
    assert_eq!(loaded[1..], first[..]);
    assert_eq!(test.raw_count("limit_uses").await, 0);
    assert_eq!(test.raw_count("session_labels").await, 1);
    // Concurrent duplicates: exactly one writes its state.
    let tasks: Vec<_> = (0..16)
        .map(|i| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                store
                    .append_once_with_state(
                        entry("d2", "after"),
                        vec![label("s1", "d2", &format!("l{i}"), "2026-01-01T10:00:03Z")],
                    )
                    .await
                    .unwrap()
                    .is_some()
            })
        })
        .collect();
    let mut kept = 0;
    for task in tasks {
        kept += usize::from(task.await.unwrap());
    }
    assert_eq!(kept, 1);
    assert_eq!(test.raw_count("session_labels").await, 2);
}

/// The environment variables that make `kill_9_leaves_no_state_without_its_record_*`
/// the child that appends until it is killed, on a SQLite file or a
/// PostgreSQL database.
const CHILD_DB: &str = "REIN_STATE_TEST_CHILD_DB";
const CHILD_PG: &str = "REIN_STATE_TEST_CHILD_PG";
const CHILD_LOCK: &str = "REIN_STATE_TEST_CHILD_LOCK";

/// Child: appends decisions with state from 16 tasks (group commit), an
/// outcome with an output for every third, and prints each acknowledged
/// decision id; stops by itself after 30 s if nobody kills it.
async fn child_appends(store: Arc<dyn Store>) {
    let deadline = Instant::now() + Duration::from_secs(30);
    let tasks: Vec<_> = (0..16u64)
        .map(|task| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                let mut i = 0u64;
                while Instant::now() < deadline {
                    let id = format!("k{task}-{i}");
                    let session = format!("s{}", i % 5);
                    let time = Timestamp::now().round(jiff::Unit::Microsecond).unwrap().to_string();
                    let writes = vec![
                        use_of(&id, bucket("rate", &format!("a{task}")), &time, "1.5"),
                        call(&session, &id, "x", &time, Effect::Allow),
                        label(&session, &id, &format!("l{i}"), &time),
                    ];
                    store.append_with_state(entry(&id, "before"), writes).await.unwrap();
                    if i.is_multiple_of(3) {
                        store
                            .append_once_with_state(entry(&id, "after"), vec![output(&session, &id, json!(i))])
                            .await
                            .unwrap();
                    }
                    let mut out = std::io::stdout().lock();
                    writeln!(out, "acked {id} {}", i.is_multiple_of(3)).unwrap();
                    out.flush().unwrap();
                    i += 1;
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_leaves_no_state_without_its_record_sqlite() {
    if let Ok(db) = std::env::var(CHILD_DB) {
        child_appends(Arc::new(SqliteStore::open(db).unwrap())).await;
        return;
    }
    kill_9_leaves_no_state_without_its_record(
        TestStore::sqlite().await,
        "kill_9_leaves_no_state_without_its_record_sqlite",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_leaves_no_state_without_its_record_postgres() {
    if let Ok(url) = std::env::var(CHILD_PG) {
        child_appends(Arc::new(common::open_postgres(&url).await)).await;
        return;
    }
    let test = "kill_9_leaves_no_state_without_its_record_postgres";
    if let Some(store) = TestStore::postgres(test).await {
        kill_9_leaves_no_state_without_its_record(store, test).await;
    }
}

/// A process killed with SIGKILL while appending decisions with state
/// leaves every record with its state and no state without its record;
/// every acknowledged decision is there with its state. (`test` is the
/// test that runs this, run again as the child.)
async fn kill_9_leaves_no_state_without_its_record(mut store: TestStore, test: &str) {
    let (var, db) = match (store.sqlite_path(), store.pg_url()) {
        (Some(path), _) => (CHILD_DB, path.display().to_string()),
        (None, Some(url)) => (CHILD_PG, url.to_owned()),
        (None, None) => unreachable!(),
    };
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", test, "--nocapture", "--test-threads=1"])
        .env(var, &db)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    // Read acknowledgements on a thread until 300 arrived, then kill.
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut acked = Vec::new();
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            // The harness may have started the line ("test … ... ").
            if let Some(rest) = line.find("acked ").map(|at| &line[at + "acked ".len()..]) {
                let (id, with_output) = rest.split_once(' ').unwrap();
                acked.push((id.to_owned(), with_output == "true"));
                if acked.len() == 300 {
                    let _ = tx.send(());
                }
            }
        }
        acked
    });
    rx.recv_timeout(Duration::from_secs(60))
        .expect("the child acknowledged 300 decisions");
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let acked = reader.join().unwrap();
    assert!(acked.len() >= 300);

    store.reopen().await;
    assert!(matches!(
        store.verify_audit().await.unwrap(),
        Verification::Intact { .. }
    ));
    let (records, [uses, calls, labels], with_output) = decisions_in(&store).await;
    assert_eq!(uses, records, "every use has its record and every record its use");
    assert_eq!(calls, records);
    assert_eq!(labels, records);
    let after: BTreeSet<String> = store
        .raw_column("SELECT decision_id FROM audit WHERE phase = 'after'")
        .await
        .into_iter()
        .map(Option::unwrap)
        .collect();
    assert_eq!(with_output, after, "an output is there iff its outcome's record is");
    for (id, with_out) in &acked {
        assert!(records.contains(id), "acknowledged {id} lost");
        if *with_out {
            assert!(with_output.contains(id), "acknowledged outcome of {id} lost");
        }
    }
    // And what the store loads back is consistent with the rows.
    let loaded = store.load_state(dawn(), dawn()).await.unwrap();
    let loaded_uses = loaded.iter().filter(|w| matches!(w, StateWrite::Use { .. })).count();
    assert_eq!(loaded_uses, records.len());
    assert_time_order(&loaded);
}

/// A reset of limits on one replica makes every other replica's next
/// state lease reload the state whole (a lease's delta replays additions
/// only); a reset that removes nothing does not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reset_makes_other_replicas_reload_postgres() {
    let Some(a) = TestStore::postgres("a_reset_makes_other_replicas_reload_postgres").await else {
        return;
    };
    let b = common::open_postgres(a.pg_url().unwrap()).await;
    let lease = a.acquire_state_lease(0).await.unwrap();
    assert!(!lease.reload);
    a.append_leased(
        entry("d1", "before"),
        vec![use_of("d1", bucket("r", "x"), "2026-01-01T10:00:00Z", "1")],
        false,
        lease.generation,
    )
    .await
    .unwrap()
    .unwrap();
    a.release_state_lease(lease.generation).await.unwrap();

    assert_eq!(b.reset_limits(Some("other".into()), None).await.unwrap(), 0);
    let lease = a.acquire_state_lease(1).await.unwrap();
    assert!(!lease.reload, "nothing was reset");
    a.release_state_lease(lease.generation).await.unwrap();

    assert_eq!(b.reset_limits(Some("r".into()), None).await.unwrap(), 1);
    let lease = a.acquire_state_lease(1).await.unwrap();
    assert!(lease.reload, "reset on another replica");
    assert!(lease.writes.is_empty());
    a.release_state_lease(lease.generation).await.unwrap();
    assert!(a.load_state(dawn(), dawn()).await.unwrap().is_empty());
    let lease = a.acquire_state_lease(1).await.unwrap();
    assert!(!lease.reload, "reloaded once");
    a.release_state_lease(lease.generation).await.unwrap();
}

async fn prune_drops_old_uses_and_calls_and_idle_sessions(store: TestStore) {
    let b = bucket("r", "a");
    store
        .append_with_state(
            entry("d1", "before"),
            vec![
                use_of("d1", b.clone(), "2026-01-01T08:00:00Z", "1"),
                call("active", "d1", "x", "2026-01-01T08:00:00Z", Effect::Allow),
                label("active", "d1", "early", "2026-01-01T08:00:00Z"),
                call("idle", "d1", "x", "2026-01-01T09:30:00Z", Effect::Allow),
                label("idle", "d1", "tainted", "2026-01-01T09:30:00Z"),
            ],
        )
        .await
        .unwrap();
    store
        .append_with_state(
            entry("d2", "before"),
            vec![
                use_of("d2", b.clone(), "2026-01-01T09:00:00Z", "1"),
                call("active", "d2", "x", "2026-01-01T10:00:00Z", Effect::Allow),
            ],
        )
        .await
        .unwrap();
    let (window, idle) = (t("2026-01-01T09:00:00Z"), t("2026-01-01T09:45:00Z"));
    let before = store.load_state(window, idle).await.unwrap();
    // Removed: d1's use, active's old call, idle's call, label and row.
    assert_eq!(store.prune_state(window, idle).await.unwrap(), 5);
    assert_eq!(store.prune_state(window, idle).await.unwrap(), 0);
    // Pruning removes only what a load leaves out.
    assert_eq!(store.load_state(window, idle).await.unwrap(), before);
    assert_eq!(store.load_state(dawn(), dawn()).await.unwrap(), before);
    assert_eq!(store.raw_count("sessions").await, 1);
    assert_eq!(store.raw_count("session_labels").await, 1);
    // The audit log is untouched.
    assert_eq!(store.verify_audit().await.unwrap(), Verification::Intact { records: 2 });
}

async fn reset_removes_a_rules_or_a_buckets_uses(store: TestStore) {
    let time = "2026-01-01T10:00:00Z";
    let writes = vec![
        use_of("d1", bucket("refund", "a"), time, "1"),
        use_of("d1", bucket("refund", "b"), time, "1"),
        use_of("d1", bucket("refund", "b"), time, "1"),
        use_of("d1", bucket("refund_rate", "a"), time, "1"),
        use_of("d1", bucket("spend", "a"), time, "1"),
        use_of("d1", bucket("spend", "b"), time, "1"),
    ];
    store.append_with_state(entry("d1", "before"), writes).await.unwrap();
    let b_id = bucket("refund", "b").id();
    // A bucket of another rule than the one named: nothing.
    assert_eq!(
        store
            .reset_limits(Some("spend".into()), Some(b_id.clone()))
            .await
            .unwrap(),
        0
    );
    assert_eq!(store.reset_limits(None, Some(b_id.clone())).await.unwrap(), 2);
    assert_eq!(store.reset_limits(None, Some(b_id)).await.unwrap(), 0);
    // A rule's buckets, not those of a rule whose name it starts.
    assert_eq!(store.reset_limits(Some("refund".into()), None).await.unwrap(), 1);
    assert_eq!(store.state_size().await.unwrap().limit_uses, 3);
    assert_eq!(
        store
            .reset_limits(Some("spend".into()), Some(bucket("spend", "a").id()))
            .await
            .unwrap(),
        1
    );
    assert_eq!(store.reset_limits(None, None).await.unwrap(), 2);
    assert_eq!(store.state_size().await.unwrap().limit_uses, 0);
    let e = store
        .reset_limits(None, Some("actor.id=bot-1".into()))
        .await
        .unwrap_err();
    assert!(e.0.contains("not a bucket id"), "{e}");
}

/// A version 4 store opens as the current version (5 added the state
/// tables), its records intact, and keeps state from then on.
#[tokio::test]
async fn a_version_4_file_is_migrated() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rein.db");
    {
        let store = SqliteStore::open(&path).unwrap();
        for i in 1..=3 {
            store.append(common::entry(i)).await.unwrap();
        }
        store.close().await.unwrap();
    }
    // Version 5 only adds tables: without them, the file is a version 4 one.
    let raw = rusqlite::Connection::open(&path).unwrap();
    raw.execute_batch(
        "DROP TABLE limit_uses; DROP TABLE session_calls; DROP TABLE session_labels; DROP TABLE sessions; \
         PRAGMA user_version = 4;",
    )
    .unwrap();
    drop(raw);
    let e = SqliteStore::open_read_only(&path).unwrap_err();
    assert!(e.0.contains("schema version is 4"), "{e}");

    let store = SqliteStore::open(&path).unwrap();
    assert_eq!(store.verify_audit().await.unwrap(), Verification::Intact { records: 3 });
    let raw = rusqlite::Connection::open(&path).unwrap();
    let version: i64 = raw.query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap();
    assert_eq!(version, 8);
    let writes = vec![
        use_of("d1", bucket("r", "a"), "2026-01-01T10:00:00Z", "2"),
        call("s", "d1", "x", "2026-01-01T10:00:00Z", Effect::Allow),
    ];
    store
        .append_with_state(entry("d1", "before"), writes.clone())
        .await
        .unwrap();
    assert_eq!(store.load_state(dawn(), dawn()).await.unwrap(), writes);
    assert_eq!(store.verify_audit().await.unwrap(), Verification::Intact { records: 4 });
}

/// `rein limits list --db` reads the state of a store it does not write.
#[tokio::test]
async fn read_only_stores_load_state() {
    let (dir, store) = open_temp();
    let writes = vec![
        use_of("d1", bucket("r", "a"), "2026-01-01T10:00:00Z", "2"),
        call("s", "d1", "x", "2026-01-01T10:00:00Z", Effect::Allow),
        label("s", "d1", "l", "2026-01-01T10:00:00Z"),
    ];
    store
        .append_with_state(entry("d1", "before"), writes.clone())
        .await
        .unwrap();
    let path = dir.path().join("rein.db");
    // While the writer still has it open, and after it closed.
    for _ in 0..2 {
        let reader = SqliteStore::open_read_only(&path).unwrap();
        assert_eq!(reader.load_state(dawn(), dawn()).await.unwrap(), writes);
        let size = reader.state_size().await.unwrap();
        assert_eq!(
            (size.limit_uses, size.session_calls, size.session_labels, size.sessions),
            (1, 1, 1, 1)
        );
        assert!(size.file_bytes > 0);
        let e = reader.prune_state(dawn(), dawn()).await.unwrap_err();
        assert!(e.0.contains("closed"), "{e}");
        let e = reader.reset_limits(None, None).await.unwrap_err();
        assert!(e.0.contains("closed"), "{e}");
        let e = reader
            .append_with_state(entry("d1", "before"), writes.clone())
            .await
            .unwrap_err();
        assert!(e.0.contains("closed"), "{e}");
        store.close().await.unwrap();
    }
}

/// A store that implements only what the trait requires: the defaults
/// pass an append without state through and refuse state.
struct Stateless(SqliteStore);

#[async_trait::async_trait]
impl Store for Stateless {
    async fn append(&self, entry: AuditEntry) -> Result<AuditRecord, StoreError> {
        self.0.append(entry).await
    }
    async fn append_once(&self, entry: AuditEntry) -> Result<Option<AuditRecord>, StoreError> {
        self.0.append_once(entry).await
    }
    async fn bind_key_fingerprint(&self, fingerprint: &str) -> Result<String, StoreError> {
        self.0.bind_key_fingerprint(fingerprint).await
    }
    async fn key_fingerprint(&self) -> Result<Option<String>, StoreError> {
        self.0.key_fingerprint().await
    }
    async fn probe_write(&self) -> Result<(), StoreError> {
        self.0.probe_write().await
    }
    async fn find_open_approval(
        &self,
        request_hash: &str,
        client: Option<&str>,
        now: &str,
    ) -> Result<Option<ApprovalRecord>, StoreError> {
        self.0.find_open_approval(request_hash, client, now).await
    }
    async fn list_client_approvals(
        &self,
        client: &str,
        state: Option<ApprovalState>,
        limit: u64,
    ) -> Result<Vec<ApprovalRecord>, StoreError> {
        self.0.list_client_approvals(client, state, limit).await
    }
    async fn query_audit(&self, query: &AuditQuery) -> Result<Vec<AuditRecord>, StoreError> {
        self.0.query_audit(query).await
    }
    async fn verify_audit(&self) -> Result<Verification, StoreError> {
        self.0.verify_audit().await
    }
    async fn audit_len(&self) -> Result<u64, StoreError> {
        self.0.audit_len().await
    }
    async fn create_approval(&self, approval: ApprovalRecord) -> Result<(), StoreError> {
        self.0.create_approval(approval).await
    }
    async fn get_approval(&self, id: &str) -> Result<Option<ApprovalRecord>, StoreError> {
        self.0.get_approval(id).await
    }
    async fn list_approvals(
        &self,
        state: Option<ApprovalState>,
        limit: u64,
    ) -> Result<Vec<ApprovalRecord>, StoreError> {
        self.0.list_approvals(state, limit).await
    }
    async fn decide_approval(
        &self,
        id: &str,
        grant: bool,
        approver: &str,
        comment: Option<&str>,
        now: &str,
    ) -> Result<Result<ApprovalRecord, ApprovalError>, StoreError> {
        self.0.decide_approval(id, grant, approver, comment, now).await
    }
    async fn use_approval(
        &self,
        id: &str,
        request_hash: &str,
        now: &str,
    ) -> Result<Result<ApprovalRecord, ApprovalError>, StoreError> {
        self.0.use_approval(id, request_hash, now).await
    }
}

#[tokio::test]
async fn a_store_without_state_refuses_state() {
    let (_dir, inner) = open_temp();
    let store = Stateless(inner);
    store.append_with_state(entry("d1", "before"), vec![]).await.unwrap();
    assert!(store
        .append_once_with_state(entry("d1", "after"), vec![])
        .await
        .unwrap()
        .is_some());
    assert!(store
        .append_once_with_state(entry("d1", "after"), vec![])
        .await
        .unwrap()
        .is_none());
    let writes = vec![use_of("d2", bucket("r", "a"), "2026-01-01T10:00:00Z", "1")];
    for e in [
        store
            .append_with_state(entry("d2", "before"), writes.clone())
            .await
            .unwrap_err(),
        store
            .append_once_with_state(entry("d2", "after"), writes)
            .await
            .unwrap_err(),
        store.load_state(dawn(), dawn()).await.unwrap_err(),
        store.prune_state(dawn(), dawn()).await.unwrap_err(),
        store.reset_limits(None, None).await.unwrap_err(),
        store.state_size().await.unwrap_err(),
    ] {
        assert!(e.0.contains("keeps no state"), "{e}");
    }
    assert_eq!(store.audit_len().await.unwrap(), 2, "nothing refused was appended");
}

/// Child for `the_state_lock_is_exclusive_across_processes`: takes the
/// lock, says so, and holds it until killed (or 30 s).
fn child_holds_lock(db: &str) {
    let _lock = StateLock::acquire(Path::new(db), Duration::from_secs(5)).unwrap();
    // Written to the process's stdout, not through the test harness's capture.
    let mut out = std::io::stdout().lock();
    writeln!(out, "locked").unwrap();
    out.flush().unwrap();
    drop(out);
    std::thread::sleep(Duration::from_secs(30));
}

#[test]
fn the_state_lock_is_exclusive_across_processes() {
    if let Ok(db) = std::env::var(CHILD_LOCK) {
        child_holds_lock(&db);
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("rein.db");
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "the_state_lock_is_exclusive_across_processes",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_LOCK, &db)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    loop {
        let line = lines.next().expect("the child locked").unwrap();
        // The harness may have started the line ("test … ... ").
        if line.ends_with("locked") {
            break;
        }
    }
    let start = Instant::now();
    let e = StateLock::acquire(&db, Duration::from_millis(200)).unwrap_err();
    assert!(start.elapsed() >= Duration::from_millis(200), "it waited");
    let lock_file = dir.path().join("rein.db.lock");
    assert!(
        e.0.contains(&lock_file.display().to_string()) && e.0.contains("another Rein process"),
        "{e}"
    );
    // Killed, the holder releases it.
    child.kill().unwrap();
    child.wait().unwrap();
    let lock = StateLock::acquire(&db, Duration::from_secs(5)).unwrap();
    assert_eq!(lock.path(), lock_file);
}

#[test]
fn the_state_lock_is_exclusive_between_handles_and_waits() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("rein.db");
    let first = StateLock::acquire(&db, Duration::ZERO).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(first.path()).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let e = StateLock::acquire(&db, Duration::ZERO).unwrap_err();
    assert!(e.0.contains("another Rein process"), "{e}");
    // Released by another thread while this one waits.
    let releaser = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(150));
        drop(first);
    });
    let start = Instant::now();
    let second = StateLock::acquire(&db, Duration::from_secs(10)).unwrap();
    assert!(start.elapsed() >= Duration::from_millis(100));
    releaser.join().unwrap();
    drop(second);
    StateLock::acquire(&db, Duration::ZERO).unwrap();
    // A path naming no file is refused clearly.
    assert!(StateLock::acquire(Path::new("/"), Duration::ZERO).is_err());
}

mod random {
    //! Random writes in random concurrent batches, loaded back whole and
    //! within random bounds, then pruned to those bounds.

    use super::*;
    use proptest::prelude::*;

    /// One append's writes; `outputs` name calls of earlier batches by
    /// index (resolved when the test runs).
    #[derive(Clone, Debug)]
    struct Append {
        uses: Vec<(u8, u8, i64, u32, i64)>,
        call: Option<(u8, u8, u8, i64, bool)>,
        labels: Vec<(u8, u8, i64)>,
        outputs: Vec<(usize, i64)>,
    }

    fn time(offset_us: i64) -> Timestamp {
        t("2026-01-01T00:00:00Z") + SignedDuration::from_micros(offset_us)
    }

    fn append_strategy() -> impl Strategy<Value = Append> {
        let times = 0i64..86_400_000_000;
        (
            prop::collection::vec((0u8..3, 0u8..3, 0i64..1_000_000_000, 0u32..7, times.clone()), 0..3),
            prop::option::of((0u8..4, 0u8..3, 0u8..3, times.clone(), any::<bool>())),
            prop::collection::vec((0u8..4, 0u8..4, times), 0..3),
            prop::collection::vec((any::<usize>(), any::<i64>()), 0..2),
        )
            .prop_map(|(uses, call, labels, outputs)| Append {
                uses,
                call,
                labels,
                outputs,
            })
    }

    fn effect(n: u8) -> Effect {
        [Effect::Allow, Effect::Block, Effect::RequireApproval][usize::from(n)]
    }

    /// Sorted JSON texts: equal iff equal as multisets.
    fn multiset(writes: &[StateWrite]) -> Vec<String> {
        let mut texts: Vec<String> = writes.iter().map(|w| serde_json::to_string(w).unwrap()).collect();
        texts.sort();
        texts
    }

    async fn run(test: TestStore, batches: Vec<Vec<Append>>, window_start: i64, idle_start: i64) {
        let store = test.arc();
        let mut expected = Vec::new();
        // Calls written so far (session, decision) and their outputs.
        let mut calls: Vec<(String, String)> = Vec::new();
        let mut outputs: BTreeMap<(String, String), serde_json::Value> = BTreeMap::new();
        let mut n = 0usize;
        let mut records = 0u64;
        for batch in batches {
            let known = calls.len();
            let mut tasks = Vec::new();
            for a in batch {
                n += 1;
                let id = format!("d{n:05}");
                let mut writes = Vec::new();
                for (rule, key, units, scale, at) in &a.uses {
                    let w = StateWrite::Use {
                        decision_id: id.clone(),
                        bucket: bucket(&format!("rule{rule}"), &format!("k{key}")),
                        time: time(*at),
                        amount: Decimal::new(*units, *scale),
                    };
                    expected.push(w.clone());
                    writes.push(w);
                }
                if let Some((session, action, eff, at, with_output)) = a.call {
                    let session = format!("s{session}");
                    let out = with_output.then(|| json!({"n": n, "ok": true}));
                    writes.push(StateWrite::Call {
                        session: session.clone(),
                        call: SessionCall {
                            decision_id: id.clone(),
                            action: format!("a{action}"),
                            time: time(at),
                            effect: effect(eff),
                            input: json!({"n": n, "amount": 0.1, "name": "x\u{e9}"}),
                            output: out.clone(),
                        },
                    });
                    // Loaded back without its output, which follows as an
                    // `Output` (kept below).
                    let mut loaded = writes.last().cloned().unwrap();
                    if let StateWrite::Call { call, .. } = &mut loaded {
                        call.output = None;
                    }
                    expected.push(loaded);
                    if let Some(out) = out {
                        outputs.insert((session.clone(), id.clone()), out);
                    }
                    calls.push((session, id.clone()));
                }
                for (session, lbl, at) in &a.labels {
                    let w = label(&format!("s{session}"), &id, &format!("l{lbl}"), &time(*at).to_string());
                    expected.push(w.clone());
                    writes.push(w);
                }
                // Outputs of calls committed by earlier batches.
                if known > 0 {
                    for (pick, value) in &a.outputs {
                        let (session, decision) = calls[pick % known].clone();
                        let key = (session.clone(), decision.clone());
                        // One outcome per call, as `append_once` makes it.
                        if outputs.contains_key(&key) {
                            continue;
                        }
                        let value = json!(value);
                        outputs.insert(key, value.clone());
                        // With the record of its outcome, in the same batch.
                        let store = Arc::clone(&store);
                        let w = vec![output(&session, &decision, value)];
                        let e = entry(&decision, "after");
                        tasks.push(tokio::spawn(async move { store.append_with_state(e, w).await }));
                        records += 1;
                    }
                }
                let store = Arc::clone(&store);
                let e = entry(&id, "before");
                records += 1;
                tasks.push(tokio::spawn(async move { store.append_with_state(e, writes).await }));
            }
            for task in tasks {
                task.await.unwrap().unwrap();
            }
        }
        for ((session, decision), value) in outputs {
            expected.push(output(&session, &decision, value));
        }
        let loaded = store.load_state(dawn(), dawn()).await.unwrap();
        assert_time_order(&loaded);
        assert_eq!(multiset(&loaded), multiset(&expected));
        assert_eq!(store.audit_len().await.unwrap(), records);

        // A load with bounds keeps what the model says; a prune with the
        // same bounds removes exactly the rest.
        let (window_start, idle_start) = (time(window_start), time(idle_start));
        let mut last_seen: BTreeMap<String, Timestamp> = BTreeMap::new();
        let mut call_times: BTreeMap<(String, String), Timestamp> = BTreeMap::new();
        for w in &expected {
            let (session, at) = match w {
                StateWrite::Call { session, call } => {
                    call_times.insert((session.clone(), call.decision_id.clone()), call.time);
                    (session, call.time)
                }
                StateWrite::Label { session, time, .. } => (session, *time),
                _ => continue,
            };
            let seen = last_seen.entry(session.clone()).or_insert(at);
            *seen = (*seen).max(at);
        }
        let active = |session: &String| last_seen.get(session).is_some_and(|seen| *seen >= idle_start);
        let kept: Vec<StateWrite> = expected
            .iter()
            .filter(|w| match w {
                StateWrite::Use { time, .. } => *time >= window_start,
                StateWrite::Call { session, call } => active(session) && call.time >= window_start,
                StateWrite::Output {
                    session, decision_id, ..
                } => {
                    active(session)
                        && call_times
                            .get(&(session.clone(), decision_id.clone()))
                            .is_some_and(|t| *t >= window_start)
                }
                StateWrite::Label { session, .. } => active(session),
            })
            .cloned()
            .collect();
        let loaded = store.load_state(window_start, idle_start).await.unwrap();
        assert_time_order(&loaded);
        assert_eq!(multiset(&loaded), multiset(&kept));
        let rows = |writes: &[StateWrite]| {
            writes
                .iter()
                .filter(|w| !matches!(w, StateWrite::Output { .. }))
                .count()
        };
        let idle_sessions = last_seen.values().filter(|seen| **seen < idle_start).count();
        let removed = store.prune_state(window_start, idle_start).await.unwrap();
        assert_eq!(removed, (rows(&expected) - rows(&kept) + idle_sessions) as u64);
        let after = store.load_state(dawn(), dawn()).await.unwrap();
        assert_eq!(multiset(&after), multiset(&kept));
        assert_eq!(
            store.state_size().await.unwrap().sessions,
            (last_seen.len() - idle_sessions) as u64
        );
    }

    fn batches_strategy() -> impl Strategy<Value = Vec<Vec<Append>>> {
        prop::collection::vec(prop::collection::vec(append_strategy(), 1..8), 1..5)
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

        #[test]
        fn random_writes_load_back_sqlite(
            batches in batches_strategy(),
            window_start in 0i64..86_400_000_000,
            idle_start in 0i64..86_400_000_000,
        ) {
            let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
            rt.block_on(async { run(TestStore::sqlite().await, batches, window_start, idle_start).await });
        }
    }

    proptest! {
        // Fewer cases: each makes a database.
        #![proptest_config(ProptestConfig { cases: 16, ..ProptestConfig::default() })]

        #[test]
        fn random_writes_load_back_postgres(
            batches in batches_strategy(),
            window_start in 0i64..86_400_000_000,
            idle_start in 0i64..86_400_000_000,
        ) {
            let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
            rt.block_on(async {
                if let Some(store) = TestStore::postgres("random_writes_load_back_postgres").await {
                    run(store, batches, window_start, idle_start).await;
                }
            });
        }
    }
}
