//! Every mapping rule and every construct that cannot be mapped, checked
//! through the engine: the derived contract must load, and requests must be
//! allowed or refused by it as the schema says.

use super::*;
use proptest::prelude::*;
use rein_engine::{Effect, Policy, Request};

use serde_json::json;

fn tool(input: Json) -> Tool {
    Tool::from_json(&json!({"name": "t", "description": "d", "inputSchema": input})).unwrap()
}

/// A policy that allows whatever fits the derived contracts.
const ALLOW_ALL: &str = "default: {before: allow, after: allow}\n";

/// Loads derived YAML as the gateway does: a derived source beside the
/// policy's own files.
fn load(policy: &str, derived: &str) -> Result<Policy, rein_engine::LoadError> {
    Policy::from_sources_with_derived(
        [("policy.yaml", policy)],
        &[("<contracts of MCP server s>".to_string(), derived.to_string())],
    )
}

struct Derivation {
    yaml: String,
    policy: Policy,
    unmapped: Vec<Unmapped>,
}

impl Derivation {
    fn of(input: Json) -> Derivation {
        Derivation::of_tool(&tool(input))
    }

    fn of_tool(t: &Tool) -> Derivation {
        let derived = derive(
            "s",
            &Catalog {
                tools: [(t.name.clone(), t.clone())].into(),
            },
        );
        let policy = match load(ALLOW_ALL, &derived.yaml) {
            Ok(p) => p,
            Err(e) => panic!("the derived contract does not load: {e}\n{}", derived.yaml),
        };
        Derivation {
            yaml: derived.yaml,
            policy,
            unmapped: derived.unmapped,
        }
    }

    fn allows(&self, input: Json) -> bool {
        let d = self.policy.decide(&Request::new("mcp.s.t").input(input));
        d.effect() == Effect::Allow
    }

    fn allows_output(&self, output: Json) -> bool {
        let d = self
            .policy
            .decide(&Request::new("mcp.s.t").phase(rein_engine::Phase::After).output(output));
        d.effect() == Effect::Allow
    }

    fn unmapped_at(&self, path: &str) -> &Unmapped {
        self.unmapped
            .iter()
            .find(|u| u.path == path)
            .unwrap_or_else(|| panic!("nothing unmapped at {path}: {:#?}\n{}", self.unmapped, self.yaml))
    }
}

fn object(properties: Json, required: &[&str]) -> Json {
    json!({"type": "object", "properties": properties, "required": required})
}

#[test]
fn strings_with_lengths_and_patterns() {
    let d = Derivation::of(object(
        json!({"code": {"type": "string", "minLength": 2, "maxLength": 3, "pattern": "^[A-Z]+$"}}),
        &["code"],
    ));
    assert!(d.unmapped.is_empty(), "{:?}", d.unmapped);
    assert!(d.allows(json!({"code": "EUR"})));
    assert!(!d.allows(json!({"code": "E"})));
    assert!(!d.allows(json!({"code": "EURO"})));
    assert!(!d.allows(json!({"code": "eur"})));
    assert!(!d.allows(json!({})), "required");
    assert!(!d.allows(json!({"code": 3})), "typed");
}

#[test]
fn numbers_integers_and_bounds() {
    let d = Derivation::of(object(
        json!({
            "n": {"type": "integer", "minimum": 0, "maximum": 10},
            "x": {"type": "number", "minimum": 0.5, "maximum": 1e30},
            "p": {"type": "integer", "exclusiveMinimum": 0, "exclusiveMaximum": 5.5},
            "old": {"type": "integer", "minimum": 1, "exclusiveMinimum": true},
        }),
        &["n"],
    ));
    assert!(d.unmapped.is_empty(), "{:?}", d.unmapped);
    assert!(d.allows(json!({"n": 0, "x": 0.5, "p": 1, "old": 2})));
    assert!(d.allows(json!({"n": 10, "p": 5})));
    assert!(!d.allows(json!({"n": 11})));
    assert!(!d.allows(json!({"n": 1.5})), "an int");
    assert!(!d.allows(json!({"n": 1, "x": 0.4})));
    assert!(!d.allows(json!({"n": 1, "p": 0})), "exclusive");
    assert!(!d.allows(json!({"n": 1, "p": 6})), "exclusive");
    assert!(!d.allows(json!({"n": 1, "old": 1})), "draft 4's exclusive minimum");
}

