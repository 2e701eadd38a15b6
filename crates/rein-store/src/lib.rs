//! What Rein keeps between decisions: the tamper-evident audit log and the
//! approvals, behind the [`Store`] trait. [`SqliteStore`] is the embedded
//! default (one file, WAL mode, group commit); a PostgreSQL backend for
//! several replicas implements the same trait.
//!
//! The store is the only crate that talks to a database. It records what
//! it is given and never decides anything.

#![deny(missing_docs)]

mod approval_gate;
pub mod chain;
mod lock;
mod model;
mod postgres;
pub mod redact;
pub(crate) mod rule_index;
pub mod seal;
mod sqlite;
pub mod versions;

pub use lock::StateLock;
pub use model::{
    ActorSources, ApprovalError, ApprovalRecord, ApprovalState, AuditEntry, AuditQuery, AuditRecord, CandidateRecord,
    ShadowRecord, ShadowRulesRecord, StoredStateSize, Verification,
};
pub use postgres::{PostgresOptions, PostgresStore, CA_FILE_ENV as POSTGRES_CA_FILE_ENV};
pub use rein_engine::state::StateWrite;
pub use sqlite::{SqliteOptions, SqliteStore};
pub use versions::{Activation, ActivationCause, PolicyVersion, PolicyVersionSummary};

/// A failure of the storage itself (I/O, a corrupt file, a closed writer).
/// Callers fail closed on it: a decision that cannot be recorded is `block`.
#[derive(Debug, thiserror::Error)]
#[error("store error: {0}")]
pub struct StoreError(pub String);

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError(e.to_string())
    }
}

/// What a store that keeps no state answers to a state operation.
const NO_STATE: &str = "this store keeps no state";

/// What a store that keeps no policy versions answers.
const NO_VERSIONS: &str = "this store keeps no policy versions";

/// What a store used by one process only answers to the operations that
/// coordinate several (the state lease, policy publication).
const NOT_SHARED: &str = "this store is used by one process only (it has no state lease and publishes no policy)";

/// What a store that cannot take records verbatim answers to an import.
const NO_IMPORT: &str = "this store cannot import records";

/// Where a store lives, as `--db` or `REIN_DB` names it: a PostgreSQL URL
/// (`postgres://` or `postgresql://`), otherwise the path of a SQLite file.
#[derive(Clone, PartialEq, Eq)]
pub enum StoreLocation {
    /// A SQLite file (the embedded default).
    Sqlite(std::path::PathBuf),
    /// A PostgreSQL database, by its connection URL (which may hold a
    /// password: show it with [`StoreLocation::redacted`]).
    Postgres(String),
}

impl StoreLocation {
    /// Reads `--db`'s value.
    pub fn parse(value: &str) -> StoreLocation {
        if value.starts_with("postgres://") || value.starts_with("postgresql://") {
            StoreLocation::Postgres(value.to_string())
        } else {
            StoreLocation::Sqlite(std::path::PathBuf::from(value))
        }
    }

    /// The location as it may be shown (logs, errors, `/healthz`): the URL
    /// rebuilt without its secrets, each replaced by `***`: the password of
    /// its user info and the values of secret-bearing query parameters
    /// (`password`, `sslpassword`, any whose name holds `pass`, `secret` or
    /// `token`; names read percent-decoded, in any case).
    pub fn redacted(&self) -> String {
        match self {
            StoreLocation::Sqlite(path) => path.display().to_string(),
            StoreLocation::Postgres(url) => redact_url_password(url),
        }
    }

    /// The secrets of a PostgreSQL URL as written in it (percent-encoded
    /// where it is): what [`StoreLocation::redacted`] hides, for a caller
    /// that must also hide them from other text (a driver's error may
    /// quote them). Empty for a SQLite file.
    pub fn secrets(&self) -> Vec<String> {
        match self {
            StoreLocation::Sqlite(_) => Vec::new(),
            StoreLocation::Postgres(url) => url_without_secrets(url).1,
        }
    }
}

impl std::fmt::Debug for StoreLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "StoreLocation({})", self.redacted())
    }
}

impl std::fmt::Display for StoreLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.redacted())
    }
}

