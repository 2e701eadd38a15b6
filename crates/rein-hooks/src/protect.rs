//! Rein's own files, guarded whatever the policy says.
//!
//! The agent a hook governs must never change Rein's store, keys, tokens,
//! policies, compiled-policy cache, any coding agent's hook settings, or
//! the `rein` executable, nor decide approvals or reload policies through
//! `rein`, nor start another coding agent with other settings (hooks off,
//! another folder or home, variables that move its settings). [`Protected`] lists those files; [`Protected::check`]
//! looks at one mapped action input (the same input rules see, paths
//! resolved) and says why it must be refused, before any policy is asked.
//!
//! This is a guard over what a tool call or a command line says. A program
//! that opens the store by itself (a script the agent wrote, a renamed
//! copy of `sqlite3`, a copy of `codex` under another name, an agent
//! started from a script) is not seen: an OS sandbox that makes these files
//! read-only to the agent is the complete answer.

use crate::event::HookEvent;
use serde_json::Value as Json;
use std::path::{Path, PathBuf};

/// What a protected file is, which decides what is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Changing it is refused (policy files, settings, the store).
    File,
    /// Reading it is refused too: whoever reads it gains Rein's powers
    /// (the tokens file holds approver and admin tokens; the audit key
    /// forges the keyed hashes).
    Secret,
    /// A directory: changing anything below it is refused (the cache).
    Dir,
    /// The `rein` executable: changing or copying it is refused, and
    /// running it is judged by its subcommand.
    Binary,
}

#[derive(Clone, Debug)]
struct Entry {
    path: String,
    /// Lower-cased, for file systems that ignore case (macOS).
    folded: String,
    what: String,
    kind: Kind,
}

/// Rein's own files, as absolute paths (symlinks of the existing part
/// resolved, as the mapped inputs are).
#[derive(Clone, Debug, Default)]
pub struct Protected {
    entries: Vec<Entry>,
    /// The folder of the event being judged (its `cwd`, resolved), where a
    /// nested agent must start (see [`Protected::with_agent_settings`]).
    agent_folder: Option<String>,
}

/// The folders, below a project (and each folder above it) or the home
/// folder, in which the coding agents read their hooks or the settings that
/// turn them off, and the files in them that do: Claude Code's settings;
/// Codex's config layers, hooks and requirements; Gemini CLI's settings,
/// its `.env` (which may set the variables that move the others) and its
/// trusted folders (an untrusted folder's settings are not read); Cursor's
/// hooks.
const AGENT_SETTINGS: &[(&str, &[&str])] = &[
    (".claude", &["settings.json", "settings.local.json"]),
    (
        ".codex",
        &["config.toml", "hooks.json", "requirements.toml", "managed_config.toml"],
    ),
    (".gemini", &["settings.json", ".env", "trustedFolders.json"]),
    (".cursor", &["hooks.json"]),
];

/// The files below the home folder alone (Claude Code's own state, which
/// holds its project trust and MCP servers).
const HOME_AGENT_FILES: &[&str] = &[".claude.json"];

/// System-wide (managed) hook settings, at their Linux places.
const SYSTEM_AGENT_SETTINGS: &[(&str, &[&str])] = &[
    ("/etc/claude-code", &["managed-settings.json"]),
    (
        "/etc/codex",
        &["config.toml", "requirements.toml", "managed_config.toml"],
    ),
    ("/etc/gemini-cli", &["settings.json", "system-defaults.json"]),
    ("/etc/cursor", &["hooks.json"]),
];

/// Environment variables that move an agent's settings, and what they
/// name: a folder holding the files of `AGENT_SETTINGS` for that agent
/// (`Folder`), a home whose agent folder holds them (`Home`), or the file
/// itself (`File`). The variables of the process reading the event are
/// those of the agent that ran it (a command hook is the agent's child).
const SETTINGS_VARIABLES: &[(&str, Moved)] = &[
    ("CLAUDE_CONFIG_DIR", Moved::Folder(".claude")),
    ("CODEX_HOME", Moved::Folder(".codex")),
    ("GEMINI_CLI_HOME", Moved::Home(".gemini")),
    ("GEMINI_CLI_SYSTEM_SETTINGS_PATH", Moved::File),
    ("GEMINI_CLI_SYSTEM_DEFAULTS_PATH", Moved::File),
    ("GEMINI_CLI_TRUSTED_FOLDERS_PATH", Moved::File),
];

