//! A scratch HOME, CODEX_HOME and project for one Codex run, the canary
//! files the scenarios try to reach, and the `codex exec` invocation.

use crate::fake_model::FakeModel;
use serde_json::{json, Value};
use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// Longest one `codex exec` run may take (a run takes 1 to 5 seconds).
const CODEX_TIMEOUT: Duration = Duration::from_secs(120);

/// The fake private key in the scratch HOME; must never reach the model.
pub const SSH_KEY_TEXT: &str = "FAKE-E2E-PRIVATE-KEY-do-not-leak";
/// The secret in the project's `.env`; must never reach the model.
pub const ENV_SECRET: &str = "E2E_SECRET_TOKEN=sk-e2e-must-not-leak";
/// Environment variable an MCP server must never hand out.
pub const MCP_SECRET_ENV: (&str, &str) = ("E2E_MCP_SECRET", "mcp-secret-must-not-leak");
/// The environment variable the custom model provider reads its key from.
const PROVIDER_KEY_ENV: &str = "REIN_E2E_FAKE_OPENAI_KEY";

pub struct Sandbox {
    _dir: tempfile::TempDir,
    /// Holds `home/` and `project/`, plus logs.
    pub root: PathBuf,
    pub home: PathBuf,
    /// `$CODEX_HOME` (`home/.codex`): config.toml, hooks.json, sessions.
    pub codex_home: PathBuf,
    pub project: PathBuf,
}

/// How one `codex exec` run ended.
pub struct CodexRun {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
    /// The file `-o` wrote: the model's last message.
    pub last_message: String,
}

impl CodexRun {
    pub fn describe(&self) -> String {
        format!(
            "codex exited {}\n--- stdout\n{}\n--- stderr\n{}",
            self.status, self.stdout, self.stderr
        )
    }
}

impl Sandbox {
    /// A fresh scratch tree:
    /// - `home/.ssh/id_rsa` (a fake key), `home/precious/keep.txt` (the
    ///   target of every `rm -rf` that must not run), `home/.codex/`;
    /// - `project/README.md`, `project/.env` (a fake secret).
    pub fn new(name: &str) -> Sandbox {
        let dir = tempfile::Builder::new()
            .prefix(&format!("rein-codex-e2e-{name}-"))
            .tempdir()
            .unwrap();
        // Canonical, so paths compare with what Codex reports.
        let root = dir.path().canonicalize().unwrap();
        let home = root.join("home");
        let codex_home = home.join(".codex");
        let project = root.join("project");
        for d in [
            home.join(".ssh"),
            home.join("precious"),
            codex_home.clone(),
            project.clone(),
        ] {
            fs::create_dir_all(d).unwrap();
        }
        fs::write(home.join(".ssh/id_rsa"), format!("{SSH_KEY_TEXT}\n")).unwrap();
        fs::write(home.join("precious/keep.txt"), "still here\n").unwrap();
        fs::write(project.join("README.md"), "# e2e scratch project\n").unwrap();
        fs::write(project.join(".env"), format!("{ENV_SECRET}\n")).unwrap();
        Sandbox {
            _dir: dir,
            root,
            home,
            codex_home,
            project,
        }
    }

    /// The canary that every blocked `rm -rf` aims at.
    pub fn precious(&self) -> PathBuf {
        self.home.join("precious/keep.txt")
    }

    /// `$CODEX_HOME/hooks.json` (the user-level hook configuration).
    pub fn user_hooks(&self) -> PathBuf {
        self.codex_home.join("hooks.json")
    }

    /// Writes `$CODEX_HOME/config.toml`: the fake model as a custom
    /// Responses API provider (`gpt-5.5`, a model Codex knows, so that it
    /// offers its full tool set: `apply_patch` among them), nothing that
    /// reaches the network, and `extra` (TOML) after it.
    pub fn write_config(&self, model: &FakeModel, extra: &str) {
        let config = format!(
            r#"model = "gpt-5.5"
model_provider = "rein_e2e"
check_for_update_on_startup = false

[model_providers.rein_e2e]
name = "Rein e2e fake model"
base_url = "{base_url}"
wire_api = "responses"
env_key = "{PROVIDER_KEY_ENV}"
request_max_retries = 0
stream_max_retries = 0

[analytics]
enabled = false

{extra}
"#,
            base_url = model.base_url()
        );
        fs::write(self.codex_home.join("config.toml"), config).unwrap();
    }

    /// `[mcp_servers.everything]`: the MCP reference server over stdio.
    pub fn mcp_config(mcp_everything: &Path) -> String {
        format!(
            "[mcp_servers.everything]\ncommand = \"node\"\nargs = [{:?}, \"stdio\"]\n",
            mcp_everything.display().to_string()
        )
    }

