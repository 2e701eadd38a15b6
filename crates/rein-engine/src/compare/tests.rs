use super::*;

fn load(text: &str) -> Policy {
    match Policy::from_sources([("p.yaml", text)]) {
        Ok(p) => p,
        Err(e) => panic!("{e:?}"),
    }
}

const BASE: &str = r#"
contracts:
  actor:
    id: string
    email: {type: string, sensitive: true}
  actions:
    refund:
      input:
        amount: {type: number, min: 0}
        card: {type: string, sensitive: true}
        customer:
          type: object
          fields:
            name: string
            ssn: {type: string, sensitive: true}
        tags: map<string>
        items:
          type: list
          items:
            type: object
            fields:
              sku: string
              secret: {type: string, sensitive: true}
    lookup:
      input:
        id: string
rules:
  - id: small
    action: refund
    when: input.amount <= 100
    effect: allow
  - id: large
    action: refund
    when: input.amount > 1000
    effect: block
    reason: too large
  - id: lookups
    action: lookup
    effect: allow
"#;

#[test]
fn the_same_policy_written_differently_compares_equal() {
    // Rules reordered, reindented, the condition rewrapped, contract
    // fields reordered: nothing changed.
    let other = r#"
contracts:
  actor:
    email: {type: string, sensitive: true}
    id: string
  actions:
    lookup:
      input:
        id: string
    refund:
      input:
        customer:
          type: object
          fields:
            ssn: {type: string, sensitive: true}
            name: string
        card: {type: string, sensitive: true}
        amount: {type: number, min: 0}
        tags: map<string>
        items:
          type: list
          items:
            type: object
            fields:
              secret: {type: string, sensitive: true}
              sku: string
rules:
  - id: lookups
    action: lookup
    effect: allow
  - id: large
    action: refund
    when: >-
      input.amount   >
         1000
    effect: block
    reason: too large
  - id: small
    action: refund
    when: input.amount <= 100
    effect: allow
"#;
    let c = compare(&load(BASE), &load(other));
    assert!(c.is_empty(), "{c:#?}");
    let refund = c.action("refund").unwrap();
    assert_eq!(refund.rules_unchanged.len(), 2);
}

#[test]
fn rules_added_removed_and_changed_are_named_with_what_changed() {
    let new = BASE
        .replace(
            "when: input.amount > 1000\n    effect: block",
            "when: input.amount > 500\n    effect: block",
        )
        .replace(
            "  - id: small\n    action: refund\n    when: input.amount <= 100\n    effect: allow\n",
            "  - id: tiny\n    action: refund\n    when: input.amount <= 10\n    effect: allow\n",
        )
        .replace(
            "id: lookups\n    action: lookup\n    effect: allow",
            "id: lookups\n    action: lookup\n    effect: block",
        );
    let c = compare(&load(BASE), &load(&new));
    let refund = c.action("refund").unwrap();
    assert_eq!(
        refund.rules_added.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
        ["tiny"]
    );
    assert_eq!(
        refund.rules_removed.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
        ["small"]
    );
    assert_eq!(refund.rules_changed.len(), 1);
    assert_eq!(refund.rules_changed[0].id, "large");
    assert_eq!(refund.rules_changed[0].what, ["condition"]);
    let lookup = c.action("lookup").unwrap();
    assert_eq!(lookup.rules_changed[0].what, ["effect"]);
    assert_eq!(lookup.rules_changed[0].old_effect, Effect::Allow);
    assert_eq!(lookup.rules_changed[0].new_effect, Effect::Block);
    assert!(!c.is_empty());
}

#[test]
fn reason_approval_and_labels_changes_are_changes() {
    let new = BASE.replace("reason: too large", "reason: far too large");
    let c = compare(&load(BASE), &load(&new));
    assert_eq!(c.action("refund").unwrap().rules_changed[0].what, ["reason"]);
}

#[test]
fn a_rule_retargeted_is_added_to_one_action_and_removed_from_another() {
    let new = BASE.replace(
        "id: lookups\n    action: lookup",
        "id: lookups\n    action: [lookup, refund]",
    );
    let c = compare(&load(BASE), &load(&new));
    let refund = c.action("refund").unwrap();
    assert_eq!(refund.rules_added[0].id, "lookups");
    assert!(c.action("lookup").unwrap().rules_unchanged_all());
}

