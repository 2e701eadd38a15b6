//! Checks request values against their contracts and converts them into
//! typed [`Value`]s laid out by field position.

use crate::ast::{ExtraFields, NumberLit};
use crate::types::{Constraints, ObjectType, Type};
use crate::value::{parse_duration, Value};
use serde_json::Value as Json;
use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::fmt;

/// Why a request does not fit its contract: the field and what is wrong.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Violation {
    /// The field, as a path: `input.amount`, `actor.roles[2]`, `action`.
    pub path: String,
    /// What is wrong, in lower case.
    pub message: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// A path into a value, built on the stack and rendered only on error.
#[derive(Clone, Copy)]
pub(crate) enum Path<'a> {
    Root(&'a str),
    Field(&'a Path<'a>, &'a str),
    Index(&'a Path<'a>, usize),
    Key(&'a Path<'a>, &'a str),
}

impl fmt::Display for Path<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Path::Root(r) => f.write_str(r),
            Path::Field(p, name) => write!(f, "{p}.{name}"),
            Path::Index(p, i) => write!(f, "{p}[{i}]"),
            Path::Key(p, k) => write!(f, "{p}[{k:?}]"),
        }
    }
}

fn violation(path: &Path<'_>, message: impl Into<String>) -> Violation {
    Violation {
        path: path.to_string(),
        message: message.into(),
    }
}

/// A request value as the contract checker reads it: JSON here, or the
/// values of a host language, read in place (the Python binding reads its
/// objects without building JSON first). Every source goes through the
/// same checks ([`check_root_from`]), so a value is accepted, and becomes
/// the same [`Value`], whatever it was read from.
pub trait ContractValue: Sized {
    /// What the value is.
    fn node(&self) -> Node<'_>;
    /// Element `i` of a [`Node::List`] (`None`: it cannot be read).
    fn item(&self, i: usize) -> Option<Self>;
    /// Calls `visit` with each key and value of a [`Node::Object`], in the
    /// source's order, stopping at the first error.
    fn entries(&self, visit: &mut dyn FnMut(&str, Self) -> Result<(), Violation>) -> Result<(), Violation>;
    /// The value's kind for a message (`an integer`, `a list`).
    fn kind(&self) -> &'static str;
    /// The value as JSON text, for a message.
    fn shown(&self) -> String;
    /// Whether the whole value has an exact JSON form: asked of an
    /// undeclared field the contract ignores, which is otherwise not read
    /// (JSON always has one).
    fn is_readable(&self) -> bool {
        true
    }
}

/// One level of a [`ContractValue`].
pub enum Node<'a> {
    /// `null` / `None`.
    Null,
    /// A boolean.
    Bool(bool),
    /// A number as JSON holds it (a host's int outside 64 bits or a
    /// non-finite float is [`Node::Unreadable`]).
    Number(serde_json::Number),
    /// A string.
    Str(std::borrow::Cow<'a, str>),
    /// A list of this length ([`ContractValue::item`]).
    List(usize),
    /// A map with string keys, this many ([`ContractValue::entries`]).
    Object(usize),
    /// A value with no exact JSON form: never accepted (the host reports
    /// it its own way).
    Unreadable,
}

impl<'j> ContractValue for &'j Json {
    fn node(&self) -> Node<'_> {
        match self {
            Json::Null => Node::Null,
            Json::Bool(b) => Node::Bool(*b),
            Json::Number(n) => Node::Number(n.clone()),
            Json::String(s) => Node::Str(std::borrow::Cow::Borrowed(s)),
            Json::Array(items) => Node::List(items.len()),
            Json::Object(map) => Node::Object(map.len()),
        }
    }

    fn item(&self, i: usize) -> Option<&'j Json> {
        match self {
            Json::Array(items) => items.get(i),
            _ => None,
        }
    }

    fn entries(&self, visit: &mut dyn FnMut(&str, &'j Json) -> Result<(), Violation>) -> Result<(), Violation> {
        if let Json::Object(map) = self {
            for (k, v) in map {
                visit(k, v)?;
            }
        }
        Ok(())
    }

    fn kind(&self) -> &'static str {
        json_kind(self)
    }

    fn shown(&self) -> String {
        self.to_string()
    }
}

