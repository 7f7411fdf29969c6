//! Reads, as plain functions over a connection: the same code answers [`Store`] reads (on a
//! reader connection) and reads inside the write transaction (on the writer thread).
//!
//! [`Store`]: crate::store::contract::Store

use super::db_err;
use crate::record::{StoredRecord, row_from};
use crate::store::contract::{
    AuditRow, CertRow, CompletedMoveRow, ConflictRow, ReopeningRow, SignOffRow, StoreError, StoreResult, StreamState,
    YearRow,
};
use crate::store::known_keys::{Fingerprints, OwnRevs};
use jianka_shared::Year;
use rusqlite::types::ValueRef;
use rusqlite::{Connection, Params, Row};

/// Most keys bound to one statement.
pub(super) const CHUNK: usize = 5_000;

/// The number of `?` markers a keyed read of `n` keys uses: the next power of two up to
/// [`CHUNK`] (the list is padded by repeating a key), so a handful of statement shapes serve
/// every list length and stay in the statement cache.
pub(super) fn bucket(n: usize) -> usize {
    n.next_power_of_two().min(CHUNK)
}

pub(super) fn markers(n: usize) -> String {
    let mut s = String::with_capacity(n * 2);
    for i in 0..n {
        s.push_str(if i == 0 { "?" } else { ",?" });
    }
    s
}

