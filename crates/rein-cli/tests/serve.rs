//! `rein serve` and the store commands end to end: a real server process,
//! real HTTP over 127.0.0.1, a real SQLite file in a temporary directory and
//! the example refund policy.
//!
//! - decisions, approvals and the audit commands through the server agree
//!   with the audit commands on the file once the server has stopped;
//! - a `kill -9` in the middle of a load run loses no acknowledged decision;
//! - `rein audit verify` names the record of every kind of tampering;
//! - a reload of a broken policy (SIGHUP or HTTP) keeps the old one serving;
//! - bad input over HTTP gets its documented status and never reads as allow;
//! - the web console signs in, and its event streams end at shutdown.
//!
//! Every server is killed when its test ends, however it ends, and every
//! wait (start, stop, commands, HTTP calls) has a deadline.

// Helpers outside `#[test]` functions panic on failure too; that is the report.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use rein_engine::syntax::yaml::{self, YamlValue};
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

const POLICY: &str = "examples/refund/policy.yaml";
const REQUEST: &str = "examples/refund/request.json";
/// Longest a `rein` command other than `serve` may run.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest `rein serve` may take to answer `/healthz`.
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// Longest `rein serve` may take to exit after a signal.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// Client timeout of every HTTP call.
const HTTP_TIMEOUT: Duration = Duration::from_secs(2);

// ---- processes ----------------------------------------------------------

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn rein() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_rein"));
    c.current_dir(repo())
        .env("NO_COLOR", "1")
        .env_remove("REIN_TOKEN")
        .stdin(Stdio::null());
    c
}

/// Waits for `child` to exit, at most `limit`.
fn wait_for(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        if Instant::now() >= deadline {
            return None;
        }
        thread::sleep(Duration::from_millis(10));
    }
}

/// What a finished `rein` command printed.
struct Ran {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Ran {
    /// Stdout, after checking the command succeeded.
    fn ok(&self) -> &str {
        assert_eq!(self.code, Some(0), "stdout:\n{}\nstderr:\n{}", self.stdout, self.stderr);
        &self.stdout
    }
}

/// Runs `rein ARGS...` to the end, within [`COMMAND_TIMEOUT`].
fn run<S: AsRef<OsStr>>(args: impl IntoIterator<Item = S>) -> Ran {
    let mut cmd = rein();
    cmd.args(args).stdout(Stdio::piped()).stderr(Stdio::piped());
    let what = format!("{cmd:?}");
    let mut child = cmd.spawn().unwrap();
    // Read both pipes while waiting, so a large export cannot fill one and
    // stall the command.
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        thread::spawn(move || {
            let mut bytes = Vec::new();
            if let Some(mut p) = pipe {
                let _ = p.read_to_end(&mut bytes);
            }
            String::from_utf8_lossy(&bytes).into_owned()
        })
    };
    let stdout = drain(child.stdout.take().map(|p| Box::new(p) as Box<dyn Read + Send>));
    let stderr = drain(child.stderr.take().map(|p| Box::new(p) as Box<dyn Read + Send>));
    let Some(status) = wait_for(&mut child, COMMAND_TIMEOUT) else {
        let _ = child.kill();
        let _ = child.wait();
        panic!("{what} did not finish within {COMMAND_TIMEOUT:?}");
    };
    Ran {
        code: status.code(),
        stdout: stdout.join().unwrap(),
        stderr: stderr.join().unwrap(),
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A running `rein serve`, killed when dropped.
struct Server {
    child: Child,
    url: String,
    log: PathBuf,
    http: ureq::Agent,
}

impl Drop for Server {
    fn drop(&mut self) {
        // Does nothing if the process was already waited for.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    /// Starts `rein serve --policy POLICY --db DIR/rein.db` on a free port
    /// (tokens and key created in `dir`), and waits until `/healthz`
    /// answers 200.
    fn start(dir: &Path, policy: &Path, extra: &[&str]) -> Server {
        // Another process may take the free port before the server binds
        // it: then try another one.
        for _ in 0..3 {
            let port = free_port();
            let log = dir.join(format!("serve-{port}.log"));
            let child = rein()
                .arg("serve")
                .arg("--policy")
                .arg(policy)
                .arg("--db")
                .arg(dir.join("rein.db"))
                .arg("--listen")
                .arg(format!("127.0.0.1:{port}"))
                .args(extra)
                .env("REIN_LOG", "info")
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(&log).unwrap())
                .spawn()
                .unwrap();
            let mut server = Server {
                child,
                url: format!("http://127.0.0.1:{port}"),
                log,
                http: client(HTTP_TIMEOUT),
            };
            let probe = client(Duration::from_millis(500));
            let deadline = Instant::now() + START_TIMEOUT;
            loop {
                if let Ok(r) = probe.get(format!("{}/healthz", server.url)).call() {
                    if r.status() == 200 {
                        return server;
                    }
                }
                if let Some(status) = server.child.try_wait().unwrap() {
                    let log = server.log_text();
                    assert!(
                        log.contains("cannot listen"),
                        "`rein serve` exited ({status}) before it was ready:\n{log}"
                    );
                    break; // the port was taken: next one
                }
                assert!(
                    Instant::now() < deadline,
                    "`rein serve` did not answer /healthz within {START_TIMEOUT:?}:\n{}",
                    server.log_text()
                );
                thread::sleep(Duration::from_millis(20));
            }
        }
        panic!("`rein serve` found no free port in three tries");
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends `SIG` with `kill -SIG PID`.
    fn signal(&self, sig: &str) {
        let status = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success(), "kill -{sig} failed");
    }

    /// `kill -SIG`, then waits (bounded) for the process to exit.
    fn signal_and_wait(&mut self, sig: &str) -> ExitStatus {
        self.signal(sig);
        match wait_for(&mut self.child, STOP_TIMEOUT) {
            Some(status) => status,
            None => panic!(
                "`rein serve` did not exit within {STOP_TIMEOUT:?} of SIG{sig}:\n{}",
                self.log_text()
            ),
        }
    }

    /// Stops the server with SIGTERM and checks it exits 0.
    fn stop(mut self) {
        let status = self.signal_and_wait("TERM");
        assert!(
            status.success(),
            "`rein serve` exited with {status} after SIGTERM:\n{}",
            self.log_text()
        );
    }

    fn call(&self, method: &str, path: &str, auth: Option<&str>, body: Option<&[u8]>) -> Reply {
        let url = format!("{}{path}", self.url);
        let result = match (method, body) {
            ("GET", _) => {
                let mut req = self.http.get(&url);
                if let Some(a) = auth {
                    req = req.header("Authorization", a);
                }
                req.call()
            }
            (_, body) => {
                let mut req = self.http.post(&url);
                if let Some(a) = auth {
                    req = req.header("Authorization", a);
                }
                match body {
                    Some(b) => req.content_type("application/json").send(b),
                    None => req.send_empty(),
                }
            }
        };
        reply(result, &url)
    }

    fn get(&self, path: &str, token: Option<&str>) -> Reply {
        self.call("GET", path, token.map(bearer).as_deref(), None)
    }

    fn post(&self, path: &str, token: Option<&str>, body: &[u8]) -> Reply {
        self.call("POST", path, token.map(bearer).as_deref(), Some(body))
    }

    fn decide(&self, token: &str, request: &Value) -> Reply {
        self.post("/v1/decide", Some(token), &serde_json::to_vec(request).unwrap())
    }

    /// The policy version `/healthz` reports.
    fn version(&self) -> String {
        let health = self.get("/healthz", None);
        assert_eq!(health.status, 200, "{}", health.text);
        health.json["policy_version"].as_str().unwrap().to_string()
    }
}

// ---- HTTP ---------------------------------------------------------------

fn client(timeout: Duration) -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(timeout))
        .build()
        .into()
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// An HTTP answer: status, text, and the text as JSON (`null` if it is not).
struct Reply {
    status: u16,
    text: String,
    json: Value,
}

fn reply(result: Result<ureq::http::Response<ureq::Body>, ureq::Error>, url: &str) -> Reply {
    let mut response = result.unwrap_or_else(|e| panic!("{url}: {e}"));
    let status = response.status().as_u16();
    let text = response.body_mut().read_to_string().unwrap();
    let json = serde_json::from_str(&text).unwrap_or(Value::Null);
    Reply { status, text, json }
}

// ---- data ---------------------------------------------------------------

/// The tokens `rein serve` wrote beside the database.
struct Tokens {
    agent: String,
    approver: String,
    admin: String,
}

fn tokens(dir: &Path) -> Tokens {
    let text = std::fs::read_to_string(dir.join("rein-tokens.yaml")).unwrap();
    let root = yaml::parse(&text).unwrap_or_else(|e| panic!("rein-tokens.yaml: {}", e.message));
    let mut by_name: HashMap<String, (String, String)> = HashMap::new();
    let YamlValue::Map(top) = &root.value else {
        panic!("rein-tokens.yaml is not a mapping:\n{text}")
    };
    for (key, list) in top {
        assert_eq!(key.value, YamlValue::String("tokens".into()), "{text}");
        let YamlValue::Seq(items) = &list.value else {
            panic!("`tokens` is not a list:\n{text}")
        };
        for item in items {
            let YamlValue::Map(fields) = &item.value else {
                panic!("a token is not a mapping:\n{text}")
            };
            let field = |name: &str| {
                fields
                    .iter()
                    .find_map(|(k, v)| match (&k.value, &v.value) {
                        (YamlValue::String(k), YamlValue::String(v)) if k == name => Some(v.clone()),
                        _ => None,
                    })
                    .unwrap_or_else(|| panic!("a token has no `{name}`:\n{text}"))
            };
            by_name.insert(field("name"), (field("role"), field("token")));
        }
    }
    let mut take = |role: &str| {
        let (r, token) = by_name
            .remove(role)
            .unwrap_or_else(|| panic!("no `{role}` token:\n{text}"));
        assert_eq!(r, role);
        token
    };
    Tokens {
        agent: take("agent"),
        approver: take("approver"),
        admin: take("admin"),
    }
}

/// `examples/refund/request.json` with another amount and actor role.
fn refund(amount: u32, role: &str) -> Value {
    let text = std::fs::read_to_string(repo().join(REQUEST)).unwrap();
    let mut request: Value = serde_json::from_str(&text).unwrap();
    request["input"]["amount"] = json!(amount);
    request["actor"]["role"] = json!(role);
    request
}

/// A decide answer, checked to be a recorded decision.
fn decided(reply: &Reply) -> &Value {
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert!(reply.json["audit_seq"].is_u64(), "not recorded: {}", reply.text);
    assert!(reply.json["decision_id"].is_string(), "{}", reply.text);
    &reply.json
}

fn jsonl(text: &str) -> Vec<Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// `rein audit export --db DB`, one JSON value per record.
fn export(db: &Path) -> Vec<Value> {
    jsonl(run([OsStr::new("audit"), "export".as_ref(), "--db".as_ref(), db.as_ref()]).ok())
}

/// `rein audit verify --db DB`.
fn verify(db: &Path) -> Ran {
    run([OsStr::new("audit"), "verify".as_ref(), "--db".as_ref(), db.as_ref()])
}

/// What `rein audit verify` prints for an intact log of `n` records in `db`:
/// the count and the newest record's hash, to keep as an anchor.
fn intact(db: &Path, n: impl TryInto<i64> + std::fmt::Display + Copy) -> String {
    let seq: i64 = n.try_into().unwrap_or_else(|_| panic!("{n}"));
    if seq == 0 {
        return "ok: 0 records, chain intact".to_string();
    }
    let conn = rusqlite::Connection::open(db).unwrap();
    let hash: String = conn
        .query_row("SELECT hash FROM audit WHERE seq = ?1", [seq], |r| r.get(0))
        .unwrap();
    format!("ok: {n} records, chain intact; newest {n}:{hash}")
}

fn str_of<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key].as_str().unwrap_or_else(|| panic!("no string `{key}` in {v}"))
}

