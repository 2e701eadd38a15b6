//! A scripted stand-in for the OpenAI Responses API, on 127.0.0.1.
//!
//! Codex sends `POST /v1/responses` (`stream: true`) with the whole
//! conversation so far in `input`. The answer is a server-sent event
//! stream: `response.created`, `response.output_item.added` and
//! `response.output_item.done` for one output item, `response.completed`.
//! The item is the n-th scripted step once the conversation holds n tool
//! outputs (`function_call_output`, `custom_tool_call_output`,
//! `tool_search_output`); after the last one it is an assistant message.
//! Every request body is kept: the outputs in them are what the model was
//! told, which is what the tests assert on.
//!
//! A sub-agent (Codex's `spawn_agent`) talks to the same API in a thread of
//! its own: its requests carry a `thread-id` header other than the
//! session's `session-id`, and are served the sub-agent script, with call
//! ids of their own ([`sub_call_id`]).

use crate::http::{HttpServer, Request, Response};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// The text of the model's last answer, after the script has run out.
pub const FINAL_TEXT: &str = "done: every scripted tool call was made";

/// One scripted model turn.
#[derive(Clone, Debug)]
pub enum Step {
    /// An output item as the API sends it, without its `call_id`.
    Item(Value),
    /// `multi_agent_v1.wait_agent` on every agent `spawn_agent` started so
    /// far in this thread (their ids are known only from its outputs).
    WaitSpawned,
    /// `write_stdin` of `chars` to the `exec_command` session still running
    /// (its id is known only from the last output: "session ID N").
    WriteStdin(String),
}

impl Step {
    /// Codex's shell tool (`exec_command`, hook name `Bash`).
    pub fn shell(cmd: &str) -> Step {
        Step::function(None, "exec_command", json!({"cmd": cmd}))
    }

    /// Codex's freeform `apply_patch` tool.
    pub fn patch(patch: &str) -> Step {
        Step::Item(json!({"type": "custom_tool_call", "name": "apply_patch", "input": patch}))
    }

    /// A function in a namespace: MCP tools (`mcp__<server>`) and the
    /// multi-agent tools (`multi_agent_v1`) are deferred behind
    /// `tool_search`, and called with their namespace.
    pub fn function(namespace: Option<&str>, name: &str, args: Value) -> Step {
        let mut item = json!({"type": "function_call", "name": name, "arguments": args.to_string()});
        if let Some(ns) = namespace {
            item["namespace"] = json!(ns);
        }
        Step::Item(item)
    }

    /// An MCP tool of `server`.
    pub fn mcp(server: &str, tool: &str, args: Value) -> Step {
        Step::function(Some(&format!("mcp__{server}")), tool, args)
    }

    /// `tool_search`, which loads deferred tools (MCP, sub-agents) for the
    /// next turns.
    pub fn search(query: &str) -> Step {
        Step::Item(json!({"type": "tool_search_call", "execution": "client",
                          "arguments": {"query": query, "limit": 8}}))
    }

    /// `spawn_agent` with `message` as the sub-agent's task.
    pub fn spawn(message: &str) -> Step {
        Step::function(Some("multi_agent_v1"), "spawn_agent", json!({"message": message}))
    }
}

/// The id the fake model gives its `i`-th call.
pub fn call_id(i: usize) -> String {
    format!("call_e2e_{i:02}")
}

/// The id the fake model gives the `i`-th call of a sub-agent.
pub fn sub_call_id(i: usize) -> String {
    format!("call_e2e_sub_{i:02}")
}

/// Called with the index of the scripted call about to be sent and the
/// request it answers (which holds the outputs of the calls before it),
/// before it is sent.
pub type BeforeTurn = Box<dyn Fn(usize, &Value) + Send + Sync>;

/// One request as received.
#[derive(Clone, Debug)]
pub struct Logged {
    /// From a sub-agent's thread.
    pub sub_agent: bool,
    pub body: Value,
    pub raw: String,
}

