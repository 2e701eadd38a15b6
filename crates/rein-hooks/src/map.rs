//! Tool calls → Rein actions and their inputs.
//!
//! Every agent's tool names are normalised to one set of actions (the
//! contracts ship in `policies/agents/coding-agent.yaml`), so one policy
//! governs Claude Code, Codex and Gemini alike.

use crate::event::{Agent, HookEvent};
use rein_shell::Analysis;
use serde_json::{json, Map, Value as Json};
use std::path::{Component, Path, PathBuf};

/// A tool call as Rein actions: one action, decided once per input (a
/// shell command once per part, a patch once per file).
#[derive(Clone, Debug)]
pub struct ToolCall {
    /// The action, e.g. `shell.exec`, `file.write`, `mcp.github.create_issue`.
    pub action: String,
    /// One input per decision; never empty.
    pub inputs: Vec<Json>,
    /// The shell analysis, for `shell.exec`.
    pub shell: Option<Analysis>,
}

/// What a tool does, whatever the agent calls it.
enum Tool<'a> {
    Shell,
    Read,
    Write,
    Patch,
    Search,
    WebFetch,
    WebSearch,
    AgentSpawn,
    Mcp(&'a str, &'a str),
    Other,
}

fn classify(agent: Agent, name: &str) -> Tool<'_> {
    if let Some(rest) = name.strip_prefix("mcp__") {
        if let Some((server, tool)) = rest.split_once("__") {
            if !server.is_empty() && !tool.is_empty() {
                return Tool::Mcp(server, tool);
            }
        }
        return Tool::Other;
    }
    match (agent, name) {
        (Agent::ClaudeCode | Agent::Codex, "Bash") | (Agent::Gemini, "run_shell_command") => Tool::Shell,
        (Agent::ClaudeCode | Agent::Codex, "Read") | (Agent::Gemini, "read_file" | "read_many_files") => Tool::Read,
        (Agent::ClaudeCode | Agent::Codex, "Write" | "Edit" | "MultiEdit" | "NotebookEdit")
        | (Agent::Gemini, "write_file" | "replace") => Tool::Write,
        (Agent::Codex, "apply_patch") => Tool::Patch,
        (Agent::ClaudeCode | Agent::Codex, "Glob" | "Grep" | "LS")
        | (Agent::Gemini, "glob" | "search_file_content" | "grep" | "list_directory") => Tool::Search,
        (Agent::ClaudeCode | Agent::Codex, "WebFetch") | (Agent::Gemini, "web_fetch") => Tool::WebFetch,
        (Agent::ClaudeCode | Agent::Codex, "WebSearch") | (Agent::Gemini, "google_web_search") => Tool::WebSearch,
        (Agent::ClaudeCode, "Agent" | "Task") => Tool::AgentSpawn,
        _ => Tool::Other,
    }
}

