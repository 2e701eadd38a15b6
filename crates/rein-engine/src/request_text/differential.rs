//! The direct reading against the request reader: random contracts, random
//! requests for them, and request texts mutated the ways a client or an
//! attacker writes them (keys reordered with `action` last, repeated and
//! unknown keys, wrong types, huge and inexact numbers, escapes, deep
//! nesting, phase after with an output or an error, time, session). On
//! every text `decide_json_str` must decide as `Request::from_json_str`
//! then `Policy::decide` do, and where the direct reading prepares the
//! request itself, its typed slots must be the request reader's.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::{Decision, Policy, Request};
use proptest::prelude::*;
use std::fmt::Write;

/// A contract type, with the constraints worth exercising.
#[derive(Clone, Debug)]
enum Ty {
    Int {
        min: Option<i64>,
        max: Option<i64>,
    },
    Number {
        min: Option<i64>,
    },
    Str {
        pattern: bool,
        max_len: Option<u8>,
        sensitive: bool,
    },
    Bool,
    Timestamp,
    Duration,
    Enum,
    ListInt {
        max_len: Option<u8>,
    },
    ListStr,
    MapInt,
    Object {
        fields: Vec<Field>,
        ignore_extra: bool,
    },
}

#[derive(Clone, Debug)]
struct Field {
    name: String,
    ty: Ty,
    optional: bool,
}

