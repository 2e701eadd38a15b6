//! The console's audit pages over real HTTP: the filtered list newest
//! first with keyset paging, its export, and a record's detail view (its
//! rules, the explanation re-run, the chain status, a broken chain never
//! called verified).

use crate::common::*;
use rein_store::AuditEntry;
use reqwest::header::LOCATION;
use reqwest::{redirect, Client, StatusCode};
use serde_json::json;

fn client() -> Client {
    Client::builder().redirect(redirect::Policy::none()).build().unwrap()
}

/// The console cookie a sign-in with `token` gives; for a token that may
/// not sign in (an agent's), the token itself, which opens nothing either.
async fn cookie(s: &Served, token: &str) -> String {
    let r = crate::console::sign_in_raw(s, token).await;
    match crate::console::set_cookie(r.headers(), "rein_console") {
        Some((value, _)) if r.status() == StatusCode::SEE_OTHER => format!("rein_console={value}"),
        _ => format!("rein_console={token}"),
    }
}

async fn get(s: &Served, token: &str, path: &str) -> (StatusCode, String) {
    let r = client()
        .get(s.url(path))
        .header("cookie", cookie(s, token).await)
        .send()
        .await
        .unwrap();
    let status = r.status();
    (status, r.text().await.unwrap())
}

/// The `data-seq` of every row of a list page, in page order.
fn rows(page: &str) -> Vec<u64> {
    page.match_indices("<tr data-seq=\"")
        .map(|(at, m)| {
            let rest = &page[at + m.len()..];
            rest[..rest.find('"').unwrap()].parse().unwrap()
        })
        .collect()
}

/// The `href` of the link whose text is `text`, unescaped.
fn link(page: &str, text: &str) -> Option<String> {
    let end = page.find(&format!(">{text}</a>"))?;
    let start = page[..end].rfind("href=\"")? + 6;
    let href = &page[start..];
    Some(href[..href.find('"')?].replace("&amp;", "&"))
}

