//! Contracts from tools: each tool's `inputSchema` and `outputSchema`
//! (JSON Schema) become the contract of action `mcp.<server>.<tool>`,
//! written as policy YAML, with the tool's facts (`tool.server`,
//! `tool.name`, `tool.annotations`) as the action's `tool` constants.
//! What cannot be mapped is reported, never dropped in silence.
//!
//! The mapping, for the schemas MCP servers emit (draft-07 from the
//! TypeScript SDK's zod, draft 2020-12 from the Python SDK's pydantic):
//!
//! | JSON Schema | Rein |
//! |---|---|
//! | `string` (`minLength`, `maxLength`, `pattern`) | `string` (`min_len`, `max_len`, `pattern` translated to Rust `regex` with the same meaning) |
//! | `integer` / `number` (`minimum`, `maximum`) | `int` / `number` (`min`, `max`); `exclusiveMinimum`/`exclusiveMaximum` only on integers (`> 0` is `min: 1`) |
//! | `boolean` | `bool` |
//! | `enum` / `const` of strings | `enum`; of numbers or booleans: the type with `allowed` |
//! | `array` with `items` (`minItems`, `maxItems`) | `list` (`min_len`, `max_len`) |
//! | `object` with `properties` and `required` | object with `fields`; the others are `optional: true` |
//! | `object` with only `additionalProperties: <schema>` | `map` |
//! | `type: [T, "null"]`, `anyOf`/`oneOf` of `T` and `null` | `T`, optional |
//! | local `$ref` (`#/$defs/…`, `#/properties/…`), `allOf` of one schema | the schema referred to |
//!
//! Annotations (`title`, `description`, `default`, `examples`, `format`,
//! `$schema`, …) assert nothing and are left aside; keywords of no JSON
//! Schema vocabulary are ignored as validators ignore them. Every other
//! construct (`anyOf`, `oneOf`, `not`, `if`, `multipleOf`, `uniqueItems`,
//! tuples, `patternProperties`, a property name that is not a Rein field
//! name, a pattern without a Rust equivalent, a schema without a type…)
//! leaves its field out of the contract and is reported as [`Unmapped`]:
//! Rein then refuses a call that sets the field (an undeclared field), and
//! a *required* field left out makes every call refused. A policy that
//! declares the contract itself takes precedence over the derived one.
//!
//! Unknown fields never pass unseen: every derived object refuses fields
//! it does not list (Rein's `extra_fields: reject`), also where the schema
//! allows them (`additionalProperties: true`, or a schema with fields and
//! `additionalProperties: <schema>`), which is then reported. An object
//! with no `properties` that admits any field has no Rein type and is left
//! out; at the top of `inputSchema`, `{"type": "object"}` with no
//! properties is read as a tool without arguments.
//!
//! The output contract is the `outputSchema`'s fields (checked against the
//! result's `structuredContent`), or `{text: string}` for a tool without
//! one. It is derived whole or not at all: when any part of the
//! `outputSchema` cannot be mapped (a union, or the Python SDK's
//! `-> dict[str, int]`, a map at the top), the action has no output
//! contract, which is reported: results then pass as any result no rule
//! finds fault with, and a rule that reads `output` does not load.

use crate::catalog::{action_name, Catalog, Tool};
use serde_json::{Map, Value as Json};
use std::fmt::Write as _;

/// The contracts derived for one server.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Derived {
    /// Policy YAML holding only `contracts.actions` (and, when the first
    /// server, nothing else): load it as a derived source, which yields to
    /// any contract the policy declares itself.
    pub yaml: String,
    /// The actions it declares, sorted.
    pub actions: Vec<String>,
    /// What could not be mapped.
    pub unmapped: Vec<Unmapped>,
}

/// One part of a tool's schemas that has no Rein contract equivalent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unmapped {
    /// The tool.
    pub tool: String,
    /// Where: `input.path`, `output.items[]`, or empty for the whole tool.
    pub path: String,
    /// What and what follows from it, e.g. "`anyOf` is not supported; a
    /// call that sets this field is refused (declare the contract in the
    /// policy to allow it)".
    pub reason: String,
}

impl std::fmt::Display for Unmapped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.path.is_empty() {
            write!(f, "tool `{}`: {}", self.tool, self.reason)
        } else {
            write!(f, "tool `{}`: {}: {}", self.tool, self.path, self.reason)
        }
    }
}

/// Characters of a tool's description kept in its contract.
pub const DESCRIPTION_MAX_CHARS: usize = 200;

/// Deepest nesting of schemas followed (references count as a level), so
/// that a recursive or hostile schema cannot exhaust the stack; the policy
/// reader has its own bound on YAML nesting, which this keeps well under.
const MAX_DEPTH: usize = 24;

/// Most schema nodes mapped per tool: references can make a small schema
/// expand exponentially.
const MAX_NODES_PER_TOOL: usize = 5_000;

/// Most reports per tool; a hostile schema could otherwise fill the
/// report with thousands of entries.
const MAX_REPORTS_PER_TOOL: usize = 50;

/// The same size bounds as the engine puts on a policy's patterns.
const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// What to do about a contract the derived one does not cover.
const DECLARE: &str = "declare the contract in the policy to allow it";

/// What follows from any part of an `outputSchema` that cannot be mapped.
/// An output contract is derived whole or not at all: a partial one would
/// withhold every result that carries the part left out (a tool made
/// useless by the shape of its schema), while with none the results pass
/// as Rein's `after` phase lets any result pass that no rule finds fault
/// with, and a rule that reads `output` cannot load, so nothing is read
/// that was not typed.
const NO_OUTPUT_CONTRACT: &str = "the tool gets no output contract: its results are not checked against one, and \
`after` rules cannot read `output` (declare the contract in the policy to check them)";

/// The snapshot contract of the gateway's requests: the tool-use id a
/// client such as Claude Code sends (`_meta["claudecode/toolUseId"]`, one
/// attempt: left out of what an approval covers) and the client's name.
/// The gateway loads it as a derived source of its own; a policy that
/// declares its own snapshot must declare these fields (optional) for the
/// gateway's requests to pass.
pub const SNAPSHOT_CONTRACT_YAML: &str = "\
contracts:
  snapshot:
    tool_use_id: {type: string, optional: true, per_call: true}
    mcp_client: {type: string, optional: true}
";

/// Derives the contracts of every tool of `server`.
pub fn derive(server: &str, catalog: &Catalog) -> Derived {
    let mut body = String::new();
    let mut actions = Vec::new();
    let mut unmapped = Vec::new();
    for tool in catalog.tools.values() {
        let Some(action) = action_name(server, &tool.name) else {
            unmapped.push(Unmapped {
                tool: tool.name.clone(),
                path: String::new(),
                reason: format!(
                    "{} is not a valid action name (letters, digits, `_`, `-` and `.`), so the tool has no \
                     contract and every call of it is refused",
                    quote_for_text(&format!("mcp.{server}.{}", tool.name))
                ),
            });
            continue;
        };
        let (node, reports) = tool_contract(server, tool);
        let _ = writeln!(body, "    {action}:");
        for r in &reports {
            let _ = writeln!(
                body,
                "      # not mapped: {}",
                comment_text(&format!("{}: {}", r.path, r.reason))
            );
        }
        render_block_map(&node, 6, &mut body);
        actions.push(action);
        unmapped.extend(reports);
    }
    let mut yaml = format!(
        "# Contracts derived from the tools of MCP server `{}` (`rein mcp contracts`).\n\
         # A contract the policy declares for one of these actions takes precedence.\n\
         contracts:\n",
        comment_text(server)
    );
    if actions.is_empty() {
        yaml.push_str("  actions: {}\n");
    } else {
        yaml.push_str("  actions:\n");
        yaml.push_str(&body);
    }
    Derived {
        yaml,
        actions,
        unmapped,
    }
}

