//! Multi-row writes as one `INSERT … SELECT FROM UNNEST(arrays)` per batch: a fixed statement
//! with one array per column, whatever the row count, so PostgreSQL plans it once and the bind
//! count never nears the protocol's 65535 limit. The next batch is encoded while the server runs
//! the last ([`while_running`]).

use super::{db, to_i64};
use crate::record::{HashMap, StoredRecord, fields_json, storage_key};
use crate::store::contract::{AuditRow, CompletedMoveRow, NewConflict, QuarantineRow, StoreResult};
use crate::store::while_running;
use sqlx::PgConnection;
use sqlx::postgres::{PgArguments, Postgres};
use sqlx::query::Query;

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

pub(super) async fn write_records(conn: &mut PgConnection, records: Vec<StoredRecord>, rev: i64) -> StoreResult<()> {
    let rows: Vec<(String, StoredRecord)> = records.into_iter().map(|r| (storage_key(&r.key), r)).collect();
    let rows = last_per_key(rows, |(k, _)| k.clone());
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
