//! `rein plan`: replay recorded traffic under a new policy.

use clap::Args;

/// Arguments of `rein plan`.
#[derive(Args, Debug)]
pub struct PlanArgs {}

/// Runs `rein plan`.
pub fn run(_args: PlanArgs, _color: bool) -> anyhow::Result<u8> {
    anyhow::bail!("`rein plan` is being built (issue 16)")
}
