//! `rein migrate`: copy a SQLite store into PostgreSQL, verbatim, and
//! check the copy.
//!
//! Records keep their seq and hashes (`import_records`), so the chain the
//! target verifies is the chain the source had: an auditor's `SEQ:HASH`
//! anchors stay valid. Everything else a server needs follows: approvals
//! (any state, with their sealed values), the state of limits and
//! sessions, the kept policy versions and the audit key's fingerprint.
//!
//! An interrupted run resumes: a target whose log is exactly a prefix of
//! the source's continues after it, approvals and state already there are
//! recognised (the same value) and not copied twice. A target holding
//! anything else is refused before anything is written.

use super::{EXIT_ALLOW, EXIT_BLOCK};
use anyhow::{bail, Context};
use clap::Args;
use rein_store::{AuditQuery, AuditRecord, SqliteStore, StateLock, StateWrite, Store, StoreLocation, Verification};
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// How long to wait for the source's state lock: a hook holds it for one
/// decision (milliseconds); a server holds it for its whole life.
const LOCK_WAIT: Duration = Duration::from_secs(3);

/// The most approvals one import carries.
const APPROVAL_PAGE: usize = 1_000;

#[derive(Args, Debug)]
#[command(after_help = "Examples:\n  \
    # stop the server first: its state lock is checked\n  \
    rein migrate --from rein.db --to postgres://rein@db.internal/rein\n\n  \
    # then start every replica on the database, with the same audit key\n  \
    rein serve policy.yaml --db postgres://rein@db.internal/rein --audit-key rein-audit.key\n\n\
    Copied verbatim: the audit log (seq, hashes: `SEQ:HASH` anchors kept from `rein audit verify` stay \
    valid), approvals in every state, the state of limits and sessions, the kept policy versions and \
    the audit key's fingerprint. The source is read only.\n\n\
    An interrupted run is resumed by running it again: a target whose log is a prefix of the source's \
    continues after it. A target holding other records is refused.")]
pub struct MigrateArgs {
    /// The SQLite store to copy (read only; refused while a `rein serve`
    /// keeps it).
    #[arg(long, value_name = "FILE")]
    from: PathBuf,
    /// The PostgreSQL database to copy into (`postgres://user@host/db`;
    /// the schema is created if absent), or `REIN_DB` (a URL with a
    /// password is better there: a command line is visible in `ps`).
    /// `sslmode=` in the URL and `REIN_DB_CA_FILE` as for `rein serve --db`.
    #[arg(long, value_name = "URL", env = "REIN_DB", hide_env_values = true)]
    to: String,
    /// Records per page (one read, one import transaction).
    #[arg(long, value_name = "N", default_value_t = 2_000,
          value_parser = clap::value_parser!(u64).range(1..=100_000))]
    page: u64,
}

pub fn run(args: MigrateArgs) -> anyhow::Result<u8> {
    let location = StoreLocation::parse(&args.to);
    if let StoreLocation::Sqlite(_) = location {
        // Shown without anything that could be a password: a mistyped
        // scheme (`postgress://user:pw@…`) is still someone's URL.
        bail!(
            "--to must be a PostgreSQL URL (postgres://user@host/database), got `{}`",
            StoreLocation::Postgres(args.to.clone()).redacted()
        );
    }
    if !args.from.is_file() {
        bail!(
            "`{}` is not a store file (give the SQLite store with --from)",
            args.from.display()
        );
    }
    // Held until the copy is done: no server, hook or `rein limits` changes
    // the source's state meanwhile.
    let _lock = source_lock(&args.from)?;
    let source =
        SqliteStore::open_read_only(&args.from).with_context(|| format!("cannot open `{}`", args.from.display()))?;
    // The runtime the store commands share: the PostgreSQL store's
    // connections and writer are its tasks.
    let rt = super::remote::runtime()?;
    let target = open_target(rt, &location)?;
    let mut out = std::io::stdout().lock();
    let report = rt.block_on(migrate(&source, target.as_ref(), args.page, &mut |line| {
        use std::io::Write;
        let _ = writeln!(out, "{line}");
    }));
    // Errors name the target without its password.
    let report = report.map_err(|e| anyhow::anyhow!("{}", rein_server::scrub_password(&location, &format!("{e:#}"))));
    match report? {
        Outcome::Verified => Ok(EXIT_ALLOW),
        Outcome::Mismatch => Ok(EXIT_BLOCK),
    }
}

