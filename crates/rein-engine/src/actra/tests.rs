#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::{Effect, Policy};
use serde_json::json;

const SCHEMA: &str = "\
version: 1
actions:
  refund:
    fields:
      amount: number
      currency: string
      urgent: boolean
  pay:
    fields: {}
actor:
  fields:
    role: string
    level: number
snapshot:
  fields:
    fraud_flag: boolean
    limit: number
";

const POLICY: &str = "\
version: 1
rules:
  - id: g1
    scope: {global: true}
    when: {subject: {domain: snapshot, field: fraud_flag}, operator: equals, value: {literal: true}}
    effect: block
  - id: a1
    scope: {action: refund}
    when: {subject: {domain: action, field: amount}, operator: greater_than, value: {literal: 1000}}
    effect: require_approval
  - id: a2
    scope: {action: refund}
    when:
      all:
        - {subject: {domain: action, field: urgent}, operator: equals, value: {literal: true}}
        - {subject: {domain: actor, field: role}, operator: not_equals, value: {literal: admin}}
    effect: allow
";

fn decide(p: &Policy, input: serde_json::Value) -> (Effect, Vec<String>) {
    let d = p.decide_actra(&input);
    (d.effect(), d.rules().iter().map(|s| s.to_string()).collect())
}

#[test]
fn first_match_then_globals_then_allow() {
    let p = Policy::from_actra_strs(SCHEMA, POLICY, None).unwrap();
    let r = |v| decide(&p, v);
    assert_eq!(
        r(json!({"action": {"type": "refund", "amount": 2000}, "snapshot": {"fraud_flag": true}})),
        (Effect::RequireApproval, vec!["a1".to_string()])
    );
    assert_eq!(
        r(json!({"action": {"type": "refund", "amount": 20}, "snapshot": {"fraud_flag": true}})),
        (Effect::Block, vec!["g1".to_string()])
    );
    // An action-level allow shadows the global block, as in Actra.
    assert_eq!(
        r(
            json!({"action": {"type": "refund", "urgent": true}, "actor": {"role": "bot"}, "snapshot": {"fraud_flag": true}})
        ),
        (Effect::Allow, vec!["a2".to_string()])
    );
    assert_eq!(r(json!({"action": {"type": "refund"}})), (Effect::Allow, vec![]));
    assert_eq!(
        r(json!({"action": {"type": "pay"}, "snapshot": {"fraud_flag": true}})),
        (Effect::Block, vec!["g1".to_string()])
    );
}

#[test]
fn inputs_that_break_the_schema_block() {
    let p = Policy::from_actra_strs(SCHEMA, POLICY, None).unwrap();
    for (input, path) in [
        (json!({"action": {"amount": 5}}), "action.type"),
        (json!({"action": {"type": 5}}), "action.type"),
        (json!({"action": {"type": "nope"}}), "action.type"),
        (json!({"action": {"type": "refund", "amount": "5"}}), "action.amount"),
        (json!({"action": {"type": "refund", "amount": null}}), "action.amount"),
        (json!({"action": {"type": "refund", "x": [1]}}), "action.x"),
        (json!({"action": {"type": "refund"}, "actor": 5}), "actor"),
        (json!({"action": {"type": "refund"}, "snapshots": {}}), "snapshots"),
        (json!([1]), "request"),
    ] {
        let d = p.decide_actra(&input);
        assert_eq!(d.effect(), Effect::Block, "{input}");
        assert_eq!(d.violation().map(|v| v.path.as_str()), Some(path), "{input}");
    }
}

#[test]
fn convert_prints_a_policy_that_decides_the_same() {
    let c = super::convert_strs(SCHEMA, POLICY).unwrap();
    let native = Policy::from_yaml_str(&c.text).unwrap_or_else(|e| panic!("{e}\n{}", c.text));
    let req = crate::Request::new("refund")
        .input(json!({"urgent": true}))
        .actor(json!({"role": "bot"}))
        .snapshot(json!({"fraud_flag": true}));
    let d = native.decide(&req);
    assert_eq!(d.effect(), Effect::Allow, "{}", c.text);
    assert_eq!(d.rules(), vec!["a2"]);
}

/// `tool` is a root of native conditions now: an Actra field called `tool`
/// converts to `input.tool`, which does not clash with it, and the printed
/// contracts carry no `tool:` facts.
#[test]
fn convert_keeps_a_field_called_tool_a_field() {
    let schema = "version: 1\nactions:\n  run:\n    fields:\n      tool: string\nactor:\n  fields: {}\nsnapshot:\n  fields: {}\n";
    let policy = "\
version: 1
rules:
  - id: no_rm
    scope: {action: run}
    when: {subject: {domain: action, field: tool}, operator: equals, value: {literal: rm}}
    effect: block
";
    let c = super::convert_strs(schema, policy).unwrap();
    assert!(c.text.contains("input.tool"), "{}", c.text);
    let native = Policy::from_yaml_str(&c.text).unwrap_or_else(|e| panic!("{e}\n{}", c.text));
    let actra = Policy::from_actra_strs(schema, policy, None).unwrap();
    for tool in ["rm", "ls"] {
        let req = crate::Request::new("run").input(json!({"tool": tool}));
        assert_eq!(
            native.decide(&req).effect(),
            actra.decide(&req).effect(),
            "{tool}\n{}",
            c.text
        );
    }
    let req = crate::Request::new("run").input(json!({"tool": "rm"}));
    assert_eq!(native.decide(&req).effect(), Effect::Block);
}
