//! The PostgreSQL backend on sqlx's native driver: typed binds, `$n` placeholders, bulk writes
//! as `COPY` (rows known to be new) or `UNNEST` upserts, the quota row locked `FOR UPDATE`.
//!
//! - [`PgStore`] (here): the pool, opening and migrations.
//! - `store.rs`: [`Store`](crate::store::contract::Store), each read one query on a pooled
//!   connection.
//! - `tx.rs`: [`WriteTx`](crate::store::contract::WriteTx) over one `Transaction`.
//! - `reads.rs`: the queries both share, generic over the executor.
//! - `bulk.rs`: the multi-row writes (`COPY`, `UNNEST`).
//!
//! Text is ordered and compared `COLLATE "C"` (byte order), as SQLite does, so key order and
//! region ranges do not depend on the database's locale.

mod bulk;
mod reads;
mod store;
mod tx;

use crate::store::contract::{StoreError, StoreResult};
use crate::store::known_keys::KnownKeys;
use jianka_shared::Year;
use sqlx::SqlSafeStr;
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::postgres::{PgPool, PgPoolOptions};
use std::borrow::Cow;

pub use tx::PgWriteTx;

/// Connections in the pool: the one write transaction holds one, reads take one per query.
const MAX_CONNECTIONS: u32 = 8;

/// The released migrations, with the versions and descriptions existing databases recorded in
/// `_sqlx_migrations` (the same list the `Any` store applies).
static MIGRATIONS: &[(i64, &str, &str)] = &[
    (1, "initial", include_str!("../../../migrations/postgres/0001_initial.sql")),
    (2, "cycle_fixes", include_str!("../../../migrations/postgres/0002_cycle_fixes.sql")),
    (3, "completed_moves", include_str!("../../../migrations/postgres/0003_completed_moves.sql")),
    (4, "envelope_bytes", include_str!("../../../migrations/postgres/0004_envelope_bytes.sql")),
    (5, "allocations", include_str!("../../../migrations/postgres/0005_allocations.sql")),
    (6, "byte_order_keys", include_str!("../../../migrations/postgres/0006_byte_order_keys.sql")),
];

/// The advisory lock every write transaction holds (a constant of its own: "jianka-w").
const WRITER_LOCK: i64 = 0x6a69_616e_6b61_2d77;

/// The hub's PostgreSQL database.
#[derive(Clone)]
pub struct PgStore {
    pool: PgPool,
    /// Every stored record key's fingerprint (the writer's lookups skip keys not stored).
    known: KnownKeys,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PgStore")
    }
}

impl PgStore {
    /// Connects to `url` (`postgres://…` or `postgresql://…`) and applies pending migrations.
    pub async fn open(url: &str) -> StoreResult<PgStore> {
        if !(url.starts_with("postgres:") || url.starts_with("postgresql:")) {
            return Err(StoreError::BadUrl(url.to_string()));
        }
        let pool = PgPoolOptions::new().max_connections(MAX_CONNECTIONS).connect(url).await.map_err(db)?;
        let migrations = MIGRATIONS
            .iter()
            .map(|(v, d, sql)| Migration::new(*v, Cow::Borrowed(*d), MigrationType::Simple, sql.into_sql_str(), false))
            .collect();
        Migrator::with_migrations(migrations).run(&pool).await.map_err(|e| StoreError::Migrate(e.to_string()))?;
        Ok(PgStore { pool, known: KnownKeys::default() })
    }

    /// The pool (for tools that need plain SQL beside the store, e.g. benchmarks).
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
}

/// A database error as the contract reports it.
pub(crate) fn db(e: sqlx::Error) -> StoreError {
    // 55P03 lock_not_available: the writer lock was not had within `lock_timeout`.
    match e.as_database_error().and_then(|d| d.code()).as_deref() {
        Some("55P03") => StoreError::Busy(e.to_string()),
        _ => StoreError::Db(e.to_string()),
    }
}

/// A `u64` of the contract as a BIGINT; beyond `i64::MAX` it cannot be stored.
pub(crate) fn to_i64(v: u64, what: &str) -> StoreResult<i64> {
    i64::try_from(v).map_err(|_| StoreError::Db(format!("{what} {v} is beyond the database's BIGINT range")))
}

/// A stored BIGINT that must be a non-negative `u64`.
pub(crate) fn to_u64(v: i64, what: &str) -> StoreResult<u64> {
    u64::try_from(v).map_err(|_| StoreError::Corrupt(format!("stored {what} {v} is negative")))
}

/// A stored year.
pub(crate) fn to_year(v: i64) -> StoreResult<Year> {
    Year::try_from(v).map_err(|_| StoreError::Corrupt(format!("stored year {v} is out of range")))
}

/// The values PostgreSQL text can hold: one with a NUL cannot have been stored, so it is not
/// looked up (PostgreSQL would refuse the whole query for it). The hub refuses such ids anyway.
pub(super) fn storable(values: &[String]) -> Vec<&str> {
    values.iter().map(String::as_str).filter(|v| !v.contains('\0')).collect()
}
