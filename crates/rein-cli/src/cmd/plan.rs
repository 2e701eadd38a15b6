//! `rein plan`: replay recorded traffic under a new policy and print, per
//! action, how the decisions would change; gates for CI.

use super::audit::{for_each_record, Filters};
use super::remote::{server_error, Conn, Target};
use super::{load_policy, printable, Format, EXIT_ALLOW, EXIT_BLOCK, EXIT_USAGE};
use clap::{Args, ValueEnum};
use rein_engine::Policy;
use rein_runtime::{PlanReport, Planner};
use rein_store::PolicyVersion;
use std::io::Write;
use std::path::PathBuf;

/// Arguments of `rein plan`.
#[derive(Args, Debug)]
pub struct PlanArgs {
    /// The policy to roll out (files or directories, merged).
    #[arg(long = "policy", short = 'p', required = true, num_args = 1.., value_name = "POLICY")]
    policy: Vec<PathBuf>,
    /// The policy that recorded the traffic (the one enforced now). With
    /// it, records with sensitive fields are replayed where no rule that
    /// differs reads a sensitive field; without it they are skipped.
    #[arg(long, num_args = 1.., value_name = "POLICY")]
    current: Vec<PathBuf>,
    /// Replay records from this long ago (`24h`, `90m`, `7d`) or from this
    /// time (RFC 3339). Default: every record.
    #[arg(long, value_name = "AGE|TIME", value_parser = super::audit::when)]
    since: Option<String>,
    /// Replay records before this time (same forms as --since).
    #[arg(long, value_name = "AGE|TIME", value_parser = super::audit::when)]
    until: Option<String>,
    #[command(flatten)]
    target: Target,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
    /// Fail when more recorded decisions become `block` than this: a count
    /// (`5`) or a share of the replayed ones (`1%`).
    #[arg(long, value_name = "N|P%", value_parser = share, help_heading = "Gates (exit 1 when exceeded)")]
    max_new_blocks: Option<Limit>,
    /// Fail when more decisions change effect than this.
    #[arg(long, value_name = "N", help_heading = "Gates (exit 1 when exceeded)")]
    max_changes: Option<u64>,
    /// Fail on any decision that becomes less strict (`allow-widening`),
    /// or on any change of effect (`any-change`). May be given twice.
    #[arg(long, value_enum, value_name = "WHAT", help_heading = "Gates (exit 1 when exceeded)")]
    fail_on: Vec<FailOn>,
}

/// What `--fail-on` fails on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum FailOn {
    /// A decision less strict than recorded (block → allow or approval,
    /// approval → allow).
    AllowWidening,
    /// Any decision whose effect changes.
    AnyChange,
}

/// A `--max-new-blocks` value.
#[derive(Clone, Copy, Debug)]
enum Limit {
    Count(u64),
    Percent(f64),
}

fn share(text: &str) -> Result<Limit, String> {
    match text.strip_suffix('%') {
        Some(p) => match p.trim().parse::<f64>() {
            Ok(v) if v.is_finite() && (0.0..=100.0).contains(&v) => Ok(Limit::Percent(v)),
            _ => Err("a share must be a percentage from 0% to 100%, like 1% or 0.5%".into()),
        },
        None => text
            .parse::<u64>()
            .map(Limit::Count)
            .map_err(|_| "must be a count (5) or a share of the replayed decisions (1%)".into()),
    }
}

/// One gate and whether the plan exceeds it.
#[derive(Debug, serde::Serialize)]
struct Gate {
    gate: String,
    exceeded: bool,
    detail: String,
}

