//! `POST /v1/hooks/{agent}`: Claude Code's `http` hook type.

use crate::common::{Harness, AGENT};
use axum::http::{Method, StatusCode};
use serde_json::{json, Value};
use std::path::Path;

/// A server on the coding-agent contracts and the Claude Code example.
async fn coding_agent_server() -> Harness {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    Harness::with(|c| {
        c.policy_paths = vec![
            root.join("policies/agents/coding-agent.yaml"),
            root.join("examples/claude-code/policy.yaml"),
        ];
    })
    .await
}

fn bash(command: &str) -> Value {
    json!({"session_id": "s", "cwd": "/tmp/rein-hook-project", "hook_event_name": "PreToolUse",
           "tool_name": "Bash", "tool_input": {"command": command}, "tool_use_id": "toolu_1"})
}

/// Claude Code's `PreToolUse` for a Bash `command`, sent with the agent token.
async fn claude_code(h: &Harness, command: &str) -> (StatusCode, Value) {
    h.call(Method::POST, "/v1/hooks/claude-code", Some(AGENT), Some(bash(command)))
        .await
}

#[tokio::test]
async fn a_claude_code_event_is_answered_in_its_format_and_recorded() {
    let h = coding_agent_server().await;
    let (status, body) = claude_code(&h, "ls && rm -rf ~").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["hookSpecificOutput"]["permissionDecision"], "deny", "{body}");
    assert!(body["hookSpecificOutput"]["permissionDecisionReason"]
        .as_str()
        .unwrap()
        .contains("rm -r"));
    let (_, body) = claude_code(&h, "ls").await;
    assert_eq!(body["hookSpecificOutput"]["permissionDecision"], "allow", "{body}");
    // Three decisions after the start's activation record.
    assert_eq!(h.state.runtime().store().audit_len().await.unwrap(), 4);
}

/// An approval a hook event opens names the token that sent the event,
/// which may then not approve it.
#[tokio::test]
async fn approvals_opened_by_hook_events_name_their_sender() {
    let h = coding_agent_server().await;
    let (status, body) = claude_code(&h, "npm install left-pad").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["hookSpecificOutput"]["permissionDecision"], "ask", "{body}");
    // The hint says how to reach this server, not the hook's local store
    // (`rein approvals grant ID` alone looks for ./rein.db).
    let reason = body["hookSpecificOutput"]["permissionDecisionReason"].as_str().unwrap();
    assert!(
        reason.contains("`rein approvals grant ") && reason.contains(" --server ") && !reason.contains("--db"),
        "{reason}"
    );
    let pending = h
        .state
        .runtime()
        .approvals(Some(rein_store::ApprovalState::Pending), 10)
        .await
        .unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].requested_via.as_deref(), Some("agent-1"));
}

#[tokio::test]
async fn bad_events_unknown_agents_and_missing_tokens() {
    let h = coding_agent_server().await;
    let (status, body) = h
        .call_raw(
            Method::POST,
            "/v1/hooks/claude-code",
            Some(AGENT),
            Some(b"{not json".to_vec()),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::OK,
        "a refusal the agent reads, not an error it may ignore"
    );
    assert_eq!(body["hookSpecificOutput"]["permissionDecision"], "deny", "{body}");
    let (status, _) = h
        .call(Method::POST, "/v1/hooks/windsurf", Some(AGENT), Some(bash("ls")))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = h
        .call(Method::POST, "/v1/hooks/claude-code", None, Some(bash("ls")))
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (_, body) = h
        .call(
            Method::POST,
            "/v1/hooks/gemini",
            Some(AGENT),
            Some(json!({"hook_event_name": "BeforeTool", "cwd": "/p",
            "tool_name": "run_shell_command", "tool_input": {"command": "cat ~/.ssh/id_rsa"}})),
        )
        .await;
    assert_eq!(body["decision"], "deny", "{body}");
}

/// The server guards its own files from the agents it answers, whatever
/// the policy says: the store, the tokens, the audit key, the policies.
#[tokio::test]
async fn hook_events_cannot_touch_the_servers_own_files() {
    let h = coding_agent_server().await;
    let db = h.db_path();
    let db = db.to_str().unwrap();
    for command in [
        format!("rein approvals grant 0190 --db {db} --as alice"),
        format!("rm -f {db}"),
        format!("sqlite3 {db} 'delete from audit'"),
        format!("echo x > {db}-wal"),
        "rein serve -p x.yaml".to_string(),
    ] {
        let (status, body) = claude_code(&h, &command).await;
        assert_eq!(status, StatusCode::OK);
        let out = &body["hookSpecificOutput"];
        assert_eq!(out["permissionDecision"], "deny", "{command}: {body}");
        assert!(
            out["permissionDecisionReason"]
                .as_str()
                .unwrap()
                .contains("rein_protects_itself"),
            "{command}: {body}"
        );
    }
}

