//! `rein init claude-code`: write Rein's hooks into a Claude Code settings
//! file, merged into what is there, showing the diff.
//!
//! The file is read into an order-preserving JSON tree ([`Json`]), so every
//! key the user wrote keeps its place and value; only handlers an earlier
//! `rein init` wrote (recognised by their command or URL, see
//! [`is_rein_handler`]) are taken out, and Rein's own groups are put back in
//! their place. Running it again with the same arguments yields the same
//! tree, and then nothing is written. The tree, the diff and the atomic
//! write are shared with `rein mcp wrap` ([`super::settings_file`]).

use super::settings_file::{absolute, installed_rein, json_error, read_text, show_and_write, utf8, Json, Obj};
use super::EXIT_ALLOW;
use anyhow::{bail, Context};
use clap::{ArgGroup, Args, Subcommand};
use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Unexpected, Visitor};
use serde::Deserializer;
use std::borrow::Cow;
use std::fmt;
use std::path::{Path, PathBuf};

#[derive(Args, Debug)]
pub struct InitArgs {
    #[command(subcommand)]
    agent: Agent,
}

#[derive(Subcommand, Debug)]
enum Agent {
    /// Write (or merge) Rein's hooks into a Claude Code settings file, so
    /// that Claude Code asks Rein before and after every tool call.
    ///
    /// Hooks are written for PreToolUse, PermissionRequest and PostToolUse
    /// (matcher `*`), UserPromptSubmit, SessionStart and SessionEnd, each with
    /// a timeout and `"onFailure": "block"`. Everything else in the file is
    /// kept; only hooks an earlier `rein init` wrote are replaced. The diff is
    /// printed on stdout, then the file is replaced atomically; a second run
    /// with the same arguments changes nothing, and `--undo` takes Rein's
    /// hooks out. A file that is not valid JSON,
    /// or whose `hooks` has the wrong shape, is refused (exit 2) and left as
    /// it is. The hook command names the settings file (`--protect`): with
    /// Rein's own files (store, audit key, tokens, policies, cache, the rein
    /// executable), the agent may not change it, whatever the policy says.
    ClaudeCode(ClaudeCodeArgs),
    /// Write (or merge) Rein's hooks into Codex CLI's hook configuration,
    /// so that Codex asks Rein before and after every tool call.
    ///
    /// Hooks are written into `.codex/hooks.json` (`--user`:
    /// `$CODEX_HOME/hooks.json`) for PreToolUse, PermissionRequest and
    /// PostToolUse (matcher `*`), UserPromptSubmit and SessionStart, each
    /// with Codex's `timeout` (seconds). Codex has no fail-closed setting:
    /// the command turns any exit but Rein's own into a refusal (exit 2),
    /// and the hook's own timeout is below Codex's. The diff is printed,
    /// everything else in the file is kept, a second run changes nothing,
    /// and `--undo` takes Rein's hooks out. Codex runs the hooks only once
    /// they are trusted (`/hooks` in Codex) and the project is trusted.
    Codex(super::init_codex::CodexArgs),
    /// Write (or merge) Rein's hooks into a Gemini CLI settings file, so
    /// that Gemini CLI asks Rein before and after every tool call.
    ///
    /// Hooks are written into `.gemini/settings.json` for BeforeTool and
    /// AfterTool (matcher `*`), BeforeAgent, SessionStart and SessionEnd,
    /// each with Gemini's `timeout` (milliseconds). Gemini CLI fails open
    /// on a hook that times out, so the hook's own timeout is four fifths
    /// of it; `hooksConfig` is set so that Rein's hooks run. The diff is
    /// printed, everything else in the file is kept, a second run changes
    /// nothing, and `--undo` takes Rein's hooks out. Gemini CLI runs hooks
    /// only in a folder it trusts.
    Gemini(super::init_gemini::GeminiArgs),
    /// Write (or merge) Rein's hooks into Cursor's `hooks.json`, so that
    /// Cursor asks Rein before every tool call.
    ///
    /// Hooks are written into `.cursor/hooks.json` for preToolUse,
    /// beforeShellExecution, beforeMCPExecution, beforeReadFile,
    /// beforeSubmitPrompt, postToolUse, sessionStart and sessionEnd, each
    /// with `"failClosed": true` (without it Cursor lets the action run
    /// when the hook fails) and Cursor's `timeout` (seconds); the hook's
    /// own timeout is shorter. The diff is printed, everything else in the
    /// file is kept, a second run changes nothing, and `--undo` takes
    /// Rein's hooks out.
    Cursor(super::init_cursor::CursorArgs),
    /// Write a starter policy and its test file (`policy.yaml`,
    /// `policy.test.yaml`) into DIR, to edit; existing files are kept
    /// unless --force.
    Policy(super::init_policy::InitPolicyArgs),
}

