//! The audit chain on PostgreSQL: records byte-identical to SQLite's, one
//! chain for several replicas (stores) appending at once, verification of
//! tampering, `append_once` across replicas, queries as SQLite answers
//! them, imports, metadata and policy versions.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
mod postgres_support;

use std::collections::BTreeSet;
use std::sync::Arc;

use postgres_support::TestDb;
use rein_store::{AuditEntry, AuditQuery, AuditRecord, Store, Verification};

/// Appending the same entries to SQLite and PostgreSQL gives the same
/// records: same seq, canonical body, prev_hash and hash.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_are_byte_identical_to_sqlite() {
    let Some(db) = TestDb::new().await else { return };
    let pg = db.open().await;
    let (_dir, lite) = common::open_temp();
    for i in 0..40 {
        let mut e = common::entry(i);
        if i == 7 {
            e.time = "2025-06-01T14:00:00+02:00".into(); // normalised in the time column
            e.client = Some("agent-1".into());
            e.actor = serde_json::json!("not an object");
        }
        if i % 5 == 0 {
            // Outcomes reported once: the second is refused on both.
            let a = lite.append_once(e.clone()).await.unwrap();
            let b = pg.append_once(e.clone()).await.unwrap();
            assert!(a.is_some());
            assert_eq!(a, b, "record {i}");
            assert_eq!(lite.append_once(e.clone()).await.unwrap(), None);
            assert_eq!(pg.append_once(e).await.unwrap(), None);
            continue;
        }
        let a = lite.append(e.clone()).await.unwrap();
        let b = pg.append(e).await.unwrap();
        assert_eq!(a, b, "record {i}");
    }
    let all = AuditQuery {
        limit: Some(10_000),
        ..AuditQuery::default()
    };
    assert_eq!(
        lite.query_audit(&all).await.unwrap(),
        pg.query_audit(&all).await.unwrap()
    );
    assert_eq!(pg.verify_audit().await.unwrap(), Verification::Intact { records: 40 });
    assert_eq!(pg.audit_len().await.unwrap(), 40);
    db.drop_db().await;
}

/// Every filter of `AuditQuery` answers what SQLite answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queries_answer_as_sqlite() {
    let Some(db) = TestDb::new().await else { return };
    let pg = db.open().await;
    let (_dir, lite) = common::open_temp();
    for i in 0..120 {
        let e = common::entry(i);
        lite.append(e.clone()).await.unwrap();
        pg.append(e).await.unwrap();
    }
    let s = |v: &str| Some(v.to_owned());
    let queries = [
        AuditQuery::default(),
        AuditQuery {
            actor: s("alice"),
            ..AuditQuery::default()
        },
        AuditQuery {
            action: s("refund"),
            effect: s("allow"),
            ..AuditQuery::default()
        },
        AuditQuery {
            rule: s("common"),
            limit: Some(7),
            ..AuditQuery::default()
        },
        AuditQuery {
            rule: s("rule-2"),
            ..AuditQuery::default()
        },
        AuditQuery {
            rule: s("rule-"),
            ..AuditQuery::default()
        },
        AuditQuery {
            session: s("s1"),
            after_seq: Some(30),
            ..AuditQuery::default()
        },
        AuditQuery {
            decision_id: s("dec-17"),
            ..AuditQuery::default()
        },
        AuditQuery {
            since: s("2025-06-01T12:00:10Z"),
            until: s("2025-06-01T14:00:20.000050+02:00"),
            ..AuditQuery::default()
        },
        AuditQuery {
            after_seq: Some(100),
            limit: Some(5),
            ..AuditQuery::default()
        },
    ];
    for q in &queries {
        let a = lite.query_audit(q).await.unwrap();
        let b = pg.query_audit(q).await.unwrap();
        assert_eq!(a, b, "{q:?}");
    }
    // A bad bound is an error on both.
    let bad = AuditQuery {
        since: s("yesterday"),
        ..AuditQuery::default()
    };
    assert!(lite.query_audit(&bad).await.is_err());
    assert!(pg.query_audit(&bad).await.is_err());
    db.drop_db().await;
}

fn tagged(tag: &str, i: u64) -> AuditEntry {
    let mut e = common::entry(i);
    e.decision_id = format!("{tag}-{i}");
    e
}

