//! Property: a path is judged by where it lands, whatever its spelling.
//! `rm -rf P` with P written through `..`, `.`, `./`, repeated slashes or
//! after a `cd` gets the same decision as `rm -rf` of the path it resolves
//! to, written plainly.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use proptest::prelude::*;
use rein_hooks::{handle, Agent};
use rein_runtime::{Runtime, RuntimeConfig};
use rein_store::SqliteStore;
use serde_json::{json, Value};
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

fn runtime(dir: &Path) -> Runtime {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let policy = rein_engine::Policy::load(&[
        root.join("policies/agents/coding-agent.yaml"),
        root.join("examples/claude-code/policy.yaml"),
    ])
    .unwrap();
    let store = SqliteStore::open(dir.join("audit.db")).unwrap();
    let config = RuntimeConfig {
        hmac_key: vec![7; 32],
        ..RuntimeConfig::default()
    };
    Runtime::new(policy, Arc::new(store), config)
}

fn decide(rt: &Runtime, project: &Path, command: &str) -> String {
    let event = json!({"session_id": "s", "cwd": project, "hook_event_name": "PreToolUse",
        "tool_name": "Bash", "tool_input": {"command": command}, "tool_use_id": "t"});
    let tokio = tokio::runtime::Builder::new_current_thread().build().unwrap();
    // The example policy attaches labels to sessions: it keeps state.
    tokio.block_on(rt.open_state()).unwrap();
    let reply = tokio.block_on(handle(rt, Agent::ClaudeCode, event.to_string().as_bytes(), None));
    let v: Value = serde_json::from_str(&reply.stdout).unwrap();
    v["hookSpecificOutput"]["permissionDecision"]
        .as_str()
        .unwrap()
        .to_string()
}

/// `path` relative to `base`, normalised lexically (`None` above the root).
fn lexical(base: &Path, path: &str) -> PathBuf {
    let mut out = base.to_path_buf();
    for c in Path::new(path).components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::Normal(s) => out.push(s),
            _ => {}
        }
    }
    out
}

fn segment() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("build".to_string()),
        Just("target".to_string()),
        Just("src".to_string()),
        Just(".git".to_string()),
        Just("..".to_string()),
        Just(".".to_string()),
        Just("".to_string()),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, .. ProptestConfig::default() })]

    #[test]
    fn a_path_is_judged_where_it_lands(segments in prop::collection::vec(segment(), 1..6), cd in any::<bool>()) {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().canonicalize().unwrap();
        let project = base.join("home/p");
        for d in ["build", "target", "src", ".git"] {
            std::fs::create_dir_all(project.join(d)).unwrap();
        }
        let rt = runtime(&base);
        let spelled = segments.join("/");
        prop_assume!(!spelled.is_empty() && !spelled.starts_with('/'));
        let (command, start) = if cd {
            (format!("cd src && rm -rf {spelled}"), project.join("src"))
        } else {
            (format!("rm -rf {spelled}"), project.clone())
        };
        let landed = lexical(&start, &spelled);
        let plain = format!("rm -rf {}", landed.display());
        let got = decide(&rt, &project, &command);
        let want = decide(&rt, &project, &plain);
        prop_assert_eq!(&got, &want, "{} vs {}", command, plain);
        // And a removal that lands outside the build folders is never allowed.
        let in_build = ["build", "target"].iter().any(|d| landed.starts_with(project.join(d)));
        if !in_build {
            prop_assert_ne!(got.as_str(), "allow", "{}", command);
        }
    }
}
