//! `Planner` (what `rein plan` runs) against a real SQLite file filled by a
//! real runtime: records with sensitive fields are replayed when the
//! decision under the new policy is computable without them, and then it
//! is the decision the new policy gives the clear request; otherwise they
//! are skipped with the field named.

// Helpers outside `#[test]` functions panic on failure too; that is the report.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use rein_engine::{Effect, Policy, Request};
use rein_runtime::{PlanReport, Planner, Replayed, Runtime, RuntimeConfig};
use rein_store::{AuditQuery, SqliteStore, Store};
use serde_json::json;
use std::sync::Arc;

const OLD: &str = r#"
default: allow
contracts:
  actor:
    id: string
  actions:
    pay:
      input:
        amount: {type: int, min: 0}
        card: {type: string, sensitive: true}
        customer:
          type: object
          fields:
            name: string
            ssn: {type: string, sensitive: true}
        items:
          type: list
          items:
            type: object
            fields:
              sku: string
              secret: {type: string, sensitive: true}
    note:
      input: {text: string}
rules:
  - id: big
    action: pay
    when: input.amount > 100
    effect: require_approval
    approval: {role: finance}
  - id: stolen_card
    action: pay
    when: input.card == "4111"
    effect: block
  - id: small_ok
    action: pay
    when: input.amount < 100
    effect: allow
  - id: shouting
    action: note
    when: input.text == "HI"
    effect: block
"#;

fn pay(amount: i64, card: &str, name: &str, sku: &str) -> Request {
    Request::new("pay")
        .input(json!({
            "amount": amount,
            "card": card,
            "customer": {"name": name, "ssn": "123-45-6789"},
            "items": [{"sku": sku, "secret": "s3"}],
        }))
        .actor(json!({"id": "bot"}))
}

fn traffic() -> Vec<Request> {
    let mut out = Vec::new();
    for (i, amount) in [5, 50, 150, 500, 2000].into_iter().enumerate() {
        for card in ["4111", "5555"] {
            out.push(pay(amount, card, if i % 2 == 0 { "ann" } else { "bob" }, "a"));
        }
    }
    out.push(
        Request::new("note")
            .input(json!({"text": "HI"}))
            .actor(json!({"id": "bot"})),
    );
    out.push(
        Request::new("note")
            .input(json!({"text": "hello"}))
            .actor(json!({"id": "bot"})),
    );
    out
}

/// Records `traffic()` under `OLD` in a fresh store; returns the store.
fn recorded() -> (tempfile::TempDir, Arc<SqliteStore>) {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(dir.path().join("rein.db")).unwrap());
    let config = RuntimeConfig {
        hmac_key: b"plan test key".to_vec(),
        ..RuntimeConfig::default()
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let runtime = Runtime::new(Policy::from_yaml_str(OLD).unwrap(), store.clone(), config);
    rt.block_on(async {
        for r in traffic() {
            let a = runtime.decide(r, None).await;
            assert!(a.audit_seq.is_some());
        }
    });
    (dir, store)
}

fn plan(store: &SqliteStore, new: &Policy, current: Option<&Policy>) -> PlanReport {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let records = rt
        .block_on(store.query_audit(&AuditQuery {
            after_seq: Some(0),
            ..AuditQuery::default()
        }))
        .unwrap();
    let mut planner = Planner::new(new, current);
    for r in &records {
        planner.push(r);
    }
    planner.finish()
}

/// What the plan must say when every record is replayed: the new policy's
/// decisions of the clear requests against the old one's.
fn expected(old: &Policy, new: &Policy) -> (u64, u64, u64) {
    let (mut changed, mut blocks, mut widened) = (0, 0, 0);
    let rank = |e: Effect| match e {
        Effect::Allow => 0,
        Effect::RequireApproval => 1,
        Effect::Block => 2,
    };
    for r in traffic() {
        let (a, b) = (old.decide(&r).effect(), new.decide(&r).effect());
        if a != b {
            changed += 1;
            blocks += u64::from(b == Effect::Block);
            widened += u64::from(rank(b) < rank(a));
        }
    }
    (changed, blocks, widened)
}

