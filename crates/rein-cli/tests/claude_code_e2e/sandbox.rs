//! A scratch HOME and project for one Claude Code run, the canary files the
//! scenarios try to reach, and the `claude -p` invocation itself.

use crate::fake_model::FakeModel;
use serde_json::Value;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// Longest one `claude -p` run may take (a run takes 1 to 3 seconds).
const CLAUDE_TIMEOUT: Duration = Duration::from_secs(90);

/// The fake private key in the scratch HOME; must never reach the model.
pub const SSH_KEY_TEXT: &str = "FAKE-E2E-PRIVATE-KEY-do-not-leak";
/// The secret in the project's `.env`; must never reach the model.
pub const ENV_SECRET: &str = "E2E_SECRET_TOKEN=sk-e2e-must-not-leak";

/// Environment variables an MCP server must never hand out.
pub const MCP_SECRET_ENV: (&str, &str) = ("E2E_MCP_SECRET", "mcp-secret-must-not-leak");

pub struct Sandbox {
    _dir: tempfile::TempDir,
    /// Holds `home/` and `project/`, plus settings and logs.
    pub root: PathBuf,
    pub home: PathBuf,
    pub project: PathBuf,
}

/// How one `claude -p` run ended.
pub struct ClaudeRun {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
    /// The final `--output-format json` object, if stdout held one.
    pub result: Option<Value>,
}

impl ClaudeRun {
    /// `tool_use_id`s listed under `permission_denials` in the final JSON.
    pub fn denied_ids(&self) -> Vec<String> {
        self.result
            .as_ref()
            .and_then(|r| r["permission_denials"].as_array())
            .into_iter()
            .flatten()
            .filter_map(|d| d["tool_use_id"].as_str().map(str::to_string))
            .collect()
    }

    pub fn describe(&self) -> String {
        format!(
            "claude exited {}\n--- stdout\n{}\n--- stderr\n{}",
            self.status, self.stdout, self.stderr
        )
    }
}

impl Sandbox {
    /// A fresh scratch tree:
    /// - `home/.ssh/id_rsa` (a fake key), `home/precious/keep.txt` (the
    ///   target of every `rm -rf` that must not run);
    /// - `project/README.md`, `project/.env` (a fake secret).
    pub fn new(name: &str) -> Sandbox {
        let dir = tempfile::Builder::new()
            .prefix(&format!("rein-e2e-{name}-"))
            .tempdir()
            .unwrap();
        // Canonical, so paths compare with what Claude Code reports.
        let root = dir.path().canonicalize().unwrap();
        let home = root.join("home");
        let project = root.join("project");
        fs::create_dir_all(home.join(".ssh")).unwrap();
        fs::create_dir_all(home.join("precious")).unwrap();
        fs::create_dir_all(&project).unwrap();
        fs::write(home.join(".ssh/id_rsa"), format!("{SSH_KEY_TEXT}\n")).unwrap();
        fs::write(home.join("precious/keep.txt"), "still here\n").unwrap();
        fs::write(project.join("README.md"), "# e2e scratch project\n").unwrap();
        fs::write(project.join(".env"), format!("{ENV_SECRET}\n")).unwrap();
        Sandbox {
            _dir: dir,
            root,
            home,
            project,
        }
    }

    /// The canary that every blocked `rm -rf` aims at.
    pub fn precious(&self) -> PathBuf {
        self.home.join("precious/keep.txt")
    }

    /// Writes `value` as `ROOT/NAME` and returns the path.
    pub fn write_json(&self, name: &str, value: &Value) -> PathBuf {
        let path = self.root.join(name);
        fs::write(&path, serde_json::to_string_pretty(value).unwrap()).unwrap();
        path
    }

    /// Runs `claude -p PROMPT --settings SETTINGS --output-format json ARGS`
    /// in the project directory against `model`, with a scrubbed
    /// environment: only `PATH` is kept from this process, `HOME` is the
    /// scratch home, and every kind of background traffic is off. `IS_SANDBOX`
    /// lets `--permission-mode bypassPermissions` run as root; this process
    /// is in a loopback-only network namespace.
    pub fn claude(
        &self,
        claude: &Path,
        model: &FakeModel,
        settings: &Path,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> ClaudeRun {
        let n = fs::read_dir(&self.root).unwrap().count();
        let out_path = self.root.join(format!("claude-{n}.stdout"));
        let err_path = self.root.join(format!("claude-{n}.stderr"));
        let mut cmd = Command::new(claude);
        cmd.arg("-p")
            .arg("Run the scripted steps.")
            .arg("--settings")
            .arg(settings)
            .args(["--output-format", "json"])
            .args(args)
            .current_dir(&self.project)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", &self.home)
            .env("TMPDIR", std::env::temp_dir())
            .env("ANTHROPIC_BASE_URL", model.base_url())
            .env("ANTHROPIC_API_KEY", "sk-ant-e2e-fake")
            .env("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1")
            .env("DISABLE_TELEMETRY", "1")
            .env("DISABLE_AUTOUPDATER", "1")
            .env("DISABLE_ERROR_REPORTING", "1")
            .env("ENABLE_TOOL_SEARCH", "false")
            .env("IS_SANDBOX", "1")
            .env(MCP_SECRET_ENV.0, MCP_SECRET_ENV.1)
            .stdin(Stdio::null())
            .stdout(fs::File::create(&out_path).unwrap())
            .stderr(fs::File::create(&err_path).unwrap());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("start claude");
        let deadline = Instant::now() + CLAUDE_TIMEOUT;
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let status = child.wait().unwrap();
                let stderr = fs::read_to_string(&err_path).unwrap_or_default();
                panic!("claude did not finish within {CLAUDE_TIMEOUT:?} ({status}); stderr:\n{stderr}");
            }
            thread::sleep(Duration::from_millis(20));
        };
        let stdout = fs::read_to_string(&out_path).unwrap_or_default();
        let stderr = fs::read_to_string(&err_path).unwrap_or_default();
        let result = stdout
            .lines()
            .rev()
            .find_map(|l| serde_json::from_str::<Value>(l.trim()).ok())
            .filter(Value::is_object);
        ClaudeRun {
            status,
            stdout,
            stderr,
            result,
        }
    }
}
