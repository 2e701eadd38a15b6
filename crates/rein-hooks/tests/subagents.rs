//! Who acts, as the hook binds it: `actor.chain` from the agent's own
//! event (`agent_id` and `agent_type` inside a Claude Code sub-agent), on
//! top of the chain of the credential the event is sent with, through a
//! real runtime on a real SQLite file with the shipped contracts and the
//! example policy (whose `no_push_from_subagents` gives sub-agents less
//! than the main agent).

// Helpers outside `#[test]` functions fail the test by panicking.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use rein_hooks::{handle_credentialed, Agent, Protected};
use rein_runtime::{ActionScope, Approver, ChainLink, Credential, Runtime, RuntimeConfig};
use rein_store::{AuditRecord, SqliteStore};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::sync::Arc;

struct Fixture {
    runtime: Runtime,
    project: PathBuf,
    home: PathBuf,
    _dir: tempfile::TempDir,
}

/// The example Claude Code policy on the shipped contracts.
fn fixture() -> Fixture {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let policy = rein_engine::Policy::load(&[
        root.join("policies/agents/coding-agent.yaml"),
        root.join("examples/claude-code/policy.yaml"),
    ])
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().canonicalize().unwrap();
    let project = base.join("project");
    let home = base.join("home");
    std::fs::create_dir_all(project.join(".git")).unwrap();
    std::fs::write(project.join(".git/HEAD"), "ref: refs/heads/feature\n").unwrap();
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

/// Which agent (and sub-agent) an event comes from.
#[derive(Clone, Copy)]
enum Who<'a> {
    Main,
    /// `(agent_id, agent_type)`.
    Sub(&'a str, &'a str),
}

impl Fixture {
    fn event(&self, from: Who<'_>, name: &str, tool: &str, input: Value) -> Value {
        let mut e = json!({"session_id": "s1", "cwd": self.project, "hook_event_name": name,
                           "permission_mode": "default", "tool_name": tool, "tool_input": input,
                           "tool_use_id": "toolu_1"});
        if let Who::Sub(id, kind) = from {
            e["agent_id"] = json!(id);
            e["agent_type"] = json!(kind);
        }
        e
    }

    fn bash(&self, from: Who<'_>, command: &str) -> Value {
        self.event(
            from,
            "PreToolUse",
            "Bash",
            json!({"command": command, "description": "x"}),
        )
    }

    /// Sends `event` as `agent` with the credential `base` (a server
    /// token's; `None` in process); the reply's JSON and exit code.
    async fn send_with(&self, agent: Agent, event: &Value, base: Option<&Credential>) -> (Value, u8) {
        self.runtime.open_state().await.unwrap();
        let bytes = event.to_string();
        let reply = handle_credentialed(
            &self.runtime,
            agent,
            bytes.as_bytes(),
            Some(&self.home),
            base.map(|_| "laptop"),
            base,
            &Protected::new(),
            None,
        )
        .await;
        (serde_json::from_str(&reply.stdout).unwrap(), reply.exit_code)
    }

    async fn send(&self, event: &Value) -> (Value, u8) {
        self.send_with(Agent::ClaudeCode, event, None).await
    }

    /// `(permissionDecision, permissionDecisionReason)` of a PreToolUse.
    async fn pre(&self, event: &Value, base: Option<&Credential>) -> (String, String) {
        let (v, code) = self.send_with(Agent::ClaudeCode, event, base).await;
        assert_eq!(code, 0, "{v}");
        let out = &v["hookSpecificOutput"];
        (
            out["permissionDecision"].as_str().unwrap().to_string(),
            out["permissionDecisionReason"].as_str().unwrap().to_string(),
        )
    }

    async fn records(&self) -> Vec<AuditRecord> {
        self.runtime.store().query_audit(&Default::default()).await.unwrap()
    }

    async fn last_record(&self) -> AuditRecord {
        self.records().await.pop().unwrap()
    }
}

fn chain(links: &[&str]) -> Value {
    Value::Array(
        links
            .iter()
            .map(|l| {
                let (kind, id) = l.split_once(':').unwrap();
                json!({"kind": kind, "id": id})
            })
            .collect(),
    )
}

/// What Claude Code 2.1.331 sends from inside a `general-purpose`
/// sub-agent (observed, see crates/rein-cli/tests/claude_code_e2e).
const SUB: Who<'static> = Who::Sub("a3dc2d6fa4318803a", "general-purpose");

