//! Issue 14 against a real SQLite file: what a credential binds (fields,
//! the delegation chain, the scopes of its links) is set and checked
//! before any rule, explain says what decide does, and approvals are
//! judged on every id of the requester and of the approver.

// Helpers outside `#[test]` functions panic on failure too; that is the report.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use rein_engine::{Effect, Policy, Request};
use rein_runtime::{ActionScope, Answer, Approver, ChainLink, Credential, Runtime, RuntimeConfig};
use rein_store::{ApprovalError, AuditQuery, AuditRecord, SqliteStore, Store, Verification};
use serde_json::json;
use std::path::Path;
use std::sync::Arc;

const POLICY: &str = r#"
default: allow
contracts:
  actor:
    id: {type: string, optional: true}
  actions:
    pay:
      input:
        amount: {type: int, min: 0}
    note:
      input: {text: string}
    fetch:
      input: {url: string}
rules:
  - id: big
    action: pay
    when: input.amount > 100
    effect: require_approval
    approval: {role: finance}
  - id: huge
    action: pay
    when: input.amount > 10000
    effect: block
  - id: only_alices_agents_pay_much
    action: pay
    when: input.amount > 5000 && !actor.chain.exists(l, l.kind == "user" && l.id == "alice")
    effect: block
    reason: only agents acting for alice pay over 5000
"#;

/// The same, requiring the actor's id and tenant set by the credential
/// (and the chain, in `REQUIRES_CHAIN`).
const REQUIRES_ID_AND_TENANT: &str = r#"
default: allow
contracts:
  actor:
    id: {type: string, bound: true}
    tenant: {type: string, bound: true}
  actions:
    note:
      input: {text: string}
rules:
  - id: no_shouting
    action: note
    when: input.text == "HI"
    effect: block
"#;

const REQUIRES_CHAIN: &str = r#"
default: allow
contracts:
  actor:
    id: {type: string, optional: true}
    chain: {bound: true}
  actions:
    note:
      input: {text: string}
"#;

fn config() -> RuntimeConfig {
    RuntimeConfig {
        hmac_key: b"identity test key".to_vec(),
        ..RuntimeConfig::default()
    }
}

fn open(db: &Path, policy: &str) -> (Arc<Runtime>, Arc<SqliteStore>) {
    let store = Arc::new(SqliteStore::open(db).unwrap());
    let rt = Runtime::new(Policy::from_yaml_str(policy).unwrap(), store.clone(), config());
    (Arc::new(rt), store)
}

fn link(text: &str) -> ChainLink {
    ChainLink::parse(text).unwrap()
}

/// A credential binding `fields` and the chain `links` (`kind:id` each),
/// with `scopes` as `(link index, "pattern,…")`.
fn credential(fields: serde_json::Value, links: &[&str], scopes: &[(usize, &str)]) -> Credential {
    Credential {
        fields: fields.as_object().unwrap().clone(),
        chain: (!links.is_empty()).then(|| links.iter().map(|l| link(l)).collect()),
        scopes: scopes
            .iter()
            .map(|(i, s)| (*i, ActionScope::parse(s).unwrap()))
            .collect(),
        ..Credential::default()
    }
}

fn pay(amount: i64, actor: serde_json::Value) -> Request {
    Request::new("pay").input(json!({"amount": amount})).actor(actor)
}

fn note(actor: serde_json::Value) -> Request {
    Request::new("note").input(json!({"text": "hi"})).actor(actor)
}

fn fetch(actor: serde_json::Value) -> Request {
    Request::new("fetch")
        .input(json!({"url": "https://example.com"}))
        .actor(actor)
}