/// The source's state lock, or why not.
fn source_lock(db: &std::path::Path) -> anyhow::Result<Option<StateLock>> {
    match StateLock::acquire(db, LOCK_WAIT) {
        Ok(lock) => Ok(Some(lock)),
        Err(e) if e.0.starts_with(StateLock::HELD) => bail!(
            "{}\n(stop the `rein serve` on `{}` first: a store that is still deciding would lose what it \
             records after the copy)",
            e.0,
            db.display()
        ),
        Err(e) => {
            // A lock file that cannot be made: the store's folder is not
            // writable, so no Rein process writes the store there either
            // (SQLite needs its `-wal` and `-shm` beside the file).
            let dir = db.parent().filter(|p| !p.as_os_str().is_empty());
            let writable = dir.map_or_else(|| std::path::Path::new(".").metadata(), std::fs::metadata);
            match writable {
                Ok(meta) if meta.permissions().readonly() => {
                    eprintln!("note: {} (the folder is read-only: copying it as it is)", e.0);
                    Ok(None)
                }
                _ => bail!("{}", e.0),
            }
        }
    }
}

/// Opens the PostgreSQL store (its schema created or brought up to date),
/// as `rein serve --db` does (`REIN_DB_CA_FILE` names a CA its certificate
/// must chain to).
fn open_target(rt: &tokio::runtime::Runtime, location: &StoreLocation) -> anyhow::Result<Arc<dyn Store>> {
    rt.block_on(rein_server::open_shared_store(location)).map_err(|e| {
        anyhow::anyhow!(
            "cannot open the target {}: {}",
            location.redacted(),
            rein_server::scrub_password(location, &format!("{e:#}"))
        )
    })
}

/// How a migration ended (an error is the third way).
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The target verifies and ends where the source ends.
    Verified,
    /// The target does not verify, or differs from the source.
    Mismatch,
}

/// The whole record at `seq` of `store`, if there is one.
async fn record_at(store: &dyn Store, seq: u64) -> anyhow::Result<Option<AuditRecord>> {
    if seq == 0 {
        return Ok(None);
    }
    let page = store
        .query_audit(&AuditQuery {
            after_seq: Some(seq - 1),
            limit: Some(1),
            ..AuditQuery::default()
        })
        .await?;
    Ok(page.into_iter().next().filter(|r| r.seq == seq))
}

/// The earliest time Rein ever recorded: "all the state" as a window
/// start (PostgreSQL's timestamps do not reach jiff's minimum).
fn all_time() -> jiff::Timestamp {
    jiff::Timestamp::UNIX_EPOCH
}