#[tokio::test]
async fn the_chain_is_bound_from_the_event() {
    let f = fixture();
    assert_eq!(f.pre(&f.bash(Who::Main, "git status"), None).await.0, "allow");
    let main = f.last_record().await;
    assert_eq!(main.entry.actor["chain"], chain(&["agent:claude-code"]));
    assert!(main.entry.actor.get("agent_id").is_none());
    let sources = main.entry.actor_source.clone().unwrap();
    assert_eq!(sources["chain"], "credential");
    // What the event says stays the event's word.
    assert_eq!(sources["agent"], "caller");

    assert_eq!(f.pre(&f.bash(SUB, "git status"), None).await.0, "allow");
    let sub = f.last_record().await;
    assert_eq!(
        sub.entry.actor["chain"],
        chain(&["agent:claude-code", "subagent:general-purpose"])
    );
    assert_eq!(sub.entry.actor["agent_id"], "a3dc2d6fa4318803a");
    assert_eq!(sub.entry.actor["agent_type"], "general-purpose");
    assert_eq!(sub.entry.actor_source.unwrap()["chain"], "credential");

    // `claude --agent NAME` runs the main thread as a named agent: Claude
    // Code sends `agent_type` without `agent_id` (observed). Still the main
    // agent.
    let mut named = f.bash(Who::Main, "git status");
    named["agent_type"] = json!("pusher");
    assert_eq!(f.pre(&named, None).await.0, "allow");
    let r = f.last_record().await;
    assert_eq!(r.entry.actor["chain"], chain(&["agent:claude-code"]));
    assert_eq!(r.entry.actor["agent_type"], "pusher");

    // The output check sees the same actor (it has no credential of its
    // own: the hook sets the chain on the request).
    let mut post = f.event(
        SUB,
        "PostToolUse",
        "Bash",
        json!({"command": "git status", "description": "x"}),
    );
    post["tool_response"] = json!({"stdout": "On branch feature", "stderr": ""});
    assert_eq!(f.send(&post).await.0, json!({}));
    let after = f.last_record().await;
    assert_eq!(after.entry.phase, "after");
    assert_eq!(
        after.entry.actor["chain"],
        chain(&["agent:claude-code", "subagent:general-purpose"])
    );
}

#[tokio::test]
async fn a_subagent_may_not_push_while_the_main_agent_may() {
    let f = fixture();
    for push in [
        "git push origin feature",
        "git push",
        "git --no-pager push --force origin HEAD",
    ] {
        let (d, reason) = f.pre(&f.bash(Who::Main, push), None).await;
        assert_eq!(d, "allow", "main agent, {push}: {reason}");
        let (d, reason) = f.pre(&f.bash(SUB, push), None).await;
        assert_eq!(d, "deny", "sub-agent, {push}: {reason}");
        assert!(reason.contains("no_push_from_subagents"), "{reason}");
    }
    // The main agent is asked about `git -C DIR …` (another repository);
    // a sub-agent is refused.
    assert_eq!(f.pre(&f.bash(Who::Main, "git -C . push"), None).await.0, "ask");
    assert_eq!(f.pre(&f.bash(SUB, "git -C . push"), None).await.0, "deny");
    // Every part of a compound command; any sub-agent type.
    let (d, reason) = f
        .pre(&f.bash(Who::Sub("b1", "Explore"), "git status && git push"), None)
        .await;
    assert_eq!(d, "deny", "{reason}");
    // The permission dialog is answered the same way.
    let (v, _) = f
        .send(&f.event(
            SUB,
            "PermissionRequest",
            "Bash",
            json!({"command": "git push", "description": "x"}),
        ))
        .await;
    assert_eq!(v["hookSpecificOutput"]["decision"]["behavior"], "deny", "{v}");
    // Reading is not pushing.
    assert_eq!(f.pre(&f.bash(SUB, "git log --oneline"), None).await.0, "allow");
}

