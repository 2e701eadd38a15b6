//! Tampering with the database behind the store's back, on every backend
//! (see `common::differential!`): with a second raw connection to the
//! SQLite file, or plain SQL on the PostgreSQL database, as someone with
//! write access would (the append-only triggers dropped or disabled).
//! Every kind of change must be found by `verify_audit`, naming the right
//! record.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[macro_use]
mod common;

use common::{attacker, entry, open_temp, TestStore};
use rein_store::chain;
use rein_store::{AuditQuery, Store, Verification};

differential!(
    changed_field_in_a_body,
    changed_body_with_its_own_hash_recomputed,
    deleted_middle_record,
    deleted_newest_record,
    deleted_newest_record_and_moved_the_head,
    deleted_everything,
    swapped_bodies_and_hashes,
    swapped_whole_records,
    forged_record_inserted_and_the_rest_renumbered,
    forged_record_with_a_bad_hash,
    replayed_record,
    record_appended_behind_the_stores_back,
    body_replaced_by_garbage,
    deleted_chain_head_stops_appends,
    appends_after_a_removal_keep_it_visible,
    changed_query_column_alone,
    query_refuses_records_whose_columns_lie,
    query_refuses_a_changed_body,
    changes_deep_in_a_long_log_are_named,
);

/// Records 1..=10 in `store`, and its append-only triggers out of the way
/// (dropped in SQLite, disabled in PostgreSQL), as an attacker would.
async fn ten(store: TestStore) -> TestStore {
    for i in 1..=10 {
        store.append(entry(i)).await.unwrap();
    }
    assert_eq!(
        store.verify_audit().await.unwrap(),
        Verification::Intact { records: 10 }
    );
    untrigger(&store).await;
    store
}

async fn untrigger(store: &TestStore) {
    store
        .raw_exec(
            "DROP TRIGGER IF EXISTS audit_no_update; DROP TRIGGER IF EXISTS audit_no_delete;",
            "ALTER TABLE audit DISABLE TRIGGER USER",
        )
        .await;
}

/// Runs `sql` (the same text on both backends) behind the store's back;
/// the rows changed by its last statement.
async fn raw(store: &TestStore, sql: &str) -> u64 {
    store.raw_exec(sql, sql).await
}

/// `text` as an SQL string literal (both backends).
fn quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

async fn broken(store: &dyn Store) -> (u64, String) {
    match store.verify_audit().await.unwrap() {
        Verification::Broken { seq, problem } => (seq, problem),
        Verification::Intact { records } => panic!("tampering not detected ({records} records intact)"),
    }
}

async fn hash_of(store: &TestStore, seq: i64) -> String {
    column_of(store, "hash", seq).await.unwrap()
}

async fn column_of(store: &TestStore, column: &str, seq: i64) -> Option<String> {
    let mut values = store
        .raw_column(&format!("SELECT {column} FROM audit WHERE seq = {seq}"))
        .await;
    assert_eq!(values.len(), 1, "record {seq}");
    values.pop().unwrap()
}

async fn changed_field_in_a_body(store: TestStore) {
    let store = ten(store).await;
    // Record 4 was a block (4 % 3 == 1); make it look allowed, in the body
    // and in the filter column.
    let n = raw(
        &store,
        "UPDATE audit SET body = replace(body, '\"effect\":\"block\"', '\"effect\":\"allow\"'), effect = 'allow' \
         WHERE seq = 4",
    )
    .await;
    assert_eq!(n, 1);
    let (seq, problem) = broken(&*store).await;
    assert_eq!(seq, 4);
    assert!(problem.contains("changed"), "{problem}");
}

async fn changed_body_with_its_own_hash_recomputed(store: TestStore) {
    let store = ten(store).await;
    // A smarter attacker also fixes the record's hash; the next record no
    // longer links to it.
    let body = column_of(&store, "body", 4).await.unwrap();
    let body = body.replace("\"effect\":\"block\"", "\"effect\":\"allow\"");
    let hash = chain::record_hash(&hash_of(&store, 3).await, &body);
    raw(
        &store,
        &format!(
            "UPDATE audit SET body = {}, hash = {} WHERE seq = 4",
            quote(&body),
            quote(&hash)
        ),
    )
    .await;
    let (seq, problem) = broken(&*store).await;
    assert_eq!(seq, 5);
    assert!(problem.contains("does not link"), "{problem}");
}

async fn deleted_middle_record(store: TestStore) {
    let store = ten(store).await;
    raw(&store, "DELETE FROM audit WHERE seq = 6").await;
    let (seq, problem) = broken(&*store).await;
    assert_eq!(seq, 6);
    assert!(problem.contains("removed"), "{problem}");
}

