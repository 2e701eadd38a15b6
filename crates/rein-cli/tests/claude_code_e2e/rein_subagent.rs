//! A sub-agent gets less than the main agent, with the real Claude Code:
//! the model calls the `Agent` tool, Claude Code runs a `general-purpose`
//! sub-agent (its own conversation with the fake model, which scripts it
//! too), and the sub-agent's `git push` is refused by the example policy's
//! `no_push_from_subagents` while the main agent's `git push` runs; the
//! sub-agent's other Bash command and its `Read` of a project file are
//! decided too (allowed, each recorded for the sub-agent). What
//! tells them apart is what Claude Code itself sends in the hook event
//! from inside a sub-agent (`agent_id`, `agent_type`), which the hook binds
//! as `actor.chain`; every event is logged as received and asserted on.

use crate::fake_model::{sub_tool_use_id, tool_use_id, FakeModel, ToolCall, ToolResult, SUB_FINAL_TEXT};
use crate::rein_hook::{hook_command, http_hook_settings, policies, rein_bin, start_serve, AGENT_TOKEN, EVENTS};
use crate::sandbox::{ClaudeRun, Sandbox};
use crate::{command_hook, hook_settings, netns, Checks, Env, HTTP_HOOK_TOKEN_ENV, REIN_REASON_MARK};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::process::Command;

/// In the prompt the main agent gives its sub-agent: the fake model serves
/// the sub-agent's script to the conversation that starts with it.
const MARKER: &str = "E2E-SUBAGENT-TASK";
/// The sub-agent type the main agent asks for (built into Claude Code).
const SUBAGENT_TYPE: &str = "general-purpose";