// ---------------------------------------------------------------------------
// One tool
// ---------------------------------------------------------------------------

/// The body of one action's contract, and what could not be mapped.
fn tool_contract(server: &str, tool: &Tool) -> (Node, Vec<Unmapped>) {
    let mut entries = Vec::new();
    if let Some(d) = tool.description() {
        entries.push(("description".to_string(), Node::Scalar(quote_yaml(&shorten(d)))));
    }
    let a = tool.annotations();
    entries.push((
        "tool".to_string(),
        Node::Map(vec![
            ("server".into(), Node::Scalar(quote_yaml(server))),
            ("name".into(), Node::Scalar(quote_yaml(&tool.name))),
            (
                "annotations".into(),
                Node::Map(vec![
                    ("title".into(), Node::Scalar(quote_yaml(&a.title))),
                    ("readOnlyHint".into(), Node::Scalar(a.read_only.to_string())),
                    ("destructiveHint".into(), Node::Scalar(a.destructive.to_string())),
                    ("idempotentHint".into(), Node::Scalar(a.idempotent.to_string())),
                    ("openWorldHint".into(), Node::Scalar(a.open_world.to_string())),
                ]),
            ),
        ]),
    ));
    let mut mapper = Mapper {
        tool: &tool.name,
        root: tool.input_schema(),
        phase: Phase::Input,
        reports: Vec::new(),
        nodes: 0,
        dropped_reports: 0,
        last_dropped: String::new(),
    };
    let input = mapper.root_fields(tool.raw.get("inputSchema"));
    entries.push(("input".into(), fields_node(&input)));
    let output = match tool.output_schema() {
        Some(schema) => {
            mapper.root = schema;
            mapper.phase = Phase::Output;
            mapper.nodes = 0;
            let before = (mapper.reports.len(), mapper.dropped_reports);
            let fields = mapper.root_fields(Some(schema));
            // Whole or not at all (see `NO_OUTPUT_CONTRACT`).
            (before == (mapper.reports.len(), mapper.dropped_reports)).then_some(fields)
        }
        // Without an outputSchema, `output` is the text of the result's
        // text content blocks (see the gateway).
        None => Some(vec![(
            "text".to_string(),
            Field {
                spec: Spec::of(Ty::String),
                optional: false,
            },
        )]),
    };
    if let Some(output) = output {
        entries.push(("output".into(), fields_node(&output)));
    }
    let mut reports = mapper.reports;
    if mapper.dropped_reports > 0 {
        // Not an empty path: that means a tool with no contract at all.
        reports.push(Unmapped {
            tool: tool.name.clone(),
            path: mapper.last_dropped.clone(),
            reason: format!(
                "and {} more parts (this one the last) could not be mapped either, with the same consequences",
                mapper.dropped_reports
            ),
        });
    }
    (Node::Map(entries), reports)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Phase {
    Input,
    Output,
}

/// How far a field left out of the contract reaches: what else is refused
/// when it is required.
#[derive(Clone, Debug)]
enum Scope {
    /// Every call (result) of the tool.
    Always,
    /// Calls that set this optional field.
    WhenSet(String),
    /// Calls where this list or map has an element.
    WhenNonEmpty(String),
}

/// Why a schema could not be mapped: where, and what.
struct Problem {
    path: String,
    what: String,
}

impl Problem {
    fn new(path: &str, what: impl Into<String>) -> Problem {
        Problem {
            path: path.to_string(),
            what: what.into(),
        }
    }
}

/// A Rein type with its constraints.
#[derive(Clone, Debug, PartialEq)]
struct Spec {
    ty: Ty,
    min: Option<Num>,
    max: Option<Num>,
    min_len: Option<u64>,
    max_len: Option<u64>,
    pattern: Option<String>,
    allowed: Option<Vec<Lit>>,
}

impl Spec {
    fn of(ty: Ty) -> Spec {
        Spec {
            ty,
            min: None,
            max: None,
            min_len: None,
            max_len: None,
            pattern: None,
            allowed: None,
        }
    }

    fn unconstrained(&self) -> bool {
        self.min.is_none()
            && self.max.is_none()
            && self.min_len.is_none()
            && self.max_len.is_none()
            && self.pattern.is_none()
            && self.allowed.is_none()
    }
}

#[derive(Clone, Debug, PartialEq)]
enum Ty {
    String,
    Int,
    Number,
    Bool,
    Enum(Vec<String>),
    List(Box<Spec>),
    Map(Box<Spec>),
    Object(Vec<(String, Field)>),
}

#[derive(Clone, Debug, PartialEq)]
struct Field {
    spec: Spec,
    optional: bool,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Num {
    Int(i64),
    Float(f64),
}

#[derive(Clone, Debug, PartialEq)]
enum Lit {
    Int(i64),
    Float(f64),
    Bool(bool),
}

/// The keywords that assert nothing (JSON Schema's meta-data, format
/// annotation, content and core vocabularies): left aside.
const ANNOTATIONS: &[&str] = &[
    "title",
    "description",
    "default",
    "examples",
    "deprecated",
    "readOnly",
    "writeOnly",
    "format",
    "contentEncoding",
    "contentMediaType",
    "contentSchema",
    "$schema",
    "$id",
    "$comment",
    "$anchor",
    "$dynamicAnchor",
    "$vocabulary",
    "$defs",
    "definitions",
];

/// Keywords that constrain a value but have no Rein equivalent (those
/// handled in some forms, such as `anyOf`, are checked where handled).
const UNSUPPORTED: &[&str] = &[
    "not",
    "if",
    "then",
    "else",
    "dependentSchemas",
    "dependentRequired",
    "dependencies",
    "prefixItems",
    "additionalItems",
    "unevaluatedItems",
    "unevaluatedProperties",
    "contains",
    "minContains",
    "maxContains",
    "minProperties",
    "maxProperties",
    "propertyNames",
    "$dynamicRef",
    "$recursiveRef",
    "$recursiveAnchor",
];

struct Mapper<'a> {
    tool: &'a str,
    /// The schema `$ref`s resolve in.
    root: &'a Json,
    phase: Phase,
    reports: Vec<Unmapped>,
    nodes: usize,
    dropped_reports: usize,
    /// Where the last report left out was.
    last_dropped: String,
}

impl<'a> Mapper<'a> {
    fn base(&self) -> &'static str {
        match self.phase {
            Phase::Input => "input",
            Phase::Output => "output",
        }
    }

    fn report(&mut self, path: &str, reason: String) {
        if self.reports.len() >= MAX_REPORTS_PER_TOOL {
            self.dropped_reports += 1;
            self.last_dropped = path.to_string();
            return;
        }
        self.reports.push(Unmapped {
            tool: self.tool.to_string(),
            path: path.to_string(),
            reason,
        });
    }

    /// What leaving `field` out of the contract means.
    fn consequence(&self, field: &str, required: bool, scope: &Scope) -> String {
        if self.phase == Phase::Output {
            return NO_OUTPUT_CONTRACT.to_string();
        }
        if !required {
            return format!("`{field}` is left out of the contract, so a call that sets it is refused ({DECLARE})");
        }
        let reach = match scope {
            Scope::Always => "every call of this tool is refused".to_string(),
            Scope::WhenSet(p) => format!("a call that sets `{p}` is refused"),
            Scope::WhenNonEmpty(p) => format!("a call with an element in `{p}` is refused"),
        };
        format!("`{field}` is required and left out of the contract, so {reach} ({DECLARE})")
    }

    /// What follows when the schema cannot be mapped as a whole.
    fn whole(&self) -> String {
        match self.phase {
            Phase::Input => format!("the input contract is empty, so a call with arguments is refused ({DECLARE})"),
            Phase::Output => NO_OUTPUT_CONTRACT.to_string(),
        }
    }

    /// The fields of `inputSchema` or `outputSchema`: always an object;
    /// what cannot be mapped of the whole leaves it empty.
    fn root_fields(&mut self, schema: Option<&'a Json>) -> Vec<(String, Field)> {
        let base = self.base();
        let refused = self.whole();
        let Some(schema) = schema.filter(|s| !s.is_null()) else {
            self.report(base, format!("the tool lists no `{base}Schema`; {refused}"));
            return Vec::new();
        };
        let resolved = match self.follow(schema, base, 0) {
            Ok(s) => s,
            Err(p) => {
                self.report(&p.path, format!("{}; {refused}", p.what));
                return Vec::new();
            }
        };
        let Some(obj) = resolved.as_object() else {
            self.report(base, format!("the schema is not a JSON object; {refused}"));
            return Vec::new();
        };
        let types = match read_types(obj, base) {
            Ok(t) => t,
            Err(p) => {
                self.report(&p.path, format!("{}; {refused}", p.what));
                return Vec::new();
            }
        };
        let unsupported = obj
            .keys()
            .find(|k| UNSUPPORTED.contains(&k.as_str()) || matches!(k.as_str(), "anyOf" | "oneOf" | "enum" | "const"));
        if let Some(key) = unsupported {
            self.report(base, format!("`{key}` is not supported here; {refused}"));
            return Vec::new();
        }
        if let Some(types) = &types {
            if !types.iter().any(|t| t == "object") {
                self.report(
                    base,
                    format!("the schema's `type` is {}, not `object`; {refused}", types.join(" or ")),
                );
                return Vec::new();
            }
        }
        match self.object(obj, base, &Scope::Always, 0, true) {
            Ok(fields) => fields,
            Err(p) => {
                self.report(&p.path, format!("{}; {refused}", p.what));
                Vec::new()
            }
        }
    }

    /// Follows `$ref` and single-schema `allOf` (with only annotations
    /// beside them) to the schema they name.
    fn follow(&self, mut schema: &'a Json, path: &str, mut depth: usize) -> Result<&'a Json, Problem> {
        loop {
            if depth > MAX_DEPTH {
                return Err(Problem::new(
                    path,
                    format!("the schema nests deeper than {MAX_DEPTH} levels (or refers to itself)"),
                ));
            }
            let Some(obj) = schema.as_object() else {
                return Ok(schema);
            };
            if let Some(r) = obj.get("$ref") {
                only_annotations_beside(obj, "$ref", path)?;
                let Some(r) = r.as_str() else {
                    return Err(Problem::new(path, "`$ref` is not a string"));
                };
                schema = resolve_ref(self.root, r).ok_or_else(|| {
                    Problem::new(
                        path,
                        format!("`$ref` {} does not name a part of this schema", quote_for_text(r)),
                    )
                })?;
            } else if let Some(all) = obj.get("allOf") {
                only_annotations_beside(obj, "allOf", path)?;
                match all.as_array().map(Vec::as_slice) {
                    Some([one]) => schema = one,
                    _ => return Err(Problem::new(path, "`allOf` of several schemas is not supported")),
                }
            } else {
                return Ok(schema);
            }
            depth += 1;
        }
    }

    /// Maps one schema; `Ok((spec, nullable))`.
    fn schema(&mut self, schema: &'a Json, path: &str, scope: &Scope, depth: usize) -> Result<(Spec, bool), Problem> {
        self.nodes += 1;
        if self.nodes > MAX_NODES_PER_TOOL {
            return Err(Problem::new(
                path,
                format!("the schema is too large (over {MAX_NODES_PER_TOOL} parts once references are followed)"),
            ));
        }
        if depth > MAX_DEPTH {
            return Err(Problem::new(
                path,
                format!("the schema nests deeper than {MAX_DEPTH} levels (or refers to itself)"),
            ));
        }
        let schema = self.follow(schema, path, depth)?;
        let obj = match schema {
            Json::Object(o) => o,
            Json::Bool(true) => {
                return Err(Problem::new(
                    path,
                    "any JSON value is allowed here, which no Rein type is",
                ))
            }
            Json::Bool(false) => return Err(Problem::new(path, "no value is allowed here (the schema is `false`)")),
            _ => return Err(Problem::new(path, "the schema is not a JSON object")),
        };
        for key in obj.keys() {
            if UNSUPPORTED.contains(&key.as_str()) {
                return Err(Problem::new(path, format!("`{key}` is not supported")));
            }
        }
        // `anyOf`/`oneOf` of a schema and `null`: pydantic's `Optional[T]`.
        for key in ["anyOf", "oneOf"] {
            if let Some(branches) = obj.get(key) {
                only_annotations_beside(obj, key, path)?;
                let Some(other) = nullable_branch(branches) else {
                    return Err(Problem::new(
                        path,
                        format!("`{key}` is not supported (except of one schema and `null`)"),
                    ));
                };
                let (spec, _) = self.schema(other, path, scope, depth + 1)?;
                return Ok((spec, true));
            }
        }
        let declared = read_types(obj, path)?;
        let mut nullable = declared.as_ref().is_some_and(|t| t.iter().any(|t| t == "null"));
        let declared: Option<Vec<String>> = declared.map(|t| t.into_iter().filter(|t| t != "null").collect());
        if declared.as_ref().is_some_and(Vec::is_empty) {
            return Err(Problem::new(path, "only `null` is allowed, which no Rein type is"));
        }
        // The values of `enum` or `const`, if any.
        let values: Option<Vec<&Json>> = match (obj.get("enum"), obj.get("const")) {
            (Some(_), Some(_)) => return Err(Problem::new(path, "`enum` beside `const` is not supported")),
            (Some(Json::Array(v)), None) => Some(v.iter().collect()),
            (Some(_), None) => return Err(Problem::new(path, "`enum` is not a list")),
            (None, Some(c)) => Some(vec![c]),
            (None, None) => None,
        };
        if let Some(values) = &values {
            if values.iter().any(|v| v.is_null()) && declared.is_none() {
                nullable = true;
            }
        }
        let ty = match &declared {
            Some(t) if t.len() == 1 => t[0].clone(),
            Some(t) if t.len() == 2 && t.iter().any(|x| x == "integer") && t.iter().any(|x| x == "number") => {
                "number".to_string()
            }
            Some(t) => {
                return Err(Problem::new(
                    path,
                    format!("a value of several types ({}) has no Rein type", t.join(", ")),
                ))
            }
            None => match &values {
                Some(values) => match enum_kind(values) {
                    Some(kind) => kind.to_string(),
                    None => return Err(Problem::new(
                        path,
                        "an `enum` or `const` mixing kinds of values (or holding lists or objects) is not supported",
                    )),
                },
                None if obj.contains_key("properties") => "object".to_string(),
                None => {
                    return Err(Problem::new(
                        path,
                        "the schema gives no `type`, so any JSON value is allowed, which no Rein type is",
                    ))
                }
            },
        };
        let spec = match ty.as_str() {
            "string" => self.string(obj, path, values.as_deref())?,
            "integer" => self.numeric(obj, path, true, values.as_deref())?,
            "number" => self.numeric(obj, path, false, values.as_deref())?,
            "boolean" => {
                let mut spec = Spec::of(Ty::Bool);
                if let Some(values) = &values {
                    let allowed: Vec<Lit> = dedup(values.iter().filter_map(|v| v.as_bool()).map(Lit::Bool).collect());
                    if allowed.is_empty() {
                        return Err(Problem::new(path, "no value of the `enum` is a boolean"));
                    }
                    spec.allowed = Some(allowed);
                }
                spec
            }
            "array" => {
                no_values(values.as_deref(), path)?;
                self.array(obj, path, depth)?
            }
            "object" => {
                no_values(values.as_deref(), path)?;
                match self.map_values(obj, path, depth)? {
                    Some(spec) => spec,
                    None => Spec::of(Ty::Object(self.object(obj, path, scope, depth, false)?)),
                }
            }
            "null" => return Err(Problem::new(path, "only `null` is allowed, which no Rein type is")),
            other => {
                return Err(Problem::new(
                    path,
                    format!("the type {} is not a JSON Schema type", quote_for_text(other)),
                ))
            }
        };
        // A schema no value fits: the policy loader would refuse the
        // contract (and with it every derived contract of the server).
        if let (Some(lo), Some(hi)) = (spec.min, spec.max) {
            if cmp_num(lo, hi) == std::cmp::Ordering::Greater {
                return Err(Problem::new(
                    path,
                    "no value fits: the lower bound is above the upper bound",
                ));
            }
        }
        if let (Some(lo), Some(hi)) = (spec.min_len, spec.max_len) {
            if lo > hi {
                return Err(Problem::new(
                    path,
                    "no value fits: the least length is above the greatest",
                ));
            }
        }
        Ok((spec, nullable))
    }

    fn string(&mut self, obj: &Map<String, Json>, path: &str, values: Option<&[&Json]>) -> Result<Spec, Problem> {
        let mut spec = match values {
            Some(values) => {
                let strings: Vec<String> =
                    dedup(values.iter().filter_map(|v| v.as_str()).map(str::to_string).collect());
                if strings.is_empty() {
                    return Err(Problem::new(path, "no value of the `enum` is a string"));
                }
                Spec::of(Ty::Enum(strings))
            }
            None => Spec::of(Ty::String),
        };
        spec.min_len = length(obj, "minLength", path)?;
        spec.max_len = length(obj, "maxLength", path)?;
        if let Some(p) = obj.get("pattern") {
            let Some(p) = p.as_str() else {
                return Err(Problem::new(path, "`pattern` is not a string"));
            };
            let translated = translate_pattern(p).map_err(|why| {
                Problem::new(
                    path,
                    format!(
                        "the pattern {} has no Rust `regex` equivalent: {why}",
                        quote_for_text(p)
                    ),
                )
            })?;
            spec.pattern = Some(translated);
        }
        Ok(spec)
    }

    fn numeric(
        &mut self,
        obj: &Map<String, Json>,
        path: &str,
        integer: bool,
        values: Option<&[&Json]>,
    ) -> Result<Spec, Problem> {
        let mut spec = Spec::of(if integer { Ty::Int } else { Ty::Number });
        if let Some(values) = values {
            let allowed: Vec<Lit> = dedup(
                values
                    .iter()
                    .filter_map(|v| v.as_number())
                    .filter_map(|n| match whole(n) {
                        Some(i) => Some(Lit::Int(i)),
                        None if integer => None,
                        None => n.as_f64().map(Lit::Float),
                    })
                    .collect(),
            );
            if allowed.is_empty() {
                return Err(Problem::new(path, "no value of the `enum` is a number of this type"));
            }
            spec.allowed = Some(allowed);
        }
        if let Some(m) = obj.get("multipleOf") {
            // `multipleOf: 1` on an integer says nothing more.
            if !(integer && m.as_number().and_then(whole) == Some(1)) {
                return Err(Problem::new(path, "`multipleOf` is not supported"));
            }
        }
        spec.min = bound(obj, "minimum", path)?;
        spec.max = bound(obj, "maximum", path)?;
        for (key, lower) in [("exclusiveMinimum", true), ("exclusiveMaximum", false)] {
            let Some(x) = obj.get(key) else { continue };
            // Draft 4 wrote `exclusiveMinimum: true` beside `minimum`.
            let limit = match x {
                Json::Bool(false) => continue,
                Json::Bool(true) => match if lower { spec.min } else { spec.max } {
                    Some(b) => b,
                    None => continue,
                },
                Json::Number(n) => num(n).ok_or_else(|| Problem::new(path, format!("`{key}` is not a number")))?,
                _ => return Err(Problem::new(path, format!("`{key}` is not a number"))),
            };
            if !integer {
                return Err(Problem::new(
                    path,
                    format!("`{key}` on a number is not supported (Rein's `min` and `max` include the bound)"),
                ));
            }
            // The first integer past the bound.
            let Some(inclusive) = next_int(limit, lower) else {
                return Err(Problem::new(path, format!("`{key}` leaves no 64-bit integer")));
            };
            let slot = if lower { &mut spec.min } else { &mut spec.max };
            let tighter = match *slot {
                None => true,
                Some(old) => {
                    let old = num_f64(old);
                    if lower {
                        inclusive as f64 >= old
                    } else {
                        inclusive as f64 <= old
                    }
                }
            };
            if tighter || matches!(x, Json::Bool(true)) {
                *slot = Some(Num::Int(inclusive));
            }
        }
        Ok(spec)
    }

    fn array(&mut self, obj: &'a Map<String, Json>, path: &str, depth: usize) -> Result<Spec, Problem> {
        if obj.get("uniqueItems").is_some_and(|u| u != &Json::Bool(false)) {
            return Err(Problem::new(path, "`uniqueItems` is not supported"));
        }
        let item_path = format!("{path}[]");
        let item = match obj.get("items") {
            None => return Err(Problem::new(path, "a list without `items`: elements of any type")),
            Some(Json::Array(_)) => return Err(Problem::new(path, "a tuple (`items` as a list) is not supported")),
            Some(items) => {
                let (item, nullable) =
                    self.schema(items, &item_path, &Scope::WhenNonEmpty(path.to_string()), depth + 1)?;
                if nullable {
                    return Err(Problem::new(
                        &item_path,
                        "elements that may be `null` are not supported",
                    ));
                }
                item
            }
        };
        let mut spec = Spec::of(Ty::List(Box::new(item)));
        spec.min_len = length(obj, "minItems", path)?;
        spec.max_len = length(obj, "maxItems", path)?;
        Ok(spec)
    }

    /// An object with no `properties` and `additionalProperties: <schema>`
    /// is a map; `None` when the object is not one.
    fn map_values(&mut self, obj: &'a Map<String, Json>, path: &str, depth: usize) -> Result<Option<Spec>, Problem> {
        if obj.contains_key("properties") || obj.contains_key("patternProperties") {
            return Ok(None);
        }
        let Some(values) = obj.get("additionalProperties") else {
            return Ok(None);
        };
        if values.is_boolean() || values.as_object().is_some_and(Map::is_empty) {
            return Ok(None);
        }
        let item_path = format!("{path}[]");
        let (item, nullable) = self.schema(values, &item_path, &Scope::WhenNonEmpty(path.to_string()), depth + 1)?;
        if nullable {
            return Err(Problem::new(&item_path, "values that may be `null` are not supported"));
        }
        let spec = Spec::of(Ty::Map(Box::new(item)));
        if let Some(r) = obj.get("required") {
            if r.as_array().is_some_and(|r| !r.is_empty()) {
                return Err(Problem::new(path, "a map with `required` keys is not supported"));
            }
        }
        Ok(Some(spec))
    }

    /// The fields of an object schema. Properties that cannot be mapped
    /// are left out and reported here; an object that cannot be mapped as
    /// a whole is an error.
    fn object(
        &mut self,
        obj: &'a Map<String, Json>,
        path: &str,
        scope: &Scope,
        depth: usize,
        root: bool,
    ) -> Result<Vec<(String, Field)>, Problem> {
        let properties = match obj.get("properties") {
            None => None,
            Some(Json::Object(p)) => Some(p),
            Some(_) => return Err(Problem::new(path, "`properties` is not an object")),
        };
        let required: Vec<&str> = match obj.get("required") {
            None => Vec::new(),
            Some(Json::Array(r)) => {
                let names: Option<Vec<&str>> = r.iter().map(Json::as_str).collect();
                names.ok_or_else(|| Problem::new(path, "`required` is not a list of names"))?
            }
            Some(_) => return Err(Problem::new(path, "`required` is not a list of names")),
        };
        let extra = obj.get("additionalProperties");
        let open = match extra {
            None | Some(Json::Bool(false)) => false,
            Some(Json::Object(o)) if o.get("not").is_some_and(|n| n.as_object().is_some_and(Map::is_empty)) => false,
            Some(_) => true,
        } || obj.contains_key("patternProperties");
        let Some(properties) = properties else {
            if !root {
                // Only `additionalProperties: false` says which fields: none.
                if open || extra.is_none() {
                    return Err(Problem::new(
                        path,
                        "an object whose fields the schema does not list has no Rein type",
                    ));
                }
            } else if open {
                let whole = self.whole();
                self.report(
                    path,
                    format!("the schema lists no fields but allows any (`additionalProperties`); {whole}"),
                );
            }
            for name in required {
                let at = child_path(path, name);
                let consequence = self.consequence(&at, true, scope);
                self.report(&at, format!("required by the schema but not described; {consequence}"));
            }
            return Ok(Vec::new());
        };
        if open {
            let what = "the schema allows fields it does not list (`additionalProperties` or `patternProperties`)";
            let consequence = match self.phase {
                Phase::Input => format!("Rein refuses them, so a call that sets one is refused ({DECLARE})"),
                Phase::Output => NO_OUTPUT_CONTRACT.to_string(),
            };
            self.report(path, format!("{what}; {consequence}"));
        }
        let mut names: Vec<&String> = properties.keys().collect();
        names.sort();
        let mut fields = Vec::with_capacity(names.len());
        for name in names {
            let prop = &properties[name.as_str()];
            let at = child_path(path, name);
            let is_required = required.contains(&name.as_str());
            if !valid_field_name(name) {
                let consequence = self.consequence(&at, is_required, scope);
                self.report(
                    &at,
                    format!("the property name is not a Rein field name (`[A-Za-z_][A-Za-z0-9_]*`); {consequence}"),
                );
                continue;
            }
            let inner = if is_required {
                scope.clone()
            } else {
                Scope::WhenSet(at.clone())
            };
            match self.schema(prop, &at, &inner, depth + 1) {
                Ok((spec, nullable)) => fields.push((
                    name.clone(),
                    Field {
                        spec,
                        optional: !is_required || nullable,
                    },
                )),
                Err(p) => {
                    let consequence = self.consequence(&at, is_required, scope);
                    self.report(&p.path, format!("{}; {consequence}", p.what));
                }
            }
        }
        let mut seen = Vec::new();
        for name in required {
            if properties.contains_key(name) || seen.contains(&name) {
                continue;
            }
            seen.push(name);
            let at = child_path(path, name);
            let consequence = self.consequence(&at, true, scope);
            self.report(&at, format!("required by the schema but not described; {consequence}"));
        }
        Ok(fields)
    }
}

/// `type` as a list of names; `None` when absent.
fn read_types(obj: &Map<String, Json>, path: &str) -> Result<Option<Vec<String>>, Problem> {
    match obj.get("type") {
        None => Ok(None),
        Some(Json::String(t)) => Ok(Some(vec![t.clone()])),
        Some(Json::Array(ts)) => {
            let mut out = Vec::new();
            for t in ts {
                let Some(t) = t.as_str() else {
                    return Err(Problem::new(path, "`type` holds something other than a type name"));
                };
                if !out.iter().any(|o| o == t) {
                    out.push(t.to_string());
                }
            }
            Ok(Some(out))
        }
        Some(_) => Err(Problem::new(path, "`type` is neither a name nor a list of names")),
    }
}

/// The non-null branch of `[T, {"type": "null"}]` (either order).
fn nullable_branch(branches: &Json) -> Option<&Json> {
    let [a, b] = branches.as_array()?.as_slice() else {
        return None;
    };
    let is_null = |s: &Json| {
        s.as_object().is_some_and(|o| {
            o.get("type") == Some(&Json::String("null".into()))
                && o.keys().all(|k| k == "type" || ANNOTATIONS.contains(&k.as_str()))
        })
    };
    match (is_null(a), is_null(b)) {
        (false, true) => Some(a),
        (true, false) => Some(b),
        _ => None,
    }
}

/// Refuses assertion keywords beside one that replaces the schema
/// (`$ref`, `allOf`, `anyOf`), whose meaning would add up.
fn only_annotations_beside(obj: &Map<String, Json>, key: &str, path: &str) -> Result<(), Problem> {
    match obj
        .keys()
        .find(|k| k.as_str() != key && !ANNOTATIONS.contains(&k.as_str()))
    {
        None => Ok(()),
        Some(other) => Err(Problem::new(path, format!("`{key}` beside `{other}` is not supported"))),
    }
}

/// Resolves a reference inside the same schema (`#`, `#/$defs/x`).
fn resolve_ref<'a>(root: &'a Json, reference: &str) -> Option<&'a Json> {
    let pointer = reference.strip_prefix('#')?;
    let decoded = percent_decode(pointer)?;
    if decoded.is_empty() {
        return Some(root);
    }
    root.pointer(&decoded)
}

fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = text.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// `"string"`, `"integer"`… for the values of an `enum` without `type`.
fn enum_kind(values: &[&Json]) -> Option<&'static str> {
    let mut kind = None;
    for v in values {
        let k = match v {
            Json::Null => continue,
            Json::String(_) => "string",
            Json::Bool(_) => "boolean",
            Json::Number(n) if whole(n).is_some() => "integer",
            Json::Number(_) => "number",
            _ => return None,
        };
        kind = match (kind, k) {
            (None, k) => Some(k),
            (Some(a), b) if a == b => Some(a),
            (Some("integer" | "number"), "integer" | "number") => Some("number"),
            _ => return None,
        };
    }
    kind
}

fn no_values(values: Option<&[&Json]>, path: &str) -> Result<(), Problem> {
    match values {
        None => Ok(()),
        Some(_) => Err(Problem::new(
            path,
            "an `enum` or `const` of lists or objects is not supported",
        )),
    }
}

fn dedup<T: PartialEq>(items: Vec<T>) -> Vec<T> {
    let mut out: Vec<T> = Vec::with_capacity(items.len());
    for item in items {
        if !out.contains(&item) {
            out.push(item);
        }
    }
    out
}

/// A whole number that fits in 64 bits (`3` or `3.0`).
fn whole(n: &serde_json::Number) -> Option<i64> {
    if let Some(i) = n.as_i64() {
        return Some(i);
    }
    let f = n.as_f64()?;
    // Below 2^53 a double holds every integer exactly.
    (f.fract() == 0.0 && f.abs() < 9_007_199_254_740_992.0).then_some(f as i64)
}

