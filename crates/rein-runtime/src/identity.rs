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

use rein_engine::{Policy, Request};
use rein_store::ActorSources;
use serde::{Deserialize, Serialize};
use serde_json::map::Entry;
use std::borrow::Cow;
use std::collections::btree_map;
use std::fmt;
use std::sync::{Arc, OnceLock};

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
    /// What [`bind`] sets and records for this credential, built on its
    /// first use: construct a credential with `..Credential::default()`
    /// (or [`Prepared::default()`]) and leave it to `bind`.
    pub prepared: Prepared,
}

/// What every request made with a credential gets, built once per
/// credential rather than once per request ([`Credential::prepared`]): its
/// chain as JSON, the actor it sets on a request without one, and the
/// `actor_source` of those fields. The credential's fields stay public and
/// may change after it was built: each use first checks that it was built
/// from what the credential says now, and otherwise binds without it.
#[derive(Clone, Default)]
pub struct Prepared(OnceLock<Option<Arc<Ready>>>);

impl fmt::Debug for Prepared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Prepared").finish_non_exhaustive()
    }
}

/// A cache: every credential's is equal, so that credentials compare by
/// what they say.
impl PartialEq for Prepared {
    fn eq(&self, _: &Prepared) -> bool {
        true
    }
}

impl Eq for Prepared {}

/// [`Prepared`], once built.
struct Ready {
    /// The credential's fields and chain as they were when it was built.
    fields: BoundActor,
    chain: Option<Vec<ChainLink>>,
    /// `chain` as rules read it ([`chain_value`]).
    chain_json: Option<serde_json::Value>,
    /// The bound fields, then `chain`: the actor of a request that names
    /// none of its own.
    actor: serde_json::Map<String, serde_json::Value>,
    /// Every field of `actor`, from the credential.
    sources: ActorSources,
}

impl Ready {
    /// `None` when nothing is bound, or when the fields name `chain` too
    /// (which no builder allows): those bind without it.
    fn of(credential: &Credential) -> Option<Ready> {
        if credential.fields.contains_key(CHAIN) || (credential.fields.is_empty() && credential.chain.is_none()) {
            return None;
        }
        let chain_json = credential.chain.as_deref().map(chain_value);
        let mut actor = credential.fields.clone();
        if let Some(chain) = &chain_json {
            actor.insert(CHAIN.to_string(), chain.clone());
        }
        let sources = actor.keys().map(|field| (field.clone(), FROM_CREDENTIAL)).collect();
        Some(Ready {
            fields: credential.fields.clone(),
            chain: credential.chain.clone(),
            chain_json,
            actor,
            sources,
        })
    }

    /// Whether it was built from what `credential` says now.
    fn describes(&self, credential: &Credential) -> bool {
        self.chain == credential.chain && self.fields == credential.fields
    }
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

    /// Whether the credential sets the top-level actor field `field`
    /// (`chain` when it binds a chain).
    pub fn binds(&self, field: &str) -> bool {
        self.fields.contains_key(field) || (field == CHAIN && self.chain.is_some())
    }

    /// What was built of it for [`bind`], if it still describes it.
    fn ready(&self) -> Option<&Ready> {
        let ready = self
            .prepared
            .0
            .get_or_init(|| Ready::of(self).map(Arc::new))
            .as_deref()?;
        ready.describes(self).then_some(ready)
    }

    /// Every id the credential speaks for, in the form ids are compared
    /// in ([`canonical_id`]): bound `actor.id` and each link of the chain.
    /// An approver who is any of them is approving their own request.
    pub fn ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = Vec::new();
        let bound = self.fields.get("id").and_then(canonical_id);
        let links = self.chain.iter().flatten().map(|link| canonical_text(&link.id));
        for id in bound.into_iter().chain(links) {
            if !ids.contains(&id) {
                ids.push(id);
            }
        }
        ids
    }
}

