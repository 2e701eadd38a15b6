//! The enforcement pipeline against a real SQLite store.

// Helpers outside `#[test]` functions panic on failure too; that is the report.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use rein_engine::{Effect, Policy, Request};
use rein_runtime::{Approver, Runtime, RuntimeConfig, RuntimeError};
use rein_store::{
    ApprovalError, ApprovalRecord, ApprovalState, AuditEntry, AuditQuery, AuditRecord, SqliteStore, Store, StoreError,
    Verification,
};
use serde_json::json;
use std::sync::Arc;

const POLICY: &str = r#"
default: allow
contracts:
  actor: {id: string}
  actions:
    pay:
      input:
        amount: {type: int, min: 0}
        card: {type: string, sensitive: true}
      output:
        receipt: string
    note:
      input: {text: string}
      output: {ok: bool}
    fetch:
      input: {url: string}
      output:
        token: {type: string, sensitive: true}
rules:
  - id: big
    action: pay
    when: input.amount > 100
    effect: require_approval
    approval: {role: finance, ttl: 10m}
  - id: huge
    action: pay
    when: input.amount > 10000
    effect: block
  - id: bad_receipt
    action: pay
    phase: after
    when: output.receipt == ""
    effect: block
  - id: not_ok
    action: note
    phase: after
    when: '!output.ok'
    effect: block
  - id: card_in_error
    action: pay
    phase: after
    when: error.contains("card")
    effect: block
    reason: the error text mentions the card
"#;

fn runtime(dir: &tempfile::TempDir) -> (Arc<Runtime>, Arc<SqliteStore>) {
    let store = Arc::new(SqliteStore::open(dir.path().join("rein.db")).unwrap());
    let config = RuntimeConfig {
        hmac_key: b"test key".to_vec(),
        ..RuntimeConfig::default()
    };
    let rt = Runtime::new(Policy::from_yaml_str(POLICY).unwrap(), store.clone(), config);
    (Arc::new(rt), store)
}

fn anyone(name: &str) -> Approver<'_> {
    Approver { name, roles: None }
}

fn pay(amount: i64, actor: &str) -> Request {
    Request::new("pay")
        .input(json!({"amount": amount, "card": "4111111111111111"}))
        .actor(json!({"id": actor}))
}

