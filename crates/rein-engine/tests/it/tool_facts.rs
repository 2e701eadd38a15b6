//! An action's `tool:` facts: constants typed from what they are, read by
//! rules as the root `tool` in both phases.

use rein_engine::{Effect, Phase, Policy, PolicyCache, Request};
use serde_json::json;

/// Two tools of one server as the MCP gateway writes them, and an action
/// without facts.
const CONTRACTS: &str = r#"
contracts:
  actions:
    mcp.fs.write_file:
      tool:
        server: fs
        name: write_file
        annotations: {title: "", readOnlyHint: false, destructiveHint: true, idempotentHint: false, openWorldHint: true}
        version: 3
        weight: 0.5
        tags: [files, write]
      input: {path: string, content: string}
      output: {text: string}
    mcp.fs.read_file:
      tool:
        server: fs
        name: read_file
        annotations: {title: Read, readOnlyHint: true, destructiveHint: false, idempotentHint: true, openWorldHint: false}
        version: 1
        weight: 2
        tags: []
      input: {path: string}
      output: {text: string}
    plain:
      input: {x: int}
"#;

fn policy(rules: &str) -> Result<Policy, rein_engine::LoadError> {
    Policy::from_sources([("contracts.yaml", CONTRACTS), ("rules.yaml", rules)])
}

fn write() -> Request {
    Request::new("mcp.fs.write_file").input(json!({"path": "/a", "content": "x"}))
}

fn read() -> Request {
    Request::new("mcp.fs.read_file").input(json!({"path": "/a"}))
}

#[test]
fn rules_read_the_facts_of_the_action_decided() {
    let p = policy(
        r#"
default: allow
rules:
  - id: no_destructive
    action: mcp.fs.*
    when: tool.annotations.destructiveHint && !tool.annotations.readOnlyHint
    effect: block
    reason: destructive tools are off
  - id: newer_versions_ask
    action: mcp.fs.*
    when: tool.version > 2 && tool.weight < 1 && "write" in tool.tags && tool.server == "fs"
    effect: require_approval
"#,
    )
    .unwrap();
    let d = p.decide(&write());
    assert_eq!(d.effect(), Effect::Block);
    assert_eq!(d.rules(), ["no_destructive", "newer_versions_ask"]);
    assert_eq!(p.decide(&read()).effect(), Effect::Allow);
}

#[test]
fn after_rules_read_them_too() {
    let p = policy(
        r#"
rules:
  - id: allow_all
    action: mcp.fs.*
    effect: allow
  - id: withhold_open_world
    action: mcp.fs.*
    phase: after
    when: tool.annotations.openWorldHint && output.text.contains("secret")
    effect: block
"#,
    )
    .unwrap();
    let out = json!({"text": "a secret"});
    let d = p.decide(&write().phase(Phase::After).output(out.clone()));
    assert_eq!(d.effect(), Effect::Block);
    let d = p.decide(&read().phase(Phase::After).output(out));
    assert_eq!(d.effect(), Effect::Allow);
}

#[test]
fn a_missing_fact_is_a_type_error_with_a_hint() {
    let err = policy(
        r#"
rules:
  - id: r
    action: mcp.fs.write_file
    when: tool.annotations.readOnlyHnt
    effect: block
"#,
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("has no field `readOnlyHnt`"), "{err}");
    let err = policy("rules:\n  - {id: r, action: mcp.fs.write_file, when: tool.servr == \"fs\", effect: block}\n")
        .unwrap_err();
    let rendered = err.render(false);
    assert!(
        rendered.contains("the `tool` facts of action `mcp.fs.write_file` has no field `servr`"),
        "{rendered}"
    );
    assert!(rendered.contains("did you mean `server`?"), "{rendered}");
}

#[test]
fn facts_are_typed_from_their_values() {
    for (when, what) in [
        ("tool.version == \"3\"", "compare"),
        ("tool.annotations.title > 1", ""),
        ("tool.tags.exists(t, t > 1)", ""),
        ("tool.name", "boolean"),
    ] {
        let rules = format!("rules:\n  - {{id: r, action: mcp.fs.write_file, when: '{when}', effect: block}}\n");
        let err = policy(&rules).expect_err(when).to_string();
        assert!(err.contains(what), "{when}: {err}");
    }
}

#[test]
fn reading_tool_on_an_action_without_facts_names_the_action() {
    let err =
        policy("rules:\n  - {id: r, action: [mcp.fs.read_file, plain], when: tool.server == \"fs\", effect: block}\n")
            .unwrap_err();
    let rendered = err.render(false);
    assert_eq!(err.error_count(), 1, "{rendered}");
    assert!(
        rendered.contains("action `plain` declares no `tool` facts"),
        "{rendered}"
    );
    assert!(rendered.contains("add `tool:`"), "{rendered}");
}

