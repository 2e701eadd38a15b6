//! End to end with the real Claude Code binary, offline.
//!
//! `claude_code_e2e` finds the pinned Claude Code that `.ci/claude-code`
//! installs (in `.tools/e2e/`, or `$REIN_E2E_TOOLS`), then runs this same
//! test binary again inside a new network namespace that has only loopback
//! (`unshare --net`, `ip link set lo up`), where the `netns_*` tests run:
//! each starts a scripted fake model API on 127.0.0.1, a scratch HOME and
//! project, and `claude -p` with a `--settings` file that installs the hook
//! under test. The fake model makes one tool call per turn; the tests assert
//! the `tool_result` text Claude Code sent back (what the model was told)
//! and the effects on disk.
//!
//! Missing Claude Code (or no way to make a network namespace): the test
//! says SKIPPED on stderr and passes, except under `CI=true`, where it fails.
//! The `netns_*` tests are `#[ignore]`d: run on their own, outside the
//! namespace, they do nothing.

// Helpers outside `#[test]` functions panic on failure too; that is the report.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod fake_model;
mod http;
#[path = "../agent_e2e/namespace.rs"]
mod namespace;
mod rein_hook;
mod rein_mcp;
#[path = "../agent_e2e/rein_serve.rs"]
mod rein_serve;
mod rein_subagent;
mod sandbox;

use fake_model::{tool_use_id, FakeModel, ToolCall, ToolResult, FINAL_TEXT};
use http::{HttpServer, Request, Response};
use namespace::Suite;
use sandbox::{ClaudeRun, Sandbox};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The namespace the `netns_*` tests run in, and what its messages name.
const SUITE: Suite = Suite {
    name: "claude_code_e2e",
    program: "Claude Code",
    netns_env: "REIN_E2E_NETNS",
    timeout: Duration::from_secs(240),
};
/// The Claude Code binary, for the re-run.
const CLAUDE_ENV: &str = "REIN_E2E_CLAUDE";
/// The MCP reference server's entry script, for the re-run.
const MCP_ENV: &str = "REIN_E2E_MCP_EVERYTHING";
/// How Claude Code 2.1.331 prefixes a PreToolUse hook's JSON deny reason in
/// the `tool_result` the model reads.
const HOOK_DENY_PREFIX: &str = "PreToolUse:";
/// In every refusal Rein words (its deny reason).
const REIN_REASON_MARK: &str = "Rein";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/claude_code_e2e/fixtures")
        .join(name)
}

// ---- outside the namespace ------------------------------------------------

struct Tools {
    claude: PathBuf,
    mcp_everything: PathBuf,
}

/// Where `.ci/claude-code` put the pinned programs, or why they are not usable.
fn find_tools() -> Result<Tools, String> {
    let prefix = match std::env::var_os("REIN_E2E_TOOLS") {
        Some(p) => repo().join(p),
        None => repo().join(".tools/e2e"),
    };
    let claude = prefix.join("node_modules/@anthropic-ai/claude-code-linux-x64/claude");
    let mcp_everything = prefix.join("node_modules/@modelcontextprotocol/server-everything/dist/index.js");
    if !claude.is_file() {
        return Err(format!("no Claude Code at {}: run .ci/claude-code", claude.display()));
    }
    if !mcp_everything.is_file() {
        return Err(format!(
            "no MCP server at {}: run .ci/claude-code",
            mcp_everything.display()
        ));
    }
    let node = Command::new("node").arg("--version").output();
    if !node.is_ok_and(|o| o.status.success()) {
        return Err("no `node` on PATH (the MCP reference server needs it)".into());
    }
    Ok(Tools { claude, mcp_everything })
}

#[test]
fn claude_code_e2e() {
    if SUITE.is_rerun() {
        return;
    }
    let tools = match find_tools() {
        Ok(tools) => tools,
        Err(why) => return SUITE.unavailable(&why),
    };
    SUITE.run_in_namespace(&[
        (CLAUDE_ENV, tools.claude.as_os_str()),
        (MCP_ENV, tools.mcp_everything.as_os_str()),
    ]);
}

// ---- inside the namespace ---------------------------------------------------

struct Env {
    claude: PathBuf,
    mcp_everything: PathBuf,
}

