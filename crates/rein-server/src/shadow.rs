//! Shadow mode over HTTP (admin): set, show and stop the candidate policy
//! decided beside the enforced one, and the report of where they differed.
//!
//! `POST /v1/policy/shadow` with `{"paths": ["candidate.yaml", …]}` loads
//! the named files or folders (read by the server, relative to its working
//! folder, as `rein serve --shadow` reads them) and, if they load, makes
//! them the candidate; a candidate that does not load is refused (`422`)
//! with its diagnostics and the previous candidate (or none) stays. A path
//! that is neither a folder nor a `.yaml`/`.yml` file is refused (`400`):
//! the route must not read (and quote) any file the server can open.
//! `DELETE /v1/policy/shadow` stops it; `GET /v1/policy/shadow` names it.
//! A reload of the enforced policy (HTTP or SIGHUP) keeps the candidate as
//! it was loaded: to read its files again, post them again.

use crate::error::ApiError;
use crate::routes::{bad_query, from_value, headline, read_body};
use crate::AppState;
use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use rein_engine::{LoadError, Policy};
use rein_store::chain::parse_time;
use serde::Deserialize;
use serde_json::{json, Value};
use std::path::PathBuf;

/// The candidate in shadow and the files it was read from.
#[derive(Clone, Debug, Default)]
pub(crate) struct Candidate {
    pub paths: Vec<PathBuf>,
}

/// Most paths one request may name.
const MAX_PATHS: usize = 64;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SetShadow {
    paths: Vec<String>,
}

fn is_yaml(path: &std::path::Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("yaml") || e.eq_ignore_ascii_case("yml"))
}

/// Loads the candidate from `paths` off the async threads.
pub(crate) async fn load_candidate(paths: Vec<PathBuf>) -> Result<Policy, Result<LoadError, String>> {
    match tokio::task::spawn_blocking(move || Policy::load(&paths)).await {
        Ok(Ok(policy)) => Ok(policy),
        Ok(Err(e)) => Err(Ok(e)),
        Err(e) => Err(Err(e.to_string())),
    }
}

/// What the answers say of a candidate.
fn describe(policy: &Policy, paths: &[PathBuf]) -> Value {
    let mut out = json!({
        "policy_version": policy.version(),
        "files": paths.iter().map(|p| p.display().to_string()).collect::<Vec<_>>(),
    });
    if let Some(label) = policy.version_label() {
        out["policy_version_label"] = json!(label);
    }
    if !policy.warnings().is_empty() {
        out["warnings"] = policy.warnings().iter().map(|d| d.to_json()).collect();
    }
    out
}

pub(crate) async fn set_shadow(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let bytes = read_body(&state, &headers, body).await?;
    let asked: SetShadow = from_value(
        crate::body::parse_json(&bytes)?,
        "a shadow request (`{\"paths\": [...]}`)",
    )?;
    if asked.paths.is_empty() || asked.paths.len() > MAX_PATHS {
        return Err(ApiError::bad_request(
            "invalid_request",
            format!("`paths` names 1 to {MAX_PATHS} policy files or folders; to stop shadow mode, send DELETE"),
        ));
    }
    let paths: Vec<PathBuf> = asked.paths.iter().map(PathBuf::from).collect();
    // Only what a policy can be: the server must not be made to read (and
    // quote in diagnostics) any file it can open.
    if let Some(other) = paths.iter().find(|p| !p.is_dir() && !is_yaml(p)) {
        return Err(ApiError::bad_request(
            "invalid_request",
            format!(
                "`{}` is neither a `.yaml`/`.yml` file nor a folder; a candidate is read like a policy",
                other.display()
            ),
        ));
    }
    let _one_at_a_time = state.shadow_lock().lock().await;
    let policy = match load_candidate(paths.clone()).await {
        Ok(policy) => policy,
        Err(Ok(e)) => {
            let diagnostics: Vec<Value> = e.diagnostics().iter().map(|d| d.to_json()).collect();
            tracing::warn!(
                "shadow candidate refused; the previous one (if any) stays:\n{}",
                e.render(false)
            );
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "policy_invalid",
                format!("{}; the candidate was not changed", headline(&e)),
            )
            .with("diagnostics", Value::Array(diagnostics)));
        }
        Err(Err(e)) => {
            return Err(ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "shadow_failed",
                format!("the candidate could not be loaded: {e}; the candidate was not changed"),
            ))
        }
    };
    let mut out = describe(&policy, &paths);
    out["enforced_version"] = json!(state.runtime().policy().version());
    tracing::info!(version = %policy.version(), "shadow candidate set");
    state.runtime().set_shadow(Some(policy));
    state.set_shadow_candidate(Some(Candidate { paths }));
    Ok(Json(json!({ "shadow": out })).into_response())
}

pub(crate) async fn stop_shadow(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    // The route takes no body; one is read (and ignored) under the same
    // limit as every route's, as the reload route does.
    read_body(&state, &headers, body).await?;
    let _one_at_a_time = state.shadow_lock().lock().await;
    let previous = state.runtime().shadow_policy().map(|p| p.version().to_string());
    state.runtime().set_shadow(None);
    state.set_shadow_candidate(None);
    tracing::info!(previous = ?previous, "shadow candidate stopped");
    Ok(Json(json!({ "shadow": Value::Null, "previous_version": previous })).into_response())
}

pub(crate) async fn get_shadow(State(state): State<AppState>) -> Result<Response, ApiError> {
    let shadow = match (state.runtime().shadow_policy(), state.shadow_candidate()) {
        (Some(policy), candidate) => {
            let mut out = describe(&policy, &candidate.map(|c| c.paths).unwrap_or_default());
            out["enforced_version"] = json!(state.runtime().policy().version());
            out
        }
        (None, _) => Value::Null,
    };
    Ok(Json(json!({ "shadow": shadow })).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ReportParams {
    since: Option<String>,
    until: Option<String>,
}

pub(crate) async fn shadow_report(
    State(state): State<AppState>,
    query: Result<Query<ReportParams>, QueryRejection>,
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
    let since = time("since", p.since)?;
    let until = time("until", p.until)?;
    let report = rein_runtime::shadow_report(state.runtime().store().as_ref(), since, until)
        .await
        .map_err(|e| ApiError::unavailable(e.to_string()))?;
    Ok(Json(report).into_response())
}
