//! `rein approvals`: list, grant, deny.

use super::remote::{path_segment, server_error, Conn, Target};
use super::{printable, EXIT_ALLOW, EXIT_BLOCK};
use anyhow::Context;
use clap::{Args, Subcommand, ValueEnum};
use rein_server::{Identity, Role, Tokens};
use rein_store::{ApprovalRecord, ApprovalState};
use std::io::Write;
use std::path::{Path, PathBuf};

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
    /// approval id by the client that asked, is then allowed once.
    ///
    /// Through a server, the token's name is the approver. On the store
    /// file, give an approver's (or admin's) token too, with --token or
    /// REIN_TOKEN: it is checked against the tokens file beside the store
    /// (rein-tokens.yaml, where `rein serve` keeps it; no other file is
    /// taken, since anyone can write a tokens file of their own), and its
    /// name and approval roles are used, as the server would. Anyone who can write the store file can
    /// change approvals without Rein: write access to the store file is
    /// admin access; keep it, the tokens file and the audit key out of the
    /// governed agent's reach.
    Grant(DecideArgs),
    /// Deny a pending approval (who may: as for grant).
    Deny(DecideArgs),
}

#[derive(Args, Debug)]
struct DecideArgs {
    /// The approval id.
    id: String,
    #[command(flatten)]
    target: Target,
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
    let rt = super::remote::runtime()?;
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
                    // Who asked: the actor's id and the client that sent
                    // it (a hook's request may have neither).
                    // The actor id is the agent's text: escaped, so that
                    // it cannot forge rows or drive the terminal.
                    let asked = match (&a.requested_by, &a.requested_via) {
                        (Some(actor), Some(client)) => format!("{} via {client}", printable(actor)),
                        (Some(actor), None) => printable(actor).into_owned(),
                        (None, Some(client)) => format!("via {client}"),
                        (None, None) => "-".to_string(),
                    };
                    write!(
                        out,
                        "{}  {:<8}  {:<20}  role {:<10}  asked by {:<12}  expires {}  rules {}",
                        a.id,
                        if expired { "expired" } else { a.state.as_str() },
                        a.action,
                        a.role,
                        asked,
                        a.expires_at,
                        a.rules.join(",")
                    )?;
                    match &a.decided_by {
                        Some(who) => writeln!(out, "  decided by {}", printable(who))?,
                        None => writeln!(out)?,
                    }
                }
            }
            if list.is_empty() && !json {
                writeln!(out, "no approvals")?;
            }
            Ok(EXIT_ALLOW)
        }
        ApprovalsCommand::Grant(a) => decide(rt, a, true),
        ApprovalsCommand::Deny(a) => decide(rt, a, false),
    }
}