/// `Some` only in the re-run inside the loopback-only namespace, which it
/// checks first.
fn netns() -> Option<Env> {
    SUITE.inside().then(|| Env {
        claude: std::env::var_os(CLAUDE_ENV).unwrap().into(),
        mcp_everything: std::env::var_os(MCP_ENV).unwrap().into(),
    })
}

/// Collects failed expectations, so one run reports all of them.
struct Checks {
    name: &'static str,
    failures: Vec<String>,
}

impl Checks {
    fn new(name: &'static str) -> Checks {
        Checks {
            name,
            failures: Vec::new(),
        }
    }

    fn check(&mut self, ok: bool, what: impl Into<String>) {
        if !ok {
            self.failures.push(what.into());
        }
    }

    /// The `i`-th scripted call ran, and its output contains `needle`.
    fn ran(&mut self, results: &BTreeMap<String, ToolResult>, i: usize, needle: &str) {
        match results.get(&tool_use_id(i)) {
            None => self.failures.push(format!("call {i}: Claude Code sent no tool_result")),
            Some(r) => self.check(
                !r.is_error && r.text.contains(needle),
                format!("call {i}: expected success containing {needle:?}, got {r:?}"),
            ),
        }
    }

    /// The `i`-th scripted call was refused with a text containing `needle`.
    fn refused(&mut self, results: &BTreeMap<String, ToolResult>, i: usize, needle: &str) {
        match results.get(&tool_use_id(i)) {
            None => self.failures.push(format!("call {i}: Claude Code sent no tool_result")),
            Some(r) => self.check(
                r.is_error && r.text.contains(needle),
                format!("call {i}: expected a refusal containing {needle:?}, got {r:?}"),
            ),
        }
    }

    /// The `i`-th call's text does not hold `secret`.
    fn not_told(&mut self, results: &BTreeMap<String, ToolResult>, i: usize, secret: &str) {
        if let Some(r) = results.get(&tool_use_id(i)) {
            self.check(
                !r.text.contains(secret),
                format!("call {i}: the model was told {secret:?}"),
            );
        }
    }

    /// The `i`-th call was refused by a hook's JSON deny carrying Rein's
    /// reason: not by Claude Code because the hook failed (`onFailure`), nor
    /// by a hook's exit 2 (whose stderr Claude Code shows after the command
    /// in brackets), nor by Claude Code's own permission checks.
    fn reason_is_reins(&mut self, results: &BTreeMap<String, ToolResult>, i: usize) {
        let Some(r) = results.get(&tool_use_id(i)) else {
            return self.failures.push(format!("call {i}: Claude Code sent no tool_result"));
        };
        // "PreToolUse:<tool> hook error: <reason>"
        let reason = r
            .text
            .strip_prefix(HOOK_DENY_PREFIX)
            .and_then(|rest| rest.split_once(" hook error: "))
            .map(|(_, reason)| reason);
        let explicit = reason.is_some_and(|reason| !reason.starts_with('[') && !reason.contains("onFailure"));
        self.check(
            r.is_error && explicit && r.text.contains(REIN_REASON_MARK),
            format!("call {i}: not refused by a JSON deny with Rein's reason ({REIN_REASON_MARK:?} in it): {r:?}"),
        );
    }

    /// The `i`-th call was refused because Rein asked for approval
    /// (`permissionDecision: "ask"`, which `-p` turns into a refusal whose
    /// text is the bare reason), with a text containing `needle`.
    fn asked(&mut self, results: &BTreeMap<String, ToolResult>, i: usize, needle: &str) {
        match results.get(&tool_use_id(i)) {
            None => self.failures.push(format!("call {i}: Claude Code sent no tool_result")),
            Some(r) => self.check(
                r.is_error && !r.text.starts_with(HOOK_DENY_PREFIX) && r.text.contains(needle),
                format!("call {i}: expected an approval refusal containing {needle:?}, got {r:?}"),
            ),
        }
    }

    fn ok(&self) -> bool {
        self.failures.is_empty()
    }

