//! Differential test against the real Actra engine: Rein's Actra mode must
//! load what Actra 0.7.8 loads, refuse what it refuses, and decide every
//! input that fits the schema as it does (same effect, same deciding rule),
//! except for the deviations documented in `docs/actra-compat.md`.
//!
//! The cases and Actra's answers come from `tests/actra/actra_corpus.py`.
//! By default the recorded file `tests/actra/recorded.jsonl` is used; CI
//! regenerates a larger corpus with the real engine and points
//! `REIN_ACTRA_CORPUS` at it.

use rein_engine::actra::{load_strs_with, Options};
use rein_engine::{Basis, Effect, Policy};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::PathBuf;

/// Deviations Rein makes on purpose, with how to recognise each.
const REFUSALS: [(&str, &str); 6] = [
    // (tag, text in one of Rein's error messages)
    ("duplicate-id", "is used twice"),
    ("empty-id", "`id` is empty"),
    ("duplicate-key", "duplicate key"),
    ("big-int", "does not fit in 64 bits"),
    ("list-form", "written as a list is not read"),
    ("yaml-tab", "must be followed by a valid YAML whitespace"),
];

#[derive(Default)]
struct Tally {
    cases: usize,
    load_agree: usize,
    inputs: usize,
    input_agree: usize,
    deviations: BTreeMap<&'static str, usize>,
}

fn corpus_path() -> PathBuf {
    match std::env::var_os("REIN_ACTRA_CORPUS") {
        Some(p) => PathBuf::from(p),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/actra/recorded.jsonl"),
    }
}

fn tags(case: &Value) -> Vec<&str> {
    case["tags"]
        .as_array()
        .map_or(Vec::new(), |t| t.iter().filter_map(Value::as_str).collect())
}

fn load(case: &Value, right_hand: bool) -> Result<Policy, rein_engine::LoadError> {
    load_strs_with(
        case["schema"].as_str().unwrap_or_default(),
        case["policy"].as_str().unwrap_or_default(),
        case["governance"].as_str(),
        Options {
            governance_right_hand: right_hand,
        },
    )
}

