//! Compiled policies kept on disk between processes.
//!
//! A process that decides one request and exits (a coding agent's hook)
//! would spend most of its time reading YAML and type-checking rules. The
//! cache keeps the checked IR of a policy, keyed by a BLAKE3 hash of
//! everything the compilation depends on: the file names and texts in order,
//! and the identity of the running executable (path, size, modification
//! time), so a rebuilt `rein` never reads an entry another build wrote.
//!
//! An entry is `MAGIC`, the key, a BLAKE3 checksum of the payload, and the
//! payload: the IR in postcard. An entry that fails any check is ignored and
//! rewritten; the caller is told, never silently served a different policy.
//! Regexes and globs are stored as their source and compiled on first use
//! (see [`crate::ir::Lazy`]).
//!
//! The entries are as trusted as the policy files: whoever can write the
//! cache directory decides what the policy is. It is created private (0700,
//! entries 0600), and an entry not owned by the current user or writable by
//! others is refused.

use crate::diagnostics::LoadError;
use crate::ir::CompiledPolicy;
use crate::policy::{read_files, Policy};
use crate::source::SourceFile;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The entry format: bumped whenever the IR changes shape (ir2: actions
/// carry their `tool:` facts), so an entry of another shape is refused.
const MAGIC: &[u8; 16] = b"rein-policy-ir4\n";
/// Largest entry read back; a larger file is not one this code wrote.
const MAX_ENTRY_BYTES: u64 = 256 << 20;
/// Entries kept in a directory; older ones are removed when one is written.
const KEEP_ENTRIES: usize = 32;
const SUFFIX: &str = "policy-ir";

/// A directory of compiled policies.
#[derive(Clone, Debug)]
pub struct PolicyCache {
    dir: PathBuf,
}

/// What the cache did during a load.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CacheStatus {
    /// The compiled policy was read from the cache.
    Hit,
    /// The policy was compiled and its entry written.
    Stored,
    /// The policy was compiled but not cached: it has warnings, which only a
    /// full compilation reports.
    NotCached,
    /// The policy was compiled; the cache could not be used for the reason
    /// given (an unreadable or damaged entry, a directory that cannot be
    /// written). Deciding is unaffected; the next load compiles again.
    Failed(String),
}

impl PolicyCache {
    /// A cache in `dir`, created on first write.
    pub fn new(dir: impl Into<PathBuf>) -> PolicyCache {
        PolicyCache { dir: dir.into() }
    }

    /// `$XDG_CACHE_HOME/rein/policies`, else `$HOME/.cache/rein/policies`.
    pub fn default_dir() -> Option<PathBuf> {
        let base = std::env::var_os("XDG_CACHE_HOME")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
        Some(base.join("rein").join("policies"))
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Loads policy files as [`Policy::load`] does, reading the compiled
    /// policy from the cache when an entry for exactly these texts exists,
    /// and writing one otherwise.
    pub fn load<P: AsRef<Path>>(&self, paths: &[P]) -> Result<(Policy, CacheStatus), LoadError> {
        let mut diags = Vec::new();
        let files = read_files(paths, &mut diags);
        if !diags.is_empty() {
            // Unreadable files: the full load reports them.
            return Policy::compile_files(&files, diags).map(|p| (p, CacheStatus::NotCached));
        }
        let key = match cache_key(&files) {
            Ok(key) => key,
            Err(e) => return Policy::compile_files(&files, diags).map(|p| (p, CacheStatus::Failed(e))),
        };
        let path = self.dir.join(format!("{}.{SUFFIX}", key.to_hex()));
        let failure = match read_entry(&path, &key) {
            Ok(Some(mut inner)) => {
                inner.files = files;
                return Ok((Policy::from_compiled(inner), CacheStatus::Hit));
            }
            Ok(None) => None,
            Err(e) => Some(format!("the cache entry `{}` is unusable: {e}", path.display())),
        };
        let policy = Policy::compile_files(&files, diags)?;
        if !policy.warnings().is_empty() {
            return Ok((policy, CacheStatus::NotCached));
        }
        let status = match (failure, self.write_entry(&path, &key, policy.compiled())) {
            (Some(f), _) => CacheStatus::Failed(f),
            (None, Ok(())) => CacheStatus::Stored,
            (None, Err(e)) => CacheStatus::Failed(format!("cannot write the cache entry `{}`: {e}", path.display())),
        };
        Ok((policy, status))
    }

    fn write_entry(&self, path: &Path, key: &blake3::Hash, policy: &CompiledPolicy) -> std::io::Result<()> {
        let payload = postcard::to_stdvec(policy).map_err(std::io::Error::other)?;
        create_private_dir(&self.dir)?;
        let mut builder = tempfile::Builder::new();
        builder.prefix(".entry-");
        #[cfg(unix)]
        builder.permissions(private_file());
        let mut tmp = builder.tempfile_in(&self.dir)?;
        tmp.write_all(MAGIC)?;
        tmp.write_all(key.as_bytes())?;
        tmp.write_all(blake3::hash(&payload).as_bytes())?;
        tmp.write_all(&payload)?;
        // A rename makes the entry appear whole or not at all; no fsync: a
        // lost entry is only compiled again.
        tmp.persist(path).map_err(|e| e.error)?;
        self.prune();
        Ok(())
    }

    /// Keeps the newest [`KEEP_ENTRIES`] entries; errors are ignored (an
    /// entry left behind costs only disk).
    fn prune(&self) {
        let Ok(dir) = std::fs::read_dir(&self.dir) else { return };
        let mut entries: Vec<(std::time::SystemTime, PathBuf)> = dir
            .filter_map(Result::ok)
            .filter(|e| e.path().extension().is_some_and(|x| x == SUFFIX))
            .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
            .collect();
        if entries.len() <= KEEP_ENTRIES {
            return;
        }
        entries.sort();
        for (_, old) in &entries[..entries.len() - KEEP_ENTRIES] {
            let _ = std::fs::remove_file(old);
        }
    }
}

/// The hash of everything a compiled policy depends on.
fn cache_key(files: &[SourceFile]) -> Result<blake3::Hash, String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find the running executable: {e}"))?;
    let meta = std::fs::metadata(&exe).map_err(|e| format!("cannot read `{}`: {e}", exe.display()))?;
    let modified = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos());
    let mut h = blake3::Hasher::new();
    h.update(MAGIC);
    let exe_name = exe.to_string_lossy();
    for part in [exe_name.as_bytes(), &meta.len().to_le_bytes(), &modified.to_le_bytes()] {
        h.update(&(part.len() as u64).to_le_bytes());
        h.update(part);
    }
    h.update(&(files.len() as u64).to_le_bytes());
    for f in files {
        for part in [f.name().as_bytes(), f.text().as_bytes()] {
            h.update(&(part.len() as u64).to_le_bytes());
            h.update(part);
        }
    }
    Ok(h.finalize())
}

