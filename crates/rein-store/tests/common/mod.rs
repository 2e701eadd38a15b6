//! Shared helpers for the integration tests, and the differential harness:
//! one test body run against every backend ([`TestStore`], [`differential!`]).
//!
//! PostgreSQL variants run on the cluster named by `REIN_TEST_PG` (a URL
//! whose user may create databases), each in a fresh database of its own,
//! dropped at the end. Without `REIN_TEST_PG` they print a note and pass,
//! except under `CI=true`, where they fail: CI starts a cluster
//! (`.ci/postgres`) and must run them.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rein_store::{AuditEntry, PostgresOptions, PostgresStore, SqliteStore, Store};
use serde_json::json;

/// A store in a fresh temporary directory (kept alive by the `TempDir`).
pub fn open_temp() -> (tempfile::TempDir, SqliteStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("rein.db")).unwrap();
    (dir, store)
}

/// A raw connection to the store's file, as an attacker (or an operator)
/// would open it, with the append-only triggers dropped.
pub fn attacker(path: &Path) -> rusqlite::Connection {
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.execute_batch("DROP TRIGGER IF EXISTS audit_no_update; DROP TRIGGER IF EXISTS audit_no_delete;")
        .unwrap();
    conn
}

/// A varied entry: `i` picks the actor, action, effect, rules and session.
pub fn entry(i: u64) -> AuditEntry {
    let actors = ["alice", "bob", "carol"];
    let actions = ["refund", "send_email", "delete_user"];
    let effects = ["allow", "block", "require_approval"];
    AuditEntry {
        decision_id: format!("dec-{i}"),
        time: format!("2025-06-01T12:00:{:02}.{:06}Z", i % 60, i),
        phase: if i.is_multiple_of(2) { "before" } else { "after" }.into(),
        action: actions[(i % 3) as usize].into(),
        input: json!({"amount": i * 10, "currency": "EUR", "lines": [{"sku": "a", "qty": i}]}),
        actor: json!({"id": actors[(i % 3) as usize], "roles": ["agent"]}),
        snapshot: json!({"refunds_today": i}),
        output: if i % 2 == 1 { Some(json!({"ok": true})) } else { None },
        error: None,
        session: if i.is_multiple_of(4) {
            None
        } else {
            Some(format!("s{}", i % 4))
        },
        effect: effects[(i % 3) as usize].into(),
        rules: if i.is_multiple_of(3) {
            vec![]
        } else {
            vec![format!("rule-{}", i % 5), "common".into()]
        },
        reasons: vec![format!("reason {i}")],
        policy_version: "pv1".into(),
        latency_us: 40 + i,
        approval: None,
        client: None,
        policy_version_label: None,
        actor_source: None,
        shadow: None,
        activation: None,
        trace: None,
    }
}

/// The environment variable naming the PostgreSQL cluster of the tests.
pub const TEST_PG: &str = "REIN_TEST_PG";

/// The URL of the test cluster, if one is given. Under `CI=true` a missing
/// one is a failure: CI must run the PostgreSQL variants, not skip them.
pub fn test_pg_url(test: &str) -> Option<String> {
    match std::env::var(TEST_PG) {
        Ok(url) if !url.is_empty() => Some(url),
        _ if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("{TEST_PG} is not set: run .ci/postgres")
        }
        _ => {
            eprintln!("{test}: skipped: {TEST_PG} is not set (run .ci/postgres to start a cluster)");
            None
        }
    }
}

/// `url` naming database `db` instead of its own (query parameters kept).
pub fn with_database(url: &str, db: &str) -> String {
    let (scheme, rest) = url.split_once("://").expect("a postgres:// URL");
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let query = tail.find('?').map_or("", |at| &tail[at..]);
    format!("{scheme}://{authority}/{db}{query}")
}

/// A fresh database on the test cluster, dropped (with whatever still
/// connects to it) when this is dropped.
pub struct TestDb {
    /// The cluster's URL (its maintenance database).
    admin: String,
    /// The database's name.
    pub name: String,
    /// The URL of the database.
    pub url: String,
}

