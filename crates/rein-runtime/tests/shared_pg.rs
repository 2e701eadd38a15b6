//! Several runtimes (replicas) on one PostgreSQL database: each over its
//! own `PostgresStore` (its own pool, writer and lease connection), as
//! separate processes would be. The cluster is `REIN_TEST_PG`; each test
//! makes its own database and drops it. Skipped with a note when
//! `REIN_TEST_PG` is unset, a failure under `CI=true`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod shared;

use rein_engine::Effect;
use rein_store::{PostgresOptions, PostgresStore, Store};
use shared::*;
use std::sync::Arc;
use std::time::Duration;

/// A database made for one test.
struct TestDb {
    admin: String,
    name: String,
    url: String,
}

fn cluster() -> Option<String> {
    match std::env::var("REIN_TEST_PG") {
        Ok(url) if !url.is_empty() => Some(url),
        _ if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("REIN_TEST_PG is not set: CI must run the PostgreSQL tests")
        }
        _ => {
            eprintln!("note: REIN_TEST_PG is not set; PostgreSQL test skipped");
            None
        }
    }
}

/// `url` naming the database `db` instead.
fn with_database(url: &str, db: &str) -> String {
    let (base, query) = url.split_once('?').map_or((url, None), |(b, q)| (b, Some(q)));
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let host = match base[scheme_end..].find('/') {
        Some(i) => &base[..scheme_end + i],
        None => base,
    };
    match query {
        Some(q) => format!("{host}/{db}?{q}"),
        None => format!("{host}/{db}"),
    }
}

async fn client(url: &str) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(async move {
        let _ = conn.await;
    });
    client
}

impl TestDb {
    async fn new() -> Option<TestDb> {
        let admin = cluster()?;
        let name = format!("rein_t_rt_{}", uuid::Uuid::now_v7().simple());
        client(&admin)
            .await
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .unwrap();
        let url = with_database(&admin, &name);
        Some(TestDb { admin, name, url })
    }

    /// A replica's store.
    async fn open(&self) -> Arc<PostgresStore> {
        Arc::new(
            PostgresStore::open(&self.url, PostgresOptions::default())
                .await
                .unwrap(),
        )
    }

    /// Ends the connection holding the state lease (the advisory lock) of
    /// this database, as a network failure would; how many were ended.
    async fn kill_lease_connection(&self) -> i64 {
        client(&self.url)
            .await
            .query_one(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_locks WHERE locktype = 'advisory' AND granted \
                 AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
                &[],
            )
            .await
            .unwrap()
            .get(0)
    }

    async fn drop_db(self) {
        let _ = client(&self.admin)
            .await
            .batch_execute(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name))
            .await;
    }
}

/// 3 replicas × 96 concurrent decisions against a count limit and a sum
/// limit: exactly the limit is allowed, and recorded.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_limit_holds_exactly_across_three_replicas_on_postgres() {
    let Some(db) = TestDb::new().await else { return };
    let mut stores = Vec::new();
    let mut replicas = Vec::new();
    for _ in 0..3 {
        let store = db.open().await;
        replicas.push(replica(store.clone()).await);
        stores.push(store);
    }
    limits_hold_exactly(&replicas, stores[0].as_ref(), 96).await;
    // Pruning (every replica does, every minute) keeps what the windows
    // read: the limits still hold, on every replica.
    for rt in &replicas {
        rt.prune_state(jiff::Timestamp::now()).await.unwrap();
    }
    assert_eq!(race(&replicas, 12, refund).await, 0);
    drop(replicas);
    drop(stores);
    db.drop_db().await;
}

/// Session history written through one replica (a label by a decision,
/// one by an outcome) is read by another.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_session_written_through_one_replica_is_read_by_another_on_postgres() {
    let Some(db) = TestDb::new().await else { return };
    let a = replica(db.open().await).await;
    let b = replica(db.open().await).await;
    sessions_are_shared(&a, &b).await;
    drop((a, b));
    db.drop_db().await;
}

