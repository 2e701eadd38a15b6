//! Run-time values: what a contract-checked request holds and what
//! expressions compute.

use crate::instant::Instant;
use crate::types::Type;
use jiff::SignedDuration;
use smol_str::SmolStr;
use std::collections::BTreeMap;
use std::net::IpAddr;

/// A typed value. Objects store their fields by position (the order of the
/// object type), so a field read is an index, not a name lookup.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub enum Value {
    /// `null`
    Null,
    /// A field the contract marks optional and the request left out.
    Absent,
    /// `true` / `false`
    Bool(bool),
    /// A 64-bit integer.
    Int(i64),
    /// A 64-bit float; never NaN when it came from a request.
    Float(f64),
    /// A string (up to 23 bytes inline, longer ones shared).
    Str(SmolStr),
    /// A point in time.
    Timestamp(Instant),
    /// A span of time.
    Duration(SignedDuration),
    /// A list.
    List(Vec<Value>),
    /// A map with string keys.
    Map(BTreeMap<String, Value>),
    /// An object's fields, in the order of its type.
    Object(Vec<Value>),
    /// A parsed URL.
    Url(Box<url::Url>),
    /// An IP address.
    Ip(IpAddr),
    /// A CIDR range: network address and prefix length.
    Cidr(IpAddr, u8),
}

impl Value {
    /// The numeric value of an int or a float.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Int(i) => Some(*i as f64),
            Value::Float(f) => Some(*f),
            _ => None,
        }
    }

    /// The string, if this is one.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// Equality as the condition language defines it: ints and floats
    /// compare by value, objects field by field, NaN equals nothing.
    pub fn equals(&self, other: &Value) -> bool {
        match (self, other) {
            (Value::Null, Value::Null) | (Value::Absent, Value::Absent) => true,
            (Value::Bool(a), Value::Bool(b)) => a == b,
            (Value::Int(a), Value::Int(b)) => a == b,
            (Value::Int(_) | Value::Float(_), Value::Int(_) | Value::Float(_)) => {
                num_cmp(self, other) == Some(std::cmp::Ordering::Equal)
            }
            (Value::Str(a), Value::Str(b)) => a == b,
            (Value::Timestamp(a), Value::Timestamp(b)) => a == b,
            (Value::Duration(a), Value::Duration(b)) => a == b,
            (Value::List(a), Value::List(b)) | (Value::Object(a), Value::Object(b)) => {
                a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.equals(y))
            }
            (Value::Map(a), Value::Map(b)) => {
                a.len() == b.len() && a.iter().zip(b).all(|((ka, va), (kb, vb))| ka == kb && va.equals(vb))
            }
            (Value::Url(a), Value::Url(b)) => a == b,
            (Value::Ip(a), Value::Ip(b)) => a == b,
            (Value::Cidr(a, n), Value::Cidr(b, m)) => a == b && n == m,
            _ => false,
        }
    }

    /// Ordering for `< <= > >=`: numbers, strings, timestamps, durations,
    /// booleans. `None` when the values do not order (NaN, mixed kinds).
    pub fn compare(&self, other: &Value) -> Option<std::cmp::Ordering> {
        match (self, other) {
            (Value::Int(a), Value::Int(b)) => Some(a.cmp(b)),
            (Value::Int(_) | Value::Float(_), Value::Int(_) | Value::Float(_)) => num_cmp(self, other),
            (Value::Str(a), Value::Str(b)) => Some(a.cmp(b)),
            (Value::Timestamp(a), Value::Timestamp(b)) => Some(a.cmp(b)),
            (Value::Duration(a), Value::Duration(b)) => Some(a.cmp(b)),
            (Value::Bool(a), Value::Bool(b)) => Some(a.cmp(b)),
            _ => None,
        }
    }

    /// The value as JSON, using `ty` to name object fields. Timestamps and
    /// durations become their text forms.
    pub fn to_json(&self, ty: &Type) -> serde_json::Value {
        use serde_json::Value as J;
        match self {
            Value::Null | Value::Absent => J::Null,
            Value::Bool(b) => J::Bool(*b),
            Value::Int(i) => J::from(*i),
            Value::Float(f) => serde_json::Number::from_f64(*f).map_or_else(|| J::String(f.to_string()), J::Number),
            Value::Str(s) => J::String(s.to_string()),
            Value::Timestamp(t) => J::String(t.to_string()),
            Value::Duration(d) => J::String(format_duration(*d)),
            Value::List(items) => {
                let elem = match ty {
                    Type::List(t) => t.as_ref(),
                    _ => &Type::Dyn,
                };
                J::Array(items.iter().map(|v| v.to_json(elem)).collect())
            }
            Value::Map(m) => {
                let elem = match ty {
                    Type::Map(t) => t.as_ref(),
                    _ => &Type::Dyn,
                };
                J::Object(m.iter().map(|(k, v)| (k.clone(), v.to_json(elem))).collect())
            }
            Value::Object(fields) => match ty {
                Type::Object(obj) => J::Object(
                    obj.fields
                        .iter()
                        .zip(fields)
                        .filter(|(_, v)| !matches!(v, Value::Absent))
                        .map(|(f, v)| (f.name.clone(), v.to_json(&f.ty)))
                        .collect(),
                ),
                _ => J::Array(fields.iter().map(|v| v.to_json(&Type::Dyn)).collect()),
            },
            Value::Url(u) => J::String(u.to_string()),
            Value::Ip(ip) => J::String(ip.to_string()),
            Value::Cidr(ip, n) => J::String(format!("{ip}/{n}")),
        }
    }
}

