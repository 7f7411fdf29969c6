//! Writes, as plain functions over the writer's connection (run on the writer thread, inside
//! the open transaction, in the order they were queued).

use super::db_err;
use super::reads::sql_u64;
use crate::record::{StoredRecord, storage_key};
use crate::store::contract::{AuditRow, CompletedMoveRow, EnvelopeRow, NewConflict, QuarantineRow, StoreResult};
use crate::store::known_keys::Fingerprints;
use crate::stored_fields::write_json;
use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{Connection, Params, params};
use std::sync::Arc;

pub(super) fn exec(conn: &Connection, sql: &str, p: impl Params) -> StoreResult<()> {
    conn.prepare_cached(sql).map_err(db_err)?.execute(p).map_err(db_err)?;
    Ok(())
}

/// Upserts every record at `rev`, encoding its fields here, on the writer thread, so the
/// caller goes on with its own work meanwhile; each key goes into `known`.
pub(super) fn records(
    conn: &Connection,
    rows: &[Arc<StoredRecord>],
    rev: i64,
    known: &mut Fingerprints,
) -> StoreResult<()> {
    let mut stmt = conn
        .prepare_cached(
            "INSERT INTO records (k, kind, year, id, region, hh, fields, deleted, rev) VALUES (?,?,?,?,?,?,?,?,?) \
             ON CONFLICT (k) DO UPDATE SET region = excluded.region, hh = excluded.hh, fields = excluded.fields, \
             deleted = excluded.deleted, rev = excluded.rev",
        )
        .map_err(db_err)?;
    let mut fields = Vec::with_capacity(4096);
    for r in rows {
        let k = storage_key(&r.key);
        known.add([&k]);
        fields.clear();
        write_json(&r.fields, &mut fields);
        stmt.execute(params![
            k,
            r.key.kind.to_u8(),
            r.key.year,
            r.key.id,
            r.region,
            r.hh,
            ToSqlOutput::Borrowed(ValueRef::Text(&fields)),
            r.deleted,
            rev
        ])
        .map_err(db_err)?;
    }
    Ok(())
}

pub(super) fn envelope(conn: &Connection, e: &EnvelopeRow) -> StoreResult<()> {
    let seq = sql_u64(e.seq)?;
    exec(
        conn,
        "INSERT INTO envelopes (origin, seq, hash, received_at, ops, year, bytes) VALUES (?,?,?,?,?,?,?)",
        params![e.origin, seq, e.hash, e.received_at, sql_u64(e.ops)?, e.year, e.bytes],
    )?;
    exec(
        conn,
        "INSERT INTO streams (origin, next_seq, last_hash) VALUES (?,?,?) \
         ON CONFLICT (origin) DO UPDATE SET next_seq = excluded.next_seq, last_hash = excluded.last_hash",
        params![e.origin, seq.saturating_add(1), e.hash],
    )
}

pub(super) fn quarantine(conn: &Connection, rows: &[QuarantineRow]) -> StoreResult<()> {
    let mut stmt = conn
        .prepare_cached("INSERT INTO quarantine (origin, seq, k, reason, message, payload, at) VALUES (?,?,?,?,?,?,?)")
        .map_err(db_err)?;
    for r in rows {
        stmt.execute(params![r.origin, sql_u64(r.seq)?, r.k, r.reason, r.message, r.payload, r.at]).map_err(db_err)?;
    }
    Ok(())
}

pub(super) fn feedback(conn: &Connection, items: &[(String, String)]) -> StoreResult<()> {
    let mut stmt = conn.prepare_cached("INSERT INTO feedback (region, item) VALUES (?, ?)").map_err(db_err)?;
    for (region, item) in items {
        stmt.execute(params![region, item]).map_err(db_err)?;
    }
    Ok(())
}

pub(super) fn conflicts(conn: &Connection, rows: &[NewConflict], at: i64) -> StoreResult<()> {
    let mut stmt = conn
        .prepare_cached(
            "INSERT INTO conflicts (kind, k, field, current_value, current_by, proposed_value, proposed_by, proposal, \
             status, at) VALUES (?,?,?,?,?,?,?,?,'open',?)",
        )
        .map_err(db_err)?;
    for c in rows {
        stmt.execute(params![
            c.kind,
            c.k,
            c.field,
            c.current_value,
            c.current_by,
            c.proposed_value,
            c.proposed_by,
            c.proposal,
            at
        ])
        .map_err(db_err)?;
    }
    Ok(())
}

pub(super) fn completed_moves(conn: &Connection, rows: &[CompletedMoveRow], at: i64) -> StoreResult<()> {
    let mut stmt = conn
        .prepare_cached(
            "INSERT INTO completed_moves (id, year, from_county, to_county, from_household, at) VALUES (?,?,?,?,?,?) \
             ON CONFLICT (id, year, from_county, to_county) \
             DO UPDATE SET from_household = excluded.from_household, at = excluded.at",
        )
        .map_err(db_err)?;
    for m in rows {
        stmt.execute(params![m.id, m.year, m.from_county, m.to_county, m.from_household, at]).map_err(db_err)?;
    }
    Ok(())
}

pub(super) fn audit(conn: &Connection, rows: &[AuditRow]) -> StoreResult<()> {
    let mut stmt = conn
        .prepare_cached(
            "INSERT INTO audit (seq, at, key_id, action, subject, old, new, prev_hash, hash) VALUES (?,?,?,?,?,?,?,?,?)",
        )
        .map_err(db_err)?;
    for a in rows {
        stmt.execute(params![a.seq, a.at, a.key_id, a.action, a.subject, a.old, a.new, a.prev_hash, a.hash])
            .map_err(db_err)?;
    }
    Ok(())
}

/// The quota row of `scope`, created at 0 if missing (the writer's transaction holds SQLite's
/// only write lock, so nothing else can change it until commit).
pub(super) fn quota_row(conn: &Connection, scope: &str, year: jianka_shared::Year) -> StoreResult<u64> {
    exec(
        conn,
        "INSERT INTO quota_use (scope, year, people) VALUES (?, ?, 0) ON CONFLICT (scope, year) DO NOTHING",
        params![scope, year],
    )?;
    Ok(super::reads::quota_people(conn, scope, year)?.unwrap_or(0))
}