async fn record_of(store: &SqliteStore, answer: &Answer) -> AuditRecord {
    let records = store
        .query_audit(&AuditQuery {
            decision_id: Some(answer.decision_id.clone()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(records.len(), 1, "one record of {}", answer.decision_id);
    records.into_iter().next().unwrap()
}

fn source<'r>(record: &'r AuditRecord, field: &str) -> Option<&'r str> {
    record.entry.actor_source.as_ref()?.get(field).map(AsRef::as_ref)
}

/// A bound chain is set on the actor as `actor.chain`, recorded as coming
/// from the credential, and carried by the answer (and its JSON form); a
/// body naming the same chain is not a conflict.
#[tokio::test]
async fn the_bound_chain_is_set_recorded_and_answered() {
    let dir = tempfile::tempdir().unwrap();
    let (rt, store) = open(&dir.path().join("rein.db"), POLICY);
    let bot = credential(json!({"id": "bot"}), &["user:alice", "agent:bot"], &[]);
    let chain = json!([{"kind": "user", "id": "alice"}, {"kind": "agent", "id": "bot"}]);

    let a = rt
        .decide_bound(pay(5, json!({})), None, Some("agent-1"), Some(&bot))
        .await;
    assert_eq!(a.effect, Effect::Allow, "{:?}", a.reasons);
    assert_eq!(a.chain, bot.chain);
    let answer = serde_json::to_value(&a).unwrap();
    assert_eq!(answer["chain"], chain);
    let r = record_of(&store, &a).await;
    assert_eq!(r.entry.actor, json!({"id": "bot", "chain": chain}));
    assert_eq!(source(&r, "chain"), Some("credential"));
    assert_eq!(source(&r, "id"), Some("credential"));

    // The same chain in the body is the credential's.
    let a = rt
        .decide_bound(pay(5, json!({"chain": chain})), None, Some("agent-1"), Some(&bot))
        .await;
    assert_eq!(a.effect, Effect::Allow, "{:?}", a.reasons);
    assert_eq!(source(&record_of(&store, &a).await, "chain"), Some("credential"));

    // Rules read the bound chain.
    let a = rt
        .decide_bound(pay(6000, json!({})), None, Some("agent-1"), Some(&bot))
        .await;
    assert_eq!(a.effect, Effect::RequireApproval, "{:?}", a.reasons);
    let bobs = credential(json!({"id": "bot"}), &["user:bob", "agent:bot"], &[]);
    let a = rt
        .decide_bound(pay(6000, json!({})), None, Some("agent-1"), Some(&bobs))
        .await;
    assert_eq!(a.effect, Effect::Block, "{:?}", a.reasons);
    assert!(
        a.rules.contains(&"only_alices_agents_pay_much".to_string()),
        "{:?}",
        a.rules
    );
    assert_eq!(a.reasons, ["only agents acting for alice pay over 5000"]);

    // Without a chain bound, the answer has none, and a body's chain is
    // the caller's.
    let fields_only = credential(json!({"id": "bot"}), &[], &[]);
    let a = rt
        .decide_bound(
            pay(5, json!({"chain": chain})),
            None,
            Some("agent-1"),
            Some(&fields_only),
        )
        .await;
    assert_eq!(a.effect, Effect::Allow, "{:?}", a.reasons);
    assert_eq!(a.chain, None);
    assert!(serde_json::to_value(&a).unwrap().get("chain").is_none());
    assert_eq!(source(&record_of(&store, &a).await, "chain"), Some("caller"));
    assert_eq!(store.verify_audit().await.unwrap(), Verification::Intact { records: 5 });
}

/// A body whose `actor.chain` differs from the bound one in any way (other
/// ids, order, a link more or less, an extra key, another shape) is
/// blocked before any rule and recorded as sent, marked caller-supplied.
#[tokio::test]
async fn a_chain_contradicting_the_credential_is_blocked_and_recorded_as_sent() {
    let dir = tempfile::tempdir().unwrap();
    let (rt, store) = open(&dir.path().join("rein.db"), POLICY);
    let bot = credential(json!({"id": "bot"}), &["user:alice", "agent:bot"], &[]);
    let forged = [
        json!([{"kind": "user", "id": "admin"}, {"kind": "agent", "id": "bot"}]),
        json!([{"kind": "agent", "id": "bot"}, {"kind": "user", "id": "alice"}]),
        json!([{"kind": "user", "id": "alice"}]),
        json!([{"kind": "user", "id": "alice"}, {"kind": "agent", "id": "bot"}, {"kind": "agent", "id": "x"}]),
        json!([{"kind": "user", "id": "alice", "admin": true}, {"kind": "agent", "id": "bot"}]),
        json!([{"kind": "person", "id": "alice"}, {"kind": "agent", "id": "bot"}]),
        json!("user:alice,agent:bot"),
        json!([]),
        json!(null),
    ];
    for chain in forged {
        // A rule would require approval; the block comes first.
        let a = rt
            .decide_bound(pay(500, json!({"chain": chain})), None, Some("agent-1"), Some(&bot))
            .await;
        assert_eq!(a.effect, Effect::Block, "{chain}");
        assert_eq!(a.reasons, ["actor.chain is set by the credential"], "{chain}");
        assert!(a.rules.is_empty() && a.approval.is_none(), "{chain}");
        let r = record_of(&store, &a).await;
        assert_eq!(r.entry.actor["chain"], chain);
        assert_eq!(source(&r, "chain"), Some("caller"));
        // The fields it does not contradict are still set.
        assert_eq!(r.entry.actor["id"], "bot");
    }
    // An actor that is not an object cannot carry what is bound.
    let a = rt
        .decide_bound(pay(5, json!("alice")), None, Some("agent-1"), Some(&bot))
        .await;
    assert_eq!(a.effect, Effect::Block);
    assert!(a.reasons[0].contains("is set by the credential"), "{:?}", a.reasons);
    let chain_only = credential(json!({}), &["user:alice"], &[]);
    let a = rt
        .decide_bound(pay(5, json!(["x"])), None, Some("agent-1"), Some(&chain_only))
        .await;
    assert_eq!(a.effect, Effect::Block);
    assert!(
        a.reasons[0].starts_with("actor.chain is set by the credential"),
        "{:?}",
        a.reasons
    );
}

/// A request must be within the scope of every link of the chain (a
/// grandchild's scope is the intersection of its own and its parent's):
/// outside one, it is blocked before any rule, naming the link that
/// refused. The check does not depend on the actor's shape.
#[tokio::test]
async fn an_action_outside_a_links_scope_is_blocked_naming_the_link() {
    let dir = tempfile::tempdir().unwrap();
    let (rt, store) = open(&dir.path().join("rein.db"), POLICY);
    // agent:bot was delegated pay and note; its child subagent:r only note
    // and fetch (wider than its parent in fetch: the runtime still holds
    // it to the intersection, whatever minting let through).
    let grandchild = credential(
        json!({"id": "r"}),
        &["user:alice", "agent:bot", "subagent:r"],
        &[(1, "pay,note"), (2, "note,fetch")],
    );
    let a = rt
        .decide_bound(note(json!({})), None, Some("child"), Some(&grandchild))
        .await;
    assert_eq!(a.effect, Effect::Allow, "{:?}", a.reasons);

    let a = rt
        .decide_bound(pay(5, json!({})), None, Some("child"), Some(&grandchild))
        .await;
    assert_eq!(a.effect, Effect::Block);
    assert_eq!(
        a.reasons,
        ["delegation: action `pay` is outside the scope of chain link 3 (subagent:r), which allows note, fetch"]
    );
    assert!(a.rules.is_empty());
    let a = rt
        .decide_bound(fetch(json!({})), None, Some("child"), Some(&grandchild))
        .await;
    assert_eq!(a.effect, Effect::Block);
    assert_eq!(
        a.reasons,
        ["delegation: action `fetch` is outside the scope of chain link 2 (agent:bot), which allows pay, note"]
    );
    // Recorded, with the chain that was refused.
    let r = record_of(&store, &a).await;
    assert_eq!(r.entry.effect, "block");
    assert_eq!(r.entry.actor["chain"][2]["id"], "r");
    // An actor of another shape, or a contradicted field, does not skip it.
    let a = rt
        .decide_bound(fetch(json!("r")), None, Some("child"), Some(&grandchild))
        .await;
    assert_eq!(a.effect, Effect::Block);
    assert!(a.reasons[0].contains("chain link 2 (agent:bot)"), "{:?}", a.reasons);
    let a = rt
        .decide_bound(fetch(json!({"id": "boss"})), None, Some("child"), Some(&grandchild))
        .await;
    assert_eq!(a.effect, Effect::Block);
    assert!(
        a.reasons[0].contains("actor.id is set by the credential"),
        "{:?}",
        a.reasons
    );
    assert!(a.reasons[0].contains("chain link 2 (agent:bot)"), "{:?}", a.reasons);
    // A scope on a credential that binds nothing else is still checked.
    let scoped = Credential {
        scopes: vec![(0, ActionScope::parse("note").unwrap())],
        ..Credential::default()
    };
    let a = rt.decide_bound(pay(5, json!(7)), None, None, Some(&scoped)).await;
    assert_eq!(a.effect, Effect::Block);
    assert!(a.reasons[0].starts_with("delegation: action `pay`"), "{:?}", a.reasons);
}

/// `explain` refuses exactly what `decide` blocks before the rules, with
/// the same reason, and otherwise explains the request the rules see.
#[tokio::test]
async fn explain_agrees_with_decide() {
    let dir = tempfile::tempdir().unwrap();
    let (rt, _store) = open(&dir.path().join("rein.db"), POLICY);
    let grandchild = credential(
        json!({"id": "r"}),
        &["user:alice", "agent:bot", "subagent:r"],
        &[(1, "pay,note"), (2, "pay")],
    );
    let fields_only = credential(json!({"id": "bot"}), &[], &[]);
    let cases: Vec<(Request, Option<&Credential>)> = vec![
        (pay(5, json!({})), Some(&grandchild)),
        (pay(500, json!({})), Some(&grandchild)),
        (pay(50_000, json!({})), Some(&grandchild)),
        (note(json!({})), Some(&grandchild)),
        (pay(5, json!({"id": "boss"})), Some(&grandchild)),
        (pay(5, json!({"chain": []})), Some(&grandchild)),
        (pay(5, json!({"id": "bot"})), Some(&fields_only)),
        (pay(5, json!({"id": "boss"})), Some(&fields_only)),
        (pay(500, json!({"id": "boss"})), None),
    ];
    let mut effects = Vec::new();
    for (request, credential) in cases {
        let explained = rt.explain_bound(request.clone(), Some("c"), credential);
        let decided = rt.decide_bound(request.clone(), None, Some("c"), credential).await;
        assert_eq!(explained.effect(), decided.effect, "{request:?}");
        let json = explained.to_json();
        if decided.rules.is_empty() && decided.effect == Effect::Block {
            assert_eq!(json["decision"]["reasons"], json!(decided.reasons), "{request:?}");
        }
        effects.push(decided.effect);
    }
    use Effect::{Allow, Block, RequireApproval};
    assert_eq!(
        effects,
        [
            Allow,
            RequireApproval,
            Block,
            Block,
            Block,
            Block,
            Allow,
            Block,
            RequireApproval
        ]
    );
}

/// Opens an approval for `requester` (sent by client `agent-1`) and
/// returns its id.
async fn open_approval(rt: &Runtime, requester: Option<&Credential>, actor: serde_json::Value) -> String {
    let a = rt.decide_bound(pay(500, actor), None, Some("agent-1"), requester).await;
    assert_eq!(a.effect, Effect::RequireApproval, "{:?}", a.reasons);
    a.approval.expect("an approval").id
}

/// Self-approval is judged on every id of the requester (the request's
/// actor id, its client, each link of its chain) against every id of the
/// approver (token name, bound actor id, each link of their chain): a
/// second id on the requester's credential, or a credential delegated
/// from the requester, may not decide it; an unrelated approver may.
#[tokio::test]
async fn self_approval_is_judged_on_every_id_of_both_credentials() {
    let dir = tempfile::tempdir().unwrap();
    let (rt, store) = open(&dir.path().join("rein.db"), POLICY);
    let requester = credential(json!({"id": "bot"}), &["user:alice", "agent:bot"], &[]);
    let id = open_approval(&rt, Some(&requester), json!({})).await;
    let record = store.get_approval(&id).await.unwrap().unwrap();
    assert_eq!(record.requested_chain, ["alice", "bot"]);
    assert_eq!(record.requested_by.as_deref(), Some("bot"));

    let refused = [
        // A second actor id of the requester's credential (its person),
        // as the approver's bound actor id…
        ("lead", credential(json!({"id": "alice"}), &[], &[])),
        // …or as a link of the approver's chain.
        ("lead", credential(json!({}), &["user:alice", "agent:reviewer"], &[])),
        // A child delegated from the requester: its chain holds it.
        (
            "helper-token",
            credential(
                json!({"id": "helper"}),
                &["user:alice", "agent:bot", "subagent:helper"],
                &[(2, "pay")],
            ),
        ),
        // The requester's own credential under another token name.
        ("bot-approver", requester.clone()),
    ];
    for (name, approver_credential) in &refused {
        let approver = Approver {
            name,
            roles: None,
            credential: Some(approver_credential),
        };
        assert!(!approver.may_decide(&record), "{name}: {approver_credential:?}");
        assert_eq!(rt.sealed_request(&record, &approver).unwrap(), None);
        for grant in [true, false] {
            let e = rt
                .decide_approval(&id, grant, approver.clone(), None)
                .await
                .unwrap_err();
            assert!(
                matches!(e, rein_runtime::RuntimeError::Approval(ApprovalError::SelfApproval(_))),
                "{name}: {e}"
            );
        }
    }
    // Token names alone, as the store checks them too: the client, and a
    // name that is a link of the chain.
    for name in ["agent-1", "alice"] {
        let e = rt
            .grant(
                &id,
                Approver {
                    name,
                    roles: None,
                    credential: None,
                },
                None,
            )
            .await
            .unwrap_err();
        assert!(e.to_string().contains("cannot approve"), "{name}: {e}");
    }
    assert_eq!(
        store.get_approval(&id).await.unwrap().unwrap().state,
        rein_store::ApprovalState::Pending
    );

    // An unrelated approver (their own person and agent) may.
    let carol = credential(json!({"id": "carol"}), &["user:carol", "agent:desk"], &[]);
    let approver = Approver {
        name: "lead",
        roles: Some(&["finance".to_string()]),
        credential: Some(&carol),
    };
    assert!(approver.may_decide(&record));
    let granted = rt.grant(&id, approver, None).await.unwrap();
    assert_eq!(granted.decided_by.as_deref(), Some("lead"));
    assert_eq!(granted.requested_chain, ["alice", "bot"]);
    // And the grant is used by the identical request from the requester.
    let a = rt
        .decide_bound(pay(500, json!({})), Some(id), Some("agent-1"), Some(&requester))
        .await;
    assert_eq!(a.effect, Effect::Allow, "{:?}", a.reasons);
}

/// A request without a credential keeps the chain its body states on the
/// approval: its links may not approve it either (more ids refuse more
/// approvers, never fewer).
#[tokio::test]
async fn a_caller_supplied_chain_is_kept_on_the_approval() {
    let dir = tempfile::tempdir().unwrap();
    let (rt, store) = open(&dir.path().join("rein.db"), POLICY);
    let chain = json!([{"kind": "user", "id": "dave"}, {"kind": "agent", "id": "x"}, {"kind": "tool", "id": "dave"}]);
    let id = open_approval(&rt, None, json!({"id": "x", "chain": chain})).await;
    let record = store.get_approval(&id).await.unwrap().unwrap();
    assert_eq!(record.requested_chain, ["dave", "x"]);
    let dave = credential(json!({"id": "dave"}), &[], &[]);
    let e = rt
        .grant(
            &id,
            Approver {
                name: "lead",
                roles: None,
                credential: Some(&dave),
            },
            None,
        )
        .await
        .unwrap_err();
    assert!(e.to_string().contains("cannot approve"), "{e}");
}

/// A store of schema version 5 (before `requested_chain`) opens as the
/// current version: its pending approval reads with no chain, is still
/// judged on the requester's actor id and client, and is granted by
/// someone else; approvals opened from then on keep their chain.
#[tokio::test]
async fn a_store_from_before_requested_chain_is_migrated() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("rein.db");
    let requester = credential(json!({"id": "bot"}), &["user:alice", "agent:bot"], &[]);
    let old = {
        let (rt, store) = open(&db, POLICY);
        let id = open_approval(&rt, Some(&requester), json!({})).await;
        drop(rt);
        store.close().await.unwrap();
        id
    };
    // What version 5 had: no `requested_chain`.
    let raw = rusqlite::Connection::open(&db).unwrap();
    raw.execute_batch("ALTER TABLE approvals DROP COLUMN requested_chain; PRAGMA user_version = 5;")
        .unwrap();
    drop(raw);
    let e = SqliteStore::open_read_only(&db).unwrap_err();
    assert!(e.0.contains("schema version is 5"), "{e}");

    let (rt, store) = open(&db, POLICY);
    let version: i64 = rusqlite::Connection::open(&db)
        .unwrap()
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, 8);
    let record = store.get_approval(&old).await.unwrap().unwrap();
    assert!(record.requested_chain.is_empty());
    for name in ["bot", "agent-1"] {
        let approver = Approver {
            name,
            roles: None,
            credential: None,
        };
        assert!(rt.grant(&old, approver, None).await.is_err(), "{name}");
    }
    let carol = credential(json!({"id": "carol"}), &["user:carol"], &[]);
    let lead = Approver {
        name: "lead",
        roles: None,
        credential: Some(&carol),
    };
    rt.grant(&old, lead.clone(), None).await.unwrap();
    let new = open_approval(&rt, Some(&requester), json!({})).await;
    assert_eq!(
        store.get_approval(&new).await.unwrap().unwrap().requested_chain,
        ["alice", "bot"]
    );
    assert!(matches!(
        store.verify_audit().await.unwrap(),
        Verification::Intact { .. }
    ));
}