fn num_cmp(a: &Value, b: &Value) -> Option<std::cmp::Ordering> {
    match (a, b) {
        (Value::Int(x), Value::Float(y)) => cmp_int_float(*x, *y),
        (Value::Float(x), Value::Int(y)) => cmp_int_float(*y, *x).map(|o| o.reverse()),
        _ => a.as_f64()?.partial_cmp(&b.as_f64()?),
    }
}

/// Compares an int with a float exactly (no rounding of large ints).
pub(crate) fn cmp_int_float(i: i64, f: f64) -> Option<std::cmp::Ordering> {
    use std::cmp::Ordering;
    // Every int up to 2^53 in magnitude is exactly a double: compare as
    // doubles (NaN orders as nothing). The common case (a `number` field
    // against an int constant), and no `trunc`, which is a libm call on
    // baseline x86-64.
    if i.unsigned_abs() <= 1 << 53 {
        return (i as f64).partial_cmp(&f);
    }
    if f.is_nan() {
        return None;
    }
    // 2^63 as f64; every float at or above it is larger than any i64.
    const TWO_63: f64 = 9_223_372_036_854_775_808.0;
    if f >= TWO_63 {
        return Some(Ordering::Less);
    }
    if f < -TWO_63 {
        return Some(Ordering::Greater);
    }
    let t = f.trunc();
    // In range, so the conversion is exact.
    let ti = t as i64;
    match i.cmp(&ti) {
        Ordering::Equal => 0.0f64.partial_cmp(&(f - t)),
        o => Some(o),
    }
}

/// Parses a duration in the Go/CEL form: `1h30m`, `250ms`, `-1.5s`, `0`.
/// Units: `h m s ms us µs ns`.
pub fn parse_duration(text: &str) -> Option<SignedDuration> {
    let (neg, mut rest) = match text.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, text.strip_prefix('+').unwrap_or(text)),
    };
    if rest == "0" {
        return Some(SignedDuration::ZERO);
    }
    if rest.is_empty() {
        return None;
    }
    let mut total: i128 = 0;
    while !rest.is_empty() {
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (num, tail) = rest.split_at(num_end);
        if num.is_empty() || num == "." {
            return None;
        }
        let unit_end = tail
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_end);
        let nanos_per: i128 = match unit {
            "h" => 3_600_000_000_000,
            "m" => 60_000_000_000,
            "s" => 1_000_000_000,
            "ms" => 1_000_000,
            "us" | "µs" => 1_000,
            "ns" => 1,
            _ => return None,
        };
        let (whole, frac) = num.split_once('.').unwrap_or((num, ""));
        let whole: i128 = if whole.is_empty() { 0 } else { whole.parse().ok()? };
        let mut part = whole.checked_mul(nanos_per)?;
        let mut scale = nanos_per;
        for d in frac.chars().take(18) {
            scale /= 10;
            part += i128::from(d.to_digit(10)?) * scale;
        }
        total = total.checked_add(part)?;
        rest = tail;
    }
    let total = if neg { -total } else { total };
    let secs = i64::try_from(total.div_euclid(1_000_000_000)).ok()?;
    let nanos = i32::try_from(total.rem_euclid(1_000_000_000)).ok()?;
    Some(SignedDuration::new(secs, nanos))
}

