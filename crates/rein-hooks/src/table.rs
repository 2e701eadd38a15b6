//! Each agent's hook protocol as data: one table per agent in
//! `crates/rein-hooks/agents/<agent>.json`, embedded in the binary.
//!
//! A table names the agent's events (what each means, how it is
//! answered), its built-in tools (what each does, the input fields it is
//! known to take) and how it names MCP tools. [`crate::event`] reads
//! events with it, [`crate::map`] maps tool calls with it and
//! [`crate::render`] answers with it; no agent's names are written in the
//! code. A tool the table does not name is `agent.unknown_tool`.
//!
//! Only the table of the agent a hook serves is parsed, once per process
//! (a few kilobytes of JSON: microseconds, against the milliseconds a hook
//! process takes to start).

use crate::event::Agent;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::sync::OnceLock;

/// The answer format family of an agent.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    /// `hookSpecificOutput.permissionDecision` (Claude Code, Codex).
    Claude,
    /// `decision`/`reason` (Gemini CLI).
    Gemini,
    /// Flat `permission`/`user_message`/`agent_message` (Cursor).
    Cursor,
}

/// What an event means, whatever the agent calls it.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// A tool is about to run.
    BeforeTool,
    /// The agent would ask its user for permission.
    PermissionRequest,
    /// A tool ran.
    AfterTool,
    /// The user submitted a prompt.
    UserPrompt,
    /// A session started.
    SessionStart,
    /// A session ended.
    SessionEnd,
}

/// How a Cursor event is answered (its events differ in what they accept).
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Answer {
    /// The agent's usual answer for the kind (Claude Code, Codex, Gemini).
    #[default]
    Usual,
    /// `permission` with `user_message` and `agent_message`.
    Permission,
    /// `continue` with `user_message` (a prompt).
    Prompt,
    /// `additional_context` only (and, for an MCP tool, its replaced output).
    Context,
    /// Nothing the agent acts on: the event is recorded.
    None,
    /// A refused output is `decision: block` with the notice as its reason,
    /// alone: Codex puts the reason in place of the tool's output, and takes
    /// an answer that also replaces the output as a failed hook (the output
    /// then reaches the model).
    Block,
}

/// One event of an agent.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventEntry {
    /// What it means.
    pub kind: Kind,
    /// Whether the agent honours an "ask" answer to it: `require_approval`
    /// is rendered as "ask" only then, else as a refusal naming the
    /// approval.
    #[serde(default)]
    pub ask: bool,
    /// How it is answered.
    #[serde(default)]
    pub answer: Answer,
    /// The tool the event stands for, when the event names none (Cursor's
    /// `beforeShellExecution` is `Shell`).
    #[serde(default, borrow)]
    pub tool: Option<&'static str>,
    /// The top-level fields that are that tool's input.
    #[serde(default, borrow)]
    pub input: Vec<&'static str>,
    /// The event's `tool_name` is an MCP tool's bare name.
    #[serde(default)]
    pub mcp_tool: bool,
    /// The agent sends the event only for a call that would go beyond its
    /// sandbox (Codex's `PermissionRequest`: more permissions, network
    /// access for a host): a shell call's `disable_sandbox` is then true,
    /// as for Claude Code's `dangerouslyDisableSandbox`.
    #[serde(default)]
    pub leaves_sandbox: bool,
    /// The field holding the tool's result (default `tool_response`).
    #[serde(default, borrow)]
    pub response: Option<&'static str>,
}

/// What a tool does, whatever the agent calls it.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Does {
    /// Runs a shell command (`shell.exec`, one decision per part).
    Shell,
    /// Reads files (`file.read`).
    Read,
    /// Writes or edits a file (`file.write`).
    Write,
    /// Applies a patch (`file.write`, one decision per file).
    Patch,
    /// Lists names matching a glob (`file.search`).
    Glob,
    /// Searches file content (`file.search`).
    Grep,
    /// Lists a directory (`file.search`).
    List,
    /// Reads the files named by paths and globs (`file.search`).
    ReadMany,
    /// Fetches a URL (`web.fetch`, one decision per URL).
    WebFetch,
    /// Searches the web (`web.search`).
    WebSearch,
    /// Starts a sub-agent (`agent.spawn`).
    AgentSpawn,
    /// Has no effect outside the agent (`agent.internal`).
    Internal,
    /// Known to exist, not understood by Rein (`agent.unknown_tool`).
    Unknown,
}

