//! The web console under `/console`: server-rendered pages (maud, escaped
//! by default) with a little plain JavaScript, signed in with a bearer
//! token: the cookie keeps a signed, 12-hour session for it (a JWT or
//! delegation token is kept as it is).
//!
//! The API for a console page module (`approvals.rs`, `audit.rs`, ...):
//! - [`Signed`] — an extractor: the signed-in [`Identity`] from the
//!   `rein_console` cookie, re-verified on every request (a GET
//!   without one is sent to the sign-in page, anything else is a 401).
//!   `signed.require(Role::Admin)?` refuses a lower role with the 403 page.
//! - [`Posted`] — an extractor for every state-changing form (POST): the
//!   [`Signed`] caller after the cross-site checks (`Origin`,
//!   `Sec-Fetch-Site`) and the CSRF token; `posted.form.get("name")`.
//!   Forms carry [`csrf_input`]`(&signed)`.
//! - [`page`]`(Some(&signed), "Heading", body)` — the whole page: layout,
//!   nav for the role, the one `<h1>`, sign out. Returns `Markup`, which is
//!   a response (200, `text/html`); [`page_with`] sets another status.
//! - [`ConsoleError`] — every failure as a page: `not_found`,
//!   `bad_request`, `unavailable`, `forbidden`; `.to(&signed)` keeps the
//!   nav. Security headers and `Cache-Control: no-store` are added to
//!   every console response by [`HeadersLayer`], which `routes::router`
//!   applies outside its timeout and panic layers (a handler that sets its
//!   own `Cache-Control` keeps it).
//! - Helpers: [`segment`] (an id as a URL path segment), [`time_left`],
//!   [`see_other`], `policy::explanation(&explain_json, "against")` (an
//!   explanation, `{"decision", "rules"}`, rule by rule), [`cookie`].
//! - `audit::routes()` is nested at `/console/audit` behind an admin check.

mod approvals;
mod audit;
mod policy;
mod sessions;

