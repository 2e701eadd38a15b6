//! `rein mcp wrap`.
//!
//! (Owner: wrap helper. To be written.)

use clap::Args;

#[derive(Args, Debug)]
pub struct WrapArgs {}

pub fn run(args: WrapArgs) -> anyhow::Result<u8> {
    let _ = args;
    anyhow::bail!("not yet built")
}
