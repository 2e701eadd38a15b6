//! `rein check --state FILE`: limits and sessions kept in a file between
//! checks.

// Helpers outside `#[test]` functions panic on failure too; that is the report.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

fn rein(dir: &Path, args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_rein"))
        .args(args)
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The command may exit before reading; a broken pipe here is fine.
    let _ = child.stdin.take().unwrap().write_all(stdin.as_bytes());
    child.wait_with_output().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn decision(o: &Output) -> serde_json::Value {
    serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}{}", stderr(o), String::from_utf8_lossy(&o.stdout)))
}

const STATELESS: &str = "
contracts:
  actions:
    ping: {}
rules:
  - {id: ok, action: ping, effect: allow}
";

/// At most two refunds an hour per actor.
const LIMITED: &str = "
contracts:
  actions:
    refund:
      input: {amount: {type: number, min: 0}}
  actor: {id: string}
rules:
  - id: rate
    action: refund
    effect: block
    limit: {count: 2, per: [actor.id], window: 1h}
    reason: at most 2 refunds an hour
  - {id: ok, action: refund, effect: allow}
";

fn refund(actor: &str, time: &str) -> String {
    format!(r#"{{"action":"refund","input":{{"amount":5}},"actor":{{"id":"{actor}"}},"time":"{time}"}}"#)
}

fn setup(policy: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("policy.yaml"), policy).unwrap();
    dir
}

#[test]
fn a_missing_state_file_is_created_private_with_a_key() {
    let dir = setup(STATELESS);
    let o = rein(
        dir.path(),
        &["check", "policy.yaml", "--state", "state.json"],
        r#"{"action":"ping"}"#,
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let d = decision(&o);
    assert_eq!(d["effect"], "allow");
    assert!(d["decision_id"].as_str().unwrap().starts_with("chk-"), "{d}");
    let file = dir.path().join("state.json");
    let saved: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    assert_eq!(saved["format"], "rein-state");
    assert_eq!(saved["version"], 1);
    assert_eq!(saved["key"].as_str().unwrap().len(), 64);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
    // The key stays the same from one check to the next.
    let o = rein(
        dir.path(),
        &["check", "policy.yaml", "--state", "state.json"],
        r#"{"action":"ping"}"#,
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let again: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    assert_eq!(again["key"], saved["key"]);
    // No temporary file is left behind.
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".rein-state-"))
        .collect();
    assert!(names.is_empty(), "{names:?}");
}

