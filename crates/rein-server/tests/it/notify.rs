//! Webhook notifications of new approvals, to a real receiver over
//! loopback HTTP.

use crate::common::{Harness, ADMIN};
use axum::body::Bytes;
use axum::http::{Method, StatusCode};
use rein_server::notify::{NotifyConfig, Retry};
use serde_json::{json, Value};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const POLICY: &str = r#"
default: allow
contracts:
  actor: {id: string}
  actions:
    pay:
      input:
        amount: int
        card: {type: string, sensitive: true}
rules:
  - id: big_payment
    action: pay
    when: input.amount > 100
    effect: require_approval
    reason: big payments need finance
    approval: {role: finance}
"#;

const CARD: &str = "4111111111111111";

/// A webhook receiver: answers each POST with the next status of its
/// script (200 once the script is done) and keeps every body.
#[derive(Clone, Default)]
struct Receiver {
    script: Arc<Mutex<VecDeque<u16>>>,
    bodies: Arc<Mutex<Vec<Bytes>>>,
}

impl Receiver {
    async fn start(script: &[u16]) -> (Receiver, url::Url) {
        let r = Receiver {
            script: Arc::new(Mutex::new(script.iter().copied().collect())),
            bodies: Arc::default(),
        };
        let app = axum::Router::new()
            .route(
                "/hook/{secret}",
                axum::routing::post(
                    |axum::extract::State(r): axum::extract::State<Receiver>, body: Bytes| async move {
                        r.bodies.lock().unwrap().push(body);
                        let status = r.script.lock().unwrap().pop_front().unwrap_or(200);
                        StatusCode::from_u16(status).unwrap()
                    },
                ),
            )
            .with_state(r.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        (r, url::Url::parse(&format!("http://{addr}/hook/T000-secret")).unwrap())
    }

    fn bodies(&self) -> Vec<Bytes> {
        self.bodies.lock().unwrap().clone()
    }

    /// Waits (bounded) until `n` requests have arrived.
    async fn wait_for(&self, n: usize) -> Vec<Bytes> {
        for _ in 0..500 {
            if self.bodies().len() >= n {
                return self.bodies();
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("{} requests arrived, not {n}", self.bodies().len());
    }
}

async fn server(webhook: url::Url) -> Harness {
    let h = Harness::with_policy(POLICY, |_| {}).await;
    h.state
        .start_notifications(NotifyConfig {
            webhooks: vec![webhook],
            public_url: url::Url::parse("https://rein.example.com/").unwrap(),
            retry: Retry {
                attempts: 5,
                first_pause: Duration::from_millis(20),
                timeout: Duration::from_secs(5),
            },
        })
        .unwrap();
    h
}

fn pay(amount: i64) -> Value {
    json!({"action": "pay", "input": {"amount": amount, "card": CARD}, "actor": {"id": "bot-7"}})
}

/// The webhook count of `result` in `/metrics`.
async fn deliveries(h: &Harness, result: &str) -> u64 {
    let (_, text) = h.call_text(Method::GET, "/metrics", None, None).await;
    let prefix = format!("rein_webhook_deliveries_total{{result=\"{result}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .map_or(0, |n| n.trim().parse().unwrap())
}

#[tokio::test]
async fn a_new_approval_is_posted_with_its_link_and_no_sensitive_value() {
    let (receiver, url) = Receiver::start(&[]).await;
    let h = server(url).await;
    // Allowed: no approval, no message.
    assert_eq!(h.decide(pay(5)).await["effect"], "allow");
    let answer = h.decide(pay(500)).await;
    assert_eq!(answer["effect"], "require_approval", "{answer}");
    let id = answer["approval"]["id"].as_str().unwrap().to_string();
    let bodies = receiver.wait_for(1).await;
    let raw = &bodies[0];
    // Never the input's values: neither the card nor the amount's field.
    let text = String::from_utf8(raw.to_vec()).unwrap();
    assert!(!text.contains(CARD), "{text}");
    assert!(!text.contains("hmac-sha256"), "no hash of it either: {text}");
    assert!(!text.contains("\"input\"") && !text.contains("summary"), "{text}");
    let body: Value = serde_json::from_slice(raw).unwrap();
    let link = format!("https://rein.example.com/console/approvals/{id}");
    assert_eq!(body["rein"]["event"], "approval.opened");
    assert_eq!(body["rein"]["approval"], id);
    assert_eq!(body["rein"]["action"], "pay");
    assert_eq!(body["rein"]["rules"], json!(["big_payment"]));
    assert_eq!(body["rein"]["roles"], json!(["finance"]));
    assert_eq!(body["rein"]["requested_by"], "bot-7");
    assert_eq!(body["rein"]["url"], link);
    assert!(body["rein"]["expires_at"].as_str().is_some(), "{body}");
    // Slack's shape: text, and section blocks with the link.
    assert!(body["text"].as_str().unwrap().contains(&link), "{body}");
    let blocks = body["blocks"].as_array().unwrap();
    assert!(blocks.iter().all(|b| b["type"] == "section"), "{body}");
    assert!(blocks.iter().any(|b| b.to_string().contains(&link)), "{body}");
    // The identical request again reuses the approval: no second message.
    h.decide(pay(500)).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(receiver.bodies().len(), 1);
    assert_eq!(deliveries(&h, "delivered").await, 1);
}

#[tokio::test]
async fn a_failing_webhook_is_retried_until_delivered_once() {
    let (receiver, url) = Receiver::start(&[503, 503, 200]).await;
    let h = server(url).await;
    h.decide(pay(500)).await;
    let bodies = receiver.wait_for(3).await;
    assert!(bodies.iter().all(|b| b == &bodies[0]), "the same message each time");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(receiver.bodies().len(), 3, "not sent again once delivered");
    assert_eq!(deliveries(&h, "retried").await, 2);
    assert_eq!(deliveries(&h, "delivered").await, 1);
    assert_eq!(deliveries(&h, "failed").await, 0);
}

#[tokio::test]
async fn a_refused_message_is_not_retried() {
    let (receiver, url) = Receiver::start(&[400]).await;
    let h = server(url).await;
    h.decide(pay(500)).await;
    receiver.wait_for(1).await;
    // Well past the pauses of every retry.
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(receiver.bodies().len(), 1);
    assert_eq!(deliveries(&h, "failed").await, 1);
    assert_eq!(deliveries(&h, "retried").await, 0);
    assert_eq!(deliveries(&h, "delivered").await, 0);
}

#[tokio::test]
async fn a_webhook_that_keeps_failing_is_given_up_after_five_attempts() {
    let (receiver, url) = Receiver::start(&[500, 502, 503, 429, 500, 500]).await;
    let h = server(url).await;
    h.decide(pay(500)).await;
    receiver.wait_for(5).await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(receiver.bodies().len(), 5);
    assert_eq!(deliveries(&h, "retried").await, 4);
    assert_eq!(deliveries(&h, "failed").await, 1);
}

/// An actor id the contract marks sensitive is withheld, as the input is.
#[tokio::test]
async fn a_sensitive_actor_id_is_withheld() {
    let (receiver, url) = Receiver::start(&[]).await;
    let policy = POLICY.replace("actor: {id: string}", "actor: {id: {type: string, sensitive: true}}");
    let h = Harness::with_policy(&policy, |_| {}).await;
    h.state
        .start_notifications(NotifyConfig {
            webhooks: vec![url],
            public_url: url::Url::parse("http://127.0.0.1:8700").unwrap(),
            retry: Retry::default(),
        })
        .unwrap();
    h.decide(json!({"action": "pay", "input": {"amount": 500, "card": CARD}, "actor": {"id": "alice@example.com"}}))
        .await;
    let bodies = receiver.wait_for(1).await;
    let text = String::from_utf8(bodies[0].to_vec()).unwrap();
    assert!(!text.contains("alice@example.com") && !text.contains(CARD), "{text}");
    let body: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(body["rein"]["requested_by"], Value::Null);
    assert!(body["rein"]["url"]
        .as_str()
        .unwrap()
        .starts_with("http://127.0.0.1:8700/console/approvals/"));
    // The admin's audit log has the decision, as always.
    let (status, _) = h.call(Method::GET, "/v1/audit", Some(ADMIN), None).await;
    assert_eq!(status, StatusCode::OK);
}

/// A webhook that never answers delays only itself: each webhook has its
/// own queue and workers, so another one gets every message at once.
#[tokio::test]
async fn a_hanging_webhook_does_not_delay_the_others() {
    // Accepts connections and never answers (each attempt waits out its
    // timeout).
    let hanging = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let hanging_url = url::Url::parse(&format!("http://{}/hook/x", hanging.local_addr().unwrap())).unwrap();
    let (healthy, healthy_url) = Receiver::start(&[]).await;
    let h = Harness::with_policy(POLICY, |_| {}).await;
    h.state
        .start_notifications(NotifyConfig {
            webhooks: vec![hanging_url, healthy_url],
            public_url: url::Url::parse("https://rein.example.com/").unwrap(),
            retry: Retry {
                attempts: 5,
                first_pause: Duration::from_millis(20),
                timeout: Duration::from_secs(30),
            },
        })
        .unwrap();
    // More approvals than one webhook has workers: with the workers
    // shared, every one would be stuck on the hanging webhook.
    for amount in 0..12 {
        let answer = h.decide(pay(500 + amount)).await;
        assert_eq!(answer["effect"], "require_approval", "{answer}");
    }
    let bodies = healthy.wait_for(12).await;
    assert_eq!(bodies.len(), 12);
    drop(hanging);
}
