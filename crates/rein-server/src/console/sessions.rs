//! The sessions pages: recent session ids from the audit log, and one
//! session as a timeline of its records with its labels and limit use.
//! Inputs and outputs are never shown (the session state keeps them
//! unredacted); the audit records' fields shown are redacted ones.

use super::{page, segment, ConsoleError, Signed};
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
    let mut recent: Vec<(String, String, String)> = Vec::new();
    for r in records.iter().rev() {
        let Some(session) = &r.entry.session else { continue };
        if recent.iter().any(|(s, _, _)| s == session) {
            continue;
        }
        let client = r.entry.client.clone().unwrap_or_default();
        recent.push((session.clone(), client, r.entry.time.clone()));
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
                    thead { tr { th scope="col" { "Session" } th scope="col" { "Client" } th scope="col" { "Last record" } } }
                    tbody {
                        @for (id, client, time) in &recent {
                            tr data-session=(id) {
                                td data-label="Session" { a href={ "/console/sessions/" (segment(id)) } { code { (id) } } }
                                td data-label="Client" { code { (client) } }
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

/// The audit records of session `id` (as the agent named it, or as the
/// state keeps it: `client/session`) and the scoped ids the state keeps
/// it under, one per client that used it.
async fn session_records(
    state: &AppState,
    id: &str,
) -> Result<(Vec<rein_store::AuditRecord>, Vec<String>), rein_store::StoreError> {
    let store = state.runtime().store();
    let query = |session: &str| AuditQuery {
        session: Some(session.to_string()),
        limit: Some(TIMELINE_LIMIT),
        ..AuditQuery::default()
    };
    let mut records = store.query_audit(&query(id)).await?;
    if records.is_empty() {
        // A scoped id (`client/session`, the client's `%` and `/` escaped):
        // the audit log keeps the session as the agent named it.
        if let Some((client, session)) = id.split_once('/') {
            let client = client.replace("%2F", "/").replace("%25", "%");
            records = store.query_audit(&query(session)).await?;
            records.retain(|r| r.entry.client.as_deref() == Some(client.as_str()));
            return Ok((records, vec![id.to_string()]));
        }
    }
    let mut scoped: Vec<String> = Vec::new();
    for r in &records {
        let s = rein_runtime::scoped_session(r.entry.client.as_deref(), id);
        if !scoped.contains(&s) {
            scoped.push(s);
        }
    }
    if scoped.is_empty() {
        scoped.push(id.to_string());
    }
    Ok((records, scoped))
}

/// Whether limit bucket `bucket` counts for one of the `scoped` session
/// ids: one of its `per` keys is `session.id` and its value is that id
/// exactly (session `a` is not `ab`).
fn counts_for_session(bucket: &rein_engine::state::BucketKey, scoped: &[String]) -> bool {
    bucket.per.iter().any(|(expr, value)| {
        let expr: String = expr.chars().filter(|c| !c.is_whitespace()).collect();
        expr == "session.id" && serde_json::from_str::<String>(value).is_ok_and(|v| scoped.contains(&v))
    })
}

async fn show(State(state): State<AppState>, signed: Signed, Path(id): Path<String>) -> Result<Response, ConsoleError> {
    signed.require(Role::Approver)?;
    if id.len() > MAX_ID_LEN {
        return Err(ConsoleError::bad_request("that session id is too long").to(&signed));
    }
    let runtime = state.runtime();
    let (records, scoped) = session_records(&state, &id)
        .await
        .map_err(|e| ConsoleError::unavailable(e.to_string()).to(&signed))?;
    let mut current = Vec::new();
    for s in scoped.iter().take(20) {
        let snapshot = runtime
            .session_current(s)
            .await
            .map_err(|e| ConsoleError::unavailable(e.to_string()).to(&signed))?;
        current.push((s.clone(), snapshot));
    }
    let limits = runtime
        .limits_current(jiff::Timestamp::now())
        .await
        .map_err(|e| ConsoleError::unavailable(e.to_string()).to(&signed))?;
    // The buckets counted for this session (a limit `per` the session).
    let limits: Vec<_> = limits
        .iter()
        .filter(|b| counts_for_session(&b.bucket, &scoped))
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
                        @if let Some(client) = &r.entry.client {
                            " · client " code { (client) }
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
        h2 { "Labels and state" }
        @for (scoped_id, snapshot) in &current {
            h3 { code { (scoped_id) } }
            @match snapshot {
                Some(s) => {
                    dl.facts {
                        dt { "Labels" }
                        dd {
                            @if s.labels.is_empty() { "none" }
                            @for (i, l) in s.labels.iter().enumerate() {
                                @if i > 0 { ", " }
                                code { (l.label) }
                            }
                        }
                        dt { "Calls kept" } dd { (s.calls.len()) }
                        dt { "Last seen" } dd { (s.last_seen.map(|t| t.to_string()).unwrap_or_else(|| "-".into())) }
                    }
                }
                None => { p { "No state is kept for it now (no stateful rule read it, or it was idle past its keep time)." } }
            }
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
    use super::counts_for_session;
    use rein_engine::state::BucketKey;

    fn bucket(per: &[(&str, &str)]) -> BucketKey {
        BucketKey {
            rule: "web_rate".into(),
            per: per.iter().map(|(e, v)| ((*e).to_string(), (*v).to_string())).collect(),
        }
    }

    #[test]
    fn a_bucket_counts_for_its_session_only() {
        let scoped = vec!["agent-1/a".to_string()];
        assert!(counts_for_session(&bucket(&[("session.id", "\"agent-1/a\"")]), &scoped));
        assert!(counts_for_session(
            &bucket(&[("actor.id", "\"bot\""), ("session.id", "\"agent-1/a\"")]),
            &scoped
        ));
        for other in ["\"agent-1/ab\"", "\"agent-1/abc\"", "\"x-agent-1/a\"", "\"agent-1\""] {
            assert!(
                !counts_for_session(&bucket(&[("session.id", other)]), &scoped),
                "{other}"
            );
        }
        // The id under another key is not this session's bucket.
        assert!(!counts_for_session(
            &bucket(&[("input.note", "\"agent-1/a\"")]),
            &scoped
        ));
        assert!(!counts_for_session(&bucket(&[]), &scoped));
    }
}
