//! `rein init codex`: write Rein's hooks into Codex CLI's `hooks.json`
//! (the project's `.codex/hooks.json`, or the user's under `$CODEX_HOME`),
//! merged into what is there, showing the diff; `--undo` takes them out.
//!
//! Codex's `hooks.json` has Claude Code's shape (`{"hooks": {EVENT:
//! [{"matcher": …, "hooks": [HANDLER]}]}}`), so the file is read and checked
//! as `rein init claude-code` reads its settings; only handlers that run
//! `rein hook codex` are Rein's. What differs is how Codex fails: a hook
//! that exits with any code but 0 or 2, is killed by Codex's timeout, or is
//! not there at all lets the call run. So the command turns every other
//! exit into exit 2 with a reason on stderr (Codex's blocking exit), and
//! `rein hook`'s own `--timeout` is below Codex's `timeout`, so that Rein
//! refuses before Codex gives up on it.
//!
//! Codex also skips, without a word, a hook it has not been told to trust
//! (and one that changed since). So after writing, the command asks the
//! installed Codex whether it runs each of Rein's hooks and says so, one
//! line per hook; `--trust` writes the trust Codex computed for them into
//! its `config.toml` (see the `trust` module).

use super::init::{parse_settings, sh_quote, take_out_handlers};
use super::settings_file::{
    absolute, installed_rein, print_diff, read_text, show_and_write, utf8, write_reviewed, Json, Obj,
};
use super::EXIT_ALLOW;
use anyhow::{bail, Context};
use clap::{ArgGroup, Args};
use std::path::{Path, PathBuf};
use std::time::Duration;

mod trust;

/// Arguments of `rein init codex`.
#[derive(Args, Debug)]
#[command(group(ArgGroup::new("decider").args(["policy", "server"])))]
pub struct CodexArgs {
    /// Project directory: the hook configuration is DIR/.codex/hooks.json
    /// (`.codex/` is created if missing). Codex reads a project's `.codex/`
    /// only once the project is trusted.
    #[arg(long, value_name = "DIR", default_value = ".")]
    project: PathBuf,
    /// Write the user's hook configuration, `$CODEX_HOME/hooks.json`
    /// (`~/.codex/hooks.json` when CODEX_HOME is not set), for every
    /// project, instead of the project's.
    #[arg(long, conflicts_with = "settings")]
    user: bool,
    /// The hooks.json file to write instead of DIR/.codex/hooks.json.
    #[arg(long, value_name = "FILE")]
    settings: Option<PathBuf>,
    /// Policy files or directories the hook decides with, in-process. They
    /// must load now; they are written as absolute paths.
    #[arg(long, short = 'p', num_args = 1.., value_name = "POLICY")]
    policy: Vec<PathBuf>,
    /// SQLite store the hook records to (audit log and approvals);
    /// written as an absolute path. Only with --policy.
    #[arg(long, value_name = "FILE", conflicts_with = "server")]
    db: Option<PathBuf>,
    /// Decide through a running `rein serve` at URL (e.g.
    /// http://127.0.0.1:8700) instead of in-process. Codex has no HTTP
    /// hooks: the hook is `rein hook codex --server URL`.
    #[arg(long, value_name = "URL", conflicts_with = "policy")]
    server: Option<String>,
    /// Environment variable that holds the server's bearer token when the
    /// hook runs (the token itself is never written). Only with --server.
    #[arg(long, value_name = "VAR", default_value = "REIN_TOKEN", conflicts_with = "policy")]
    token_env: String,
    /// Seconds Codex waits for each hook (Codex's `timeout`, in seconds; at
    /// least 2). Codex lets the call run when a hook times out, so the
    /// hook is told to refuse earlier: `rein hook --timeout` is this minus
    /// a fifth (at least one second less).
    #[arg(long, value_name = "SECS", default_value_t = 30, value_parser = clap::value_parser!(u32).range(2..=3600))]
    timeout: u32,
    /// The rein executable the hook command runs, written as given. Default:
    /// the absolute path of this rein, unless it runs from cargo's build
    /// folder: then the `rein` found on PATH, and if there is none, nothing
    /// is written.
    #[arg(long, value_name = "PATH")]
    rein_bin: Option<PathBuf>,
    /// Take Rein's hooks out of the file instead (any `rein hook codex`
    /// handler, whatever its arguments); everything else is kept.
    #[arg(long, conflicts_with_all = ["policy", "server", "db"])]
    undo: bool,
    /// Also write the trust Codex needs before it runs these hooks: for
    /// each of Rein's hooks, the `[hooks.state."KEY"] trusted_hash` Codex
    /// itself computes (asked through `codex app-server`), into the
    /// config.toml Codex reads (`$CODEX_HOME`, else `~/.codex`). Only
    /// Rein's hooks are trusted; `--undo` takes the entries out again.
    #[arg(long, conflicts_with = "undo")]
    trust: bool,
    /// The Codex executable asked whether it runs the hooks (and, with
    /// --trust, for their hashes). Default: `codex` on PATH.
    #[arg(long, value_name = "PATH")]
    codex_bin: Option<PathBuf>,
    /// Seconds to wait for Codex's answer before saying it could not be
    /// asked.
    #[arg(long, value_name = "SECS", default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..=600))]
    codex_wait: u64,
    /// Print the diff only; write nothing.
    #[arg(long)]
    dry_run: bool,
    /// Write without asking (rein asks only when stdin is a terminal).
    #[arg(long, short = 'y')]
    yes: bool,
}