async fn deleted_newest_record(store: TestStore) {
    let store = ten(store).await;
    raw(&store, "DELETE FROM audit WHERE seq = 10").await;
    let (seq, problem) = broken(&*store).await;
    assert_eq!(seq, 10);
    assert!(problem.contains("removed"), "{problem}");
}

async fn deleted_newest_record_and_moved_the_head(store: TestStore) {
    let store = ten(store).await;
    // Without a kept copy of the head this is undetectable by design (see
    // chain.rs); what the store does check is that the head matches.
    raw(&store, "DELETE FROM audit WHERE seq = 10").await;
    raw(&store, "UPDATE chain_head SET seq = 9").await;
    let (seq, problem) = broken(&*store).await;
    assert_eq!(seq, 9);
    assert!(problem.contains("chain head"), "{problem}");
}

async fn deleted_everything(store: TestStore) {
    let store = ten(store).await;
    raw(&store, "DELETE FROM audit").await;
    let (seq, problem) = broken(&*store).await;
    assert_eq!(seq, 1);
    assert!(problem.contains("removed"), "{problem}");
}

async fn swapped_bodies_and_hashes(store: TestStore) {
    let store = ten(store).await;
    raw(
        &store,
        "CREATE TEMP TABLE t AS SELECT seq, body, hash FROM audit WHERE seq IN (3, 8);
         UPDATE audit SET body = (SELECT body FROM t WHERE t.seq = 8), hash = (SELECT hash FROM t WHERE t.seq = 8)
           WHERE seq = 3;
         UPDATE audit SET body = (SELECT body FROM t WHERE t.seq = 3), hash = (SELECT hash FROM t WHERE t.seq = 3)
           WHERE seq = 8;",
    )
    .await;
    let (seq, problem) = broken(&*store).await;
    assert_eq!(seq, 3);
    assert!(problem.contains("changed"), "{problem}");
}

async fn swapped_whole_records(store: TestStore) {
    let store = ten(store).await;
    // Body, prev_hash and hash move together: each record still hashes
    // correctly, but no longer links to the one before it.
    raw(
        &store,
        "CREATE TEMP TABLE t AS SELECT * FROM audit WHERE seq IN (3, 8);
         DELETE FROM audit WHERE seq IN (3, 8);
         INSERT INTO audit SELECT 11 - seq, time, decision_id, phase, action, actor_id, session, effect, rules,
           body, prev_hash, hash FROM t;",
    )
    .await;
    let (seq, problem) = broken(&*store).await;
    assert_eq!(seq, 3);
    assert!(problem.contains("reordered"), "{problem}");
}

async fn forged_record_inserted_and_the_rest_renumbered(store: TestStore) {
    let store = ten(store).await;
    // The attacker makes room at 5, writes a well-formed record that links
    // to record 4 with a correct hash, and moves the head along.
    make_room_at_5(&store).await;
    let mut forged = entry(5);
    forged.decision_id = "dec-forged".into();
    forged.effect = "allow".into();
    let body = chain::canonical(5, &forged);
    let prev = hash_of(&store, 4).await;
    let hash = chain::record_hash(&prev, &body);
    raw(
        &store,
        &format!(
            "INSERT INTO audit (seq, time, decision_id, phase, action, actor_id, session, effect, rules, body, \
             prev_hash, hash) VALUES (5, '2025-06-01T12:00:05.000005Z', 'dec-forged', 'after', 'delete_user', \
             'carol', 's1', 'allow', '[]', {}, {}, {})",
            quote(&body),
            quote(&prev),
            quote(&hash)
        ),
    )
    .await;
    let last = hash_of(&store, 11).await;
    raw(
        &store,
        &format!("UPDATE chain_head SET seq = 11, hash = {}", quote(&last)),
    )
    .await;
    let (seq, problem) = broken(&*store).await;
    assert_eq!(seq, 5);
    assert!(problem.contains("inserted"), "{problem}");
}

/// Makes room at 5 by renumbering 5..=10 to 6..=11.
async fn make_room_at_5(store: &TestStore) {
    raw(
        store,
        "UPDATE audit SET seq = -seq WHERE seq >= 5; UPDATE audit SET seq = 1 - seq WHERE seq < 0;",
    )
    .await;
}

