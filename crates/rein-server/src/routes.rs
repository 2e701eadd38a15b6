//! The routes, their roles, and the layers around them.

use crate::auth::{authorize, bearer, require_role, Identity, Role};
use crate::body::{parse_json, read_limited};
use crate::error::{block_response, ApiError};
use crate::{AppState, ReloadError};
use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::DefaultBodyLimit;
use axum::extract::{Extension, Path, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, MethodRouter};
use axum::{Json, Router};
use rein_engine::{Effect, Phase, Request as ReinRequest};
use rein_runtime::{Approver, OutcomeRefused, Refusal, RuntimeError};
use rein_store::chain::{format_time, parse_time};
use rein_store::{ApprovalError, ApprovalState, AuditQuery, Verification};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};
use std::any::Any;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;
use tower_http::catch_panic::{CatchPanicLayer, ResponseForPanic};

/// The OpenAPI document of these routes.
const OPENAPI: &str = include_str!("../openapi.json");

/// Most records or approvals one list call returns.
const MAX_LIMIT: u64 = 1000;
/// What a list call returns when no `limit` is given.
const DEFAULT_LIMIT: u64 = 100;
/// Most pending approvals counted for the gauge at each scrape.
const PENDING_SCAN_LIMIT: u64 = 10_000;

/// One route: method, path, and the role it needs (`None`: no token).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteInfo {
    /// The HTTP method.
    pub method: Method,
    /// The path, with `{param}` placeholders as in OpenAPI.
    pub path: &'static str,
    /// The role a token needs (admin may do everything); `None` for the
    /// public routes.
    pub role: Option<Role>,
    /// A role that may also use the route, for its own records only:
    /// agents read the approvals their own requests opened (and approvers
    /// ask `/v1/what-can`, for any actor).
    pub own: Option<Role>,
}

struct Spec {
    info: RouteInfo,
    handler: MethodRouter<AppState>,
}

fn spec(method: Method, path: &'static str, role: Option<Role>, handler: MethodRouter<AppState>) -> Spec {
    Spec {
        info: RouteInfo {
            method,
            path,
            role,
            own: None,
        },
        handler,
    }
}

impl Spec {
    /// Lets `role` use the route for its own records too.
    fn also_own(mut self, role: Role) -> Spec {
        self.info.own = Some(role);
        self
    }
}

/// The single list the router is built from, so that [`routes`] and the
/// router cannot disagree.
fn specs() -> Vec<Spec> {
    use Role::{Admin, Agent, Approver};
    vec![
        spec(Method::POST, "/v1/decide", Some(Agent), post(decide)),
        spec(Method::POST, "/v1/outcome", Some(Agent), post(outcome)),
        spec(Method::POST, "/v1/explain", Some(Agent), post(explain)),
        spec(Method::POST, "/v1/hooks/{agent}", Some(Agent), post(hook)),
        spec(Method::POST, "/v1/tokens/delegate", Some(Agent), post(delegate)),
        spec(
            Method::POST,
            "/v1/what-can",
            Some(Agent),
            post(crate::what_can::what_can),
        )
        .also_own(Approver),
        spec(Method::GET, "/v1/approvals", Some(Approver), get(list_approvals)).also_own(Agent),
        spec(Method::GET, "/v1/approvals/{id}", Some(Approver), get(get_approval)).also_own(Agent),
        spec(Method::POST, "/v1/approvals/{id}/grant", Some(Approver), post(grant)),
        spec(Method::POST, "/v1/approvals/{id}/deny", Some(Approver), post(deny)),
        spec(Method::GET, "/v1/audit", Some(Admin), get(query_audit)),
        spec(Method::GET, "/v1/audit/verify", Some(Admin), get(verify_audit)),
        spec(Method::GET, "/v1/audit/export", Some(Admin), get(export_audit)),
        spec(Method::POST, "/v1/policy/reload", Some(Admin), post(reload_policy)),
        spec(
            Method::GET,
            "/v1/policy/versions",
            Some(Admin),
            get(crate::versions::list_versions),
        ),
        spec(
            Method::GET,
            "/v1/policy/versions/{version}",
            Some(Admin),
            get(crate::versions::show_version),
        ),
        spec(
            Method::POST,
            "/v1/policy/rollback",
            Some(Admin),
            post(crate::versions::rollback),
        ),
        spec(
            Method::GET,
            "/v1/policy/shadow",
            Some(Admin),
            get(crate::shadow::get_shadow),
        ),
        spec(
            Method::POST,
            "/v1/policy/shadow",
            Some(Admin),
            post(crate::shadow::set_shadow),
        ),
        spec(
            Method::DELETE,
            "/v1/policy/shadow",
            Some(Admin),
            delete(crate::shadow::stop_shadow),
        ),
        spec(
            Method::GET,
            "/v1/policy/shadow/report",
            Some(Admin),
            get(crate::shadow::shadow_report),
        ),
        spec(Method::GET, "/v1/limits", Some(Approver), get(list_limits)),
        spec(Method::POST, "/v1/limits/reset", Some(Admin), post(reset_limits)),
        spec(Method::GET, "/v1/sessions/{id}", Some(Approver), get(get_session)),
        spec(Method::GET, "/healthz", None, get(healthz)),
        spec(Method::GET, "/metrics", None, get(metrics)),
        spec(Method::GET, "/openapi.json", None, get(openapi)),
    ]
}

/// Every route the server has.
pub fn routes() -> Vec<RouteInfo> {
    specs().into_iter().map(|s| s.info).collect()
}

