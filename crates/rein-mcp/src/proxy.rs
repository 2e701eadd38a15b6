//! One client session through the gateway: every message passes unchanged
//! except those the gateway governs — `tools/list` results (tools refused
//! by pinning or blocked unconditionally are hidden) and `tools/call`
//! (decided before it is forwarded; its result checked before it is
//! returned).
//!
//! A session is one task that owns the link to the server (made on the
//! first message, made again after the server closed it, with the client's
//! `initialize` replayed). Every queue is bounded: a client that stops
//! reading stops the session reading the server, which stops the server.

use crate::catalog::{self, Tool, ToolDigest};
use crate::gateway::{Gateway, Server};
use crate::jsonrpc::{self, code, Id, Kind, Message};
use crate::upstream::{self, Limits, Link, UpstreamError, UpstreamEvent, UpstreamSpec};
use rein_engine::{Effect, Request};
use rein_runtime::{Answer, Refusal, Runtime};
use rein_store::ApprovalState;
use serde_json::{json, Map, Value as Json};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::{AbortHandle, JoinSet};
use tokio::time::Instant;

/// Who a session is, for the runtime.
#[derive(Clone, Debug)]
pub struct SessionInfo {
    /// The Rein session its calls belong to (limits and session rules):
    /// the gateway's own id for a stdio client or an HTTP session; `None`
    /// for stateless-era requests that name none in
    /// `_meta["rein/session"]`.
    pub session: Option<String>,
    /// The runtime's client (approvals and sessions belong to it).
    pub client: String,
}

/// A session as a client transport drives it.
pub struct SessionHandle {
    /// Messages from the client. Dropping it ends the session (and shuts
    /// the server down).
    pub to_gateway: mpsc::Sender<Message>,
    /// Messages for the client: responses, and the server's own requests
    /// and notifications.
    pub from_gateway: mpsc::Receiver<Message>,
}

/// Why a session could not start.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// No server of that name.
    #[error("no MCP server named `{0}` behind this gateway")]
    UnknownServer(String),
}

/// A connection being made to a server.
pub type ConnectFuture = Pin<Box<dyn Future<Output = Result<Link, UpstreamError>> + Send>>;

/// How a session (and the start-up listing) reaches a server: in
/// production [`upstream_connector`]; tests put in-memory servers behind it.
pub type Connector = Arc<dyn Fn(&UpstreamSpec, &Limits) -> ConnectFuture + Send + Sync>;

/// The connector of a running gateway: [`upstream::connect`].
pub fn upstream_connector() -> Connector {
    Arc::new(|spec: &UpstreamSpec, limits: &Limits| {
        let (spec, limits) = (spec.clone(), limits.clone());
        Box::pin(async move { upstream::connect(&spec, &limits).await })
    })
}

/// Messages queued each way between a session and its client transport.
pub const SESSION_QUEUE: usize = 64;
/// Requests of one session the server has not answered yet; one more is
/// refused (`-32603`) rather than tracked.
pub const MAX_IN_FLIGHT: usize = 1024;
/// Calls of one session waiting for a person's approval at once; one more
/// is refused.
pub const MAX_HELD_CALLS: usize = 64;
/// Tools a server lists beyond its catalog that a session remembers (to
/// refuse their calls with what happened rather than as unknown).
pub const MAX_LISTED_ADDED: usize = 10_000;
/// Task-augmented calls of one session whose result was not fetched yet;
/// a server taking one more as a task has its answer withheld.
pub const MAX_TASKS: usize = 1024;
/// How often a held call looks its approval up.
pub const APPROVAL_POLL: Duration = Duration::from_millis(200);
/// The stateless protocol revision: its requests name it in `_meta`, its
/// results carry `resultType`.
pub const STATELESS_REVISION: &str = "2026-07-28";

/// Starts a session with `server` for one client; the session runs on its
/// own task until `to_gateway` is dropped. Call it within a Tokio runtime.
pub fn start_session(gateway: Arc<Gateway>, server: &str, info: SessionInfo) -> Result<SessionHandle, SessionError> {
    start_session_with(gateway, server, info, upstream_connector())
}

/// Starts a session as [`start_session`] does, reaching the server through
/// `connector`.
pub fn start_session_with(
    gateway: Arc<Gateway>,
    server: &str,
    info: SessionInfo,
    connector: Connector,
) -> Result<SessionHandle, SessionError> {
    let server = gateway
        .servers
        .get(server)
        .cloned()
        .ok_or_else(|| SessionError::UnknownServer(server.to_string()))?;
    let (to_gateway, client_rx) = mpsc::channel(SESSION_QUEUE);
    let (client_tx, from_gateway) = mpsc::channel(SESSION_QUEUE);
    let (held_tx, held_rx) = mpsc::channel(MAX_HELD_CALLS);
    let digests = server
        .catalog
        .tools
        .iter()
        .map(|(name, tool)| (name.clone(), tool.digest()))
        .collect();
    let session = Session {
        gateway,
        server,
        info,
        connector,
        client_rx,
        client_tx,
        link: None,
        initialize: None,
        initialized: None,
        client_name: None,
        pending: HashMap::new(),
        deadlines: BTreeMap::new(),
        held: HashMap::new(),
        holds: JoinSet::new(),
        held_tx,
        held_rx,
        listed: HashMap::new(),
        digests,
        tasks: HashMap::new(),
        next_id: 0,
        client_gone: false,
    };
    tokio::spawn(session.run());
    Ok(SessionHandle {
        to_gateway,
        from_gateway,
    })
}

/// A request forwarded to the server, waiting for its response.
struct Pending {
    what: Forwarded,
    /// Its key in `Session::deadlines` (`None`: no time bound).
    deadline: Option<(Instant, u64)>,
}

enum Forwarded {
    /// A `tools/call`, allowed.
    Call(Call),
    /// A `tools/list`; `first` when it asked for the first page.
    List { first: bool },
    /// Anything else.
    Other,
}

