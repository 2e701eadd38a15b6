//! The untyped policy tree: what the files say, with spans, before any
//! name resolution or type checking.
//!
//! Both the native format and (later) the Actra reader produce this tree;
//! [`crate::check`] turns it into the compiled IR.

pub mod expr;
pub mod print;

use crate::source::{SourceFile, Span};
pub use expr::{BinaryOp, Expr, ExprKind, Name, UnaryOp};

/// A value with the span it was written at.
#[derive(Clone, Debug, PartialEq)]
pub struct Spanned<T> {
    /// The value.
    pub value: T,
    /// Where it was written.
    pub span: Span,
}

impl<T> Spanned<T> {
    /// Pairs a value with its span.
    pub fn new(value: T, span: Span) -> Self {
        Spanned { value, span }
    }
}

/// The three outcomes a rule or a policy default can have.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Effect {
    /// Let the action run.
    Allow,
    /// Let it run only after a person approves.
    RequireApproval,
    /// Do not let it run.
    Block,
}

impl Effect {
    /// The spelling used in files and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Effect::Allow => "allow",
            Effect::RequireApproval => "require_approval",
            Effect::Block => "block",
        }
    }

    /// Parses the file/JSON spelling.
    pub fn parse(text: &str) -> Option<Effect> {
        match text {
            "allow" => Some(Effect::Allow),
            "require_approval" => Some(Effect::RequireApproval),
            "block" => Some(Effect::Block),
            _ => None,
        }
    }
}

impl std::fmt::Display for Effect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// When a rule runs: on the request before the action, or on its outcome.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Before the action runs (sees `input`).
    #[default]
    Before,
    /// After the action ran (also sees `output`).
    After,
}

impl Phase {
    /// The spelling used in files and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Before => "before",
            Phase::After => "after",
        }
    }
}

/// How matching rules combine into one effect.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Combining {
    /// Rein's native semantics: every matching rule counts; `block` beats
    /// `require_approval` beats `allow`; rule order never matters.
    #[default]
    DenyOverrides,
    /// Actra's semantics: the rules that apply to the action are tried in
    /// the order of the rule list and the first whose condition holds
    /// decides alone, whatever its effect; when none holds, the default
    /// applies. The Actra reader lists each action's own rules (in file
    /// order) before the global ones (in file order), which gives Actra's
    /// "action rules, then global rules, then `allow`".
    FirstMatch,
}

/// One policy source file, parsed.
#[derive(Clone, Debug)]
pub struct PolicyFile {
    /// The file it came from.
    pub source: SourceFile,
    /// The `version` label the author gave, if any.
    pub version: Option<Spanned<String>>,
    /// The `default` effect for phase `before`, if set in this file.
    pub default: Option<Spanned<Effect>>,
    /// The `default` effect for phase `after`, if set in this file.
    pub default_after: Option<Spanned<Effect>>,
    /// The longest window a limit or session function may use, if set in
    /// this file.
    pub max_window: Option<Spanned<jiff::SignedDuration>>,
    /// Contracts declared in this file.
    pub contracts: ContractsAst,
    /// Rules declared in this file.
    pub rules: Vec<RuleAst>,
    /// How the rules of this file combine. Every file of one policy must
    /// agree; the native format always uses [`Combining::DenyOverrides`].
    pub combining: Combining,
    /// A derived source (contracts written by a program, such as the MCP
    /// gateway's from tool schemas): it holds only `contracts`, and each
    /// contract it declares yields to one a policy file declares.
    pub derived: bool,
}

/// The `contracts` section.
#[derive(Clone, Debug, Default)]
pub struct ContractsAst {
    /// Fields of the actor, if declared here.
    pub actor: Option<FieldsAst>,
    /// Fields of the snapshot, if declared here.
    pub snapshot: Option<FieldsAst>,
    /// Per-action contracts.
    pub actions: Vec<ActionContractAst>,
}

