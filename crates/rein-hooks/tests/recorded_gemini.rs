//! Every hook event the real Gemini CLI 0.61.0 sent (recorded offline by
//! the end-to-end harness, `crates/rein-cli/tests/gemini_e2e`, scrubbed of
//! machine paths: `/work/project`, `/home/dev`) goes through
//! `rein_hooks::handle` with the shipped contracts and the example policy,
//! and is mapped and decided as Gemini CLI meant the call.

// Helpers outside `#[test]` functions fail the test by panicking.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use rein_hooks::{decide_event, handle, parse_event, Agent, EventKind};
use rein_runtime::{Runtime, RuntimeConfig};
use rein_store::SqliteStore;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/gemini")
}

/// `(file name, event)` of every recorded event (not `tools.json`).
fn recorded() -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = fs::read_dir(fixtures())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json") && !p.ends_with("tools.json"))
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                fs::read_to_string(&p).unwrap(),
            )
        })
        .collect();
    out.sort();
    out
}

struct Gate {
    runtime: Runtime,
    project: PathBuf,
    home: PathBuf,
    _dir: tempfile::TempDir,
}

fn gate() -> Gate {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let policy = rein_engine::Policy::load(&[
        root.join("policies/agents/coding-agent.yaml"),
        root.join("examples/claude-code/policy.yaml"),
    ])
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().canonicalize().unwrap();
    let (project, home) = (base.join("project"), base.join("home"));
    // The scratch project the events were recorded in.
    fs::create_dir_all(project.join("sub")).unwrap();
    fs::create_dir_all(project.join(".gemini")).unwrap();
    fs::write(project.join("README.md"), "# e2e scratch project\n").unwrap();
    fs::write(project.join(".env"), "E2E_SECRET=x\n").unwrap();
    fs::create_dir_all(&home).unwrap();
    let store = SqliteStore::open(base.join("audit.db")).unwrap();
    let config = RuntimeConfig {
        hmac_key: vec![7; 32],
        ..RuntimeConfig::default()
    };
    Gate {
        runtime: Runtime::new(policy, Arc::new(store), config),
        project,
        home,
        _dir: dir,
    }
}

impl Gate {
    /// The recorded text with its scrubbed paths pointing at this scratch tree.
    fn localise(&self, text: &str) -> String {
        text.replace("/work/project", &self.project.display().to_string())
            .replace("/home/dev", &self.home.display().to_string())
    }
}

/// What each recorded tool call must be mapped to and decided as, by the
/// example policy: `(file, action, allowed)`.
const TOOL_CALLS: &[(&str, &str, bool)] = &[
    // `dir_path` (where Gemini 0.61 runs the command) is understood.
    ("BeforeTool-run_shell_command.json", "shell.exec", true),
    ("BeforeTool-read_file.json", "file.read", true),
    ("BeforeTool-write_file.json", "file.write", true),
    ("BeforeTool-replace.json", "file.write", true),
    ("BeforeTool-glob.json", "file.search", true),
    // Gemini 0.61's name for its grep tool, with `include_pattern`.
    ("BeforeTool-grep_search.json", "file.search", true),
    // Its older name, which 0.61 still runs (and names so in the hook).
    ("BeforeTool-search_file_content.json", "file.search", true),
    // The project holds `.env`: a listing of it may name secrets.
    ("BeforeTool-list_directory.json", "file.search", false),
    // No host on the example's allowlist.
    ("BeforeTool-web_fetch.json", "web.fetch", false),
    ("BeforeTool-google_web_search.json", "web.search", true),
    // `mcp_<server>_<tool>`, split by its `mcp_context`.
    ("BeforeTool-mcp_everything_echo.json", "mcp.everything.echo", true),
    // A sub-agent (`codebase_investigator`) is started through a tool.
    ("BeforeTool-invoke_agent.json", "agent.spawn", true),
    // Gemini's own bookkeeping (the sub-agent's `complete_task` ends it).
    ("BeforeTool-update_topic.json", "agent.internal", true),
    ("BeforeTool-complete_task.json", "agent.internal", true),
];

