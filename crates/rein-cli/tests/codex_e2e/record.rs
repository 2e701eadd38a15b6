//! The harness itself, with a stand-in hook (a shell script, not Rein) that
//! keeps every event Codex sends: what Codex 0.171 really sends is checked
//! against the fixtures in `crates/rein-hooks/tests/fixtures/codex/` (the
//! same events, the same fields), and written there instead when
//! `REIN_CODEX_RECORD=1` (how those fixtures were made; scrubbed of the
//! scratch paths: HOME is `/home/dev`, the project `/work/project`).
//!
//! The fixtures' `tools.json` lists the built-in tools Codex offered its
//! model (from the fake model's request log; `namespace/name` for a tool
//! in a namespace, loaded by `tool_search`) and, per tool called, the name
//! the model called it by and the `tool_name` the hook was given.

use crate::fake_model::{call_id, sub_call_id, FakeModel, Step};
use crate::sandbox::Sandbox;
use crate::{command_hook, hooks_json, netns, repo, Checks, BYPASS_TRUST, HOOK_BLOCK_PREFIX};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// Every hook event Codex 0.171 documents that an `exec` run can reach.
const ALL_EVENTS: &[&str] = &[
    "SessionStart",
    "UserPromptSubmit",
    "PreToolUse",
    "PermissionRequest",
    "PostToolUse",
    "SubagentStart",
    "SubagentStop",
    "Stop",
];

const RECORD_ENV: &str = "REIN_CODEX_RECORD";

fn fixtures_dir() -> PathBuf {
    repo().join("crates/rein-hooks/tests/fixtures/codex")
}

/// A hook that saves its stdin under `log`, and refuses (exit 2 with a
/// reason on stderr, Codex's blocking exit) a PreToolUse whose event holds
/// `refuse-me`.
fn stand_in_hook(sb: &Sandbox, log: &Path) -> PathBuf {
    fs::create_dir_all(log).unwrap();
    let script = sb.root.join("stand-in-hook.sh");
    fs::write(
        &script,
        format!(
            "#!/bin/sh\nf='{}'/$(date +%s%N)-$$.json\ncat > \"$f\"\n\
             if grep -q '\"PreToolUse\"' \"$f\" && grep -q 'refuse-me' \"$f\"; then\n\
             echo 'stand-in hook: refused' >&2; exit 2; fi\nexit 0\n",
            log.display()
        ),
    )
    .unwrap();
    fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).unwrap();
    script
}

/// The events the stand-in hook saved, in the order they came.
fn saved_events(log: &Path) -> Vec<Value> {
    let mut files: Vec<PathBuf> = fs::read_dir(log).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    files
        .iter()
        .map(|f| serde_json::from_str(&fs::read_to_string(f).unwrap()).unwrap())
        .collect()
}

/// `value` with the scratch paths replaced by stable ones, and the ids and
/// times of this run by stable ones (each id by its own, so that the
/// events still agree on which session or sub-agent they name), so that
/// recording again changes the fixtures only where Codex changed.
fn scrub(value: &Value, sb: &Sandbox, ids: &mut Vec<String>) -> Value {
    let text = value
        .to_string()
        .replace(&sb.home.display().to_string(), "/home/dev")
        .replace(&sb.project.display().to_string(), "/work/project")
        .replace(&sb.root.display().to_string(), "/work/scratch");
    let mut out = String::with_capacity(text.len());
    let mut rest = text.as_str();
    while !rest.is_empty() {
        if let Some(id) = uuid_at(rest) {
            let n = match ids.iter().position(|known| known == id) {
                Some(n) => n,
                None => {
                    ids.push(id.to_string());
                    ids.len() - 1
                }
            };
            out.push_str(&format!("00000000-0000-7000-8000-{:012}", n + 1));
            rest = &rest[id.len()..];
        } else if let Some(stamp) = rollout_stamp_at(rest) {
            out.push_str("rollout-2026-01-01T00-00-00-");
            rest = &rest[stamp.len()..];
        } else if let Some(day) = sessions_day_at(rest) {
            out.push_str("sessions/2026/01/01/");
            rest = &rest[day.len()..];
        } else {
            let c = rest.chars().next().unwrap();
            out.push(c);
            rest = &rest[c.len_utf8()..];
        }
    }
    serde_json::from_str(&out).unwrap()
}

