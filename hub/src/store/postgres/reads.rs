//! The queries [`Store`](crate::store::contract::Store) and the write transaction share, each one
//! statement, generic over the executor: `&PgPool` (a pooled connection for this query only) or
//! the transaction's connection.

use super::{db, to_i64, to_u64, to_year};
use crate::record::{StoredRecord, row_from};
use crate::store::contract::{CertRow, ConflictRow, StoreError, StoreResult, StreamState, YearRow};
use crate::store::known_keys::{KnownKeys, OwnRevs};
use jianka_shared::Year;
use sqlx::Row;
use sqlx::postgres::{PgExecutor, PgRow};

/// A 0/1 flag column, read fail closed: a value that does not decode counts as set.
pub(super) fn flag(r: &PgRow, i: usize) -> bool {
    r.try_get::<i64, _>(i).map_or(true, |v| v != 0)
}

/// A row of `k, region, hh, fields, deleted` as a record.
pub(super) fn record(r: &PgRow) -> StoreResult<StoredRecord> {
    let k: String = r.try_get(0).map_err(db)?;
    let fields: String = r.try_get(3).map_err(db)?;
    row_from(&k, r.try_get(1).map_err(db)?, r.try_get(2).map_err(db)?, &fields, flag(r, 4)).map_err(StoreError::Corrupt)
}

pub(super) fn records(rows: &[PgRow]) -> StoreResult<Vec<StoredRecord>> {
    rows.iter().map(record).collect()
}

/// Adds to `known` the keys of the records other transactions stored since it last read (on
/// its first use, every stored key), so that it answers for the whole table. `own` keeps this
/// transaction's own revisions out (its writes add their keys themselves).
pub(super) async fn catch_up(c: &mut sqlx::PgConnection, known: &KnownKeys, own: OwnRevs) -> StoreResult<()> {
    use futures_util::TryStreamExt;
    let max: i64 =
        sqlx::query_scalar("SELECT COALESCE(MAX(rev), 0) FROM records").fetch_one(&mut *c).await.map_err(db)?;
    let from = known.lock().complete_to();
    let to = own.others_to(max);
    if to <= from {
        return Ok(());
    }
    let started = std::time::Instant::now();
    let mut read = 0u64;
    let mut rows = sqlx::query_scalar::<_, String>("SELECT k FROM records WHERE rev > $1 AND rev <= $2")
        .bind(from)
        .bind(to)
        .fetch(c);
    while let Some(k) = rows.try_next().await.map_err(db)? {
        known.lock().add([k]);
        read += 1;
    }
    known.lock().read_to(to);
    if from == 0 && read > 0 {
        tracing::info!(keys = read, ms = started.elapsed().as_millis() as u64, "stored record keys read");
    }
    Ok(())
}

pub(super) async fn meta<'e>(e: impl PgExecutor<'e>, k: &str) -> StoreResult<Option<String>> {
    sqlx::query_scalar("SELECT v FROM meta WHERE k = $1").bind(k).fetch_optional(e).await.map_err(db)
}

pub(super) async fn cert<'e>(e: impl PgExecutor<'e>, key_id: &str) -> StoreResult<Option<CertRow>> {
    let row =
        sqlx::query("SELECT key_id, subject, cert, revoked, revoked_reason, equivocating FROM certs WHERE key_id = $1")
            .bind(key_id)
            .fetch_optional(e)
            .await
            .map_err(db)?;
    let Some(r) = row else { return Ok(None) };
    Ok(Some(CertRow {
        key_id: r.try_get(0).map_err(db)?,
        subject: r.try_get(1).map_err(db)?,
        cert: r.try_get(2).map_err(db)?,
        revoked: flag(&r, 3),
        revoked_reason: r.try_get(4).map_err(db)?,
        equivocating: flag(&r, 5),
    }))
}

pub(super) async fn stream<'e>(e: impl PgExecutor<'e>, origin: &str) -> StoreResult<Option<StreamState>> {
    let row: Option<(i64, String)> = sqlx::query_as("SELECT next_seq, last_hash FROM streams WHERE origin = $1")
        .bind(origin)
        .fetch_optional(e)
        .await
        .map_err(db)?;
    row.map(|(next, last_hash)| Ok(StreamState { next_seq: to_u64(next, "next seq")?, last_hash })).transpose()
}

pub(super) async fn year<'e>(e: impl PgExecutor<'e>, year: Year) -> StoreResult<Option<YearRow>> {
    let row: Option<(i64, String, Option<String>)> =
        sqlx::query_as("SELECT year, state, snapshot FROM years WHERE year = $1")
            .bind(i64::from(year))
            .fetch_optional(e)
            .await
            .map_err(db)?;
    row.map(year_row).transpose()
}

pub(super) fn year_row((year, state, snapshot): (i64, String, Option<String>)) -> StoreResult<YearRow> {
    Ok(YearRow { year: to_year(year)?, state, snapshot })
}

/// The columns [`conflict_row`] reads, in its order.
macro_rules! conflict_cols {
    () => {
        "id, kind, k, field, current_value, current_by, proposed_value, proposed_by, proposal, status, resolution, at"
    };
}
pub(super) use conflict_cols;

pub(super) fn conflict_row(r: &PgRow) -> StoreResult<ConflictRow> {
    Ok(ConflictRow {
        id: r.try_get(0).map_err(db)?,
        kind: r.try_get(1).map_err(db)?,
        k: r.try_get(2).map_err(db)?,
        field: r.try_get(3).map_err(db)?,
        current_value: r.try_get(4).map_err(db)?,
        current_by: r.try_get(5).map_err(db)?,
        proposed_value: r.try_get(6).map_err(db)?,
        proposed_by: r.try_get(7).map_err(db)?,
        proposal: r.try_get(8).map_err(db)?,
        status: r.try_get(9).map_err(db)?,
        resolution: r.try_get(10).map_err(db)?,
        at: r.try_get(11).map_err(db)?,
    })
}

pub(super) async fn conflicts_where<'e>(
    e: impl PgExecutor<'e>,
    all: bool,
    kind: Option<&str>,
) -> StoreResult<Vec<ConflictRow>> {
    let q = match (all, kind) {
        (true, _) => sqlx::query(concat!("SELECT ", conflict_cols!(), " FROM conflicts ORDER BY id")),
        (false, None) => {
            sqlx::query(concat!("SELECT ", conflict_cols!(), " FROM conflicts WHERE status = 'open' ORDER BY id"))
        }
        (false, Some(kind)) => sqlx::query(concat!(
            "SELECT ",
            conflict_cols!(),
            " FROM conflicts WHERE status = 'open' AND kind = $1 ORDER BY id"
        ))
        .bind(kind.to_string()),
    };
    q.fetch_all(e).await.map_err(db)?.iter().map(conflict_row).collect()
}

/// Hash of the envelope `origin` sent as `seq`; a seq beyond BIGINT was never stored.
pub(super) async fn envelope_hash<'e>(e: impl PgExecutor<'e>, origin: &str, seq: u64) -> StoreResult<Option<String>> {
    let Ok(seq) = to_i64(seq, "seq") else { return Ok(None) };
    sqlx::query_scalar("SELECT hash FROM envelopes WHERE origin = $1 AND seq = $2")
        .bind(origin)
        .bind(seq)
        .fetch_optional(e)
        .await
        .map_err(db)
}
