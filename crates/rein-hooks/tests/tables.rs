//! Each agent's mapping table (`crates/rein-hooks/agents/<agent>.json`)
//! against what the real programs offer: every built-in tool recorded from
//! a real program (`tests/fixtures/<agent>/tools.json`) is in its agent's
//! table, with every input field it was offered with; a tool no table
//! names is decided as `agent.unknown_tool` and never allowed; the old
//! name `tool.other` no longer loads; docs/agents.md lists every tool.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use rein_hooks::table::{table, Does};
use rein_hooks::{handle, Agent};
use rein_runtime::{Runtime, RuntimeConfig};
use rein_store::SqliteStore;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::sync::Arc;

const AGENTS: [Agent; 4] = [Agent::ClaudeCode, Agent::Codex, Agent::Gemini, Agent::Cursor];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The tools a recorded `tools.json` names, as the hook names them, with
/// the input fields the program offered each with (`None` when the file
/// does not say). Read in the shapes the recordings use: a list of names,
/// a list of `{name, …}` objects, or an object of name → fields, under
/// `tools` (`builtin…` for Gemini's, `offered` for Codex's); `hook_names`
/// (`hook_tool_name_differs`, `hook_tool_name`: model name → hook name)
/// where the two differ.
fn recorded(agent: Agent) -> Option<Vec<(String, Option<Vec<String>>)>> {
    let path = root()
        .join("crates/rein-hooks/tests/fixtures")
        .join(agent.name())
        .join("tools.json");
    let text = std::fs::read_to_string(&path).ok()?;
    let v: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    // Gemini's recording lists built-ins under `builtin` (and a
    // sub-agent's under `builtin_subagent_<name>`).
    let builtin: Vec<Value> = v
        .as_object()
        .map(|m| {
            m.iter()
                .filter(|(k, _)| k.as_str() == "builtin" || k.starts_with("builtin_"))
                .flat_map(|(_, l)| l.as_array().cloned().unwrap_or_default())
                .collect()
        })
        .unwrap_or_default();
    // Codex's lists them as `offered`, with `hook_tool_name` where the
    // hook names them otherwise.
    let list = match (v.is_array(), builtin.is_empty()) {
        (true, _) => v.clone(),
        (false, false) => Value::Array(builtin),
        (false, true) if v.get("offered").is_some() => v["offered"].clone(),
        (false, true) => v["tools"].clone(),
    };
    let names: Vec<(String, Option<Vec<String>>)> = match &list {
        Value::Array(items) => items
            .iter()
            .map(|i| match i {
                Value::String(s) => (s.clone(), None),
                other => {
                    let fields = other
                        .get("fields")
                        .or_else(|| other.get("properties"))
                        .and_then(Value::as_array)
                        .map(|a| a.iter().filter_map(|f| f.as_str().map(str::to_string)).collect());
                    (other["name"].as_str().unwrap_or_default().to_string(), fields)
                }
            })
            .collect(),
        Value::Object(m) => m
            .iter()
            .map(|(k, f)| {
                let fields = f
                    .as_array()
                    .map(|a| a.iter().filter_map(|x| x.as_str().map(str::to_string)).collect());
                (k.clone(), fields)
            })
            .collect(),
        _ => panic!("{}: no list of tools", path.display()),
    };
    let renamed = v
        .get("hook_names")
        .or_else(|| v.get("hook_tool_name_differs"))
        .or_else(|| v.get("hook_tool_name"))
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    Some(
        names
            .into_iter()
            .map(|(n, f)| match renamed.get(&n).and_then(Value::as_str) {
                Some(hook) => (hook.to_string(), f),
                None => (n, f),
            })
            .collect(),
    )
}

