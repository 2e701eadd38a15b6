//! Who a request comes from, as its credential says: the actor fields it
//! binds, the delegation chain from the person down to the acting agent,
//! and the actions each link of the chain allows.
//!
//! A surface that authenticates its caller (the server's tokens, JWTs and
//! delegation tokens; a hook mapping the agent's own events) builds a
//! [`Credential`] and hands it to [`crate::Runtime::decide_bound`]; the
//! runtime sets its fields on the request's actor, and blocks, before any
//! rule, a request that contradicts it or that a link's scope does not
//! allow.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Actor fields bound to a credential: top-level field → scalar value.
pub type BoundActor = serde_json::Map<String, serde_json::Value>;

/// One link of a delegation chain: `user:alice`, `agent:support-bot`,
/// `subagent:researcher`. Rules read it as `actor.chain[i].kind` and
/// `actor.chain[i].id`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChainLink {
    /// What the link is: `user`, `agent`, `subagent`, `token`…
    pub kind: String,
    /// Who, within its kind.
    pub id: String,
}

impl ChainLink {
    /// Reads `kind:id` (both non-empty, no whitespace or control
    /// characters; the id may itself hold `:`).
    pub fn parse(text: &str) -> Result<ChainLink, String> {
        let Some((kind, id)) = text.split_once(':') else {
            return Err(format!(
                "`{text}` is not a chain link; write it as kind:id, e.g. subagent:researcher"
            ));
        };
        let link = ChainLink {
            kind: kind.to_string(),
            id: id.to_string(),
        };
        link.validate()?;
        Ok(link)
    }

    /// Refuses an empty kind or id, a kind that is not a plain name, and
    /// whitespace or control characters anywhere.
    pub fn validate(&self) -> Result<(), String> {
        let plain_kind = !self.kind.is_empty()
            && self
                .kind
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if !plain_kind {
            return Err(format!(
                "the kind `{}` of a chain link must be a plain name (letters, digits, `_`, `-`)",
                self.kind
            ));
        }
        if self.id.is_empty() || self.id.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(format!(
                "the id `{}` of a chain link must be non-empty, without whitespace",
                self.id
            ));
        }
        Ok(())
    }
}

impl fmt::Display for ChainLink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.kind, self.id)
    }
}

/// The actions a link of the chain allows: exact action names,
/// `prefix.*` (every action under `prefix.`), or `*` (every action).
/// Only these forms, so that whether one scope lies within another is
/// decided exactly.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "Vec<String>", into = "Vec<String>")]
pub struct ActionScope {
    patterns: Vec<String>,
}

impl ActionScope {
    /// Every action.
    pub fn all() -> ActionScope {
        ActionScope {
            patterns: vec!["*".to_string()],
        }
    }

    /// Reads a comma-separated list (`file.read,web.*`).
    pub fn parse(text: &str) -> Result<ActionScope, String> {
        ActionScope::from_patterns(text.split(',').map(str::trim).map(str::to_string))
    }

    /// Accepts a list of patterns; refuses an empty list and any pattern
    /// other than a name, `prefix.*` or `*`.
    pub fn from_patterns(patterns: impl IntoIterator<Item = String>) -> Result<ActionScope, String> {
        let mut out: Vec<String> = Vec::new();
        for p in patterns {
            let name = p.strip_suffix(".*").unwrap_or(&p);
            let plain = p == "*"
                || (!name.is_empty()
                    && !name.contains('*')
                    && name.split('.').all(|part| {
                        !part.is_empty()
                            && part
                                .chars()
                                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '/' | ':'))
                    }));
            if !plain {
                return Err(format!(
                    "`{p}` is not an action pattern; write an action name, `prefix.*` or `*`"
                ));
            }
            if !out.contains(&p) {
                out.push(p);
            }
        }
        if out.is_empty() {
            return Err("an action scope needs at least one action pattern".to_string());
        }
        Ok(ActionScope { patterns: out })
    }

    /// The patterns, as given.
    pub fn patterns(&self) -> &[String] {
        &self.patterns
    }

    /// Whether `action` is within the scope.
    pub fn allows(&self, action: &str) -> bool {
        self.patterns.iter().any(|p| pattern_covers(p, action))
    }

    /// Whether every action this scope allows, `parent` allows too: each
    /// pattern lies within one of the parent's. The first pattern that
    /// does not is the error.
    pub fn within(&self, parent: &ActionScope) -> Result<(), String> {
        for p in &self.patterns {
            if !parent.patterns.iter().any(|q| pattern_covers(q, p)) {
                return Err(format!(
                    "`{p}` is not within the parent's actions ({})",
                    parent.patterns.join(", ")
                ));
            }
        }
        Ok(())
    }
}

