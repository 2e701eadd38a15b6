//! Contracts derived from the real `tools/list` results of the reference
//! MCP servers (`tests/fixtures/*.tools.json`, captured with
//! `tests/fixtures/capture_tools.py` from npm
//! `@modelcontextprotocol/server-filesystem` and `server-everything`
//! 2026.8.31), and of a server on the Python SDK (`mcp` 2.3.0, pydantic 2:
//! `tests/fixtures/python_sdk_server.py`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use rein_mcp::catalog::Catalog;
use rein_mcp::contracts::{derive, Derived};
use serde_json::Value as Json;

fn fixture(name: &str) -> Catalog {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap();
    let page: Json = serde_json::from_str(&text).unwrap();
    Catalog::from_pages([&page]).unwrap()
}

fn report(derived: &Derived) -> String {
    let mut out = derived.yaml.clone();
    out.push_str("\n# --- unmapped ---\n");
    for u in &derived.unmapped {
        out.push_str(&format!("# {u}\n"));
    }
    out
}

#[test]
fn server_filesystem() {
    let derived = derive("fs", &fixture("server-filesystem.tools.json"));
    assert_eq!(derived.actions.len(), 14);
    insta::assert_snapshot!(report(&derived));
}

#[test]
fn server_everything() {
    let derived = derive("everything", &fixture("server-everything.tools.json"));
    assert_eq!(derived.actions.len(), 13);
    insta::assert_snapshot!(report(&derived));
}

#[test]
fn python_sdk() {
    let derived = derive("py", &fixture("python-sdk.tools.json"));
    assert_eq!(derived.actions.len(), 4);
    insta::assert_snapshot!(report(&derived));
}

