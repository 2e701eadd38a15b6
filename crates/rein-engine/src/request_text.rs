//! Deciding a request given as JSON text.
//!
//! The entry point every surface that holds the request's text (the CLI,
//! hooks, the decision server, the benchmarks) can call instead of reading
//! a [`Request`] first.

use crate::decision::Decision;
use crate::policy::Policy;
use crate::request::{Request, RequestError};

impl Policy {
    /// Reads a request from JSON text (as [`Request::from_json_str`] does:
    /// unknown top-level keys, repeated keys and inexact numbers are
    /// refused) and decides it (as [`Policy::decide`] does). `Err` only when
    /// the text is not a request at all; a request that breaks its contract
    /// is a `block` decision that says why.
    pub fn decide_json_str(&self, text: &str) -> Result<Decision<'_>, RequestError> {
        let request = Request::from_json_str(text)?;
        Ok(self.decide(&request))
    }
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