#[test]
fn schemas_no_value_fits_are_unmapped_not_refused_by_the_loader() {
    for schema in [
        json!({"type": "integer", "minimum": 10, "maximum": 5}),
        json!({"type": "integer", "exclusiveMinimum": 4, "exclusiveMaximum": 5}),
        json!({"type": "number", "minimum": 9007199254740993i64, "maximum": 9007199254740992.0}),
        json!({"type": "string", "minLength": 3, "maxLength": 2}),
        json!({"type": "array", "items": {"type": "string"}, "minItems": 2, "maxItems": 1}),
    ] {
        let d = Derivation::of(object(json!({"f": schema.clone()}), &[]));
        assert!(
            d.unmapped_at("input.f").reason.contains("no value fits"),
            "{schema}: {:?}",
            d.unmapped
        );
    }
    // Equal bounds are fine.
    let d = Derivation::of(object(
        json!({"f": {"type": "integer", "minimum": 3, "maximum": 3.0}}),
        &["f"],
    ));
    assert!(d.unmapped.is_empty() && d.allows(json!({"f": 3})) && !d.allows(json!({"f": 4})));
}

#[test]
fn deep_schemas_load_or_are_reported() {
    fn nest(depth: usize, wrap: &dyn Fn(Json) -> Json) -> Json {
        (0..depth).fold(json!({"type": "string"}), |inner, _| wrap(inner))
    }
    let kinds: [&dyn Fn(Json) -> Json; 4] = [
        &|inner| json!({"type": "array", "items": inner}),
        &|inner| json!({"type": "object", "additionalProperties": inner}),
        &|inner| json!({"type": "object", "properties": {"x": inner}, "required": ["x"]}),
        &|inner| json!({"anyOf": [{"type": "array", "items": inner, "maxItems": 3}, {"type": "null"}]}),
    ];
    for wrap in kinds {
        for depth in [3, 10, 17, MAX_DEPTH - 1, MAX_DEPTH, MAX_DEPTH + 1, 60] {
            let schema = nest(depth, wrap);
            // `Derivation::of` fails the test if the contract does not load.
            let d = Derivation::of(object(json!({"f": schema}), &[]));
            if depth >= MAX_DEPTH {
                assert!(!d.unmapped.is_empty(), "depth {depth}");
            }
        }
    }
}

#[test]
fn exclusive_bounds_on_numbers_are_unmapped() {
    let d = Derivation::of(object(json!({"x": {"type": "number", "exclusiveMinimum": 0}}), &[]));
    let u = d.unmapped_at("input.x");
    assert!(u.reason.contains("`exclusiveMinimum` on a number"), "{u:?}");
    assert!(u.reason.contains("a call that sets it is refused"), "{u:?}");
    assert!(!d.allows(json!({"x": 1})), "left out, so refused");
    assert!(d.allows(json!({})));
}

#[test]
fn booleans_enums_and_consts() {
    let d = Derivation::of(object(
        json!({
            "b": {"type": "boolean"},
            "mode": {"type": "string", "enum": ["a", "b", "a"]},
            "level": {"type": "integer", "enum": [1, 2, 3]},
            "kind": {"const": "fixed"},
            "flag": {"const": true},
            "untyped": {"enum": ["x", "y"]},
        }),
        &["b"],
    ));
    assert!(d.unmapped.is_empty(), "{:?}", d.unmapped);
    assert!(d.allows(json!({"b": true, "mode": "a", "level": 2, "kind": "fixed", "flag": true, "untyped": "y"})));
    assert!(!d.allows(json!({"b": "true"})));
    assert!(!d.allows(json!({"b": true, "mode": "c"})));
    assert!(!d.allows(json!({"b": true, "level": 4})));
    assert!(!d.allows(json!({"b": true, "kind": "other"})));
    assert!(!d.allows(json!({"b": true, "flag": false})));
    assert!(!d.allows(json!({"b": true, "untyped": "z"})));
}

#[test]
fn nested_objects_required_and_unknown_fields() {
    let d = Derivation::of(object(
        json!({
            "customer": {
                "type": "object",
                "properties": {"id": {"type": "string"}, "tier": {"type": "string"}},
                "required": ["id"],
                "additionalProperties": false,
            },
        }),
        &["customer"],
    ));
    assert!(d.unmapped.is_empty(), "{:?}", d.unmapped);
    assert!(d.allows(json!({"customer": {"id": "c1"}})));
    assert!(d.allows(json!({"customer": {"id": "c1", "tier": "gold"}})));
    assert!(!d.allows(json!({"customer": {"tier": "gold"}})), "nested required");
    assert!(
        !d.allows(json!({"customer": {"id": "c1", "extra": 1}})),
        "nested unknown field"
    );
    assert!(
        !d.allows(json!({"customer": {"id": "c1"}, "extra": 1})),
        "unknown field"
    );
}

