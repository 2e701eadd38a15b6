//! The audit filters shared by `GET /v1/audit`, `GET /v1/audit/export`
//! and the console's audit pages, and the export itself: the filtered set
//! as JSON Lines, streamed page by page.
//!
//! The export reads the log in sequence order (the chain's order, so an
//! exported set of every record can be verified as it arrives) in pages of
//! [`EXPORT_PAGE`] records, handing each page's lines to the response body
//! through a channel of [`EXPORT_PAGES_AHEAD`] pages: memory stays bounded
//! whatever the log's size, and a slow client slows the reads instead of
//! piling them up. It covers the records present when it started (it stops
//! at the newest one then), so an export of a busy log ends. A store error
//! after the first page aborts the response (the body ends without its
//! final chunk, which a client sees as a failed download, never as a
//! complete but shorter file).

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use hyper::body::Frame;
use rein_engine::Effect;
use rein_store::chain::parse_time;
use rein_store::{AuditQuery, Store};
use serde::Deserialize;

use crate::error::ApiError;

/// Records read per page of an export. A record may be as large as a
/// request body (`--max-body`, 1 MiB by default): the pages in flight
/// (this many records, times the pages read ahead plus one) bound the
/// export's memory.
pub(crate) const EXPORT_PAGE: u64 = 100;
/// Pages read ahead of what the client has taken.
const EXPORT_PAGES_AHEAD: usize = 2;

/// The filters of the audit routes, as query parameters. Every one given
/// must hold.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AuditFilters {
    pub since: Option<String>,
    pub until: Option<String>,
    pub actor: Option<String>,
    pub action: Option<String>,
    pub effect: Option<String>,
    pub rule: Option<String>,
    pub session: Option<String>,
    pub decision_id: Option<String>,
    /// A trace id, or a whole `traceparent` (its trace id is used).
    pub trace: Option<String>,
    pub after_seq: Option<u64>,
    pub before_seq: Option<u64>,
}

impl AuditFilters {
    /// The store's query for these filters (oldest first, no limit yet).
    /// An empty text is no filter (an HTML form sends every input); others
    /// are matched exactly, as given. Refuses
    /// a time that is not RFC 3339 and an unknown effect, saying why.
    pub(crate) fn to_query(&self) -> Result<AuditQuery, ApiError> {
        let given = |v: &Option<String>| v.as_ref().filter(|s| !s.is_empty()).cloned();
        let time = |name: &str, v: &Option<String>| {
            given(v)
                .map(|s| {
                    parse_time(&s).map_err(|_| {
                        ApiError::bad_request(
                            "invalid_query",
                            format!("`{name}` must be an RFC 3339 time, like 2026-01-31T12:00:00Z; got `{s}`"),
                        )
                    })
                })
                .transpose()
        };
        let effect = given(&self.effect);
        if let Some(effect) = &effect {
            if Effect::parse(effect).is_none() {
                return Err(ApiError::bad_request(
                    "invalid_query",
                    format!("unknown effect `{effect}`; effects are allow, block, require_approval"),
                ));
            }
        }
        let trace = match given(&self.trace) {
            None => None,
            Some(t) => match rein_runtime::trace::TraceParent::parse(t.as_bytes()) {
                Some(parent) => Some(parent.trace_id().to_string()),
                None if rein_runtime::trace::is_trace_id(&t) => Some(t),
                None => {
                    return Err(ApiError::bad_request(
                        "invalid_query",
                        "`trace` must be a trace id (32 lowercase hex digits, not all zeros) or a version-00 \
                         traceparent",
                    ))
                }
            },
        };
        Ok(AuditQuery {
            since: time("since", &self.since)?,
            until: time("until", &self.until)?,
            actor: given(&self.actor),
            action: given(&self.action),
            effect,
            rule: given(&self.rule),
            session: given(&self.session),
            decision_id: given(&self.decision_id),
            trace,
            after_seq: self.after_seq,
            before_seq: self.before_seq,
            ..AuditQuery::default()
        })
    }
}

