//! The audit log against every backend (a real SQLite file, a real
//! PostgreSQL database; see `common::differential!`): round trip, filters,
//! reopen, concurrency, failures; and what only SQLite has.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[macro_use]
mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{entry, open_temp, TestStore};

differential!(
    append_returns_the_chained_record,
    empty_store_is_intact,
    body_is_the_canonical_text,
    query_filters_combine,
    chain_survives_reopen,
    concurrent_appends_get_gapless_seqs,
    failed_batch_leaves_no_trace,
    the_log_is_append_only_for_plain_sql,
);
use rein_store::chain::{self, GENESIS};
use rein_store::{AuditQuery, PostgresOptions, PostgresStore, SqliteOptions, SqliteStore, Store, Verification};

async fn append_returns_the_chained_record(store: TestStore) {
    let r1 = store.append(entry(1)).await.unwrap();
    let r2 = store.append(entry(2)).await.unwrap();
    assert_eq!((r1.seq, r2.seq), (1, 2));
    assert_eq!(r1.prev_hash, GENESIS);
    assert_eq!(r1.hash, chain::record_hash(GENESIS, &chain::canonical(1, &entry(1))));
    assert_eq!(r2.prev_hash, r1.hash);
    assert_eq!(r2.hash, chain::record_hash(&r1.hash, &chain::canonical(2, &entry(2))));
    assert_eq!(r1.entry, entry(1));
    assert_eq!(store.audit_len().await.unwrap(), 2);
    assert_eq!(store.verify_audit().await.unwrap(), Verification::Intact { records: 2 });
}

async fn empty_store_is_intact(store: TestStore) {
    assert_eq!(store.audit_len().await.unwrap(), 0);
    assert_eq!(store.verify_audit().await.unwrap(), Verification::Intact { records: 0 });
    assert!(store.query_audit(&AuditQuery::default()).await.unwrap().is_empty());
}

/// The stored body is exactly the canonical text the module documents,
/// and the query columns are taken from it.
async fn body_is_the_canonical_text(store: TestStore) {
    let rec = store.append(entry(7)).await.unwrap();
    let column = |c: &'static str| {
        let store = &store;
        async move {
            let mut values = store.raw_column(&format!("SELECT {c} FROM audit WHERE seq = 1")).await;
            assert_eq!(values.len(), 1);
            values.pop().unwrap().unwrap()
        }
    };
    let (body, actor_id, rules, time) = (
        column("body").await,
        column("actor_id").await,
        column("rules").await,
        column("time").await,
    );
    assert_eq!(body, chain::canonical(1, &entry(7)));
    assert_eq!(rec.hash, chain::record_hash(GENESIS, &body));
    assert_eq!(actor_id, "bob");
    assert_eq!(rules, r#"["rule-2","common"]"#);
    assert_eq!(time, "2025-06-01T12:00:07.000007Z");
}

async fn seqs(store: &dyn Store, q: AuditQuery) -> Vec<u64> {
    store.query_audit(&q).await.unwrap().iter().map(|r| r.seq).collect()
}

