//! The flat evaluator that decisions run against the tree evaluator that
//! `explain` runs: random well-typed policies (guarded optional fields,
//! nested objects, maps, shadow rules, the after phase, conditions partly
//! or wholly outside the flat subset) and random requests give the same
//! decision, to the last matched rule, error text and shadow note.

use proptest::prelude::*;
use rein_engine::{Phase, Policy, Request};
use serde_json::{json, Value as Json};

const CONTRACT: &str = r#"
contracts:
  actor: {role: string, level: {type: int, optional: true}}
  snapshot: {env: string}
  actions:
    act:
      input:
        i: int
        x: number
        s: string
        b: bool
        oi: {type: int, optional: true}
        os: {type: string, optional: true}
        o: {type: object, fields: {n: int, t: {type: string, optional: true}}, optional: true}
        m: map<int>
        l: list<int>
      output: {r: int, ok: {type: bool, optional: true}}
"#;

/// A leaf of a condition: comparisons the flat program decides, guarded
/// reads of optional fields, and forms it leaves to the tree (arithmetic
/// that can overflow or divide by zero, map reads that can miss, regexes,
/// comprehensions, `size`).
fn leaf() -> impl Strategy<Value = String> {
    let int = prop_oneof![Just(-1i64), Just(0), Just(3), Just(7), Just(i64::MAX)];
    let word = prop::sample::select(vec!["", "a", "ab", "admin", "prod"]);
    let op = prop::sample::select(vec!["==", "!=", "<", "<=", ">", ">="]);
    prop_oneof![
        (op.clone(), int.clone()).prop_map(|(o, k)| format!("input.i {o} {k}")),
        (op.clone(), int.clone()).prop_map(|(o, k)| format!("{k} {o} input.i")),
        (op.clone(), int.clone()).prop_map(|(o, k)| format!("input.x {o} {k}")),
        (op.clone(), -2.0f64..8.0).prop_map(|(o, k)| format!("input.x {o} {k:?}")),
        (op.clone(), word.clone()).prop_map(|(o, w)| format!("input.s {o} {w:?}")),
        word.clone().prop_map(|w| format!("actor.role == {w:?}")),
        word.clone().prop_map(|w| format!("snapshot.env != {w:?}")),
        op.clone().prop_map(|o| format!("input.i {o} input.x")),
        Just("input.b".to_string()),
        any::<bool>().prop_map(|b| format!("input.b == {b}")),
        any::<bool>().prop_map(|b| b.to_string()),
        prop::collection::vec(word.clone(), 1..4).prop_map(|ws| format!("input.s in {ws:?}")),
        word.clone().prop_map(|w| format!("input.s.startsWith({w:?})")),
        word.clone()
            .prop_map(|w| format!("input.s.endsWith({w:?}) || input.s.contains({w:?})")),
        Just("action == \"act\"".to_string()),
        (op.clone(), int.clone()).prop_map(|(o, k)| format!("has(input.oi) && input.oi {o} {k}")),
        (op.clone(), int.clone()).prop_map(|(o, k)| format!("!has(input.oi) || input.oi {o} {k}")),
        word.clone().prop_map(|w| format!("has(input.os) && input.os == {w:?}")),
        int.clone().prop_map(|k| format!("has(input.o) && input.o.n > {k}")),
        word.clone()
            .prop_map(|w| format!("has(input.o.t) && input.o.t == {w:?}")),
        Just("has(input.o)".to_string()),
        Just("has(actor.level) && actor.level >= 2".to_string()),
        Just("has(input.m.k1)".to_string()),
        // Outside the flat subset.
        int.clone().prop_map(|k| format!("input.i + {k} > 5")),
        Just("10 / input.i > 2".to_string()),
        Just("input.m[\"k1\"] > 0".to_string()),
        Just("input.s.matches(\"^a+b?$\")".to_string()),
        Just("input.l.exists(v, v > 2)".to_string()),
        Just("size(input.l) >= 2".to_string()),
        Just("input.s.lowerAscii() == \"ab\"".to_string()),
    ]
}

fn condition() -> impl Strategy<Value = String> {
    leaf().prop_recursive(3, 12, 2, |inner| {
        prop_oneof![
            inner.clone().prop_map(|c| format!("!({c})")),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("({a}) && ({b})")),
            (inner.clone(), inner).prop_map(|(a, b)| format!("({a}) || ({b})")),
        ]
    })
}

/// After-phase conditions: the output, which an outcome may lack.
fn after_condition() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("output.r > 2".to_string()),
        Just("has(output.ok) && output.ok".to_string()),
        Just("output.r == input.i || input.b".to_string()),
        Just("input.i > 2 && output.r < 0".to_string()),
    ]
}