pub(crate) fn router(state: AppState) -> Router {
    let mut router = Router::new();
    for s in specs() {
        let handler = match s.info.role {
            // The agent handlers check their token themselves (`authorize`),
            // first thing: this is the hot path.
            Some(Role::Agent) => s.handler,
            Some(role) => s.handler.route_layer(middleware::from_fn_with_state(
                (state.clone(), role, s.info.own),
                require_role,
            )),
            None => s.handler,
        };
        router = router.route(s.info.path, handler);
    }
    router
        // The web console: pages, not API (not in `specs()` nor OpenAPI).
        .nest("/console", crate::console::router(state.clone()))
        .fallback(no_route)
        .method_not_allowed_fallback(wrong_method)
        // The handlers read their bodies with `read_body`, under the same
        // limit; this bounds any extractor (`Bytes`, `Json`, `String`) a
        // route may take in future, whose default is axum's 2 MB.
        .layer(DefaultBodyLimit::max(state.max_body_bytes()))
        // Inside the panic catcher, so that a handler that both hangs and
        // panics is still answered.
        .layer(TimeoutLayer(state.clone()))
        .layer(CatchPanicLayer::custom(PanicBlock(state.clone())))
        // Outside the timeout and panic layers: their answers on a console
        // path get the console's headers (CSP) and become pages too.
        .layer(crate::console::HeadersLayer)
        .with_state(state)
}

async fn no_route() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "no_such_route",
        "no such route; see /openapi.json",
    )
}

/// A wrong method on an agent route (`GET /v1/decide`) still answers
/// `block`, so a client that reads only `effect` fails closed.
async fn wrong_method(uri: axum::http::Uri) -> ApiError {
    let agent_route = matches!(uri.path(), "/v1/decide" | "/v1/outcome" | "/v1/explain");
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this route does not take this method; see /openapi.json",
    )
    .blocking(agent_route)
}

/// Answers `503` + `block` when a request takes longer than the configured
/// timeout. The runtime may still finish and record the decision it was
/// making; the caller was told `block`, which is the safe side of that gap.
///
/// A hand-written layer rather than `middleware::from_fn`: that one clones
/// the inner service and runs extractors for every request, which showed
/// in instruction counts on the decide path.
#[derive(Clone)]
struct TimeoutLayer(AppState);

impl<S> tower_layer::Layer<S> for TimeoutLayer {
    type Service = Timeout<S>;

    fn layer(&self, inner: S) -> Timeout<S> {
        Timeout {
            inner,
            state: self.0.clone(),
        }
    }
}

#[derive(Clone)]
struct Timeout<S> {
    inner: S,
    state: AppState,
}

impl<S> tower_service::Service<Request> for Timeout<S>
where
    S: tower_service::Service<Request, Response = Response, Error = Infallible> + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        // A cheap copy (shared bytes): the path is only read on a timeout.
        let uri = request.uri().clone();
        let state = self.state.clone();
        let answer = self.inner.call(request);
        Box::pin(async move {
            let limit = state.inner.request_timeout;
            let mut response = match tokio::time::timeout(limit, answer).await {
                Ok(Ok(response)) => response,
                Ok(Err(never)) => match never {},
                Err(_) => {
                    state.metrics().fail_closed("timeout");
                    tracing::error!(route = %uri.path(), timeout = ?limit, "request timed out; answering block");
                    block_response(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "timeout",
                        "the request took too long; the answer is block",
                    )
                }
            };
            // Every answer names the version served (see `versions`); decide
            // and outcome have named the version that decided.
            if !response.headers().contains_key(crate::versions::POLICY_VERSION_HEADER) {
                crate::versions::name_version(&mut response, state.runtime().policy().version());
            }
            Ok(response)
        })
    }
}

/// A panic anywhere in a handler becomes a `500` that says `block`.
#[derive(Clone)]
struct PanicBlock(AppState);

impl ResponseForPanic for PanicBlock {
    type ResponseBody = Body;

    fn response_for_panic(&mut self, err: Box<dyn Any + Send + 'static>) -> axum::http::Response<Body> {
        let what = err
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| err.downcast_ref::<&str>().copied())
            .unwrap_or("(no message)");
        self.0.metrics().fail_closed("panic");
        tracing::error!(panic = %what, "a handler panicked; answering block");
        block_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "the server failed while handling this request; the answer is block",
        )
    }
}

// ---- agent routes -------------------------------------------------------

async fn decide(State(state): State<AppState>, request: Request) -> Result<Response, ApiError> {
    let (parts, body) = request.into_parts();
    let identity = authorize(&state, Role::Agent, &parts.headers, "/v1/decide")?;
    let client = identity.name.clone();
    let bytes = match read_body(&state, &parts.headers, body).await {
        Ok(bytes) => bytes,
        Err(e) => return Err(refused(&state, Phase::Before, e, &parts.headers, None, &client).await),
    };
    let (request, approval) = match parse_decide_body(&bytes) {
        Ok(parsed) => parsed,
        Err(e) => return Err(refused(&state, Phase::Before, e, &parts.headers, Some(&bytes), &client).await),
    };
    let started = Instant::now();
    // Actions outside the policy are counted under one label, so that a
    // client cannot grow the metrics without bound.
    let action = if state.runtime().policy().has_action(&request.action) {
        request.action.clone()
    } else {
        "<unknown>".to_string()
    };
    // The token's name goes with an approval the request opens: that client
    // may not approve it, whatever actor the request names.
    // The actor fields bound to the token are set on the request; a body
    // contradicting one is blocked (and recorded) by the runtime.
    // The caller's `traceparent` goes into the record; with traces
    // exported the decision is one (see `otel`).
    let answer = crate::otel::traced(
        state.otel(),
        &parts.headers,
        "/v1/decide",
        state
            .runtime()
            .decide_bound(request, approval, Some(&client), Some(&identity.credential)),
    )
    .await;
    state
        .metrics()
        .decision(&action, answer.effect.as_str(), started.elapsed().as_secs_f64());
    let mut response = Json(&answer).into_response();
    crate::versions::name_version(&mut response, &answer.policy_version);
    Ok(response)
}

