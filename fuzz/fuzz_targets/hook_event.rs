//! Every agent's hook event reader, its mapping table and the guard of
//! Rein's files, on any bytes (the first byte picks the agent): reading may
//! fail, never panic; a tool event that reads maps to an action with at
//! least one input; and the refusals built for what cannot be decided are
//! never an allow.
#![no_main]
use libfuzzer_sys::fuzz_target;
use rein_hooks::{map, parse_event, refuse, refuse_unreadable, Agent, EventKind, Protected};
use std::path::Path;

const AGENTS: [Agent; 4] = [Agent::ClaudeCode, Agent::Codex, Agent::Gemini, Agent::Cursor];

/// Whether a reply lets the call run: the permission words every agent's
/// answer uses for it.
fn allows(stdout: &str) -> bool {
    stdout.contains("\"allow\"")
}

fuzz_target!(|data: &[u8]| {
    let Some((&pick, bytes)) = data.split_first() else { return };
    let agent = AGENTS[usize::from(pick) % AGENTS.len()];
    let home = Path::new("/home/dev");
    match parse_event(agent, bytes) {
        Err(e) => {
            let reply = refuse_unreadable(agent, bytes, &e.to_string());
            assert_eq!(reply.exit_code, 2, "an unreadable event is a blocking error");
            assert!(!allows(&reply.stdout), "unreadable event answered allow: {}", reply.stdout);
        }
        Ok(event) => {
            if matches!(event.kind, EventKind::BeforeTool | EventKind::PermissionRequest) {
                let call = map::map_tool(&event, Some(home));
                assert!(!call.inputs.is_empty(), "{} mapped to no input", call.action);
                let guard = Protected::new().with_agent_settings(&event, Some(home));
                for input in &call.inputs {
                    let _ = guard.check(&call.action, input);
                }
            }
            let reply = refuse(&event, "fuzz");
            assert!(!allows(&reply.stdout), "a refusal answered allow: {}", reply.stdout);
        }
    }
});
