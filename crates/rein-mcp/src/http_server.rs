//! The gateway's Streamable HTTP endpoint: each server at
//! `http://HOST:PORT/mcp/<server>` (MCP-spec 2025-11-25 `basic/transports`,
//! and the stateless 2026-07-28 revision).
//!
//! **Handshake era.** An `initialize` POST starts a session: a fresh
//! random `Mcp-Session-Id` (128 bits, hex) and a [`proxy`](crate::proxy)
//! session behind it. Every later POST, GET and DELETE names it (missing:
//! 400; unknown or ended: 404, so the client initializes again). A POST
//! holding a request is answered with an SSE stream carrying every message
//! the session sends the client until, and including, the response to that
//! request (`application/json` with the response alone when the client does
//! not accept SSE); a POST holding a notification or a response gets 202.
//! Messages the server starts itself (its requests and notifications) go
//! on the stream of the open request they belong to (a progress
//! notification whose token an open request set), else on the stream of
//! the oldest open request, else on the session's GET stream, else they
//! are queued for the next GET. DELETE ends the session; sessions idle for
//! an hour are ended too, and their number is capped so that a client
//! cannot start servers without end.
//!
//! **Stateless era (2026-07-28).** A POST with no session id whose message
//! is `server/discover` or names `2026-07-28` in
//! `_meta["io.modelcontextprotocol/protocolVersion"]` goes through one
//! session per server shared by every such client. Its request id is
//! replaced by a gateway id (`"rein-http-<n>"`) on the way in and restored
//! on the way out, in the bytes, so that the message is otherwise unchanged
//! and no client can answer or cancel another's request. Closing the
//! response stream cancels the request (`notifications/cancelled`), as
//! 2026-07-28 says. The `Mcp-Method`, `Mcp-Name` and `MCP-Protocol-Version`
//! headers, when sent, must agree with the body (else 400, `-32020`): the
//! gateway decides on the body, and an intermediary before it may have
//! decided on the headers.
//!
//! **Always.** An `Origin` that is not a loopback origin gets 403 (a web
//! page must not reach a local gateway: DNS rebinding); a body over the
//! message bound gets 413 and is never read beyond it; a batch gets 400
//! (`-32600`).

use crate::gateway::Gateway;
use crate::jsonrpc::{self, code, Id, Kind, Message};
use crate::proxy::{SessionError, SessionHandle, SessionInfo};
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use base64::Engine as _;
use bytes::Bytes;
use futures_util::StreamExt as _;
use serde_json::{json, Value as Json};
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::convert::Infallible;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, Notify};

/// The protocol revisions the gateway knows; an `MCP-Protocol-Version`
/// header naming another is refused (400).
pub const PROTOCOL_VERSIONS: &[&str] = &["2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25", "2026-07-28"];

/// The stateless revision: requests naming it need no session.
pub const STATELESS_VERSION: &str = "2026-07-28";

/// `HeaderMismatch` (MCP-spec 2026-07-28): a header mirrored from the body
/// disagrees with it.
pub const HEADER_MISMATCH: i64 = -32020;

/// The default [`HttpOptions::session_idle`]: one hour.
pub const DEFAULT_SESSION_IDLE: Duration = Duration::from_secs(3600);

/// The default [`HttpOptions::max_sessions`].
pub const DEFAULT_MAX_SESSIONS: usize = 1000;

/// The session header (HTTP header names are case-insensitive).
pub const SESSION_HEADER: &str = "mcp-session-id";
const VERSION_HEADER: &str = "mcp-protocol-version";
const METHOD_HEADER: &str = "mcp-method";
const NAME_HEADER: &str = "mcp-name";

/// Messages buffered for one stream before the session waits for its
/// reader.
const STREAM_CAPACITY: usize = 16;
/// How long the session waits for a stream's reader to take a message
/// before it closes that stream: one client that stops reading must not
/// hold up the others of a shared session.
const STREAM_STALL: Duration = Duration::from_secs(30);
/// Messages kept for a GET stream nobody has opened yet; the oldest go
/// first.
const MAX_QUEUED: usize = 1000;
/// Bytes kept for a GET stream nobody has opened yet, at most (or one
/// message, when a message is larger).
const MAX_QUEUED_BYTES: usize = 16 << 20;
/// An SSE comment this often keeps idle streams (a call held for approval)
/// from being cut by intermediaries.
const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// How often idle sessions are looked for, at most.
const MAX_SWEEP_INTERVAL: Duration = Duration::from_secs(60);
/// How long a client may take to send a POST's body (408 after): a body
/// trickled byte by byte must not hold a task for ever.
const BODY_READ_TIMEOUT: Duration = Duration::from_secs(60);
/// Most requests in flight in one session (503 above): each holds a
/// stream, and a shared session serves every stateless client.
pub const MAX_REQUESTS_IN_FLIGHT: usize = 1000;

/// Starts a session with a server for one client: [`crate::proxy::
/// start_session`] in the gateway; a scripted session in tests.
pub trait StartSession: Send + Sync + 'static {
    /// Starts one session; it runs until its `to_gateway` is dropped.
    fn start(&self, server: &str, info: SessionInfo) -> Result<SessionHandle, SessionError>;
}

impl<F> StartSession for F
where
    F: Fn(&str, SessionInfo) -> Result<SessionHandle, SessionError> + Send + Sync + 'static,
{
    fn start(&self, server: &str, info: SessionInfo) -> Result<SessionHandle, SessionError> {
        self(server, info)
    }
}

/// Bounds of the endpoint.
#[derive(Clone, Debug)]
pub struct HttpOptions {
    /// The largest body a POST may have (413 above).
    pub max_message_bytes: usize,
    /// A session without requests and open streams for this long is ended.
    pub session_idle: Duration,
    /// Most handshake-era sessions at once (503 above).
    pub max_sessions: usize,
}

impl Default for HttpOptions {
    fn default() -> Self {
        HttpOptions {
            max_message_bytes: crate::upstream::DEFAULT_MAX_MESSAGE_BYTES,
            session_idle: DEFAULT_SESSION_IDLE,
            max_sessions: DEFAULT_MAX_SESSIONS,
        }
    }
}

/// The routes `/mcp/{server}` (POST, GET, DELETE) over a gateway, with
/// the default bounds and the gateway's message bound.
pub fn router(gateway: Arc<Gateway>) -> Router {
    let options = HttpOptions {
        max_message_bytes: gateway.limits.max_message_bytes,
        ..HttpOptions::default()
    };
    router_with_options(gateway, options)
}

/// [`router`] with bounds of its own.
pub fn router_with_options(gateway: Arc<Gateway>, options: HttpOptions) -> Router {
    let servers: Vec<String> = gateway.servers.keys().cloned().collect();
    let start = move |server: &str, info: SessionInfo| crate::proxy::start_session(Arc::clone(&gateway), server, info);
    router_with(servers, Arc::new(start), options)
}

