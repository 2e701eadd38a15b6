//! Deciding a request given as JSON text.
//!
//! The entry point every surface that holds the request's text (the CLI,
//! hooks, the decision server, the benchmarks) can call instead of reading
//! a [`Request`] first.
//!
//! The text is read once, onto a borrowed tape (see [`tape`]) that the
//! contract checker reads in place: no `serde_json::Value` is built, no
//! string without escapes is copied until it becomes a typed value. That
//! reading is a fast path, not a second definition of a request: whatever
//! it does not take as it comes (a text that is not a request, a repeated
//! or unknown key, a `time` or `phase` that is not plainly right, a number
//! the request reader may refuse, a contract violation, an unknown action)
//! is decided again by [`Request::from_json_str`] and [`Policy::decide`],
//! so every refusal and every violation says exactly what they say. The
//! differential tests (`request_text/differential.rs`, the fuzz target
//! `request_text`) hold the two paths to the same decision on every text.

mod tape;

#[cfg(test)]
mod differential;

use crate::ast::Phase;
use crate::decision::Decision;
use crate::policy::{Parts, Policy, Prepared, Refusal};
use crate::request::{Request, RequestError};
use tape::{Cursor, Tape};

impl Policy {
    /// Reads a request from JSON text (as [`Request::from_json_str`] does:
    /// unknown top-level keys, repeated keys and inexact numbers are
    /// refused) and decides it (as [`Policy::decide`] does). `Err` only when
    /// the text is not a request at all; a request that breaks its contract
    /// is a `block` decision that says why.
    pub fn decide_json_str(&self, text: &str) -> Result<Decision<'_>, RequestError> {
        match self.read_json_text(text) {
            Some(Direct::Prepared(prepared)) => return Ok(prepared.decide()),
            Some(Direct::Refused(decision)) => return Ok(decision),
            None => {}
        }
        let request = Request::from_json_str(text)?;
        Ok(self.decide(&request))
    }

    /// The request in `text` read straight from the text, when it is a
    /// well-formed request that passes its contracts or names an action
    /// the policy does not know; `None` for anything else, which the
    /// request reader decides (and words) as usual.
    fn read_json_text(&self, text: &str) -> Option<Direct<'_>> {
        let tape = Tape::read(text)?;
        let parts = request_parts(tape.root())?;
        let phase = parts.phase;
        match self.prepare_parts(parts) {
            Ok(prepared) => Some(Direct::Prepared(prepared)),
            // The request reader takes every text the tape and
            // `request_parts` take, and refuses an unknown action on its
            // name alone: refused here as `decide` refuses it, without
            // reading the text again.
            Err(r @ Refusal::UnknownAction { .. }) => Some(Direct::Refused(self.refuse(phase, r))),
            // Worded by the request path.
            Err(Refusal::Contract(_)) => None,
        }
    }

    /// The request in `text` prepared straight from the text (see
    /// [`Policy::read_json_text`]).
    #[cfg(test)]
    fn prepare_json_text(&self, text: &str) -> Option<Prepared<'_>> {
        match self.read_json_text(text)? {
            Direct::Prepared(prepared) => Some(prepared),
            Direct::Refused(_) => None,
        }
    }
}

/// A request read straight from its text.
enum Direct<'p> {
    /// Passed its contracts.
    Prepared(Prepared<'p>),
    /// Refused before its contracts (an unknown action).
    Refused(Decision<'p>),
}

/// The parts of a request object on a tape, read as [`Request`]'s reader
/// reads them, or `None` where that reader may refuse or read differently
/// (any doubt goes to it).
fn request_parts<'t, 'a>(root: Cursor<'t, 'a>) -> Option<Parts<'t, Cursor<'t, 'a>>> {
    if !root.is_object() {
        return None;
    }
    let mut parts = Parts {
        action: "",
        phase: Phase::Before,
        input: None,
        output: None,
        error: None,
        actor: None,
        snapshot: None,
        session: None,
        time: None,
    };
    let mut has_action = false;
    // The tape holds no repeated key: each of these is set at most once.
    root.each_entry(|key, value| {
        match key {
            "action" => {
                parts.action = value.as_str().ok_or(())?;
                has_action = true;
            }
            "input" => parts.input = Some(value),
            "actor" => parts.actor = Some(value),
            "snapshot" => parts.snapshot = Some(value),
            // `null` is no output, as `Option` reads it.
            "output" => parts.output = (!value.is_null()).then_some(value),
            "error" => parts.error = optional_str(value)?,
            "session" => parts.session = optional_str(value)?,
            "time" => {
                parts.time = match optional_str(value)? {
                    Some(text) => Some(Request::parse_time(text).map_err(drop)?),
                    None => None,
                }
            }
            // Only the plain spelling; the reader's other forms of an
            // enum (`{"after": null}`) are left to it.
            "phase" => {
                parts.phase = match value.as_str() {
                    Some("before") => Phase::Before,
                    Some("after") => Phase::After,
                    _ => return Err(()),
                }
            }
            _ => return Err(()),
        }
        Ok(())
    })
    .ok()?;
    has_action.then_some(parts)
}

/// A string or `null` (`None`); `Err` for any other value.
fn optional_str<'t>(value: Cursor<'t, '_>) -> Result<Option<&'t str>, ()> {
    if value.is_null() {
        return Ok(None);
    }
    value.as_str().map(Some).ok_or(())
}

#[cfg(test)]
mod tests {
    use crate::{Effect, Policy};

    const POLICY: &str = r#"
default: allow
contracts:
  actions:
    refund:
      input:
        amount: int
rules:
  - id: large
    action: refund
    effect: block
    when: input.amount > 100
"#;

    #[test]
    fn decides_from_text_as_from_a_request() {
        let p = Policy::from_yaml_str(POLICY).unwrap();
        let d = p
            .decide_json_str(r#"{"action":"refund","input":{"amount":500}}"#)
            .unwrap();
        assert_eq!(d.effect(), Effect::Block);
        assert_eq!(d.rules(), vec!["large"]);
        let d = p
            .decide_json_str(r#"{"action":"refund","input":{"amount":5}}"#)
            .unwrap();
        assert_eq!(d.effect(), Effect::Allow);
        let d = p
            .decide_json_str(r#"{"action":"refund","input":{"amount":"5"}}"#)
            .unwrap();
        assert_eq!(d.effect(), Effect::Block);
        assert!(d.violation().is_some());
        assert!(p.decide_json_str(r#"{"action":"refund","inputs":{}}"#).is_err());
        assert!(p
            .decide_json_str(r#"{"action":"refund","input":{"amount":1,"amount":2}}"#)
            .is_err());
    }
}
