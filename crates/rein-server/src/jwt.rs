//! JWT bearer tokens verified against configured issuers (`issuers:` in
//! the tokens file, read by [`crate::auth`]): signature by the issuer's
//! keys (a JWKS file, or a JWKS URL fetched and cached), audience, expiry
//! with a small leeway, allowed algorithms, and a claim mapping to the
//! token's role and bound actor fields.
//!
//! What is refused, always, with a reason (401, never a decision): a token
//! whose `iss` is no configured issuer's; `alg: none` and every HMAC
//! algorithm (issuers sign with asymmetric keys, so a token "signed" with
//! an issuer's public key as an HMAC secret can never verify); an
//! algorithm the issuer does not allow or that does not fit the key's
//! type; a `crit` header (no extension is understood); a missing `exp`,
//! `iss`, `aud` or `sub`; an `exp` past, an `nbf` or `iat` ahead (beyond
//! the leeway); a mapped claim that is missing or not a scalar.
//!
//! Keys: a JWKS file is read at startup (an unreadable or keyless file
//! stops the server) and again, as a URL is fetched, when its keys are
//! older than `jwks_ttl_seconds` or a token names a `kid` it lacks (at
//! most once per `jwks_min_refetch_seconds`). A key that appears is used
//! from then on; a key that disappears stops verifying, cached tokens
//! included. When a refresh fails, the last keys stay in use.
//!
//! Verified tokens are cached (keyed by the whole token, bounded, never
//! past the token's `exp`, a change of keys, or `jwks_ttl_seconds`), so
//! that a repeated token costs a hash lookup instead of a signature check.

use crate::auth::{AuthRefusal, CredentialSource, Identity, Role};
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyOperations, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use rein_runtime::{BoundActor, ChainLink, Credential};
use rustc_hash::FxHashMap;
use serde_json::{Map, Value};
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

mod config;
pub(crate) use config::parse_issuers;

/// Default leeway on `exp`, `nbf` and `iat`, in seconds.
pub const DEFAULT_LEEWAY_SECONDS: u64 = 30;
/// Largest leeway an issuer may set: more would keep expired tokens alive.
pub const MAX_LEEWAY_SECONDS: u64 = 300;
/// Default age after which an issuer's keys are fetched again.
pub const DEFAULT_JWKS_TTL_SECONDS: u64 = 600;
/// Default shortest time between two fetches of an issuer's keys (an
/// unknown `kid` asks for one; made-up `kid`s must not hammer the issuer).
pub const DEFAULT_JWKS_MIN_REFETCH_SECONDS: u64 = 30;
/// How long a JWKS URL fetch may take before the keys are left as they are.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest JWKS accepted, in bytes.
const MAX_JWKS_BYTES: usize = 1 << 20;
/// Verified tokens kept in the cache at most.
const CACHE_CAPACITY: usize = 10_000;
/// Longest token kept in the cache, in bytes: the cache's memory stays
/// bounded whatever an issuer signs (a longer token is verified each time).
const MAX_CACHED_TOKEN: usize = 8 * 1024;
/// Smallest RSA key used, in bits.
const MIN_RSA_BITS: usize = 2048;
/// Longest attacker-chosen text (an unknown `iss`, a `kid`) quoted in a
/// refusal.
const MAX_QUOTED: usize = 80;

/// Where an issuer's keys come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeySource {
    /// A local JWKS file.
    File(PathBuf),
    /// A JWKS URL (`https://`, or `http://` to a loopback address).
    Url(String),
}

/// One issuer as configured in the tokens file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IssuerConfig {
    /// The issuer's short name: identities are named `<name>:<subject>`.
    pub name: String,
    /// The exact `iss` of its tokens.
    pub issuer: String,
    /// The accepted audiences: a token's `aud` must hold one of them.
    pub audience: Vec<String>,
    /// Where its keys come from.
    pub keys: KeySource,
    /// The algorithms accepted; `None` means by key type (RS256 for RSA
    /// keys, ES256/ES384 for P-256/P-384 keys, EdDSA for Ed25519 keys).
    pub algorithms: Option<Vec<Algorithm>>,
    /// Leeway on `exp`, `nbf` and `iat`, in seconds.
    pub leeway_seconds: u64,
    /// Age after which the keys are fetched again.
    pub jwks_ttl: Duration,
    /// Shortest time between two fetches of the keys.
    pub jwks_min_refetch: Duration,
    /// The role of every token of this issuer, unless `roles_claim` maps
    /// to a higher one.
    pub role: Role,
    /// The claim (a string or a list of strings) whose values `roles` maps
    /// to Rein roles.
    pub roles_claim: Option<String>,
    /// Claim value → Rein role. Several mapped values: the highest role
    /// wins (admin over approver over agent); unmapped values are ignored.
    pub roles: Vec<(String, Role)>,
    /// The claim (a string or a list of strings) naming the approval roles
    /// an approver may grant; `None` means every role. With it set, a
    /// token without the claim approves none.
    pub approves_claim: Option<String>,
    /// The claim naming the holder: the identity is `<name>:<value>`.
    pub name_claim: String,
    /// Claim (top-level name, or a dotted path into objects) → bound actor
    /// field. A token lacking a mapped claim is refused.
    pub actor: Vec<(String, String)>,
    /// The kind of the chain's one link, `<chain_kind>:<sub>`.
    pub chain_kind: String,
}

