//! Property tests: the compiled evaluator against a straightforward
//! reference interpreter on random well-typed expressions and inputs, and
//! the combining laws (rule order never matters; block beats approval beats
//! allow).

use proptest::prelude::*;
use rein_engine::{Basis, Effect, Policy, Request};
use serde_json::{json, Value as Json};

const CONTRACT: &str = r#"
contracts:
  actions:
    act:
      input:
        i: int
        j: int
        x: number
        s: string
        t: string
        b: bool
        l: list<int>
        ls: list<string>
        m: map<int>
"#;

/// A tiny typed expression language that prints as CEL and evaluates by
/// reference semantics written independently of the engine.
#[derive(Clone, Debug)]
enum E {
    Int(i64),
    Num(f64),
    Str(String),
    Bool(bool),
    Field(&'static str),
    Not(Box<E>),
    Neg(Box<E>),
    And(Box<E>, Box<E>),
    Or(Box<E>, Box<E>),
    Cmp(&'static str, Box<E>, Box<E>),
    Arith(&'static str, Box<E>, Box<E>),
    In(Box<E>, Box<E>),
    Size(Box<E>),
    Index(Box<E>, Box<E>),
    MapGet(Box<E>, String),
    StartsWith(Box<E>, Box<E>),
    Lower(Box<E>),
    Cond(Box<E>, Box<E>, Box<E>),
    Exists(Box<E>, i64),
    All(Box<E>, i64),
    Concat(Box<E>, Box<E>),
}

impl E {
    fn cel(&self) -> String {
        match self {
            E::Int(i) => format!("{i}"),
            E::Num(f) => format!("{f:?}"),
            E::Str(s) => format!("{s:?}"),
            E::Bool(b) => format!("{b}"),
            E::Field(f) => format!("input.{f}"),
            E::Not(a) => format!("!({})", a.cel()),
            E::Neg(a) => format!("-({})", a.cel()),
            E::And(a, b) => format!("({}) && ({})", a.cel(), b.cel()),
            E::Or(a, b) => format!("({}) || ({})", a.cel(), b.cel()),
            E::Cmp(op, a, b) | E::Arith(op, a, b) => format!("({}) {op} ({})", a.cel(), b.cel()),
            E::In(a, b) => format!("({}) in ({})", a.cel(), b.cel()),
            E::Size(a) => format!("size({})", a.cel()),
            E::Index(a, b) => format!("({})[{}]", a.cel(), b.cel()),
            E::MapGet(a, k) => format!("({})[{k:?}]", a.cel()),
            E::StartsWith(a, b) => format!("({}).startsWith({})", a.cel(), b.cel()),
            E::Lower(a) => format!("({}).lowerAscii()", a.cel()),
            E::Cond(c, a, b) => format!("({}) ? ({}) : ({})", c.cel(), a.cel(), b.cel()),
            E::Exists(l, k) => format!("({}).exists(v, v > {k})", l.cel()),
            E::All(l, k) => format!("({}).all(v, v < {k})", l.cel()),
            E::Concat(a, b) => format!("({}) + ({})", a.cel(), b.cel()),
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
enum V {
    I(i64),
    F(f64),
    S(String),
    B(bool),
    L(Vec<V>),
    M(Vec<(String, V)>),
}

type Res = Result<V, ()>;

fn num(v: &V) -> Option<f64> {
    match v {
        V::I(i) => Some(*i as f64),
        V::F(f) => Some(*f),
        _ => None,
    }
}

fn eq(a: &V, b: &V) -> bool {
    match (a, b) {
        (V::I(x), V::I(y)) => x == y,
        (V::I(_) | V::F(_), V::I(_) | V::F(_)) => num(a) == num(b),
        _ => a == b,
    }
}

fn ord(a: &V, b: &V) -> Option<std::cmp::Ordering> {
    match (a, b) {
        (V::I(x), V::I(y)) => Some(x.cmp(y)),
        (V::I(_) | V::F(_), V::I(_) | V::F(_)) => num(a)?.partial_cmp(&num(b)?),
        (V::S(x), V::S(y)) => Some(x.cmp(y)),
        (V::B(x), V::B(y)) => Some(x.cmp(y)),
        _ => None,
    }
}

fn from_json(j: &Json) -> V {
    match j {
        Json::Bool(b) => V::B(*b),
        Json::Number(n) => n.as_i64().map_or_else(|| V::F(n.as_f64().unwrap()), V::I),
        Json::String(s) => V::S(s.clone()),
        Json::Array(a) => V::L(a.iter().map(from_json).collect()),
        Json::Object(o) => V::M(o.iter().map(|(k, v)| (k.clone(), from_json(v))).collect()),
        Json::Null => unreachable!(),
    }
}

fn boolean(r: Res) -> Result<bool, ()> {
    match r? {
        V::B(b) => Ok(b),
        _ => Err(()),
    }
}

/// The reference semantics: plain recursion over the tree, no borrowing
/// tricks, no typed layout.
fn reference(e: &E, input: &Json) -> Res {
    Ok(match e {
        E::Int(i) => V::I(*i),
        E::Num(f) => V::F(*f),
        E::Str(s) => V::S(s.clone()),
        E::Bool(b) => V::B(*b),
        E::Field(f) => from_json(&input[*f]),
        E::Not(a) => V::B(!boolean(reference(a, input))?),
        E::Neg(a) => match reference(a, input)? {
            V::I(i) => V::I(i.checked_neg().ok_or(())?),
            V::F(f) => V::F(-f),
            _ => return Err(()),
        },
        E::And(a, b) | E::Or(a, b) => {
            let decisive = matches!(e, E::Or(..));
            let l = boolean(reference(a, input));
            if l == Ok(decisive) {
                return Ok(V::B(decisive));
            }
            let r = boolean(reference(b, input));
            match (l, r) {
                (_, Ok(r)) if r == decisive => V::B(decisive),
                (Err(()), _) | (_, Err(())) => return Err(()),
                _ => V::B(!decisive),
            }
        }
        E::Cmp(op, a, b) => {
            let (a, b) = (reference(a, input)?, reference(b, input)?);
            use std::cmp::Ordering::*;
            V::B(match *op {
                "==" => eq(&a, &b),
                "!=" => !eq(&a, &b),
                "<" => ord(&a, &b) == Some(Less),
                "<=" => matches!(ord(&a, &b), Some(Less | Equal)),
                ">" => ord(&a, &b) == Some(Greater),
                _ => matches!(ord(&a, &b), Some(Greater | Equal)),
            })
        }
        E::Arith(op, a, b) => match (reference(a, input)?, reference(b, input)?) {
            (V::I(x), V::I(y)) => V::I(
                match *op {
                    "+" => x.checked_add(y),
                    "-" => x.checked_sub(y),
                    "*" => x.checked_mul(y),
                    "/" => x.checked_div(y),
                    _ => x.checked_rem(y),
                }
                .ok_or(())?,
            ),
            (x, y) => {
                let (x, y) = (num(&x).ok_or(())?, num(&y).ok_or(())?);
                // Division or modulus by zero, and a result that is not
                // finite, are errors for numbers as for ints.
                if matches!(*op, "/" | "%") && y == 0.0 {
                    return Err(());
                }
                let r = match *op {
                    "+" => x + y,
                    "-" => x - y,
                    "*" => x * y,
                    "/" => x / y,
                    _ => x % y,
                };
                if !r.is_finite() {
                    return Err(());
                }
                V::F(r)
            }
        },
        E::In(a, b) => {
            let a = reference(a, input)?;
            match reference(b, input)? {
                V::L(items) => V::B(items.iter().any(|i| eq(i, &a))),
                V::M(m) => V::B(m.iter().any(|(k, _)| V::S(k.clone()) == a)),
                _ => return Err(()),
            }
        }
        E::Size(a) => match reference(a, input)? {
            V::S(s) => V::I(s.chars().count() as i64),
            V::L(l) => V::I(l.len() as i64),
            V::M(m) => V::I(m.len() as i64),
            _ => return Err(()),
        },
        E::Index(a, b) => match (reference(a, input)?, reference(b, input)?) {
            (V::L(l), V::I(i)) => usize::try_from(i).ok().and_then(|i| l.get(i).cloned()).ok_or(())?,
            _ => return Err(()),
        },
        E::MapGet(a, k) => match reference(a, input)? {
            V::M(m) => m.iter().find(|(key, _)| key == k).map(|(_, v)| v.clone()).ok_or(())?,
            _ => return Err(()),
        },
        E::StartsWith(a, b) => match (reference(a, input)?, reference(b, input)?) {
            (V::S(x), V::S(y)) => V::B(x.starts_with(&y)),
            _ => return Err(()),
        },
        E::Lower(a) => match reference(a, input)? {
            V::S(x) => V::S(x.to_ascii_lowercase()),
            _ => return Err(()),
        },
        E::Cond(c, a, b) => {
            if boolean(reference(c, input))? {
                reference(a, input)?
            } else {
                reference(b, input)?
            }
        }
        E::Exists(l, k) | E::All(l, k) => {
            let V::L(items) = reference(l, input)? else {
                return Err(());
            };
            let exists = matches!(e, E::Exists(..));
            let hits = items
                .iter()
                .filter(|v| {
                    if exists {
                        ord(v, &V::I(*k)) == Some(std::cmp::Ordering::Greater)
                    } else {
                        ord(v, &V::I(*k)) == Some(std::cmp::Ordering::Less)
                    }
                })
                .count();
            V::B(if exists { hits > 0 } else { hits == items.len() })
        }
        E::Concat(a, b) => match (reference(a, input)?, reference(b, input)?) {
            (V::S(x), V::S(y)) => V::S(x + &y),
            _ => return Err(()),
        },
    })
}

fn small_str() -> impl Strategy<Value = String> {
    prop::sample::select(vec!["", "a", "ab", "B", "abc", "zz"]).prop_map(str::to_string)
}

fn int_expr() -> BoxedStrategy<E> {
    let leaf = prop_oneof![
        (-5i64..20).prop_map(E::Int),
        Just(E::Int(i64::MAX)),
        Just(E::Field("i")),
        Just(E::Field("j")),
        Just(E::Size(Box::new(E::Field("l")))),
        Just(E::Size(Box::new(E::Field("s")))),
    ];
    leaf.prop_recursive(3, 24, 2, |inner| {
        prop_oneof![
            (
                prop::sample::select(vec!["+", "-", "*", "/", "%"]),
                inner.clone(),
                inner.clone()
            )
                .prop_map(|(op, a, b)| E::Arith(op, Box::new(a), Box::new(b))),
            inner.clone().prop_map(|a| E::Neg(Box::new(a))),
            inner
                .clone()
                .prop_map(|a| E::Index(Box::new(E::Field("l")), Box::new(a))),
            prop::sample::select(vec!["k1", "k2", "zz"])
                .prop_map(|k| E::MapGet(Box::new(E::Field("m")), k.to_string())),
        ]
    })
    .boxed()
}

fn num_expr() -> BoxedStrategy<E> {
    prop_oneof![
        (-100.0f64..100.0).prop_map(E::Num),
        Just(E::Field("x")),
        (int_expr(), Just(E::Field("x"))).prop_map(|(a, b)| E::Arith("+", Box::new(a), Box::new(b))),
        (Just(E::Field("x")), int_expr()).prop_map(|(a, b)| E::Arith("/", Box::new(a), Box::new(b))),
    ]
    .boxed()
}

fn str_expr() -> BoxedStrategy<E> {
    prop_oneof![
        small_str().prop_map(E::Str),
        Just(E::Field("s")),
        Just(E::Field("t")),
        Just(E::Lower(Box::new(E::Field("t")))),
        Just(E::Concat(Box::new(E::Field("s")), Box::new(E::Field("t")))),
    ]
    .boxed()
}

fn bool_expr() -> BoxedStrategy<E> {
    let cmp = prop::sample::select(vec!["==", "!=", "<", "<=", ">", ">="]);
    let leaf = prop_oneof![
        any::<bool>().prop_map(E::Bool),
        Just(E::Field("b")),
        (cmp.clone(), int_expr(), int_expr()).prop_map(|(op, a, b)| E::Cmp(op, Box::new(a), Box::new(b))),
        (cmp.clone(), num_expr(), int_expr()).prop_map(|(op, a, b)| E::Cmp(op, Box::new(a), Box::new(b))),
        (cmp, str_expr(), str_expr()).prop_map(|(op, a, b)| E::Cmp(op, Box::new(a), Box::new(b))),
        int_expr().prop_map(|a| E::In(Box::new(a), Box::new(E::Field("l")))),
        str_expr().prop_map(|a| E::In(Box::new(a), Box::new(E::Field("ls")))),
        str_expr().prop_map(|a| E::In(Box::new(a), Box::new(E::Field("m")))),
        (str_expr(), str_expr()).prop_map(|(a, b)| E::StartsWith(Box::new(a), Box::new(b))),
        (-2i64..6).prop_map(|k| E::Exists(Box::new(E::Field("l")), k)),
        (-2i64..6).prop_map(|k| E::All(Box::new(E::Field("l")), k)),
    ];
    leaf.prop_recursive(3, 32, 2, |inner| {
        prop_oneof![
            inner.clone().prop_map(|a| E::Not(Box::new(a))),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| E::And(Box::new(a), Box::new(b))),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| E::Or(Box::new(a), Box::new(b))),
            (inner.clone(), inner.clone(), inner.clone()).prop_map(|(c, a, b)| E::Cond(
                Box::new(c),
                Box::new(a),
                Box::new(b)
            )),
        ]
    })
    .boxed()
}

fn input() -> impl Strategy<Value = Json> {
    (
        -5i64..20,
        prop_oneof![-5i64..5, Just(0), Just(i64::MIN)],
        -50.0f64..50.0,
        small_str(),
        small_str(),
        any::<bool>(),
        prop::collection::vec(-3i64..8, 0..4),
        prop::collection::vec(small_str(), 0..3),
        prop::collection::btree_map(prop::sample::select(vec!["k1", "k2"]), -3i64..3, 0..3),
    )
        .prop_map(|(i, j, x, s, t, b, l, ls, m)| json!({"i": i, "j": j, "x": x, "s": s, "t": t, "b": b, "l": l, "ls": ls, "m": m}))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, .. ProptestConfig::default() })]

    #[test]
    fn compiled_evaluator_agrees_with_reference(e in bool_expr(), inputs in prop::collection::vec(input(), 1..6)) {
        let text = format!("{CONTRACT}\ndefault: allow\nrules:\n  - id: r\n    action: act\n    when: {}\n    effect: block\n", serde_json::to_string(&e.cel()).unwrap());
        let policy = Policy::from_yaml_str(&text).map_err(|err| TestCaseError::fail(format!("{}\n{err}", e.cel())))?;
        for input in inputs {
            let d = policy.decide(&Request::new("act").input(input.clone()));
            let expected = reference(&e, &input);
            match expected {
                Ok(V::B(true)) => prop_assert_eq!(d.effect(), Effect::Block, "{} on {}", e.cel(), input),
                Ok(V::B(false)) => {
                    prop_assert_eq!(d.effect(), Effect::Allow, "{} on {}: {:?}", e.cel(), input, d.reasons());
                }
                Ok(other) => prop_assert!(false, "reference gave {other:?}"),
                Err(()) => {
                    prop_assert_eq!(d.effect(), Effect::Block);
                    prop_assert_eq!(d.basis(), &Basis::EvalError, "{} on {}: {:?}", e.cel(), input, d.reasons());
                }
            }
        }
    }

    #[test]
    fn rule_order_never_changes_a_decision(
        rules in prop::collection::vec((0usize..6, 0usize..3), 1..8),
        amount in 0i64..200,
        flag in any::<bool>(),
        seed in any::<u64>(),
    ) {
        let conds = ["input.amount > 50", "input.amount <= 100", "input.flag", "!input.flag", "input.amount % 2 == 0", "true"];
        let effects = ["allow", "block", "require_approval"];
        let rule_text = |order: &[usize]| -> String {
            let mut out = String::from("contracts:\n  actions:\n    act:\n      input: {amount: int, flag: bool}\nrules:\n");
            for &i in order {
                let (c, e) = rules[i];
                out.push_str(&format!("  - id: r{i}\n    action: act\n    when: '{}'\n    effect: {}\n", conds[c], effects[e]));
            }
            out
        };
        let forward: Vec<usize> = (0..rules.len()).collect();
        let mut shuffled = forward.clone();
        // A deterministic shuffle driven by the seed.
        let mut s = seed | 1;
        for i in (1..shuffled.len()).rev() {
            s ^= s << 13; s ^= s >> 7; s ^= s << 17;
            shuffled.swap(i, (s % (i as u64 + 1)) as usize);
        }
        let a = Policy::from_yaml_str(&rule_text(&forward)).unwrap();
        let b = Policy::from_yaml_str(&rule_text(&shuffled)).unwrap();
        let req = Request::new("act").input(json!({"amount": amount, "flag": flag}));
        let (da, db) = (a.decide(&req), b.decide(&req));
        prop_assert_eq!(da.effect(), db.effect());
        let (mut ra, mut rb) = (da.rules(), db.rules());
        ra.sort_unstable();
        rb.sort_unstable();
        prop_assert_eq!(&ra, &rb);

        // Block beats approval beats allow; no match gives the default.
        let matched: Vec<Effect> = forward.iter().filter(|&&i| {
            let (c, _) = rules[i];
            match c {
                0 => amount > 50,
                1 => amount <= 100,
                2 => flag,
                3 => !flag,
                4 => amount % 2 == 0,
                _ => true,
            }
        }).map(|&i| [Effect::Allow, Effect::Block, Effect::RequireApproval][rules[i].1]).collect();
        let expected = matched.iter().copied().max().unwrap_or(Effect::Block);
        prop_assert_eq!(da.effect(), expected);
        prop_assert_eq!(ra.len(), matched.len());
    }
}

/// A `tool:` fact and the literal a rule compares it with: (YAML type,
/// value as JSON).
fn fact() -> impl Strategy<Value = (&'static str, Json)> {
    prop_oneof![
        (-3i64..3).prop_map(|i| ("int", json!(i))),
        any::<bool>().prop_map(|b| ("bool", json!(b))),
        prop::sample::select(vec!["", "fs", "a b", "Fs", "é"]).prop_map(|s| ("string", json!(s))),
        (-2i64..2).prop_map(|i| ("number", json!(i as f64 / 2.0))),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, .. ProptestConfig::default() })]

    /// A rule reading `tool.k` decides as the same rule reading `input.k`
    /// of a request carrying the same values under the same types: the
    /// facts are typed and evaluated as the constants they are.
    #[test]
    fn tool_facts_read_as_input_of_the_same_values(
        facts in prop::collection::vec(fact(), 1..4),
        probes in prop::collection::vec((0usize..4, fact(), any::<bool>(), any::<bool>()), 1..5),
    ) {
        let yaml = |v: &Json| serde_json::to_string(v).unwrap();
        let tool: Vec<String> = facts.iter().enumerate().map(|(i, (_, v))| format!("k{i}: {}", yaml(v))).collect();
        let types: Vec<String> = facts.iter().enumerate().map(|(i, (t, _))| format!("k{i}: {t}")).collect();
        // Comparisons of a fact with a literal of its own type, joined by
        // `&&` / `||`.
        let mut cond = String::new();
        for (n, (k, (_, lit), ne, or)) in probes.iter().enumerate() {
            let k = k % facts.len();
            let lit = match (facts[k].0, lit) {
                ("int", Json::Number(n)) if n.is_f64() => json!(n.as_f64().unwrap() as i64),
                (_, l) if facts[k].0 == kind_of(l) => l.clone(),
                _ => facts[k].1.clone(),
            };
            if n > 0 {
                cond.push_str(if *or { " || " } else { " && " });
            }
            cond.push_str(&format!("ROOT.k{k} {} {}", if *ne { "!=" } else { "==" }, yaml(&lit)));
        }
        let policy = |root: &str| {
            let text = format!(
                "default: allow\ncontracts:\n  actions:\n    act:\n      tool: {{{}}}\n      input: {{{}}}\nrules:\n  - id: r\n    action: act\n    when: {}\n    effect: block\n",
                tool.join(", "),
                types.join(", "),
                serde_json::to_string(&cond.replace("ROOT", root)).unwrap()
            );
            Policy::from_yaml_str(&text).map_err(|e| TestCaseError::fail(format!("{text}\n{e}")))
        };
        let input: serde_json::Map<String, Json> = facts.iter().enumerate().map(|(i, (_, v))| (format!("k{i}"), v.clone())).collect();
        let req = Request::new("act").input(Json::Object(input));
        let (by_tool, by_input) = (policy("tool")?, policy("input")?);
        let (by_tool, by_input) = (by_tool.decide(&req), by_input.decide(&req));
        prop_assert_eq!(by_tool.effect(), by_input.effect(), "{}", cond);
        prop_assert_eq!(by_tool.basis(), by_input.basis());
    }

    /// `blocks_unconditionally` is exactly "a `before` rule with effect
    /// `block`, no condition or `true`, no limit", and when it holds no
    /// request is allowed.
    #[test]
    fn blocks_unconditionally_means_every_call_is_blocked(
        rules in prop::collection::vec((0usize..4, 0usize..3, any::<bool>(), any::<bool>()), 1..6),
        amount in 0i64..100,
    ) {
        let conds = [None, Some("true"), Some("false"), Some("input.amount > 50")];
        let effects = ["allow", "block", "require_approval"];
        let mut text = String::from("default: allow\ncontracts:\n  actions:\n    act:\n      input: {amount: int}\nrules:\n");
        let mut expected = false;
        for (i, &(c, e, after, limited)) in rules.iter().enumerate() {
            // A limit on an `allow` rule under `default: allow` does not load.
            let limited = limited && !after && e != 0;
            text.push_str(&format!("  - id: r{i}\n    action: act\n    effect: {}\n", effects[e]));
            if let Some(w) = conds[c] {
                text.push_str(&format!("    when: '{w}'\n"));
            }
            if after {
                text.push_str("    phase: after\n");
            }
            if limited {
                text.push_str("    limit: {count: 3, window: 1h}\n");
            }
            expected |= c < 2 && e == 1 && !after && !limited;
        }
        let p = Policy::from_yaml_str(&text).map_err(|e| TestCaseError::fail(format!("{text}\n{e}")))?;
        prop_assert_eq!(p.blocks_unconditionally("act"), expected, "{}", text);
        if expected {
            let req = Request::new("act").input(json!({"amount": amount})).session("s");
            let prepared = p.prepare(&req).unwrap();
            let state = rein_engine::MemoryState::with_key([1; 32]);
            let (d, _) = prepared.decide_with_state(&state);
            prop_assert_eq!(d.effect(), Effect::Block);
        }
    }
}

fn kind_of(v: &Json) -> &'static str {
    match v {
        Json::Bool(_) => "bool",
        Json::String(_) => "string",
        Json::Number(n) if n.is_i64() => "int",
        _ => "number",
    }
}
