//! `rein init gemini` end to end: the real binary writing Gemini CLI
//! settings files in temporary projects. (That Gemini CLI 0.61 runs what it
//! writes is shown by `tests/gemini_e2e`, whose Rein scenario is configured
//! by `rein init gemini`.)

// Helpers outside `#[test]` functions panic on failure too; that is the report.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::{json, Value};
use std::fs;
use std::path::PathBuf;
use std::process::{Command, Output};

const POLICY: &str = include_str!("../../../examples/refund/policy.yaml");
const EVENTS: [&str; 5] = ["BeforeTool", "AfterTool", "BeforeAgent", "SessionStart", "SessionEnd"];

struct Project {
    tmp: tempfile::TempDir,
    dir: PathBuf,
}

impl Project {
    fn new() -> Project {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("my project");
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("policy.yaml"), POLICY).unwrap();
        Project { tmp, dir }
    }

    fn settings(&self) -> PathBuf {
        self.dir.join(".gemini/settings.json")
    }

    /// `rein init gemini ARGS` in the project, with an installed `rein`
    /// (a link to the one under test) on PATH.
    fn init(&self, args: &[&str]) -> Output {
        let bin = self.tmp.path().join("bin");
        if !bin.join("rein").exists() {
            fs::create_dir_all(&bin).unwrap();
            std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_rein"), bin.join("rein")).unwrap();
        }
        Command::new(env!("CARGO_BIN_EXE_rein"))
            .args(["init", "gemini"])
            .args(args)
            .current_dir(&self.dir)
            .env("NO_COLOR", "1")
            .env("PATH", &bin)
            .env("HOME", self.tmp.path().join("home"))
            .env_remove("GEMINI_CLI_HOME")
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

/// The words a POSIX shell makes of `command`.
fn shell_words(command: &str) -> Vec<String> {
    let o = Command::new("sh")
        .arg("-c")
        .arg(format!("printf '%s\\n' {command}"))
        .output()
        .unwrap();
    String::from_utf8_lossy(&o.stdout).lines().map(str::to_owned).collect()
}

/// Rein's one handler for `event`.
fn handler(settings: &Value, event: &str) -> Value {
    let ours: Vec<&Value> = settings["hooks"][event]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["hooks"].as_array().unwrap())
        .filter(|h| h["command"].as_str().is_some_and(|c| c.contains(" hook gemini")))
        .collect();
    assert_eq!(ours.len(), 1, "{event}: {settings}");
    ours[0].clone()
}

#[test]
fn a_fresh_project_gets_every_hook_with_the_timeout_in_milliseconds() {
    let p = Project::new();
    let out = p.init(&["-p", "policy.yaml", "--db", "state/rein.db", "-y"]);
    ok(&out);
    assert!(text(&out).contains("+++ "), "no diff shown: {}", text(&out));
    let s = p.read();
    let settings = fs::canonicalize(p.settings()).unwrap();
    for event in EVENTS {
        let h = handler(&s, event);
        assert_eq!(h["type"], "command");
        assert_eq!(h["name"], "rein");
        // Gemini's unit: milliseconds.
        assert_eq!(h["timeout"], 30_000, "{h}");
        let words = shell_words(h["command"].as_str().unwrap());
        assert_eq!(words[0], p.tmp.path().join("bin/rein").to_str().unwrap());
        assert_eq!(words[1..3], ["hook", "gemini"]);
        let after = |flag: &str| words.iter().position(|w| w == flag).map(|i| words[i + 1].clone());
        assert_eq!(after("--policy").unwrap(), p.dir.join("policy.yaml").to_str().unwrap());
        assert_eq!(after("--db").unwrap(), p.dir.join("state/rein.db").to_str().unwrap());
        // The hook refuses before Gemini gives up on it (and lets the tool run).
        assert_eq!(after("--timeout").unwrap(), "24");
        let protected: Vec<&String> = words
            .iter()
            .zip(words.iter().skip(1))
            .filter(|(flag, _)| *flag == "--protect")
            .map(|(_, path)| path)
            .collect();
        // The settings written, and Gemini's trusted folders (no hook runs
        // in a folder Gemini does not trust).
        let trust = p.tmp.path().join("home/.gemini/trustedFolders.json");
        assert_eq!(protected.len(), 2, "{words:?}");
        assert_eq!(PathBuf::from(protected[0]), settings);
        assert_eq!(PathBuf::from(protected[1]), trust);
    }
    assert_eq!(s["hooks"]["BeforeTool"][0]["matcher"], "*");
    assert!(s["hooks"]["BeforeAgent"][0].get("matcher").is_none());
}

