//! Derived sources (`Policy::load_with_derived`,
//! `Policy::from_sources_with_derived`): contracts written by a program,
//! which yield to the policy's own, and `Policy::blocks_unconditionally`.

use rein_engine::{Effect, Policy, Request};
use serde_json::json;

const FS: &str = "<contracts of MCP server fs>";

/// What the MCP gateway derives for a server with two tools, and the
/// snapshot it sends.
const DERIVED: &str = r#"
contracts:
  snapshot:
    tool_use_id: {type: string, optional: true, per_call: true}
    mcp_client: {type: string, optional: true}
  actions:
    mcp.fs.write_file:
      description: Write a file
      tool: {server: fs, name: write_file, annotations: {readOnlyHint: false, destructiveHint: true}}
      input: {path: string, content: string}
    mcp.fs.read_file:
      tool: {server: fs, name: read_file, annotations: {readOnlyHint: true, destructiveHint: false}}
      input: {path: string}
"#;

fn derived(text: &str) -> Vec<(String, String)> {
    vec![(FS.to_string(), text.to_string())]
}

#[test]
fn rules_govern_derived_contracts() {
    let p = Policy::from_sources_with_derived(
        [(
            "policy.yaml",
            "rules:\n  - {id: reads, action: mcp.fs.*, when: tool.annotations.readOnlyHint, effect: allow}\n",
        )],
        &derived(DERIVED),
    )
    .unwrap();
    let read = Request::new("mcp.fs.read_file")
        .input(json!({"path": "/a"}))
        .snapshot(json!({"tool_use_id": "t1"}));
    assert_eq!(p.decide(&read).effect(), Effect::Allow);
    assert_eq!(p.per_call_fields("mcp.fs.read_file"), ["snapshot.tool_use_id"]);
    let write = Request::new("mcp.fs.write_file").input(json!({"path": "/a", "content": ""}));
    assert_eq!(p.decide(&write).effect(), Effect::Block);
    // The derived contract is enforced: an undeclared field is refused.
    let extra = Request::new("mcp.fs.read_file").input(json!({"path": "/a", "mode": "x"}));
    let d = p.decide(&extra);
    assert_eq!(d.effect(), Effect::Block);
    assert!(d.violation().is_some());
}

#[test]
fn the_policys_own_contract_wins_whole() {
    let own = r#"
contracts:
  snapshot: {env: string}
  actions:
    mcp.fs.write_file:
      input: {path: {type: string, pattern: "^/tmp/"}, content: string, mode: {type: string, optional: true}}
rules:
  - {id: writes, action: mcp.fs.write_file, effect: allow}
  - {id: reads, action: mcp.fs.read_file, effect: allow}
"#;
    let p = Policy::from_sources_with_derived([("policy.yaml", own)], &derived(DERIVED)).unwrap();
    let snap = json!({"env": "prod"});
    // The policy's input contract (with `mode`, and the pattern) applies,
    // not the derived one.
    let ok = Request::new("mcp.fs.write_file")
        .input(json!({"path": "/tmp/a", "content": "", "mode": "w"}))
        .snapshot(snap.clone());
    assert_eq!(p.decide(&ok).effect(), Effect::Allow);
    let outside = Request::new("mcp.fs.write_file")
        .input(json!({"path": "/etc/a", "content": ""}))
        .snapshot(snap.clone());
    assert_eq!(p.decide(&outside).effect(), Effect::Block);
    // The policy's snapshot contract too: the derived fields are unknown.
    let derived_snapshot = Request::new("mcp.fs.read_file")
        .input(json!({"path": "/a"}))
        .snapshot(json!({"env": "prod", "tool_use_id": "t"}));
    assert!(p.decide(&derived_snapshot).violation().is_some());
    // No field merge: the derived `tool:` facts went with the derived
    // contract, so a rule reading them names the action.
    let reads_tool =
        format!("{own}  - {{id: t, action: mcp.fs.write_file, when: tool.server == \"fs\", effect: block}}\n");
    let err = Policy::from_sources_with_derived([("policy.yaml", reads_tool)], &derived(DERIVED)).unwrap_err();
    assert!(
        err.to_string()
            .contains("action `mcp.fs.write_file` declares no `tool` facts"),
        "{err}"
    );
}

#[test]
fn the_actor_contract_of_a_derived_source_yields_too() {
    let d = "contracts:\n  actor: {id: string}\n  actions:\n    a: {input: {}}\n";
    let own = "contracts:\n  actor: {name: string}\nrules:\n  - {id: r, action: a, when: actor.name == \"x\", effect: allow}\n";
    let p = Policy::from_sources_with_derived([("p.yaml", own)], &derived(d)).unwrap();
    assert_eq!(
        p.decide(&Request::new("a").actor(json!({"name": "x"}))).effect(),
        Effect::Allow
    );
    // Without the policy's, the derived actor contract applies.
    let own = "rules:\n  - {id: r, action: a, when: actor.id == \"x\", effect: allow}\n";
    let p = Policy::from_sources_with_derived([("p.yaml", own)], &derived(d)).unwrap();
    assert_eq!(
        p.decide(&Request::new("a").actor(json!({"id": "x"}))).effect(),
        Effect::Allow
    );
}

