//! Tool calls → Rein actions and their inputs.
//!
//! Every agent's tool names are normalised to one set of actions (the
//! contracts ship in `policies/agents/coding-agent.yaml`), so one policy
//! governs Claude Code, Codex, Gemini and Cursor alike. Which tool does
//! what is each agent's table ([`crate::table`]), not code.

use crate::event::HookEvent;
use crate::table::{self, AgentTable, Does, ToolEntry};
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

/// Most parts one shell command is decided as ([`rein_shell::MAX_PARTS`]):
/// every part is a decision and an audit record, so the count of parts
/// bounds what one event can write. The analysis already ends a longer line
/// with a part that is not understood; more would be cut here the same way.
pub const MAX_PARTS: usize = rein_shell::MAX_PARTS;

/// Most operands (or redirection targets) of one part given to rules; past
/// it the part is not understood (and the list is cut). Each operand is
/// resolved to an absolute path, so a line of many short words would
/// otherwise grow by the length of the directory per word.
pub const MAX_PATHS_PER_PART: usize = 256;

/// Most bytes of resolved paths (`dirs`, `operands`, `writes`, `reads`)
/// given to rules for one command line, all parts together. Each path is a
/// directory joined to a word, so a short line can name long paths many
/// times (16 possible directories of 4 KB, 16 one-letter words per part,
/// 35 parts: 9 KB of command wrote 38 MB of audit records). Past it, the
/// lists of the remaining parts are cut and those parts are not understood.
pub const MAX_PATH_BYTES_PER_EVENT: usize = 256 * 1024;

/// The whole command line is kept in the first part's `command`; later
/// parts carry at most this many bytes of it (and a note). The line is then
/// stored once per event, not once per part.
pub const COMMAND_REPEAT_BYTES: usize = 1024;

/// What a tool does, whatever the agent calls it.
#[derive(Clone, Copy)]
enum Tool<'a> {
    Shell,
    Read,
    Write,
    Patch,
    /// Lists or searches files.
    Search(SearchKind),
    WebFetch,
    WebSearch,
    AgentSpawn,
    Internal,
    Mcp(&'a str, &'a str),
    Unknown,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum SearchKind {
    /// Names matching a glob (`Glob`, `glob`).
    Glob,
    /// File content matching a pattern (`Grep`, `search_file_content`).
    Grep,
    /// A directory's entries (`LS`, `list_directory`).
    List,
    /// The content of files named by paths and globs (`read_many_files`).
    ReadMany,
}

/// The action of a tool Rein does not know, or of a known tool called with
/// a field its table does not know (see [`crate::table::ToolEntry::fields`]).
pub const UNKNOWN_TOOL: &str = "agent.unknown_tool";

/// The action of a built-in tool with no effect outside the agent (a to-do
/// list, a question to the user): input `{tool}`.
pub const INTERNAL_TOOL: &str = "agent.internal";

