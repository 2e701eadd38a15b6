//! Rein's HTTP decision server: the [`rein_runtime::Runtime`] behind JSON
//! routes with bearer-token roles, Prometheus metrics, policy reload and
//! graceful shutdown.
//!
//! ```no_run
//! # async fn start() -> anyhow::Result<()> {
//! let config = rein_server::ServerConfig::new(vec!["policy.yaml".into()], "rein.db".into());
//! rein_server::run(config).await
//! # }
//! ```
//!
//! **Invariant: no failure reads as permission.** Every answer of the agent
//! routes (`/v1/decide`, `/v1/outcome`) that is not a recorded decision —
//! a malformed body, a refused token, a panic, a timeout — carries
//! `"effect": "block"`; a decision itself comes from the runtime, which
//! blocks on any error and records before it answers.

#![deny(missing_docs)]

mod audit_export;
mod auth;
mod body;
mod console;
mod delegation;
mod error;
mod jwt;
mod metrics;
pub mod notify;
pub mod otel;
mod pg;
mod publish;
mod routes;
mod secrets;
mod shadow;
mod versions;
mod what_can;

use anyhow::Context;
use axum::Router;
use jiff::SignedDuration;
use metrics::{MeteredStore, Metrics};
use pg::{close_postgres, open_postgres, PostgresBackend};
pub use pg::{open_shared_store, scrub_password};
use rein_engine::{LoadError, Policy};
use rein_runtime::{Runtime, RuntimeConfig};
use rein_store::{SqliteStore, Store, StoreLocation};
use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

pub use auth::{AuthRefusal, CredentialSource, Identity, Role, TokenEntry, TokenError, Tokens, MIN_TOKEN_LEN};
pub use routes::{routes, RouteInfo};
pub use secrets::{ensure_hmac_key, server_hmac_key};

/// The port the server listens on unless told otherwise.
pub const DEFAULT_PORT: u16 = 8700;

/// The number of async worker threads `rein serve` uses unless told
/// otherwise: one less than the CPUs, at least one. The audit log's writer
/// is a thread of its own that is busy whenever decisions are (SQLite, the
/// fsync of every batch), and a worker per CPU beside it costs more than it
/// gives: on 2 vCPUs, one worker answered 26,000–31,000 durable decisions
/// per second at saturation where two answered 24,000–25,000, using 42–46
/// µs of CPU per decision instead of 50–55 (two workers park and wake each
/// other around every batch). See BENCHMARKS.md.
pub fn default_workers() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get().saturating_sub(1).max(1))
}

/// Name of the tokens file created beside the database (on PostgreSQL: in
/// the current folder) when no tokens file is given.
pub const DEFAULT_TOKENS_FILE: &str = "rein-tokens.yaml";

/// Name of the audit HMAC key file created beside the database when no key
/// file is given.
pub const DEFAULT_HMAC_KEY_FILE: &str = "rein-audit.key";

/// Name of the key file that signs delegation tokens, created beside the
/// database when no key file is given.
pub const DEFAULT_DELEGATION_KEY_FILE: &str = "rein-delegation.key";

/// How the server is set up.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// Policy files or directories, loaded together (see
    /// [`Policy::load`]) at start and on every reload.
    pub policy_paths: Vec<PathBuf>,
    /// The store (audit log, approvals, state, policy versions): a SQLite
    /// file, or a PostgreSQL database shared by several replicas (TLS as
    /// its URL's `sslmode` says, the server's certificate verified against
    /// the CA file `REIN_DB_CA_FILE` names, else the system's roots).
    pub store: StoreLocation,
    /// Where to listen; `127.0.0.1:8700` by default.
    pub listen: SocketAddr,
    /// The tokens file; `None` means `rein-tokens.yaml` beside the
    /// database (on PostgreSQL: in the current folder), created with one
    /// fresh token per role if absent. Replicas on one PostgreSQL database
    /// must be given the same file.
    pub tokens_path: Option<PathBuf>,
    /// The key of the keyed hashes that replace sensitive fields in the
    /// audit log; `None` means `rein-audit.key` beside the database (on
    /// PostgreSQL: in the current folder), created if absent and the store
    /// has no records. Replicas on one PostgreSQL database must be given
    /// the same key: one with another is refused at start.
    pub hmac_key_path: Option<PathBuf>,
    /// The Ed25519 key (32 bytes) that signs and verifies delegation
    /// tokens; `None` means `rein-delegation.key` beside the database (on
    /// PostgreSQL: in the current folder), created if absent.
    pub delegation_key_path: Option<PathBuf>,
    /// Largest request body accepted, in bytes (1 MiB by default), on
    /// every route: decisions, outcomes, hook events, approvals, reloads.
    /// A larger body is refused with `413` before it is read whole (a hook
    /// event with a refusal in the agent's format); on the agent routes the
    /// refusal is recorded in the audit log.
    pub max_body_bytes: usize,
    /// How long a grant holds when the rule sets no `ttl` (1 hour by default).
    pub default_approval_ttl: SignedDuration,
    /// Longest time a request may take before it is answered `503` (and,
    /// on the agent routes, `block`); 10 seconds by default.
    pub request_timeout: Duration,
    /// How long a session is kept after its last call (24 hours by
    /// default); one idle longer starts empty.
    pub session_idle: SignedDuration,
    /// The most memory, in bytes, the state of limits and sessions may
    /// hold (512 MiB by default); a decision that would add to a full state
    /// is `block` (see [`RuntimeConfig::max_state_bytes`]).
    pub max_state_bytes: usize,
    /// Whether a request's own `time` is the decision's time (off by
    /// default: an agent that chose its clock could step around time-based
    /// rules and limit windows). For tests and trusted replays only.
    pub trust_request_time: bool,
    /// A candidate policy's files or folders, decided in shadow beside the
    /// enforced policy from the start (`rein serve --shadow`); empty for
    /// none. A candidate that does not load stops the start.
    pub shadow_paths: Vec<PathBuf>,
    /// On a shared store (PostgreSQL), publish the version of the policy
    /// files at start even when another version is published (`rein serve
    /// --publish`: a deploy of new files; every replica switches to them).
    /// Off by default: a replica then serves the version published, loaded
    /// from the store, and publishes its files only when nothing is
    /// published yet, so that one restarted with older files does not move
    /// every replica back to them.
    pub publish: bool,
    /// Mark the console's cookies `Secure` (`rein serve
    /// --console-secure-cookie`): for a console reached over HTTPS through
    /// a proxy that ends TLS. Off by default: the server itself speaks
    /// plain HTTP, and a browser would not send a `Secure` cookie back.
    pub console_secure_cookie: bool,
    /// Webhooks told of each approval this server opens (`rein serve
    /// --notify-webhook`; see [`notify`]); none by default.
    pub notify_webhooks: Vec<url::Url>,
    /// The base URL of this server for people (links to the console in
    /// notifications); `None`: the address it listens on.
    pub public_url: Option<url::Url>,
    /// The OTLP HTTP collector decisions are traced to (`rein serve
    /// --otlp-endpoint`, `OTEL_EXPORTER_OTLP_ENDPOINT`; see [`otel`]);
    /// `None`: no traces exported (the default).
    pub otlp_endpoint: Option<url::Url>,
}

