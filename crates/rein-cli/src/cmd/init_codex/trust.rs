//! Whether Codex will run the hooks `rein init codex` wrote, asked of the
//! installed Codex itself, and the trust it needs for them.
//!
//! Codex 0.171 runs a user or project hook only once that exact hook is
//! trusted (`[hooks.state."KEY"] trusted_hash = "sha256:…"` in the
//! `config.toml` under `$CODEX_HOME`), and skips it without a word
//! otherwise, or after it changed. The key and the hash are Codex's own;
//! Rein does not compute them but asks Codex for them through
//! `codex app-server` (`initialize`, then `hooks/list`), which lists each
//! hook with its key, current hash and trust status.

use anyhow::{bail, Context};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The most Rein reads of what the app-server prints (a list of a few
/// hundred hooks is far less); past it, Codex is taken as not answering.
const MAX_OUTPUT: u64 = 16 << 20;

/// One hook as Codex's `hooks/list` describes it.
#[derive(Debug, Clone)]
pub(super) struct ListedHook {
    /// Codex's key for the hook's trust entry (`FILE:EVENT:GROUP:HANDLER`).
    pub key: String,
    /// The event, as Codex names it in the list (`preToolUse`).
    pub event: String,
    /// The command the hook runs.
    pub command: String,
    /// The hooks.json the hook comes from.
    pub source: PathBuf,
    /// Codex's hash of the hook as it is now (`sha256:…`).
    pub hash: String,
    /// `trusted`, `untrusted`, `managed`, or what a later Codex adds.
    pub trust: String,
    /// Whether it is a command hook Codex waits for (not `async`): the
    /// only kind that can stop a call.
    pub blocking_command: bool,
    /// Seconds Codex waits for it.
    pub timeout: Option<u64>,
    /// Its matcher, for an event that takes one.
    pub matcher: Option<String>,
    /// Whether the hook is turned on (`[hooks.state."KEY"] enabled`).
    pub enabled: bool,
}

impl ListedHook {
    /// Whether Codex runs this hook: turned on and trusted (or managed,
    /// which Codex runs without asking). A status Rein does not know is
    /// not taken as running.
    pub fn runs(&self) -> bool {
        self.enabled && matches!(self.trust.as_str(), "trusted" | "managed")
    }
}

/// Asks `codex` (`codex app-server`, run in `cwd` with this process's
/// environment, so with the user's CODEX_HOME) for the hooks it would run
/// in `cwd`. Waits at most `wait` in all; the server is stopped after.
/// The error says why Codex could not be asked, for the user.
pub(super) fn list_hooks(codex: &Path, cwd: &Path, wait: Duration) -> Result<Listing, String> {
    let mut child = Command::new(codex)
        .arg("app-server")
        .current_dir(cwd)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => format!("Codex is not installed ({} not found)", codex.display()),
            _ => format!("cannot start {} app-server: {e}", codex.display()),
        })?;
    let answer = converse(&mut child, cwd, wait);
    // Stopped whatever happened; the reading thread ends with the pipe.
    let _ = child.kill();
    let _ = child.wait();
    parse_list(&answer?)
}

/// Sends `initialize`, `initialized` and `hooks/list` to the running
/// app-server and returns the `hooks/list` result.
fn converse(child: &mut std::process::Child, cwd: &Path, wait: Duration) -> Result<Value, String> {
    let deadline = Instant::now() + wait;
    let (Some(mut stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
        return Err("codex app-server's pipes are missing".into());
    };
    // Bounded both ways: a Codex that floods its output can neither fill
    // this process's memory nor keep it waiting past the deadline.
    let (tx, rx) = mpsc::sync_channel::<Value>(64);
    std::thread::spawn(move || {
        // Lines that are not JSON (there should be none) are passed over.
        for line in BufReader::new(stdout.take(MAX_OUTPUT)).lines().map_while(Result::ok) {
            if let Ok(message) = serde_json::from_str::<Value>(&line) {
                if tx.send(message).is_err() {
                    break;
                }
            }
        }
    });
    let mut ask = |method: &str, id: u64, params: Value| request(&mut stdin, &rx, deadline, wait, id, method, params);
    ask(
        "initialize",
        1,
        json!({"clientInfo": {"name": "rein-init", "version": env!("CARGO_PKG_VERSION")}}),
    )?;
    send(&mut stdin, &json!({"method": "initialized"}))?;
    request(&mut stdin, &rx, deadline, wait, 2, "hooks/list", json!({"cwds": [cwd]}))
}

/// Writes one JSON-RPC message (a line) to the app-server.
fn send(stdin: &mut std::process::ChildStdin, message: &Value) -> Result<(), String> {
    writeln!(stdin, "{message}")
        .and_then(|()| stdin.flush())
        .map_err(|e| format!("codex app-server stopped reading ({e})"))
}

/// Sends request `id` and waits (until `deadline`) for its answer, passing
/// over notifications; an error answer is an error.
fn request(
    stdin: &mut std::process::ChildStdin,
    rx: &mpsc::Receiver<Value>,
    deadline: Instant,
    wait: Duration,
    id: u64,
    method: &str,
    params: Value,
) -> Result<Value, String> {
    send(stdin, &json!({"id": id, "method": method, "params": params}))?;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(format!(
                "codex app-server did not answer {method} within {} s",
                wait.as_secs()
            ));
        }
        let message = rx.recv_timeout(left).map_err(|e| match e {
            mpsc::RecvTimeoutError::Timeout => {
                format!("codex app-server did not answer {method} within {} s", wait.as_secs())
            }
            mpsc::RecvTimeoutError::Disconnected => format!("codex app-server ended without answering {method}"),
        })?;
        if message.get("id") != Some(&json!(id)) {
            continue; // a notification, or an answer to something else
        }
        if let Some(error) = message.get("error") {
            return Err(format!("codex app-server refused {method}: {error}"));
        }
        return message
            .get("result")
            .cloned()
            .ok_or_else(|| format!("codex app-server answered {method} without a result"));
    }
}