/// A policy requiring bound fields blocks, before any rule, a request
/// whose credential does not bind one (whatever its body says), and a
/// request with no credential; explain refuses the same. A credential
/// binding them all is decided by the rules.
#[tokio::test]
async fn required_bound_fields_block_a_request_whose_credential_lacks_them() {
    let dir = tempfile::tempdir().unwrap();
    let (rt, store) = open(&dir.path().join("rein.db"), REQUIRES_ID_AND_TENANT);
    let hi = |text: &str, actor: serde_json::Value| Request::new("note").input(json!({"text": text})).actor(actor);
    let full = credential(
        json!({"id": "bot", "tenant": "acme"}),
        &["user:alice", "agent:bot"],
        &[],
    );
    let id_only = credential(json!({"id": "bot"}), &["user:alice", "agent:bot"], &[]);

    let a = rt
        .decide_bound(hi("hello", json!({})), None, Some("c"), Some(&full))
        .await;
    assert_eq!(a.effect, Effect::Allow, "{:?}", a.reasons);
    let a = rt.decide_bound(hi("HI", json!({})), None, Some("c"), Some(&full)).await;
    assert_eq!(a.rules, ["no_shouting"]);

    let unbound = "actor.tenant must be set by the credential; this request's credential does not bind it";
    // The body's own tenant does not make it bound.
    for actor in [json!({}), json!({"tenant": "acme"})] {
        let a = rt
            .decide_bound(hi("HI", actor.clone()), None, Some("c"), Some(&id_only))
            .await;
        assert_eq!(a.effect, Effect::Block);
        assert_eq!(a.reasons, [unbound], "{actor}");
        assert!(a.rules.is_empty(), "judged before the rules");
        let explained = rt.explain_bound(hi("HI", actor), Some("c"), Some(&id_only));
        assert_eq!(explained.to_json()["decision"]["reasons"], json!([unbound]));
        let r = record_of(&store, &a).await;
        assert_eq!(r.entry.reasons, [unbound]);
        assert_eq!(source(&r, "id"), Some("credential"));
    }

    // No credential at all: the library, a hook, the MCP gateway.
    let none = "actor.id must be set by the credential; this request has no credential that binds it";
    let a = rt
        .decide(hi("hello", json!({"id": "bot", "tenant": "acme"})), None)
        .await;
    assert_eq!(a.effect, Effect::Block);
    assert_eq!(a.reasons, [none]);
    assert_eq!(record_of(&store, &a).await.entry.actor_source, None);
    let a = rt.decide_bound(hi("hello", json!({})), None, Some("c"), None).await;
    assert_eq!(a.reasons, [none]);
    let explained = rt.explain_from(hi("hello", json!({})), None);
    assert_eq!(explained.effect(), Effect::Block);
    assert_eq!(explained.to_json()["decision"]["reasons"], json!([none]));

    // A contradiction and a missing field are both said.
    let a = rt
        .decide_bound(hi("hello", json!({"id": "boss"})), None, Some("c"), Some(&id_only))
        .await;
    assert_eq!(a.reasons, [format!("actor.id is set by the credential; {unbound}")]);

    // `chain: {bound: true}`: fields alone do not bind a chain.
    rt.set_policy(Policy::from_yaml_str(REQUIRES_CHAIN).unwrap());
    let fields_only = credential(json!({"id": "bot"}), &[], &[]);
    let a = rt
        .decide_bound(hi("hello", json!({})), None, Some("c"), Some(&fields_only))
        .await;
    assert_eq!(
        a.reasons,
        ["actor.chain must be set by the credential; this request's credential does not bind it"]
    );
    let a = rt
        .decide_bound(hi("hello", json!({})), None, Some("c"), Some(&id_only))
        .await;
    assert_eq!(a.effect, Effect::Allow, "{:?}", a.reasons);
    assert!(matches!(
        store.verify_audit().await.unwrap(),
        Verification::Intact { .. }
    ));
}

