//! Verdicts in each agent's answer format.

use crate::event::{from_json, Agent, EventKind, HookEvent};
use crate::table::{self, AgentTable, Answer, Format};
use crate::Verdict;
use rein_engine::Effect;
use serde_json::{json, Value as Json};

/// Longest reason sent (Claude Code caps hook output strings at 10,000).
const MAX_REASON_CHARS: usize = 4_000;

/// What a hook process prints and how it exits (an HTTP hook answers
/// `stdout` as its body).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    /// The JSON answer (`{}` = no opinion).
    pub stdout: String,
    /// Shown by the agent on exit code 2.
    pub stderr: String,
    /// 0, or 2 when the event could not even be read (a blocking error
    /// for every agent; Codex needs the non-empty stderr that goes with it).
    pub exit_code: u8,
}

impl Reply {
    fn json(value: Json) -> Reply {
        Reply {
            stdout: value.to_string(),
            stderr: String::new(),
            exit_code: 0,
        }
    }
}

/// Renders `verdict` as `event.agent` expects it for `event.kind`.
pub fn render(event: &HookEvent, verdict: &Verdict) -> Reply {
    let Some(effect) = verdict.effect else {
        return Reply::json(json!({}));
    };
    let reason = reason_text(verdict, effect);
    match table::table(event.agent) {
        Ok(t) => match t.format {
            Format::Claude => claude(event, effect, &reason),
            Format::Gemini => gemini(event, effect, &reason),
            Format::Cursor => cursor(event, t, effect, &reason),
        },
        // Not reached: an event is read with its table.
        Err(why) => Reply {
            stdout: "{}".into(),
            stderr: format!("Rein: {why}"),
            exit_code: 2,
        },
    }
}

fn reason_text(verdict: &Verdict, effect: Effect) -> String {
    let what = match effect {
        Effect::Allow => "allowed",
        Effect::Block => "blocked",
        Effect::RequireApproval => "needs approval for",
    };
    let mut text = format!("Rein {what} `{}`", verdict.action);
    if !verdict.rules.is_empty() {
        text.push_str(&format!(" (rule {})", verdict.rules.join(", ")));
    }
    if !verdict.reasons.is_empty() {
        text.push_str(": ");
        text.push_str(&verdict.reasons.join("; "));
    }
    let hint = verdict
        .grant_hint
        .as_deref()
        .map(|h| format!(" {h}"))
        .unwrap_or_default();
    for (id, role) in &verdict.approvals {
        text.push_str(&format!(
            ". Approval `{id}` is pending for role `{role}` (`rein approvals grant {id}{hint}`); retry once it is granted"
        ));
    }
    if text.chars().count() > MAX_REASON_CHARS {
        text = text.chars().take(MAX_REASON_CHARS).collect::<String>() + "…";
    }
    text
}

fn claude(event: &HookEvent, effect: Effect, reason: &str) -> Reply {
    let decision = match effect {
        Effect::Allow => "allow",
        // Where the agent has no "ask" (Codex), the safe rendering is a
        // refusal naming the approval.
        Effect::RequireApproval if event.ask => "ask",
        _ => "deny",
    };
    match &event.kind {
        EventKind::BeforeTool => Reply::json(json!({"hookSpecificOutput": {
            "hookEventName": event.event_name,
            "permissionDecision": decision,
            "permissionDecisionReason": reason,
        }})),
        EventKind::PermissionRequest => {
            let decision = if effect == Effect::Allow {
                json!({"behavior": "allow"})
            } else {
                json!({"behavior": "deny", "message": reason})
            };
            Reply::json(json!({"hookSpecificOutput": {"hookEventName": event.event_name, "decision": decision}}))
        }
        EventKind::AfterTool if effect != Effect::Allow && event.answer == Answer::Block => {
            let notice = format!("[output withheld] {reason}");
            Reply::json(json!({"decision": "block", "reason": notice}))
        }
        EventKind::AfterTool if effect != Effect::Allow => {
            // `decision: block` alone leaves the output with the model; the
            // replacement output is what withholds it.
            let notice = format!("[output withheld] {reason}");
            let tool = event.tool_name.as_deref().unwrap_or_default();
            let response = event.tool_response.as_ref().unwrap_or(&Json::Null);
            let (key, value) = if tool.starts_with("mcp__") {
                ("updatedMCPToolOutput", json!([{"type": "text", "text": notice}]))
            } else {
                ("updatedToolOutput", withheld(response, &notice))
            };
            Reply::json(json!({
                "decision": "block",
                "reason": reason,
                "hookSpecificOutput": {"hookEventName": event.event_name, key: value, "additionalContext": notice},
            }))
        }
        EventKind::UserPrompt if effect != Effect::Allow => Reply::json(json!({"decision": "block", "reason": reason})),
        _ => Reply::json(json!({})),
    }
}