/// One built-in tool of an agent.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ToolEntry {
    /// What it does.
    pub does: Does,
    /// The input fields it is known to take: the mapping reads every one
    /// of them that decides what is read, written or run. A call with any
    /// other field is `agent.unknown_tool` naming it, so a field added by a
    /// new release is never silently dropped. Not checked for `internal`
    /// tools (nothing they take reaches outside the agent).
    #[serde(default, borrow)]
    pub fields: Vec<&'static str>,
    /// Fields the tool is known to take that Rein does not map on purpose
    /// (Claude Code's `Monitor {ws}` opens a WebSocket, not a command): a
    /// call using one is `agent.unknown_tool`, as for a field not listed.
    #[serde(default, borrow)]
    pub not_mapped: Vec<&'static str>,
    /// Fields older releases read that the pinned one ignores (Gemini
    /// 0.61's `run_shell_command` runs in the project whatever `directory`
    /// says): a shell call giving one is decided both where it says and
    /// where the pinned release runs it.
    #[serde(default, borrow)]
    pub ignored: Vec<&'static str>,
    /// The tool always runs its command in the background (a `shell`
    /// tool's `background` is then true whatever its input says).
    #[serde(default)]
    pub background: bool,
    /// Why a tool (or a field in `not_mapped`) is not mapped, for people
    /// reading the table.
    #[serde(default, borrow)]
    pub why: Option<&'static str>,
}

/// How the agent names MCP tools.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct McpNaming {
    /// What every MCP tool name starts with (`mcp__`, `MCP:`).
    pub prefix: &'static str,
    /// Between the server and the tool (`mcp__server__tool`); none when
    /// the agent does not name the server.
    #[serde(default, borrow)]
    pub separator: Option<&'static str>,
    /// The server named in the action when the agent names none.
    #[serde(default, borrow)]
    pub server: Option<&'static str>,
    /// The event names the server and the tool apart (Gemini CLI's
    /// `mcp_context`), since a name joined with `_` cannot be split when
    /// a server's name holds `_`: the tool name must spell exactly
    /// prefix, server, separator, tool; else it is not understood.
    #[serde(default)]
    pub context: bool,
}

/// One agent's table.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentTable {
    /// The agent's name (`actor.agent`).
    pub agent: &'static str,
    /// Where its protocol is described.
    pub about: &'static str,
    /// Its answer format.
    pub format: Format,
    /// The events' `cwd` is the folder a command runs in, which the model
    /// chooses (Codex: `exec_command`'s `workdir`), not the project: the
    /// project is then the folder the agent started the hook in, when the
    /// hook knows it (see [`crate::handle_in_project`]).
    #[serde(default)]
    pub cwd_is_the_commands: bool,
    /// Its events by name; any other is recorded nowhere, answered with
    /// no opinion.
    #[serde(borrow)]
    pub events: BTreeMap<&'static str, EventEntry>,
    /// How it names MCP tools.
    pub mcp: McpNaming,
    /// Its built-in tools by name.
    #[serde(borrow)]
    pub tools: BTreeMap<&'static str, ToolEntry>,
}

impl AgentTable {
    /// The MCP server and tool a tool name stands for, if it names one
    /// (`mcp__github__create_issue` → `("github", "create_issue")`).
    /// `None` also for a name of the MCP form that names no tool (nor
    /// server, where the agent names servers).
    pub fn mcp_tool<'a>(&'a self, name: &'a str) -> Option<(&'a str, &'a str)> {
        if self.mcp.context {
            return None;
        }
        let rest = name.strip_prefix(self.mcp.prefix)?;
        let (server, tool) = match (self.mcp.separator, self.mcp.server) {
            // `mcp__a__b__c` is server `a`'s tool `b__c` or server `a__b`'s
            // tool `c` (a server's name may hold `__`): not understood,
            // never judged as the first server's.
            (Some(sep), _) => match rest.split_once(sep)? {
                (_, tool) if tool.contains(sep) => return None,
                split => split,
            },
            (None, Some(server)) => (server, rest),
            (None, None) => return None,
        };
        (!server.is_empty() && !tool.is_empty()).then_some((server, tool))
    }

    /// The MCP server and tool of `name` as the event's context names them
    /// (`context`: `(server, tool)`), if the name spells exactly those.
    pub fn mcp_tool_in_context<'a>(
        &self,
        name: &str,
        context: Option<&'a (String, String)>,
    ) -> Option<(&'a str, &'a str)> {
        let (server, tool) = context?;
        let sep = self.mcp.separator.unwrap_or_default();
        let spelled = format!("{}{server}{sep}{tool}", self.mcp.prefix);
        (self.mcp.context && !server.is_empty() && !tool.is_empty() && name == spelled)
            .then_some((server.as_str(), tool.as_str()))
    }

    /// Whether `name` has the agent's MCP form, named rightly or not.
    pub fn looks_like_mcp(&self, name: &str) -> bool {
        name.starts_with(self.mcp.prefix)
    }
}