/// An id as self-approval compares it: a string in Unicode compatibility
/// form (NFKC) and lower case, so that `Alice`, `ALICE` and `ａlice` are one
/// person (an identity provider's spelling is not the agent's to choose);
/// a number as its JSON text (`1001`). Anything else is no id.
pub fn canonical_id(value: &serde_json::Value) -> Option<String> {
    match value {
        serde_json::Value::String(s) => Some(canonical_text(s)),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// The compared form of an id written as text (see [`canonical_id`]).
pub fn canonical_text(id: &str) -> String {
    use unicode_normalization::UnicodeNormalization;
    // Lower-casing can leave text that NFKC changes again (and back):
    // normalise, fold, normalise.
    id.nfkc().collect::<String>().to_lowercase().nfkc().collect()
}

/// Where an actor field came from, as the audit record says it (borrowed:
/// a decision allocates no copy of either word).
const FROM_CREDENTIAL: Cow<'static, str> = Cow::Borrowed("credential");
const FROM_CALLER: Cow<'static, str> = Cow::Borrowed("caller");

/// What [`bind`] found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Binding {
    /// Where each top-level field of the request's actor came from
    /// (`credential` or `caller`: the audit record's `actor_source`);
    /// `None` for a request without a credential.
    pub sources: Option<ActorSources>,
    /// Why the request is blocked before any rule: it contradicts its
    /// credential, a link's scope does not allow its action, or the policy
    /// requires a field its credential does not bind.
    pub refusal: Option<String>,
}

/// The identity step every decision takes before its rules: sets what
/// `credential` binds on the request's actor (its fields, and its chain as
/// `actor.chain`, a list of `{kind, id}`), and finds why to block first:
///
/// - the actor names another value for a bound field ("actor.role is set
///   by the credential"), or is not an object while fields are bound: the
///   conflicting field is left as sent, so that the record shows the
///   attempt; it is never overwritten;
/// - a link of the chain was delegated a scope that does not allow the
///   action (the reason names the link);
/// - the policy requires actor fields to be bound
///   ([`Policy::bound_actor_fields`]) and the credential does not bind
///   one of them, or there is no credential (`None`: the in-process
///   surfaces without one).
///
/// With no credential and no required field, nothing is allocated. With
/// one, what is allocated is what the request and its record keep: the
/// bound values set on the actor and the record's field names.
pub fn bind(policy: &Policy, request: &mut Request, credential: Option<&Credential>) -> Binding {
    let mut refusals: Vec<String> = Vec::new();
    let sources = credential.map(|credential| {
        let mut contradicted = Vec::new();
        // What was built on the credential's first use; built again here
        // if the credential changed since (its fields are public).
        let fresh;
        let ready = match credential.ready() {
            Some(ready) => Some(ready),
            None => {
                fresh = Ready::of(credential);
                fresh.as_ref()
            }
        };
        let sources = match ready {
            Some(ready) => bind_ready(&mut request.actor, credential, ready, &mut contradicted),
            // Nothing bound: every field is the caller's.
            None => caller_sources(&request.actor),
        };
        if credential.fields.contains_key(CHAIN) {
            // No builder makes one; a library caller might. Its chain is
            // `chain`, never a field: refused rather than half bound.
            refusals
                .push("the credential binds actor.chain as a field; a chain is bound as the credential's chain".into());
        }
        for field in &contradicted {
            refusals.push(format!("actor.{field} is set by the credential"));
        }
        if !request.actor.is_object() && (!credential.fields.is_empty() || credential.chain.is_some()) {
            let first = credential.fields.keys().next().map_or("chain", String::as_str);
            refusals.push(format!(
                "actor.{first} is set by the credential; the request's actor is not an object"
            ));
        }
        if let Some(refused) = credential.refuses(&request.action) {
            refusals.push(refused);
        }
        sources
    });
    if let Some(unbound) = unbound_requirement(policy, credential) {
        refusals.push(unbound);
    }
    Binding {
        sources,
        refusal: (!refusals.is_empty()).then(|| refusals.join("; ")),
    }
}

/// Sets what the credential binds on `actor` and finds where each of its
/// fields came from, from what was built for the credential (`ready`,
/// which describes it): an actor with no fields of its own becomes a copy
/// of the bound actor; otherwise each bound value the actor does not name
/// is set, in the credential's order, the chain copied rather than built,
/// and each it names otherwise is added to `contradicted` (left as sent).
/// `actor_source` starts from the bound fields' and adds the caller's.
fn bind_ready<'c>(
    actor: &mut serde_json::Value,
    credential: &'c Credential,
    ready: &'c Ready,
    contradicted: &mut Vec<&'c str>,
) -> ActorSources {
    let fields = match actor {
        serde_json::Value::Null => {
            *actor = serde_json::Value::Object(ready.actor.clone());
            return ready.sources.clone();
        }
        serde_json::Value::Object(fields) if fields.is_empty() => {
            *fields = ready.actor.clone();
            return ready.sources.clone();
        }
        serde_json::Value::Object(fields) => fields,
        // Nothing is set on an actor of another shape (`bind` blocks it).
        _ => return ActorSources::new(),
    };
    let mut sources = ready.sources.clone();
    for field in fields.keys() {
        // A field the credential binds too (rare) is judged below.
        if let btree_map::Entry::Vacant(slot) = sources.entry(field.clone()) {
            slot.insert(FROM_CALLER);
        }
    }
    let mut contradict = |field: &'c str, sources: &mut ActorSources| {
        if !contradicted.contains(&field) {
            contradicted.push(field);
        }
        if let Some(source) = sources.get_mut(field) {
            *source = FROM_CALLER;
        }
    };
    for (field, value) in &credential.fields {
        match fields.entry(field.as_str()) {
            Entry::Occupied(sent) => {
                if sent.get() != value {
                    contradict(field, &mut sources);
                }
            }
            Entry::Vacant(slot) => {
                slot.insert(value.clone());
            }
        }
    }
    if let (Some(chain), Some(chain_json)) = (&credential.chain, &ready.chain_json) {
        match fields.entry(CHAIN) {
            Entry::Occupied(sent) => {
                if !chain_is(sent.get(), chain) {
                    contradict(CHAIN, &mut sources);
                }
            }
            Entry::Vacant(slot) => {
                slot.insert(chain_json.clone());
            }
        }
    }
    sources
}

