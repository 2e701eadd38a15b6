//! Actra's request shape, `{"action": {"type": ..., <fields>}, "actor":
//! {...}, "snapshot": {...}}`, checked before the contracts are.
//!
//! Actra accepts almost anything here and answers `allow` for much of it
//! (a missing or misspelt `type`, a field of the wrong type); its Python
//! binding raises an error for `null`, lists and objects. Rein refuses all
//! of these with a `contract` block that names the field.

use crate::contract::Violation;
use serde_json::{Map, Value as Json};

/// The parts of an Actra input.
pub(crate) struct Parts<'a> {
    /// `action.type`: the action's name.
    pub action_type: &'a str,
    /// The whole `action` object (`type` included).
    pub action: &'a Json,
    /// The actor; `None` when absent.
    pub actor: Option<&'a Json>,
    /// The snapshot; `None` when absent.
    pub snapshot: Option<&'a Json>,
}

fn violation(path: &str, message: impl Into<String>) -> Violation {
    Violation {
        path: path.to_string(),
        message: message.into(),
    }
}

/// Splits an input into its parts, refusing what Actra's own evaluator
/// could not decide meaningfully.
pub(crate) fn split(input: &Json) -> Result<Parts<'_>, Violation> {
    let Json::Object(top) = input else {
        return Err(violation(
            "request",
            format!(
                "must be an object with `action`, `actor` and `snapshot`, got {}",
                crate::contract::json_kind(input)
            ),
        ));
    };
    if let Some(k) = top
        .keys()
        .find(|k| !["action", "actor", "snapshot"].contains(&k.as_str()))
    {
        let hint = crate::diagnostics::did_you_mean(k, ["action", "actor", "snapshot"])
            .map(|s| format!(" (did you mean `{s}`?)"))
            .unwrap_or_default();
        return Err(violation(
            k,
            format!("is not part of an Actra request, which has `action`, `actor` and `snapshot`{hint}"),
        ));
    }
    let (action_value, action) = match top.get("action") {
        Some(v @ Json::Object(a)) => (v, a),
        Some(other) => {
            return Err(violation(
                "action",
                format!("must be an object, got {}", crate::contract::json_kind(other)),
            ))
        }
        None => {
            return Err(violation(
                "action.type",
                "is required: the request names no action (Actra would skip every action rule)",
            ))
        }
    };
    for (name, domain) in [("actor", top.get("actor")), ("snapshot", top.get("snapshot"))] {
        if let Some(value) = domain {
            match value {
                Json::Object(fields) => scalars_only(name, fields)?,
                other => {
                    return Err(violation(
                        name,
                        format!("must be an object, got {}", crate::contract::json_kind(other)),
                    ))
                }
            }
        }
    }
    scalars_only("action", action)?;
    let action_type = match action.get("type") {
        Some(Json::String(t)) => t.as_str(),
        Some(other) => {
            return Err(violation(
                "action.type",
                format!(
                    "must be a string naming the action, got {} (Actra would skip every action rule)",
                    crate::contract::json_kind(other)
                ),
            ))
        }
        None => {
            return Err(violation(
                "action.type",
                "is required: it names the action (Actra would skip every action rule)",
            ))
        }
    };
    Ok(Parts {
        action_type,
        action: action_value,
        actor: top.get("actor"),
        snapshot: top.get("snapshot"),
    })
}

/// Actra's values are strings, numbers and booleans only.
fn scalars_only(domain: &str, fields: &Map<String, Json>) -> Result<(), Violation> {
    for (k, v) in fields {
        if matches!(v, Json::Null | Json::Array(_) | Json::Object(_)) {
            return Err(violation(
                &format!("{domain}.{k}"),
                format!(
                    "must be a string, a number or a boolean, got {}",
                    crate::contract::json_kind(v)
                ),
            ));
        }
    }
    Ok(())
}
