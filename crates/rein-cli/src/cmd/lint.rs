//! `rein lint`: static analysis of a policy.

use clap::Args;

/// Arguments of `rein lint`.
#[derive(Args, Debug)]
pub struct LintArgs {}

/// Runs `rein lint`.
pub fn run(_args: LintArgs, _color: bool) -> anyhow::Result<u8> {
    anyhow::bail!("`rein lint` is being built (issue 16)")
}
