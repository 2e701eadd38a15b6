//! `rein completions`: shell completion scripts, generated from the same
//! argument definitions as the command itself.

use super::EXIT_ALLOW;
use clap::{Args, CommandFactory};
use clap_complete::Shell;
use std::io::Write;

#[derive(Args, Debug)]
pub struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    shell: Shell,
}

/// Prints the completion script for the shell on stdout.
pub fn run(args: CompletionsArgs) -> anyhow::Result<u8> {
    let mut command = super::Cli::command();
    // Into memory first: clap_complete panics on a failed write, and a
    // closed pipe (`rein completions bash | head`) is not an error.
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut command, "rein", &mut script);
    std::io::stdout().lock().write_all(&script)?;
    Ok(EXIT_ALLOW)
}