/// An allowed call, for checking its result.
struct Call {
    decision_id: String,
    tool: String,
    /// Whether the tool declares an `outputSchema` (then `output` is the
    /// result's `structuredContent`).
    structured: bool,
    /// Whether the request named the stateless revision (its results carry
    /// `resultType`).
    stateless: bool,
    /// Whether the client cancelled it: its result is still checked (a
    /// server may answer anyway), but a timeout is not answered.
    cancelled: bool,
}

/// How a tool the server lists now compares with the catalog.
#[derive(Clone, Debug, PartialEq)]
enum Listed {
    /// As in the catalog.
    Same,
    /// Not in the catalog.
    Added,
    /// In the catalog, listed differently: what changed.
    Changed(Vec<&'static str>),
}

/// What a held call came to.
struct HoldDone {
    id: Id,
    verdict: HoldVerdict,
}

enum HoldVerdict {
    /// Approved and decided `allow` again: forward the call.
    Forward { message: Message, call: Call },
    /// Refused: answer the client with this.
    Answer(Message),
}

struct Session {
    gateway: Arc<Gateway>,
    server: Arc<Server>,
    info: SessionInfo,
    connector: Connector,
    client_rx: mpsc::Receiver<Message>,
    client_tx: mpsc::Sender<Message>,
    link: Option<Link>,
    /// The client's `initialize`, replayed to a server started again.
    initialize: Option<Message>,
    /// The client's `notifications/initialized`, replayed likewise.
    initialized: Option<Message>,
    /// `clientInfo.name` of the client's `initialize` (the snapshot's
    /// `mcp_client`).
    client_name: Option<String>,
    pending: HashMap<Id, Pending>,
    deadlines: BTreeMap<(Instant, u64), Id>,
    /// Calls waiting for approval, by id.
    held: HashMap<Id, AbortHandle>,
    /// Their tasks (aborted when the session ends).
    holds: JoinSet<()>,
    held_tx: mpsc::Sender<HoldDone>,
    held_rx: mpsc::Receiver<HoldDone>,
    /// The tools the server last listed that differ from the catalog
    /// (changed, or added); a catalog tool not in it is as catalogued.
    listed: HashMap<String, Listed>,
    /// The catalog's digests, by tool.
    digests: HashMap<String, ToolDigest>,
    /// Task-augmented calls the server took as tasks, by task id: their
    /// result comes with `tasks/result`, checked as the call's.
    tasks: HashMap<String, Call>,
    next_id: u64,
    /// The client stopped reading: the session ends.
    client_gone: bool,
}

impl Session {
    async fn run(mut self) {
        loop {
            let next_deadline = self.deadlines.keys().next().map(|(at, _)| *at);
            tokio::select! {
                message = self.client_rx.recv() => match message {
                    Some(message) => self.client_message(message).await,
                    None => break,
                },
                event = next_event(&mut self.link) => self.server_event(event).await,
                Some(done) = self.held_rx.recv() => self.hold_done(done).await,
                () = sleep_until(next_deadline) => self.expire().await,
                // Reap finished hold tasks so that the set does not grow.
                Some(_) = self.holds.join_next(), if !self.holds.is_empty() => {}
            }
            if self.client_gone {
                break;
            }
        }
        tracing::debug!(server = %self.server.name, "MCP session ended");
    }

    // ---- client → server ----

    async fn client_message(&mut self, message: Message) {
        match message.kind.clone() {
            Kind::Request { id, method } => {
                // A second request with the id of one in flight would make
                // its response ambiguous: the result of a call could pass
                // as the answer to another request, unchecked.
                if self.pending.contains_key(&id) || self.held.contains_key(&id) {
                    let text = format!("request id {id} is already used by a request in flight");
                    self.send_client(jsonrpc::error(Some(&id), code::INVALID_REQUEST, text))
                        .await;
                    return;
                }
                match method.as_str() {
                    "tools/call" => self.call(id, message).await,
                    "tasks/result" => self.task_result(id, message).await,
                    "tools/list" => {
                        let first = message.params().get("cursor").is_none_or(Json::is_null);
                        self.forward_request(id, message, Forwarded::List { first }).await;
                    }
                    "initialize" => {
                        self.client_name = message
                            .params()
                            .pointer("/clientInfo/name")
                            .and_then(Json::as_str)
                            .map(str::to_string);
                        self.initialize = Some(message.clone());
                        self.initialized = None;
                        self.forward_request(id, message, Forwarded::Other).await;
                    }
                    _ => self.forward_request(id, message, Forwarded::Other).await,
                }
            }
            Kind::Notification { method } => {
                match method.as_str() {
                    "notifications/cancelled" => {
                        let target = message.params().get("requestId").and_then(Id::from_json);
                        if let Some(target) = target {
                            if let Some(hold) = self.held.remove(&target) {
                                // Never forwarded: the server knows nothing of it.
                                hold.abort();
                                tracing::info!(server = %self.server.name, id = %target, "a call waiting for approval was cancelled");
                                return;
                            }
                            if let Some(Pending {
                                what: Forwarded::Call(call),
                                ..
                            }) = self.pending.get_mut(&target)
                            {
                                call.cancelled = true;
                            }
                        }
                    }
                    "notifications/initialized" => self.initialized = Some(message.clone()),
                    // Only what is a notification by name goes on: a
                    // `tools/call` without an id would be a call no one
                    // decided, should a server run it anyway.
                    other if !other.starts_with("notifications/") => {
                        tracing::warn!(server = %self.server.name, method = %other, "a notification that is not `notifications/…` was dropped");
                        return;
                    }
                    _ => {}
                }
                self.forward_notification(message).await;
            }
            // The client's answers to the server's requests (sampling,
            // elicitation, roots).
            Kind::Response { .. } => self.forward_notification(message).await,
        }
    }