fn skipped(report: &PlanReport) -> Vec<(String, u64)> {
    report.skipped.iter().map(|s| (s.reason.clone(), s.count)).collect()
}

#[test]
fn a_changed_rule_that_reads_no_sensitive_field_replays_sensitive_records_exactly() {
    let (_dir, store) = recorded();
    let old = Policy::from_yaml_str(OLD).unwrap();
    // `big` now blocks above 1000 too, through a new rule; `big` itself
    // changes threshold. Neither reads a sensitive field; `stolen_card`
    // (unchanged) does, and keeps its recorded outcome.
    let new_text = OLD.replace("input.amount > 100\n", "input.amount > 400\n")
        + "  - id: huge\n    action: pay\n    when: input.amount > 1000 && input.customer.name == \"ann\"\n    effect: block\n";
    let new = Policy::from_yaml_str(&new_text).unwrap();
    let report = plan(&store, &new, Some(&old));
    assert_eq!(skipped(&report), vec![], "{report:#?}");
    assert_eq!(report.replayed, 12);
    assert_eq!(report.replayed_sensitive, 10);
    let (changed, blocks, widened) = expected(&old, &new);
    assert!(changed > 0 && blocks > 0 && widened > 0);
    assert_eq!(
        (report.changed, report.new_blocks, report.widened),
        (changed, blocks, widened),
        "{report:#?}"
    );
    let pay = report.actions.iter().find(|a| a.action == "pay").unwrap();
    assert!(pay.changes.iter().any(|c| c.by == ["huge"] && c.to == Effect::Block));
}