/// The reserved actor field the chain is set on.
const CHAIN: &str = "chain";

/// `actor_source` of an actor nothing is bound on: every field the
/// caller's.
fn caller_sources(actor: &serde_json::Value) -> ActorSources {
    let Some(fields) = actor.as_object() else {
        return ActorSources::new();
    };
    fields.keys().map(|field| (field.clone(), FROM_CALLER)).collect()
}

/// `chain` as rules read it: `[{kind, id}, …]`.
pub fn chain_value(chain: &[ChainLink]) -> serde_json::Value {
    let link = |l: &ChainLink| {
        let mut o = serde_json::Map::new();
        o.insert("kind".to_string(), serde_json::Value::String(l.kind.clone()));
        o.insert("id".to_string(), serde_json::Value::String(l.id.clone()));
        serde_json::Value::Object(o)
    };
    serde_json::Value::Array(chain.iter().map(link).collect())
}

/// Whether `value` is exactly `chain` as [`chain_value`] writes it
/// (compared in place: nothing is built).
fn chain_is(value: &serde_json::Value, chain: &[ChainLink]) -> bool {
    let Some(sent) = value.as_array() else {
        return false;
    };
    sent.len() == chain.len()
        && sent.iter().zip(chain).all(|(sent, link)| {
            sent.as_object().is_some_and(|o| {
                o.len() == 2
                    && o.get("kind").and_then(serde_json::Value::as_str) == Some(link.kind.as_str())
                    && o.get("id").and_then(serde_json::Value::as_str) == Some(link.id.as_str())
            })
        })
}

/// Where each top-level field of `actor` came from: the credential when
/// it binds the field to the value the actor has (every binding of it,
/// should a credential bind `chain` both as a field and as its chain),
/// the caller otherwise.
pub(crate) fn actor_sources(actor: &serde_json::Value, credential: &Credential) -> ActorSources {
    let mut sources = ActorSources::new();
    let Some(fields) = actor.as_object() else {
        return sources;
    };
    // Inserted one by one (in order): `collect` would sort a Vec first.
    for (field, value) in fields {
        let by_field = credential.fields.get(field).map(|bound| bound == value);
        let by_chain = match (field.as_str(), &credential.chain) {
            (CHAIN, Some(chain)) => Some(chain_is(value, chain)),
            _ => None,
        };
        let source = match (by_field, by_chain) {
            (None, None) => FROM_CALLER,
            (a, b) if a.unwrap_or(true) && b.unwrap_or(true) => FROM_CREDENTIAL,
            _ => FROM_CALLER,
        };
        sources.insert(field.clone(), source);
    }
    sources
}