/// Three stores (three replicas) appending at once, many tasks each: one
/// chain, seqs contiguous, every acknowledged record there once, verify
/// passes.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_replicas_append_to_one_chain() {
    let Some(db) = TestDb::new().await else { return };
    let stores = [db.open().await, db.open().await, db.open().await].map(Arc::new);
    const TASKS: u64 = 16;
    const EACH: u64 = 40;
    let mut handles = Vec::new();
    for (r, store) in stores.iter().enumerate() {
        for t in 0..TASKS {
            let store = Arc::clone(store);
            handles.push(tokio::spawn(async move {
                let mut acked = Vec::new();
                for i in 0..EACH {
                    let e = tagged(&format!("r{r}-t{t}"), i);
                    let rec = store.append(e).await.unwrap();
                    acked.push((rec.seq, rec.entry.decision_id));
                }
                acked
            }));
        }
    }
    let mut acked = Vec::new();
    for h in handles {
        acked.extend(h.await.unwrap());
    }
    let total = 3 * TASKS * EACH;
    assert_eq!(acked.len() as u64, total);
    let seqs: BTreeSet<u64> = acked.iter().map(|(s, _)| *s).collect();
    assert_eq!(seqs, (1..=total).collect::<BTreeSet<u64>>(), "contiguous and unique");
    assert_eq!(stores[0].audit_len().await.unwrap(), total);
    assert_eq!(
        stores[1].verify_audit().await.unwrap(),
        Verification::Intact { records: total }
    );
    // Each acknowledged record is stored under its seq.
    let mut stored = Vec::new();
    let mut after = 0;
    loop {
        let page = stores[2]
            .query_audit(&AuditQuery {
                after_seq: Some(after),
                limit: Some(10_000),
                ..AuditQuery::default()
            })
            .await
            .unwrap();
        let Some(last) = page.last() else { break };
        after = last.seq;
        stored.extend(page.into_iter().map(|r| (r.seq, r.entry.decision_id)));
    }
    acked.sort();
    assert_eq!(stored, acked);
    db.drop_db().await;
}

/// Of `append_once` calls for one decision and phase racing on three
/// replicas, exactly one appends; a record of another phase is not a
/// claim.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn append_once_races_across_replicas() {
    let Some(db) = TestDb::new().await else { return };
    let stores = [db.open().await, db.open().await, db.open().await].map(Arc::new);
    for round in 0..20u64 {
        let mut handles = Vec::new();
        for store in &stores {
            for _ in 0..4 {
                let store = Arc::clone(store);
                let mut e = tagged("once", round);
                e.phase = "after".into();
                handles.push(tokio::spawn(async move { store.append_once(e).await.unwrap() }));
            }
        }
        let mut appended = 0;
        for h in handles {
            if h.await.unwrap().is_some() {
                appended += 1;
            }
        }
        assert_eq!(appended, 1, "round {round}");
    }
    // A plain append of the same decision and phase is no claim; the
    // claim is still the first's.
    let mut e = tagged("once", 0);
    e.phase = "after".into();
    stores[0].append(e.clone()).await.unwrap();
    assert!(stores[1].append_once(e).await.unwrap().is_none());
    let mut before = tagged("once", 0);
    before.phase = "before".into();
    assert!(stores[2].append_once(before).await.unwrap().is_some());
    assert_eq!(
        stores[0].verify_audit().await.unwrap(),
        Verification::Intact { records: 22 }
    );
    db.drop_db().await;
}

async fn tamper(db: &TestDb, sql: &str) {
    let raw = db.raw().await;
    raw.batch_execute(&format!(
        "BEGIN; ALTER TABLE audit DISABLE TRIGGER USER; {sql}; ALTER TABLE audit ENABLE TRIGGER USER; COMMIT"
    ))
    .await
    .unwrap();
}

fn broken_at(v: Verification) -> (u64, String) {
    match v {
        Verification::Broken { seq, problem } => (seq, problem),
        other => panic!("not broken: {other:?}"),
    }
}

