//! Stateful rules end to end: a real `rein serve` process with a real
//! SQLite file, real HTTP over 127.0.0.1, `rein limits` on the file and
//! through the server, and a `kill -9` under load.
//!
//! Every server is killed when its test ends, however it ends, and every
//! wait has a deadline.

// Helpers outside `#[test]` functions panic on failure too; that is the report.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde_json::{json, Value};
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

const AGENT: &str = "agent-token-0123456789abcdef";
const APPROVER: &str = "approver-token-0123456789abcdef";
const ADMIN: &str = "admin-token-0123456789abcdef";
const START_TIMEOUT: Duration = Duration::from_secs(20);
const HTTP_TIMEOUT: Duration = Duration::from_secs(5);

const POLICY: &str = r#"
default: allow
contracts:
  actor: {id: string}
  actions:
    refund:
      input:
        amount: {type: number, min: 0}
        customer: string
rules:
  - id: refund_rate
    action: refund
    effect: block
    limit: {count: 100000, per: [actor.id], window: 1h}
  - id: refund_budget
    action: refund
    effect: block
    limit: {sum: input.amount, max: 2, per: [input.customer], window: 1h}
"#;

fn rein() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_rein"));
    c.env("NO_COLOR", "1").env_remove("REIN_TOKEN").stdin(Stdio::null());
    c
}

/// Runs `rein ARGS` to the end (bounded).
fn run(args: &[&str]) -> Output {
    let mut child = rein()
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("rein {args:?} did not finish in 30 s");
        }
        thread::sleep(Duration::from_millis(10));
    }
    child.wait_with_output().unwrap()
}

fn text(out: &[u8]) -> String {
    String::from_utf8_lossy(out).into_owned()
}

/// A `rein serve` child, killed when dropped.
struct Server {
    child: Child,
    url: String,
    log: PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    fn start(dir: &Path, extra: &[&str]) -> Server {
        for attempt in 0..3 {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let log = dir.join(format!("serve-{attempt}-{port}.log"));
            let child = rein()
                .args(["serve", "--policy"])
                .arg(dir.join("policy.yaml"))
                .arg("--db")
                .arg(dir.join("rein.db"))
                .arg("--tokens")
                .arg(dir.join("tokens.yaml"))
                .args(["--listen", &format!("127.0.0.1:{port}")])
                .args(extra)
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(&log).unwrap())
                .spawn()
                .unwrap();
            let mut server = Server {
                child,
                url: format!("http://127.0.0.1:{port}"),
                log,
            };
            let deadline = Instant::now() + START_TIMEOUT;
            loop {
                if let Ok(r) = client().get(format!("{}/healthz", server.url)).call() {
                    if r.status() == 200 {
                        return server;
                    }
                }
                if server.child.try_wait().unwrap().is_some() {
                    let log = std::fs::read_to_string(&server.log).unwrap_or_default();
                    assert!(log.contains("cannot listen"), "`rein serve` exited:\n{log}");
                    break;
                }
                assert!(Instant::now() < deadline, "`rein serve` did not start");
                thread::sleep(Duration::from_millis(20));
            }
        }
        panic!("no free port in three tries");
    }

    fn kill(&mut self, signal: &str) {
        let ok = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(ok.success());
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.child.try_wait().unwrap().is_none() {
            assert!(Instant::now() < deadline, "`rein serve` did not exit on SIG{signal}");
            thread::sleep(Duration::from_millis(10));
        }
    }

    fn call(&self, method: &str, path: &str, token: &str, body: Option<Value>) -> (u16, Value) {
        let url = format!("{}{path}", self.url);
        let auth = format!("Bearer {token}");
        let result = match (method, body) {
            ("GET", _) => client().get(&url).header("Authorization", &auth).call(),
            (_, Some(b)) => client().post(&url).header("Authorization", &auth).send_json(b),
            (_, None) => client().post(&url).header("Authorization", &auth).send_empty(),
        };
        let mut response = result.unwrap_or_else(|e| panic!("{url}: {e}"));
        let status = response.status().as_u16();
        let text = response.body_mut().read_to_string().unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }
}