async fn query_filters_combine(store: TestStore) {
    let mut appended = Vec::new();
    for i in 1..=12 {
        appended.push(store.append(entry(i)).await.unwrap());
    }
    // Round trip: what comes back is what was appended, in order.
    assert_eq!(store.query_audit(&AuditQuery::default()).await.unwrap(), appended);

    let q = AuditQuery::default;
    let expect = |f: &dyn Fn(u64) -> bool| (1..=12).filter(|&i| f(i)).collect::<Vec<u64>>();
    assert_eq!(
        seqs(
            &*store,
            AuditQuery {
                actor: Some("alice".into()),
                ..q()
            }
        )
        .await,
        expect(&|i| i % 3 == 0)
    );
    assert_eq!(
        seqs(
            &*store,
            AuditQuery {
                action: Some("send_email".into()),
                ..q()
            }
        )
        .await,
        expect(&|i| i % 3 == 1)
    );
    assert_eq!(
        seqs(
            &*store,
            AuditQuery {
                effect: Some("block".into()),
                ..q()
            }
        )
        .await,
        expect(&|i| i % 3 == 1)
    );
    assert_eq!(
        seqs(
            &*store,
            AuditQuery {
                session: Some("s2".into()),
                ..q()
            }
        )
        .await,
        expect(&|i| i % 4 == 2)
    );
    assert_eq!(
        seqs(
            &*store,
            AuditQuery {
                decision_id: Some("dec-5".into()),
                ..q()
            }
        )
        .await,
        vec![5]
    );
    assert_eq!(
        seqs(
            &*store,
            AuditQuery {
                rule: Some("rule-2".into()),
                ..q()
            }
        )
        .await,
        vec![2, 7]
    );
    assert_eq!(
        seqs(
            &*store,
            AuditQuery {
                rule: Some("common".into()),
                ..q()
            }
        )
        .await,
        expect(&|i| i % 3 != 0)
    );
    assert_eq!(
        seqs(
            &*store,
            AuditQuery {
                rule: Some("rule".into()),
                ..q()
            }
        )
        .await,
        Vec::<u64>::new()
    );
    assert_eq!(
        seqs(
            &*store,
            AuditQuery {
                after_seq: Some(9),
                ..q()
            }
        )
        .await,
        vec![10, 11, 12]
    );
    assert_eq!(seqs(&*store, AuditQuery { limit: Some(3), ..q() }).await, vec![1, 2, 3]);
    assert_eq!(
        seqs(&*store, AuditQuery { limit: Some(0), ..q() }).await,
        Vec::<u64>::new()
    );
    assert_eq!(
        seqs(
            &*store,
            AuditQuery {
                limit: Some(u64::MAX),
                ..q()
            }
        )
        .await
        .len(),
        12
    );
    // Times: `since` inclusive, `until` exclusive, any RFC 3339 offset.
    assert_eq!(
        seqs(
            &*store,
            AuditQuery {
                since: Some("2025-06-01T14:00:03.000003+02:00".into()),
                until: Some("2025-06-01T12:00:06Z".into()),
                ..q()
            }
        )
        .await,
        vec![3, 4, 5]
    );
    // Everything at once.
    assert_eq!(
        seqs(
            &*store,
            AuditQuery {
                since: Some("2025-06-01T12:00:00Z".into()),
                until: Some("2025-06-02T00:00:00Z".into()),
                actor: Some("bob".into()),
                action: Some("send_email".into()),
                effect: Some("block".into()),
                rule: Some("common".into()),
                session: Some("s3".into()),
                decision_id: None,
                trace: None,
                after_seq: Some(1),
                before_seq: Some(12),
                descending: true,
                limit: Some(10),
            }
        )
        .await,
        vec![7]
    );
    // Paging through with after_seq.
    let mut after = 0;
    let mut pages = Vec::new();
    loop {
        let page = seqs(
            &*store,
            AuditQuery {
                after_seq: Some(after),
                limit: Some(5),
                ..q()
            },
        )
        .await;
        let Some(&last) = page.last() else { break };
        after = last;
        pages.push(page);
    }
    assert_eq!(pages, vec![vec![1, 2, 3, 4, 5], vec![6, 7, 8, 9, 10], vec![11, 12]]);

    let bad = store
        .query_audit(&AuditQuery {
            since: Some("last tuesday".into()),
            ..q()
        })
        .await;
    assert!(bad.unwrap_err().0.contains("RFC 3339"));
}

/// A short-lived store leaves its WAL for the next process instead of
/// checkpointing at exit; each process chains onto the last, whichever kind
/// of store wrote it.
#[tokio::test]
async fn short_lived_stores_leave_the_wal_and_chain_on() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rein.db");
    let wal = dir.path().join("rein.db-wal");
    for round in 0..3u64 {
        let store = SqliteStore::open_with(&path, SqliteOptions::short_lived()).unwrap();
        let r = store.append(entry(round + 1)).await.unwrap();
        assert_eq!(r.seq, round + 1);
        store.close().await.unwrap();
        drop(store);
        assert!(wal.exists(), "round {round}: the WAL was checkpointed away");
    }
    // A server's store reads what they wrote, appends, and checkpoints the
    // WAL away when it closes.
    let store = SqliteStore::open(&path).unwrap();
    assert_eq!(store.append(entry(4)).await.unwrap().seq, 4);
    assert_eq!(store.verify_audit().await.unwrap(), Verification::Intact { records: 4 });
    store.close().await.unwrap();
    drop(store);
    assert!(!wal.exists(), "a default store checkpoints at close");
}