use crate::auth::{AuthRefusal, CredentialSource, Identity, Role};
use crate::AppState;
use axum::body::Body;
use axum::extract::{FromRequest, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use hmac::{Hmac, KeyInit, Mac};
use maud::{html, Markup, DOCTYPE};
use sha2::{Digest, Sha256};
use std::sync::{Arc, LazyLock};
use subtle::ConstantTimeEq;

/// The cookie of a signed-in console: a session value signed by the
/// server for a token of the tokens file (see [`Console::session_value`]),
/// or a JWT or delegation token itself.
pub(crate) const COOKIE: &str = "rein_console";
/// How long a console session lasts (its cookie's `Max-Age`). Sign-out
/// only asks the browser to forget the cookie: a copied value stays valid
/// until then (or until its token leaves the tokens file), so keep it short.
pub(crate) const SESSION_SECS: i64 = 12 * 3600;
/// The prefix of a session value (its format's version).
const SESSION_PREFIX: &str = "s1.";
/// The pre-session cookie of the sign-in form's CSRF check (double submit).
const LOGIN_CSRF_COOKIE: &str = "rein_console_csrf";
/// Largest form body a console POST reads: the playground's fields at
/// their caps (128 KiB draft, 64 KiB request) URL-encoded, which can
/// triple their size (`%22` for a quote), with room to spare. Each field's
/// own cap is checked by the page, which says which one is too large.
const MAX_FORM_BYTES: usize = 640 * 1024;
/// Longest cookie value kept: browsers keep about 4 KiB per cookie, its
/// name and attributes included.
const MAX_COOKIE_VALUE: usize = 3900;
/// Most playground drafts compiled at once; past it, 503 "busy".
pub(crate) const PLAYGROUND_SLOTS: usize = 2;
/// Most server-sent event streams one token name keeps open; past it, 503.
pub(crate) const MAX_STREAMS_PER_NAME: usize = 4;
/// Most server-sent event streams open at once; past it, 503.
pub(crate) const MAX_EVENT_STREAMS: usize = 64;

const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; \
                   form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

const CSS: &str = include_str!("assets/console.css");
const JS: &str = include_str!("assets/console.js");

/// The assets' URLs carry a hash of their content, so that they can be
/// cached for long and a new binary's assets are fetched anew.
static CSS_URL: LazyLock<String> = LazyLock::new(|| format!("/console/assets/console.css?v={}", short_hash(CSS)));
static JS_URL: LazyLock<String> = LazyLock::new(|| format!("/console/assets/console.js?v={}", short_hash(JS)));

fn short_hash(text: &str) -> String {
    hex(&Sha256::digest(text.as_bytes())[..8])
}

/// The console's keys and limits, kept in the server's state.
pub(crate) struct Console {
    /// The key of the form CSRF tokens, derived from the audit key with a
    /// fixed label: every replica (given the same audit key) agrees.
    csrf_key: [u8; 32],
    /// Whether cookies are marked `Secure`.
    secure_cookie: bool,
    /// The origin of `--public-url` (a proxy in front may rewrite `Host`):
    /// a form posted from it is this site's too.
    public_origin: Option<String>,
    /// The open event streams; a stream holds a permit until it ends.
    streams: Arc<tokio::sync::Semaphore>,
    /// The open event streams of each token name (at most
    /// [`MAX_STREAMS_PER_NAME`]): one caller cannot take them all.
    streams_by_name: Arc<std::sync::Mutex<std::collections::HashMap<String, usize>>>,
    /// The playground's draft compiles running at once.
    playground: Arc<tokio::sync::Semaphore>,
    /// Set when the server stops: event streams end, so that the graceful
    /// shutdown does not wait for them.
    closing: tokio::sync::watch::Sender<bool>,
    /// The reasons of decisions that opened approvals, by decision id
    /// (they never change): the inbox reads each from the audit log once.
    reasons: std::sync::Mutex<std::collections::HashMap<String, Vec<String>>>,
}

/// Most decisions whose reasons are kept; past it, the map starts anew.
const MAX_CACHED_REASONS: usize = 4096;

impl Console {
    /// The console of a server whose audit key is `audit_key`.
    pub(crate) fn new(audit_key: &[u8], secure_cookie: bool) -> Console {
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(audit_key).unwrap_or_else(|_| unreachable_key());
        mac.update(b"rein console csrf key v1");
        Console {
            csrf_key: mac.finalize().into_bytes().into(),
            secure_cookie,
            public_origin: None,
            streams: Arc::new(tokio::sync::Semaphore::new(MAX_EVENT_STREAMS)),
            streams_by_name: Arc::default(),
            playground: Arc::new(tokio::sync::Semaphore::new(PLAYGROUND_SLOTS)),
            closing: tokio::sync::watch::Sender::new(false),
            reasons: std::sync::Mutex::default(),
        }
    }

    /// Also takes forms posted from `origin` (`scheme://host[:port]`, the
    /// `--public-url`'s) as this site's.
    pub(crate) fn with_public_origin(mut self, origin: Option<String>) -> Console {
        self.public_origin = origin.filter(|o| o != "null");
        self
    }

    /// The cookie value of a console session of static token `name` (whose
    /// SHA-256 is `digest`) that ends at `expires` (Unix seconds):
    /// `s1.<name>.<expires>.<HMAC(key, name, expires, digest)>`. It is
    /// not the token: it opens no API route, and it ends by itself. The
    /// digest in the MAC makes a changed or removed token end it at once.
    pub(crate) fn session_value(&self, name: &str, digest: &[u8; 32], expires: i64) -> String {
        format!(
            "{SESSION_PREFIX}{name}.{expires}.{}",
            self.session_mac(name, digest, expires)
        )
    }

    fn session_mac(&self, name: &str, digest: &[u8; 32], expires: i64) -> String {
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.csrf_key).unwrap_or_else(|_| unreachable_key());
        mac.update(b"session\0");
        // The name's length first: no name/expiry split makes another's MAC.
        mac.update(&(name.len() as u64).to_be_bytes());
        mac.update(name.as_bytes());
        mac.update(&expires.to_be_bytes());
        mac.update(digest);
        hex(&mac.finalize().into_bytes())
    }

    /// The identity of session value `value` at `now` (Unix seconds), when
    /// it verifies against the current `tokens`: its MAC in constant time,
    /// not expired, not longer than [`SESSION_SECS`], the token still there
    /// with the same secret, and not an agent's.
    pub(crate) fn verify_session(&self, value: &str, tokens: &crate::auth::Tokens, now: i64) -> Option<Arc<Identity>> {
        let rest = value.strip_prefix(SESSION_PREFIX)?;
        let (rest, given) = rest.rsplit_once('.')?;
        let (name, expires) = rest.rsplit_once('.')?;
        if expires.is_empty() || !expires.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let expires: i64 = expires.parse().ok()?;
        let (identity, digest) = tokens.static_token(name)?;
        let expected = self.session_mac(name, digest, expires);
        let mac_ok = expected.len() == given.len() && bool::from(expected.as_bytes().ct_eq(given.as_bytes()));
        // A minute's slack for replicas whose clocks differ a little.
        let fresh = now < expires && expires <= now.saturating_add(SESSION_SECS + 60);
        (mac_ok && fresh && identity.role != Role::Agent).then(|| Arc::clone(identity))
    }

    /// The CSRF token of the forms of a console signed in with `token` (the
    /// cookie's value: a session value, or a JWT or delegation token).
    pub(crate) fn csrf_token(&self, token: &str) -> String {
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.csrf_key).unwrap_or_else(|_| unreachable_key());
        mac.update(b"form\0");
        mac.update(token.as_bytes());
        hex(&mac.finalize().into_bytes())
    }

    /// Whether `given` is the CSRF token for `token`, in constant time.
    pub(crate) fn csrf_ok(&self, token: &str, given: &str) -> bool {
        let expected = self.csrf_token(token);
        expected.len() == given.len() && bool::from(expected.as_bytes().ct_eq(given.as_bytes()))
    }

    /// A place for one more event stream of token `name`: refused (with
    /// why) when `name` has [`MAX_STREAMS_PER_NAME`] open, or all
    /// [`MAX_EVENT_STREAMS`] are taken. Held until the stream ends.
    pub(crate) fn stream_slot(&self, name: &str) -> Result<StreamSlot, &'static str> {
        let mut by = self
            .streams_by_name
            .lock()
            .map_err(|_| "the event streams' count is unavailable")?;
        let open = by.get(name).copied().unwrap_or(0);
        if open >= MAX_STREAMS_PER_NAME {
            return Err("you have too many live update streams open (other tabs); close some and reload");
        }
        let permit = Arc::clone(&self.streams)
            .try_acquire_owned()
            .map_err(|_| "too many event streams are open; try again later")?;
        by.insert(name.to_string(), open + 1);
        Ok(StreamSlot {
            name: name.to_string(),
            by_name: Arc::clone(&self.streams_by_name),
            _permit: permit,
        })
    }

    /// The reasons kept for `decision_id`, if read before.
    pub(crate) fn cached_reasons(&self, decision_id: &str) -> Option<Vec<String>> {
        self.reasons.lock().ok()?.get(decision_id).cloned()
    }

    /// Keeps the reasons of `decision_id` (bounded: the map is cleared when full).
    pub(crate) fn keep_reasons(&self, decision_id: &str, reasons: &[String]) {
        if let Ok(mut map) = self.reasons.lock() {
            if map.len() >= MAX_CACHED_REASONS {
                map.clear();
            }
            map.insert(decision_id.to_string(), reasons.to_vec());
        }
    }

    /// A permit to compile one playground draft, if fewer than
    /// [`PLAYGROUND_SLOTS`] are compiling.
    pub(crate) fn playground_permit(&self) -> Option<tokio::sync::OwnedSemaphorePermit> {
        Arc::clone(&self.playground).try_acquire_owned().ok()
    }

    /// Ends every event stream (the server is stopping).
    pub(crate) fn close_streams(&self) {
        self.closing.send_replace(true);
    }

    /// Changes to `true` when the server stops.
    pub(crate) fn closing(&self) -> tokio::sync::watch::Receiver<bool> {
        self.closing.subscribe()
    }

    /// A `Set-Cookie` value with the console's attributes.
    fn cookie(&self, name: &str, value: &str, max_age: Option<u64>) -> String {
        let mut c = format!("{name}={value}; HttpOnly; SameSite=Strict; Path=/console");
        if let Some(age) = max_age {
            c.push_str(&format!("; Max-Age={age}"));
        }
        if self.secure_cookie {
            c.push_str("; Secure");
        }
        c
    }
}

/// One open event stream's place (see [`Console::stream_slot`]): given
/// back when dropped.
pub(crate) struct StreamSlot {
    name: String,
    by_name: Arc<std::sync::Mutex<std::collections::HashMap<String, usize>>>,
    _permit: tokio::sync::OwnedSemaphorePermit,
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        if let Ok(mut by) = self.by_name.lock() {
            if let Some(open) = by.get_mut(&self.name) {
                *open = open.saturating_sub(1);
                if *open == 0 {
                    by.remove(&self.name);
                }
            }
        }
    }
}