/// Explains a request as `/v1/decide` would decide it now for this token
/// (the policy in force, the state as it is, sessions in the token's
/// scope), with the trace of every rule; reserves, writes and records
/// nothing, and uses no approval. Its errors say `block`, as decide's do,
/// but are not recorded: nothing was decided.
async fn explain(State(state): State<AppState>, request: Request) -> Result<Response, ApiError> {
    let (parts, body) = request.into_parts();
    let identity = authorize(&state, Role::Agent, &parts.headers, "/v1/explain")?;
    let client = identity.name.clone();
    let blocking = |e: ApiError| e.blocking(true);
    let bytes = read_body(&state, &parts.headers, body).await.map_err(blocking)?;
    let (request, approval) = parse_decide_body(&bytes).map_err(blocking)?;
    if approval.is_some() {
        // Explain shows what the rules decide; an approval would only be
        // checked (and spent) by decide, so naming one here is a mistake.
        return Err(blocking(ApiError::bad_request(
            "invalid_request",
            "`approval` is not part of an explain request: explain uses no approval (a granted one turns \
             require_approval into allow at /v1/decide)",
        )));
    }
    // Bounded: the name is whatever the body says.
    let action: String = request.action.chars().take(128).collect();
    let explained = state
        .runtime()
        .explain_bound_async(request, Some(&client), Some(&identity.credential))
        .await;
    // Not in the audit log (nothing was decided), but in the server's: an
    // agent probing the policy through explain leaves a trace.
    tracing::info!(client = %client, action = %action.escape_debug(), effect = %explained.effect(), "explained");
    Ok(Json(explained.to_json()).into_response())
}

/// A coding agent's hook event (Claude Code's `http` hook type, or
/// `rein hook --server`), answered in the agent's format. Every failure
/// after authentication is a refusal in that format with status 200: an
/// HTTP error is "no opinion" to an agent without `onFailure: block`.
async fn hook(
    State(state): State<AppState>,
    Path(agent): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    // Agent routes have no role layer (see `router`): the check is here.
    let identity = authorize(&state, Role::Agent, &headers, "/v1/hooks")?;
    let client = identity.name.clone();
    let agent = match agent.as_str() {
        "claude-code" => rein_hooks::Agent::ClaudeCode,
        "codex" => rein_hooks::Agent::Codex,
        "gemini" => rein_hooks::Agent::Gemini,
        "cursor" => rein_hooks::Agent::Cursor,
        other => {
            return Err(ApiError::not_found(format!(
                "no hook adapter for agent `{other}` (known: claude-code, codex, gemini, cursor)"
            )))
        }
    };
    // `--max-body` bounds hook events as every other body: the bytes one
    // event may cost (its parts, their audit records) scale with its size.
    let reply = match read_body(&state, &headers, body).await {
        Ok(bytes) => {
            let home = std::env::var_os("HOME").map(std::path::PathBuf::from);
            let (runtime, protected) = (state.runtime(), state.protected());
            // The event comes from the process holding the token: the
            // token's bound fields and scopes apply, and the agent's links
            // (`agent:…`, `subagent:…`) follow the token's chain.
            let handled = rein_hooks::handle_credentialed(
                runtime,
                agent,
                &bytes,
                home.as_deref(),
                Some(&client),
                Some(&identity.credential),
                protected,
                Some(state.grant_hint()),
            );
            crate::otel::traced(state.otel(), &headers, "/v1/hooks/{agent}", handled).await
        }
        Err(e) => {
            let why = e.message().to_string();
            // Recorded as the other agent routes record a body they cannot
            // decide; answered in the agent's format (not the 413), which
            // an agent reads as a refusal rather than as "no opinion".
            let recorded = refused(&state, Phase::Before, e, &headers, None, &client).await;
            let decision = recorded.body()["decision_id"].as_str().unwrap_or_default().to_string();
            rein_hooks::refuse_unreadable(
                agent,
                b"",
                &format!("Rein could not read the hook event: {why} (decision {decision})"),
            )
        }
    };
    let body: Value = serde_json::from_str(&reply.stdout).unwrap_or_else(|_| json!({}));
    Ok(Json(body).into_response())
}

/// An agent's request that could not be decided (its body is not a request,
/// or too large or deep): recorded in the audit log as a `block`, so that no
/// decision attempt is lost (see `Runtime::record_refusal`), and answered
/// with the error, `"effect": "block"`, and the record's `decision_id` and
/// `audit_seq`. Requests refused for their token are not recorded (they are
/// logged and counted): anyone could fill the log with them.
async fn refused(
    state: &AppState,
    phase: Phase,
    error: ApiError,
    headers: &HeaderMap,
    body: Option<&[u8]>,
    client: &str,
) -> ApiError {
    let declared_len = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let refusal = state.runtime().record_refusal(Refusal {
        phase,
        status: error.status().as_u16(),
        code: error.code(),
        message: error.message(),
        body,
        declared_len,
        client: Some(client),
    });
    // The caller's `traceparent` is kept here too (no exporter: nothing
    // was decided, so no spans).
    let answer = crate::otel::traced(None, headers, "refusal", refusal).await;
    let error = error.blocking(true).with("decision_id", json!(answer.decision_id));
    match answer.audit_seq {
        Some(seq) => error.with("audit_seq", json!(seq)),
        None => error,
    }
}

