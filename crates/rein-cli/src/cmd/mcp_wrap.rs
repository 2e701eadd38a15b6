//! `rein mcp wrap`: put every stdio server of an MCP client's configuration
//! behind the gateway, showing the diff, and take it out again (`--undo`).
//!
//! Claude Code's `.mcp.json`, Claude Desktop's `claude_desktop_config.json`
//! and Cursor's `mcp.json` share one shape: `{"mcpServers": {NAME: {"command",
//! "args", "env"} | {"type": "http"|"sse", "url", "headers"}}}`. A stdio
//! server `{command: C, args: A}` becomes `{command: REIN, args: ["mcp",
//! "gateway", "--policy", P, "--db", D, "--server", NAME, "--", C, …A]}`, so
//! the client starts the gateway and the gateway starts the server; `--undo`
//! reads C and A back from after `--`. A server counts as wrapped only when
//! this rein (the same file) runs it with those arguments: another program
//! named `rein` is reported and left, any other program is wrapped like any
//! server (Docker's own `docker mcp gateway run` among them).
//!
//! The file is read twice: into the order-preserving tree
//! ([`super::settings_file::Json`]) to check its shape and read its values,
//! and into a map of where each value lies in the text ([`Node`]). Only the
//! `command` and `args` values of the servers that change are replaced in
//! the text; every other byte (order, spacing, unknown keys, `env`, escapes)
//! stays. The original `command` and `args` elements are moved into the new
//! `args` as they were written, and the new array takes the old one's
//! layout, so wrapping then undoing gives the file back byte for byte (one
//! exception: a server written without `args` comes back with `"args": []`).

use super::settings_file::{
    absolute, installed_rein, json_error, print_diff, read_text, utf8, write_reviewed, Json, Obj,
};
use super::{printable, EXIT_ALLOW};
use anyhow::{bail, Context};
use clap::Args;
use std::path::{Path, PathBuf};

/// Where `rein mcp wrap` looks for a configuration when none is named, in
/// order: Claude Code's project file, then Cursor's.
const DEFAULT_FILES: [&str; 2] = ["./.mcp.json", "./.cursor/mcp.json"];

/// The first arguments of a server the gateway wraps.
const GATEWAY_WORDS: [&str; 2] = ["mcp", "gateway"];

#[derive(Args, Debug)]
pub struct WrapArgs {
    /// The MCP client configuration to rewrite: Claude Code's `.mcp.json`,
    /// Claude Desktop's `claude_desktop_config.json`, Cursor's `mcp.json`.
    /// Default: ./.mcp.json, else ./.cursor/mcp.json.
    #[arg(value_name = "FILE")]
    file: Option<PathBuf>,
    /// Policy file or directory the gateway decides with; written as an
    /// absolute path. Required unless --undo.
    #[arg(long, short = 'p', value_name = "POLICY", required_unless_present = "undo")]
    policy: Option<PathBuf>,
    /// SQLite store of the gateway (audit log, approvals, state); written as
    /// an absolute path. A gateway keeps its store while it runs, so one
    /// store serves one server: with --db, wrap one server at a time.
    /// Default: rein-<server>.db in the policy's folder (the policy itself
    /// if it is a folder).
    #[arg(long, value_name = "FILE", conflicts_with = "undo")]
    db: Option<PathBuf>,
    /// The rein executable the client runs, written as given. Default: the
    /// absolute path of this rein, unless it runs from cargo's build folder:
    /// then the `rein` found on PATH, and if there is none, nothing is
    /// written. With --undo: also restore servers this program runs (those
    /// run by a program named `rein` are always restored).
    #[arg(long, value_name = "PATH")]
    rein_bin: Option<PathBuf>,
    /// Take the servers out of the gateway again: each wrapped server gets
    /// back the command and arguments written after `--`.
    #[arg(long, conflicts_with = "policy")]
    undo: bool,
    /// Print the diff only; write nothing.
    #[arg(long)]
    dry_run: bool,
    /// Write without asking (rein asks only when stdin is a terminal).
    #[arg(long, short = 'y')]
    yes: bool,
}

/// Runs `rein mcp wrap`.
pub fn run(args: WrapArgs) -> anyhow::Result<u8> {
    let path = match &args.file {
        Some(file) => file.clone(),
        None => find_config()?,
    };
    let Some(text) = read_text(&path)? else {
        bail!("{} not found", path.display());
    };
    let (tree, root) = read_trees(&path, &text)?;
    let config = Config::new(&path, &text, &tree, &root)?;
    let edits = if args.undo {
        let bin = args.rein_bin.as_deref().map(utf8).transpose()?;
        config.undo(bin)
    } else {
        let Some(policy) = &args.policy else {
            bail!("--policy is required to wrap");
        };
        let gateway = Gateway::new(&args, policy)?;
        config.wrap(&gateway)?
    };
    if edits.is_empty() {
        eprintln!("{}: nothing to change", path.display());
        return Ok(EXIT_ALLOW);
    }
    let new_text = apply(&text, edits);
    let label = path.display().to_string();
    print_diff(&label, &label, &text, &new_text)?;
    if let Some(code) = write_reviewed(&path, &new_text, args.dry_run, args.yes)? {
        return Ok(code);
    }
    eprintln!(
        "wrote {}; restart the MCP client (or reload its MCP servers) to use it",
        path.display()
    );
    Ok(EXIT_ALLOW)
}