/// Checks a root value (`input`, `actor`, ...). A missing root or `null`
/// counts as an empty object.
pub(crate) fn check_root(json: Option<&Json>, ty: &ObjectType, root: &str) -> Result<Vec<Value>, Violation> {
    check_root_from(json, ty, root)
}

/// [`check_root`] for a request read back from the audit log, where every
/// field the contract marks sensitive holds its keyed hash: such a field is
/// taken as it comes, unchecked, and laid out as `null`. Only for deciding
/// rules that never read a sensitive field (`Policy::decide_redacted`
/// checks that), on a request whose clear values passed the same contract
/// when it was recorded.
pub(crate) fn check_root_redacted(json: Option<&Json>, ty: &ObjectType, root: &str) -> Result<Vec<Value>, Violation> {
    let path = Path::Root(root);
    let mut out = Vec::with_capacity(ty.fields.len());
    match json {
        None | Some(Json::Null) => check_fields::<_, true>(None::<&&Json>, ty, &path, Reveal::Values, &mut out)?,
        Some(Json::Object(_)) => check_fields::<_, true>(json.as_ref(), ty, &path, Reveal::Values, &mut out)?,
        Some(other) => return Err(violation(&path, format!("must be an object, got {}", json_kind(other)))),
    }
    Ok(out)
}

/// [`check_root`] for any [`ContractValue`].
pub(crate) fn check_root_from<V: ContractValue>(
    value: Option<V>,
    ty: &ObjectType,
    root: &str,
) -> Result<Vec<Value>, Violation> {
    let mut out = Vec::with_capacity(ty.fields.len());
    check_root_into(value, ty, root, &mut out)?;
    Ok(out)
}

/// [`check_root_from`], its fields appended to `out` (the request path lays
/// out every root in one vector: one allocation per request). On an error
/// `out` may hold some of the root's fields.
pub(crate) fn check_root_into<V: ContractValue>(
    value: Option<V>,
    ty: &ObjectType,
    root: &str,
    out: &mut Vec<Value>,
) -> Result<(), Violation> {
    let path = Path::Root(root);
    match value.as_ref().map(|v| v.node()) {
        None | Some(Node::Null) => check_fields::<_, false>(None::<&V>, ty, &path, Reveal::Values, out),
        Some(Node::Object(_)) => check_fields::<_, false>(value.as_ref(), ty, &path, Reveal::Values, out),
        Some(_) => {
            let kind = value.as_ref().map_or("null", |v| v.kind());
            Err(violation(&path, format!("must be an object, got {kind}")))
        }
    }
}

/// Whether a violation's message may repeat the value it is about. A
/// sensitive field's value (and everything inside it) is stored in the
/// audit log only as a keyed hash; the reasons of a decision are stored in
/// clear, so its violation says what is wrong without the value.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Reveal {
    Values,
    Nothing,
}

impl Reveal {
    /// `", got {shown}"`, or nothing for a sensitive value.
    fn got(self, shown: impl std::fmt::Display) -> String {
        match self {
            Reveal::Values => format!(", got {shown}"),
            Reveal::Nothing => String::new(),
        }
    }

    /// `"`{shown}` "` to start a message, or nothing for a sensitive value.
    fn quoted(self, shown: &str) -> String {
        match self {
            Reveal::Values => format!("`{}` ", shorten(shown)),
            Reveal::Nothing => String::new(),
        }
    }
}

/// Objects with up to this many declared fields are checked without a heap
/// allocation.
const INLINE_FIELDS: usize = 16;

/// Objects with up to this many declared fields find a key's field by
/// comparing names; larger ones through their index.
const LINEAR_FIELDS: usize = 16;

