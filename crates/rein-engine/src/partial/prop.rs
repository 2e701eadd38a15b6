//! The property the residuals promise, on every example policy: for inputs
//! generated from each action's contract, the residual printed by
//! `what_can` (compiled back from its CEL) holds exactly when the full
//! policy decides `allow` (and the approval residual exactly when it
//! decides `require_approval`).

use crate::testing::read_test_file;
use crate::types::{ObjectType, Type};
use crate::{Basis, Effect, Policy, Request, Residual, Status};
use proptest::strategy::{Strategy, ValueTree};
use proptest::test_runner::{Config, TestRunner};
use serde_json::{json, Map, Value as Json};
use std::path::{Path, PathBuf};

/// Every `*.test.yaml` under `examples/`.
fn test_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    let mut entries: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            test_files(&p, out);
        } else if p.to_string_lossy().ends_with(".test.yaml") {
            out.push(p);
        }
    }
}

/// The example policies, each with the actors and snapshots its test
/// cases use (distinct pairs).
/// An example: its test file's name, its policy, and the (actor,
/// snapshot) pairs its cases use.
type Example = (String, Policy, Vec<(Json, Json)>);

/// One rule's "true", "false" and "defined" formulas: compiled (none for a
/// constant) and printed.
type RuleFormulas = (String, [Option<crate::CompiledResidual>; 3], [String; 3]);

fn examples() -> Vec<Example> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    let mut files = Vec::new();
    test_files(&root, &mut files);
    assert!(files.len() >= 10, "the examples were not found");
    let mut out = Vec::new();
    for f in files {
        let file = read_test_file(&f).unwrap_or_else(|e| panic!("{}: {e:?}", f.display()));
        let policy = file.load_policy().unwrap_or_else(|e| panic!("{}: {e:?}", f.display()));
        let mut pairs: Vec<(Json, Json)> = Vec::new();
        for case in &file.cases {
            let mut requests: Vec<(Json, Json)> = Vec::new();
            if let Some(a) = &case.actra_request {
                requests.push((
                    a.get("actor").cloned().unwrap_or(Json::Null),
                    a.get("snapshot").cloned().unwrap_or(Json::Null),
                ));
            } else {
                requests.push((case.request.actor.clone(), case.request.snapshot.clone()));
            }
            for s in case.sequence.iter().flatten() {
                requests.push((s.request.actor.clone(), s.request.snapshot.clone()));
            }
            for (actor, snapshot) in requests {
                let norm = |v: Json| if v.is_null() { json!({}) } else { v };
                let pair = (norm(actor), norm(snapshot));
                if !pairs.contains(&pair) {
                    pairs.push(pair);
                }
            }
        }
        out.push((f.display().to_string(), policy, pairs));
    }
    out
}

/// Literals a policy's texts mention: the values worth generating.
struct Pool {
    strings: Vec<String>,
    numbers: Vec<f64>,
}

impl Pool {
    fn of(texts: &[&str]) -> Pool {
        let mut strings = vec![String::new(), "a".into(), " ".into()];
        let mut numbers = vec![0.0, 1.0, -1.0];
        let string_re = regex::Regex::new(r#""((?:[^"\\]|\\.)*)"|'((?:[^'\\]|\\.)*)'"#).unwrap();
        let number_re = regex::Regex::new(r"-?\b\d+(?:\.\d+)?\b").unwrap();
        let word_re = regex::Regex::new(r"[A-Za-z_./:@*-][A-Za-z0-9_./:@*-]*").unwrap();
        for t in texts {
            for c in string_re.captures_iter(t) {
                let s = c.get(1).or_else(|| c.get(2)).map_or("", |m| m.as_str());
                strings.push(s.replace("\\\"", "\"").replace("\\\\", "\\"));
            }
            for m in number_re.find_iter(t) {
                if let Ok(n) = m.as_str().parse::<f64>() {
                    numbers.extend([n, n - 1.0, n + 1.0, n - 0.5, n + 0.5]);
                }
            }
            for m in word_re.find_iter(t).take(400) {
                strings.push(m.as_str().to_string());
            }
        }
        strings.sort();
        strings.dedup();
        numbers.sort_by(f64::total_cmp);
        numbers.dedup();
        Pool { strings, numbers }
    }
}

/// A small deterministic generator driven by one seed.
struct Gen<'p> {
    state: u64,
    pool: &'p Pool,
    runner: TestRunner,
}

