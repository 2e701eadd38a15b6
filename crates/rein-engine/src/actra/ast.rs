//! Actra's files as read, with spans, before they are checked against the
//! schema and lowered to Rein's tree.

use crate::ast::{Effect, Spanned};
use crate::source::{SourceFile, Span};

/// A schema file.
#[derive(Clone, Debug)]
pub(crate) struct Schema {
    pub source: SourceFile,
    /// Declared actions, in file order.
    pub actions: Vec<ActionDecl>,
    /// The actor's fields.
    pub actor: Vec<FieldDecl>,
    /// The snapshot's fields.
    pub snapshot: Vec<FieldDecl>,
}

impl Schema {
    /// The action called `name`.
    pub fn action(&self, name: &str) -> Option<&ActionDecl> {
        self.actions.iter().find(|a| a.name.value == name)
    }
}

/// One action of the schema.
#[derive(Clone, Debug)]
pub(crate) struct ActionDecl {
    pub name: Spanned<String>,
    pub fields: Vec<FieldDecl>,
}

/// One field of a domain.
#[derive(Clone, Debug)]
pub(crate) struct FieldDecl {
    pub name: Spanned<String>,
    pub ty: FieldType,
}

/// Actra's three field types.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FieldType {
    String,
    Number,
    Boolean,
}

impl FieldType {
    /// The spelling in schema files.
    pub fn as_str(self) -> &'static str {
        match self {
            FieldType::String => "string",
            FieldType::Number => "number",
            FieldType::Boolean => "boolean",
        }
    }
}

/// A policy file.
#[derive(Clone, Debug)]
pub(crate) struct PolicyDoc {
    pub source: SourceFile,
    /// The `version` number.
    pub version: u32,
    /// The rules, in file order.
    pub rules: Vec<Rule>,
}

/// One rule as written.
#[derive(Clone, Debug)]
pub(crate) struct Rule {
    pub id: Spanned<String>,
    pub scope: Spanned<Scope>,
    pub when: Cond,
    pub effect: Spanned<Effect>,
    /// The whole rule.
    pub span: Span,
}

/// Which requests a rule is about.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Scope {
    /// `{action: name}`
    Action(Spanned<String>),
    /// `{global: true}` (or `false`, which is an error)
    Global(bool),
    /// `{actor: name}`: stored by Actra, never evaluated.
    Actor(Spanned<String>),
}

/// A rule's condition: one comparison, or a flat `all`/`any` of them.
#[derive(Clone, Debug)]
pub(crate) enum Cond {
    Atom(Atom),
    All(Vec<Atom>, Span),
    Any(Vec<Atom>, Span),
}

impl Cond {
    /// Every comparison in the condition.
    pub fn atoms(&self) -> &[Atom] {
        match self {
            Cond::Atom(a) => std::slice::from_ref(a),
            Cond::All(items, _) | Cond::Any(items, _) => items,
        }
    }
}

/// `{subject, operator, value}`
#[derive(Clone, Debug)]
pub(crate) struct Atom {
    pub subject: Subject,
    pub operator: Spanned<String>,
    pub value: Operand,
}

/// `{domain, field}`
#[derive(Clone, Debug)]
pub(crate) struct Subject {
    pub domain: Spanned<String>,
    pub field: Spanned<String>,
    pub span: Span,
}

impl Subject {
    /// `domain.field`, as governance's `allowed_fields` names it.
    pub fn path(&self) -> String {
        format!("{}.{}", self.domain.value, self.field.value)
    }
}

/// The right-hand side of a comparison.
#[derive(Clone, Debug)]
pub(crate) enum Operand {
    /// `{literal: scalar}`
    Literal(Spanned<Lit>),
    /// `{literal: [scalar, ...]}`: Rein's addition, for `in`/`not_in`.
    List(Vec<Spanned<Lit>>, Span),
    /// `{subject: {domain, field}}`
    Subject(Subject),
}

/// A literal scalar.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Lit {
    Str(String),
    Num(f64),
    Bool(bool),
}

impl Lit {
    /// The field type a literal can be compared with.
    pub fn ty(&self) -> FieldType {
        match self {
            Lit::Str(_) => FieldType::String,
            Lit::Num(_) => FieldType::Number,
            Lit::Bool(_) => FieldType::Boolean,
        }
    }
}

/// The comparison operators.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Op {
    Equals,
    NotEquals,
    GreaterThan,
    LessThan,
    In,
    NotIn,
}

impl Op {
    /// Every operator with its spelling.
    pub const ALL: [(&'static str, Op); 6] = [
        ("equals", Op::Equals),
        ("not_equals", Op::NotEquals),
        ("greater_than", Op::GreaterThan),
        ("less_than", Op::LessThan),
        ("in", Op::In),
        ("not_in", Op::NotIn),
    ];

    /// Reads an operator name (exact, lower case).
    pub fn parse(name: &str) -> Option<Op> {
        Op::ALL.iter().find(|(n, _)| *n == name).map(|(_, op)| *op)
    }

    /// The spelling in policy files.
    pub fn as_str(self) -> &'static str {
        Op::ALL.iter().find(|(_, op)| *op == self).map_or("?", |(n, _)| n)
    }
}
