//! The caller's `traceparent` kept in audit records (`AuditEntry::trace`)
//! and the trace id filter (`AuditQuery::trace`), on every backend.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[macro_use]
mod common;

use common::{entry, TestStore};
use rein_store::chain;
use rein_store::{AuditQuery, Verification};
use serde_json::json;

differential!(records_are_found_by_their_trace_id);

const A: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const B: &str = "0af7651916cd43dd8448eb211c80319c";

fn traceparent(trace_id: &str, span: u64) -> String {
    format!("00-{trace_id}-{span:016x}-01")
}

async fn records_are_found_by_their_trace_id(store: TestStore) {
    let mut expected_a = Vec::new();
    for i in 1..=12u64 {
        let mut e = entry(i);
        match i % 4 {
            0 => {
                e.trace = Some(traceparent(A, i));
                expected_a.push(i);
            }
            1 => e.trace = Some(traceparent(B, i)),
            2 => {
                // A nested key of the same name, holding trace A's text:
                // not the record's trace.
                e.input = json!({"trace": traceparent(A, i), "x": format!(",\"trace\":\"{}\"}}", traceparent(A, i))});
                e.snapshot = json!({"trace": traceparent(A, i)});
            }
            _ => {}
        }
        let r = store.append(e.clone()).await.unwrap();
        assert_eq!(r.entry, e);
        // A record with one ends with it (`trace` sorts last); one
        // without encodes (and hashes) as before the field.
        let c = chain::canonical(i, &e);
        let tail = &c.as_bytes()[c.len() - 67..c.len() - 54];
        assert_eq!(tail == br#","trace":"00-"#, e.trace.is_some(), "{c}");
        if let Some(t) = &e.trace {
            assert!(c.ends_with(&format!(",\"trace\":\"{t}\"}}")), "{c}");
        }
    }
    let found = |q: AuditQuery| {
        let store = &store;
        async move { store.query_audit(&q).await.unwrap() }
    };
    let a = found(AuditQuery {
        trace: Some(A.into()),
        ..AuditQuery::default()
    })
    .await;
    assert_eq!(a.iter().map(|r| r.seq).collect::<Vec<_>>(), expected_a);
    assert!(a
        .iter()
        .all(|r| r.entry.trace.as_deref().is_some_and(|t| t.contains(A))));
    let b = found(AuditQuery {
        trace: Some(B.into()),
        ..AuditQuery::default()
    })
    .await;
    assert_eq!(b.iter().map(|r| r.seq).collect::<Vec<_>>(), [1, 5, 9]);
    // With the other filters, and paging.
    let b_page = found(AuditQuery {
        trace: Some(B.into()),
        after_seq: Some(1),
        limit: Some(1),
        ..AuditQuery::default()
    })
    .await;
    assert_eq!(b_page.iter().map(|r| r.seq).collect::<Vec<_>>(), [5]);
    let b_actor = found(AuditQuery {
        trace: Some(B.into()),
        actor: Some(entry(5).actor["id"].as_str().unwrap().into()),
        ..AuditQuery::default()
    })
    .await;
    assert!(b_actor.iter().all(|r| r.entry.actor == entry(5).actor) && !b_actor.is_empty());
    // Unknown, or not a trace id at all: nothing.
    for other in ["00000000000000000000000000000001", "", "%", "' OR 1=1 --"] {
        assert!(found(AuditQuery {
            trace: Some(other.into()),
            ..AuditQuery::default()
        })
        .await
        .is_empty());
    }
    assert_eq!(
        store.verify_audit().await.unwrap(),
        Verification::Intact { records: 12 }
    );
}
