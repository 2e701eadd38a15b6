//! Soundness on the shipped policies and the planted corpus: no example
//! policy gets a "never matches"; and every claim lint makes (never
//! matches, never takes effect, redundant, duplicate, always the default)
//! holds on requests sampled around the constants the rules mention,
//! decided by the engine (a property test).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use rein_analysis::{lint, Kind, LintReport};
use rein_engine::analysis::{self, Literal, Logic, Origin, Sort, Term};
use rein_engine::{Effect, Phase, Policy};
use rustc_hash::FxHashMap;
use std::path::PathBuf;

/// Every example policy, loaded as its tests load it: alone, or on top of
/// the shipped agent contracts; Actra's examples both natively and as
/// Actra files.
fn example_policies() -> Vec<(String, Policy)> {
    let root = common::repo();
    let agents = root.join("policies/agents/coding-agent.yaml");
    let mut out = Vec::new();
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(root.join("examples"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    dirs.sort();
    for dir in dirs {
        let policy = dir.join("policy.yaml");
        if policy.is_file() {
            let p = Policy::load(std::slice::from_ref(&policy))
                .or_else(|_| Policy::load(&[agents.clone(), policy.clone()]))
                .unwrap_or_else(|e| panic!("{}: {e:?}", policy.display()));
            out.push((policy.display().to_string(), p));
        }
    }
    let mut actra: Vec<PathBuf> = std::fs::read_dir(root.join("examples/actra"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("schema.yaml").is_file())
        .collect();
    actra.sort();
    for dir in actra {
        let native = dir.join("native.yaml");
        if native.is_file() {
            out.push((native.display().to_string(), Policy::load(&[native]).unwrap()));
        }
        let p = Policy::load_actra(&dir.join("schema.yaml"), &dir.join("policy.yaml"), None).unwrap();
        out.push((dir.join("policy.yaml").display().to_string(), p));
    }
    out
}

fn planted() -> Vec<(String, Policy)> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(common::corpus("planted"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|f| (f.display().to_string(), Policy::load(&[f]).unwrap()))
        .collect()
}

/// Values worth trying per sort: the constants the rules compare with,
/// their neighbours, and the edges.
struct Pools {
    ints: Vec<i128>,
    reals: Vec<f64>,
    strs: Vec<String>,
}

fn constants(t: &Term, p: &mut Pools) {
    match t {
        Term::Int(i) => p.ints.extend([*i, i - 1, i + 1]),
        Term::Real(n, d) => {
            let x = n.parse::<f64>().unwrap() / d.parse::<f64>().unwrap();
            p.reals.extend([x, x - 0.5, x + 0.5, f64::from_bits(x.to_bits() + 1)]);
        }
        Term::Str(s) => p.strs.push(s.clone()),
        Term::Not(x) | Term::Neg(x) | Term::ToReal(x) | Term::StrLen(x) => constants(x, p),
        Term::And(xs) | Term::Or(xs) => xs.iter().for_each(|x| constants(x, p)),
        Term::Ite(a, b, c) => [a, b, c].iter().for_each(|x| constants(x, p)),
        Term::Eq(a, b)
        | Term::Lt(a, b)
        | Term::Le(a, b)
        | Term::Add(a, b)
        | Term::Sub(a, b)
        | Term::Mul(a, b)
        | Term::PrefixOf(a, b)
        | Term::SuffixOf(a, b)
        | Term::Contains(a, b) => {
            constants(a, p);
            constants(b, p);
        }
        Term::Bool(_) | Term::Var(_) => {}
    }
}

/// Checks every claim of `report` on `cases` sampled requests per action;
/// returns how many samples made some rule match (so a vacuous run shows).
fn claims_hold_on_samples(name: &str, policy: &Policy, report: &LintReport, cases: u32) -> usize {
    let mut logic = Logic::new();
    let models = analysis::lower(policy, &mut logic);
    let mut pools = Pools {
        ints: vec![0, 1, -1, i64::MAX.into(), i64::MIN.into()],
        reals: vec![0.0, 1.0, -1.0, 0.5],
        strs: vec![String::new(), "x".into(), "é".into()],
    };
    for v in &logic.vars {
        if let Some(d) = &v.definition {
            constants(d, &mut pools);
        }
    }
    for m in &models {
        constants(&m.contract, &mut pools);
        for r in &m.rules {
            constants(&r.holds, &mut pools);
        }
    }
    let base = pools.strs.clone();
    for a in &base {
        for b in base.iter().take(8) {
            pools.strs.push(format!("{a}{b}"));
        }
        pools.strs.push(format!("{a}/x"));
        pools.strs.push(format!("x{a}"));
    }
    let fields: Vec<(u32, Sort)> = logic
        .vars
        .iter()
        .enumerate()
        .filter(|(_, v)| matches!(v.origin, Origin::Field { .. } | Origin::Present { .. }))
        .map(|(i, v)| (i as u32, v.sort))
        .collect();
    let matched = std::cell::Cell::new(0usize);
    for m in &models {
        let effect_of: FxHashMap<&str, Effect> = m.rules.iter().map(|r| (r.id.as_str(), r.effect)).collect();
        let mut runner = TestRunner::new(Config {
            cases,
            failure_persistence: None,
            ..Config::default()
        });
        let strategy = proptest::collection::vec(any::<(u16, bool)>(), fields.len());
        let result = runner.run(&strategy, |seeds| {
            let mut values = FxHashMap::default();
            for ((var, sort), (pick, coin)) in fields.iter().zip(&seeds) {
                let pick = *pick as usize;
                let lit = match sort {
                    Sort::Bool => Literal::Bool(*coin),
                    Sort::Int => Literal::Int(pools.ints[pick % pools.ints.len()]),
                    Sort::Real => Literal::Real(pools.reals[pick % pools.reals.len()]),
                    Sort::Str => Literal::Str(pools.strs[pick % pools.strs.len()].clone()),
                };
                values.insert(*var, lit);
            }
            let Some(req) = analysis::build_request(policy, &logic, &m.action, &values) else {
                return Ok(());
            };
            if policy.action_state(&m.action, Phase::Before).reads {
                return Ok(());
            }
            let d = policy.decide(&req);
            if d.violation().is_some() {
                return Ok(());
            }
            let rules = d.rules();
            if !rules.is_empty() {
                matched.set(matched.get() + 1);
            }
            for f in &report.findings {
                // A grouped finding lists its actions; else `None` is every
                // action the rule targets.
                let here = if f.actions.is_empty() {
                    f.action.as_deref().is_none_or(|a| a == m.action)
                } else {
                    f.actions.contains(&m.action)
                };
                if !here {
                    continue;
                }
                let rule = f.rule.as_deref().unwrap_or("");
                let other = f.other.as_deref().unwrap_or("");
                let ok = match f.kind {
                    Kind::NeverMatches => !rules.contains(&rule),
                    Kind::Shadowed => !rules.contains(&rule) || effect_of.get(rule).is_some_and(|e| *e != d.effect()),
                    Kind::AlwaysDefault => d.effect() == policy.default_effect(Phase::Before),
                    Kind::Redundant | Kind::RedundantBase => !rules.contains(&rule) || rules.contains(&other),
                    Kind::Duplicate => rules.contains(&rule) == rules.contains(&other),
                    Kind::WideAllow | Kind::Conflict | Kind::ApprovalConflict => true,
                };
                prop_assert!(
                    ok,
                    "{name}: {:?} claim `{}` refuted by {:?} → {:?} {:?}",
                    f.kind,
                    f.message,
                    req,
                    d.effect(),
                    rules
                );
            }
            Ok(())
        });
        if let Err(e) = result {
            panic!("{e}");
        }
    }
    matched.get()
}

#[test]
fn example_policies_get_no_never_matches_and_every_claim_holds_on_samples() {
    let Some(mut solver) = common::solver() else { return };
    let mut total = 0;
    for (name, policy) in example_policies() {
        let report = lint(&policy, &mut solver);
        let never: Vec<_> = report
            .findings
            .iter()
            .filter(|f| f.kind == Kind::NeverMatches)
            .map(|f| &f.message)
            .collect();
        assert!(never.is_empty(), "{name}: {never:?}");
        total += claims_hold_on_samples(&name, &policy, &report, 64);
    }
    assert!(total > 100, "the samples matched rules only {total} times");
}

#[test]
fn planted_claims_hold_on_samples_and_live_rules_are_not_dead() {
    let Some(mut solver) = common::solver() else { return };
    for (name, policy) in planted() {
        let report = lint(&policy, &mut solver);
        if name.ends_with("live.yaml") {
            let never: Vec<_> = report
                .findings
                .iter()
                .filter(|f| f.kind == Kind::NeverMatches)
                .map(|f| &f.message)
                .collect();
            assert!(never.is_empty(), "{never:?}");
        }
        let matched = claims_hold_on_samples(&name, &policy, &report, 256);
        assert!(matched > 0, "{name}: no sample matched a rule");
    }
}

/// The sampling check can fail: a false claim planted in a report is
/// refuted.
#[test]
fn the_sampler_refutes_a_false_claim() {
    let Some(mut solver) = common::solver() else { return };
    let policy = Policy::load(&[common::corpus("planted/dead.yaml")]).unwrap();
    let mut report = lint(&policy, &mut solver);
    let mut wrong = report.findings[0].clone();
    wrong.rule = Some("small".into());
    wrong.message = "planted false claim".into();
    report.findings.push(wrong);
    let refuted = std::panic::catch_unwind(|| claims_hold_on_samples("dead", &policy, &report, 256));
    assert!(refuted.is_err(), "the false claim was not refuted");
}
