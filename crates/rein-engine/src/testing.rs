//! Policy test files: a policy reference plus cases of request → expected
//! decision. The same format serves `rein test` and Rein's own corpus.
//!
//! ```yaml
//! policy: refund.yaml          # or a list; paths relative to this file
//! cases:
//!   - name: small refund is allowed
//!     request: {action: refund, input: {amount: 50, currency: EUR}}
//!     expect: allow
//!     rules: [small_refunds]     # optional: exactly these rules matched
//!   - name: negative amounts break the contract
//!     request: {action: refund, input: {amount: -1, currency: EUR}}
//!     expect: block
//!     violation: input.amount    # optional: the field named by the contract check
//!     reason: at least 0         # optional: text one reason must contain
//! ```
//!
//! An Actra policy is tested the same way, with `actra` in place of
//! `policy` and requests in Actra's shape; either kind may name a
//! governance file, enforced when the policy loads:
//!
//! ```yaml
//! actra: {schema: schema.yaml, policy: policy.yaml, governance: governance.yaml}
//! cases:
//!   - name: a large refund needs approval
//!     request: {action: {type: refund, amount: 5000}, actor: {role: agent}}
//!     expect: require_approval
//!     rules: [large_refund]
//! ```

use crate::ast::Effect;
use crate::diagnostics::{did_you_mean, Diagnostic, LoadError};
use crate::policy::Policy;
use crate::request::Request;
use crate::source::{SourceFile, Span};
use crate::syntax::yaml::{self, YamlNode, YamlValue};
use std::path::{Path, PathBuf};

/// One test case.
#[derive(Clone, Debug)]
pub struct TestCase {
    /// Its name.
    pub name: String,
    /// Line of the case in the test file.
    pub line: usize,
    /// The request to decide (native test files).
    pub request: Request,
    /// The request in Actra's shape (test files of Actra policies).
    pub actra_request: Option<serde_json::Value>,
    /// The expected effect.
    pub expect: Effect,
    /// If given, exactly these rules must match (order ignored).
    pub rules: Option<Vec<String>>,
    /// If given, the contract violation must name this field.
    pub violation: Option<String>,
    /// If given, one reason must contain this text.
    pub reason: Option<String>,
}

/// A parsed test file.
#[derive(Clone, Debug)]
pub struct TestFile {
    /// Where it was read from.
    pub path: PathBuf,
    /// The policy files it tests (resolved against the test file's folder).
    pub policy: Vec<PathBuf>,
    /// For an Actra policy: its schema, policy and governance files.
    pub actra: Option<ActraFiles>,
    /// A governance file enforced on a native policy.
    pub governance: Option<PathBuf>,
    /// Its cases.
    pub cases: Vec<TestCase>,
}

/// The files of an Actra policy under test.
#[derive(Clone, Debug)]
pub struct ActraFiles {
    /// The schema file.
    pub schema: PathBuf,
    /// The policy file.
    pub policy: PathBuf,
    /// The governance file, if any.
    pub governance: Option<PathBuf>,
}

impl TestFile {
    /// Loads the policy the file tests: native (with its governance, if
    /// any) or Actra.
    pub fn load_policy(&self) -> Result<Policy, LoadError> {
        match (&self.actra, &self.governance) {
            (Some(a), _) => Policy::load_actra(&a.schema, &a.policy, a.governance.as_deref()),
            (None, Some(g)) => Policy::load_governed(&self.policy, g),
            (None, None) => Policy::load(&self.policy),
        }
    }
}

/// The result of one case.
#[derive(Clone, Debug)]
pub struct CaseResult {
    /// The case name.
    pub name: String,
    /// Its line in the test file.
    pub line: usize,
    /// What did not hold; empty when the case passed.
    pub failures: Vec<String>,
    /// The decision, as JSON.
    pub decision: serde_json::Value,
}

impl CaseResult {
    /// True when every expectation held.
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }
}

