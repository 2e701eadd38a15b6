//! `rein init gemini`: write Rein's hooks into a Gemini CLI settings file
//! (`.gemini/settings.json`), merged into what is there, showing the diff;
//! `--undo` takes them out again.
//!
//! Gemini CLI (0.61) runs `command` hooks only (no HTTP hooks) and fails
//! OPEN: a hook that times out, is killed, or exits 1 lets the tool run. So
//! the hook is given its own `--timeout` well below Gemini's (`timeout`, in
//! milliseconds), and Rein refuses first, and the command turns any other
//! end of `rein` (exit 1, a signal) into a refusal. What remains is written
//! in the docs (README, docs/agents.md): the hook's shell killed by Gemini's
//! timeout, and hooks that do not run at all in a folder Gemini does not
//! trust.
//!
//! The tree, the diff and the atomic write are those of `rein init
//! claude-code` ([`super::settings_file`]); the file's shape is the same
//! (`hooks.EVENT[].{matcher, hooks[]}`).

use super::init::{parse_settings, sh_quote, take_out_handlers};
use super::settings_file::{absolute, installed_rein, read_text, show_and_write, utf8, Json, Obj};
use super::EXIT_ALLOW;
use anyhow::{bail, Context};
use clap::{ArgGroup, Args};
use std::path::{Path, PathBuf};

/// Arguments of `rein init gemini`.
#[derive(Args, Debug)]
#[command(group(ArgGroup::new("decider").args(["policy", "server"])))]
pub struct GeminiArgs {
    /// Project directory: the settings file is DIR/.gemini/settings.json
    /// (`.gemini/` is created if missing). Gemini CLI runs hooks only in a
    /// folder it trusts.
    #[arg(long, value_name = "DIR", default_value = ".")]
    project: PathBuf,
    /// Write the user's settings, `~/.gemini/settings.json` (`~` is
    /// `$GEMINI_CLI_HOME` when set), for every project, instead of the
    /// project's.
    #[arg(long, conflicts_with = "settings")]
    user: bool,
    /// Settings file to write instead of DIR/.gemini/settings.json.
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
    /// http://127.0.0.1:8700) instead of in-process (still a `rein hook
    /// gemini` command: Gemini CLI has no HTTP hooks).
    #[arg(long, value_name = "URL", conflicts_with = "policy")]
    server: Option<String>,
    /// Environment variable that holds the server's bearer token when the
    /// hook runs (the token itself is never written). Only with --server.
    #[arg(long, value_name = "VAR", default_value = "REIN_TOKEN", conflicts_with = "policy")]
    token_env: String,
    /// MILLISECONDS Gemini CLI waits for each hook (its unit). Gemini lets
    /// the tool run when a hook times out, so the hook is told to refuse
    /// after four fifths of it (`rein hook --timeout`, whole seconds).
    #[arg(long, value_name = "MS", default_value_t = 30_000, value_parser = clap::value_parser!(u32).range(2_000..=3_600_000))]
    timeout: u32,
    /// The rein executable the hook command runs, written as given. Default:
    /// the absolute path of this rein, unless it runs from cargo's build
    /// folder: then the `rein` found on PATH, and if there is none, nothing
    /// is written.
    #[arg(long, value_name = "PATH")]
    rein_bin: Option<PathBuf>,
    /// Take Rein's hooks out of the file instead (every other setting and
    /// hook is kept).
    #[arg(long, conflicts_with_all = ["policy", "server", "db"])]
    undo: bool,
    /// Print the diff only; write nothing.
    #[arg(long)]
    dry_run: bool,
    /// Write without asking (rein asks only when stdin is a terminal).
    #[arg(long, short = 'y')]
    yes: bool,
}

/// The events Rein hooks, in the order they are written, with their
/// matcher (`None`: the event takes no tool matcher). `BeforeAgent` is
/// Gemini's prompt event.
const EVENTS: [(&str, Option<&str>); 5] = [
    ("BeforeTool", Some("*")),
    ("AfterTool", Some("*")),
    ("BeforeAgent", None),
    ("SessionStart", None),
    ("SessionEnd", None),
];

/// The `name` of Rein's hook handlers (what Gemini shows, and what its
/// `hooksConfig.disabled` list would name).
const HOOK_NAME: &str = "rein";

/// What the shell prints on stderr, with exit 2, when `rein hook gemini`
/// ends in any other way than an answer (exit 0) or its own refusal (exit 2).
const CRASH_REASON: &str = "Rein: the hook did not answer (rein missing, failed or killed); refused";

/// The same refusal as Gemini's JSON answer, on stdout.
const CRASH_ANSWER: &str =
    r#"{"decision":"deny","reason":"Rein: the hook did not answer (rein missing, failed or killed); refused"}"#;

