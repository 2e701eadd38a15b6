//! A scripted stand-in for the Gemini API (`v1beta`), on 127.0.0.1.
//!
//! Gemini CLI 0.61 sends `POST /v1beta/models/<model>:streamGenerateContent
//! ?alt=sse` with the whole conversation (`contents`) and its tools
//! (`functionDeclarations`); before the first turn, a routing classifier
//! call (`:generateContent`, no tools, a JSON response schema). The n-th
//! scripted call is answered once the conversation holds n
//! `functionResponse` parts; after the last one the model says
//! [`FINAL_TEXT`]. A sub-agent (`invoke_agent`) talks to the same API in a
//! conversation of its own whose first message holds the prompt the main
//! agent gave it: one holding [`SUB_MARKER`] is served the sub-agent script.
//! Every request body is kept: the `functionResponse` parts of the last one
//! are what the model was told.

use crate::http::{HttpServer, Request, Response};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// The model's last answer, after its script.
pub const FINAL_TEXT: &str = "done: every scripted tool call was made";
/// In the prompt of a scripted sub-agent.
pub const SUB_MARKER: &str = "E2E-SUBAGENT-SCRIPT";

/// One scripted model turn: call `name` with `args`.
#[derive(Clone, Debug)]
pub struct Call {
    pub name: String,
    pub args: Value,
}

pub fn call(name: &str, args: Value) -> Call {
    Call {
        name: name.to_string(),
        args,
    }
}

pub fn shell(command: &str) -> Call {
    call("run_shell_command", json!({"command": command}))
}

/// The id of the main agent's `i`-th call, and of a sub-agent's.
pub fn call_id(i: usize) -> String {
    format!("e2e_call_{i:02}")
}
pub fn sub_call_id(i: usize) -> String {
    format!("e2e_sub_{i:02}")
}

/// What Gemini CLI told the model about one call: the `functionResponse`'s
/// `response.output` or `response.error`.
#[derive(Clone, Debug)]
pub struct Told {
    pub name: String,
    pub output: Option<String>,
    pub error: Option<String>,
}

impl Told {
    pub fn text(&self) -> String {
        format!(
            "{}{}",
            self.output.as_deref().unwrap_or_default(),
            self.error.as_deref().unwrap_or_default()
        )
    }
}

/// Called with the index of the main agent's next scripted call and the
/// request that asks for it, before it is answered.
pub type BeforeTurn = Box<dyn Fn(usize, &Value) + Send + Sync>;

struct State {
    script: Vec<Call>,
    sub: Vec<Call>,
    before_turn: Option<BeforeTurn>,
    requests: Mutex<Vec<Value>>,
}

pub struct FakeGemini {
    state: Arc<State>,
    http: HttpServer,
}

impl FakeGemini {
    pub fn start(script: Vec<Call>, sub: Vec<Call>, before_turn: Option<BeforeTurn>) -> FakeGemini {
        let state = Arc::new(State {
            script,
            sub,
            before_turn,
            requests: Mutex::new(Vec::new()),
        });
        let http = {
            let state = state.clone();
            HttpServer::start(Arc::new(move |req: &Request| route(&state, req)))
        };
        FakeGemini { state, http }
    }

    /// For `GOOGLE_GEMINI_BASE_URL`.
    pub fn base_url(&self) -> String {
        self.http.url()
    }

    pub fn requests(&self) -> Vec<Value> {
        self.state.requests.lock().unwrap().clone()
    }

    pub fn script_len(&self) -> usize {
        self.state.script.len()
    }

    /// What the main agent's model was told, by call id (last request).
    pub fn told(&self) -> BTreeMap<String, Told> {
        self.last_told(false)
    }

    /// What a scripted sub-agent's model was told, by call id.
    pub fn sub_told(&self) -> BTreeMap<String, Told> {
        self.last_told(true)
    }

    fn last_told(&self, sub: bool) -> BTreeMap<String, Told> {
        let requests = self.requests();
        let last = requests.iter().rev().find(|r| has_tools(r) && is_sub(r) == sub);
        last.map(told_in).unwrap_or_default()
    }

    /// The names of the functions offered in the first main-loop request.
    pub fn offered(&self) -> Vec<String> {
        self.requests()
            .iter()
            .find(|r| has_tools(r))
            .map(declared)
            .unwrap_or_default()
    }

