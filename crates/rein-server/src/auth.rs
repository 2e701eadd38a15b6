//! Bearer tokens with roles.
//!
//! The tokens file is YAML:
//!
//! ```yaml
//! tokens:
//!   - {name: support-bot, role: agent, token: "…"}
//!   - {name: alice, role: approver, token: "…"}
//!   - {name: ops, role: admin, token: "…"}
//!   - name: support-bot-acme
//!     role: agent
//!     token: "…"
//!     actor: {id: support-bot, role: agent, tenant: acme}
//!   - name: researcher
//!     role: agent
//!     token: "…"
//!     chain: ["user:alice", "agent:support-bot"]
//!     actions: [file.read, "web.*"]
//! ```
//!
//! `actor:` binds top-level actor fields to the token: the server sets
//! them on every request made with it, and blocks a request whose body
//! names another value for one (see `Runtime::decide_bound`). Values are
//! scalars (strings, numbers, booleans); field names are plain names.
//!
//! Every token binds a delegation chain (`actor.chain`): its `chain:`
//! (`kind:id` links from the person down to the agent) or, without one,
//! the single link `token:<name>`. `actions:` (action names, `prefix.*`,
//! `*`; absent means every action) is the scope of the chain's last link:
//! a request for another action is blocked before any rule, and a
//! delegation token minted from this one can only narrow it.
//!
//! A token's `name` is who it is: the approver recorded on a grant, the
//! name in logs. Tokens are kept only as SHA-256 digests and compared in
//! constant time; a token itself is never logged.
//!
//! `issuers:` (beside `tokens:`, or alone) configures the identity
//! providers whose JWTs the server accepts (see [`crate::jwt`] and
//! docs/identity.md, "JWT issuers"):
//!
//! ```yaml
//! issuers:
//!   - name: corp                        # holders are named corp:<sub>
//!     issuer: https://login.example.com/  # the exact `iss`
//!     audience: rein                    # or a list; required
//!     jwks_file: corp-jwks.json         # beside this file; or jwks_url: https://…
//!     algorithms: [RS256]               # optional: by key type; never none or HS*
//!     leeway_seconds: 30                # optional, at most 300
//!     jwks_ttl_seconds: 600             # optional
//!     jwks_min_refetch_seconds: 30      # optional
//!     role: agent                       # optional (agent)
//!     roles_claim: groups               # optional, with roles:
//!     roles: {rein-approvers: approver, rein-admins: admin}
//!     approves_claim: approval_roles    # optional
//!     name_claim: sub                   # optional (sub)
//!     actor: {sub: id, tenant: tenant}  # claim → bound actor field
//!     chain_kind: user                  # optional (user): chain user:<sub>
//! ```
//!
//! Every error names the file, line and column; unknown keys are refused.

use crate::error::ApiError;
use crate::AppState;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use rein_engine::source::SourceFile;
use rein_engine::syntax::yaml::{self, YamlNode, YamlValue};
use rein_runtime::{ActionScope, BoundActor, ChainLink, Credential};
use sha2::{Digest, Sha256};
use std::fmt;
use std::path::Path;
use std::sync::Arc;
use subtle::ConstantTimeEq;

/// Shortest token accepted, in characters. Generated tokens have 64.
pub const MIN_TOKEN_LEN: usize = 16;

/// What a token may do. `Admin` may do everything.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// Decide and report outcomes.
    Agent,
    /// List, read, grant and deny approvals.
    Approver,
    /// Everything, plus audit and policy reload.
    Admin,
}

impl Role {
    /// The spelling in the tokens file.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Agent => "agent",
            Role::Approver => "approver",
            Role::Admin => "admin",
        }
    }

    /// Reads the spelling of the tokens file.
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "agent" => Some(Role::Agent),
            "approver" => Some(Role::Approver),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }

    /// Whether a holder of `self` may use a route that requires `required`.
    pub fn permits(self, required: Role) -> bool {
        self == Role::Admin || self == required
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One token as written in the tokens file.
#[derive(Clone, PartialEq, Eq)]
pub struct TokenEntry {
    /// Who holds it.
    pub name: String,
    /// What it may do.
    pub role: Role,
    /// The secret.
    pub token: String,
    /// For approvers: the approval roles (the `approval.role` of policy
    /// rules) this token may grant or deny; `None` means every role.
    pub approves: Option<Vec<String>>,
    /// Actor fields bound to the token (`actor:`); empty when none.
    pub actor: BoundActor,
    /// The delegation chain the token speaks for (`chain:`); `None` means
    /// the one link `token:<name>`.
    pub chain: Option<Vec<ChainLink>>,
    /// The actions the token may ask for (`actions:`), the scope of the
    /// chain's last link; `None` means every action.
    pub actions: Option<ActionScope>,
}

impl fmt::Debug for TokenEntry {
    // Never print the secret, even in a debug dump.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenEntry")
            .field("name", &self.name)
            .field("role", &self.role)
            .finish_non_exhaustive()
    }
}

