//! Pinning against tool poisoning and rug pulls: each tool's name,
//! description, schemas and annotations, hashed, in a lock file beside the
//! policy; at run time a tool that differs from its pin, or that was added
//! since, is blocked and hidden until pinned again.
//!
//! (Owner: contracts helper. Interface fixed; bodies to be written.)

use crate::catalog::{canonical_json, valid_server_name, Catalog, Tool, ToolDigest};
use serde_json::{json, Value as Json};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The lock file's name, in the folder of the first policy path (or in
/// that folder itself when it is one).
pub const LOCK_FILE_NAME: &str = "rein-mcp.lock";

/// Where the lock file of a policy is: in the folder of the first policy
/// path, or in that path itself when it is a folder; in the current
/// folder when no path is given.
pub fn lock_path(policy_paths: &[PathBuf]) -> PathBuf {
    let Some(first) = policy_paths.first() else {
        return PathBuf::from(LOCK_FILE_NAME);
    };
    if first.is_dir() {
        return first.join(LOCK_FILE_NAME);
    }
    match first.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.join(LOCK_FILE_NAME),
        _ => PathBuf::from(LOCK_FILE_NAME),
    }
}

/// The lock file version this code reads and writes.
pub const LOCK_FILE_VERSION: u64 = 1;

/// The largest lock file read (a lock file holds the tools of a few
/// servers; a bigger one is not ours).
const MAX_LOCK_FILE_BYTES: u64 = 64 * 1024 * 1024;

/// The whole lock file: pins per server name.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LockFile {
    /// Pins by server name.
    pub servers: BTreeMap<String, ServerPins>,
}

/// The pins of one server.
#[derive(Clone, Debug, PartialEq)]
pub struct ServerPins {
    /// How the server was reached when pinned (`UpstreamSpec::describe`).
    pub source: String,
    /// When (RFC 3339; a lock file with another form is invalid).
    pub pinned_at: String,
    /// Each tool: its hashes and the tool as listed.
    pub tools: BTreeMap<String, PinnedTool>,
}

/// One pinned tool.
#[derive(Clone, Debug, PartialEq)]
pub struct PinnedTool {
    /// Its hashes.
    pub digest: ToolDigest,
    /// The tool object as listed when pinned (contracts are derived from
    /// it, so that a pinned server's contracts never depend on the server).
    pub tool: Json,
}

/// How a server's tools differ from their pins.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Drift {
    /// A tool not pinned.
    Added {
        /// The tool.
        tool: String,
    },
    /// A pinned tool the server no longer lists.
    Removed {
        /// The tool.
        tool: String,
    },
    /// A pinned tool whose listed form changed.
    Changed {
        /// The tool.
        tool: String,
        /// What changed: `description`, `inputSchema`, `outputSchema`,
        /// `annotations`, `other fields`.
        parts: Vec<&'static str>,
    },
}

/// Why the lock file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum PinError {
    /// I/O.
    #[error("{path}: {reason}")]
    Io {
        /// The file.
        path: String,
        /// The OS error.
        reason: String,
    },
    /// Not a lock file this version reads.
    #[error("{path}: not a valid lock file: {reason}")]
    Invalid {
        /// The file.
        path: String,
        /// What is wrong.
        reason: String,
    },
}

