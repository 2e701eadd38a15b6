//! Evaluation of the session functions and limit amounts: reading a
//! [`StateView`], turning a stored call back into a typed value through its
//! contract, rendering values with sensitive fields hashed, and exact
//! decimal amounts.

use crate::ast::Effect;
use crate::eval::{Env, EvalError};
use crate::instant::Instant;
use crate::state::{Decimal, SessionCall, StateError, StateView};
use crate::types::{ObjectType, Type};
use crate::value::{parse_duration, Value};
use jiff::{SignedDuration, Timestamp};
use rust_decimal::prelude::ToPrimitive;
use serde_json::Value as Json;
use std::str::FromStr;

/// Why a session function has nothing to read (a request without a
/// session is refused before its rules run, so this is a safety net).
pub(crate) const NO_SESSION: &str = "the request names no session";

fn state_error(e: StateError) -> EvalError {
    EvalError(e.to_string())
}

/// The state and the session a session function reads.
fn session_env<'a>(env: &Env<'a>) -> Result<(&'a dyn StateView, &'a str), EvalError> {
    let state = env
        .state
        .ok_or_else(|| EvalError("this condition reads the session, and the decision was made without state".into()))?;
    let session = env.session.ok_or_else(|| EvalError(NO_SESSION.into()))?;
    Ok((state, session))
}

/// The start of a window ending at the request's time.
pub(crate) fn window_start(now: Option<Timestamp>, window: SignedDuration) -> Result<Timestamp, EvalError> {
    let now = now.ok_or_else(|| EvalError("the request carries no time, so a window cannot be placed".into()))?;
    now.checked_sub(window)
        .map_err(|_| EvalError("the window starts before the earliest time".into()))
}

/// `session.labels`.
pub(crate) fn labels(env: &Env<'_>) -> Result<Value, EvalError> {
    let (state, session) = session_env(env)?;
    let labels = state.session_labels(session).map_err(state_error)?;
    Ok(Value::List(labels.into_iter().map(|s| Value::Str(s.into())).collect()))
}

/// `label in session.labels`.
pub(crate) fn has_label(env: &Env<'_>, label: &str) -> Result<bool, EvalError> {
    let (state, session) = session_env(env)?;
    state.session_has_label(session, label).map_err(state_error)
}

/// `session.count(pattern, window)`: earlier calls of `actions` (sorted).
pub(crate) fn count(env: &Env<'_>, actions: &[String], window: SignedDuration) -> Result<i64, EvalError> {
    let (state, session) = session_env(env)?;
    let since = window_start(env.now, window)?;
    let mut n: i64 = 0;
    state
        .session_calls(session, since, &mut |c: &SessionCall| {
            if actions.binary_search(&c.action).is_ok() {
                n = n.saturating_add(1);
            }
        })
        .map_err(state_error)?;
    Ok(n)
}

/// `session.sum(action, field, window)` over the allowed earlier calls of
/// `action`: exact decimals, an absent field adds nothing.
pub(crate) fn sum(
    env: &Env<'_>,
    action: &str,
    output: bool,
    path: &[String],
    int: bool,
    window: SignedDuration,
) -> Result<Value, EvalError> {
    let (state, session) = session_env(env)?;
    let since = window_start(env.now, window)?;
    let mut total = Decimal::ZERO;
    let mut error: Option<EvalError> = None;
    state
        .session_calls(session, since, &mut |c: &SessionCall| {
            if error.is_some() || c.action != action || c.effect != Effect::Allow {
                return;
            }
            let root = if output {
                match &c.output {
                    Some(o) => o,
                    None => return,
                }
            } else {
                &c.input
            };
            let mut v = root;
            for key in path {
                match v.get(key) {
                    Some(next) => v = next,
                    None => return,
                }
            }
            if v.is_null() {
                return;
            }
            match json_decimal(v).and_then(|d| total.checked_add(d)) {
                Some(t) => total = t,
                None => {
                    error = Some(EvalError(format!(
                        "session.sum: an earlier call of `{action}` holds {v}, which cannot be added exactly"
                    )))
                }
            }
        })
        .map_err(state_error)?;
    if let Some(e) = error {
        return Err(e);
    }
    if int {
        total
            .to_i64()
            .map(Value::Int)
            .ok_or_else(|| EvalError("session.sum: integer overflow".into()))
    } else {
        total
            .to_f64()
            .map(Value::Float)
            .ok_or_else(|| EvalError("session.sum: the sum is not a finite number".into()))
    }
}

