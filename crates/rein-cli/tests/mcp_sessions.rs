//! The MCP session is Rein's session: limits and session rules hold across
//! the calls of one client session, over stdio (one session per gateway
//! process) and over HTTP (one per `Mcp-Session-Id`), and a new session
//! starts fresh. Also: a client configuration `rein mcp wrap` wrote runs as
//! the client would run it. The real `rein` binary in front of a small
//! stdio MCP server written in Python (the standard library only); without
//! `python3` the tests say so and pass, except under `CI=true`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde_json::{json, Value as Json};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

/// `echo` says its text back, `read_file` and `write_file` really read and
/// write (so a refused write can be proved by the file's absence).
const SERVER: &str = r#"
import json, sys
obj = lambda props: {"type": "object", "properties": {k: {"type": "string"} for k in props}, "required": props}
tools = [
    {"name": "echo", "description": "says it back", "inputSchema": obj(["text"]),
     "annotations": {"readOnlyHint": True}},
    {"name": "read_file", "description": "reads a file", "inputSchema": obj(["path"]),
     "annotations": {"readOnlyHint": True}},
    {"name": "write_file", "description": "writes a file", "inputSchema": obj(["path", "content"])},
]
for line in sys.stdin:
    m = json.loads(line)
    if "id" not in m or "method" not in m:
        continue
    method, id = m["method"], m["id"]
    if method == "initialize":
        r = {"protocolVersion": "2025-11-25", "capabilities": {"tools": {}}, "serverInfo": {"name": "t", "version": "1"}}
    elif method == "tools/list":
        r = {"tools": tools}
    elif method == "tools/call":
        name, args = m["params"]["name"], m["params"].get("arguments", {})
        if name == "write_file":
            with open(args["path"], "w") as f:
                f.write(args["content"])
            text = "wrote"
        elif name == "read_file":
            with open(args["path"]) as f:
                text = f.read()
        else:
            text = args["text"]
        r = {"content": [{"type": "text", "text": text}]}
    else:
        sys.stdout.write(json.dumps({"jsonrpc": "2.0", "id": id, "error": {"code": -32601, "message": "Method not found"}}) + "\n")
        sys.stdout.flush()
        continue
    sys.stdout.write(json.dumps({"jsonrpc": "2.0", "id": id, "result": r}) + "\n")
    sys.stdout.flush()
"#;

/// Two echoes per session; once a session read a `.env` file it may write
/// nothing.
const POLICY: &str = r#"
default: block
rules:
  - id: echo
    action: mcp.fs.echo
    when: tool.annotations.readOnlyHint
    effect: allow
  - id: two_echoes_a_session
    action: mcp.fs.echo
    effect: block
    limit: {count: 2, per: [session.id], window: 1h}
    reason: two echoes a session
  - id: reads
    action: mcp.fs.read_file
    effect: allow
  - id: secret_read
    action: mcp.fs.read_file
    when: input.path.endsWith(".env")
    effect: allow
    labels: [secret]
  - id: writes
    action: mcp.fs.write_file
    effect: allow
  - id: nothing_leaves_after_a_secret
    action: mcp.fs.write_file
    when: '"secret" in session.labels'
    effect: block
    reason: this session read a secret
"#;

fn python() -> Option<&'static str> {
    let found = Command::new("python3")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if found {
        return Some("python3");
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "python3 is needed for the MCP session tests"
    );
    eprintln!("skipped: python3 not found");
    None
}

struct Setup {
    dir: tempfile::TempDir,
    python: &'static str,
}

impl Setup {
    fn new() -> Option<Setup> {
        let python = python()?;
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("server.py"), SERVER).unwrap();
        std::fs::create_dir(dir.path().join("policy")).unwrap();
        std::fs::write(dir.path().join("policy/policy.yaml"), POLICY).unwrap();
        std::fs::write(dir.path().join(".env"), "TOKEN=secret").unwrap();
        Some(Setup { dir, python })
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn str(&self, name: &str) -> String {
        self.path(name).display().to_string()
    }