/// What the tool `name` of `table` does, and its table entry (the fields
/// it is known to take and how it runs), if it has one.
fn classify<'a>(
    table: Option<&'a AgentTable>,
    event: &'a HookEvent,
    name: &'a str,
) -> (Tool<'a>, Option<&'a ToolEntry>) {
    let Some(table) = table else {
        return (Tool::Unknown, None);
    };
    if table.looks_like_mcp(name) {
        let named = match table.mcp.context {
            true => table.mcp_tool_in_context(name, event.mcp_tool.as_ref()),
            false => table.mcp_tool(name),
        };
        return match named {
            Some((server, tool)) => (Tool::Mcp(server, tool), None),
            None => (Tool::Unknown, None),
        };
    }
    let Some(entry) = table.tools.get(name) else {
        return (Tool::Unknown, None);
    };
    let tool = match entry.does {
        Does::Shell => Tool::Shell,
        Does::Read => Tool::Read,
        Does::Write => Tool::Write,
        Does::Patch => Tool::Patch,
        Does::Glob => Tool::Search(SearchKind::Glob),
        Does::Grep => Tool::Search(SearchKind::Grep),
        Does::List => Tool::Search(SearchKind::List),
        Does::ReadMany => Tool::Search(SearchKind::ReadMany),
        Does::WebFetch => Tool::WebFetch,
        Does::WebSearch => Tool::WebSearch,
        Does::AgentSpawn => Tool::AgentSpawn,
        Does::Internal => Tool::Internal,
        Does::Unknown => Tool::Unknown,
    };
    (tool, Some(entry))
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
    let (tool, entry) = classify(table::table(event.agent).ok(), event, name);
    let known: &[&str] = entry.map_or(&[], |e| &e.fields);
    if !matches!(tool, Tool::Mcp(..) | Tool::Unknown | Tool::Internal) {
        let unmapped: Vec<&str> = input
            .as_object()
            .map(|m| {
                m.keys()
                    .map(String::as_str)
                    .filter(|k| !known.iter().any(|f| f == k))
                    .collect()
            })
            .unwrap_or_default();
        if !unmapped.is_empty() {
            return simple(UNKNOWN_TOOL, unknown_input(name, input, &unmapped));
        }
        let twice = spelled_twice(tool, input);
        if !twice.is_empty() {
            return simple(UNKNOWN_TOOL, unknown_input(name, input, &twice));
        }
    }
    match tool {
        Tool::Shell => {
            // Gemini runs the command in `dir_path` (0.61; `directory`
            // before), relative to the project; Cursor in `cwd` (empty: the
            // project). Two of them at once: which is meant cannot be told.
            let dirs: Vec<&str> = ["dir_path", "directory", "cwd"]
                .into_iter()
                .filter(|k| text(k).is_some_and(|d| !d.is_empty()))
                .collect();
            if dirs.len() > 1 {
                return simple(UNKNOWN_TOOL, unknown_input(name, input, &dirs));
            }
            let dir = dirs
                .first()
                .and_then(|k| text(k))
                .map(|d| PathBuf::from(resolve(cwd, d, home)));
            let mut call = shell(input, dir.as_deref().unwrap_or(cwd), home);
            // A folder the pinned release ignores (its table's `ignored`):
            // the command may run there (an older release) or in the
            // project (this one), so it is decided in both.
            let ignored = entry.is_some_and(|e| dirs.first().is_some_and(|k| e.ignored.contains(k)));
            if ignored {
                call.inputs.extend(shell(input, cwd, home).inputs);
            }
            // A tool that always runs its command in the background
            // (Claude Code's `Monitor`) says so in its table.
            let always_background = entry.is_some_and(|e| e.background);
            if always_background {
                call.inputs.iter_mut().for_each(|i| i["background"] = json!(true));
            }
            // Asked only to run it beyond the sandbox (Codex's
            // PermissionRequest): judged as a call that leaves it.
            if event.leaves_sandbox {
                call.inputs.iter_mut().for_each(|i| i["disable_sandbox"] = json!(true));
            }
            call
        }
        Tool::Read => {
            let mut paths: Vec<&str> = text("file_path")
                .or_else(|| text("absolute_path"))
                .or_else(|| text("notebook_path"))
                // Codex's `view_image`.
                .or_else(|| text("path"))
                .into_iter()
                .collect();
            // Files Cursor attaches to a read (rules, other files) are read
            // too: each is decided. One that names no path is read as an
            // empty path, which no "inside the project" rule accepts.
            if let Some(attachments) = input.get("attachments") {
                match attachments.as_array() {
                    Some(list) => paths.extend(list.iter().map(|a| {
                        a.get("file_path")
                            .or_else(|| a.get("filePath"))
                            .and_then(Json::as_str)
                            .unwrap_or_default()
                    })),
                    None if attachments.is_null() => {}
                    None => paths.push(""),
                }
            }
            file_inputs("file.read", &paths, cwd, home, |_| Map::new())
        }
        Tool::Write => {
            let path = text("file_path")
                .or_else(|| text("notebook_path"))
                .or_else(|| text("absolute_path"));
            // What will be in the file: every text the call writes
            // (MultiEdit's edits joined by newlines).
            let content: Option<String> = match input.get("edits").and_then(Json::as_array) {
                Some(edits) => Some(
                    edits
                        .iter()
                        .filter_map(|e| e.get("new_string").and_then(Json::as_str))
                        .collect::<Vec<_>>()
                        .join("\n"),
                ),
                None => text("content")
                    .or_else(|| text("new_string"))
                    .or_else(|| text("new_source"))
                    .map(str::to_string),
            };
            let paths: Vec<&str> = path.into_iter().collect();
            file_inputs("file.write", &paths, cwd, home, |_| {
                let mut m = Map::new();
                m.insert("tool".into(), json!(name));
                if let Some(c) = &content {
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
        Tool::Search(kind) => simple("file.search", search_input(kind, name, input, cwd, home)),
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
        Tool::WebSearch => simple(
            "web.search",
            json!({
                "query": text("query").unwrap_or_default(),
                "allowed_domains": strings(input.get("allowed_domains")),
                "blocked_domains": strings(input.get("blocked_domains")),
            }),
        ),
        Tool::AgentSpawn => simple(
            "agent.spawn",
            json!({
                "description": text("description").unwrap_or_default(),
                // Codex's `spawn_agent` takes its task as `message`.
                "prompt": text("prompt").or_else(|| text("message")).unwrap_or_default(),
                "subagent_type": text("subagent_type").or_else(|| text("agent_name")).unwrap_or_default(),
                "model": text("model").unwrap_or_default(),
                "mode": text("mode").unwrap_or_default(),
                "isolation": text("isolation").unwrap_or_default(),
                "background": switched_on(input, "run_in_background"),
            }),
        ),
        Tool::Mcp(server, tool) => simple(&format!("mcp.{server}.{tool}"), input.clone()),
        Tool::Internal => simple(INTERNAL_TOOL, json!({"tool": name})),
        Tool::Unknown => simple(UNKNOWN_TOOL, unknown_input(name, input, &[])),
    }
}

/// The fields below are one input spelled as different agents and
/// releases spell it, read by the mapping in this order (Gemini 0.61's
/// `dir_path` was `path`; its `include_pattern` was `include`). A call
/// giving one input twice is read by Rein from the first spelling and by
/// the running agent from the one it knows, which may be the other: Rein
/// would judge another call than the one that runs. Such a call is not
/// understood, whatever the two values (naming the fields).
const SPELLINGS: &[(&str, &[&str])] = &[
    ("read", &["file_path", "absolute_path", "notebook_path", "path"]),
    ("write", &["file_path", "notebook_path", "absolute_path"]),
    ("write", &["edits", "content", "new_string", "new_source"]),
    ("patch", &["patch", "input", "command"]),
    ("search", &["path", "dir_path", "file_path"]),
    ("search", &["glob", "include", "include_pattern"]),
    ("agent_spawn", &["prompt", "message"]),
    ("agent_spawn", &["subagent_type", "agent_name"]),
];

/// The fields of `input` that spell one input twice (see [`SPELLINGS`]);
/// a shell's directory is checked where it is read.
fn spelled_twice(tool: Tool, input: &Json) -> Vec<&'static str> {
    let kind = match tool {
        Tool::Read => "read",
        Tool::Write => "write",
        Tool::Patch => "patch",
        Tool::Search(_) => "search",
        Tool::AgentSpawn => "agent_spawn",
        _ => return Vec::new(),
    };
    let given = |k: &&str| input.get(*k).is_some_and(|v| !v.is_null());
    SPELLINGS
        .iter()
        .filter(|(k, _)| *k == kind)
        .map(|(_, fields)| fields.iter().copied().filter(given).collect::<Vec<_>>())
        .filter(|present| present.len() > 1)
        .flatten()
        .collect()
}

/// `agent.unknown_tool`: a tool Rein does not map, or a mapped tool called
/// with a field the mapping does not know (`unmapped_fields`).
fn unknown_input(name: &str, input: &Json, unmapped: &[&str]) -> Json {
    json!({"tool": name, "input_json": serde_json::to_string(input).unwrap_or_default(), "unmapped_fields": unmapped})
}

/// `file.search`: where the tool looks (`path`), and `globs`, absolute glob
/// patterns covering every file whose name or content it may return. A
/// filter the patterns cannot express (Grep's `type`) widens them to the
/// whole tree, never narrows them.
fn search_input(kind: SearchKind, name: &str, input: &Json, cwd: &Path, home: Option<&Path>) -> Json {
    let text = |key: &str| input.get(key).and_then(Json::as_str);
    // Cursor's Grep names where it searches `file_path`.
    let requested = text("path")
        .or_else(|| text("dir_path"))
        .or_else(|| text("file_path"))
        .unwrap_or_default();
    let base = if requested.is_empty() {
        resolve(cwd, ".", home)
    } else {
        resolve(cwd, requested, home)
    };
    let under = |pattern: &str| -> String {
        let pattern = pattern.trim();
        if pattern.starts_with('/') || pattern.starts_with('~') {
            resolve_glob(cwd, pattern, home)
        } else {
            resolve_glob(Path::new(&base), pattern, home)
        }
    };
    // A path may name a file or a directory: both readings are covered.
    let tree = vec![base.clone(), format!("{}/**", base.trim_end_matches('/'))];
    let pattern = text("pattern").unwrap_or_default();
    let (globs, content): (Vec<String>, bool) = match kind {
        SearchKind::Glob => (vec![under(pattern)], false),
        SearchKind::List => (vec![base.clone(), format!("{}/*", base.trim_end_matches('/'))], false),
        SearchKind::Grep => {
            // ripgrep's `--glob` without a `/` matches a name at any depth.
            let filter = text("glob")
                .or_else(|| text("include"))
                .or_else(|| text("include_pattern"))
                .filter(|g| !g.trim().is_empty());
            let globs = match filter {
                // `!x` excludes x: every other file is searched.
                Some(g) if g.trim_start().starts_with('!') => tree,
                Some(g) if !g.contains('/') => vec![base.clone(), under(&format!("**/{g}"))],
                Some(g) => vec![base.clone(), under(g)],
                None => tree,
            };
            (globs, true)
        }
        SearchKind::ReadMany => {
            let mut globs: Vec<String> = strings(input.get("paths"))
                .into_iter()
                .chain(strings(input.get("include")))
                .flat_map(|p| {
                    let g = under(p);
                    [g.clone(), format!("{}/**", g.trim_end_matches('/'))]
                })
                .collect();
            if globs.is_empty() {
                globs = tree;
            }
            (globs, true)
        }
    };
    json!({
        "path": base,
        "requested_path": requested,
        "pattern": pattern,
        "tool": name,
        "globs": globs,
        "content": content,
    })
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

/// `files` resolved in every directory the part may run in (`dirs`,
/// already absolute): a part after a `cd` that may or may not have taken
/// effect lists the file in both places. At most [`MAX_PATHS_PER_PART`]
/// paths; `false` when some were cut.
fn resolve_in(dirs: &[PathBuf], files: &[String], home: Option<&Path>) -> (Vec<String>, bool) {
    let mut out: Vec<String> = Vec::new();
    // Every pair costs file-system lookups: past the bound (even of
    // repeated paths) the part is not understood rather than slow.
    let pairs = files.len().saturating_mul(dirs.len());
    let files = match pairs > 4 * MAX_PATHS_PER_PART {
        true => &files[..(4 * MAX_PATHS_PER_PART / dirs.len().max(1)).min(files.len())],
        false => files,
    };
    if files.len().saturating_mul(dirs.len()) < pairs {
        // The rest is left out: the part is not understood.
        let (out, _) = resolve_in(dirs, files, home);
        return (out, false);
    }
    for f in files {
        for d in dirs {
            // A program opening `link/../x` follows the link before `..`;
            // both readings are given when they differ.
            for r in [resolve(d, f, home), resolve_physical(d, f, home)] {
                if !out.contains(&r) {
                    if out.len() == MAX_PATHS_PER_PART {
                        return (out, false);
                    }
                    out.push(r);
                }
            }
        }
    }
    (out, true)
}

/// The directories a part may run in, absolute: the shell analysis gives
/// them relative to the command's start directory (`""` = unchanged).
fn part_dirs(part: &rein_shell::Part, cwd: &Path, home: Option<&Path>) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = Vec::new();
    for d in part_dir_texts(part) {
        let r = PathBuf::from(if d.is_empty() {
            resolve(cwd, ".", home)
        } else {
            resolve(cwd, &d, home)
        });
        if !out.contains(&r) {
            out.push(r);
        }
    }
    if out.is_empty() {
        out.push(PathBuf::from(resolve(cwd, ".", home)));
    }
    out
}

/// The directory texts of a part.
fn part_dir_texts(part: &rein_shell::Part) -> Vec<String> {
    part.dirs.clone()
}

/// Whether the switch `key` of `input` is on: anything but absent, null or
/// `false`. An agent may coerce `"true"` or `1` (Claude Code reads the
/// model's `"true"` as true) and run the call so; Rein never reads a switch
/// as off that the agent may read as on.
fn switched_on(input: &Json, key: &str) -> bool {
    input.get(key).is_some_and(|v| !v.is_null() && *v != Json::Bool(false))
}

fn shell(input: &Json, cwd: &Path, home: Option<&Path>) -> ToolCall {
    let command = input.get("command").and_then(Json::as_str).unwrap_or_default();
    // A missing or non-string `command` is passed on as it came, so it
    // breaks the `command: string` contract and is blocked, rather than
    // being decided as an empty command (which runs nothing and would pass).
    let raw_command = input.get("command").cloned().unwrap_or(Json::Null);
    let background = switched_on(input, "run_in_background") || switched_on(input, "is_background");
    let no_sandbox = switched_on(input, "dangerouslyDisableSandbox");
    // At most `MAX_PARTS` parts: the analysis ends a longer line with one
    // part that is not understood.
    let analysis = rein_shell::analyze(command);
    let cwd_text = resolve(cwd, ".", home);
    let mut path_bytes_left = MAX_PATH_BYTES_PER_EVENT;
    // Once a part may have made symlinks, a later part's path that does
    // not exist yet may be one of them, pointing anywhere.
    let mut links_may_exist = false;
    let mut inputs: Vec<Json> = analysis
        .parts
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let mut dirs = part_dirs(p, cwd, home);
            let (mut operands, all_operands) = resolve_in(&dirs, &p.operands, home);
            let (mut writes, all_writes) = resolve_in(&dirs, &p.writes, home);
            let (mut reads, all_reads) = resolve_in(&dirs, &p.reads, home);
            let bytes: usize = dirs.iter().map(|d| d.as_os_str().len()).sum::<usize>()
                + [&operands, &writes, &reads]
                    .iter()
                    .flat_map(|l| l.iter())
                    .map(String::len)
                    .sum::<usize>();
            let within_budget = bytes <= path_bytes_left;
            if within_budget {
                path_bytes_left -= bytes;
            } else {
                // Nothing of this part's paths is trusted: it is asked.
                path_bytes_left = 0;
                dirs.clear();
                operands.clear();
                writes.clear();
                reads.clear();
            }
            let unseen_path = links_may_exist
                && [&operands, &writes, &reads]
                    .iter()
                    .flat_map(|l| l.iter())
                    .any(|path| std::fs::symlink_metadata(path).is_err());
            links_may_exist |= may_make_links(p);
            let understood = p.understood && all_operands && all_writes && all_reads && within_budget && !unseen_path;
            let mut m = Map::new();
            m.insert("command".into(), json!(command_of_part(command, i)));
            m.insert("cwd".into(), json!(cwd_text));
            m.insert(
                "dirs".into(),
                json!(dirs.iter().map(|d| d.to_string_lossy()).collect::<Vec<_>>()),
            );
            m.insert("part".into(), json!(p.text));
            m.insert("program".into(), json!(p.program));
            m.insert("path".into(), json!(p.path));
            m.insert("args".into(), json!(p.args));
            m.insert("operands".into(), json!(operands));
            m.insert("writes".into(), json!(writes));
            m.insert("reads".into(), json!(reads));
            m.insert("stdin_from".into(), json!(p.stdin_from.clone().unwrap_or_default()));
            m.insert("upstream".into(), json!(p.upstream));
            m.insert("via".into(), json!(p.via));
            m.insert("env".into(), json!(p.env));
            m.insert("dynamic_args".into(), json!(p.dynamic_args || p.dynamic_redirects));
            m.insert("understood".into(), json!(understood));
            m.insert("known".into(), json!(p.known));
            m.insert("background".into(), json!(background));
            m.insert("disable_sandbox".into(), json!(no_sandbox));
            Json::Object(m)
        })
        .collect();
    if inputs.is_empty() {
        // An empty command (or only comments) runs nothing, but is still
        // decided once so the call is recorded and a policy can see it.
        inputs.push(json!({
            "command": raw_command, "cwd": cwd_text, "dirs": [cwd_text], "part": "", "program": "", "path": "",
            "args": [], "operands": [], "writes": [], "reads": [], "stdin_from": "", "upstream": [], "via": [],
            "env": [], "dynamic_args": false, "understood": analysis.understood, "known": true, "background": background,
            "disable_sandbox": no_sandbox,
        }));
    }
    ToolCall {
        action: "shell.exec".into(),
        inputs,
        shell: Some(analysis),
    }
}

/// Whether a part may create symlinks, or files that later parts of the
/// same command open through them: `ln`, unpacking and copying tools (an
/// archive or a tree may hold links), git changing the work tree (a commit
/// may hold links), and any program Rein does not know. `cd src && ln -s
/// ../.bashrc ../l && echo x >> ../l` writes `~/.bashrc`, and `tar xf
/// a.tar && cat k` may read a key: where a later path does not exist when
/// the command is judged, it is not understood.
fn may_make_links(p: &rein_shell::Part) -> bool {
    const GIT_KEEPS_TREE: &[&str] = &[
        "status",
        "diff",
        "log",
        "show",
        "branch",
        "rev-parse",
        "ls-files",
        "blame",
        "grep",
        "describe",
        "add",
        "commit",
        "fetch",
        "push",
        "tag",
        "remote",
        "config",
        "init",
    ];
    match p.program.as_str() {
        "ln" | "tar" | "bsdtar" | "unzip" | "cpio" | "pax" | "7z" | "7za" | "7zr" | "patch" | "cp" | "mv" | "rsync"
        | "install" => true,
        "git" => !p
            .args
            .iter()
            .find(|a| !a.starts_with('-'))
            .is_some_and(|sub| GIT_KEEPS_TREE.contains(&sub.as_str())),
        _ => !p.known,
    }
}

/// The `command` given to part `index`: the whole line for the first part;
/// for the others, the line when it is short, else its start and a note
/// (rules deciding on the whole line see it in the first part, and the
/// event is refused if any part is).
fn command_of_part(command: &str, index: usize) -> String {
    if index == 0 || command.len() <= COMMAND_REPEAT_BYTES {
        return command.to_string();
    }
    let mut end = COMMAND_REPEAT_BYTES;
    while !command.is_char_boundary(end) {
        end -= 1;
    }
    format!(
        "{}… [{} bytes in all; the whole command is in the first part]",
        &command[..end],
        command.len()
    )
}

/// Files named by a Codex `apply_patch` (`*** Add File: p`, `*** Update
/// File: p`, `*** Delete File: p`, `*** Move to: p`). Codex's parser trims
/// a hunk's header line (`  *** Add File: x` adds `x`), so every line is
/// read trimmed: a context line that looks like a header only adds a file
/// to decide, never hides one.
fn patch_files(patch: &str) -> Vec<&str> {
    patch
        .lines()
        .map(str::trim)
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
    let lexical = normalize(&joined(cwd, path, home));
    real_prefix(&lexical).to_string_lossy().into_owned()
}

/// As [`resolve`], for a glob pattern (`~/.ss?/id_*`): symlinks are
/// resolved only in the literal directories before the first component
/// holding a glob character; the rest is kept as written, normalised.
pub fn resolve_glob(cwd: &Path, pattern: &str, home: Option<&Path>) -> String {
    let lexical = normalize(&joined(cwd, pattern, home));
    let mut literal = PathBuf::from("/");
    let mut rest: Vec<&std::ffi::OsStr> = Vec::new();
    for c in lexical.components() {
        if let Component::Normal(s) = c {
            let globby = s.to_string_lossy().contains(['*', '?', '[', '{']);
            if globby || !rest.is_empty() {
                rest.push(s);
            } else {
                literal.push(s);
            }
        }
    }
    let mut out = real_prefix(&literal);
    for s in rest {
        out.push(s);
    }
    out.to_string_lossy().into_owned()
}

/// `path` with `~` and `~user` expanded, joined to `cwd` if relative.
fn joined(cwd: &Path, path: &str, home: Option<&Path>) -> PathBuf {
    let expanded: PathBuf = match path.strip_prefix('~') {
        Some(rest) => {
            let (user, tail) = rest.split_once('/').unwrap_or((rest, ""));
            match (user, home) {
                ("", Some(h)) => h.join(tail),
                // Another user's home: beside this one (`/home/u` →
                // `/home/other`), `/root` for root. Judged as outside the
                // project either way.
                (user, _)
                    if !user.is_empty() && user.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c)) =>
                {
                    let base = match (user, home.and_then(Path::parent)) {
                        ("root", _) => PathBuf::from("/root"),
                        (_, Some(parent)) => parent.join(user),
                        (_, None) => PathBuf::from("/home").join(user),
                    };
                    base.join(tail)
                }
                _ => PathBuf::from(path),
            }
        }
        None => PathBuf::from(path),
    };
    if expanded.is_absolute() {
        expanded
    } else {
        cwd.join(expanded)
    }
}