/// Runs `rein plan`.
pub fn run(args: PlanArgs, color: bool) -> anyhow::Result<u8> {
    let Ok(new) = load_policy(&args.policy, color, Format::Human) else {
        return Ok(EXIT_USAGE);
    };
    let current = if args.current.is_empty() {
        None
    } else {
        let Ok(current) = load_policy(&args.current, color, Format::Human) else {
            return Ok(EXIT_USAGE);
        };
        Some(current)
    };
    let conn = match args.target.connect() {
        Ok(conn) => conn,
        Err(e) => {
            eprintln!("error: {e:#}");
            return Ok(EXIT_USAGE);
        }
    };
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let mut planner = Planner::new(&new, current.as_ref());
    let filters = Filters::window(args.since.clone(), args.until.clone());
    // The store keeps the sources of each version it activated: a record
    // is read back with the policy that recorded it. Versions looked up
    // once each; one that is not kept, or whose sources are refused, only
    // leaves its sensitive records skipped.
    let mut looked_up = std::collections::BTreeSet::new();
    let mut refused_versions = Vec::new();
    if let Err(e) = for_each_record(&rt, &conn, &filters, |r| {
        let version = &r.entry.policy_version;
        if !planner.knows_version(version) && looked_up.insert(version.clone()) {
            match kept_policy(&rt, &conn, version) {
                Ok(Some(policy)) => planner.add_recording_policy(policy),
                Ok(None) => {}
                Err(why) => refused_versions.push(why),
            }
        }
        planner.push(r);
        Ok(())
    }) {
        eprintln!("error: the recorded decisions could not be read: {e:#}");
        return Ok(EXIT_USAGE);
    }
    let mut report = planner.finish();
    report.limits.extend(refused_versions);
    let gates = gates(&args, &report);
    let mut out = std::io::stdout().lock();
    if args.json {
        let mut value = serde_json::to_value(&report)?;
        value["since"] = serde_json::json!(args.since);
        value["until"] = serde_json::json!(args.until);
        value["gates"] = serde_json::to_value(&gates)?;
        serde_json::to_writer_pretty(&mut out, &value)?;
        writeln!(out)?;
    } else {
        print_table(&mut out, &report, &new, &args)?;
        for g in &gates {
            let verdict = if g.exceeded { "EXCEEDED" } else { "ok" };
            writeln!(out, "gate {}: {verdict} ({})", g.gate, g.detail)?;
        }
    }
    let exceeded: Vec<&Gate> = gates.iter().filter(|g| g.exceeded).collect();
    for g in &exceeded {
        eprintln!("rein plan: gate {} exceeded: {}", g.gate, g.detail);
    }
    Ok(if exceeded.is_empty() { EXIT_ALLOW } else { EXIT_BLOCK })
}

/// The policy of `version` built from the sources the store kept (on the
/// file, or asked of the server: `GET /v1/policy/versions/{version}`),
/// `None` when none are kept; `Err` says why kept sources are not used.
/// Either way the sources must hash to the version.
fn kept_policy(rt: &tokio::runtime::Runtime, conn: &Conn, version: &str) -> Result<Option<Policy>, String> {
    // A version is a hex hash; anything else (a record from elsewhere) is
    // not looked up.
    if version.is_empty() || !version.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Ok(None);
    }
    let kept: PolicyVersion = match conn {
        Conn::Local(store) => match rt.block_on(rein_store::Store::policy_version(store.as_ref(), version)) {
            Ok(Some(kept)) => kept,
            Ok(None) => return Ok(None),
            Err(e) => {
                return Err(format!(
                    "the kept sources of policy version {version} cannot be read: {e}"
                ))
            }
        },
        remote => {
            let (status, body) = remote
                .call("GET", &format!("/v1/policy/versions/{version}"), None)
                .map_err(|e| format!("the kept sources of policy version {version} cannot be read: {e:#}"))?;
            match status {
                200 => serde_json::from_value(body)
                    .map_err(|e| format!("the server's answer for policy version {version} is not one: {e}"))?,
                404 => return Ok(None),
                _ => {
                    return Err(format!(
                        "the kept sources of policy version {version} cannot be read: {:#}",
                        server_error(status, &body)
                    ))
                }
            }
        }
    };
    Policy::from_kept_sources(&kept.sources, version)
        .map(Some)
        .map_err(|e| {
            let why: Vec<String> = e.diagnostics().iter().map(|d| d.message.clone()).collect();
            format!(
                "the kept sources of policy version {version} are refused: {}",
                why.join("; ")
            )
        })
}

