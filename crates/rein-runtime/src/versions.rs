//! Policy versions: activating a policy (at start, on a reload, on a
//! rollback) with its sources kept and an activation record in the audit
//! chain, and the history a server or `rein policy` reads back.

use std::collections::BTreeMap;

use jiff::Timestamp;
use rein_engine::Policy;
use rein_store::chain::format_time;
use rein_store::{Activation, ActivationCause, AuditRecord, PolicyVersion, Store, StoreError};
use serde::Serialize;

use crate::{Runtime, RuntimeError};

/// What an activation did, as the server answers it.
#[derive(Clone, Debug, Serialize)]
pub struct Activated {
    /// The version now serving.
    pub policy_version: String,
    /// Its `version:` label, if it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy_version_label: Option<String>,
    /// The version it replaced (`None` at start).
    pub previous_version: Option<String>,
    /// Why it was activated.
    pub cause: ActivationCause,
    /// The decision id of the activation record.
    pub activation_id: String,
    /// The activation record's place in the audit log.
    pub audit_seq: u64,
    /// Whether its sources are kept (a policy read from Actra's files has
    /// no native sources to keep, and cannot be rolled back to).
    pub sources_kept: bool,
    /// Its load warnings, as [`rein_engine::Diagnostic::to_json`].
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<serde_json::Value>,
}

impl Runtime {
    /// Records that the policy this runtime was made with starts serving:
    /// its sources kept, and an activation record (cause `start`, by
    /// `start`, `previous` the version the log's last activation named).
    /// A server calls it once, before it answers anything; an error means
    /// the activation could not be recorded, and the server does not start.
    pub async fn record_start(&self) -> Result<Activated, RuntimeError> {
        let policy = self.policy();
        let previous = last_activation(self.store.as_ref()).await?.map(|a| a.version);
        self.record_activation(&policy, previous, "start", ActivationCause::Start)
            .await
    }

    /// Swaps `policy` in as a reload or rollback by `by` (an admin token's
    /// name, or `sighup`): loads the state it reads (as
    /// [`Runtime::set_policy_with_state`]), keeps its sources, appends
    /// its activation record, then swaps it in. Nothing is swapped unless
    /// all of that succeeded: on an error the old policy keeps serving and
    /// no activation is recorded. The record precedes, in the chain, every
    /// decision of the new version; decisions already under way finish on
    /// the version they started with (they hold it).
    pub async fn activate(&self, policy: Policy, by: &str, cause: ActivationCause) -> Result<Activated, RuntimeError> {
        self.state.open(self.store.as_ref(), &policy, Timestamp::now()).await?;
        let previous = self.policy().version().to_string();
        let activated = self.record_activation(&policy, Some(previous), by, cause).await?;
        self.state.follow(&policy);
        self.set_policy(policy);
        Ok(activated)
    }

    async fn record_activation(
        &self,
        policy: &Policy,
        previous: Option<String>,
        by: &str,
        cause: ActivationCause,
    ) -> Result<Activated, RuntimeError> {
        let now = format_time(Timestamp::now());
        let kept = PolicyVersion::of(policy, now.clone());
        if let Some(kept) = &kept {
            self.store.save_policy_version(kept).await?;
        }
        let warnings: Vec<serde_json::Value> = policy.warnings().iter().map(|d| d.to_json()).collect();
        let activation = Activation {
            version: policy.version().to_string(),
            label: policy.version_label().map(str::to_string),
            previous: previous.clone(),
            by: by.to_string(),
            cause,
            files: policy
                .sources()
                .map(|s| s.into_iter().map(|s| s.name).collect())
                .unwrap_or_default(),
            diagnostics: warnings.clone(),
        };
        let id = uuid::Uuid::now_v7().to_string();
        let record = self.store.append(activation.entry(id.clone(), now)).await?;
        Ok(Activated {
            policy_version: activation.version,
            policy_version_label: activation.label,
            previous_version: previous,
            cause,
            activation_id: id,
            audit_seq: record.seq,
            sources_kept: kept.is_some(),
            warnings,
        })
    }
}

/// The newest activation the log records.
async fn last_activation(store: &dyn Store) -> Result<Option<Activation>, StoreError> {
    Ok(store
        .activations()
        .await?
        .iter()
        .rev()
        .find_map(|r| Activation::of_entry(&r.entry)))
}

