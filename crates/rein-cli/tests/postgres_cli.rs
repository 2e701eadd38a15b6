//! `rein serve --db postgres://…` and the store commands on a PostgreSQL
//! URL, end to end: the real `rein` binary, real HTTP over 127.0.0.1, the
//! cluster `REIN_TEST_PG` names (a fresh database per test, made and
//! dropped with `psql`; skipped with a note when unset, a failure under
//! `CI=true`).

#![cfg(unix)]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

const POLICY: &str = "examples/refund/policy.yaml";
const AGENT: &str = "agent-token-0123456789abcdef";
const ADMIN: &str = "admin-token-0123456789abcdef";
const START_TIMEOUT: Duration = Duration::from_secs(20);

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn rein() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_rein"));
    c.current_dir(repo())
        .env("NO_COLOR", "1")
        .env_remove("REIN_TOKEN")
        .env_remove("REIN_DB")
        .stdin(Stdio::null());
    c
}

/// Runs `rein ARGS`: exit code, stdout, stderr.
fn run(args: &[&str]) -> (Option<i32>, String, String) {
    let out = rein().args(args).output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A database made for one test, dropped when this is dropped.
struct Pg {
    admin: String,
    name: String,
    url: String,
}

impl Pg {
    fn new() -> Option<Pg> {
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
        let name = format!("rein_t_cli_{}_{nanos}", std::process::id());
        psql(&admin, &format!("CREATE DATABASE {name}"));
        let (base, query) = match admin.split_once('?') {
            Some((b, q)) => (b.to_string(), format!("?{q}")),
            None => (admin.clone(), String::new()),
        };
        let scheme_end = base.find("://").unwrap() + 3;
        let host = match base[scheme_end..].find('/') {
            Some(i) => base[..scheme_end + i].to_string(),
            None => base.clone(),
        };
        let url = format!("{host}/{name}{query}");
        Some(Pg { admin, name, url })
    }
}

impl Drop for Pg {
    fn drop(&mut self) {
        let _ = Command::new("psql")
            .args([
                &self.admin,
                "-qc",
                &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
            ])
            .output();
    }
}

fn psql(url: &str, sql: &str) -> String {
    let out = Command::new("psql").args([url, "-qAtc", sql]).output().unwrap();
    assert!(out.status.success(), "psql: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// The files every replica is given.
fn secrets(dir: &Path) {
    std::fs::write(
        dir.join("tokens.yaml"),
        format!(
            "tokens:\n  - {{name: agent-1, role: agent, token: {AGENT}}}\n  - {{name: ops, role: admin, token: {ADMIN}}}\n"
        ),
    )
    .unwrap();
    std::fs::write(dir.join("audit.key"), [7u8; 32]).unwrap();
    std::fs::write(dir.join("delegation.key"), [9u8; 32]).unwrap();
    use std::os::unix::fs::PermissionsExt;
    for file in ["tokens.yaml", "audit.key", "delegation.key"] {
        std::fs::set_permissions(dir.join(file), std::fs::Permissions::from_mode(0o600)).unwrap();
    }
}

/// A running `rein serve`, killed when dropped.
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
    /// `rein serve` on `db` (given through `REIN_DB`), the secrets in `dir`.
    fn start(dir: &Path, db: &str) -> Server {
        Server::start_with(dir, db, Path::new(POLICY), &[])
    }

    /// `rein serve` as [`Server::start`], over `policy`, with more arguments.
    fn start_with(dir: &Path, db: &str, policy: &Path, extra: &[&str]) -> Server {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let log = dir.join(format!("serve-{port}.log"));
        let child = rein()
            .arg("serve")
            .arg(policy)
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(extra)
            .arg("--tokens")
            .arg(dir.join("tokens.yaml"))
            .arg("--audit-key")
            .arg(dir.join("audit.key"))
            .arg("--delegation-key")
            .arg(dir.join("delegation.key"))
            .env("REIN_DB", db)
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
            if let Ok((200, _)) = server.call("GET", "/healthz", None, None) {
                return server;
            }
            if let Some(status) = server.child.try_wait().unwrap() {
                panic!("`rein serve` exited ({status}):\n{}", server.log_text());
            }
            assert!(Instant::now() < deadline, "no /healthz:\n{}", server.log_text());
            thread::sleep(Duration::from_millis(20));
        }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn call(&self, method: &str, path: &str, token: Option<&str>, body: Option<Value>) -> Result<(u16, Value), String> {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(5)))
            .build()
            .into();
        let url = format!("{}{path}", self.url);
        let auth = format!("Bearer {}", token.unwrap_or(""));
        let result = match (method, body) {
            ("GET", _) => agent.get(&url).header("Authorization", &auth).call(),
            (_, Some(b)) => agent.post(&url).header("Authorization", &auth).send_json(b),
            (_, None) => agent.post(&url).header("Authorization", &auth).send_empty(),
        };
        let mut response = result.map_err(|e| e.to_string())?;
        let status = response.status().as_u16();
        let text = response.body_mut().read_to_string().map_err(|e| e.to_string())?;
        Ok((status, serde_json::from_str(&text).unwrap_or(Value::String(text))))
    }

    fn stop(mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                assert!(status.success(), "exit {status}:\n{}", self.log_text());
                return;
            }
            assert!(Instant::now() < deadline, "did not stop:\n{}", self.log_text());
            thread::sleep(Duration::from_millis(20));
        }
    }
}