#[test]
fn every_recorded_tool_is_in_its_agents_table() {
    let mut checked = 0;
    for agent in AGENTS {
        let Some(tools) = recorded(agent) else { continue };
        let t = table(agent).unwrap();
        for (name, fields) in tools {
            let entry = t
                .tools
                .get(name.as_str())
                .unwrap_or_else(|| panic!("{}: the recorded tool `{name}` is not in its table", agent.name()));
            // Every field the program offers its model is one the table
            // knows (else every call using it would be asked about).
            if let (Some(fields), true) = (fields, !matches!(entry.does, Does::Internal | Does::Unknown)) {
                for f in fields {
                    assert!(
                        entry.fields.contains(&f.as_str()) || entry.not_mapped.contains(&f.as_str()),
                        "{}: `{name}` takes `{f}`, which its table does not know",
                        agent.name()
                    );
                }
            }
            checked += 1;
        }
    }
    assert!(checked > 0, "no recorded tools.json was found");
}

fn runtime(dir: &Path, rules: &str) -> Runtime {
    let file = dir.join("rules.yaml");
    std::fs::write(&file, rules).unwrap();
    let policy = rein_engine::Policy::load(&[root().join("policies/agents/coding-agent.yaml"), file]).unwrap();
    let store = SqliteStore::open(dir.join("audit.db")).unwrap();
    let config = RuntimeConfig {
        hmac_key: vec![7; 32],
        ..RuntimeConfig::default()
    };
    Runtime::new(policy, Arc::new(store), config)
}

/// The effect an agent's answer gives, read from its own format.
fn effect_of(agent: Agent, v: &Value) -> String {
    let s = match agent {
        Agent::ClaudeCode | Agent::Codex => v["hookSpecificOutput"]["permissionDecision"].as_str(),
        Agent::Gemini => v["decision"].as_str(),
        Agent::Cursor => v["permission"].as_str(),
    };
    s.unwrap_or_default().to_string()
}

/// A tool no table names is `agent.unknown_tool` in every agent, and is
/// never allowed, even by a policy that allows every action.
#[tokio::test]
async fn a_tool_no_table_names_is_never_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let rules = "version: 1\nrules:\n  - id: everything\n    action: \"*\"\n    effect: allow\n";
    let rt = runtime(dir.path(), rules);
    for agent in AGENTS {
        for tool in ["SomeFutureTool", "Bash2", "read_files", "mcp__", "MCP:"] {
            let event = match agent {
                Agent::Gemini => {
                    json!({"hook_event_name": "BeforeTool", "cwd": "/p", "tool_name": tool, "tool_input": {"x": 1}})
                }
                Agent::Cursor => {
                    json!({"hook_event_name": "preToolUse", "conversation_id": "c", "workspace_roots": ["/p"],
                    "tool_name": tool, "tool_input": {"x": 1}, "tool_use_id": "t"})
                }
                _ => json!({"hook_event_name": "PreToolUse", "cwd": "/p", "tool_name": tool, "tool_input": {"x": 1}}),
            };
            if table(agent).unwrap().tools.contains_key(tool) {
                continue;
            }
            let reply = handle(&rt, agent, event.to_string().as_bytes(), None).await;
            let v: Value = serde_json::from_str(&reply.stdout).unwrap();
            let effect = effect_of(agent, &v);
            assert!(
                effect == "ask" || effect == "deny",
                "{} {tool}: {}",
                agent.name(),
                reply.stdout
            );
            assert!(reply.stdout.contains("agent.unknown_tool"), "{}", reply.stdout);
        }
    }
    // A known tool with a field its table does not know, likewise.
    let event = json!({"hook_event_name": "PreToolUse", "cwd": "/p", "tool_name": "Read",
        "tool_input": {"file_path": "/p/a", "follow_links_to": "/etc/shadow"}});
    let reply = handle(&rt, Agent::ClaudeCode, event.to_string().as_bytes(), None).await;
    assert!(
        reply.stdout.contains("\"ask\"") && reply.stdout.contains("agent.unknown_tool"),
        "{}",
        reply.stdout
    );
}

