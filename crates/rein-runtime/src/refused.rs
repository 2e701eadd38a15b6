//! Recording what an agent sent that could not even be decided: a body
//! that is not JSON, not a request, too deep or too large. No decision
//! attempt goes unrecorded, so each is a `block` record; what is kept of
//! the body is bounded and never holds a sensitive field in clear.

use jiff::Timestamp;
use rein_engine::Phase;
use rein_store::chain::{canonical_value, format_time};
use rein_store::AuditEntry;
use serde_json::{json, Map, Value};
use std::time::Instant;

use crate::{blank_answer, fail, Answer, Loaded, Runtime};

/// Most bytes of a refused body kept in the record (as canonical JSON when
/// the body is a JSON object, else as text). A larger body is recorded by
/// its length and keyed hash only, so junk cannot bloat the log.
pub const MAX_REFUSED_BODY_KEPT: usize = 2048;

/// Longest `action` or `decision_id` taken from a refused body into the
/// record's query columns.
const MAX_NAME: usize = 128;

/// A request refused before deciding, as the HTTP layer saw it.
#[derive(Clone, Copy, Debug)]
pub struct Refusal<'a> {
    /// `before` for a decide call, `after` for an outcome.
    pub phase: Phase,
    /// The HTTP status of the refusal (400, 413).
    pub status: u16,
    /// Its machine-readable code (`invalid_json`, `payload_too_large`...).
    pub code: &'a str,
    /// The message the caller was given.
    pub message: &'a str,
    /// The body, if it was read.
    pub body: Option<&'a [u8]>,
    /// The body's length when known without reading it (a declared
    /// `Content-Length` over the limit).
    pub declared_len: Option<u64>,
    /// The authenticated client that sent it (a server token's name).
    pub client: Option<&'a str>,
}

impl Runtime {
    /// Records a request refused before deciding as a `block` decision and
    /// returns that answer (with its decision id and audit sequence
    /// number, unless the append failed).
    ///
    /// The record's `input` describes the body rather than holding a
    /// request: `status`, `code`, `body_bytes`, `body_hmac` (keyed hash of
    /// the raw bytes) and, within [`MAX_REFUSED_BODY_KEPT`] bytes, `body`
    /// (a JSON object, with every field any action marks sensitive hashed,
    /// and members that are not part of a request hashed whole) or
    /// `body_text` (the start of a body that is not a JSON object, kept only
    /// when the policy marks no field sensitive). `body_kept` says which:
    /// `whole`, `start`, or `hash`.
    pub async fn record_refusal(&self, r: Refusal<'_>) -> Answer {
        let started = Instant::now();
        let now = Timestamp::now();
        let loaded = self.policy.load_full();
        let parsed: Option<Map<String, Value>> = r.body.and_then(|b| match serde_json::from_slice::<Value>(b) {
            Ok(Value::Object(map)) => Some(map),
            _ => None,
        });
        let name = |key: &str| {
            parsed
                .as_ref()
                .and_then(|m| m.get(key))
                .and_then(Value::as_str)
                .filter(|s| s.len() <= MAX_NAME)
                .map(str::to_owned)
        };
        let action = name("action").unwrap_or_default();
        let decision_id = match r.phase {
            // An outcome names its decision; a refused one is filed with it.
            Phase::After => name("decision_id"),
            Phase::Before => None,
        }
        .unwrap_or_else(|| uuid::Uuid::now_v7().to_string());

        let mut described = Map::new();
        described.insert("status".into(), json!(r.status));
        described.insert("code".into(), json!(r.code));
        if let Some(len) = r.body.map(|b| b.len() as u64).or(r.declared_len) {
            described.insert("body_bytes".into(), json!(len));
        }
        let mut secrets = Vec::new();
        let kept = match r.body {
            None => "nothing",
            Some(bytes) => {
                described.insert("body_hmac".into(), json!(self.redactor.hash_bytes(bytes)));
                self.keep_body(&loaded, bytes, parsed, &mut described, &mut secrets)
            }
        };
        described.insert("body_kept".into(), json!(kept));

        let mut answer = blank_answer(&decision_id, r.phase, &loaded.policy);
        fail(
            &mut answer,
            format!("refused before deciding ({} {}): {}", r.status, r.code, r.message),
        );
        let entry = AuditEntry {
            decision_id,
            time: format_time(now),
            phase: r.phase.as_str().to_owned(),
            action,
            input: Value::Object(described),
            actor: Value::Null,
            snapshot: Value::Null,
            output: None,
            error: None,
            session: None,
            effect: answer.effect.as_str().to_owned(),
            rules: Vec::new(),
            // The parser's message may quote a value (`invalid type: string
            // "4111…"`): sensitive ones are taken out.
            reasons: crate::scrub_reasons(&answer.reasons, &secrets),
            policy_version: answer.policy_version.clone(),
            latency_us: u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
            approval: None,
            client: r.client.map(str::to_owned),
            policy_version_label: loaded.policy.version_label().map(str::to_owned),
            actor_source: None,
            shadow: None,
            activation: None,
            trace: crate::trace::current_parent(),
        };
        self.record(&mut answer, entry, Vec::new(), None).await;
        answer
    }

    /// Puts what may be kept of a refused body into `described`; returns
    /// how much was kept.
    fn keep_body(
        &self,
        loaded: &Loaded,
        bytes: &[u8],
        parsed: Option<Map<String, Value>>,
        described: &mut Map<String, Value>,
        secrets: &mut Vec<String>,
    ) -> &'static str {
        const ROOTS: [&str; 4] = ["input", "actor", "snapshot", "output"];
        const PLAIN: [&str; 6] = ["action", "session", "time", "approval", "decision_id", "phase"];
        let any_sensitive = !loaded.all_sensitive.is_empty();
        match parsed {
            Some(mut map) => {
                for (key, value) in &mut map {
                    if let Some(root) = ROOTS.iter().find(|r| **r == key.as_str()) {
                        let original = value.clone();
                        self.redactor.redact(value, &loaded.all_sensitive, root);
                        crate::redacted_texts(&original, value, secrets);
                    } else if any_sensitive && !PLAIN.contains(&key.as_str()) {
                        crate::leaf_texts(value, secrets);
                        // Not part of a request (a misspelt `inputs`, say):
                        // no contract says what is inside, so nothing of it
                        // is kept in clear.
                        *value = Value::String(self.redactor.hash(value));
                    }
                }
                let body = Value::Object(map);
                if canonical_value(&body).len() <= MAX_REFUSED_BODY_KEPT {
                    described.insert("body".into(), body);
                    "whole"
                } else {
                    "hash"
                }
            }
            None if !any_sensitive => {
                let text = String::from_utf8_lossy(bytes);
                let mut end = text.len().min(MAX_REFUSED_BODY_KEPT);
                while !text.is_char_boundary(end) {
                    end -= 1;
                }
                described.insert("body_text".into(), json!(&text[..end]));
                if end == text.len() {
                    "whole"
                } else {
                    "start"
                }
            }
            None => "hash",
        }
    }
}
