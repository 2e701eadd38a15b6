//! Webhook notifications of new approvals (`rein serve --notify-webhook`).
//!
//! On each approval this process opens ([`ApprovalEvent::Opened`]: other
//! replicas notify of their own), every configured URL gets a `POST` of
//! JSON in a Slack-compatible shape (`text` and `blocks`), with Rein's own
//! fields under `rein` and a link to the approval's console page. It never
//! carries the request's input, its summary, snapshot or any value a
//! contract marks sensitive: only the action, the rules, the roles asked,
//! who asked (withheld when the actor's id is sensitive), the expiry and
//! the link.
//!
//! Deliveries go through a bounded queue (the oldest dropped when full,
//! logged and counted) to a few workers; an attempt that fails with a
//! network error, a timeout, `429` or a `5xx` is tried again after a
//! growing pause (1 s, 2 s, 4 s, 8 s: five attempts), any other answer is
//! final. `rein_webhook_deliveries_total{result}` counts what happened.

use crate::metrics::Metrics;
use rein_runtime::{ApprovalEvent, Runtime};
use rein_store::ApprovalRecord;
use serde_json::{json, Value};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::broadcast::error::RecvError;
use url::Url;

/// Deliveries waiting at most for one webhook; past this its oldest is
/// dropped.
const QUEUE_CAP: usize = 1_000;
/// Deliveries under way at once to one webhook.
const WORKERS: usize = 4;
/// Longest text of an agent-chosen value (an actor id) put in a message.
const MAX_FIELD_CHARS: usize = 128;

/// Where and how approvals are announced.
#[derive(Clone, Debug)]
pub struct NotifyConfig {
    /// The webhooks (`--notify-webhook`, repeatable).
    pub webhooks: Vec<Url>,
    /// The console's base URL for links (`--public-url`; by default the
    /// address the server listens on).
    pub public_url: Url,
    /// How deliveries are tried.
    pub retry: Retry,
}

/// How a delivery is tried.
#[derive(Clone, Copy, Debug)]
pub struct Retry {
    /// Attempts in all (5 by default).
    pub attempts: u32,
    /// The pause after the first failed attempt, doubled after each (1 s).
    pub first_pause: Duration,
    /// The longest one attempt may take (10 s).
    pub timeout: Duration,
}

impl Default for Retry {
    fn default() -> Self {
        Retry {
            attempts: 5,
            first_pause: Duration::from_secs(1),
            timeout: Duration::from_secs(10),
        }
    }
}

/// One message to one webhook.
struct Delivery {
    url: Url,
    body: Arc<[u8]>,
    approval: String,
}

/// The deliveries waiting, oldest first.
struct Queue {
    waiting: Mutex<VecDeque<Delivery>>,
    ready: tokio::sync::Notify,
    /// Set when no more events will come (the runtime is gone): the
    /// workers finish what is queued and end.
    closed: std::sync::atomic::AtomicBool,
}

impl Queue {
    fn push(&self, delivery: Delivery, metrics: &Metrics) {
        let dropped = {
            let mut waiting = self.waiting.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            let dropped = (waiting.len() >= QUEUE_CAP).then(|| waiting.pop_front()).flatten();
            waiting.push_back(delivery);
            dropped
        };
        if let Some(old) = dropped {
            metrics.webhook("dropped");
            tracing::warn!(approval = %old.approval, webhook = %redacted(&old.url), "webhook queue full; dropped the oldest notification");
        }
        self.ready.notify_one();
    }

    /// The next delivery; `None` once closed and empty.
    async fn pop(&self) -> Option<Delivery> {
        loop {
            // Registered before looking, so that a push in between is not missed.
            let notified = self.ready.notified();
            if let Some(d) = self
                .waiting
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .pop_front()
            {
                return Some(d);
            }
            if self.closed.load(std::sync::atomic::Ordering::Acquire) {
                return None;
            }
            notified.await;
        }
    }

    fn close(&self) {
        self.closed.store(true, std::sync::atomic::Ordering::Release);
        self.ready.notify_waiters();
    }
}