    /// Panics with every failure, the tool results and the run.
    fn finish(self, model: &FakeModel, run: &ClaudeRun) {
        let mut report = String::new();
        for (id, r) in model.tool_results() {
            report.push_str(&format!("  {id}: is_error={} {:?}\n", r.is_error, r.text));
        }
        println!("{}: what the model was told:\n{report}", self.name);
        if !self.failures.is_empty() {
            panic!(
                "{}: {} expectation(s) failed:\n- {}\n\n{}",
                self.name,
                self.failures.len(),
                self.failures.join("\n- "),
                run.describe()
            );
        }
    }

    /// The run ended normally, every scripted call got a result, and the
    /// model's last word came through.
    fn completed(&mut self, model: &FakeModel, run: &ClaudeRun) {
        self.check(run.status.success(), format!("claude exited with {}", run.status));
        let results = model.tool_results();
        self.check(
            results.len() == model.script_len(),
            format!(
                "{} tool results for {} scripted calls",
                results.len(),
                model.script_len()
            ),
        );
        let final_text = run
            .result
            .as_ref()
            .and_then(|r| r["result"].as_str())
            .unwrap_or_default();
        self.check(
            final_text == FINAL_TEXT,
            format!("the run's result is {final_text:?}, not the model's last answer"),
        );
    }
}

/// `{"hooks": {EVENT: [{"matcher": "*", "hooks": [HANDLER]}] ...}}` for
/// each of `events`.
fn hook_settings(events: &[&str], handler: Value) -> Value {
    let mut hooks = serde_json::Map::new();
    for event in events {
        hooks.insert(event.to_string(), json!([{"matcher": "*", "hooks": [handler.clone()]}]));
    }
    json!({ "hooks": hooks })
}

/// A `command` hook that fails closed in Claude Code too.
fn command_hook(command: &str) -> Value {
    json!({"type": "command", "command": command, "timeout": 30, "onFailure": "block"})
}

/// The environment variable the `http` hook's bearer token comes from.
const HTTP_HOOK_TOKEN_ENV: &str = "REIN_E2E_TOKEN";
/// What the model reads when Claude Code itself blocks because the hook
/// failed (`onFailure: "block"`), rather than the hook deciding.
const ON_FAILURE_TEXT: &str = "blocking because onFailure is \"block\"";

/// An `http` hook handler for `url`, with the bearer token from
/// `$REIN_E2E_TOKEN`, failing closed in Claude Code too.
fn http_hook(url: &str) -> Value {
    json!({"type": "http", "url": url, "timeout": 30,
           "headers": {"Authorization": format!("Bearer ${HTTP_HOOK_TOKEN_ENV}")},
           "allowedEnvVars": [HTTP_HOOK_TOKEN_ENV], "onFailure": "block"})
}

/// `--mcp-config` for the MCP reference server over stdio, as `everything`
/// (its tools: `mcp__everything__echo`, `mcp__everything__get-env`, …).
fn mcp_config(env: &Env, sb: &Sandbox) -> PathBuf {
    sb.write_json(
        "mcp.json",
        &json!({"mcpServers": {"everything": {
            "command": "node", "args": [env.mcp_everything, "stdio"]}}}),
    )
}