#[tokio::test]
async fn every_decision_is_recorded_before_the_answer_with_sensitive_fields_hashed() {
    let dir = tempfile::tempdir().unwrap();
    let (rt, store) = runtime(&dir);
    let a = rt.decide(pay(5, "bot"), None).await;
    assert_eq!(a.effect, Effect::Allow);
    let seq = a.audit_seq.expect("recorded");
    let records = store
        .query_audit(&AuditQuery {
            decision_id: Some(a.decision_id.clone()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].seq, seq);
    let card = records[0].entry.input["card"].as_str().unwrap();
    assert!(card.starts_with("hmac-sha256:"), "{card}");
    assert!(!serde_json::to_string(&records[0]).unwrap().contains("4111111111111111"));
    // The same value hashes the same way, so it can still be searched for.
    let b = rt.decide(pay(6, "bot"), None).await;
    let rb = store
        .query_audit(&AuditQuery {
            decision_id: Some(b.decision_id),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(rb[0].entry.input["card"], records[0].entry.input["card"]);
    assert_eq!(store.verify_audit().await.unwrap(), Verification::Intact { records: 2 });
}

/// What cannot be tied to an action of the policy (a misspelt action, an
/// outcome whose decision is not found) is recorded with every path that
/// any action marks sensitive hashed.
#[tokio::test]
async fn unknown_actions_and_unmatched_outcomes_keep_no_secret_in_clear() {
    let dir = tempfile::tempdir().unwrap();
    let (rt, store) = runtime(&dir);
    let misspelt = rt
        .decide(
            Request::new("Pay")
                .input(json!({"amount": 5, "card": "4111111111111111"}))
                .actor(json!({"id": "bot"})),
            None,
        )
        .await;
    assert_eq!(misspelt.effect, Effect::Block);
    let unmatched = rt
        .outcome("nope", Some(json!({"ok": true, "token": "s3cret"})), None)
        .await;
    assert_eq!(unmatched.effect, Effect::Block);
    let records = store.query_audit(&AuditQuery::default()).await.unwrap();
    assert_eq!(records.len(), 2);
    let text = serde_json::to_string(&records).unwrap();
    assert!(!text.contains("4111111111111111"), "{text}");
    assert!(!text.contains("s3cret"), "{text}");
    let card = records[0].entry.input["card"].as_str().unwrap();
    assert!(card.starts_with("hmac-sha256:"), "{card}");
    let token = records[1].entry.output.as_ref().unwrap()["token"].as_str().unwrap();
    assert!(token.starts_with("hmac-sha256:"), "{token}");
    // What no action marks sensitive stays readable.
    assert_eq!(records[0].entry.input["amount"], json!(5));
}

/// A reason that quotes a sensitive value (an evaluation error here) is
/// recorded with the value taken out; the caller's answer keeps it.
#[tokio::test]
async fn recorded_reasons_do_not_quote_sensitive_values() {
    let policy = r#"
default: allow
contracts:
  actions:
    pay:
      input:
        card: {type: string, sensitive: true}
rules:
  - id: odd_card
    action: pay
    when: int(input.card) > 5
    effect: block
"#;
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(dir.path().join("rein.db")).unwrap());
    let rt = Runtime::new(
        Policy::from_yaml_str(policy).unwrap(),
        store.clone(),
        RuntimeConfig::default(),
    );
    let a = rt
        .decide(Request::new("pay").input(json!({"card": "4111-1111-SECRET"})), None)
        .await;
    assert_eq!(a.effect, Effect::Block);
    assert!(
        a.reasons.iter().any(|r| r.contains("4111-1111-SECRET")),
        "{:?}",
        a.reasons
    );
    let recorded = store.query_audit(&AuditQuery::default()).await.unwrap();
    let text = serde_json::to_string(&recorded).unwrap();
    assert!(!text.contains("4111-1111-SECRET"), "{text}");
    assert!(
        recorded[0].entry.reasons.iter().any(|r| r.contains("<sensitive>")),
        "{:?}",
        recorded[0].entry.reasons
    );
}

/// Two rules ask for approval with different roles: the approver must hold
/// both, whichever rule comes first. The client that sent the request may
/// not approve it, whatever actor the request names.
#[tokio::test]
async fn an_approval_needs_every_role_its_rules_name_and_not_its_sender() {
    let policy = r#"
default: allow
contracts:
  actions:
    pay:
      input: {amount: int}
rules:
  - id: over_10
    action: pay
    when: input.amount > 10
    effect: require_approval
    approval: {role: support}
  - id: over_1000
    action: pay
    when: input.amount > 1000
    effect: require_approval
    approval: {role: finance}
"#;
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(dir.path().join("rein.db")).unwrap());
    let rt = Runtime::new(Policy::from_yaml_str(policy).unwrap(), store, RuntimeConfig::default());
    let request = || {
        Request::new("pay")
            .input(json!({"amount": 5000}))
            .actor(json!({"id": "someone-else"}))
    };
    let a = rt.decide_from(request(), None, Some("bot-token")).await;
    let pending = a.approval.expect("an approval is opened");
    assert_eq!(pending.roles, ["finance", "support"]);
    assert_eq!(pending.role, "finance, support");
    let (support, finance, both) = (
        ["support".to_string()],
        ["finance".to_string()],
        ["support".to_string(), "finance".to_string()],
    );
    for (name, roles, missing) in [("sam", &support[..], "finance"), ("fin", &finance[..], "support")] {
        let refused = rt
            .grant(
                &pending.id,
                Approver {
                    name,
                    roles: Some(roles),
                },
                None,
            )
            .await
            .unwrap_err();
        assert!(
            matches!(&refused, RuntimeError::NotAllowed { role, .. } if role == missing),
            "{refused}"
        );
    }
    let sender = rt
        .grant(
            &pending.id,
            Approver {
                name: "bot-token",
                roles: None,
            },
            None,
        )
        .await
        .unwrap_err();
    assert!(sender.to_string().contains("cannot approve"), "{sender}");
    let granted = rt
        .grant(
            &pending.id,
            Approver {
                name: "boss",
                roles: Some(&both),
            },
            None,
        )
        .await
        .unwrap();
    assert_eq!(granted.requested_via.as_deref(), Some("bot-token"));
    let allowed = rt.decide(request(), Some(pending.id)).await;
    assert_eq!(allowed.effect, Effect::Allow, "{:?}", allowed.reasons);
}

/// Listing pending approvals leaves out those that expired: they can no
/// longer be granted.
#[tokio::test]
async fn expired_approvals_are_not_listed_as_pending() {
    let policy = "default: allow\ncontracts:\n  actions:\n    pay:\n      input: {amount: int}\nrules:\n  - id: any\n    action: pay\n    when: 'true'\n    effect: require_approval\n";
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(dir.path().join("rein.db")).unwrap());
    let config = RuntimeConfig {
        default_approval_ttl: jiff::SignedDuration::from_millis(300),
        ..RuntimeConfig::default()
    };
    let rt = Runtime::new(Policy::from_yaml_str(policy).unwrap(), store, config);
    let a = rt.decide(Request::new("pay").input(json!({"amount": 1})), None).await;
    assert_eq!(a.effect, Effect::RequireApproval);
    assert_eq!(rt.approvals(Some(ApprovalState::Pending), 10).await.unwrap().len(), 1);
    std::thread::sleep(std::time::Duration::from_millis(400));
    assert!(rt.approvals(Some(ApprovalState::Pending), 10).await.unwrap().is_empty());
    let all = rt.approvals(None, 10).await.unwrap();
    assert_eq!((all.len(), all[0].state), (1, ApprovalState::Pending));
}

