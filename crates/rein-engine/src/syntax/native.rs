//! Reads Rein's native policy format (YAML) into the untyped [`crate::ast`].
//!
//! Every key is checked: an unknown key, a wrong kind of value or a bad
//! name is a diagnostic with its span, and reading goes on so that one pass
//! reports everything wrong with a file.

use crate::ast::{
    ActionContractAst, ApprovalAst, Combining, ConstAst, ConstFields, ConstraintsAst, ContractsAst, Effect, Expr,
    ExprKind, ExtraFields, FieldAst, FieldsAst, ItemAst, LimitAst, LimitMeasure, Literal, NumberLit, Phase, PolicyFile,
    RuleAst, Spanned, TypeAst,
};
use crate::diagnostics::{did_you_mean, Diagnostic};
use crate::source::{SourceFile, Span};
use crate::syntax::cel;
use crate::syntax::yaml::{self, ScalarStyle, YamlNode, YamlValue};

/// The longest `max_window` (and so any window): a year and a day. The
/// state a window reads is kept that long, and a window must start at a
/// time the clock can name (a window of a billion hours could not be
/// placed, and state could not be loaded).
pub(crate) const LONGEST_WINDOW: jiff::SignedDuration = jiff::SignedDuration::from_hours(366 * 24);

/// Reads one native policy file; problems go to `diags`.
pub fn read_policy_file(source: &SourceFile, file_index: usize, diags: &mut Vec<Diagnostic>) -> PolicyFile {
    read_file(source, file_index, false, diags)
}

/// Reads a derived source: native YAML that may hold only `contracts` (any
/// other top-level key is an error naming the source and the key); its
/// contracts yield to those the policy files declare (see
/// [`PolicyFile::derived`]).
pub fn read_derived_file(source: &SourceFile, file_index: usize, diags: &mut Vec<Diagnostic>) -> PolicyFile {
    read_file(source, file_index, true, diags)
}

fn read_file(source: &SourceFile, file_index: usize, derived: bool, diags: &mut Vec<Diagnostic>) -> PolicyFile {
    let mut cx = Cx {
        file: source.clone(),
        diags,
    };
    let mut out = PolicyFile {
        source: source.clone(),
        version: None,
        default: None,
        default_after: None,
        max_window: None,
        contracts: ContractsAst::default(),
        rules: Vec::new(),
        combining: Combining::DenyOverrides,
        derived,
    };
    let root = match yaml::parse(source.text()) {
        Ok(root) => root,
        Err(e) => {
            cx.err(e.span, format!("invalid YAML: {}", e.message));
            return out;
        }
    };
    if derived {
        // Checked before anything else is read, so a derived source that
        // tries to carry rules or a default is refused by name, and none
        // of it is taken. An empty one declares nothing (a server with no
        // tools).
        if matches!(root.value, YamlValue::Null) {
            return out;
        }
        let YamlValue::Map(entries) = &root.value else {
            cx.expected(
                &root,
                &format!(
                    "the derived source `{}` to be a mapping with `contracts`",
                    source.name()
                ),
            );
            return out;
        };
        let mut only_contracts = true;
        for (k, _) in entries {
            match &k.value {
                YamlValue::String(key) if key == "contracts" => {}
                _ => {
                    only_contracts = false;
                    let key = match &k.value {
                        YamlValue::String(key) => format!("`{key}`"),
                        _ => describe(k),
                    };
                    cx.err(
                        k.span,
                        format!(
                            "`{}` is a derived source and may hold only `contracts`, not {key}",
                            source.name()
                        ),
                    )
                    .with_help("rules, defaults and settings belong in the policy files");
                }
            }
        }
        if !only_contracts {
            return out;
        }
        if let Some((_, c)) = entries.first() {
            out.contracts = cx.contracts(c);
        }
        return out;
    }
    if matches!(root.value, YamlValue::Null) {
        cx.err(root.span, "the policy file is empty").with_help(
            "a policy file is a mapping with `contracts` and `rules` (and optionally `version` and `default`)",
        );
        return out;
    }
    let Some(top) = cx.mapping(
        &root,
        "the policy file",
        &["version", "default", "max_window", "contracts", "rules", "description"],
    ) else {
        return out;
    };
    if let Some(v) = top.get("version") {
        out.version = match &v.value {
            YamlValue::String(s) => Some(Spanned::new(s.clone(), v.span)),
            YamlValue::Int(i) => Some(Spanned::new(i.to_string(), v.span)),
            // As written: `1.10` stays `1.10`, not the float's `1.1`.
            YamlValue::Float(f) => {
                let written = source.text().get(v.span.start as usize..v.span.end as usize);
                let label = written.map_or_else(|| f.to_string(), |w| w.trim().to_string());
                Some(Spanned::new(label, v.span))
            }
            _ => {
                cx.expected(v, "`version` to be a string or a number");
                None
            }
        };
    }
    if let Some(d) = top.get("default") {
        if let YamlValue::Map(_) = d.value {
            // `default: {before: block, after: allow}`
            if let Some(m) = cx.mapping(d, "`default`", &["before", "after"]) {
                out.default = m.get("before").and_then(|b| cx.effect(b, "default.before"));
                out.default_after = m.get("after").and_then(|a| cx.effect(a, "default.after"));
            }
        } else {
            out.default = cx.effect(d, "default");
        }
    }
    if let Some(w) = top.get("max_window") {
        out.max_window = cx.window(w, "`max_window`");
    }
    if let Some(c) = top.get("contracts") {
        out.contracts = cx.contracts(c);
    }
    if let Some(rules) = top.get("rules") {
        if let Some(items) = cx.seq(rules, "`rules`") {
            for item in items {
                if let Some(rule) = cx.rule(item, file_index) {
                    out.rules.push(rule);
                }
            }
        }
    }
    out
}

