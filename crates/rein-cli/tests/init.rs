//! `rein init claude-code` end to end: the real binary writing Claude Code
//! settings files in temporary projects.

// Helpers outside `#[test]` functions panic on failure too; that is the report.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::{json, Value};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const POLICY: &str = include_str!("../../../examples/refund/policy.yaml");

/// A rein path that is never run here; fixed so the golden output is stable.
const BIN: &str = "/opt/rein/bin/rein";

const EVENTS: [&str; 6] = [
    "PreToolUse",
    "PermissionRequest",
    "PostToolUse",
    "UserPromptSubmit",
    "SessionStart",
    "SessionEnd",
];

/// A temporary project holding `policy.yaml`, below a folder named `name`.
struct Project {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
}

impl Project {
    fn new(name: &str) -> Project {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join(name);
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("policy.yaml"), POLICY).unwrap();
        Project { _tmp: tmp, dir }
    }

    fn settings(&self) -> PathBuf {
        self.dir.join(".claude/settings.json")
    }

    fn policy(&self) -> String {
        self.dir.join("policy.yaml").to_str().unwrap().to_owned()
    }

    /// Runs `rein init claude-code ARGS` in the project folder, with an
    /// installed `rein` on PATH (a link to the one under test: that one is
    /// in cargo's build folder, which `init` does not write into settings).
    fn init(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_rein"))
            .args(["init", "claude-code"])
            .args(args)
            .current_dir(&self.dir)
            .env("NO_COLOR", "1")
            .env("PATH", self.installed().parent().unwrap())
            .output()
            .unwrap()
    }

    /// `bin/rein` beside the project: a link to the rein under test.
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
        serde_json::from_str(&fs::read_to_string(self.settings()).unwrap()).unwrap()
    }
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn ok(o: &Output) {
    assert_eq!(
        o.status.code(),
        Some(0),
        "stdout:\n{}\nstderr:\n{}",
        stdout(o),
        stderr(o)
    );
}

/// The one handler Rein wrote for `event`, checking it is alone in its group.
fn rein_handler<'a>(settings: &'a Value, event: &str) -> &'a Value {
    let groups = settings["hooks"][event].as_array().unwrap();
    let ours: Vec<&Value> = groups
        .iter()
        .filter(|g| {
            g["hooks"].as_array().unwrap().iter().any(|h| {
                h["command"].as_str().is_some_and(|c| c.contains(" hook claude-code"))
                    || h["url"].as_str().is_some_and(|u| u.ends_with("/v1/hooks/claude-code"))
            })
        })
        .collect();
    assert_eq!(ours.len(), 1, "{event}: {groups:?}");
    let handlers = ours[0]["hooks"].as_array().unwrap();
    assert_eq!(handlers.len(), 1, "{event}: {handlers:?}");
    &handlers[0]
}

