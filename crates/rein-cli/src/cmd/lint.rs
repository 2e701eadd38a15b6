//! `rein lint`: static analysis of a policy with an SMT solver (Z3).

use super::actra::{ActraArgs, LoadFailed};
use super::{Format, PolicyArgs, EXIT_ALLOW, EXIT_BLOCK, EXIT_USAGE};
use clap::Args;
use rein_analysis::{LintReport, Solver, SolverConfig};
use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

/// Arguments of `rein lint`.
#[derive(Args, Debug)]
pub struct LintArgs {
    #[command(flatten)]
    policy: PolicyArgs,
    #[command(flatten)]
    actra: ActraArgs,
    /// Print the findings as one JSON object (for tools).
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    solver: SolverArgs,
}

/// How to run the SMT solver (`rein lint`, `rein diff`, `rein validate --lint`).
#[derive(Args, Debug, Clone)]
pub struct SolverArgs {
    /// The Z3 executable (Debian: `apt-get install z3`).
    #[arg(long = "solver", value_name = "PATH", default_value = "z3")]
    program: PathBuf,
    /// The most one solver query may take; a question past it is reported
    /// `unknown`, never answered.
    #[arg(long, value_name = "DURATION", default_value = "2s", value_parser = duration)]
    solver_timeout: Duration,
}

impl SolverArgs {
    /// Starts the solver, or prints why it cannot (exit 2).
    pub fn start(&self) -> Result<Solver, u8> {
        let config = SolverConfig {
            program: self.program.clone(),
            timeout: self.solver_timeout,
        };
        Solver::new(config).map_err(|e| {
            eprintln!("error: {e}");
            EXIT_USAGE
        })
    }
}

fn duration(text: &str) -> Result<Duration, String> {
    match text.parse::<jiff::SignedDuration>() {
        Ok(d) if d.is_positive() => Duration::try_from(d).map_err(|e| e.to_string()),
        Ok(_) => Err("must be longer than zero".to_string()),
        Err(_) => Err("must be a duration like 2s, 500ms or 1m".to_string()),
    }
}

/// Runs `rein lint`.
pub fn run(args: LintArgs, color: bool) -> anyhow::Result<u8> {
    let format = if args.json { Format::Json } else { Format::Human };
    let policy = match super::actra::load(&args.policy.paths(), &args.actra, color, format) {
        Ok(p) => p,
        Err(e) => match e.downcast_ref::<LoadFailed>() {
            Some(failed) => {
                if !args.json {
                    eprintln!("error: {failed}");
                }
                return Ok(EXIT_USAGE);
            }
            None => return Err(e),
        },
    };
    let mut solver = match args.solver.start() {
        Ok(s) => s,
        Err(code) => return Ok(code),
    };
    let report = rein_analysis::lint(&policy, &mut solver);
    if args.json {
        let mut out = std::io::stdout().lock();
        writeln!(out, "{}", serde_json::to_string_pretty(&report_json(&report))?)?;
    } else {
        print_report(&report, color)?;
    }
    Ok(if report.findings.is_empty() {
        EXIT_ALLOW
    } else {
        EXIT_BLOCK
    })
}

/// The report as JSON: findings (kind, action, rules, message, help,
/// file, line, example), unknown questions, approximated rules, solver
/// counts.
pub fn report_json(report: &LintReport) -> serde_json::Value {
    let mut v = serde_json::to_value(report).unwrap_or_default();
    if let Some(findings) = v.get_mut("findings").and_then(|f| f.as_array_mut()) {
        for (f, finding) in findings.iter_mut().zip(&report.findings) {
            if let (Some(obj), Some((file, line))) = (f.as_object_mut(), &finding.location) {
                obj.insert("file".into(), file.clone().into());
                obj.insert("line".into(), (*line).into());
                obj.remove("location");
            }
        }
    }
    v
}

/// The findings rendered as diagnostics, then what stayed unknown, on
/// stdout.
pub fn print_report(report: &LintReport, color: bool) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    let diags: Vec<rein_engine::Diagnostic> = report.findings.iter().map(|f| f.diagnostic()).collect();
    if !diags.is_empty() {
        write!(out, "{}", rein_engine::diagnostics::render_all(&diags, color))?;
    }
    // The JSON lists every open question; a person gets the first few.
    const SHOWN: usize = 10;
    for u in report.unknown.iter().take(SHOWN) {
        let rule = u
            .rule
            .as_deref()
            .map(|r| format!(" rule `{}`", super::printable(r)))
            .unwrap_or_default();
        writeln!(
            out,
            "unknown: action `{}`{rule}: {} ({})",
            super::printable(&u.action),
            u.question,
            u.reason
        )?;
    }
    if report.unknown.len() > SHOWN {
        writeln!(
            out,
            "unknown: … and {} more (`--json` lists them all)",
            report.unknown.len() - SHOWN
        )?;
    }
    let n = report.findings.len();
    writeln!(
        out,
        "lint: {n} warning{}, {} question{} unknown, {} rule{} with conditions not encoded exactly ({} solver queries)",
        if n == 1 { "" } else { "s" },
        report.unknown.len(),
        if report.unknown.len() == 1 { "" } else { "s" },
        report.approximated.len(),
        if report.approximated.len() == 1 { "" } else { "s" },
        report.solver.queries,
    )?;
    Ok(())
}
