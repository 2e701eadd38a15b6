//! `rein serve` as a real process: a `kill -9` in the middle of a load run
//! loses no acknowledged decision, and the CLI's audit commands work on the
//! file and through the server.

// Helpers outside `#[test]` functions panic on failure too; that is the report.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn rein() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_rein"));
    c.current_dir(repo()).env("NO_COLOR", "1");
    c
}

/// Kills the server when the test ends, however it ends.
struct Server {
    child: Child,
    url: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn start(db: &Path) -> Server {
    let port = free_port();
    let child = rein()
        .args([
            "serve",
            "--policy",
            "examples/refund/policy.yaml",
            "--listen",
            &format!("127.0.0.1:{port}"),
        ])
        .arg("--db")
        .arg(db)
        .env("REIN_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let server = Server {
        child,
        url: format!("http://127.0.0.1:{port}"),
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if ureq::get(&format!("{}/healthz", server.url)).call().is_ok() {
            return server;
        }
        assert!(Instant::now() < deadline, "the server did not become healthy");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The token of `name` from the tokens file the server wrote.
fn token(dir: &Path, name: &str) -> String {
    let text = std::fs::read_to_string(dir.join("rein-tokens.yaml")).unwrap();
    let mut lines = text
        .lines()
        .skip_while(|l| !l.trim_start().starts_with(&format!("- name: {name}")));
    lines
        .find_map(|l| {
            l.trim()
                .strip_prefix("token: ")
                .map(|t| t.trim_matches('"').to_string())
        })
        .unwrap()
}

fn request(amount: u32) -> serde_json::Value {
    serde_json::json!({
        "action": "refund",
        "input": {"order_id": "ord_abc123", "amount": amount, "currency": "EUR"},
        "actor": {"id": "bot", "role": "agent"},
        "snapshot": {"fraud_flag": false, "refunds_today": 0, "account_age_days": 400}
    })
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(2)))
        .build()
        .into()
}

fn exported_ids(db: &Path) -> HashSet<String> {
    let out = rein().args(["audit", "export", "--db"]).arg(db).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["decision_id"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect()
}

#[test]
fn kill_9_loses_no_acknowledged_decision() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("rein.db");
    let mut server = start(&db);
    let token = token(dir.path(), "agent");
    let acked = Arc::new(Mutex::new(Vec::<String>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..6)
        .map(|c| {
            let (acked, stop, url, token) = (acked.clone(), stop.clone(), server.url.clone(), token.clone());
            std::thread::spawn(move || {
                let agent = agent();
                let deadline = Instant::now() + Duration::from_secs(15);
                let mut i = 0;
                while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                    i += 1;
                    let res = agent
                        .post(&format!("{url}/v1/decide"))
                        .header("Authorization", &format!("Bearer {token}"))
                        .send_json(request(1 + (c * 1000 + i) % 90));
                    let Ok(mut res) = res else { break };
                    if res.status() == 200 {
                        let body: serde_json::Value = res.body_mut().read_json().unwrap();
                        assert_eq!(body["effect"], "allow", "{body}");
                        acked
                            .lock()
                            .unwrap()
                            .push(body["decision_id"].as_str().unwrap().to_string());
                    }
                }
            })
        })
        .collect();
    // Let the load run, then kill the server without warning.
    let deadline = Instant::now() + Duration::from_secs(15);
    while acked.lock().unwrap().len() < 300 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    server.child.kill().unwrap(); // SIGKILL
    server.child.wait().unwrap();
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.join().unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    assert!(
        acked.len() >= 300,
        "only {} decisions were acknowledged before the kill",
        acked.len()
    );

    let verify = rein().args(["audit", "verify", "--db"]).arg(&db).output().unwrap();
    assert!(verify.status.success(), "{}", String::from_utf8_lossy(&verify.stdout));
    let recorded = exported_ids(&db);
    let missing: Vec<&String> = acked.iter().filter(|id| !recorded.contains(*id)).collect();
    assert!(
        missing.is_empty(),
        "{} acknowledged decisions are missing, e.g. {:?}",
        missing.len(),
        missing.first()
    );

    // The store keeps working after the crash: a restarted server appends
    // to the same chain.
    let server = start(&db);
    let res: serde_json::Value = agent()
        .post(&format!("{}/v1/decide", server.url))
        .header("Authorization", &format!("Bearer {token}"))
        .send_json(request(5))
        .unwrap()
        .body_mut()
        .read_json()
        .unwrap();
    assert_eq!(res["effect"], "allow");
    drop(server);
    let verify = rein().args(["audit", "verify", "--db"]).arg(&db).output().unwrap();
    let text = String::from_utf8_lossy(&verify.stdout);
    assert!(verify.status.success() && text.starts_with("ok: "), "{text}");
}

#[test]
fn audit_and_approvals_commands_work_on_the_file_and_through_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("rein.db");
    let server = start(&db);
    let (agent_token, approver, admin) = (
        token(dir.path(), "agent"),
        token(dir.path(), "approver"),
        token(dir.path(), "admin"),
    );
    let decide = |body: serde_json::Value| -> serde_json::Value {
        agent()
            .post(&format!("{}/v1/decide", server.url))
            .header("Authorization", &format!("Bearer {agent_token}"))
            .send_json(body)
            .unwrap()
            .body_mut()
            .read_json()
            .unwrap()
    };
    assert_eq!(decide(request(40))["effect"], "allow");
    assert_eq!(decide(request(1500))["effect"], "block");
    let pending = decide(request(500));
    assert_eq!(pending["effect"], "require_approval");
    let id = pending["approval"]["id"].as_str().unwrap().to_string();

    let list = rein()
        .args(["approvals", "list", "--server", &server.url, "--token", &approver])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&list.stdout).contains(&id));
    let grant = rein()
        .args([
            "approvals",
            "grant",
            &id,
            "--server",
            &server.url,
            "--token",
            &approver,
            "--comment",
            "ok",
        ])
        .output()
        .unwrap();
    assert!(grant.status.success(), "{}", String::from_utf8_lossy(&grant.stderr));
    let mut again = request(500);
    again["approval"] = id.clone().into();
    assert_eq!(decide(again.clone())["effect"], "allow");
    assert_eq!(decide(again)["effect"], "block", "an approval is used once");

    let verify = rein()
        .args(["audit", "verify", "--server", &server.url, "--token", &admin])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&verify.stdout).trim(),
        "ok: 5 records, chain intact"
    );
    let blocks = rein()
        .args([
            "audit",
            "query",
            "--server",
            &server.url,
            "--token",
            &admin,
            "--effect",
            "block",
            "--format",
            "jsonl",
        ])
        .output()
        .unwrap();
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&blocks.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    assert!(lines.iter().all(|r| r["effect"] == "block"));
    // The agent's token may not read the audit log.
    let denied = rein()
        .args(["audit", "verify", "--server", &server.url, "--token", &agent_token])
        .output()
        .unwrap();
    assert!(!denied.status.success());
    drop(server);

    // The same answers from the file.
    let verify = rein().args(["audit", "verify", "--db"]).arg(&db).output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&verify.stdout).trim(),
        "ok: 5 records, chain intact"
    );
    assert_eq!(exported_ids(&db).len(), 5, "one record per decision");
    let missing = rein().args(["audit", "verify", "--db", "no/such.db"]).output().unwrap();
    assert_eq!(missing.status.code(), Some(2));
}