#[derive(Args, Debug)]
#[command(group(ArgGroup::new("decider").args(["policy", "server"])))]
pub struct ClaudeCodeArgs {
    /// Project directory: the settings file is DIR/.claude/settings.json
    /// (`.claude/` is created if missing).
    #[arg(long, value_name = "DIR", default_value = ".")]
    project: PathBuf,
    /// Settings file to write instead of DIR/.claude/settings.json (e.g.
    /// ~/.claude/settings.json for every project).
    #[arg(long, value_name = "FILE", conflicts_with = "local")]
    settings: Option<PathBuf>,
    /// Write DIR/.claude/settings.local.json (personal, not committed)
    /// instead of DIR/.claude/settings.json.
    #[arg(long)]
    local: bool,
    /// Policy files or directories the hook decides with, in-process. They
    /// must load now; they are written as absolute paths.
    #[arg(long, short = 'p', num_args = 1.., value_name = "POLICY")]
    policy: Vec<PathBuf>,
    /// SQLite store the hook records to (audit log and approvals);
    /// written as an absolute path. Only with --policy.
    #[arg(long, value_name = "FILE", conflicts_with = "server")]
    db: Option<PathBuf>,
    /// Decide through a running `rein serve` at URL (e.g.
    /// http://127.0.0.1:8700, its default address) instead of in-process.
    #[arg(long, value_name = "URL", conflicts_with = "policy")]
    server: Option<String>,
    /// Environment variable that holds the server's bearer token when the
    /// hook runs (the token itself is never written). Only with --server.
    #[arg(long, value_name = "VAR", default_value = "REIN_TOKEN", conflicts_with = "policy")]
    token_env: String,
    /// Write Claude Code `http` hooks that POST to URL/v1/hooks/claude-code
    /// (no process per call) instead of `rein hook claude-code` commands.
    /// Only with --server.
    #[arg(long, conflicts_with = "policy")]
    http: bool,
    /// Seconds Claude Code waits for each hook; a hook that takes longer
    /// blocks the call.
    #[arg(long, value_name = "SECS", default_value_t = 30, value_parser = clap::value_parser!(u32).range(1..))]
    timeout: u32,
    /// The rein executable the hook command runs, written as given. Default:
    /// the absolute path of this rein, unless it runs from cargo's build
    /// folder (`target/debug/rein` under `cargo run`, replaced by every
    /// build and removed by `cargo clean`): then the `rein` found on PATH,
    /// and if there is none, nothing is written.
    #[arg(long, value_name = "PATH", conflicts_with = "http")]
    rein_bin: Option<PathBuf>,
    /// Take Rein's hooks out of the file instead (any `rein hook
    /// claude-code` command and any `http` hook to
    /// `/v1/hooks/claude-code`); everything else is kept.
    #[arg(long, conflicts_with_all = ["policy", "server", "db", "http"])]
    undo: bool,
    /// Print the diff only; write nothing.
    #[arg(long)]
    dry_run: bool,
    /// Write without asking (rein asks only when stdin is a terminal).
    #[arg(long, short = 'y')]
    yes: bool,
}

/// Runs `rein init`.
pub fn run(args: InitArgs, color: bool) -> anyhow::Result<u8> {
    match args.agent {
        Agent::ClaudeCode(args) => claude_code(args, color),
        Agent::Codex(args) => super::init_codex::run(args, color),
        Agent::Gemini(args) => super::init_gemini::run(args, color),
        Agent::Cursor(args) => super::init_cursor::run(args, color),
        Agent::Policy(args) => super::init_policy::run(args),
    }
}

/// The events Rein hooks, in the order they are written, with their
/// matcher (`None`: the event takes no matcher).
const EVENTS: [(&str, Option<&str>); 6] = [
    ("PreToolUse", Some("*")),
    ("PermissionRequest", Some("*")),
    ("PostToolUse", Some("*")),
    ("UserPromptSubmit", None),
    ("SessionStart", None),
    ("SessionEnd", None),
];