/// The entry at `path`: `None` when there is none, an error when it exists
/// but cannot be trusted or read.
fn read_entry(path: &Path, key: &blake3::Hash) -> Result<Option<CompiledPolicy>, String> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.to_string()),
    };
    check_private(&meta)?;
    if meta.len() > MAX_ENTRY_BYTES {
        return Err(format!("{} bytes is more than an entry can hold", meta.len()));
    }
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        // Pruned by another process since: as if there had been none.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.to_string()),
    };
    let rest = bytes
        .strip_prefix(MAGIC.as_slice())
        .ok_or("it does not start as an entry does")?;
    let (stored_key, rest) = rest.split_at_checked(32).ok_or("it is truncated")?;
    let (checksum, payload) = rest.split_at_checked(32).ok_or("it is truncated")?;
    if stored_key != key.as_bytes() {
        return Err("it was written for other policy texts".into());
    }
    if checksum != blake3::hash(payload).as_bytes() {
        return Err("its checksum does not match (damaged or altered)".into());
    }
    let (policy, left) =
        postcard::take_from_bytes::<CompiledPolicy>(payload).map_err(|e| format!("it cannot be decoded: {e}"))?;
    if !left.is_empty() {
        return Err("it has bytes after the policy".into());
    }
    Ok(Some(policy))
}

#[cfg(unix)]
fn check_private(meta: &std::fs::Metadata) -> Result<(), String> {
    use std::os::unix::fs::MetadataExt;
    if !meta.file_type().is_file() {
        return Err("it is not a regular file".into());
    }
    let me = rustix::process::geteuid().as_raw();
    if meta.uid() != me {
        return Err(format!(
            "it is owned by uid {}, not by this user (uid {me})",
            meta.uid()
        ));
    }
    if meta.mode() & 0o022 != 0 {
        return Err(format!("others may write it (mode {:o})", meta.mode() & 0o777));
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_private(meta: &std::fs::Metadata) -> Result<(), String> {
    if meta.file_type().is_file() {
        Ok(())
    } else {
        Err("it is not a regular file".into())
    }
}

#[cfg(unix)]
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)
}

#[cfg(not(unix))]
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)
}

#[cfg(unix)]
fn private_file() -> std::fs::Permissions {
    use std::os::unix::fs::PermissionsExt;
    std::fs::Permissions::from_mode(0o600)
}

impl Policy {
    /// A policy read from the cache, its flat programs rebuilt (they are
    /// not stored).
    fn from_compiled(mut inner: CompiledPolicy) -> Policy {
        crate::flat::build_all(&mut inner);
        Policy::new_checked(Arc::new(inner))
    }
}
