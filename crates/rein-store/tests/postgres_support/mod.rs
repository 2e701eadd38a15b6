//! What the PostgreSQL tests share: a fresh database per test on the
//! cluster named by `REIN_TEST_PG` (skipped, with a note, when it is unset;
//! a failure under `CI=true`).

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod cluster;

use rein_store::{PostgresOptions, PostgresStore};

/// A database made for one test, dropped when this is dropped.
pub struct TestDb {
    admin: String,
    name: String,
    pub url: String,
}

/// The cluster's URL, or `None` (the test is skipped) when unset outside CI.
pub fn cluster() -> Option<String> {
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

/// `url` with its database replaced by `db`.
pub fn with_database(url: &str, db: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let path_start = base[scheme_end..].find('/').map(|i| i + scheme_end);
    let host = match path_start {
        Some(i) => &base[..i],
        None => base,
    };
    match query {
        Some(q) => format!("{host}/{db}?{q}"),
        None => format!("{host}/{db}"),
    }
}

async fn admin_client(url: &str) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(async move {
        let _ = conn.await;
    });
    client
}

impl TestDb {
    /// A fresh database, or `None` when the tests are skipped.
    pub async fn new() -> Option<TestDb> {
        let admin = cluster()?;
        let mut random = [0u8; 8];
        getrandom::fill(&mut random).unwrap();
        let name = format!(
            "rein_t_{}",
            random.iter().map(|b| format!("{b:02x}")).collect::<String>()
        );
        let client = admin_client(&admin).await;
        client.batch_execute(&format!("CREATE DATABASE {name}")).await.unwrap();
        let url = with_database(&admin, &name);
        Some(TestDb { admin, name, url })
    }

    pub async fn open(&self) -> PostgresStore {
        PostgresStore::open(&self.url, PostgresOptions::default())
            .await
            .unwrap()
    }

    /// A plain connection to the test's database, for tampering.
    pub async fn raw(&self) -> tokio_postgres::Client {
        admin_client(&self.url).await
    }

    /// Drops the database (every connection to it is ended first).
    pub async fn drop_db(self) {
        let client = admin_client(&self.admin).await;
        let _ = client
            .batch_execute(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name))
            .await;
    }
}