fn bulk(i: u64) -> AuditEntry {
    AuditEntry {
        decision_id: format!("bulk-{i}"),
        time: "2026-03-01T10:00:00.000000Z".into(),
        phase: "before".into(),
        action: "refund".into(),
        input: json!({"order_id": "ord_abc123", "amount": i, "currency": "EUR"}),
        actor: json!({"id": format!("bulk-{}", i % 2), "role": "agent"}),
        snapshot: json!({}),
        output: None,
        error: None,
        session: None,
        effect: "allow".into(),
        rules: vec!["small_refund".into()],
        reasons: vec![],
        policy_version: "an-unknown-version".into(),
        latency_us: 1,
        approval: None,
        client: None,
        policy_version_label: None,
        actor_source: None,
        shadow: None,
        activation: None,
        trace: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_list_filters_pages_newest_first_and_exports() {
    let h = Harness::new().await;
    let store = std::sync::Arc::clone(h.state.runtime().store());
    for i in 1..=120 {
        store.append(bulk(i)).await.unwrap();
    }
    h.decide(refund(40, "bot-1")).await;
    h.decide(refund(5000, "bot-2")).await;
    h.decide(refund(30, "bot-2")).await;
    let total = store.audit_len().await.unwrap();
    let s = h.serve().await;

    let (status, page) = get(&s, ADMIN, "/console/audit").await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("<h1>Audit log</h1>"), "{page}");
    for (name, label) in [
        ("since", "Since"),
        ("until", "Until"),
        ("actor", "Actor"),
        ("action", "Action"),
        ("effect", "Effect"),
        ("rule", "Rule"),
        ("session", "Session"),
    ] {
        assert!(
            page.contains(&format!("<label for=\"f-{name}\">{label}</label>")),
            "{label}"
        );
        assert!(page.contains(&format!("id=\"f-{name}\" name=\"{name}\"")), "{name}");
    }
    assert!(page.contains(">Filter</button>"));
    // Newest first, 50 a page, then "Older" until the first record.
    let first = rows(&page);
    assert_eq!(first, (total - 49..=total).rev().collect::<Vec<_>>());
    let mut seen = first;
    let mut next = link(&page, "Older");
    while let Some(href) = next {
        assert!(href.starts_with("/console/audit?before="), "{href}");
        let (status, page) = get(&s, ADMIN, &href).await;
        assert_eq!(status, StatusCode::OK);
        let got = rows(&page);
        assert!(got.len() <= 50 && !got.is_empty());
        seen.extend(got);
        next = link(&page, "Older");
    }
    assert_eq!(seen, (1..=total).rev().collect::<Vec<_>>());

    // Filters, kept in the form, the "Older" and the export links.
    let (_, page) = get(&s, ADMIN, "/console/audit?actor=bot-2&action=&effect=").await;
    assert_eq!(rows(&page), vec![total, total - 1]);
    assert!(page.contains("value=\"bot-2\""));
    assert_eq!(
        link(&page, "Export JSON Lines").as_deref(),
        Some("/console/audit/export?actor=bot-2")
    );
    let (_, page) = get(&s, ADMIN, "/console/audit?rule=large_refund").await;
    assert_eq!(rows(&page), vec![total - 1]);
    let (_, page) = get(&s, ADMIN, "/console/audit?actor=bulk-1").await;
    assert_eq!(rows(&page).len(), 50);
    let older = link(&page, "Older").unwrap();
    assert!(older.contains("actor=bulk-1") && older.contains("before="), "{older}");
    let (_, page) = get(&s, ADMIN, &older).await;
    assert_eq!(rows(&page).len(), 10);
    assert!(link(&page, "Older").is_none());
    let (_, page) = get(&s, ADMIN, "/console/audit?session=nobody").await;
    assert!(rows(&page).is_empty() && page.contains("No records match."));

    // The export: the filtered set, oldest first, as JSON Lines.
    let r = client()
        .get(s.url("/console/audit/export?actor=bot-2"))
        .header("cookie", cookie(&s, ADMIN).await)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["content-type"], "application/x-ndjson");
    let text = r.text().await.unwrap();
    let seqs: Vec<u64> = text
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["seq"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(seqs, vec![total - 1, total]);

    // Bad filters say why; other roles and no cookie see nothing.
    for bad in [
        "/console/audit?since=yesterday",
        "/console/audit?effect=maybe",
        "/console/audit?before=x",
    ] {
        let (status, page) = get(&s, ADMIN, bad).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
        assert!(rows(&page).is_empty());
    }
    for path in ["/console/audit", "/console/audit/export", "/console/audit/1"] {
        let (status, page) = get(&s, ALICE, path).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{path}");
        assert!(page.contains("your role may not open this page"));
        let r = client().get(s.url(path)).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::SEE_OTHER, "{path}");
        assert_eq!(r.headers()[LOCATION], "/console/login");
        let (status, _) = get(&s, AGENT, path).await;
        assert_ne!(status, StatusCode::OK, "{path}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_shows_its_rules_explanation_and_chain() {
    let h = Harness::new().await;
    h.decide(refund(40, "bot-1")).await;
    let asked = h.decide(refund(5000, "bot-2")).await;
    let store = std::sync::Arc::clone(h.state.runtime().store());
    store.append(bulk(1)).await.unwrap();
    let s = h.serve().await;
    let (_, list) = get(&s, ADMIN, "/console/audit?rule=large_refund").await;
    let seq = rows(&list)[0];

    let (status, page) = get(&s, ADMIN, &format!("/console/audit/{seq}")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains(&format!("<h1>Audit record {seq}</h1>")), "{page}");
    assert!(page.contains(asked["decision_id"].as_str().unwrap()));
    assert!(page.contains("Matched rules") && page.contains("<code>large_refund</code>"));
    // The explanation, re-run with the loaded policy, agrees.
    assert!(page.contains("id=\"explanation\">Explanation</h2>"), "{page}");
    assert!(page.contains("the loaded policy"), "{page}");
    assert!(page.contains("(as recorded)"), "{page}");
    assert!(page.contains("data-rule=\"large_refund\""));
    assert!(page.contains("id=\"chain\">Chain</h2>"));
    assert!(page.contains("verified up to here"), "{page}");
    assert!(page.contains("<pre class=\"record\">"));

    // A record of a version neither loaded nor kept cannot be explained.
    let len = store.audit_len().await.unwrap();
    let (_, page) = get(&s, ADMIN, &format!("/console/audit/{len}")).await;
    assert!(page.contains("It cannot be rebuilt"), "{page}");
    assert!(page.contains("verified up to here"));
    // The activation record: not a decision before an action.
    let (_, page) = get(&s, ADMIN, "/console/audit/1").await;
    assert!(page.contains("this record's phase is activate"), "{page}");

    for missing in ["0", "99999", "abc", "-1"] {
        let (status, _) = get(&s, ADMIN, &format!("/console/audit/{missing}")).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{missing}");
    }
}

/// A recorded request whose sensitive fields were redacted is explained
/// on the redacted values, and the page says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_explanation_on_redacted_values_says_so() {
    let policy = std::fs::read_to_string(example_policy()).unwrap().replace(
        "note: {type: string, optional: true, max_len: 500}",
        "note: {type: string, optional: true, max_len: 500, sensitive: true}",
    );
    assert!(policy.contains("sensitive: true}\n      output:\n        refund_id"));
    let h = Harness::with_policy(&policy, |_| {}).await;
    let mut request = refund(40, "bot-1");
    request["input"]["note"] = json!("card 4111 1111 1111 1111");
    h.decide(request).await;
    let s = h.serve().await;
    let (_, list) = get(&s, ADMIN, "/console/audit?action=refund").await;
    let (_, page) = get(&s, ADMIN, &format!("/console/audit/{}", rows(&list)[0])).await;
    assert!(!page.contains("4111"), "{page}");
    assert!(page.contains("the explanation ran on those redacted values"), "{page}");
}

/// A record whose successor no longer links to it (it was rewritten with
/// its hash recomputed) breaks the chain there: the records after it are
/// never called verified; those before still are.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_chain_is_never_called_verified() {
    let h = Harness::new().await;
    for amount in [10, 20, 30, 40] {
        h.decide(refund(amount, "bot-1")).await;
    }
    // Record 3 rewritten behind the store's back, its own hash made to
    // fit: record 4 no longer links to it.
    let conn = rusqlite::Connection::open(h.db_path()).unwrap();
    conn.execute_batch("DROP TRIGGER audit_no_update").unwrap();
    let (body, prev): (String, String) = conn
        .query_row("SELECT body, prev_hash FROM audit WHERE seq = 3", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap();
    let forged = body.replace("\"amount\":20", "\"amount\":2");
    assert_ne!(forged, body);
    let hash = rein_store::chain::record_hash(&prev, &forged);
    conn.execute(
        "UPDATE audit SET body = ?1, hash = ?2 WHERE seq = 3",
        rusqlite::params![forged, hash],
    )
    .unwrap();
    drop(conn);
    let s = h.serve().await;
    // The rewritten record itself too: the next one no longer vouches for it.
    for seq in [3, 4, 5] {
        let (status, page) = get(&s, ADMIN, &format!("/console/audit/{seq}")).await;
        assert_eq!(status, StatusCode::OK);
        assert!(!page.contains("verified up to here"), "{seq}: {page}");
        assert!(
            page.contains("not verified: the chain breaks at record 4"),
            "{seq}: {page}"
        );
    }
    let (_, page) = get(&s, ADMIN, "/console/audit/2").await;
    assert!(page.contains("verified up to here"), "{page}");
    // A record whose body no longer matches its hash is refused outright.
    let conn = rusqlite::Connection::open(h.db_path()).unwrap();
    conn.execute(
        "UPDATE audit SET body = replace(body, '\"amount\":10', '\"amount\":1') WHERE seq = 2",
        [],
    )
    .unwrap();
    drop(conn);
    let (status, page) = get(&s, ADMIN, "/console/audit/2").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(!page.contains("verified up to here"));
}

/// The walk's verdict is from when it passed: a record rewritten after
/// that (its hash made to fit), or the newest one rewritten, is not called
/// verified when its page is opened again.
#[tokio::test]
async fn a_record_rewritten_after_the_walk_is_not_called_verified() {
    let h = Harness::new().await;
    for amount in [10, 20, 30, 40] {
        h.decide(refund(amount, "bot-1")).await;
    }
    let s = h.serve().await;
    for seq in [3, 5] {
        let (_, page) = get(&s, ADMIN, &format!("/console/audit/{seq}")).await;
        assert!(page.contains("verified up to here"), "{seq}: {page}");
    }
    let rewrite = |seq: u32, from: &str, to: &str| {
        let conn = rusqlite::Connection::open(h.db_path()).unwrap();
        conn.execute_batch("DROP TRIGGER IF EXISTS audit_no_update").unwrap();
        let (body, prev): (String, String) = conn
            .query_row("SELECT body, prev_hash FROM audit WHERE seq = ?1", [seq], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .unwrap();
        let forged = body.replace(from, to);
        assert_ne!(forged, body);
        let hash = rein_store::chain::record_hash(&prev, &forged);
        conn.execute(
            "UPDATE audit SET body = ?1, hash = ?2 WHERE seq = ?3",
            rusqlite::params![forged, hash, seq],
        )
        .unwrap();
    };
    rewrite(3, "\"amount\":20", "\"amount\":2");
    let (_, page) = get(&s, ADMIN, "/console/audit/3").await;
    assert!(!page.contains("verified up to here"), "{page}");
    assert!(
        page.contains("record 4 does not link to record 3 as it is now"),
        "{page}"
    );
    rewrite(5, "\"amount\":40", "\"amount\":4");
    let (_, page) = get(&s, ADMIN, "/console/audit/5").await;
    assert!(!page.contains("verified up to here"), "{page}");
    assert!(page.contains("record 5 changed since the chain was checked"), "{page}");
}
