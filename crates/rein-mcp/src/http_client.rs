//! Streamable HTTP servers behind the gateway (MCP-spec 2025-11-25
//! `basic/transports`, and the stateless 2026-07-28 revision).
//!
//! Each message to the server is its own POST; the answer is JSON (one
//! message) or an SSE stream (messages until the response). The session id
//! the server gives in the `initialize` response is sent on every later
//! request, with the protocol version it answered; after
//! `notifications/initialized` one GET stream carries what the server sends
//! on its own. Plain `http://` only: TLS upstreams are not supported yet.

use crate::jsonrpc::{Id, Kind, Message};
use crate::stdio::quote;
use crate::upstream::{Limits, Link, UpstreamError, UpstreamEvent, UpstreamSpec};
use bytes::Bytes;
use futures_util::StreamExt;
use reqwest::header::{HeaderMap, HeaderValue, ACCEPT, CONTENT_TYPE};
use reqwest::StatusCode;
use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio::task::{AbortHandle, JoinSet};

/// Messages queued each way between the link and the session.
const CHANNEL_DEPTH: usize = 64;
/// How long the `DELETE` that ends the session may take when the link is
/// dropped.
const DELETE_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a response stream is still read after it carried the response
/// (the server should end it there; this lets its end be read so the
/// connection is kept for the next request).
const AFTER_ANSWER: Duration = Duration::from_secs(2);
/// The `Accept` of every POST (both, as the transport requires).
const ACCEPT_BOTH: &str = "application/json, text/event-stream";
/// The first revision whose requests carry `Mcp-Method` and `Mcp-Name`.
const STATELESS_ERA: &str = "2026-07-28";

/// Opens a link to a Streamable HTTP server. Nothing is sent until the
/// first message; an unreachable server shows as
/// [`UpstreamEvent::RequestFailed`] for each request.
///
/// Events: the messages of each response in the order of that response
/// (responses to different requests interleave as they come);
/// `RequestFailed` for a request whose POST failed (connection, HTTP
/// status, a stream that ended without the response), unless the error
/// body was itself the JSON-RPC response to it, which is passed on as a
/// message; a `Fault` for a message over the size bound or not JSON-RPC;
/// `Closed` when the server ended the session (HTTP 404 to a request that
/// carried it). Until the `initialize` response is in, later messages wait
/// (the session id and protocol version they must carry come with it).
pub async fn connect(spec: &UpstreamSpec, limits: &Limits) -> Result<Link, UpstreamError> {
    let UpstreamSpec::Http { url } = spec else {
        return Err(UpstreamError::Url {
            url: spec.describe(),
            reason: "not an HTTP server".into(),
        });
    };
    let endpoint = check_url(url)?;
    let client = reqwest::Client::builder()
        // The upstream is named by its URL: a proxy from the environment
        // would put a third party between the gateway and it, in clear.
        .no_proxy()
        // A redirect would send the message (307/308: with its body) to
        // another endpoint than the one configured; it is an error instead.
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(limits.startup_timeout)
        .build()
        .map_err(|e| UpstreamError::Url {
            url: url.clone(),
            reason: e.to_string(),
        })?;
    let (to_server, from_link) = mpsc::channel(CHANNEL_DEPTH);
    let (events, events_rx) = mpsc::channel(CHANNEL_DEPTH);
    let shared = Arc::new(Shared {
        client,
        url: shown_url(&endpoint),
        endpoint,
        limits: limits.clone(),
        session: Mutex::new(None),
        version: Mutex::new(None),
        events,
    });
    tokio::spawn(drive(shared, from_link));
    Ok(Link {
        tx: to_server,
        rx: events_rx,
    })
}