/// What an agent sends as `agent_id`/`agent_type` becomes a chain link
/// and a field rules compare: text that does not fit is not understood,
/// and the call is refused (exit 2 and a deny), never judged as the main
/// agent's.
#[tokio::test]
async fn agent_fields_that_do_not_fit_are_refused() {
    let f = fixture();
    let long = "a".repeat(rein_hooks::event::MAX_AGENT_NAME_BYTES + 1);
    let bad: Vec<(Value, Value)> = vec![
        (json!("a1"), json!("general purpose")),
        (json!("a1"), json!("general-purpose\n")),
        (json!("a1"), json!("gen\u{0}eral")),
        (json!("a1"), json!("g\u{435}neral-purpose")), // a Cyrillic `е`
        (json!("a1"), json!("")),
        (json!("a1"), json!(long)),
        (json!(long), json!("general-purpose")),
        (json!("a 1"), json!("general-purpose")),
        (json!(7), json!("general-purpose")),
        (json!("a1"), json!(["general-purpose"])),
        // From a sub-agent of no known type.
        (json!("a1"), Value::Null),
    ];
    for (id, kind) in bad {
        for agent in [Agent::ClaudeCode, Agent::Codex, Agent::Gemini] {
            let mut e = f.bash(Who::Main, "git status");
            if agent == Agent::Gemini {
                e["hook_event_name"] = json!("BeforeTool");
                e["tool_name"] = json!("run_shell_command");
            }
            e["agent_id"] = id.clone();
            e["agent_type"] = kind.clone();
            let (v, code) = f.send_with(agent, &e, None).await;
            assert_eq!(code, 2, "{agent:?} {id} {kind}: {v}");
            assert!(v.to_string().contains("deny"), "{agent:?} {id} {kind}: {v}");
        }
    }
    assert!(f.records().await.is_empty(), "nothing was decided");
    // The longest accepted.
    let fits = "a".repeat(rein_hooks::event::MAX_AGENT_NAME_BYTES);
    let (d, _) = f.pre(&f.bash(Who::Sub(&fits, "plugin:reviewer"), "ls"), None).await;
    assert_eq!(d, "allow");
}

/// Codex and Gemini send no sub-agent fields today: one link. Codex's
/// documented `agent_id`/`agent_type` (its wire shape is Claude Code's)
/// are read the same way when sent.
#[tokio::test]
async fn other_agents_bind_their_own_link() {
    let f = fixture();
    let codex = f.bash(Who::Main, "ls");
    let (v, _) = f.send_with(Agent::Codex, &codex, None).await;
    assert_eq!(v["hookSpecificOutput"]["permissionDecision"], "allow", "{v}");
    assert_eq!(f.last_record().await.entry.actor["chain"], chain(&["agent:codex"]));

    let mut gemini = f.bash(Who::Main, "ls");
    gemini["hook_event_name"] = json!("BeforeTool");
    gemini["tool_name"] = json!("run_shell_command");
    let (v, _) = f.send_with(Agent::Gemini, &gemini, None).await;
    assert_eq!(v["decision"], "allow", "{v}");
    assert_eq!(f.last_record().await.entry.actor["chain"], chain(&["agent:gemini"]));

    let sub = f.bash(Who::Sub("c1", "worker"), "git push");
    let (v, _) = f.send_with(Agent::Codex, &sub, None).await;
    assert_eq!(v["hookSpecificOutput"]["permissionDecision"], "deny", "{v}");
    assert_eq!(
        f.last_record().await.entry.actor["chain"],
        chain(&["agent:codex", "subagent:worker"])
    );
}

/// Behind `rein serve`, the event comes from the process holding a token:
/// the hook's links follow the token's chain, the token's scopes still
/// apply to them, and a field the token binds cannot be contradicted.
#[tokio::test]
async fn a_credential_chain_is_extended_never_replaced() {
    let f = fixture();
    let token = Credential {
        chain: Some(vec![
            ChainLink::parse("user:alice").unwrap(),
            ChainLink::parse("token:laptop").unwrap(),
        ]),
        scopes: vec![(1, ActionScope::parse("file.*,shell.exec").unwrap())],
        ..Credential::default()
    };
    let (d, reason) = f.pre(&f.bash(SUB, "git status"), Some(&token)).await;
    assert_eq!(d, "allow", "{reason}");
    let r = f.last_record().await;
    assert_eq!(
        r.entry.actor["chain"],
        chain(&[
            "user:alice",
            "token:laptop",
            "agent:claude-code",
            "subagent:general-purpose"
        ])
    );
    assert_eq!(r.entry.client.as_deref(), Some("laptop"));
    // The sub-agent rule reads the whole chain.
    let (d, _) = f.pre(&f.bash(SUB, "git push"), Some(&token)).await;
    assert_eq!(d, "deny");
    // The token's scope binds the links after it: a web search is outside.
    let search = f.event(Who::Main, "PreToolUse", "WebSearch", json!({"query": "x"}));
    let (d, reason) = f.pre(&search, Some(&token)).await;
    assert_eq!(d, "deny");
    assert!(reason.contains("chain link 2 (token:laptop)"), "{reason}");
    // So is its output (the `after` check takes no credential: the hook
    // refuses it).
    let mut post = f.event(Who::Main, "PostToolUse", "WebSearch", json!({"query": "x"}));
    post["tool_response"] = json!({"results": ["found"]});
    let (v, _) = f.send_with(Agent::ClaudeCode, &post, Some(&token)).await;
    assert_eq!(v["decision"], "block", "{v}");
    assert!(v.to_string().contains("chain link 2 (token:laptop)"), "{v}");

    // A token bound to another agent: the event's `agent` contradicts it.
    let mut fields = rein_runtime::BoundActor::new();
    fields.insert("agent".into(), json!("codex"));
    let codex_only = Credential {
        fields,
        ..token.clone()
    };
    let (d, reason) = f.pre(&f.bash(Who::Main, "git status"), Some(&codex_only)).await;
    assert_eq!(d, "deny");
    assert!(reason.contains("actor.agent is set by the credential"), "{reason}");
    // The output check has no credential of its own: the hook refuses it.
    let mut post = f.event(
        Who::Main,
        "PostToolUse",
        "Bash",
        json!({"command": "ls", "description": "x"}),
    );
    post["tool_response"] = json!({"stdout": "README.md", "stderr": ""});
    let (v, _) = f.send_with(Agent::ClaudeCode, &post, Some(&codex_only)).await;
    assert_eq!(v["decision"], "block", "{v}");
    assert!(v.to_string().contains("actor.agent is set by the credential"), "{v}");
    assert!(!v.to_string().contains("README.md"), "the output was withheld: {v}");
    let refused = f.last_record().await;
    assert_eq!(
        (refused.entry.phase.as_str(), refused.entry.effect.as_str()),
        ("after", "block")
    );
}

