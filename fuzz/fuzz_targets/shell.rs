//! The shell analysis never panics or overflows its stack, on any text, and
//! its summary agrees with its parts.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let a = rein_shell::analyze(text);
    assert_eq!(a.understood, a.parts.iter().all(|p| p.understood));
    assert_eq!(a.problems.len(), a.parts.iter().filter(|p| !p.understood).count());
    for p in &a.parts {
        assert_eq!(p.understood, p.reason.is_none());
    }
});