/// Reads a test file.
pub fn read_test_file(path: &Path) -> Result<TestFile, LoadError> {
    let name = path.display().to_string();
    let text = std::fs::read(path)
        .map_err(|e| LoadError::new(vec![Diagnostic::general(format!("cannot read `{name}`: {e}"))]))?;
    let text = String::from_utf8(text)
        .map_err(|_| LoadError::new(vec![Diagnostic::general(format!("`{name}` is not valid UTF-8"))]))?;
    let source = SourceFile::new(name, text);
    let dir = path.parent().unwrap_or(Path::new("."));
    parse_test_file(&source, dir, path)
}

fn parse_test_file(source: &SourceFile, dir: &Path, path: &Path) -> Result<TestFile, LoadError> {
    let mut diags = Vec::new();
    let err = |diags: &mut Vec<Diagnostic>, span: Span, msg: String| diags.push(Diagnostic::error(source, span, msg));
    let root = yaml::parse(source.text()).map_err(|e| {
        LoadError::new(vec![Diagnostic::error(
            source,
            e.span,
            format!("invalid YAML: {}", e.message),
        )])
    })?;
    let mut out = TestFile {
        path: path.to_path_buf(),
        policy: Vec::new(),
        actra: None,
        governance: None,
        cases: Vec::new(),
    };
    let Some(top) = entries(&root, source, &["policy", "actra", "governance", "cases"], &mut diags) else {
        return Err(LoadError::new(diags));
    };
    let get = |key: &str| top.iter().find(|(k, _)| *k == key).map(|(_, v)| *v);
    let path_of = |node: &YamlNode, what: &str, diags: &mut Vec<Diagnostic>| match &node.value {
        YamlValue::String(s) => Some(dir.join(s)),
        _ => {
            diags.push(Diagnostic::error(source, node.span, format!("`{what}` must be a path")));
            None
        }
    };
    if let Some(g) = get("governance") {
        out.governance = path_of(g, "governance", &mut diags);
    }
    if let Some(a) = get("actra") {
        if get("policy").is_some() {
            err(
                &mut diags,
                a.span,
                "a test file has `policy` (native) or `actra`, not both".into(),
            );
        }
        if let Some(fields) = entries(a, source, &["schema", "policy", "governance"], &mut diags) {
            let field = |k: &str| fields.iter().find(|(n, _)| *n == k).map(|(_, v)| *v);
            let schema = field("schema").and_then(|n| path_of(n, "actra.schema", &mut diags));
            let policy = field("policy").and_then(|n| path_of(n, "actra.policy", &mut diags));
            let governance = field("governance").and_then(|n| path_of(n, "actra.governance", &mut diags));
            match (schema, policy) {
                (Some(schema), Some(policy)) => {
                    out.actra = Some(ActraFiles {
                        schema,
                        policy,
                        governance: governance.or(out.governance.take()),
                    })
                }
                _ => err(&mut diags, a.span, "`actra` needs `schema` and `policy` paths".into()),
            }
        }
    }
    match get("policy") {
        None if out.actra.is_some() => {}
        None => err(
            &mut diags,
            root.span,
            "the test file has no `policy`: the policy file(s) to test".into(),
        ),
        Some(p) => match &p.value {
            YamlValue::String(s) => out.policy.push(dir.join(s)),
            YamlValue::Seq(items) => {
                for i in items {
                    match &i.value {
                        YamlValue::String(s) => out.policy.push(dir.join(s)),
                        _ => err(&mut diags, i.span, "a policy path must be a string".into()),
                    }
                }
            }
            _ => err(&mut diags, p.span, "`policy` must be a path or a list of paths".into()),
        },
    }
    let actra = out.actra.is_some();
    match get("cases") {
        None => err(&mut diags, root.span, "the test file has no `cases`".into()),
        Some(YamlNode {
            value: YamlValue::Seq(items),
            ..
        }) => {
            for (i, item) in items.iter().enumerate() {
                if let Some(case) = parse_case(item, i, source, actra, &mut diags) {
                    out.cases.push(case);
                }
            }
        }
        Some(other) => err(&mut diags, other.span, "`cases` must be a list".into()),
    }
    if diags.is_empty() {
        Ok(out)
    } else {
        Err(LoadError::new(diags))
    }
}