/// Runs `sql_for(markers)` for each chunk of `keys` (deduplicated) and collects the rows.
pub(super) fn by_keys<T>(
    conn: &Connection,
    keys: &[String],
    prefix: &[&dyn rusqlite::ToSql],
    sql_for: impl Fn(&str) -> String,
    map: impl Fn(&Row<'_>) -> StoreResult<T>,
) -> StoreResult<Vec<T>> {
    let mut keys: Vec<&str> = keys.iter().map(String::as_str).collect();
    keys.sort_unstable();
    keys.dedup();
    let mut out = Vec::new();
    for chunk in keys.chunks(CHUNK) {
        let n = bucket(chunk.len());
        let mut stmt = conn.prepare_cached(&sql_for(&markers(n))).map_err(db_err)?;
        let mut params: Vec<&dyn rusqlite::ToSql> = prefix.to_vec();
        params.extend(chunk.iter().map(|k| k as &dyn rusqlite::ToSql));
        let last = chunk.last().copied().unwrap_or_default();
        params.extend(std::iter::repeat_n(&last as &dyn rusqlite::ToSql, n - chunk.len()));
        let mut rows = stmt.query(params.as_slice()).map_err(db_err)?;
        while let Some(r) = rows.next().map_err(db_err)? {
            out.push(map(r)?);
        }
    }
    Ok(out)
}

/// Adds to `known` the keys of the records other transactions stored since it last read (on
/// the first call, every stored key), so that it answers for the whole table.
pub(super) fn catch_up(conn: &Connection, known: &mut Fingerprints, own: OwnRevs) -> StoreResult<()> {
    let max = one(conn, "SELECT COALESCE(MAX(rev), 0) FROM records", [], |r| int(r, 0))?.unwrap_or(0);
    let (from, to) = (known.complete_to(), own.others_to(max));
    if to <= from {
        return Ok(());
    }
    let started = std::time::Instant::now();
    let mut stmt = conn.prepare_cached("SELECT k FROM records WHERE rev > ?1 AND rev <= ?2").map_err(db_err)?;
    let mut rows = stmt.query([from, to]).map_err(db_err)?;
    let mut read = 0u64;
    while let Some(r) = rows.next().map_err(db_err)? {
        known.add([text(r, 0)?]);
        read += 1;
    }
    known.read_to(to);
    if from == 0 && read > 0 {
        tracing::info!(keys = read, ms = started.elapsed().as_millis() as u64, "stored record keys read");
    }
    Ok(())
}

/// All rows of a cached statement, each mapped by `map`.
pub(super) fn all<T>(
    conn: &Connection,
    sql: &str,
    params: impl Params,
    map: impl Fn(&Row<'_>) -> StoreResult<T>,
) -> StoreResult<Vec<T>> {
    let mut stmt = conn.prepare_cached(sql).map_err(db_err)?;
    let mut rows = stmt.query(params).map_err(db_err)?;
    let mut out = Vec::new();
    while let Some(r) = rows.next().map_err(db_err)? {
        out.push(map(r)?);
    }
    Ok(out)
}

/// The first row of a cached statement, if any.
pub(super) fn one<T>(
    conn: &Connection,
    sql: &str,
    params: impl Params,
    map: impl FnOnce(&Row<'_>) -> StoreResult<T>,
) -> StoreResult<Option<T>> {
    let mut stmt = conn.prepare_cached(sql).map_err(db_err)?;
    let mut rows = stmt.query(params).map_err(db_err)?;
    match rows.next().map_err(db_err)? {
        Some(r) => map(r).map(Some),
        None => Ok(None),
    }
}

pub(super) fn text(r: &Row<'_>, i: usize) -> StoreResult<String> {
    r.get(i).map_err(db_err)
}

pub(super) fn opt_text(r: &Row<'_>, i: usize) -> StoreResult<Option<String>> {
    r.get(i).map_err(db_err)
}

pub(super) fn int(r: &Row<'_>, i: usize) -> StoreResult<i64> {
    r.get(i).map_err(db_err)
}

pub(super) fn uint(r: &Row<'_>, i: usize) -> StoreResult<u64> {
    let v = int(r, i)?;
    u64::try_from(v).map_err(|_| StoreError::Corrupt(format!("negative count or sequence number {v}")))
}

pub(super) fn year(r: &Row<'_>, i: usize) -> StoreResult<Year> {
    let v = int(r, i)?;
    Year::try_from(v).map_err(|_| StoreError::Corrupt(format!("year {v} out of range")))
}

/// A flag read fails closed: a value that does not decode as 0 counts as set.
pub(super) fn flag(r: &Row<'_>, i: usize) -> bool {
    !matches!(r.get_ref(i), Ok(ValueRef::Integer(0)))
}

/// Binds a u64 the way it is stored (INTEGER, so at most `i64::MAX`).
pub(super) fn sql_u64(v: u64) -> StoreResult<i64> {
    i64::try_from(v).map_err(|_| StoreError::Db(format!("{v} does not fit an SQLite INTEGER")))
}

/// A record from `k, region, hh, fields, deleted` at column `at`.
pub(super) fn record(r: &Row<'_>, at: usize) -> StoreResult<StoredRecord> {
    let k = text(r, at)?;
    let fields = r.get_ref(at + 3).map_err(db_err)?;
    let fields = fields.as_str().map_err(|e| StoreError::Corrupt(format!("stored fields of {k}: {e}")))?;
    row_from(&k, text(r, at + 1)?, text(r, at + 2)?, fields, flag(r, at + 4)).map_err(StoreError::Corrupt)
}

pub(super) const RECORD_COLS: &str = "k, region, hh, fields, deleted";

pub(super) fn meta(conn: &Connection, k: &str) -> StoreResult<Option<String>> {
    one(conn, "SELECT v FROM meta WHERE k = ?", [k], |r| text(r, 0))
}

pub(super) fn cert(conn: &Connection, key_id: &str) -> StoreResult<Option<CertRow>> {
    one(
        conn,
        "SELECT key_id, subject, cert, revoked, revoked_reason, equivocating FROM certs WHERE key_id = ?",
        [key_id],
        |r| {
            Ok(CertRow {
                key_id: text(r, 0)?,
                subject: text(r, 1)?,
                cert: text(r, 2)?,
                revoked: flag(r, 3),
                revoked_reason: opt_text(r, 4)?,
                equivocating: flag(r, 5),
            })
        },
    )
}

pub(super) fn stream(conn: &Connection, origin: &str) -> StoreResult<Option<StreamState>> {
    one(conn, "SELECT next_seq, last_hash FROM streams WHERE origin = ?", [origin], |r| {
        Ok(StreamState { next_seq: uint(r, 0)?, last_hash: text(r, 1)? })
    })
}

pub(super) fn year_row(conn: &Connection, y: Year) -> StoreResult<Option<YearRow>> {
    one(conn, "SELECT year, state, snapshot FROM years WHERE year = ?", [i64::from(y)], year_of)
}

pub(super) fn year_of(r: &Row<'_>) -> StoreResult<YearRow> {
    Ok(YearRow { year: year(r, 0)?, state: text(r, 1)?, snapshot: opt_text(r, 2)? })
}

pub(super) const CONFLICT_COLS: &str =
    "id, kind, k, field, current_value, current_by, proposed_value, proposed_by, proposal, status, resolution, at";

pub(super) fn conflict_of(r: &Row<'_>) -> StoreResult<ConflictRow> {
    Ok(ConflictRow {
        id: int(r, 0)?,
        kind: text(r, 1)?,
        k: text(r, 2)?,
        field: text(r, 3)?,
        current_value: text(r, 4)?,
        current_by: text(r, 5)?,
        proposed_value: text(r, 6)?,
        proposed_by: text(r, 7)?,
        proposal: text(r, 8)?,
        status: text(r, 9)?,
        resolution: opt_text(r, 10)?,
        at: int(r, 11)?,
    })
}

pub(super) fn reopening_of(r: &Row<'_>) -> StoreResult<ReopeningRow> {
    Ok(ReopeningRow {
        year: year(r, 0)?,
        region: text(r, 1)?,
        reason: text(r, 2)?,
        at: int(r, 3)?,
        until_day: opt_text(r, 4)?,
    })
}

pub(super) fn signoff_of(r: &Row<'_>) -> StoreResult<SignOffRow> {
    Ok(SignOffRow {
        county: text(r, 0)?,
        year: year(r, 1)?,
        period: text(r, 2)?,
        body: text(r, 3)?,
        received_at: int(r, 4)?,
    })
}

pub(super) fn audit_of(r: &Row<'_>) -> StoreResult<AuditRow> {
    Ok(AuditRow {
        seq: int(r, 0)?,
        at: int(r, 1)?,
        key_id: text(r, 2)?,
        action: text(r, 3)?,
        subject: text(r, 4)?,
        old: text(r, 5)?,
        new: text(r, 6)?,
        prev_hash: text(r, 7)?,
        hash: text(r, 8)?,
    })
}

pub(super) fn completed_move_of(r: &Row<'_>) -> StoreResult<CompletedMoveRow> {
    Ok(CompletedMoveRow {
        id: text(r, 0)?,
        year: year(r, 1)?,
        from_county: text(r, 2)?,
        to_county: text(r, 3)?,
        from_household: text(r, 4)?,
    })
}

pub(super) fn quota_people(conn: &Connection, scope: &str, y: Year) -> StoreResult<Option<u64>> {
    one(
        conn,
        "SELECT people FROM quota_use WHERE scope = ? AND year = ?",
        rusqlite::params![scope, i64::from(y)],
        // A negative count (never written by the hub) reads as none used, as it always has.
        |r| Ok(int(r, 0)?.max(0).unsigned_abs()),
    )
}

pub(super) fn last_audit(conn: &Connection) -> StoreResult<Option<(i64, String)>> {
    one(conn, "SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1", [], |r| Ok((int(r, 0)?, text(r, 1)?)))
}
