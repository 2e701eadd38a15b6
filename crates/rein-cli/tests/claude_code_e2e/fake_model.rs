//! A scripted stand-in for the Anthropic Messages API, on 127.0.0.1.
//!
//! Claude Code sends `POST /v1/messages?beta=true` with `stream: true` and
//! the whole conversation so far. The n-th scripted tool call is answered
//! once the conversation holds n `tool_result` blocks (Claude Code merges
//! consecutive turns of one role, so the blocks are counted across all
//! messages, not per message); after the last one the model says "done".
//! Every request body is kept: the `tool_result` blocks in the last one are
//! what the model was told, which is what the tests assert on.
//!
//! A sub-agent (Claude Code's `Agent` tool) talks to the same API in a
//! conversation of its own, which starts with the prompt the main agent
//! gave it: a conversation whose first user message holds the marker of a
//! sub-agent script ([`FakeModel::start_with_subagent`]) is served that
//! script instead, with tool ids of its own ([`sub_tool_use_id`]).

use crate::http::{HttpServer, Request, Response};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// The text of the model's last answer, after the script has run out.
pub const FINAL_TEXT: &str = "done: every scripted tool call was made";

/// One scripted model turn: call `name` with `input`.
#[derive(Clone, Debug)]
pub struct ToolCall {
    pub name: String,
    pub input: Value,
}

impl ToolCall {
    pub fn new(name: &str, input: Value) -> ToolCall {
        ToolCall {
            name: name.to_string(),
            input,
        }
    }

    pub fn bash(command: &str) -> ToolCall {
        ToolCall::new(
            "Bash",
            json!({"command": command, "description": "scripted by the e2e test"}),
        )
    }
}

/// The id the fake model gives its `i`-th tool call.
pub fn tool_use_id(i: usize) -> String {
    format!("toolu_e2e_{i:02}")
}

/// The id the fake model gives the `i`-th tool call of a sub-agent.
pub fn sub_tool_use_id(i: usize) -> String {
    format!("toolu_e2e_sub_{i:02}")
}

/// What a sub-agent's conversation ends with, after its script.
pub const SUB_FINAL_TEXT: &str = "sub-agent done: every scripted tool call was made";

/// What Claude Code told the model about one tool call.
#[derive(Clone, Debug)]
pub struct ToolResult {
    pub is_error: bool,
    /// The content, text blocks joined by newlines.
    pub text: String,
}

/// Called with the index of the scripted call about to be sent, before it is.
pub type BeforeTurn = Box<dyn Fn(usize) + Send + Sync>;

struct State {
    script: Vec<ToolCall>,
    /// `(marker, script)` of sub-agent conversations.
    sub: Option<(String, Vec<ToolCall>)>,
    before_turn: Option<BeforeTurn>,
    requests: Mutex<Vec<Value>>,
}

/// The server; stops when dropped.
pub struct FakeModel {
    state: Arc<State>,
    http: HttpServer,
}

impl FakeModel {
    /// Binds 127.0.0.1 on a free port and serves `script`.
    pub fn start(script: Vec<ToolCall>) -> FakeModel {
        FakeModel::start_with(script, None)
    }

    /// As `start`, calling `before_turn(i)` before it sends the `i`-th call
    /// (to change the world between two turns, e.g. kill a server).
    pub fn start_with(script: Vec<ToolCall>, before_turn: Option<BeforeTurn>) -> FakeModel {
        FakeModel::serve(State {
            script,
            sub: None,
            before_turn,
            requests: Mutex::new(Vec::new()),
        })
    }

    /// As `start`, serving `sub` to every conversation whose first user
    /// message contains `marker` (a sub-agent given a prompt holding it).
    pub fn start_with_subagent(script: Vec<ToolCall>, marker: &str, sub: Vec<ToolCall>) -> FakeModel {
        FakeModel::serve(State {
            script,
            sub: Some((marker.to_string(), sub)),
            before_turn: None,
            requests: Mutex::new(Vec::new()),
        })
    }

    fn serve(state: State) -> FakeModel {
        let state = Arc::new(state);
        let http = {
            let state = state.clone();
            HttpServer::start(Arc::new(move |req: &Request| route(&state, req)))
        };
        FakeModel { state, http }
    }

    /// For `ANTHROPIC_BASE_URL`.
    pub fn base_url(&self) -> String {
        self.http.url()
    }

    /// Every Messages request body received, in order.
    pub fn requests(&self) -> Vec<Value> {
        self.state.requests.lock().unwrap().clone()
    }

    /// The `tool_result` blocks of the last request, by `tool_use_id`.
    pub fn tool_results(&self) -> BTreeMap<String, ToolResult> {
        let requests = self.requests();
        let mut out = BTreeMap::new();
        if let Some(last) = requests.last() {
            for block in blocks(last, "tool_result") {
                let id = block["tool_use_id"].as_str().unwrap_or_default().to_string();
                out.insert(
                    id,
                    ToolResult {
                        is_error: block["is_error"].as_bool().unwrap_or(false),
                        text: content_text(&block["content"]),
                    },
                );
            }
        }
        out
    }

