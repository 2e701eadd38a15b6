//! Replicas on one PostgreSQL database (the cluster `REIN_TEST_PG` names,
//! a fresh database per test; skipped with a note when it is unset, a
//! failure under `CI=true`): a server decides and records on it and the
//! chain verifies; a reload on one replica is served by the other within a
//! measured bound; a published version no replica can load is refused by
//! all, which keep their last good version and answer `/healthz` 503.

use crate::common::*;
use axum::http::{Method, StatusCode};
use rein_server::{AppState, ServerConfig};
use rein_store::StoreLocation;
use serde_json::Value;
use std::path::Path;
use std::time::{Duration, Instant};

/// How long a replica may take to serve a version another published: the
/// notification is normally heard within milliseconds; without it the poll
/// (every second) finds it. Measured: see `a_reload_on_one_replica_…`.
const FOLLOW_BOUND: Duration = Duration::from_secs(3);

/// A database made for one test; [`Pg::drop_db`] drops it.
struct Pg {
    admin: String,
    name: String,
    url: String,
}

impl Pg {
    /// A fresh database, or `None` (the test is skipped) when
    /// `REIN_TEST_PG` is unset outside CI.
    async fn new() -> Option<Pg> {
        let admin = match std::env::var("REIN_TEST_PG") {
            Ok(url) if !url.is_empty() => url,
            _ if std::env::var("CI").as_deref() == Ok("true") => {
                panic!("REIN_TEST_PG is not set: CI must run the PostgreSQL tests")
            }
            _ => {
                eprintln!("note: REIN_TEST_PG is not set; PostgreSQL test skipped");
                return None;
            }
        };
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let name = format!("rein_t_srv_{}_{nanos}", std::process::id());
        connect(&admin)
            .await
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .unwrap();
        let url = with_database(&admin, &name);
        Some(Pg { admin, name, url })
    }

    /// A plain connection to the test's database.
    async fn raw(&self) -> tokio_postgres::Client {
        connect(&self.url).await
    }

    async fn drop_db(self) {
        let _ = connect(&self.admin)
            .await
            .batch_execute(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name))
            .await;
    }
}

async fn connect(url: &str) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(async move {
        let _ = conn.await;
    });
    client
}

/// `url` with its database replaced by `db`.
fn with_database(url: &str, db: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
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

/// The files every replica is given: the same tokens, audit key and
/// delegation key (each replica its own copy, in its own folder).
fn shared_secrets(dir: &Path) {
    std::fs::write(dir.join("tokens.yaml"), tokens_yaml()).unwrap();
    std::fs::write(dir.join("audit.key"), [7u8; 32]).unwrap();
    std::fs::write(dir.join("delegation.key"), [9u8; 32]).unwrap();
}

/// A replica on `url` over the policy `text`, in a folder of its own.
async fn replica(url: &str, text: &str) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    shared_secrets(dir.path());
    let policy = dir.path().join("policy.yaml");
    std::fs::write(&policy, text).unwrap();
    let mut config = ServerConfig::at(vec![policy], StoreLocation::parse(url));
    config.tokens_path = Some(dir.path().join("tokens.yaml"));
    config.hmac_key_path = Some(dir.path().join("audit.key"));
    config.delegation_key_path = Some(dir.path().join("delegation.key"));
    let state = AppState::from_config(&config).await.unwrap();
    Harness { dir, state }
}

fn example_text() -> String {
    std::fs::read_to_string(example_policy()).unwrap()
}

/// The example with small refunds capped at `cap` instead of 100.
fn capped_at(cap: u64) -> String {
    let text = example_text();
    let capped = text.replace("when: input.amount <= 100\n", &format!("when: input.amount <= {cap}\n"));
    assert_ne!(capped, text);
    capped
}

fn served(h: &Harness) -> String {
    h.state.runtime().policy().version().to_string()
}