/// Tampering through SQL is found, as SQLite's verify finds it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_finds_tampering() {
    let Some(db) = TestDb::new().await else { return };
    let store = db.open().await;
    for i in 0..10 {
        store.append(common::entry(i)).await.unwrap();
    }
    // The log is append-only to a mistaken manual change.
    let raw = db.raw().await;
    let err = raw
        .execute("UPDATE audit SET effect = 'allow' WHERE seq = 3", &[])
        .await
        .unwrap_err();
    assert!(format!("{err:?}").contains("append-only"), "{err:?}");
    assert!(raw.execute("DELETE FROM audit WHERE seq = 10", &[]).await.is_err());

    // A body changed.
    tamper(
        &db,
        "UPDATE audit SET body = replace(body, 'reason 4', 'reason X') WHERE seq = 5",
    )
    .await;
    let (seq, problem) = broken_at(store.verify_audit().await.unwrap());
    assert_eq!(seq, 5, "{problem}");
    assert!(problem.contains("changed"), "{problem}");
    assert!(
        store.query_audit(&AuditQuery::default()).await.is_err(),
        "a changed record is refused"
    );
    tamper(
        &db,
        "UPDATE audit SET body = replace(body, 'reason X', 'reason 4') WHERE seq = 5",
    )
    .await;
    assert_eq!(
        store.verify_audit().await.unwrap(),
        Verification::Intact { records: 10 }
    );

    // A query column edited (the chain does not cover it).
    tamper(&db, "UPDATE audit SET effect = 'allow' WHERE seq = 2").await;
    let (seq, problem) = broken_at(store.verify_audit().await.unwrap());
    assert_eq!(seq, 2, "{problem}");
    assert!(problem.contains("`effect` column"), "{problem}");
    tamper(&db, "UPDATE audit SET effect = 'block' WHERE seq = 2").await;
    assert_eq!(
        store.verify_audit().await.unwrap(),
        Verification::Intact { records: 10 }
    );

    // The newest record removed: the head names it.
    tamper(
        &db,
        "CREATE TABLE saved AS SELECT * FROM audit WHERE seq = 10; DELETE FROM audit WHERE seq = 10",
    )
    .await;
    let (seq, problem) = broken_at(store.verify_audit().await.unwrap());
    assert_eq!(seq, 10, "{problem}");
    assert!(problem.contains("removed"), "{problem}");
    tamper(&db, "INSERT INTO audit SELECT * FROM saved; DROP TABLE saved").await;

    // A record in the middle removed.
    tamper(
        &db,
        "CREATE TABLE saved AS SELECT * FROM audit WHERE seq = 4; DELETE FROM audit WHERE seq = 4",
    )
    .await;
    let (seq, problem) = broken_at(store.verify_audit().await.unwrap());
    assert_eq!(seq, 4, "{problem}");
    assert!(problem.contains("removed"), "{problem}");
    tamper(&db, "INSERT INTO audit SELECT * FROM saved; DROP TABLE saved").await;

    // Two records swapped (bodies and hashes moved together).
    tamper(
        &db,
        "CREATE TABLE saved AS SELECT * FROM audit WHERE seq IN (6, 7); \
         UPDATE audit a SET body = s.body, prev_hash = s.prev_hash, hash = s.hash, time = s.time, \
         decision_id = s.decision_id, phase = s.phase, action = s.action, actor_id = s.actor_id, \
         session = s.session, effect = s.effect, rules = s.rules \
         FROM saved s WHERE a.seq IN (6, 7) AND s.seq = 13 - a.seq",
    )
    .await;
    let (seq, problem) = broken_at(store.verify_audit().await.unwrap());
    assert_eq!(seq, 6, "{problem}");
    tamper(
        &db,
        "UPDATE audit a SET body = s.body, prev_hash = s.prev_hash, hash = s.hash, time = s.time, \
         decision_id = s.decision_id, phase = s.phase, action = s.action, actor_id = s.actor_id, \
         session = s.session, effect = s.effect, rules = s.rules \
         FROM saved s WHERE a.seq = s.seq; DROP TABLE saved",
    )
    .await;
    assert_eq!(
        store.verify_audit().await.unwrap(),
        Verification::Intact { records: 10 }
    );

    // A record added after the head.
    tamper(
        &db,
        "INSERT INTO audit SELECT seq + 1, time, decision_id, phase, action, actor_id, session, effect, rules, \
         body, hash, hash FROM audit WHERE seq = 10",
    )
    .await;
    let (seq, problem) = broken_at(store.verify_audit().await.unwrap());
    assert_eq!(seq, 11, "{problem}");
    tamper(&db, "DELETE FROM audit WHERE seq = 11").await;
    assert_eq!(
        store.verify_audit().await.unwrap(),
        Verification::Intact { records: 10 }
    );

    // A missing chain head stops appends (no second chain).
    raw.execute("DELETE FROM chain_head", &[]).await.unwrap();
    let err = store.append(common::entry(99)).await.unwrap_err();
    assert!(err.0.contains("chain head is missing"), "{err}");
    db.drop_db().await;
}