/// The words a POSIX shell makes of `command`, by letting `sh` print them.
fn shell_words(command: &str) -> Vec<String> {
    let o = Command::new("sh")
        .arg("-c")
        .arg(format!("printf '%s\\n' {command}"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    stdout(&o).lines().map(str::to_owned).collect()
}

#[test]
fn a_fresh_project_gets_every_hook() {
    let p = Project::new("fresh");
    let o = p.init(&["--policy", "policy.yaml", "--db", "rein.db", "--rein-bin", BIN]);
    ok(&o);
    assert!(stderr(&o).contains("wrote ./.claude/settings.json"), "{}", stderr(&o));
    assert!(
        stdout(&o).starts_with("--- /dev/null\n+++ ./.claude/settings.json\n@@ -0,0 +1,"),
        "{}",
        stdout(&o)
    );

    let text = fs::read_to_string(p.settings()).unwrap();
    let dir = p.dir.to_str().unwrap();
    insta::assert_snapshot!("fresh_settings", text.replace(dir, "[PROJECT]"));

    let settings = p.read();
    let keys: Vec<&String> = settings["hooks"].as_object().unwrap().keys().collect();
    assert_eq!(keys.len(), EVENTS.len());
    for event in EVENTS {
        let h = rein_handler(&settings, event);
        assert_eq!(h["type"], "command");
        assert_eq!(h["timeout"], 30);
        assert_eq!(h["onFailure"], "block");
        let words = shell_words(h["command"].as_str().unwrap());
        let expected = [
            BIN,
            "hook",
            "claude-code",
            "--policy",
            &p.policy(),
            "--db",
            &format!("{dir}/rein.db"),
            "--protect",
            &format!("{dir}/.claude/settings.json"),
        ];
        assert_eq!(words, expected);
    }
    for (event, matcher) in [("PreToolUse", json!("*")), ("UserPromptSubmit", Value::Null)] {
        assert_eq!(settings["hooks"][event][0]["matcher"], matcher, "{event}");
    }
}

#[test]
fn the_hook_runs_this_rein_by_default() {
    let p = Project::new("default-bin");
    ok(&p.init(&["--policy", "policy.yaml", "--timeout", "7", "--local"]));
    assert!(!p.settings().exists());
    let text = fs::read_to_string(p.dir.join(".claude/settings.local.json")).unwrap();
    let settings: Value = serde_json::from_str(&text).unwrap();
    let h = rein_handler(&settings, "PreToolUse");
    assert_eq!(h["timeout"], 7);
    let words = shell_words(h["command"].as_str().unwrap());
    // The rein under test runs from cargo's build folder: the hook runs the
    // one installed on PATH instead.
    assert_eq!(Path::new(&words[0]), p.installed());
    let settings = format!("{}/.claude/settings.local.json", p.dir.display());
    assert_eq!(
        words[1..],
        ["hook", "claude-code", "--policy", &p.policy(), "--protect", &settings]
    );
}

/// A rein in cargo's build folder is not written into settings when no
/// `rein` is installed: the next build would replace it, `cargo clean`
/// remove it (and every tool call would then be refused).
#[test]
fn a_rein_in_cargos_build_folder_is_not_written_into_settings() {
    let p = Project::new("cargo-run");
    let o = Command::new(env!("CARGO_BIN_EXE_rein"))
        .args(["init", "claude-code", "--policy", "policy.yaml"])
        .current_dir(&p.dir)
        .env("PATH", p.dir.join("no-such-dir"))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("cargo install --path crates/rein-cli"),
        "{}",
        stderr(&o)
    );
    assert!(!p.settings().exists());
    // A copy outside any build folder is written as it is.
    let copy = p.dir.join("rein-copy");
    fs::copy(env!("CARGO_BIN_EXE_rein"), &copy).unwrap();
    // A test running in parallel may fork while the copy is open for
    // writing ("text file busy"): retry.
    let run = || {
        Command::new(&copy)
            .args(["init", "claude-code", "--policy", "policy.yaml"])
            .current_dir(&p.dir)
            .env("PATH", p.dir.join("no-such-dir"))
            .output()
    };
    let mut o = run();
    for _ in 0..50 {
        match &o {
            Err(e) if e.kind() == std::io::ErrorKind::ExecutableFileBusy => {
                std::thread::sleep(std::time::Duration::from_millis(100));
                o = run();
            }
            _ => break,
        }
    }
    let o = o.unwrap();
    ok(&o);
    let h = rein_handler(&p.read(), "PreToolUse").clone();
    assert_eq!(shell_words(h["command"].as_str().unwrap())[0], copy.to_str().unwrap());
}

#[test]
fn merging_keeps_the_users_settings_and_hooks() {
    let p = Project::new("merge");
    fs::create_dir(p.dir.join(".claude")).unwrap();
    let before = r#"{
    "model": "claude-x",
    "permissions": {"allow": ["Bash(npm test)"], "deny": ["Read(.env)"]},
    "hooks": {
        "Stop": [{"hooks": [{"type": "command", "command": "notify-send done"}]}],
        "PreToolUse": [
            {"matcher": "Bash", "hooks": [{"type": "command", "command": "my-guard --strict", "timeout": 5}]},
            {"matcher": "Edit", "hooks": [
                {"type": "command", "command": "/old/place/rein hook claude-code --policy /old.yaml"},
                {"type": "command", "command": "fmt-check"}
            ]}
        ],
        "SessionEnd": [{"hooks": [{"type": "http", "url": "http://old:7777/v1/hooks/claude-code"}]}],
        "Notification": [{"hooks": [{"type": "command", "command": "rein hook claude-code --legacy"}]}]
    },
    "env": {"Z_LAST": "1", "A_FIRST": "2"}
}
"#;
    fs::write(p.settings(), before).unwrap();
    let o = p.init(&["--policy", "policy.yaml", "--rein-bin", BIN, "--yes"]);
    ok(&o);
    assert!(stdout(&o).contains("-                {\"type\": \"command\", \"command\": \"/old/place/rein hook"));

    let after = p.read();
    let old: Value = serde_json::from_str(before).unwrap();
    for key in ["model", "permissions", "env"] {
        assert_eq!(after[key], old[key], "{key}");
    }
    // Key order is the file's, at every level.
    let text = fs::read_to_string(p.settings()).unwrap();
    let at = |needle: &str| text.find(needle).unwrap_or_else(|| panic!("{needle} missing:\n{text}"));
    assert!(at("\"model\"") < at("\"permissions\"") && at("\"permissions\"") < at("\"hooks\""));
    assert!(at("\"hooks\"") < at("\"env\"") && at("\"Z_LAST\"") < at("\"A_FIRST\""));
    assert!(at("\"Stop\"") < at("\"PreToolUse\"") && at("\"PreToolUse\"") < at("\"SessionEnd\""));
    assert!(
        text.starts_with("{\n    \"model\""),
        "the file's indentation is kept:\n{text}"
    );

    let hooks = &after["hooks"];
    assert_eq!(hooks["Stop"], old["hooks"]["Stop"]);
    // Rein's old handlers are gone; the user's stay where they were, Rein's
    // new group takes the place of the first old one.
    let pre = hooks["PreToolUse"].as_array().unwrap();
    assert_eq!(pre.len(), 3);
    assert_eq!(pre[0], old["hooks"]["PreToolUse"][0]);
    assert_eq!(pre[1]["matcher"], "*");
    assert_eq!(
        pre[2],
        json!({"matcher": "Edit", "hooks": [{"type": "command", "command": "fmt-check"}]})
    );
    assert_eq!(hooks["SessionEnd"].as_array().unwrap().len(), 1);
    // An event Rein no longer hooks loses the old handler (and the event).
    assert!(hooks.get("Notification").is_none(), "{hooks:#}");
    for event in EVENTS {
        assert!(rein_handler(&after, event)["command"]
            .as_str()
            .unwrap()
            .starts_with(BIN));
    }
}

