//! `lint` on the planted corpus: every planted problem is found, with its
//! rule and a span on the rule's condition; nothing else is claimed.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use rein_analysis::{lint, Kind, LintReport};
use rein_engine::Policy;

fn run(name: &str) -> Option<(Policy, LintReport)> {
    let mut solver = common::solver()?;
    let policy = Policy::load(&[common::corpus(name)]).unwrap();
    let report = lint(&policy, &mut solver);
    Some((policy, report))
}

/// The findings as (kind, rule, other).
fn found(r: &LintReport) -> Vec<(Kind, Option<&str>, Option<&str>)> {
    r.findings
        .iter()
        .map(|f| (f.kind, f.rule.as_deref(), f.other.as_deref()))
        .collect()
}

/// The text a finding points at.
fn pointed(f: &rein_analysis::Finding) -> String {
    let (file, span) = f.site.clone().expect("a span");
    file.text()[span.start as usize..span.end as usize].to_string()
}

#[test]
fn dead_rules_are_found_and_live_ones_are_not() {
    let Some((_, r)) = run("planted/dead.yaml") else { return };
    let never: Vec<&str> = r
        .findings
        .iter()
        .filter(|f| f.kind == Kind::NeverMatches)
        .filter_map(|f| f.rule.as_deref())
        .collect();
    assert_eq!(
        never,
        ["over_max", "two_currencies", "unknown_currency", "long_note"],
        "{r:#?}"
    );
    let f = r
        .findings
        .iter()
        .find(|f| f.rule.as_deref() == Some("over_max"))
        .unwrap();
    assert_eq!(pointed(f), "input.amount > 200000");
    assert_eq!(f.location.as_ref().map(|l| l.1), Some(12));
    assert!(r.unknown.is_empty(), "{:?}", r.unknown);
}

#[test]
fn shadowed_rules_name_the_rule_that_covers_them() {
    let Some((_, r)) = run("planted/shadowed.yaml") else {
        return;
    };
    let shadowed: Vec<_> = found(&r).into_iter().filter(|f| f.0 == Kind::Shadowed).collect();
    assert_eq!(
        shadowed,
        [
            (Kind::Shadowed, Some("small_refunds"), Some("duplicates_blocked")),
            (Kind::Shadowed, Some("review_large"), Some("block_large")),
        ],
        "{r:#?}"
    );
    let f = r
        .findings
        .iter()
        .find(|f| f.rule.as_deref() == Some("small_refunds"))
        .unwrap();
    assert_eq!(pointed(f), "input.amount < 100 && input.reason.startsWith(\"dup\")");
}

#[test]
fn duplicates_and_implied_rules_are_found() {
    let Some((_, r)) = run("planted/redundant.yaml") else {
        return;
    };
    let f = found(&r);
    assert!(f.contains(&(Kind::Duplicate, Some("big_again"), Some("big"))), "{r:#?}");
    assert!(
        f.contains(&(Kind::Redundant, Some("offshore_big"), Some("offshore"))),
        "{r:#?}"
    );
    assert!(
        !f.iter().any(|x| x.0 == Kind::NeverMatches || x.0 == Kind::Shadowed),
        "{r:#?}"
    );
}

#[test]
fn conflicts_come_with_an_example_the_engine_decides_so() {
    let Some((policy, r)) = run("planted/conflict.yaml") else {
        return;
    };
    let c = r
        .findings
        .iter()
        .find(|f| f.kind == Kind::Conflict)
        .expect("a conflict");
    assert_eq!(
        (c.rule.as_deref(), c.other.as_deref()),
        (Some("payments_team"), Some("large"))
    );
    let ex = c.example.clone().unwrap();
    let d = policy.decide(&rein_engine::Request::from_json(ex.clone()).unwrap());
    assert_eq!(d.effect(), rein_engine::Effect::Block, "{ex}");
    assert_eq!(d.rules(), ["payments_team", "large"], "{ex}");
    assert_eq!(ex["actor"]["team"], "payments");
    assert!(ex["input"]["amount"].as_i64().unwrap() > 1000);
}

#[test]
fn wide_allows_and_actions_stuck_on_the_default_are_found() {
    let Some((_, r)) = run("planted/wide.yaml") else { return };
    let f = found(&r);
    assert!(
        f.contains(&(Kind::WideAllow, Some("admins_do_anything"), None)),
        "{r:#?}"
    );
    let stuck: Vec<_> = r
        .findings
        .iter()
        .filter(|f| f.kind == Kind::AlwaysDefault)
        .map(|f| f.action.as_deref())
        .collect();
    assert_eq!(stuck, [Some("delete_file")], "{r:#?}");
    let wide = r.findings.iter().find(|f| f.kind == Kind::WideAllow).unwrap();
    assert_eq!(pointed(wide), "\"*\"");
    // The allow is overridden for delete_file: shadowed there.
    assert!(
        f.contains(&(Kind::Shadowed, Some("admins_do_anything"), Some("no_deletes"))),
        "{r:#?}"
    );
}

#[test]
fn rules_that_decide_by_failing_are_not_claimed_removable() {
    let Some((policy, r)) = run("planted/failing.yaml") else {
        return;
    };
    let claimed: Vec<&str> = r
        .findings
        .iter()
        .filter(|f| matches!(f.kind, Kind::Shadowed | Kind::Redundant | Kind::Duplicate))
        .filter_map(|f| f.rule.as_deref())
        .collect();
    assert_eq!(claimed, ["covered"], "{r:#?}");
    // Each rule not claimed does decide: a request it fails on is blocked,
    // and allowed (or sent for approval) without it.
    let cases = [
        ("mul_review", r#"{"a": 11, "c": -4611686018427387904}"#),
        ("sub_review", r#"{"a": -6, "c": 9223372036854775807}"#),
        ("neg_review", r#"{"a": -6, "c": -9223372036854775808}"#),
    ];
    let text = std::fs::read_to_string(common::corpus("planted/failing.yaml")).unwrap();
    for (rule, input) in cases {
        let req = rein_engine::Request::from_json(
            serde_json::json!({"action": "pay", "input": serde_json::from_str::<serde_json::Value>(input).unwrap()}),
        )
        .unwrap();
        let with = policy.decide(&req);
        assert_eq!(with.effect(), rein_engine::Effect::Block, "{rule}: {with:?}");
        let without: String = text
            .lines()
            .filter(|l| !l.contains(&format!("id: {rule},")))
            .collect::<Vec<_>>()
            .join("\n");
        let without = Policy::from_yaml_str(&without).unwrap();
        assert_ne!(without.decide(&req).effect(), rein_engine::Effect::Block, "{rule}");
    }
}
