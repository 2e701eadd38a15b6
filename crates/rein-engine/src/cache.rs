//! Compiled policies kept on disk between processes.
//!
//! A process that decides one request and exits (a coding agent's hook,
//! `rein check`) would spend most of its time reading YAML and
//! type-checking rules. The cache keeps the checked IR of a policy, keyed
//! by a BLAKE3 hash of everything the compilation depends on: the file
//! names and texts in order, and the identity of the running executable
//! (path, size, modification time), so a rebuilt `rein` never reads an
//! entry another build wrote.
//!
//! An entry is cut in sections, each with its own BLAKE3 checksum (see
//! [`entry`]): a shared part, one section per action, and the whole IR. A
//! caller that decides one request reads the shared part and that action's
//! section only ([`PolicyEntry::for_action`]), so its cost does not grow
//! with the rest of the policy; one that asks many questions reads the
//! whole ([`PolicyEntry::whole`], [`PolicyCache::load`]). A section that
//! fails any check is never used: the policy is compiled again and the
//! entry rewritten; the caller is told, never silently served a different
//! policy. Regexes and globs are stored as their source and compiled on
//! first use (see [`crate::ir::Lazy`]).
//!
//! The entries are as trusted as the policy files: whoever can write the
//! cache directory decides what the policy is. It is created private (0700,
//! entries 0600), and an entry not owned by the current user or writable by
//! others is refused.

mod entry;
#[cfg(test)]
mod tests;

use crate::diagnostics::{Diagnostic, LoadError};
use crate::ir::CompiledPolicy;
use crate::policy::{read_files, Policy};
use crate::source::SourceFile;
use entry::{Header, Shared, Span, MAGIC};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

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

/// What [`PolicyCache::open`] found.
#[derive(Debug)]
pub enum Opened {
    /// The policy was compiled (there was no usable entry, or the texts
    /// could not be read or hashed): the whole policy, its warnings, and
    /// what the cache did.
    Compiled(Policy, CacheStatus),
    /// An entry for exactly these texts, its shared part read and checked;
    /// the rest is read when asked for.
    Entry(PolicyEntry),
}