/// One version in the history: what the store keeps of it and what the
/// activation records say of it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct VersionHistory {
    /// The version hash.
    pub version: String,
    /// Its `version:` label, if it has one.
    pub label: Option<String>,
    /// The names of its sources.
    pub files: Vec<String>,
    /// When it was first activated (the first activation record naming it).
    pub first_activated: Option<String>,
    /// When it was last activated.
    pub last_activated: Option<String>,
    /// Who activated it last.
    pub last_by: Option<String>,
    /// Why it was activated last (`start`, `reload`, `rollback`).
    pub last_cause: Option<ActivationCause>,
    /// How many activation records name it.
    pub activations: u64,
    /// Whether it is the version serving (when the caller knows it: a
    /// server; from a store file, the last activated one).
    pub current: bool,
    /// Whether its sources are kept and still hash to it: only such a
    /// version can be shown or rolled back to.
    pub sources: SourcesState,
}

/// What the store holds of a version's sources.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SourcesState {
    /// Kept, and they hash to the version.
    Kept,
    /// Kept, but changed since: refused.
    Changed,
    /// Not kept (activated before versions were kept, or from Actra's
    /// files).
    Missing,
}

/// The history of policy versions in `store`, newest activation first:
/// every kept version and every version an activation record names.
/// `current` is the version serving, if the caller knows it; otherwise
/// the one the last activation record names is marked current.
pub async fn history(store: &dyn Store, current: Option<&str>) -> Result<Vec<VersionHistory>, StoreError> {
    let kept = store.policy_versions().await?;
    let records = store.activations().await?;
    let mut by_version: BTreeMap<String, VersionHistory> = BTreeMap::new();
    let mut order: Vec<(u64, String)> = Vec::new();
    for record in &records {
        let Some(a) = Activation::of_entry(&record.entry) else {
            continue;
        };
        let entry = by_version.entry(a.version.clone()).or_insert_with(|| VersionHistory {
            version: a.version.clone(),
            label: a.label.clone(),
            files: a.files.clone(),
            first_activated: Some(record.entry.time.clone()),
            last_activated: None,
            last_by: None,
            last_cause: None,
            activations: 0,
            current: false,
            sources: SourcesState::Missing,
        });
        entry.last_activated = Some(record.entry.time.clone());
        entry.last_by = Some(a.by.clone());
        entry.last_cause = Some(a.cause);
        entry.activations += 1;
        order.push((record.seq, a.version));
    }
    for k in kept {
        let entry = by_version.entry(k.version.clone()).or_insert_with(|| VersionHistory {
            version: k.version.clone(),
            label: k.label.clone(),
            files: k.files.clone(),
            first_activated: None,
            last_activated: None,
            last_by: None,
            last_cause: None,
            activations: 0,
            current: false,
            sources: SourcesState::Missing,
        });
        entry.sources = if k.intact {
            SourcesState::Kept
        } else {
            SourcesState::Changed
        };
    }
    let current = current
        .map(str::to_string)
        .or_else(|| order.last().map(|(_, v)| v.clone()));
    if let Some(current) = &current {
        if let Some(entry) = by_version.get_mut(current) {
            entry.current = true;
        }
    }
    // Newest activation first; versions kept but never recorded as
    // activated (none, unless the log was started over) last.
    let mut out = Vec::with_capacity(by_version.len());
    for (_, version) in order.iter().rev() {
        if let Some(entry) = by_version.remove(version) {
            out.push(entry);
        }
    }
    out.extend(by_version.into_values());
    Ok(out)
}

/// Why a version could not be named.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum VersionLookupError {
    /// No version matches.
    #[error("no policy version `{0}` in the history (give a version hash, a unique prefix of one, or a label)")]
    Unknown(String),
    /// Several versions match.
    #[error("`{given}` names several policy versions: {}; give more of the hash", candidates.join(", "))]
    Ambiguous {
        /// What was given.
        given: String,
        /// The versions it matches (hash, with the label).
        candidates: Vec<String>,
    },
}

/// Shortest hash prefix that names a version.
pub const MIN_VERSION_PREFIX: usize = 4;

