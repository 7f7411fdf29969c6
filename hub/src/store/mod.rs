//! Storage behind one boundary ([`contract`]): the [`Store`] and [`WriteTx`] traits, with one
//! implementation per backend, each with its own migrations — [`sqlite`] on rusqlite (the
//! default, embedded; the same library the node uses) and [`postgres`] on sqlx's native driver
//! (a province). The hub's domain code holds an `Arc<dyn Store>` and contains no SQL.

pub mod contract;
mod known_keys;
pub mod postgres;
pub mod sqlite;

pub use contract::*;

use std::sync::Arc;
use std::time::Duration;

/// How long a write transaction waits for another process's to end before it gives up with
/// [`StoreError::Busy`] (SQLite's busy timeout; PostgreSQL's `lock_timeout` on the writer lock).
pub const WRITE_WAIT: Duration = Duration::from_secs(10);

/// Opens the database at `url` (`sqlite://PATH`, created if missing, or `postgres://…`) and
/// applies pending migrations.
pub async fn open(url: &str) -> StoreResult<Arc<dyn Store>> {
    if url.starts_with("sqlite:") {
        Ok(Arc::new(sqlite::SqliteStore::open(url).await?))
    } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
        Ok(Arc::new(postgres::PgStore::open(url).await?))
    } else {
        Err(StoreError::BadUrl(url.to_string()))
    }
}

/// Gives `fut` its first poll, runs `work` on this thread, then awaits `fut`. For a database
/// call the first poll hands it to the database (a writer thread or the server), so the CPU
/// work overlaps the database's instead of waiting for it.
pub async fn while_running<F: std::future::Future>(fut: F, work: impl FnOnce()) -> F::Output {
    let mut fut = std::pin::pin!(fut);
    let early = std::future::poll_fn(|cx| std::task::Poll::Ready(fut.as_mut().poll(cx))).await;
    work();
    match early {
        std::task::Poll::Ready(out) => out,
        std::task::Poll::Pending => fut.await,
    }
}