impl LockFile {
    /// Reads the lock file; `Ok(None)` when there is none.
    ///
    /// Read strictly: an unknown key, a repeated key, a version other than
    /// [`LOCK_FILE_VERSION`], or a tool whose recorded hashes do not match
    /// its recorded form (an edit by hand) make the file invalid, since
    /// what is pinned must be exactly what was reviewed.
    pub fn read(path: &Path) -> Result<Option<LockFile>, PinError> {
        let shown = path.display().to_string();
        let io = |e: std::io::Error| PinError::Io {
            path: shown.clone(),
            reason: e.to_string(),
        };
        let invalid = |reason: String| PinError::Invalid {
            path: shown.clone(),
            reason,
        };
        let file = match std::fs::File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io(e)),
        };
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut std::io::Read::take(file, MAX_LOCK_FILE_BYTES + 1), &mut bytes).map_err(io)?;
        if bytes.len() as u64 > MAX_LOCK_FILE_BYTES {
            return Err(invalid(format!("larger than {} MiB", MAX_LOCK_FILE_BYTES >> 20)));
        }
        let json = rein_engine::json::parse_strict(&bytes).map_err(|e| invalid(format!("not JSON: {e}")))?;
        LockFile::from_json(&json).map(Some).map_err(invalid)
    }

    /// Writes it (atomically: a temporary file renamed over the old one).
    pub fn write(&self, path: &Path) -> Result<(), PinError> {
        let shown = path.display().to_string();
        let io = |e: std::io::Error| PinError::Io {
            path: shown.clone(),
            reason: e.to_string(),
        };
        let mut text =
            serde_json::to_string_pretty(&canonical_json(&self.to_json())).map_err(|e| PinError::Invalid {
                path: shown.clone(),
                reason: e.to_string(),
            })?;
        text.push('\n');
        let folder = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or(LOCK_FILE_NAME);
        // In the same folder, so that the rename replaces the file in one
        // step: a reader sees the old pins or the new ones, never half.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or_default();
        let temp = folder.join(format!(".{name}.{}.{nanos}.tmp", std::process::id()));
        let result = (|| {
            let mut file = std::fs::OpenOptions::new().write(true).create_new(true).open(&temp)?;
            std::io::Write::write_all(&mut file, text.as_bytes())?;
            file.sync_all()?;
            std::fs::rename(&temp, path)?;
            // The rename itself is durable once the folder is synced.
            if let Ok(dir) = std::fs::File::open(&folder) {
                let _ = dir.sync_all();
            }
            Ok(())
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(&temp);
        }
        result.map_err(io)
    }

    /// The lock file as JSON: `{"version": 1, "servers": {…}}`.
    pub fn to_json(&self) -> Json {
        let servers: serde_json::Map<String, Json> = self
            .servers
            .iter()
            .map(|(name, pins)| {
                let tools: serde_json::Map<String, Json> = pins
                    .tools
                    .iter()
                    .map(|(tool, pinned)| {
                        (
                            tool.clone(),
                            json!({"digest": serde_json::to_value(&pinned.digest).unwrap_or(Json::Null), "tool": pinned.tool}),
                        )
                    })
                    .collect();
                (
                    name.clone(),
                    json!({"source": pins.source, "pinned_at": pins.pinned_at, "tools": tools}),
                )
            })
            .collect();
        json!({"version": LOCK_FILE_VERSION, "servers": servers})
    }

    /// Reads a lock file's JSON; the error says what is wrong, and where.
    pub fn from_json(json: &Json) -> Result<LockFile, String> {
        let top = object(json, "the file", &["version", "servers"])?;
        match top.get("version") {
            Some(v) if v.as_u64() == Some(LOCK_FILE_VERSION) => {}
            Some(v) => {
                return Err(format!(
                    "version {v}; this rein reads version {LOCK_FILE_VERSION} (pin again with this rein, or use the rein that wrote it)"
                ))
            }
            None => return Err("no `version`".into()),
        }
        let servers = top.get("servers").ok_or("no `servers`")?;
        let servers = object(servers, "`servers`", &[])?;
        let mut out = LockFile::default();
        for (name, entry) in servers {
            if !valid_server_name(name) {
                return Err(format!("`{name}` is not a valid server name"));
            }
            let at = format!("server `{name}`");
            let e = object(entry, &at, &["source", "pinned_at", "tools"])?;
            let text = |key: &str| -> Result<String, String> {
                e.get(key)
                    .and_then(Json::as_str)
                    .map(str::to_string)
                    .ok_or_else(|| format!("{at}: `{key}` is missing or not a string"))
            };
            let source = text("source")?;
            let pinned_at = text("pinned_at")?;
            if pinned_at.parse::<jiff::Timestamp>().is_err() {
                return Err(format!("{at}: `pinned_at` is not an RFC 3339 time"));
            }
            let tools = object(
                e.get("tools").ok_or_else(|| format!("{at}: no `tools`"))?,
                &format!("{at}: `tools`"),
                &[],
            )?;
            let mut pinned = BTreeMap::new();
            for (tool_name, t) in tools {
                let at = format!("{at}, tool `{tool_name}`");
                let t = object(t, &at, &["digest", "tool"])?;
                let raw = t.get("tool").ok_or_else(|| format!("{at}: no `tool`"))?;
                let tool = Tool::from_json(raw).map_err(|e| format!("{at}: {e}"))?;
                if &tool.name != tool_name {
                    return Err(format!("{at}: the tool recorded is named `{}`", tool.name));
                }
                let digest = tool.digest();
                let recorded = t.get("digest").ok_or_else(|| format!("{at}: no `digest`"))?;
                if serde_json::to_value(&digest).ok().as_ref() != Some(recorded) {
                    return Err(format!(
                        "{at}: the recorded hashes do not match the recorded tool (edited by hand?); pin the server again"
                    ));
                }
                pinned.insert(
                    tool_name.clone(),
                    PinnedTool {
                        digest,
                        tool: raw.clone(),
                    },
                );
            }
            out.servers.insert(
                name.clone(),
                ServerPins {
                    source,
                    pinned_at,
                    tools: pinned,
                },
            );
        }
        Ok(out)
    }
}

impl ServerPins {
    /// Pins every tool of a catalog.
    pub fn from_catalog(source: &str, catalog: &Catalog, pinned_at: &str) -> ServerPins {
        let tools = catalog
            .tools
            .iter()
            .map(|(name, tool)| {
                (
                    name.clone(),
                    PinnedTool {
                        digest: tool.digest(),
                        tool: tool.raw.clone(),
                    },
                )
            })
            .collect();
        ServerPins {
            source: source.to_string(),
            pinned_at: pinned_at.to_string(),
            tools,
        }
    }

