//! `rein check` and `rein explain`

use super::{load_policy, Format, PolicyArgs, EXIT_ALLOW, EXIT_APPROVAL, EXIT_BLOCK, EXIT_USAGE};
use anyhow::Context;
use clap::{Args, ValueEnum};
use rein_engine::{Effect, Phase, Policy, Request};
use std::io::{BufRead, Read, Write};
use std::path::PathBuf;

/// Largest request read from a file or stdin.
const MAX_REQUEST_BYTES: u64 = 16 * 1024 * 1024;

#[derive(Args, Debug)]
pub struct CheckArgs {
    #[command(flatten)]
    policy: PolicyArgs,
    /// The request as JSON: a file, or `-` for stdin.
    #[arg(long, short = 'r', value_name = "FILE|-", default_value = "-")]
    request: PathBuf,
    /// Decide the outcome of an action (`after` rules, output contract)
    /// instead of the request; overrides the request's `phase`.
    #[arg(long, value_enum)]
    phase: Option<PhaseArg>,
    /// Read JSON Lines (one request per line) and print one decision per
    /// line.
    #[arg(long)]
    batch: bool,
}

#[derive(Args, Debug)]
pub struct ExplainArgs {
    #[command(flatten)]
    policy: PolicyArgs,
    /// The request as JSON: a file, or `-` for stdin.
    #[arg(long, short = 'r', value_name = "FILE|-", default_value = "-")]
    request: PathBuf,
    /// Explain the `after` phase.
    #[arg(long, value_enum)]
    phase: Option<PhaseArg>,
    /// Print the trace as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum PhaseArg {
    Before,
    After,
}

fn exit_code(effect: Effect) -> u8 {
    match effect {
        Effect::Allow => EXIT_ALLOW,
        Effect::Block => EXIT_BLOCK,
        Effect::RequireApproval => EXIT_APPROVAL,
    }
}

pub fn run_check(args: CheckArgs, color: bool) -> anyhow::Result<u8> {
    let Ok(policy) = load_policy(&args.policy.policy, color, Format::Human) else {
        return Ok(EXIT_USAGE);
    };
    if args.batch {
        return run_batch(&policy, &args);
    }
    let request = match read_request(&args.request, args.phase) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e:#}");
            return Ok(EXIT_USAGE);
        }
    };
    let decision = policy.decide(&request);
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, &decision.to_json())?;
    writeln!(out)?;
    let code = exit_code(decision.effect());
    // The process ends here: freeing a large policy node by node would only
    // add to the command's run time.
    std::mem::forget((decision, policy));
    Ok(code)
}

/// One decision per input line. A line that is not a request is answered
/// with a `block` line that says why, so output lines match input lines.
fn run_batch(policy: &Policy, args: &CheckArgs) -> anyhow::Result<u8> {
    let reader: Box<dyn BufRead> = if args.request.as_os_str() == "-" {
        Box::new(std::io::stdin().lock())
    } else {
        let f =
            std::fs::File::open(&args.request).with_context(|| format!("cannot open `{}`", args.request.display()))?;
        Box::new(std::io::BufReader::new(f))
    };
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for (n, line) in reader.lines().enumerate() {
        let line = line.with_context(|| format!("cannot read line {}", n + 1))?;
        if line.trim().is_empty() {
            continue;
        }
        match parse_request(&line, args.phase) {
            Ok(request) => serde_json::to_writer(&mut out, &policy.decide(&request).to_json())?,
            Err(e) => serde_json::to_writer(
                &mut out,
                &serde_json::json!({
                    "effect": "block",
                    "rules": [],
                    "reasons": [format!("line {}: {e}", n + 1)],
                    "error": "invalid_request",
                    "policy_version": policy.version(),
                }),
            )?,
        }
        writeln!(out)?;
    }
    out.flush()?;
    Ok(EXIT_ALLOW)
}

pub fn run_explain(args: ExplainArgs, color: bool) -> anyhow::Result<u8> {
    let Ok(policy) = load_policy(&args.policy.policy, color, Format::Human) else {
        return Ok(EXIT_USAGE);
    };
    let request = match read_request(&args.request, args.phase) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e:#}");
            return Ok(EXIT_USAGE);
        }
    };
    let explanation = policy.explain(&request);
    let mut out = std::io::stdout().lock();
    if args.json {
        serde_json::to_writer_pretty(&mut out, &explanation.to_json())?;
        writeln!(out)?;
    } else {
        write!(out, "{explanation}")?;
    }
    Ok(exit_code(explanation.decision.effect()))
}

fn read_request(path: &PathBuf, phase: Option<PhaseArg>) -> anyhow::Result<Request> {
    let mut text = String::new();
    if path.as_os_str() == "-" {
        std::io::stdin()
            .take(MAX_REQUEST_BYTES + 1)
            .read_to_string(&mut text)
            .context("cannot read the request from stdin")?;
    } else {
        std::fs::File::open(path)
            .and_then(|f| f.take(MAX_REQUEST_BYTES + 1).read_to_string(&mut text))
            .with_context(|| format!("cannot read the request from `{}`", path.display()))?;
    }
    if text.len() as u64 > MAX_REQUEST_BYTES {
        anyhow::bail!("the request is larger than {MAX_REQUEST_BYTES} bytes");
    }
    parse_request(&text, phase)
}

/// Parses a request; a request without a time is stamped with the current
/// time, so `now` in conditions means "when the check ran".
fn parse_request(text: &str, phase: Option<PhaseArg>) -> anyhow::Result<Request> {
    let mut request = Request::from_json_str(text)?;
    if let Some(p) = phase {
        request.phase = match p {
            PhaseArg::Before => Phase::Before,
            PhaseArg::After => Phase::After,
        };
    }
    if request.time.is_none() {
        request.time = Some(jiff::Timestamp::now());
    }
    Ok(request)
}