/// A decide body read straight into its fields, without building a
/// `serde_json::Value` for the whole document first (only `input`, `actor`
/// and `snapshot` are values). It accepts exactly what [`decide_body_checked`]
/// accepts; for anything it refuses, that slower path runs and gives the
/// error, so both paths answer alike.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DecideBody {
    action: String,
    #[serde(default, deserialize_with = "rein_engine::json::strict_value")]
    input: Value,
    #[serde(default, deserialize_with = "rein_engine::json::strict_value")]
    actor: Value,
    #[serde(default, deserialize_with = "rein_engine::json::strict_value")]
    snapshot: Value,
    #[serde(default)]
    session: Option<String>,
    #[serde(default)]
    time: Option<jiff::Timestamp>,
    #[serde(default)]
    approval: Option<String>,
    /// Present at all (even `null`): refused, by the slower path.
    #[serde(default, deserialize_with = "present")]
    phase: bool,
    #[serde(default, deserialize_with = "present")]
    output: bool,
}

fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    serde::de::IgnoredAny::deserialize(d).map(|_| true)
}

pub(crate) fn parse_decide_body(bytes: &[u8]) -> Result<(ReinRequest, Option<String>), ApiError> {
    if !crate::body::exceeds_depth(bytes, crate::body::MAX_JSON_DEPTH) {
        if let Ok(b) = serde_json::from_slice::<DecideBody>(bytes) {
            if !b.phase && !b.output {
                let mut request = ReinRequest::new(b.action)
                    .input(b.input)
                    .actor(b.actor)
                    .snapshot(b.snapshot);
                request.session = b.session;
                request.time = b.time;
                return Ok((request, b.approval));
            }
        }
    }
    decide_body_checked(bytes)
}

/// The fields of a decide body.
const DECIDE_FIELDS: [&str; 7] = ["action", "input", "actor", "snapshot", "session", "time", "approval"];

/// The reference reading of a decide body, with an error that says what is
/// wrong: the JSON as a value, then each rule of the body's shape.
fn decide_body_checked(bytes: &[u8]) -> Result<(ReinRequest, Option<String>), ApiError> {
    let mut value = parse_json(bytes)?;
    let Value::Object(map) = &mut value else {
        return Err(ApiError::bad_request(
            "invalid_request",
            format!("the body must be a JSON object (a Rein request), not {}", kind(&value)),
        ));
    };
    let approval = match map.remove("approval") {
        None | Some(Value::Null) => None,
        Some(Value::String(id)) => Some(id),
        Some(other) => {
            return Err(ApiError::bad_request(
                "invalid_request",
                format!("`approval` must be a string (an approval id), not {}", kind(&other)),
            ))
        }
    };
    // The runtime decides phase `before` only; an output here would be
    // silently ignored, which hides a client bug.
    for key in ["phase", "output"] {
        if map.contains_key(key) {
            return Err(ApiError::bad_request(
                "invalid_request",
                format!("`{key}` is not part of a decide request; report outputs to POST /v1/outcome"),
            ));
        }
    }
    // Named here rather than by the request type, whose own list of fields
    // includes `output`, `error` and `phase` (refused here) and not
    // `approval`.
    if let Some(unknown) = map.keys().find(|k| !DECIDE_FIELDS.contains(&k.as_str())) {
        return Err(ApiError::bad_request(
            "invalid_request",
            format!(
                "unknown field `{}`; a decide request has {}",
                unknown.escape_debug(),
                DECIDE_FIELDS.map(|f| format!("`{f}`")).join(", ")
            ),
        ));
    }
    let request = ReinRequest::from_json(value).map_err(|e| ApiError::bad_request("invalid_request", e.to_string()))?;
    Ok((request, approval))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OutcomeBody {
    decision_id: String,
    #[serde(default)]
    output: Option<Value>,
    #[serde(default)]
    error: Option<String>,
}

async fn outcome(State(state): State<AppState>, request: Request) -> Result<Response, ApiError> {
    let (parts, body) = request.into_parts();
    let identity = authorize(&state, Role::Agent, &parts.headers, "/v1/outcome")?;
    let client = identity.name.clone();
    let bytes = match read_body(&state, &parts.headers, body).await {
        Ok(bytes) => bytes,
        Err(e) => return Err(refused(&state, Phase::After, e, &parts.headers, None, &client).await),
    };
    let parse = || {
        let body: OutcomeBody = from_value(parse_json(&bytes)?, "an outcome")?;
        if body.output.is_some() && body.error.is_some() {
            return Err(ApiError::bad_request(
                "invalid_request",
                "give either `output` (the action ran) or `error` (it failed), not both",
            ));
        }
        Ok(body)
    };
    let body = match parse() {
        Ok(body) => body,
        Err(e) => return Err(refused(&state, Phase::After, e, &parts.headers, Some(&bytes), &client).await),
    };
    let started = Instant::now();
    // Only the token that asked for the decision may report its outcome,
    // once; the record names the sender.
    let answer = crate::otel::traced(
        state.otel(),
        &parts.headers,
        "/v1/outcome",
        state.runtime().outcome_bound(
            &body.decision_id,
            body.output,
            body.error,
            Some(&client),
            Some(&identity.credential),
        ),
    )
    .await
    .map_err(|refused| {
        let (status, code) = match refused {
            OutcomeRefused::OtherClient { .. } => (StatusCode::FORBIDDEN, "other_client"),
            OutcomeRefused::AlreadyReported { .. } => (StatusCode::CONFLICT, "outcome_already_reported"),
        };
        state.metrics().fail_closed(code);
        ApiError::new(status, code, refused.to_string())
            .blocking(true)
            .with("decision_id", json!(body.decision_id))
    })?;
    state
        .metrics()
        .outcome(answer.effect.as_str(), started.elapsed().as_secs_f64());
    let mut response = Json(&answer).into_response();
    crate::versions::name_version(&mut response, &answer.policy_version);
    Ok(response)
}

// ---- approver routes ----------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListApprovals {
    state: Option<String>,
    limit: Option<u64>,
}

