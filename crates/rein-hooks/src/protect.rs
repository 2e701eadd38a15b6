//! Rein's own files, guarded whatever the policy says.
//!
//! The agent a hook governs must never change Rein's store, keys, tokens,
//! policies, compiled-policy cache, the agent settings that install the
//! hook, or the `rein` executable, nor decide approvals or reload policies
//! through `rein`. [`Protected`] lists those files; [`Protected::check`]
//! looks at one mapped action input (the same input rules see, paths
//! resolved) and says why it must be refused, before any policy is asked.
//!
//! This is a guard over what a tool call or a command line says. A program
//! that opens the store by itself (a script the agent wrote, a renamed
//! copy of `sqlite3`) is not seen: an OS sandbox that makes these files
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
}

/// The files, below a project or the home folder, in which Claude Code,
/// Codex CLI and Gemini CLI configure their hooks.
const AGENT_SETTINGS: &[(&str, &str)] = &[
    (".claude", "settings.json"),
    (".claude", "settings.local.json"),
    (".codex", "config.toml"),
    (".codex", "hooks.json"),
    (".gemini", "settings.json"),
];

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
    pub fn with_agent_settings(&self, event: &HookEvent, home: Option<&Path>) -> Protected {
        let mut out = self.clone();
        // The agent's shell may have left the folder the agent started in
        // (`cd src`: the next event's `cwd` is `src`), so the settings of
        // the folders above `cwd` count too: up to the repository's root,
        // or all of them outside a repository.
        let cwd = Path::new(&event.cwd);
        let root = crate::project_root(cwd);
        let in_repository = root.join(".git").exists();
        let mut bases: Vec<std::path::PathBuf> = cwd
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
        for base in bases {
            for (dir, file) in AGENT_SETTINGS {
                out.add(&base.join(dir).join(file), "the agent's hook settings", Kind::File);
            }
        }
        out
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
            let name = file_name_folded(a);
            let named = self
                .entries
                .iter()
                .find(|e| e.kind != Kind::Dir && name.len() >= 4 && file_name_folded(&e.path) == name);
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
        if let Some(var) = list(input, "env").iter().find(|v| v.starts_with("REIN_")) {
            return Some(format!(
                "`{var}` points Rein's commands at other files; Rein's own settings are not the agent's to change"
            ));
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
                let name = Path::new(&e.path)
                    .file_name()
                    .map(|n| n.to_string_lossy().to_lowercase())
                    .unwrap_or_default();
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
        self.hit(path, cover, |_| true).map(|e| refusal(e, "change it"))
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
}
