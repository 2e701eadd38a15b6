//! The policy loader never panics, on any text.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(policy) = rein_engine::Policy::from_yaml_str(text) {
            // A policy that loads must also decide without panicking.
            for action in policy.actions().map(str::to_string).collect::<Vec<_>>() {
                let _ = policy.decide(&rein_engine::Request::new(action));
            }
        }
    }
});
