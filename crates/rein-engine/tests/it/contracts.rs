//! Contract checks as a class: every constraint kind, at every depth of
//! lists, maps and objects, under every root (input, output, actor,
//! snapshot); ints at the edge of their range; timestamps at both ends of
//! RFC 3339.

use proptest::prelude::*;
use rein_engine::{Effect, Phase, Policy, Request};
use serde_json::{json, Value};

/// A constraint on one element, with a value that meets it and one that
/// does not.
fn constraint_kinds() -> Vec<(&'static str, Value, Value, Value)> {
    vec![
        (
            "pattern",
            json!({"type": "string", "pattern": "^[a-z]+$"}),
            json!("ok"),
            json!("NOPE"),
        ),
        (
            "max_len",
            json!({"type": "string", "max_len": 3}),
            json!("abc"),
            json!("abcd"),
        ),
        (
            "min_len",
            json!({"type": "string", "min_len": 2}),
            json!("ab"),
            json!("a"),
        ),
        (
            "allowed string",
            json!({"type": "string", "allowed": ["x", "y"]}),
            json!("y"),
            json!("z"),
        ),
        (
            "enum",
            json!({"type": "enum", "values": ["x", "y"]}),
            json!("x"),
            json!("z"),
        ),
        ("int min", json!({"type": "int", "min": 0}), json!(0), json!(-1)),
        ("int max", json!({"type": "int", "max": 10}), json!(10), json!(11)),
        (
            "int allowed",
            json!({"type": "int", "allowed": [1, 2]}),
            json!(2),
            json!(3),
        ),
        (
            "number min",
            json!({"type": "number", "min": 0.5}),
            json!(0.5),
            json!(0.25),
        ),
        (
            "number max",
            json!({"type": "number", "max": 1.5}),
            json!(1.5),
            json!(2),
        ),
        (
            "bool allowed",
            json!({"type": "bool", "allowed": [true]}),
            json!(true),
            json!(false),
        ),
        (
            "list max_len",
            json!({"type": "list", "items": "string", "max_len": 1}),
            json!(["a"]),
            json!(["a", "b"]),
        ),
        (
            "map min_len",
            json!({"type": "map", "items": "int", "min_len": 1}),
            json!({"a": 1}),
            json!({}),
        ),
        (
            "nested item pattern",
            json!({"type": "list", "items": {"type": "string", "pattern": "^a"}}),
            json!(["ab"]),
            json!(["ab", "ba"]),
        ),
    ]
}

/// Ways to hold one element: the field spec around it, the field's value
/// holding a good element and then `bad`, and the path of `bad` below the
/// field.
type Nesting = (
    &'static str,
    fn(Value) -> Value,
    fn(Value, Value) -> Value,
    &'static str,
);

fn nestings() -> Vec<Nesting> {
    vec![
        ("plain", |e| e, |_, bad| bad, ""),
        (
            "list",
            |e| json!({"type": "list", "items": e}),
            |ok, bad| json!([ok, bad]),
            "[1]",
        ),
        (
            "map",
            |e| json!({"type": "map", "items": e}),
            |ok, bad| json!({"a": ok, "b": bad}),
            "[\"b\"]",
        ),
        (
            "list of lists",
            |e| json!({"type": "list", "items": {"type": "list", "items": e}}),
            |ok, bad| json!([[ok.clone()], [ok, bad]]),
            "[1][1]",
        ),
        (
            "object",
            |e| json!({"type": "object", "fields": {"f": e}}),
            |_, bad| json!({"f": bad}),
            ".f",
        ),
        (
            "list of objects",
            |e| json!({"type": "list", "items": {"type": "object", "fields": {"f": e}}}),
            |ok, bad| json!([{"f": ok}, {"f": bad}]),
            "[1].f",
        ),
        (
            "map of lists",
            |e| json!({"type": "map", "items": {"type": "list", "items": e}}),
            |ok, bad| json!({"k": [ok, bad]}),
            "[\"k\"][1]",
        ),
        (
            "object in a map in a list",
            |e| json!({"type": "list", "items": {"type": "map", "items": {"type": "object", "fields": {"f": e}}}}),
            |ok, bad| json!([{"a": {"f": ok}}, {"b": {"f": bad}}]),
            "[1][\"b\"].f",
        ),
    ]
}