/// Every approval for approvers and admins; an agent token sees those its
/// own requests opened.
async fn list_approvals(
    State(state): State<AppState>,
    Extension(who): Extension<Arc<Identity>>,
    query: Result<Query<ListApprovals>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = query.map_err(bad_query)?;
    let wanted = match q.state.as_deref() {
        None => None,
        Some("pending") => Some(ApprovalState::Pending),
        Some("granted") => Some(ApprovalState::Granted),
        Some("denied") => Some(ApprovalState::Denied),
        Some("used") => Some(ApprovalState::Used),
        Some(other) => {
            return Err(ApiError::bad_request(
                "invalid_query",
                format!("unknown state `{other}`; states are pending, granted, denied, used"),
            ))
        }
    };
    let limit = limit(q.limit)?;
    let approvals = match who.role {
        Role::Agent => state.runtime().client_approvals(&who.name, wanted, limit).await,
        _ => state.runtime().approvals(wanted, limit).await,
    }
    .map_err(runtime_error)?;
    Ok(Json(json!({ "approvals": approvals })).into_response())
}

/// One approval. An agent token reads only those its own requests opened
/// (another's is "not found"). An approver who may decide it, while it is
/// pending, also gets `request`: the request's values, sensitive ones
/// included, opened from the copy sealed for approvers.
async fn get_approval(
    State(state): State<AppState>,
    Extension(who): Extension<Arc<Identity>>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let not_found = || ApiError::not_found(format!("no approval `{id}`"));
    let approval = match state.runtime().store().get_approval(&id).await {
        Ok(Some(approval)) => approval,
        Ok(None) => return Err(not_found()),
        Err(e) => return Err(ApiError::unavailable(e.to_string())),
    };
    if who.role == Role::Agent {
        if approval.requested_via.as_deref() != Some(who.name.as_str()) {
            return Err(not_found());
        }
        return Ok(Json(approval).into_response());
    }
    let request = state
        .runtime()
        .sealed_request(&approval, &approver(&who))
        .map_err(runtime_error)?;
    let mut body = serde_json::to_value(&approval)
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?;
    if let Some(request) = request {
        body["request"] = request;
    }
    Ok(Json(body).into_response())
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct DecideApproval {
    comment: Option<String>,
}

async fn grant(
    State(state): State<AppState>,
    Extension(who): Extension<Arc<Identity>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    decide_approval(&state, &who, &id, &headers, body, true).await
}

async fn deny(
    State(state): State<AppState>,
    Extension(who): Extension<Arc<Identity>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    decide_approval(&state, &who, &id, &headers, body, false).await
}

async fn decide_approval(
    state: &AppState,
    who: &Identity,
    id: &str,
    headers: &HeaderMap,
    body: Body,
    grant: bool,
) -> Result<Response, ApiError> {
    let body = approval_body(state, headers, body).await?;
    let record = state
        .runtime()
        .decide_approval(id, grant, approver(who), body.comment.as_deref())
        .await
        .map_err(runtime_error)?;
    tracing::info!(approval = %id, by = %who.name, state = record.state.as_str(), "approval decided");
    Ok(Json(record).into_response())
}

/// The optional body of grant and deny; an empty body means no comment.
async fn approval_body(state: &AppState, headers: &HeaderMap, body: Body) -> Result<DecideApproval, ApiError> {
    let bytes = read_body(state, headers, body).await?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(DecideApproval::default());
    }
    from_value(parse_json(&bytes)?, "a grant or deny body")
}

/// The caller as an approver: admins decide every approval; an approver
/// token may be limited to some approval roles (`approves:` in the tokens
/// file).
pub(crate) fn approver(who: &Identity) -> Approver<'_> {
    Approver {
        name: &who.name,
        roles: match who.role {
            Role::Admin => None,
            _ => who.approves.as_deref(),
        },
        credential: Some(&who.credential),
    }
}

fn runtime_error(e: RuntimeError) -> ApiError {
    match e {
        RuntimeError::NotAllowed { .. } => ApiError::new(StatusCode::FORBIDDEN, "role_not_allowed", e.to_string()),
        RuntimeError::Store(e) => ApiError::unavailable(e.to_string()),
        RuntimeError::KeyMismatch { .. } => ApiError::unavailable(e.to_string()),
        RuntimeError::Approval(e) => {
            let (status, code) = match &e {
                ApprovalError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
                ApprovalError::WrongState { .. } => (StatusCode::CONFLICT, "wrong_state"),
                ApprovalError::Expired(_) => (StatusCode::CONFLICT, "expired"),
                ApprovalError::RequestMismatch(_) => (StatusCode::CONFLICT, "request_mismatch"),
                ApprovalError::OtherClient(_) => (StatusCode::FORBIDDEN, "other_client"),
                ApprovalError::SelfApproval(_) => (StatusCode::FORBIDDEN, "self_approval"),
                ApprovalError::RolesChanged { .. } => (StatusCode::CONFLICT, "roles_changed"),
            };
            ApiError::new(status, code, e.to_string())
        }
    }
}

// ---- admin routes -------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AuditParams {
    since: Option<String>,
    until: Option<String>,
    actor: Option<String>,
    action: Option<String>,
    effect: Option<String>,
    rule: Option<String>,
    session: Option<String>,
    decision_id: Option<String>,
    /// A trace id (32 lowercase hex digits), or a whole `traceparent`.
    trace: Option<String>,
    after_seq: Option<u64>,
    before_seq: Option<u64>,
    /// `asc` (the default, oldest first) or `desc` (newest first).
    order: Option<String>,
    limit: Option<u64>,
}