struct Cx<'d> {
    file: SourceFile,
    diags: &'d mut Vec<Diagnostic>,
}

/// The entries of a mapping whose keys were checked against a known set.
struct Mapping<'n> {
    entries: Vec<(&'n str, Span, &'n YamlNode)>,
}

impl<'n> Mapping<'n> {
    fn get(&self, key: &str) -> Option<&'n YamlNode> {
        self.entries.iter().find(|(k, _, _)| *k == key).map(|(_, _, v)| *v)
    }
}

/// A "why" diagnostic handle: lets callers add help after pushing.
struct Pushed<'a>(&'a mut Diagnostic);

impl Pushed<'_> {
    fn with_help(self, help: impl Into<String>) {
        self.0.help = Some(help.into());
    }
}

impl<'d> Cx<'d> {
    fn err(&mut self, span: Span, message: impl Into<String>) -> Pushed<'_> {
        self.diags.push(Diagnostic::error(&self.file, span, message));
        let last = self.diags.len() - 1;
        Pushed(&mut self.diags[last])
    }

    fn expected(&mut self, node: &YamlNode, what: &str) {
        self.err(node.span, format!("expected {what}, found {}", describe(node)));
    }

    /// Checks that `node` is a mapping with string keys drawn from `known`.
    fn mapping<'n>(&mut self, node: &'n YamlNode, what: &str, known: &[&str]) -> Option<Mapping<'n>> {
        let YamlValue::Map(entries) = &node.value else {
            self.expected(node, &format!("{what} to be a mapping"));
            return None;
        };
        let mut out = Vec::with_capacity(entries.len());
        for (k, v) in entries {
            let YamlValue::String(key) = &k.value else {
                self.err(k.span, format!("keys of {what} must be strings, found {}", describe(k)));
                continue;
            };
            if !known.is_empty() && !known.contains(&key.as_str()) {
                let d = self.err(k.span, format!("unknown key `{key}` in {what}"));
                match did_you_mean(key, known.iter().copied()) {
                    Some(s) => d.with_help(format!("did you mean `{s}`?")),
                    None => d.with_help(format!("known keys: {}", known.join(", "))),
                }
                continue;
            }
            out.push((key.as_str(), k.span, v));
        }
        Some(Mapping { entries: out })
    }

    fn seq<'n>(&mut self, node: &'n YamlNode, what: &str) -> Option<&'n [YamlNode]> {
        match &node.value {
            YamlValue::Seq(items) => Some(items),
            _ => {
                self.expected(node, &format!("{what} to be a list"));
                None
            }
        }
    }

    fn string(&mut self, node: &YamlNode, what: impl std::fmt::Display) -> Option<Spanned<String>> {
        match &node.value {
            YamlValue::String(s) => Some(Spanned::new(s.clone(), node.span)),
            _ => {
                self.expected(node, &format!("{what} to be a string"));
                None
            }
        }
    }

    fn bool(&mut self, node: &YamlNode, what: &str) -> Option<bool> {
        match &node.value {
            YamlValue::Bool(b) => Some(*b),
            _ => {
                self.expected(node, &format!("{what} to be `true` or `false`"));
                None
            }
        }
    }

    fn effect(&mut self, node: &YamlNode, what: &str) -> Option<Spanned<Effect>> {
        let s = self.string(node, format_args!("`{what}`"))?;
        match Effect::parse(&s.value) {
            Some(e) => Some(Spanned::new(e, s.span)),
            None => {
                let d = self.err(s.span, format!("unknown effect `{}`", s.value));
                let known = ["allow", "block", "require_approval"];
                match did_you_mean(&s.value, known) {
                    Some(k) => d.with_help(format!("did you mean `{k}`?")),
                    None => d.with_help("an effect is `allow`, `block` or `require_approval`"),
                }
                None
            }
        }
    }

    fn contracts(&mut self, node: &YamlNode) -> ContractsAst {
        let mut out = ContractsAst::default();
        let Some(m) = self.mapping(node, "`contracts`", &["actor", "snapshot", "actions"]) else {
            return out;
        };
        if let Some(a) = m.get("actor") {
            out.actor = self.fields_with(a, "the actor contract", true);
        }
        if let Some(s) = m.get("snapshot") {
            out.snapshot = self.fields(s, "the snapshot contract");
        }
        if let Some(actions) = m.get("actions") {
            if let Some(am) = self.mapping(actions, "`contracts.actions`", &[]) {
                for (name, name_span, body) in am.entries {
                    if let Some(c) = self.action_contract(name, name_span, body) {
                        out.actions.push(c);
                    }
                }
            }
        }
        out
    }

    fn action_contract(&mut self, name: &str, name_span: Span, body: &YamlNode) -> Option<ActionContractAst> {
        if !valid_action_name(name) {
            self.err(name_span, format!("`{name}` is not a valid action name"))
                .with_help("action names are made of letters, digits, `_`, `-` and `.` (e.g. `file.read`, `mcp.github.create_issue`)");
        }
        let what = format!("the contract of `{name}`");
        if matches!(body.value, YamlValue::Null) {
            return Some(ActionContractAst {
                name: Spanned::new(name.to_string(), name_span),
                input: FieldsAst {
                    span: body.span,
                    ..FieldsAst::default()
                },
                output: None,
                description: None,
                tool: None,
            });
        }
        let m = self.mapping(body, &what, &["input", "output", "description", "tool"])?;
        let input = match m.get("input") {
            Some(i) => self.fields(i, &format!("the input of `{name}`"))?,
            None => FieldsAst {
                span: body.span,
                ..FieldsAst::default()
            },
        };
        let output = match m.get("output") {
            Some(o) => Some(self.fields(o, &format!("the output of `{name}`"))?),
            None => None,
        };
        let description = m
            .get("description")
            .and_then(|d| self.string(d, "`description`"))
            .map(|s| s.value);
        let tool = match m.get("tool") {
            Some(t) => Some(self.tool_facts(t)?),
            None => None,
        };
        Some(ActionContractAst {
            name: Spanned::new(name.to_string(), name_span),
            input,
            output,
            description,
            tool,
        })
    }

    /// An action's `tool:`: a mapping of constants.
    fn tool_facts(&mut self, node: &YamlNode) -> Option<Spanned<ConstFields>> {
        if !matches!(node.value, YamlValue::Map(_)) {
            self.expected(
                node,
                "`tool` to be a mapping of constants (like `{server: fs, annotations: {readOnlyHint: true}}`)",
            );
            return None;
        }
        match self.constant(node, "tool")? {
            Spanned {
                value: ConstAst::Object(fields),
                span,
            } => Some(Spanned::new(fields, span)),
            _ => None,
        }
    }

    /// A constant at `path` (`tool.annotations.title`): a string, bool,
    /// int, finite number, list or mapping with field-name keys. Every
    /// problem below it is reported; `None` if there was one.
    fn constant(&mut self, node: &YamlNode, path: &str) -> Option<Spanned<ConstAst>> {
        let value = match &node.value {
            YamlValue::String(s) => ConstAst::String(s.clone()),
            YamlValue::Bool(b) => ConstAst::Bool(*b),
            YamlValue::Int(i) => ConstAst::Int(*i),
            YamlValue::Float(f) if f.is_finite() => ConstAst::Float(*f),
            YamlValue::Float(_) => {
                self.err(node.span, format!("`{path}` is not a finite number"));
                return None;
            }
            YamlValue::Null => {
                self.err(node.span, format!("`{path}` has no value"))
                    .with_help("a `tool` fact is a string, a bool, a number, a list or a mapping; leave the key out instead of writing null");
                return None;
            }
            YamlValue::Seq(items) => {
                let mut out = Vec::with_capacity(items.len());
                let mut ok = true;
                for (i, item) in items.iter().enumerate() {
                    match self.constant(item, &format!("{path}[{i}]")) {
                        Some(c) => out.push(c),
                        None => ok = false,
                    }
                }
                if !ok {
                    return None;
                }
                ConstAst::List(out)
            }
            YamlValue::Map(_) => {
                let m = self.mapping(node, &format!("`{path}`"), &[])?;
                let mut out = Vec::with_capacity(m.entries.len());
                let mut ok = true;
                for (key, key_span, v) in m.entries {
                    if !valid_field_name(key) {
                        self.err(key_span, format!("`{key}` is not a valid field name"))
                            .with_help("keys of `tool` start with a letter or `_` and hold letters, digits and `_`, so rules can write `tool.name`");
                        ok = false;
                        continue;
                    }
                    match self.constant(v, &format!("{path}.{key}")) {
                        Some(c) => out.push((Spanned::new(key.to_string(), key_span), c)),
                        None => ok = false,
                    }
                }
                if !ok {
                    return None;
                }
                ConstAst::Object(out)
            }
        };
        Some(Spanned::new(value, node.span))
    }

    /// A field set: a mapping of field name → type spec. An empty value
    /// means no fields.
    fn fields(&mut self, node: &YamlNode, what: &str) -> Option<FieldsAst> {
        self.fields_with(node, what, false)
    }

    /// [`Self::fields`]; `actor` for the top level of the actor contract,
    /// where the reserved `chain` may be written without a type
    /// (`chain: {bound: true}`).
    fn fields_with(&mut self, node: &YamlNode, what: &str, actor: bool) -> Option<FieldsAst> {
        if matches!(node.value, YamlValue::Null) {
            return Some(FieldsAst {
                span: node.span,
                ..FieldsAst::default()
            });
        }
        let m = self.mapping(node, what, &[])?;
        let mut fields = Vec::with_capacity(m.entries.len());
        for (name, span, spec) in m.entries {
            if !valid_field_name(name) {
                self.err(span, format!("`{name}` is not a valid field name"))
                    .with_help("field names start with a letter or `_` and hold letters, digits and `_`, so rules can write `input.name`");
                continue;
            }
            let field = if actor && name == crate::check::CHAIN_FIELD && untyped_mapping(spec) {
                self.untyped_field(name, span, spec)
            } else {
                self.field(name, span, spec)
            };
            if let Some(f) = field {
                fields.push(f);
            }
        }
        Some(FieldsAst {
            fields,
            extra: ExtraFields::Reject,
            span: node.span,
        })
    }

    fn field(&mut self, name: &str, name_span: Span, spec: &YamlNode) -> Option<FieldAst> {
        let mut field = FieldAst {
            name: Spanned::new(name.to_string(), name_span),
            ty: Spanned::new(TypeAst::String, spec.span),
            optional: false,
            sensitive: false,
            per_call: false,
            bound: None,
            type_omitted: false,
            constraints: ConstraintsAst::default(),
            description: None,
        };
        match &spec.value {
            YamlValue::String(s) => {
                let (ty, optional) = self.type_shorthand(s, spec.span)?;
                field.ty = Spanned::new(ty, spec.span);
                field.optional = optional;
                Some(field)
            }
            YamlValue::Map(_) => {
                let known = [
                    "type",
                    "optional",
                    "sensitive",
                    "per_call",
                    "bound",
                    "description",
                    "min",
                    "max",
                    "min_len",
                    "max_len",
                    "pattern",
                    "allowed",
                    "values",
                    "items",
                    "fields",
                    "extra_fields",
                ];
                let m = self.mapping(spec, &format!("field `{name}`"), &known)?;
                let ty = self.type_spec(spec, &m, name)?;
                field.ty = ty;
                self.field_flags(&mut field, &m);
                Some(field)
            }
            _ => {
                self.expected(
                    spec,
                    &format!("a type for field `{name}` (like `string` or `{{type: int, min: 0}}`)"),
                );
                None
            }
        }
    }

    /// A field written as a mapping without a type (`chain: {bound:
    /// true}`): its type is the reserved one, filled in by the checker,
    /// which also refuses any key that would change it.
    fn untyped_field(&mut self, name: &str, name_span: Span, spec: &YamlNode) -> Option<FieldAst> {
        let known = [
            "optional",
            "sensitive",
            "per_call",
            "bound",
            "description",
            "min",
            "max",
            "min_len",
            "max_len",
            "pattern",
            "allowed",
            "extra_fields",
        ];
        let m = self.mapping(spec, &format!("field `{name}`"), &known)?;
        let mut field = FieldAst {
            name: Spanned::new(name.to_string(), name_span),
            ty: Spanned::new(TypeAst::String, spec.span),
            optional: false,
            sensitive: false,
            per_call: false,
            bound: None,
            type_omitted: true,
            constraints: ConstraintsAst::default(),
            description: None,
        };
        if let Some(x) = m.get("extra_fields") {
            self.err(
                x.span,
                format!("`extra_fields` does not apply to field `{name}` without a `type`"),
            );
        }
        self.field_flags(&mut field, &m);
        Some(field)
    }

    /// The keys of a field's mapping other than its type.
    fn field_flags(&mut self, field: &mut FieldAst, m: &Mapping<'_>) {
        if let Some(o) = m.get("optional") {
            field.optional = self.bool(o, "`optional`").unwrap_or(false);
        }
        if let Some(s) = m.get("sensitive") {
            field.sensitive = self.bool(s, "`sensitive`").unwrap_or(false);
        }
        if let Some(p) = m.get("per_call") {
            field.per_call = self.bool(p, "`per_call`").unwrap_or(false);
        }
        if let Some(b) = m.get("bound") {
            if self.bool(b, "`bound`").unwrap_or(false) {
                field.bound = Some(b.span);
            }
        }
        if let Some(d) = m.get("description") {
            field.description = self.string(d, "`description`").map(|s| s.value);
        }
        field.constraints = self.constraints(m);
    }

    /// The type of a field written as a mapping (`{type: ..., ...}`).
    fn type_spec(&mut self, node: &YamlNode, m: &Mapping<'_>, name: &str) -> Option<Spanned<TypeAst>> {
        let type_node = m.get("type");
        let type_name = match type_node {
            Some(t) => self.string(t, "`type`")?,
            None if m.get("fields").is_some() => Spanned::new("object".to_string(), node.span),
            None if m.get("values").is_some() => Spanned::new("enum".to_string(), node.span),
            None => {
                self.err(node.span, format!("field `{name}` has no `type`"))
                    .with_help("write e.g. `{type: string}` or the shorthand `string`");
                return None;
            }
        };
        let span = type_name.span;
        let ty = match type_name.value.as_str() {
            "list" | "map" => {
                let Some(items) = m.get("items") else {
                    self.err(
                        span,
                        format!("a `{}` needs `items`: the type of its elements", type_name.value),
                    )
                    .with_help(format!(
                        "e.g. `{{type: {}, items: string}}` or the shorthand `{}<string>`",
                        type_name.value, type_name.value
                    ));
                    return None;
                };
                let elem = self.field(name, node.span, items)?;
                if elem.optional {
                    self.err(items.span, "elements of a list or map cannot be optional");
                }
                if elem.sensitive {
                    self.err(items.span, "`sensitive` cannot be set on the elements of a list or map")
                        .with_help(format!(
                            "set `sensitive: true` on field `{name}` itself: its whole value is then stored hashed"
                        ));
                }
                if elem.per_call {
                    self.err(items.span, "`per_call` cannot be set on the elements of a list or map");
                }
                if elem.bound.is_some() {
                    self.err(items.span, "`bound` cannot be set on the elements of a list or map")
                        .with_help("`bound: true` applies to top-level fields of `contracts.actor`");
                }
                let elem = Box::new(ItemAst {
                    ty: elem.ty,
                    constraints: elem.constraints,
                });
                if type_name.value == "list" {
                    TypeAst::List(elem)
                } else {
                    TypeAst::Map(elem)
                }
            }
            "object" => {
                let fields_node = m.get("fields");
                let mut fields = match fields_node {
                    Some(f) => self.fields(f, &format!("the fields of `{name}`"))?,
                    None => FieldsAst {
                        span: node.span,
                        ..FieldsAst::default()
                    },
                };
                if let Some(x) = m.get("extra_fields") {
                    let s = self.string(x, "`extra_fields`")?;
                    fields.extra = match s.value.as_str() {
                        "reject" => ExtraFields::Reject,
                        "ignore" => ExtraFields::Ignore,
                        other => {
                            self.err(s.span, format!("unknown `extra_fields` mode `{other}`"))
                                .with_help("use `reject` (the default) or `ignore`");
                            return None;
                        }
                    };
                }
                TypeAst::Object(fields)
            }
            "enum" => {
                let Some(values) = m.get("values") else {
                    self.err(span, "an `enum` needs `values`: the list of allowed strings");
                    return None;
                };
                let items = self.seq(values, "`values`")?;
                let mut out = Vec::new();
                for v in items {
                    if let Some(s) = self.string(v, "an enum value") {
                        out.push(s);
                    }
                }
                if out.is_empty() {
                    self.err(values.span, "an `enum` needs at least one value");
                }
                TypeAst::Enum(out)
            }
            other => {
                let (ty, optional) = self.type_shorthand(other, span)?;
                if optional {
                    self.err(span, "write `optional: true` instead of a `?` in the long form");
                }
                ty
            }
        };
        for (key, allowed_for) in [("items", "list or map"), ("fields", "object"), ("values", "enum")] {
            let fits = match key {
                "items" => matches!(ty, TypeAst::List(_) | TypeAst::Map(_)),
                "fields" => matches!(ty, TypeAst::Object(_)),
                _ => matches!(ty, TypeAst::Enum(_)),
            };
            if let (Some(n), false) = (m.get(key), fits) {
                self.err(n.span, format!("`{key}` only applies to a {allowed_for} type"));
            }
        }
        if let (Some(n), false) = (m.get("extra_fields"), matches!(ty, TypeAst::Object(_))) {
            self.err(n.span, "`extra_fields` only applies to an object type");
        }
        Some(Spanned::new(ty, span))
    }

    /// `string`, `int?`, `list<string>`, `map<list<int>>`.
    fn type_shorthand(&mut self, text: &str, span: Span) -> Option<(TypeAst, bool)> {
        let trimmed = text.trim();
        let (body, optional) = match trimmed.strip_suffix('?') {
            Some(b) => (b.trim_end(), true),
            None => (trimmed, false),
        };
        match parse_type_name(body, 0) {
            Ok(ty) => Some((ty, optional)),
            Err(bad) => {
                let known = [
                    "string",
                    "int",
                    "number",
                    "bool",
                    "timestamp",
                    "duration",
                    "list",
                    "map",
                    "object",
                    "enum",
                ];
                let d = self.err(span, format!("unknown type `{bad}`"));
                match did_you_mean(bad, known) {
                    Some(k) => d.with_help(format!("did you mean `{k}`?")),
                    None => d.with_help("types: string, int, number, bool, timestamp, duration, list<T>, map<T>, and in the long form object and enum"),
                }
                None
            }
        }
    }

    fn constraints(&mut self, m: &Mapping<'_>) -> ConstraintsAst {
        let mut c = ConstraintsAst::default();
        for (key, slot) in [("min", &mut c.min), ("max", &mut c.max)] {
            if let Some(n) = m.get(key) {
                *slot = match n.value {
                    YamlValue::Int(i) => Some(Spanned::new(NumberLit::Int(i), n.span)),
                    YamlValue::Float(f) if f.is_finite() => Some(Spanned::new(NumberLit::Float(f), n.span)),
                    _ => {
                        self.expected(n, &format!("`{key}` to be a finite number"));
                        None
                    }
                };
            }
        }
        for (key, slot) in [("min_len", &mut c.min_len), ("max_len", &mut c.max_len)] {
            if let Some(n) = m.get(key) {
                *slot = match n.value {
                    YamlValue::Int(i) if i >= 0 => Some(Spanned::new(i as u64, n.span)),
                    // "found integer" would puzzle: say which.
                    YamlValue::Int(i) => {
                        self.err(n.span, format!("`{key}` must be at least 0, found {i}"));
                        None
                    }
                    _ => {
                        self.expected(n, &format!("`{key}` to be a whole number of at least 0"));
                        None
                    }
                };
            }
        }
        if let Some(p) = m.get("pattern") {
            c.pattern = self.string(p, "`pattern`");
        }
        if let Some(a) = m.get("allowed") {
            if let Some(items) = self.seq(a, "`allowed`") {
                let mut values = Vec::new();
                for item in items {
                    match &item.value {
                        YamlValue::String(s) => values.push(Literal::String(s.clone())),
                        YamlValue::Int(i) => values.push(Literal::Int(*i)),
                        YamlValue::Float(f) if f.is_finite() => values.push(Literal::Float(*f)),
                        YamlValue::Bool(b) => values.push(Literal::Bool(*b)),
                        _ => self.expected(item, "an allowed value to be a string, number or boolean"),
                    }
                }
                c.allowed = Some(Spanned::new(values, a.span));
            }
        }
        c
    }

    fn rule(&mut self, node: &YamlNode, file_index: usize) -> Option<RuleAst> {
        let known = [
            "id",
            "action",
            "phase",
            "when",
            "effect",
            "reason",
            "approval",
            "labels",
            "limit",
            "mode",
            "description",
        ];
        let m = self.mapping(node, "a rule", &known)?;
        let id = match m.get("id") {
            Some(n) => self.string(n, "the rule `id`")?,
            None => {
                self.err(node.span, "this rule has no `id`")
                    .with_help("every rule needs a unique `id`, used in decisions and the audit log");
                return None;
            }
        };
        if id.value.trim().is_empty() {
            self.err(id.span, "the rule `id` is empty");
        }
        let mut targets = Vec::new();
        match m.get("action") {
            None => {
                self.err(node.span, format!("rule `{}` has no `action`", id.value))
                    .with_help(
                        "name the action(s) it governs: a name, a list, or a glob like `file.*` (`*` for every action)",
                    );
            }
            Some(a) => match &a.value {
                YamlValue::Seq(items) => {
                    if items.is_empty() {
                        self.err(a.span, format!("rule `{}` targets no action", id.value));
                    }
                    for item in items {
                        if let Some(s) = self.string(item, "an action name") {
                            targets.push(s);
                        }
                    }
                }
                _ => targets.extend(self.string(a, "`action` to be a name, a glob or a list; it")),
            },
        }
        let phase = match m.get("phase") {
            None => Phase::Before,
            Some(p) => match self.string(p, "`phase`") {
                Some(s) if s.value == "before" => Phase::Before,
                Some(s) if s.value == "after" => Phase::After,
                Some(s) => {
                    self.err(s.span, format!("unknown phase `{}`", s.value))
                        .with_help("a phase is `before` (the default) or `after`");
                    Phase::Before
                }
                None => Phase::Before,
            },
        };
        let shadow = match m.get("mode") {
            None => false,
            Some(p) => match self.string(p, "`mode`") {
                Some(s) if s.value == "enforce" => false,
                Some(s) if s.value == "shadow" => true,
                Some(s) => {
                    self.err(s.span, format!("unknown mode `{}`", s.value)).with_help(
                        "a rule's mode is `enforce` (the default) or `shadow` (evaluated and recorded, never enforced)",
                    );
                    false
                }
                None => false,
            },
        };
        let when = m.get("when").and_then(|w| self.condition(w));
        let effect = match m.get("effect") {
            Some(e) => self.effect(e, "effect")?,
            None => {
                self.err(node.span, format!("rule `{}` has no `effect`", id.value))
                    .with_help("add `effect: allow`, `effect: block` or `effect: require_approval`");
                return None;
            }
        };
        let reason = m
            .get("reason")
            .and_then(|r| self.string(r, "`reason`"))
            .map(|s| s.value);
        let approval = m.get("approval").and_then(|a| self.approval(a));
        if approval.is_some() && effect.value != Effect::RequireApproval {
            if let Some(a) = m.get("approval") {
                self.err(
                    a.span,
                    format!(
                        "rule `{}` has `approval` but its effect is `{}`",
                        id.value, effect.value
                    ),
                )
                .with_help("`approval` only applies to `effect: require_approval`");
            }
        }
        let mut labels = Vec::new();
        if let Some(l) = m.get("labels") {
            if let Some(items) = self.seq(l, "`labels`") {
                for item in items {
                    if let Some(s) = self.string(item, "a label") {
                        labels.push(s);
                    }
                }
            }
        }
        let limit = m.get("limit").and_then(|l| self.limit(l, &id.value));
        if let (Some(l), Phase::After) = (&limit, phase) {
            self.err(
                l.span,
                format!("rule `{}` has a `limit` but runs in phase `after`", id.value),
            )
            .with_help(
                "limits count calls before they run: remove `phase: after`, or move the limit to a `before` rule",
            );
        }
        // A shadow rule writes nothing: a limit would count and labels
        // would mark the session, both changing what enforced rules see.
        if shadow {
            if let Some(l) = &limit {
                self.err(l.span, format!("rule `{}` is `mode: shadow` and has a `limit`", id.value))
                    .with_help("a shadow rule writes no state: try the limit in a candidate policy (`rein serve --shadow`), or enforce the rule");
            }
            if let (Some(l), false) = (m.get("labels"), labels.is_empty()) {
                self.err(
                    l.span,
                    format!("rule `{}` is `mode: shadow` and attaches `labels`", id.value),
                )
                .with_help("a shadow rule writes no state: remove `labels`, or enforce the rule");
            }
        }
        Some(RuleAst {
            id,
            targets,
            phase,
            when,
            effect,
            reason,
            approval,
            labels,
            limit,
            shadow,
            file: file_index,
            span: node.span,
        })
    }

    fn approval(&mut self, node: &YamlNode) -> Option<ApprovalAst> {
        let m = self.mapping(node, "`approval`", &["role", "ttl"])?;
        let role = match m.get("role") {
            Some(r) => self.string(r, "`role`")?,
            None => {
                self.err(node.span, "`approval` needs a `role`: who may approve");
                return None;
            }
        };
        let ttl_seconds = match m.get("ttl") {
            None => None,
            Some(t) => {
                let s = self.string(t, "`ttl` to be a duration such as `1h`; it")?;
                match crate::value::parse_duration(&s.value) {
                    Some(d) if d.as_secs() > 0 => Some(Spanned::new(d.as_secs() as u64, s.span)),
                    _ => {
                        self.err(s.span, format!("`{}` is not a positive duration", s.value))
                            .with_help("write a duration like `30m`, `1h` or `24h`");
                        None
                    }
                }
            }
        };
        Some(ApprovalAst { role, ttl_seconds })
    }

    /// A positive duration (`1h`, `30m`), for windows, at most
    /// [`LONGEST_WINDOW`].
    fn window(&mut self, node: &YamlNode, what: &str) -> Option<Spanned<jiff::SignedDuration>> {
        let s = self.string(node, format_args!("{what} to be a duration such as `1h`; it"))?;
        match crate::value::parse_duration(&s.value) {
            Some(d) if d > LONGEST_WINDOW => {
                self.err(
                    s.span,
                    format!(
                        "{what} `{}` is longer than the longest window state is kept for (8784h, 366 days)",
                        s.value
                    ),
                )
                .with_help("a window places the start of its history at `now - window`, and state is kept that long");
                None
            }
            Some(d) if d.is_positive() => Some(Spanned::new(d, s.span)),
            _ => {
                self.err(s.span, format!("`{}` is not a positive duration", s.value))
                    .with_help("write a duration like `1m`, `1h` or `24h`");
                None
            }
        }
    }

    /// A rule's `limit`: `count: N`, or `sum: <expression>` with `max: X`;
    /// `per: [<key expressions>]` (optional) and `window: <duration>`.
    fn limit(&mut self, node: &YamlNode, rule: &str) -> Option<LimitAst> {
        let m = self.mapping(node, "`limit`", &["count", "sum", "max", "per", "window"])?;
        let usage = "a limit is `{count: 5, window: 1h}` or `{sum: input.amount, max: 2000, window: 24h}`, \
                     optionally with `per: [actor.id]`";
        let count = m.get("count").and_then(|c| match c.value {
            YamlValue::Int(n) if n >= 1 => Some(Spanned::new(n as u64, c.span)),
            YamlValue::Int(n) => {
                self.err(c.span, format!("`count` must be at least 1, found {n}"))
                    .with_help("a limit of 0 calls lets none through: write a rule without `limit` instead");
                None
            }
            _ => {
                self.expected(c, "`count` to be a whole number of at least 1");
                None
            }
        });
        let sum = m
            .get("sum")
            .and_then(|e| self.expression(e, "`sum`", "an expression such as `input.amount`"));
        let max = m.get("max").and_then(|n| self.exact_number(n));
        let measure = match (m.get("count"), m.get("sum"), m.get("max")) {
            (Some(_), None, None) => LimitMeasure::Count(count?),
            (None, Some(_), Some(_)) => LimitMeasure::Sum { expr: sum?, max: max? },
            (Some(c), Some(_), _) => {
                self.err(c.span, format!("the limit of rule `{rule}` has both `count` and `sum`"))
                    .with_help(usage);
                return None;
            }
            (Some(_), None, Some(x)) => {
                self.err(x.span, "`max` goes with `sum`; a `count` is its own maximum")
                    .with_help(usage);
                return None;
            }
            (None, Some(e), None) => {
                self.err(
                    e.span,
                    "a `sum` needs a `max`: the most the sum may reach in the window",
                )
                .with_help(usage);
                return None;
            }
            (None, None, _) => {
                self.err(
                    node.span,
                    format!("the limit of rule `{rule}` says neither `count` nor `sum`"),
                )
                .with_help(usage);
                return None;
            }
        };
        let mut per = Vec::new();
        if let Some(p) = m.get("per") {
            let items: Vec<&YamlNode> = match &p.value {
                YamlValue::Seq(items) => items.iter().collect(),
                _ => vec![p],
            };
            if items.is_empty() {
                self.err(p.span, "`per` is empty")
                    .with_help("leave `per` out for one bucket shared by every call");
            }
            for item in items {
                if let Some(e) = self.expression(item, "a `per` key", "an expression such as `actor.id`") {
                    per.push(e);
                }
            }
        }
        let window = match m.get("window") {
            Some(w) => self.window(w, "`window`")?,
            None => {
                self.err(node.span, format!("the limit of rule `{rule}` has no `window`"))
                    .with_help("a limit counts over a sliding window: add e.g. `window: 1h`");
                return None;
            }
        };
        Some(LimitAst {
            measure,
            per,
            window,
            span: node.span,
        })
    }

    /// A non-negative number read exactly from its text (`0.3` is 0.3, not
    /// the nearest float).
    fn exact_number(&mut self, node: &YamlNode) -> Option<Spanned<rust_decimal::Decimal>> {
        let written = self
            .file
            .text()
            .get(node.span.start as usize..node.span.end as usize)
            .unwrap_or_default()
            .trim()
            .replace('_', "");
        let parsed = match node.value {
            YamlValue::Int(i) => Some(rust_decimal::Decimal::from(i)),
            YamlValue::Float(f) if f.is_finite() => exact_decimal(&written),
            YamlValue::Float(_) => {
                self.err(node.span, format!("`max` must be a finite number, not `{written}`"));
                return None;
            }
            _ => {
                self.expected(node, "`max` to be a number");
                return None;
            }
        };
        match parsed {
            Some(d) if !d.is_sign_negative() || d.is_zero() => Some(Spanned::new(d.normalize(), node.span)),
            Some(_) => {
                self.err(node.span, "`max` must be at least 0");
                None
            }
            None => {
                self.err(node.span, format!("`{written}` cannot be read as an exact decimal"))
                    .with_help("write the number in plain decimal form, with at most 28 significant digits");
                None
            }
        }
    }

    /// A CEL expression other than a condition (a limit's `sum` or key).
    fn expression(&mut self, node: &YamlNode, what: &str, example: &str) -> Option<Expr> {
        match &node.value {
            YamlValue::String(_) => self.condition(node),
            _ => {
                self.expected(node, &format!("{what} to be {example}"));
                None
            }
        }
    }

    /// Parses a `when` condition, mapping its spans into the file.
    fn condition(&mut self, node: &YamlNode) -> Option<Expr> {
        let text = match &node.value {
            YamlValue::String(s) => s,
            YamlValue::Bool(b) => {
                return Some(Expr {
                    kind: ExprKind::Bool(*b),
                    span: node.span,
                })
            }
            _ => {
                self.expected(node, "`when` to be a condition such as `input.amount > 100`");
                return None;
            }
        };
        let file = self.file.clone();
        let map = offset_map(node, file.text(), text);
        match cel::parse(text) {
            Ok(mut expr) => {
                expr.shift(&map);
                Some(expr)
            }
            Err(e) => {
                let span = Span {
                    start: map(e.span.start),
                    end: map(e.span.end),
                };
                let d = self.err(span, e.message);
                if let Some(h) = e.help {
                    d.with_help(h);
                }
                None
            }
        }
    }
}

