//! The `rein` command line. `main` only parses arguments and turns the
//! outcome into an exit code; each command lives in `cmd/`.

mod cmd;

use clap::Parser;
use std::process::ExitCode;

// Loading a policy allocates many small nodes; mimalloc makes that (and the
// server's request handling) markedly cheaper than the system allocator.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = cmd::Cli::parse();
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
