//! The policy loader never panics, on any text; a policy that loads
//! decides without panicking, statelessly and (for its stateful actions)
//! against a state it writes to.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(policy) = rein_engine::Policy::from_yaml_str(text) {
            let mut state = rein_engine::MemoryState::with_key([7; 32]);
            let at: jiff::Timestamp = "2026-01-01T10:00:00Z".parse().expect("a timestamp");
            for action in policy.actions().map(str::to_string).collect::<Vec<_>>() {
                let _ = policy.decide(&rein_engine::Request::new(action.clone()));
                if !policy.action_state(&action, rein_engine::Phase::Before).any() {
                    continue;
                }
                // Twice in a session, so that the second call reads what the
                // first wrote, then without one.
                for (i, session) in [Some("s1"), Some("s1"), None].into_iter().enumerate() {
                    let mut request = rein_engine::Request::new(action.clone()).time(at);
                    if let Some(s) = session {
                        request = request.session(s);
                    }
                    let Ok(prepared) = policy.prepare(&request) else { continue };
                    let (decision, effects) = prepared.decide_with_state(&state);
                    state.apply(&effects.writes(&format!("d{i}"), decision.effect(), at));
                }
            }
        }
    }
});
