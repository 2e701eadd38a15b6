//! JWT bearer tokens over a real loopback port: tokens of a configured
//! issuer decide with the actor fields their claims bind; expired, wrong
//! audience, unknown issuer, `alg: none`, HS256 "signed" with the RSA
//! public key and a key gone from the JWKS are refused with 401, never a
//! decision. Keys are the fixed test keys of `tests/it/fixtures`.

use crate::common::*;
use base64::Engine as _;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

const ISS: &str = "https://login.example.com/";
/// The issuer's shortest time between two reads of its keys: long enough
/// that the requests a test makes in a row fall within it on a loaded
/// machine.
const REFETCH_SECONDS: u64 = 3;

/// Past the time between two reads of the keys.
async fn wait_for_refetch() {
    tokio::time::sleep(std::time::Duration::from_millis(REFETCH_SECONDS * 1000 + 100)).await;
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/it/fixtures")
        .join(name)
}

fn encoding_key(name: &str) -> EncodingKey {
    let pem = std::fs::read(fixture(name)).unwrap();
    if name.contains("ed25519") {
        EncodingKey::from_ed_pem(&pem).unwrap()
    } else {
        EncodingKey::from_rsa_pem(&pem).unwrap()
    }
}

/// The public JWK of fixture key `name`, for `alg`, as `kid`.
fn jwk(name: &str, alg: Algorithm, kid: &str) -> Value {
    let mut jwk = Jwk::from_encoding_key(&encoding_key(name), alg).unwrap();
    jwk.common.key_id = Some(kid.to_string());
    serde_json::to_value(jwk).unwrap()
}

fn jwks(keys: &[Value]) -> String {
    json!({ "keys": keys }).to_string()
}

fn now() -> i64 {
    jiff::Timestamp::now().as_second()
}

/// Claims of a valid token of the issuer for `sub`.
fn claims(sub: &str) -> Value {
    json!({"iss": ISS, "aud": "rein", "sub": sub, "exp": now() + 600, "iat": now(), "job": "agent"})
}

fn sign(key: &str, alg: Algorithm, kid: &str, claims: &Value) -> String {
    let mut header = Header::new(alg);
    header.kid = Some(kid.to_string());
    jsonwebtoken::encode(&header, claims, &encoding_key(key)).unwrap()
}

fn rs256(claims: &Value) -> String {
    sign("jwt-rsa-1.pem", Algorithm::RS256, "r1", claims)
}

fn eddsa(claims: &Value) -> String {
    sign("jwt-ed25519.pem", Algorithm::EdDSA, "e1", claims)
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// The issuer's part of the tokens file, keys from `keys` (a `jwks_file:`
/// or `jwks_url:` line).
fn issuers_yaml(keys: &str) -> String {
    format!(
        "issuers:\n  - name: corp\n    issuer: \"{ISS}\"\n    audience: [rein, rein-staging]\n    {keys}\n    jwks_min_refetch_seconds: {REFETCH_SECONDS}\n    actor: {{sub: id, job: role}}\n    roles_claim: groups\n    roles: {{rein-approvers: approver, rein-admins: admin}}\n"
    )
}

/// Refunds up to 100. No actor contract: the JWT's credential binds
/// `actor.chain`, which a contract would have to declare.
const POLICY: &str = "version: jwt-test\ndefault: block\ncontracts:\n  actions:\n    refund:\n      input:\n        order_id: string\n        amount: {type: number, min: 0}\n        currency: string\nrules:\n  - id: small_refund\n    action: refund\n    when: input.amount <= 100\n    effect: allow\n";

/// A server whose tokens file has the static tokens and issuer `corp`,
/// its JWKS file holding the RS256 key `r1` and the Ed25519 key `e1`.
async fn harness() -> Harness {
    Harness::with_policy(POLICY, |config| {
        let path = config.tokens_path.clone().unwrap();
        let dir = path.parent().unwrap();
        std::fs::write(
            dir.join("corp-jwks.json"),
            jwks(&[
                jwk("jwt-rsa-1.pem", Algorithm::RS256, "r1"),
                jwk("jwt-ed25519.pem", Algorithm::EdDSA, "e1"),
            ]),
        )
        .unwrap();
        std::fs::write(&path, tokens_yaml() + &issuers_yaml("jwks_file: corp-jwks.json")).unwrap();
    })
    .await
}

async fn decide(served: &Served, token: &str, request: &Value) -> (StatusCode, Value) {
    let response = reqwest::Client::new()
        .post(served.url("/v1/decide"))
        .bearer_auth(token)
        .json(request)
        .send()
        .await
        .unwrap();
    let status = response.status();
    (status, response.json().await.unwrap())
}

fn refund_as(amount: u64, actor: Value) -> Value {
    let mut request = refund(amount, "x");
    request["actor"] = actor;
    request
}

/// A refusal: 401 `unauthorized`, `block`, the reason in the message.
fn assert_refused(status: StatusCode, body: &Value, reason: &str) {
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_block_error(body, "unauthorized");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains(reason), "wanted `{reason}` in: {message}");
    assert!(body.get("decision_id").is_none(), "{body}");
}