/// Checks that the gateway can reach `url` (plain `http://`, no
/// credentials), as it does before each connection; the gateway also checks
/// every server's URL at start, so a pinned server with a URL it cannot use
/// stops the start instead of failing each call.
pub fn check_url(url: &str) -> Result<reqwest::Url, UpstreamError> {
    let refuse = |reason: &str| UpstreamError::Url {
        url: url.to_string(),
        reason: reason.to_string(),
    };
    let parsed = reqwest::Url::parse(url).map_err(|e| refuse(&e.to_string()))?;
    match parsed.scheme() {
        "http" => {}
        "https" => {
            return Err(refuse(
                "TLS upstreams are not supported yet: use an http:// URL (a local server, or a TLS-terminating proxy on loopback)",
            ))
        }
        other => return Err(refuse(&format!("unsupported scheme `{other}`: only http:// URLs are supported"))),
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(refuse("the URL names no host"));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(refuse(
            "credentials in the URL are not supported (they would travel in clear)",
        ));
    }
    Ok(parsed)
}

/// The endpoint as messages name it: without its query and fragment, which
/// may hold a token, since reasons reach the client, the log and the audit.
fn shown_url(endpoint: &reqwest::Url) -> String {
    let mut shown = endpoint.clone();
    shown.set_query(None);
    shown.set_fragment(None);
    shown.to_string()
}

/// What the link's tasks share.
struct Shared {
    client: reqwest::Client,
    endpoint: reqwest::Url,
    /// The endpoint as messages name it (see [`shown_url`]).
    url: String,
    limits: Limits,
    /// `Mcp-Session-Id` from the `initialize` response.
    session: Mutex<Option<HeaderValue>>,
    /// The protocol version the server answered to `initialize`.
    version: Mutex<Option<HeaderValue>>,
    events: mpsc::Sender<UpstreamEvent>,
}

impl Shared {
    fn session(&self) -> Option<HeaderValue> {
        self.session.lock().map(|s| s.clone()).unwrap_or(None)
    }

    fn version(&self) -> Option<HeaderValue> {
        self.version.lock().map(|v| v.clone()).unwrap_or(None)
    }

    async fn emit(&self, event: UpstreamEvent) {
        let _ = self.events.send(event).await;
    }

    async fn fail(&self, id: &Id, reason: String) {
        self.emit(UpstreamEvent::RequestFailed { id: id.clone(), reason }).await;
    }

    /// The headers of a POST carrying `message`.
    fn post_headers(&self, message: &Message, initialize: bool) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(ACCEPT, HeaderValue::from_static(ACCEPT_BOTH));
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if initialize {
            // A new session: no id, no version yet.
            return headers;
        }
        if let Some(session) = self.session() {
            headers.insert("mcp-session-id", session);
        }
        let stateless = message.meta_protocol_version().filter(|v| *v >= STATELESS_ERA);
        match stateless {
            Some(version) => {
                // The header must equal the `_meta` version (`-32020`
                // otherwise); one that cannot be a header is left out and
                // the server refuses the request.
                if let Some(value) = plain_header_value(version) {
                    headers.insert("mcp-protocol-version", value);
                }
                if let Some(method) = message.method().and_then(plain_header_value) {
                    headers.insert("mcp-method", method);
                }
                let name = match message.method() {
                    Some("tools/call" | "prompts/get") => message.params().get("name"),
                    Some("resources/read") => message.params().get("uri"),
                    _ => None,
                };
                if let Some(name) = name.and_then(|n| n.as_str()) {
                    headers.insert("mcp-name", encode_name(name));
                }
            }
            None => {
                if let Some(version) = self.version() {
                    headers.insert("mcp-protocol-version", version);
                }
            }
        }
        headers
    }

    /// Headers of the GET stream and the DELETE.
    fn session_headers(&self) -> HeaderMap {
        let mut headers = HeaderMap::new();
        if let Some(session) = self.session() {
            headers.insert("mcp-session-id", session);
        }
        if let Some(version) = self.version() {
            headers.insert("mcp-protocol-version", version);
        }
        headers
    }
}

/// A header value as is when it is printable ASCII without surrounding
/// whitespace; `None` otherwise.
fn plain_header_value(text: &str) -> Option<HeaderValue> {
    let plain = !text.is_empty()
        && text.bytes().all(|b| (0x20..0x7f).contains(&b) || b == b'\t')
        && !text.starts_with([' ', '\t'])
        && !text.ends_with([' ', '\t']);
    if plain {
        HeaderValue::from_str(text).ok()
    } else {
        None
    }
}

