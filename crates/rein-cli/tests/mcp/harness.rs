//! What the MCP gateway tests share: the real peers `.ci/mcp` installs,
//! the scripted Python client (`tests/mcp/client.py`), `rein mcp gateway`
//! over stdio and over HTTP, and the test's scratch folder (policy copy,
//! store, tokens file).

use serde_json::{json, Value};
use std::ffi::{OsStr, OsString};
use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// The approver's token in the tokens file beside each test's store.
pub const APPROVER_TOKEN: &str = "mcp-test-approver-token-0123456789";

pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// `crates/rein-cli/tests/mcp/NAME`.
pub fn asset(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/mcp").join(name)
}

pub fn rein() -> &'static str {
    env!("CARGO_BIN_EXE_rein")
}

/// The real peers, where `.ci/mcp` installs them.
pub struct Peers {
    /// The venv's python, with `mcp` 2.3.0.
    pub python: PathBuf,
    /// `@modelcontextprotocol/server-filesystem`'s entry script.
    pub filesystem: PathBuf,
    /// `@modelcontextprotocol/server-everything`'s entry script.
    pub everything: PathBuf,
}

fn find_peers() -> Result<Peers, String> {
    let root = repo();
    let e2e = match std::env::var_os("REIN_E2E_TOOLS") {
        Some(p) => root.join(p),
        None => root.join(".tools/e2e"),
    };
    let venv = match std::env::var_os("REIN_MCP_VENV") {
        Some(p) => root.join(p),
        None => root.join(".tools/mcp-venv"),
    };
    let peers = Peers {
        python: venv.join("bin/python"),
        filesystem: e2e.join("node_modules/@modelcontextprotocol/server-filesystem/dist/index.js"),
        everything: e2e.join("node_modules/@modelcontextprotocol/server-everything/dist/index.js"),
    };
    for p in [&peers.python, &peers.filesystem, &peers.everything] {
        if !p.is_file() {
            return Err(format!("no {}: run .ci/mcp", p.display()));
        }
    }
    let sdk = Command::new(&peers.python)
        .args(["-c", "import importlib.metadata as m; print(m.version('mcp'))"])
        .output();
    match sdk {
        Ok(o) if String::from_utf8_lossy(&o.stdout).trim() == "2.3.0" => {}
        Ok(o) => {
            return Err(format!(
                "the venv's mcp is not 2.3.0 ({}{}): run .ci/mcp",
                String::from_utf8_lossy(&o.stdout).trim(),
                String::from_utf8_lossy(&o.stderr).trim()
            ))
        }
        Err(e) => return Err(format!("cannot run {}: {e}", peers.python.display())),
    }
    if !Command::new("node")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
    {
        return Err("no `node` on PATH (the npm reference servers need it)".into());
    }
    Ok(peers)
}

/// The peers, or `None` after saying why the test is skipped; under
/// `CI=true` a missing peer fails the test instead.
pub fn peers(test: &str) -> Option<Peers> {
    match find_peers() {
        Ok(p) => Some(p),
        Err(why) => {
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!("{test} cannot run under CI=true: {why}");
            }
            // Straight to stderr: libtest swallows the output of a passing test.
            let _ = writeln!(std::io::stderr(), "\n*** SKIPPED {test} (real MCP peers): {why}\n");
            None
        }
    }
}

impl Peers {
    /// `python tests/mcp/SCRIPT ARGS`.
    pub fn py(&self, script: &str, args: &[&str]) -> Vec<OsString> {
        let mut v: Vec<OsString> = vec![self.python.clone().into(), asset(script).into()];
        v.extend(args.iter().map(OsString::from));
        v
    }

    /// `node server-filesystem ROOT`.
    pub fn filesystem_cmd(&self, root: &Path) -> Vec<OsString> {
        vec!["node".into(), self.filesystem.clone().into(), root.into()]
    }