async fn query_audit(
    State(state): State<AppState>,
    query: Result<Query<AuditParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(p) = query.map_err(bad_query)?;
    let time = |name: &str, v: Option<String>| {
        v.map(|s| {
            parse_time(&s).map_err(|_| {
                ApiError::bad_request(
                    "invalid_query",
                    format!("`{name}` must be an RFC 3339 time, like 2026-01-31T12:00:00Z; got `{s}`"),
                )
            })
        })
        .transpose()
    };
    if let Some(effect) = &p.effect {
        if Effect::parse(effect).is_none() {
            return Err(ApiError::bad_request(
                "invalid_query",
                format!("unknown effect `{effect}`; effects are allow, block, require_approval"),
            ));
        }
    }
    let limit = limit(p.limit)?;
    let descending = match p.order.as_deref() {
        None | Some("asc") => false,
        Some("desc") => true,
        Some(other) => {
            return Err(ApiError::bad_request(
                "invalid_query",
                format!("`order` must be `asc` or `desc`; got `{other}`"),
            ))
        }
    };
    // The trace id, also from a whole `traceparent` as an agent logs it;
    // what is neither is refused (and not quoted back).
    let trace =
        match p.trace {
            None => None,
            Some(t) => match rein_runtime::trace::TraceParent::parse(t.as_bytes()) {
                Some(parent) => Some(parent.trace_id().to_string()),
                None if rein_runtime::trace::is_trace_id(&t) => Some(t),
                None => return Err(ApiError::bad_request(
                    "invalid_query",
                    "`trace` must be a trace id (32 lowercase hex digits, not all zeros) or a version-00 traceparent",
                )),
            },
        };
    let query = AuditQuery {
        since: time("since", p.since)?,
        until: time("until", p.until)?,
        actor: p.actor,
        action: p.action,
        effect: p.effect,
        rule: p.rule,
        session: p.session,
        decision_id: p.decision_id,
        trace,
        after_seq: p.after_seq,
        before_seq: p.before_seq,
        descending,
        limit: Some(limit),
    };
    let records = state
        .runtime()
        .store()
        .query_audit(&query)
        .await
        .map_err(|e| ApiError::unavailable(e.to_string()))?;
    // A full page may have a next one: this is where it starts.
    let next = (records.len() as u64 >= limit)
        .then(|| records.last().map(|r| r.seq))
        .flatten();
    let mut body = json!({ "records": records });
    if let Some(seq) = next {
        // Newest first, the next page is below the last record.
        let key = if descending {
            "next_before_seq"
        } else {
            "next_after_seq"
        };
        body[key] = json!(seq);
    }
    Ok(Json(body).into_response())
}

/// `GET /v1/audit/export`: the records matching the filters of
/// `/v1/audit`, oldest first, as JSON Lines, streamed (see
/// [`crate::audit_export`]).
async fn export_audit(
    State(state): State<AppState>,
    query: Result<Query<crate::audit_export::AuditFilters>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(filters) = query.map_err(bad_query)?;
    let query = filters.to_query()?;
    crate::audit_export::export(Arc::clone(state.runtime().store()), query).await
}

async fn verify_audit(State(state): State<AppState>) -> Result<Response, ApiError> {
    let verification = state
        .runtime()
        .store()
        .verify_audit()
        .await
        .map_err(|e| ApiError::unavailable(e.to_string()))?;
    Ok(match verification {
        Verification::Intact { records } => Json(json!({"intact": true, "records": records})).into_response(),
        Verification::Broken { seq, problem } => {
            tracing::error!(seq, problem = %problem, "the audit log does not verify");
            ApiError::new(
                StatusCode::CONFLICT,
                "audit_broken",
                format!("the audit log is broken at record {seq}: {problem}"),
            )
            .with("intact", json!(false))
            .with("seq", json!(seq))
            .with("problem", json!(problem))
            .into_response()
        }
    })
}

async fn reload_policy(
    State(state): State<AppState>,
    Extension(who): Extension<Arc<Identity>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    // The route takes no body; one is read (and ignored) under the same
    // limit as every route's, so no route accepts more than `--max-body`.
    read_body(&state, &headers, body).await?;
    // The activation record names the admin token that asked.
    match state.reload_policy(&who.name).await {
        Ok(reloaded) => Ok(Json(reloaded).into_response()),
        Err(ReloadError::Invalid(e)) => {
            let diagnostics: Vec<Value> = e.diagnostics().iter().map(|d| d.to_json()).collect();
            Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "policy_invalid",
                format!("{}; the old policy keeps serving", headline(&e)),
            )
            .with("diagnostics", Value::Array(diagnostics)))
        }
        Err(e @ ReloadError::Failed(_)) => Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "reload_failed",
            format!("{e}; the old policy keeps serving"),
        )),
    }
}

// ---- delegation ---------------------------------------------------------

/// Mints a delegation token from the caller's own (the parent): a link
/// added to its chain, actions, lifetime, bound fields and role no wider
/// than the parent's (400 for a malformed request, 403 for a wider one).
/// Agents and admins may delegate; every minting is logged.
async fn delegate(State(state): State<AppState>, request: Request) -> Result<Response, ApiError> {
    const ROUTE: &str = "/v1/tokens/delegate";
    let (parts, body) = request.into_parts();
    let parent = authorize(&state, Role::Agent, &parts.headers, ROUTE)?;
    let bytes = read_body(&state, &parts.headers, body).await?;
    let asked: crate::delegation::MintRequest = from_value(parse_json(&bytes)?, "a delegation request")?;
    let presented = bearer(&parts.headers).unwrap_or_default();
    let minted = state
        .tokens()
        .delegation()
        .mint(&parent, presented, state.tokens(), asked, jiff::Timestamp::now());
    match minted {
        Ok(minted) => {
            tracing::info!(
                parent = %parent.name,
                name = %minted.name,
                id = %minted.id,
                actions = %minted.actions,
                expires_at = %minted.expires_at,
                "delegation token minted"
            );
            Ok(Json(minted).into_response())
        }
        Err(refused) => {
            tracing::warn!(parent = %parent.name, reason = %refused, "delegation refused");
            Err(match refused {
                crate::delegation::MintRefusal::Invalid(why) => ApiError::bad_request("invalid_request", why),
                crate::delegation::MintRefusal::Wider(why) => {
                    ApiError::new(StatusCode::FORBIDDEN, "wider_than_parent", why)
                }
                crate::delegation::MintRefusal::Disabled => ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "delegation_disabled",
                    "this server mints no delegation tokens (it has no delegation key)",
                ),
            })
        }
    }
}

