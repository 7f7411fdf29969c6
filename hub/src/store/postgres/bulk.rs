//! Multi-row writes: rows known to be new by `COPY`, the rest as one
//! `INSERT … SELECT FROM UNNEST(arrays)` per batch: a fixed statement
//! with one array per column, whatever the row count, so PostgreSQL plans it once and the bind
//! count never nears the protocol's 65535 limit. The next batch is encoded while the server runs
//! the last ([`while_running`]).

use super::{db, to_i64};
use crate::record::{HashMap, HashSet, StoredRecord, fields_json};
use crate::store::contract::{AuditRow, CompletedMoveRow, NewConflict, QuarantineRow, StoreResult};
use crate::store::while_running;
use crate::stored_fields::write_json;
use sqlx::postgres::{PgArguments, Postgres};
use sqlx::query::Query;
use sqlx::{Executor, PgConnection};
use std::io::Write;
use std::sync::Arc;

type PgQuery = Query<'static, Postgres, PgArguments>;

/// Rows per statement: large enough that round trips stay few, small enough that encoding the
/// first batch delays the server little.
const BATCH: usize = 5_000;

/// Runs `queries` in order, building each next one while the previous executes.
async fn run(
    conn: &mut PgConnection,
    mut queries: impl Iterator<Item = StoreResult<PgQuery>> + Send,
) -> StoreResult<()> {
    let mut next = queries.next();
    while let Some(query) = next.take() {
        let query = query?;
        while_running(query.execute(&mut *conn), || next = queries.next()).await.map_err(db)?;
    }
    Ok(())
}

/// Keeps the last of items with the same key, in order: one statement may not upsert a row
/// twice (`ON CONFLICT DO UPDATE command cannot affect row a second time`), and the last write
/// is what a sequence of single upserts would leave.
fn last_per_key<T, K: std::hash::Hash + Eq>(items: Vec<T>, key: impl Fn(&T) -> K) -> Vec<T> {
    let mut last: HashMap<K, usize> = HashMap::default();
    for (i, item) in items.iter().enumerate() {
        last.insert(key(item), i);
    }
    if last.len() == items.len() {
        return items;
    }
    let keep: Vec<bool> = {
        let mut keep = vec![false; items.len()];
        for i in last.values() {
            keep[*i] = true;
        }
        keep
    };
    items.into_iter().zip(keep).filter_map(|(item, k)| k.then_some(item)).collect()
}

/// A write of records at one revision, ready to send. Those in `fresh` (keys the transaction
/// read and found absent, under the writer lock) go in by `COPY`, the server's bulk-load path,
/// their text made when the write is created; the rest are upserted. Should a fresh key exist
/// after all (another process wrote it meanwhile), the `COPY` is undone to its savepoint and
/// those rows are upserted too.
pub(super) struct RecordWrite {
    fresh: Vec<(String, Arc<StoredRecord>)>,
    copy_text: Vec<Vec<u8>>,
    existing: Vec<(String, Arc<StoredRecord>)>,
    rev: i64,
}

impl RecordWrite {
    /// `rows` are `(storage key, record)`.
    pub(super) fn new(rows: Vec<(String, Arc<StoredRecord>)>, fresh: HashSet<String>, rev: i64) -> RecordWrite {
        let rows = last_per_key(rows, |(k, _)| k.clone());
        let (fresh, existing): (Vec<_>, Vec<_>) = rows.into_iter().partition(|(k, _)| fresh.contains(k));
        let copy_text = fresh.chunks(COPY_CHUNK).map(|chunk| copy_rows(chunk, rev)).collect();
        RecordWrite { fresh, copy_text, existing, rev }
    }

    pub(super) async fn run(self, conn: &mut PgConnection) -> StoreResult<()> {
        if !self.fresh.is_empty() {
            conn.execute("SAVEPOINT fresh_records").await.map_err(db)?;
            match copy_in(conn, self.copy_text).await {
                Ok(()) => {
                    conn.execute("RELEASE SAVEPOINT fresh_records").await.map_err(db)?;
                }
                Err(e) if is_unique_violation(&e) => {
                    // ROLLBACK TO keeps the savepoint; released, it does not stay on the stack.
                    conn.execute("ROLLBACK TO SAVEPOINT fresh_records").await.map_err(db)?;
                    conn.execute("RELEASE SAVEPOINT fresh_records").await.map_err(db)?;
                    upsert_records(conn, &self.fresh, self.rev).await?;
                }
                Err(e) => return Err(db(e)),
            }
        }
        upsert_records(conn, &self.existing, self.rev).await
    }
}

/// Rows of one `COPY` message.
const COPY_CHUNK: usize = 2_000;

fn is_unique_violation(e: &sqlx::Error) -> bool {
    e.as_database_error().and_then(|d| d.code()).is_some_and(|c| c == "23505")
}

