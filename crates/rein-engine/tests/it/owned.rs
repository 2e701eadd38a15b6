//! Decisions borrow the policy that made them (kept longer only when made
//! owned), and an unknown action's "did you mean" hint is written only when
//! the refusal is read, with the same text as when it was written eagerly.

use rein_engine::{Basis, Decision, Effect, Policy, Request};
use serde_json::json;

const POLICY: &str = r#"
default: allow
contracts:
  actor:
    role: string
  actions:
    refund:
      input:
        amount: int
        currency: string
    refund_bulk:
      input:
        count: int
rules:
  - id: large
    action: refund
    when: input.amount > 1000
    effect: block
    reason: large refunds are blocked
  - id: odd_currency
    action: refund
    when: input.currency != "EUR"
    effect: require_approval
  - id: not_admin
    action: refund
    when: actor.role != "admin" && input.amount > 10
    effect: block
  - id: every
    action: refund
    effect: allow
  - id: bulk
    action: refund_bulk
    when: input.count > 5
    effect: block
"#;

fn refund(amount: i64, currency: &str, role: &str) -> Request {
    Request::new("refund")
        .input(json!({"amount": amount, "currency": currency}))
        .actor(json!({"role": role}))
}

/// The texts a person reads: the same as when they were written eagerly.
#[test]
fn an_unknown_action_s_hint_shows_wherever_the_refusal_is_read() {
    let policy = Policy::from_yaml_str(POLICY).unwrap();
    let message = "unknown action `refnd`: the policy has no contract for it (did you mean `refund`?)";
    let request = Request::new("refnd").input(json!({"amount": 1}));
    let check = |d: &Decision<'_>| {
        assert_eq!(d.effect(), Effect::Block);
        let v = d.violation().expect("a violation");
        assert_eq!((v.path.as_str(), v.message.as_str()), ("action", message));
        assert_eq!(d.basis(), &Basis::Contract(v.clone()));
        assert_eq!(d.reasons(), vec![format!("contract: action: {message}")]);
        let json = d.to_json();
        assert_eq!(json["violation"], json!({"path": "action", "message": message}));
        assert_eq!(json["reasons"], json!([format!("contract: action: {message}")]));
    };
    // Read in any order, and from a clone made before or after the first read.
    let d = policy.decide(&request);
    let early_clone = d.clone();
    assert_eq!(d.reasons(), vec![format!("contract: action: {message}")]);
    check(&d);
    check(&early_clone);
    check(&d.clone());
    check(&d.into_owned());
    check(&policy.prepare(&request).unwrap_err());
    check(&policy.decide_json_str(r#"{"action": "refnd"}"#).unwrap());
    let explained = policy.explain(&request);
    check(&explained.decision);
    assert!(explained.to_string().contains(message), "{explained}");

    // No close name: no hint.
    let d = policy.decide(&Request::new("transfer_money"));
    assert_eq!(
        d.violation().unwrap().message,
        "unknown action `transfer_money`: the policy has no contract for it"
    );
}

#[test]
fn an_unknown_action_is_not_compared_with_more_than_32_actions() {
    let mut yaml = String::from("default: allow\ncontracts:\n  actions:\n");
    for i in 0..33 {
        yaml.push_str(&format!("    act_{i}:\n      input: {{}}\n"));
    }
    let policy = Policy::from_yaml_str(&yaml).unwrap();
    let d = policy.decide(&Request::new("act_1x"));
    assert_eq!(
        d.violation().unwrap().message,
        "unknown action `act_1x`: the policy has no contract for it"
    );
    // One action fewer: the hint.
    let policy = Policy::from_yaml_str(&yaml.replace("    act_32:\n      input: {}\n", "")).unwrap();
    let d = policy.decide(&Request::new("act_1x"));
    assert_eq!(
        d.violation().unwrap().message,
        "unknown action `act_1x`: the policy has no contract for it (did you mean `act_1`?)"
    );
}

#[test]
fn an_unknown_actra_action_names_its_field_and_hint() {
    let schema = "version: 1\nactions:\n  refund:\n    fields:\n      amount: number\n\
                  actor:\n  fields:\n    role: string\nsnapshot:\n  fields:\n    fraud: boolean\n";
    let rules = "version: 1\nrules: []\n";
    let policy = Policy::from_actra_strs(schema, rules, None).unwrap();
    let d = policy.decide_actra(&json!({"action": {"type": "refnd"}}));
    let v = d.violation().unwrap();
    assert_eq!(v.path, "action.type");
    assert_eq!(
        v.message,
        "unknown action `refnd`: the schema declares no such action (did you mean `refund`?)"
    );
}

/// A decision kept past its policy (as the runtime and the Python binding
/// keep them) reads the same as while borrowed.
#[test]
fn an_owned_decision_outlives_its_policy() {
    let policy = Policy::from_yaml_str(POLICY).unwrap();
    let borrowed = policy.decide(&refund(5000, "EUR", "admin"));
    let json = borrowed.to_json();
    let prepared = policy.prepare(&refund(5000, "EUR", "admin")).unwrap().into_owned();
    let owned = borrowed.into_owned();
    drop(policy);
    assert_eq!(owned.to_json(), json);
    assert_eq!(owned.rules(), vec!["large", "every"]);
    assert_eq!(owned.reasons(), vec!["large refunds are blocked"]);
    assert_eq!(prepared.decide().to_json(), json);
}
