//! PostgreSQL stopped and started again under a store: appends, the lease
//! and publication fail while it is down (clearly, in bounded time) and
//! work again once it is back, on the same store object.
//!
//! Runs its OWN throwaway cluster (initdb into a temporary directory, on a
//! free port), never the shared one. Needs PostgreSQL's server binaries
//! (`/usr/lib/postgresql/<major>/bin`, or the folder in
//! `REIN_TEST_PG_BIN`); skipped with a note without them, except under
//! `CI=true` with `REIN_TEST_PG` set, where that is a failure.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
mod postgres_support;

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use rein_store::{PostgresOptions, PostgresStore, Store, Verification};

/// The folder of `initdb` and `pg_ctl`.
fn server_bin() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("REIN_TEST_PG_BIN") {
        return Some(PathBuf::from(dir));
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok())
        .map(|e| e.path().join("bin"))
        .filter(|bin| bin.join("initdb").is_file())
        .collect();
    found.sort();
    found.pop()
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// A cluster of its own, stopped and removed when dropped.
struct Cluster {
    bin: PathBuf,
    dir: tempfile::TempDir,
    port: u16,
}

impl Cluster {
    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Runs a server program (as `postgres` when we are root: the server
    /// refuses to run as root).
    fn run(&self, program: &str, args: &[&str]) -> std::process::Output {
        let path = self.bin.join(program);
        let out = if is_root() {
            let mut line = shell_quote(&path.to_string_lossy());
            for a in args {
                line.push(' ');
                line.push_str(&shell_quote(a));
            }
            Command::new("su")
                .args(["postgres", "-s", "/bin/sh", "-c", &line])
                .output()
        } else {
            Command::new(&path).args(args).output()
        };
        out.unwrap()
    }

    fn start(&self) {
        let data = self.data();
        let log = self.dir.path().join("log");
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            self.port,
            self.dir.path().display()
        );
        let out = self.run(
            "pg_ctl",
            &[
                "-D",
                &data.to_string_lossy(),
                "-o",
                &options,
                "-l",
                &log.to_string_lossy(),
                "-w",
                "start",
            ],
        );
        assert!(
            out.status.success(),
            "pg_ctl start: {}{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    }

    fn stop(&self, mode: &str) {
        let out = self.run(
            "pg_ctl",
            &["-D", &self.data().to_string_lossy(), "-m", mode, "-w", "stop"],
        );
        assert!(
            out.status.success(),
            "pg_ctl stop: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn url(&self) -> String {
        format!("postgres://rein@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = self.run(
            "pg_ctl",
            &["-D", &self.data().to_string_lossy(), "-m", "immediate", "stop"],
        );
    }
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// Makes a cluster, or `None` (skipped) where none can be made.
fn cluster() -> Option<Cluster> {
    let required = std::env::var("CI").as_deref() == Ok("true") && std::env::var_os("REIN_TEST_PG").is_some();
    let Some(bin) = server_bin() else {
        assert!(
            !required,
            "PostgreSQL's server binaries are missing: CI must run the restart test"
        );
        eprintln!("note: no PostgreSQL server binaries (initdb); restart test skipped");
        return None;
    };
    let dir = tempfile::Builder::new().prefix("rein-pg-restart-").tempdir().unwrap();
    if is_root() {
        let uid = id_of("-u");
        let gid = id_of("-g");
        std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid)).unwrap();
    }
    let cluster = Cluster {
        bin,
        dir,
        port: free_port(),
    };
    let out = cluster.run(
        "initdb",
        &[
            "-D",
            &cluster.data().to_string_lossy(),
            "-U",
            "rein",
            "--auth=trust",
            "-E",
            "UTF8",
            "--no-sync",
        ],
    );
    assert!(
        out.status.success(),
        "initdb: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    cluster.start();
    Some(cluster)
}

fn id_of(flag: &str) -> u32 {
    let out = Command::new("id").args([flag, "postgres"]).output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

fn quick() -> PostgresOptions {
    PostgresOptions {
        pool_size: 4,
        pool_wait_timeout: Duration::from_secs(2),
        connect_timeout: Duration::from_secs(2),
        statement_timeout: Duration::from_secs(5),
        idle_in_transaction_timeout: Duration::from_secs(10),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_database_is_used_again_without_a_restart() {
    let Some(cluster) = cluster() else { return };
    let store = PostgresStore::open(&cluster.url(), quick()).await.unwrap();
    let other = PostgresStore::open(&cluster.url(), quick()).await.unwrap();
    let mut rx = other.policy_publications().unwrap();
    for i in 0..5 {
        store.append(common::entry(i)).await.unwrap();
    }
    let lease = store.acquire_state_lease(0).await.unwrap();

    cluster.stop("fast");
    // Down: every write fails, in bounded time, with a clear error.
    let started = Instant::now();
    let err = store.append(common::entry(5)).await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(10), "{:?}", started.elapsed());
    assert!(err.0.contains("not committed"), "{err}");
    assert!(store.append_once(common::entry(6)).await.is_err());
    assert!(store.audit_len().await.is_err());
    assert!(store
        .append_leased(common::entry(7), vec![], false, lease.generation)
        .await
        .is_err());
    assert!(other.acquire_state_lease(0).await.is_err());
    assert!(store.publish_policy("v1").await.is_err());
    assert!(store.probe_write().await.is_err());

    cluster.start();
    // Back: the same store objects work again.
    let rec = store.append(common::entry(8)).await.unwrap();
    assert_eq!(rec.seq, 6);
    assert!(store.append_once(common::entry(9)).await.unwrap().is_some());
    store.probe_write().await.unwrap();
    // The lease held across the restart was lost with its connection: its
    // appends are refused, a new one is taken.
    assert!(store
        .append_leased(common::entry(10), vec![], false, lease.generation)
        .await
        .is_err());
    let again = store.acquire_state_lease(5).await.unwrap();
    assert!(again.generation > lease.generation);
    store
        .append_leased(common::entry(11), vec![], false, again.generation)
        .await
        .unwrap()
        .unwrap();
    store.release_state_lease(again.generation).await.unwrap();
    // The listener reconnected: a publication reaches the other replica.
    store.publish_policy("v2").await.unwrap();
    tokio::time::timeout(Duration::from_secs(15), async {
        loop {
            rx.changed().await.unwrap();
            if rx.borrow_and_update().as_deref() == Some("v2") {
                break;
            }
        }
    })
    .await
    .expect("the listener is back");
    assert_eq!(store.verify_audit().await.unwrap(), Verification::Intact { records: 8 });
    drop(store);
    drop(other);
    drop(cluster);
}