/// The position of the field named `key`, trying `next` first: keys mostly
/// come in declaration order (or, from a `serde_json` map, in sorted
/// order, where a short scan is as cheap as hashing the key).
#[inline(always)]
fn field_slot(ty: &ObjectType, key: &str, next: usize) -> Option<usize> {
    let fields = &ty.fields;
    if fields.get(next).is_some_and(|f| same_name(&f.name, key)) {
        return Some(next);
    }
    // Names are unique (the index has one entry per field); should they
    // not be, the index decides, as it did before the scan.
    if fields.len() <= LINEAR_FIELDS && ty.index.len() == fields.len() {
        fields.iter().position(|f| same_name(&f.name, key))
    } else {
        ty.index.get(key).copied()
    }
}

/// `a == b`, most unequal names told apart by their length and first byte
/// before the bytes are compared.
#[inline(always)]
fn same_name(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.as_bytes().first() == b.as_bytes().first() && a == b
}

/// The fields of an object (`None`: an empty one), by position, appended
/// to `out`.
fn check_fields<V: ContractValue, const REDACTED: bool>(
    object: Option<&V>,
    ty: &ObjectType,
    path: &Path<'_>,
    reveal: Reveal,
    out: &mut Vec<Value>,
) -> Result<(), Violation> {
    // Each declared field's value, found by one pass over the entries (a
    // repeated key: the last one, as a JSON map keeps).
    // On the stack for the usual object (no allocation per object checked).
    let mut inline: [Option<V>; INLINE_FIELDS] = std::array::from_fn(|_| None);
    let mut spilled: Vec<Option<V>> = Vec::new();
    let found: &mut [Option<V>] = if ty.fields.len() <= INLINE_FIELDS {
        &mut inline[..ty.fields.len()]
    } else {
        spilled.resize_with(ty.fields.len(), || None);
        &mut spilled
    };
    if let Some(object) = object {
        let mut next = 0;
        object.entries(&mut |k, v| {
            match field_slot(ty, k, next) {
                Some(i) => {
                    // An index out of step with the fields (a damaged
                    // contract) refuses the request: a value dropped here
                    // would read as absent.
                    let Some(slot) = found.get_mut(i) else {
                        return Err(violation(&Path::Field(path, k), "could not be placed by its contract"));
                    };
                    *slot = Some(v);
                    next = i + 1;
                }
                None if ty.extra == ExtraFields::Reject => return Err(undeclared(ty, path, k)),
                None if !v.is_readable() => return Err(violation(&Path::Field(path, k), "has no exact JSON form")),
                None => {}
            }
            Ok(())
        })?;
    }
    out.reserve(ty.fields.len());
    for (f, v) in ty.fields.iter().zip(found.iter_mut().map(Option::take)) {
        let Some(v) = v else {
            match () {
                () if f.empty_when_absent => out.push(Value::List(Vec::new())),
                () if f.optional => out.push(Value::Absent),
                () => return Err(required(f, path)),
            }
            continue;
        };
        let node = v.node();
        let null = matches!(node, Node::Null);
        match () {
            () if null && f.empty_when_absent => out.push(Value::List(Vec::new())),
            () if null && f.optional => out.push(Value::Absent),
            // Its keyed hash: never read by the rules decided this way.
            // (A const parameter: the request path compiles without it.)
            () if REDACTED && f.sensitive => out.push(Value::Null),
            () => {
                let reveal = if f.sensitive { Reveal::Nothing } else { reveal };
                let p = Path::Field(path, &f.name);
                out.push(check_node::<_, REDACTED>(&v, node, &f.ty, &f.constraints, &p, reveal)?)
            }
        }
    }
    Ok(())
}

/// The violation of a required field `f` of the object at `path` that is
/// absent.
#[cold]
#[inline(never)]
fn required(f: &crate::types::FieldDef, path: &Path<'_>) -> Violation {
    violation(&Path::Field(path, &f.name), format!("is required ({})", f.ty))
}