/// The configured JWT issuers; none by default.
#[derive(Clone, Default)]
pub struct Issuers {
    inner: Option<Arc<Inner>>,
}

impl Issuers {
    /// Every actor field an issuer binds, with the issuer's name.
    pub(crate) fn bound_fields(&self) -> Vec<(String, String)> {
        self.inner
            .iter()
            .flat_map(|i| i.issuers.iter())
            .flat_map(|issuer| {
                let who = format!("issuer `{}`", issuer.config.name);
                issuer
                    .config
                    .actor
                    .iter()
                    .map(move |(_, field)| (who.clone(), field.clone()))
            })
            .collect()
    }
}

impl std::fmt::Debug for Issuers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names = self.inner.iter().flat_map(|i| i.issuers.iter().map(|s| &s.config.name));
        f.debug_list().entries(names).finish()
    }
}

struct Inner {
    issuers: Vec<Issuer>,
    cache: Cache,
    /// Bumped whenever an issuer's keys change: cached tokens verified
    /// under older keys are verified again.
    key_generation: AtomicU64,
}

struct Issuer {
    config: IssuerConfig,
    keys: RwLock<Arc<KeySet>>,
    refresh: Mutex<RefreshState>,
}

/// The usable keys of one issuer, as last read.
struct KeySet {
    keys: Vec<Key>,
    /// The JWKs they came from, to tell whether a refresh changed them.
    jwks: Vec<Jwk>,
    /// When they were read; `None` before the first read of a URL.
    read_at: Option<Instant>,
}

struct Key {
    kid: Option<String>,
    /// The algorithms this key verifies for this issuer.
    algorithms: Vec<Algorithm>,
    key: DecodingKey,
}

#[derive(Default)]
struct RefreshState {
    last_attempt: Option<Instant>,
    last_error: Option<String>,
}

impl Issuers {
    /// Issuers for `configs`, reading every JWKS file now (a JWKS URL is
    /// fetched on first use). Refuses two issuers of one name or one `iss`
    /// (each token must have exactly one issuer).
    pub fn new(configs: Vec<IssuerConfig>) -> Result<Issuers, String> {
        if configs.is_empty() {
            return Ok(Issuers::default());
        }
        let mut issuers: Vec<Issuer> = Vec::with_capacity(configs.len());
        for config in configs {
            if issuers.iter().any(|i| i.config.name == config.name) {
                return Err(format!("two issuers are named `{}`", config.name));
            }
            if issuers.iter().any(|i| i.config.issuer == config.issuer) {
                return Err(format!("two issuers have the `iss` `{}`", config.issuer));
            }
            issuers.push(Issuer::new(config)?);
        }
        Ok(Issuers {
            inner: Some(Arc::new(Inner {
                issuers,
                cache: Cache::default(),
                key_generation: AtomicU64::new(0),
            })),
        })
    }

    /// Whether any issuer is configured.
    pub fn is_empty(&self) -> bool {
        self.inner.is_none()
    }

    /// The configured issuers' short names.
    pub fn names(&self) -> Vec<&str> {
        self.inner
            .iter()
            .flat_map(|i| i.issuers.iter().map(|s| s.config.name.as_str()))
            .collect()
    }

    /// The configuration of the issuer whose `iss` is `issuer`, if it is
    /// configured (what a delegation chain started by one of its JWTs is
    /// bound to).
    pub fn config_of(&self, issuer: &str) -> Option<&IssuerConfig> {
        self.inner
            .iter()
            .flat_map(|i| i.issuers.iter())
            .map(|s| &s.config)
            .find(|c| c.issuer == issuer)
    }

    /// The identity of `token` if it was verified before and is still
    /// valid (not expired, its issuer's keys unchanged): a hash lookup.
    pub fn cached(&self, token: &str) -> Option<Arc<Identity>> {
        let inner = self.inner.as_ref()?;
        let generation = inner.key_generation.load(Ordering::Acquire);
        inner.cache.get(token, unix_now, generation)
    }

    /// Verifies `token` against the issuer its `iss` names.
    pub fn verify(&self, token: &str) -> Result<Arc<Identity>, AuthRefusal> {
        let Some(inner) = &self.inner else {
            return Err(AuthRefusal::Invalid("no JWT issuer is configured".into()));
        };
        let now = unix_now();
        let generation = inner.key_generation.load(Ordering::Acquire);
        if let Some(identity) = inner.cache.get(token, || now, generation) {
            return Ok(identity);
        }
        if !looks_like(token) {
            return Err(AuthRefusal::Invalid("not a JWT (three base64url parts)".into()));
        }
        let (identity, cache_until) = inner.verify_uncached(token, now).map_err(AuthRefusal::Invalid)?;
        let identity = Arc::new(identity);
        // The generation read before verifying: if keys changed meanwhile,
        // the entry is stale at once rather than outliving a removed key.
        inner
            .cache
            .insert(token, identity.clone(), cache_until, now, generation);
        Ok(identity)
    }
}

