//! Where `rein audit` and `rein approvals` act: directly on a SQLite file,
//! or through a running `rein serve`.

use anyhow::{bail, Context};
use clap::Args;
use rein_store::{SqliteStore, Store};
use std::path::PathBuf;
use std::sync::Arc;

/// Either `--db FILE` or `--server URL --token T`.
#[derive(Args, Debug, Clone)]
pub struct Target {
    /// The SQLite file of the store.
    #[arg(long, value_name = "FILE", default_value = "rein.db", conflicts_with = "server")]
    pub db: PathBuf,
    /// A running `rein serve` (e.g. `http://127.0.0.1:8700`) instead of the file.
    #[arg(long, value_name = "URL", requires = "token")]
    pub server: Option<String>,
    /// Bearer token for `--server` (or set `REIN_TOKEN`).
    #[arg(long, value_name = "TOKEN", env = "REIN_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
}

/// A connection to one or the other.
pub enum Conn {
    /// The store opened directly.
    Local(Arc<SqliteStore>),
    /// A server and its token.
    Remote { base: String, token: String },
}

impl Target {
    /// Opens the store or prepares the client. A missing database file is an
    /// error here, so a typo does not silently create an empty store.
    pub fn connect(&self) -> anyhow::Result<Conn> {
        match &self.server {
            Some(url) => Ok(Conn::Remote {
                base: url.trim_end_matches('/').to_string(),
                token: self.token.clone().unwrap_or_default(),
            }),
            None => {
                if !self.db.exists() {
                    bail!(
                        "`{}` does not exist (give the store with --db, or a server with --server)",
                        self.db.display()
                    );
                }
                let store =
                    SqliteStore::open(&self.db).with_context(|| format!("cannot open `{}`", self.db.display()))?;
                Ok(Conn::Local(Arc::new(store)))
            }
        }
    }
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
        let Conn::Remote { base, token } = self else {
            bail!("internal: a local store has no server to call");
        };
        let url = format!("{base}{path}");
        let auth = format!("Bearer {token}");
        let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
        let response = match (method, body) {
            ("GET", _) => agent.get(&url).header("Authorization", &auth).call(),
            (_, Some(b)) => agent.post(&url).header("Authorization", &auth).send_json(b),
            (_, None) => agent.post(&url).header("Authorization", &auth).send_empty(),
        };
        let mut response = response.with_context(|| format!("cannot reach `{url}`"))?;
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