/// The source of every table, by agent.
pub fn source(agent: Agent) -> &'static str {
    match agent {
        Agent::ClaudeCode => include_str!("../agents/claude-code.json"),
        Agent::Codex => include_str!("../agents/codex.json"),
        Agent::Gemini => include_str!("../agents/gemini.json"),
        Agent::Cursor => include_str!("../agents/cursor.json"),
    }
}

/// `agent`'s table, read on first use. An error (a table that does not
/// read: a build that shipped a broken file) refuses every event of the
/// agent, never lets one through.
pub fn table(agent: Agent) -> Result<&'static AgentTable, String> {
    static TABLES: [OnceLock<Result<AgentTable, String>>; 4] =
        [OnceLock::new(), OnceLock::new(), OnceLock::new(), OnceLock::new()];
    let slot = match agent {
        Agent::ClaudeCode => &TABLES[0],
        Agent::Codex => &TABLES[1],
        Agent::Gemini => &TABLES[2],
        Agent::Cursor => &TABLES[3],
    };
    slot.get_or_init(|| read(agent, source(agent)))
        .as_ref()
        .map_err(Clone::clone)
}

/// Reads a table's text, checking it names `agent`. Its strings are
/// borrowed from the text (built into the binary): nothing is copied.
pub fn read(agent: Agent, text: &'static str) -> Result<AgentTable, String> {
    // serde keeps the last of two entries of one name in a map (a second
    // `"Bash": {"does": "internal"}` would silently win): a repeated key
    // anywhere refuses the table.
    rein_engine::json::parse_strict(text.as_bytes())
        .map_err(|e| format!("Rein's mapping table of {} does not read: {e}", agent.name()))?;
    let table: AgentTable = serde_json::from_str(text)
        .map_err(|e| format!("Rein's mapping table of {} does not read: {e}", agent.name()))?;
    if table.agent != agent.name() {
        return Err(format!(
            "Rein's mapping table of {} names the agent `{}`",
            agent.name(),
            table.agent
        ));
    }
    for (name, event) in &table.events {
        if let Some(tool) = &event.tool {
            if !table.tools.contains_key(tool) {
                return Err(format!(
                    "the event `{name}` of {} names no tool of its table",
                    agent.name()
                ));
            }
        }
    }
    Ok(table)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_table_reads() {
        for agent in [Agent::ClaudeCode, Agent::Codex, Agent::Gemini, Agent::Cursor] {
            let t = table(agent).unwrap();
            assert_eq!(t.agent, agent.name());
            assert!(!t.tools.is_empty() && !t.events.is_empty());
        }
    }

    #[test]
    fn mcp_names_follow_each_agent() {
        let claude = table(Agent::ClaudeCode).unwrap();
        assert_eq!(
            claude.mcp_tool("mcp__github__create_issue"),
            Some(("github", "create_issue"))
        );
        assert_eq!(claude.mcp_tool("mcp__broken"), None);
        assert_eq!(claude.mcp_tool("mcp____x"), None);
        // Server `github`'s tool `x__y`, or server `github__x`'s tool `y`.
        assert_eq!(claude.mcp_tool("mcp__github__x__y"), None);
        let codex = table(Agent::Codex).unwrap();
        assert_eq!(codex.mcp_tool("mcp__github__x__y"), None);
        assert_eq!(codex.mcp_tool("mcp__github__x_y"), Some(("github", "x_y")));
        assert!(claude.looks_like_mcp("mcp__broken"));
        let cursor = table(Agent::Cursor).unwrap();
        assert_eq!(cursor.mcp_tool("MCP:query"), Some(("any", "query")));
        assert_eq!(cursor.mcp_tool("MCP:"), None);
    }

    #[test]
    fn a_broken_table_is_an_error_not_a_panic() {
        assert!(read(Agent::Codex, "{").is_err());
        let other = source(Agent::Gemini);
        assert!(read(Agent::Codex, other)
            .unwrap_err()
            .contains("names the agent `gemini`"));
        let extra = source(Agent::Codex).replacen("\"format\"", "\"typo\": 1, \"format\"", 1);
        assert!(read(Agent::Codex, Box::leak(extra.into_boxed_str())).is_err());
        // A tool named twice: the second entry would win unseen.
        let twice = source(Agent::Codex).replacen(
            "\"tools\": {",
            "\"tools\": {\n    \"apply_patch\": {\"does\": \"internal\"},",
            1,
        );
        let err = read(Agent::Codex, Box::leak(twice.into_boxed_str())).unwrap_err();
        assert!(err.contains("apply_patch"), "{err}");
        // Text with an escape cannot be borrowed: an error, not a copy.
        let escaped = source(Agent::Codex).replacen("\"about\": \"", "\"about\": \"\\\"", 1);
        assert!(read(Agent::Codex, Box::leak(escaped.into_boxed_str())).is_err());
    }
}