/// A replica whose lease connection is killed while a decision of it is
/// on its way to the database: the other replica takes the lease and the
/// last unit; the first one's decision is refused by the fence (block),
/// and its next decision, under a new lease and a reloaded state, is
/// refused by the limit. Never an allow against a stale copy.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_killed_lease_connection_never_allows_against_a_stale_mirror() {
    let Some(db) = TestDb::new().await else { return };
    let pa = db.open().await;
    let sa = Stalling::new(pa.clone());
    let a = replica(sa.clone()).await;
    let b = replica(db.open().await).await;
    for i in 0..REFUNDS - 1 {
        let rt = if i % 2 == 0 { &a } else { &b };
        assert_eq!(rt.decide(refund(i), None).await.effect, Effect::Allow);
    }
    sa.stall();
    let stalled = sa.wait_stalled();
    let a2 = Arc::clone(&a);
    let pending = tokio::spawn(async move { a2.decide(refund(100), None).await });
    stalled.await;
    // A holds the lease and the last unit in its copy: its lease
    // connection is cut.
    assert_eq!(db.kill_lease_connection().await, 1);
    let won = tokio::time::timeout(Duration::from_secs(10), b.decide(refund(101), None))
        .await
        .expect("the lock went with the connection");
    assert_eq!(won.effect, Effect::Allow, "{:?}", won.reasons);
    sa.unstall();
    let lost = pending.await.unwrap();
    assert_eq!(lost.effect, Effect::Block, "a decision whose lease was lost is refused");
    assert!(lost.audit_seq.is_none());
    assert!(lost.reasons[0].contains("lease"), "{:?}", lost.reasons);
    for i in 0..3 {
        let again = a.decide(refund(200 + i), None).await;
        assert_eq!(again.effect, Effect::Block, "{:?}", again.reasons);
        assert!(
            again.reasons.iter().any(|r| r.contains("10 refunds")),
            "refused by the limit, read under a new lease: {:?}",
            again.reasons
        );
    }
    assert_eq!(allowed_records(pa.as_ref(), "refund").await, REFUNDS);
    let verified = pa.verify_audit().await.unwrap();
    assert!(
        matches!(verified, rein_store::Verification::Intact { .. }),
        "{verified:?}"
    );
    drop((a, b, sa, pa));
    db.drop_db().await;
}

/// A lease connection killed while the replica is idle costs nothing: its
/// next decision takes a new lease (on a new connection) and decides as
/// before, exactly.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_lease_connection_killed_between_decisions_is_taken_again() {
    let Some(db) = TestDb::new().await else { return };
    let a = replica(db.open().await).await;
    let b = replica(db.open().await).await;
    for i in 0..5 {
        assert_eq!(a.decide(refund(i), None).await.effect, Effect::Allow);
    }
    // No lease is held while idle: nothing to kill, or a lease being
    // given back. Either way, decisions go on.
    let _ = db.kill_lease_connection().await;
    assert_eq!(race(&[a.clone(), b.clone()], 20, refund).await, REFUNDS - 5);
    drop((a, b));
    db.drop_db().await;
}

/// A reset through one replica reaches the other (the store's epoch).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_reset_reaches_every_replica_on_postgres() {
    let Some(db) = TestDb::new().await else { return };
    let a = replica(db.open().await).await;
    let b = replica(db.open().await).await;
    assert_eq!(race(&[a.clone(), b.clone()], 24, refund).await, REFUNDS);
    a.reset_limits(Some("refund_rate"), None).await.unwrap();
    assert_eq!(race(&[a.clone(), b.clone()], 24, refund).await, REFUNDS);
    drop((a, b));
    db.drop_db().await;
}

/// One approval, two replicas racing to use it: exactly one allow, and
/// the limit it is reserved under counts that one, on both.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_approval_is_used_once_across_replicas_on_postgres() {
    let Some(db) = TestDb::new().await else { return };
    let a = replica(db.open().await).await;
    let b = replica(db.open().await).await;
    an_approval_is_used_once_across_replicas(&a, &b).await;
    drop((a, b));
    db.drop_db().await;
}

