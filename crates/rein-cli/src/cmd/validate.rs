//! `rein validate`

use super::{load_policy, Format, EXIT_ALLOW, EXIT_USAGE};
use clap::Args;
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct ValidateArgs {
    /// Policy files or directories to load together.
    #[arg(required = true, value_name = "POLICY")]
    policy: Vec<PathBuf>,
    /// How to print diagnostics (on stderr).
    #[arg(long, value_enum, default_value_t = Format::Human)]
    format: Format,
}

pub fn run(args: ValidateArgs, color: bool) -> anyhow::Result<u8> {
    match load_policy(&args.policy, color, args.format) {
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
        Err(e) => {
            if args.format == Format::Human {
                let n = e.error_count();
                eprintln!("error: the policy did not load ({n} error{})", plural(n));
            }
            Ok(EXIT_USAGE)
        }
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}
