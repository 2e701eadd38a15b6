//! `mode: shadow` rules: loaded apart from the enforced ones, evaluated and
//! recorded, never enforced. The property: a policy's decision is the one
//! it makes with its shadow rules removed, and the effect it notes for
//! them is the one it makes with them enforced.

use proptest::prelude::*;
use rein_engine::{Effect, Policy, Request};
use serde_json::json;

const CONTRACTS: &str = r#"
default: DEFAULT
contracts:
  actor: {id: string, role: string}
  actions:
    pay:
      input: {amount: int, note: {type: string, optional: true}}
"#;

/// Rules, each with a `MODE` placeholder on the ones that may be shadow.
const RULES: &[(&str, &str, &str)] = &[
    ("small", "input.amount <= 500", "allow"),
    ("staff", "actor.role == \"support\"", "allow"),
    ("huge", "input.amount > 10000", "block"),
    ("mid", "input.amount > 300 && input.amount < 5000", "require_approval"),
    ("noted", "has(input.note) && input.note.size() > 3", "block"),
    ("odd", "input.amount % 2 == 1", "allow"),
    ("div", "100 / (input.amount - 7) > 1", "allow"),
];

/// The policy text with `shadow[i]` telling which rules are
/// `mode: shadow`; `keep[i] == false` leaves rule `i` out.
fn text(default: &str, shadow: &[bool], keep: &[bool]) -> String {
    let mut out = CONTRACTS.replace("DEFAULT", default);
    out.push_str("rules:\n");
    if !keep.contains(&true) {
        out.push_str("  []\n");
    }
    for (i, (id, when, effect)) in RULES.iter().enumerate() {
        if !keep[i] {
            continue;
        }
        out.push_str(&format!(
            "  - {{id: {id}, action: pay, when: '{when}', effect: {effect}"
        ));
        if shadow[i] {
            out.push_str(", mode: shadow");
        }
        out.push_str("}\n");
    }
    out
}

fn request(amount: i64, role: &str, note: Option<&str>) -> Request {
    let mut input = json!({"amount": amount});
    if let Some(n) = note {
        input["note"] = json!(n);
    }
    Request::from_json(json!({"action": "pay", "input": input, "actor": {"id": "a", "role": role}})).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]
    #[test]
    fn shadow_rules_never_change_the_decision_and_note_what_enforcing_them_would(
        shadow in proptest::collection::vec(any::<bool>(), RULES.len()),
        default_allow in any::<bool>(),
        amount in prop_oneof![Just(7i64), Just(301), Just(500), Just(10001), -5i64..20000],
        role in prop_oneof![Just("agent"), Just("support")],
        note in proptest::option::of(prop_oneof![Just("ok"), Just("long note")]),
    ) {
        let default = if default_allow { "allow" } else { "block" };
        let all = vec![true; RULES.len()];
        let enforced_only: Vec<bool> = shadow.iter().map(|s| !s).collect();
        let with_shadow = Policy::from_yaml_str(&text(default, &shadow, &all)).unwrap();
        let without = Policy::from_yaml_str(&text(default, &shadow, &enforced_only)).unwrap();
        let promoted = Policy::from_yaml_str(&text(default, &vec![false; RULES.len()], &all)).unwrap();
        let req = request(amount, role, note);
        let d = with_shadow.decide(&req);
        let base = without.decide(&req);
        prop_assert_eq!(d.effect(), base.effect());
        prop_assert_eq!(d.rules(), base.rules());
        prop_assert_eq!(d.reasons(), base.reasons());
        prop_assert_eq!(d.basis(), base.basis());
        let all_enforced = promoted.decide(&req);
        match d.shadow_rules() {
            None => prop_assert!(!shadow.contains(&true)),
            Some(s) => {
                prop_assert!(shadow.contains(&true));
                prop_assert_eq!(s.effect, all_enforced.effect());
                let mut got: Vec<&str> = d.rules();
                got.extend(s.rules.iter().map(|r| r.id.as_str()));
                got.sort_unstable();
                let mut want = all_enforced.rules();
                want.sort_unstable();
                prop_assert_eq!(got, want);
            }
        }
    }
}

#[test]
fn a_policy_without_shadow_rules_notes_nothing() {
    let p = Policy::from_yaml_str(&text("block", &[false; 7], &[true; 7])).unwrap();
    let d = p.decide(&request(400, "agent", None));
    assert!(d.shadow_rules().is_none());
    assert!(d.to_json().get("shadow").is_none());
}

#[test]
fn explain_marks_shadow_rules_and_what_they_would_do() {
    let mut shadow = [false; 7];
    shadow[2] = true; // huge
    let p = Policy::from_yaml_str(&text("block", &shadow, &[true; 7])).unwrap();
    let e = p.explain(&request(20000, "support", None));
    assert_eq!(e.decision.effect(), Effect::Allow);
    let huge = e.rules.iter().find(|r| r.id == "huge").unwrap();
    assert!(huge.shadow);
    assert!(!e.rules.iter().find(|r| r.id == "staff").unwrap().shadow);
    let text = e.to_string();
    assert!(text.contains("rule huge (block, shadow): matched"), "{text}");
    assert!(
        text.contains("shadow: block with the shadow rules enforced (matched: huge)"),
        "{text}"
    );
    let json = e.to_json();
    assert_eq!(json["decision"]["shadow"]["effect"], "block");
    assert_eq!(json["decision"]["shadow"]["rules"][0]["id"], "huge");
    assert_eq!(
        json["rules"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["shadow"] == true)
            .count(),
        1
    );
}

fn load_error(text: &str) -> String {
    match Policy::from_yaml_str(text) {
        Ok(_) => panic!("loaded:\n{text}"),
        Err(e) => e
            .diagnostics()
            .iter()
            .map(|d| format!("{} | {}", d.message, d.help.clone().unwrap_or_default()))
            .collect::<Vec<_>>()
            .join("\n"),
    }
}

