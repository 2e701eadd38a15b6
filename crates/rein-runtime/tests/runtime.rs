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
    Approver {
        name,
        roles: None,
        credential: None,
    }
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
/// outcome whose decision is not found) fits no contract: each of its
/// roots under which any action marks a path sensitive is hashed whole.
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
    let input = records[0].entry.input.as_str().unwrap();
    assert!(input.starts_with("hmac-sha256:"), "{input}");
    let output = records[1].entry.output.as_ref().unwrap().as_str().unwrap();
    assert!(output.starts_with("hmac-sha256:"), "{output}");
    // A root under which no path is sensitive stays readable.
    assert_eq!(records[0].entry.actor, json!({"id": "bot"}));
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
                    credential: None,
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
                credential: None,
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
                credential: None,
            },
            None,
        )
        .await
        .unwrap();
    assert_eq!(granted.requested_via.as_deref(), Some("bot-token"));
    // Only the client that asked may use it: not another, nor a caller
    // with no client.
    for other in [Some("other-token"), None] {
        let refused = rt.decide_from(request(), Some(pending.id.clone()), other).await;
        assert_eq!(refused.effect, Effect::Block, "{other:?}");
        assert!(refused.reasons[0].contains("another client"), "{:?}", refused.reasons);
    }
    let allowed = rt.decide_from(request(), Some(pending.id), Some("bot-token")).await;
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
        pending_approval_wait: jiff::SignedDuration::from_millis(300),
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
                credential: None,
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
                credential: None,
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
    // An outcome is reported once per decision: one decision for each.
    let decided = || async { rt.decide(pay(5, "bot"), None).await.decision_id };
    let bad = rt.outcome(&decided().await, Some(json!({"receipt": ""})), None).await;
    assert_eq!(
        (bad.effect, bad.rules.clone()),
        (Effect::Block, vec!["bad_receipt".to_string()])
    );
    let a = decided().await;
    let good = rt.outcome(&a, Some(json!({"receipt": "r-1"})), None).await;
    assert_eq!(good.effect, Effect::Allow);
    let again = rt.outcome(&a, Some(json!({"receipt": "r-1"})), None).await;
    assert_eq!(again.effect, Effect::Block);
    assert!(again.reasons[0].contains("already reported"), "{:?}", again.reasons);
    assert_eq!(again.audit_seq, None, "a second report is not recorded");
    let wrong_type = rt.outcome(&decided().await, Some(json!({"receipt": 5})), None).await;
    assert_eq!(wrong_type.violation.unwrap().path, "output.receipt");
    // An error goes through the after rules as `error`; `bad_receipt`
    // reads the output, which a failed action has not, so it does not
    // apply; with no rule matching, the after default (allow) decides.
    let failed = rt.outcome(&decided().await, None, Some("card declined".into())).await;
    assert_eq!(
        (failed.effect, failed.rules.clone()),
        (Effect::Block, vec!["card_in_error".to_string()])
    );
    assert!(
        failed.reasons.iter().all(|r| !r.contains("declined")),
        "the error text is not echoed in the reasons: {:?}",
        failed.reasons
    );
    let timeout = rt.outcome(&decided().await, None, Some("timeout".into())).await;
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

    // The outcome was recorded once, under the decision's id.
    let recs = store
        .query_audit(&AuditQuery {
            decision_id: Some(a.clone()),
            ..Default::default()
        })
        .await
        .unwrap();
    let phases: Vec<&str> = recs.iter().map(|r| r.entry.phase.as_str()).collect();
    assert_eq!(phases, ["before", "after"]);
}