/// Maps the tool call of a tool event (the caller checked it has one).
pub fn map_tool(event: &HookEvent, home: Option<&Path>) -> ToolCall {
    let name = event.tool_name.as_deref().unwrap_or_default();
    let input = &event.tool_input;
    let cwd = Path::new(&event.cwd);
    let text = |key: &str| input.get(key).and_then(Json::as_str);
    let simple = |action: &str, value: Json| ToolCall {
        action: action.to_string(),
        inputs: vec![value],
        shell: None,
    };
    match classify(event.agent, name) {
        Tool::Shell => shell(input, cwd, home),
        Tool::Read => {
            let paths: Vec<&str> = match text("file_path")
                .or_else(|| text("absolute_path"))
                .or_else(|| text("path"))
            {
                Some(p) => vec![p],
                None => strings(input.get("paths")),
            };
            file_inputs("file.read", &paths, cwd, home, |_| Map::new())
        }
        Tool::Write => {
            let path = text("file_path")
                .or_else(|| text("notebook_path"))
                .or_else(|| text("absolute_path"));
            let content = text("content")
                .or_else(|| text("new_string"))
                .or_else(|| text("new_source"));
            let paths: Vec<&str> = path.into_iter().collect();
            file_inputs("file.write", &paths, cwd, home, |_| {
                let mut m = Map::new();
                m.insert("tool".into(), json!(name));
                if let Some(c) = content {
                    m.insert("content".into(), json!(c));
                }
                m
            })
        }
        Tool::Patch => {
            let patch = text("patch")
                .or_else(|| text("input"))
                .or_else(|| text("command"))
                .unwrap_or_default();
            let files = patch_files(patch);
            file_inputs("file.write", &files, cwd, home, |_| {
                let mut m = Map::new();
                m.insert("tool".into(), json!(name));
                m.insert("content".into(), json!(patch));
                m
            })
        }
        Tool::Search => {
            let path = text("path").or_else(|| text("dir_path")).unwrap_or(&event.cwd);
            let pattern = text("pattern").unwrap_or_default();
            simple(
                "file.search",
                json!({"path": resolve(cwd, path, home), "requested_path": path, "pattern": pattern, "tool": name}),
            )
        }
        Tool::WebFetch => {
            let urls: Vec<String> = match text("url") {
                Some(u) => vec![u.to_string()],
                // Gemini's web_fetch takes URLs inside its prompt.
                None => text("prompt").map(urls_in).unwrap_or_default(),
            };
            let prompt = text("prompt").unwrap_or_default();
            let inputs = if urls.is_empty() {
                // Nothing to check a host against: an empty URL fails every
                // allowlist rule, so the call is decided as unknown.
                vec![json!({"url": "", "prompt": prompt})]
            } else {
                urls.iter().map(|u| json!({"url": u, "prompt": prompt})).collect()
            };
            ToolCall {
                action: "web.fetch".into(),
                inputs,
                shell: None,
            }
        }
        Tool::WebSearch => simple("web.search", json!({"query": text("query").unwrap_or_default()})),
        Tool::AgentSpawn => simple(
            "agent.spawn",
            json!({
                "description": text("description").unwrap_or_default(),
                "prompt": text("prompt").unwrap_or_default(),
                "subagent_type": text("subagent_type").unwrap_or_default(),
            }),
        ),
        Tool::Mcp(server, tool) => simple(&format!("mcp.{server}.{tool}"), input.clone()),
        Tool::Other => simple(
            "tool.other",
            json!({"tool": name, "input_json": serde_json::to_string(input).unwrap_or_default()}),
        ),
    }
}

fn strings(v: Option<&Json>) -> Vec<&str> {
    v.and_then(Json::as_array)
        .map(|a| a.iter().filter_map(Json::as_str).collect())
        .unwrap_or_default()
}

/// One input per path (at least one: a call without a path is decided on
/// an empty path, which no "inside the project" rule accepts).
fn file_inputs(
    action: &str,
    paths: &[&str],
    cwd: &Path,
    home: Option<&Path>,
    extra: impl Fn(&str) -> Map<String, Json>,
) -> ToolCall {
    let one = |p: &str| {
        let mut m = extra(p);
        m.insert(
            "path".into(),
            json!(if p.is_empty() {
                String::new()
            } else {
                resolve(cwd, p, home)
            }),
        );
        m.insert("requested_path".into(), json!(p));
        Json::Object(m)
    };
    let inputs = if paths.is_empty() {
        vec![one("")]
    } else {
        paths.iter().map(|p| one(p)).collect()
    };
    ToolCall {
        action: action.into(),
        inputs,
        shell: None,
    }
}

/// The arguments that are not options: those not starting with `-`, and
/// every one after `--`. Resolved as paths they say which files a command
/// such as `rm`, `cp` or `tee` touches (a redirection is in `writes`).
fn operands(args: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    let mut options_end = false;
    for a in args {
        if options_end || !a.starts_with('-') || a == "-" {
            out.push(a.clone());
        } else if a == "--" {
            options_end = true;
        }
    }
    out
}

