//! `rein init codex` end to end: the real binary writing Codex CLI
//! `hooks.json` files in temporary projects (what Codex itself makes of the
//! written file is proven in crates/rein-cli/tests/codex_e2e), and asking
//! Codex whether it runs them: the real Codex where it is installed
//! (`bash .ci/codex`), stand-in `codex` scripts only for a Codex that is
//! missing, silent or answers garbage.

// Helpers outside `#[test]` functions panic on failure too; that is the report.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::{json, Value};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

const POLICY: &str = include_str!("../../../examples/refund/policy.yaml");

/// A rein path that is never run here.
const BIN: &str = "/opt/rein/bin/rein";

const EVENTS: [&str; 5] = [
    "PreToolUse",
    "PermissionRequest",
    "PostToolUse",
    "UserPromptSubmit",
    "SessionStart",
];

/// A temporary project holding `policy.yaml`, a CODEX_HOME beside it, and
/// `bin`, the only folder on rein's PATH (no `codex` unless a test puts one).
struct Project {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    codex_home: PathBuf,
    bin: PathBuf,
}

impl Project {
    fn new() -> Project {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("project");
        let codex_home = tmp.path().join("codex-home");
        let bin = tmp.path().join("bin");
        fs::create_dir_all(&dir).unwrap();
        fs::create_dir_all(&bin).unwrap();
        fs::write(dir.join("policy.yaml"), POLICY).unwrap();
        Project {
            _tmp: tmp,
            dir,
            codex_home,
            bin,
        }
    }

    fn hooks(&self) -> PathBuf {
        self.dir.join(".codex/hooks.json")
    }

    /// Runs `rein init codex ARGS` in the project folder.
    fn init(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_rein"))
            .args(["init", "codex"])
            .args(args)
            .current_dir(&self.dir)
            .env("NO_COLOR", "1")
            .env("CODEX_HOME", &self.codex_home)
            .env("HOME", self.codex_home.parent().unwrap())
            .env("PATH", &self.bin)
            .output()
            .unwrap()
    }

    /// Puts a stand-in `codex` on rein's PATH: a shell script with `body`.
    fn fake_codex(&self, body: &str) {
        use std::os::unix::fs::PermissionsExt;
        let path = self.bin.join("codex");
        fs::write(&path, format!("#!/bin/sh\nPATH=/usr/bin:/bin\n{body}\n")).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
    }

    fn config(&self) -> PathBuf {
        self.codex_home.join("config.toml")
    }