/// The authenticated caller of a request, put in the request's extensions
/// by the auth layer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    /// The token's name.
    pub name: String,
    /// The token's role.
    pub role: Role,
    /// The approval roles it may grant or deny; `None` means every role.
    pub approves: Option<Vec<String>>,
    /// What the credential says about the actor: the fields it binds
    /// (set on every request it makes, and not to be contradicted by the
    /// request's body), its delegation chain and the actions each link
    /// allows.
    pub credential: Credential,
    /// What kind of credential it is.
    pub source: CredentialSource,
    /// When it stops being accepted (JWTs and delegation tokens); `None`
    /// for the tokens file's, which hold until the file changes.
    pub expires_at: Option<jiff::Timestamp>,
}

/// What kind of credential a caller presented.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CredentialSource {
    /// A token of the tokens file.
    Static,
    /// A JWT verified against a configured issuer (its `iss`).
    Jwt {
        /// The issuer.
        issuer: String,
    },
    /// A delegation token minted by this server (`rein token delegate`).
    Delegated,
}

/// Why a tokens file or list was refused.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct TokenError(String);

/// Why a presented bearer token was refused (the answer is 401).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AuthRefusal {
    /// Not a token of the tokens file, and not shaped as a JWT or a
    /// delegation token.
    Unknown,
    /// A JWT or delegation token that does not verify: why, for the log
    /// and the answer (never the token itself).
    Invalid(String),
}

/// The accepted credentials: the tokens file's tokens, its JWT issuers,
/// and this server's delegation tokens.
#[derive(Clone)]
pub struct Tokens {
    entries: Vec<Stored>,
    issuers: crate::jwt::Issuers,
    delegation: crate::delegation::Verifier,
}

#[derive(Clone)]
struct Stored {
    identity: Arc<Identity>,
    digest: [u8; 32],
}

impl fmt::Debug for Tokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.entries.iter().map(|e| &*e.identity))
            .finish()
    }
}

impl Tokens {
    /// Accepts a list of tokens. Refuses an empty list, empty names, tokens
    /// shorter than [`MIN_TOKEN_LEN`] or with whitespace, a token given
    /// twice (it would have two identities), and a name given twice (two
    /// tokens would share one identity).
    pub fn from_entries(entries: impl IntoIterator<Item = TokenEntry>) -> Result<Tokens, TokenError> {
        let mut stored: Vec<Stored> = Vec::new();
        for (i, e) in entries.into_iter().enumerate() {
            let which = format!("token {} (`{}`)", i + 1, e.name);
            if e.name.trim().is_empty() {
                return Err(TokenError(format!("token {}: the name is empty", i + 1)));
            }
            // `/` separates the links of a delegated token's name
            // (`bot/subagent:r`): a static token so named would be that
            // child, sharing its sessions, outcomes and approvals.
            if e.name.contains('/') {
                return Err(TokenError(format!(
                    "{which}: a token name cannot hold `/`, which names delegated tokens (`<parent>/<kind:id>`)"
                )));
            }
            // The actor id is what self-approval compares: a number would
            // be no id at all to it, so one person's two tokens could
            // approve each other.
            if let Some(id) = e.actor.get("id").filter(|id| !id.is_string()) {
                return Err(TokenError(format!(
                    "{which}: `actor.id` must be a string (an id), not {id}"
                )));
            }
            if e.token.chars().count() < MIN_TOKEN_LEN {
                return Err(TokenError(format!(
                    "{which}: a token needs at least {MIN_TOKEN_LEN} characters"
                )));
            }
            if e.token.chars().any(char::is_whitespace) {
                return Err(TokenError(format!("{which}: a token cannot contain whitespace")));
            }
            // The name is the identity: outcomes, approvals and the
            // self-approval check are bound to it. Two tokens of one name
            // would share them (one agent spending the other's grants).
            if let Some(other) = stored.iter().position(|s| s.identity.name == e.name) {
                return Err(TokenError(format!(
                    "{which}: the name is also token {}'s; each token needs a name of its own",
                    other + 1
                )));
            }
            let digest = digest(&e.token);
            if let Some(other) = stored.iter().find(|s| s.digest == digest) {
                return Err(TokenError(format!(
                    "{which}: the same token is also given to `{}`",
                    other.identity.name
                )));
            }
            let chain = e.chain.unwrap_or_else(|| {
                vec![ChainLink {
                    kind: "token".into(),
                    id: e.name.clone(),
                }]
            });
            if chain.is_empty() {
                return Err(TokenError(format!(
                    "{which}: `chain` is empty; give at least one link, or leave it out for `token:{}`",
                    e.name
                )));
            }
            let scopes = e.actions.map(|a| vec![(chain.len() - 1, a)]).unwrap_or_default();
            stored.push(Stored {
                identity: Arc::new(Identity {
                    name: e.name,
                    role: e.role,
                    approves: e.approves,
                    credential: Credential {
                        fields: e.actor,
                        chain: Some(chain),
                        scopes,
                        ..Credential::default()
                    },
                    source: CredentialSource::Static,
                    expires_at: None,
                }),
                digest,
            });
        }
        if stored.is_empty() {
            return Err(TokenError("no tokens: nobody could use the server".into()));
        }
        Ok(Tokens {
            entries: stored,
            issuers: crate::jwt::Issuers::default(),
            delegation: crate::delegation::Verifier::default(),
        })
    }