const ROOTS: [&str; 4] = ["input", "output", "actor", "snapshot"];

fn policy_with(root: &str, field: &Value) -> Policy {
    let fields = json!({ "v": field });
    let contracts = match root {
        "input" => json!({"actions": {"a": {"input": fields}}}),
        "output" => json!({"actions": {"a": {"input": {}, "output": fields}}}),
        other => json!({ other: fields, "actions": {"a": {"input": {}}}}),
    };
    // JSON is YAML.
    let text =
        json!({"default": {"before": "allow", "after": "allow"}, "contracts": contracts, "rules": []}).to_string();
    Policy::from_yaml_str(&text).unwrap_or_else(|e| panic!("{text}: {e}"))
}

fn request_with(root: &str, value: Value) -> Request {
    let fields = json!({ "v": value });
    match root {
        "input" => Request::new("a").input(fields),
        "output" => Request::new("a").phase(Phase::After).output(fields),
        "actor" => Request::new("a").actor(fields),
        _ => Request::new("a").snapshot(fields),
    }
}

#[test]
fn every_constraint_holds_at_every_depth_under_every_root() {
    let mut checked = 0;
    for (kind, spec, ok, bad) in constraint_kinds() {
        for (nesting, wrap, holding, below) in nestings() {
            for root in ROOTS {
                let policy = policy_with(root, &wrap(spec.clone()));
                let what = format!("{kind} / {nesting} / {root}");
                let good = policy.decide(&request_with(root, holding(ok.clone(), ok.clone())));
                assert_eq!(good.effect(), Effect::Allow, "{what}: {:?}", good.reasons());
                let d = policy.decide(&request_with(root, holding(ok.clone(), bad.clone())));
                assert_eq!(d.effect(), Effect::Block, "{what}: the bad value passed");
                let v = d.violation().unwrap_or_else(|| panic!("{what}: no violation"));
                // The nested-item kind fails one level further in.
                let expected = if kind == "nested item pattern" {
                    format!("{root}.v{below}[1]")
                } else {
                    format!("{root}.v{below}")
                };
                assert_eq!(v.path, expected, "{what}: {}", v.message);
                checked += 1;
            }
        }
    }
    assert_eq!(checked, 14 * 8 * 4);
}

#[test]
fn a_constraint_that_does_not_fit_its_item_type_is_a_load_error() {
    for (spec, says) in [
        (
            json!({"type": "list", "items": {"type": "int", "pattern": "^a"}}),
            "`pattern` does not apply",
        ),
        (
            json!({"type": "list", "items": {"type": "string", "min": 1}}),
            "`min`/`max` does not apply",
        ),
        (
            json!({"type": "map", "items": {"type": "bool", "max_len": 2}}),
            "`min_len`/`max_len` does not apply",
        ),
        (
            json!({"type": "list", "items": {"type": "list", "items": {"type": "timestamp", "max": 3}}}),
            "`min`/`max` does not apply",
        ),
        (
            json!({"type": "list", "items": {"type": "int", "allowed": ["a"]}}),
            "not a value of type int",
        ),
        (
            json!({"type": "list", "items": {"type": "string", "pattern": "("}}),
            "invalid regular expression",
        ),
        (
            json!({"type": "list", "items": {"type": "int", "min": 5, "max": 1}}),
            "is below `min`",
        ),
        (
            json!({"type": "list", "items": {"type": "string", "sensitive": true}}),
            "`sensitive` cannot be set",
        ),
        (
            json!({"type": "list", "items": {"type": "object", "fields": {"f": {"type": "bool", "min": 1}}}}),
            "`min`/`max` does not apply",
        ),
        (
            json!({"type": "list", "items": {"type": "string", "max_len": -1}}),
            "`max_len` must be at least 0, found -1",
        ),
        (
            json!({"type": "map", "min_len": -3, "items": "string"}),
            "`min_len` must be at least 0, found -3",
        ),
    ] {
        let text = json!({"contracts": {"actions": {"a": {"input": {"v": spec}}}}}).to_string();
        let e = Policy::from_yaml_str(&text).unwrap_err().to_string();
        assert!(e.contains(says), "{spec}: {e}");
        assert!(e.contains("<string>:1:"), "{spec}: no position in {e}");
    }
}

