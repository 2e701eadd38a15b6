//! `rein token delegate`: asks a running `rein serve` for a delegation
//! token, narrower than the parent token it is minted from.

use super::remote::{server_error, Target};
use super::EXIT_ALLOW;
use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use rein_runtime::{ActionScope, ChainLink};
use serde_json::{json, Value};

#[derive(Args, Debug)]
pub struct TokenArgs {
    #[command(subcommand)]
    command: TokenCommand,
}

#[derive(Subcommand, Debug)]
enum TokenCommand {
    /// Mint a delegation token for a sub-agent from a parent token.
    ///
    /// The child's chain is the parent's plus `--actor`; it may ask only
    /// for `--actions` (within every scope of the parent's chain), for at
    /// most `--ttl` (never beyond the parent's expiry, at most 24h), with
    /// the parent's bound actor fields (`--bind` may add more) and a role
    /// no wider than the parent's. Widening is refused by the server (exit
    /// 2, with its reason). Prints the token on stdout and what it allows
    /// (name, chain, actions, expiry) on stderr; `--json` prints the whole
    /// answer on stdout instead.
    #[command(
        after_help = "Examples (the parent token from the environment, out of the process list):\n  \
        export REIN_TOKEN=<the parent token>\n  \
        rein token delegate --server http://127.0.0.1:8700 --actor subagent:researcher \\\n      \
        --actions 'file.read,web.*' --ttl 10m\n\n  \
        # a grandchild: the child token is the parent, the scope narrows again\n  \
        CHILD=$(rein token delegate --server http://127.0.0.1:8700 --actor subagent:researcher \\\n      \
        --actions 'file.read,web.*' --ttl 10m)\n  \
        REIN_TOKEN=$CHILD rein token delegate --server http://127.0.0.1:8700 --actor subagent:reader \\\n      \
        --actions file.read --bind task=t-42\n\n  \
        # from an admin token: an approver child limited to one approval role\n  \
        rein token delegate --server http://127.0.0.1:8700 --actor agent:approver-bot --actions '*' \\\n      \
        --role approver --approves support --ttl 1h\n\n\
        The child is used as any bearer token: `Authorization: Bearer rein_d1.…`. \
        Details: docs/identity.md, \"Delegation tokens\"."
    )]
    Delegate(DelegateArgs),
}

#[derive(Args, Debug)]
pub struct DelegateArgs {
    /// The `rein serve` that mints the token, e.g. `http://127.0.0.1:8700`.
    #[arg(long, value_name = "URL")]
    server: String,
    /// The parent token (or set REIN_TOKEN, which keeps it out of the
    /// process list): a token of the tokens file, a JWT, or a delegation
    /// token (its child is a grandchild).
    #[arg(long = "from", value_name = "TOKEN", env = "REIN_TOKEN", hide_env_values = true)]
    from: String,
    /// The new link of the chain, `kind:id` of kind `agent` or `subagent`:
    /// `subagent:researcher`.
    #[arg(long, value_name = "KIND:ID", value_parser = chain_link)]
    actor: String,
    /// The actions the child may ask for, comma-separated: action names,
    /// `prefix.*` (`web.*` covers `web.get`, not `web`), `*`; each within
    /// every scope of the parent's chain (`*` only from an unscoped
    /// parent).
    #[arg(long, value_name = "PATTERNS", value_parser = action_patterns)]
    actions: ActionScope,
    /// How long the token lasts (`10m`, `1h30m`); 1h by default, cut to
    /// the parent's expiry.
    #[arg(long, value_name = "DURATION")]
    ttl: Option<String>,
    /// Bind an actor field besides the parent's, `FIELD=VALUE` (any number
    /// of times). A number or `true`/`false` is bound as such; anything
    /// else as a string (`FIELD='"3"'` for the string 3).
    #[arg(long, value_name = "FIELD=VALUE", value_parser = bound_field)]
    bind: Vec<(String, Value)>,
    /// The child's role: `agent` (the default), `approver` or `admin`;
    /// never wider than the parent's (only an admin parent mints an
    /// approver or admin child).
    #[arg(long, value_name = "ROLE")]
    role: Option<String>,
    /// For an approver child: the approval roles it may decide,
    /// comma-separated (`support,finance`), among the parent's. Without it
    /// the child decides what its parent may.
    #[arg(long, value_name = "ROLES", value_delimiter = ',', value_parser = approval_role)]
    approves: Option<Vec<String>>,
    /// Print the whole answer as JSON: token, id, name, expires_at, chain,
    /// actions, role.
    #[arg(long)]
    json: bool,
    /// How long to wait for the server to answer, in seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=3600))]
    timeout: u64,
}

