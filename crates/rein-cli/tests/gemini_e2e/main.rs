//! End to end with the real Gemini CLI, offline.
//!
//! `gemini_e2e` finds the pinned Gemini CLI that `.ci/gemini` installs (in
//! `.tools/gemini-e2e/`, or `$REIN_GEMINI_TOOLS`) and the MCP reference
//! server `.ci/claude-code` installs (`.tools/e2e/`, or `$REIN_E2E_TOOLS`),
//! then runs this same test binary again inside a new network namespace that
//! has only loopback, where the `netns_*` tests run: each starts a scripted
//! fake Gemini API on 127.0.0.1 ([`fake_gemini`]), a scratch HOME and
//! project, and `gemini -p … --yolo` with the hooks under test in the
//! project's `.gemini/settings.json`. The tests assert what the model was
//! told (the `functionResponse` in the next request) and the disk.
//!
//! Missing Gemini CLI (or no way to make a network namespace): SKIPPED on
//! stderr, except under `CI=true`, where it fails.
//!
//! Set `REIN_GEMINI_RECORD=DIR` to have the stand-in hook's scenario write
//! every distinct event it received, scrubbed, into DIR (that is how
//! `crates/rein-hooks/tests/fixtures/gemini/` is made).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod fake_gemini;
#[path = "../claude_code_e2e/http.rs"]
mod http;
#[path = "../agent_e2e/namespace.rs"]
mod namespace;
#[path = "../agent_e2e/rein_serve.rs"]
mod rein_serve;

use fake_gemini::{call, call_id, shell, sub_call_id, FakeGemini, Told, FINAL_TEXT, SUB_MARKER};
use namespace::Suite;
use rein_serve::ReinServe;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

/// The namespace the `netns_*` tests run in, and what its messages name.
const SUITE: Suite = Suite {
    name: "gemini_e2e",
    program: "Gemini CLI",
    netns_env: "REIN_GEMINI_E2E_NETNS",
    timeout: Duration::from_secs(300),
};
const GEMINI_ENV: &str = "REIN_GEMINI_E2E_CLI";
const MCP_ENV: &str = "REIN_GEMINI_E2E_MCP_EVERYTHING";
/// Longest one `gemini -p` run may take (a run takes 3 to 10 seconds).
const GEMINI_TIMEOUT: Duration = Duration::from_secs(90);
/// How Gemini CLI 0.61 words a BeforeTool hook's refusal to the model.
const HOOK_BLOCKED: &str = "Tool execution blocked: ";
/// The secret in the project's `.env`, the body of a key file, and an
/// environment variable the MCP server could hand out: never told.
const ENV_SECRET: &str = "E2E_SECRET_TOKEN=sk-gemini-e2e-must-not-leak";
const KEY_TEXT: &str = "FAKE-GEMINI-E2E-KEY-BODY";
/// The body of a key committed by mistake as `deploy/key.txt`: the model
/// may run `cat` on it but must not be shown it.
const PROJECT_KEY_TEXT: &str = "FAKE-GEMINI-E2E-PROJECT-KEY-must-be-withheld";
const MCP_SECRET_ENV: (&str, &str) = ("E2E_MCP_SECRET", "gemini-mcp-secret-must-not-leak");

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

fn rein_bin() -> &'static str {
    env!("CARGO_BIN_EXE_rein")
}

// ---- outside the namespace ------------------------------------------------

fn find_tools() -> Result<(PathBuf, PathBuf), String> {
    let prefix = |var: &str, default: &str| match std::env::var_os(var) {
        Some(p) => repo().join(p),
        None => repo().join(default),
    };
    let gemini =
        prefix("REIN_GEMINI_TOOLS", ".tools/gemini-e2e").join("node_modules/@google/gemini-cli/bundle/gemini.js");
    let mcp = prefix("REIN_E2E_TOOLS", ".tools/e2e")
        .join("node_modules/@modelcontextprotocol/server-everything/dist/index.js");
    if !gemini.is_file() {
        return Err(format!("no Gemini CLI at {}: run .ci/gemini", gemini.display()));
    }
    if !mcp.is_file() {
        return Err(format!("no MCP server at {}: run .ci/claude-code", mcp.display()));
    }
    // `--version` may create Gemini's state folder: in a scratch HOME.
    let scratch = tempfile::tempdir().map_err(|e| format!("no temporary folder: {e}"))?;
    let version = Command::new("node")
        .arg(&gemini)
        .arg("--version")
        .env("HOME", scratch.path())
        .output();
    match version {
        Ok(o) if String::from_utf8_lossy(&o.stdout).trim() == "0.61.0" => Ok((gemini, mcp)),
        Ok(o) => Err(format!(
            "Gemini CLI says {:?}, not 0.61.0",
            String::from_utf8_lossy(&o.stdout).trim()
        )),
        Err(e) => Err(format!("cannot run node: {e}")),
    }
}

#[test]
fn gemini_e2e() {
    if SUITE.is_rerun() {
        return;
    }
    let (gemini, mcp) = match find_tools() {
        Ok(t) => t,
        Err(why) => return SUITE.unavailable(&why),
    };
    SUITE.run_in_namespace(&[(GEMINI_ENV, gemini.as_os_str()), (MCP_ENV, mcp.as_os_str())]);
}

