//! How Actra reads YAML scalars, so that Rein reads the same files the
//! same way.
//!
//! Actra deserialises its files with serde's derive over a YAML 1.2
//! library whose plain-scalar rules differ a little from the core schema
//! that [`crate::syntax::yaml`] applies: `010` and `1_000` are strings,
//! `0b101`, `-0x10` and `+0x10` are integers, `12e400` (which overflows)
//! is a string. Where Actra expects a string it takes the scalar's text as
//! written (`id: 5` is the id `"5"`, `id: ~` the id `"~"`); where its types
//! are "untagged" (scopes, conditions, governance constraints) it first
//! decides what kind of value a scalar is, and only a real string is a
//! string there. This module reproduces both readings from the spanned
//! tree and the file text.

use crate::syntax::yaml::{resolve_plain, ScalarStyle, YamlNode, YamlValue};

/// A node as Actra's untagged types see it.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Typed<'n> {
    /// `~`, `null`, an empty value.
    Null,
    /// `true`, `True`, `TRUE` and the `false` spellings.
    Bool(bool),
    /// A non-negative integer.
    UInt(u64),
    /// A negative integer.
    Int(i64),
    /// A floating-point number (finite, or `.inf`/`.nan`).
    Float(f64),
    /// Anything else, and every quoted or block scalar.
    Str(String),
    /// An integer that needs more than 64 bits, which Actra refuses.
    BigInt,
    /// A list.
    Seq(&'n [YamlNode]),
    /// A mapping.
    Map(&'n [(YamlNode, YamlNode)]),
}

impl Typed<'_> {
    /// The kind of value, for messages: "a string", "a number", ...
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Typed::Null => "null",
            Typed::Bool(_) => "a boolean",
            Typed::UInt(_) | Typed::Int(_) | Typed::Float(_) | Typed::BigInt => "a number",
            Typed::Str(_) => "a string",
            Typed::Seq(_) => "a list",
            Typed::Map(_) => "a mapping",
        }
    }

    /// The string, if this is one.
    pub(crate) fn as_str(&self) -> Option<&str> {
        match self {
            Typed::Str(s) => Some(s),
            _ => None,
        }
    }
}

/// The text of a plain scalar as written, when nothing but the plain-scalar
/// rules decided its type (no tag, not an alias, on one line).
fn plain_text<'t>(node: &YamlNode, text: &'t str) -> Option<&'t str> {
    if node.style != ScalarStyle::Plain || matches!(node.value, YamlValue::Seq(_) | YamlValue::Map(_)) {
        return None;
    }
    let raw = text.get(node.span.start as usize..node.span.end as usize)?;
    // An alias copy has the span of `*name`; a multi-line plain scalar is
    // folded, so its text is not its value.
    if raw.starts_with('*') || raw.contains('\n') {
        return None;
    }
    // A tag (`!!str 5`) makes the value differ from what the text alone
    // would give.
    let untagged = match (resolve_plain(raw), &node.value) {
        (Ok(YamlValue::Float(a)), YamlValue::Float(b)) => a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan()),
        (Ok(v), value) => v == *value,
        (Err(_), _) => false,
    };
    untagged.then_some(raw)
}

/// The node as Actra's untagged types see it.
pub(crate) fn typed<'n>(node: &'n YamlNode, text: &str) -> Typed<'n> {
    match &node.value {
        YamlValue::Seq(items) => return Typed::Seq(items),
        YamlValue::Map(entries) => return Typed::Map(entries),
        _ => {}
    }
    if let Some(raw) = plain_text(node, text) {
        return untagged_scalar(raw);
    }
    match &node.value {
        YamlValue::Null => Typed::Null,
        YamlValue::Bool(b) => Typed::Bool(*b),
        YamlValue::Int(i) => u64::try_from(*i).map_or(Typed::Int(*i), Typed::UInt),
        YamlValue::Float(f) => Typed::Float(*f),
        YamlValue::String(s) => Typed::Str(s.clone()),
        YamlValue::Seq(_) | YamlValue::Map(_) => Typed::Null,
    }
}

/// The node where Actra expects a string: any scalar, as written. `None`
/// for a list or a mapping.
pub(crate) fn text_of(node: &YamlNode, text: &str) -> Option<String> {
    if let Some(raw) = plain_text(node, text) {
        return Some(raw.to_string());
    }
    Some(match &node.value {
        YamlValue::Null => String::new(),
        YamlValue::Bool(b) => b.to_string(),
        YamlValue::Int(i) => i.to_string(),
        YamlValue::Float(f) => f.to_string(),
        YamlValue::String(s) => s.clone(),
        YamlValue::Seq(_) | YamlValue::Map(_) => return None,
    })
}

/// True when Actra reads the node as "absent" where a value is optional.
pub(crate) fn is_null(node: &YamlNode, text: &str) -> bool {
    matches!(typed(node, text), Typed::Null)
}

/// The library's reading of an untagged plain scalar.
fn untagged_scalar(v: &str) -> Typed<'static> {
    if matches!(v, "" | "~" | "null" | "Null" | "NULL") {
        return Typed::Null;
    }
    match v {
        "true" | "True" | "TRUE" => return Typed::Bool(true),
        "false" | "False" | "FALSE" => return Typed::Bool(false),
        _ => {}
    }
    if let Some(i) = parse_unsigned(v) {
        return u64::try_from(i).map_or(Typed::BigInt, Typed::UInt);
    }
    if let Some(i) = parse_negative(v) {
        return i64::try_from(i).map_or(Typed::BigInt, Typed::Int);
    }
    if digits_but_not_number(v) {
        return Typed::Str(v.to_string());
    }
    if let Some(f) = parse_float(v) {
        return Typed::Float(f);
    }
    Typed::Str(v.to_string())
}

