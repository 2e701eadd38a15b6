//! `rein approvals`: list, grant, deny.

use super::remote::{path_segment, server_error, Conn, Target};
use super::{EXIT_ALLOW, EXIT_BLOCK};
use clap::{Args, Subcommand, ValueEnum};
use rein_store::{ApprovalRecord, ApprovalState};
use std::io::Write;

#[derive(Args, Debug)]
pub struct ApprovalsArgs {
    #[command(subcommand)]
    command: ApprovalsCommand,
}

#[derive(Subcommand, Debug)]
enum ApprovalsCommand {
    /// List approvals, newest first.
    List {
        #[command(flatten)]
        target: Target,
        /// Only approvals in this state.
        #[arg(long, value_enum, default_value_t = StateArg::Pending)]
        state: StateArg,
        /// At most this many (1 to 10,000).
        #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..=10_000))]
        limit: u64,
        /// Print JSON Lines.
        #[arg(long)]
        json: bool,
    },
    /// Grant a pending approval: the identical request, re-sent with this
    /// approval id, is then allowed once.
    Grant(DecideArgs),
    /// Deny a pending approval.
    Deny(DecideArgs),
}

#[derive(Args, Debug)]
struct DecideArgs {
    /// The approval id.
    id: String,
    #[command(flatten)]
    target: Target,
    /// Who approves, when working on the store file directly (through a
    /// server, the token's name is used). Nobody may approve a request
    /// they made.
    #[arg(
        long = "as",
        value_name = "NAME",
        required_unless_present = "server",
        value_parser = clap::builder::NonEmptyStringValueParser::new()
    )]
    approver: Option<String>,
    /// A comment for the audit trail.
    #[arg(long)]
    comment: Option<String>,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum StateArg {
    Pending,
    Granted,
    Denied,
    Used,
    All,
}

impl StateArg {
    fn state(self) -> Option<ApprovalState> {
        match self {
            StateArg::Pending => Some(ApprovalState::Pending),
            StateArg::Granted => Some(ApprovalState::Granted),
            StateArg::Denied => Some(ApprovalState::Denied),
            StateArg::Used => Some(ApprovalState::Used),
            StateArg::All => None,
        }
    }
}

pub fn run(args: ApprovalsArgs) -> anyhow::Result<u8> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    match args.command {
        ApprovalsCommand::List {
            target,
            state,
            limit,
            json,
        } => {
            let list: Vec<ApprovalRecord> = match target.connect()? {
                Conn::Local(store) => rt.block_on(async {
                    match state.state() {
                        // As through a server: pending means it can still be decided.
                        Some(ApprovalState::Pending) => {
                            let now = rein_store::chain::format_time(jiff::Timestamp::now());
                            rein_store::Store::list_open_approvals(store.as_ref(), &now, limit).await
                        }
                        other => rein_store::Store::list_approvals(store.as_ref(), other, limit).await,
                    }
                })?,
                remote => {
                    let q = match state.state() {
                        Some(s) => format!("?state={}&limit={limit}", s.as_str()),
                        None => format!("?limit={limit}"),
                    };
                    let (status, body) = remote.call("GET", &format!("/v1/approvals{q}"), None)?;
                    if status != 200 {
                        return Err(server_error(status, &body));
                    }
                    serde_json::from_value(body["approvals"].clone())?
                }
            };
            let mut out = std::io::stdout().lock();
            for a in &list {
                if json {
                    writeln!(out, "{}", serde_json::to_string(a)?)?;
                } else {
                    // A pending approval past its expiry can no longer be
                    // decided: shown as such (`--state all`).
                    let expired = a.state == ApprovalState::Pending
                        && a.expires_at
                            .parse::<jiff::Timestamp>()
                            .is_ok_and(|e| e <= jiff::Timestamp::now());
                    writeln!(
                        out,
                        "{}  {:<8}  {:<20}  role {:<10}  by {:<12}  expires {}  rules {}",
                        a.id,
                        if expired { "expired" } else { a.state.as_str() },
                        a.action,
                        a.role,
                        a.requested_by.as_deref().unwrap_or("-"),
                        a.expires_at,
                        a.rules.join(",")
                    )?;
                }
            }
            if list.is_empty() && !json {
                writeln!(out, "no approvals")?;
            }
            Ok(EXIT_ALLOW)
        }
        ApprovalsCommand::Grant(a) => decide(&rt, a, true),
        ApprovalsCommand::Deny(a) => decide(&rt, a, false),
    }
}

fn decide(rt: &tokio::runtime::Runtime, args: DecideArgs, grant: bool) -> anyhow::Result<u8> {
    let verb = if grant { "grant" } else { "deny" };
    let record: ApprovalRecord = match args.target.connect_for_writing()? {
        Conn::Local(store) => {
            let Some(approver) = args.approver.clone() else {
                anyhow::bail!("give the approver's name with --as NAME when working on the store file");
            };
            let now = rein_store::chain::format_time(jiff::Timestamp::now());
            let result = rt.block_on(rein_store::Store::decide_approval(
                store.as_ref(),
                &args.id,
                grant,
                &approver,
                args.comment.as_deref(),
                &now,
            ))?;
            // Recorded in the audit log as through a server (no policy is
            // loaded here, so the record names no policy version).
            let outcome = result.clone().map_err(rein_runtime::RuntimeError::from);
            rt.block_on(rein_runtime::record_approval_decision(
                store.as_ref(),
                &args.id,
                grant,
                &approver,
                args.comment.as_deref(),
                &outcome,
                "",
            ))?;
            match result {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("error: cannot {verb}: {e}");
                    return Ok(EXIT_BLOCK);
                }
            }
        }
        remote => {
            let body = serde_json::json!({ "comment": args.comment });
            let path = format!("/v1/approvals/{}/{verb}", path_segment(&args.id));
            let (status, body) = remote.call("POST", &path, Some(body))?;
            // A token the server does not accept is a usage error (exit 2),
            // as for `list`; a refusal of this approval (self-approval, a
            // role the token may not decide, a wrong state) is exit 1.
            if status == 401 || body["error"]["code"] == "forbidden" {
                return Err(server_error(status, &body));
            }
            if status != 200 {
                eprintln!("error: cannot {verb}: {}", server_error(status, &body));
                return Ok(EXIT_BLOCK);
            }
            serde_json::from_value(body)?
        }
    };
    println!(
        "{} {} by {}",
        record.id,
        record.state.as_str(),
        record.decided_by.as_deref().unwrap_or("-")
    );
    Ok(EXIT_ALLOW)
}
