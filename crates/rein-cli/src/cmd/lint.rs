//! `rein lint`: static analysis of a policy with an SMT solver (Z3).

use super::actra::{ActraArgs, LoadFailed};
use super::{Format, PolicyArgs, EXIT_ALLOW, EXIT_BLOCK, EXIT_USAGE};
use clap::Args;
use rein_analysis::{Kind, Level, LintConfig, LintReport, Solver, SolverConfig};
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
    levels: LevelArgs,
    #[command(flatten)]
    solver: SolverArgs,
}

/// Every check name `--allow`, `--note` and `--warn` take, and `all`.
const CHECK_NAMES: [&str; 10] = [
    "all",
    "never-matches",
    "shadowed",
    "duplicate",
    "redundant",
    "redundant-base",
    "always-default",
    "wide-allow",
    "conflict",
    "approval-conflict",
];

/// How each check reports (`rein lint`, `rein validate --lint`). By default
/// never-matches, shadowed, duplicate, redundant and wide-allow are
/// warnings; redundant-base, always-default and conflict are notes;
/// approval-conflict is off. A check named in one of these lists takes that level over `all`;
/// naming the same check in two lists is a usage error.
#[derive(Args, Debug, Clone, Default)]
pub struct LevelArgs {
    /// Checks not to run or report (comma-separated check names, or `all`).
    #[arg(long, value_name = "CHECK", value_delimiter = ',', value_parser = clap::builder::PossibleValuesParser::new(CHECK_NAMES))]
    allow: Vec<String>,
    /// Checks to report as notes: shown, never failing the lint.
    #[arg(long, value_name = "CHECK", value_delimiter = ',', value_parser = clap::builder::PossibleValuesParser::new(CHECK_NAMES))]
    note: Vec<String>,
    /// Checks to report as warnings: shown, and the lint exits 1 (e.g.
    /// `--warn conflict` to fail on allow/block overlaps).
    #[arg(long, visible_alias = "deny", value_name = "CHECK", value_delimiter = ',', value_parser = clap::builder::PossibleValuesParser::new(CHECK_NAMES))]
    warn: Vec<String>,
}

impl LevelArgs {
    /// The levels asked for over the defaults, or why they contradict
    /// each other.
    pub fn config(&self) -> Result<LintConfig, String> {
        let mut config = LintConfig::default();
        let lists = [
            (Level::Allow, &self.allow),
            (Level::Note, &self.note),
            (Level::Warning, &self.warn),
        ];
        // `all` first, so a named check overrides it.
        for (level, names) in lists {
            if names.iter().any(|n| n == "all") {
                if lists.iter().filter(|(_, l)| l.iter().any(|n| n == "all")).count() > 1 {
                    return Err("`all` is given to more than one of --allow, --note, --warn".into());
                }
                for kind in Kind::ALL {
                    config.set(kind, level);
                }
            }
        }
        let mut seen: Vec<(Kind, Level)> = Vec::new();
        for (level, names) in lists {
            for kind in names.iter().filter_map(|n| Kind::from_name(n)) {
                if seen.iter().any(|(k, l)| *k == kind && *l != level) {
                    return Err(format!(
                        "check `{}` is given to more than one of --allow, --note, --warn",
                        kind.name()
                    ));
                }
                seen.push((kind, level));
                config.set(kind, level);
            }
        }
        Ok(config)
    }
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
    let config = match args.levels.config() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(EXIT_USAGE);
        }
    };
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
    let report = rein_analysis::lint_with(&policy, &mut solver, &config);
    if args.json {
        let mut out = std::io::stdout().lock();
        writeln!(out, "{}", serde_json::to_string_pretty(&report_json(&report))?)?;
    } else {
        print_report(&report, &config, color)?;
    }
    Ok(exit_code(&report))
}

/// 1 when a finding is a warning; notes and unknown questions never fail.
pub fn exit_code(report: &LintReport) -> u8 {
    if warnings(report) > 0 {
        EXIT_BLOCK
    } else {
        EXIT_ALLOW
    }
}

fn warnings(report: &LintReport) -> usize {
    report.findings.iter().filter(|f| f.severity == Level::Warning).count()
}

fn notes(report: &LintReport) -> usize {
    report.findings.iter().filter(|f| f.severity == Level::Note).count()
}

/// The report as JSON: findings (kind, severity, action, rules, message,
/// help, file, line, example), the counts of warnings and notes, unknown
/// questions, approximated rules, solver counts.
pub fn report_json(report: &LintReport) -> serde_json::Value {
    let mut v = serde_json::to_value(report).unwrap_or_default();
    if let Some(obj) = v.as_object_mut() {
        obj.insert("warnings".into(), warnings(report).into());
        obj.insert("notes".into(), notes(report).into());
    }
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
pub fn print_report(report: &LintReport, config: &LintConfig, color: bool) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    let diags: Vec<rein_engine::Diagnostic> = report.findings.iter().map(|f| f.diagnostic()).collect();
    if !diags.is_empty() {
        write!(out, "{}", rein_engine::diagnostics::render_all(&diags, color))?;
    }
    // The JSON lists every open question; a person gets the first few of
    // the checks that warn, and a count of the others (an unconfirmed
    // conflict is as much information as a confirmed one: a note).
    const SHOWN: usize = 10;
    let (warned, noted): (Vec<_>, Vec<_>) = report
        .unknown
        .iter()
        .partition(|u| u.check.is_none_or(|k| config.level(k) == Level::Warning));
    for u in warned.iter().take(SHOWN) {
        let rule = u
            .rule
            .as_deref()
            .map(|r| format!(" rule `{}`", super::printable(r)))
            .unwrap_or_default();
        let check = u.check.map(|k| format!("({})", k.name())).unwrap_or_default();
        writeln!(
            out,
            "unknown{check}: action `{}`{rule}: {} ({})",
            super::printable(&u.action),
            u.question,
            u.reason
        )?;
    }
    if warned.len() > SHOWN {
        writeln!(
            out,
            "unknown: … and {} more (`--json` lists them all)",
            warned.len() - SHOWN
        )?;
    }
    if !noted.is_empty() {
        let mut checks: Vec<&str> = noted.iter().filter_map(|u| u.check.map(Kind::name)).collect();
        checks.sort_unstable();
        checks.dedup();
        writeln!(
            out,
            "unknown: {} question{} of note-level checks ({}) not answered or not confirmed (`--json` lists them)",
            noted.len(),
            if noted.len() == 1 { "" } else { "s" },
            checks.join(", ")
        )?;
    }
    let n = warnings(report);
    let notes = notes(report);
    writeln!(
        out,
        "lint: {n} warning{}, {notes} note{}, {} question{} unknown, {} rule{} with conditions not encoded exactly ({} solver queries)",
        if n == 1 { "" } else { "s" },
        if notes == 1 { "" } else { "s" },
        report.unknown.len(),
        if report.unknown.len() == 1 { "" } else { "s" },
        report.approximated.len(),
        if report.approximated.len() == 1 { "" } else { "s" },
        report.solver.queries,
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_check_is_named_on_the_command_line() {
        let names: Vec<&str> = Kind::ALL.iter().map(|k| k.name()).collect();
        assert_eq!(CHECK_NAMES.get(1..), Some(names.as_slice()));
        assert_eq!(CHECK_NAMES.first(), Some(&"all"));
    }
}
