//! Pinning against tool poisoning and rug pulls: each tool's name,
//! description, schemas and annotations, hashed, in a lock file beside the
//! policy; at run time a tool that differs from its pin, or that was added
//! since, is blocked and hidden until pinned again.
//!
//! (Owner: contracts helper. Interface fixed; bodies to be written.)

use crate::catalog::{Catalog, ToolDigest};
use serde_json::Value as Json;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The lock file's name, in the folder of the first policy path (or in
/// that folder itself when it is one).
pub const LOCK_FILE_NAME: &str = "rein-mcp.lock";

/// Where the lock file of a policy is.
pub fn lock_path(policy_paths: &[PathBuf]) -> PathBuf {
    let _ = policy_paths;
    todo!("contracts helper")
}

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
    /// When (RFC 3339).
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
    pub fn read(path: &Path) -> Result<Option<LockFile>, PinError> {
        let _ = path;
        todo!("contracts helper")
    }

    /// Writes it (atomically: a temporary file renamed over the old one).
    pub fn write(&self, path: &Path) -> Result<(), PinError> {
        let _ = path;
        todo!("contracts helper")
    }
}

impl ServerPins {
    /// Pins every tool of a catalog.
    pub fn from_catalog(source: &str, catalog: &Catalog, pinned_at: &str) -> ServerPins {
        let _ = (source, catalog, pinned_at);
        todo!("contracts helper")
    }

    /// The pinned tools as a catalog.
    pub fn catalog(&self) -> Catalog {
        todo!("contracts helper")
    }

    /// How `current` differs from the pins, by tool name.
    pub fn compare(&self, current: &Catalog) -> Vec<Drift> {
        let _ = current;
        todo!("contracts helper")
    }
}