    /// Whether `needle` is in anything sent to the model (not written by it).
    pub fn told_anywhere(&self, needle: &str) -> bool {
        self.requests().iter().any(|r| {
            r["systemInstruction"].to_string().contains(needle)
                || r["contents"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter(|c| c["role"] != "model")
                    .any(|c| c.to_string().contains(needle))
        })
    }
}

pub fn declared(request: &Value) -> Vec<String> {
    request["tools"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| t["functionDeclarations"].as_array())
        .flatten()
        .filter_map(|f| f["name"].as_str().map(str::to_string))
        .collect()
}

fn has_tools(request: &Value) -> bool {
    !declared(request).is_empty()
}

fn is_sub(request: &Value) -> bool {
    request["contents"]
        .as_array()
        .and_then(|c| c.first())
        .is_some_and(|first| first.to_string().contains(SUB_MARKER))
}

fn responses(request: &Value) -> impl Iterator<Item = &Value> {
    request["contents"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["parts"].as_array())
        .flatten()
        .filter_map(|p| p.get("functionResponse"))
}

fn told_in(request: &Value) -> BTreeMap<String, Told> {
    responses(request)
        .map(|r| {
            let text = |k: &str| {
                r["response"].get(k).map(|v| match v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
            };
            (
                r["id"].as_str().unwrap_or_default().to_string(),
                Told {
                    name: r["name"].as_str().unwrap_or_default().to_string(),
                    output: text("output"),
                    error: text("error"),
                },
            )
        })
        .collect()
}

fn route(state: &State, req: &Request) -> Response {
    let json = |status, body: Value| Response {
        status,
        content_type: "application/json",
        body: body.to_string(),
    };
    let (Some(rest), "POST") = (req.path.strip_prefix("/v1beta/models/"), req.method.as_str()) else {
        return json(
            "404 Not Found",
            json!({"error": {"code": 404, "status": "NOT_FOUND",
                   "message": format!("the fake Gemini API has no {} {}", req.method, req.path)}}),
        );
    };
    let Ok(request) = serde_json::from_slice::<Value>(&req.body) else {
        return json(
            "400 Bad Request",
            json!({"error": {"code": 400, "message": "bad JSON"}}),
        );
    };
    let method = rest.rsplit(':').next().unwrap_or_default();
    let answer = match method {
        "countTokens" => return json("200 OK", json!({"totalTokens": 1})),
        "streamGenerateContent" | "generateContent" => answer(state, &request),
        other => {
            return json(
                "404 Not Found",
                json!({"error": {"code": 404, "message": format!("no method {other}")}}),
            )
        }
    };
    state.requests.lock().unwrap().push(request);
    if method == "streamGenerateContent" {
        Response {
            status: "200 OK",
            content_type: "text/event-stream",
            body: format!("data: {answer}\r\n\r\n"),
        }
    } else {
        json("200 OK", answer)
    }
}

/// One response: the next scripted call, or text.
fn answer(state: &State, request: &Value) -> Value {
    let part = if has_tools(request) {
        let sub = is_sub(request);
        let done = responses(request).count();
        let (script, id) = if sub {
            (&state.sub, sub_call_id(done))
        } else {
            (&state.script, call_id(done))
        };
        match script.get(done) {
            Some(c) => {
                if let (false, Some(before)) = (sub, &state.before_turn) {
                    before(done, request);
                }
                json!({"functionCall": {"name": c.name, "args": c.args, "id": id}})
            }
            None => json!({"text": FINAL_TEXT}),
        }
    } else {
        // Side calls (the router's classifier) ask for JSON of a schema:
        // every required field, with a plain value of its type.
        let schema = &request["generationConfig"]["responseJsonSchema"];
        let mut fields = serde_json::Map::new();
        for name in schema["required"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
        {
            let kind = schema["properties"][name]["type"]
                .as_str()
                .unwrap_or("STRING")
                .to_ascii_uppercase();
            let value = match kind.as_str() {
                "INTEGER" | "NUMBER" => json!(1),
                "BOOLEAN" => json!(false),
                "ARRAY" => json!([]),
                "OBJECT" => json!({}),
                _ => json!("scripted"),
            };
            fields.insert(name.to_string(), value);
        }
        json!({"text": Value::Object(fields).to_string()})
    };
    json!({
        "candidates": [{"content": {"role": "model", "parts": [part]}, "finishReason": "STOP", "index": 0}],
        "usageMetadata": {"promptTokenCount": 1, "candidatesTokenCount": 1, "totalTokenCount": 2},
        "modelVersion": request["model"].as_str().unwrap_or("gemini-e2e"),
    })
}
