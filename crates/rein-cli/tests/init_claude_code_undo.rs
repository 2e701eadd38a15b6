//! `rein init claude-code --undo`, and the flags every `rein init <agent>`
//! shares: the real binary in temporary projects.

// Helpers outside `#[test]` functions panic on failure too; that is the report.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::{json, Value};
use std::fs;
use std::path::PathBuf;
use std::process::{Command, Output};

const POLICY: &str = include_str!("../../../examples/refund/policy.yaml");

struct Project {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
}

impl Project {
    fn new() -> Project {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("project");
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("policy.yaml"), POLICY).unwrap();
        Project { _tmp: tmp, dir }
    }

    fn settings(&self) -> PathBuf {
        self.dir.join(".claude/settings.json")
    }

    fn init(&self, agent: &str, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_rein"))
            .args(["init", agent])
            .args(args)
            .current_dir(&self.dir)
            .env("NO_COLOR", "1")
            .env("HOME", self._tmp.path().join("home"))
            .output()
            .unwrap()
    }

    fn read(&self) -> Value {
        serde_json::from_str(&fs::read_to_string(self.settings()).unwrap()).unwrap()
    }
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn ok(o: &Output) {
    assert_eq!(o.status.code(), Some(0), "{}", text(o));
}

#[test]
fn undo_takes_out_only_reins_hooks_command_and_http() {
    let p = Project::new();
    let missing = p.init("claude-code", &["--undo", "-y"]);
    ok(&missing);
    assert!(
        text(&missing).contains("no such file, nothing to undo"),
        "{}",
        text(&missing)
    );
    assert!(!p.settings().exists());

    fs::create_dir_all(p.dir.join(".claude")).unwrap();
    let theirs = json!({
        "model": "opus",
        "hooks": {
            "PreToolUse": [{"matcher": "Bash", "hooks": [{"type": "command", "command": "./lint.sh"}]}],
            "Stop": [{"hooks": [{"type": "command", "command": "./notify.sh"}]}],
        },
    });
    fs::write(p.settings(), serde_json::to_string_pretty(&theirs).unwrap()).unwrap();
    ok(&p.init(
        "claude-code",
        &["-p", "policy.yaml", "--rein-bin", "/opt/rein/bin/rein", "-y"],
    ));
    let written = p.read();
    assert_eq!(written["hooks"]["SessionEnd"].as_array().unwrap().len(), 1);

    // --dry-run shows the diff and writes nothing.
    let dry = p.init("claude-code", &["--undo", "--dry-run"]);
    ok(&dry);
    assert!(
        text(&dry).contains("-            \"command\": \"/opt/rein/bin/rein hook claude-code"),
        "{}",
        text(&dry)
    );
    assert_eq!(p.read(), written);

    ok(&p.init("claude-code", &["--undo", "-y"]));
    assert_eq!(p.read(), theirs);
    let again = p.init("claude-code", &["--undo", "-y"]);
    ok(&again);
    assert!(text(&again).contains("no Rein hooks to take out"), "{}", text(&again));

    // The HTTP form is Rein's too; a file left with no hook loses `hooks`.
    fs::write(p.settings(), "{\"model\": \"opus\"}").unwrap();
    ok(&p.init("claude-code", &["--server", "http://127.0.0.1:8700", "--http", "-y"]));
    assert!(p.read()["hooks"]["PreToolUse"][0]["hooks"][0]["url"].is_string());
    ok(&p.init("claude-code", &["--undo", "-y"]));
    assert_eq!(p.read(), json!({"model": "opus"}));
}

#[test]
fn undo_takes_no_decider_and_a_decider_is_needed_otherwise() {
    let p = Project::new();
    for args in [
        vec!["--undo", "-p", "policy.yaml"],
        vec!["--undo", "--server", "http://127.0.0.1:8700"],
        vec!["--undo", "--http"],
    ] {
        let o = p.init("claude-code", &args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", text(&o));
    }
    // Nothing to decide with: every agent says the same.
    for agent in ["claude-code", "codex", "gemini", "cursor"] {
        let o = p.init(agent, &["-y", "--rein-bin", "/opt/rein/bin/rein"]);
        assert_eq!(o.status.code(), Some(2), "{agent}: {}", text(&o));
        assert_eq!(
            String::from_utf8_lossy(&o.stderr).trim(),
            "error: give --policy POLICY (decide in-process) or --server URL (ask a rein serve), or --undo",
            "{agent}"
        );
    }
    assert!(!p.settings().exists());
    // Undoing where there is no file: said the same way too.
    for agent in ["claude-code", "gemini", "cursor"] {
        let o = p.init(agent, &["--undo", "-y"]);
        ok(&o);
        assert!(
            text(&o).contains(": no such file, nothing to undo"),
            "{agent}: {}",
            text(&o)
        );
    }
}
