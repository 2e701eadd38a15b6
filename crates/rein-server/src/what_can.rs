//! `POST /v1/what-can`: what an actor may do under the policy served, per
//! action (`rein_engine::partial`).
//!
//! An agent asks about itself: its actor is bound by its credential
//! exactly as `/v1/decide` binds it (the bound fields set, a body that
//! contradicts one refused, a field the policy requires bound and the
//! credential lacks refused), and an action outside the scope delegated to
//! it is never allowed. An approver or an admin may ask for any actor.

use crate::auth::{authorize_with, Role};
use crate::error::ApiError;
use crate::AppState;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use rein_engine::{Request as ReinRequest, Residual, Status};
use rein_runtime::identity;
use serde::Deserialize;
use serde_json::Value;

/// The body: the actor, the snapshot (default `{}`), and optionally a name
/// or glob of the actions to answer for.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WhatCanBody {
    #[serde(default)]
    actor: Value,
    #[serde(default)]
    snapshot: Value,
    #[serde(default)]
    action: Option<String>,
}

pub(crate) async fn what_can(State(state): State<AppState>, request: Request) -> Result<Response, ApiError> {
    let (parts, body) = request.into_parts();
    // Agent routes have no role layer (see `routes::router`): checked here.
    // Approvers may ask too (for any actor), as admins may.
    let identity = authorize_with(
        &state,
        Role::Agent,
        Some(Role::Approver),
        &parts.headers,
        "/v1/what-can",
    )?;
    let bytes = crate::routes::read_body(&state, &parts.headers, body).await?;
    let body: WhatCanBody = serde_json::from_value(crate::body::parse_json(&bytes)?)
        .map_err(|e| ApiError::bad_request("invalid_request", format!("invalid what-can request: {e}")))?;
    let empty = |v: Value| {
        if v.is_null() {
            Value::Object(Default::default())
        } else {
            v
        }
    };
    let (mut actor, snapshot) = (empty(body.actor), empty(body.snapshot));
    let policy = state.runtime().policy();
    let agent = identity.role == Role::Agent;
    if agent {
        // The binding of `/v1/decide`, without the action: what refuses
        // every request (a contradicted field, an unbound requirement) is
        // refused here; scopes are per action, below.
        let mut unscoped = identity.credential.clone();
        unscoped.scopes.clear();
        let mut probe = ReinRequest::new(String::new()).actor(actor);
        if let Some(reason) = identity::bind(&policy, &mut probe, Some(&unscoped)).refusal {
            tracing::info!(client = %identity.name, reason = %reason, "what-can refused");
            return Err(ApiError::new(StatusCode::FORBIDDEN, "identity", reason));
        }
        actor = probe.actor;
    }
    // Folding every action of a large policy is CPU work: off the async
    // workers, as policy loads are.
    let asked = actor.clone();
    let mut answer = tokio::task::spawn_blocking(move || policy.what_can(&asked, &snapshot))
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?
        .map_err(|v| ApiError::bad_request("contract", format!("{v}")).with("field", Value::String(v.path.clone())))?;
    if agent {
        for a in &mut answer.actions {
            if let Some(reason) = identity.credential.refuses(&a.action) {
                a.status = Status::NeverAllowed;
                a.allowed = Residual::Never;
                a.approval = Residual::Never;
                a.state_rules.clear();
                a.error = Some(reason);
            }
        }
    }
    if let Some(glob) = &body.action {
        answer
            .retain_actions(glob)
            .map_err(|e| ApiError::bad_request("invalid_request", e))?;
    }
    // Not in the audit log (nothing was decided), but in the server's.
    tracing::info!(client = %identity.name, actions = answer.actions.len(), "what-can answered");
    let mut out = serde_json::to_value(&answer)
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?;
    if let Value::Object(fields) = &mut out {
        fields.insert("actor".into(), actor);
    }
    Ok(Json(out).into_response())
}
