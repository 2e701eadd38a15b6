//! `rein mcp wrap` end to end: the real binary rewriting MCP client
//! configurations (Claude Code, Claude Desktop, Cursor) in temporary
//! folders, and undoing it.

// Helpers outside `#[test]` functions panic on failure too; that is the report.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::{json, Value};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A rein path that is never run here; fixed so the golden output is stable.
const BIN: &str = "/opt/rein/bin/rein";

/// Claude Code's project `.mcp.json` as `claude mcp add --scope project`
/// writes it, plus hand edits: an inline array, an unknown key in a server
/// and at the top level, escapes, a remote server, a name the gateway
/// cannot take.
const CLAUDE_CODE: &str = r#"{
  "mcpServers": {
    "filesystem": {
      "type": "stdio",
      "command": "npx",
      "args": [
        "-y",
        "@modelcontextprotocol/server-filesystem",
        "${HOME}/projects"
      ],
      "env": {
        "LOG_LEVEL": "debug"
      }
    },
    "github": {
      "command": "docker",
      "args": ["run", "-i", "--rm", "-e", "GITHUB_TOKEN", "ghcr.io/github/github-mcp-server"],
      "env": {"GITHUB_TOKEN": "${GITHUB_TOKEN}"},
      "x-team-note": "kept as is"
    },
    "notion": {
      "type": "http",
      "url": "https://mcp.notion.com/mcp",
      "headers": {"Authorization": "Bearer ${NOTION_TOKEN}"}
    },
    "my tools": {"command": "./tools.sh", "args": []}
  },
  "x-unknown": {"z": 1, "a": [1.50, "caf\u00e9 \/ \"q\""]}
}
"#;

/// Claude Desktop's `claude_desktop_config.json`, four-space indented,
/// with other settings around `mcpServers` and a server without `args`.
const CLAUDE_DESKTOP: &str = r#"{
    "globalShortcut": "Ctrl+Space",
    "mcpServers": {
        "memory": {
            "command": "/usr/local/bin/mcp-memory"
        },
        "sqlite": {
            "command": "uvx",
            "args": ["mcp-server-sqlite", "--db-path", "/Users/me/test.db"]
        }
    },
    "preferences": {"sidebarMode": "chat"}
}
"#;

/// Cursor's `.cursor/mcp.json`: a remote server by `url` alone (Cursor
/// picks the transport), variables in Cursor's `${env:…}` form, `envFile`.
const CURSOR: &str = r#"{
  "mcpServers": {
    "playwright": {
      "command": "npx",
      "args": ["-y", "@playwright/mcp@latest"],
      "envFile": "${workspaceFolder}/.env"
    },
    "context7": {
      "url": "https://mcp.context7.com/mcp",
      "headers": {"CONTEXT7_API_KEY": "${env:CONTEXT7_API_KEY}"}
    }
  }
}
"#;

/// A temporary folder holding `policy.yaml`.
struct Dir {
    tmp: tempfile::TempDir,
    dir: PathBuf,
}

impl Dir {
    fn new() -> Dir {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("project");
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("policy.yaml"), "# a policy\n").unwrap();
        Dir { tmp, dir }
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.dir.join(name);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, text).unwrap();
        path
    }

    fn read(&self, name: &str) -> String {
        fs::read_to_string(self.dir.join(name)).unwrap()
    }

    fn path(&self, name: &str) -> String {
        self.dir.join(name).to_str().unwrap().to_owned()
    }

    /// Runs `rein mcp wrap ARGS` in the folder, with an installed `rein`
    /// on PATH (a link to the one under test, which runs from cargo's
    /// build folder and is therefore not written into configurations).
    fn wrap(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_rein"))
            .args(["mcp", "wrap"])
            .args(args)
            .current_dir(&self.dir)
            .env("NO_COLOR", "1")
            .env("PATH", self.installed().parent().unwrap())
            .output()
            .unwrap()
    }

    /// `bin/rein` beside the folder: a link to the rein under test.
    fn installed(&self) -> PathBuf {
        let bin = self.tmp.path().join("bin");
        let rein = bin.join("rein");
        if !rein.exists() {
            fs::create_dir_all(&bin).unwrap();
            std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_rein"), &rein).unwrap();
        }
        rein
    }

    /// `text` with this folder's path as `[DIR]`.
    fn masked(&self, text: &str) -> String {
        text.replace(self.dir.to_str().unwrap(), "[DIR]")
    }
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn ok(o: &Output) {
    assert_eq!(
        o.status.code(),
        Some(0),
        "stdout:\n{}\nstderr:\n{}",
        stdout(o),
        stderr(o)
    );
}