/// The records of `query` (its order and limit ignored) as JSON Lines,
/// oldest first, streamed. The first page is read before answering, so a
/// store that fails at once is a 503, not an empty export.
pub(crate) async fn export(store: Arc<dyn Store>, query: AuditQuery) -> Result<Response, ApiError> {
    // The newest record now bounds the export.
    let newest = store
        .audit_len()
        .await
        .map_err(|e| ApiError::unavailable(e.to_string()))?;
    let mut query = AuditQuery {
        descending: false,
        limit: Some(EXPORT_PAGE),
        before_seq: Some(query.before_seq.map_or(newest + 1, |b| b.min(newest + 1))),
        ..query
    };
    let first = store
        .query_audit(&query)
        .await
        .map_err(|e| ApiError::unavailable(e.to_string()))?;
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, ExportError>>(EXPORT_PAGES_AHEAD);
    tokio::spawn(async move {
        let mut page = first;
        loop {
            let full = page.len() as u64 >= EXPORT_PAGE;
            let Some(last) = page.last().map(|r| r.seq) else { break };
            let mut lines = Vec::with_capacity(page.len() * 1024);
            for record in &page {
                // A record always serializes; should it not, the export
                // fails rather than skipping it.
                if let Err(e) = serde_json::to_writer(&mut lines, record) {
                    let _ = tx.send(Err(ExportError(format!("record {}: {e}", record.seq)))).await;
                    return;
                }
                lines.push(b'\n');
            }
            if tx.send(Ok(Bytes::from(lines))).await.is_err() {
                return; // the client went away
            }
            if !full {
                break;
            }
            query.after_seq = Some(last);
            page = match store.query_audit(&query).await {
                Ok(page) => page,
                Err(e) => {
                    tracing::error!(error = %e, after_seq = last, "the audit export failed");
                    let _ = tx.send(Err(ExportError(e.to_string()))).await;
                    return;
                }
            };
        }
    });
    let mut response = Body::new(ChannelBody { rx }).into_response();
    *response.status_mut() = StatusCode::OK;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/x-ndjson"));
    headers.insert(
        header::CONTENT_DISPOSITION,
        HeaderValue::from_static("attachment; filename=\"rein-audit.jsonl\""),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

/// Why an export stopped before its end.
#[derive(Debug)]
struct ExportError(String);

impl std::fmt::Display for ExportError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the audit export failed: {}", self.0)
    }
}

impl std::error::Error for ExportError {}

/// A response body fed by a channel of chunks; an error ends it abnormally.
struct ChannelBody {
    rx: tokio::sync::mpsc::Receiver<Result<Bytes, ExportError>>,
}

impl hyper::body::Body for ChannelBody {
    type Data = Bytes;
    type Error = ExportError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, ExportError>>> {
        self.rx.poll_recv(cx).map(|chunk| chunk.map(|r| r.map(Frame::data)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_form_fields_are_no_filter() {
        let f = AuditFilters {
            actor: Some(String::new()),
            since: Some(String::new()),
            rule: Some(" r1".into()),
            ..AuditFilters::default()
        };
        let q = f.to_query().unwrap();
        assert_eq!(q.actor, None);
        assert_eq!(q.since, None);
        assert_eq!(q.rule.as_deref(), Some(" r1"));
    }

    #[test]
    fn bad_times_and_effects_are_refused() {
        let bad_time = AuditFilters {
            until: Some("yesterday".into()),
            ..AuditFilters::default()
        };
        assert!(bad_time.to_query().unwrap_err().message().contains("RFC 3339"));
        let bad_effect = AuditFilters {
            effect: Some("maybe".into()),
            ..AuditFilters::default()
        };
        assert!(bad_effect.to_query().unwrap_err().message().contains("unknown effect"));
    }
}