fn client() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(HTTP_TIMEOUT))
        .build()
        .into()
}

fn setup(policy: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("policy.yaml"), policy).unwrap();
    std::fs::write(
        dir.path().join("tokens.yaml"),
        format!(
            "tokens:\n  - {{name: agent-1, role: agent, token: {AGENT}}}\n  - {{name: alice, role: approver, token: {APPROVER}}}\n  - {{name: ops, role: admin, token: {ADMIN}}}\n"
        ),
    )
    .unwrap();
    dir
}

fn refund(actor: &str, customer: &str, amount: f64) -> Value {
    json!({"action": "refund", "input": {"amount": amount, "customer": customer}, "actor": {"id": actor}})
}

/// The decision ids of the store's limit uses, and of its allowed
/// `before` records of `refund`, read from the file.
fn units_and_records(db: &Path) -> (Vec<String>, HashSet<String>) {
    let conn = rusqlite::Connection::open(db).unwrap();
    let mut units = conn.prepare("SELECT decision_id FROM limit_uses").unwrap();
    let units: Vec<String> = units.query_map([], |r| r.get(0)).unwrap().map(Result::unwrap).collect();
    let mut records = conn
        .prepare("SELECT decision_id FROM audit WHERE phase = 'before' AND action = 'refund' AND effect = 'allow'")
        .unwrap();
    let records: HashSet<String> = records
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    (units, records)
}

#[test]
fn kill_9_under_load_leaves_every_consumed_unit_with_its_audit_record() {
    let dir = setup(POLICY);
    let db = dir.path().join("rein.db");
    let mut server = Server::start(dir.path(), &[]);
    let acked = Arc::new(Mutex::new(Vec::<String>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..8)
        .map(|c| {
            let (acked, stop, url) = (acked.clone(), stop.clone(), format!("{}/v1/decide", server.url));
            thread::spawn(move || {
                let agent = client();
                let mut i = 0;
                let give_up = Instant::now() + Duration::from_secs(20);
                while !stop.load(Ordering::Relaxed) && Instant::now() < give_up {
                    i += 1;
                    // Many customers, so the budget is seldom reached.
                    let request = refund(&format!("bot-{c}"), &format!("c-{c}-{}", i / 10), 0.1);
                    let sent = agent
                        .post(&url)
                        .header("Authorization", &format!("Bearer {AGENT}"))
                        .send_json(&request);
                    match sent {
                        Ok(mut r) if r.status() == 200 => {
                            let Ok(body) = r.body_mut().read_json::<Value>() else {
                                continue;
                            };
                            if body["effect"] == "allow" {
                                acked
                                    .lock()
                                    .unwrap()
                                    .push(body["decision_id"].as_str().unwrap().to_string());
                            }
                        }
                        Ok(r) => panic!("answered {}", r.status()),
                        Err(_) => thread::sleep(Duration::from_millis(10)),
                    }
                }
            })
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(15);
    while acked.lock().unwrap().len() < 300 && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(5));
    }
    server.kill("KILL");
    thread::sleep(Duration::from_millis(100));
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.join().unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() >= 300, "only {} allowed before the kill", acked.len());

    let (units, records) = units_and_records(&db);
    // Two limits: each allowed call took one unit of each, in its record's
    // transaction; nothing else is there.
    let unit_ids: HashSet<&str> = units.iter().map(String::as_str).collect();
    assert_eq!(
        units.len(),
        2 * unit_ids.len(),
        "each allowed call takes exactly two units"
    );
    let record_ids: HashSet<&str> = records.iter().map(String::as_str).collect();
    assert_eq!(unit_ids, record_ids, "units without records, or records without units");
    let missing: Vec<&String> = acked.iter().filter(|id| !record_ids.contains(id.as_str())).collect();
    assert!(missing.is_empty(), "{} acknowledged decisions lost", missing.len());
    eprintln!(
        "kill -9: {} acknowledged allows, {} recorded with their units",
        acked.len(),
        records.len()
    );

    // A restarted server counts them.
    let server = Server::start(dir.path(), &[]);
    let (status, limits) = server.call("GET", "/v1/limits", APPROVER, None);
    assert_eq!(status, 200, "{limits}");
    let counted: f64 = limits["limits"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["rule"] == "refund_rate")
        .map(|l| l["used"].as_str().unwrap().parse::<f64>().unwrap())
        .sum();
    assert_eq!(counted as usize, records.len());
}