#[test]
fn agrees_with_actra_except_documented_deviations() {
    let path = corpus_path();
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let mut tallies: BTreeMap<String, Tally> = BTreeMap::new();
    let mut failures: Vec<String> = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let case: Value = serde_json::from_str(line).expect("a corpus line is JSON");
        let id = case["id"].as_str().unwrap_or("?").to_string();
        let t = tallies
            .entry(case["category"].as_str().unwrap_or("?").to_string())
            .or_default();
        t.cases += 1;
        let tags = tags(&case);
        let actra_ok = case["actra"]["ok"].as_bool().expect("the corpus holds Actra's answers");
        let rein = load(&case, true);
        // With governance, Rein also loads the files with Actra's
        // left-hand-only view: that outcome must be Actra's exactly.
        let view_ok = if case["governance"].is_string() {
            load(&case, false).is_ok()
        } else {
            rein.is_ok()
        };
        let fail = |why: String, failures: &mut Vec<String>| {
            failures.push(format!(
                "{id}: {why}\n--- schema\n{}--- policy\n{}--- governance\n{}",
                case["schema"].as_str().unwrap_or(""),
                case["policy"].as_str().unwrap_or(""),
                case["governance"].as_str().unwrap_or("")
            ));
        };
        if view_ok == actra_ok {
            if rein.is_ok() == view_ok {
                t.load_agree += 1;
            } else if tags.contains(&"governance-rhs") {
                *t.deviations.entry("governance-rhs").or_default() += 1;
            } else {
                fail(
                    "governance counts right-hand fields here, but the case is not tagged for it".into(),
                    &mut failures,
                );
            }
        } else if actra_ok {
            let errors = match &rein {
                Err(e) => e.to_string(),
                Ok(_) => String::new(),
            };
            match REFUSALS
                .iter()
                .find(|(tag, marker)| tags.contains(tag) && errors.contains(marker))
            {
                Some((tag, _)) => *t.deviations.entry(tag).or_default() += 1,
                None => fail(format!("Actra loads this, Rein refuses it:\n{errors}"), &mut failures),
            }
        } else {
            let actra_error = case["actra"]["error"].as_str().unwrap_or("");
            let in_list = tags.contains(&"in-list")
                && (actra_error.contains("'In'")
                    || actra_error.contains("'NotIn'")
                    || actra_error.contains("untagged enum ConditionAst"));
            let bom = ["schema", "policy", "governance"]
                .iter()
                .any(|k| case[*k].as_str().is_some_and(|t| t.starts_with('\u{feff}')));
            if in_list {
                *t.deviations.entry("in-list").or_default() += 1;
            } else if bom && tags.contains(&"bom") {
                *t.deviations.entry("bom").or_default() += 1;
            } else {
                fail(
                    format!("Actra refuses this ({actra_error}), Rein loads it"),
                    &mut failures,
                );
            }
        }
        let (Ok(policy), true) = (&rein, actra_ok) else {
            continue;
        };
        for input in case["inputs"].as_array().into_iter().flatten() {
            let Some(answer) = input.get("actra") else { continue };
            t.inputs += 1;
            let request = &input["input"];
            let d = policy.decide_actra(request);
            if !input["fits"].as_bool().unwrap_or(false) {
                if d.effect() == Effect::Block && matches!(d.basis(), Basis::Contract(_)) {
                    *t.deviations.entry("contract").or_default() += 1;
                } else {
                    fail(
                        format!(
                            "{request} does not fit the schema, yet Rein decided {} by {:?}",
                            d.effect(),
                            d.rules()
                        ),
                        &mut failures,
                    );
                }
                continue;
            }
            if let Some(v) = d.violation() {
                fail(
                    format!("{request} fits the schema, yet Rein refused it: {v}"),
                    &mut failures,
                );
                continue;
            }
            let want_effect = answer["effect"].as_str();
            let want_rule = answer["matched_rule"].as_str();
            let got_rules = d.rules();
            let got_rule = got_rules.first().copied();
            if want_effect == Some(d.effect().as_str()) && want_rule == got_rule && got_rules.len() <= 1 {
                t.input_agree += 1;
            } else {
                fail(
                    format!("{request}: Actra {answer}, Rein {} by {got_rules:?}", d.effect()),
                    &mut failures,
                );
            }
        }
    }

    let mut report = String::from("\nActra 0.7.8 vs Rein's Actra mode\n");
    report.push_str(&format!(
        "{:<18} {:>6} {:>10} {:>7} {:>10}  documented deviations\n",
        "category", "cases", "load same", "inputs", "same"
    ));
    let mut total = Tally::default();
    for (cat, t) in &tallies {
        let devs: Vec<String> = t.deviations.iter().map(|(k, v)| format!("{k} {v}")).collect();
        report.push_str(&format!(
            "{cat:<18} {:>6} {:>10} {:>7} {:>10}  {}\n",
            t.cases,
            t.load_agree,
            t.inputs,
            t.input_agree,
            devs.join(", ")
        ));
        total.cases += t.cases;
        total.load_agree += t.load_agree;
        total.inputs += t.inputs;
        total.input_agree += t.input_agree;
        for (k, v) in &t.deviations {
            *total.deviations.entry(k).or_default() += v;
        }
    }
    let devs: Vec<String> = total.deviations.iter().map(|(k, v)| format!("{k} {v}")).collect();
    report.push_str(&format!(
        "{:<18} {:>6} {:>10} {:>7} {:>10}  {}\n",
        "total",
        total.cases,
        total.load_agree,
        total.inputs,
        total.input_agree,
        devs.join(", ")
    ));
    report.push_str(&format!("undocumented differences: {}\n", failures.len()));
    println!("{report}");
    assert!(
        total.cases >= 100,
        "only {} corpus cases in {}",
        total.cases,
        path.display()
    );
    if !failures.is_empty() {
        let shown: Vec<&String> = failures.iter().take(15).collect();
        panic!(
            "{} undocumented differences from Actra (first {}):\n\n{}",
            failures.len(),
            shown.len(),
            shown.iter().map(|s| s.as_str()).collect::<Vec<_>>().join("\n\n")
        );
    }
}
