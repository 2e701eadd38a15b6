//! `rein plan` end to end: a real `rein serve` records traffic in a real
//! SQLite file over loopback HTTP; the plan is read from the file
//! (`--db`) and from the server (`--server`, admin token), and its gates
//! decide the exit code.

// Helpers outside `#[test]` functions panic on failure too; that is the report.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde_json::{json, Value};
use std::ffi::OsStr;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);
const START_TIMEOUT: Duration = Duration::from_secs(20);
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

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

struct Ran {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

fn run<S: AsRef<OsStr>>(args: impl IntoIterator<Item = S>) -> Ran {
    let mut cmd = rein();
    cmd.args(args).stdout(Stdio::piped()).stderr(Stdio::piped());
    let what = format!("{cmd:?}");
    let mut child = cmd.spawn().unwrap();
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

fn client() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(2)))
        .build()
        .into()
}

impl Server {
    fn start(dir: &Path, policy: &Path) -> Server {
        for _ in 0..3 {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let log = dir.join(format!("serve-{port}.log"));
            let child = rein()
                .arg("serve")
                .arg("--policy")
                .arg(policy)
                .arg("--db")
                .arg(dir.join("rein.db"))
                .arg("--listen")
                .arg(format!("127.0.0.1:{port}"))
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

    fn decide(&self, token: &str, request: &Value) -> Value {
        let mut response = client()
            .post(format!("{}/v1/decide", self.url))
            .header("Authorization", format!("Bearer {token}"))
            .content_type("application/json")
            .send(serde_json::to_vec(request).unwrap())
            .unwrap();
        let text = response.body_mut().read_to_string().unwrap();
        let answer: Value = serde_json::from_str(&text).unwrap();
        assert!(answer["audit_seq"].is_u64(), "not recorded: {text}");
        answer
    }

    fn stop(mut self) {
        let status = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success());
        let status = wait_for(&mut self.child, STOP_TIMEOUT).expect("`rein serve` did not stop");
        assert!(status.success());
    }
}

/// The token of `role` in the tokens file `rein serve` wrote (each token
/// is a `name`, `role`, `token` mapping; the names are the roles).
fn token(dir: &Path, role: &str) -> String {
    let text = std::fs::read_to_string(dir.join("rein-tokens.yaml")).unwrap();
    let mut name = None;
    for line in text.lines() {
        let line = line.trim().trim_start_matches("- ");
        if let Some(n) = line.strip_prefix("name:") {
            name = Some(n.trim().trim_matches('"').to_string());
        }
        if let Some(t) = line.strip_prefix("token:") {
            if name.as_deref() == Some(role) {
                return t.trim().trim_matches('"').to_string();
            }
        }
    }
    panic!("no `{role}` token in:\n{text}")
}

/// The refund example with the refund's note marked sensitive: every
/// refund record keeps its note only as a keyed hash.
fn recording_policy() -> String {
    std::fs::read_to_string(repo().join("examples/refund/policy.yaml"))
        .unwrap()
        .replace(
            "note: {type: string, optional: true, max_len: 500}",
            "note: {type: string, optional: true, max_len: 500, sensitive: true}",
        )
}

/// The policy to roll out: small refunds end at 50 (not 100), and a large
/// refund asks an admin instead of being blocked.
fn new_policy() -> String {
    recording_policy()
        .replace("when: input.amount <= 100\n", "when: input.amount <= 50\n")
        .replace(
            "when: input.amount > 1000 && actor.role != \"admin\"\n    effect: block\n",
            "when: input.amount > 1000 && actor.role != \"admin\"\n    effect: require_approval\n    approval: {role: admin}\n",
        )
}

fn refund(amount: u32, note: &str) -> Value {
    json!({
        "action": "refund",
        "input": {"order_id": "ord_abc123", "amount": amount, "currency": "EUR", "note": note},
        "actor": {"id": "support-bot", "role": "agent"},
        "snapshot": {"fraud_flag": false, "refunds_today": 0, "account_age_days": 400},
    })
}

fn lookup() -> Value {
    json!({
        "action": "order.lookup",
        "input": {"order_id": "ord_abc123"},
        "actor": {"id": "support-bot", "role": "agent"},
        "snapshot": {"fraud_flag": false, "refunds_today": 0, "account_age_days": 400},
    })
}

struct Recorded {
    dir: tempfile::TempDir,
    current: PathBuf,
    new: PathBuf,
}

/// Records seven refunds and three lookups through a real server, which
/// keeps running (for `--server`) and is returned with the files.
fn record() -> (Recorded, Server) {
    let dir = tempfile::tempdir().unwrap();
    let current = dir.path().join("current.yaml");
    let new = dir.path().join("new.yaml");
    std::fs::write(&current, recording_policy()).unwrap();
    std::fs::write(&new, new_policy()).unwrap();
    let server = Server::start(dir.path(), &current);
    let agent = token(dir.path(), "agent");
    for (amount, note) in [
        (40, "a"),
        (80, "b"),
        (90, "c"),
        (150, "d"),
        (5000, "e"),
        (6000, "f"),
        (20, "g"),
    ] {
        server.decide(&agent, &refund(amount, note));
    }
    for _ in 0..3 {
        server.decide(&agent, &lookup());
    }
    (Recorded { dir, current, new }, server)
}

fn plan(r: &Recorded, extra: &[&str]) -> Ran {
    let mut args: Vec<String> = vec!["plan".into(), "--policy".into(), r.new.display().to_string()];
    args.extend(extra.iter().map(|s| s.to_string()));
    if !extra.contains(&"--server") {
        args.extend(["--db".to_string(), r.dir.path().join("rein.db").display().to_string()]);
    }
    run(args)
}

/// The table with what changes from run to run (decision ids, the version
/// hash, the temporary folder) replaced.
fn stable(table: &str, version: &str) -> String {
    table
        .lines()
        .map(|l| match l.split_once("   e.g. ") {
            Some((head, _)) => format!("{head}   e.g. <ids>"),
            None => l.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n")
        .replace(&version[..12], "<version>")
}

#[test]
fn plan_from_the_file_and_from_the_server_agree_and_gates_set_the_exit_code() {
    let (r, server) = record();
    let current = r.current.display().to_string();

    // From the server, with an admin token, while it runs.
    let admin = token(r.dir.path(), "admin");
    let remote = plan(
        &r,
        &[
            "--current",
            &current,
            "--json",
            "--server",
            &server.url,
            "--token",
            &admin,
        ],
    );
    assert_eq!(remote.code, Some(0), "{}", remote.stderr);
    // Without --current, through the server: the version the server kept
    // when it started reads the sensitive records back.
    let kept_remote = plan(&r, &["--json", "--server", &server.url, "--token", &admin]);
    assert_eq!(kept_remote.code, Some(0), "{}", kept_remote.stderr);
    let kept_remote: Value = serde_json::from_str(&kept_remote.stdout).unwrap();
    assert_eq!(kept_remote["replayed_sensitive"], 7, "{kept_remote:#}");
    assert_eq!(kept_remote["changed"], 4);
    // An agent token may not read the audit log: a usage/load error.
    let agent = token(r.dir.path(), "agent");
    let refused = plan(&r, &["--current", &current, "--server", &server.url, "--token", &agent]);
    assert_eq!(refused.code, Some(2), "{}", refused.stdout);
    server.stop();

    let local = plan(&r, &["--current", &current, "--json"]);
    assert_eq!(local.code, Some(0), "{}", local.stderr);
    let local_json: Value = serde_json::from_str(&local.stdout).unwrap();
    let remote_json: Value = serde_json::from_str(&remote.stdout).unwrap();
    assert_eq!(local_json, remote_json);
    assert_eq!(local_json["records"], 10);
    assert_eq!(local_json["replayed"], 10);
    // Every refund has a sensitive note; none of the changed rules reads it.
    assert_eq!(local_json["replayed_sensitive"], 7);
    assert_eq!(local_json["changed"], 4);
    assert_eq!(local_json["new_blocks"], 2);
    assert_eq!(local_json["widened"], 2);

    // The table, for people.
    let table = plan(&r, &["--current", &current]);
    assert_eq!(table.code, Some(0), "{}", table.stderr);
    let version = local_json["new_version"].as_str().unwrap();
    insta::assert_snapshot!("plan_table", stable(&table.stdout, version));

    // Without --current, the refunds are read back only with the sources
    // the store kept of the recording version (a server that keeps them
    // on activation), and skipped otherwise.
    let kept = {
        let store = rein_store::SqliteStore::open_read_only(r.dir.path().join("rein.db")).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let recording = local_json["current_version"].as_str().unwrap().to_string();
        rt.block_on(rein_store::Store::policy_version(&store, &recording))
            .unwrap()
            .is_some()
    };
    let blind = plan(&r, &["--json"]);
    let blind: Value = serde_json::from_str(&blind.stdout).unwrap();
    if kept {
        assert_eq!(blind["replayed"], 10, "{blind:#}");
    } else {
        assert_eq!(blind["replayed"], 3, "{blind:#}");
        assert_eq!(blind["skipped"][0]["count"], 7);
    }

    // Gates.
    let gate = |extra: &[&str]| {
        let mut args = vec!["--current", current.as_str()];
        args.extend_from_slice(extra);
        plan(&r, &args)
    };
    let over = gate(&["--max-new-blocks", "1"]);
    assert_eq!(over.code, Some(1), "{}", over.stdout);
    assert!(
        over.stderr
            .contains("gate --max-new-blocks 1 exceeded: 2 new blocks of 10 replayed (20.0%)"),
        "{}",
        over.stderr
    );
    assert_eq!(gate(&["--max-new-blocks", "2"]).code, Some(0));
    assert_eq!(gate(&["--max-new-blocks", "25%"]).code, Some(0));
    assert_eq!(gate(&["--max-new-blocks", "10%"]).code, Some(1));
    let widening = gate(&["--fail-on", "allow-widening"]);
    assert_eq!(widening.code, Some(1));
    assert!(
        widening
            .stdout
            .contains("gate --fail-on allow-widening: EXCEEDED (2 decisions become less strict)"),
        "{}",
        widening.stdout
    );
    assert_eq!(gate(&["--fail-on", "any-change"]).code, Some(1));
    assert_eq!(gate(&["--max-changes", "4"]).code, Some(0));
    assert_eq!(gate(&["--max-changes", "3"]).code, Some(1));
    let json_gate: Value = serde_json::from_str(&gate(&["--max-changes", "3", "--json"]).stdout).unwrap();
    assert_eq!(json_gate["gates"][0]["exceeded"], true);

    // Usage and load errors: 2.
    assert_eq!(gate(&["--max-new-blocks", "lots"]).code, Some(2));
    assert_eq!(gate(&["--max-new-blocks", "150%"]).code, Some(2));
    assert_eq!(gate(&["--since", "yesterday"]).code, Some(2));
    let missing = run(["plan", "--policy", "no/such/policy.yaml", "--db", "x.db"]);
    assert_eq!(missing.code, Some(2));
    let no_db = plan(&r, &["--current", &current, "--db", "no-such.db"]);
    assert_eq!(no_db.code, Some(2));

    // A window that holds nothing replays nothing.
    let empty = gate(&["--until", "2000-01-01T00:00:00Z", "--json"]);
    let empty: Value = serde_json::from_str(&empty.stdout).unwrap();
    assert_eq!(empty["records"], 0);
    // `--since 1h` holds them all.
    let recent = gate(&["--since", "1h", "--json"]);
    let recent: Value = serde_json::from_str(&recent.stdout).unwrap();
    assert_eq!(recent["records"], 10);
}

#[test]
fn the_store_s_kept_version_reads_sensitive_records_back_without_current() {
    let (r, server) = record();
    server.stop();
    let db = r.dir.path().join("rein.db");
    // Keep the recording policy's sources in the store, as a server that
    // activated it does.
    let policy = rein_engine::Policy::load(&[&r.current]).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    {
        let store = rein_store::SqliteStore::open(&db).unwrap();
        let kept = rein_store::PolicyVersion::of(&policy, "2026-12-06T00:00:00.000000Z".into()).unwrap();
        rt.block_on(rein_store::Store::save_policy_version(&store, &kept))
            .unwrap();
    }
    let ran = plan(&r, &["--json"]);
    assert_eq!(ran.code, Some(0), "{}", ran.stderr);
    let report: Value = serde_json::from_str(&ran.stdout).unwrap();
    assert_eq!(report["replayed_sensitive"], 7, "{report:#}");
    assert_eq!(report["changed"], 4);
    assert_eq!(report["skipped"], json!([]));

    // Sources changed in the file after they were kept: refused, said so,
    // and the sensitive records are skipped again.
    let conn = rusqlite::Connection::open(&db).unwrap();
    let changed = conn
        .execute(
            "UPDATE policy_versions SET sources = replace(sources, 'input.amount <= 100', 'input.amount <= 9')",
            [],
        )
        .unwrap();
    assert_eq!(changed, 1);
    drop(conn);
    let ran = plan(&r, &["--json"]);
    assert_eq!(ran.code, Some(0), "{}", ran.stderr);
    let report: Value = serde_json::from_str(&ran.stdout).unwrap();
    assert_eq!(report["replayed_sensitive"], 0, "{report:#}");
    assert_eq!(report["skipped"][0]["count"], 7);
    assert!(report["limits"].to_string().contains("refused"), "{report:#}");
}