/// Only the client that asked for a decision may report its outcome, from
/// memory or (after a restart) from the log, and the record names the
/// sender.
#[tokio::test]
async fn outcomes_are_bound_to_the_client_that_asked() {
    let dir = tempfile::tempdir().unwrap();
    let (rt, store) = runtime(&dir);
    let note = || {
        Request::new("note")
            .input(json!({"text": "hi"}))
            .actor(json!({"id": "bot"}))
    };
    let a = rt.decide_from(note(), None, Some("agent-1")).await.decision_id;
    for other in [Some("agent-2"), None] {
        let refused = rt.outcome_from(&a, Some(json!({"ok": true})), None, other).await;
        assert!(
            matches!(refused, Err(rein_runtime::OutcomeRefused::OtherClient { .. })),
            "{other:?}: {refused:?}"
        );
    }
    // From the log, after a restart.
    let b = rt.decide_from(note(), None, Some("agent-1")).await.decision_id;
    let (rt2, _) = runtime(&dir);
    assert!(rt2
        .outcome_from(&b, Some(json!({"ok": true})), None, Some("agent-2"))
        .await
        .is_err());
    let ok = rt2
        .outcome_from(&b, Some(json!({"ok": true})), None, Some("agent-1"))
        .await
        .unwrap();
    assert_eq!(ok.effect, Effect::Allow);
    let ok = rt
        .outcome_from(&a, Some(json!({"ok": true})), None, Some("agent-1"))
        .await
        .unwrap();
    assert_eq!(ok.effect, Effect::Allow);
    let recs = store.query_audit(&AuditQuery::default()).await.unwrap();
    let clients: Vec<(&str, Option<&str>)> = recs
        .iter()
        .map(|r| (r.entry.phase.as_str(), r.entry.client.as_deref()))
        .collect();
    assert_eq!(
        clients,
        [
            ("before", Some("agent-1")),
            ("before", Some("agent-1")),
            ("after", Some("agent-1")),
            ("after", Some("agent-1"))
        ]
    );
    assert_eq!(store.verify_audit().await.unwrap(), Verification::Intact { records: 4 });
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

/// How many write probes a [`BrokenStore`] was asked for.
static BROKEN_PROBES: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

#[async_trait::async_trait]
impl Store for BrokenStore {
    async fn append_once(&self, _: AuditEntry) -> Result<Option<AuditRecord>, StoreError> {
        Err(StoreError("disk I/O error".into()))
    }
    async fn bind_key_fingerprint(&self, _: &str) -> Result<String, StoreError> {
        Err(StoreError("disk I/O error".into()))
    }
    async fn key_fingerprint(&self) -> Result<Option<String>, StoreError> {
        Err(StoreError("disk I/O error".into()))
    }
    async fn probe_write(&self) -> Result<(), StoreError> {
        BROKEN_PROBES.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Err(StoreError("disk I/O error".into()))
    }
    async fn find_open_approval(
        &self,
        _: &str,
        _: Option<&str>,
        _: &str,
    ) -> Result<Option<ApprovalRecord>, StoreError> {
        Err(StoreError("disk I/O error".into()))
    }
    async fn list_client_approvals(
        &self,
        _: &str,
        _: Option<ApprovalState>,
        _: u64,
    ) -> Result<Vec<ApprovalRecord>, StoreError> {
        Err(StoreError("disk I/O error".into()))
    }
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

/// While appends fail, asking for health probes the store with a write,
/// at most once a second however often it is asked (`/healthz` needs no
/// token), and the failure stays until a probe succeeds.
#[tokio::test]
async fn health_probes_the_store_at_most_once_a_second() {
    use std::sync::atomic::Ordering::SeqCst;
    let rt = Runtime::new(
        Policy::from_yaml_str(POLICY).unwrap(),
        Arc::new(BrokenStore),
        RuntimeConfig::default(),
    );
    assert!(rt.audit_health_probed().await.is_ok(), "healthy until an append fails");
    let before = BROKEN_PROBES.load(SeqCst);
    assert_eq!(rt.decide(pay(5, "bot"), None).await.effect, Effect::Block);
    for _ in 0..50 {
        let why = rt.audit_health_probed().await.unwrap_err();
        assert!(why.contains("disk I/O error"), "{why}");
    }
    assert_eq!(BROKEN_PROBES.load(SeqCst) - before, 1);
    std::thread::sleep(std::time::Duration::from_millis(1100));
    assert!(rt.audit_health_probed().await.is_err());
    assert_eq!(BROKEN_PROBES.load(SeqCst) - before, 2);
}

/// The same request asking again reuses its pending approval; another
/// client's, or a different request, opens its own.
#[tokio::test]
async fn an_identical_request_reuses_its_pending_approval() {
    let dir = tempfile::tempdir().unwrap();
    let (rt, store) = runtime(&dir);
    let first = rt
        .decide_from(pay(500, "bot"), None, Some("agent-1"))
        .await
        .approval
        .unwrap();
    assert!(!first.reused);
    for _ in 0..2 {
        let again = rt
            .decide_from(pay(500, "bot"), None, Some("agent-1"))
            .await
            .approval
            .unwrap();
        assert_eq!((again.id.as_str(), again.reused), (first.id.as_str(), true));
    }
    let other_client = rt
        .decide_from(pay(500, "bot"), None, Some("agent-2"))
        .await
        .approval
        .unwrap();
    let other_request = rt
        .decide_from(pay(501, "bot"), None, Some("agent-1"))
        .await
        .approval
        .unwrap();
    assert_ne!(other_client.id, first.id);
    assert_ne!(other_request.id, first.id);
    assert_eq!(store.list_approvals(None, 10).await.unwrap().len(), 3);
    // A caller that finds approvals by request (a hook) finds its own
    // client's only: another's it could not use.
    let request = pay(500, "bot");
    let found = |client| rt.approval_for(&request, client);
    assert_eq!(found(Some("agent-1")).await.unwrap().unwrap().id, first.id);
    assert_eq!(found(Some("agent-2")).await.unwrap().unwrap().id, other_client.id);
    assert!(found(Some("agent-3")).await.unwrap().is_none());
    assert!(found(None).await.unwrap().is_none());
    // Once decided it is no longer reused.
    rt.deny(&first.id, anyone("boss"), None).await.unwrap();
    let fresh = rt
        .decide_from(pay(500, "bot"), None, Some("agent-1"))
        .await
        .approval
        .unwrap();
    assert_ne!(fresh.id, first.id);
    assert!(!fresh.reused);
}

/// A pending approval waits `pending_approval_wait`; a grant holds the
/// rule's `ttl` (10 minutes here) from the grant.
#[tokio::test]
async fn a_grant_holds_its_ttl_from_the_grant() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(dir.path().join("rein.db")).unwrap());
    let config = RuntimeConfig {
        pending_approval_wait: jiff::SignedDuration::from_hours(5),
        ..RuntimeConfig::default()
    };
    let rt = Runtime::new(Policy::from_yaml_str(POLICY).unwrap(), store, config);
    let before = jiff::Timestamp::now();
    let pending = rt.decide(pay(500, "bot"), None).await.approval.unwrap();
    let wait: jiff::Timestamp = pending.expires_at.parse().unwrap();
    let waited = wait.duration_since(before);
    assert!(
        waited >= jiff::SignedDuration::from_hours(5)
            && waited < jiff::SignedDuration::from_hours(5) + jiff::SignedDuration::from_secs(60),
        "{waited:?}"
    );
    let granted_at = jiff::Timestamp::now();
    let granted = rt.grant(&pending.id, anyone("boss"), None).await.unwrap();
    let holds: jiff::Timestamp = granted.expires_at.parse().unwrap();
    let held = holds.duration_since(granted_at);
    assert!(
        held >= jiff::SignedDuration::from_mins(10) - jiff::SignedDuration::from_secs(1)
            && held <= jiff::SignedDuration::from_mins(10) + jiff::SignedDuration::from_secs(60),
        "{held:?}"
    );
    assert_eq!(granted.hold_seconds, Some(600));
}

