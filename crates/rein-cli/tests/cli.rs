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
    // Where the request came from is named; an empty one is called empty.
    for (stdin, says) in [
        ("", "stdin is empty"),
        ("  \n", "stdin is empty"),
        ("{", "stdin: invalid request"),
    ] {
        let o = rein(&["check", "-p", REFUND], Some(stdin));
        assert!(stderr(&o).contains(says), "{stdin:?}: {}", stderr(&o));
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("req.json");
    std::fs::write(&file, "{\"action\": \"refund\",\n").unwrap();
    let o = rein(&["explain", "-p", REFUND, "-r", file.to_str().unwrap()], None);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains(&format!("`{}`: invalid request", file.display())),
        "{}",
        stderr(&o)
    );
    std::fs::write(&file, "").unwrap();
    let o = rein(&["check", "-p", REFUND, "-r", file.to_str().unwrap()], None);
    assert!(stderr(&o).contains("is empty"), "{}", stderr(&o));

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

/// `rein check` has no credential: a field the policy requires bound
/// blocks unless `--bound` names it, in `--batch` and `explain` alike.
#[test]
fn check_blocks_unbound_required_fields_unless_named() {
    const IDENTITY: &str = "examples/identity/policy.yaml";
    let request = r#"{"action": "doc.read", "input": {"path": "/acme/readme"},
        "actor": {"id": "bot", "tenant": "acme", "chain": [{"kind": "user", "id": "alice"}]}}"#;
    let o = rein(&["check", "-p", IDENTITY], Some(request));
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    assert!(stdout(&o).contains("must be set by the credential"), "{}", stdout(&o));
    let o = rein(&["check", "-p", IDENTITY, "--bound", "id,chain"], Some(request));
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stdout(&o).contains("actor.tenant must be set by the credential"),
        "{}",
        stdout(&o)
    );
    let o = rein(&["check", "-p", IDENTITY, "--bound", "id,tenant,chain"], Some(request));
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    let o = rein(&["check", "-p", IDENTITY, "--batch"], Some(&request.replace('\n', " ")));
    assert!(stdout(&o).contains("\"effect\":\"block\""), "{}", stdout(&o));
    let o = rein(&["explain", "-p", IDENTITY], Some(request));
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    assert!(stdout(&o).contains("must be set by the credential"), "{}", stdout(&o));
    let o = rein(
        &["explain", "-p", IDENTITY, "--bound", "id,tenant,chain"],
        Some(request),
    );
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
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

    // A directory without test files tested nothing: that fails, beside
    // the others' results, rather than passing with 0 cases.
    let empty = dir.join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    std::fs::write(empty.join("policy.yaml"), "default: block\n").unwrap();
    let o = rein(&["test", empty.to_str().unwrap()], None);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    assert!(stdout(&o).contains("holds no test file"), "{}", stdout(&o));
    assert!(stdout(&o).ends_with("0 passed, 1 failed\n"), "{}", stdout(&o));
    let o = rein(&["test", "examples/refund", empty.to_str().unwrap()], None);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    assert!(stdout(&o).ends_with(" passed, 1 failed\n"), "{}", stdout(&o));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The subcommands `rein PATH... --help` lists (without `help`).
