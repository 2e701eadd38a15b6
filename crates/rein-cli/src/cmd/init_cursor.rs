//! `rein init cursor`: write Rein's hooks into Cursor's hook configuration
//! (`.cursor/hooks.json` of a project, or `~/.cursor/hooks.json` with
//! `--user`), merged into what is there, showing the diff; `--undo`
//! takes them out again.
//!
//! Cursor's file is `{"version": 1, "hooks": {EVENT: [HANDLER, …]}}`, a
//! list of handlers per event (no matcher groups). Every handler Rein
//! writes has `"failClosed": true`: without it Cursor lets the action run
//! when the hook fails, times out or answers nothing. Its `timeout` is in
//! seconds, and the hook's own `--timeout` is shorter, so that Rein refuses
//! before Cursor gives up on it. As for `rein init claude-code`, the file is
//! an order-preserving tree ([`Json`]): every key the user wrote keeps its
//! place; only handlers an earlier `rein init cursor` wrote are replaced.

use super::init::sh_quote;
use super::settings_file::{absolute, installed_rein, json_error, read_text, show_and_write, utf8, Json, Obj};
use super::EXIT_ALLOW;
use anyhow::{bail, Context};
use clap::{ArgGroup, Args};
use std::path::{Path, PathBuf};

/// Arguments of `rein init cursor`.
#[derive(Args, Debug)]
#[command(group(ArgGroup::new("decider").args(["policy", "server"])))]
pub struct CursorArgs {
    /// Project directory: the file is DIR/.cursor/hooks.json (`.cursor/` is
    /// created if missing).
    #[arg(long, value_name = "DIR", default_value = ".")]
    project: PathBuf,
    /// Write the user's hooks file, `~/.cursor/hooks.json`, for every
    /// project, instead of the project's.
    #[arg(long, conflicts_with = "settings")]
    user: bool,
    /// Hooks file to write instead of DIR/.cursor/hooks.json.
    #[arg(long, value_name = "FILE")]
    settings: Option<PathBuf>,
    /// Policy files or directories the hook decides with, in-process. They
    /// must load now; they are written as absolute paths.
    #[arg(long, short = 'p', num_args = 1.., value_name = "POLICY")]
    policy: Vec<PathBuf>,
    /// SQLite store the hook records to (audit log and approvals); written
    /// as an absolute path. Only with --policy.
    #[arg(long, value_name = "FILE", conflicts_with = "server")]
    db: Option<PathBuf>,
    /// Decide through a running `rein serve` at URL (e.g.
    /// http://127.0.0.1:8700) instead of in-process.
    #[arg(long, value_name = "URL", conflicts_with = "policy")]
    server: Option<String>,
    /// Environment variable that holds the server's bearer token when the
    /// hook runs (the token itself is never written). Only with --server.
    #[arg(long, value_name = "VAR", default_value = "REIN_TOKEN", conflicts_with = "policy")]
    token_env: String,
    /// Seconds Cursor waits for each hook (Cursor's `timeout` is in
    /// seconds); the hook itself gives up, refusing, a little earlier.
    #[arg(long, value_name = "SECS", default_value_t = 30, value_parser = clap::value_parser!(u32).range(1..=600))]
    timeout: u32,
    /// The rein executable the hook command runs, written as given. Default:
    /// the absolute path of this rein, unless it runs from cargo's build
    /// folder: then the `rein` found on PATH, and if there is none, nothing
    /// is written.
    #[arg(long, value_name = "PATH")]
    rein_bin: Option<PathBuf>,
    /// Take Rein's hooks out of the file (leaving everything else) instead
    /// of writing them.
    #[arg(long, conflicts_with_all = ["policy", "server", "db"])]
    undo: bool,
    /// Print the diff only; write nothing.
    #[arg(long)]
    dry_run: bool,
    /// Write without asking (rein asks only when stdin is a terminal).
    #[arg(long, short = 'y')]
    yes: bool,
}

/// The events Rein hooks, in the order they are written. Every tool call
/// is decided once, on `preToolUse`, which Cursor fires for every tool
/// (shell commands, MCP tools and reads included, named by `tool_name`).
/// The granular events (`beforeShellExecution`, `beforeMCPExecution`,
/// `beforeReadFile`) fire for the same calls: hooked too, one call would be
/// decided twice, with two audit records, and a granted approval used by
/// one hook would leave the other asking again. They are not written (and
/// an earlier `rein init cursor`'s are taken out); nothing depends on them,
/// so a file without them leaves no tool undecided.
const EVENTS: [&str; 5] = [
    "preToolUse",
    "beforeSubmitPrompt",
    "postToolUse",
    "sessionStart",
    "sessionEnd",
];

