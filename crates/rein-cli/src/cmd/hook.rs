//! `rein hook <agent>`: the gate of a coding agent, one event per process.
//!
//! Every way this can go wrong ends in an explicit refusal printed in the
//! agent's format (or exit code 2 with a reason on stderr): a crashing or
//! silent hook is "let it run" to the agents.

use anyhow::Context;
use clap::{Args, ValueEnum};
use rein_engine::{CacheStatus, PolicyCache};
use rein_hooks::{Agent, Protected, ProtectedKind, Reply, MAX_EVENT_BYTES};
use rein_runtime::{Runtime, RuntimeConfig};
use rein_store::{SqliteOptions, SqliteStore};
use std::io::{Read, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Which agent's hook protocol to speak.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum AgentArg {
    /// Claude Code (`PreToolUse`, `PermissionRequest`, `PostToolUse`, …).
    ClaudeCode,
    /// Codex CLI (Claude-compatible events; `apply_patch`).
    Codex,
    /// Gemini CLI (`BeforeTool`, `AfterTool`, `BeforeAgent`).
    Gemini,
    /// Cursor (`beforeShellExecution`, `beforeMCPExecution`, `beforeReadFile`,
    /// `afterFileEdit`, `preToolUse`).
    Cursor,
}

impl From<AgentArg> for Agent {
    fn from(a: AgentArg) -> Agent {
        match a {
            AgentArg::ClaudeCode => Agent::ClaudeCode,
            AgentArg::Codex => Agent::Codex,
            AgentArg::Gemini => Agent::Gemini,
            AgentArg::Cursor => Agent::Cursor,
        }
    }
}

/// Arguments of `rein hook`.
#[derive(Args, Debug)]
pub struct HookArgs {
    /// The agent whose hook event arrives on stdin.
    #[arg(value_enum)]
    agent: AgentArg,
    /// Policy files or directories, merged (include
    /// `policies/agents/coding-agent.yaml` for the tool contracts).
    #[arg(long = "policy", short = 'p', num_args = 1.., value_name = "POLICY", required_unless_present = "server")]
    policy: Vec<PathBuf>,
    /// The SQLite store for the audit log and approvals. Default:
    /// `$XDG_STATE_HOME/rein/hooks.db` (or `~/.local/state/rein/hooks.db`).
    #[arg(long, value_name = "FILE", env = "REIN_DB", conflicts_with = "server")]
    db: Option<PathBuf>,
    /// The audit key for sensitive fields (an existing file). Default:
    /// `rein-audit.key` beside the database, created on first use (not once
    /// the store has records: a new key would not match the hashes kept).
    #[arg(long, value_name = "FILE", conflicts_with = "server")]
    audit_key: Option<PathBuf>,
    /// Where compiled policies are kept between runs, keyed by the policy
    /// texts and this executable. Default: `$XDG_CACHE_HOME/rein/policies`
    /// (or `~/.cache/rein/policies`). Protect it as the policy files: its
    /// entries are what the hook enforces.
    #[arg(long, value_name = "DIR", env = "REIN_CACHE_DIR", conflicts_with = "server")]
    cache_dir: Option<PathBuf>,
    /// Compile the policy on every run instead of using the cache.
    #[arg(long, conflicts_with_all = ["server", "cache_dir"])]
    no_cache: bool,
    /// Ask a running `rein serve` (its `/v1/hooks/<agent>` endpoint)
    /// instead of deciding in this process.
    #[arg(long, value_name = "URL", conflicts_with = "policy")]
    server: Option<String>,
    /// Bearer token (role `agent`) for `--server`.
    #[arg(long, value_name = "TOKEN", env = "REIN_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Read the token for `--server` from this environment variable (it
    /// wins over `--token` and `REIN_TOKEN`: `rein init` writes
    /// `--token-env REIN_TOKEN`, and a conflict with that same variable
    /// would refuse every call).
    #[arg(long, value_name = "VAR")]
    token_env: Option<String>,
    /// More files the agent may never change, whatever the policy says
    /// (`rein init` adds the settings file it wrote). Rein's own files are
    /// always protected: the store (and its `-wal`/`-shm`), the audit key,
    /// the tokens file beside the store, the policy files, the cache, this
    /// executable and the agent's settings files in the project.
    #[arg(long, value_name = "PATH")]
    protect: Vec<PathBuf>,
    /// Seconds to decide before refusing.
    #[arg(long, value_name = "SECONDS", default_value_t = 10.0)]
    timeout: f64,
}

