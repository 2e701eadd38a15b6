//! Delegation tokens over real HTTP: minted from a parent credential by
//! `POST /v1/tokens/delegate`, never wider than the parent, refused once
//! expired, tampered with, or cut from their root token; a request outside
//! a link's scope is blocked naming the link, and the chain is recorded.

use crate::common::*;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use reqwest::StatusCode;
use serde_json::{json, Value};

/// A researcher agent acting for alice: its chain and scope come from the
/// tokens file.
const SCOPED: &str = "scoped-token-0123456789abcdef";

const POLICY: &str = r#"version: "delegation-test"
default: block
contracts:
  actions:
    file.read:
      input: {path: string}
    file.write:
      input: {path: string}
    web.get:
      input: {url: string}
    web.post:
      input: {url: string}
    shell.run:
      input: {command: string}
rules:
  - id: everything_known
    action: [file.read, file.write, web.get, web.post, shell.run]
    effect: allow
    reason: the delegation scopes decide in these tests
"#;

fn tokens_file() -> String {
    format!(
        "{}  - name: scoped\n    role: agent\n    token: {SCOPED}\n    actor: {{id: support-bot, tenant: acme}}\n    chain: [\"user:alice\", \"agent:support-bot\"]\n    actions: [\"file.*\", \"web.*\"]\n",
        tokens_yaml()
    )
}

async fn harness() -> Harness {
    Harness::with_policy(POLICY, |config| {
        std::fs::write(config.tokens_path.as_ref().unwrap(), tokens_file()).unwrap();
    })
    .await
}

struct Client {
    http: reqwest::Client,
    served: Served,
}

impl Client {
    async fn new(h: &Harness) -> Client {
        Client {
            http: reqwest::Client::new(),
            served: h.serve().await,
        }
    }

