//! Tampering with the file behind the store's back, with a second raw
//! connection, as someone with write access to the file would: every kind
//! of change must be found by `verify_audit`, naming the right record.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{attacker, entry, open_temp};
use rein_store::chain;
use rein_store::{AuditQuery, SqliteStore, Store, Verification};

/// A store with records 1..=10, and a raw connection to its file.
async fn ten() -> (tempfile::TempDir, SqliteStore, rusqlite::Connection) {
    let (dir, store) = open_temp();
    for i in 1..=10 {
        store.append(entry(i)).await.unwrap();
    }
    assert_eq!(
        store.verify_audit().await.unwrap(),
        Verification::Intact { records: 10 }
    );
    let raw = attacker(&dir.path().join("rein.db"));
    (dir, store, raw)
}

async fn broken(store: &SqliteStore) -> (u64, String) {
    match store.verify_audit().await.unwrap() {
        Verification::Broken { seq, problem } => (seq, problem),
        Verification::Intact { records } => panic!("tampering not detected ({records} records intact)"),
    }
}

fn hash_of(raw: &rusqlite::Connection, seq: i64) -> String {
    raw.query_row("SELECT hash FROM audit WHERE seq = ?1", [seq], |r| r.get(0))
        .unwrap()
}

#[tokio::test]
async fn changed_field_in_a_body() {
    let (_dir, store, raw) = ten().await;
    // Record 4 was a block (4 % 3 == 1); make it look allowed, in the body
    // and in the filter column.
    let n = raw
        .execute(
            "UPDATE audit SET body = replace(body, '\"effect\":\"block\"', '\"effect\":\"allow\"'), effect = 'allow' \
             WHERE seq = 4",
            [],
        )
        .unwrap();
    assert_eq!(n, 1);
    let (seq, problem) = broken(&store).await;
    assert_eq!(seq, 4);
    assert!(problem.contains("changed"), "{problem}");
}

#[tokio::test]
async fn changed_body_with_its_own_hash_recomputed() {
    let (_dir, store, raw) = ten().await;
    // A smarter attacker also fixes the record's hash; the next record no
    // longer links to it.
    let body: String = raw
        .query_row("SELECT body FROM audit WHERE seq = 4", [], |r| r.get(0))
        .unwrap();
    let body = body.replace("\"effect\":\"block\"", "\"effect\":\"allow\"");
    let hash = chain::record_hash(&hash_of(&raw, 3), &body);
    raw.execute("UPDATE audit SET body = ?1, hash = ?2 WHERE seq = 4", (&body, &hash))
        .unwrap();
    let (seq, problem) = broken(&store).await;
    assert_eq!(seq, 5);
    assert!(problem.contains("does not link"), "{problem}");
}

#[tokio::test]
async fn deleted_middle_record() {
    let (_dir, store, raw) = ten().await;
    raw.execute("DELETE FROM audit WHERE seq = 6", []).unwrap();
    let (seq, problem) = broken(&store).await;
    assert_eq!(seq, 6);
    assert!(problem.contains("removed"), "{problem}");
}

#[tokio::test]
async fn deleted_newest_record() {
    let (_dir, store, raw) = ten().await;
    raw.execute("DELETE FROM audit WHERE seq = 10", []).unwrap();
    let (seq, problem) = broken(&store).await;
    assert_eq!(seq, 10);
    assert!(problem.contains("removed"), "{problem}");
}

#[tokio::test]
async fn deleted_newest_record_and_moved_the_head() {
    let (_dir, store, raw) = ten().await;
    // Without a kept copy of the head this is undetectable by design (see
    // chain.rs); what the store does check is that the head matches.
    raw.execute("DELETE FROM audit WHERE seq = 10", []).unwrap();
    raw.execute("UPDATE chain_head SET seq = 9", []).unwrap();
    let (seq, problem) = broken(&store).await;
    assert_eq!(seq, 9);
    assert!(problem.contains("chain head"), "{problem}");
}

#[tokio::test]
async fn deleted_everything() {
    let (_dir, store, raw) = ten().await;
    raw.execute("DELETE FROM audit", []).unwrap();
    let (seq, problem) = broken(&store).await;
    assert_eq!(seq, 1);
    assert!(problem.contains("removed"), "{problem}");
}

#[tokio::test]
async fn swapped_bodies_and_hashes() {
    let (_dir, store, raw) = ten().await;
    raw.execute_batch(
        "CREATE TEMP TABLE t AS SELECT seq, body, hash FROM audit WHERE seq IN (3, 8);
         UPDATE audit SET body = (SELECT body FROM t WHERE t.seq = 8), hash = (SELECT hash FROM t WHERE t.seq = 8)
           WHERE seq = 3;
         UPDATE audit SET body = (SELECT body FROM t WHERE t.seq = 3), hash = (SELECT hash FROM t WHERE t.seq = 3)
           WHERE seq = 8;",
    )
    .unwrap();
    let (seq, problem) = broken(&store).await;
    assert_eq!(seq, 3);
    assert!(problem.contains("changed"), "{problem}");
}

