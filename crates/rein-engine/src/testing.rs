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
//!   - name: the chain comes from the credential
//!     request: {action: refund, input: {amount: 5, currency: EUR}, actor: {id: bot, chain: [{kind: user, id: alice}]}}
//!     bound: [id, chain]         # optional: the actor fields the credential binds (default: no credential)
//!     expect: allow
//!   - name: the new limit would block it (a `mode: shadow` rule)
//!     request: {action: refund, input: {amount: 900, currency: EUR}}
//!     expect: allow              # what is enforced: shadow rules never change it
//!     shadow:                    # optional: what the action's shadow rules said
//!       expect: block            # the effect with the shadow rules enforced
//!       rules: [new_limit]       # optional: exactly these shadow rules matched
//! ```
//!
//! `rules` lists enforced rules only; `mode: shadow` rules are checked
//! under `shadow`, which fails when the action has no shadow rules for
//! the phase (or none was evaluated: a contract violation). Without
//! `shadow`, a case does not look at them.
//!
//! A field the policy requires bound (`bound: true` in `contracts.actor`)
//! that the case's `bound` does not list blocks the request before any
//! rule, with the runtime's reason ([`Policy::unbound_required`]); a step
//! of a sequence takes `bound` too.
//!
//! A case may instead be a `sequence` of steps, decided in order against
//! a fresh in-memory state (limits, sessions), with a clock the file sets:
//!
//! ```yaml
//! cases:
//!   - name: five refunds an hour, the sixth is blocked
//!     sequence:
//!       - at: 2026-01-01T10:00:00Z   # optional: the step's time (default: the previous step's; first 2026-01-01T00:00:00Z)
//!         repeat: 5                  # optional: sent 5 times, each must give `expect`
//!         request: {action: refund, input: {amount: 10}, actor: {id: bot-1}, session: s1}
//!         expect: allow
//!         outcome: {output: {refund_id: r-1}}   # optional (or {error: "..."}): reported after an allowed step
//!         expect_after: allow                   # required with `outcome`
//!       - request: {action: refund, input: {amount: 10}, actor: {id: bot-1}, session: s1}
//!         expect: block
//!         retry_after: 3601          # optional: the decision's `retry_after_seconds`
//!         reason: 5 of 5 used        # optional checks as in cases: rules, violation, reason
//!       - request: {action: refund, input: {amount: 10}, actor: {id: bot-2}}
//!         expect: require_approval
//!         approve: true              # optional: granted: the request is sent again, finally allowed (and counts)
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

use crate::ast::{Effect, Phase};
use crate::decision::Decision;
use crate::diagnostics::{did_you_mean, Diagnostic, LoadError};
use crate::memory_state::MemoryState;
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
    /// What the `mode: shadow` rules must have said, if given.
    pub shadow: Option<ShadowExpect>,
    /// The actor fields the request's credential binds (`bound: [id,
    /// chain]`); `None`: the request has no credential. A field the policy
    /// requires bound that is not listed blocks the request before any
    /// rule, as the runtime does.
    pub bound: Option<Vec<String>>,
    /// A sequence case: its steps (then `request` and the checks above are
    /// unused).
    pub sequence: Option<Vec<SequenceStep>>,
}

/// A case's `shadow:` expectation: what the action's `mode: shadow` rules
/// said (see [`crate::Decision::shadow_rules`]).
#[derive(Clone, Debug)]
pub struct ShadowExpect {
    /// The effect the decision would have had with the shadow rules
    /// enforced.
    pub expect: Effect,
    /// If given, exactly these shadow rules matched (order ignored).
    pub rules: Option<Vec<String>>,
}

/// One step of a sequence case.
#[derive(Clone, Debug)]
pub struct SequenceStep {
    /// Line of the step in the test file.
    pub line: usize,
    /// The step's time (its `at`, or the previous step's): the request's
    /// `time`.
    pub time: jiff::Timestamp,
    /// How many times the request is sent (each must give `expect`).
    pub repeat: u32,
    /// The request (phase `before`).
    pub request: Request,
    /// The expected effect.
    pub expect: Effect,
    /// A `require_approval` is granted: the final effect is `allow`.
    pub approve: bool,
    /// The outcome reported after the step, if it was allowed, and the
    /// effect its `after` decision must have.
    pub outcome: Option<(StepOutcome, Effect)>,
    /// If given, exactly these rules must match (order ignored).
    pub rules: Option<Vec<String>>,
    /// If given, the contract violation must name this field.
    pub violation: Option<String>,
    /// If given, one reason must contain this text.
    pub reason: Option<String>,
    /// If given, the decision's `retry_after_seconds` must be this.
    pub retry_after: Option<u64>,
    /// What the `mode: shadow` rules must have said, if given.
    pub shadow: Option<ShadowExpect>,
    /// The actor fields the request's credential binds, as in a case.
    pub bound: Option<Vec<String>>,
}

/// What an action reported after it ran.
#[derive(Clone, Debug, PartialEq)]
pub enum StepOutcome {
    /// Its output.
    Output(serde_json::Value),
    /// The error it reported instead.
    Error(String),
}

/// The first step's time when it has no `at`.
const SEQUENCE_START: &str = "2026-01-01T00:00:00Z";

/// The most times a step may be repeated: enough for any limit a test
/// needs, and a test file cannot make `rein test` run for hours.
const MAX_REPEAT: i64 = 100_000;

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
        &[
            "name",
            "request",
            "expect",
            "rules",
            "violation",
            "reason",
            "bound",
            "sequence",
            "shadow",
        ],
        diags,
    )?;
    let get = |k: &str| fields.iter().find(|(n, _)| *n == k).map(|(_, v)| *v);
    let line = source.line_col(node.span.start as usize).0;
    let name = match get("name").map(|n| &n.value) {
        Some(YamlValue::String(s)) => s.clone(),
        _ => format!("case {}", index + 1),
    };
    if let Some(seq) = get("sequence") {
        return parse_sequence_case(seq, &fields, name, line, source, actra, diags);
    }
    let Some(req_node) = get("request") else {
        diags.push(Diagnostic::error(
            source,
            node.span,
            format!("case `{name}` has no `request` (or `sequence`)"),
        ));
        return None;
    };
    let (request, actra_request) = if actra {
        if let Some((span, why)) = unfaithful_number(req_node, source) {
            diags.push(Diagnostic::error(source, span, format!("case `{name}`: {why}")));
            return None;
        }
        (Request::default(), Some(to_json(req_node)))
    } else {
        (read_request(req_node, &format!("case `{name}`"), source, diags)?, None)
    };
    let expect = read_expect(get("expect"), "expect", node, &format!("case `{name}`"), source, diags)?;
    let rules = read_rules(get("rules"), source, diags);
    let violation = read_string(get("violation"), "violation", source, diags);
    let reason = read_string(get("reason"), "reason", source, diags);
    let shadow = read_shadow(get("shadow"), &format!("case `{name}`"), source, diags);
    let actor = match &actra_request {
        Some(r) => r.get("actor"),
        None => Some(&request.actor),
    };
    let bound = match get("bound") {
        Some(b) => Some(read_bound(b, actor, &format!("case `{name}`"), source, diags)?),
        None => None,
    };
    Some(TestCase {
        name,
        line,
        request,
        actra_request,
        expect,
        rules,
        violation,
        reason,
        shadow,
        bound,
        sequence: None,
    })
}

