//! Claude Code with an MCP server behind `rein mcp gateway`: the server
//! command in `--mcp-config` is only prefixed by the gateway, no hook is
//! installed, and Claude Code's own permission checks are off
//! (`bypassPermissions`), so every refusal the model sees is the gateway's.
//!
//! The server is `@modelcontextprotocol/server-filesystem` (installed beside
//! server-everything by `.ci/mcp`), serving the scratch project, as `fs`;
//! the policy is the gateway tests' `tests/mcp/policies/fs/policy.yaml`.

use crate::fake_model::{tool_use_id, FakeModel, ToolCall};
use crate::sandbox::Sandbox;
use crate::{hook_settings, netns, Checks};
use serde_json::json;
use std::fs;
use std::path::PathBuf;
use std::process::Command;

/// In the file the after-rule withholds.
const SECRET: &str = "SECRET-e2e-through-the-gateway";

/// server-filesystem's entry script: a sibling of server-everything's in
/// the same npm prefix.
fn filesystem_server(everything: &std::path::Path) -> PathBuf {
    everything
        .ancestors()
        .nth(3)
        .expect("…/@modelcontextprotocol/server-everything/dist/index.js")
        .join("server-filesystem/dist/index.js")
}

#[test]
#[ignore = "runs inside the loopback-only namespace that claude_code_e2e makes"]
fn netns_mcp_gateway_refusal_reaches_the_model() {
    let Some(env) = netns() else {
        return;
    };
    let sb = Sandbox::new("mcp-gateway");
    let filesystem = filesystem_server(&env.mcp_everything);
    assert!(filesystem.is_file(), "no {}: run .ci/mcp", filesystem.display());
    let policy_dir = sb.root.join("policy");
    fs::create_dir_all(&policy_dir).unwrap();
    let policy = policy_dir.join("policy.yaml");
    fs::copy(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/mcp/policies/fs/policy.yaml"),
        &policy,
    )
    .unwrap();
    let db = sb.root.join("rein.db");
    fs::write(sb.project.join("secret.txt"), format!("token {SECRET}\n")).unwrap();
    let p = |name: &str| sb.project.join(name).display().to_string();

    let model = FakeModel::start(vec![
        // 0: allowed, the server's answer
        ToolCall::new("mcp__fs__read_text_file", json!({"path": p("README.md")})),
        // 1: blocked by a rule: never reaches the server
        ToolCall::new(
            "mcp__fs__write_file",
            json!({"path": p("evil.txt"), "content": "must not be written\n"}),
        ),
        // 2: allowed write
        ToolCall::new(
            "mcp__fs__write_file",
            json!({"path": p("notes.txt"), "content": "written through the gateway\n"}),
        ),
        // 3: allowed call, result withheld by an after-rule
        ToolCall::new("mcp__fs__read_text_file", json!({"path": p("secret.txt")})),
    ]);
    let mcp = sb.write_json(
        "mcp.json",
        &json!({"mcpServers": {"fs": {
            "command": env!("CARGO_BIN_EXE_rein"),
            "args": ["mcp", "gateway", "--policy", policy, "--db", db, "--server", "fs",
                     "--", "node", filesystem, sb.project]}}}),
    );
    // No hooks: the gateway alone decides.
    let settings = sb.write_json("settings.json", &hook_settings(&[], json!({})));
    let run = sb.claude(
        &env.claude,
        &model,
        &settings,
        &[
            "--permission-mode",
            "bypassPermissions",
            "--mcp-config",
            mcp.to_str().unwrap(),
            "--strict-mcp-config",
        ],
        &[],
    );
    let results = model.tool_results();
    let mut c = Checks::new("mcp gateway");
    c.completed(&model, &run);
    c.ran(&results, 0, "# e2e scratch project");
    c.refused(
        &results,
        1,
        "Blocked by Rein rule no_other_writes: the agent may write only notes.txt",
    );
    c.check(
        !sb.project.join("evil.txt").exists(),
        "the blocked write_file reached the server: evil.txt exists",
    );
    c.ran(&results, 2, "");
    c.check(
        fs::read_to_string(sb.project.join("notes.txt")).unwrap_or_default() == "written through the gateway\n",
        "the allowed write_file did not write notes.txt",
    );
    c.refused(&results, 3, "no_secrets_out");
    c.not_told(&results, 3, SECRET);
    c.check(!model.told_anywhere(SECRET), "the model was told the secret somewhere");
    // The refusal is in the audit log under Claude Code's tool_use_id (the
    // gateway keeps `_meta["claudecode/toolUseId"]` as the join key).
    let export = Command::new(env!("CARGO_BIN_EXE_rein"))
        .args(["audit", "export", "--effect", "block", "--db"])
        .arg(&db)
        .output()
        .unwrap();
    let export = String::from_utf8_lossy(&export.stdout);
    c.check(
        export.contains(&format!("\"{}\"", tool_use_id(1))),
        format!(
            "no block record for call 1 under its tool_use_id; first record: {}",
            export.lines().next().unwrap_or("none")
        ),
    );
    c.finish(&model, &run);
}