async fn forged_record_with_a_bad_hash(store: TestStore) {
    let store = ten(store).await;
    make_room_at_5(&store).await;
    let prev = hash_of(&store, 4).await;
    let fake = "f".repeat(64);
    raw(
        &store,
        &format!(
            "INSERT INTO audit SELECT 5, time, 'dec-forged', phase, action, actor_id, session, effect, rules, \
             replace(body, 'dec-5', 'dec-forged'), {}, {} FROM audit WHERE seq = 6",
            quote(&prev),
            quote(&fake)
        ),
    )
    .await;
    let (seq, problem) = broken(&*store).await;
    assert_eq!(seq, 5);
    assert!(problem.contains("changed"), "{problem}");
}

async fn replayed_record(store: TestStore) {
    let store = ten(store).await;
    // An exact copy of record 5 inserted before it: it hashes and links
    // correctly, the original no longer does.
    make_room_at_5(&store).await;
    raw(
        &store,
        "INSERT INTO audit SELECT 5, time, decision_id, phase, action, actor_id, session, effect, rules, body, \
         prev_hash, hash FROM audit WHERE seq = 6",
    )
    .await;
    let (seq, problem) = broken(&*store).await;
    assert_eq!(seq, 5);
    assert!(problem.contains("inserted"), "{problem}");
}

async fn record_appended_behind_the_stores_back(store: TestStore) {
    let store = ten(store).await;
    let prev = hash_of(&store, 10).await;
    let body = chain::canonical(11, &entry(11));
    let hash = chain::record_hash(&prev, &body);
    raw(
        &store,
        &format!(
            "INSERT INTO audit SELECT 11, time, decision_id, phase, action, actor_id, session, effect, rules, {}, \
             {}, {} FROM audit WHERE seq = 10",
            quote(&body),
            quote(&prev),
            quote(&hash)
        ),
    )
    .await;
    let (seq, problem) = broken(&*store).await;
    assert_eq!(seq, 11);
    assert!(problem.contains("inserted"), "{problem}");
}

/// A body that is not a record at all (not JSON).
async fn body_replaced_by_garbage(store: TestStore) {
    let store = ten(store).await;
    raw(&store, "UPDATE audit SET body = '{not json' WHERE seq = 2").await;
    let (seq, problem) = broken(&*store).await;
    assert_eq!(seq, 2);
    assert!(problem.contains("changed"), "{problem}");
}

/// SQLite lets a text column hold a blob.
#[tokio::test]
async fn body_replaced_by_a_blob() {
    let (dir, store) = open_temp();
    for i in 1..=10 {
        store.append(entry(i)).await.unwrap();
    }
    let raw = attacker(&dir.path().join("rein.db"));
    raw.execute("UPDATE audit SET body = x'00ff' WHERE seq = 2", [])
        .unwrap();
    match store.verify_audit().await.unwrap() {
        Verification::Broken { seq, problem } => {
            assert_eq!(seq, 2);
            assert!(problem.contains("changed"), "{problem}");
        }
        other => panic!("tampering not detected: {other:?}"),
    }
}

async fn deleted_chain_head_stops_appends(store: TestStore) {
    let store = ten(store).await;
    raw(&store, "DELETE FROM chain_head").await;
    let (seq, problem) = broken(&*store).await;
    assert_eq!(seq, 10);
    assert!(problem.contains("head is missing"), "{problem}");
    let err = store.append(entry(11)).await.unwrap_err();
    assert!(err.0.contains("chain head is missing"), "{err}");
}

async fn appends_after_a_removal_keep_it_visible(store: TestStore) {
    let store = ten(store).await;
    raw(&store, "DELETE FROM audit WHERE seq = 10").await;
    // The writer chains onto the head, not onto what is left, so the gap
    // stays in the chain.
    let rec = store.append(entry(11)).await.unwrap();
    assert_eq!(rec.seq, 11);
    let (seq, problem) = broken(&*store).await;
    assert_eq!(seq, 10);
    assert!(problem.contains("removed"), "{problem}");
}

/// An edit of a query column alone (the chain covers only the body) still
/// changes what queries find, so verify derives every column from the body
/// again and names the record. See `common::entry`: record 4 is a `before`
/// `send_email` by bob, blocked, with rules and no session; record 5 has
/// session `s1`; record 10 is the newest. Each edit is undone before the
/// next.
async fn changed_query_column_alone(store: TestStore) {
    let store = ten(store).await;
    for (seq, column, value) in [
        (4, "effect", "'allow'"),
        (4, "action", "'refund'"),
        (4, "actor_id", "'mallory'"),
        (4, "actor_id", "NULL"),
        (4, "session", "'s9'"),
        (5, "session", "NULL"),
        (4, "phase", "'after'"),
        (4, "decision_id", "'dec-other'"),
        (4, "time", "'2020-01-01T00:00:00.000000Z'"),
        (4, "rules", "'[]'"),
        (1, "effect", "'allow'"),
        (10, "effect", "'allow'"),
    ] {
        let kept = column_of(&store, column, seq).await;
        let n = raw(
            &store,
            &format!("UPDATE audit SET {column} = {value} WHERE seq = {seq}"),
        )
        .await;
        assert_eq!(n, 1);
        let (at, problem) = broken(&*store).await;
        assert_eq!(at, u64::try_from(seq).unwrap(), "{column} = {value}: {problem}");
        assert!(
            problem.contains("changed") && problem.contains(&format!("`{column}` column")),
            "{column} = {value}: {problem}"
        );
        let kept = kept.as_deref().map_or_else(|| "NULL".to_owned(), quote);
        raw(&store, &format!("UPDATE audit SET {column} = {kept} WHERE seq = {seq}")).await;
        assert_eq!(
            store.verify_audit().await.unwrap(),
            Verification::Intact { records: 10 },
            "{column} restored"
        );
    }
}