    /// `rein mcp gateway --policy policy --db rein.db --server fs <extra…>
    /// -- python3 server.py`.
    fn gateway(&self, extra: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_rein"));
        c.current_dir(self.dir.path())
            .args(["mcp", "gateway", "--policy"])
            .arg(self.path("policy"))
            .arg("--db")
            .arg(self.path("rein.db"))
            .args(["--server", "fs"])
            .args(extra)
            .arg("--")
            .arg(self.python)
            .arg(self.path("server.py"));
        c.env("NO_COLOR", "1").env_remove("REIN_LOG");
        c
    }

    fn rein(&self, args: &[&str]) -> (i32, String, String) {
        let out = Command::new(env!("CARGO_BIN_EXE_rein"))
            .current_dir(self.dir.path())
            .args(args)
            .env("NO_COLOR", "1")
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
}

const INITIALIZE: &str = r#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"test","version":"1"}}}"#;

fn call(id: u64, tool: &str, arguments: &Json) -> String {
    json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {"name": tool, "arguments": arguments}})
        .to_string()
}

/// The text of a `tools/call` answer, and whether it is an `isError`
/// result.
fn outcome(answer: &Json) -> (bool, String) {
    let result = &answer["result"];
    assert!(result.is_object(), "not a tool result: {answer}");
    (
        result["isError"] == true,
        result["content"][0]["text"].as_str().unwrap_or_default().to_string(),
    )
}

/// A client on the gateway's stdin and stdout.
struct Stdio1 {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
}