/// The events Rein hooks, in the order they are written, with their
/// matcher (`None`: the event takes no matcher). Each is one Codex 0.171
/// runs and Rein decides or records (see crates/rein-cli/tests/codex_e2e).
const EVENTS: [(&str, Option<&str>); 5] = [
    ("PreToolUse", Some("*")),
    ("PermissionRequest", Some("*")),
    ("PostToolUse", Some("*")),
    ("UserPromptSubmit", None),
    ("SessionStart", None),
];

/// What the shell prints, with exit 2, when `rein hook codex` ends in any
/// other way than an answer (exit 0) or its own refusal (exit 2).
const CRASH_REASON: &str = "Rein: the hook did not answer (rein missing or crashed); refused";

/// Runs `rein init codex`.
pub fn run(args: CodexArgs, color: bool) -> anyhow::Result<u8> {
    if !args.undo && args.policy.is_empty() && args.server.is_none() {
        bail!("give --policy POLICY (decide in-process) or --server URL (ask a rein serve), or --undo");
    }
    let path = hooks_file(&args)?;
    let bin = match &args.rein_bin {
        Some(bin) => utf8(bin)?.to_owned(),
        // Undoing: this rein too, where it can be found.
        None if args.undo => std::env::current_exe()
            .ok()
            .and_then(|exe| installed_rein(&exe, "the hook").ok())
            .and_then(|bin| bin.to_str().map(str::to_owned))
            .unwrap_or_default(),
        None => {
            let exe = std::env::current_exe().context("cannot find this rein executable's path; pass --rein-bin")?;
            utf8(&installed_rein(&exe, "the hook")?)?.to_owned()
        }
    };
    let (old_text, exists) = match read_text(&path)? {
        Some(text) => (text, true),
        None => (String::new(), false),
    };
    let old = parse_settings(&path, &old_text)?;
    let mut new = old.clone();
    if args.undo {
        if !exists {
            eprintln!("{}: no such file, nothing to undo", path.display());
            return Ok(EXIT_ALLOW);
        }
        remove_rein(&mut new, &bin);
    } else {
        let handler = rein_handler(&args, &bin, &absolute(&path)?, color)?;
        merge(&mut new, &handler, &bin);
    }
    let handler_command = match &new {
        // The command of Rein's handler as written: the hooks Codex lists
        // with exactly this command are the ones to check and trust.
        _ if args.undo => String::new(),
        settings => rein_command(settings, &bin).unwrap_or_default(),
    };
    if new == old && (exists || args.undo) {
        // The same words as the other agents' `rein init`.
        let what = if args.undo {
            "no Rein hooks to take out"
        } else {
            "already up to date"
        };
        eprintln!("{}: {what}", path.display());
    } else {
        match show_and_write(&path, exists, &old_text, &new, args.dry_run, args.yes)? {
            Some(_) if args.dry_run => {}
            Some(code) => return Ok(code),
            None => {}
        }
    }
    if args.undo {
        return untrust(&args, &path, &old, &bin);
    }
    let file_changed = new != old || !exists;
    check_and_trust(&args, &path, &handler_command, file_changed)?;
    Ok(EXIT_ALLOW)
}

