//! JSON as Rein reads requests: serde_json's reading, except that an object
//! with the same key twice is an error.
//!
//! serde_json keeps the last of duplicate keys. A gateway, a proxy or a
//! client library in front of Rein may keep the first, so
//! `{"amount": 5, "amount": 5000}` could be checked by one party as 5 and
//! acted on by another as 5000. Refusing such a document removes the doubt.
//!
//! For the same reason a number whose text is not a whole number but which
//! a double rounds to one (`2.9999999999999999`, `9007199254740993.5`,
//! `1e-400`) is refused: read as a double it would pass for an int that the
//! text does not say. Numbers are otherwise read as serde_json reads them:
//! integer text in the 64-bit range as an integer, anything else as a
//! double. See `int_of` in `contract.rs` for how an `int` field decides.

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

/// Parses JSON text into a value, refusing an object with a repeated key
/// (at any depth) with an error that names the key and its position.
pub fn parse_strict(bytes: &[u8]) -> Result<Value, serde_json::Error> {
    let value = serde_json::from_slice::<Strict>(bytes).map(|s| s.0)?;
    check_number_texts(bytes)?;
    Ok(value)
}

/// Refuses JSON text holding a number written with a fraction or an
/// exponent that is not a whole number but that serde_json reads as a whole
/// double (see the module documentation). Run on text that parsed.
pub fn check_number_texts(bytes: &[u8]) -> Result<(), serde_json::Error> {
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'"' => {
                // Skip the string, escapes included.
                i += 1;
                while i < bytes.len() && bytes[i] != b'"' {
                    i += if bytes[i] == b'\\' { 2 } else { 1 };
                }
                i += 1;
            }
            b'-' | b'0'..=b'9' => {
                let start = i;
                while i < bytes.len() && matches!(bytes[i], b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9') {
                    i += 1;
                }
                let token = &bytes[start..i];
                if token.iter().any(|b| matches!(b, b'.' | b'e' | b'E')) {
                    check_float_text(bytes, start, token)?;
                }
            }
            _ => i += 1,
        }
    }
    Ok(())
}

fn check_float_text(bytes: &[u8], start: usize, token: &[u8]) -> Result<(), serde_json::Error> {
    let text = std::str::from_utf8(token).unwrap_or_default();
    // The double serde_json made of it: the same parser, so the same
    // rounding.
    let Ok(double) = serde_json::from_str::<f64>(text) else {
        return Ok(());
    };
    if double.is_finite() && double.fract() == 0.0 && !is_whole_number_text(text) {
        let before = &bytes[..start];
        let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
        let column = start - before.iter().rposition(|&b| b == b'\n').map_or(0, |p| p + 1) + 1;
        return Err(de::Error::custom(format_args!(
            "the number `{}` at line {line} column {column} is not a whole number, but a double rounds it to one \
             (write it with at most 17 significant digits)",
            if text.len() > 40 { &text[..40] } else { text }
        )));
    }
    Ok(())
}

/// True when JSON number text stands for a whole number exactly (`5.0`,
/// `1e3`, `1.50e1`, `-0.0`), judged on its digits, not through a double.
pub(crate) fn is_whole_number_text(text: &str) -> bool {
    let unsigned = text.strip_prefix('-').unwrap_or(text);
    let (mantissa, exponent) = match unsigned.find(['e', 'E']) {
        Some(at) => (&unsigned[..at], &unsigned[at + 1..]),
        None => (unsigned, "0"),
    };
    let (whole, fraction) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let digits = whole.bytes().chain(fraction.bytes());
    // Trailing zeros of the digits move the decimal point right.
    let significant: Vec<u8> = digits.collect();
    let trailing_zeros = significant.iter().rev().take_while(|&&d| d == b'0').count();
    if trailing_zeros == significant.len() {
        return true; // zero
    }
    let exponent: i64 = {
        let (negative, digits) = match exponent.as_bytes().first() {
            Some(b'-') => (true, &exponent[1..]),
            Some(b'+') => (false, &exponent[1..]),
            _ => (false, exponent),
        };
        // Saturates: an exponent past i64 is decided by its sign alone.
        let magnitude = digits.bytes().fold(0i64, |acc, d| {
            acc.saturating_mul(10).saturating_add(i64::from(d.wrapping_sub(b'0')))
        });
        if negative {
            -magnitude
        } else {
            magnitude
        }
    };
    let fraction_len = i64::try_from(fraction.len()).unwrap_or(i64::MAX);
    let trailing = i64::try_from(trailing_zeros).unwrap_or(i64::MAX);
    exponent.saturating_sub(fraction_len).saturating_add(trailing) >= 0
}