/// The gateway arguments `rein mcp wrap` writes for server `name` of a
/// file in `d` with the default policy and store, then `command`.
fn wrapped_args(d: &Dir, name: &str, command: &[&str]) -> Value {
    let mut args = vec![
        "mcp".to_owned(),
        "gateway".to_owned(),
        "--policy".to_owned(),
        d.path("policy.yaml"),
        "--db".to_owned(),
        d.path(&format!("rein-{name}.db")),
        "--server".to_owned(),
        name.to_owned(),
        "--".to_owned(),
    ];
    args.extend(command.iter().map(|w| (*w).to_owned()));
    json!(args)
}

#[test]
fn a_claude_code_file_is_wrapped_and_undone_to_the_same_bytes() {
    let d = Dir::new();
    d.write(".mcp.json", CLAUDE_CODE);
    let o = d.wrap(&["--policy", "policy.yaml", "--rein-bin", BIN]);
    ok(&o);
    insta::assert_snapshot!("claude_code_wrap_diff", d.masked(&stdout(&o)));
    insta::assert_snapshot!("claude_code_wrap_report", d.masked(&stderr(&o)));

    let text = d.read(".mcp.json");
    let config: Value = serde_json::from_str(&text).unwrap();
    let servers = &config["mcpServers"];
    let fs_server = &servers["filesystem"];
    assert_eq!(fs_server["command"], BIN);
    assert_eq!(
        fs_server["args"],
        wrapped_args(
            &d,
            "filesystem",
            &[
                "npx",
                "-y",
                "@modelcontextprotocol/server-filesystem",
                "${HOME}/projects"
            ]
        )
    );
    assert_eq!(fs_server["type"], "stdio");
    assert_eq!(fs_server["env"], json!({"LOG_LEVEL": "debug"}));
    let github = &servers["github"];
    assert_eq!(github["command"], BIN);
    assert_eq!(
        github["args"],
        wrapped_args(
            &d,
            "github",
            &[
                "docker",
                "run",
                "-i",
                "--rm",
                "-e",
                "GITHUB_TOKEN",
                "ghcr.io/github/github-mcp-server"
            ]
        )
    );
    assert_eq!(github["env"], json!({"GITHUB_TOKEN": "${GITHUB_TOKEN}"}));
    assert_eq!(github["x-team-note"], "kept as is");
    // Not rewritten: a remote server, a name the gateway cannot take.
    let original: Value = serde_json::from_str(CLAUDE_CODE).unwrap();
    assert_eq!(servers["notion"], original["mcpServers"]["notion"]);
    assert_eq!(servers["my tools"], original["mcpServers"]["my tools"]);
    // The rest of the file is kept as written, escapes included.
    assert!(text.contains(r#""x-unknown": {"z": 1, "a": [1.50, "caf\u00e9 \/ \"q\""]}"#));

    let o = d.wrap(&["--undo"]);
    ok(&o);
    insta::assert_snapshot!("claude_code_undo_report", d.masked(&stderr(&o)));
    assert_eq!(d.read(".mcp.json"), CLAUDE_CODE);
}

#[test]
fn wrapping_twice_changes_nothing() {
    let d = Dir::new();
    d.write(".mcp.json", CLAUDE_CODE);
    ok(&d.wrap(&["--policy", "policy.yaml", "--rein-bin", BIN]));
    let once = d.read(".mcp.json");

    let o = d.wrap(&["--policy", "policy.yaml", "--rein-bin", BIN]);
    ok(&o);
    assert_eq!(stdout(&o), "", "no diff");
    let err = stderr(&o);
    assert!(err.contains("filesystem: already behind the gateway\n"), "{err}");
    assert!(err.contains("nothing to change"), "{err}");
    assert_eq!(d.read(".mcp.json"), once);

    // Another policy does not silently leave the old one in force.
    fs::write(d.dir.join("other.yaml"), "# other\n").unwrap();
    let o = d.wrap(&["--policy", "other.yaml", "--rein-bin", BIN]);
    ok(&o);
    let err = d.masked(&stderr(&o));
    assert!(
        err.contains("github: already behind the gateway, with --policy [DIR]/policy.yaml; to change it, run `rein mcp wrap --undo` first"),
        "{err}"
    );
    assert_eq!(d.read(".mcp.json"), once);

    // Undo twice: the second finds nothing to restore.
    ok(&d.wrap(&["--undo"]));
    let o = d.wrap(&["--undo"]);
    ok(&o);
    assert!(stderr(&o).contains("nothing to change"), "{}", stderr(&o));
    assert_eq!(d.read(".mcp.json"), CLAUDE_CODE);
}

#[test]
fn a_claude_desktop_file_keeps_its_indentation_and_settings() {
    let d = Dir::new();
    let path = d.write("claude_desktop_config.json", CLAUDE_DESKTOP);
    // One --db for two servers: the second gateway could not start (a
    // gateway keeps its store while it runs), so nothing is written.
    let o = d.wrap(&[
        path.to_str().unwrap(),
        "--policy",
        "policy.yaml",
        "--db",
        "state/gateway.db",
        "--rein-bin",
        BIN,
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("2 servers (memory, sqlite) would share the store"),
        "{}",
        stderr(&o)
    );
    assert_eq!(d.read("claude_desktop_config.json"), CLAUDE_DESKTOP);
    let o = d.wrap(&[path.to_str().unwrap(), "--policy", "policy.yaml", "--rein-bin", BIN]);
    ok(&o);
    insta::assert_snapshot!("claude_desktop_wrap_diff", d.masked(&stdout(&o)));
    let config: Value = serde_json::from_str(&d.read("claude_desktop_config.json")).unwrap();
    assert_eq!(config["globalShortcut"], "Ctrl+Space");
    assert_eq!(config["preferences"], json!({"sidebarMode": "chat"}));
    let memory = &config["mcpServers"]["memory"];
    assert_eq!(
        memory["args"][5],
        d.path("rein-memory.db"),
        "each server its own store, absolute"
    );
    assert_eq!(config["mcpServers"]["sqlite"]["args"][5], d.path("rein-sqlite.db"));
    assert_eq!(memory["args"][9], "/usr/local/bin/mcp-memory");

    ok(&d.wrap(&[path.to_str().unwrap(), "--undo"]));
    // A server written without `args` comes back with an empty list (the
    // one change a round trip makes); everything else is as it was.
    assert_eq!(
        d.read("claude_desktop_config.json"),
        CLAUDE_DESKTOP.replace(
            r#""command": "/usr/local/bin/mcp-memory""#,
            r#""command": "/usr/local/bin/mcp-memory",
            "args": []"#
        )
    );
}

#[test]
fn a_cursor_file_is_found_and_its_remote_server_skipped_with_the_command_to_run() {
    let d = Dir::new();
    d.write(".cursor/mcp.json", CURSOR);
    let o = d.wrap(&["--policy", "policy.yaml", "--rein-bin", BIN, "--yes"]);
    ok(&o);
    insta::assert_snapshot!("cursor_wrap_diff", d.masked(&stdout(&o)));
    let err = d.masked(&stderr(&o));
    assert!(
        err.starts_with("using ./.cursor/mcp.json (looked for ./.mcp.json, then ./.cursor/mcp.json)\n"),
        "{err}"
    );
    // The gateway reaches http:// servers only: no command that would fail.
    assert!(
        err.contains(
            "skipped `context7` (HTTP server, left as it is): the gateway does not reach https:// servers yet; to put \
             it behind one, run a TLS-terminating proxy to https://mcp.context7.com/mcp on loopback"
        ),
        "{err}"
    );
    assert!(!err.contains("--url https://"), "{err}");
    let config: Value = serde_json::from_str(&d.read(".cursor/mcp.json")).unwrap();
    let original: Value = serde_json::from_str(CURSOR).unwrap();
    assert_eq!(config["mcpServers"]["context7"], original["mcpServers"]["context7"]);
    assert_eq!(config["mcpServers"]["playwright"]["envFile"], "${workspaceFolder}/.env");

    ok(&d.wrap(&["--undo"]));
    assert_eq!(d.read(".cursor/mcp.json"), CURSOR);
}

#[test]
fn the_default_file_is_claude_codes_then_cursors() {
    let d = Dir::new();
    let o = d.wrap(&["--policy", "policy.yaml"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("no MCP client configuration found here: looked for ./.mcp.json and ./.cursor/mcp.json"),
        "{}",
        stderr(&o)
    );

    d.write(".cursor/mcp.json", CURSOR);
    d.write(".mcp.json", CLAUDE_CODE);
    let o = d.wrap(&["--policy", "policy.yaml", "--rein-bin", BIN]);
    ok(&o);
    assert!(stderr(&o).starts_with("using ./.mcp.json "), "{}", stderr(&o));
    assert_ne!(d.read(".mcp.json"), CLAUDE_CODE);
    assert_eq!(d.read(".cursor/mcp.json"), CURSOR);
}

#[test]
fn a_dry_run_shows_the_diff_and_writes_nothing() {
    let d = Dir::new();
    d.write(".mcp.json", CLAUDE_CODE);
    let o = d.wrap(&["--policy", "policy.yaml", "--rein-bin", BIN, "--dry-run"]);
    ok(&o);
    assert!(
        stdout(&o).starts_with("--- ./.mcp.json\n+++ ./.mcp.json\n@@"),
        "{}",
        stdout(&o)
    );
    assert!(
        stderr(&o).contains("dry run: ./.mcp.json not written"),
        "{}",
        stderr(&o)
    );
    assert_eq!(d.read(".mcp.json"), CLAUDE_CODE);
}

#[test]
fn the_client_runs_the_installed_rein_never_one_in_cargos_build_folder() {
    let d = Dir::new();
    d.write(".mcp.json", CURSOR);
    let o = d.wrap(&["--policy", "policy.yaml"]);
    ok(&o);
    let config: Value = serde_json::from_str(&d.read(".mcp.json")).unwrap();
    assert_eq!(
        Path::new(config["mcpServers"]["playwright"]["command"].as_str().unwrap()),
        d.installed()
    );

    d.write(".mcp.json", CURSOR);
    let o = Command::new(env!("CARGO_BIN_EXE_rein"))
        .args(["mcp", "wrap", "--policy", "policy.yaml"])
        .current_dir(&d.dir)
        .env("PATH", d.dir.join("no-such-dir"))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("cargo's build folder"), "{}", stderr(&o));
    assert_eq!(d.read(".mcp.json"), CURSOR);
}

#[test]
fn a_policy_folder_holds_the_default_store() {
    let d = Dir::new();
    fs::create_dir_all(d.dir.join("policies")).unwrap();
    d.write(".mcp.json", CURSOR);
    ok(&d.wrap(&["--policy", "policies", "--rein-bin", BIN]));
    let config: Value = serde_json::from_str(&d.read(".mcp.json")).unwrap();
    let args = &config["mcpServers"]["playwright"]["args"];
    assert_eq!(args[3], d.path("policies"));
    // One store per server: a gateway keeps its store while it runs.
    assert_eq!(args[5], d.path("policies/rein-playwright.db"));
}

#[test]
fn undo_restores_only_what_it_can_read_back() {
    let d = Dir::new();
    let text = r#"{"mcpServers": {
  "plain": {"command": "srv", "args": ["a"]},
  "no-dashes": {"command": "/opt/rein/bin/rein", "args": ["mcp", "gateway", "--policy", "p.yaml", "--server", "x"]},
  "empty-after": {"command": "/opt/rein/bin/rein", "args": ["mcp", "gateway", "--server", "y", "--"]},
  "by-hand": {"command": "rein", "args": ["mcp", "gateway", "--policy", "p.yaml", "--server", "z", "--", "python3", "-m", "srv"], "env": {"K": "v"}}
}}
"#;
    d.write(".mcp.json", text);
    let o = d.wrap(&["--undo"]);
    ok(&o);
    let err = stderr(&o);
    assert!(
        err.contains("no-dashes: left as it is: its gateway arguments name no server command after `--`"),
        "{err}"
    );
    assert!(
        err.contains("empty-after: left as it is: nothing follows `--` in its gateway arguments"),
        "{err}"
    );
    assert!(err.contains("by-hand: restored (python3 -m srv)"), "{err}");
    assert_eq!(
        d.read(".mcp.json"),
        text.replace(
            r#""command": "rein", "args": ["mcp", "gateway", "--policy", "p.yaml", "--server", "z", "--", "python3", "-m", "srv"]"#,
            r#""command": "python3", "args": ["-m", "srv"]"#
        )
    );
}

#[test]
fn servers_of_unknown_types_are_reported_and_left_alone() {
    let d = Dir::new();
    let text = r#"{"mcpServers": {
  "ws": {"type": "ws", "url": "ws://127.0.0.1:9000"},
  "sdk": {"type": "sdk", "command": "x"},
  "old-sse": {"type": "sse", "url": "http://127.0.0.1:9001/sse"},
  "local": {"type": "http", "url": "http://127.0.0.1:3001/mcp"}
}}
"#;
    d.write(".mcp.json", text);
    let o = d.wrap(&["--policy", "policy.yaml", "--rein-bin", BIN]);
    ok(&o);
    let err = stderr(&o);
    assert!(
        err.contains("skipped `ws` (left as it is): a server of type `ws` cannot go behind the gateway"),
        "{err}"
    );
    assert!(
        err.contains("skipped `sdk` (left as it is): type `sdk` is not a stdio server wrap knows"),
        "{err}"
    );
    assert!(
        err.contains("a server with only the older SSE transport cannot go behind it"),
        "{err}"
    );
    assert!(
        d.masked(&err).contains(
            "skipped `local` (HTTP server, left as it is): the client would need a gateway already listening. Run\n  \
             /opt/rein/bin/rein mcp gateway --listen 127.0.0.1:PORT --policy [DIR]/policy.yaml --db \
             [DIR]/rein-local.db --server local --url http://127.0.0.1:3001/mcp\nand set its url to \
             http://127.0.0.1:PORT/mcp/local\n"
        ),
        "{err}"
    );
    assert_eq!(d.read(".mcp.json"), text);
}