/// Runs the hook; the exit code is the reply's (0, or 2 for an unreadable
/// event). Never returns an error: errors are refusals.
pub fn run(args: HookArgs) -> anyhow::Result<u8> {
    let agent = Agent::from(args.agent);
    let mut bytes = Vec::new();
    let read = std::io::stdin()
        .take(MAX_EVENT_BYTES as u64 + 1)
        .read_to_end(&mut bytes);
    let reply = match read {
        Err(e) => rein_hooks::refuse_unreadable(agent, &bytes, &format!("Rein could not read stdin: {e}")),
        Ok(_) => {
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| answer(&args, agent, &bytes)));
            outcome.unwrap_or_else(|_| rein_hooks::refuse_unreadable(agent, &bytes, "Rein failed internally"))
        }
    };
    let mut out = std::io::stdout().lock();
    // A reply that cannot be written cannot be helped; the exit code still
    // carries a refusal when there was one.
    let _ = out
        .write_all(reply.stdout.as_bytes())
        .and_then(|()| out.write_all(b"\n"));
    let _ = out.flush();
    if !reply.stderr.is_empty() {
        eprintln!("{}", reply.stderr);
    }
    Ok(reply.exit_code)
}

fn answer(args: &HookArgs, agent: Agent, bytes: &[u8]) -> Reply {
    let event = match rein_hooks::parse_event(agent, bytes) {
        Ok(e) => e,
        Err(e) => {
            return rein_hooks::refuse_unreadable(agent, bytes, &format!("Rein could not read the hook event: {e}"))
        }
    };
    let limit = Duration::from_secs_f64(args.timeout.clamp(0.05, 3600.0));
    let result = match &args.server {
        Some(url) => {
            // The server guards its own files; the files named here (and
            // this executable) are guarded before the event leaves.
            let protected = protected_files(args, None);
            match rein_hooks::protected_refusal(&event, &protected, home().as_deref()) {
                Some(why) => Ok(why),
                None => match outside_the_project(agent, &event) {
                    Some(why) => Ok(rein_hooks::refuse(&event, &why)),
                    None => remote(args, url, agent, bytes, limit),
                },
            }
        }
        None => local(args, agent, bytes, limit),
    };
    match result {
        Ok(reply) => reply,
        Err(e) => rein_hooks::refuse(&event, &format!("Rein could not decide: {e:#}")),
    }
}