/// `Mcp-Name`: the name as is when it is a plain header value, else the
/// spec's Base64 sentinel form (also for a plain name that looks like one).
fn encode_name(name: &str) -> HeaderValue {
    let sentinel_like = name.starts_with("=?base64?") && name.ends_with("?=");
    match plain_header_value(name) {
        Some(value) if !sentinel_like => value,
        _ => {
            use base64::Engine as _;
            let encoded = base64::engine::general_purpose::STANDARD.encode(name.as_bytes());
            // Base64 is ASCII: always a valid header value.
            HeaderValue::from_str(&format!("=?base64?{encoded}?=")).unwrap_or(HeaderValue::from_static(""))
        }
    }
}

/// Why the link's loop stopped sending.
enum Control {
    /// The server answered 404 to a request that carried the session id:
    /// the session is gone and the link with it.
    SessionGone(String),
}

/// The link's loop: takes each message from the session, POSTs it, and
/// ends the session with a `DELETE` when the link is dropped.
async fn drive(shared: Arc<Shared>, mut messages: mpsc::Receiver<Message>) {
    let mut posts: JoinSet<()> = JoinSet::new();
    // Requests in flight, to close their stream on `notifications/cancelled`
    // (the stateless era's cancellation; harmless before it).
    let mut in_flight: HashMap<Id, AbortHandle> = HashMap::new();
    let mut by_task: HashMap<tokio::task::Id, Id> = HashMap::new();
    let (control_tx, mut control) = mpsc::channel::<Control>(4);
    let mut stream_opened = false;
    let mut closed_reason = None;
    loop {
        let message = tokio::select! {
            // A session found gone stops the link before anything queued
            // is sent into it.
            biased;
            Some(Control::SessionGone(reason)) = control.recv() => {
                closed_reason = Some(reason);
                None
            }
            () = shared.events.closed() => None,
            Some(done) = posts.join_next_with_id(), if !posts.is_empty() => {
                let task = match done {
                    Ok((task, ())) => task,
                    Err(e) => e.id(),
                };
                if let Some(id) = by_task.remove(&task) {
                    // Only its own entry: a later request may reuse the id.
                    if in_flight.get(&id).is_some_and(|handle| handle.id() == task) {
                        in_flight.remove(&id);
                    }
                }
                continue;
            }
            message = messages.recv() => message,
        };
        let Some(message) = message else { break };
        match message.kind.clone() {
            Kind::Request { id, method } if method == "initialize" => {
                // Everything after `initialize` needs what its response
                // brings (session id, version): wait for it.
                let (answered_tx, answered) = oneshot::channel();
                let task = posts.spawn(post_request(
                    shared.clone(),
                    message,
                    control_tx.clone(),
                    Some(answered_tx),
                ));
                by_task.insert(task.id(), id.clone());
                in_flight.insert(id, task);
                tokio::select! {
                    _ = answered => {}
                    () = tokio::time::sleep(shared.limits.startup_timeout) => {}
                    () = shared.events.closed() => break,
                }
            }
            Kind::Request { id, .. } => {
                let task = posts.spawn(post_request(shared.clone(), message, control_tx.clone(), None));
                by_task.insert(task.id(), id.clone());
                in_flight.insert(id, task);
            }
            Kind::Notification { method } => {
                let cancelled = (method == "notifications/cancelled")
                    .then(|| message.params().get("requestId").and_then(Id::from_json))
                    .flatten();
                // Sent in order: the next message goes after this one was
                // accepted (`notifications/initialized` before `tools/list`).
                let accepted = tokio::select! {
                    accepted = post_other(&shared, &message, &control_tx) => accepted,
                    () = shared.events.closed() => break,
                };
                if let Some(handle) = cancelled.and_then(|id| in_flight.remove(&id)) {
                    handle.abort();
                }
                if method == "notifications/initialized" && accepted && !stream_opened {
                    stream_opened = true;
                    posts.spawn(server_stream(shared.clone()));
                }
            }
            Kind::Response { .. } => {
                tokio::select! {
                    _ = post_other(&shared, &message, &control_tx) => {}
                    () = shared.events.closed() => break,
                }
            }
        }
    }
    posts.shutdown().await;
    if let Some(reason) = closed_reason {
        shared.emit(UpstreamEvent::Closed(reason)).await;
        return;
    }
    // The link was dropped: end the session, best effort.
    if shared.session().is_some() {
        let delete = shared
            .client
            .delete(shared.endpoint.clone())
            .headers(shared.session_headers())
            .send();
        let _ = tokio::time::timeout(DELETE_TIMEOUT, delete).await;
    }
}

