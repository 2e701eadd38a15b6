//! Newest-first keyset paging of the audit log and the indexes behind its
//! filters (the rule index), on every backend (see `common::differential!`):
//! pages, the rule index kept and checked by `verify`, an older store
//! upgraded in place, and a property: paging newest first through any
//! filter returns exactly the filtered records, in order, once.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[macro_use]
mod common;

use common::{entry, TestStore};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use rein_store::{AuditEntry, AuditQuery, Store, Verification};

differential!(
    newest_first_pages_by_before_seq,
    the_rule_index_follows_the_log,
    an_edited_rule_index_is_found_by_verify,
    a_store_of_the_previous_schema_upgrades,
);

async fn seqs(store: &dyn Store, q: &AuditQuery) -> Vec<u64> {
    store.query_audit(q).await.unwrap().iter().map(|r| r.seq).collect()
}

/// Every page of `q` newest first, `page` records at a time, following
/// `before_seq` from each page's last record.
async fn pages(store: &dyn Store, q: &AuditQuery, page: u64) -> Vec<Vec<u64>> {
    let mut out = Vec::new();
    let mut before = q.before_seq;
    loop {
        let got = seqs(
            store,
            &AuditQuery {
                before_seq: before,
                descending: true,
                limit: Some(page),
                ..q.clone()
            },
        )
        .await;
        let Some(&last) = got.last() else { break };
        assert!(out.len() < 10_000, "paging does not end");
        before = Some(last);
        out.push(got);
    }
    out
}

async fn newest_first_pages_by_before_seq(store: TestStore) {
    for i in 1..=12 {
        store.append(entry(i)).await.unwrap();
    }
    let q = AuditQuery::default;
    // Newest first, then older pages.
    assert_eq!(
        pages(&*store, &q(), 5).await,
        vec![vec![12, 11, 10, 9, 8], vec![7, 6, 5, 4, 3], vec![2, 1]]
    );
    // The default order is unchanged.
    assert_eq!(seqs(&*store, &q()).await, (1..=12).collect::<Vec<_>>());
    // Below and above at once: a window, either way round.
    let window = AuditQuery {
        after_seq: Some(3),
        before_seq: Some(8),
        ..q()
    };
    assert_eq!(seqs(&*store, &window).await, vec![4, 5, 6, 7]);
    assert_eq!(
        seqs(
            &*store,
            &AuditQuery {
                descending: true,
                ..window.clone()
            }
        )
        .await,
        vec![7, 6, 5, 4]
    );
    // Each filter pages newest first through its own records.
    let expect = |f: &dyn Fn(u64) -> bool| (1..=12).rev().filter(|&i| f(i)).collect::<Vec<u64>>();
    let flat = |p: Vec<Vec<u64>>| p.into_iter().flatten().collect::<Vec<u64>>();
    let cases: Vec<(AuditQuery, Vec<u64>)> = vec![
        (
            AuditQuery {
                actor: Some("alice".into()),
                ..q()
            },
            expect(&|i| i % 3 == 0),
        ),
        (
            AuditQuery {
                action: Some("send_email".into()),
                ..q()
            },
            expect(&|i| i % 3 == 1),
        ),
        (
            AuditQuery {
                effect: Some("require_approval".into()),
                ..q()
            },
            expect(&|i| i % 3 == 2),
        ),
        (
            AuditQuery {
                rule: Some("common".into()),
                ..q()
            },
            expect(&|i| i % 3 != 0),
        ),
        (
            AuditQuery {
                rule: Some("rule-2".into()),
                ..q()
            },
            expect(&|i| i % 3 != 0 && i % 5 == 2),
        ),
        (
            AuditQuery {
                session: Some("s1".into()),
                ..q()
            },
            expect(&|i| i % 4 == 1),
        ),
        (
            AuditQuery {
                decision_id: Some("dec-7".into()),
                ..q()
            },
            vec![7],
        ),
        (
            AuditQuery {
                since: Some("2025-06-01T12:00:04Z".into()),
                until: Some("2025-06-01T12:00:09Z".into()),
                ..q()
            },
            expect(&|i| (4..9).contains(&i)),
        ),
        (
            AuditQuery {
                rule: Some("common".into()),
                actor: Some("bob".into()),
                ..q()
            },
            expect(&|i| i % 3 == 1),
        ),
        (
            AuditQuery {
                rule: Some("no-such-rule".into()),
                ..q()
            },
            vec![],
        ),
    ];
    for (query, want) in cases {
        for page in [1, 2, 50] {
            assert_eq!(
                flat(pages(&*store, &query, page).await),
                want,
                "{query:?}, pages of {page}"
            );
        }
        // Oldest first, the same set the other way round.
        let mut up = want.clone();
        up.reverse();
        assert_eq!(seqs(&*store, &query).await, up, "{query:?} oldest first");
    }
}