/// The config.toml Codex reads, or an error naming why it cannot be found.
fn codex_config() -> anyhow::Result<PathBuf> {
    match codex_home() {
        Some(home) => Ok(home.join("config.toml")),
        None => bail!("neither CODEX_HOME nor HOME is set: cannot find Codex's config.toml"),
    }
}

/// The folder Codex is asked about: the project for a project's hooks, the
/// current one otherwise.
fn codex_cwd(args: &CodexArgs) -> PathBuf {
    if args.settings.is_none() && !args.user {
        std::path::absolute(&args.project).unwrap_or_else(|_| args.project.clone())
    } else {
        std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."))
    }
}

/// After writing (or on a dry run): asks the installed Codex whether it
/// runs each of Rein's hooks in `path` and says so on stderr, one line per
/// hook; with `--trust`, writes the trust Codex computed for the ones it
/// would skip, then asks again. Never says a hook runs unless Codex did.
fn check_and_trust(args: &CodexArgs, path: &Path, command: &str, file_changed: bool) -> anyhow::Result<()> {
    let wait = Duration::from_secs(args.codex_wait);
    let cwd = codex_cwd(args);
    if args.trust {
        // Refused before anything is asked: a config.toml Rein cannot edit
        // without losing what is in it.
        let config = codex_config()?;
        trust::with_trust(&config, &read_text(&config)?.unwrap_or_default(), &[])?;
    }
    let Some(codex) = trust::find_codex(args.codex_bin.as_deref()) else {
        return cannot_check(
            args,
            "Codex is not installed (no `codex` on PATH; pass --codex-bin PATH)",
        );
    };
    if args.dry_run && file_changed {
        eprintln!(
            "rein: WARNING: dry run: the hooks would change, and Codex skips a changed hook until it is trusted again; \
                 run without --dry-run (and with --trust) to check and trust them"
        );
        return Ok(());
    }
    let listed = match trust::list_hooks(&codex, &cwd, wait) {
        Ok(listed) => listed,
        Err(why) => return cannot_check(args, &why),
    };
    say_problems(&listed);
    let ours: Vec<&trust::ListedHook> = listed
        .hooks
        .iter()
        .filter(|h| is_ours(h, args, path, command))
        .collect();
    if args.trust {
        // Any status but Codex's two that run (a later Codex may name a
        // changed hook otherwise): the hook is Rein's own, checked above.
        let untrusted: Vec<(String, String)> = ours
            .iter()
            .filter(|h| !matches!(h.trust.as_str(), "trusted" | "managed"))
            .map(|h| (h.key.clone(), h.hash.clone()))
            .collect();
        if ours.is_empty() {
            report(args, path, &ours);
            bail!(
                "Codex does not see Rein's hooks in {} (see above), so there is nothing it could trust; \
                 config.toml was not changed",
                path.display()
            );
        }
        if !untrusted.is_empty() {
            let config = codex_config()?;
            let old = read_text(&config)?.unwrap_or_default();
            let new = trust::with_trust(&config, &old, &untrusted)?;
            if new != old {
                let label = config.display().to_string();
                print_diff(if config.exists() { &label } else { "/dev/null" }, &label, &old, &new)?;
                if let Some(code) = write_reviewed(&config, &new, args.dry_run, args.yes)? {
                    if !args.dry_run {
                        bail!(
                            "{} was not written (exit {code}); Codex skips Rein's hooks",
                            config.display()
                        );
                    }
                    report(args, path, &ours);
                    return Ok(());
                }
                eprintln!("wrote {}", config.display());
            }
            // Asked again: only what Codex says now is reported.
            let again = match trust::list_hooks(&codex, &cwd, wait) {
                Ok(again) => again,
                Err(why) => return cannot_check(args, &why),
            };
            say_problems(&again);
            let ours: Vec<&trust::ListedHook> =
                again.hooks.iter().filter(|h| is_ours(h, args, path, command)).collect();
            report(args, path, &ours);
            return Ok(());
        }
    }
    report(args, path, &ours);
    Ok(())
}

/// Passes on what Codex said was wrong with the hook files it read.
fn say_problems(listing: &trust::Listing) {
    for problem in &listing.problems {
        eprintln!("rein: Codex says about its hooks: {problem}");
    }
}