/// The UUID (8-4-4-4-12 hex digits) `text` starts with.
fn uuid_at(text: &str) -> Option<&str> {
    let candidate = text.get(..36)?;
    let ok = candidate.char_indices().all(|(i, c)| match i {
        8 | 13 | 18 | 23 => c == '-',
        _ => c.is_ascii_hexdigit(),
    });
    ok.then_some(candidate)
}

/// The `sessions/YYYY/MM/DD/` of a transcript path `text` starts with.
fn sessions_day_at(text: &str) -> Option<&str> {
    let candidate = text.get(..20)?;
    let digits = candidate.strip_prefix("sessions/")?;
    let ok = digits.char_indices().all(|(i, c)| match i {
        4 | 7 | 10 => c == '/',
        _ => c.is_ascii_digit(),
    });
    ok.then_some(candidate)
}

/// The `rollout-YYYY-MM-DDTHH-MM-SS-` of a transcript name `text` starts with.
fn rollout_stamp_at(text: &str) -> Option<&str> {
    let candidate = text.get(..28)?;
    let digits = candidate.strip_prefix("rollout-")?;
    let ok = digits.char_indices().all(|(i, c)| match i {
        4 | 7 | 13 | 16 | 19 => c == '-',
        10 => c == 'T',
        _ => c.is_ascii_digit(),
    });
    ok.then_some(candidate)
}

/// The fixture's name: `<event>[-<tool>][-subagent].json`.
fn fixture_name(event: &Value) -> String {
    let mut name = event["hook_event_name"].as_str().unwrap_or("unknown").to_string();
    if let Some(tool) = event["tool_name"].as_str() {
        name.push('-');
        name.push_str(tool);
    }
    if event.get("agent_id").is_some() && event.get("tool_name").is_some() {
        name.push_str("-subagent");
    }
    name + ".json"
}

/// The field names of an event (`tool_input.<field>` for the tool's), which
/// is what a drift in Codex's payloads would change.
fn shape(event: &Value) -> BTreeSet<String> {
    let mut keys = BTreeSet::new();
    for (k, v) in event.as_object().into_iter().flatten() {
        keys.insert(k.clone());
        if k == "tool_input" {
            for inner in v.as_object().into_iter().flatten().map(|(k, _)| k) {
                keys.insert(format!("tool_input.{inner}"));
            }
        }
    }
    keys
}

