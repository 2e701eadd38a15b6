//! `rein completions`: shell completion scripts, generated from the same
//! argument definitions as the command itself.

use super::EXIT_ALLOW;
use clap::{Args, CommandFactory};
use clap_complete::Shell;

#[derive(Args, Debug)]
pub struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    shell: Shell,
}

/// Prints the completion script for the shell on stdout.
pub fn run(args: CompletionsArgs) -> anyhow::Result<u8> {
    let mut command = super::Cli::command();
    clap_complete::generate(args.shell, &mut command, "rein", &mut std::io::stdout().lock());
    Ok(EXIT_ALLOW)
}