/// The path of the HTTP hook endpoint of `rein serve`.
const HTTP_HOOK_PATH: &str = "/v1/hooks/claude-code";

fn claude_code(args: ClaudeCodeArgs, color: bool) -> anyhow::Result<u8> {
    if !args.undo && args.policy.is_empty() && args.server.is_none() {
        // As `rein init codex|gemini|cursor` say it.
        bail!("give --policy POLICY (decide in-process) or --server URL (ask a rein serve), or --undo");
    }
    let path = match &args.settings {
        Some(file) => file.clone(),
        None => {
            if !args.project.is_dir() {
                bail!("project directory {} not found", args.project.display());
            }
            let name = if args.local {
                "settings.local.json"
            } else {
                "settings.json"
            };
            args.project.join(".claude").join(name)
        }
    };
    let bin = match &args.rein_bin {
        Some(bin) => utf8(bin)?.to_owned(),
        // Undoing: handlers are Rein's by the name `rein` (or --rein-bin).
        None if args.http || args.undo => String::new(),
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
    let mut new = old.clone();
    if args.undo {
        remove_rein(&mut new, &bin);
    } else {
        let handler = rein_handler(&args, &bin, &settings, color)?;
        merge(&mut new, &handler, &bin);
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
    Ok(EXIT_ALLOW)
}

/// The handler Rein writes for every event: a `rein hook claude-code`
/// command, or an `http` handler pointing at `rein serve`. A command names
/// `settings` (the file being written) as protected: the hook then refuses
/// any tool call that would change it.
fn rein_handler(args: &ClaudeCodeArgs, bin: &str, settings: &str, color: bool) -> anyhow::Result<Json> {
    let timeout = ("timeout", Json::from(args.timeout));
    let on_failure = ("onFailure", Json::from("block"));
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
        if args.http {
            let headers = Json::object([("Authorization", Json::from(format!("Bearer ${var}")))]);
            return Ok(Json::object([
                ("type", Json::from("http")),
                ("url", Json::from(format!("{url}{HTTP_HOOK_PATH}"))),
                ("headers", headers),
                ("allowedEnvVars", Json::Array(vec![Json::from(var.as_str())])),
                timeout,
                on_failure,
            ]));
        }
        let words = [
            bin,
            "hook",
            "claude-code",
            "--server",
            url,
            "--token-env",
            var,
            "--protect",
            settings,
        ];
        let command = words.iter().map(|w| sh_quote(w)).collect::<Vec<_>>().join(" ");
        return Ok(command_handler(command, timeout, on_failure));
    }

    // In-process: the policy must load now, or every tool call would be
    // refused later.
    if super::load_policy(&args.policy, color, super::Format::Human).is_err() {
        bail!("the policy does not load (see above); nothing written");
    }
    let mut words = vec![sh_quote(bin).into_owned(), "hook".to_owned(), "claude-code".to_owned()];
    for policy in &args.policy {
        words.push("--policy".to_owned());
        words.push(sh_quote(&absolute(policy)?).into_owned());
    }
    if let Some(db) = &args.db {
        words.push("--db".to_owned());
        words.push(sh_quote(&absolute(db)?).into_owned());
    }
    words.push("--protect".to_owned());
    words.push(sh_quote(settings).into_owned());
    Ok(command_handler(words.join(" "), timeout, on_failure))
}

fn command_handler(command: String, timeout: (&str, Json), on_failure: (&str, Json)) -> Json {
    Json::object([
        ("type", Json::from("command")),
        ("command", Json::from(command)),
        timeout,
        on_failure,
    ])
}

/// `word` as one word for a POSIX shell: as it is when it holds only
/// characters no shell treats specially, else in single quotes (a `'` inside
/// becomes `'\''`).
pub(super) fn sh_quote(word: &str) -> Cow<'_, str> {
    let plain = |b: u8| b.is_ascii_alphanumeric() || b"_-./,:@%+".contains(&b);
    if !word.is_empty() && word.bytes().all(plain) {
        Cow::Borrowed(word)
    } else {
        Cow::Owned(format!("'{}'", word.replace('\'', r"'\''")))
    }
}