/// The violation of the first undeclared field `k` of an object whose
/// contract rejects them.
fn undeclared(ty: &ObjectType, path: &Path<'_>, k: &str) -> Violation {
    let p = Path::Field(path, k);
    let known: Vec<&str> = ty.fields.iter().map(|f| f.name.as_str()).collect();
    let hint = match crate::diagnostics::did_you_mean(k, known.iter().copied()) {
        Some(s) => format!(" (did you mean `{s}`?)"),
        None if known.is_empty() => " (the contract declares no fields here)".to_string(),
        None => format!(" (declared: {})", known.join(", ")),
    };
    violation(&p, format!("is not declared in the contract{hint}"))
}

#[inline(never)]
fn check_value<V: ContractValue, const REDACTED: bool>(
    source: &V,
    ty: &Type,
    c: &Constraints,
    path: &Path<'_>,
    reveal: Reveal,
) -> Result<Value, Violation> {
    check_node::<_, REDACTED>(source, source.node(), ty, c, path, reveal)
}

/// [`check_value`] of `source`, whose node was read already. Every
/// violation is built out of line: the common value, which passes, runs
/// only the checks. (Inlined into the field loop of an object, its one
/// caller besides [`check_value`].)
#[inline(always)]
fn check_node<V: ContractValue, const REDACTED: bool>(
    source: &V,
    node: Node<'_>,
    ty: &Type,
    c: &Constraints,
    path: &Path<'_>,
    reveal: Reveal,
) -> Result<Value, Violation> {
    let value = match (ty, node) {
        (Type::Int, Node::Number(n)) => {
            let i = match n.as_i64() {
                Some(i) => i,
                // A fraction or an exponent, or out of range: rare.
                None => int_of(&n, path, reveal)?,
            };
            if c.min.is_some() || c.max.is_some() {
                check_range(NumberLit::Int(i), c, path, reveal)?;
            }
            Value::Int(i)
        }
        (Type::String, Node::Str(s)) => {
            // Counted only when bounded: most strings are not (the
            // chain's kinds and ids never are), and counting walks the text.
            if c.min_len.is_some() || c.max_len.is_some() {
                check_len(s.chars().count(), c, path, reveal)?;
            }
            if let Some(pattern) = &c.pattern {
                check_pattern(&s, pattern, path)?;
            }
            Value::Str(s.into())
        }
        (_, Node::Unreadable) => return Err(violation(path, "has no exact JSON form")),
        (Type::Number, Node::Number(n)) => {
            let f = match n.as_f64() {
                Some(f) if f.is_finite() => f,
                Some(_) => return Err(violation(path, "must be a finite number")),
                None => return Err(wrong(source, ty, path)),
            };
            if c.min.is_some() || c.max.is_some() {
                check_range(NumberLit::Float(f), c, path, reveal)?;
            }
            Value::Float(f)
        }
        (Type::Bool, Node::Bool(b)) => Value::Bool(b),
        (Type::Timestamp, Node::Str(s)) => match crate::instant::Instant::parse(&s) {
            Some(t) => Value::Timestamp(t),
            None => return Err(not_a_timestamp(&s, path, reveal)),
        },
        (Type::Duration, Node::Str(s)) => match parse_duration(&s) {
            Some(d) => Value::Duration(d),
            None => return Err(not_a_duration(&s, path, reveal)),
        },
        (Type::List(elem), Node::List(len)) => {
            check_len(len, c, path, reveal)?;
            let each = c.items.as_deref().unwrap_or(&NO_CONSTRAINTS);
            let mut out = Vec::with_capacity(len);
            for i in 0..len {
                let p = Path::Index(path, i);
                let item = source.item(i).ok_or_else(|| violation(&p, "could not be read"))?;
                out.push(check_value::<_, REDACTED>(&item, elem, each, &p, reveal)?);
            }
            Value::List(out)
        }
        (Type::Map(elem), Node::Object(len)) => {
            check_len(len, c, path, reveal)?;
            let each = c.items.as_deref().unwrap_or(&NO_CONSTRAINTS);
            let mut out = BTreeMap::new();
            source.entries(&mut |k, v| {
                let p = Path::Key(path, k);
                out.insert(k.to_string(), check_value::<_, REDACTED>(&v, elem, each, &p, reveal)?);
                Ok(())
            })?;
            // Two keys of one text (a host's map may hold them): its length
            // was not the map's.
            if out.len() != len {
                return Err(violation(path, "has a repeated key"));
            }
            Value::Map(out)
        }
        (Type::Object(obj), Node::Object(_)) => {
            let mut fields = Vec::with_capacity(obj.fields.len());
            check_fields::<_, REDACTED>(Some(source), obj, path, reveal, &mut fields)?;
            Value::Object(fields)
        }
        _ => return Err(wrong(source, ty, path)),
    };
    if let Some(allowed) = &c.allowed {
        if !allowed.iter().any(|a| a.equals(&value)) {
            return Err(not_allowed(source, ty, c, allowed, path, reveal));
        }
    }
    Ok(value)
}