    /// Reads a tokens file.
    pub fn load(path: &Path) -> Result<Tokens, TokenError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| TokenError(format!("cannot read tokens file {}: {e}", path.display())))?;
        Tokens::parse(&path.display().to_string(), &text)
    }

    /// Reads the text of a tokens file; `name` names it in errors.
    pub fn parse(name: &str, text: &str) -> Result<Tokens, TokenError> {
        let source = SourceFile::new(name, text);
        let at = |node: &YamlNode, message: String| {
            let (line, column) = source.line_col(node.span.start as usize);
            TokenError(format!("{name}:{line}:{column}: {message}"))
        };
        let root = yaml::parse(text).map_err(|e| {
            let (line, column) = source.line_col(e.span.start as usize);
            TokenError(format!("{name}:{line}:{column}: {}", e.message))
        })?;
        let YamlValue::Map(top) = &root.value else {
            return Err(at(
                &root,
                format!("expected a mapping with `tokens:`, found a {}", root.kind_name()),
            ));
        };
        let (mut list, mut issuers_list) = (None, None);
        for (k, v) in top {
            match &k.value {
                YamlValue::String(s) if s == "tokens" => list = Some(v),
                YamlValue::String(s) if s == "issuers" => issuers_list = Some(v),
                _ => return Err(at(k, "unknown key; the file has only `tokens:` and `issuers:`".into())),
            }
        }
        if list.is_none() && issuers_list.is_none() {
            return Err(at(&root, "missing `tokens:` (or `issuers:`)".into()));
        }
        let items: &[YamlNode] = match list.map(|l| (l, &l.value)) {
            None => &[],
            Some((_, YamlValue::Seq(items))) => items,
            Some((list, _)) => {
                return Err(at(
                    list,
                    format!("`tokens` must be a list, found a {}", list.kind_name()),
                ))
            }
        };
        let mut entries = Vec::with_capacity(items.len());
        for item in items {
            let YamlValue::Map(fields) = &item.value else {
                return Err(at(
                    item,
                    format!("a token must be a mapping, found a {}", item.kind_name()),
                ));
            };
            let (mut name, mut role, mut token, mut approves) = (None, None, None, None);
            let mut actor = BoundActor::new();
            let (mut chain, mut actions) = (None, None);
            for (k, v) in fields {
                let key = match &k.value {
                    YamlValue::String(s) => s.as_str(),
                    _ => return Err(at(k, "keys must be strings".into())),
                };
                if key == "approves" {
                    let YamlValue::Seq(items) = &v.value else {
                        return Err(at(
                            v,
                            format!("`approves` must be a list of roles, found a {}", v.kind_name()),
                        ));
                    };
                    let mut roles = Vec::with_capacity(items.len());
                    for item in items {
                        match &item.value {
                            YamlValue::String(r) => roles.push(r.clone()),
                            _ => return Err(at(item, "a role in `approves` must be a string".into())),
                        }
                    }
                    approves = Some(roles);
                    continue;
                }
                if key == "actor" {
                    actor = bound_actor(v, &at)?;
                    continue;
                }
                if key == "chain" {
                    chain = Some(chain_links(v, &at)?);
                    continue;
                }
                if key == "actions" {
                    actions = Some(action_scope(v, &at)?);
                    continue;
                }
                // A misspelt key is named as such, whatever its value.
                if !matches!(key, "name" | "token" | "role") {
                    return Err(at(
                        k,
                        format!("unknown key `{key}`; a token has name, role, token, approves, actor, chain, actions"),
                    ));
                }
                let YamlValue::String(value) = &v.value else {
                    return Err(at(v, format!("`{key}` must be a string, found a {}", v.kind_name())));
                };
                match key {
                    "name" => name = Some(value.clone()),
                    "token" => token = Some(value.clone()),
                    "role" => {
                        role = Some(Role::parse(value).ok_or_else(|| {
                            at(v, format!("unknown role `{value}`; roles are agent, approver, admin"))
                        })?);
                    }
                    other => {
                        return Err(at(
                            k,
                            format!(
                                "unknown key `{other}`; a token has name, role, token, approves, actor, chain, actions"
                            ),
                        ))
                    }
                }
            }
            let missing = |what: &str| at(item, format!("this token has no `{what}`"));
            entries.push(TokenEntry {
                name: name.ok_or_else(|| missing("name"))?,
                role: role.ok_or_else(|| missing("role"))?,
                token: token.ok_or_else(|| missing("token"))?,
                approves,
                actor,
                chain,
                actions,
            });
        }
        let issuers = match issuers_list {
            Some(node) => crate::jwt::parse_issuers(node, Path::new(name).parent(), &at)?,
            None => crate::jwt::Issuers::default(),
        };
        // `<issuer>:<subject>` names a JWT's holder: a static token of
        // such a name would share that identity (its approvals, its
        // self-approval check).
        for (entry, item) in entries.iter().zip(items) {
            if let Some(issuer) = issuers
                .names()
                .into_iter()
                .find(|i| entry.name.strip_prefix(i).is_some_and(|rest| rest.starts_with(':')))
            {
                return Err(at(
                    item,
                    format!(
                        "the token name `{}` is of the form `{issuer}:…`, which names the holders of issuer `{issuer}`'s JWTs",
                        entry.name
                    ),
                ));
            }
        }
        let mut tokens = if entries.is_empty() && !issuers.is_empty() {
            Tokens {
                entries: Vec::new(),
                issuers: crate::jwt::Issuers::default(),
                delegation: crate::delegation::Verifier::default(),
            }
        } else {
            Tokens::from_entries(entries).map_err(|e| TokenError(format!("{name}: {}", e.0)))?
        };
        tokens.issuers = issuers;
        Ok(tokens)
    }

    /// The identity holding `presented`, a token of the tokens file, if
    /// any. Every stored digest is compared, in constant time, whatever
    /// matches.
    pub fn authenticate(&self, presented: &str) -> Option<Arc<Identity>> {
        self.find(presented).cloned()
    }

    /// The identity holding `presented`: a token of the tokens file, a
    /// delegation token minted by this server, or a JWT of a configured
    /// issuer.
    pub fn verify(&self, presented: &str) -> Result<Arc<Identity>, AuthRefusal> {
        // A JWT verified before, first: hashing a long JWT for the tokens
        // file's digests would cost more than the whole cached answer. A
        // cached JWT was no static token when it was verified, and the
        // tokens file does not change while the server runs.
        if let Some(found) = self.issuers.cached(presented) {
            return Ok(found);
        }
        if let Some(found) = self.find(presented) {
            return Ok(found.clone());
        }
        if crate::delegation::looks_like(presented) {
            return self.delegation.verify(presented, self);
        }
        if crate::jwt::looks_like(presented) {
            return self.issuers.verify(presented);
        }
        Err(AuthRefusal::Unknown)
    }

    /// These tokens, also accepting the delegation tokens that `verifier`
    /// signed (and letting it mint more).
    pub(crate) fn with_delegation(mut self, verifier: crate::delegation::Verifier) -> Tokens {
        self.delegation = verifier;
        self
    }

    /// The delegation tokens' signer and verifier.
    pub(crate) fn delegation(&self) -> &crate::delegation::Verifier {
        &self.delegation
    }

    /// The configured JWT issuers.
    pub(crate) fn issuers(&self) -> &crate::jwt::Issuers {
        &self.issuers
    }

    /// The tokens-file token named `name`: its identity and the SHA-256
    /// digest of its secret (what a delegation token's root is bound to).
    /// Every actor field a credential of this file binds, with who binds
    /// it (`token \`name\``, `issuer \`name\``), in file order.
    pub(crate) fn bound_fields(&self) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = self
            .entries
            .iter()
            .flat_map(|e| {
                let who = format!("token `{}`", e.identity.name);
                e.identity
                    .credential
                    .fields
                    .keys()
                    .map(move |f| (who.clone(), f.clone()))
            })
            .collect();
        out.extend(self.issuers.bound_fields());
        out
    }

    /// What to tell the operator of bindings `policy` makes useless: a
    /// field a credential binds that the actor contract refuses (every
    /// request made with it is blocked), and a field the policy requires
    /// bound that no credential of the file binds (every request
    /// needing it is blocked, unless a delegation from an admin binds it).
    pub fn binding_warnings(&self, policy: &rein_engine::Policy) -> Vec<String> {
        let bound = self.bound_fields();
        let mut warnings: Vec<String> = bound
            .iter()
            .filter(|(_, field)| policy.actor_refuses_field(field))
            .map(|(who, field)| {
                format!(
                    "{who} binds actor.{field}, which the policy's actor contract does not declare: every request \
                     made with it is blocked (`contract: actor.{field}: is not declared in the contract`)"
                )
            })
            .collect();
        for field in policy.bound_actor_fields() {
            // Every credential binds a chain.
            if field != "chain" && !bound.iter().any(|(_, f)| f == field) {
                warnings.push(format!(
                    "the policy requires actor.{field} bound (`bound: true`), but no token or issuer of the tokens \
                     file binds it: every request is blocked (`actor.{field} must be set by the credential`)"
                ));
            }
        }
        warnings
    }

    pub(crate) fn static_token(&self, name: &str) -> Option<(&Arc<Identity>, &[u8; 32])> {
        self.entries
            .iter()
            .find(|e| e.identity.name == name)
            .map(|e| (&e.identity, &e.digest))
    }

    fn find(&self, presented: &str) -> Option<&Arc<Identity>> {
        let wanted = digest(presented);
        let mut found = None;
        for e in &self.entries {
            if bool::from(e.digest.ct_eq(&wanted)) {
                found = Some(&e.identity);
            }
        }
        found
    }
}

