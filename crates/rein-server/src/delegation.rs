//! Delegation tokens: minted by this server for a sub-agent from a
//! parent credential (`POST /v1/tokens/delegate`, `rein token delegate`),
//! signed with the server's Ed25519 key, narrowing the parent's actions,
//! lifetime and bound fields, and extending its chain by one link.
//!
//! A token is `rein_d1.<payload>.<signature>`: the payload is JSON in
//! base64url (no padding), the signature is Ed25519 over the exact text
//! `rein_d1.<payload>` as sent, so nothing is ever re-encoded before it is
//! checked. The payload carries the whole credential (chain, scopes per
//! link, bound fields, role, expiry), so a token needs no lookup, and its
//! root: the tokens-file token it descends from, by name and a keyed hash
//! of that token's entry (secret, role, fields, chain, actions). A child
//! stops being accepted when its root is removed from the tokens file or
//! changed in any way, when it expires, or when the server's key changes.

use crate::auth::{AuthRefusal, CredentialSource, Identity, Role, Tokens};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use jiff::{SignedDuration, Timestamp};
use rein_runtime::{ActionScope, BoundActor, ChainLink, Credential};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, RwLock};
use subtle::ConstantTimeEq;

/// The prefix of every delegation token, so that one is never taken for
/// a JWT of another issuer or for a static token.
pub const PREFIX: &str = "rein_d1.";

/// How long a delegation token lasts when the request names no `ttl`
/// (less if its parent expires sooner).
pub const DEFAULT_TTL: SignedDuration = SignedDuration::from_hours(1);

/// The longest a delegation token may last: a sub-agent's credential is
/// for one task, not a standing one.
pub const MAX_TTL: SignedDuration = SignedDuration::from_hours(24);

/// The most links a delegated chain may have (the root's included).
pub const MAX_CHAIN_LINKS: usize = 16;

/// The kinds a delegated link may have. A person (`user`) or a root
/// credential (`token`) is never delegated to: such links come only from
/// the tokens file or a verified JWT, so a rule that looks for
/// `user:alice` in the chain cannot be satisfied by an agent naming its
/// sub-agent `user:alice`.
pub const DELEGATED_KINDS: &[&str] = &["agent", "subagent"];

/// The most action patterns a delegation may list: checking a scope
/// against its parent's is quadratic, and a body of a megabyte of patterns
/// must not hold a worker.
pub const MAX_ACTION_PATTERNS: usize = 256;

/// Longest token accepted, in bytes: a 16-link chain with scopes and
/// bound fields fits well within it; anything longer is refused before
/// it is decoded.
const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// Most verified tokens kept in the cache (it is emptied when full).
const CACHE_ENTRIES: usize = 4096;

/// Verifies delegation tokens, and mints them, with this server's key.
/// `Verifier::default()` has no key: it refuses every delegation token.
#[derive(Clone, Default)]
pub struct Verifier {
    keys: Option<Arc<Keys>>,
}

struct Keys {
    signing: SigningKey,
    verifying: VerifyingKey,
    /// Keys the hash that binds a token to its root entry, so that the
    /// payload (readable by whoever holds the token) is no oracle for
    /// guessing the root token's secret.
    root_key: [u8; 32],
    /// Tokens already verified, by their full text.
    cache: RwLock<HashMap<Box<str>, Cached>>,
}

#[derive(Clone)]
struct Cached {
    identity: Arc<Identity>,
    /// The root entry the token was checked against; the token holds
    /// while the tokens file still has this very entry.
    root: Option<Arc<Identity>>,
}

impl fmt::Debug for Verifier {
    // Never the signing key.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.keys {
            Some(keys) => write!(
                f,
                "Verifier(ed25519:{})",
                URL_SAFE_NO_PAD.encode(keys.verifying.as_bytes())
            ),
            None => f.write_str("Verifier(disabled)"),
        }
    }
}

