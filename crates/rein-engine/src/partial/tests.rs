//! Unit tests of partial evaluation: folding, errors, combining.

use crate::{Effect, Policy, Request, Residual, Status, WhatCan};
use serde_json::{json, Value as Json};

fn example(path: &str) -> Policy {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/");
    Policy::load(&[format!("{root}{path}")]).unwrap()
}

fn answer<'w>(w: &'w WhatCan, action: &str) -> &'w crate::ActionAnswer {
    w.actions.iter().find(|a| a.action == action).unwrap()
}

fn when(cel: &str) -> Residual {
    Residual::When(cel.to_string())
}

const CONTRACTS: &str = r#"
contracts:
  actor:
    id: string
    tags: list<string>
    limit: int
    profile: {type: object, fields: {team: string}}
  snapshot:
    frozen: bool
  actions:
    pay:
      input:
        amount: int
        note: {type: string, optional: true}
        items: list<string>
"#;

fn policy(rules: &str) -> Policy {
    Policy::from_yaml_str(&format!("{CONTRACTS}\n{rules}")).unwrap()
}

fn pay(p: &Policy, actor: Json) -> crate::ActionAnswer {
    let w = p.what_can(&actor, &json!({"frozen": false})).unwrap();
    answer(&w, "pay").clone()
}

fn bot() -> Json {
    json!({"id": "bot", "tags": ["a"], "limit": 100, "profile": {"team": "ops"}})
}

