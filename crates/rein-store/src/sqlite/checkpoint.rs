//! Checkpoints off the commit path.
//!
//! In WAL mode every commit appends pages to the `-wal` file; a checkpoint
//! copies them back into the database file and syncs it, and once all of
//! them are copied the next transaction starts the WAL over. SQLite's
//! default runs a checkpoint inside the commit that crosses 1,000 WAL
//! pages, on the committing connection: with our single writer that stalls
//! every decision waiting on it for a copy and an fsync of the database,
//! several times a second under load.
//!
//! Here a thread with its own connection copies what has been committed
//! every [`INTERVAL`] (a *passive* checkpoint: it never blocks the writer,
//! and the writer never waits for it). The writer keeps SQLite's automatic
//! checkpoint as a bound, at [`WRITER_AUTOCHECKPOINT`] pages: when it
//! fires, the background thread has already copied nearly everything, so
//! the writer only copies the last moments' pages, and the WAL starts over
//! at the next commit. Durability does not depend on checkpoints: a commit
//! is durable once its WAL frames are synced.

use std::path::Path;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::Duration;

use rusqlite::Connection;

use super::schema;
use crate::StoreError;

/// How often the background thread copies committed pages.
const INTERVAL: Duration = Duration::from_millis(100);

/// WAL size, in pages, at which the writer itself checkpoints (and the WAL
/// starts over): about 16 MiB with 4 KiB pages.
pub(crate) const WRITER_AUTOCHECKPOINT: u32 = 4096;

/// The background checkpoint thread; stopped (and joined) when dropped.
pub(crate) struct Checkpointer {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Checkpointer {
    /// Starts the thread on its own connection to `path`.
    pub(crate) fn start(path: &Path) -> Result<Checkpointer, StoreError> {
        let conn = schema::open_checkpointer(path)?;
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("rein-store-ckpt".into())
            .spawn(move || run(&conn, &stopped))
            .map_err(|e| StoreError(format!("cannot start the store's checkpoint thread: {e}")))?;
        Ok(Checkpointer {
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        // Closing the channel wakes the thread at once.
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn run(conn: &Connection, stopped: &mpsc::Receiver<()>) {
    loop {
        match stopped.recv_timeout(INTERVAL) {
            Err(RecvTimeoutError::Timeout) => {}
            Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
        }
        // Passive: copies what it can without waiting for anyone. A failure
        // (the writer's own checkpoint holding the lock, say) is retried on
        // the next round; the writer's bound keeps the WAL in check anyway.
        let _ = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()));
    }
}