fn num(n: &serde_json::Number) -> Option<Num> {
    match n.as_i64() {
        Some(i) => Some(Num::Int(i)),
        None => n.as_f64().filter(|f| f.is_finite()).map(Num::Float),
    }
}

/// Compares two bounds exactly, as the policy loader does (an `i64` and
/// an `f64` are not both rounded to doubles).
fn cmp_num(a: Num, b: Num) -> std::cmp::Ordering {
    use std::cmp::Ordering;
    let int_float = |i: i64, f: f64| -> Ordering {
        match (i as f64).partial_cmp(&f) {
            // Equal as doubles: `f` is whole and within 2^63, so exact.
            Some(Ordering::Equal) => i128::from(i).cmp(&(f as i128)),
            Some(o) => o,
            None => Ordering::Equal,
        }
    };
    match (a, b) {
        (Num::Int(x), Num::Int(y)) => x.cmp(&y),
        (Num::Float(x), Num::Float(y)) => x.partial_cmp(&y).unwrap_or(Ordering::Equal),
        (Num::Int(x), Num::Float(y)) => int_float(x, y),
        (Num::Float(x), Num::Int(y)) => int_float(y, x).reverse(),
    }
}

fn num_f64(n: Num) -> f64 {
    match n {
        Num::Int(i) => i as f64,
        Num::Float(f) => f,
    }
}