/// POSTs a request and passes on what comes back, until its response or
/// [`Limits::upstream_timeout`] (by then the session has answered the
/// call itself; the stream is closed, which a stateless-era server takes
/// as cancellation). `subscriptions/listen` has no such bound.
async fn post_request(
    shared: Arc<Shared>,
    message: Message,
    control: mpsc::Sender<Control>,
    initialize: Option<oneshot::Sender<()>>,
) {
    let Some(id) = message.id().cloned() else { return };
    let limit = shared.limits.upstream_timeout;
    // The stateless era's `subscriptions/listen` is answered by a stream
    // meant to stay open (change notifications): not a call to time out.
    let listen = message.method() == Some("subscriptions/listen");
    let mut answered = false;
    let exchange = exchange(&shared, &id, message, &control, initialize, &mut answered);
    let timed_out = if listen {
        exchange.await;
        false
    } else {
        tokio::time::timeout(limit, exchange).await.is_err()
    };
    if timed_out && !answered {
        let url = &shared.url;
        shared
            .fail(
                &id,
                format!("upstream `{url}` did not answer within {} s", limit.as_secs()),
            )
            .await;
    }
}

async fn exchange(
    shared: &Shared,
    id: &Id,
    message: Message,
    control: &mpsc::Sender<Control>,
    mut initialize: Option<oneshot::Sender<()>>,
    answered: &mut bool,
) {
    let headers = shared.post_headers(&message, initialize.is_some());
    let sent_session = headers.contains_key("mcp-session-id");
    let sent = shared
        .client
        .post(shared.endpoint.clone())
        .headers(headers)
        .body(message.bytes.clone())
        .send()
        .await;
    let url = &shared.url;
    let response = match sent {
        Ok(response) => response,
        Err(e) => {
            return shared
                .fail(
                    id,
                    format!("upstream `{url}` could not be reached: {}", error_chain(&e)),
                )
                .await
        }
    };
    let status = response.status();
    if initialize.is_some() && status.is_success() {
        if let Some(session) = response.headers().get("mcp-session-id") {
            if !is_session_id(session) {
                return shared
                    .fail(id, format!("upstream `{url}` sent an invalid Mcp-Session-Id"))
                    .await;
            }
            if let Ok(mut slot) = shared.session.lock() {
                *slot = Some(session.clone());
            }
        }
    }
    let mut reader = ResponseReader {
        shared,
        id,
        answered,
        initialize: &mut initialize,
    };
    if !status.is_success() {
        return reader.http_error(response, sent_session, control).await;
    }
    if status == StatusCode::ACCEPTED {
        return shared
            .fail(
                id,
                format!("upstream `{url}` answered 202 Accepted to a request, without a response"),
            )
            .await;
    }
    match content_type(&response).as_str() {
        "application/json" => reader.json_body(response).await,
        "text/event-stream" => reader.event_stream(response).await,
        other => {
            return shared
                .fail(
                    id,
                    format!("upstream `{url}` answered with content type `{other}`, neither JSON nor an event stream"),
                )
                .await
        }
    }
    if !*reader.answered {
        shared
            .fail(id, format!("upstream `{url}` ended its answer without a response"))
            .await;
    }
}