/// `rows` as `COPY`'s text format: one line each, columns tab-separated. Fields are encoded into
/// one reused buffer, then escaped into the text.
fn copy_rows(rows: &[(String, Arc<StoredRecord>)], rev: i64) -> Vec<u8> {
    let mut text = Vec::with_capacity(rows.len() * 768);
    let mut fields = Vec::with_capacity(4096);
    for (k, r) in rows {
        copy_value(&mut text, k.as_bytes());
        let _ = write!(text, "\t{}\t{}\t", r.key.kind.to_u8(), r.key.year);
        fields.clear();
        write_json(&r.fields, &mut fields);
        for col in [r.key.id.as_bytes(), r.region.as_bytes(), r.hh.as_bytes(), &fields] {
            copy_value(&mut text, col);
            text.push(b'\t');
        }
        let _ = writeln!(text, "{}\t{rev}", i64::from(r.deleted));
    }
    text
}

/// One value in `COPY`'s text format: backslash, newline, carriage return and tab escaped.
/// Bytes, not chars: none of the four occurs inside a multi-byte UTF-8 sequence.
fn copy_value(out: &mut Vec<u8>, s: &[u8]) {
    let mut rest = s;
    while let Some(i) = rest.iter().position(|b| matches!(b, b'\\' | b'\n' | b'\r' | b'\t')) {
        out.extend_from_slice(&rest[..i]);
        out.extend_from_slice(match rest[i] {
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            _ => b"\\t",
        });
        rest = &rest[i + 1..];
    }
    out.extend_from_slice(rest);
}

/// `chunks` of `COPY` text into `records`, one message each.
async fn copy_in(conn: &mut PgConnection, chunks: Vec<Vec<u8>>) -> sqlx::Result<()> {
    let mut copy =
        conn.copy_in_raw("COPY records (k, kind, year, id, region, hh, fields, deleted, rev) FROM STDIN").await?;
    for chunk in chunks {
        if let Err(e) = copy.send(chunk).await {
            // The server's reason (a duplicate key, say) comes with the abort.
            return Err(copy.abort(e.to_string()).await.err().unwrap_or(e));
        }
    }
    copy.finish().await.map(|_| ())
}

async fn upsert_records(conn: &mut PgConnection, rows: &[(String, Arc<StoredRecord>)], rev: i64) -> StoreResult<()> {
    let queries = rows.chunks(BATCH).map(|chunk| {
        let n = chunk.len();
        let (mut k, mut kind, mut year, mut id) =
            (Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n));
        let (mut region, mut hh, mut fields, mut deleted) =
            (Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n));
        for (key, r) in chunk {
            k.push(key.clone());
            kind.push(i64::from(r.key.kind.to_u8()));
            year.push(i64::from(r.key.year));
            id.push(r.key.id.clone());
            region.push(r.region.clone());
            hh.push(r.hh.clone());
            fields.push(fields_json(&r.fields));
            deleted.push(i64::from(r.deleted));
        }
        Ok(sqlx::query(
            "INSERT INTO records (k, kind, year, id, region, hh, fields, deleted, rev) \
             SELECT k, kind, year, id, region, hh, fields, deleted, $9::int8 FROM UNNEST($1::text[], $2::int8[], \
             $3::int8[], $4::text[], $5::text[], $6::text[], $7::text[], $8::int8[]) \
             AS t(k, kind, year, id, region, hh, fields, deleted) \
             ON CONFLICT (k) DO UPDATE SET kind = excluded.kind, year = excluded.year, id = excluded.id, \
             region = excluded.region, hh = excluded.hh, fields = excluded.fields, deleted = excluded.deleted, \
             rev = excluded.rev",
        )
        .bind(k)
        .bind(kind)
        .bind(year)
        .bind(id)
        .bind(region)
        .bind(hh)
        .bind(fields)
        .bind(deleted)
        .bind(rev))
    });
    run(conn, queries).await
}

pub(super) async fn push_feedback(conn: &mut PgConnection, items: Vec<(String, String)>) -> StoreResult<()> {
    let queries = items.chunks(BATCH).map(|chunk| {
        let (region, item): (Vec<String>, Vec<String>) = chunk.iter().cloned().unzip();
        // Ids come from the sequence in the order rows are inserted: ordinality keeps push order.
        Ok(sqlx::query(
            "INSERT INTO feedback (region, item) SELECT region, item FROM UNNEST($1::text[], $2::text[]) \
             WITH ORDINALITY AS t(region, item, n) ORDER BY n",
        )
        .bind(region)
        .bind(item))
    });
    run(conn, queries).await
}