impl ServerConfig {
    /// A configuration with the defaults for everything but the policy and
    /// the SQLite database.
    pub fn new(policy_paths: Vec<PathBuf>, db_path: PathBuf) -> ServerConfig {
        ServerConfig::at(policy_paths, StoreLocation::Sqlite(db_path))
    }

    /// A configuration with the defaults for everything but the policy and
    /// the store (`--db`: a SQLite file or a PostgreSQL URL).
    pub fn at(policy_paths: Vec<PathBuf>, store: StoreLocation) -> ServerConfig {
        ServerConfig {
            policy_paths,
            store,
            listen: SocketAddr::from((Ipv4Addr::LOCALHOST, DEFAULT_PORT)),
            tokens_path: None,
            hmac_key_path: None,
            delegation_key_path: None,
            max_body_bytes: 1024 * 1024,
            default_approval_ttl: SignedDuration::from_hours(1),
            request_timeout: Duration::from_secs(10),
            session_idle: rein_runtime::DEFAULT_SESSION_IDLE,
            max_state_bytes: rein_runtime::DEFAULT_MAX_STATE_BYTES,
            trust_request_time: false,
            shadow_paths: Vec::new(),
            publish: false,
            console_secure_cookie: false,
            notify_webhooks: Vec::new(),
            public_url: None,
            otlp_endpoint: None,
        }
    }

    /// The directory of the database, where default secrets are kept; on
    /// PostgreSQL, which has none, the current folder.
    fn db_dir(&self) -> PathBuf {
        match &self.store {
            StoreLocation::Sqlite(path) => match path.parent() {
                Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
                _ => PathBuf::from("."),
            },
            StoreLocation::Postgres(_) => PathBuf::from("."),
        }
    }

    /// The SQLite file, if the store is one.
    pub fn sqlite_path(&self) -> Option<&Path> {
        match &self.store {
            StoreLocation::Sqlite(path) => Some(path),
            StoreLocation::Postgres(_) => None,
        }
    }

    /// Creates the tokens file beside the store (one token per role, the
    /// file readable by its owner only) unless it exists or `tokens_path`
    /// names one, without printing the tokens: for processes other than
    /// `rein serve` that keep a store (the MCP gateway), whose approvals
    /// `rein approvals grant --db` decides with an approver's token from
    /// it. Returns whether it was created.
    /// Not on PostgreSQL, where approvals are decided through a server.
    pub fn ensure_tokens_file_quietly(&self) -> anyhow::Result<bool> {
        if self.tokens_path.is_some() || self.sqlite_path().is_none() {
            return Ok(false);
        }
        secrets::create_tokens_file(&self.tokens_file(), false)
    }

    /// The tokens file in use.
    pub fn tokens_file(&self) -> PathBuf {
        self.tokens_path
            .clone()
            .unwrap_or_else(|| self.db_dir().join(DEFAULT_TOKENS_FILE))
    }

    /// The HMAC key file in use.
    pub fn hmac_key_file(&self) -> PathBuf {
        self.hmac_key_path
            .clone()
            .unwrap_or_else(|| self.db_dir().join(DEFAULT_HMAC_KEY_FILE))
    }