/// POSTs a notification or a response; `true` when the server accepted it.
/// Bounded by the start-up timeout, as later messages wait for it.
async fn post_other(shared: &Shared, message: &Message, control: &mpsc::Sender<Control>) -> bool {
    let url = &shared.url;
    let headers = shared.post_headers(message, false);
    let sent_session = headers.contains_key("mcp-session-id");
    let post = shared
        .client
        .post(shared.endpoint.clone())
        .headers(headers)
        .body(message.bytes.clone())
        .send();
    let what = message.method().unwrap_or("a response");
    match tokio::time::timeout(shared.limits.startup_timeout, post).await {
        Ok(Ok(response)) if response.status().is_success() => true,
        Ok(Ok(response)) => {
            let status = response.status();
            let body = short_body(response).await;
            tracing::warn!("upstream `{url}` refused {what}: HTTP {status}: {body}");
            if status == StatusCode::NOT_FOUND && sent_session {
                let _ = control
                    .send(Control::SessionGone(format!(
                        "upstream `{url}` ended the session (HTTP 404 to {what})"
                    )))
                    .await;
            }
            false
        }
        Ok(Err(e)) => {
            tracing::warn!("upstream `{url}` could not be reached for {what}: {}", error_chain(&e));
            false
        }
        Err(_) => {
            tracing::warn!("upstream `{url}` did not accept {what} in time");
            false
        }
    }
}

/// The GET stream: what the server sends on its own. Opened once; a server
/// without one (405) is fine.
async fn server_stream(shared: Arc<Shared>) {
    let url = &shared.url;
    let sent = shared
        .client
        .get(shared.endpoint.clone())
        .header(ACCEPT, "text/event-stream")
        .headers(shared.session_headers())
        .send()
        .await;
    let response = match sent {
        Ok(response) => response,
        Err(e) => return tracing::warn!("upstream `{url}`: its stream could not be opened: {}", error_chain(&e)),
    };
    let status = response.status();
    if status == StatusCode::METHOD_NOT_ALLOWED {
        return;
    }
    if !status.is_success() || content_type(&response) != "text/event-stream" {
        let body = short_body(response).await;
        return tracing::warn!("upstream `{url}`: its stream could not be opened: HTTP {status}: {body}");
    }
    let mut reader = EventReader::new(response, shared.limits.max_message_bytes);
    while let Some(item) = reader.next().await {
        match item {
            Ok(message) => shared.emit(UpstreamEvent::Message(message)).await,
            Err(StreamFault::Fault(reason)) => shared.emit(UpstreamEvent::Fault(reason_for(url, &reason))).await,
            Err(StreamFault::Broken(reason)) => {
                return tracing::warn!("upstream `{url}`: its stream broke: {reason}");
            }
        }
    }
}

/// Reads the answer to one request.
struct ResponseReader<'a> {
    shared: &'a Shared,
    id: &'a Id,
    /// Whether the response to the request came (or its failure was
    /// reported).
    answered: &'a mut bool,
    initialize: &'a mut Option<oneshot::Sender<()>>,
}