/// The first of [`DEFAULT_FILES`] that exists, said on stderr.
fn find_config() -> anyhow::Result<PathBuf> {
    for candidate in DEFAULT_FILES {
        let path = PathBuf::from(candidate);
        if path.is_file() {
            eprintln!("using {candidate} (looked for {})", DEFAULT_FILES.join(", then "));
            return Ok(path);
        }
    }
    bail!(
        "no MCP client configuration found here: looked for {}; name the file, e.g. Claude Desktop's \
         claude_desktop_config.json (~/Library/Application Support/Claude/ on macOS, %APPDATA%\\Claude\\ on \
         Windows) or Cursor's ~/.cursor/mcp.json",
        DEFAULT_FILES.join(" and ")
    )
}

/// `path`'s text `text` read as a tree of values and as a map of where
/// they lie; not JSON (or empty) is refused.
fn read_trees(path: &Path, text: &str) -> anyhow::Result<(Json, Node)> {
    if text.trim().is_empty() {
        return Err(refusal(path, "the file is empty, not an MCP client configuration"));
    }
    let tree: Json = serde_json::from_str(text).map_err(|e| json_error(path, text, &e, "wrong shape"))?;
    // A text serde_json accepted (nesting depth included) has a map of
    // positions; failing here would be a bug, reported rather than panicked.
    let root = Node::parse(text).ok_or_else(|| refusal(path, "cannot locate its values (internal error)"))?;
    Ok((tree, root))
}

fn refusal(path: &Path, why: &str) -> anyhow::Error {
    anyhow::anyhow!("{}: {why}; the file was left unchanged", path.display())
}

/// What a wrapped server runs: the rein executable and its gateway options.
struct Gateway {
    bin: String,
    policy: String,
    db: Store,
}

/// The store each wrapped server's gateway gets.
enum Store {
    /// This one (--db), for a single server.
    Given(String),
    /// `rein-<server>.db` in this folder: each gateway process keeps its
    /// store for its lifetime, so servers of one client cannot share one.
    PerServer(PathBuf),
}

impl Gateway {
    fn new(args: &WrapArgs, policy: &Path) -> anyhow::Result<Gateway> {
        // The policy is not loaded here: rules over `mcp.<server>.<tool>`
        // are typed by the contracts the gateway derives from the servers'
        // tools when it starts, so a sound gateway policy may not load on
        // its own. It must at least be there.
        if !policy.exists() {
            bail!("policy {} not found; nothing written", policy.display());
        }
        let db = match &args.db {
            Some(db) => Store::Given(resolved(db)?),
            None if policy.is_dir() => Store::PerServer(policy.to_path_buf()),
            None => Store::PerServer(policy.parent().unwrap_or(Path::new("")).to_path_buf()),
        };
        let bin = match &args.rein_bin {
            Some(bin) => utf8(bin)?.to_owned(),
            None => {
                let exe =
                    std::env::current_exe().context("cannot find this rein executable's path; pass --rein-bin")?;
                utf8(&installed_rein(&exe, "the MCP client")?)?.to_owned()
            }
        };
        Ok(Gateway {
            bin,
            policy: resolved(policy)?,
            db,
        })
    }

    /// The store of server `name`'s gateway, absolute.
    fn db(&self, name: &str) -> anyhow::Result<String> {
        match &self.db {
            Store::Given(db) => Ok(db.clone()),
            // A gateway server name is letters, digits, `_` and `-`: a
            // file name as it is.
            Store::PerServer(dir) => resolved(&dir.join(format!("rein-{name}.db"))),
        }
    }

    /// The gateway's words before `--` for server `name`.
    fn words(&self, name: &str) -> anyhow::Result<[String; 8]> {
        Ok([
            GATEWAY_WORDS[0].to_string(),
            GATEWAY_WORDS[1].to_string(),
            "--policy".to_string(),
            self.policy.clone(),
            "--db".to_string(),
            self.db(name)?,
            "--server".to_string(),
            name.to_string(),
        ])
    }
}

/// A configuration file: its text, its tree and where its values lie.
struct Config<'a> {
    path: &'a Path,
    text: &'a str,
    servers: Vec<Server<'a>>,
}

/// One entry of `mcpServers`.
struct Server<'a> {
    name: String,
    fields: &'a Obj,
    node: &'a Node,
}