fn int_policy() -> Policy {
    Policy::from_yaml_str(
        r#"
default: allow
contracts:
  actions:
    a:
      input:
        n: {type: int, optional: true}
        l: {type: list, items: int, optional: true}
        bounded: {type: int, optional: true, min: -9007199254740993, max: 9007199254740993}
"#,
    )
    .unwrap()
}

/// Decides `{"<field>": <text>}` read from JSON text, as the server reads a
/// body. `None` when the text itself is refused.
fn decide_text<'p>(policy: &'p Policy, field: &str, number: &str) -> Option<rein_engine::Decision<'p>> {
    let body = format!(r#"{{"action": "a", "input": {{"{field}": {number}}}}}"#);
    let value = rein_engine::json::parse_strict(body.as_bytes()).ok()?;
    let request = Request::from_json(value).unwrap();
    let from_str = Request::from_json_str(&body).unwrap();
    assert_eq!(request, from_str);
    Some(policy.decide(&request))
}

fn decide_int_text<'p>(policy: &'p Policy, field: &str, number: &str) -> Option<rein_engine::Decision<'p>> {
    decide_text(policy, field, number)
}

#[test]
fn ints_are_decided_from_their_text_at_the_edge_of_the_range() {
    let p = int_policy();
    let accepted = |text: &str| {
        for field in ["n", "l"] {
            let t = if field == "l" {
                format!("[0, {text}]")
            } else {
                text.to_string()
            };
            let outcome = decide_int_text(&p, field, &t).map(|d| d.effect());
            assert_eq!(outcome, Some(Effect::Allow), "{field} = {t} should be an int");
        }
    };
    let refused = |text: &str| {
        for field in ["n", "l"] {
            let t = if field == "l" {
                format!("[0, {text}]")
            } else {
                text.to_string()
            };
            if let Some(d) = decide_int_text(&p, field, &t) {
                assert_eq!(d.effect(), Effect::Block, "{field} = {t} should be refused");
                let v = d.violation().unwrap();
                let path = if field == "l" { "input.l[1]" } else { "input.n" };
                assert_eq!(v.path, path, "{t}");
            }
        }
    };
    for text in [
        "9223372036854775807",
        "-9223372036854775808",
        "0",
        "-0",
        "1.0",
        "1e3",
        "-1E+2",
        "9007199254740991.0",
        "-9007199254740991e0",
    ] {
        accepted(text);
    }
    for text in [
        "9223372036854775808",
        "-9223372036854775809",
        "-9223372036854775808.5",
        "-9223372036854775808.0",
        "9223372036854775807.0",
        "18446744073709551616",
        "1e19",
        "-1e300",
        "1.5",
        "2.9999999999999999",
        "9007199254740992.0",
        "9007199254740993.5",
        "1e-400",
    ] {
        refused(text);
    }
    // Bounds are exact too: 2^53 + 1 is within `max: 2^53 + 1`, 2^53 + 2 is not.
    assert_eq!(
        decide_int_text(&p, "bounded", "9007199254740993").unwrap().effect(),
        Effect::Allow
    );
    let d = decide_int_text(&p, "bounded", "9007199254740994").unwrap();
    assert!(
        d.violation()
            .unwrap()
            .message
            .contains("must be at most 9007199254740993"),
        "{:?}",
        d.reasons()
    );
    let d = decide_int_text(&p, "bounded", "-9007199254740994").unwrap();
    assert!(d
        .violation()
        .unwrap()
        .message
        .contains("must be at least -9007199254740993"));
}

