//! Hook events of every agent, read into one shape with the agent's table
//! ([`crate::table`]).

use crate::table::{self, Answer, Format, Kind};
use serde_json::Value as Json;
use std::path::Path;

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
    /// Cursor (`beforeShellExecution`, `beforeMCPExecution`,
    /// `beforeReadFile`, `afterFileEdit`, `preToolUse`).
    Cursor,
}

impl Agent {
    /// The name used in `actor.agent` and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Agent::ClaudeCode => "claude-code",
            Agent::Codex => "codex",
            Agent::Gemini => "gemini",
            Agent::Cursor => "cursor",
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
    /// The sub-agent instance the event comes from (Claude Code's
    /// `agent_id`, sent only inside a sub-agent); `None` in the main agent.
    pub agent_id: Option<String>,
    /// The agent definition running (`agent_type`: the sub-agent's type,
    /// e.g. `general-purpose`, `Explore`, or a custom agent's name; in the
    /// main agent, the one `claude --agent NAME` runs as).
    pub agent_type: Option<String>,
    /// The MCP server and tool of an MCP tool call, as Gemini CLI names
    /// them in `mcp_context` (its `tool_name` joins them as
    /// `mcp_<server>_<tool>`, which cannot be split when a name holds `_`).
    pub mcp_tool: Option<(String, String)>,
    /// The project, where the event's `cwd` cannot say it: Cursor's
    /// workspace root (read from the event), or the folder the hook was
    /// started in (set by the caller, see
    /// [`crate::table::AgentTable::cwd_is_the_commands`]).
    pub project: Option<String>,
    /// The call would run beyond the agent's sandbox (its table says; see
    /// [`crate::table::EventEntry::leaves_sandbox`]).
    pub leaves_sandbox: bool,
    /// Whether the agent honours "ask" for this event (its table says).
    pub ask: bool,
    /// How this event is answered (its table says).
    pub answer: Answer,
}

/// Longest `agent_id` or `agent_type` accepted, in bytes.
pub const MAX_AGENT_NAME_BYTES: usize = 128;