#[test]
fn a_loop_variable_called_tool_still_shadows_the_root() {
    let p = policy(
        r#"
rules:
  - id: r
    action: plain
    when: '[1, 2].exists(tool, tool == input.x)'
    effect: allow
"#,
    )
    .unwrap();
    assert_eq!(
        p.decide(&Request::new("plain").input(json!({"x": 2}))).effect(),
        Effect::Allow
    );
    assert_eq!(
        p.decide(&Request::new("plain").input(json!({"x": 3}))).effect(),
        Effect::Block
    );
}

#[test]
fn explanations_show_the_facts_read() {
    let p = policy(
        "rules:\n  - {id: r, action: mcp.fs.*, when: 'tool.annotations.destructiveHint && tool.server == \"fs\"', effect: block}\n",
    )
    .unwrap();
    let text = p.explain(&write()).to_string();
    assert!(text.contains("tool.annotations.destructiveHint = true"), "{text}");
    assert!(text.contains("tool.server = \"fs\""), "{text}");
    let json = p.explain(&read()).to_json().to_string();
    assert!(
        json.contains(r#"{"expr":"tool.annotations.destructiveHint","value":false}"#),
        "{json}"
    );
}

#[test]
fn facts_survive_the_cache() {
    let dir = tempfile::tempdir().unwrap();
    let contracts = dir.path().join("contracts.yaml");
    let rules = dir.path().join("rules.yaml");
    std::fs::write(&contracts, CONTRACTS).unwrap();
    std::fs::write(
        &rules,
        "rules:\n  - {id: r, action: mcp.fs.*, when: 'tool.annotations.readOnlyHint && tool.weight > 1.5', effect: allow}\n",
    )
    .unwrap();
    let cache = PolicyCache::new(dir.path().join("cache"));
    cache.load(&[&contracts, &rules]).unwrap();
    let (p, status) = cache.load(&[&contracts, &rules]).unwrap();
    assert_eq!(status, rein_engine::CacheStatus::Hit);
    assert_eq!(p.decide(&read()).effect(), Effect::Allow);
    assert_eq!(p.decide(&write()).effect(), Effect::Block);
}

#[test]
fn bad_facts_are_load_errors() {
    for (tool, what) in [
        ("tool: fs", "`tool` to be a mapping"),
        ("tool: {a: null}", "`tool.a` has no value"),
        ("tool: {a: .nan}", "`tool.a` is not a finite number"),
        ("tool: {a: [1, x]}", "must all have one type"),
        (
            "tool: {a: {b: [{c: 1}, {d: 1}]}}",
            "the items of `tool.a.b` must all have one type",
        ),
        ("tool: {a-b: 1}", "`a-b` is not a valid field name"),
        ("tool: {a: {1: x}}", "keys of `tool.a` must be strings"),
    ] {
        let text = format!("contracts:\n  actions:\n    x:\n      {tool}\n");
        let err = Policy::from_yaml_str(&text).expect_err(tool).render(false);
        assert!(err.contains(what), "{tool}: {err}");
    }
}

#[test]
fn a_limit_can_key_on_a_fact() {
    let p = policy(
        r#"
default: allow
rules:
  - id: per_server
    action: mcp.fs.*
    effect: block
    limit: {count: 1, per: [tool.server], window: 1h}
"#,
    )
    .unwrap();
    let mut state = rein_engine::MemoryState::new(std::sync::Arc::new(|v: &serde_json::Value| v.to_string()));
    let now = jiff::Timestamp::now();
    // The bucket is the server's: the second call of any of its tools is
    // over the limit.
    let first = p.prepare(&write().session("s").time(now)).unwrap();
    let (d, effects) = first.decide_with_state(&state);
    assert_eq!(d.effect(), Effect::Allow);
    state.apply(&effects.writes("d1", d.effect(), now));
    let second = p.prepare(&read().session("s").time(now)).unwrap();
    let (d, _) = second.decide_with_state(&state);
    assert_eq!(d.effect(), Effect::Block);
    assert_eq!(d.rules(), ["per_server"]);
}

#[test]
fn facts_work_with_the_usual_operators() {
    for (when, read_effect) in [
        // An empty list of facts takes any type.
        (
            r#"tool.tags.exists(t, t == "files") || "x" in tool.tags"#,
            Effect::Allow,
        ),
        ("tool.tags.size() == 0", Effect::Block),
        (
            "has(tool.annotations.title) && tool.annotations.title.startsWith(\"Read\")",
            Effect::Block,
        ),
        ("tool.version + tool.weight == 3.0", Effect::Block),
        ("tool == tool && tool.annotations != tool.annotations", Effect::Allow),
        (r#"action == "mcp.fs." + tool.name"#, Effect::Block),
    ] {
        let rules = format!("default: allow\nrules:\n  - {{id: r, action: mcp.fs.*, when: '{when}', effect: block}}\n");
        let p = policy(&rules).unwrap_or_else(|e| panic!("{when}: {e}"));
        assert_eq!(p.decide(&read()).effect(), read_effect, "{when}");
    }
}