impl Inner {
    /// The identity of `token`, and until when it may be answered from the
    /// cache: its `exp`, or sooner, when its issuer's keys are due to be
    /// read again (a key removed meanwhile must stop verifying the tokens
    /// it signed even if only cached tokens are presented).
    fn verify_uncached(&self, token: &str, now: i64) -> Result<(Identity, i64), String> {
        let mut parts = token.split('.');
        let (Some(header), Some(payload), Some(_), None) = (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err("not a JWT (three dot-separated parts)".into());
        };
        let header: Map<String, Value> =
            decode_part(header).ok_or("the JWT header is not base64url-encoded JSON object")?;
        let alg = match header.get("alg") {
            Some(Value::String(alg)) => alg.as_str(),
            _ => return Err("the JWT header has no `alg`".into()),
        };
        if alg.eq_ignore_ascii_case("none") {
            return Err("`alg: none` is never accepted".into());
        }
        if header.contains_key("crit") {
            return Err("the JWT header has `crit`, and no extension is understood".into());
        }
        // Only to pick the issuer: the signature and every claim are then
        // verified with that issuer's keys and rules.
        let claims: Map<String, Value> =
            decode_part(payload).ok_or("the JWT payload is not base64url-encoded JSON object")?;
        let iss = match claims.get("iss") {
            Some(Value::String(iss)) => iss,
            Some(_) => return Err("the `iss` claim is not a string".into()),
            None => return Err("the token has no `iss` claim".into()),
        };
        let Some(issuer) = self.issuers.iter().find(|i| &i.config.issuer == iss) else {
            return Err(format!("unknown issuer {}", quoted(iss)));
        };
        let name = &issuer.config.name;
        let alg = Algorithm::from_str(alg).map_err(|_| format!("unknown algorithm {}", quoted(alg)))?;
        if alg.family() == jsonwebtoken::AlgorithmFamily::Hmac {
            return Err(format!(
                "{alg:?} is refused: issuers sign with asymmetric keys (issuer `{name}`)"
            ));
        }
        if let Some(allowed) = &issuer.config.algorithms {
            if !allowed.contains(&alg) {
                return Err(format!(
                    "{alg:?} is not an algorithm issuer `{name}` allows ({})",
                    alg_list(allowed)
                ));
            }
        }
        let kid = match header.get("kid") {
            None => None,
            Some(Value::String(kid)) => Some(kid.as_str()),
            Some(_) => return Err("the `kid` header is not a string".into()),
        };
        let keys = issuer.keys_for(kid, &self.key_generation)?;
        let mut validation = Validation::new(alg);
        validation.set_audience(&issuer.config.audience);
        validation.set_issuer(&[&issuer.config.issuer]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.leeway = issuer.config.leeway_seconds;
        validation.validate_exp = true;
        validation.validate_nbf = true;
        let mut candidates = keys
            .keys
            .iter()
            .filter(|k| k.algorithms.contains(&alg) && kid.is_none_or(|kid| k.kid.as_deref() == Some(kid)))
            .peekable();
        if candidates.peek().is_none() {
            return Err(match kid {
                Some(kid) => format!("issuer `{name}` has no key {} for {alg:?}", quoted(kid)),
                None => format!("issuer `{name}` has no key for {alg:?}"),
            });
        }
        let mut last = None;
        for key in candidates {
            match jsonwebtoken::decode::<Map<String, Value>>(token, &key.key, &validation) {
                Ok(data) => {
                    let claims = data.claims;
                    check_iat(&claims, now, issuer.config.leeway_seconds)?;
                    let exp = claims
                        .get("exp")
                        .and_then(Value::as_f64)
                        .ok_or("the `exp` claim is not a number")?;
                    let identity = identity_from_claims(&issuer.config, &claims, exp as i64)?;
                    let ttl = i64::try_from(issuer.config.jwks_ttl.as_secs()).unwrap_or(i64::MAX);
                    return Ok((identity, (exp as i64).min(now.saturating_add(ttl))));
                }
                // Another key of the same type (no `kid`) may still verify.
                Err(e) if matches!(e.kind(), jsonwebtoken::errors::ErrorKind::InvalidSignature) => {
                    last = Some(e);
                }
                Err(e) => return Err(refusal(&e, &issuer.config)),
            }
        }
        Err(last.map_or_else(
            || "the signature does not verify".into(),
            |e| refusal(&e, &issuer.config),
        ))
    }
}

impl Issuer {
    fn new(config: IssuerConfig) -> Result<Issuer, String> {
        let keys = match &config.keys {
            KeySource::File(path) => {
                let text =
                    std::fs::read(path).map_err(|e| format!("cannot read the JWKS file {}: {e}", path.display()))?;
                let set = key_set(&text, &config).map_err(|e| format!("the JWKS file {}: {e}", path.display()))?;
                Arc::new(set)
            }
            KeySource::Url(_) => Arc::new(KeySet {
                keys: Vec::new(),
                jwks: Vec::new(),
                read_at: None,
            }),
        };
        Ok(Issuer {
            config,
            keys: RwLock::new(keys),
            refresh: Mutex::new(RefreshState::default()),
        })
    }

