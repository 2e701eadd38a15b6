//! `rein init cursor` end to end: the real binary writing Cursor's
//! `.cursor/hooks.json` in temporary projects, and the hook it writes
//! answering one of Cursor's documented events.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde_json::{json, Value};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

const EVENTS: [&str; 5] = [
    "preToolUse",
    "beforeSubmitPrompt",
    "postToolUse",
    "sessionStart",
    "sessionEnd",
];

/// Cursor's events that fire for a shell command, an MCP tool or a read
/// that `preToolUse` already stands for: never hooked by Rein, so that one
/// call is decided once.
const GRANULAR: [&str; 3] = ["beforeShellExecution", "beforeMCPExecution", "beforeReadFile"];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

struct Project {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
}

impl Project {
    fn new() -> Project {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().canonicalize().unwrap().join("project");
        fs::create_dir_all(dir.join(".git")).unwrap();
        fs::write(dir.join(".git/HEAD"), "ref: refs/heads/main\n").unwrap();
        Project { _tmp: tmp, dir }
    }

    fn hooks(&self) -> PathBuf {
        self.dir.join(".cursor/hooks.json")
    }

    /// `rein init cursor ARGS` in the project, with an installed `rein` on
    /// PATH (a link to the one under test).
    fn init(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_rein"))
            .args(["init", "cursor"])
            .args(args)
            .current_dir(&self.dir)
            .env("NO_COLOR", "1")
            .env("PATH", self.installed().parent().unwrap())
            .output()
            .unwrap()
    }

    fn installed(&self) -> PathBuf {
        let bin = self._tmp.path().join("bin");
        let rein = bin.join("rein");
        if !rein.exists() {
            fs::create_dir_all(&bin).unwrap();
            std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_rein"), &rein).unwrap();
        }
        rein
    }

    fn read(&self) -> Value {
        serde_json::from_str(&fs::read_to_string(self.hooks()).unwrap()).unwrap()
    }

    fn policy_args(&self) -> Vec<String> {
        let contracts = root().join("policies/agents/coding-agent.yaml");
        let rules = root().join("examples/claude-code/policy.yaml");
        vec![
            "--policy".into(),
            contracts.to_string_lossy().into_owned(),
            rules.to_string_lossy().into_owned(),
            "--db".into(),
            "rein.db".into(),
            "-y".into(),
        ]
    }

