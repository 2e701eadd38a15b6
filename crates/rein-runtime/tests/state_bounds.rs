//! Stateful rules under attack: what an agent can do to the state through
//! the runtime (report an outcome twice, flood it with sessions) must never
//! loosen a rule, and must fail closed with a clear reason.

// Helpers outside `#[test]` functions panic on failure too; that is the report.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use jiff::Timestamp;
use rein_engine::state::StateWrite;
use rein_engine::{Effect, Policy, Request};
use rein_runtime::{Runtime, RuntimeConfig};
use rein_store::{
    ApprovalError, ApprovalRecord, ApprovalState, AuditEntry, AuditQuery, AuditRecord, SqliteStore, Store, StoreError,
    StoredStateSize, Verification,
};
use serde_json::json;
use std::path::Path;
use std::sync::Arc;

const POLICY: &str = r#"
default: allow
contracts:
  actor: {id: string}
  actions:
    pay:
      input: {to: string}
      output: {charged: {type: int, min: 0}}
rules:
  - id: spend_cap
    action: pay
    when: session.sum("pay", "output.charged", duration("1h")) >= 100
    effect: block
    reason: at most 100 charged an hour per session
"#;

fn config() -> RuntimeConfig {
    RuntimeConfig {
        hmac_key: b"state bounds key".to_vec(),
        ..RuntimeConfig::default()
    }
}

async fn open(db: &Path, policy: &str) -> Arc<Runtime> {
    let store = Arc::new(SqliteStore::open(db).unwrap());
    let rt = Runtime::new(Policy::from_yaml_str(policy).unwrap(), store, config());
    rt.open_state().await.unwrap();
    Arc::new(rt)
}

fn pay(session: &str) -> Request {
    Request::new("pay")
        .input(json!({"to": "shop"}))
        .actor(json!({"id": "bot-1"}))
        .session(session)
}

/// An outcome reported a second time is refused; it must not take the
/// first report's output out of the session (the state would then count
/// less than was charged, and the cap would let more through).
#[tokio::test]
async fn a_second_outcome_report_leaves_the_first_output_in_the_session() {
    let dir = tempfile::tempdir().unwrap();
    let rt = open(&dir.path().join("rein.db"), POLICY).await;
    let first = rt.decide(pay("s1"), None).await;
    assert_eq!(first.effect, Effect::Allow, "{:?}", first.reasons);
    let out = rt
        .outcome(&first.decision_id, Some(json!({"charged": 100})), None)
        .await;
    assert_eq!(out.effect, Effect::Allow, "{:?}", out.reasons);
    // The same report again, and one with another output: both refused.
    for charged in [100, 0] {
        let again = rt
            .outcome_from(&first.decision_id, Some(json!({"charged": charged})), None, None)
            .await;
        assert!(again.is_err(), "a second report must be refused");
    }
    let session = rt.session("s1").unwrap().unwrap();
    assert_eq!(session.calls[0].output, Some(json!({"charged": 100})));
    let next = rt.decide(pay("s1"), None).await;
    assert_eq!(next.effect, Effect::Block, "the cap is reached: {:?}", next.reasons);
}

/// Two reports of one outcome at once: one is recorded, and the session
/// keeps exactly its output.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_outcome_reports_keep_the_recorded_output() {
    let dir = tempfile::tempdir().unwrap();
    let rt = open(&dir.path().join("rein.db"), POLICY).await;
    for round in 0..20 {
        let session = format!("s{round}");
        let first = rt.decide(pay(&session), None).await;
        assert_eq!(first.effect, Effect::Allow, "{:?}", first.reasons);
        let reports: Vec<_> = [100, 0, 100, 0]
            .into_iter()
            .map(|charged| {
                let rt = rt.clone();
                let id = first.decision_id.clone();
                tokio::spawn(async move {
                    let answer = rt
                        .outcome_from(&id, Some(json!({"charged": charged})), None, None)
                        .await;
                    (charged, answer)
                })
            })
            .collect();
        let mut recorded = Vec::new();
        for r in reports {
            let (charged, answer) = r.await.unwrap();
            if let Ok(answer) = answer {
                assert_eq!(answer.effect, Effect::Allow, "{:?}", answer.reasons);
                recorded.push(charged);
            }
        }
        assert_eq!(recorded.len(), 1, "exactly one report is recorded: {recorded:?}");
        let held = rt.session(&session).unwrap().unwrap();
        assert_eq!(
            held.calls[0].output,
            Some(json!({"charged": recorded[0]})),
            "round {round}"
        );
    }
}