fn decide(rt: &tokio::runtime::Runtime, args: DecideArgs, grant: bool) -> anyhow::Result<u8> {
    let verb = if grant { "grant" } else { "deny" };
    let mut target = args.target.clone();
    let mut db = PathBuf::new();
    if target.server.is_none() {
        // The approver's token is checked against the tokens file beside
        // the store file; a PostgreSQL database has no "beside", and a file
        // named on the command line could be one the caller wrote.
        let given = target.sqlite_only(&format!(
            "on a PostgreSQL store, {verb} approvals through a replica: --server URL --token T (the server checks \
             the approver's token against the tokens file every replica is given)"
        ))?;
        // The tokens file is the one beside the real store, which is also
        // the file opened: not one beside a link to it.
        db = real_store_path(&given)?;
        let Some(text) = db.to_str() else {
            anyhow::bail!("the store's path `{}` is not UTF-8", db.display());
        };
        target.db = Some(text.to_string());
    }
    let record: ApprovalRecord = match target.connect_for_writing()? {
        Conn::Local(store) => {
            let who = file_approver(&target, &db)?;
            let approver = rein_runtime::Approver {
                name: &who.name,
                roles: match who.role {
                    Role::Admin => None,
                    _ => who.approves.as_deref(),
                },
                // As the server does: a request made under any id of this
                // token's credential is the approver's own.
                credential: Some(&who.credential),
            };
            // As the server does: the approver's roles are checked, and the
            // attempt is recorded in the audit log whatever its result (no
            // policy is loaded here, so the record names no policy version).
            let result = rt.block_on(rein_runtime::decide_approval_in(
                store.as_ref(),
                &args.id,
                grant,
                approver,
                args.comment.as_deref(),
                "",
            ));
            match result {
                Ok(r) => r,
                Err(e @ rein_runtime::RuntimeError::Store(_)) => return Err(e.into()),
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
    writeln!(
        std::io::stdout().lock(),
        "{} {} by {}",
        record.id,
        record.state.as_str(),
        printable(record.decided_by.as_deref().unwrap_or("-"))
    )?;
    Ok(EXIT_ALLOW)
}

/// The store file `db` names, with every symbolic link resolved, so that
/// the tokens file beside it is the one beside the real store. A link is
/// something anyone may make in a folder of their own, next to a tokens
/// file of their own: `--db my/rein.db` linking to the real store must not
/// pair that store with `my/rein-tokens.yaml`. A store with several hard
/// links is refused for the same reason (the other name may sit in any
/// folder). A missing file is left for the opening to report.
fn real_store_path(db: &Path) -> anyhow::Result<PathBuf> {
    if std::fs::symlink_metadata(db).is_err() {
        return Ok(db.to_path_buf());
    }
    let real = std::fs::canonicalize(db).with_context(|| format!("cannot resolve `{}`", db.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let links = std::fs::metadata(&real)
            .with_context(|| format!("cannot read `{}`", real.display()))?
            .nlink();
        if links > 1 {
            anyhow::bail!(
                "`{}` has {links} hard links: approvals are decided on the store file under its only name, beside \
                 its tokens file (another name may sit beside a tokens file anyone wrote)",
                real.display()
            );
        }
    }
    Ok(real)
}

/// The approver deciding on the store file: the holder of the token given
/// (`--token` or `REIN_TOKEN`), found in the tokens file, with the role
/// approver or admin. A name alone is not enough: whoever runs the command
/// (the agent the approval is about, say) could type any name.
fn file_approver(target: &Target, db: &Path) -> anyhow::Result<Identity> {
    // Only the file beside the store, where `rein serve` keeps it and the
    // coding-agent hook protects it: a file named on the command line could
    // be one the caller wrote.
    let tokens_file = db
        .parent()
        .map(PathBuf::from)
        .unwrap_or_default()
        .join(rein_server::DEFAULT_TOKENS_FILE);
    // A store the hook made (`~/.local/state/rein/hooks.db`) has no tokens
    // file until a server has run on it: say how to get one.
    if !tokens_file.exists() {
        anyhow::bail!(
            "deciding an approval on the store file needs an approver's token from the tokens file beside \
             the store, and there is none: {} does not exist. `rein serve --db {}` creates it on its first \
             start (one token per role, printed once; stop the server with Ctrl-C), then give the approver's \
             token with --token or REIN_TOKEN",
            tokens_file.display(),
            db.display()
        );
    }
    let Some(token) = target.token.as_deref() else {
        anyhow::bail!(
            "deciding an approval on the store file needs an approver's token (--token TOKEN or REIN_TOKEN), \
             checked against the tokens file beside the store, {}; or decide through the server with --server",
            tokens_file.display()
        );
    };
    let tokens = Tokens::load(&tokens_file).map_err(|e| {
        anyhow::anyhow!("{e} (the approver's token is checked against the tokens file beside the store)")
    })?;
    let Some(who) = tokens.authenticate(token) else {
        anyhow::bail!("the token is not in the tokens file {}", tokens_file.display());
    };
    if !who.role.permits(Role::Approver) {
        anyhow::bail!(
            "token `{}` has role `{}`; deciding approvals needs `approver` or `admin`",
            who.name,
            who.role
        );
    }
    Ok(Identity::clone(&who))
}