/// What `hooks/list` answered.
#[derive(Debug, Default)]
pub(super) struct Listing {
    /// The hooks Codex loaded.
    pub hooks: Vec<ListedHook>,
    /// Codex's own warnings and errors about the hook files (one it could
    /// not read, for one), as it words them.
    pub problems: Vec<String>,
}

/// The hooks in a `hooks/list` result; an answer of another shape is an
/// error (a Codex whose list Rein does not understand is not one it can
/// say anything about).
fn parse_list(result: &Value) -> Result<Listing, String> {
    let not_understood =
        || format!("codex app-server answered hooks/list with something Rein does not understand: {result}");
    let entries = result
        .get("data")
        .and_then(Value::as_array)
        .ok_or_else(not_understood)?;
    let mut hooks = Vec::new();
    let mut problems = Vec::new();
    for entry in entries {
        for field in ["warnings", "errors"] {
            for problem in entry.get(field).and_then(Value::as_array).into_iter().flatten() {
                problems.push(match problem {
                    Value::String(text) => text.clone(),
                    other => other
                        .get("message")
                        .and_then(Value::as_str)
                        .map_or_else(|| other.to_string(), str::to_owned),
                });
            }
        }
        let listed = entry
            .get("hooks")
            .and_then(Value::as_array)
            .ok_or_else(not_understood)?;
        for hook in listed {
            let text = |field: &str| hook.get(field).and_then(Value::as_str).map(str::to_owned);
            let (Some(key), Some(event), Some(source), Some(hash), Some(trust)) = (
                text("key"),
                text("eventName"),
                text("sourcePath"),
                text("currentHash"),
                text("trustStatus"),
            ) else {
                return Err(not_understood());
            };
            hooks.push(ListedHook {
                key,
                event,
                // A prompt or agent hook has no command: not Rein's.
                command: text("command").unwrap_or_default(),
                source: PathBuf::from(source),
                hash,
                trust,
                blocking_command: text("handlerType").as_deref() == Some("command")
                    && hook.get("async").and_then(Value::as_bool) == Some(false),
                timeout: hook.get("timeoutSec").and_then(Value::as_u64),
                matcher: text("matcher"),
                enabled: hook
                    .get("enabled")
                    .and_then(Value::as_bool)
                    .ok_or_else(not_understood)?,
            });
        }
    }
    Ok(Listing { hooks, problems })
}

/// The `codex` to ask: `--codex-bin`, else the first `codex` on PATH.
pub(super) fn find_codex(given: Option<&Path>) -> Option<PathBuf> {
    if let Some(given) = given {
        return Some(given.to_owned());
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join("codex"))
        .find(|candidate| candidate.is_file())
}