/// Starts announcing the approvals `runtime` opens from now on; the tasks
/// end when the runtime is dropped (its events end). Does nothing without
/// webhooks.
pub(crate) fn start(runtime: &Arc<Runtime>, config: NotifyConfig, metrics: Metrics) -> anyhow::Result<()> {
    if config.webhooks.is_empty() {
        return Ok(());
    }
    let client = reqwest::Client::builder()
        // The URL is the operator's; a redirect would send the message
        // somewhere they did not name.
        .redirect(reqwest::redirect::Policy::none())
        .timeout(config.retry.timeout)
        .build()?;
    // A queue and workers of its own for each webhook: one that hangs or
    // fails (its workers sleeping through retries) delays only itself.
    let queues: Vec<(Url, Arc<Queue>)> = config
        .webhooks
        .iter()
        .map(|url| {
            let queue = Arc::new(Queue {
                waiting: Mutex::new(VecDeque::new()),
                ready: tokio::sync::Notify::new(),
                closed: std::sync::atomic::AtomicBool::new(false),
            });
            for _ in 0..WORKERS {
                let (queue, client, metrics, retry) =
                    (Arc::clone(&queue), client.clone(), metrics.clone(), config.retry);
                tokio::spawn(async move {
                    while let Some(delivery) = queue.pop().await {
                        deliver(&client, &delivery, retry, &metrics).await;
                    }
                });
            }
            (url.clone(), queue)
        })
        .collect();
    let mut events = runtime.approval_events();
    // Weak: the notifier does not keep the runtime alive.
    let rt = Arc::downgrade(runtime);
    tokio::spawn(async move {
        // The workers end with this task, once the queue is empty.
        struct CloseOnExit(Vec<Arc<Queue>>);
        impl Drop for CloseOnExit {
            fn drop(&mut self) {
                for queue in &self.0 {
                    queue.close();
                }
            }
        }
        let _close = CloseOnExit(queues.iter().map(|(_, q)| Arc::clone(q)).collect());
        loop {
            match events.recv().await {
                Ok(ApprovalEvent::Opened(record)) => {
                    let Some(runtime) = rt.upgrade() else { return };
                    let body: Arc<[u8]> = message(&runtime, &record, &config.public_url)
                        .to_string()
                        .into_bytes()
                        .into();
                    for (url, queue) in &queues {
                        queue.push(
                            Delivery {
                                url: url.clone(),
                                body: Arc::clone(&body),
                                approval: record.id.clone(),
                            },
                            &metrics,
                        );
                    }
                }
                Ok(ApprovalEvent::Decided { .. }) => {}
                Err(RecvError::Lagged(n)) => {
                    for _ in 0..n {
                        metrics.webhook("dropped");
                    }
                    tracing::warn!(missed = n, "approval notifications fell behind; some were not sent");
                }
                Err(RecvError::Closed) => return,
            }
        }
    });
    Ok(())
}