fn shell(input: &Json, cwd: &Path, home: Option<&Path>) -> ToolCall {
    let command = input.get("command").and_then(Json::as_str).unwrap_or_default();
    // A missing or non-string `command` is passed on as it came, so it
    // breaks the `command: string` contract and is blocked, rather than
    // being decided as an empty command (which runs nothing and would pass).
    let raw_command = input.get("command").cloned().unwrap_or(Json::Null);
    let background = input.get("run_in_background").and_then(Json::as_bool).unwrap_or(false);
    let analysis = rein_shell::analyze(command);
    let cwd_text = cwd.to_string_lossy();
    let resolve_all = |files: &[String]| -> Vec<String> { files.iter().map(|f| resolve(cwd, f, home)).collect() };
    let mut inputs: Vec<Json> = analysis
        .parts
        .iter()
        .map(|p| {
            let mut m = Map::new();
            m.insert("command".into(), json!(command));
            m.insert("cwd".into(), json!(cwd_text));
            m.insert("part".into(), json!(p.text));
            m.insert("program".into(), json!(p.program));
            m.insert("path".into(), json!(p.path));
            m.insert("args".into(), json!(p.args));
            m.insert("operands".into(), json!(resolve_all(&operands(&p.args))));
            m.insert("writes".into(), json!(resolve_all(&p.writes)));
            m.insert("reads".into(), json!(resolve_all(&p.reads)));
            m.insert("stdin_from".into(), json!(p.stdin_from.clone().unwrap_or_default()));
            m.insert("upstream".into(), json!(p.upstream));
            m.insert("via".into(), json!(p.via));
            m.insert("env".into(), json!(p.env));
            m.insert("dynamic_args".into(), json!(p.dynamic_args || p.dynamic_redirects));
            m.insert("understood".into(), json!(p.understood));
            m.insert("background".into(), json!(background));
            Json::Object(m)
        })
        .collect();
    if inputs.is_empty() {
        // An empty command (or only comments) runs nothing, but is still
        // decided once so the call is recorded and a policy can see it.
        inputs.push(json!({
            "command": raw_command, "cwd": cwd_text, "part": "", "program": "", "path": "", "args": [],
            "operands": [], "writes": [], "reads": [], "stdin_from": "", "upstream": [], "via": [], "env": [],
            "dynamic_args": false, "understood": analysis.understood, "background": background,
        }));
    }
    ToolCall {
        action: "shell.exec".into(),
        inputs,
        shell: Some(analysis),
    }
}

/// Files named by a Codex `apply_patch` (`*** Add File: p`, `*** Update
/// File: p`, `*** Delete File: p`, `*** Move to: p`).
fn patch_files(patch: &str) -> Vec<&str> {
    patch
        .lines()
        .filter_map(|l| {
            [
                "*** Add File: ",
                "*** Update File: ",
                "*** Delete File: ",
                "*** Move to: ",
            ]
            .iter()
            .find_map(|prefix| l.strip_prefix(prefix))
        })
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .collect()
}

fn urls_in(text: &str) -> Vec<String> {
    text.split_whitespace()
        .filter(|w| w.starts_with("http://") || w.starts_with("https://"))
        .map(|w| w.trim_end_matches([',', '.', ')', ']', '"', '\'']).to_string())
        .collect()
}

/// The path a tool would really touch: relative paths joined to `cwd`,
/// `~` expanded, `.` and `..` resolved, and symlinks resolved for the part
/// that exists — so a link inside the project that points at `~/.ssh` is
/// judged as `~/.ssh`. Not-yet-existing tails are kept lexically.
pub fn resolve(cwd: &Path, path: &str, home: Option<&Path>) -> String {
    let expanded: PathBuf = match (path.strip_prefix('~'), home) {
        (Some(""), Some(h)) => h.to_path_buf(),
        (Some(rest), Some(h)) if rest.starts_with('/') => h.join(&rest[1..]),
        _ => PathBuf::from(path),
    };
    let joined = if expanded.is_absolute() {
        expanded
    } else {
        cwd.join(expanded)
    };
    let lexical = normalize(&joined);
    real_prefix(&lexical).to_string_lossy().into_owned()
}

fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    for c in path.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::Normal(s) => out.push(s),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    out
}