    /// Decides a `tools/call` and forwards it, holds it for approval, or
    /// answers it.
    async fn call(&mut self, id: Id, message: Message) {
        let params = message.params();
        let Some(params_map) = params.as_object() else {
            let text = "tools/call needs `params` with the tool's `name`";
            self.send_client(jsonrpc::error(Some(&id), code::INVALID_PARAMS, text))
                .await;
            return;
        };
        let Some(name) = params_map.get("name").and_then(Json::as_str) else {
            let text = "tools/call needs the tool's `name` (a string)";
            self.send_client(jsonrpc::error(Some(&id), code::INVALID_PARAMS, text))
                .await;
            return;
        };
        let input = match params_map.get("arguments") {
            None | Some(Json::Null) => Json::Object(Map::new()),
            Some(args @ Json::Object(_)) => args.clone(),
            Some(_) => {
                let text = format!("the `arguments` of tool `{name}` must be an object");
                self.send_client(jsonrpc::error(Some(&id), code::INVALID_PARAMS, text))
                    .await;
                return;
            }
        };
        let stateless = is_stateless(&message);
        let name = name.to_string();
        let catalogued = self.server.catalog.tools.get(&name);
        let listed = self.listed.get(&name);
        let refusal = match (catalogued, listed) {
            (None, None) => {
                let text = format!("unknown tool `{name}` of MCP server `{}`", self.server.name);
                self.send_client(jsonrpc::error(Some(&id), code::INVALID_PARAMS, text))
                    .await;
                return;
            }
            (None, Some(_)) => Some((
                "mcp_tool_not_pinned",
                format!(
                    "Blocked by Rein: tool `{name}` of server `{}` was added {}; {}",
                    self.server.name,
                    self.since(),
                    self.accept_hint()
                ),
            )),
            (Some(_), Some(Listed::Changed(parts))) => Some((
                "mcp_tool_changed",
                format!(
                    "Blocked by Rein: tool `{name}` of server `{}` changed {} ({}); {}",
                    self.server.name,
                    self.since(),
                    parts.join(", "),
                    self.accept_hint()
                ),
            )),
            _ => None,
        };
        let action = catalog::action_name(&self.server.name, &name);
        let refusal = refusal.or_else(|| {
            action.is_none().then(|| {
                (
                    "mcp_tool_name",
                    format!(
                        "Blocked by Rein: tool `{name}` of server `{}` cannot be named as a Rein action \
                         (`mcp.<server>.<tool>`), so its calls cannot be decided",
                        self.server.name
                    ),
                )
            })
        });
        if let Some((reason_code, text)) = refusal {
            let answer = self
                .refuse_recorded(reason_code, &text, action.as_deref(), &input, &message)
                .await;
            tracing::warn!(server = %self.server.name, tool = %name, "{text}");
            self.send_client(block_message(&id, &answer, &text, stateless, None))
                .await;
            return;
        }
        // (A tool without an action name was refused above.)
        let Some(action) = action else { return };
        let structured = catalogued.is_some_and(|t| t.output_schema().is_some());
        let request = self.request(action, input, &message);
        let runtime = Arc::clone(&self.gateway.runtime);
        let answer = runtime
            .decide_from(request.clone(), None, Some(&self.info.client))
            .await;
        let call = Call {
            decision_id: answer.decision_id.clone(),
            tool: name,
            structured,
            stateless,
            cancelled: false,
        };
        match answer.effect {
            Effect::Allow => self.forward_request(id, message, Forwarded::Call(call)).await,
            Effect::RequireApproval if answer.approval.is_some() => self.hold(id, message, request, answer, call).await,
            Effect::RequireApproval | Effect::Block => {
                let text = refusal_text(&answer);
                self.send_client(block_message(&id, &answer, &text, stateless, None))
                    .await;
            }
        }
    }

    /// `since it was pinned` or `since the gateway started`.
    fn since(&self) -> &'static str {
        if self.server.pinned {
            "since it was pinned"
        } else {
            "since the gateway started (the server is not pinned)"
        }
    }