// ---- tests --------------------------------------------------------------

#[test]
fn serve_decide_audit_and_approvals() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("rein.db");
    let server = Server::start(dir.path(), Path::new(POLICY), &[]);
    let t = tokens(dir.path());
    let mut all = Vec::new(); // every decision id, in order
    let mut blocks = HashSet::new();
    let mut decide = |request: &Value, effect: &str| -> Value {
        let answer = decided(&server.decide(&t.agent, request)).clone();
        assert_eq!(answer["effect"], effect, "{answer}");
        let id = str_of(&answer, "decision_id").to_string();
        if effect == "block" {
            blocks.insert(id.clone());
        }
        all.push(id);
        answer
    };

    let small = decide(&refund(40, "agent"), "allow");
    assert_eq!(small["rules"], json!(["small_refund"]));
    let staff = decide(&refund(500, "support"), "allow");
    assert_eq!(staff["rules"], json!(["medium_refund_by_staff"]));
    let large = decide(&refund(1500, "agent"), "block");
    assert_eq!(large["rules"], json!(["large_refund"]));
    assert_eq!(large["reasons"], json!(["refunds over 1000 need an admin"]));
    let pending = decide(&refund(500, "agent"), "require_approval");
    assert_eq!(pending["rules"], json!(["medium_refund_needs_support"]));
    assert_eq!(pending["approval"]["role"], "support");
    let id = str_of(&pending["approval"], "id").to_string();
    let mut with_approval = refund(500, "agent");
    with_approval["approval"] = json!(id);
    // Not granted yet: using it blocks, and leaves it pending.
    decide(&with_approval, "block");

    let server_args = |cmd: &[&str], token: &str| -> Vec<String> {
        let mut args: Vec<String> = cmd.iter().map(|s| s.to_string()).collect();
        args.extend(["--server".into(), server.url.clone(), "--token".into(), token.into()]);
        args
    };
    let list = run(server_args(&["approvals", "list"], &t.approver));
    let line = list
        .ok()
        .lines()
        .find(|l| l.starts_with(&id))
        .unwrap_or_else(|| panic!("{id} is not listed:\n{}", list.stdout));
    for word in ["pending", "refund", "support", "medium_refund_needs_support"] {
        assert!(line.contains(word), "`{word}` missing from {line}");
    }
    let listed = jsonl(run(server_args(&["approvals", "list", "--json"], &t.approver)).ok());
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["id"], json!(id));

    let grant = run(server_args(
        &["approvals", "grant", &id, "--comment", "checked"],
        &t.approver,
    ));
    assert_eq!(grant.ok().trim(), format!("{id} granted by approver"));
    let again = run(server_args(&["approvals", "grant", &id], &t.approver));
    assert_eq!(again.code, Some(1), "a second grant is refused: {}", again.stdout);
    assert!(again.stderr.contains("409"), "{}", again.stderr);
    assert_eq!(
        run(server_args(&["approvals", "list"], &t.approver)).ok().trim(),
        "no approvals"
    );

    // The identical request with the granted approval is allowed once.
    let used = decide(&with_approval, "allow");
    assert_eq!(used["rules"], json!(["medium_refund_needs_support"]));
    decide(&with_approval, "block");
    assert_eq!(all.len(), 7);
    // Beside the decisions, the log holds the grant and the refused second
    // grant (phase `approval`), and the policy's activation at the
    // server's start (phase `activate`).
    let n = all.len() + 3;
    let decisions_only = |records: Vec<Value>| -> Vec<Value> {
        records
            .into_iter()
            .filter(|r| r["phase"] != "approval" && r["phase"] != "activate")
            .collect()
    };

    let admin = |cmd: &[&str]| run(server_args(cmd, &t.admin));
    assert_eq!(admin(&["audit", "verify"]).ok().trim(), intact(&db, n));
    let queried = jsonl(admin(&["audit", "query", "--format", "jsonl", "--effect", "block"]).ok());
    assert!(queried.iter().all(|r| r["effect"] == "block"), "{queried:?}");
    let queried: HashSet<String> = decisions_only(queried)
        .iter()
        .map(|r| str_of(r, "decision_id").to_string())
        .collect();
    assert_eq!(queried, blocks);
    let through_server = admin(&["audit", "export"]).ok().to_string();
    // The agent may not read the log.
    let refused = run(server_args(&["audit", "verify"], &t.agent));
    assert_eq!(refused.code, Some(2));
    assert!(refused.stderr.contains("403"), "{}", refused.stderr);
    // A refused query prints nothing on stdout (no table header before the
    // error).
    let refused = run(server_args(&["audit", "query"], &t.agent));
    assert_eq!(refused.code, Some(2));
    assert!(refused.stderr.contains("403"), "{}", refused.stderr);
    assert_eq!(refused.stdout, "", "stdout of a refused query");
    // The table's columns are as wide as their content: every row's phase
    // and effect start under their headers, `approval` and
    // `require_approval` included.
    let table = admin(&["audit", "query"]).ok().to_string();
    let header = table.lines().next().unwrap();
    let column = |name: &str| header.find(name).unwrap();
    let (phase, effect, action) = (column("PHASE"), column("EFFECT"), column("ACTION"));
    assert!(
        table.contains("  approval  ") && table.contains("require_approval"),
        "{table}"
    );
    for line in table.lines().skip(1) {
        let at = |i: usize| line.get(i..).unwrap_or_default();
        assert!(
            ["before ", "after ", "approval ", "activate "]
                .iter()
                .any(|p| at(phase).starts_with(p)),
            "phase out of its column:\n{table}"
        );
        assert!(
            ["allow ", "block ", "require_approval "]
                .iter()
                .any(|e| at(effect).starts_with(e)),
            "effect out of its column:\n{table}"
        );
        assert!(
            at(action).starts_with("refund ") || at(action).starts_with("rein:policy "),
            "action out of its column:\n{table}"
        );
    }

    server.stop();

    // The file, with the server stopped, says the same.
    assert_eq!(verify(&db).ok().trim(), intact(&db, n));
    let records = export(&db);
    assert_eq!(records.len(), n);
    let seqs: Vec<u64> = records.iter().map(|r| r["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, (1..=n as u64).collect::<Vec<_>>());
    let decisions = decisions_only(records.clone());
    let ids: Vec<&str> = decisions.iter().map(|r| str_of(r, "decision_id")).collect();
    assert_eq!(ids, all);
    // The grant and the refused second one, filed under the decision that
    // asked for the approval.
    let approvals: Vec<&Value> = records.iter().filter(|r| r["phase"] == "approval").collect();
    assert_eq!(approvals.len(), 2, "{approvals:?}");
    assert_eq!(
        (approvals[0]["effect"].as_str(), approvals[1]["effect"].as_str()),
        (Some("allow"), Some("block"))
    );
    let reasons = |r: &Value| r["reasons"].to_string();
    assert!(
        reasons(approvals[0]).contains("granted by `approver`"),
        "{}",
        approvals[0]
    );
    assert!(reasons(approvals[1]).contains("could not grant"), "{}", approvals[1]);
    assert_eq!(approvals[0]["input"]["comment"], "checked");
    assert_eq!(approvals[0]["decision_id"], approvals[1]["decision_id"]);
    assert!(all.contains(&str_of(approvals[0], "decision_id").to_string()));
    assert_eq!(
        jsonl(&through_server),
        records,
        "export through the server and from the file differ"
    );
    let file_blocks = jsonl(
        run([
            OsStr::new("audit"),
            "query".as_ref(),
            "--db".as_ref(),
            db.as_ref(),
            "--format".as_ref(),
            "jsonl".as_ref(),
            "--effect".as_ref(),
            "block".as_ref(),
        ])
        .ok(),
    );
    assert_eq!(file_blocks.len(), blocks.len() + 1, "the refused grant is a block too");
}

#[test]
fn kill_9_loses_no_acknowledged_decision() {
    const CLIENTS: usize = 8;
    const LOAD: Duration = Duration::from_millis(1500);
    const MIN_ACKED: usize = 300;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("rein.db");
    let mut server = Server::start(dir.path(), Path::new(POLICY), &[]);
    let token = tokens(dir.path()).agent;

    let acked = Arc::new(Mutex::new(Vec::<(String, String)>::new())); // (decision id, effect)
    let not_ok = Arc::new(AtomicUsize::new(0)); // answers other than 200
    let stop = Arc::new(AtomicBool::new(false));
    let template = refund(40, "agent");
    let started = Instant::now();
    let clients: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let (acked, not_ok, stop, template) = (acked.clone(), not_ok.clone(), stop.clone(), template.clone());
            let (url, auth) = (format!("{}/v1/decide", server.url), bearer(&token));
            thread::spawn(move || {
                let agent = client(HTTP_TIMEOUT); // keep-alive
                let give_up = Instant::now() + Duration::from_secs(20);
                let mut i = c;
                while !stop.load(Ordering::Relaxed) && Instant::now() < give_up {
                    i += 1;
                    let mut request = template.clone();
                    request["input"]["amount"] = json!([40, 1500, 500, 75][i % 4]);
                    request["session"] = json!(format!("client-{c}"));
                    match agent.post(&url).header("Authorization", &auth).send_json(&request) {
                        Ok(mut res) if res.status() == 200 => {
                            // A body cut off by the kill acknowledges nothing.
                            let Ok(body) = res.body_mut().read_json::<Value>() else {
                                continue;
                            };
                            assert!(body["audit_seq"].is_u64(), "{body}");
                            acked.lock().unwrap().push((
                                str_of(&body, "decision_id").to_string(),
                                str_of(&body, "effect").to_string(),
                            ));
                        }
                        Ok(_) => {
                            not_ok.fetch_add(1, Ordering::Relaxed);
                        }
                        // The server is gone; do not spin.
                        Err(_) => thread::sleep(Duration::from_millis(10)),
                    }
                }
            })
        })
        .collect();

    // Kill half-way through the load, once enough has been acknowledged.
    let give_up = started + Duration::from_secs(15);
    while (started.elapsed() < LOAD / 2 || acked.lock().unwrap().len() < MIN_ACKED) && Instant::now() < give_up {
        thread::sleep(Duration::from_millis(5));
    }
    let before_kill = acked.lock().unwrap().len();
    let killed_at = Instant::now();
    let status = server.signal_and_wait("KILL");
    assert!(!status.success(), "{status}");
    while Instant::now() < (started + LOAD).max(killed_at + Duration::from_millis(200)) {
        thread::sleep(Duration::from_millis(10));
    }
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.join().unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    eprintln!(
        "kill -9 after {:?}: {before_kill} decisions acknowledged before the kill, {} in all",
        killed_at - started,
        acked.len()
    );
    assert!(
        before_kill >= MIN_ACKED,
        "only {before_kill} decisions were acknowledged before the kill"
    );
    assert_eq!(
        not_ok.load(Ordering::Relaxed),
        0,
        "the server answered something other than 200"
    );

    // The crashed file verifies as it is.
    let crashed = verify(&db);
    assert!(crashed.ok().starts_with("ok: "), "{}", crashed.stdout);

    // A restarted server appends to the same chain.
    let server = Server::start(dir.path(), Path::new(POLICY), &[]);
    let after = decided(&server.decide(&token, &refund(40, "agent"))).clone();
    assert_eq!(after["effect"], "allow");
    server.stop();

    let verified = verify(&db);
    let records = export(&db);
    assert_eq!(verified.ok().trim(), intact(&db, records.len()));
    assert_eq!(records.last().unwrap()["decision_id"], after["decision_id"]);
    let recorded: HashMap<&str, &str> = records
        .iter()
        .map(|r| (str_of(r, "decision_id"), str_of(r, "effect")))
        .collect();
    assert_eq!(recorded.len(), records.len(), "a decision id was recorded twice");
    let missing: Vec<&(String, String)> = acked
        .iter()
        .filter(|(id, effect)| recorded.get(id.as_str()) != Some(&effect.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "{} of {} acknowledged decisions are missing from the log or differ, e.g. {:?}",
        missing.len(),
        acked.len(),
        missing.first()
    );
}

