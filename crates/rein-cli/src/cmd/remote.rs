//! Where `rein audit` and `rein approvals` act: directly on the store (a
//! SQLite file or a PostgreSQL database), or through a running `rein serve`.

use anyhow::{bail, Context};
use clap::Args;
use rein_store::{SqliteStore, Store, StoreLocation};
use std::path::PathBuf;
use std::sync::Arc;

/// The store used when neither `--db` nor `REIN_DB` names one.
pub const DEFAULT_DB: &str = "rein.db";

/// Either `--db FILE|URL` or `--server URL --token T`.
#[derive(Args, Debug, Clone)]
#[command(next_help_heading = "Where")]
pub struct Target {
    /// The store: a SQLite file or a PostgreSQL URL
    /// (`postgres://user:password@host/db`). Default: `REIN_DB` if set,
    /// else `rein.db`.
    #[arg(long, value_name = "FILE|URL", conflicts_with = "server")]
    pub db: Option<String>,
    /// A running `rein serve` (e.g. `http://127.0.0.1:8700`) instead of the file.
    #[arg(long, value_name = "URL", requires = "token")]
    pub server: Option<String>,
    /// Bearer token for `--server`; `approvals grant|deny` on the store file
    /// take the approver's token here too (or set `REIN_TOKEN`).
    #[arg(long, value_name = "TOKEN", env = "REIN_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// How long to wait for `--server` to answer, in seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub timeout: u64,
}

/// A connection to one or the other.
pub enum Conn {
    /// The store opened directly.
    Local(Arc<dyn Store>),
    /// A server, its token, and how long to wait for it.
    Remote {
        base: String,
        token: String,
        timeout: std::time::Duration,
    },
}

impl Target {
    /// Where the store is: `--db`, else `REIN_DB`, else `rein.db`. (Not
    /// clap's `env`: a `REIN_DB` in the environment would then conflict
    /// with `--server`.)
    pub fn location(&self) -> StoreLocation {
        let given = self
            .db
            .clone()
            .or_else(|| std::env::var("REIN_DB").ok().filter(|v| !v.is_empty()))
            .unwrap_or_else(|| DEFAULT_DB.to_string());
        StoreLocation::parse(&given)
    }

    /// The SQLite file of the store, or a clear refusal for a command that
    /// works on a SQLite file only (`what` says which).
    pub fn sqlite_only(&self, what: &str) -> anyhow::Result<PathBuf> {
        match self.location() {
            StoreLocation::Sqlite(path) => Ok(path),
            StoreLocation::Postgres(_) => bail!("{what}"),
        }
    }

    /// Opens the store for reading, or prepares the client. The file is
    /// neither created nor migrated (it may be a write-protected copy): a
    /// missing file, or one that is not a store this build reads, is an
    /// error.
    pub fn connect(&self) -> anyhow::Result<Conn> {
        self.open(false)
    }

    /// As [`Target::connect`], for a command that writes: the store's schema
    /// is brought up to date if it is older (the file must exist still, so
    /// a typo does not silently create an empty store).
    pub fn connect_for_writing(&self) -> anyhow::Result<Conn> {
        self.open(true)
    }

    fn open(&self, write: bool) -> anyhow::Result<Conn> {
        if let Some(url) = &self.server {
            let base = url.trim_end_matches('/');
            let scheme_ok = base
                .split_once("://")
                .is_some_and(|(scheme, rest)| matches!(scheme, "http" | "https") && !rest.is_empty());
            if !scheme_ok {
                bail!("--server must be the server's URL, like http://127.0.0.1:8700 (got `{url}`)");
            }
            return Ok(Conn::Remote {
                base: base.to_string(),
                token: self.token.clone().unwrap_or_default(),
                timeout: std::time::Duration::from_secs(self.timeout),
            });
        }
        let db = match self.location() {
            StoreLocation::Sqlite(db) => db,
            location @ StoreLocation::Postgres(_) => return open_postgres(&location).map(Conn::Local),
        };
        if !db.exists() {
            let hint = match write {
                true => "give the store with --db, or a server with --server",
                false => "give the store with --db",
            };
            bail!("`{}` does not exist ({hint})", db.display());
        }
        let store = match write {
            true => SqliteStore::open(&db),
            false => SqliteStore::open_read_only(&db),
        };
        let store = store.with_context(|| format!("cannot open `{}`", db.display()))?;
        Ok(Conn::Local(Arc::new(store)))
    }
}

/// The runtime the store commands run on. One for the process, kept: a
/// PostgreSQL store's connections and writer are tasks of the runtime it
/// was opened on, which must outlive it.
pub fn runtime() -> anyhow::Result<&'static tokio::runtime::Runtime> {
    static RUNTIME: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
    if let Some(rt) = RUNTIME.get() {
        return Ok(rt);
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    Ok(RUNTIME.get_or_init(|| rt))
}

/// Opens the PostgreSQL store at `location` (`REIN_DB_CA_FILE` names a CA
/// its certificate must chain to), its errors without the password.
fn open_postgres(location: &StoreLocation) -> anyhow::Result<Arc<dyn Store>> {
    let rt = runtime()?;
    rt.block_on(rein_server::open_shared_store(location))
        .map_err(|e| anyhow::anyhow!("{}", rein_server::scrub_password(location, &format!("{e:#}"))))
}

/// `text` as one segment of a URL path (an approval id, say): everything
/// but unreserved characters percent-encoded, so that `?`, `/` or `#` in it
/// cannot change which route is called.
pub fn path_segment(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl Conn {
    /// The store, for local work.
    pub fn store(&self) -> Option<Arc<dyn Store>> {
        match self {
            Conn::Local(s) => Some(s.clone() as Arc<dyn Store>),
            Conn::Remote { .. } => None,
        }
    }

    /// Calls the server: `method` on `path` with an optional JSON body.
    /// Returns the status and the JSON answer.
    pub fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> anyhow::Result<(u16, serde_json::Value)> {
        let Conn::Remote { base, token, timeout } = self else {
            bail!("internal: a local store has no server to call");
        };
        let url = format!("{base}{path}");
        let auth = format!("Bearer {token}");
        // Bounded: a server that accepts and never answers must not hang a
        // script (`--timeout`).
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(*timeout))
            .build()
            .into();
        let response = match (method, body) {
            ("GET", _) => agent.get(&url).header("Authorization", &auth).call(),
            (_, Some(b)) => agent.post(&url).header("Authorization", &auth).send_json(b),
            (_, None) => agent.post(&url).header("Authorization", &auth).send_empty(),
        };
        let mut response =
            response.with_context(|| format!("cannot reach `{url}` (waited at most {}s)", timeout.as_secs()))?;
        let status = response.status().as_u16();
        let text = response
            .body_mut()
            .read_to_string()
            .with_context(|| format!("cannot read the answer of `{url}`"))?;
        let json = serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text));
        Ok((status, json))
    }
}

/// Renders a server's error answer for the terminal.
pub fn server_error(status: u16, body: &serde_json::Value) -> anyhow::Error {
    let message = body["error"]["message"]
        .as_str()
        .map_or_else(|| body.to_string(), str::to_string);
    anyhow::anyhow!("the server answered {status}: {message}")
}