/// Runs `rein init gemini`.
pub fn run(args: GeminiArgs, color: bool) -> anyhow::Result<u8> {
    if !args.undo && args.policy.is_empty() && args.server.is_none() {
        // As `rein init codex` and `rein init cursor` say it.
        bail!("give --policy POLICY (decide in-process) or --server URL (ask a rein serve), or --undo");
    }
    let path = match &args.settings {
        Some(file) => file.clone(),
        None if args.user => match gemini_home() {
            Some(home) => home.join(".gemini").join("settings.json"),
            None => bail!("neither GEMINI_CLI_HOME nor HOME is set; pass --settings FILE"),
        },
        None => {
            if !args.project.is_dir() {
                bail!("project directory {} not found", args.project.display());
            }
            args.project.join(".gemini").join("settings.json")
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
    let settings = absolute(&path)?;

    let (old_text, exists) = match read_text(&path)? {
        Some(text) => (text, true),
        None => (String::new(), false),
    };
    if args.undo && !exists {
        eprintln!("{}: no such file, nothing to undo", path.display());
        return Ok(EXIT_ALLOW);
    }
    let old = parse_settings(&path, &old_text)?;
    if !args.undo {
        check_hooks_config(&path, &old)?;
    }
    let mut new = old.clone();
    if args.undo {
        remove_rein_handlers(&mut new, &bin);
    } else {
        let handler = rein_handler(&args, &bin, &settings, color)?;
        merge(&mut new, &handler, &bin);
        enable_hooks(&mut new, &path);
    }
    if exists && new == old {
        let what = if args.undo {
            "no Rein hooks to take out"
        } else {
            "already up to date"
        };
        eprintln!("{}: {what}", path.display());
        return Ok(EXIT_ALLOW);
    }

    if let Some(code) = show_and_write(&path, exists, &old_text, &new, args.dry_run, args.yes)? {
        return Ok(code);
    }
    if !args.undo {
        let kept_off = warn_other_scopes(&settings, &new);
        eprintln!(
            "Gemini CLI runs hooks, the user's included, only in a folder it trusts (it asks on its \
             first start there; {}): in one it does not trust, it runs no hook and Rein is not asked.",
            trusted_folders_file().map_or_else(
                || "~/.gemini/trustedFolders.json".to_owned(),
                |f| f.display().to_string()
            )
        );
        if kept_off {
            // Written as asked, but a success here would read as "Gemini is
            // governed" while it runs no Rein hook.
            bail!(
                "{}: Rein's hooks are written, but Gemini CLI will not run them while the settings named above \
                 keep them off",
                path.display()
            );
        }
    }
    Ok(EXIT_ALLOW)
}

/// Gemini CLI merges the settings of every scope: the system defaults, the
/// user's, the project's, then the system's (which wins), with
/// `hooksConfig.disabled` the union of all. A file other than `written`
/// can thus keep Rein's hooks from running; each one that would is named,
/// with what to change. `new` is what was written, whose own
/// `enabled: true` wins over the user's and the system defaults'.
/// Returns whether one of them keeps Rein's hooks off.
fn warn_other_scopes(written: &str, new: &Json) -> bool {
    let mut kept_off = false;
    let turned_on_here = matches!(new, Json::Object(top)
        if matches!(top.get("hooksConfig"), Some(Json::Object(c)) if c.get("enabled") == Some(&Json::Bool(true))));
    let home = gemini_home();
    let system = std::env::var_os("GEMINI_CLI_SYSTEM_SETTINGS_PATH")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/etc/gemini-cli/settings.json"));
    let defaults = std::env::var_os("GEMINI_CLI_SYSTEM_DEFAULTS_PATH")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| system.with_file_name("system-defaults.json"));
    // (file, whether its `enabled: false` wins over the project's)
    let mut scopes = vec![(defaults, false)];
    if let Some(home) = home {
        scopes.push((home.join(".gemini").join("settings.json"), false));
    }
    scopes.push((system, true));
    for (file, wins) in scopes {
        if absolute(&file).is_ok_and(|f| f == written) {
            continue;
        }
        let Ok(Some(text)) = read_text(&file) else {
            continue;
        };
        let Ok(Json::Object(top)) = serde_json::from_str::<Json>(&text) else {
            if !text.trim().is_empty() {
                eprintln!(
                    "warning: {}: not read (not plain JSON); Gemini CLI merges it into every project's \
                     settings: check that its `hooksConfig` neither sets `enabled` to false nor names `{HOOK_NAME}` \
                     in `disabled`",
                    file.display()
                );
            }
            continue;
        };
        let Some(Json::Object(config)) = top.get("hooksConfig") else {
            continue;
        };
        let off = match config.get("enabled") {
            Some(Json::Bool(on)) => !on,
            Some(Json::Null) | None => false,
            // What JavaScript reads as false.
            Some(Json::Number(n)) => n.as_f64() == Some(0.0),
            Some(Json::String(text)) => text.is_empty(),
            Some(_) => false,
        };
        if off && (wins || !turned_on_here) {
            kept_off = true;
        }
        if off && wins {
            eprintln!(
                "warning: {}: `hooksConfig.enabled` is false, and these system settings win over every \
                 other: Gemini CLI runs no hook, Rein's included, until it is true",
                file.display()
            );
        } else if off && !turned_on_here {
            eprintln!(
                "warning: {}: `hooksConfig.enabled` is false: Gemini CLI runs no hook in a project whose \
                 own settings do not set it to true; set it to true there, or in {written}",
                file.display()
            );
        }
        let named = match config.get("disabled") {
            Some(Json::Array(names)) => names.iter().any(|n| matches!(n, Json::String(s) if s == HOOK_NAME)),
            // Gemini matches a string as a part of it.
            Some(Json::String(names)) => names.contains(HOOK_NAME),
            _ => false,
        };
        if named {
            kept_off = true;
            eprintln!(
                "warning: {}: `hooksConfig.disabled` names `{HOOK_NAME}`, which Gemini CLI adds to every \
                 project's list: Rein's hooks do not run until it is taken out",
                file.display()
            );
        }
    }
    kept_off
}

/// `rein hook --timeout` (whole seconds) for a Gemini timeout of `ms`:
/// four fifths of it, so that Rein refuses before Gemini gives up on the
/// hook (and lets the tool run); at least 1.
pub fn hook_timeout_secs(ms: u32) -> u32 {
    (ms / 5 * 4 / 1000).max(1)
}

/// The `rein hook gemini` command handler written for every event. It
/// names `settings` (the file being written) as protected: the hook then
/// refuses any tool call that would change it.
fn rein_handler(args: &GeminiArgs, bin: &str, settings: &str, color: bool) -> anyhow::Result<Json> {
    let mut words = vec![sh_quote(bin).into_owned(), "hook".to_owned(), "gemini".to_owned()];
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
        for w in ["--server", url, "--token-env", var] {
            words.push(sh_quote(w).into_owned());
        }
    } else {
        // In-process: the policy must load now, or every tool call would be
        // refused later.
        if super::load_policy(&args.policy, color, super::Format::Human).is_err() {
            bail!("the policy does not load (see above); nothing written");
        }
        for policy in &args.policy {
            words.push("--policy".to_owned());
            words.push(sh_quote(&absolute(policy)?).into_owned());
        }
        if let Some(db) = &args.db {
            words.push("--db".to_owned());
            words.push(sh_quote(&absolute(db)?).into_owned());
        }
    }
    words.push("--timeout".to_owned());
    words.push(hook_timeout_secs(args.timeout).to_string());
    words.push("--protect".to_owned());
    words.push(sh_quote(settings).into_owned());
    // Gemini runs no hook in a folder it does not trust: the file that
    // says which folders it trusts is the hooks' switch too.
    if let Some(trust) = trusted_folders_file() {
        words.push("--protect".to_owned());
        words.push(sh_quote(utf8(&trust)?).into_owned());
    }
    // Gemini reads exit 1 as a warning and a hook killed by a signal (its
    // exit code null, taken as 0) as success with no answer: both let the
    // tool run. The shell turns every exit but Rein's own (0: an answer, 2:
    // its refusal) into a refusal, on stdout (what Gemini reads first) and
    // stderr, with exit 2.
    let command = format!(
        "{}; code=$?; if [ $code -ne 0 ] && [ $code -ne 2 ]; then echo '{CRASH_ANSWER}'; echo '{CRASH_REASON}' >&2; exit 2; fi; exit $code",
        words.join(" ")
    );
    Ok(Json::object([
        ("name", Json::from(HOOK_NAME)),
        ("type", Json::from("command")),
        ("command", Json::from(command)),
        ("timeout", Json::from(args.timeout)),
    ]))
}