/// The contract of one action.
#[derive(Clone, Debug)]
pub struct ActionContractAst {
    /// The action's name.
    pub name: Spanned<String>,
    /// Its input fields.
    pub input: FieldsAst,
    /// Its output fields; `None` means the output is not checked field by
    /// field and `after` rules cannot read `output`.
    pub output: Option<FieldsAst>,
    /// Free text for people.
    pub description: Option<String>,
    /// Constant facts about the action (`tool:`, a mapping), readable in
    /// its rules as the root `tool`.
    pub tool: Option<Spanned<ConstFields>>,
}

/// The fields of a constant mapping, in the order written.
pub type ConstFields = Vec<(Spanned<String>, Spanned<ConstAst>)>;

/// A constant written in a policy (the values of `tool:`).
#[derive(Clone, Debug, PartialEq)]
pub enum ConstAst {
    /// A string.
    String(String),
    /// A boolean.
    Bool(bool),
    /// An integer.
    Int(i64),
    /// A finite float.
    Float(f64),
    /// A list.
    List(Vec<Spanned<ConstAst>>),
    /// A mapping of field names to constants, in the order written.
    Object(ConstFields),
}

/// Whether fields that the contract does not declare are refused or dropped.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum ExtraFields {
    /// An undeclared field breaks the contract.
    #[default]
    Reject,
    /// Undeclared fields are dropped before rules see the value.
    Ignore,
}

/// A set of named fields (an object type).
#[derive(Clone, Debug, Default)]
pub struct FieldsAst {
    /// The fields in the order written.
    pub fields: Vec<FieldAst>,
    /// What to do with undeclared fields.
    pub extra: ExtraFields,
    /// Where the set was written.
    pub span: Span,
}

/// One declared field.
#[derive(Clone, Debug)]
pub struct FieldAst {
    /// Its name.
    pub name: Spanned<String>,
    /// Its type.
    pub ty: Spanned<TypeAst>,
    /// May be absent.
    pub optional: bool,
    /// Store as a keyed hash in the audit log, never in clear.
    pub sensitive: bool,
    /// Names one attempt (a tool-call or request id): left out of what an
    /// approval covers. Top-level fields of input, actor and snapshot only.
    pub per_call: bool,
    /// Must be set by the request's credential (`bound: true`), never by
    /// its body. Top-level fields of the actor only.
    pub bound: Option<Span>,
    /// The type was not written (`chain: {bound: true}`): the reserved
    /// `actor.chain` takes its type from the language.
    pub type_omitted: bool,
    /// Value constraints.
    pub constraints: ConstraintsAst,
    /// Free text for people.
    pub description: Option<String>,
}

/// A field type as written.
#[derive(Clone, Debug)]
pub enum TypeAst {
    /// `string`
    String,
    /// `int` (64-bit signed)
    Int,
    /// `number` (64-bit float)
    Number,
    /// `bool`
    Bool,
    /// `timestamp` (RFC 3339 text)
    Timestamp,
    /// `duration` (`1h30m`, `250ms`)
    Duration,
    /// `list<T>`
    List(Box<ItemAst>),
    /// `map<T>`: string keys to T
    Map(Box<ItemAst>),
    /// An object with declared fields.
    Object(FieldsAst),
    /// One of a fixed set of strings.
    Enum(Vec<Spanned<String>>),
}

/// The elements of a list or the values of a map: their type and the
/// constraints each one must meet.
#[derive(Clone, Debug)]
pub struct ItemAst {
    /// Their type.
    pub ty: Spanned<TypeAst>,
    /// What each must meet (`items: {type: string, pattern: ...}`).
    pub constraints: ConstraintsAst,
}

impl ItemAst {
    /// Elements of a type with no constraints (`list<string>`).
    pub fn plain(ty: Spanned<TypeAst>) -> ItemAst {
        ItemAst {
            ty,
            constraints: ConstraintsAst::default(),
        }
    }
}

/// A number bound written in a policy (`min`, `max`), kept exact: an
/// integer stays an integer, so `max: 9007199254740993` is not rounded to a
/// double.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum NumberLit {
    /// An integer.
    Int(i64),
    /// A finite float.
    Float(f64),
}