#[derive(Clone, Copy)]
enum Moved {
    Folder(&'static str),
    Home(&'static str),
    File,
}

/// Subcommands of `rein` the agent may run: they read, never decide
/// approvals, serve, reload or write Rein's files.
const READ_ONLY_REIN: &[&str] = &[
    "validate",
    "check",
    "explain",
    "test",
    "convert",
    "lint",
    "diff",
    "what-can",
    "completions",
    "help",
];

/// Programs that only read the files they are given (and print): a
/// protected file among their operands is not changed. Secrets are still
/// refused to them.
const READERS: &[&str] = &[
    "cat",
    "less",
    "more",
    "head",
    "tail",
    "grep",
    "egrep",
    "fgrep",
    "rg",
    "ag",
    "ls",
    "stat",
    "file",
    "wc",
    "diff",
    "cmp",
    "sha1sum",
    "sha256sum",
    "sha512sum",
    "md5sum",
    "b2sum",
    "cksum",
    "od",
    "xxd",
    "hexdump",
    "strings",
    "readlink",
    "realpath",
    "basename",
    "dirname",
    "du",
    "tree",
    "echo",
    "printf",
    "test",
    "[",
    "true",
    "false",
    "pwd",
    "which",
    "type",
    "jq",
    "sort",
    "uniq",
    "cut",
    "nl",
    "column",
    "bat",
    "exa",
    "eza",
    "lsof",
];

/// Programs that do not touch the files they are given beyond reading
/// them, and that can merely list the binary (`ls -l $(which rein)`).
const BINARY_LOOKS: &[&str] = &[
    "ls",
    "stat",
    "file",
    "which",
    "type",
    "sha1sum",
    "sha256sum",
    "sha512sum",
    "md5sum",
    "b2sum",
    "cksum",
    "du",
    "readlink",
    "realpath",
    "basename",
    "dirname",
];

/// Programs that run code given as text (`sqlite3 :memory: "attach
/// 'rein.db'…"`, `python3 -c …`, `sed 'w file'`): a protected file's name
/// anywhere in their arguments is refused.
const CODE_RUNNERS: &[&str] = &[
    "sqlite3",
    "python",
    "python3",
    "python2",
    "perl",
    "ruby",
    "node",
    "nodejs",
    "deno",
    "bun",
    "php",
    "lua",
    "awk",
    "gawk",
    "mawk",
    "nawk",
    "sed",
    "osascript",
    "pwsh",
    "powershell",
    "Rscript",
    "julia",
    "tclsh",
    "expect",
    "vim",
    "vi",
    "nvim",
    "ed",
    "ex",
    "emacs",
    "busybox",
    "toybox",
];

/// Programs whose directory operands do not mean "change what is below":
/// build, test and version-control tools given `.` (`git add .`, `cargo
/// fmt -- .`, `npm install .`). A protected file named exactly is still
/// refused to them.
const TREE_NEUTRAL: &[&str] = &[
    "cargo", "go", "npm", "pnpm", "yarn", "npx", "pytest", "make", "docker", "podman", "tsc", "node", "python",
    "python3", "mypy", "ruff", "eslint", "code", "cd", "pushd", "mkdir", "git",
];

/// Programs that only remove what their operands name.
const DELETERS: &[&str] = &["rm", "rmdir", "unlink", "shred"];

/// `git` subcommands that may delete or overwrite files in the tree they
/// are run in, even without operands (`git clean -fdx` removes an
/// untracked `rein.db`).
const GIT_TREE_CHANGERS: &[&str] = &[
    "clean",
    "stash",
    "checkout",
    "restore",
    "reset",
    "rm",
    "mv",
    "switch",
    "apply",
    "am",
    "merge",
    "pull",
    "rebase",
    "cherry-pick",
    "revert",
];

/// Where a `git` command line's subcommand is (`args.len()` if none): the
/// global options before it are skipped with their values (`git -C dir
/// clean`, `git -c k=v stash`, `git --git-dir d reset`), so the subcommand
/// is not mistaken for one of them, nor their `-C` for `checkout -C`.
fn git_subcommand_at(args: &[String]) -> usize {
    let mut i = 0;
    while let Some(a) = args.get(i) {
        if !a.starts_with('-') {
            break;
        }
        let takes_value = matches!(
            a.as_str(),
            "-C" | "-c" | "--git-dir" | "--work-tree" | "--namespace" | "--super-prefix" | "--config-env"
        );
        i += if takes_value { 2 } else { 1 };
    }
    i.min(args.len())
}

/// Whether `tar` is given an extracting mode (`x`, `-x`, `--extract`,
/// `--get`), in its old form (`xzf`) or as options (`-xzf`).
fn tar_extracts(args: &[String]) -> bool {
    args.iter().enumerate().any(|(i, a)| {
        a == "--extract"
            || a == "--get"
            || (a.starts_with('-') && !a.starts_with("--") && a.contains('x'))
            || (i == 0 && !a.starts_with('-') && a.contains('x'))
    })
}

impl Protected {
    /// An empty list.
    pub fn new() -> Protected {
        Protected::default()
    }

    /// Adds `path` (made absolute against the current directory, symlinks
    /// of its existing part resolved), described as `what` in refusals.
    pub fn add(&mut self, path: &Path, what: &str, kind: Kind) {
        let cwd = std::env::current_dir().unwrap_or_else(|_| "/".into());
        let Some(text) = path.to_str() else { return };
        if text.is_empty() {
            return;
        }
        let resolved = crate::map::resolve(&cwd, text, None);
        if self.entries.iter().any(|e| e.path == resolved) {
            return;
        }
        self.entries.push(Entry {
            folded: resolved.to_lowercase(),
            path: resolved,
            what: what.to_string(),
            kind,
        });
    }

    /// Adds `path`, and everything below it when it is a folder.
    pub fn add_file_or_dir(&mut self, path: &Path, what: &str) {
        let kind = if path.is_dir() { Kind::Dir } else { Kind::File };
        self.add(path, what, kind);
    }

    /// Adds what every process answering hook events guards whatever its
    /// configuration: the policy files it enforces and its own executable.
    pub fn add_policies_and_executable(&mut self, policies: &[PathBuf]) {
        for policy in policies {
            self.add_file_or_dir(policy, "a policy file Rein enforces");
        }
        if let Ok(exe) = std::env::current_exe() {
            self.add(&exe, "the rein executable", Kind::Binary);
        }
    }

    /// Adds an SQLite store and the files SQLite keeps beside it.
    pub fn add_store(&mut self, db: &Path) {
        self.add(db, "Rein's store", Kind::File);
        // `.lock`: the state lock (`rein_store::StateLock`); an agent that
        // removed it while a process holds it would let a second one keep
        // the same state.
        for suffix in ["-wal", "-shm", "-journal", ".lock"] {
            let mut name = db.as_os_str().to_owned();
            name.push(suffix);
            self.add(Path::new(&name), "Rein's store", Kind::File);
        }
    }

    /// This list plus the settings files through which the coding agents
    /// run their hooks, in the event's project and the user's home: whoever
    /// rewrites them turns the hook off. Every agent's files, whichever sent
    /// the event: an agent may write another's (and a user may run both).
    /// Also the system-wide ones, and those the variables of this process
    /// move (`CODEX_HOME`, `GEMINI_CLI_SYSTEM_SETTINGS_PATH`, …).
    pub fn with_agent_settings(&self, event: &HookEvent, home: Option<&Path>) -> Protected {
        self.with_agent_settings_in(event, home, &|name| std::env::var_os(name))
    }

    /// As [`Protected::with_agent_settings`], the variables read by `var`.
    fn with_agent_settings_in(
        &self,
        event: &HookEvent,
        home: Option<&Path>,
        var: &dyn Fn(&str) -> Option<std::ffi::OsString>,
    ) -> Protected {
        const WHAT: &str = "the agent's hook settings";
        let mut out = self.clone();
        out.agent_folder = Some(crate::map::resolve(Path::new("/"), &event.cwd, None));
        // The agent's shell may have left the folder the agent started in
        // (`cd src`: the next event's `cwd` is `src`), so the settings of
        // the folders above `cwd` count too: up to the repository's root,
        // or all of them outside a repository.
        let cwd = Path::new(&event.cwd);
        let root = crate::project_root(cwd);
        let in_repository = root.join(".git").exists();
        let mut bases: Vec<PathBuf> = cwd
            .ancestors()
            .take_while(|d| !in_repository || d.starts_with(&root))
            .map(Path::to_path_buf)
            .collect();
        // The project the hook runs in, when `cwd` is only where a command
        // runs (Codex's `workdir`, which may be anywhere).
        if let Some(project) = event.project.as_deref().map(Path::new) {
            bases.push(project.to_path_buf());
            bases.push(crate::project_root(project));
        }
        bases.extend(home.map(Path::to_path_buf));
        for base in &bases {
            for (dir, files) in AGENT_SETTINGS {
                out.add_files_in(&base.join(dir), files, WHAT);
            }
        }
        if let Some(home) = home {
            out.add_files_in(home, HOME_AGENT_FILES, WHAT);
        }
        for (dir, files) in SYSTEM_AGENT_SETTINGS {
            out.add_files_in(Path::new(dir), files, WHAT);
        }
        for (name, moved) in SETTINGS_VARIABLES {
            let Some(value) = var(name).filter(|v| !v.is_empty()) else {
                continue;
            };
            let value = PathBuf::from(value);
            let (folder, agent) = match moved {
                Moved::File => {
                    out.add(&value, WHAT, Kind::File);
                    continue;
                }
                Moved::Folder(agent) => (value, *agent),
                Moved::Home(agent) => (value.join(agent), *agent),
            };
            if let Some((_, files)) = AGENT_SETTINGS.iter().find(|(dir, _)| *dir == agent) {
                out.add_files_in(&folder, files, WHAT);
            }
        }
        // Gemini CLI reads its system defaults beside its system settings.
        if let Some(system) = var("GEMINI_CLI_SYSTEM_SETTINGS_PATH").filter(|v| !v.is_empty()) {
            if let Some(dir) = Path::new(&system).parent() {
                out.add(&dir.join("system-defaults.json"), WHAT, Kind::File);
            }
        }
        // Codex layers `<name>.config.toml` of its home on top of the user
        // config (`codex --profile name`): the profiles that exist.
        let codex_home = var("CODEX_HOME")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .or_else(|| home.map(|h| h.join(".codex")));
        if let Some(Ok(entries)) = codex_home.map(std::fs::read_dir) {
            for entry in entries.flatten().take(256) {
                let name = entry.file_name();
                if name.to_str().is_some_and(|n| n.ends_with(".config.toml")) {
                    out.add(&entry.path(), WHAT, Kind::File);
                }
            }
        }
        out
    }

    /// Adds `files` of the folder `dir`, which is resolved once: a file is
    /// resolved on its own only if it is a symlink (guarded where it
    /// points), and none is looked at in a folder that does not exist (a
    /// hook reads every ancestor's folders of every agent on every event).
    fn add_files_in(&mut self, dir: &Path, files: &[&str], what: &str) {
        let cwd = std::env::current_dir().unwrap_or_else(|_| "/".into());
        let Some(text) = dir.to_str() else { return };
        let resolved = PathBuf::from(crate::map::resolve(&cwd, text, None));
        let exists = std::fs::symlink_metadata(&resolved).is_ok();
        for file in files {
            let joined = resolved.join(file);
            let is_link = exists && std::fs::symlink_metadata(&joined).is_ok_and(|m| m.file_type().is_symlink());
            let path = match (is_link, joined.to_str()) {
                (true, Some(link)) => crate::map::resolve(&cwd, link, None),
                _ => joined.to_string_lossy().into_owned(),
            };
            if !self.entries.iter().any(|e| e.path == path) {
                self.entries.push(Entry {
                    folded: path.to_lowercase(),
                    path,
                    what: what.to_string(),
                    kind: Kind::File,
                });
            }
        }
    }

    /// Whether nothing is protected.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The protected paths, with what each is.
    pub fn paths(&self) -> impl Iterator<Item = (&str, &str, Kind)> {
        self.entries.iter().map(|e| (e.path.as_str(), e.what.as_str(), e.kind))
    }

    /// Why the agent may not do `action` with `input` (a mapped input, paths
    /// resolved), or `None`.
    pub fn check(&self, action: &str, input: &Json) -> Option<String> {
        if self.entries.is_empty() {
            return None;
        }
        let text = |k: &str| input.get(k).and_then(Json::as_str).unwrap_or_default();
        match action {
            "file.write" => self.changed(text("path"), Cover::Exact),
            "file.read" => self.secret(text("path"), Cover::Exact),
            "file.search" => {
                let content = input.get("content").and_then(Json::as_bool).unwrap_or(true);
                let globs = list(input, "globs");
                match content {
                    true => globs.iter().find_map(|g| self.secret(g, Cover::Glob)),
                    false => None,
                }
            }
            "shell.exec" => self.shell(input),
            // An MCP tool or an unmapped one may take a path in any field
            // (a filesystem server's `write_file {path}`): every absolute
            // path among its values counts as changed.
            _ if action.starts_with("mcp.") || action == crate::map::UNKNOWN_TOOL => {
                let mut texts = Vec::new();
                let parsed = input
                    .get("input_json")
                    .and_then(Json::as_str)
                    .and_then(|t| serde_json::from_str::<Json>(t).ok());
                strings_in(parsed.as_ref().unwrap_or(input), 0, &mut texts);
                let texts: Vec<String> = texts
                    .iter()
                    .map(|t| t.strip_prefix("file://").unwrap_or(t).to_string())
                    .collect();
                let (absolute, other): (Vec<String>, Vec<String>) = texts.into_iter().partition(|t| t.starts_with('/'));
                absolute
                    .iter()
                    .map(|t| crate::map::resolve(Path::new("/"), t, None))
                    .find_map(|t| self.changed(&t, Cover::Glob))
                    // A relative or `~` path is relative to a folder only
                    // the server knows: judged by its name, as a word of a
                    // command that was not understood.
                    .or_else(|| self.unread_words(&other, &[]))
            }
            _ => None,
        }
    }

    /// Why a command line, or the part of one, that was not analysed may
    /// touch Rein's files: any of its words naming one (`rm rein.db; )`
    /// does not parse, and a command cut after `MAX_PARTS` parts loses what
    /// follows). `dirs` are the folders it may run in; none: unknown.
    pub fn check_unread(&self, text: &str, dirs: &[String]) -> Option<String> {
        let words: Vec<String> = text
            .split(|c: char| c.is_whitespace() || ";&|()<>'\"`".contains(c))
            .filter(|w| !w.is_empty())
            .map(str::to_string)
            .collect();
        self.unread_words(&words, dirs)
    }

    /// Where a part that is not understood runs may be unknown (`cd "$X";
    /// rm rein.db`, whose `dirs` the mapping fills with the event's folder,
    /// or a part cut for size: no `dirs`): an absolute word is judged as it
    /// is, and a word naming a protected file by its name may be that file.
    fn unread_words(&self, words: &[String], dirs: &[String]) -> Option<String> {
        let root = ["/".to_string()];
        let bases = if dirs.is_empty() { &root[..] } else { dirs };
        for a in words.iter().filter(|a| !a.starts_with('-')) {
            for d in bases {
                let lexical = crate::map::normalize_text(Path::new(d), a);
                if let Some(e) = self.hit(&lexical, Cover::Glob, |_| true) {
                    return Some(refusal(e, "touch it"));
                }
            }
            let named = self.entries.iter().find(|e| {
                let name = telling_name(&e.path);
                e.kind != Kind::Dir && name.len() >= 4 && tail_folded(a, name.matches('/').count() + 1) == name
            });
            if let Some(e) = named {
                return Some(refusal(
                    e,
                    "touch it (the command may run in a folder Rein cannot know)",
                ));
            }
        }
        None
    }

    fn shell(&self, input: &Json) -> Option<String> {
        let text = |k: &str| input.get(k).and_then(Json::as_str).unwrap_or_default();
        let program = text("program");
        let args = list(input, "args");
        let operands = list(input, "operands");
        let dirs = list(input, "dirs");
        for w in list(input, "writes") {
            if let Some(why) = self.changed(&w, Cover::Glob) {
                return Some(why);
            }
        }
        for r in list(input, "reads") {
            if let Some(why) = self.secret(&r, Cover::Glob) {
                return Some(why);
            }
        }
        let env = list(input, "env");
        if let Some(why) = settings_variable(program, &args, &env) {
            return Some(why);
        }
        if let Some(why) = nested_agent(input, program, &args, &env, self.agent_folder.as_deref()) {
            return Some(why);
        }
        let known = input.get("known").and_then(Json::as_bool).unwrap_or(false);
        if let Some(why) = self.rein_invocation(program, text("path"), &args, &dirs, known) {
            return Some(why);
        }
        let understood = input.get("understood").and_then(Json::as_bool).unwrap_or(false);
        if program.is_empty() {
            // Text the analysis could not read (unparsable, too deep, cut
            // for size) has no program: its words are all there is.
            return match understood {
                true => None,
                false => self.check_unread(text("part"), &dirs),
            };
        }
        // Every word that may name a file: the operands, and the values of
        // `--option=FILE` / `of=FILE` forms, resolved in each directory.
        let mut named: Vec<String> = operands.clone();
        for a in &args {
            if let Some((_, value)) = a.split_once('=') {
                if !value.is_empty() {
                    for d in &dirs {
                        named.push(crate::map::resolve(Path::new(d), value, None));
                    }
                }
            }
        }
        // A part that is not understood may have had its operands cut (or
        // mis-read): every word counts, joined to each directory.
        if !understood {
            if let Some(why) = self.unread_words(&args, &dirs) {
                return Some(why);
            }
        }
        // `find` only lists unless told to delete or write a file (what its
        // `-exec` runs is a part of its own): `find . -name x` in a project
        // holding `.claude/settings.json` changes nothing.
        let lists_only = program == "find"
            && !args
                .iter()
                .any(|a| ["-delete", "-fprint", "-fprint0", "-fprintf", "-fls"].contains(&a.as_str()));
        let reader = READERS.contains(&program) || lists_only;
        if reader {
            // Reading is fine, except secrets (a glob or directory read
            // recursively is left to the policy's secret rules).
            return named.iter().find_map(|p| self.secret(p, Cover::Glob));
        }
        for p in &named {
            if let Some(e) = self.hit(p, Cover::Glob, |e| e.kind != Kind::Binary) {
                return Some(refusal(e, "change it"));
            }
            if let Some(why) = agent_settings_refusal(p) {
                return Some(why);
            }
            if let Some(e) = self.hit(p, Cover::Exact, |e| e.kind == Kind::Binary) {
                if !BINARY_LOOKS.contains(&program) {
                    return Some(refusal(e, "copy or change it"));
                }
            }
        }
        // Archivers that only read the trees they are given (`tar c`, `zip`):
        // the archive they write is checked above.
        let reads_trees = match program {
            "tar" => !tar_extracts(&args),
            "zip" => true,
            _ => false,
        };
        // Programs that create or rewrite files below the folder they run in
        // without naming them (`tar x`, `unzip`, `patch`, `git merge`).
        let unpacks_here = match program {
            "tar" => tar_extracts(&args),
            "unzip" | "patch" | "cpio" | "pax" | "bsdtar" => true,
            "7z" | "7za" | "7zr" => args.iter().any(|a| a == "x" || a == "e"),
            _ => false,
        };
        if unpacks_here {
            for d in &dirs {
                if let Some(e) = self.hit(d, Cover::Ancestor, |_| true) {
                    return Some(refusal(e, "change it (this program writes files below its folder)"));
                }
            }
        }
        let neutral = TREE_NEUTRAL.contains(&program) || reads_trees;
        // Removing a tree only matters for what exists; anything else that
        // acts on a directory may also create a protected file in it (`cp
        // -r x .claude/` writing settings.local.json).
        let removes_only = DELETERS.contains(&program);
        let present = |e: &Entry| !removes_only || Path::new(&e.path).exists();
        if !neutral {
            for p in &named {
                if let Some(e) = self.hit(p, Cover::Ancestor, present) {
                    return Some(refusal(e, "change a folder that holds it"));
                }
            }
        }
        if program == "git" {
            let at = git_subcommand_at(&args);
            let words: Vec<&str> = args[at..]
                .iter()
                .map(String::as_str)
                .filter(|a| !a.starts_with('-'))
                .collect();
            let sub = words.first().copied();
            // A new branch from where one stands changes no file.
            let new_branch = matches!(sub, Some("checkout" | "switch"))
                && args[at..]
                    .iter()
                    .any(|a| ["-b", "-B", "-c", "-C"].contains(&a.as_str()))
                && words.len() <= 2;
            if sub.is_some_and(|s| GIT_TREE_CHANGERS.contains(&s)) && !new_branch {
                for d in &dirs {
                    if let Some(e) = self.hit(d, Cover::Ancestor, |e| Path::new(&e.path).exists()) {
                        return Some(refusal(e, "change it (`git` works on the folder that holds it)"));
                    }
                }
            }
        }
        if CODE_RUNNERS.contains(&program) {
            // As written and percent-decoded (SQLite opens `file:` URIs:
            // `file:rein%2Edb` is `rein.db`).
            let texts: Vec<String> = args
                .iter()
                .flat_map(|a| [a.to_lowercase(), percent_decoded(a).to_lowercase()])
                .collect();
            for e in self.entries.iter().filter(|e| e.kind != Kind::Binary) {
                let name = telling_name(&e.path);
                if name.len() >= 4 && texts.iter().any(|a| a.contains(&name)) {
                    return Some(refusal(e, "touch it (its name is in code this program runs)"));
                }
            }
        }
        None
    }

    /// `rein` run by the agent (by name, or by the protected executable's
    /// path, or through `cargo run`): only read-only subcommands pass.
    fn rein_invocation(
        &self,
        program: &str,
        path: &str,
        args: &[String],
        dirs: &[String],
        known: bool,
    ) -> Option<String> {
        let is_binary = |p: &str| {
            dirs.iter().any(|d| {
                let r = crate::map::resolve(Path::new(d), p, None);
                self.entries.iter().any(|e| e.kind == Kind::Binary && e.path == r)
            })
        };
        // A renamed copy of rein is still told `approvals grant|deny`.
        let words: Vec<&str> = args
            .iter()
            .map(String::as_str)
            .filter(|a| !a.starts_with('-'))
            .collect();
        // For a program Rein does not know (a copy of rein under any name),
        // a word that is only known when it runs (`$x`, `$(…)`) or a glob
        // (`gr*`, `{grant,x}`) may be any of these words.
        let may_be = |w: &str, word: &str| {
            w == word
                || (!known && (w.contains(['$', '`']) || (w.contains(['*', '?', '[', '{']) && glob_may_match(w, word))))
        };
        let approvals_at = words.iter().position(|w| may_be(w, "approvals"));
        if approvals_at.is_some_and(|at| words[at + 1..].iter().any(|w| may_be(w, "grant") || may_be(w, "deny"))) {
            return Some(
                "the agent may not decide approvals (`approvals grant`/`deny`), with rein or a copy of it, whatever \
                 the policy says"
                    .to_string(),
            );
        }
        // `cargo install` into the folder the protected rein is installed
        // in would replace it.
        if program == "cargo" && words.first() == Some(&"install") && !args.iter().any(|a| a.starts_with("--root")) {
            if let Some(e) = self.entries.iter().find(|e| {
                e.kind == Kind::Binary
                    && Path::new(&e.path).parent().is_some_and(|bin| {
                        bin.ends_with(".cargo/bin")
                            || std::env::var_os("CARGO_HOME").is_some_and(|h| bin == Path::new(&h).join("bin"))
                    })
            }) {
                return Some(refusal(e, "replace it (`cargo install` writes into its folder)"));
            }
        }
        let rein_args: &[String] = if program == "rein" || (path.contains('/') && is_binary(path)) {
            args
        } else if program == "cargo" && args.iter().any(|a| a == "run") && args.iter().any(|a| a.contains("rein")) {
            match args.iter().position(|a| a == "--") {
                Some(i) => &args[i + 1..],
                None => &[],
            }
        } else {
            return None;
        };
        // The words that are not options, the global `--color WHEN`'s
        // value left out.
        let mut words: Vec<&str> = Vec::new();
        let mut skip = false;
        for a in rein_args {
            if std::mem::take(&mut skip) {
                continue;
            }
            if a == "--color" {
                skip = true;
            } else if !a.starts_with('-') {
                words.push(a);
            }
        }
        let allowed = match words.as_slice() {
            [] => true,
            ["audit", sub, ..] => ["verify", "query", "export", "replay"].contains(sub),
            ["approvals", sub, ..] => ["list", "show"].contains(sub),
            [sub, ..] => READ_ONLY_REIN.contains(sub),
        };
        if allowed {
            return None;
        }
        Some(format!(
            "the agent may not run `rein {}`: deciding approvals, serving, hooking, initialising or changing Rein's \
             files is for a person, whatever the policy says",
            words.first().copied().unwrap_or_default()
        ))
    }

    fn changed(&self, path: &str, cover: Cover) -> Option<String> {
        self.hit(path, cover, |_| true)
            .map(|e| refusal(e, "change it"))
            .or_else(|| agent_settings_refusal(path))
    }

    fn secret(&self, path: &str, cover: Cover) -> Option<String> {
        self.hit(path, cover, |e| e.kind == Kind::Secret)
            .map(|e| refusal(e, "read it"))
    }

    /// The first entry `path` touches under `cover` among those `pick` keeps.
    fn hit(&self, path: &str, cover: Cover, pick: impl Fn(&Entry) -> bool) -> Option<&Entry> {
        if path.is_empty() {
            return None;
        }
        let folded = path.to_lowercase();
        let folded = folded.trim_end_matches('/');
        self.entries.iter().filter(|e| pick(e)).find(|e| {
            let inside_dir = e.kind == Kind::Dir && under(folded, &e.folded);
            let exact = folded == e.folded || inside_dir;
            match cover {
                Cover::Exact => exact,
                Cover::Glob => exact || glob_may_match(folded, &e.folded) || under_glob_dir(folded, e),
                Cover::Ancestor => {
                    exact || glob_may_match(folded, &e.folded) || under(&e.folded, folded) || under_glob_dir(folded, e)
                }
            }
        })
    }
}

/// Builtins that set, export, read into or remove the variables their
/// arguments name (`export X=1`, `read X`, `printf -v X`, `unset X`): what
/// they set reaches every later program of the command line.
const ASSIGNERS: &[&str] = &[
    "export",
    "declare",
    "typeset",
    "readonly",
    "local",
    "unset",
    "read",
    "mapfile",
    "readarray",
    "printf",
    "getopts",
    "let",
];

/// Prefixes of the variables through which the coding agents are told
/// where their settings are and what of them to load (`CODEX_HOME`,
/// `CLAUDE_CONFIG_DIR`, `CLAUDE_CODE_SIMPLE` (no hooks),
/// `GEMINI_CLI_SYSTEM_SETTINGS_PATH`, …): each agent reads hundreds, so all
/// of them.
const AGENT_VARIABLE_PREFIXES: &[&str] = &["CLAUDE_", "CODEX_", "GEMINI_", "CURSOR_"];

/// Variables that move every agent's user settings (`~/.codex`, …) when
/// they reach a later program of the line; set for one program only, they
/// are judged with that program (a nested agent may have none set).
const HOME_VARIABLES: &[&str] = &["HOME", "XDG_CONFIG_HOME"];

/// Why a part may not set the variables it sets: Rein's own (`REIN_*`), a
/// coding agent's, or the home folder for the rest of the line. `env`
/// holds the variables set for the part's program (or, without a program,
/// by the part: `X=1;`).
fn settings_variable(program: &str, args: &[String], env: &[String]) -> Option<String> {
    // `printf` sets only the variable of its `-v`; its other words are text.
    let named: Vec<&String> = match program {
        "printf" => args.iter().skip_while(|a| *a != "-v").skip(1).take(1).collect(),
        _ => args.iter().collect(),
    };
    let identifier = |n: &str| !n.is_empty() && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    let words: Vec<&String> = match ASSIGNERS.contains(&program) {
        true => named.into_iter().filter(|a| !a.starts_with('-')).collect(),
        false => Vec::new(),
    };
    if let Some(w) = words
        .iter()
        .find(|w| w.split('=').next().unwrap_or_default().contains(['$', '`']))
    {
        return Some(format!(
            "`{program} {w}` sets a variable whose name is only known when it runs (it may be Rein's or a coding \
             agent's, which are not the agent's to change)"
        ));
    }
    // A name, and the variable a reference names (`declare -n r=CODEX_HOME`).
    let reference = ["declare", "typeset", "local"].contains(&program)
        && args
            .iter()
            .any(|a| a.starts_with('-') && !a.starts_with("--") && a.contains('n'));
    let assigned: Vec<&str> = words
        .iter()
        .flat_map(|a| {
            let (name, value) = a.split_once('=').unwrap_or((a.as_str(), ""));
            [name.trim_end_matches('+'), if reference { value } else { "" }]
        })
        .filter(|n| identifier(n))
        .collect();
    let for_the_line = program.is_empty() || !assigned.is_empty();
    let names = env.iter().map(String::as_str).chain(assigned.iter().copied());
    for name in names {
        if name.starts_with("REIN_") {
            return Some(format!(
                "`{name}` points Rein's commands at other files; Rein's own settings are not the agent's to change"
            ));
        }
        if AGENT_VARIABLE_PREFIXES.iter().any(|p| name.starts_with(p)) {
            return Some(format!(
                "`{name}` tells a coding agent where its settings are or which to load; an agent's hook settings are \
                 not the agent's to change, whatever the policy says"
            ));
        }
        let whole_line = for_the_line && (program.is_empty() || assigned.contains(&name));
        if whole_line && HOME_VARIABLES.contains(&name) {
            return Some(format!(
                "`{name}` set for the rest of the command moves every coding agent's user settings (and their \
                 hooks); an agent's hook settings are not the agent's to change, whatever the policy says"
            ));
        }
    }
    None
}

/// A coding agent's command line, as far as Rein vouches for it: a nested
/// agent started with only these options reads the settings (and runs the
/// hooks) its user gave it. Every other option is refused, since the agents
/// add options that turn hooks off (`claude --bare`, `codex -c
/// features.hooks=false`, `gemini --sandbox`, where the hook does not run).
struct AgentCli {
    /// The agent, in refusals.
    name: &'static str,
    /// Its programs' names.
    programs: &'static [&'static str],
    /// Its npm package, as `npx` or `node` name it.
    package: &'static str,
    /// The options that change no settings, hooks or permissions, and
    /// whether each takes a value.
    options: &'static [(&'static str, bool)],
    /// Subcommands that change its configuration, install, log in, or run
    /// the agent elsewhere; their `list`/`get` forms only read.
    subcommands: &'static [&'static str],
}