/// The folder Gemini CLI takes for `~`: `$GEMINI_CLI_HOME`, else `$HOME`.
fn gemini_home() -> Option<PathBuf> {
    std::env::var_os("GEMINI_CLI_HOME")
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var_os("HOME").filter(|h| !h.is_empty()))
        .map(PathBuf::from)
}

/// Gemini CLI's list of trusted folders, `~/.gemini/trustedFolders.json`
/// (`~` is `$GEMINI_CLI_HOME` when set, as Gemini reads it).
fn trusted_folders_file() -> Option<PathBuf> {
    Some(gemini_home()?.join(".gemini").join("trustedFolders.json"))
}

/// Whether `handler` is one an earlier `rein init gemini` wrote: a command
/// whose words start with a rein executable (named `rein`, or `bin`, the
/// one being written now) followed by `hook gemini`.
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
    // `gemini;` when the fallback follows the words directly.
    (program == bin || matches!(name, Some("rein" | "rein.exe")))
        && hook == "hook"
        && agent.trim_end_matches(';') == "gemini"
}

/// Takes every Rein handler out of `settings.hooks`, dropping the groups
/// and events this empties; returns where the first one of each event was.
fn remove_rein_handlers(settings: &mut Json, bin: &str) -> Vec<(String, usize)> {
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
    if hooks.0.is_empty() {
        top.remove("hooks");
    }
    slots
}