impl ResponseReader<'_> {
    /// Passes a message on; notes the response to the request (and, for
    /// `initialize`, the protocol version it answered, before the messages
    /// waiting for it are let go).
    async fn deliver(&mut self, message: Message) {
        let ours = matches!(&message.kind, Kind::Response { id: Some(id), .. } if id == self.id);
        if ours {
            *self.answered = true;
        }
        let answered_init = if ours { self.initialize.take() } else { None };
        if let Some(answered) = answered_init {
            let version = message
                .result()
                .and_then(|r| r.get("protocolVersion"))
                .and_then(|v| v.as_str())
                .and_then(plain_header_value);
            if let Ok(mut slot) = self.shared.version.lock() {
                *slot = version;
            }
            self.shared.emit(UpstreamEvent::Message(message)).await;
            let _ = answered.send(());
            return;
        }
        self.shared.emit(UpstreamEvent::Message(message)).await;
    }

    async fn fault(&self, reason: String) {
        self.shared
            .emit(UpstreamEvent::Fault(reason_for(&self.shared.url, &reason)))
            .await;
    }

    async fn json_body(&mut self, response: reqwest::Response) {
        let max = self.shared.limits.max_message_bytes;
        match read_bounded(response, max).await {
            Ok(body) => match Message::parse(body.clone()) {
                Ok(message) => self.deliver(message).await,
                Err(e) => {
                    self.fault(format!(
                        "sent a body that is not a JSON-RPC message ({e}): {}",
                        quote(&body)
                    ))
                    .await
                }
            },
            Err(BodyError::TooLarge) => {
                self.fault(format!(
                    "sent a message over {max} bytes (the gateway's limit); it was dropped"
                ))
                .await
            }
            Err(BodyError::Broken(reason)) => {
                let url = &self.shared.url;
                self.shared
                    .fail(self.id, format!("upstream `{url}`: the answer broke off: {reason}"))
                    .await;
                *self.answered = true;
            }
        }
    }

    async fn event_stream(&mut self, response: reqwest::Response) {
        let mut reader = EventReader::new(response, self.shared.limits.max_message_bytes);
        let mut read_until = None;
        loop {
            if *self.answered && read_until.is_none() {
                read_until = Some(tokio::time::Instant::now() + AFTER_ANSWER);
            }
            let item = match read_until {
                // The response is in; read on briefly for the stream's end
                // (a deadline, not a per-event timeout: a server that keeps
                // sending cannot hold the stream open).
                Some(deadline) => match tokio::time::timeout_at(deadline, reader.next()).await {
                    Ok(item) => item,
                    Err(_) => return,
                },
                None => reader.next().await,
            };
            match item {
                None => return,
                Some(Ok(message)) => self.deliver(message).await,
                Some(Err(StreamFault::Fault(reason))) => self.fault(reason).await,
                Some(Err(StreamFault::Broken(reason))) => {
                    if !*self.answered {
                        let url = &self.shared.url;
                        self.shared
                            .fail(self.id, format!("upstream `{url}`: the answer broke off: {reason}"))
                            .await;
                        *self.answered = true;
                    }
                    return;
                }
            }
        }
    }

    /// An HTTP error status. A body that is the JSON-RPC response to the
    /// request (a stateless-era server answers an unknown method with 404
    /// and `-32601`, an unsupported version with 400 and `-32022`) is that
    /// response; otherwise the request fails with the status and the head
    /// of the body.
    async fn http_error(&mut self, response: reqwest::Response, sent_session: bool, control: &mpsc::Sender<Control>) {
        let url = &self.shared.url;
        let status = response.status();
        let body = read_bounded(response, self.shared.limits.max_message_bytes)
            .await
            .unwrap_or_default();
        if let Ok(message) = Message::parse(body.clone()) {
            if matches!(&message.kind, Kind::Response { id: Some(id), .. } if id == self.id) {
                return self.deliver(message).await;
            }
        }
        self.shared
            .fail(
                self.id,
                format!("upstream `{url}` answered HTTP {status}: {}", quote(&body)),
            )
            .await;
        if status == StatusCode::NOT_FOUND && sent_session {
            let _ = control
                .send(Control::SessionGone(format!(
                    "upstream `{url}` ended the session (HTTP 404)"
                )))
                .await;
        }
    }
}

fn reason_for(url: &str, what: &str) -> String {
    format!("upstream `{url}` {what}")
}

/// Why a stream's message was not passed on.
enum StreamFault {
    /// One message was refused (over the bound, not JSON-RPC); the stream
    /// goes on.
    Fault(String),
    /// The stream itself failed.
    Broken(String),
}

/// The JSON-RPC messages of an SSE body: each `data` of a `message` event
/// is one message, each event bounded in size.
struct EventReader {
    events: sse_core::SseStream<futures_util::stream::BoxStream<'static, reqwest::Result<Bytes>>>,
    max: usize,
}

impl EventReader {
    fn new(response: reqwest::Response, max: usize) -> EventReader {
        let limit = NonZeroUsize::new(max).unwrap_or(NonZeroUsize::MIN);
        let mut events = sse_core::SseStream::with_decoder(sse_core::SseDecoder::with_limit(limit));
        events.attach(response.bytes_stream().boxed());
        EventReader { events, max }
    }