/// A cache entry for the policy texts it was opened for, of which only the
/// shared part has been read. Take from it the policy for one action
/// ([`PolicyEntry::for_action`]) or the whole policy
/// ([`PolicyEntry::whole`]).
#[derive(Debug)]
pub struct PolicyEntry {
    cache: PolicyCache,
    path: PathBuf,
    key: blake3::Hash,
    files: Vec<SourceFile>,
    file: std::fs::File,
    len: u64,
    header: Header,
    /// Boxed: most of the entry's size, moved whole into a policy.
    shared: Box<Shared>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared").field("actions", &self.names.len()).finish()
    }
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
        match self.open(paths)? {
            Opened::Compiled(policy, status) => Ok((policy, status)),
            Opened::Entry(entry) => entry.whole(),
        }
    }

    /// Reads policy files and looks up their entry, reading only its
    /// shared part: for a caller that decides requests of one action
    /// ([`PolicyEntry::for_action`]). Without a usable entry the policy is
    /// compiled (and its entry written) as [`PolicyCache::load`] does.
    pub fn open<P: AsRef<Path>>(&self, paths: &[P]) -> Result<Opened, LoadError> {
        let mut diags = Vec::new();
        let files = read_files(paths, &mut diags);
        if !diags.is_empty() {
            // Unreadable files: the full load reports them.
            return Policy::compile_files(&files, diags).map(|p| Opened::Compiled(p, CacheStatus::NotCached));
        }
        let key = match cache_key(&files) {
            Ok(key) => key,
            Err(e) => return Policy::compile_files(&files, diags).map(|p| Opened::Compiled(p, CacheStatus::Failed(e))),
        };
        let path = self.dir.join(format!("{}.{SUFFIX}", key.to_hex()));
        let failure = match open_entry(&path, &key) {
            Ok(Some((file, len, header, shared))) => {
                return Ok(Opened::Entry(PolicyEntry {
                    cache: self.clone(),
                    path,
                    key,
                    files,
                    file,
                    len,
                    header,
                    shared: Box::new(shared),
                }))
            }
            Ok(None) => None,
            Err(e) => Some(unusable(&path, &e)),
        };
        let (policy, status) = self.compile_and_store(&files, &path, &key, failure)?;
        Ok(Opened::Compiled(policy, status))
    }

    /// Compiles `files` and writes their entry (unless the policy has
    /// warnings); `failure` is why an entry that was there could not be
    /// used.
    fn compile_and_store(
        &self,
        files: &[SourceFile],
        path: &Path,
        key: &blake3::Hash,
        failure: Option<String>,
    ) -> Result<(Policy, CacheStatus), LoadError> {
        let policy = Policy::compile_files(files, Vec::<Diagnostic>::new())?;
        if !policy.warnings().is_empty() {
            return Ok((policy, failure.map_or(CacheStatus::NotCached, CacheStatus::Failed)));
        }
        let status = match (failure, self.write_entry(path, key, policy.compiled())) {
            (Some(f), _) => CacheStatus::Failed(f),
            (None, Ok(())) => CacheStatus::Stored,
            (None, Err(e)) => CacheStatus::Failed(format!("cannot write the cache entry `{}`: {e}", path.display())),
        };
        Ok((policy, status))
    }

    fn write_entry(&self, path: &Path, key: &blake3::Hash, policy: &CompiledPolicy) -> std::io::Result<()> {
        let bytes = entry::encode(key, policy).map_err(std::io::Error::other)?;
        create_private_dir(&self.dir)?;
        let mut builder = tempfile::Builder::new();
        builder.prefix(".entry-");
        #[cfg(unix)]
        builder.permissions(private_file());
        let mut tmp = builder.tempfile_in(&self.dir)?;
        tmp.write_all(&bytes)?;
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

impl PolicyEntry {
    /// The policy to decide requests for `action` with, reading the shared
    /// part and that action's section only (for a name the policy has no
    /// action for, the shared part alone). Its decisions and explanations
    /// of requests for `action` are those of the whole policy, byte for
    /// byte; it refuses every other action as unknown, and what it says of
    /// the policy as a whole (its actions, rules and limits) covers
    /// `action` only: use it for requests of `action` and nothing else.
    /// A section that fails its checks is not used: the policy is compiled
    /// again (the whole of it, returned with [`CacheStatus::Failed`]) and
    /// the entry rewritten.
    pub fn for_action(self, action: &str) -> Result<(Policy, CacheStatus), LoadError> {
        let PolicyEntry {
            cache,
            path,
            key,
            files,
            file,
            len,
            header: _,
            shared,
        } = self;
        let read = match shared.names.iter().position(|n| n == action) {
            None => Ok(entry::without_action(*shared)),
            Some(id) => {
                let what = "section of one action";
                shared
                    .sections
                    .get(id)
                    .ok_or_else(|| "it has fewer sections than actions".to_string())
                    .and_then(|&span| read_span(&file, len, span, what))
                    .and_then(|blob| {
                        let section = entry::decode(entry::check_blob(&blob, what)?, what)?;
                        entry::with_action(*shared, section, action, id)
                    })
            }
        };
        match read {
            Ok(mut inner) => {
                inner.files = files;
                Ok((Policy::from_compiled(inner), CacheStatus::Hit))
            }
            Err(e) => cache.compile_and_store(&files, &path, &key, Some(unusable(&path, &e))),
        }
    }

    /// The whole policy, as [`PolicyCache::load`] reads it; a damaged
    /// entry is compiled again and rewritten, as there.
    pub fn whole(self) -> Result<(Policy, CacheStatus), LoadError> {
        let what = "policy";
        let read = read_span(&self.file, self.len, self.header.whole, what)
            .and_then(|blob| entry::decode::<CompiledPolicy>(entry::check_blob(&blob, what)?, what));
        match read {
            Ok(mut inner) => {
                inner.files = self.files;
                Ok((Policy::from_compiled(inner), CacheStatus::Hit))
            }
            Err(e) => {
                let failure = unusable(&self.path, &e);
                self.cache
                    .compile_and_store(&self.files, &self.path, &self.key, Some(failure))
            }
        }
    }
}

fn unusable(path: &Path, why: &str) -> String {
    format!("the cache entry `{}` is unusable: {why}", path.display())
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

/// The entry at `path`, its header and shared part read and checked:
/// `None` when there is none, an error when it exists but cannot be
/// trusted or read.
fn open_entry(path: &Path, key: &blake3::Hash) -> Result<Option<(std::fs::File, u64, Header, Shared)>, String> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.to_string()),
    };
    check_private(&meta)?;
    let file = match std::fs::File::open(path) {
        Ok(file) => file,
        // Pruned by another process since: as if there had been none.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.to_string()),
    };
    // The file opened, not the name looked at: it may have been replaced.
    let meta = file.metadata().map_err(|e| e.to_string())?;
    check_private(&meta)?;
    let len = meta.len();
    if len > MAX_ENTRY_BYTES {
        return Err(format!("{len} bytes is more than an entry can hold"));
    }
    let head = read_span(
        &file,
        len,
        Span {
            offset: 0,
            len: entry::HEADER_LEN.min(len),
        },
        "header",
    )?;
    let header = entry::read_header(&head, key)?;
    let what = "shared part";
    let blob = read_span(&file, len, header.shared, what)?;
    let shared: Shared = entry::decode(entry::check_blob(&blob, what)?, what)?;
    if shared.sections.len() != shared.names.len() {
        return Err("its shared part does not list one section per action".into());
    }
    Ok(Some((file, len, header, shared)))
}

/// The bytes of `span` in the entry `file` of `len` bytes.
fn read_span(file: &std::fs::File, len: u64, span: Span, what: &str) -> Result<Vec<u8>, String> {
    let end = span.offset.checked_add(span.len);
    if end.is_none_or(|end| end > len) {
        return Err(format!("its {what} lies past its end (truncated)"));
    }
    let size = usize::try_from(span.len).map_err(|_| format!("its {what} is too large"))?;
    let mut buf = vec![0u8; size];
    read_at(file, &mut buf, span.offset).map_err(|e| format!("cannot read its {what}: {e}"))?;
    Ok(buf)
}

#[cfg(unix)]
fn read_at(file: &std::fs::File, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
    std::os::unix::fs::FileExt::read_exact_at(file, buf, offset)
}

#[cfg(not(unix))]
fn read_at(mut file: &std::fs::File, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
    use std::io::{Read, Seek};
    file.seek(std::io::SeekFrom::Start(offset))?;
    file.read_exact(buf)
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
