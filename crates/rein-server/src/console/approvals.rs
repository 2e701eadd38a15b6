//! The approvals inbox: the pending approvals (a page, its rows as a
//! fragment, and a server-sent event stream that says when to fetch them
//! again), one approval's page, and its grant and deny forms. Who may
//! decide, and what they may see, is the runtime's rule
//! ([`rein_runtime::Approver`], [`rein_runtime::Runtime::sealed_request`],
//! [`rein_runtime::Runtime::decide_approval`]), as on the API.

use super::{csrf_input, page, segment, time_left, ConsoleError, Posted, Signed};
use crate::auth::Role;
use crate::routes::approver;
use crate::AppState;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use maud::{html, Markup};
use rein_runtime::RuntimeError;
use rein_store::{ApprovalError, ApprovalRecord, ApprovalState, AuditQuery};
use std::time::Duration;

/// Most pending approvals listed.
const LIST_LIMIT: usize = 100;
/// Most pending approvals read to pick the ones listed (those that expire
/// first). Past it, the page says that more are pending than were read.
const SCAN_LIMIT: u64 = 1000;
/// Longest comment kept with a decision, in characters.
const MAX_COMMENT_CHARS: usize = 2000;
/// How often an event stream looks at the store (other replicas' approvals).
const POLL_EVERY: Duration = Duration::from_secs(1);
/// How often an idle event stream sends a comment, so that proxies keep it.
const KEEP_ALIVE_EVERY: Duration = Duration::from_secs(15);

/// The approvals pages' routes.
pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/approvals", get(list))
        .route("/approvals/rows", get(rows_fragment))
        .route("/approvals/{id}", get(show))
        .route("/approvals/{id}/grant", post(grant))
        .route("/approvals/{id}/deny", post(deny))
        .route("/events", get(events))
}

/// The pending approvals shown in the inbox: those that expire first (a
/// flood of new ones cannot push an older one out of sight), each with
/// the reasons of the decision that opened it.
struct Pending {
    shown: Vec<(ApprovalRecord, Vec<String>)>,
    /// How many are pending, as far as read (at most [`SCAN_LIMIT`]).
    total: usize,
    /// Whether more than [`SCAN_LIMIT`] are pending.
    more: bool,
}

async fn pending(state: &AppState) -> Result<Pending, ConsoleError> {
    // The store lists the newest first: read up to SCAN_LIMIT + 1 (to know
    // whether there are more) and show the soonest-expiring.
    let mut approvals = state
        .runtime()
        .approvals(Some(ApprovalState::Pending), SCAN_LIMIT + 1)
        .await
        .map_err(|e| ConsoleError::unavailable(e.to_string()))?;
    let more = approvals.len() as u64 > SCAN_LIMIT;
    approvals.truncate(usize::try_from(SCAN_LIMIT).unwrap_or(usize::MAX));
    let total = approvals.len();
    // RFC 3339 UTC times of one format sort as text; ties: oldest first.
    approvals.sort_by(|a, b| a.expires_at.cmp(&b.expires_at).then(a.created_at.cmp(&b.created_at)));
    approvals.truncate(LIST_LIMIT);
    let mut shown = Vec::with_capacity(approvals.len());
    for a in approvals {
        let reasons = reasons(state, &a).await?;
        shown.push((a, reasons));
    }
    Ok(Pending { shown, total, more })
}

/// The reasons of the decision that opened `approval`, from its audit
/// record (scrubbed of sensitive values when it was written). A decision's
/// reasons never change: they are kept in memory once read, so that an
/// inbox refresh reads the audit log only for new approvals.
async fn reasons(state: &AppState, approval: &ApprovalRecord) -> Result<Vec<String>, ConsoleError> {
    if let Some(found) = state.console().cached_reasons(&approval.decision_id) {
        return Ok(found);
    }
    let query = AuditQuery {
        decision_id: Some(approval.decision_id.clone()),
        limit: Some(4),
        ..AuditQuery::default()
    };
    let records = state
        .runtime()
        .store()
        .query_audit(&query)
        .await
        .map_err(|e| ConsoleError::unavailable(e.to_string()))?;
    match records.into_iter().find(|r| r.entry.phase == "before") {
        Some(r) => {
            state.console().keep_reasons(&approval.decision_id, &r.entry.reasons);
            Ok(r.entry.reasons)
        }
        None => Ok(Vec::new()),
    }
}