    /// The delegation key file in use.
    pub fn delegation_key_file(&self) -> PathBuf {
        self.delegation_key_path
            .clone()
            .unwrap_or_else(|| self.db_dir().join(DEFAULT_DELEGATION_KEY_FILE))
    }

    /// Opens the store as `rein serve` does, for any process that decides
    /// on it (the server, the MCP gateway): the database (a SQLite file's
    /// directory must exist), the audit key (created if absent and the
    /// store has no records) and, on SQLite, the store's state lock, which
    /// this process then holds for its lifetime: no other server, hook or
    /// `rein limits` may change the state (limits, sessions) behind it. On
    /// PostgreSQL there is no lock: several processes decide on the store
    /// at once, coordinated by its state lease.
    pub async fn open_store(&self) -> anyhow::Result<OpenedStore> {
        let (backend, store): (Backend, Arc<dyn Store>) = match &self.store {
            StoreLocation::Sqlite(path) => {
                let dir = self.db_dir();
                if !dir.is_dir() {
                    anyhow::bail!(
                        "the database's directory {} does not exist (Rein creates the database file, not its directory)",
                        dir.display()
                    );
                }
                let sqlite = open_store(path).await?;
                (Backend::Sqlite(Arc::clone(&sqlite)), sqlite)
            }
            StoreLocation::Postgres(_) => {
                if let Some(warning) = pg::plain_text_warning(&self.store) {
                    tracing::warn!(store = %self.store, "{warning}");
                }
                let pg = open_postgres(&self.store).await?;
                (Backend::Postgres(Arc::clone(&pg)), pg)
            }
        };
        let records = store
            .audit_len()
            .await
            .map_err(|e| anyhow::anyhow!("{}", self.scrub(&e.to_string())))
            .with_context(|| format!("cannot read the database {}", self.store.redacted()))?;
        let hmac_key = secrets::server_hmac_key(&self.hmac_key_file(), self.hmac_key_path.is_some(), records)?;
        let state_lock = match &self.store {
            StoreLocation::Sqlite(path) => {
                let db_path = path.clone();
                let lock =
                    tokio::task::spawn_blocking(move || rein_store::StateLock::acquire(&db_path, STATE_LOCK_WAIT))
                        .await
                        .context("taking the state lock failed")?
                        .map_err(|e| anyhow::anyhow!("{}", e.0))?;
                Some(lock)
            }
            StoreLocation::Postgres(_) => None,
        };
        Ok(OpenedStore {
            store,
            backend,
            hmac_key,
            state_lock,
        })
    }

    /// `text` with the PostgreSQL URL's password, wherever it appears,
    /// replaced by `***`: an error of the driver may quote the URL.
    pub fn scrub(&self, text: &str) -> String {
        scrub_password(&self.store, text)
    }

    /// The runtime's settings this configuration gives, with the audit key.
    pub fn runtime_config(&self, hmac_key: Vec<u8>) -> RuntimeConfig {
        RuntimeConfig {
            hmac_key,
            default_approval_ttl: self.default_approval_ttl,
            session_idle: self.session_idle,
            max_state_bytes: self.max_state_bytes,
            trust_request_time: self.trust_request_time,
            ..RuntimeConfig::default()
        }
    }
}

/// A store opened by [`ServerConfig::open_store`].
pub struct OpenedStore {
    /// The store; close it ([`OpenedStore::closer`]) before exiting.
    pub store: Arc<dyn Store>,
    backend: Backend,
    /// The audit key.
    pub hmac_key: Vec<u8>,
    /// The store's state lock (SQLite only): give it to the runtime
    /// ([`Runtime::hold_state_lock`]).
    pub state_lock: Option<rein_store::StateLock>,
}

impl std::fmt::Debug for OpenedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenedStore")
            .field("shared", &self.store.is_shared())
            .field("state_lock", &self.state_lock)
            .finish_non_exhaustive()
    }
}

impl OpenedStore {
    /// A handle that closes the store ([`StoreCloser::close`]).
    pub fn closer(&self) -> StoreCloser {
        StoreCloser(self.backend.clone())
    }
}

/// Closes an opened store: what was queued is committed (SQLite: the WAL
/// is checkpointed and the writer thread joined; PostgreSQL: the writer
/// task ends and the connections close).
#[derive(Clone)]
pub struct StoreCloser(Backend);

impl StoreCloser {
    /// Closes the store; later appends fail (decisions then block).
    pub async fn close(&self) -> anyhow::Result<()> {
        match &self.0 {
            Backend::Sqlite(sqlite) => sqlite.close().await.context("the store did not close cleanly"),
            Backend::Postgres(pg) => close_postgres(pg).await,
        }
    }
}

/// The concrete store behind an [`OpenedStore`], to close it.
#[derive(Clone)]
enum Backend {
    Sqlite(Arc<SqliteStore>),
    Postgres(Arc<PostgresBackend>),
}