#[test]
fn contract_changes_are_found_at_any_depth() {
    let new = BASE
        .replace("amount: {type: number, min: 0}", "amount: {type: int, min: 0}")
        .replace(
            "            name: string\n",
            "            name: {type: string, max_len: 10}\n",
        )
        .replace(
            "              sku: string\n",
            "              sku: string\n              qty: int\n",
        )
        .replace("    email: {type: string, sensitive: true}\n", "");
    let c = compare(&load(BASE), &load(&new));
    let refund = c.action("refund").unwrap();
    let paths: Vec<(&str, &FieldChangeKind)> = refund.input.iter().map(|f| (f.path.as_str(), &f.kind)).collect();
    assert!(paths
        .iter()
        .any(|(p, k)| *p == "input.amount" && matches!(k, FieldChangeKind::Retyped { .. })));
    assert!(paths
        .iter()
        .any(|(p, k)| *p == "input.customer.name" && matches!(k, FieldChangeKind::Constraints { .. })));
    assert!(paths
        .iter()
        .any(|(p, k)| *p == "input.items[].qty" && matches!(k, FieldChangeKind::Added { .. })));
    assert_eq!(c.actor[0].path, "actor.email");
    assert!(matches!(c.actor[0].kind, FieldChangeKind::Removed { .. }));
    assert!(!refund.contract_unchanged(&c));
    // The retyped field changes the typed tree of the rules reading it.
    assert!(refund
        .rules_changed
        .iter()
        .any(|r| r.id == "small" && r.what == ["condition"]));
}

#[test]
fn marking_a_field_sensitive_is_a_contract_change() {
    let new = BASE.replace(
        "    lookup:\n      input:\n        id: string",
        "    lookup:\n      input:\n        id: {type: string, sensitive: true}",
    );
    let c = compare(&load(BASE), &load(&new));
    let lookup = c.action("lookup").unwrap();
    assert_eq!(lookup.input.len(), 1);
    assert!(!lookup.contract_unchanged(&c));
}

#[test]
fn defaults_combining_and_actions_added_or_removed() {
    let new = format!(
        "default: allow\n{}",
        BASE.replace(
            "    lookup:\n      input:\n        id: string\n",
            "    search:\n      input:\n        q: string\n"
        )
    )
    .replace("id: lookups\n    action: lookup", "id: lookups\n    action: search");
    let c = compare(&load(BASE), &load(&new));
    assert_eq!(c.default_before, Some((Effect::Block, Effect::Allow)));
    assert_eq!(c.actions_added, ["search"]);
    assert_eq!(c.actions_removed, ["lookup"]);
    assert!(c.action("lookup").is_none());
    let json = serde_json::to_value(&c).unwrap();
    assert_eq!(json["default_before"], serde_json::json!(["block", "allow"]));
}

fn reads(policy: &Policy, rule_when: &str) -> RuleReads {
    let text = BASE.replace("when: input.amount <= 100", &format!("when: {rule_when}"));
    let p = load(&text);
    let _ = policy;
    fields_read(&p, "refund", Phase::Before, "small").unwrap()
}