/// A case's or step's `bound`: the list of the top-level actor fields its
/// credential binds, each of which the request's `actor` holds (a
/// credential binds a value: the test writes it in the request, where the
/// runtime would have set it).
fn read_bound(
    node: &YamlNode,
    actor: Option<&serde_json::Value>,
    what: &str,
    source: &SourceFile,
    diags: &mut Vec<Diagnostic>,
) -> Option<Vec<String>> {
    let YamlValue::Seq(items) = &node.value else {
        diags.push(
            Diagnostic::error(
                source,
                node.span,
                format!("{what}: `bound` must be a list of actor field names"),
            )
            .with_help("e.g. `bound: [id, chain]`: the fields the request's credential sets"),
        );
        return None;
    };
    let before = diags.len();
    let mut out: Vec<String> = Vec::with_capacity(items.len());
    for item in items {
        let YamlValue::String(field) = &item.value else {
            diags.push(Diagnostic::error(
                source,
                item.span,
                format!("{what}: an entry of `bound` must be an actor field name"),
            ));
            continue;
        };
        let held = actor.and_then(|a| a.get(field)).is_some_and(|v| !v.is_null());
        if !held {
            diags.push(
                Diagnostic::error(
                    source,
                    item.span,
                    format!("{what}: `bound` lists `{field}`, but the request's actor has no `{field}`"),
                )
                .with_help(format!(
                    "a credential binds a value: write it in the request (`actor: {{{field}: ...}}`)"
                )),
            );
            continue;
        }
        if !out.contains(field) {
            out.push(field.clone());
        }
    }
    (diags.len() == before).then_some(out)
}

/// A request written in YAML, as the JSON request it stands for.
fn read_request(node: &YamlNode, what: &str, source: &SourceFile, diags: &mut Vec<Diagnostic>) -> Option<Request> {
    // A number JSON could not carry, or only rounded, would become another
    // request than the one written (`1e400` would turn into `null`, an
    // absent optional field): refused here as a server refuses it.
    if let Some((span, why)) = unfaithful_number(node, source) {
        diags.push(Diagnostic::error(source, span, format!("{what}: {why}")));
        return None;
    }
    match Request::from_json(to_json(node)) {
        Ok(r) => Some(r),
        Err(e) => {
            diags.push(Diagnostic::error(source, node.span, format!("{what}: {e}")));
            None
        }
    }
}

/// An effect under `key` (`expect`, `expect_after`), which must be there.
fn read_expect(
    value: Option<&YamlNode>,
    key: &str,
    parent: &YamlNode,
    what: &str,
    source: &SourceFile,
    diags: &mut Vec<Diagnostic>,
) -> Option<Effect> {
    match value.map(|n| (&n.value, n.span)) {
        Some((YamlValue::String(s), span)) => match Effect::parse(s) {
            Some(e) => Some(e),
            None => {
                diags.push(
                    Diagnostic::error(source, span, format!("{what}: unknown effect `{s}`"))
                        .with_help(format!("`{key}` is `allow`, `block` or `require_approval`")),
                );
                None
            }
        },
        _ => {
            diags.push(Diagnostic::error(
                source,
                value.map_or(parent.span, |v| v.span),
                format!("{what} needs `{key}: allow|block|require_approval`"),
            ));
            None
        }
    }
}

/// A `shadow:` expectation: `{expect: EFFECT, rules: [ids]}`.
fn read_shadow(
    value: Option<&YamlNode>,
    what: &str,
    source: &SourceFile,
    diags: &mut Vec<Diagnostic>,
) -> Option<ShadowExpect> {
    let node = value?;
    let fields = entries(node, source, &["expect", "rules"], diags)?;
    let get = |k: &str| fields.iter().find(|(n, _)| *n == k).map(|(_, v)| *v);
    let expect = read_expect(
        get("expect"),
        "expect",
        node,
        &format!("{what}, `shadow`"),
        source,
        diags,
    )?;
    let rules = read_rules(get("rules"), source, diags);
    Some(ShadowExpect { expect, rules })
}

fn read_rules(value: Option<&YamlNode>, source: &SourceFile, diags: &mut Vec<Diagnostic>) -> Option<Vec<String>> {
    match value {
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
    }
}

fn read_string(
    value: Option<&YamlNode>,
    key: &str,
    source: &SourceFile,
    diags: &mut Vec<Diagnostic>,
) -> Option<String> {
    match value {
        None => None,
        Some(YamlNode {
            value: YamlValue::String(s),
            ..
        }) => Some(s.clone()),
        Some(other) => {
            diags.push(Diagnostic::error(
                source,
                other.span,
                format!("`{key}` must be a string"),
            ));
            None
        }
    }
}

