//! Storage: one SQL code path over sqlx's `Any` driver, with the parts that differ per backend
//! (migrations, connection setup, row locking) behind the [`Dialect`] trait — one implementation
//! for SQLite (the default, embedded) and one for PostgreSQL (a province).
//!
//! Every statement uses `$n` placeholders, which both SQLite and PostgreSQL accept.

pub mod contract;
pub mod postgres;
pub mod records;

use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::{AnyPool, AssertSqlSafe, Executor, Row, SqlSafeStr};
use std::borrow::Cow;
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    #[error("migrating the database: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error("unsupported database URL {0:?}: use sqlite://PATH or postgres://USER@HOST/DB")]
    BadUrl(String),
}

/// What differs between the SQLite and the PostgreSQL backend.
pub trait Dialect: Send + Sync + 'static {
    fn name(&self) -> &'static str;
    /// Append-only migrations, embedded in the binary, applied in order at start.
    fn migrations(&self) -> &'static [(i64, &'static str, &'static str)];
    /// Statements run on every new connection.
    fn connection_setup(&self) -> &'static [&'static str];
    /// Locks the quota row of `scope` for the rest of the transaction (`$1` = scope, `$2` = year).
    /// SQLite serialises writers already, so the hub's writer lock is enough there.
    fn lock_quota_sql(&self) -> Option<&'static str>;
}

pub struct Sqlite;
pub struct Postgres;

static SQLITE_MIGRATIONS: &[(i64, &str, &str)] = &[
    (1, "initial", include_str!("../../migrations/sqlite/0001_initial.sql")),
    (2, "cycle_fixes", include_str!("../../migrations/sqlite/0002_cycle_fixes.sql")),
    (3, "completed_moves", include_str!("../../migrations/sqlite/0003_completed_moves.sql")),
    (4, "envelope_bytes", include_str!("../../migrations/sqlite/0004_envelope_bytes.sql")),
];
static PG_MIGRATIONS: &[(i64, &str, &str)] = &[
    (1, "initial", include_str!("../../migrations/postgres/0001_initial.sql")),
    (2, "cycle_fixes", include_str!("../../migrations/postgres/0002_cycle_fixes.sql")),
    (3, "completed_moves", include_str!("../../migrations/postgres/0003_completed_moves.sql")),
    (4, "envelope_bytes", include_str!("../../migrations/postgres/0004_envelope_bytes.sql")),
];

impl Dialect for Sqlite {
    fn name(&self) -> &'static str {
        "sqlite"
    }
    fn migrations(&self) -> &'static [(i64, &'static str, &'static str)] {
        SQLITE_MIGRATIONS
    }
    fn connection_setup(&self) -> &'static [&'static str] {
        // WAL: readers (feedback, digests) never block the writer; NORMAL is durable in WAL mode
        // up to the last checkpointed commit and much faster than FULL.
        &[
            "PRAGMA journal_mode = WAL",
            "PRAGMA synchronous = NORMAL",
            "PRAGMA foreign_keys = ON",
            "PRAGMA busy_timeout = 10000",
            "PRAGMA wal_autocheckpoint = 16384",
        ]
    }
    fn lock_quota_sql(&self) -> Option<&'static str> {
        None
    }
}

impl Dialect for Postgres {
    fn name(&self) -> &'static str {
        "postgres"
    }
    fn migrations(&self) -> &'static [(i64, &'static str, &'static str)] {
        PG_MIGRATIONS
    }
    fn connection_setup(&self) -> &'static [&'static str] {
        &[]
    }
    fn lock_quota_sql(&self) -> Option<&'static str> {
        Some("SELECT people FROM quota_use WHERE scope = $1 AND year = $2 FOR UPDATE")
    }
}

/// The hub's database: a pool plus its dialect.
#[derive(Clone)]
pub struct Db {
    pub pool: AnyPool,
    pub dialect: Arc<dyn Dialect>,
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Db({})", self.dialect.name())
    }
}

pub fn dialect_for(url: &str) -> Result<Arc<dyn Dialect>, StoreError> {
    if url.starts_with("sqlite:") {
        Ok(Arc::new(Sqlite))
    } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
        Ok(Arc::new(Postgres))
    } else {
        Err(StoreError::BadUrl(url.to_string()))
    }
}

