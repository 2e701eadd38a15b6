//! Actra mode through the public API: diagnostics (golden), Rein's
//! additions (`in`/`not_in` with a list), governance on native policies,
//! explanations, and the examples' converted files.

use rein_engine::actra::convert;
use rein_engine::{Effect, Policy, Request};
use serde_json::json;
use std::path::Path;

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

fn errors(schema: &str, policy: &str, governance: Option<&str>) -> String {
    let err = Policy::from_actra_strs(schema, policy, governance).expect_err("should not load");
    format!("{err}\n\n{}", err.render(false))
}

#[test]
fn policy_errors_are_all_reported_with_positions_and_hints() {
    let policy = "\
version: 1
rules:
  - id: unknown_action
    scope: {action: refnd}
    when: {subject: {domain: action, field: amount}, operator: equals, value: {literal: 1}}
    effect: block
  - id: bad_subjects
    scope: {action: refund}
    when:
      all:
        - {subject: {domain: input, field: amount}, operator: equals, value: {literal: 1}}
        - {subject: {domain: action, field: amout}, operator: equals, value: {literal: 1}}
        - {subject: {domain: actor, field: role}, operator: greater_than, value: {literal: a}}
        - {subject: {domain: action, field: amount}, operator: '>=', value: {literal: 1}}
        - {subject: {domain: action, field: amount}, operator: equals, value: {literal: '5'}}
    effect: block
  - id: bad_subjects
    scope: {global: true}
    when:
      any:
        - {subject: {domain: action, field: amount}, operator: equals, value: {literal: 1}}
    effect: requires_approval
  - id: ''
    scope: {global: false}
    when: {subject: {domain: actor, field: role}, operator: in, value: {literal: admin}}
    effect: allow
  - id: nested
    scope: {action: refund}
    when:
      all:
        - {subject: {domain: actor, field: role}, operator: equals, value: {literal: a}}
        - {any: [{subject: {domain: actor, field: role}, operator: equals, value: {literal: b}}]}
    effect: block
  - id: no_value
    scope: {action: refund}
    when: {subject: {domain: actor, field: role}, operator: equals}
    effect: block
";
    insta::assert_snapshot!(errors(SCHEMA, policy, None));
}

#[test]
fn schema_errors_point_at_the_field() {
    let schema = "\
version: '1'
actions:
  refund:
    fields:
      amount: {type: number}
      currency: String
      count: int
  pay: {}
actor: {}
";
    insta::assert_snapshot!(errors(schema, "version: 1\nrules: []\n", None));
}

#[test]
fn governance_violations_name_the_rule_and_the_offenders() {
    let policy = "\
version: 1
rules:
  - id: a1
    scope: {action: refund}
    when: {subject: {domain: action, field: amount}, operator: greater_than, value: {subject: {domain: snapshot, field: limit}}}
    effect: allow
  - id: g1
    scope: {global: true}
    when: {subject: {domain: snapshot, field: fraud_flag}, operator: equals, value: {literal: true}}
    effect: block
  - id: g2
    scope: {global: true}
    when: {subject: {domain: actor, field: level}, operator: greater_than, value: {literal: 3}}
    effect: block
";
    let governance = "\
version: 1
governance:
  rules:
    - id: no_global_blocks
      select: {where: {scope: {global: true}, effect: block}}
      must: {forbid: true}
      error: global blocks belong to the security team
    - id: allow_reads
      select: {where: {effect: allow}}
      must: {allowed_fields: [action.amount]}
      error: allow rules read the amount only
    - id: need_a_fraud_rule
      applies_to: {actions: [refund]}
      select: {where: {when: {subject: {domain: snapshot, field: fraud}}}}
      must: {exists: true}
      error: a rule must check fraud
    - id: typo
      select: {wher: {effect: allow}}
      must: {max_count: 5}
      error: never fails
";
    insta::assert_snapshot!(errors(SCHEMA, policy, Some(governance)));
}

#[test]
fn in_and_not_in_take_a_list() {
    let policy = "\
version: 1
rules:
  - id: currencies
    scope: {action: refund}
    when: {subject: {domain: action, field: currency}, operator: not_in, value: {literal: [EUR, USD]}}
    effect: block
  - id: small
    scope: {action: refund}
    when: {subject: {domain: action, field: amount}, operator: in, value: {literal: [1, 2.5, 3]}}
    effect: allow
";
    let p = Policy::from_actra_strs(SCHEMA, policy, None).unwrap();
    let decide = |v: serde_json::Value| {
        let d = p.decide_actra(&v);
        (d.effect(), d.rules().join(","))
    };
    assert_eq!(
        decide(json!({"action": {"type": "refund", "currency": "GBP"}})),
        (Effect::Block, "currencies".into())
    );
    assert_eq!(
        decide(json!({"action": {"type": "refund", "currency": "EUR", "amount": 2.5}})),
        (Effect::Allow, "small".into())
    );
    // A missing field makes `not_in` false too, like every Actra comparison.
    assert_eq!(
        decide(json!({"action": {"type": "refund", "amount": 3}})),
        (Effect::Allow, "small".into())
    );
    assert_eq!(
        decide(json!({"action": {"type": "refund", "amount": 4}})),
        (Effect::Allow, String::new())
    );
}