fn entries<'n>(
    node: &'n YamlNode,
    source: &SourceFile,
    known: &[&str],
    diags: &mut Vec<Diagnostic>,
) -> Option<Vec<(&'n str, &'n YamlNode)>> {
    let YamlValue::Map(m) = &node.value else {
        diags.push(Diagnostic::error(
            source,
            node.span,
            format!("expected a mapping, found {}", node.kind_name()),
        ));
        return None;
    };
    let mut out = Vec::new();
    for (k, v) in m {
        match &k.value {
            YamlValue::String(s) if known.contains(&s.as_str()) => out.push((s.as_str(), v)),
            YamlValue::String(s) => {
                let d = Diagnostic::error(source, k.span, format!("unknown key `{s}`"));
                diags.push(match did_you_mean(s, known.iter().copied()) {
                    Some(h) => d.with_help(format!("did you mean `{h}`?")),
                    None => d.with_help(format!("known keys: {}", known.join(", "))),
                });
            }
            _ => diags.push(Diagnostic::error(source, k.span, "keys must be strings")),
        }
    }
    Some(out)
}

fn parse_case(
    node: &YamlNode,
    index: usize,
    source: &SourceFile,
    actra: bool,
    diags: &mut Vec<Diagnostic>,
) -> Option<TestCase> {
    let fields = entries(
        node,
        source,
        &["name", "request", "expect", "rules", "violation", "reason"],
        diags,
    )?;
    let get = |k: &str| fields.iter().find(|(n, _)| *n == k).map(|(_, v)| *v);
    let line = source.line_col(node.span.start as usize).0;
    let name = match get("name").map(|n| &n.value) {
        Some(YamlValue::String(s)) => s.clone(),
        _ => format!("case {}", index + 1),
    };
    let Some(req_node) = get("request") else {
        diags.push(Diagnostic::error(
            source,
            node.span,
            format!("case `{name}` has no `request`"),
        ));
        return None;
    };
    // A number JSON could not carry, or only rounded, would become another
    // request than the one written (`1e400` would turn into `null`, an
    // absent optional field): refused here as a server refuses it.
    if let Some((span, why)) = unfaithful_number(req_node, source) {
        diags.push(Diagnostic::error(source, span, format!("case `{name}`: {why}")));
        return None;
    }
    let (request, actra_request) = if actra {
        (Request::default(), Some(to_json(req_node)))
    } else {
        match Request::from_json(to_json(req_node)) {
            Ok(r) => (r, None),
            Err(e) => {
                diags.push(Diagnostic::error(source, req_node.span, format!("case `{name}`: {e}")));
                return None;
            }
        }
    };
    let expect = match get("expect").map(|n| (&n.value, n.span)) {
        Some((YamlValue::String(s), span)) => match Effect::parse(s) {
            Some(e) => e,
            None => {
                diags.push(
                    Diagnostic::error(source, span, format!("unknown effect `{s}`"))
                        .with_help("expect `allow`, `block` or `require_approval`"),
                );
                return None;
            }
        },
        _ => {
            diags.push(Diagnostic::error(
                source,
                node.span,
                format!("case `{name}` needs `expect: allow|block|require_approval`"),
            ));
            return None;
        }
    };
    let rules = match get("rules") {
        None => None,
        Some(YamlNode {
            value: YamlValue::Seq(items),
            ..
        }) => Some(
            items
                .iter()
                .filter_map(|i| match &i.value {
                    YamlValue::String(s) => Some(s.clone()),
                    _ => {
                        diags.push(Diagnostic::error(source, i.span, "a rule id must be a string"));
                        None
                    }
                })
                .collect(),
        ),
        Some(other) => {
            diags.push(Diagnostic::error(
                source,
                other.span,
                "`rules` must be a list of rule ids",
            ));
            None
        }
    };
    let string_of = |k: &str, diags: &mut Vec<Diagnostic>| match get(k) {
        None => None,
        Some(YamlNode {
            value: YamlValue::String(s),
            ..
        }) => Some(s.clone()),
        Some(other) => {
            diags.push(Diagnostic::error(source, other.span, format!("`{k}` must be a string")));
            None
        }
    };
    let violation = string_of("violation", diags);
    let reason = string_of("reason", diags);
    Some(TestCase {
        name,
        line,
        request,
        actra_request,
        expect,
        rules,
        violation,
        reason,
    })
}