/// A grant covers the roles it was asked of: after a reload that asks the
/// same request's approval of another role (stricter), the old grant does
/// not allow it, and is not spent; with the roles it was asked of, it is.
#[tokio::test]
async fn a_grant_does_not_cover_a_role_a_reload_now_asks_for() {
    let dir = tempfile::tempdir().unwrap();
    let (rt, store) = runtime(&dir);
    let pending = rt
        .decide_from(pay(500, "bot"), None, Some("agent-1"))
        .await
        .approval
        .unwrap();
    assert_eq!(pending.roles, ["finance"]);
    rt.grant(&pending.id, anyone("fin"), None).await.unwrap();

    let stricter = POLICY.replace("approval: {role: finance, ttl: 10m}", "approval: {role: cfo, ttl: 10m}");
    assert_ne!(stricter, POLICY);
    rt.set_policy(Policy::from_yaml_str(&stricter).unwrap());
    let a = rt
        .decide_from(pay(500, "bot"), Some(pending.id.clone()), Some("agent-1"))
        .await;
    assert_eq!(a.effect, Effect::Block, "{:?}", a.reasons);
    assert!(a.reasons[0].contains("now asks for role `cfo`"), "{:?}", a.reasons);
    let kept = store.get_approval(&pending.id).await.unwrap().unwrap();
    assert_eq!(kept.state, ApprovalState::Granted);

    rt.set_policy(Policy::from_yaml_str(POLICY).unwrap());
    let a = rt
        .decide_from(pay(500, "bot"), Some(pending.id.clone()), Some("agent-1"))
        .await;
    assert_eq!(a.effect, Effect::Allow, "{:?}", a.reasons);
}

