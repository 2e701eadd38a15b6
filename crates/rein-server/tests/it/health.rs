//! Health and keys: `/healthz` reports a store that takes no appends, and a
//! store refuses an audit key other than its own.

use crate::common::*;
use axum::http::{Method, StatusCode};
use rein_server::{AppState, ServerConfig};
use std::io::Write;
use std::process::Command;

/// A small tmpfs mounted for the test (root only), unmounted when dropped.
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    fn mount(size: &str) -> Option<SmallDisk> {
        let dir = tempfile::tempdir().unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .output()
            .is_ok_and(|o| o.status.success());
        ok.then_some(SmallDisk { dir })
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(self.dir.path()).status();
    }
}

/// Fills the filesystem of `path` up: writes until the disk is full.
fn fill(path: &std::path::Path) {
    let mut f = std::fs::File::create(path).unwrap();
    let block = vec![0u8; 4096];
    while f.write_all(&block).is_ok() {}
    let _ = f.sync_all();
}

/// On a real full disk every decision blocks and `/healthz` says so (503,
/// with why); once space is back and an append succeeds, it is healthy.
#[tokio::test]
async fn healthz_is_unhealthy_while_the_disk_is_full() {
    let Some(disk) = SmallDisk::mount("2m") else {
        eprintln!("skipped: mounting a tmpfs needs root");
        return;
    };
    let db = disk.dir.path().join("rein.db");
    let h = Harness::with(|c| c.store = rein_store::StoreLocation::Sqlite(db.clone())).await;
    assert_eq!(h.decide(refund(40, "bot-1")).await["effect"], "allow");
    let (status, _) = h.call(Method::GET, "/healthz", None, None).await;
    assert_eq!(status, StatusCode::OK);

    let filler = disk.dir.path().join("filler");
    fill(&filler);
    let mut blocked = None;
    for _ in 0..2000 {
        let d = h.decide(refund(40, "bot-1")).await;
        if d["effect"] == "block" {
            blocked = Some(d);
            break;
        }
    }
    let blocked = blocked.expect("a full disk must block a decision");
    assert!(
        blocked["reasons"][0]
            .as_str()
            .unwrap()
            .contains("could not be recorded"),
        "{blocked}"
    );
    let (status, body) = h.call(Method::GET, "/healthz", None, None).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["status"], "unavailable");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("audit log takes no appends") && message.contains("full"),
        "{message}"
    );

    std::fs::remove_file(&filler).unwrap();
    let d = h.decide(refund(40, "bot-1")).await;
    assert_eq!(d["effect"], "allow", "{d}");
    let (status, body) = h.call(Method::GET, "/healthz", None, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    h.state.close().await.unwrap();
    drop(h);
}

/// Once space is back, `/healthz` is healthy again without waiting for a
/// decision: a server taken out of rotation for being unhealthy gets no
/// decisions, so it would stay out for ever. While the disk is still
/// full, it stays unhealthy (its probing write fails too).
#[tokio::test]
async fn healthz_recovers_when_space_is_back_without_a_decision() {
    let Some(disk) = SmallDisk::mount("2m") else {
        eprintln!("skipped: mounting a tmpfs needs root");
        return;
    };
    let db = disk.dir.path().join("rein.db");
    let h = Harness::with(|c| c.store = rein_store::StoreLocation::Sqlite(db.clone())).await;
    assert_eq!(h.decide(refund(40, "bot-1")).await["effect"], "allow");
    let filler = disk.dir.path().join("filler");
    fill(&filler);
    let mut blocked = false;
    for _ in 0..2000 {
        if h.decide(refund(40, "bot-1")).await["effect"] == "block" {
            blocked = true;
            break;
        }
    }
    assert!(blocked, "a full disk must block a decision");
    for _ in 0..3 {
        let (status, body) = h.call(Method::GET, "/healthz", None, None).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    }
    assert_eq!(h.decide(refund(40, "bot-1")).await["effect"], "block");

    std::fs::remove_file(&filler).unwrap();
    // Probes run at most once a second: healthy within a few.
    let mut healthy = false;
    for _ in 0..30 {
        let (status, _) = h.call(Method::GET, "/healthz", None, None).await;
        if status == StatusCode::OK {
            healthy = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(healthy, "/healthz must recover once space is back");
    assert_eq!(h.decide(refund(40, "bot-1")).await["effect"], "allow");
    h.state.close().await.unwrap();
    drop(h);
}

/// A server refuses to start with an audit key other than the one its
/// store was first used with, and says which file to check.
#[tokio::test]
async fn another_audit_key_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let config = ServerConfig::new(vec![example_policy()], dir.path().join("rein.db"));
    let state = AppState::from_config(&config).await.unwrap();
    state.close().await.unwrap();
    drop(state);
    let key = config.hmac_key_file();
    std::fs::write(&key, [9u8; 32]).unwrap();
    let e = AppState::from_config(&config)
        .await
        .err()
        .expect("another key is refused");
    let text = format!("{e:#}");
    assert!(text.contains("not the one this store was first used with"), "{text}");
    assert!(text.contains("rein-audit.key"), "{text}");
}