fn gates(args: &PlanArgs, r: &PlanReport) -> Vec<Gate> {
    let mut out = Vec::new();
    let share = |n: u64| {
        if r.replayed == 0 {
            0.0
        } else {
            n as f64 * 100.0 / r.replayed as f64
        }
    };
    if let Some(limit) = args.max_new_blocks {
        let (exceeded, bound) = match limit {
            Limit::Count(n) => (r.new_blocks > n, n.to_string()),
            Limit::Percent(p) => (share(r.new_blocks) > p, format!("{p}%")),
        };
        out.push(Gate {
            gate: format!("--max-new-blocks {bound}"),
            exceeded,
            detail: format!(
                "{} new blocks of {} replayed ({})",
                r.new_blocks,
                r.replayed,
                percent(share(r.new_blocks))
            ),
        });
    }
    if let Some(n) = args.max_changes {
        out.push(Gate {
            gate: format!("--max-changes {n}"),
            exceeded: r.changed > n,
            detail: format!("{} decisions change effect", r.changed),
        });
    }
    for f in &args.fail_on {
        let (name, n, what) = match f {
            FailOn::AllowWidening => ("allow-widening", r.widened, "decisions become less strict"),
            FailOn::AnyChange => ("any-change", r.changed, "decisions change effect"),
        };
        out.push(Gate {
            gate: format!("--fail-on {name}"),
            exceeded: n > 0,
            detail: format!("{n} {what}"),
        });
    }
    out
}

fn percent(p: f64) -> String {
    if p == 0.0 || p >= 0.1 {
        format!("{p:.1}%")
    } else {
        "<0.1%".to_string()
    }
}

fn print_table(out: &mut dyn Write, r: &PlanReport, new: &Policy, args: &PlanArgs) -> anyhow::Result<()> {
    let label = new
        .version_label()
        .map(|l| format!(" ({})", printable(l)))
        .unwrap_or_default();
    let window = match (&args.since, &args.until) {
        (None, None) => "every recorded decision".to_string(),
        (Some(s), None) => format!("decisions since {s}"),
        (None, Some(u)) => format!("decisions before {u}"),
        (Some(s), Some(u)) => format!("decisions from {s} to {u}"),
    };
    writeln!(
        out,
        "plan for policy {}{label}: {window}, {} read",
        super::short_version(&r.new_version),
        r.records
    )?;
    for a in &r.actions {
        let name = printable(&a.action);
        if a.changes.is_empty() {
            writeln!(out, "{name}: no change ({} calls)", a.replayed)?;
            continue;
        }
        for c in &a.changes {
            let calls = if c.count == 1 { "call" } else { "calls" };
            writeln!(
                out,
                "{name}: {} → {} {} {calls} ({}), {}   e.g. {}",
                c.from,
                c.to,
                c.count,
                percent(c.percent),
                by(&c.by),
                printable(&c.examples.join(", "))
            )?;
        }
    }
    writeln!(
        out,
        "total: {} replayed ({} with sensitive fields), {} change effect: {} new blocks, {} less strict; {} same \
         effect with other rules",
        r.replayed, r.replayed_sensitive, r.changed, r.new_blocks, r.widened, r.rules_only
    )?;
    for s in &r.skipped {
        writeln!(
            out,
            "skipped {}: {}   e.g. {}",
            s.count,
            printable(&s.reason),
            printable(&s.examples.join(", "))
        )?;
    }
    for l in &r.limits {
        writeln!(out, "note: {l}")?;
    }
    Ok(())
}

/// What decided a group, for the table: `rule large_refund`, `rules a, b`,
/// `the default`, `the contract`.
fn by(by: &[String]) -> String {
    match by {
        [one] if one == "default" => "the default".to_string(),
        [one] if one == "contract" => "the contract".to_string(),
        [one] if one == "credential" => "the credential".to_string(),
        [one] if one == "state" => "state".to_string(),
        [one] if one.starts_with("error in ") => printable(one).into_owned(),
        [one] => format!("rule {}", printable(one)),
        many => format!("rules {}", printable(&many.join(", "))),
    }
}