/// Waits until `h` serves `version`; returns how long it took.
async fn until_served(h: &Harness, version: &str) -> Duration {
    let started = Instant::now();
    while served(h) != version {
        assert!(
            started.elapsed() < FOLLOW_BOUND,
            "the replica still serves {} after {FOLLOW_BOUND:?}, not {version}",
            served(h)
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    started.elapsed()
}

/// Waits until `/healthz` of `h` answers `status`; returns the body.
async fn until_health(h: &Harness, status: StatusCode) -> Value {
    let started = Instant::now();
    loop {
        let (got, body) = h.call(Method::GET, "/healthz", None, None).await;
        if got == status {
            return body;
        }
        assert!(
            started.elapsed() < FOLLOW_BOUND,
            "/healthz still answers {got} after {FOLLOW_BOUND:?}: {body}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_on_postgres_decides_records_and_the_chain_verifies() {
    let Some(pg) = Pg::new().await else { return };
    let h = replica(&pg.url, &example_text()).await;
    let version = served(&h);
    let allowed = h.decide(refund(40, "bot-1")).await;
    assert_eq!(allowed["effect"], "allow", "{allowed}");
    assert_eq!(allowed["policy_version"], version.as_str());
    let blocked = h.decide(refund(5000, "bot-1")).await;
    assert_eq!(blocked["effect"], "block", "{blocked}");

    // Both decisions are in the log, after the activation at start.
    let (status, body) = h.call(Method::GET, "/v1/audit?limit=100", Some(ADMIN), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let records = body["records"].as_array().unwrap();
    let ids: Vec<&str> = records.iter().filter_map(|r| r["decision_id"].as_str()).collect();
    for answer in [&allowed, &blocked] {
        assert!(ids.contains(&answer["decision_id"].as_str().unwrap()), "{body}");
    }
    let (status, body) = h.call(Method::GET, "/v1/audit/verify", Some(ADMIN), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["intact"], true);
    assert_eq!(body["records"].as_u64().unwrap(), records.len() as u64);

    // Published at start: the version the files gave.
    let published = h.state.runtime().store().published_policy().await.unwrap();
    assert_eq!(published.as_deref(), Some(version.as_str()));
    let (status, health) = h.call(Method::GET, "/healthz", None, None).await;
    assert_eq!(status, StatusCode::OK, "{health}");
    assert_eq!(health["policy_version"], version.as_str());

    h.state.close().await.unwrap();
    pg.drop_db().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_on_one_replica_is_served_by_the_other_within_the_bound() {
    let Some(pg) = Pg::new().await else { return };
    let a = replica(&pg.url, &example_text()).await;
    let b = replica(&pg.url, &example_text()).await;
    let v1 = served(&a);
    assert_eq!(served(&b), v1);

    // Several reloads, each timed from the reload's answer until the other
    // replica serves it.
    let mut took = Vec::new();
    for cap in [50, 60, 70, 80, 90] {
        std::fs::write(a.policy_path(), capped_at(cap)).unwrap();
        let (status, body) = a.call(Method::POST, "/v1/policy/reload", Some(ADMIN), None).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let version = body["policy_version"].as_str().unwrap().to_string();
        took.push(until_served(&b, &version).await);
        // B decides with it, and says so.
        let d = b.decide(refund(cap + 5, "bot-1")).await;
        assert_eq!(d["effect"], "block", "{d}");
        assert_eq!(d["policy_version"], version.as_str());
        let (_, health) = b.call(Method::GET, "/healthz", None, None).await;
        assert_eq!(health["policy_version"], version.as_str());
    }
    took.sort();
    eprintln!("notified: the other replica served the reloaded version {took:?} after the reload's answer");

    // Without a notification (published by SQL alone) the poll finds it.
    let raw = pg.raw().await;
    raw.execute("UPDATE rein_policy_published SET version = $1 WHERE id = 1", &[&v1])
        .await
        .unwrap();
    let polled = [until_served(&a, &v1).await, until_served(&b, &v1).await];
    eprintln!("polled: the replicas served a version published without notification after {polled:?}");

    // Each switch is recorded in the one chain: B's five, then A's and B's
    // return to v1.
    let activations = b.state.runtime().store().activations().await.unwrap();
    let followed = activations
        .iter()
        .filter(|r| r.entry.activation.as_ref().is_some_and(|a| a["by"] == "publication"))
        .count();
    assert_eq!(followed, 7, "one activation by publication per switch");

    // A replica starting with other files: its files win, the others follow.
    let c = replica(&pg.url, &capped_at(33)).await;
    let v_c = served(&c);
    until_served(&a, &v_c).await;
    until_served(&b, &v_c).await;

    // A rollback on one replica is published too: the others serve it.
    let (status, body) = b
        .call(
            Method::POST,
            "/v1/policy/rollback",
            Some(ADMIN),
            Some(serde_json::json!({"version": v1})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    until_served(&a, &v1).await;
    until_served(&c, &v1).await;

    let (status, body) = a.call(Method::GET, "/v1/audit/verify", Some(ADMIN), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    for h in [a, b, c] {
        h.state.close().await.unwrap();
    }
    pg.drop_db().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_published_version_no_replica_can_load_is_refused_by_all() {
    let Some(pg) = Pg::new().await else { return };
    let a = replica(&pg.url, &example_text()).await;
    let b = replica(&pg.url, &example_text()).await;
    let v1 = served(&a);

    // A broken policy file on one replica: refused there, never published.
    let broken = example_text().replace("when: input.amount <= 100", "when: input.amount <= \"100\"");
    std::fs::write(a.policy_path(), broken).unwrap();
    let (status, body) = a.call(Method::POST, "/v1/policy/reload", Some(ADMIN), None).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let published = a.state.runtime().store().published_policy().await.unwrap();
    assert_eq!(published.as_deref(), Some(v1.as_str()));

    // A version published whose kept sources do not hash to it (inserted
    // by SQL from v1's, as a tampered or half-written row would be).
    let fake = "f".repeat(64);
    let raw = pg.raw().await;
    raw.execute(
        "INSERT INTO policy_versions (version, label, sources, saved_at) \
         SELECT $1, label, sources, saved_at FROM policy_versions WHERE version = $2",
        &[&fake, &v1],
    )
    .await
    .unwrap();
    raw.batch_execute(&format!(
        "BEGIN; UPDATE rein_policy_published SET version = '{fake}' WHERE id = 1; \
         NOTIFY rein_policy, '{fake}'; COMMIT;"
    ))
    .await
    .unwrap();

    for h in [&a, &b] {
        let health = until_health(h, StatusCode::SERVICE_UNAVAILABLE).await;
        assert_eq!(health["status"], "unavailable", "{health}");
        assert_eq!(health["published_version"], fake.as_str(), "{health}");
        assert_eq!(health["policy_version"], v1.as_str(), "{health}");
        assert!(health["published_version_error"]
            .as_str()
            .is_some_and(|e| !e.is_empty()));
        // It keeps deciding with its last good version.
        let d = h.decide(refund(40, "bot-1")).await;
        assert_eq!(d["effect"], "allow", "{d}");
        assert_eq!(d["policy_version"], v1.as_str());
        assert_eq!(served(h), v1);
    }
    let (_, metrics) = b.call_text(Method::GET, "/metrics", None, None).await;
    assert!(
        metrics.contains("rein_policy_publications_total{operation=\"follow\",result=\"failure\"}"),
        "{metrics}"
    );

    // A good version published again (a reload of good files): both load it
    // and are healthy again.
    std::fs::write(a.policy_path(), capped_at(75)).unwrap();
    let (status, body) = a.call(Method::POST, "/v1/policy/reload", Some(ADMIN), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let v2 = body["policy_version"].as_str().unwrap().to_string();
    until_served(&b, &v2).await;
    for h in [&a, &b] {
        let health = until_health(h, StatusCode::OK).await;
        assert_eq!(health["policy_version"], v2.as_str());
    }
    for h in [a, b] {
        h.state.close().await.unwrap();
    }
    pg.drop_db().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_that_cannot_be_reached_blocks_every_decision_until_it_is_back() {
    let Some(pg) = Pg::new().await else { return };
    let h = replica(&pg.url, &example_text()).await;
    assert_eq!(h.decide(refund(40, "bot-1")).await["effect"], "allow");

    // The database refuses connections and every one it had is cut.
    let admin = connect(&pg.admin).await;
    admin
        .batch_execute(&format!(
            "ALTER DATABASE {0} ALLOW_CONNECTIONS false; \
             SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{0}'",
            pg.name
        ))
        .await
        .unwrap();
    for _ in 0..3 {
        let d = h.decide(refund(40, "bot-1")).await;
        assert_eq!(d["effect"], "block", "no allow while the database is gone: {d}");
    }
    let (status, health) = h.call(Method::GET, "/healthz", None, None).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{health}");
    let (_, metrics) = h.call_text(Method::GET, "/metrics", None, None).await;
    let failed_appends = metrics
        .lines()
        .find(|l| l.starts_with("rein_store_errors_total{operation=\"append\"}"))
        .unwrap_or_else(|| panic!("no store error counted:\n{metrics}"));
    assert!(!failed_appends.ends_with(" 0"), "{failed_appends}");

    // Back: decisions are allowed again without a restart.
    admin
        .batch_execute(&format!("ALTER DATABASE {} ALLOW_CONNECTIONS true", pg.name))
        .await
        .unwrap();
    let started = Instant::now();
    loop {
        let d = h.decide(refund(40, "bot-1")).await;
        if d["effect"] == "allow" {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(20), "no recovery: {d}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    until_health(&h, StatusCode::OK).await;
    let (status, body) = h.call(Method::GET, "/v1/audit/verify", Some(ADMIN), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    h.state.close().await.unwrap();
    pg.drop_db().await;
}

/// A limit and a session rule, for the state across replicas.
const STATEFUL: &str = r#"
default: allow
contracts:
  actor: {id: string}
  actions:
    refund:
      input: {amount: {type: number, min: 0}}
    read_secret:
      input: {path: string}
    send:
      input: {to: string}
rules:
  - id: refund_rate
    action: refund
    effect: block
    limit: {count: 3, window: 1h}
  - id: secret_read
    action: read_secret
    effect: allow
    labels: [secret]
  - id: no_send_after_secret
    action: send
    when: '"secret" in session.labels'
    effect: block
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_and_sessions_hold_across_replicas_and_their_routes_show_them() {
    let Some(pg) = Pg::new().await else { return };
    let a = replica(&pg.url, STATEFUL).await;
    let b = replica(&pg.url, STATEFUL).await;
    let refund = serde_json::json!({"action": "refund", "input": {"amount": 1}, "actor": {"id": "bot-1"}});
    let mut effects = Vec::new();
    for h in [&a, &b, &a, &b, &a] {
        effects.push(h.decide(refund.clone()).await["effect"].as_str().unwrap().to_string());
    }
    assert_eq!(
        effects,
        ["allow", "allow", "allow", "block", "block"],
        "a limit of 3 across replicas"
    );
    // Either replica's route shows what both used.
    for h in [&a, &b] {
        let (status, body) = h.call(Method::GET, "/v1/limits", Some(ALICE), None).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let limits = body["limits"].as_array().unwrap();
        assert_eq!(limits.len(), 1, "{body}");
        assert_eq!(limits[0]["used"], "3", "{body}");
    }
    // A session labelled on one replica is read on the other.
    let secret = serde_json::json!({"action": "read_secret", "input": {"path": "/etc/x"}, "actor": {"id": "bot-1"}, "session": "s1"});
    assert_eq!(a.decide(secret).await["effect"], "allow");
    let send = serde_json::json!({"action": "send", "input": {"to": "x"}, "actor": {"id": "bot-1"}, "session": "s1"});
    assert_eq!(b.decide(send).await["effect"], "block");
    let (status, body) = b
        .call(Method::GET, "/v1/sessions/s1?client=agent-1", Some(ALICE), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body["labels"].to_string().contains("secret"), "{body}");
    for h in [a, b] {
        h.state.close().await.unwrap();
    }
    pg.drop_db().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_with_another_audit_key_is_refused_at_start() {
    let Some(pg) = Pg::new().await else { return };
    let a = replica(&pg.url, &example_text()).await;
    assert_eq!(a.decide(refund(40, "bot-1")).await["effect"], "allow");

    let dir = tempfile::tempdir().unwrap();
    shared_secrets(dir.path());
    std::fs::write(dir.path().join("audit.key"), [8u8; 32]).unwrap();
    let policy = dir.path().join("policy.yaml");
    std::fs::write(&policy, example_text()).unwrap();
    let mut config = ServerConfig::at(vec![policy], StoreLocation::parse(&pg.url));
    config.tokens_path = Some(dir.path().join("tokens.yaml"));
    config.hmac_key_path = Some(dir.path().join("audit.key"));
    config.delegation_key_path = Some(dir.path().join("delegation.key"));
    let refused = AppState::from_config(&config)
        .await
        .err()
        .expect("another key must be refused");
    let message = format!("{refused:#}");
    assert!(message.contains("does not fit the store"), "{message}");

    // Nothing was recorded by the refused replica: the first still verifies.
    let (status, body) = a.call(Method::GET, "/v1/audit/verify", Some(ADMIN), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    a.state.close().await.unwrap();
    pg.drop_db().await;
}