impl Ty {
    fn yaml(&self, optional: bool) -> String {
        let mut s = match self {
            Ty::Int { min, max } => {
                let mut s = "{type: int".to_string();
                if let Some(m) = min {
                    write!(s, ", min: {m}").unwrap();
                }
                if let Some(m) = max {
                    write!(s, ", max: {m}").unwrap();
                }
                s
            }
            Ty::Number { min } => match min {
                Some(m) => format!("{{type: number, min: {m}"),
                None => "{type: number".into(),
            },
            Ty::Str {
                pattern,
                max_len,
                sensitive,
            } => {
                let mut s = "{type: string".to_string();
                if *pattern {
                    s.push_str(r#", pattern: "^[a-z]*$""#);
                }
                if let Some(m) = max_len {
                    write!(s, ", max_len: {m}").unwrap();
                }
                if *sensitive {
                    s.push_str(", sensitive: true");
                }
                s
            }
            Ty::Bool => "{type: bool".into(),
            Ty::Timestamp => "{type: timestamp".into(),
            Ty::Duration => "{type: duration".into(),
            Ty::Enum => r#"{type: enum, values: [a, b, "c d"]"#.into(),
            Ty::ListInt { max_len } => match max_len {
                Some(m) => format!("{{type: list, items: {{type: int, min: -5}}, max_len: {m}"),
                None => "{type: list, items: int".into(),
            },
            Ty::ListStr => "{type: list, items: string".into(),
            Ty::MapInt => "{type: map, items: int".into(),
            Ty::Object { fields, ignore_extra } => {
                let mut s = format!("{{type: object, fields: {}", fields_yaml(fields));
                if *ignore_extra {
                    s.push_str(", extra_fields: ignore");
                }
                s
            }
        };
        if optional {
            s.push_str(", optional: true");
        }
        s.push('}');
        s
    }

    /// A condition on the field at `path` that some values make true.
    fn condition(&self, path: &str, optional: bool) -> Option<String> {
        let c = self.condition_present(path)?;
        Some(if optional { format!("has({path}) && ({c})") } else { c })
    }

    fn condition_present(&self, path: &str) -> Option<String> {
        Some(match self {
            Ty::Int { .. } => format!("{path} > 7"),
            Ty::Number { .. } => format!("{path} < 2.5"),
            Ty::Str { .. } => format!(r#"{path} == "ab""#),
            Ty::Bool => path.to_string(),
            Ty::Enum => format!(r#"{path} == "a""#),
            Ty::Timestamp => format!("{path} < now"),
            Ty::Duration => format!(r#"{path} > duration("1h")"#),
            Ty::ListInt { .. } => format!("size({path}) > 1"),
            Ty::ListStr => format!(r#""a" in {path}"#),
            Ty::MapInt => format!("size({path}) > 0"),
            Ty::Object { fields, .. } => {
                let f = fields.first()?;
                return f.ty.condition(&format!("{path}.{}", f.name), f.optional);
            }
        })
    }
}

fn fields_yaml(fields: &[Field]) -> String {
    let inner: Vec<String> = fields
        .iter()
        .map(|f| format!("{}: {}", f.name, f.ty.yaml(f.optional)))
        .collect();
    format!("{{{}}}", inner.join(", "))
}

fn leaf_ty() -> BoxedStrategy<Ty> {
    prop_oneof![
        (prop::option::of(-3i64..3), prop::option::of(60i64..200)).prop_map(|(min, max)| Ty::Int { min, max }),
        prop::option::of(-1i64..1).prop_map(|min| Ty::Number { min }),
        (any::<bool>(), prop::option::of(1u8..6), any::<bool>()).prop_map(|(pattern, max_len, sensitive)| Ty::Str {
            pattern,
            max_len,
            sensitive
        }),
        Just(Ty::Bool),
        Just(Ty::Timestamp),
        Just(Ty::Duration),
        Just(Ty::Enum),
        prop::option::of(1u8..4).prop_map(|max_len| Ty::ListInt { max_len }),
        Just(Ty::ListStr),
        Just(Ty::MapInt),
    ]
    .boxed()
}

fn fields(ty: BoxedStrategy<Ty>, max: usize) -> impl Strategy<Value = Vec<Field>> {
    prop::collection::vec((ty, any::<bool>()), 1..=max).prop_map(|tys| {
        tys.into_iter()
            .enumerate()
            .map(|(i, (ty, optional))| Field {
                name: format!("f{i}"),
                ty,
                optional,
            })
            .collect()
    })
}

fn ty() -> BoxedStrategy<Ty> {
    prop_oneof![
        4 => leaf_ty(),
        1 => (fields(leaf_ty(), 3), any::<bool>()).prop_map(|(fields, ignore_extra)| Ty::Object { fields, ignore_extra }),
    ]
    .boxed()
}

/// The policy under test: one action `act` with the input (and maybe
/// output) contract, an actor and a snapshot contract, a rule per field.
#[derive(Clone, Debug)]
struct Contracts {
    input: Vec<Field>,
    output: Option<Vec<Field>>,
    actor: Vec<Field>,
    snapshot: Vec<Field>,
    default_allow: bool,
}

impl Contracts {
    fn yaml(&self) -> String {
        let mut y = format!(
            "default: {}\ncontracts:\n  actor: {}\n  snapshot: {}\n  actions:\n    act:\n      input: {}\n",
            if self.default_allow { "allow" } else { "block" },
            fields_yaml(&self.actor),
            fields_yaml(&self.snapshot),
            fields_yaml(&self.input)
        );
        if let Some(output) = &self.output {
            writeln!(y, "      output: {}", fields_yaml(output)).unwrap();
        }
        y.push_str("    other:\n      input: {}\nrules:\n");
        let mut n = 0;
        let mut rule = |y: &mut String, when: String, phase: &str, effect: &str| {
            writeln!(
                y,
                "  - {{id: r{n}, action: act, phase: {phase}, effect: {effect}, when: '{}'}}",
                when.replace('\'', "''")
            )
            .unwrap();
            n += 1;
        };
        for (root, fields) in [
            ("input", &self.input),
            ("actor", &self.actor),
            ("snapshot", &self.snapshot),
        ] {
            for (i, f) in fields.iter().enumerate() {
                if let Some(c) = f.ty.condition(&format!("{root}.{}", f.name), f.optional) {
                    let effect = ["block", "allow", "require_approval"][i % 3];
                    rule(&mut y, c, "before", effect);
                }
            }
        }
        rule(&mut y, r#"error == "boom""#.into(), "after", "block");
        if let Some(output) = &self.output {
            for f in output {
                if let Some(c) = f.ty.condition(&format!("output.{}", f.name), f.optional) {
                    rule(&mut y, c, "after", "block");
                }
            }
        }
        y
    }
}

fn contracts() -> impl Strategy<Value = Contracts> {
    (
        fields(ty(), 4),
        prop::option::of(fields(leaf_ty(), 2)),
        fields(leaf_ty(), 2),
        fields(leaf_ty(), 2),
        any::<bool>(),
    )
        .prop_map(|(input, output, actor, snapshot, default_allow)| Contracts {
            input,
            output,
            actor,
            snapshot,
            default_allow,
        })
}

/// JSON as written: numbers keep their text; objects their order and any
/// repeated key.
#[derive(Clone, Debug)]
enum J {
    Null,
    Bool(bool),
    Num(String),
    Str(String),
    List(Vec<J>),
    Obj(Vec<(String, J)>),
}

/// Number texts at the edges of what the reader and an `int` take.
const ODD_NUMBERS: &[&str] = &[
    "0",
    "-0",
    "1.0",
    "1e2",
    "1E+2",
    "-0.0",
    "2.5",
    "0.1",
    "9223372036854775807",
    "9223372036854775808",
    "-9223372036854775808",
    "-9223372036854775809",
    "18446744073709551616",
    "2.9999999999999999",
    "9007199254740993.0",
    "9007199254740993.5",
    "-9223372036854775808.5",
    "1e-400",
    "1e400",
    "1e300",
    "123456789012345678901234567890",
    "5.0000000000000001",
];

fn number() -> impl Strategy<Value = J> {
    prop_oneof![
        3 => (-20i64..130).prop_map(|i| J::Num(i.to_string())),
        1 => any::<i64>().prop_map(|i| J::Num(i.to_string())),
        1 => any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(|f| J::Num(serde_json::to_string(&f).unwrap())),
        2 => prop::sample::select(ODD_NUMBERS).prop_map(|t| J::Num(t.to_string())),
    ]
}

/// A number that mostly fits an `int` field's constraints.
fn int_number() -> impl Strategy<Value = J> {
    prop_oneof![
        20 => (0i64..100).prop_map(|i| J::Num(i.to_string())),
        2 => prop::sample::select(&["1.0", "1e1", "-0", "50.0", "0.0e0"][..]).prop_map(|t| J::Num(t.to_string())),
        1 => number(),
    ]
}

/// A number that mostly fits a `number` field's constraints.
fn float_number() -> impl Strategy<Value = J> {
    prop_oneof![
        10 => (0.0f64..10.0).prop_map(|f| J::Num(serde_json::to_string(&f).unwrap())),
        5 => (0i64..10).prop_map(|i| J::Num(i.to_string())),
        2 => prop::sample::select(ODD_NUMBERS).prop_map(|t| J::Num(t.to_string())),
        1 => number(),
    ]
}

fn string() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => "[a-z]{0,4}",
        1 => Just("ab".to_string()),
        1 => "[ -~]{0,8}",
        1 => "\\PC{0,4}",
        1 => "[\"\\\\\n\t\u{0}\u{1f}]{1,3}",
    ]
}

/// A string that mostly fits a string field's constraints.
fn plain_string() -> impl Strategy<Value = String> {
    prop_oneof![12 => "[a-z]{0,3}", 1 => Just("ab".to_string()), 1 => string()]
}

fn any_json() -> impl Strategy<Value = J> {
    let leaf = prop_oneof![
        Just(J::Null),
        any::<bool>().prop_map(J::Bool),
        number(),
        string().prop_map(J::Str),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(J::List),
            // Keys from a small set: repeats happen.
            prop::collection::vec((prop::sample::select(&["a", "b", "f0", "f1", "x"][..]), inner), 0..4)
                .prop_map(|kv| J::Obj(kv.into_iter().map(|(k, v)| (k.to_string(), v)).collect())),
        ]
    })
}

/// A request's or a field's time: mostly RFC 3339.
fn time() -> impl Strategy<Value = J> {
    prop_oneof![
        6 => prop::sample::select(&TIMES[..4]),
        1 => prop::sample::select(TIMES),
    ]
    .prop_map(|t| J::Str(t.into()))
}

const TIMES: &[&str] = &[
    "2026-01-31T12:00:00Z",
    "2026-01-31T12:00:00.5+01:00",
    "1970-01-01T00:00:00Z",
    "2000-02-29T23:59:59.999999999-23:59",
    "9999-12-31T23:59:59Z",
    "20260131T120000Z",
    "2026-01-31",
    "nope",
];

/// A value of type `ty`, mostly fitting it.
fn value(ty: &Ty) -> BoxedStrategy<J> {
    let fitting: BoxedStrategy<J> = match ty {
        Ty::Int { .. } => int_number().boxed(),
        Ty::Number { .. } => float_number().boxed(),
        Ty::Str { .. } => plain_string().prop_map(J::Str).boxed(),
        Ty::Bool => any::<bool>().prop_map(J::Bool).boxed(),
        Ty::Timestamp => time().boxed(),
        Ty::Duration => {
            prop::sample::select(&["1h30m", "250ms", "2h", "0s", "1h30m", "250ms", "2h", "0s", "1x", ""][..])
                .prop_map(|t| J::Str(t.into()))
                .boxed()
        }
        Ty::Enum => prop::sample::select(&["a", "b", "c d", "z"][..])
            .prop_map(|t| J::Str(t.into()))
            .boxed(),
        Ty::ListInt { .. } => prop::collection::vec(int_number(), 0..3).prop_map(J::List).boxed(),
        Ty::ListStr => prop::collection::vec(plain_string().prop_map(J::Str), 0..4)
            .prop_map(J::List)
            .boxed(),
        Ty::MapInt => prop::collection::btree_map("[a-c]{1,2}", int_number(), 0..4)
            .prop_map(|kv| J::Obj(kv.into_iter().collect()))
            .boxed(),
        Ty::Object { fields, .. } => object(fields),
    };
    prop_oneof![40 => fitting, 1 => any_json()].boxed()
}

/// An object for `fields`: each field present, absent or null, maybe an
/// undeclared one.
fn object(fields: &[Field]) -> BoxedStrategy<J> {
    let per_field: Vec<BoxedStrategy<Option<(String, J)>>> = fields
        .iter()
        .map(|f| {
            let name = f.name.clone();
            let absent = if f.optional { 3 } else { 1 };
            prop_oneof![
                30 => value(&f.ty).prop_map(move |v| Some((name.clone(), v))),
                absent => Just(None),
                1 => Just(Some((f.name.clone(), J::Null))),
            ]
            .boxed()
        })
        .collect();
    (per_field, prop::option::weighted(0.03, any_json()))
        .prop_map(|(entries, extra)| {
            let mut entries: Vec<(String, J)> = entries.into_iter().flatten().collect();
            if let Some(extra) = extra {
                entries.push(("undeclared".into(), extra));
            }
            J::Obj(entries)
        })
        .boxed()
}

/// How the top-level keys are ordered.
#[derive(Clone, Copy, Debug)]
enum Order {
    AsBuilt,
    Reversed,
    ActionLast,
}

/// Changes made to a request's text.
#[derive(Clone, Debug)]
struct Mutations {
    order: Order,
    /// Every string and key written with `\u` escapes.
    escape: bool,
    /// Spaces and newlines between tokens.
    pretty: bool,
    /// The n-th object (preorder) gets its first key again.
    repeat_key: Option<usize>,
    /// The n-th object (preorder) gets an unknown key.
    unknown_key: Option<usize>,
    /// A value nested this deep under `input`.
    deep: Option<usize>,
    /// The n-th value (preorder) replaced by another one.
    replace: Option<(usize, J)>,
}

fn mutations() -> impl Strategy<Value = Mutations> {
    (
        prop::sample::select(&[Order::AsBuilt, Order::Reversed, Order::ActionLast][..]),
        prop::bool::weighted(0.15),
        prop::bool::weighted(0.2),
        prop::option::weighted(0.1, 0usize..8),
        prop::option::weighted(0.1, 0usize..8),
        prop::option::weighted(0.05, 100usize..140),
        prop::option::weighted(0.08, (0usize..30, any_json())),
    )
        .prop_map(
            |(order, escape, pretty, repeat_key, unknown_key, deep, replace)| Mutations {
                order,
                escape,
                pretty,
                repeat_key,
                unknown_key,
                deep,
                replace,
            },
        )
}

/// A request for the contracts: the usual keys, and some of phase,
/// output, error, time and session in their usual and unusual forms.
fn request(c: &Contracts) -> impl Strategy<Value = J> {
    let action = prop_oneof![
        30 => Just(J::Str("act".into())),
        1 => Just(J::Str("other".into())),
        1 => Just(J::Str("acts".into())),
        1 => any_json(),
    ];
    let out_fields = c.output.clone().unwrap_or_default();
    (
        action,
        prop::option::weighted(0.95, object(&c.input)),
        prop::option::weighted(0.95, object(&c.actor)),
        prop::option::weighted(0.95, object(&c.snapshot)),
        outcome(&out_fields),
        prop::option::weighted(0.3, prop_oneof![8 => time(), 1 => any_json()]),
        prop::option::weighted(
            0.3,
            prop_oneof![
                Just(J::Str("s-1".into())),
                Just(J::Str("".into())),
                Just(J::Str("  ".into())),
                any_json()
            ],
        ),
    )
        .prop_map(
            |(action, input, actor, snapshot, (phase, output, error), time, session)| {
                let mut top = vec![("action".to_string(), action)];
                for (k, v) in [
                    ("input", input),
                    ("actor", actor),
                    ("snapshot", snapshot),
                    ("phase", phase),
                    ("output", output),
                    ("error", error),
                    ("time", time),
                    ("session", session),
                ] {
                    if let Some(v) = v {
                        top.push((k.to_string(), v));
                    }
                }
                J::Obj(top)
            },
        )
}

/// A request's `phase`, `output` and `error`: mostly a plain `before` or
/// `after` request, sometimes any combination.
fn outcome(output: &[Field]) -> impl Strategy<Value = (Option<J>, Option<J>, Option<J>)> {
    let after = || Some(J::Str("after".into()));
    let phase = prop::option::of(prop_oneof![
        4 => Just(J::Str("after".into())),
        2 => Just(J::Str("before".into())),
        1 => Just(J::Obj(vec![("after".into(), J::Null)])),
        1 => any_json(),
    ]);
    let error = || prop_oneof![Just(J::Str("boom".into())), Just(J::Str("x".into())), any_json()];
    prop_oneof![
        12 => prop_oneof![Just(None), Just(Some(J::Str("before".into())))].prop_map(|p| (p, None, None)),
        3 => object(output).prop_map(move |o| (after(), Some(o), None)),
        2 => error().prop_map(move |e| (after(), None, Some(e))),
        2 => (phase, prop::option::of(prop_oneof![4 => object(output), 1 => any_json()]), prop::option::of(error())),
    ]
}

/// Applies the structural mutations (numbering objects and values in
/// preorder).
fn mutate(j: &mut J, m: &Mutations) {
    if let J::Obj(top) = j {
        match m.order {
            Order::AsBuilt => {}
            Order::Reversed => top.reverse(),
            Order::ActionLast => {
                if let Some(at) = top.iter().position(|(k, _)| k == "action") {
                    let a = top.remove(at);
                    top.push(a);
                }
            }
        }
        if let Some(depth) = m.deep {
            let mut v = J::Num("1".into());
            for _ in 0..depth {
                v = J::List(vec![v]);
            }
            top.retain(|(k, _)| k != "input");
            top.push(("input".into(), J::Obj(vec![("f0".into(), v)])));
        }
    }
    let mut objects = 0;
    let mut values = 0;
    walk(j, &mut objects, &mut values, m);
}

fn walk(j: &mut J, objects: &mut usize, values: &mut usize, m: &Mutations) {
    if let Some((n, replacement)) = &m.replace {
        if *values == *n && *values > 0 {
            *j = replacement.clone();
        }
    }
    *values += 1;
    match j {
        J::Obj(entries) => {
            if m.repeat_key == Some(*objects) {
                if let Some(first) = entries.first().cloned() {
                    entries.push(first);
                }
            }
            if m.unknown_key == Some(*objects) {
                entries.insert(entries.len() / 2, ("inputs".into(), J::Obj(Vec::new())));
            }
            *objects += 1;
            for (_, v) in entries {
                walk(v, objects, values, m);
            }
        }
        J::List(items) => {
            for v in items {
                walk(v, objects, values, m);
            }
        }
        _ => {}
    }
}

fn write_str(out: &mut String, s: &str, escape: bool) {
    if !escape {
        out.push_str(&serde_json::to_string(s).unwrap());
        return;
    }
    out.push('"');
    for unit in s.encode_utf16() {
        write!(out, "\\u{unit:04x}").unwrap();
    }
    out.push('"');
}

fn render(j: &J, m: &Mutations, out: &mut String) {
    let sep = if m.pretty { ",\n  " } else { "," };
    let colon = if m.pretty { " : " } else { ":" };
    match j {
        J::Null => out.push_str("null"),
        J::Bool(b) => write!(out, "{b}").unwrap(),
        J::Num(t) => out.push_str(t),
        J::Str(s) => write_str(out, s, m.escape),
        J::List(items) => {
            out.push('[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(sep);
                }
                render(v, m, out);
            }
            out.push(']');
        }
        J::Obj(entries) => {
            out.push('{');
            for (i, (k, v)) in entries.iter().enumerate() {
                if i > 0 {
                    out.push_str(sep);
                }
                write_str(out, k, m.escape);
                out.push_str(colon);
                render(v, m, out);
            }
            out.push('}');
        }
    }
}

/// Everything a decision says, for comparing two.
fn shown(d: &Decision) -> String {
    format!(
        "{:?} {:?} {:?} {:?} {:?} {:?} {:?} {}",
        d.effect(),
        d.phase(),
        d.basis(),
        d.matched_rules(),
        d.errors(),
        d.reasons(),
        d.obligations(),
        d.to_json()
    )
}

/// The differential check on one text; `true` when the direct reading
/// prepared the request itself.
fn agree(policy: &Policy, text: &str) -> bool {
    let slow = Request::from_json_str(text);
    let fast = policy.decide_json_str(text);
    match (&slow, &fast) {
        (Err(s), Err(f)) => assert_eq!(s.to_string(), f.to_string(), "{text}"),
        (Ok(r), Ok(f)) => assert_eq!(shown(&policy.decide(r)), shown(f), "{text}"),
        _ => panic!("one path refused: slow {:?}, fast {:?}\n{text}", slow.err(), fast.err()),
    }
    let Some(direct) = policy.prepare_json_text(text) else {
        return false;
    };
    let request = slow.unwrap_or_else(|e| panic!("prepared directly, refused by the request reader: {e}\n{text}"));
    let prepared = policy
        .prepare(&request)
        .unwrap_or_else(|d| panic!("prepared directly, breaks the contract: {:?}\n{text}", d.basis()));
    assert_eq!(format!("{direct:?}"), format!("{prepared:?}"), "{text}");
    true
}

fn case() -> impl Strategy<Value = (Contracts, J, Mutations)> {
    contracts().prop_flat_map(|c| {
        let r = request(&c);
        (Just(c), r, mutations())
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn direct_reading_decides_as_the_request_reader((c, mut j, m) in case()) {
        let yaml = c.yaml();
        let policy = Policy::from_yaml_str(&yaml).unwrap_or_else(|e| panic!("{yaml}\n{e:?}"));
        mutate(&mut j, &m);
        let mut text = String::new();
        render(&j, &m, &mut text);
        let direct = agree(&policy, &text);
        // A request the request reader takes and that passes its contract
        // is prepared directly, unless it spells its phase as a map.
        let plain = !text.contains(r#""phase":{"#) && !text.contains(r#""phase" : {"#) && !m.escape;
        if plain {
            if let Ok(r) = Request::from_json_str(&text) {
                if policy.prepare(&r).is_ok() {
                    prop_assert!(direct, "not prepared directly:\n{}", text);
                }
            }
        }
    }
}

#[test]
fn texts_at_the_edges_decide_as_the_request_reader() {
    let policy = Policy::from_yaml_str(
        r#"
default: allow
contracts:
  actions:
    act:
      input: {n: int, x: {type: number, optional: true}, s: {type: string, optional: true}, l: {type: list, items: int, optional: true}, m: {type: map, items: int, optional: true}}
      output: {ok: bool}
rules:
  - {id: big, action: act, effect: block, when: input.n > 5}
  - {id: failed, action: act, phase: after, effect: block, when: 'error == "boom"'}
"#,
    )
    .unwrap();
    let deep = format!(
        r#"{{"action":"act","input":{{"n":1,"l":{}1{}}}}}"#,
        "[".repeat(200),
        "]".repeat(200)
    );
    // Objects past the pairwise search for a repeated key.
    let keys: Vec<String> = (0..20).map(|i| format!(r#""k{i}":{i}"#)).collect();
    let many = format!(r#"{{"action":"act","input":{{"n":1,"m":{{{}}}}}}}"#, keys.join(","));
    let repeated = format!(
        r#"{{"action":"act","input":{{"n":1,"m":{{{},"k7":0}}}}}}"#,
        keys.join(",")
    );
    let texts = [
        many.as_str(),
        &repeated,
        r#"{"action":"act","input":{"n":7}}"#,
        r#"{"input":{"n":7},"action":"act"}"#,
        r#"{"action":"act","input":{"n":7,"n":1}}"#,
        r#"{"action":"act","action":"act","input":{"n":1}}"#,
        r#"{"action":"act","input":{"n":1,"\u006e":1}}"#,
        r#"{"action":"act","input":{"n":1},"inputs":{}}"#,
        r#"{"action":"act","input":{"n":1,"m":1}}"#,
        r#"{"action":"act","input":{"n":"1"}}"#,
        r#"{"action":"act","input":{"n":1.0}}"#,
        r#"{"action":"act","input":{"n":2.9999999999999999}}"#,
        r#"{"action":"act","input":{"n":1,"x":2.9999999999999999}}"#,
        r#"{"action":"act","input":{"n":1},"snapshot":{"z":1e-400}}"#,
        r#"{"action":"act","input":{"n":9223372036854775808}}"#,
        r#"{"action":"act","input":{"n":-9223372036854775809}}"#,
        r#"{"action":"act","input":{"n":1e400}}"#,
        r#"{"action":"act","input":{"n":1,"s":"\ud800"}}"#,
        r#"{"action":"act","input":{"n":1,"s":"\ud83d\ude00\n"}}"#,
        r#"{"action":"\u0061ct","input":{"n":1}}"#,
        r#"{"action":"act","input":{"n":1},"phase":"after","output":{"ok":true}}"#,
        r#"{"action":"act","input":{"n":1},"phase":"after","error":"boom"}"#,
        r#"{"action":"act","input":{"n":1},"phase":"after","error":"boom","output":{"ok":true}}"#,
        r#"{"action":"act","input":{"n":1},"phase":"after"}"#,
        r#"{"action":"act","input":{"n":1},"phase":{"after":null},"output":{"ok":true}}"#,
        r#"{"action":"act","input":{"n":1},"phase":"After"}"#,
        r#"{"action":"act","input":{"n":1},"output":{"ok":true}}"#,
        r#"{"action":"act","input":{"n":1},"time":"2026-01-31T12:00:00Z","session":"s"}"#,
        r#"{"action":"act","input":{"n":1},"time":"20260131T120000Z"}"#,
        r#"{"action":"act","input":{"n":1},"time":null,"session":null,"error":null,"output":null}"#,
        r#"{"action":"act","input":{"n":1},"session":7}"#,
        r#"{"action":"act","input":null}"#,
        r#"{"action":"act"}"#,
        r#"{"action":"nope","input":{"n":1}}"#,
        r#"{"input":{"n":1}}"#,
        r#"["act",{"n":1}]"#,
        r#"{"action":"act","input":{"n":1}} x"#,
        r#"{"action":"act","input":{"n":1},}"#,
        "  {\"action\" : \"act\" ,\n \"input\" : {\"n\" : 1} }  ",
        "",
        "null",
        &deep,
    ];
    assert!(policy.prepare_json_text(&repeated).is_none());
    let mut direct = 0;
    for text in texts {
        direct += usize::from(agree(&policy, text));
    }
    // The plain ones were read directly.
    assert!(direct >= 8, "{direct}");
    for text in [
        many.as_str(),
        r#"{"action":"act","input":{"n":7}}"#,
        r#"{"input":{"n":7},"action":"act"}"#,
        r#"{"action":"act","input":{"n":1.0}}"#,
        r#"{"action":"\u0061ct","input":{"n":1,"s":"\ud83d\ude00\n"}}"#,
        r#"{"action":"act","input":{"n":1},"phase":"after","error":"boom"}"#,
        r#"{"action":"act","input":{"n":1},"time":null,"session":null,"error":null,"output":null}"#,
    ] {
        assert!(policy.prepare_json_text(text).is_some(), "{text}");
    }
}