/// The reason to block a request whose credential (`None`: none) does not
/// bind a field the policy requires bound; `None` when it binds them all.
/// Judged by [`Policy::unbound_required`], as `rein test` judges; allocates
/// only to say why.
pub(crate) fn unbound_requirement(policy: &Policy, credential: Option<&Credential>) -> Option<String> {
    match credential {
        Some(credential) => policy.unbound_required(|field| credential.binds(field)),
        // Nothing is bound: the first required field (sorted) is missing.
        None => policy.bound_actor_fields().first().map(|missing| {
            format!("actor.{missing} must be set by the credential; this request has no credential that binds it")
        }),
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
    fn ids_compare_whatever_their_spelling() {
        for (a, b) in [
            ("Alice", "alice"),
            ("ALICE", "alice"),
            ("\u{ff41}lice", "alice"),
            ("ﬁ", "fi"),
        ] {
            assert_eq!(canonical_text(a), canonical_text(b), "{a} {b}");
        }
        assert_ne!(canonical_text("alice"), canonical_text("alice2"));
        assert_eq!(canonical_id(&serde_json::json!(1001)).as_deref(), Some("1001"));
        assert_eq!(canonical_id(&serde_json::json!(true)), None);
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

    // The binding written plainly, field by field: the reference the
    // prepared binding (`bind_ready`) must agree with.

    /// Sets the credential's fields and chain on `actor` (made an object if
    /// null; an actor of another shape is left as it is); adds to
    /// `contradicted` each bound field the actor names another value for.
    fn bind_actor<'c>(actor: &mut serde_json::Value, credential: &'c Credential, contradicted: &mut Vec<&'c str>) {
        if credential.fields.is_empty() && credential.chain.is_none() {
            // Nothing bound leaves any actor as it is.
            return;
        }
        if actor.is_null() {
            *actor = serde_json::Value::Object(serde_json::Map::new());
        }
        let Some(fields) = actor.as_object_mut() else {
            return;
        };
        // One search per field (`entry`), not a lookup then an insert: the
        // name is allocated first, which a field the actor already holds (rare)
        // wastes.
        for (field, value) in &credential.fields {
            match fields.entry(field.as_str()) {
                Entry::Occupied(sent) => {
                    if sent.get() != value {
                        contradicted.push(field);
                    }
                }
                Entry::Vacant(slot) => {
                    slot.insert(value.clone());
                }
            }
        }
        if let Some(chain) = &credential.chain {
            match fields.entry(CHAIN) {
                Entry::Occupied(sent) => {
                    if !chain_is(sent.get(), chain) && !contradicted.contains(&CHAIN) {
                        contradicted.push(CHAIN);
                    }
                }
                Entry::Vacant(slot) => {
                    slot.insert(chain_value(chain));
                }
            }
        }
    }

    /// `actor_source` right after [`bind_actor`]: a field the credential
    /// binds came from it unless the actor contradicted it (`contradicted`);
    /// every other field from the caller. (What [`actor_sources`] finds by
    /// comparing values, without comparing them again.)
    fn bound_sources(actor: &serde_json::Value, credential: &Credential, contradicted: &[&str]) -> ActorSources {
        let Some(fields) = actor.as_object() else {
            return ActorSources::new();
        };
        // Collected in the actor's (sorted) order: built in one pass, without
        // a search per field as inserts would.
        fields
            .keys()
            .map(|field| {
                let from_credential = credential.binds(field) && !contradicted.contains(&field.as_str());
                let source = if from_credential { FROM_CREDENTIAL } else { FROM_CALLER };
                (field.clone(), source)
            })
            .collect()
    }

    /// What [`bind_actor`] and [`bound_sources`] give, built per request.
    fn unprepared(actor: &serde_json::Value, c: &Credential) -> (serde_json::Value, ActorSources, Vec<String>) {
        let mut actor = actor.clone();
        let mut contradicted = Vec::new();
        bind_actor(&mut actor, c, &mut contradicted);
        let sources = bound_sources(&actor, c, &contradicted);
        (actor, sources, contradicted.iter().map(ToString::to_string).collect())
    }

    /// What [`bind_ready`] gives, from what was built once.
    fn prepared(actor: &serde_json::Value, c: &Credential) -> (serde_json::Value, ActorSources, Vec<String>) {
        let mut actor = actor.clone();
        let mut contradicted = Vec::new();
        let ready = c.ready().expect("prepared");
        let sources = bind_ready(&mut actor, c, ready, &mut contradicted);
        (actor, sources, contradicted.iter().map(ToString::to_string).collect())
    }

    #[test]
    fn prepared_binding_is_the_binding() {
        use serde_json::json;
        let chain: Vec<ChainLink> = ["user:alice", "agent:bot"]
            .iter()
            .map(|l| ChainLink::parse(l).unwrap())
            .collect();
        let fields = json!({"id": "bot", "tenant": "acme"}).as_object().unwrap().clone();
        let credentials = [
            Credential {
                fields: fields.clone(),
                chain: Some(chain.clone()),
                ..Credential::default()
            },
            Credential::with_fields(fields.clone()),
            Credential {
                chain: Some(chain.clone()),
                ..Credential::default()
            },
        ];
        let sent_chain = json!([{"kind": "user", "id": "alice"}, {"kind": "agent", "id": "bot"}]);
        let actors = [
            json!(null),
            json!({}),
            json!({"ticket": "T-1"}),
            json!({"id": "bot", "a": 1, "zz": [1]}),
            json!({"id": "eve", "tenant": "acme"}),
            json!({"tenant": 7, "chain": []}),
            json!({"chain": sent_chain}),
            json!({"chain": [{"kind": "user", "id": "alice", "x": 1}, {"kind": "agent", "id": "bot"}]}),
            json!({"chain": "user:alice", "id": "bot"}),
            json!("bot"),
            json!([1]),
        ];
        for c in &credentials {
            for actor in &actors {
                assert_eq!(prepared(actor, c), unprepared(actor, c), "{actor} {c:?}");
            }
        }
    }

    /// A credential naming `chain` among its fields (no builder makes one)
    /// is refused, not bound by half.
    #[test]
    fn a_chain_among_the_fields_is_refused() {
        use serde_json::json;
        let c = Credential::with_fields(json!({"id": "bot", "chain": []}).as_object().unwrap().clone());
        let policy = Policy::from_yaml_str("default: allow\nrules: []\n").unwrap();
        let mut request = Request::new("x");
        let why = bind(&policy, &mut request, Some(&c)).refusal.expect("refused");
        assert!(why.contains("binds actor.chain as a field"), "{why}");
    }

    #[test]
    fn a_credential_changed_after_use_binds_what_it_says_now() {
        use serde_json::json;
        let mut c = Credential {
            fields: json!({"id": "bot"}).as_object().unwrap().clone(),
            chain: Some(vec![ChainLink::parse("user:alice").unwrap()]),
            ..Credential::default()
        };
        assert!(c.ready().is_some());
        let copy = c.clone();
        c.chain.as_mut().unwrap()[0].id = "mallory".to_string();
        assert!(c.ready().is_none(), "built from another chain");
        let (actor, ..) = unprepared(&json!({}), &c);
        let mut request = Request::new("x");
        let policy = Policy::from_yaml_str("default: allow\nrules: []\n").unwrap();
        bind(&policy, &mut request, Some(&c));
        assert_eq!(request.actor, actor);
        assert_eq!(request.actor["chain"][0]["id"], "mallory");
        c.fields.insert("id".to_string(), json!("eve"));
        c.chain = copy.chain.clone();
        assert!(c.ready().is_none(), "built from other fields");
        // The copy made before the change still binds what it says.
        assert!(copy.ready().is_some());
        let mut request = Request::new("x");
        bind(&policy, &mut request, Some(&copy));
        assert_eq!(
            request.actor,
            json!({"id": "bot", "chain": [{"kind": "user", "id": "alice"}]})
        );
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