/// Makes a runtime over an opened store ready to decide: its audit key is
/// checked against the store (a key other than the one the store was first
/// used with is refused here, with the file to check, rather than at the
/// first decision) and its state (limits, sessions) is loaded.
pub async fn ready_runtime(runtime: &Runtime, config: &ServerConfig) -> anyhow::Result<()> {
    runtime.check_audit_key().await.with_context(|| {
        format!(
            "the audit key {} does not fit the store",
            config.hmac_key_file().display()
        )
    })?;
    runtime.open_state().await.with_context(|| {
        format!(
            "cannot load the state (limits, sessions) from {}",
            config.store.redacted()
        )
    })?;
    Ok(())
}

/// Everything the routes share. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Shared>,
}

struct Shared {
    runtime: Arc<Runtime>,
    tokens: Tokens,
    policy_paths: Vec<PathBuf>,
    metrics: Metrics,
    max_body_bytes: usize,
    request_timeout: Duration,
    /// Reloads run one at a time, so that the policy swapped in last is the
    /// one read last.
    reload_lock: tokio::sync::Mutex<()>,
    /// The store, when this state opened it, to close it cleanly.
    closer: Option<StoreCloser>,
    /// What this replica could not follow of the policy published on a
    /// shared store (see [`publish`]); `/healthz` reports it.
    publication: publish::Following,
    /// This server's own files, which hook events may never change.
    protected: rein_hooks::Protected,
    /// How a person reaches this server to grant a hook's approval (its
    /// address is known once it listens).
    grant_hint: std::sync::OnceLock<String>,
    /// The files of the candidate decided in shadow, if any (the policy
    /// itself is the runtime's).
    shadow_candidate: std::sync::Mutex<Option<shadow::Candidate>>,
    /// Candidate changes run one at a time.
    shadow_lock: tokio::sync::Mutex<()>,
    /// The web console's keys and limits.
    console: console::Console,
    /// The exporter of decision traces, when `--otlp-endpoint` is set.
    otel: Option<otel::Otel>,
}

/// The server's own files, guarded from the agents whose hook events it
/// answers.
fn protected_files(config: &ServerConfig) -> rein_hooks::Protected {
    use rein_hooks::ProtectedKind;
    let mut protected = rein_hooks::Protected::new();
    if let Some(db) = config.sqlite_path() {
        protected.add_store(db);
    }
    protected.add(&config.tokens_file(), "Rein's tokens file", ProtectedKind::Secret);
    protected.add(&config.hmac_key_file(), "Rein's audit key", ProtectedKind::Secret);
    protected.add(
        &config.delegation_key_file(),
        "Rein's delegation signing key",
        ProtectedKind::Secret,
    );
    protected.add_policies_and_executable(&config.policy_paths);
    // The candidate's files too: an agent rewriting them would choose what
    // the next policy is tried (and maybe promoted) with.
    if !config.shadow_paths.is_empty() {
        protected.add_policies_and_executable(&config.shadow_paths);
    }
    protected
}

/// The result of a successful policy reload or rollback: the activation
/// recorded (see [`rein_runtime::versions::Activated`]).
pub type Reloaded = rein_runtime::versions::Activated;

/// Why a reload was refused; the old policy keeps serving.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The policy files do not load or do not type-check.
    #[error(transparent)]
    Invalid(#[from] LoadError),
    /// The loader itself failed (it panicked or could not be run), or the
    /// activation could not be recorded.
    #[error("the policy could not be loaded: {0}")]
    Failed(String),
}

/// Why a rollback was refused; the policy in force keeps serving.
#[derive(Debug, thiserror::Error)]
pub enum RollbackError {
    /// No kept version, or several, is named so; or its sources are not
    /// kept.
    #[error(transparent)]
    Lookup(#[from] rein_runtime::versions::VersionError),
    /// The kept sources do not compile to their version (they were
    /// changed), or the activation could not be recorded.
    #[error("the rollback failed: {0}")]
    Failed(String),
}

impl AppState {
    /// Does everything [`run`] does after binding: loads the policy
    /// (refusing, with the rendered diagnostics, if it does not load),
    /// opens the store (its directory must exist), creates the default
    /// secrets if needed, reads the tokens.
    pub async fn from_config(config: &ServerConfig) -> anyhow::Result<AppState> {
        let paths = config.policy_paths.clone();
        let policy = tokio::task::spawn_blocking(move || Policy::load(&paths))
            .await
            .context("the policy loader failed")?
            .map_err(|e| anyhow::anyhow!("the policy does not load:\n{}", e.render(false)))?;
        for w in policy.warnings() {
            tracing::warn!(warning = %w, "policy warning");
        }
        // The store first: a database path that cannot be used stops the
        // start before any secret is created (and printed) for a server
        // that would never run.
        let opened = config.open_store().await?;
        // On a shared store the version published is served, unless nothing
        // is published yet or `--publish` says the files are a deploy.
        let files_version = policy.version().to_string();
        let (policy, at_start) = if opened.store.is_shared() {
            let (policy, at_start) = publish::policy_at_start(opened.store.as_ref(), policy, config.publish)
                .await
                .map_err(|e| anyhow::anyhow!("{}", config.scrub(&format!("{e:#}"))))?;
            (policy, Some(at_start))
        } else {
            (policy, None)
        };
        let tokens_file = config.tokens_file();
        if config.tokens_path.is_none() {
            secrets::ensure_tokens_file(&tokens_file)?;
        } else {
            // The tokens file holds secrets, as the keys do: say so when
            // others can read it (`ensure_tokens_file` does for the default).
            secrets::warn_if_shared(&tokens_file);
        }
        let delegation_key =
            secrets::server_delegation_key(&config.delegation_key_file(), config.delegation_key_path.is_some())?;
        let tokens = Tokens::load(&tokens_file)?.with_delegation(delegation::Verifier::new(delegation_key));
        for warning in tokens.binding_warnings(&policy) {
            tracing::warn!(tokens = %tokens_file.display(), "{warning}");
        }
        let closer = opened.closer();
        let state = AppState::build(
            config,
            policy,
            Arc::clone(&opened.store),
            tokens,
            opened.hmac_key,
            Some(closer),
        );
        if let Some(lock) = opened.state_lock {
            state.runtime().hold_state_lock(lock);
        }
        ready_runtime(state.runtime(), config).await?;
        // A candidate that does not load stops the start before anything
        // is recorded.
        state.start_shadow(config).await?;
        // Before any answer: the chain says which version served from now.
        let started = state.runtime().record_start().await.with_context(|| {
            format!(
                "the policy's activation could not be recorded in {}",
                config.store.redacted()
            )
        })?;
        tracing::info!(
            version = %started.policy_version,
            previous = started.previous_version.as_deref().unwrap_or("-"),
            audit_seq = started.audit_seq,
            "policy activated"
        );
        if let Some(at_start) = at_start {
            state.set_files_version(&files_version);
            state.publish_at_start(at_start).await?;
            state.follow_publications();
        }
        Ok(state)
    }