/// A reload that shortens the rule's `ttl` shortens the grants already
/// given: a grant holds the policy's `ttl` now, from the grant.
#[tokio::test]
async fn a_grant_holds_the_ttl_the_policy_gives_now() {
    let dir = tempfile::tempdir().unwrap();
    let (rt, store) = runtime(&dir);
    let pending = rt
        .decide_from(pay(500, "bot"), None, Some("agent-1"))
        .await
        .approval
        .unwrap();
    rt.grant(&pending.id, anyone("fin"), None).await.unwrap();
    let shorter = POLICY.replace(
        "approval: {role: finance, ttl: 10m}",
        "approval: {role: finance, ttl: 1s}",
    );
    assert_ne!(shorter, POLICY);
    rt.set_policy(Policy::from_yaml_str(&shorter).unwrap());
    std::thread::sleep(std::time::Duration::from_millis(1200));
    let a = rt
        .decide_from(pay(500, "bot"), Some(pending.id.clone()), Some("agent-1"))
        .await;
    assert_eq!(a.effect, Effect::Block, "{:?}", a.reasons);
    assert!(a.reasons[0].contains("has expired"), "{:?}", a.reasons);
    let kept = store.get_approval(&pending.id).await.unwrap().unwrap();
    assert_eq!(kept.state, ApprovalState::Granted);
    // Under the ttl it was granted with, it still holds.
    rt.set_policy(Policy::from_yaml_str(POLICY).unwrap());
    let a = rt
        .decide_from(pay(500, "bot"), Some(pending.id.clone()), Some("agent-1"))
        .await;
    assert_eq!(a.effect, Effect::Allow, "{:?}", a.reasons);
}

/// An approver who may decide an approval sees the request's sensitive
/// values, opened from the sealed copy; nobody else does, and the copy is
/// gone once decided.
#[tokio::test]
async fn approvers_see_the_sealed_sensitive_values_while_pending() {
    let dir = tempfile::tempdir().unwrap();
    let (rt, store) = runtime(&dir);
    let pending = rt
        .decide_from(pay(500, "bot"), None, Some("agent-1"))
        .await
        .approval
        .unwrap();
    let record = store.get_approval(&pending.id).await.unwrap().unwrap();
    assert!(!record.summary.to_string().contains("4111"), "the summary is redacted");
    assert!(
        !serde_json::to_string(&record).unwrap().contains("xchacha"),
        "never serialized"
    );
    let finance = ["finance".to_string()];
    let support = ["support".to_string()];
    let seen = rt
        .sealed_request(
            &record,
            &Approver {
                name: "fin",
                roles: Some(&finance),
                credential: None,
            },
        )
        .unwrap()
        .unwrap();
    assert_eq!(seen["input"]["card"], "4111111111111111");
    for viewer in [
        Approver {
            name: "sam",
            roles: Some(&support),
            credential: None,
        },
        Approver {
            name: "agent-1",
            roles: None,
            credential: None,
        },
        Approver {
            name: "bot",
            roles: None,
            credential: None,
        },
    ] {
        assert_eq!(rt.sealed_request(&record, &viewer).unwrap(), None, "{viewer:?}");
    }
    // Under another key it does not open.
    let other = Runtime::new(
        Policy::from_yaml_str(POLICY).unwrap(),
        store.clone(),
        RuntimeConfig {
            hmac_key: b"another key".to_vec(),
            ..RuntimeConfig::default()
        },
    );
    assert!(other.sealed_request(&record, &anyone("boss")).is_err());
    rt.grant(&pending.id, anyone("boss"), None).await.unwrap();
    let decided = store.get_approval(&pending.id).await.unwrap().unwrap();
    assert_eq!(decided.sealed, None);
    assert_eq!(rt.sealed_request(&decided, &anyone("boss")).unwrap(), None);
}