fn local(args: &HookArgs, agent: Agent, bytes: &[u8], limit: Duration) -> anyhow::Result<Reply> {
    let cache = super::choose_cache(args.cache_dir.as_deref(), args.no_cache);
    let loaded = match &cache {
        Some(cache) => cache.load(&args.policy),
        None => rein_engine::Policy::load(&args.policy).map(|p| (p, CacheStatus::NotCached)),
    };
    let (policy, status) = loaded.map_err(|e| {
        // With its help: for a policy an upgrade broke (`tool.other`), what
        // to change is what the person reading the refusal needs.
        let first = e
            .diagnostics()
            .first()
            .map(|d| match &d.help {
                Some(help) => format!("{d} (help: {help})"),
                None => d.to_string(),
            })
            .unwrap_or_default();
        anyhow::anyhow!(
            "the policy failed to load ({} problem(s)); first: {first}",
            e.diagnostics().len()
        )
    })?;
    if let CacheStatus::Failed(why) = status {
        // The decision is unaffected (the policy was compiled); said so the
        // slow runs have a visible cause.
        eprintln!("rein: policy cache: {why}");
    }
    let db = match &args.db {
        Some(db) => db.clone(),
        None => default_db()?,
    };
    // `REIN_DB` may name the PostgreSQL database of `rein serve` replicas.
    if let location @ rein_store::StoreLocation::Postgres(_) = rein_store::StoreLocation::parse(&db.to_string_lossy()) {
        anyhow::bail!(
            "`rein hook` decides on a local SQLite file, not on a PostgreSQL database ({location}): give --db FILE, \
             or --server URL to ask a `rein serve` replica on that database"
        );
    }
    if let Some(dir) = db.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create `{}`", dir.display()))?;
    }
    let key_path = args
        .audit_key
        .clone()
        .unwrap_or_else(|| db.with_file_name("rein-audit.key"));
    // One process per event: no checkpoint thread, no checkpoint at exit.
    let store = SqliteStore::open_with(&db, SqliteOptions::short_lived())
        .with_context(|| format!("cannot open the store `{}`", db.display()))?;
    let rt = tokio::runtime::Builder::new_current_thread().enable_time().build()?;
    // As for `rein serve`: a missing key is created only for a store with no
    // records yet (the count is read only when the key is missing).
    let records = match key_path.exists() {
        true => 0,
        false => rt
            .block_on(rein_store::Store::audit_len(&store))
            .with_context(|| format!("cannot read the store `{}`", db.display()))?,
    };
    let hmac_key = rein_server::server_hmac_key(&key_path, args.audit_key.is_some(), records)?;
    let config = RuntimeConfig {
        hmac_key,
        ..RuntimeConfig::default()
    };
    // The process ends right after deciding: freeing the compiled policy
    // node by node would only delay the exit.
    std::mem::forget(policy.clone());
    let stateful = policy.uses_state();
    let runtime = Runtime::new(policy, Arc::new(store), config);
    if stateful {
        // Hook processes on one store take turns from load to commit, so
        // that each reads what the one before wrote; a store a server
        // keeps is refused (its memory would not see this one's writes).
        let lock = rein_store::StateLock::acquire(&db, STATE_LOCK_WAIT).map_err(|e| {
            anyhow::anyhow!(
                "the policy keeps state (limits, sessions) and {} is busy: {} (if a `rein serve` keeps this \
                 store, send the hook's events to it: `rein hook --server URL`)",
                db.display(),
                e.0
            )
        })?;
        runtime.hold_state_lock(lock);
        rt.block_on(runtime.open_state())
            .with_context(|| format!("cannot load the state (limits, sessions) from `{}`", db.display()))?;
    }
    let home = home();
    let mut protected = protected_files(args, Some(&db));
    protected.add(&key_path, "Rein's audit key", ProtectedKind::Secret);
    match &cache {
        Some(cache) => protected.add(cache.dir(), "Rein's compiled-policy cache", ProtectedKind::Dir),
        None => {
            if let Some(dir) = PolicyCache::default_dir() {
                protected.add(&dir, "Rein's compiled-policy cache", ProtectedKind::Dir);
            }
        }
    }
    rt.block_on(async {
        // `rein approvals` defaults to `rein.db` in the folder it runs in,
        // not to this store: name it, absolute (the hook's folder is the
        // agent's).
        let db_text = std::path::absolute(&db).unwrap_or(db.clone()).display().to_string();
        let hint = format!("--db {}", shlex::try_quote(&db_text).unwrap_or(db_text.as_str().into()));
        // The agent starts the hook in its project (Codex: whatever folder
        // a command runs in, which its events name as `cwd`).
        let project = std::env::current_dir().ok();
        let handled = rein_hooks::handle_in_project(
            &runtime,
            agent,
            bytes,
            home.as_deref(),
            None,
            None,
            &protected,
            Some(&hint),
            project.as_deref(),
        );
        tokio::time::timeout(limit, handled)
            .await
            .map_err(|_| anyhow::anyhow!("no decision within {:.1} s", limit.as_secs_f64()))
    })
}