/// Maps byte offsets inside a condition's text to offsets in the file.
///
/// Most conditions are written verbatim (plain or quoted without escapes),
/// so the mapping is a constant shift. Otherwise the YAML reader aligns the
/// scalar with the source once and each offset is looked up; a scalar that
/// cannot be aligned points at its start.
fn offset_map(node: &YamlNode, file: &str, value: &str) -> impl Fn(u32) -> u32 {
    let start = node.span.start as usize;
    let quote = usize::from(matches!(
        node.style,
        ScalarStyle::SingleQuoted | ScalarStyle::DoubleQuoted
    ));
    let verbatim = file.get(start + quote..start + quote + value.len()) == Some(value);
    // Aligned once: every span of the condition then maps by table lookup.
    let alignment = if verbatim { None } else { node.string_offsets(file) };
    move |rel: u32| -> u32 {
        let offset = if verbatim {
            start + quote + rel as usize
        } else {
            alignment.as_ref().and_then(|a| a.offset(rel as usize)).unwrap_or(start)
        };
        u32::try_from(offset).unwrap_or(u32::MAX)
    }
}

fn describe(node: &YamlNode) -> String {
    match &node.value {
        YamlValue::String(s) if s.chars().count() <= 40 => format!("the string `{s}`"),
        _ => node.kind_name().to_string(),
    }
}

