//! Every hook event recorded from the real Codex CLI 0.171
//! (`tests/fixtures/codex/`, written by `crates/rein-cli/tests/codex_e2e`
//! with `REIN_CODEX_RECORD=1`; none is hand-written) through
//! [`rein_hooks::handle`] with the shipped contracts and the example
//! policy: each is read, mapped to the action the call really is, and
//! answered in the shape Codex acts on.

// Helpers outside `#[test]` functions fail the test by panicking.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use rein_hooks::{chain_links, decide_event, handle, parse_event, Agent};
use rein_runtime::{Runtime, RuntimeConfig};
use rein_store::SqliteStore;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The paths the recorder put in place of its scratch ones.
const RECORDED_PROJECT: &str = "/work/project";
const RECORDED_HOME: &str = "/home/dev";

struct Fixture {
    runtime: Runtime,
    project: PathBuf,
    home: PathBuf,
    _dir: tempfile::TempDir,
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn fixture() -> Fixture {
    let policy = rein_engine::Policy::load(&[
        repo().join("policies/agents/coding-agent.yaml"),
        repo().join("examples/claude-code/policy.yaml"),
    ])
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().canonicalize().unwrap();
    let project = base.join("project");
    let home = base.join("home");
    std::fs::create_dir_all(&project).unwrap();
    std::fs::create_dir_all(&home).unwrap();
    let store = SqliteStore::open(base.join("audit.db")).unwrap();
    let config = RuntimeConfig {
        hmac_key: vec![7; 32],
        ..RuntimeConfig::default()
    };
    Fixture {
        runtime: Runtime::new(policy, Arc::new(store), config),
        project,
        home,
        _dir: dir,
    }
}

/// Every recorded event, by file name, with the recorded paths moved into
/// this test's scratch project and home.
fn recorded(f: &Fixture) -> BTreeMap<String, Value> {
    let dir = repo().join("crates/rein-hooks/tests/fixtures/codex");
    let mut events = BTreeMap::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_string();
        if name == "tools.json" || !name.ends_with(".json") {
            continue;
        }
        let text = std::fs::read_to_string(&path)
            .unwrap()
            .replace(RECORDED_PROJECT, f.project.to_str().unwrap())
            .replace(RECORDED_HOME, f.home.to_str().unwrap());
        events.insert(name, serde_json::from_str(&text).unwrap());
    }
    assert!(events.len() >= 13, "too few recorded Codex events: {:?}", events.keys());
    events
}

impl Fixture {
    /// The answer `rein hook codex` prints for `event`, and its exit code.
    async fn answer(&self, event: &Value) -> (Value, u8) {
        self.runtime.open_state().await.unwrap();
        let reply = handle(
            &self.runtime,
            Agent::Codex,
            event.to_string().as_bytes(),
            Some(&self.home),
        )
        .await;
        (serde_json::from_str(&reply.stdout).unwrap(), reply.exit_code)
    }

    /// The action `event` is decided as, and whether it was allowed.
    async fn action(&self, event: &Value) -> (String, Option<rein_engine::Effect>) {
        self.runtime.open_state().await.unwrap();
        let parsed = parse_event(Agent::Codex, event.to_string().as_bytes()).unwrap();
        let verdict = decide_event(&self.runtime, &parsed, Some(&self.home), None).await;
        (verdict.action, verdict.effect)
    }
}

/// The unknown-tool action, before and after its rename.
fn is_unknown_tool(action: &str) -> bool {
    matches!(action, "tool.other" | "agent.unknown_tool")
}

#[tokio::test]
async fn every_recorded_event_is_read_and_answered_as_codex_acts_on_it() {
    let f = fixture();
    for (name, event) in recorded(&f) {
        let (answer, code) = f.answer(&event).await;
        assert_eq!(code, 0, "{name}: not read: {answer}");
        let kind = event["hook_event_name"].as_str().unwrap();
        match kind {
            "PreToolUse" => {
                let out = &answer["hookSpecificOutput"];
                assert_eq!(out["hookEventName"], "PreToolUse", "{name}: {answer}");
                let decision = out["permissionDecision"].as_str().unwrap();
                // Codex has no "ask": only allow or deny, never anything it
                // would take as a failed hook (and let the call run).
                assert!(matches!(decision, "allow" | "deny"), "{name}: {answer}");
                let (action, _) = f.action(&event).await;
                if is_unknown_tool(&action) {
                    assert_eq!(decision, "deny", "{name}: an unknown tool was allowed: {answer}");
                }
            }
            // Nothing recorded here holds a secret: no opinion.
            "PostToolUse" => {
                let (action, _) = f.action(&event).await;
                if !is_unknown_tool(&action) {
                    assert_eq!(answer, json!({}), "{name}");
                }
            }
            "SessionStart" | "UserPromptSubmit" | "Stop" | "SubagentStart" | "SubagentStop" => {
                assert!(answer.get("hookSpecificOutput").is_none(), "{name}: {answer}");
                assert_ne!(answer["decision"], "block", "{name}: {answer}");
            }
            other => panic!("{name}: an event kind this test does not know: {other}"),
        }
    }
}

