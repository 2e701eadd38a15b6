//! `rein mcp`: the MCP gateway and its set-up commands.

use super::{mcp_gateway, mcp_wrap};
use clap::{Args, Subcommand};

#[derive(Args, Debug)]
pub struct McpArgs {
    #[command(subcommand)]
    command: McpCommand,
}

#[derive(Subcommand, Debug)]
enum McpCommand {
    /// Run the gateway: a transparent proxy in front of MCP servers that
    /// decides every tool call (stdio in front of one stdio server, or
    /// Streamable HTTP in front of several with --listen).
    Gateway(mcp_gateway::GatewayArgs),
    /// Print the contracts derived from a server's tools as policy YAML,
    /// to start a policy from.
    Contracts(mcp_gateway::ContractsArgs),
    /// Pin a server's tools (names, descriptions, schemas, annotations) in
    /// the lock file beside the policy; --check compares without writing.
    Pin(mcp_gateway::PinArgs),
    /// Put every server of an MCP client's configuration (Claude Code's
    /// .mcp.json, Claude Desktop's claude_desktop_config.json, Cursor's
    /// mcp.json) behind the gateway, showing the change; --undo reverts.
    Wrap(mcp_wrap::WrapArgs),
}

/// Runs `rein mcp …`.
pub fn run(args: McpArgs, color: bool) -> anyhow::Result<u8> {
    match args.command {
        McpCommand::Gateway(args) => mcp_gateway::run_gateway(args, color),
        McpCommand::Contracts(args) => mcp_gateway::run_contracts(args, color),
        McpCommand::Pin(args) => mcp_gateway::run_pin(args, color),
        McpCommand::Wrap(args) => mcp_wrap::run(args),
    }
}