/// `session.calls(action, window)`: the earlier calls, oldest first, typed
/// by `ty` (a list of call objects).
pub(crate) fn calls(env: &Env<'_>, action: &str, window: SignedDuration, ty: &Type) -> Result<Vec<Value>, EvalError> {
    let (state, session) = session_env(env)?;
    let since = window_start(env.now, window)?;
    let Type::List(elem) = ty else {
        return Err(EvalError("internal: session.calls is not typed as a list".into()));
    };
    let Type::Object(call_ty) = elem.as_ref() else {
        return Err(EvalError(
            "internal: session.calls is not typed as a list of calls".into(),
        ));
    };
    let mut out = Vec::new();
    let mut error: Option<EvalError> = None;
    state
        .session_calls(session, since, &mut |c: &SessionCall| {
            if error.is_some() || c.action != action {
                return;
            }
            match call_value(c, call_ty) {
                Ok(v) => out.push(v),
                Err(e) => error = Some(e),
            }
        })
        .map_err(state_error)?;
    match error {
        Some(e) => Err(e),
        None => Ok(out),
    }
}

/// One stored call as a typed call object (`input`, `output`, `effect`,
/// `time`, in the order of `ty`'s fields).
fn call_value(c: &SessionCall, ty: &ObjectType) -> Result<Value, EvalError> {
    let mut fields = Vec::with_capacity(ty.fields.len());
    for f in &ty.fields {
        let v = match f.name.as_str() {
            "input" => from_json(&c.input, &f.ty, "input")?,
            "output" => match &c.output {
                Some(o) => from_json(o, &f.ty, "output")?,
                None => Value::Absent,
            },
            "effect" => Value::Str(c.effect.as_str().into()),
            "time" => Value::Timestamp(Instant::from(c.time)),
            other => return Err(EvalError(format!("internal: a call has no field `{other}`"))),
        };
        fields.push(v);
    }
    Ok(Value::Object(fields))
}

/// Reads a stored value back through its (call) type. A value that no
/// longer fits (the policy's contract changed since it was recorded) is
/// an error, so the rule blocks instead of reading it wrongly.
fn from_json(json: &Json, ty: &Type, path: &str) -> Result<Value, EvalError> {
    let unfit = || {
        EvalError(format!(
            "an earlier call's `{path}` no longer fits its contract ({ty}); the policy changed since it was recorded"
        ))
    };
    Ok(match (ty, json) {
        (Type::Hashed(_), Json::String(s)) => Value::Str(s.into()),
        (Type::Null, Json::Null) => Value::Null,
        (Type::Bool, Json::Bool(b)) => Value::Bool(*b),
        (Type::Int, Json::Number(n)) => Value::Int(n.as_i64().ok_or_else(unfit)?),
        (Type::Number, Json::Number(n)) => Value::Float(n.as_f64().filter(|f| f.is_finite()).ok_or_else(unfit)?),
        (Type::String, Json::String(s)) => Value::Str(s.into()),
        (Type::Timestamp, Json::String(s)) => Value::Timestamp(Instant::parse(s).ok_or_else(unfit)?),
        (Type::Duration, Json::String(s)) => Value::Duration(parse_duration(s).ok_or_else(unfit)?),
        (Type::List(t), Json::Array(items)) => Value::List(
            items
                .iter()
                .enumerate()
                .map(|(i, v)| from_json(v, t, &format!("{path}[{i}]")))
                .collect::<Result<_, _>>()?,
        ),
        (Type::Map(t), Json::Object(m)) => Value::Map(
            m.iter()
                .map(|(k, v)| Ok((k.clone(), from_json(v, t, &format!("{path}[{k:?}]"))?)))
                .collect::<Result<_, EvalError>>()?,
        ),
        (Type::Object(o), Json::Object(m)) => {
            let mut fields = Vec::with_capacity(o.fields.len());
            for f in &o.fields {
                let p = format!("{path}.{}", f.name);
                fields.push(match m.get(&f.name) {
                    None | Some(Json::Null) if f.optional => Value::Absent,
                    None => return Err(unfit()),
                    Some(v) => from_json(v, &f.ty, &p)?,
                });
            }
            Value::Object(fields)
        }
        _ => return Err(unfit()),
    })
}

