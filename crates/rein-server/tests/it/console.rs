//! The web console over real HTTP: sign-in, its cookie, CSRF and the
//! cross-site checks, the security headers, and the pages' flows.

use crate::common::*;
use reqwest::header::{HeaderMap, LOCATION, SET_COOKIE};
use reqwest::{redirect, Client, StatusCode};

/// A client that follows no redirect: the tests read each answer.
fn client() -> Client {
    Client::builder().redirect(redirect::Policy::none()).build().unwrap()
}

/// The value of cookie `name` among the `Set-Cookie` headers, with the
/// whole header.
fn set_cookie(headers: &HeaderMap, name: &str) -> Option<(String, String)> {
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

async fn sign_in_raw(s: &Served, token: &str) -> reqwest::Response {
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
    assert_eq!(value, ALICE, "the cookie is the bearer token itself");
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/console"] {
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
    for path in ["/console/audit"] {
        let (status, page) = get(&s, &alice.cookie, path).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{path}");
        assert!(page.contains("your role may not open this page"), "{path}");
    }
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