#[test]
fn a_second_run_changes_nothing() {
    let p = Project::new("twice");
    fs::create_dir(p.dir.join(".claude")).unwrap();
    fs::write(p.settings(), "{\"theme\": \"dark\", \"hooks\": {\"PreToolUse\": []}}").unwrap();
    let args = ["--policy", "policy.yaml", "--rein-bin", BIN];
    ok(&p.init(&args));
    let first = fs::read(p.settings()).unwrap();
    let o = p.init(&args);
    ok(&o);
    assert_eq!(stdout(&o), "");
    assert!(stderr(&o).contains("already up to date"), "{}", stderr(&o));
    assert_eq!(fs::read(p.settings()).unwrap(), first);

    // Other arguments replace Rein's handlers, they do not add more.
    ok(&p.init(&["--server", "http://127.0.0.1:7777", "--rein-bin", BIN]));
    let settings = p.read();
    assert_eq!(settings["theme"], "dark");
    for event in EVENTS {
        let words = shell_words(rein_handler(&settings, event)["command"].as_str().unwrap());
        assert_eq!(
            words,
            [
                BIN,
                "hook",
                "claude-code",
                "--server",
                "http://127.0.0.1:7777",
                "--token-env",
                "REIN_TOKEN",
                "--protect",
                p.settings().to_str().unwrap(),
            ]
        );
    }
}