#[tokio::test]
async fn valid_rs256_and_eddsa_tokens_decide_with_the_actor_their_claims_bind() {
    let h = harness().await;
    let served = h.serve().await;
    for token in [rs256(&claims("alice")), eddsa(&claims("alice"))] {
        let (status, answer) = decide(&served, &token, &refund_as(50, json!({"id": "alice", "role": "agent"}))).await;
        assert_eq!(status, StatusCode::OK, "{answer}");
        assert_eq!(answer["effect"], "allow", "{answer}");
        // The same token again (now from the cache) decides alike.
        let (status, again) = decide(&served, &token, &refund_as(50, json!({"id": "alice"}))).await;
        assert_eq!(status, StatusCode::OK, "{again}");
        assert_eq!(again["effect"], "allow", "{again}");
        // A body naming another actor than the token's: blocked, never
        // overwritten.
        let (status, answer) = decide(
            &served,
            &token,
            &refund_as(50, json!({"id": "mallory", "role": "agent"})),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{answer}");
        assert_eq!(answer["effect"], "block", "{answer}");
        assert_eq!(
            answer["reasons"],
            json!(["actor.id is set by the credential"]),
            "{answer}"
        );
        // The role bound from the `job` claim: a body claiming admin for a
        // large refund is blocked for contradicting it.
        let (_, answer) = decide(
            &served,
            &token,
            &refund_as(5000, json!({"id": "alice", "role": "admin"})),
        )
        .await;
        assert_eq!(answer["effect"], "block", "{answer}");
        assert_eq!(
            answer["reasons"],
            json!(["actor.role is set by the credential"]),
            "{answer}"
        );
    }
    // The audit record names the JWT's holder and where the fields came from.
    let (_, answer) = decide(&served, &rs256(&claims("bob")), &refund_as(50, json!({}))).await;
    let id = answer["decision_id"].as_str().unwrap();
    let (status, body) = h
        .call(
            axum::http::Method::GET,
            &format!("/v1/audit?decision_id={id}"),
            Some(ADMIN),
            None,
        )
        .await;
    assert_eq!(status, axum::http::StatusCode::OK, "{body}");
    let record = &body["records"][0];
    assert_eq!(record["client"], "corp:bob", "{record}");
    assert_eq!(record["actor"]["id"], "bob", "{record}");
    assert_eq!(record["actor"]["role"], "agent", "{record}");
    assert_eq!(
        record["actor"]["chain"],
        json!([{"kind": "user", "id": "bob"}]),
        "{record}"
    );
    assert_eq!(record["actor_source"]["id"], "credential", "{record}");
    served.shutdown().await;
}

#[tokio::test]
async fn expired_wrong_audience_and_unknown_issuer_are_refused() {
    let h = harness().await;
    let served = h.serve().await;
    let request = refund_as(50, json!({"id": "alice", "role": "agent"}));
    let cases = [
        // Expired beyond the 30 s leeway.
        (json!({"exp": now() - 120}), "has expired"),
        // Within the leeway: still accepted below.
        (
            json!({"aud": "someone-else"}),
            "audience is not one issuer `corp` accepts",
        ),
        (json!({"aud": ["x", "y"]}), "audience"),
        (
            json!({"iss": "https://evil.example.com/"}),
            "unknown issuer \"https://evil.example.com/\"",
        ),
        (json!({"nbf": now() + 600}), "not valid yet"),
        (json!({"iat": now() + 600}), "`iat` is in the future"),
        (json!({"exp": null}), "no `exp` claim"),
        (json!({"sub": null}), "no `sub` claim"),
        (json!({"sub": "al ice"}), "whitespace"),
        (
            json!({"job": ["agent"]}),
            "the `job` claim (bound to actor.role) must be a string, number or boolean, found a list",
        ),
        (
            json!({"job": null}),
            "`job` claim (bound to actor.role) must be a string, number or boolean, found null",
        ),
        (
            json!({"groups": {"a": 1}}),
            "the `groups` claim must be a string or a list of strings",
        ),
    ];
    for (change, reason) in cases {
        let mut c = claims("alice");
        for (k, v) in change.as_object().unwrap() {
            if v.is_null() && k != "job" {
                c.as_object_mut().unwrap().remove(k);
            } else {
                c[k] = v.clone();
            }
        }
        for token in [rs256(&c), eddsa(&c)] {
            let (status, body) = decide(&served, &token, &request).await;
            assert_refused(status, &body, reason);
        }
    }
    // A second audience of the issuer, and an exp inside the leeway, pass.
    let mut c = claims("alice");
    c["aud"] = json!(["other", "rein-staging"]);
    c["exp"] = json!(now() - 5);
    let (status, body) = decide(&served, &rs256(&c), &request).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    served.shutdown().await;
}

#[tokio::test]
async fn alg_none_key_confusion_and_forged_signatures_are_refused() {
    let h = harness().await;
    let served = h.serve().await;
    let request = refund_as(50, json!({"id": "alice", "role": "agent"}));
    let payload = b64(claims("alice").to_string().as_bytes());
    // `alg: none`, with and without a signature part.
    for alg in ["none", "None", "NONE"] {
        let header = b64(json!({"alg": alg, "typ": "JWT", "kid": "r1"}).to_string().as_bytes());
        for token in [format!("{header}.{payload}."), format!("{header}.{payload}.c2ln")] {
            let (status, body) = decide(&served, &token, &request).await;
            assert_refused(status, &body, "`alg: none` is never accepted");
        }
    }
    // HS256 with the issuer's RSA public key as the secret (PEM, and the
    // JWK's modulus): the classic key confusion.
    let public_pem = std::fs::read(fixture("jwt-rsa-1.pub.pem")).unwrap();
    let modulus = jwk("jwt-rsa-1.pem", Algorithm::RS256, "r1")["n"]
        .as_str()
        .unwrap()
        .to_string();
    for secret in [public_pem.clone(), modulus.into_bytes()] {
        for alg in [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512] {
            let mut header = Header::new(alg);
            header.kid = Some("r1".into());
            let token =
                jsonwebtoken::encode(&header, &claims("alice"), &EncodingKey::from_secret(&secret).unwrap()).unwrap();
            let (status, body) = decide(&served, &token, &request).await;
            assert_refused(status, &body, "is refused: issuers sign with asymmetric keys");
        }
    }
    // An RS256 token under the Ed25519 key's kid, and an EdDSA one under
    // the RSA key's: the key's type decides the algorithm.
    let crossed = sign("jwt-rsa-1.pem", Algorithm::RS256, "e1", &claims("alice"));
    let (status, body) = decide(&served, &crossed, &request).await;
    assert_refused(status, &body, "has no key \"e1\" for RS256");
    let crossed = sign("jwt-ed25519.pem", Algorithm::EdDSA, "r1", &claims("alice"));
    let (status, body) = decide(&served, &crossed, &request).await;
    assert_refused(status, &body, "has no key \"r1\" for EdDSA");
    // Signed by a key the issuer does not have, under its kid.
    let forged = sign("jwt-rsa-2.pem", Algorithm::RS256, "r1", &claims("alice"));
    let (status, body) = decide(&served, &forged, &request).await;
    assert_refused(status, &body, "the signature does not verify");
    // A valid token whose claims were changed after signing.
    let valid = rs256(&claims("alice"));
    let parts: Vec<&str> = valid.split('.').collect();
    let mut admin = claims("alice");
    admin["groups"] = json!(["rein-admins"]);
    let tampered = format!("{}.{}.{}", parts[0], b64(admin.to_string().as_bytes()), parts[2]);
    let (status, body) = decide(&served, &tampered, &request).await;
    assert_refused(status, &body, "the signature does not verify");
    // A `crit` header is an extension nobody here understands.
    let header = b64(json!({"alg": "RS256", "kid": "r1", "crit": ["exp"]})
        .to_string()
        .as_bytes());
    let (status, body) = decide(&served, &format!("{header}.{}.{}", parts[1], parts[2]), &request).await;
    assert_refused(status, &body, "`crit`");
    // An unknown kid.
    let unknown = sign("jwt-rsa-1.pem", Algorithm::RS256, "zz", &claims("alice"));
    let (status, body) = decide(&served, &unknown, &request).await;
    assert_refused(status, &body, "has no key \"zz\"");
    served.shutdown().await;
}

#[tokio::test]
async fn the_roles_claim_maps_to_rein_roles() {
    let h = harness().await;
    let served = h.serve().await;
    let client = reqwest::Client::new();
    let approvals = |token: String| {
        let client = client.clone();
        let url = served.url("/v1/approvals");
        async move { client.get(url).bearer_auth(token).send().await.unwrap().status() }
    };
    let with_groups = |groups: Value| {
        let mut c = claims("carol");
        c["groups"] = groups;
        rs256(&c)
    };
    // No roles claim, or only unmapped values: the default role, agent,
    // which may read only its own approvals and may not decide them.
    let agent = rs256(&claims("carol"));
    let (status, _) = decide(&served, &agent, &refund_as(50, json!({}))).await;
    assert_eq!(status, StatusCode::OK);
    let approver = with_groups(json!(["staff", "rein-approvers"]));
    let (status, body) = decide(&served, &approver, &refund_as(50, json!({}))).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(approvals(approver).await, StatusCode::OK);
    // Several mapped values: the highest role.
    let admin = with_groups(json!(["rein-approvers", "rein-admins"]));
    let (status, _) = decide(&served, &admin, &refund_as(50, json!({}))).await;
    assert_eq!(status, StatusCode::OK);
    let status = client
        .get(served.url("/v1/audit/verify"))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, StatusCode::OK);
    let unmapped = with_groups(json!("staff"));
    let status = client
        .get(served.url("/v1/audit/verify"))
        .bearer_auth(&unmapped)
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, StatusCode::FORBIDDEN);
    served.shutdown().await;
}