/// HMAC takes keys of any length: never called.
#[allow(clippy::panic)]
fn unreachable_key() -> Hmac<Sha256> {
    panic!("HMAC-SHA256 refused a key; it takes keys of any length")
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// The console's routes, to be nested at `/console`.
pub(crate) fn router(state: AppState) -> Router<AppState> {
    let audit = audit::routes().layer(middleware::from_fn_with_state(state, admin_only));
    Router::new()
        .route("/", get(home))
        .route("/login", get(login_page).post(login))
        .route("/logout", post(logout))
        .route("/assets/console.css", get(css))
        .route("/assets/console.js", get(js))
        .merge(approvals::routes())
        .merge(sessions::routes())
        .merge(policy::routes())
        .nest("/audit", audit)
        .fallback(not_found)
        .method_not_allowed_fallback(wrong_method)
}

/// The layer that gives every answer under `/console` the console's
/// security headers, applied by `routes::router` outside its timeout and
/// panic layers: their answers, the API's 404 for a path the nested router
/// does not take (`/console/`) and extractor rejections are console pages
/// too. Other paths pass with one prefix check and no allocation.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct HeadersLayer;

impl<S> tower_layer::Layer<S> for HeadersLayer {
    type Service = Headers<S>;

    fn layer(&self, inner: S) -> Headers<S> {
        Headers { inner }
    }
}

/// The service of [`HeadersLayer`].
#[derive(Clone, Debug)]
pub(crate) struct Headers<S> {
    inner: S,
}

type Answered = Result<Response, std::convert::Infallible>;

impl<S> tower_service::Service<Request> for Headers<S>
where
    S: tower_service::Service<Request, Response = Response, Error = std::convert::Infallible>,
{
    type Response = Response;
    type Error = std::convert::Infallible;
    type Future = futures_util::future::Either<
        S::Future,
        futures_util::future::Either<
            futures_util::future::Map<S::Future, fn(Answered) -> Answered>,
            futures_util::future::Ready<Answered>,
        >,
    >;

    fn poll_ready(&mut self, cx: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        use futures_util::future::{ready, Either, FutureExt};
        let path = request.uri().path();
        if path != "/console" && !path.starts_with("/console/") {
            return Either::Left(self.inner.call(request));
        }
        if path == "/console/" {
            return Either::Right(Either::Right(ready(Ok(security_headers(see_other("/console"))))));
        }
        Either::Right(Either::Left(
            self.inner.call(request).map(console_answer as fn(Answered) -> Answered),
        ))
    }
}

/// A console answer with the headers; an error answer that is not a page
/// (the server's JSON timeout, panic or 404, an extractor's plain text)
/// becomes one.
fn console_answer(answered: Answered) -> Answered {
    let Ok(response) = answered;
    let status = response.status();
    let is_page = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|t| t.as_bytes().starts_with(b"text/html"));
    if !(status.is_client_error() || status.is_server_error()) || is_page {
        return Ok(security_headers(response));
    }
    let (heading, message) = match status {
        StatusCode::NOT_FOUND => ("Not found", "there is no such console page"),
        StatusCode::SERVICE_UNAVAILABLE => (
            "Unavailable",
            "the server took too long or cannot answer now; reload the page to see the current state",
        ),
        StatusCode::INTERNAL_SERVER_ERROR => (
            "Server error",
            "the server failed while handling this request; reload the page to see the current state",
        ),
        StatusCode::PAYLOAD_TOO_LARGE => ("Too large", "the request is too large"),
        _ => (
            "Bad request",
            "the server could not take this request (is the address right?)",
        ),
    };
    Ok(security_headers(
        ConsoleError::new(status, heading, message).into_response(),
    ))
}

/// The headers every console answer carries.
fn security_headers(mut response: Response) -> Response {
    let h = response.headers_mut();
    h.insert("content-security-policy", HeaderValue::from_static(CSP));
    h.insert("x-frame-options", HeaderValue::from_static("DENY"));
    h.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

async fn admin_only(signed: Signed, request: Request, next: Next) -> Response {
    match signed.require(Role::Admin) {
        Ok(()) => next.run(request).await,
        Err(e) => e.into_response(),
    }
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "public, max-age=31536000, immutable"),
        ],
        body,
    )
        .into_response()
}

async fn css() -> Response {
    asset("text/css; charset=utf-8", CSS)
}

async fn js() -> Response {
    asset("text/javascript; charset=utf-8", JS)
}

/// A console path no route takes: 404 for a signed-in caller; a
/// signed-out GET goes to the sign-in page, as for every page (a stranger
/// learns nothing of which pages exist).
async fn not_found(method: Method, signed: Option<Signed>) -> ConsoleError {
    let e = ConsoleError::not_found("there is no such console page");
    match signed {
        Some(s) => e.to(&s),
        None => ConsoleError {
            to_login: method == Method::GET || method == Method::HEAD,
            ..e
        },
    }
}

async fn wrong_method() -> ConsoleError {
    ConsoleError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "Not allowed",
        "this page does not take that method",
    )
}

/// The console's first page for the role: approvals, or the audit log.
fn home_of(role: Role) -> &'static str {
    match role {
        Role::Admin => "/console/audit",
        _ => "/console/approvals",
    }
}

async fn home(signed: Signed) -> Response {
    see_other(home_of(signed.identity.role))
}

/// A 303 to `to` (after a POST, or to the sign-in page).
pub(crate) fn see_other(to: &str) -> Response {
    let mut r = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(to) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r
}

// ---- the signed-in caller ------------------------------------------------

/// The signed-in caller of a console page (see the module's doc).
#[derive(Clone)]
pub(crate) struct Signed {
    /// Who signed in.
    pub(crate) identity: Arc<Identity>,
    /// The CSRF token of this caller's forms.
    csrf: String,
    /// When the sign-in ends (the session's or the JWT's expiry).
    pub(crate) expires_at: Option<jiff::Timestamp>,
}

impl Signed {
    /// `Ok` when the caller's role permits `role`; the 403 page otherwise.
    pub(crate) fn require(&self, role: Role) -> Result<(), ConsoleError> {
        if self.identity.role.permits(role) {
            Ok(())
        } else {
            Err(ConsoleError::forbidden().to(self))
        }
    }