/// Actor fields a token may not bind: `chain` is the delegation chain,
/// which only Rein writes.
const RESERVED_ACTOR_FIELDS: &[&str] = &["chain"];

/// Reads a token's `actor:` mapping: plain field names (what a policy
/// reads as `actor.<field>`) to scalar values. Anything else is refused:
/// a binding nobody can read as written would bind nothing.
fn bound_actor(node: &YamlNode, at: &impl Fn(&YamlNode, String) -> TokenError) -> Result<BoundActor, TokenError> {
    let YamlValue::Map(fields) = &node.value else {
        return Err(at(
            node,
            format!(
                "`actor` must be a mapping of actor fields to values, found a {}",
                node.kind_name()
            ),
        ));
    };
    let mut actor = BoundActor::new();
    for (k, v) in fields {
        let YamlValue::String(field) = &k.value else {
            return Err(at(k, "actor fields must be names".into()));
        };
        let plain = crate::auth::is_plain_field(field);
        if !plain {
            return Err(at(
                k,
                format!("unknown actor field `{field}`; a bound field is a plain name such as id, role, tenant"),
            ));
        }
        if RESERVED_ACTOR_FIELDS.contains(&field.as_str()) {
            return Err(at(
                k,
                format!("unknown actor field `{field}`; `actor.{field}` is set by Rein, not by a token"),
            ));
        }
        let value = match &v.value {
            YamlValue::String(s) => serde_json::Value::String(s.clone()),
            YamlValue::Bool(b) => serde_json::Value::Bool(*b),
            YamlValue::Int(i) => serde_json::Value::from(*i),
            YamlValue::Float(f) => match serde_json::Number::from_f64(*f) {
                Some(n) => serde_json::Value::Number(n),
                None => return Err(at(v, format!("`actor.{field}` must be a finite number"))),
            },
            _ => {
                return Err(at(
                    v,
                    format!(
                        "`actor.{field}` must be a string, number or boolean, found a {}",
                        v.kind_name()
                    ),
                ))
            }
        };
        if actor.insert(field.clone(), value).is_some() {
            return Err(at(k, format!("`actor.{field}` is given twice")));
        }
    }
    Ok(actor)
}

