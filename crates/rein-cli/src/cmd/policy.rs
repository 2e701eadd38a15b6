//! `rein policy`: policy versions: history, show, and rollback.

use super::remote::{path_segment, server_error, Conn, Target};
use super::{printable, EXIT_ALLOW};
use anyhow::bail;
use clap::{Args, Subcommand};
use rein_runtime::versions::{history, kept_version, SourcesState, VersionHistory};
use rein_store::PolicyVersion;
use std::io::Write;

/// Arguments of `rein policy`.
#[derive(Args, Debug)]
#[command(
    after_help = "Exit codes: 0 done; 2 a usage error, an unknown or ambiguous version, sources not \
    kept or changed, a refused rollback.\n\nEvery version a server activates (at start, on a reload, on a \
    rollback) is recorded in the audit log (phase `activate`) and its sources kept in the store. See \
    docs/versions.md."
)]
pub struct PolicyCmdArgs {
    #[command(subcommand)]
    command: PolicyCommand,
}

#[derive(Subcommand, Debug)]
enum PolicyCommand {
    /// List the policy versions served, newest activation first: hash,
    /// label, when first and last activated, by whom, the one serving
    /// marked `*` (from a store file: the last activated).
    History {
        #[command(flatten)]
        target: Target,
        /// Print JSON (one object with `versions`).
        #[arg(long)]
        json: bool,
    },
    /// Print the kept sources of a version (its hash, a unique prefix of
    /// at least 4 hex digits, or its label), checked against its hash.
    Show {
        /// The version: hash, unique prefix, or label.
        #[arg(id = "policy_version", value_name = "VERSION")]
        version: String,
        #[command(flatten)]
        target: Target,
        /// Print JSON (`version`, `label`, `sources: [{name, text, derived}]`).
        #[arg(long)]
        json: bool,
    },
    /// Make a running server serve a kept version again (admin token). It
    /// serves until the next reload (SIGHUP or POST /v1/policy/reload),
    /// which reads the policy files again: change them too to keep it.
    Rollback {
        /// The version: hash, unique prefix, or label.
        #[arg(id = "policy_version", value_name = "VERSION")]
        version: String,
        /// The server (e.g. `http://127.0.0.1:8700`).
        #[arg(long, value_name = "URL")]
        server: String,
        /// An admin token (or set `REIN_TOKEN`).
        #[arg(long, value_name = "TOKEN", env = "REIN_TOKEN", hide_env_values = true)]
        token: String,
        /// How long to wait for the server, in seconds.
        #[arg(long, value_name = "SECONDS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=3600))]
        timeout: u64,
        /// Print the server's JSON answer.
        #[arg(long)]
        json: bool,
    },
}

