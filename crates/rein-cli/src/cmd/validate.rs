//! `rein validate`

use super::actra::{ActraArgs, LoadFailed};
use super::{Format, EXIT_ALLOW, EXIT_USAGE};
use clap::Args;
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct ValidateArgs {
    /// Policy files or directories to load together.
    #[arg(value_name = "POLICY", required_unless_present = "policy_flag")]
    policy: Vec<PathBuf>,
    /// Policy files, as an option (the form used with `--actra-schema`).
    #[arg(long = "policy", short = 'p', id = "policy_flag", value_name = "POLICY")]
    policy_flag: Vec<PathBuf>,
    #[command(flatten)]
    actra: ActraArgs,
    /// How to print diagnostics (on stderr).
    #[arg(long, value_enum, default_value_t = Format::Human)]
    format: Format,
}

pub fn run(args: ValidateArgs, color: bool) -> anyhow::Result<u8> {
    let paths = [args.policy, args.policy_flag].concat();
    match super::actra::load(&paths, &args.actra, color, args.format) {
        Ok(policy) => {
            let actions = policy.actions().count();
            println!(
                "ok: {actions} action{}, {} rule{}, default `{}`, version {}",
                plural(actions),
                policy.rule_count(),
                plural(policy.rule_count()),
                policy.default_effect(rein_engine::Phase::Before),
                policy.version()
            );
            Ok(EXIT_ALLOW)
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