#[test]
fn an_unknown_mode_is_a_load_error_with_help() {
    let t = format!(
        "{}rules:\n  - {{id: r, action: pay, effect: allow, mode: dry-run}}\n",
        CONTRACTS.replace("DEFAULT", "block")
    );
    let e = load_error(&t);
    assert!(e.contains("unknown mode `dry-run`"), "{e}");
    assert!(e.contains("`enforce` (the default) or `shadow`"), "{e}");
}

#[test]
fn a_shadow_rule_writes_and_reads_no_state() {
    let base = CONTRACTS.replace("DEFAULT", "block");
    let limit = format!(
        "{base}rules:\n  - {{id: r, action: pay, effect: block, mode: shadow, limit: {{count: 3, window: 1h}}}}\n"
    );
    assert!(load_error(&limit).contains("is `mode: shadow` and has a `limit`"));
    let labels = format!("{base}rules:\n  - {{id: r, action: pay, effect: allow, mode: shadow, labels: [x]}}\n");
    assert!(load_error(&labels).contains("is `mode: shadow` and attaches `labels`"));
    let session = format!(
        "{base}rules:\n  - {{id: r, action: pay, effect: block, mode: shadow, when: '\"x\" in session.labels'}}\n"
    );
    assert!(load_error(&session).contains("is `mode: shadow` and reads the session"));
    let count = format!(
        "{base}rules:\n  - {{id: r, action: pay, effect: block, mode: shadow, when: 'session.count(\"pay\", duration(\"1h\")) > 2'}}\n"
    );
    assert!(load_error(&count).contains("is `mode: shadow` and reads the session"));
}

#[test]
fn shadow_rules_keep_a_stateless_action_stateless() {
    let t = format!(
        "{}rules:\n  - {{id: a, action: pay, effect: allow}}\n  - {{id: s, action: pay, effect: block, mode: shadow, when: 'input.amount > 5'}}\n",
        CONTRACTS.replace("DEFAULT", "block")
    );
    let p = Policy::from_yaml_str(&t).unwrap();
    assert!(!p.uses_state());
    assert!(!p.blocks_unconditionally("pay"));
    assert_eq!(p.decide(&request(10, "agent", None)).effect(), Effect::Allow);
}

#[test]
fn a_shadow_expectation_fails_where_no_shadow_rule_ran() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("p.yaml"), text("block", &[false; 7], &[true; 7])).unwrap();
    std::fs::write(
        dir.path().join("p.test.yaml"),
        "policy: p.yaml\ncases:\n  - name: c\n    request: {action: pay, input: {amount: 1}, actor: {id: a, role: agent}}\n    expect: allow\n    shadow: {expect: allow}\n",
    )
    .unwrap();
    let file = rein_engine::testing::read_test_file(&dir.path().join("p.test.yaml")).unwrap();
    let policy = file.load_policy().unwrap();
    let results = rein_engine::testing::run_cases(&policy, &file);
    assert_eq!(results.len(), 1);
    assert!(
        results[0].failures[0].contains("none was evaluated"),
        "{:?}",
        results[0].failures
    );
}

/// A request prepared by one policy decides under another with the same
/// contracts exactly as that one decides it itself, on every example's
/// requests; a policy with other contracts gets `None`.
#[test]
fn a_request_prepared_once_decides_under_a_policy_of_the_same_contracts() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    let mut compared = 0;
    for entry in std::fs::read_dir(&root).unwrap() {
        let test = entry.unwrap().path().join("policy.test.yaml");
        if !test.exists() {
            continue;
        }
        let file = rein_engine::testing::read_test_file(&test).unwrap();
        let policy = file.load_policy().unwrap();
        let texts: Vec<(String, String)> = file
            .policy
            .iter()
            .map(|f| (f.display().to_string(), std::fs::read_to_string(f).unwrap()))
            .collect();
        let swapped: Vec<(String, String)> = texts
            .iter()
            .map(|(n, t)| {
                let t = t
                    .replace("effect: allow", "effect: @@")
                    .replace("effect: block", "effect: allow")
                    .replace("effect: @@", "effect: block");
                (n.clone(), t)
            })
            .collect();
        let Ok(candidate) = Policy::from_sources(swapped) else {
            continue;
        };
        for case in file.cases.iter().filter(|c| c.sequence.is_none()) {
            let Ok(prepared) = policy.prepare(&case.request) else {
                continue;
            };
            let Some(shared) = prepared.under(&candidate) else {
                panic!("{}: the same contracts", test.display());
            };
            let (a, b) = (shared.decide(), candidate.decide(&case.request));
            assert_eq!(
                (a.effect(), a.rules(), a.reasons(), a.policy_version()),
                (b.effect(), b.rules(), b.reasons(), b.policy_version()),
                "{}: {}",
                test.display(),
                case.name
            );
            compared += 1;
        }
    }
    assert!(compared >= 50, "only {compared} requests compared");
    // Another contract: an added action, a field's type.
    let base = text("block", &[false; 7], &[true; 7]);
    let a = Policy::from_yaml_str(&base).unwrap();
    let prepared = a.prepare(&request(5, "agent", None)).unwrap();
    assert!(prepared.under(&a).is_some());
    let more = base.replace("  actions:\n", "  actions:\n    other:\n      input: {x: int}\n");
    assert_ne!(more, base);
    assert!(prepared.under(&Policy::from_yaml_str(&more).unwrap()).is_none());
    let retyped = base.replace("amount: int", "amount: number");
    assert_ne!(retyped, base);
    assert!(prepared.under(&Policy::from_yaml_str(&retyped).unwrap()).is_none());
}