/// Runs `rein init cursor`.
pub fn run(args: CursorArgs, color: bool) -> anyhow::Result<u8> {
    if !args.undo && args.policy.is_empty() && args.server.is_none() {
        // As `rein init codex` says it.
        bail!("give --policy POLICY (decide in-process) or --server URL (ask a rein serve), or --undo");
    }
    let path = match &args.settings {
        Some(file) => file.clone(),
        None if args.user => match std::env::var_os("HOME").filter(|h| !h.is_empty()) {
            Some(home) => PathBuf::from(home).join(".cursor").join("hooks.json"),
            None => bail!("HOME is not set; pass --settings FILE"),
        },
        None => {
            if !args.project.is_dir() {
                bail!("project directory {} not found", args.project.display());
            }
            args.project.join(".cursor").join("hooks.json")
        }
    };
    let bin = match &args.rein_bin {
        Some(bin) => utf8(bin)?.to_owned(),
        None if args.undo => String::new(),
        None => {
            let exe = std::env::current_exe().context("cannot find this rein executable's path; pass --rein-bin")?;
            utf8(&installed_rein(&exe, "the hook")?)?.to_owned()
        }
    };
    let (old_text, exists) = match read_text(&path)? {
        Some(text) => (text, true),
        None => (String::new(), false),
    };
    let old = parse_hooks_file(&path, &old_text)?;
    let mut new = old.clone();
    if args.undo {
        if !exists {
            // As `rein init claude-code|gemini --undo` say it.
            eprintln!("{}: no such file, nothing to undo", path.display());
            return Ok(EXIT_ALLOW);
        }
        if !remove_rein(&mut new, &bin) {
            eprintln!("{}: no Rein hooks to take out", path.display());
            return Ok(EXIT_ALLOW);
        }
    } else {
        let hooks_file = absolute(&path)?;
        let handler = rein_handler(&args, &bin, &hooks_file, color)?;
        merge(&mut new, &handler, &bin);
        if let Some(other) = other_level(&args, &path).filter(|other| decides_tools(other, &bin)) {
            eprintln!(
                "warning: {} has Rein's hooks too. Cursor runs the hooks of every file, so each tool call \
                 would be decided twice (and an approval granted for it used by one and asked for again \
                 by the other); take them out of one file with `rein init cursor --undo --settings FILE`",
                other.display()
            );
        }
    }
    if exists && new == old {
        eprintln!("{}: already up to date", path.display());
        return Ok(EXIT_ALLOW);
    }
    if let Some(code) = show_and_write(&path, exists, &old_text, &new, args.dry_run, args.yes)? {
        return Ok(code);
    }
    Ok(EXIT_ALLOW)
}

/// The hooks file of the other level Cursor also loads: the user's
/// (`~/.cursor/hooks.json`) when a project's is written, the project's when
/// `--user` or `--settings` names another file. `None` when it is the same
/// file.
fn other_level(args: &CursorArgs, path: &Path) -> Option<PathBuf> {
    let other = match &args.settings {
        _ if args.user => args.project.join(".cursor").join("hooks.json"),
        Some(_) => args.project.join(".cursor").join("hooks.json"),
        None => PathBuf::from(std::env::var_os("HOME")?)
            .join(".cursor")
            .join("hooks.json"),
    };
    let same = std::path::absolute(&other).ok()? == std::path::absolute(path).ok()?;
    (!same).then_some(other)
}

/// Whether the hooks file at `path` has a Rein handler on an event that
/// decides tool calls: `preToolUse`, or a granular event an earlier `rein
/// init cursor` wrote (an unreadable file says nothing: it is not the one
/// being written).
fn decides_tools(path: &Path, bin: &str) -> bool {
    let Ok(Some(text)) = read_text(path) else {
        return false;
    };
    let Ok(Json::Object(top)) = parse_hooks_file(path, &text) else {
        return false;
    };
    let Some(Json::Object(hooks)) = top.get("hooks") else {
        return false;
    };
    ["preToolUse", "beforeShellExecution", "beforeMCPExecution", "beforeReadFile"]
        .iter()
        .any(|event| matches!(hooks.get(event), Some(Json::Array(handlers)) if handlers.iter().any(|h| is_rein_handler(h, bin))))
}