/// A store refuses an audit key other than the one it was first used with:
/// at start, and at every decision (which blocks, unrecorded).
#[tokio::test]
async fn another_audit_key_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (rt, store) = runtime(&dir);
    rt.check_audit_key().await.unwrap();
    assert!(rt.decide(pay(5, "bot"), None).await.audit_seq.is_some());
    let wrong = Runtime::new(
        Policy::from_yaml_str(POLICY).unwrap(),
        store.clone(),
        RuntimeConfig {
            hmac_key: b"test kez".to_vec(),
            ..RuntimeConfig::default()
        },
    );
    let e = wrong.check_audit_key().await.unwrap_err();
    assert!(matches!(e, RuntimeError::KeyMismatch { .. }), "{e}");
    assert!(
        e.to_string().contains("not the one this store was first used with"),
        "{e}"
    );
    // Without the check at start, the first decision finds out.
    let unchecked = Runtime::new(
        Policy::from_yaml_str(POLICY).unwrap(),
        store.clone(),
        RuntimeConfig {
            hmac_key: b"test kez".to_vec(),
            ..RuntimeConfig::default()
        },
    );
    let a = unchecked.decide(pay(5, "bot"), None).await;
    assert_eq!((a.effect, a.audit_seq), (Effect::Block, None));
    assert!(a.reasons[0].contains("audit key"), "{:?}", a.reasons);
    assert!(unchecked.audit_health().is_err());
    assert_eq!(store.audit_len().await.unwrap(), 1);
    // The right key still works.
    let (again, _) = runtime(&dir);
    again.check_audit_key().await.unwrap();
}

/// The runtime reports the audit log unhealthy from a failed append until
/// one succeeds.
#[tokio::test]
async fn audit_health_follows_the_last_append() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rein.db");
    let store = Arc::new(SqliteStore::open(&path).unwrap());
    let rt = Runtime::new(
        Policy::from_yaml_str(POLICY).unwrap(),
        store.clone(),
        RuntimeConfig::default(),
    );
    assert!(rt.decide(pay(5, "bot"), None).await.audit_seq.is_some());
    assert_eq!(rt.audit_health(), Ok(()));
    // A trigger that fails every insert stands in for a full disk here;
    // the server's test fills a real one.
    let conn = rusqlite::Connection::open(&path).unwrap();
    let raw = |sql: &str| conn.execute_batch(sql).unwrap();
    raw("CREATE TRIGGER full BEFORE INSERT ON audit BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END;");
    let a = rt.decide(pay(5, "bot"), None).await;
    assert_eq!(a.effect, Effect::Block);
    let why = rt.audit_health().unwrap_err();
    assert!(why.contains("disk is full"), "{why}");
    raw("DROP TRIGGER full;");
    assert!(rt.decide(pay(5, "bot"), None).await.audit_seq.is_some());
    assert_eq!(rt.audit_health(), Ok(()));
}

/// An expired approval shows its sealed values to nobody.
#[tokio::test]
async fn expired_approvals_show_no_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(dir.path().join("rein.db")).unwrap());
    let config = RuntimeConfig {
        pending_approval_wait: jiff::SignedDuration::from_millis(200),
        ..RuntimeConfig::default()
    };
    let rt = Runtime::new(Policy::from_yaml_str(POLICY).unwrap(), store.clone(), config);
    let pending = rt.decide(pay(500, "bot"), None).await.approval.unwrap();
    let record = store.get_approval(&pending.id).await.unwrap().unwrap();
    assert!(rt.sealed_request(&record, &anyone("boss")).unwrap().is_some());
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(rt.sealed_request(&record, &anyone("boss")).unwrap(), None);
}

/// Actor fields bound to a credential are set on the request, a request
/// contradicting one is blocked before any rule and recorded as sent, and
/// the record says where each field came from; without a binding (hooks,
/// the MCP gateway) records are as before.
#[tokio::test]
async fn bound_actor_fields_are_set_checked_and_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let (rt, store) = runtime(&dir);
    let bound = rein_runtime::Credential::with_fields(json!({"id": "bot"}).as_object().unwrap().clone());
    let source_of = |a: &rein_runtime::Answer| {
        let id = a.decision_id.clone();
        let store = store.clone();
        async move {
            let records = store
                .query_audit(&AuditQuery {
                    decision_id: Some(id),
                    ..Default::default()
                })
                .await
                .unwrap();
            (records[0].entry.actor.clone(), records[0].entry.actor_source.clone())
        }
    };
    // Filled from the credential (`pay` has a sensitive field: the record
    // is a redacted copy, not the moved request).
    let a = rt
        .decide_bound(
            Request::new("pay").input(json!({"amount": 5, "card": "4111111111111111"})),
            None,
            Some("c"),
            Some(&bound),
        )
        .await;
    assert_eq!(a.effect, Effect::Allow, "{:?}", a.reasons);
    let (actor, sources) = source_of(&a).await;
    assert_eq!(actor, json!({"id": "bot"}));
    assert_eq!(sources.unwrap().get("id").map(AsRef::as_ref), Some("credential"));
    // Contradicted: blocked before the rules, recorded as sent.
    let a = rt.decide_bound(pay(5, "admin"), None, Some("c"), Some(&bound)).await;
    assert_eq!(a.effect, Effect::Block);
    assert_eq!(a.reasons, vec!["actor.id is set by the credential".to_string()]);
    assert!(a.rules.is_empty());
    let (actor, sources) = source_of(&a).await;
    assert_eq!(actor["id"], "admin");
    assert_eq!(sources.unwrap().get("id").map(AsRef::as_ref), Some("caller"));
    // No binding: the record has no `actor_source`, as before.
    let a = rt.decide_from(pay(5, "admin"), None, Some("c")).await;
    assert_eq!(a.effect, Effect::Allow);
    assert_eq!(source_of(&a).await.1, None);
    assert!(matches!(
        store.verify_audit().await.unwrap(),
        rein_store::Verification::Intact { records: 3 }
    ));
}

