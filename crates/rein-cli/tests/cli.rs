//! The `rein` binary end to end: exit codes, output formats, help.

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
        // The command may exit before reading (a policy that fails to
        // load), so a broken pipe here is fine.
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

fn refund_request(amount: u32, role: &str) -> String {
    format!(
        r#"{{"action":"refund","input":{{"order_id":"ord_abc123","amount":{amount},"currency":"EUR"}},"actor":{{"id":"b","role":"{role}"}},"snapshot":{{"fraud_flag":false,"refunds_today":0,"account_age_days":400}}}}"#
    )
}

#[test]
fn check_exit_codes_follow_the_effect() {
    let o = rein(
        &["check", "--policy", REFUND, "--request", "-"],
        Some(&refund_request(40, "agent")),
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let d: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(d["effect"], "allow");
    assert_eq!(d["rules"], serde_json::json!(["small_refund"]));

    let o = rein(
        &["check", "-p", REFUND, "-r", "-"],
        Some(&refund_request(1500, "agent")),
    );
    assert_eq!(o.status.code(), Some(1));
    let d: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(d["reasons"][0], "refunds over 1000 need an admin");

    let o = rein(&["check", "-p", REFUND], Some(&refund_request(500, "agent")));
    assert_eq!(o.status.code(), Some(3));
    let d: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(d["approval"][0]["role"], "support");
}

#[test]
fn the_readme_main_command_blocks_the_example_request() {
    let o = rein(
        &["check", "--policy", REFUND, "--request", "examples/refund/request.json"],
        None,
    );
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stdout(&o).contains("\"large_refund\""));
}

#[test]
fn bad_requests_are_usage_errors_never_allow() {
    for bad in ["", "{", "[]", r#"{"action": 5}"#, r#"{"action":"refund","inputs":{}}"#] {
        let o = rein(&["check", "-p", REFUND], Some(bad));
        assert_eq!(o.status.code(), Some(2), "{bad:?}: {}", stdout(&o));
        assert!(stderr(&o).contains("invalid request"), "{bad:?}: {}", stderr(&o));
    }
    let o = rein(&["check", "-p", REFUND, "-r", "no/such/file.json"], None);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("cannot read the request from `no/such/file.json`"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn batch_answers_every_line_in_order() {
    let input = format!(
        "{}\n{}\nnot json\n\n{}\n",
        refund_request(40, "agent"),
        refund_request(1500, "agent"),
        refund_request(500, "support")
    );
    let o = rein(&["check", "-p", REFUND, "--batch"], Some(&input));
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let effects: Vec<String> = stdout(&o)
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["effect"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(effects, ["allow", "block", "block", "allow"]);
    assert!(stdout(&o).contains("line 3: invalid request"));
}

#[test]
fn phase_after_checks_outputs() {
    let req = r#"{"action":"refund","input":{"order_id":"ord_abc123","amount":5,"currency":"EUR"},"output":{"refund_id":"xx"},"actor":{"id":"b","role":"agent"},"snapshot":{"fraud_flag":false,"refunds_today":0,"account_age_days":400}}"#;
    let o = rein(&["check", "-p", REFUND, "--phase", "after"], Some(req));
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    assert!(stdout(&o).contains("refund_id_format"));
}

#[test]
fn validate_reports_every_error_with_location() {
    let o = rein(&["validate", REFUND], None);
    assert_eq!(o.status.code(), Some(0));
    assert!(
        stdout(&o).starts_with("ok: 2 actions, 11 rules, default `block`, version "),
        "{}",
        stdout(&o)
    );

    let o = rein(
        &["validate", "crates/rein-engine/tests/diagnostics/unknown_field.yaml"],
        None,
    );
    assert_eq!(o.status.code(), Some(2));
    let err = stderr(&o);
    assert!(
        err.contains("crates/rein-engine/tests/diagnostics/unknown_field.yaml:9:17]"),
        "{err}"
    );
    assert!(
        err.contains("did you mean `amount`?") && err.contains("did you mean `role`?"),
        "{err}"
    );
    assert!(err.contains("the policy did not load (2 errors)"), "{err}");

    let o = rein(
        &[
            "validate",
            "--format",
            "json",
            "crates/rein-engine/tests/diagnostics/unknown_field.yaml",
        ],
        None,
    );
    assert_eq!(o.status.code(), Some(2));
    let first: serde_json::Value = serde_json::from_str(stderr(&o).lines().next().unwrap()).unwrap();
    assert_eq!((first["line"].as_u64(), first["column"].as_u64()), (Some(9), Some(17)));
    assert_eq!(first["help"], "did you mean `amount`?");

    let o = rein(
        &["check", "-p", "crates/rein-engine/tests/diagnostics/type_mismatch.yaml"],
        Some(&refund_request(1, "agent")),
    );
    assert_eq!(
        o.status.code(),
        Some(2),
        "a policy that fails to load is a usage error, not a decision"
    );
    assert!(stdout(&o).is_empty());
}

#[test]
fn explain_shows_each_rule_and_value() {
    let o = rein(&["explain", "-p", REFUND], Some(&refund_request(1500, "agent")));
    assert_eq!(o.status.code(), Some(1));
    let text = stdout(&o);
    assert!(
        text.starts_with("decision: block\n  reason: refunds over 1000 need an admin\n"),
        "{text}"
    );
    assert!(text.contains("rule large_refund (block): matched"), "{text}");
    assert!(text.contains("rule small_refund (allow): not matched"), "{text}");
    assert!(text.contains("    input.amount = 1500.0"), "{text}");
    let o = rein(
        &["explain", "-p", REFUND, "--json"],
        Some(&refund_request(1500, "agent")),
    );
    let j: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(j["decision"]["effect"], "block");
    assert!(j["rules"].as_array().unwrap().len() >= 8);
}

#[test]
fn test_command_runs_examples_and_reports_failures() {
    let o = rein(&["test", "examples"], None);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    let last = stdout(&o).lines().last().unwrap().to_string();
    assert!(last.ends_with(" passed, 0 failed"), "{last}");

    let dir = std::env::temp_dir().join(format!("rein-cli-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(repo().join(REFUND), dir.join("policy.yaml")).unwrap();
    std::fs::write(
        dir.join("wrong.test.yaml"),
        "policy: policy.yaml\ncases:\n  - name: expects the wrong effect\n    request: {action: nope}\n    expect: allow\n  - name: right\n    request: {action: nope}\n    expect: block\n",
    )
    .unwrap();
    let o = rein(&["test", dir.to_str().unwrap()], None);
    assert_eq!(o.status.code(), Some(1));
    let out = stdout(&o);
    assert!(out.contains("wrong.test.yaml:3: expects the wrong effect"), "{out}");
    assert!(out.contains("expected `allow`, got `block`"), "{out}");
    assert!(out.ends_with("1 passed, 1 failed\n"), "{out}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn every_command_has_help() {
    for cmd in ["validate", "check", "explain", "test"] {
        let o = rein(&[cmd, "--help"], None);
        assert_eq!(o.status.code(), Some(0), "{cmd}");
        assert!(stdout(&o).contains("Usage: rein"), "{cmd}");
    }
    let o = rein(&["--help"], None);
    for cmd in ["validate", "check", "explain", "test"] {
        assert!(stdout(&o).contains(cmd));
    }
    let o = rein(&["frobnicate"], None);
    assert_eq!(o.status.code(), Some(2));
}