#[test]
fn a_state_file_that_cannot_be_read_is_refused_and_kept() {
    let dir = setup(STATELESS);
    let file = dir.path().join("state.json");
    for (text, says) in [
        ("not json", "is not JSON"),
        (r#"{"format":"rein-state","version":9}"#, "version 9 is not supported"),
        (r#"{"hello":1}"#, "not a Rein state file"),
        (
            r#"{"format":"rein-state","version":1,"key":"00","buckets":[],"sessions":[]}"#,
            "64 hexadecimal digits",
        ),
    ] {
        std::fs::write(&file, text).unwrap();
        let o = rein(
            dir.path(),
            &["check", "policy.yaml", "--state", "state.json"],
            r#"{"action":"ping"}"#,
        );
        assert_eq!(o.status.code(), Some(2), "{text}");
        assert!(stderr(&o).contains(says), "{text}: {}", stderr(&o));
        assert!(stderr(&o).contains("left as it is"), "{}", stderr(&o));
        // No decision is printed, and the file is untouched.
        assert!(o.stdout.is_empty());
        assert_eq!(std::fs::read_to_string(&file).unwrap(), text);
    }
}

#[test]
fn state_does_not_go_with_batch_or_actra_and_decision_id_needs_it() {
    let dir = setup(STATELESS);
    let o = rein(
        dir.path(),
        &["check", "policy.yaml", "--state", "s.json", "--batch"],
        r#"{"action":"ping"}"#,
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("`--batch` does not take it"), "{}", stderr(&o));
    let o = rein(
        dir.path(),
        &["check", "policy.yaml", "--decision-id", "x"],
        r#"{"action":"ping"}"#,
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("--state"), "{}", stderr(&o));
    assert!(!dir.path().join("s.json").exists());
}

#[test]
fn limits_count_across_checks_in_the_state_file() {
    let dir = setup(LIMITED);
    let check = |actor: &str, time: &str| {
        rein(
            dir.path(),
            &["check", "policy.yaml", "--state", "state.json"],
            &refund(actor, time),
        )
    };
    for time in ["2026-01-01T10:00:00Z", "2026-01-01T10:30:00Z"] {
        let o = check("bot-1", time);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    }
    let o = check("bot-1", "2026-01-01T10:59:59Z");
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let d = decision(&o);
    assert_eq!(d["effect"], "block");
    assert!(
        d["reasons"].to_string().contains("2 of 2 used for actor.id=bot-1"),
        "{d}"
    );
    // The use of 10:00:00 leaves the window just after 11:00:00.
    assert_eq!(d["retry_after_seconds"], 2);
    // Another actor has a bucket of its own.
    assert_eq!(check("bot-2", "2026-01-01T10:59:59Z").status.code(), Some(0));
    // A refused call used nothing; once the first use left, one more fits.
    assert_eq!(check("bot-1", "2026-01-01T11:00:00Z").status.code(), Some(1));
    assert_eq!(check("bot-1", "2026-01-01T11:00:01Z").status.code(), Some(0));
    assert_eq!(check("bot-1", "2026-01-01T11:00:02Z").status.code(), Some(1));
}

#[test]
fn without_state_a_stateful_decision_blocks() {
    let dir = setup(LIMITED);
    let o = rein(
        dir.path(),
        &["check", "policy.yaml"],
        &refund("bot-1", "2026-01-01T10:00:00Z"),
    );
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(decision(&o)["reasons"].to_string().contains("needs state"));
}

#[test]
fn concurrent_checks_on_one_file_never_take_more_than_the_limit() {
    let dir = setup(LIMITED);
    let children: Vec<_> = (0..8)
        .map(|_| {
            let mut child = Command::new(env!("CARGO_BIN_EXE_rein"))
                .args(["check", "policy.yaml", "--state", "state.json"])
                .current_dir(dir.path())
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            child
                .stdin
                .take()
                .unwrap()
                .write_all(refund("bot-1", "2026-01-01T10:00:00Z").as_bytes())
                .unwrap();
            child
        })
        .collect();
    let codes: Vec<Option<i32>> = children
        .into_iter()
        .map(|c| c.wait_with_output().unwrap().status.code())
        .collect();
    assert_eq!(codes.iter().filter(|c| **c == Some(0)).count(), 2, "{codes:?}");
    assert_eq!(codes.iter().filter(|c| **c == Some(1)).count(), 6, "{codes:?}");
}

/// Fetches are recorded in their session (a loop guard reads them).
const RECORDED: &str = r#"
default: allow
contracts:
  actions:
    fetch:
      input: {url: string}
      output: {body: string}
rules:
  - id: loop_guard
    action: fetch
    when: session.count("fetch", duration("10m")) >= 5
    effect: block
"#;

#[test]
fn an_outcome_joins_its_call_through_the_decision_id() {
    let dir = setup(RECORDED);
    let before = r#"{"action":"fetch","input":{"url":"u"},"session":"s1","time":"2026-01-01T10:00:00Z"}"#;
    let o = rein(dir.path(), &["check", "policy.yaml", "--state", "state.json"], before);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let id = decision(&o)["decision_id"].as_str().unwrap().to_string();
    let after = r#"{"action":"fetch","input":{"url":"u"},"output":{"body":"hello"},"session":"s1","time":"2026-01-01T10:00:01Z"}"#;
    let o = rein(
        dir.path(),
        &[
            "check",
            "policy.yaml",
            "--state",
            "state.json",
            "--phase",
            "after",
            "--decision-id",
            &id,
        ],
        after,
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let saved: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("state.json")).unwrap()).unwrap();
    let call = &saved["sessions"][0]["calls"][0];
    assert_eq!(call["decision_id"], id.as_str());
    assert_eq!(call["output"], serde_json::json!({"body": "hello"}));
}

#[test]
fn explain_reads_the_state_and_writes_nothing() {
    let dir = setup(LIMITED);
    let args = ["check", "policy.yaml", "--state", "state.json"];
    for _ in 0..2 {
        let o = rein(dir.path(), &args, &refund("bot-1", "2026-01-01T10:00:00Z"));
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    }
    let before = std::fs::read_to_string(dir.path().join("state.json")).unwrap();
    let explain = ["explain", "policy.yaml", "--state", "state.json", "--json"];
    let o = rein(dir.path(), &explain, &refund("bot-1", "2026-01-01T10:10:00Z"));
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let e = decision(&o);
    assert_eq!(e["decision"]["effect"], "block", "{e}");
    assert!(e.to_string().contains("2 of 2 used"), "{e}");
    // Explaining an allowed call takes nothing either.
    let o = rein(dir.path(), &explain, &refund("bot-2", "2026-01-01T10:10:00Z"));
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(std::fs::read_to_string(dir.path().join("state.json")).unwrap(), before);
    // A missing file is an empty state, and is not created.
    let missing = ["explain", "policy.yaml", "--state", "none.json"];
    let o = rein(dir.path(), &missing, &refund("bot-1", "2026-01-01T10:10:00Z"));
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(!dir.path().join("none.json").exists());
    assert!(!dir.path().join("none.json.lock").exists());
}

#[test]
fn rein_test_runs_sequences_and_names_the_failing_step() {
    let dir = setup(LIMITED);
    std::fs::write(
        dir.path().join("policy.test.yaml"),
        "policy: policy.yaml
cases:
  - name: two an hour
    sequence:
      - at: 2026-01-01T10:00:00Z
        repeat: 2
        request: {action: refund, input: {amount: 5}, actor: {id: bot-1}}
        expect: allow
      - request: {action: refund, input: {amount: 5}, actor: {id: bot-1}}
        expect: block
        retry_after: 3601
  - name: three an hour (wrong)
    sequence:
      - repeat: 3
        request: {action: refund, input: {amount: 5}, actor: {id: bot-1}}
        expect: allow
",
    )
    .unwrap();
    let o = rein(dir.path(), &["test", "policy.test.yaml"], "");
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(1), "{out}{}", stderr(&o));
    assert!(out.contains("policy.test.yaml:12: three an hour (wrong)"), "{out}");
    assert!(
        out.contains("step 1 (line 14), send 3 of 3: expected `allow`, got `block`"),
        "{out}"
    );
    assert!(out.contains("1 passed, 1 failed"), "{out}");
}