proptest! {
    /// Every integer written as integer text is accepted exactly within
    /// the 64-bit range and refused outside it, whatever double it is near.
    #[test]
    fn integer_text_is_an_int_exactly_within_range(offset in -3000i128..3000, side in prop::bool::ANY) {
        let edge: i128 = if side { i128::from(i64::MAX) } else { i128::from(i64::MIN) };
        let n = edge + offset;
        let p = int_policy();
        let d = decide_int_text(&p, "n", &n.to_string()).unwrap();
        let in_range = i64::try_from(n).is_ok();
        prop_assert_eq!(d.effect() == Effect::Allow, in_range, "{}", n);
        let d = decide_int_text(&p, "l", &format!("[{n}]")).unwrap();
        prop_assert_eq!(d.effect() == Effect::Allow, in_range, "[{}]", n);
    }

    /// A number with a fraction or an exponent is an int only when its
    /// text is a whole number below 2^53.
    #[test]
    fn float_text_is_an_int_only_when_whole_and_exact(whole in -(1i64 << 54)..(1i64 << 54), tenths in 0u8..10) {
        let p = int_policy();
        let text = format!("{whole}.{tenths}");
        let exact = tenths == 0 && whole.unsigned_abs() < (1u64 << 53);
        let allowed = decide_int_text(&p, "n", &text).is_some_and(|d| d.effect() == Effect::Allow);
        prop_assert_eq!(allowed, exact, "{}", text);
    }
}
#[test]
fn timestamps_cover_the_whole_rfc_3339_range() {
    let p = Policy::from_yaml_str(
        r#"
default: allow
contracts:
  actions:
    a:
      input: {t: timestamp}
"#,
    )
    .unwrap();
    let effect = |t: &str| p.decide(&Request::new("a").input(json!({ "t": t })));
    for t in [
        "0000-01-01T00:00:00Z",
        "0000-01-01T00:00:00+00:00",
        "0000-01-01T23:59:59+23:59",
        "0001-01-01T00:00:00-23:59",
        "9999-12-31T23:59:59Z",
        "9999-12-31T23:59:59.999999999Z",
        "9999-12-31T23:59:59-00:00",
        "9999-12-30T22:00:00Z",
        "9999-12-31T00:00:00-23:59",
        "9999-12-31T23:59:59+23:59",
        "2026-01-31T12:00:00Z",
        "1985-04-12T23:20:50.52z",
        "1990-12-31T23:59:60Z",
    ] {
        let d = effect(t);
        assert_eq!(d.effect(), Effect::Allow, "{t}: {:?}", d.reasons());
    }
    for t in [
        "10000-01-01T00:00:00Z",
        "9999-12-31T23:59:59",
        "9999-13-01T00:00:00Z",
        "2026-02-30T00:00:00Z",
        "-0001-01-01T00:00:00Z",
        "not a time",
        // ISO 8601 and Temporal forms that are not RFC 3339, in the middle
        // of the range as at its ends.
        "2026-01-01T00:00:00+24:00",
        "2026-01-01T00:00:00-25:59",
        "2026-01-01T00:00:00+01",
        "2026-01-01T00:00:00+0100",
        "2026-01-01T00:00:00+01:00:30",
        "2026-01-01T00:00:00Z[America/New_York]",
        "20260101T000000Z",
        "2026-01-01T00:00Z",
        "+002026-01-01T00:00:00Z",
        "2026-01-01T00:00:00,5Z",
    ] {
        let d = effect(t);
        assert_eq!(d.effect(), Effect::Block, "{t}");
        assert!(
            d.violation().unwrap().message.contains("RFC 3339"),
            "{t}: {:?}",
            d.reasons()
        );
    }
}

