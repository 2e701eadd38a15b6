//! The compiled policy: typed, indexed by action, every regex and glob
//! compiled. Only [`crate::check`] builds one.

use crate::ast::{Combining, Effect, Phase};
use crate::source::{SourceFile, Span};
use crate::types::{ObjectType, Type};
use crate::value::Value;
use globset::GlobMatcher;
use regex::Regex;
use rustc_hash::{FxHashMap, FxHashSet};
use std::sync::{Arc, OnceLock};

/// A regex or glob kept with its source. The checker compiles it (that is
/// how it knows the source is valid); a policy read from the cache compiles
/// it on first use, so a process deciding one request builds only the
/// automata that request reaches.
pub(crate) struct Lazy<T> {
    source: String,
    compiled: OnceLock<Result<T, String>>,
}

/// What [`Lazy`] can hold.
pub(crate) trait Compile: Sized {
    fn compile(source: &str) -> Result<Self, String>;
}

impl Compile for Regex {
    fn compile(source: &str) -> Result<Regex, String> {
        crate::check::compile_regex(source)
    }
}

impl Compile for GlobMatcher {
    fn compile(source: &str) -> Result<GlobMatcher, String> {
        crate::check::compile_glob(source)
    }
}

impl Compile for crate::globs::GlobAutomaton {
    fn compile(source: &str) -> Result<crate::globs::GlobAutomaton, String> {
        crate::globs::GlobAutomaton::new(source)
    }
}

impl<T: Compile> Lazy<T> {
    /// One compiled by the checker.
    pub fn compiled(source: String, value: T) -> Lazy<T> {
        Lazy {
            source,
            compiled: OnceLock::from(Ok(value)),
        }
    }

    /// The text it was written as.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The compiled matcher; an error only if a cached source no longer
    /// compiles (the caller fails closed).
    pub fn get(&self) -> Result<&T, String> {
        match self.compiled.get_or_init(|| T::compile(&self.source)) {
            Ok(t) => Ok(t),
            Err(e) => Err(format!("the pattern `{}` cannot be compiled: {e}", self.source)),
        }
    }
}

impl<T> std::fmt::Debug for Lazy<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Lazy").field(&self.source).finish()
    }
}

impl<T> serde::Serialize for Lazy<T> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.source)
    }
}

impl<'de, T> serde::Deserialize<'de> for Lazy<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Lazy<T>, D::Error> {
        Ok(Lazy {
            source: String::deserialize(d)?,
            compiled: OnceLock::new(),
        })
    }
}

/// The whole compiled policy.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub(crate) struct CompiledPolicy {
    /// Every governed action, by id.
    pub actions: Vec<ActionIr>,
    /// Action name → id.
    pub action_index: FxHashMap<String, u32>,
    /// The actor contract.
    pub actor: Arc<ObjectType>,
    /// The actor fields the policy requires its credential to set
    /// (`bound: true`), sorted.
    pub bound_actor: Vec<String>,
    /// The snapshot contract.
    pub snapshot: Arc<ObjectType>,
    /// Every rule, in load order (file order, then position).
    pub rules: Vec<RuleInfo>,
    /// The effect when no `before` rule matches.
    pub default: Effect,
    /// The effect when no `after` rule matches.
    pub default_after: Effect,
    /// How matches combine.
    pub combining: Combining,
    /// Hash of the policy sources (hex), reported in every decision.
    pub version_hash: String,
    /// The `version` label the author wrote, if any.
    pub version_label: Option<String>,
    /// The longest window any limit or session function may use
    /// (`max_window`, default 24h): how long state is kept.
    pub max_window: jiff::SignedDuration,
    /// True when some action reads or writes state in some phase.
    pub uses_state: bool,
    /// BLAKE3 of the contracts as compiled (see
    /// `check::contracts_fingerprint`): two policies with the same one
    /// prepare every request into the same typed values. `None` when they
    /// could not be hashed: then equal to none.
    pub contracts_fingerprint: Option<[u8; 32]>,
    /// The sources, for explanations; a cached policy gets the texts it was
    /// looked up by.
    #[serde(skip)]
    pub files: Vec<SourceFile>,
    /// Which of `files` are derived sources (by position; empty for a
    /// policy read back from the cache, which has none).
    #[serde(skip)]
    pub derived: Vec<bool>,
}

