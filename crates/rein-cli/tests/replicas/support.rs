//! What the replica tests run: a fresh database per test on `REIN_TEST_PG`,
//! a throwaway PostgreSQL cluster of a test's own, `rein serve` replicas
//! (killed when dropped), HTTP calls, `rein` commands.

#![allow(dead_code)]

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

pub const AGENT: &str = "agent-token-0123456789abcdef";
pub const APPROVER: &str = "approver-token-0123456789abcdef";
pub const ADMIN: &str = "admin-token-0123456789abcdef";
const START_TIMEOUT: Duration = Duration::from_secs(60);
const COMMAND_TIMEOUT: Duration = Duration::from_secs(120);

/// The dev or CI cluster's URL, or `None` (the test prints SKIPPED and
/// passes) when `REIN_TEST_PG` is unset; under `CI=true` that fails.
pub fn test_pg() -> Option<String> {
    match std::env::var("REIN_TEST_PG") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "REIN_TEST_PG is not set under CI=true: .ci/run starts a cluster (.ci/postgres) and sets it"
            );
            eprintln!(
                "SKIPPED: REIN_TEST_PG is not set (a PostgreSQL URL, e.g. postgres://rein@127.0.0.1:55432/postgres)"
            );
            None
        }
    }
}

/// Where PostgreSQL's programs are: `PG_BIN`, else Debian's 15.
fn pg_bin() -> PathBuf {
    std::env::var_os("PG_BIN").map_or_else(|| PathBuf::from("/usr/lib/postgresql/15/bin"), PathBuf::from)
}

/// `psql` (from `PG_BIN`, else the PATH).
fn psql_program() -> PathBuf {
    let there = pg_bin().join("psql");
    if there.exists() {
        there
    } else {
        PathBuf::from("psql")
    }
}

/// Runs one SQL command on `url`; its output, unaligned.
pub fn psql(url: &str, sql: &str) -> String {
    let out = Command::new(psql_program())
        .args([url, "-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1", "-c", sql])
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run psql: {e}"));
    assert!(
        out.status.success(),
        "psql {sql}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// `url` with its database replaced by `name`.
pub fn with_database(url: &str, name: &str) -> String {
    let (scheme, rest) = url.split_once("://").expect("a URL");
    let (before_query, query) = match rest.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (rest, None),
    };
    let authority = before_query.split('/').next().unwrap_or_default();
    let mut out = format!("{scheme}://{authority}/{name}");
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    out
}

/// A unique, lowercase identifier for a database.
fn fresh_name() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("rein_t_{}_{:x}", std::process::id(), nanos & 0xffff_ffff_ffff)
}

/// A database of the test's own on `REIN_TEST_PG`, dropped at the end.
pub struct TestDb {
    base: String,
    name: String,
    /// Its URL.
    pub url: String,
}