async fn chain_survives_reopen(mut store: TestStore) {
    for i in 1..=10 {
        store.append(entry(i)).await.unwrap();
    }
    let tenth = store
        .query_audit(&AuditQuery {
            after_seq: Some(9),
            ..Default::default()
        })
        .await
        .unwrap();
    store.reopen().await;
    assert_eq!(store.audit_len().await.unwrap(), 10);
    let r11 = store.append(entry(11)).await.unwrap();
    assert_eq!(r11.seq, 11);
    assert_eq!(r11.prev_hash, tenth[0].hash);
    for i in 12..=20 {
        store.append(entry(i)).await.unwrap();
    }
    store.reopen().await;
    assert_eq!(
        store.verify_audit().await.unwrap(),
        Verification::Intact { records: 20 }
    );
    let all = store.query_audit(&AuditQuery::default()).await.unwrap();
    assert_eq!(
        all.iter().map(|r| r.seq).collect::<Vec<_>>(),
        (1..=20).collect::<Vec<_>>()
    );
}

async fn concurrent_appends_get_gapless_seqs(store: TestStore) {
    let store = store.arc();
    let mut tasks = Vec::new();
    for t in 0..64u64 {
        let store = Arc::clone(&store);
        tasks.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            for i in 0..50 {
                let rec = store.append(entry(t * 1000 + i)).await.unwrap();
                assert_eq!(rec.entry.decision_id, format!("dec-{}", t * 1000 + i));
                mine.push(rec.seq);
            }
            mine
        }));
    }
    let mut all = Vec::new();
    for task in tasks {
        let mine = task.await.unwrap();
        // One task's appends are sequential, so they are chained in order.
        assert!(mine.windows(2).all(|w| w[0] < w[1]));
        all.extend(mine);
    }
    all.sort_unstable();
    assert_eq!(all, (1..=3200).collect::<Vec<u64>>());
    assert_eq!(store.audit_len().await.unwrap(), 3200);
    assert_eq!(
        store.verify_audit().await.unwrap(),
        Verification::Intact { records: 3200 }
    );
}

/// A batch that cannot be written fails for every waiter in it and leaves
/// nothing behind: the next batch chains onto what is really stored.
async fn failed_batch_leaves_no_trace(test: TestStore) {
    let store = test.arc();
    for i in 1..=4 {
        store.append(entry(i)).await.unwrap();
    }
    test.raw_exec(
        "CREATE TRIGGER fail_5 BEFORE INSERT ON audit WHEN NEW.seq = 5 BEGIN SELECT RAISE(ABORT, 'disk on fire'); END;",
        "CREATE FUNCTION fail_5() RETURNS trigger LANGUAGE plpgsql AS $$ \
         BEGIN IF NEW.seq = 5 THEN RAISE EXCEPTION 'disk on fire'; END IF; RETURN NEW; END $$; \
         CREATE TRIGGER fail_5 BEFORE INSERT ON audit FOR EACH ROW EXECUTE FUNCTION fail_5();",
    )
    .await;
    let tasks: Vec<_> = (0..10)
        .map(|i| {
            let store = Arc::clone(&store);
            tokio::spawn(async move { store.append(entry(100 + i)).await })
        })
        .collect();
    for task in tasks {
        let err = task.await.unwrap().unwrap_err();
        assert!(
            err.0.contains("not committed") && err.0.contains("disk on fire"),
            "{err}"
        );
    }
    assert_eq!(store.audit_len().await.unwrap(), 4);
    test.raw_exec("DROP TRIGGER fail_5", "DROP TRIGGER fail_5 ON audit")
        .await;
    for i in 5..=7 {
        assert_eq!(store.append(entry(i)).await.unwrap().seq, i);
    }
    assert_eq!(store.verify_audit().await.unwrap(), Verification::Intact { records: 7 });
}