impl NumberLit {
    /// Compares two numbers exactly (no rounding of large integers).
    pub fn cmp_exact(self, other: NumberLit) -> std::cmp::Ordering {
        use std::cmp::Ordering;
        match (self, other) {
            (NumberLit::Int(a), NumberLit::Int(b)) => a.cmp(&b),
            // Bounds are finite, so these always order.
            (NumberLit::Int(a), NumberLit::Float(b)) => crate::value::cmp_int_float(a, b).unwrap_or(Ordering::Equal),
            (NumberLit::Float(a), NumberLit::Int(b)) => {
                crate::value::cmp_int_float(b, a).map_or(Ordering::Equal, Ordering::reverse)
            }
            (NumberLit::Float(a), NumberLit::Float(b)) => a.partial_cmp(&b).unwrap_or(Ordering::Equal),
        }
    }
}

impl std::fmt::Display for NumberLit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NumberLit::Int(i) => write!(f, "{i}"),
            NumberLit::Float(x) => write!(f, "{x}"),
        }
    }
}

/// A literal scalar in a constraint (`allowed` values).
#[derive(Clone, Debug, PartialEq)]
pub enum Literal {
    /// A string.
    String(String),
    /// An integer.
    Int(i64),
    /// A float.
    Float(f64),
    /// A boolean.
    Bool(bool),
}

/// Value constraints on a field.
#[derive(Clone, Debug, Default)]
pub struct ConstraintsAst {
    /// Smallest allowed number.
    pub min: Option<Spanned<NumberLit>>,
    /// Largest allowed number.
    pub max: Option<Spanned<NumberLit>>,
    /// Shortest allowed length (characters, items or entries).
    pub min_len: Option<Spanned<u64>>,
    /// Longest allowed length.
    pub max_len: Option<Spanned<u64>>,
    /// A regular expression the whole string must match somewhere.
    pub pattern: Option<Spanned<String>>,
    /// The only values allowed.
    pub allowed: Option<Spanned<Vec<Literal>>>,
}

/// Who may approve a `require_approval` rule and for how long a grant holds.
#[derive(Clone, Debug)]
pub struct ApprovalAst {
    /// The role an approver must have.
    pub role: Spanned<String>,
    /// How long a grant stays valid, in seconds.
    pub ttl_seconds: Option<Spanned<u64>>,
}

/// A rule's `limit` as written.
#[derive(Clone, Debug)]
pub struct LimitAst {
    /// What it counts.
    pub measure: LimitMeasure,
    /// The `per` key expressions; empty for one global bucket.
    pub per: Vec<Expr>,
    /// The sliding window.
    pub window: Spanned<jiff::SignedDuration>,
    /// The whole `limit` mapping.
    pub span: Span,
}

/// What a limit counts.
#[derive(Clone, Debug)]
pub enum LimitMeasure {
    /// `count: N`: at most N calls.
    Count(Spanned<u64>),
    /// `sum: <expr>` with `max: X`: at most X as the sum of the expression.
    Sum {
        /// The expression summed (a numeric input field).
        expr: Expr,
        /// The most the sum may reach, exact as written.
        max: Spanned<rust_decimal::Decimal>,
    },
}

/// One rule as written.
#[derive(Clone, Debug)]
pub struct RuleAst {
    /// Unique id.
    pub id: Spanned<String>,
    /// The actions it targets: names or globs (`file.*`).
    pub targets: Vec<Spanned<String>>,
    /// When it runs.
    pub phase: Phase,
    /// Its condition, spans already in file coordinates; `None` = always.
    pub when: Option<Expr>,
    /// What it decides when it matches.
    pub effect: Spanned<Effect>,
    /// Text for the agent and the audit log.
    pub reason: Option<String>,
    /// Approval obligation for `require_approval`.
    pub approval: Option<ApprovalAst>,
    /// Labels attached to the session when it matches.
    pub labels: Vec<Spanned<String>>,
    /// A limit on the calls the rule counts (phase `before` only).
    pub limit: Option<LimitAst>,
    /// `mode: shadow`: evaluated and recorded beside the decision, never
    /// enforced (`false`, the default, is `mode: enforce`).
    pub shadow: bool,
    /// Index of the file in the policy's file list.
    pub file: usize,
    /// The whole rule's span.
    pub span: Span,
}