struct State {
    script: Vec<Step>,
    sub_script: Vec<Step>,
    before_turn: Option<BeforeTurn>,
    /// Root steps already handed to `before_turn`.
    announced: Mutex<usize>,
    requests: Mutex<Vec<Logged>>,
}

/// The server; stops when dropped.
pub struct FakeModel {
    server: HttpServer,
    state: Arc<State>,
}

impl FakeModel {
    pub fn start(script: Vec<Step>) -> FakeModel {
        FakeModel::start_full(script, Vec::new(), None)
    }

    pub fn start_with(script: Vec<Step>, before_turn: Option<BeforeTurn>) -> FakeModel {
        FakeModel::start_full(script, Vec::new(), before_turn)
    }

    pub fn start_full(script: Vec<Step>, sub_script: Vec<Step>, before_turn: Option<BeforeTurn>) -> FakeModel {
        let state = Arc::new(State {
            script,
            sub_script,
            before_turn,
            announced: Mutex::new(0),
            requests: Mutex::new(Vec::new()),
        });
        let handler_state = state.clone();
        let server = HttpServer::start(Arc::new(move |req: &Request| answer(&handler_state, req)));
        FakeModel { server, state }
    }

    /// The provider's `base_url`.
    pub fn base_url(&self) -> String {
        format!("{}/v1", self.server.url())
    }

    pub fn script_len(&self) -> usize {
        self.state.script.len()
    }

    pub fn requests(&self) -> Vec<Logged> {
        self.state.requests.lock().unwrap().clone()
    }

    /// Every tool output Codex sent, by call id (the last one seen wins),
    /// as text: a string output as it is, a list of content items joined
    /// by newlines.
    pub fn outputs(&self) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        for req in self.requests() {
            for item in req.body["input"].as_array().into_iter().flatten() {
                let kind = item["type"].as_str().unwrap_or_default();
                if kind == "function_call_output" || kind == "custom_tool_call_output" {
                    if let Some(id) = item["call_id"].as_str() {
                        out.insert(id.to_string(), output_text(&item["output"]));
                    }
                }
            }
        }
        out
    }

    /// Whether any request to the model holds `text` anywhere.
    pub fn told_anywhere(&self, text: &str) -> bool {
        let escaped = serde_json::to_string(text).unwrap();
        let escaped = &escaped[1..escaped.len() - 1];
        self.requests()
            .iter()
            .any(|r| r.raw.contains(text) || r.raw.contains(escaped))
    }

    /// The names of the tools Codex offered in its first root request:
    /// `name` for a function or custom tool, the `type` for a hosted one
    /// (`web_search`, `tool_search`), `namespace/name` for each tool of a
    /// namespace, plus every namespaced tool a `tool_search` loaded.
    pub fn offered_tools(&self) -> Vec<String> {
        let mut names = Vec::new();
        let requests = self.requests();
        let Some(first) = requests.iter().find(|r| !r.sub_agent) else {
            return names;
        };
        let mut add = |tool: &Value, ns: Option<&str>| {
            let name = tool["name"].as_str().or_else(|| tool["type"].as_str()).unwrap_or("?");
            names.push(match ns {
                Some(ns) => format!("{ns}/{name}"),
                None => name.to_string(),
            });
        };
        let walk = |tools: &Value, add: &mut dyn FnMut(&Value, Option<&str>)| {
            for tool in tools.as_array().into_iter().flatten() {
                if tool["type"] == "namespace" {
                    let ns = tool["name"].as_str().unwrap_or("?");
                    for inner in tool["tools"].as_array().into_iter().flatten() {
                        add(inner, Some(ns));
                    }
                } else {
                    add(tool, None);
                }
            }
        };
        walk(&first.body["tools"], &mut add);
        for req in &requests {
            for item in req.body["input"].as_array().into_iter().flatten() {
                if item["type"] == "tool_search_output" {
                    walk(&item["tools"], &mut add);
                }
            }
        }
        names.sort();
        names.dedup();
        names
    }
}

fn output_text(output: &Value) -> String {
    match output {
        Value::String(s) => s.clone(),
        Value::Array(items) => items
            .iter()
            .filter_map(|i| i["text"].as_str())
            .collect::<Vec<_>>()
            .join("\n"),
        other => other.to_string(),
    }
}