/// A copy of the stopped store `base`, with the append-only triggers
/// dropped and `tamper` applied.
fn tampered(base: &Path, name: &str, tamper: impl FnOnce(&rusqlite::Connection)) -> PathBuf {
    let copy = base.with_file_name(format!("{name}.db"));
    std::fs::copy(base, &copy).unwrap();
    let wal = base.with_file_name("rein.db-wal");
    if wal.exists() {
        std::fs::copy(&wal, copy.with_file_name(format!("{name}.db-wal"))).unwrap();
    }
    let conn = rusqlite::Connection::open(&copy).unwrap();
    conn.execute_batch("DROP TRIGGER audit_no_update; DROP TRIGGER audit_no_delete;")
        .unwrap();
    tamper(&conn);
    conn.close().unwrap();
    copy
}

/// `(body, prev_hash, hash)` of record `seq`.
fn row(conn: &rusqlite::Connection, seq: i64) -> (String, String, String) {
    conn.query_row("SELECT body, prev_hash, hash FROM audit WHERE seq = ?1", [seq], |r| {
        Ok((r.get(0)?, r.get(1)?, r.get(2)?))
    })
    .unwrap()
}

/// A record that is not in the log, built like record `like` but allowed,
/// numbered `seq` and linked to `prev_hash` with a correct hash: what a
/// forger who knows the chain format would write.
fn forge(conn: &rusqlite::Connection, like: i64, seq: i64, prev_hash: &str) {
    let mut body: Value = serde_json::from_str(&row(conn, like).0).unwrap();
    body["decision_id"] = json!("forged-decision");
    body["effect"] = json!("allow");
    body["rules"] = json!(["small_refund"]);
    body["seq"] = json!(seq);
    let body = rein_store::chain::canonical_value(&body);
    let hash = rein_store::chain::record_hash(prev_hash, &body);
    conn.execute(
        "INSERT INTO audit (seq, time, decision_id, phase, action, actor_id, session, effect, rules, body, \
         prev_hash, hash) SELECT ?1, time, 'forged-decision', phase, action, actor_id, session, 'allow', \
         '[\"small_refund\"]', ?2, ?3, ?4 FROM audit WHERE seq = ?5",
        rusqlite::params![seq, body, prev_hash, hash, like],
    )
    .unwrap();
}