fn subcommands(path: &[&str]) -> Vec<String> {
    let args: Vec<&str> = path.iter().copied().chain(["--help"]).collect();
    let o = rein(&args, None);
    assert_eq!(o.status.code(), Some(0), "{args:?}: {}", stderr(&o));
    let text = stdout(&o);
    let Some((_, list)) = text.split_once("Commands:\n") else {
        return Vec::new();
    };
    list.lines()
        .take_while(|l| !l.trim().is_empty())
        .filter(|l| l.starts_with("  ") && !l.starts_with("   "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|name| *name != "help")
        .map(str::to_string)
        .collect()
}

/// Every command path, `[]` (rein itself) first, depth first.
fn command_paths() -> Vec<Vec<String>> {
    let mut paths = vec![Vec::new()];
    let mut i = 0;
    while i < paths.len() {
        let path = paths[i].clone();
        let words: Vec<&str> = path.iter().map(String::as_str).collect();
        for sub in subcommands(&words) {
            let mut child = path.clone();
            child.push(sub);
            paths.push(child);
        }
        i += 1;
    }
    paths
}

#[test]
fn every_command_has_help() {
    let paths = command_paths();
    // Commands by name, so that one lost from the list fails here.
    for expected in [
        "validate",
        "check",
        "explain",
        "test",
        "serve",
        "audit",
        "approvals",
        "hook",
        "convert",
        "init",
        "completions",
    ] {
        assert!(
            paths.contains(&vec![expected.to_string()]),
            "`rein {expected}` is missing"
        );
    }
    for expected in [["init", "policy"], ["init", "claude-code"], ["audit", "verify"]] {
        assert!(
            paths.contains(&expected.map(str::to_string).to_vec()),
            "{expected:?} is missing"
        );
    }
    for path in &paths {
        let words: Vec<&str> = path.iter().map(String::as_str).chain(["--help"]).collect();
        let o = rein(&words, None);
        assert_eq!(o.status.code(), Some(0), "{words:?}");
        assert!(stdout(&o).contains("Usage: rein"), "{words:?}");
    }
    let o = rein(&["frobnicate"], None);
    assert_eq!(o.status.code(), Some(2));
}

/// The completion scripts know every command: bash dispatches on
/// `PARENT,NAME)` for each, zsh and fish name each.
#[test]
fn completions_cover_every_subcommand() {
    let script = |shell: &str| {
        let o = rein(&["completions", shell], None);
        assert_eq!(o.status.code(), Some(0), "{shell}: {}", stderr(&o));
        stdout(&o)
    };
    let (bash, zsh, fish) = (script("bash"), script("zsh"), script("fish"));
    let paths = command_paths();
    assert!(paths.len() > 15, "{paths:?}");
    for path in paths.iter().filter(|p| !p.is_empty()) {
        let (name, parents) = path.split_last().unwrap();
        let parent = std::iter::once("rein".to_string())
            .chain(
                parents
                    .iter()
                    .map(|p| format!("subcmd__{}", p.replace('-', "__subcmd__"))),
            )
            .collect::<Vec<_>>()
            .join("__");
        assert!(
            bash.contains(&format!("{parent},{name})")),
            "bash lacks {path:?} ({parent},{name})"
        );
        assert!(zsh.contains(&format!("'{name}:")), "zsh lacks {path:?}");
        assert!(fish.contains(&format!(" -a \"{name}\"")), "fish lacks {path:?}");
    }
    let o = rein(&["completions", "tcsh"], None);
    assert_eq!(o.status.code(), Some(2));

    // And bash, given the script, completes with it.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("rein.bash");
    std::fs::write(&file, &bash).unwrap();
    let probe = format!(
        "source '{}'; complete -p rein; \
         COMP_WORDS=(rein au); COMP_CWORD=1; _rein rein au rein; echo \"[${{COMPREPLY[*]}}]\"; \
         COMP_WORDS=(rein init ''); COMP_CWORD=2; _rein rein '' init; echo \"[${{COMPREPLY[*]}}]\"",
        file.display()
    );
    match Command::new("bash").args(["--norc", "-c", &probe]).output() {
        Ok(o) => {
            let text = stdout(&o);
            assert!(text.contains("-F _rein rein"), "{text}{}", stderr(&o));
            assert!(text.contains("[audit]"), "{text}");
            assert!(text.contains("[claude-code codex gemini cursor policy"), "{text}");
        }
        Err(e) => assert!(std::env::var_os("CI").is_none(), "bash is needed under CI: {e}"),
    }
}

/// A reader that stops early (`rein completions bash | head`) ends the
/// command quietly, as it does every other command: no panic, and the exit
/// code of a process stopped by SIGPIPE (141).
#[test]
fn completions_into_a_closed_pipe_do_not_panic() {
    for shell in ["bash", "zsh", "fish"] {
        let (reader, writer) = std::io::pipe().unwrap();
        // Closed before the child starts, so its first write fails.
        drop(reader);
        let o = Command::new(env!("CARGO_BIN_EXE_rein"))
            .args(["completions", shell])
            .stdout(writer)
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(141), "{shell}: {}", stderr(&o));
        assert!(!stderr(&o).contains("panicked"), "{shell}: {}", stderr(&o));
    }
}

