//! Any request text is answered, and a malformed or contract-breaking one is
//! never allowed.
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

const POLICY: &str = r#"
default: allow
contracts:
  actor: {id: string, roles: list<string>}
  snapshot: {env: {type: enum, values: [dev, prod]}, at: timestamp?}
  actions:
    refund:
      input:
        amount: {type: number, min: 0, max: 1000}
        currency: {type: string, pattern: "^[A-Z]{3}$"}
        lines: {type: list, optional: true, items: {type: object, fields: {sku: string, qty: int}}}
        meta: map<string>?
rules:
  - id: big
    action: refund
    when: input.amount > 500 && !("admin" in actor.roles)
    effect: block
"#;

fuzz_target!(|data: &[u8]| {
    static POL: OnceLock<rein_engine::Policy> = OnceLock::new();
    let policy = POL.get_or_init(|| rein_engine::Policy::from_yaml_str(POLICY).expect("fuzz policy loads"));
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(request) = rein_engine::Request::from_json_str(text) else { return };
    let decision = policy.decide(&request);
    if decision.effect() == rein_engine::Effect::Allow {
        // Allowed only if it fits: re-checking must find no violation.
        assert!(decision.violation().is_none());
        assert_eq!(request.action, "refund");
    }
});
