//! `rein limits`: list and reset the limit buckets of stateful rules.

use super::remote::{server_error, Conn, Target};
use super::{printable, EXIT_ALLOW};
use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use rein_engine::state::BucketKey;
use rein_runtime::{Runtime, RuntimeConfig};
use rein_store::{StateLock, StoreLocation};
use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Args, Debug)]
pub struct LimitsArgs {
    #[command(subcommand)]
    command: LimitsCommand,
}

#[derive(Subcommand, Debug)]
enum LimitsCommand {
    /// List every limit bucket with uses in its window: rule, bucket, use,
    /// limit, window and when the next unit frees up.
    ///
    /// On the store, give the policy (`--policy`): it says each limit's
    /// maximum and window. A SQLite file is refused while a `rein serve`
    /// keeps it (ask the server with --server instead); a PostgreSQL
    /// database is read under its state lease, with what every replica
    /// used.
    List {
        #[command(flatten)]
        target: Target,
        /// The policy files (with --db): their limits say what a bucket may
        /// use and in which window.
        #[arg(long = "policy", short = 'p', num_args = 1.., value_name = "POLICY", conflicts_with = "server")]
        policy: Vec<PathBuf>,
        /// Print one JSON object: `{"limits": [...]}`, as the server's
        /// `GET /v1/limits`.
        #[arg(long)]
        json: bool,
    },
    /// Forget the uses of limits: all of them, one rule's (--rule) or one
    /// bucket's (--bucket, its id as `list --json` shows it). The audit log
    /// keeps every decision.
    ///
    /// Through a server it needs an admin token. On a SQLite file it is
    /// refused while a `rein serve` keeps it: the server's memory would not
    /// see the change. On a PostgreSQL database every replica sees it at
    /// its next state lease.
    Reset {
        #[command(flatten)]
        target: Target,
        /// Only this rule's buckets.
        #[arg(long, value_name = "RULE")]
        rule: Option<String>,
        /// Only this bucket (its id: the JSON array `list --json` shows as
        /// `bucket`).
        #[arg(long, value_name = "ID")]
        bucket: Option<String>,
        /// Print the answer as JSON.
        #[arg(long)]
        json: bool,
    },
}

/// How long to wait for the store's state lock (a hook process holds it
/// for a moment; a server for its lifetime).
const LOCK_WAIT: Duration = Duration::from_secs(2);