/// `hashed == clear`: the clear value is rendered and hashed as a
/// sensitive field is when a call is recorded.
pub(crate) fn hashed_equals(env: &Env<'_>, hashed: &Value, clear: &Value, clear_ty: &Type) -> Result<bool, EvalError> {
    let state = env.state.ok_or_else(|| {
        EvalError(
            "this condition compares a sensitive field of an earlier call, and the decision was made without state"
                .into(),
        )
    })?;
    let text = state.keyed_hash(&clear.to_json(clear_ty));
    Ok(hashed.as_str() == Some(text.as_str()))
}

/// A typed value as JSON, each sensitive field (at any depth) replaced by
/// the keyed hash of its rendering: what a session keeps.
pub(crate) fn render_hashed(value: &Value, ty: &Type, hash: &dyn Fn(&Json) -> String) -> Json {
    match (value, ty) {
        (Value::List(items), Type::List(t)) => Json::Array(items.iter().map(|v| render_hashed(v, t, hash)).collect()),
        (Value::Map(m), Type::Map(t)) => {
            Json::Object(m.iter().map(|(k, v)| (k.clone(), render_hashed(v, t, hash))).collect())
        }
        (Value::Object(fields), Type::Object(obj)) => Json::Object(
            obj.fields
                .iter()
                .zip(fields)
                .filter(|(_, v)| !matches!(v, Value::Absent))
                .map(|(f, v)| {
                    let shown = if f.sensitive {
                        Json::String(hash(&v.to_json(&f.ty)))
                    } else {
                        render_hashed(v, &f.ty, hash)
                    };
                    (f.name.clone(), shown)
                })
                .collect(),
        ),
        (v, t) => v.to_json(t),
    }
}

/// A float as the exact decimal of its shortest round-trip text (`0.1` is
/// 0.1, not 0.1000000000000000055…).
pub(crate) fn decimal_of_f64(f: f64) -> Option<Decimal> {
    if !f.is_finite() {
        return None;
    }
    // `{}` prints the shortest text that reads back as the same float,
    // without an exponent.
    let text = format!("{f}");
    let d = Decimal::from_str(&text).ok()?;
    // A decimal keeps 28 digits after the point, and parsing rounds the
    // rest away (1e-29 would become 0, 1.2345678901234567e-20 lose its
    // last digits): an amount that does not read back as the same float
    // is refused, never counted as less than it is.
    let back: f64 = d.to_string().parse().ok()?;
    (back == f).then_some(d)
}

/// A JSON number as an exact decimal.
pub(crate) fn json_decimal(v: &Json) -> Option<Decimal> {
    let n = v.as_number()?;
    if let Some(i) = n.as_i64() {
        return Some(Decimal::from(i));
    }
    if let Some(u) = n.as_u64() {
        return Some(Decimal::from(u));
    }
    decimal_of_f64(n.as_f64()?)
}