/// `scheme://user:secret@host/db?sslmode=require&password=secret` →
/// `scheme://user:***@host/db?sslmode=require&password=***`.
fn redact_url_password(url: &str) -> String {
    url_without_secrets(url).0
}

/// Whether a URL query parameter (its name percent-decoded) carries a
/// secret: libpq's `password` and `sslpassword`, and, not to depend on a
/// list, any name that says so.
fn is_secret_parameter(name: &str) -> bool {
    let name = percent_decode_lossy(name).to_ascii_lowercase();
    ["pass", "secret", "token"].iter().any(|word| name.contains(word))
}

/// `text` with its `%XX` escapes decoded (invalid UTF-8 replaced).
fn percent_decode_lossy(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = (bytes[i] == b'%')
            .then(|| bytes.get(i + 1..i + 3))
            .flatten()
            .and_then(|hex| std::str::from_utf8(hex).ok())
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match escaped {
            Some(b) => {
                out.push(b);
                i += 3;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The URL as it may be shown, and its secrets as written.
///
/// The user info ends, as RFC 3986 reads it, at the authority's last `@`;
/// the driver (tokio-postgres) reads it up to the URL's FIRST `@`, even
/// past a `/` or `?` (a password with an unencoded `/`). When the two
/// disagree (the authority has no `@` but the URL has one) everything
/// before that `@` is hidden: it may hold a password either way.
fn url_without_secrets(url: &str) -> (String, Vec<String>) {
    let Some((scheme, rest)) = url.split_once("://") else {
        return (url.to_string(), Vec::new());
    };
    let mut secrets = Vec::new();
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (shown_userinfo, after) = match rest[..authority_end].rfind('@') {
        Some(at) => {
            let userinfo = &rest[..at];
            let shown = match userinfo.split_once(':') {
                Some((user, secret)) => {
                    secrets.push(secret.to_string());
                    format!("{user}:***")
                }
                None => userinfo.to_string(),
            };
            (Some(shown), &rest[at + 1..])
        }
        None => match rest.find('@') {
            Some(at) => {
                let region = &rest[..at];
                secrets.push(region.to_string());
                if let Some((_, secret)) = region.split_once(':') {
                    secrets.push(secret.to_string());
                }
                // Secret parameters inside it are hidden from other text too.
                if let Some((_, query)) = region.split_once('?') {
                    secret_parameters(query, &mut secrets);
                }
                (Some("***".to_string()), &rest[at + 1..])
            }
            None => (None, rest),
        },
    };
    let shown_rest = match after.split_once('?') {
        Some((before, query)) => format!("{before}?{}", secret_parameters(query, &mut secrets)),
        None => after.to_string(),
    };
    secrets.retain(|s| !s.is_empty());
    let shown = match shown_userinfo {
        Some(userinfo) => format!("{scheme}://{userinfo}@{shown_rest}"),
        None => format!("{scheme}://{shown_rest}"),
    };
    (shown, secrets)
}

/// `query` with the values of its secret parameters replaced by `***`;
/// the values are added to `secrets`.
fn secret_parameters(query: &str, secrets: &mut Vec<String>) -> String {
    query
        .split('&')
        .map(|parameter| match parameter.split_once('=') {
            Some((name, value)) if is_secret_parameter(name) => {
                secrets.push(value.to_string());
                format!("{name}=***")
            }
            _ => parameter.to_string(),
        })
        .collect::<Vec<_>>()
        .join("&")
}

/// What a process is given when it takes a shared store's state lease
/// ([`Store::acquire_state_lease`]): while it holds the lease no other
/// process decides on the state (limits, sessions), so it decides against
/// its own copy brought up to date with `writes`.
#[derive(Clone, Debug, PartialEq)]
pub struct StateLease {
    /// The lease's number, higher than every earlier lease's: every append
    /// decided under the lease carries it ([`Store::append_leased`]), and
    /// the store refuses it once another lease was taken.
    pub generation: u64,
    /// The state changed in a way the writes do not replay (limits reset
    /// by an operator, a migration): the caller loads it whole again with
    /// [`Store::load_state`] and `writes` is empty.
    pub reload: bool,
    /// What other processes wrote to the state in records after the
    /// `after_seq` the lease was asked with, in the order of their records.
    pub writes: Vec<StateWrite>,
    /// The seq of the newest record of the log when the lease was taken:
    /// every state write of a record up to it is in the store (and in
    /// `writes` if after `after_seq`).
    pub seen_seq: u64,
}

/// The operations the runtime needs from storage. Every method is atomic;
/// `append` returns only once the record is durable.
#[async_trait::async_trait]
pub trait Store: Send + Sync + 'static {
    /// Appends one entry to the audit log, chained to the previous record,
    /// and returns it as stored once it is durable (fsync). Concurrent
    /// appends are batched into one transaction and one fsync (group
    /// commit); their order in the chain is their order of arrival.
    async fn append(&self, entry: AuditEntry) -> Result<AuditRecord, StoreError>;

    /// Appends `entry` as [`Store::append`] does, unless the log already
    /// holds a record of the same decision and phase: then nothing is
    /// written and the answer is `Ok(None)` (an outcome is reported once).
    /// The check and the append are one step: of concurrent callers,
    /// exactly one appends. (No default: a wrapper must forward it, not
    /// lose its atomicity.)
    async fn append_once(&self, entry: AuditEntry) -> Result<Option<AuditRecord>, StoreError>;

    /// Appends `entry` as [`Store::append`] does, and persists `writes`
    /// (the state changes of its decision) in the same transaction: after
    /// a crash, both are there or neither is. With no writes it is exactly
    /// [`Store::append`]. Every write must name `entry`'s decision (a
    /// write of another decision is refused, with the record), so that no
    /// state row is ever kept without its own decision's record. The
    /// default refuses writes: a store that keeps no state must not drop
    /// them silently.
    async fn append_with_state(&self, entry: AuditEntry, writes: Vec<StateWrite>) -> Result<AuditRecord, StoreError> {
        if writes.is_empty() {
            return self.append(entry).await;
        }
        Err(StoreError(NO_STATE.into()))
    }

    /// [`Store::append_once`] with `writes`, as [`Store::append_with_state`]:
    /// an append refused as a duplicate (`Ok(None)`) writes none of them.
    async fn append_once_with_state(
        &self,
        entry: AuditEntry,
        writes: Vec<StateWrite>,
    ) -> Result<Option<AuditRecord>, StoreError> {
        if writes.is_empty() {
            return self.append_once(entry).await;
        }
        Err(StoreError(NO_STATE.into()))
    }

    /// The state kept, as the writes that rebuild it, in time order: limit
    /// uses at or after `window_start`; for each session written to at or
    /// after `idle_start`, its calls at or after `window_start` (each one's
    /// output, if reported, as an [`StateWrite::Output`] right after it)
    /// and all its labels. The default refuses: a stateful policy on a
    /// store without state must fail, not start empty.
    async fn load_state(
        &self,
        window_start: jiff::Timestamp,
        idle_start: jiff::Timestamp,
    ) -> Result<Vec<StateWrite>, StoreError> {
        let _ = (window_start, idle_start);
        Err(StoreError(NO_STATE.into()))
    }

    /// Removes what [`Store::load_state`] would no longer return: limit
    /// uses and calls before `window_start`, sessions last written to
    /// before `idle_start` with their calls and labels. Returns the number
    /// of rows removed.
    async fn prune_state(&self, window_start: jiff::Timestamp, idle_start: jiff::Timestamp) -> Result<u64, StoreError> {
        let _ = (window_start, idle_start);
        Err(StoreError(NO_STATE.into()))
    }

    /// On a store shared by several processes: records that this process
    /// reads the state `max_window` and `session_idle` back (a monotone
    /// maximum the store keeps) and returns the widest of each any process
    /// has recorded. Whoever prunes a shared store prunes with those: a
    /// process serving a policy of a narrower window must not delete what
    /// another still counts. The default (a store of one process) returns
    /// its arguments. A wrapper store must forward it.
    async fn widest_state_spans(
        &self,
        max_window: jiff::SignedDuration,
        session_idle: jiff::SignedDuration,
    ) -> Result<(jiff::SignedDuration, jiff::SignedDuration), StoreError> {
        Ok((max_window, session_idle))
    }

    /// On a store shared by several processes: the database's clock now.
    /// Whoever prunes a shared store bounds what it drops by it, not by its
    /// own clock alone (a replica whose clock runs ahead would delete what
    /// the others still count). `None` (the default: a store of one
    /// process) when there is no such clock. A wrapper store must forward it.
    async fn database_now(&self) -> Result<Option<jiff::Timestamp>, StoreError> {
        Ok(None)
    }

    /// Removes the limit uses of `rule`'s buckets, or of the one bucket
    /// whose id ([`rein_engine::state::BucketKey::id`]) is `bucket`, or
    /// both filters; every use when neither is given. Returns the number
    /// of uses removed.
    async fn reset_limits(&self, rule: Option<String>, bucket: Option<String>) -> Result<u64, StoreError> {
        let _ = (rule, bucket);
        Err(StoreError(NO_STATE.into()))
    }

    /// How much state the store keeps.
    async fn state_size(&self) -> Result<StoredStateSize, StoreError> {
        Err(StoreError(NO_STATE.into()))
    }

    /// Whether several processes may decide on this store at once
    /// (PostgreSQL): their state is then coordinated by the state lease
    /// ([`Store::acquire_state_lease`]) and their policy by publication
    /// ([`Store::publish_policy`]), not by a lock file.
    fn is_shared(&self) -> bool {
        false
    }

    /// Waits until this process holds the store's state lease (one
    /// process at a time), and returns what other processes wrote to the
    /// state in records after `after_seq` (0: everything; see
    /// [`StateLease`]). Dropping the connection that holds it (a process
    /// killed) gives it up.
    async fn acquire_state_lease(&self, after_seq: u64) -> Result<StateLease, StoreError> {
        let _ = after_seq;
        Err(StoreError(NOT_SHARED.into()))
    }

    /// Gives up the lease `generation`, once every append decided under it
    /// has returned.
    async fn release_state_lease(&self, generation: u64) -> Result<(), StoreError> {
        let _ = generation;
        Err(StoreError(NOT_SHARED.into()))
    }

    /// [`Store::append_with_state`] (or, with `once`,
    /// [`Store::append_once_with_state`]) for a decision taken under the
    /// lease `generation`: refused, with nothing written, unless that lease
    /// is still the newest, checked in the append's own transaction (a
    /// process whose lease was lost without its knowing must not record
    /// decisions taken against a state others have since changed).
    async fn append_leased(
        &self,
        entry: AuditEntry,
        writes: Vec<StateWrite>,
        once: bool,
        generation: u64,
    ) -> Result<Option<AuditRecord>, StoreError> {
        let _ = (entry, writes, once, generation);
        Err(StoreError(NOT_SHARED.into()))
    }

    /// Publishes the policy version (full hash, kept with
    /// [`Store::save_policy_version`]) every process of a shared store
    /// serves, and wakes them ([`Store::policy_publications`]).
    async fn publish_policy(&self, version: &str) -> Result<(), StoreError> {
        let _ = version;
        Err(StoreError(NOT_SHARED.into()))
    }

    /// The version published last, if any.
    async fn published_policy(&self) -> Result<Option<String>, StoreError> {
        Err(StoreError(NOT_SHARED.into()))
    }

    /// A channel whose value changes (to the version) when a version is
    /// published, as soon as the store hears of it; `None` when the store
    /// cannot tell (poll [`Store::published_policy`] then). Callers poll
    /// as well: a notification can be lost with a connection.
    fn policy_publications(&self) -> Option<tokio::sync::watch::Receiver<Option<String>>> {
        None
    }

    /// Adds `records` to the log as they are (seq, hashes and all), for a
    /// migration from another store: refused unless the first follows the
    /// log's newest record (its seq the next, its `prev_hash` that
    /// record's hash) and each the one before it.
    async fn import_records(&self, records: Vec<AuditRecord>) -> Result<(), StoreError> {
        let _ = records;
        Err(StoreError(NO_IMPORT.into()))
    }

    /// Adds approvals as they are (any state), for a migration; refuses an
    /// id the store has.
    async fn import_approvals(&self, approvals: Vec<ApprovalRecord>) -> Result<(), StoreError> {
        let _ = approvals;
        Err(StoreError(NO_IMPORT.into()))
    }

    /// Adds the state `writes` (as [`Store::load_state`] returns them) for
    /// a migration: each must name a decision recorded in the log.
    async fn import_state(&self, writes: Vec<StateWrite>) -> Result<(), StoreError> {
        let _ = writes;
        Err(StoreError(NO_IMPORT.into()))
    }

    /// Keeps a policy version's sources (see [`versions`]), durably, unless
    /// intact ones are kept already; refuses sources that do not hash to
    /// the version. A server calls it before it records the activation.
    /// The default refuses: a store that keeps none must say so.
    async fn save_policy_version(&self, version: &PolicyVersion) -> Result<(), StoreError> {
        let _ = version;
        Err(StoreError(NO_VERSIONS.into()))
    }

    /// The kept sources of the version whose full hash is `version`,
    /// `None` if none are kept. Sources that no longer hash to the version
    /// are an error, never returned.
    async fn policy_version(&self, version: &str) -> Result<Option<PolicyVersion>, StoreError> {
        let _ = version;
        Err(StoreError(NO_VERSIONS.into()))
    }

    /// Every kept version, newest first, without texts, each marked
    /// whether its texts still hash to it.
    async fn policy_versions(&self) -> Result<Vec<PolicyVersionSummary>, StoreError> {
        Err(StoreError(NO_VERSIONS.into()))
    }

    /// The activation records (phase `activate`), in sequence order. The
    /// default pages through [`Store::query_audit`]; a store should use an
    /// index.
    async fn activations(&self) -> Result<Vec<AuditRecord>, StoreError> {
        let mut out = Vec::new();
        let mut after_seq = 0;
        loop {
            let page = self
                .query_audit(&AuditQuery {
                    after_seq: Some(after_seq),
                    limit: Some(10_000),
                    ..AuditQuery::default()
                })
                .await?;
            let Some(last) = page.last() else { break };
            after_seq = last.seq;
            out.extend(page.into_iter().filter(|r| r.entry.phase == versions::ACTIVATE_PHASE));
        }
        Ok(out)
    }

    /// Records `fingerprint` as the fingerprint of the store's audit key
    /// if it has none yet, and returns the one it keeps (the first ever
    /// recorded): the caller compares.
    async fn bind_key_fingerprint(&self, fingerprint: &str) -> Result<String, StoreError>;

    /// The fingerprint of the audit key the store was first used with, if
    /// one was recorded.
    async fn key_fingerprint(&self) -> Result<Option<String>, StoreError>;

    /// Makes a small durable write outside the audit log (the time of the
    /// probe, in the store's metadata): whether the store takes writes
    /// again after appends failed (a disk that was full). No default: a
    /// store that cannot tell must say so with an error, not pass.
    async fn probe_write(&self) -> Result<(), StoreError>;

    /// The newest pending approval not expired at `now` (RFC 3339) for the
    /// request with `request_hash` sent by `client`: an identical request
    /// reuses it instead of opening another.
    async fn find_open_approval(
        &self,
        request_hash: &str,
        client: Option<&str>,
        now: &str,
    ) -> Result<Option<ApprovalRecord>, StoreError>;

    /// The approvals asked for by `client`, newest first, optionally only
    /// those in `state` (`Pending`: those not expired at this moment, so
    /// that expired ones do not use up `limit`).
    async fn list_client_approvals(
        &self,
        client: &str,
        state: Option<ApprovalState>,
        limit: u64,
    ) -> Result<Vec<ApprovalRecord>, StoreError>;

    /// Records matching every filter set, in sequence order.
    async fn query_audit(&self, query: &AuditQuery) -> Result<Vec<AuditRecord>, StoreError>;

    /// Walks the whole chain and reports the first record that does not
    /// fit: changed, removed, inserted or reordered.
    async fn verify_audit(&self) -> Result<Verification, StoreError>;

    /// Number of records in the audit log.
    async fn audit_len(&self) -> Result<u64, StoreError>;

    /// Stores a new pending approval.
    async fn create_approval(&self, approval: ApprovalRecord) -> Result<(), StoreError>;

    /// Pending approvals that have not expired at `now` (RFC 3339): those a
    /// person can still decide, newest first. The default filters
    /// [`Store::list_approvals`]; a store should do it in its query, so that
    /// expired ones do not take up the `limit`.
    async fn list_open_approvals(&self, now: &str, limit: u64) -> Result<Vec<ApprovalRecord>, StoreError> {
        let now = chain::parse_time(now)?;
        let pending = self.list_approvals(Some(ApprovalState::Pending), limit).await?;
        Ok(pending
            .into_iter()
            .filter(|a| chain::parse_time(&a.expires_at).is_ok_and(|expires| expires > now))
            .collect())
    }

    /// The approval with this id.
    async fn get_approval(&self, id: &str) -> Result<Option<ApprovalRecord>, StoreError>;

    /// Approvals, newest first, optionally only those in `state`.
    async fn list_approvals(&self, state: Option<ApprovalState>, limit: u64)
        -> Result<Vec<ApprovalRecord>, StoreError>;

    /// Grants (`grant = true`) or denies a pending, unexpired approval, as
    /// one atomic step. Refuses an approver who is the requester.
    async fn decide_approval(
        &self,
        id: &str,
        grant: bool,
        approver: &str,
        comment: Option<&str>,
        now: &str,
    ) -> Result<Result<ApprovalRecord, ApprovalError>, StoreError>;

    /// Uses a granted, unexpired approval for the request with
    /// `request_hash`, as one atomic step: of concurrent uses, exactly one
    /// succeeds.
    async fn use_approval(
        &self,
        id: &str,
        request_hash: &str,
        now: &str,
    ) -> Result<Result<ApprovalRecord, ApprovalError>, StoreError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_location_is_postgres_only_by_its_scheme() {
        assert_eq!(
            StoreLocation::parse("postgres://rein@db/rein"),
            StoreLocation::Postgres("postgres://rein@db/rein".into())
        );
        assert!(matches!(
            StoreLocation::parse("postgresql://h/d"),
            StoreLocation::Postgres(_)
        ));
        assert_eq!(StoreLocation::parse("rein.db"), StoreLocation::Sqlite("rein.db".into()));
        // A file whose name merely starts like a URL is still a file.
        assert!(matches!(StoreLocation::parse("postgres.db"), StoreLocation::Sqlite(_)));
    }

    #[test]
    fn a_password_is_never_shown() {
        let location = StoreLocation::parse("postgres://rein:s3cret@db:5432/rein?sslmode=require");
        assert_eq!(location.redacted(), "postgres://rein:***@db:5432/rein?sslmode=require");
        assert!(!format!("{location:?} {location}").contains("s3cret"));
        // `@` inside the password: the last `@` of the authority ends it.
        let at = StoreLocation::parse("postgres://rein:a@b@db/rein");
        assert_eq!(at.redacted(), "postgres://rein:***@db/rein");
        assert_eq!(
            StoreLocation::parse("postgres://db/rein").redacted(),
            "postgres://db/rein"
        );
    }

    #[test]
    fn a_query_string_secret_is_never_shown() {
        let shown = |url: &str| StoreLocation::parse(url).redacted();
        assert_eq!(
            shown("postgres://rein@db/rein?sslmode=require&password=s3cret"),
            "postgres://rein@db/rein?sslmode=require&password=***"
        );
        // Percent-encoded names, any case, and libpq's key password.
        assert_eq!(
            shown("postgres://db/rein?pass%77ord=s3cret&SSLPASSWORD=k3y&application_name=x"),
            "postgres://db/rein?pass%77ord=***&SSLPASSWORD=***&application_name=x"
        );
        // Both places at once.
        assert_eq!(
            shown("postgres://rein:a@db/rein?password=b"),
            "postgres://rein:***@db/rein?password=***"
        );
        // An unencoded `/` in the password: the driver reads up to the
        // first `@`, so everything before it is hidden.
        let odd = StoreLocation::parse("postgres://rein:pa/ss@db/rein");
        assert_eq!(odd.redacted(), "postgres://***@db/rein");
        assert!(odd.secrets().contains(&"pa/ss".to_string()));
        // An `@` inside a query password.
        let at = StoreLocation::parse("postgres://db/rein?password=x@y");
        assert!(
            !at.redacted().contains("x@y") && !at.redacted().contains("=x"),
            "{}",
            at.redacted()
        );
        assert_eq!(
            StoreLocation::parse("postgres://rein:pw@db/rein?password=q").secrets(),
            ["pw", "q"]
        );
        assert!(StoreLocation::parse("rein.db").secrets().is_empty());
    }
}
