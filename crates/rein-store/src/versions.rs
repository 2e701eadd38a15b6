//! Policy versions: the sources of every policy a server activated, kept so
//! that a version can be shown and rolled back to, and the activation
//! record written to the audit chain each time a version starts serving.
//!
//! The sources are bound to their version by its hash
//! ([`rein_engine::Policy::version_of`]): the store refuses, on every read,
//! sources that no longer hash to the version they are kept under. The
//! table is outside the chain; the activation records, inside it, say
//! which version served from when, on whose word.

use serde::{Deserialize, Serialize};

use crate::{AuditEntry, StoreError};
use rein_engine::{Policy, PolicySource};

/// The `phase` of an activation record.
pub const ACTIVATE_PHASE: &str = "activate";

/// The `action` of an activation record: not an action any policy
/// decides (the colon sets it apart from the names agents send).
pub const ACTIVATE_ACTION: &str = "rein:policy";

/// What every refusal of changed sources says: callers tell it from a
/// failing store by it.
pub const SOURCES_CHANGED: &str = "were changed after they were kept";

/// One policy version's sources as the store keeps them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyVersion {
    /// The version hash ([`rein_engine::Policy::version`]).
    pub version: String,
    /// The policy's own `version:` label, if it has one.
    pub label: Option<String>,
    /// The sources, policy files first, as they were loaded.
    pub sources: Vec<PolicySource>,
    /// When the store first kept them (fixed-width UTC, see
    /// [`crate::chain::format_time`]).
    pub saved_at: String,
}

impl PolicyVersion {
    /// The sources of `policy`, to keep; `None` for a policy that has no
    /// native sources (Actra's files), which cannot be kept.
    pub fn of(policy: &Policy, saved_at: String) -> Option<PolicyVersion> {
        Some(PolicyVersion {
            version: policy.version().to_string(),
            label: policy.version_label().map(str::to_string),
            sources: policy.sources()?,
            saved_at,
        })
    }

    /// `Ok` when the sources hash to the version; otherwise the error
    /// every reader gives (tampering is never read past).
    pub fn check(&self) -> Result<(), StoreError> {
        let hashed = Policy::version_of(&self.sources);
        if hashed == self.version {
            Ok(())
        } else {
            Err(StoreError(format!(
                "the kept sources of policy version {} hash to {hashed}: they {SOURCES_CHANGED}, and are refused",
                self.version
            )))
        }
    }
}

/// A kept version as [`crate::Store::policy_versions`] lists it: without
/// its texts, with whether they still hash to it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyVersionSummary {
    /// The version hash.
    pub version: String,
    /// The policy's own `version:` label, if it has one.
    pub label: Option<String>,
    /// The names of its sources, policy files first.
    pub files: Vec<String>,
    /// When the store first kept them.
    pub saved_at: String,
    /// Whether the kept texts still hash to the version (`false`: they
    /// were changed, and neither `show` nor a rollback will use them).
    pub intact: bool,
}

/// Why a version was activated.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActivationCause {
    /// The server started with it.
    Start,
    /// A reload from the policy files (SIGHUP or `POST /v1/policy/reload`).
    Reload,
    /// A rollback to a kept version (`POST /v1/policy/rollback`).
    Rollback,
}

impl ActivationCause {
    /// The recorded spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            ActivationCause::Start => "start",
            ActivationCause::Reload => "reload",
            ActivationCause::Rollback => "rollback",
        }
    }
}

/// The `activation` of an activation record ([`AuditEntry::activation`]):
/// see the module documentation of [`crate::chain`] for its shape.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Activation {
    /// The version hash now serving.
    pub version: String,
    /// Its `version:` label, if it has one.
    pub label: Option<String>,
    /// The version it replaced; `None` at start.
    pub previous: Option<String>,
    /// Who activated it: the admin token's name, `sighup`, or `start`.
    pub by: String,
    /// Why.
    pub cause: ActivationCause,
    /// The names of its sources, policy files first.
    pub files: Vec<String>,
    /// Its load warnings, as [`rein_engine::Diagnostic::to_json`].
    pub diagnostics: Vec<serde_json::Value>,
}

impl Activation {
    /// The audit entry that records this activation: phase `activate`,
    /// action [`ACTIVATE_ACTION`], effect `allow`, its own `decision_id`,
    /// the actor `{"id": by}`, the version as `policy_version`, and this
    /// value as `activation`.
    pub fn entry(&self, decision_id: String, time: String) -> AuditEntry {
        let named = match &self.label {
            Some(label) => format!("{} ({label})", self.version),
            None => self.version.clone(),
        };
        let reason = match (&self.cause, &self.previous) {
            (ActivationCause::Start, _) | (_, None) => {
                format!(
                    "policy version {named} activated at {} by `{}`",
                    self.cause.as_str(),
                    self.by
                )
            }
            (cause, Some(previous)) => format!(
                "policy version {named} activated by {} by `{}`, replacing {previous}",
                cause.as_str(),
                self.by
            ),
        };
        AuditEntry {
            decision_id,
            time,
            phase: ACTIVATE_PHASE.to_string(),
            action: ACTIVATE_ACTION.to_string(),
            input: serde_json::Value::Null,
            actor: serde_json::json!({ "id": self.by }),
            snapshot: serde_json::Value::Null,
            output: None,
            error: None,
            session: None,
            effect: "allow".to_string(),
            rules: Vec::new(),
            reasons: vec![reason],
            policy_version: self.version.clone(),
            latency_us: 0,
            approval: None,
            client: None,
            policy_version_label: self.label.clone(),
            actor_source: None,
            shadow: None,
            // A struct of strings and JSON values always serializes.
            activation: serde_json::to_value(self).ok(),
            trace: None,
        }
    }

    /// The activation an entry records; `None` for any other record, or
    /// one whose `activation` does not have this shape.
    pub fn of_entry(entry: &AuditEntry) -> Option<Activation> {
        if entry.phase != ACTIVATE_PHASE {
            return None;
        }
        serde_json::from_value(entry.activation.clone()?).ok()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn an_activation_round_trips_through_its_entry() {
        let a = Activation {
            version: "v2".into(),
            label: Some("billing-3".into()),
            previous: Some("v1".into()),
            by: "ops".into(),
            cause: ActivationCause::Rollback,
            files: vec!["policy.yaml".into()],
            diagnostics: vec![serde_json::json!({"severity": "warning"})],
        };
        let e = a.entry("d".into(), "t".into());
        assert_eq!((e.phase.as_str(), e.effect.as_str()), ("activate", "allow"));
        assert_eq!(e.policy_version, "v2");
        assert_eq!(e.activation.as_ref().unwrap()["cause"], "rollback");
        assert_eq!(Activation::of_entry(&e), Some(a));
        assert!(e.reasons[0].contains("replacing v1"), "{:?}", e.reasons);
        let mut before = e.clone();
        before.phase = "before".into();
        assert_eq!(Activation::of_entry(&before), None);
    }
}
