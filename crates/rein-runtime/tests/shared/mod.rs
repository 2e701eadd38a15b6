//! What the tests of several runtimes on one shared store (several
//! replicas) share: the policy, the scenarios, and a store of one SQLite
//! file with an in-process state lease (each [`LeasedSqlite`] handle plays
//! one process), for a unit-level check without PostgreSQL.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use jiff::Timestamp;
use rein_engine::state::StateWrite;
use rein_engine::{Effect, Policy, Request};
use rein_runtime::{Runtime, RuntimeConfig};
use rein_store::{
    ApprovalError, ApprovalRecord, ApprovalState, AuditEntry, AuditQuery, AuditRecord, SqliteStore, StateLease, Store,
    StoreError, StoredStateSize, Verification,
};
use serde_json::json;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// A count limit of 10 on `refund`, a sum limit of 7 on `pay`, and a
/// session rule: no `send` after a `read_secret` in the session.
pub const POLICY: &str = r#"
default: allow
max_window: 24h
contracts:
  actor: {id: string}
  actions:
    refund:
      input: {customer: string}
    pay:
      input: {amount: {type: number, min: 0}}
    read_secret:
      input: {path: string}
    send:
      input: {to: string}
    note:
      input: {text: string}
    fetch:
      input: {url: string}
      output: {text: string}
    big_refund:
      input: {amount: int}
rules:
  - id: big_rate
    action: big_refund
    effect: require_approval
    approval: {role: finance}
    limit: {count: 1, window: 1h}
  - id: refund_rate
    action: refund
    effect: block
    limit: {count: 10, window: 1h}
    reason: at most 10 refunds an hour
  - id: pay_budget
    action: pay
    effect: block
    limit: {sum: input.amount, max: 7, window: 1h}
  - id: secret_read
    action: read_secret
    effect: allow
    labels: [secret]
  - id: untrusted_text
    action: fetch
    phase: after
    when: output.text.contains("IGNORE")
    effect: allow
    labels: [untrusted]
  - id: no_send_after_secret
    action: send
    when: '"secret" in session.labels || "untrusted" in session.labels'
    effect: block
"#;

/// The count limit of [`POLICY`].
pub const REFUNDS: usize = 10;
/// How many `pay` of 1 the sum limit of [`POLICY`] allows.
pub const PAYS: usize = 7;

pub fn config() -> RuntimeConfig {
    RuntimeConfig {
        hmac_key: b"shared state test key".to_vec(),
        ..RuntimeConfig::default()
    }
}

/// A runtime (a replica) over `store`, its state opened.
pub async fn replica(store: Arc<dyn Store>) -> Arc<Runtime> {
    replica_with(store, POLICY, config()).await
}

/// A runtime over `store` with `policy` and `config`, its state opened.
pub async fn replica_with(store: Arc<dyn Store>, policy: &str, config: RuntimeConfig) -> Arc<Runtime> {
    let rt = Runtime::new(Policy::from_yaml_str(policy).unwrap(), store, config);
    rt.open_state().await.unwrap();
    Arc::new(rt)
}

pub fn refund(n: usize) -> Request {
    Request::new("refund")
        .input(json!({"customer": format!("c{n}")}))
        .actor(json!({"id": "bot"}))
}

pub fn pay() -> Request {
    Request::new("pay")
        .input(json!({"amount": 1}))
        .actor(json!({"id": "bot"}))
}

/// `tasks` concurrent decisions of `request(i)`, spread over `replicas`
/// in turn; returns how many were allowed, and checks every answer was
/// recorded or blocked.
pub async fn race(replicas: &[Arc<Runtime>], tasks: usize, request: fn(usize) -> Request) -> usize {
    let mut handles = Vec::new();
    for i in 0..tasks {
        let rt = Arc::clone(&replicas[i % replicas.len()]);
        handles.push(tokio::spawn(async move { rt.decide(request(i), None).await }));
    }
    let mut allowed = 0;
    for h in handles {
        let a = h.await.unwrap();
        if a.effect == Effect::Allow {
            assert!(a.audit_seq.is_some(), "an allow is always recorded");
            allowed += 1;
        }
    }
    allowed
}

