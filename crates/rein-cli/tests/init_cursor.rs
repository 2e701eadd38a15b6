//! `rein init cursor` end to end: the real binary writing Cursor's
//! `.cursor/hooks.json` in temporary projects, and the hook it writes
//! answering one of Cursor's documented events.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::{json, Value};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

const EVENTS: [&str; 8] = [
    "preToolUse",
    "beforeShellExecution",
    "beforeMCPExecution",
    "beforeReadFile",
    "beforeSubmitPrompt",
    "postToolUse",
    "sessionStart",
    "sessionEnd",
];

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
    let command = rein_handlers(&file, "beforeShellExecution")[0]["command"]
        .as_str()
        .unwrap()
        .to_string();
    let run = |event: &Value| -> (Value, i32) {
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(&command)
            .current_dir(&p.dir)
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
    };
    let fixture = fs::read_to_string(root().join("crates/rein-hooks/tests/fixtures/cursor/beforeShellExecution.json"))
        .unwrap()
        .replace("/path/to/project", &p.dir.to_string_lossy());
    let mut event: Value = serde_json::from_str(&fixture).unwrap();
    event["command"] = json!("ls");
    assert_eq!(run(&event), (json!({"permission": "allow"}), 0));
    event["command"] = json!("cat .env");
    let (v, code) = run(&event);
    assert_eq!((v["permission"].as_str(), code), (Some("deny"), 0), "{v}");
    // The agent may not change the hooks file the hook runs from.
    event["command"] = json!("rm .cursor/hooks.json");
    let (v, _) = run(&event);
    assert_eq!(v["permission"], "deny", "{v}");
    // Unreadable: exit 2, which Cursor treats as "deny".
    let (v, code) = run(&json!("not an event"));
    assert_eq!((v["permission"].as_str(), code), (Some("deny"), 2), "{v}");
}

#[test]
fn other_hooks_and_keys_are_kept_and_undo_takes_only_reins_out() {
    let p = Project::new();
    fs::create_dir_all(p.dir.join(".cursor")).unwrap();
    let user = r#"{
    "version": 1,
    "hooks": {
        "afterFileEdit": [{"command": "./hooks/format.sh"}],
        "beforeShellExecution": [{"command": "./hooks/audit.sh", "matcher": "curl"}]
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
    let shell = file["hooks"]["beforeShellExecution"].as_array().unwrap();
    assert_eq!(shell.len(), 2);
    assert_eq!(shell[1], json!({"command": "./hooks/audit.sh", "matcher": "curl"}));
    assert_eq!(shell[0]["timeout"], 5);
    assert!(shell[0]["command"].as_str().unwrap().contains("--timeout 3"));
    let text_after = fs::read_to_string(p.hooks()).unwrap();
    assert!(
        text_after.contains("\n    \"hooks\""),
        "the file's indentation is kept:\n{text_after}"
    );

    // Another timeout replaces Rein's handlers in place.
    ok(&p.init_policy(&["--timeout", "9"]));
    let file = p.read();
    assert_eq!(rein_handlers(&file, "beforeShellExecution").len(), 1);
    assert_eq!(file["hooks"]["beforeShellExecution"][0]["timeout"], 9);

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