    /// Runs `codex exec PROMPT` in the project directory with a scrubbed
    /// environment: only `PATH` is kept from this process, `HOME` and
    /// `CODEX_HOME` are the scratch ones. Codex's own sandbox is off
    /// (`danger-full-access`; `exec` never asks for approval), so every
    /// refusal the model sees is a hook's; this process is in a
    /// loopback-only network namespace. `args` go before the prompt.
    pub fn codex(&self, codex: &Path, args: &[&str], env: &[(&str, &str)]) -> CodexRun {
        let n = fs::read_dir(&self.root).unwrap().count();
        let out_path = self.root.join(format!("codex-{n}.stdout"));
        let err_path = self.root.join(format!("codex-{n}.stderr"));
        let last_path = self.root.join(format!("codex-{n}.last"));
        let mut cmd = Command::new(codex);
        cmd.arg("exec")
            .args([
                "--skip-git-repo-check",
                "--sandbox",
                "danger-full-access",
                "--color",
                "never",
            ])
            .arg("-o")
            .arg(&last_path)
            .args(args)
            .arg("Run the scripted steps.")
            .current_dir(&self.project)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", &self.home)
            .env("CODEX_HOME", &self.codex_home)
            .env("TMPDIR", std::env::temp_dir())
            .env(PROVIDER_KEY_ENV, "sk-e2e-fake")
            .env(MCP_SECRET_ENV.0, MCP_SECRET_ENV.1)
            .stdin(Stdio::null())
            .stdout(fs::File::create(&out_path).unwrap())
            .stderr(fs::File::create(&err_path).unwrap());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("start codex");
        let deadline = Instant::now() + CODEX_TIMEOUT;
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let status = child.wait().unwrap();
                let stderr = fs::read_to_string(&err_path).unwrap_or_default();
                panic!("codex did not finish within {CODEX_TIMEOUT:?} ({status}); stderr:\n{stderr}");
            }
            thread::sleep(Duration::from_millis(20));
        };
        CodexRun {
            status,
            stdout: fs::read_to_string(&out_path).unwrap_or_default(),
            stderr: fs::read_to_string(&err_path).unwrap_or_default(),
            last_message: fs::read_to_string(&last_path).unwrap_or_default(),
        }
    }
}

impl Sandbox {
    /// The trust status Codex's own `hooks/list` gives each hook whose
    /// command holds `needle` (checked apart from what `rein init` says).
    pub fn hook_trust(&self, codex: &Path, needle: &str) -> Vec<String> {
        self.list_hooks(codex)
            .iter()
            .filter(|h| h["command"].as_str().is_some_and(|c| c.contains(needle)))
            .map(|h| h["trustStatus"].as_str().unwrap_or("?").to_owned())
            .collect()
    }

    /// The hooks Codex sees for the project (`codex app-server`: initialize,
    /// then `hooks/list`).
    fn list_hooks(&self, codex: &Path) -> Vec<Value> {
        let mut child = Command::new(codex)
            .arg("app-server")
            .current_dir(&self.project)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", &self.home)
            .env("CODEX_HOME", &self.codex_home)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start codex app-server");
        let mut stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel::<Value>();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Ok(v) = serde_json::from_str::<Value>(&line) {
                    if tx.send(v).is_err() {
                        break;
                    }
                }
            }
        });
        let answer = |stdin: &mut std::process::ChildStdin, id: u64, method: &str, params: Value| -> Value {
            let request = json!({"id": id, "method": method, "params": params});
            writeln!(stdin, "{request}").unwrap();
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                let left = deadline.saturating_duration_since(Instant::now());
                let msg = rx
                    .recv_timeout(left)
                    .unwrap_or_else(|_| panic!("codex app-server: no answer to {method}"));
                if msg["id"] == id {
                    assert!(msg.get("error").is_none(), "codex app-server {method}: {msg}");
                    return msg["result"].clone();
                }
            }
        };
        answer(
            &mut stdin,
            1,
            "initialize",
            json!({"clientInfo": {"name": "rein-codex-e2e", "version": "0"}}),
        );
        writeln!(stdin, "{}", json!({"method": "initialized"})).unwrap();
        let listed = answer(&mut stdin, 2, "hooks/list", json!({"cwds": [self.project]}));
        let _ = child.kill();
        let _ = child.wait();
        listed["data"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|d| d["hooks"].as_array().cloned().unwrap_or_default())
            .collect()
    }
}