/// Whether pattern `outer` covers `inner` (an action name or a pattern).
fn pattern_covers(outer: &str, inner: &str) -> bool {
    if outer == "*" || outer == inner {
        return true;
    }
    match outer.strip_suffix('*') {
        // `web.*` covers `web.get` and `web.api.*`, not `web` nor `*`.
        Some(prefix) => inner != "*" && inner.len() > prefix.len() && inner.starts_with(prefix),
        None => false,
    }
}

impl TryFrom<Vec<String>> for ActionScope {
    type Error = String;
    fn try_from(patterns: Vec<String>) -> Result<Self, String> {
        ActionScope::from_patterns(patterns)
    }
}

impl From<ActionScope> for Vec<String> {
    fn from(scope: ActionScope) -> Vec<String> {
        scope.patterns
    }
}

impl fmt::Display for ActionScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.patterns.join(","))
    }
}

/// What a credential says about the actor of every request made with it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Credential {
    /// Top-level actor fields set by the credential (never `chain`).
    pub fields: BoundActor,
    /// The delegation chain, from the person (or root credential) down to
    /// the acting agent; `None` when the credential does not bind it (the
    /// request's own `actor.chain`, if any, is then caller-supplied).
    pub chain: Option<Vec<ChainLink>>,
    /// The action scopes set along the chain: `(i, scope)` says link `i`
    /// of `chain` was delegated only `scope`. A request must be within
    /// every one of them (the intersection).
    pub scopes: Vec<(usize, ActionScope)>,
}

impl Credential {
    /// A credential binding `fields` only.
    pub fn with_fields(fields: BoundActor) -> Credential {
        Credential {
            fields,
            ..Credential::default()
        }
    }

    /// The first scope along the chain that does not allow `action`, as
    /// the reason to block: it names the link that refused.
    pub fn refuses(&self, action: &str) -> Option<String> {
        let (i, scope) = self.scopes.iter().find(|(_, scope)| !scope.allows(action))?;
        let link = self
            .chain
            .as_ref()
            .and_then(|c| c.get(*i))
            .map_or_else(|| format!("link {}", i + 1), |l| format!("link {} ({l})", i + 1));
        Some(format!(
            "delegation: action `{action}` is outside the scope of chain {link}, which allows {}",
            scope.patterns().join(", ")
        ))
    }

    /// Every id the credential speaks for: bound `actor.id` and each link
    /// of the chain. An approver who is any of them is approving their
    /// own request.
    pub fn ids(&self) -> Vec<&str> {
        let mut ids: Vec<&str> = Vec::new();
        if let Some(id) = self.fields.get("id").and_then(|v| v.as_str()) {
            ids.push(id);
        }
        for link in self.chain.iter().flatten() {
            if !ids.contains(&link.id.as_str()) {
                ids.push(&link.id);
            }
        }
        ids
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_cover_exactly() {
        let parent = ActionScope::parse("file.*, web.get").unwrap();
        assert!(parent.allows("file.read"));
        assert!(parent.allows("file.dir.list"));
        assert!(!parent.allows("file"));
        assert!(!parent.allows("filex.read"));
        assert!(parent.allows("web.get"));
        assert!(!parent.allows("web.post"));
        assert!(ActionScope::parse("file.read,file.dir.*")
            .unwrap()
            .within(&parent)
            .is_ok());
        assert!(ActionScope::parse("web.*").unwrap().within(&parent).is_err());
        assert!(ActionScope::parse("*").unwrap().within(&parent).is_err());
        assert!(ActionScope::parse("file.*")
            .unwrap()
            .within(&ActionScope::all())
            .is_ok());
        for bad in ["", "a,,b", "web*", "*.read", "a.*.b", "a b", "a..b", ".a"] {
            assert!(ActionScope::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn links_read_kind_and_id() {
        let l = ChainLink::parse("subagent:code:reviewer").unwrap();
        assert_eq!((l.kind.as_str(), l.id.as_str()), ("subagent", "code:reviewer"));
        assert_eq!(l.to_string(), "subagent:code:reviewer");
        for bad in ["alice", ":alice", "user:", "us er:a", "user:a b"] {
            assert!(ChainLink::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn refusal_names_the_link() {
        let c = Credential {
            chain: Some(vec![
                ChainLink::parse("user:alice").unwrap(),
                ChainLink::parse("agent:bot").unwrap(),
                ChainLink::parse("subagent:r").unwrap(),
            ]),
            scopes: vec![
                (1, ActionScope::parse("file.*,web.*").unwrap()),
                (2, ActionScope::parse("file.read").unwrap()),
            ],
            ..Credential::default()
        };
        assert_eq!(c.refuses("file.read"), None);
        let why = c.refuses("web.get").unwrap();
        assert!(why.contains("link 3 (subagent:r)"), "{why}");
        let why = c.refuses("shell.run").unwrap();
        assert!(why.contains("link 2 (agent:bot)"), "{why}");
        assert_eq!(c.ids(), vec!["alice", "bot", "r"]);
    }
}