/// A 63 KB command line of as many parts as fit: the route records a
/// bounded number of parts (and the line once), not 21,000 records.
#[tokio::test]
async fn a_worst_case_event_writes_a_bounded_audit() {
    let h = coding_agent_server().await;
    let line = "ls;".repeat(21_000);
    let (status, body) = claude_code(&h, &line).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let records = h
        .state
        .runtime()
        .store()
        .query_audit(&Default::default())
        .await
        .unwrap();
    let bytes: usize = records
        .iter()
        .map(|r| serde_json::to_string(&r.entry).unwrap().len())
        .sum();
    assert!(records.len() <= rein_hooks::map::MAX_PARTS, "{} records", records.len());
    // Before: 1.3 GB for this event through `rein hook`.
    assert!(bytes < 1024 * 1024, "{bytes} bytes of audit for one event");
}

/// An agent token bound to Codex (`actor: {agent: codex}`).
const CODEX_ONLY: &str = "codex-only-token-0123456789abcdef";

/// The token's credential reaches the hook: its chain comes first, the
/// links the hook maps from the event (`agent:…`, `subagent:…` inside a
/// sub-agent) follow, and a field the token binds cannot be contradicted
/// by the event.
#[tokio::test]
async fn hook_events_are_decided_with_the_tokens_credential() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let h = Harness::with(|c| {
        c.policy_paths = vec![
            root.join("policies/agents/coding-agent.yaml"),
            root.join("examples/claude-code/policy.yaml"),
        ];
        let path = c.tokens_path.clone().unwrap();
        let tokens = format!(
            "{}  - name: codex-laptop\n    role: agent\n    token: {CODEX_ONLY}\n    actor: {{agent: codex}}\n",
            crate::common::tokens_yaml()
        );
        std::fs::write(path, tokens).unwrap();
    })
    .await;
    let last_actor = || async {
        let records = h
            .state
            .runtime()
            .store()
            .query_audit(&Default::default())
            .await
            .unwrap();
        let last = records.last().unwrap();
        (last.entry.actor.clone(), last.entry.actor_source.clone())
    };

    // From inside a Claude Code sub-agent: its own link, and less than the
    // main agent (the example policy's `no_push_from_subagents`).
    let mut sub = bash("git status");
    sub["agent_id"] = json!("a3dc2d6fa4318803a");
    sub["agent_type"] = json!("general-purpose");
    let (_, body) = h
        .call(Method::POST, "/v1/hooks/claude-code", Some(AGENT), Some(sub.clone()))
        .await;
    assert_eq!(body["hookSpecificOutput"]["permissionDecision"], "allow", "{body}");
    let (actor, source) = last_actor().await;
    let chain = actor["chain"].as_array().unwrap();
    let tail: Vec<String> = chain
        .iter()
        .map(|l| format!("{}:{}", l["kind"].as_str().unwrap(), l["id"].as_str().unwrap()))
        .collect();
    assert!(
        tail.ends_with(&["agent:claude-code".to_string(), "subagent:general-purpose".to_string()]),
        "{tail:?}"
    );
    assert!(
        tail.len() <= 3,
        "at most the token's own link before the hook's: {tail:?}"
    );
    assert_eq!(source.unwrap()["chain"], "credential");
    sub["tool_input"] = json!({"command": "git push"});
    let (_, body) = h
        .call(Method::POST, "/v1/hooks/claude-code", Some(AGENT), Some(sub))
        .await;
    assert_eq!(body["hookSpecificOutput"]["permissionDecision"], "deny", "{body}");
    let (_, body) = claude_code(&h, "git push").await;
    assert_eq!(body["hookSpecificOutput"]["permissionDecision"], "allow", "{body}");

    // A token bound to Codex, used for Claude Code's events: refused.
    let (_, body) = h
        .call(
            Method::POST,
            "/v1/hooks/claude-code",
            Some(CODEX_ONLY),
            Some(bash("ls")),
        )
        .await;
    assert_eq!(body["hookSpecificOutput"]["permissionDecision"], "deny", "{body}");
    assert!(
        body.to_string().contains("actor.agent is set by the credential"),
        "{body}"
    );
    // For Codex's: decided as usual, the bound field from the credential.
    let (_, body) = h
        .call(Method::POST, "/v1/hooks/codex", Some(CODEX_ONLY), Some(bash("ls")))
        .await;
    assert_eq!(body["hookSpecificOutput"]["permissionDecision"], "allow", "{body}");
    let (actor, source) = last_actor().await;
    assert_eq!(actor["agent"], "codex");
    assert_eq!(source.unwrap()["agent"], "credential");
}