#[test]
fn lists_with_item_constraints_and_maps() {
    let d = Derivation::of(object(
        json!({
            "tags": {"type": "array", "items": {"type": "string", "maxLength": 3}, "minItems": 1, "maxItems": 2},
            "lines": {"type": "array", "items": {"type": "object", "properties": {"qty": {"type": "integer", "minimum": 1}}, "required": ["qty"]}},
            "labels": {"type": "object", "additionalProperties": {"type": "string"}},
            "grid": {"type": "array", "items": {"type": "array", "items": {"type": "integer"}}},
        }),
        &[],
    ));
    assert!(d.unmapped.is_empty(), "{:?}", d.unmapped);
    assert!(d.yaml.contains("grid: list<list<int>>?"), "{}", d.yaml);
    assert!(d.yaml.contains("labels: map<string>?"), "{}", d.yaml);
    assert!(d.allows(json!({"tags": ["a"], "lines": [{"qty": 2}], "labels": {"k": "v"}, "grid": [[1]]})));
    assert!(!d.allows(json!({"tags": []})));
    assert!(!d.allows(json!({"tags": ["a", "b", "c"]})));
    assert!(!d.allows(json!({"tags": ["abcd"]})));
    assert!(!d.allows(json!({"lines": [{"qty": 0}]})));
    assert!(!d.allows(json!({"lines": [{}]})));
    assert!(!d.allows(json!({"labels": {"k": 1}})));
}

#[test]
fn nullable_types_are_optional() {
    let d = Derivation::of(object(
        json!({
            "a": {"type": ["string", "null"]},
            "b": {"anyOf": [{"type": "integer"}, {"type": "null"}], "default": null, "title": "B"},
            "c": {"oneOf": [{"type": "null"}, {"type": "boolean"}]},
            "n": {"type": ["integer", "number"]},
        }),
        &["a", "b", "c", "n"],
    ));
    assert!(d.unmapped.is_empty(), "{:?}", d.unmapped);
    assert!(d.allows(json!({"n": 1.5})));
    assert!(d.allows(json!({"a": null, "b": 1, "c": true, "n": 2})));
    assert!(!d.allows(json!({"a": 1, "n": 1})));
    assert!(!d.allows(json!({"n": null})), "not nullable");
}

#[test]
fn local_references_are_followed() {
    // As pydantic writes nested models, and zod repeated schemas.
    let d = Derivation::of(json!({
        "type": "object",
        "$defs": {"Address": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}},
        "properties": {
            "home": {"$ref": "#/$defs/Address", "description": "where"},
            "work": {"$ref": "#/properties/home"},
            "old": {"allOf": [{"$ref": "#/$defs/Address"}]},
        },
        "required": ["home"],
    }));
    assert!(d.unmapped.is_empty(), "{:?}", d.unmapped);
    assert!(d.allows(json!({"home": {"city": "Oslo"}, "work": {"city": "Rome"}, "old": {"city": "Pau"}})));
    assert!(!d.allows(json!({"home": {}})));
}

#[test]
fn recursive_and_dangling_references_are_unmapped() {
    let d = Derivation::of(json!({
        "type": "object",
        "$defs": {"Node": {"type": "object", "properties": {"next": {"$ref": "#/$defs/Node"}}}},
        "properties": {
            "list": {"$ref": "#/$defs/Node"},
            "gone": {"$ref": "#/$defs/Missing"},
            "far": {"$ref": "https://example.com/schema"},
            "loop": {"$ref": "#/properties/loop"},
        },
    }));
    assert!(
        d.unmapped.iter().any(|u| u.path.starts_with("input.list.next")),
        "{:?}",
        d.unmapped
    );
    assert!(d.unmapped_at("input.gone").reason.contains("does not name"));
    assert!(d.unmapped_at("input.far").reason.contains("does not name"));
    assert!(d.unmapped_at("input.loop").reason.contains("deeper than"));
}

#[test]
fn exponential_references_stay_bounded() {
    // Each level refers to the one below twice: 2^40 nodes if expanded.
    let mut defs = serde_json::Map::new();
    for i in 0..40 {
        defs.insert(
            format!("L{i}"),
            json!({"type": "object", "properties": {"a": {"$ref": format!("#/$defs/L{}", i + 1)}, "b": {"$ref": format!("#/$defs/L{}", i + 1)}}}),
        );
    }
    defs.insert("L40".into(), json!({"type": "string"}));
    let schema = json!({"type": "object", "$defs": defs, "properties": {"root": {"$ref": "#/$defs/L0"}}});
    let started = std::time::Instant::now();
    let d = Derivation::of(schema);
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
    assert!(!d.unmapped.is_empty());
    assert!(d.unmapped.len() <= MAX_REPORTS_PER_TOOL + 1);
    assert!(
        d.unmapped.iter().all(|u| u.path.starts_with("input")),
        "{:?}",
        d.unmapped
    );
    // As many properties as the report holds, and more.
    let many: serde_json::Map<String, Json> = (0..200).map(|i| (format!("f{i}"), json!({"not": {}}))).collect();
    let d = Derivation::of(object(Json::Object(many), &[]));
    assert_eq!(d.unmapped.len(), MAX_REPORTS_PER_TOOL + 1);
    let last = d.unmapped.last().unwrap();
    assert!(
        last.reason.contains("and 150 more parts") && !last.path.is_empty(),
        "{last:?}"
    );
}

