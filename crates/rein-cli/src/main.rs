//! The `rein` command line. `main` only parses arguments and turns the
//! outcome into an exit code; each command lives in `cmd/`.

mod cmd;

use clap::{CommandFactory, FromArgMatches};
use std::process::ExitCode;

// Loading a policy allocates many small nodes; mimalloc makes that (and the
// server's request handling) markedly cheaper than the system allocator.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    // `--color` also governs clap's own help and errors.
    let color = cmd::Color::from_args(&args).for_clap();
    let matches = cmd::Cli::command().color(color).get_matches_from(&args);
    let cli = match cmd::Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    match cmd::run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            // A closed pipe (`rein check ... | head`) is not an error.
            if e.downcast_ref::<std::io::Error>()
                .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            {
                return ExitCode::SUCCESS;
            }
            eprintln!("error: {e:#}");
            ExitCode::from(cmd::EXIT_USAGE)
        }
    }
}