/// The first integer above (`lower`) or below a bound, if an `i64`.
fn next_int(limit: Num, lower: bool) -> Option<i64> {
    match limit {
        Num::Int(i) if lower => i.checked_add(1),
        Num::Int(i) => i.checked_sub(1),
        Num::Float(f) => {
            let n = if lower { f.floor() + 1.0 } else { f.ceil() - 1.0 };
            (n.is_finite() && n.abs() < 9_007_199_254_740_992.0).then_some(n as i64)
        }
    }
}

fn bound(obj: &Map<String, Json>, key: &str, path: &str) -> Result<Option<Num>, Problem> {
    match obj.get(key) {
        None => Ok(None),
        Some(Json::Number(n)) => match num(n) {
            Some(n) => Ok(Some(n)),
            None => Err(Problem::new(path, format!("`{key}` is not a number"))),
        },
        Some(_) => Err(Problem::new(path, format!("`{key}` is not a number"))),
    }
}

fn length(obj: &Map<String, Json>, key: &str, path: &str) -> Result<Option<u64>, Problem> {
    match obj.get(key) {
        None => Ok(None),
        Some(Json::Number(n)) => match whole(n) {
            Some(i) if i >= 0 => Ok(Some(i as u64)),
            _ => Err(Problem::new(
                path,
                format!("`{key}` is not a whole number of at least 0"),
            )),
        },
        Some(_) => Err(Problem::new(
            path,
            format!("`{key}` is not a whole number of at least 0"),
        )),
    }
}

