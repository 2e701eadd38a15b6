//! End to end with the real Codex CLI, offline.
//!
//! `codex_e2e` finds the pinned Codex that `.ci/codex` installs (in
//! `.tools/codex-e2e/`, or `$REIN_CODEX_TOOLS`), then runs this same test
//! binary again inside a new network namespace that has only loopback
//! (`unshare --net`, `ip link set lo up`), where the `netns_*` tests run:
//! each starts a scripted fake OpenAI Responses API on 127.0.0.1 (a custom
//! model provider in a scratch `CODEX_HOME`), a scratch HOME and project,
//! and `codex exec` with hooks in `$CODEX_HOME/hooks.json`. The fake model
//! makes one tool call per turn; the tests assert the tool output Codex
//! sent back (what the model was told) and the effects on disk.
//!
//! Codex runs a hook from a user's hooks.json only once that exact hook has
//! been reviewed and trusted (`/hooks`), and skips an untrusted one without
//! a word. The scenario with the file `rein init codex` writes shows init
//! reporting its hooks untrusted, then trusts them with
//! `rein init codex --trust` (the hashes from Codex's own `hooks/list`,
//! checked again with `Sandbox::hook_trust`); the others pass `--dangerously-bypass-hook-trust`
//! (documented for automation that vets its hooks itself), except the
//! scenario that shows the skipping.
//!
//! Missing Codex (or no way to make a network namespace): the test says
//! SKIPPED on stderr and passes, except under `CI=true`, where it fails.
//! The `netns_*` tests are `#[ignore]`d: run on their own, outside the
//! namespace, they do nothing.

// Helpers outside `#[test]` functions panic on failure too; that is the report.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod fake_model;
#[path = "../claude_code_e2e/http.rs"]
mod http;
#[path = "../agent_e2e/namespace.rs"]
mod namespace;
mod record;
mod rein_hook;
#[path = "../agent_e2e/rein_serve.rs"]
mod rein_serve;
mod sandbox;

use fake_model::{call_id, FakeModel};
use namespace::Suite;
use sandbox::CodexRun;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// The namespace the `netns_*` tests run in, and what its messages name.
const SUITE: Suite = Suite {
    name: "codex_e2e",
    program: "Codex CLI",
    netns_env: "REIN_CODEX_E2E_NETNS",
    timeout: Duration::from_secs(420),
};
/// The Codex binary, for the re-run.
const CODEX_ENV: &str = "REIN_CODEX_E2E_CODEX";
/// The MCP reference server's entry script, for the re-run.
const MCP_ENV: &str = "REIN_CODEX_E2E_MCP_EVERYTHING";
/// How Codex 0.171 words the tool output of a shell or `apply_patch` call a
/// PreToolUse hook denied (JSON `permissionDecision: "deny"` or exit 2),
/// before the reason (after it: ". Command: <the command>").
pub(crate) const HOOK_BLOCK_PREFIX: &str = "Command blocked by PreToolUse hook: ";
/// The same for any other tool (MCP, multi-agent); after the reason:
/// ". Tool: <hook tool name>".
const HOOK_BLOCK_PREFIX_TOOL: &str = "Tool call blocked by PreToolUse hook: ";
/// How every refusal Rein words starts.
const REIN_REASON_START: &str = "Rein ";
/// Passed to every run but the one about trust: see the module comment.
const BYPASS_TRUST: &str = "--dangerously-bypass-hook-trust";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

// ---- outside the namespace ------------------------------------------------

struct Tools {
    codex: PathBuf,
    mcp_everything: PathBuf,
}

/// Where `.ci/codex` put the pinned programs, or why they are not usable.
fn find_tools() -> Result<Tools, String> {
    let prefix = match std::env::var_os("REIN_CODEX_TOOLS") {
        Some(p) => repo().join(p),
        None => repo().join(".tools/codex-e2e"),
    };
    let codex = prefix.join("node_modules/@openai/codex/vendor/x86_64-unknown-linux-musl/bin/codex");
    let mcp_everything = prefix.join("node_modules/@modelcontextprotocol/server-everything/dist/index.js");
    if !codex.is_file() {
        return Err(format!("no Codex CLI at {}: run .ci/codex", codex.display()));
    }
    if !mcp_everything.is_file() {
        return Err(format!("no MCP server at {}: run .ci/codex", mcp_everything.display()));
    }
    let node = Command::new("node").arg("--version").output();
    if !node.is_ok_and(|o| o.status.success()) {
        return Err("no `node` on PATH (the MCP reference server needs it)".into());
    }
    Ok(Tools { codex, mcp_everything })
}

#[test]
fn codex_e2e() {
    if SUITE.is_rerun() {
        return;
    }
    let tools = match find_tools() {
        Ok(tools) => tools,
        Err(why) => return SUITE.unavailable(&why),
    };
    SUITE.run_in_namespace(&[
        (CODEX_ENV, tools.codex.as_os_str()),
        (MCP_ENV, tools.mcp_everything.as_os_str()),
    ]);
}

// ---- inside the namespace ---------------------------------------------------