const FLOW: &str = r#"
default: allow
contracts:
  actor: {id: string}
  actions:
    note:
      input: {text: string}
    read_secret:
      input: {path: string}
    send:
      input: {to: string}
    refund:
      input: {customer: string}
rules:
  - id: note_loop
    action: note
    when: session.count("note", duration("10m")) >= 1000
    effect: block
  - id: secret_read
    action: read_secret
    effect: allow
    labels: [secret]
  - id: no_send_after_secret
    action: send
    when: '"secret" in session.labels'
    effect: block
  - id: refund_rate
    action: refund
    effect: block
    limit: {count: 5, per: [input.customer], window: 1h}
"#;

async fn open_bounded(db: &Path, max_state_bytes: usize, trust_time: bool) -> Arc<Runtime> {
    let store = Arc::new(SqliteStore::open(db).unwrap());
    let config = RuntimeConfig {
        max_state_bytes,
        trust_request_time: trust_time,
        ..config()
    };
    let rt = Runtime::new(Policy::from_yaml_str(FLOW).unwrap(), store, config);
    rt.open_state().await.unwrap();
    Arc::new(rt)
}

fn call(action: &str, input: serde_json::Value, session: &str) -> Request {
    Request::new(action)
        .input(input)
        .actor(json!({"id": "bot-1"}))
        .session(session)
}

/// An agent that floods the state with large recorded calls in fresh
/// sessions meets a bound: its decisions block with why, and what is held
/// (a session's label a flow rule reads) is never evicted to make room.
#[tokio::test]
async fn a_full_state_blocks_what_would_add_to_it_and_evicts_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let rt = open_bounded(&dir.path().join("rein.db"), 1024 * 1024, true).await;
    let start: jiff::Timestamp = "2026-01-01T10:00:00Z".parse().unwrap();
    let at = |r: Request, secs: i64| {
        let mut r = r;
        r.time = Some(start.checked_add(jiff::SignedDuration::from_secs(secs)).unwrap());
        r
    };
    let read = rt
        .decide(at(call("read_secret", json!({"path": "/k"}), "victim"), 0), None)
        .await;
    assert_eq!(read.effect, Effect::Allow, "{:?}", read.reasons);
    let big = "x".repeat(100 * 1024);
    let mut full = None;
    for i in 0..40 {
        let a = rt
            .decide(at(call("note", json!({"text": big}), &format!("flood-{i}")), 1), None)
            .await;
        if a.effect == Effect::Block {
            full = Some(a);
            break;
        }
    }
    let full = full.expect("the flood must meet the bound");
    assert!(full.reasons[0].starts_with("state full:"), "{:?}", full.reasons);
    // The label is still there: the flow rule still blocks.
    let send = rt.decide(at(call("send", json!({"to": "x"}), "victim"), 2), None).await;
    assert_eq!(send.effect, Effect::Block, "{:?}", send.reasons);
    assert_eq!(send.rules, vec!["no_send_after_secret".to_string()]);
    // A decision that adds nothing is still made.
    let other = rt.decide(at(call("send", json!({"to": "x"}), "other"), 2), None).await;
    assert_eq!(other.effect, Effect::Allow, "{:?}", other.reasons);
    // Once the flood's calls leave the window and their sessions expire,
    // there is room again.
    let later = jiff::SignedDuration::from_hours(25);
    rt.prune_state(start.checked_add(later).unwrap()).await.unwrap();
    let a = rt
        .decide(at(call("note", json!({"text": big}), "fresh"), 25 * 3600), None)
        .await;
    assert_eq!(a.effect, Effect::Allow, "{:?}", a.reasons);
}