    /// `node server-everything stdio`.
    pub fn everything_cmd(&self) -> Vec<OsString> {
        vec!["node".into(), self.everything.clone().into(), "stdio".into()]
    }
}

/// A test's scratch folder: the policy (copied, so a lock file written
/// beside it stays there), the store and its tokens file, files to serve.
pub struct Scratch {
    _dir: tempfile::TempDir,
    pub root: PathBuf,
    pub policy: PathBuf,
    pub db: PathBuf,
}

impl Scratch {
    /// Copies `tests/mcp/policies/<policy>/policy.yaml`.
    pub fn new(policy: &str) -> Scratch {
        let dir = tempfile::Builder::new().prefix("rein-mcp-test-").tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        fs::create_dir_all(root.join("policy")).unwrap();
        let policy_path = root.join("policy/policy.yaml");
        fs::copy(asset(&format!("policies/{policy}/policy.yaml")), &policy_path).unwrap();
        fs::create_dir_all(root.join("store")).unwrap();
        fs::write(
            root.join("store/rein-tokens.yaml"),
            format!("tokens:\n  - {{name: sam, role: approver, token: {APPROVER_TOKEN}, approves: [support]}}\n"),
        )
        .unwrap();
        Scratch {
            _dir: dir,
            db: root.join("store/rein.db"),
            policy: policy_path,
            root,
        }
    }

    /// A fresh folder `ROOT/NAME`.
    pub fn dir(&self, name: &str) -> PathBuf {
        let d = self.root.join(name);
        fs::create_dir_all(&d).unwrap();
        d
    }

    /// `rein mcp gateway --policy P --db D --server NAME EXTRA -- CMD` (stdio).
    pub fn gateway(&self, server: &str, extra: &[&str], cmd: &[OsString]) -> Vec<OsString> {
        let mut v: Vec<OsString> = vec![rein().into(), "mcp".into(), "gateway".into()];
        v.extend(["--policy".into(), self.policy.clone().into()]);
        v.extend(["--db".into(), self.db.clone().into()]);
        v.extend(["--server".into(), server.into()]);
        v.extend(extra.iter().map(OsString::from));
        v.push("--".into());
        v.extend(cmd.iter().cloned());
        v
    }