const AGENT_CLIS: &[AgentCli] = &[
    AgentCli {
        name: "claude",
        programs: &["claude"],
        package: "@anthropic-ai/claude-code",
        options: &[
            ("-p", false),
            ("--print", false),
            ("--model", true),
            ("--output-format", true),
            ("--input-format", true),
            ("--verbose", false),
            ("--max-turns", true),
            ("--append-system-prompt", true),
            ("--system-prompt", true),
            ("-c", false),
            ("--continue", false),
            ("-r", false),
            ("--resume", false),
            ("--session-id", true),
            ("--fork-session", false),
            ("--json-schema", true),
            ("--max-budget-usd", true),
            ("--fallback-model", true),
            ("--effort", true),
            ("-n", true),
            ("--name", true),
            ("--no-session-persistence", false),
            ("--include-partial-messages", false),
            ("--include-hook-events", false),
            ("--replay-user-messages", false),
            ("--forward-subagent-text", false),
            ("--disallowedTools", true),
            ("--disallowed-tools", true),
            ("--tools", true),
            ("--add-dir", true),
            ("-d", false),
            ("--debug", false),
            ("--ax-screen-reader", false),
            ("--exclude-dynamic-system-prompt-sections", false),
            ("--system-prompt-snapshot", true),
            ("--autocompact", true),
            ("--brief", false),
            ("--permission-mode", true),
            ("--permission-prompts", true),
            ("--disable-slash-commands", false),
            ("--strict-mcp-config", false),
            ("--no-chrome", false),
            ("-h", false),
            ("--help", false),
            ("-v", false),
            ("--version", false),
        ],
        subcommands: &[
            "agents",
            "attach",
            "auth",
            "auto-mode",
            "config",
            "gateway",
            "import",
            "install",
            "logs",
            "mcp",
            "migrate-installer",
            "plugin",
            "plugins",
            "purge",
            "respawn",
            "rm",
            "setup-token",
            "stop",
            "kill",
            "ultrareview",
            "update",
            "upgrade",
        ],
    },
    AgentCli {
        name: "codex",
        programs: &["codex"],
        package: "@openai/codex",
        options: &[
            ("-m", true),
            ("--model", true),
            ("-i", true),
            ("--image", true),
            ("--json", false),
            ("-o", true),
            ("--output-last-message", true),
            ("--color", true),
            ("--skip-git-repo-check", false),
            ("--ephemeral", false),
            ("--output-schema", true),
            ("--oss", false),
            ("--local-provider", true),
            ("-s", true),
            ("--sandbox", true),
            ("-a", true),
            ("--ask-for-approval", true),
            ("--add-dir", true),
            ("--strict-config", false),
            ("--no-alt-screen", false),
            ("--no-daemon", false),
            ("-c", true),
            ("--config", true),
            ("--last", false),
            ("-h", false),
            ("--help", false),
            ("-V", false),
            ("--version", false),
        ],
        subcommands: &[
            "agents",
            "login",
            "logout",
            "mcp",
            "mcp-server",
            "plugin",
            "app-server",
            "remote-control",
            "update",
            "sandbox",
            "debug",
            "apply",
            "a",
            "queue",
            "archive",
            "delete",
            "unarchive",
            "migrate-rollouts",
            "migrate-nfs-db",
            "cloud",
            "exec-server",
            "features",
        ],
    },
    AgentCli {
        name: "gemini",
        programs: &["gemini"],
        package: "@google/gemini-cli",
        options: &[
            ("-m", true),
            ("--model", true),
            ("-p", true),
            ("--prompt", true),
            ("-i", true),
            ("--prompt-interactive", true),
            ("-o", true),
            ("--output-format", true),
            ("-d", false),
            ("--debug", false),
            ("--screen-reader", false),
            ("-r", true),
            ("--resume", true),
            ("--session-id", true),
            ("--list-sessions", false),
            ("-l", false),
            ("--list-extensions", false),
            ("--include-directories", true),
            ("--allowed-mcp-server-names", true),
            ("--approval-mode", true),
            ("--raw-output", false),
            ("--accept-raw-output-risk", false),
            ("-v", false),
            ("--version", false),
            ("-h", false),
            ("--help", false),
        ],
        subcommands: &[
            "mcp",
            "extensions",
            "extension",
            "skills",
            "skill",
            "hooks",
            "hook",
            "gemma",
        ],
    },
    AgentCli {
        name: "cursor-agent",
        programs: &["cursor-agent", "agent"],
        package: "@cursor/agent",
        options: &[
            ("-p", false),
            ("--print", false),
            ("--output-format", true),
            ("--stream-partial-output", false),
            ("-m", true),
            ("--model", true),
            ("--mode", true),
            ("--plan", false),
            ("--continue", false),
            ("--resume", false),
            ("-n", true),
            ("--name", true),
            ("--list-models", false),
            ("-v", false),
            ("--version", false),
            ("-h", false),
            ("--help", false),
        ],
        subcommands: &[
            "login",
            "logout",
            "mcp",
            "update",
            "upgrade",
            "install-shell-integration",
            "uninstall-shell-integration",
        ],
    },
];