/// A session id or a limit key longer than the state takes blocks, saying
/// why, and takes nothing.
#[tokio::test]
async fn an_overlong_session_id_or_limit_key_blocks() {
    let dir = tempfile::tempdir().unwrap();
    let rt = open_bounded(&dir.path().join("rein.db"), 1024 * 1024, false).await;
    let long = "s".repeat(rein_runtime::MAX_SESSION_ID_BYTES + 1);
    let a = rt.decide(call("note", json!({"text": "hi"}), &long), None).await;
    assert_eq!(a.effect, Effect::Block);
    assert!(a.reasons[0].contains("session id is 257 bytes"), "{:?}", a.reasons);
    assert!(rt.session(&long).unwrap().is_none());
    let ok = "s".repeat(rein_runtime::MAX_SESSION_ID_BYTES);
    let a = rt.decide(call("note", json!({"text": "hi"}), &ok), None).await;
    assert_eq!(a.effect, Effect::Allow, "{:?}", a.reasons);

    let customer = "c".repeat(rein_runtime::MAX_BUCKET_ID_BYTES);
    let a = rt
        .decide(
            Request::new("refund")
                .input(json!({"customer": customer}))
                .actor(json!({"id": "b"})),
            None,
        )
        .await;
    assert_eq!(a.effect, Effect::Block);
    assert!(a.reasons[0].contains("limit `refund_rate`"), "{:?}", a.reasons);
    assert!(rt.limits(jiff::Timestamp::now()).unwrap().is_empty());
    let a = rt
        .decide(
            Request::new("refund")
                .input(json!({"customer": "c-1"}))
                .actor(json!({"id": "b"})),
            None,
        )
        .await;
    assert_eq!(a.effect, Effect::Allow, "{:?}", a.reasons);
}

const SHARED_CAP: &str = r#"
default: allow
contracts:
  actor: {id: string}
  actions:
    pay:
      input: {amount: {type: int, min: 0}}
rules:
  - id: cap
    action: pay
    effect: block
    limit: {count: 1, window: 1h}
  - id: big
    action: pay
    when: input.amount > 100
    effect: require_approval
"#;

/// A store whose approval lookups hang while `hanging` is set.
struct SlowApprovals {
    inner: Arc<SqliteStore>,
    hanging: std::sync::atomic::AtomicBool,
}

#[async_trait::async_trait]
impl Store for SlowApprovals {
    async fn append(&self, e: AuditEntry) -> Result<AuditRecord, StoreError> {
        self.inner.append(e).await
    }
    async fn append_once(&self, e: AuditEntry) -> Result<Option<AuditRecord>, StoreError> {
        self.inner.append_once(e).await
    }
    async fn append_with_state(&self, e: AuditEntry, w: Vec<StateWrite>) -> Result<AuditRecord, StoreError> {
        self.inner.append_with_state(e, w).await
    }
    async fn append_once_with_state(
        &self,
        e: AuditEntry,
        w: Vec<StateWrite>,
    ) -> Result<Option<AuditRecord>, StoreError> {
        self.inner.append_once_with_state(e, w).await
    }
    async fn load_state(&self, a: Timestamp, b: Timestamp) -> Result<Vec<StateWrite>, StoreError> {
        self.inner.load_state(a, b).await
    }
    async fn prune_state(&self, a: Timestamp, b: Timestamp) -> Result<u64, StoreError> {
        self.inner.prune_state(a, b).await
    }
    async fn reset_limits(&self, r: Option<String>, b: Option<String>) -> Result<u64, StoreError> {
        self.inner.reset_limits(r, b).await
    }
    async fn state_size(&self) -> Result<StoredStateSize, StoreError> {
        self.inner.state_size().await
    }
    async fn bind_key_fingerprint(&self, f: &str) -> Result<String, StoreError> {
        self.inner.bind_key_fingerprint(f).await
    }
    async fn key_fingerprint(&self) -> Result<Option<String>, StoreError> {
        self.inner.key_fingerprint().await
    }
    async fn probe_write(&self) -> Result<(), StoreError> {
        self.inner.probe_write().await
    }
    async fn find_open_approval(
        &self,
        h: &str,
        c: Option<&str>,
        n: &str,
    ) -> Result<Option<ApprovalRecord>, StoreError> {
        self.inner.find_open_approval(h, c, n).await
    }
    async fn list_client_approvals(
        &self,
        c: &str,
        s: Option<ApprovalState>,
        l: u64,
    ) -> Result<Vec<ApprovalRecord>, StoreError> {
        self.inner.list_client_approvals(c, s, l).await
    }
    async fn query_audit(&self, q: &AuditQuery) -> Result<Vec<AuditRecord>, StoreError> {
        self.inner.query_audit(q).await
    }
    async fn verify_audit(&self) -> Result<Verification, StoreError> {
        self.inner.verify_audit().await
    }
    async fn audit_len(&self) -> Result<u64, StoreError> {
        self.inner.audit_len().await
    }
    async fn create_approval(&self, a: ApprovalRecord) -> Result<(), StoreError> {
        self.inner.create_approval(a).await
    }
    async fn get_approval(&self, id: &str) -> Result<Option<ApprovalRecord>, StoreError> {
        if self.hanging.load(std::sync::atomic::Ordering::SeqCst) {
            std::future::pending::<()>().await;
        }
        self.inner.get_approval(id).await
    }
    async fn list_approvals(&self, s: Option<ApprovalState>, l: u64) -> Result<Vec<ApprovalRecord>, StoreError> {
        self.inner.list_approvals(s, l).await
    }
    async fn decide_approval(
        &self,
        id: &str,
        g: bool,
        a: &str,
        c: Option<&str>,
        n: &str,
    ) -> Result<Result<ApprovalRecord, ApprovalError>, StoreError> {
        self.inner.decide_approval(id, g, a, c, n).await
    }
    async fn use_approval(
        &self,
        id: &str,
        h: &str,
        n: &str,
    ) -> Result<Result<ApprovalRecord, ApprovalError>, StoreError> {
        self.inner.use_approval(id, h, n).await
    }
}