/// A case with `sequence:` (its other keys, besides `name`, belong in the
/// steps).
fn parse_sequence_case(
    seq: &YamlNode,
    fields: &[(&str, &YamlNode)],
    name: String,
    line: usize,
    source: &SourceFile,
    actra: bool,
    diags: &mut Vec<Diagnostic>,
) -> Option<TestCase> {
    let before = diags.len();
    let what = format!("case `{name}`");
    if actra {
        diags.push(
            Diagnostic::error(source, seq.span, format!("{what}: Actra policies have no sequences"))
                .with_help("Actra rules keep no state; test each request as a case of its own"),
        );
    }
    for (key, value) in fields {
        if !matches!(*key, "name" | "sequence") {
            diags.push(
                Diagnostic::error(
                    source,
                    value.span,
                    format!("{what} has a `sequence`: `{key}` belongs in its steps"),
                )
                .with_help("each step has its own `request`, `expect` and checks"),
            );
        }
    }
    let YamlValue::Seq(items) = &seq.value else {
        diags.push(Diagnostic::error(
            source,
            seq.span,
            format!("{what}: `sequence` must be a list of steps"),
        ));
        return None;
    };
    if items.is_empty() {
        diags.push(Diagnostic::error(
            source,
            seq.span,
            format!("{what}: the sequence has no steps"),
        ));
    }
    let mut clock = crate::instant::Instant::parse(SEQUENCE_START).and_then(|i| i.to_jiff())?;
    let mut steps = Vec::new();
    for (i, item) in items.iter().enumerate() {
        if let Some(step) = parse_step(
            item,
            &format!("case `{name}`, step {}", i + 1),
            &mut clock,
            source,
            diags,
        ) {
            steps.push(step);
        }
    }
    (diags.len() == before).then(|| TestCase {
        name,
        line,
        request: Request::default(),
        actra_request: None,
        expect: Effect::Block,
        rules: None,
        violation: None,
        reason: None,
        shadow: None,
        bound: None,
        sequence: Some(steps),
    })
}

/// One step; `clock` is the previous step's time, and becomes this one's.
fn parse_step(
    node: &YamlNode,
    what: &str,
    clock: &mut jiff::Timestamp,
    source: &SourceFile,
    diags: &mut Vec<Diagnostic>,
) -> Option<SequenceStep> {
    const KEYS: &[&str] = &[
        "at",
        "repeat",
        "request",
        "expect",
        "approve",
        "outcome",
        "expect_after",
        "rules",
        "violation",
        "reason",
        "retry_after",
        "bound",
        "shadow",
    ];
    let before = diags.len();
    let fields = entries(node, source, KEYS, diags)?;
    let get = |k: &str| fields.iter().find(|(n, _)| *n == k).map(|(_, v)| *v);
    let line = source.line_col(node.span.start as usize).0;
    if let Some(at) = get("at") {
        let parsed = match &at.value {
            YamlValue::String(s) => crate::instant::Instant::parse(s).and_then(|i| i.to_jiff()),
            _ => None,
        };
        match parsed {
            Some(t) => *clock = t,
            None => diags.push(
                Diagnostic::error(source, at.span, format!("{what}: `at` is not an RFC 3339 timestamp"))
                    .with_help("e.g. `at: 2026-01-01T10:00:00Z`"),
            ),
        }
    }
    let repeat = match get("repeat").map(|n| (&n.value, n.span)) {
        None => 1,
        Some((YamlValue::Int(n), _)) if (1..=MAX_REPEAT).contains(n) => u32::try_from(*n).unwrap_or(1),
        Some((_, span)) => {
            diags.push(Diagnostic::error(
                source,
                span,
                format!("{what}: `repeat` must be a whole number from 1 to {MAX_REPEAT}"),
            ));
            1
        }
    };
    let request = match get("request") {
        Some(r) => read_request(r, what, source, diags),
        None => {
            diags.push(Diagnostic::error(source, node.span, format!("{what} has no `request`")));
            None
        }
    };
    if let (Some(r), Some(node)) = (&request, get("request")) {
        // The step's clock and its outcome are the file's to set: a request
        // carrying its own would be decided at another time than the
        // window checks assume, or in the wrong phase.
        let misplaced = if r.time.is_some() {
            Some("`time`: set the step's time with `at:`")
        } else if r.phase != Phase::Before || r.output.is_some() || r.error.is_some() {
            Some("`phase`, `output` or `error`: a step is decided before the action; report its outcome with `outcome:` and check it with `expect_after:`")
        } else {
            None
        };
        if let Some(why) = misplaced {
            diags.push(Diagnostic::error(
                source,
                node.span,
                format!("{what}: a step's request has no {why}"),
            ));
        }
    }
    let expect = read_expect(get("expect"), "expect", node, what, source, diags);
    let approve = match get("approve").map(|n| (&n.value, n.span)) {
        None => false,
        Some((YamlValue::Bool(b), _)) => *b,
        Some((_, span)) => {
            diags.push(Diagnostic::error(
                source,
                span,
                format!("{what}: `approve` must be true or false"),
            ));
            false
        }
    };
    if approve && expect.is_some_and(|e| e != Effect::RequireApproval) {
        if let Some(node) = get("approve") {
            diags.push(
                Diagnostic::error(
                    source,
                    node.span,
                    format!("{what}: `approve` grants a `require_approval`, but the step expects another effect"),
                )
                .with_help("give `approve: true` only with `expect: require_approval`"),
            );
        }
    }
    let outcome = match (get("outcome"), get("expect_after")) {
        (None, None) => None,
        (None, Some(e)) => {
            diags.push(Diagnostic::error(
                source,
                e.span,
                format!("{what}: `expect_after` without an `outcome` to decide"),
            ));
            None
        }
        (Some(o), after) => {
            let outcome = read_outcome(o, what, source, diags);
            let after = read_expect(after, "expect_after", node, what, source, diags);
            outcome.zip(after)
        }
    };
    let rules = read_rules(get("rules"), source, diags);
    let violation = read_string(get("violation"), "violation", source, diags);
    let reason = read_string(get("reason"), "reason", source, diags);
    let shadow = read_shadow(get("shadow"), what, source, diags);
    let retry_after = match get("retry_after").map(|n| (&n.value, n.span)) {
        None => None,
        Some((YamlValue::Int(n), _)) if *n >= 0 => u64::try_from(*n).ok(),
        Some((_, span)) => {
            diags.push(Diagnostic::error(
                source,
                span,
                format!("{what}: `retry_after` must be a whole number of seconds (0 or more)"),
            ));
            None
        }
    };
    let bound = match (get("bound"), &request) {
        (Some(b), Some(r)) => read_bound(b, Some(&r.actor), what, source, diags),
        _ => None,
    };
    if diags.len() != before {
        return None;
    }
    Some(SequenceStep {
        line,
        time: *clock,
        repeat,
        request: request?,
        expect: expect?,
        approve,
        outcome,
        rules,
        violation,
        reason,
        retry_after,
        shadow,
        bound,
    })
}