/// The derived contracts of both servers load beside a policy, as the
/// gateway loads them, and decide as the tools' schemas say.
#[test]
fn derived_contracts_of_both_servers_load_and_decide() {
    use rein_engine::{Effect, Phase, Policy, Request};
    use serde_json::json;

    let fs = derive("fs", &fixture("server-filesystem.tools.json"));
    let everything = derive("everything", &fixture("server-everything.tools.json"));
    let rules = r#"
default: {before: allow, after: allow}
rules:
  - id: writes_need_a_person
    action: [mcp.fs.*, mcp.everything.*]
    when: '!tool.annotations.readOnlyHint && tool.annotations.destructiveHint'
    effect: require_approval
    reason: this tool changes files
  - id: no_secrets_out
    action: mcp.fs.read_text_file
    phase: after
    when: output.content.contains("BEGIN PRIVATE KEY")
    effect: block
    reason: a private key
"#;
    let policy = Policy::from_sources_with_derived(
        [("policy.yaml", rules)],
        &[
            ("<contracts of MCP server fs>".to_string(), fs.yaml.clone()),
            (
                "<contracts of MCP server everything>".to_string(),
                everything.yaml.clone(),
            ),
        ],
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let decide = |action: &str, input: serde_json::Value| policy.decide(&Request::new(action).input(input)).effect();
    assert_eq!(
        decide("mcp.fs.read_text_file", json!({"path": "/a", "head": 3})),
        Effect::Allow
    );
    assert_eq!(
        decide("mcp.fs.read_text_file", json!({"path": "/a", "follow": true})),
        Effect::Block
    );
    assert_eq!(decide("mcp.fs.read_text_file", json!({})), Effect::Block);
    assert_eq!(
        decide("mcp.fs.write_file", json!({"path": "/a", "content": "x"})),
        Effect::RequireApproval
    );
    assert_eq!(
        decide(
            "mcp.fs.edit_file",
            json!({"path": "/a", "edits": [{"oldText": "a", "newText": "b"}]})
        ),
        Effect::RequireApproval
    );
    assert_eq!(
        decide("mcp.fs.edit_file", json!({"path": "/a", "edits": [{"oldText": "a"}]})),
        Effect::Block
    );
    assert_eq!(
        decide("mcp.fs.read_multiple_files", json!({"paths": []})),
        Effect::Block
    );
    assert_eq!(
        decide(
            "mcp.fs.list_directory_with_sizes",
            json!({"path": "/", "sortBy": "date"})
        ),
        Effect::Block
    );
    assert_eq!(
        decide("mcp.everything.get-resource-links", json!({"count": 10})),
        Effect::Allow
    );
    assert_eq!(
        decide("mcp.everything.get-resource-links", json!({"count": 11})),
        Effect::Block
    );
    assert_eq!(
        decide("mcp.everything.get-structured-content", json!({"location": "Paris"})),
        Effect::Block
    );
    assert_eq!(decide("mcp.everything.echo", json!({"message": "hi"})), Effect::Allow);

    let after = |action: &str, input: serde_json::Value, output: serde_json::Value| {
        policy
            .decide(&Request::new(action).phase(Phase::After).input(input).output(output))
            .effect()
    };
    let path = json!({"path": "/a"});
    assert_eq!(
        after("mcp.fs.read_text_file", path.clone(), json!({"content": "hello"})),
        Effect::Allow
    );
    assert_eq!(
        after(
            "mcp.fs.read_text_file",
            path.clone(),
            json!({"content": "-----BEGIN PRIVATE KEY-----"})
        ),
        Effect::Block
    );
    assert_eq!(
        after(
            "mcp.everything.get-structured-content",
            json!({"location": "Chicago"}),
            json!({"temperature": 20, "conditions": "sun", "humidity": 40})
        ),
        Effect::Allow
    );
    assert_eq!(
        after(
            "mcp.everything.echo",
            json!({"message": "hi"}),
            json!({"text": "Echo: hi"})
        ),
        Effect::Allow
    );
    // Its outputSchema holds a union Rein cannot type: reported, and no
    // output contract, so no rule may read it.
    assert!(fs
        .unmapped
        .iter()
        .any(|u| u.tool == "read_media_file" && u.reason.contains("no output contract")));
    assert_eq!(
        after("mcp.fs.read_media_file", path, json!({"content": []})),
        Effect::Allow
    );
    let reads_media = format!(
        "{rules}  - {{id: m, action: mcp.fs.read_media_file, phase: after, when: 'has(output.content)', effect: block}}\n"
    );
    let refused = Policy::from_sources_with_derived(
        [("policy.yaml", reads_media.as_str())],
        &[("<contracts of MCP server fs>".to_string(), fs.yaml.clone())],
    );
    assert!(refused.is_err());
}

/// Pydantic's schemas (nested models through `$defs`, optional fields as
/// `anyOf` with `null`, `Field` constraints) decide as pydantic would.
#[test]
fn python_sdk_contracts_decide_as_pydantic() {
    use rein_engine::{Effect, Phase, Policy, Request};
    use serde_json::json;

    let py = derive("py", &fixture("python-sdk.tools.json"));
    let policy = Policy::from_sources_with_derived(
        [("policy.yaml", "default: {before: allow, after: allow}\n")],
        &[("<contracts of MCP server py>".to_string(), py.yaml.clone())],
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let decide = |input: serde_json::Value| policy.decide(&Request::new("mcp.py.refund").input(input)).effect();
    let good = json!({
        "order_id": "ord_42", "amount": 12.5, "currency": "EUR",
        "customer": {"name": "Ada", "tier": "gold", "address": {"city": "Paris", "zip_code": "75001"}, "previous": [], "note": null},
        "priority": "high", "quantity": 2, "tags": {"k": "v"}, "when": "2026-12-05T10:00:00Z",
    });
    assert_eq!(decide(good.clone()), Effect::Allow);
    let with = |pointer: &str, value: serde_json::Value| {
        let mut v = good.clone();
        *v.pointer_mut(pointer).unwrap() = value;
        v
    };
    assert_eq!(decide(with("/order_id", json!("ORD_42"))), Effect::Block);
    assert_eq!(decide(with("/amount", json!(100001))), Effect::Block);
    assert_eq!(decide(with("/currency", json!("GBP"))), Effect::Block);
    assert_eq!(decide(with("/customer/address/zip_code", json!("7500"))), Effect::Block);
    assert_eq!(
        decide(with("/customer/address/zip_code", json!("٧٥٠٠١"))),
        Effect::Block
    );
    assert_eq!(decide(with("/customer/name", json!(""))), Effect::Block);
    assert_eq!(decide(with("/customer/tier", json!("bronze"))), Effect::Block);
    assert_eq!(decide(with("/priority", json!("urgent"))), Effect::Block);
    assert_eq!(decide(with("/quantity", json!(0))), Effect::Block);
    assert_eq!(decide(with("/tags", json!({"k": 1}))), Effect::Block);
    // `int | str | None` has no Rein type: reported, and refused when set.
    let mut reference = good.clone();
    reference["reference"] = json!(7);
    assert_eq!(decide(reference), Effect::Block);
    assert!(
        py.unmapped.iter().any(|u| u.path == "input.reference"),
        "{:?}",
        py.unmapped
    );
    let after = |action: &str, input: serde_json::Value, output: serde_json::Value| {
        policy
            .decide(&Request::new(action).phase(Phase::After).input(input).output(output))
            .effect()
    };
    assert_eq!(
        after("mcp.py.refund", good.clone(), json!({"refund_id": "r", "amount": 1.0})),
        Effect::Allow
    );
    assert_eq!(after("mcp.py.refund", good, json!({"refund_id": "r"})), Effect::Block);
    assert_eq!(
        after("mcp.py.list_orders", json!({}), json!({"result": ["a"]})),
        Effect::Allow
    );
    // `-> dict[str, int]`: no output contract, reported.
    assert_eq!(
        after("mcp.py.count_words", json!({"text": "a"}), json!({"a": 1})),
        Effect::Allow
    );
    assert!(py
        .unmapped
        .iter()
        .any(|u| u.tool == "count_words" && u.reason.contains("no output contract")));
}