/// The violation of a value of the wrong kind for `ty`.
#[cold]
#[inline(never)]
fn wrong<V: ContractValue>(source: &V, ty: &Type, path: &Path<'_>) -> Violation {
    violation(path, format!("must be {}, got {}", article(ty), source.kind()))
}

/// The violation of a value not among the `allowed` ones.
#[cold]
#[inline(never)]
fn not_allowed<V: ContractValue>(
    source: &V,
    ty: &Type,
    c: &Constraints,
    allowed: &[Value],
    path: &Path<'_>,
    reveal: Reveal,
) -> Violation {
    let list: Vec<String> = allowed.iter().map(|a| a.to_json(ty).to_string()).collect();
    let what = if c.is_enum {
        "one of"
    } else {
        "one of the allowed values"
    };
    violation(
        path,
        format!(
            "must be {what} {}{}",
            list.join(", "),
            reveal.got(shorten(&source.shown()))
        ),
    )
}

/// Checks a string against its pattern.
fn check_pattern(s: &str, pattern: &crate::ir::Lazy<regex::Regex>, path: &Path<'_>) -> Result<(), Violation> {
    let re = pattern.get().map_err(|e| violation(path, e))?;
    if !re.is_match(s) {
        return Err(violation(
            path,
            format!("does not match the pattern `{}`", pattern.source()),
        ));
    }
    Ok(())
}

#[cold]
#[inline(never)]
fn not_a_timestamp(s: &str, path: &Path<'_>, reveal: Reveal) -> Violation {
    violation(
        path,
        format!(
            "{}is not an RFC 3339 timestamp (e.g. `2026-01-31T12:00:00Z`)",
            reveal.quoted(s)
        ),
    )
}

#[cold]
#[inline(never)]
fn not_a_duration(s: &str, path: &Path<'_>, reveal: Reveal) -> Violation {
    violation(
        path,
        format!("{}is not a duration (e.g. `1h30m`, `250ms`)", reveal.quoted(s)),
    )
}

static NO_CONSTRAINTS: Constraints = Constraints {
    min: None,
    max: None,
    min_len: None,
    max_len: None,
    pattern: None,
    allowed: None,
    is_enum: false,
    items: None,
};

/// Doubles hold every whole number up to 2^53 exactly; above, a JSON
/// number written with a fraction or an exponent may have been rounded.
const EXACT_WHOLE_DOUBLES: f64 = 9_007_199_254_740_992.0;