    /// A state over an already loaded policy and opened store; the store is
    /// wrapped to measure it. `config` gives the policy paths (for reloads)
    /// and the limits; its secret paths are not read. The store's state lock
    /// is not taken and the state is not loaded: for a stateful policy, call
    /// [`Runtime::open_state`] (until then its stateful actions block). On a
    /// shared store the policy is neither published nor followed (see
    /// [`AppState::from_config`]; [`AppState::follow_published`] follows
    /// once).
    pub fn new(
        config: &ServerConfig,
        policy: Policy,
        store: Arc<dyn Store>,
        tokens: Tokens,
        hmac_key: Vec<u8>,
    ) -> AppState {
        AppState::build(config, policy, store, tokens, hmac_key, None)
    }

    fn build(
        config: &ServerConfig,
        policy: Policy,
        store: Arc<dyn Store>,
        tokens: Tokens,
        hmac_key: Vec<u8>,
        closer: Option<StoreCloser>,
    ) -> AppState {
        let metrics = Metrics::new();
        let store: Arc<dyn Store> = Arc::new(MeteredStore::new(store, metrics.clone()));
        let console = console::Console::new(&hmac_key, config.console_secure_cookie)
            .with_public_origin(config.public_url.as_ref().map(|u| u.origin().ascii_serialization()));
        let runtime_config = config.runtime_config(hmac_key);
        let otel = config.otlp_endpoint.as_ref().and_then(|endpoint| match otel::Otel::start(endpoint) {
            Ok(otel) => {
                tracing::info!(endpoint = %notify::redacted(endpoint), "decision traces exported over OTLP/HTTP");
                Some(otel)
            }
            Err(e) => {
                tracing::error!(endpoint = %notify::redacted(endpoint), error = %e, "the trace exporter could not start; no traces are exported");
                None
            }
        });
        AppState {
            inner: Arc::new(Shared {
                runtime: Arc::new(Runtime::new(policy, store, runtime_config)),
                tokens,
                policy_paths: config.policy_paths.clone(),
                metrics,
                max_body_bytes: config.max_body_bytes,
                request_timeout: config.request_timeout,
                reload_lock: tokio::sync::Mutex::new(()),
                closer,
                publication: publish::Following::default(),
                protected: protected_files(config),
                grant_hint: std::sync::OnceLock::new(),
                shadow_candidate: std::sync::Mutex::new(None),
                shadow_lock: tokio::sync::Mutex::new(()),
                console,
                otel,
            }),
        }
    }

    /// The exporter of decision traces, if traces are exported.
    pub(crate) fn otel(&self) -> Option<&otel::Otel> {
        self.inner.otel.as_ref()
    }

    /// Sends the decision traces queued so far to the collector (they go
    /// in batches every few seconds otherwise); nothing without one.
    pub async fn flush_traces(&self) {
        let state = self.clone();
        let _ = tokio::task::spawn_blocking(move || {
            if let Some(otel) = state.otel() {
                otel.flush();
            }
        })
        .await;
    }

    /// Starts announcing each approval this server opens to the webhooks
    /// of `config` (see [`notify`]); nothing without webhooks.
    pub fn start_notifications(&self, config: notify::NotifyConfig) -> anyhow::Result<()> {
        notify::start(self.runtime(), config, self.metrics().clone())
    }