#[test]
fn tampering_is_detected_by_the_cli() {
    const N: i64 = 20;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("rein.db");
    let server = Server::start(dir.path(), Path::new(POLICY), &[]);
    let token = tokens(dir.path()).agent;
    // Record 1 is the policy's activation at start; the decision of
    // record `i + 1` is the `i`th.
    for i in 1..N {
        let amount = [40, 1500, 500, 75, 250][usize::try_from(i).unwrap() % 5];
        decided(&server.decide(&token, &refund(amount, "agent")));
    }
    server.stop();
    assert_eq!(verify(&db).ok().trim(), intact(&db, N));

    // The triggers stop a mistaken edit; the chain is for the deliberate ones.
    let conn = rusqlite::Connection::open(&db).unwrap();
    for sql in [
        "UPDATE audit SET effect = 'allow' WHERE seq = 2",
        "DELETE FROM audit WHERE seq = 2",
    ] {
        let e = conn.execute(sql, []).unwrap_err();
        assert!(e.to_string().contains("append-only"), "{sql}: {e}");
    }
    conn.close().unwrap();

    // (name, tampering, record named, words of the problem)
    type Tamper = Box<dyn FnOnce(&rusqlite::Connection)>;
    let cases: Vec<(&str, Tamper, i64, &str)> = vec![
        (
            "block-made-allow",
            Box::new(|c| {
                let (body, _, _) = row(c, 7);
                assert!(body.contains(r#""effect":"block""#), "{body}");
                let body = body.replace(r#""effect":"block""#, r#""effect":"allow""#);
                c.execute("UPDATE audit SET body = ?1, effect = 'allow' WHERE seq = 7", [body])
                    .unwrap();
            }),
            7,
            "record 7 was changed",
        ),
        (
            "changed-and-rehashed",
            Box::new(|c| {
                let (body, prev, _) = row(c, 7);
                let body = body.replace(r#""amount":1500"#, r#""amount":15"#);
                let hash = rein_store::chain::record_hash(&prev, &body);
                c.execute("UPDATE audit SET body = ?1, hash = ?2 WHERE seq = 7", [body, hash])
                    .unwrap();
            }),
            8,
            "record 8 does not link to record 7",
        ),
        (
            "middle-deleted",
            Box::new(|c| {
                assert_eq!(c.execute("DELETE FROM audit WHERE seq = 10", []).unwrap(), 1);
            }),
            10,
            "record 10 was removed",
        ),
        (
            "newest-deleted",
            Box::new(|c| {
                assert_eq!(c.execute("DELETE FROM audit WHERE seq = ?1", [N]).unwrap(), 1);
            }),
            N,
            "was removed: the chain head names it",
        ),
        (
            "swapped",
            Box::new(|c| {
                let (b5, p5, h5) = row(c, 5);
                let (b12, p12, h12) = row(c, 12);
                let set = "UPDATE audit SET body = ?1, prev_hash = ?2, hash = ?3 WHERE seq = ?4";
                c.execute(set, rusqlite::params![b12, p12, h12, 5]).unwrap();
                c.execute(set, rusqlite::params![b5, p5, h5, 12]).unwrap();
            }),
            5,
            "record 5 does not link to record 4",
        ),
        (
            "forged-in-the-middle",
            Box::new(|c| {
                // Make room at 8 (through negative numbers, so that no
                // two rows ever share a key), then forge record 8.
                c.execute_batch(
                    "UPDATE audit SET seq = -seq WHERE seq >= 8; UPDATE audit SET seq = 1 - seq WHERE seq < 0;",
                )
                .unwrap();
                let (_, _, hash7) = row(c, 7);
                forge(c, 7, 8, &hash7);
            }),
            8,
            "record 8 was inserted",
        ),
        (
            "forged-at-the-end",
            Box::new(|c| {
                let (_, _, newest) = row(c, N);
                forge(c, N, N + 1, &newest);
            }),
            N + 1,
            "was inserted: the chain head ends at record 20",
        ),
    ];
    for (name, tamper, seq, problem) in cases {
        let copy = tampered(&db, name, tamper);
        let out = verify(&copy);
        assert_eq!(out.code, Some(1), "{name}: {}{}", out.stdout, out.stderr);
        let prefix = format!("broken at record {seq}: ");
        assert!(
            out.stdout.starts_with(&prefix) && out.stdout.contains(problem),
            "{name}: expected `{prefix}...{problem}...`, got {}",
            out.stdout
        );
    }
    // The original is untouched.
    assert_eq!(verify(&db).ok().trim(), intact(&db, N));

    // A consistent rewrite (the newest records dropped, with their rows of
    // the rule index, and the head moved back) passes the chain, but not a
    // kept anchor.
    let anchor = verify(&db).ok().trim().rsplit(' ').next().unwrap().to_string();
    assert!(anchor.starts_with(&format!("{N}:")), "{anchor}");
    let cut = tampered(&db, "cut", |c| {
        let (_, prev, _) = row(c, N);
        assert_eq!(c.execute("DELETE FROM audit WHERE seq = ?1", [N]).unwrap(), 1);
        c.execute_batch("DROP TRIGGER audit_rules_no_delete;").unwrap();
        c.execute("DELETE FROM audit_rules WHERE seq = ?1", [N]).unwrap();
        c.execute(
            "UPDATE chain_head SET seq = ?1, hash = ?2",
            rusqlite::params![N - 1, prev],
        )
        .unwrap();
    });
    let cut_arg = cut.to_str().unwrap();
    assert_eq!(verify(&cut).ok().trim(), intact(&cut, N - 1));
    let out = run(["audit", "verify", "--db", cut_arg, "--expect", &anchor]);
    assert_eq!(out.code, Some(1), "{}{}", out.stdout, out.stderr);
    assert!(out.stdout.contains(&format!("rewritten: record {N}")), "{}", out.stdout);
    let earlier = intact(&db, 3).rsplit(' ').next().unwrap().to_string();
    let out = run(["audit", "verify", "--db", cut_arg, "--expect", &earlier]);
    assert_eq!(
        out.code,
        Some(0),
        "an anchor before the cut still holds: {}",
        out.stdout
    );
    let bad = run(["audit", "verify", "--db", cut_arg, "--expect", "3:xyz"]);
    assert_eq!(bad.code, Some(2), "{}", bad.stderr);
}

/// The `rein_policy_reloads_total{result="…"}` counter.
fn reloads(server: &Server, result: &str) -> u64 {
    let metrics = server.get("/metrics", None);
    assert_eq!(metrics.status, 200);
    let prefix = format!("rein_policy_reloads_total{{result=\"{result}\"}} ");
    metrics
        .text
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .map_or(0, |n| n.trim().parse().unwrap())
}

/// Polls until `done` holds, at most [`STOP_TIMEOUT`].
fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + STOP_TIMEOUT;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn reload_with_broken_policy_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.yaml");
    let original = std::fs::read_to_string(repo().join(POLICY)).unwrap();
    std::fs::write(&policy, &original).unwrap();
    let server = Server::start(dir.path(), &policy, &[]);
    let t = tokens(dir.path());
    let v1 = server.version();
    let small = || decided(&server.decide(&t.agent, &refund(40, "agent"))).clone();
    assert_eq!(small()["policy_version"], json!(v1));

    // Invalid YAML on line 3; SIGHUP is refused (and counted). (The server
    // installs its SIGHUP handler in a task spawned after it binds; the
    // calls above have given that task time to run.)
    let lines: Vec<&str> = original.lines().collect();
    assert_eq!(lines[2], "default: block");
    std::fs::write(
        &policy,
        original.replacen("default: block\n", "default: block: oops\n", 1),
    )
    .unwrap();
    server.signal("HUP");
    eventually("the SIGHUP reload to be refused", || reloads(&server, "failure") == 1);
    let d = small();
    assert_eq!(
        (d["effect"].as_str(), d["policy_version"].as_str()),
        (Some("allow"), Some(v1.as_str()))
    );
    assert_eq!(server.version(), v1);

    // The same through HTTP: 422 with diagnostics naming the file and line.
    let reload = |token: &str| server.call("POST", "/v1/policy/reload", Some(&bearer(token)), None);
    let refused = reload(&t.admin);
    assert_eq!(refused.status, 422, "{}", refused.text);
    assert_eq!(refused.json["error"]["code"], "policy_invalid");
    let diagnostic = &refused.json["diagnostics"][0];
    assert_eq!(
        diagnostic["file"],
        json!(policy.display().to_string()),
        "{}",
        refused.text
    );
    assert_eq!(
        (diagnostic["line"].as_u64(), diagnostic["column"].as_u64()),
        (Some(3), Some(15))
    );
    assert!(str_of(diagnostic, "message").contains("invalid YAML"), "{diagnostic}");

    // A type error this time: a misspelt field, on the line of its rule.
    let misspelt = original.replacen("input.amount <= 100", "input.amout <= 100", 1);
    let line = misspelt.lines().position(|l| l.contains("input.amout")).unwrap() + 1;
    std::fs::write(&policy, &misspelt).unwrap();
    let refused = reload(&t.admin);
    assert_eq!(refused.status, 422, "{}", refused.text);
    let diagnostic = &refused.json["diagnostics"][0];
    assert_eq!(diagnostic["line"].as_u64(), Some(line as u64), "{}", refused.text);
    assert!(str_of(diagnostic, "message").contains("amout"), "{diagnostic}");
    assert_eq!(diagnostic["help"], "did you mean `amount`?");
    assert_eq!(reload(&t.agent).status, 403, "only an admin reloads");
    assert_eq!(small()["policy_version"], json!(v1));

    // Fixed (and changed): the reload swaps the new policy in.
    let v2_text = original.replacen("reason: refunds up to 100 are routine", "reason: routine (v2)", 1);
    std::fs::write(&policy, &v2_text).unwrap();
    let reloaded = reload(&t.admin);
    assert_eq!(reloaded.status, 200, "{}", reloaded.text);
    let v2 = str_of(&reloaded.json, "policy_version").to_string();
    assert_ne!(v2, v1);
    assert_eq!(reloaded.json["previous_version"], json!(v1));
    let d = small();
    assert_eq!(d["policy_version"], json!(v2));
    assert_eq!(d["reasons"], json!(["routine (v2)"]));

    // And SIGHUP reloads a good policy too.
    std::fs::write(&policy, v2_text.replacen("routine (v2)", "routine (v3)", 1)).unwrap();
    server.signal("HUP");
    eventually("the SIGHUP reload", || server.version() != v2);
    let d = small();
    assert_eq!(d["reasons"], json!(["routine (v3)"]));
    let v3 = str_of(&d, "policy_version").to_string();
    assert_eq!((reloads(&server, "success"), reloads(&server, "failure")), (2, 3));

    // The log says which policy made each decision.
    let records = run([
        "audit",
        "query",
        "--format",
        "jsonl",
        "--server",
        &server.url,
        "--token",
        &t.admin,
    ]);
    let versions: Vec<(String, String)> = jsonl(records.ok())
        .iter()
        .map(|r| (str_of(r, "phase").to_string(), str_of(r, "policy_version").to_string()))
        .collect();
    let versions: Vec<(&str, &str)> = versions.iter().map(|(p, v)| (p.as_str(), v.as_str())).collect();
    // Each version's activation (at start, by HTTP, by SIGHUP; the refused
    // reloads record nothing) comes before its decisions.
    assert_eq!(
        versions,
        [
            ("activate", v1.as_str()),
            ("before", v1.as_str()),
            ("before", v1.as_str()),
            ("before", v1.as_str()),
            ("activate", v2.as_str()),
            ("before", v2.as_str()),
            ("activate", v3.as_str()),
            ("before", v3.as_str()),
        ]
    );
    server.stop();
}

/// `rein policy history|show|rollback` against a live server and its
/// store file: SIGHUP's reload is recorded `by sighup`, a label two
/// versions carry is ambiguous, a rollback by prefix serves the old
/// version (until the next reload), and the chain with its activation
/// records verifies.
#[test]
fn policy_history_show_and_rollback() {
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.yaml");
    let original = std::fs::read_to_string(repo().join(POLICY)).unwrap();
    std::fs::write(&policy, &original).unwrap();
    let server = Server::start(dir.path(), &policy, &[]);
    let t = tokens(dir.path());
    let v1 = server.version();
    let db = dir.path().join("rein.db");
    let db_arg = db.to_str().unwrap();
    let v2_text = original.replacen("reason: refunds up to 100 are routine", "reason: routine (v2)", 1);
    std::fs::write(&policy, &v2_text).unwrap();
    server.signal("HUP");
    eventually("the SIGHUP reload", || server.version() != v1);
    let v2 = server.version();

    let history = run([
        "policy",
        "history",
        "--server",
        &server.url,
        "--token",
        &t.admin,
        "--json",
    ]);
    let history: Value = serde_json::from_str(history.ok()).unwrap();
    assert_eq!(history["current"]["policy_version"], json!(v2));
    let versions = history["versions"].as_array().unwrap();
    assert_eq!(versions.len(), 2, "{history}");
    assert_eq!(
        (str_of(&versions[0], "version"), str_of(&versions[0], "last_by")),
        (v2.as_str(), "sighup")
    );
    assert_eq!(
        (str_of(&versions[1], "version"), str_of(&versions[1], "last_by")),
        (v1.as_str(), "start")
    );
    // The same from the store file, read-only, while the server runs.
    let table = run(["policy", "history", "--db", db_arg]);
    let table = table.ok();
    let current = table.lines().find(|l| l.starts_with('*')).unwrap();
    assert!(current.contains(&v2) && current.contains("sighup (reload)"), "{table}");
    assert!(table.contains("start (start)"), "{table}");

    // The kept sources, line for line.
    let shown = run(["policy", "show", &v1[..6], "--db", db_arg]);
    assert!(
        shown.ok().contains("reason: refunds up to 100 are routine"),
        "{}",
        shown.stdout
    );
    let unknown = run(["policy", "show", "ffff0000", "--db", db_arg]);
    assert_eq!(unknown.code, Some(2), "{}", unknown.stderr);
    assert!(
        unknown.stderr.contains("no policy version `ffff0000`"),
        "{}",
        unknown.stderr
    );

    // Both versions carry the example's label: ambiguous.
    let label = "2026-11-24.1";
    let ambiguous = run([
        "policy",
        "rollback",
        label,
        "--server",
        &server.url,
        "--token",
        &t.admin,
    ]);
    assert_eq!(ambiguous.code, Some(2), "{}", ambiguous.stdout);
    assert!(
        ambiguous.stderr.contains("409") && ambiguous.stderr.contains("names several"),
        "{}",
        ambiguous.stderr
    );
    let refused = run([
        "policy",
        "rollback",
        &v1[..8],
        "--server",
        &server.url,
        "--token",
        &t.agent,
    ]);
    assert_eq!(refused.code, Some(2));
    assert!(refused.stderr.contains("403"), "{}", refused.stderr);
    let rolled = run([
        "policy",
        "rollback",
        &v1[..8],
        "--server",
        &server.url,
        "--token",
        &t.admin,
    ]);
    let rolled = rolled.ok();
    assert!(
        rolled.contains(&format!("now serving {v1}")) && rolled.contains("until the next reload"),
        "{rolled}"
    );
    assert_eq!(server.version(), v1);
    let d = decided(&server.decide(&t.agent, &refund(40, "agent"))).clone();
    assert_eq!(d["policy_version"], json!(v1));

    // The activations are in the chain, which verifies, and in the log.
    let query = run(["audit", "query", "--db", db_arg]);
    let activations: Vec<&str> = query.ok().lines().filter(|l| l.contains("activate")).collect();
    assert_eq!(activations.len(), 3, "{}", query.stdout);
    assert!(
        activations[2].contains(&format!("rollback of {v1}")),
        "{}",
        query.stdout
    );
    assert!(verify(&db).ok().contains("chain intact"));
    server.stop();
}

#[test]
fn bad_input_never_allows() {
    const MAX_BODY: usize = 4096;
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), Path::new(POLICY), &["--max-body", &MAX_BODY.to_string()]);
    let t = tokens(dir.path());
    let openapi = server.get("/openapi.json", None).json;
    let documented = |route: &str, status: u16| {
        openapi["paths"][route]["post"]["responses"]
            .get(status.to_string())
            .is_some()
    };
    // Decisions and refusals the log should hold, after the policy's
    // activation at start.
    let recorded = std::cell::Cell::new(1);
    let check = |name: &str, route: &str, r: Reply, status: u16, code: Option<&str>| -> Value {
        assert_eq!(r.status, status, "{name}: {}", r.text);
        assert!(
            documented(route, status),
            "{name}: {status} is not documented for {route}"
        );
        assert_eq!(r.json["effect"], "block", "{name}: {}", r.text);
        assert!(!r.text.contains("\"allow\""), "{name}: {}", r.text);
        if let Some(code) = code {
            assert_eq!(r.json["error"]["code"], code, "{name}: {}", r.text);
        }
        if status == 200 {
            decided(&r);
            recorded.set(recorded.get() + 1);
        } else if status == 400 || status == 413 {
            // Refused before deciding, but recorded as a block.
            assert!(r.json["audit_seq"].is_u64(), "{name}: not recorded: {}", r.text);
            recorded.set(recorded.get() + 1);
        }
        r.json
    };
    let agent = Some(t.agent.as_str());
    let raw = |body: &[u8]| server.post("/v1/decide", agent, body);
    let with = |path: &[&str], value: Value| {
        let mut request = refund(40, "agent");
        let (last, parents) = path.split_last().unwrap();
        let mut at = &mut request;
        for p in parents {
            at = &mut at[*p];
        }
        at[*last] = value;
        serde_json::to_vec(&request).unwrap()
    };

    // Not JSON, or not a request.
    check(
        "malformed",
        "/v1/decide",
        raw(b"{\"action\": "),
        400,
        Some("invalid_json"),
    );
    check("empty", "/v1/decide", raw(b""), 400, Some("invalid_json"));
    check("text", "/v1/decide", raw(b"allow"), 400, Some("invalid_json"));
    check(
        "not utf-8",
        "/v1/decide",
        raw(b"{\"action\": \"\xff\"}"),
        400,
        Some("invalid_json"),
    );
    check("array", "/v1/decide", raw(b"[]"), 400, Some("invalid_request"));
    check(
        "action type",
        "/v1/decide",
        raw(br#"{"action": 5}"#),
        400,
        Some("invalid_request"),
    );
    check(
        "approval type",
        "/v1/decide",
        raw(&with(&["approval"], json!(5))),
        400,
        Some("invalid_request"),
    );
    check(
        "phase",
        "/v1/decide",
        raw(&with(&["phase"], json!("after"))),
        400,
        Some("invalid_request"),
    );

    // Size: the limit itself is fine, one byte more is not, declared or
    // streamed.
    let mut at_limit = serde_json::to_vec(&refund(40, "agent")).unwrap();
    at_limit.resize(MAX_BODY, b' ');
    let d = decided(&raw(&at_limit)).clone();
    assert_eq!(d["effect"], "allow", "{d}");
    recorded.set(recorded.get() + 1);
    let mut over = at_limit.clone();
    over.push(b' ');
    check(
        "over the limit",
        "/v1/decide",
        raw(&over),
        413,
        Some("payload_too_large"),
    );
    let chunked = server
        .http
        .post(format!("{}/v1/decide", server.url))
        .header("Authorization", bearer(&t.agent))
        .send(ureq::SendBody::from_reader(&mut std::io::Cursor::new(over)));
    let chunked = reply(chunked, "chunked");
    check(
        "over the limit, chunked",
        "/v1/decide",
        chunked,
        413,
        Some("payload_too_large"),
    );

    // Depth: 64 levels are read (and break the contract), 100 are not.
    let nested = |levels: usize| -> Value {
        serde_json::from_str(&format!("{}{}", "[".repeat(levels), "]".repeat(levels))).unwrap()
    };
    let body = with(&["input", "order_id"], nested(62)); // + the request and `input`
    let d = check("64 deep", "/v1/decide", raw(&body), 200, None);
    assert_eq!(d["violation"]["path"], "input.order_id", "{d}");
    let body = format!(
        r#"{{"action":"refund","input":{{"order_id":{}{}}}}}"#,
        "[".repeat(98),
        "]".repeat(98)
    );
    check("100 deep", "/v1/decide", raw(body.as_bytes()), 400, Some("too_deep"));

    // Well-formed requests that break the contract: recorded blocks that
    // name the field.
    for (name, body, field) in [
        ("amount type", with(&["input", "amount"], json!("lots")), "input.amount"),
        ("negative amount", with(&["input", "amount"], json!(-5)), "input.amount"),
        (
            "bad currency",
            with(&["input", "currency"], json!("euro")),
            "input.currency",
        ),
        ("unknown role", with(&["actor", "role"], json!("root")), "actor.role"),
        (
            "flag type",
            with(&["snapshot", "fraud_flag"], json!("no")),
            "snapshot.fraud_flag",
        ),
        ("extra field", with(&["input", "force"], json!(true)), "input.force"),
        ("unknown action", with(&["action"], json!("wire_transfer")), "action"),
        ("empty action", with(&["action"], json!("")), "action"),
    ] {
        let d = check(name, "/v1/decide", raw(&body), 200, None);
        assert_eq!(d["violation"]["path"], field, "{name}: {d}");
    }

    // Tokens: none, unknown, another scheme, another role.
    let good = serde_json::to_vec(&refund(40, "agent")).unwrap();
    let decide_as = |auth: Option<&str>| server.call("POST", "/v1/decide", auth, Some(&good));
    check("no token", "/v1/decide", decide_as(None), 401, Some("unauthorized"));
    let unknown = bearer(&"0".repeat(64));
    check(
        "unknown token",
        "/v1/decide",
        decide_as(Some(&unknown)),
        401,
        Some("unauthorized"),
    );
    let basic = format!("Basic {}", t.agent);
    check(
        "basic scheme",
        "/v1/decide",
        decide_as(Some(&basic)),
        401,
        Some("unauthorized"),
    );
    let approver = bearer(&t.approver);
    check(
        "approver token",
        "/v1/decide",
        decide_as(Some(&approver)),
        403,
        Some("forbidden"),
    );

    // The outcome route fails closed the same way.
    let outcome = |auth: Option<&str>, body: &[u8]| server.call("POST", "/v1/outcome", auth, Some(body));
    let agent_auth = bearer(&t.agent);
    check(
        "outcome malformed",
        "/v1/outcome",
        outcome(Some(&agent_auth), b"{"),
        400,
        Some("invalid_json"),
    );
    check(
        "outcome unknown field",
        "/v1/outcome",
        outcome(Some(&agent_auth), br#"{"decision_id": "x", "result": {}}"#),
        400,
        Some("invalid_request"),
    );
    check(
        "outcome no token",
        "/v1/outcome",
        outcome(None, br#"{"decision_id": "x"}"#),
        401,
        None,
    );

    // The server is still well, and recorded exactly the decisions it made.
    assert_eq!(server.get("/healthz", None).status, 200);
    assert_eq!(
        decided(&server.decide(&t.agent, &refund(40, "agent")))["effect"],
        "allow"
    );
    recorded.set(recorded.get() + 1);
    let verified = run(["audit", "verify", "--server", &server.url, "--token", &t.admin]);
    assert_eq!(
        verified.ok().trim(),
        intact(&dir.path().join("rein.db"), recorded.get())
    );
    server.stop();
}

/// Signal handlers are installed before the server listens, so a reload
/// sent the moment it answers cannot kill it (SIGHUP's default action).
#[test]
fn sighup_right_after_start_reloads_instead_of_killing() {
    for _ in 0..5 {
        let dir = tempfile::tempdir().unwrap();
        let mut server = Server::start(dir.path(), &repo().join("examples/refund/policy.yaml"), &[]);
        server.signal("HUP");
        std::thread::sleep(Duration::from_millis(200));
        assert!(
            server.child.try_wait().unwrap().is_none(),
            "SIGHUP killed the server:\n{}",
            server.log_text()
        );
        assert_eq!(server.get("/healthz", None).status, 200);
        server.stop();
    }
}

/// What an agent sent (an action name, an actor id) cannot forge a row of
/// `rein audit query`'s table or send escape sequences to the auditor's
/// terminal: control characters are printed escaped.
#[test]
fn audit_query_escapes_what_agents_sent() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("rein.db");
    let server = Server::start(dir.path(), Path::new(POLICY), &[]);
    let t = tokens(dir.path());
    let forged_row = "refund\n      9  2026-01-01T00:00:00.000000Z  before  allow  refund  boss  small_refund";
    let mut request = refund(40, "agent");
    request["action"] = json!(forged_row);
    request["actor"]["id"] = json!("\u{1b}]0;owned\u{7}\u{1b}[2J");
    let answer = decided(&server.decide(&t.agent, &request)).clone();
    assert_eq!(answer["effect"], "block", "{answer}");
    server.stop();

    let table = run(["audit".as_ref(), "query".as_ref(), "--db".as_ref(), db.as_os_str()]);
    let text = table.ok();
    assert_eq!(
        text.lines().count(),
        3,
        "one header, the start's activation and the decision's row:\n{text}"
    );
    assert!(!text.contains('\u{1b}') && !text.contains('\u{7}'), "{text:?}");
    assert!(text.contains("refund\\u{a}      9"), "{text}");
    assert!(text.contains("\\u{1b}]0;owned\\u{7}"), "{text}");
}

/// `--color` governs `rein serve`'s log as well as diagnostics: `never`
/// and `auto` on a file (NO_COLOR unset) write no ANSI escape; `always`
/// does, which shows the flag reaches the log.
#[test]
fn serve_logs_follow_color() {
    let dir = tempfile::tempdir().unwrap();
    for (choice, coloured) in [("never", false), ("auto", false), ("always", true)] {
        let log = dir.path().join(format!("serve-{choice}.log"));
        let mut child = rein()
            .env_remove("NO_COLOR")
            .env("REIN_LOG", "info")
            .args(["--color", choice, "serve", POLICY, "--listen", "127.0.0.1:0", "--db"])
            .arg(dir.path().join("rein.db"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let text = || std::fs::read_to_string(&log).unwrap_or_default();
        let deadline = Instant::now() + START_TIMEOUT;
        while !text().contains("listening") {
            assert!(child.try_wait().unwrap().is_none(), "`rein serve` exited:\n{}", text());
            assert!(Instant::now() < deadline, "`rein serve` did not start:\n{}", text());
            thread::sleep(Duration::from_millis(20));
        }
        let _ = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status();
        let status = wait_for(&mut child, STOP_TIMEOUT);
        if status.is_none() {
            let _ = child.kill();
            let _ = child.wait();
        }
        assert!(status.is_some_and(|s| s.success()), "--color {choice}:\n{}", text());
        let log = text();
        assert!(log.contains("rein server stopped"), "--color {choice}:\n{log}");
        assert_eq!(log.contains('\x1b'), coloured, "--color {choice}:\n{log:?}");
    }
}

/// `rein audit` and `rein approvals` on bad arguments and unusable files:
/// a clear error and exit 2, and a file that is only read is never changed
/// (not created, not migrated).
#[test]
fn audit_and_approvals_refuse_bad_arguments_and_leave_files_alone() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("rein.db");
    drop(rein_store::SqliteStore::open(&db).unwrap());
    let db_arg = db.to_str().unwrap();
    let refused = |args: &[&str], says: &str| {
        let ran = run(args);
        assert_eq!(
            ran.code,
            Some(2),
            "{args:?}\nstdout:\n{}\nstderr:\n{}",
            ran.stdout,
            ran.stderr
        );
        assert!(ran.stderr.contains(says), "{args:?}: {}", ran.stderr);
    };
    refused(
        &["audit", "query", "--db", db_arg, "--effect", "deny"],
        "[possible values: allow, block, require_approval]",
    );
    refused(
        &["audit", "export", "--db", db_arg, "--since", "yesterday"],
        "is neither an age (24h, 90m, 7d, 30s) nor an RFC 3339 time",
    );
    refused(
        &["approvals", "grant", "some-id", "--db", db_arg],
        "needs an approver's token",
    );
    refused(&["approvals", "list", "--db", db_arg, "--limit", "0"], "--limit");
    refused(
        &["audit", "verify", "--server", "127.0.0.1:1", "--token", "t"],
        "--server must be the server's URL",
    );

    // An empty file is not a store, and stays empty.
    let empty = dir.path().join("empty.db");
    std::fs::write(&empty, b"").unwrap();
    refused(
        &["audit", "verify", "--db", empty.to_str().unwrap()],
        "not a Rein store",
    );
    assert_eq!(std::fs::metadata(&empty).unwrap().len(), 0);

    // An older schema is reported by the commands that only read, not
    // upgraded; one that writes upgrades it.
    // (A version-2 file: without what versions 3, 4 and 5 added.)
    rusqlite::Connection::open(&db)
        .unwrap()
        .execute_batch(
            "ALTER TABLE approvals DROP COLUMN roles; ALTER TABLE approvals DROP COLUMN requested_via; \
             DROP INDEX approvals_request; DROP INDEX approvals_sealed; DROP TABLE store_meta; \
             DROP TABLE appended_once; \
             DROP TABLE limit_uses; DROP TABLE session_calls; DROP TABLE session_labels; DROP TABLE sessions; \
             ALTER TABLE approvals DROP COLUMN hold_seconds; ALTER TABLE approvals DROP COLUMN sealed; \
             PRAGMA user_version = 2;",
        )
        .unwrap();
    let version = || -> i64 {
        rusqlite::Connection::open(&db)
            .unwrap()
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap()
    };
    refused(&["audit", "verify", "--db", db_arg], "schema version is 2");
    refused(&["approvals", "list", "--db", db_arg], "schema version is 2");
    assert_eq!(version(), 2);
    let tokens = dir.path().join("rein-tokens.yaml");
    std::fs::write(
        &tokens,
        "tokens:\n  - {name: alice, role: approver, token: alice-token-0123456789}\n",
    )
    .unwrap();
    let ran = run([
        "approvals",
        "deny",
        "nope",
        "--db",
        db_arg,
        "--token",
        "alice-token-0123456789",
    ]);
    assert_eq!(ran.code, Some(1), "{}", ran.stderr);
    assert!(ran.stderr.contains("no approval `nope`"), "{}", ran.stderr);
    assert!(version() > 2);

    // A server that accepts and never answers: the wait is bounded.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", silent.local_addr().unwrap());
    let started = Instant::now();
    refused(
        &["audit", "verify", "--server", &url, "--token", "t", "--timeout", "1"],
        "cannot reach",
    );
    // Nothing on stdout when the server cannot be reached either.
    let closed = format!("http://127.0.0.1:{}", free_port());
    let ran = run(["audit", "query", "--server", &closed, "--token", "t", "--timeout", "5"]);
    assert_eq!((ran.code, ran.stdout.as_str()), (Some(2), ""), "{}", ran.stderr);
    assert!(started.elapsed() < Duration::from_secs(20), "{:?}", started.elapsed());
}

/// `rein token delegate` against a real server: the token printed (the
/// whole answer with `--json`), the parent taken from `--from` or
/// REIN_TOKEN, a wider child refused with the server's reason, and the
/// child's scope enforced on its decisions, naming its link.
#[test]
fn token_delegate_mints_a_narrower_child() {
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.yaml");
    std::fs::write(
        &policy,
        "version: \"delegate-cli\"\ndefault: block\ncontracts:\n  actions:\n    file.read:\n      input: {path: string}\n    shell.run:\n      input: {command: string}\nrules:\n  - id: known\n    action: [file.read, shell.run]\n    effect: allow\n",
    )
    .unwrap();
    let server = Server::start(dir.path(), &policy, &[]);
    let t = tokens(dir.path());

    let printed = run([
        "token",
        "delegate",
        "--server",
        &server.url,
        "--from",
        &t.agent,
        "--actor",
        "subagent:researcher",
        "--actions",
        "file.read, web.*",
        "--ttl",
        "10m",
    ]);
    let child = printed.ok().trim().to_string();
    assert!(child.starts_with("rein_d1.") && !child.contains('\n'), "{child}");
    let read = server.decide(&child, &json!({"action": "file.read", "input": {"path": "a"}}));
    assert_eq!(decided(&read)["effect"], "allow", "{}", read.text);
    let shell = server.decide(&child, &json!({"action": "shell.run", "input": {"command": "ls"}}));
    assert_eq!(decided(&shell)["effect"], "block", "{}", shell.text);
    assert!(
        shell.json["reasons"][0]
            .as_str()
            .unwrap()
            .contains("chain link 2 (subagent:researcher)"),
        "{}",
        shell.text
    );

    // A grandchild, its parent from REIN_TOKEN, the whole answer as JSON.
    let out = rein()
        .args([
            "token",
            "delegate",
            "--server",
            &server.url,
            "--actor",
            "subagent:g",
            "--actions",
            "file.read",
        ])
        .args(["--json"])
        .env("REIN_TOKEN", &child)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    let answer: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(
        answer["chain"],
        json!(["token:agent", "subagent:researcher", "subagent:g"])
    );
    assert_eq!(answer["actions"], json!(["file.read"]));
    assert_eq!(answer["name"], "agent/subagent:researcher/subagent:g");
    assert!(!stdout.contains(&child), "the parent token is never printed");

    // `--bind` reaches the server: a field the parent does not bind is
    // the parent's word, refused (only an admin binds such a field).
    let bind = run([
        "token",
        "delegate",
        "--server",
        &server.url,
        "--from",
        &child,
        "--actor",
        "subagent:g",
        "--actions",
        "file.read",
        "--bind",
        "task=t-1",
    ]);
    assert_eq!(bind.code, Some(2), "{}", bind.stdout);
    assert!(
        bind.stderr.contains("403") && bind.stderr.contains("actor.task is not bound by the parent"),
        "{}",
        bind.stderr
    );

    // Wider than the parent: refused, with the server's reason, exit 2.
    let wider = run([
        "token",
        "delegate",
        "--server",
        &server.url,
        "--from",
        &child,
        "--actor",
        "subagent:g",
        "--actions",
        "shell.run",
    ]);
    assert_eq!(wider.code, Some(2), "{}", wider.stdout);
    assert!(wider.stdout.is_empty(), "{}", wider.stdout);
    assert!(
        wider.stderr.contains("403") && wider.stderr.contains("`shell.run` is not within"),
        "{}",
        wider.stderr
    );
    // Malformed input is refused before anything is sent.
    let bad = run([
        "token",
        "delegate",
        "--server",
        &server.url,
        "--from",
        &child,
        "--actor",
        "researcher",
        "--actions",
        "a",
    ]);
    assert_eq!(bad.code, Some(2));
    assert!(bad.stderr.contains("kind:id"), "{}", bad.stderr);
    let none = run([
        "token",
        "delegate",
        "--server",
        &server.url,
        "--actor",
        "subagent:x",
        "--actions",
        "a",
    ]);
    assert_eq!(none.code, Some(2));
    assert!(none.stderr.contains("--from"), "{}", none.stderr);
    assert!(
        server.log_text().contains("delegation token minted"),
        "{}",
        server.log_text()
    );
    server.stop();
}

/// `--delegation-key` names an existing key; a missing one stops the
/// start (a replica would otherwise sign with a key no other accepts).
#[test]
fn serve_takes_an_existing_delegation_key() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.key");
    let ran = run([
        "serve".as_ref(),
        "--policy".as_ref(),
        repo().join(POLICY).as_os_str(),
        "--db".as_ref(),
        dir.path().join("rein.db").as_os_str(),
        "--listen".as_ref(),
        "127.0.0.1:0".as_ref(),
        "--delegation-key".as_ref(),
        missing.as_os_str(),
    ]);
    assert_eq!(ran.code, Some(2), "{}", ran.stderr);
    assert!(ran.stderr.contains("delegation key file"), "{}", ran.stderr);
    assert!(!missing.exists());

    let key = dir.path().join("shared.key");
    std::fs::write(&key, [9u8; 32]).unwrap();
    let server = Server::start(
        dir.path(),
        Path::new(POLICY),
        &["--delegation-key", key.to_str().unwrap()],
    );
    let t = tokens(dir.path());
    let child = run([
        "token",
        "delegate",
        "--server",
        &server.url,
        "--from",
        &t.agent,
        "--actor",
        "subagent:a",
        "--actions",
        "refund",
    ]);
    let child = child.ok().trim().to_string();
    server.stop();
    // Another server with the same key accepts it; the default key does not.
    let other = tempfile::tempdir().unwrap();
    std::fs::copy(
        dir.path().join("rein-tokens.yaml"),
        other.path().join("rein-tokens.yaml"),
    )
    .unwrap();
    let server = Server::start(
        other.path(),
        Path::new(POLICY),
        &["--delegation-key", key.to_str().unwrap()],
    );
    let reply = server.post("/v1/explain", Some(&child), br#"{"action": "refund"}"#);
    assert_ne!(reply.status, 401, "{}", reply.text);
    server.stop();
    let third = tempfile::tempdir().unwrap();
    std::fs::copy(
        dir.path().join("rein-tokens.yaml"),
        third.path().join("rein-tokens.yaml"),
    )
    .unwrap();
    let server = Server::start(third.path(), Path::new(POLICY), &[]);
    let reply = server.post("/v1/explain", Some(&child), br#"{"action": "refund"}"#);
    assert_eq!(reply.status, 401, "{}", reply.text);
    assert!(reply.text.contains("signature does not verify"), "{}", reply.text);
    server.stop();
}

/// `rein serve --shadow`: the answers are the enforced policy's, SIGHUP
/// keeps the candidate, and `rein audit shadow-report` says the same
/// through the server and on the file once it stopped.
#[test]
fn serve_with_a_shadow_candidate_and_its_report() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("rein.db");
    let policy = dir.path().join("policy.yaml");
    let original = std::fs::read_to_string(repo().join(POLICY)).unwrap();
    std::fs::write(&policy, &original).unwrap();
    let candidate = dir.path().join("candidate.yaml");
    let stricter = original.replace("when: input.amount <= 100\n", "when: input.amount <= 10\n");
    assert_ne!(stricter, original);
    std::fs::write(&candidate, &stricter).unwrap();
    let server = Server::start(dir.path(), &policy, &["--shadow", candidate.to_str().unwrap()]);
    let t = tokens(dir.path());
    let shown = server.get("/v1/policy/shadow", Some(&t.admin));
    assert_eq!(shown.status, 200, "{}", shown.text);
    let version = shown.json["shadow"]["policy_version"].as_str().unwrap().to_string();

    let a = decided(&server.decide(&t.agent, &refund(40, "agent"))).clone();
    assert_eq!(a["effect"], "allow", "{a}");
    let b = decided(&server.decide(&t.agent, &refund(5, "agent"))).clone();
    assert_eq!(b["effect"], "allow", "{b}");

    // SIGHUP reloads the enforced policy and keeps the candidate.
    server.signal("HUP");
    eventually("the SIGHUP reload", || reloads(&server, "success") == 1);
    let shown = server.get("/v1/policy/shadow", Some(&t.admin));
    assert_eq!(shown.json["shadow"]["policy_version"], version.as_str());
    decided(&server.decide(&t.agent, &refund(50, "agent")));

    let url = server.url.clone();
    let remote = run([
        "audit",
        "shadow-report",
        "--server",
        url.as_str(),
        "--token",
        t.admin.as_str(),
        "--json",
    ]);
    let remote: Value = serde_json::from_str(remote.ok()).unwrap();
    assert_eq!(remote["candidate_decided"], 3, "{remote}");
    let diffs = remote["differences"].as_array().unwrap();
    assert_eq!(diffs.len(), 1, "{remote}");
    assert_eq!(diffs[0]["count"], 2);
    assert_eq!(diffs[0]["enforced"], "allow");
    assert_eq!(diffs[0]["shadow"], "block");
    assert_eq!(diffs[0]["examples"][0], a["decision_id"]);
    // An agent may not read it.
    let refused = run([
        "audit",
        "shadow-report",
        "--server",
        url.as_str(),
        "--token",
        t.agent.as_str(),
    ]);
    assert_ne!(refused.code, Some(0));
    assert!(refused.stderr.contains("403"), "{}", refused.stderr);
    server.stop();

    let local = run([
        OsStr::new("audit"),
        "shadow-report".as_ref(),
        "--db".as_ref(),
        db.as_ref(),
        "--json".as_ref(),
    ]);
    let local: Value = serde_json::from_str(local.ok()).unwrap();
    assert_eq!(local, remote);
    let human = run([
        OsStr::new("audit"),
        "shadow-report".as_ref(),
        "--db".as_ref(),
        db.as_ref(),
    ]);
    let text = human.ok();
    assert!(text.contains("allow -> block"), "{text}");
    assert!(text.contains(&format!("candidate {}", &version[..12])), "{text}");
    assert!(
        text.contains("3 records read: a candidate decided 3 (0 failed)"),
        "{text}"
    );
    // A time range after every record: nothing read.
    let later = run([
        OsStr::new("audit"),
        "shadow-report".as_ref(),
        "--db".as_ref(),
        db.as_ref(),
        "--since".as_ref(),
        "2999-01-01T00:00:00Z".as_ref(),
    ]);
    assert!(later.ok().contains("0 records read"), "{}", later.stdout);
}

/// The path and body of every request a [`receiver`] got.
type Received = Arc<Mutex<Vec<(String, Vec<u8>)>>>;

/// A tiny HTTP receiver on loopback: keeps the path and body of every
/// request and answers 200. (A webhook and an OTLP collector at once.)
fn receiver() -> (String, Received) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let got: Received = Arc::default();
    let keep = Arc::clone(&got);
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
            let mut bytes = Vec::new();
            let mut buf = [0u8; 8192];
            // The head, then as much body as Content-Length says.
            let (head_end, length) = loop {
                let Ok(n) = stream.read(&mut buf) else { break (None, 0) };
                if n == 0 {
                    break (None, 0);
                }
                bytes.extend_from_slice(&buf[..n]);
                if let Some(at) = bytes.windows(4).position(|w| w == b"\r\n\r\n") {
                    let head = String::from_utf8_lossy(&bytes[..at]).to_lowercase();
                    let length = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .and_then(|v| v.trim().parse::<usize>().ok())
                        .unwrap_or(0);
                    break (Some(at + 4), length);
                }
            };
            let Some(start) = head_end else { continue };
            while bytes.len() < start + length {
                match stream.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => bytes.extend_from_slice(&buf[..n]),
                }
            }
            let head = String::from_utf8_lossy(&bytes[..start]).to_string();
            let path = head.split_whitespace().nth(1).unwrap_or("").to_string();
            keep.lock().unwrap().push((path, bytes[start..].to_vec()));
            let _ = std::io::Write::write_all(
                &mut stream,
                b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
            );
        }
    });
    (base, got)
}