#[test]
fn the_http_form_points_at_the_server() {
    let p = Project::new("http");
    let o = p.init(&[
        "--server",
        "https://rein.internal:8443/",
        "--http",
        "--token-env",
        "CI_REIN_TOKEN",
    ]);
    ok(&o);
    let settings = p.read();
    for event in EVENTS {
        assert_eq!(
            rein_handler(&settings, event),
            &json!({
                "type": "http",
                "url": "https://rein.internal:8443/v1/hooks/claude-code",
                "headers": {"Authorization": "Bearer $CI_REIN_TOKEN"},
                "allowedEnvVars": ["CI_REIN_TOKEN"],
                "timeout": 30,
                "onFailure": "block"
            })
        );
    }
    // Switching back to the command form replaces the http handlers.
    ok(&p.init(&["--policy", "policy.yaml", "--rein-bin", BIN]));
    let settings = p.read();
    for event in EVENTS {
        assert_eq!(rein_handler(&settings, event)["type"], "command");
    }
}

#[test]
fn a_file_that_is_not_json_or_has_bad_hooks_is_refused_and_kept() {
    let p = Project::new("invalid");
    fs::create_dir(p.dir.join(".claude")).unwrap();
    for (text, expected) in [
        (
            "{\n  \"model\": \"x\",\n}\n",
            ".claude/settings.json:3:1: not valid JSON: trailing comma",
        ),
        (
            "{\"hooks\": {\"PreToolUse\": {\"matcher\": \"*\"}}}",
            ":1:25: `hooks` has the wrong shape: invalid type: map, expected a list of matcher groups",
        ),
        (
            "{\"hooks\": {\"PreToolUse\": [{\"hooks\": \"cmd\"}]}}",
            "expected a list of hook handlers",
        ),
        (
            "{\"hooks\": {\"PreToolUse\": [{\"matcher\": 3, \"hooks\": []}]}}",
            "expected a matcher string",
        ),
        ("[]", "the settings must be a JSON object"),
    ] {
        fs::write(p.settings(), text).unwrap();
        let o = p.init(&["--policy", "policy.yaml", "--yes"]);
        assert_eq!(o.status.code(), Some(2), "{text}: {}", stderr(&o));
        assert!(stderr(&o).contains(expected), "{text}: {}", stderr(&o));
        assert!(stderr(&o).contains("left unchanged"), "{}", stderr(&o));
        assert_eq!(stdout(&o), "");
        assert_eq!(fs::read_to_string(p.settings()).unwrap(), text);
        assert_eq!(
            fs::read_dir(p.dir.join(".claude")).unwrap().count(),
            1,
            "no temporary file left"
        );
    }
}

