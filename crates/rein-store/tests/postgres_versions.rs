//! Policy versions, activation records and the state's import on
//! PostgreSQL, as SQLite keeps them.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
mod postgres_support;

use std::str::FromStr;

use postgres_support::TestDb;
use rein_engine::state::{BucketKey, Decimal, SessionCall, StateWrite};
use rein_engine::{Effect, Policy};
use rein_store::chain::format_time;
use rein_store::{Activation, ActivationCause, PolicyVersion, Store, Verification};
use serde_json::json;

const V1: &str = "version: billing-1\ncontracts:\n  actions:\n    refund:\n      input:\n        amount: int\nrules:\n  - id: small\n    action: refund\n    when: input.amount < 100\n    effect: allow\n";

fn kept(text: &str) -> PolicyVersion {
    let policy = Policy::from_sources([("policy.yaml", text)]).unwrap();
    PolicyVersion::of(&policy, format_time(jiff::Timestamp::now())).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn versions_are_kept_listed_and_read_back_checked() {
    let Some(db) = TestDb::new().await else { return };
    let store = db.open().await;
    let other = db.open().await;
    let v1 = kept(V1);
    let v2 = kept(&V1.replace("< 100", "< 500").replace("billing-1", "billing-2"));
    store.save_policy_version(&v1).await.unwrap();
    other.save_policy_version(&v2).await.unwrap();
    // Saving again changes nothing (the hash binds the texts).
    other.save_policy_version(&v1).await.unwrap();
    assert_eq!(other.policy_version(&v1.version).await.unwrap().as_ref(), Some(&v1));
    assert_eq!(store.policy_version("0123").await.unwrap(), None);
    let list = store.policy_versions().await.unwrap();
    assert_eq!(list.len(), 2);
    assert!(list.iter().all(|v| v.intact && v.files == ["policy.yaml"]));

    // Sources that do not hash to their version are refused on save...
    let mut forged = v1.clone();
    forged.sources[0].text = forged.sources[0].text.replace("< 100", "< 1000000");
    let e = store.save_policy_version(&forged).await.unwrap_err();
    assert!(e.0.contains(rein_store::versions::SOURCES_CHANGED), "{e}");

    // ... and, changed in the database, on every read.
    let raw = db.raw().await;
    raw.execute(
        "UPDATE policy_versions SET sources = replace(sources, '< 100', '< 1000000') WHERE version = $1",
        &[&v1.version],
    )
    .await
    .unwrap();
    let e = store.policy_version(&v1.version).await.unwrap_err();
    assert!(e.0.contains(rein_store::versions::SOURCES_CHANGED), "{e}");
    let listed = store.policy_versions().await.unwrap();
    assert!(!listed.iter().find(|v| v.version == v1.version).unwrap().intact);
    raw.execute(
        "UPDATE policy_versions SET sources = 'x' WHERE version = $1",
        &[&v2.version],
    )
    .await
    .unwrap();
    assert!(store.policy_version(&v2.version).await.is_err());
    assert!(store.policy_versions().await.unwrap().iter().all(|v| !v.intact));
    // Keeping the true sources again repairs the row.
    store.save_policy_version(&v1).await.unwrap();
    assert_eq!(store.policy_version(&v1.version).await.unwrap().as_ref(), Some(&v1));
    db.drop_db().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn activation_records_are_found_through_their_index() {
    let Some(db) = TestDb::new().await else { return };
    let store = db.open().await;
    let v1 = kept(V1);
    let start = Activation {
        version: v1.version.clone(),
        label: v1.label.clone(),
        previous: None,
        by: "start".into(),
        cause: ActivationCause::Start,
        files: vec!["policy.yaml".into()],
        diagnostics: vec![],
    };
    let now = || format_time(jiff::Timestamp::now());
    store.append(common::entry(0)).await.unwrap();
    store.append(start.entry("a1".into(), now())).await.unwrap();
    store.append(common::entry(1)).await.unwrap();
    store.append(start.entry("a2".into(), now())).await.unwrap();
    let found = store.activations().await.unwrap();
    assert_eq!(found.iter().map(|r| r.seq).collect::<Vec<_>>(), [2, 4]);
    assert_eq!(Activation::of_entry(&found[0].entry).unwrap(), start);
    // A record made to look like an activation by its column is refused.
    db.raw()
        .await
        .batch_execute(
            "ALTER TABLE audit DISABLE TRIGGER USER; UPDATE audit SET phase = 'activate' WHERE seq = 3; \
             ALTER TABLE audit ENABLE TRIGGER USER",
        )
        .await
        .unwrap();
    assert!(store.activations().await.is_err());
    assert!(matches!(
        store.verify_audit().await.unwrap(),
        Verification::Broken { seq: 3, .. }
    ));
    db.drop_db().await;
}

fn t(s: &str) -> jiff::Timestamp {
    s.parse().unwrap()
}

/// `import_state` keeps each write with the seq of its decision's record
/// (an output with its outcome's), refuses a write of a decision the log
/// does not hold, and makes the next lease reload.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imported_state_goes_with_its_records() {
    let Some(db) = TestDb::new().await else { return };
    let store = db.open().await;
    let mut before = common::entry(0);
    before.decision_id = "d1".into();
    let mut after = common::entry(1);
    after.decision_id = "d1".into();
    store.append(before).await.unwrap();
    store.append(common::entry(2)).await.unwrap();
    store.append(after).await.unwrap();
    let writes = vec![
        StateWrite::Use {
            decision_id: "d1".into(),
            bucket: BucketKey {
                rule: "spend".into(),
                per: vec![],
            },
            time: t("2026-01-01T00:00:00Z"),
            amount: Decimal::from_str("4.25").unwrap(),
        },
        StateWrite::Call {
            session: "s1".into(),
            call: SessionCall {
                decision_id: "d1".into(),
                action: "refund".into(),
                time: t("2026-01-01T00:00:00Z"),
                effect: Effect::Allow,
                input: json!({"amount": 4}),
                output: None,
            },
        },
        StateWrite::Output {
            session: "s1".into(),
            decision_id: "d1".into(),
            output: json!({"ok": true}),
        },
        StateWrite::Label {
            session: "s1".into(),
            decision_id: "d1".into(),
            label: "pii".into(),
            time: t("2026-01-01T00:00:00Z"),
        },
    ];
    let unknown = vec![StateWrite::Label {
        session: "s1".into(),
        decision_id: "nobody".into(),
        label: "x".into(),
        time: t("2026-01-01T00:00:00Z"),
    }];
    let err = store.import_state(unknown).await.unwrap_err();
    assert!(err.0.contains("nobody"), "{err}");
    store.import_state(writes.clone()).await.unwrap();
    let raw = db.raw().await;
    let call = raw
        .query_one("SELECT seq, output_seq, output FROM session_calls", &[])
        .await
        .unwrap();
    assert_eq!(call.get::<_, i64>(0), 1);
    assert_eq!(call.get::<_, Option<i64>>(1), Some(3), "the outcome's record");
    assert_eq!(call.get::<_, Option<String>>(2).as_deref(), Some(r#"{"ok":true}"#));
    let (use_seq, label_seq): (i64, i64) = (
        raw.query_one("SELECT seq FROM limit_uses", &[]).await.unwrap().get(0),
        raw.query_one("SELECT seq FROM session_labels", &[])
            .await
            .unwrap()
            .get(0),
    );
    assert_eq!((use_seq, label_seq), (1, 1));
    // A lease after the import reloads; from the start its writes are
    // those imported, in record order.
    let lease = store.acquire_state_lease(0).await.unwrap();
    assert!(lease.reload);
    store.release_state_lease(lease.generation).await.unwrap();
    let other = db.open().await;
    let lease = other.acquire_state_lease(0).await.unwrap();
    // The label was written by record 1, the output by record 3.
    let in_record_order = vec![
        writes[0].clone(),
        writes[1].clone(),
        writes[3].clone(),
        writes[2].clone(),
    ];
    assert_eq!(lease.writes, in_record_order);
    other.release_state_lease(lease.generation).await.unwrap();
    db.drop_db().await;
}