    /// The `tool_result` blocks of every request (the main agent's and
    /// every sub-agent's conversation), by `tool_use_id`; a later request
    /// wins.
    pub fn all_tool_results(&self) -> BTreeMap<String, ToolResult> {
        let mut out = BTreeMap::new();
        for request in self.requests() {
            for block in blocks(&request, "tool_result") {
                let id = block["tool_use_id"].as_str().unwrap_or_default().to_string();
                out.insert(
                    id,
                    ToolResult {
                        is_error: block["is_error"].as_bool().unwrap_or(false),
                        text: content_text(&block["content"]),
                    },
                );
            }
        }
        out
    }

    /// Whether `needle` appears in anything Claude Code told the model, in
    /// any request: every message not written by the model itself (tool
    /// results, reminders, `system`-role messages) and the system prompt.
    pub fn told_anywhere(&self, needle: &str) -> bool {
        self.requests().iter().any(|req| {
            req["system"].to_string().contains(needle)
                || req["messages"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter(|m| m["role"] != "assistant")
                    .any(|m| m["content"].to_string().contains(needle))
        })
    }

    /// How many tool calls the script holds.
    pub fn script_len(&self) -> usize {
        self.state.script.len()
    }
}

/// The blocks of `kind` in every message of a request, in order.
fn blocks<'a>(request: &'a Value, kind: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
    request["messages"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| m["content"].as_array())
        .flatten()
        .filter(move |b| b["type"] == kind)
}

/// The first user message of a request's conversation, as JSON text.
fn first_user_message(request: &Value) -> String {
    request["messages"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|m| m["role"] == "user")
        .map(|m| m["content"].to_string())
        .unwrap_or_default()
}

/// A `tool_result` content: a string, or text blocks.
fn content_text(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(items) => items
            .iter()
            .map(|b| b["text"].as_str().map(str::to_string).unwrap_or_else(|| b.to_string()))
            .collect::<Vec<_>>()
            .join("\n"),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn route(state: &State, req: &Request) -> Response {
    let json = |status, body: String| Response {
        status,
        content_type: "application/json",
        body,
    };
    match (req.method.as_str(), req.path.as_str()) {
        ("POST", "/v1/messages") => match serde_json::from_slice::<Value>(&req.body) {
            Ok(request) => {
                let body = answer(state, &request);
                state.requests.lock().unwrap().push(request);
                Response {
                    status: "200 OK",
                    content_type: "text/event-stream",
                    body,
                }
            }
            Err(e) => json("400 Bad Request", api_error(&format!("bad JSON: {e}"))),
        },
        ("POST", "/v1/messages/count_tokens") => json("200 OK", json!({"input_tokens": 1}).to_string()),
        (method, path) => json(
            "404 Not Found",
            api_error(&format!("the fake model API has no {method} {path}")),
        ),
    }
}

fn api_error(message: &str) -> String {
    json!({"type": "error", "error": {"type": "not_found_error", "message": message}}).to_string()
}

/// The streamed answer to one Messages request.
fn answer(state: &State, request: &Value) -> String {
    let model = request["model"].as_str().unwrap_or("claude-fake");
    // Side requests (titles, summaries, web page digests) offer no tools:
    // they get plain text and do not move the script on.
    let main_loop = request["tools"].as_array().is_some_and(|t| !t.is_empty());
    let done = blocks(request, "tool_result").count();
    let sub = state
        .sub
        .as_ref()
        .filter(|(marker, _)| first_user_message(request).contains(marker.as_str()));
    let (script, id_of, final_text): (&[ToolCall], fn(usize) -> String, &str) = match sub {
        Some((_, script)) => (script, sub_tool_use_id, SUB_FINAL_TEXT),
        None => (&state.script, tool_use_id, FINAL_TEXT),
    };
    let next = if main_loop { script.get(done) } else { None };
    if let (Some(_), Some(before_turn), None) = (next, &state.before_turn, sub) {
        before_turn(done);
    }

    let mut events = String::new();
    let mut event = |name: &str, data: Value| {
        events.push_str(&format!("event: {name}\ndata: {data}\n\n"));
    };
    event(
        "message_start",
        json!({"type": "message_start", "message": {
            "id": format!("msg_e2e_{done:02}"), "type": "message", "role": "assistant", "model": model,
            "content": [], "stop_reason": null, "stop_sequence": null,
            "usage": {"input_tokens": 1, "output_tokens": 1}}}),
    );
    let stop_reason = match next {
        Some(call) => {
            event(
                "content_block_start",
                json!({"type": "content_block_start", "index": 0, "content_block":
                    {"type": "tool_use", "id": id_of(done), "name": call.name, "input": {}}}),
            );
            event(
                "content_block_delta",
                json!({"type": "content_block_delta", "index": 0, "delta":
                    {"type": "input_json_delta", "partial_json": call.input.to_string()}}),
            );
            "tool_use"
        }
        None => {
            let text = if main_loop { final_text } else { "ok" };
            event(
                "content_block_start",
                json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
            );
            event(
                "content_block_delta",
                json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": text}}),
            );
            "end_turn"
        }
    };
    event("content_block_stop", json!({"type": "content_block_stop", "index": 0}));
    event(
        "message_delta",
        json!({"type": "message_delta", "delta": {"stop_reason": stop_reason, "stop_sequence": null},
               "usage": {"output_tokens": 1}}),
    );
    event("message_stop", json!({"type": "message_stop"}));
    events
}