    /// Pins every tool of a catalog, now.
    pub fn from_catalog_now(source: &str, catalog: &Catalog) -> ServerPins {
        ServerPins::from_catalog(source, catalog, &jiff::Timestamp::now().to_string())
    }

    /// The pinned tools as a catalog.
    pub fn catalog(&self) -> Catalog {
        let tools = self
            .tools
            .iter()
            .map(|(name, pinned)| {
                (
                    name.clone(),
                    Tool {
                        name: name.clone(),
                        raw: pinned.tool.clone(),
                    },
                )
            })
            .collect();
        Catalog { tools }
    }

    /// How `current` differs from the pins, by tool name.
    pub fn compare(&self, current: &Catalog) -> Vec<Drift> {
        let mut drift = Vec::new();
        let mut names: Vec<&String> = self.tools.keys().chain(current.tools.keys()).collect();
        names.sort();
        names.dedup();
        for name in names {
            match (self.tools.get(name), current.tools.get(name)) {
                (Some(_), None) => drift.push(Drift::Removed { tool: name.clone() }),
                (None, Some(_)) => drift.push(Drift::Added { tool: name.clone() }),
                (Some(pinned), Some(now)) => {
                    let mut parts = changed_parts(&pinned.digest, &now.digest());
                    if !parts.contains(&"other fields") && other_fields_differ(&pinned.tool, &now.raw) {
                        parts.push("other fields");
                    }
                    if !parts.is_empty() {
                        drift.push(Drift::Changed {
                            tool: name.clone(),
                            parts,
                        });
                    }
                }
                (None, None) => {}
            }
        }
        drift
    }
}

/// What differs between two digests of one tool, in the words of the
/// tool object (`description`, `inputSchema`, `outputSchema`,
/// `annotations`, `other fields`); empty when nothing does.
pub fn changed_parts(pinned: &ToolDigest, current: &ToolDigest) -> Vec<&'static str> {
    let mut parts = Vec::new();
    if pinned.description != current.description {
        parts.push("description");
    }
    if pinned.input_schema != current.input_schema {
        parts.push("inputSchema");
    }
    if pinned.output_schema != current.output_schema {
        parts.push("outputSchema");
    }
    if pinned.annotations != current.annotations {
        parts.push("annotations");
    }
    if parts.is_empty() && pinned.whole != current.whole {
        // `title`, `icons`, `_meta`, `execution`…: no hash of their own.
        parts.push("other fields");
    }
    parts
}

/// Whether two forms of a tool differ outside the parts hashed apart.
fn other_fields_differ(a: &Json, b: &Json) -> bool {
    const APART: [&str; 4] = ["description", "inputSchema", "outputSchema", "annotations"];
    match (a.as_object(), b.as_object()) {
        (Some(a), Some(b)) => {
            let rest = |m: &serde_json::Map<String, Json>| -> Vec<(String, Json)> {
                let mut v: Vec<(String, Json)> = m
                    .iter()
                    .filter(|(k, _)| !APART.contains(&k.as_str()))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                v.sort_by(|x, y| x.0.cmp(&y.0));
                v
            };
            rest(a) != rest(b)
        }
        _ => a != b,
    }
}

/// A tool name as messages show it: as is when made of name characters,
/// else quoted with escapes (a server chooses its tools' names, and a name
/// could try to pass for text of ours).
fn shown(name: &str) -> String {
    let plain = !name.is_empty()
        && name.chars().count() <= 128
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '/'));
    if plain {
        format!("`{name}`")
    } else {
        let cut: String = name.chars().take(128).collect();
        serde_json::to_string(&cut).unwrap_or_default()
    }
}

impl Drift {
    /// The tool it is about.
    pub fn tool(&self) -> &str {
        match self {
            Drift::Added { tool } | Drift::Removed { tool } | Drift::Changed { tool, .. } => tool,
        }
    }
}

/// Reads as a person and a model can act on: what happened to which tool,
/// and how to accept it.
impl std::fmt::Display for Drift {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Drift::Added { tool } => write!(
                f,
                "tool {} was added since the server was pinned; run `rein mcp pin` to accept it",
                shown(tool)
            ),
            Drift::Removed { tool } => write!(
                f,
                "tool {} is pinned but no longer listed by the server; run `rein mcp pin` to accept it",
                shown(tool)
            ),
            Drift::Changed { tool, parts } => write!(
                f,
                "tool {} changed since it was pinned: {}; run `rein mcp pin` to accept it",
                shown(tool),
                parts.join(", ")
            ),
        }
    }
}

/// A JSON object with only `known` keys (any key when `known` is empty).
fn object<'a>(json: &'a Json, what: &str, known: &[&str]) -> Result<&'a serde_json::Map<String, Json>, String> {
    let map = json.as_object().ok_or_else(|| format!("{what} is not a JSON object"))?;
    if !known.is_empty() {
        if let Some(k) = map.keys().find(|k| !known.contains(&k.as_str())) {
            return Err(format!("{what}: unknown key `{k}`"));
        }
    }
    Ok(map)
}

#[cfg(test)]
mod tests;