/// `0` followed by more digits is a string in YAML 1.2, not an octal
/// number.
fn digits_but_not_number(scalar: &str) -> bool {
    let s = scalar.strip_prefix(['-', '+']).unwrap_or(scalar);
    s.len() > 1 && s.starts_with('0') && s.bytes().skip(1).all(|b| b.is_ascii_digit())
}

/// A non-negative integer in decimal, `0x`, `0o` or `0b` form (an
/// optional `+` first), as up to 128 bits.
fn parse_unsigned(scalar: &str) -> Option<u128> {
    let unsigned = scalar.strip_prefix('+').unwrap_or(scalar);
    for (prefix, radix) in [("0x", 16), ("0o", 8), ("0b", 2)] {
        if let Some(rest) = unsigned.strip_prefix(prefix) {
            if rest.starts_with(['+', '-']) {
                return None;
            }
            if let Ok(i) = u128::from_str_radix(rest, radix) {
                return Some(i);
            }
        }
    }
    if unsigned.starts_with(['+', '-']) || digits_but_not_number(scalar) {
        return None;
    }
    unsigned.parse::<u128>().ok()
}

/// A negative integer (`-12`, `-0x10`, `-0o7`, `-0b1`), as up to 128 bits.
fn parse_negative(scalar: &str) -> Option<i128> {
    for (prefix, radix) in [("-0x", 16), ("-0o", 8), ("-0b", 2)] {
        if let Some(rest) = scalar.strip_prefix(prefix) {
            if let Ok(i) = i128::from_str_radix(&format!("-{rest}"), radix) {
                return Some(i);
            }
        }
    }
    if digits_but_not_number(scalar) {
        return None;
    }
    scalar.parse::<i128>().ok()
}

/// A float: Rust's syntax (so `1.`, `.5`, `1e3`), finite, or one of the
/// YAML spellings of infinity and NaN.
fn parse_float(scalar: &str) -> Option<f64> {
    let unsigned = match scalar.strip_prefix('+') {
        Some(rest) if rest.starts_with(['+', '-']) => return None,
        Some(rest) => rest,
        None => scalar,
    };
    if matches!(unsigned, ".inf" | ".Inf" | ".INF") {
        return Some(f64::INFINITY);
    }
    if matches!(scalar, "-.inf" | "-.Inf" | "-.INF") {
        return Some(f64::NEG_INFINITY);
    }
    if matches!(scalar, ".nan" | ".NaN" | ".NAN") {
        return Some(f64::NAN);
    }
    unsigned.parse::<f64>().ok().filter(|f| f.is_finite())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use crate::syntax::yaml;

    fn typed_of(value: &str) -> String {
        let text = format!("k: {value}\n");
        let root = yaml::parse(&text).unwrap();
        let YamlValue::Map(entries) = &root.value else { panic!() };
        format!("{:?}", typed(&entries[0].1, &text))
    }

    fn text_of_value(value: &str) -> String {
        let text = format!("k: {value}\n");
        let root = yaml::parse(&text).unwrap();
        let YamlValue::Map(entries) = &root.value else { panic!() };
        text_of(&entries[0].1, &text).unwrap()
    }

    #[test]
    fn plain_scalars_read_as_actra_reads_them() {
        for (text, want) in [
            ("010", "Str(\"010\")"),
            ("00", "Str(\"00\")"),
            ("-010", "Str(\"-010\")"),
            ("1_000", "Str(\"1_000\")"),
            ("0b101", "UInt(5)"),
            ("0x10", "UInt(16)"),
            ("+0x10", "UInt(16)"),
            ("-0x10", "Int(-16)"),
            ("0o17", "UInt(15)"),
            ("+5", "UInt(5)"),
            ("-0", "Int(0)"),
            ("1.", "Float(1.0)"),
            (".5", "Float(0.5)"),
            ("1e3", "Float(1000.0)"),
            ("12e400", "Str(\"12e400\")"),
            (".inf", "Float(inf)"),
            ("+.inf", "Float(inf)"),
            ("-.Inf", "Float(-inf)"),
            (".NaN", "Float(NaN)"),
            ("-.nan", "Str(\"-.nan\")"),
            ("yes", "Str(\"yes\")"),
            ("True", "Bool(true)"),
            ("~", "Null"),
            ("", "Null"),
            ("'5'", "Str(\"5\")"),
            ("!!str 5", "Str(\"5\")"),
            ("!!int '5'", "UInt(5)"),
        ] {
            assert_eq!(typed_of(text), want, "{text}");
        }
    }

    #[test]
    fn strings_are_taken_as_written() {
        assert_eq!(text_of_value("5"), "5");
        assert_eq!(text_of_value("0x10"), "0x10");
        assert_eq!(text_of_value("~"), "~");
        assert_eq!(text_of_value(""), "");
        assert_eq!(text_of_value("True"), "True");
        assert_eq!(text_of_value("'a b'"), "a b");
    }
}