/// The signed content of a delegation token.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Payload {
    /// Unique id of this token (logs, audits of the minting).
    id: String,
    /// The identity's name: `<parent name>/<kind:id>`.
    name: String,
    /// The credential the chain starts from.
    root: Root,
    /// The role (agent, approver, admin).
    role: String,
    /// For approvers: the approval roles it may decide (`None`: every one).
    approves: Option<Vec<String>>,
    /// The bound actor fields.
    bind: BoundActor,
    /// The chain, the root's links first, this token's link last.
    chain: Vec<ChainLink>,
    /// `(link index, scope)` along the chain.
    scopes: Vec<(usize, ActionScope)>,
    /// Minted at, in Unix seconds.
    iat: i64,
    /// Expires at, in Unix seconds.
    exp: i64,
}

/// Where a delegation chain starts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
enum Root {
    /// A token of the tokens file: its name, and a keyed hash of its
    /// entry as it was when the chain was started.
    Token {
        /// The token's name.
        name: String,
        /// See [`Keys::root_id`].
        id: String,
    },
    /// A JWT of this issuer; the chain holds no longer than that JWT did,
    /// nor once the issuer is removed from the tokens file or changed.
    Jwt {
        /// The JWT's `iss`.
        issuer: String,
        /// See [`Keys::issuer_id`].
        id: String,
    },
}

/// What a delegation asks for (the body of `POST /v1/tokens/delegate`).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MintRequest {
    /// The new link, `kind:id` (`subagent:researcher`).
    pub actor: String,
    /// The actions the child may ask for: names, `prefix.*`, `*`.
    pub actions: Vec<String>,
    /// How long it lasts (`10m`, `1h30m`); [`DEFAULT_TTL`] by default.
    pub ttl: Option<String>,
    /// Actor fields to bind besides the parent's (never another value
    /// for one the parent binds).
    pub bind: Option<BoundActor>,
    /// The child's role; `agent` by default.
    pub role: Option<String>,
    /// For an approver child: the approval roles it may decide, within
    /// the parent's.
    pub approves: Option<Vec<String>>,
}

/// A minted delegation token and what it allows.
#[derive(Clone, Debug, Serialize)]
pub struct Minted {
    /// The token (a secret: give it to the sub-agent only).
    pub token: String,
    /// Its unique id.
    pub id: String,
    /// The identity's name.
    pub name: String,
    /// When it stops being accepted.
    pub expires_at: Timestamp,
    /// Its chain, as `kind:id` links.
    pub chain: Vec<String>,
    /// The actions it may ask for (its own scope; the parent's scopes
    /// still apply too).
    pub actions: ActionScope,
    /// Its role.
    pub role: String,
}

/// Why a delegation was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MintRefusal {
    /// The request is malformed (400).
    Invalid(String),
    /// It asks for more than the parent has (403).
    Wider(String),
    /// This server has no delegation key (503).
    Disabled,
}

impl fmt::Display for MintRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MintRefusal::Invalid(why) | MintRefusal::Wider(why) => f.write_str(why),
            MintRefusal::Disabled => f.write_str("this server has no delegation key"),
        }
    }
}

impl Verifier {
    /// A verifier (and minter) with this Ed25519 key.
    pub fn new(signing: SigningKey) -> Verifier {
        let mut root_key = Sha256::new();
        root_key.update(b"rein delegation root key v1\0");
        root_key.update(signing.to_bytes());
        Verifier {
            keys: Some(Arc::new(Keys {
                verifying: signing.verifying_key(),
                signing,
                root_key: root_key.finalize().into(),
                cache: RwLock::new(HashMap::new()),
            })),
        }
    }

    /// Verifies `token`, whose root credential must still be accepted
    /// by `tokens` as it was when the chain started.
    pub fn verify(&self, token: &str, tokens: &Tokens) -> Result<Arc<Identity>, AuthRefusal> {
        self.verify_at(token, tokens, Timestamp::now())
    }