impl TestDb {
    /// Creates `rein_t_<random>` on the cluster at `admin`.
    pub async fn create(admin: &str) -> TestDb {
        let mut bytes = [0u8; 8];
        getrandom::fill(&mut bytes).unwrap();
        let name = format!(
            "rein_t_{}",
            bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()
        );
        let client = pg_connect(admin).await;
        client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .unwrap_or_else(|e| panic!("cannot create the test database {name}: {e}"));
        TestDb {
            admin: admin.to_owned(),
            url: with_database(admin, &name),
            name,
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let admin = self.admin.clone();
        let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        // Its own thread and runtime: drop may run inside an async test.
        let dropped = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            rt.block_on(async {
                let (client, conn) = tokio_postgres::connect(&admin, tokio_postgres::NoTls).await.ok()?;
                let task = tokio::spawn(conn);
                let done = client.batch_execute(&sql).await.ok();
                drop(client);
                let _ = task.await;
                done
            })
        })
        .join();
        if !matches!(dropped, Ok(Some(()))) {
            eprintln!("note: the test database {} was not dropped", self.name);
        }
    }
}

/// A client of `url` (its connection runs on the current runtime).
pub async fn pg_connect(url: &str) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to the test cluster: {e}"));
    tokio::spawn(async move {
        let _ = conn.await;
    });
    client
}

/// Which database a [`TestStore`] keeps its data in.
pub enum Backend {
    /// A SQLite file in a temporary directory.
    Sqlite {
        /// The open store (for what only SQLite has); dropped before its
        /// directory.
        sqlite: Arc<SqliteStore>,
        /// Kept alive with the store.
        dir: tempfile::TempDir,
    },
    /// A fresh PostgreSQL database.
    Postgres {
        /// The database, dropped last.
        db: TestDb,
    },
}

/// A store of one backend, opened on a fresh database, for a test body
/// that runs against each (see [`differential!`]). Derefs to the store.
pub struct TestStore {
    /// `sqlite` or `postgres`, for messages.
    pub name: &'static str,
    store: Option<Arc<dyn Store>>,
    /// Declared after `store`: the database outlives it.
    pub backend: Backend,
}

impl Deref for TestStore {
    type Target = dyn Store;
    fn deref(&self) -> &(dyn Store + 'static) {
        self.store.as_deref().expect("the store is open")
    }
}

impl TestStore {
    /// A store on a fresh SQLite file.
    pub async fn sqlite() -> TestStore {
        let dir = tempfile::tempdir().unwrap();
        let sqlite = Arc::new(SqliteStore::open(dir.path().join("rein.db")).unwrap());
        TestStore {
            name: "sqlite",
            store: Some(Arc::clone(&sqlite) as Arc<dyn Store>),
            backend: Backend::Sqlite { dir, sqlite },
        }
    }

    /// A store on a fresh PostgreSQL database, `None` (after a note) when
    /// no cluster is given outside CI.
    pub async fn postgres(test: &str) -> Option<TestStore> {
        let admin = test_pg_url(test)?;
        let db = TestDb::create(&admin).await;
        let store = open_postgres(&db.url).await;
        Some(TestStore {
            name: "postgres",
            store: Some(Arc::new(store)),
            backend: Backend::Postgres { db },
        })
    }

    /// The store, shared (for tasks).
    pub fn arc(&self) -> Arc<dyn Store> {
        Arc::clone(self.store.as_ref().expect("the store is open"))
    }

    /// Whether this is the PostgreSQL one.
    pub fn is_postgres(&self) -> bool {
        matches!(self.backend, Backend::Postgres { .. })
    }

    /// The SQLite file, for a SQLite store.
    pub fn sqlite_path(&self) -> Option<PathBuf> {
        match &self.backend {
            Backend::Sqlite { dir, .. } => Some(dir.path().join("rein.db")),
            Backend::Postgres { .. } => None,
        }
    }

    /// The database's URL, for a PostgreSQL store.
    pub fn pg_url(&self) -> Option<&str> {
        match &self.backend {
            Backend::Postgres { db } => Some(&db.url),
            Backend::Sqlite { .. } => None,
        }
    }

    /// Closes the store (a SQLite store's writer finishes and stops; a
    /// PostgreSQL store's connections close) and opens the same database
    /// again, as a restarted process would.
    pub async fn reopen(&mut self) {
        let old = self.store.take();
        match &mut self.backend {
            Backend::Sqlite { dir, sqlite } => {
                sqlite.close().await.unwrap();
                drop(old);
                let path = dir.path().join("rein.db");
                // Every handle of the old store must be gone before its
                // file is opened again.
                let fresh = Arc::new(SqliteStore::open(path).unwrap());
                *sqlite = Arc::clone(&fresh);
                self.store = Some(fresh);
            }
            Backend::Postgres { db } => {
                drop(old);
                self.store = Some(Arc::new(open_postgres(&db.url).await));
            }
        }
    }