/// Whether `handler` is one an earlier `rein init claude-code` wrote: an
/// `http` handler whose URL ends in `/v1/hooks/claude-code`, or a command
/// whose words start with a rein executable (named `rein`, or `bin`, the one
/// being written now) followed by `hook claude-code`.
fn is_rein_handler(handler: &Json, bin: &str) -> bool {
    let Json::Object(fields) = handler else {
        return false;
    };
    if let Some(Json::String(url)) = fields.get("url") {
        if url.trim_end_matches('/').ends_with(HTTP_HOOK_PATH) {
            return true;
        }
    }
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
    (program == bin || matches!(name, Some("rein" | "rein.exe"))) && hook == "hook" && agent == "claude-code"
}

/// `--undo`: takes every Rein handler out of `settings.hooks`, dropping
/// the groups and events this empties, and `hooks` itself when emptied.
fn remove_rein(settings: &mut Json, bin: &str) {
    let Json::Object(top) = settings else {
        return;
    };
    let Some(Json::Object(hooks)) = top.get_mut("hooks") else {
        return;
    };
    let (_, emptied) = take_out_rein(hooks, bin);
    for event in emptied {
        hooks.remove(&event);
    }
    if hooks.0.is_empty() {
        top.remove("hooks");
    }
}

/// Takes every Rein handler out of `settings.hooks` (dropping the groups
/// and events this empties) and puts one group per event in [`EVENTS`] with
/// `handler`, where the first removed one was, else at the end.
fn merge(settings: &mut Json, handler: &Json, bin: &str) {
    let Json::Object(top) = settings else {
        return;
    };
    if top.get("hooks").is_none() {
        top.insert("hooks", Json::Object(Obj::default()));
    }
    let Some(Json::Object(hooks)) = top.get_mut("hooks") else {
        return;
    };
    let (slots, emptied) = take_out_rein(hooks, bin);
    for event in emptied {
        if !EVENTS.iter().any(|(e, _)| *e == event) {
            hooks.remove(&event);
        }
    }
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

/// Takes every Rein handler out of `hooks`, dropping the groups this
/// empties. Returns, per event, where its first removed group was, and the
/// events left with no group.
fn take_out_rein(hooks: &mut Obj, bin: &str) -> (Vec<(String, usize)>, Vec<String>) {
    take_out_handlers(hooks, |h| is_rein_handler(h, bin))
}

/// Takes every handler `is_rein` picks out of `hooks` (event to groups of
/// `{"hooks": [handler, ...]}`, the shape Claude Code, Codex and Gemini CLI
/// share), dropping the groups this empties. Returns, per event, where its
/// first removed group was, and the events left with no group.
pub(super) fn take_out_handlers(
    hooks: &mut Obj,
    is_rein: impl Fn(&Json) -> bool,
) -> (Vec<(String, usize)>, Vec<String>) {
    let mut slots: Vec<(String, usize)> = Vec::new();
    let mut emptied: Vec<String> = Vec::new();
    for (event, groups) in hooks.0.iter_mut() {
        let Json::Array(groups) = groups else {
            continue;
        };
        let mut kept = Vec::with_capacity(groups.len());
        let mut slot = None;
        for mut group in std::mem::take(groups) {
            if let Json::Object(g) = &mut group {
                if let Some(Json::Array(handlers)) = g.get_mut("hooks") {
                    let before = handlers.len();
                    handlers.retain(|h| !is_rein(h));
                    if handlers.len() < before {
                        slot.get_or_insert(kept.len());
                        if handlers.is_empty() {
                            continue;
                        }
                    }
                }
            }
            kept.push(group);
        }
        *groups = kept;
        if let Some(slot) = slot {
            slots.push((event.clone(), slot));
            if groups.is_empty() {
                emptied.push(event.clone());
            }
        }
    }
    (slots, emptied)
}

/// Parses a settings file: an empty one is `{}`; otherwise it must be a
/// JSON object whose `hooks`, if present, has Claude Code's shape.
pub(super) fn parse_settings(path: &Path, text: &str) -> anyhow::Result<Json> {
    if text.trim().is_empty() {
        return Ok(Json::Object(Obj::default()));
    }
    let refuse = |e: serde_json::Error| json_error(path, text, &e, "`hooks` has the wrong shape");
    let tree: Json = serde_json::from_str(text).map_err(refuse)?;
    let mut de = serde_json::Deserializer::from_str(text);
    Shape::Top.deserialize(&mut de).map_err(|e| {
        let mut e = refuse(e);
        if !matches!(tree, Json::Object(_)) {
            e = anyhow::anyhow!(
                "{}: the settings must be a JSON object; the file was left unchanged",
                path.display()
            );
        }
        e
    })?;
    Ok(tree)
}

/// The shape Claude Code expects, checked with serde so that a mistake is
/// reported with serde_json's line and column:
/// `{"hooks": {EVENT: [{"matcher": STRING, "hooks": [{…}]}]}}`; every other
/// key may hold anything.
#[derive(Clone, Copy, Debug)]
enum Shape {
    Top,
    Hooks,
    Groups,
    Group,
    Matcher,
    Handlers,
    Handler,
}

impl<'de> DeserializeSeed<'de> for Shape {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        match self {
            Shape::Groups | Shape::Handlers => d.deserialize_seq(self),
            Shape::Matcher => d.deserialize_str(self),
            Shape::Top | Shape::Hooks | Shape::Group | Shape::Handler => d.deserialize_map(self),
        }
    }
}