/// A test file's request is YAML; a number in it that JSON would not carry
/// as written is refused when the file loads, as a server refuses the JSON
/// request, rather than becoming another request (`1e400` read as a double
/// is infinite, and turned into `null` it would be an absent optional field
/// that the case then allows).
#[test]
fn test_files_refuse_numbers_a_json_request_could_not_carry() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("policy.yaml"),
        "default: allow\ncontracts:\n  actions:\n    a:\n      input: {x: number?, i: int?}\n",
    )
    .unwrap();
    let file = dir.path().join("p.test.yaml");
    let load = |request: &str| {
        std::fs::write(
            &file,
            format!("policy: policy.yaml\ncases:\n  - {{name: c, request: {request}, expect: block}}\n"),
        )
        .unwrap();
        rein_engine::testing::read_test_file(&file)
    };
    for (number, says) in [
        ("1e400", "is not finite"),
        ("-1e400", "is not finite"),
        (".inf", "is not finite"),
        (".nan", "is not finite"),
        ("2.9999999999999999", "a double rounds it to one"),
        ("1e-400", "a double rounds it to one"),
        ("-9007199254740993.5", "a double rounds it to one"),
    ] {
        for field in ["x", "i"] {
            let request = format!("{{action: a, input: {{{field}: {number}}}}}");
            let e = load(&request).err().unwrap_or_else(|| panic!("{request} loaded"));
            let text = e.to_string();
            assert!(text.contains(says), "{request}: {text}");
            assert!(text.contains(&format!("`{number}`")), "{request}: {text}");
        }
        // Nested in a list and a map too.
        let e = load(&format!(
            "{{action: a, input: {{x: 1}}, snapshot: {{l: [1, {{v: {number}}}]}}}}"
        ));
        assert!(e.is_err(), "{number} in a list");
    }
    for number in [
        "1.5",
        "1e3",
        "3.0",
        "-0.0",
        "+2.5",
        "9007199254740991.0",
        "0.30000000000000004",
    ] {
        let request = format!("{{action: a, input: {{x: {number}}}}}");
        assert!(load(&request).is_ok(), "{request}");
    }
}