/// The one version of `history` that `given` names: its full hash, a
/// prefix of it ([`MIN_VERSION_PREFIX`] hex digits or more), or its label.
/// A full hash wins; otherwise every version matched by label or prefix
/// counts, and more than one is ambiguous.
pub fn resolve_version<'h>(
    history: &'h [VersionHistory],
    given: &str,
) -> Result<&'h VersionHistory, VersionLookupError> {
    let given = given.trim();
    if let Some(exact) = history.iter().find(|v| v.version == given) {
        return Ok(exact);
    }
    let is_prefix = given.len() >= MIN_VERSION_PREFIX && given.bytes().all(|b| b.is_ascii_hexdigit());
    let matches: Vec<&VersionHistory> = history
        .iter()
        .filter(|v| {
            v.label.as_deref() == Some(given) || (is_prefix && v.version.starts_with(&given.to_ascii_lowercase()))
        })
        .collect();
    match matches.as_slice() {
        [] => Err(VersionLookupError::Unknown(given.to_string())),
        [one] => Ok(one),
        many => Err(VersionLookupError::Ambiguous {
            given: given.to_string(),
            candidates: many
                .iter()
                .map(|v| match &v.label {
                    Some(label) => format!("{} ({label})", v.version),
                    None => v.version.clone(),
                })
                .collect(),
        }),
    }
}

/// The kept sources of the version `given` names (see
/// [`resolve_version`]), checked against its hash.
pub async fn kept_version(store: &dyn Store, given: &str) -> Result<PolicyVersion, VersionError> {
    let history = history(store, None).await?;
    let found = resolve_version(&history, given)?;
    match store.policy_version(&found.version).await? {
        Some(kept) => Ok(kept),
        None => Err(VersionError::NotKept(found.version.clone())),
    }
}

/// Why a version's sources could not be had.
#[derive(Debug, thiserror::Error)]
pub enum VersionError {
    /// The version could not be named.
    #[error(transparent)]
    Lookup(#[from] VersionLookupError),
    /// The version is in the log, but its sources are not kept.
    #[error("the sources of policy version {0} are not kept (it was activated before versions were kept, or from Actra's files)")]
    NotKept(String),
    /// The store failed, or the kept sources no longer hash to the version.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The activation records of `records` (any others are skipped): for
/// callers that already hold a page of the log.
pub fn activations_in(records: &[AuditRecord]) -> impl Iterator<Item = (u64, Activation)> + '_ {
    records
        .iter()
        .filter_map(|r| Activation::of_entry(&r.entry).map(|a| (r.seq, a)))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn v(hash: &str, label: Option<&str>) -> VersionHistory {
        VersionHistory {
            version: hash.into(),
            label: label.map(str::to_string),
            files: vec![],
            first_activated: None,
            last_activated: None,
            last_by: None,
            last_cause: None,
            activations: 1,
            current: false,
            sources: SourcesState::Kept,
        }
    }

    #[test]
    fn versions_are_named_by_hash_prefix_or_label() {
        let h = [
            v("abcd1111", Some("v1")),
            v("abcd2222", Some("v2")),
            v("ef001111", Some("abcd")),
        ];
        assert_eq!(resolve_version(&h, "abcd1111").unwrap().version, "abcd1111");
        assert_eq!(resolve_version(&h, "abcd1").unwrap().version, "abcd1111");
        assert_eq!(resolve_version(&h, "ABCD2").unwrap().version, "abcd2222");
        assert_eq!(resolve_version(&h, "v2").unwrap().version, "abcd2222");
        assert_eq!(resolve_version(&h, "ef00").unwrap().version, "ef001111");
        // Two prefixes and a label: ambiguous, naming all three.
        match resolve_version(&h, "abcd").unwrap_err() {
            VersionLookupError::Ambiguous { candidates, .. } => assert_eq!(candidates.len(), 3),
            e => panic!("{e}"),
        }
        // Too short to be a prefix, and no such label.
        assert_eq!(
            resolve_version(&h, "abc").unwrap_err(),
            VersionLookupError::Unknown("abc".into())
        );
        assert!(matches!(
            resolve_version(&h, "nope"),
            Err(VersionLookupError::Unknown(_))
        ));
        assert!(matches!(resolve_version(&h, ""), Err(VersionLookupError::Unknown(_))));
    }
}