/// Reads a token's `chain:`: a non-empty list of `kind:id` links, from
/// the person (or root credential) down to the agent holding the token.
fn chain_links(node: &YamlNode, at: &impl Fn(&YamlNode, String) -> TokenError) -> Result<Vec<ChainLink>, TokenError> {
    let YamlValue::Seq(items) = &node.value else {
        return Err(at(
            node,
            format!(
                "`chain` must be a list of kind:id links (e.g. [\"user:alice\", \"agent:bot\"]), found a {}",
                node.kind_name()
            ),
        ));
    };
    if items.is_empty() {
        return Err(at(node, "`chain` is empty; give at least one kind:id link".into()));
    }
    let mut links = Vec::with_capacity(items.len());
    for item in items {
        let YamlValue::String(text) = &item.value else {
            return Err(at(
                item,
                format!(
                    "a link of `chain` must be a kind:id string, found a {}",
                    item.kind_name()
                ),
            ));
        };
        links.push(ChainLink::parse(text).map_err(|e| at(item, e))?);
    }
    Ok(links)
}

/// Reads a token's `actions:`: a non-empty list of action names,
/// `prefix.*` or `*`.
fn action_scope(node: &YamlNode, at: &impl Fn(&YamlNode, String) -> TokenError) -> Result<ActionScope, TokenError> {
    let YamlValue::Seq(items) = &node.value else {
        return Err(at(
            node,
            format!(
                "`actions` must be a list of action patterns (e.g. [file.read, \"web.*\"]), found a {}",
                node.kind_name()
            ),
        ));
    };
    if items.is_empty() {
        return Err(at(
            node,
            "`actions` is empty: the token could do nothing; leave it out for every action".into(),
        ));
    }
    let mut patterns = Vec::with_capacity(items.len());
    for item in items {
        let YamlValue::String(text) = &item.value else {
            return Err(at(
                item,
                format!("an action pattern must be a string, found a {}", item.kind_name()),
            ));
        };
        // Each pattern alone, so that the error points at the bad one.
        ActionScope::from_patterns([text.clone()]).map_err(|e| at(item, e))?;
        patterns.push(text.clone());
    }
    ActionScope::from_patterns(patterns).map_err(|e| at(node, e))
}