/// The int a JSON number stands for, decided exactly:
///
/// - integer text (no fraction, no exponent) in the 64-bit range is that
///   int (serde_json reads such text as an integer, never via a double);
///   beyond the range it is refused, whatever the double it rounds to;
/// - text with a fraction or an exponent (`1.0`, `1e3`) is that int when it
///   is a whole number below 2^53 in magnitude, where the double is exact
///   (the request reader refuses text whose fraction a double rounds away,
///   such as `2.9999999999999999`: see [`crate::json`]); at or above 2^53 it
///   is refused, since the written fraction may be lost
///   (`-9223372036854775808.5`).
#[cold]
#[inline(never)]
fn int_of(n: &serde_json::Number, path: &Path<'_>, reveal: Reveal) -> Result<i64, Violation> {
    if let Some(i) = n.as_i64() {
        return Ok(i);
    }
    let shown = n.to_string();
    if n.as_u64().is_some() {
        return Err(violation(
            path,
            format!("{}is too large for an int", reveal.quoted(&shown)),
        ));
    }
    let f = n.as_f64().unwrap_or(f64::NAN);
    if !f.is_finite() || f.fract() != 0.0 {
        return Err(violation(path, format!("must be a whole number{}", reveal.got(n))));
    }
    if f.abs() >= EXACT_WHOLE_DOUBLES {
        let side = if f > 0.0 { "large" } else { "small" };
        return Err(violation(
            path,
            format!(
                "{}is too {side} for an int, or not exactly a whole number (an int is written as an integer \
                 within the 64-bit range; with a fraction or an exponent only below 2^53)",
                reveal.quoted(&shown)
            ),
        ));
    }
    // Exact: |f| < 2^53 and whole.
    Ok(f as i64)
}

fn check_range(number: NumberLit, c: &Constraints, path: &Path<'_>, reveal: Reveal) -> Result<(), Violation> {
    if let Some(min) = c.min {
        if number.cmp_exact(min) == Ordering::Less {
            return Err(violation(path, format!("must be at least {min}{}", reveal.got(number))));
        }
    }
    if let Some(max) = c.max {
        if number.cmp_exact(max) == Ordering::Greater {
            return Err(violation(path, format!("must be at most {max}{}", reveal.got(number))));
        }
    }
    Ok(())
}

fn check_len(len: usize, c: &Constraints, path: &Path<'_>, reveal: Reveal) -> Result<(), Violation> {
    let len = len as u64;
    if let Some(min) = c.min_len {
        if len < min {
            return Err(violation(
                path,
                format!("must have a length of at least {min}{}", reveal.got(len)),
            ));
        }
    }
    if let Some(max) = c.max_len {
        if len > max {
            return Err(violation(
                path,
                format!("must have a length of at most {max}{}", reveal.got(len)),
            ));
        }
    }
    Ok(())
}

fn article(ty: &Type) -> String {
    match ty {
        Type::Int => "an int".into(),
        Type::Object(_) => "an object".into(),
        Type::List(t) => format!("a list of {t}"),
        Type::Map(t) => format!("a map of {t}"),
        other => format!("a {other}"),
    }
}

/// A short name for a JSON value's kind.
pub(crate) fn json_kind(v: &Json) -> &'static str {
    match v {
        Json::Null => "null",
        Json::Bool(_) => "a boolean",
        Json::Number(n) if n.is_i64() || n.is_u64() => "an integer",
        Json::Number(_) => "a number",
        Json::String(_) => "a string",
        Json::Array(_) => "a list",
        Json::Object(_) => "an object",
    }
}