/// An approver whose credential binds the requester's actor id may not
/// decide the request, whatever its token's name.
#[tokio::test]
async fn an_approver_bound_to_the_requesters_id_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (rt, _store) = runtime(&dir);
    let a = rt.decide(pay(500, "bot"), None).await;
    let id = a.approval.expect("an approval").id;
    let bot = rein_runtime::Credential::with_fields(json!({"id": "bot"}).as_object().unwrap().clone());
    let same = Approver {
        name: "lead",
        roles: None,
        credential: Some(&bot),
    };
    let record = rt.store().get_approval(&id).await.unwrap().unwrap();
    assert!(!same.may_decide(&record));
    let e = rt.grant(&id, same.clone(), None).await.unwrap_err();
    assert!(e.to_string().contains("cannot approve"), "{e}");
    assert!(rt.deny(&id, same, None).await.is_err());
    let someone_else =
        rein_runtime::Credential::with_fields(json!({"id": "someone-else"}).as_object().unwrap().clone());
    let other = Approver {
        name: "lead",
        roles: None,
        credential: Some(&someone_else),
    };
    assert!(other.may_decide(&record));
    rt.grant(&id, other, None).await.unwrap();
}

/// Approval changes reach in-process listeners once the store took them:
/// the opening (with the redacted summary only), nothing for a reused one
/// or a refused decision, and each grant or denial.
#[tokio::test]
async fn approval_events_follow_the_store() {
    use rein_runtime::ApprovalEvent;
    use tokio::sync::broadcast::error::TryRecvError;
    let dir = tempfile::tempdir().unwrap();
    let (rt, store) = runtime(&dir);
    // Nobody listening: opening costs no event (and fails nothing).
    let first = rt.decide(pay(500, "bot"), None).await.approval.expect("opened");
    let mut events = rt.approval_events();
    let a = rt.decide(pay(700, "bot"), None).await.approval.expect("opened");
    let opened = match events.try_recv() {
        Ok(ApprovalEvent::Opened(record)) => record,
        other => panic!("expected an opening, got {other:?}"),
    };
    assert_eq!(opened.id, a.id);
    assert_eq!(opened.state, ApprovalState::Pending);
    assert_eq!(opened, store.get_approval(&a.id).await.unwrap().unwrap(), "as the store has it");
    assert!(!format!("{opened:?}").contains("4111111111111111"), "{opened:?}");
    // The identical request again reuses the open approval: no event.
    let again = rt.decide(pay(700, "bot"), None).await.approval.expect("pending");
    assert!(again.reused);
    assert!(matches!(events.try_recv(), Err(TryRecvError::Empty)));
    // A refused grant (own request) changes nothing: no event.
    rt.grant(&a.id, anyone("bot"), None).await.unwrap_err();
    assert!(matches!(events.try_recv(), Err(TryRecvError::Empty)));
    rt.grant(&a.id, anyone("carol"), Some("ok")).await.unwrap();
    match events.try_recv() {
        Ok(ApprovalEvent::Decided { id, state }) => {
            assert_eq!(id, a.id);
            assert_eq!(state, ApprovalState::Granted);
        }
        other => panic!("expected a grant, got {other:?}"),
    }
    rt.deny(&first.id, anyone("carol"), None).await.unwrap();
    match events.try_recv() {
        Ok(ApprovalEvent::Decided { id, state }) => {
            assert_eq!(id, first.id);
            assert_eq!(state, ApprovalState::Denied);
        }
        other => panic!("expected a denial, got {other:?}"),
    }
    // Deciding it again is refused by the store: no event.
    rt.deny(&first.id, anyone("carol"), None).await.unwrap_err();
    assert!(matches!(events.try_recv(), Err(TryRecvError::Empty)));
}