    async fn next(&mut self) -> Option<Result<Message, StreamFault>> {
        loop {
            let event = match self.events.next().await? {
                Ok(sse_core::SseEvent::Message(event)) => event,
                Ok(sse_core::SseEvent::Retry(_)) => continue,
                Err(sse_core::SseStreamError::PayloadTooLarge(_)) => {
                    return Some(Err(StreamFault::Fault(format!(
                        "sent a message over {} bytes (the gateway's limit); it was dropped",
                        self.max
                    ))))
                }
                Err(sse_core::SseStreamError::Inner(e)) => return Some(Err(StreamFault::Broken(error_chain(&e)))),
            };
            // Events of another type are not MCP messages; an event with
            // empty data (the priming event that carries only an id) is
            // nothing.
            if event.event != "message" || event.data.trim().is_empty() {
                continue;
            }
            let data = Bytes::from(event.data);
            return Some(Message::parse(data.clone()).map_err(|e| {
                StreamFault::Fault(format!(
                    "sent an event that is not a JSON-RPC message ({e}): {}",
                    quote(&data)
                ))
            }));
        }
    }
}

enum BodyError {
    TooLarge,
    Broken(String),
}

/// A response body of at most `max` bytes, never buffered past it.
async fn read_bounded(response: reqwest::Response, max: usize) -> Result<Bytes, BodyError> {
    if response.content_length().is_some_and(|n| n > max as u64) {
        return Err(BodyError::TooLarge);
    }
    let mut body = Vec::new();
    let mut chunks = response.bytes_stream();
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk.map_err(|e| BodyError::Broken(error_chain(&e)))?;
        if body.len() + chunk.len() > max {
            return Err(BodyError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Bytes::from(body))
}

/// The head of an error body, quoted, for a message.
async fn short_body(response: reqwest::Response) -> String {
    match read_bounded(response, 64 * 1024).await {
        Ok(body) => quote(&body),
        Err(BodyError::TooLarge) => "(a long body)".into(),
        Err(BodyError::Broken(reason)) => format!("(the body broke off: {reason})"),
    }
}

/// The media type of a response, lower case, without parameters.
fn content_type(response: &reqwest::Response) -> String {
    response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase())
        .unwrap_or_default()
}

/// A session id as the spec allows it: visible ASCII (0x21 to 0x7E).
fn is_session_id(value: &HeaderValue) -> bool {
    !value.is_empty() && value.as_bytes().iter().all(|b| (0x21..=0x7e).contains(b))
}

/// An error with its causes (reqwest's own text is often only "error
/// sending request").
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert!(check_url("http://127.0.0.1:3001/mcp").is_ok());
        let https = check_url("https://example.com/mcp").unwrap_err().to_string();
        assert!(https.contains("TLS upstreams are not supported yet"), "{https}");
        assert!(check_url("ftp://x/").is_err());
        assert!(check_url("http://user:pw@127.0.0.1/").is_err());
        assert!(check_url("not a url").is_err());
    }

    #[test]
    fn reasons_do_not_show_the_query() {
        let url = check_url("http://127.0.0.1:9/mcp?token=secret#x").unwrap();
        assert_eq!(shown_url(&url), "http://127.0.0.1:9/mcp");
    }

    #[test]
    fn names_in_headers() {
        assert_eq!(encode_name("get_weather"), "get_weather");
        assert_eq!(encode_name("file:///a b.txt"), "file:///a b.txt");
        assert_eq!(encode_name("Hello, 世界"), "=?base64?SGVsbG8sIOS4lueVjA==?=");
        assert_eq!(encode_name(" padded "), "=?base64?IHBhZGRlZCA=?=");
        assert_eq!(encode_name("line1\nline2"), "=?base64?bGluZTEKbGluZTI=?=");
        assert_eq!(encode_name("=?base64?literal?="), "=?base64?PT9iYXNlNjQ/bGl0ZXJhbD89?=");
    }
}