/// Records every event kind with the stand-in hook, and checks the harness:
/// a command outside the project really runs (Codex's sandbox is off),
/// the only refusal is the hook's (exit 2 with its stderr as the reason),
/// the MCP server answers, and a sub-agent's shell call reaches the hook
/// with the sub-agent's `agent_id`.
#[test]
#[ignore = "runs inside the loopback-only namespace that codex_e2e makes"]
fn netns_harness_selfcheck_records_every_event() {
    let Some(env) = netns() else { return };
    let sb = Sandbox::new("record");
    let control = sb.home.join("made-by-the-model");
    let model = FakeModel::start_full(
        vec![
            Step::shell("echo hello-from-the-fake-model; echo ~"),
            Step::shell(&format!("touch {}", control.display())),
            Step::shell("rm -rf ~/precious # refuse-me"),
            Step::patch("*** Begin Patch\n*** Add File: notes.txt\n+written by the model\n*** End Patch\n"),
            Step::search("everything echo"),
            Step::mcp("everything", "echo", json!({"message": "hello-over-mcp"})),
            Step::search("spawn agent"),
            Step::spawn("run the sub-agent steps"),
            Step::WaitSpawned,
            // 9-14: the other built-in tools that reach hooks
            Step::function(None, "view_image", json!({"path": sb.project.join("README.md")})),
            Step::function(None, "list_mcp_resources", json!({})),
            Step::function(None, "list_mcp_resource_templates", json!({})),
            Step::function(
                None,
                "read_mcp_resource",
                json!({"server": "everything", "uri": "demo://resource/static/document/architecture.md"}),
            ),
            Step::function(None, "get_goal", json!({})),
            Step::function(None, "request_user_input", json!({"questions": []})),
        ],
        vec![Step::shell("echo from-the-sub-agent")],
        None,
    );
    let log = sb.root.join("hook-log");
    let hook = stand_in_hook(&sb, &log);
    fs::write(
        sb.user_hooks(),
        hooks_json(ALL_EVENTS, &command_hook(&hook.display().to_string())).to_string(),
    )
    .unwrap();
    sb.write_config(&model, &Sandbox::mcp_config(&env.mcp_everything));
    let run = sb.codex(&env.codex, &[BYPASS_TRUST], &[]);
    let out = model.outputs();
    let mut c = Checks::new("selfcheck");
    c.completed(&model, &run);
    c.ran(&out, 0, &format!("hello-from-the-fake-model\n{}", sb.home.display()));
    c.ran(&out, 1, "");
    c.check(control.exists(), "the control command outside the project did not run");
    c.check(
        // Codex adds ". Command: <the command>" to the hook's reason.
        out.get(&call_id(2))
            .is_some_and(|o| o.starts_with(&format!("{HOOK_BLOCK_PREFIX}stand-in hook: refused"))),
        format!("call 2: not refused with the hook's stderr: {:?}", out.get(&call_id(2))),
    );
    c.check(sb.precious().exists(), "the refused rm -rf ran: ~/precious is gone");
    c.ran(&out, 3, "A notes.txt");
    c.check(
        fs::read_to_string(sb.project.join("notes.txt")).unwrap_or_default() == "written by the model\n",
        "apply_patch did not write notes.txt",
    );
    c.ran(&out, 5, "Echo: hello-over-mcp");
    c.ran_id(&out, &sub_call_id(0), "from-the-sub-agent");
    c.ran(&out, 8, "completed");
    c.check(
        model.told_anywhere("hello-over-mcp") && !model.told_anywhere("never-said-anywhere"),
        "told_anywhere does not see what the model was told",
    );

    let events = saved_events(&log);
    let mut recorded: BTreeMap<String, Value> = BTreeMap::new();
    let mut ids = Vec::new();
    for event in &events {
        let scrubbed = scrub(event, &sb, &mut ids);
        recorded.entry(fixture_name(event)).or_insert(scrubbed);
    }
    for want in [
        "SessionStart.json",
        "UserPromptSubmit.json",
        "PreToolUse-Bash.json",
        "PostToolUse-Bash.json",
        "PreToolUse-apply_patch.json",
        "PostToolUse-apply_patch.json",
        "PreToolUse-mcp__everything__echo.json",
        "PostToolUse-mcp__everything__echo.json",
        "PreToolUse-spawn_agent.json",
        "SubagentStart.json",
        "PreToolUse-Bash-subagent.json",
        "SubagentStop.json",
        "Stop.json",
        "PreToolUse-view_image.json",
        "PreToolUse-list_mcp_resources.json",
        "PreToolUse-list_mcp_resource_templates.json",
        "PreToolUse-read_mcp_resource.json",
        "PreToolUse-get_goal.json",
        "PreToolUse-request_user_input.json",
    ] {
        c.check(
            recorded.contains_key(want),
            format!("no {want} among the events: {:?}", recorded.keys()),
        );
    }
    let sub_shell = &recorded.get("PreToolUse-Bash-subagent.json");
    c.check(
        sub_shell.is_some_and(|e| e["agent_type"] == "default" && e["agent_id"].is_string()),
        format!("the sub-agent's shell call does not name the sub-agent: {sub_shell:?}"),
    );

    // What the model called each tool, and what the hook was told.
    let mut called: BTreeMap<String, String> = BTreeMap::new();
    for req in model.requests() {
        for item in req.body["input"].as_array().into_iter().flatten() {
            let kind = item["type"].as_str().unwrap_or_default();
            if kind != "function_call" && kind != "custom_tool_call" {
                continue;
            }
            let name = item["name"].as_str().unwrap_or_default();
            let name = match item["namespace"].as_str() {
                Some(ns) => format!("{ns}/{name}"),
                None => name.to_string(),
            };
            called.insert(item["call_id"].as_str().unwrap_or_default().to_string(), name);
        }
    }
    let mut hook_names: BTreeMap<String, String> = BTreeMap::new();
    for event in &events {
        if let (Some(id), Some(tool)) = (event["tool_use_id"].as_str(), event["tool_name"].as_str()) {
            if let Some(model_name) = called.get(id) {
                hook_names.insert(model_name.clone(), tool.to_string());
            }
        }
    }
    let tools = json!({
        "program": "codex-cli 0.171.0 (codex exec, model gpt-5.5 through a custom Responses API provider)",
        // Built-in tools only: which of an MCP server's tools a
        // `tool_search` returns is the server's (and BM25's) business.
        "offered": model.offered_tools().into_iter().filter(|t| !t.starts_with("mcp__")).collect::<Vec<_>>(),
        "hook_tool_name": hook_names,
    });
    recorded.insert("tools.json".into(), tools);

    let dir = fixtures_dir();
    if std::env::var(RECORD_ENV).is_ok_and(|v| v == "1") {
        fs::create_dir_all(&dir).unwrap();
        for (name, value) in &recorded {
            fs::write(dir.join(name), serde_json::to_string_pretty(value).unwrap() + "\n").unwrap();
        }
        println!("recorded {} fixtures into {}", recorded.len(), dir.display());
    } else {
        // What Codex sends has not drifted from what the fixtures hold.
        for (name, value) in &recorded {
            let Ok(text) = fs::read_to_string(dir.join(name)) else {
                c.check(
                    false,
                    format!("Codex sent {name}, which has no fixture (record with {RECORD_ENV}=1)"),
                );
                continue;
            };
            let fixture: Value = serde_json::from_str(&text).unwrap();
            if name == "tools.json" {
                c.check(
                    fixture["offered"] == value["offered"] && fixture["hook_tool_name"] == value["hook_tool_name"],
                    format!("the tools Codex offers or their hook names drifted from {name}: now {value}"),
                );
            } else {
                c.check(
                    shape(&fixture) == shape(value),
                    format!(
                        "{name} drifted: the fixture has fields {:?}, Codex now sends {:?}",
                        shape(&fixture),
                        shape(value)
                    ),
                );
            }
        }
    }
    c.finish(&model, &run);
}