/// Every built-in tool of every table maps to an action the shipped
/// contracts declare: no tool of a table is left to the unknown-action
/// refusal by a typo in a table.
#[tokio::test]
async fn every_table_tool_maps_to_a_declared_action() {
    let dir = tempfile::tempdir().unwrap();
    let rules = "version: 1\nrules:\n  - id: everything\n    action: \"*\"\n    effect: allow\n";
    let rt = runtime(dir.path(), rules);
    let policy = rt.policy();
    for agent in AGENTS {
        for (name, entry) in &table(agent).unwrap().tools {
            let event = json!({"hook_event_name": "PreToolUse", "cwd": "/p", "tool_name": name, "tool_input": {}});
            let event = match agent {
                Agent::Gemini => {
                    let mut e = event;
                    e["hook_event_name"] = json!("BeforeTool");
                    e
                }
                Agent::Cursor => {
                    let mut e = event;
                    e["hook_event_name"] = json!("preToolUse");
                    e
                }
                _ => event,
            };
            let parsed = rein_hooks::parse_event(agent, event.to_string().as_bytes()).unwrap();
            let call = rein_hooks::map::map_tool(&parsed, None);
            assert!(
                policy.has_action(&call.action),
                "{} `{name}` ({:?}) maps to `{}`, which has no contract",
                agent.name(),
                entry.does,
                call.action
            );
            let unknown = call.action == "agent.unknown_tool";
            assert_eq!(unknown, entry.does == Does::Unknown, "{} `{name}`", agent.name());
        }
    }
}

#[test]
fn a_policy_naming_tool_other_does_not_load() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("old.yaml");
    std::fs::write(
        &file,
        "version: 1\nrules:\n  - id: old\n    action: tool.other\n    effect: allow\n",
    )
    .unwrap();
    let Err(err) = rein_engine::Policy::load(&[root().join("policies/agents/coding-agent.yaml"), file]) else {
        panic!("a policy naming tool.other must not load");
    };
    let text = format!("{err:?} {err}");
    assert!(
        text.contains("tool.other") && text.contains("agent.unknown_tool"),
        "{text}"
    );
}

/// The action a tool that `does` this maps to.
fn action_of(does: Does) -> &'static str {
    match does {
        Does::Shell => "shell.exec",
        Does::Read => "file.read",
        Does::Write | Does::Patch => "file.write",
        Does::Glob | Does::Grep | Does::List | Does::ReadMany => "file.search",
        Does::WebFetch => "web.fetch",
        Does::WebSearch => "web.search",
        Does::AgentSpawn => "agent.spawn",
        Does::Internal => "agent.internal",
        Does::Unknown => "agent.unknown_tool",
    }
}

/// An agent's table as docs/agents.md shows it.
fn rendered(agent: Agent) -> String {
    use rein_hooks::table::{Answer, Kind};
    let t = table(agent).unwrap();
    let code = |s: &str| format!("`{s}`");
    let mut out = String::from("| event | means | answered |\n|---|---|---|\n");
    for (name, e) in &t.events {
        let means = match e.kind {
            Kind::BeforeTool => "a tool is about to run",
            Kind::PermissionRequest => "the agent would ask its user",
            Kind::AfterTool => "a tool ran (`after` rules)",
            Kind::UserPrompt => "a prompt (`prompt.submit`)",
            Kind::SessionStart => "`session.start` (recorded)",
            Kind::SessionEnd => "`session.end` (recorded)",
        };
        let mut means = means.to_string();
        if let Some(tool) = &e.tool {
            let fields: Vec<String> = e.input.iter().map(|f| code(f)).collect();
            means.push_str(&format!("; tool {}, input {}", code(tool), fields.join(", ")));
        }
        if e.mcp_tool {
            means.push_str("; an MCP tool");
        }
        let answered = match (e.answer, e.ask) {
            (Answer::None, _) => "no answer acted on",
            (Answer::Prompt, _) => "`continue`",
            (Answer::Context, _) => "`additional_context`",
            (_, true) => "allow / deny / ask",
            (Answer::Permission, false) if e.kind == Kind::BeforeTool => "allow / deny",
            (_, false) => match e.kind {
                Kind::BeforeTool | Kind::PermissionRequest => "allow / deny",
                Kind::AfterTool => "output withheld when refused",
                Kind::UserPrompt => "block when refused",
                _ => "no opinion",
            },
        };
        out.push_str(&format!("| {} | {means} | {answered} |\n", code(name)));
    }
    let mcp = match (&t.mcp.separator, &t.mcp.server) {
        (Some(sep), _) => format!("`{p}<server>{sep}<tool>` → `mcp.<server>.<tool>`", p = t.mcp.prefix),
        (None, Some(server)) => format!("`{}<tool>` → `mcp.{server}.<tool>`", t.mcp.prefix),
        (None, None) => "none".to_string(),
    };
    let mcp = match t.mcp.context {
        true => format!("{mcp}, the server and tool named by the event's `mcp_context` (else `agent.unknown_tool`)"),
        false => mcp,
    };
    out.push_str(&format!(
        "\nMCP tools: {mcp}.\n\n| tool | action | known fields |\n|---|---|---|\n"
    ));
    for (name, e) in &t.tools {
        let mut fields: Vec<String> = e.fields.iter().map(|f| code(f)).collect();
        if !e.not_mapped.is_empty() {
            let not: Vec<String> = e.not_mapped.iter().map(|f| code(f)).collect();
            fields.push(format!("(not mapped: {})", not.join(", ")));
        }
        if let Some(why) = &e.why {
            fields.push(format!("— {why}"));
        }
        let fields = match (e.does, fields.is_empty()) {
            (Does::Internal, _) => "(not checked)".to_string(),
            (_, true) => "—".to_string(),
            _ => fields.join(", "),
        };
        out.push_str(&format!("| {} | `{}` | {fields} |\n", code(name), action_of(e.does)));
    }
    out
}