/// A JWKS served over loopback from a thread of its own (the server's
/// fetch blocks its caller, which may be the runtime the test runs on).
struct JwksServer {
    url: String,
    body: Arc<Mutex<String>>,
    fetches: Arc<AtomicUsize>,
}

impl JwksServer {
    fn start(body: String) -> JwksServer {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/jwks.json", listener.local_addr().unwrap());
        let body = Arc::new(Mutex::new(body));
        let fetches = Arc::new(AtomicUsize::new(0));
        let (served_body, served_fetches) = (body.clone(), fetches.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                let mut request = Vec::new();
                let mut buf = [0u8; 1024];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                served_fetches.fetch_add(1, Ordering::SeqCst);
                let body = served_body.lock().unwrap().clone();
                let _ = write!(
                    stream,
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        JwksServer { url, body, fetches }
    }

    fn serve(&self, body: String) {
        *self.body.lock().unwrap() = body;
    }

    fn fetches(&self) -> usize {
        self.fetches.load(Ordering::SeqCst)
    }
}

/// Key rotation through a JWKS URL: a key that appears is picked up on
/// the first token naming it; a key that disappears stops verifying,
/// tokens verified before (cached) included; unknown kids refetch at most
/// once per `jwks_min_refetch_seconds`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_key_in_a_jwks_url_is_picked_up_and_a_removed_one_refused() {
    let jwks_server = JwksServer::start(jwks(&[jwk("jwt-rsa-1.pem", Algorithm::RS256, "r1")]));
    let url = jwks_server.url.clone();
    let h = Harness::with_policy(POLICY, |config| {
        let path = config.tokens_path.clone().unwrap();
        std::fs::write(&path, tokens_yaml() + &issuers_yaml(&format!("jwks_url: \"{url}\""))).unwrap();
    })
    .await;
    // Fetched on first use, not at startup.
    assert_eq!(jwks_server.fetches(), 0);
    let served = h.serve().await;
    let request = refund_as(50, json!({"id": "dave", "role": "agent"}));
    let old = rs256(&claims("dave"));
    let new = sign("jwt-rsa-2.pem", Algorithm::RS256, "r2", &claims("dave"));
    let (status, body) = decide(&served, &old, &request).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(jwks_server.fetches(), 1);
    // The new key is not published yet: refused, one refetch at most
    // however often it is presented, none within
    // `jwks_min_refetch_seconds` of the last.
    let (status, body) = decide(&served, &new, &request).await;
    assert_refused(status, &body, "has no key \"r2\"");
    assert_eq!(jwks_server.fetches(), 1);
    wait_for_refetch().await;
    for _ in 0..3 {
        let (status, body) = decide(&served, &new, &request).await;
        assert_refused(status, &body, "has no key \"r2\"");
    }
    assert_eq!(jwks_server.fetches(), 2);
    // Rotation: the issuer publishes r2 and drops r1.
    jwks_server.serve(jwks(&[jwk("jwt-rsa-2.pem", Algorithm::RS256, "r2")]));
    wait_for_refetch().await;
    let (status, body) = decide(&served, &new, &request).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(jwks_server.fetches(), 3);
    // The old token was cached as valid: the change of keys ends that.
    let (status, body) = decide(&served, &old, &request).await;
    assert_refused(status, &body, "has no key \"r1\"");
    assert_eq!(jwks_server.fetches(), 3);
    served.shutdown().await;
}

/// A key removed from the JWKS stops verifying once the keys are older
/// than `jwks_ttl_seconds`, even for a token only ever answered from the
/// cache (no unknown kid to prompt a read).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_key_stops_verifying_cached_tokens_after_the_ttl() {
    let jwks_server = JwksServer::start(jwks(&[jwk("jwt-rsa-1.pem", Algorithm::RS256, "r1")]));
    let keys = format!("jwks_url: \"{}\"\n    jwks_ttl_seconds: 1", jwks_server.url);
    let h = Harness::with_policy(POLICY, |config| {
        let path = config.tokens_path.clone().unwrap();
        std::fs::write(&path, tokens_yaml() + &issuers_yaml(&keys)).unwrap();
    })
    .await;
    let served = h.serve().await;
    let request = refund_as(50, json!({"id": "gus", "role": "agent"}));
    let old = rs256(&claims("gus"));
    let (status, body) = decide(&served, &old, &request).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = decide(&served, &old, &request).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(jwks_server.fetches(), 1);
    jwks_server.serve(jwks(&[jwk("jwt-rsa-2.pem", Algorithm::RS256, "r2")]));
    wait_for_refetch().await;
    let (status, body) = decide(&served, &old, &request).await;
    assert_refused(status, &body, "has no key \"r1\"");
    assert_eq!(jwks_server.fetches(), 2);
    served.shutdown().await;
}

