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
    // clap_complete panics when its writer fails; generating into memory
    // first turns a closed pipe (`rein completions bash | head`) into the
    // I/O error `main` treats as a normal end.
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut command, "rein", &mut script);
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(&script)?;
    stdout.flush()?;
    Ok(EXIT_ALLOW)
}