/// Gateway arguments alone do not make a server wrapped: Docker's MCP
/// gateway is `docker mcp gateway run`, and a configuration from elsewhere
/// could give them to any program, or to a script named `rein`.
#[test]
fn only_this_rein_with_the_gateways_arguments_counts_as_wrapped() {
    let d = Dir::new();
    fs::write(d.dir.join("rein"), "#!/bin/sh\n").unwrap();
    let policy = d.path("policy.yaml");
    let text = format!(
        r#"{{"mcpServers": {{
  "docker": {{"command": "docker", "args": ["mcp", "gateway", "run"]}},
  "fake": {{"command": "./evil", "args": ["mcp", "gateway", "--server", "fake", "--", "npx", "srv"]}},
  "script": {{"command": "./rein", "args": ["mcp", "gateway", "--server", "script", "--", "npx", "srv"]}},
  "by-hand": {{"command": "rein", "args": ["mcp", "gateway", "--policy", "{policy}", "--server", "by-hand", "--", "srv"]}}
}}}}
"#
    );
    d.write(".mcp.json", &text);
    let o = d.wrap(&["--policy", "policy.yaml"]);
    ok(&o);
    let err = d.masked(&stderr(&o));
    let bin = d.installed();
    let bin = bin.to_str().unwrap();
    assert!(
        err.contains(&format!(
            "warning: `script` runs `./rein`, not this rein ({bin}), with the gateway's arguments; left as it is"
        )),
        "{err}"
    );
    // `rein` on PATH is the rein being written.
    assert!(err.contains("by-hand: already behind the gateway\n"), "{err}");
    let config: Value = serde_json::from_str(&d.read(".mcp.json")).unwrap();
    let servers = &config["mcpServers"];
    assert_eq!(servers["docker"]["command"], bin);
    assert_eq!(
        servers["docker"]["args"],
        wrapped_args(&d, "docker", &["docker", "mcp", "gateway", "run"])
    );
    assert_eq!(
        servers["fake"]["args"],
        wrapped_args(
            &d,
            "fake",
            &["./evil", "mcp", "gateway", "--server", "fake", "--", "npx", "srv"]
        )
    );
    assert_eq!(servers["script"]["command"], "./rein");
    assert_eq!(servers["by-hand"]["command"], "rein");

    // Undo takes off one gateway: the one this rein wrote.
    ok(&d.wrap(&["--undo", "--rein-bin", bin]));
    let config: Value = serde_json::from_str(&d.read(".mcp.json")).unwrap();
    let servers = &config["mcpServers"];
    assert_eq!(
        servers["docker"],
        json!({"command": "docker", "args": ["mcp", "gateway", "run"]})
    );
    assert_eq!(servers["fake"]["command"], "./evil");
    assert_eq!(servers["script"], json!({"command": "npx", "args": ["srv"]}));
    assert_eq!(servers["by-hand"], json!({"command": "srv", "args": []}));
}