    fn verify_at(&self, token: &str, tokens: &Tokens, now: Timestamp) -> Result<Arc<Identity>, AuthRefusal> {
        let Some(keys) = &self.keys else {
            return Err(AuthRefusal::Invalid(
                "delegation tokens are not enabled on this server".into(),
            ));
        };
        let cached = keys.cache.read().ok().and_then(|c| c.get(token).cloned());
        if let Some(hit) = cached {
            check_expiry(&hit.identity, now)?;
            if let Some(root) = &hit.root {
                let same = tokens
                    .static_token(&root.name)
                    .is_some_and(|(current, _)| Arc::ptr_eq(current, root));
                if !same {
                    // Not necessarily refused: the full check says why.
                    return keys.verify_uncached(token, tokens, now).map(|c| c.identity);
                }
            }
            return Ok(hit.identity);
        }
        let checked = keys.verify_uncached(token, tokens, now)?;
        if let Ok(mut cache) = keys.cache.write() {
            if cache.len() >= CACHE_ENTRIES {
                cache.clear();
            }
            cache.insert(token.into(), checked.clone());
        }
        Ok(checked.identity)
    }

    /// Mints a child of `parent` (who presented `presented`) as `request`
    /// asks, refusing anything wider than the parent.
    pub fn mint(
        &self,
        parent: &Identity,
        presented: &str,
        tokens: &Tokens,
        request: MintRequest,
        now: Timestamp,
    ) -> Result<Minted, MintRefusal> {
        let Some(keys) = &self.keys else {
            return Err(MintRefusal::Disabled);
        };
        let root = match &parent.source {
            CredentialSource::Static => {
                let (entry, digest) = tokens
                    .static_token(&parent.name)
                    .ok_or_else(|| MintRefusal::Wider("the parent token is not in the tokens file".into()))?;
                Root::Token {
                    name: parent.name.clone(),
                    id: keys.root_id(entry, digest),
                }
            }
            CredentialSource::Jwt { issuer } => {
                let config = tokens
                    .issuers()
                    .config_of(issuer)
                    .ok_or_else(|| MintRefusal::Wider("the parent's JWT issuer is not configured".into()))?;
                Root::Jwt {
                    issuer: issuer.clone(),
                    id: keys.issuer_id(config),
                }
            }
            CredentialSource::Delegated => {
                keys.open(presented)
                    .map_err(|e| MintRefusal::Wider(format!("the parent token does not verify: {e}")))?
                    .root
            }
        };
        let link = ChainLink::parse(&request.actor).map_err(|e| MintRefusal::Invalid(format!("`actor`: {e}")))?;
        if !DELEGATED_KINDS.contains(&link.kind.as_str()) {
            return Err(MintRefusal::Invalid(format!(
                "`actor`: a delegated link is of kind {} (`{link}` is not): people and root credentials \
                 enter a chain only through the tokens file or a JWT",
                DELEGATED_KINDS.join(" or ")
            )));
        }
        // A child's name is `<parent name>/<link>`: a `/` in the link would
        // make it another identity's name (a grandchild's, a sibling's
        // descendant's), sharing its sessions, outcomes and approvals.
        if link.id.contains('/') {
            return Err(MintRefusal::Invalid(format!(
                "`actor`: the id of a delegated link cannot hold `/` (`{link}`): it separates the links of a \
                 delegated token's name"
            )));
        }
        let Some(parent_chain) = &parent.credential.chain else {
            return Err(MintRefusal::Wider(
                "the parent credential binds no delegation chain, so it cannot delegate".into(),
            ));
        };
        // Below a sub-agent, every link is a sub-agent: an `agent:` link
        // there would let a sub-agent pass for a main agent with a rule
        // that reads the last link's kind.
        if link.kind != "subagent" && parent_chain.iter().any(|l| l.kind == "subagent") {
            return Err(MintRefusal::Wider(format!(
                "`actor`: `{link}` would follow a sub-agent link; below a sub-agent, links are of kind subagent"
            )));
        }
        if parent_chain.len() >= MAX_CHAIN_LINKS {
            return Err(MintRefusal::Wider(format!(
                "the chain would have more than {MAX_CHAIN_LINKS} links"
            )));
        }
        if request.actions.len() > MAX_ACTION_PATTERNS {
            return Err(MintRefusal::Invalid(format!(
                "`actions`: at most {MAX_ACTION_PATTERNS} patterns; use `prefix.*` for many actions"
            )));
        }
        let actions =
            ActionScope::from_patterns(request.actions).map_err(|e| MintRefusal::Invalid(format!("`actions`: {e}")))?;
        for (i, scope) in &parent.credential.scopes {
            actions.within(scope).map_err(|e| {
                let at = parent_chain
                    .get(*i)
                    .map_or_else(|| format!("link {}", i + 1), |l| format!("link {} ({l})", i + 1));
                MintRefusal::Wider(format!("`actions`: {e}, set at chain {at}"))
            })?;
        }
        let expires_at = expiry(parent, request.ttl.as_deref(), now)?;
        let mut fields = parent.credential.fields.clone();
        for (field, value) in request.bind.unwrap_or_default() {
            check_bound_field(&field, &value)?;
            match fields.get(&field) {
                Some(bound) if *bound != value => {
                    return Err(MintRefusal::Wider(format!(
                        "`bind`: actor.{field} is bound to {bound} by the parent; a delegation cannot change it"
                    )))
                }
                Some(_) => {}
                // A bound field is one the policy may trust (`bound: true`,
                // `actor_source: credential`): only the tokens file, an
                // issuer or an admin says what it is. A field the parent
                // does not bind is the parent's own word, which binding it
                // in a child would launder into the credential's.
                None if parent.role != Role::Admin => {
                    return Err(MintRefusal::Wider(format!(
                        "`bind`: actor.{field} is not bound by the parent, so its value is the parent's word, \
                         not the credential's; only an admin may bind a field its own credential does not"
                    )))
                }
                None => {
                    fields.insert(field, value);
                }
            }
        }
        let role = match request.role.as_deref() {
            None => Role::Agent,
            Some(r) => Role::parse(r).ok_or_else(|| {
                MintRefusal::Invalid(format!("`role`: unknown role `{r}`; roles are agent, approver, admin"))
            })?,
        };
        if !parent.role.permits(role) {
            return Err(MintRefusal::Wider(format!(
                "`role`: {role} is wider than the parent's role, {}",
                parent.role
            )));
        }
        if request.approves.is_some() && !role.permits(Role::Approver) {
            return Err(MintRefusal::Invalid(format!(
                "`approves`: a child of role {role} decides no approvals; `approves` needs role approver or admin"
            )));
        }
        let approves = match (request.approves, &parent.approves) {
            (None, inherited) => inherited.clone(),
            (Some(asked), Some(allowed)) => {
                if let Some(extra) = asked.iter().find(|r| !allowed.contains(r)) {
                    return Err(MintRefusal::Wider(format!(
                        "`approves`: `{extra}` is not among the parent's approval roles ({})",
                        allowed.join(", ")
                    )));
                }
                Some(asked)
            }
            (Some(asked), None) => Some(asked),
        };
        let mut chain = parent_chain.clone();
        chain.push(link.clone());
        let mut scopes = parent.credential.scopes.clone();
        scopes.push((chain.len() - 1, actions.clone()));
        let payload = Payload {
            id: random_id().map_err(MintRefusal::Invalid)?,
            name: format!("{}/{link}", parent.name),
            root,
            role: role.as_str().to_string(),
            approves,
            bind: fields,
            chain,
            scopes,
            iat: now.as_second(),
            exp: expires_at.as_second(),
        };
        let token = keys.seal(&payload)?;
        if token.len() > MAX_TOKEN_BYTES {
            return Err(MintRefusal::Invalid(format!(
                "the token would be longer than {MAX_TOKEN_BYTES} bytes; bind fewer or shorter fields"
            )));
        }
        Ok(Minted {
            token,
            id: payload.id,
            name: payload.name,
            expires_at,
            chain: payload.chain.iter().map(ToString::to_string).collect(),
            actions,
            role: payload.role,
        })
    }
}