struct Env {
    codex: PathBuf,
    mcp_everything: PathBuf,
}

/// `Some` only in the re-run inside the loopback-only namespace, which it
/// checks first.
fn netns() -> Option<Env> {
    SUITE.inside().then(|| Env {
        codex: std::env::var_os(CODEX_ENV).unwrap().into(),
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

    fn output<'a>(&mut self, outputs: &'a BTreeMap<String, String>, id: &str) -> Option<&'a str> {
        let out = outputs.get(id).map(String::as_str);
        if out.is_none() {
            self.failures.push(format!("{id}: Codex sent no tool output"));
        }
        out
    }

    /// Call `id` ran (no hook blocked it), and its output contains `needle`.
    fn ran_id(&mut self, outputs: &BTreeMap<String, String>, id: &str, needle: &str) {
        if let Some(out) = self.output(outputs, id) {
            let ok =
                !out.starts_with(HOOK_BLOCK_PREFIX) && !out.starts_with(HOOK_BLOCK_PREFIX_TOOL) && out.contains(needle);
            self.check(
                ok,
                format!("{id}: expected it to run with {needle:?} in its output, got {out:?}"),
            );
        }
    }

    /// The `i`-th scripted call ran, and its output contains `needle`.
    fn ran(&mut self, outputs: &BTreeMap<String, String>, i: usize, needle: &str) {
        self.ran_id(outputs, &call_id(i), needle);
    }

    /// Call `id` was refused by a PreToolUse hook with Rein's reason (the
    /// text after Codex's prefix starts with "Rein "), which contains
    /// `needle`.
    fn refused_by_rein_id(&mut self, outputs: &BTreeMap<String, String>, id: &str, needle: &str) {
        if let Some(out) = self.output(outputs, id) {
            let reason = out
                .strip_prefix(HOOK_BLOCK_PREFIX)
                .or_else(|| out.strip_prefix(HOOK_BLOCK_PREFIX_TOOL));
            let ok = reason.is_some_and(|r| r.starts_with(REIN_REASON_START) && r.contains(needle));
            self.check(
                ok,
                format!("{id}: expected a PreToolUse refusal with Rein's reason holding {needle:?}, got {out:?}"),
            );
        }
    }

    /// The `i`-th scripted call was refused with Rein's reason.
    fn refused_by_rein(&mut self, outputs: &BTreeMap<String, String>, i: usize, needle: &str) {
        self.refused_by_rein_id(outputs, &call_id(i), needle);
    }

    /// The `i`-th call's output does not hold `secret`.
    fn not_told(&mut self, outputs: &BTreeMap<String, String>, i: usize, secret: &str) {
        if let Some(out) = outputs.get(&call_id(i)) {
            self.check(
                !out.contains(secret),
                format!("call {i}: the model was told {secret:?}"),
            );
        }
    }

    fn ok(&self) -> bool {
        self.failures.is_empty()
    }

    /// The run ended normally, every scripted call got an output, and the
    /// model's last word came through.
    fn completed(&mut self, model: &FakeModel, run: &CodexRun) {
        self.check(run.status.success(), format!("codex exited with {}", run.status));
        let outputs = model.outputs();
        let missing: Vec<String> = (0..model.script_len())
            .map(call_id)
            .filter(|id| !outputs.contains_key(id))
            .collect();
        // A `tool_search` output is not a tool result the tests read.
        let searches: Vec<String> = model
            .requests()
            .iter()
            .flat_map(|r| r.body["input"].as_array().cloned().unwrap_or_default())
            .filter(|i| i["type"] == "tool_search_output")
            .filter_map(|i| i["call_id"].as_str().map(str::to_string))
            .collect();
        let missing: Vec<&String> = missing.iter().filter(|id| !searches.contains(id)).collect();
        self.check(missing.is_empty(), format!("no tool output for {missing:?}"));
        self.check(
            run.last_message.trim() == fake_model::FINAL_TEXT,
            format!(
                "the run's last message is {:?}, not the model's last answer",
                run.last_message
            ),
        );
    }

    /// Panics with every failure, the tool outputs and the run.
    fn finish(self, model: &FakeModel, run: &CodexRun) {
        let mut report = String::new();
        for (id, out) in model.outputs() {
            report.push_str(&format!("  {id}: {out:?}\n"));
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
}

/// `{"hooks": {EVENT: [{"matcher": "*", "hooks": [HANDLER]}] ...}}` for
/// each of `events` (a matcher only where Codex reads one).
fn hooks_json(events: &[&str], handler: &Value) -> Value {
    let mut hooks = serde_json::Map::new();
    for event in events {
        let group = if matches!(*event, "PreToolUse" | "PostToolUse" | "PermissionRequest") {
            json!({"matcher": "*", "hooks": [handler]})
        } else {
            json!({"hooks": [handler]})
        };
        hooks.insert(event.to_string(), json!([group]));
    }
    json!({ "hooks": hooks })
}

/// A `command` hook handler; `timeout` in seconds, as Codex reads it.
fn command_hook(command: &str) -> Value {
    json!({"type": "command", "command": command, "timeout": 30})
}