/// Serves `router` on `listener` until the future is dropped (a GET
/// stream lasts as long as its session, so a graceful shutdown that waits
/// for every connection would wait for ever). Sockets are set
/// `TCP_NODELAY`: an SSE reply is written in small pieces (the event, then
/// the end of the body), and with Nagle's algorithm each piece after the
/// first waits for the client's delayed ACK, about 40 ms a request.
pub async fn serve(listener: tokio::net::TcpListener, router: Router) -> std::io::Result<()> {
    use axum::serve::ListenerExt as _;
    let listener = listener.tap_io(|tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!("could not set TCP_NODELAY on a connection: {e}");
        }
    });
    axum::serve(listener, router).await
}

/// The routes `/mcp/{server}` for the named servers, sessions started by
/// `starter`.
pub fn router_with(
    servers: impl IntoIterator<Item = String>,
    starter: Arc<dyn StartSession>,
    options: HttpOptions,
) -> Router {
    let endpoint = Arc::new(Endpoint {
        servers: servers.into_iter().collect(),
        starter,
        options,
        sessions: Mutex::new(HashMap::new()),
        shared: Mutex::new(HashMap::new()),
        next_gateway_id: AtomicU64::new(1),
        sweeper_started: AtomicBool::new(false),
    });
    Router::new()
        .route("/mcp/{server}", post(handle_post).get(handle_get).delete(handle_delete))
        .with_state(endpoint)
}

// ---------------------------------------------------------------------------
// Refusals

/// An HTTP error answered with a JSON-RPC error body.
#[derive(Debug)]
struct Refusal {
    status: StatusCode,
    code: i64,
    message: String,
    id: Option<Id>,
}

impl Refusal {
    fn new(status: StatusCode, code: i64, message: impl Into<String>) -> Refusal {
        Refusal {
            status,
            code,
            message: message.into(),
            id: None,
        }
    }

    fn bad_request(message: impl Into<String>) -> Refusal {
        Refusal::new(StatusCode::BAD_REQUEST, code::INVALID_REQUEST, message)
    }

    fn mismatch(message: impl Into<String>) -> Refusal {
        Refusal::new(StatusCode::BAD_REQUEST, HEADER_MISMATCH, message)
    }

    fn session_not_found() -> Refusal {
        Refusal::new(
            StatusCode::NOT_FOUND,
            code::INVALID_REQUEST,
            "Not Found: no such MCP session (it ended or never started); send `initialize` to start a new one",
        )
    }

    fn with_id(mut self, id: Option<&Id>) -> Refusal {
        self.id = id.cloned();
        self
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let body = jsonrpc::error(self.id.as_ref(), self.code, self.message).bytes;
        (self.status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
    }
}

// ---------------------------------------------------------------------------
// The endpoint and its sessions

struct Endpoint {
    servers: BTreeSet<String>,
    starter: Arc<dyn StartSession>,
    options: HttpOptions,
    /// Handshake-era sessions by id.
    sessions: Mutex<HashMap<String, Arc<Session>>>,
    /// The stateless-era session of each server.
    shared: Mutex<HashMap<String, Arc<Session>>>,
    next_gateway_id: AtomicU64,
    sweeper_started: AtomicBool,
}

/// One session as the endpoint serves it: the way to the proxy session and
/// where each message from it goes.
struct Session {
    /// `None` for a server's shared stateless session.
    id: Option<String>,
    server: String,
    /// Taken (dropped) when the session ends, which ends the proxy session.
    to_gateway: Mutex<Option<mpsc::Sender<Message>>>,
    routes: Mutex<Routes>,
    last_active: Mutex<Instant>,
    ended: AtomicBool,
    /// Wakes the dispatcher when the session is ended from this side.
    end_signal: Notify,
}

/// The streams open on a session.
#[derive(Default)]
struct Routes {
    next_seq: u64,
    /// Open requests by age (sequence number).
    open: BTreeMap<u64, OpenRequest>,
    /// The sequence number of the open request with each (upstream) id.
    by_id: HashMap<Id, u64>,
    /// The GET stream, when one is open.
    get: Option<mpsc::Sender<Message>>,
    /// Messages for a GET stream not open yet.
    queued: VecDeque<Message>,
    /// Their bytes.
    queued_bytes: usize,
}

struct OpenRequest {
    id: Id,
    tx: mpsc::Sender<Message>,
    /// Whether its reply is an SSE stream (it can carry the server's own
    /// messages) rather than one JSON response.
    sse: bool,
    /// The `_meta.progressToken` it set: progress notifications with this
    /// token belong on its stream.
    progress_token: Option<Json>,
}

/// Where a message the server started goes.
enum Target {
    Stream(u64, mpsc::Sender<Message>),
    Get(mpsc::Sender<Message>),
    Queued,
    Nowhere,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Endpoint {
    fn check_server(&self, server: &str) -> Result<(), Refusal> {
        if self.servers.contains(server) {
            Ok(())
        } else {
            Err(Refusal::new(
                StatusCode::NOT_FOUND,
                code::INVALID_REQUEST,
                format!("Not Found: no MCP server named `{server}` behind this gateway"),
            ))
        }
    }

    /// Ends idle sessions from a task of its own, started with the first
    /// request (the router itself may be built outside a Tokio runtime).
    fn start_sweeper(self: &Arc<Self>) {
        if self.sweeper_started.swap(true, Ordering::SeqCst) {
            return;
        }
        let weak = Arc::downgrade(self);
        let every = (self.options.session_idle / 4).clamp(Duration::from_millis(10), MAX_SWEEP_INTERVAL);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tick.tick().await;
                let Some(endpoint) = weak.upgrade() else { break };
                endpoint.sweep();
            }
        });
    }

    fn sweep(&self) {
        let idle = self.options.session_idle;
        let mut expired = Vec::new();
        lock(&self.sessions).retain(|_, session| {
            let keep = !session.is_idle_for(idle);
            if !keep {
                expired.push(Arc::clone(session));
            }
            keep
        });
        lock(&self.shared).retain(|_, session| {
            let keep = !session.is_idle_for(idle);
            if !keep {
                expired.push(Arc::clone(session));
            }
            keep
        });
        for session in expired {
            tracing::info!(server = %session.server, session = %session.log_name(), "MCP session idle for {idle:?}: ended");
            session.end();
        }
    }

    /// The live handshake-era session `id` of `server`.
    fn find(&self, server: &str, id: &str) -> Result<Arc<Session>, Refusal> {
        let sessions = lock(&self.sessions);
        match sessions.get(id) {
            Some(session) if session.server == server && !session.ended.load(Ordering::SeqCst) => {
                Ok(Arc::clone(session))
            }
            _ => Err(Refusal::session_not_found()),
        }
    }

    /// A new handshake-era session.
    fn create(self: &Arc<Self>, server: &str) -> Result<Arc<Session>, Refusal> {
        let busy = || {
            Refusal::new(
                StatusCode::SERVICE_UNAVAILABLE,
                code::INTERNAL_ERROR,
                format!(
                    "Service Unavailable: this gateway already serves {} MCP sessions; end one (DELETE) or retry later",
                    self.options.max_sessions
                ),
            )
        };
        if lock(&self.sessions).len() >= self.options.max_sessions {
            return Err(busy());
        }
        let id = new_session_id()?;
        let info = SessionInfo {
            session: Some(id.clone()),
            client: format!("mcp:{server}"),
        };
        let handle = self.start(server, info)?;
        let session = Session::new(Some(id.clone()), server, handle.to_gateway);
        {
            let mut sessions = lock(&self.sessions);
            // Checked again: sessions may have started since.
            if sessions.len() >= self.options.max_sessions {
                session.end();
                return Err(busy());
            }
            sessions.insert(id, Arc::clone(&session));
        }
        tracing::info!(server = %server, session = %session.log_name(), "MCP session started");
        self.spawn_dispatcher(&session, handle.from_gateway);
        Ok(session)
    }

    /// The shared stateless session of `server`, started on first use (and
    /// again after it ended).
    fn shared(self: &Arc<Self>, server: &str) -> Result<Arc<Session>, Refusal> {
        let mut shared = lock(&self.shared);
        if let Some(session) = shared.get(server) {
            if !session.ended.load(Ordering::SeqCst) {
                return Ok(Arc::clone(session));
            }
        }
        let info = SessionInfo {
            session: None,
            client: format!("mcp:{server}"),
        };
        let handle = self.start(server, info)?;
        let session = Session::new(None, server, handle.to_gateway);
        shared.insert(server.to_string(), Arc::clone(&session));
        drop(shared);
        self.spawn_dispatcher(&session, handle.from_gateway);
        Ok(session)
    }

    fn start(&self, server: &str, info: SessionInfo) -> Result<SessionHandle, Refusal> {
        self.starter.start(server, info).map_err(|e| match e {
            SessionError::UnknownServer(_) => Refusal::new(StatusCode::NOT_FOUND, code::INVALID_REQUEST, e.to_string()),
            // Whatever else may keep a session from starting is refused,
            // never passed over.
            #[allow(unreachable_patterns)]
            _ => Refusal::new(StatusCode::SERVICE_UNAVAILABLE, code::INTERNAL_ERROR, e.to_string()),
        })
    }

    fn spawn_dispatcher(self: &Arc<Self>, session: &Arc<Session>, from_gateway: mpsc::Receiver<Message>) {
        let session = Arc::clone(session);
        let endpoint = Arc::downgrade(self);
        tokio::spawn(dispatch(session, from_gateway, endpoint));
    }

    /// Forgets an ended session.
    fn forget(&self, session: &Arc<Session>) {
        match &session.id {
            Some(id) => {
                let mut sessions = lock(&self.sessions);
                if sessions.get(id).is_some_and(|s| Arc::ptr_eq(s, session)) {
                    sessions.remove(id);
                }
            }
            None => {
                let mut shared = lock(&self.shared);
                if shared.get(&session.server).is_some_and(|s| Arc::ptr_eq(s, session)) {
                    shared.remove(&session.server);
                }
            }
        }
    }

    fn gateway_id(&self) -> Id {
        Id::Str(format!(
            "rein-http-{}",
            self.next_gateway_id.fetch_add(1, Ordering::Relaxed)
        ))
    }
}