#[test]
fn extra_fields_the_schema_allows_are_refused_and_reported() {
    let d = Derivation::of(json!({
        "type": "object",
        "properties": {"a": {"type": "string"}},
        "additionalProperties": true,
    }));
    let u = d.unmapped_at("input");
    assert!(u.reason.contains("allows fields it does not list"), "{u:?}");
    assert!(u.reason.contains("declare the contract in the policy"), "{u:?}");
    assert!(d.allows(json!({"a": "x"})));
    assert!(!d.allows(json!({"a": "x", "b": 1})));

    let d = Derivation::of(json!({"type": "object", "additionalProperties": {"type": "string"}}));
    assert!(d
        .unmapped_at("input")
        .reason
        .contains("a call with arguments is refused"));
    assert!(d.allows(json!({})));
    assert!(!d.allows(json!({"k": "v"})));
}

#[test]
fn a_tool_without_arguments() {
    for schema in [
        json!({"type": "object"}),
        json!({"type": "object", "properties": {}}),
        json!({"type": "object", "additionalProperties": false}),
    ] {
        let d = Derivation::of(schema.clone());
        assert!(d.unmapped.is_empty(), "{schema}: {:?}", d.unmapped);
        assert!(d.yaml.contains("input: {}"), "{}", d.yaml);
        assert!(d.allows(json!({})));
        assert!(!d.allows(json!({"x": 1})), "{schema}");
    }
}

#[test]
fn root_schemas_that_are_not_objects() {
    for (schema, what) in [
        (json!({"type": "string"}), "not `object`"),
        (json!({"anyOf": [{"type": "object"}, {"type": "string"}]}), "`anyOf`"),
        (json!(true), "not a JSON object"),
        (json!({"$ref": "#/nowhere"}), "does not name"),
    ] {
        let d = Derivation::of(schema.clone());
        let u = d.unmapped_at("input");
        assert!(u.reason.contains(what), "{schema}: {u:?}");
        assert!(u.reason.contains("a call with arguments is refused"), "{u:?}");
        assert!(d.allows(json!({})));
        assert!(!d.allows(json!({"x": 1})));
    }
    let t = Tool::from_json(&json!({"name": "t"})).unwrap();
    let d = Derivation::of_tool(&t);
    assert!(d.unmapped_at("input").reason.contains("no `inputSchema`"));
}

#[test]
fn constructs_without_a_rein_type_leave_their_field_out() {
    let cases = [
        (
            json!({"anyOf": [{"type": "string"}, {"type": "integer"}]}),
            "`anyOf` is not supported",
        ),
        (
            json!({"oneOf": [{"type": "string"}, {"type": "integer"}, {"type": "null"}]}),
            "`oneOf`",
        ),
        (
            json!({"allOf": [{"type": "string"}, {"minLength": 1}]}),
            "`allOf` of several",
        ),
        (json!({"type": "string", "not": {"const": "x"}}), "`not`"),
        (json!({"type": "string", "if": {}, "then": {}}), "`if`"),
        (json!({"const": {"a": 1}}), "mixing kinds"),
        (
            json!({"type": "object", "const": {"a": 1}}),
            "`const` of lists or objects",
        ),
        (json!({"type": "number", "multipleOf": 0.5}), "`multipleOf`"),
        (
            json!({"type": "array", "items": {"type": "string"}, "uniqueItems": true}),
            "`uniqueItems`",
        ),
        (json!({"type": "array", "items": [{"type": "string"}]}), "tuple"),
        (
            json!({"type": "array", "prefixItems": [{"type": "string"}]}),
            "`prefixItems`",
        ),
        (json!({"type": "array"}), "without `items`"),
        (
            json!({"type": "array", "items": {"type": ["string", "null"]}}),
            "may be `null`",
        ),
        (
            json!({"type": "object", "patternProperties": {"^x": {"type": "string"}}}),
            "does not list",
        ),
        (json!({"type": "object"}), "does not list"),
        (json!({"type": "object", "additionalProperties": true}), "does not list"),
        (
            json!({"type": "object", "minProperties": 1, "properties": {}}),
            "`minProperties`",
        ),
        (json!({"type": "string", "pattern": "^(?=a)"}), "look-around"),
        (json!({"type": "string", "pattern": "(a)\\1"}), "back-references"),
        (json!({"type": "string", "pattern": "["}), "without its `]`"),
        (json!({"type": "string", "pattern": "\\p{L}"}), "property"),
        (json!({"description": "anything"}), "no `type`"),
        (json!({}), "no `type`"),
        (json!(true), "any JSON value"),
        (json!(false), "no value"),
        (json!({"type": ["string", "integer"]}), "several types"),
        (json!({"type": "null"}), "only `null`"),
        (json!({"type": "date"}), "not a JSON Schema type"),
        (json!({"type": "string", "minLength": -1}), "`minLength`"),
        (
            json!({"type": "string", "enum": [1, 2]}),
            "no value of the `enum` is a string",
        ),
        (
            json!({"type": "string", "format": "uri", "$dynamicRef": "#x"}),
            "`$dynamicRef`",
        ),
    ];
    for (schema, what) in cases {
        let d = Derivation::of(object(json!({"f": schema.clone(), "ok": {"type": "string"}}), &[]));
        assert_eq!(d.unmapped.len(), 1, "{schema}: {:#?}", d.unmapped);
        let u = &d.unmapped[0];
        assert!(u.path.starts_with("input.f"), "{schema}: {u:?}");
        assert!(u.reason.contains(what), "{schema}: {u:?}");
        assert!(
            u.reason
                .contains("`input.f` is left out of the contract, so a call that sets it is refused"),
            "{schema}: {u:?}"
        );
        assert!(
            u.reason.ends_with("(declare the contract in the policy to allow it)"),
            "{u:?}"
        );
        assert!(d.allows(json!({"ok": "x"})), "{schema}: the rest still maps");
        assert!(!d.allows(json!({"ok": "x", "f": "anything"})), "{schema}: fail closed");
        assert!(!d.allows(json!({"ok": "x", "f": {}})), "{schema}: fail closed");
    }
}

