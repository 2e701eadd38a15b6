//! The `rein` command line. `main` only parses arguments and turns the
//! outcome into an exit code; each command lives in `cmd/`.

mod cmd;

use clap::{CommandFactory, FromArgMatches};
use std::process::ExitCode;

// Loading a policy allocates many small nodes; mimalloc makes that (and the
// server's request handling) markedly cheaper than the system allocator.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The exit code when stdout was closed before the output was written.
const EXIT_CLOSED_PIPE: u8 = 141;

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
            // A closed pipe (`rein audit export | head`) needs no message,
            // but it is no success either: the exit code of `check`,
            // `explain`, `test` or `audit verify` is their verdict, and 0
            // would read as allow, passed or intact. 141 is what a process
            // killed by SIGPIPE reports (128 + 13), as C tools do.
            if e.chain().any(|cause| {
                cause
                    .downcast_ref::<std::io::Error>()
                    .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
                    || cause
                        .downcast_ref::<serde_json::Error>()
                        .and_then(serde_json::Error::io_error_kind)
                        == Some(std::io::ErrorKind::BrokenPipe)
            }) {
                return ExitCode::from(EXIT_CLOSED_PIPE);
            }
            eprintln!("error: {e:#}");
            ExitCode::from(cmd::EXIT_USAGE)
        }
    }
}