/// Gemini CLI (0.61) has an `ask` decision, but `require_approval` is a
/// deny naming the approval: under `gemini -p` an `ask` waits for a
/// confirmation that never comes (the run hangs), and interactively the
/// user's "yes" would run the call without Rein's approval record.
fn gemini(event: &HookEvent, effect: Effect, reason: &str) -> Reply {
    match (&event.kind, effect) {
        (EventKind::BeforeTool, Effect::Allow) => Reply::json(json!({"decision": "allow", "reason": reason})),
        (
            EventKind::BeforeTool | EventKind::AfterTool | EventKind::UserPrompt,
            Effect::Block | Effect::RequireApproval,
        ) => Reply::json(json!({"decision": "deny", "reason": reason})),
        _ => Reply::json(json!({})),
    }
}

/// Cursor's flat answers; what each event accepts is in its table
/// (`answer`, `ask`).
fn cursor(event: &HookEvent, table: &AgentTable, effect: Effect, reason: &str) -> Reply {
    match event.answer {
        Answer::Permission if effect == Effect::Allow => Reply::json(json!({"permission": "allow"})),
        Answer::Permission => {
            // "ask" only where Cursor enforces it; elsewhere (`preToolUse`
            // accepts it without acting on it) a refusal naming the approval.
            let permission = match effect {
                Effect::RequireApproval if event.ask => "ask",
                _ => "deny",
            };
            Reply::json(json!({"permission": permission, "user_message": reason, "agent_message": reason}))
        }
        Answer::Prompt if effect == Effect::Allow => Reply::json(json!({"continue": true})),
        Answer::Prompt => Reply::json(json!({"continue": false, "user_message": reason})),
        Answer::Context if effect != Effect::Allow => {
            // Only an MCP tool's output can be replaced; for the others the
            // model is told not to use what it got.
            let notice = format!("[output withheld] {reason}");
            let tool = event.tool_name.as_deref().unwrap_or_default();
            if table.mcp_tool(tool).is_some() {
                Reply::json(json!({
                    "updated_mcp_tool_output": {"content": [{"type": "text", "text": notice}]},
                    "additional_context": notice,
                }))
            } else {
                Reply::json(json!({"additional_context": notice}))
            }
        }
        _ => Reply::json(json!({})),
    }
}

/// The tool's response with every string replaced by `notice`, keeping its
/// shape (Claude Code requires the replacement to match the tool's output
/// type) and the `type` tags that select that shape.
fn withheld(response: &Json, notice: &str) -> Json {
    match response {
        // An empty field (Bash's usual `stderr: ""`) hides nothing.
        Json::String(s) if s.is_empty() => json!(""),
        Json::String(_) => json!(notice),
        Json::Array(items) => Json::Array(items.iter().map(|i| withheld(i, notice)).collect()),
        Json::Object(m) => Json::Object(
            m.iter()
                .map(|(k, v)| {
                    let v = if k == "type" { v.clone() } else { withheld(v, notice) };
                    (k.clone(), v)
                })
                .collect(),
        ),
        other => other.clone(),
    }
}

