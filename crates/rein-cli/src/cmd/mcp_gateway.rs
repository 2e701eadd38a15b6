//! `rein mcp gateway`, `rein mcp contracts`, `rein mcp pin`.
//!
//! (Owner: gateway helper. To be written.)

use clap::Args;

#[derive(Args, Debug)]
pub struct GatewayArgs {}

#[derive(Args, Debug)]
pub struct ContractsArgs {}

#[derive(Args, Debug)]
pub struct PinArgs {}

pub fn run_gateway(args: GatewayArgs, color: bool) -> anyhow::Result<u8> {
    let _ = (args, color);
    anyhow::bail!("not yet built")
}

pub fn run_contracts(args: ContractsArgs, color: bool) -> anyhow::Result<u8> {
    let _ = (args, color);
    anyhow::bail!("not yet built")
}

pub fn run_pin(args: PinArgs, color: bool) -> anyhow::Result<u8> {
    let _ = (args, color);
    anyhow::bail!("not yet built")
}