pub(super) async fn quarantine(conn: &mut PgConnection, rows: Vec<QuarantineRow>) -> StoreResult<()> {
    let queries = rows.chunks(BATCH).map(|chunk| {
        let mut seq = Vec::with_capacity(chunk.len());
        for r in chunk {
            seq.push(to_i64(r.seq, "seq")?);
        }
        Ok(sqlx::query(
            "INSERT INTO quarantine (origin, seq, k, reason, message, payload, at) \
             SELECT origin, seq, k, reason, message, payload, at FROM UNNEST($1::text[], $2::int8[], $3::text[], \
             $4::text[], $5::text[], $6::text[], $7::int8[]) WITH ORDINALITY \
             AS t(origin, seq, k, reason, message, payload, at, n) ORDER BY n",
        )
        .bind(chunk.iter().map(|r| r.origin.clone()).collect::<Vec<_>>())
        .bind(seq)
        .bind(chunk.iter().map(|r| r.k.clone()).collect::<Vec<_>>())
        .bind(chunk.iter().map(|r| r.reason.clone()).collect::<Vec<_>>())
        .bind(chunk.iter().map(|r| r.message.clone()).collect::<Vec<_>>())
        .bind(chunk.iter().map(|r| r.payload.clone()).collect::<Vec<_>>())
        .bind(chunk.iter().map(|r| r.at).collect::<Vec<_>>()))
    });
    run(conn, queries).await
}

pub(super) async fn append_audit(conn: &mut PgConnection, rows: Vec<AuditRow>) -> StoreResult<()> {
    let queries = rows.chunks(BATCH).map(|chunk| {
        let text = |f: fn(&AuditRow) -> &String| chunk.iter().map(|r| f(r).clone()).collect::<Vec<_>>();
        Ok(sqlx::query(
            "INSERT INTO audit (seq, at, key_id, action, subject, old, new, prev_hash, hash) \
             SELECT * FROM UNNEST($1::int8[], $2::int8[], $3::text[], $4::text[], $5::text[], $6::text[], \
             $7::text[], $8::text[], $9::text[])",
        )
        .bind(chunk.iter().map(|r| r.seq).collect::<Vec<_>>())
        .bind(chunk.iter().map(|r| r.at).collect::<Vec<_>>())
        .bind(text(|r| &r.key_id))
        .bind(text(|r| &r.action))
        .bind(text(|r| &r.subject))
        .bind(text(|r| &r.old))
        .bind(text(|r| &r.new))
        .bind(text(|r| &r.prev_hash))
        .bind(text(|r| &r.hash)))
    });
    run(conn, queries).await
}

pub(super) async fn add_conflicts(conn: &mut PgConnection, rows: Vec<NewConflict>, at: i64) -> StoreResult<()> {
    let queries = rows.chunks(BATCH).map(|chunk| {
        let text = |f: fn(&NewConflict) -> &str| chunk.iter().map(|r| f(r).to_string()).collect::<Vec<_>>();
        Ok(sqlx::query(
            "INSERT INTO conflicts (kind, k, field, current_value, current_by, proposed_value, proposed_by, \
             proposal, status, at) \
             SELECT kind, k, field, current_value, current_by, proposed_value, proposed_by, proposal, 'open', $9::int8 \
             FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], \
             $8::text[]) WITH ORDINALITY \
             AS t(kind, k, field, current_value, current_by, proposed_value, proposed_by, proposal, n) ORDER BY n",
        )
        .bind(text(|r| r.kind))
        .bind(text(|r| &r.k))
        .bind(text(|r| &r.field))
        .bind(text(|r| &r.current_value))
        .bind(text(|r| &r.current_by))
        .bind(text(|r| &r.proposed_value))
        .bind(text(|r| &r.proposed_by))
        .bind(text(|r| &r.proposal))
        .bind(at))
    });
    run(conn, queries).await
}

pub(super) async fn add_completed_moves(
    conn: &mut PgConnection,
    rows: Vec<CompletedMoveRow>,
    at: i64,
) -> StoreResult<()> {
    let rows = last_per_key(rows, |m| (m.id.clone(), m.year, m.from_county.clone(), m.to_county.clone()));
    let queries = rows.chunks(BATCH).map(|chunk| {
        let text = |f: fn(&CompletedMoveRow) -> &String| chunk.iter().map(|r| f(r).clone()).collect::<Vec<_>>();
        Ok(sqlx::query(
            "INSERT INTO completed_moves (id, year, from_county, to_county, from_household, at) \
             SELECT id, year, from_county, to_county, from_household, $6::int8 \
             FROM UNNEST($1::text[], $2::int8[], $3::text[], $4::text[], $5::text[]) \
             AS t(id, year, from_county, to_county, from_household) \
             ON CONFLICT (id, year, from_county, to_county) \
             DO UPDATE SET from_household = excluded.from_household, at = excluded.at",
        )
        .bind(text(|r| &r.id))
        .bind(chunk.iter().map(|r| i64::from(r.year)).collect::<Vec<_>>())
        .bind(text(|r| &r.from_county))
        .bind(text(|r| &r.to_county))
        .bind(text(|r| &r.from_household))
        .bind(at))
    });
    run(conn, queries).await
}