impl Keys {
    /// Signs `payload` into a token.
    fn seal(&self, payload: &Payload) -> Result<String, MintRefusal> {
        let json = serde_json::to_vec(payload).map_err(|e| MintRefusal::Invalid(e.to_string()))?;
        let mut token = format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(json));
        let signature = self.signing.sign(token.as_bytes());
        token.push('.');
        token.push_str(&URL_SAFE_NO_PAD.encode(signature.to_bytes()));
        Ok(token)
    }

    /// Checks `token`'s form and signature, and reads its payload.
    fn open(&self, token: &str) -> Result<Payload, String> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(format!("longer than {MAX_TOKEN_BYTES} bytes"));
        }
        let malformed = || "malformed: a delegation token is rein_d1.<payload>.<signature>".to_string();
        let rest = token.strip_prefix(PREFIX).ok_or_else(malformed)?;
        let (payload_text, signature_text) = rest.split_once('.').ok_or_else(malformed)?;
        if payload_text.is_empty() || signature_text.contains('.') {
            return Err(malformed());
        }
        // The strict engine refuses padding and non-canonical trailing
        // bits: one token has one spelling.
        let signature: [u8; 64] = URL_SAFE_NO_PAD
            .decode(signature_text)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| "malformed signature".to_string())?;
        let signed = &token[..PREFIX.len() + payload_text.len()];
        self.verifying
            .verify_strict(signed.as_bytes(), &Signature::from_bytes(&signature))
            .map_err(|_| "the signature does not verify (changed, or signed with another key)".to_string())?;
        let json = URL_SAFE_NO_PAD
            .decode(payload_text)
            .map_err(|_| "malformed payload".to_string())?;
        serde_json::from_slice(&json).map_err(|e| format!("unreadable payload: {e}"))
    }

    /// Checks `token` fully: signature, payload, expiry, root.
    fn verify_uncached(&self, token: &str, tokens: &Tokens, now: Timestamp) -> Result<Cached, AuthRefusal> {
        let payload = self.open(token).map_err(AuthRefusal::Invalid)?;
        let identity = Arc::new(payload_identity(&payload).map_err(AuthRefusal::Invalid)?);
        check_expiry(&identity, now)?;
        let root = match &payload.root {
            Root::Token { name, id } => {
                let Some((entry, digest)) = tokens.static_token(name) else {
                    return Err(AuthRefusal::Invalid(format!(
                        "its root token `{name}` is no longer in the tokens file"
                    )));
                };
                let expected = self.root_id(entry, digest);
                if !bool::from(expected.as_bytes().ct_eq(id.as_bytes())) {
                    return Err(AuthRefusal::Invalid(format!(
                        "its root token `{name}` changed in the tokens file"
                    )));
                }
                Some(Arc::clone(entry))
            }
            // Its expiry was bounded by the JWT's when it was minted; the
            // issuer must still be trusted as it was then (removed for a
            // leaked key, or its role mapping narrowed: its chains end).
            Root::Jwt { issuer, id } => {
                let Some(config) = tokens.issuers().config_of(issuer) else {
                    return Err(AuthRefusal::Invalid(format!(
                        "its root JWT issuer {issuer:?} is no longer in the tokens file"
                    )));
                };
                let expected = self.issuer_id(config);
                if !bool::from(expected.as_bytes().ct_eq(id.as_bytes())) {
                    return Err(AuthRefusal::Invalid(format!(
                        "its root JWT issuer {issuer:?} changed in the tokens file"
                    )));
                }
                None
            }
        };
        Ok(Cached { identity, root })
    }

    /// A keyed hash of a JWT issuer's configuration (its keys' source,
    /// audiences, claim and role mappings…): any change to it changes it.
    fn issuer_id(&self, config: &crate::jwt::IssuerConfig) -> String {
        let mut h = Sha256::new();
        h.update(b"rein delegation issuer v1\0");
        h.update(self.root_key);
        h.update(format!("{config:?}").as_bytes());
        hex(&h.finalize()[..16])
    }

    /// A keyed hash of a tokens-file entry: its secret's digest and
    /// everything it grants. Any change to the entry changes it.
    fn root_id(&self, entry: &Identity, digest: &[u8; 32]) -> String {
        let granted = serde_json::json!({
            "name": entry.name,
            "role": entry.role.as_str(),
            "approves": entry.approves,
            "fields": entry.credential.fields,
            "chain": entry.credential.chain,
            "scopes": entry.credential.scopes,
        });
        let mut h = Sha256::new();
        h.update(b"rein delegation root v1\0");
        h.update(self.root_key);
        h.update(digest);
        h.update(granted.to_string().as_bytes());
        hex(&h.finalize()[..16])
    }
}

