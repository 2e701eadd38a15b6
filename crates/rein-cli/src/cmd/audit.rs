//! `rein audit`: verify, query, export, replay, shadow-report.

use super::remote::{server_error, Conn, Target};
use super::{load_policy, printable, Format, PolicyArgs, EXIT_ALLOW, EXIT_BLOCK, EXIT_USAGE};
use clap::{Args, Subcommand, ValueEnum};
use rein_store::{AuditQuery, AuditRecord, Verification};
use std::io::Write;

#[derive(Args, Debug)]
pub struct AuditArgs {
    #[command(subcommand)]
    command: AuditCommand,
}

#[derive(Subcommand, Debug)]
enum AuditCommand {
    /// Walk the hash chain; name the first changed, removed, inserted or
    /// reordered record. Exits 0 with the record count and the newest
    /// record's hash when intact, 1 when broken.
    ///
    /// The chain proves that no record was changed without rewriting every
    /// later one; someone who can write the file could rewrite them all.
    /// Keep the printed `SEQ:HASH` somewhere else and give it back with
    /// `--expect`: a rewritten log no longer has it.
    Verify {
        // Before `target`, whose heading ("Where") would otherwise take it.
        /// A record's hash kept from an earlier verify (`SEQ:HASH`, as
        /// printed); it must still be there.
        #[arg(long, value_name = "SEQ:HASH", value_parser = anchor)]
        expect: Vec<(u64, String)>,
        #[command(flatten)]
        target: Target,
    },
    /// Print the records matching every filter given.
    Query {
        #[command(flatten)]
        target: Target,
        #[command(flatten)]
        filters: Filters,
        /// Output format.
        #[arg(long, value_enum, default_value_t = OutFormat::Table, help_heading = "Output")]
        format: OutFormat,
    },
    /// Print every record (or those matching the filters) as JSON Lines.
    Export {
        #[command(flatten)]
        target: Target,
        #[command(flatten)]
        filters: Filters,
    },
    /// Re-decide every recorded request under another policy and print each
    /// decision that would change, with counts per rule (what-if before a
    /// rollout). Works on the store file.
    Replay {
        /// The store: a SQLite file or a PostgreSQL URL. Default: `REIN_DB`
        /// if set, else `rein.db`.
        #[arg(long, value_name = "FILE|URL")]
        db: Option<String>,
        /// The policy to try.
        #[command(flatten)]
        policy: PolicyArgs,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Where decisions made in shadow differed from the enforced ones: a
    /// candidate policy (`rein serve --shadow`) and the policy's own
    /// `mode: shadow` rules. One line per action, phase, enforced effect
    /// -> shadow effect and the rule that decided it, with a count and
    /// example decision ids, most frequent first. Reads the store file
    /// (read-only) or a server (`GET /v1/policy/shadow/report`, admin).
    ///
    /// Exit code: 0 (whether or not they differed), 2 on a usage error or
    /// a store or server that cannot be read.
    ShadowReport {
        #[command(flatten)]
        target: Target,
        /// Records at or after this time (RFC 3339), or from this long ago
        /// (`24h`, `90m`, `7d`).
        #[arg(long, value_name = "AGE|TIME", value_parser = when)]
        since: Option<String>,
        /// Records before this time (same forms as --since).
        #[arg(long, value_name = "AGE|TIME", value_parser = when)]
        until: Option<String>,
        /// Print the report as JSON (the server's answer).
        #[arg(long)]
        json: bool,
    },
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum OutFormat {
    /// One line per record.
    Table,
    /// One JSON object per line.
    Jsonl,
}

#[derive(Args, Debug, Clone, Default)]
#[command(next_help_heading = "Filters (every one given must hold)")]
pub(super) struct Filters {
    /// Records at or after this time (RFC 3339), or from this long ago
    /// (`24h`, `90m`, `7d`).
    #[arg(long, value_name = "AGE|TIME", value_parser = when)]
    since: Option<String>,
    /// Records before this time (same forms as --since).
    #[arg(long, value_name = "AGE|TIME", value_parser = when)]
    until: Option<String>,
    /// The actor's id.
    #[arg(long)]
    actor: Option<String>,
    /// The action.
    #[arg(long)]
    action: Option<String>,
    /// The effect.
    #[arg(long, value_parser = ["allow", "block", "require_approval"])]
    effect: Option<String>,
    /// A rule among the matched rules.
    #[arg(long)]
    rule: Option<String>,
    /// The session.
    #[arg(long)]
    session: Option<String>,
    /// The decision id.
    #[arg(long)]
    decision_id: Option<String>,
    /// The caller's trace: a trace id (32 lowercase hex digits) or a whole
    /// `traceparent`, as the agent logged it; records whose request
    /// carried it.
    #[arg(long, value_name = "TRACE", value_parser = trace_id)]
    trace: Option<String>,
    /// At most this many records.
    #[arg(long)]
    limit: Option<u64>,
}

/// An `--expect` value: `SEQ:HASH`.
fn anchor(text: &str) -> Result<(u64, String), String> {
    let (seq, hash) = text
        .split_once(':')
        .ok_or("must be SEQ:HASH, as `rein audit verify` prints it")?;
    let seq: u64 = seq.parse().map_err(|_| format!("`{seq}` is not a record number"))?;
    if seq == 0 || hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err("must be SEQ:HASH with a record number from 1 and a 64-digit hex hash".into());
    }
    Ok((seq, hash.to_ascii_lowercase()))
}

/// The record with sequence number `seq`, if there is one.
fn record_at(rt: &tokio::runtime::Runtime, conn: &Conn, seq: u64) -> anyhow::Result<Option<AuditRecord>> {
    let query = AuditQuery {
        after_seq: Some(seq - 1),
        limit: Some(1),
        ..AuditQuery::default()
    };
    let page: Vec<AuditRecord> = match conn {
        Conn::Local(store) => rt.block_on(rein_store::Store::query_audit(store.as_ref(), &query))?,
        remote => {
            let (status, body) = remote.call("GET", &format!("/v1/audit?{}", serde_urlencoded(&query)), None)?;
            if status != 200 {
                return Err(server_error(status, &body));
            }
            serde_json::from_value(body["records"].clone())?
        }
    };
    Ok(page.into_iter().next().filter(|r| r.seq == seq))
}

/// A `--since`/`--until` value as an RFC 3339 time: an age (`24h`, `7d`)
/// counted back from now, or a time.
pub(super) fn when(text: &str) -> Result<String, String> {
    if rein_store::chain::parse_time(text).is_ok() {
        return Ok(text.to_string());
    }
    let bad = || format!("`{text}` is neither an age (24h, 90m, 7d, 30s) nor an RFC 3339 time");
    let split = text.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
    let (digits, unit) = text.split_at(split);
    let n: i64 = digits.parse().map_err(|_| bad())?;
    let seconds = match unit {
        "s" => Some(n),
        "m" => n.checked_mul(60),
        "h" => n.checked_mul(3600),
        "d" => n.checked_mul(86_400),
        _ => None,
    }
    .ok_or_else(bad)?;
    let at = jiff::Timestamp::now()
        .checked_sub(jiff::SignedDuration::from_secs(seconds))
        .map_err(|_| bad())?;
    Ok(at.to_string())
}

impl Filters {
    /// Every record in a time window (RFC 3339 bounds; `until` excluded).
    pub(super) fn window(since: Option<String>, until: Option<String>) -> Filters {
        Filters {
            since,
            until,
            ..Filters::default()
        }
    }