impl<'a> Config<'a> {
    /// Checks `tree` and `root` (read from `text`, the content of `path`),
    /// refusing what is not a client configuration: no `mcpServers` object,
    /// a server that is neither `{command, …}` nor `{url, …}` or whose
    /// values have the wrong type, a key repeated where wrap reads or
    /// writes.
    fn new(path: &'a Path, text: &'a str, tree: &'a Json, root: &'a Node) -> anyhow::Result<Config<'a>> {
        let refuse = |why: String| refusal(path, &why);
        let (Json::Object(top), Kind::Object(top_members)) = (tree, &root.kind) else {
            return Err(refuse("not a JSON object, not an MCP client configuration".into()));
        };
        refuse_repeats(top_members, "at the top level", Some(&["mcpServers"])).map_err(refuse)?;
        let Some(servers) = top.get("mcpServers") else {
            return Err(refuse(
                "no `mcpServers` object: not an MCP client configuration (Claude Code's .mcp.json, Claude Desktop's \
                 claude_desktop_config.json, Cursor's mcp.json)"
                    .into(),
            ));
        };
        let (
            Json::Object(servers),
            Some(Node {
                kind: Kind::Object(members),
                ..
            }),
        ) = (servers, member(top_members, "mcpServers"))
        else {
            return Err(refuse("`mcpServers` must be an object of servers by name".into()));
        };
        refuse_repeats(members, "in `mcpServers`", None).map_err(refuse)?;
        let mut list = Vec::new();
        for (name, value) in &servers.0 {
            let node = member(members, name).ok_or_else(|| refuse("cannot locate a server (internal error)".into()))?;
            let fields = check_server(name, value, node).map_err(refuse)?;
            list.push(Server {
                name: name.clone(),
                fields,
                node,
            });
        }
        Ok(Config {
            path,
            text,
            servers: list,
        })
    }

    /// The edits that put every stdio server behind `gateway`, saying on
    /// stderr what happens to each server.
    fn wrap(&self, gateway: &Gateway) -> anyhow::Result<Vec<Edit>> {
        if self.servers.is_empty() {
            eprintln!("{}: `mcpServers` is empty", self.path.display());
        }
        let mut edits = Vec::new();
        let mut wrapped = Vec::new();
        // The stores of the servers wrapped before: a new one must not
        // share one (its gateway could not start beside theirs).
        let mut kept: Vec<(String, String)> = Vec::new();
        for server in &self.servers {
            let shown = printable(&server.name);
            let kind = match server.fields.get("type") {
                Some(Json::String(kind)) => Some(kind.as_str()),
                _ => None,
            };
            if let Some(Json::String(url)) = server.fields.get("url") {
                match kind {
                    None | Some("http" | "streamable-http" | "sse") => self.report_remote(gateway, server, url)?,
                    Some(other) => eprintln!(
                        "skipped `{shown}` (left as it is): a server of type `{}` cannot go behind the gateway",
                        printable(other)
                    ),
                }
                continue;
            }
            if let Some(other) = kind.filter(|k| *k != "stdio") {
                eprintln!(
                    "skipped `{shown}` (left as it is): type `{}` is not a stdio server wrap knows",
                    printable(other)
                );
                continue;
            }
            match server.runner(&gateway.bin) {
                Runner::Other => {}
                Runner::AnotherRein => {
                    eprintln!(
                        "warning: `{shown}` runs `{}`, not this rein ({}), with the gateway's arguments; left as it \
                         is: check that program, or run `rein mcp wrap --undo` and wrap again",
                        printable(server.command()),
                        printable(&gateway.bin)
                    );
                    continue;
                }
                Runner::ThisRein => {
                    if let Some(db) = server.option("--db") {
                        kept.push((db, shown.to_string()));
                    }
                    match server.option("--policy") {
                        Some(old) if old != gateway.policy => eprintln!(
                            "{shown}: already behind the gateway, with --policy {}; to change it, run `rein mcp wrap \
                             --undo` first",
                            printable(&old)
                        ),
                        _ => eprintln!("{shown}: already behind the gateway"),
                    }
                    continue;
                }
            }
            if !gateway_name(&server.name) {
                eprintln!(
                    "skipped `{shown}` (left as it is): not a gateway server name (letters, digits, `_` and `-`, not \
                     first, at most 64); rename it to wrap it"
                );
                continue;
            }
            let db = gateway.db(&server.name)?;
            if let Some((_, other)) = kept.iter().find(|(kept, _)| *kept == db) {
                return Err(refusal(
                    self.path,
                    &format!(
                        "`{shown}` would share the store {db} with `{other}`, wrapped before, and a gateway keeps its \
                         store while it runs; leave --db out (each server gets rein-<server>.db beside the policy)"
                    ),
                ));
            }
            let (command, elements) = self.stdio_parts(server);
            let mut words: Vec<String> = gateway.words(&server.name)?.iter().map(|w| json_string(w)).collect();
            words.push(json_string("--"));
            words.push(command.to_owned());
            words.extend(elements);
            self.set_command(server, json_string(&gateway.bin), words, &mut edits);
            eprintln!("{shown}: wrapped ({})", self.shown_command(server));
            wrapped.push(shown);
        }
        if let (Store::Given(db), [_, _, ..]) = (&gateway.db, wrapped.as_slice()) {
            // The second gateway on one store would refuse to start.
            return Err(refusal(
                self.path,
                &format!(
                    "{} servers ({}) would share the store {db}, and a gateway keeps its store while it runs; leave \
                     --db out (each server gets rein-<server>.db beside the policy)",
                    wrapped.len(),
                    wrapped.join(", ")
                ),
            ));
        }
        Ok(edits)
    }

    /// The edits that give every wrapped server back its own command and
    /// arguments, saying on stderr what happens.
    fn undo(&self, bin: Option<&str>) -> Vec<Edit> {
        let mut edits = Vec::new();
        for server in &self.servers {
            if server.runner(bin.unwrap_or_default()) == Runner::Other {
                continue;
            }
            let shown = printable(&server.name);
            let Some(Node {
                kind: Kind::Array(elements),
                ..
            }) = server.member("args")
            else {
                continue;
            };
            let args = server.args();
            let Some(dashes) = args.iter().position(|a| a == "--") else {
                eprintln!("{shown}: left as it is: its gateway arguments name no server command after `--`");
                continue;
            };
            let Some(command) = elements.get(dashes + 1) else {
                eprintln!("{shown}: left as it is: nothing follows `--` in its gateway arguments");
                continue;
            };
            let rest = elements[dashes + 2..].iter().map(|e| self.raw(e).to_owned()).collect();
            self.set_command(server, self.raw(command).to_owned(), rest, &mut edits);
            let words: Vec<&str> = args[dashes + 1..].iter().map(String::as_str).collect();
            eprintln!("{shown}: restored ({})", printable(&shell_line(&words)));
        }
        edits
    }

    /// The text of `node`.
    fn raw(&self, node: &Node) -> &'a str {
        &self.text[node.start..node.end]
    }

    /// The `command` and `args` elements of a stdio server, as written.
    fn stdio_parts(&self, server: &Server<'a>) -> (&'a str, Vec<String>) {
        let command = server.member("command").map(|n| self.raw(n)).unwrap_or("\"\"");
        let elements = match server.member("args") {
            Some(Node {
                kind: Kind::Array(items),
                ..
            }) => items.iter().map(|n| self.raw(n).to_owned()).collect(),
            _ => Vec::new(),
        };
        (command, elements)
    }

    /// The server's command line, for messages.
    fn shown_command(&self, server: &Server) -> String {
        let mut words = Vec::new();
        if let Some(Json::String(command)) = server.fields.get("command") {
            words.push(command.as_str());
        }
        let args = server.args();
        words.extend(args.iter().map(String::as_str));
        printable(&shell_line(&words)).into_owned()
    }

    /// Replaces the server's `command` value by `command` and its `args`
    /// (inserted after `command` if missing) by an array of `elements`
    /// (JSON texts) laid out as the old array was.
    fn set_command(&self, server: &Server, command: String, elements: Vec<String>, edits: &mut Vec<Edit>) {
        let Kind::Object(members) = &server.node.kind else {
            return;
        };
        let Some(at) = members.iter().position(|m| m.key == "command") else {
            return;
        };
        let command_node = &members[at].value;
        edits.push(Edit {
            start: command_node.start,
            end: command_node.end,
            text: command,
        });
        match server.member("args") {
            Some(args) => edits.push(Edit {
                start: args.start,
                end: args.end,
                text: ArrayLayout::of(self.text, args).render(&elements),
            }),
            None => {
                let separator = self.member_separator(server.node, members, at);
                let colon = &self.text[members[at].key_end..command_node.start];
                let array = ArrayLayout::inline().render(&elements);
                edits.push(Edit {
                    start: command_node.end,
                    end: command_node.end,
                    text: format!("{separator}\"args\"{colon}{array}"),
                });
            }
        }
    }

    /// The text between two members of `object` next to member `at`
    /// (`,` and the spacing), to insert another one in the same style.
    fn member_separator(&self, object: &Node, members: &[Member], at: usize) -> String {
        if let Some(next) = members.get(at + 1) {
            return self.text[members[at].value.end..next.key_start].to_owned();
        }
        if at > 0 {
            return self.text[members[at - 1].value.end..members[at].key_start].to_owned();
        }
        let opening = &self.text[object.start + 1..members[at].key_start];
        if opening.contains('\n') {
            format!(",{opening}")
        } else {
            ", ".to_owned()
        }
    }

    /// Says why an HTTP server is not rewritten, and how to put it behind a
    /// listening gateway.
    fn report_remote(&self, gateway: &Gateway, server: &Server, url: &str) -> anyhow::Result<()> {
        let shown = printable(&server.name);
        if !gateway_name(&server.name) {
            eprintln!(
                "skipped `{shown}` (HTTP server, left as it is): not a gateway server name (letters, digits, `_` and \
                 `-`, not first, at most 64)"
            );
            return Ok(());
        }
        if url
            .get(..8)
            .is_some_and(|scheme| scheme.eq_ignore_ascii_case("https://"))
        {
            // The command below would fail: the gateway reaches servers
            // over plain http:// only.
            eprintln!(
                "skipped `{shown}` (HTTP server, left as it is): the gateway does not reach https:// servers yet; to \
                 put it behind one, run a TLS-terminating proxy to {} on loopback and give its http:// address to \
                 `rein mcp gateway --listen 127.0.0.1:PORT … --server {} --url …`",
                printable(url),
                server.name
            );
            return Ok(());
        }
        let mut words: Vec<&str> = vec![&gateway.bin, "mcp", "gateway", "--listen", "127.0.0.1:PORT"];
        let options = gateway.words(&server.name)?;
        words.extend(options[2..].iter().map(String::as_str));
        words.extend_from_slice(&["--url", url]);
        let sse = matches!(server.fields.get("type"), Some(Json::String(t)) if t == "sse");
        eprintln!(
            "skipped `{shown}` (HTTP server, left as it is): the client would need a gateway already listening. Run\n  \
             {}\nand set its url to http://127.0.0.1:PORT/mcp/{}{}",
            printable(&shell_line(&words)),
            server.name,
            if sse {
                " (the gateway speaks Streamable HTTP to the server; a server with only the older SSE transport \
                 cannot go behind it)"
            } else {
                ""
            }
        );
        Ok(())
    }
}

