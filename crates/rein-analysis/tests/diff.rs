//! `diff` on pairs of policies: every change of decision is found with an
//! example both engines confirm; equivalent policies are proved the same.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use rein_analysis::{diff, DiffReport};
use rein_engine::{Effect, Policy, Request};

fn load(name: &str) -> Policy {
    Policy::load(&[common::corpus(&format!("diff/{name}.yaml"))]).unwrap()
}

fn run(old: &str, new: &str) -> Option<(Policy, Policy, DiffReport)> {
    let mut solver = common::solver()?;
    let (o, n) = (load(old), load(new));
    let report = diff(&o, &n, &mut solver);
    Some((o, n, report))
}

/// (action, from, to) of every change, confirmed ones only.
fn changes(r: &DiffReport) -> Vec<(String, Effect, Effect)> {
    let mut out: Vec<_> = r
        .actions
        .iter()
        .flat_map(|a| {
            a.changes
                .iter()
                .filter(|c| c.example.is_some())
                .map(|c| (a.action.clone(), c.from, c.to))
        })
        .collect();
    out.sort_by_key(|(a, f, t)| (a.clone(), *f as u8, *t as u8));
    out
}

/// Every example is decided as claimed by both policies.
fn examples_confirmed(old: &Policy, new: &Policy, r: &DiffReport) {
    for a in &r.actions {
        for c in &a.changes {
            let Some(ex) = &c.example else { continue };
            let req = Request::from_json(ex.clone()).unwrap();
            assert_eq!(old.decide(&req).effect(), c.from, "{ex}");
            assert_eq!(new.decide(&req).effect(), c.to, "{ex}");
        }
    }
}

#[test]
fn a_policy_is_the_same_as_itself() {
    let Some((_, _, r)) = run("refund.old", "refund.old") else {
        return;
    };
    assert!(!r.differs(), "{r:#?}");
    assert!(r.actions.is_empty() && r.unknown.is_empty(), "{r:#?}");
}

#[test]
fn rules_rewritten_with_the_same_meaning_are_proved_the_same() {
    let Some((_, _, r)) = run("refund.old", "refund.same") else {
        return;
    };
    assert!(!r.differs(), "{r:#?}");
    // Structurally they differ: a rule renamed, two rewritten.
    let refund = r.structure.action("refund").unwrap();
    assert_eq!(refund.rules_added.len(), 1);
    assert_eq!(refund.rules_removed.len(), 1);
}

#[test]
fn widened_narrowed_and_approval_changes_are_found_with_examples() {
    let Some((o, n, r)) = run("refund.old", "refund.new") else {
        return;
    };
    assert!(r.differs());
    assert_eq!(
        changes(&r),
        [
            ("lookup".to_string(), Effect::Allow, Effect::Block),
            ("refund".to_string(), Effect::Allow, Effect::RequireApproval),
            ("refund".to_string(), Effect::Block, Effect::Allow),
        ],
        "{r:#?}"
    );
    examples_confirmed(&o, &n, &r);
    // And the reverse direction finds the reverse changes.
    let (_, _, back) = run("refund.new", "refund.old").unwrap();
    assert_eq!(
        changes(&back),
        [
            ("lookup".to_string(), Effect::Block, Effect::Allow),
            ("refund".to_string(), Effect::Allow, Effect::Block),
            ("refund".to_string(), Effect::RequireApproval, Effect::Allow),
        ],
        "{back:#?}"
    );
}

#[test]
fn contract_changes_and_removed_actions_are_decision_changes() {
    let Some((o, n, r)) = run("refund.old", "refund.contract") else {
        return;
    };
    assert!(r.differs());
    let refund = r.actions.iter().find(|a| a.action == "refund").unwrap();
    assert!(refund.contract_changed);
    let lookup = r.actions.iter().find(|a| a.action == "lookup").unwrap();
    assert_eq!(lookup.only_in, Some("old"));
    let c = changes(&r);
    assert!(
        c.contains(&("refund".to_string(), Effect::Allow, Effect::Block)),
        "{r:#?}"
    );
    assert!(
        c.contains(&("lookup".to_string(), Effect::Allow, Effect::Block)),
        "{r:#?}"
    );
    examples_confirmed(&o, &n, &r);
    // The refund example shows an amount the new contract refuses.
    let ex = refund.changes.iter().find_map(|c| c.example.clone()).unwrap();
    assert!(ex["input"]["amount"].as_i64().unwrap() > 500, "{ex}");
}

#[test]
fn the_same_expression_over_changed_tool_facts_is_not_the_same_unknown() {
    let Some((o, n, r)) = run("tool.old", "tool.new") else {
        return;
    };
    assert_eq!(
        changes(&r),
        [("mcp.fs.read".to_string(), Effect::Allow, Effect::Block)],
        "{r:#?}"
    );
    examples_confirmed(&o, &n, &r);
}

/// Two policies whose limits differ decide some request differently (the
/// fourth write of a session under `count: 3` and `count: 30`): never
/// proved the same. The same limit written again still is.
#[test]
fn changed_limits_are_never_proved_the_same() {
    let Some(mut solver) = common::solver() else {
        return;
    };
    let base = "version: l\ndefault: allow\ncontracts:\n  actions:\n    write:\n      input: {path: {type: string}, n: {type: int, min: 0}}\nrules:\n  - id: rate\n    action: write\n    effect: block\n    limit: {count: 30, per: [session.id], window: 1h}\n";
    let old = Policy::from_yaml_str(base).unwrap();
    let variants = [
        base.replace("count: 30", "count: 3"),
        base.replace("window: 1h", "window: 1m"),
        base.replace("per: [session.id]", "per: [input.path]"),
        base.replace("count: 30", "sum: input.n, max: 30"),
        base.replace("effect: block", "effect: allow")
            .replace("default: allow", "default: block"),
    ];
    for text in &variants {
        let new = Policy::from_yaml_str(text).unwrap();
        let r = diff(&old, &new, &mut solver);
        assert!(r.differs(), "{text}\n{r:#?}");
    }
    let again = Policy::from_yaml_str(&base.replace("version: l", "version: l2")).unwrap();
    let r = diff(&old, &again, &mut solver);
    assert!(!r.differs(), "{r:#?}");
}
