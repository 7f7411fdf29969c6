//! The SQLite backend on rusqlite: one writer thread owning the only read-write connection (every
//! write transaction runs there, fed by a channel), and a few read-only connections for
//! [`Store`] reads. WAL mode: readers never block the writer and see committed data only.

mod checkpointer;
mod migrate;
mod reads;
mod store;
mod tx;
mod writer;
mod writes;

use crate::store::contract::{StoreError, StoreResult};
use rusqlite::{Connection, OpenFlags};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

pub use store::SqliteStore;

/// Read-only connections kept open between reads (more are opened while all are busy).
const IDLE_READERS: usize = 4;

/// Prepared statements kept per connection: every statement shape the backend runs, including
/// one per chunk-size bucket of the keyed reads (see [`reads::bucket`]).
const STATEMENT_CACHE: usize = 256;

fn db_err(e: rusqlite::Error) -> StoreError {
    match e.sqlite_error_code() {
        Some(rusqlite::ErrorCode::DatabaseBusy) => StoreError::Busy(e.to_string()),
        _ => StoreError::Db(e.to_string()),
    }
}

/// A copy of an error (the writer latches the first failure of a transaction and reports it to
/// every later call of it).
fn copy_err(e: &StoreError) -> StoreError {
    match e {
        StoreError::Db(m) => StoreError::Db(m.clone()),
        StoreError::Busy(m) => StoreError::Busy(m.clone()),
        StoreError::Migrate(m) => StoreError::Migrate(m.clone()),
        StoreError::Corrupt(m) => StoreError::Corrupt(m.clone()),
        StoreError::BadUrl(m) => StoreError::BadUrl(m.clone()),
        StoreError::WriterGone(m) => StoreError::WriterGone(m.clone()),
    }
}

/// Where a `sqlite:` URL points and whether a missing file may be created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Target {
    pub path: PathBuf,
    pub create: bool,
}

/// Accepts `sqlite://PATH` and `sqlite:PATH`, optionally followed by `?mode=rwc` (the default:
/// create if missing) or `?mode=rw` (the file must exist). An in-memory database is refused: the
/// readers could not see it.
pub(crate) fn parse_url(url: &str) -> StoreResult<Target> {
    let bad = || StoreError::BadUrl(url.to_string());
    let rest = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:")).ok_or_else(bad)?;
    let (path, query) = match rest.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (rest, None),
    };
    if path.is_empty() || path == ":memory:" {
        return Err(bad());
    }
    let mut create = true;
    for param in query.into_iter().flat_map(|q| q.split('&')).filter(|p| !p.is_empty()) {
        match param.split_once('=') {
            Some(("mode", "rwc")) => create = true,
            Some(("mode", "rw")) => create = false,
            _ => return Err(bad()),
        }
    }
    Ok(Target { path: PathBuf::from(path), create })
}

/// The writer connection's settings, the hub's since its first release (WAL: readers never block
/// the writer; NORMAL is durable in WAL mode up to the last checkpointed commit and much faster
/// than FULL), and a page cache that holds a 20,000-op change set's pages (SQLite's 2 MB default
/// spilled them into the log mid-transaction and rewrote them at commit). Benchmarks give their
/// baselines the same. The hub's writer then hands its checkpoints to [`checkpointer`], which
/// replaces the autocheckpoint set here.
pub const WRITER_SETUP: &str = "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON; \
     PRAGMA wal_autocheckpoint = 16384; PRAGMA cache_size = -65536;";

fn setup(conn: &Connection, writer: bool) -> StoreResult<()> {
    conn.busy_timeout(crate::store::WRITE_WAIT).map_err(db_err)?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    if writer {
        conn.execute_batch(WRITER_SETUP).map_err(db_err)
    } else {
        // The journal mode is the file's (set by the writer); a read-only connection keeps it.
        conn.execute_batch("PRAGMA foreign_keys = ON; PRAGMA query_only = ON;").map_err(db_err)
    }
}

fn open_writer(target: &Target) -> StoreResult<Connection> {
    let mut flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    if target.create {
        flags |= OpenFlags::SQLITE_OPEN_CREATE;
    }
    let conn = Connection::open_with_flags(&target.path, flags)
        .map_err(|e| StoreError::Db(format!("opening {}: {e}", target.path.display())))?;
    setup(&conn, true)?;
    Ok(conn)
}

fn open_reader(path: &Path) -> StoreResult<Connection> {
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags)
        .map_err(|e| StoreError::Db(format!("opening {} to read: {e}", path.display())))?;
    setup(&conn, false)?;
    Ok(conn)
}

/// Read-only connections, used one per blocking task.
struct Readers {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
    closed: std::sync::atomic::AtomicBool,
}

impl Readers {
    fn take(&self) -> StoreResult<Connection> {
        if self.closed.load(std::sync::atomic::Ordering::Acquire) {
            return Err(StoreError::WriterGone("the store was closed".into()));
        }
        let idle = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
        match idle {
            Some(c) => Ok(c),
            None => open_reader(&self.path),
        }
    }

    fn give(&self, conn: Connection) {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < IDLE_READERS && !self.closed.load(std::sync::atomic::Ordering::Acquire) {
            idle.push(conn);
        }
    }

    fn close(&self) {
        self.closed.store(true, std::sync::atomic::Ordering::Release);
        self.idle.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }

    /// Runs `f` on a reader connection on tokio's blocking pool.
    async fn run<T: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
    ) -> StoreResult<T> {
        let readers = Arc::clone(self);
        tokio::task::spawn_blocking(move || {
            let conn = readers.take()?;
            let out = f(&conn);
            readers.give(conn);
            out
        })
        .await
        .map_err(|e| StoreError::Db(format!("a read task failed: {e}")))?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let t = parse_url("sqlite:///var/hub.db?mode=rwc").unwrap();
        assert_eq!(t, Target { path: "/var/hub.db".into(), create: true });
        let t = parse_url("sqlite:hub.db?mode=rw").unwrap();
        assert_eq!(t, Target { path: "hub.db".into(), create: false });
        assert!(parse_url("sqlite://hub.db").unwrap().create);
        for bad in ["postgres://x/y", "sqlite://", "sqlite::memory:", "sqlite://a.db?mode=ro", "sqlite://a?x=1"] {
            assert!(matches!(parse_url(bad), Err(StoreError::BadUrl(_))), "{bad}");
        }
    }
}
