//! The versioned schema of a PostgreSQL store.
//!
//! Migrations are SQL embedded in the binary, applied at open in ONE
//! transaction under a transaction-scoped advisory lock (several replicas
//! starting at once: one migrates, the others wait and then find the schema
//! current). The version is the one row of `rein_schema_version`; a database
//! of a newer schema is refused.
//!
//! Text columns that are compared or ordered (time keys, ids used as
//! ranges) are `COLLATE "C"`: byte order, as SQLite's `BINARY`, whatever the
//! database's default collation, so that the fixed-width UTC keys of
//! `chain::format_time` and the bucket ranges compare exactly as there.

use tokio_postgres::Client;

use crate::StoreError;

/// The advisory lock key migrations run under ("REINMIGR" in ASCII).
const MIGRATION_LOCK: i64 = 0x5245_494E_4D49_4752;

/// Migration `i` takes the schema from version `i` to `i + 1`. New
/// migrations go at the END (another engineer's may follow `V1`).
pub(crate) const MIGRATIONS: &[&str] = &[V1, V2];

/// The schema this build writes and reads.
pub(crate) fn schema_version() -> i32 {
    i32::try_from(MIGRATIONS.len()).unwrap_or(i32::MAX)
}

/// Version 1: everything SQLite's versions 1 to 7 hold, plus what several
/// replicas need.
///
/// - `audit`: `body` is the canonical text of `chain.rs` and, with
///   `prev_hash` and `hash`, the only part the chain covers; the other
///   columns are copies for the query filters (as SQLite's). Append-only by
///   triggers (they stop a mistaken manual change, not someone determined:
///   the chain detects that).
/// - `chain_head`: the newest record, written in the batch's transaction;
///   the writer locks it `FOR UPDATE`, which serialises appends of every
///   replica.
/// - `appended_once`: the claims of `append_once` (primary key).
/// - `store_meta`: the audit key's fingerprint, the write probe.
/// - `approvals`: every column SQLite's has; `id` (an identity) orders rows
///   of the same `created_key` as SQLite's rowid does.
/// - the state (`limit_uses`, `session_calls`, `session_labels`,
///   `sessions`): each row carries `seq`, the audit seq of the record of
///   the decision that wrote it (and a call `output_seq`, the record that
///   set its output), so that "what changed after seq N" (the state
///   lease's delta) is one indexed query per table; `id` orders rows as
///   SQLite's rowid.
/// - `policy_versions`: kept policy sources by version hash.
/// - `rein_state_lease`: one row; `generation` is bumped by each lease
///   taken, `epoch` by every change the deltas do not replay (a reset of
///   limits, an import): a lease taken after it reloads the state whole.
/// - `rein_policy_published`: one row, the version every replica serves.
const V1: &str = r#"
CREATE TABLE audit (
    seq         bigint PRIMARY KEY,
    time        text COLLATE "C" NOT NULL,   -- fixed-width UTC (chain::format_time), or as given if unparseable
    decision_id text COLLATE "C" NOT NULL,
    phase       text NOT NULL,
    action      text NOT NULL,
    actor_id    text,
    session     text,
    effect      text NOT NULL,
    rules       text NOT NULL,               -- JSON array of rule ids
    body        text NOT NULL,
    prev_hash   text NOT NULL,
    hash        text NOT NULL
);
CREATE INDEX audit_time        ON audit (time);
CREATE INDEX audit_decision    ON audit (decision_id);
CREATE INDEX audit_activations ON audit (seq) WHERE phase = 'activate';

CREATE FUNCTION rein_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the audit log is append-only';
END
$$;
CREATE TRIGGER audit_no_change BEFORE UPDATE OR DELETE ON audit
    FOR EACH ROW EXECUTE FUNCTION rein_audit_append_only();
CREATE TRIGGER audit_no_truncate BEFORE TRUNCATE ON audit
    FOR EACH STATEMENT EXECUTE FUNCTION rein_audit_append_only();

CREATE TABLE chain_head (
    id   integer PRIMARY KEY CHECK (id = 1),
    seq  bigint NOT NULL,
    hash text NOT NULL
);
INSERT INTO chain_head (id, seq, hash) VALUES (1, 0, '0000000000000000000000000000000000000000000000000000000000000000');

CREATE TABLE appended_once (
    decision_id text COLLATE "C" NOT NULL,
    phase       text COLLATE "C" NOT NULL,
    PRIMARY KEY (decision_id, phase)
);

CREATE TABLE store_meta (
    key   text PRIMARY KEY,
    value text NOT NULL
);