#[test]
fn two_derived_sources_cannot_declare_one_contract() {
    let two = vec![
        (FS.to_string(), DERIVED.to_string()),
        (
            "<contracts of MCP server fs2>".to_string(),
            "contracts:\n  actor: {id: string}\n  snapshot: {x: string}\n  actions:\n    mcp.fs.read_file: {input: {}}\n"
                .to_string(),
        ),
    ];
    let err = Policy::from_sources_with_derived([("p.yaml", "default: allow\n")], &two).unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("<contracts of MCP server fs2>:")
            && text.contains("action `mcp.fs.read_file` has a contract already (in `<contracts of MCP server fs>`"),
        "{text}"
    );
    assert!(
        text.contains("the snapshot contract is declared again (first in `<contracts of MCP server fs>`)"),
        "{text}"
    );
    // The actor was declared once among the derived sources: fine.
    assert_eq!(err.error_count(), 2, "{text}");
}

#[test]
fn a_derived_source_holds_only_contracts() {
    for key in ["rules", "default", "version", "max_window", "description"] {
        let text = format!("{DERIVED}{key}: []\n");
        let err = Policy::from_sources_with_derived([("p.yaml", "default: allow\n")], &derived(&text)).unwrap_err();
        let rendered = err.render(false);
        assert!(
            err.to_string().contains(&format!(
                "`{FS}` is a derived source and may hold only `contracts`, not `{key}`"
            )),
            "{err}"
        );
        // The diagnostic points into the derived source by its name.
        assert!(rendered.contains(&format!("[{FS}:")), "{rendered}");
        // Nothing of it is taken: its contracts do not load either.
        assert_eq!(err.error_count(), 1, "{rendered}");
    }
    // Not a mapping.
    let err = Policy::from_sources_with_derived([("p.yaml", "default: allow\n")], &derived("- a\n")).unwrap_err();
    assert!(err.to_string().contains("derived source"), "{err}");
    // Empty: declares nothing.
    let p = Policy::from_sources_with_derived([("p.yaml", "default: allow\n")], &derived("")).unwrap();
    assert_eq!(p.actions().count(), 0);
}

#[test]
fn errors_in_a_derived_contract_point_into_it() {
    let bad = "contracts:\n  actions:\n    mcp.fs.x:\n      input: {path: strng}\n";
    let err = Policy::from_sources_with_derived([("p.yaml", "default: allow\n")], &derived(bad)).unwrap_err();
    let text = err.to_string();
    assert!(text.contains(&format!("{FS}:4:")), "{text}");
}

#[test]
fn the_version_covers_derived_sources_and_what_they_are() {
    let own = "default: allow\n";
    let a = Policy::from_sources_with_derived([("p.yaml", own)], &derived(DERIVED)).unwrap();
    let b = Policy::from_sources_with_derived([("p.yaml", own)], &derived(&DERIVED.replace("Write a file", "Write")))
        .unwrap();
    assert_ne!(a.version(), b.version());
    // The same text as a policy file means something else (its contracts
    // would not yield), so it is another version.
    let plain = Policy::from_sources([("p.yaml", own), (FS, DERIVED)]).unwrap();
    assert_ne!(a.version(), plain.version());
    // The name is not part of it, as for policy files.
    let renamed =
        Policy::from_sources_with_derived([("p.yaml", own)], &[("other".to_string(), DERIVED.to_string())]).unwrap();
    assert_eq!(a.version(), renamed.version());
    // Without derived sources the version is what it always was.
    assert_eq!(
        Policy::from_sources_with_derived([("p.yaml", own)], &[])
            .unwrap()
            .version(),
        Policy::from_sources([("p.yaml", own)]).unwrap().version()
    );
}

#[test]
fn load_with_derived_reads_files_and_names_the_derived_source() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("policy.yaml");
    std::fs::write(&path, "rules:\n  - {id: r, action: mcp.fs.read_file, effect: allow}\n").unwrap();
    let p = Policy::load_with_derived(&[&path], &derived(DERIVED)).unwrap();
    assert_eq!(
        p.decide(&Request::new("mcp.fs.read_file").input(json!({"path": "/a"})))
            .effect(),
        Effect::Allow
    );
    let err = Policy::load_with_derived(&[&path], &derived("rules: []\n")).unwrap_err();
    assert!(err.to_string().contains(FS), "{err}");
}

#[test]
fn blocks_unconditionally() {
    let own = r#"
default: allow
rules:
  - {id: never_write, action: mcp.fs.write_file, effect: block}
  - {id: literal_true, action: mcp.fs.read_file, when: "true", effect: block}
  - {id: conditional, action: mcp.fs.list, when: input.path == "/", effect: block}
  - {id: limited, action: mcp.fs.stat, effect: block, limit: {count: 5, window: 1h}}
  - {id: after, action: mcp.fs.list, phase: after, effect: block}
  - {id: ask, action: mcp.fs.stat, effect: require_approval}
  - {id: false_literal, action: mcp.fs.stat, when: "false", effect: block}
"#;
    let d = r#"
contracts:
  actions:
    mcp.fs.write_file: {input: {}}
    mcp.fs.read_file: {input: {}}
    mcp.fs.list: {input: {path: string}}
    mcp.fs.stat: {input: {}}
"#;
    let p = Policy::from_sources_with_derived([("p.yaml", own)], &derived(d)).unwrap();
    assert!(p.blocks_unconditionally("mcp.fs.write_file"));
    assert!(p.blocks_unconditionally("mcp.fs.read_file"));
    assert!(!p.blocks_unconditionally("mcp.fs.list"));
    assert!(!p.blocks_unconditionally("mcp.fs.stat"));
    assert!(!p.blocks_unconditionally("mcp.fs.unknown"));
    // A glob counts as targeting.
    let p = Policy::from_sources_with_derived(
        [("p.yaml", "rules:\n  - {id: all, action: \"mcp.fs.*\", effect: block}\n")],
        &derived(d),
    )
    .unwrap();
    assert!(p.actions().all(|a| p.blocks_unconditionally(a)));
}
