//! Checked types: the contracts after resolution, and the types the
//! expression checker assigns.

use crate::ast::ExtraFields;
use crate::ir::Lazy;
use regex::Regex;
use rustc_hash::FxHashMap;
use std::fmt;
use std::sync::Arc;

/// The type of a value in a contract or an expression.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub enum Type {
    /// `null`
    Null,
    /// `bool`
    Bool,
    /// `int`
    Int,
    /// `number`
    Number,
    /// `string` (enums are strings with an allowed set)
    String,
    /// `timestamp`
    Timestamp,
    /// `duration`
    Duration,
    /// `list<T>`
    List(Box<Type>),
    /// `map<T>` with string keys
    Map(Box<Type>),
    /// An object with declared fields.
    Object(Arc<ObjectType>),
    /// A parsed URL (`url(s)`).
    Url,
    /// An IP address (`ip(s)`).
    Ip,
    /// A CIDR range (`cidr(s)`).
    Cidr,
    /// A sensitive field of an earlier call of the session: stored as the
    /// keyed hash (a string) of a value of the inner type, so it can only
    /// be compared for equality with a value of that type.
    Hashed(Box<Type>),
    /// Any type; only for the elements of an empty list literal.
    Dyn,
    /// Stands in after an error so one mistake reports once.
    Error,
}

impl Type {
    /// True for `int` and `number`.
    pub fn is_numeric(&self) -> bool {
        matches!(self, Type::Int | Type::Number | Type::Dyn | Type::Error)
    }

    /// True if a value of `other` may be used where `self` is expected.
    pub fn accepts(&self, other: &Type) -> bool {
        match (self, other) {
            (Type::Error | Type::Dyn, _) | (_, Type::Error | Type::Dyn) => true,
            (Type::Number, Type::Int) => true,
            (Type::List(a), Type::List(b)) | (Type::Map(a), Type::Map(b)) => a.accepts(b),
            (Type::Object(a), Type::Object(b)) => Arc::ptr_eq(a, b),
            (Type::Hashed(a), Type::Hashed(b)) => a.accepts(b),
            (a, b) => std::mem::discriminant(a) == std::mem::discriminant(b),
        }
    }

    /// True if `==` between the two types makes sense.
    pub fn comparable_with(&self, other: &Type) -> bool {
        (self.is_numeric() && other.is_numeric())
            || self.accepts(other)
            || other.accepts(self)
            || matches!(self, Type::Null)
            || matches!(other, Type::Null)
    }
}

impl fmt::Display for Type {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Type::Null => f.write_str("null"),
            Type::Bool => f.write_str("bool"),
            Type::Int => f.write_str("int"),
            Type::Number => f.write_str("number"),
            Type::String => f.write_str("string"),
            Type::Timestamp => f.write_str("timestamp"),
            Type::Duration => f.write_str("duration"),
            Type::List(t) => write!(f, "list<{t}>"),
            Type::Map(t) => write!(f, "map<{t}>"),
            Type::Object(o) => write!(f, "object `{}`", o.name),
            Type::Url => f.write_str("url"),
            Type::Ip => f.write_str("ip"),
            Type::Cidr => f.write_str("cidr"),
            Type::Hashed(t) => write!(f, "a sensitive {t} of an earlier call (kept as a keyed hash)"),
            Type::Dyn => f.write_str("any"),
            Type::Error => f.write_str("<error>"),
        }
    }
}

/// An object type: named fields with their types and constraints.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct ObjectType {
    /// Where it sits, for messages: `input of refund`, `actor`, `input.customer`.
    pub name: String,
    /// The fields in declaration order; a value stores them in this order.
    pub fields: Vec<FieldDef>,
    /// Field name → position.
    pub index: FxHashMap<String, usize>,
    /// What to do with undeclared fields.
    pub extra: ExtraFields,
}

impl ObjectType {
    /// The field called `name`, with its position.
    pub fn field(&self, name: &str) -> Option<(usize, &FieldDef)> {
        let i = *self.index.get(name)?;
        self.fields.get(i).map(|f| (i, f))
    }
}

/// One field of an object type.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct FieldDef {
    /// Its name.
    pub name: String,
    /// Its type.
    pub ty: Type,
    /// May be absent.
    pub optional: bool,
    /// Stored as a keyed hash in the audit log.
    pub sensitive: bool,
    /// Left out of what an approval covers (names one attempt).
    pub per_call: bool,
    /// Absent or `null` reads as the empty list rather than breaking the
    /// contract (the reserved `actor.chain`: a request with no delegation
    /// chain has an empty one).
    pub empty_when_absent: bool,
    /// Value constraints.
    pub constraints: Constraints,
}

/// Checked constraints on a field's value.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct Constraints {
    /// Smallest number allowed.
    pub min: Option<crate::ast::NumberLit>,
    /// Largest number allowed.
    pub max: Option<crate::ast::NumberLit>,
    /// Shortest length allowed.
    pub min_len: Option<u64>,
    /// Longest length allowed.
    pub max_len: Option<u64>,
    /// The regex a string must match, with its source text.
    pub pattern: Option<Lazy<Regex>>,
    /// The only values allowed (strings for enums and `allowed`).
    pub allowed: Option<Vec<crate::value::Value>>,
    /// True when `allowed` came from an enum type.
    pub is_enum: bool,
    /// For a list or a map: what each element (or value) must meet, at any
    /// depth (`list<list<string>>` has items of items).
    pub items: Option<Box<Constraints>>,
}

impl Constraints {
    /// True when nothing is constrained (at any depth).
    pub fn is_empty(&self) -> bool {
        self.min.is_none()
            && self.max.is_none()
            && self.min_len.is_none()
            && self.max_len.is_none()
            && self.pattern.is_none()
            && self.allowed.is_none()
            && self.items.is_none()
    }
}