/// Whether an option's value keeps the agent's settings: the few that
/// choose a setting are read (`codex -c model=…` only for the model; no
/// permission mode that lets the agent act without its prompts, which is
/// where Rein's "ask" lands).
fn agent_option_value_ok(agent: &str, option: &str, value: &str) -> bool {
    match (agent, option) {
        ("codex", "-c" | "--config") => {
            let key = value.split('=').next().unwrap_or_default().trim();
            [
                "model",
                "model_reasoning_effort",
                "model_reasoning_summary",
                "model_verbosity",
            ]
            .contains(&key)
        }
        ("codex", "-s" | "--sandbox") => ["read-only", "workspace-write"].contains(&value),
        ("claude", "--permission-mode") | ("gemini", "--approval-mode") => ["default", "plan"].contains(&value),
        _ => true,
    }
}

/// Wrappers that run the program as it is, for this user, with this
/// environment (`sudo`, `env`, `chroot`, `xargs` do not: another home,
/// other variables, arguments added when it runs).
fn wrapper_keeps_settings(wrapper: &str) -> bool {
    const KEEPING: &[&str] = &[
        "timeout", "nice", "nohup", "time", "command", "builtin", "exec", "setsid", "stdbuf", "ionice", "taskset",
        "chrt", "prlimit", "eval", "flock -c",
    ];
    KEEPING.contains(&wrapper)
        || wrapper
            .strip_suffix(" -c")
            .is_some_and(|shell| ["bash", "sh", "dash", "zsh", "ksh", "mksh", "ash"].contains(&shell))
}

/// The coding agent a part starts, and its arguments: by the program's name
/// (`codex`, `/usr/local/bin/claude`), or through a package runner naming
/// its package (`npx @openai/codex exec`), or `node` running its script
/// (`node …/@google/gemini-cli/bundle/gemini.js`, `node_modules/.bin/codex`).
/// `path` is the program as written.
fn nested_agent_call<'a>(program: &str, path: &str, args: &'a [String]) -> Option<(&'static AgentCli, &'a [String])> {
    if let Some(cli) = AGENT_CLIS.iter().find(|c| is_agent_program(c, program, path)) {
        return Some((cli, args));
    }
    const PACKAGE_RUNNERS: &[&str] = &["npx", "pnpx", "bunx", "npm", "pnpm", "yarn", "bun", "corepack"];
    const SCRIPT_RUNNERS: &[&str] = &["node", "nodejs", "deno", "bun"];
    let found = |i: usize, cli: &'static AgentCli| {
        let mut rest = &args[i + 1..];
        // `npx -p @openai/codex codex …`, `npm exec @openai/codex -- …`
        if rest
            .first()
            .is_some_and(|r| cli.programs.contains(&r.as_str()) || r == "--")
        {
            rest = &rest[1..];
        }
        Some((cli, rest))
    };
    if SCRIPT_RUNNERS.contains(&program) {
        // The script is the first word that is not an option.
        if let Some(i) = args.iter().position(|a| !a.starts_with('-')) {
            let lower = args[i].to_lowercase();
            let name = file_name_folded(&lower);
            let stem = name.split('.').next().unwrap_or_default();
            let cli = AGENT_CLIS
                .iter()
                .find(|c| lower.contains(c.package) || is_agent_program(c, stem, &lower));
            if let Some(cli) = cli {
                return found(i, cli);
            }
        }
    }
    if PACKAGE_RUNNERS.contains(&program) {
        for (i, a) in args.iter().enumerate() {
            let lower = a.to_lowercase();
            if let Some(cli) = AGENT_CLIS.iter().find(|c| lower.contains(c.package)) {
                return found(i, cli);
            }
        }
    }
    None
}

