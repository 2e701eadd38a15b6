//! The `rein` binary on Actra files: validate, check, explain, convert,
//! governance, and the same exit codes as for native policies.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

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

const SCHEMA: &str = "examples/actra/refund/schema.yaml";
const POLICY: &str = "examples/actra/refund/policy.yaml";

fn check(request: &str) -> (Option<i32>, serde_json::Value) {
    let o = rein(
        &["check", "--actra-schema", SCHEMA, "--policy", POLICY, "--request", "-"],
        Some(request),
    );
    let d = serde_json::from_str(&stdout(&o)).unwrap_or_else(|_| panic!("{}", stderr(&o)));
    (o.status.code(), d)
}

#[test]
fn check_answers_actra_requests_with_native_exit_codes() {
    let (code, d) = check(r#"{"action": {"type": "refund", "amount": 40}, "actor": {"role": "agent"}}"#);
    assert_eq!(code, Some(0));
    assert_eq!(d["effect"], "allow");
    assert_eq!(d["rules"], serde_json::json!([]));
    assert_eq!(d["default_applied"], true);

    let (code, d) = check(r#"{"action": {"type": "refund", "amount": 1500}, "actor": {"role": "agent"}}"#);
    assert_eq!(code, Some(3));
    assert_eq!(d["rules"], serde_json::json!(["review_medium_refund"]));

    let (code, d) = check(r#"{"action": {"type": "refund", "amount": 10}, "snapshot": {"fraud_flag": true}}"#);
    assert_eq!(code, Some(1));
    assert_eq!(d["rules"], serde_json::json!(["fraud_hold"]));

    let (code, d) = check(r#"{"action": {"type": "refund", "amount": "10"}}"#);
    assert_eq!(code, Some(1));
    assert_eq!(d["violation"]["path"], "action.amount");
}

#[test]
fn a_request_that_is_not_json_is_a_usage_error() {
    let o = rein(
        &["check", "--actra-schema", SCHEMA, "--policy", POLICY],
        Some("{not json"),
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("invalid request"), "{}", stderr(&o));
}

#[test]
fn batch_mode_reads_one_actra_request_per_line() {
    let input = "{\"action\": {\"type\": \"refund\", \"amount\": 9000}}\nnope\n{\"action\": {\"type\": \"refund\"}}\n";
    let o = rein(
        &["check", "--actra-schema", SCHEMA, "--policy", POLICY, "--batch"],
        Some(input),
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let lines: Vec<serde_json::Value> = stdout(&o).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[0]["rules"], serde_json::json!(["block_large_refund"]));
    assert_eq!(lines[1]["effect"], "block");
    assert_eq!(lines[2]["effect"], "allow");
}

#[test]
fn explain_shows_each_rule_tried() {
    let o = rein(
        &["explain", "--actra-schema", SCHEMA, "--policy", POLICY],
        Some(r#"{"action": {"type": "refund", "amount": 1500}, "actor": {"role": "agent"}}"#),
    );
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    let text = stdout(&o);
    assert!(text.contains("rule admin_refunds (allow): not matched"), "{text}");
    assert!(
        text.contains("rule review_medium_refund (require_approval): matched"),
        "{text}"
    );
    assert!(!text.contains("rule daily_limit"), "first match stops: {text}");
}

#[test]
fn validate_reports_governance_violations_and_exits_2() {
    let base = "examples/actra/governance/";
    let ok = rein(
        &[
            "validate",
            "--actra-schema",
            &format!("{base}schema.yaml"),
            "--policy",
            &format!("{base}policy.yaml"),
            "--governance",
            &format!("{base}governance.yaml"),
        ],
        None,
    );
    assert_eq!(ok.status.code(), Some(0), "{}", stderr(&ok));
    assert!(
        stdout(&ok).starts_with("ok: 2 actions, 3 rules, default `allow`"),
        "{}",
        stdout(&ok)
    );

    let bad = rein(
        &[
            "validate",
            "--actra-schema",
            &format!("{base}schema.yaml"),
            "--policy",
            &format!("{base}violating.yaml"),
            "--governance",
            &format!("{base}governance.yaml"),
            "--format",
            "json",
        ],
        None,
    );
    assert_eq!(bad.status.code(), Some(2));
    let errors: Vec<serde_json::Value> = stderr(&bad)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .filter(|d: &serde_json::Value| d["severity"] == "error")
        .collect();
    assert_eq!(errors.len(), 3, "{}", stderr(&bad));
    assert!(errors[0]["message"]
        .as_str()
        .unwrap()
        .contains("governance rule `no_global_blocks` is violated"));
    assert!(errors[0]["help"].as_str().unwrap().contains("rule `fraud_stop`"));
    assert_eq!(errors[0]["line"], 17);
}

#[test]
fn governance_also_governs_native_policies() {
    let o = rein(
        &[
            "validate",
            "examples/actra/governance/native.yaml",
            "--governance",
            "examples/actra/governance/governance.yaml",
        ],
        None,
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
}

#[test]
fn convert_prints_a_native_policy_that_validates() {
    let o = rein(&["convert", "--actra-schema", SCHEMA, "--policy", POLICY], None);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let dir = std::env::temp_dir().join(format!("rein-convert-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join("native.yaml");
    std::fs::write(&out, stdout(&o)).unwrap();
    let v = rein(&["validate", out.to_str().unwrap()], None);
    assert_eq!(v.status.code(), Some(0), "{}", stderr(&v));
    let _ = std::fs::remove_dir_all(&dir);

    let bad = rein(
        &[
            "convert",
            "--actra-schema",
            SCHEMA,
            "--policy",
            "examples/actra/infrastructure/policy.yaml",
        ],
        None,
    );
    assert_eq!(bad.status.code(), Some(2));
    assert!(stderr(&bad).contains("nothing was converted"), "{}", stderr(&bad));
}

#[test]
fn actra_options_are_checked() {
    let two = rein(
        &[
            "check",
            "--actra-schema",
            SCHEMA,
            "--policy",
            POLICY,
            "--policy",
            POLICY,
        ],
        Some("{}"),
    );
    assert_eq!(two.status.code(), Some(2));
    assert!(stderr(&two).contains("exactly one `--policy`"), "{}", stderr(&two));
    let phase = rein(
        &[
            "check",
            "--actra-schema",
            SCHEMA,
            "--policy",
            POLICY,
            "--phase",
            "after",
        ],
        Some("{}"),
    );
    assert_eq!(phase.status.code(), Some(2));
    let dir = rein(
        &["validate", "--actra-schema", "examples/actra", "--policy", POLICY],
        None,
    );
    assert_eq!(dir.status.code(), Some(2));
    assert!(stderr(&dir).contains("is a directory"), "{}", stderr(&dir));
}