    /// `rein ARGS`, to its end.
    pub fn rein(&self, args: &[&OsStr]) -> std::process::Output {
        Command::new(rein())
            .args(args)
            .env("NO_COLOR", "1")
            .env_remove("REIN_TOKEN")
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    /// The pending approvals in the store (`rein approvals list --json`).
    pub fn pending_approvals(&self) -> Vec<Value> {
        let out = self.rein(&[
            "approvals".as_ref(),
            "list".as_ref(),
            "--db".as_ref(),
            self.db.as_os_str(),
            "--json".as_ref(),
        ]);
        if !out.status.success() {
            return Vec::new(); // the store may not exist yet
        }
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// Waits for exactly one pending approval and returns it.
    pub fn wait_for_approval(&self, within: Duration) -> Value {
        let deadline = Instant::now() + within;
        loop {
            let pending = self.pending_approvals();
            if pending.len() == 1 {
                return pending.into_iter().next().unwrap();
            }
            assert!(pending.len() < 2, "more than one pending approval: {pending:?}");
            assert!(Instant::now() < deadline, "no pending approval within {within:?}");
            thread::sleep(Duration::from_millis(100));
        }
    }

    /// `rein approvals grant|deny ID --db D --token T`.
    pub fn decide(&self, id: &str, grant: bool) {
        let out = self.rein(&[
            "approvals".as_ref(),
            if grant { "grant" } else { "deny" }.as_ref(),
            id.as_ref(),
            "--db".as_ref(),
            self.db.as_os_str(),
            "--token".as_ref(),
            APPROVER_TOKEN.as_ref(),
        ]);
        assert!(
            out.status.success(),
            "approvals {}: {}",
            if grant { "grant" } else { "deny" },
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// Where the client connects.
pub enum Target {
    /// Spawns this command and talks over its stdin/stdout.
    Stdio(Vec<OsString>),
    /// Streamable HTTP.
    Url(String),
}

/// A running `client.py`.
pub struct ClientRun {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
    stderr: Arc<Mutex<String>>,
    started: Instant,
}

/// Drains `r` into `into` on a thread.
fn drain(mut r: impl Read + Send + 'static, into: Arc<Mutex<String>>) {
    thread::spawn(move || {
        let mut buf = [0u8; 8192];
        while let Ok(n) = r.read(&mut buf) {
            if n == 0 {
                break;
            }
            into.lock().unwrap().push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    });
}

impl ClientRun {
    /// Starts `client.py --mode MODE --script STEPS` against `target`.
    pub fn start(peers: &Peers, scratch: &Scratch, mode: &str, target: &Target, steps: &Value) -> ClientRun {
        let n = fs::read_dir(&scratch.root).unwrap().count();
        let script = scratch.root.join(format!("steps-{n}.json"));
        fs::write(&script, serde_json::to_vec(steps).unwrap()).unwrap();
        let mut cmd = Command::new(&peers.python);
        cmd.arg(asset("client.py"))
            .args(["--mode", mode])
            .arg("--script")
            .arg(&script);
        match target {
            Target::Url(url) => {
                cmd.args(["--url", url]);
            }
            Target::Stdio(argv) => {
                cmd.arg("--").args(argv);
            }
        }
        cmd.env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Its own process group: a timeout ends the gateway and the
            // server it spawned too.
            .process_group(0);
        let mut child = cmd.spawn().unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let stdout = child.stdout.take().unwrap();
        {
            let lines = lines.clone();
            thread::spawn(move || {
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    lines.lock().unwrap().push(line);
                }
            });
        }
        let stderr = Arc::new(Mutex::new(String::new()));
        drain(child.stderr.take().unwrap(), stderr.clone());
        ClientRun {
            child,
            lines,
            stderr,
            started: Instant::now(),
        }
    }

    /// The lines printed so far.
    pub fn lines_so_far(&self) -> Vec<Value> {
        self.lines
            .lock()
            .unwrap()
            .iter()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|_| json!({"unparsed": l})))
            .collect()
    }

    /// Waits for the client to end (killing its process group after
    /// `within`) and returns its lines; panics, with its stderr, unless it
    /// ran every step and closed.
    pub fn finish(mut self, within: Duration) -> Vec<Value> {
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break Some(s);
            }
            if self.started.elapsed() > within {
                kill_group(&mut self.child);
                break None;
            }
            thread::sleep(Duration::from_millis(20));
        };
        thread::sleep(Duration::from_millis(50)); // the reader threads catch up
        let lines = self.lines_so_far();
        let stderr = self.stderr.lock().unwrap().clone();
        let closed = lines.last().is_some_and(|l| l["step"] == "closed");
        assert!(
            status.is_some_and(|s| s.success()) && closed,
            "the client did not finish its script (status {status:?}, within {within:?})\n--- lines\n{}\n--- stderr\n{stderr}",
            lines.iter().map(|l| format!("{l}\n")).collect::<String>()
        );
        lines
    }

    /// The client's stderr so far (the gateway's logs in stdio mode).
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }
}

fn kill_group(child: &mut Child) {
    let _ = Command::new("kill")
        .args(["-KILL", "--", &format!("-{}", child.id())])
        .status();
    let _ = child.kill();
    let _ = child.wait();
}

/// Runs a whole client session; its lines (every step's `expect` met).
pub fn session(peers: &Peers, scratch: &Scratch, mode: &str, target: &Target, steps: &Value) -> Vec<Value> {
    let lines = ClientRun::start(peers, scratch, mode, target, steps).finish(Duration::from_secs(120));
    assert_expectations(&lines);
    lines
}

/// The lines of the steps (without `connected` and `closed`).
pub fn steps_of(lines: &[Value]) -> Vec<Value> {
    lines
        .iter()
        .filter(|l| l["step"] != "connected" && l["step"] != "closed")
        .cloned()
        .collect()
}

