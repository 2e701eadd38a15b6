//! The lock on a store's state.
//!
//! The state of stateful rules (limit uses, sessions) is read into memory,
//! decided on and written back; two processes doing that on one store at
//! once could both take the last unit of a limit. So whoever keeps the
//! state (a `rein serve` for its whole life, a `rein hook` from loading to
//! committing) holds an exclusive lock on a file beside the store.

use std::fs::{File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::StoreError;

/// How often a waiting [`StateLock::acquire`] tries again.
const POLL: Duration = Duration::from_millis(10);

/// An exclusive lock on a store's state: the file `<store file>.lock`
/// beside the store, locked with the operating system's advisory file lock
/// (`flock` on Unix), so that it is released when the holder exits, even
/// killed. Released on drop.
#[derive(Debug)]
pub struct StateLock {
    // Held for its lock; closing it releases the lock.
    _file: File,
    path: PathBuf,
}

impl StateLock {
    /// Locks the state of the store at `db_path`, waiting up to `wait` for
    /// another holder to release it. The lock file is created if missing,
    /// readable and writable by its owner only. Fails with an error naming
    /// the lock file if another holder keeps it past `wait`.
    ///
    /// Blocking (it sleeps between tries): from async code, call it on a
    /// blocking thread (`spawn_blocking`).
    pub fn acquire(db_path: &Path, wait: Duration) -> Result<StateLock, StoreError> {
        let path = lock_path(db_path)?;
        let file = open_lock_file(&path)?;
        let start = Instant::now();
        loop {
            match file.try_lock() {
                Ok(()) => return Ok(StateLock { _file: file, path }),
                Err(TryLockError::WouldBlock) => {
                    let waited = start.elapsed();
                    if waited >= wait {
                        return Err(StoreError(format!(
                            "another Rein process (a `rein serve` or a hook) holds the state of this store: \
                             {} is locked (waited {} ms)",
                            path.display(),
                            wait.as_millis()
                        )));
                    }
                    std::thread::sleep(POLL.min(wait - waited));
                }
                Err(TryLockError::Error(e)) => {
                    return Err(StoreError(format!("cannot lock {}: {e}", path.display())));
                }
            }
        }
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// `<store file name>.lock` in the store's folder.
fn lock_path(db_path: &Path) -> Result<PathBuf, StoreError> {
    let name = db_path
        .file_name()
        .ok_or_else(|| StoreError(format!("{} names no file to lock beside", db_path.display())))?;
    let mut lock_name = name.to_owned();
    lock_name.push(".lock");
    Ok(db_path.with_file_name(lock_name))
}

fn open_lock_file(path: &Path) -> Result<File, StoreError> {
    let mut options = OpenOptions::new();
    // Never truncated: the file's content is nothing, its lock everything.
    options.read(true).write(true).create(true).truncate(false);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options
        .open(path)
        .map_err(|e| StoreError(format!("cannot open the lock file {}: {e}", path.display())))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn the_lock_file_is_beside_the_store() {
        assert_eq!(
            lock_path(Path::new("dir/rein.db")).unwrap(),
            PathBuf::from("dir/rein.db.lock")
        );
        assert!(lock_path(Path::new("/")).is_err());
    }
}