    /// The value of the hidden `csrf` input of this caller's forms.
    pub(crate) fn csrf(&self) -> &str {
        &self.csrf
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Signed
where
    AppState: axum::extract::FromRef<S>,
{
    type Rejection = ConsoleError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Signed, ConsoleError> {
        let state = <AppState as axum::extract::FromRef<S>>::from_ref(state);
        let reading = parts.method == Method::GET || parts.method == Method::HEAD;
        let Some(value) = cookie(&parts.headers, COOKIE) else {
            return Err(ConsoleError::signed_out(reading));
        };
        let now = jiff::Timestamp::now().as_second();
        let found = if value.starts_with(SESSION_PREFIX) {
            state
                .console()
                .verify_session(&value, state.tokens(), now)
                .map(|identity| (identity, Some(value_expiry(&value))))
        } else {
            // A JWT or delegation token is kept as it is: it expires by
            // itself, and the issuer decides its lifetime. A token of the
            // tokens file never is (it would be the long-lived API
            // credential itself); an agent's token is no sign-in either.
            match state.tokens().verify(&value) {
                Ok(identity) if identity.role != Role::Agent && identity.source != CredentialSource::Static => {
                    let until = identity.expires_at.map(|t| t.as_second());
                    Some((identity, until))
                }
                Ok(_) | Err(_) => None,
            }
        };
        match found {
            Some((identity, until)) => {
                let csrf = state.console().csrf_token(&value);
                let expires_at = until.and_then(|s| jiff::Timestamp::from_second(s).ok());
                Ok(Signed {
                    identity,
                    csrf,
                    expires_at,
                })
            }
            None => {
                state.metrics().auth_failure("console");
                Err(ConsoleError::signed_out(reading))
            }
        }
    }
}

impl<S: Send + Sync> axum::extract::OptionalFromRequestParts<S> for Signed
where
    AppState: axum::extract::FromRef<S>,
{
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Option<Signed>, Self::Rejection> {
        Ok(<Signed as FromRequestParts<S>>::from_request_parts(parts, state)
            .await
            .ok())
    }
}

/// The expiry (Unix seconds) of a session value that verified.
fn value_expiry(value: &str) -> i64 {
    value
        .rsplit('.')
        .nth(1)
        .and_then(|e| e.parse().ok())
        .unwrap_or_default()
}

/// The value of cookie `name` in the request's `Cookie` headers, decoded.
pub(crate) fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, v)| decode_cookie_value(v.trim()))
        .filter(|v| !v.is_empty())
}

/// A token as a cookie value: what is not safe in one is percent-encoded
/// (the tokens Rein makes, and JWTs, are left as they are).
fn encode_cookie_value(value: &str) -> String {
    url::form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

fn decode_cookie_value(value: &str) -> String {
    let value = value
        .strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .unwrap_or(value);
    url::form_urlencoded::parse(format!("v={value}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

// ---- forms ---------------------------------------------------------------

/// A posted form's fields.
#[derive(Debug, Default)]
pub(crate) struct Form(Vec<(String, String)>);

impl Form {
    fn parse(bytes: &[u8]) -> Form {
        Form(url::form_urlencoded::parse(bytes).into_owned().collect())
    }

    /// The first value of field `name`.
    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

/// A state-changing form, checked (see the module's doc).
pub(crate) struct Posted {
    /// Who posted it.
    pub(crate) signed: Signed,
    /// Its fields.
    pub(crate) form: Form,
}

impl FromRequest<AppState> for Posted {
    type Rejection = ConsoleError;

    async fn from_request(request: Request, state: &AppState) -> Result<Posted, ConsoleError> {
        let (mut parts, body) = request.into_parts();
        check_origin(&parts, state)?;
        let signed = <Signed as FromRequestParts<AppState>>::from_request_parts(&mut parts, state).await?;
        let form = read_form(&parts.headers, body, state)
            .await
            .map_err(|e| e.to(&signed))?;
        let token = cookie(&parts.headers, COOKIE).unwrap_or_default();
        let given = form.get("csrf").unwrap_or_default();
        if !state.console().csrf_ok(&token, given) {
            tracing::warn!(token = %signed.identity.name, "console: a form without a valid CSRF token was refused");
            return Err(ConsoleError::cross_site());
        }
        Ok(Posted { signed, form })
    }
}

/// The body of a console form: only `application/x-www-form-urlencoded`
/// (what the console's forms send) is read; any other type is refused
/// (415), so that a `text/plain` "simple" cross-site post is not a form.
async fn read_form(headers: &HeaderMap, body: Body, state: &AppState) -> Result<Form, ConsoleError> {
    if !is_urlencoded(headers) {
        return Err(ConsoleError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Not a form",
            "console forms are sent as application/x-www-form-urlencoded",
        ));
    }
    let limit = MAX_FORM_BYTES.min(state.max_body_bytes());
    let bytes = axum::body::to_bytes(body, limit).await.map_err(|_| {
        ConsoleError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "Too large",
            format!("the form is larger than {limit} bytes"),
        )
    })?;
    Ok(Form::parse(&bytes))
}

/// Whether the request's `Content-Type` is `application/x-www-form-urlencoded`
/// (parameters such as `charset` allowed).
fn is_urlencoded(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/x-www-form-urlencoded"))
}

/// Refuses a request another site made the browser send: `Sec-Fetch-Site`
/// other than `same-origin`, or an `Origin` that is neither this host (the
/// `Host` header) nor `public` (the `--public-url`'s origin).
///
/// A browser that says `Sec-Fetch-Site: same-origin` may still send
/// `Origin: null`: it does for every form POST from a page served with
/// `Referrer-Policy: no-referrer`, as the console's are. The browser's own
/// `Sec-Fetch-Site` then decides; without it, `null` is refused (a
/// sandboxed frame of another site sends it too).
///
/// Over HTTP/2 there is no `Host` header: the request's authority (its
/// `:authority`, kept in the URI) is the host then. When the console is
/// served over https (`secure`: its cookies are `Secure`), an `http://`
/// origin of the same host is another site (a plain-HTTP page of that name
/// could otherwise post the sign-in form).
fn same_origin(
    headers: &HeaderMap,
    authority: Option<&str>,
    public: Option<&str>,
    secure: bool,
) -> Result<(), ConsoleError> {
    let fetch_site = headers.get("sec-fetch-site");
    if let Some(site) = fetch_site {
        if site.as_bytes() != b"same-origin" {
            return Err(ConsoleError::cross_site());
        }
    }
    if let Some(origin) = headers.get(header::ORIGIN) {
        if fetch_site.is_some() && origin.as_bytes() == b"null" {
            return Ok(());
        }
        if public.is_some_and(|p| origin.as_bytes().eq_ignore_ascii_case(p.as_bytes())) {
            return Ok(());
        }
        let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).or(authority);
        let origin_host = origin
            .to_str()
            .ok()
            .and_then(|o| url::Url::parse(o).ok())
            .filter(|u| u.scheme() == "https" || (!secure && u.scheme() == "http"))
            .and_then(|u| {
                let host = u.host_str()?.to_string();
                Some(match u.port() {
                    Some(p) => format!("{host}:{p}"),
                    None => host,
                })
            });
        match (origin_host, host) {
            (Some(o), Some(h)) if o.eq_ignore_ascii_case(h) => {}
            _ => return Err(ConsoleError::cross_site()),
        }
    }
    Ok(())
}

/// [`same_origin`] for a request's head, with this console's settings.
fn check_origin(parts: &Parts, state: &AppState) -> Result<(), ConsoleError> {
    let console = state.console();
    same_origin(
        &parts.headers,
        parts.uri.authority().map(|a| a.as_str()),
        console.public_origin.as_deref(),
        console.secure_cookie,
    )
}

/// A hidden input with the caller's CSRF token, for every POST form.
pub(crate) fn csrf_input(signed: &Signed) -> Markup {
    html! { input type="hidden" name="csrf" value=(signed.csrf()); }
}

// ---- sign-in and sign-out ------------------------------------------------

fn random_hex() -> Result<String, ConsoleError> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)
        .map_err(|e| ConsoleError::unavailable(format!("the system random generator failed: {e}")))?;
    Ok(hex(&bytes))
}

