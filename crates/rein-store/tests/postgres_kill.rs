//! A replica killed with SIGKILL mid-batch, on PostgreSQL: every record it
//! acknowledged is in the log with its state, no state is without its
//! record, the chain verifies, and the other replica goes on appending.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
mod postgres_support;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use postgres_support::TestDb;
use rein_engine::state::{BucketKey, Decimal, StateWrite};
use rein_store::{AuditEntry, PostgresOptions, PostgresStore, Store, Verification};

/// Makes the test the child that appends until it is killed.
const CHILD_URL: &str = "REIN_PG_KILL_TEST_CHILD_URL";

fn entry(id: &str) -> AuditEntry {
    let mut e = common::entry(2);
    e.decision_id = id.into();
    e
}

fn use_of(id: &str) -> StateWrite {
    StateWrite::Use {
        decision_id: id.into(),
        bucket: BucketKey {
            rule: "rate".into(),
            per: vec![],
        },
        time: jiff::Timestamp::now(),
        amount: Decimal::from_str("1").unwrap(),
    }
}

/// Child: 16 tasks appending decisions with state (group commit), each
/// acknowledged one printed; stops by itself after 30 s.
async fn child_appends(url: &str) {
    let store = Arc::new(PostgresStore::open(url, PostgresOptions::default()).await.unwrap());
    let deadline = Instant::now() + Duration::from_secs(30);
    let tasks: Vec<_> = (0..16u64)
        .map(|task| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                let mut i = 0u64;
                while Instant::now() < deadline {
                    let id = format!("k{task}-{i}");
                    store.append_with_state(entry(&id), vec![use_of(&id)]).await.unwrap();
                    let mut out = std::io::stdout().lock();
                    writeln!(out, "acked {id}").unwrap();
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
async fn a_killed_replica_loses_nothing_it_acknowledged() {
    if let Ok(url) = std::env::var(CHILD_URL) {
        child_appends(&url).await;
        return;
    }
    let Some(db) = TestDb::new().await else { return };
    let other = Arc::new(db.open().await);
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "a_killed_replica_loses_nothing_it_acknowledged",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_URL, &db.url)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut acked = Vec::new();
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Some(at) = line.find("acked ") {
                acked.push(line[at + "acked ".len()..].trim().to_owned());
                if acked.len() == 300 {
                    let _ = tx.send(());
                }
            }
        }
        acked
    });
    // The other replica appends meanwhile, to the same chain.
    let appending = {
        let other = Arc::clone(&other);
        tokio::spawn(async move {
            let mut n = 0u64;
            let deadline = Instant::now() + Duration::from_secs(60);
            while Instant::now() < deadline {
                let id = format!("o-{n}");
                if other.append_with_state(entry(&id), vec![use_of(&id)]).await.is_err() {
                    break;
                }
                n += 1;
                if n >= 200 {
                    break;
                }
            }
            n
        })
    };
    tokio::task::spawn_blocking(move || rx.recv_timeout(Duration::from_secs(60)))
        .await
        .unwrap()
        .expect("the child acknowledged 300 decisions");
    child.kill().unwrap(); // SIGKILL, mid-batch most likely
    child.wait().unwrap();
    let acked = reader.join().unwrap();
    assert!(acked.len() >= 300);
    let appended_by_other = appending.await.unwrap();
    assert_eq!(appended_by_other, 200, "the other replica goes on");
    // And after the kill, still.
    other.append(entry("after-kill")).await.unwrap();

    let Verification::Intact { records } = other.verify_audit().await.unwrap() else {
        panic!("the chain does not verify");
    };
    let raw = db.raw().await;
    let stored: BTreeSet<String> = raw
        .query("SELECT decision_id FROM audit", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(stored.len() as u64, records);
    for id in &acked {
        assert!(stored.contains(id), "acknowledged {id} lost");
    }
    // Every use with its own record, in the record's seq.
    let orphans: i64 = raw
        .query_one(
            "SELECT count(*) FROM limit_uses u WHERE NOT EXISTS \
             (SELECT 1 FROM audit a WHERE a.seq = u.seq AND a.decision_id = u.decision_id)",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(orphans, 0);
    let uses: i64 = raw
        .query_one("SELECT count(*) FROM limit_uses", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(uses as u64, records - 1, "every record but the last has its use");
    drop(other);
    db.drop_db().await;
}