#[tokio::test]
async fn closed_store_refuses_writes_at_once() {
    let (_dir, store) = open_temp();
    store.append(entry(1)).await.unwrap();
    store.close().await.unwrap();
    let result = tokio::time::timeout(Duration::from_secs(5), store.append(entry(2))).await;
    let err = result.expect("must not hang").unwrap_err();
    assert!(err.0.contains("closed"), "{err}");
    // Reads still work until the store is dropped.
    assert_eq!(store.verify_audit().await.unwrap(), Verification::Intact { records: 1 });
}

async fn the_log_is_append_only_for_plain_sql(store: TestStore) {
    store.append(entry(1)).await.unwrap();
    for sql in ["UPDATE audit SET effect = 'allow'", "DELETE FROM audit"] {
        let e = store.raw_try(sql).await.unwrap_err();
        assert!(e.contains("append-only"), "{sql}: {e}");
    }
    assert_eq!(store.verify_audit().await.unwrap(), Verification::Intact { records: 1 });
}

#[test]
fn unwritable_path_is_a_clean_error() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a-file");
    std::fs::write(&file, b"not a directory").unwrap();
    // Tests may run as root, which ignores permissions: a path through a
    // regular file cannot be created by anyone.
    let err = SqliteStore::open(file.join("rein.db")).unwrap_err();
    assert!(err.0.contains("cannot open the store"), "{err}");
    let err = SqliteStore::open(dir.path().join("missing-dir").join("rein.db")).unwrap_err();
    assert!(err.0.contains("cannot open the store"), "{err}");
}

#[test]
fn newer_schema_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rein.db");
    drop(SqliteStore::open(&path).unwrap());
    rusqlite::Connection::open(&path)
        .unwrap()
        .pragma_update(None, "user_version", 99)
        .unwrap();
    let err = SqliteStore::open(&path).unwrap_err();
    assert!(
        err.0.contains("schema version is 99") && err.0.contains("newer"),
        "{err}"
    );
}

#[test]
fn foreign_sqlite_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("other.db");
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute_batch("CREATE TABLE t (x)")
        .unwrap();
    let err = SqliteStore::open(&path).unwrap_err();
    assert!(err.0.contains("not a Rein store"), "{err}");
    // And it was not altered.
    let v: i64 = rusqlite::Connection::open(&path)
        .unwrap()
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(v, 0);
}

#[test]
fn not_a_database_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("garbage.db");
    std::fs::write(&path, vec![0x42u8; 8192]).unwrap();
    assert!(SqliteStore::open(&path).is_err());
}

/// A minimal executor, to poll the store outside any tokio runtime.
fn block_on<F: std::future::Future>(f: F) -> F::Output {
    struct Unpark(std::thread::Thread);
    impl std::task::Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Arc::new(Unpark(std::thread::current())).into();
    let mut cx = std::task::Context::from_waker(&waker);
    let mut f = std::pin::pin!(f);
    loop {
        match f.as_mut().poll(&mut cx) {
            std::task::Poll::Ready(v) => return v,
            std::task::Poll::Pending => std::thread::park(),
        }
    }
}

#[test]
fn works_outside_a_tokio_runtime() {
    let (_dir, store) = open_temp();
    block_on(async {
        assert_eq!(store.append(entry(1)).await.unwrap().seq, 1);
        assert_eq!(store.query_audit(&AuditQuery::default()).await.unwrap().len(), 1);
        assert_eq!(store.verify_audit().await.unwrap(), Verification::Intact { records: 1 });
        store.close().await.unwrap();
    });
}