/// Each tool the real Codex called is decided as what it does.
#[tokio::test]
async fn recorded_tools_map_to_their_actions() {
    let f = fixture();
    let events = recorded(&f);
    let cases = [
        ("PreToolUse-Bash.json", "shell.exec", Some(rein_engine::Effect::Allow)),
        (
            "PreToolUse-Bash-subagent.json",
            "shell.exec",
            Some(rein_engine::Effect::Allow),
        ),
        (
            "PreToolUse-apply_patch.json",
            "file.write",
            Some(rein_engine::Effect::Allow),
        ),
        (
            "PreToolUse-mcp__everything__echo.json",
            "mcp.everything.echo",
            Some(rein_engine::Effect::Allow),
        ),
        (
            "PreToolUse-spawn_agent.json",
            "agent.spawn",
            Some(rein_engine::Effect::Allow),
        ),
    ];
    for (name, want, effect) in cases {
        let (action, got) = f.action(&events[name]).await;
        assert_eq!((action.as_str(), got), (want, effect), "{name}");
    }
}

/// Codex's `spawn_agent` names the sub-agent's task `message`: it is the
/// spawn's prompt. A spawn with structured `items` (paths, skills) is not
/// mapped, and is not allowed.
#[tokio::test]
async fn a_codex_spawn_is_an_agent_spawn_with_its_message_as_prompt() {
    let f = fixture();
    let events = recorded(&f);
    let spawn = &events["PreToolUse-spawn_agent.json"];
    let parsed = parse_event(Agent::Codex, spawn.to_string().as_bytes()).unwrap();
    let call = rein_hooks::map::map_tool(&parsed, Some(&f.home));
    assert_eq!(call.action, "agent.spawn");
    assert_eq!(call.inputs[0]["prompt"], spawn["tool_input"]["message"]);
    let mut with_items = spawn.clone();
    with_items["tool_input"]["items"] = json!([{"type": "local_image", "path": "/etc/shadow"}]);
    let (action, effect) = f.action(&with_items).await;
    assert!(is_unknown_tool(&action), "{action}");
    assert_ne!(effect, Some(rein_engine::Effect::Allow));
}

/// The sub-agent's events name it: `agent_id`/`agent_type` become the
/// `subagent:<type>` link after `agent:codex`.
#[tokio::test]
async fn a_sub_agents_events_name_it_in_the_chain() {
    let f = fixture();
    let events = recorded(&f);
    for name in ["PreToolUse-Bash-subagent.json", "PostToolUse-Bash-subagent.json"] {
        let parsed = parse_event(Agent::Codex, events[name].to_string().as_bytes()).unwrap();
        let links: Vec<String> = chain_links(&parsed)
            .iter()
            .map(|l| serde_json::to_value(l).unwrap())
            .map(|l| format!("{}:{}", l["kind"].as_str().unwrap(), l["id"].as_str().unwrap()))
            .collect();
        assert_eq!(links, ["agent:codex", "subagent:default"], "{name}");
    }
    let parsed = parse_event(Agent::Codex, events["PreToolUse-Bash.json"].to_string().as_bytes()).unwrap();
    assert_eq!(chain_links(&parsed).len(), 1);
}

/// A private key in a recorded tool output is withheld the way Codex 0.171
/// acts on: `decision: block` with the notice as the reason (Codex puts the
/// reason in place of the output), and nothing else: an answer that also
/// holds `updatedToolOutput` or `updatedMCPToolOutput` is a failed hook to
/// Codex, which then hands the model the output.
#[tokio::test]
async fn a_secret_in_a_recorded_output_is_withheld_as_codex_reads_it() {
    let f = fixture();
    let events = recorded(&f);
    let key = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n-----END OPENSSH PRIVATE KEY-----\n";
    let mut shell = events["PostToolUse-Bash.json"].clone();
    shell["tool_response"] = json!(key);
    let mut mcp = events["PostToolUse-mcp__everything__echo.json"].clone();
    mcp["tool_response"]["content"][0]["text"] = json!(format!("Echo: {key}"));
    let mut patch = events["PostToolUse-apply_patch.json"].clone();
    patch["tool_response"] = json!(format!("Success. {key}"));
    for (what, event) in [("shell", shell), ("mcp", mcp), ("apply_patch", patch)] {
        let (answer, code) = f.answer(&event).await;
        assert_eq!(code, 0, "{what}");
        let mut fields: Vec<&String> = answer.as_object().unwrap().keys().collect();
        fields.sort();
        assert_eq!(fields, ["decision", "reason"], "{what}: {answer}");
        assert_eq!(answer["decision"], "block", "{what}");
        let reason = answer["reason"].as_str().unwrap();
        assert!(reason.starts_with("[output withheld] Rein "), "{what}: {reason}");
        assert!(!reason.contains("b3BlbnNzaC1rZXktdjEAAAAA"), "{what}: {reason}");
    }
}