/// Replaces Rein's handlers with one group per event in [`EVENTS`] holding
/// `handler`, where the first removed one was, else at the end.
fn merge(settings: &mut Json, handler: &Json, bin: &str) {
    let slots = remove_rein_handlers(settings, bin);
    let Json::Object(top) = settings else {
        return;
    };
    if top.get("hooks").is_none() {
        top.insert("hooks", Json::Object(Obj::default()));
    }
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

/// Refuses a `hooksConfig` Gemini CLI would read as hooks turned off in a
/// way [`enable_hooks`] cannot mend: Gemini (0.61) only warns about a
/// setting of the wrong type and then uses it as JavaScript would, so an
/// `enabled` of `0` or `""` turns every hook off, and a `disabled` that is
/// a string disables each hook whose name is a part of it (`"rein"`,
/// `"no-reindeer"`).
fn check_hooks_config(path: &Path, settings: &Json) -> anyhow::Result<()> {
    let Json::Object(top) = settings else {
        return Ok(());
    };
    let refuse = |what: &str| {
        anyhow::anyhow!(
            "{}: {what}; the file was left unchanged (Gemini CLI reads a value of another \
             type as it would in JavaScript, which may turn Rein's hook off)",
            path.display()
        )
    };
    let config = match top.get("hooksConfig") {
        None => return Ok(()),
        Some(Json::Object(config)) => config,
        Some(_) => return Err(refuse("`hooksConfig` is not an object")),
    };
    if config.get("enabled").is_some_and(|v| !matches!(v, Json::Bool(_))) {
        return Err(refuse("`hooksConfig.enabled` is not true or false"));
    }
    if config.get("disabled").is_some_and(|v| !matches!(v, Json::Array(_))) {
        return Err(refuse("`hooksConfig.disabled` is not a list of hook names"));
    }
    Ok(())
}

/// Gemini CLI skips every hook when `hooksConfig.enabled` is false, and
/// each hook named in `hooksConfig.disabled`: Rein's are turned back on,
/// saying so.
fn enable_hooks(settings: &mut Json, path: &Path) {
    let Json::Object(top) = settings else {
        return;
    };
    let Some(Json::Object(config)) = top.get_mut("hooksConfig") else {
        return;
    };
    if matches!(config.get("enabled"), Some(Json::Bool(false))) {
        config.insert("enabled", Json::Bool(true));
        eprintln!(
            "{}: hooksConfig.enabled was false (no hook would run); set to true",
            path.display()
        );
    }
    if let Some(Json::Array(disabled)) = config.get_mut("disabled") {
        let before = disabled.len();
        disabled.retain(|d| !matches!(d, Json::String(s) if s == HOOK_NAME));
        if disabled.len() < before {
            eprintln!(
                "{}: hooksConfig.disabled named Rein's hook `{HOOK_NAME}`; taken out",
                path.display()
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hook_gives_up_before_gemini_does() {
        for ms in [2_000, 2_500, 5_000, 30_000, 60_000, 3_600_000] {
            let secs = hook_timeout_secs(ms);
            assert!(
                secs >= 1 && u64::from(secs) * 1000 < u64::from(ms),
                "{ms} ms → {secs} s"
            );
        }
        assert_eq!(hook_timeout_secs(30_000), 24);
    }

    #[test]
    fn rein_handlers_are_recognised_by_their_command() {
        let command = |c: &str| Json::object([("type", Json::from("command")), ("command", Json::from(c))]);
        let bin = "/opt/my bin/rein-dev";
        assert!(is_rein_handler(&command("/usr/bin/rein hook gemini --policy p"), bin));
        assert!(is_rein_handler(&command("'/opt/my bin/rein-dev' hook gemini"), bin));
        assert!(is_rein_handler(&command("rein hook gemini; code=$?; exit $code"), bin));
        assert!(!is_rein_handler(&command("rein hook claude-code"), bin));
        assert!(!is_rein_handler(&command("/usr/bin/other hook gemini"), bin));
        assert!(!is_rein_handler(&command("echo rein hook gemini"), bin));
    }
}