CREATE TABLE approvals (
    id              text COLLATE "C" PRIMARY KEY,
    request_hash    text COLLATE "C" NOT NULL,
    decision_id     text NOT NULL,
    rules           text NOT NULL,           -- JSON array
    role            text NOT NULL,
    action          text NOT NULL,
    requested_by    text,
    summary         text NOT NULL,           -- JSON
    created_at      text NOT NULL,           -- as given
    expires_at      text NOT NULL,           -- as given
    created_key     text COLLATE "C" NOT NULL,  -- created_at in fixed-width UTC, for ordering
    expires_key     text COLLATE "C" NOT NULL,  -- expires_at in fixed-width UTC, compared as text
    state           text NOT NULL CHECK (state IN ('pending', 'granted', 'denied', 'used')),
    decided_by      text,
    decided_at      text,
    comment         text,
    roles           text,                    -- JSON array; NULL read as [role]
    requested_via   text,
    hold_seconds    bigint,
    sealed          text,
    requested_chain text,                    -- JSON array; NULL read as no chain
    row_order       bigint GENERATED ALWAYS AS IDENTITY  -- SQLite's rowid: ties of created_key
);
CREATE INDEX approvals_created       ON approvals (created_key, row_order);
CREATE INDEX approvals_state_created ON approvals (state, created_key, row_order);
CREATE INDEX approvals_request       ON approvals (request_hash, created_key);
CREATE INDEX approvals_via           ON approvals (requested_via, created_key) WHERE requested_via IS NOT NULL;
CREATE INDEX approvals_sealed        ON approvals (expires_key) WHERE sealed IS NOT NULL;

CREATE TABLE limit_uses (
    row_order   bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    seq         bigint NOT NULL,
    decision_id text COLLATE "C" NOT NULL,
    bucket      text COLLATE "C" NOT NULL,
    time        text COLLATE "C" NOT NULL,
    amount      text NOT NULL
);
CREATE INDEX limit_uses_time   ON limit_uses (time);
CREATE INDEX limit_uses_seq    ON limit_uses (seq);
CREATE INDEX limit_uses_bucket ON limit_uses (bucket);

CREATE TABLE session_calls (
    row_order   bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    seq         bigint NOT NULL,
    output_seq  bigint,
    decision_id text COLLATE "C" NOT NULL,
    session     text COLLATE "C" NOT NULL,
    action      text NOT NULL,
    time        text COLLATE "C" NOT NULL,
    effect      text NOT NULL,
    input       text NOT NULL,
    output      text
);
CREATE INDEX session_calls_time       ON session_calls (time);
CREATE INDEX session_calls_decision   ON session_calls (decision_id);
CREATE INDEX session_calls_session    ON session_calls (session);
CREATE INDEX session_calls_seq        ON session_calls (seq);
CREATE INDEX session_calls_output_seq ON session_calls (output_seq) WHERE output_seq IS NOT NULL;

CREATE TABLE session_labels (
    row_order   bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    seq         bigint NOT NULL,
    session     text COLLATE "C" NOT NULL,
    label       text NOT NULL,
    decision_id text COLLATE "C" NOT NULL,
    time        text COLLATE "C" NOT NULL
);
CREATE INDEX session_labels_session ON session_labels (session, time);
CREATE INDEX session_labels_seq     ON session_labels (seq);

CREATE TABLE sessions (
    id        text COLLATE "C" PRIMARY KEY,
    last_seen text COLLATE "C" NOT NULL,
    seq       bigint NOT NULL                -- the record that last set last_seen
);
CREATE INDEX sessions_seq       ON sessions (seq);
CREATE INDEX sessions_last_seen ON sessions (last_seen);

CREATE TABLE policy_versions (
    version  text COLLATE "C" PRIMARY KEY,
    label    text,
    sources  text NOT NULL,
    saved_at text COLLATE "C" NOT NULL       -- fixed-width UTC, when first kept
);

CREATE TABLE rein_state_lease (
    id         integer PRIMARY KEY CHECK (id = 1),
    generation bigint NOT NULL,
    epoch      bigint NOT NULL
);
INSERT INTO rein_state_lease (id, generation, epoch) VALUES (1, 0, 0);

CREATE TABLE rein_policy_published (
    id           integer PRIMARY KEY CHECK (id = 1),
    version      text,
    published_at text
);
INSERT INTO rein_policy_published (id, version, published_at) VALUES (1, NULL, NULL);
"#;

/// Version 2: the audit log is read newest first by any filter, in pages
/// of a few dozen records (the console), on logs of millions of records
/// (as SQLite's version 8):
/// - `(column, seq)` indexes for the equality filters on the actor, the
///   action, the effect and the session: one range in `seq` order, read
///   forwards or backwards, stopping at the page's end;
/// - the time index holds `seq` too (`(time, seq)`): a page of a time
///   range in the past is found from the index alone;
/// - `audit_rules` (the rule index, see `rule_index`): `(rule, seq)` for
///   every distinct rule id of each record, filled by a statement trigger
///   on the audit inserts (one per batch: the writer inserts a batch with
///   one statement) and here from the records already in the log;
///   append-only as the log;
/// - `audit_trace`: `(trace id, seq)` of the records that carry a caller's
///   `traceparent`, read from the end of the canonical body (see
///   `read::query_audit`); partial, so other records add nothing to it.
///
/// The trigger reads the `rules` column the writer fills from the entry;
/// `verify` checks the index against the bodies.
const V2: &str = r#"
DROP INDEX audit_time;
CREATE INDEX audit_time    ON audit (time, seq);
CREATE INDEX audit_actor   ON audit (actor_id, seq) WHERE actor_id IS NOT NULL;
CREATE INDEX audit_session ON audit (session, seq) WHERE session IS NOT NULL;
CREATE INDEX audit_action  ON audit (action, seq);
CREATE INDEX audit_effect  ON audit (effect, seq);