/// `rein test` given a policy instead of its test file says so in one line
/// instead of reporting every key of the policy as a test-file error.
#[test]
fn test_given_a_policy_points_to_validate() {
    let o = rein(&["test", REFUND], None);
    assert_eq!(o.status.code(), Some(1));
    assert!(stdout(&o).contains("not a test file"), "{}", stdout(&o));
    assert!(
        stdout(&o).contains(&format!("rein validate {REFUND}")),
        "{}",
        stdout(&o)
    );
    assert!(stderr(&o).len() < 200, "{}", stderr(&o));
    // A test file that is not there is reported as such.
    let o = rein(&["test", "missing.test.yaml", "missing/"], None);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(stderr(&o).matches("cannot read").count(), 2, "{}", stderr(&o));
}

/// Policies are given as arguments or with `--policy`/`-p`, or both
/// (merged), to every command that loads one; none at all is a usage error
/// that names both forms.
#[test]
fn policies_as_arguments_or_options_everywhere() {
    let request = "examples/refund/request.json";
    for cmd in ["check", "explain"] {
        for form in [vec![REFUND], vec!["--policy", REFUND], vec!["-p", REFUND]] {
            let args: Vec<&str> = [cmd].into_iter().chain(form.clone()).chain(["-r", request]).collect();
            let o = rein(&args, None);
            assert_eq!(o.status.code(), Some(1), "{args:?}: {}", stderr(&o));
        }
    }
    for form in [vec![REFUND], vec!["--policy", REFUND]] {
        let args: Vec<&str> = ["validate"].into_iter().chain(form).collect();
        assert_eq!(rein(&args, None).status.code(), Some(0), "{args:?}");
    }
    // Both forms together are one policy: a rule from the second file
    // decides the request.
    let dir = tempfile::tempdir().unwrap();
    let extra = dir.path().join("extra.yaml");
    std::fs::write(
        &extra,
        "rules:\n  - {id: extra_rule, action: refund, effect: block, reason: from the option}\n",
    )
    .unwrap();
    let o = rein(
        &["check", REFUND, "-p", extra.to_str().unwrap(), "-r", "-"],
        Some(&refund_request(40, "agent")),
    );
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stdout(&o).contains("extra_rule"), "{}", stdout(&o));

    // `convert` takes one Actra policy, either way.
    let schema = "examples/actra/refund/schema.yaml";
    let actra = "examples/actra/refund/policy.yaml";
    let by_argument = rein(&["convert", "--actra-schema", schema, actra], None);
    let by_option = rein(&["convert", "--actra-schema", schema, "-p", actra], None);
    assert_eq!(by_argument.status.code(), Some(0), "{}", stderr(&by_argument));
    assert_eq!(stdout(&by_argument), stdout(&by_option));
    let o = rein(&["convert", "--actra-schema", schema], None);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("<POLICY|--policy <POLICY>>"), "{}", stderr(&o));

    for cmd in [
        vec!["validate"],
        vec!["check"],
        vec!["explain"],
        vec!["serve"],
        vec!["audit", "replay"],
    ] {
        let o = rein(&cmd, Some("{}"));
        assert_eq!(o.status.code(), Some(2), "{cmd:?}");
        assert!(
            stderr(&o).contains("<POLICY|--policy <POLICY>...>"),
            "{cmd:?}: {}",
            stderr(&o)
        );
    }
}

