//! `Policy::decide_json_str` reads the text straight into the contract's
//! slots; on every text it must decide exactly as `Request::from_json_str`
//! then `Policy::decide` do (or refuse with the same error).
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

const POLICY: &str = r#"
default: allow
contracts:
  actor: {id: string?, roles: list<string>?, level: {type: int, min: 0, max: 9, optional: true}}
  snapshot: {env: {type: enum, values: [dev, prod], optional: true}, at: timestamp?}
  actions:
    refund:
      input:
        amount: {type: number, min: 0, max: 1000}
        count: {type: int, optional: true}
        currency: {type: string, pattern: "^[A-Z]{3}$", optional: true}
        lines: {type: list, optional: true, items: {type: object, fields: {sku: string, qty: int}}}
        meta: map<string>?
        wait: duration?
        card: {type: string, sensitive: true, optional: true, max_len: 8}
        extra: {type: object, optional: true, extra_fields: ignore, fields: {a: int?}}
      output:
        id: string
        ok: bool?
    ping:
      input: {}
rules:
  - id: big
    action: refund
    when: input.amount > 500 && !(has(actor.roles) && "admin" in actor.roles)
    effect: block
  - id: counted
    action: refund
    when: has(input.count) && input.count > 3
    effect: require_approval
  - id: late
    action: refund
    when: has(snapshot.at) && snapshot.at < now
    effect: block
  - id: failed
    action: refund
    phase: after
    when: error == "boom"
    effect: block
  - id: no_id
    action: refund
    phase: after
    when: output.id == ""
    effect: block
"#;

/// Everything a decision says.
fn shown(d: &rein_engine::Decision) -> String {
    format!(
        "{:?} {:?} {:?} {:?} {:?} {:?} {}",
        d.effect(),
        d.phase(),
        d.basis(),
        d.matched_rules(),
        d.errors(),
        d.reasons(),
        d.to_json()
    )
}

fuzz_target!(|data: &[u8]| {
    static POL: OnceLock<rein_engine::Policy> = OnceLock::new();
    let policy = POL.get_or_init(|| rein_engine::Policy::from_yaml_str(POLICY).expect("fuzz policy loads"));
    let Ok(text) = std::str::from_utf8(data) else { return };
    let direct = policy.decide_json_str(text);
    match rein_engine::Request::from_json_str(text) {
        Ok(request) => {
            let direct = direct.expect("the request reader takes the text, so must the direct reading");
            assert_eq!(shown(&direct), shown(&policy.decide(&request)), "{text}");
        }
        Err(e) => assert_eq!(
            direct.map(|d| shown(&d)).map_err(|e| e.to_string()),
            Err(e.to_string()),
            "{text}"
        ),
    }
});
