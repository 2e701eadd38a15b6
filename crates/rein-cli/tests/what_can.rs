//! `rein what-can` end to end: grouped output for people, JSON for tools,
//! the actor and snapshot through their contracts, exit codes.

// Helpers outside `#[test]` functions panic on failure too; that is the report.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn rein(args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_rein"))
        .args(args)
        .current_dir(repo())
        .env("NO_COLOR", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    if let Some(text) = stdin {
        let _ = child.stdin.take().unwrap().write_all(text.as_bytes());
    }
    drop(child.stdin.take());
    child.wait_with_output().unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

const REFUND: &str = "examples/refund/policy.yaml";
const SNAPSHOT: &str = r#"{"fraud_flag": false, "refunds_today": 0, "account_age_days": 400}"#;

#[test]
fn groups_for_people() {
    let o = rein(
        &[
            "what-can",
            "--policy",
            REFUND,
            "--actor",
            r#"{"id": "bot", "role": "agent"}"#,
            "--snapshot",
            SNAPSHOT,
        ],
        None,
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let text = stdout(&o);
    let expected = r#"
always allowed:
  order.lookup

allowed when:
  refund: (!has(input.note) || input.note.trim() != "") && input.amount <= 100

needs approval:
  refund: input.amount <= 1000 && (!has(input.note) || input.note.trim() != "") && input.amount > 100
"#;
    assert!(text.starts_with("policy "), "{text}");
    assert!(text.contains("(2026-11-24.1)"), "{text}");
    assert!(text.ends_with(expected), "{text}");

    // A flagged account: refunds are never allowed.
    let flagged = r#"{"fraud_flag": true, "refunds_today": 0, "account_age_days": 400}"#;
    let o = rein(
        &[
            "what-can",
            REFUND,
            "--actor",
            r#"{"id": "bot", "role": "agent"}"#,
            "--snapshot",
            flagged,
        ],
        None,
    );
    assert!(stdout(&o).ends_with("\nnever allowed:\n  refund\n"), "{}", stdout(&o));
}

#[test]
fn json_for_tools_with_files_stdin_and_a_glob() {
    let dir = tempfile::tempdir().unwrap();
    let snapshot = dir.path().join("snapshot.json");
    std::fs::write(&snapshot, SNAPSHOT).unwrap();
    let snapshot_arg = format!("@{}", snapshot.display());
    let o = rein(
        &[
            "what-can",
            "-p",
            REFUND,
            "--actor",
            "-",
            "--snapshot",
            &snapshot_arg,
            "--action",
            "ref*",
            "--json",
        ],
        Some(r#"{"id": "root", "role": "admin"}"#),
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let w: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(w["policy_version_label"], "2026-11-24.1");
    assert_eq!(w["policy_version"].as_str().unwrap().len(), 32);
    let actions = w["actions"].as_array().unwrap();
    assert_eq!(actions.len(), 1, "the glob keeps refund only");
    assert_eq!(actions[0]["action"], "refund");
    assert_eq!(actions[0]["status"], "allowed_when");
    assert_eq!(
        actions[0]["approval"],
        serde_json::json!({"kind": "when", "cel": "(!has(input.note) || input.note.trim() != \"\") && input.amount > 1000"})
    );
    assert_eq!(actions[0]["allowed"]["kind"], "when");
}

#[test]
fn a_bad_actor_or_input_is_a_usage_error_naming_the_field() {
    let o = rein(
        &[
            "what-can",
            REFUND,
            "--actor",
            r#"{"id": "bot", "role": "pirate"}"#,
            "--snapshot",
            SNAPSHOT,
        ],
        None,
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("actor.role"), "{}", stderr(&o));
    assert!(stdout(&o).is_empty());

    let o = rein(
        &[
            "what-can",
            REFUND,
            "--actor",
            r#"{"id": "bot", "id": "x", "role": "agent"}"#,
        ],
        None,
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("--actor"), "{}", stderr(&o));

    let o = rein(&["what-can", REFUND, "--actor", "@does/not/exist.json"], None);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("cannot read"), "{}", stderr(&o));

    // The snapshot defaults to `{}`, which breaks this policy's contract.
    let o = rein(
        &["what-can", REFUND, "--actor", r#"{"id": "bot", "role": "agent"}"#],
        None,
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("snapshot."), "{}", stderr(&o));

    let o = rein(
        &[
            "what-can",
            REFUND,
            "--actor",
            r#"{"id": "bot", "role": "agent"}"#,
            "--snapshot",
            SNAPSHOT,
            "--action",
            "a[b",
        ],
        None,
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("invalid action glob"), "{}", stderr(&o));
}

#[test]
fn stateful_rules_are_named_and_actra_files_load() {
    let o = rein(
        &[
            "what-can",
            "policies/agents/coding-agent.yaml",
            "examples/shell-rate/policy.yaml",
            "--actor",
            r#"{"agent": "claude-code"}"#,
            "--snapshot",
            r#"{"cwd": "/srv/p", "project_root": "/srv/p", "home": "/home/dev"}"#,
            "--action",
            "shell.exec",
        ],
        None,
    );
    let text = stdout(&o);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(
        text.contains("depends on state (limits or session facts, decided per request):\n  shell.exec: rule shell_commands_per_minute"),
        "{text}"
    );

    let o = rein(
        &[
            "what-can",
            "--actra-schema",
            "examples/actra/refund/schema.yaml",
            "--policy",
            "examples/actra/refund/policy.yaml",
            "--actor",
            r#"{"role": "admin"}"#,
            "--snapshot",
            r#"{"fraud_flag": true}"#,
        ],
        None,
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stdout(&o).contains("always allowed:\n  refund\n"), "{}", stdout(&o));
}