/// A read-only open reads a store as it is: no file created, no schema
/// changed, no write accepted.
#[tokio::test]
async fn read_only_opens_change_nothing() {
    let (dir, store) = open_temp();
    store.append(entry(1)).await.unwrap();
    store.append(entry(2)).await.unwrap();
    store.close().await.unwrap();
    drop(store);
    let path = dir.path().join("rein.db");

    let reader = SqliteStore::open_read_only(&path).unwrap();
    assert_eq!(
        reader.verify_audit().await.unwrap(),
        Verification::Intact { records: 2 }
    );
    assert_eq!(reader.query_audit(&AuditQuery::default()).await.unwrap().len(), 2);
    let refused = reader.append(entry(3)).await.unwrap_err().to_string();
    assert!(refused.contains("closed"), "{refused}");
    drop(reader);

    let missing = dir.path().join("nope.db");
    let e = SqliteStore::open_read_only(&missing).unwrap_err().to_string();
    assert!(e.contains("does not exist"), "{e}");
    assert!(!missing.exists(), "not created");
    let e = SqliteStore::open_read_only(dir.path()).unwrap_err().to_string();
    assert!(e.contains("not a file"), "{e}");

    let empty = dir.path().join("empty.db");
    std::fs::write(&empty, b"").unwrap();
    let e = SqliteStore::open_read_only(&empty).unwrap_err().to_string();
    assert!(e.contains("not a Rein store"), "{e}");
    assert_eq!(std::fs::metadata(&empty).unwrap().len(), 0, "left empty");

    // An older schema is reported, not upgraded.
    let raw = rusqlite::Connection::open(&path).unwrap();
    raw.pragma_update(None, "user_version", 2).unwrap();
    drop(raw);
    let e = SqliteStore::open_read_only(&path).unwrap_err().to_string();
    assert!(e.contains("schema version is 2") && e.contains("upgrades it"), "{e}");
    let raw = rusqlite::Connection::open(&path).unwrap();
    let version: i64 = raw.query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap();
    assert_eq!(version, 2);
}

/// The health probe writes through the disk the writer uses; once the
/// writer thread has stopped, no append can succeed, and the probe says so
/// (the server's `/healthz` would otherwise report a store that blocks
/// every decision as healthy).
#[tokio::test]
async fn the_write_probe_fails_once_the_writer_has_stopped() {
    let (_dir, store) = open_temp();
    store.probe_write().await.unwrap();
    store.close().await.unwrap();
    assert!(store.probe_write().await.is_err());
}

/// PostgreSQL counterparts of the refusals above: a database holding
/// another program's `audit` table is refused and left as it was; a
/// database of a newer schema is refused; an unreachable server is a clean
/// error, within the connect timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_newer_or_unreachable_databases_are_refused_postgres() {
    let test = "foreign_newer_or_unreachable_databases_are_refused_postgres";
    let Some(admin) = common::test_pg_url(test) else {
        return;
    };
    let foreign = common::TestDb::create(&admin).await;
    common::pg_connect(&foreign.url)
        .await
        .batch_execute("CREATE TABLE audit (x integer); INSERT INTO audit VALUES (7)")
        .await
        .unwrap();
    let e = PostgresStore::open(&foreign.url, PostgresOptions::default())
        .await
        .unwrap_err();
    assert!(e.0.contains("not a Rein store"), "{e}");
    let raw = common::pg_connect(&foreign.url).await;
    let rows = raw.query("SELECT x FROM audit", &[]).await.unwrap();
    assert_eq!(rows.len(), 1, "left as it was");
    let tables: i64 = raw
        .query_one(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = current_schema() \
             AND table_name <> 'audit'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(tables, 0, "nothing created beside it");

    let mut store = TestStore::postgres(test).await.unwrap();
    store.append(entry(1)).await.unwrap();
    let version = store
        .raw_column("SELECT version FROM rein_schema_version")
        .await
        .pop()
        .unwrap()
        .unwrap();
    store
        .raw_try("UPDATE rein_schema_version SET version = 99")
        .await
        .unwrap();
    let url = store.pg_url().unwrap().to_owned();
    let e = PostgresStore::open(&url, PostgresOptions::default()).await.unwrap_err();
    assert!(e.0.contains("schema version is 99") && e.0.contains("newer"), "{e}");
    store
        .raw_try(&format!("UPDATE rein_schema_version SET version = {version}"))
        .await
        .unwrap();
    store.reopen().await;
    assert_eq!(store.verify_audit().await.unwrap(), Verification::Intact { records: 1 });

    // Nothing listens on port 1 of the loopback.
    let options = PostgresOptions {
        connect_timeout: Duration::from_secs(2),
        ..PostgresOptions::default()
    };
    let started = std::time::Instant::now();
    let e = PostgresStore::open("postgres://rein@127.0.0.1:1/rein?connect_timeout=2", options)
        .await
        .unwrap_err();
    assert!(e.0.contains("cannot open the store"), "{e}");
    assert!(started.elapsed() < Duration::from_secs(20), "{:?}", started.elapsed());
}