#[test]
fn a_changed_rule_that_reads_a_sensitive_field_skips_and_names_it() {
    let (_dir, store) = recorded();
    let old = Policy::from_yaml_str(OLD).unwrap();
    let cases = [
        // Read directly.
        (r#"input.card == "5555""#, "input.card"),
        // Nested.
        (r#"input.customer.ssn == "1""#, "input.customer.ssn"),
        // A whole object holding a sensitive field.
        (r#"input.customer == input.customer"#, "input.customer.ssn"),
        // A comprehension over items that hold one.
        (r#"input.items.exists(i, i.sku == "a")"#, "input.items[].secret"),
        // A dynamic index into them.
        (r#"input.items[input.amount % 1].sku == "a""#, "input.items[].secret"),
        // Presence.
        (r#"has(input.customer.ssn)"#, "input.customer.ssn"),
    ];
    for (when, field) in cases {
        let new_text = format!("{OLD}  - id: added\n    action: pay\n    when: '{when}'\n    effect: block\n");
        let new = Policy::from_yaml_str(&new_text).unwrap();
        let report = plan(&store, &new, Some(&old));
        assert_eq!(report.replayed_sensitive, 0, "{when}");
        assert_eq!(report.replayed, 2, "{when}: the notes still replay");
        assert_eq!(
            skipped(&report),
            vec![(
                format!("sensitive fields: rule `added` reads the sensitive field {field}"),
                10
            )],
            "{when}"
        );
    }
    // A changed rule (not only an added one) that reads one.
    let new = Policy::from_yaml_str(&OLD.replace(r#"input.card == "4111""#, r#"input.card == "4000""#)).unwrap();
    let report = plan(&store, &new, Some(&old));
    assert_eq!(
        skipped(&report),
        vec![(
            "sensitive fields: rule `stolen_card` reads the sensitive field input.card".to_string(),
            10
        )]
    );
    // A removed rule needs nothing: its outcome no longer counts.
    let new = Policy::from_yaml_str(&OLD.replace(
        "  - id: stolen_card\n    action: pay\n    when: input.card == \"4111\"\n    effect: block\n",
        "",
    ))
    .unwrap();
    let report = plan(&store, &new, Some(&old));
    assert_eq!(skipped(&report), vec![]);
    assert_eq!(report.changed, expected(&old, &new).0);
}

#[test]
fn without_the_recording_policy_or_with_a_changed_contract_sensitive_records_are_skipped() {
    let (_dir, store) = recorded();
    let old = Policy::from_yaml_str(OLD).unwrap();
    let new = Policy::from_yaml_str(&OLD.replace("input.amount > 100\n", "input.amount > 400\n")).unwrap();
    let report = plan(&store, &new, None);
    assert_eq!(report.replayed_sensitive, 0);
    assert_eq!(report.skipped[0].count, 10);
    assert!(report.skipped[0].reason.contains("no --current"), "{report:#?}");

    let widened = OLD.replace(
        "amount: {type: int, min: 0}",
        "amount: {type: int, min: 0, max: 1000000}",
    );
    let new = Policy::from_yaml_str(&widened).unwrap();
    let report = plan(&store, &new, Some(&old));
    assert_eq!(report.replayed_sensitive, 0);
    assert!(
        report.skipped[0].reason.contains("contract of `pay` changed"),
        "{report:#?}"
    );

    // Recorded under another version than --current: not read back.
    let other = Policy::from_yaml_str(&format!("version: other\n{OLD}")).unwrap();
    let report = plan(&store, &new, Some(&other));
    assert!(report.skipped.iter().all(|s| !s.reason.is_empty()));
    assert_eq!(report.replayed_sensitive, 0);
}

#[test]
fn the_same_policy_changes_nothing() {
    let (_dir, store) = recorded();
    let old = Policy::from_yaml_str(OLD).unwrap();
    let report = plan(&store, &old, Some(&old));
    assert_eq!(report.changed, 0);
    assert_eq!(report.replayed, 12);
    assert_eq!(report.replayed_sensitive, 10);
    assert_eq!(report.rules_only, 0, "{report:#?}");
}

#[test]
fn stateful_rules_replay_in_recorded_order_against_a_fresh_state() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(dir.path().join("rein.db")).unwrap());
    let old_text = "default: allow\ncontracts:\n  actions:\n    note:\n      input: {text: string}\n";
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let runtime = Runtime::new(
        Policy::from_yaml_str(old_text).unwrap(),
        store.clone(),
        RuntimeConfig::default(),
    );
    rt.block_on(async {
        for i in 0..5 {
            let r = Request::new("note")
                .input(json!({"text": format!("n{i}")}))
                .actor(json!({}));
            runtime.decide(r, None).await;
        }
    });
    let new = Policy::from_yaml_str(&format!(
        "{}rules:\n  - id: three_a_day\n    action: note\n    limit: {{count: 3, window: 24h}}\n    effect: allow\n",
        old_text.replace("default: allow", "default: block")
    ))
    .unwrap();
    drop(runtime);
    let report = plan(&store, &new, None);
    assert_eq!(report.replayed, 5);
    // The fourth and fifth go over the limit: the default blocks them.
    let changes = &report.actions[0].changes;
    assert_eq!(report.changed, 2, "{report:#?}");
    assert_eq!(changes.len(), 1, "{report:#?}");
    assert_eq!(
        (changes[0].by.as_slice(), changes[0].count),
        (["default".to_string()].as_slice(), 2)
    );
    assert!(
        report.limits.iter().any(|l| l.contains("from before it")),
        "{report:#?}"
    );
}

/// Every record a plan re-decides gets exactly the effect and rules the
/// new policy gives the clear request it was made from.
fn assert_replays_match_clear_requests(old: &str, requests: &[Request], new: &str) -> (usize, usize) {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(dir.path().join("rein.db")).unwrap());
    let config = RuntimeConfig {
        hmac_key: b"plan test key".to_vec(),
        ..RuntimeConfig::default()
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let runtime = Runtime::new(Policy::from_yaml_str(old).unwrap(), store.clone(), config);
    let times: Vec<_> = rt.block_on(async {
        let mut times = Vec::new();
        for r in requests {
            let a = runtime.decide(r.clone(), None).await;
            assert!(a.audit_seq.is_some());
        }
        let records = store
            .query_audit(&AuditQuery {
                after_seq: Some(0),
                ..AuditQuery::default()
            })
            .await
            .unwrap();
        for r in &records {
            times.push(r.entry.time.parse::<jiff::Timestamp>().ok());
        }
        times
    });
    drop(runtime);
    let records = rt
        .block_on(store.query_audit(&AuditQuery {
            after_seq: Some(0),
            ..AuditQuery::default()
        }))
        .unwrap();
    assert_eq!(records.len(), requests.len());
    let (old_policy, new_policy) = (Policy::from_yaml_str(old).unwrap(), Policy::from_yaml_str(new).unwrap());
    let mut planner = Planner::new(&new_policy, Some(&old_policy));
    let (mut replayed, mut skipped) = (0, 0);
    for ((record, request), time) in records.iter().zip(requests).zip(times) {
        let mut clear = request.clone();
        clear.time = time;
        let truth = new_policy.decide(&clear);
        match planner.push(record) {
            Replayed::Decided { effect, mut rules } => {
                replayed += 1;
                let mut expected: Vec<String> = truth.rules().into_iter().map(str::to_string).collect();
                expected.sort();
                rules.sort();
                assert_eq!((effect, rules), (truth.effect(), expected), "{new}\n{request:?}");
            }
            Replayed::Skipped(_) => skipped += 1,
            Replayed::Ignored => panic!("a before record ignored"),
        }
    }
    (replayed, skipped)
}

#[test]
fn replayed_sensitive_records_decide_as_their_clear_requests_under_many_changes() {
    let added = |rule: &str| format!("{OLD}{rule}");
    let variants: Vec<(String, bool)> = vec![
        // (new policy, whether every sensitive record must be replayed)
        (OLD.to_string(), true),
        (OLD.replace("input.amount > 100\n", "input.amount > 400\n"), true),
        (OLD.replace("effect: require_approval\n    approval: {role: finance}", "effect: block"), true),
        (OLD.replace("default: allow", "default: block"), true),
        (OLD.replace(r#"input.text == "HI""#, r#"input.text == "hello""#), true),
        (OLD.replace("  - id: stolen_card\n    action: pay\n    when: input.card == \"4111\"\n    effect: block\n", ""), true),
        (added("  - id: ann\n    action: pay\n    when: input.customer.name == \"ann\"\n    effect: block\n"), true),
        (added("  - id: everyone\n    action: \"*\"\n    when: actor.id == \"bot\"\n    effect: require_approval\n    approval: {role: x}\n"), true),
        (added("  - id: late\n    action: pay\n    when: now > timestamp(\"2000-01-01T00:00:00Z\")\n    effect: block\n"), true),
        (added("  - id: first_sku\n    action: pay\n    when: size(input.items) > 0\n    effect: block\n"), false),
        (added("  - id: card\n    action: pay\n    when: input.card.startsWith(\"5\")\n    effect: block\n"), false),
        (OLD.replace(r#"input.card == "4111""#, r#"input.card == "5555""#), false),
        (OLD.replace("    note:\n      input: {text: string}", "    note:\n      input: {text: {type: string, max_len: 5}}"), true),
    ];
    for (new, all) in variants {
        let (replayed, skipped) = assert_replays_match_clear_requests(OLD, &traffic(), &new);
        assert_eq!(replayed + skipped, traffic().len());
        if all {
            assert_eq!(skipped, 0, "{new}");
        } else {
            assert_eq!(skipped, 10, "{new}");
        }
    }
}

const FAILING: &str = r#"
default: allow
contracts:
  actions:
    pay:
      input:
        amount: int
        parts: int
        card: {type: string, sensitive: true}
rules:
  - id: per_part
    action: pay
    when: input.amount / input.parts > 10
    effect: block
  - id: big
    action: pay
    when: input.amount > 100
    effect: require_approval
    approval: {role: finance}
"#;

#[test]
fn a_recorded_failure_is_not_read_as_a_rule_that_did_not_match() {
    let pay =
        |amount: i64, parts: i64| Request::new("pay").input(json!({"amount": amount, "parts": parts, "card": "4111"}));
    let requests = vec![pay(50, 0), pay(50, 10), pay(500, 0), pay(500, 100)];
    // `big` changes; `per_part` failed on the records with no parts (a
    // block): it fails again under the new policy, which the record does
    // not let the plan know from its matches alone.
    let new = FAILING.replace("input.amount > 100\n", "input.amount > 1000\n");
    let (replayed, skipped) = assert_replays_match_clear_requests(FAILING, &requests, &new);
    assert_eq!((replayed, skipped), (2, 2));
}

#[test]
fn records_of_a_version_not_known_are_skipped_until_its_policy_is_added() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(dir.path().join("rein.db")).unwrap());
    let config = RuntimeConfig {
        hmac_key: b"plan test key".to_vec(),
        ..RuntimeConfig::default()
    };
    let old = Policy::from_yaml_str(OLD).unwrap();
    let reloaded = Policy::from_yaml_str(&OLD.replace(r#"input.card == "4111""#, r#"input.card == "5555""#)).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let runtime = Runtime::new(old.clone(), store.clone(), config);
    rt.block_on(async {
        for r in traffic() {
            runtime.decide(r, None).await;
        }
        runtime.set_policy(reloaded.clone());
        for r in traffic() {
            runtime.decide(r, None).await;
        }
    });
    drop(runtime);
    let records = rt
        .block_on(store.query_audit(&AuditQuery {
            after_seq: Some(0),
            ..AuditQuery::default()
        }))
        .unwrap();
    let new = Policy::from_yaml_str(&OLD.replace("input.amount > 100\n", "input.amount > 400\n")).unwrap();

    let mut planner = Planner::new(&new, Some(&old));
    for r in &records {
        planner.push(r);
    }
    let report = planner.finish();
    assert_eq!(report.replayed_sensitive, 10);
    assert_eq!(report.skipped.len(), 1, "{report:#?}");
    assert!(report.skipped[0].reason.contains("which is not known"), "{report:#?}");
    assert_eq!(report.skipped[0].count, 10);

    // Both versions known: `stolen_card` differs between the reloaded
    // policy and the new one, and reads the card: those records stay
    // skipped, now for that reason; the first ten replay.
    let mut planner = Planner::new(&new, Some(&old));
    planner.add_recording_policy(reloaded.clone());
    assert!(planner.knows_version(reloaded.version()));
    for r in &records {
        planner.push(r);
    }
    let report = planner.finish();
    assert_eq!(report.replayed_sensitive, 10);
    assert_eq!(
        report
            .skipped
            .iter()
            .map(|s| (s.reason.as_str(), s.count))
            .collect::<Vec<_>>(),
        [(
            "sensitive fields: rule `stolen_card` reads the sensitive field input.card",
            10
        )]
    );

    // Rolled out as the reloaded one with the new threshold: every record
    // of the reloaded version replays, and those of the first version skip.
    let new = Policy::from_yaml_str(
        &OLD.replace(r#"input.card == "4111""#, r#"input.card == "5555""#)
            .replace("input.amount > 100\n", "input.amount > 400\n"),
    )
    .unwrap();
    let mut planner = Planner::new(&new, None);
    planner.add_recording_policy(old);
    planner.add_recording_policy(reloaded);
    for r in &records {
        planner.push(r);
    }
    let report = planner.finish();
    assert_eq!(report.replayed_sensitive, 10);
    assert_eq!(report.skipped[0].count, 10);
    assert!(report.skipped[0].reason.contains("stolen_card"), "{report:#?}");
}