fn chain_link(text: &str) -> Result<String, String> {
    ChainLink::parse(text).map(|l| l.to_string())
}

fn action_patterns(text: &str) -> Result<ActionScope, String> {
    ActionScope::parse(text)
}

fn approval_role(text: &str) -> Result<String, String> {
    let role = text.trim();
    if role.is_empty() {
        return Err("an approval role is a name, e.g. support".to_string());
    }
    Ok(role.to_string())
}

fn bound_field(text: &str) -> Result<(String, Value), String> {
    let Some((field, value)) = text.split_once('=') else {
        return Err("write FIELD=VALUE, e.g. tenant=acme".to_string());
    };
    let value = match serde_json::from_str::<Value>(value) {
        Ok(v @ (Value::Number(_) | Value::Bool(_) | Value::String(_))) => v,
        _ => Value::String(value.to_string()),
    };
    Ok((field.to_string(), value))
}

pub fn run(args: TokenArgs) -> anyhow::Result<u8> {
    match args.command {
        TokenCommand::Delegate(args) => delegate(args),
    }
}

fn delegate(args: DelegateArgs) -> anyhow::Result<u8> {
    if args.from.trim().is_empty() {
        bail!("give the parent token with --from TOKEN or REIN_TOKEN");
    }
    let target = Target {
        db: None,
        server: Some(args.server),
        token: Some(args.from),
        timeout: args.timeout,
    };
    let conn = target.connect()?;
    let mut body = json!({
        "actor": args.actor,
        "actions": args.actions.patterns(),
    });
    if let Some(ttl) = args.ttl {
        body["ttl"] = json!(ttl);
    }
    if !args.bind.is_empty() {
        let mut bind = serde_json::Map::new();
        for (field, value) in args.bind {
            if bind.insert(field.clone(), value).is_some() {
                bail!("--bind gives `{field}` twice");
            }
        }
        body["bind"] = Value::Object(bind);
    }
    if let Some(role) = args.role {
        body["role"] = json!(role);
    }
    if let Some(approves) = args.approves {
        body["approves"] = json!(approves);
    }
    let (status, answer) = conn.call("POST", "/v1/tokens/delegate", Some(body))?;
    if status != 200 {
        return Err(server_error(status, &answer));
    }
    let token = answer["token"].as_str().context("the server's answer has no token")?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&answer)?);
    } else {
        println!("{token}");
        // What was minted goes to stderr, so that `$(rein token delegate …)`
        // captures the token alone while a default the server applied (a
        // ttl cut to the parent's expiry) is not silent.
        eprintln!(
            "minted `{}` ({}): chain {}, actions {}, expires {}",
            answer["name"].as_str().unwrap_or("?"),
            answer["role"].as_str().unwrap_or("?"),
            text_list(&answer["chain"]),
            text_list(&answer["actions"]),
            answer["expires_at"].as_str().unwrap_or("?"),
        );
    }
    Ok(EXIT_ALLOW)
}

/// A list of strings from the server's answer, comma-separated.
fn text_list(value: &Value) -> String {
    value.as_array().map_or_else(
        || "?".to_string(),
        |items| items.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(", "),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bound_values_keep_their_type() {
        assert_eq!(bound_field("tenant=acme").unwrap(), ("tenant".into(), json!("acme")));
        assert_eq!(bound_field("level=3").unwrap(), ("level".into(), json!(3)));
        assert_eq!(bound_field("ok=true").unwrap(), ("ok".into(), json!(true)));
        assert_eq!(bound_field("n=\"3\"").unwrap(), ("n".into(), json!("3")));
        assert_eq!(bound_field("list=[1]").unwrap(), ("list".into(), json!("[1]")));
        assert!(bound_field("tenant").is_err());
    }

    #[test]
    fn approves_takes_a_comma_separated_list() {
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            args: DelegateArgs,
        }
        let parse = |extra: &[&str]| {
            let base = [
                "rein",
                "--server",
                "http://x",
                "--from",
                "t",
                "--actor",
                "agent:a",
                "--actions",
                "*",
            ];
            Cli::try_parse_from(base.iter().chain(extra)).map(|c| c.args.approves)
        };
        assert_eq!(parse(&[]).unwrap(), None);
        assert_eq!(
            parse(&["--approves", "support, finance"]).unwrap(),
            Some(vec!["support".to_string(), "finance".to_string()])
        );
        assert!(parse(&["--approves", "support,"]).is_err());
    }
}