/// docs/agents.md shows every table as it is (`REIN_BLESS=1` rewrites it).
#[test]
fn docs_agents_md_shows_every_table() {
    let path = root().join("docs/agents.md");
    let mut doc = std::fs::read_to_string(&path).unwrap();
    let bless = std::env::var_os("REIN_BLESS").is_some();
    for agent in AGENTS {
        let start = format!("<!-- table:{} -->\n", agent.name());
        let at = doc
            .find(&start)
            .unwrap_or_else(|| panic!("docs/agents.md has no {start}"))
            + start.len();
        let end = at
            + doc[at..]
                .find("<!-- end -->")
                .expect("a table section ends with <!-- end -->");
        let want = rendered(agent);
        if bless {
            doc.replace_range(at..end, &want);
        } else {
            assert_eq!(
                doc[at..end],
                want,
                "docs/agents.md: {} differs from its table; REIN_BLESS=1 rewrites it",
                agent.name()
            );
        }
    }
    if bless {
        std::fs::write(&path, doc).unwrap();
    }
}

/// Every recorded event of every agent (tests/fixtures/<agent>/*.json) is
/// read with its agent's table, and each recorded tool call is mapped to
/// an action of its own, not to `agent.unknown_tool`.
#[test]
fn every_recorded_event_is_read_and_its_tool_known() {
    let mut read = 0;
    for agent in AGENTS {
        let dir = root().join("crates/rein-hooks/tests/fixtures").join(agent.name());
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for entry in entries {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if !name.ends_with(".json") || name == "tools.json" {
                continue;
            }
            let bytes = std::fs::read(&path).unwrap();
            let event = rein_hooks::parse_event(agent, &bytes)
                .unwrap_or_else(|e| panic!("{}/{name}: not read: {e}", agent.name()));
            if event.tool_name.is_some() && event.kind != rein_hooks::EventKind::Other(event.event_name.clone()) {
                let call = rein_hooks::map::map_tool(&event, None);
                // Unknown only where the table says so on purpose.
                let tool = event.tool_name.as_deref().unwrap_or_default();
                let on_purpose = table(agent)
                    .unwrap()
                    .tools
                    .get(tool)
                    .is_some_and(|e| e.does == Does::Unknown);
                assert_eq!(
                    call.action == "agent.unknown_tool",
                    on_purpose,
                    "{}/{name}: {} {:?}",
                    agent.name(),
                    call.action,
                    call.inputs
                );
            }
            read += 1;
        }
    }
    assert!(read > 0);
}