    fn current(&self) -> Arc<KeySet> {
        match self.keys.read() {
            Ok(keys) => keys.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// The keys to verify a token naming `kid` with, refreshed first when
    /// they are stale or lack `kid`.
    fn keys_for(&self, kid: Option<&str>, generation: &AtomicU64) -> Result<Arc<KeySet>, String> {
        let keys = self.current();
        let stale = keys.read_at.is_none_or(|at| at.elapsed() >= self.config.jwks_ttl);
        let missing = kid.is_some_and(|kid| !keys.keys.iter().any(|k| k.kid.as_deref() == Some(kid)));
        let keys = if stale || missing {
            self.refresh(generation);
            self.current()
        } else {
            keys
        };
        if keys.read_at.is_none() {
            // Never waits: a fetch under way holds the lock.
            let why = match self.refresh.try_lock() {
                Ok(state) => state.last_error.clone().unwrap_or_else(|| "not fetched yet".into()),
                Err(_) => "they are being fetched; try again".into(),
            };
            return Err(format!(
                "the keys of issuer `{}` are unavailable: {why}",
                self.config.name
            ));
        }
        if let Some(kid) = kid {
            if !keys.keys.iter().any(|k| k.kid.as_deref() == Some(kid)) {
                return Err(format!("issuer `{}` has no key {}", self.config.name, quoted(kid)));
            }
        }
        Ok(keys)
    }

    /// Reads the keys again, at most once per `jwks_min_refetch`. Callers
    /// arriving while a read is under way do not wait for it: they go on
    /// with the keys as they are (none yet: refused, 401). Waiting would
    /// hold a worker thread each, outside `block_in_place`, for as long as
    /// the issuer takes to answer (up to the fetch timeout): a burst of
    /// tokens naming unknown `kid`s would stall every route of the server.
    fn refresh(&self, generation: &AtomicU64) {
        let mut state = match self.refresh.try_lock() {
            Ok(state) => state,
            Err(std::sync::TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => return,
        };
        if state
            .last_attempt
            .is_some_and(|at| at.elapsed() < self.config.jwks_min_refetch)
        {
            return;
        }
        state.last_attempt = Some(Instant::now());
        let fetched = match &self.config.keys {
            KeySource::File(path) => std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display())),
            KeySource::Url(url) => fetch_blocking(url),
        };
        let set = fetched.and_then(|bytes| key_set(&bytes, &self.config));
        match set {
            Ok(set) => {
                state.last_error = None;
                let changed = self.current().jwks != set.jwks;
                if let Ok(mut keys) = self.keys.write() {
                    *keys = Arc::new(set);
                }
                if changed {
                    generation.fetch_add(1, Ordering::AcqRel);
                    tracing::info!(issuer = %self.config.name, "JWT issuer keys changed");
                }
            }
            Err(why) => {
                tracing::warn!(issuer = %self.config.name, reason = %why, "JWT issuer keys not refreshed; the last ones stay in use");
                state.last_error = Some(why);
            }
        }
    }
}

/// Reads a JWKS: the keys usable for signatures by `config`'s algorithms.
/// Keys of other types (`oct`, encryption keys, unknown curves) are left
/// out; a JWKS with none left is refused.
fn key_set(bytes: &[u8], config: &IssuerConfig) -> Result<KeySet, String> {
    if bytes.len() > MAX_JWKS_BYTES {
        return Err(format!("a JWKS larger than {MAX_JWKS_BYTES} bytes is refused"));
    }
    let doc: Value = serde_json::from_slice(bytes).map_err(|e| format!("not JSON: {e}"))?;
    let Some(Value::Array(items)) = doc.get("keys") else {
        return Err("not a JWKS: no `keys` list".into());
    };
    let mut keys = Vec::new();
    let mut jwks = Vec::new();
    for item in items {
        // A key this server cannot use must not hide the others.
        let Ok(jwk) = serde_json::from_value::<Jwk>(item.clone()) else {
            continue;
        };
        if matches!(jwk.common.public_key_use, Some(ref u) if *u != PublicKeyUse::Signature) {
            continue;
        }
        if matches!(jwk.common.key_operations, Some(ref ops) if !ops.contains(&KeyOperations::Verify)) {
            continue;
        }
        let by_type: &[Algorithm] = match &jwk.algorithm {
            // RSA keys under 2048 bits can be factored: not a signature.
            AlgorithmParameters::RSA(p) if rsa_bits(&p.n) < MIN_RSA_BITS => continue,
            AlgorithmParameters::RSA(_) => &[Algorithm::RS256],
            AlgorithmParameters::EllipticCurve(p) if p.curve == EllipticCurve::P256 => &[Algorithm::ES256],
            AlgorithmParameters::EllipticCurve(p) if p.curve == EllipticCurve::P384 => &[Algorithm::ES384],
            AlgorithmParameters::OctetKeyPair(p) if p.curve == EllipticCurve::Ed25519 => &[Algorithm::EdDSA],
            // `oct` keys (HMAC) and anything else: never.
            _ => continue,
        };
        let family = by_type[0].family();
        let mut algorithms: Vec<Algorithm> = match &config.algorithms {
            Some(allowed) => allowed.iter().copied().filter(|a| a.family() == family).collect(),
            None => by_type.to_vec(),
        };
        // A key that names its algorithm verifies only that one.
        if let Some(declared) = jwk.common.key_algorithm {
            match Algorithm::from_str(&declared.to_string()) {
                Ok(declared) => algorithms.retain(|a| *a == declared),
                Err(_) => continue,
            }
        }
        if algorithms.is_empty() {
            continue;
        }
        let Ok(key) = DecodingKey::from_jwk(&jwk) else {
            continue;
        };
        keys.push(Key {
            kid: jwk.common.key_id.clone(),
            algorithms,
            key,
        });
        jwks.push(jwk);
    }
    if keys.is_empty() {
        let allowed = config
            .algorithms
            .as_ref()
            .map_or_else(|| "RS256, ES256, ES384, EdDSA by key type".into(), |a| alg_list(a));
        return Err(format!("no key in it is usable for signatures ({allowed})"));
    }
    Ok(KeySet {
        keys,
        jwks,
        read_at: Some(Instant::now()),
    })
}

/// The size of an RSA modulus given as base64url, in bits (0 if unreadable).
fn rsa_bits(n: &str) -> usize {
    use base64::Engine as _;
    let Ok(bytes) = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(n) else {
        return 0;
    };
    match bytes.iter().position(|b| *b != 0) {
        Some(first) => (bytes.len() - first) * 8 - bytes[first].leading_zeros() as usize,
        None => 0,
    }
}

/// Fetches `url` with a timeout, from a thread of its own: verification
/// is synchronous, and may run on a runtime's worker. On a multi-threaded
/// runtime the worker hands its other tasks over while it waits.
fn fetch_blocking(url: &str) -> Result<Vec<u8>, String> {
    let url = url.to_string();
    let wait = move || {
        let (tx, rx) = std::sync::mpsc::channel();
        let spawned = std::thread::Builder::new()
            .name("rein-jwks-fetch".into())
            .spawn(move || {
                let _ = tx.send(fetch(&url));
            });
        if let Err(e) = spawned {
            return Err(format!("cannot start the fetch: {e}"));
        }
        rx.recv_timeout(FETCH_TIMEOUT + Duration::from_secs(1))
            .unwrap_or_else(|_| Err("the fetch timed out".into()))
    };
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => tokio::task::block_in_place(wait),
        _ => wait(),
    }
}

fn fetch(url: &str) -> Result<Vec<u8>, String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the fetch: {e}"))?;
    runtime.block_on(async {
        let client = reqwest::Client::builder()
            .timeout(FETCH_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| format!("cannot start the fetch: {e}"))?;
        let mut response = client
            .get(url)
            .header("accept", "application/json")
            .send()
            .await
            .map_err(|e| format!("GET {url}: {e}"))?;
        if !response.status().is_success() {
            return Err(format!("GET {url}: status {}", response.status()));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| format!("GET {url}: {e}"))? {
            if body.len() + chunk.len() > MAX_JWKS_BYTES {
                return Err(format!(
                    "GET {url}: a JWKS larger than {MAX_JWKS_BYTES} bytes is refused"
                ));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    })
}

/// Refuses an `iat` ahead of now beyond the leeway (a token from the
/// future is a clock or forgery problem, not a credential).
fn check_iat(claims: &Map<String, Value>, now: i64, leeway: u64) -> Result<(), String> {
    match claims.get("iat") {
        None => Ok(()),
        Some(v) => {
            let iat = v.as_f64().ok_or("the `iat` claim is not a number")?;
            if iat > (now + leeway as i64) as f64 {
                Err("the token's `iat` is in the future".into())
            } else {
                Ok(())
            }
        }
    }
}

/// The identity verified `claims` of `config`'s issuer give: its name,
/// role, approval roles, bound actor fields and one-link chain. Refuses a
/// missing or non-scalar mapped claim, a name or subject unfit for an
/// identity, and a roles claim that is not a string or list of strings.
pub fn identity_from_claims(config: &IssuerConfig, claims: &Map<String, Value>, exp: i64) -> Result<Identity, String> {
    let who = match claim(claims, &config.name_claim) {
        Some(Value::String(s)) if plain_id(s) && !s.contains('/') => s,
        // `/` separates the links of a delegated token's name: `corp:a/agent:x`
        // is the child `agent:x` of `corp:a`, never another holder's name.
        Some(Value::String(_)) => {
            return Err(format!(
                "the `{}` claim is empty or has whitespace or `/`; it cannot name an identity",
                config.name_claim
            ))
        }
        Some(_) => return Err(format!("the `{}` claim is not a string", config.name_claim)),
        None => return Err(format!("the token has no `{}` claim", config.name_claim)),
    };
    let sub = match claims.get("sub") {
        Some(Value::String(s)) => s,
        _ => return Err("the `sub` claim is not a string".into()),
    };
    // An expiry the server cannot represent would read as "never expires"
    // to whoever bounds a delegated token by it.
    let expires_at = jiff::Timestamp::from_second(exp).map_err(|_| "the `exp` claim is out of range".to_string())?;
    let link = ChainLink {
        kind: config.chain_kind.clone(),
        id: sub.clone(),
    };
    link.validate()
        .map_err(|e| format!("the `sub` claim cannot be a chain link: {e}"))?;

    let mut role = config.role;
    if let Some(roles_claim) = &config.roles_claim {
        if let Some(value) = claim(claims, roles_claim) {
            for v in strings(value)
                .ok_or_else(|| format!("the `{roles_claim}` claim must be a string or a list of strings"))?
            {
                if let Some((_, mapped)) = config.roles.iter().find(|(name, _)| name == v) {
                    role = higher(role, *mapped);
                }
            }
        }
    }
    let approves = match &config.approves_claim {
        None => None,
        Some(approves_claim) => Some(match claim(claims, approves_claim) {
            None => Vec::new(),
            Some(value) => strings(value)
                .ok_or_else(|| format!("the `{approves_claim}` claim must be a string or a list of strings"))?
                .into_iter()
                .map(str::to_string)
                .collect(),
        }),
    };
    let mut fields = BoundActor::new();
    for (path, field) in &config.actor {
        let value = match claim(claims, path) {
            None => return Err(format!("the `{path}` claim (bound to actor.{field}) is missing")),
            // The actor id is what self-approval compares, as text: a
            // number or boolean would be no id at all to it.
            Some(v @ Value::String(_)) => v.clone(),
            Some(v @ (Value::Bool(_) | Value::Number(_))) if field != "id" => v.clone(),
            Some(other) if field == "id" => {
                return Err(format!(
                    "the `{path}` claim (bound to actor.id) must be a string, found {}",
                    json_kind(other)
                ))
            }
            Some(other) => {
                return Err(format!(
                    "the `{path}` claim (bound to actor.{field}) must be a string, number or boolean, found {}",
                    json_kind(other)
                ))
            }
        };
        fields.insert(field.clone(), value);
    }
    Ok(Identity {
        name: format!("{}:{who}", config.name),
        role,
        approves,
        credential: Credential {
            fields,
            chain: Some(vec![link]),
            scopes: Vec::new(),
            ..Credential::default()
        },
        source: CredentialSource::Jwt {
            issuer: config.issuer.clone(),
        },
        expires_at: Some(expires_at),
    })
}

/// A claim by top-level name, or else by a dotted path into objects
/// (`org.id`), so that namespaced claim names holding dots still read as
/// written.
fn claim<'a>(claims: &'a Map<String, Value>, path: &str) -> Option<&'a Value> {
    if let Some(v) = claims.get(path) {
        return Some(v);
    }
    let mut parts = path.split('.');
    let mut v = claims.get(parts.next()?)?;
    for part in parts {
        v = v.as_object()?.get(part)?;
    }
    Some(v)
}