/// An element of a list or map of enums is an enum: comparing it with a
/// value the enum cannot take is a load error, as on an enum field (a typo
/// would otherwise make the rule never match), whether it is read by index,
/// through a loop variable at any depth, or tested with `in`.
#[test]
fn enum_elements_compared_with_a_value_they_cannot_take_are_load_errors() {
    let policy = |when: &str| {
        let text = format!(
            r#"
default: allow
contracts:
  actions:
    a:
      input:
        levels: {{type: list, items: {{type: enum, values: [low, high]}}}}
        grid: {{type: list, items: {{type: list, items: {{type: enum, values: [on, off]}}}}}}
        by_team: {{type: map, items: {{type: enum, values: [red, blue]}}}}
        lines: {{type: list, items: {{type: object, fields: {{k: {{type: enum, values: [gift, fast]}}}}}}}}
rules:
  - id: r
    action: a
    when: '{when}'
    effect: block
"#
        );
        Policy::from_yaml_str(&text)
    };
    for (when, bad) in [
        (r#"input.levels.exists(l, l == "medium")"#, "medium"),
        (r#"input.levels.all(l, l != "hihg")"#, "hihg"),
        (r#"input.levels.exists(l, l in ["low", "mid"])"#, "mid"),
        (r#""medium" in input.levels"#, "medium"),
        (r#"input.levels[0] == "lo""#, "lo"),
        (r#"input.grid.exists(row, row.exists(c, c == "maybe"))"#, "maybe"),
        (r#"input.grid[0][1] == "maybe""#, "maybe"),
        (r#""maybe" in input.grid[0]"#, "maybe"),
        (r#"input.by_team["x"] == "green""#, "green"),
        (r#"input.lines.exists(l, l.k == "slow")"#, "slow"),
    ] {
        let e = policy(when).err().unwrap_or_else(|| panic!("{when} loaded"));
        assert!(
            e.to_string().contains(&format!("`{bad}` is not a value of")),
            "{when}: {e}"
        );
    }
    for when in [
        r#"input.levels.exists(l, l == "high")"#,
        r#""low" in input.levels"#,
        r#"input.grid.exists(row, row.exists(c, c == "on"))"#,
        r#"input.by_team.exists(team, team == "green")"#,
        r#"input.levels.map(l, l + "!").exists(x, x == "anything")"#,
        r#"input.levels.exists(input, input == "low")"#,
    ] {
        assert!(
            policy(when).is_ok(),
            "{when}: {:?}",
            policy(when).err().map(|e| e.to_string())
        );
    }
}

/// A request's `time` is read as a contract reads a timestamp: RFC 3339's
/// grammar alone, with a message naming `time`.
#[test]
fn a_requests_time_is_rfc_3339_text() {
    let read = |t: &str| Request::from_json_str(&format!(r#"{{"action": "a", "time": "{t}"}}"#));
    let ok = read("2026-01-31T12:00:00.5+01:00").unwrap();
    assert_eq!(ok.time.unwrap().to_string(), "2026-01-31T11:00:00.5Z");
    assert!(read("1985-04-12t23:20:50z").is_ok());
    for bad in [
        "2026-01-31T12:00:00+24:00",
        "2026-01-31T12:00:00+01",
        "20260131T120000Z",
        "2026-01-31T12:00:00Z[Europe/Paris]",
        "2026-01-31",
        "9999-12-31T23:00:00Z",
    ] {
        let e = read(bad).unwrap_err().to_string();
        assert!(e.contains("`time`"), "{bad}: {e}");
        assert!(e.contains(bad), "{bad}: {e}");
    }
}

/// `has()` through a literal index guards the same path, as the load
/// error's help suggests; another index, or one computed, is not guarded.
#[test]
fn has_through_a_literal_index_guards_that_path() {
    let policy = |when: &str| {
        Policy::from_yaml_str(&format!(
            r#"
default: allow
contracts:
  actions:
    a:
      input:
        l: {{type: list, items: {{type: object, fields: {{f: int?}}}}}}
        m: {{type: map, items: {{type: object, fields: {{f: int?}}}}}}
        n: int
rules:
  - id: r
    action: a
    when: '{when}'
    effect: block
"#
        ))
    };
    for when in [
        "input.l.size() > 0 && has(input.l[0].f) && input.l[0].f > 1",
        r#""k" in input.m && has(input.m["k"].f) && input.m["k"].f > 1"#,
    ] {
        assert!(
            policy(when).is_ok(),
            "{when}: {:?}",
            policy(when).err().map(|e| e.to_string())
        );
    }
    for when in [
        "input.l.size() > 1 && has(input.l[0].f) && input.l[1].f > 1",
        "input.l.size() > 0 && has(input.l[0].f) && input.l[input.n].f > 1",
        r#"has(input.m["k"].f) && input.m["j"].f > 1"#,
    ] {
        let e = policy(when).err().unwrap_or_else(|| panic!("{when} loaded"));
        assert!(
            e.to_string().contains("is optional and may be absent here"),
            "{when}: {e}"
        );
    }
    let p = policy("input.l.size() > 0 && has(input.l[0].f) && input.l[0].f > 1").unwrap();
    let decide = |l: Value| {
        p.decide(&Request::new("a").input(json!({"l": l, "m": {}, "n": 0})))
            .effect()
    };
    assert_eq!(decide(json!([{"f": 2}])), Effect::Block);
    assert_eq!(decide(json!([{}, {"f": 2}])), Effect::Allow);
    assert_eq!(decide(json!([])), Effect::Allow);
}