/// Why an event is refused before it is sent to a server: for an agent
/// whose events' `cwd` is the folder a command runs in (Codex's `workdir`,
/// chosen by its model), a `cwd` outside the project this hook runs in.
/// In process the project is this folder (`rein_hooks::handle_in_project`);
/// a server sees only `cwd`, and would judge a command run in `~` as one
/// run inside a project of its own.
fn outside_the_project(agent: Agent, event: &rein_hooks::HookEvent) -> Option<String> {
    if !rein_hooks::table::table(agent).is_ok_and(|t| t.cwd_is_the_commands) {
        return None;
    }
    let here = std::env::current_dir().ok()?;
    let project = rein_hooks::project_root(&here);
    (!std::path::Path::new(&event.cwd).starts_with(&project)).then(|| {
        format!(
            "the command runs in `{}`, outside the project `{}`; a server cannot tell the project, so Rein refuses it",
            event.cwd,
            project.display()
        )
    })
}

/// How long a hook waits for another Rein process deciding on the same
/// store before it refuses.
const STATE_LOCK_WAIT: Duration = Duration::from_secs(3);

fn home() -> Option<PathBuf> {
    std::env::var_os("HOME").map(PathBuf::from)
}

/// Rein's files this hook knows without opening anything: the store and
/// the secrets kept beside it (`db`, in-process only), the policy files,
/// this executable and `--protect`.
fn protected_files(args: &HookArgs, db: Option<&std::path::Path>) -> Protected {
    let mut protected = Protected::new();
    if let Some(db) = db {
        protected.add_store(db);
        protected.add(
            &db.with_file_name(rein_server::DEFAULT_TOKENS_FILE),
            "Rein's tokens file",
            ProtectedKind::Secret,
        );
        protected.add(
            &db.with_file_name(rein_server::DEFAULT_HMAC_KEY_FILE),
            "Rein's audit key",
            ProtectedKind::Secret,
        );
    }
    protected.add_policies_and_executable(&args.policy);
    for path in &args.protect {
        protected.add_file_or_dir(path, "protected from the agent (`rein hook --protect`)");
    }
    protected
}

fn default_db() -> anyhow::Result<PathBuf> {
    let state = std::env::var_os("XDG_STATE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/state")))
        .context("neither XDG_STATE_HOME nor HOME is set; pass --db")?;
    Ok(state.join("rein/hooks.db"))
}

fn remote(args: &HookArgs, url: &str, agent: Agent, bytes: &[u8], limit: Duration) -> anyhow::Result<Reply> {
    let token = match &args.token_env {
        Some(var) => std::env::var(var).with_context(|| format!("environment variable `{var}` is not set"))?,
        None => args
            .token
            .clone()
            .context("--server needs --token, --token-env or REIN_TOKEN")?,
    };
    let endpoint = format!("{}/v1/hooks/{}", url.trim_end_matches('/'), Agent::name(agent));
    let agent_config = ureq::Agent::config_builder()
        .timeout_global(Some(limit))
        .http_status_as_error(false)
        .build();
    let client: ureq::Agent = agent_config.into();
    let mut response = client
        .post(&endpoint)
        .header("Authorization", &format!("Bearer {token}"))
        .header("Content-Type", "application/json")
        .send(bytes)
        .with_context(|| format!("`{endpoint}` did not answer"))?;
    let status = response.status();
    let body = response
        .body_mut()
        .read_to_string()
        .context("the server's answer could not be read")?;
    if !status.is_success() {
        anyhow::bail!("`{endpoint}` answered {status}: {}", body.trim());
    }
    // Only a JSON object is passed on: anything else would be read by the
    // agent as "no opinion".
    match serde_json::from_str::<serde_json::Value>(&body) {
        Ok(v) if v.is_object() => Ok(Reply {
            stdout: v.to_string(),
            stderr: String::new(),
            exit_code: 0,
        }),
        _ => anyhow::bail!("`{endpoint}` answered something that is not a JSON object"),
    }
}
