//! Holes found by attacking issue 14's identity binding, in the
//! self-approval check: each test states what must hold (both failed
//! before the fix in `identity.rs` / `lib.rs`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use rein_engine::{Effect, Policy, Request};
use rein_runtime::{Approver, ChainLink, Credential, Runtime, RuntimeConfig};
use rein_store::{ApprovalError, SqliteStore, Store};
use serde_json::json;
use std::sync::Arc;

const POLICY: &str = r#"
default: allow
contracts:
  actions:
    pay:
      input:
        amount: {type: int, min: 0}
rules:
  - id: big
    action: pay
    when: input.amount > 100
    effect: require_approval
    approval: {role: finance}
"#;

fn credential(id: serde_json::Value, link: &str) -> Credential {
    Credential {
        fields: json!({ "id": id }).as_object().unwrap().clone(),
        chain: Some(vec![ChainLink::parse(link).unwrap()]),
        scopes: Vec::new(),
        ..Credential::default()
    }
}

/// A bound `actor.id` that is a number (the tokens file and JWT claim
/// mappings of an in-process caller may bind one: employee number 1001)
/// is no id at all to the self-approval check: `Credential::ids` skips it,
/// and the approval's `requested_by` is only a string id. So the same
/// person's agent token and approver token, both bound to id 1001, can
/// approve each other. (The server now refuses a non-string bound
/// `actor.id` from the tokens file, JWT mappings and delegations; a
/// library caller can still build one.) Fix: in `Credential::ids` and
/// `open_approval`'s `requested_by`, take a number's canonical text (or
/// refuse a non-string bound id in `bind`).
#[tokio::test]
async fn a_numeric_bound_id_is_still_an_id_to_self_approval() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(dir.path().join("rein.db")).unwrap());
    let config = RuntimeConfig {
        hmac_key: b"identity holes key".to_vec(),
        ..RuntimeConfig::default()
    };
    let rt = Runtime::new(Policy::from_yaml_str(POLICY).unwrap(), store.clone(), config);
    let as_agent = credential(json!(1001), "token:dana-agent");
    let as_approver = credential(json!(1001), "token:dana-approver");
    assert!(
        as_approver.ids().iter().any(|id| id == "1001"),
        "the bound id 1001 is one of the approver's ids: {:?}",
        as_approver.ids()
    );
    let request = Request::new("pay").input(json!({"amount": 500}));
    let a = rt
        .decide_bound(request, None, Some("dana-agent"), Some(&as_agent))
        .await;
    assert_eq!(a.effect, Effect::RequireApproval, "{:?}", a.reasons);
    let id = a.approval.expect("an approval").id;
    let e = rt
        .decide_approval(
            &id,
            true,
            Approver {
                name: "dana-approver",
                roles: None,
                credential: Some(&as_approver),
            },
            None,
        )
        .await
        .expect_err("dana approving her own request");
    assert!(
        matches!(e, rein_runtime::RuntimeError::Approval(ApprovalError::SelfApproval(_))),
        "{e}"
    );
    assert_eq!(
        store.get_approval(&id).await.unwrap().unwrap().state,
        rein_store::ApprovalState::Pending
    );
}

/// The same person under two spellings: the tokens file says the agent
/// acts for `user:alice`, the identity provider names her `Alice` (or
/// `alice` in full-width letters). Ids are compared byte for byte, so
/// she approves her own agent's request. Comparing more ids as equal
/// only refuses more approvers (the safe side): fold case and NFKC-
/// normalise both sides in `Approver::asked_for` (lib.rs) and in
/// `Credential::ids` (identity.rs).
#[tokio::test]
async fn an_id_spelt_otherwise_is_still_the_requesters() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(dir.path().join("rein.db")).unwrap());
    let config = RuntimeConfig {
        hmac_key: b"identity holes key".to_vec(),
        ..RuntimeConfig::default()
    };
    let rt = Runtime::new(Policy::from_yaml_str(POLICY).unwrap(), store.clone(), config);
    let requester = Credential {
        fields: serde_json::Map::new(),
        chain: Some(vec![
            ChainLink::parse("user:alice").unwrap(),
            ChainLink::parse("agent:bot").unwrap(),
        ]),
        scopes: Vec::new(),
        ..Credential::default()
    };
    let request = Request::new("pay").input(json!({"amount": 500}));
    let a = rt.decide_bound(request, None, Some("bot"), Some(&requester)).await;
    assert_eq!(a.effect, Effect::RequireApproval, "{:?}", a.reasons);
    let id = a.approval.expect("an approval").id;
    for spelling in ["user:Alice", "user:ALICE", "user:\u{ff41}lice"] {
        let approver = Credential {
            fields: serde_json::Map::new(),
            chain: Some(vec![ChainLink::parse(spelling).unwrap()]),
            scopes: Vec::new(),
            ..Credential::default()
        };
        let e = rt
            .decide_approval(
                &id,
                true,
                Approver {
                    name: "corp:Alice",
                    roles: None,
                    credential: Some(&approver),
                },
                None,
            )
            .await
            .expect_err("alice approving her own agent's request");
        assert!(
            matches!(e, rein_runtime::RuntimeError::Approval(ApprovalError::SelfApproval(_))),
            "{spelling}: {e}"
        );
    }
}
