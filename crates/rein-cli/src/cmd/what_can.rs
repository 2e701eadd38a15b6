//! `rein what-can`: what an actor may do, per action.

use clap::Args;

/// Arguments of `rein what-can`.
#[derive(Args, Debug)]
pub struct WhatCanArgs {}

/// Runs `rein what-can`.
pub fn run(_args: WhatCanArgs, _color: bool) -> anyhow::Result<u8> {
    anyhow::bail!("`rein what-can` is being built (issue 16)")
}