    async fn post(&self, path: &str, token: &str, body: &Value) -> (StatusCode, Value) {
        let resp = self
            .http
            .post(self.served.url(path))
            .bearer_auth(token)
            .json(body)
            .send()
            .await
            .unwrap();
        let status = resp.status();
        let text = resp.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    async fn delegate(&self, parent: &str, body: Value) -> (StatusCode, Value) {
        self.post("/v1/tokens/delegate", parent, &body).await
    }

    /// Mints and returns the child token, asserting success.
    async fn child(&self, parent: &str, body: Value) -> String {
        let (status, answer) = self.delegate(parent, body).await;
        assert_eq!(status, StatusCode::OK, "{answer}");
        answer["token"].as_str().unwrap().to_string()
    }

    async fn decide(&self, token: &str, action: &str) -> (StatusCode, Value) {
        let input = match action.split('.').next().unwrap() {
            "file" => json!({"path": "notes.txt"}),
            "web" => json!({"url": "https://example.com"}),
            _ => json!({"command": "ls"}),
        };
        self.post("/v1/decide", token, &json!({"action": action, "input": input}))
            .await
    }

    async fn effect(&self, token: &str, action: &str) -> Value {
        let (status, answer) = self.decide(token, action).await;
        assert_eq!(status, StatusCode::OK, "{answer}");
        answer
    }

    async fn audit_record(&self, decision: &Value) -> Value {
        let id = decision["decision_id"].as_str().unwrap();
        let resp = self
            .http
            .get(self.served.url(&format!("/v1/audit?decision_id={id}")))
            .bearer_auth(ADMIN)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        let body: Value = resp.json().await.unwrap();
        body["records"][0].clone()
    }
}

fn assert_refused(status: StatusCode, body: &Value, want: StatusCode, says: &str) {
    assert_eq!(status, want, "{body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains(says), "`{says}` not in: {body}");
    assert_ne!(body["effect"], "allow", "{body}");
}

#[tokio::test]
async fn a_child_acts_within_its_scope_and_its_chain_is_recorded() {
    let h = harness().await;
    let c = Client::new(&h).await;
    let (status, minted) = c
        .delegate(
            AGENT,
            json!({"actor": "subagent:researcher", "actions": ["file.read", "web.*"], "ttl": "10m"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{minted}");
    assert_eq!(minted["chain"], json!(["token:agent-1", "subagent:researcher"]));
    assert_eq!(minted["actions"], json!(["file.read", "web.*"]));
    assert_eq!(minted["name"], "agent-1/subagent:researcher");
    assert_eq!(minted["role"], "agent");
    let token = minted["token"].as_str().unwrap();
    assert!(token.starts_with("rein_d1."), "{token}");
    let expires: jiff::Timestamp = minted["expires_at"].as_str().unwrap().parse().unwrap();
    let left = expires.duration_since(jiff::Timestamp::now());
    assert!(
        left <= jiff::SignedDuration::from_mins(10) && left > jiff::SignedDuration::from_mins(9),
        "{left:?}"
    );

    let allowed = c.effect(token, "file.read").await;
    assert_eq!(allowed["effect"], "allow", "{allowed}");
    let record = c.audit_record(&allowed).await;
    assert_eq!(
        record["actor"]["chain"],
        json!([{"kind": "token", "id": "agent-1"}, {"kind": "subagent", "id": "researcher"}]),
        "{record}"
    );
    assert_eq!(record["actor_source"]["chain"], "credential", "{record}");

    let blocked = c.effect(token, "shell.run").await;
    assert_eq!(blocked["effect"], "block", "{blocked}");
    let reason = blocked["reasons"][0].as_str().unwrap();
    assert!(
        reason.contains("chain link 2 (subagent:researcher)") && reason.contains("`shell.run`"),
        "{reason}"
    );
    assert_eq!(blocked["rules"], json!([]), "blocked before any rule: {blocked}");
    let record = c.audit_record(&blocked).await;
    assert_eq!(record["effect"], "block", "{record}");
    assert_eq!(record["actor"]["chain"][1]["id"], "researcher", "{record}");

    // A child is an agent: the approver and admin routes are not its.
    let resp = c
        .http
        .get(c.served.url("/v1/audit"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn a_wider_child_is_refused_at_minting() {
    let h = harness().await;
    let c = Client::new(&h).await;
    let ok = json!({"actor": "subagent:r", "actions": ["file.read"], "ttl": "10m"});
    let with = |key: &str, value: Value| {
        let mut body = ok.clone();
        body[key] = value;
        body
    };
    let forbidden = StatusCode::FORBIDDEN;
    let bad = StatusCode::BAD_REQUEST;
    let cases = [
        (
            with("actions", json!(["shell.run"])),
            forbidden,
            "`shell.run` is not within",
        ),
        (
            with("actions", json!(["file.read", "shell.*"])),
            forbidden,
            "`shell.*` is not within",
        ),
        (with("actions", json!(["*"])), forbidden, "`*` is not within"),
        (with("actions", json!(["file"])), forbidden, "`file` is not within"),
        (with("actions", json!([])), bad, "at least one"),
        (with("actions", json!(["web*"])), bad, "not an action pattern"),
        (
            with("ttl", json!("25h")),
            forbidden,
            "longer than a delegation may last",
        ),
        (with("ttl", json!("0s")), bad, "at least 1s"),
        (with("ttl", json!("-5m")), bad, "at least 1s"),
        (with("ttl", json!("soon")), bad, "not a duration"),
        (
            with("bind", json!({"tenant": "other"})),
            forbidden,
            "actor.tenant is bound",
        ),
        (with("bind", json!({"id": "admin-bot"})), forbidden, "actor.id is bound"),
        (with("bind", json!({"chain": "x"})), bad, "not an actor field"),
        (with("bind", json!({"level": [1]})), bad, "string, number or boolean"),
        (with("role", json!("admin")), forbidden, "wider than the parent's role"),
        (
            with("role", json!("approver")),
            forbidden,
            "wider than the parent's role",
        ),
        (with("role", json!("root")), bad, "unknown role"),
        (with("actor", json!("user:alice")), bad, "agent or subagent"),
        (with("actor", json!("token:ops")), bad, "agent or subagent"),
        (with("actor", json!("researcher")), bad, "kind:id"),
        (with("surprise", json!(1)), bad, "unknown field"),
        (
            with("approves", json!(["support"])),
            bad,
            "a child of role agent decides no approvals",
        ),
    ];
    for (body, status, says) in cases {
        let (got, answer) = c.delegate(SCOPED, body.clone()).await;
        assert_refused(got, &answer, status, says);
        let _ = body;
    }
    // The same within bounds is minted, restating what its parent binds;
    // binding more is the parent's word, not the credential's (see
    // `an_agent_cannot_launder_its_word_into_a_bound_field`).
    let (status, answer) = c.delegate(SCOPED, with("bind", json!({"tenant": "acme"}))).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let (status, answer) = c
        .delegate(SCOPED, with("bind", json!({"tenant": "acme", "task": "t-1"})))
        .await;
    assert_refused(status, &answer, forbidden, "actor.task is not bound by the parent");

    // A child cannot outlive its parent, nor a grandchild its child.
    let child = c.child(SCOPED, with("ttl", json!("2m"))).await;
    let (status, answer) = c
        .delegate(
            &child,
            json!({"actor": "subagent:g", "actions": ["file.read"], "ttl": "3m"}),
        )
        .await;
    assert_refused(status, &answer, forbidden, "outlive its parent");
    // Below a sub-agent, no link passes for a main agent.
    let (status, answer) = c
        .delegate(
            &child,
            json!({"actor": "agent:me", "actions": ["file.read"], "ttl": "1m"}),
        )
        .await;
    assert_refused(status, &answer, forbidden, "would follow a sub-agent link");
    // Without a ttl, a grandchild gets the default cut to its parent's end.
    let (status, answer) = c
        .delegate(&child, json!({"actor": "subagent:g", "actions": ["file.read"]}))
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let end: jiff::Timestamp = answer["expires_at"].as_str().unwrap().parse().unwrap();
    assert!(
        end.duration_since(jiff::Timestamp::now()) <= jiff::SignedDuration::from_mins(2),
        "{answer}"
    );

    // An approver may not make an agent of itself, nor anyone delegate
    // without a token.
    let (status, answer) = c.delegate(ALICE, ok.clone()).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{answer}");
    let resp = c
        .http
        .post(c.served.url("/v1/tokens/delegate"))
        .json(&ok)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_grandchilds_scope_is_the_intersection() {
    let h = harness().await;
    let c = Client::new(&h).await;
    // scoped: file.*, web.*; child: file.read, web.*; grandchild: file.read, web.get.
    let child = c
        .child(
            SCOPED,
            json!({"actor": "agent:helper", "actions": ["file.read", "web.*"]}),
        )
        .await;
    let (status, answer) = c
        .delegate(&child, json!({"actor": "subagent:g", "actions": ["file.write"]}))
        .await;
    assert_refused(status, &answer, StatusCode::FORBIDDEN, "chain link 3 (agent:helper)");
    let (status, minted) = c
        .delegate(
            &child,
            json!({"actor": "subagent:g", "actions": ["file.read", "web.get"], "ttl": "5m"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{minted}");
    assert_eq!(
        minted["chain"],
        json!(["user:alice", "agent:support-bot", "agent:helper", "subagent:g"])
    );
    assert_eq!(minted["name"], "scoped/agent:helper/subagent:g");
    let grandchild = minted["token"].as_str().unwrap();

    for (action, effect, link) in [
        ("file.read", "allow", ""),
        ("web.get", "allow", ""),
        ("web.post", "block", "chain link 4 (subagent:g)"),
        ("file.write", "block", "chain link 3 (agent:helper)"),
        ("shell.run", "block", "chain link 2 (agent:support-bot)"),
    ] {
        let answer = c.effect(grandchild, action).await;
        assert_eq!(answer["effect"], effect, "{action}: {answer}");
        if !link.is_empty() {
            let reason = answer["reasons"][0].as_str().unwrap();
            assert!(reason.contains(link), "{action}: {reason}");
        }
    }
    let answer = c.effect(grandchild, "file.read").await;
    let record = c.audit_record(&answer).await;
    assert_eq!(record["actor"]["chain"][0], json!({"kind": "user", "id": "alice"}));
    assert_eq!(record["actor"]["chain"][3], json!({"kind": "subagent", "id": "g"}));
    // The root's bound fields come down the chain.
    assert_eq!(record["actor"]["tenant"], "acme", "{record}");
    assert_eq!(record["actor_source"]["tenant"], "credential", "{record}");
    // The body may not contradict them.
    let (status, answer) = c
        .post(
            "/v1/decide",
            grandchild,
            &json!({"action": "file.read", "input": {"path": "a"}, "actor": {"tenant": "other"}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(answer["effect"], "block", "{answer}");
}

#[tokio::test]
async fn a_child_used_after_its_ttl_is_refused() {
    let h = harness().await;
    let c = Client::new(&h).await;
    let child = c
        .child(
            AGENT,
            json!({"actor": "subagent:brief", "actions": ["file.read"], "ttl": "1s"}),
        )
        .await;
    // Whole seconds: it ends at most a second from now.
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    let (status, answer) = c.decide(&child, "file.read").await;
    assert_refused(status, &answer, StatusCode::UNAUTHORIZED, "expired");
    assert_eq!(answer["effect"], "block", "{answer}");
    let (status, answer) = c
        .delegate(&child, json!({"actor": "subagent:x", "actions": ["file.read"]}))
        .await;
    assert_refused(status, &answer, StatusCode::UNAUTHORIZED, "expired");
}

/// Flips one character of `text` at `at` to another of the base64url
/// alphabet.
fn flip(text: &str, at: usize) -> String {
    let mut bytes = text.as_bytes().to_vec();
    bytes[at] = if bytes[at] == b'A' { b'B' } else { b'A' };
    String::from_utf8(bytes).unwrap()
}

#[tokio::test]
async fn tampered_tokens_are_refused() {
    let h = harness().await;
    let c = Client::new(&h).await;
    let narrow = c
        .child(AGENT, json!({"actor": "subagent:r", "actions": ["file.read"]}))
        .await;
    let wide = c
        .child(ADMIN, json!({"actor": "subagent:r", "actions": ["*"], "role": "admin"}))
        .await;
    let (_, answer) = c.decide(&narrow, "file.read").await;
    assert_eq!(answer["effect"], "allow", "{answer}");

    let rest = narrow.strip_prefix("rein_d1.").unwrap();
    let (payload, signature) = rest.split_once('.').unwrap();
    let (wide_payload, _) = wide.strip_prefix("rein_d1.").unwrap().split_once('.').unwrap();
    // A payload rewritten to a wider scope, signed by nobody.
    let mut json: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
    json["scopes"] = json!([[1, ["*"]]]);
    let rewritten = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&json).unwrap());
    let other = {
        let h2 = harness().await;
        let c2 = Client::new(&h2).await;
        c2.child(AGENT, json!({"actor": "subagent:r", "actions": ["file.read"]}))
            .await
    };

    let tampered = [
        (
            "payload byte",
            format!("rein_d1.{}.{signature}", flip(payload, payload.len() / 2)),
        ),
        (
            "payload first byte",
            format!("rein_d1.{}.{signature}", flip(payload, 0)),
        ),
        ("signature byte", format!("rein_d1.{payload}.{}", flip(signature, 10))),
        (
            "signature last byte",
            format!("rein_d1.{payload}.{}", flip(signature, signature.len() - 1)),
        ),
        ("swapped payload", format!("rein_d1.{wide_payload}.{signature}")),
        ("rewritten payload", format!("rein_d1.{rewritten}.{signature}")),
        ("wrong prefix", format!("rein_d2.{payload}.{signature}")),
        ("no prefix", format!("{payload}.{signature}")),
        ("padded signature", format!("rein_d1.{payload}.{signature}=")),
        ("extra part", format!("rein_d1.{payload}.{signature}.{signature}")),
        ("no signature", format!("rein_d1.{payload}.")),
        ("truncated signature", format!("rein_d1.{payload}.{}", &signature[..40])),
        ("no payload", format!("rein_d1..{signature}")),
        ("bare prefix", "rein_d1.".to_string()),
        ("another server's key", other),
        ("oversized", format!("rein_d1.{}.{signature}", "A".repeat(20_000))),
    ];
    for (what, token) in tampered {
        let (status, answer) = c.decide(&token, "file.read").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{what}: {answer}");
        assert_eq!(answer["effect"], "block", "{what}: {answer}");
        assert_eq!(answer["error"]["code"], "unauthorized", "{what}: {answer}");
    }
    // The genuine one still works (nothing was cached wrongly).
    let (_, answer) = c.decide(&narrow, "file.read").await;
    assert_eq!(answer["effect"], "allow", "{answer}");
}

#[tokio::test]
async fn a_child_dies_with_its_root_token() {
    let h = harness().await;
    let tokens_path = h.dir.path().join("tokens.yaml");
    let c = Client::new(&h).await;
    let body = json!({"actor": "subagent:r", "actions": ["file.read"]});
    let from_agent = c.child(AGENT, body.clone()).await;
    let from_scoped = c.child(SCOPED, body.clone()).await;
    let from_agent2 = c.child(AGENT2, body.clone()).await;
    drop(c);
    let grandchild = {
        let c = Client::new(&h).await;
        c.child(&from_scoped, json!({"actor": "subagent:g", "actions": ["file.read"]}))
            .await
    };

    // Restarted on the same files: the key was kept, every child holds.
    let h = h.restart(|_| {}).await;
    {
        let c = Client::new(&h).await;
        for t in [&from_agent, &from_scoped, &from_agent2, &grandchild] {
            assert_eq!(c.effect(t, "file.read").await["effect"], "allow");
        }
    }

    // agent-1 removed; scoped narrowed (a change to its entry); agent-2 kept.
    let text = tokens_file()
        .replace(&format!("  - {{name: agent-1, role: agent, token: {AGENT}}}\n"), "")
        .replace("actions: [\"file.*\", \"web.*\"]", "actions: [\"file.*\"]");
    assert_ne!(text, tokens_file());
    std::fs::write(&tokens_path, text).unwrap();
    let h = h.restart(|_| {}).await;
    let c = Client::new(&h).await;
    let (status, answer) = c.decide(&from_agent, "file.read").await;
    assert_refused(
        status,
        &answer,
        StatusCode::UNAUTHORIZED,
        "`agent-1` is no longer in the tokens file",
    );
    for t in [&from_scoped, &grandchild] {
        let (status, answer) = c.decide(t, "file.read").await;
        assert_refused(
            status,
            &answer,
            StatusCode::UNAUTHORIZED,
            "`scoped` changed in the tokens file",
        );
    }
    assert_eq!(c.effect(&from_agent2, "file.read").await["effect"], "allow");

    // A new delegation key: no child of the old one holds.
    drop(c);
    std::fs::remove_file(h.dir.path().join(rein_server::DEFAULT_DELEGATION_KEY_FILE)).unwrap();
    let h = h.restart(|_| {}).await;
    let c = Client::new(&h).await;
    let (status, answer) = c.decide(&from_agent2, "file.read").await;
    assert_refused(status, &answer, StatusCode::UNAUTHORIZED, "signature does not verify");
}

#[tokio::test]
async fn static_tokens_bind_their_chain_and_actions() {
    let h = harness().await;
    let c = Client::new(&h).await;
    let answer = c.effect(SCOPED, "web.get").await;
    assert_eq!(answer["effect"], "allow", "{answer}");
    let record = c.audit_record(&answer).await;
    assert_eq!(
        record["actor"]["chain"],
        json!([{"kind": "user", "id": "alice"}, {"kind": "agent", "id": "support-bot"}])
    );
    let answer = c.effect(SCOPED, "shell.run").await;
    assert_eq!(answer["effect"], "block", "{answer}");
    let reason = answer["reasons"][0].as_str().unwrap();
    assert!(reason.contains("chain link 2 (agent:support-bot)"), "{reason}");
    // A token without `chain:` speaks for itself, `token:<name>`.
    let answer = c.effect(AGENT2, "shell.run").await;
    assert_eq!(answer["effect"], "allow", "{answer}");
    let record = c.audit_record(&answer).await;
    assert_eq!(record["actor"]["chain"], json!([{"kind": "token", "id": "agent-2"}]));
    // A body naming another chain is blocked.
    let (_, answer) = c
        .post(
            "/v1/decide",
            AGENT2,
            &json!({"action": "file.read", "input": {"path": "a"}, "actor": {"chain": [{"kind": "user", "id": "alice"}]}}),
        )
        .await;
    assert_eq!(answer["effect"], "block", "{answer}");
}

/// The delegation key is one of the server's own files: a hook event may
/// neither read nor change it, whatever the policy says.
#[tokio::test]
async fn hook_events_cannot_touch_the_delegation_key() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let h = Harness::with(|c| {
        c.policy_paths = vec![
            root.join("policies/agents/coding-agent.yaml"),
            root.join("examples/claude-code/policy.yaml"),
        ];
    })
    .await;
    let key = h.dir.path().join(rein_server::DEFAULT_DELEGATION_KEY_FILE);
    assert!(key.exists());
    let key = key.to_str().unwrap();
    for command in [
        format!("cat {key}"),
        format!("echo x > {key}"),
        format!("cp /tmp/k {key}"),
    ] {
        let event = json!({"session_id": "s", "cwd": "/tmp/rein-hook-project", "hook_event_name": "PreToolUse",
                           "tool_name": "Bash", "tool_input": {"command": command}, "tool_use_id": "toolu_1"});
        let (status, body) = h
            .call(
                axum::http::Method::POST,
                "/v1/hooks/claude-code",
                Some(AGENT),
                Some(event),
            )
            .await;
        assert_eq!(status, axum::http::StatusCode::OK);
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

/// Requires `actor.tenant` set by the credential, and lets only acme's
/// agents write.
const TENANT_POLICY: &str = r#"version: "tenant-bound"
default: block
contracts:
  actor:
    id: {type: string, optional: true}
    tenant: {type: string, bound: true}
  actions:
    file.write:
      input: {path: string}
rules:
  - id: acme_writes
    action: file.write
    when: actor.tenant == "acme"
    effect: allow
"#;

/// A field the parent does not bind is the parent's word (it could write
/// any value in a body). Bound in a child, it would count as the
/// credential's: satisfy a policy's `bound: true` and read as
/// `actor_source: credential`. So an agent with no tenant could mint
/// itself acme's. Only fields the parent binds may be bound, with its
/// value; an admin (as trusted as the tokens file) may bind more.
#[tokio::test]
async fn an_agent_cannot_launder_its_word_into_a_bound_field() {
    let h = Harness::with_policy(TENANT_POLICY, |config| {
        std::fs::write(config.tokens_path.as_ref().unwrap(), tokens_file()).unwrap();
    })
    .await;
    let c = Client::new(&h).await;
    let write = json!({"action": "file.write", "input": {"path": "a"}, "actor": {"tenant": "acme"}});
    // The body's word is not enough…
    let (status, answer) = c.post("/v1/decide", AGENT, &write).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["effect"], "block", "{answer}");
    assert!(
        answer["reasons"][0]
            .as_str()
            .unwrap()
            .contains("actor.tenant must be set by the credential"),
        "{answer}"
    );
    // …nor is it through a child, whatever the kind, value or extra field.
    for bind in [
        json!({"tenant": "acme"}),
        json!({"tenant": "globex"}),
        json!({"tenant": 7}),
        json!({"role": "admin"}),
        json!({"id": "agent-1"}),
    ] {
        let body = json!({"actor": "subagent:w", "actions": ["file.write"], "bind": bind});
        let (status, answer) = c.delegate(AGENT, body).await;
        assert_refused(status, &answer, StatusCode::FORBIDDEN, "is not bound by the parent");
    }
    // A grandchild of a token that binds the tenant keeps it, and may
    // restate it, but binds nothing its chain does not.
    let child = c
        .child(
            SCOPED,
            json!({"actor": "agent:w", "actions": ["file.write"], "bind": {"tenant": "acme"}}),
        )
        .await;
    let (status, answer) = c
        .delegate(
            &child,
            json!({"actor": "subagent:g", "actions": ["file.write"], "bind": {"desk": "x"}}),
        )
        .await;
    assert_refused(
        status,
        &answer,
        StatusCode::FORBIDDEN,
        "actor.desk is not bound by the parent",
    );
    let answer = c
        .post(
            "/v1/decide",
            &child,
            &json!({"action": "file.write", "input": {"path": "a"}}),
        )
        .await
        .1;
    assert_eq!(answer["effect"], "allow", "{answer}");
    // An admin says who a credential is, as the tokens file does.
    let by_admin = c
        .child(
            ADMIN,
            json!({"actor": "agent:w", "actions": ["file.write"], "bind": {"tenant": "acme"}}),
        )
        .await;
    let (status, answer) = c
        .post(
            "/v1/decide",
            &by_admin,
            &json!({"action": "file.write", "input": {"path": "a"}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["effect"], "allow", "{answer}");
    let record = c.audit_record(&answer).await;
    assert_eq!(record["actor_source"]["tenant"], "credential", "{record}");
    // Even an admin binds an id only as text: self-approval compares ids.
    let (status, answer) = c
        .delegate(
            ADMIN,
            json!({"actor": "agent:w", "actions": ["file.write"], "bind": {"id": 1001}}),
        )
        .await;
    assert_refused(status, &answer, StatusCode::BAD_REQUEST, "actor.id must be a string");
}

/// A child's name is `<parent>/<kind:id>`: a link id holding `/` would
/// name another identity (`bot/subagent:r/agent:x` is the grandchild
/// `agent:x` of `bot/subagent:r`), sharing its sessions, outcomes and
/// approvals. Refused, as `/` in a static token's name is.
#[tokio::test]
async fn a_link_id_cannot_make_a_child_pass_for_another_identity() {
    let h = harness().await;
    let c = Client::new(&h).await;
    for actor in ["subagent:r/subagent:x", "agent:a/b", "subagent:/", "agent:x/"] {
        let (status, answer) = c
            .delegate(SCOPED, json!({"actor": actor, "actions": ["file.read"]}))
            .await;
        assert_refused(status, &answer, StatusCode::BAD_REQUEST, "cannot hold `/`");
    }
    // The grandchild is what that name means.
    let child = c
        .child(SCOPED, json!({"actor": "subagent:r", "actions": ["file.read"]}))
        .await;
    let (status, answer) = c
        .delegate(&child, json!({"actor": "subagent:x", "actions": ["file.read"]}))
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["name"], "scoped/subagent:r/subagent:x", "{answer}");
}