// ---- state routes -------------------------------------------------------

/// Every limit bucket with uses in its window (approvers and admins).
async fn list_limits(State(state): State<AppState>) -> Result<Response, ApiError> {
    // On a shared store, read under the state lease: what every replica
    // used, not this one's copy.
    let limits = state
        .runtime()
        .limits_current(jiff::Timestamp::now())
        .await
        .map_err(|e| ApiError::unavailable(e.to_string()))?;
    let limits: Vec<Value> = limits.iter().map(crate::bucket_json).collect();
    Ok(Json(json!({ "limits": limits })).into_response())
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ResetLimits {
    rule: Option<String>,
    bucket: Option<String>,
}

/// Forgets limit uses: all, one rule's or one bucket's (admins).
async fn reset_limits(State(state): State<AppState>, headers: HeaderMap, body: Body) -> Result<Response, ApiError> {
    let bytes = read_body(&state, &headers, body).await?;
    let body: ResetLimits = if bytes.iter().all(u8::is_ascii_whitespace) {
        ResetLimits::default()
    } else {
        from_value(parse_json(&bytes)?, "a limits reset body")?
    };
    if let Some(rule) = &body.rule {
        // A misspelt rule would reset nothing and say so only by a zero.
        if !state.runtime().policy().limits().iter().any(|l| &l.rule == rule) {
            return Err(ApiError::bad_request(
                "unknown_rule",
                format!("no rule `{rule}` with a limit in the policy"),
            ));
        }
    }
    if let Some(bucket) = &body.bucket {
        let Some(key) = rein_engine::state::BucketKey::from_id(bucket) else {
            return Err(ApiError::bad_request(
                "invalid_bucket",
                format!("`{bucket}` is not a bucket id (the `bucket` of a GET /v1/limits entry)"),
            ));
        };
        if body.rule.as_ref().is_some_and(|rule| rule != &key.rule) {
            return Err(ApiError::bad_request(
                "invalid_bucket",
                format!("bucket `{bucket}` belongs to rule `{}`", key.rule),
            ));
        }
    }
    let reset = state
        .runtime()
        .reset_limits(body.rule.as_deref(), body.bucket.as_deref())
        .await
        .map_err(runtime_error)?;
    tracing::info!(rule = ?body.rule, bucket = ?body.bucket, reset, "limits reset");
    Ok(Json(json!({ "reset": reset })).into_response())
}

/// A session's calls and labels (approvers and admins). A session never
/// seen (or expired) is shown empty: it is what a request naming it reads.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct SessionQuery {
    /// The token whose session `id` is read (sessions belong to the client
    /// that names them); absent: `id` is the stored id.
    client: Option<String>,
}

async fn get_session(
    State(state): State<AppState>,
    Path(id): Path<String>,
    query: Result<Query<SessionQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = query.map_err(bad_query)?;
    let id = rein_runtime::scoped_session(q.client.as_deref(), &id);
    match state.runtime().session_current(&id).await {
        Ok(Some(session)) => Ok(Json(session).into_response()),
        Ok(None) => Ok(Json(json!({"id": id, "calls": [], "labels": [], "last_seen": null})).into_response()),
        Err(e) => Err(ApiError::unavailable(e.to_string())),
    }
}

/// "policy failed to load: N errors", without the list that follows.
pub(crate) fn headline(e: &rein_engine::LoadError) -> String {
    let n = e.error_count();
    format!("the policy failed to load: {n} error{}", if n == 1 { "" } else { "s" })
}

// ---- public routes ------------------------------------------------------

/// `200` while decisions can be made and recorded; `503` with the reason
/// when the store cannot be read, or while audit appends fail (a full disk:
/// every decision is then `block`) until one succeeds again or the store
/// takes a probing write (space was freed); and, on a shared store, while
/// this replica cannot load the policy version published to the replicas
/// (it keeps serving its last good version, named in the answer).
async fn healthz(State(state): State<AppState>) -> Response {
    let policy = state.runtime().policy();
    let version = policy.version().to_string();
    let label = policy.version_label().map(str::to_string);
    let unavailable = |why: String| {
        ApiError::unavailable(why)
            .with("status", json!("unavailable"))
            .with("policy_version", json!(version))
            .with("policy_version_label", json!(label))
            .into_response()
    };
    if let Err(why) = state.runtime().audit_health_probed().await {
        tracing::error!(error = %why, "health check: the audit log takes no appends");
        return unavailable(format!(
            "the audit log takes no appends, so every decision is block: {why}"
        ));
    }
    // A primary-key lookup that finds nothing: it touches the database
    // without costing anything.
    if let Err(e) = state.runtime().store().get_approval("healthz-probe").await {
        tracing::error!(error = %e, "health check: the store failed");
        return unavailable(format!("the store failed: {e}"));
    }
    // On a shared store: a replica that cannot serve the version the
    // replicas were told to serve is not healthy, though it decides (with
    // its last good version).
    // On a shared store: a replica whose latest attempt to take the state
    // lease failed blocks every stateful decision until it takes it again
    // (the next stateful decision tries): not healthy meanwhile.
    if let Err(why) = state.runtime().state_lease_health() {
        tracing::warn!(error = %why, "health check: the state lease cannot be taken");
        return ApiError::unavailable(format!(
            "this replica cannot take the shared store's state lease, so its stateful decisions (limits, \
             sessions) are block: {why}"
        ))
        .with("status", json!("unavailable"))
        .with("policy_version", json!(version))
        .with("policy_version_label", json!(label))
        .with("state_lease_error", json!(why))
        .into_response();
    }
    // On a shared store: this replica's policy files are not the version
    // it serves (it serves the version published; a reload here would
    // publish its files to every replica). Said, not unhealthy.
    let files_differ = state.files_version().filter(|files| *files != version);
    if let Some(missed) = state.unfollowed() {
        let mut answer = ApiError::unavailable(format!(
            "this replica cannot load the policy version published to the replicas, {}: {}; it keeps serving \
             {version}",
            missed.version, missed.reason
        ))
        .with("status", json!("unavailable"))
        .with("policy_version", json!(version))
        .with("policy_version_label", json!(label))
        .with("published_version", json!(missed.version))
        .with("published_version_error", json!(missed.reason));
        if let Some(files) = files_differ {
            answer = answer.with("policy_files_version", json!(files));
        }
        return answer.into_response();
    }
    let mut body = json!({"status": "ok", "policy_version": version, "policy_version_label": label});
    if let Some(files) = files_differ {
        body["policy_files_version"] = json!(files);
        body["policy_files_note"] = json!(format!(
            "this replica's policy files are version {files}, not the version served, {version}, which is the one \
             published to the replicas; a reload here (or a start with --publish) would publish its files to every \
             replica"
        ));
    }
    Json(body).into_response()
}