CREATE TABLE audit_rules (
    rule text COLLATE "C" NOT NULL,
    seq  bigint NOT NULL,
    PRIMARY KEY (rule, seq)
);
INSERT INTO audit_rules (rule, seq)
    SELECT DISTINCT e #>> '{}', audit.seq FROM audit, jsonb_array_elements(audit.rules::jsonb) AS e
    WHERE jsonb_typeof(e) = 'string';

CREATE FUNCTION rein_audit_rules_add() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO audit_rules (rule, seq)
        SELECT DISTINCT e #>> '{}', n.seq FROM new_rows AS n, jsonb_array_elements(n.rules::jsonb) AS e
        WHERE jsonb_typeof(e) = 'string'
    ON CONFLICT DO NOTHING;
    RETURN NULL;
END
$$;
CREATE TRIGGER audit_rules_add AFTER INSERT ON audit
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION rein_audit_rules_add();
CREATE TRIGGER audit_rules_no_change BEFORE UPDATE OR DELETE ON audit_rules
    FOR EACH ROW EXECUTE FUNCTION rein_audit_append_only();
CREATE TRIGGER audit_rules_no_truncate BEFORE TRUNCATE ON audit_rules
    FOR EACH STATEMENT EXECUTE FUNCTION rein_audit_append_only();

CREATE INDEX audit_trace ON audit ((substr(right(body, 67), 14, 32)), seq)
    WHERE left(right(body, 67), 13) = ',"trace":"00-';
"#;

/// Brings the database's schema to [`schema_version`], refusing a newer
/// one. Every step and the version change are one transaction under the
/// migration lock: a failure leaves the database as it was.
pub(crate) async fn migrate(client: &mut Client) -> Result<(), StoreError> {
    let tx = client.transaction().await?;
    // A migration of a large log may take longer than a statement may;
    // waiting for another replica's migration too.
    tx.batch_execute("SET LOCAL statement_timeout = 0").await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS rein_schema_version (
             id      integer PRIMARY KEY CHECK (id = 1),
             version integer NOT NULL
         )",
    )
    .await?;
    let current: i32 = match tx
        .query_opt("SELECT version FROM rein_schema_version WHERE id = 1", &[])
        .await?
    {
        Some(row) => row.try_get(0)?,
        None => {
            // A database with Rein's tables but no version row is not one we
            // made: refuse rather than create over it.
            let audit: Option<tokio_postgres::Row> = tx
                .query_opt(
                    "SELECT 1 FROM information_schema.tables WHERE table_schema = current_schema() \
                     AND table_name = 'audit'",
                    &[],
                )
                .await?;
            if audit.is_some() {
                return Err(StoreError(
                    "this database has an `audit` table but no Rein schema version: it is not a Rein store".into(),
                ));
            }
            0
        }
    };
    let target = schema_version();
    if current > target {
        return Err(StoreError(format!(
            "the store's schema version is {current}, newer than this build of Rein supports ({target}); use a \
             newer Rein"
        )));
    }
    if current == target {
        tx.commit().await?;
        return Ok(());
    }
    for (from, sql) in MIGRATIONS
        .iter()
        .enumerate()
        .skip(usize::try_from(current).unwrap_or(usize::MAX))
    {
        tx.batch_execute(sql).await.map_err(|e| {
            StoreError(format!(
                "migration of the schema from version {from} failed: {}",
                pg_text(&e)
            ))
        })?;
    }
    tx.execute(
        "INSERT INTO rein_schema_version (id, version) VALUES (1, $1) \
         ON CONFLICT (id) DO UPDATE SET version = excluded.version",
        &[&target],
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

/// A driver error with the server's message, detail and hint when it has
/// them (the driver's own text is only "db error").
pub(crate) fn pg_text(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => {
            let mut text = format!("{}: {}", db.severity(), db.message());
            if let Some(detail) = db.detail() {
                text.push_str(&format!(" ({detail})"));
            }
            if let Some(hint) = db.hint() {
                text.push_str(&format!("; hint: {hint}"));
            }
            text
        }
        None => with_causes(e),
    }
}

/// An error's text followed by its causes' (the driver's own text only
/// names the kind: "error performing TLS handshake").
pub(crate) fn with_causes(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_head_starts_at_genesis() {
        assert!(V1.contains(&format!("VALUES (1, 0, '{}')", crate::chain::GENESIS)));
    }
}