impl Db {
    /// Connects (creating a SQLite file if missing) and applies pending migrations.
    pub async fn open(url: &str) -> Result<Db, StoreError> {
        sqlx::any::install_default_drivers();
        let dialect = dialect_for(url)?;
        let url = if dialect.name() == "sqlite" && !url.contains("mode=") {
            format!("{url}{}mode=rwc", if url.contains('?') { "&" } else { "?" })
        } else {
            url.to_string()
        };
        let setup = dialect.connection_setup();
        let max = if dialect.name() == "sqlite" { 4 } else { 8 };
        let pool = AnyPoolOptions::new()
            .max_connections(max)
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    for s in setup {
                        conn.execute(*s).await?;
                    }
                    Ok(())
                })
            })
            .connect(&url)
            .await?;
        let migrations = dialect
            .migrations()
            .iter()
            .map(|(v, d, sql)| Migration::new(*v, Cow::Borrowed(*d), MigrationType::Simple, sql.into_sql_str(), false))
            .collect();
        Migrator::with_migrations(migrations).run(&pool).await?;
        Ok(Db { pool, dialect })
    }

    pub async fn meta_get(&self, k: &str) -> Result<Option<String>, StoreError> {
        Ok(sqlx::query("SELECT v FROM meta WHERE k = $1").bind(k).fetch_optional(&self.pool).await?.map(|r| r.get(0)))
    }

    pub async fn meta_set(&self, k: &str, v: &str) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO meta (k, v) VALUES ($1, $2) ON CONFLICT (k) DO UPDATE SET v = excluded.v")
            .bind(k)
            .bind(v)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}

/// Builds `($1,$2,..),($n+1,..)…` for a multi-row statement.
pub fn values_placeholders(rows: usize, cols: usize) -> String {
    placeholders(false, rows, cols)
}

/// `(…),(…)` for `rows` rows of `cols` values bound in order. On SQLite the markers are anonymous
/// `?`: sqlx resolves every *named* marker (`$n`) through `sqlite3_bind_parameter_name`, a linear
/// scan, which makes a statement with thousands of `$n` markers quadratic (it dominated ingest).
pub fn placeholders(sqlite: bool, rows: usize, cols: usize) -> String {
    let mut s = String::with_capacity(rows * (cols * 6 + 3));
    let mut n = 0usize;
    for r in 0..rows {
        if r > 0 {
            s.push(',');
        }
        s.push('(');
        for c in 0..cols {
            if c > 0 {
                s.push(',');
            }
            n += 1;
            if sqlite {
                s.push('?');
            } else {
                s.push('$');
                s.push_str(&n.to_string());
            }
        }
        s.push(')');
    }
    s
}

pub fn in_placeholders(n: usize) -> String {
    (1..=n).map(|i| format!("${i}")).collect::<Vec<_>>().join(",")
}

/// `?,?,…` on SQLite, `$1,$2,…` on PostgreSQL (see [`placeholders`]).
pub fn in_list(sqlite: bool, n: usize) -> String {
    if sqlite { vec!["?"; n].join(",") } else { in_placeholders(n) }
}

/// Whether a connection (or transaction) talks to SQLite.
pub fn is_sqlite(conn: &sqlx::AnyConnection) -> bool {
    conn.backend_name().eq_ignore_ascii_case("sqlite")
}

/// How many rows of `cols` values fit in one statement: both backends accept at least 32766 bound
/// values; fewer, larger statements mean fewer round trips to the database thread/server.
pub fn rows_per_statement(cols: usize) -> usize {
    (30_000 / cols.max(1)).max(1)
}

pub fn dynamic(sql: String) -> sqlx::SqlStr {
    // Only placeholders and fixed identifiers are interpolated; values are always bound.
    AssertSqlSafe(sql).into_sql_str()
}

pub fn get_i64(row: &AnyRow, i: usize) -> i64 {
    row.try_get::<i64, _>(i).unwrap_or_default()
}

/// Executes `queries` in order, building each next statement (encoding and binding its rows)
/// while the previous one executes — on SQLite's worker thread or the PostgreSQL server — so
/// the hub's CPU work overlaps the database's instead of waiting for it.
pub async fn execute_pipelined<'q>(
    conn: &mut sqlx::AnyConnection,
    mut queries: impl Iterator<Item = sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments>>,
) -> Result<(), sqlx::Error> {
    let mut next = queries.next();
    while let Some(query) = next.take() {
        while_running(query.execute(&mut *conn), || next = queries.next()).await?;
    }
    Ok(())
}

/// Gives `fut` its first poll, runs `work` on this thread, then awaits `fut`. For a statement
/// the first poll hands it to the database (SQLite's worker thread, or the PostgreSQL server),
/// so the CPU work overlaps the database's instead of waiting for it.
pub async fn while_running<F: std::future::Future>(fut: F, work: impl FnOnce()) -> F::Output {
    let mut fut = std::pin::pin!(fut);
    let early = std::future::poll_fn(|cx| std::task::Poll::Ready(fut.as_mut().poll(cx))).await;
    work();
    match early {
        std::task::Poll::Ready(out) => out,
        std::task::Poll::Pending => fut.await,
    }
}