/// Runs `rein policy`.
pub fn run(args: PolicyCmdArgs, _color: bool) -> anyhow::Result<u8> {
    let rt = super::remote::runtime()?;
    let mut out = std::io::stdout().lock();
    match args.command {
        PolicyCommand::History { target, json } => {
            let (versions, current): (Vec<VersionHistory>, Option<String>) = match target.connect()? {
                Conn::Local(store) => (rt.block_on(history(store.as_ref(), None))?, None),
                remote => {
                    let (status, body) = remote.call("GET", "/v1/policy/versions", None)?;
                    if status != 200 {
                        return Err(server_error(status, &body));
                    }
                    if json {
                        writeln!(out, "{}", serde_json::to_string_pretty(&body)?)?;
                        return Ok(EXIT_ALLOW);
                    }
                    let current = body["current"]["policy_version"].as_str().map(str::to_string);
                    (parse_history(&body["versions"])?, current)
                }
            };
            if json {
                let current = versions.iter().find(|v| v.current).map(|v| v.version.clone());
                let body = serde_json::json!({"current": {"policy_version": current}, "versions": versions});
                writeln!(out, "{}", serde_json::to_string_pretty(&body)?)?;
                return Ok(EXIT_ALLOW);
            }
            print_history(&mut out, &versions, current.as_deref())?;
            Ok(EXIT_ALLOW)
        }
        PolicyCommand::Show { version, target, json } => {
            let kept: PolicyVersion = match target.connect()? {
                Conn::Local(store) => rt.block_on(kept_version(store.as_ref(), &version))?,
                remote => {
                    let path = format!("/v1/policy/versions/{}", path_segment(&version));
                    let (status, body) = remote.call("GET", &path, None)?;
                    if status != 200 {
                        return Err(server_error(status, &body));
                    }
                    let kept: PolicyVersion = serde_json::from_value(body)?;
                    // Checked here too: the answer crossed a network.
                    kept.check()?;
                    kept
                }
            };
            if json {
                writeln!(out, "{}", serde_json::to_string_pretty(&kept)?)?;
                return Ok(EXIT_ALLOW);
            }
            let label = kept
                .label
                .as_deref()
                .map(|l| format!(" ({})", printable(l)))
                .unwrap_or_default();
            writeln!(out, "# policy version {}{label}, kept {}", kept.version, kept.saved_at)?;
            for source in &kept.sources {
                let derived = if source.derived { " (derived)" } else { "" };
                writeln!(out, "\n# --- {}{derived}", printable(&source.name))?;
                // Line by line, so that the lines stay lines while what
                // could drive a terminal is escaped.
                for line in source.text.lines() {
                    writeln!(out, "{}", printable(line))?;
                }
            }
            Ok(EXIT_ALLOW)
        }
        PolicyCommand::Rollback {
            version,
            server,
            token,
            timeout,
            json,
        } => {
            let target = Target {
                db: None,
                server: Some(server),
                token: Some(token),
                timeout,
            };
            let conn = target.connect()?;
            let (status, body) = conn.call(
                "POST",
                "/v1/policy/rollback",
                Some(serde_json::json!({"version": version})),
            )?;
            if status != 200 {
                return Err(server_error(status, &body));
            }
            if json {
                writeln!(out, "{}", serde_json::to_string_pretty(&body)?)?;
                return Ok(EXIT_ALLOW);
            }
            let text = |k: &str| {
                body[k]
                    .as_str()
                    .map(|s| printable(s).into_owned())
                    .unwrap_or_else(|| "-".into())
            };
            writeln!(
                out,
                "now serving {}{} (was {}); activation recorded at audit seq {}",
                text("policy_version"),
                body["policy_version_label"]
                    .as_str()
                    .map(|l| format!(" ({})", printable(l)))
                    .unwrap_or_default(),
                text("previous_version"),
                body["audit_seq"]
            )?;
            writeln!(out, "{}", text("note"))?;
            Ok(EXIT_ALLOW)
        }
    }
}

/// The `versions` of a server's answer.
fn parse_history(value: &serde_json::Value) -> anyhow::Result<Vec<VersionHistory>> {
    let Some(items) = value.as_array() else {
        bail!("the server's answer has no `versions` list");
    };
    let text = |v: &serde_json::Value, k: &str| v[k].as_str().map(str::to_string);
    Ok(items
        .iter()
        .map(|v| VersionHistory {
            version: text(v, "version").unwrap_or_default(),
            label: text(v, "label"),
            files: serde_json::from_value(v["files"].clone()).unwrap_or_default(),
            first_activated: text(v, "first_activated"),
            last_activated: text(v, "last_activated"),
            last_by: text(v, "last_by"),
            last_cause: serde_json::from_value(v["last_cause"].clone()).ok(),
            activations: v["activations"].as_u64().unwrap_or(0),
            current: v["current"].as_bool().unwrap_or(false),
            sources: match v["sources"].as_str() {
                Some("kept") => SourcesState::Kept,
                Some("changed") => SourcesState::Changed,
                _ => SourcesState::Missing,
            },
        })
        .collect())
}

fn print_history(out: &mut dyn Write, versions: &[VersionHistory], current: Option<&str>) -> anyhow::Result<()> {
    if versions.is_empty() {
        writeln!(out, "no policy version recorded (a server records one at start)")?;
        return Ok(());
    }
    let dash = |s: &Option<String>| {
        s.as_deref()
            .map_or_else(|| "-".to_string(), |s| printable(s).into_owned())
    };
    writeln!(
        out,
        "  {:<32}  {:<16}  {:<27}  {:<27}  {:<16}  {:>5}  SOURCES",
        "VERSION", "LABEL", "FIRST ACTIVATED", "LAST ACTIVATED", "BY", "TIMES"
    )?;
    for v in versions {
        let mark = if v.current || current == Some(v.version.as_str()) {
            "*"
        } else {
            " "
        };
        let by = match (&v.last_by, v.last_cause) {
            (Some(by), Some(cause)) => format!("{} ({})", printable(by), cause.as_str()),
            (by, _) => dash(by),
        };
        let sources = match v.sources {
            SourcesState::Kept => "kept",
            SourcesState::Changed => "CHANGED (refused)",
            SourcesState::Missing => "not kept",
        };
        writeln!(
            out,
            "{mark} {:<32}  {:<16}  {:<27}  {:<27}  {:<16}  {:>5}  {sources}",
            printable(&v.version),
            dash(&v.label),
            dash(&v.first_activated),
            dash(&v.last_activated),
            by,
            v.activations
        )?;
    }
    Ok(())
}
