//! Shared helpers for the integration tests.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;

use rein_store::{AuditEntry, SqliteStore};
use serde_json::json;

/// A store in a fresh temporary directory (kept alive by the `TempDir`).
pub fn open_temp() -> (tempfile::TempDir, SqliteStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("rein.db")).unwrap();
    (dir, store)
}

/// A raw connection to the store's file, as an attacker (or an operator)
/// would open it, with the append-only triggers dropped.
pub fn attacker(path: &Path) -> rusqlite::Connection {
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.execute_batch("DROP TRIGGER IF EXISTS audit_no_update; DROP TRIGGER IF EXISTS audit_no_delete;")
        .unwrap();
    conn
}

/// A varied entry: `i` picks the actor, action, effect, rules and session.
pub fn entry(i: u64) -> AuditEntry {
    let actors = ["alice", "bob", "carol"];
    let actions = ["refund", "send_email", "delete_user"];
    let effects = ["allow", "block", "require_approval"];
    AuditEntry {
        decision_id: format!("dec-{i}"),
        time: format!("2025-06-01T12:00:{:02}.{:06}Z", i % 60, i),
        phase: if i.is_multiple_of(2) { "before" } else { "after" }.into(),
        action: actions[(i % 3) as usize].into(),
        input: json!({"amount": i * 10, "currency": "EUR", "lines": [{"sku": "a", "qty": i}]}),
        actor: json!({"id": actors[(i % 3) as usize], "roles": ["agent"]}),
        snapshot: json!({"refunds_today": i}),
        output: if i % 2 == 1 { Some(json!({"ok": true})) } else { None },
        error: None,
        session: if i.is_multiple_of(4) {
            None
        } else {
            Some(format!("s{}", i % 4))
        },
        effect: effects[(i % 3) as usize].into(),
        rules: if i.is_multiple_of(3) {
            vec![]
        } else {
            vec![format!("rule-{}", i % 5), "common".into()]
        },
        reasons: vec![format!("reason {i}")],
        policy_version: "pv1".into(),
        latency_us: 40 + i,
        approval: None,
        client: None,
        policy_version_label: None,
        actor_source: None,
        shadow: None,
        activation: None,
    }
}
