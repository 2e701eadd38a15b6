//! Opening a PostgreSQL store: migrations, versions, refusals.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod postgres_support;

use postgres_support::TestDb;
use rein_store::{PostgresOptions, PostgresStore, Store};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_migrates_once_and_reopens() {
    let Some(db) = TestDb::new().await else { return };
    // Several replicas starting at once: one migrates, the others wait.
    let opens: Vec<_> = (0..3)
        .map(|_| {
            let url = db.url.clone();
            tokio::spawn(async move { PostgresStore::open(&url, PostgresOptions::default()).await })
        })
        .collect();
    for open in opens {
        let store = open.await.unwrap().unwrap();
        assert!(store.is_shared());
    }
    let raw = db.raw().await;
    let version: i32 = raw
        .query_one("SELECT version FROM rein_schema_version", &[])
        .await
        .unwrap()
        .get(0);
    assert!(version >= 1);
    // A newer schema is refused.
    raw.execute("UPDATE rein_schema_version SET version = version + 100", &[])
        .await
        .unwrap();
    let err = PostgresStore::open(&db.url, PostgresOptions::default())
        .await
        .unwrap_err();
    assert!(err.0.contains("newer"), "{err}");
    drop(raw);
    db.drop_db().await;
}