/// The identity a verified payload grants, refusing one that is not
/// well-formed (a payload this server signed always is).
fn payload_identity(p: &Payload) -> Result<Identity, String> {
    let role = Role::parse(&p.role).ok_or_else(|| format!("unknown role `{}`", p.role))?;
    if p.chain.is_empty() || p.chain.len() > MAX_CHAIN_LINKS {
        return Err("a chain of no links, or too many".into());
    }
    let last = p.chain.len() - 1;
    if p.scopes.iter().any(|(i, _)| *i > last) || p.scopes.last().map(|(i, _)| *i) != Some(last) {
        return Err("scopes that do not fit the chain".into());
    }
    if p.bind.contains_key("chain") || p.exp <= p.iat {
        return Err("malformed payload".into());
    }
    let expires_at = Timestamp::from_second(p.exp).map_err(|_| "expiry out of range".to_string())?;
    Ok(Identity {
        name: p.name.clone(),
        role,
        approves: p.approves.clone(),
        credential: Credential {
            fields: p.bind.clone(),
            chain: Some(p.chain.clone()),
            scopes: p.scopes.clone(),
            ..Credential::default()
        },
        source: CredentialSource::Delegated,
        expires_at: Some(expires_at),
    })
}

fn check_expiry(identity: &Identity, now: Timestamp) -> Result<(), AuthRefusal> {
    match identity.expires_at {
        Some(at) if now >= at => Err(AuthRefusal::Invalid(format!("it expired at {at}"))),
        _ => Ok(()),
    }
}