/// Action names: dotted identifiers; `-` allowed since MCP tool names use it.
pub fn valid_action_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 256
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        && !name.starts_with('.')
        && !name.ends_with('.')
        && !name.contains("..")
}

/// A field's mapping that writes no type (no `type`, `fields`, `values` or
/// `items`).
fn untyped_mapping(spec: &YamlNode) -> bool {
    let YamlValue::Map(entries) = &spec.value else {
        return false;
    };
    !entries
        .iter()
        .any(|(k, _)| matches!(&k.value, YamlValue::String(s) if matches!(s.as_str(), "type" | "fields" | "values" | "items")))
}

pub(crate) fn valid_field_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Parses `list<map<int>>` and friends; on failure returns the bad part.
fn parse_type_name(text: &str, depth: usize) -> Result<TypeAst, &str> {
    if depth > 16 {
        return Err(text);
    }
    let text = text.trim();
    let generic = |prefix: &str| {
        text.strip_prefix(prefix)
            .and_then(|r| r.trim_start().strip_prefix('<'))
            .and_then(|r| r.strip_suffix('>'))
    };
    if let Some(inner) = generic("list") {
        let elem = parse_type_name(inner, depth + 1)?;
        return Ok(TypeAst::List(Box::new(ItemAst::plain(Spanned::new(
            elem,
            Span::default(),
        )))));
    }
    if let Some(inner) = generic("map") {
        let elem = parse_type_name(inner, depth + 1)?;
        return Ok(TypeAst::Map(Box::new(ItemAst::plain(Spanned::new(
            elem,
            Span::default(),
        )))));
    }
    Ok(match text {
        "string" => TypeAst::String,
        "int" => TypeAst::Int,
        "number" => TypeAst::Number,
        "bool" => TypeAst::Bool,
        "timestamp" => TypeAst::Timestamp,
        "duration" => TypeAst::Duration,
        other => return Err(other),
    })
}