/// Queries read the record from its body, and refuse to return one whose
/// body does not match the filters that selected it (its columns were
/// edited to bring it in).
async fn query_refuses_records_whose_columns_lie(store: TestStore) {
    let store = ten(store).await;
    // Record 4 is bob's; make its column say carol.
    raw(&store, "UPDATE audit SET actor_id = 'carol' WHERE seq = 4").await;
    let err = store
        .query_audit(&AuditQuery {
            actor: Some("carol".into()),
            ..AuditQuery::default()
        })
        .await
        .unwrap_err();
    assert!(err.0.contains("record 4") && err.0.contains("verify"), "{err}");
}

/// A record whose body was changed is refused by queries (and so by
/// `export`), not shown as recorded; the others still read.
async fn query_refuses_a_changed_body(store: TestStore) {
    let store = ten(store).await;
    assert_eq!(
        raw(
            &store,
            "UPDATE audit SET body = replace(body, '\"effect\":\"block\"', '\"effect\":\"allow\"') WHERE seq = 4",
        )
        .await,
        1
    );
    let err = store.query_audit(&AuditQuery::default()).await.unwrap_err();
    assert!(
        err.0.contains("record 4 does not match its hash") && err.0.contains("verify"),
        "{err}"
    );
    let before = store
        .query_audit(&AuditQuery {
            limit: Some(3),
            ..AuditQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(before.len(), 3);
}

/// Verification reads rows in batches and checks them on another thread
/// (SQLite: 1,024 a batch): changes deep into a long log, in any batch and
/// at a batch's edge, are named the same way.
async fn changes_deep_in_a_long_log_are_named(store: TestStore) {
    // Appended 32 at a time (group commit): which entry gets which seq
    // does not matter here.
    let shared = store.arc();
    for start in (1..=3_000u64).step_by(32) {
        let tasks: Vec<_> = (start..(start + 32).min(3_001))
            .map(|i| {
                let shared = std::sync::Arc::clone(&shared);
                tokio::spawn(async move { shared.append(entry(i)).await.unwrap() })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
    }
    let intact = Verification::Intact { records: 3_000 };
    assert_eq!(store.verify_audit().await.unwrap(), intact);
    untrigger(&store).await;
    // One character added to a body, then taken away again.
    for seq in [1_024i64, 1_025, 2_999] {
        assert_eq!(
            raw(
                &store,
                &format!("UPDATE audit SET body = body || ' ' WHERE seq = {seq}")
            )
            .await,
            1
        );
        let (at, problem) = broken(&*store).await;
        assert_eq!(at, u64::try_from(seq).unwrap(), "{problem}");
        assert!(problem.contains("changed"), "{problem}");
        raw(
            &store,
            &format!("UPDATE audit SET body = substr(body, 1, length(body) - 1) WHERE seq = {seq}"),
        )
        .await;
        assert_eq!(store.verify_audit().await.unwrap(), intact);
    }
    // A query column edited alone, deep in the log.
    let action = column_of(&store, "action", 2048).await.unwrap();
    raw(&store, "UPDATE audit SET action = 'other' WHERE seq = 2048").await;
    let (at, problem) = broken(&*store).await;
    assert_eq!(at, 2_048, "{problem}");
    raw(
        &store,
        &format!("UPDATE audit SET action = {} WHERE seq = 2048", quote(&action)),
    )
    .await;
    assert_eq!(store.verify_audit().await.unwrap(), intact);
    // A record removed from the middle of a batch.
    raw(&store, "DELETE FROM audit WHERE seq = 2500").await;
    let (at, problem) = broken(&*store).await;
    assert_eq!(at, 2_500, "{problem}");
    assert!(problem.contains("removed"), "{problem}");
}