/// 128 random bits as 32 hex digits.
fn new_session_id() -> Result<String, Refusal> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|e| {
        Refusal::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            code::INTERNAL_ERROR,
            format!("the system random generator failed: {e}"),
        )
    })?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

impl Session {
    fn new(id: Option<String>, server: &str, to_gateway: mpsc::Sender<Message>) -> Arc<Session> {
        Arc::new(Session {
            id,
            server: server.to_string(),
            to_gateway: Mutex::new(Some(to_gateway)),
            routes: Mutex::new(Routes::default()),
            last_active: Mutex::new(Instant::now()),
            ended: AtomicBool::new(false),
            end_signal: Notify::new(),
        })
    }

    fn shared(&self) -> bool {
        self.id.is_none()
    }

    /// How logs name the session: the start of its id only, as the whole
    /// id lets whoever reads the log act in the session.
    fn log_name(&self) -> String {
        match &self.id {
            Some(id) => format!("{}…", id.get(..8).unwrap_or(id)),
            None => "<stateless>".to_string(),
        }
    }

    fn touch(&self) {
        *lock(&self.last_active) = Instant::now();
    }

    /// Idle: no request in flight, no GET stream open, nothing for `idle`.
    fn is_idle_for(&self, idle: Duration) -> bool {
        let routes = lock(&self.routes);
        let busy = !routes.open.is_empty() || routes.get.as_ref().is_some_and(|g| !g.is_closed());
        drop(routes);
        !busy && lock(&self.last_active).elapsed() > idle
    }

    /// Ends the session: the proxy session loses its input (and shuts its
    /// server down), every open stream ends.
    fn end(&self) {
        self.ended.store(true, Ordering::SeqCst);
        lock(&self.to_gateway).take();
        *lock(&self.routes) = Routes::default();
        self.end_signal.notify_one();
    }

    /// Sends a message to the proxy session; `None` once it has ended.
    async fn send(&self, message: Message) -> Option<()> {
        let tx = lock(&self.to_gateway).clone()?;
        tx.send(message).await.ok()
    }

