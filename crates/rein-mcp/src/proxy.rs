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
use rein_runtime::{Answer, PendingApproval, Refusal, Runtime};
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
/// a server taking one more as a task has its answer refused.
pub const MAX_TASKS: usize = 1024;
/// What the session a stateless-era client names in `_meta["rein/session"]`
/// is prefixed with, so that it never equals a session the gateway issued.
pub const NAMED_SESSION_PREFIX: &str = "named/";
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
        unanswered: HashSet::new(),
        deadlines: BTreeMap::new(),
        held: HashMap::new(),
        holds: JoinSet::new(),
        held_tx,
        held_rx,
        listed: HashMap::new(),
        tasks: HashMap::new(),
        digests,
        elicitations: HashMap::new(),
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
#[derive(Clone)]
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
    /// Which hold of that id (ids are reused once a call is answered).
    hold: u64,
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
    /// Ids of requests the server got and was not heard answering (timed
    /// out, or failed while the link stayed up): it may answer them yet,
    /// so no new request may take one until it does or the link ends —
    /// its late answer would pass as the new request's.
    unanswered: HashSet<Id>,
    deadlines: BTreeMap<(Instant, u64), Id>,
    /// Calls waiting for approval, by id, with the number of their hold:
    /// a verdict that comes for an earlier hold of the same id (cancelled,
    /// its id since reused) is dropped.
    held: HashMap<Id, (u64, AbortHandle)>,
    /// Their tasks (aborted when the session ends).
    holds: JoinSet<()>,
    held_tx: mpsc::Sender<HoldDone>,
    held_rx: mpsc::Receiver<HoldDone>,
    /// The tools the server last listed that differ from the catalog
    /// (changed, or added); a catalog tool not in it is as catalogued.
    listed: HashMap<String, Listed>,
    /// Tasks (MCP tasks) allowed calls of this session created, by task id,
    /// waiting for their `tasks/result`: the task's result is the call's,
    /// checked as the call's.
    tasks: HashMap<String, Call>,
    /// The catalog's digests, by tool.
    digests: HashMap<String, ToolDigest>,
    /// Approvals asked of the client's user through MCP elicitation, by
    /// the id of the gateway's `elicitation/create` request: the approval
    /// and the role its answer decides.
    elicitations: HashMap<Id, (String, String)>,
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
        self.record_unfinished().await;
        tracing::debug!(server = %self.server.name, "MCP session ended");
    }

    /// The session ends with calls the server got and did not answer (or
    /// tasks whose result no one fetched): their outcome is recorded as
    /// unknown, so that no allowed call is left without one.
    async fn record_unfinished(&mut self) {
        let calls: Vec<Call> = self
            .pending
            .drain()
            .filter_map(|(_, pending)| match pending.what {
                Forwarded::Call(call) => Some(call),
                _ => None,
            })
            .chain(self.tasks.drain().map(|(_, call)| call))
            .collect();
        for call in calls {
            let text = format!(
                "the client's session ended before MCP server `{}` answered; what the call did is unknown",
                self.server.name
            );
            let recorded = self
                .gateway
                .runtime
                .outcome_from(&call.decision_id, None, Some(text), Some(&self.info.client))
                .await;
            if let Err(e) = recorded {
                tracing::warn!(decision = %call.decision_id, "the outcome was not recorded: {e}");
            }
        }
    }

    // ---- client → server ----

    async fn client_message(&mut self, message: Message) {
        match message.kind.clone() {
            Kind::Request { id, method } => {
                // A second request with the id of one in flight would make
                // its response ambiguous: the result of a call could pass
                // as the answer to another request, unchecked.
                if let Some(text) = self.id_in_use(&id) {
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
                            if let Some((_, hold)) = self.held.remove(&target) {
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
            Kind::Response { id: Some(id), .. } if self.elicitations.contains_key(&id) => {
                self.elicitation_answered(&id, &message).await;
            }
            Kind::Response { .. } => self.forward_notification(message).await,
        }
    }

    /// Why a new request may not take `id`, if it may not.
    fn id_in_use(&self, id: &Id) -> Option<String> {
        if self.held.contains_key(id) {
            return Some(format!("request id {id} is already used by a request in flight"));
        }
        self.id_in_use_upstream(id)
    }

    /// Why `id` may not go to the server now, if it may not.
    fn id_in_use_upstream(&self, id: &Id) -> Option<String> {
        if self.pending.contains_key(id) {
            return Some(format!("request id {id} is already used by a request in flight"));
        }
        self.unanswered.contains(id).then(|| {
            format!(
                "request id {id} was used by a request MCP server `{}` has not answered yet; use another id",
                self.server.name
            )
        })
    }

    /// Remembers that the server may still answer `id`. Past the bound,
    /// the link is dropped instead (a new server knows none of them):
    /// `false`, and the caller fails what else is in flight.
    fn left_unanswered(&mut self, id: Id) -> bool {
        if self.link.is_none() {
            return true;
        }
        if self.unanswered.len() >= MAX_IN_FLIGHT {
            tracing::warn!(server = %self.server.name, "{MAX_IN_FLIGHT} requests were left unanswered: the connection is made again");
            self.link = None;
            self.unanswered.clear();
            return false;
        }
        self.unanswered.insert(id);
        true
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
        // The request moves into the decision (no copy on the path of every
        // call); a held call, the rare case, builds it again to re-decide.
        let request = self.request(action.clone(), input, &message);
        let runtime = Arc::clone(&self.gateway.runtime);
        let answer = runtime.decide_from(request, None, Some(&self.info.client)).await;
        let call = Call {
            decision_id: answer.decision_id.clone(),
            tool: name,
            structured,
            stateless,
            cancelled: false,
        };
        match answer.effect {
            Effect::Allow => self.forward_request(id, message, Forwarded::Call(call)).await,
            Effect::RequireApproval if answer.approval.is_some() => {
                // The arguments were checked above: an object, or absent.
                let input = message
                    .params()
                    .get("arguments")
                    .filter(|a| a.is_object())
                    .cloned()
                    .unwrap_or_else(|| Json::Object(Map::new()));
                let request = self.request(action, input, &message);
                self.hold(id, message, request, answer, call).await;
            }
            Effect::RequireApproval | Effect::Block => {
                let text = refusal_text(&answer);
                self.send_client(block_message(&id, &answer, &text, stateless, None))
                    .await;
            }
        }
    }

    /// Asks for the result of a task a call created: forwarded as that
    /// call, so that its result goes through the call's `after` rules. A
    /// task no allowed call of this session created (another session's,
    /// one whose result was already given) has no decision to check its
    /// result against: refused, never forwarded.
    async fn task_result(&mut self, id: Id, message: Message) {
        let task = message.params().get("taskId").and_then(Json::as_str);
        let Some(call) = task.and_then(|task| self.tasks.remove(task)) else {
            let text = format!(
                "tasks/result: no task of this session's tool calls is {} (a task's result is given once)",
                task.map_or_else(|| "named".to_string(), |t| format!("`{t}`"))
            );
            self.send_client(jsonrpc::error(Some(&id), code::INVALID_PARAMS, text))
                .await;
            return;
        };
        self.forward_request(id, message, Forwarded::Call(call)).await;
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
        // A session the client names itself (stateless era) is kept apart
        // from the ones the gateway issues (a stdio gateway's, an HTTP
        // session's): naming one of those must not read or add to its state.
        request.session = self.info.session.clone().or_else(|| {
            meta.and_then(|m| m.get("rein/session"))
                .and_then(Json::as_str)
                .map(|named| format!("{NAMED_SESSION_PREFIX}{named}"))
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
        // What the client's user is shown if asked (a bounded preview).
        let mut input_preview = request.input.to_string();
        if input_preview.len() > 500 {
            let mut cut = 500;
            while !input_preview.is_char_boundary(cut) {
                cut -= 1;
            }
            input_preview.truncate(cut);
            input_preview.push('…');
        }
        let (tool, stateless) = (call.tool.clone(), call.stateless);
        self.next_id += 1;
        let hold = self.next_id;
        let held = Held {
            hold,
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
        self.held.insert(id, (hold, abort));
        self.ask_through_elicitation(&approval, &tool, stateless, &input_preview)
            .await;
    }

    /// Asks the client's user to grant a held call, when the gateway lets
    /// them decide this approval's role (`--elicit-approvals`), every rule
    /// that asked names that role, and the client declared elicitation in
    /// its `initialize` (handshake era; a stateless client is not asked).
    /// The held call still waits on the store, so `rein approvals` can
    /// decide it too.
    async fn ask_through_elicitation(&mut self, approval: &PendingApproval, tool: &str, stateless: bool, input: &str) {
        let Some(role) = self.gateway.elicit_approval_role.clone() else {
            return;
        };
        let supported = self
            .initialize
            .as_ref()
            .and_then(|m| m.params().pointer("/capabilities/elicitation"))
            .is_some_and(Json::is_object);
        if stateless
            || !supported
            || approval.roles.is_empty()
            || approval.roles.iter().any(|r| *r != role)
            || self.elicitations.len() >= MAX_HELD_CALLS
        {
            return;
        }
        self.next_id += 1;
        let id = Id::Str(format!("rein-gw-{}", self.next_id));
        let text = format!(
            "Rein: a rule asks for approval before `{tool}` of MCP server `{}` runs, with {input}. Allow this call?",
            self.server.name
        );
        let params = json!({
            "mode": "form",
            "message": text,
            "requestedSchema": {
                "type": "object",
                "properties": {"approve": {"type": "boolean", "title": "Allow this call"}},
                "required": ["approve"],
            },
        });
        self.elicitations.insert(id.clone(), (approval.id.clone(), role));
        self.send_client(jsonrpc::request(&id, "elicitation/create", params))
            .await;
    }

    /// The user's answer to an approval asked through elicitation: accepted
    /// with `approve: true` grants, accepted with `false` or declined
    /// denies; cancelled (dismissed) or an error leaves the approval
    /// pending for `rein approvals`.
    async fn elicitation_answered(&mut self, id: &Id, message: &Message) {
        let Some((approval, role)) = self.elicitations.remove(id) else {
            return;
        };
        let result = message.result();
        let action = result.and_then(|r| r.get("action")).and_then(Json::as_str);
        let approve = result
            .and_then(|r| r.pointer("/content/approve"))
            .and_then(Json::as_bool);
        let grant = match (action, approve) {
            (Some("accept"), Some(true)) => true,
            (Some("accept"), Some(false)) | (Some("decline"), _) => false,
            _ => {
                tracing::info!(approval = %approval, "the client's user dismissed the approval; it stays pending");
                return;
            }
        };
        let name = format!("mcp-user:{}", self.client_name.as_deref().unwrap_or("client"));
        let roles = [role];
        let approver = rein_runtime::Approver {
            name: &name,
            roles: Some(&roles),
            credential: None,
        };
        let decided = self
            .gateway
            .runtime
            .decide_approval(
                &approval,
                grant,
                approver,
                Some("answered in the MCP client (elicitation)"),
            )
            .await;
        match decided {
            Ok(_) => tracing::info!(approval = %approval, grant, "approval decided by the client's user"),
            Err(e) => tracing::warn!(approval = %approval, "the client's answer could not decide the approval: {e}"),
        }
    }

    async fn hold_done(&mut self, done: HoldDone) {
        // Cancelled in the meantime: nothing is sent, nothing forwarded.
        // Or cancelled, and its id reused by a call held since: that call
        // waits for its own verdict.
        match self.held.get(&done.id) {
            Some((hold, _)) if *hold == done.hold => {
                self.held.remove(&done.id);
            }
            _ => return,
        }
        match done.verdict {
            HoldVerdict::Forward { message, call } => {
                if let Some(text) = self.id_in_use_upstream(&done.id) {
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
    /// the upstream timeout (it reads nothing) fails it. While the server
    /// is not taking it, what the server sends is served: a server that
    /// stops reading until its output is read (a stdio server whose stdout
    /// pipe is full) would otherwise wait on the gateway as the gateway
    /// waits on it.
    async fn send_upstream(&mut self, message: Message) -> Result<(), String> {
        enum Step {
            Sent,
            Closed,
            Event(UpstreamEvent),
            TimedOut,
        }
        if self.link.is_none() {
            return Err("not connected".into());
        }
        let deadline = Instant::now().checked_add(self.gateway.limits.upstream_timeout);
        let mut message = Some(message);
        loop {
            let Some(link) = self.link.as_mut() else {
                return Err("the connection to the server closed".into());
            };
            let step = tokio::select! {
                permit = link.tx.reserve() => match (permit, message.take()) {
                    (Ok(permit), Some(message)) => {
                        permit.send(message);
                        Step::Sent
                    }
                    (Ok(_), None) => Step::Sent,
                    (Err(_), _) => Step::Closed,
                },
                event = link.rx.recv() => Step::Event(
                    event.unwrap_or_else(|| UpstreamEvent::Closed("the connection to the server ended".into())),
                ),
                () = sleep_until(deadline) => Step::TimedOut,
            };
            match step {
                Step::Sent => return Ok(()),
                Step::Closed => {
                    self.lost("the connection to the server closed").await;
                    return Err("the connection to the server closed".into());
                }
                Step::Event(event) => self.server_event(event).await,
                Step::TimedOut => {
                    return Err(format!(
                        "the server did not read a message within {} s",
                        self.gateway.limits.upstream_timeout.as_secs_f64()
                    ))
                }
            }
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
                        None if self.unanswered.remove(&id) => {
                            tracing::debug!(server = %self.server.name, %id, "a late response to a request already answered was dropped");
                        }
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
                    // An HTTP server may have got the request whose POST failed.
                    let kept = self.left_unanswered(id.clone());
                    let text = format!("MCP server `{}` failed: {reason}", self.server.name);
                    self.answer_failed(&id, pending.what, &text).await;
                    if !kept {
                        self.lost("too many requests left unanswered").await;
                    }
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
        self.unanswered.clear();
        self.fail_all(&format!("MCP server `{}` stopped: {reason}", self.server.name))
            .await;
    }

    async fn fail_all(&mut self, text: &str) {
        self.deadlines.clear();
        let pending: Vec<(Id, Pending)> = self.pending.drain().collect();
        for (id, pending) in pending {
            // (Past the bound the link is dropped; the rest fail here anyway.)
            self.left_unanswered(id.clone());
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
            let kept = self.left_unanswered(id.clone());
            let text = format!("MCP server `{}` failed: {reason}", self.server.name);
            self.answer_failed(&id, pending.what, &text).await;
            if !kept {
                self.lost("too many requests left unanswered").await;
                return;
            }
        }
    }

    /// Checks a call's result (the output contract, the `after` rules)
    /// before the client sees it.
    async fn call_result(&mut self, id: &Id, mut message: Message, call: Call) {
        // A structured result whose text says something else than its
        // structured content, which is all the rules read: the client gets
        // the structured content as that text instead.
        let mut restated = None;
        let (output, error) = match message.result() {
            None => (None, Some(error_text(&message))),
            Some(result) => {
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
                // Another kind of result (an extension's `resultType`, such
                // as a task whose result another method brings): what it
                // leads to cannot be checked, so it is withheld.
                let result_type = result.get("resultType");
                let known = match result_type {
                    None => true,
                    Some(Json::String(kind)) => kind == "complete" || kind == "input_required",
                    Some(_) => false,
                };
                if !known {
                    let kind = result_type.map(Json::to_string).unwrap_or_default();
                    let text = format!(
                        "Rein withheld the result of {}: its resultType {kind} is not one the gateway can check",
                        call.tool
                    );
                    tracing::warn!(server = %self.server.name, tool = %call.tool, "{text}");
                    let recorded = self
                        .gateway
                        .runtime
                        .outcome_from(&call.decision_id, None, Some(text.clone()), Some(&self.info.client))
                        .await;
                    if let Err(e) = recorded {
                        tracing::warn!(decision = %call.decision_id, "the outcome was not recorded: {e}");
                    }
                    let decision = json!({"id": call.decision_id, "effect": "block", "reasons": [text.clone()]});
                    self.send_client(jsonrpc::response(id, tool_error(&text, decision, call.stateless)))
                        .await;
                    return;
                }
                // A task created (MCP tasks): the result comes by
                // `tasks/result`, checked then. Only without content: what
                // a client sees now is checked now.
                let task = result.pointer("/task/taskId").and_then(Json::as_str);
                if let (Some(task), false) = (task, carries_content) {
                    if self.tasks.len() >= MAX_TASKS && !self.tasks.contains_key(task) {
                        let text = format!(
                            "MCP server `{}`: {MAX_TASKS} tasks of this session already wait for their results",
                            self.server.name
                        );
                        self.answer_failed(id, Forwarded::Call(call), &text).await;
                        return;
                    }
                    self.tasks.insert(task.to_string(), call);
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
                    let structured = structured_content.cloned().unwrap_or(Json::Null);
                    if !text_restates(result, &structured) {
                        restated = Some(restated_result(result, &structured));
                    }
                    (Some(structured), None)
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
                if let Some(result) = restated {
                    tracing::warn!(server = %self.server.name, tool = %call.tool, "the text of a structured result differs from its structured content: replaced by it");
                    message = jsonrpc::response(id, result);
                }
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
    /// The number of this hold (see `Session::held`).
    hold: u64,
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
        let _ = self
            .done
            .send(HoldDone {
                id: self.id,
                hold: self.hold,
                verdict,
            })
            .await;
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
/// the text of every embedded resource, which is as much the result, and
/// what a resource link says of itself), joined with newlines.
pub fn result_text(result: &Json) -> String {
    let Some(content) = result.get("content").and_then(Json::as_array) else {
        return String::new();
    };
    let texts: Vec<&str> = content.iter().flat_map(block_texts).collect();
    texts.join("\n")
}

/// Whether every text of a result (text blocks, embedded resources' text)
/// restates its structured content as the SDKs write it: its JSON, or, for
/// structured content of one field (a wrapped return value), that value's
/// JSON or the string itself.
fn text_restates(result: &Json, structured: &Json) -> bool {
    let single = structured
        .as_object()
        .filter(|fields| fields.len() == 1)
        .and_then(|fields| fields.values().next());
    let Some(content) = result.get("content").and_then(Json::as_array) else {
        return true;
    };
    content.iter().flat_map(block_texts).all(|text| {
        let parsed = serde_json::from_str::<Json>(text).ok();
        parsed.as_ref() == Some(structured)
            || single.is_some_and(|value| parsed.as_ref() == Some(value) || value.as_str() == Some(text))
    })
}

/// The texts of a content block the rules read: a text block's text, an
/// embedded resource's text, a resource link's URI, name, title and
/// description (a client shows them to the model); none for images, audio
/// and blobs.
fn block_texts(block: &Json) -> Vec<&str> {
    let strings = |keys: &[&str]| -> Vec<&str> {
        keys.iter()
            .filter_map(|k| block.get(*k).and_then(Json::as_str))
            .collect()
    };
    match block.get("type").and_then(Json::as_str) {
        Some("text") => strings(&["text"]),
        Some("resource") => block
            .pointer("/resource/text")
            .and_then(Json::as_str)
            .into_iter()
            .collect(),
        Some("resource_link") => strings(&["uri", "name", "title", "description"]),
        _ => Vec::new(),
    }
}

/// The result with its text blocks (and embedded resources with text)
/// replaced by one text block holding the JSON of its structured content.
fn restated_result(result: &Json, structured: &Json) -> Json {
    let mut result = result.clone();
    let mut content = vec![json!({"type": "text", "text": structured.to_string()})];
    if let Some(blocks) = result.get("content").and_then(Json::as_array) {
        content.extend(blocks.iter().filter(|block| block_texts(block).is_empty()).cloned());
    }
    result["content"] = Json::Array(content);
    result
}

/// An error response's text: `JSON-RPC error <code>: <message>`, and its
/// `data` (which reaches the client as much as the message does).
pub(crate) fn error_text(message: &Message) -> String {
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