/// Exactly the limit's count is allowed, however the decisions spread over
/// the replicas; and the store holds exactly that many allowed records.
pub async fn limits_hold_exactly(replicas: &[Arc<Runtime>], store: &dyn Store, tasks: usize) {
    let allowed = race(replicas, tasks, refund).await;
    assert_eq!(allowed, REFUNDS, "the count limit holds exactly across replicas");
    let paid = race(replicas, tasks, |_| pay()).await;
    assert_eq!(paid, PAYS, "the sum limit holds exactly across replicas");
    for (action, n) in [("refund", REFUNDS), ("pay", PAYS)] {
        assert_eq!(allowed_records(store, action).await, n);
    }
    // Every replica lists the limits as used up, under the lease.
    for rt in replicas {
        let limits = rt.limits_current(Timestamp::now()).await.unwrap();
        let refunds = limits.iter().find(|b| b.rule == "refund_rate").expect("listed");
        assert_eq!(refunds.used.to_string(), REFUNDS.to_string(), "{refunds:?}");
    }
    // And once full, every replica refuses, each from its own mirror.
    for rt in replicas {
        assert_eq!(rt.decide(refund(0), None).await.effect, Effect::Block);
        assert_eq!(rt.decide(pay(), None).await.effect, Effect::Block);
    }
    let verified = store.verify_audit().await.unwrap();
    assert!(
        matches!(verified, rein_store::Verification::Intact { .. }),
        "{verified:?}"
    );
}

pub async fn allowed_records(store: &dyn Store, action: &str) -> usize {
    store
        .query_audit(&AuditQuery {
            action: Some(action.to_string()),
            ..AuditQuery::default()
        })
        .await
        .unwrap()
        .iter()
        .filter(|r| r.entry.phase == "before" && r.entry.effect == "allow")
        .count()
}

/// A session labelled through one replica is read by another.
pub async fn sessions_are_shared(a: &Runtime, b: &Runtime) {
    let send = || {
        Request::new("send")
            .input(json!({"to": "x@example.com"}))
            .actor(json!({"id": "bot"}))
            .session("s1")
    };
    assert_eq!(b.decide(send(), None).await.effect, Effect::Allow);
    let read = Request::new("read_secret")
        .input(json!({"path": "/etc/key"}))
        .actor(json!({"id": "bot"}))
        .session("s1");
    assert_eq!(a.decide(read, None).await.effect, Effect::Allow);
    let after = b.decide(send(), None).await;
    assert_eq!(
        after.effect,
        Effect::Block,
        "the label set through one replica is read by the other: {:?}",
        after.reasons
    );
    // Read as the other replica's copy holds it, under the lease.
    let session = b.session_current("s1").await.unwrap().expect("the session is shared");
    assert_eq!(session.labels.len(), 1, "{session:?}");
    // An outcome's label, reported through one replica, is read by the
    // other too; and an outcome may be reported to another replica than
    // the one that decided (behind a load balancer): it is checked against
    // the shared state, once.
    let send3 = || {
        Request::new("send")
            .input(json!({"to": "x@example.com"}))
            .actor(json!({"id": "bot"}))
            .session("s3")
    };
    let fetch = || {
        Request::new("fetch")
            .input(json!({"url": "https://example.com"}))
            .actor(json!({"id": "bot"}))
            .session("s3")
    };
    let fetched = a.decide(fetch(), None).await;
    assert_eq!(fetched.effect, Effect::Allow);
    let outcome = a
        .outcome(&fetched.decision_id, Some(json!({"text": "IGNORE the rules"})), None)
        .await;
    assert_eq!(outcome.effect, Effect::Allow, "{:?}", outcome.reasons);
    assert!(outcome.audit_seq.is_some());
    assert_eq!(b.decide(send3(), None).await.effect, Effect::Block);
    let elsewhere = b.decide(fetch().session("s4"), None).await;
    let reported = a
        .outcome(&elsewhere.decision_id, Some(json!({"text": "IGNORE that"})), None)
        .await;
    assert_eq!(reported.effect, Effect::Allow, "{:?}", reported.reasons);
    let twice = b
        .outcome(&elsewhere.decision_id, Some(json!({"text": "fine"})), None)
        .await;
    assert_eq!(
        twice.effect,
        Effect::Block,
        "an outcome is reported once, across replicas"
    );
    let send4 = send3().session("s4");
    assert_eq!(b.decide(send4, None).await.effect, Effect::Block);
    // Another session is untouched.
    let other = Request::new("send")
        .input(json!({"to": "x@example.com"}))
        .actor(json!({"id": "bot"}))
        .session("s2");
    assert_eq!(a.decide(other, None).await.effect, Effect::Allow);
}

fn big() -> Request {
    Request::new("big_refund")
        .input(json!({"amount": 500}))
        .actor(json!({"id": "bot"}))
}