/// Replay judges what the identity step judged: a request refused for
/// contradicting its credential or leaving a delegated scope stays
/// refused under any policy (it is not reported as newly allowed), and a
/// policy that newly requires a bound field blocks the recorded requests
/// whose record does not say the credential set it.
#[tokio::test]
async fn replay_judges_bound_fields_as_the_runtime_does() {
    let dir = tempfile::tempdir().unwrap();
    let (rt, store) = open(&dir.path().join("rein.db"), POLICY);
    let bot = credential(json!({"id": "bot"}), &["user:alice", "agent:bot"], &[(1, "note")]);
    let bound = rt.decide_bound(note(json!({})), None, Some("c"), Some(&bot)).await;
    assert_eq!(bound.effect, Effect::Allow, "{:?}", bound.reasons);
    let unbound = rt.decide_from(note(json!({"id": "bot"})), None, Some("c")).await;
    assert_eq!(unbound.effect, Effect::Allow);
    let contradicted = rt
        .decide_bound(note(json!({"id": "boss"})), None, Some("c"), Some(&bot))
        .await;
    assert_eq!(contradicted.effect, Effect::Block);
    let outside = rt.decide_bound(pay(5, json!({})), None, Some("c"), Some(&bot)).await;
    assert_eq!(outside.effect, Effect::Block);

    // Unchanged policy: nothing changes.
    let same = rein_runtime::replay(store.as_ref(), &Policy::from_yaml_str(POLICY).unwrap())
        .await
        .unwrap();
    assert_eq!(same.replayed, 4);
    assert!(same.changes.is_empty(), "{:?}", same.changes);

    // Requiring the id bound: only the request without a credential changes.
    let requiring = POLICY.replace("id: {type: string, optional: true}", "id: {type: string, bound: true}");
    let report = rein_runtime::replay(store.as_ref(), &Policy::from_yaml_str(&requiring).unwrap())
        .await
        .unwrap();
    assert_eq!(report.replayed, 4);
    assert_eq!(report.changes.len(), 1, "{:?}", report.changes);
    let change = &report.changes[0];
    assert_eq!(change.decision_id, unbound.decision_id);
    assert_eq!(
        (change.old_effect.as_str(), change.new_effect),
        ("allow", Effect::Block)
    );
    assert_eq!(
        change.new_reasons,
        ["actor.id must be set by the credential; this request has no credential that binds it"]
    );
}
