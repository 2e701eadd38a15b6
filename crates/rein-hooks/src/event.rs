//! Hook events of the three agents, read into one shape.

use serde_json::Value as Json;

/// Largest event accepted. A `Write` of a big file carries the whole
/// content; anything larger is refused (and so denied), never truncated.
pub const MAX_EVENT_BYTES: usize = 16 * 1024 * 1024;

/// The coding agent whose hook protocol is spoken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Agent {
    /// Anthropic's Claude Code.
    ClaudeCode,
    /// OpenAI's Codex CLI (Claude-compatible wire shape, its own tool names).
    Codex,
    /// Google's Gemini CLI (`BeforeTool`/`AfterTool`, snake_case tools).
    Gemini,
}

impl Agent {
    /// The name used in `actor.agent` and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Agent::ClaudeCode => "claude-code",
            Agent::Codex => "codex",
            Agent::Gemini => "gemini",
        }
    }
}

/// What happened, normalised across agents.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EventKind {
    /// A tool is about to run (Claude/Codex `PreToolUse`, Gemini `BeforeTool`).
    BeforeTool,
    /// The agent would ask its user for permission (Claude/Codex
    /// `PermissionRequest`): Rein's approvals answer instead.
    PermissionRequest,
    /// A tool ran; its output is about to reach the model (`PostToolUse`,
    /// `AfterTool`).
    AfterTool,
    /// The user submitted a prompt.
    UserPrompt,
    /// A session started.
    SessionStart,
    /// A session ended.
    SessionEnd,
    /// Any other event: recorded nowhere, answered with no opinion.
    Other(String),
}

/// One hook event.
#[derive(Clone, Debug)]
pub struct HookEvent {
    /// Whose protocol it came in.
    pub agent: Agent,
    /// The normalised kind.
    pub kind: EventKind,
    /// The event name as sent (`PreToolUse`, `BeforeTool`, …).
    pub event_name: String,
    /// The agent's session id.
    pub session_id: Option<String>,
    /// The agent's working directory (the project).
    pub cwd: String,
    /// Claude Code's permission mode (`default`, `plan`, …), if sent.
    pub permission_mode: Option<String>,
    /// The id of the tool call, if sent.
    pub tool_use_id: Option<String>,
    /// The tool's name as the agent calls it.
    pub tool_name: Option<String>,
    /// The tool's arguments.
    pub tool_input: Json,
    /// The tool's result (after-tool events).
    pub tool_response: Option<Json>,
    /// The prompt text (prompt events).
    pub prompt: Option<String>,
    /// `source` of a session start or `reason` of a session end.
    pub session_detail: Option<String>,
}

/// Why an event could not be read.
#[derive(Debug, thiserror::Error)]
pub enum EventError {
    /// Larger than [`MAX_EVENT_BYTES`].
    #[error("the hook event is {0} bytes, more than the {MAX_EVENT_BYTES} accepted")]
    TooLarge(usize),
    /// Not JSON, or too deeply nested.
    #[error("the hook event is not valid JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// JSON, but not an event of this agent.
    #[error("the hook event {0}")]
    Shape(String),
}

/// Reads one event sent by `agent`.
pub fn parse_event(agent: Agent, bytes: &[u8]) -> Result<HookEvent, EventError> {
    if bytes.len() > MAX_EVENT_BYTES {
        return Err(EventError::TooLarge(bytes.len()));
    }
    // serde_json refuses nesting deeper than 128 levels by itself.
    // Repeated keys refused, as in every request Rein reads (`rein_engine::json`).
    let value: Json = rein_engine::json::parse_strict(bytes)?;
    from_json(agent, value)
}