#[test]
fn fields_read_names_paths_and_sensitive_ones() {
    let base = load(BASE);
    let r = reads(&base, "input.amount <= 100");
    assert_eq!(r.fields.len(), 1);
    assert_eq!(r.fields[0].path, "input.amount");
    assert!(r.fields[0].sensitive.is_empty());
    assert_eq!(r.first_sensitive(), None);

    let r = reads(&base, r#"input.card == "x""#);
    assert_eq!(r.first_sensitive(), Some("input.card"));

    // A nested sensitive field, read directly.
    let r = reads(&base, r#"input.customer.ssn == "1""#);
    assert_eq!(r.first_sensitive(), Some("input.customer.ssn"));

    // A sibling of a nested sensitive field is not sensitive.
    let r = reads(&base, r#"input.customer.name == "bob""#);
    assert_eq!(r.first_sensitive(), None);

    // A whole-object read takes in what is under it.
    let r = reads(&base, r#"input.customer == input.customer"#);
    assert_eq!(r.first_sensitive(), Some("input.customer.ssn"));

    // A comprehension over a list of objects reads every item whole.
    let r = reads(&base, r#"input.items.exists(i, i.sku == "a")"#);
    assert_eq!(r.first_sensitive(), Some("input.items[].secret"));

    // A dynamic read of a map reads the map whole (no sensitive inside).
    let r = reads(&base, r#"input.tags[input.customer.name] == "a""#);
    assert!(r.fields.iter().any(|f| f.path == "input.tags"));
    assert_eq!(r.first_sensitive(), None);

    // `has` reads the field it asks about.
    let r = reads(&base, r#"has(input.customer.ssn)"#);
    assert_eq!(r.first_sensitive(), Some("input.customer.ssn"));

    // The actor's sensitive field.
    let r = reads(&base, r#"actor.email.endsWith("@x.com")"#);
    assert_eq!(r.first_sensitive(), Some("actor.email"));

    // `now` is noted.
    let r = reads(&base, r#"now > timestamp("2020-01-01T00:00:00Z")"#);
    assert!(r.now);
    assert!(r.fields.is_empty());
}

#[test]
fn a_whole_root_read_reads_every_sensitive_field_under_it() {
    let text = BASE.replace(
        "when: input.amount <= 100",
        "when: size(input.items) > 0 && input.amount > 0",
    );
    let p = load(&text);
    let r = fields_read(&p, "refund", Phase::Before, "small").unwrap();
    assert_eq!(r.first_sensitive(), Some("input.items[].secret"));
    assert!(fields_read(&p, "refund", Phase::After, "small").is_none());
    assert!(fields_read(&p, "lookup", Phase::Before, "small").is_none());
}

#[test]
fn decide_redacted_keeps_given_outcomes_and_refuses_rules_reading_sensitive_fields() {
    use crate::Request;
    let p = load(BASE);
    // The card and ssn hold keyed hashes, as the audit log keeps them.
    let logged = Request::new("refund")
        .input(serde_json::json!({
            "amount": 5000,
            "card": "hmac-sha256:00",
            "customer": {"name": "ann", "ssn": "hmac-sha256:01"},
            "tags": {},
            "items": [{"sku": "a", "secret": "hmac-sha256:02"}],
        }))
        .actor(serde_json::json!({"id": "x", "email": "hmac-sha256:03"}));
    // Neither rule reads a sensitive field: both are evaluated.
    let d = p.decide_redacted(&logged, &|_| None).unwrap();
    assert_eq!((d.effect(), d.rules()), (Effect::Block, vec!["large"]));
    // A given outcome is used as given, not evaluated.
    let d = p
        .decide_redacted(&logged, &|id| (id == "large").then_some(false))
        .unwrap();
    assert_eq!((d.effect(), d.rules()), (Effect::Block, vec![]));
    assert_eq!(d.reasons(), ["no rule matched; the policy default is `block`"]);
    let d = p
        .decide_redacted(&logged, &|id| (id == "small").then_some(true))
        .unwrap();
    assert_eq!(d.rules(), ["small", "large"]);
    // A rule to evaluate that reads a sensitive field refuses the whole.
    let reading = load(&BASE.replace("when: input.amount > 1000", "when: input.card == \"1\""));
    let why = reading.decide_redacted(&logged, &|_| None).unwrap_err();
    assert_eq!(why, "rule `large` reads the sensitive field input.card");
    // Unless its outcome is given.
    assert!(reading
        .decide_redacted(&logged, &|id| (id == "large").then_some(true))
        .is_ok());
    // A non-sensitive field still goes through its contract.
    let bad = Request::new("refund").input(
        serde_json::json!({"amount": -1, "card": "h", "customer": {"name": "a", "ssn": "h"}, "tags": {}, "items": []}),
    );
    let d = p.decide_redacted(&bad, &|_| None).unwrap();
    assert!(
        d.reasons()[0].starts_with("contract: input.amount"),
        "{:?}",
        d.reasons()
    );
    // The clear request gets the same decision from `decide`.
    let clear = Request::new("refund")
        .input(serde_json::json!({
            "amount": 5000,
            "card": "4111",
            "customer": {"name": "ann", "ssn": "123"},
            "tags": {},
            "items": [{"sku": "a", "secret": "s"}],
        }))
        .actor(serde_json::json!({"id": "x", "email": "a@b.c"}));
    assert_eq!(p.decide(&clear).rules(), ["large"]);
}

#[test]
fn decision_from_matches_gives_the_reasons_decide_gives() {
    let p = load(BASE);
    let d = p.decision_from_matches("refund", &["large".to_string()]).unwrap();
    assert_eq!(
        (d.effect(), d.reasons()),
        (Effect::Block, vec!["too large".to_string()])
    );
    let d = p.decision_from_matches("refund", &[]).unwrap();
    assert_eq!(d.effect(), Effect::Block);
    assert_eq!(d.reasons(), ["no rule matched; the policy default is `block`"]);
    // Not a rule of that action: not a decision it can have.
    assert!(p.decision_from_matches("refund", &["lookups".to_string()]).is_none());
    assert!(p.decision_from_matches("nothing", &[]).is_none());
}