/// A number value as an exact decimal.
pub(crate) fn value_decimal(v: &Value) -> Option<Decimal> {
    match v {
        Value::Int(i) => Some(Decimal::from(*i)),
        Value::Float(f) => decimal_of_f64(*f),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_become_their_shortest_decimal() {
        let d = |f| decimal_of_f64(f).unwrap();
        assert_eq!(d(0.1) + d(0.2), Decimal::from_str("0.3").unwrap());
        assert_eq!(d(2000.5).to_string(), "2000.5");
        assert_eq!(d(-0.0), Decimal::ZERO);
        assert_eq!(decimal_of_f64(f64::NAN), None);
        assert_eq!(decimal_of_f64(f64::INFINITY), None);
        // Too large for a decimal: refused, never rounded to something else.
        assert_eq!(decimal_of_f64(1e300), None);
        // Too small or too precise for its 28 digits after the point: the
        // same (parsing would round 1e-29 to 0).
        for tiny in [1e-29, 1e-300, 5e-324, 1.2345678901234567e-20, -1e-29] {
            assert_eq!(decimal_of_f64(tiny), None, "{tiny}");
        }
        assert_eq!(d(1e-28).to_string(), "0.0000000000000000000000000001");
        assert_eq!(d(1.5e-20).to_string(), "0.000000000000000000015");
        assert_eq!(d(7.9e28).to_string(), "79000000000000000000000000000");
        assert_eq!(d(1.0000000000000002).to_string(), "1.0000000000000002");
        assert_eq!(json_decimal(&serde_json::json!(7)), Some(Decimal::from(7)));
        assert_eq!(
            json_decimal(&serde_json::json!(u64::MAX)),
            Some(Decimal::from(u64::MAX))
        );
        assert_eq!(json_decimal(&serde_json::json!("7")), None);
    }

    #[test]
    fn sensitive_fields_are_hashed_at_every_depth_and_read_back_as_hashes() {
        let policy = crate::Policy::from_yaml_str(
            r#"
contracts:
  actions:
    a:
      input:
        card: {type: string, sensitive: true}
        pin: {type: int, sensitive: true, optional: true}
        lines: {type: list, items: {type: object, fields: {sku: string, secret: {type: int, sensitive: true}}}}
"#,
        )
        .unwrap();
        let compiled = policy.compiled();
        let input = &compiled.actions[0].input;
        let request = crate::Request::new("a").input(serde_json::json!({
            "card": "4111", "lines": [{"sku": "x", "secret": 7}]
        }));
        let prepared = policy.prepare(&request).unwrap();
        let value = crate::contract::check_root(Some(&request.input), input, "input").unwrap();
        let hash = |v: &Json| format!("h({v})");
        let shown = render_hashed(&Value::Object(value), &Type::Object(input.clone()), &hash);
        assert_eq!(
            shown,
            serde_json::json!({"card": "h(\"4111\")", "lines": [{"sku": "x", "secret": "h(7)"}]})
        );
        assert_eq!(prepared.input_json()["card"], serde_json::json!("4111"));
        // Read back through the type of an earlier call: the hashes stay
        // strings, the rest is typed again.
        let call = crate::check::expr::session_action("a", input, None);
        let Type::Object(call_input) = &call.call.fields[0].ty else {
            panic!("a call's input is an object")
        };
        let back = from_json(&shown, &Type::Object(call_input.clone()), "input").unwrap();
        let Value::Object(fields) = back else {
            panic!("an object")
        };
        assert!(matches!(&fields[0], Value::Str(s) if s == "h(\"4111\")"));
        assert!(matches!(fields[1], Value::Absent));
        // A stored value that no longer fits is an error, not a guess.
        let unfit = from_json(
            &serde_json::json!({"card": 5, "lines": []}),
            &Type::Object(call_input.clone()),
            "input",
        );
        assert!(unfit.unwrap_err().0.contains("no longer fits"));
    }
}