fn refund(amount: u64) -> Value {
    json!({
        "action": "refund",
        "input": {"order_id": "ord_abc123", "amount": amount, "currency": "EUR"},
        "actor": {"id": "bot-1", "role": "agent"},
        "snapshot": {"fraud_flag": false, "refunds_today": 0, "account_age_days": 400}
    })
}

#[test]
fn serve_and_the_store_commands_work_on_a_postgres_url() {
    let Some(pg) = Pg::new() else { return };
    let dir = tempfile::tempdir().unwrap();
    secrets(dir.path());
    let server = Server::start(dir.path(), &pg.url);
    let (status, allowed) = server
        .call("POST", "/v1/decide", Some(AGENT), Some(refund(40)))
        .unwrap();
    assert_eq!((status, &allowed["effect"]), (200, &json!("allow")), "{allowed}");
    let (status, blocked) = server
        .call("POST", "/v1/decide", Some(AGENT), Some(refund(5000)))
        .unwrap();
    assert_eq!((status, &blocked["effect"]), (200, &json!("block")), "{blocked}");
    let version = allowed["policy_version"].as_str().unwrap().to_string();
    // A second replica on the same database, with the same files.
    let second = Server::start(dir.path(), &pg.url);
    let (status, health) = second.call("GET", "/healthz", None, None).unwrap();
    assert_eq!(
        (status, health["policy_version"].as_str()),
        (200, Some(version.as_str()))
    );
    second.stop();
    server.stop();

    // The store commands on the URL (no server running).
    let db = pg.url.as_str();
    let (code, out, err) = run(&["audit", "verify", "--db", db]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.starts_with("ok: "), "{out}");
    let (code, out, err) = run(&["audit", "export", "--db", db]);
    assert_eq!(code, Some(0), "{err}");
    for answer in [&allowed, &blocked] {
        assert!(out.contains(answer["decision_id"].as_str().unwrap()), "{out}");
    }
    // REIN_DB names it as well as --db.
    let out = rein()
        .args(["audit", "query", "--effect", "block", "--format", "jsonl"])
        .env("REIN_DB", db)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(text.lines().count(), 1, "{text}");
    assert!(text.contains(blocked["decision_id"].as_str().unwrap()), "{text}");
    let (code, out, err) = run(&["policy", "history", "--db", db]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains(&version), "{out}");
    let (code, out, err) = run(&["policy", "show", &version, "--db", db]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("small_refund"), "{out}");
    let (code, out, err) = run(&["approvals", "list", "--db", db, "--state", "all"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("no approvals"), "{out}");
    let (code, out, err) = run(&["limits", "reset", "--db", db]);
    assert_eq!(code, Some(0), "{out}{err}");
    let stateful = dir.path().join("stateful.yaml");
    std::fs::write(
        &stateful,
        "default: allow\ncontracts:\n  actions:\n    refund: {}\nrules:\n  - id: refund_rate\n    action: refund\n    \
         effect: block\n    limit: {count: 3, window: 1h}\n",
    )
    .unwrap();
    let (code, out, err) = run(&["limits", "list", "--db", db, "--policy", stateful.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("no limit has uses"), "{out}");
    // Deciding an approval on the database directly is refused, saying how.
    let (code, _, err) = run(&["approvals", "grant", "ap-1", "--db", db, "--token", ADMIN]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("--server"), "{err}");

    // A changed record is found by `audit verify` on the URL (the table's
    // append-only trigger stepped around as a superuser could).
    let id = blocked["decision_id"].as_str().unwrap();
    psql(
        db,
        &format!("SET session_replication_role = replica; UPDATE audit SET body = replace(body, '\"block\"', '\"allow\"') WHERE decision_id = '{id}'"),
    );
    let (code, out, _) = run(&["audit", "verify", "--db", db]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.starts_with("broken at record"), "{out}");
}

#[test]
fn a_password_in_the_url_is_never_printed() {
    // Nothing listens on port 1: the connection is refused.
    for (url, shown) in [
        (
            "postgres://rein:s3cret-pw@127.0.0.1:1/rein?connect_timeout=2",
            "rein:***@127.0.0.1:1",
        ),
        // As a query parameter, percent-encoded or not.
        (
            "postgres://rein@127.0.0.1:1/rein?connect_timeout=2&password=s3cret-pw",
            "password=***",
        ),
        (
            "postgres://rein@127.0.0.1:1/rein?connect_timeout=2&pass%77ord=s3cret%2Dpw",
            "pass%77ord=***",
        ),
    ] {
        for args in [
            vec!["audit", "verify", "--db", url],
            vec!["policy", "history", "--db", url],
            vec!["serve", POLICY, "--db", url, "--listen", "127.0.0.1:0"],
        ] {
            let (code, out, err) = run(&args);
            assert_eq!(code, Some(2), "{args:?}: {out}{err}");
            assert!(
                !out.contains("s3cret") && !err.contains("s3cret"),
                "{args:?}: {out}{err}"
            );
            assert!(err.contains(shown), "{args:?}: {err}");
        }
    }
}

/// A replica started with other policy files serves the version published
/// (saying so in its log and `/healthz`); one started with `--publish`
/// moves every replica to its files.
#[test]
fn a_replica_serves_the_published_version_unless_started_with_publish() {
    let Some(pg) = Pg::new() else { return };
    let dir = tempfile::tempdir().unwrap();
    secrets(dir.path());
    let first = Server::start(dir.path(), &pg.url);
    let (_, health) = first.call("GET", "/healthz", None, None).unwrap();
    let published = health["policy_version"].as_str().unwrap().to_string();

    // Other files: the small-refund cap lowered to 10.
    let other = dir.path().join("other.yaml");
    let text = std::fs::read_to_string(repo().join(POLICY)).unwrap();
    let lowered = text.replace("input.amount <= 100", "input.amount <= 10");
    assert_ne!(lowered, text);
    std::fs::write(&other, lowered).unwrap();

    let second = Server::start_with(dir.path(), &pg.url, &other, &[]);
    let (status, health) = second.call("GET", "/healthz", None, None).unwrap();
    assert_eq!(status, 200, "{health}");
    assert_eq!(health["policy_version"], published.as_str(), "{health}");
    let files = health["policy_files_version"]
        .as_str()
        .expect("files differ")
        .to_string();
    assert_ne!(files, published);
    assert!(
        second.log_text().contains("NOT THE VERSION PUBLISHED"),
        "{}",
        second.log_text()
    );
    let (_, d) = second
        .call("POST", "/v1/decide", Some(AGENT), Some(refund(40)))
        .unwrap();
    assert_eq!(d["effect"], "allow", "{d}");

    // A deploy: --publish moves every replica to its files.
    let third = Server::start_with(dir.path(), &pg.url, &other, &["--publish"]);
    let deadline = Instant::now() + Duration::from_secs(5);
    for server in [&first, &second, &third] {
        loop {
            let (_, health) = server.call("GET", "/healthz", None, None).unwrap();
            if health["policy_version"] == files.as_str() {
                break;
            }
            assert!(Instant::now() < deadline, "still {health}");
            thread::sleep(Duration::from_millis(50));
        }
    }
    let (_, d) = first.call("POST", "/v1/decide", Some(AGENT), Some(refund(40))).unwrap();
    assert_ne!(d["effect"], "allow", "the lowered cap holds on every replica: {d}");
    third.stop();
    second.stop();
    first.stop();
}