/// `rein serve --notify-webhook --public-url --otlp-endpoint`: an approval
/// it opens is posted to the webhook with its link (no input value), and
/// the decision's trace reaches the collector under the caller's trace id
/// by the time the server has stopped; the `traceparent` is in the record.
#[test]
fn serve_notifies_webhooks_and_exports_traces() {
    const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
    const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let (base, got) = receiver();
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(
        dir.path(),
        Path::new(POLICY),
        &[
            "--notify-webhook",
            &format!("{base}/hook/secret-part"),
            "--public-url",
            "https://rein.test/",
            "--otlp-endpoint",
            &base,
        ],
    );
    let t = tokens(dir.path());
    let mut request = refund(500, "agent");
    request["input"]["note"] = json!("call back at 555-0100");
    let r = server
        .http
        .post(format!("{}/v1/decide", server.url))
        .header("Authorization", bearer(&t.agent))
        .header("traceparent", TRACEPARENT)
        .content_type("application/json")
        .send(serde_json::to_vec(&request).unwrap().as_slice());
    let r = reply(r, "/v1/decide");
    assert_eq!(r.json["effect"], "require_approval", "{}", r.text);
    let id = r.json["approval"]["id"].as_str().unwrap().to_string();
    eventually("the webhook to be called", || {
        got.lock().unwrap().iter().any(|(p, _)| p == "/hook/secret-part")
    });
    let hook: Value = {
        let got = got.lock().unwrap();
        let (_, body) = got.iter().find(|(p, _)| p == "/hook/secret-part").unwrap();
        let text = String::from_utf8(body.clone()).unwrap();
        assert!(!text.contains("555-0100") && !text.contains("ord_"), "{text}");
        serde_json::from_str(&text).unwrap()
    };
    assert_eq!(hook["rein"]["url"], format!("https://rein.test/console/approvals/{id}"));
    assert_eq!(hook["rein"]["approval"], id);
    // The log names the webhook without its path (often its secret).
    assert!(!server.log_text().contains("secret-part"), "{}", server.log_text());
    let audit = server.get(&format!("/v1/audit?trace={TRACE_ID}"), Some(&t.admin));
    assert_eq!(audit.status, 200, "{}", audit.text);
    assert_eq!(audit.json["records"][0]["trace"], TRACEPARENT, "{}", audit.text);
    server.stop();
    // Stopping sent what was queued.
    let got = got.lock().unwrap();
    let traces: Vec<&Vec<u8>> = got.iter().filter(|(p, _)| p == "/v1/traces").map(|(_, b)| b).collect();
    assert!(!traces.is_empty(), "no traces arrived");
    let trace_id: Vec<u8> = (0..16)
        .map(|i| u8::from_str_radix(&TRACE_ID[2 * i..2 * i + 2], 16).unwrap())
        .collect();
    assert!(
        traces.iter().any(|b| b.windows(16).any(|w| w == trace_id.as_slice())),
        "the caller's trace id is in the exported spans"
    );
    assert!(traces.iter().any(|b| b.windows(11).any(|w| w == b"rein.decide")));
    drop(got);
    // `rein audit query --trace` on the file, by the traceparent as logged.
    let db = dir.path().join("rein.db");
    let found = jsonl(
        run([
            "audit",
            "query",
            "--db",
            db.to_str().unwrap(),
            "--format",
            "jsonl",
            "--trace",
            TRACEPARENT,
        ])
        .ok(),
    );
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0]["trace"], TRACEPARENT);
    let bad = run(["audit", "query", "--db", db.to_str().unwrap(), "--trace", "XYZ"]);
    assert_eq!(bad.code, Some(2), "{}", bad.stderr);
}