/// A hook Codex has not been told to trust does not run at all, and the
/// call goes ahead: why `rein init codex` asks Codex whether it runs each
/// hook and offers `--trust` (and why the other scenarios pass
/// `--dangerously-bypass-hook-trust`).
#[test]
#[ignore = "runs inside the loopback-only namespace that codex_e2e makes"]
fn netns_untrusted_hook_is_skipped() {
    let Some(env) = netns() else { return };
    let sb = Sandbox::new("untrusted");
    let ran = sb.home.join("untrusted-hook-skipped");
    let model = FakeModel::start(vec![Step::shell(&format!("echo refuse-me > {}", ran.display()))]);
    let log = sb.root.join("hook-log");
    let hook = stand_in_hook(&sb, &log);
    fs::write(
        sb.user_hooks(),
        hooks_json(&["PreToolUse"], &command_hook(&hook.display().to_string())).to_string(),
    )
    .unwrap();
    sb.write_config(&model, "");
    let run = sb.codex(&env.codex, &[], &[]);
    let mut c = Checks::new("untrusted hook");
    c.completed(&model, &run);
    c.check(
        saved_events(&log).is_empty(),
        "the untrusted hook ran: Codex no longer skips untrusted hooks (update the docs and rein init codex)",
    );
    c.check(
        ran.exists(),
        "the command did not run: Codex no longer runs a call an untrusted hook would have refused",
    );
    c.finish(&model, &run);
}