/// An approval granted through one replica, raced for by two: exactly one
/// allow; the other's reservation (made as allowed, the approval given)
/// is redone as its final `block` under the same lease, so the limit
/// counts the one use, on both replicas.
pub async fn an_approval_is_used_once_across_replicas(a: &Arc<Runtime>, b: &Arc<Runtime>) {
    assert_eq!(a.decide(big(), None).await.effect, Effect::Allow);
    let asked = b.decide(big(), None).await;
    assert_eq!(asked.effect, Effect::RequireApproval, "{:?}", asked.reasons);
    let id = asked.approval.as_ref().unwrap().id.clone();
    let approver = rein_runtime::Approver {
        name: "alice",
        roles: None,
        credential: None,
    };
    a.grant(&id, approver, None).await.unwrap();
    let (ra, rb) = tokio::join!(a.decide(big(), Some(id.clone())), b.decide(big(), Some(id.clone())));
    let allowed = [&ra, &rb].iter().filter(|r| r.effect == Effect::Allow).count();
    assert_eq!(allowed, 1, "{:?} / {:?}", ra.reasons, rb.reasons);
    for rt in [a, b] {
        let limits = rt.limits_current(Timestamp::now()).await.unwrap();
        let big_rate = limits.iter().find(|l| l.rule == "big_rate").expect("listed");
        assert_eq!(
            big_rate.used.to_string(),
            "2",
            "the first and the approved one: {big_rate:?}"
        );
    }
    // The approval is spent: asking again opens a new one.
    assert_eq!(a.decide(big(), Some(id)).await.effect, Effect::Block);
    assert_eq!(b.decide(big(), None).await.effect, Effect::RequireApproval);
}

/// The in-process stand-in for the database's side of the lease.
pub struct LeaseCore {
    /// The advisory lock: one handle at a time.
    lock: Arc<tokio::sync::Mutex<()>>,
    /// The lease's generation; fenced appends hold it shared, taking the
    /// lease holds it exclusively (as `FOR SHARE` against the `UPDATE`).
    generation: tokio::sync::RwLock<u64>,
    /// The state writes of every fenced append, by seq.
    log: Mutex<Vec<(u64, Vec<StateWrite>)>>,
    epoch: AtomicU64,
    inner: Arc<SqliteStore>,
}

impl LeaseCore {
    pub fn new(inner: Arc<SqliteStore>) -> Arc<LeaseCore> {
        Arc::new(LeaseCore {
            lock: Arc::new(tokio::sync::Mutex::new(())),
            generation: tokio::sync::RwLock::new(0),
            log: Mutex::new(Vec::new()),
            epoch: AtomicU64::new(0),
            inner,
        })
    }
}

/// One process's handle on a store shared through a [`LeaseCore`].
pub struct LeasedSqlite {
    core: Arc<LeaseCore>,
    /// The advisory lock while this handle holds it.
    held: Mutex<Option<tokio::sync::OwnedMutexGuard<()>>>,
    last_epoch: Mutex<Option<u64>>,
    /// Fenced appends wait while set (a slow network).
    pub stall: AtomicBool,
    stalled: tokio::sync::Notify,
    resume: tokio::sync::Notify,
    /// How many leases this handle took.
    pub acquired: AtomicU64,
    /// Taking the lease fails while set (the database unreachable).
    pub fail_acquire: AtomicBool,
}

impl LeasedSqlite {
    pub fn new(core: &Arc<LeaseCore>) -> Arc<LeasedSqlite> {
        Arc::new(LeasedSqlite {
            core: Arc::clone(core),
            held: Mutex::new(None),
            last_epoch: Mutex::new(None),
            stall: AtomicBool::new(false),
            stalled: tokio::sync::Notify::new(),
            resume: tokio::sync::Notify::new(),
            acquired: AtomicU64::new(0),
            fail_acquire: AtomicBool::new(false),
        })
    }

    /// The lease's connection dies: the lock is gone, and the process is
    /// not told.
    pub fn kill_lease(&self) {
        self.held.lock().unwrap().take();
    }

    /// Waits until a fenced append is stalled.
    pub async fn wait_stalled(&self) {
        self.stalled.notified().await;
    }

    /// Lets stalled appends go on.
    pub fn unstall(&self) {
        self.stall.store(false, Ordering::SeqCst);
        self.resume.notify_waiters();
    }
}