#[tokio::test]
async fn swapped_whole_records() {
    let (_dir, store, raw) = ten().await;
    // Body, prev_hash and hash move together: each record still hashes
    // correctly, but no longer links to the one before it.
    raw.execute_batch(
        "CREATE TEMP TABLE t AS SELECT * FROM audit WHERE seq IN (3, 8);
         DELETE FROM audit WHERE seq IN (3, 8);
         INSERT INTO audit SELECT 11 - seq, time, decision_id, phase, action, actor_id, session, effect, rules,
           body, prev_hash, hash FROM t;",
    )
    .unwrap();
    let (seq, problem) = broken(&store).await;
    assert_eq!(seq, 3);
    assert!(problem.contains("reordered"), "{problem}");
}

#[tokio::test]
async fn forged_record_inserted_and_the_rest_renumbered() {
    let (_dir, store, raw) = ten().await;
    // The attacker makes room at 5, writes a well-formed record that links
    // to record 4 with a correct hash, and moves the head along.
    make_room_at_5(&raw);
    let mut forged = entry(5);
    forged.decision_id = "dec-forged".into();
    forged.effect = "allow".into();
    let body = chain::canonical(5, &forged);
    let prev = hash_of(&raw, 4);
    let hash = chain::record_hash(&prev, &body);
    raw.execute(
        "INSERT INTO audit (seq, time, decision_id, phase, action, actor_id, session, effect, rules, body, prev_hash, \
         hash) VALUES (5, '2025-06-01T12:00:05.000005Z', 'dec-forged', 'after', 'delete_user', 'carol', 's1', 'allow', \
         '[]', ?1, ?2, ?3)",
        (&body, &prev, &hash),
    )
    .unwrap();
    let last = hash_of(&raw, 11);
    raw.execute("UPDATE chain_head SET seq = 11, hash = ?1", [&last])
        .unwrap();
    let (seq, problem) = broken(&store).await;
    assert_eq!(seq, 5);
    assert!(problem.contains("inserted"), "{problem}");
}

/// Makes room at 5 by renumbering 5..=10 to 6..=11.
fn make_room_at_5(raw: &rusqlite::Connection) {
    raw.execute_batch("UPDATE audit SET seq = -seq WHERE seq >= 5; UPDATE audit SET seq = 1 - seq WHERE seq < 0;")
        .unwrap();
}

#[tokio::test]
async fn forged_record_with_a_bad_hash() {
    let (_dir, store, raw) = ten().await;
    make_room_at_5(&raw);
    let prev = hash_of(&raw, 4);
    let fake = "f".repeat(64);
    raw.execute(
        "INSERT INTO audit SELECT 5, time, 'dec-forged', phase, action, actor_id, session, effect, rules, \
         replace(body, 'dec-5', 'dec-forged'), ?1, ?2 FROM audit WHERE seq = 6",
        (&prev, &fake),
    )
    .unwrap();
    let (seq, problem) = broken(&store).await;
    assert_eq!(seq, 5);
    assert!(problem.contains("changed"), "{problem}");
}

#[tokio::test]
async fn replayed_record() {
    let (_dir, store, raw) = ten().await;
    // An exact copy of record 5 inserted before it: it hashes and links
    // correctly, the original no longer does.
    make_room_at_5(&raw);
    raw.execute(
        "INSERT INTO audit SELECT 5, time, decision_id, phase, action, actor_id, session, effect, rules, body, \
                 prev_hash, hash FROM audit WHERE seq = 6",
        [],
    )
    .unwrap();
    let (seq, problem) = broken(&store).await;
    assert_eq!(seq, 5);
    assert!(problem.contains("inserted"), "{problem}");
}

#[tokio::test]
async fn record_appended_behind_the_stores_back() {
    let (_dir, store, raw) = ten().await;
    let prev = hash_of(&raw, 10);
    let body = chain::canonical(11, &entry(11));
    let hash = chain::record_hash(&prev, &body);
    raw.execute(
        "INSERT INTO audit SELECT 11, time, decision_id, phase, action, actor_id, session, effect, rules, ?1, ?2, ?3 \
         FROM audit WHERE seq = 10",
        (&body, &prev, &hash),
    )
    .unwrap();
    let (seq, problem) = broken(&store).await;
    assert_eq!(seq, 11);
    assert!(problem.contains("inserted"), "{problem}");
}

#[tokio::test]
async fn body_replaced_by_a_blob() {
    let (_dir, store, raw) = ten().await;
    raw.execute("UPDATE audit SET body = x'00ff' WHERE seq = 2", [])
        .unwrap();
    let (seq, problem) = broken(&store).await;
    assert_eq!(seq, 2);
    assert!(problem.contains("changed"), "{problem}");
}