#[tokio::test]
async fn approval_flow_allows_the_identical_request_once() {
    let dir = tempfile::tempdir().unwrap();
    let (rt, _) = runtime(&dir);
    let a = rt.decide(pay(500, "bot"), None).await;
    assert_eq!(a.effect, Effect::RequireApproval);
    let pending = a.approval.expect("an approval is opened");
    assert_eq!(pending.role, "finance");

    // Not granted yet: the re-sent request is blocked, not allowed.
    let early = rt.decide(pay(500, "bot"), Some(pending.id.clone())).await;
    assert_eq!(early.effect, Effect::Block);
    assert!(early.reasons[0].contains("approval"), "{:?}", early.reasons);

    // The requester cannot approve their own request.
    let own = rt.grant(&pending.id, anyone("bot"), None).await.unwrap_err();
    assert!(own.to_string().contains("cannot approve"), "{own}");

    // The rule names `finance` as the approving role.
    let support = ["support".to_string()];
    let wrong_role = rt
        .grant(
            &pending.id,
            Approver {
                name: "sam",
                roles: Some(&support),
            },
            None,
        )
        .await
        .unwrap_err();
    assert!(matches!(wrong_role, RuntimeError::NotAllowed { .. }), "{wrong_role}");
    let finance = ["finance".to_string()];
    let granted = rt
        .grant(
            &pending.id,
            Approver {
                name: "carol",
                roles: Some(&finance),
            },
            Some("ok"),
        )
        .await
        .unwrap();
    assert_eq!(granted.state, ApprovalState::Granted);

    // A different request cannot use it.
    let other = rt.decide(pay(501, "bot"), Some(pending.id.clone())).await;
    assert_eq!(other.effect, Effect::Block);

    let ok = rt.decide(pay(500, "bot"), Some(pending.id.clone())).await;
    assert_eq!(ok.effect, Effect::Allow, "{:?}", ok.reasons);
    assert!(ok.reasons.iter().any(|r| r.contains("approved by `carol`")));

    let again = rt.decide(pay(500, "bot"), Some(pending.id.clone())).await;
    assert_eq!(again.effect, Effect::Block, "an approval is used once");

    // An approval never lifts a block.
    let blocked = rt.decide(pay(20_000, "bot"), None).await;
    assert_eq!(blocked.effect, Effect::Block);
    assert!(blocked.approval.is_none());
}

/// Fields marked `per_call` (one attempt's id) are left out of what an
/// approval covers; every other field still has to be identical, including
/// a snapshot field of the same name that is not marked.
#[tokio::test]
async fn per_call_fields_are_left_out_of_what_an_approval_covers() {
    let policy = |marked: bool| {
        format!(
            r#"
default: allow
contracts:
  actor: {{id: string}}
  snapshot:
    call_id: {{type: string, per_call: {marked}}}
    region: string
  actions:
    pay:
      input: {{amount: int, request_id: {{type: string, per_call: true}}}}
rules:
  - id: big
    action: pay
    when: input.amount > 100
    effect: require_approval
"#
        )
    };
    let request = |call: &str, request_id: &str, region: &str| {
        Request::new("pay")
            .input(json!({"amount": 500, "request_id": request_id}))
            .actor(json!({"id": "bot"}))
            .snapshot(json!({"call_id": call, "region": region}))
    };
    for marked in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(SqliteStore::open(dir.path().join("rein.db")).unwrap());
        let config = RuntimeConfig {
            hmac_key: b"test key".to_vec(),
            ..RuntimeConfig::default()
        };
        let rt = Runtime::new(Policy::from_yaml_str(&policy(marked)).unwrap(), store, config);
        let asked = rt.decide(request("c1", "r1", "eu"), None).await;
        let id = asked.approval.expect("an approval is opened").id;
        rt.grant(&id, anyone("carol"), None).await.unwrap();
        // Another region is another request, marked or not.
        let other = rt.decide(request("c2", "r2", "us"), Some(id.clone())).await;
        assert_eq!(other.effect, Effect::Block, "marked: {marked}");
        let retry = rt.decide(request("c2", "r2", "eu"), Some(id.clone())).await;
        let want = if marked { Effect::Allow } else { Effect::Block };
        assert_eq!(retry.effect, want, "marked: {marked}: {:?}", retry.reasons);
    }
}