/// Whether Codex's `hook` is one Rein wrote now: from `path`, running
/// exactly `command` as a blocking command hook, with the timeout and
/// matcher written for its event. Only these are reported on and trusted.
fn is_ours(hook: &trust::ListedHook, args: &CodexArgs, path: &Path, command: &str) -> bool {
    let matcher = EVENTS
        .iter()
        .find(|(event, _)| listed_name(event) == hook.event)
        .map(|(_, matcher)| matcher.map(str::to_owned));
    !command.is_empty()
        && hook.blocking_command
        && hook.command == command
        && hook.timeout == Some(u64::from(args.timeout))
        && matcher.is_some_and(|m| m == hook.matcher)
        && trust::same_file(&hook.source, path)
}

/// An event's name as `hooks/list` gives it (`PreToolUse` → `preToolUse`).
fn listed_name(event: &str) -> String {
    let mut chars = event.chars();
    chars
        .next()
        .map(|first| first.to_ascii_lowercase().to_string() + chars.as_str())
        .unwrap_or_default()
}

/// Says on stderr, one line per event Rein hooks, whether Codex runs it.
fn report(args: &CodexArgs, path: &Path, ours: &[&trust::ListedHook]) {
    let how_to_trust = if args.trust {
        "trust it in Codex's /hooks"
    } else {
        "run `rein init codex` again with --trust, or trust it in Codex's /hooks"
    };
    for (event, _) in EVENTS {
        match ours.iter().find(|h| h.event == listed_name(event)) {
            Some(hook) if hook.runs() => eprintln!("rein: Codex runs Rein's {event} hook ({})", hook.trust),
            Some(hook) if !hook.enabled => eprintln!(
                "rein: WARNING: Codex SKIPS Rein's {event} hook: it is turned off (`enabled = false` under \
                 [hooks.state.{:?}] in Codex's config.toml)",
                hook.key
            ),
            Some(hook) => eprintln!(
                "rein: WARNING: Codex SKIPS Rein's {event} hook: Codex reports it `{}`, not trusted; {how_to_trust}",
                hook.trust
            ),
            None => eprintln!(
                "rein: WARNING: Codex SKIPS Rein's {event} hook: Codex does not load it from {}{}",
                path.display(),
                if args.settings.is_some() {
                    " (Codex reads only $CODEX_HOME/hooks.json and a trusted project's .codex/hooks.json)"
                } else if !args.user {
                    " (Codex reads a project's .codex/ only once the project is trusted: open Codex in it and trust it)"
                } else {
                    " (is `hooks` turned off under [features] in Codex's config.toml?)"
                }
            ),
        }
    }
}

/// Says that Codex could not be asked (never that the hooks run); with
/// `--trust`, that is an error, as no trust could be written.
fn cannot_check(args: &CodexArgs, why: &str) -> anyhow::Result<()> {
    for (event, _) in EVENTS {
        eprintln!(
            "rein: WARNING: could not check whether Codex runs Rein's {event} hook: {why}; do not assume it does: \
             Codex skips a hook until it is trusted (`rein init codex --trust`, or Codex's /hooks)"
        );
    }
    if args.settings.is_none() && !args.user {
        eprintln!(
            "rein: WARNING: Codex also reads a project's .codex/ only once the project is trusted; until then these hooks do not run"
        );
    }
    if args.trust {
        bail!("cannot trust the hooks: {why}; Codex's config.toml was not changed");
    }
    Ok(())
}

/// `--undo`: takes out of Codex's config.toml the `trusted_hash` of every
/// hook of Rein's that `old` (the hooks file before undoing) held, under
/// the key Codex gives it (`FILE:EVENT:GROUP:HANDLER`).
fn untrust(args: &CodexArgs, path: &Path, old: &Json, bin: &str) -> anyhow::Result<u8> {
    let Ok(config) = codex_config() else {
        return Ok(EXIT_ALLOW);
    };
    let Some(text) = read_text(&config)? else {
        return Ok(EXIT_ALLOW);
    };
    let mut files = vec![absolute(path)?];
    if let Ok(real) = std::fs::canonicalize(path) {
        files.extend(real.to_str().map(str::to_owned));
    }
    let mut keys = Vec::new();
    if let Json::Object(top) = old {
        if let Some(Json::Object(hooks)) = top.get("hooks") {
            for (event, groups) in &hooks.0 {
                let Json::Array(groups) = groups else { continue };
                for (g, group) in groups.iter().enumerate() {
                    let Json::Object(group) = group else { continue };
                    let Some(Json::Array(handlers)) = group.get("hooks") else {
                        continue;
                    };
                    for (h, handler) in handlers.iter().enumerate() {
                        if is_rein_handler(handler, bin) {
                            for file in &files {
                                keys.push(format!("{file}:{}:{g}:{h}", trust::key_event(event)));
                            }
                        }
                    }
                }
            }
        }
    }
    let new = trust::without_trust(&config, &text, &keys)?;
    if new == text {
        return Ok(EXIT_ALLOW);
    }
    let label = config.display().to_string();
    print_diff(&label, &label, &text, &new)?;
    if let Some(code) = write_reviewed(&config, &new, args.dry_run, args.yes)? {
        return Ok(code);
    }
    eprintln!("wrote {}", config.display());
    Ok(EXIT_ALLOW)
}