    /// Loads the candidate `config.shadow_paths` names, if any, and sets it
    /// in shadow (`rein serve --shadow`); one that does not load is an
    /// error with its rendered diagnostics.
    pub async fn start_shadow(&self, config: &ServerConfig) -> anyhow::Result<()> {
        if config.shadow_paths.is_empty() {
            return Ok(());
        }
        let policy = match shadow::load_candidate(config.shadow_paths.clone()).await {
            Ok(policy) => policy,
            Err(Ok(e)) => anyhow::bail!("the shadow candidate does not load:\n{}", e.render(false)),
            Err(Err(e)) => anyhow::bail!("the shadow candidate could not be loaded: {e}"),
        };
        tracing::info!(version = %policy.version(), "shadow candidate set");
        self.runtime().set_shadow(Some(policy));
        self.set_shadow_candidate(Some(shadow::Candidate {
            paths: config.shadow_paths.clone(),
        }));
        Ok(())
    }

    pub(crate) fn shadow_lock(&self) -> &tokio::sync::Mutex<()> {
        &self.inner.shadow_lock
    }

    pub(crate) fn shadow_candidate(&self) -> Option<shadow::Candidate> {
        self.inner
            .shadow_candidate
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    pub(crate) fn set_shadow_candidate(&self, candidate: Option<shadow::Candidate>) {
        *self
            .inner
            .shadow_candidate
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = candidate;
    }

    /// The runtime the routes call.
    pub fn runtime(&self) -> &Arc<Runtime> {
        &self.inner.runtime
    }

    /// The accepted tokens.
    pub fn tokens(&self) -> &Tokens {
        &self.inner.tokens
    }

    pub(crate) fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// The files a hook event may never change (see
    /// [`rein_hooks::Protected`]): the store, its secrets, the policy files
    /// and this executable.
    pub(crate) fn protected(&self) -> &rein_hooks::Protected {
        &self.inner.protected
    }

    /// The options `rein approvals grant ID` needs to reach this server,
    /// shown in a hook's "approval pending" answer.
    pub(crate) fn grant_hint(&self) -> &str {
        self.inner.grant_hint.get().map_or(
            "--server <this server's URL> --token <an approver's token>",
            String::as_str,
        )
    }

    pub(crate) fn console(&self) -> &console::Console {
        &self.inner.console
    }

    pub(crate) fn max_body_bytes(&self) -> usize {
        self.inner.max_body_bytes
    }

    /// Stops the following of published policies and the store this state
    /// opened (see [`AppState::from_config`]): what was queued is committed
    /// (SQLite: the WAL is checkpointed, the writer thread is joined;
    /// PostgreSQL: the state lease is given up, the connections closed).
    /// Later decisions cannot be recorded and so block. Does nothing to the
    /// store of a state built with [`AppState::new`].
    pub async fn close(&self) -> anyhow::Result<()> {
        self.inner.publication.stop();
        if let Some(closer) = &self.inner.closer {
            closer.close().await?;
            // Nothing more is written: another process may keep the state.
            self.runtime().release_state_lock();
        }
        Ok(())
    }

    /// Loads and type-checks the policy files again and, if they are
    /// valid, swaps the new policy in atomically, recording the activation
    /// (its sources kept, an activation record by `by`: the admin token's
    /// name, or `sighup`). On failure the old policy keeps serving and
    /// nothing is recorded in the audit log (a refused reload changed
    /// nothing; it is logged and counted in `rein_policy_reloads_total`).
    pub async fn reload_policy(&self, by: &str) -> Result<Reloaded, ReloadError> {
        let _one_at_a_time = self.inner.reload_lock.lock().await;
        let paths = self.inner.policy_paths.clone();
        let loaded = tokio::task::spawn_blocking(move || Policy::load(&paths)).await;
        if let Ok(Ok(policy)) = &loaded {
            self.set_files_version(policy.version());
        }
        let result = match loaded {
            // A stateful policy is served only once its state is loaded
            // (and the older history a longer `max_window` reads).
            Ok(Ok(policy)) => match self
                .runtime()
                .activate(policy, by, rein_store::ActivationCause::Reload)
                .await
            {
                Ok(activated) => self
                    .publish(&activated)
                    .await
                    .map(|()| activated)
                    .map_err(ReloadError::Failed),
                Err(e) => Err(ReloadError::Failed(format!("the activation failed: {e}"))),
            },
            Ok(Err(e)) => Err(ReloadError::Invalid(e)),
            Err(e) => Err(ReloadError::Failed(e.to_string())),
        };
        self.metrics().reload(result.is_ok());
        match &result {
            Ok(r) => tracing::info!(
                version = %r.policy_version,
                previous = r.previous_version.as_deref().unwrap_or("-"),
                by,
                "policy reloaded"
            ),
            Err(ReloadError::Invalid(e)) => {
                tracing::error!(
                    by,
                    "policy reload refused; the old policy keeps serving:\n{}",
                    e.render(false)
                );
            }
            Err(e) => tracing::error!(error = %e, by, "policy reload failed; the old policy keeps serving"),
        }
        result
    }

    /// Swaps in the kept version `given` names (its hash, a unique prefix
    /// of it, or its label), as a reload does: its kept sources checked
    /// against its hash and compiled again, the state it reads loaded, its
    /// activation recorded (cause `rollback`, by `by`). It serves until the
    /// next reload, which reads the policy files again. On failure the
    /// policy in force keeps serving and nothing is recorded.
    pub async fn rollback_policy(&self, given: &str, by: &str) -> Result<Reloaded, RollbackError> {
        let _one_at_a_time = self.inner.reload_lock.lock().await;
        let result = self.rollback_locked(given, by).await;
        match &result {
            Ok(r) => tracing::info!(
                version = %r.policy_version,
                previous = r.previous_version.as_deref().unwrap_or("-"),
                by,
                "policy rolled back"
            ),
            Err(e) => tracing::error!(error = %e, by, "policy rollback refused; the policy in force keeps serving"),
        }
        result
    }

    async fn rollback_locked(&self, given: &str, by: &str) -> Result<Reloaded, RollbackError> {
        let store = Arc::clone(self.runtime().store());
        let current = self.runtime().policy().version().to_string();
        let history = rein_runtime::versions::history(store.as_ref(), Some(&current))
            .await
            .map_err(|e| RollbackError::Lookup(e.into()))?;
        let found =
            rein_runtime::versions::resolve_version(&history, given).map_err(|e| RollbackError::Lookup(e.into()))?;
        let version = found.version.clone();
        let kept = store
            .policy_version(&version)
            .await
            .map_err(|e| RollbackError::Lookup(e.into()))?
            .ok_or_else(|| RollbackError::Lookup(rein_runtime::versions::VersionError::NotKept(version.clone())))?;
        let compiled =
            tokio::task::spawn_blocking(move || Policy::from_kept_sources(&kept.sources, &kept.version)).await;
        let policy = match compiled {
            Ok(Ok(policy)) => policy,
            Ok(Err(e)) => return Err(RollbackError::Failed(e.to_string())),
            Err(e) => return Err(RollbackError::Failed(e.to_string())),
        };
        let activated = self
            .runtime()
            .activate(policy, by, rein_store::ActivationCause::Rollback)
            .await
            .map_err(|e| RollbackError::Failed(format!("the activation failed: {e}")))?;
        self.publish(&activated).await.map_err(RollbackError::Failed)?;
        Ok(activated)
    }
}

/// Opens the SQLite store off the async threads (it may migrate the file).
async fn open_store(path: &Path) -> anyhow::Result<Arc<SqliteStore>> {
    let owned = path.to_path_buf();
    // The store's error names the file and the reason.
    let store = tokio::task::spawn_blocking(move || SqliteStore::open(owned))
        .await
        .context("the store could not be opened")?
        .map_err(|e| anyhow::anyhow!("{}", e.0))?;
    Ok(Arc::new(store))
}

/// The router with every route and layer, over `state`. Serve it with
/// [`serve`], or call it in-process.
pub fn app(state: AppState) -> Router {
    routes::router(state)
}

/// Serves `state` on `listener` until `shutdown` completes, then stops
/// accepting and lets requests under way finish.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
    use hyper_util::server::conn::auto::Builder;
    use hyper_util::server::graceful::GracefulShutdown;
    use hyper_util::service::TowerToHyperService;

