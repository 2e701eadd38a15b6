//! The sessions pages: recent session ids from the audit log, and one
//! session as a timeline of its records with its labels and limit use.
//! Inputs and outputs are never shown (the session state keeps them
//! unredacted); the audit records' fields shown are redacted ones.

use super::{page, ConsoleError, Signed};
use crate::auth::Role;
use crate::AppState;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use maud::html;
use rein_store::AuditQuery;
use serde::Deserialize;

/// How many of the newest audit records are read for the recent sessions.
const RECENT_SCAN: u64 = 2000;
/// Most recent session ids listed.
const RECENT_SESSIONS: usize = 50;
/// Most records of one session shown.
const TIMELINE_LIMIT: u64 = 500;
/// Longest session id taken from the form.
const MAX_ID_LEN: usize = 512;

/// The sessions pages' routes.
pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/sessions", get(list))
        .route("/sessions/{id}", get(show))
}

#[derive(Deserialize)]
struct Find {
    id: Option<String>,
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

async fn list(
    State(state): State<AppState>,
    signed: Signed,
    find: Result<Query<Find>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ConsoleError> {
    signed.require(Role::Approver)?;
    if let Ok(Query(Find { id: Some(id) })) = find {
        let id = id.trim();
        if !id.is_empty() {
            if id.len() > MAX_ID_LEN {
                return Err(ConsoleError::bad_request("that session id is too long").to(&signed));
            }
            return Ok(super::see_other(&format!("/console/sessions/{}", segment(id))));
        }
    }
    let store = state.runtime().store();
    let len = store
        .audit_len()
        .await
        .map_err(|e| ConsoleError::unavailable(e.to_string()).to(&signed))?;
    // The newest records only: bounded, whatever the log's size.
    let query = AuditQuery {
        after_seq: Some(len.saturating_sub(RECENT_SCAN)),
        limit: Some(RECENT_SCAN),
        ..AuditQuery::default()
    };
    let records = store
        .query_audit(&query)
        .await
        .map_err(|e| ConsoleError::unavailable(e.to_string()).to(&signed))?;
    let mut recent: Vec<(String, String)> = Vec::new();
    for r in records.iter().rev() {
        let Some(session) = &r.entry.session else { continue };
        if recent.iter().any(|(s, _)| s == session) {
            continue;
        }
        recent.push((session.clone(), r.entry.time.clone()));
        if recent.len() >= RECENT_SESSIONS {
            break;
        }
    }
    let body = html! {
        form.card method="get" action="/console/sessions" {
            label for="session-id" { "Session" }
            input #session-id type="text" name="id" required;
            button type="submit" { "Open" }
        }
        h2 { "Recent sessions" }
        @if recent.is_empty() {
            p { "No sessions in the recent audit records." }
        } @else {
            div.table-wrap {
                table.stack {
                    thead { tr { th scope="col" { "Session" } th scope="col" { "Last record" } } }
                    tbody {
                        @for (id, time) in &recent {
                            tr data-session=(id) {
                                td data-label="Session" { a href={ "/console/sessions/" (segment(id)) } { code { (id) } } }
                                td data-label="Last record" { (time) }
                            }
                        }
                    }
                }
            }
            p.hint { "From the newest " (RECENT_SCAN) " audit records." }
        }
    };
    Ok(page(Some(&signed), "Sessions", body).into_response())
}

async fn show(State(state): State<AppState>, signed: Signed, Path(id): Path<String>) -> Result<Response, ConsoleError> {
    signed.require(Role::Approver)?;
    if id.len() > MAX_ID_LEN {
        return Err(ConsoleError::bad_request("that session id is too long").to(&signed));
    }
    let runtime = state.runtime();
    let query = AuditQuery {
        session: Some(id.clone()),
        limit: Some(TIMELINE_LIMIT),
        ..AuditQuery::default()
    };
    let records = runtime
        .store()
        .query_audit(&query)
        .await
        .map_err(|e| ConsoleError::unavailable(e.to_string()).to(&signed))?;
    let current = runtime
        .session_current(&id)
        .await
        .map_err(|e| ConsoleError::unavailable(e.to_string()).to(&signed))?;
    let limits = runtime
        .limits_current(jiff::Timestamp::now())
        .await
        .map_err(|e| ConsoleError::unavailable(e.to_string()).to(&signed))?;
    // The buckets counted for this session (a limit `per` the session).
    let limits: Vec<_> = limits
        .iter()
        .filter(|b| b.bucket.describe().contains(&id) || b.bucket.id().contains(&id))
        .collect();
    let heading = format!("Session {id}");
    let body = html! {
        h2 { "Timeline" }
        @if records.is_empty() {
            p { "No audit records name this session." }
        } @else {
            ol.timeline {
                @for r in &records {
                    li data-seq=(r.seq) {
                        time datetime=(r.entry.time) { (r.entry.time) }
                        " · " (r.entry.phase) " · "
                        code { (r.entry.action) } " · "
                        span class={ "effect-" (r.entry.effect) } { (r.entry.effect) }
                        @if !r.entry.rules.is_empty() {
                            " · rules: " (r.entry.rules.join(", "))
                        }
                        @if r.entry.phase == "after" {
                            " · outcome: "
                            @if let Some(error) = &r.entry.error { "error: " (error) } @else { "done" }
                        }
                        @if let Some(approval) = &r.entry.approval {
                            " · approval " a href={ "/console/approvals/" (segment(approval)) } { code { (approval) } }
                        }
                    }
                }
            }
            @if records.len() as u64 >= TIMELINE_LIMIT {
                p.hint { "The first " (TIMELINE_LIMIT) " records are shown." }
            }
        }
        h2 { "Labels" }
        @match &current {
            Some(s) if !s.labels.is_empty() => {
                ul { @for l in &s.labels { li { code { (l.label) } " (" (l.time.to_string()) ")" } } }
            }
            _ => { p { "No labels." } }
        }
        h2 { "State" }
        @match &current {
            Some(s) => {
                dl.facts {
                    dt { "Calls kept" } dd { (s.calls.len()) }
                    dt { "Last seen" } dd { (s.last_seen.map(|t| t.to_string()).unwrap_or_else(|| "-".into())) }
                }
            }
            None => { p { "The session holds no state now (never seen, or idle past its keep time)." } }
        }
        h2 { "Limit use" }
        @if limits.is_empty() {
            p { "No limit bucket is counted for this session." }
        } @else {
            div.table-wrap {
                table.stack {
                    thead { tr { th scope="col" { "Rule" } th scope="col" { "Bucket" } th scope="col" { "Used" } th scope="col" { "Max" } th scope="col" { "Window" } } }
                    tbody {
                        @for b in &limits {
                            tr {
                                td data-label="Rule" { code { (b.rule) } }
                                td data-label="Bucket" { (b.bucket.describe()) }
                                td data-label="Used" { (b.used.normalize().to_string()) }
                                td data-label="Max" { (b.max.normalize().to_string()) }
                                td data-label="Window" { (b.window.as_secs()) " s" }
                            }
                        }
                    }
                }
            }
        }
    };
    Ok(page(Some(&signed), &heading, body).into_response())
}

#[cfg(test)]
mod tests {
    use super::segment;

    #[test]
    fn segments_are_encoded() {
        assert_eq!(segment("agent-1/sess 1"), "agent-1%2Fsess%201");
        assert_eq!(segment("a.b_c~d"), "a.b_c~d");
        assert_eq!(segment("é"), "%C3%A9");
    }
}