#[test]
fn refund_residuals_for_an_agent_and_an_admin() {
    let p = example("refund/policy.yaml");
    let snapshot = json!({"fraud_flag": false, "refunds_today": 0, "account_age_days": 400});
    let w = p.what_can(&json!({"id": "bot", "role": "agent"}), &snapshot).unwrap();
    assert_eq!(w.version, p.version());
    assert_eq!(w.version_label.as_deref(), Some("2026-11-24.1"));
    let lookup = answer(&w, "order.lookup");
    assert_eq!(
        (lookup.status, &lookup.allowed),
        (Status::AlwaysAllowed, &Residual::Always)
    );
    let refund = answer(&w, "refund");
    assert_eq!(refund.status, Status::AllowedWhen);
    assert_eq!(
        refund.allowed,
        when(r#"(!has(input.note) || input.note.trim() != "") && input.amount <= 100"#)
    );
    assert_eq!(
        refund.approval,
        when(r#"input.amount <= 1000 && (!has(input.note) || input.note.trim() != "") && input.amount > 100"#)
    );
    // A flagged account: nothing is refunded, whatever the input.
    let flagged = json!({"fraud_flag": true, "refunds_today": 0, "account_age_days": 400});
    let w = p.what_can(&json!({"id": "bot", "role": "agent"}), &flagged).unwrap();
    let refund = answer(&w, "refund");
    assert_eq!(
        (refund.status, &refund.allowed, &refund.approval),
        (Status::NeverAllowed, &Residual::Never, &Residual::Never)
    );
    // An admin: large refunds need approval, never a block for size.
    let w = p.what_can(&json!({"id": "root", "role": "admin"}), &snapshot).unwrap();
    let refund = answer(&w, "refund");
    assert_eq!(
        refund.approval,
        when(r#"(!has(input.note) || input.note.trim() != "") && input.amount > 1000"#)
    );
}

#[test]
fn a_bad_actor_or_snapshot_is_an_error_naming_the_field() {
    let p = example("refund/policy.yaml");
    let snapshot = json!({"fraud_flag": false, "refunds_today": 0, "account_age_days": 400});
    let e = p
        .what_can(&json!({"id": "bot", "role": "pirate"}), &snapshot)
        .unwrap_err();
    assert_eq!(e.path, "actor.role");
    let e = p.what_can(&json!({"role": "agent"}), &snapshot).unwrap_err();
    assert_eq!(e.path, "actor.id");
    let e = p
        .what_can(&json!({"id": "bot", "role": "agent"}), &json!({"fraud_flag": "no"}))
        .unwrap_err();
    assert!(e.path.starts_with("snapshot."), "{e}");
}

#[test]
fn a_certain_error_is_kept_and_fails_closed() {
    // `actor.tags[5]` errors for this actor: `e || x` is true when x is,
    // an error otherwise, so the block rule matches or errs: never allowed.
    let p = policy(
        r#"
default: allow
rules:
  - {id: odd, action: pay, when: 'actor.tags[5] == "x" || input.amount > 10', effect: block}
"#,
    );
    let a = pay(&p, bot());
    assert_eq!((a.status, &a.allowed), (Status::NeverAllowed, &Residual::Never));
    // `e && x` is false when x is: allowed exactly then.
    let p = policy(
        r#"
default: allow
rules:
  - {id: odd, action: pay, when: 'actor.tags[5] == "x" && input.amount > 10', effect: block}
"#,
    );
    let a = pay(&p, bot());
    assert_eq!(a.allowed, when("input.amount <= 10"));
    // An allow rule that certainly errs blocks every request, even with
    // `default: allow`.
    let p = policy(
        r#"
default: allow
rules:
  - {id: odd, action: pay, when: 'actor.tags[5] == "x"', effect: allow}
"#,
    );
    assert_eq!(pay(&p, bot()).status, Status::NeverAllowed);
    // The same rule for an actor with six tags folds to a constant.
    let six = json!({"id": "b", "tags": ["a", "b", "c", "d", "e", "x"], "limit": 1, "profile": {"team": "t"}});
    assert_eq!(pay(&p, six).status, Status::AlwaysAllowed);
}

#[test]
fn an_erring_allow_rule_over_the_input_is_guarded() {
    // `int(input.note)` errs on text that is not a number, and then the
    // decision blocks: the residual says so (its "defined" part).
    let p = policy(
        r#"
default: allow
rules:
  - {id: numeric_note, action: pay, when: 'has(input.note) && int(input.note) > actor.limit', effect: allow}
"#,
    );
    let a = pay(&p, bot());
    let cel = a.allowed.cel().expect("a residual").to_string();
    assert!(cel.contains("int(input.note) > 100"), "{cel}");
    let compiled = p.compile_residual("pay", &cel).unwrap();
    let now = jiff::Timestamp::UNIX_EPOCH;
    for note in ["7", "700", "seven"] {
        let input = json!({"amount": 1, "note": note, "items": []});
        let d = p.decide(
            &Request::new("pay")
                .input(input.clone())
                .actor(bot())
                .snapshot(json!({"frozen": false})),
        );
        assert_eq!(
            compiled.holds(&input, now) == Ok(true),
            d.effect() == Effect::Allow,
            "{note}"
        );
    }
    let input = json!({"amount": 1, "note": "seven", "items": []});
    assert_ne!(compiled.holds(&input, now), Ok(true));
}

#[test]
fn guarded_optional_fields_need_no_definedness_terms() {
    let p = policy(
        r#"
default: block
rules:
  - {id: own_note, action: pay, when: 'has(input.note) && input.note == actor.id', effect: allow}
"#,
    );
    assert_eq!(
        pay(&p, bot()).allowed,
        when(r#"has(input.note) && input.note == "bot""#)
    );
}

#[test]
fn known_parts_fold_to_literals_of_every_kind() {
    let p = policy(
        r#"
default: block
rules:
  - id: r
    action: pay
    when: >-
      input.items.exists(i, i in actor.tags) && actor.profile.team == "ops" && !snapshot.frozen &&
      input.amount <= actor.limit * 2 && action == "pay"
    effect: allow
"#,
    );
    assert_eq!(
        pay(&p, bot()).allowed,
        when(r#"input.items.exists(v0, v0 in ["a"]) && input.amount <= 200"#)
    );
    let other = json!({"id": "x", "tags": [], "limit": 1, "profile": {"team": "dev"}});
    assert_eq!(pay(&p, other).status, Status::NeverAllowed);
}

#[test]
fn approval_and_default_approval() {
    let p = policy(
        r#"
default: require_approval
rules:
  - {id: small, action: pay, when: 'input.amount < actor.limit', effect: allow}
  - {id: huge, action: pay, when: 'input.amount > 1000', effect: block}
"#,
    );
    let a = pay(&p, bot());
    assert_eq!(a.allowed, when("input.amount < 100"));
    assert_eq!(a.approval, when("input.amount <= 1000 && input.amount >= 100"));
}

#[test]
fn state_makes_an_action_depend_on_state_naming_the_rule() {
    let p = policy(
        r#"
default: allow
rules:
  - {id: plain, action: pay, when: 'input.amount > 5', effect: block}
  - id: cap
    action: pay
    effect: block
    limit: {count: 3, per: [actor.id], window: 1h}
"#,
    );
    let a = pay(&p, bot());
    assert_eq!(a.status, Status::DependsOnState);
    assert_eq!(a.state_rules, vec!["cap".to_string()]);
    assert_eq!(
        (a.allowed.clone(), a.approval.clone()),
        (Residual::Unknown, Residual::Unknown)
    );
}

#[test]
fn actra_first_match_keeps_rule_order() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/actra/refund/");
    let p = Policy::load_actra(
        std::path::Path::new(&format!("{root}schema.yaml")),
        std::path::Path::new(&format!("{root}policy.yaml")),
        None,
    )
    .unwrap();
    // An admin's allow comes first and shadows every later block.
    let w = p
        .what_can(&json!({"role": "admin"}), &json!({"fraud_flag": true}))
        .unwrap();
    assert_eq!(answer(&w, "refund").status, Status::AlwaysAllowed);
    // An agent on a flagged account: the medium-refund review comes before
    // the global fraud hold, so approval is asked for; nothing is allowed.
    let w = p
        .what_can(&json!({"role": "agent"}), &json!({"fraud_flag": true}))
        .unwrap();
    let refund = answer(&w, "refund");
    assert_eq!(refund.allowed, Residual::Never);
    assert_eq!(
        refund.approval,
        when("has(input.amount) && input.amount <= 5000 && input.amount > 1000")
    );
}

#[test]
fn a_residual_that_cannot_be_written_is_not_analysable() {
    // The loop body errs for every element (a known error inside a loop
    // over the input): not written, not guessed.
    let p = policy(
        r#"
default: allow
rules:
  - {id: odd, action: pay, when: 'input.items.exists(i, actor.tags[5] == i)', effect: block}
"#,
    );
    let a = pay(&p, bot());
    assert_eq!(a.status, Status::NotAnalysable);
    assert!(
        a.error.as_deref().unwrap_or_default().contains("cannot be written"),
        "{a:?}"
    );
}

#[test]
fn compile_residual_refuses_what_the_checker_refuses() {
    let p = example("refund/policy.yaml");
    assert!(p.compile_residual("refund", "input.amount > 1").is_ok());
    assert!(p
        .compile_residual("refund", "input.amout > 1")
        .unwrap_err()
        .contains("amout"));
    assert!(
        p.compile_residual("refund", "input.note == \"\"").is_err(),
        "unguarded optional field"
    );
    assert!(p.compile_residual("nope", "true").is_err());
}

#[test]
fn loops_over_known_values_beside_loops_over_the_input_are_written_out() {
    // A decision gives a condition one budget of loop steps: the loop over
    // the actor's tags spends some of it, so it stays in the residual
    // beside the loop over the input instead of being folded away.
    let p = policy(
        r#"
default: block
rules:
  - {id: r, action: pay, when: 'actor.tags.exists(t, t == "a") && input.items.exists(i, i == "b")', effect: allow}
  - {id: s, action: pay, when: '"z" in actor.tags && input.amount > 5', effect: block}
"#,
    );
    let a = pay(&p, bot());
    let cel = a.allowed.cel().expect("a residual").to_string();
    assert!(cel.contains(r#"["a"].exists(v0, v0 == "a")"#), "{cel}");
    assert!(
        !cel.contains("input.amount"),
        "rule s folds to false for this actor: {cel}"
    );
    let compiled = p.compile_residual("pay", &cel).unwrap();
    for items in [json!([]), json!(["b"]), json!(["c", "b"]), json!(["c"])] {
        let input = json!({"amount": 1, "items": items});
        let d = p.decide(
            &Request::new("pay")
                .input(input.clone())
                .actor(bot())
                .snapshot(json!({"frozen": false})),
        );
        let holds = compiled.holds(&input, jiff::Timestamp::UNIX_EPOCH) == Ok(true);
        assert_eq!(holds, d.effect() == Effect::Allow, "{input}");
    }
}

/// A condition whose folded formulas grow with each level (a ternary in a
/// ternary's condition copies it into both branches) is refused quickly,
/// not folded in time and memory exponential in its depth; shallow ones
/// still fold.
#[test]
fn residuals_that_would_explode_are_not_analysable() {
    let nested = |depth: usize, wrap: &dyn Fn(String, usize) -> String| {
        let mut e = "input.amount > 0".to_string();
        for i in 1..=depth {
            e = wrap(e, i);
        }
        e
    };
    let ternary = |e: String, i: usize| format!("(({e}) ? input.amount > {i} : input.amount < -{i})");
    let negated = |e: String, i: usize| format!("(!({e}) ? input.amount != {i} : input.amount == -{i})");
    let in_and = |e: String, i: usize| format!("((input.amount != {i} && ({e})) ? true : input.amount == -{i})");
    for wrap in [&ternary as &dyn Fn(String, usize) -> String, &negated, &in_and] {
        let deep = nested(16, wrap);
        let p = policy(&format!(
            "rules:\n  - {{id: r, action: pay, effect: allow, when: {:?}}}\n",
            deep
        ));
        let started = std::time::Instant::now();
        let a = pay(&p, bot());
        assert_eq!(a.status, Status::NotAnalysable, "{a:?}");
        assert!(a.error.as_deref().is_some_and(|e| e.contains("terms")), "{a:?}");
        assert!(
            started.elapsed() < std::time::Duration::from_secs(20),
            "{:?}",
            started.elapsed()
        );
        let shallow = nested(3, wrap);
        let p = policy(&format!(
            "rules:\n  - {{id: r, action: pay, effect: allow, when: {:?}}}\n",
            shallow
        ));
        assert_eq!(pay(&p, bot()).status, Status::AllowedWhen);
    }
}

/// Nesting whose formulas simplify back to a few hundred terms is answered,
/// and quickly: simplification rewrote every unchanged node again, work
/// that doubled with each level (13 levels took seconds), and 14 levels
/// were refused as "too many rules". The residual decides as the policy.
#[test]
fn deep_nesting_that_simplifies_is_answered_quickly() {
    let mut e = "input.amount > 0".to_string();
    for i in 1..=15 {
        e = format!("((input.amount != {i} && ({e})) ? true : input.amount == -{i})");
    }
    let p = policy(&format!(
        "rules:\n  - {{id: r, action: pay, effect: allow, when: {e:?}}}\n"
    ));
    let started = std::time::Instant::now();
    let a = pay(&p, bot());
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(a.status, Status::AllowedWhen, "{a:?}");
    let compiled = p.compile_residual("pay", a.allowed.cel().unwrap()).unwrap();
    for amount in -20..=20 {
        let input = json!({"amount": amount, "items": []});
        let d = p.decide(
            &Request::new("pay")
                .input(input.clone())
                .actor(bot())
                .snapshot(json!({"frozen": false})),
        );
        let holds = compiled.holds(&input, jiff::Timestamp::UNIX_EPOCH) == Ok(true);
        assert_eq!(holds, d.effect() == Effect::Allow, "{input}");
    }
}

/// The fast path of substitution (a node in which nothing was replaced is
/// kept, not rebuilt) gives the formula that rebuilding every node gave.
#[test]
fn substitution_keeps_unchanged_nodes_as_rebuilding_them_would() {
    use super::{substitute, Atom, Bound, F, SIMPLIFY_WORK};
    use proptest::prelude::*;
    use std::rc::Rc;

    /// The substitution as it was: every node rebuilt and re-simplified.
    fn rebuilt(f: F, text: &str, pos: bool, value: bool, may_error: bool) -> F {
        match f {
            F::Lit(a, p) if a.text == text => {
                if p == pos {
                    F::constant(value)
                } else if value || !may_error {
                    F::constant(!value)
                } else {
                    F::Lit(a, p)
                }
            }
            F::And(items) => F::and(
                items
                    .into_iter()
                    .map(|i| rebuilt(i, text, pos, value, may_error))
                    .collect(),
            ),
            F::Or(items) => F::or(
                items
                    .into_iter()
                    .map(|i| rebuilt(i, text, pos, value, may_error))
                    .collect(),
            ),
            other => other,
        }
    }

    // Atoms as the folder makes them: one text, one `may_error`; some
    // with bounds on one subject, some presence tests.
    let atoms: Vec<Rc<Atom>> = (0..6)
        .map(|i| {
            let bound = (i < 3).then(|| Bound {
                subject: "x".into(),
                upper: i != 1,
                inclusive: i == 0,
                value: i as f64,
            });
            Rc::new(Atom {
                text: if i == 5 {
                    "has(input.note)".into()
                } else {
                    format!("a{i}")
                },
                negated: None,
                may_error: i == 4,
                bound,
            })
        })
        .collect();
    let lit = (0..atoms.len(), any::<bool>()).prop_map(move |(i, p)| F::Lit(atoms[i].clone(), p));
    let formula =
        lit.prop_recursive(4, 40, 4, |inner| {
            (proptest::collection::vec(inner, 1..4), any::<bool>()).prop_map(|(items, and)| {
                if and {
                    F::and(items)
                } else {
                    F::or(items)
                }
            })
        });
    proptest!(|(f in formula, i in 0..6usize, pos: bool, value: bool)| {
        SIMPLIFY_WORK.with(|w| w.set(0));
        let (text, may_error) = (if i == 5 { "has(input.note)".to_string() } else { format!("a{i}") }, i == 4);
        let expected = rebuilt(f.clone(), &text, pos, value, may_error).print();
        prop_assert_eq!(substitute(f, &text, pos, value, may_error).print(), expected);
    });
}

/// Thousands of rules on one action: answered or refused within a bound
/// (the simplifications compare rules pairwise), never minutes.
#[test]
fn many_rules_on_one_action_cost_a_bounded_time() {
    let mut rules = String::from("rules:\n");
    for i in 0..3000 {
        let effect = if i % 2 == 0 { "allow" } else { "block" };
        rules.push_str(&format!(
            "  - {{id: r{i}, action: pay, effect: {effect}, when: \"input.amount > {i} || input.items.size() == {i}\"}}\n"
        ));
    }
    let p = policy(&rules);
    let started = std::time::Instant::now();
    let a = pay(&p, bot());
    assert!(
        started.elapsed() < std::time::Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(a.status, Status::NotAnalysable, "{a:?}");
}
