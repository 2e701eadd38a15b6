//! `rein policy`: policy versions: history and rollback.

use clap::Args;

/// Arguments of `rein policy`.
#[derive(Args, Debug)]
pub struct PolicyCmdArgs {}

/// Runs `rein policy`.
pub fn run(_args: PolicyCmdArgs, _color: bool) -> anyhow::Result<u8> {
    anyhow::bail!("`rein policy` is being built (issue 16)")
}