#[test]
fn serve_refuses_a_webhook_that_is_not_http() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("rein.db");
    let ran = run([
        "serve",
        "--policy",
        POLICY,
        "--db",
        db.to_str().unwrap(),
        "--notify-webhook",
        "file:///etc/passwd",
    ]);
    assert_eq!(ran.code, Some(2), "{}", ran.stderr);
    assert!(ran.stderr.contains("not http or https"), "{}", ran.stderr);
}

/// The web console of a real `rein serve`: `--console-secure-cookie`
/// marks its cookies `Secure`, an approver signs in, and SIGTERM with an
/// approvals event stream open still stops the server at once.
#[test]
fn the_console_signs_in_and_its_event_stream_ends_at_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path(), Path::new(POLICY), &["--console-secure-cookie"]);
    let t = tokens(dir.path());
    let http: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .timeout_global(Some(HTTP_TIMEOUT))
        .build()
        .into();
    let set_cookie = |r: &ureq::http::Response<ureq::Body>, name: &str| -> String {
        r.headers()
            .get_all("set-cookie")
            .iter()
            .map(|v| v.to_str().unwrap().to_string())
            .find(|v| v.starts_with(&format!("{name}=")))
            .unwrap_or_else(|| panic!("no {name} cookie"))
    };
    let login = http.get(format!("{}/console/login", server.url)).call().unwrap();
    assert_eq!(login.status(), 200);
    let csrf_cookie = set_cookie(&login, "rein_console_csrf");
    assert!(csrf_cookie.contains("; Secure"), "{csrf_cookie}");
    let nonce = csrf_cookie["rein_console_csrf=".len()..]
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let signed = http
        .post(format!("{}/console/login", server.url))
        .header("Cookie", format!("rein_console_csrf={nonce}"))
        .send_form([("csrf", nonce.as_str()), ("token", t.approver.as_str())])
        .unwrap();
    assert_eq!(signed.status(), 303);
    let cookie = set_cookie(&signed, "rein_console");
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict") && cookie.contains("; Secure"));
    let session = cookie.split(';').next().unwrap().to_string();

    let mut events = http
        .get(format!("{}/console/events", server.url))
        .header("Cookie", &session)
        .config()
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .call()
        .unwrap();
    assert_eq!(events.status(), 200);
    let mut reader = events.body_mut().as_reader();
    let mut first = [0u8; 16];
    reader.read_exact(&mut first).unwrap();
    assert_eq!(&first, b"event: approvals");
    let started = Instant::now();
    let status = server.signal_and_wait("TERM");
    assert!(status.success(), "{}", server.log_text());
    assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
}