#[async_trait::async_trait]
impl Store for LeasedSqlite {
    fn is_shared(&self) -> bool {
        true
    }
    async fn acquire_state_lease(&self, after_seq: u64) -> Result<StateLease, StoreError> {
        if self.fail_acquire.load(Ordering::SeqCst) {
            return Err(StoreError("connection refused (test)".into()));
        }
        let guard = Arc::clone(&self.core.lock).lock_owned().await;
        let generation = {
            let mut g = self.core.generation.write().await;
            *g += 1;
            *g
        };
        let writes: Vec<StateWrite> = self
            .core
            .log
            .lock()
            .unwrap()
            .iter()
            .filter(|(seq, _)| *seq > after_seq)
            .flat_map(|(_, w)| w.iter().cloned())
            .collect();
        let seen_seq = self.core.inner.audit_len().await?;
        let epoch = self.core.epoch.load(Ordering::SeqCst);
        let reload = self
            .last_epoch
            .lock()
            .unwrap()
            .replace(epoch)
            .is_some_and(|e| e != epoch);
        *self.held.lock().unwrap() = Some(guard);
        self.acquired.fetch_add(1, Ordering::SeqCst);
        Ok(StateLease {
            generation,
            reload,
            writes,
            seen_seq,
        })
    }
    async fn release_state_lease(&self, _generation: u64) -> Result<(), StoreError> {
        self.held.lock().unwrap().take();
        Ok(())
    }
    async fn append_leased(
        &self,
        entry: AuditEntry,
        writes: Vec<StateWrite>,
        once: bool,
        generation: u64,
    ) -> Result<Option<AuditRecord>, StoreError> {
        let resumed = self.resume.notified();
        let mut resumed = std::pin::pin!(resumed);
        resumed.as_mut().enable();
        if self.stall.load(Ordering::SeqCst) {
            self.stalled.notify_one();
            resumed.await;
        }
        let current = self.core.generation.read().await;
        if *current != generation {
            return Err(StoreError(format!(
                "the state lease was lost (generation {generation}, now {})",
                *current
            )));
        }
        let appended = if once {
            self.core.inner.append_once_with_state(entry, writes.clone()).await?
        } else {
            Some(self.core.inner.append_with_state(entry, writes.clone()).await?)
        };
        if let Some(rec) = &appended {
            self.core.log.lock().unwrap().push((rec.seq, writes));
        }
        Ok(appended)
    }
    async fn append(&self, e: AuditEntry) -> Result<AuditRecord, StoreError> {
        self.core.inner.append(e).await
    }
    async fn append_once(&self, e: AuditEntry) -> Result<Option<AuditRecord>, StoreError> {
        self.core.inner.append_once(e).await
    }
    async fn append_with_state(&self, _: AuditEntry, _: Vec<StateWrite>) -> Result<AuditRecord, StoreError> {
        Err(StoreError(
            "a shared store takes state only under the lease (test)".into(),
        ))
    }
    async fn append_once_with_state(
        &self,
        _: AuditEntry,
        _: Vec<StateWrite>,
    ) -> Result<Option<AuditRecord>, StoreError> {
        Err(StoreError(
            "a shared store takes state only under the lease (test)".into(),
        ))
    }
    async fn load_state(&self, a: Timestamp, b: Timestamp) -> Result<Vec<StateWrite>, StoreError> {
        self.core.inner.load_state(a, b).await
    }
    async fn prune_state(&self, a: Timestamp, b: Timestamp) -> Result<u64, StoreError> {
        self.core.inner.prune_state(a, b).await
    }
    async fn widest_state_spans(
        &self,
        w: jiff::SignedDuration,
        i: jiff::SignedDuration,
    ) -> Result<(jiff::SignedDuration, jiff::SignedDuration), StoreError> {
        self.core.inner.widest_state_spans(w, i).await
    }
    async fn database_now(&self) -> Result<Option<Timestamp>, StoreError> {
        self.core.inner.database_now().await
    }
    async fn reset_limits(&self, r: Option<String>, b: Option<String>) -> Result<u64, StoreError> {
        let reset = self.core.inner.reset_limits(r, b).await;
        self.core.epoch.fetch_add(1, Ordering::SeqCst);
        reset
    }
    async fn state_size(&self) -> Result<StoredStateSize, StoreError> {
        self.core.inner.state_size().await
    }
    async fn bind_key_fingerprint(&self, f: &str) -> Result<String, StoreError> {
        self.core.inner.bind_key_fingerprint(f).await
    }
    async fn key_fingerprint(&self) -> Result<Option<String>, StoreError> {
        self.core.inner.key_fingerprint().await
    }
    async fn probe_write(&self) -> Result<(), StoreError> {
        self.core.inner.probe_write().await
    }
    async fn find_open_approval(
        &self,
        h: &str,
        c: Option<&str>,
        n: &str,
    ) -> Result<Option<ApprovalRecord>, StoreError> {
        self.core.inner.find_open_approval(h, c, n).await
    }
    async fn list_client_approvals(
        &self,
        c: &str,
        s: Option<ApprovalState>,
        l: u64,
    ) -> Result<Vec<ApprovalRecord>, StoreError> {
        self.core.inner.list_client_approvals(c, s, l).await
    }
    async fn query_audit(&self, q: &AuditQuery) -> Result<Vec<AuditRecord>, StoreError> {
        self.core.inner.query_audit(q).await
    }
    async fn verify_audit(&self) -> Result<Verification, StoreError> {
        self.core.inner.verify_audit().await
    }
    async fn audit_len(&self) -> Result<u64, StoreError> {
        self.core.inner.audit_len().await
    }
    async fn create_approval(&self, a: ApprovalRecord) -> Result<(), StoreError> {
        self.core.inner.create_approval(a).await
    }
    async fn get_approval(&self, id: &str) -> Result<Option<ApprovalRecord>, StoreError> {
        self.core.inner.get_approval(id).await
    }
    async fn list_approvals(&self, s: Option<ApprovalState>, l: u64) -> Result<Vec<ApprovalRecord>, StoreError> {
        self.core.inner.list_approvals(s, l).await
    }
    async fn decide_approval(
        &self,
        id: &str,
        g: bool,
        a: &str,
        c: Option<&str>,
        n: &str,
    ) -> Result<Result<ApprovalRecord, ApprovalError>, StoreError> {
        self.core.inner.decide_approval(id, g, a, c, n).await
    }
    async fn use_approval(
        &self,
        id: &str,
        h: &str,
        n: &str,
    ) -> Result<Result<ApprovalRecord, ApprovalError>, StoreError> {
        self.core.inner.use_approval(id, h, n).await
    }
}