/// Runs `git ARGS` in `dir`, which must succeed.
fn git(dir: &Path, args: &[&str]) {
    let out = Command::new("git")
        .args(["-c", "user.name=e2e", "-c", "user.email=e2e@example.invalid"])
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Makes the project a repository with one commit on `feature` (the
/// example policy refuses pushes to `main`), whose `origin` is a
/// bare repository beside it (`ROOT/remote.git`): a push stays on disk.
fn add_repository(sb: &Sandbox) {
    git(&sb.root, &["init", "-q", "--bare", "remote.git"]);
    git(&sb.project, &["init", "-q", "-b", "feature"]);
    git(
        &sb.project,
        &["commit", "-q", "--allow-empty", "-m", "e2e-initial-commit"],
    );
    let remote = sb.root.join("remote.git");
    git(&sb.project, &["remote", "add", "origin", remote.to_str().unwrap()]);
}

/// The branches the remote holds.
fn remote_branches(sb: &Sandbox) -> Vec<String> {
    let out = Command::new("git")
        .args(["for-each-ref", "--format=%(refname:short)", "refs/heads"])
        .current_dir(sb.root.join("remote.git"))
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

/// What the project file the sub-agent reads holds.
const NOTES: &str = "E2E-SUBAGENT-NOTES: read by the sub-agent";

/// The project file the sub-agent reads (with Claude Code's `Read`).
fn add_notes(sb: &Sandbox) -> std::path::PathBuf {
    let path = sb.project.join("notes.txt");
    fs::write(&path, format!("{NOTES}\n")).unwrap();
    path
}

/// The main agent pushes, then hands a sub-agent a task; the sub-agent
/// tries the same push (to another branch), then reads the log and a file.
fn model(notes: &Path) -> FakeModel {
    FakeModel::start_with_subagent(
        vec![
            // 0: the main agent may push
            ToolCall::bash("git push origin HEAD:refs/heads/by-main-agent"),
            // 1: a sub-agent, in the foreground (its result is call 1's)
            ToolCall::new(
                "Agent",
                json!({"description": "push the branch", "prompt": format!("{MARKER}: push the branch"),
                       "subagent_type": SUBAGENT_TYPE, "run_in_background": false}),
            ),
        ],
        MARKER,
        vec![
            // sub 0: refused by `no_push_from_subagents`
            ToolCall::bash("git push origin HEAD:refs/heads/by-subagent"),
            // sub 1: what the rule does not refuse still runs
            ToolCall::bash("git log --oneline"),
            // sub 2: a file tool from inside the sub-agent, decided too
            ToolCall::new("Read", json!({"file_path": notes})),
        ],
    )
}

/// Every event Claude Code sent the hook, as received.
fn logged_events(path: &Path) -> Vec<Value> {
    fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The PreToolUse event of the tool call `id`.
fn pre_event<'a>(events: &'a [Value], id: &str) -> Option<&'a Value> {
    events
        .iter()
        .find(|e| e["hook_event_name"] == "PreToolUse" && e["tool_use_id"] == id)
}

/// `[{kind, id}, …]` from `kind:id` texts.
fn chain(links: &[&str]) -> Value {
    links
        .iter()
        .map(|l| {
            let (kind, id) = l.split_once(':').unwrap();
            json!({"kind": kind, "id": id})
        })
        .collect()
}

/// The audit records of `db` (`rein audit export`), by the tool call
/// (`snapshot.tool_use_id`) of their `before` decisions.
fn before_records(db: &Path) -> BTreeMap<String, Value> {
    let out = Command::new(rein_bin())
        .args(["audit", "export", "--db"])
        .arg(db)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|r| r["phase"] == "before")
        .filter_map(|r| Some((r["snapshot"]["tool_use_id"].as_str()?.to_string(), r)))
        .collect()
}

/// What every variant must show: the main agent's push ran, the
/// sub-agent's was refused by Rein's rule and never reached the remote,
/// the sub-agent went on, and what Claude Code sent from each side.
/// `chain_head` is the chain the hook's links follow (the token's).
fn check(
    c: &mut Checks,
    model: &FakeModel,
    run: &ClaudeRun,
    sb: &Sandbox,
    events: &[Value],
    db: &Path,
    chain_head: &[&str],
) {
    c.completed(model, run);
    let r = model.tool_results();
    c.ran(&r, 0, "by-main-agent");
    c.ran(&r, 1, SUB_FINAL_TEXT);
    let all = model.all_tool_results();
    for i in 0..3 {
        println!("  {}: {:?}", sub_tool_use_id(i), all.get(&sub_tool_use_id(i)));
    }
    let sub_push = all.get(&sub_tool_use_id(0));
    c.check(
        sub_push.is_some_and(|r: &ToolResult| {
            r.is_error && r.text.contains(REIN_REASON_MARK) && r.text.contains("no_push_from_subagents")
        }),
        format!("the sub-agent's push was not refused by no_push_from_subagents: {sub_push:?}"),
    );
    let sub_log = all.get(&sub_tool_use_id(1));
    c.check(
        sub_log.is_some_and(|r| !r.is_error && r.text.contains("e2e-initial-commit")),
        format!("the sub-agent's git log did not run: {sub_log:?}"),
    );
    let sub_read = all.get(&sub_tool_use_id(2));
    c.check(
        sub_read.is_some_and(|r| !r.is_error && r.text.contains(NOTES)),
        format!("the sub-agent's Read did not return the file: {sub_read:?}"),
    );
    let branches = remote_branches(sb);
    c.check(
        branches == ["by-main-agent"],
        format!("the remote holds {branches:?}, expected only the main agent's push"),
    );

    // What reached the hook from the real binary.
    let main_event = pre_event(events, &tool_use_id(0));
    c.check(
        main_event.is_some_and(|e| e.get("agent_id").is_none() && e.get("agent_type").is_none()),
        format!("the main agent's event carries sub-agent fields: {main_event:?}"),
    );
    let sub_event = pre_event(events, &sub_tool_use_id(0));
    c.check(
        sub_event.is_some_and(|e| {
            e["agent_type"] == SUBAGENT_TYPE && e["agent_id"].as_str().is_some_and(|id| !id.is_empty())
        }),
        format!("the sub-agent's event does not name it (agent_id, agent_type {SUBAGENT_TYPE:?}): {sub_event:?}"),
    );
    println!("the sub-agent's PreToolUse event, as Claude Code sent it: {sub_event:?}");

    // What Rein recorded: the chain each decision was made for.
    let records = before_records(db);
    let main_chain = chain(&[chain_head, &["agent:claude-code"]].concat());
    let sub_chain = chain(&[chain_head, &["agent:claude-code", "subagent:general-purpose"]].concat());
    let main_record = records.get(&tool_use_id(0));
    c.check(
        main_record.is_some_and(|r| r["effect"] == "allow" && r["actor"]["chain"] == main_chain),
        format!("the main agent's push is not recorded as allowed for {main_chain}: {main_record:?}"),
    );
    // Every call of the sub-agent was decided for it: its Bash commands
    // and its Read (the hook sees the sub-agent's file tools too).
    for (i, action, effect) in [(1, "shell.exec", "allow"), (2, "file.read", "allow")] {
        let record = records.get(&sub_tool_use_id(i));
        c.check(
            record.is_some_and(|r| r["action"] == action && r["effect"] == effect && r["actor"]["chain"] == sub_chain),
            format!("the sub-agent's call {i} is not recorded as {action} {effect} for {sub_chain}: {record:?}"),
        );
    }
    let sub_record = records.get(&sub_tool_use_id(0));
    c.check(
        sub_record.is_some_and(|r| {
            r["effect"] == "block"
                && r["actor"]["chain"] == sub_chain
                && r["actor_source"]["chain"] == "credential"
                && r["actor"]["agent_id"] == sub_event.map_or(Value::Null, |e| e["agent_id"].clone())
        }),
        format!("the sub-agent's push is not recorded as blocked for {sub_chain}: {sub_record:?}"),
    );
}

fn claude(env: &Env, sb: &Sandbox, model: &FakeModel, settings: &Path, extra_env: &[(&str, &str)]) -> ClaudeRun {
    sb.claude(
        &env.claude,
        model,
        settings,
        &["--permission-mode", "bypassPermissions"],
        extra_env,
    )
}

/// `rein hook claude-code` as a `command` hook, each event logged as
/// received on its way in.
#[test]
#[ignore = "runs inside the loopback-only namespace that claude_code_e2e makes"]
fn netns_rein_subagent_may_not_push() {
    let Some(env) = netns() else {
        return;
    };
    let sb = Sandbox::new("subagent");
    add_repository(&sb);
    let notes = add_notes(&sb);
    let db = sb.root.join("rein.db");
    let events = sb.root.join("events.jsonl");
    let rein = hook_command(&policies(), &["--db".into(), db.display().to_string()]);
    // One event per line in the log (Claude Code sends compact JSON).
    let command = format!("{{ cat; echo; }} | tee -a '{}' | {rein}", events.display());
    let settings = sb.write_json("settings.json", &hook_settings(EVENTS, command_hook(&command)));
    let model = model(&notes);
    let run = claude(&env, &sb, &model, &settings, &[]);
    let mut c = Checks::new("sub-agent, command hook");
    check(&mut c, &model, &run, &sb, &logged_events(&events), &db, &[]);
    c.finish(&model, &run);
}

/// The same behind `rein serve` (Claude Code's `http` hook with an agent
/// token): the hook's links follow the token's chain. The events are read
/// back from the audit log only.
#[test]
#[ignore = "runs inside the loopback-only namespace that claude_code_e2e makes"]
fn netns_rein_subagent_may_not_push_over_http() {
    let Some(env) = netns() else {
        return;
    };
    let sb = Sandbox::new("subagent-http");
    add_repository(&sb);
    let notes = add_notes(&sb);
    let serve = start_serve(&sb);
    let settings = sb.write_json("settings.json", &http_hook_settings(&serve));
    let model = model(&notes);
    let run = claude(&env, &sb, &model, &settings, &[(HTTP_HOOK_TOKEN_ENV, AGENT_TOKEN)]);
    let log = serve.log_text();
    drop(serve);
    let db = sb.root.join("serve.db");
    // The audit log's record of each event stands in for the event: the
    // sub-agent fields are in its actor.
    let events: Vec<Value> = before_records(&db)
        .into_iter()
        .map(|(id, r)| {
            let mut e = json!({"hook_event_name": "PreToolUse", "tool_use_id": id});
            for field in ["agent_id", "agent_type"] {
                if let Some(v) = r["actor"].get(field) {
                    e[field] = v.clone();
                }
            }
            e
        })
        .collect();
    // The token's chain, whatever the tokens file makes it: the links
    // before the hook's own in the main agent's record.
    let head: Vec<String> = before_records(&db)
        .get(&tool_use_id(0))
        .and_then(|r| r["actor"]["chain"].as_array().cloned())
        .unwrap_or_default()
        .iter()
        .rev()
        .skip(1)
        .rev()
        .map(|l| {
            format!(
                "{}:{}",
                l["kind"].as_str().unwrap_or(""),
                l["id"].as_str().unwrap_or("")
            )
        })
        .collect();
    let head: Vec<&str> = head.iter().map(String::as_str).collect();
    let mut c = Checks::new("sub-agent, http hook");
    // A token of the tokens file without `chain:` binds none, or one link
    // naming it (`token:<name>`).
    c.check(
        head.is_empty() || head == ["token:claude-code"],
        format!("the token's chain is {head:?}"),
    );
    check(&mut c, &model, &run, &sb, &events, &db, &head);
    if !c.ok() {
        println!("rein serve log:\n{log}");
    }
    c.finish(&model, &run);
}