/// `agent_id` names one sub-agent instance (`per_call` in the contract):
/// an approval granted to a sub-agent's call covers the retry from the next
/// sub-agent of the same type, not the main agent's call (another chain).
#[tokio::test]
async fn approvals_follow_the_chain_not_the_instance() {
    let f = fixture();
    let (d, reason) = f
        .pre(&f.bash(Who::Sub("a1", "general-purpose"), "npm install left-pad"), None)
        .await;
    assert_eq!(d, "ask", "{reason}");
    let pending = f.runtime.approvals(None, 10).await.unwrap();
    assert_eq!(pending.len(), 1);
    let roles = vec!["maintainer".to_string()];
    f.runtime
        .grant(
            &pending[0].id,
            Approver {
                name: "alice",
                roles: Some(&roles),
                credential: None,
            },
            None,
        )
        .await
        .unwrap();
    // The main agent asking the same is another actor: asked anew.
    let (d, reason) = f.pre(&f.bash(Who::Main, "npm install left-pad"), None).await;
    assert_eq!(d, "ask", "{reason}");
    assert!(!reason.contains(&pending[0].id), "{reason}");
    // The next sub-agent of the same type: the grant holds.
    let mut retry = f.bash(Who::Sub("a2", "general-purpose"), "npm install left-pad");
    retry["tool_use_id"] = json!("toolu_2");
    let (d, reason) = f.pre(&retry, None).await;
    assert_eq!(d, "allow", "{reason}");
}

/// A call refused before any rule (here: writing a file Rein protects)
/// is recorded with the actor the hook bound, chain included: the record
/// says a sub-agent tried it, not only that someone did.
#[tokio::test]
async fn a_refusal_before_any_rule_records_who_was_refused() {
    let f = fixture();
    f.runtime.open_state().await.unwrap();
    let guarded = f.project.join("guarded.yaml");
    std::fs::write(&guarded, "x").unwrap();
    let mut protected = Protected::new();
    protected.add_file_or_dir(&guarded, "a policy file Rein enforces");
    let event = f.event(
        SUB,
        "PreToolUse",
        "Write",
        json!({"file_path": guarded, "content": "default: allow"}),
    );
    let bytes = event.to_string();
    let reply = handle_credentialed(
        &f.runtime,
        Agent::ClaudeCode,
        bytes.as_bytes(),
        Some(&f.home),
        None,
        None,
        &protected,
        None,
    )
    .await;
    assert!(reply.stdout.contains("rein_protects_itself"), "{}", reply.stdout);
    let record = f.last_record().await;
    assert_eq!(record.entry.effect, "block");
    let actor = &record.entry.input["body"]["actor"];
    assert_eq!(
        actor["chain"],
        chain(&["agent:claude-code", "subagent:general-purpose"]),
        "{}",
        record.entry.input
    );
    assert_eq!(actor["agent_id"], "a3dc2d6fa4318803a", "{}", record.entry.input);
}