/// Who asked: the actor id, the client, the chain.
fn requester(a: &ApprovalRecord) -> Markup {
    html! {
        @if let Some(by) = &a.requested_by { code { (by) } } @else { "(no actor id)" }
        @if let Some(via) = &a.requested_via { " via " code { (via) } }
        @if !a.requested_chain.is_empty() {
            " · chain " (a.requested_chain.join(" → "))
        }
    }
}

/// Whether `who` may decide `a`: "yes", or why not.
fn may_decide(who: &rein_runtime::Approver<'_>, a: &ApprovalRecord) -> String {
    if who.asked_for(a) {
        "no: you asked for it".to_string()
    } else if let Some(role) = who.missing_role(a) {
        format!("no: needs role {role}")
    } else {
        "yes".to_string()
    }
}

fn rows(pending: &Pending, signed: &Signed) -> Markup {
    let who = approver(&signed.identity);
    html! {
        @if pending.shown.is_empty() {
            tr { td colspan="7" { "No pending approvals" } }
        }
        @for (a, reasons) in &pending.shown {
            tr data-approval-id=(a.id) {
                td data-label="Action" { code { (a.action) } }
                td data-label="Requested by" { (requester(a)) }
                td data-label="Rules" { (a.rules.join(", ")) }
                td data-label="Reasons" { (reasons.join("; ")) }
                td data-label="Time left" { (time_left(&a.expires_at)) }
                td data-label="You may decide" { (may_decide(&who, a)) }
                td { a href={ "/console/approvals/" (segment(&a.id)) } { "Open" } }
            }
        }
        @if pending.more || pending.total > pending.shown.len() {
            tr.more #rows-more {
                td colspan="7" role="status" {
                    (pending.shown.len()) " shown of "
                    @if pending.more { "more than " (pending.total) } @else { (pending.total) }
                    " pending approvals: those that expire first. Decide these to see the others."
                }
            }
        }
    }
}