async fn login_page(State(state): State<AppState>) -> Result<Response, ConsoleError> {
    login_form(&state, StatusCode::OK, None)
}

/// The sign-in page, with a fresh login CSRF nonce (cookie and form).
fn login_form(state: &AppState, status: StatusCode, problem: Option<&str>) -> Result<Response, ConsoleError> {
    let nonce = random_hex()?;
    let body = html! {
        @if let Some(problem) = problem {
            p.error role="alert" { (problem) }
        }
        form.card method="post" action="/console/login" {
            input type="hidden" name="csrf" value=(nonce);
            label for="token" { "Token" }
            input #token type="password" name="token" autocomplete="current-password" required;
            button type="submit" { "Sign in" }
        }
        p.hint { "Sign in with an approver's or an admin's bearer token from the tokens file. "
            "The browser keeps a session for 12 hours, not the token. Signing out makes this browser forget it; "
            "a copy of the session stays valid until it expires or its token leaves the tokens file." }
    };
    let mut response = page_with(status, None, "Sign in", body);
    if let Ok(v) = HeaderValue::from_str(&state.console().cookie(LOGIN_CSRF_COOKIE, &nonce, None)) {
        response.headers_mut().append(header::SET_COOKIE, v);
    }
    Ok(response)
}

async fn login(State(state): State<AppState>, request: Request) -> Result<Response, ConsoleError> {
    let (parts, body) = request.into_parts();
    check_origin(&parts, &state)?;
    let form = read_form(&parts.headers, body, &state).await?;
    // Double submit: a cross-site page can post the form but can neither
    // read nor set this cookie (SameSite=Strict, HttpOnly).
    let nonce = cookie(&parts.headers, LOGIN_CSRF_COOKIE).unwrap_or_default();
    let given = form.get("csrf").unwrap_or_default();
    if nonce.len() < 32 || nonce.len() != given.len() || !bool::from(nonce.as_bytes().ct_eq(given.as_bytes())) {
        // The cross-site checks passed: most likely a stale tab (another
        // sign-in page replaced the nonce) or a dropped cookie. The form
        // again, with a fresh nonce, rather than a dead end.
        return login_form(
            &state,
            StatusCode::FORBIDDEN,
            Some("The sign-in form expired (cross-site request refused); please sign in again."),
        );
    }
    let token = form.get("token").unwrap_or_default().trim();
    let identity = match state.tokens().verify(token) {
        Ok(identity) => identity,
        Err(AuthRefusal::Unknown) => {
            state.metrics().auth_failure("unknown");
            tracing::warn!(token = "<unknown>", "console sign-in refused: unknown token");
            return login_form(&state, StatusCode::UNAUTHORIZED, Some("That token is not known."));
        }
        Err(AuthRefusal::Invalid(why)) => {
            state.metrics().auth_failure("invalid");
            tracing::warn!(token = "<invalid>", reason = %why, "console sign-in refused: token does not verify");
            let problem = format!("That token does not verify: {why}");
            return login_form(&state, StatusCode::UNAUTHORIZED, Some(&problem));
        }
    };
    if identity.role == Role::Agent {
        state.metrics().auth_failure("forbidden");
        tracing::warn!(token = %identity.name, "console sign-in refused: agent token");
        return login_form(
            &state,
            StatusCode::FORBIDDEN,
            Some("agent tokens cannot sign in to the console"),
        );
    }
    let now = jiff::Timestamp::now().as_second();
    // A token of the tokens file: a signed session value, never the token.
    let (raw, max_age) = match state.tokens().static_token(&identity.name) {
        Some((_, digest)) if identity.source == CredentialSource::Static => {
            let expires = now + SESSION_SECS;
            (
                state.console().session_value(&identity.name, digest, expires),
                SESSION_SECS,
            )
        }
        _ => {
            let left = identity.expires_at.map_or(SESSION_SECS, |t| t.as_second() - now);
            (token.to_string(), left.clamp(0, SESSION_SECS))
        }
    };
    let value = encode_cookie_value(&raw);
    if value.len() > MAX_COOKIE_VALUE {
        // A browser drops a larger cookie: every page would ask to sign in again.
        return login_form(
            &state,
            StatusCode::BAD_REQUEST,
            Some("That token is too long to keep in a browser cookie."),
        );
    }
    tracing::info!(token = %identity.name, role = %identity.role, "console sign-in");
    let mut response = see_other(home_of(identity.role));
    let console = state.console();
    for c in [
        console.cookie(COOKIE, &value, Some(max_age.unsigned_abs())),
        console.cookie(LOGIN_CSRF_COOKIE, "", Some(0)),
    ] {
        if let Ok(v) = HeaderValue::from_str(&c) {
            response.headers_mut().append(header::SET_COOKIE, v);
        }
    }
    Ok(response)
}

async fn logout(State(state): State<AppState>, posted: Posted) -> Response {
    tracing::info!(token = %posted.signed.identity.name, "console sign-out");
    let mut response = see_other("/console/login");
    if let Ok(v) = HeaderValue::from_str(&state.console().cookie(COOKIE, "", Some(0))) {
        response.headers_mut().append(header::SET_COOKIE, v);
    }
    response
}

// ---- layout and errors ---------------------------------------------------