/// Copies `source` into `target`, saying what it does through `say`.
pub async fn migrate(
    source: &dyn Store,
    target: &dyn Store,
    page: u64,
    say: &mut dyn FnMut(String),
) -> anyhow::Result<Outcome> {
    // 1. The source must be intact: a broken chain copied is still broken,
    // and said here it names the source, not the copy.
    let source_len = source.audit_len().await.context("cannot read the source")?;
    match source.verify_audit().await.context("cannot verify the source")? {
        Verification::Intact { records } => say(format!("source: {records} records, chain intact")),
        Verification::Broken { seq, problem } => bail!(
            "the source's audit log is broken at record {seq} ({problem}); `rein audit verify --db FILE` says \
             more. Nothing was copied"
        ),
    }

    // 2. The target: empty, or a prefix of the source (a resumed run),
    // itself intact: its newest record equal to the source's commits to
    // the whole prefix only if the prefix's chain holds, checked before
    // anything is written.
    let target_len = target.audit_len().await.context("cannot read the target")?;
    if target_len > 0 {
        if let Verification::Broken { seq, problem } =
            target.verify_audit().await.context("cannot verify the target")?
        {
            bail!(
                "the target's audit log is broken at record {seq} ({problem}): it cannot be continued. Nothing \
                 was copied (migrate into an empty database)"
            );
        }
        let theirs = record_at(target, target_len).await.context("cannot read the target")?;
        let ours = record_at(source, target_len).await.context("cannot read the source")?;
        match (theirs, ours) {
            (Some(theirs), Some(ours)) if theirs == ours && target_len == source_len => say(format!(
                "target: holds all {target_len} records of the source already (an earlier run): checking the rest"
            )),
            (Some(theirs), Some(ours)) if theirs == ours => say(format!(
                "target: holds the source's first {target_len} records (an earlier run): resuming after record \
                 {target_len}"
            )),
            _ if target_len > source_len => bail!(
                "the target holds {target_len} records, more than the source's {source_len}: it is another \
                 store's log. Nothing was copied (migrate into an empty database)"
            ),
            _ => bail!(
                "the target's record {target_len} is not the source's: the target holds another store's log. \
                 Nothing was copied (migrate into an empty database)"
            ),
        }
    } else {
        say("target: empty".to_string());
    }

    // The state of limits and sessions, compared before anything is
    // written. A resumed run finds some of it there (a first run imported
    // the state of its time): the writes the target lacks are added after
    // the records (each names its decision's record); a target holding
    // writes the source does not have (pruned or reset since, or another
    // store's) is refused rather than merged.
    let writes = source
        .load_state(all_time(), all_time())
        .await
        .context("cannot read the source's state (limits, sessions)")?;
    let there = target
        .load_state(all_time(), all_time())
        .await
        .context("cannot read the target's state")?;
    let (missing, foreign) = state_difference(&writes, &there);
    if foreign > 0 {
        bail!(
            "the target holds {foreign} state writes (limits, sessions) the source does not have: another \
             store's, or the source's state changed since an earlier run (pruned or reset). Nothing was copied \
             (migrate into an empty database)"
        );
    }
    let state_len = writes.len();
    drop((writes, there));

    // 3. The audit key's fingerprint, before any record: a target bound to
    // another key is refused with nothing written.
    if let Some(fingerprint) = source.key_fingerprint().await.context("cannot read the source")? {
        let kept = target
            .bind_key_fingerprint(&fingerprint)
            .await
            .context("cannot record the audit key's fingerprint in the target")?;
        if kept != fingerprint {
            bail!(
                "the target was used with another audit key (fingerprint {kept}, the source's is {fingerprint}). \
                 Nothing was copied"
            );
        }
        say(format!("audit key fingerprint: {fingerprint}"));
    }

    // 4. Records, page by page, each page one import; approval ids noted
    // on the way (every approval is named by the decision that asked).
    let mut approval_ids = BTreeSet::new();
    let mut after = 0u64;
    let mut copied = 0u64;
    let mut pages = 0u64;
    let mut last: Option<AuditRecord> = None;
    loop {
        let records = source
            .query_audit(&AuditQuery {
                after_seq: Some(after),
                limit: Some(page),
                ..AuditQuery::default()
            })
            .await
            .with_context(|| format!("cannot read the source's records after {after}"))?;
        let Some(end) = records.last() else { break };
        after = end.seq;
        approval_ids.extend(records.iter().filter_map(|r| r.entry.approval.clone()));
        let fresh: Vec<AuditRecord> = records.iter().filter(|r| r.seq > target_len).cloned().collect();
        last = records.last().cloned();
        if !fresh.is_empty() {
            let (first, n) = (fresh[0].seq, fresh.len() as u64);
            target
                .import_records(fresh)
                .await
                .with_context(|| format!("cannot import records {first}..{} into the target", first + n - 1))?;
            copied += n;
            pages += 1;
            if pages.is_multiple_of(50) {
                eprintln!("… {copied} records copied (up to record {after})");
            }
        }
    }
    let source_end = last.as_ref().map_or(0, |r| r.seq);
    say(format!(
        "records: {copied} copied, {} already there",
        target_len.min(source_end)
    ));

    // 5. Approvals, in every state. Those no record names (none should
    // exist) come from the list, which is bounded.
    for approval in source
        .list_approvals(None, u64::MAX)
        .await
        .context("cannot list the source's approvals")?
    {
        approval_ids.insert(approval.id);
    }
    let (mut new, mut present) = (Vec::new(), 0u64);
    let mut imported = 0u64;
    for id in &approval_ids {
        let Some(approval) = source
            .get_approval(id)
            .await
            .context("cannot read the source's approvals")?
        else {
            continue;
        };
        match target
            .get_approval(id)
            .await
            .context("cannot read the target's approvals")?
        {
            None => new.push(approval),
            // The whole record, sealed values too: they are deleted once
            // an approval is decided, so one changed since differs.
            Some(there) if there == approval => present += 1,
            Some(_) => bail!(
                "the target holds an approval {id} that differs from the source's: it was changed after an \
                 interrupted migration. Migrate into an empty database"
            ),
        }
        if new.len() >= APPROVAL_PAGE {
            imported += new.len() as u64;
            target
                .import_approvals(std::mem::take(&mut new))
                .await
                .context("cannot import approvals into the target")?;
        }
    }
    if !new.is_empty() {
        imported += new.len() as u64;
        target
            .import_approvals(new)
            .await
            .context("cannot import approvals into the target")?;
    }
    say(format!("approvals: {imported} copied, {present} already there"));

    // 6. The state, whose difference was taken before any record.
    let n = missing.len();
    if n > 0 {
        target
            .import_state(missing)
            .await
            .context("cannot import the state (limits, sessions) into the target")?;
    }
    say(format!(
        "state: {n} writes copied, {} already there (limit uses, session calls, outputs, labels)",
        state_len - n
    ));

    // 7. Kept policy versions (saving one kept already is a no-op).
    let mut kept = 0u64;
    let mut damaged = Vec::new();
    for summary in source
        .policy_versions()
        .await
        .context("cannot list the source's policy versions")?
    {
        match source.policy_version(&summary.version).await {
            Ok(Some(version)) => {
                target
                    .save_policy_version(&version)
                    .await
                    .with_context(|| format!("cannot keep policy version {} in the target", summary.version))?;
                kept += 1;
            }
            Ok(None) => {}
            // Sources that no longer hash to their version cannot be kept
            // anywhere: said, not copied (the activation records, in the
            // chain, still name the version).
            Err(e) => damaged.push(format!("{}: {}", summary.version, e.0)),
        }
    }
    say(format!("policy versions: {kept} kept"));
    for d in &damaged {
        say(format!(
            "warning: policy version not copied, its kept sources are damaged: {d}"
        ));
    }

    // 8. The target as a whole: its chain verifies, it ends where the
    // source ended, with the same hash.
    let verified = target
        .verify_audit()
        .await
        .context("cannot verify the target's audit log")?;
    let target_len = target.audit_len().await.context("cannot read the target")?;
    let target_head = record_at(target, target_len).await.context("cannot read the target")?;
    let head = |r: &Option<AuditRecord>| {
        r.as_ref()
            .map_or_else(|| "(none)".to_string(), |r| format!("{}:{}", r.seq, r.hash))
    };
    match verified {
        Verification::Intact { records } if records == source_end && target_len == source_end => {
            let same_head = target_head.as_ref().map(|r| &r.hash) == last.as_ref().map(|r| &r.hash);
            if !same_head {
                say(format!(
                    "MISMATCH: the target's newest record is {}, the source's {}",
                    head(&target_head),
                    head(&last)
                ));
                return Ok(Outcome::Mismatch);
            }
            say(format!(
                "verified: {records} records, newest {} (as in the source)",
                head(&last)
            ));
            Ok(Outcome::Verified)
        }
        Verification::Intact { records } => {
            say(format!(
                "MISMATCH: the target holds {records} records, the source {source_end}"
            ));
            Ok(Outcome::Mismatch)
        }
        Verification::Broken { seq, problem } => {
            say(format!("BROKEN: the target's chain breaks at record {seq}: {problem}"));
            Ok(Outcome::Mismatch)
        }
    }
}