async fn list(State(state): State<AppState>, signed: Signed) -> Result<Response, ConsoleError> {
    signed.require(Role::Approver)?;
    let pending = pending(&state).await.map_err(|e| e.to(&signed))?;
    let body = html! {
        p.hint { "New approvals appear here without a reload. " span #rows-status aria-live="polite" {} }
        div.table-wrap {
            table.stack {
                caption.muted { "Pending approvals, those that expire first at the top" }
                thead {
                    tr {
                        th scope="col" { "Action" }
                        th scope="col" { "Requested by" }
                        th scope="col" { "Rules" }
                        th scope="col" { "Reasons" }
                        th scope="col" { "Time left" }
                        th scope="col" { "You may decide" }
                        th scope="col" { span.muted { "Link" } }
                    }
                }
                tbody #approval-rows data-rows="/console/approvals/rows" { (rows(&pending, &signed)) }
            }
        }
    };
    Ok(page(Some(&signed), "Approvals", body).into_response())
}

/// The list's rows alone, which `console.js` fetches on each event.
async fn rows_fragment(State(state): State<AppState>, signed: Signed) -> Result<Response, ConsoleError> {
    signed.require(Role::Approver)?;
    let pending = pending(&state).await.map_err(|e| e.to(&signed))?;
    Ok(rows(&pending, &signed).into_response())
}

async fn show(State(state): State<AppState>, signed: Signed, Path(id): Path<String>) -> Result<Response, ConsoleError> {
    signed.require(Role::Approver)?;
    let fail = |e: ConsoleError| e.to(&signed);
    let approval = match state.runtime().store().get_approval(&id).await {
        Ok(Some(a)) => a,
        Ok(None) => return Err(fail(ConsoleError::not_found(format!("no approval `{id}`")))),
        Err(e) => return Err(fail(ConsoleError::unavailable(e.to_string()))),
    };
    let who = approver(&signed.identity);
    // The full request only for an approver who may decide it, while it
    // is pending (the runtime's rule, as `GET /v1/approvals/{id}`).
    let request = state
        .runtime()
        .sealed_request(&approval, &who)
        .map_err(|e| fail(runtime_error(e)))?;
    let reasons = reasons(&state, &approval).await.map_err(fail)?;
    let open = approval.state == ApprovalState::Pending && time_left(&approval.expires_at) != "expired";
    let why_not = if who.asked_for(&approval) {
        Some("you asked for this approval".to_string())
    } else {
        who.missing_role(&approval).map(|role| format!("needs role {role}"))
    };
    let pretty = |v: &serde_json::Value| serde_json::to_string_pretty(v).unwrap_or_default();
    let state_text = if approval.state == ApprovalState::Pending && !open {
        "pending (expired)".to_string()
    } else {
        approval.state.as_str().to_string()
    };
    let body = html! {
        dl.facts {
            dt { "Id" } dd { code { (approval.id) } }
            dt { "State" } dd #approval-state { (state_text) }
            dt { "Action" } dd { code { (approval.action) } }
            dt { "Requested by" } dd { (requester(&approval)) }
            dt { "Rules" } dd { (approval.rules.join(", ")) }
            dt { "Approver roles" } dd { (approval.roles.join(", ")) }
            dt { "Reasons" } dd { (reasons.join("; ")) }
            dt { "Created" } dd { (approval.created_at) }
            dt { "Expires" } dd { (approval.expires_at) " (" (time_left(&approval.expires_at)) ")" }
            @if let Some(by) = &approval.decided_by {
                dt { "Decided by" } dd { code { (by) } }
            }
            @if let Some(at) = &approval.decided_at {
                dt { "Decided" } dd { (at) }
            }
            @if let Some(comment) = &approval.comment {
                dt { "Comment" } dd #approval-comment { (comment) }
            }
        }
        h2 { "Input (redacted summary)" }
        pre { (pretty(&approval.summary)) }
        @if let Some(request) = &request {
            h2 { "Full request" }
            p.hint { "With its sensitive values: shown to approvers who may decide it, while it is pending." }
            pre { (pretty(request)) }
        }
        @if open {
            @if let Some(why) = &why_not {
                p.error role="note" { "You may not decide this approval: " (why) "." }
            } @else {
                div.decide {
                    form.card method="post" action={ "/console/approvals/" (segment(&approval.id)) "/grant" } {
                        (csrf_input(&signed))
                        label for="grant-comment" { "Comment" }
                        textarea #grant-comment name="comment" maxlength=(MAX_COMMENT_CHARS) {}
                        button type="submit" { "Grant" }
                    }
                    form.card method="post" action={ "/console/approvals/" (segment(&approval.id)) "/deny" } {
                        (csrf_input(&signed))
                        label for="deny-comment" { "Comment" }
                        textarea #deny-comment name="comment" maxlength=(MAX_COMMENT_CHARS) {}
                        button.deny type="submit" { "Deny" }
                    }
                }
            }
        }
        p { a href="/console/approvals" { "Back to the approvals" } }
    };
    Ok(page(Some(&signed), "Approval", body).into_response())
}

async fn grant(state: State<AppState>, id: Path<String>, posted: Posted) -> Result<Response, ConsoleError> {
    decide(state, id, posted, true).await
}

async fn deny(state: State<AppState>, id: Path<String>, posted: Posted) -> Result<Response, ConsoleError> {
    decide(state, id, posted, false).await
}

/// Grants or denies through the runtime, as `POST /v1/approvals/{id}/grant`
/// does: its checks (own request, roles, state, expiry) are the API's.
async fn decide(
    State(state): State<AppState>,
    Path(id): Path<String>,
    posted: Posted,
    grant: bool,
) -> Result<Response, ConsoleError> {
    let signed = &posted.signed;
    signed.require(Role::Approver)?;
    let comment = posted.form.get("comment").map(str::trim).filter(|c| !c.is_empty());
    if comment.is_some_and(|c| c.chars().count() > MAX_COMMENT_CHARS) {
        return Err(
            ConsoleError::bad_request(format!("the comment is longer than {MAX_COMMENT_CHARS} characters")).to(signed),
        );
    }
    let record = state
        .runtime()
        .decide_approval(&id, grant, approver(&signed.identity), comment)
        .await
        .map_err(|e| runtime_error(e).to(signed))?;
    tracing::info!(approval = %id, by = %signed.identity.name, state = record.state.as_str(), "approval decided in the console");
    Ok(super::see_other(&format!("/console/approvals/{}", segment(&id))))
}

fn runtime_error(e: RuntimeError) -> ConsoleError {
    let status = match &e {
        RuntimeError::NotAllowed { .. } => StatusCode::FORBIDDEN,
        RuntimeError::Store(_) | RuntimeError::KeyMismatch { .. } => StatusCode::SERVICE_UNAVAILABLE,
        RuntimeError::Approval(a) => match a {
            ApprovalError::NotFound(_) => StatusCode::NOT_FOUND,
            ApprovalError::OtherClient(_) | ApprovalError::SelfApproval(_) => StatusCode::FORBIDDEN,
            _ => StatusCode::CONFLICT,
        },
    };
    let heading = match status {
        StatusCode::FORBIDDEN => "Not allowed",
        StatusCode::NOT_FOUND => "Not found",
        StatusCode::CONFLICT => "Cannot decide",
        _ => "Unavailable",
    };
    ConsoleError::new(status, heading, e.to_string())
}

// ---- server-sent events --------------------------------------------------

/// What the pending set looks like, to tell whether it changed: the ids
/// and states of the open approvals. `None` when the store cannot say.
async fn fingerprint(state: &AppState) -> Option<Vec<String>> {
    let now = rein_store::chain::format_time(jiff::Timestamp::now());
    state
        .runtime()
        .store()
        .list_open_approvals(&now, LIST_LIMIT as u64)
        .await
        .ok()
        .map(|list| list.into_iter().map(|a| a.id).collect())
}

const EVENT: &str = "event: approvals\ndata: changed\n\n";
const KEEP_ALIVE: &str = ": keep-alive\n\n";

/// One open event stream.
struct Feed {
    state: AppState,
    last: Option<Vec<String>>,
    first: bool,
    poll: tokio::time::Interval,
    keep_alive: tokio::time::Interval,
    /// This process's approval changes, as the runtime makes them (other
    /// replicas' are found by the poll).
    changes: tokio::sync::broadcast::Receiver<rein_runtime::ApprovalEvent>,
    /// Whether `changes` still has a sender (the runtime lives).
    changes_open: bool,
    /// Changes when the server stops.
    closing: tokio::sync::watch::Receiver<bool>,
    /// When the sign-in ends (the session's or a JWT's expiry): the stream ends.
    expires_at: Option<jiff::Timestamp>,
    /// Held until the stream ends: the cap of open streams.
    _permit: super::StreamSlot,
}

impl Feed {
    async fn next(mut self) -> Option<(Result<&'static str, std::convert::Infallible>, Feed)> {
        if *self.closing.borrow() {
            return None;
        }
        if self.first {
            self.first = false;
            self.last = fingerprint(&self.state).await;
            return Some((Ok(EVENT), self));
        }
        loop {
            tokio::select! {
                _ = self.closing.changed() => return None,
                change = self.changes.recv(), if self.changes_open => {
                    use tokio::sync::broadcast::error::RecvError;
                    match change {
                        // Lagged: changes were missed; the rows are read anew anyway.
                        Ok(_) | Err(RecvError::Lagged(_)) => {
                            self.last = fingerprint(&self.state).await;
                            return Some((Ok(EVENT), self));
                        }
                        Err(RecvError::Closed) => self.changes_open = false,
                    }
                }
                _ = self.poll.tick() => {
                    if self.expires_at.is_some_and(|t| t <= jiff::Timestamp::now()) {
                        return None;
                    }
                    let now = fingerprint(&self.state).await;
                    if now.is_some() && now != self.last {
                        self.last = now;
                        return Some((Ok(EVENT), self));
                    }
                }
                _ = self.keep_alive.tick() => return Some((Ok(KEEP_ALIVE), self)),
            }
        }
    }
}

/// `text/event-stream`: `event: approvals` whenever the pending set may
/// have changed (and once at the start): at once on this runtime's
/// approval events, and within a second of another replica's change (a
/// poll of the store); a comment every 15 s. At most
/// [`super::MAX_STREAMS_PER_NAME`] per token name and
/// [`super::MAX_EVENT_STREAMS`] in all; past it, 503.
async fn events(State(state): State<AppState>, signed: Signed) -> Result<Response, ConsoleError> {
    signed.require(Role::Approver)?;
    let permit = state
        .console()
        .stream_slot(&signed.identity.name)
        .map_err(|why| ConsoleError::unavailable(why).to(&signed))?;
    let start = tokio::time::Instant::now();
    let mut poll = tokio::time::interval_at(start + POLL_EVERY, POLL_EVERY);
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut keep_alive = tokio::time::interval_at(start + KEEP_ALIVE_EVERY, KEEP_ALIVE_EVERY);
    keep_alive.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let closing = state.console().closing();
    let changes = state.runtime().approval_events();
    let feed = Feed {
        changes,
        changes_open: true,
        closing,
        expires_at: signed.expires_at,
        state,
        last: None,
        first: true,
        poll,
        keep_alive,
        _permit: permit,
    };
    let stream = futures_util::stream::unfold(feed, Feed::next);
    Ok((
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        Body::from_stream(stream),
    )
        .into_response())
}
