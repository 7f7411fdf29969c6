//! WAL checkpoints off the writer thread. Copying the log back into the database file was a
//! sixth of the writer's time in a province's consolidation, and SQLite ran it inside the
//! commit that crossed the threshold. Here the writer learns from its WAL hook how many frames
//! the log holds after each commit and, past [`CHECKPOINT_FRAMES`], nudges this thread, which
//! runs a PASSIVE checkpoint on its own connection while the writer goes on (PASSIVE never
//! blocks the writer or a reader). Should it fall behind, the writer checkpoints itself at
//! [`WRITER_CHECKPOINT_FRAMES`], so the log stays bounded either way.

use super::db_err;
use crate::store::contract::{StoreError, StoreResult};
use rusqlite::hooks::Wal;
use rusqlite::{Connection, OpenFlags};
use std::cell::Cell;
use std::os::raw::c_int;
use std::path::Path;
use std::sync::mpsc;

/// Frames in the log at which the checkpointer is nudged (what `wal_autocheckpoint` was: 64 MiB
/// of 4 KiB pages).
pub(super) const CHECKPOINT_FRAMES: c_int = 16_384;

/// Frames at which the writer stops waiting for the checkpointer and checkpoints itself.
pub(super) const WRITER_CHECKPOINT_FRAMES: c_int = 4 * CHECKPOINT_FRAMES;

thread_local! {
    /// Frames in the log after the last commit on this thread's connection (the WAL hook runs
    /// on the committing thread: the writer's).
    static WAL_FRAMES: Cell<c_int> = const { Cell::new(0) };
}

/// The writer connection's WAL hook (it replaces SQLite's own autocheckpoint).
fn note_frames(_wal: &Wal, frames: c_int) -> rusqlite::Result<()> {
    WAL_FRAMES.set(frames);
    Ok(())
}

/// The checkpointer thread's handle, held by the writer thread.
pub(super) struct Checkpointer {
    /// Frames at which the thread is nudged, and at which the writer checkpoints itself.
    nudge_at: c_int,
    self_at: c_int,
    nudge: Option<mpsc::SyncSender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Checkpointer {
    /// Starts the thread on its own connection to `path` and hooks the writer's connection.
    pub(super) fn start(writer: &Connection, path: &Path) -> StoreResult<Checkpointer> {
        Checkpointer::start_at(writer, path, CHECKPOINT_FRAMES, WRITER_CHECKPOINT_FRAMES)
    }

    fn start_at(writer: &Connection, path: &Path, nudge_at: c_int, self_at: c_int) -> StoreResult<Checkpointer> {
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(path, flags)
            .map_err(|e| StoreError::Db(format!("opening {} to checkpoint: {e}", path.display())))?;
        conn.busy_timeout(crate::store::WRITE_WAIT).map_err(db_err)?;
        // One pending nudge is enough: a checkpoint copies whatever the log holds when it runs.
        let (nudge, nudged) = mpsc::sync_channel(1);
        let thread = std::thread::Builder::new()
            .name("jianka-sqlite-checkpoint".into())
            .spawn(move || run(conn, nudged))
            .map_err(|e| StoreError::WriterGone(format!("starting the checkpoint thread: {e}")))?;
        writer.wal_hook(Some(note_frames));
        Ok(Checkpointer { nudge_at, self_at, nudge: Some(nudge), thread: Some(thread) })
    }

    /// Called by the writer after each commit: nudges the thread once the log is long enough,
    /// or checkpoints on `writer` when the thread has fallen far behind.
    pub(super) fn committed(&self, writer: &Connection) {
        let frames = WAL_FRAMES.replace(0);
        if frames >= self.self_at {
            passive(writer);
        } else if frames >= self.nudge_at
            && let Some(nudge) = &self.nudge
        {
            let _ = nudge.try_send(());
        }
    }

    /// Stops the thread (after the checkpoint it may be running) and waits for it.
    pub(super) fn stop(&mut self) {
        drop(self.nudge.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn run(conn: Connection, nudged: mpsc::Receiver<()>) {
    while nudged.recv().is_ok() {
        passive(&conn);
    }
}

fn passive(conn: &Connection) {
    if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
        // Not fatal: the log is checkpointed by the next attempt, or when the last connection closes.
        tracing::warn!(error = %e, "WAL checkpoint");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    /// The thresholds of the test, in 4 KiB frames: 1 MiB nudges the thread, 4 MiB the writer.
    const NUDGE_AT: c_int = 256;
    const SELF_AT: c_int = 1024;

    /// `n` blobs of 100 kB in one commit (about 25 frames each).
    fn insert_blobs(conn: &Connection, n: u32) {
        conn.execute_batch(&format!(
            "INSERT INTO t SELECT zeroblob(100000) FROM \
             (WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < {n}) SELECT x FROM c)"
        ))
        .unwrap();
    }

    #[test]
    fn a_long_log_is_copied_into_the_database_by_the_checkpoint_thread_and_a_short_one_is_left() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.db");
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch("PRAGMA journal_mode = WAL; PRAGMA page_size = 4096; CREATE TABLE t (b BLOB)").unwrap();
        let mut checkpoints = Checkpointer::start_at(&conn, &path, NUDGE_AT, SELF_AT).unwrap();
        let db_bytes = || std::fs::metadata(&path).unwrap().len();
        // A short log stays where it is: the checkpoint waits until it is worth copying.
        insert_blobs(&conn, 2);
        checkpoints.committed(&conn);
        std::thread::sleep(Duration::from_millis(200));
        assert!(db_bytes() < 100_000, "checkpointed early: {} bytes", db_bytes());
        // Past the threshold (2 MB in one commit, about 500 frames) the thread copies it.
        insert_blobs(&conn, 20);
        checkpoints.committed(&conn);
        let start = Instant::now();
        while db_bytes() < 2_000_000 {
            assert!(start.elapsed() < Duration::from_secs(30), "not checkpointed: {} bytes", db_bytes());
            std::thread::sleep(Duration::from_millis(20));
        }
        // Stopping waits for the thread; the writer then checkpoints itself past its own bound
        // (6 MB: about 1,500 frames).
        checkpoints.stop();
        insert_blobs(&conn, 60);
        checkpoints.committed(&conn);
        assert!(db_bytes() > 8_000_000, "the writer did not checkpoint: {} bytes", db_bytes());
    }
}