#[test]
fn required_fields_left_out_refuse_every_call_or_their_parent() {
    let d = Derivation::of(object(
        json!({
            "f": {"anyOf": [{"type": "string"}, {"type": "integer"}]},
            "opt": {"type": "object", "properties": {"g": {"not": {}}}, "required": ["g"]},
            "items": {"type": "array", "items": {"type": "object", "properties": {"h": {"type": "array"}}, "required": ["h"]}},
        }),
        &["f"],
    ));
    assert!(d
        .unmapped_at("input.f")
        .reason
        .contains("every call of this tool is refused"));
    assert!(d
        .unmapped_at("input.opt.g")
        .reason
        .contains("a call that sets `input.opt` is refused"));
    assert!(d
        .unmapped_at("input.items[].h")
        .reason
        .contains("a call with an element in `input.items` is refused"));
}

#[test]
fn names_that_are_not_field_names() {
    let d = Derivation::of(object(
        json!({"file-path": {"type": "string"}, "a\nb": {"type": "string"}, "ok": {"type": "string"}}),
        &["file-path", "missing"],
    ));
    let u = d.unmapped_at("input[\"file-path\"]");
    assert!(
        u.reason.contains("not a Rein field name") && u.reason.contains("every call"),
        "{u:?}"
    );
    assert!(d.unmapped_at("input[\"a\\nb\"]").reason.contains("a call that sets it"));
    assert!(d
        .unmapped_at("input.missing")
        .reason
        .contains("required by the schema but not described"));
    assert!(d.allows(json!({"ok": "x"})));
    assert!(!d.allows(json!({"file-path": "x"})));
}

#[test]
fn yaml_special_names_and_text_are_quoted() {
    let names = ["null", "true", "False", "yes", "on", "n", "y", "Off", "NULL", "no"];
    let properties: serde_json::Map<String, Json> = names
        .iter()
        .map(|n| (n.to_string(), json!({"type": "string"})))
        .collect();
    let d = Derivation::of(object(Json::Object(properties), &names));
    assert!(d.unmapped.is_empty(), "{:?}", d.unmapped);
    let all: serde_json::Map<String, Json> = names.iter().map(|n| (n.to_string(), json!("v"))).collect();
    assert!(d.allows(Json::Object(all)), "{}", d.yaml);
    let d = Derivation::of(object(
        json!({"s": {"type": "string", "enum": ["a\"b", "c\\d", "e: f", "# g", "", "x\u{202E}y", "z\u{E0041}"]}}),
        &["s"],
    ));
    for v in ["a\"b", "c\\d", "e: f", "# g", "", "x\u{202E}y", "z\u{E0041}"] {
        assert!(d.allows(json!({"s": v})), "{v:?}\n{}", d.yaml);
    }
    assert!(
        !d.yaml.contains('\u{202E}') && !d.yaml.contains('\u{E0041}'),
        "invisible text is escaped"
    );
}