/// `path` absolute, without `.` and `..` (the policy and the store's folder
/// resolved where they exist: the client runs the command from anywhere).
fn resolved(path: &Path) -> anyhow::Result<String> {
    if let Ok(real) = path.canonicalize() {
        return Ok(utf8(&real)?.to_owned());
    }
    match (path.parent().map(Path::canonicalize), path.file_name()) {
        (Some(Ok(dir)), Some(name)) => Ok(utf8(&dir.join(name))?.to_owned()),
        _ => absolute(path),
    }
}

impl Server<'_> {
    fn member(&self, key: &str) -> Option<&Node> {
        match &self.node.kind {
            Kind::Object(members) => member(members, key),
            _ => None,
        }
    }

    /// The value after the first `option` among the server's gateway
    /// arguments (before `--`).
    fn option(&self, option: &str) -> Option<String> {
        let args = self.args();
        let end = args.iter().position(|a| a == "--").unwrap_or(args.len());
        let at = args[..end].iter().position(|a| a == option)?;
        args[..end].get(at + 1).cloned()
    }

    /// The server's `args` (checked to be strings), empty if none.
    fn args(&self) -> Vec<String> {
        match self.fields.get("args") {
            Some(Json::Array(items)) => items
                .iter()
                .filter_map(|i| match i {
                    Json::String(s) => Some(s.clone()),
                    _ => None,
                })
                .collect(),
            _ => Vec::new(),
        }
    }

    /// The server's `command` (empty for a remote server).
    fn command(&self) -> &str {
        match self.fields.get("command") {
            Some(Json::String(command)) => command,
            _ => "",
        }
    }

    /// Who runs the server with the gateway's arguments (`mcp gateway …`),
    /// if anyone. Those arguments alone prove nothing: Docker's MCP gateway
    /// is `docker mcp gateway run`, and a configuration from elsewhere (a
    /// cloned repository's .mcp.json) could give them to any program, or to
    /// a script named `rein`, to pass it off as wrapped.
    fn runner(&self, bin: &str) -> Runner {
        if !self.args().starts_with(&GATEWAY_WORDS.map(String::from)) {
            return Runner::Other;
        }
        let command = self.command();
        let name = Path::new(command).file_name().and_then(|n| n.to_str());
        if !bin.is_empty() && (command == bin || same_program(command, bin)) {
            Runner::ThisRein
        } else if matches!(name, Some("rein" | "rein.exe")) {
            Runner::AnotherRein
        } else {
            Runner::Other
        }
    }
}

