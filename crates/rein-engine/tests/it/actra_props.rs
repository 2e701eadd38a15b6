//! Property test: a random Actra policy decides every input that fits its
//! schema the same way in three places: a small reference interpreter of
//! Actra's semantics written here, Rein's Actra mode, and the native policy
//! `rein convert` prints for it (effect and deciding rule).

use proptest::prelude::*;
use rein_engine::actra::convert_strs;
use rein_engine::{Effect, Policy, Request};
use serde_json::{json, Map, Value as Json};

#[derive(Clone, Copy, Debug, PartialEq)]
enum Ty {
    Str,
    Num,
    Bool,
}

const ACTIONS: [(&str, &[(&str, Ty)]); 3] = [
    (
        "refund",
        &[
            ("amount", Ty::Num),
            ("currency", Ty::Str),
            ("urgent", Ty::Bool),
            ("type", Ty::Str),
        ],
    ),
    ("pay", &[("amount", Ty::Num), ("note", Ty::Str)]),
    ("ping", &[]),
];
const ACTOR: &[(&str, Ty)] = &[("role", Ty::Str), ("level", Ty::Num), ("trusted", Ty::Bool)];
const SNAPSHOT: &[(&str, Ty)] = &[("fraud", Ty::Bool), ("limit", Ty::Num), ("env", Ty::Str)];

const SCHEMA: &str = "\
version: 1
actions:
  refund:
    fields: {amount: number, currency: string, urgent: boolean, type: string}
  pay:
    fields: {amount: number, note: string}
  ping:
    fields:
actor:
  fields: {role: string, level: number, trusted: boolean}
snapshot:
  fields: {fraud: boolean, limit: number, env: string}
";

#[derive(Clone, Debug, PartialEq)]
enum Lit {
    S(&'static str),
    N(f64),
    B(bool),
}

impl Lit {
    fn yaml(&self) -> String {
        match self {
            Lit::S(s) => format!("{s:?}"),
            Lit::N(n) => format!("{n:?}"),
            Lit::B(b) => b.to_string(),
        }
    }

    fn json(&self) -> Json {
        match self {
            Lit::S(s) => json!(s),
            Lit::N(n) => json!(n),
            Lit::B(b) => json!(b),
        }
    }
}

#[derive(Clone, Debug)]
enum Rhs {
    Lit(Lit),
    Field(&'static str, &'static str),
    List(Vec<Lit>),
}

#[derive(Clone, Debug)]
struct Atom {
    domain: &'static str,
    field: &'static str,
    op: &'static str,
    rhs: Rhs,
}

#[derive(Clone, Debug)]
enum Scope {
    Action(usize),
    Global,
    Actor,
}

#[derive(Clone, Debug)]
struct Rule {
    scope: Scope,
    kind: &'static str,
    atoms: Vec<Atom>,
    effect: &'static str,
}

fn lit(ty: Ty) -> BoxedStrategy<Lit> {
    match ty {
        Ty::Str => prop::sample::select(vec!["a", "b", "", "refund", "USD"])
            .prop_map(Lit::S)
            .boxed(),
        Ty::Num => prop::sample::select(vec![0.0, 1.0, 5.0, 10.0, 2.5, -1.0, 100.0])
            .prop_map(Lit::N)
            .boxed(),
        Ty::Bool => any::<bool>().prop_map(Lit::B).boxed(),
    }
}

fn fields_for(domain: &str, scope: &Scope) -> Vec<(&'static str, Ty)> {
    match (domain, scope) {
        ("action", Scope::Action(i)) => ACTIONS[*i].1.to_vec(),
        ("action", _) => Vec::new(),
        ("actor", _) => ACTOR.to_vec(),
        _ => SNAPSHOT.to_vec(),
    }
}

fn atom(scope: Scope) -> BoxedStrategy<Atom> {
    let mut choices: Vec<(&'static str, &'static str, Ty)> = Vec::new();
    for d in ["action", "actor", "snapshot"] {
        for (f, t) in fields_for(d, &scope) {
            choices.push((d, f, t));
        }
    }
    let scope2 = scope.clone();
    prop::sample::select(choices)
        .prop_flat_map(move |(d, f, ty)| {
            let ops: Vec<&'static str> = match ty {
                Ty::Num => vec!["equals", "not_equals", "greater_than", "less_than", "in", "not_in"],
                _ => vec!["equals", "not_equals", "in", "not_in"],
            };
            let same: Vec<(&'static str, &'static str)> = ["action", "actor", "snapshot"]
                .iter()
                .flat_map(|dd| {
                    fields_for(dd, &scope2)
                        .into_iter()
                        .filter(|(_, t)| *t == ty)
                        .map(move |(ff, _)| (*dd, ff))
                })
                .collect();
            (
                prop::sample::select(ops),
                lit(ty),
                prop::collection::vec(lit(ty), 0..3),
                prop::sample::select(same),
                0..4u8,
            )
                .prop_map(move |(op, l, list, (rd, rf), pick)| {
                    let rhs = if op == "in" || op == "not_in" {
                        Rhs::List(list)
                    } else if pick == 0 {
                        Rhs::Field(rd, rf)
                    } else {
                        Rhs::Lit(l)
                    };
                    Atom {
                        domain: d,
                        field: f,
                        op,
                        rhs,
                    }
                })
        })
        .boxed()
}