/// One action's contract and the rules that can apply to it.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub(crate) struct ActionIr {
    /// Its name, as a value (what `action` evaluates to).
    pub name: Value,
    /// Input contract.
    pub input: Arc<ObjectType>,
    /// Output contract, if declared.
    pub output: Option<Arc<ObjectType>>,
    /// Rules of phase `before`, in rule order.
    pub before: Vec<CompiledRule>,
    /// Rules of phase `after`, in rule order.
    pub after: Vec<CompiledRule>,
    /// `mode: shadow` rules of phase `before`: evaluated after the
    /// enforced ones and recorded, never enforced. Kept apart so that the
    /// enforced loops (and the analyses) never see them.
    pub shadow_before: Vec<CompiledRule>,
    /// `mode: shadow` rules of phase `after`.
    pub shadow_after: Vec<CompiledRule>,
    /// What the `before` rules need of the state.
    pub state_before: StateNeeds,
    /// What the `after` rules need of the state.
    pub state_after: StateNeeds,
    /// Its calls are kept in their session: some rule of the policy reads
    /// them (`session.count`, `session.sum`, `session.calls`).
    pub recorded: bool,
    /// Its `tool:` facts, if the contract declares them.
    pub tool: Option<ToolFacts>,
    /// Its rules in flat form, what decisions run (see [`crate::flat`]):
    /// built from the rules above after compiling and after reading from
    /// the cache, never stored.
    #[serde(skip)]
    pub flat: crate::flat::ActionPrograms,
}

/// An action's `tool:` constants: their type (an object whose fields are
/// the keys written) and their values laid out by it, which rules read as
/// the root `tool`.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub(crate) struct ToolFacts {
    pub ty: Arc<ObjectType>,
    pub values: Vec<Value>,
}

/// What one action's rules of one phase need of the state.
#[derive(Clone, Copy, Debug, Default, serde::Serialize, serde::Deserialize)]
pub(crate) struct StateNeeds {
    /// A rule has a limit or reads a session fact.
    pub reads: bool,
    /// The decision writes: limit units, the call or its output, labels.
    pub writes: bool,
    /// The first rule (by index) that reads the session: a request without
    /// one is refused, naming it. Also set when what this decision writes
    /// to the session (its call, its output, labels) is read by a rule of
    /// another action: leaving the session out must not hide the call from
    /// it.
    pub session_rule: Option<u32>,
    /// The first rule of this phase that attaches labels.
    pub labels_rule: Option<u32>,
}

impl ActionIr {
    /// The action's name.
    pub fn name(&self) -> &str {
        self.name.as_str().unwrap_or_default()
    }

    /// The values of its `tool:` facts (empty without any).
    pub fn tool_values(&self) -> &[Value] {
        self.tool.as_ref().map_or(&[], |t| &t.values)
    }

    /// The rules of one phase.
    pub fn rules(&self, phase: Phase) -> &[CompiledRule] {
        match phase {
            Phase::Before => &self.before,
            Phase::After => &self.after,
        }
    }

    /// The flat program of the rules of one phase.
    pub fn flat(&self, phase: Phase) -> &crate::flat::Program {
        match phase {
            Phase::Before => &self.flat.before,
            Phase::After => &self.flat.after,
        }
    }

    /// The flat program of the `mode: shadow` rules of one phase.
    pub fn shadow_flat(&self, phase: Phase) -> &crate::flat::Program {
        match phase {
            Phase::Before => &self.flat.shadow_before,
            Phase::After => &self.flat.shadow_after,
        }
    }

    /// The `mode: shadow` rules of one phase.
    pub fn shadow_rules(&self, phase: Phase) -> &[CompiledRule] {
        match phase {
            Phase::Before => &self.shadow_before,
            Phase::After => &self.shadow_after,
        }
    }

    /// What the rules of one phase need of the state.
    pub fn state(&self, phase: Phase) -> &StateNeeds {
        match phase {
            Phase::Before => &self.state_before,
            Phase::After => &self.state_after,
        }
    }
}

/// What a rule says besides its condition.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub(crate) struct RuleInfo {
    /// Unique id.
    pub id: String,
    /// Its effect.
    pub effect: Effect,
    /// Text for the agent and the audit log.
    pub reason: Option<String>,
    /// Approval obligation.
    pub approval: Option<Approval>,
    /// Session labels attached on a match.
    pub labels: Vec<String>,
    /// Which file.
    pub file: usize,
    /// The condition's span, for explanations.
    pub when_span: Option<Span>,
    /// Its limit, for listings.
    pub limit: Option<crate::state::LimitInfo>,
    /// `mode: shadow`: evaluated and recorded, never enforced.
    pub shadow: bool,
}

