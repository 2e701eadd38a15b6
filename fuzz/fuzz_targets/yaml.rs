//! The YAML reader never panics, and spans stay inside the text.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    match rein_engine::syntax::yaml::parse(text) {
        Ok(node) => assert!(node.span.end as usize <= text.len()),
        Err(e) => assert!(e.span.start as usize <= text.len()),
    }
});