#[test]
fn merging_keeps_the_users_settings_and_hooks_and_a_second_run_changes_nothing() {
    let p = Project::new();
    fs::create_dir_all(p.dir.join(".gemini")).unwrap();
    let theirs = json!({
        "model": {"name": "gemini-2.5-pro"},
        "hooks": {"BeforeTool": [{"matcher": "write_file", "hooks": [{"type": "command", "command": "./lint.sh"}]}],
                  "AfterAgent": [{"hooks": [{"type": "command", "command": "./notify.sh"}]}]},
        "hooksConfig": {"enabled": false, "disabled": ["rein", "other"]},
    });
    fs::write(p.settings(), serde_json::to_string_pretty(&theirs).unwrap()).unwrap();
    let out = p.init(&["-p", "policy.yaml", "-y", "--timeout", "10000"]);
    ok(&out);
    assert!(text(&out).contains("hooksConfig.enabled was false"), "{}", text(&out));
    // Said, since Gemini skips every hook in a folder it does not trust.
    let trust = p.tmp.path().join("home/.gemini/trustedFolders.json");
    let note = format!(
        "runs hooks, the user's included, only in a folder it trusts (it asks on its first start there; {})",
        trust.display()
    );
    assert!(text(&out).contains(&note), "{}", text(&out));
    let s = p.read();
    assert_eq!(s["model"]["name"], "gemini-2.5-pro");
    assert_eq!(s["hooks"]["BeforeTool"][0]["hooks"][0]["command"], "./lint.sh");
    assert_eq!(s["hooks"]["AfterAgent"][0]["hooks"][0]["command"], "./notify.sh");
    // No hook would run, and Rein's by name: both turned back on.
    assert_eq!(s["hooksConfig"], json!({"enabled": true, "disabled": ["other"]}));
    let h = handler(&s, "BeforeTool");
    assert_eq!(h["timeout"], 10_000);
    assert!(h["command"].as_str().unwrap().contains("--timeout 8 "), "{h}");

    let before = fs::read_to_string(p.settings()).unwrap();
    let again = p.init(&["-p", "policy.yaml", "-y", "--timeout", "10000"]);
    ok(&again);
    assert!(text(&again).contains("already up to date"), "{}", text(&again));
    assert_eq!(fs::read_to_string(p.settings()).unwrap(), before);

    // Other arguments replace Rein's handlers in place, never add a second.
    ok(&p.init(&["-p", "policy.yaml", "-y"]));
    let s = p.read();
    assert_eq!(handler(&s, "BeforeTool")["timeout"], 30_000);
    assert_eq!(s["hooks"]["BeforeTool"].as_array().unwrap().len(), 2);

    // --undo takes out exactly what Rein wrote.
    ok(&p.init(&["--undo", "-y"]));
    let s = p.read();
    assert_eq!(s["hooks"], theirs["hooks"]);
    assert_eq!(s["model"], theirs["model"]);
    let again = p.init(&["--undo", "-y"]);
    ok(&again);
    assert!(text(&again).contains("no Rein hooks"), "{}", text(&again));
    assert!(!text(&again).contains("only in a folder it trusts"), "{}", text(&again));
}