impl HookEvent {
    /// Whether the event comes from inside a sub-agent: Claude Code sends
    /// `agent_id` only there (`agent_type` alone names the agent the main
    /// thread runs as, with `claude --agent NAME`).
    pub fn in_subagent(&self) -> bool {
        self.agent_id.is_some()
    }
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

/// Reads one event already parsed as JSON, with the agent's table
/// ([`crate::table`]): its event names, and for events that name no tool
/// (Cursor's `beforeShellExecution`), the tool they stand for and where
/// its input is.
pub fn from_json(agent: Agent, value: Json) -> Result<HookEvent, EventError> {
    let table = table::table(agent).map_err(EventError::Shape)?;
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
    let entry = table.events.get(event_name.as_str());
    let flat = entry.is_some_and(|e| e.tool.is_some());
    let mut session_id = string("session_id")?;
    let mut cwd = string("cwd")?;
    let permission_mode = string("permission_mode")?;
    let tool_use_id = string("tool_use_id")?;
    let mut tool_name = string("tool_name")?;
    let prompt = string("prompt")?;
    let source = string("source")?;
    let reason = string("reason")?;
    let agent_id = string("agent_id")?;
    let agent_type = string("agent_type")?;
    if table.format == Format::Cursor {
        // Cursor names its session `conversation_id` (`session_id`, when
        // sent, is the same) and may send an empty `cwd`: the project is
        // then its first workspace root.
        if session_id.is_none() {
            session_id = string("conversation_id")?;
        }
        if cwd.as_deref().is_none_or(str::is_empty) {
            cwd = match map.get("workspace_roots") {
                None | Some(Json::Null) => cwd,
                Some(Json::Array(roots)) => match roots.first() {
                    Some(Json::String(root)) if !root.is_empty() => Some(root.clone()),
                    None => cwd,
                    Some(_) => {
                        return Err(EventError::Shape(
                            "has a `workspace_roots` that is not a list of paths".into(),
                        ))
                    }
                },
                Some(other) => {
                    return Err(EventError::Shape(format!(
                        "has `workspace_roots` of type {}, expected a list",
                        json_type(other)
                    )))
                }
            };
        }
    }
    let cwd = cwd
        .filter(|c| !(flat || table.format == Format::Cursor) || !c.is_empty())
        .ok_or_else(|| EventError::Shape("has no `cwd`".into()))?;
    // Cursor names its project: the workspace root `cwd` is in, else the
    // first. Its shell events' `cwd` is where the command runs, which may
    // be any folder: never a project of its own.
    let project = match (table.format, map.get("workspace_roots")) {
        (Format::Cursor, Some(Json::Array(roots))) => {
            let roots: Vec<&str> = roots
                .iter()
                .filter_map(Json::as_str)
                .filter(|r| r.starts_with('/'))
                .collect();
            roots
                .iter()
                .find(|r| Path::new(&cwd).starts_with(r))
                .or(roots.first())
                .map(|r| (*r).to_string())
        }
        _ => None,
    };
    // Every path is resolved against it: a Cursor project that is not an
    // absolute path would be resolved against the hook's own folder.
    if table.format == Format::Cursor && !cwd.starts_with('/') {
        return Err(EventError::Shape(format!(
            "has a project folder `{cwd}` that is not an absolute path"
        )));
    }
    let mut tool_input = match entry {
        // The event's own fields are the tool's input.
        Some(e) if flat => {
            let mut input = serde_json::Map::new();
            for key in &e.input {
                if let Some(v) = map.get(*key) {
                    input.insert((*key).to_string(), v.clone());
                }
            }
            if e.input.contains(&"cwd") {
                input.insert("cwd".into(), Json::String(cwd.clone()));
            }
            Json::Object(input)
        }
        _ => map.remove("tool_input").unwrap_or(Json::Null),
    };
    let mcp_tool = match map.remove("mcp_context") {
        None | Some(Json::Null) => None,
        Some(context) => {
            let name = |key: &str| context.get(key).and_then(Json::as_str).map(str::to_string);
            match (name("server_name"), name("tool_name")) {
                (Some(server), Some(tool)) => Some((server, tool)),
                _ => {
                    return Err(EventError::Shape(
                        "has `mcp_context` without string `server_name` and `tool_name`".into(),
                    ))
                }
            }
        }
    };
    let response_key = entry.and_then(|e| e.response).unwrap_or("tool_response");
    let tool_response = map.remove(response_key).filter(|v| !v.is_null());
    if let Some(e) = entry {
        if let Some(tool) = e.tool {
            tool_name = Some(tool.to_string());
        } else if e.mcp_tool {
            // A bare MCP tool name: given the agent's MCP form, so that it
            // maps as MCP tools named in `preToolUse` do.
            tool_name = tool_name.map(|t| format!("{}{t}", table.mcp.prefix));
        }
        // Cursor sends an MCP tool's arguments as JSON text.
        if let (true, Json::String(text)) = (e.mcp_tool, &tool_input) {
            tool_input = rein_engine::json::parse_strict(text.as_bytes()).map_err(|e| {
                EventError::Shape(format!("`{event_name}` has `tool_input` text that is not JSON: {e}"))
            })?;
        }
    }

    let kind = match entry.map(|e| e.kind) {
        Some(Kind::BeforeTool) => EventKind::BeforeTool,
        Some(Kind::PermissionRequest) => EventKind::PermissionRequest,
        Some(Kind::AfterTool) => EventKind::AfterTool,
        Some(Kind::UserPrompt) => EventKind::UserPrompt,
        Some(Kind::SessionStart) => EventKind::SessionStart,
        Some(Kind::SessionEnd) => EventKind::SessionEnd,
        None => EventKind::Other(event_name.clone()),
    };
    let tool_event = matches!(
        kind,
        EventKind::BeforeTool | EventKind::PermissionRequest | EventKind::AfterTool
    );
    if tool_event {
        if tool_name.as_deref().is_none_or(str::is_empty) {
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
        return Err(EventError::Shape(format!("`{event_name}` has no `{response_key}`")));
    }
    if kind == EventKind::UserPrompt && prompt.is_none() {
        return Err(EventError::Shape(format!("`{event_name}` has no `prompt`")));
    }
    for (key, value) in [("agent_id", &agent_id), ("agent_type", &agent_type)] {
        if let Some(text) = value {
            check_agent_name(key, text)?;
        }
    }
    // Inside a sub-agent of no known type: which sub-agent acts cannot be
    // told, so the event is not understood (never judged as the main
    // agent's, which may do more).
    if agent_id.is_some() && agent_type.is_none() {
        return Err(EventError::Shape(
            "has `agent_id` (it comes from a sub-agent) but no `agent_type`".into(),
        ));
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
        agent_id,
        agent_type,
        mcp_tool,
        project,
        leaves_sandbox: entry.is_some_and(|e| e.leaves_sandbox),
        ask: entry.is_some_and(|e| e.ask),
        answer: entry.map(|e| e.answer).unwrap_or_default(),
    })
}

/// An agent's id or type becomes a link of `actor.chain` and a field rules
/// compare: an allowlist of characters (letters, digits, `-_.:@`), at most
/// [`MAX_AGENT_NAME_BYTES`], so that no text an agent was never meant to
/// send (spaces, control characters, look-alike letters) reaches a rule.
fn check_agent_name(key: &str, text: &str) -> Result<(), EventError> {
    if text.is_empty() || text.len() > MAX_AGENT_NAME_BYTES {
        return Err(EventError::Shape(format!(
            "has `{key}` of {} bytes, expected 1 to {MAX_AGENT_NAME_BYTES}",
            text.len()
        )));
    }
    if let Some(bad) = text
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':' | '@')))
    {
        return Err(EventError::Shape(format!(
            "has `{key}` holding {bad:?}; expected letters, digits and `-_.:@` only"
        )));
    }
    Ok(())
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
    use serde_json::json;

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
    fn reads_who_acts_inside_a_subagent() {
        // As Claude Code 2.1.331 sends it from inside a sub-agent.
        let e = parse_event(
            Agent::ClaudeCode,
            br#"{"session_id":"s","cwd":"/p","permission_mode":"bypassPermissions","agent_id":"a3dc2d6fa4318803a",
                 "agent_type":"general-purpose","hook_event_name":"PreToolUse","tool_name":"Bash",
                 "tool_input":{"command":"git push"},"tool_use_id":"t"}"#,
        )
        .unwrap();
        assert!(e.in_subagent());
        assert_eq!(e.agent_id.as_deref(), Some("a3dc2d6fa4318803a"));
        assert_eq!(e.agent_type.as_deref(), Some("general-purpose"));
        // `claude --agent NAME`: the main thread, named.
        let e = parse_event(
            Agent::ClaudeCode,
            br#"{"cwd":"/p","agent_type":"pusher","hook_event_name":"PreToolUse","tool_name":"Bash","tool_input":{}}"#,
        )
        .unwrap();
        assert!(!e.in_subagent());
        assert_eq!(e.agent_type.as_deref(), Some("pusher"));
        let e = parse_event(Agent::Codex, br#"{"cwd":"/p","hook_event_name":"Stop"}"#).unwrap();
        assert!(!e.in_subagent() && e.agent_type.is_none());
    }

    #[test]
    fn refuses_agent_names_that_do_not_fit() {
        let long = "a".repeat(MAX_AGENT_NAME_BYTES + 1);
        for (id, kind, want) in [
            (json!("a1"), json!("two words"), "holding ' '"),
            (json!("a1"), json!("x\u{1b}[2J"), "holding '\\u{1b}'"),
            (json!("a1"), json!("caf\u{e9}"), "holding 'é'"),
            (json!("a1"), json!(""), "of 0 bytes"),
            (json!("a1"), json!(long), "of 129 bytes"),
            (json!(long), json!("general-purpose"), "`agent_id` of 129 bytes"),
            (json!(1), json!("general-purpose"), "`agent_id` of type number"),
            (json!("a1"), json!(null), "no `agent_type`"),
        ] {
            let text =
                format!(r#"{{"cwd":"/p","hook_event_name":"SubagentStop","agent_id":{id},"agent_type":{kind}}}"#);
            let err = parse_event(Agent::ClaudeCode, text.as_bytes()).unwrap_err().to_string();
            assert!(err.contains(want), "{text}: {err}");
        }
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