/// A refusal for an event that was read, when deciding it failed (a
/// timeout, a store that cannot be opened, a server that does not answer).
pub fn refuse(event: &HookEvent, reason: &str) -> Reply {
    let verdict = Verdict {
        effect: Some(Effect::Block),
        action: event.tool_name.clone().unwrap_or_else(|| event.event_name.clone()),
        reasons: vec![reason.to_string()],
        ..Verdict::default()
    };
    match event.kind {
        // Nothing to refuse; say so where the agent shows it.
        EventKind::SessionStart | EventKind::SessionEnd | EventKind::Other(_) => Reply {
            stdout: "{}".into(),
            stderr: format!("Rein: {reason}"),
            exit_code: 0,
        },
        _ => render(event, &verdict),
    }
}

/// A refusal for bytes that are not a readable event: exit code 2 with the
/// reason on stderr (a blocking error for every agent; Cursor's "deny"), and on stdout
/// the best JSON refusal that can be made from whatever the bytes name
/// (for HTTP hooks, where only the body counts).
pub fn refuse_unreadable(agent: Agent, bytes: &[u8], reason: &str) -> Reply {
    let name = serde_json::from_slice::<Json>(bytes)
        .ok()
        .and_then(|v| v.get("hook_event_name").and_then(Json::as_str).map(str::to_string))
        .unwrap_or_else(|| {
            match agent {
                Agent::Gemini => "BeforeTool",
                Agent::Cursor => "preToolUse",
                _ => "PreToolUse",
            }
            .to_string()
        });
    let stand_in = from_json(
        agent,
        json!({"hook_event_name": name, "cwd": "/", "tool_name": "unknown", "tool_input": {}, "tool_response": "",
               "tool_output": "", "prompt": ""}),
    );
    let stdout = match stand_in {
        Ok(event) => refuse(&event, reason).stdout,
        Err(_) => "{}".into(),
    };
    Reply {
        stdout,
        stderr: format!("Rein: {reason}"),
        exit_code: 2,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn withheld_keeps_the_shape() {
        let bash = json!({"stdout": "secret", "stderr": "", "interrupted": false, "isImage": false});
        assert_eq!(
            withheld(&bash, "X"),
            json!({"stdout": "X", "stderr": "", "interrupted": false, "isImage": false})
        );
        let read = json!({"type": "text", "file": {"filePath": "/p/.env", "content": "K=1", "numLines": 1}});
        assert_eq!(
            withheld(&read, "X"),
            json!({"type": "text", "file": {"filePath": "X", "content": "X", "numLines": 1}})
        );
    }

    #[test]
    fn unreadable_events_are_refused_with_exit_2() {
        let r = refuse_unreadable(Agent::ClaudeCode, b"not json", "bad");
        assert_eq!(r.exit_code, 2);
        assert!(r.stderr.contains("bad"));
        assert!(r.stdout.contains("\"permissionDecision\":\"deny\""), "{}", r.stdout);
        let r = refuse_unreadable(Agent::ClaudeCode, br#"{"hook_event_name":"PermissionRequest"}"#, "bad");
        assert!(r.stdout.contains("\"behavior\":\"deny\""), "{}", r.stdout);
        let r = refuse_unreadable(Agent::Gemini, b"{", "bad");
        assert!(r.stdout.contains("\"decision\":\"deny\""), "{}", r.stdout);
        for bytes in [
            &b"{"[..],
            br#"{"hook_event_name":"beforeShellExecution"}"#,
            br#"{"hook_event_name":"beforeReadFile","file_path":7}"#,
        ] {
            let r = refuse_unreadable(Agent::Cursor, bytes, "bad");
            assert_eq!(r.exit_code, 2);
            assert!(r.stdout.contains("\"permission\":\"deny\""), "{}", r.stdout);
        }
        let r = refuse_unreadable(Agent::Cursor, br#"{"hook_event_name":"beforeSubmitPrompt"}"#, "bad");
        assert!(r.stdout.contains("\"continue\":false"), "{}", r.stdout);
    }
}