/// Who may approve and for how long a grant holds.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Approval {
    /// The role an approver must have.
    pub role: String,
    /// Seconds a grant stays valid; `None` means the server's default.
    pub ttl_seconds: Option<u64>,
}

/// A rule's condition compiled for one action.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub(crate) struct CompiledRule {
    /// Index into [`CompiledPolicy::rules`].
    pub rule: u32,
    /// `None` means the rule always matches.
    pub cond: Option<Node>,
    /// The rule's limit, compiled for this action.
    pub limit: Option<Box<LimitIr>>,
}

/// A rule's `limit`, compiled for one action.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub(crate) struct LimitIr {
    /// The most a bucket may use in the window.
    pub max: rust_decimal::Decimal,
    /// What one call costs: `None` for a count (1), the `sum` expression
    /// otherwise.
    pub cost: Option<Node>,
    /// The `per` keys, in the order written.
    pub per: Vec<PerKey>,
    /// The sliding window.
    pub window: jiff::SignedDuration,
    /// Where the `limit` was written, for explanations.
    pub span: Span,
}

/// One `per` key of a limit.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub(crate) struct PerKey {
    /// The expression as written (on one line), what a bucket names.
    pub text: String,
    /// The typed expression.
    pub node: Node,
    /// It reads a sensitive field: the bucket keeps the keyed hash of its
    /// value, never the value.
    pub hashed: bool,
}

/// Which top-level variable a path starts from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub(crate) enum Root {
    Input,
    Output,
    Actor,
    Snapshot,
    /// The action's `tool:` facts (constants of its contract).
    Tool,
}

/// A typed expression node.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub(crate) struct Node {
    pub kind: NodeKind,
    /// Its source span, for explanations.
    pub span: Span,
    /// Its static type, to render values in explanations.
    pub ty: Type,
}

impl Node {
    /// The nodes directly under this one.
    pub fn children(&self) -> Vec<&Node> {
        match &self.kind {
            NodeKind::Const(_)
            | NodeKind::Path { .. }
            | NodeKind::ActionName
            | NodeKind::Now
            | NodeKind::ErrorText
            | NodeKind::Local(_)
            | NodeKind::SessionId
            | NodeKind::SessionLabels
            | NodeKind::SessionCount { .. }
            | NodeKind::SessionSum { .. }
            | NodeKind::SessionCalls { .. } => Vec::new(),
            NodeKind::Select { operand, .. }
            | NodeKind::MapGet { operand, .. }
            | NodeKind::Matches { operand, .. }
            | NodeKind::Glob { operand, .. }
            | NodeKind::GlobOverlap { operand, .. } => vec![operand],
            NodeKind::Has { base, .. } => vec![base],
            NodeKind::SessionHasLabel { label } => vec![label],
            NodeKind::Not(x) | NodeKind::Neg(x) => vec![x],
            NodeKind::Index { operand: a, index: b }
            | NodeKind::And(a, b)
            | NodeKind::Or(a, b)
            | NodeKind::Cmp { lhs: a, rhs: b, .. }
            | NodeKind::Arith { lhs: a, rhs: b, .. }
            | NodeKind::In { elem: a, coll: b }
            | NodeKind::HashedCmp {
                hashed: a, clear: b, ..
            }
            | NodeKind::Comprehension { range: a, body: b, .. } => vec![a, b],
            NodeKind::Cond { cond, then, otherwise } => vec![cond, then, otherwise],
            NodeKind::InStrings { elem, .. } => vec![elem],
            NodeKind::Call { args, .. } | NodeKind::List(args) => args.iter().collect(),
            NodeKind::MapLit(entries) => entries.iter().flat_map(|(k, v)| [k, v]).collect(),
        }
    }
}

/// One step when walking into a value.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub(crate) enum Step {
    /// Object field by position.
    Field(u32),
    /// Map entry by key.
    Key(String),
}