fn answer(state: &State, req: &Request) -> Response {
    if req.method != "POST" || req.path != "/v1/responses" {
        return Response {
            status: "404 Not Found",
            content_type: "application/json",
            body: json!({"error": {"message": format!("no {} {} here", req.method, req.path)}}).to_string(),
        };
    }
    if req.header("content-encoding").is_some() {
        // Compressed bodies would hide what the model was told from the
        // assertions: fail loudly rather than pass on nothing.
        return Response {
            status: "415 Unsupported Media Type",
            content_type: "application/json",
            body: json!({"error": {"message": "the fake model reads plain JSON only"}}).to_string(),
        };
    }
    let raw = String::from_utf8_lossy(&req.body).into_owned();
    let body: Value = serde_json::from_str(&raw).unwrap_or(Value::Null);
    let sub_agent = match (req.header("thread-id"), req.header("session-id")) {
        (Some(thread), Some(session)) => thread != session,
        _ => false,
    };
    state.requests.lock().unwrap().push(Logged {
        sub_agent,
        body: body.clone(),
        raw,
    });
    let input = body["input"].as_array().cloned().unwrap_or_default();
    let done = input
        .iter()
        .filter(|i| i["type"].as_str().is_some_and(|t| t.ends_with("_output")))
        .count();
    let script = if sub_agent { &state.sub_script } else { &state.script };
    let item = match script.get(done) {
        Some(step) => {
            if !sub_agent {
                let mut announced = state.announced.lock().unwrap();
                if done >= *announced {
                    *announced = done + 1;
                    if let Some(hook) = &state.before_turn {
                        hook(done, &body);
                    }
                }
            }
            let id = if sub_agent { sub_call_id(done) } else { call_id(done) };
            let mut item = match step {
                Step::Item(item) => item.clone(),
                Step::WriteStdin(chars) => {
                    let session: Option<u64> = input
                        .iter()
                        .rev()
                        .filter(|i| i["type"] == "function_call_output")
                        .find_map(|i| {
                            i["output"]
                                .as_str()?
                                .split_once("session ID ")?
                                .1
                                .split_whitespace()
                                .next()?
                                .parse()
                                .ok()
                        });
                    json!({"type": "function_call", "name": "write_stdin",
                           "arguments": json!({"session_id": session.unwrap_or(0), "chars": chars, "yield_time_ms": 1000}).to_string()})
                }
                Step::WaitSpawned => {
                    let targets: Vec<String> = input
                        .iter()
                        .filter(|i| i["type"] == "function_call_output")
                        .filter_map(|i| serde_json::from_str::<Value>(i["output"].as_str()?).ok())
                        .filter_map(|o| o["agent_id"].as_str().map(str::to_string))
                        .collect();
                    json!({"type": "function_call", "namespace": "multi_agent_v1", "name": "wait_agent",
                           "arguments": json!({"targets": targets, "timeout_ms": 60000}).to_string()})
                }
            };
            item["call_id"] = json!(id);
            item["id"] = json!(format!("item_{id}"));
            item
        }
        None => json!({"type": "message", "role": "assistant", "id": format!("msg_e2e_{done}"),
                       "content": [{"type": "output_text", "text": FINAL_TEXT}]}),
    };
    let response_id = format!("resp_e2e_{done}");
    let events = [
        json!({"type": "response.created", "response": {"id": response_id}}),
        json!({"type": "response.output_item.added", "output_index": 0, "item": item}),
        json!({"type": "response.output_item.done", "output_index": 0, "item": item}),
        json!({"type": "response.completed", "response": {"id": response_id,
               "usage": {"input_tokens": 1, "output_tokens": 1, "total_tokens": 2}}}),
    ];
    let body = events
        .iter()
        .map(|e| format!("event: {}\ndata: {e}\n\n", e["type"].as_str().unwrap()))
        .collect();
    Response {
        status: "200 OK",
        content_type: "text/event-stream",
        body,
    }
}
