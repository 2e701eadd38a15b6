//! The web console over real HTTP: sign-in, its cookie, CSRF and the
//! cross-site checks, the security headers, and the pages' flows.

use crate::common::*;
use reqwest::header::{HeaderMap, LOCATION, SET_COOKIE};
use reqwest::{redirect, Client, StatusCode};
use serde_json::json;
use std::time::Duration;

/// A client that follows no redirect: the tests read each answer.
fn client() -> Client {
    Client::builder().redirect(redirect::Policy::none()).build().unwrap()
}

/// The value of cookie `name` among the `Set-Cookie` headers, with the
/// whole header.
pub(crate) fn set_cookie(headers: &HeaderMap, name: &str) -> Option<(String, String)> {
    headers
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(&format!("{name}=")))
        .map(|v| {
            let value = v[name.len() + 1..].split(';').next().unwrap_or_default().to_string();
            (value, v.to_string())
        })
}

/// The `value` of the hidden input named `csrf` in a page.
fn csrf_of(page: &str) -> String {
    let at = page.find("name=\"csrf\"").expect("a csrf input");
    let rest = &page[at..];
    let v = rest.find("value=\"").unwrap() + 7;
    rest[v..v + rest[v..].find('"').unwrap()].to_string()
}

/// The login page's nonce (cookie and form), for a sign-in post.
async fn login_nonce(s: &Served) -> String {
    let r = client().get(s.url("/console/login")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let (cookie, _) = set_cookie(r.headers(), "rein_console_csrf").expect("the login CSRF cookie");
    let page = r.text().await.unwrap();
    assert_eq!(csrf_of(&page), cookie);
    cookie
}

pub(crate) async fn sign_in_raw(s: &Served, token: &str) -> reqwest::Response {
    let nonce = login_nonce(s).await;
    client()
        .post(s.url("/console/login"))
        .header("cookie", format!("rein_console_csrf={nonce}"))
        .form(&[("csrf", nonce.as_str()), ("token", token)])
        .send()
        .await
        .unwrap()
}

/// A signed-in browser: its cookie and its forms' CSRF token.
struct Browser {
    cookie: String,
    csrf: String,
}

async fn sign_in(s: &Served, token: &str) -> Browser {
    let r = sign_in_raw(s, token).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let (value, _) = set_cookie(r.headers(), "rein_console").unwrap();
    let cookie = format!("rein_console={value}");
    let page = get(s, &cookie, "/console/sessions").await.1;
    Browser {
        csrf: csrf_of(&page),
        cookie,
    }
}

async fn get(s: &Served, cookie: &str, path: &str) -> (StatusCode, String) {
    let r = client().get(s.url(path)).header("cookie", cookie).send().await.unwrap();
    let status = r.status();
    (status, r.text().await.unwrap())
}

async fn post(s: &Served, b: &Browser, path: &str, form: &[(&str, &str)]) -> reqwest::Response {
    let mut fields = vec![("csrf", b.csrf.as_str())];
    fields.extend_from_slice(form);
    client()
        .post(s.url(path))
        .header("cookie", &b.cookie)
        .header("origin", &s.base)
        .header("sec-fetch-site", "same-origin")
        .form(&fields)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn sign_in_sets_the_cookie_and_refuses_wrong_and_agent_tokens() {
    let h = Harness::new().await;
    let s = h.serve().await;

    let r = sign_in_raw(&s, ALICE).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(r.headers()[LOCATION], "/console/approvals");
    let (value, whole) = set_cookie(r.headers(), "rein_console").unwrap();
    assert!(!value.contains(ALICE), "the cookie is not the bearer token: {value}");
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/console", "Max-Age=43200"] {
        assert!(whole.contains(attr), "{whole}");
    }
    assert!(!whole.contains("Secure"), "plain HTTP: {whole}");

    let r = sign_in_raw(&s, ADMIN).await;
    assert_eq!(r.headers()[LOCATION], "/console/audit");

    let r = sign_in_raw(&s, "not-a-token-0123456789abcdef").await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(set_cookie(r.headers(), "rein_console").is_none());
    assert!(r.text().await.unwrap().contains("not known"));

    let r = sign_in_raw(&s, AGENT).await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert!(set_cookie(r.headers(), "rein_console").is_none());
    assert!(r
        .text()
        .await
        .unwrap()
        .contains("agent tokens cannot sign in to the console"));

    // An agent token set as the cookie by hand opens nothing.
    let (status, _) = get(&s, &format!("rein_console={AGENT}"), "/console/approvals").await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    s.shutdown().await;
}

#[tokio::test]
async fn the_cookie_is_a_bounded_session_not_the_api_token() {
    let h = Harness::new().await;
    let s = h.serve().await;
    let b = sign_in(&s, ALICE).await;
    let value = b.cookie.trim_start_matches("rein_console=").to_string();
    assert!(value.starts_with("s1.alice."), "{value}");
    assert_eq!(get(&s, &b.cookie, "/console/approvals").await.0, StatusCode::OK);
    // The leaked value opens no API route.
    let r = client()
        .get(s.url("/v1/approvals"))
        .bearer_auth(&value)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    // The raw token in the cookie (the old form) is no sign-in any more.
    let (status, _) = get(&s, &format!("rein_console={ALICE}"), "/console/approvals").await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    // A forged expiry (longer session) does not verify.
    let parts: Vec<&str> = value.rsplitn(3, '.').collect();
    let later: i64 = parts[1].parse::<i64>().unwrap() + 3600;
    let forged = format!("rein_console={}.{later}.{}", parts[2], parts[0]);
    assert_eq!(get(&s, &forged, "/console/approvals").await.0, StatusCode::SEE_OTHER);
    // The CSRF token is bound to the session: another sign-in's does not fit.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let other = sign_in(&s, ALICE).await;
    assert_ne!(other.cookie, b.cookie);
    let mixed = Browser {
        cookie: b.cookie.clone(),
        csrf: other.csrf.clone(),
    };
    assert_eq!(
        post(&s, &mixed, "/console/logout", &[]).await.status(),
        StatusCode::FORBIDDEN
    );
    s.shutdown().await;
}

#[tokio::test]
async fn the_secure_flag_is_set_when_configured() {
    let h = Harness::with(|c| c.console_secure_cookie = true).await;
    let s = h.serve().await;
    let r = sign_in_raw(&s, ALICE).await;
    let (_, whole) = set_cookie(r.headers(), "rein_console").unwrap();
    assert!(whole.contains("; Secure"), "{whole}");
    s.shutdown().await;
}

#[tokio::test]
async fn pages_need_a_valid_cookie_and_role() {
    let h = Harness::new().await;
    let s = h.serve().await;
    let r = client().get(s.url("/console/approvals")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(r.headers()[LOCATION], "/console/login");
    let r = client().post(s.url("/console/logout")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let (status, _) = get(&s, "rein_console=wrong-token-0123456789abcdef", "/console/approvals").await;
    assert_eq!(status, StatusCode::SEE_OTHER);

    // An approver may not open the admin pages.
    let alice = sign_in(&s, ALICE).await;
    for path in ["/console/audit", "/console/policy", "/console/policy/playground"] {
        let (status, page) = get(&s, &alice.cookie, path).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{path}");
        assert!(page.contains("your role may not open this page"), "{path}");
    }
    let r = client().get(s.url("/console")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(r.headers()[LOCATION], "/console/login");
    let r = client()
        .get(s.url("/console"))
        .header("cookie", &alice.cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()[LOCATION], "/console/approvals");
    let (status, page) = get(&s, &alice.cookie, "/console/logout").await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert!(page.contains("<h1>"), "{page}");
    let (status, page) = get(&s, &alice.cookie, "/console/no-such-page").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(page.contains("<h1>"), "{page}");
    s.shutdown().await;
}

#[tokio::test]
async fn every_page_has_the_security_headers_and_the_layout() {
    let h = Harness::new().await;
    let s = h.serve().await;
    let admin = sign_in(&s, ADMIN).await;
    let r = client()
        .get(s.url("/console/sessions"))
        .header("cookie", &admin.cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let headers = r.headers().clone();
    assert_eq!(
        headers["content-security-policy"],
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; \
         form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    );
    assert_eq!(headers["x-frame-options"], "DENY");
    assert_eq!(headers["referrer-policy"], "no-referrer");
    assert_eq!(headers["x-content-type-options"], "nosniff");
    assert_eq!(headers["cache-control"], "no-store");
    let page = r.text().await.unwrap();
    assert!(page.contains("<html lang=\"en\">"), "{page}");
    assert!(page.contains("name=\"viewport\" content=\"width=device-width, initial-scale=1\""));
    assert_eq!(page.matches("<h1>").count(), 1);
    assert!(page.contains("<nav aria-label=\"Console\">"));
    for link in ["Approvals", "Sessions", "Audit log", "Policy", "Sign out"] {
        assert!(page.contains(link), "{link}");
    }
    assert!(!page.contains("<script>"), "no inline script");
    assert!(!page.contains(" style="), "no inline style");

    // The login page has them too, without a session.
    let r = client().get(s.url("/console/login")).send().await.unwrap();
    assert!(r.headers().contains_key("content-security-policy"));

    // The assets are embedded and long cached.
    for (path, kind) in [
        ("/console/assets/console.css", "text/css"),
        ("/console/assets/console.js", "text/javascript"),
    ] {
        let r = client().get(s.url(path)).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        assert!(r.headers()["content-type"].to_str().unwrap().starts_with(kind));
        assert_eq!(r.headers()["x-content-type-options"], "nosniff");
        assert!(r.headers()["cache-control"].to_str().unwrap().contains("max-age"));
    }
    s.shutdown().await;
}

#[tokio::test]
async fn forms_without_csrf_or_from_another_site_are_refused() {
    let h = Harness::new().await;
    let s = h.serve().await;
    let alice = sign_in(&s, ALICE).await;
    let refused = |r: reqwest::Response| async move {
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
        assert!(r.text().await.unwrap().contains("cross-site request refused"));
    };
    // No token, a wrong one, another user's.
    let bare = client()
        .post(s.url("/console/logout"))
        .header("cookie", &alice.cookie)
        .form(&[("x", "1")])
        .send()
        .await
        .unwrap();
    refused(bare).await;
    let wrong = Browser {
        cookie: alice.cookie.clone(),
        csrf: "0".repeat(64),
    };
    refused(post(&s, &wrong, "/console/logout", &[]).await).await;
    let admin = sign_in(&s, ADMIN).await;
    let swapped = Browser {
        cookie: alice.cookie.clone(),
        csrf: admin.csrf.clone(),
    };
    refused(post(&s, &swapped, "/console/logout", &[]).await).await;
    // A right token, sent from another site.
    let cross_origin = client()
        .post(s.url("/console/logout"))
        .header("cookie", &alice.cookie)
        .header("origin", "http://evil.example")
        .form(&[("csrf", alice.csrf.as_str())])
        .send()
        .await
        .unwrap();
    refused(cross_origin).await;
    let cross_fetch = client()
        .post(s.url("/console/logout"))
        .header("cookie", &alice.cookie)
        .header("sec-fetch-site", "cross-site")
        .form(&[("csrf", alice.csrf.as_str())])
        .send()
        .await
        .unwrap();
    refused(cross_fetch).await;
    // The sign-in form without its double-submit cookie.
    let login = client()
        .post(s.url("/console/login"))
        .form(&[("csrf", "a".repeat(64).as_str()), ("token", ALICE)])
        .send()
        .await
        .unwrap();
    refused(login).await;

    // The right token from the same site signs out.
    let r = post(&s, &alice, "/console/logout", &[]).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let (_, whole) = set_cookie(r.headers(), "rein_console").unwrap();
    assert!(whole.contains("Max-Age=0"), "{whole}");
    s.shutdown().await;
}

/// A pending approval opened by `/v1/decide` for actor `actor_id`: its id.
async fn open_approval(h: &Harness, amount: u64, actor_id: &str) -> (serde_json::Value, String) {
    let request = refund(amount, actor_id);
    let answer = h.decide(request.clone()).await;
    assert_eq!(answer["effect"], "require_approval", "{answer}");
    (request, answer["approval"]["id"].as_str().unwrap().to_string())
}

#[tokio::test]
async fn an_approver_grants_in_the_console_and_the_retry_is_allowed() {
    let h = Harness::new().await;
    let s = h.serve().await;
    let alice = sign_in(&s, ALICE).await;
    let (_, page) = get(&s, &alice.cookie, "/console/approvals").await;
    assert!(page.contains("No pending approvals"), "{page}");

    let (request, id) = open_approval(&h, 500, "bot-1").await;
    let (status, page) = get(&s, &alice.cookie, "/console/approvals").await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains(&format!("data-approval-id=\"{id}\"")), "{page}");
    assert!(page.contains("medium_refund_needs_support"), "{page}");
    assert!(
        page.contains("refunds between 100 and 1000 need a support lead"),
        "the reason: {page}"
    );
    assert!(page.contains("bot-1"), "{page}");
    let (status, rows) = get(&s, &alice.cookie, "/console/approvals/rows").await;
    assert_eq!(status, StatusCode::OK);
    assert!(rows.contains(&format!("data-approval-id=\"{id}\"")), "{rows}");
    assert!(!rows.contains("<html"), "a fragment: {rows}");

    // The approval's page: the full request for an approver who may
    // decide, and the forms.
    let path = format!("/console/approvals/{id}");
    let (status, page) = get(&s, &alice.cookie, &path).await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("<h1>Approval</h1>"), "{page}");
    assert!(
        page.contains(">Grant</button>") && page.contains(">Deny</button>"),
        "{page}"
    );
    assert!(page.contains("<label for=\"grant-comment\">Comment</label>"), "{page}");

    let r = post(
        &s,
        &alice,
        &format!("{path}/grant"),
        &[("comment", "customer <called>")],
    )
    .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(r.headers()[LOCATION], path.as_str());
    let (_, page) = get(&s, &alice.cookie, &path).await;
    assert!(page.contains("granted"), "{page}");
    assert!(page.contains("customer &lt;called&gt;"), "escaped: {page}");
    assert!(!page.contains(">Grant</button>"), "{page}");
    // Once decided, the sealed request is gone.
    assert!(!page.contains("Full request"), "{page}");

    let retry = h.decide(with_approval(request, &id)).await;
    assert_eq!(retry["effect"], "allow", "{retry}");
    let (_, page) = get(&s, &alice.cookie, "/console/approvals").await;
    assert!(!page.contains(&format!("data-approval-id=\"{id}\"")), "{page}");

    // Granting again: a clear page, not a panic.
    let r = post(&s, &alice, &format!("{path}/grant"), &[]).await;
    assert_eq!(r.status(), StatusCode::CONFLICT);
    let (status, _) = get(&s, &alice.cookie, "/console/approvals/no-such-id").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    s.shutdown().await;
}

#[tokio::test]
async fn an_approver_cannot_decide_their_own_request() {
    let h = Harness::new().await;
    let s = h.serve().await;
    // `bot-7` is the approver token's name and the request's actor id.
    let (_, id) = open_approval(&h, 500, "bot-7").await;
    let bot7 = sign_in(&s, BOT7).await;
    let path = format!("/console/approvals/{id}");
    let (status, page) = get(&s, &bot7.cookie, &path).await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("you asked for this approval"), "{page}");
    assert!(!page.contains(">Grant</button>"), "{page}");
    assert!(!page.contains("Full request"), "no sensitive values: {page}");
    for action in ["grant", "deny"] {
        let r = post(&s, &bot7, &format!("{path}/{action}"), &[("comment", "mine")]).await;
        assert_eq!(r.status(), StatusCode::FORBIDDEN, "{action}");
    }
    let (_, record) = h
        .call(
            axum::http::Method::GET,
            &format!("/v1/approvals/{id}"),
            Some(ALICE),
            None,
        )
        .await;
    assert_eq!(record["state"], "pending");
    // Another approver may deny it, with a comment.
    let alice = sign_in(&s, ALICE).await;
    let r = post(&s, &alice, &format!("{path}/deny"), &[("comment", "no")]).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let (_, page) = get(&s, &alice.cookie, &path).await;
    assert!(page.contains("denied"), "{page}");
    s.shutdown().await;
}

/// Reads the event stream until `wanted` has arrived, or panics after 10 s.
async fn read_until(stream: &mut reqwest::Response, seen: &mut String, wanted: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !seen.contains(wanted) {
        let chunk = tokio::time::timeout_at(deadline, stream.chunk())
            .await
            .unwrap_or_else(|_| panic!("no `{wanted}` in the stream: {seen:?}"))
            .unwrap()
            .expect("the stream is open");
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
}

#[tokio::test]
async fn the_event_stream_tells_of_a_new_approval() {
    let h = Harness::new().await;
    let s = h.serve().await;
    let r = client().get(s.url("/console/events")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER, "the stream needs the cookie");
    let alice = sign_in(&s, ALICE).await;
    let mut stream = client()
        .get(s.url("/console/events"))
        .header("cookie", &alice.cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), StatusCode::OK);
    assert_eq!(stream.headers()["content-type"], "text/event-stream");
    let mut seen = String::new();
    // One event at the start, then one when an approval opens.
    read_until(&mut stream, &mut seen, "event: approvals\n").await;
    seen.clear();
    open_approval(&h, 500, "bot-1").await;
    read_until(&mut stream, &mut seen, "event: approvals\n").await;
    drop(stream);
    s.shutdown().await;
}

#[tokio::test]
async fn event_streams_are_capped() {
    let h = Harness::new().await;
    let s = h.serve().await;
    // The cap of 64 in all is a unit test (`console::tests`); here, the
    // cap of 4 per token name: one approver cannot starve the others.
    let alice = sign_in(&s, ALICE).await;
    let bot = sign_in(&s, BOT7).await;
    let mut open = Vec::new();
    for _ in 0..4 {
        let r = client()
            .get(s.url("/console/events"))
            .header("cookie", &alice.cookie)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        open.push(r);
    }
    let r = client()
        .get(s.url("/console/events"))
        .header("cookie", &alice.cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(r.text().await.unwrap().contains("too many live update streams"));
    // Another approver still gets live updates.
    let r = client()
        .get(s.url("/console/events"))
        .header("cookie", &bot.cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    open.push(r);
    // The page's script says so when its stream is refused for good.
    let (_, js) = get(&s, "", "/console/assets/console.js").await;
    assert!(js.contains("Live updates stopped"), "{js}");
    // A stream that ends frees its place.
    drop(open.swap_remove(0));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let r = client()
            .get(s.url("/console/events"))
            .header("cookie", &alice.cookie)
            .send()
            .await
            .unwrap();
        if r.status() == StatusCode::OK {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the place was not freed");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    drop(open);
    // Shutting down ends the open streams.
    tokio::time::timeout(Duration::from_secs(20), s.shutdown())
        .await
        .unwrap();
}

#[tokio::test]
async fn the_playground_decides_without_recording() {
    let h = Harness::new().await;
    let s = h.serve().await;
    let admin = sign_in(&s, ADMIN).await;
    let (status, page) = get(&s, &admin.cookie, "/console/policy").await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("2026-11-24.1"), "the label: {page}");
    assert!(page.contains(h.state.runtime().policy().version()), "the hash");
    assert!(
        page.contains("medium_refund_needs_support") && page.contains("<code>refund</code>"),
        "{page}"
    );
    let (status, page) = get(&s, &admin.cookie, "/console/policy/playground").await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("Request (JSON)") && page.contains("Draft policy (YAML, optional)"));

    let store = h.state.runtime().store();
    let before = store.audit_len().await.unwrap();
    let approvals_before = h.state.runtime().approvals(None, 100).await.unwrap().len();
    let request = refund(500, "bot-1").to_string();
    let r = post(
        &s,
        &admin,
        "/console/policy/playground",
        &[("request", &request), ("policy", "")],
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);
    let page = r.text().await.unwrap();
    assert!(page.contains("require_approval"), "{page}");
    assert!(page.contains("medium_refund_needs_support"), "{page}");
    assert!(page.contains("not matched"), "rule by rule: {page}");
    // A draft decides instead.
    let draft = "version: draft-1\ndefault: block\ncontracts:\n  actions:\n    refund:\n      input:\n        amount: number\n        order_id: string\n        currency: string\nrules:\n  - id: all_refunds\n    action: refund\n    effect: allow\n";
    let r = post(
        &s,
        &admin,
        "/console/policy/playground",
        &[("request", &request), ("policy", draft)],
    )
    .await;
    let page = r.text().await.unwrap();
    assert!(page.contains("all_refunds") && page.contains("effect-allow"), "{page}");
    assert!(page.contains("draft-1"), "{page}");
    assert_eq!(store.audit_len().await.unwrap(), before, "no audit record");
    assert_eq!(
        h.state.runtime().approvals(None, 100).await.unwrap().len(),
        approvals_before,
        "no approval"
    );

    // A draft with an error: its diagnostics with line and column.
    let broken = "version: x\ndefault: block\nrules:\n  - id: r\n    action: refund\n    effect: maybe\n";
    let r = post(
        &s,
        &admin,
        "/console/policy/playground",
        &[("request", &request), ("policy", broken)],
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);
    let page = r.text().await.unwrap();
    assert!(page.contains("does not load"), "{page}");
    assert!(page.contains("draft.yaml:6:"), "{page}");
    assert!(page.contains("line 6, column"), "{page}");
    // A request that does not parse, and a draft too large.
    let r = post(
        &s,
        &admin,
        "/console/policy/playground",
        &[("request", "{not json"), ("policy", "")],
    )
    .await;
    assert!(r.text().await.unwrap().contains("does not parse"));
    let huge = "a".repeat(200 * 1024);
    let r = post(
        &s,
        &admin,
        "/console/policy/playground",
        &[("request", &request), ("policy", &huge)],
    )
    .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(store.audit_len().await.unwrap(), before, "still no audit record");
    s.shutdown().await;
}

#[tokio::test]
async fn a_session_is_a_timeline() {
    let h = Harness::new().await;
    let s = h.serve().await;
    let first = h.decide(refund(50, "bot-1")).await;
    assert_eq!(first["effect"], "allow", "{first}");
    let (status, _) = h
        .call(
            axum::http::Method::POST,
            "/v1/outcome",
            Some(AGENT),
            Some(json!({"decision_id": first["decision_id"], "output": {"refund_id": "re_1"}})),
        )
        .await;
    assert_eq!(status, axum::http::StatusCode::OK);
    open_approval(&h, 500, "bot-1").await;
    let alice = sign_in(&s, ALICE).await;
    let (status, page) = get(&s, &alice.cookie, "/console/sessions").await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("data-session=\"sess-1\""), "{page}");
    let r = client()
        .get(s.url("/console/sessions?id=sess-1"))
        .header("cookie", &alice.cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let to = r.headers()[LOCATION].to_str().unwrap().to_string();
    assert_eq!(to, "/console/sessions/sess-1");
    let (status, page) = get(&s, &alice.cookie, &to).await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("<h1>Session sess-1</h1>"), "{page}");
    assert_eq!(
        page.matches("<li data-seq=").count(),
        3,
        "before, after, before: {page}"
    );
    assert!(
        page.contains("require_approval") && page.contains("outcome: done"),
        "{page}"
    );
    // Sessions belong to the client that names them: its state is kept
    // under the scoped id, which opens the same timeline.
    assert!(page.contains("agent-1/sess-1"), "{page}");
    assert!(!page.contains("ord_abc123"), "no inputs: {page}");
    let (status, scoped) = get(&s, &alice.cookie, "/console/sessions/agent-1%2Fsess-1").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(scoped.matches("<li data-seq=").count(), 3, "{scoped}");
    let (_, other) = get(&s, &alice.cookie, "/console/sessions/agent-2%2Fsess-1").await;
    assert!(other.contains("No audit records name this session"), "{other}");
    s.shutdown().await;
}

#[tokio::test]
async fn sensitive_values_are_shown_only_to_an_approver_who_may_decide() {
    let policy = std::fs::read_to_string(example_policy()).unwrap().replace(
        "note: {type: string, optional: true, max_len: 500}",
        "note: {type: string, optional: true, max_len: 500, sensitive: true}",
    );
    assert!(policy.contains("sensitive: true}"));
    let h = Harness::with_policy(&policy, |_| {}).await;
    let s = h.serve().await;
    let secret = "secret-note-4711";
    let mut mine = refund(500, "bot-7");
    mine["input"]["note"] = json!(secret);
    let answer = h.decide(mine).await;
    let own = answer["approval"]["id"].as_str().unwrap().to_string();
    let mut theirs = refund(600, "bot-1");
    theirs["input"]["note"] = json!(secret);
    let answer = h.decide(theirs).await;
    let other = answer["approval"]["id"].as_str().unwrap().to_string();

    let bot7 = sign_in(&s, BOT7).await;
    let (_, list) = get(&s, &bot7.cookie, "/console/approvals").await;
    assert!(list.contains(&own) && list.contains(&other), "{list}");
    assert!(!list.contains(secret), "the list is redacted: {list}");
    let (_, page) = get(&s, &bot7.cookie, &format!("/console/approvals/{own}")).await;
    assert!(!page.contains(secret), "own request: {page}");
    let (_, page) = get(&s, &bot7.cookie, &format!("/console/approvals/{other}")).await;
    assert!(
        page.contains("Full request") && page.contains(secret),
        "may decide: {page}"
    );
    s.shutdown().await;
}

#[tokio::test]
async fn an_approver_without_the_role_sees_why_and_cannot_decide() {
    let h = Harness::new().await;
    let tokens = format!(
        "{}  - {{name: fin, role: approver, token: fin-token-0123456789abcdef, approves: [finance]}}\n",
        tokens_yaml()
    );
    std::fs::write(h.dir.path().join("tokens.yaml"), tokens).unwrap();
    let h = h.restart(|_| {}).await;
    let s = h.serve().await;
    // The refund's approval asks for role `support`.
    let (_, id) = open_approval(&h, 500, "bot-1").await;
    let fin = sign_in(&s, "fin-token-0123456789abcdef").await;
    let path = format!("/console/approvals/{id}");
    let (status, page) = get(&s, &fin.cookie, &path).await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("needs role support"), "{page}");
    assert!(!page.contains(">Grant</button>"), "{page}");
    let r = post(&s, &fin, &format!("{path}/grant"), &[]).await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let (_, record) = h
        .call(
            axum::http::Method::GET,
            &format!("/v1/approvals/{id}"),
            Some(ALICE),
            None,
        )
        .await;
    assert_eq!(record["state"], "pending");
    s.shutdown().await;
}

#[tokio::test]
async fn the_inbox_says_when_approvals_are_not_shown_and_shows_the_oldest_first() {
    let h = Harness::new().await;
    let s = h.serve().await;
    let (_, first) = open_approval(&h, 150, "early").await;
    for i in 0..104 {
        open_approval(&h, 151 + i, "flood").await;
    }
    let alice = sign_in(&s, ALICE).await;
    for path in ["/console/approvals", "/console/approvals/rows"] {
        let (status, page) = get(&s, &alice.cookie, path).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(page.matches("data-approval-id=").count(), 100, "{path}");
        assert!(page.contains("100 shown of 105 pending approvals"), "{path}: {page}");
        // The one opened first expires first: a flood does not bury it.
        assert!(page.contains(&format!("data-approval-id=\"{first}\"")), "{path}");
        assert!(page.contains("You may decide") || path.ends_with("rows"));
        assert!(page.contains(">yes<"), "{path}");
    }
    s.shutdown().await;
}

/// A draft whose regexes take a while to compile (seconds in a debug build).
fn heavy_draft(rules: usize) -> String {
    let mut d = String::from(
        "version: heavy\ndefault: block\ncontracts:\n  actions:\n    refund:\n      input:\n        amount: number\n        order_id: string\n        currency: string\nrules:\n",
    );
    for i in 0..rules {
        d.push_str(&format!(
            "  - id: r{i}\n    action: refund\n    effect: allow\n    when: input.order_id.matches(\"\\\\w{{1,100}}[a-z]{{1,100}}y{i}\")\n"
        ));
    }
    d
}

#[tokio::test]
async fn the_playground_compiles_two_drafts_at_most_and_answers_a_slow_one_with_a_page() {
    let h = Harness::with(|c| c.request_timeout = Duration::from_millis(800)).await;
    let s = h.serve().await;
    let admin = sign_in(&s, ADMIN).await;
    let request = refund(500, "bot-1").to_string();
    let heavy = heavy_draft(80);
    assert!(heavy.len() < 128 * 1024);
    // Two slow drafts: each answered with a console page at the deadline,
    // while their compiles go on and hold the two slots.
    for _ in 0..2 {
        let r = post(
            &s,
            &admin,
            "/console/policy/playground",
            &[("request", &request), ("policy", &heavy)],
        )
        .await;
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(r.headers().contains_key("content-security-policy"));
        let page = r.text().await.unwrap();
        assert!(page.contains("compiling the draft took too long"), "{page}");
    }
    // A third draft, even a small one, waits for a slot: "busy".
    let small = "version: small\ndefault: allow\nrules: []\n";
    let r = post(
        &s,
        &admin,
        "/console/policy/playground",
        &[("request", &request), ("policy", small)],
    )
    .await;
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(r.text().await.unwrap().contains("the playground is busy"));
    // The loaded policy needs no compile: still answered.
    let r = post(
        &s,
        &admin,
        "/console/policy/playground",
        &[("request", &request), ("policy", "")],
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);
    // Once the compiles end, drafts are taken again.
    let started = std::time::Instant::now();
    loop {
        let r = post(
            &s,
            &admin,
            "/console/policy/playground",
            &[("request", &request), ("policy", small)],
        )
        .await;
        if r.status() == StatusCode::OK {
            assert!(r.text().await.unwrap().contains("small"));
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "the slots were never given back"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    s.shutdown().await;
}

#[tokio::test]
async fn every_console_answer_has_the_headers_even_outside_the_console_router() {
    let h = Harness::new().await;
    let s = h.serve().await;
    let alice = sign_in(&s, ALICE).await;
    let check = |r: &reqwest::Response| {
        for name in [
            "content-security-policy",
            "x-frame-options",
            "referrer-policy",
            "x-content-type-options",
            "cache-control",
        ] {
            assert!(r.headers().contains_key(name), "{} lacks {name}", r.url());
        }
    };
    // A trailing slash: to the console, not the API's JSON 404.
    let r = client().get(s.url("/console/")).send().await.unwrap();
    check(&r);
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(r.headers()[LOCATION], "/console");
    // An id that is not UTF-8: a console page, not axum's plain text.
    let r = client()
        .get(s.url("/console/approvals/%FF"))
        .header("cookie", &alice.cookie)
        .send()
        .await
        .unwrap();
    check(&r);
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(r.headers()["content-type"].to_str().unwrap().starts_with("text/html"));
    let page = r.text().await.unwrap();
    assert!(page.contains("<h1>") && page.contains("Back to the console"), "{page}");
    // A page no route takes: 404 when signed in; to sign in when not.
    let (status, page) = get(&s, &alice.cookie, "/console/nope").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(page.contains("there is no such console page"));
    let r = client().get(s.url("/console/audit/1/nope")).send().await.unwrap();
    check(&r);
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(r.headers()[LOCATION], "/console/login");
    // The API keeps its JSON answers, without the console's headers.
    let r = client().get(s.url("/v1/nothing")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert!(!r.headers().contains_key("content-security-policy"));
    s.shutdown().await;
}

#[tokio::test]
async fn a_stale_sign_in_form_is_shown_again_and_refusals_link_back() {
    let h = Harness::new().await;
    let s = h.serve().await;
    // Two sign-in tabs: the first one's nonce no longer matches the cookie.
    let first = login_nonce(&s).await;
    let second = login_nonce(&s).await;
    let r = client()
        .post(s.url("/console/login"))
        .header("cookie", format!("rein_console_csrf={second}"))
        .form(&[("csrf", first.as_str()), ("token", ALICE)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert!(set_cookie(r.headers(), "rein_console").is_none());
    let fresh = set_cookie(r.headers(), "rein_console_csrf").expect("a fresh nonce").0;
    let page = r.text().await.unwrap();
    assert!(page.contains("sign-in form expired"), "{page}");
    assert_eq!(csrf_of(&page), fresh);
    // The form it shows works.
    let r = client()
        .post(s.url("/console/login"))
        .header("cookie", format!("rein_console_csrf={fresh}"))
        .form(&[("csrf", fresh.as_str()), ("token", ALICE)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    // A refused signed-out form links back to sign in.
    let r = client()
        .post(s.url("/console/logout"))
        .header("sec-fetch-site", "cross-site")
        .form(&[("csrf", "x")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert!(r.text().await.unwrap().contains("Back to sign in"));
    s.shutdown().await;
}

#[tokio::test]
async fn a_form_must_be_urlencoded() {
    let h = Harness::new().await;
    let s = h.serve().await;
    let (_, id) = open_approval(&h, 150, "bot-1").await;
    let alice = sign_in(&s, ALICE).await;
    let body = format!("csrf={}&comment=x", alice.csrf);
    for content_type in ["text/plain", "application/json", "multipart/form-data; boundary=x"] {
        let r = client()
            .post(s.url(&format!("/console/approvals/{id}/grant")))
            .header("cookie", &alice.cookie)
            .header("origin", &s.base)
            .header("content-type", content_type)
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE, "{content_type}");
        assert!(r.headers().contains_key("content-security-policy"));
    }
    let (_, page) = get(&s, &alice.cookie, &format!("/console/approvals/{id}")).await;
    assert!(page.contains("id=\"approval-state\">pending<"), "not granted: {page}");
    // A large draft, quoted (URL-encoding triples it), reaches the page's
    // own size check instead of the form limit.
    let admin = sign_in(&s, ADMIN).await;
    let draft = "\"".repeat(129 * 1024);
    let r = post(
        &s,
        &admin,
        "/console/policy/playground",
        &[("request", "{}"), ("policy", &draft)],
    )
    .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(r.text().await.unwrap().contains("the draft policy is larger than"));
    s.shutdown().await;
}
