//! `rein diff`: semantic difference of two policies.

use clap::Args;

/// Arguments of `rein diff`.
#[derive(Args, Debug)]
pub struct DiffArgs {}

/// Runs `rein diff`.
pub fn run(_args: DiffArgs, _color: bool) -> anyhow::Result<u8> {
    anyhow::bail!("`rein diff` is being built (issue 16)")
}