    fn init_policy(&self, extra: &[&str]) -> Output {
        let mut args = self.policy_args();
        args.extend(extra.iter().map(|s| s.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.init(&args)
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn ok(o: &Output) {
    assert_eq!(
        o.status.code(),
        Some(0),
        "stdout:\n{}\nstderr:\n{}",
        text(&o.stdout),
        text(&o.stderr)
    );
}

/// Rein's handlers of `event` (commands running `rein hook cursor`).
fn rein_handlers(file: &Value, event: &str) -> Vec<Value> {
    file["hooks"][event]
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| h["command"].as_str().is_some_and(|c| c.contains(" hook cursor")))
        .cloned()
        .collect()
}

/// Runs the hook `command` as Cursor does (`sh -c`, in the project, the
/// event on stdin): its JSON answer and exit code.
fn run_hook(dir: &Path, command: &str, event: &Value) -> (Value, i32) {
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(command)
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(event.to_string().as_bytes())
        .unwrap();
    let o = child.wait_with_output().unwrap();
    let v = serde_json::from_slice(&o.stdout).unwrap_or(Value::Null);
    (v, o.status.code().unwrap_or(-1))
}

/// A documented event (tests/fixtures/cursor/NAME.json) in project `dir`.
fn documented(dir: &Path, name: &str) -> Value {
    let fixture = fs::read_to_string(root().join(format!("crates/rein-hooks/tests/fixtures/cursor/{name}.json")))
        .unwrap()
        .replace("/path/to/project", &dir.to_string_lossy());
    serde_json::from_str(&fixture).unwrap()
}

/// The approval id a refusal names (`Approval `ID``).
fn approval_id(answer: &Value) -> String {
    let text = answer["agent_message"].as_str().unwrap_or_default();
    let rest = text
        .split_once("Approval `")
        .unwrap_or_else(|| panic!("no approval named: {answer}"))
        .1;
    rest.split_once('`').unwrap().0.to_string()
}

fn shell_words(command: &str) -> Vec<String> {
    let o = Command::new("sh")
        .arg("-c")
        .arg(format!("printf '%s\\n' {command}"))
        .output()
        .unwrap();
    assert!(o.status.success());
    text(&o.stdout).lines().map(str::to_owned).collect()
}

#[test]
fn a_fresh_project_gets_every_hook_failing_closed() {
    let p = Project::new();
    let o = p.init_policy(&[]);
    ok(&o);
    assert!(
        text(&o.stdout).starts_with("--- /dev/null\n+++ ./.cursor/hooks.json\n"),
        "{}",
        text(&o.stdout)
    );
    let file = p.read();
    assert_eq!(file["version"], 1);
    assert_eq!(file["hooks"].as_object().unwrap().len(), EVENTS.len());
    let dir = p.dir.to_string_lossy();
    for event in EVENTS {
        let ours = rein_handlers(&file, event);
        assert_eq!(ours.len(), 1, "{event}");
        let h = &ours[0];
        assert_eq!(h["failClosed"], true, "{event}");
        assert_eq!(h["timeout"], 30, "{event}: Cursor's timeout is in seconds");
        assert_eq!(h["type"], "command");
        let words = shell_words(h["command"].as_str().unwrap());
        assert_eq!(Path::new(&words[0]), p.installed());
        assert_eq!(words[1..3], ["hook", "cursor"]);
        let at = |flag: &str| words.iter().position(|w| w == flag).map(|i| words[i + 1].clone());
        assert_eq!(at("--db").unwrap(), format!("{dir}/rein.db"));
        assert_eq!(at("--protect").unwrap(), format!("{dir}/.cursor/hooks.json"));
        assert_eq!(at("--timeout").unwrap(), "10", "Rein gives up before Cursor");
    }
    for event in GRANULAR {
        assert!(
            file["hooks"].get(event).is_none(),
            "{event} is not hooked: one call, one decision"
        );
    }
    // Idempotent: the same run again changes nothing.
    let before = fs::read_to_string(p.hooks()).unwrap();
    let o = p.init_policy(&[]);
    ok(&o);
    assert!(text(&o.stderr).contains("already up to date"), "{}", text(&o.stderr));
    assert_eq!(fs::read_to_string(p.hooks()).unwrap(), before);
}

#[test]
fn the_written_hook_decides_cursors_events() {
    let p = Project::new();
    ok(&p.init_policy(&[]));
    let file = p.read();
    let command = rein_handlers(&file, "preToolUse")[0]["command"]
        .as_str()
        .unwrap()
        .to_string();
    let run = |event: &Value| run_hook(&p.dir, &command, event);
    let mut event = documented(&p.dir, "preToolUse-Shell");
    event["tool_input"]["command"] = json!("ls");
    assert_eq!(run(&event), (json!({"permission": "allow"}), 0));
    event["tool_input"]["command"] = json!("cat .env");
    let (v, code) = run(&event);
    assert_eq!((v["permission"].as_str(), code), (Some("deny"), 0), "{v}");
    // The agent may not change the hooks file the hook runs from.
    event["tool_input"]["command"] = json!("rm .cursor/hooks.json");
    let (v, _) = run(&event);
    assert_eq!(v["permission"], "deny", "{v}");
    let mut write = documented(&p.dir, "preToolUse-Shell");
    write["tool_name"] = json!("Write");
    write["tool_input"] = json!({"file_path": p.hooks(), "content": "{\"version\": 1, \"hooks\": {}}"});
    let (v, _) = run(&write);
    assert_eq!(v["permission"], "deny", "{v}");
    // Unreadable: exit 2, which Cursor treats as "deny".
    let (v, code) = run(&json!("not an event"));
    assert_eq!((v["permission"].as_str(), code), (Some("deny"), 2), "{v}");
}

/// The file `rein init cursor` writes hooks no granular event, so there is
/// none to drop: a shell command, an MCP tool and a read are each decided
/// by `preToolUse` alone. A file that (by hand) hooks Rein on a granular
/// event instead is still decided there: the hook never answers one of
/// them with no opinion.
#[test]
fn tool_calls_are_decided_without_any_granular_hook() {
    let p = Project::new();
    ok(&p.init_policy(&[]));
    let file = p.read();
    let command = rein_handlers(&file, "preToolUse")[0]["command"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        file["hooks"]
            .as_object()
            .unwrap()
            .keys()
            .all(|e| !GRANULAR.contains(&e.as_str())),
        "{file}"
    );
    let run = |event: &Value| run_hook(&p.dir, &command, event);
    // Each kind through preToolUse: refused where the policy refuses.
    let mut shell = documented(&p.dir, "preToolUse-Shell");
    shell["tool_input"]["command"] = json!("cat .env");
    let read = documented(&p.dir, "preToolUse-Read");
    let mcp = documented(&p.dir, "preToolUse-MCP");
    for (kind, event) in [("shell", &shell), ("read", &read), ("mcp", &mcp)] {
        let (v, code) = run(event);
        assert_eq!((v["permission"].as_str(), code), (Some("deny"), 0), "{kind}: {v}");
    }
    // The same calls as granular events, should a file hook them: decided
    // the same way, never waved through.
    let mut shell = documented(&p.dir, "beforeShellExecution");
    shell["command"] = json!("cat .env");
    let mut read = documented(&p.dir, "beforeReadFile");
    read["file_path"] = json!(p.dir.join(".env"));
    read["attachments"] = json!([]);
    let mcp = documented(&p.dir, "beforeMCPExecution");
    for (kind, event) in [("shell", &shell), ("read", &read), ("mcp", &mcp)] {
        let (v, code) = run(event);
        assert_eq!((v["permission"].as_str(), code), (Some("deny"), 0), "{kind}: {v}");
    }
}

/// A call that needs approval, through the written hook's processes and
/// their SQLite store: refused naming the approval (Cursor does not act on
/// "ask" in `preToolUse`); asked again before the grant, the same approval
/// (none opened twice); granted with `rein approvals grant`, the retried
/// call runs, once; a further retry needs a new approval.
#[test]
fn an_approval_granted_lets_the_retried_call_through_once() {
    const TOKEN: &str = "cursor-approver-token-0123456789";
    let p = Project::new();
    ok(&p.init_policy(&[]));
    fs::write(
        p.dir.join("rein-tokens.yaml"),
        format!("tokens:\n  - {{name: maria, role: approver, token: {TOKEN}, approves: [maintainer]}}\n"),
    )
    .unwrap();
    let file = p.read();
    let command = rein_handlers(&file, "preToolUse")[0]["command"]
        .as_str()
        .unwrap()
        .to_string();
    let mut event = documented(&p.dir, "preToolUse-Shell");
    event["tool_input"]["command"] = json!("npm install express");
    let (v, code) = run_hook(&p.dir, &command, &event);
    assert_eq!((v["permission"].as_str(), code), (Some("deny"), 0), "{v}");
    let id = approval_id(&v);
    let (v, _) = run_hook(&p.dir, &command, &event);
    assert_eq!(v["permission"], "deny", "{v}");
    assert_eq!(approval_id(&v), id, "still waiting for the same approval");

    let grant = Command::new(env!("CARGO_BIN_EXE_rein"))
        .args(["approvals", "grant", &id, "--token", TOKEN, "--db"])
        .arg(p.dir.join("rein.db"))
        .output()
        .unwrap();
    ok(&grant);
    // Cursor fires one hook of Rein's for the call (no granular one that
    // would use the approval first and ask again): it runs.
    assert!(rein_handlers(&file, "preToolUse").len() == 1);
    assert!(GRANULAR.iter().all(|e| file["hooks"].get(*e).is_none()));
    let (v, code) = run_hook(&p.dir, &command, &event);
    assert_eq!((v, code), (json!({"permission": "allow"}), 0));
    // Used: the next identical call needs a person again.
    let (v, _) = run_hook(&p.dir, &command, &event);
    assert_eq!(v["permission"], "deny", "{v}");
    assert_ne!(approval_id(&v), id, "an approval lets one call through");
}

/// A file an earlier `rein init cursor` wrote hooked the granular events
/// too: written again, Rein's handlers there are taken out (the user's
/// stay), leaving `preToolUse` to decide each call once.
#[test]
fn an_earlier_files_granular_hooks_are_taken_out() {
    let p = Project::new();
    ok(&p.init_policy(&[]));
    let mut file = p.read();
    let ours = rein_handlers(&file, "preToolUse")[0].clone();
    for event in GRANULAR {
        file["hooks"][event] = json!([ours.clone()]);
    }
    file["hooks"]["beforeReadFile"]
        .as_array_mut()
        .unwrap()
        .push(json!({"command": "./hooks/log-reads.sh"}));
    fs::write(p.hooks(), serde_json::to_string_pretty(&file).unwrap()).unwrap();
    let o = p.init_policy(&[]);
    ok(&o);
    assert!(
        text(&o.stdout).contains("-    \"beforeShellExecution\""),
        "{}",
        text(&o.stdout)
    );
    let file = p.read();
    assert!(file["hooks"].get("beforeShellExecution").is_none(), "{file}");
    assert!(file["hooks"].get("beforeMCPExecution").is_none(), "{file}");
    assert_eq!(
        file["hooks"]["beforeReadFile"],
        json!([{"command": "./hooks/log-reads.sh"}])
    );
    assert_eq!(rein_handlers(&file, "preToolUse").len(), 1);
}

#[test]
fn other_hooks_and_keys_are_kept_and_undo_takes_only_reins_out() {
    let p = Project::new();
    fs::create_dir_all(p.dir.join(".cursor")).unwrap();
    let user = r#"{
    "version": 1,
    "hooks": {
        "afterFileEdit": [{"command": "./hooks/format.sh"}],
        "beforeShellExecution": [{"command": "./hooks/audit.sh", "matcher": "curl"}],
        "preToolUse": [{"command": "./hooks/guard.sh", "matcher": "Write"}]
    },
    "note": "mine"
}
"#;
    fs::write(p.hooks(), user).unwrap();
    ok(&p.init_policy(&["--timeout", "5"]));
    let file = p.read();
    assert_eq!(file["note"], "mine");
    assert_eq!(
        file["hooks"]["afterFileEdit"],
        json!([{"command": "./hooks/format.sh"}])
    );
    assert_eq!(
        file["hooks"]["beforeShellExecution"],
        json!([{"command": "./hooks/audit.sh", "matcher": "curl"}])
    );
    let tools = file["hooks"]["preToolUse"].as_array().unwrap();
    assert_eq!(tools.len(), 2);
    assert_eq!(tools[1], json!({"command": "./hooks/guard.sh", "matcher": "Write"}));
    assert_eq!(tools[0]["timeout"], 5);
    assert!(tools[0]["command"].as_str().unwrap().contains("--timeout 3"));
    let text_after = fs::read_to_string(p.hooks()).unwrap();
    assert!(
        text_after.contains("\n    \"hooks\""),
        "the file's indentation is kept:\n{text_after}"
    );

    // Another timeout replaces Rein's handlers in place.
    ok(&p.init_policy(&["--timeout", "9"]));
    let file = p.read();
    assert_eq!(rein_handlers(&file, "preToolUse").len(), 1);
    assert_eq!(file["hooks"]["preToolUse"][0]["timeout"], 9);

    // --dry-run writes nothing.
    let before = fs::read_to_string(p.hooks()).unwrap();
    let o = p.init(&["--undo", "--dry-run"]);
    ok(&o);
    assert!(text(&o.stdout).contains("-"), "the diff is shown");
    assert_eq!(fs::read_to_string(p.hooks()).unwrap(), before);

    let o = p.init(&["--undo", "-y"]);
    ok(&o);
    let back: Value = serde_json::from_str(&fs::read_to_string(p.hooks()).unwrap()).unwrap();
    assert_eq!(back, serde_json::from_str::<Value>(user).unwrap());
    let o = p.init(&["--undo", "-y"]);
    ok(&o);
    assert!(text(&o.stderr).contains("no Rein hooks"), "{}", text(&o.stderr));
}

#[test]
fn settings_server_and_refusals() {
    let p = Project::new();
    let home = p.dir.join("home/.cursor/hooks.json");
    let o = p.init(&[
        "--settings",
        home.to_str().unwrap(),
        "--server",
        "http://127.0.0.1:8700/",
        "--token-env",
        "MY_TOKEN",
        "-y",
    ]);
    ok(&o);
    assert!(!p.hooks().exists());
    let file: Value = serde_json::from_str(&fs::read_to_string(&home).unwrap()).unwrap();
    let words = shell_words(rein_handlers(&file, "preToolUse")[0]["command"].as_str().unwrap());
    assert_eq!(
        words[1..],
        [
            "hook",
            "cursor",
            "--server",
            "http://127.0.0.1:8700",
            "--token-env",
            "MY_TOKEN",
            "--timeout",
            "10",
            "--protect",
            home.to_str().unwrap()
        ]
    );

    // Nothing to decide with: refused.
    let o = p.init(&["-y"]);
    assert_ne!(o.status.code(), Some(0));
    assert!(text(&o.stderr).contains("--policy"), "{}", text(&o.stderr));
    // A policy that does not load: nothing written.
    fs::write(
        p.dir.join("bad.yaml"),
        "version: 1\nrules:\n  - id: x\n    action: tool.other\n    effect: allow\n",
    )
    .unwrap();
    let o = p.init(&["--policy", "bad.yaml", "-y"]);
    assert_ne!(o.status.code(), Some(0));
    assert!(!p.hooks().exists());
    // A file that is not Cursor's shape is left as it is.
    fs::create_dir_all(p.dir.join(".cursor")).unwrap();
    for bad in [
        "[1]",
        "{\"version\": 2}",
        "{\"hooks\": {\"stop\": {}}}",
        "{\"hooks\": {\"stop\": [1]}}",
        "{",
    ] {
        fs::write(p.hooks(), bad).unwrap();
        let o = p.init_policy(&[]);
        assert_ne!(o.status.code(), Some(0), "{bad}");
        assert!(text(&o.stderr).contains("left unchanged"), "{bad}: {}", text(&o.stderr));
        assert_eq!(fs::read_to_string(p.hooks()).unwrap(), bad);
    }
}

/// Cursor runs the hooks of every file it loads (the user's and the
/// project's): Rein's in both would decide each call twice. `rein init
/// cursor` says so when it writes one while the other has them.
#[test]
fn rein_in_both_the_users_and_the_projects_file_is_warned_about() {
    let p = Project::new();
    let home = p.dir.join("home");
    let user_file = home.join(".cursor/hooks.json");
    let init = |extra: &[&str]| {
        let mut args = p.policy_args();
        args.extend(extra.iter().map(|s| s.to_string()));
        Command::new(env!("CARGO_BIN_EXE_rein"))
            .args(["init", "cursor"])
            .args(&args)
            .current_dir(&p.dir)
            .env("NO_COLOR", "1")
            .env("HOME", &home)
            .env("PATH", p.installed().parent().unwrap())
            .output()
            .unwrap()
    };
    let o = init(&[]);
    ok(&o);
    assert!(!text(&o.stderr).contains("warning"), "{}", text(&o.stderr));
    let o = init(&["--settings", user_file.to_str().unwrap()]);
    ok(&o);
    let said = text(&o.stderr);
    assert!(
        said.contains("warning: ./.cursor/hooks.json has Rein's hooks too") && said.contains("decided twice"),
        "{said}"
    );
    // Either way round, and for a granular hook an earlier `rein init
    // cursor` left in the other file.
    fs::remove_file(p.hooks()).unwrap();
    let mut user: Value = serde_json::from_str(&fs::read_to_string(&user_file).unwrap()).unwrap();
    let ours = user["hooks"]["preToolUse"][0].clone();
    user["hooks"] = json!({"beforeShellExecution": [ours]});
    fs::write(&user_file, user.to_string()).unwrap();
    let o = init(&[]);
    ok(&o);
    let said = text(&o.stderr);
    assert!(
        said.contains(&format!("warning: {} has Rein's hooks too", user_file.display())),
        "{said}"
    );
    // Not Rein's: nothing said.
    fs::write(&user_file, r#"{"hooks": {"preToolUse": [{"command": "./audit.sh"}]}}"#).unwrap();
    fs::remove_file(p.hooks()).unwrap();
    let o = init(&[]);
    ok(&o);
    assert!(!text(&o.stderr).contains("warning"), "{}", text(&o.stderr));
}

#[test]
fn user_writes_the_home_folders_hooks_file_as_codex_does() {
    let p = Project::new();
    let home = p.dir.join("home");
    let mut args = p.policy_args();
    args.push("--user".into());
    let run = |args: &[String]| {
        Command::new(env!("CARGO_BIN_EXE_rein"))
            .args(["init", "cursor"])
            .args(args)
            .current_dir(&p.dir)
            .env("NO_COLOR", "1")
            .env("HOME", &home)
            .env("PATH", p.installed().parent().unwrap())
            .output()
            .unwrap()
    };
    ok(&run(&args));
    let user = home.join(".cursor/hooks.json");
    assert!(!p.hooks().exists());
    let file: Value = serde_json::from_str(&fs::read_to_string(&user).unwrap()).unwrap();
    let words = shell_words(rein_handlers(&file, "preToolUse")[0]["command"].as_str().unwrap());
    let at = words.iter().position(|w| w == "--protect").unwrap();
    assert_eq!(words[at + 1], user.to_str().unwrap());
    // The project's file with Rein's hooks too: said, as for --settings.
    ok(&p.init(&p.policy_args().iter().map(String::as_str).collect::<Vec<_>>()));
    let o = run(&args);
    ok(&o);
    assert!(
        text(&o.stderr).contains("warning: ./.cursor/hooks.json has Rein's hooks too"),
        "{}",
        text(&o.stderr)
    );
    // --user and --settings name two files: refused.
    args.extend(["--settings".into(), "other.json".into()]);
    let o = run(&args);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o.stderr));
    assert!(!p.dir.join("other.json").exists());
}