/// When a child of `parent` asking for `ttl` expires: never after the
/// parent, never more than [`MAX_TTL`] from now.
fn expiry(parent: &Identity, ttl: Option<&str>, now: Timestamp) -> Result<Timestamp, MintRefusal> {
    let asked = match ttl {
        None => None,
        Some(text) => match text.parse::<SignedDuration>() {
            Ok(d) if d >= SignedDuration::from_secs(1) => Some(d),
            Ok(_) => return Err(MintRefusal::Invalid("`ttl` must be at least 1s".into())),
            Err(_) => {
                return Err(MintRefusal::Invalid(format!(
                    "`ttl`: `{text}` is not a duration like 10m, 1h or 1h30m"
                )))
            }
        },
    };
    if let Some(d) = asked {
        if d > MAX_TTL {
            return Err(MintRefusal::Wider(format!(
                "`ttl`: {text} is longer than a delegation may last ({MAX_TTL:#})",
                text = ttl.unwrap_or_default()
            )));
        }
    }
    let at = |d: SignedDuration| {
        now.checked_add(d)
            .map_err(|_| MintRefusal::Invalid("`ttl` out of range".into()))
            .and_then(|t| {
                Timestamp::from_second(t.as_second()).map_err(|_| MintRefusal::Invalid("`ttl` out of range".into()))
            })
    };
    let expires = at(asked.unwrap_or(DEFAULT_TTL))?;
    match parent.expires_at {
        Some(parent_end) if expires > parent_end => {
            if asked.is_some() {
                return Err(MintRefusal::Wider(format!(
                    "`ttl`: the child would outlive its parent, which expires at {parent_end}"
                )));
            }
            // No ttl asked: the default, cut to the parent's end.
            let cut = Timestamp::from_second(parent_end.as_second())
                .map_err(|_| MintRefusal::Invalid("the parent's expiry is out of range".into()))?;
            if cut <= now {
                return Err(MintRefusal::Wider("the parent expires within a second".into()));
            }
            Ok(cut)
        }
        _ => Ok(expires),
    }
}

