//! The `records` table: reading stored records by key, and writing them (multi-row upserts,
//! pipelined so the next statement is built while the database runs the last).

use crate::error::HubError;
use crate::record::HashMap;
use crate::record::{StoredRecord, fields_json, row_from, storage_key};
use crate::store::{dynamic, execute_pipelined, get_i64, in_list, is_sqlite, placeholders};
use sqlx::Row;
use sqlx::{Any, Transaction};

/// Reads the stored records (deleted ones too) under `keys` into `into`.
pub(crate) async fn load_rows(
    tx: &mut Transaction<'static, Any>,
    keys: &[String],
    into: &mut HashMap<String, StoredRecord>,
) -> Result<(), HubError> {
    let sqlite = is_sqlite(tx);
    for chunk in keys.chunks(5_000) {
        let sql =
            format!("SELECT k, region, hh, fields, deleted FROM records WHERE k IN ({})", in_list(sqlite, chunk.len()));
        let mut q = sqlx::query(dynamic(sql));
        for k in chunk {
            q = q.bind(k.clone());
        }
        for r in q.fetch_all(&mut **tx).await? {
            let k: String = r.try_get(0)?;
            let row = row_from(&k, r.try_get(1)?, r.try_get(2)?, &r.try_get::<String, _>(3)?, get_i64(&r, 4) != 0)?;
            into.insert(k, row);
        }
    }
    Ok(())
}

pub async fn write_rows(tx: &mut Transaction<'static, Any>, rows: &[&StoredRecord]) -> Result<(), HubError> {
    if rows.is_empty() {
        return Ok(());
    }
    let rev = next_rev(tx).await?;
    let sqlite = is_sqlite(tx);
    execute_pipelined(tx, rows.chunks(PIPELINE_ROWS).map(|chunk| records_insert(sqlite, chunk, rev))).await?;
    Ok(())
}

/// The revision the next written rows get (forwarding reads rows by revision).
pub(crate) async fn next_rev(tx: &mut Transaction<'static, Any>) -> Result<i64, HubError> {
    let r = sqlx::query("SELECT COALESCE(MAX(rev), 0) FROM records").fetch_one(&mut **tx).await?;
    Ok(get_i64(&r, 0) + 1)
}

/// One multi-row upsert of `rows` into `records` at revision `rev`.
pub(crate) fn records_insert<'q>(
    sqlite: bool,
    rows: &[&StoredRecord],
    rev: i64,
) -> sqlx::query::Query<'q, Any, sqlx::any::AnyArguments> {
    let sql = format!(
        "INSERT INTO records (k, kind, year, id, region, hh, fields, deleted, rev) VALUES {} \
         ON CONFLICT (k) DO UPDATE SET region = excluded.region, hh = excluded.hh, fields = excluded.fields, \
         deleted = excluded.deleted, rev = excluded.rev",
        placeholders(sqlite, rows.len(), 9)
    );
    let mut q = sqlx::query(dynamic(sql));
    for r in rows {
        q = q
            .bind(storage_key(&r.key))
            .bind(r.key.kind.to_u8() as i64)
            .bind(r.key.year as i64)
            .bind(r.key.id.clone())
            .bind(r.region.clone())
            .bind(r.hh.clone())
            .bind(fields_json(&r.fields))
            .bind(r.deleted as i64)
            .bind(rev);
    }
    q
}

/// Rows per statement when statements are pipelined (see [`execute_pipelined`]): small enough that
/// building the first one costs little, large enough that round trips stay few.
pub(crate) const PIPELINE_ROWS: usize = 500;
