//! `rein validate`

use super::actra::{ActraArgs, LoadFailed};
use super::{Format, PolicyArgs, EXIT_ALLOW, EXIT_USAGE};
use clap::Args;
use std::io::Write;

#[derive(Args, Debug)]
pub struct ValidateArgs {
    #[command(flatten)]
    policy: PolicyArgs,
    #[command(flatten)]
    actra: ActraArgs,
    /// How to print diagnostics (on stderr).
    #[arg(long, value_enum, default_value_t = Format::Human)]
    format: Format,
    /// Also run `rein lint` on the policy (needs Z3); exits 1 when it
    /// warns (notes do not fail).
    #[arg(long)]
    lint: bool,
    #[command(flatten)]
    levels: super::lint::LevelArgs,
    #[command(flatten)]
    solver: super::lint::SolverArgs,
}

pub fn run(args: ValidateArgs, color: bool) -> anyhow::Result<u8> {
    let config = match args.levels.config() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(EXIT_USAGE);
        }
    };
    match super::actra::load(&args.policy.paths(), &args.actra, color, args.format) {
        Ok(policy) => {
            let actions = policy.actions().count();
            // The author's `version:` label beside the hash of the texts,
            // which is what decisions and audit records carry.
            let version = match policy.version_label() {
                Some(label) => format!("`{}` ({})", super::printable(label), policy.version()),
                None => policy.version().to_string(),
            };
            let default = policy.default_effect(rein_engine::Phase::Before);
            // JSON mode prints one JSON object on stdout (diagnostics are
            // JSON lines on stderr): the counts, and the lint report under
            // `lint` when asked.
            let mut summary = serde_json::json!({
                "ok": true,
                "actions": actions,
                "rules": policy.rule_count(),
                "default": default.as_str(),
                "version": policy.version().to_string(),
                "label": policy.version_label(),
            });
            if args.format == Format::Human {
                let mut out = std::io::stdout().lock();
                writeln!(
                    out,
                    "ok: {actions} action{}, {} rule{}, default `{default}`, version {version}",
                    plural(actions),
                    policy.rule_count(),
                    plural(policy.rule_count()),
                )?;
            }
            if !args.lint {
                if args.format == Format::Json {
                    println!("{summary}");
                }
                return Ok(EXIT_ALLOW);
            }
            let mut solver = match args.solver.start() {
                Ok(s) => s,
                Err(code) => return Ok(code),
            };
            let report = rein_analysis::lint_with(&policy, &mut solver, &config);
            if args.format == Format::Json {
                summary["lint"] = super::lint::report_json(&report);
                println!("{summary}");
            } else {
                super::lint::print_report(&report, &config, color)?;
            }
            Ok(super::lint::exit_code(&report))
        }
        Err(e) => match e.downcast_ref::<LoadFailed>() {
            Some(failed) => {
                if args.format == Format::Human {
                    eprintln!("error: {failed}");
                }
                Ok(EXIT_USAGE)
            }
            None => Err(e),
        },
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}