#[tokio::test]
async fn deleted_chain_head_stops_appends() {
    let (_dir, store, raw) = ten().await;
    raw.execute("DELETE FROM chain_head", []).unwrap();
    let (seq, problem) = broken(&store).await;
    assert_eq!(seq, 10);
    assert!(problem.contains("head is missing"), "{problem}");
    let err = store.append(entry(11)).await.unwrap_err();
    assert!(err.0.contains("chain head is missing"), "{err}");
}

#[tokio::test]
async fn appends_after_a_removal_keep_it_visible() {
    let (_dir, store, raw) = ten().await;
    raw.execute("DELETE FROM audit WHERE seq = 10", []).unwrap();
    // The writer chains onto the head, not onto what is left, so the gap
    // stays in the chain.
    let rec = store.append(entry(11)).await.unwrap();
    assert_eq!(rec.seq, 11);
    let (seq, problem) = broken(&store).await;
    assert_eq!(seq, 10);
    assert!(problem.contains("removed"), "{problem}");
}

/// An edit of a query column alone (the chain covers only the body) still
/// changes what queries find, so verify derives every column from the body
/// again and names the record. See `common::entry`: record 4 is a `before`
/// `send_email` by bob, blocked, with rules and no session; record 5 has
/// session `s1`; record 10 is the newest.
#[tokio::test]
async fn changed_query_column_alone() {
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
        let (_dir, store, raw) = ten().await;
        let n = raw
            .execute(&format!("UPDATE audit SET {column} = {value} WHERE seq = {seq}"), [])
            .unwrap();
        assert_eq!(n, 1);
        let (at, problem) = broken(&store).await;
        assert_eq!(at, seq, "{column} = {value}: {problem}");
        assert!(
            problem.contains("changed") && problem.contains(&format!("`{column}` column")),
            "{column} = {value}: {problem}"
        );
    }
}

/// Queries read the record from its body, and refuse to return one whose
/// body does not match the filters that selected it (its columns were
/// edited to bring it in).
#[tokio::test]
async fn query_refuses_records_whose_columns_lie() {
    let (_dir, store, raw) = ten().await;
    // Record 4 is bob's; make its column say carol.
    raw.execute("UPDATE audit SET actor_id = 'carol' WHERE seq = 4", [])
        .unwrap();
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
#[tokio::test]
async fn query_refuses_a_changed_body() {
    let (_dir, store, raw) = ten().await;
    assert_eq!(
        raw.execute(
            "UPDATE audit SET body = replace(body, '\"effect\":\"block\"', '\"effect\":\"allow\"') WHERE seq = 4",
            [],
        )
        .unwrap(),
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

/// Verification reads rows in batches of 1,024 on one thread and checks
/// them on another: changes deep into a long log, in any batch and at a
/// batch's edge, are named the same way.
#[tokio::test]
async fn changes_deep_in_a_long_log_are_named() {
    let (dir, store) = open_temp();
    for i in 1..=3_000 {
        store.append(entry(i)).await.unwrap();
    }
    let intact = Verification::Intact { records: 3_000 };
    assert_eq!(store.verify_audit().await.unwrap(), intact);
    let raw = attacker(&dir.path().join("rein.db"));
    // One character added to a body, then taken away again.
    let edit = |seq: i64, sql: &str| assert_eq!(raw.execute(sql, [seq]).unwrap(), 1);
    for seq in [1_024i64, 1_025, 2_999] {
        edit(seq, "UPDATE audit SET body = body || ' ' WHERE seq = ?1");
        let (at, problem) = broken(&store).await;
        assert_eq!(at, u64::try_from(seq).unwrap(), "{problem}");
        assert!(problem.contains("changed"), "{problem}");
        edit(
            seq,
            "UPDATE audit SET body = substr(body, 1, length(body) - 1) WHERE seq = ?1",
        );
        assert_eq!(store.verify_audit().await.unwrap(), intact);
    }
    // A query column edited alone, deep in the log.
    let action: String = raw
        .query_row("SELECT action FROM audit WHERE seq = 2048", [], |r| r.get(0))
        .unwrap();
    raw.execute("UPDATE audit SET action = 'other' WHERE seq = 2048", [])
        .unwrap();
    let (at, problem) = broken(&store).await;
    assert_eq!(at, 2_048, "{problem}");
    raw.execute("UPDATE audit SET action = ?1 WHERE seq = 2048", [&action])
        .unwrap();
    assert_eq!(store.verify_audit().await.unwrap(), intact);
    // A record removed from the middle of a batch.
    raw.execute("DELETE FROM audit WHERE seq = 2500", []).unwrap();
    let (at, problem) = broken(&store).await;
    assert_eq!(at, 2_500, "{problem}");
    assert!(problem.contains("removed"), "{problem}");
}