/// Built-in functions with one or two ordinary arguments.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) enum Builtin {
    Size,
    StartsWith,
    EndsWith,
    Contains,
    LowerAscii,
    UpperAscii,
    Trim,
    NormalizePath,
    Under,
    ToInt,
    ToNumber,
    ToString,
    ToTimestamp,
    ToDuration,
    ParseUrl,
    ParseIp,
    ParseCidr,
    CidrContains,
    UrlHost,
    UrlScheme,
    UrlPort,
    UrlPath,
    UrlQuery,
}

/// The comprehension macros.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) enum MacroKind {
    Exists,
    All,
    ExistsOne,
    Filter,
    Map,
}

/// Comparison operators.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) enum CmpOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

/// Arithmetic operators.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) enum ArithOp {
    Add,
    Sub,
    Mul,
    Div,
    Rem,
}

#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub(crate) enum NodeKind {
    Const(Value),
    /// A static path from a root through object fields.
    Path {
        root: Root,
        path: Box<[u32]>,
    },
    /// The action's name.
    ActionName,
    /// The request's time.
    Now,
    /// The error an action reported instead of an output (phase after).
    ErrorText,
    /// A comprehension variable.
    Local(u32),
    /// Field of a computed object.
    Select {
        operand: Box<Node>,
        index: u32,
    },
    /// Entry of a map by a key known at load time (`m.key`).
    MapGet {
        operand: Box<Node>,
        key: String,
    },
    /// `list[i]` or `map[k]`.
    Index {
        operand: Box<Node>,
        index: Box<Node>,
    },
    /// `has(...)`: walks `steps` from `base`; false at the first absent
    /// field or missing key.
    Has {
        base: Box<Node>,
        steps: Box<[Step]>,
    },
    Not(Box<Node>),
    Neg(Box<Node>),
    And(Box<Node>, Box<Node>),
    Or(Box<Node>, Box<Node>),
    Cond {
        cond: Box<Node>,
        then: Box<Node>,
        otherwise: Box<Node>,
    },
    Cmp {
        op: CmpOp,
        lhs: Box<Node>,
        rhs: Box<Node>,
    },
    Arith {
        op: ArithOp,
        lhs: Box<Node>,
        rhs: Box<Node>,
    },
    /// `x in list` or `key in map`.
    In {
        elem: Box<Node>,
        coll: Box<Node>,
    },
    /// `s in ["a", "b", ...]` with a literal list of strings.
    InStrings {
        elem: Box<Node>,
        set: FxHashSet<String>,
    },
    Call {
        func: Builtin,
        args: Box<[Node]>,
    },
    Matches {
        operand: Box<Node>,
        regex: Lazy<Regex>,
    },
    Glob {
        operand: Box<Node>,
        matcher: Lazy<GlobMatcher>,
    },
    /// `a.mayMatch(glob)` (the operand is a shell glob) and
    /// `a.globIgnoreCase(glob)` (the operand is a path).
    GlobOverlap {
        operand: Box<Node>,
        automaton: Lazy<crate::globs::GlobAutomaton>,
        operand_is_glob: bool,
        ignore_case: bool,
    },
    List(Box<[Node]>),
    MapLit(Box<[(Node, Node)]>),
    Comprehension {
        kind: MacroKind,
        range: Box<Node>,
        var: u32,
        body: Box<Node>,
    },
    /// `session.id`.
    SessionId,
    /// `session.labels`.
    SessionLabels,
    /// `label in session.labels`.
    SessionHasLabel {
        label: Box<Node>,
    },
    /// `session.count(pattern, window)`: earlier calls of these actions
    /// (sorted names), whatever their effect.
    SessionCount {
        actions: Box<[String]>,
        window: jiff::SignedDuration,
    },
    /// `session.sum(action, "input.x" | "output.x", window)` over the
    /// allowed earlier calls of `action`.
    SessionSum {
        action: String,
        output: bool,
        path: Box<[String]>,
        int: bool,
        window: jiff::SignedDuration,
    },
    /// `session.calls(action, window)`: the earlier calls, oldest first,
    /// typed by the node's type (a list of call objects).
    SessionCalls {
        action: String,
        window: jiff::SignedDuration,
    },
    /// `==` / `!=` between a sensitive field of an earlier call (stored as
    /// its keyed hash) and a value of the same type: the value is rendered
    /// and hashed, and the hashes compared.
    HashedCmp {
        ne: bool,
        hashed: Box<Node>,
        clear: Box<Node>,
    },
}