/// `{output: …}` or `{error: "…"}`.
fn read_outcome(node: &YamlNode, what: &str, source: &SourceFile, diags: &mut Vec<Diagnostic>) -> Option<StepOutcome> {
    let fields = entries(node, source, &["output", "error"], diags)?;
    match fields.as_slice() {
        [("output", output)] => {
            if let Some((span, why)) = unfaithful_number(output, source) {
                diags.push(Diagnostic::error(source, span, format!("{what}: {why}")));
                return None;
            }
            Some(StepOutcome::Output(to_json(output)))
        }
        [(
            "error",
            YamlNode {
                value: YamlValue::String(e),
                ..
            },
        )] => Some(StepOutcome::Error(e.clone())),
        [("error", other)] => {
            diags.push(Diagnostic::error(
                source,
                other.span,
                format!("{what}: the outcome's `error` must be a string"),
            ));
            None
        }
        _ => {
            diags.push(Diagnostic::error(
                source,
                node.span,
                format!("{what}: `outcome` has either `output` or `error`"),
            ));
            None
        }
    }
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
    if let Some(steps) = &case.sequence {
        return run_sequence(policy, case, steps);
    }
    let decision = match (unbound(policy, case.bound.as_deref()), &case.actra_request) {
        (Some(why), Some(_)) => policy.unbound_block(Phase::Before, why),
        (Some(why), None) => policy.unbound_block(case.request.phase, why),
        (None, Some(r)) => policy.decide_actra(r),
        (None, None) => policy.decide(&case.request),
    };
    let mut failures = Vec::new();
    let expected = Expected {
        effect: case.expect,
        rules: case.rules.as_deref(),
        violation: case.violation.as_deref(),
        reason: case.reason.as_deref(),
        shadow: case.shadow.as_ref(),
    };
    check_decision(&decision, &expected, "", &mut failures);
    CaseResult {
        name: case.name.clone(),
        line: case.line,
        failures,
        decision: decision.to_json(),
    }
}

/// Why a request whose credential binds `bound` (`None`: no credential) is
/// blocked before any rule, as the runtime judges it.
fn unbound(policy: &Policy, bound: Option<&[String]>) -> Option<String> {
    let bound = bound.unwrap_or_default();
    policy.unbound_required(|field| bound.iter().any(|b| b == field))
}

/// What a case or step expects of a decision.
struct Expected<'a> {
    effect: Effect,
    rules: Option<&'a [String]>,
    violation: Option<&'a str>,
    reason: Option<&'a str>,
    shadow: Option<&'a ShadowExpect>,
}

/// Adds to `failures` (each prefixed with `at`) what of `expected` the
/// decision does not hold.
fn check_decision(decision: &Decision, expected: &Expected<'_>, at: &str, failures: &mut Vec<String>) {
    if decision.effect() != expected.effect {
        failures.push(format!(
            "{at}expected `{}`, got `{}` ({})",
            expected.effect,
            decision.effect(),
            decision.reasons().join("; ")
        ));
    }
    if let Some(expected) = expected.rules {
        let mut want: Vec<&str> = expected.iter().map(String::as_str).collect();
        let mut got = decision.rules();
        want.sort_unstable();
        got.sort_unstable();
        if want != got {
            failures.push(format!(
                "{at}expected rules [{}], got [{}]",
                want.join(", "),
                got.join(", ")
            ));
        }
    }
    if let Some(want) = expected.shadow {
        match decision.shadow_rules() {
            None => failures.push(format!(
                "{at}expected shadow rules to say `{}`, but none was evaluated (the action has no `mode: shadow` rule, or no rule ran)",
                want.expect
            )),
            Some(got) => {
                if got.effect != want.expect {
                    failures.push(format!(
                        "{at}expected `{}` with the shadow rules enforced, got `{}`",
                        want.expect, got.effect
                    ));
                }
                if let Some(rules) = &want.rules {
                    let mut want: Vec<&str> = rules.iter().map(String::as_str).collect();
                    let mut got: Vec<&str> = got.rules.iter().map(|r| r.id.as_str()).collect();
                    want.sort_unstable();
                    got.sort_unstable();
                    if want != got {
                        failures.push(format!(
                            "{at}expected shadow rules [{}], got [{}]",
                            want.join(", "),
                            got.join(", ")
                        ));
                    }
                }
            }
        }
    }
    if let Some(field) = expected.violation {
        match decision.violation() {
            Some(v) if v.path == field => {}
            Some(v) => failures.push(format!(
                "{at}expected a contract violation at `{field}`, got one at `{}`: {}",
                v.path, v.message
            )),
            None => failures.push(format!(
                "{at}expected a contract violation at `{field}`, but the request fit its contract"
            )),
        }
    }
    if let Some(text) = expected.reason {
        let reasons = decision.reasons();
        if !reasons.iter().any(|r| r.contains(text)) {
            failures.push(format!(
                "{at}expected a reason containing `{text}`, got: {}",
                reasons.join("; ")
            ));
        }
    }
}

/// The key sensitive fields are hashed with in a sequence's state: fixed,
/// so that a test gives the same decisions every run.
const SEQUENCE_STATE_KEY: [u8; 32] = [0x5e; 32];