/// The writes of `source` that `target` lacks (in the source's order), and
/// how many of the target's are not the source's. Compared as multisets of
/// their JSON: two stores may list writes of one instant in another order.
fn state_difference(source: &[StateWrite], target: &[StateWrite]) -> (Vec<StateWrite>, usize) {
    let key = |w: &StateWrite| serde_json::to_string(w).unwrap_or_default();
    let mut there: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    for w in target {
        *there.entry(key(w)).or_default() += 1;
    }
    let mut missing = Vec::new();
    for w in source {
        match there.get_mut(&key(w)) {
            Some(n) if *n > 0 => *n -= 1,
            _ => missing.push(w.clone()),
        }
    }
    (missing, there.values().sum())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn the_floor_of_all_state_is_before_any_record() {
        assert!(all_time() < jiff::Timestamp::from_second(1_700_000_000).unwrap());
    }

    #[test]
    fn state_difference_is_what_the_target_lacks_in_any_order() {
        let label = |decision: &str, label: &str| StateWrite::Label {
            session: "s".into(),
            decision_id: decision.into(),
            label: label.into(),
            time: jiff::Timestamp::UNIX_EPOCH,
        };
        let source = [label("d1", "a"), label("d2", "b"), label("d3", "c")];
        // Nothing there: everything to copy.
        assert_eq!(state_difference(&source, &[]), (source.to_vec(), 0));
        // All there, listed in another order: nothing.
        let shuffled = [label("d3", "c"), label("d1", "a"), label("d2", "b")];
        assert_eq!(state_difference(&source, &shuffled), (vec![], 0));
        // A prefix there: the rest, in the source's order.
        assert_eq!(
            state_difference(&source, &[label("d2", "b")]),
            (vec![label("d1", "a"), label("d3", "c")], 0)
        );
        // Something the source no longer has: counted.
        assert_eq!(state_difference(&source, &[label("d9", "z")]).1, 1);
        // A write twice in the source, once there: once more.
        let twice = [label("d1", "a"), label("d1", "a")];
        assert_eq!(
            state_difference(&twice, &[label("d1", "a")]),
            (vec![label("d1", "a")], 0)
        );
    }
}