fn rule() -> impl Strategy<Value = Rule> {
    prop_oneof![
        6 => (0usize..3).prop_map(Scope::Action),
        3 => Just(Scope::Global),
        1 => Just(Scope::Actor),
    ]
    .prop_flat_map(|scope| {
        (
            Just(scope.clone()),
            prop::sample::select(vec!["atom", "all", "any"]),
            prop::collection::vec(atom(scope), 2..4),
            prop::sample::select(vec!["allow", "block", "require_approval"]),
        )
    })
    .prop_map(|(scope, kind, mut atoms, effect)| {
        if kind == "atom" {
            atoms.truncate(1);
        }
        Rule {
            scope,
            kind,
            atoms,
            effect,
        }
    })
}

fn domain_value(fields: &'static [(&'static str, Ty)]) -> BoxedStrategy<Json> {
    let parts: Vec<BoxedStrategy<Option<(String, Json)>>> = fields
        .iter()
        .map(|(f, t)| {
            let f = f.to_string();
            prop::option::weighted(0.7, lit(*t).prop_map(|l| l.json()))
                .prop_map(move |v| v.map(|v| (f.clone(), v)))
                .boxed()
        })
        .collect();
    parts
        .prop_map(|kv| Json::Object(kv.into_iter().flatten().collect::<Map<String, Json>>()))
        .boxed()
}

fn input() -> impl Strategy<Value = Json> {
    (0usize..3)
        .prop_flat_map(|i| {
            (
                Just(i),
                domain_value(ACTIONS[i].1),
                domain_value(ACTOR),
                domain_value(SNAPSHOT),
            )
        })
        .prop_map(|(i, mut action, actor, snapshot)| {
            // `type` names the action; a schema field called `type` reads it.
            action["type"] = json!(ACTIONS[i].0);
            json!({"action": action, "actor": actor, "snapshot": snapshot})
        })
}

fn policy_yaml(rules: &[Rule]) -> String {
    let mut out = String::from("version: 1\nrules:\n");
    if rules.is_empty() {
        return "version: 1\nrules: []\n".into();
    }
    for (i, r) in rules.iter().enumerate() {
        let scope = match r.scope {
            Scope::Action(a) => format!("{{action: {}}}", ACTIONS[a].0),
            Scope::Global => "{global: true}".into(),
            Scope::Actor => "{actor: bot}".into(),
        };
        let atoms: Vec<String> = r
            .atoms
            .iter()
            .map(|a| {
                let value = match &a.rhs {
                    Rhs::Lit(l) => format!("{{literal: {}}}", l.yaml()),
                    Rhs::List(items) => format!(
                        "{{literal: [{}]}}",
                        items.iter().map(Lit::yaml).collect::<Vec<_>>().join(", ")
                    ),
                    Rhs::Field(d, f) => format!("{{subject: {{domain: {d}, field: {f}}}}}"),
                };
                format!(
                    "{{subject: {{domain: {}, field: {}}}, operator: {}, value: {value}}}",
                    a.domain, a.field, a.op
                )
            })
            .collect();
        let when = if r.kind == "atom" {
            atoms[0].clone()
        } else {
            format!("{{{}: [{}]}}", r.kind, atoms.join(", "))
        };
        out.push_str(&format!(
            "  - id: r{i}\n    scope: {scope}\n    when: {when}\n    effect: {}\n",
            r.effect
        ));
    }
    out
}