/// The same with a JWKS file: read again on an unknown kid.
#[tokio::test]
async fn a_rotated_key_in_a_jwks_file_is_picked_up_and_a_removed_one_refused() {
    let h = harness().await;
    let served = h.serve().await;
    let file = h.dir.path().join("corp-jwks.json");
    let request = refund_as(50, json!({"id": "erin", "role": "agent"}));
    let old = rs256(&claims("erin"));
    let new = sign("jwt-rsa-2.pem", Algorithm::RS256, "r2", &claims("erin"));
    let (status, body) = decide(&served, &old, &request).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = decide(&served, &new, &request).await;
    assert_refused(status, &body, "has no key \"r2\"");
    std::fs::write(&file, jwks(&[jwk("jwt-rsa-2.pem", Algorithm::RS256, "r2")])).unwrap();
    wait_for_refetch().await;
    let (status, body) = decide(&served, &new, &request).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = decide(&served, &old, &request).await;
    assert_refused(status, &body, "has no key \"r1\"");
    served.shutdown().await;
}

/// A tokens file with issuers only (no static token) is a valid file.
#[tokio::test]
async fn a_tokens_file_of_issuers_only_serves_jwts() {
    let h = Harness::with_policy(POLICY, |config| {
        let path = config.tokens_path.clone().unwrap();
        std::fs::write(
            path.parent().unwrap().join("corp-jwks.json"),
            jwks(&[jwk("jwt-ed25519.pem", Algorithm::EdDSA, "e1")]),
        )
        .unwrap();
        std::fs::write(&path, issuers_yaml("jwks_file: corp-jwks.json")).unwrap();
    })
    .await;
    let served = h.serve().await;
    let (status, body) = decide(&served, &eddsa(&claims("frank")), &refund_as(50, json!({}))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = decide(&served, AGENT, &refund_as(50, json!({}))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    served.shutdown().await;
}

/// While an issuer is slow to answer for its keys, the requests that find
/// them missing or stale do not wait for the one fetch under way: each
/// waiting would hold a worker thread (outside `block_in_place`) until the
/// issuer answered, so a burst of JWTs (anyone can make one up with an
/// unknown `kid`) would stall every route, static tokens included. They
/// are refused at once (no keys yet) and every other request goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_jwks_fetch_stalls_no_other_request() {
    const ANSWER_AFTER: std::time::Duration = std::time::Duration::from_millis(3000);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/jwks.json", listener.local_addr().unwrap());
    let body = jwks(&[jwk("jwt-rsa-1.pem", Algorithm::RS256, "r1")]);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let body = body.clone();
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                let _ = stream.read(&mut buf);
                std::thread::sleep(ANSWER_AFTER);
                let _ = write!(
                    stream,
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
            });
        }
    });
    let h = Harness::with_policy(POLICY, |config| {
        let path = config.tokens_path.clone().unwrap();
        std::fs::write(&path, tokens_yaml() + &issuers_yaml(&format!("jwks_url: \"{url}\""))).unwrap();
    })
    .await;
    let served = h.serve().await;
    let decide_url = served.url("/v1/decide");
    let send = |token: String| {
        let url = decide_url.clone();
        tokio::spawn(async move {
            let started = std::time::Instant::now();
            let response = reqwest::Client::new()
                .post(url)
                .bearer_auth(token)
                .json(&refund_as(50, json!({"id": "erin"})))
                .send()
                .await
                .unwrap();
            let status = response.status();
            let body: Value = response.json().await.unwrap();
            (status, body, started.elapsed())
        })
    };
    // The first token starts the fetch, which takes ANSWER_AFTER.
    let first = send(rs256(&claims("erin")));
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    // A burst meanwhile: more than the server has worker threads.
    let burst: Vec<_> = (0..6).map(|i| send(rs256(&claims(&format!("erin{i}"))))).collect();
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let static_token = send(AGENT.to_string());
    let (status, body, took) = static_token.await.unwrap();
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(
        took < ANSWER_AFTER / 2,
        "a static token's decision waited {took:?} for the JWKS fetch"
    );
    for handle in burst {
        let (status, body, took) = handle.await.unwrap();
        assert_refused(status, &body, "being fetched");
        assert!(took < ANSWER_AFTER / 2, "a JWT waited {took:?} for another's fetch");
    }
    let (status, body, _) = first.await.unwrap();
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["effect"], "allow", "{body}");
    served.shutdown().await;
}