    fn accept_hint(&self) -> &'static str {
        if self.server.pinned {
            "run `rein mcp pin` to accept it"
        } else {
            "restart the gateway (or pin the server with `rein mcp pin`) to accept it"
        }
    }

    /// The Rein request of a call.
    fn request(&self, action: String, input: Json, message: &Message) -> Request {
        let meta = message.params().get("_meta");
        let mut snapshot = Map::new();
        if let Some(tool_use_id) = meta.and_then(|m| m.get("claudecode/toolUseId")).and_then(Json::as_str) {
            snapshot.insert("tool_use_id".into(), json!(tool_use_id));
        }
        let client = self.client_name.clone().or_else(|| {
            meta.and_then(|m| m.pointer("/io.modelcontextprotocol~1clientInfo/name"))
                .and_then(Json::as_str)
                .map(str::to_string)
        });
        if let Some(client) = client {
            snapshot.insert("mcp_client".into(), json!(client));
        }
        let mut request = Request::new(action)
            .input(input)
            .actor(self.gateway.actor.clone())
            .snapshot(Json::Object(snapshot));
        request.session = self.info.session.clone().or_else(|| {
            meta.and_then(|m| m.get("rein/session"))
                .and_then(Json::as_str)
                .map(str::to_string)
        });
        request
    }

    /// Records a call refused before deciding (a tool that changed, was
    /// added, or cannot be named) as a `block` in the audit log.
    async fn refuse_recorded(
        &self,
        reason_code: &str,
        text: &str,
        action: Option<&str>,
        input: &Json,
        message: &Message,
    ) -> Answer {
        let mut body = Map::new();
        if let Some(action) = action {
            body.insert("action".into(), json!(action));
        }
        body.insert("input".into(), input.clone());
        if let Some(session) = self.request(String::new(), Json::Null, message).session {
            body.insert("session".into(), json!(session));
        }
        let body = serde_json::to_vec(&Json::Object(body)).unwrap_or_default();
        self.gateway
            .runtime
            .record_refusal(Refusal {
                phase: rein_engine::Phase::Before,
                status: 403,
                code: reason_code,
                message: text,
                body: Some(&body),
                declared_len: None,
                client: Some(&self.info.client),
            })
            .await
    }

    /// `tasks/result`: the result of a call the server ran as a task, checked
    /// as that call's. A task this session did not see created is refused:
    /// its result would reach the client unchecked.
    async fn task_result(&mut self, id: Id, message: Message) {
        let task_id = message.params().get("taskId").and_then(Json::as_str);
        match task_id.and_then(|t| self.tasks.remove(t)) {
            Some(call) => self.forward_request(id, message, Forwarded::Call(call)).await,
            None => {
                let text = format!(
                    "MCP server `{}`: no task {} of a call in this session (its result was fetched already, or the \
                     call was not made through Rein)",
                    self.server.name,
                    task_id.map_or_else(|| "(no `taskId`)".to_string(), |t| format!("`{t}`"))
                );
                self.send_client(jsonrpc::error(Some(&id), code::INVALID_PARAMS, text))
                    .await;
            }
        }
    }

    /// Holds a call that needs approval on a task of its own; the session
    /// keeps serving.
    async fn hold(&mut self, id: Id, message: Message, request: Request, answer: Answer, call: Call) {
        let Some(approval) = answer.approval.clone() else {
            return;
        };
        if self.held.len() >= MAX_HELD_CALLS {
            let text = format!(
                "Blocked by Rein: {MAX_HELD_CALLS} calls of this session already wait for approval; approval `{}` \
                 stays open for a later call",
                approval.id
            );
            self.send_client(block_message(&id, &answer, &text, call.stateless, Some(&approval.id)))
                .await;
            return;
        }
        tracing::warn!(
            server = %self.server.name,
            tool = %call.tool,
            approval = %approval.id,
            role = %approval.role,
            "a call waits for approval: `rein approvals grant {}` (or deny) within {}s",
            approval.id,
            self.gateway.approval_timeout.as_secs()
        );
        let held = Held {
            runtime: Arc::clone(&self.gateway.runtime),
            client: self.info.client.clone(),
            timeout: self.gateway.approval_timeout,
            done: self.held_tx.clone(),
            id: id.clone(),
            message,
            request,
            answer,
            call,
        };
        let abort = self.holds.spawn(held.wait());
        self.held.insert(id, abort);
    }

    async fn hold_done(&mut self, done: HoldDone) {
        // Cancelled in the meantime: nothing is sent, nothing forwarded.
        if self.held.remove(&done.id).is_none() {
            return;
        }
        match done.verdict {
            HoldVerdict::Forward { message, call } => {
                if self.pending.contains_key(&done.id) {
                    let text = format!("request id {} is already used by a request in flight", done.id);
                    self.send_client(jsonrpc::error(Some(&done.id), code::INVALID_REQUEST, text))
                        .await;
                    return;
                }
                self.forward_request(done.id, message, Forwarded::Call(call)).await;
            }
            HoldVerdict::Answer(message) => self.send_client(message).await,
        }
    }

    /// Forwards a request, to be answered by the server (or, failing that,
    /// by the gateway).
    async fn forward_request(&mut self, id: Id, message: Message, what: Forwarded) {
        if self.pending.len() >= MAX_IN_FLIGHT {
            let text = format!(
                "MCP server `{}`: {MAX_IN_FLIGHT} requests of this session are already waiting for it",
                self.server.name
            );
            self.answer_failed(&id, what, &text).await;
            return;
        }
        let is_initialize = message.method() == Some("initialize");
        if let Err(reason) = self.ensure_link(!is_initialize).await {
            let text = format!("MCP server `{}` is unavailable: {reason}", self.server.name);
            self.answer_failed(&id, what, &text).await;
            return;
        }
        // A long-lived subscription has no answer to wait for (nor has a
        // timeout too long to be a time).
        let deadline = match message.method() {
            Some("subscriptions/listen") => None,
            _ => Instant::now().checked_add(self.gateway.limits.upstream_timeout),
        }
        .map(|at| {
            self.next_id += 1;
            let key = (at, self.next_id);
            self.deadlines.insert(key, id.clone());
            key
        });
        self.pending.insert(id.clone(), Pending { what, deadline });
        if let Err(reason) = self.send_upstream(message).await {
            if let Some(pending) = self.take_pending(&id) {
                let text = format!("MCP server `{}`: {reason}", self.server.name);
                self.answer_failed(&id, pending.what, &text).await;
            }
        }
    }

    async fn forward_notification(&mut self, message: Message) {
        if let Err(reason) = self.ensure_link(true).await {
            tracing::warn!(server = %self.server.name, "a message for the server was dropped: {reason}");
            return;
        }
        if let Err(reason) = self.send_upstream(message).await {
            tracing::warn!(server = %self.server.name, "a message for the server was dropped: {reason}");
        }
    }

    /// Sends to the server; a server that does not take a message within
    /// the upstream timeout (it reads nothing) fails it.
    async fn send_upstream(&mut self, message: Message) -> Result<(), String> {
        let Some(link) = &self.link else {
            return Err("not connected".into());
        };
        match tokio::time::timeout(self.gateway.limits.upstream_timeout, link.tx.send(message)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => {
                self.lost("the connection to the server closed").await;
                Err("the connection to the server closed".into())
            }
            Err(_) => Err(format!(
                "the server did not read a message within {} s",
                self.gateway.limits.upstream_timeout.as_secs()
            )),
        }
    }

    /// Makes the link if there is none; `replay`: the client initialized
    /// the server that went away, so the new one is initialized the same
    /// way (its answer swallowed).
    async fn ensure_link(&mut self, replay: bool) -> Result<(), String> {
        if self.link.is_some() {
            return Ok(());
        }
        let limits = self.gateway.limits.clone();
        let connect = (self.connector)(&self.server.spec, &limits);
        let mut link = match tokio::time::timeout(limits.startup_timeout, connect).await {
            Ok(Ok(link)) => link,
            Ok(Err(e)) => return Err(e.to_string()),
            Err(_) => {
                return Err(format!(
                    "it did not start within {} s",
                    limits.startup_timeout.as_secs()
                ))
            }
        };
        if replay {
            if let Some(initialize) = self.initialize.clone() {
                self.next_id += 1;
                let id = Id::Str(format!("rein-gw-{}", self.next_id));
                let mut json = initialize.json.clone();
                json["id"] = id.to_json();
                let started = tokio::time::timeout(
                    limits.startup_timeout,
                    self.replay_initialize(&mut link, Message::from_json(json), &id),
                )
                .await;
                match started {
                    Ok(Ok(())) => {}
                    Ok(Err(reason)) => return Err(format!("started again, it failed to initialize: {reason}")),
                    Err(_) => {
                        return Err(format!(
                            "started again, it did not answer `initialize` within {} s",
                            limits.startup_timeout.as_secs()
                        ))
                    }
                }
                if let Some(initialized) = self.initialized.clone() {
                    if link.tx.send(initialized).await.is_err() {
                        return Err("started again, it closed the connection".into());
                    }
                }
                tracing::info!(server = %self.server.name, "the server was started again; the client's initialize was replayed");
            }
        }
        self.link = Some(link);
        Ok(())
    }

    async fn replay_initialize(&mut self, link: &mut Link, initialize: Message, id: &Id) -> Result<(), String> {
        if link.tx.send(initialize).await.is_err() {
            return Err("the connection closed".into());
        }
        loop {
            match link.rx.recv().await {
                Some(UpstreamEvent::Message(message)) => match &message.kind {
                    Kind::Response { id: Some(got), error } if got == id => {
                        if *error {
                            return Err(error_text(&message));
                        }
                        return Ok(());
                    }
                    // Requests and notifications the server sends while it
                    // starts (pings, logs) reach the client.
                    Kind::Request { .. } | Kind::Notification { .. } => self.send_client(message).await,
                    Kind::Response { .. } => {}
                },
                Some(UpstreamEvent::RequestFailed { id: failed, reason }) if &failed == id => return Err(reason),
                Some(UpstreamEvent::RequestFailed { .. }) => {}
                Some(UpstreamEvent::Fault(reason) | UpstreamEvent::Closed(reason)) => return Err(reason),
                None => return Err("the connection closed".into()),
            }
        }
    }

    // ---- server → client ----

    async fn server_event(&mut self, event: UpstreamEvent) {
        match event {
            UpstreamEvent::Message(message) => match &message.kind {
                Kind::Response { id: Some(id), .. } => {
                    let id = id.clone();
                    match self.take_pending(&id) {
                        Some(pending) => match pending.what {
                            Forwarded::Call(call) => self.call_result(&id, message, call).await,
                            Forwarded::List { first } => self.tools_list(message, first).await,
                            Forwarded::Other => self.send_client(message).await,
                        },
                        // Nothing asked for it (or it was answered already,
                        // at a timeout): never passed on unchecked.
                        None => {
                            tracing::debug!(server = %self.server.name, %id, "a response to no request in flight was dropped");
                        }
                    }
                }
                Kind::Response { id: None, .. } => {
                    tracing::warn!(server = %self.server.name, "the server reported an error about no request: {}", error_text(&message));
                }
                Kind::Request { .. } | Kind::Notification { .. } => self.send_client(message).await,
            },
            UpstreamEvent::RequestFailed { id, reason } => {
                if let Some(pending) = self.take_pending(&id) {
                    let text = format!("MCP server `{}` failed: {reason}", self.server.name);
                    self.answer_failed(&id, pending.what, &text).await;
                }
            }
            UpstreamEvent::Fault(reason) => {
                tracing::warn!(server = %self.server.name, "the server broke the protocol: {reason}");
                self.fail_all(&format!(
                    "MCP server `{}` broke the protocol: {reason}",
                    self.server.name
                ))
                .await;
            }
            UpstreamEvent::Closed(reason) => self.lost(&reason).await,
        }
    }

    /// The link is gone: every request in flight fails; the next message
    /// starts the server again.
    async fn lost(&mut self, reason: &str) {
        tracing::warn!(server = %self.server.name, "the connection to the server ended: {reason}");
        self.link = None;
        self.fail_all(&format!("MCP server `{}` stopped: {reason}", self.server.name))
            .await;
    }

    async fn fail_all(&mut self, text: &str) {
        self.deadlines.clear();
        let pending: Vec<(Id, Pending)> = self.pending.drain().collect();
        for (id, pending) in pending {
            self.answer_failed(&id, pending.what, text).await;
        }
    }

    fn take_pending(&mut self, id: &Id) -> Option<Pending> {
        let pending = self.pending.remove(id)?;
        if let Some(key) = pending.deadline {
            self.deadlines.remove(&key);
        }
        Some(pending)
    }

    /// Answers a request the server did not: `-32603` naming the server
    /// and why; a call's outcome is recorded with the error.
    async fn answer_failed(&mut self, id: &Id, what: Forwarded, text: &str) {
        if let Forwarded::Call(call) = what {
            let recorded = self
                .gateway
                .runtime
                .outcome_from(&call.decision_id, None, Some(text.to_string()), Some(&self.info.client))
                .await;
            if let Err(e) = recorded {
                tracing::warn!(decision = %call.decision_id, "the outcome was not recorded: {e}");
            }
            if call.cancelled {
                return;
            }
        }
        self.send_client(jsonrpc::error(Some(id), code::INTERNAL_ERROR, text))
            .await;
    }

    /// Requests the server did not answer in time.
    async fn expire(&mut self) {
        let now = Instant::now();
        while let Some((&(at, seq), _)) = self.deadlines.first_key_value() {
            if at > now {
                break;
            }
            let Some(id) = self.deadlines.remove(&(at, seq)) else {
                break;
            };
            let Some(pending) = self.pending.remove(&id) else {
                continue;
            };
            let seconds = self.gateway.limits.upstream_timeout.as_secs_f64();
            let reason = format!("no answer within {seconds} s (--upstream-timeout)");
            let cancel = jsonrpc::notification(
                "notifications/cancelled",
                json!({"requestId": id.to_json(), "reason": format!("Rein gateway: {reason}")}),
            );
            if let Some(link) = &self.link {
                // Best effort: a server too busy to take it is not waited for.
                let _ = link.tx.try_send(cancel);
            }
            tracing::warn!(server = %self.server.name, %id, "{reason}");
            let text = format!("MCP server `{}` failed: {reason}", self.server.name);
            self.answer_failed(&id, pending.what, &text).await;
        }
    }

    /// Checks a call's result (the output contract, the `after` rules)
    /// before the client sees it.
    async fn call_result(&mut self, id: &Id, message: Message, call: Call) {
        let (output, error) = match message.result() {
            None => (None, Some(error_text(&message))),
            Some(result) => {
                // A call the server runs as a task (MCP tasks, 2025-11-25):
                // the answer is the task, its result comes later with
                // `tasks/result`, which is checked as this call's.
                if let Some(task_id) = result.pointer("/task/taskId").and_then(Json::as_str) {
                    if self.tasks.len() < MAX_TASKS && !self.tasks.contains_key(task_id) {
                        self.tasks.insert(task_id.to_string(), call);
                        self.send_client(message).await;
                    } else {
                        let text = format!(
                            "Rein withheld the result of {}: the server made it task `{task_id}`, and this session \
                             cannot follow one more task",
                            call.tool
                        );
                        let why = json!({"id": call.decision_id, "effect": "block", "reasons": [text.clone()]});
                        self.send_client(jsonrpc::response(id, tool_error(&text, why, call.stateless)))
                            .await;
                    }
                    return;
                }
                // The stateless era's "ask the user first": no result yet,
                // the client retries the call (decided again). Only for a
                // stateless request, and only without content: a client of
                // the other era would read the content as the result.
                let input_required = result.get("resultType").and_then(Json::as_str) == Some("input_required");
                let carries_content = ["content", "structuredContent", "isError"]
                    .iter()
                    .any(|key| result.get(*key).is_some());
                if input_required && call.stateless && !carries_content {
                    self.send_client(message).await;
                    return;
                }
                let structured_content = result.get("structuredContent");
                if result.get("isError").and_then(Json::as_bool) == Some(true) {
                    let mut text = result_text(result);
                    // Whatever else the error result carries is part of it.
                    if let Some(extra) = structured_content {
                        push_line(&mut text, &extra.to_string());
                    }
                    if text.is_empty() {
                        text = "the tool reported an error".to_string();
                    }
                    (None, Some(text))
                } else if call.structured {
                    (Some(structured_content.cloned().unwrap_or(Json::Null)), None)
                } else {
                    // Structured content a tool did not declare is read as
                    // text too: it reaches the client all the same.
                    let mut text = result_text(result);
                    if let Some(extra) = structured_content {
                        push_line(&mut text, &extra.to_string());
                    }
                    (Some(json!({"text": text})), None)
                }
            }
        };
        let checked = self
            .gateway
            .runtime
            .outcome_from(&call.decision_id, output, error, Some(&self.info.client))
            .await;
        match checked {
            Ok(answer) if answer.effect == Effect::Allow => {
                let message = if call.structured {
                    only_checked_text(message, &call.tool)
                } else {
                    message
                };
                self.send_client(message).await;
            }
            Ok(answer) => {
                let text = withheld_text(&call.tool, &answer);
                tracing::warn!(server = %self.server.name, tool = %call.tool, decision = %answer.decision_id, "{text}");
                self.send_client(block_message(id, &answer, &text, call.stateless, None))
                    .await;
            }
            Err(refused) => {
                let text = format!("Rein withheld the result of {}: {refused}", call.tool);
                let result = tool_error(
                    &text,
                    json!({"id": call.decision_id, "effect": "block", "reasons": [refused.to_string()]}),
                    call.stateless,
                );
                self.send_client(jsonrpc::response(id, result)).await;
            }
        }
    }

    /// Hides the tools a client may not call: changed since the catalog,
    /// added since, not nameable as an action, or blocked by the policy
    /// whatever the call. The message passes unchanged if none is hidden.
    async fn tools_list(&mut self, message: Message, first: bool) {
        let Some(tools) = message.result().and_then(|r| r.get("tools")).and_then(Json::as_array) else {
            self.send_client(message).await;
            return;
        };
        if first {
            self.listed.clear();
        }
        let policy = self.gateway.runtime.policy();
        let mut seen = HashSet::new();
        let mut keep = Vec::with_capacity(tools.len());
        for raw in tools {
            let Ok(tool) = Tool::from_json(raw) else {
                continue;
            };
            let status = match self.digests.get(&tool.name) {
                None => Listed::Added,
                Some(pinned) => {
                    let parts = crate::pin::changed_parts(pinned, &tool.digest());
                    if parts.is_empty() {
                        Listed::Same
                    } else {
                        Listed::Changed(parts)
                    }
                }
            };
            // A name listed twice: which one would a call reach? Neither.
            if !seen.insert(tool.name.clone()) {
                self.listed
                    .insert(tool.name.clone(), Listed::Changed(vec!["listed twice"]));
                keep.retain(|kept: &&Json| kept.get("name").and_then(Json::as_str) != Some(tool.name.as_str()));
                continue;
            }
            if status != Listed::Same {
                tracing::warn!(
                    server = %self.server.name,
                    tool = %tool.name,
                    "hidden from tools/list: {}",
                    match &status {
                        Listed::Changed(parts) => format!("changed {} ({})", self.since(), parts.join(", ")),
                        _ => format!("added {}", self.since()),
                    }
                );
            }
            let visible = status == Listed::Same
                && catalog::action_name(&self.server.name, &tool.name)
                    .is_some_and(|action| !policy.blocks_unconditionally(&action));
            // Only what differs is kept: changed tools are at most the
            // catalog's; added ones, which a server can list without end,
            // up to a bound (past it their calls are refused as unknown).
            match status {
                Listed::Same => {
                    self.listed.remove(&tool.name);
                }
                Listed::Changed(_) => {
                    self.listed.insert(tool.name.clone(), status);
                }
                Listed::Added if self.listed.len() < MAX_LISTED_ADDED => {
                    self.listed.insert(tool.name.clone(), status);
                }
                Listed::Added => {}
            }
            if visible {
                keep.push(raw);
            }
        }
        if keep.len() == tools.len() {
            self.send_client(message).await;
            return;
        }
        let kept: Vec<Json> = keep.into_iter().cloned().collect();
        let mut json = message.json;
        json["result"]["tools"] = Json::Array(kept);
        self.send_client(Message::from_json(json)).await;
    }

    async fn send_client(&mut self, message: Message) {
        if self.client_tx.send(message).await.is_err() {
            self.client_gone = true;
        }
    }
}