    /// Sends a message to the proxy session from a task of its own: the
    /// dispatcher must not wait on the session, which may be waiting on it.
    fn send_later(&self, message: Message) {
        let Some(tx) = lock(&self.to_gateway).clone() else {
            return;
        };
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                let _ = tx.send(message).await;
            });
        }
    }

    /// Registers a request in flight; its id must not be in flight already.
    fn open(&self, id: &Id, tx: mpsc::Sender<Message>, sse: bool, progress_token: Option<Json>) -> Result<(), Refusal> {
        let mut routes = lock(&self.routes);
        if routes.open.len() >= MAX_REQUESTS_IN_FLIGHT {
            return Err(Refusal::new(
                StatusCode::SERVICE_UNAVAILABLE,
                code::INTERNAL_ERROR,
                format!("Service Unavailable: {MAX_REQUESTS_IN_FLIGHT} requests already in flight in this session"),
            ));
        }
        if routes.by_id.contains_key(id) {
            return Err(Refusal::bad_request(format!(
                "Bad Request: request id {id} is already used by a request in flight in this session"
            )));
        }
        let seq = routes.next_seq;
        routes.next_seq += 1;
        routes.by_id.insert(id.clone(), seq);
        routes.open.insert(
            seq,
            OpenRequest {
                id: id.clone(),
                tx,
                sse,
                progress_token,
            },
        );
        Ok(())
    }

    /// Forgets the request in flight with `id` (answered, or its client
    /// gone).
    fn close_request(&self, id: &Id) -> Option<mpsc::Sender<Message>> {
        let mut routes = lock(&self.routes);
        let seq = routes.by_id.remove(id)?;
        routes.open.remove(&seq).map(|open| open.tx)
    }

    fn close_stream(&self, seq: u64) {
        let mut routes = lock(&self.routes);
        if let Some(open) = routes.open.remove(&seq) {
            routes.by_id.remove(&open.id);
        }
    }

    /// Where a message the server started goes.
    fn target(&self, message: &Message) -> Target {
        let mut routes = lock(&self.routes);
        let token = match message.method() {
            Some("notifications/progress") => message.params().get("progressToken"),
            _ => None,
        };
        if let Some(token) = token {
            let mut owners = routes
                .open
                .iter()
                .filter(|(_, o)| o.sse && !o.tx.is_closed() && o.progress_token.as_ref() == Some(token));
            if let (Some((seq, owner)), None) = (owners.next(), owners.next()) {
                return Target::Stream(*seq, owner.tx.clone());
            }
        }
        if self.shared() {
            // Clients of a shared session are strangers to each other: a
            // message no request of theirs owns goes to none of them.
            return Target::Nowhere;
        }
        if let Some((seq, oldest)) = routes.open.iter().find(|(_, o)| o.sse && !o.tx.is_closed()) {
            return Target::Stream(*seq, oldest.tx.clone());
        }
        if let Some(get) = routes.get.as_ref().filter(|g| !g.is_closed()) {
            return Target::Get(get.clone());
        }
        routes.queued_bytes += message.bytes.len();
        routes.queued.push_back(message.clone());
        while routes.queued.len() > MAX_QUEUED || (routes.queued_bytes > MAX_QUEUED_BYTES && routes.queued.len() > 1) {
            if let Some(dropped) = routes.queued.pop_front() {
                routes.queued_bytes -= dropped.bytes.len();
            }
            tracing::warn!(server = %self.server, "no GET stream opened: the oldest queued message dropped");
        }
        Target::Queued
    }

    /// Routes one message from the proxy session.
    async fn route(&self, mut message: Message) {
        if let Kind::Response { id: Some(id), .. } = &message.kind {
            let id = id.clone();
            match self.close_request(&id) {
                Some(tx) => {
                    if deliver(&tx, message).await.is_err() {
                        tracing::debug!(server = %self.server, "response to {id} dropped: its stream is gone");
                    }
                }
                None => tracing::debug!(server = %self.server, "response to {id}: no request in flight, dropped"),
            }
            return;
        }
        loop {
            match self.target(&message) {
                Target::Stream(seq, tx) => match deliver(&tx, message).await {
                    Ok(()) => return,
                    Err(back) => {
                        self.close_stream(seq);
                        message = back;
                    }
                },
                Target::Get(tx) => match deliver(&tx, message).await {
                    Ok(()) => return,
                    Err(back) => {
                        let mut routes = lock(&self.routes);
                        if routes.get.as_ref().is_some_and(|g| g.same_channel(&tx)) {
                            routes.get = None;
                        }
                        message = back;
                    }
                },
                Target::Queued => return,
                Target::Nowhere => {
                    if let Kind::Request { id, method } = &message.kind {
                        // Answered, so the server does not wait for a
                        // reply that cannot come.
                        let reply = jsonrpc::error(
                            Some(id),
                            code::METHOD_NOT_FOUND,
                            format!("`{method}`: the gateway's stateless clients cannot be asked"),
                        );
                        self.send_later(reply);
                    }
                    tracing::debug!(server = %self.server, "stateless session: a message for no request dropped");
                    return;
                }
            }
        }
    }
}

/// Hands a message to a stream; gives it back when the stream is gone or
/// its reader has not taken anything for [`STREAM_STALL`].
async fn deliver(tx: &mpsc::Sender<Message>, message: Message) -> Result<(), Message> {
    match tokio::time::timeout(STREAM_STALL, tx.reserve()).await {
        Ok(Ok(permit)) => {
            permit.send(message);
            Ok(())
        }
        Ok(Err(_)) | Err(_) => Err(message),
    }
}

/// Carries the proxy session's messages to the streams until the session
/// ends (from either side).
async fn dispatch(session: Arc<Session>, mut from_gateway: mpsc::Receiver<Message>, endpoint: Weak<Endpoint>) {
    loop {
        let message = tokio::select! {
            message = from_gateway.recv() => message,
            () = session.end_signal.notified() => None,
        };
        let Some(message) = message else { break };
        if session.ended.load(Ordering::SeqCst) {
            break;
        }
        session.route(message).await;
    }
    session.end();
    if let Some(endpoint) = endpoint.upgrade() {
        endpoint.forget(&session);
    }
    tracing::info!(server = %session.server, session = %session.log_name(), "MCP session ended");
}

// ---------------------------------------------------------------------------
// Handlers

async fn handle_post(
    State(endpoint): State<Arc<Endpoint>>,
    Path(server): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    endpoint.start_sweeper();
    match post_message(&endpoint, &server, &headers, body).await {
        Ok(response) => response,
        Err(refusal) => refusal.into_response(),
    }
}