/// Whether `name` can be a bound actor field: a plain name (a letter or
/// `_`, then letters, digits, `_`), as a policy reads `actor.<name>`.
pub(crate) fn is_plain_field(name: &str) -> bool {
    name.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Comparing fixed-length digests keeps the comparison's time independent
/// of the token's length as well as its content.
fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// The auth layer of the approver and admin routes: the caller must
/// present a token whose role permits `required`. Missing or unknown token
/// → 401, wrong role → 403. The caller's [`Identity`] is added to the
/// request's extensions. (The agent routes call [`authorize`] themselves,
/// first thing: a layer costs an allocation and a boxed future per
/// request on the hot path.)
///
/// A route some role may also use for its own records only (`own`: agents
/// read the approvals their requests opened) lets that role through; the
/// handler narrows what it sees.
pub(crate) async fn require_role(
    State((state, required, own)): State<(AppState, Role, Option<Role>)>,
    matched: Option<MatchedPath>,
    mut request: Request,
    next: Next,
) -> Response {
    let route = matched
        .as_ref()
        .map_or_else(|| request.uri().path(), MatchedPath::as_str);
    match authorize_with(&state, required, own, request.headers(), route) {
        Ok(identity) => {
            request.extensions_mut().insert(identity);
            next.run(request).await
        }
        Err(refused) => refused.into_response(),
    }
}

/// Checks that `headers` carry a bearer token whose role permits
/// `required`; the refusal (401 or 403, logged and counted, and `block` on
/// the agent routes) otherwise.
pub(crate) fn authorize(
    state: &AppState,
    required: Role,
    headers: &HeaderMap,
    route: &str,
) -> Result<Arc<Identity>, ApiError> {
    authorize_with(state, required, None, headers, route)
}

/// As [`authorize`], also letting through a token of role `own` (see
/// [`require_role`]).
pub(crate) fn authorize_with(
    state: &AppState,
    required: Role,
    own: Option<Role>,
    headers: &HeaderMap,
    route: &str,
) -> Result<Arc<Identity>, ApiError> {
    // The agent routes answer decisions: their errors must read as `block`.
    let block = required == Role::Agent;
    let Some(presented) = bearer(headers) else {
        state.metrics().auth_failure("missing");
        tracing::warn!(route = %route, token = "<none>", "refused: no bearer token");
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "this route needs `Authorization: Bearer <token>`",
        )
        .blocking(block));
    };
    let identity = match state.tokens().verify(presented) {
        Ok(identity) => identity,
        Err(AuthRefusal::Unknown) => {
            state.metrics().auth_failure("unknown");
            tracing::warn!(route = %route, token = "<unknown>", "refused: unknown bearer token");
            return Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "the bearer token is not known",
            )
            .blocking(block));
        }
        Err(AuthRefusal::Invalid(why)) => {
            state.metrics().auth_failure("invalid");
            tracing::warn!(route = %route, token = "<invalid>", reason = %why, "refused: bearer token does not verify");
            return Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                format!("the bearer token does not verify: {why}"),
            )
            .blocking(block));
        }
    };
    if !identity.role.permits(required) && own != Some(identity.role) {
        state.metrics().auth_failure("forbidden");
        tracing::warn!(route = %route, token = %identity.name, role = %identity.role, required = %required, "refused: wrong role");
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!(
                "token `{}` has role `{}`; this route needs `{required}`",
                identity.name, identity.role
            ),
        )
        .blocking(block));
    }
    Ok(identity)
}