/// Codex 0.171 runs no hook for `write_stdin` (input to a process an
/// `exec_command` left running): a hook sees the command that started the
/// session, never what is typed into it afterwards. Rein's example policy
/// refuses the bare interpreters (`sh`, `bash`, `python3`: not understood)
/// that would turn this into running anything; this pins the behaviour so
/// that a Codex release that starts hooking it is noticed (the README's
/// Codex paragraph says what it means for a policy).
#[test]
#[ignore = "runs inside the loopback-only namespace that codex_e2e makes"]
fn netns_write_stdin_reaches_no_hook() {
    let Some(env) = netns() else { return };
    let sb = Sandbox::new("write-stdin");
    let typed = sb.project.join("typed-into-the-session");
    let model = FakeModel::start(vec![
        Step::function(
            None,
            "exec_command",
            json!({"cmd": "sh", "tty": true, "yield_time_ms": 1000}),
        ),
        Step::WriteStdin(format!("echo typed > {}\n", typed.display())),
    ]);
    let log = sb.root.join("hook-log");
    let hook = stand_in_hook(&sb, &log);
    fs::write(
        sb.user_hooks(),
        hooks_json(
            &["PreToolUse", "PostToolUse"],
            &command_hook(&hook.display().to_string()),
        )
        .to_string(),
    )
    .unwrap();
    sb.write_config(&model, "");
    let run = sb.codex(&env.codex, &[BYPASS_TRUST], &[]);
    let out = model.outputs();
    let mut c = Checks::new("write_stdin");
    c.completed(&model, &run);
    c.ran(&out, 0, "session ID");
    c.ran(&out, 1, "");
    let events = saved_events(&log);
    let tools: Vec<String> = events
        .iter()
        .filter(|e| e["hook_event_name"] == "PreToolUse")
        .map(|e| format!("{}:{}", e["tool_name"].as_str().unwrap_or("?"), e["tool_input"]))
        .collect();
    c.check(
        tools == [r#"Bash:{"command":"sh"}"#],
        format!("the PreToolUse events were not the session's start alone: {tools:?}"),
    );
    c.check(typed.exists(), "what was typed into the session did not run");
    c.finish(&model, &run);
}

/// Codex runs `exec_command` in the `workdir` its model names and sends
/// that folder as the event's `cwd`, while the hook process runs in the
/// project: why `rein hook codex` takes the project from its own working
/// directory (`rein_hooks::handle_in_project`), not from `cwd`.
#[test]
#[ignore = "runs inside the loopback-only namespace that codex_e2e makes"]
fn netns_workdir_is_the_events_cwd_and_the_hook_runs_in_the_project() {
    let Some(env) = netns() else { return };
    let sb = Sandbox::new("workdir");
    let elsewhere = sb.home.join("elsewhere");
    fs::create_dir_all(&elsewhere).unwrap();
    let model = FakeModel::start(vec![Step::function(
        None,
        "exec_command",
        json!({"cmd": "echo ran > where-it-ran", "workdir": elsewhere.display().to_string()}),
    )]);
    let log = sb.root.join("hook-log");
    let hook = stand_in_hook(&sb, &log);
    let hook_dir = sb.root.join("hook-dir");
    let command = format!("pwd > '{}'; '{}'", hook_dir.display(), hook.display());
    fs::write(
        sb.user_hooks(),
        hooks_json(&["PreToolUse"], &command_hook(&command)).to_string(),
    )
    .unwrap();
    sb.write_config(&model, "");
    let run = sb.codex(&env.codex, &[BYPASS_TRUST], &[]);
    let mut c = Checks::new("workdir");
    c.completed(&model, &run);
    let events = saved_events(&log);
    let cwds: Vec<&str> = events.iter().filter_map(|e| e["cwd"].as_str()).collect();
    c.check(
        cwds == [elsewhere.display().to_string()],
        format!(
            "the event's cwd is not the command's workdir {}: {cwds:?}",
            elsewhere.display()
        ),
    );
    let ran_in = fs::read_to_string(&hook_dir).unwrap_or_default();
    c.check(
        ran_in.trim() == sb.project.display().to_string(),
        format!(
            "the hook did not run in the project {}: {ran_in:?}",
            sb.project.display()
        ),
    );
    c.check(
        elsewhere.join("where-it-ran").exists(),
        "the command did not run in its workdir",
    );
    c.finish(&model, &run);
}