/// A delegation chain started by a JWT is bound to its issuer as the
/// tokens file configures it: removing the issuer (a leaked key) or
/// changing it (a narrower role mapping, another audience) ends every
/// child minted from its JWTs at the next start, as removing or changing
/// a static root token does; a child is never worth more than its root is
/// trusted now.
#[tokio::test]
async fn a_jwt_rooted_child_dies_with_its_issuer() {
    use axum::http::Method;
    let h = harness().await;
    let tokens_path = h.dir.path().join("tokens.yaml");
    let jwt = rs256(&claims("dave"));
    let (status, minted) = h
        .call(
            Method::POST,
            "/v1/tokens/delegate",
            Some(&jwt),
            Some(json!({"actor": "subagent:r", "actions": ["refund"], "ttl": "5m"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{minted}");
    let child = minted["token"].as_str().unwrap().to_string();
    assert_eq!(minted["name"], "corp:dave/subagent:r", "{minted}");
    async fn decide(h: &Harness, token: String) -> (StatusCode, Value) {
        h.call(Method::POST, "/v1/decide", Some(&token), Some(refund_as(50, json!({}))))
            .await
    }
    let (status, answer) = decide(&h, child.clone()).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["effect"], "allow", "{answer}");

    // Restarted on the same files: the child holds.
    let h = h.restart(|_| {}).await;
    let (status, answer) = decide(&h, child.clone()).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["effect"], "allow", "{answer}");

    // The issuer's role mapping narrowed: a change to the issuer.
    let original = std::fs::read_to_string(&tokens_path).unwrap();
    let changed = original.replace("rein-admins: admin", "rein-admins: approver");
    assert_ne!(changed, original);
    std::fs::write(&tokens_path, &changed).unwrap();
    let h = h.restart(|_| {}).await;
    let (status, answer) = decide(&h, child.clone()).await;
    assert_refused(status, &answer, "changed in the tokens file");

    // The issuer removed: refused, whatever the child's own expiry.
    std::fs::write(&tokens_path, tokens_yaml()).unwrap();
    let h = h.restart(|_| {}).await;
    let (status, answer) = decide(&h, child).await;
    assert_refused(status, &answer, "is no longer in the tokens file");
}