    // Without a timer hyper waits for a request's headers forever: one
    // byte every few seconds held a connection (and its file descriptor)
    // open without end, before any token is checked. The headers get the
    // request timeout, as the body and the answer do (`TimeoutLayer`).
    let timeout = state.inner.request_timeout;
    let console_state = state.clone();
    let app = app(state);
    let mut builder = Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).header_read_timeout(timeout);
    // An HTTP/2 peer that stops answering pings is dropped.
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(timeout)
        .keep_alive_timeout(timeout);
    let connections = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of file descriptors, say: wait rather than spin.
                tracing::warn!(error = %e, "accepting a connection failed");
                tokio::time::sleep(ACCEPT_RETRY).await;
                continue;
            }
        };
        let service = TowerToHyperService::new(app.clone());
        let connection = builder
            .serve_connection_with_upgrades(TokioIo::new(stream), service)
            .into_owned();
        let connection = connections.watch(connection);
        tokio::spawn(async move {
            let _ = connection.await;
        });
    }
    drop(listener);
    // The console's event streams never finish by themselves.
    console_state.console().close_streams();
    // Requests under way finish; idle connections are closed.
    connections.shutdown().await;
    Ok(())
}

/// How long to wait after a failed `accept` (no file descriptor left).
const ACCEPT_RETRY: Duration = Duration::from_millis(100);