/// Whether a property name can be a Rein field (`input.name` in rules).
fn valid_field_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// `input.a`, or `input["a-b"]` for a name that is not a field name.
fn child_path(path: &str, name: &str) -> String {
    if valid_field_name(name) {
        format!("{path}.{name}")
    } else {
        format!("{path}[{}]", quote_for_text(name))
    }
}

// ---------------------------------------------------------------------------
// Patterns: ECMA-262 (JSON Schema's dialect) to Rust `regex`
// ---------------------------------------------------------------------------

/// JavaScript's `\s`: its WhiteSpace and LineTerminator characters.
const JS_SPACE: &str =
    r"\t\n\x0B\x0C\r \u{A0}\u{1680}\u{2000}-\u{200A}\u{2028}\u{2029}\u{202F}\u{205F}\u{3000}\u{FEFF}";

/// Translates a JSON Schema pattern into a Rust regex that matches the
/// same strings, or says why it cannot. The two dialects differ where a
/// literal copy would silently change the meaning: Rust's `\d`, `\w`, `\b`
/// are Unicode-aware and JavaScript's ASCII, Rust's `.` matches `\r`, Rust
/// classes nest and know `&&`, `--`, `~~`; so classes and escapes are
/// rewritten, and what is not known to mean the same is refused
/// (look-around and back-references, which Rust lacks, included).
pub fn translate_pattern(pattern: &str) -> Result<String, String> {
    let chars: Vec<char> = pattern.chars().collect();
    let mut out = String::with_capacity(pattern.len() + 16);
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        i += 1;
        match c {
            '\\' => {
                let (text, next) = escape(&chars, i, false)?;
                out.push_str(&text);
                i = next;
            }
            '.' => out.push_str(r"[^\n\r\u{2028}\u{2029}]"),
            '[' => {
                let (text, next) = class(&chars, i)?;
                out.push_str(&text);
                i = next;
            }
            '(' => {
                if chars.get(i) == Some(&'?') {
                    match (chars.get(i + 1), chars.get(i + 2)) {
                        (Some(':'), _) => {
                            out.push_str("(?:");
                            i += 2;
                        }
                        (Some('<'), Some(c)) if *c != '=' && *c != '!' => {
                            let end = chars[i + 2..]
                                .iter()
                                .position(|c| *c == '>')
                                .ok_or("a group name without its `>`")?;
                            let name: String = chars[i + 2..i + 2 + end].iter().collect();
                            let ok = name.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
                            if !ok {
                                return Err(format!("the group name `{name}`"));
                            }
                            out.push_str("(?P<");
                            out.push_str(&name);
                            out.push('>');
                            i += 3 + end;
                        }
                        _ => return Err("look-around (`(?=`, `(?!`, `(?<=`, `(?<!`) is not supported".into()),
                    }
                } else {
                    out.push('(');
                }
            }
            '{' => {
                let end = chars[i..].iter().position(|c| *c == '}').map(|p| i + p);
                let body: Option<String> = end.map(|e| chars[i..e].iter().collect());
                let quantifier = body.as_deref().is_some_and(|b| {
                    let mut parts = b.splitn(2, ',');
                    let low = parts.next().unwrap_or_default();
                    !low.is_empty()
                        && low.bytes().all(|b| b.is_ascii_digit())
                        && parts.next().is_none_or(|h| h.bytes().all(|b| b.is_ascii_digit()))
                });
                match (quantifier, end, body) {
                    (true, Some(e), Some(b)) => {
                        out.push('{');
                        out.push_str(&b);
                        out.push('}');
                        i = e + 1;
                    }
                    _ => return Err("a `{` that is not a repetition".into()),
                }
            }
            '}' => out.push_str(r"\}"),
            ']' => out.push_str(r"\]"),
            ')' | '|' | '*' | '+' | '?' | '^' | '$' => out.push(c),
            c if c.is_control() => {
                let _ = write!(out, r"\x{{{:X}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    regex::RegexBuilder::new(&out)
        .size_limit(REGEX_SIZE_LIMIT)
        .dfa_size_limit(REGEX_SIZE_LIMIT)
        .build()
        .map_err(|e| match e {
            regex::Error::CompiledTooBig(_) => "it is too large".to_string(),
            other => {
                let text = other.to_string();
                let last = text.lines().last().unwrap_or("invalid syntax").trim();
                last.strip_prefix("error: ").unwrap_or(last).to_string()
            }
        })?;
    Ok(out)
}

/// One escape after its `\` at `i`: its Rust text and where it ends.
/// Inside a class, class escapes become ranges to splice in.
fn escape(chars: &[char], i: usize, in_class: bool) -> Result<(String, usize), String> {
    let Some(&c) = chars.get(i) else {
        return Err("a `\\` at the end".into());
    };
    let class_of = |set: &str, negated: bool| match (in_class, negated) {
        (true, false) => set.to_string(),
        (_, true) => format!("[^{set}]"),
        (false, false) => format!("[{set}]"),
    };
    let text = match c {
        'd' => class_of("0-9", false),
        'D' => class_of("0-9", true),
        'w' => class_of("0-9A-Za-z_", false),
        'W' => class_of("0-9A-Za-z_", true),
        's' => class_of(JS_SPACE, false),
        'S' => class_of(JS_SPACE, true),
        'b' if in_class => r"\x08".to_string(),
        'b' => r"(?-u:\b)".to_string(),
        'B' if !in_class => r"(?-u:\B)".to_string(),
        't' | 'n' | 'r' | 'f' | 'v' => format!("\\{c}"),
        '0' if !chars.get(i + 1).is_some_and(char::is_ascii_digit) => r"\x00".to_string(),
        'x' => {
            let hex: String = chars.get(i + 1..i + 3).ok_or("a short `\\x` escape")?.iter().collect();
            if !hex.chars().all(|c| c.is_ascii_hexdigit()) {
                return Err(format!("the escape `\\x{hex}`"));
            }
            return Ok((format!(r"\x{{{hex}}}"), i + 3));
        }
        'u' => {
            if chars.get(i + 1) == Some(&'{') {
                let end = chars[i + 2..]
                    .iter()
                    .position(|c| *c == '}')
                    .ok_or("an unclosed `\\u{`")?;
                let hex: String = chars[i + 2..i + 2 + end].iter().collect();
                let code = u32::from_str_radix(&hex, 16).map_err(|_| format!("the escape `\\u{{{hex}}}`"))?;
                char::from_u32(code).ok_or_else(|| format!("the escape `\\u{{{hex}}}`"))?;
                return Ok((format!(r"\x{{{code:X}}}"), i + 3 + end));
            }
            let hex: String = chars.get(i + 1..i + 5).ok_or("a short `\\u` escape")?.iter().collect();
            let code = u32::from_str_radix(&hex, 16).map_err(|_| format!("the escape `\\u{hex}`"))?;
            // A lone surrogate (half of a pair) is not a character.
            char::from_u32(code).ok_or_else(|| format!("the surrogate escape `\\u{hex}`"))?;
            return Ok((format!(r"\x{{{code:X}}}"), i + 5));
        }
        '^' | '$' | '\\' | '.' | '*' | '+' | '?' | '(' | ')' | '[' | ']' | '{' | '}' | '|' | '-' => {
            format!("\\{c}")
        }
        '/' => "/".to_string(),
        '1'..='9' => return Err("back-references are not supported".into()),
        'p' | 'P' => return Err("Unicode property escapes are not supported".into()),
        'k' => return Err("named back-references are not supported".into()),
        'c' => return Err("control escapes (`\\c`) are not supported".into()),
        other => return Err(format!("the escape `\\{other}`")),
    };
    Ok((text, i + 1))
}

/// One class after its `[` at `i`: its Rust text and where it ends.
fn class(chars: &[char], mut i: usize) -> Result<(String, usize), String> {
    enum Item {
        Char(char),
        Set(String),
        Dash,
    }
    let negated = chars.get(i) == Some(&'^');
    if negated {
        i += 1;
    }
    let mut items = Vec::new();
    loop {
        let Some(&c) = chars.get(i) else {
            return Err("a `[` without its `]`".into());
        };
        i += 1;
        match c {
            ']' => break,
            '\\' => {
                let (text, next) = escape(chars, i, true)?;
                let single = match chars[i] {
                    'b' => Some('\u{8}'),
                    't' => Some('\t'),
                    'n' => Some('\n'),
                    'r' => Some('\r'),
                    'f' => Some('\u{C}'),
                    'v' => Some('\u{B}'),
                    '0' => Some('\0'),
                    'x' | 'u' => {
                        let hex: String = text.trim_start_matches(r"\x{").trim_end_matches('}').to_string();
                        u32::from_str_radix(&hex, 16).ok().and_then(char::from_u32)
                    }
                    'd' | 'D' | 'w' | 'W' | 's' | 'S' => None,
                    other => Some(other),
                };
                items.push(match single {
                    Some(ch) => Item::Char(ch),
                    None => Item::Set(text),
                });
                i = next;
            }
            '-' => items.push(Item::Dash),
            c => items.push(Item::Char(c)),
        }
    }
    if items.is_empty() {
        // `[]` matches nothing and `[^]` anything in JavaScript.
        return Err("an empty class (`[]` or `[^]`)".into());
    }
    let lit = |c: char| -> String {
        if matches!(c, '\\' | ']' | '[' | '-' | '^' | '&' | '~') {
            format!("\\{c}")
        } else if c.is_control() {
            format!(r"\x{{{:X}}}", c as u32)
        } else {
            c.to_string()
        }
    };
    let mut out = String::from(if negated { "[^" } else { "[" });
    let mut k = 0;
    while k < items.len() {
        match (&items[k], items.get(k + 1), items.get(k + 2)) {
            (Item::Char(a), Some(Item::Dash), Some(Item::Char(b))) => {
                if a > b {
                    return Err(format!("the range `{a}-{b}` is out of order"));
                }
                out.push_str(&lit(*a));
                out.push('-');
                out.push_str(&lit(*b));
                k += 3;
            }
            (Item::Set(_), Some(Item::Dash), Some(_)) | (_, Some(Item::Dash), Some(Item::Set(_))) => {
                return Err("a range with a class escape (`[\\d-x]`) is not supported".into());
            }
            (Item::Char(a), _, _) => {
                out.push_str(&lit(*a));
                k += 1;
            }
            (Item::Set(s), _, _) => {
                out.push_str(s);
                k += 1;
            }
            (Item::Dash, _, _) => {
                out.push_str(r"\-");
                k += 1;
            }
        }
    }
    out.push(']');
    Ok((out, i))
}

// ---------------------------------------------------------------------------
// YAML
// ---------------------------------------------------------------------------

/// A YAML value as written: scalars already in their final text.
#[derive(Clone, Debug)]
enum Node {
    Scalar(String),
    Map(Vec<(String, Node)>),
    Seq(Vec<Node>),
}

/// Longest line of a collection written inline (`{type: int, min: 0}`).
const FLOW_WIDTH: usize = 140;

fn fields_node(fields: &[(String, Field)]) -> Node {
    Node::Map(
        fields
            .iter()
            .map(|(name, f)| (yaml_key(name), spec_node(&f.spec, f.optional)))
            .collect(),
    )
}

/// A field's (or an element's) type: the shorthand (`string`, `int?`,
/// `list<string>`) when it has no constraints, else the long form.
fn spec_node(spec: &Spec, optional: bool) -> Node {
    if let Some(short) = shorthand(spec) {
        return Node::Scalar(if optional { format!("{short}?") } else { short });
    }
    let type_name = match &spec.ty {
        Ty::String => "string".to_string(),
        Ty::Int => "int".to_string(),
        Ty::Number => "number".to_string(),
        Ty::Bool => "bool".to_string(),
        Ty::Enum(_) => "enum".to_string(),
        Ty::List(_) => "list".to_string(),
        Ty::Map(_) => "map".to_string(),
        Ty::Object(_) => "object".to_string(),
    };
    let mut m = vec![("type".to_string(), Node::Scalar(type_name))];
    if optional {
        m.push(("optional".into(), Node::Scalar("true".into())));
    }
    for (key, value) in [("min", spec.min), ("max", spec.max)] {
        if let Some(v) = value {
            m.push((key.into(), Node::Scalar(num_text(v))));
        }
    }
    for (key, value) in [("min_len", spec.min_len), ("max_len", spec.max_len)] {
        if let Some(v) = value {
            m.push((key.into(), Node::Scalar(v.to_string())));
        }
    }
    if let Some(p) = &spec.pattern {
        m.push(("pattern".into(), Node::Scalar(quote_yaml(p))));
    }
    if let Some(allowed) = &spec.allowed {
        let values = allowed
            .iter()
            .map(|l| {
                Node::Scalar(match l {
                    Lit::Int(i) => i.to_string(),
                    Lit::Float(f) => num_text(Num::Float(*f)),
                    Lit::Bool(b) => b.to_string(),
                })
            })
            .collect();
        m.push(("allowed".into(), Node::Seq(values)));
    }
    match &spec.ty {
        Ty::Enum(values) => m.push((
            "values".into(),
            Node::Seq(values.iter().map(|v| Node::Scalar(quote_yaml(v))).collect()),
        )),
        Ty::List(item) | Ty::Map(item) => m.push(("items".into(), spec_node(item, false))),
        Ty::Object(fields) if !fields.is_empty() => m.push(("fields".into(), fields_node(fields))),
        _ => {}
    }
    Node::Map(m)
}

fn shorthand(spec: &Spec) -> Option<String> {
    shorthand_within(spec, SHORTHAND_DEPTH)
}

/// Deepest `list<list<…>>` written short; the policy reader takes 16, and
/// deeper ones read better long anyway.
const SHORTHAND_DEPTH: usize = 4;

fn shorthand_within(spec: &Spec, depth: usize) -> Option<String> {
    if !spec.unconstrained() || depth == 0 {
        return None;
    }
    Some(match &spec.ty {
        Ty::String => "string".into(),
        Ty::Int => "int".into(),
        Ty::Number => "number".into(),
        Ty::Bool => "bool".into(),
        Ty::List(item) => format!("list<{}>", shorthand_within(item, depth - 1)?),
        Ty::Map(item) => format!("map<{}>", shorthand_within(item, depth - 1)?),
        Ty::Enum(_) | Ty::Object(_) => return None,
    })
}

fn num_text(n: Num) -> String {
    match n {
        Num::Int(i) => i.to_string(),
        // `{:?}` keeps the exponent (`1e30`) and a `.0` on whole numbers,
        // both read back as a float by YAML's core schema.
        Num::Float(f) => format!("{f:?}"),
    }
}

/// The inline form of a collection of scalars, if short enough.
fn flow(node: &Node) -> Option<String> {
    let text = match node {
        Node::Scalar(s) => return Some(s.clone()),
        Node::Map(entries) if entries.is_empty() => "{}".to_string(),
        Node::Seq(items) if items.is_empty() => "[]".to_string(),
        Node::Map(entries) => {
            let mut parts = Vec::with_capacity(entries.len());
            for (k, v) in entries {
                let v = match v {
                    Node::Scalar(s) => s.clone(),
                    Node::Seq(_) => flow(v)?,
                    Node::Map(_) => return None,
                };
                parts.push(format!("{k}: {v}"));
            }
            format!("{{{}}}", parts.join(", "))
        }
        Node::Seq(items) => {
            let mut parts = Vec::with_capacity(items.len());
            for item in items {
                match item {
                    Node::Scalar(s) => parts.push(s.clone()),
                    _ => return None,
                }
            }
            format!("[{}]", parts.join(", "))
        }
    };
    (text.len() <= FLOW_WIDTH).then_some(text)
}

/// Writes the entries of a mapping, block style, at `indent`.
fn render_block_map(node: &Node, indent: usize, out: &mut String) {
    let Node::Map(entries) = node else {
        return;
    };
    let pad = " ".repeat(indent);
    for (key, value) in entries {
        match flow(value) {
            Some(text) => {
                let _ = writeln!(out, "{pad}{key}: {text}");
            }
            None => {
                let _ = writeln!(out, "{pad}{key}:");
                render_block(value, indent + 2, out);
            }
        }
    }
}

fn render_block(node: &Node, indent: usize, out: &mut String) {
    match node {
        Node::Map(_) => render_block_map(node, indent, out),
        Node::Seq(items) => {
            let pad = " ".repeat(indent);
            for item in items {
                match flow(item) {
                    Some(text) => {
                        let _ = writeln!(out, "{pad}- {text}");
                    }
                    None => {
                        let _ = writeln!(out, "{pad}-");
                        render_block(item, indent + 2, out);
                    }
                }
            }
        }
        Node::Scalar(s) => {
            let _ = writeln!(out, "{}{s}", " ".repeat(indent));
        }
    }
}

/// A field name as a key: quoted where YAML (1.2, or 1.1 as other tools
/// read it) would take it for something other than a string.
fn yaml_key(name: &str) -> String {
    let special = matches!(
        name.to_ascii_lowercase().as_str(),
        "null" | "true" | "false" | "yes" | "no" | "on" | "off" | "y" | "n"
    );
    if special {
        quote_yaml(name)
    } else {
        name.to_string()
    }
}

/// Characters written as escapes: controls, and the invisible or
/// reordering ones a description could hide text with (bidirectional
/// overrides, zero-width characters, Unicode tags).
fn needs_escape(c: char) -> bool {
    let u = c as u32;
    c.is_control()
        || matches!(u,
            0xAD | 0x34F | 0x61C | 0x115F | 0x1160 | 0x17B4 | 0x17B5 | 0x180B..=0x180F
            | 0x200B..=0x200F | 0x2028..=0x202E | 0x2060..=0x206F | 0x3164 | 0xFE00..=0xFE0F
            | 0xFEFF | 0xFFA0 | 0xFFF0..=0xFFFB | 0xFFFE | 0xFFFF | 0x1D173..=0x1D17A
            | 0xE0000..=0xE0FFF)
}

/// A YAML double-quoted scalar, with every escape YAML defines.
fn quote_yaml(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if needs_escape(c) => {
                let u = c as u32;
                let _ = if u <= 0xFF {
                    write!(out, "\\x{u:02X}")
                } else if u <= 0xFFFF {
                    write!(out, "\\u{u:04X}")
                } else {
                    write!(out, "\\U{u:08X}")
                };
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A name quoted for a message (JSON string syntax).
fn quote_for_text(text: &str) -> String {
    serde_json::to_string(text).unwrap_or_default()
}

/// Text for one comment line: no line breaks, nothing invisible.
fn comment_text(text: &str) -> String {
    let quoted = quote_yaml(text);
    quoted[1..quoted.len() - 1].to_string()
}

/// A description on one line, at most [`DESCRIPTION_MAX_CHARS`].
fn shorten(text: &str) -> String {
    let one_line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if one_line.chars().count() <= DESCRIPTION_MAX_CHARS {
        return one_line;
    }
    let mut cut: String = one_line.chars().take(DESCRIPTION_MAX_CHARS - 1).collect();
    cut.truncate(cut.trim_end().len());
    cut.push('…');
    cut
}

#[cfg(test)]
mod tests;