impl Gen<'_> {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.state ^= self.state >> 12;
        self.state ^= self.state << 25;
        self.state ^= self.state >> 27;
        self.state.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }

    fn string(&mut self, pattern: Option<&str>) -> String {
        if let Some(p) = pattern {
            if !self.chance(10) {
                let p = p.trim_start_matches('^').trim_end_matches('$');
                if let Ok(strategy) = proptest::string::string_regex(p) {
                    if let Ok(tree) = strategy.new_tree(&mut self.runner) {
                        return tree.current();
                    }
                }
            }
        }
        let pool = &self.pool.strings;
        let base = pool[self.below(pool.len())].clone();
        match self.below(6) {
            0 => format!("{base}{}", pool[self.below(pool.len())]),
            1 => format!("{base}/x"),
            2 => base.to_uppercase(),
            _ => base,
        }
    }

    fn number(&mut self) -> f64 {
        if self.chance(80) {
            self.pool.numbers[self.below(self.pool.numbers.len())]
        } else {
            (self.next() % 2_000_000) as f64 / 10.0 - 50_000.0
        }
    }

    fn value(&mut self, ty: &Type, c: &crate::types::Constraints, depth: u32) -> Json {
        if let Some(allowed) = &c.allowed {
            if !allowed.is_empty() && self.chance(90) {
                let v = &allowed[self.below(allowed.len())];
                return v.to_json(ty);
            }
        }
        match ty {
            Type::Null => Json::Null,
            Type::Bool => json!(self.chance(50)),
            Type::Int => {
                let n = self.number();
                json!(n.trunc() as i64)
            }
            Type::Number => {
                let n = self.number();
                if n.fract() == 0.0 && self.chance(50) {
                    json!(n as i64)
                } else {
                    json!(n)
                }
            }
            Type::String => json!(self.string(c.pattern.as_ref().map(|p| p.source()))),
            Type::Timestamp => {
                let secs = 1_767_225_600 + (self.next() % 86_400_000) as i64 - 43_200_000;
                json!(jiff::Timestamp::from_second(secs).unwrap().to_string())
            }
            Type::Duration => json!(format!("{}s", self.below(100_000))),
            Type::List(item) if depth < 3 => {
                let n = self.below(4);
                let ic = c.items.as_deref();
                let empty = crate::types::Constraints::default();
                Json::Array(
                    (0..n)
                        .map(|_| self.value(item, ic.unwrap_or(&empty), depth + 1))
                        .collect(),
                )
            }
            Type::Map(item) if depth < 3 => {
                let n = self.below(3);
                let empty = crate::types::Constraints::default();
                let ic = c.items.as_deref();
                let mut m = Map::new();
                for _ in 0..n {
                    let k = self.string(None);
                    let v = self.value(item, ic.unwrap_or(&empty), depth + 1);
                    m.insert(k, v);
                }
                Json::Object(m)
            }
            Type::Object(o) if depth < 4 => self.object(o, depth + 1),
            _ => Json::Null,
        }
    }

    fn object(&mut self, o: &ObjectType, depth: u32) -> Json {
        let mut m = Map::new();
        for f in &o.fields {
            if f.empty_when_absent || (f.optional && self.chance(30)) {
                continue;
            }
            // Now and then a field out of its contract: both sides must
            // then refuse.
            if self.chance(2) {
                continue;
            }
            m.insert(f.name.clone(), self.value(&f.ty, &f.constraints, depth));
        }
        Json::Object(m)
    }
}

/// Whether a residual says the effect holds for this input.
fn claims(
    residual: &Residual,
    compiled: Option<&crate::CompiledResidual>,
    input: &Json,
    contract_ok: bool,
    now: jiff::Timestamp,
) -> bool {
    match residual {
        Residual::Always => contract_ok,
        Residual::Never | Residual::Unknown => false,
        Residual::When(_) => compiled.is_some_and(|c| c.holds(input, now) == Ok(true)),
    }
}