async fn post_message(
    endpoint: &Arc<Endpoint>,
    server: &str,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, Refusal> {
    check_origin(headers)?;
    endpoint.check_server(server)?;
    let version = protocol_version(headers)?;
    check_content_type(headers)?;
    let reply = reply_kind(headers)?;
    let session_id = single_header(headers, SESSION_HEADER)?;
    let limit = endpoint.options.max_message_bytes;
    let bytes = tokio::time::timeout(BODY_READ_TIMEOUT, read_limited(headers, body, limit))
        .await
        .map_err(|_| {
            Refusal::new(
                StatusCode::REQUEST_TIMEOUT,
                code::INVALID_REQUEST,
                format!("Request Timeout: the body took longer than {BODY_READ_TIMEOUT:?} to arrive"),
            )
        })??;
    let message = Message::parse(bytes).map_err(|e| {
        let status = StatusCode::BAD_REQUEST;
        Refusal::new(status, e.code(), format!("Bad Request: {e}"))
    })?;
    check_mirrored_headers(headers, &message, version.as_deref()).map_err(|r| r.with_id(message.id()))?;

    let mut new_session = None;
    let session = match session_id {
        Some(id) => endpoint.find(server, &id)?,
        None if matches!(&message.kind, Kind::Request { method, .. } if method == "initialize") => {
            let session = endpoint.create(server)?;
            new_session = session.id.clone();
            session
        }
        None if is_stateless(&message) => endpoint.shared(server)?,
        None => {
            return Err(Refusal::bad_request(
                "Bad Request: Mcp-Session-Id header is required (send `initialize` first to start a session)",
            )
            .with_id(message.id()))
        }
    };
    session.touch();
    let mut response = match &message.kind {
        Kind::Request { .. } => match request(endpoint, &session, message, reply).await {
            Ok(response) => response,
            Err(refusal) => {
                if new_session.is_some() {
                    // A session whose client never learnt its id.
                    endpoint.forget(&session);
                    session.end();
                }
                return Err(refusal);
            }
        },
        Kind::Notification { method } if session.shared() && method == "notifications/cancelled" => {
            // In a shared session a client could name another client's
            // request; stateless clients cancel by closing their stream.
            StatusCode::ACCEPTED.into_response()
        }
        Kind::Response { .. } if session.shared() => {
            return Err(Refusal::bad_request(
                "Bad Request: a stateless client has no server request to answer",
            ))
        }
        Kind::Notification { .. } | Kind::Response { .. } => {
            session.send(message).await.ok_or_else(Refusal::session_not_found)?;
            StatusCode::ACCEPTED.into_response()
        }
    };
    if let Some(id) = new_session {
        if let Ok(value) = HeaderValue::from_str(&id) {
            response.headers_mut().insert(SESSION_HEADER, value);
        }
    }
    Ok(response)
}

/// How a request's POST is answered.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Reply {
    Sse,
    Json,
}

/// A request in flight as its POST waits for it: the messages routed to
/// it, its response last.
struct Waiter {
    rx: mpsc::Receiver<Message>,
    session: Arc<Session>,
    /// The id the proxy session knows it by.
    upstream_id: Id,
    /// In a shared session, the client's own id, as the bytes it sent.
    client_id: Option<Bytes>,
    answered: bool,
    failed: bool,
}

impl Waiter {
    /// The next message for the client; the response is the last. When the
    /// session ends first, an error response in its place.
    async fn next(&mut self) -> Option<Bytes> {
        if self.answered || self.failed {
            return None;
        }
        match self.rx.recv().await {
            Some(message) => {
                let is_response =
                    matches!(&message.kind, Kind::Response { id: Some(id), .. } if *id == self.upstream_id);
                if !is_response {
                    return Some(message.bytes);
                }
                self.answered = true;
                self.session.touch();
                Some(match &self.client_id {
                    Some(original) => restore_id(&message, original),
                    None => message.bytes,
                })
            }
            None => {
                self.failed = true;
                let id = match &self.client_id {
                    Some(original) => serde_json::from_slice::<Json>(original)
                        .ok()
                        .and_then(|v| Id::from_json(&v)),
                    None => Some(self.upstream_id.clone()),
                };
                let reply = jsonrpc::error(
                    id.as_ref(),
                    code::INTERNAL_ERROR,
                    format!(
                        "Rein gateway: no response from MCP server `{}`: the session ended or this stream was not read",
                        self.session.server
                    ),
                );
                Some(reply.bytes)
            }
        }
    }
}

impl Drop for Waiter {
    fn drop(&mut self) {
        if self.answered {
            return;
        }
        self.session.close_request(&self.upstream_id);
        self.session.touch();
        if self.session.shared() && !self.failed {
            // 2026-07-28: closing the response stream cancels the request.
            let cancel = jsonrpc::notification(
                "notifications/cancelled",
                json!({"requestId": self.upstream_id.to_json(), "reason": "the client closed its stream"}),
            );
            self.session.send_later(cancel);
        }
    }
}

async fn request(
    endpoint: &Arc<Endpoint>,
    session: &Arc<Session>,
    message: Message,
    reply: Reply,
) -> Result<Response, Refusal> {
    let Kind::Request { id, .. } = &message.kind else {
        return Err(Refusal::bad_request("Bad Request: not a request"));
    };
    let client_request_id = id.clone();
    let (message, upstream_id, client_id) = if session.shared() {
        let gateway_id = endpoint.gateway_id();
        let (rewritten, original) = replace_id(&message, &gateway_id)
            .ok_or_else(|| Refusal::bad_request("Bad Request: the request's id could not be read"))?;
        (rewritten, gateway_id, Some(original))
    } else {
        (message, client_request_id.clone(), None)
    };
    let progress_token = message
        .params()
        .get("_meta")
        .and_then(|m| m.get("progressToken"))
        .cloned();
    let (tx, rx) = mpsc::channel(STREAM_CAPACITY);
    session
        .open(&upstream_id, tx, reply == Reply::Sse, progress_token)
        .map_err(|r| r.with_id(Some(&client_request_id)))?;
    let mut waiter = Waiter {
        rx,
        session: Arc::clone(session),
        upstream_id,
        client_id,
        answered: false,
        failed: false,
    };
    if session.send(message).await.is_none() {
        waiter.failed = true;
        return Err(Refusal::session_not_found());
    }
    match reply {
        Reply::Json => {
            // Only the response is routed to a JSON reply.
            let mut last = Bytes::new();
            while let Some(bytes) = waiter.next().await {
                last = bytes;
            }
            Ok(([(header::CONTENT_TYPE, "application/json")], last).into_response())
        }
        Reply::Sse => Ok(sse_response(SseSource::Request(waiter), VecDeque::new())),
    }
}

/// What an SSE stream carries.
enum SseSource {
    Request(Waiter),
    Get(mpsc::Receiver<Message>),
}

impl SseSource {
    async fn next(&mut self) -> Option<Bytes> {
        match self {
            SseSource::Request(waiter) => waiter.next().await,
            SseSource::Get(rx) => rx.recv().await.map(|m| m.bytes),
        }
    }
}

fn sse_response(source: SseSource, first: VecDeque<Message>) -> Response {
    let keep_alive = tokio::time::interval_at(tokio::time::Instant::now() + KEEP_ALIVE, KEEP_ALIVE);
    let stream = futures_util::stream::unfold(
        (source, first, keep_alive),
        |(mut source, mut first, mut keep_alive)| async move {
            if let Some(message) = first.pop_front() {
                return Some((
                    Ok::<Bytes, Infallible>(sse_event(&message.bytes)),
                    (source, first, keep_alive),
                ));
            }
            let chunk = tokio::select! {
                bytes = source.next() => sse_event(&bytes?),
                _ = keep_alive.tick() => Bytes::from_static(b": keep-alive\n\n"),
            };
            Some((Ok(chunk), (source, first, keep_alive)))
        },
    );
    (
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        Body::from_stream(stream),
    )
        .into_response()
}

