//! The policy version routes: `GET /v1/policy/versions` (the history) and
//! `POST /v1/policy/rollback` (serve a kept version again). Both admin.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Extension, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use rein_runtime::versions::{VersionError, VersionLookupError};
use serde::Deserialize;
use serde_json::json;

use crate::auth::Identity;
use crate::body::parse_json;
use crate::error::ApiError;
use crate::routes::{from_value, read_body};
use crate::{AppState, RollbackError};

/// What a rollback's answer says of how long it holds.
pub(crate) const ROLLBACK_HOLDS: &str = "this version serves until the next reload (SIGHUP or POST \
     /v1/policy/reload), which reads the policy files again: change them too to keep it";

/// Every version the store keeps or the audit log names, newest
/// activation first, the one serving marked `current`.
pub(crate) async fn list_versions(State(state): State<AppState>) -> Result<Response, ApiError> {
    let policy = state.runtime().policy();
    let versions = rein_runtime::versions::history(state.runtime().store().as_ref(), Some(policy.version()))
        .await
        .map_err(|e| ApiError::unavailable(e.to_string()))?;
    Ok(Json(json!({
        "current": {"policy_version": policy.version(), "policy_version_label": policy.version_label()},
        "versions": versions,
    }))
    .into_response())
}

/// The kept sources of one version (named by hash, unique prefix or
/// label), checked against its hash.
pub(crate) async fn show_version(
    State(state): State<AppState>,
    Path(given): Path<String>,
) -> Result<Response, ApiError> {
    match rein_runtime::versions::kept_version(state.runtime().store().as_ref(), &given).await {
        Ok(kept) => Ok(Json(kept).into_response()),
        Err(e) => Err(rollback_error(RollbackError::Lookup(e))),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RollbackBody {
    /// A version hash, a unique prefix of one, or a label.
    version: String,
}

/// Serves a kept version again (see [`AppState::rollback_policy`]).
pub(crate) async fn rollback(
    State(state): State<AppState>,
    Extension(who): Extension<Arc<Identity>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let bytes = read_body(&state, &headers, body).await?;
    let body: RollbackBody = from_value(parse_json(&bytes)?, "a rollback request (`{\"version\": …}`)")?;
    match state.rollback_policy(&body.version, &who.name).await {
        Ok(activated) => {
            let mut answer = serde_json::to_value(&activated)
                .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?;
            answer["note"] = json!(ROLLBACK_HOLDS);
            Ok(Json(answer).into_response())
        }
        Err(e) => Err(rollback_error(e)),
    }
}

fn rollback_error(e: RollbackError) -> ApiError {
    // Said on a rollback's refusal, and harmless on a `show`'s.
    let keeps = |m: String| format!("{m}; the policy in force keeps serving");
    match e {
        RollbackError::Lookup(VersionError::Lookup(l @ VersionLookupError::Unknown(_))) => {
            ApiError::new(StatusCode::NOT_FOUND, "unknown_version", keeps(l.to_string()))
        }
        RollbackError::Lookup(VersionError::Lookup(VersionLookupError::Ambiguous { given, candidates })) => {
            let message = VersionLookupError::Ambiguous {
                given,
                candidates: candidates.clone(),
            }
            .to_string();
            ApiError::new(StatusCode::CONFLICT, "ambiguous_version", keeps(message))
                .with("candidates", json!(candidates))
        }
        RollbackError::Lookup(e @ VersionError::NotKept(_)) => {
            ApiError::new(StatusCode::NOT_FOUND, "sources_not_kept", keeps(e.to_string()))
        }
        RollbackError::Lookup(VersionError::Store(e)) if e.0.contains(rein_store::versions::SOURCES_CHANGED) => {
            ApiError::new(StatusCode::CONFLICT, "sources_changed", keeps(e.0))
        }
        RollbackError::Lookup(VersionError::Store(e)) => ApiError::unavailable(keeps(e.to_string())),
        // The engine's refusal of sources that do not compile to their hash.
        RollbackError::Failed(why) if why.contains("were changed") => {
            ApiError::new(StatusCode::CONFLICT, "sources_changed", keeps(why))
        }
        RollbackError::Failed(why) => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "rollback_failed", keeps(why)),
    }
}

/// The header that names, on every answer, the policy version that gave
/// it: for a decision or an outcome the version that decided it (also its
/// body's `policy_version`); for any other answer the version in force
/// when it was sent.
pub(crate) const POLICY_VERSION_HEADER: &str = "rein-policy-version";

/// Sets [`POLICY_VERSION_HEADER`] to `version` unless the answer has it.
pub(crate) fn name_version(response: &mut Response, version: &str) {
    if response.headers().contains_key(POLICY_VERSION_HEADER) {
        return;
    }
    // A version is hex (or an author's hash): a value a header cannot
    // carry is left out, not guessed.
    if let Ok(value) = axum::http::HeaderValue::from_str(version) {
        response.headers_mut().insert(POLICY_VERSION_HEADER, value);
    }
}