#[test]
fn dry_run_writes_nothing_and_user_settings_go_where_asked() {
    let p = Project::new();
    let out = p.init(&["-p", "policy.yaml", "--dry-run"]);
    ok(&out);
    assert!(text(&out).contains("BeforeTool"), "{}", text(&out));
    assert!(!p.settings().exists());

    let user = p.tmp.path().join("home/.gemini/settings.json");
    fs::create_dir_all(user.parent().unwrap()).unwrap();
    ok(&p.init(&["-p", "policy.yaml", "--settings", user.to_str().unwrap(), "-y"]));
    let s: Value = serde_json::from_str(&fs::read_to_string(&user).unwrap()).unwrap();
    let words = shell_words(handler(&s, "BeforeTool")["command"].as_str().unwrap());
    let at = words.iter().position(|w| w == "--protect").unwrap();
    assert_eq!(words[at + 1], user.canonicalize().unwrap().to_str().unwrap());
    assert!(!p.settings().exists());

    // --user is that file too (as for `rein init codex`).
    fs::remove_file(&user).unwrap();
    ok(&p.init(&["-p", "policy.yaml", "--user", "-y"]));
    let s: Value = serde_json::from_str(&fs::read_to_string(&user).unwrap()).unwrap();
    assert!(handler(&s, "BeforeTool")["command"].is_string());
    assert!(!p.settings().exists());
    let out = p.init(&["-p", "policy.yaml", "--user", "--settings", "x.json", "-y"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
}

#[test]
fn the_server_form_names_the_token_variable_never_the_token() {
    let p = Project::new();
    ok(&p.init(&[
        "--server",
        "http://127.0.0.1:8700/",
        "--token-env",
        "MY_REIN_TOKEN",
        "-y",
    ]));
    let words = shell_words(handler(&p.read(), "BeforeTool")["command"].as_str().unwrap());
    let after = |flag: &str| words.iter().position(|w| w == flag).map(|i| words[i + 1].clone());
    assert_eq!(after("--server").unwrap(), "http://127.0.0.1:8700");
    assert_eq!(after("--token-env").unwrap(), "MY_REIN_TOKEN");
    assert!(!words.iter().any(|w| w == "--policy" || w == "--token"));
}

/// The command written for `--server` runs as written with the token in
/// `$REIN_TOKEN` (which `rein hook --token` also reads): a server nobody
/// listens on is a refusal naming it, not a usage error.
#[test]
fn the_written_server_command_runs_with_its_token_variable_set() {
    let p = Project::new();
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{closed}");
    ok(&p.init(&["--server", &url, "-y"]));
    let command = handler(&p.read(), "BeforeTool")["command"].as_str().unwrap().to_owned();
    let event = json!({"hook_event_name": "BeforeTool", "cwd": p.dir, "session_id": "s",
                       "tool_name": "run_shell_command", "tool_input": {"command": "ls"}});
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(&command)
        .env("REIN_TOKEN", "a-token-0123456789")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), event.to_string().as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let answer: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|_| panic!("{}", text(&out)));
    assert_eq!(answer["decision"], "deny", "{answer}");
    assert!(
        answer["reason"].as_str().unwrap().contains("did not answer"),
        "{answer}"
    );
}

#[test]
fn bad_input_is_refused_and_the_file_kept() {
    let p = Project::new();
    // No decider, a timeout Rein cannot stay below, a policy that does not load.
    for args in [
        vec!["-y"],
        vec!["-p", "policy.yaml", "--timeout", "1500", "-y"],
        vec!["-p", "policy.yaml", "--server", "http://x", "-y"],
        vec!["--server", "ftp://x", "-y"],
        vec!["--server", "http://x", "--token-env", "A-B", "-y"],
    ] {
        let out = p.init(&args);
        assert_ne!(out.status.code(), Some(0), "{args:?}: {}", text(&out));
        assert!(!p.settings().exists(), "{args:?}");
    }
    fs::write(p.dir.join("broken.yaml"), "version: 1\nrules: [\n").unwrap();
    let out = p.init(&["-p", "broken.yaml", "-y"]);
    assert_ne!(out.status.code(), Some(0));
    assert!(!p.settings().exists());
    fs::create_dir_all(p.dir.join(".gemini")).unwrap();
    for bad in [
        "{not json",
        r#"{"hooks": {"BeforeTool": {"matcher": "*"}}}"#,
        "[]",
        // Gemini reads these as JavaScript would: every hook off, or Rein's
        // (a string `disabled` matches every name that is a part of it).
        r#"{"hooksConfig": {"enabled": 0}}"#,
        r#"{"hooksConfig": {"enabled": ""}}"#,
        r#"{"hooksConfig": {"disabled": "no-reindeer"}}"#,
        r#"{"hooksConfig": true}"#,
    ] {
        fs::write(p.settings(), bad).unwrap();
        let out = p.init(&["-p", "policy.yaml", "-y"]);
        assert_eq!(out.status.code(), Some(2), "{bad}: {}", text(&out));
        assert_eq!(fs::read_to_string(p.settings()).unwrap(), bad);
    }
}