/// The exact decimal a number's text writes (`0.3`, `1e3`, `2.5E-2`), or
/// `None` when a decimal cannot hold it exactly: parsing plain text rounds
/// digits past the 28th after the point away (`0.00…01` with 32 digits
/// would read as 0), so every digit must be kept.
fn exact_decimal(text: &str) -> Option<rust_decimal::Decimal> {
    use rust_decimal::Decimal;
    let text = text.strip_prefix('+').unwrap_or(text);
    let (mantissa, exponent) = match text.find(['e', 'E']) {
        Some(i) => (&text[..i], text[i + 1..].parse::<i64>().ok()?),
        None => (text, 0),
    };
    let m = Decimal::from_str_exact(mantissa).ok()?;
    let scale = i64::from(m.scale()).checked_sub(exponent)?;
    if scale >= 0 {
        // Fewer digits after the point than 28, else refused.
        Decimal::try_from_i128_with_scale(m.mantissa(), u32::try_from(scale).ok()?).ok()
    } else {
        // A whole number: scale up by multiplying, refused on overflow.
        let factor = Decimal::try_from_i128_with_scale(10i128.checked_pow(u32::try_from(-scale).ok()?)?, 0).ok()?;
        Decimal::try_from_i128_with_scale(m.mantissa(), 0)
            .ok()?
            .checked_mul(factor)
    }
}

#[cfg(test)]
mod exact_decimal_tests {
    use super::exact_decimal;

    #[test]
    fn every_digit_is_kept_or_the_number_is_refused() {
        let d = |t: &str| exact_decimal(t).map(|d| d.normalize().to_string());
        for (text, want) in [
            ("0.3", "0.3"),
            ("1e3", "1000"),
            ("1E2", "100"),
            ("2.5e-2", "0.025"),
            ("+5.0", "5"),
            ("-0.0", "0"),
            ("0.0000000000000000000000000001", "0.0000000000000000000000000001"),
            ("1e-28", "0.0000000000000000000000000001"),
            ("7.9e28", "79000000000000000000000000000"),
        ] {
            assert_eq!(d(text).as_deref(), Some(want), "{text}");
        }
        // Parsing would round these to other numbers (the first to 0).
        for text in [
            "0.00000000000000000000000000000001",
            "1.23456789012345678901234567890123",
            "1e-29",
            "1e-40",
            "1e29",
            "1e400",
            "1e",
            "x",
        ] {
            assert_eq!(d(text), None, "{text}");
        }
    }
}