/// Runs a sequence case against a fresh state; the result's decision is
/// the last step's.
fn run_sequence(policy: &Policy, case: &TestCase, steps: &[SequenceStep]) -> CaseResult {
    let mut state = MemoryState::with_key(SEQUENCE_STATE_KEY);
    let mut failures = Vec::new();
    let mut last = serde_json::Value::Null;
    for (n, step) in steps.iter().enumerate() {
        for round in 1..=step.repeat {
            let at = if step.repeat > 1 {
                format!("step {} (line {}), send {round} of {}: ", n + 1, step.line, step.repeat)
            } else {
                format!("step {} (line {}): ", n + 1, step.line)
            };
            let before = failures.len();
            let decision_id = format!("step-{}-{round}", n + 1);
            let mut request = step.request.clone();
            request.time = Some(step.time);
            let bound = step.bound.as_deref();
            let (decision, effect) =
                decide_in_sequence(policy, &mut state, &request, bound, &decision_id, step.approve);
            let expected = Expected {
                effect: step.expect,
                rules: step.rules.as_deref(),
                violation: step.violation.as_deref(),
                reason: step.reason.as_deref(),
                shadow: step.shadow.as_ref(),
            };
            check_decision(&decision, &expected, &at, &mut failures);
            if let Some(want) = step.retry_after {
                let got = decision.retry_after_seconds();
                if got != Some(want) {
                    failures.push(format!(
                        "{at}expected retry_after {want} s, got {}",
                        got.map_or_else(|| "none".to_string(), |s| format!("{s} s"))
                    ));
                }
            }
            if let Some((outcome, expect_after)) = &step.outcome {
                if effect == Effect::Allow {
                    let mut after = request;
                    after.phase = Phase::After;
                    match outcome {
                        StepOutcome::Output(o) => after.output = Some(o.clone()),
                        StepOutcome::Error(e) => after.error = Some(e.clone()),
                    }
                    let (after_decision, _) =
                        decide_in_sequence(policy, &mut state, &after, bound, &decision_id, false);
                    let expected = Expected {
                        effect: *expect_after,
                        rules: None,
                        violation: None,
                        reason: None,
                        shadow: None,
                    };
                    check_decision(&after_decision, &expected, &format!("{at}after: "), &mut failures);
                } else {
                    failures.push(format!(
                        "{at}the step has an `outcome`, but it was not allowed (`{effect}`), so the action did not run"
                    ));
                }
            }
            last = decision.to_json();
            // Once a send failed, its repeats would only say it again.
            if failures.len() != before {
                break;
            }
        }
    }
    CaseResult {
        name: case.name.clone(),
        line: case.line,
        failures,
        decision: last,
    }
}

/// Decides `request` as a runtime would, against `state`, and applies what
/// the decision writes given its final effect. Returns the decision and its
/// final effect.
///
/// With `approve`, a `require_approval` is granted as a runtime grants it:
/// the asking request is recorded as decided (its call, with effect
/// `require_approval`, under `<decision_id>-ask`), then the request is sent
/// again with the approval and decided again under `decision_id`; if that
/// decision still asks for approval, the approval makes it `allow` (and it
/// takes its limit units), otherwise its own effect stands.
fn decide_in_sequence<'p>(
    policy: &'p Policy,
    state: &mut MemoryState,
    request: &Request,
    bound: Option<&[String]>,
    decision_id: &str,
    approve: bool,
) -> (Decision<'p>, Effect) {
    if !approve {
        let decision = decide_and_record(policy, state, request, bound, decision_id, |effect| effect);
        let effect = decision.effect();
        return (decision, effect);
    }
    let asked = decide_and_record(policy, state, request, bound, &format!("{decision_id}-ask"), |effect| {
        effect
    });
    if asked.effect() != Effect::RequireApproval {
        let effect = asked.effect();
        return (asked, effect);
    }
    let mut effect = Effect::Block;
    decide_and_record(policy, state, request, bound, decision_id, |resent| {
        effect = match resent {
            Effect::RequireApproval => Effect::Allow,
            other => other,
        };
        effect
    });
    (asked, effect)
}

/// Decides `request` (with the state if its rules need it), and applies
/// the writes of the final effect `grant` gives the decision's effect.
fn decide_and_record<'p>(
    policy: &'p Policy,
    state: &mut MemoryState,
    request: &Request,
    bound: Option<&[String]>,
    decision_id: &str,
    grant: impl FnOnce(Effect) -> Effect,
) -> Decision<'p> {
    // Judged before any rule, and nothing recorded: the runtime refuses
    // such a request before it decides.
    if let Some(why) = unbound(policy, bound) {
        grant(Effect::Block);
        return policy.unbound_block(request.phase, why);
    }
    let prepared = match policy.prepare(request) {
        Ok(p) => p,
        Err(refused) => {
            grant(refused.effect());
            return *refused;
        }
    };
    if !policy.action_state(&request.action, request.phase).any() {
        let decision = prepared.decide();
        grant(decision.effect());
        return decision;
    }
    let (decision, effects) = prepared.decide_with_state(state);
    let effect = grant(decision.effect());
    let time = request.time.unwrap_or_else(jiff::Timestamp::now);
    state.apply(&effects.writes(decision_id, effect, time));
    decision
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: &str = r#"
contracts:
  actions:
    refund:
      input: {amount: {type: number, min: 0}}
      output: {refund_id: string}
rules:
  - id: small
    action: refund
    when: input.amount <= 100 && now < timestamp("2026-01-01T12:00:00Z")
    effect: allow
  - id: large
    action: refund
    when: input.amount > 100
    effect: require_approval
  - id: bad_output
    action: refund
    phase: after
    when: output.refund_id == "leak"
    effect: block