/// Whether `a` and `b` name the same file (compared resolved, so that a
/// symlinked CODEX_HOME or project still matches).
pub(super) fn same_file(a: &Path, b: &Path) -> bool {
    match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

/// The snake-case event name Codex puts in a hook's key
/// (`PreToolUse` → `pre_tool_use`).
pub(super) fn key_event(event: &str) -> String {
    let mut out = String::new();
    for (i, c) in event.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// `config.toml`'s text with `trusted_hash` set for each `(key, hash)`,
/// everything else (comments, order, formatting) kept. A file that is not
/// TOML, or whose `hooks`/`hooks.state` is not a table, is refused.
pub(super) fn with_trust(path: &Path, text: &str, entries: &[(String, String)]) -> anyhow::Result<String> {
    let mut doc = parse_config(path, text)?;
    let state = state_table(path, &mut doc)?;
    for (key, hash) in entries {
        let entry = state.entry(key).or_insert_with(|| {
            let mut table = toml_edit::Table::new();
            table.set_implicit(false);
            toml_edit::Item::Table(table)
        });
        let Some(entry) = entry.as_table_like_mut() else {
            bail!(
                "{}: hooks.state.{key:?} is not a table; the file was left unchanged",
                path.display()
            );
        };
        if entry.get("trusted_hash").and_then(|h| h.as_str()) != Some(hash.as_str()) {
            entry.insert("trusted_hash", toml_edit::value(hash.as_str()));
        }
    }
    Ok(doc.to_string())
}

/// `config.toml`'s text without the `trusted_hash` of each key in `keys`;
/// a trust entry this empties goes, and so do `hooks.state` and `hooks`
/// when they end up empty and were only there for it. Other settings of
/// the same hook (`enabled`) are kept.
pub(super) fn without_trust(path: &Path, text: &str, keys: &[String]) -> anyhow::Result<String> {
    let mut doc = parse_config(path, text)?;
    let Some(hooks) = doc.get_mut("hooks").and_then(|h| h.as_table_like_mut()) else {
        return Ok(text.to_owned());
    };
    let Some(state) = hooks.get_mut("state").and_then(|s| s.as_table_like_mut()) else {
        return Ok(text.to_owned());
    };
    let mut removed = false;
    for key in keys {
        let Some(entry) = state.get_mut(key).and_then(|e| e.as_table_like_mut()) else {
            continue;
        };
        if entry.remove("trusted_hash").is_some() {
            removed = true;
            if entry.is_empty() {
                state.remove(key);
            }
        }
    }
    if !removed {
        return Ok(text.to_owned());
    }
    if state.is_empty() {
        hooks.remove("state");
    }
    if hooks.is_empty() {
        doc.remove("hooks");
    }
    Ok(doc.to_string())
}

fn parse_config(path: &Path, text: &str) -> anyhow::Result<toml_edit::DocumentMut> {
    text.parse::<toml_edit::DocumentMut>()
        .with_context(|| format!("{}: not valid TOML; the file was left unchanged", path.display()))
}

/// `hooks.state` of `doc`, created (as implicit tables, so no empty
/// `[hooks]` header is written) when missing.
fn state_table<'a>(
    path: &Path,
    doc: &'a mut toml_edit::DocumentMut,
) -> anyhow::Result<&'a mut dyn toml_edit::TableLike> {
    let implicit = || {
        let mut table = toml_edit::Table::new();
        table.set_implicit(true);
        toml_edit::Item::Table(table)
    };
    let Some(hooks) = doc.entry("hooks").or_insert_with(implicit).as_table_like_mut() else {
        bail!(
            "{}: `hooks` is not a table; the file was left unchanged",
            path.display()
        );
    };
    let Some(state) = hooks.entry("state").or_insert(implicit()).as_table_like_mut() else {
        bail!(
            "{}: `hooks.state` is not a table; the file was left unchanged",
            path.display()
        );
    };
    Ok(state)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_names_as_in_codex_keys() {
        assert_eq!(key_event("PreToolUse"), "pre_tool_use");
        assert_eq!(key_event("PermissionRequest"), "permission_request");
        assert_eq!(key_event("SessionStart"), "session_start");
    }

    #[test]
    fn trust_entries_keep_the_rest_of_the_file_and_come_out_again() {
        let path = Path::new("config.toml");
        let before = "# my settings\nmodel = \"o3\"  # keep\n\n[features]\nhooks = true\n\n[hooks.state.\"/h/hooks.json:pre_tool_use:0:0\"]\nenabled = true\n";
        let entries = vec![
            ("/h/hooks.json:pre_tool_use:0:0".to_owned(), "sha256:aa".to_owned()),
            ("/h/hooks.json:session_start:0:0".to_owned(), "sha256:bb".to_owned()),
        ];
        let with = with_trust(path, before, &entries).unwrap();
        assert!(with.starts_with("# my settings\nmodel = \"o3\"  # keep\n"), "{with}");
        assert!(
            with.contains("[hooks.state.\"/h/hooks.json:session_start:0:0\"]\ntrusted_hash = \"sha256:bb\""),
            "{with}"
        );
        assert!(!with.contains("[hooks]\n"), "{with}");
        assert_eq!(with_trust(path, &with, &entries).unwrap(), with, "not idempotent");
        let keys: Vec<String> = entries.iter().map(|(k, _)| k.clone()).collect();
        let without = without_trust(path, &with, &keys).unwrap();
        assert_eq!(without, before, "undo does not give the file back");
    }

    #[test]
    fn a_config_that_is_not_toml_or_not_shaped_is_refused() {
        let path = Path::new("config.toml");
        let entries = vec![("k".to_owned(), "sha256:aa".to_owned())];
        for bad in ["[features\nhooks = true\n", "hooks = 3\n", "[hooks]\nstate = \"x\"\n"] {
            assert!(with_trust(path, bad, &entries).is_err(), "{bad}");
        }
    }
}