/// One SSE `message` event. A JSON text holds line breaks only as
/// whitespace between tokens; each line becomes a `data:` line, which the
/// client joins with `\n`.
fn sse_event(bytes: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(bytes.len() + 32);
    out.extend_from_slice(b"event: message\n");
    for line in bytes.split(|b| *b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        out.extend_from_slice(b"data: ");
        // A lone CR would end an SSE line too; in JSON it is whitespace.
        out.extend(line.iter().map(|b| if *b == b'\r' { b' ' } else { *b }));
        out.push(b'\n');
    }
    out.push(b'\n');
    Bytes::from(out)
}

async fn handle_get(State(endpoint): State<Arc<Endpoint>>, Path(server): Path<String>, headers: HeaderMap) -> Response {
    endpoint.start_sweeper();
    match open_get_stream(&endpoint, &server, &headers) {
        Ok(response) => response,
        Err(refusal) => refusal.into_response(),
    }
}

fn open_get_stream(endpoint: &Arc<Endpoint>, server: &str, headers: &HeaderMap) -> Result<Response, Refusal> {
    check_origin(headers)?;
    endpoint.check_server(server)?;
    protocol_version(headers)?;
    if !accepts(headers, &["text/event-stream"]) {
        return Err(Refusal::new(
            StatusCode::NOT_ACCEPTABLE,
            code::INVALID_REQUEST,
            "Not Acceptable: the GET stream is `text/event-stream`",
        ));
    }
    let id = single_header(headers, SESSION_HEADER)?
        .ok_or_else(|| Refusal::bad_request("Bad Request: Mcp-Session-Id header is required"))?;
    let session = endpoint.find(server, &id)?;
    session.touch();
    let (tx, rx) = mpsc::channel(STREAM_CAPACITY);
    let queued = {
        let mut routes = lock(&session.routes);
        if routes.get.as_ref().is_some_and(|g| !g.is_closed()) {
            return Err(Refusal::new(
                StatusCode::CONFLICT,
                code::INVALID_REQUEST,
                "Conflict: this session already has a GET stream open",
            ));
        }
        routes.get = Some(tx);
        routes.queued_bytes = 0;
        std::mem::take(&mut routes.queued)
    };
    Ok(sse_response(SseSource::Get(rx), queued))
}

async fn handle_delete(
    State(endpoint): State<Arc<Endpoint>>,
    Path(server): Path<String>,
    headers: HeaderMap,
) -> Response {
    let result = (|| {
        check_origin(&headers)?;
        endpoint.check_server(&server)?;
        protocol_version(&headers)?;
        let id = single_header(&headers, SESSION_HEADER)?
            .ok_or_else(|| Refusal::bad_request("Bad Request: Mcp-Session-Id header is required"))?;
        let session = endpoint.find(&server, &id)?;
        endpoint.forget(&session);
        session.end();
        Ok::<_, Refusal>(StatusCode::OK.into_response())
    })();
    result.unwrap_or_else(IntoResponse::into_response)
}

// ---------------------------------------------------------------------------
// Headers and body

/// An `Origin` header, when present, must be a loopback origin.
fn check_origin(headers: &HeaderMap) -> Result<(), Refusal> {
    let mut origins = headers.get_all(header::ORIGIN).iter();
    let (first, second) = (origins.next(), origins.next());
    let Some(origin) = first else { return Ok(()) };
    let loopback = second.is_none() && origin.to_str().is_ok_and(is_loopback_origin);
    if loopback {
        Ok(())
    } else {
        Err(Refusal::new(
            StatusCode::FORBIDDEN,
            code::INVALID_REQUEST,
            "Forbidden: the Origin is not a loopback origin (http://localhost, http://127.0.0.1, http://[::1])",
        ))
    }
}

/// `http://localhost`, `http://127.0.0.1` or `http://[::1]`, with any port.
pub fn is_loopback_origin(origin: &str) -> bool {
    let Some(rest) = origin.strip_prefix("http://") else {
        return false;
    };
    let (host, port) = match rest.strip_prefix("[::1]") {
        Some(after) => ("[::1]", after),
        None => rest.split_at(rest.find(':').unwrap_or(rest.len())),
    };
    let port_ok = match port.strip_prefix(':') {
        None => port.is_empty(),
        Some(p) => !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()),
    };
    port_ok && (host == "[::1]" || host == "127.0.0.1" || host.eq_ignore_ascii_case("localhost"))
}

/// One header's value, `None` when absent; sent twice, or not text, is a
/// 400 (two values could be read differently by two readers).
fn single_header(headers: &HeaderMap, name: &str) -> Result<Option<String>, Refusal> {
    let mut values = headers.get_all(name).iter();
    let (first, second) = (values.next(), values.next());
    match (first, second) {
        (None, _) => Ok(None),
        (Some(value), None) => value
            .to_str()
            .map(|v| Some(v.trim().to_string()))
            .map_err(|_| Refusal::bad_request(format!("Bad Request: the {name} header is not visible ASCII"))),
        (Some(_), Some(_)) => Err(Refusal::bad_request(format!(
            "Bad Request: the {name} header is sent twice"
        ))),
    }
}

/// The `MCP-Protocol-Version` header, which must name a known revision.
fn protocol_version(headers: &HeaderMap) -> Result<Option<String>, Refusal> {
    let version = single_header(headers, VERSION_HEADER)?;
    if let Some(v) = &version {
        if !PROTOCOL_VERSIONS.contains(&v.as_str()) {
            return Err(Refusal::bad_request(format!(
                "Bad Request: unsupported MCP-Protocol-Version `{v}`; this gateway knows {}",
                PROTOCOL_VERSIONS.join(", ")
            )));
        }
    }
    Ok(version)
}

/// A POST's body must be declared JSON: a browser cannot send that
/// cross-origin without asking first.
fn check_content_type(headers: &HeaderMap) -> Result<(), Refusal> {
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
    if json {
        Ok(())
    } else {
        Err(Refusal::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            code::INVALID_REQUEST,
            "Unsupported Media Type: the body must be `Content-Type: application/json`",
        ))
    }
}

/// Whether the `Accept` header takes one of `types` (an absent header
/// takes anything; `q=0` refuses).
fn accepts(headers: &HeaderMap, types: &[&str]) -> bool {
    let mut values = headers.get_all(header::ACCEPT).iter().peekable();
    if values.peek().is_none() {
        return true;
    }
    values
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|range| {
            let mut parts = range.split(';');
            let media = parts.next().unwrap_or("").trim();
            let refused = parts.any(|p| {
                p.trim()
                    .strip_prefix("q=")
                    .and_then(|q| q.trim().parse::<f32>().ok())
                    .is_some_and(|q| q <= 0.0)
            });
            !refused && types.iter().any(|t| media.eq_ignore_ascii_case(t))
        })
}