/// The command of the first Rein handler in `settings` (all are the same
/// after a merge).
fn rein_command(settings: &Json, bin: &str) -> Option<String> {
    let Json::Object(top) = settings else { return None };
    let Some(Json::Object(hooks)) = top.get("hooks") else {
        return None;
    };
    let Some(Json::Array(groups)) = hooks.get(EVENTS[0].0) else {
        return None;
    };
    groups.iter().find_map(|group| {
        let Json::Object(group) = group else { return None };
        let Some(Json::Array(handlers)) = group.get("hooks") else {
            return None;
        };
        handlers.iter().find(|h| is_rein_handler(h, bin)).and_then(|h| match h {
            Json::Object(h) => match h.get("command") {
                Some(Json::String(c)) => Some(c.clone()),
                _ => None,
            },
            _ => None,
        })
    })
}

/// The hooks.json to write: `--settings`, `$CODEX_HOME/hooks.json` (or
/// `~/.codex/hooks.json`) with `--user`, else DIR/.codex/hooks.json.
fn hooks_file(args: &CodexArgs) -> anyhow::Result<PathBuf> {
    if let Some(file) = &args.settings {
        return Ok(file.clone());
    }
    if args.user {
        let Some(codex_home) = codex_home() else {
            bail!("neither CODEX_HOME nor HOME is set; pass --settings FILE");
        };
        return Ok(codex_home.join("hooks.json"));
    }
    if !args.project.is_dir() {
        bail!("project directory {} not found", args.project.display());
    }
    Ok(args.project.join(".codex").join("hooks.json"))
}

/// The folder Codex keeps the user's configuration in: `$CODEX_HOME`, else
/// `~/.codex`.
fn codex_home() -> Option<PathBuf> {
    match std::env::var_os("CODEX_HOME").filter(|v| !v.is_empty()) {
        Some(dir) => Some(PathBuf::from(dir)),
        None => std::env::var_os("HOME")
            .filter(|v| !v.is_empty())
            .map(|home| PathBuf::from(home).join(".codex")),
    }
}

/// Seconds `rein hook` takes at most, given Codex's `timeout`: a fifth
/// less, and at least one second less.
fn hook_timeout(codex_timeout: u32) -> u32 {
    codex_timeout - (codex_timeout / 5).max(1)
}

/// The handler Rein writes for every event: a `rein hook codex` command
/// naming `hooks_file` and the user's `config.toml` as protected (the hook
/// refuses any tool call that would change them), with Codex's timeout,
/// and a fallback that turns any exit but Rein's own into a refusal.
fn rein_handler(args: &CodexArgs, bin: &str, hooks_file: &str, color: bool) -> anyhow::Result<Json> {
    let mut words: Vec<String> = vec![sh_quote(bin).into_owned(), "hook".into(), "codex".into()];
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
        // `rein hook` reads REIN_TOKEN by itself, and refuses `--token-env`
        // beside a REIN_TOKEN set in its environment (a usage error): name
        // the variable only when it is another one.
        if var != "REIN_TOKEN" {
            words.extend(["--token-env".into(), var.clone()]);
        }
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
    words.push("--protect".into());
    words.push(sh_quote(hooks_file).into_owned());
    // The user's config.toml turns hooks off (`[features] hooks = false`)
    // or one hook (`[hooks.state."…"] enabled = false`), and it is where
    // Codex reads it now, which CODEX_HOME may move away from `~/.codex`.
    if let Some(config) = codex_home().map(|home| home.join("config.toml")) {
        words.push("--protect".into());
        words.push(sh_quote(&absolute(&config)?).into_owned());
    }
    words.push("--timeout".into());
    words.push(hook_timeout(args.timeout).to_string());
    // Exit 2 is Rein's own refusal (its reason already on stderr); every
    // other failure (rein missing: 127, a crash, a signal) becomes one.
    let command = format!(
        "{}; code=$?; if [ $code -ne 0 ] && [ $code -ne 2 ]; then echo '{CRASH_REASON}' >&2; exit 2; fi; exit $code",
        words.join(" ")
    );
    Ok(Json::object([
        ("type", Json::from("command")),
        ("command", Json::from(command)),
        ("timeout", Json::from(args.timeout)),
        ("statusMessage", Json::from("Rein: checking the call")),
    ]))
}

