//! `rein lint`, `rein validate --lint` and `rein diff` end to end, with
//! the real `z3` (skipped when it is missing, a failure under `CI=true`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

const CORPUS: &str = "crates/rein-analysis/tests/corpus";

fn rein(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rein"))
        .args(args)
        .current_dir(repo())
        .env("NO_COLOR", "1")
        .output()
        .unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// True when `z3` runs; else a SKIPPED note (a failure under `CI=true`).
fn have_z3() -> bool {
    if Command::new("z3").arg("-version").output().is_ok() {
        return true;
    }
    let under_ci = std::env::var("CI").is_ok_and(|v| v == "true");
    assert!(!under_ci, "z3 missing under CI=true (`apt-get install z3`)");
    eprintln!("SKIPPED: z3 missing (`apt-get install z3`)");
    false
}

#[test]
fn lint_warns_with_spans_and_exits_1() {
    if !have_z3() {
        return;
    }
    let o = rein(&["lint", &format!("{CORPUS}/planted/dead.yaml")]);
    assert_eq!(o.status.code(), Some(1), "{}{}", stdout(&o), stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("rule `over_max` can never match"), "{out}");
    assert!(out.contains("planted/dead.yaml:12:11"), "{out}");
    assert!(out.contains("lint: 4 warnings"), "{out}");
}

#[test]
fn lint_json_lists_findings_with_file_and_line() {
    if !have_z3() {
        return;
    }
    // A conflict is a note: shown, with its example, but not a failure.
    let o = rein(&["lint", "--json", &format!("{CORPUS}/planted/conflict.yaml")]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    let f = &v["findings"][0];
    assert_eq!(f["kind"], "conflict");
    assert_eq!(f["severity"], "note");
    assert_eq!((v["warnings"].as_u64(), v["notes"].as_u64()), (Some(0), Some(1)));
    assert_eq!(f["rule"], "payments_team");
    assert_eq!(f["line"], 12);
    assert_eq!(f["example"]["actor"]["team"], "payments");
}

#[test]
fn conflicts_fail_only_when_asked_and_levels_must_not_contradict() {
    if !have_z3() {
        return;
    }
    let planted = format!("{CORPUS}/planted/conflict.yaml");
    let o = rein(&["lint", "--warn", "conflict", "--json", &planted]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["findings"][0]["severity"], "warning");
    let o = rein(&["lint", "--deny", "conflict", &planted]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    // Off: not searched, not shown.
    let o = rein(&["lint", "--allow", "conflict", &planted]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(!stdout(&o).contains("lint(conflict)"), "{}", stdout(&o));
    // Human output names the check and counts notes apart.
    let o = rein(&["lint", &planted]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(
        out.contains("lint(conflict)") && out.contains("lint: 0 warnings, 1 note,"),
        "{out}"
    );
    // A check given two levels, or an unknown check, is a usage error.
    let o = rein(&["lint", "--allow", "conflict", "--warn", "conflict", &planted]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let o = rein(&["lint", "--allow", "no-such-check", &planted]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    // A named check wins over `all`.
    let o = rein(&["lint", "--allow", "all", "--warn", "conflict", &planted]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
}

#[test]
fn the_refund_example_lints_with_exit_0_and_notes_its_carve_outs() {
    if !have_z3() {
        return;
    }
    let o = rein(&["lint", "--json", "examples/refund/policy.yaml"]);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["warnings"], 0, "{v:#}");
    let findings = v["findings"].as_array().unwrap();
    assert!(!findings.is_empty(), "{v:#}");
    // One note per pair of rules, each with a confirmed example.
    let mut pairs: Vec<(String, String)> = Vec::new();
    for f in findings {
        assert_eq!(
            (f["kind"].as_str(), f["severity"].as_str()),
            (Some("conflict"), Some("note")),
            "{f:#}"
        );
        assert!(f["example"].is_object(), "{f:#}");
        let pair = (f["rule"].to_string(), f["other"].to_string());
        assert!(!pairs.contains(&pair), "{v:#}");
        pairs.push(pair);
    }
}

#[test]
fn a_shared_base_covered_by_the_policy_extending_it_is_a_note() {
    if !have_z3() {
        return;
    }
    let o = rein(&[
        "lint",
        "--json",
        "policies/agents/coding-agent.yaml",
        "examples/shell-rate/policy.yaml",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    let f = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["kind"] == "redundant-base")
        .expect("the base's rule is covered");
    assert_eq!(
        (f["rule"].as_str(), f["severity"].as_str()),
        (Some("shell_not_understood"), Some("note"))
    );
    assert_eq!(f["other"], "shell_everything_else_needs_approval");
    // Asked for, it fails like any warning.
    let o = rein(&[
        "lint",
        "--warn",
        "redundant-base",
        "policies/agents/coding-agent.yaml",
        "examples/shell-rate/policy.yaml",
    ]);
    assert_eq!(o.status.code(), Some(1), "{}{}", stdout(&o), stderr(&o));
}

#[test]
fn validate_lint_json_is_pure_json() {
    if !have_z3() {
        return;
    }
    let o = rein(&[
        "validate",
        "--lint",
        "--format",
        "json",
        &format!("{CORPUS}/planted/shadowed.yaml"),
    ]);
    assert_eq!(o.status.code(), Some(1), "{}{}", stdout(&o), stderr(&o));
    let out = stdout(&o);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 1, "{out}");
    let v: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
    assert_eq!((v["ok"].as_bool(), v["actions"].as_u64()), (Some(true), Some(1)), "{v}");
    assert_eq!(v["lint"]["findings"][0]["kind"], "shadowed", "{v}");
    assert!(v["lint"]["warnings"].as_u64().unwrap() >= 1, "{v}");
    // Without --lint, the same object, still JSON.
    let o = rein(&[
        "validate",
        "--format",
        "json",
        &format!("{CORPUS}/planted/shadowed.yaml"),
    ]);
    assert_eq!(o.status.code(), Some(0));
    let v: serde_json::Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    assert_eq!(v["ok"], true);
    assert!(v.get("lint").is_none(), "{v}");
}

#[test]
fn a_clean_policy_lints_with_exit_0() {
    if !have_z3() {
        return;
    }
    let o = rein(&["lint", "examples/two-step-payments/policy.yaml"]);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    assert!(stdout(&o).contains("lint: 0 warnings"), "{}", stdout(&o));
}

#[test]
fn a_missing_solver_is_exit_2_naming_the_fix() {
    let o = rein(&[
        "lint",
        "--solver",
        "/nonexistent/z3",
        &format!("{CORPUS}/planted/dead.yaml"),
    ]);
    assert_eq!(o.status.code(), Some(2));
    let err = stderr(&o);
    assert!(
        err.contains("apt-get install z3") && err.contains("--solver PATH"),
        "{err}"
    );
    // A bad timeout is a usage error too.
    let o = rein(&["lint", "--solver-timeout", "0s", "examples/refund/policy.yaml"]);
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn validate_lint_runs_the_checks() {
    if !have_z3() {
        return;
    }
    let o = rein(&["validate", "--lint", &format!("{CORPUS}/planted/shadowed.yaml")]);
    assert_eq!(o.status.code(), Some(1), "{}{}", stdout(&o), stderr(&o));
    let out = stdout(&o);
    assert!(out.starts_with("ok: 1 action"), "{out}");
    assert!(out.contains("never takes effect"), "{out}");
    // Without --lint, validate does not need the solver.
    let o = rein(&[
        "validate",
        "--solver",
        "/nonexistent/z3",
        &format!("{CORPUS}/planted/shadowed.yaml"),
    ]);
    assert_eq!(o.status.code(), Some(0));
}

#[test]
fn diff_prints_confirmed_examples_and_exits_1() {
    if !have_z3() {
        return;
    }
    let o = rein(&[
        "diff",
        &format!("{CORPUS}/diff/refund.old.yaml"),
        &format!("{CORPUS}/diff/refund.new.yaml"),
    ]);
    assert_eq!(o.status.code(), Some(1), "{}{}", stdout(&o), stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("refund:\n"), "{out}");
    assert!(out.contains("block → allow: for example"), "{out}");
    assert!(out.contains("rule `no_vip_lookups` added (block)"), "{out}");
    let o = rein(&[
        "diff",
        "--json",
        &format!("{CORPUS}/diff/refund.old.yaml"),
        &format!("{CORPUS}/diff/refund.same.yaml"),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["differs"], false);
    assert_eq!(v["actions"].as_array().unwrap().len(), 0);
}

#[test]
fn diff_of_a_policy_that_does_not_load_is_exit_2() {
    let o = rein(&["diff", "no/such/old.yaml", &format!("{CORPUS}/diff/refund.new.yaml")]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
}