fn pay_amount(amount: i64) -> Request {
    Request::new("pay")
        .input(json!({"amount": amount}))
        .actor(json!({"id": "bot-1"}))
}

/// A request naming an approval that does not hold (made up, pending, of
/// another request) takes no unit of a shared limit while its approval is
/// looked at, and is refused without spending anything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_made_up_approval_holds_no_units_while_it_is_checked() {
    let dir = tempfile::tempdir().unwrap();
    let inner = Arc::new(SqliteStore::open(dir.path().join("rein.db")).unwrap());
    let store = Arc::new(SlowApprovals {
        inner,
        hanging: std::sync::atomic::AtomicBool::new(false),
    });
    let rt = Arc::new(Runtime::new(
        Policy::from_yaml_str(SHARED_CAP).unwrap(),
        store.clone(),
        config(),
    ));
    rt.open_state().await.unwrap();
    // A pending approval is refused before anything is reserved, and stays
    // pending.
    let asked = rt.decide(pay_amount(500), None).await;
    assert_eq!(asked.effect, Effect::RequireApproval, "{:?}", asked.reasons);
    let id = asked.approval.unwrap().id;
    let early = rt.decide(pay_amount(500), Some(id.clone())).await;
    assert_eq!(early.effect, Effect::Block);
    assert!(
        early.reasons[0].contains("is pending, not granted"),
        "{:?}",
        early.reasons
    );
    assert!(rt.limits(Timestamp::now()).unwrap().is_empty(), "nothing consumed");

    store.hanging.store(true, std::sync::atomic::Ordering::SeqCst);
    let attacker = {
        let rt = rt.clone();
        tokio::spawn(async move { rt.decide(pay_amount(500), Some("made-up".into())).await })
    };
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let honest = rt.decide(pay_amount(5), None).await;
    assert_eq!(honest.effect, Effect::Allow, "{:?}", honest.reasons);
    attacker.abort();
    let _ = attacker.await;
}

/// A runtime that gave its state up (its store closed) and loads it again
/// holds each use once, not once more per load.
#[tokio::test]
async fn loading_the_state_again_counts_each_use_once() {
    let dir = tempfile::tempdir().unwrap();
    let rt = open(&dir.path().join("rein.db"), SHARED_CAP).await;
    let a = rt.decide(pay_amount(5), None).await;
    assert_eq!(a.effect, Effect::Allow, "{:?}", a.reasons);
    rt.release_state_lock();
    assert_eq!(rt.decide(pay_amount(5), None).await.effect, Effect::Block, "released");
    rt.open_state().await.unwrap();
    let limits = rt.limits(Timestamp::now()).unwrap();
    assert_eq!(limits.len(), 1);
    assert_eq!(limits[0].used, rein_engine::state::Decimal::ONE);
}