#[tokio::test]
async fn concurrent_uses_of_one_approval_allow_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let (rt, _) = runtime(&dir);
    let id = rt.decide(pay(500, "bot"), None).await.approval.unwrap().id;
    rt.grant(&id, anyone("carol"), None).await.unwrap();
    let tasks: Vec<_> = (0..24)
        .map(|_| {
            let rt = rt.clone();
            let id = id.clone();
            tokio::spawn(async move { rt.decide(pay(500, "bot"), Some(id)).await.effect })
        })
        .collect();
    let mut allowed = 0;
    for t in tasks {
        if t.await.unwrap() == Effect::Allow {
            allowed += 1;
        }
    }
    assert_eq!(allowed, 1);
}

#[tokio::test]
async fn outcomes_run_after_rules_and_refuse_unallowed_actions() {
    let dir = tempfile::tempdir().unwrap();
    let (rt, store) = runtime(&dir);
    let a = rt.decide(pay(5, "bot"), None).await;
    let bad = rt.outcome(&a.decision_id, Some(json!({"receipt": ""})), None).await;
    assert_eq!(
        (bad.effect, bad.rules.clone()),
        (Effect::Block, vec!["bad_receipt".to_string()])
    );
    let good = rt.outcome(&a.decision_id, Some(json!({"receipt": "r-1"})), None).await;
    assert_eq!(good.effect, Effect::Allow);
    let wrong_type = rt.outcome(&a.decision_id, Some(json!({"receipt": 5})), None).await;
    assert_eq!(wrong_type.violation.unwrap().path, "output.receipt");
    // An error goes through the after rules as `error`; `bad_receipt`
    // reads the output, which a failed action has not, so it does not
    // apply; with no rule matching, the after default (allow) decides.
    let failed = rt.outcome(&a.decision_id, None, Some("card declined".into())).await;
    assert_eq!(
        (failed.effect, failed.rules.clone()),
        (Effect::Block, vec!["card_in_error".to_string()])
    );
    assert!(
        failed.reasons.iter().all(|r| !r.contains("declined")),
        "the error text is not echoed in the reasons: {:?}",
        failed.reasons
    );
    let timeout = rt.outcome(&a.decision_id, None, Some("timeout".into())).await;
    assert_eq!((timeout.effect, timeout.rules.len()), (Effect::Allow, 0));

    let pending = rt.decide(pay(500, "bot"), None).await;
    let sneaky = rt
        .outcome(&pending.decision_id, Some(json!({"receipt": "r"})), None)
        .await;
    assert_eq!(sneaky.effect, Effect::Block);
    assert!(sneaky.reasons[0].contains("was not allowed"), "{:?}", sneaky.reasons);

    let unknown = rt.outcome("nope", Some(json!({"receipt": "r"})), None).await;
    assert_eq!(unknown.effect, Effect::Block);
    assert!(
        unknown.reasons[0].contains("no decision `nope`"),
        "{:?}",
        unknown.reasons
    );

    // Every outcome was recorded too, under the decision's id.
    let recs = store
        .query_audit(&AuditQuery {
            decision_id: Some(a.decision_id.clone()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(recs.iter().filter(|r| r.entry.phase == "after").count(), 5);
}

#[tokio::test]
async fn outcomes_after_a_restart_come_from_the_audit_log() {
    let dir = tempfile::tempdir().unwrap();
    let id = {
        let (rt, _) = runtime(&dir);
        rt.decide(
            Request::new("note")
                .input(json!({"text": "hi"}))
                .actor(json!({"id": "bot"})),
            None,
        )
        .await
        .decision_id
    };
    let (rt, _) = runtime(&dir);
    let a = rt.outcome(&id, Some(json!({"ok": false})), None).await;
    assert_eq!((a.effect, a.rules), (Effect::Block, vec!["not_ok".to_string()]));
    // A request with sensitive fields cannot be rebuilt from hashes.
    let (rt2, _) = runtime(&dir);
    let paid = rt2.decide(pay(5, "bot"), None).await.decision_id;
    let (rt3, _) = runtime(&dir);
    let b = rt3.outcome(&paid, Some(json!({"receipt": "r"})), None).await;
    assert_eq!(b.effect, Effect::Block);
    assert!(b.reasons[0].contains("sensitive fields"), "{:?}", b.reasons);
}

#[tokio::test]
async fn replay_reports_what_a_new_policy_would_change() {
    let dir = tempfile::tempdir().unwrap();
    let (rt, store) = runtime(&dir);
    for text in ["hello", "drop table", "hi"] {
        rt.decide(
            Request::new("note")
                .input(json!({"text": text}))
                .actor(json!({"id": "bot"})),
            None,
        )
        .await;
    }
    let stricter = Policy::from_yaml_str(&POLICY.replace(
        "rules:\n",
        "rules:\n  - id: no_drop\n    action: note\n    when: input.text.contains(\"drop\")\n    effect: block\n",
    ))
    .unwrap();
    let report = rein_runtime::replay(store.as_ref(), &stricter).await.unwrap();
    assert_eq!(report.replayed, 3);
    assert_eq!(report.changes.len(), 1);
    assert_eq!(report.changes[0].new_effect, Effect::Block);
    assert_eq!(report.rule_deltas.get("no_drop"), Some(&(1, 0)));
    assert_eq!(report.effect_changes.get("allow -> block"), Some(&1));
    let same = rein_runtime::replay(store.as_ref(), &Policy::from_yaml_str(POLICY).unwrap())
        .await
        .unwrap();
    assert!(same.changes.is_empty());
}

/// A store whose disk is gone: every write fails. Stands in for a failing
/// disk, which a test cannot produce reliably.
struct BrokenStore;

#[async_trait::async_trait]
impl Store for BrokenStore {
    async fn append(&self, _: AuditEntry) -> Result<AuditRecord, StoreError> {
        Err(StoreError("disk I/O error".into()))
    }
    async fn query_audit(&self, _: &AuditQuery) -> Result<Vec<AuditRecord>, StoreError> {
        Err(StoreError("disk I/O error".into()))
    }
    async fn verify_audit(&self) -> Result<Verification, StoreError> {
        Err(StoreError("disk I/O error".into()))
    }
    async fn audit_len(&self) -> Result<u64, StoreError> {
        Err(StoreError("disk I/O error".into()))
    }
    async fn create_approval(&self, _: ApprovalRecord) -> Result<(), StoreError> {
        Err(StoreError("disk I/O error".into()))
    }
    async fn get_approval(&self, _: &str) -> Result<Option<ApprovalRecord>, StoreError> {
        Err(StoreError("disk I/O error".into()))
    }
    async fn list_approvals(&self, _: Option<ApprovalState>, _: u64) -> Result<Vec<ApprovalRecord>, StoreError> {
        Err(StoreError("disk I/O error".into()))
    }
    async fn decide_approval(
        &self,
        _: &str,
        _: bool,
        _: &str,
        _: Option<&str>,
        _: &str,
    ) -> Result<Result<ApprovalRecord, ApprovalError>, StoreError> {
        Err(StoreError("disk I/O error".into()))
    }
    async fn use_approval(
        &self,
        _: &str,
        _: &str,
        _: &str,
    ) -> Result<Result<ApprovalRecord, ApprovalError>, StoreError> {
        Err(StoreError("disk I/O error".into()))
    }
}

#[tokio::test]
async fn a_failing_store_turns_every_answer_into_block() {
    let rt = Runtime::new(
        Policy::from_yaml_str(POLICY).unwrap(),
        Arc::new(BrokenStore),
        RuntimeConfig::default(),
    );
    let a = rt.decide(pay(5, "bot"), None).await;
    assert_eq!(a.effect, Effect::Block);
    assert!(a.audit_seq.is_none());
    assert!(a.reasons[0].contains("could not be recorded"), "{:?}", a.reasons);
    let b = rt.decide(pay(500, "bot"), None).await;
    assert_eq!(b.effect, Effect::Block);
    assert!(b.approval.is_none());
    let c = rt.decide(pay(500, "bot"), Some("x".into())).await;
    assert_eq!(c.effect, Effect::Block);
}