#[tokio::test]
async fn every_recorded_event_is_read_and_answered() {
    let g = gate();
    g.runtime.open_state().await.unwrap();
    let all = recorded();
    assert!(all.len() >= 30, "only {} recorded events", all.len());
    for (name, text) in &all {
        let text = g.localise(text);
        let event = parse_event(Agent::Gemini, text.as_bytes())
            .unwrap_or_else(|e| panic!("{name}: the recorded event is not read: {e}"));
        let expected_kind = match name.split(['-', '.']).next().unwrap() {
            "BeforeTool" => EventKind::BeforeTool,
            "AfterTool" => EventKind::AfterTool,
            "BeforeAgent" => EventKind::UserPrompt,
            "SessionStart" => EventKind::SessionStart,
            "SessionEnd" => EventKind::SessionEnd,
            other => EventKind::Other(other.to_string()),
        };
        assert_eq!(event.kind, expected_kind, "{name}");
        let reply = handle(&g.runtime, Agent::Gemini, text.as_bytes(), Some(&g.home)).await;
        assert_eq!(reply.exit_code, 0, "{name}: {reply:?}");
        let answer: Value = serde_json::from_str(&reply.stdout).unwrap();
        match event.kind {
            // The example allows every recorded tool's output and prompt.
            EventKind::BeforeTool => assert!(answer["decision"].is_string(), "{name}: {answer}"),
            _ => assert!(answer.get("decision").is_none_or(|d| d == "allow"), "{name}: {answer}"),
        }
    }
}

#[tokio::test]
async fn recorded_tool_calls_are_mapped_as_gemini_meant_them() {
    let g = gate();
    g.runtime.open_state().await.unwrap();
    for (file, action, allowed) in TOOL_CALLS {
        let text = g.localise(&fs::read_to_string(fixtures().join(file)).unwrap());
        let event = parse_event(Agent::Gemini, text.as_bytes()).unwrap();
        let verdict = decide_event(&g.runtime, &event, Some(&g.home), None).await;
        assert_eq!(verdict.action, *action, "{file}: {verdict:?}");
        let reply = handle(&g.runtime, Agent::Gemini, text.as_bytes(), Some(&g.home)).await;
        let answer: Value = serde_json::from_str(&reply.stdout).unwrap();
        let want = if *allowed { "allow" } else { "deny" };
        assert_eq!(answer["decision"], want, "{file}: {answer}");
        assert!(
            answer["reason"].as_str().unwrap().starts_with("Rein "),
            "{file}: {answer}"
        );
    }
}

#[tokio::test]
async fn the_shell_runs_where_dir_path_says() {
    let g = gate();
    g.runtime.open_state().await.unwrap();
    let text = g.localise(&fs::read_to_string(fixtures().join("BeforeTool-run_shell_command.json")).unwrap());
    let mut event: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(event["tool_input"]["dir_path"], "sub", "the recording changed");
    // The same call, run from the home directory instead: `rm` of what is
    // there is judged where it would run, outside the project.
    event["tool_input"] = json!({"command": "rm -rf precious", "dir_path": g.home});
    let reply = handle(&g.runtime, Agent::Gemini, event.to_string().as_bytes(), Some(&g.home)).await;
    let answer: Value = serde_json::from_str(&reply.stdout).unwrap();
    assert_eq!(answer["decision"], "deny", "{answer}");
    assert!(answer["reason"].as_str().unwrap().contains("shell.exec"), "{answer}");
    // Both spellings at once: which directory is meant cannot be told.
    event["tool_input"] = json!({"command": "ls", "dir_path": "sub", "directory": "/"});
    let event = parse_event(Agent::Gemini, event.to_string().as_bytes()).unwrap();
    let verdict = decide_event(&g.runtime, &event, Some(&g.home), None).await;
    assert_ne!(verdict.action, "shell.exec", "{verdict:?}");
    assert_ne!(verdict.effect, Some(rein_engine::Effect::Allow), "{verdict:?}");
}