/// `path` resolved as the kernel opens it: each `..` applies to the
/// directory reached so far with its symlinks followed (`link/../x` is
/// beside the link's target, not beside the link).
pub fn resolve_physical(cwd: &Path, path: &str, home: Option<&Path>) -> String {
    let mut out = PathBuf::from("/");
    for c in joined(cwd, path, home).components() {
        match c {
            Component::ParentDir => {
                if let Ok(real) = out.canonicalize() {
                    out = real;
                }
                out.pop();
            }
            Component::Normal(s) => out.push(s),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    real_prefix(&out).to_string_lossy().into_owned()
}

/// `path` joined to `dir` and normalised lexically (no file-system
/// lookup), as text; `~` is not expanded.
pub fn normalize_text(dir: &Path, path: &str) -> String {
    normalize(&joined(dir, path, None)).to_string_lossy().into_owned()
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
    use crate::event::{parse_event, Agent};

    #[test]
    fn operands_are_resolved_where_the_part_runs() {
        let home = Some(Path::new("/home/u"));
        let call = shell(&json!({"command": "tee -a ~/.bashrc"}), Path::new("/p"), home);
        assert_eq!(call.inputs[0]["operands"], json!(["/home/u/.bashrc"]));
        let call = shell(&json!({"command": "rm -rf build/../.git"}), Path::new("/p"), home);
        assert_eq!(call.inputs[0]["operands"], json!(["/p/.git"]));
        assert_eq!(call.inputs[0]["args"], json!(["-rf", "build/../.git"]), "args stay raw");
        let call = shell(&json!({"command": "cd /etc && echo x > passwd"}), Path::new("/p"), home);
        assert_eq!(call.inputs[1]["writes"], json!(["/etc/passwd"]));
        assert_eq!(call.inputs[1]["dirs"], json!(["/etc"]));
        let call = shell(&json!({"command": "cd ~/.ssh; cat id_ed25519"}), Path::new("/p"), home);
        let cat = &call.inputs[1];
        assert_eq!(cat["operands"], json!(["/home/u/.ssh/id_ed25519", "/p/id_ed25519"]));
        let call = shell(&json!({"command": "cd \"$X\" && rm -rf y"}), Path::new("/p"), home);
        assert_eq!(call.inputs.last().unwrap()["understood"], json!(false));
    }

    #[test]
    fn a_link_followed_by_dotdot_is_resolved_both_ways() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().canonicalize().unwrap();
        std::fs::create_dir_all(real.join("etc/ssh")).unwrap();
        std::fs::create_dir(real.join("project")).unwrap();
        std::os::unix::fs::symlink(real.join("etc/ssh"), real.join("project/link")).unwrap();
        let call = shell(&json!({"command": "rm link/../x"}), &real.join("project"), None);
        let got = call.inputs[0]["operands"].clone();
        let want = json!([
            real.join("project/x").to_string_lossy(),
            real.join("etc/x").to_string_lossy()
        ]);
        assert_eq!(got, want);
    }

    #[test]
    fn a_long_line_is_stored_once() {
        let line = "ls;".repeat(500);
        let call = shell(&json!({"command": line}), Path::new("/p"), None);
        assert!(call.inputs.len() <= MAX_PARTS);
        assert_eq!(call.inputs[0]["command"], json!(line));
        let later = call.inputs[1]["command"].as_str().unwrap();
        assert!(later.len() < COMMAND_REPEAT_BYTES + 100, "{}", later.len());
        assert_eq!(call.inputs.last().unwrap()["understood"], json!(false));
    }

    fn event(agent: Agent, tool: &str, input: Json) -> HookEvent {
        let name = match agent {
            Agent::Gemini => "BeforeTool",
            Agent::Cursor => "preToolUse",
            _ => "PreToolUse",
        };
        let text = json!({"hook_event_name": name,
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
            (Agent::ClaudeCode, "TodoWrite", json!({"todos": []}), "agent.internal"),
            (Agent::ClaudeCode, "mcp__broken", json!({}), "agent.unknown_tool"),
            (Agent::ClaudeCode, "SomeFutureTool", json!({}), "agent.unknown_tool"),
            (
                Agent::ClaudeCode,
                "Workflow",
                json!({"script": "x"}),
                "agent.unknown_tool",
            ),
            (
                Agent::Cursor,
                "Shell",
                json!({"command": "ls", "cwd": ""}),
                "shell.exec",
            ),
            (Agent::Cursor, "MCP:query", json!({"sql": "x"}), "mcp.any.query"),
            (Agent::Cursor, "Bash", json!({"command": "ls"}), "agent.unknown_tool"),
        ];
        for (agent, tool, input, action) in cases {
            let call = map_tool(&event(agent, tool, input), None);
            assert_eq!(call.action, action, "{tool}");
        }
    }

    #[test]
    fn a_monitor_runs_in_the_background() {
        let call = map_tool(
            &event(Agent::ClaudeCode, "Monitor", json!({"command": "tail -f log"})),
            None,
        );
        assert_eq!(call.inputs[0]["background"], json!(true));
        let call = map_tool(&event(Agent::ClaudeCode, "Bash", json!({"command": "ls"})), None);
        assert_eq!(call.inputs[0]["background"], json!(false));
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
    fn the_paths_of_one_command_line_are_bounded_in_bytes() {
        // Four `cd`s that may each fail give 16 possible directories of up
        // to 8 KB; every one-letter word is a path in each.
        let long: Vec<String> = (0..4).map(|i| format!("d{i}{}", "x".repeat(2000))).collect();
        let words: Vec<String> = (0..16).map(|i| format!("{i:x}")).collect();
        let line = format!(
            "{}; {}",
            long.iter().map(|d| format!("cd {d}")).collect::<Vec<_>>().join("; "),
            vec![format!("cat {}", words.join(" ")); 40].join("; ")
        );
        let call = shell(&json!({"command": line}), Path::new("/p"), None);
        let bytes: usize = call
            .inputs
            .iter()
            .flat_map(|i| ["dirs", "operands", "writes", "reads"].map(|k| i[k].clone()))
            .flat_map(|l| l.as_array().cloned().unwrap_or_default())
            .map(|p| p.as_str().map_or(0, str::len))
            .sum();
        assert!(bytes <= MAX_PATH_BYTES_PER_EVENT, "{bytes}");
        let last = call.inputs.last().unwrap();
        assert_eq!(last["understood"], json!(false));
        assert_eq!(last["operands"], json!([]));
        // An ordinary line is untouched.
        let call = shell(&json!({"command": "cd src && cat a b"}), Path::new("/p"), None);
        assert_eq!(call.inputs[1]["operands"], json!(["/p/src/a", "/p/src/b"]));
        assert_eq!(call.inputs[1]["understood"], json!(true));
    }

    #[test]
    fn a_path_that_may_be_a_link_made_earlier_in_the_command_is_not_understood() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().canonicalize().unwrap();
        std::fs::create_dir(p.join("src")).unwrap();
        std::fs::write(p.join("a.txt"), "").unwrap();
        for line in [
            "cd src && ln -s ../.bashrc ../l && cd .. && echo x >> l",
            "tar xf /tmp/a.tar && cat k",
            "git checkout other && cat link",
            "./setup.sh && echo x > new.txt",
        ] {
            let call = shell(&json!({"command": line}), &p, None);
            assert_eq!(call.inputs.last().unwrap()["understood"], json!(false), "{line}");
        }
        for line in [
            "tar xf /tmp/a.tar && cat a.txt",
            "git status && echo x > new.txt",
            "echo x > new.txt && cat new.txt",
        ] {
            let call = shell(&json!({"command": line}), &p, None);
            assert_eq!(call.inputs.last().unwrap()["understood"], json!(true), "{line}");
        }
    }

    #[test]
    fn a_negated_grep_glob_searches_the_whole_tree() {
        for glob in ["!*.rs", " !x"] {
            let call = map_tool(
                &event(Agent::ClaudeCode, "Grep", json!({"pattern": "x", "glob": glob})),
                None,
            );
            let globs = &call.inputs[0]["globs"];
            assert_eq!(
                globs,
                &json!(["/nonexistent-project", "/nonexistent-project/**"]),
                "{glob}"
            );
        }
    }

    #[test]
    fn a_patch_is_one_input_per_file() {
        let patch = "*** Begin Patch\n*** Update File: src/a.rs\n@@\n-x\n+y\n*** Add File: /etc/cron.d/x\n+* * * * * root sh\n*** End Patch\n";
        let call = map_tool(&event(Agent::Codex, "apply_patch", json!({"command": patch})), None);
        let paths: Vec<_> = call.inputs.iter().map(|i| i["path"].as_str().unwrap()).collect();
        assert_eq!(paths, ["/nonexistent-project/src/a.rs", "/etc/cron.d/x"]);
    }
}