/// Prints a duration in the form [`parse_duration`] reads.
pub fn format_duration(d: SignedDuration) -> String {
    let total = d.as_nanos();
    if total == 0 {
        return "0s".to_string();
    }
    let mut out = String::new();
    if total < 0 {
        out.push('-');
    }
    let mut n = total.unsigned_abs();
    for (unit, size) in [("h", 3_600_000_000_000u128), ("m", 60_000_000_000)] {
        if n >= size {
            out.push_str(&format!("{}{unit}", n / size));
            n %= size;
        }
    }
    if n > 0 {
        let secs = n / 1_000_000_000;
        let frac = n % 1_000_000_000;
        if frac == 0 {
            out.push_str(&format!("{secs}s"));
        } else {
            let digits = format!("{frac:09}");
            out.push_str(&format!("{secs}.{}s", digits.trim_end_matches('0')));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_round_trip() {
        for (text, secs, nanos) in [
            ("1h30m", 5400, 0),
            ("250ms", 0, 250_000_000),
            ("1.5s", 1, 500_000_000),
            ("0", 0, 0),
            ("2h0m1s", 7201, 0),
        ] {
            let d = parse_duration(text).unwrap();
            assert_eq!(d, SignedDuration::new(secs, nanos), "{text}");
            assert_eq!(parse_duration(&format_duration(d)), Some(d));
        }
        assert_eq!(parse_duration("-1m"), Some(SignedDuration::from_secs(-60)));
        for bad in ["", "1", "h", "1x", "1.2.3s", "--1s", "99999999999999999999999h"] {
            assert_eq!(parse_duration(bad), None, "{bad}");
        }
    }

    #[test]
    fn int_float_comparison_is_exact() {
        use std::cmp::Ordering::*;
        let big = Value::Int(i64::MAX);
        assert_eq!(big.compare(&Value::Float(9.223372036854776e18)), Some(Less));
        assert_eq!(Value::Int(3).compare(&Value::Float(3.5)), Some(Less));
        assert_eq!(Value::Int(-3).compare(&Value::Float(-3.5)), Some(Greater));
        assert!(Value::Int(1000).equals(&Value::Float(1000.0)));
        assert_eq!(Value::Int(1).compare(&Value::Float(f64::NAN)), None);
        assert!(!Value::Float(f64::NAN).equals(&Value::Float(f64::NAN)));
        // Around 2^53, where doubles stop holding every int.
        let two_53 = 1i64 << 53;
        assert_eq!(Value::Int(two_53).compare(&Value::Float(two_53 as f64)), Some(Equal));
        assert_eq!(
            Value::Int(two_53 + 1).compare(&Value::Float(two_53 as f64)),
            Some(Greater)
        );
        assert_eq!(
            Value::Int(-two_53 - 1).compare(&Value::Float(-two_53 as f64)),
            Some(Less)
        );
        assert_eq!(Value::Float(two_53 as f64).compare(&Value::Int(two_53 + 1)), Some(Less));
        assert_eq!(
            Value::Int(-two_53).compare(&Value::Float(f64::NEG_INFINITY)),
            Some(Greater)
        );
        assert_eq!(Value::Int(5).compare(&Value::Float(f64::INFINITY)), Some(Less));
        assert_eq!(Value::Float(f64::NAN).compare(&Value::Int(0)), None);
    }
}
