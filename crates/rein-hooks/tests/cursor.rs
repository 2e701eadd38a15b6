//! Cursor's hook events (tests/fixtures/cursor, copied from its hooks
//! documentation) through a real runtime on a real SQLite file, with the
//! shipped contracts and the example policy: each decided as the
//! documentation describes the event and answered in Cursor's flat format
//! (`permission`, `user_message`, `agent_message`; `continue` for a
//! prompt), and every event that cannot be read refused (exit code 2, which
//! Cursor treats as "deny", with a `deny` body).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use rein_hooks::{handle, Agent};
use rein_runtime::{Approver, Runtime, RuntimeConfig};
use rein_store::SqliteStore;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::sync::Arc;

struct Fixture {
    runtime: Runtime,
    project: PathBuf,
    home: PathBuf,
    _dir: tempfile::TempDir,
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn fixture() -> Fixture {
    let policy = rein_engine::Policy::load(&[
        root().join("policies/agents/coding-agent.yaml"),
        root().join("examples/claude-code/policy.yaml"),
    ])
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().canonicalize().unwrap();
    let project = base.join("project");
    let home = base.join("home");
    std::fs::create_dir_all(project.join(".git")).unwrap();
    std::fs::write(project.join(".git/HEAD"), "ref: refs/heads/feature\n").unwrap();
    std::fs::create_dir_all(home.join(".ssh")).unwrap();
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

impl Fixture {
    /// A documented event, its `/path/to/project` made this fixture's.
    fn event(&self, name: &str) -> Value {
        let path = root()
            .join("crates/rein-hooks/tests/fixtures/cursor")
            .join(format!("{name}.json"));
        let text = std::fs::read_to_string(&path).unwrap();
        let text = text.replace("/path/to/project", &self.project.to_string_lossy());
        serde_json::from_str(&text).unwrap()
    }

    async fn send_bytes(&self, bytes: &[u8]) -> (Value, u8) {
        self.runtime.open_state().await.unwrap();
        let reply = handle(&self.runtime, Agent::Cursor, bytes, Some(&self.home)).await;
        let json: Value = serde_json::from_str(&reply.stdout).unwrap();
        (json, reply.exit_code)
    }

    async fn send(&self, event: &Value) -> Value {
        let (v, code) = self.send_bytes(event.to_string().as_bytes()).await;
        assert_eq!(code, 0, "{event}: {v}");
        v
    }

    async fn shell(&self, command: &str) -> Value {
        let mut e = self.event("beforeShellExecution");
        e["command"] = json!(command);
        self.send(&e).await
    }

    async fn actions(&self) -> Vec<(String, String)> {
        let records = self.runtime.store().query_audit(&Default::default()).await.unwrap();
        records
            .iter()
            .map(|r| (r.entry.action.clone(), format!("{:?}", r.entry.effect)))
            .collect()
    }
}

#[tokio::test]
async fn shell_commands_are_decided_with_ask_where_cursor_enforces_it() {
    let f = fixture();
    // The documentation's example: an install asks (the example policy).
    let v = f.send(&f.event("beforeShellExecution")).await;
    assert_eq!(v["permission"], "ask", "{v}");
    let reason = v["user_message"].as_str().unwrap();
    assert!(
        reason.contains("Approval `") && reason.contains("rein approvals grant"),
        "{v}"
    );
    assert_eq!(v["agent_message"], v["user_message"]);
    assert_eq!(f.shell("ls -la").await, json!({"permission": "allow"}));
    let v = f.shell("ls && cat .env").await;
    assert_eq!(v["permission"], "deny", "{v}");
    assert!(v["user_message"].as_str().unwrap().contains("`cat .env`"), "{v}");
    // The event's `cwd` is where the command runs.
    let mut e = f.event("beforeShellExecution");
    e["command"] = json!("cat ../.env");
    e["cwd"] = json!(f.project.join("src"));
    let v = f.send(&e).await;
    assert_eq!(v["permission"], "deny", "{v}");
    e["command"] = json!("rm /home/someone/notes.txt");
    let v = f.send(&e).await;
    assert_eq!(v["permission"], "ask", "outside the project: {v}");
    // A command that is not text is blocked (contract), never run unseen.
    let mut e = f.event("beforeShellExecution");
    e["command"] = json!(["rm", "-rf", "/"]);
    assert_eq!(f.send(&e).await["permission"], "deny");
    let actor = f.runtime.store().query_audit(&Default::default()).await.unwrap();
    assert!(actor.iter().all(|r| r.entry.action == "shell.exec"));
}

#[tokio::test]
async fn pre_tool_use_has_no_ask_so_an_approval_is_a_refusal_naming_it() {
    let f = fixture();
    let mut e = f.event("preToolUse-Shell");
    e["tool_input"]["command"] = json!("npm install express");
    let v = f.send(&e).await;
    assert_eq!(v["permission"], "deny", "`ask` is not enforced on preToolUse: {v}");
    assert!(v["agent_message"].as_str().unwrap().contains("Approval `"), "{v}");
    // An empty `cwd` is the first workspace root.
    let mut e = f.event("preToolUse-Shell");
    e["tool_input"]["command"] = json!("cat src/main.rs");
    assert_eq!(f.send(&e).await, json!({"permission": "allow"}));
    let v = f.send(&f.event("preToolUse-Read")).await;
    assert_eq!(v["permission"], "deny", "{v}");
    let mut e = f.event("preToolUse-Read");
    e["tool_input"]["file_path"] = json!(f.project.join("README.md"));
    assert_eq!(f.send(&e).await, json!({"permission": "allow"}));
}

/// The approval a refusal names (`Approval `ID``).
fn approval_id(answer: &Value) -> String {
    let text = answer["agent_message"].as_str().unwrap_or_default();
    let rest = text
        .split_once("Approval `")
        .unwrap_or_else(|| panic!("no approval named: {answer}"))
        .1;
    rest.split_once('`').unwrap().0.to_string()
}

/// `rein init cursor` hooks `preToolUse` alone: each shell command, MCP
/// tool and read is one decision, one audit record, and a granted approval
/// lets the retried call through once. Hooked beside it, a granular event
/// for the same call would find the approval used and ask again: why the
/// granular events are not written.
#[tokio::test]
async fn pre_tool_use_alone_decides_each_call_once_and_an_approval_once() {
    let f = fixture();
    let mut shell = f.event("preToolUse-Shell");
    shell["tool_input"]["command"] = json!("ls");
    for (event, action) in [
        (shell.clone(), "shell.exec"),
        (f.event("preToolUse-Read"), "file.read"),
        (f.event("preToolUse-MCP"), "mcp.any.database_query"),
    ] {
        let before = f.actions().await.len();
        f.send(&event).await;
        let actions = f.actions().await;
        assert_eq!(actions.len(), before + 1, "{action}: {actions:?}");
        assert_eq!(actions[before].0, action);
    }

    shell["tool_input"]["command"] = json!("npm install express");
    let v = f.send(&shell).await;
    assert_eq!(v["permission"], "deny", "{v}");
    let id = approval_id(&v);
    assert_eq!(
        approval_id(&f.send(&shell).await),
        id,
        "no second approval while waiting"
    );
    let roles = vec!["maintainer".to_string()];
    let approver = Approver {
        name: "alice",
        roles: Some(&roles),
        credential: None,
    };
    f.runtime.grant(&id, approver, None).await.unwrap();
    assert_eq!(f.send(&shell).await, json!({"permission": "allow"}));
    // The same call's granular event, had it been hooked too, would open a
    // new approval and ask: the call never decided the same way twice.
    let mut granular = f.event("beforeShellExecution");
    granular["command"] = json!("npm install express");
    let v = f.send(&granular).await;
    assert_eq!(v["permission"], "ask", "{v}");
    let again = approval_id(&v);
    assert_ne!(again, id, "an approval lets one call through");
}

#[tokio::test]
async fn reads_are_decided_with_their_attachments() {
    let f = fixture();
    let mut e = f.event("beforeReadFile");
    e["file_path"] = json!(f.project.join("src/lib.rs"));
    assert_eq!(f.send(&e).await, json!({"permission": "allow"}));
    // An attached file is read too: a secret among them refuses the read.
    e["attachments"] = json!([{"type": "file", "file_path": f.project.join(".env")}]);
    let v = f.send(&e).await;
    assert_eq!(v["permission"], "deny", "{v}");
    e["attachments"] = json!([{"type": "rule", "filePath": f.home.join(".ssh/id_rsa")}]);
    assert_eq!(f.send(&e).await["permission"], "deny");
    // `beforeReadFile` has no "ask": a read needing approval is refused.
    let mut e = f.event("beforeReadFile");
    e["file_path"] = json!(f.home.join(".ssh/id_rsa"));
    let v = f.send(&e).await;
    assert_eq!(v["permission"], "deny", "{v}");
    // The documentation's example: the file and its attachment, one
    // decision each, on resolved paths.
    let before = f.actions().await.len();
    f.send(&f.event("beforeReadFile")).await;
    let records = f.runtime.store().query_audit(&Default::default()).await.unwrap();
    let paths: Vec<String> = records[before..]
        .iter()
        .map(|r| {
            serde_json::to_value(&r.entry).unwrap()["input"]["path"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .collect();
    let p = |rel: &str| f.project.join(rel).to_string_lossy().into_owned();
    assert_eq!(paths, [p("secrets.env"), p(".cursorrules")]);
}

#[tokio::test]
async fn mcp_tools_are_decided_whatever_hook_names_them() {
    let f = fixture();
    // No contract for `mcp.any.database_query` in the example policy.
    for name in ["beforeMCPExecution", "preToolUse-MCP"] {
        let v = f.send(&f.event(name)).await;
        assert_eq!(v["permission"], "deny", "{name}: {v}");
        assert!(
            v["user_message"].as_str().unwrap().contains("mcp.any.database_query"),
            "{name}: {v}"
        );
    }
    // Arguments that are not JSON text are not read: refused.
    let mut e = f.event("beforeMCPExecution");
    e["tool_input"] = json!("{not json");
    let (v, code) = f.send_bytes(e.to_string().as_bytes()).await;
    assert_eq!((code, v["permission"].as_str()), (2, Some("deny")), "{v}");
    e["tool_input"] = json!("[1]");
    let (_, code) = f.send_bytes(e.to_string().as_bytes()).await;
    assert_eq!(code, 2);
}

#[tokio::test]
async fn prompts_edits_and_other_events_are_recorded() {
    let f = fixture();
    assert_eq!(f.send(&f.event("beforeSubmitPrompt")).await, json!({"continue": true}));
    assert_eq!(f.send(&f.event("sessionStart")).await, json!({}));
    assert_eq!(f.send(&f.event("afterFileEdit")).await, json!({}));
    assert_eq!(f.send(&f.event("afterShellExecution")).await, json!({}));
    assert_eq!(f.send(&f.event("afterMCPExecution")).await, json!({}));
    assert_eq!(f.send(&f.event("postToolUse-Shell")).await, json!({}));
    assert_eq!(f.send(&f.event("stop")).await, json!({}));
    assert_eq!(f.send(&f.event("subagentStart")).await, json!({}));
    let actions: Vec<String> = f.actions().await.into_iter().map(|(a, _)| a).collect();
    assert_eq!(
        actions,
        [
            "prompt.submit",
            "session.start",
            "file.write",
            "shell.exec",
            "mcp.any.database_query",
            "shell.exec"
        ]
    );
    let records = f.runtime.store().query_audit(&Default::default()).await.unwrap();
    assert!(records.iter().all(|r| r.entry.session.as_deref() == Some("conv-123")));
}

#[tokio::test]
async fn outputs_holding_secrets_are_withheld_where_cursor_lets_them_be() {
    let f = fixture();
    let mut e = f.event("postToolUse-Shell");
    e["tool_output"] = json!("{\"output\":\"-----BEGIN OPENSSH PRIVATE KEY-----\\nb3Bl\",\"exitCode\":0}");
    let v = f.send(&e).await;
    let notice = v["additional_context"].as_str().unwrap();
    assert!(notice.starts_with("[output withheld]"), "{v}");
    assert!(!v.to_string().contains("b3Bl"), "{v}");
}

/// What cannot be read is refused with exit code 2 (Cursor's "deny") and a
/// `deny` body, never answered with no opinion.
#[tokio::test]
async fn unreadable_events_are_refused() {
    let f = fixture();
    let mut no_project = f.event("beforeShellExecution");
    no_project["cwd"] = json!("");
    no_project["workspace_roots"] = json!([]);
    let mut bad_roots = f.event("preToolUse-Shell");
    bad_roots["workspace_roots"] = json!("/p");
    let mut no_tool = f.event("preToolUse-Read");
    no_tool.as_object_mut().unwrap().remove("tool_name");
    let mut input_text = f.event("preToolUse-Read");
    input_text["tool_input"] = json!("/p/.env");
    let mut relative = f.event("beforeShellExecution");
    relative["cwd"] = json!("project");
    let mut input_text_mcp = f.event("preToolUse-MCP");
    input_text_mcp["tool_input"] = json!("{\"query\": 1}");
    let mut no_prompt = f.event("beforeSubmitPrompt");
    no_prompt.as_object_mut().unwrap().remove("prompt");
    for bad in [
        b"not json".to_vec(),
        b"[]".to_vec(),
        no_project.to_string().into_bytes(),
        bad_roots.to_string().into_bytes(),
        no_tool.to_string().into_bytes(),
        input_text.to_string().into_bytes(),
        relative.to_string().into_bytes(),
        input_text_mcp.to_string().into_bytes(),
    ] {
        let (v, code) = f.send_bytes(&bad).await;
        assert_eq!(code, 2, "{}", String::from_utf8_lossy(&bad));
        assert_eq!(v["permission"], "deny", "{v}");
    }
    let (v, code) = f.send_bytes(no_prompt.to_string().as_bytes()).await;
    assert_eq!((code, &v["continue"]), (2, &json!(false)), "{v}");
    assert!(f.actions().await.is_empty(), "nothing unread was decided");
}

/// Cursor's events name no sub-agent: the chain is the agent's own.
#[tokio::test]
async fn decisions_name_cursor_as_the_agent() {
    let f = fixture();
    f.send(&f.event("preToolUse-Shell")).await;
    let records = f.runtime.store().query_audit(&Default::default()).await.unwrap();
    let record = records.last().unwrap();
    let text = serde_json::to_string(&record.entry).unwrap();
    assert!(text.contains("\"agent\":\"cursor\""), "{text}");
}