/// The hook's own timeout for Cursor's `secs`: two seconds less (at most
/// ten, Rein's default; at least half a second), so that Rein answers
/// "deny" itself before Cursor would give up on the hook.
fn hook_timeout(secs: u32) -> String {
    let own = (f64::from(secs) - 2.0).clamp(0.5, 10.0);
    format!("{own}")
}

/// The handler Rein writes for every event: a `rein hook cursor` command
/// naming the hooks file as protected (the agent may not change it).
fn rein_handler(args: &CursorArgs, bin: &str, hooks_file: &str, color: bool) -> anyhow::Result<Json> {
    let mut words: Vec<String> = vec![sh_quote(bin).into_owned(), "hook".into(), "cursor".into()];
    if let Some(server) = &args.server {
        let url = server.trim_end_matches('/');
        let rest = url.strip_prefix("http://").or_else(|| url.strip_prefix("https://"));
        if rest.is_none_or(|r| r.is_empty() || r.contains(char::is_whitespace)) {
            bail!("--server must be an http:// or https:// URL, got `{server}`");
        }
        let var = &args.token_env;
        let valid_name = var.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && var.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid_name {
            bail!("--token-env must be an environment variable name (letters, digits, `_`), got `{var}`");
        }
        words.extend(["--server".into(), sh_quote(url).into_owned()]);
        words.extend(["--token-env".into(), var.clone()]);
    } else {
        // In-process: the policy must load now, or every tool call would be
        // refused later.
        if super::load_policy(&args.policy, color, super::Format::Human).is_err() {
            bail!("the policy does not load (see above); nothing written");
        }
        for policy in &args.policy {
            words.push("--policy".into());
            words.push(sh_quote(&absolute(policy)?).into_owned());
        }
        if let Some(db) = &args.db {
            words.push("--db".into());
            words.push(sh_quote(&absolute(db)?).into_owned());
        }
    }
    words.extend(["--timeout".into(), hook_timeout(args.timeout)]);
    words.extend(["--protect".into(), sh_quote(hooks_file).into_owned()]);
    Ok(Json::object([
        ("command", Json::from(words.join(" "))),
        ("type", Json::from("command")),
        ("timeout", Json::from(args.timeout)),
        ("failClosed", Json::Bool(true)),
    ]))
}

/// Whether `handler` is one an earlier `rein init cursor` wrote: a command
/// whose words start with a rein executable (named `rein`, or `bin`, the
/// one being written now) followed by `hook cursor`.
fn is_rein_handler(handler: &Json, bin: &str) -> bool {
    let Json::Object(fields) = handler else {
        return false;
    };
    let Some(Json::String(command)) = fields.get("command") else {
        return false;
    };
    let Some(words) = shlex::split(command) else {
        return false;
    };
    let [program, hook, agent, ..] = words.as_slice() else {
        return false;
    };
    let name = Path::new(program).file_name().and_then(|n| n.to_str());
    (program == bin || matches!(name, Some("rein" | "rein.exe"))) && hook == "hook" && agent == "cursor"
}

/// Takes every Rein handler out of `file.hooks`, dropping the events this
/// empties. Returns whether there was one; where each event's first one was.
fn take_out(file: &mut Json, bin: &str) -> (bool, Vec<(String, usize)>) {
    let mut slots = Vec::new();
    let Json::Object(top) = file else {
        return (false, slots);
    };
    let Some(Json::Object(hooks)) = top.get_mut("hooks") else {
        return (false, slots);
    };
    let mut emptied = Vec::new();
    for (event, handlers) in hooks.0.iter_mut() {
        let Json::Array(handlers) = handlers else {
            continue;
        };
        if let Some(at) = handlers.iter().position(|h| is_rein_handler(h, bin)) {
            handlers.retain(|h| !is_rein_handler(h, bin));
            slots.push((event.clone(), at));
            if handlers.is_empty() {
                emptied.push(event.clone());
            }
        }
    }
    for event in &emptied {
        hooks.remove(event);
    }
    (!slots.is_empty(), slots)
}