/// Actra's semantics, written out: a missing field or a type difference
/// makes a comparison false; first match among the action's rules, then
/// the global ones, then `allow`; actor rules never apply.
fn reference(rules: &[Rule], input: &Json) -> (String, Option<String>) {
    let action_type = input["action"]["type"].as_str().unwrap_or_default();
    let get = |d: &str, f: &str| -> Option<&Json> { input.get(d).and_then(|v| v.get(f)) };
    let holds = |a: &Atom| -> bool {
        let Some(l) = get(a.domain, a.field) else { return false };
        let eq = |x: &Json, y: &Json| match (x.as_f64(), y.as_f64()) {
            (Some(p), Some(q)) => p == q,
            _ => x == y,
        };
        let ord = |x: &Json, y: &Json| x.as_f64().zip(y.as_f64()).and_then(|(p, q)| p.partial_cmp(&q));
        let r: Json = match &a.rhs {
            Rhs::Lit(l) => l.json(),
            Rhs::Field(d, f) => match get(d, f) {
                Some(v) => v.clone(),
                None => return false,
            },
            Rhs::List(items) => {
                let found = items.iter().any(|i| eq(l, &i.json()));
                return if a.op == "in" { found } else { !found };
            }
        };
        match a.op {
            "equals" => eq(l, &r),
            "not_equals" => !eq(l, &r),
            "greater_than" => ord(l, &r) == Some(std::cmp::Ordering::Greater),
            _ => ord(l, &r) == Some(std::cmp::Ordering::Less),
        }
    };
    let matches = |r: &Rule| match r.kind {
        "any" => r.atoms.iter().any(holds),
        _ => r.atoms.iter().all(holds),
    };
    let own = rules
        .iter()
        .enumerate()
        .filter(|(_, r)| matches!(r.scope, Scope::Action(a) if ACTIONS[a].0 == action_type));
    let global = rules
        .iter()
        .enumerate()
        .filter(|(_, r)| matches!(r.scope, Scope::Global));
    for (i, r) in own.chain(global) {
        if matches(r) {
            return (r.effect.to_string(), Some(format!("r{i}")));
        }
    }
    ("allow".into(), None)
}

fn native_request(input: &Json) -> Request {
    let mut action = input["action"].as_object().cloned().unwrap_or_default();
    let name = action
        .remove("type")
        .and_then(|t| t.as_str().map(str::to_string))
        .unwrap_or_default();
    Request::new(name)
        .input(Json::Object(action))
        .actor(input["actor"].clone())
        .snapshot(input["snapshot"].clone())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn actra_mode_reference_and_converted_policy_agree(
        rules in prop::collection::vec(rule(), 0..7),
        inputs in prop::collection::vec(input(), 1..12),
    ) {
        let policy_text = policy_yaml(&rules);
        let actra = Policy::from_actra_strs(SCHEMA, &policy_text, None)
            .unwrap_or_else(|e| panic!("{e}\n{policy_text}"));
        let converted = convert_strs(SCHEMA, &policy_text).unwrap_or_else(|e| panic!("{e}\n{policy_text}"));
        let native = Policy::from_yaml_str(&converted.text).unwrap_or_else(|e| panic!("{e}\n{}", converted.text));
        for input in &inputs {
            let (want_effect, want_rule) = reference(&rules, input);
            let d = actra.decide_actra(input);
            prop_assert_eq!(d.effect().as_str(), want_effect.as_str(), "Actra mode, {}\n{}", input, policy_text);
            prop_assert_eq!(d.rules().first().map(|s| s.to_string()), want_rule.clone());
            let n = native.decide(&native_request(input));
            prop_assert_eq!(n.effect(), d.effect(), "converted, {}\n{}", input, converted.text);
            // A global rule copied for an action keeps its id before `@`.
            let got: Vec<String> = n.rules().iter().map(|r| r.split('@').next().unwrap_or(r).to_string()).collect();
            prop_assert_eq!(got, want_rule.into_iter().collect::<Vec<_>>(), "converted, {}\n{}", input, converted.text);
            prop_assert!(n.violation().is_none());
            prop_assert!(matches!(n.effect(), Effect::Allow | Effect::Block | Effect::RequireApproval));
        }
    }
}