    /// Runs `sql` on the database behind the store's back, as an operator
    /// or an attacker with access to it would: `sqlite` on a SQLite store,
    /// `postgres` on a PostgreSQL one. Returns the rows changed by the
    /// last statement.
    pub async fn raw_exec(&self, sqlite: &str, postgres: &str) -> u64 {
        let sql = if self.is_postgres() { postgres } else { sqlite };
        self.raw_try(sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    /// Runs `sql` (the same text on both backends) behind the store's
    /// back; the rows changed by its last statement, or the database's
    /// error.
    pub async fn raw_try(&self, sql: &str) -> Result<u64, String> {
        match &self.backend {
            Backend::Sqlite { dir, .. } => {
                let conn = rusqlite::Connection::open(dir.path().join("rein.db")).unwrap();
                conn.execute_batch(sql).map_err(|e| e.to_string())?;
                Ok(conn.changes())
            }
            Backend::Postgres { db } => {
                let client = pg_connect(&db.url).await;
                let mut last = 0;
                for message in client.simple_query(sql).await.map_err(|e| {
                    // The server's own message, not only "db error".
                    e.as_db_error()
                        .map_or_else(|| e.to_string(), |d| d.message().to_owned())
                })? {
                    if let tokio_postgres::SimpleQueryMessage::CommandComplete(n) = message {
                        last = n;
                    }
                }
                Ok(last)
            }
        }
    }

    /// The first column of the rows of `sql` (the same text on both
    /// backends), as text (`None` for NULL).
    pub async fn raw_column(&self, sql: &str) -> Vec<Option<String>> {
        match &self.backend {
            Backend::Sqlite { dir, .. } => {
                let conn = rusqlite::Connection::open(dir.path().join("rein.db")).unwrap();
                let mut stmt = conn.prepare(sql).unwrap();
                let rows = stmt
                    .query_map([], |r| {
                        let v: rusqlite::types::Value = r.get(0)?;
                        Ok(match v {
                            rusqlite::types::Value::Null => None,
                            rusqlite::types::Value::Integer(i) => Some(i.to_string()),
                            rusqlite::types::Value::Real(f) => Some(f.to_string()),
                            rusqlite::types::Value::Text(t) => Some(t),
                            rusqlite::types::Value::Blob(b) => Some(String::from_utf8_lossy(&b).into_owned()),
                        })
                    })
                    .unwrap();
                rows.collect::<Result<_, _>>().unwrap()
            }
            Backend::Postgres { db } => {
                let client = pg_connect(&db.url).await;
                let mut out = Vec::new();
                for message in client.simple_query(sql).await.unwrap_or_else(|e| panic!("{sql}: {e}")) {
                    if let tokio_postgres::SimpleQueryMessage::Row(row) = message {
                        out.push(row.get(0).map(str::to_owned));
                    }
                }
                out
            }
        }
    }

    /// Drops a PostgreSQL store's database under it (its connections
    /// ended), as a database lost or unreachable would leave the store.
    pub async fn drop_database_now(&self) {
        let Backend::Postgres { db } = &self.backend else {
            panic!("only a PostgreSQL store's database can be dropped");
        };
        pg_connect(&db.admin)
            .await
            .batch_execute(&format!("DROP DATABASE {} WITH (FORCE)", db.name))
            .await
            .unwrap();
    }

    /// The rows of `table`.
    pub async fn raw_count(&self, table: &str) -> i64 {
        let n = self.raw_column(&format!("SELECT count(*) FROM {table}")).await;
        n[0].as_deref().unwrap().parse().unwrap()
    }
}

/// Opens the PostgreSQL store at `url`.
pub async fn open_postgres(url: &str) -> PostgresStore {
    PostgresStore::open(url, PostgresOptions::default())
        .await
        .unwrap_or_else(|e| panic!("cannot open the PostgreSQL store: {e}"))
}

/// For each `body` (an `async fn body(store: TestStore)`), a module `body`
/// with the tests `sqlite` and `postgres`, running it on each backend. A
/// test filter picks a backend: `cargo test -p rein-store postgres`.
#[macro_export]
macro_rules! differential {
    ($($body:ident),* $(,)?) => {$(
        mod $body {
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn sqlite() {
                super::$body($crate::common::TestStore::sqlite().await).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn postgres() {
                let test = concat!(module_path!(), "::postgres");
                if let Some(store) = $crate::common::TestStore::postgres(test).await {
                    super::$body(store).await;
                }
            }
        }
    )*};
}