#[tokio::test]
async fn an_mcp_name_its_context_does_not_spell_is_not_understood() {
    let g = gate();
    g.runtime.open_state().await.unwrap();
    let text = g.localise(&fs::read_to_string(fixtures().join("BeforeTool-mcp_everything_echo.json")).unwrap());
    let recorded: Value = serde_json::from_str(&text).unwrap();
    let cases = [
        // The context names another server than the tool name.
        ("server_name", json!("other")),
        // No context at all.
        ("drop", Value::Null),
    ];
    for (key, value) in cases {
        let mut event = recorded.clone();
        if key == "drop" {
            event.as_object_mut().unwrap().remove("mcp_context");
        } else {
            event["mcp_context"][key] = value;
        }
        let parsed = parse_event(Agent::Gemini, event.to_string().as_bytes()).unwrap();
        let verdict = decide_event(&g.runtime, &parsed, Some(&g.home), None).await;
        assert!(!verdict.action.starts_with("mcp."), "{key}: {verdict:?}");
        assert_ne!(verdict.effect, Some(rein_engine::Effect::Allow), "{key}: {verdict:?}");
    }
    // A context without its names is not an event Rein can read.
    let mut event = recorded.clone();
    event["mcp_context"] = json!({"server_name": 7});
    assert!(parse_event(Agent::Gemini, event.to_string().as_bytes()).is_err());
}

#[test]
fn every_tool_the_hook_named_was_offered_to_the_model_or_is_a_known_alias() {
    let tools: Value = serde_json::from_str(&fs::read_to_string(fixtures().join("tools.json")).unwrap()).unwrap();
    let offered: BTreeSet<&str> = [
        "builtin",
        "builtin_subagent_codebase_investigator",
        "mcp_server_everything",
        "hook_tool_names_not_offered",
    ]
    .iter()
    .flat_map(|k| tools[k].as_array().unwrap())
    .map(|v| v.as_str().unwrap())
    .collect();
    for name in tools["hook_tool_names_seen"].as_array().unwrap() {
        assert!(offered.contains(name.as_str().unwrap()), "{name} was never offered");
    }
    assert_eq!(tools["hook_tool_name_differs"], json!({}));
    assert_eq!(tools["hook_tool_names_not_offered"], json!(["search_file_content"]));
    // Every recorded BeforeTool fixture is one of the decided calls above.
    let decided: BTreeSet<&str> = TOOL_CALLS.iter().map(|(f, _, _)| *f).collect();
    for (name, _) in recorded() {
        if name.starts_with("BeforeTool-") {
            assert!(decided.contains(name.as_str()), "{name} has no expected decision");
        }
    }
}

#[tokio::test]
async fn the_legacy_grep_name_takes_the_fields_of_the_tool_it_runs() {
    let g = gate();
    g.runtime.open_state().await.unwrap();
    let text = g.localise(&fs::read_to_string(fixtures().join("BeforeTool-search_file_content.json")).unwrap());
    let mut event: Value = serde_json::from_str(&text).unwrap();
    // 0.61 runs `search_file_content` as `grep_search`, with its fields.
    event["tool_input"] = json!({"pattern": "x", "include_pattern": ".env*", "names_only": true});
    let parsed = parse_event(Agent::Gemini, event.to_string().as_bytes()).unwrap();
    let verdict = decide_event(&g.runtime, &parsed, Some(&g.home), None).await;
    assert_eq!(verdict.action, "file.search", "{verdict:?}");
    // Its filter names secrets: refused.
    assert_eq!(verdict.effect, Some(rein_engine::Effect::Block), "{verdict:?}");
}
