//! The Actra reader, governance and converter never panic, on any text;
//! a policy that loads decides without panicking, and its conversion loads.
//!
//! The input is split into schema, policy and governance at lines that
//! read `---8<---`.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let mut parts = text.splitn(3, "\n---8<---\n");
    let schema = parts.next().unwrap_or_default();
    let policy = parts.next().unwrap_or_default();
    let governance = parts.next();
    if let Ok(policy_loaded) = rein_engine::Policy::from_actra_strs(schema, policy, governance) {
        for action in policy_loaded.actions().map(str::to_string).collect::<Vec<_>>() {
            let input = serde_json::json!({"action": {"type": action, "amount": 5, "role": "x", "flag": true}});
            let _ = policy_loaded.decide_actra(&input);
            let _ = policy_loaded.explain_actra(&input);
        }
    }
    // Conversion re-loads its own output and reports a failure as an
    // error, so an `Err` here is fine; a panic is not.
    let _ = rein_engine::actra::convert_strs(schema, policy);
});