impl Stdio1 {
    fn start(mut command: Command) -> Stdio1 {
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut client = Stdio1 {
            stdin: child.stdin.take(),
            stdout: BufReader::new(child.stdout.take().unwrap()),
            child,
        };
        let answer = client.ask(INITIALIZE);
        assert_eq!(answer["result"]["serverInfo"]["name"], "t", "{answer}");
        client.send(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#);
        client
    }

    fn send(&mut self, message: &str) {
        let stdin = self.stdin.as_mut().unwrap();
        stdin.write_all(message.as_bytes()).unwrap();
        stdin.write_all(b"\n").unwrap();
        stdin.flush().unwrap();
    }

    fn ask(&mut self, message: &str) -> Json {
        self.send(message);
        let mut line = String::new();
        self.stdout.read_line(&mut line).unwrap();
        assert!(line.ends_with('\n'), "the gateway's stdout ended: {line:?}");
        serde_json::from_str(&line).unwrap()
    }

    /// Closes stdin, waits for the exit; the exit code and stderr.
    fn finish(mut self) -> (i32, String) {
        drop(self.stdin.take());
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                let mut err = String::new();
                std::io::Read::read_to_string(self.child.stderr.as_mut().unwrap(), &mut err).unwrap();
                return (status.code().unwrap_or(-1), err);
            }
            assert!(started.elapsed() < Duration::from_secs(20), "the gateway did not exit");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Three echoes, the third refused by the limit; then a secret read and a
/// write that is refused and never reaches the server.
fn limit_and_taint(ask: &mut dyn FnMut(&str) -> Json, setup: &Setup, written: &Path) {
    for id in 1..=2 {
        let (is_error, text) = outcome(&ask(&call(id, "echo", &json!({"text": "hi"}))));
        assert!(!is_error, "echo {id}: {text}");
        assert_eq!(text, "hi");
    }
    let answer = ask(&call(3, "echo", &json!({"text": "hi"})));
    let (is_error, text) = outcome(&answer);
    assert!(is_error, "{text}");
    assert_eq!(text, "Blocked by Rein rule two_echoes_a_session: two echoes a session");
    let used = answer["result"]["_meta"]["rein/decision"]["reasons"][0]
        .as_str()
        .unwrap();
    assert!(
        used.starts_with("two_echoes_a_session: 2 of 2 used for session.id=mcp:fs/"),
        "{answer}"
    );
    // Before the secret: a write goes through.
    let before = setup.path("before.txt");
    let (is_error, text) = outcome(&ask(&call(4, "write_file", &json!({"path": before, "content": "x"}))));
    assert!(!is_error && before.exists(), "{text}");
    let (is_error, text) = outcome(&ask(&call(5, "read_file", &json!({"path": setup.path(".env")}))));
    assert!(!is_error, "{text}");
    assert_eq!(text, "TOKEN=secret");
    let (is_error, text) = outcome(&ask(&call(
        6,
        "write_file",
        &json!({"path": written, "content": "TOKEN=secret"}),
    )));
    assert!(is_error, "{text}");
    assert_eq!(
        text,
        "Blocked by Rein rule nothing_leaves_after_a_secret: this session read a secret"
    );
    assert!(!written.exists(), "the refused write reached the server");
}

#[test]
fn limits_and_session_rules_hold_across_the_calls_of_a_stdio_session() {
    let Some(s) = Setup::new() else { return };
    let mut client = Stdio1::start(s.gateway(&[]));
    let out = s.path("out.txt");
    limit_and_taint(&mut |m| client.ask(m), &s, &out);
    let (code, err) = client.finish();
    assert_eq!(code, 0, "{err}");
    // The first start on a store makes the tokens file an approver's
    // grant needs, and says how to grant on this store.
    assert!(err.contains("rein approvals grant ID --db"), "{err}");
    assert!(s.path("rein-tokens.yaml").exists(), "{err}");
    assert!(err.contains("created the tokens file"), "{err}");
    // The unpinned notice gives the command that pins.
    let pin = format!(
        "pin them with `rein mcp pin --policy {} --server fs -- {} {}`",
        s.path("policy").display(),
        s.python,
        s.path("server.py").display()
    );
    assert!(err.contains(&pin), "{err}");
    // A second gateway process is a new session: its own two echoes, no
    // taint. With a tokens file, start-up says how to grant.
    std::fs::write(s.path("rein-tokens.yaml"), "tokens: []\n").unwrap();
    let mut client = Stdio1::start(s.gateway(&[]));
    let (is_error, text) = outcome(&client.ask(&call(1, "echo", &json!({"text": "again"}))));
    assert!(!is_error, "{text}");
    let (is_error, text) = outcome(&client.ask(&call(2, "write_file", &json!({"path": out, "content": "fine"}))));
    assert!(!is_error && out.exists(), "{text}");
    let (code, err) = client.finish();
    assert_eq!(code, 0, "{err}");
    let grant = format!("rein approvals grant ID --db {}", s.path("rein.db").display());
    assert!(err.contains(&grant), "{err}");
    // `rein limits list` shows the first session's bucket full; the policy
    // loads beside the contracts `rein mcp contracts` printed.
    let out = Command::new(env!("CARGO_BIN_EXE_rein"))
        .args(["mcp", "contracts", "--server", "fs", "--"])
        .arg(s.python)
        .arg(s.path("server.py"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    std::fs::write(s.path("contracts.yaml"), &out.stdout).unwrap();
    let (db, policy, contracts) = (s.str("rein.db"), s.str("policy"), s.str("contracts.yaml"));
    let (code, listed, err) = s.rein(&[
        "limits", "list", "--db", &db, "--policy", &policy, "--policy", &contracts,
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(listed.contains("two_echoes_a_session"), "{listed}");
    assert!(listed.contains("session.id=mcp:fs/mcp-"), "{listed}");
}

/// Waits for the gateway's log line naming its address.
fn http_address(child: &mut Child) -> (String, std::thread::JoinHandle<String>) {
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut all = String::new();
        for line in BufReader::new(stderr).lines() {
            let line = line.unwrap_or_default();
            if let Some(at) = line.find("serving http://") {
                let url = line[at + "serving ".len()..]
                    .split_whitespace()
                    .next()
                    .unwrap_or_default();
                let _ = tx.send(url.to_string());
            }
            all.push_str(&line);
            all.push('\n');
        }
        all
    });
    let url = rx.recv_timeout(Duration::from_secs(30)).expect("the gateway listens");
    (url, reader)
}

/// One HTTP client session: POSTs carrying its `Mcp-Session-Id`.
struct HttpSession {
    agent: ureq::Agent,
    url: String,
    id: String,
}

impl HttpSession {
    fn start(url: &str) -> HttpSession {
        let agent = ureq::Agent::new_with_defaults();
        let mut response = agent
            .post(url)
            .header("Accept", "application/json, text/event-stream")
            .header("Content-Type", "application/json")
            .send(INITIALIZE)
            .unwrap();
        let id = response.headers()["mcp-session-id"].to_str().unwrap().to_string();
        let body = response.body_mut().read_to_string().unwrap();
        assert!(body.contains(r#""serverInfo""#), "{body}");
        let session = HttpSession {
            agent,
            url: url.to_string(),
            id,
        };
        session.post(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#);
        session
    }

    fn post(&self, message: &str) -> String {
        let mut response = self
            .agent
            .post(&self.url)
            .header("Accept", "application/json, text/event-stream")
            .header("Content-Type", "application/json")
            .header("Mcp-Session-Id", &self.id)
            .header("MCP-Protocol-Version", "2025-11-25")
            .send(message)
            .unwrap();
        response.body_mut().read_to_string().unwrap()
    }

    /// A request's answer, from a JSON body or the last SSE `data` line.
    fn ask(&self, message: &str) -> Json {
        let body = self.post(message);
        let json = body
            .lines()
            .filter_map(|l| l.strip_prefix("data:"))
            .next_back()
            .map_or(body.as_str(), str::trim);
        serde_json::from_str(json).unwrap_or_else(|e| panic!("{e}: {body}"))
    }
}

#[test]
fn limits_and_session_rules_hold_per_http_session() {
    let Some(s) = Setup::new() else { return };
    let mut child = s
        .gateway(&["--listen", "127.0.0.1:0"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (url, log) = http_address(&mut child);
    let first = HttpSession::start(&url);
    let second = HttpSession::start(&url);
    assert_ne!(first.id, second.id);
    let out = s.path("out.txt");
    limit_and_taint(&mut |m| first.ask(m), &s, &out);
    // The other session has its own limit and no taint.
    for id in 1..=2 {
        let (is_error, text) = outcome(&second.ask(&call(id, "echo", &json!({"text": "b"}))));
        assert!(!is_error, "{text}");
    }
    let answer = second.ask(&call(3, "echo", &json!({"text": "b"})));
    assert!(outcome(&answer).0, "{answer}");
    let used = answer["result"]["_meta"]["rein/decision"]["reasons"][0]
        .as_str()
        .unwrap();
    assert!(used.contains(&format!("session.id=mcp:fs/{} ", second.id)), "{answer}");
    let (is_error, text) = outcome(&second.ask(&call(4, "write_file", &json!({"path": out, "content": "b"}))));
    assert!(!is_error && out.exists(), "{text}");
    // The first session is still tainted.
    let other = s.path("other.txt");
    let (is_error, _) = outcome(&first.ask(&call(7, "write_file", &json!({"path": other, "content": "a"}))));
    assert!(is_error && !other.exists());
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = child.wait().unwrap();
    let log = log.join().unwrap();
    assert_eq!(status.code(), Some(0), "{log}");
}

/// A stateless (2026-07-28) request over HTTP, with `_meta["rein/session"]`
/// when `session` is given; its answer.
fn stateless_call(url: &str, id: u64, session: Option<&str>) -> Json {
    let mut meta = json!({
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientInfo": {"name": "stateless", "version": "1"},
        "io.modelcontextprotocol/clientCapabilities": {},
    });
    if let Some(session) = session {
        meta["rein/session"] = json!(session);
    }
    let message = json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
        "params": {"name": "echo", "arguments": {"text": "s"}, "_meta": meta}});
    let mut response = ureq::Agent::new_with_defaults()
        .post(url)
        .header("Accept", "application/json, text/event-stream")
        .header("Content-Type", "application/json")
        .header("MCP-Protocol-Version", "2026-07-28")
        .send(message.to_string())
        .unwrap();
    let body = response.body_mut().read_to_string().unwrap();
    let json = body
        .lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .next_back()
        .map_or(body.as_str(), str::trim);
    serde_json::from_str(json).unwrap_or_else(|e| panic!("{e}: {body}"))
}

/// A stateless client has no MCP session: its Rein session is the
/// `_meta["rein/session"]` it sends, and without one a rule reading the
/// session refuses the call.
#[test]
fn stateless_clients_name_their_session_in_meta() {
    let Some(s) = Setup::new() else { return };
    let mut child = s
        .gateway(&["--listen", "127.0.0.1:0"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (url, log) = http_address(&mut child);
    for id in 1..=2 {
        let answer = stateless_call(&url, id, Some("run-7"));
        assert!(!outcome(&answer).0, "{answer}");
    }
    let answer = stateless_call(&url, 3, Some("run-7"));
    assert!(outcome(&answer).0, "{answer}");
    let used = answer["result"]["_meta"]["rein/decision"]["reasons"][0]
        .as_str()
        .unwrap();
    // A named session is kept apart from those the gateway issues.
    assert!(used.contains("session.id=mcp:fs/named/run-7 "), "{answer}");
    let answer = stateless_call(&url, 4, Some("run-8"));
    assert!(!outcome(&answer).0, "{answer}");
    let answer = stateless_call(&url, 5, None);
    let (is_error, text) = outcome(&answer);
    assert!(is_error, "{answer}");
    assert!(text.contains("session required"), "{text}");
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = child.wait().unwrap();
    let log = log.join().unwrap();
    assert_eq!(status.code(), Some(0), "{log}");
}

/// The `.mcp.json` `rein mcp wrap` writes, run as Claude Code runs it: the
/// wrapped command and arguments start the gateway, which lists the tools
/// and decides the calls.
#[test]
fn a_wrapped_client_configuration_runs_the_gateway() {
    let Some(s) = Setup::new() else { return };
    let config = json!({"mcpServers": {"fs": {
        "command": s.python,
        "args": [s.path("server.py")],
        "env": {"SOME": "value"},
    }}});
    std::fs::write(s.path(".mcp.json"), serde_json::to_string_pretty(&config).unwrap()).unwrap();
    let policy = s.str("policy/policy.yaml");
    let rein_bin = env!("CARGO_BIN_EXE_rein");
    let (code, out, err) = s.rein(&["mcp", "wrap", "--yes", "--policy", &policy, "--rein-bin", rein_bin]);
    assert_eq!(code, 0, "{out}{err}");
    let wrapped: Json = serde_json::from_str(&std::fs::read_to_string(s.path(".mcp.json")).unwrap()).unwrap();
    let server = &wrapped["mcpServers"]["fs"];
    assert_eq!(server["command"], rein_bin, "{wrapped}");
    assert_eq!(server["env"], json!({"SOME": "value"}));
    let args: Vec<&str> = server["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    // Exactly as the client runs it: the command, its args, its env.
    let mut command = Command::new(server["command"].as_str().unwrap());
    command
        .args(&args)
        .current_dir(s.path("."))
        .env("SOME", "value")
        .env_remove("REIN_LOG");
    let mut client = Stdio1::start(command);
    let list = client.ask(r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#);
    assert_eq!(list["result"]["tools"].as_array().unwrap().len(), 3, "{list}");
    let (is_error, text) = outcome(&client.ask(&call(2, "echo", &json!({"text": "wrapped"}))));
    assert!(!is_error, "{text}");
    assert_eq!(text, "wrapped");
    let (code, err) = client.finish();
    assert_eq!(code, 0, "{err}");
    // The store is the server's own, beside the policy, as wrap says.
    assert!(s.path("policy/rein-fs.db").exists(), "{err}");
    let (code, _, err) = s.rein(&["mcp", "wrap", "--undo", "--yes"]);
    assert_eq!(code, 0, "{err}");
    let undone: Json = serde_json::from_str(&std::fs::read_to_string(s.path(".mcp.json")).unwrap()).unwrap();
    assert_eq!(undone, config);
}

/// A gateway keeps its store: a second one on the same store (a client
/// that starts one gateway per server on one `--db`) stops, saying what to
/// do, rather than deciding on state the first one changes.
#[test]
fn a_second_gateway_on_a_kept_store_says_what_to_do() {
    let Some(s) = Setup::new() else { return };
    let first = Stdio1::start(s.gateway(&[]));
    let out = s.gateway(&[]).stdin(Stdio::null()).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("is kept by another Rein process"), "{err}");
    assert!(err.contains("give each stdio gateway a --db of its own"), "{err}");
    assert!(out.stdout.is_empty());
    let (code, err) = first.finish();
    assert_eq!(code, 0, "{err}");
}