/// `import_records` takes a chain verbatim only where it continues the log
/// exactly; SQLite's records copied page by page verify on PostgreSQL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_records_continues_the_head_only() {
    let Some(db) = TestDb::new().await else { return };
    let pg = db.open().await;
    let (_dir, lite) = common::open_temp();
    for i in 0..30 {
        lite.append(common::entry(i)).await.unwrap();
    }
    let all: Vec<AuditRecord> = lite
        .query_audit(&AuditQuery {
            limit: Some(10_000),
            ..AuditQuery::default()
        })
        .await
        .unwrap();
    // A gap: refused, nothing written.
    let err = pg.import_records(all[1..5].to_vec()).await.unwrap_err();
    assert!(err.0.contains("next must be 1"), "{err}");
    // A changed record: refused.
    let mut changed = all[0..3].to_vec();
    changed[1].entry.effect = "allow".into();
    changed[1].entry.reasons = vec!["forged".into()];
    assert!(pg.import_records(changed).await.is_err());
    // A record whose prev_hash does not link.
    let mut unlinked = all[0..3].to_vec();
    unlinked[2].prev_hash = all[0].hash.clone();
    assert!(pg.import_records(unlinked).await.is_err());
    assert_eq!(pg.audit_len().await.unwrap(), 0);
    // In pages: each continues the last.
    for page in all.chunks(7) {
        pg.import_records(page.to_vec()).await.unwrap();
    }
    assert_eq!(pg.verify_audit().await.unwrap(), Verification::Intact { records: 30 });
    // Importing a page again is a gap now.
    assert!(pg.import_records(all[0..3].to_vec()).await.is_err());
    // Appends continue the imported chain.
    let next = pg.append(common::entry(30)).await.unwrap();
    let same = lite.append(common::entry(30)).await.unwrap();
    assert_eq!(next, same);
    // The outcomes imported are claimed: their `append_once` is a duplicate.
    let outcome = all.iter().find(|r| r.entry.phase == "after").unwrap();
    assert!(pg.append_once(outcome.entry.clone()).await.unwrap().is_none());
    assert_eq!(pg.verify_audit().await.unwrap(), Verification::Intact { records: 31 });
    db.drop_db().await;
}

/// The key fingerprint: the first recorded wins, across replicas racing.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_first_key_fingerprint_wins() {
    let Some(db) = TestDb::new().await else { return };
    let stores = [db.open().await, db.open().await, db.open().await].map(Arc::new);
    assert_eq!(stores[0].key_fingerprint().await.unwrap(), None);
    let mut handles = Vec::new();
    for (i, store) in stores.iter().enumerate() {
        let store = Arc::clone(store);
        handles.push(tokio::spawn(async move {
            store.bind_key_fingerprint(&format!("fp-{i}")).await.unwrap()
        }));
    }
    let kept: BTreeSet<String> = futures_join(handles).await.into_iter().collect();
    assert_eq!(kept.len(), 1, "{kept:?}");
    let winner = kept.into_iter().next().unwrap();
    assert_eq!(stores[1].key_fingerprint().await.unwrap(), Some(winner.clone()));
    assert_eq!(stores[2].bind_key_fingerprint("other").await.unwrap(), winner);
    stores[0].probe_write().await.unwrap();
    db.drop_db().await;
}

async fn futures_join<T: Send + 'static>(handles: Vec<tokio::task::JoinHandle<T>>) -> Vec<T> {
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.unwrap());
    }
    out
}