#[test]
fn limits_are_listed_and_reset_through_the_server_and_on_the_file_once_it_stopped() {
    let dir = setup(POLICY);
    let db = dir.path().join("rein.db");
    let db_text = db.to_str().unwrap();
    let policy = dir.path().join("policy.yaml");
    let policy_text = policy.to_str().unwrap();
    let mut server = Server::start(dir.path(), &[]);
    for _ in 0..4 {
        let (status, a) = server.call("POST", "/v1/decide", AGENT, Some(refund("bot-1", "c-1", 0.5)));
        assert_eq!((status, a["effect"].as_str()), (200, Some("allow")), "{a}");
    }
    let (status, over) = server.call("POST", "/v1/decide", AGENT, Some(refund("bot-1", "c-1", 0.5)));
    assert_eq!(status, 200, "a refusal is a decision, not an HTTP error");
    assert_eq!(over["effect"], "block");
    assert!(over["retry_after_seconds"].as_u64().is_some_and(|s| s > 3500), "{over}");

    // The file is the server's while it runs.
    let refused = run(&["limits", "list", "--db", db_text, "--policy", policy_text]);
    assert!(!refused.status.success());
    assert!(text(&refused.stderr).contains("--server"), "{}", text(&refused.stderr));
    let refused = run(&["limits", "reset", "--db", db_text]);
    assert!(!refused.status.success());

    let listed = run(&["limits", "list", "--server", &server.url, "--token", APPROVER]);
    assert!(listed.status.success(), "{}", text(&listed.stderr));
    let table = text(&listed.stdout);
    assert!(table.starts_with("RULE"), "{table}");
    assert!(table.contains("customer=c-1") && table.contains("2 of 2"), "{table}");
    let listed = run(&["limits", "list", "--json", "--server", &server.url, "--token", APPROVER]);
    let listed: Value = serde_json::from_slice(&listed.stdout).unwrap();
    let budget = listed["limits"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["rule"] == "refund_budget")
        .unwrap()
        .clone();
    assert_eq!(budget["used"], "2");

    // Reset needs an admin; an approver is refused.
    let (status, _) = server.call("POST", "/v1/limits/reset", APPROVER, Some(json!({})));
    assert_eq!(status, 403);
    let (status, body) = server.call("POST", "/v1/limits/reset", ADMIN, Some(json!({"rule": "nope"})));
    assert_eq!(status, 400, "{body}");
    let bucket = budget["bucket"].as_str().unwrap();
    let reset = run(&[
        "limits",
        "reset",
        "--bucket",
        bucket,
        "--server",
        &server.url,
        "--token",
        ADMIN,
    ]);
    assert!(reset.status.success(), "{}", text(&reset.stderr));
    assert!(text(&reset.stdout).contains("4 use(s)"), "{}", text(&reset.stdout));
    let (_, again) = server.call("POST", "/v1/decide", AGENT, Some(refund("bot-1", "c-1", 0.5)));
    assert_eq!(again["effect"], "allow", "{again}");

    server.kill("TERM");
    let listed = run(&["limits", "list", "--db", db_text, "--policy", policy_text]);
    assert!(listed.status.success(), "{}", text(&listed.stderr));
    assert!(text(&listed.stdout).contains("0.5 of 2"), "{}", text(&listed.stdout));
    let reset = run(&["limits", "reset", "--rule", "refund_rate", "--json", "--db", db_text]);
    assert!(reset.status.success(), "{}", text(&reset.stderr));
    assert_eq!(serde_json::from_slice::<Value>(&reset.stdout).unwrap()["reset"], 5);
}