/// `--undo`: Rein's handlers out; an emptied `hooks` goes too, and so does
/// a file left with only `version` (`{}` is then written).
fn remove_rein(file: &mut Json, bin: &str) -> bool {
    let (found, _) = take_out(file, bin);
    if let Json::Object(top) = file {
        if matches!(top.get("hooks"), Some(Json::Object(h)) if h.0.is_empty()) {
            top.remove("hooks");
            if top.0.iter().all(|(k, _)| k == "version") {
                top.remove("version");
            }
        }
    }
    found
}

/// Rein's handler into every event of [`EVENTS`], where an earlier one was,
/// else first (Cursor runs an event's hooks together; the first place makes
/// Rein's easy to find). `version` is set to 1 when missing.
fn merge(file: &mut Json, handler: &Json, bin: &str) {
    let (_, slots) = take_out(file, bin);
    let Json::Object(top) = file else {
        return;
    };
    if top.get("version").is_none() {
        let mut with_version = Obj::default();
        with_version.insert("version", Json::from(1u32));
        for (k, v) in std::mem::take(&mut top.0) {
            with_version.insert(&k, v);
        }
        *top = with_version;
    }
    if top.get("hooks").is_none() {
        top.insert("hooks", Json::Object(Obj::default()));
    }
    let Some(Json::Object(hooks)) = top.get_mut("hooks") else {
        return;
    };
    for event in EVENTS {
        let slot = slots.iter().find(|(e, _)| e == event).map(|(_, s)| *s).unwrap_or(0);
        match hooks.get_mut(event) {
            Some(Json::Array(handlers)) => handlers.insert(slot.min(handlers.len()), handler.clone()),
            _ => hooks.insert(event, Json::Array(vec![handler.clone()])),
        }
    }
}

/// Parses a hooks file: an empty one is `{}`; otherwise a JSON object
/// whose `version`, if present, is 1 and whose `hooks`, if present, maps
/// event names to lists of handler objects. Anything else is refused and
/// the file left as it is.
fn parse_hooks_file(path: &Path, text: &str) -> anyhow::Result<Json> {
    if text.trim().is_empty() {
        return Ok(Json::Object(Obj::default()));
    }
    let tree: Json = serde_json::from_str(text).map_err(|e| json_error(path, text, &e, "not a hooks file"))?;
    let left = |what: &str| anyhow::anyhow!("{}: {what}; the file was left unchanged", path.display());
    let Json::Object(top) = &tree else {
        return Err(left("Cursor's hooks file must be a JSON object"));
    };
    match top.get("version") {
        None => {}
        Some(Json::Number(n)) if n.as_u64() == Some(1) => {}
        Some(_) => {
            return Err(left(
                "`version` is not 1, the only version of Cursor's hooks file Rein knows",
            ))
        }
    }
    match top.get("hooks") {
        None => {}
        Some(Json::Object(hooks)) => {
            for (event, handlers) in &hooks.0 {
                let Json::Array(handlers) = handlers else {
                    return Err(left(&format!("`hooks.{event}` is not a list of hooks")));
                };
                if handlers.iter().any(|h| !matches!(h, Json::Object(_))) {
                    return Err(left(&format!("`hooks.{event}` holds a hook that is not an object")));
                }
            }
        }
        Some(_) => return Err(left("`hooks` is not an object of event names")),
    }
    Ok(tree)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hook_gives_up_before_cursor_does() {
        assert_eq!(hook_timeout(30), "10");
        assert_eq!(hook_timeout(5), "3");
        assert_eq!(hook_timeout(1), "0.5");
        for secs in 1..=600 {
            let own: f64 = hook_timeout(secs).parse().unwrap();
            assert!(own < f64::from(secs), "{secs}");
        }
    }

    #[test]
    fn rein_handlers_are_recognised_by_command() {
        let command = |c: &str| Json::object([("command", Json::from(c))]);
        let bin = "/opt/my bin/rein-dev";
        assert!(is_rein_handler(&command("/usr/bin/rein hook cursor --policy p"), bin));
        assert!(is_rein_handler(&command("'/opt/my bin/rein-dev' hook cursor"), bin));
        assert!(!is_rein_handler(&command("rein hook claude-code"), bin));
        assert!(!is_rein_handler(&command("./hooks/audit.sh"), bin));
        assert!(!is_rein_handler(&command("echo rein hook cursor"), bin));
    }
}