/// Who runs a server with the gateway's arguments ([`Server::runner`]).
#[derive(Debug, PartialEq)]
enum Runner {
    /// The rein being written (the same file): the server is wrapped.
    ThisRein,
    /// Another program named `rein`: wrapped by another rein, or posing.
    AnotherRein,
    /// Any other program, or no gateway arguments: not wrapped.
    Other,
}

/// Whether `command` (a path, or a name looked up on PATH as the client
/// would) is the same file as `bin`.
fn same_program(command: &str, bin: &str) -> bool {
    let found = if command.contains(std::path::MAIN_SEPARATOR) || command.contains('/') {
        Some(PathBuf::from(command))
    } else {
        std::env::var_os("PATH").and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|dir| dir.join(command))
                .find(|candidate| candidate.is_file())
        })
    };
    let canonical = |p: &Path| std::fs::canonicalize(p).ok();
    found.is_some_and(|f| canonical(&f).is_some_and(|f| Some(f) == canonical(Path::new(bin))))
}

/// Whether `name` can follow `--server` on the gateway's command line: a
/// gateway server name that does not start with `-`, which would read as
/// an option (`--` itself would end the options early).
fn gateway_name(name: &str) -> bool {
    rein_mcp::catalog::valid_server_name(name) && !name.starts_with('-')
}

/// The keys of a server entry wrap reads.
const SERVER_KEYS: [&str; 5] = ["type", "command", "args", "env", "url"];

