//! The shell analysis never panics or overflows its stack, on any text, its
//! summary agrees with its parts, it keeps at most `MAX_PARTS` of them, and
//! a part without a known directory is not understood.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(init: {
    // `rein_shell` turns a panic inside brush-parser into "not understood"
    // (caught where it calls the parser); libfuzzer's hook would abort on it
    // first. Any other panic still aborts, as a crash.
    let abort_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if info.location().is_some_and(|l| l.file().contains("brush-parser")) {
            return;
        }
        abort_hook(info);
    }));
}, |data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let a = rein_shell::analyze(text);
    assert_eq!(a.understood, a.parts.iter().all(|p| p.understood));
    assert_eq!(a.problems.len(), a.parts.iter().filter(|p| !p.understood).count());
    assert!(a.parts.len() <= rein_shell::MAX_PARTS);
    for p in &a.parts {
        assert_eq!(p.understood, p.reason.is_none());
        // A part whose directory cannot be known is not understood.
        assert!(!p.dirs.is_empty() || !p.understood);
    }
});