fn shorten(s: &str) -> String {
    if s.chars().count() <= 60 {
        s.to_string()
    } else {
        let cut: String = s.chars().take(57).collect();
        format!("{cut}...")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::contracts::open_actor;
    use serde_json::json;

    fn shown(values: Result<Vec<Value>, Violation>) -> String {
        format!("{:?}", values.unwrap())
    }

    #[test]
    fn the_reserved_chain_reads_absent_and_null_as_empty() {
        let actor = open_actor();
        let empty = vec![Value::List(Vec::new())];
        assert_eq!(shown(check_root(None, &actor, "actor")), format!("{empty:?}"));
        for json in [json!({}), json!({"chain": null}), json!({"chain": [], "role": "x"})] {
            assert_eq!(
                shown(check_root(Some(&json), &actor, "actor")),
                format!("{empty:?}"),
                "{json}"
            );
        }
        let json = json!({"chain": [{"id": "alice", "kind": "user"}], "other": {"a": 1}});
        let link = Value::Object(vec![Value::Str("user".into()), Value::Str("alice".into())]);
        assert_eq!(
            shown(check_root(Some(&json), &actor, "actor")),
            format!("{:?}", vec![Value::List(vec![link])])
        );
        let json = json!({"chain": [{"kind": "user", "id": "alice", "via": "x"}]});
        let v = check_root(Some(&json), &actor, "actor").unwrap_err();
        assert_eq!(v.path, "actor.chain[0].via");
    }

    /// An object type of `names`, each an optional int; undeclared fields
    /// refused.
    fn ints(names: &[String]) -> ObjectType {
        use crate::types::FieldDef;
        ObjectType {
            name: "input".into(),
            fields: names
                .iter()
                .map(|n| FieldDef {
                    name: n.clone(),
                    ty: Type::Int,
                    optional: true,
                    sensitive: false,
                    per_call: false,
                    empty_when_absent: false,
                    constraints: Constraints::default(),
                })
                .collect(),
            index: names.iter().enumerate().map(|(i, n)| (n.clone(), i)).collect(),
            extra: ExtraFields::Reject,
        }
    }

    /// Distinct names, many of one length and first letter (the scan's
    /// quick tests must not decide alone).
    fn names() -> impl proptest::strategy::Strategy<Value = Vec<String>> {
        use proptest::prelude::*;
        prop::collection::btree_set("[ab][a-c]{0,3}", 0..40).prop_map(|s| s.into_iter().collect())
    }

    proptest::proptest! {
        /// A key's field is found whatever field is tried first, in
        /// objects scanned and objects looked up in their index.
        #[test]
        fn a_key_finds_its_field(names in names(), next in 0usize..50, probe in "[ab][a-c]{0,3}") {
            let ty = ints(&names);
            for (i, n) in names.iter().enumerate() {
                proptest::prop_assert_eq!(field_slot(&ty, n, next), Some(i));
            }
            proptest::prop_assert_eq!(field_slot(&ty, &probe, next), names.iter().position(|n| *n == probe));
        }

        /// Each field's value lands in its position, whatever the keys'
        /// order; an undeclared key is the violation.
        #[test]
        fn fields_land_in_their_positions(
            names in names(),
            present in proptest::collection::vec(proptest::bool::ANY, 40),
            extra in proptest::option::of("[ab][a-c]{0,3}"),
        ) {
            let ty = ints(&names);
            let mut object = serde_json::Map::new();
            for (i, n) in names.iter().enumerate() {
                if present[i] {
                    object.insert(n.clone(), json!(i));
                }
            }
            let undeclared = extra.filter(|e| !names.contains(e));
            if let Some(e) = &undeclared {
                object.insert(e.clone(), json!(0));
            }
            let json = Json::Object(object);
            match (check_root(Some(&json), &ty, "input"), undeclared) {
                (Err(v), Some(e)) => proptest::prop_assert_eq!(v.path, format!("input.{e}")),
                (Ok(values), None) => {
                    proptest::prop_assert_eq!(values.len(), names.len());
                    for (i, v) in values.iter().enumerate() {
                        match v {
                            Value::Int(at) => proptest::prop_assert!(present[i] && *at == i as i64),
                            Value::Absent => proptest::prop_assert!(!present[i]),
                            other => proptest::prop_assert!(false, "{other:?}"),
                        }
                    }
                }
                (got, want) => proptest::prop_assert!(false, "{got:?} for undeclared {want:?}"),
            }
        }
    }
}