/// A name starting with `-` would read as an option after `--server`
/// (and `--` would end the gateway's options early).
#[test]
fn names_that_read_as_options_are_skipped() {
    let d = Dir::new();
    let text = r#"{"mcpServers": {"--": {"command": "a"}, "-x": {"command": "b"}, "ok-1_b": {"command": "c"}}}"#;
    d.write(".mcp.json", text);
    let o = d.wrap(&["--policy", "policy.yaml", "--rein-bin", BIN]);
    ok(&o);
    let err = stderr(&o);
    assert!(
        err.contains("skipped `--` (left as it is): not a gateway server name"),
        "{err}"
    );
    assert!(
        err.contains("skipped `-x` (left as it is): not a gateway server name"),
        "{err}"
    );
    let config: Value = serde_json::from_str(&d.read(".mcp.json")).unwrap();
    assert_eq!(config["mcpServers"]["--"], json!({"command": "a"}));
    assert_eq!(config["mcpServers"]["-x"], json!({"command": "b"}));
    assert_eq!(
        config["mcpServers"]["ok-1_b"]["args"],
        wrapped_args(&d, "ok-1_b", &["c"])
    );
}

#[test]
fn bad_configurations_are_refused_with_the_file_and_the_reason() {
    let cases: [(&str, &str); 16] = [
        ("", ".mcp.json: the file is empty, not an MCP client configuration"),
        (
            "{\"mcpServers\": {\n  \"a\": {\"command\": \"x\",}\n}}",
            ".mcp.json:2:24: not valid JSON: trailing comma",
        ),
        ("[1]", ".mcp.json: not a JSON object, not an MCP client configuration"),
        (
            "{\"servers\": {}}",
            ".mcp.json: no `mcpServers` object: not an MCP client configuration",
        ),
        (
            "{\"mcpServers\": []}",
            ".mcp.json: `mcpServers` must be an object of servers by name",
        ),
        ("{\"mcpServers\": {\"a\": \"npx\"}}", "server `a` must be an object"),
        (
            "{\"mcpServers\": {\"a\": {\"command\": [\"npx\"]}}}",
            "server `a`: `command` must be a string",
        ),
        (
            "{\"mcpServers\": {\"a\": {\"command\": \"npx\", \"args\": \"-y x\"}}}",
            "server `a`: `args` must be a list of strings",
        ),
        (
            "{\"mcpServers\": {\"a\": {\"command\": \"npx\", \"args\": [\"-y\", 1]}}}",
            "server `a`: `args` must be a list of strings",
        ),
        (
            "{\"mcpServers\": {\"a\": {\"command\": \"npx\", \"env\": [\"K=v\"]}}}",
            "server `a`: `env` must be an object of variables",
        ),
        (
            "{\"mcpServers\": {\"a\": {\"command\": \"npx\", \"url\": \"http://h\"}}}",
            "server `a` has both `command` and `url`; keep one",
        ),
        (
            "{\"mcpServers\": {\"a\": {\"type\": \"http\", \"command\": \"npx\"}}}",
            "server `a`: type `http` takes a `url`, not a `command`",
        ),
        (
            "{\"mcpServers\": {\"a\": {\"type\": \"stdio\", \"url\": \"http://h\"}}}",
            "server `a`: type `stdio` takes a `command`, not a `url`",
        ),
        (
            "{\"mcpServers\": {\"a\": {\"env\": {}}}}",
            "server `a` has neither `command` (a local server) nor `url` (a remote one)",
        ),
        (
            "{\"mcpServers\": {\"a\": {\"command\": \"npx\"}, \"a\": {\"command\": \"evil\"}}}",
            "the key `a` is repeated in `mcpServers`; keep one",
        ),
        (
            "{\"mcpServers\": {\"a\": {\"command\": \"npx\", \"command\": \"evil\"}}}",
            "the key `command` is repeated in server `a`; keep one",
        ),
    ];
    let d = Dir::new();
    for (text, message) in cases {
        for args in [&["--policy", "policy.yaml", "--rein-bin", BIN][..], &["--undo"][..]] {
            d.write(".mcp.json", text);
            let mut with_file = vec![".mcp.json"];
            with_file.extend_from_slice(args);
            let o = d.wrap(&with_file);
            assert_eq!(o.status.code(), Some(2), "{text}: {}", stderr(&o));
            let err = stderr(&o);
            assert!(err.contains(message), "{text}:\n{err}");
            assert!(err.contains("; the file was left unchanged"), "{text}:\n{err}");
            assert_eq!(stdout(&o), "", "{text}");
            assert_eq!(d.read(".mcp.json"), text);
        }
    }
}