    fn query(&self, after_seq: Option<u64>, limit: Option<u64>) -> AuditQuery {
        AuditQuery {
            since: self.since.clone(),
            until: self.until.clone(),
            actor: self.actor.clone(),
            action: self.action.clone(),
            effect: self.effect.clone(),
            rule: self.rule.clone(),
            session: self.session.clone(),
            decision_id: self.decision_id.clone(),
            trace: self.trace.clone(),
            after_seq,
            limit,
            ..AuditQuery::default()
        }
    }
}

pub fn run(args: AuditArgs, color: bool) -> anyhow::Result<u8> {
    let rt = super::remote::runtime()?;
    match args.command {
        AuditCommand::Verify { expect, target } => {
            let conn = target.connect()?;
            let verification = match &conn {
                Conn::Local(store) => rt.block_on(rein_store::Store::verify_audit(store.as_ref()))?,
                remote => {
                    let (status, body) = remote.call("GET", "/v1/audit/verify", None)?;
                    // Only a complete answer counts: a verdict with a field
                    // missing is not reported as "intact".
                    match (
                        status,
                        body["intact"].as_bool(),
                        body["records"].as_u64(),
                        body["seq"].as_u64(),
                    ) {
                        (200, Some(true), Some(records), _) => Verification::Intact { records },
                        (409, Some(false), _, Some(seq)) => Verification::Broken {
                            seq,
                            problem: body["problem"]
                                .as_str()
                                .unwrap_or("(the server gave no reason)")
                                .to_string(),
                        },
                        _ => anyhow::bail!(
                            "the server's answer to /v1/audit/verify is not a verdict (status {status}): {body}"
                        ),
                    }
                }
            };
            let mut out = std::io::stdout().lock();
            match verification {
                Verification::Intact { records } => {
                    for (seq, hash) in &expect {
                        let found = record_at(rt, &conn, *seq)?;
                        match found {
                            Some(r) if r.hash == *hash => {}
                            Some(r) => {
                                writeln!(
                                    out,
                                    "rewritten: record {seq} has the hash {}, not the kept {hash}: the log was \
                                     rewritten from there on (the chain itself is consistent)",
                                    r.hash
                                )?;
                                return Ok(EXIT_BLOCK);
                            }
                            None => {
                                writeln!(
                                    out,
                                    "rewritten: record {seq} (kept with hash {hash}) is gone: the log has \
                                     {records} records"
                                )?;
                                return Ok(EXIT_BLOCK);
                            }
                        }
                    }
                    let head = match records {
                        0 => String::new(),
                        n => match record_at(rt, &conn, n)? {
                            Some(r) => format!("; newest {n}:{}", r.hash),
                            None => String::new(),
                        },
                    };
                    writeln!(out, "ok: {records} records, chain intact{head}")?;
                    Ok(EXIT_ALLOW)
                }
                Verification::Broken { seq, problem } => {
                    writeln!(out, "broken at record {seq}: {problem}")?;
                    Ok(EXIT_BLOCK)
                }
            }
        }
        AuditCommand::Query {
            target,
            filters,
            format,
        } => {
            let conn = target.connect()?;
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            match format {
                OutFormat::Jsonl => for_each_record(rt, &conn, &filters, |r| {
                    writeln!(out, "{}", serde_json::to_string(r)?).map_err(Into::into)
                })?,
                OutFormat::Table => {
                    // Nothing reaches stdout until the first page arrived:
                    // a refused or unreachable server prints no header.
                    let mut table = Table::new(TABLE_HEADER);
                    for_each_record(rt, &conn, &filters, |r| table.push(&mut out, table_row(r)))?;
                    table.finish(&mut out)?;
                }
            }
            out.flush()?;
            Ok(EXIT_ALLOW)
        }
        AuditCommand::Export { target, filters } => {
            let conn = target.connect()?;
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            for_each_record(rt, &conn, &filters, |r| {
                writeln!(out, "{}", serde_json::to_string(r)?)?;
                Ok(())
            })?;
            out.flush()?;
            Ok(EXIT_ALLOW)
        }
        AuditCommand::Replay { db, policy, json } => {
            let Ok(policy) = load_policy(&policy.paths(), color, Format::Human) else {
                return Ok(EXIT_USAGE);
            };
            let conn = Target {
                db,
                server: None,
                token: None,
                timeout: 1,
            }
            .connect()?;
            let store = conn
                .store()
                .ok_or_else(|| anyhow::anyhow!("replay needs the store file"))?;
            let report = rt.block_on(rein_runtime::replay(store.as_ref(), &policy))?;
            let mut out = std::io::stdout().lock();
            if json {
                serde_json::to_writer_pretty(&mut out, &report)?;
                writeln!(out)?;
            } else {
                for c in &report.changes {
                    writeln!(
                        out,
                        "record {} ({}): {} -> {}  rules [{}] -> [{}]",
                        c.seq,
                        printable(&c.action),
                        c.old_effect,
                        c.new_effect,
                        printable(&c.old_rules.join(", ")),
                        printable(&c.new_rules.join(", "))
                    )?;
                    // Why the new decision is what it is (an unknown action,
                    // a contract it now breaks, a rule's reason).
                    for reason in &c.new_reasons {
                        writeln!(out, "    now: {}", printable(reason))?;
                    }
                }
                writeln!(
                    out,
                    "\nreplayed {} decisions: {} would change",
                    report.replayed,
                    report.changes.len()
                )?;
                if report.skipped_sensitive > 0 {
                    writeln!(
                        out,
                        "skipped {} with sensitive fields (kept only hashed)",
                        report.skipped_sensitive
                    )?;
                }
                for (change, n) in &report.effect_changes {
                    writeln!(out, "  {change}: {n}")?;
                }
                for (rule, (gained, lost)) in &report.rule_deltas {
                    writeln!(out, "  rule {rule}: +{gained} -{lost}")?;
                }
            }
            Ok(EXIT_ALLOW)
        }
        AuditCommand::ShadowReport {
            target,
            since,
            until,
            json,
        } => {
            let conn = target.connect()?;
            let report = match &conn {
                Conn::Local(store) => {
                    let report = rt.block_on(rein_runtime::shadow_report(store.as_ref(), since, until))?;
                    serde_json::to_value(report)?
                }
                remote => {
                    let mut query = Vec::new();
                    for (name, value) in [("since", &since), ("until", &until)] {
                        if let Some(v) = value {
                            query.push(format!("{name}={}", percent(v)));
                        }
                    }
                    let path = match query.is_empty() {
                        true => "/v1/policy/shadow/report".to_string(),
                        false => format!("/v1/policy/shadow/report?{}", query.join("&")),
                    };
                    let (status, body) = remote.call("GET", &path, None)?;
                    if status != 200 {
                        return Err(server_error(status, &body));
                    }
                    body
                }
            };
            let mut out = std::io::stdout().lock();
            if json {
                serde_json::to_writer_pretty(&mut out, &report)?;
                writeln!(out)?;
            } else {
                print_shadow_report(&mut out, &report)?;
            }
            Ok(EXIT_ALLOW)
        }
    }
}

/// The human form of a shadow report (from the store or a server's JSON):
/// a table of the differences, then what was read.
fn print_shadow_report(out: &mut dyn Write, report: &serde_json::Value) -> anyhow::Result<()> {
    let n = |key: &str| report[key].as_u64().unwrap_or(0);
    let text = |v: &serde_json::Value| printable(v.as_str().unwrap_or("-")).into_owned();
    let differences = report["differences"].as_array().cloned().unwrap_or_default();
    if !differences.is_empty() {
        let mut table = Table::new(["SOURCE", "ACTION", "PHASE", "CHANGE", "RULE", "COUNT", "EXAMPLES"]);
        for d in &differences {
            let source = match d["candidate_version"].as_str() {
                // The first 12 digits name a version well enough to tell
                // candidates apart; `--json` has the whole hash.
                Some(v) => format!("candidate {}", printable(v.get(..12).unwrap_or(v)).into_owned()),
                None => "shadow rules".to_string(),
            };
            let examples: Vec<String> = d["examples"]
                .as_array()
                .map(|e| e.iter().map(&text).collect())
                .unwrap_or_default();
            table.push(
                out,
                [
                    source,
                    text(&d["action"]),
                    text(&d["phase"]),
                    format!("{} -> {}", text(&d["enforced"]), text(&d["shadow"])),
                    text(&d["rule"]),
                    d["count"].as_u64().unwrap_or(0).to_string(),
                    examples.join(", "),
                ],
            )?;
        }
        table.finish(out)?;
        writeln!(out)?;
    }
    let differed: u64 = differences.iter().map(|d| d["count"].as_u64().unwrap_or(0)).sum();
    writeln!(
        out,
        "{} records read: a candidate decided {} ({} failed), shadow rules ran on {}; {differed} shadow decisions differed",
        n("records"),
        n("candidate_decided"),
        n("candidate_errors"),
        n("rules_decided"),
    )?;
    if n("unreadable") > 0 {
        writeln!(
            out,
            "{} records had a shadow field this version cannot read",
            n("unreadable")
        )?;
    }
    Ok(())
}

const TABLE_HEADER: [&str; 7] = ["SEQ", "TIME", "PHASE", "EFFECT", "ACTION", "ACTOR", "RULES"];

/// One record as a table row; an empty field shows as `-`, so every row
/// has its columns.
fn table_row(r: &AuditRecord) -> [String; 7] {
    // Values come from what agents sent: escaped before they reach the
    // terminal (see `printable`).
    let or_dash = |s: &str| {
        if s.is_empty() {
            "-".to_string()
        } else {
            printable(s).into_owned()
        }
    };
    [
        r.seq.to_string(),
        or_dash(&r.entry.time),
        or_dash(&r.entry.phase),
        or_dash(&r.entry.effect),
        or_dash(&r.entry.action),
        or_dash(r.entry.actor.get("id").and_then(|v| v.as_str()).unwrap_or_default()),
        // An activation matches no rule: its column says what it did.
        match rein_store::Activation::of_entry(&r.entry) {
            Some(a) => or_dash(&format!(
                "{} of {}{}",
                a.cause.as_str(),
                a.version,
                a.label.map(|l| format!(" ({l})")).unwrap_or_default()
            )),
            None => or_dash(&r.entry.rules.join(",")),
        },
    ]
}

/// Rows printed in columns as wide as their content. Rows are held until
/// [`TABLE_SIZING_ROWS`] have come (or the end), the widths taken from
/// them, and later rows printed at once with those widths (a longer value
/// then pushes its row's later columns right): memory stays bounded
/// however many records match.
struct Table<const N: usize> {
    header: [&'static str; N],
    held: Vec<[String; N]>,
    widths: Option<[usize; N]>,
}

/// Rows the column widths are taken from.
const TABLE_SIZING_ROWS: usize = 10_000;

impl<const N: usize> Table<N> {
    fn new(header: [&'static str; N]) -> Self {
        Table {
            header,
            held: Vec::new(),
            widths: None,
        }
    }

    fn push(&mut self, out: &mut dyn Write, row: [String; N]) -> anyhow::Result<()> {
        match self.widths {
            Some(widths) => write_row(out, &widths, &row)?,
            None => {
                self.held.push(row);
                if self.held.len() >= TABLE_SIZING_ROWS {
                    self.flush(out)?;
                }
            }
        }
        Ok(())
    }

    /// Prints the header and the held rows.
    fn flush(&mut self, out: &mut dyn Write) -> anyhow::Result<()> {
        let mut widths = self.header.map(|h| h.chars().count());
        for row in &self.held {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        write_row(out, &widths, &self.header.map(str::to_string))?;
        for row in self.held.drain(..) {
            write_row(out, &widths, &row)?;
        }
        self.widths = Some(widths);
        Ok(())
    }

    fn finish(mut self, out: &mut dyn Write) -> anyhow::Result<()> {
        if self.widths.is_none() {
            self.flush(out)?;
        }
        Ok(())
    }
}

/// One line: the first column right-aligned (numbers), the others left,
/// two spaces apart; the last column is not padded.
fn write_row(out: &mut dyn Write, widths: &[usize], cells: &[String]) -> std::io::Result<()> {
    let mut line = String::new();
    for (i, (cell, width)) in cells.iter().zip(widths).enumerate() {
        let pad = width.saturating_sub(cell.chars().count());
        if i == 0 {
            line.push_str(&" ".repeat(pad));
            line.push_str(cell);
        } else {
            line.push_str("  ");
            line.push_str(cell);
            if i + 1 < cells.len() {
                line.push_str(&" ".repeat(pad));
            }
        }
    }
    writeln!(out, "{line}")
}

/// Pages through the records matching `filters`, locally or from a server.
pub(super) fn for_each_record(
    rt: &tokio::runtime::Runtime,
    conn: &Conn,
    filters: &Filters,
    mut f: impl FnMut(&AuditRecord) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let mut remaining = filters.limit.unwrap_or(u64::MAX);
    let mut after = 0u64;
    while remaining > 0 {
        // The server pages by at most 1,000 records; the file allows more.
        let page_size = remaining.min(match conn {
            Conn::Local(_) => 10_000,
            Conn::Remote { .. } => 1_000,
        });
        let query = filters.query(Some(after), Some(page_size));
        let page: Vec<AuditRecord> = match conn {
            Conn::Local(store) => rt.block_on(rein_store::Store::query_audit(store.as_ref(), &query))?,
            remote => {
                let qs = serde_urlencoded(&query);
                let (status, body) = remote.call("GET", &format!("/v1/audit?{qs}"), None)?;
                if status != 200 {
                    return Err(server_error(status, &body));
                }
                serde_json::from_value(body["records"].clone())?
            }
        };
        let Some(last) = page.last() else { break };
        after = last.seq;
        for r in &page {
            f(r)?;
        }
        remaining = remaining.saturating_sub(page.len() as u64);
        if (page.len() as u64) < page_size {
            break;
        }
    }
    Ok(())
}

/// The query as URL parameters.
fn serde_urlencoded(q: &AuditQuery) -> String {
    let value = serde_json::to_value(q).unwrap_or_default();
    let mut parts = Vec::new();
    if let Some(obj) = value.as_object() {
        for (k, v) in obj {
            // The API spells the order `order=desc` (`/v1/audit` refuses a
            // field it does not know), and oldest first is its default.
            if k == "descending" {
                if v == &serde_json::Value::Bool(true) {
                    parts.push("order=desc".to_string());
                }
                continue;
            }
            let text = match v {
                serde_json::Value::Null => continue,
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            parts.push(format!("{k}={}", percent(&text)));
        }
    }
    parts.join("&")
}

fn percent(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            other => format!("%{other:02X}"),
        })
        .collect()
}

/// A `--trace` value as the trace id it names.
fn trace_id(text: &str) -> Result<String, String> {
    match rein_runtime::trace::TraceParent::parse(text.as_bytes()) {
        Some(parent) => Ok(parent.trace_id().to_string()),
        None if rein_runtime::trace::is_trace_id(text) => Ok(text.to_string()),
        None => Err("must be a trace id (32 lowercase hex digits, not all zeros) or a version-00 traceparent".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn printed(rows: &[[&str; 3]]) -> String {
        let mut out = Vec::new();
        let mut table = Table::new(["SEQ", "PHASE", "RULES"]);
        for r in rows {
            table.push(&mut out, r.map(str::to_string)).unwrap();
        }
        table.finish(&mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    /// Every field the CLI's query sets is one `/v1/audit` takes: the
    /// server refuses a field it does not know.
    #[test]
    fn a_query_is_written_as_the_api_spells_it() {
        let mut q = AuditQuery {
            actor: Some("a b".into()),
            before_seq: Some(7),
            ..AuditQuery::default()
        };
        assert_eq!(serde_urlencoded(&q), "actor=a%20b&before_seq=7");
        q.descending = true;
        assert_eq!(serde_urlencoded(&q), "actor=a%20b&before_seq=7&order=desc");
    }

    #[test]
    fn columns_are_as_wide_as_their_content() {
        let text = printed(&[["1", "before", "a"], ["12", "approval", "b,c"]]);
        assert_eq!(text, "SEQ  PHASE     RULES\n  1  before    a\n 12  approval  b,c\n");
    }

    #[test]
    fn an_empty_table_is_only_its_header() {
        assert_eq!(printed(&[]), "SEQ  PHASE  RULES\n");
    }
}