/// Runs the server: loads the policy (refusing to start, with the rendered
/// diagnostics, if it does not load), opens the store, reads the tokens,
/// binds `config.listen`, and serves until SIGINT or SIGTERM. SIGHUP
/// reloads the policy.
pub async fn run(config: ServerConfig) -> anyhow::Result<()> {
    // Signal handlers first: until they exist, SIGHUP or SIGTERM would kill
    // the process, and a reload sent right after start would take it down.
    let signals = Signals::install()?;
    // Bound before anything is loaded or created: an address in use stops
    // the start before secrets are made for a server that cannot run.
    let listener = TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let state = AppState::from_config(&config).await?;
    let addr = listener.local_addr().unwrap_or(config.listen);
    let _ = state
        .inner
        .grant_hint
        .set(format!("--server http://{addr} --token <an approver's token>"));
    let policy = state.runtime().policy();
    tracing::info!(
        %addr,
        store = %config.store,
        policy_version = %policy.version(),
        policy_label = policy.version_label().unwrap_or("-"),
        tokens = %config.tokens_file().display(),
        "rein server listening"
    );
    if config.trust_request_time {
        tracing::warn!("requests' own `time` decides (--trust-request-time): only for trusted callers");
    }
    if !config.notify_webhooks.is_empty() {
        let public_url = match &config.public_url {
            Some(url) => url.clone(),
            None => {
                if addr.ip().is_unspecified() {
                    tracing::warn!(%addr, "notifications link to the listen address, which people cannot open; set --public-url");
                }
                url::Url::parse(&format!("http://{addr}")).context("the listen address is not a URL")?
            }
        };
        tracing::info!(webhooks = config.notify_webhooks.len(), public_url = %public_url, "approvals are announced to webhooks");
        state.start_notifications(notify::NotifyConfig {
            webhooks: config.notify_webhooks.clone(),
            public_url,
            retry: notify::Retry::default(),
        })?;
    }
    let Signals { hangup, stop } = signals;
    let reloader = tokio::spawn(reload_on_sighup(state.clone(), hangup));
    let pruner = tokio::spawn(prune_state(state.clone()));
    let served = serve(listener, state.clone(), stop).await;
    reloader.abort();
    pruner.abort();
    // Every connection is closed by now: flush the store before exiting.
    let closed = state.close().await;
    // And the traces queued (the exporter blocks: off the async workers).
    let exporter = state.clone();
    let _ = tokio::task::spawn_blocking(move || {
        if let Some(otel) = exporter.otel() {
            otel.shutdown();
        }
    })
    .await;
    tracing::info!("rein server stopped");
    served.and(closed)
}

/// One limit bucket as `GET /v1/limits` and `rein limits list --json` show
/// it: amounts as exact decimal text, the bucket's id (what a reset takes)
/// and its description.
pub fn bucket_json(status: &rein_engine::BucketStatus) -> serde_json::Value {
    serde_json::json!({
        "rule": status.rule,
        "bucket": status.bucket.id(),
        "describe": status.bucket.describe(),
        "used": status.used.normalize().to_string(),
        "max": status.max.normalize().to_string(),
        "window_seconds": status.window.as_secs(),
        "next_free": status.next_free.map(|t| t.to_string()),
    })
}

/// How long the server waits at start for the store's state lock (a hook
/// process deciding on the same store holds it for a moment).
const STATE_LOCK_WAIT: Duration = Duration::from_secs(5);

/// How often the state is pruned (memory and store).
const PRUNE_EVERY: Duration = Duration::from_secs(60);

/// Prunes the state every [`PRUNE_EVERY`]: what no window can read any
/// more, and sessions idle longer than `--session-idle`, so that memory
/// and the file stay bounded.
async fn prune_state(state: AppState) {
    prune_state_every_minute(Arc::clone(state.runtime())).await;
}

/// Prunes a runtime's state every minute, for as long as it runs (spawn
/// it; abort it at shutdown): what no window can read any more, and
/// sessions idle longer than the runtime's `session_idle`, so that memory
/// and the file stay bounded.
pub async fn prune_state_every_minute(runtime: Arc<Runtime>) {
    let mut every = tokio::time::interval(PRUNE_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    every.tick().await; // the first tick is now; the state was just loaded
    loop {
        every.tick().await;
        match runtime.prune_state(jiff::Timestamp::now()).await {
            Ok((memory, stored)) if memory + stored > 0 => {
                tracing::debug!(memory, stored, "state pruned");
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "pruning the state failed; it is tried again in a minute"),
        }
    }
}

/// The process's signal handlers, installed before anything else.
struct Signals {
    #[cfg(unix)]
    hangup: tokio::signal::unix::Signal,
    #[cfg(not(unix))]
    hangup: (),
    stop: std::pin::Pin<Box<dyn Future<Output = ()> + Send>>,
}

impl Signals {
    #[cfg(unix)]
    fn install() -> anyhow::Result<Signals> {
        use tokio::signal::unix::{signal, SignalKind};
        let hangup = signal(SignalKind::hangup()).context("cannot install the SIGHUP handler")?;
        let mut interrupt = signal(SignalKind::interrupt()).context("cannot install the SIGINT handler")?;
        let mut terminate = signal(SignalKind::terminate()).context("cannot install the SIGTERM handler")?;
        let stop = Box::pin(async move {
            tokio::select! {
                _ = interrupt.recv() => tracing::info!("SIGINT: shutting down"),
                _ = terminate.recv() => tracing::info!("SIGTERM: shutting down"),
            }
        });
        Ok(Signals { hangup, stop })
    }

    #[cfg(not(unix))]
    fn install() -> anyhow::Result<Signals> {
        let stop = Box::pin(async {
            let _ = tokio::signal::ctrl_c().await;
            tracing::info!("Ctrl-C: shutting down");
        });
        Ok(Signals { hangup: (), stop })
    }
}

#[cfg(unix)]
async fn reload_on_sighup(state: AppState, mut hangups: tokio::signal::unix::Signal) {
    while hangups.recv().await.is_some() {
        tracing::info!("SIGHUP: reloading the policy");
        // The outcome is logged (and counted) by `reload_policy`.
        let _ = state.reload_policy("sighup").await;
    }
}

#[cfg(not(unix))]
async fn reload_on_sighup(_state: AppState, _hangup: ()) {}
