//! A policy's sources as they were loaded, to keep them and to build the
//! same policy again from them (policy versions: `rein policy history`,
//! rollback). The version hash binds them: sources rebuild a policy only
//! when they hash to the version they were kept under.

use crate::ast::Combining;
use crate::diagnostics::{Diagnostic, LoadError};
use crate::policy::Policy;

/// One source of a native policy: a policy file, or a derived source (the
/// contracts the MCP gateway derives from tool schemas), whose text means
/// something else than the same text as a policy file and hashes so.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PolicySource {
    /// The name diagnostics show (the file's path as it was given).
    pub name: String,
    /// The text, exactly as read.
    pub text: String,
    /// Whether it is a derived source (only `contracts`, which yield to
    /// the policy files' own).
    #[serde(default)]
    pub derived: bool,
}

impl Policy {
    /// The sources this policy was compiled from, policy files first, in
    /// the order they were read; `None` for a policy read from Actra's
    /// files, whose texts are not native sources and so cannot rebuild it.
    pub fn sources(&self) -> Option<Vec<PolicySource>> {
        let compiled = self.compiled();
        if compiled.combining == Combining::FirstMatch {
            return None;
        }
        Some(
            compiled
                .files
                .iter()
                .enumerate()
                .map(|(i, f)| PolicySource {
                    name: f.name().to_string(),
                    text: f.text().to_string(),
                    derived: compiled.derived.get(i).copied().unwrap_or(false),
                })
                .collect(),
        )
    }

    /// The version hash that `sources` compile to ([`Policy::version`]),
    /// computed without compiling them: what a store checks kept sources
    /// against.
    pub fn version_of(sources: &[PolicySource]) -> String {
        crate::check::sources_version_hash(sources.iter().map(|s| (s.text.as_str(), s.derived)))
    }

    /// Compiles kept sources again, refusing them unless they hash to
    /// `version` (before compiling) and the policy they give has that
    /// version: sources that were changed never become a policy.
    pub fn from_kept_sources(sources: &[PolicySource], version: &str) -> Result<Policy, LoadError> {
        let mismatch = |got: &str| {
            LoadError::new(vec![Diagnostic::general(format!(
                "the kept sources of policy version {version} hash to {got}: they were changed, and are refused"
            ))])
        };
        let hashed = Policy::version_of(sources);
        if hashed != version {
            return Err(mismatch(&hashed));
        }
        let (files, derived): (Vec<&PolicySource>, Vec<&PolicySource>) = sources.iter().partition(|s| !s.derived);
        let derived: Vec<(String, String)> = derived.iter().map(|s| (s.name.clone(), s.text.clone())).collect();
        let policy =
            Policy::from_sources_with_derived(files.iter().map(|s| (s.name.clone(), s.text.clone())), &derived)?;
        if policy.version() != version {
            return Err(mismatch(policy.version()));
        }
        Ok(policy)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    const POLICY: &str = "version: v1\ncontracts:\n  actions:\n    refund:\n      input:\n        amount: int\nrules:\n  - id: small\n    action: refund\n    when: input.amount < 10\n    effect: allow\n";
    const DERIVED: &str = "contracts:\n  actions:\n    other:\n      input:\n        n: int\n";

    #[test]
    fn sources_rebuild_the_same_version() {
        let policy =
            Policy::from_sources_with_derived([("p.yaml", POLICY)], &[("<d>".into(), DERIVED.into())]).unwrap();
        let sources = policy.sources().unwrap();
        assert_eq!(sources.len(), 2);
        assert!(!sources[0].derived && sources[1].derived);
        assert_eq!(Policy::version_of(&sources), policy.version());
        let again = Policy::from_kept_sources(&sources, policy.version()).unwrap();
        assert_eq!(again.version(), policy.version());
        assert_eq!(again.version_label(), Some("v1"));
    }

    #[test]
    fn changed_sources_or_marks_are_refused() {
        let policy =
            Policy::from_sources_with_derived([("p.yaml", POLICY)], &[("<d>".into(), DERIVED.into())]).unwrap();
        let mut changed = policy.sources().unwrap();
        changed[0].text = changed[0].text.replace("< 10", "< 10000");
        let e = Policy::from_kept_sources(&changed, policy.version()).unwrap_err();
        assert!(e.to_string().contains("were changed"), "{e}");
        // The same texts with the derived mark moved hash otherwise.
        let mut unmarked = policy.sources().unwrap();
        unmarked[1].derived = false;
        assert_ne!(Policy::version_of(&unmarked), policy.version());
        assert!(Policy::from_kept_sources(&unmarked, policy.version()).is_err());
    }

    #[test]
    fn actra_policies_have_no_native_sources() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/actra/refund");
        let read = |f: &str| std::fs::read_to_string(format!("{dir}/{f}")).unwrap();
        let p = Policy::from_actra_strs(&read("schema.yaml"), &read("policy.yaml"), None).unwrap();
        assert!(p.sources().is_none());
    }
}