fn strings(value: &Value) -> Option<Vec<&str>> {
    match value {
        Value::String(s) => Some(vec![s.as_str()]),
        Value::Array(items) => items.iter().map(Value::as_str).collect(),
        _ => None,
    }
}

fn higher(a: Role, b: Role) -> Role {
    let rank = |r: Role| match r {
        Role::Agent => 0,
        Role::Approver => 1,
        Role::Admin => 2,
    };
    if rank(b) > rank(a) {
        b
    } else {
        a
    }
}

fn plain_id(s: &str) -> bool {
    !s.is_empty() && !s.chars().any(|c| c.is_whitespace() || c.is_control())
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

fn decode_part<T: serde::de::DeserializeOwned>(part: &str) -> Option<T> {
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(part).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// The reason for a refusal by `jsonwebtoken`, in words.
fn refusal(e: &jsonwebtoken::errors::Error, config: &IssuerConfig) -> String {
    use jsonwebtoken::errors::ErrorKind as K;
    match e.kind() {
        K::ExpiredSignature => "the token has expired".into(),
        K::ImmatureSignature => "the token is not valid yet (`nbf`)".into(),
        K::InvalidAudience => format!(
            "the token's audience is not one issuer `{}` accepts ({})",
            config.name,
            config.audience.join(", ")
        ),
        K::InvalidIssuer => "the token's `iss` is not its issuer's".into(),
        K::InvalidSignature => "the signature does not verify".into(),
        K::MissingRequiredClaim(c) => format!("the token has no `{c}` claim"),
        K::InvalidClaimFormat(c) => format!("the `{c}` claim is malformed"),
        K::InvalidAlgorithm => "the algorithm does not fit the key".into(),
        _ => format!("the token does not verify: {e}"),
    }
}

fn alg_list(algorithms: &[Algorithm]) -> String {
    algorithms
        .iter()
        .map(|a| format!("{a:?}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Attacker-chosen text, quoted and cut short, for a refusal.
fn quoted(s: &str) -> String {
    let cut: String = s.chars().take(MAX_QUOTED).collect();
    if cut.len() < s.len() {
        format!("{cut:?}…")
    } else {
        format!("{cut:?}")
    }
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Verified tokens: the whole token → its identity, until its `exp` or a
/// change of keys. Bounded: when full, expired and stale entries go
/// first, then those expiring soonest.
#[derive(Default)]
struct Cache {
    entries: RwLock<FxHashMap<Box<str>, CacheEntry>>,
}

struct CacheEntry {
    identity: Arc<Identity>,
    /// The token's `exp`, or sooner (see `Inner::verify_uncached`).
    exp: i64,
    generation: u64,
}

impl Cache {
    /// The entry of `token`, if valid at `now` (read only on a hit: a
    /// static token's miss costs a hash lookup and nothing more).
    fn get(&self, token: &str, now: impl FnOnce() -> i64, generation: u64) -> Option<Arc<Identity>> {
        let entries = self.entries.read().ok()?;
        let entry = entries.get(token)?;
        (entry.generation == generation && now() < entry.exp).then(|| entry.identity.clone())
    }

    fn insert(&self, token: &str, identity: Arc<Identity>, exp: i64, now: i64, generation: u64) {
        // An entry never outlives its token's `exp`: a token in its leeway
        // is verified again each time.
        if exp <= now || token.len() > MAX_CACHED_TOKEN {
            return;
        }
        let Ok(mut entries) = self.entries.write() else {
            return;
        };
        if entries.len() >= CACHE_CAPACITY {
            entries.retain(|_, e| now < e.exp && e.generation == generation);
        }
        if entries.len() >= CACHE_CAPACITY {
            // Keep the seven eighths that stay valid longest.
            let mut exps: Vec<i64> = entries.values().map(|e| e.exp).collect();
            let cut = exps.len() / 8;
            let (_, nth, _) = exps.select_nth_unstable(cut);
            let cut = *nth;
            entries.retain(|_, e| e.exp > cut);
        }
        entries.insert(
            token.into(),
            CacheEntry {
                identity,
                exp,
                generation,
            },
        );
    }
}

/// Whether `presented` has the shape of a JWT (three base64url parts).
pub fn looks_like(presented: &str) -> bool {
    let mut parts = 0;
    for part in presented.split('.') {
        parts += 1;
        if part
            .bytes()
            .any(|b| !(b.is_ascii_alphanumeric() || b == b'-' || b == b'_'))
        {
            return false;
        }
    }
    parts == 3
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn config() -> IssuerConfig {
        IssuerConfig {
            name: "corp".into(),
            issuer: "https://login.example.com/".into(),
            audience: vec!["rein".into()],
            keys: KeySource::Url("https://login.example.com/jwks.json".into()),
            algorithms: None,
            leeway_seconds: DEFAULT_LEEWAY_SECONDS,
            jwks_ttl: Duration::from_secs(DEFAULT_JWKS_TTL_SECONDS),
            jwks_min_refetch: Duration::from_secs(DEFAULT_JWKS_MIN_REFETCH_SECONDS),
            role: Role::Agent,
            roles_claim: Some("groups".into()),
            roles: vec![("approvers".into(), Role::Approver), ("admins".into(), Role::Admin)],
            approves_claim: Some("approves".into()),
            name_claim: "sub".into(),
            actor: vec![("sub".into(), "id".into()), ("org.tenant".into(), "tenant".into())],
            chain_kind: "user".into(),
        }
    }

    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            "[a-z ]{0,6}".prop_map(Value::String),
        ];
        leaf.prop_recursive(2, 8, 3, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..3).prop_map(Value::Array),
                prop::collection::btree_map("[a-z]{1,3}", inner, 0..3)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        /// The mapping takes exactly what the claims say, or refuses: the
        /// name and chain from `sub`, each bound field the claim's scalar
        /// value, the highest mapped role; never a field from elsewhere.
        #[test]
        fn claims_map_exactly_or_refuse(
            sub in "[a-z]{1,8}( ?)[a-z]{0,3}",
            tenant in json_value(),
            groups in prop::option::of(prop::collection::vec(
                prop_oneof![Just("approvers"), Just("admins"), Just("staff")], 0..4)),
            approves in prop::option::of(prop::collection::vec("[a-z]{1,5}", 0..3)),
            exp in 1_700_000_000i64..4_000_000_000,
        ) {
            let mut claims = Map::new();
            claims.insert("sub".into(), json!(sub));
            claims.insert("org".into(), json!({"tenant": tenant}));
            if let Some(g) = &groups {
                claims.insert("groups".into(), json!(g));
            }
            if let Some(a) = &approves {
                claims.insert("approves".into(), json!(a));
            }
            let result = identity_from_claims(&config(), &claims, exp);
            let scalar = matches!(tenant, Value::String(_) | Value::Bool(_) | Value::Number(_));
            let plain = !sub.contains(' ');
            prop_assert_eq!(result.is_ok(), scalar && plain, "{:?}", result);
            match result {
                Err(why) if !plain => prop_assert!(why.contains("`sub`"), "{}", why),
                Err(why) => prop_assert!(why.contains("`org.tenant` claim (bound to actor.tenant)"), "{}", why),
                Ok(identity) => {
                    prop_assert_eq!(&identity.name, &format!("corp:{sub}"));
                    let fields = Value::Object(identity.credential.fields.clone());
                    prop_assert_eq!(fields, json!({"id": sub, "tenant": tenant}));
                    prop_assert_eq!(
                        identity.credential.chain.clone(),
                        Some(vec![ChainLink { kind: "user".into(), id: sub.clone() }])
                    );
                    prop_assert!(identity.credential.scopes.is_empty());
                    let groups = groups.unwrap_or_default();
                    let want = if groups.contains(&"admins") {
                        Role::Admin
                    } else if groups.contains(&"approvers") {
                        Role::Approver
                    } else {
                        Role::Agent
                    };
                    prop_assert_eq!(identity.role, want);
                    prop_assert_eq!(identity.approves, Some(approves.unwrap_or_default()));
                    prop_assert_eq!(identity.expires_at.map(|t| t.as_second()), Some(exp));
                    prop_assert_eq!(
                        identity.source,
                        CredentialSource::Jwt { issuer: "https://login.example.com/".into() }
                    );
                }
            }
        }
    }

    /// An id that is not text is no id to the self-approval check; `/`
    /// separates the links of a delegated token's name, so a holder named
    /// `corp:alice/agent:x` would be alice's child `agent:x`.
    #[test]
    fn ids_that_are_not_text_and_names_with_a_slash_are_refused() {
        for sub in ["alice/agent:x", "/", "a/b"] {
            let claims = json!({"sub": sub, "org": {"tenant": "t"}});
            let e = identity_from_claims(&config(), claims.as_object().unwrap(), 2_000_000_000).unwrap_err();
            assert!(e.contains("cannot name an identity"), "{sub}: {e}");
        }
        let mut config = config();
        config.actor = vec![("employee".into(), "id".into())];
        for employee in [json!(1001), json!(true), json!(1.5)] {
            let claims = json!({"sub": "alice", "employee": employee});
            let e = identity_from_claims(&config, claims.as_object().unwrap(), 2_000_000_000).unwrap_err();
            assert!(e.contains("(bound to actor.id) must be a string"), "{employee}: {e}");
        }
        let claims = json!({"sub": "alice", "employee": "1001"});
        let identity = identity_from_claims(&config, claims.as_object().unwrap(), 2_000_000_000).unwrap();
        assert_eq!(identity.credential.fields["id"], "1001");
    }

    #[test]
    fn an_expiry_out_of_range_is_refused() {
        let claims = json!({"sub": "a", "org": {"tenant": "t"}});
        let e = identity_from_claims(&config(), claims.as_object().unwrap(), i64::MAX).unwrap_err();
        assert_eq!(e, "the `exp` claim is out of range");
    }

    #[test]
    fn rsa_keys_are_sized_by_their_modulus() {
        assert_eq!(rsa_bits("AQAB"), 17);
        assert_eq!(rsa_bits("AP8"), 8);
        assert_eq!(rsa_bits("!"), 0);
        use base64::Engine as _;
        let n = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode([0x80u8; 256]);
        assert_eq!(rsa_bits(&n), 2048);
        let n = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode([0x7fu8; 256]);
        assert_eq!(rsa_bits(&n), 2047);
    }

    #[test]
    fn a_namespaced_claim_is_read_by_its_whole_name_first() {
        let mut config = config();
        config.actor = vec![("https://example.com/tenant".into(), "tenant".into())];
        let claims = json!({"sub": "a", "https://example.com/tenant": "acme"});
        let identity = identity_from_claims(&config, claims.as_object().unwrap(), 2_000_000_000).unwrap();
        assert_eq!(identity.credential.fields["tenant"], "acme");
    }

    fn identity(name: &str) -> Arc<Identity> {
        let claims = json!({"sub": name, "org": {"tenant": "t"}});
        Arc::new(identity_from_claims(&config(), claims.as_object().unwrap(), 2_000_000_000).unwrap())
    }

    #[test]
    fn the_cache_never_outlives_exp_nor_a_change_of_keys() {
        let cache = Cache::default();
        cache.insert("t1", identity("a"), 1_000, 900, 0);
        assert!(cache.get("t1", || 999, 0).is_some());
        assert!(cache.get("t1", || 1_000, 0).is_none());
        assert!(cache.get("t1", || 999, 1).is_none());
        assert!(cache.get("t2", || 999, 0).is_none());
        // An already expired token (in its leeway) is not kept.
        cache.insert("t3", identity("b"), 900, 900, 0);
        assert!(cache.get("t3", || 800, 0).is_none());
    }

    #[test]
    fn a_full_cache_drops_the_expired_then_the_soonest_expiring() {
        let cache = Cache::default();
        let who = identity("a");
        for i in 0..CACHE_CAPACITY as i64 {
            cache.insert(&format!("t{i}"), who.clone(), 1_000 + i, 500, 0);
        }
        // Full: the next insert drops the eighth expiring soonest.
        cache.insert("new", who.clone(), 50_000, 500, 0);
        let len = cache.entries.read().unwrap().len();
        assert!(len <= CACHE_CAPACITY - CACHE_CAPACITY / 8 + 1, "{len}");
        assert!(cache.get("new", || 600, 0).is_some());
        assert!(cache.get("t0", || 600, 0).is_none());
        assert!(cache.get(&format!("t{}", CACHE_CAPACITY - 1), || 600, 0).is_some());
        // Later, the expired go first and nothing else.
        for i in 0..CACHE_CAPACITY as i64 / 2 {
            cache.insert(&format!("u{i}"), who.clone(), 100_000, 20_000, 0);
        }
        assert!(cache.get("new", || 20_000, 0).is_some());
        let len = cache.entries.read().unwrap().len();
        assert!(len <= CACHE_CAPACITY / 2 + 1, "{len}");
    }
}