fn request() -> impl Strategy<Value = Request> {
    let word = prop::sample::select(vec!["", "a", "ab", "aab", "admin", "prod"]);
    (
        (
            prop_oneof![Just(0i64), Just(3), Just(7), Just(-1), Just(i64::MAX)],
            prop_oneof![Just(json!(3)), Just(json!(2.5)), Just(json!(-1)), Just(json!(7.0))],
            word.clone(),
            any::<bool>(),
            prop::option::of(prop_oneof![Just(3i64), Just(-1), Just(7)]),
            prop::option::of(word.clone()),
            prop::option::of((0i64..5, prop::option::of(word.clone()))),
            prop::collection::btree_map(prop::sample::select(vec!["k1", "k2"]), -1i64..3, 0..3),
            prop::collection::vec(0i64..5, 0..4),
        ),
        (word.clone(), prop::option::of(0i64..4), word),
        prop_oneof![Just(None), (0i64..5, prop::option::of(any::<bool>())).prop_map(Some),],
    )
        .prop_map(|((i, x, s, b, oi, os, o, m, l), (role, level, env), outcome)| {
            let mut input = json!({"i": i, "x": x, "s": s, "b": b, "m": m, "l": l});
            if let Some(oi) = oi {
                input["oi"] = json!(oi);
            }
            if let Some(os) = os {
                input["os"] = json!(os);
            }
            if let Some((n, t)) = o {
                input["o"] = match t {
                    Some(t) => json!({"n": n, "t": t}),
                    None => json!({"n": n}),
                };
            }
            let mut actor = json!({"role": role});
            if let Some(level) = level {
                actor["level"] = json!(level);
            }
            let req = Request::new("act")
                .input(input)
                .actor(actor)
                .snapshot(json!({"env": env}));
            match outcome {
                None => req,
                Some((r, ok)) => {
                    let mut output = json!({"r": r});
                    if let Some(ok) = ok {
                        output["ok"] = json!(ok);
                    }
                    req.phase(Phase::After).output(output)
                }
            }
        })
}

/// A rule: condition (or none), effect, shadow, phase after.
fn rule() -> impl Strategy<Value = (Option<String>, &'static str, bool, Option<String>)> {
    (
        prop_oneof![9 => condition().prop_map(Some), 1 => Just(None)],
        prop::sample::select(vec!["allow", "block", "require_approval"]),
        prop::bool::weighted(0.2),
        prop::option::weighted(0.25, after_condition()),
    )
}

fn policy_text(rules: &[(Option<String>, &'static str, bool, Option<String>)], default: &str) -> String {
    let mut text = format!("{CONTRACT}default: {default}\nrules:\n");
    for (n, (cond, effect, shadow, after)) in rules.iter().enumerate() {
        text.push_str(&format!("  - id: r{n}\n    action: act\n    effect: {effect}\n"));
        let cond = match after {
            Some(a) => {
                text.push_str("    phase: after\n");
                Some(match cond {
                    Some(c) => format!("({a}) || ({c})"),
                    None => a.clone(),
                })
            }
            None => cond.clone(),
        };
        if let Some(c) = cond {
            text.push_str(&format!("    when: {}\n", serde_json::to_string(&c).unwrap()));
        }
        if *shadow {
            text.push_str("    mode: shadow\n");
        }
    }
    text
}

/// Everything a decision says, minus nothing.
fn content(d: &rein_engine::Decision) -> Json {
    d.to_json()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, .. ProptestConfig::default() })]

    #[test]
    fn flat_decisions_equal_the_tree_evaluators(
        rules in prop::collection::vec(rule(), 1..7),
        default in prop::sample::select(vec!["allow", "block"]),
        requests in prop::collection::vec(request(), 1..6),
    ) {
        let text = policy_text(&rules, default);
        let policy = Policy::from_yaml_str(&text).map_err(|e| TestCaseError::fail(format!("{text}\n{e}")))?;
        for req in &requests {
            let decided = policy.decide(req);
            // `explain` runs the tree evaluator on every rule.
            let explained = policy.explain(req).decision;
            prop_assert_eq!(content(&decided), content(&explained), "{}\n{:?}", text, req);
            if let Ok(prepared) = policy.prepare(req) {
                prop_assert_eq!(content(&prepared.decide()), content(&explained), "{}", text);
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, .. ProptestConfig::default() })]

    /// Without shadow rules, a decision whose every rule the flat program
    /// knows takes the fast path (`Program::every`): the same decision as
    /// the tree evaluator's, through `decide`, `prepare` and a state.
    #[test]
    fn fast_path_decisions_equal_the_tree_evaluators(
        rules in prop::collection::vec(rule().prop_map(|(c, e, _, a)| (c, e, false, a)), 1..7),
        default in prop::sample::select(vec!["allow", "block"]),
        requests in prop::collection::vec(request(), 1..6),
    ) {
        let text = policy_text(&rules, default);
        let policy = Policy::from_yaml_str(&text).map_err(|e| TestCaseError::fail(format!("{text}\n{e}")))?;
        let state = rein_engine::MemoryState::new(std::sync::Arc::new(|v: &Json| v.to_string()));
        for req in &requests {
            let explained = policy.explain(req).decision;
            prop_assert_eq!(content(&policy.decide(req)), content(&explained), "{}\n{:?}", text, req);
            if let Ok(prepared) = policy.prepare(req) {
                prop_assert_eq!(content(&prepared.decide()), content(&explained), "{}", text);
                let (with_state, _) = prepared.decide_with_state(&state);
                prop_assert_eq!(content(&with_state), content(&explained), "{}", text);
            }
        }
    }
}