/// Whether `handler` is one an earlier `rein init codex` wrote: a command
/// whose words start with a rein executable (named `rein`, or `bin`, the
/// one being written now) followed by `hook codex`.
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
    let is_rein = (!bin.is_empty() && program == bin) || matches!(name, Some("rein" | "rein.exe"));
    // `codex;` when the fallback follows the words directly.
    is_rein && hook == "hook" && agent.trim_end_matches(';') == "codex"
}

/// Takes every Rein handler out of `settings.hooks`, dropping the groups
/// and events this empties. Returns, per event, where the first removed
/// group was.
fn remove_rein(settings: &mut Json, bin: &str) -> Vec<(String, usize)> {
    let Json::Object(top) = settings else {
        return Vec::new();
    };
    let Some(Json::Object(hooks)) = top.get_mut("hooks") else {
        return Vec::new();
    };
    let (slots, emptied) = take_out_handlers(hooks, |h| is_rein_handler(h, bin));
    for event in emptied {
        hooks.remove(&event);
    }
    slots
}

/// Takes every Rein handler out (see [`remove_rein`]) and puts one group per
/// event in [`EVENTS`] with `handler`, where the first removed one was, else
/// at the end.
fn merge(settings: &mut Json, handler: &Json, bin: &str) {
    if let Json::Object(top) = settings {
        if top.get("hooks").is_none() {
            top.insert("hooks", Json::Object(Obj::default()));
        }
    }
    let slots = remove_rein(settings, bin);
    let Json::Object(top) = settings else {
        return;
    };
    let Some(Json::Object(hooks)) = top.get_mut("hooks") else {
        return;
    };
    for (event, matcher) in EVENTS {
        let mut group = Obj::default();
        if let Some(matcher) = matcher {
            group.insert("matcher", Json::from(matcher));
        }
        group.insert("hooks", Json::Array(vec![handler.clone()]));
        let group = Json::Object(group);
        let slot = slots.iter().find(|(e, _)| e == event).map(|(_, s)| *s);
        match hooks.get_mut(event) {
            Some(Json::Array(groups)) => {
                let at = slot.unwrap_or(groups.len()).min(groups.len());
                groups.insert(at, group);
            }
            _ => hooks.insert(event, Json::Array(vec![group])),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn command(c: &str) -> Json {
        Json::object([("type", Json::from("command")), ("command", Json::from(c))])
    }

    #[test]
    fn rein_handlers_are_recognised_by_their_command() {
        let bin = "/opt/my bin/rein-dev";
        assert!(is_rein_handler(&command("/usr/bin/rein hook codex --policy p"), bin));
        assert!(is_rein_handler(&command("rein hook codex; code=$?; exit $code"), bin));
        assert!(is_rein_handler(
            &command("'/opt/my bin/rein-dev' hook codex --policy p; code=$?; exit $code"),
            bin
        ));
        assert!(!is_rein_handler(&command("'/opt/my bin/rein-dev' hook codex"), ""));
        assert!(!is_rein_handler(&command("rein hook claude-code"), bin));
        assert!(!is_rein_handler(&command("echo hook codex"), bin));
        assert!(!is_rein_handler(&command("/usr/bin/other hook codex"), bin));
        assert!(!is_rein_handler(&Json::object([("type", Json::from("prompt"))]), bin));
    }

    #[test]
    fn the_hook_gives_up_before_codex_does() {
        for (codex, rein) in [(2, 1), (5, 4), (10, 8), (30, 24), (600, 480), (3600, 2880)] {
            assert_eq!(hook_timeout(codex), rein, "{codex}");
        }
        for codex in 2..=3600 {
            assert!(hook_timeout(codex) >= 1 && hook_timeout(codex) < codex, "{codex}");
        }
    }
}