/// `rein check -p P` on a terminal without `--request` stops with a usage
/// error instead of waiting silently for input (run under `script`, which
/// gives the command a terminal; piped input is covered by the other
/// tests).
#[test]
fn check_on_a_terminal_without_request_is_a_usage_error() {
    if Command::new("script").arg("--version").output().is_err() {
        assert!(
            std::env::var_os("CI").is_none(),
            "`script` (util-linux) is needed under CI"
        );
        eprintln!("SKIPPED: no `script` to give the command a terminal");
        return;
    }
    for cmd in ["check", "explain"] {
        let line = format!("{} {cmd} {REFUND}; echo \"exit=$?\"", env!("CARGO_BIN_EXE_rein"));
        let mut child = Command::new("script")
            .args(["-qec", &line, "/dev/null"])
            .current_dir(repo())
            .env("NO_COLOR", "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while child.try_wait().unwrap().is_none() {
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                panic!("`rein {cmd}` waited on the terminal");
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let o = child.wait_with_output().unwrap();
        let text = stdout(&o);
        assert!(
            text.contains("no request: give it with `--request FILE`"),
            "{cmd}: {text}"
        );
        assert!(text.contains("exit=2"), "{cmd}: {text}");
    }
}

#[test]
fn validate_shows_the_version_label_and_hash() {
    let o = rein(&["validate", REFUND], None);
    let text = stdout(&o);
    let hash = text.trim().rsplit_once('(').unwrap().1.trim_end_matches(')');
    assert!(text.contains("version `2026-11-24.1` ("), "{text}");
    assert_eq!(hash.len(), 32, "{text}");
    assert!(hash.bytes().all(|b| b.is_ascii_hexdigit()), "{text}");
}

/// `rein init policy DIR` writes a starter that validates and passes its
/// own tests; it never replaces a file without --force.
#[test]
fn init_policy_scaffolds_a_policy_that_validates_and_passes_its_tests() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("starter");
    let target_arg = target.to_str().unwrap();
    let o = rein(&["init", "policy", target_arg], None);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let o = rein(&["validate", target_arg], None);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stdout(&o).starts_with("ok: 2 actions, 4 rules"), "{}", stdout(&o));
    let o = rein(&["test", target_arg], None);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    assert_eq!(stdout(&o).trim(), "7 passed, 0 failed");

    // An edited file is not replaced by a second run, nor its missing
    // sibling written (all or nothing).
    let policy = target.join("policy.yaml");
    let tests = target.join("policy.test.yaml");
    std::fs::write(&policy, "# mine\n").unwrap();
    std::fs::remove_file(&tests).unwrap();
    let o = rein(&["init", "policy", target_arg], None);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("already exists"), "{}", stderr(&o));
    assert!(stderr(&o).contains("--force"), "{}", stderr(&o));
    assert_eq!(std::fs::read_to_string(&policy).unwrap(), "# mine\n");
    assert!(!tests.exists());

    // --force replaces a symbolic link, never writing through it.
    let elsewhere = dir.path().join("elsewhere.yaml");
    std::fs::write(&elsewhere, "# not the scaffold's\n").unwrap();
    #[cfg(unix)]
    std::os::unix::fs::symlink(&elsewhere, &tests).unwrap();
    let o = rein(&["init", "policy", target_arg, "--force"], None);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(std::fs::read_to_string(&elsewhere).unwrap(), "# not the scaffold's\n");
    assert!(!tests.symlink_metadata().unwrap().file_type().is_symlink());
    let o = rein(&["test", target_arg], None);
    assert_eq!(stdout(&o).trim(), "7 passed, 0 failed");
}

/// A reader that stops early (`rein … | head`) gets no panic and no error
/// message, and never exit 0: `check`'s and `explain`'s exit code is the
/// decision, `test`'s whether the cases passed, so a closed pipe exits 141
/// (SIGPIPE's code, as C tools report it), whatever the verdict was. The
/// reading end of stdout is closed before the command runs.
#[test]
fn a_closed_stdout_is_never_success() {
    let request = "examples/refund/request.json";
    let commands: [&[&str]; 6] = [
        &["check", REFUND, "-r", request],
        &["explain", REFUND, "-r", request],
        &["validate", REFUND],
        &["test", "examples/refund"],
        &["completions", "zsh"],
        &[
            "convert",
            "--actra-schema",
            "examples/actra/refund/schema.yaml",
            "examples/actra/refund/policy.yaml",
        ],
    ];
    for args in commands {
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let o = Command::new(env!("CARGO_BIN_EXE_rein"))
            .args(args)
            .current_dir(repo())
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(writer)
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(141), "{args:?}: {}", stderr(&o));
        assert_eq!(stderr(&o), "", "{args:?}");
    }
}