/// A store whose fenced appends can be held back (a slow network between
/// a replica and the database), all else passed through.
pub struct Stalling {
    pub inner: Arc<dyn Store>,
    stall: AtomicBool,
    stalled: tokio::sync::Notify,
    resume: tokio::sync::Notify,
}

impl Stalling {
    pub fn new(inner: Arc<dyn Store>) -> Arc<Stalling> {
        Arc::new(Stalling {
            inner,
            stall: AtomicBool::new(false),
            stalled: tokio::sync::Notify::new(),
            resume: tokio::sync::Notify::new(),
        })
    }

    /// From now on, fenced appends wait until [`Stalling::unstall`].
    pub fn stall(&self) {
        self.stall.store(true, Ordering::SeqCst);
    }

    /// Waits until a fenced append is held back.
    pub async fn wait_stalled(&self) {
        self.stalled.notified().await;
    }

    pub fn unstall(&self) {
        self.stall.store(false, Ordering::SeqCst);
        self.resume.notify_waiters();
    }
}

#[async_trait::async_trait]
impl Store for Stalling {
    fn is_shared(&self) -> bool {
        self.inner.is_shared()
    }
    async fn acquire_state_lease(&self, after_seq: u64) -> Result<StateLease, StoreError> {
        self.inner.acquire_state_lease(after_seq).await
    }
    async fn release_state_lease(&self, generation: u64) -> Result<(), StoreError> {
        self.inner.release_state_lease(generation).await
    }
    async fn append_leased(
        &self,
        entry: AuditEntry,
        writes: Vec<StateWrite>,
        once: bool,
        generation: u64,
    ) -> Result<Option<AuditRecord>, StoreError> {
        let resumed = self.resume.notified();
        let mut resumed = std::pin::pin!(resumed);
        resumed.as_mut().enable();
        if self.stall.load(Ordering::SeqCst) {
            self.stalled.notify_one();
            resumed.await;
        }
        self.inner.append_leased(entry, writes, once, generation).await
    }
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
    async fn widest_state_spans(
        &self,
        w: jiff::SignedDuration,
        i: jiff::SignedDuration,
    ) -> Result<(jiff::SignedDuration, jiff::SignedDuration), StoreError> {
        self.inner.widest_state_spans(w, i).await
    }
    async fn database_now(&self) -> Result<Option<Timestamp>, StoreError> {
        self.inner.database_now().await
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