/// The bearer token `headers` carry, if any.
pub(crate) fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, token) = v.trim().split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_authenticates() {
        let text = "tokens:\n  - {name: bot, role: agent, token: aaaaaaaaaaaaaaaa}\n  - name: alice\n    role: approver\n    token: bbbbbbbbbbbbbbbb\n";
        let tokens = Tokens::parse("t.yaml", text).unwrap();
        assert_eq!(tokens.authenticate("aaaaaaaaaaaaaaaa").unwrap().role, Role::Agent);
        assert_eq!(tokens.authenticate("bbbbbbbbbbbbbbbb").unwrap().name, "alice");
        assert!(tokens.authenticate("aaaaaaaaaaaaaaa").is_none());
        assert!(tokens.authenticate("").is_none());
    }

    #[test]
    fn refuses_bad_files_with_location() {
        let bad_role = Tokens::parse(
            "t.yaml",
            "tokens:\n  - {name: x, role: root, token: aaaaaaaaaaaaaaaa}\n",
        );
        assert_eq!(
            bad_role.unwrap_err().to_string(),
            "t.yaml:2:21: unknown role `root`; roles are agent, approver, admin"
        );
        let short = Tokens::parse("t.yaml", "tokens:\n  - {name: x, role: admin, token: abc}\n").unwrap_err();
        assert!(short.to_string().contains("at least 16"), "{short}");
        let dup = "tokens:\n  - {name: x, role: admin, token: aaaaaaaaaaaaaaaa}\n  - {name: y, role: agent, token: aaaaaaaaaaaaaaaa}\n";
        assert!(Tokens::parse("t.yaml", dup)
            .unwrap_err()
            .to_string()
            .contains("also given to `x`"));
        assert!(Tokens::parse("t.yaml", "tokens: []\n").is_err());
        assert!(Tokens::parse("t.yaml", "tokenz: []\n").is_err());
        assert!(Tokens::parse("t.yaml", "tokens:\n  - {name: x, role: admin}\n").is_err());
    }

    /// A token's name is who it is (outcomes, approvals, self-approval
    /// are bound to it): two tokens of one name, whatever their roles,
    /// would share one identity.
    #[test]
    fn refuses_a_name_given_twice() {
        for (a, b) in [("agent", "agent"), ("agent", "approver"), ("approver", "admin")] {
            let text = format!(
                "tokens:\n  - {{name: bot, role: {a}, token: aaaaaaaaaaaaaaaa}}\n  - {{name: ops, role: admin, token: cccccccccccccccc}}\n  - {{name: bot, role: {b}, token: bbbbbbbbbbbbbbbb}}\n"
            );
            let e = Tokens::parse("t.yaml", &text).unwrap_err().to_string();
            assert!(e.contains("token 3 (`bot`): the name is also token 1's"), "{e}");
        }
    }

    #[test]
    fn approvers_can_be_limited_to_approval_roles() {
        let text = "tokens:\n  - name: sam\n    role: approver\n    token: aaaaaaaaaaaaaaaa\n    approves: [support, finance]\n  - {name: al, role: approver, token: bbbbbbbbbbbbbbbb}\n";
        let tokens = Tokens::parse("t.yaml", text).unwrap();
        let sam = tokens.authenticate("aaaaaaaaaaaaaaaa").unwrap();
        assert_eq!(sam.approves, Some(vec!["support".to_string(), "finance".to_string()]));
        assert_eq!(tokens.authenticate("bbbbbbbbbbbbbbbb").unwrap().approves, None);
        let bad = Tokens::parse(
            "t.yaml",
            "tokens:\n  - {name: x, role: approver, token: aaaaaaaaaaaaaaaa, approves: admin}\n",
        );
        assert!(bad.unwrap_err().to_string().contains("`approves` must be a list"));
    }

    #[test]
    fn binds_actor_fields() {
        let text = "tokens:\n  - name: bot\n    role: agent\n    token: aaaaaaaaaaaaaaaa\n    actor: {id: support-bot, role: agent, tenant: acme, level: 3, trusted: false}\n  - {name: al, role: agent, token: bbbbbbbbbbbbbbbb}\n";
        let tokens = Tokens::parse("t.yaml", text).unwrap();
        let bot = tokens.authenticate("aaaaaaaaaaaaaaaa").unwrap();
        assert_eq!(
            serde_json::Value::Object(bot.credential.fields.clone()),
            serde_json::json!({"id": "support-bot", "role": "agent", "tenant": "acme", "level": 3, "trusted": false})
        );
        assert!(tokens
            .authenticate("bbbbbbbbbbbbbbbb")
            .unwrap()
            .credential
            .fields
            .is_empty());
    }

    #[test]
    fn refuses_bad_actor_bindings_with_location() {
        let cases = [
            (
                "actor: {id: bot, roles: [agent]}",
                "t.yaml:5:29: `actor.roles` must be a string, number or boolean, found a list",
            ),
            (
                "actor: {id: {a: 1}}",
                "t.yaml:5:17: `actor.id` must be a string, number or boolean, found a mapping",
            ),
            (
                "actor: {id: }",
                "t.yaml:5:15: `actor.id` must be a string, number or boolean, found a null",
            ),
            (
                "actor: {a.b: x}",
                "t.yaml:5:13: unknown actor field `a.b`; a bound field is a plain name such as id, role, tenant",
            ),
            (
                "actor: {chain: x}",
                "t.yaml:5:13: unknown actor field `chain`; `actor.chain` is set by Rein, not by a token",
            ),
            (
                "actor: agent",
                "t.yaml:5:12: `actor` must be a mapping of actor fields to values, found a string",
            ),
            ("actor: {id: a, id: b}", "t.yaml:5:20: duplicate key `id`"),
            (
                "actors: {id: a}",
                "t.yaml:5:5: unknown key `actors`; a token has name, role, token, approves, actor, chain, actions",
            ),
        ];
        for (line, want) in cases {
            let text = format!("tokens:\n  - name: bot\n    role: agent\n    token: aaaaaaaaaaaaaaaa\n    {line}\n");
            match Tokens::parse("t.yaml", &text) {
                Err(e) => assert_eq!(e.to_string(), want, "{line}"),
                Ok(_) => panic!("accepted {line}"),
            }
        }
    }

    #[test]
    fn binds_a_chain_and_actions() {
        let text = "tokens:\n  - name: r\n    role: agent\n    token: aaaaaaaaaaaaaaaa\n    chain: [\"user:alice\", \"agent:bot\"]\n    actions: [file.read, \"web.*\"]\n  - {name: plain, role: agent, token: bbbbbbbbbbbbbbbb}\n";
        let tokens = Tokens::parse("t.yaml", text).unwrap();
        let r = tokens.authenticate("aaaaaaaaaaaaaaaa").unwrap();
        let links: Vec<String> = r.credential.chain.iter().flatten().map(ToString::to_string).collect();
        assert_eq!(links, ["user:alice", "agent:bot"]);
        assert_eq!(r.credential.scopes.len(), 1);
        assert_eq!(r.credential.scopes[0].0, 1, "the scope of the last link");
        assert_eq!(r.credential.scopes[0].1.patterns(), ["file.read", "web.*"]);
        let why = r.credential.refuses("shell.run").unwrap();
        assert!(why.contains("chain link 2 (agent:bot)"), "{why}");
        // Without `chain:` a token speaks for itself; without `actions:`
        // it may ask for every action.
        let plain = tokens.authenticate("bbbbbbbbbbbbbbbb").unwrap();
        assert_eq!(
            plain.credential.chain,
            Some(vec![ChainLink::parse("token:plain").unwrap()])
        );
        assert!(plain.credential.scopes.is_empty());
        assert_eq!(plain.credential.refuses("anything.at.all"), None);
    }

    #[test]
    fn refuses_bad_chains_and_actions_with_location() {
        let cases = [
            (
                "chain: user:alice",
                "t.yaml:5:12: `chain` must be a list of kind:id links",
            ),
            ("chain: []", "t.yaml:5:12: `chain` is empty"),
            ("chain: [alice]", "t.yaml:5:13: `alice` is not a chain link"),
            (
                "chain: [\"user:a\", \"us er:b\"]",
                "t.yaml:5:23: the kind `us er` of a chain link",
            ),
            (
                "chain: [{kind: user}]",
                "t.yaml:5:13: a link of `chain` must be a kind:id string, found a mapping",
            ),
            (
                "actions: file.read",
                "t.yaml:5:14: `actions` must be a list of action patterns",
            ),
            ("actions: []", "t.yaml:5:14: `actions` is empty"),
            (
                "actions: [file.read, \"web*\"]",
                "t.yaml:5:26: `web*` is not an action pattern",
            ),
            (
                "actions: [file.read, 3]",
                "t.yaml:5:26: an action pattern must be a string, found a",
            ),
        ];
        for (line, want) in cases {
            let text = format!("tokens:\n  - name: bot\n    role: agent\n    token: aaaaaaaaaaaaaaaa\n    {line}\n");
            match Tokens::parse("t.yaml", &text) {
                Err(e) => assert!(e.to_string().starts_with(want), "{line}: {e}"),
                Ok(_) => panic!("accepted {line}"),
            }
        }
    }

    /// An actor id is compared as text by the self-approval check: a
    /// number would be no id to it. `/` names delegated tokens
    /// (`bot/subagent:r`): a static token so named would be that child.
    #[test]
    fn refuses_ids_that_are_not_text_and_names_of_delegated_tokens() {
        for (entry, want) in [
            (
                "{name: bot/subagent:r, role: agent, token: aaaaaaaaaaaaaaaa}",
                "cannot hold `/`",
            ),
            (
                "{name: a/b, role: approver, token: aaaaaaaaaaaaaaaa}",
                "cannot hold `/`",
            ),
            (
                "{name: bot, role: agent, token: aaaaaaaaaaaaaaaa, actor: {id: 1001}}",
                "`actor.id` must be a string",
            ),
            (
                "{name: bot, role: agent, token: aaaaaaaaaaaaaaaa, actor: {id: 1.5}}",
                "`actor.id` must be a string",
            ),
            (
                "{name: bot, role: agent, token: aaaaaaaaaaaaaaaa, actor: {id: true}}",
                "`actor.id` must be a string",
            ),
        ] {
            let text = format!("tokens:\n  - {entry}\n");
            match Tokens::parse("t.yaml", &text) {
                Err(e) => assert!(e.to_string().contains(want), "{entry}: {e}"),
                Ok(_) => panic!("accepted {entry}"),
            }
        }
        // Other fields may still be numbers; an id is text.
        let text = "tokens:\n  - {name: bot, role: agent, token: aaaaaaaaaaaaaaaa, actor: {id: \"1001\", level: 3}}\n";
        assert!(Tokens::parse("t.yaml", text).is_ok());
    }

    /// A binding the policy makes useless is told at start: a field the
    /// actor contract refuses, a required field nobody binds.
    #[test]
    fn warns_of_bindings_the_policy_makes_useless() {
        let policy = rein_engine::Policy::from_yaml_str(
            "contracts:\n  actor: {id: {type: string, bound: true}, org: {type: string, bound: true}}\n  actions: {a: {input: {}}}\nrules: []\n",
        )
        .unwrap();
        let text = "tokens:\n  - {name: bot, role: agent, token: aaaaaaaaaaaaaaaa, actor: {id: bot, tenant: acme}}\n";
        let warnings = Tokens::parse("t.yaml", text).unwrap().binding_warnings(&policy);
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        assert!(
            warnings[0].starts_with("token `bot` binds actor.tenant, which the policy's actor contract"),
            "{warnings:?}"
        );
        assert!(
            warnings[1].starts_with("the policy requires actor.org bound"),
            "{warnings:?}"
        );
        // A policy without an actor contract, or declaring the fields, warns of nothing.
        let open = rein_engine::Policy::from_yaml_str("contracts:\n  actions: {a: {input: {}}}\nrules: []\n").unwrap();
        assert!(Tokens::parse("t.yaml", text)
            .unwrap()
            .binding_warnings(&open)
            .is_empty());
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let e = TokenEntry {
            name: "n".into(),
            role: Role::Admin,
            token: "supersecretsupersecret".into(),
            approves: None,
            actor: BoundActor::new(),
            chain: None,
            actions: None,
        };
        assert!(!format!("{e:?}").contains("supersecret"));
    }
}