// ---- inside the namespace ---------------------------------------------------

struct Env {
    gemini: PathBuf,
    mcp: PathBuf,
}

fn netns() -> Option<Env> {
    SUITE.inside().then(|| Env {
        gemini: std::env::var_os(GEMINI_ENV).unwrap().into(),
        mcp: std::env::var_os(MCP_ENV).unwrap().into(),
    })
}

/// A scratch HOME (Gemini's user settings: API-key auth, no telemetry or
/// update checks, the MCP server, the project trusted) and project
/// (`README.md`, `.env`, `deploy/key.pem`), plus logs.
struct Sandbox {
    _dir: tempfile::TempDir,
    root: PathBuf,
    home: PathBuf,
    project: PathBuf,
}

struct Run {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

impl Run {
    fn describe(&self) -> String {
        format!(
            "gemini exited {}\n--- stdout\n{}\n--- stderr\n{}",
            self.status, self.stdout, self.stderr
        )
    }
}

impl Sandbox {
    fn new(env: &Env, name: &str) -> Sandbox {
        let dir = tempfile::Builder::new()
            .prefix(&format!("rein-gemini-{name}-"))
            .tempdir()
            .unwrap();
        let root = dir.path().canonicalize().unwrap();
        let (home, project) = (root.join("home"), root.join("project"));
        fs::create_dir_all(home.join(".gemini")).unwrap();
        fs::create_dir_all(home.join("precious")).unwrap();
        fs::create_dir_all(project.join("deploy")).unwrap();
        fs::write(home.join("precious/keep.txt"), "still here\n").unwrap();
        fs::write(project.join("README.md"), "# gemini e2e scratch project\n").unwrap();
        fs::write(project.join(".env"), format!("{ENV_SECRET}\n")).unwrap();
        // Named like nothing secret: only its output shows what it is.
        fs::write(
            project.join("deploy/key.txt"),
            format!("-----BEGIN OPENSSH PRIVATE KEY-----\n{PROJECT_KEY_TEXT}\n-----END OPENSSH PRIVATE KEY-----\n"),
        )
        .unwrap();
        fs::write(
            project.join("deploy/key.pem"),
            format!("-----BEGIN PRIVATE KEY-----\n{KEY_TEXT}\n-----END PRIVATE KEY-----\n"),
        )
        .unwrap();
        let user = json!({
            "security": {"auth": {"selectedType": "gemini-api-key"}},
            "general": {"disableAutoUpdate": true, "disableUpdateNag": true},
            "privacy": {"usageStatisticsEnabled": false},
            "telemetry": {"enabled": false},
            "mcpServers": {"everything": {"command": "node", "args": [env.mcp, "stdio"]}},
        });
        fs::write(home.join(".gemini/settings.json"), user.to_string()).unwrap();
        // Gemini CLI runs no hook at all in a folder it does not trust.
        fs::write(
            home.join(".gemini/trustedFolders.json"),
            json!({project.display().to_string(): "TRUST_FOLDER"}).to_string(),
        )
        .unwrap();
        Sandbox {
            _dir: dir,
            root,
            home,
            project,
        }
    }

    fn precious(&self) -> PathBuf {
        self.home.join("precious/keep.txt")
    }

    fn project_settings(&self) -> PathBuf {
        self.project.join(".gemini/settings.json")
    }

    /// Writes the project's `.gemini/settings.json`.
    fn write_project_settings(&self, value: &Value) {
        fs::create_dir_all(self.project.join(".gemini")).unwrap();
        fs::write(self.project_settings(), serde_json::to_string_pretty(value).unwrap()).unwrap();
    }

    /// `gemini -p "Run the scripted steps." --yolo` in the project against
    /// `model`, with only PATH kept from this environment.
    fn gemini(&self, env: &Env, model: &FakeGemini, extra_env: &[(&str, &str)]) -> Run {
        let n = fs::read_dir(&self.root).unwrap().count();
        let out = self.root.join(format!("gemini-{n}.stdout"));
        let err = self.root.join(format!("gemini-{n}.stderr"));
        let mut cmd = Command::new("node");
        cmd.arg(&env.gemini)
            .args(["-p", "Run the scripted steps.", "--yolo"])
            .current_dir(&self.project)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", &self.home)
            .env("TMPDIR", std::env::temp_dir())
            .env("GEMINI_API_KEY", "gemini-e2e-fake-key")
            .env("GOOGLE_GEMINI_BASE_URL", model.base_url())
            .env(MCP_SECRET_ENV.0, MCP_SECRET_ENV.1)
            .stdin(Stdio::null())
            .stdout(fs::File::create(&out).unwrap())
            .stderr(fs::File::create(&err).unwrap());
        for (k, v) in extra_env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("start gemini");
        let deadline = Instant::now() + GEMINI_TIMEOUT;
        let status = loop {
            if let Some(s) = child.try_wait().unwrap() {
                break s;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "gemini did not finish within {GEMINI_TIMEOUT:?}; stderr:\n{}",
                    fs::read_to_string(&err).unwrap_or_default()
                );
            }
            thread::sleep(Duration::from_millis(20));
        };
        Run {
            status,
            stdout: fs::read_to_string(&out).unwrap_or_default(),
            stderr: fs::read_to_string(&err).unwrap_or_default(),
        }
    }
}