impl TestDb {
    /// `None` when the tests are skipped (see [`test_pg`]).
    pub fn create() -> Option<TestDb> {
        let base = test_pg()?;
        let name = fresh_name();
        psql(&base, &format!("CREATE DATABASE {name}"));
        Some(TestDb {
            url: with_database(&base, &name),
            base,
            name,
        })
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if std::env::var_os("REIN_TEST_KEEP_DB").is_some() {
            eprintln!("kept database {}", self.url);
            return;
        }
        let _ = Command::new(psql_program())
            .args([
                self.base.as_str(),
                "-X",
                "-q",
                "-c",
                &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// A throwaway PostgreSQL cluster (initdb in a temporary folder, a free
/// port, trust auth on loopback), for a test that stops and starts it.
/// Stopped and removed when dropped.
pub struct Cluster {
    dir: tempfile::TempDir,
    port: u16,
}

impl Cluster {
    /// `None` (SKIPPED) without `REIN_TEST_PG` — the sign that this
    /// machine is not set up for PostgreSQL tests; with it, PostgreSQL's
    /// programs must be there (`PG_BIN`, default Debian's 15).
    pub fn start() -> Option<Cluster> {
        test_pg()?;
        let bin = pg_bin();
        assert!(
            bin.join("initdb").exists(),
            "no initdb in {} (set PG_BIN to PostgreSQL's bin folder)",
            bin.display()
        );
        let dir = tempfile::tempdir().unwrap();
        // PostgreSQL refuses to run as root: as root the cluster belongs to
        // `postgres`, which must be able to reach its folder.
        if is_root() {
            run_ok(Command::new("chmod").arg("755").arg(dir.path()));
            std::fs::create_dir(dir.path().join("pg")).unwrap();
            run_ok(Command::new("chown").arg("postgres").arg(dir.path().join("pg")));
        } else {
            std::fs::create_dir(dir.path().join("pg")).unwrap();
        }
        let data = dir.path().join("pg/data");
        run_ok(as_owner(&bin.join("initdb")).arg("-D").arg(&data).args([
            "-U",
            "rein",
            "--auth=trust",
            "--encoding=UTF8",
            "--no-sync",
        ]));
        let port = free_port();
        let cluster = Cluster { dir, port };
        cluster.restart();
        psql(&cluster.admin_url(), "CREATE DATABASE rein");
        Some(cluster)
    }

    fn admin_url(&self) -> String {
        format!("postgres://rein@127.0.0.1:{}/postgres", self.port)
    }

    /// The database the replicas use.
    pub fn url(&self) -> String {
        format!("postgres://rein@127.0.0.1:{}/rein", self.port)
    }

    fn pg_ctl(&self) -> Command {
        let mut c = as_owner(&pg_bin().join("pg_ctl"));
        c.arg("-D").arg(self.dir.path().join("pg/data"));
        c
    }

    /// Starts it (again, on the same port and data), waiting until it
    /// takes connections.
    pub fn restart(&self) {
        let socket_dir = self.dir.path().join("pg");
        run_ok(
            self.pg_ctl()
                .arg("-l")
                .arg(self.dir.path().join("pg/server.log"))
                .args(["-w", "-t", "60", "start", "-o"])
                .arg(format!(
                    "-p {} -k {} -c listen_addresses=127.0.0.1 -c max_connections=200 -c fsync=off",
                    self.port,
                    socket_dir.display()
                )),
        );
    }

    /// Stops it at once (`immediate`: no shutdown checkpoint, connections
    /// cut, as a crash would).
    pub fn stop(&self) {
        run_ok(self.pg_ctl().args(["-w", "-t", "60", "-m", "immediate", "stop"]));
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = self
            .pg_ctl()
            .args(["-w", "-t", "30", "-m", "immediate", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// `program` run as the cluster's owner: `postgres` when we are root,
/// from / (the test's folder, under a checkout in /root, may be closed to
/// that user).
fn as_owner(program: &Path) -> Command {
    if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program).current_dir("/");
        c
    } else {
        Command::new(program)
    }
}

fn run_ok(command: &mut Command) {
    let out = command.stdin(Stdio::null()).output().unwrap();
    assert!(
        out.status.success(),
        "{command:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The files every replica of a test shares: the policy, the tokens, the
/// audit key, the delegation key.
pub fn write_common(dir: &Path, policy: &str) {
    std::fs::write(dir.join("policy.yaml"), policy).unwrap();
    std::fs::write(
        dir.join("tokens.yaml"),
        format!(
            "tokens:\n  - {{name: agent-1, role: agent, token: {AGENT}}}\n  - {{name: alice, role: approver, token: {APPROVER}}}\n  - {{name: ops, role: admin, token: {ADMIN}}}\n"
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    for (file, byte) in [("audit.key", 7u8), ("delegation.key", 9u8)] {
        let path = dir.join(file);
        if !path.exists() {
            std::fs::write(&path, [byte; 32]).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
    }
}

/// One `rein serve`, killed when dropped.
pub struct Replica {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    log: PathBuf,
}

impl Replica {
    /// Starts `rein serve` on `db` (a URL or a SQLite file) with the
    /// shared files of `dir`, and waits for `/healthz` to answer 200.
    pub fn start(dir: &Path, db: &str, extra: &[&str], n: usize) -> Replica {
        let mut replica = Replica::spawn(dir, db, extra, n);
        replica.wait_ready();
        replica
    }

    fn spawn(dir: &Path, db: &str, extra: &[&str], n: usize) -> Replica {
        let port = free_port();
        let log = dir.join(format!("replica-{n}-{port}.log"));
        let child = Command::new(env!("CARGO_BIN_EXE_rein"))
            .current_dir(dir)
            .env("NO_COLOR", "1")
            .env_remove("REIN_TOKEN")
            .env_remove("REIN_DB")
            .args(["serve", "--policy"])
            .arg(dir.join("policy.yaml"))
            .args(["--db", db])
            .arg("--tokens")
            .arg(dir.join("tokens.yaml"))
            .arg("--audit-key")
            .arg(dir.join("audit.key"))
            .arg("--delegation-key")
            .arg(dir.join("delegation.key"))
            .args(["--listen", &format!("127.0.0.1:{port}"), "--workers", "2"])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        Replica {
            child,
            url: format!("http://127.0.0.1:{port}"),
            log,
        }
    }

    fn wait_ready(&mut self) {
        let http = client(Duration::from_secs(2));
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Ok((200, _)) = call(&http, "GET", &format!("{}/healthz", self.url), "", None) {
                return;
            }
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("`rein serve` exited ({status}):\n{}", self.log_tail());
            }
            assert!(
                Instant::now() < deadline,
                "`rein serve` did not answer /healthz in {START_TIMEOUT:?}:\n{}",
                self.log_tail()
            );
            thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// The end of its log.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// `kill -TERM` (a clean stop: a SQLite store is checkpointed into its
    /// file), and waits for it to be gone.
    pub fn stop(&mut self) {
        self.signal("TERM");
    }

    /// `kill -9`, and waits for it to be gone.
    pub fn kill9(&mut self) {
        self.signal("KILL");
    }

    fn signal(&mut self, signal: &str) {
        let ok = Command::new("kill")
            .args([&format!("-{signal}"), &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(ok.success());
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.child.try_wait().unwrap().is_none() {
            assert!(Instant::now() < deadline, "`rein serve` did not exit on SIG{signal}");
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// Calls the replica; panics when it does not answer.
    pub fn call(
        &self,
        http: &ureq::Agent,
        method: &str,
        path: &str,
        token: &str,
        body: Option<&Value>,
    ) -> (u16, Value) {
        call(http, method, &format!("{}{path}", self.url), token, body)
            .unwrap_or_else(|e| panic!("{method} {}{path}: {e}\n{}", self.url, self.log_tail()))
    }

    /// `GET /healthz`: the status and the answer.
    pub fn health(&self, http: &ureq::Agent) -> (u16, Value) {
        self.call(http, "GET", "/healthz", "", None)
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `n` replicas on one database, sharing one folder's files.
pub struct Fleet {
    pub dir: tempfile::TempDir,
    pub replicas: Vec<Replica>,
}

impl Fleet {
    /// Starts them at once (their schema migrations race, as replicas
    /// started together do), then waits for each.
    pub fn start(db: &str, policy: &str, n: usize, extra: &[&str]) -> Fleet {
        let dir = tempfile::tempdir().unwrap();
        write_common(dir.path(), policy);
        let mut replicas: Vec<Replica> = (0..n).map(|i| Replica::spawn(dir.path(), db, extra, i + 1)).collect();
        for r in &mut replicas {
            r.wait_ready();
        }
        Fleet { dir, replicas }
    }

    pub fn policy_path(&self) -> PathBuf {
        self.dir.path().join("policy.yaml")
    }
}

/// An HTTP client that reports every status (no error for 4xx/5xx).
pub fn client(timeout: Duration) -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(timeout))
        .build()
        .into()
}

/// One call: the status and the JSON answer (`Null` if not JSON), or why
/// there was none.
pub fn call(
    http: &ureq::Agent,
    method: &str,
    url: &str,
    token: &str,
    body: Option<&Value>,
) -> Result<(u16, Value), String> {
    let auth = format!("Bearer {token}");
    let result = match (method, body) {
        ("GET", _) => http.get(url).header("Authorization", &auth).call(),
        (_, Some(b)) => http.post(url).header("Authorization", &auth).send_json(b),
        (_, None) => http.post(url).header("Authorization", &auth).send_empty(),
    };
    let mut response = result.map_err(|e| e.to_string())?;
    let status = response.status().as_u16();
    let text = response.body_mut().read_to_string().map_err(|e| e.to_string())?;
    Ok((status, serde_json::from_str(&text).unwrap_or(Value::Null)))
}

/// What a `rein` command did.
#[derive(Debug)]
pub struct Ran {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `rein ARGS` to the end (bounded). Its output goes to files, not
/// pipes: a pipe nobody reads while waiting would stall a long export.
pub fn rein(args: &[&str]) -> Ran {
    let out_file = tempfile::NamedTempFile::new().unwrap();
    let err_file = tempfile::NamedTempFile::new().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_rein"))
        .args(args)
        .env("NO_COLOR", "1")
        .env_remove("REIN_TOKEN")
        .env_remove("REIN_DB")
        .stdin(Stdio::null())
        .stdout(out_file.reopen().unwrap())
        .stderr(err_file.reopen().unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + COMMAND_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("rein {args:?} did not finish in {COMMAND_TIMEOUT:?}");
        }
        thread::sleep(Duration::from_millis(10));
    };
    Ran {
        code: status.code(),
        stdout: std::fs::read_to_string(out_file.path()).unwrap(),
        stderr: std::fs::read_to_string(err_file.path()).unwrap(),
    }
}

/// Every record of the store at `db` (`rein audit export --db`).
pub fn export(db: &str) -> Vec<Value> {
    let ran = rein(&["audit", "export", "--db", db]);
    assert_eq!(ran.code, Some(0), "rein audit export: {ran:?}");
    ran.stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// The same for a SQLite file.
pub fn export_sqlite(db: &Path) -> Vec<Value> {
    export(db.to_str().unwrap())
}

/// `rein audit verify --db DB` passes.
pub fn verify(db: &str) {
    let ran = rein(&["audit", "verify", "--db", db]);
    assert_eq!(ran.code, Some(0), "rein audit verify: {ran:?}");
    assert!(ran.stdout.contains("chain intact"), "{}", ran.stdout);
}