#[test]
fn explanations_show_the_rules_as_rein_conditions_in_evaluation_order() {
    let policy = "\
version: 1
rules:
  - id: fraud
    scope: {global: true}
    when: {subject: {domain: snapshot, field: fraud_flag}, operator: equals, value: {literal: true}}
    effect: block
  - id: big
    scope: {action: refund}
    when: {subject: {domain: action, field: amount}, operator: greater_than, value: {literal: 1000}}
    effect: require_approval
";
    let p = Policy::from_actra_strs(SCHEMA, policy, None).unwrap();
    let e = p.explain_actra(&json!({"action": {"type": "refund", "amount": 5}, "snapshot": {"fraud_flag": true}}));
    let text = e.to_string().replace(p.version(), "<version>");
    insta::assert_snapshot!(text);
}

#[test]
fn governance_applies_to_native_policies() {
    let native = "\
contracts:
  actions:
    refund: {input: {amount: number}}
    file.read: {input: {path: string}}
  actor: {role: string}
rules:
  - id: everything_for_admins
    action: '*'
    when: actor.role == \"admin\"
    effect: allow
  - id: big
    action: refund
    when: input.amount > 100 && actor.role != \"admin\"
    effect: block
  - id: secrets
    action: file.*
    when: input.path.startsWith(\"/etc\")
    effect: block
";
    let gov = |rules: &str| format!("version: 1\ngovernance:\n  rules:\n{rules}");
    let load = |g: &str| Policy::from_sources_governed([("p.yaml", native)], ("g.yaml", g));
    // `*` makes a rule global; a glob scopes it to the actions it matches.
    assert!(load(&gov(
        "    - {id: a, select: {where: {scope: {global: true}}}, must: {max_count: 1}, error: e}\n"
    ))
    .is_ok());
    assert!(load(&gov(
        "    - {id: a, select: {where: {scope: {global: true}}}, must: {forbid: true}, error: e}\n"
    ))
    .is_err());
    assert!(load(&gov(
        "    - {id: a, select: {where: {scope: {action: file.read}}}, must: {min_count: 1}, error: e}\n"
    ))
    .is_ok());
    // `input` and `action` name the same domain; every read counts.
    assert!(load(&gov("    - {id: a, select: {where: {when: {subject: {domain: input, field: amount}}}}, must: {min_count: 1}, error: e}\n")).is_ok());
    assert!(load(&gov(
        "    - {id: a, select: {where: {id: big}}, must: {allowed_fields: [action.amount, actor.role]}, error: e}\n"
    ))
    .is_ok());
    let err = load(&gov("    - {id: a, select: {where: {effect: block}}, must: {allowed_fields: [input.amount]}, error: only amounts}\n"))
        .unwrap_err()
        .render(false);
    assert!(err.contains("governance rule `a` is violated: only amounts"), "{err}");
    assert!(
        err.contains("`big`") && err.contains("`actor.role`") && err.contains("`secrets`"),
        "{err}"
    );
    // A native decision is unchanged by governance.
    let p = load(&gov(
        "    - {id: a, select: {where: {id: big}}, must: {exists: true}, error: e}\n",
    ))
    .unwrap();
    let d = p.decide(
        &Request::new("refund")
            .input(json!({"amount": 500}))
            .actor(json!({"role": "bot"})),
    );
    assert_eq!(d.effect(), Effect::Block);
}

#[test]
fn the_examples_native_files_are_what_convert_prints() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/actra");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let d = entry.unwrap().path();
        if !d.join("schema.yaml").exists() {
            continue;
        }
        let c = convert(&d.join("schema.yaml"), &d.join("policy.yaml")).unwrap();
        let stored = std::fs::read_to_string(d.join("native.yaml")).unwrap();
        assert_eq!(
            c.text,
            stored,
            "{}: native.yaml is stale; regenerate it with `rein convert`",
            d.display()
        );
        n += 1;
    }
    assert!(n >= 5, "only {n} Actra examples");
}