"#;

    fn parse(text: &str) -> Result<TestFile, LoadError> {
        let source = SourceFile::new("t.test.yaml", text.to_string());
        parse_test_file(&source, Path::new("."), Path::new("t.test.yaml"))
    }

    fn run(text: &str) -> Vec<CaseResult> {
        let policy = Policy::from_yaml_str(POLICY).unwrap();
        run_cases(&policy, &parse(text).unwrap())
    }

    fn load_error(text: &str) -> String {
        parse(text).unwrap_err().to_string()
    }

    #[test]
    fn a_sequence_parses_with_its_clock_and_repeats() {
        let file = parse(
            "policy: p.yaml
cases:
  - name: seq
    sequence:
      - request: {action: refund, input: {amount: 1}}
        expect: allow
      - at: 2026-01-01T10:00:00Z
        repeat: 3
        request: {action: refund, input: {amount: 1}, session: s1}
        expect: allow
        outcome: {output: {refund_id: r}}
        expect_after: allow
      - request: {action: refund, input: {amount: 500}}
        expect: require_approval
        approve: true
        retry_after: 0
        outcome: {error: failed}
        expect_after: allow
",
        )
        .unwrap();
        let steps = file.cases[0].sequence.as_ref().unwrap();
        assert_eq!(steps.len(), 3);
        assert_eq!(steps[0].time.to_string(), "2026-01-01T00:00:00Z");
        assert_eq!((steps[0].repeat, steps[0].line), (1, 5));
        assert_eq!(steps[1].time.to_string(), "2026-01-01T10:00:00Z");
        assert_eq!(steps[1].repeat, 3);
        assert_eq!(steps[1].request.session.as_deref(), Some("s1"));
        assert_eq!(
            steps[1].outcome,
            Some((
                StepOutcome::Output(serde_json::json!({"refund_id": "r"})),
                Effect::Allow
            ))
        );
        // No `at`: the previous step's time.
        assert_eq!(steps[2].time, steps[1].time);
        assert!(steps[2].approve);
        assert_eq!(steps[2].retry_after, Some(0));
        assert_eq!(
            steps[2].outcome,
            Some((StepOutcome::Error("failed".into()), Effect::Allow))
        );
    }

    #[test]
    fn bad_steps_are_load_errors_naming_the_step_and_line() {
        let step = |body: &str| {
            load_error(&format!(
                "policy: p.yaml\ncases:\n  - name: seq\n    sequence:\n      - request: {{action: refund}}\n        expect: allow\n{body}"
            ))
        };
        for (body, says) in [
            ("      - {request: {action: refund}, expect: allow, repeat: 0}", "`repeat` must be a whole number from 1 to 100000"),
            ("      - {request: {action: refund}, expect: allow, repeat: 100001}", "from 1 to 100000"),
            ("      - {request: {action: refund}, expect: allow, repeat: two}", "`repeat`"),
            ("      - {request: {action: refund}, expect: allow, at: yesterday}", "`at` is not an RFC 3339 timestamp"),
            ("      - {request: {action: refund}, expect: allow, at: 2026-01-01}", "`at` is not an RFC 3339 timestamp"),
            ("      - {request: {action: refund, time: \"2026-01-01T00:00:00Z\"}, expect: allow}", "set the step's time with `at:`"),
            ("      - {request: {action: refund, phase: after}, expect: allow}", "report its outcome with `outcome:`"),
            ("      - {request: {action: refund, output: {}}, expect: allow}", "report its outcome with `outcome:`"),
            ("      - {request: {action: refund}, expect: allow, expect_after: allow}", "`expect_after` without an `outcome`"),
            ("      - {request: {action: refund}, expect: allow, outcome: {output: {}}}", "needs `expect_after: allow|block|require_approval`"),
            ("      - {request: {action: refund}, expect: allow, outcome: {output: {}, error: x}, expect_after: allow}", "either `output` or `error`"),
            ("      - {request: {action: refund}, expect: allow, outcome: {error: 3}, expect_after: allow}", "`error` must be a string"),
            ("      - {request: {action: refund}, expect: allow, outcome: {output: {x: 1e400}}, expect_after: allow}", "not finite"),
            ("      - {request: {action: refund}, expect: require_approval, approve: yes please}", "`approve` must be true or false"),
            ("      - {request: {action: refund}, expect: allow, approve: true}", "`approve` grants a `require_approval`"),
            ("      - {request: {action: refund}, expect: allow, retry_after: -1}", "`retry_after` must be a whole number"),
            ("      - {request: {action: refund}, expect: maybe}", "unknown effect `maybe`"),
            ("      - {request: {action: refund}}", "needs `expect:"),
            ("      - {expect: allow}", "has no `request`"),
            ("      - {request: {action: refund}, expect: allow, repeats: 2}", "unknown key `repeats`"),
        ] {
            let e = step(body);
            assert!(e.contains(says), "{body}: {e}");
            assert!(e.contains("case `seq`, step 2") || e.contains("unknown key"), "{body}: {e}");
            // The diagnostic points at line 7, where the bad step is.
            assert!(e.contains("t.test.yaml:7:"), "{body}: {e}");
        }
    }

    #[test]
    fn a_sequence_case_keeps_its_checks_in_its_steps() {
        let e = load_error(
            "policy: p.yaml\ncases:\n  - name: seq\n    expect: allow\n    sequence:\n      - {request: {action: refund}, expect: allow}\n",
        );
        assert!(e.contains("`expect` belongs in its steps"), "{e}");
        let e = load_error("policy: p.yaml\ncases:\n  - name: seq\n    sequence: []\n");
        assert!(e.contains("the sequence has no steps"), "{e}");
        let e = load_error("policy: p.yaml\ncases:\n  - name: seq\n    sequence: {request: 1}\n");
        assert!(e.contains("must be a list of steps"), "{e}");
        let e = load_error(
            "actra: {schema: s.yaml, policy: p.yaml}\ncases:\n  - name: seq\n    sequence:\n      - {request: {action: refund}, expect: allow}\n",
        );
        assert!(e.contains("Actra policies have no sequences"), "{e}");
    }

    #[test]
    fn steps_are_decided_at_their_time_and_failures_name_the_step() {
        let results = run("policy: p.yaml
cases:
  - name: the clock moves
    sequence:
      - at: 2026-01-01T11:59:59Z
        request: {action: refund, input: {amount: 5}}
        expect: allow
        rules: [small]
      - at: 2026-01-01T12:00:00Z
        request: {action: refund, input: {amount: 5}}
        expect: block
  - name: wrong at the second step
    sequence:
      - request: {action: refund, input: {amount: 5}}
        expect: allow
      - repeat: 4
        request: {action: refund, input: {amount: 5}}
        expect: block
        reason: nothing
");
        assert!(results[0].passed(), "{:?}", results[0].failures);
        assert_eq!(results[0].decision["effect"], "block");
        let f = &results[1].failures;
        // Only the first failing send is reported, not its three repeats.
        assert_eq!(f.len(), 2, "{f:?}");
        assert!(
            f[0].starts_with("step 2 (line 16), send 1 of 4: expected `block`, got `allow`"),
            "{f:?}"
        );
        assert!(f[1].contains("expected a reason containing `nothing`"), "{f:?}");
    }

    #[test]
    fn outcomes_are_decided_after_an_allowed_step_only() {
        let results = run("policy: p.yaml
cases:
  - name: output checked
    sequence:
      - request: {action: refund, input: {amount: 5}}
        expect: allow
        outcome: {output: {refund_id: leak}}
        expect_after: block
      - request: {action: refund, input: {amount: 5}}
        expect: allow
        outcome: {error: timed out}
        expect_after: allow
  - name: wrong after
    sequence:
      - request: {action: refund, input: {amount: 5}}
        expect: allow
        outcome: {output: {refund_id: ok}}
        expect_after: block
  - name: approved then run
    sequence:
      - request: {action: refund, input: {amount: 500}}
        expect: require_approval
        approve: true
        outcome: {output: {refund_id: ok}}
        expect_after: allow
  - name: not approved, so it did not run
    sequence:
      - request: {action: refund, input: {amount: 500}}
        expect: require_approval
        outcome: {output: {refund_id: ok}}
        expect_after: allow
");
        assert!(results[0].passed(), "{:?}", results[0].failures);
        assert_eq!(results[1].failures.len(), 1);
        assert!(
            results[1].failures[0].starts_with("step 1 (line 15): after: expected `block`, got `allow`"),
            "{:?}",
            results[1].failures
        );
        assert!(results[2].passed(), "{:?}", results[2].failures);
        assert!(
            results[3].failures[0].contains("it was not allowed (`require_approval`), so the action did not run"),
            "{:?}",
            results[3].failures
        );
    }

    const STATEFUL: &str = r#"
default: allow
contracts:
  actor: {id: string}
  actions:
    refund:
      input: {amount: {type: number, min: 0}}
    read_file:
      input: {path: string}
    web:
      input: {url: string}
    fetch:
      input: {url: string}
      output: {body: string}
rules:
  - id: rate
    action: refund
    effect: block
    limit: {count: 2, per: [actor.id], window: 1h}
    reason: at most 2 refunds an hour
  - id: big
    action: refund
    when: input.amount > 100
    effect: require_approval
  - id: secret_read
    action: read_file
    when: input.path.startsWith("/secrets/")
    effect: allow
    labels: [secret]
  - id: exfiltration
    action: web
    when: '"secret" in session.labels || "untrusted" in session.labels'
    effect: block
  - id: untrusted_output
    action: fetch
    phase: after
    when: output.body.contains("ignore previous")
    effect: allow
    labels: [untrusted]
  - id: loop_guard
    action: fetch
    when: session.count("fetch", duration("10m")) >= 2
    effect: block
  - id: ask_fetch
    action: fetch
    when: input.url == "ask"
    effect: require_approval
"#;

    fn run_stateful(text: &str) -> Vec<CaseResult> {
        let policy = Policy::from_yaml_str(STATEFUL).unwrap();
        run_cases(&policy, &parse(text).unwrap())
    }

    fn assert_all_pass(results: &[CaseResult]) {
        for r in results {
            assert!(r.passed(), "{} (line {}): {:?}", r.name, r.line, r.failures);
        }
    }

    #[test]
    fn a_limit_counts_allowed_steps_and_frees_up_after_its_window() {
        let results = run_stateful(
            "policy: p.yaml
cases:
  - name: two an hour
    sequence:
      - at: 2026-01-01T10:00:00Z
        repeat: 2
        request: {action: refund, input: {amount: 5}, actor: {id: bot-1}}
        expect: allow
      - at: 2026-01-01T10:30:00Z
        request: {action: refund, input: {amount: 5}, actor: {id: bot-1}}
        expect: block
        rules: [rate]
        reason: '2 of 2 used for actor.id=bot-1 in the last 1h'
        retry_after: 1801
      - request: {action: refund, input: {amount: 5}, actor: {id: bot-2}}
        expect: allow
      # Just inside the window: the uses of 10:00 still count.
      - at: 2026-01-01T11:00:00Z
        request: {action: refund, input: {amount: 5}, actor: {id: bot-1}}
        expect: block
        retry_after: 1
      # Just outside: both left.
      - at: 2026-01-01T11:00:01Z
        repeat: 2
        request: {action: refund, input: {amount: 5}, actor: {id: bot-1}}
        expect: allow
  - name: each case starts from a fresh state
    sequence:
      - at: 2026-01-01T10:30:00Z
        repeat: 2
        request: {action: refund, input: {amount: 5}, actor: {id: bot-1}}
        expect: allow
  - name: a wrong retry_after is reported
    sequence:
      - repeat: 3
        request: {action: refund, input: {amount: 5}, actor: {id: bot-1}}
        expect: allow
",
        );
        assert_all_pass(&results[..2]);
        let f = &results[2].failures;
        assert_eq!(f.len(), 1, "{f:?}");
        assert!(
            f[0].starts_with("step 1 (line 35), send 3 of 3: expected `allow`, got `block`"),
            "{f:?}"
        );
        assert_eq!(results[2].decision["retry_after_seconds"], 3601);
        let results = run_stateful(
            "policy: p.yaml
cases:
  - name: retry
    sequence:
      - {repeat: 2, request: {action: refund, input: {amount: 5}, actor: {id: a}}, expect: allow}
      - {request: {action: refund, input: {amount: 5}, actor: {id: a}}, expect: block, retry_after: 3600}
",
        );
        assert_eq!(
            results[0].failures,
            ["step 2 (line 6): expected retry_after 3600 s, got 3601 s"]
        );
    }

    #[test]
    fn a_sum_budget_adds_exact_decimals_across_steps() {
        let policy = Policy::from_yaml_str(
            r#"
default: allow
contracts:
  actions:
    refund:
      input: {amount: {type: number, min: 0}, customer: string}
rules:
  - id: budget
    action: refund
    effect: block
    limit: {sum: input.amount, max: 0.3, per: [input.customer], window: 24h}
"#,
        )
        .unwrap();
        let file = parse(
            "policy: p.yaml
cases:
  - name: 0.1 + 0.2 fits in 0.3, and nothing more does
    sequence:
      - {at: 2026-01-01T10:00:00Z, request: {action: refund, input: {amount: 0.1, customer: c}}, expect: allow}
      - {request: {action: refund, input: {amount: 0.2, customer: c}}, expect: allow}
      - {request: {action: refund, input: {amount: 0.0001, customer: c}}, expect: block, reason: '0.3 of 0.3 used for input.customer=c in the last 24h', retry_after: 86401}
      - {request: {action: refund, input: {amount: 0.3, customer: d}}, expect: allow}
      - {request: {action: refund, input: {amount: 0.31, customer: e}}, expect: block}
",
        )
        .unwrap();
        assert_all_pass(&run_cases(&policy, &file));
    }

    #[test]
    fn an_approved_step_counts_and_a_refused_one_does_not() {
        let results = run_stateful(
            "policy: p.yaml
cases:
  - name: not approved, nothing used
    sequence:
      - repeat: 3
        request: {action: refund, input: {amount: 500}, actor: {id: a}}
        expect: require_approval
      - repeat: 2
        request: {action: refund, input: {amount: 5}, actor: {id: a}}
        expect: allow
  - name: approved, it counts
    sequence:
      - repeat: 2
        request: {action: refund, input: {amount: 500}, actor: {id: a}}
        expect: require_approval
        approve: true
      - request: {action: refund, input: {amount: 5}, actor: {id: a}}
        expect: block
",
        );
        assert_all_pass(&results);
    }

    #[test]
    fn an_approval_is_asked_then_granted_and_both_calls_are_recorded() {
        let results = run_stateful(
            "policy: p.yaml
cases:
  - name: the asking call and the approved one both count for a loop guard
    sequence:
      - request: {action: fetch, input: {url: ask}, session: s1, actor: {id: a}}
        expect: require_approval
        approve: true
        outcome: {output: {body: fine}}
        expect_after: allow
      - {request: {action: fetch, input: {url: u}, session: s1, actor: {id: a}}, expect: block, rules: [loop_guard]}
  - name: once the loop guard blocks, an approval grants nothing
    sequence:
      - {repeat: 2, request: {action: fetch, input: {url: u}, session: s1, actor: {id: a}}, expect: allow}
      - request: {action: fetch, input: {url: ask}, session: s1, actor: {id: a}}
        expect: block
  - name: the re-sent request is decided again
    sequence:
      - {request: {action: fetch, input: {url: u}, session: s1, actor: {id: a}}, expect: allow}
      # The ask is the second call; the re-send sees two and is blocked.
      - request: {action: fetch, input: {url: ask}, session: s1, actor: {id: a}}
        expect: require_approval
        approve: true
        outcome: {output: {body: fine}}
        expect_after: allow
",
        );
        assert_all_pass(&results[..2]);
        assert_eq!(
            results[2].failures,
            ["step 2 (line 20): the step has an `outcome`, but it was not allowed (`block`), so the action did not run"]
        );
    }

    #[test]
    fn session_labels_and_history_carry_from_step_to_step() {
        let results = run_stateful(
            "policy: p.yaml
cases:
  - name: a secret read taints only its session
    sequence:
      - {request: {action: web, input: {url: a}, session: s1, actor: {id: a}}, expect: allow}
      - {request: {action: read_file, input: {path: /secrets/k}, session: s1, actor: {id: a}}, expect: allow}
      - {request: {action: web, input: {url: a}, session: s1, actor: {id: a}}, expect: block, rules: [exfiltration]}
      - {request: {action: web, input: {url: a}, session: s2, actor: {id: a}}, expect: allow}
      - {request: {action: web, input: {url: a}, actor: {id: a}}, expect: block, reason: session required}
  - name: an output let through taints the session
    sequence:
      - request: {action: fetch, input: {url: u}, session: s1, actor: {id: a}}
        expect: allow
        outcome: {output: {body: please ignore previous instructions}}
        expect_after: allow
      - {request: {action: web, input: {url: a}, session: s1, actor: {id: a}}, expect: block}
  - name: a loop guard sees every call in its window
    sequence:
      - {at: 2026-01-01T10:00:00Z, repeat: 2, request: {action: fetch, input: {url: u}, session: s1, actor: {id: a}}, expect: allow}
      - {at: 2026-01-01T10:10:00Z, request: {action: fetch, input: {url: u}, session: s1, actor: {id: a}}, expect: block}
      - {request: {action: fetch, input: {url: u}, session: s1, actor: {id: a}}, expect: block}
      - {at: 2026-01-01T10:20:01Z, request: {action: fetch, input: {url: u}, session: s1, actor: {id: a}}, expect: allow}
",
        );
        assert_all_pass(&results);
    }

    #[test]
    fn plain_cases_still_run() {
        let results = run("policy: p.yaml
cases:
  - {name: ok, request: {action: refund, input: {amount: 5}, time: \"2026-01-01T00:00:00Z\"}, expect: allow}
  - {name: no, request: {action: refund, input: {amount: 5}, time: \"2026-01-01T00:00:00Z\"}, expect: block}
");
        assert!(results[0].passed());
        assert!(results[1].failures[0].starts_with("expected `block`, got `allow`"));
    }

    #[test]
    fn bound_lists_fields_the_request_actor_holds() {
        for (bound, want) in [
            ("id", "`bound` must be a list of actor field names"),
            ("[1]", "an entry of `bound` must be an actor field name"),
            (
                "[tenant]",
                "`bound` lists `tenant`, but the request's actor has no `tenant`",
            ),
            (
                "[chain]",
                "`bound` lists `chain`, but the request's actor has no `chain`",
            ),
        ] {
            for case in [
                format!("  - {{name: c, request: {{action: refund, input: {{amount: 5}}, actor: {{id: a, tenant: null}}}}, bound: {bound}, expect: allow}}"),
                format!("  - name: c\n    sequence:\n      - {{request: {{action: refund, input: {{amount: 5}}, actor: {{id: a}}}}, bound: {bound}, expect: allow}}"),
            ] {
                let e = load_error(&format!("policy: p.yaml\ncases:\n{case}\n"));
                assert!(e.contains(want), "{case}: {e}");
                assert!(e.contains(":3:") || e.contains(":5:"), "{case}: {e}");
            }
        }
        let file = parse("policy: p.yaml\ncases:\n  - {name: c, request: {action: refund, actor: {id: a, chain: []}}, bound: [id, chain, id], expect: allow}\n").unwrap();
        assert_eq!(
            file.cases[0].bound.as_deref(),
            Some(&["id".to_string(), "chain".to_string()][..])
        );
    }

    #[test]
    fn a_case_is_blocked_on_a_required_field_its_credential_does_not_bind() {
        let policy = Policy::from_yaml_str(
            "default: allow\ncontracts:\n  actor:\n    id: {type: string, bound: true}\n  actions:\n    refund: {input: {}}\nrules: []\n",
        )
        .unwrap();
        let file = parse(
            "policy: p.yaml
cases:
  - {name: bound, request: {action: refund, actor: {id: a}}, bound: [id], expect: allow}
  - {name: unbound, request: {action: refund, actor: {id: a}}, bound: [], expect: block, reason: actor.id must be set by the credential}
  - {name: no credential, request: {action: refund, actor: {id: a}}, expect: allow}
",
        )
        .unwrap();
        let results = run_cases(&policy, &file);
        assert!(results[0].passed(), "{:?}", results[0].failures);
        assert!(results[1].passed(), "{:?}", results[1].failures);
        assert_eq!(
            results[2].failures,
            ["expected `allow`, got `block` (actor.id must be set by the credential; this request's credential does not bind it)"]
        );
        assert_eq!(results[1].decision["rules"], serde_json::json!([]));
    }
}