fn reply_kind(headers: &HeaderMap) -> Result<Reply, Refusal> {
    let explicit_sse = headers.get(header::ACCEPT).is_some() && accepts(headers, &["text/event-stream"]);
    if explicit_sse {
        Ok(Reply::Sse)
    } else if accepts(headers, &["application/json", "application/*", "*/*"]) {
        Ok(Reply::Json)
    } else {
        Err(Refusal::new(
            StatusCode::NOT_ACCEPTABLE,
            code::INVALID_REQUEST,
            "Not Acceptable: the client must accept application/json or text/event-stream",
        ))
    }
}

/// Reads the body, refusing (413) more than `limit` bytes without reading
/// past them.
async fn read_limited(headers: &HeaderMap, body: Body, limit: usize) -> Result<Bytes, Refusal> {
    let too_large = || {
        Refusal::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            code::INVALID_REQUEST,
            format!("Payload Too Large: an MCP message may be at most {limit} bytes"),
        )
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let mut stream = body.into_data_stream();
    if declared.is_some_and(|n| n > limit as u64) {
        drain(&mut stream, declared.unwrap_or(0)).await;
        return Err(too_large());
    }
    let mut buf = Vec::with_capacity(declared.map_or(0, |n| usize::try_from(n).unwrap_or(0)).min(limit));
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| Refusal::bad_request(format!("Bad Request: the body could not be read: {e}")))?;
        if buf.len() + chunk.len() > limit {
            drain(&mut stream, (buf.len() + chunk.len()) as u64).await;
            return Err(too_large());
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(Bytes::from(buf))
}

/// The most of a refused body read (and thrown away) so that its client,
/// still sending, gets the 413 rather than a reset connection (which the
/// Python SDK, for one, takes as the end of its session).
const MAX_DRAINED_BYTES: u64 = 256 << 20;

/// Reads what is left of a refused body without keeping it, up to
/// [`MAX_DRAINED_BYTES`] in all (`read` already counted); past that the
/// connection is dropped with the answer. The body's read timeout bounds
/// the time.
async fn drain(stream: &mut axum::body::BodyDataStream, mut read: u64) {
    while read <= MAX_DRAINED_BYTES {
        match stream.next().await {
            Some(Ok(chunk)) => read += chunk.len() as u64,
            _ => return,
        }
    }
}

/// Whether a message without a session belongs to the stateless era.
fn is_stateless(message: &Message) -> bool {
    message.method() == Some("server/discover") || message.meta_protocol_version() == Some(STATELESS_VERSION)
}

/// What `Mcp-Name` mirrors for a method: the tool or prompt name, the
/// resource URI, the task id.
fn named_target(message: &Message) -> Option<&str> {
    let method = message.method()?;
    let key = match method {
        "tools/call" | "prompts/get" => "name",
        m if m.starts_with("resources/") => "uri",
        m if m.starts_with("tasks/") => "taskId",
        _ => return None,
    };
    message.params().get(key).and_then(Json::as_str)
}

/// `Mcp-Method`, `Mcp-Name` and `MCP-Protocol-Version`, when sent, must
/// agree with the body (MCP-spec 2026-07-28 `basic/transports`).
fn check_mirrored_headers(headers: &HeaderMap, message: &Message, version: Option<&str>) -> Result<(), Refusal> {
    let read = |name: &str| single_header(headers, name).map_err(|r| Refusal::mismatch(r.message));
    if let Some(method) = read(METHOD_HEADER)? {
        if message.method() != Some(method.as_str()) {
            return Err(Refusal::mismatch(format!(
                "Header mismatch: Mcp-Method `{method}` but the body's method is {}",
                message.method().map_or("absent".to_string(), |m| format!("`{m}`"))
            )));
        }
    }
    if let Some(raw) = read(NAME_HEADER)? {
        let name = decode_header_value(&raw)
            .ok_or_else(|| Refusal::mismatch(format!("Header mismatch: Mcp-Name `{raw}` is not valid Base64 UTF-8")))?;
        let target = named_target(message);
        if target != Some(name.as_str()) {
            return Err(Refusal::mismatch(format!(
                "Header mismatch: Mcp-Name `{name}` but the body names {}",
                target.map_or("nothing".to_string(), |t| format!("`{t}`"))
            )));
        }
    }
    if let (Some(header), Some(meta)) = (version, message.meta_protocol_version()) {
        if header != meta {
            return Err(Refusal::mismatch(format!(
                "Header mismatch: MCP-Protocol-Version `{header}` but the body's _meta names `{meta}`"
            )));
        }
    }
    Ok(())
}

/// A header value as 2026-07-28 mirrors it: as is, or `=?base64?…?=` (the
/// UTF-8 bytes, standard alphabet) for what a header cannot carry plainly.
fn decode_header_value(raw: &str) -> Option<String> {
    match raw.strip_prefix("=?base64?").and_then(|r| r.strip_suffix("?=")) {
        Some(encoded) => {
            let bytes = base64::engine::general_purpose::STANDARD.decode(encoded).ok()?;
            String::from_utf8(bytes).ok()
        }
        None => Some(raw.to_string()),
    }
}

// ---------------------------------------------------------------------------
// Request ids of shared sessions, changed in the bytes

/// The message with its top-level `id` replaced by `id`, nothing else
/// changed, and the original id's bytes.
fn replace_id(message: &Message, id: &Id) -> Option<(Message, Bytes)> {
    let range = top_level_member(&message.bytes, "id")?;
    let original = message.bytes.slice(range.clone());
    let new_id = serde_json::to_vec(&id.to_json()).ok()?;
    let bytes = splice(&message.bytes, range, &new_id);
    Some((Message::parse(bytes).ok()?, original))
}

/// A response with the client's own id put back.
fn restore_id(response: &Message, original: &[u8]) -> Bytes {
    match top_level_member(&response.bytes, "id") {
        Some(range) => splice(&response.bytes, range, original),
        None => {
            // Not reached for a message the strict reader accepted; rebuilt
            // rather than sent with the wrong id.
            let mut json = response.json.clone();
            if let (Some(object), Ok(id)) = (json.as_object_mut(), serde_json::from_slice::<Json>(original)) {
                object.insert("id".into(), id);
            }
            Bytes::from(serde_json::to_vec(&json).unwrap_or_default())
        }
    }
}

fn splice(bytes: &[u8], range: Range<usize>, with: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(bytes.len() - range.len() + with.len());
    out.extend_from_slice(&bytes[..range.start]);
    out.extend_from_slice(with);
    out.extend_from_slice(&bytes[range.end..]);
    Bytes::from(out)
}