/// For `#[serde(deserialize_with = "...")]` on a [`Value`] field: reads it
/// as [`parse_strict`] does.
pub fn strict_value<'de, D: Deserializer<'de>>(d: D) -> Result<Value, D::Error> {
    Strict::deserialize(d).map(|s| s.0)
}

/// As [`strict_value`], for an `Option<Value>` field (`null` is `None`).
pub fn strict_option<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
    Option::<Strict>::deserialize(d).map(|s| s.map(|s| s.0))
}

/// A [`Value`] read with repeated keys refused.
struct Strict(Value);

impl<'de> Deserialize<'de> for Strict {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Strict, D::Error> {
        d.deserialize_any(StrictVisitor).map(Strict)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        // As serde_json: a float JSON cannot hold (never from JSON text) is null.
        Ok(Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        strict_value(d)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1024));
        while let Some(Strict(item)) = seq.next_element()? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut object = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if object.contains_key(&key) {
                return Err(de::Error::custom(format_args!(
                    "the key `{}` appears twice in one object",
                    key.escape_debug()
                )));
            }
            let Strict(value) = map.next_value()?;
            object.insert(key, value);
        }
        Ok(Value::Object(object))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn reads_what_serde_json_reads() {
        for text in [
            r#"{"a": [1, -2, 3.5, 18446744073709551615, true, null, "x\u00e9"], "b": {"c": {}}}"#,
            "[]",
            "0",
            r#""s""#,
        ] {
            let plain: Value = serde_json::from_str(text).unwrap();
            assert_eq!(parse_strict(text.as_bytes()).unwrap(), plain, "{text}");
        }
    }

    #[test]
    fn whole_number_texts_are_judged_on_their_digits() {
        for text in [
            "5.0", "1e3", "1.50e1", "-0.0", "0e-5", "100e-2", "1E+2", "12.000", "0.0e0",
        ] {
            assert!(is_whole_number_text(text), "{text}");
        }
        for text in [
            "2.9999999999999999",
            "1.5",
            "1e-1",
            "1e-400",
            "150e-3",
            "9007199254740993.5",
            "-0.5",
        ] {
            assert!(!is_whole_number_text(text), "{text}");
        }
    }

    #[test]
    fn numbers_a_double_rounds_to_a_whole_number_are_refused() {
        for (text, number) in [
            (r#"{"n": 2.9999999999999999}"#, "2.9999999999999999"),
            (
                r#"{"a": "1.5 \" 2.5", "n": [1, 9007199254740993.5]}"#,
                "9007199254740993.5",
            ),
            ("[\n 1e-400]", "1e-400"),
            (r#"{"n": -9223372036854775808.5}"#, "-9223372036854775808.5"),
        ] {
            let e = parse_strict(text.as_bytes()).unwrap_err().to_string();
            assert!(e.contains(&format!("the number `{number}`")), "{text}: {e}");
        }
        assert!(parse_strict(b"[\n 1e-400]")
            .unwrap_err()
            .to_string()
            .contains("line 2 column 2"));
        // Whole numbers in any form, and fractions a double keeps, are fine.
        for text in [
            "[5.0, 1e3, 1.5, 0.1, 1e300, -0.0, 2.5e-7, 9007199254740993, -9223372036854775809]",
            r#""2.9999999999999999""#,
        ] {
            assert!(parse_strict(text.as_bytes()).is_ok(), "{text}");
        }
    }

    #[test]
    fn repeated_keys_are_refused_at_any_depth() {
        for (text, key) in [
            (r#"{"a": 1, "a": 2}"#, "a"),
            (r#"{"x": [{"amount": 5, "amount": 5000}]}"#, "amount"),
            // The same key spelt with an escape is the same key.
            (r#"{"ab": 1, "\u0061b": 2}"#, "ab"),
        ] {
            let e = parse_strict(text.as_bytes()).unwrap_err().to_string();
            assert!(e.contains(&format!("the key `{key}` appears twice")), "{text}: {e}");
            assert!(e.contains("line 1 column"), "{e}");
        }
        // Equal keys in different objects are fine.
        assert!(parse_strict(br#"{"a": {"a": 1}, "b": {"a": 2}}"#).is_ok());
    }
}