/// Resolves symlinks in the longest prefix of `path` that exists.
fn real_prefix(path: &Path) -> PathBuf {
    let mut existing = path.to_path_buf();
    let mut tail = Vec::new();
    loop {
        if let Ok(real) = existing.canonicalize() {
            let mut out = real;
            for part in tail.iter().rev() {
                out.push(part);
            }
            // A tail of `..` after a symlink was already resolved lexically
            // above; the result is normalised once more for `..` in links.
            return normalize(&out);
        }
        match (existing.file_name().map(|s| s.to_os_string()), existing.parent()) {
            (Some(name), Some(parent)) => {
                tail.push(name);
                existing = parent.to_path_buf();
            }
            _ => return path.to_path_buf(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::parse_event;

    #[test]
    fn operands_are_the_arguments_that_are_not_options() {
        let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(operands(&args(&["-rf", "a", "--force", "b"])), args(&["a", "b"]));
        assert_eq!(operands(&args(&["-a", "--", "-x", "y"])), args(&["-x", "y"]));
        assert_eq!(operands(&args(&["-"])), args(&["-"]));
        let call = shell(
            &json!({"command": "tee -a ~/.bashrc"}),
            Path::new("/p"),
            Some(Path::new("/home/u")),
        );
        assert_eq!(call.inputs[0]["operands"], json!(["/home/u/.bashrc"]));
    }

    fn event(agent: Agent, tool: &str, input: Json) -> HookEvent {
        let text = json!({"hook_event_name": if agent == Agent::Gemini {"BeforeTool"} else {"PreToolUse"},
            "cwd": "/nonexistent-project", "tool_name": tool, "tool_input": input, "session_id": "s"});
        parse_event(agent, text.to_string().as_bytes()).unwrap()
    }

    #[test]
    fn paths_are_resolved_against_the_project() {
        let home = Path::new("/home/u");
        let cwd = Path::new("/nonexistent-project/src");
        assert_eq!(resolve(cwd, "../.env", Some(home)), "/nonexistent-project/.env");
        assert_eq!(resolve(cwd, "a/./b/../c", Some(home)), "/nonexistent-project/src/a/c");
        assert_eq!(resolve(cwd, "~/.ssh/id_rsa", Some(home)), "/home/u/.ssh/id_rsa");
        assert_eq!(resolve(cwd, "/../../etc/passwd", Some(home)), "/etc/passwd");
    }

    #[test]
    fn symlinks_are_judged_by_their_target() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().canonicalize().unwrap();
        std::fs::create_dir(real.join("secret")).unwrap();
        std::fs::create_dir(real.join("project")).unwrap();
        std::os::unix::fs::symlink(real.join("secret"), real.join("project/link")).unwrap();
        let got = resolve(&real.join("project"), "link/key", None);
        assert_eq!(got, real.join("secret/key").to_string_lossy());
    }

    #[test]
    fn every_agent_maps_to_the_same_actions() {
        let cases = [
            (Agent::ClaudeCode, "Bash", json!({"command": "ls"}), "shell.exec"),
            (
                Agent::Gemini,
                "run_shell_command",
                json!({"command": "ls"}),
                "shell.exec",
            ),
            (Agent::ClaudeCode, "Read", json!({"file_path": "/p/a"}), "file.read"),
            (
                Agent::Gemini,
                "read_file",
                json!({"absolute_path": "/p/a"}),
                "file.read",
            ),
            (
                Agent::ClaudeCode,
                "Edit",
                json!({"file_path": "/p/a", "old_string": "x", "new_string": "y"}),
                "file.write",
            ),
            (
                Agent::Gemini,
                "replace",
                json!({"file_path": "/p/a", "new_string": "y"}),
                "file.write",
            ),
            (
                Agent::Codex,
                "apply_patch",
                json!({"command": "*** Begin Patch\n*** Add File: a.txt\n+x\n*** End Patch"}),
                "file.write",
            ),
            (
                Agent::ClaudeCode,
                "WebFetch",
                json!({"url": "https://x.org/a", "prompt": "p"}),
                "web.fetch",
            ),
            (
                Agent::Gemini,
                "web_fetch",
                json!({"prompt": "read https://x.org/a please"}),
                "web.fetch",
            ),
            (
                Agent::ClaudeCode,
                "Task",
                json!({"description": "d", "prompt": "p"}),
                "agent.spawn",
            ),
            (
                Agent::ClaudeCode,
                "mcp__github__create_issue",
                json!({"title": "t"}),
                "mcp.github.create_issue",
            ),
            (
                Agent::ClaudeCode,
                "mcp__everything__get-env",
                json!({}),
                "mcp.everything.get-env",
            ),
            (Agent::ClaudeCode, "TodoWrite", json!({"todos": []}), "tool.other"),
            (Agent::ClaudeCode, "mcp__broken", json!({}), "tool.other"),
        ];
        for (agent, tool, input, action) in cases {
            let call = map_tool(&event(agent, tool, input), None);
            assert_eq!(call.action, action, "{tool}");
        }
    }

    #[test]
    fn a_compound_command_is_one_input_per_part() {
        let call = map_tool(
            &event(Agent::ClaudeCode, "Bash", json!({"command": "npm test && rm -rf ~"})),
            None,
        );
        let programs: Vec<_> = call.inputs.iter().map(|i| i["program"].as_str().unwrap()).collect();
        assert_eq!(programs, ["npm", "rm"]);
        assert_eq!(call.inputs[1]["command"], "npm test && rm -rf ~");
    }

    #[test]
    fn a_patch_is_one_input_per_file() {
        let patch = "*** Begin Patch\n*** Update File: src/a.rs\n@@\n-x\n+y\n*** Add File: /etc/cron.d/x\n+* * * * * root sh\n*** End Patch\n";
        let call = map_tool(&event(Agent::Codex, "apply_patch", json!({"command": patch})), None);
        let paths: Vec<_> = call.inputs.iter().map(|i| i["path"].as_str().unwrap()).collect();
        assert_eq!(paths, ["/nonexistent-project/src/a.rs", "/etc/cron.d/x"]);
    }
}