/// Each record's distinct rules are in the rule index, as appended (by
/// one or by a batch); the index is append-only like the log.
async fn the_rule_index_follows_the_log(store: TestStore) {
    let mut e = entry(1);
    e.rules = vec!["a".into(), "b".into(), "a".into()];
    store.append(e).await.unwrap();
    let tasks: Vec<_> = (2..=21)
        .map(|i| {
            let store = store.arc();
            tokio::spawn(async move { store.append(entry(i)).await.unwrap() })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let from_records: i64 = (2..=21).map(|i| entry(i).rules.len() as i64).sum::<i64>() + 2;
    assert_eq!(store.raw_count("audit_rules").await, from_records);
    assert_eq!(
        store
            .raw_column("SELECT rule FROM audit_rules WHERE seq = 1 ORDER BY rule")
            .await,
        vec![Some("a".to_string()), Some("b".to_string())]
    );
    let refused = store.raw_try("DELETE FROM audit_rules WHERE seq = 1").await;
    assert!(refused.unwrap_err().contains("append-only"));
    assert_eq!(
        store.verify_audit().await.unwrap(),
        Verification::Intact { records: 21 }
    );
}

/// A row of the rule index removed (hiding a record from the rule
/// filter), added or moved is found by `verify`, at its record.
async fn an_edited_rule_index_is_found_by_verify(store: TestStore) {
    for i in 1..=10 {
        store.append(entry(i)).await.unwrap();
    }
    let untrigger = (
        "DROP TRIGGER audit_rules_no_delete; DROP TRIGGER audit_rules_no_update;",
        "ALTER TABLE audit_rules DISABLE TRIGGER USER",
    );
    store.raw_exec(untrigger.0, untrigger.1).await;
    let broken_at = |v: Verification| match v {
        Verification::Broken { seq, problem } => {
            assert!(problem.contains("rule index"), "{problem}");
            seq
        }
        other => panic!("not found: {other:?}"),
    };
    // Removed: record 5 no longer found by its rule.
    let removed = "DELETE FROM audit_rules WHERE seq = 5 AND rule = 'common'";
    store.raw_exec(removed, removed).await;
    assert!(!seqs(
        &*store,
        &AuditQuery {
            rule: Some("common".into()),
            ..AuditQuery::default()
        }
    )
    .await
    .contains(&5));
    assert_eq!(broken_at(store.verify_audit().await.unwrap()), 5);
    let back = "INSERT INTO audit_rules (rule, seq) VALUES ('common', 5)";
    store.raw_exec(back, back).await;
    assert_eq!(
        store.verify_audit().await.unwrap(),
        Verification::Intact { records: 10 }
    );
    // Added: record 3 (no rules) claimed by a rule.
    let added = "INSERT INTO audit_rules (rule, seq) VALUES ('common', 3)";
    store.raw_exec(added, added).await;
    assert_eq!(broken_at(store.verify_audit().await.unwrap()), 3);
    // The query itself refuses the record the index brought in.
    let err = store
        .query_audit(&AuditQuery {
            rule: Some("common".into()),
            ..AuditQuery::default()
        })
        .await
        .unwrap_err();
    assert!(err.0.contains("record 3"), "{err}");
    let gone = "DELETE FROM audit_rules WHERE seq = 3";
    store.raw_exec(gone, gone).await;
    // Moved to another record.
    let moved = "UPDATE audit_rules SET seq = 9 WHERE seq = 8 AND rule = 'rule-3'";
    store.raw_exec(moved, moved).await;
    assert_eq!(broken_at(store.verify_audit().await.unwrap()), 8);
}

/// A store written by the previous schema (without the filter indexes and
/// the rule index) is upgraded when opened: its records keep their bytes
/// and hashes, the rule index is filled from them, and every filter finds
/// what it found before.
async fn a_store_of_the_previous_schema_upgrades(mut store: TestStore) {
    for i in 1..=9 {
        store.append(entry(i)).await.unwrap();
    }
    let bodies = store
        .raw_column("SELECT body || prev_hash || hash FROM audit ORDER BY seq")
        .await;
    store
        .raw_exec(
            "DROP TRIGGER audit_rules_add; DROP TRIGGER audit_rules_no_update; DROP TRIGGER audit_rules_no_delete; \
         DROP TABLE audit_rules; DROP INDEX audit_actor; DROP INDEX audit_session; DROP INDEX audit_action; \
         DROP INDEX audit_effect; DROP INDEX audit_trace; PRAGMA user_version = 7;",
            "DROP TABLE audit_rules; DROP FUNCTION rein_audit_rules_add() CASCADE; DROP INDEX audit_actor; \
         DROP INDEX audit_session; DROP INDEX audit_action; DROP INDEX audit_effect; DROP INDEX audit_trace; \
         UPDATE rein_schema_version SET version = 1;",
        )
        .await;
    store.reopen().await;
    assert_eq!(
        store
            .raw_column("SELECT body || prev_hash || hash FROM audit ORDER BY seq")
            .await,
        bodies
    );
    let from_records: i64 = (1..=9).map(|i| entry(i).rules.len() as i64).sum();
    assert_eq!(store.raw_count("audit_rules").await, from_records);
    assert_eq!(store.verify_audit().await.unwrap(), Verification::Intact { records: 9 });
    assert_eq!(
        pages(
            &*store,
            &AuditQuery {
                rule: Some("common".into()),
                ..AuditQuery::default()
            },
            2
        )
        .await
        .concat(),
        vec![8, 7, 5, 4, 2, 1]
    );
    store.append(entry(10)).await.unwrap();
    assert_eq!(store.raw_count("audit_rules").await, from_records + 2);
}

/// The filter a generated query holds, as a predicate on entries.
fn matches(q: &AuditQuery, e: &AuditEntry) -> bool {
    let eq = |want: &Option<String>, got: Option<&str>| want.as_deref().is_none_or(|w| Some(w) == got);
    eq(&q.actor, e.actor.get("id").and_then(|v| v.as_str()))
        && eq(&q.action, Some(&e.action))
        && eq(&q.effect, Some(&e.effect))
        && eq(&q.session, e.session.as_deref())
        && eq(&q.decision_id, Some(&e.decision_id))
        && q.rule.as_ref().is_none_or(|r| e.rules.contains(r))
        && q.since.as_deref().is_none_or(|s| e.time.as_str() >= s)
        && q.until.as_deref().is_none_or(|u| e.time.as_str() < u)
}

/// The records of the property test: varied actors, actions, effects,
/// rules (none, one, several, repeated), sessions and times.
fn varied(i: u64) -> AuditEntry {
    let mut e = entry(i);
    e.actor = serde_json::json!({"id": format!("actor-{}", i % 7)});
    e.rules = match i % 6 {
        0 => vec![],
        1 => vec![format!("r{}", i % 4)],
        2 => vec![format!("r{}", i % 4), "shared".into()],
        3 => vec!["shared".into(), "shared".into()],
        4 => vec![format!("r{}", i % 5), format!("r{}", (i + 1) % 5)],
        _ => vec!["rare".into()],
    };
    e.session = (!i.is_multiple_of(5)).then(|| format!("s{}", i % 9));
    // Whole seconds within one day: `since`/`until` compare as text.
    e.time = format!("2025-06-01T{:02}:{:02}:00.000000Z", (i * 7) % 24, i % 60);
    e
}

const RECORDS: u64 = 240;

fn query_strategy() -> impl Strategy<Value = (AuditQuery, u64, Option<u64>)> {
    let opt = |values: Vec<String>| proptest::option::weighted(0.35, proptest::sample::select(values));
    let names = |prefix: &str, n: u64| (0..n).map(|i| format!("{prefix}{i}")).collect::<Vec<_>>();
    let rules = {
        let mut r = names("r", 6);
        r.extend(["shared".to_string(), "rare".to_string()]);
        r
    };
    // In the stored form, so that the model compares them as the store does.
    let hours = (0..24)
        .map(|h| format!("2025-06-01T{h:02}:00:00.000000Z"))
        .chain(["2025-06-02T00:00:00.000000Z".to_string()])
        .collect::<Vec<_>>();
    (
        (
            opt(names("actor-", 8)),
            opt(vec!["refund".into(), "send_email".into(), "delete_user".into()]),
            opt(vec!["allow".into(), "block".into(), "require_approval".into()]),
            opt(rules),
            opt(names("s", 10)),
            opt(vec!["dec-5".into(), "dec-100".into(), "dec-999".into()]),
        ),
        (opt(hours.clone()), opt(hours)),
        1u64..40,
        proptest::option::of(1u64..=RECORDS + 2),
    )
        .prop_map(
            |((actor, action, effect, rule, session, decision_id), (since, until), page, start)| {
                (
                    AuditQuery {
                        since,
                        until,
                        actor,
                        action,
                        effect,
                        rule,
                        session,
                        decision_id,
                        ..AuditQuery::default()
                    },
                    page,
                    start,
                )
            },
        )
}

/// Paging newest first through any filter, from the newest record or
/// below any `before_seq`, with any page size, returns exactly the
/// records the filter selects, newest first, each once; on both stores,
/// which agree.
async fn paging_matches_the_filter(store: &TestStore) {
    for i in 1..=RECORDS {
        store.append(varied(i)).await.unwrap();
    }
    let entries: Vec<(u64, AuditEntry)> = (1..=RECORDS).map(|i| (i, varied(i))).collect();
    let mut runner = TestRunner::new(Config {
        cases: 200,
        ..Config::default()
    });
    let handle = tokio::runtime::Handle::current();
    let result = runner.run(&query_strategy(), |(q, page, start)| {
        let q = AuditQuery { before_seq: start, ..q };
        let want: Vec<u64> = entries
            .iter()
            .rev()
            .filter(|(seq, e)| start.is_none_or(|s| *seq < s) && matches(&q, e))
            .map(|(seq, _)| *seq)
            .collect();
        let got = tokio::task::block_in_place(|| handle.block_on(pages(&**store, &q, page)));
        for p in &got {
            prop_assert!(p.len() as u64 <= page);
        }
        let flat: Vec<u64> = got.concat();
        prop_assert_eq!(flat, want, "{} {:?}, pages of {}", store.name, q, page);
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn paging_newest_first_through_any_filter_sqlite() {
    paging_matches_the_filter(&TestStore::sqlite().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn paging_newest_first_through_any_filter_postgres() {
    if let Some(store) = TestStore::postgres("paging_newest_first_through_any_filter_postgres").await {
        paging_matches_the_filter(&store).await;
    }
}