pub fn run(args: LimitsArgs) -> anyhow::Result<u8> {
    let rt = super::remote::runtime()?;
    match args.command {
        LimitsCommand::List { target, policy, json } => {
            let limits: Vec<serde_json::Value> = match target.connect()? {
                Conn::Local(store) => {
                    if policy.is_empty() {
                        bail!(
                            "on a store file, give the policy with --policy (it says each limit's maximum and window)"
                        );
                    }
                    let policy = rein_engine::Policy::load(&policy)
                        .map_err(|e| anyhow::anyhow!("the policy does not load:\n{}", e.render(false)))?;
                    if !policy.uses_state() {
                        bail!("the policy has no stateful rules, so no limits");
                    }
                    let location = target.location();
                    // On PostgreSQL no lock: the listing is what the store
                    // holds now (replicas coordinate by the state lease).
                    let lock = match &location {
                        StoreLocation::Sqlite(db) => Some(lock(db)?),
                        StoreLocation::Postgres(_) => None,
                    };
                    let runtime = Runtime::new(policy, store, RuntimeConfig::default());
                    if let Some(lock) = lock {
                        runtime.hold_state_lock(lock);
                    }
                    rt.block_on(runtime.open_state())
                        .with_context(|| format!("cannot read the state of `{location}`"))?;
                    let now = jiff::Timestamp::now();
                    rt.block_on(runtime.limits_current(now))?
                        .iter()
                        .map(rein_server::bucket_json)
                        .collect()
                }
                remote => {
                    let (status, body) = remote.call("GET", "/v1/limits", None)?;
                    if status != 200 {
                        return Err(server_error(status, &body));
                    }
                    body["limits"].as_array().cloned().unwrap_or_default()
                }
            };
            let mut out = std::io::stdout().lock();
            if json {
                writeln!(out, "{}", serde_json::json!({ "limits": limits }))?;
            } else {
                print_table(&mut out, &limits)?;
            }
            Ok(EXIT_ALLOW)
        }
        LimitsCommand::Reset {
            target,
            rule,
            bucket,
            json,
        } => {
            if let Some(id) = &bucket {
                let key = BucketKey::from_id(id).with_context(|| {
                    format!("`{id}` is not a bucket id (the `bucket` of `rein limits list --json`)")
                })?;
                if rule.as_ref().is_some_and(|r| r != &key.rule) {
                    bail!("bucket `{id}` belongs to rule `{}`", key.rule);
                }
            }
            let reset = match target.connect_for_writing()? {
                Conn::Local(store) => {
                    // On PostgreSQL the reset is seen by every replica at its
                    // next state lease (the store's epoch changes): no lock.
                    let location = target.location();
                    let _lock = match &location {
                        StoreLocation::Sqlite(db) => Some(lock(db)?),
                        StoreLocation::Postgres(_) => None,
                    };
                    rt.block_on(rein_store::Store::reset_limits(
                        store.as_ref(),
                        rule.clone(),
                        bucket.clone(),
                    ))
                    .with_context(|| format!("cannot reset the limits in `{location}`"))?
                }
                remote => {
                    let mut body = serde_json::json!({});
                    if let Some(rule) = &rule {
                        body["rule"] = serde_json::json!(rule);
                    }
                    if let Some(bucket) = &bucket {
                        body["bucket"] = serde_json::json!(bucket);
                    }
                    let (status, answer) = remote.call("POST", "/v1/limits/reset", Some(body))?;
                    if status != 200 {
                        return Err(server_error(status, &answer));
                    }
                    answer["reset"].as_u64().unwrap_or(0)
                }
            };
            if json {
                println!("{}", serde_json::json!({ "reset": reset }));
            } else {
                let what = match (&rule, &bucket) {
                    (_, Some(b)) => format!("bucket {}", printable(b)),
                    (Some(r), None) => format!("rule `{}`", printable(r)),
                    (None, None) => "every limit".to_string(),
                };
                println!("reset {what}: {reset} use(s) forgotten");
            }
            Ok(EXIT_ALLOW)
        }
    }
}

/// The store's state lock, or why not: a server (or a hook deciding right
/// now) keeps the state of this file.
fn lock(db: &std::path::Path) -> anyhow::Result<StateLock> {
    StateLock::acquire(db, LOCK_WAIT).map_err(|e| {
        // The hint only for a lock another process holds: a lock file that
        // cannot be made (a read-only folder) says so alone.
        if e.0.starts_with(StateLock::HELD) {
            anyhow::anyhow!(
                "{}\n(a `rein serve` keeps the limits of `{}` in memory: use `--server URL --token T` to ask it)",
                e.0,
                db.display()
            )
        } else {
            anyhow::anyhow!("{}", e.0)
        }
    })
}

/// A readable table: rule, bucket, use of the limit, window, next free.
fn print_table(out: &mut impl Write, limits: &[serde_json::Value]) -> std::io::Result<()> {
    if limits.is_empty() {
        return writeln!(out, "no limit has uses in its window");
    }
    let text = |v: &serde_json::Value, key: &str| printable(v[key].as_str().unwrap_or("-")).into_owned();
    let rows: Vec<[String; 5]> = limits
        .iter()
        .map(|l| {
            [
                text(l, "rule"),
                text(l, "describe"),
                format!("{} of {}", text(l, "used"), text(l, "max")),
                l["window_seconds"]
                    .as_i64()
                    .map_or("-".into(), |s| jiff::SignedDuration::from_secs(s).to_string()),
                text(l, "next_free"),
            ]
        })
        .collect();
    let header = ["RULE", "BUCKET", "USED", "WINDOW", "NEXT FREE"];
    let mut widths = header.map(str::len);
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |out: &mut dyn Write, cells: [&str; 5]| {
        let mut text = String::new();
        for (i, (cell, w)) in cells.iter().zip(widths).enumerate() {
            if i + 1 == cells.len() {
                text.push_str(cell);
            } else {
                text.push_str(&format!("{cell:<w$}  "));
            }
        }
        writeln!(out, "{}", text.trim_end())
    };
    line(out, header)?;
    for row in &rows {
        line(out, [&row[0], &row[1], &row[2], &row[3], &row[4]])?;
    }
    Ok(())
}
