//! Prometheus metrics, and the store wrapper that measures the audit
//! append and counts store errors (the runtime calls the store itself, so
//! the server measures at the trait boundary).

use jiff::Timestamp;
use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use rein_store::{
    ApprovalError, ApprovalRecord, ApprovalState, AuditEntry, AuditQuery, AuditRecord, StateWrite, Store, StoreError,
    StoredStateSize, Verification,
};
use std::sync::Arc;
use std::time::Instant;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DecisionLabels {
    action: String,
    effect: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EffectLabels {
    effect: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PhaseLabels {
    phase: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OperationLabels {
    operation: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CauseLabels {
    cause: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PublicationLabels {
    operation: String,
    result: String,
}

type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

/// Latency buckets from 50 µs to about 3.3 s: decisions are normally well
/// under a millisecond, an fsync'd append a few milliseconds.
fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.000_05, 2.0, 17))
}

/// The server's metrics. Cheap to clone (shared handles).
#[derive(Clone)]
pub(crate) struct Metrics {
    registry: Arc<Registry>,
    decisions: Family<DecisionLabels, Counter>,
    outcomes: Family<EffectLabels, Counter>,
    decision_seconds: Histograms<PhaseLabels>,
    append_seconds: Histogram,
    store_errors: Family<OperationLabels, Counter>,
    auth_failures: Family<ReasonLabels, Counter>,
    pending_approvals: Gauge,
    reloads: Family<ResultLabels, Counter>,
    fail_closed: Family<CauseLabels, Counter>,
    publications: Family<PublicationLabels, Counter>,
    webhook_deliveries: Family<ResultLabels, Counter>,
}

impl Metrics {
    pub(crate) fn new() -> Metrics {
        let mut registry = Registry::with_prefix("rein");
        let decisions = Family::<DecisionLabels, Counter>::default();
        registry.register(
            "decisions",
            "Decisions (phase before) by action and effect; unknown actions are counted as `<unknown>`",
            decisions.clone(),
        );
        let outcomes = Family::<EffectLabels, Counter>::default();
        registry.register("outcomes", "Outcome checks (phase after) by effect", outcomes.clone());
        let decision_seconds: Histograms<PhaseLabels> = Family::new_with_constructor(latency_histogram);
        registry.register(
            "decision_duration_seconds",
            "Time to decide and record, by phase",
            decision_seconds.clone(),
        );
        let append_seconds = latency_histogram();
        registry.register(
            "audit_append_duration_seconds",
            "Time to append one audit record durably",
            append_seconds.clone(),
        );
        let store_errors = Family::<OperationLabels, Counter>::default();
        registry.register("store_errors", "Store failures by operation", store_errors.clone());
        let auth_failures = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "auth_failures",
            "Refused requests by reason: missing, unknown or forbidden",
            auth_failures.clone(),
        );
        let pending_approvals = Gauge::default();
        registry.register(
            "approvals_pending",
            "Pending, unexpired approvals (read at scrape time)",
            pending_approvals.clone(),
        );
        let reloads = Family::<ResultLabels, Counter>::default();
        registry.register("policy_reloads", "Policy reloads by result", reloads.clone());
        let fail_closed = Family::<CauseLabels, Counter>::default();
        registry.register(
            "fail_closed",
            "Requests answered `block` because the server failed: panic or timeout",
            fail_closed.clone(),
        );
        let publications = Family::<PublicationLabels, Counter>::default();
        registry.register(
            "policy_publications",
            "Policy publication across replicas (shared store) by operation and result: `publish` (this \
             replica published the version it activated), `read` (reading the published version), `follow` \
             (switching to a version another replica published); failures have result `failure`",
            publications.clone(),
        );
        let webhook_deliveries = Family::<ResultLabels, Counter>::default();
        registry.register(
            "webhook_deliveries",
            "Approval notifications to webhooks by result: `delivered`, `retried` (an attempt that will be \
             tried again), `failed` (given up: a 4xx, or every attempt failed), `dropped` (the queue was full)",
            webhook_deliveries.clone(),
        );
        Metrics {
            registry: Arc::new(registry),
            webhook_deliveries,
            publications,
            decisions,
            outcomes,
            decision_seconds,
            append_seconds,
            store_errors,
            auth_failures,
            pending_approvals,
            reloads,
            fail_closed,
        }
    }

    pub(crate) fn decision(&self, action: &str, effect: &str, seconds: f64) {
        self.decisions
            .get_or_create(&DecisionLabels {
                action: action.to_string(),
                effect: effect.to_string(),
            })
            .inc();
        self.decision_seconds
            .get_or_create(&PhaseLabels { phase: "before".into() })
            .observe(seconds);
    }

    pub(crate) fn outcome(&self, effect: &str, seconds: f64) {
        self.outcomes
            .get_or_create(&EffectLabels { effect: effect.into() })
            .inc();
        self.decision_seconds
            .get_or_create(&PhaseLabels { phase: "after".into() })
            .observe(seconds);
    }

    pub(crate) fn auth_failure(&self, reason: &str) {
        self.auth_failures
            .get_or_create(&ReasonLabels { reason: reason.into() })
            .inc();
    }

    pub(crate) fn reload(&self, ok: bool) {
        let result = if ok { "success" } else { "failure" };
        self.reloads
            .get_or_create(&ResultLabels { result: result.into() })
            .inc();
    }

    pub(crate) fn fail_closed(&self, cause: &str) {
        self.fail_closed
            .get_or_create(&CauseLabels { cause: cause.into() })
            .inc();
    }

    /// One step of policy publication across replicas (`publish`,
    /// `read`, `follow`) and whether it succeeded.
    pub(crate) fn publication(&self, operation: &str, ok: bool) {
        let result = if ok { "success" } else { "failure" };
        self.publications
            .get_or_create(&PublicationLabels {
                operation: operation.into(),
                result: result.into(),
            })
            .inc();
    }

    /// One webhook delivery step: `delivered`, `retried`, `failed` or `dropped`.
    pub(crate) fn webhook(&self, result: &str) {
        self.webhook_deliveries
            .get_or_create(&ResultLabels { result: result.into() })
            .inc();
    }

    pub(crate) fn set_pending_approvals(&self, n: i64) {
        self.pending_approvals.set(n);
    }

    fn store_error(&self, operation: &str) {
        self.store_errors
            .get_or_create(&OperationLabels {
                operation: operation.into(),
            })
            .inc();
    }

    /// The text exposition (OpenMetrics, which Prometheus reads).
    pub(crate) fn render(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::new();
        encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

/// A [`Store`] that times appends and counts failures, then delegates.
pub(crate) struct MeteredStore {
    inner: Arc<dyn Store>,
    metrics: Metrics,
}

impl MeteredStore {
    pub(crate) fn new(inner: Arc<dyn Store>, metrics: Metrics) -> MeteredStore {
        MeteredStore { inner, metrics }
    }

    fn count<T, E>(&self, operation: &str, result: Result<T, E>) -> Result<T, E> {
        if result.is_err() {
            self.metrics.store_error(operation);
        }
        result
    }
}

#[async_trait::async_trait]
impl Store for MeteredStore {
    async fn append(&self, entry: AuditEntry) -> Result<AuditRecord, StoreError> {
        let started = Instant::now();
        let result = self.inner.append(entry).await;
        self.metrics.append_seconds.observe(started.elapsed().as_secs_f64());
        self.count("append", result)
    }

    async fn append_once(&self, entry: AuditEntry) -> Result<Option<AuditRecord>, StoreError> {
        let started = Instant::now();
        let result = self.inner.append_once(entry).await;
        self.metrics.append_seconds.observe(started.elapsed().as_secs_f64());
        self.count("append", result)
    }

    async fn append_with_state(&self, entry: AuditEntry, writes: Vec<StateWrite>) -> Result<AuditRecord, StoreError> {
        let started = Instant::now();
        let result = self.inner.append_with_state(entry, writes).await;
        self.metrics.append_seconds.observe(started.elapsed().as_secs_f64());
        self.count("append", result)
    }

    async fn append_once_with_state(
        &self,
        entry: AuditEntry,
        writes: Vec<StateWrite>,
    ) -> Result<Option<AuditRecord>, StoreError> {
        let started = Instant::now();
        let result = self.inner.append_once_with_state(entry, writes).await;
        self.metrics.append_seconds.observe(started.elapsed().as_secs_f64());
        self.count("append", result)
    }

    async fn load_state(&self, window_start: Timestamp, idle_start: Timestamp) -> Result<Vec<StateWrite>, StoreError> {
        let result = self.inner.load_state(window_start, idle_start).await;
        self.count("load_state", result)
    }

    async fn prune_state(&self, window_start: Timestamp, idle_start: Timestamp) -> Result<u64, StoreError> {
        let result = self.inner.prune_state(window_start, idle_start).await;
        self.count("prune_state", result)
    }

    async fn widest_state_spans(
        &self,
        max_window: jiff::SignedDuration,
        session_idle: jiff::SignedDuration,
    ) -> Result<(jiff::SignedDuration, jiff::SignedDuration), StoreError> {
        let result = self.inner.widest_state_spans(max_window, session_idle).await;
        self.count("widest_state_spans", result)
    }

    async fn database_now(&self) -> Result<Option<Timestamp>, StoreError> {
        let result = self.inner.database_now().await;
        self.count("database_now", result)
    }

    async fn reset_limits(&self, rule: Option<String>, bucket: Option<String>) -> Result<u64, StoreError> {
        let result = self.inner.reset_limits(rule, bucket).await;
        self.count("reset_limits", result)
    }

    async fn state_size(&self) -> Result<StoredStateSize, StoreError> {
        let result = self.inner.state_size().await;
        self.count("state_size", result)
    }

    fn is_shared(&self) -> bool {
        self.inner.is_shared()
    }

    async fn acquire_state_lease(&self, after_seq: u64) -> Result<rein_store::StateLease, StoreError> {
        let result = self.inner.acquire_state_lease(after_seq).await;
        self.count("acquire_state_lease", result)
    }

    async fn release_state_lease(&self, generation: u64) -> Result<(), StoreError> {
        let result = self.inner.release_state_lease(generation).await;
        self.count("release_state_lease", result)
    }

    async fn append_leased(
        &self,
        entry: AuditEntry,
        writes: Vec<StateWrite>,
        once: bool,
        generation: u64,
    ) -> Result<Option<AuditRecord>, StoreError> {
        let started = Instant::now();
        let result = self.inner.append_leased(entry, writes, once, generation).await;
        self.metrics.append_seconds.observe(started.elapsed().as_secs_f64());
        self.count("append", result)
    }

    async fn publish_policy(&self, version: &str) -> Result<(), StoreError> {
        let result = self.inner.publish_policy(version).await;
        self.count("publish_policy", result)
    }

    async fn published_policy(&self) -> Result<Option<String>, StoreError> {
        let result = self.inner.published_policy().await;
        self.count("published_policy", result)
    }

    fn policy_publications(&self) -> Option<tokio::sync::watch::Receiver<Option<String>>> {
        self.inner.policy_publications()
    }

    async fn import_records(&self, records: Vec<AuditRecord>) -> Result<(), StoreError> {
        let result = self.inner.import_records(records).await;
        self.count("import_records", result)
    }

    async fn import_approvals(&self, approvals: Vec<ApprovalRecord>) -> Result<(), StoreError> {
        let result = self.inner.import_approvals(approvals).await;
        self.count("import_approvals", result)
    }

    async fn import_state(&self, writes: Vec<StateWrite>) -> Result<(), StoreError> {
        let result = self.inner.import_state(writes).await;
        self.count("import_state", result)
    }

    async fn bind_key_fingerprint(&self, fingerprint: &str) -> Result<String, StoreError> {
        let result = self.inner.bind_key_fingerprint(fingerprint).await;
        self.count("bind_key_fingerprint", result)
    }

    async fn key_fingerprint(&self) -> Result<Option<String>, StoreError> {
        let result = self.inner.key_fingerprint().await;
        self.count("key_fingerprint", result)
    }

    async fn probe_write(&self) -> Result<(), StoreError> {
        let result = self.inner.probe_write().await;
        self.count("probe_write", result)
    }

    async fn save_policy_version(&self, version: &rein_store::PolicyVersion) -> Result<(), StoreError> {
        let result = self.inner.save_policy_version(version).await;
        self.count("save_policy_version", result)
    }

    async fn policy_version(&self, version: &str) -> Result<Option<rein_store::PolicyVersion>, StoreError> {
        let result = self.inner.policy_version(version).await;
        self.count("policy_version", result)
    }

    async fn policy_versions(&self) -> Result<Vec<rein_store::PolicyVersionSummary>, StoreError> {
        let result = self.inner.policy_versions().await;
        self.count("policy_versions", result)
    }

    async fn activations(&self) -> Result<Vec<AuditRecord>, StoreError> {
        let result = self.inner.activations().await;
        self.count("activations", result)
    }

    async fn find_open_approval(
        &self,
        request_hash: &str,
        client: Option<&str>,
        now: &str,
    ) -> Result<Option<ApprovalRecord>, StoreError> {
        let result = self.inner.find_open_approval(request_hash, client, now).await;
        self.count("find_open_approval", result)
    }

    async fn list_client_approvals(
        &self,
        client: &str,
        state: Option<ApprovalState>,
        limit: u64,
    ) -> Result<Vec<ApprovalRecord>, StoreError> {
        let result = self.inner.list_client_approvals(client, state, limit).await;
        self.count("list_client_approvals", result)
    }

    async fn query_audit(&self, query: &AuditQuery) -> Result<Vec<AuditRecord>, StoreError> {
        let result = self.inner.query_audit(query).await;
        self.count("query_audit", result)
    }

    async fn verify_audit(&self) -> Result<Verification, StoreError> {
        let result = self.inner.verify_audit().await;
        self.count("verify_audit", result)
    }

    async fn audit_len(&self) -> Result<u64, StoreError> {
        let result = self.inner.audit_len().await;
        self.count("audit_len", result)
    }

    async fn create_approval(&self, approval: ApprovalRecord) -> Result<(), StoreError> {
        let result = self.inner.create_approval(approval).await;
        self.count("create_approval", result)
    }

    async fn get_approval(&self, id: &str) -> Result<Option<ApprovalRecord>, StoreError> {
        let result = self.inner.get_approval(id).await;
        self.count("get_approval", result)
    }

    async fn list_approvals(
        &self,
        state: Option<ApprovalState>,
        limit: u64,
    ) -> Result<Vec<ApprovalRecord>, StoreError> {
        let result = self.inner.list_approvals(state, limit).await;
        self.count("list_approvals", result)
    }

    async fn list_open_approvals(&self, now: &str, limit: u64) -> Result<Vec<ApprovalRecord>, StoreError> {
        let result = self.inner.list_open_approvals(now, limit).await;
        self.count("list_open_approvals", result)
    }

    async fn decide_approval(
        &self,
        id: &str,
        grant: bool,
        approver: &str,
        comment: Option<&str>,
        now: &str,
    ) -> Result<Result<ApprovalRecord, ApprovalError>, StoreError> {
        let result = self.inner.decide_approval(id, grant, approver, comment, now).await;
        self.count("decide_approval", result)
    }

    async fn use_approval(
        &self,
        id: &str,
        request_hash: &str,
        now: &str,
    ) -> Result<Result<ApprovalRecord, ApprovalError>, StoreError> {
        let result = self.inner.use_approval(id, request_hash, now).await;
        self.count("use_approval", result)
    }
}