#[test]
fn descriptions_are_shortened_one_line_and_escaped() {
    let long = format!("line one\n\n\tline \"two\" \\ {}\u{202E}end", "x".repeat(300));
    let t = Tool::from_json(&json!({"name": "t", "description": long, "inputSchema": {"type": "object"}})).unwrap();
    let d = derive(
        "s",
        &Catalog {
            tools: [("t".to_string(), t)].into(),
        },
    );
    let line = d
        .yaml
        .lines()
        .find(|l| l.trim_start().starts_with("description:"))
        .unwrap();
    assert!(line.contains(r#"line one line \"two\" \\ xxx"#), "{line}");
    assert!(line.ends_with("…\""), "{line}");
    let doc = rein_engine::syntax::yaml::parse(&d.yaml).unwrap();
    let text = format!("{doc:?}");
    assert!(text.contains("line one line \\\"two\\\""), "the YAML reads back");
    assert_eq!(shorten(&long).chars().count(), DESCRIPTION_MAX_CHARS);
    assert_eq!(shorten("  a \n b  "), "a b");
    let invisible = quote_yaml("a\u{200B}b\u{E0041}c\u{7F}\u{85}");
    assert_eq!(invisible, r#""a\u200Bb\U000E0041c\x7F\x85""#);
}

#[test]
fn output_contracts() {
    let with = Tool::from_json(&json!({
        "name": "t", "inputSchema": {"type": "object"},
        "outputSchema": {"type": "object", "properties": {"total": {"type": "number", "minimum": 0}}, "required": ["total"], "additionalProperties": false},
    }))
    .unwrap();
    let d = Derivation::of_tool(&with);
    assert!(d.allows_output(json!({"total": 3})));
    assert!(!d.allows_output(json!({"total": -1})));
    assert!(!d.allows_output(json!({"total": 3, "secret": "x"})));
    assert!(!d.allows_output(json!({"text": "3"})));

    let without = Tool::from_json(&json!({"name": "t", "inputSchema": {"type": "object"}})).unwrap();
    let d = Derivation::of_tool(&without);
    assert!(d.allows_output(json!({"text": "hello"})));
    assert!(!d.allows_output(json!({"text": 1})));

    // An output contract is derived whole or not at all.
    for output_schema in [
        json!({"type": "object", "properties": {"v": {"anyOf": [{"type": "string"}, {"type": "integer"}]}}, "required": ["v"]}),
        json!({"type": "object", "properties": {"v": {"type": "string"}, "w": {"type": "array"}}}),
        // The Python SDK's `-> dict[str, int]`.
        json!({"type": "object", "additionalProperties": {"type": "integer"}, "title": "addDictOutput"}),
        json!({"type": "object", "properties": {"v": {"type": "string"}}, "additionalProperties": true}),
        json!({"type": "array", "items": {"type": "string"}}),
    ] {
        let t =
            Tool::from_json(&json!({"name": "t", "inputSchema": {"type": "object"}, "outputSchema": output_schema}))
                .unwrap();
        let d = Derivation::of_tool(&t);
        assert!(!d.unmapped.is_empty(), "{output_schema}");
        for u in &d.unmapped {
            assert!(u.path.starts_with("output"), "{u:?}");
            assert!(u.reason.contains("no output contract"), "{u:?}");
        }
        assert!(
            !d.yaml.lines().any(|l| l.trim_start().starts_with("output:")),
            "{}",
            d.yaml
        );
        assert!(
            d.allows_output(json!({"v": "x"})),
            "results pass as any result no rule faults"
        );
        let reads_output = "default: allow\nrules:\n  - id: r\n    action: mcp.s.t\n    phase: after\n    when: has(output.v)\n    effect: block\n";
        assert!(
            load(reads_output, &d.yaml).is_err(),
            "a rule cannot read an output never typed"
        );
    }
}

#[test]
fn tools_whose_name_cannot_be_an_action() {
    let ok = tool(json!({"type": "object"}));
    let bad = Tool::from_json(&json!({"name": "bad name", "inputSchema": {"type": "object"}})).unwrap();
    let catalog = Catalog {
        tools: [("t".to_string(), ok), ("bad name".to_string(), bad)].into(),
    };
    let d = derive("s", &catalog);
    assert_eq!(d.actions, vec!["mcp.s.t".to_string()]);
    assert_eq!(d.unmapped.len(), 1);
    assert_eq!(d.unmapped[0].path, "");
    assert_eq!(d.unmapped[0].tool, "bad name");
    assert!(
        d.unmapped[0].reason.contains("every call of it is refused"),
        "{:?}",
        d.unmapped[0]
    );
    assert!(!d.yaml.contains("bad name"));
}

#[test]
fn tool_facts_and_annotation_defaults() {
    let t = Tool::from_json(
        &json!({"name": "t", "inputSchema": {"type": "object"}, "annotations": {"readOnlyHint": true}}),
    )
    .unwrap();
    let d = derive(
        "srv",
        &Catalog {
            tools: [("t".to_string(), t)].into(),
        },
    );
    assert!(d.yaml.contains(r#"server: "srv""#), "{}", d.yaml);
    assert!(d.yaml.contains(r#"name: "t""#), "{}", d.yaml);
    assert!(
        d.yaml.contains(
            r#"annotations: {title: "", readOnlyHint: true, destructiveHint: true, idempotentHint: false, openWorldHint: true}"#
        ),
        "{}",
        d.yaml
    );
    let empty = derive("srv", &Catalog::default());
    assert!(empty.yaml.contains("actions: {}"));
    assert!(load(ALLOW_ALL, &empty.yaml).is_ok());
}

#[test]
fn one_rule_over_a_server_reads_every_tool_s_facts() {
    let read = Tool::from_json(
        &json!({"name": "read", "inputSchema": {"type": "object"}, "annotations": {"readOnlyHint": true}}),
    )
    .unwrap();
    let write =
        Tool::from_json(&json!({"name": "write", "title": "Write", "inputSchema": {"type": "object"}})).unwrap();
    let derived = derive(
        "s",
        &Catalog {
            tools: [("read".to_string(), read), ("write".to_string(), write)].into(),
        },
    );
    let rules = r#"
default: allow
rules:
  - id: writes_ask
    action: mcp.s.*
    when: '!tool.annotations.readOnlyHint && tool.annotations.destructiveHint && tool.server == "s" && tool.annotations.title != "x"'
    effect: block
    reason: not read-only
"#;
    let policy = load(rules, &derived.yaml).unwrap_or_else(|e| panic!("{e}\n{}", derived.yaml));
    assert_eq!(
        policy.decide(&Request::new("mcp.s.read").input(json!({}))).effect(),
        Effect::Allow
    );
    assert_eq!(
        policy.decide(&Request::new("mcp.s.write").input(json!({}))).effect(),
        Effect::Block
    );
    // A contract the policy declares wins over the derived one.
    let own = "default: allow\ncontracts:\n  actions:\n    mcp.s.read:\n      input: {path: string}\n";
    let policy = load(own, &derived.yaml).unwrap();
    assert_eq!(
        policy
            .decide(&Request::new("mcp.s.read").input(json!({"path": "/a"})))
            .effect(),
        Effect::Allow
    );
    assert_eq!(
        policy.decide(&Request::new("mcp.s.read").input(json!({}))).effect(),
        Effect::Block
    );
}

#[test]
fn the_gateway_snapshot_contract_loads() {
    let derived = derive(
        "s",
        &Catalog {
            tools: [("t".to_string(), tool(json!({"type": "object"})))].into(),
        },
    );
    let policy = Policy::from_sources_with_derived(
        [("policy.yaml", ALLOW_ALL)],
        &[
            ("<contracts of MCP server s>".to_string(), derived.yaml),
            ("<gateway snapshot>".to_string(), SNAPSHOT_CONTRACT_YAML.to_string()),
        ],
    )
    .unwrap();
    let req = |snapshot: Json| Request::new("mcp.s.t").input(json!({})).snapshot(snapshot);
    assert_eq!(
        policy
            .decide(&req(json!({"tool_use_id": "toolu_1", "mcp_client": "mcp:s"})))
            .effect(),
        Effect::Allow
    );
    assert_eq!(policy.decide(&req(json!({}))).effect(), Effect::Allow);
    assert_eq!(policy.decide(&req(json!({"other": 1}))).effect(), Effect::Block);
}

// ---------------------------------------------------------------------------
// Patterns
// ---------------------------------------------------------------------------

fn re(pattern: &str) -> regex::Regex {
    let t = translate_pattern(pattern).unwrap_or_else(|e| panic!("{pattern}: {e}"));
    regex::Regex::new(&t).unwrap()
}

#[test]
fn patterns_keep_javascript_meaning() {
    // `\d`, `\w`, `\b` are ASCII in JavaScript.
    assert!(re(r"^\d+$").is_match("123") && !re(r"^\d+$").is_match("١٢٣"));
    assert!(re(r"^\w+$").is_match("a_1") && !re(r"^\w+$").is_match("é"));
    assert!(re(r"^[\w.-]+$").is_match("a.b-c") && !re(r"^[\w.-]+$").is_match("a/b"));
    assert!(re(r"\bx\b").is_match("a x b") && re(r"\bx\b").is_match("éxé") && !re(r"\bx\b").is_match("axb"));
    // `.` stops at every JavaScript line terminator.
    for stop in ["\n", "\r", "\u{2028}", "\u{2029}"] {
        assert!(!re("^a.b$").is_match(&format!("a{stop}b")), "{stop:?}");
    }
    assert!(re("^a.b$").is_match("a\u{85}b"));
    // `\s` is JavaScript's set.
    assert!(re(r"^\s$").is_match("\u{FEFF}") && !re(r"^\s$").is_match("\u{85}"));
    assert!(re(r"^\S$").is_match("\u{85}"));
    // Rust's class operators are literal characters in JavaScript.
    let r = re("^[a&&b]+$");
    assert!(r.is_match("a&b") && r.is_match("&"));
    let r = re("^[a~~b]+$");
    assert!(r.is_match("~"));
    let r = re("^[a--b]$");
    assert!(r.is_match("-"), "`--` is a range from `-` to `-` after `a`, or literal");
    assert!(re(r"^[[]$").is_match("["));
    assert!(re(r"^[\]]$").is_match("]"));
    assert!(re(r"^[^\d]$").is_match("a") && !re(r"^[^\d]$").is_match("1"));
    assert!(re(r"^[\D]$").is_match("a") && !re(r"^[\D]$").is_match("1"));
    assert!(re(r"^a{2,3}$").is_match("aaa") && !re(r"^a{2,3}$").is_match("a"));
    assert!(re(r"^\u00e9\x41\/$").is_match("éA/"));
    assert!(re(r"^\u{1F600}$").is_match("😀"));
    assert!(re(r"^(?<year>\d{4})-(?:\d\d)$").is_match("2026-12"));
    assert!(re(r"^#~& -$").is_match("#~& -"));
    assert!(re(r"^[#~& ]+$").is_match("# ~&"));
    assert!(re(r"^[\b]$").is_match("\u{8}"));
    assert!(re(r"^\0$").is_match("\0"));
    assert!(
        re(r"^[a-z]+$").is_match("abc") && !re(r"^[a-z]+$").is_match("ABC"),
        "case-sensitive"
    );
}

#[test]
fn patterns_without_an_equivalent_are_refused() {
    for p in [
        r"(?=a)",
        r"(?!a)",
        r"(?<=a)b",
        r"(?<!a)b",
        r"(a)\1",
        r"\k<x>",
        r"\p{L}",
        r"\cA",
        r"\a",
        r"\z",
        r"\A",
        r"[]",
        r"[^]",
        r"[\d-z]",
        r"[z-a]",
        r"a{",
        r"a{,3}",
        r"\uD83D\uDE00",
        r"(?i)a",
        r"*",
        r"\",
        r"a{99999999}",
    ] {
        assert!(translate_pattern(p).is_err(), "{p} -> {:?}", translate_pattern(p));
    }
}

// ---------------------------------------------------------------------------
// Never a panic, never a contract the engine refuses
// ---------------------------------------------------------------------------

const KEYWORDS: &[&str] = &[
    "type",
    "properties",
    "required",
    "items",
    "enum",
    "const",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "minLength",
    "maxLength",
    "pattern",
    "minItems",
    "maxItems",
    "additionalProperties",
    "anyOf",
    "oneOf",
    "allOf",
    "not",
    "$ref",
    "$defs",
    "format",
    "default",
    "description",
    "multipleOf",
    "uniqueItems",
    "patternProperties",
    "if",
    "title",
];

const TYPES: &[&str] = &[
    "string", "integer", "number", "boolean", "array", "object", "null", "date",
];

fn arb_json() -> impl Strategy<Value = Json> {
    let leaf = prop_oneof![
        Just(Json::Null),
        any::<bool>().prop_map(Json::Bool),
        any::<i64>().prop_map(|i| json!(i)),
        (-1e6f64..1e6).prop_map(|f| json!(f)),
        prop::sample::select(TYPES).prop_map(|t| json!(t)),
        "[ -~\u{202E}\u{E0041}é\n]{0,6}".prop_map(Json::String),
        prop::sample::select(vec![
            "^a$",
            "[",
            "(?=x)",
            r"\d+",
            "#/$defs/a",
            "#",
            "#/properties/a",
            "."
        ])
        .prop_map(|s| json!(s)),
    ];
    leaf.prop_recursive(6, 64, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Json::Array),
            prop::collection::btree_map(
                prop_oneof![
                    prop::sample::select(KEYWORDS).prop_map(str::to_string),
                    "[a-z_\\-\" :]{1,5}",
                    prop::sample::select(vec!["null", "true", "yes", "a", "b"]).prop_map(str::to_string),
                ],
                inner,
                0..6
            )
            .prop_map(|m| Json::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn derive_never_panics_and_always_loads(schema in arb_json(), output in arb_json(), description in ".{0,300}") {
        let t = Tool::from_json(&json!({
            "name": "t", "description": description, "inputSchema": schema, "outputSchema": output,
        }))
        .unwrap();
        let derived = derive("s", &Catalog { tools: [("t".to_string(), t)].into() });
        prop_assert!(rein_engine::syntax::yaml::parse(&derived.yaml).is_ok(), "{}", derived.yaml);
        if let Err(e) = load(ALLOW_ALL, &derived.yaml) {
            prop_assert!(false, "{e}\n{}", derived.yaml);
        }
    }

    #[test]
    fn object_schemas_derive_and_load(properties in prop::collection::btree_map("[a-z]{1,4}", arb_json(), 0..6)) {
        let schema = json!({"type": "object", "properties": properties, "required": ["a", "b"]});
        let derived = derive("s", &Catalog { tools: [("t".to_string(), tool(schema))].into() });
        if let Err(e) = load(ALLOW_ALL, &derived.yaml) {
            prop_assert!(false, "{e}\n{}", derived.yaml);
        }
    }

    #[test]
    fn translated_patterns_compile(pattern in r"[\\\[\]()a-d0-9^$.*+?{},|&~#-]{0,12}") {
        if let Ok(t) = translate_pattern(&pattern) {
            prop_assert!(regex::Regex::new(&t).is_ok());
        }
    }
}