/// Gemini CLI runs a hook with `bash -c` and lets the tool run when the
/// hook exits 1 (a "warning") or is killed by a signal (exit code null,
/// read as 0, with no answer). The written command refuses in every way
/// `rein` can end but its own two (an answer, or its refusal with exit 2).
#[test]
fn a_hook_that_fails_or_dies_is_a_refusal_gemini_reads() {
    for (name, script) in [
        ("killed", "#!/bin/sh\nkill -KILL $$\n"),
        ("aborted", "#!/bin/sh\nkill -ABRT $$\n"),
        ("warning", "#!/bin/sh\necho oops >&2\nexit 1\n"),
        ("silent", "#!/bin/sh\nexit 1\n"),
        ("missing", ""),
    ] {
        let p = Project::new();
        let fake = p.tmp.path().join(format!("fake-{name}"));
        if !script.is_empty() {
            fs::write(&fake, script).unwrap();
            let mut perms = fs::metadata(&fake).unwrap().permissions();
            std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
            fs::set_permissions(&fake, perms).unwrap();
        }
        ok(&p.init(&["-p", "policy.yaml", "--rein-bin", fake.to_str().unwrap(), "-y"]));
        let command = handler(&p.read(), "BeforeTool")["command"].as_str().unwrap().to_owned();
        let event = json!({"hook_event_name": "BeforeTool", "cwd": p.dir, "session_id": "s",
                           "tool_name": "run_shell_command", "tool_input": {"command": "ls"}});
        let mut child = Command::new("bash")
            .arg("-c")
            .arg(&command)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // The fake may be gone before it reads: a broken pipe is expected.
        let _ = std::io::Write::write_all(&mut child.stdin.take().unwrap(), event.to_string().as_bytes());
        let out = child.wait_with_output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{name}: {}", text(&out));
        let answer: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|_| panic!("{name}: {}", text(&out)));
        assert_eq!(answer["decision"], "deny", "{name}: {answer}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("refused"),
            "{name}: {}",
            text(&out)
        );
    }
    // Rein's own answers pass through unchanged.
    let p = Project::new();
    ok(&p.init(&["-p", "policy.yaml", "-y"]));
    let command = handler(&p.read(), "BeforeTool")["command"].as_str().unwrap().to_owned();
    for (stdin, code) in [("not json", 2), (r#"{"hook_event_name":"SessionEnd","cwd":"/"}"#, 0)] {
        let mut child = Command::new("bash")
            .arg("-c")
            .arg(&command)
            .env("XDG_STATE_HOME", p.tmp.path().join("state"))
            .env("XDG_CACHE_HOME", p.tmp.path().join("cache"))
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        std::io::Write::write_all(&mut child.stdin.take().unwrap(), stdin.as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        assert_eq!(out.status.code(), Some(code), "{stdin}: {}", text(&out));
        assert!(!text(&out).contains("did not answer"), "{stdin}: {}", text(&out));
    }
}

#[test]
fn a_settings_file_with_comments_is_refused_saying_so() {
    // Gemini CLI reads its settings with comments; Rein, which rewrites the
    // file, says that this is why it refuses it.
    let p = Project::new();
    fs::create_dir_all(p.dir.join(".gemini")).unwrap();
    let theirs = "{\n  // the model I use\n  \"model\": {\"name\": \"gemini-2.5-pro\"}\n}\n";
    fs::write(p.settings(), theirs).unwrap();
    let out = p.init(&["-p", "policy.yaml", "-y"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let said = text(&out);
    assert!(
        said.contains(".gemini/settings.json:2:3: not valid JSON: a comment"),
        "{said}"
    );
    assert!(said.contains("take the comments out"), "{said}");
    assert_eq!(fs::read_to_string(p.settings()).unwrap(), theirs);
}

#[test]
fn user_and_system_settings_that_keep_reins_hooks_off_are_named() {
    let p = Project::new();
    let user = p.tmp.path().join("home/.gemini/settings.json");
    fs::create_dir_all(user.parent().unwrap()).unwrap();
    let system = p.tmp.path().join("etc/settings.json");
    fs::create_dir_all(system.parent().unwrap()).unwrap();
    fs::write(
        &user,
        r#"{"hooksConfig": {"enabled": false, "disabled": ["lint", "rein"]}}"#,
    )
    .unwrap();
    fs::write(&system, r#"{"hooksConfig": {"enabled": false}}"#).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_rein"))
        .args([
            "init",
            "gemini",
            "-p",
            "policy.yaml",
            "-y",
            "--rein-bin",
            "/usr/bin/rein",
        ])
        .current_dir(&p.dir)
        .env("NO_COLOR", "1")
        .env("HOME", p.tmp.path().join("home"))
        .env_remove("GEMINI_CLI_HOME")
        .env("GEMINI_CLI_SYSTEM_SETTINGS_PATH", &system)
        .output()
        .unwrap();
    // Written, but not a success: Gemini would run none of them.
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(p.settings().exists());
    let said = text(&out);
    assert!(said.contains("Gemini CLI will not run them"), "{said}");
    let user_said = format!("warning: {}: `hooksConfig.enabled` is false", user.display());
    assert!(said.contains(&user_said), "{said}");
    let disabled = format!("warning: {}: `hooksConfig.disabled` names `rein`", user.display());
    assert!(said.contains(&disabled), "{said}");
    let system_said = format!(
        "warning: {}: `hooksConfig.enabled` is false, and these system",
        system.display()
    );
    assert!(said.contains(&system_said), "{said}");

    // The project's own `enabled: true` wins over the user's false.
    fs::write(p.settings(), r#"{"hooksConfig": {"enabled": true}}"#).unwrap();
    fs::write(&system, "{}").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_rein"))
        .args([
            "init",
            "gemini",
            "-p",
            "policy.yaml",
            "-y",
            "--rein-bin",
            "/usr/bin/rein",
        ])
        .current_dir(&p.dir)
        .env("NO_COLOR", "1")
        .env("HOME", p.tmp.path().join("home"))
        .env_remove("GEMINI_CLI_HOME")
        .env("GEMINI_CLI_SYSTEM_SETTINGS_PATH", &system)
        .output()
        .unwrap();
    // The user's list still names `rein`: still kept off.
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(!text(&out).contains(&user_said), "{}", text(&out));
    assert!(text(&out).contains(&disabled), "{}", text(&out));

    // Nothing said when they leave the hooks on.
    fs::write(&user, r#"{"hooksConfig": {"enabled": true, "disabled": ["reindeer"]}}"#).unwrap();
    fs::write(&system, "{}").unwrap();
    fs::remove_file(p.settings()).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_rein"))
        .args([
            "init",
            "gemini",
            "-p",
            "policy.yaml",
            "-y",
            "--rein-bin",
            "/usr/bin/rein",
        ])
        .current_dir(&p.dir)
        .env("NO_COLOR", "1")
        .env("HOME", p.tmp.path().join("home"))
        .env_remove("GEMINI_CLI_HOME")
        .env("GEMINI_CLI_SYSTEM_SETTINGS_PATH", &system)
        .output()
        .unwrap();
    ok(&out);
    assert!(!text(&out).contains("warning"), "{}", text(&out));
}