/// Whether `name` (as written: `path`) is one of `cli`'s programs. Cursor's
/// `agent` is a common name: it counts when found through `PATH` or where
/// Cursor installs it, not as a project's own `./agent`.
fn is_agent_program(cli: &AgentCli, name: &str, path: &str) -> bool {
    cli.programs.contains(&name)
        && (name != "agent" || !path.contains('/') || path.contains("cursor") || path.ends_with("/.local/bin/agent"))
}

/// Whether a word may become something else when the shell runs it: an
/// expansion (`$X`, `` `x` ``), or an unquoted glob that may match a file
/// named like an option (a word holding spaces was quoted).
fn may_expand(word: &str) -> bool {
    word.contains(['$', '`']) || (!word.contains(char::is_whitespace) && word.starts_with(['*', '?', '[', '{']))
}

/// Why a part that starts a coding agent may not: started so that it may
/// not run with the hook settings Rein guards (another folder, variables,
/// a wrapper changing user or environment, an option Rein does not vouch
/// for, a subcommand that changes its configuration, arguments known only
/// when it runs). A plain start is left to the policy.
///
/// `folder` is the event's folder; without one, where the command starts
/// (a Gemini `run_shell_command` may start it in another `directory`).
fn nested_agent(input: &Json, program: &str, args: &[String], env: &[String], folder: Option<&str>) -> Option<String> {
    let path = input.get("path").and_then(Json::as_str).unwrap_or(program);
    let (cli, agent_args) = nested_agent_call(program, path, args)?;
    let refuse = |how: String| {
        Some(format!(
            "starting a nested coding agent (`{}`) {how}: Rein cannot vouch that it runs with its hook settings, \
             which are not the agent's to change, whatever the policy says (start it from the agent's folder with \
             only options that keep its settings, or ask a person)",
            cli.name
        ))
    };
    if let Some(name) = env.first() {
        return refuse(format!("with `{name}` set"));
    }
    let via = list(input, "via");
    if let Some(w) = via.iter().find(|w| !wrapper_keeps_settings(w)) {
        return refuse(format!("through `{w}`"));
    }
    let cwd = folder.unwrap_or_else(|| input.get("cwd").and_then(Json::as_str).unwrap_or_default());
    let dirs = list(input, "dirs");
    if dirs.is_empty() || dirs.iter().any(|d| d != cwd) {
        return refuse("in another folder than the agent's (whose project settings it would not read)".to_string());
    }
    let mut positional: Vec<&str> = Vec::new();
    let mut options_end = false;
    let mut i = 0;
    while let Some(a) = agent_args.get(i) {
        i += 1;
        if options_end || a == "-" || !a.starts_with('-') {
            if !options_end && may_expand(a) {
                return refuse(format!(
                    "with `{a}`, which may become an option when it runs (put the prompt after `--`)"
                ));
            }
            positional.push(a);
            continue;
        }
        if a == "--" {
            options_end = true;
            continue;
        }
        let (name, inline) = match a.strip_prefix("--") {
            Some(long) => match long.split_once('=') {
                Some((n, v)) => (&a[..n.len() + 2], Some(v)),
                None => (a.as_str(), None),
            },
            None => (
                &a[..a.char_indices().nth(2).map_or(a.len(), |(k, _)| k)],
                a.get(2..).filter(|v| !v.is_empty()),
            ),
        };
        let Some(&(_, takes_value)) = cli.options.iter().find(|(o, _)| *o == name) else {
            return refuse(format!("with `{name}`"));
        };
        let value = match (takes_value, inline) {
            (true, Some(v)) => Some(v),
            // The next word, unless it is an option itself: the agents'
            // parsers read `gemini -p --yolo` as two options (an empty
            // prompt and YOLO), so it is judged as one.
            (true, None) => match agent_args.get(i) {
                Some(next) if !(next.starts_with('-') && next != "-") => {
                    i += 1;
                    Some(next.as_str())
                }
                _ => None,
            },
            // `-pv`, `--print=x`: not a form Rein reads.
            (false, Some(_)) => return refuse(format!("with `{a}`")),
            (false, None) => None,
        };
        if let Some(v) = value {
            if may_expand(v) || !agent_option_value_ok(cli.name, name, v) {
                return refuse(format!("with `{name} {v}`"));
            }
        }
    }
    if let Some(sub) = positional.first().filter(|s| cli.subcommands.contains(s)) {
        let reads = positional
            .get(1)
            .is_some_and(|w| ["list", "get", "list-tools"].contains(w));
        if !reads {
            return refuse(format!(
                "to run `{} {sub}`, which changes its configuration or runs it elsewhere",
                cli.name
            ));
        }
    }
    None
}

/// How far a path reaches.
#[derive(Clone, Copy)]
enum Cover {
    /// The path itself.
    Exact,
    /// The path, read as a shell glob.
    Glob,
    /// The path as a glob, and everything below it.
    Ancestor,
}