/// Tries one delivery until it is delivered, refused, or out of attempts.
async fn deliver(client: &reqwest::Client, d: &Delivery, retry: Retry, metrics: &Metrics) {
    let mut pause = retry.first_pause;
    for attempt in 1..=retry.attempts.max(1) {
        let sent = client
            .post(d.url.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(d.body.to_vec())
            .send()
            .await;
        let (again, why) = match sent {
            Ok(r) if r.status().is_success() => {
                metrics.webhook("delivered");
                tracing::debug!(approval = %d.approval, webhook = %redacted(&d.url), attempt, "approval notification delivered");
                return;
            }
            Ok(r) => {
                let s = r.status();
                (s.is_server_error() || s.as_u16() == 429, format!("HTTP {}", s.as_u16()))
            }
            // The error may quote the URL: only its kind is logged.
            Err(e) => (
                true,
                if e.is_timeout() {
                    "timed out".to_string()
                } else {
                    "could not connect or send".to_string()
                },
            ),
        };
        if !again || attempt >= retry.attempts {
            metrics.webhook("failed");
            tracing::warn!(approval = %d.approval, webhook = %redacted(&d.url), attempt, error = %why, "approval notification not delivered");
            return;
        }
        metrics.webhook("retried");
        tracing::info!(approval = %d.approval, webhook = %redacted(&d.url), attempt, error = %why, "approval notification failed; trying again");
        tokio::time::sleep(pause).await;
        pause = pause.saturating_mul(2);
    }
}

/// A webhook's or collector's URL for logs: scheme, host and port only
/// (its user, path or query often holds a secret, as Slack's do).
pub(crate) fn redacted(url: &Url) -> String {
    format!(
        "{}://{}{}",
        url.scheme(),
        url.host_str().unwrap_or(""),
        url.port().map(|p| format!(":{p}")).unwrap_or_default()
    )
}

/// The link to the approval's console page.
pub(crate) fn approval_url(public_url: &Url, id: &str) -> String {
    format!("{}/console/approvals/{id}", public_url.as_str().trim_end_matches('/'))
}

/// Text for a Slack `mrkdwn` field: `&`, `<` and `>` escaped as Slack
/// asks (so that an agent-chosen value cannot make a link or a mention),
/// and bounded.
fn slack_text(s: &str) -> String {
    let mut out = String::with_capacity(s.len().min(MAX_FIELD_CHARS));
    for (i, c) in s.chars().enumerate() {
        if i == MAX_FIELD_CHARS {
            out.push('…');
            break;
        }
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            // A backtick would end the code span the value is shown in.
            '`' => out.push('\''),
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// Who asked, as the message may show it: `None` when the policy marks
/// the actor's id sensitive for this action (or for any action, when the
/// action is no longer the policy's).
fn shown_requester(runtime: &Runtime, record: &ApprovalRecord) -> Option<String> {
    let policy = runtime.policy();
    let sensitive = if policy.has_action(&record.action) {
        policy.sensitive_fields(&record.action)
    } else {
        policy.actions().flat_map(|a| policy.sensitive_fields(a)).collect()
    };
    let id_is_sensitive = sensitive
        .iter()
        .any(|p| p == "actor" || p == "actor.id" || p.starts_with("actor.id.") || p.starts_with("actor.id["));
    match id_is_sensitive {
        true => None,
        false => record
            .requested_by
            .as_ref()
            .map(|id| id.chars().take(MAX_FIELD_CHARS).collect()),
    }
}

/// The message for an opened approval. Built from the record's
/// policy-side fields only (never its `summary` or sealed copy).
pub(crate) fn message(runtime: &Runtime, record: &ApprovalRecord, public_url: &Url) -> Value {
    let url = approval_url(public_url, &record.id);
    let requester = shown_requester(runtime, record);
    let who = requester
        .as_deref()
        .map_or_else(|| "(withheld)".to_string(), slack_text);
    let rules = record
        .rules
        .iter()
        .map(|r| slack_text(r))
        .collect::<Vec<_>>()
        .join(", ");
    let roles = record
        .roles
        .iter()
        .map(|r| slack_text(r))
        .collect::<Vec<_>>()
        .join(", ");
    let action = slack_text(&record.action);
    let text = format!(
        "Approval needed: `{action}` requested by `{who}` (rules: {rules}; role: {roles}; expires {}). <{url}|Open approval>",
        slack_text(&record.expires_at)
    );
    json!({
        "text": text,
        "blocks": [
            {
                "type": "section",
                "text": {"type": "mrkdwn", "text": format!("*Approval needed:* `{action}`")}
            },
            {
                "type": "section",
                "fields": [
                    {"type": "mrkdwn", "text": format!("*Requested by*\n`{who}`")},
                    {"type": "mrkdwn", "text": format!("*Role*\n{roles}")},
                    {"type": "mrkdwn", "text": format!("*Rules*\n{rules}")},
                    {"type": "mrkdwn", "text": format!("*Expires*\n{}", slack_text(&record.expires_at))}
                ]
            },
            {
                "type": "section",
                "text": {"type": "mrkdwn", "text": format!("<{url}|Open approval `{}`>", slack_text(&record.id))}
            }
        ],
        "rein": {
            "event": "approval.opened",
            "approval": record.id,
            "action": record.action,
            "rules": record.rules,
            "roles": record.roles,
            "requested_by": requester,
            "expires_at": record.expires_at,
            "url": url,
        }
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn slack_text_escapes_and_bounds() {
        assert_eq!(
            slack_text("<!channel> & <http://x|y>"),
            "&lt;!channel&gt; &amp; &lt;http://x|y&gt;"
        );
        assert_eq!(slack_text("a`b\nc"), "a'b c");
        let long = "x".repeat(500);
        assert_eq!(slack_text(&long).chars().count(), MAX_FIELD_CHARS + 1);
    }

    #[test]
    fn urls_are_logged_without_their_secret_part() {
        let u = Url::parse("https://hooks.slack.com:8443/services/T000/B000/XXXX?token=abc").unwrap();
        assert_eq!(redacted(&u), "https://hooks.slack.com:8443");
    }

    #[test]
    fn the_link_joins_the_base_once() {
        let base = Url::parse("https://rein.example.com/").unwrap();
        assert_eq!(
            approval_url(&base, "abc"),
            "https://rein.example.com/console/approvals/abc"
        );
        let base = Url::parse("https://example.com/rein").unwrap();
        assert_eq!(
            approval_url(&base, "abc"),
            "https://example.com/rein/console/approvals/abc"
        );
    }
}