/// Where the value of the top-level member `key` of a JSON object text
/// lies (keys compared decoded, so `"\u0069d"` is `id`). Only for text the
/// strict reader accepted: valid, no key twice.
fn top_level_member(bytes: &[u8], key: &str) -> Option<Range<usize>> {
    let mut i = skip_whitespace(bytes, 0);
    if bytes.get(i) != Some(&b'{') {
        return None;
    }
    i += 1;
    loop {
        i = skip_whitespace(bytes, i);
        match bytes.get(i)? {
            b',' => {
                i += 1;
                continue;
            }
            b'"' => {}
            _ => return None,
        }
        let key_end = string_end(bytes, i)?;
        let name: String = serde_json::from_slice(&bytes[i..key_end]).ok()?;
        i = skip_whitespace(bytes, key_end);
        if bytes.get(i) != Some(&b':') {
            return None;
        }
        let start = skip_whitespace(bytes, i + 1);
        let end = value_end(bytes, start)?;
        if name == key {
            return Some(start..end);
        }
        i = end;
    }
}

fn skip_whitespace(bytes: &[u8], mut i: usize) -> usize {
    while bytes.get(i).is_some_and(|b| matches!(b, b' ' | b'\t' | b'\n' | b'\r')) {
        i += 1;
    }
    i
}

/// The index after the closing quote of the string starting at `start`.
fn string_end(bytes: &[u8], start: usize) -> Option<usize> {
    let mut i = start + 1;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b'"' => return Some(i + 1),
            _ => i += 1,
        }
    }
    None
}

/// The index after the value starting at `start`.
fn value_end(bytes: &[u8], start: usize) -> Option<usize> {
    match bytes.get(start)? {
        b'"' => string_end(bytes, start),
        b'{' | b'[' => {
            let mut depth = 0usize;
            let mut i = start;
            while i < bytes.len() {
                match bytes[i] {
                    b'"' => {
                        i = string_end(bytes, i)?;
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return Some(i + 1);
                        }
                    }
                    _ => {}
                }
                i += 1;
            }
            None
        }
        _ => {
            let mut i = start;
            while i < bytes.len() && !matches!(bytes[i], b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r') {
                i += 1;
            }
            Some(i)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(text: &str) -> Message {
        Message::parse(Bytes::from(text.to_string())).unwrap()
    }

    #[test]
    fn replaces_only_the_top_level_id() {
        let text = r#"{ "params" : {"id": 1, "s": "\"id\": [", "a": [{"id":2}]}, "\u0069d" :  7 , "method":"tools/call","jsonrpc":"2.0"}"#;
        let (rewritten, original) = replace_id(&message(text), &Id::Str("rein-http-1".into())).unwrap();
        assert_eq!(&original[..], b"7");
        assert_eq!(
            std::str::from_utf8(&rewritten.bytes).unwrap(),
            r#"{ "params" : {"id": 1, "s": "\"id\": [", "a": [{"id":2}]}, "\u0069d" :  "rein-http-1" , "method":"tools/call","jsonrpc":"2.0"}"#
        );
        assert_eq!(rewritten.id(), Some(&Id::Str("rein-http-1".into())));

        let response = message(r#"{"result":{"id":"x"},"jsonrpc":"2.0","id":"rein-http-1"}"#);
        assert_eq!(
            &restore_id(&response, b"\"a\\u0062\"")[..],
            br#"{"result":{"id":"x"},"jsonrpc":"2.0","id":"a\u0062"}"#
        );
    }

    fn json_value() -> impl proptest::strategy::Strategy<Value = Json> {
        use proptest::prelude::*;
        let leaf = prop_oneof![
            Just(Json::Null),
            any::<bool>().prop_map(Json::from),
            any::<i64>().prop_map(Json::from),
            // Keys and strings with quotes, backslashes, braces and `id`.
            "[a-z\\\\\"{}\\[\\],: ]{0,8}|id".prop_map(Json::from),
        ];
        leaf.prop_recursive(4, 32, 4, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(Json::from),
                proptest::collection::btree_map("[a-z\"\\\\]{0,4}|id", inner, 0..4)
                    .prop_map(|m| Json::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest::proptest! {
        /// Replacing the id changes the id and nothing else, wherever an
        /// `id` key or a look-alike sits in the rest of the message.
        #[test]
        fn replacing_the_id_changes_nothing_else(params in json_value(), id in proptest::prelude::any::<i64>(), pretty in proptest::prelude::any::<bool>()) {
            // `params` (where `id` keys and look-alikes are) comes first.
            let params_text = if pretty { serde_json::to_string_pretty(&params) } else { serde_json::to_string(&params) }.unwrap();
            let text = format!("{{ \"params\" :{params_text},\n\"jsonrpc\":\"2.0\", \"id\" : {id} ,\"method\":\"tools/call\"}}");
            let json = json!({"params": params, "jsonrpc": "2.0", "id": id, "method": "tools/call"});
            let (rewritten, original) = replace_id(&message(&text), &Id::Str("rein-http-9".into())).unwrap();
            let id_text = id.to_string();
            proptest::prop_assert_eq!(&original[..], id_text.as_bytes());
            let mut expected = json.clone();
            expected["id"] = json!("rein-http-9");
            proptest::prop_assert_eq!(&rewritten.json, &expected);
            let back = restore_id(&jsonrpc::response(&Id::Str("rein-http-9".into()), json["params"].clone()), &original);
            let back: Json = serde_json::from_slice(&back).unwrap();
            proptest::prop_assert_eq!(&back["id"], &json!(id));
            proptest::prop_assert_eq!(&back["result"], &json["params"]);
        }
    }

    #[test]
    fn loopback_origins() {
        for good in [
            "http://localhost",
            "http://localhost:3000",
            "http://LOCALHOST:1",
            "http://127.0.0.1",
            "http://127.0.0.1:8080",
            "http://[::1]",
            "http://[::1]:9",
        ] {
            assert!(is_loopback_origin(good), "{good}");
        }
        for bad in [
            "null",
            "https://evil.example",
            "http://evil.example",
            "http://localhost.evil.example",
            "http://localhost:80@evil.example",
            "http://127.0.0.1.nip.io",
            "http://127.0.0.2",
            "http://[::1]x",
            "http://[::2]:80",
            "http://localhost:",
            "http://localhost:8080/",
            "http://localhost:123456",
            "file://",
            "http://",
            "",
        ] {
            assert!(!is_loopback_origin(bad), "{bad}");
        }
    }

    #[test]
    fn header_values_decode() {
        assert_eq!(decode_header_value("read_file").as_deref(), Some("read_file"));
        assert_eq!(decode_header_value("=?base64?w6lk?=").as_deref(), Some("éd"));
        assert_eq!(decode_header_value("=?base64?not base64?="), None);
    }
}