/// `text` with `%XX` escapes decoded (invalid ones kept as written).
fn percent_decoded(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Why `path` may not be changed if it is a coding agent's hook settings
/// in any folder (`src/.claude/settings.json`, `x/.codex/config.toml`):
/// an agent started there (by the user, later) reads them, so one planted
/// below the project turns the hooks off for it.
fn agent_settings_refusal(path: &str) -> Option<String> {
    let folded = path.to_lowercase();
    let mut parts = folded.trim_end_matches('/').rsplit('/');
    let (file, dir) = (parts.next()?, parts.next()?);
    let settings = AGENT_SETTINGS.iter().any(|(d, files)| {
        *d == dir
            && (files.iter().any(|f| f.to_lowercase() == file) || (dir == ".codex" && file.ends_with(".config.toml")))
    });
    settings.then(|| {
        format!(
            "`{path}` is a coding agent's hook settings (an agent started in that folder reads them): the agent may \
             not change it, whatever the policy says"
        )
    })
}

/// The name by which a word or code may mean a protected file: its last
/// component, lower-cased, with its folder for a name too common to mean
/// it alone (Gemini's `.gemini/.env`, not every `.env`).
fn telling_name(path: &str) -> String {
    const TOO_COMMON: &[&str] = &[".env"];
    let name = file_name_folded(path);
    match TOO_COMMON.contains(&name.as_str()) {
        true => tail_folded(path, 2),
        false => name,
    }
}

/// The last `n` components of `path`, lower-cased.
fn tail_folded(path: &str, n: usize) -> String {
    let parts: Vec<&str> = path.trim_end_matches('/').rsplit('/').take(n).collect();
    parts.into_iter().rev().collect::<Vec<_>>().join("/").to_lowercase()
}

/// The last component of `path`, lower-cased.
fn file_name_folded(path: &str) -> String {
    path.trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or_default()
        .to_lowercase()
}

fn refusal(e: &Entry, verb: &str) -> String {
    format!(
        "`{}` is {}: the agent may not {verb}, whatever the policy says",
        e.path, e.what
    )
}

fn list(input: &Json, key: &str) -> Vec<String> {
    input
        .get(key)
        .and_then(Json::as_array)
        .map(|a| a.iter().filter_map(Json::as_str).map(str::to_string).collect())
        .unwrap_or_default()
}

/// Every string in `v` (to a bounded depth and count).
fn strings_in(v: &Json, depth: usize, out: &mut Vec<String>) {
    if depth > 16 || out.len() > 1024 {
        return;
    }
    match v {
        Json::String(s) => out.push(s.clone()),
        Json::Array(items) => items.iter().for_each(|i| strings_in(i, depth + 1, out)),
        Json::Object(m) => m.values().for_each(|i| strings_in(i, depth + 1, out)),
        _ => {}
    }
}

/// `path` is `dir` or below it (both normalised, absolute).
fn under(path: &str, dir: &str) -> bool {
    let dir = dir.trim_end_matches('/');
    path == dir || dir.is_empty() || path.strip_prefix(dir).is_some_and(|rest| rest.starts_with('/'))
}

/// A glob pattern below a protected directory (`cache/*`).
fn under_glob_dir(pattern: &str, e: &Entry) -> bool {
    e.kind == Kind::Dir && glob_prefix_may_be_under(pattern, &e.folded)
}

fn glob_prefix_may_be_under(pattern: &str, dir: &str) -> bool {
    // The pattern's literal directories are below `dir`, or the pattern
    // reaches into it (`/home/u/.cache/re*n/x`).
    let p: Vec<&str> = pattern.split('/').collect();
    let d: Vec<&str> = dir.split('/').collect();
    p.len() > d.len() && p.iter().zip(&d).all(|(pc, dc)| segment_may_match(pc, dc))
}

/// Whether some path matches both the shell glob `pattern` and the literal
/// `path` (all lower-case). `*`, `?`, `[…]` stay within one segment, `**`
/// crosses segments, `{a,b}` alternatives are expanded.
pub fn glob_may_match(pattern: &str, path: &str) -> bool {
    if !pattern.contains(['*', '?', '[', '{']) {
        return pattern == path;
    }
    // The matchers are memoised (time bounded by the product of the
    // lengths); a pattern this long is taken as matching (refused).
    if pattern.len() > 16 * 1024 {
        return true;
    }
    expand_braces(pattern, 0)
        .iter()
        .any(|p| segments_match(&p.split('/').collect::<Vec<_>>(), &path.split('/').collect::<Vec<_>>()))
}

fn expand_braces(pattern: &str, depth: usize) -> Vec<String> {
    // Bounded: a pattern with many alternatives is taken as matching
    // anything rather than expanded without end.
    let Some(open) = pattern.find('{') else {
        return vec![pattern.to_string()];
    };
    let Some(close_rel) = pattern[open..].find('}') else {
        return vec![pattern.to_string()];
    };
    if depth > 4 {
        return vec!["**".to_string()];
    }
    let close = open + close_rel;
    let (head, body, tail) = (&pattern[..open], &pattern[open + 1..close], &pattern[close + 1..]);
    body.split(',')
        .take(64)
        .flat_map(|alt| expand_braces(&format!("{head}{alt}{tail}"), depth + 1))
        .take(256)
        .collect()
}

fn segments_match(p: &[&str], s: &[&str]) -> bool {
    // Memoised on (pattern segment, path segment): `**` may skip any number
    // of segments, which plain recursion would retry exponentially.
    fn go(p: &[&str], s: &[&str], i: usize, j: usize, memo: &mut [Option<bool>]) -> bool {
        let key = i * (s.len() + 1) + j;
        if let Some(known) = memo[key] {
            return known;
        }
        let result = match (p.get(i), s.get(j)) {
            (None, None) => true,
            (Some(&"**"), _) => go(p, s, i + 1, j, memo) || (j < s.len() && go(p, s, i, j + 1, memo)),
            (Some(pc), Some(sc)) => segment_may_match(pc, sc) && go(p, s, i + 1, j + 1, memo),
            _ => false,
        };
        memo[key] = Some(result);
        result
    }
    let mut memo = vec![None; (p.len() + 1) * (s.len() + 1)];
    go(p, s, 0, 0, &mut memo)
}

/// One segment of a glob against one literal segment (a leading `.` must
/// be matched literally, as the shell does).
fn segment_may_match(pattern: &str, name: &str) -> bool {
    if pattern == name {
        return true;
    }
    if name.starts_with('.') && !pattern.starts_with('.') && pattern.contains(['*', '?', '[']) {
        return false;
    }
    wildcard(pattern.as_bytes(), name.as_bytes())
}

/// `*`, `?`, `[…]` (with `!`/`^` negation and ranges) and `\` escapes over
/// bytes, memoised on (pattern position, name position).
fn wildcard(p: &[u8], s: &[u8]) -> bool {
    fn go(p: &[u8], s: &[u8], i: usize, j: usize, memo: &mut [Option<bool>]) -> bool {
        let key = i * (s.len() + 1) + j;
        if let Some(known) = memo[key] {
            return known;
        }
        let result = match p.get(i) {
            None => j == s.len(),
            Some(b'*') => go(p, s, i + 1, j, memo) || (j < s.len() && go(p, s, i, j + 1, memo)),
            Some(b'?') => j < s.len() && go(p, s, i + 1, j + 1, memo),
            Some(b'[') => match p[i + 1..].iter().position(|&b| b == b']').map(|k| i + 1 + k) {
                // No closing bracket: a literal `[`.
                None => j < s.len() && s[j] == b'[' && go(p, s, i + 1, j + 1, memo),
                Some(end) => j < s.len() && class_matches(&p[i + 1..end], s[j]) && go(p, s, end + 1, j + 1, memo),
            },
            Some(b'\\') if i + 1 < p.len() => j < s.len() && s[j] == p[i + 1] && go(p, s, i + 2, j + 1, memo),
            Some(&c) => j < s.len() && s[j] == c && go(p, s, i + 1, j + 1, memo),
        };
        memo[key] = Some(result);
        result
    }
    let mut memo = vec![None; (p.len() + 1) * (s.len() + 1)];
    go(p, s, 0, 0, &mut memo)
}

fn class_matches(class: &[u8], c: u8) -> bool {
    let (negate, class) = match class.first() {
        Some(b'!' | b'^') => (true, &class[1..]),
        _ => (false, class),
    };
    let mut hit = false;
    let mut i = 0;
    while i < class.len() {
        if i + 2 < class.len() && class[i + 1] == b'-' {
            hit |= class[i] <= c && c <= class[i + 2];
            i += 3;
        } else {
            hit |= class[i] == c;
            i += 1;
        }
    }
    hit != negate
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wild_patterns_are_answered_quickly() {
        let started = std::time::Instant::now();
        let wild = format!("/p/{}b", "*a".repeat(400));
        assert!(!glob_may_match(&wild, &format!("/p/{}", "a".repeat(200))));
        assert!(glob_may_match(
            &format!("/p/{}", "*a".repeat(40)),
            &format!("/p/{}", "a".repeat(200))
        ));
        let deep = format!("/p/{}x", "**/".repeat(400));
        assert!(!glob_may_match(&deep, "/p/q/r/s/t/u/v/rein.db"));
        assert!(glob_may_match(
            &format!("/p/{}rein.db", "**/".repeat(40)),
            "/p/q/r/s/rein.db"
        ));
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
    }

    #[test]
    fn globs_may_match_literal_paths() {
        assert!(glob_may_match("/p/rein.d?", "/p/rein.db"));
        assert!(glob_may_match("/p/*.db", "/p/rein.db"));
        assert!(glob_may_match("/p/{a,rein}.db", "/p/rein.db"));
        assert!(glob_may_match("/p/**", "/p/.claude/settings.json"));
        assert!(glob_may_match("/p/.cl*/settings.json", "/p/.claude/settings.json"));
        assert!(
            !glob_may_match("/p/*/settings.json", "/p/.claude/settings.json"),
            "`*` skips dot names"
        );
        assert!(glob_may_match("/p/rein-[a-z]udit.key", "/p/rein-audit.key"));
        assert!(!glob_may_match("/p/*.txt", "/p/rein.db"));
        assert!(!glob_may_match("/q/*", "/p/rein.db"));
    }

    fn guard() -> Protected {
        let mut p = Protected::new();
        p.add_store(Path::new("/p/rein.db"));
        p.add(Path::new("/p/rein-tokens.yaml"), "Rein's tokens", Kind::Secret);
        p.add(Path::new("/p/.claude/settings.json"), "the hook's settings", Kind::File);
        p.add(Path::new("/opt/bin/rein"), "the rein executable", Kind::Binary);
        p
    }

    fn part(program: &str, args: &[&str], operands: &[&str]) -> Json {
        serde_json::json!({"program": program, "path": program, "args": args, "operands": operands,
            "dirs": ["/p"], "writes": [], "reads": [], "env": [], "understood": true})
    }

    #[test]
    fn shell_parts_that_touch_reins_files_are_refused() {
        let g = guard();
        let mut cut = part("rm", &["a", "rein.db"], &["/p/a"]);
        cut["understood"] = serde_json::json!(false);
        assert!(g.check("shell.exec", &cut).is_some(), "operands cut, args still seen");
        // After `cd "$X"` (or a part cut for size) the folder is unknown.
        for args in [
            vec!["-f", "rein.db"],
            vec!["/p/rein.db-wal"],
            vec!["x", "../Rein-Tokens.yaml"],
        ] {
            let mut lost = part("rm", &args, &[]);
            lost["understood"] = serde_json::json!(false);
            lost["dirs"] = serde_json::json!([]);
            assert!(g.check("shell.exec", &lost).is_some(), "{args:?}");
        }
        let mut lost = part("rm", &["-f", "rein.db"], &[]);
        lost["understood"] = serde_json::json!(false);
        lost["dirs"] = serde_json::json!(["/elsewhere"]);
        assert!(
            g.check("shell.exec", &lost).is_some(),
            "a folder given for one Rein cannot know"
        );
        let mut lost = part("rm", &["notes.txt"], &[]);
        lost["understood"] = serde_json::json!(false);
        lost["dirs"] = serde_json::json!([]);
        assert_eq!(g.check("shell.exec", &lost), None);
        for (program, args, operands) in [
            ("rm", vec!["-f", "rein.db"], vec!["/p/rein.db"]),
            ("mv", vec![".claude", "x"], vec!["/p/.claude", "/p/x"]),
            ("cp", vec!["x", "rein.db"], vec!["/p/x", "/p/rein.db"]),
            ("sqlite3", vec!["rein.db"], vec!["/p/rein.db"]),
            ("find", vec![".", "-name", "rein.db", "-delete"], vec!["/p"]),
            ("find", vec![".claude", "-fprint", "x"], vec!["/p/.claude", "/p/x"]),
            (
                "find",
                vec![".", "-fprint", ".claude/settings.json"],
                vec!["/p", "/p/.claude/settings.json"],
            ),
            ("sqlite3", vec![":memory:", "attach 'rein.db' as x"], vec![]),
            (
                "sqlite3",
                vec!["file:/p/rein%2Edb?mode=rw", "delete from audit"],
                vec![],
            ),
            ("sqlite3", vec!["file:%2fp%2f%52ein.db"], vec![]),
            ("dd", vec!["if=/dev/zero", "of=rein.db-wal"], vec![]),
            ("cat", vec!["rein-tokens.yaml"], vec!["/p/rein-tokens.yaml"]),
            ("chmod", vec!["777", "rein.d?"], vec!["/p/777", "/p/rein.d?"]),
            ("cp", vec!["/opt/bin/rein", "/tmp/r"], vec!["/opt/bin/rein", "/tmp/r"]),
            ("rein", vec!["approvals", "grant", "x", "--as", "alice"], vec![]),
            ("rein", vec!["serve", "-p", "x"], vec![]),
            ("unknown-tool", vec!["--out=rein.db"], vec![]),
            ("r", vec!["approvals", "--db", "x", "grant", "id"], vec![]),
            // A copy of rein told `approvals grant` through an expansion or a glob.
            ("r", vec!["approvals", "$x", "id"], vec![]),
            ("r", vec!["approvals", "$(echo grant)", "id"], vec![]),
            ("r", vec!["ap*ls", "grant", "id"], vec![]),
            ("r", vec!["approvals", "{grant,x}", "id"], vec![]),
            ("r", vec!["approvals", "gr?nt", "id"], vec![]),
            ("r", vec!["$A", "de*", "id"], vec![]),
        ] {
            let input = part(program, &args, &operands);
            assert!(g.check("shell.exec", &input).is_some(), "{program} {args:?}");
        }
        for (program, args, operands) in [
            ("cat", vec!["rein.db"], vec!["/p/rein.db"]),
            ("ls", vec!["-la", "."], vec!["/p"]),
            ("rm", vec!["-rf", "build"], vec!["/p/build"]),
            ("git", vec!["add", "."], vec!["/p/add", "/p"]),
            ("rein", vec!["approvals", "list"], vec![]),
            ("rein", vec!["test", "examples/"], vec![]),
            ("ls", vec!["-l", "/opt/bin/rein"], vec!["/opt/bin/rein"]),
            // Nothing protected exists below /p to be removed.
            ("rm", vec!["-rf", "."], vec!["/p"]),
            ("git", vec!["clean", "-fdx"], vec![]),
            ("echo", vec!["approvals", "$x"], vec![]),
            ("find", vec![".", "-name", "*.json"], vec!["/p"]),
            ("find", vec!["/p/.claude", "-type", "f"], vec!["/p/.claude"]),
        ] {
            let mut input = part(program, &args, &operands);
            input["known"] = serde_json::json!(true);
            assert_eq!(g.check("shell.exec", &input), None, "{program} {args:?}");
        }
    }

    #[test]
    fn removing_a_tree_that_holds_a_protected_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().canonicalize().unwrap();
        std::fs::write(p.join("rein.db"), "").unwrap();
        let mut g = Protected::new();
        g.add_store(&p.join("rein.db"));
        let d = p.to_string_lossy().into_owned();
        for (program, args, operands) in [
            ("rm", vec!["-rf", "."], vec![d.clone()]),
            (
                "rm",
                vec!["-rf", ".."],
                vec![p.parent().unwrap().to_string_lossy().into_owned()],
            ),
            ("git", vec!["clean", "-fdx"], vec![]),
            ("cp", vec!["-r", "x", "."], vec![format!("{d}/x"), d.clone()]),
            ("tar", vec!["xf", "evil.tar"], vec![format!("{d}/evil.tar")]),
            ("unzip", vec!["evil.zip"], vec![format!("{d}/evil.zip")]),
            ("patch", vec!["-p1"], vec![]),
            ("git", vec!["checkout", "other"], vec![]),
            ("git", vec!["merge", "other"], vec![]),
            // Global options with values before the subcommand.
            ("git", vec!["-C", ".", "clean", "-fdx"], vec![]),
            ("git", vec!["-c", "color.ui=never", "stash"], vec![]),
            (
                "git",
                vec!["--git-dir", ".git", "--work-tree", ".", "reset", "--hard"],
                vec![],
            ),
            ("git", vec!["--no-pager", "-C", ".", "checkout", "--", "."], vec![]),
        ] {
            let mut input = part(program, &args, &[]);
            input["operands"] = serde_json::json!(operands);
            input["dirs"] = serde_json::json!([d]);
            assert!(g.check("shell.exec", &input).is_some(), "{program} {args:?}");
        }
    }

    #[test]
    fn reading_a_tree_that_holds_a_protected_file_is_fine() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().canonicalize().unwrap();
        std::fs::write(p.join("rein.db"), "").unwrap();
        let mut g = Protected::new();
        g.add_store(&p.join("rein.db"));
        let d = p.to_string_lossy().into_owned();
        for (program, args, operands) in [
            (
                "tar",
                vec!["czf", "/tmp/a.tgz", "."],
                vec!["/tmp/a.tgz".to_string(), d.clone()],
            ),
            (
                "zip",
                vec!["-r", "/tmp/a.zip", "."],
                vec!["/tmp/a.zip".to_string(), d.clone()],
            ),
            ("git", vec!["checkout", "-b", "feature"], vec![]),
            ("grep", vec!["-r", "x", "."], vec![d.clone()]),
        ] {
            let mut input = part(program, &args, &[]);
            input["operands"] = serde_json::json!(operands);
            input["dirs"] = serde_json::json!([d]);
            assert_eq!(g.check("shell.exec", &input), None, "{program} {args:?}");
        }
    }

    #[test]
    fn mcp_and_unmapped_tools_naming_a_protected_path_are_refused() {
        let g = guard();
        let input = serde_json::json!({"path": "/p/.claude/settings.json", "content": "{}"});
        assert!(g.check("mcp.filesystem.write_file", &input).is_some());
        let input =
            serde_json::json!({"tool": "X", "input_json": "{\"target\": [\"/p/rein.db\"]}", "unmapped_fields": []});
        assert!(g.check("agent.unknown_tool", &input).is_some());
        let input = serde_json::json!({"path": "/p/src/a.rs"});
        assert_eq!(g.check("mcp.filesystem.write_file", &input), None);
        // Relative to a root only the server knows, `~` or a file URL.
        for path in [
            ".claude/settings.json",
            "~/p/rein.db",
            "file:///p/rein.db",
            "sub/../rein.db",
        ] {
            let input = serde_json::json!({"path": path, "content": "{}"});
            assert!(g.check("mcp.filesystem.write_file", &input).is_some(), "{path}");
        }
        let input = serde_json::json!({"path": "src/main.rs", "content": "{}"});
        assert_eq!(g.check("mcp.filesystem.write_file", &input), None);
    }

    #[test]
    fn redirections_writes_and_case_are_seen() {
        let g = guard();
        let mut input = part("echo", &["x"], &[]);
        input["writes"] = serde_json::json!(["/p/.claude/Settings.JSON"]);
        assert!(g.check("shell.exec", &input).is_some());
        let input = serde_json::json!({"path": "/p/.claude/settings.json"});
        assert!(g.check("file.write", &input).is_some());
        assert!(g.check("file.read", &input).is_none());
        let input = serde_json::json!({"path": "/p/rein-tokens.yaml"});
        assert!(g.check("file.read", &input).is_some());
    }

    /// A project (a repository) and a home holding every agent's hook
    /// settings, events sent by a real agent's tool call through the real
    /// mapping, and the guard as a hook builds it.
    struct Scene {
        _dir: tempfile::TempDir,
        root: PathBuf,
        project: PathBuf,
        home: PathBuf,
    }

    fn scene() -> Scene {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        let project = root.join("project");
        let home = root.join("home");
        for (base, file) in [
            (&project, ".git/HEAD"),
            (&project, ".claude/settings.json"),
            (&project, ".codex/config.toml"),
            (&project, ".codex/hooks.json"),
            (&project, ".gemini/settings.json"),
            (&project, ".cursor/hooks.json"),
            (&project, "src/main.rs"),
            (&home, ".claude/settings.json"),
            (&home, ".codex/config.toml"),
            (&home, ".codex/work.config.toml"),
            (&home, ".gemini/settings.json"),
            (&home, ".cursor/hooks.json"),
        ] {
            let path = base.join(file);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, "{}").unwrap();
        }
        Scene {
            _dir: dir,
            root,
            project,
            home,
        }
    }

    const SENDERS: [Agent; 4] = [Agent::ClaudeCode, Agent::Codex, Agent::Gemini, Agent::Cursor];

    fn shell_tool(agent: Agent) -> &'static str {
        match agent {
            Agent::Gemini => "run_shell_command",
            _ => "Bash",
        }
    }

    /// Why the guard refuses `agent`'s call of `tool` with `input` from the
    /// project, the hook's variables being `vars`.
    fn refusal_of(sc: &Scene, agent: Agent, tool: &str, input: Json, vars: &[(&str, String)]) -> Option<String> {
        let text = match agent {
            // Cursor's own shell event.
            Agent::Cursor => serde_json::json!({"hook_event_name": "beforeShellExecution", "cwd": sc.project,
                "command": input["command"], "workspace_roots": [sc.project], "conversation_id": "c",
                "generation_id": "g"}),
            Agent::Gemini => serde_json::json!({"hook_event_name": "BeforeTool", "cwd": sc.project,
                "tool_name": tool, "tool_input": input, "session_id": "s"}),
            _ => serde_json::json!({"hook_event_name": "PreToolUse", "cwd": sc.project, "tool_name": tool,
                "tool_input": input, "session_id": "s"}),
        };
        let event = crate::event::parse_event(agent, text.to_string().as_bytes()).unwrap();
        let var = |k: &str| {
            vars.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| std::ffi::OsString::from(v))
        };
        let guard = Protected::new().with_agent_settings_in(&event, Some(&sc.home), &var);
        let call = crate::map::map_tool(&event, Some(&sc.home));
        call.inputs.iter().find_map(|i| guard.check(&call.action, i))
    }

    fn command_refusal(sc: &Scene, agent: Agent, command: &str, vars: &[(&str, String)]) -> Option<String> {
        refusal_of(
            sc,
            agent,
            shell_tool(agent),
            serde_json::json!({"command": command}),
            vars,
        )
    }

    use crate::event::Agent;

    #[test]
    fn every_agents_hook_settings_are_guarded_whichever_agent_asks() {
        let sc = scene();
        let h = sc.home.display();
        // Each command, and the protected file its refusal must name ("":
        // any, for a command on a folder that holds several).
        let commands = [
            ("mv .codex x".to_string(), "project/.codex/"),
            ("mv .cursor/hooks.json /tmp/h".to_string(), "project/.cursor/hooks.json"),
            ("rm -rf ~/.gemini".to_string(), "home/.gemini/settings.json"),
            ("rm -rf ~/.cursor".to_string(), "home/.cursor/hooks.json"),
            ("rm -f .cursor/hooks.json".to_string(), "project/.cursor/hooks.json"),
            ("cd .codex && rm hooks.json".to_string(), "project/.codex/hooks.json"),
            (
                "ln -sf /dev/null .cursor/hooks.json".to_string(),
                "project/.cursor/hooks.json",
            ),
            (
                "ln -s /tmp/evil ~/.codex/hooks.json".to_string(),
                "home/.codex/hooks.json",
            ),
            (
                "ln -s ~/.codex cx && echo x > cx/config.toml".to_string(),
                "home/.codex/",
            ),
            (
                "sed -i s/rein/true/ .gemini/settings.json".to_string(),
                "project/.gemini/settings.json",
            ),
            (
                "sed -i s/x/y/ ~/.codex/config.toml".to_string(),
                "home/.codex/config.toml",
            ),
            ("cp /tmp/x ~/.cursor/hooks.json".to_string(), "home/.cursor/hooks.json"),
            (
                "echo {} | tee .codex/hooks.json".to_string(),
                "project/.codex/hooks.json",
            ),
            (
                "echo '{}' > ~/.gemini/settings.json".to_string(),
                "home/.gemini/settings.json",
            ),
            (
                "printf x >> .claude/settings.local.json".to_string(),
                "project/.claude/settings.local.json",
            ),
            (
                "echo 'GEMINI_CLI_SYSTEM_SETTINGS_PATH=/tmp/s' >> .gemini/.env".to_string(),
                "project/.gemini/.env",
            ),
            (
                "echo '{}' > ~/.gemini/trustedFolders.json".to_string(),
                "home/.gemini/trustedFolders.json",
            ),
            ("echo '{}' > ~/.claude.json".to_string(), "home/.claude.json"),
            ("git checkout -- .cursor".to_string(), ""),
            ("git restore .codex".to_string(), ""),
            (
                "truncate -s0 ~/.claude/settings.json".to_string(),
                "home/.claude/settings.json",
            ),
            ("chmod 000 .codex/config.toml".to_string(), "project/.codex/config.toml"),
            (
                "touch .codex/requirements.toml".to_string(),
                "project/.codex/requirements.toml",
            ),
            (
                "dd if=/dev/null of=.cursor/hooks.json".to_string(),
                "project/.cursor/hooks.json",
            ),
            ("find ~/.codex -delete".to_string(), "home/.codex/"),
            ("cp -r /tmp/evil/. .".to_string(), ""),
            ("tar xf /tmp/evil.tar".to_string(), ""),
            (
                "python3 -c \"open('.cursor/hooks.json','w')\"".to_string(),
                "hooks.json",
            ),
            (
                "python3 -c \"open('.gemini/.env','a')\"".to_string(),
                "project/.gemini/.env",
            ),
            (
                "mv ~/.codex/work.config.toml /tmp/".to_string(),
                "home/.codex/work.config.toml",
            ),
            (
                "echo x > /etc/codex/requirements.toml".to_string(),
                "/etc/codex/requirements.toml",
            ),
            (
                "echo x > /etc/gemini-cli/settings.json".to_string(),
                "/etc/gemini-cli/settings.json",
            ),
            ("echo x > /etc/cursor/hooks.json".to_string(), "/etc/cursor/hooks.json"),
            (
                "echo x > /etc/claude-code/managed-settings.json".to_string(),
                "/etc/claude-code/managed-settings.json",
            ),
            (format!("rm {h}/.codex/hooks.json"), "home/.codex/hooks.json"),
            // Planted below the project, for an agent started there.
            (
                "mkdir -p src/.codex && echo 'hooks=false' > src/.codex/config.toml".to_string(),
                "src/.codex/config.toml",
            ),
            (
                "cp /tmp/s.json src/.claude/settings.json".to_string(),
                "src/.claude/settings.json",
            ),
            (
                "tee docs/.gemini/settings.json < /tmp/x".to_string(),
                "docs/.gemini/settings.json",
            ),
            ("touch lib/.cursor/hooks.json".to_string(), "lib/.cursor/hooks.json"),
        ];
        for agent in SENDERS {
            for (command, names) in &commands {
                let why = command_refusal(&sc, agent, command, &[]);
                assert!(
                    why.as_deref().is_some_and(|w| w.contains(names)),
                    "{agent:?}: {command}: {why:?}"
                );
            }
        }
    }

    #[test]
    fn settings_moved_by_the_agents_variables_are_guarded() {
        let sc = scene();
        let r = sc.root.display();
        let vars = [
            ("CODEX_HOME", format!("{r}/codex-home")),
            ("CLAUDE_CONFIG_DIR", format!("{r}/claude-config")),
            ("GEMINI_CLI_HOME", format!("{r}/gemini-home")),
            ("GEMINI_CLI_SYSTEM_SETTINGS_PATH", format!("{r}/etc/gemini.json")),
            ("GEMINI_CLI_TRUSTED_FOLDERS_PATH", format!("{r}/trusted.json")),
        ];
        for path in [
            "codex-home/hooks.json",
            "codex-home/config.toml",
            "claude-config/settings.json",
            "gemini-home/.gemini/settings.json",
            "etc/gemini.json",
            "etc/system-defaults.json",
            "trusted.json",
        ] {
            let command = format!("echo x > {r}/{path}");
            for agent in SENDERS {
                assert!(
                    command_refusal(&sc, agent, &command, &vars).is_some(),
                    "{agent:?}: {path}"
                );
            }
            // (A `.gemini/settings.json` is an agent's settings wherever it is.)
            if !path.contains("/.gemini/") {
                assert_eq!(
                    command_refusal(&sc, Agent::Codex, &command, &[]),
                    None,
                    "{path} without variables"
                );
            }
        }
    }

    #[test]
    fn file_tools_and_patches_of_every_agent_are_refused_on_hook_settings() {
        let sc = scene();
        let h = sc.home.display();
        let cases = [
            (
                Agent::ClaudeCode,
                "Write",
                serde_json::json!({"file_path": ".cursor/hooks.json", "content": "{}"}),
            ),
            (
                Agent::ClaudeCode,
                "Edit",
                serde_json::json!({"file_path": format!("{h}/.codex/hooks.json"), "old_string": "a", "new_string": "b"}),
            ),
            (
                Agent::Codex,
                "apply_patch",
                serde_json::json!({"command": "*** Begin Patch\n*** Update File: .codex/config.toml\n@@\n-a\n+b\n*** End Patch"}),
            ),
            (
                Agent::Codex,
                "apply_patch",
                serde_json::json!({"command": "*** Begin Patch\n*** Add File: x\n+a\n*** Move to: .cursor/hooks.json\n*** End Patch"}),
            ),
            (
                Agent::Gemini,
                "write_file",
                serde_json::json!({"file_path": format!("{h}/.gemini/settings.json"), "content": "{}"}),
            ),
            (
                Agent::Gemini,
                "replace",
                serde_json::json!({"file_path": ".claude/settings.json", "old_string": "a", "new_string": "b"}),
            ),
        ];
        for (agent, tool, input) in cases {
            assert!(
                refusal_of(&sc, agent, tool, input.clone(), &[]).is_some(),
                "{agent:?} {tool} {input}"
            );
        }
        let planted = serde_json::json!({"file_path": "src/.claude/settings.local.json", "content": "{}"});
        assert!(refusal_of(&sc, Agent::ClaudeCode, "Write", planted, &[]).is_some());
        let fine = serde_json::json!({"file_path": "src/main.rs", "content": "fn main() {}"});
        assert_eq!(refusal_of(&sc, Agent::ClaudeCode, "Write", fine, &[]), None);
    }

    #[test]
    fn nested_agents_started_with_other_settings_are_refused() {
        let sc = scene();
        let commands = [
            // Options that turn hooks off or load other settings.
            "codex -c features.hooks=false exec hi",
            "codex --config features.hooks=false exec hi",
            "codex -cfeatures.hooks=false exec hi",
            "codex exec --disable hooks hi",
            "codex --profile evil exec hi",
            "codex exec --ignore-user-config hi",
            "codex exec --dangerously-bypass-approvals-and-sandbox hi",
            "codex --dangerously-bypass-hook-trust exec hi",
            "codex exec -s danger-full-access hi",
            "codex exec --worktree hi",
            "codex -C /tmp exec hi",
            "codex features disable hooks",
            "codex mcp add x -- rm -rf /",
            "codex sandbox linux rm -rf src",
            "claude --settings '{\"disableAllHooks\":true}' -p hi",
            "claude --settings /tmp/s.json -p hi",
            "claude --dangerously-skip-permissions -p hi",
            "claude --bare -p hi",
            "claude --safe-mode -p hi",
            "claude --restricted -p hi",
            "claude --setting-sources user -p hi",
            "claude --permission-mode bypassPermissions -p hi",
            "claude --mcp-config /tmp/m.json -p hi",
            "claude --plugin-dir /tmp/p -p hi",
            "claude --agents '{}' -p hi",
            "claude -w -p hi",
            "claude mcp add x -- rm -rf /",
            "claude plugin install x",
            "claude update",
            "gemini --yolo -p hi",
            "gemini -y -p hi",
            "gemini -p --yolo",
            "codex exec -m --dangerously-bypass-approvals-and-sandbox hi",
            "gemini --approval-mode yolo -p hi",
            "gemini -s -p hi",
            "gemini --policy /tmp/p -p hi",
            "gemini -e none -p hi",
            "gemini --allowed-tools run_shell_command -p hi",
            "gemini -w -p hi",
            "gemini hooks migrate",
            "gemini extensions install https://example.com/x",
            "gemini mcp add x rm",
            "cursor-agent -f -p hi",
            "cursor-agent --force -p hi",
            "cursor-agent --yolo -p hi",
            "cursor-agent --sandbox disabled -p hi",
            "cursor-agent --workspace /tmp -p hi",
            "agent --approve-mcps -p hi",
            // Through a package runner or node.
            "npx -y @openai/codex -c features.hooks=false exec hi",
            "npx @google/gemini-cli --yolo -p hi",
            "pnpm dlx @openai/codex --disable hooks exec hi",
            "node node_modules/@anthropic-ai/claude-code/cli.js --bare -p hi",
            "node node_modules/.bin/gemini --yolo -p hi",
            "~/.local/bin/agent --force -p hi",
            // Variables, for the program or the rest of the line.
            "CODEX_HOME=/tmp/x codex exec hi",
            "export CODEX_HOME=/tmp/x; codex exec hi",
            "GEMINI_CLI_SYSTEM_SETTINGS_PATH=/tmp/s gemini -p hi",
            "CLAUDE_CODE_SIMPLE=1 claude -p hi",
            "FOO=1 codex exec hi",
            "HOME=/tmp/h claude -p hi",
            "export HOME=/tmp/h && gemini -p hi",
            "HOME=/tmp; codex exec hi",
            "export CLAUDE_CONFIG_DIR=/tmp/c",
            "unset CODEX_HOME",
            "declare -x GEMINI_CLI_HOME=/tmp",
            "printf -v CODEX_HOME /tmp",
            "read CODEX_HOME <<< /tmp/x",
            "export REIN_DB=/tmp/x.db",
            "declare -n r=CODEX_HOME; r=/tmp/x; codex exec hi",
            "export ${X}=/tmp/x",
            // Another user, environment or folder.
            "env HOME=/tmp codex exec hi",
            "env -i codex exec hi",
            "sudo -u bob codex exec hi",
            "cd /tmp && codex exec hi",
            "bash -c 'cd /tmp && gemini -p hi'",
            // Arguments known only when it runs.
            "codex exec $PROMPT",
            "gemini $FLAGS -p hi",
            "echo --yolo | xargs gemini -p hi",
            "codex exec *",
        ];
        for agent in SENDERS {
            for command in commands {
                let why = command_refusal(&sc, agent, command, &[]);
                assert!(why.is_some(), "{agent:?}: {command}");
            }
        }
    }

    #[test]
    fn a_settings_file_that_is_a_link_is_guarded_where_it_points() {
        let sc = scene();
        let shared = sc.root.join("shared");
        std::fs::create_dir_all(&shared).unwrap();
        std::fs::write(shared.join("team-hooks.json"), "{}").unwrap();
        std::fs::remove_file(sc.project.join(".cursor/hooks.json")).unwrap();
        std::os::unix::fs::symlink(shared.join("team-hooks.json"), sc.project.join(".cursor/hooks.json")).unwrap();
        let command = format!("echo x > {}", shared.join("team-hooks.json").display());
        for agent in SENDERS {
            let why = command_refusal(&sc, agent, &command, &[]);
            assert!(why.is_some_and(|w| w.contains("shared/team-hooks.json")), "{agent:?}");
        }
    }

    #[test]
    fn a_nested_agent_in_another_directory_of_gemini_is_refused() {
        let sc = scene();
        for directory in ["/tmp", "src"] {
            let input = serde_json::json!({"command": "codex exec hi", "directory": directory});
            let why = refusal_of(&sc, Agent::Gemini, "run_shell_command", input, &[]);
            assert!(why.is_some_and(|w| w.contains("another folder")), "{directory}");
        }
    }

    #[test]
    fn plain_nested_agents_and_reading_settings_are_left_to_the_policy() {
        let sc = scene();
        for command in [
            "codex exec 'fix the bug'",
            "codex exec -m o3 -- \"$TASK\"",
            "codex -c model=o3 exec hi",
            "codex exec - < task.md",
            "codex exec --json -o out.txt hi",
            "codex mcp list",
            "codex --version",
            "timeout 600 codex exec hi",
            "bash -c 'codex exec hi'",
            "npx -y @openai/codex exec hi",
            "gemini -p 'what is 2*3?'",
            "gemini --approval-mode plan -p hi",
            "gemini extensions list",
            "claude -p hello --output-format json",
            "claude --permission-mode plan -p hi",
            "claude mcp list",
            "cursor-agent -p hi --output-format json",
            "cat .codex/config.toml ~/.gemini/settings.json",
            "grep -r hooks .cursor/hooks.json",
            "ls -la .cursor ~/.codex",
            "HOME=/tmp/x cargo test",
            "git status",
            "echo $HOME",
            "printf '%s' CODEX_HOME",
            "node build.js codex --watch",
            "node scripts/agent.js --port 3000",
            "./agent --serve",
            "npm run codex -- --yolo",
            "export PATH=$PATH:/x",
            "export MODE=home codex_home=x",
            "rm -rf build",
            "echo x > src/notes.txt",
            "python3 -c \"print(open('.env.example').read())\"",
        ] {
            for agent in SENDERS {
                assert_eq!(command_refusal(&sc, agent, command, &[]), None, "{agent:?}: {command}");
            }
        }
    }
}