/// Checks one server entry's shape: an object with a string `command`
/// (then `args` a list of strings, `env` an object) or a string `url`, a
/// string `type` if any, none of [`SERVER_KEYS`] repeated. Returns its
/// fields. (Whether wrap knows its `type` is decided later: an unknown one
/// is reported and left as it is, not refused.)
fn check_server<'j>(name: &str, value: &'j Json, node: &Node) -> Result<&'j Obj, String> {
    let shown = printable(name);
    let (Json::Object(fields), Kind::Object(members)) = (value, &node.kind) else {
        return Err(format!(
            "server `{shown}` must be an object, {{\"command\": …, \"args\": […]}} or {{\"url\": …}}"
        ));
    };
    refuse_repeats(members, &format!("in server `{shown}`"), Some(&SERVER_KEYS))?;
    if fields.get("type").is_some_and(|t| !matches!(t, Json::String(_))) {
        return Err(format!("server `{shown}`: `type` must be a string"));
    }
    match (fields.get("command"), fields.get("url")) {
        (Some(_), Some(_)) => Err(format!("server `{shown}` has both `command` and `url`; keep one")),
        (Some(Json::String(_)), None) => {
            if let Some(Json::String(kind)) = fields
                .get("type")
                .filter(|t| matches!(t, Json::String(k) if matches!(k.as_str(), "http" | "sse" | "streamable-http")))
            {
                return Err(format!(
                    "server `{shown}`: type `{kind}` takes a `url`, not a `command`"
                ));
            }
            match fields.get("args") {
                None => {}
                Some(Json::Array(items)) if items.iter().all(|i| matches!(i, Json::String(_))) => {}
                Some(_) => return Err(format!("server `{shown}`: `args` must be a list of strings")),
            }
            match fields.get("env") {
                None | Some(Json::Object(_)) => Ok(fields),
                Some(_) => Err(format!("server `{shown}`: `env` must be an object of variables")),
            }
        }
        (Some(_), None) => Err(format!("server `{shown}`: `command` must be a string")),
        (None, Some(Json::String(_))) => match fields.get("type") {
            Some(Json::String(kind)) if kind == "stdio" => {
                Err(format!("server `{shown}`: type `stdio` takes a `command`, not a `url`"))
            }
            _ => Ok(fields),
        },
        (None, Some(_)) => Err(format!("server `{shown}`: `url` must be a string")),
        (None, None) => Err(format!(
            "server `{shown}` has neither `command` (a local server) nor `url` (a remote one)"
        )),
    }
}

/// Refuses an object that repeats a key (one of `only`, if given):
/// JSON.parse keeps the last value, and a rewrite of one of them could
/// leave the other in force.
fn refuse_repeats(members: &[Member], place: &str, only: Option<&[&str]>) -> Result<(), String> {
    for (i, m) in members.iter().enumerate() {
        let checked = only.is_none_or(|keys| keys.contains(&m.key.as_str()));
        if checked && members[..i].iter().any(|earlier| earlier.key == m.key) {
            return Err(format!("the key `{}` is repeated {place}; keep one", printable(&m.key)));
        }
    }
    Ok(())
}

fn member<'n>(members: &'n [Member], key: &str) -> Option<&'n Node> {
    members.iter().find(|m| m.key == key).map(|m| &m.value)
}

fn json_string(s: &str) -> String {
    serde_json::Value::from(s).to_string()
}

/// `words` as one shell line, for messages.
fn shell_line(words: &[&str]) -> String {
    words
        .iter()
        .map(|w| shlex::try_quote(w).map_or_else(|_| format!("{w:?}"), |q| q.into_owned()))
        .collect::<Vec<_>>()
        .join(" ")
}

/// A replacement of `text[start..end]`.
#[derive(Debug)]
struct Edit {
    start: usize,
    end: usize,
    text: String,
}

/// `text` with `edits` (which do not overlap) applied.
fn apply(text: &str, mut edits: Vec<Edit>) -> String {
    edits.sort_by_key(|e| (e.start, e.end));
    let mut out = String::with_capacity(text.len() + 256);
    let mut at = 0;
    for edit in edits {
        out.push_str(&text[at..edit.start]);
        out.push_str(&edit.text);
        at = edit.end;
    }
    out.push_str(&text[at..]);
    out
}

/// How an array is laid out: the text after `[`, between elements, and
/// before `]`.
#[derive(Debug, PartialEq)]
struct ArrayLayout {
    open: String,
    separator: String,
    close: String,
}

impl ArrayLayout {
    /// `["a", "b"]`.
    fn inline() -> ArrayLayout {
        ArrayLayout {
            open: String::new(),
            separator: ", ".into(),
            close: String::new(),
        }
    }

    /// The layout of the array `node` of `text` (inline if it is empty).
    fn of(text: &str, node: &Node) -> ArrayLayout {
        let Kind::Array(items) = &node.kind else {
            return ArrayLayout::inline();
        };
        let (Some(first), Some(last)) = (items.first(), items.last()) else {
            return ArrayLayout::inline();
        };
        let open = text[node.start + 1..first.start].to_owned();
        let close = text[last.end..node.end - 1].to_owned();
        let separator = match items.get(1) {
            Some(second) => text[first.end..second.start].to_owned(),
            None if open.contains('\n') => format!(",{open}"),
            None => ", ".to_owned(),
        };
        ArrayLayout { open, separator, close }
    }