/// What `lease_hold` does to 3 replicas × 32 clients deciding on one
/// limit (never reached): decisions/s and p99. A probe, ignored (timings
/// on a loaded machine are noise; run it on a quiet one):
/// `REIN_TEST_PG=... cargo test --release -p rein-runtime --test shared_pg lease_hold_probe -- --ignored --nocapture`
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "a probe: prints decisions/s and p99 for several lease_hold values"]
async fn lease_hold_probe() {
    const LIMITED: &str = r#"
default: allow
max_window: 1h
contracts:
  actor: {id: string}
  actions:
    refund:
      input: {customer: string}
rules:
  - id: refund_rate
    action: refund
    effect: block
    limit: {count: 100000000, window: 1h}
"#;
    for hold_ms in [1u64, 5, 20, 100] {
        let Some(db) = TestDb::new().await else { return };
        let mut replicas = Vec::new();
        for _ in 0..3 {
            let config = rein_runtime::RuntimeConfig {
                lease_hold: Duration::from_millis(hold_ms),
                ..config()
            };
            replicas.push(replica_with(db.open().await, LIMITED, config).await);
        }
        let started = std::time::Instant::now();
        let mut tasks = Vec::new();
        for r in &replicas {
            for c in 0..32 {
                let r = Arc::clone(r);
                tasks.push(tokio::spawn(async move {
                    let mut took = Vec::new();
                    for i in 0..20 {
                        let t = std::time::Instant::now();
                        let a = r.decide(refund(c * 100 + i), None).await;
                        assert_eq!(a.effect, Effect::Allow, "{:?}", a.reasons);
                        took.push(t.elapsed());
                    }
                    took
                }));
            }
        }
        let mut all = Vec::new();
        for t in tasks {
            all.extend(t.await.unwrap());
        }
        let elapsed = started.elapsed();
        all.sort();
        let p99 = all[all.len() * 99 / 100];
        println!(
            "lease_hold {hold_ms:>3} ms: {} decisions in {elapsed:.2?}: {:.0}/s, p99 {p99:.2?}, max {:.2?}",
            all.len(),
            all.len() as f64 / elapsed.as_secs_f64(),
            all[all.len() - 1]
        );
        drop(replicas);
        db.drop_db().await;
    }
}

/// The store's trait object is what the server holds.
#[allow(dead_code)]
fn is_store(s: Arc<PostgresStore>) -> Arc<dyn Store> {
    s
}

/// A replica whose lease acquisition failed (the lock held elsewhere past
/// the statement timeout) and that then gets no decision (a load balancer
/// took it out of rotation on its 503): its lease health turns `Ok` by
/// itself once the lease can be had, without a decision arriving.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_unhealthy_lease_recovers_without_decisions_on_postgres() {
    let Some(db) = TestDb::new().await else { return };
    let options = PostgresOptions {
        statement_timeout: Duration::from_secs(1),
        ..PostgresOptions::default()
    };
    let store = Arc::new(PostgresStore::open(&db.url, options).await.unwrap());
    let rt = replica(store.clone()).await;
    assert_eq!(rt.state_lease_health(), Ok(()));
    // The lock of the state lease held from an outside session.
    let outside = client(&db.url).await;
    outside
        .execute("SELECT pg_advisory_lock($1)", &[&0x5245_494E_5354_4154_i64])
        .await
        .unwrap();
    let blocked = rt.decide(refund(0), None).await;
    assert_eq!(blocked.effect, Effect::Block, "{:?}", blocked.reasons);
    assert!(rt.state_lease_health().is_err());
    outside
        .execute("SELECT pg_advisory_unlock($1)", &[&0x5245_494E_5354_4154_i64])
        .await
        .unwrap();
    // No decision: only the health is asked (as `/healthz` is).
    let start = std::time::Instant::now();
    while let Err(why) = rt.state_lease_health() {
        assert!(
            start.elapsed() < Duration::from_secs(6),
            "still unhealthy {:?} after the lock was freed: {why}",
            start.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The probe gave the lease back: another replica takes it.
    let other = replica(db.open().await).await;
    assert_eq!(other.decide(refund(1), None).await.effect, Effect::Allow);
    assert_eq!(rt.decide(refund(2), None).await.effect, Effect::Allow);
    drop((rt, other, store));
    db.drop_db().await;
}