/// The whole page: head, nav for the signed-in role, the one `<h1>`
/// (`heading`), and `body`.
pub(crate) fn page(who: Option<&Signed>, heading: &str, body: Markup) -> Markup {
    let role = who.map(|w| w.identity.role);
    let may = |needed: Role| role.is_some_and(|r| r.permits(needed));
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (heading) " · Rein console" }
                link rel="stylesheet" href=(CSS_URL.as_str());
                script src=(JS_URL.as_str()) defer {}
            }
            body {
                header.top {
                    a.skip href="#main" { "Skip to content" }
                    span.brand { "Rein" }
                    nav aria-label="Console" {
                        ul {
                            @if may(Role::Approver) {
                                li { a href="/console/approvals" { "Approvals" } }
                                li { a href="/console/sessions" { "Sessions" } }
                            }
                            @if may(Role::Admin) {
                                li { a href="/console/audit" { "Audit log" } }
                                li { a href="/console/policy" { "Policy" } }
                            }
                        }
                    }
                    @if let Some(who) = who {
                        form.signout method="post" action="/console/logout" {
                            (csrf_input(who))
                            span.who { (who.identity.name) " (" (who.identity.role.as_str()) ")" }
                            button type="submit" { "Sign out" }
                        }
                    }
                }
                main #main {
                    h1 { (heading) }
                    (body)
                }
            }
        }
    }
}

/// [`page`] as a response with `status`.
pub(crate) fn page_with(status: StatusCode, who: Option<&Signed>, heading: &str, body: Markup) -> Response {
    (status, page(who, heading, body)).into_response()
}

/// A failure shown as a page (see the module's doc).
#[derive(Debug)]
pub(crate) struct ConsoleError {
    status: StatusCode,
    heading: &'static str,
    message: String,
    /// A GET without a session goes to the sign-in page instead.
    to_login: bool,
    who: Option<Signed>,
}

impl std::fmt::Debug for Signed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signed")
            .field("name", &self.identity.name)
            .finish_non_exhaustive()
    }
}

impl ConsoleError {
    /// A page with `status`, `heading` and `message`.
    pub(crate) fn new(status: StatusCode, heading: &'static str, message: impl Into<String>) -> ConsoleError {
        ConsoleError {
            status,
            heading,
            message: message.into(),
            to_login: false,
            who: None,
        }
    }

    /// Keeps the signed-in caller's nav on the page.
    pub(crate) fn to(mut self, who: &Signed) -> ConsoleError {
        self.who = Some(who.clone());
        self
    }

    fn signed_out(reading: bool) -> ConsoleError {
        let mut e = ConsoleError::new(
            StatusCode::UNAUTHORIZED,
            "Not signed in",
            "sign in to the console first",
        );
        e.to_login = reading;
        e
    }

    /// 403: the role may not open the page.
    pub(crate) fn forbidden() -> ConsoleError {
        ConsoleError::new(StatusCode::FORBIDDEN, "Not allowed", "your role may not open this page")
    }

    /// 403: a cross-site or unprotected form.
    pub(crate) fn cross_site() -> ConsoleError {
        ConsoleError::new(StatusCode::FORBIDDEN, "Refused", "cross-site request refused")
    }

    /// 404.
    pub(crate) fn not_found(message: impl Into<String>) -> ConsoleError {
        ConsoleError::new(StatusCode::NOT_FOUND, "Not found", message)
    }

    /// 400.
    pub(crate) fn bad_request(message: impl Into<String>) -> ConsoleError {
        ConsoleError::new(StatusCode::BAD_REQUEST, "Bad request", message)
    }

    /// 503: the store (or another part) cannot answer now.
    pub(crate) fn unavailable(message: impl Into<String>) -> ConsoleError {
        ConsoleError::new(StatusCode::SERVICE_UNAVAILABLE, "Unavailable", message)
    }
}

impl IntoResponse for ConsoleError {
    fn into_response(self) -> Response {
        if self.to_login {
            return see_other("/console/login");
        }
        let body = html! {
            p.error role="alert" { (self.message) }
            // Never a dead end: back to sign in, or to the console.
            @if self.who.is_none() && self.status == StatusCode::UNAUTHORIZED {
                p { a href="/console/login" { "Sign in" } }
            } @else if self.who.is_none() && self.status == StatusCode::FORBIDDEN {
                p { a href="/console/login" { "Back to sign in" } }
            } @else {
                p { a href="/console" { "Back to the console" } }
            }
        };
        page_with(self.status, self.who.as_ref(), self.heading, body)
    }
}

/// A path segment with everything but unreserved characters
/// percent-encoded (a scoped session id holds `/`).
pub(crate) fn segment(text: &str) -> String {
    use std::fmt::Write;
    text.bytes().fold(String::with_capacity(text.len()), |mut s, b| {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            s.push(char::from(b));
        } else {
            let _ = write!(s, "%{b:02X}");
        }
        s
    })
}