/// The harness itself, with a stand-in hook (a shell script, not Rein):
/// Claude Code's own permission checks are off (`bypassPermissions`), so a
/// command outside the project really runs (the control), and the only
/// refusal the model sees is the hook's, with the hook's reason. Also shows
/// that `~` is the scratch HOME and that the MCP server answers.
#[test]
#[ignore = "runs inside the loopback-only namespace that claude_code_e2e makes"]
fn netns_harness_selfcheck_with_stand_in_hook() {
    let Some(env) = netns() else { return };
    let sb = Sandbox::new("selfcheck");
    let control = sb.home.join("made-by-the-model");
    let model = FakeModel::start(vec![
        ToolCall::bash("echo hello-from-the-fake-model; echo ~"),
        ToolCall::bash(&format!("touch {}", control.display())),
        ToolCall::bash("rm -rf ~/precious"),
        ToolCall::new("mcp__everything__echo", json!({"message": "hello-over-mcp"})),
    ]);
    let hook = fixture("selfcheck-hook.sh");
    let settings = sb.write_json(
        "settings.json",
        &hook_settings(&["PreToolUse"], command_hook(&hook.display().to_string())),
    );
    let mcp = mcp_config(&env, &sb);
    let run = sb.claude(
        &env.claude,
        &model,
        &settings,
        &[
            "--permission-mode",
            "bypassPermissions",
            "--mcp-config",
            mcp.to_str().unwrap(),
            "--strict-mcp-config",
        ],
        &[],
    );
    let results = model.tool_results();
    let mut c = Checks::new("selfcheck");
    c.completed(&model, &run);
    c.ran(
        &results,
        0,
        &format!("hello-from-the-fake-model\n{}", sb.home.display()),
    );
    c.ran(&results, 1, "");
    c.check(control.exists(), "the control command outside the project did not run");
    c.refused(&results, 2, "selfcheck stand-in hook: rm is refused");
    c.check(sb.precious().exists(), "the refused rm -rf ran: ~/precious is gone");
    c.ran(&results, 3, "Echo: hello-over-mcp");
    c.check(
        model.told_anywhere("hello-over-mcp") && !model.told_anywhere("never-said-anywhere"),
        "told_anywhere does not see what the model was told",
    );
    c.check(
        run.denied_ids() == [tool_use_id(2)],
        format!("permission_denials: {:?}", run.denied_ids()),
    );
    c.finish(&model, &run);
}

/// The harness's `http` hook settings (token header from the environment,
/// `onFailure: "block"`) against a stand-in hook server (test code, not
/// Rein) that denies `rm`, which is then killed between two turns.
#[test]
#[ignore = "runs inside the loopback-only namespace that claude_code_e2e makes"]
fn netns_harness_selfcheck_with_stand_in_http_hook() {
    let Some(env) = netns() else { return };
    let sb = Sandbox::new("selfcheck-http");
    let seen_auth = Arc::new(Mutex::new(Vec::<String>::new()));
    let hook = {
        let seen_auth = seen_auth.clone();
        Arc::new(HttpServer::start(Arc::new(move |req: &Request| {
            seen_auth
                .lock()
                .unwrap()
                .push(req.header("authorization").unwrap_or_default().to_string());
            let body = String::from_utf8_lossy(&req.body);
            let answer = if body.contains("rm ") {
                json!({"hookSpecificOutput": {"hookEventName": "PreToolUse", "permissionDecision": "deny",
                       "permissionDecisionReason": "selfcheck stand-in http hook: rm is refused"}})
            } else {
                json!({})
            };
            Response {
                status: "200 OK",
                content_type: "application/json",
                body: answer.to_string(),
            }
        })))
    };
    let touched = sb.project.join("after-the-kill");
    let model = {
        let hook = hook.clone();
        FakeModel::start_with(
            vec![
                ToolCall::bash("echo via-the-http-hook"),
                ToolCall::bash("rm -rf ~/precious"),
                ToolCall::bash(&format!("touch {}", touched.display())),
            ],
            Some(Box::new(move |i| {
                if i == 2 {
                    hook.kill();
                }
            })),
        )
    };
    let settings = sb.write_json(
        "settings.json",
        &hook_settings(&["PreToolUse"], http_hook(&format!("{}/hook", hook.url()))),
    );
    let token = "selfcheck-token-0123456789";
    let run = sb.claude(
        &env.claude,
        &model,
        &settings,
        &["--permission-mode", "bypassPermissions"],
        &[(HTTP_HOOK_TOKEN_ENV, token)],
    );
    let results = model.tool_results();
    let mut c = Checks::new("selfcheck http");
    c.completed(&model, &run);
    c.ran(&results, 0, "via-the-http-hook");
    c.refused(&results, 1, "selfcheck stand-in http hook: rm is refused");
    c.check(sb.precious().exists(), "the refused rm -rf ran: ~/precious is gone");
    c.refused(&results, 2, ON_FAILURE_TEXT);
    c.check(!touched.exists(), "a command ran after the http hook was killed");
    let seen = seen_auth.lock().unwrap().clone();
    c.check(
        seen.len() == 2 && seen.iter().all(|a| *a == format!("Bearer {token}")),
        format!("the hook saw these Authorization headers: {seen:?}"),
    );
    c.finish(&model, &run);
}