/// The text of a call's result (text blocks joined by newlines).
pub fn text(line: &Value) -> String {
    line["result"]["content"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|b| b["type"] == "text")
        .filter_map(|b| b["text"].as_str())
        .collect::<Vec<_>>()
        .join("\n")
}

pub fn is_error_result(line: &Value) -> bool {
    line["result"]["isError"] == true
}

/// Every `expect` of the script was met.
pub fn assert_expectations(lines: &[Value]) {
    let failed: Vec<&Value> = lines.iter().filter(|l| l.get("expect_failed").is_some()).collect();
    assert!(failed.is_empty(), "expectations failed:\n{failed:#?}");
}

/// A gateway serving Streamable HTTP (`--listen 127.0.0.1:0`); killed on drop.
pub struct HttpGateway {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    stderr: Arc<Mutex<String>>,
}

impl HttpGateway {
    /// Starts `rein mcp gateway --listen 127.0.0.1:0 --policy P --db D ARGS`
    /// and waits for the address it reports on stderr.
    pub fn start(scratch: &Scratch, args: &[OsString]) -> HttpGateway {
        let mut child = Command::new(rein())
            .args(["mcp", "gateway", "--listen", "127.0.0.1:0", "--policy"])
            .arg(&scratch.policy)
            .arg("--db")
            .arg(&scratch.db)
            .args(args)
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()
            .unwrap();
        let stderr = Arc::new(Mutex::new(String::new()));
        drain(child.stderr.take().unwrap(), stderr.clone());
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let found = listening_address(&stderr.lock().unwrap());
            if let Some(base) = found {
                return HttpGateway { child, base, stderr };
            }
            if let Some(status) = child.try_wait().unwrap() {
                panic!(
                    "the HTTP gateway exited ({status}) before listening:\n{}",
                    stderr.lock().unwrap()
                );
            }
            if Instant::now() > deadline {
                kill_group(&mut child);
                panic!(
                    "the HTTP gateway named no address within 60 s:\n{}",
                    stderr.lock().unwrap()
                );
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// `http://127.0.0.1:PORT/mcp/<server>`.
    pub fn url(&self, server: &str) -> String {
        format!("{}/mcp/{server}", self.base)
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }
}

impl Drop for HttpGateway {
    fn drop(&mut self) {
        kill_group(&mut self.child);
    }
}

/// The first `http://127.0.0.1:PORT` (port not 0) in the gateway's log.
fn listening_address(log: &str) -> Option<String> {
    // The gateway's own line: other lines name upstream URLs (the
    // unpinned notice gives the `rein mcp pin --url` command).
    let mut rest = log;
    while let Some(i) = rest.find("serving http://127.0.0.1:") {
        let after = &rest[i + "serving http://127.0.0.1:".len()..];
        let port: String = after.chars().take_while(char::is_ascii_digit).collect();
        if port.parse::<u16>().is_ok_and(|p| p != 0) {
            return Some(format!("http://127.0.0.1:{port}"));
        }
        rest = after;
    }
    None
}

/// A free loopback port (bound, then released) for an upstream HTTP server.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A server process (an HTTP upstream); killed on drop.
pub struct Background(Child);

impl Background {
    /// Starts `argv` with `env` and waits until `port` accepts connections.
    pub fn start(argv: &[OsString], env: &[(&str, &str)], port: u16) -> Background {
        let mut cmd = Command::new(&argv[0]);
        cmd.args(&argv[1..])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Some(s) = child.try_wait().unwrap() {
                panic!("{argv:?} exited ({s}) before listening on {port}");
            }
            assert!(
                Instant::now() < deadline,
                "{argv:?} did not listen on {port} within 30 s"
            );
            thread::sleep(Duration::from_millis(50));
        }
        Background(child)
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        kill_group(&mut self.0);
    }
}