    fn read(&self, path: &Path) -> Value {
        serde_json::from_str(&fs::read_to_string(path).unwrap()).unwrap()
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

/// The Rein handlers of `event` (a `rein hook codex` command).
fn rein_handlers(hooks: &Value, event: &str) -> Vec<Value> {
    hooks["hooks"][event]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|g| g["hooks"].as_array().cloned().unwrap_or_default())
        .filter(|h| h["command"].as_str().is_some_and(|c| c.contains(" hook codex")))
        .collect()
}

/// The words a POSIX shell makes of the part of `command` before the first
/// `;` (the `rein hook codex` invocation), by letting `sh` print them.
fn invocation_words(command: &str) -> Vec<String> {
    let head = command.split("; code=$?").next().unwrap();
    let o = Command::new("sh")
        .arg("-c")
        .arg(format!("printf '%s\\n' {head}"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    stdout(&o).lines().map(str::to_owned).collect()
}

#[test]
fn a_fresh_project_gets_every_hook_with_codex_units_and_a_fail_closed_command() {
    let p = Project::new();
    let o = p.init(&["--policy", "policy.yaml", "--db", "rein.db", "--rein-bin", BIN]);
    ok(&o);
    assert!(
        stdout(&o).starts_with("--- /dev/null\n+++ ./.codex/hooks.json\n"),
        "{}",
        stdout(&o)
    );
    assert!(stderr(&o).contains("wrote ./.codex/hooks.json"), "{}", stderr(&o));
    // The user is told what Codex needs before it runs the hook at all.
    assert!(stderr(&o).contains("/hooks"), "{}", stderr(&o));
    assert!(stderr(&o).contains("project is trusted"), "{}", stderr(&o));
    let hooks = p.read(&p.hooks());
    // Sorted: whether serde_json keeps the file's order depends on the
    // features the workspace build unifies.
    let mut events: Vec<&String> = hooks["hooks"].as_object().unwrap().keys().collect();
    events.sort();
    let mut want = EVENTS;
    want.sort();
    assert_eq!(events, want);
    // The file itself lists them in the order written.
    let text = fs::read_to_string(p.hooks()).unwrap();
    let at: Vec<usize> = EVENTS.iter().map(|e| text.find(&format!("\"{e}\"")).unwrap()).collect();
    assert!(at.windows(2).all(|w| w[0] < w[1]), "{text}");
    let dir = p.dir.to_str().unwrap();
    for event in EVENTS {
        let group = &hooks["hooks"][event][0];
        let tool_event = matches!(event, "PreToolUse" | "PermissionRequest" | "PostToolUse");
        assert_eq!(group.get("matcher").is_some(), tool_event, "{event}");
        let handlers = rein_handlers(&hooks, event);
        assert_eq!(handlers.len(), 1, "{event}");
        let h = &handlers[0];
        assert_eq!(h["type"], "command");
        // Codex's timeout is in seconds; the hook's own is below it.
        assert_eq!(h["timeout"], 30);
        let command = h["command"].as_str().unwrap();
        assert_eq!(
            invocation_words(command),
            [
                BIN,
                "hook",
                "codex",
                "--policy",
                &format!("{dir}/policy.yaml"),
                "--db",
                &format!("{dir}/rein.db"),
                "--protect",
                &format!("{dir}/.codex/hooks.json"),
                "--protect",
                &format!("{}/config.toml", p.codex_home.display()),
                "--timeout",
                "24",
            ]
            .map(str::to_owned),
            "{command}"
        );
        assert!(command.ends_with("exit 2; fi; exit $code"), "{command}");
    }
}

/// The written command, run by a shell as Codex runs it: rein's answer and
/// its own exit 2 pass through; anything else (rein missing, a crash)
/// becomes exit 2 with a reason on stderr, which Codex takes as a refusal.
#[test]
fn the_written_command_turns_every_other_failure_into_a_refusal() {
    let p = Project::new();
    let tmp = tempfile::tempdir().unwrap();
    let fake = tmp.path().join("rein");
    ok(&p.init(&["--policy", "policy.yaml", "--rein-bin", fake.to_str().unwrap(), "-y"]));
    let command = rein_handlers(&p.read(&p.hooks()), "PreToolUse")[0]["command"]
        .as_str()
        .unwrap()
        .to_owned();
    let run = |script: Option<&str>| {
        match script {
            Some(s) => {
                fs::write(&fake, format!("#!/bin/sh\n{s}\n")).unwrap();
                Command::new("chmod").arg("755").arg(&fake).status().unwrap();
            }
            None => {
                let _ = fs::remove_file(&fake);
            }
        }
        Command::new("sh").arg("-c").arg(&command).output().unwrap()
    };
    let answered = run(Some("echo '{\"ok\":1}'; exit 0"));
    assert_eq!(
        (answered.status.code(), stdout(&answered).trim()),
        (Some(0), "{\"ok\":1}")
    );
    let refused = run(Some("echo 'Rein: unreadable' >&2; exit 2"));
    assert_eq!(refused.status.code(), Some(2));
    assert!(stderr(&refused).contains("Rein: unreadable"));
    for crash in [Some("exit 1"), Some("exit 101"), Some("kill -9 $$"), None] {
        let o = run(crash);
        assert_eq!(o.status.code(), Some(2), "{crash:?}");
        assert!(
            stderr(&o).contains("Rein: the hook did not answer"),
            "{crash:?}: {}",
            stderr(&o)
        );
    }
}

#[test]
fn a_second_run_changes_nothing_and_undo_takes_only_reins_hooks_out() {
    let p = Project::new();
    fs::create_dir_all(p.dir.join(".codex")).unwrap();
    let mine = json!({"type": "command", "command": "/usr/bin/my-linter", "timeout": 5});
    fs::write(
        p.hooks(),
        serde_json::to_string_pretty(&json!({
            "hooks": {"PreToolUse": [{"matcher": "Bash", "hooks": [mine]}],
                      "Stop": [{"hooks": [{"type": "command", "command": "notify-send done"}]}]},
            "x-note": "kept"
        }))
        .unwrap(),
    )
    .unwrap();
    let original = fs::read_to_string(p.hooks()).unwrap();
    let args = ["--policy", "policy.yaml", "--rein-bin", BIN, "-y"];
    ok(&p.init(&args));
    let first = fs::read_to_string(p.hooks()).unwrap();
    let hooks = p.read(&p.hooks());
    assert_eq!(hooks["x-note"], "kept");
    assert_eq!(hooks["hooks"]["PreToolUse"][0]["hooks"][0], mine);
    assert_eq!(hooks["hooks"]["Stop"][0]["hooks"][0]["command"], "notify-send done");
    for event in EVENTS {
        assert_eq!(rein_handlers(&hooks, event).len(), 1, "{event}");
    }
    let again = p.init(&args);
    ok(&again);
    assert!(stderr(&again).contains("already up to date"), "{}", stderr(&again));
    assert_eq!(stdout(&again), "");
    assert_eq!(fs::read_to_string(p.hooks()).unwrap(), first);
    // Other arguments: Rein's handlers are replaced where they were.
    ok(&p.init(&["--policy", "policy.yaml", "--rein-bin", BIN, "--timeout", "10", "-y"]));
    let hooks = p.read(&p.hooks());
    for event in EVENTS {
        let ours = rein_handlers(&hooks, event);
        assert_eq!(ours.len(), 1, "{event}");
        assert_eq!(ours[0]["timeout"], 10);
        assert!(ours[0]["command"].as_str().unwrap().contains("--timeout 8;"));
    }
    assert_eq!(hooks["hooks"]["PreToolUse"][0]["hooks"][0], mine);
    let undo = p.init(&["--undo", "--rein-bin", BIN, "-y"]);
    ok(&undo);
    let after = p.read(&p.hooks());
    for event in EVENTS {
        assert!(rein_handlers(&after, event).is_empty(), "{event}");
    }
    assert_eq!(after, serde_json::from_str::<Value>(&original).unwrap());
    let again = p.init(&["--undo", "--rein-bin", BIN, "-y"]);
    ok(&again);
    assert!(
        stderr(&again).contains("no Rein hooks to take out"),
        "{}",
        stderr(&again)
    );
}

#[test]
fn user_level_goes_to_codex_home_and_server_mode_names_no_token() {
    let p = Project::new();
    let o = p.init(&[
        "--user",
        "--server",
        "http://127.0.0.1:8700/",
        "--token-env",
        "MY_REIN_TOKEN",
        "--rein-bin",
        BIN,
        "-y",
    ]);
    ok(&o);
    assert!(!stderr(&o).contains("project is trusted"), "{}", stderr(&o));
    let file = p.codex_home.join("hooks.json");
    let hooks = p.read(&file);
    let command = rein_handlers(&hooks, "PreToolUse")[0]["command"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        invocation_words(&command),
        [
            BIN,
            "hook",
            "codex",
            "--server",
            "http://127.0.0.1:8700",
            "--token-env",
            "MY_REIN_TOKEN",
            "--protect",
            file.to_str().unwrap(),
            "--protect",
            p.codex_home.join("config.toml").to_str().unwrap(),
            "--timeout",
            "24",
        ]
        .map(str::to_owned)
    );
    assert!(!p.hooks().exists());

    // The default variable, REIN_TOKEN, is the one `rein hook` reads by
    // itself; naming it with --token-env as well is a usage error there
    // whenever it is set.
    ok(&p.init(&["--user", "--server", "http://127.0.0.1:8700", "--rein-bin", BIN, "-y"]));
    let command = rein_handlers(&p.read(&file), "PreToolUse")[0]["command"]
        .as_str()
        .unwrap()
        .to_owned();
    let words = invocation_words(&command);
    assert!(!words.iter().any(|w| w == "--token-env"), "{command}");
    assert_eq!(&words[3..5], ["--server", "http://127.0.0.1:8700"]);
}

#[test]
fn dry_run_prints_the_diff_and_writes_nothing() {
    let p = Project::new();
    let o = p.init(&["--policy", "policy.yaml", "--rein-bin", BIN, "--dry-run"]);
    ok(&o);
    assert!(stdout(&o).contains("+        \"matcher\": \"*\""), "{}", stdout(&o));
    assert!(!p.hooks().exists());
}

#[test]
fn bad_input_is_refused_and_nothing_is_written() {
    let p = Project::new();
    // A policy that does not load.
    fs::write(p.dir.join("broken.yaml"), "version: 1\nrules: [\n").unwrap();
    let o = p.init(&["--policy", "broken.yaml", "--rein-bin", BIN, "-y"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(!p.hooks().exists());
    // Neither a policy nor a server.
    let o = p.init(&["--rein-bin", BIN, "-y"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("--policy"), "{}", stderr(&o));
    // Codex's timeout is in whole seconds, and leaves the hook one second.
    for timeout in ["0", "1", "3601", "1.5"] {
        let o = p.init(&["--policy", "policy.yaml", "--rein-bin", BIN, "--timeout", timeout, "-y"]);
        assert_eq!(o.status.code(), Some(2), "{timeout}: {}", stderr(&o));
    }
    assert!(!p.hooks().exists());
    // A file that is not JSON, or whose hooks have the wrong shape: kept.
    fs::create_dir_all(p.dir.join(".codex")).unwrap();
    for text in ["{not json", "[]", r#"{"hooks": {"PreToolUse": {"matcher": "*"}}}"#] {
        fs::write(p.hooks(), text).unwrap();
        let o = p.init(&["--policy", "policy.yaml", "--rein-bin", BIN, "-y"]);
        assert_eq!(o.status.code(), Some(2), "{text}: {}", stderr(&o));
        assert!(stderr(&o).contains("left unchanged"), "{text}: {}", stderr(&o));
        assert_eq!(fs::read_to_string(p.hooks()).unwrap(), text);
    }
    // A server that is not an http(s) URL, a token variable that is not a name.
    for args in [
        ["--server", "ftp://x", "--token-env", "T"],
        ["--server", "http://127.0.0.1:1", "--token-env", "A B"],
    ] {
        let o = p.init(&[&args[..], &["--user", "--rein-bin", BIN, "-y"]].concat());
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
    }
    assert!(!p.codex_home.join("hooks.json").exists());
}

/// What rein says about each hook when it cannot ask Codex: one warning
/// line per event, never that a hook runs.
fn assert_not_checked(o: &Output, why: &str) {
    let err = stderr(o);
    for event in EVENTS {
        assert!(
            err.lines().any(|l| l.starts_with("rein: WARNING: could not check")
                && l.contains(&format!(" {event} hook: "))
                && l.contains(why)),
            "{event}, {why}:\n{err}"
        );
    }
    assert!(!err.lines().any(|l| l.starts_with("rein: Codex runs")), "{err}");
}

#[test]
fn without_codex_init_says_it_could_not_check_and_trust_is_refused() {
    let p = Project::new();
    let o = p.init(&["--policy", "policy.yaml", "--rein-bin", BIN, "-y"]);
    ok(&o);
    assert!(p.hooks().is_file());
    assert_not_checked(&o, "Codex is not installed");
    // A --codex-bin that is not there.
    let o = p.init(&[
        "--policy",
        "policy.yaml",
        "--rein-bin",
        BIN,
        "--codex-bin",
        "/nonexistent/codex",
        "-y",
    ]);
    ok(&o);
    assert_not_checked(&o, "/nonexistent/codex not found");
    // --trust cannot write what Codex did not compute: an error, config.toml untouched.
    fs::create_dir_all(&p.codex_home).unwrap();
    fs::write(p.config(), "# mine\n").unwrap();
    let o = p.init(&["--policy", "policy.yaml", "--rein-bin", BIN, "--trust", "-y"]);
    assert_ne!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stderr(&o).contains("cannot trust the hooks"), "{}", stderr(&o));
    assert_eq!(fs::read_to_string(p.config()).unwrap(), "# mine\n");
}

#[test]
fn a_codex_that_does_not_answer_is_given_up_on_in_bounded_time() {
    let p = Project::new();
    // Reads nothing, says nothing.
    p.fake_codex("exec sleep 60");
    let started = Instant::now();
    let o = p.init(&["--policy", "policy.yaml", "--rein-bin", BIN, "--codex-wait", "1", "-y"]);
    let took = started.elapsed();
    ok(&o);
    assert_not_checked(&o, "did not answer initialize within 1 s");
    assert!(took < Duration::from_secs(10), "took {took:?}");
    // Answers initialize, then never hooks/list.
    p.fake_codex(r#"read line; echo '{"id":1,"result":{}}'; exec sleep 60"#);
    let o = p.init(&["--policy", "policy.yaml", "--rein-bin", BIN, "--codex-wait", "1", "-y"]);
    ok(&o);
    assert_not_checked(&o, "did not answer hooks/list within 1 s");
    let o = p.init(&[
        "--policy",
        "policy.yaml",
        "--rein-bin",
        BIN,
        "--codex-wait",
        "1",
        "--trust",
        "-y",
    ]);
    assert_ne!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(!p.config().exists());
    // Floods notifications (or garbage) and never answers: still bounded.
    for flood in [r#"exec yes '{"method":"flood"}'"#, "exec yes garbage"] {
        p.fake_codex(flood);
        let started = Instant::now();
        let o = p.init(&["--policy", "policy.yaml", "--rein-bin", BIN, "--codex-wait", "2", "-y"]);
        let took = started.elapsed();
        ok(&o);
        assert_not_checked(&o, "initialize");
        assert!(took < Duration::from_secs(15), "{flood}: took {took:?}");
    }
}

#[test]
fn a_codex_that_answers_garbage_is_not_believed() {
    let p = Project::new();
    let answer_then =
        |list: &str| format!("read a; echo '{{\"id\":1,\"result\":{{}}}}'; read b; read c; echo '{list}'");
    for (body, why) in [
        (
            "read a; echo 'not json at all'".to_owned(),
            "ended without answering initialize",
        ),
        ("read a; exit 3".to_owned(), "ended without answering initialize"),
        (
            r#"read a; echo '{"id":1,"error":{"code":-32600,"message":"no"}}'"#.to_owned(),
            "refused initialize",
        ),
        (answer_then(r#"{"id":2,"result":{"data":"x"}}"#), "does not understand"),
        (
            answer_then(r#"{"id":2,"result":{"data":[{"hooks":[{"key":"k"}]}]}}"#),
            "does not understand",
        ),
        (answer_then(r#"{"id":2}"#), "without a result"),
    ] {
        p.fake_codex(&body);
        let o = p.init(&["--policy", "policy.yaml", "--rein-bin", BIN, "--codex-wait", "5", "-y"]);
        ok(&o);
        assert_not_checked(&o, why);
    }
    // A list that names other hooks, or Rein's with another command, says
    // Rein's are not loaded: never that they run.
    p.fake_codex(&answer_then(
        r#"{"id":2,"result":{"data":[{"cwd":"/","hooks":[{"key":"k","eventName":"preToolUse","command":"rein hook codex","sourcePath":"/elsewhere/hooks.json","currentHash":"sha256:00","trustStatus":"trusted","enabled":true,"timeoutSec":30,"matcher":"*"}]}]}}"#,
    ));
    let o = p.init(&["--policy", "policy.yaml", "--rein-bin", BIN, "--codex-wait", "5", "-y"]);
    ok(&o);
    for event in EVENTS {
        assert!(
            stderr(&o).contains(&format!(
                "rein: WARNING: Codex SKIPS Rein's {event} hook: Codex does not load it"
            )),
            "{}",
            stderr(&o)
        );
    }
    assert!(
        !stderr(&o).lines().any(|l| l.starts_with("rein: Codex runs")),
        "{}",
        stderr(&o)
    );
}

/// The Codex `bash .ci/codex` installs, or None (with a SKIPPED note;
/// a failure under `CI=true`).
fn real_codex() -> Option<PathBuf> {
    let prefix = std::env::var_os("REIN_CODEX_TOOLS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.tools/codex-e2e"));
    let codex = prefix.join("node_modules/@openai/codex/vendor/x86_64-unknown-linux-musl/bin/codex");
    if codex.is_file() {
        return Some(codex);
    }
    let under_ci = std::env::var("CI").is_ok_and(|v| v == "true");
    assert!(
        !under_ci,
        "{} missing under CI=true (run `bash .ci/codex`)",
        codex.display()
    );
    eprintln!("SKIPPED: {} missing (run `bash .ci/codex`)", codex.display());
    None
}

#[test]
fn the_real_codex_reports_untrusted_then_trust_writes_its_hashes_and_undo_takes_them_out() {
    let Some(codex) = real_codex() else { return };
    let p = Project::new();
    let codex = codex.display().to_string();
    let user = [
        "--user",
        "--policy",
        "policy.yaml",
        "--rein-bin",
        BIN,
        "--codex-bin",
        &codex,
        "-y",
    ];
    fs::create_dir_all(&p.codex_home).unwrap();
    let mine = "# my Codex settings\nmodel = \"o3\"  # keep this\n\n[features]\nhooks = true\n";
    fs::write(p.config(), mine).unwrap();

    let o = p.init(&user);
    ok(&o);
    for event in EVENTS {
        assert!(
            stderr(&o).contains(&format!(
                "rein: WARNING: Codex SKIPS Rein's {event} hook: Codex reports it `untrusted`"
            )),
            "{}",
            stderr(&o)
        );
    }
    assert_eq!(fs::read_to_string(p.config()).unwrap(), mine);

    // A config.toml that does not parse is refused and left as it is.
    fs::write(p.config(), "[features\n").unwrap();
    let o = p.init(&[&user[..], &["--trust"]].concat());
    assert_ne!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stderr(&o).contains("not valid TOML"), "{}", stderr(&o));
    assert_eq!(fs::read_to_string(p.config()).unwrap(), "[features\n");
    fs::write(p.config(), mine).unwrap();

    // A dry run shows the trust it would write and writes nothing.
    let o = p.init(&[&user[..], &["--trust", "--dry-run"]].concat());
    ok(&o);
    assert!(stdout(&o).contains("+trusted_hash = \"sha256:"), "{}", stdout(&o));
    assert_eq!(fs::read_to_string(p.config()).unwrap(), mine);

    let o = p.init(&[&user[..], &["--trust"]].concat());
    ok(&o);
    for event in EVENTS {
        assert!(
            stderr(&o).contains(&format!("rein: Codex runs Rein's {event} hook (trusted)")),
            "{}",
            stderr(&o)
        );
    }
    let trusted = fs::read_to_string(p.config()).unwrap();
    assert!(
        trusted.starts_with(mine),
        "the user's settings were not kept:\n{trusted}"
    );
    assert_eq!(trusted.matches("trusted_hash = \"sha256:").count(), 5, "{trusted}");
    assert!(stdout(&o).contains("+trusted_hash"), "no diff shown: {}", stdout(&o));

    // Again: nothing to do.
    let o = p.init(&[&user[..], &["--trust"]].concat());
    ok(&o);
    assert!(!stdout(&o).contains("trusted_hash"), "{}", stdout(&o));
    assert_eq!(fs::read_to_string(p.config()).unwrap(), trusted);

    // A changed hook (another timeout) is untrusted again until --trust.
    let o = p.init(&[&user[..], &["--timeout", "10"]].concat());
    ok(&o);
    assert!(
        stderr(&o).contains("Codex SKIPS Rein's PreToolUse hook"),
        "{}",
        stderr(&o)
    );

    // Undo takes the hooks and the trust entries out; the rest stays.
    let o = p.init(&["--user", "--undo", "--rein-bin", BIN, "-y"]);
    ok(&o);
    assert_eq!(fs::read_to_string(p.config()).unwrap(), mine);
}

#[test]
fn the_real_codex_skips_a_project_it_does_not_trust_and_trust_needs_the_project_trusted() {
    let Some(codex) = real_codex() else { return };
    let p = Project::new();
    let codex = codex.display().to_string();
    let project = [
        "--policy",
        "policy.yaml",
        "--rein-bin",
        BIN,
        "--codex-bin",
        &codex,
        "-y",
    ];
    fs::create_dir_all(&p.codex_home).unwrap();
    fs::write(p.config(), "").unwrap();

    // An untrusted project: Codex does not load its .codex/ at all.
    let o = p.init(&project);
    ok(&o);
    for event in EVENTS {
        assert!(
            stderr(&o).contains(&format!(
                "rein: WARNING: Codex SKIPS Rein's {event} hook: Codex does not load it"
            )),
            "{}",
            stderr(&o)
        );
    }
    assert!(
        stderr(&o).contains("only once the project is trusted"),
        "{}",
        stderr(&o)
    );
    let o = p.init(&[&project[..], &["--trust"]].concat());
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert_eq!(fs::read_to_string(p.config()).unwrap(), "");

    // Trusted by the user: --trust trusts Rein's hooks, and only them.
    let dir = fs::canonicalize(&p.dir).unwrap();
    let trusted_project = format!(
        "[projects.{:?}]\ntrust_level = \"trusted\"\n",
        dir.display().to_string()
    );
    fs::write(p.config(), &trusted_project).unwrap();
    let mut hooks = p.read(&p.hooks());
    hooks["hooks"]["Stop"] = json!([{"hooks": [{"type": "command", "command": "echo user hook"}]}]);
    fs::write(p.hooks(), hooks.to_string()).unwrap();
    let o = p.init(&[&project[..], &["--trust"]].concat());
    ok(&o);
    for event in EVENTS {
        assert!(
            stderr(&o).contains(&format!("rein: Codex runs Rein's {event} hook (trusted)")),
            "{}",
            stderr(&o)
        );
    }
    let config = fs::read_to_string(p.config()).unwrap();
    assert_eq!(config.matches("trusted_hash").count(), 5, "{config}");
    assert!(
        !config.contains(":stop:"),
        "the user's own hook was trusted too:\n{config}"
    );

    let o = p.init(&["--undo", "--rein-bin", BIN, "-y"]);
    ok(&o);
    assert_eq!(fs::read_to_string(p.config()).unwrap(), trusted_project);
    assert!(p.read(&p.hooks())["hooks"]["Stop"].is_array());
}