/// Reads one event already parsed as JSON.
pub fn from_json(agent: Agent, value: Json) -> Result<HookEvent, EventError> {
    let Json::Object(mut map) = value else {
        return Err(EventError::Shape("is not a JSON object".into()));
    };
    let mut string = |key: &str| -> Result<Option<String>, EventError> {
        match map.remove(key) {
            None | Some(Json::Null) => Ok(None),
            Some(Json::String(s)) => Ok(Some(s)),
            Some(other) => Err(EventError::Shape(format!(
                "has `{key}` of type {}, expected a string",
                json_type(&other)
            ))),
        }
    };
    let event_name = string("hook_event_name")?.ok_or_else(|| EventError::Shape("has no `hook_event_name`".into()))?;
    let session_id = string("session_id")?;
    let cwd = string("cwd")?.ok_or_else(|| EventError::Shape("has no `cwd`".into()))?;
    let permission_mode = string("permission_mode")?;
    let tool_use_id = string("tool_use_id")?;
    let tool_name = string("tool_name")?;
    let prompt = string("prompt")?;
    let source = string("source")?;
    let reason = string("reason")?;
    let tool_input = map.remove("tool_input").unwrap_or(Json::Null);
    let tool_response = map.remove("tool_response").filter(|v| !v.is_null());

    let kind = match (agent, event_name.as_str()) {
        (Agent::ClaudeCode | Agent::Codex, "PreToolUse") | (Agent::Gemini, "BeforeTool") => EventKind::BeforeTool,
        (Agent::ClaudeCode | Agent::Codex, "PermissionRequest") => EventKind::PermissionRequest,
        (Agent::ClaudeCode | Agent::Codex, "PostToolUse") | (Agent::Gemini, "AfterTool") => EventKind::AfterTool,
        (Agent::ClaudeCode | Agent::Codex, "UserPromptSubmit") | (Agent::Gemini, "BeforeAgent") => {
            EventKind::UserPrompt
        }
        (_, "SessionStart") => EventKind::SessionStart,
        (_, "SessionEnd") => EventKind::SessionEnd,
        (_, other) => EventKind::Other(other.to_string()),
    };
    let tool_event = matches!(
        kind,
        EventKind::BeforeTool | EventKind::PermissionRequest | EventKind::AfterTool
    );
    if tool_event {
        if tool_name.is_none() {
            return Err(EventError::Shape(format!("`{event_name}` has no `tool_name`")));
        }
        if !tool_input.is_object() {
            return Err(EventError::Shape(format!(
                "`{event_name}` has `tool_input` of type {}, expected an object",
                json_type(&tool_input)
            )));
        }
    }
    if kind == EventKind::AfterTool && tool_response.is_none() {
        return Err(EventError::Shape(format!("`{event_name}` has no `tool_response`")));
    }
    if kind == EventKind::UserPrompt && prompt.is_none() {
        return Err(EventError::Shape(format!("`{event_name}` has no `prompt`")));
    }
    let session_detail = match kind {
        EventKind::SessionStart => source,
        EventKind::SessionEnd => reason,
        _ => None,
    };
    Ok(HookEvent {
        agent,
        kind,
        event_name,
        session_id,
        cwd,
        permission_mode,
        tool_use_id,
        tool_name,
        tool_input,
        tool_response,
        prompt,
        session_detail,
    })
}

pub(crate) fn json_type(v: &Json) -> &'static str {
    match v {
        Json::Null => "null",
        Json::Bool(_) => "boolean",
        Json::Number(_) => "number",
        Json::String(_) => "string",
        Json::Array(_) => "array",
        Json::Object(_) => "object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_claude_pre_tool_use() {
        let e = parse_event(
            Agent::ClaudeCode,
            br#"{"session_id":"s1","cwd":"/p","hook_event_name":"PreToolUse","permission_mode":"default",
                 "tool_name":"Bash","tool_input":{"command":"ls"},"tool_use_id":"t1"}"#,
        )
        .unwrap();
        assert_eq!(e.kind, EventKind::BeforeTool);
        assert_eq!(e.tool_name.as_deref(), Some("Bash"));
        assert_eq!(e.tool_use_id.as_deref(), Some("t1"));
    }

    #[test]
    fn refuses_events_that_do_not_fit() {
        for (text, want) in [
            ("[1]", "not a JSON object"),
            (r#"{"cwd":"/p"}"#, "no `hook_event_name`"),
            (
                r#"{"hook_event_name":"PreToolUse","cwd":"/p","tool_input":{}}"#,
                "no `tool_name`",
            ),
            (
                r#"{"hook_event_name":"PreToolUse","cwd":"/p","tool_name":"Bash","tool_input":"ls"}"#,
                "expected an object",
            ),
            (r#"{"hook_event_name":"PreToolUse","cwd":7}"#, "`cwd` of type number"),
            (
                r#"{"hook_event_name":"PostToolUse","cwd":"/p","tool_name":"Bash","tool_input":{}}"#,
                "no `tool_response`",
            ),
        ] {
            let err = parse_event(Agent::ClaudeCode, text.as_bytes()).unwrap_err().to_string();
            assert!(err.contains(want), "{text}: {err}");
        }
        let deep = "[".repeat(200) + &"]".repeat(200);
        assert!(parse_event(Agent::ClaudeCode, deep.as_bytes()).is_err());
    }

    #[test]
    fn gemini_names_its_events_differently() {
        let e = parse_event(
            Agent::Gemini,
            br#"{"session_id":"s","cwd":"/p","hook_event_name":"BeforeTool","tool_name":"run_shell_command","tool_input":{"command":"ls"},"timestamp":"2026-01-01T00:00:00Z"}"#,
        )
        .unwrap();
        assert_eq!(e.kind, EventKind::BeforeTool);
        let e = parse_event(Agent::Gemini, br#"{"cwd":"/p","hook_event_name":"PreToolUse"}"#).unwrap();
        assert_eq!(e.kind, EventKind::Other("PreToolUse".into()));
    }
}