/// Collects failed expectations, so one run reports all of them.
struct Checks {
    name: &'static str,
    failures: Vec<String>,
}

impl Checks {
    fn new(name: &'static str) -> Checks {
        Checks {
            name,
            failures: Vec::new(),
        }
    }

    fn check(&mut self, ok: bool, what: impl Into<String>) {
        if !ok {
            self.failures.push(what.into());
        }
    }

    fn get<'a>(&mut self, told: &'a BTreeMap<String, Told>, id: &str) -> Option<&'a Told> {
        let t = told.get(id);
        if t.is_none() {
            self.failures.push(format!("{id}: Gemini CLI sent no functionResponse"));
        }
        t
    }

    /// The call ran: an output containing `needle`, no error.
    fn ran(&mut self, told: &BTreeMap<String, Told>, id: &str, needle: &str) {
        if let Some(t) = self.get(told, id) {
            let ok = t.error.is_none() && t.output.as_deref().is_some_and(|o| o.contains(needle));
            self.check(ok, format!("{id}: expected an output containing {needle:?}, got {t:?}"));
        }
    }

    /// The call was refused by a BeforeTool hook whose reason contains
    /// `needle` (Gemini's own refusals are worded otherwise).
    fn hook_refused(&mut self, told: &BTreeMap<String, Told>, id: &str, needle: &str) {
        if let Some(t) = self.get(told, id) {
            let ok = t.output.is_none()
                && t.error
                    .as_deref()
                    .is_some_and(|e| e.starts_with(HOOK_BLOCKED) && e.contains(needle));
            self.check(
                ok,
                format!("{id}: expected a hook refusal containing {needle:?}, got {t:?}"),
            );
        }
    }

    /// The call got an error of any kind containing `needle`.
    fn errored(&mut self, told: &BTreeMap<String, Told>, id: &str, needle: &str) {
        if let Some(t) = self.get(told, id) {
            let ok = t.error.as_deref().is_some_and(|e| e.contains(needle));
            self.check(ok, format!("{id}: expected an error containing {needle:?}, got {t:?}"));
        }
    }

    fn completed(&mut self, model: &FakeGemini, run: &Run) {
        self.check(run.status.success(), format!("gemini exited with {}", run.status));
        self.check(
            run.stdout.contains(FINAL_TEXT),
            format!("stdout does not hold the model's last answer: {:?}", run.stdout),
        );
        let told = model.told();
        self.check(
            told.len() == model.script_len(),
            format!("{} results for {} scripted calls", told.len(), model.script_len()),
        );
    }

    fn finish(self, model: &FakeGemini, run: &Run) {
        let mut report = String::new();
        for (id, t) in model.told().iter().chain(model.sub_told().iter()) {
            report.push_str(&format!("  {id} {}: {:?}\n", t.name, t.text()));
        }
        println!("{}: what the model was told:\n{report}", self.name);
        if !self.failures.is_empty() {
            panic!(
                "{}: {} expectation(s) failed:\n- {}\n\n{}",
                self.name,
                self.failures.len(),
                self.failures.join("\n- "),
                run.describe()
            );
        }
    }
}