#[test]
fn bad_arguments_are_refused() {
    let d = Dir::new();
    d.write(".mcp.json", CURSOR);
    for (args, message) in [
        (&["--rein-bin", BIN][..], "--policy"),
        (&["--undo", "--policy", "policy.yaml"][..], "cannot be used with"),
        (
            &["--policy", "missing.yaml", "--rein-bin", BIN][..],
            "policy missing.yaml not found; nothing written",
        ),
        (
            &["missing.json", "--policy", "policy.yaml"][..],
            "missing.json not found",
        ),
    ] {
        let o = d.wrap(args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        assert!(stderr(&o).contains(message), "{args:?}: {}", stderr(&o));
        assert_eq!(d.read(".mcp.json"), CURSOR);
    }
}

#[test]
fn the_paths_written_have_no_dots() {
    let d = Dir::new();
    fs::create_dir_all(d.dir.join("sub")).unwrap();
    d.write(".mcp.json", CURSOR);
    ok(&d.wrap(&["--policy", "sub/../policy.yaml", "--rein-bin", BIN]));
    let config: Value = serde_json::from_str(&d.read(".mcp.json")).unwrap();
    let args = &config["mcpServers"]["playwright"]["args"];
    assert_eq!(args[3], d.path("policy.yaml"));
    assert_eq!(args[5], d.path("rein-playwright.db"));
}

/// A server added later and wrapped with the --db an earlier one got would
/// share its store: refused, the file left as it is.
#[test]
fn a_store_already_given_to_a_wrapped_server_is_not_given_again() {
    let d = Dir::new();
    d.write(".mcp.json", r#"{"mcpServers": {"a": {"command": "srv-a"}}}"#);
    ok(&d.wrap(&["--policy", "policy.yaml", "--db", "shared.db", "--rein-bin", BIN]));
    let wrapped = d.read(".mcp.json");
    let config: Value = serde_json::from_str(&wrapped).unwrap();
    let mut with_b = config.clone();
    with_b["mcpServers"]["b"] = json!({"command": "srv-b"});
    let text = serde_json::to_string_pretty(&with_b).unwrap();
    d.write(".mcp.json", &text);
    let o = d.wrap(&["--policy", "policy.yaml", "--db", "shared.db", "--rein-bin", BIN]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("`b` would share the store"), "{}", stderr(&o));
    assert_eq!(d.read(".mcp.json"), text);
    // Without --db, b gets a store of its own.
    ok(&d.wrap(&["--policy", "policy.yaml", "--rein-bin", BIN]));
    let config: Value = serde_json::from_str(&d.read(".mcp.json")).unwrap();
    assert_eq!(config["mcpServers"]["b"]["args"][5], d.path("rein-b.db"));
    assert_eq!(config["mcpServers"]["a"]["args"][5], d.path("shared.db"));
}