/// A field a child may bind: a plain name other than `chain`, with a
/// scalar value (as the tokens file's `actor:` allows).
fn check_bound_field(field: &str, value: &serde_json::Value) -> Result<(), MintRefusal> {
    let plain = crate::auth::is_plain_field(field);
    if !plain || field == "chain" {
        return Err(MintRefusal::Invalid(format!(
            "`bind`: `{field}` is not an actor field a credential may bind (a plain name, not chain)"
        )));
    }
    if value.is_object() || value.is_array() || value.is_null() {
        return Err(MintRefusal::Invalid(format!(
            "`bind`: actor.{field} must be a string, number or boolean"
        )));
    }
    // Self-approval compares ids as text: a number would be no id to it.
    if field == "id" && !value.is_string() {
        return Err(MintRefusal::Invalid("`bind`: actor.id must be a string".into()));
    }
    Ok(())
}

fn random_id() -> Result<String, String> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|e| format!("the system random generator failed: {e}"))?;
    Ok(hex(&bytes))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Whether `presented` is meant as a delegation token.
pub fn looks_like(presented: &str) -> bool {
    presented.starts_with(PREFIX)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PARENT: &str = "parent-token-0123456789";

    fn tokens(extra: &str, verifier: &Verifier) -> Tokens {
        let text = format!("tokens:\n  - {{name: bot, role: agent, token: {PARENT}{extra}}}\n");
        Tokens::parse("t.yaml", &text)
            .unwrap()
            .with_delegation(verifier.clone())
    }

    fn request(actions: &[&str], ttl: Option<&str>) -> MintRequest {
        MintRequest {
            actor: "subagent:r".into(),
            actions: actions.iter().map(ToString::to_string).collect(),
            ttl: ttl.map(str::to_string),
            bind: None,
            role: None,
            approves: None,
        }
    }

    fn key(byte: u8) -> Verifier {
        Verifier::new(SigningKey::from_bytes(&[byte; 32]))
    }

    /// A cached token is still refused once its root entry is gone from
    /// the tokens it is checked against, or once it expires.
    #[test]
    fn the_cache_never_outlives_the_root_or_the_expiry() {
        let verifier = key(1);
        let before = tokens("", &verifier);
        let parent = before.verify(PARENT).unwrap();
        let now = Timestamp::now();
        let minted = verifier
            .mint(&parent, PARENT, &before, request(&["file.read"], Some("10m")), now)
            .unwrap();
        let child = verifier.verify_at(&minted.token, &before, now).unwrap();
        assert_eq!(child.name, "bot/subagent:r");
        assert_eq!(child.source, CredentialSource::Delegated);
        // Cached now; the same text against a changed tokens file.
        let changed = tokens("x", &verifier);
        let refused = verifier.verify_at(&minted.token, &changed, now).unwrap_err();
        assert_eq!(
            refused,
            AuthRefusal::Invalid("its root token `bot` changed in the tokens file".into())
        );
        assert!(verifier.verify_at(&minted.token, &before, now).is_ok());
        let later = now.checked_add(SignedDuration::from_mins(10)).unwrap();
        let expired = verifier.verify_at(&minted.token, &before, later).unwrap_err();
        assert!(matches!(expired, AuthRefusal::Invalid(why) if why.starts_with("it expired at")));
        // Another server's key: refused, whatever the cache of this one.
        let other = key(2);
        let refused = other.verify_at(&minted.token, &tokens("", &other), now).unwrap_err();
        assert!(matches!(refused, AuthRefusal::Invalid(why) if why.contains("signature does not verify")));
    }

    #[test]
    fn chains_have_a_bounded_length() {
        let verifier = key(3);
        let tokens = tokens("", &verifier);
        let now = Timestamp::now();
        let mut token = PARENT.to_string();
        for depth in 2..=MAX_CHAIN_LINKS {
            let parent = tokens.verify(&token).unwrap();
            token = verifier
                .mint(&parent, &token, &tokens, request(&["a"], None), now)
                .unwrap_or_else(|e| panic!("depth {depth}: {e}"))
                .token;
        }
        let parent = tokens.verify(&token).unwrap();
        assert_eq!(parent.credential.chain.as_ref().unwrap().len(), MAX_CHAIN_LINKS);
        let refused = verifier
            .mint(&parent, &token, &tokens, request(&["a"], None), now)
            .unwrap_err();
        assert!(refused.to_string().contains("more than 16 links"), "{refused}");
    }

    #[test]
    fn a_huge_list_of_actions_is_refused_at_once() {
        let verifier = key(5);
        let tokens = tokens("", &verifier);
        let parent = tokens.verify(PARENT).unwrap();
        let many: Vec<String> = (0..100_000).map(|i| format!("a{i}")).collect();
        let names: Vec<&str> = many.iter().map(String::as_str).collect();
        let started = std::time::Instant::now();
        let refused = verifier
            .mint(&parent, PARENT, &tokens, request(&names, None), Timestamp::now())
            .unwrap_err();
        assert!(refused.to_string().contains("at most 256"), "{refused}");
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
        let within: Vec<&str> = names[..MAX_ACTION_PATTERNS].to_vec();
        assert!(verifier
            .mint(&parent, PARENT, &tokens, request(&within, None), Timestamp::now())
            .is_ok());
    }

    /// What verifying costs: `cargo test --release -p rein-server --lib
    /// delegation_timing -- --ignored --nocapture`.
    #[test]
    #[ignore = "a measurement, not a check"]
    fn delegation_timing() {
        let verifier = key(6);
        let tokens = tokens("", &verifier);
        let parent = tokens.verify(PARENT).unwrap();
        let now = Timestamp::now();
        let n = 2000;
        let started = std::time::Instant::now();
        let minted: Vec<String> = (0..n)
            .map(|_| {
                verifier
                    .mint(&parent, PARENT, &tokens, request(&["file.read", "web.*"], None), now)
                    .unwrap()
                    .token
            })
            .collect();
        let mint = started.elapsed() / n;
        let started = std::time::Instant::now();
        for t in &minted {
            tokens.verify(t).unwrap();
        }
        let first = started.elapsed() / n;
        let rounds = 200_000u32;
        let started = std::time::Instant::now();
        for _ in 0..rounds {
            std::hint::black_box(tokens.verify(std::hint::black_box(&minted[7])).unwrap());
        }
        let cached = started.elapsed() / rounds;
        let started = std::time::Instant::now();
        for _ in 0..rounds {
            std::hint::black_box(tokens.verify(std::hint::black_box(PARENT)).unwrap());
        }
        let static_token = started.elapsed() / rounds;
        println!(
            "token {} bytes; mint {mint:?}; first verify {first:?}; cached verify {cached:?}; static token {static_token:?}",
            minted[0].len()
        );
    }

    #[test]
    fn a_disabled_verifier_mints_and_accepts_nothing() {
        let verifier = key(4);
        let with_key = tokens("", &verifier);
        let parent = with_key.verify(PARENT).unwrap();
        let minted = verifier
            .mint(&parent, PARENT, &with_key, request(&["a"], None), Timestamp::now())
            .unwrap();
        let without = Tokens::parse(
            "t.yaml",
            &format!("tokens:\n  - {{name: bot, role: agent, token: {PARENT}}}\n"),
        )
        .unwrap();
        assert!(matches!(without.verify(&minted.token), Err(AuthRefusal::Invalid(_))));
        let refused = without
            .delegation()
            .mint(&parent, PARENT, &without, request(&["a"], None), Timestamp::now());
        assert_eq!(refused.unwrap_err(), MintRefusal::Disabled);
        assert_eq!(format!("{:?}", without.delegation()), "Verifier(disabled)");
        assert!(!format!("{verifier:?}").contains(&hex(&[4u8; 32])));
    }
}