/// What a link brings next; a link that ended without saying why is
/// closed. Never ready without a link.
async fn next_event(link: &mut Option<Link>) -> UpstreamEvent {
    match link {
        Some(link) => link
            .rx
            .recv()
            .await
            .unwrap_or_else(|| UpstreamEvent::Closed("the connection to the server ended".into())),
        None => std::future::pending().await,
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// A call waiting for approval, on its own task.
struct Held {
    runtime: Arc<Runtime>,
    client: String,
    timeout: Duration,
    done: mpsc::Sender<HoldDone>,
    id: Id,
    message: Message,
    request: Request,
    /// The `require_approval` decision.
    answer: Answer,
    call: Call,
}

impl Held {
    async fn wait(self) {
        let verdict = self.verdict().await;
        let _ = self.done.send(HoldDone { id: self.id, verdict }).await;
    }

    async fn verdict(&self) -> HoldVerdict {
        let Some(approval) = &self.answer.approval else {
            return self.refused("no approval was opened".into());
        };
        let approval_id = approval.id.as_str();
        // A timeout too long to be a time is no timeout.
        let deadline = Instant::now().checked_add(self.timeout);
        loop {
            let now = Instant::now();
            if deadline.is_some_and(|deadline| now >= deadline) {
                return self.refused(format!(
                    "no one decided approval `{approval_id}` within {} s",
                    self.timeout.as_secs()
                ));
            }
            let left = deadline.map_or(APPROVAL_POLL, |deadline| deadline - now);
            tokio::time::sleep(left.min(APPROVAL_POLL)).await;
            let record = match self.runtime.store().get_approval(approval_id).await {
                Ok(Some(record)) => record,
                Ok(None) => return self.refused(format!("approval `{approval_id}` no longer exists")),
                Err(e) => {
                    // Tried again until the timeout; never taken as a grant.
                    tracing::warn!(approval = %approval_id, "the approval could not be looked up: {e}");
                    continue;
                }
            };
            match record.state {
                ApprovalState::Pending => {
                    let expired = record
                        .expires_at
                        .parse::<jiff::Timestamp>()
                        .map_or(true, |at| at <= jiff::Timestamp::now());
                    if expired {
                        return self.refused(format!("approval `{approval_id}` expired before anyone decided it"));
                    }
                }
                ApprovalState::Granted => {
                    let answer = self
                        .runtime
                        .decide_from(self.request.clone(), Some(approval_id.to_string()), Some(&self.client))
                        .await;
                    if answer.effect == Effect::Allow {
                        tracing::info!(approval = %approval_id, tool = %self.call.tool, "approved: the call goes ahead");
                        return HoldVerdict::Forward {
                            message: self.message.clone(),
                            call: Call {
                                decision_id: answer.decision_id,
                                tool: self.call.tool.clone(),
                                structured: self.call.structured,
                                stateless: self.call.stateless,
                                cancelled: false,
                            },
                        };
                    }
                    let text = refusal_text(&answer);
                    return HoldVerdict::Answer(block_message(
                        &self.id,
                        &answer,
                        &text,
                        self.call.stateless,
                        Some(approval_id),
                    ));
                }
                ApprovalState::Denied => {
                    let by = record.decided_by.as_deref().unwrap_or("an approver");
                    let comment = record.comment.as_deref().map(|c| format!(": {c}")).unwrap_or_default();
                    return self.refused(format!("approval `{approval_id}` was denied by {by}{comment}"));
                }
                ApprovalState::Used => {
                    return self.refused(format!("approval `{approval_id}` was already used"));
                }
            }
        }
    }

    /// The call refused: the rule that asked for approval, and why it was
    /// not given.
    fn refused(&self, why: String) -> HoldVerdict {
        tracing::warn!(tool = %self.call.tool, "a call waiting for approval is refused: {why}");
        let text = format!("{} — {why}", refusal_text(&self.answer));
        let mut answer = self.answer.clone();
        answer.effect = Effect::Block;
        answer.reasons.push(why);
        let approval = self.answer.approval.as_ref().map(|a| a.id.as_str());
        HoldVerdict::Answer(block_message(&self.id, &answer, &text, self.call.stateless, approval))
    }
}

/// Whether a request names the stateless revision (or a later one) in its
/// `_meta`.
fn is_stateless(message: &Message) -> bool {
    message.meta_protocol_version().is_some_and(|v| v >= STATELESS_REVISION)
}

/// The text a call result shows the model: every text content block (and
/// the text of every embedded resource, which is as much the result),
/// joined with newlines.
pub fn result_text(result: &Json) -> String {
    let Some(content) = result.get("content").and_then(Json::as_array) else {
        return String::new();
    };
    let texts: Vec<&str> = content
        .iter()
        .filter_map(|block| match block.get("type").and_then(Json::as_str) {
            Some("text") => block.get("text").and_then(Json::as_str),
            Some("resource") => block.pointer("/resource/text").and_then(Json::as_str),
            _ => None,
        })
        .collect();
    texts.join("\n")
}

/// The result of a tool with an `outputSchema` as the client may see it:
/// the rules read only its `structuredContent`, so a text block that says
/// something else (neither that content as JSON nor one of its values) is
/// replaced by the content as JSON. Results whose text mirrors their
/// structured content, as the spec asks, pass as their bytes.
fn only_checked_text(message: Message, tool: &str) -> Message {
    let Some(result) = message.result() else { return message };
    let structured = result.get("structuredContent").unwrap_or(&Json::Null);
    let Some(content) = result.get("content").and_then(Json::as_array) else {
        return message;
    };
    let covered = |block: &Json| {
        let text = match block.get("type").and_then(Json::as_str) {
            Some("text") => block.get("text").and_then(Json::as_str),
            Some("resource") => block.pointer("/resource/text").and_then(Json::as_str),
            _ => return true,
        };
        text.is_none_or(|text| {
            text.trim().is_empty()
                || has_value(structured, &Json::String(text.to_string()))
                || rein_engine::json::parse_strict(text.as_bytes()).is_ok_and(|parsed| has_value(structured, &parsed))
        })
    };
    if content.iter().all(covered) {
        return message;
    }
    tracing::warn!(tool = %tool, "a result's text said more than its structured content; the text was replaced by that content");
    let mut kept: Vec<Json> = content.iter().filter(|b| covered(b)).cloned().collect();
    kept.push(json!({"type": "text", "text": structured.to_string()}));
    let mut json = message.json;
    json["result"]["content"] = Json::Array(kept);
    Message::from_json(json)
}

/// Whether `part` is `value` or a value inside it (a text block may be the
/// structured content as JSON, or one of its values: `5` for
/// `{"result": 5}`, a file's text for `{"content": <the text>}`).
fn has_value(value: &Json, part: &Json) -> bool {
    value == part
        || match value {
            Json::Array(items) => items.iter().any(|v| has_value(v, part)),
            Json::Object(map) => map.values().any(|v| has_value(v, part)),
            _ => false,
        }
}

/// An error response's text: `JSON-RPC error <code>: <message>`, and its
/// `data` (which reaches the client as much as the message does).
fn error_text(message: &Message) -> String {
    let error = message.json.get("error");
    let code = error.and_then(|e| e.get("code")).and_then(Json::as_i64).unwrap_or(0);
    let text = error
        .and_then(|e| e.get("message"))
        .and_then(Json::as_str)
        .unwrap_or("(no message)");
    match error.and_then(|e| e.get("data")) {
        Some(data) => format!("JSON-RPC error {code}: {text} (data: {data})"),
        None => format!("JSON-RPC error {code}: {text}"),
    }
}

fn push_line(text: &mut String, line: &str) {
    if !text.is_empty() {
        text.push('\n');
    }
    text.push_str(line);
}

/// Why a call is blocked, for the model: the blocking rule and its reason,
/// or the contract violation, or the runtime's reasons.
pub fn refusal_text(answer: &Answer) -> String {
    if let Some(violation) = &answer.violation {
        return format!("Blocked by Rein: {violation}");
    }
    let rule = answer
        .matched
        .iter()
        .find(|m| m.effect == Effect::Block)
        .or_else(|| answer.matched.iter().find(|m| m.effect == Effect::RequireApproval));
    match rule {
        Some(rule) if answer.errors.is_empty() => format!("Blocked by Rein rule {}: {}", rule.id, rule.reason),
        _ if !answer.reasons.is_empty() => format!("Blocked by Rein: {}", answer.reasons.join("; ")),
        _ => "Blocked by Rein: the policy does not allow it".to_string(),
    }
}

/// Why a result is withheld, for the model.
pub fn withheld_text(tool: &str, answer: &Answer) -> String {
    if let Some(violation) = &answer.violation {
        return format!("Rein withheld the result of {tool}: {violation}");
    }
    match answer.matched.iter().find(|m| m.effect == Effect::Block) {
        Some(rule) if answer.errors.is_empty() => {
            format!("Rein withheld the result of {tool}: rule {}: {}", rule.id, rule.reason)
        }
        _ if !answer.reasons.is_empty() => format!("Rein withheld the result of {tool}: {}", answer.reasons.join("; ")),
        _ => format!("Rein withheld the result of {tool}: the policy does not allow it"),
    }
}

/// A tool result with `isError: true`: what a refusal is to the model.
fn tool_error(text: &str, decision: Json, stateless: bool) -> Json {
    let mut result = json!({
        "content": [{"type": "text", "text": text}],
        "isError": true,
        "_meta": {"rein/decision": decision},
    });
    if stateless {
        result["resultType"] = json!("complete");
    }
    result
}

/// The response refusing a call (or withholding its result), with the
/// decision in `_meta["rein/decision"]`.
fn block_message(id: &Id, answer: &Answer, text: &str, stateless: bool, approval: Option<&str>) -> Message {
    let mut decision = json!({
        "id": answer.decision_id,
        "effect": "block",
        "rules": answer.rules,
        "reasons": answer.reasons,
    });
    if let Some(approval) = approval {
        decision["approval"] = json!(approval);
    }
    jsonrpc::response(id, tool_error(text, decision, stateless))
}