#[test]
fn residuals_decide_as_the_full_policy_on_every_example() {
    let cases_per_action: u32 = std::env::var("REIN_WHAT_CAN_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(48);
    let effects = std::cell::Cell::new([0u64; 3]);
    let mut checked = 0u64;
    let mut analysed = 0u64;
    for (name, policy, pairs) in examples() {
        let texts: Vec<&str> = policy.compiled().files.iter().map(|f| f.text()).collect();
        let mut pool = Pool::of(&texts);
        for (actor, snapshot) in pairs.iter().take(8) {
            let Ok(answer) = policy.what_can(actor, snapshot) else {
                continue;
            };
            for a in &answer.actions {
                assert_ne!(
                    a.status,
                    Status::NotAnalysable,
                    "{name}: {} for {actor}: {:?}",
                    a.action,
                    a.error
                );
                if a.status == Status::DependsOnState {
                    assert!(!a.state_rules.is_empty(), "{name}: {} names no rule", a.action);
                    continue;
                }
                analysed += 1;
                let compile = |r: &Residual| {
                    r.cel().map(|c| {
                        policy
                            .compile_residual(&a.action, c)
                            .unwrap_or_else(|e| panic!("{name}: {}: `{c}`: {e}", a.action))
                    })
                };
                let (allowed, approval) = (compile(&a.allowed), compile(&a.approval));
                let more: Vec<&str> = [&a.allowed, &a.approval].iter().filter_map(|r| r.cel()).collect();
                let extra = Pool::of(&more);
                pool.strings.extend(extra.strings);
                pool.numbers.extend(extra.numbers);
                let ir = &policy.compiled().actions[policy.compiled().action_index[&a.action] as usize];
                // Each rule's "true" and "false" formulas, compiled back.
                let actor_values =
                    crate::contract::check_root_from(Some(actor), &policy.compiled().actor, "actor").unwrap();
                let snapshot_values =
                    crate::contract::check_root_from(Some(snapshot), &policy.compiled().snapshot, "snapshot").unwrap();
                let per_rule: Vec<RuleFormulas> =
                    super::fold_rules(policy.compiled(), ir, &actor_values, &snapshot_values)
                        .unwrap()
                        .into_iter()
                        .zip(&ir.before)
                        .map(|((_, tri), r)| {
                            let id = policy.compiled().rules[r.rule as usize].id.clone();
                            let compile = |f: &super::F| match f {
                                super::F::True | super::F::False => None,
                                other => Some(
                                    policy
                                        .compile_residual(&a.action, &other.print())
                                        .unwrap_or_else(|e| panic!("{name}: rule {id}: `{}`: {e}", other.print())),
                                ),
                            };
                            (
                                [compile(&tri.t), compile(&tri.f), compile(&tri.d)],
                                [tri.t.print(), tri.f.print(), tri.d.print()],
                                id,
                            )
                        })
                        .map(|(c, t, id)| (id, c, t))
                        .collect();
                let mut runner = TestRunner::new(Config {
                    cases: cases_per_action,
                    failure_persistence: None,
                    ..Config::default()
                });
                let result = runner.run(&proptest::prelude::any::<u64>(), |seed| {
                    let mut g = Gen {
                        state: seed | 1,
                        pool: &pool,
                        runner: TestRunner::deterministic(),
                    };
                    let input = g.object(&ir.input, 0);
                    let now = jiff::Timestamp::from_second(1_767_225_600 + (g.next() % 31_536_000) as i64).unwrap();
                    let d = policy.decide(
                        &Request::new(a.action.clone())
                            .input(input.clone())
                            .actor(actor.clone())
                            .snapshot(snapshot.clone())
                            .time(now),
                    );
                    let contract_ok = !matches!(d.basis(), Basis::Contract(_));
                    let mut seen = effects.get();
                    seen[d.effect() as usize] += 1;
                    effects.set(seen);
                    if contract_ok {
                        let explained = policy.explain(
                            &Request::new(a.action.clone())
                                .input(input.clone())
                                .actor(actor.clone())
                                .snapshot(snapshot.clone())
                                .time(now),
                        );
                        for trace in &explained.rules {
                            let Some((_, compiled, texts)) = per_rule.iter().find(|(id, ..)| *id == trace.id) else {
                                continue;
                            };
                            let holds = |i: usize| match texts[i].as_str() {
                                "true" => true,
                                "false" => false,
                                _ => compiled[i].as_ref().is_some_and(|c| c.holds(&input, now) == Ok(true)),
                            };
                            let got = (holds(0), holds(1), holds(2));
                            let want = match &trace.outcome {
                                crate::Outcome::Matched => (true, false, true),
                                crate::Outcome::NotMatched => (false, true, true),
                                crate::Outcome::Error(_) => (false, false, false),
                            };
                            proptest::prop_assert_eq!(
                                got,
                                want,
                                "rule {}: true when `{}`, false when `{}`, defined when `{}`, input {}",
                                trace.id,
                                &texts[0],
                                &texts[1],
                                &texts[2],
                                input
                            );
                        }
                    }
                    let says_allow = claims(&a.allowed, allowed.as_ref(), &input, contract_ok, now);
                    let says_approval = claims(&a.approval, approval.as_ref(), &input, contract_ok, now);
                    proptest::prop_assert_eq!(
                        says_allow,
                        d.effect() == Effect::Allow,
                        "allow: residual {:?}, input {}, decision {:?} {:?}",
                        a.allowed,
                        input,
                        d.effect(),
                        d.basis()
                    );
                    proptest::prop_assert_eq!(
                        says_approval,
                        d.effect() == Effect::RequireApproval,
                        "approval: residual {:?}, input {}, decision {:?} {:?}",
                        a.approval,
                        input,
                        d.effect(),
                        d.basis()
                    );
                    Ok(())
                });
                if let Err(e) = result {
                    panic!(
                        "{name}: action {} for actor {actor}, snapshot {snapshot}: {e}",
                        a.action
                    );
                }
                checked += u64::from(cases_per_action);
            }
        }
    }
    let [allow, approval, block] = effects.get();
    eprintln!(
        "what-can: {analysed} (actor, action) answers checked on {checked} generated inputs \
         (decided allow {allow}, require_approval {approval}, block {block})"
    );
    assert!(analysed >= 20, "too few answers were checked: {analysed}");
    // The inputs reach every effect, so both directions are exercised.
    assert!(
        allow > checked / 50 && approval > checked / 200,
        "too few allowed or approval inputs"
    );
}