/// `'a' 'b' …`, each single-quoted for `sh`.
fn shell_words(words: &[String]) -> String {
    words
        .iter()
        .map(|w| format!("'{}'", w.replace('\'', r"'\''")))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Project settings with `command` as the hook for `events` (every tool).
fn hook_settings(events: &[&str], command: &str) -> Value {
    let mut hooks = serde_json::Map::new();
    for event in events {
        hooks.insert(
            event.to_string(),
            json!([{"matcher": "*", "hooks": [{"name": "e2e", "type": "command", "command": command, "timeout": 30000}]}]),
        );
    }
    json!({"hooks": hooks})
}

/// The coding-agent contracts and the example policy.
fn policies() -> Vec<PathBuf> {
    vec![
        repo().join("policies/agents/coding-agent.yaml"),
        repo().join("examples/claude-code/policy.yaml"),
    ]
}

// ---- scenarios ----------------------------------------------------------------

/// Every event Gemini CLI 0.61 has a hook for.
const ALL_EVENTS: &[&str] = &[
    "BeforeTool",
    "AfterTool",
    "BeforeAgent",
    "AfterAgent",
    "SessionStart",
    "SessionEnd",
    "BeforeModel",
    "AfterModel",
    "BeforeToolSelection",
    "PreCompress",
    "Notification",
];

/// The harness with a stand-in hook (a shell script, not Rein) on every
/// event: it dumps the stdin it receives and refuses `rm`. Shows that the
/// fake API drives the real tools, that `~` is the scratch HOME, that a
/// hook's `{"decision":"deny"}` reaches the model as Gemini words it, and
/// that the MCP server answers.
#[test]
#[ignore = "runs inside the loopback-only namespace that gemini_e2e makes"]
fn netns_harness_selfcheck_with_stand_in_hook() {
    let Some(env) = netns() else { return };
    let sb = Sandbox::new(&env, "selfcheck");
    let dump = sb.root.join("hook-stdin.jsonl");
    let hook = sb.root.join("stand-in-hook.sh");
    fs::write(
        &hook,
        format!(
            "#!/bin/sh\nin=$(cat)\nprintf '%s\\n' \"$in\" >> '{}'\ncase \"$in\" in\n  *'\"rm '*) echo '{{\"decision\":\"deny\",\"reason\":\"stand-in hook: rm is refused\"}}' ;;\n  *) echo '{{}}' ;;\nesac\n",
            dump.display()
        ),
    )
    .unwrap();
    Command::new("chmod").arg("+x").arg(&hook).status().unwrap();
    sb.write_project_settings(&hook_settings(ALL_EVENTS, &hook.display().to_string()));
    fs::create_dir_all(sb.project.join("sub")).unwrap();
    let notes = sb.project.join("notes.txt");
    // Every kind of tool, so that the stand-in hook sees (and records) each.
    let model = FakeGemini::start(
        vec![
            call(
                "run_shell_command",
                json!({"command": "echo hello-from-the-fake-model; echo ~; pwd", "dir_path": "sub"}),
            ),
            shell("rm -rf ~/precious"),
            call("mcp_everything_echo", json!({"message": "hello-over-mcp"})),
            // 3: grep by its name before 0.61
            call("search_file_content", json!({"pattern": "scratch"})),
            call("read_file", json!({"file_path": sb.project.join("README.md")})),
            call(
                "write_file",
                json!({"file_path": notes, "content": "written by the model\n"}),
            ),
            call(
                "replace",
                json!({"file_path": notes, "instruction": "edit", "old_string": "written", "new_string": "edited"}),
            ),
            call("glob", json!({"pattern": "*.md"})),
            call("grep_search", json!({"pattern": "scratch", "include_pattern": "*.md"})),
            call("list_directory", json!({"dir_path": sb.project})),
            call("web_fetch", json!({"prompt": "summarise https://example.net/x"})),
            call("google_web_search", json!({"query": "rust"})),
            call("update_topic", json!({"strategic_intent": "testing", "title": "t"})),
            call(
                "invoke_agent",
                json!({"agent_name": "codebase_investigator", "prompt": format!("{SUB_MARKER}: look around")}),
            ),
        ],
        vec![
            call("glob", json!({"pattern": "*.md"})),
            call(
                "complete_task",
                json!({"report": {"SummaryOfFindings": "scripted", "ExplorationTrace": [], "RelevantLocations": []}}),
            ),
        ],
        None,
    );
    let run = sb.gemini(&env, &model, &[]);
    let told = model.told();
    let mut c = Checks::new("selfcheck");
    c.completed(&model, &run);
    c.ran(
        &told,
        &call_id(0),
        &format!(
            "hello-from-the-fake-model\n{}\n{}",
            sb.home.display(),
            sb.project.join("sub").display()
        ),
    );
    c.hook_refused(&told, &call_id(1), "stand-in hook: rm is refused");
    c.check(sb.precious().exists(), "the refused rm -rf ran");
    c.ran(&told, &call_id(2), "Echo: hello-over-mcp");
    c.ran(&told, &call_id(3), "scratch");
    c.ran(&told, &call_id(4), "# gemini e2e scratch project");
    c.check(
        fs::read_to_string(&notes).unwrap_or_default() == "edited by the model\n",
        "write_file and replace did not leave `edited by the model`",
    );
    c.ran(&told, &call_id(7), "README.md");
    c.ran(&told, &call_id(8), "scratch");
    c.ran(&told, &call_id(9), "README.md");
    // Offline: Gemini's own fetch refuses; the search finds nothing.
    c.errored(&told, &call_id(10), "");
    c.ran(&told, &call_id(13), "codebase_investigator");

    c.ran(&model.sub_told(), &fake_gemini::sub_call_id(0), "README.md");
    let events: Vec<Value> = fs::read_to_string(&dump)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let names: std::collections::BTreeSet<&str> = events.iter().filter_map(|e| e["hook_event_name"].as_str()).collect();
    for want in [
        "SessionStart",
        "BeforeAgent",
        "BeforeTool",
        "AfterTool",
        "BeforeModel",
        "AfterAgent",
        "SessionEnd",
    ] {
        c.check(
            names.contains(want),
            format!("the hook never received {want}: {names:?}"),
        );
    }
    if let Some(first) = events.first() {
        println!("the first event the stand-in hook received: {first}");
    }
    let offered = model.offered();
    println!("tools offered to the model: {offered:?}");
    for tool in [
        "run_shell_command",
        "read_file",
        "write_file",
        "replace",
        "glob",
        "grep_search",
        "list_directory",
        "invoke_agent",
        "mcp_everything_echo",
    ] {
        c.check(offered.iter().any(|o| o == tool), format!("{tool} was not offered"));
    }
    if let Some(dir) = std::env::var_os("REIN_GEMINI_RECORD") {
        // Relative to the repository, as the README's command gives it.
        record(&repo().join(dir), &sb, &env, &events, &model);
    }
    c.finish(&model, &run);
}

/// Writes each distinct event (`<event>[-<tool>].json`, the first seen),
/// scrubbed of this machine's paths.
fn record(dir: &Path, sb: &Sandbox, env: &Env, events: &[Value], model: &FakeGemini) {
    fs::create_dir_all(dir).unwrap();
    let (mut main, mut sub, mut mcp) = (Vec::new(), Vec::new(), Vec::new());
    for request in model.requests() {
        let in_sub = request["contents"][0].to_string().contains(SUB_MARKER);
        for name in fake_gemini::declared(&request) {
            let list = if name.starts_with("mcp_") {
                &mut mcp
            } else if in_sub {
                &mut sub
            } else {
                &mut main
            };
            if !list.contains(&name) {
                list.push(name);
            }
        }
    }
    sub.retain(|n| !main.contains(n));
    for list in [&mut main, &mut sub, &mut mcp] {
        list.sort();
    }
    let mut seen: Vec<String> = events
        .iter()
        .filter_map(|e| e["tool_name"].as_str().map(str::to_string))
        .collect();
    seen.sort();
    seen.dedup();
    // Where the hook's `tool_name` differs from the name the model called
    // (`original_request_name`, when Gemini sends one).
    let mut differs = serde_json::Map::new();
    for e in events {
        if let (Some(asked), Some(hook)) = (e["original_request_name"].as_str(), e["tool_name"].as_str()) {
            if asked != hook {
                differs.insert(asked.to_string(), json!(hook));
            }
        }
    }
    // Names the hook saw that were never offered to the model: a legacy
    // alias Gemini still runs (`search_file_content` runs `grep_search`).
    let not_offered: Vec<&String> = seen
        .iter()
        .filter(|n| !main.contains(n) && !sub.contains(n) && !mcp.contains(n))
        .collect();
    let tools = json!({
        "program": "@google/gemini-cli 0.61.0",
        "how": "the function declarations Gemini CLI sent to a fake Gemini API (gemini -p --yolo, offline), and the tool_name its BeforeTool/AfterTool hooks received for the calls the fake model made",
        "builtin": main,
        "builtin_subagent_codebase_investigator": sub,
        "mcp_server_everything": mcp,
        "hook_tool_name_differs": differs,
        "hook_tool_names_seen": seen,
        "hook_tool_names_not_offered": not_offered,
        "mcp_naming": {"model_facing": "mcp_<server>_<tool>", "hook_tool_name": "mcp_<server>_<tool>",
                       "hook_mcp_context": "server_name, tool_name (and the server's command, args, cwd)"},
    });
    fs::write(
        dir.join("tools.json"),
        serde_json::to_string_pretty(&tools).unwrap() + "\n",
    )
    .unwrap();
    let mcp_dir = env.mcp.parent().and_then(Path::parent).unwrap().display().to_string();
    let mut written = std::collections::BTreeSet::new();
    for e in events {
        let mut name = e["hook_event_name"].as_str().unwrap_or("unknown").to_string();
        if let Some(tool) = e["tool_name"].as_str() {
            name = format!("{name}-{tool}");
        }
        // The first of each name in this run; an older recording is replaced.
        if !written.insert(name.clone()) {
            continue;
        }
        let path = dir.join(format!("{name}.json"));
        let text = serde_json::to_string_pretty(e)
            .unwrap()
            .replace(
                &mcp_dir,
                "/home/dev/node_modules/@modelcontextprotocol/server-everything",
            )
            .replace(&sb.project.display().to_string(), "/work/project")
            .replace(&sb.home.display().to_string(), "/home/dev");
        fs::write(path, text + "\n").unwrap();
    }
}

/// The approver's token, in the tokens file beside the hook's store.
const APPROVER_TOKEN: &str = "gemini-e2e-approver-token-0123456789";

/// Rein as the hook, configured by `rein init gemini` itself (so the
/// written configuration is proven against the real program): shell,
/// files, Rein's own hook configuration, MCP, a sub-agent, and a call that
/// needs approval, granted by a person between two turns and then retried.
#[test]
#[ignore = "runs inside the loopback-only namespace that gemini_e2e makes"]
fn netns_rein_init_gemini_gates_every_tool() {
    let Some(env) = netns() else { return };
    let sb = Sandbox::new(&env, "rein");
    let db = sb.root.join("state/hooks.db");
    fs::create_dir_all(db.parent().unwrap()).unwrap();
    let mut init = Command::new(rein_bin());
    init.args(["init", "gemini", "--project"])
        .arg(&sb.project)
        .arg("-y")
        .arg("--rein-bin")
        .arg(rein_bin())
        .arg("--db")
        .arg(&db);
    for p in policies() {
        init.arg("--policy").arg(p);
    }
    let out = init.env("HOME", &sb.home).output().unwrap();
    assert!(
        out.status.success(),
        "rein init gemini failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let written = fs::read_to_string(sb.project_settings()).unwrap();
    let trust_before = fs::read_to_string(sb.home.join(".gemini/trustedFolders.json")).unwrap();
    // The approver, for `rein approvals grant` on the store file.
    fs::write(
        db.parent().unwrap().join("rein-tokens.yaml"),
        format!("tokens:\n  - {{name: alice, role: approver, token: {APPROVER_TOKEN}, approves: [maintainer]}}\n"),
    )
    .unwrap();

    let approved = sb.project.join("approved.txt");
    // `dd` is not on the example's allowlist: a person looks first.
    let approved_cmd = "dd if=README.md of=approved.txt";
    let grants = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let before_turn: fake_gemini::BeforeTurn = {
        let (db, grants) = (db.clone(), grants.clone());
        Box::new(move |i, request: &Value| {
            // Before the retry (call 12): a person grants what call 11 asked.
            if i != 12 {
                return;
            }
            let text = request.to_string();
            let Some(id) = text.split("Approval `").nth(1).and_then(|r| r.split('`').next()) else {
                return;
            };
            let out = Command::new(rein_bin())
                .args(["approvals", "grant", id, "--db"])
                .arg(&db)
                .args(["--token", APPROVER_TOKEN])
                .output()
                .unwrap();
            grants.lock().unwrap().push(format!(
                "{id}: {} {}{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ));
        })
    };
    let settings_path = sb.project_settings();
    let model = FakeGemini::start(
        vec![
            // 0-2: the shell, allowed, outside the project, and a bypass
            shell("echo e2e-allowed"),
            shell("rm -rf ~/precious"),
            shell("echo ok; cat ~/.ssh/id_rsa"),
            // 3, 4: a file written in the project; a key file read
            call(
                "write_file",
                json!({"file_path": sb.project.join("notes.txt"), "content": "written by the model\n"}),
            ),
            call("read_file", json!({"file_path": sb.project.join("deploy/key.pem")})),
            // 5, 6: Rein's own hook configuration, rewritten and patched
            call("write_file", json!({"file_path": settings_path, "content": "{}\n"})),
            call(
                "replace",
                json!({"file_path": settings_path, "instruction": "drop the hook",
                                   "old_string": "\"BeforeTool\"", "new_string": "\"Disabled\""}),
            ),
            // 7: the `.env` secret (Gemini CLI itself keeps it out of reach)
            call("read_file", json!({"file_path": sb.project.join(".env")})),
            // 8, 9: MCP tools through Gemini's MCP client: allowed, and one
            // that would hand out the environment
            call("mcp_everything_echo", json!({"message": "e2e-mcp-hello"})),
            call("mcp_everything_get-env", json!({})),
            // 10: a sub-agent, whose own tool calls Rein decides too
            call(
                "invoke_agent",
                json!({"agent_name": "codebase_investigator",
                                        "prompt": format!("{SUB_MARKER}: look at the deploy folder")}),
            ),
            // 11, 12: needs approval (an unlisted program): refused naming the
            // approval; granted by a person; the same call retried runs
            shell(approved_cmd),
            shell(approved_cmd),
            // 13: a patch of a file in the project
            call(
                "replace",
                json!({"file_path": sb.project.join("notes.txt"), "instruction": "edit",
                                   "old_string": "written", "new_string": "edited"}),
            ),
            // 14-16: allowed, but the output holds a private key: withheld
            // (AfterTool), from the shell, a file read and an MCP tool
            shell("cat deploy/key.txt"),
            call("read_file", json!({"file_path": sb.project.join("deploy/key.txt")})),
            call(
                "mcp_everything_echo",
                json!({"message": "-----BEGIN OPENSSH PRIVATE KEY-----\nmade up by the model"}),
            ),
            // 17: Rein's hook configuration, from the shell
            shell("mkdir -p .gemini && echo '{}' > .gemini/settings.json"),
            // 18: Gemini's trusted folders (no hook runs in an untrusted one)
            shell("echo '{}' > ~/.gemini/trustedFolders.json"),
        ],
        vec![
            call("read_file", json!({"file_path": sb.project.join("deploy/key.pem")})),
            call("glob", json!({"pattern": "*.md"})),
            call(
                "complete_task",
                json!({"report": {"SummaryOfFindings": "scripted", "ExplorationTrace": [], "RelevantLocations": []}}),
            ),
        ],
        Some(before_turn),
    );
    let run = sb.gemini(&env, &model, &[]);
    let told = model.told();
    let sub = model.sub_told();
    let mut c = Checks::new("rein init gemini");
    c.completed(&model, &run);
    c.ran(&told, &call_id(0), "e2e-allowed");
    c.hook_refused(&told, &call_id(1), "Rein blocked");
    c.check(sb.precious().exists(), "the refused rm -rf ran: ~/precious is gone");
    c.hook_refused(&told, &call_id(2), "Rein blocked");
    c.ran(&told, &call_id(3), "notes.txt");
    c.hook_refused(&told, &call_id(4), "Rein blocked");
    c.hook_refused(&told, &call_id(5), "rein_protects_itself");
    c.hook_refused(&told, &call_id(6), "rein_protects_itself");
    c.check(
        fs::read_to_string(&settings_path).unwrap_or_default() == written,
        "Rein's hook configuration was changed",
    );
    c.errored(&told, &call_id(7), "");
    c.ran(&told, &call_id(8), "Echo: e2e-mcp-hello");
    c.hook_refused(&told, &call_id(9), "Rein blocked");
    // The sub-agent finished its task (`complete_task`, Gemini's own
    // bookkeeping, is `agent.internal`, which the example allows).
    c.ran(&told, &call_id(10), "Termination Reason: GOAL");
    c.hook_refused(&sub, &sub_call_id(0), "Rein blocked");
    c.ran(&sub, &sub_call_id(1), "README.md");
    c.hook_refused(&told, &call_id(11), "needs approval");
    c.hook_refused(&told, &call_id(11), "rein approvals grant");
    c.ran(&told, &call_id(12), "");
    c.check(
        fs::read_to_string(&approved).unwrap_or_default() == "# gemini e2e scratch project\n",
        format!(
            "the approved command did not run after the grant: {:?}",
            grants.lock().unwrap()
        ),
    );
    c.ran(&told, &call_id(13), "notes.txt");
    c.check(
        fs::read_to_string(sb.project.join("notes.txt")).unwrap_or_default() == "edited by the model\n",
        "the allowed write and replace did not leave `edited by the model`",
    );
    for i in 14..=16 {
        // AfterTool's deny replaces the output with the reason alone.
        c.errored(&told, &call_id(i), "(rule no_private_keys_in_output)");
    }
    c.check(
        !model.told_anywhere("made up by the model"),
        "the MCP output holding a key was told",
    );
    c.hook_refused(&told, &call_id(17), "rein_protects_itself");
    c.hook_refused(&told, &call_id(18), "rein_protects_itself");
    c.check(
        fs::read_to_string(sb.home.join(".gemini/trustedFolders.json")).unwrap_or_default() == trust_before,
        "Gemini's trusted folders were changed",
    );
    for secret in [ENV_SECRET, KEY_TEXT, MCP_SECRET_ENV.1, PROJECT_KEY_TEXT] {
        c.check(!model.told_anywhere(secret), format!("the model was told {secret:?}"));
    }
    println!("grants: {:?}", grants.lock().unwrap());
    c.finish(&model, &run);
}

/// A policy that does not load, and a `--server` nobody listens on: every
/// tool call is refused, none runs.
#[test]
#[ignore = "runs inside the loopback-only namespace that gemini_e2e makes"]
fn netns_rein_refuses_without_a_policy_or_a_server() {
    let Some(env) = netns() else { return };
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let broken = std::env::temp_dir().join(format!("rein-gemini-broken-{}.yaml", std::process::id()));
    fs::write(&broken, "version: 1\nrules:\n  - id: [not a rule\n").unwrap();
    let cases: [(&str, Vec<String>); 2] = [
        ("broken policy", vec!["--policy".into(), broken.display().to_string()]),
        (
            "dead server",
            vec![
                "--server".into(),
                format!("http://127.0.0.1:{closed}"),
                "--token".into(),
                "e2e-token-0123456789".into(),
            ],
        ),
    ];
    for (name, args) in cases {
        let sb = Sandbox::new(&env, "refuse");
        let mut words = vec![rein_bin().to_string(), "hook".into(), "gemini".into()];
        words.extend(args);
        if name == "broken policy" {
            words.extend(["--db".into(), sb.root.join("hooks.db").display().to_string()]);
        }
        words.extend(["--timeout".into(), "5".into()]);
        sb.write_project_settings(&hook_settings(&["BeforeTool", "AfterTool"], &shell_words(&words)));
        let touched = sb.project.join("touched");
        let model = FakeGemini::start(
            vec![
                shell(&format!("touch {}", touched.display())),
                call(
                    "write_file",
                    json!({"file_path": sb.project.join("notes.txt"), "content": "x\n"}),
                ),
            ],
            vec![],
            None,
        );
        let run = sb.gemini(&env, &model, &[]);
        let told = model.told();
        let mut c = Checks::new(if name == "broken policy" {
            "broken policy"
        } else {
            "dead server"
        });
        c.completed(&model, &run);
        c.hook_refused(&told, &call_id(0), "Rein");
        c.hook_refused(&told, &call_id(1), "Rein");
        c.check(!touched.exists(), format!("{name}: the shell command ran"));
        c.check(
            !sb.project.join("notes.txt").exists(),
            format!("{name}: the file was written"),
        );
        c.finish(&model, &run);
    }
    let _ = fs::remove_file(&broken);
}

/// The agent token `rein serve` knows the hook by.
const AGENT_TOKEN: &str = "gemini-e2e-agent-token-0123456789";

/// `rein init gemini --server URL` against a running `rein serve`: Gemini
/// has no HTTP hooks, so the command hook asks the server's
/// `/v1/hooks/gemini` with the token from `$REIN_TOKEN`; then the server is
/// killed between two turns, and the next call is refused.
#[test]
#[ignore = "runs inside the loopback-only namespace that gemini_e2e makes"]
fn netns_rein_init_gemini_through_rein_serve_then_killed() {
    let Some(env) = netns() else { return };
    let sb = Sandbox::new(&env, "serve");
    let serve = ReinServe::start(rein_bin(), &policies(), &sb.root, "gemini", AGENT_TOKEN);
    let url = serve.url.clone();
    let kill = serve.killer();

    let out = Command::new(rein_bin())
        .args(["init", "gemini", "--project"])
        .arg(&sb.project)
        .args([
            "-y",
            "--server",
            &url,
            "--token-env",
            "REIN_TOKEN",
            "--rein-bin",
            rein_bin(),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "rein init gemini --server failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let touched = sb.project.join("after-the-kill");
    let model = {
        let kill = kill.clone();
        FakeGemini::start(
            vec![
                shell("echo via-rein-serve"),
                shell("rm -rf ~/precious"),
                shell(&format!("touch {}", touched.display())),
            ],
            vec![],
            Some(Box::new(move |i, _| {
                if i == 2 {
                    kill();
                }
            })),
        )
    };
    let run = sb.gemini(&env, &model, &[("REIN_TOKEN", AGENT_TOKEN)]);
    kill();
    let told = model.told();
    let mut c = Checks::new("rein init gemini --server");
    c.completed(&model, &run);
    c.ran(&told, &call_id(0), "via-rein-serve");
    c.hook_refused(&told, &call_id(1), "Rein blocked");
    c.check(sb.precious().exists(), "the refused rm -rf ran: ~/precious is gone");
    c.hook_refused(&told, &call_id(2), "did not answer");
    c.check(!touched.exists(), "a command ran after rein serve was killed");
    // The decisions were the server's: in its audit log, under the agent token.
    let audit = Command::new(rein_bin())
        .args(["audit", "export", "--db"])
        .arg(sb.root.join("serve.db"))
        .output()
        .unwrap();
    let audit = String::from_utf8_lossy(&audit.stdout);
    c.check(
        audit.contains("echo via-rein-serve") && audit.contains("rm -rf ~/precious"),
        format!("rein serve's audit log does not hold the two calls:\n{audit}"),
    );
    c.finish(&model, &run);
}

/// Why `rein init gemini` gives the hook its own timeout: Gemini CLI fails
/// OPEN. A stand-in hook that outlives Gemini's `timeout`, and one that
/// exits 1, both let the call run (the control). Then Rein, configured by
/// `rein init gemini --timeout 2000` (the hook's own `--timeout 1`), asks a
/// server that accepts the connection and never answers: Rein refuses
/// before Gemini gives up on the hook, and nothing runs.
#[test]
#[ignore = "runs inside the loopback-only namespace that gemini_e2e makes"]
fn netns_gemini_fails_open_so_rein_refuses_first() {
    let Some(env) = netns() else { return };

    let sb = Sandbox::new(&env, "fail-open");
    let hook = sb.root.join("stand-in-hook.sh");
    fs::write(
        &hook,
        "#!/bin/sh\nin=$(cat)\ncase \"$in\" in\n  *slow*) sleep 5; echo '{\"decision\":\"deny\",\"reason\":\"too late\"}' ;;\n  *crash*) echo 'stand-in hook crashed' >&2; exit 1 ;;\n  *) echo '{}' ;;\nesac\n",
    )
    .unwrap();
    Command::new("chmod").arg("+x").arg(&hook).status().unwrap();
    let mut settings = hook_settings(&["BeforeTool"], &hook.display().to_string());
    settings["hooks"]["BeforeTool"][0]["hooks"][0]["timeout"] = json!(1000);
    sb.write_project_settings(&settings);
    let (slow, crash) = (sb.project.join("slow"), sb.project.join("crash"));
    let model = FakeGemini::start(
        vec![
            shell(&format!("touch {}", slow.display())),
            shell(&format!("touch {}", crash.display())),
        ],
        vec![],
        None,
    );
    let run = sb.gemini(&env, &model, &[]);
    let mut c = Checks::new("Gemini fails open (control)");
    c.completed(&model, &run);
    c.check(
        slow.exists(),
        "a hook that timed out stopped the call: Gemini no longer fails open on a timeout",
    );
    c.check(
        crash.exists(),
        "a hook that exited 1 stopped the call: Gemini no longer fails open on exit 1",
    );
    c.finish(&model, &run);

    // A stand-in server (test code, not Rein) that has no opinion on the
    // session and the prompt, and never answers in time on a tool call.
    let sb = Sandbox::new(&env, "hung-server");
    let hung = http::HttpServer::start(Arc::new(|req: &http::Request| {
        if String::from_utf8_lossy(&req.body).contains("\"BeforeTool\"") {
            thread::sleep(Duration::from_secs(8));
        }
        http::Response {
            status: "200 OK",
            content_type: "application/json",
            body: "{}".into(),
        }
    }));
    let out = Command::new(rein_bin())
        .args(["init", "gemini", "--project"])
        .arg(&sb.project)
        .args([
            "-y",
            "--server",
            &hung.url(),
            "--timeout",
            "2000",
            "--rein-bin",
            rein_bin(),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "rein init gemini failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let touched = sb.project.join("touched");
    let model = FakeGemini::start(vec![shell(&format!("touch {}", touched.display()))], vec![], None);
    let run = sb.gemini(&env, &model, &[("REIN_TOKEN", AGENT_TOKEN)]);
    let told = model.told();
    let mut c = Checks::new("rein refuses before Gemini's timeout");
    c.completed(&model, &run);
    c.hook_refused(&told, &call_id(0), "did not answer");
    c.check(
        !touched.exists(),
        "the call ran: Gemini gave up on the hook before Rein refused",
    );
    c.finish(&model, &run);
}