    fn render(&self, elements: &[String]) -> String {
        if elements.is_empty() {
            return "[]".to_owned();
        }
        format!("[{}{}{}]", self.open, elements.join(&self.separator), self.close)
    }
}

/// Where a JSON value lies in its text: `text[start..end]`.
#[derive(Debug)]
struct Node {
    start: usize,
    end: usize,
    kind: Kind,
}

#[derive(Debug)]
enum Kind {
    Object(Vec<Member>),
    Array(Vec<Node>),
    Scalar,
}

/// An object member: its key (decoded), where the key's text starts and
/// ends, and its value.
#[derive(Debug)]
struct Member {
    key: String,
    key_start: usize,
    key_end: usize,
    value: Node,
}

impl Node {
    /// The positions of the values of `text`, a JSON text serde_json has
    /// accepted (`None` if it is not one after all).
    fn parse(text: &str) -> Option<Node> {
        let mut scanner = Scanner {
            bytes: text.as_bytes(),
            text,
            at: 0,
        };
        let node = scanner.value()?;
        scanner.skip_space();
        (scanner.at == text.len()).then_some(node)
    }
}

struct Scanner<'t> {
    bytes: &'t [u8],
    text: &'t str,
    at: usize,
}

impl Scanner<'_> {
    fn skip_space(&mut self) {
        while self
            .bytes
            .get(self.at)
            .is_some_and(|b| matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
        {
            self.at += 1;
        }
    }

    fn eat(&mut self, byte: u8) -> Option<()> {
        self.skip_space();
        (self.bytes.get(self.at) == Some(&byte)).then(|| self.at += 1)
    }

    fn value(&mut self) -> Option<Node> {
        self.skip_space();
        let start = self.at;
        let kind = match self.bytes.get(self.at)? {
            b'{' => {
                self.at += 1;
                let mut members = Vec::new();
                if self.eat(b'}').is_none() {
                    loop {
                        self.skip_space();
                        let key_start = self.at;
                        self.string()?;
                        let key_end = self.at;
                        let key = serde_json::from_str(&self.text[key_start..key_end]).ok()?;
                        self.eat(b':')?;
                        let value = self.value()?;
                        members.push(Member {
                            key,
                            key_start,
                            key_end,
                            value,
                        });
                        if self.eat(b',').is_none() {
                            self.eat(b'}')?;
                            break;
                        }
                    }
                }
                Kind::Object(members)
            }
            b'[' => {
                self.at += 1;
                let mut items = Vec::new();
                if self.eat(b']').is_none() {
                    loop {
                        items.push(self.value()?);
                        if self.eat(b',').is_none() {
                            self.eat(b']')?;
                            break;
                        }
                    }
                }
                Kind::Array(items)
            }
            b'"' => {
                self.string()?;
                Kind::Scalar
            }
            _ => {
                // A number, true, false or null: up to the next delimiter.
                while self
                    .bytes
                    .get(self.at)
                    .is_some_and(|b| !matches!(b, b',' | b']' | b'}' | b' ' | b'\t' | b'\n' | b'\r'))
                {
                    self.at += 1;
                }
                if self.at == start {
                    return None;
                }
                Kind::Scalar
            }
        };
        Some(Node {
            start,
            end: self.at,
            kind,
        })
    }

    /// Skips a string, quotes included.
    fn string(&mut self) -> Option<()> {
        if self.bytes.get(self.at) != Some(&b'"') {
            return None;
        }
        self.at += 1;
        loop {
            match self.bytes.get(self.at)? {
                b'"' => {
                    self.at += 1;
                    return Some(());
                }
                b'\\' => self.at += 2,
                _ => self.at += 1,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout(text: &str) -> ArrayLayout {
        ArrayLayout::of(text, &Node::parse(text).unwrap())
    }

    #[test]
    fn positions_cover_each_value_as_written() {
        let text = r#" {"a\"b": [1, "x\\", {"c": null}], "d" :true } "#;
        let root = Node::parse(text).unwrap();
        let Kind::Object(members) = &root.kind else { panic!() };
        assert_eq!(members[0].key, "a\"b");
        assert_eq!(&text[members[0].key_start..members[0].key_end], r#""a\"b""#);
        assert_eq!(
            &text[members[0].value.start..members[0].value.end],
            r#"[1, "x\\", {"c": null}]"#
        );
        assert_eq!(members[1].key, "d");
        assert_eq!(&text[members[1].value.start..members[1].value.end], "true");
        assert!(Node::parse("[1, 2").is_none());
        assert!(Node::parse("{} x").is_none());
    }

    #[test]
    fn arrays_keep_their_layout() {
        let inline = layout(r#"["a", "b"]"#);
        assert_eq!(inline, ArrayLayout::inline());
        let tight = layout(r#"["a","b"]"#);
        assert_eq!(tight.render(&["1".into(), "2".into(), "3".into()]), "[1,2,3]");
        let lines = layout("[\n    \"a\",\n    \"b\"\n  ]");
        assert_eq!(lines.render(&["1".into(), "2".into()]), "[\n    1,\n    2\n  ]");
        let one = layout("[\n    \"a\"\n  ]");
        assert_eq!(one.render(&["1".into(), "2".into()]), "[\n    1,\n    2\n  ]");
        assert_eq!(layout("[]").render(&[]), "[]");
        assert_eq!(layout("[]").render(&["1".into()]), "[1]");
    }

    /// Wraps `text`, checks the result is what a client would read, and
    /// undoes it; returns both texts.
    fn round_trip(text: &str) -> (String, String) {
        let path = Path::new("test.json");
        let gateway = Gateway {
            bin: "/opt/rein".into(),
            policy: "/p/policy.yaml".into(),
            db: Store::PerServer("/p".into()),
        };
        let (tree, root) = read_trees(path, text).unwrap();
        let wrapped = apply(
            text,
            Config::new(path, text, &tree, &root).unwrap().wrap(&gateway).unwrap(),
        );
        let value: serde_json::Value = serde_json::from_str(&wrapped).unwrap();
        let original: serde_json::Value = serde_json::from_str(text).unwrap();
        for (name, server) in original["mcpServers"].as_object().unwrap() {
            let db = format!("/p/rein-{name}.db");
            let mut expected = vec![
                "mcp",
                "gateway",
                "--policy",
                "/p/policy.yaml",
                "--db",
                &db,
                "--server",
                name,
                "--",
            ]
            .into_iter()
            .map(serde_json::Value::from)
            .collect::<Vec<_>>();
            expected.push(server["command"].clone());
            expected.extend(server["args"].as_array().cloned().unwrap_or_default());
            let got = &value["mcpServers"][name];
            assert_eq!(got["command"], "/opt/rein", "{wrapped}");
            assert_eq!(got["args"], serde_json::Value::from(expected), "{wrapped}");
            for (key, field) in server.as_object().unwrap() {
                if key != "command" && key != "args" {
                    assert_eq!(&got[key], field, "{key} in {wrapped}");
                }
            }
        }
        let (tree, root) = read_trees(path, &wrapped).unwrap();
        let undone = apply(
            &wrapped,
            Config::new(path, &wrapped, &tree, &root)
                .unwrap()
                .undo(Some("/opt/rein")),
        );
        (wrapped, undone)
    }

    #[test]
    fn wrap_then_undo_gives_back_every_layout() {
        for text in [
            r#"{"mcpServers":{"a":{"command":"x","args":["y"]}}}"#,
            "{\r\n  \"mcpServers\": {\r\n    \"a\": {\r\n      \"command\": \"x\",\r\n      \"args\": [\r\n        \"y\"\r\n      ]\r\n    }\r\n  }\r\n}\r\n",
            "{\n\t\"mcpServers\": {\n\t\t\"a\": {\n\t\t\t\"args\": [\"-y\", \"p\"],\n\t\t\t\"command\": \"x\"\n\t\t}\n\t}\n}",
            r#"{ "mcpServers" : { "a" : { "command" : "x" , "args" : [ "y" , "z" ] , "env" : { } } } , "k" : [ 1 , 2 ] }"#,
            r#"{"mcpServers": {"a-1": {"command": "caf\u00e9\/x", "args": ["\"q\"", "\\", "--", "\ud83d\ude00"]}, "b_2": {"command": "y", "args": []}}}"#,
            r#"{"x": {"mcpServers": 1}, "mcpServers": {"a": {"type": "stdio", "command": "x", "args": ["1"], "z": [{"command": "no"}]}}}"#,
        ] {
            let (wrapped, undone) = round_trip(text);
            assert_ne!(wrapped, text);
            assert_eq!(undone, text, "wrapped:\n{wrapped}");
        }
        // Without `args`, one is added, in the object's own style; undo
        // leaves it (empty).
        for (text, back) in [
            (
                r#"{"mcpServers": {"a": {"command": "x"}}}"#,
                r#"{"mcpServers": {"a": {"command": "x", "args": []}}}"#,
            ),
            (
                r#"{"mcpServers": {"a": {"env": {}, "command":"x"}}}"#,
                r#"{"mcpServers": {"a": {"env": {}, "command":"x", "args":[]}}}"#,
            ),
            (
                "{\"mcpServers\": {\"a\": {\n    \"command\": \"x\"\n  }}}",
                "{\"mcpServers\": {\"a\": {\n    \"command\": \"x\",\n    \"args\": []\n  }}}",
            ),
        ] {
            let (wrapped, undone) = round_trip(text);
            assert_eq!(undone, back, "wrapped:\n{wrapped}");
        }
    }

    #[test]
    fn edits_apply_in_order() {
        let edits = vec![
            Edit {
                start: 4,
                end: 5,
                text: "E".into(),
            },
            Edit {
                start: 0,
                end: 1,
                text: "AA".into(),
            },
            Edit {
                start: 2,
                end: 2,
                text: "+".into(),
            },
        ];
        assert_eq!(apply("abcdef", edits), "AAb+cdEf");
    }
}