async fn metrics(State(state): State<AppState>) -> Response {
    // Expired approvals stay `pending` in the store until someone touches
    // them; they are not waiting for anyone, so they are not counted.
    let now = format_time(jiff::Timestamp::now());
    if let Ok(pending) = state
        .runtime()
        .approvals(Some(ApprovalState::Pending), PENDING_SCAN_LIMIT)
        .await
    {
        let live = pending.iter().filter(|a| a.expires_at > now).count();
        state
            .metrics()
            .set_pending_approvals(i64::try_from(live).unwrap_or(i64::MAX));
    }
    match state.metrics().render() {
        Ok(text) => (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
            )],
            text,
        )
            .into_response(),
        Err(_) => ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "the metrics could not be rendered",
        )
        .into_response(),
    }
}

async fn openapi() -> Response {
    (
        [(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))],
        OPENAPI,
    )
        .into_response()
}

// ---- helpers ------------------------------------------------------------

/// Reads a request body under the server's one limit (`--max-body`): every
/// route that reads a body reads it here, so none can take more.
///
/// The body must arrive within half the request timeout (`408`): a body
/// sent a byte at a time would otherwise run into the request timeout,
/// which drops the handler, and the agent's attempt would leave no audit
/// record; this way it is refused, and recorded, like any unreadable body.
pub(crate) async fn read_body(state: &AppState, headers: &HeaderMap, body: Body) -> Result<Vec<u8>, ApiError> {
    let budget = state.inner.request_timeout / 2;
    match tokio::time::timeout(budget, read_limited(headers, body, state.max_body_bytes())).await {
        Ok(read) => read,
        Err(_) => Err(ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "body_timeout",
            format!("the body did not arrive within {} ms", budget.as_millis()),
        )),
    }
}

fn limit(requested: Option<u64>) -> Result<u64, ApiError> {
    match requested {
        None => Ok(DEFAULT_LIMIT),
        Some(n) if (1..=MAX_LIMIT).contains(&n) => Ok(n),
        Some(n) => Err(ApiError::bad_request(
            "invalid_query",
            format!("`limit` must be between 1 and {MAX_LIMIT}; got {n}"),
        )),
    }
}

pub(crate) fn bad_query(e: QueryRejection) -> ApiError {
    ApiError::bad_request("invalid_query", e.body_text())
}

pub(crate) fn from_value<T: DeserializeOwned>(value: Value, what: &str) -> Result<T, ApiError> {
    serde_json::from_value(value).map_err(|e| ApiError::bad_request("invalid_request", format!("not {what}: {e}")))
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// The fast reading of a decide body accepts exactly what the checked
    /// reading accepts, with the same result.
    #[test]
    fn decide_body_fast_path_agrees_with_the_checked_one() {
        let bodies: &[&str] = &[
            r#"{"action":"refund","input":{"amount":40},"actor":{"id":"a"},"snapshot":{}}"#,
            r#"{"action":"refund","approval":"ap-1","session":"s","time":"2025-01-01T00:00:00Z"}"#,
            r#"{"action":"refund","approval":null,"input":null}"#,
            r#"{"action":"refund","approval":7}"#,
            r#"{"action":"refund","phase":null}"#,
            r#"{"action":"refund","phase":"before"}"#,
            r#"{"action":"refund","output":{}}"#,
            r#"{"action":"refund","action":"pay"}"#,
            r#"{"action":"refund","approval":"a","approval":"b"}"#,
            r#"{"action":"refund","inputs":{}}"#,
            r#"{"action":5}"#,
            r#"{"input":{}}"#,
            r#"{"action":"refund","time":"yesterday"}"#,
            r#"{"action":"refund","session":null}"#,
            r#"{"action":"refund"} x"#,
            r#"[1]"#,
            r#""allow""#,
            r#""#,
            r#"{"action":"r\u00e9","input":{"a":[1,2,{"b":null}],"c":1e400}}"#,
        ];
        for body in bodies {
            let fast = parse_decide_body(body.as_bytes());
            let checked = decide_body_checked(body.as_bytes());
            match (fast, checked) {
                (Ok(a), Ok(b)) => assert_eq!(a, b, "{body}"),
                (Err(a), Err(b)) => assert_eq!(a.body(), b.body(), "{body}"),
                (a, b) => panic!("{body}: fast {:?}, checked {:?}", a.map(|_| ()), b.map(|_| ())),
            }
        }
    }
}
