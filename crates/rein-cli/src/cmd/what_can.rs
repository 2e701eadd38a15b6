//! `rein what-can`: what an actor may do, per action.

use super::actra::{ActraArgs, LoadFailed};
use super::{printable, Format, PolicyArgs, EXIT_ALLOW, EXIT_USAGE};
use clap::Args;
use rein_engine::{ActionAnswer, Residual, Status, WhatCan};
use std::io::{Read, Write};

/// Largest actor or snapshot read from a file or stdin.
const MAX_JSON_BYTES: u64 = 16 * 1024 * 1024;

/// Arguments of `rein what-can`.
///
/// Exit codes: 0 the answer was printed; 2 the policy did not load, or the
/// actor or snapshot is not JSON or breaks its contract (the field is
/// named), or `--action` is not a valid glob.
#[derive(Args, Debug)]
pub struct WhatCanArgs {
    #[command(flatten)]
    policy: PolicyArgs,
    /// The actor, as JSON: `'{"id": "bot", "role": "agent"}'`, `@FILE`,
    /// or `-` for stdin. Checked against the actor contract first.
    #[arg(long, value_name = "JSON|@FILE|-")]
    actor: String,
    /// The snapshot, as JSON, `@FILE` or `-` (default: `{}`). Checked
    /// against the snapshot contract first.
    #[arg(long, value_name = "JSON|@FILE|-")]
    snapshot: Option<String>,
    /// Only the actions this name or glob names (`file.*`).
    #[arg(long, value_name = "GLOB")]
    action: Option<String>,
    /// Print the answer as JSON (for tools).
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    actra: ActraArgs,
}

/// Runs `rein what-can`.
pub fn run(args: WhatCanArgs, color: bool) -> anyhow::Result<u8> {
    let format = if args.json { Format::Json } else { Format::Human };
    let policy = match super::actra::load(&args.policy.paths(), &args.actra, color, format) {
        Ok(p) => p,
        Err(e) if e.is::<LoadFailed>() => return Ok(EXIT_USAGE),
        Err(e) => {
            eprintln!("error: {e:#}");
            return Ok(EXIT_USAGE);
        }
    };
    if args.actor == "-" && args.snapshot.as_deref() == Some("-") {
        eprintln!("error: only one of `--actor` and `--snapshot` can be read from stdin");
        return Ok(EXIT_USAGE);
    }
    let actor = match read_json("--actor", &args.actor) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("error: {e:#}");
            return Ok(EXIT_USAGE);
        }
    };
    let snapshot = match args.snapshot.as_deref().map(|s| read_json("--snapshot", s)) {
        None => serde_json::json!({}),
        Some(Ok(v)) => v,
        Some(Err(e)) => {
            eprintln!("error: {e:#}");
            return Ok(EXIT_USAGE);
        }
    };
    let mut answer = match policy.what_can(&actor, &snapshot) {
        Ok(w) => w,
        Err(v) => {
            eprintln!("error: {}", printable(&v.to_string()));
            return Ok(EXIT_USAGE);
        }
    };
    if let Some(glob) = &args.action {
        if let Err(e) = answer.retain_actions(glob) {
            eprintln!("error: {e}");
            return Ok(EXIT_USAGE);
        }
    }
    let text = if args.json {
        let mut out = serde_json::to_string_pretty(&answer)?;
        out.push('\n');
        out
    } else {
        human(&answer)
    };
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(text.as_bytes())?;
    stdout.flush()?;
    Ok(EXIT_ALLOW)
}

/// Reads JSON given inline, as `@FILE`, or `-` (stdin), refusing repeated
/// keys as requests are read everywhere.
fn read_json(option: &str, given: &str) -> anyhow::Result<serde_json::Value> {
    let (bytes, source) = if given == "-" {
        let mut buf = Vec::new();
        std::io::stdin().take(MAX_JSON_BYTES + 1).read_to_end(&mut buf)?;
        (buf, "stdin".to_string())
    } else if let Some(path) = given.strip_prefix('@') {
        let file = std::fs::File::open(path).map_err(|e| anyhow::anyhow!("{option}: cannot read `{path}`: {e}"))?;
        let mut buf = Vec::new();
        file.take(MAX_JSON_BYTES + 1).read_to_end(&mut buf)?;
        (buf, format!("`{path}`"))
    } else {
        (given.as_bytes().to_vec(), "the argument".to_string())
    };
    if bytes.len() as u64 > MAX_JSON_BYTES {
        anyhow::bail!("{option}: {source} is larger than {MAX_JSON_BYTES} bytes");
    }
    rein_engine::json::parse_strict(&bytes)
        .map_err(|e| anyhow::anyhow!("{option}: {source} is not valid JSON: {e} (give JSON, `@FILE` or `-`)"))
}

/// The answer for people: grouped as always allowed, allowed when, needs
/// approval, never allowed, then what cannot be known statically.
fn human(w: &WhatCan) -> String {
    let mut out = String::new();
    let label = w
        .version_label
        .as_deref()
        .map(|l| format!(" ({})", printable(l)))
        .unwrap_or_default();
    out.push_str(&format!("policy {}{label}\n", super::short_version(&w.version)));
    let group = |out: &mut String, title: &str, lines: Vec<String>| {
        if lines.is_empty() {
            return;
        }
        out.push('\n');
        out.push_str(title);
        out.push('\n');
        for l in lines {
            out.push_str("  ");
            out.push_str(&l);
            out.push('\n');
        }
    };
    let name = |a: &ActionAnswer| printable(&a.action).into_owned();
    let with = |a: &ActionAnswer, r: &Residual| format!("{}: {}", name(a), printable(r.cel().unwrap_or_default()));
    let pick = |f: &dyn Fn(&ActionAnswer) -> Option<String>| w.actions.iter().filter_map(f).collect::<Vec<_>>();
    group(
        &mut out,
        "always allowed:",
        pick(&|a| (a.allowed == Residual::Always).then(|| name(a))),
    );
    group(
        &mut out,
        "allowed when:",
        pick(&|a| matches!(a.allowed, Residual::When(_)).then(|| with(a, &a.allowed))),
    );
    group(
        &mut out,
        "needs approval:",
        pick(&|a| match &a.approval {
            Residual::Always => Some(format!("{}: every input", name(a))),
            Residual::When(_) => Some(with(a, &a.approval)),
            _ => None,
        }),
    );
    group(
        &mut out,
        "never allowed:",
        pick(&|a| (a.status == Status::NeverAllowed).then(|| name(a))),
    );
    group(
        &mut out,
        "depends on state (limits or session facts, decided per request):",
        pick(&|a| {
            (a.status == Status::DependsOnState).then(|| {
                let rules: Vec<String> = a.state_rules.iter().map(|r| printable(r).into_owned()).collect();
                format!("{}: rule {}", name(a), rules.join(", "))
            })
        }),
    );
    group(
        &mut out,
        "not analysable (decided per request):",
        pick(&|a| {
            (a.status == Status::NotAnalysable)
                .then(|| format!("{}: {}", name(a), printable(a.error.as_deref().unwrap_or("unknown"))))
        }),
    );
    if w.actions.is_empty() {
        out.push_str("\nno action matches\n");
    }
    out
}