/// "3 min", "1 h 5 min", "expired": the time from now to `until` (RFC 3339).
pub(crate) fn time_left(until: &str) -> String {
    let Ok(until) = until.parse::<jiff::Timestamp>() else {
        return "unknown".to_string();
    };
    let secs = until.as_second() - jiff::Timestamp::now().as_second();
    if secs <= 0 {
        return "expired".to_string();
    }
    let (h, m, s) = (secs / 3600, (secs % 3600) / 60, secs % 60);
    match (h, m) {
        (0, 0) => format!("{s} s"),
        (0, m) => format!("{m} min"),
        (h, m) => format!("{h} h {m} min"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csrf_token_is_bound_to_the_token_and_the_key() {
        let c = Console::new(b"0123456789abcdef0123456789abcdef", false);
        let t = c.csrf_token("tok-a");
        assert_eq!(t.len(), 64);
        assert!(c.csrf_ok("tok-a", &t));
        assert!(!c.csrf_ok("tok-b", &t));
        assert!(!c.csrf_ok("tok-a", ""));
        assert!(!c.csrf_ok("tok-a", &t[..63]));
        let mut flipped = t.clone().into_bytes();
        flipped[0] = if flipped[0] == b'0' { b'1' } else { b'0' };
        assert!(!c.csrf_ok("tok-a", &String::from_utf8(flipped).unwrap_or_default()));
        // Another audit key (another deployment) makes other tokens; the
        // same key (a replica) the same ones.
        let other = Console::new(b"fedcba9876543210fedcba9876543210", false);
        assert!(!other.csrf_ok("tok-a", &t));
        let replica = Console::new(b"0123456789abcdef0123456789abcdef", false);
        assert!(replica.csrf_ok("tok-a", &t));
    }

    fn tokens(alice: &str) -> crate::auth::Tokens {
        let text = format!(
            "tokens:\n  - {{name: al.ice, role: approver, token: {alice}}}\n  - {{name: bot, role: agent, token: agent-token-0123456789abcdef}}\n"
        );
        crate::auth::Tokens::parse("tokens.yaml", &text).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn a_session_value_is_not_the_token_and_ends() {
        let c = Console::new(&[7; 32], false);
        let t = tokens("alice-token-0123456789abcdef");
        let (_, digest) = t.static_token("al.ice").unwrap_or_else(|| panic!("no token"));
        let now = 1_800_000_000;
        let v = c.session_value("al.ice", digest, now + SESSION_SECS);
        assert!(!v.contains("alice-token"), "{v}");
        assert!(v.starts_with("s1.al.ice."), "{v}");
        let who = c.verify_session(&v, &t, now).map(|i| i.name.clone());
        assert_eq!(who.as_deref(), Some("al.ice"));
        // Expired, or longer than a session may be.
        assert!(c.verify_session(&v, &t, now + SESSION_SECS).is_none());
        let long = c.session_value("al.ice", digest, now + SESSION_SECS + 3600);
        assert!(c.verify_session(&long, &t, now).is_none());
        // The token changed or left the tokens file: the session ends.
        assert!(c
            .verify_session(&v, &tokens("alice-token-rotated-0123456789"), now)
            .is_none());
        // Another key (deployment), a changed expiry or MAC, an agent.
        assert!(Console::new(&[8; 32], false).verify_session(&v, &t, now).is_none());
        let later = v.replacen(
            &format!(".{}.", now + SESSION_SECS),
            &format!(".{}.", now + SESSION_SECS - 1),
            1,
        );
        assert!(c.verify_session(&later, &t, now).is_none());
        let mut flipped = v.clone();
        let last = if flipped.ends_with('0') { "1" } else { "0" };
        flipped.pop();
        flipped.push_str(last);
        assert!(c.verify_session(&flipped, &t, now).is_none());
        let (_, agent_digest) = t.static_token("bot").unwrap_or_else(|| panic!("no token"));
        let agent = c.session_value("bot", agent_digest, now + 60);
        assert!(c.verify_session(&agent, &t, now).is_none());
        for bad in [
            "",
            "s1.",
            "s1.al.ice",
            "s1.al.ice.x.y",
            "s1.al.ice.-5.ab",
            "alice-token-0123456789abcdef",
        ] {
            assert!(c.verify_session(bad, &t, now).is_none(), "{bad}");
        }
    }

    #[test]
    fn event_streams_are_capped_per_name_and_in_all() {
        let c = Console::new(&[7; 32], false);
        let mine: Vec<_> = (0..MAX_STREAMS_PER_NAME)
            .filter_map(|_| c.stream_slot("alice").ok())
            .collect();
        assert_eq!(mine.len(), MAX_STREAMS_PER_NAME);
        assert!(c.stream_slot("alice").is_err());
        let mut others = Vec::new();
        for i in 0..(MAX_EVENT_STREAMS - MAX_STREAMS_PER_NAME) {
            others.push(
                c.stream_slot(&format!("n{}", i / MAX_STREAMS_PER_NAME))
                    .map_err(|e| e.to_string()),
            );
        }
        assert!(others.iter().all(Result::is_ok));
        // All taken: even a name without streams waits.
        assert!(c.stream_slot("bob").is_err());
        drop(others.pop());
        assert!(c.stream_slot("alice").is_err(), "still at its own cap");
        let bob = c.stream_slot("bob");
        assert!(bob.is_ok());
        drop(mine);
        drop(bob);
        assert!(c.stream_slot("alice").is_ok());
    }

    #[test]
    fn a_timeout_or_panic_on_a_console_path_is_a_page_with_the_headers() {
        for status in [StatusCode::SERVICE_UNAVAILABLE, StatusCode::INTERNAL_SERVER_ERROR] {
            let json = (
                status,
                [(header::CONTENT_TYPE, "application/json")],
                r#"{"effect":"block"}"#,
            )
                .into_response();
            let Ok(r) = console_answer(Ok(json));
            assert_eq!(r.status(), status);
            assert_eq!(r.headers()["content-security-policy"], CSP);
            assert_eq!(r.headers()["x-frame-options"], "DENY");
            assert_eq!(r.headers()[header::CACHE_CONTROL], "no-store");
            assert!(r.headers()[header::CONTENT_TYPE]
                .to_str()
                .unwrap_or_default()
                .starts_with("text/html"));
        }
        // A page or a success keeps its body; the headers are added.
        let Ok(r) = console_answer(Ok(asset("text/css; charset=utf-8", "a{}")));
        assert_eq!(
            r.headers()[header::CACHE_CONTROL],
            "public, max-age=31536000, immutable"
        );
        assert_eq!(r.headers()["content-security-policy"], CSP);
    }

    #[test]
    fn cookies_are_parsed_from_every_header() {
        let mut h = HeaderMap::new();
        h.append(header::COOKIE, HeaderValue::from_static("a=1; rein_console_csrf=n0nce"));
        h.append(
            header::COOKIE,
            HeaderValue::from_static("other=x;rein_console=tok%2Ben ; z=2"),
        );
        assert_eq!(cookie(&h, COOKIE).as_deref(), Some("tok+en"));
        assert_eq!(cookie(&h, LOGIN_CSRF_COOKIE).as_deref(), Some("n0nce"));
        assert_eq!(cookie(&h, "rein"), None);
        assert_eq!(cookie(&h, "missing"), None);
        let mut empty = HeaderMap::new();
        empty.insert(header::COOKIE, HeaderValue::from_static("rein_console="));
        assert_eq!(cookie(&empty, COOKIE), None);
        let mut quoted = HeaderMap::new();
        quoted.insert(header::COOKIE, HeaderValue::from_static("rein_console=\"abc\""));
        assert_eq!(cookie(&quoted, COOKIE).as_deref(), Some("abc"));
    }

    #[test]
    fn cookie_values_round_trip() {
        for token in [
            "plain-Token_1.2",
            "eyJhbGc.eyJzdWIi.sig-_",
            "with space;and=semi,\"q\"+%",
        ] {
            let encoded = encode_cookie_value(token);
            assert!(!encoded.contains([';', ' ', ',', '"']), "{encoded}");
            assert_eq!(decode_cookie_value(&encoded), token);
        }
        assert_eq!(encode_cookie_value("plain-Token_1.2"), "plain-Token_1.2");
    }

    #[test]
    fn cookie_attributes() {
        let c = Console::new(&[7; 32], false).cookie(COOKIE, "t", None);
        assert_eq!(c, "rein_console=t; HttpOnly; SameSite=Strict; Path=/console");
        let s = Console::new(&[7; 32], true).cookie(COOKIE, "", Some(0));
        assert_eq!(
            s,
            "rein_console=; HttpOnly; SameSite=Strict; Path=/console; Max-Age=0; Secure"
        );
    }

    #[test]
    fn cross_site_checks() {
        let headers = |pairs: &[(&'static str, &'static str)]| {
            let mut h = HeaderMap::new();
            for (n, v) in pairs {
                h.insert(*n, HeaderValue::from_static(v));
            }
            h
        };
        assert!(same_origin(&headers(&[("host", "127.0.0.1:8700")]), None, None, false).is_ok());
        assert!(same_origin(
            &headers(&[("host", "127.0.0.1:8700"), ("origin", "http://127.0.0.1:8700")]),
            None,
            None,
            false
        )
        .is_ok());
        assert!(same_origin(
            &headers(&[("host", "a.example"), ("origin", "https://a.example")]),
            None,
            None,
            false
        )
        .is_ok());
        assert!(same_origin(
            &headers(&[("host", "127.0.0.1:8700"), ("sec-fetch-site", "same-origin")]),
            None,
            None,
            false
        )
        .is_ok());
        for bad in [
            headers(&[("host", "127.0.0.1:8700"), ("origin", "http://evil.example")]),
            headers(&[("host", "127.0.0.1:8700"), ("origin", "http://127.0.0.1:8701")]),
            headers(&[("host", "127.0.0.1:8700"), ("origin", "null")]),
            headers(&[("origin", "http://127.0.0.1:8700")]),
            headers(&[("host", "127.0.0.1:8700"), ("sec-fetch-site", "cross-site")]),
            headers(&[("host", "127.0.0.1:8700"), ("sec-fetch-site", "same-site")]),
            headers(&[
                ("host", "127.0.0.1:8700"),
                ("origin", "null"),
                ("sec-fetch-site", "cross-site"),
            ]),
            headers(&[
                ("host", "127.0.0.1:8700"),
                ("origin", "http://evil.example"),
                ("sec-fetch-site", "same-origin"),
            ]),
        ] {
            assert!(same_origin(&bad, None, None, false).is_err(), "{bad:?}");
        }
        // What Chromium sends for a form POST from a `no-referrer` page.
        assert!(same_origin(
            &headers(&[
                ("host", "127.0.0.1:8700"),
                ("origin", "null"),
                ("sec-fetch-site", "same-origin")
            ]),
            None,
            None,
            false
        )
        .is_ok());
        // HTTP/2: no `Host`; the request's authority is the host.
        let h2 = headers(&[("origin", "http://127.0.0.1:8700")]);
        assert!(same_origin(&h2, Some("127.0.0.1:8700"), None, false).is_ok());
        assert!(same_origin(&h2, Some("127.0.0.1:8701"), None, false).is_err());
        assert!(same_origin(&h2, None, None, false).is_err());
        // Served over https: an http origin of the same host is refused.
        let plain = headers(&[("host", "a.example"), ("origin", "http://a.example")]);
        assert!(same_origin(&plain, None, None, true).is_err());
        assert!(same_origin(&plain, None, None, false).is_ok());
        let tls = headers(&[("host", "a.example"), ("origin", "https://a.example")]);
        assert!(same_origin(&tls, None, None, true).is_ok());
        // Behind a proxy that rewrites `Host`: the public URL's origin.
        let proxied = headers(&[("host", "127.0.0.1:8700"), ("origin", "https://rein.example")]);
        assert!(same_origin(&proxied, None, Some("https://rein.example"), false).is_ok());
        assert!(same_origin(&proxied, None, Some("https://other.example"), false).is_err());
    }

    #[test]
    fn segments_are_encoded() {
        assert_eq!(segment("agent-1/sess 1"), "agent-1%2Fsess%201");
        assert_eq!(segment("a.b_c~d"), "a.b_c~d");
        assert_eq!(segment("é"), "%C3%A9");
    }

    #[test]
    fn only_urlencoded_bodies_are_forms() {
        let with = |t: &'static str| {
            let mut h = HeaderMap::new();
            h.insert(header::CONTENT_TYPE, HeaderValue::from_static(t));
            h
        };
        assert!(is_urlencoded(&with("application/x-www-form-urlencoded")));
        assert!(is_urlencoded(&with("application/x-www-form-urlencoded; charset=UTF-8")));
        assert!(is_urlencoded(&with("Application/X-WWW-Form-Urlencoded")));
        for other in ["text/plain", "multipart/form-data; boundary=x", "application/json", ""] {
            assert!(!is_urlencoded(&with(other)), "{other}");
        }
        assert!(!is_urlencoded(&HeaderMap::new()));
    }

    #[test]
    fn the_form_limit_covers_the_playground_fields_encoded() {
        // Every byte of a field may become `%XX`.
        const { assert!(MAX_FORM_BYTES >= 3 * (128 * 1024 + 64 * 1024)) };
    }

    #[test]
    fn the_form_is_parsed() {
        let f = Form::parse(b"csrf=abc&comment=ok+then%21&comment=second");
        assert_eq!(f.get("csrf"), Some("abc"));
        assert_eq!(f.get("comment"), Some("ok then!"));
        assert_eq!(f.get("none"), None);
    }

    mod props {
        use super::super::*;
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn any_token_round_trips_through_the_cookie(token in "\\PC{1,80}", other in "[a-z]{1,8}") {
                let encoded = encode_cookie_value(&token);
                prop_assert!(encoded.bytes().all(|b| b.is_ascii_graphic() && !matches!(b, b';' | b',' | b'"' | b'\\')), "{}", encoded);
                let mut h = HeaderMap::new();
                let header = format!("{other}=x; {COOKIE}={encoded}; z{other}=y");
                h.insert(header::COOKIE, HeaderValue::from_str(&header).unwrap_or_else(|_| HeaderValue::from_static("")));
                prop_assert_eq!(cookie(&h, COOKIE), Some(token));
            }

            #[test]
            fn a_csrf_token_fits_only_its_own_token(a in "\\PC{0,40}", b in "\\PC{0,40}") {
                let c = Console::new(&[9; 32], false);
                prop_assert!(c.csrf_ok(&a, &c.csrf_token(&a)));
                prop_assert_eq!(c.csrf_ok(&b, &c.csrf_token(&a)), a == b);
            }

            #[test]
            fn the_cross_site_check_never_panics(origin in proptest::collection::vec(any::<u8>(), 0..40), host in "[a-z0-9.:]{0,20}") {
                let mut h = HeaderMap::new();
                if let Ok(v) = HeaderValue::from_bytes(&origin) {
                    h.insert(header::ORIGIN, v);
                }
                if let Ok(v) = HeaderValue::from_str(&host) {
                    h.insert(header::HOST, v);
                }
                let _ = same_origin(&h, None, None, false);
            }
        }
    }
}