/// The first number under `node` that a request in JSON would not carry as
/// written: one that is not finite (`1e400`, `.inf`, `.nan`), or text that
/// is not a whole number but that a double rounds to one
/// (`2.9999999999999999`, `1e-400`), which a JSON request is refused for
/// (see [`crate::json`]).
fn unfaithful_number(node: &YamlNode, source: &SourceFile) -> Option<(Span, String)> {
    match &node.value {
        YamlValue::Float(f) => {
            let text = source
                .text()
                .get(node.span.start as usize..node.span.end as usize)
                .unwrap_or_default();
            if !f.is_finite() {
                return Some((
                    node.span,
                    format!("the number `{text}` is not finite; a JSON request cannot hold it"),
                ));
            }
            let digits = text.strip_prefix('+').unwrap_or(text);
            let plain = digits
                .bytes()
                .all(|b| matches!(b, b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9'));
            (f.fract() == 0.0 && plain && !crate::json::is_whole_number_text(digits)).then(|| {
                (
                    node.span,
                    format!(
                        "the number `{text}` is not a whole number, but a double rounds it to one; \
                         a request holding it is refused as a whole"
                    ),
                )
            })
        }
        YamlValue::Seq(items) => items.iter().find_map(|i| unfaithful_number(i, source)),
        YamlValue::Map(entries) => entries
            .iter()
            .find_map(|(k, v)| unfaithful_number(k, source).or_else(|| unfaithful_number(v, source))),
        _ => None,
    }
}

/// Converts a YAML tree to JSON (requests in test files are written as YAML).
pub fn to_json(node: &YamlNode) -> serde_json::Value {
    use serde_json::Value as J;
    match &node.value {
        YamlValue::Null => J::Null,
        YamlValue::Bool(b) => J::Bool(*b),
        YamlValue::Int(i) => J::from(*i),
        YamlValue::Float(f) => serde_json::Number::from_f64(*f).map_or(J::Null, J::Number),
        YamlValue::String(s) => J::String(s.clone()),
        YamlValue::Seq(items) => J::Array(items.iter().map(to_json).collect()),
        YamlValue::Map(entries) => J::Object(
            entries
                .iter()
                .map(|(k, v)| {
                    let key = match &k.value {
                        YamlValue::String(s) => s.clone(),
                        _ => to_json(k).to_string(),
                    };
                    (key, to_json(v))
                })
                .collect(),
        ),
    }
}

/// Runs every case of a test file against its policy.
pub fn run_cases(policy: &Policy, file: &TestFile) -> Vec<CaseResult> {
    file.cases.iter().map(|case| run_case(policy, case)).collect()
}

fn run_case(policy: &Policy, case: &TestCase) -> CaseResult {
    let decision = match &case.actra_request {
        Some(r) => policy.decide_actra(r),
        None => policy.decide(&case.request),
    };
    let mut failures = Vec::new();
    if decision.effect() != case.expect {
        failures.push(format!(
            "expected `{}`, got `{}` ({})",
            case.expect,
            decision.effect(),
            decision.reasons().join("; ")
        ));
    }
    if let Some(expected) = &case.rules {
        let mut want: Vec<&str> = expected.iter().map(String::as_str).collect();
        let mut got = decision.rules();
        want.sort_unstable();
        got.sort_unstable();
        if want != got {
            failures.push(format!(
                "expected rules [{}], got [{}]",
                want.join(", "),
                got.join(", ")
            ));
        }
    }
    if let Some(field) = &case.violation {
        match decision.violation() {
            Some(v) if &v.path == field => {}
            Some(v) => failures.push(format!(
                "expected a contract violation at `{field}`, got one at `{}`: {}",
                v.path, v.message
            )),
            None => failures.push(format!(
                "expected a contract violation at `{field}`, but the request fit its contract"
            )),
        }
    }
    if let Some(text) = &case.reason {
        let reasons = decision.reasons();
        if !reasons.iter().any(|r| r.contains(text.as_str())) {
            failures.push(format!(
                "expected a reason containing `{text}`, got: {}",
                reasons.join("; ")
            ));
        }
    }
    CaseResult {
        name: case.name.clone(),
        line: case.line,
        failures,
        decision: decision.to_json(),
    }
}