#[test]
fn a_policy_that_does_not_load_is_refused() {
    let p = Project::new("broken");
    fs::write(p.dir.join("policy.yaml"), "version: 1\nrules: [").unwrap();
    let o = p.init(&["--policy", "policy.yaml"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("the policy does not load"), "{}", stderr(&o));
    assert!(!p.dir.join(".claude").exists());
}

#[test]
fn dry_run_prints_the_diff_and_writes_nothing() {
    let p = Project::new("dry");
    let o = p.init(&["--policy", "policy.yaml", "--dry-run"]);
    ok(&o);
    assert!(stdout(&o).contains("+    \"PreToolUse\": ["), "{}", stdout(&o));
    assert!(stderr(&o).contains("dry run"), "{}", stderr(&o));
    assert!(!p.dir.join(".claude").exists());

    let before = "{\"model\": \"x\"}\n";
    fs::create_dir(p.dir.join(".claude")).unwrap();
    fs::write(p.settings(), before).unwrap();
    let o = p.init(&["--policy", "policy.yaml", "--dry-run"]);
    ok(&o);
    assert!(stdout(&o).contains("-{\"model\": \"x\"}\n"), "{}", stdout(&o));
    assert_eq!(fs::read_to_string(p.settings()).unwrap(), before);
}

#[test]
fn paths_with_spaces_and_quotes_survive_the_shell() {
    let p = Project::new("my project's \"dir\" $HOME");
    let bin = format!("{}/bin dir/it's rein", p.dir.to_str().unwrap());
    let settings = p.dir.join("custom settings.json");
    let o = p.init(&[
        "--policy",
        "policy.yaml",
        "--db",
        "audit $x.db",
        "--rein-bin",
        &bin,
        "--settings",
        settings.to_str().unwrap(),
    ]);
    ok(&o);
    let written: Value = serde_json::from_str(&fs::read_to_string(&settings).unwrap()).unwrap();
    let command = rein_handler(&written, "PreToolUse")["command"].as_str().unwrap();
    let db = format!("{}/audit $x.db", p.dir.to_str().unwrap());
    let expected = [
        bin.as_str(),
        "hook",
        "claude-code",
        "--policy",
        &p.policy(),
        "--db",
        &db,
        "--protect",
        settings.to_str().unwrap(),
    ];
    assert_eq!(shell_words(command), expected);
    assert_eq!(shlex::split(command).unwrap(), expected);
    // The same command is recognised as Rein's on the next run.
    let again = p.init(&[
        "--policy",
        "policy.yaml",
        "--db",
        "audit $x.db",
        "--rein-bin",
        &bin,
        "--settings",
        settings.to_str().unwrap(),
    ]);
    ok(&again);
    assert!(stderr(&again).contains("already up to date"), "{}", stderr(&again));
}

#[test]
fn bad_arguments_are_usage_errors() {
    let p = Project::new("usage");
    for args in [
        &["--policy", "policy.yaml", "--server", "http://x"][..],
        &["--policy", "policy.yaml", "--http"],
        &["--policy", "policy.yaml", "--token-env", "T"],
        &["--server", "http://x", "--db", "x.db"],
        &["--server", "ftp://x"],
        &["--server", "http://x", "--token-env", "NOT A NAME"],
        &["--policy", "policy.yaml", "--timeout", "0"],
        &["--policy", "policy.yaml", "--project", "missing"],
        &[],
    ] {
        let o = p.init(args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
    }
    assert!(!p.dir.join(".claude").exists());
}

#[test]
fn help_describes_every_flag() {
    let o = Command::new(env!("CARGO_BIN_EXE_rein"))
        .args(["init", "claude-code", "--help"])
        .output()
        .unwrap();
    ok(&o);
    let help = stdout(&o);
    for flag in [
        "--project",
        "--settings",
        "--local",
        "--policy",
        "--db",
        "--server",
        "--token-env",
        "--http",
        "--timeout",
        "--rein-bin",
        "--dry-run",
        "--yes",
    ] {
        let line = help
            .lines()
            .position(|l| l.trim_start().starts_with(flag) || l.contains(&format!(", {flag}")));
        let line = line.unwrap_or_else(|| panic!("{flag} missing:\n{help}"));
        let next = help.lines().nth(line + 1).unwrap_or_default();
        assert!(!next.trim().is_empty(), "{flag} has no help:\n{help}");
    }
}

#[cfg(unix)]
#[test]
fn a_symlinked_settings_file_is_written_through_and_keeps_its_mode() {
    use std::os::unix::fs::PermissionsExt;
    let p = Project::new("link");
    let real = p.dir.join("dotfiles/claude.json");
    fs::create_dir_all(real.parent().unwrap()).unwrap();
    fs::write(&real, "{}\n").unwrap();
    fs::set_permissions(&real, fs::Permissions::from_mode(0o600)).unwrap();
    fs::create_dir(p.dir.join(".claude")).unwrap();
    std::os::unix::fs::symlink("../dotfiles/claude.json", p.settings()).unwrap();
    ok(&p.init(&["--policy", "policy.yaml"]));
    assert!(fs::symlink_metadata(p.settings()).unwrap().file_type().is_symlink());
    assert_eq!(fs::metadata(&real).unwrap().permissions().mode() & 0o777, 0o600);
    rein_handler(&p.read(), "SessionStart");
    assert_eq!(
        fs::read_dir(real.parent().unwrap()).unwrap().count(),
        1,
        "no temporary file left"
    );
}
