//! Migrations: `migrations/sqlite/000N_*.sql`, applied in order, each in its own transaction.
//!
//! Hub databases were migrated by sqlx before, so the bookkeeping is sqlx's: the
//! `_sqlx_migrations` table, a version counts as applied when listed there with `success`, and a
//! newly applied version is recorded the same way (checksum = SHA-384 of the SQL text), so either
//! tool can open the file.

use super::db_err;
use crate::store::contract::{StoreError, StoreResult};
use rusqlite::{Connection, params};
use sha2::{Digest, Sha384};

/// `(version, description, SQL)`: append-only, never edit a released one.
static MIGRATIONS: &[(i64, &str, &str)] = &[
    (1, "initial", include_str!("../../../migrations/sqlite/0001_initial.sql")),
    (2, "cycle_fixes", include_str!("../../../migrations/sqlite/0002_cycle_fixes.sql")),
    (3, "completed_moves", include_str!("../../../migrations/sqlite/0003_completed_moves.sql")),
    (4, "envelope_bytes", include_str!("../../../migrations/sqlite/0004_envelope_bytes.sql")),
    (5, "allocations", include_str!("../../../migrations/sqlite/0005_allocations.sql")),
];

/// The table exactly as sqlx creates it.
const TABLE: &str = "CREATE TABLE IF NOT EXISTS _sqlx_migrations (
    version BIGINT PRIMARY KEY,
    description TEXT NOT NULL,
    installed_on TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
    success BOOLEAN NOT NULL,
    checksum BLOB NOT NULL,
    execution_time BIGINT NOT NULL
);";

fn failed(version: i64, what: impl std::fmt::Display) -> StoreError {
    StoreError::Migrate(format!("migration {version}: {what}"))
}

/// What sqlx records as a migration's checksum.
fn checksum_of(sql: &str) -> Vec<u8> {
    Sha384::digest(sql.as_bytes()).to_vec()
}

pub(super) fn run(conn: &mut Connection) -> StoreResult<()> {
    conn.execute_batch(TABLE).map_err(db_err)?;
    let applied: Vec<(i64, bool, Vec<u8>)> = {
        let mut stmt =
            conn.prepare("SELECT version, success, checksum FROM _sqlx_migrations ORDER BY version").map_err(db_err)?;
        let rows = stmt
            .query_map([], |r| {
                // `success` fails closed the other way: only a clear 1 counts as applied.
                let ok = matches!(r.get_ref(1)?, rusqlite::types::ValueRef::Integer(1));
                Ok((r.get(0)?, ok, r.get(2)?))
            })
            .map_err(db_err)?;
        rows.collect::<Result<_, _>>().map_err(db_err)?
    };
    for (version, ok, checksum) in &applied {
        if !ok {
            return Err(failed(*version, "a previous attempt failed half-way (the database needs repair)"));
        }
        match MIGRATIONS.iter().find(|m| m.0 == *version) {
            None => {
                return Err(failed(*version, "applied to this database but unknown to this hub (a newer version?)"));
            }
            Some((_, _, sql)) if checksum_of(sql) != *checksum => {
                return Err(failed(*version, "applied with different SQL than this hub's"));
            }
            Some(_) => {}
        }
    }
    for (version, description, sql) in MIGRATIONS {
        if applied.iter().any(|a| a.0 == *version) {
            continue;
        }
        let started = std::time::Instant::now();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate).map_err(db_err)?;
        tx.execute_batch(sql).map_err(|e| failed(*version, e))?;
        tx.execute(
            "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
             VALUES (?, ?, TRUE, ?, -1)",
            params![version, description, checksum_of(sql)],
        )
        .map_err(db_err)?;
        tx.commit().map_err(db_err)?;
        let nanos = i64::try_from(started.elapsed().as_nanos()).unwrap_or(i64::MAX);
        conn.execute("UPDATE _sqlx_migrations SET execution_time = ? WHERE version = ?", params![nanos, version])
            .map_err(db_err)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_apply_once_and_are_recorded_as_sqlx_does() {
        let mut conn = Connection::open_in_memory().unwrap();
        run(&mut conn).unwrap();
        run(&mut conn).unwrap();
        let n: i64 =
            conn.query_row("SELECT COUNT(*) FROM _sqlx_migrations WHERE success = 1", [], |r| r.get(0)).unwrap();
        assert_eq!(n, MIGRATIONS.len() as i64);
        let sum: Vec<u8> =
            conn.query_row("SELECT checksum FROM _sqlx_migrations WHERE version = 1", [], |r| r.get(0)).unwrap();
        assert_eq!(sum, Sha384::digest(MIGRATIONS[0].2.as_bytes()).to_vec());
        conn.execute("UPDATE _sqlx_migrations SET checksum = x'00' WHERE version = 2", []).unwrap();
        assert!(matches!(run(&mut conn), Err(StoreError::Migrate(_))));
    }
}