impl<'de> Visitor<'de> for Shape {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(match self {
            Shape::Top => "a JSON object",
            Shape::Hooks => "an object of event names, each with a list of matcher groups",
            Shape::Groups => "a list of matcher groups",
            Shape::Group => r#"a matcher group, {"matcher": "…", "hooks": […]}"#,
            Shape::Matcher => "a matcher string",
            Shape::Handlers => "a list of hook handlers",
            Shape::Handler => r#"a hook handler, {"type": "…", …}"#,
        })
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key::<String>()? {
            let field = match (self, key.as_str()) {
                (Shape::Top, "hooks") => Some(Shape::Hooks),
                (Shape::Hooks, _) => Some(Shape::Groups),
                (Shape::Group, "matcher") => Some(Shape::Matcher),
                (Shape::Group, "hooks") => Some(Shape::Handlers),
                _ => None,
            };
            match field {
                Some(shape) => map.next_value_seed(shape)?,
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let item = match self {
            Shape::Groups => Shape::Group,
            Shape::Handlers => Shape::Handler,
            _ => return Err(de::Error::invalid_type(Unexpected::Seq, &self)),
        };
        while seq.next_element_seed(item)?.is_some() {}
        Ok(())
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<(), E> {
        match self {
            Shape::Matcher => Ok(()),
            _ => Err(E::invalid_type(Unexpected::Str(v), &self)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_survives_a_posix_shell_split() {
        for word in [
            "plain/path-1.2",
            "",
            "a b",
            "it's",
            "$HOME",
            "a\"b",
            "x=y",
            "~",
            "*",
            "tab\there",
            "new\nline",
        ] {
            let quoted = sh_quote(word);
            assert_eq!(shlex::split(&quoted), Some(vec![word.to_owned()]), "{quoted}");
        }
        assert_eq!(sh_quote("/usr/bin/rein"), "/usr/bin/rein");
        assert_eq!(sh_quote("it's"), r"'it'\''s'");
    }

    #[test]
    fn rein_handlers_are_recognised_by_command_or_url() {
        let command = |c: &str| Json::object([("type", Json::from("command")), ("command", Json::from(c))]);
        let bin = "/opt/my bin/rein-dev";
        assert!(is_rein_handler(
            &command("/usr/bin/rein hook claude-code --policy p"),
            bin
        ));
        assert!(is_rein_handler(
            &command("'/opt/my bin/rein-dev' hook claude-code"),
            bin
        ));
        assert!(is_rein_handler(&command("rein hook claude-code"), bin));
        assert!(!is_rein_handler(&command("rein hook codex"), bin));
        assert!(!is_rein_handler(&command("/usr/bin/other hook claude-code"), bin));
        assert!(!is_rein_handler(&command("echo rein hook claude-code"), bin));
        let http = |u: &str| Json::object([("type", Json::from("http")), ("url", Json::from(u))]);
        assert!(is_rein_handler(
            &http("http://127.0.0.1:7777/v1/hooks/claude-code"),
            bin
        ));
        assert!(!is_rein_handler(&http("http://127.0.0.1:7777/hook"), bin));
    }
}