#[test]
fn windows_follow_the_request_time_when_the_server_trusts_it() {
    let dir = setup(
        r#"
default: allow
contracts:
  actor: {id: string}
  actions:
    send:
      input: {to: string}
rules:
  - id: send_rate
    action: send
    effect: block
    limit: {count: 2, window: 10m}
"#,
    );
    let server = Server::start(dir.path(), &["--trust-request-time"]);
    let t0 = jiff::Timestamp::now() - jiff::SignedDuration::from_hours(1);
    let at = |secs: i64| {
        let time = t0 + jiff::SignedDuration::from_secs(secs);
        json!({"action": "send", "input": {"to": "x"}, "actor": {"id": "a"}, "time": time.to_string()})
    };
    for _ in 0..2 {
        let (_, a) = server.call("POST", "/v1/decide", AGENT, Some(at(0)));
        assert_eq!(a["effect"], "allow", "{a}");
    }
    // The window's start is inclusive: the uses at t0 count at t0 + 10m.
    let (_, inside) = server.call("POST", "/v1/decide", AGENT, Some(at(600)));
    assert_eq!(inside["effect"], "block", "{inside}");
    assert_eq!(inside["retry_after_seconds"], 1, "{inside}");
    let (_, outside) = server.call("POST", "/v1/decide", AGENT, Some(at(601)));
    assert_eq!(outside["effect"], "allow", "{outside}");
}

fn hook_event(dir: &Path, session: &str, command: &str) -> Vec<u8> {
    json!({"session_id": session, "cwd": dir, "hook_event_name": "PreToolUse", "tool_name": "Bash",
           "tool_input": {"command": command}, "tool_use_id": "toolu_1"})
    .to_string()
    .into_bytes()
}

/// Runs `rein hook claude-code` on one event; the permission decision and
/// its reason.
fn hook(dir: &Path, db: &Path, rules: &Path, event: &[u8]) -> (String, String) {
    use std::io::Write;
    let contracts = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../policies/agents/coding-agent.yaml");
    let mut child = rein()
        .args(["hook", "claude-code", "--no-cache", "-p"])
        .arg(contracts)
        .arg("-p")
        .arg(rules)
        .arg("--db")
        .arg(db)
        .env("HOME", dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(event).unwrap();
    let out = child.wait_with_output().unwrap();
    let v: Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)));
    let o = &v["hookSpecificOutput"];
    (
        o["permissionDecision"].as_str().unwrap_or_default().to_string(),
        o["permissionDecisionReason"].as_str().unwrap_or_default().to_string(),
    )
}

#[test]
fn hook_processes_count_a_session_limit_together_and_a_served_store_is_refused() {
    let dir = setup(POLICY);
    let rules = dir.path().join("shell-rules.yaml");
    std::fs::write(
        &rules,
        r#"
rules:
  - id: shell_allowed
    action: shell.exec
    effect: allow
  - id: shell_rate
    action: shell.exec
    effect: block
    limit: {count: 2, per: [session.id], window: 1m}
    reason: at most 2 shell commands a minute per session
"#,
    )
    .unwrap();
    let db = dir.path().join("hooks.db");
    let project = dir.path();
    for _ in 0..2 {
        let (decision, reason) = hook(project, &db, &rules, &hook_event(project, "s-1", "ls"));
        assert_eq!(decision, "allow", "{reason}");
    }
    let (decision, reason) = hook(project, &db, &rules, &hook_event(project, "s-1", "ls"));
    assert_eq!(decision, "deny");
    assert!(
        reason.contains("shell_rate: 2 of 2 used for session.id=s-1"),
        "{reason}"
    );
    let (decision, reason) = hook(project, &db, &rules, &hook_event(project, "s-2", "ls"));
    assert_eq!(decision, "allow", "another session has its own bucket: {reason}");

    // A server keeping this store: the hook refuses rather than decide on
    // a state the server would not see.
    let server = Server::start(dir.path(), &[]);
    let served = dir.path().join("rein.db");
    let (decision, reason) = hook(project, &served, &rules, &hook_event(project, "s-3", "ls"));
    assert_eq!(decision, "deny");
    assert!(reason.contains("lock") || reason.contains("busy"), "{reason}");
    drop(server);
}
