//! [`Store`] on the pool: every read is one statement on a connection taken for it alone, so a
//! reader never holds a connection while it waits for another (200 townships syncing at once
//! share 8 connections).

use super::reads::{self, record, records, year_row};
use super::{PgStore, db, to_i64, to_u64, to_year};
use crate::record::StoredRecord;
use crate::store::contract::*;
use async_trait::async_trait;
use jianka_shared::Year;
use sqlx::Row;

#[async_trait]
impl Store for PgStore {
    fn backend(&self) -> Backend {
        Backend::Postgres
    }

    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await.map_err(db)?;
        Ok(())
    }

    async fn begin(&self) -> StoreResult<Box<dyn WriteTx>> {
        let mut tx = self.pool.begin().await.map_err(db)?;
        // Write transactions run one at a time across processes, as SQLite's do: revisions are
        // then given out in commit order, which the stored-key set relies on (`KnownKeys`).
        // Waiting at most as long as SQLite's busy timeout (for the whole transaction, as there).
        sqlx::query("SELECT set_config('lock_timeout', $1, true)")
            .bind(format!("{}ms", crate::store::WRITE_WAIT.as_millis()))
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)").bind(super::WRITER_LOCK).execute(&mut *tx).await.map_err(db)?;
        Ok(Box::new(super::PgWriteTx::new(tx, self.known.clone())))
    }

    async fn close(&self) {
        self.pool.close().await;
    }

    async fn meta(&self, k: &str) -> StoreResult<Option<String>> {
        reads::meta(&self.pool, k).await
    }

    async fn cert(&self, key_id: &str) -> StoreResult<Option<CertRow>> {
        reads::cert(&self.pool, key_id).await
    }

    async fn enrolled_subjects(&self) -> StoreResult<Vec<String>> {
        sqlx::query_scalar(r#"SELECT DISTINCT subject COLLATE "C" FROM certs WHERE revoked = 0 ORDER BY 1"#)
            .fetch_all(&self.pool)
            .await
            .map_err(db)
    }

    async fn equivocations(&self) -> StoreResult<Vec<EquivocationRow>> {
        let rows: Vec<(String, String, i64, String, String, i64)> = sqlx::query_as(
            "SELECT c.key_id, c.subject, e.seq, e.stored_hash, e.offered_hash, e.at FROM certs c \
             JOIN equivocations e ON e.origin = c.subject WHERE c.equivocating <> 0 ORDER BY e.at, e.seq, e.id",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        rows.into_iter()
            .map(|(key_id, subject, seq, stored_hash, offered_hash, at)| {
                Ok(EquivocationRow { key_id, subject, seq: to_u64(seq, "seq")?, stored_hash, offered_hash, at })
            })
            .collect()
    }

    async fn stream(&self, origin: &str) -> StoreResult<Option<StreamState>> {
        reads::stream(&self.pool, origin).await
    }

    async fn envelopes_received(&self, origin: &str, year: Year, from: i64, until: i64) -> StoreResult<u64> {
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM envelopes WHERE origin = $1 AND received_at >= $2 AND received_at < $3 AND year = $4",
        )
        .bind(origin)
        .bind(from)
        .bind(until)
        .bind(i64::from(year))
        .fetch_one(&self.pool)
        .await
        .map_err(db)?;
        to_u64(n, "count")
    }

    async fn kept_envelopes(&self) -> StoreResult<Vec<EnvelopeRow>> {
        let rows: Vec<(String, i64, String, i64, i64, Option<i64>, Vec<u8>)> = sqlx::query_as(
            r#"SELECT origin, seq, hash, received_at, ops, year, bytes FROM envelopes WHERE bytes IS NOT NULL
               ORDER BY origin COLLATE "C", seq"#,
        )
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        rows.into_iter()
            .map(|(origin, seq, hash, received_at, ops, year, bytes)| {
                Ok(EnvelopeRow {
                    origin,
                    seq: to_u64(seq, "seq")?,
                    hash,
                    received_at,
                    ops: to_u64(ops, "op count")?,
                    // Envelopes kept with bytes were all stored after the year column came.
                    year: to_year(year.unwrap_or(0))?,
                    bytes,
                })
            })
            .collect()
    }

    async fn upload(&self, origin: &str, seq: u64) -> StoreResult<Option<(u64, Vec<u8>)>> {
        let Ok(seq) = to_i64(seq, "seq") else { return Ok(None) };
        let row: Option<(i64, Vec<u8>)> =
            sqlx::query_as("SELECT total, data FROM uploads WHERE origin = $1 AND seq = $2")
                .bind(origin)
                .bind(seq)
                .fetch_optional(&self.pool)
                .await
                .map_err(db)?;
        row.map(|(total, data)| Ok((to_u64(total, "upload total")?, data))).transpose()
    }

    async fn put_upload(&self, origin: &str, seq: u64, total: u64, data: &[u8]) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO uploads (origin, seq, total, data) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (origin, seq) DO UPDATE SET total = excluded.total, data = excluded.data",
        )
        .bind(origin)
        .bind(to_i64(seq, "seq")?)
        .bind(to_i64(total, "upload total")?)
        .bind(data)
        .execute(&self.pool)
        .await
        .map_err(db)?;
        Ok(())
    }

    async fn delete_upload(&self, origin: &str, seq: u64) -> StoreResult<()> {
        let Ok(seq) = to_i64(seq, "seq") else { return Ok(()) };
        sqlx::query("DELETE FROM uploads WHERE origin = $1 AND seq = $2")
            .bind(origin)
            .bind(seq)
            .execute(&self.pool)
            .await
            .map_err(db)?;
        Ok(())
    }

    async fn feedback_after(&self, region: &str, after: i64, limit: u32) -> StoreResult<Vec<(i64, String)>> {
        sqlx::query_as("SELECT id, item FROM feedback WHERE region = $1 AND id > $2 ORDER BY id LIMIT $3")
            .bind(region)
            .bind(after)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await
            .map_err(db)
    }

    async fn records_in(&self, year: Year, lo: &str, hi: &str) -> StoreResult<Vec<StoredRecord>> {
        let rows = sqlx::query(
            r#"SELECT k, region, hh, fields, deleted FROM records
               WHERE year = $1 AND region COLLATE "C" >= $2 AND region COLLATE "C" < $3 AND deleted = 0
               ORDER BY k COLLATE "C""#,
        )
        .bind(i64::from(year))
        .bind(lo)
        .bind(hi)
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        records(&rows)
    }

    async fn record_years(&self) -> StoreResult<Vec<Year>> {
        let years: Vec<i64> = sqlx::query_scalar("SELECT DISTINCT year FROM records ORDER BY year")
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
        years.into_iter().map(to_year).collect()
    }

    async fn records_after(&self, rev: i64, k: &str, limit: u32) -> StoreResult<Vec<RevisedRecord>> {
        let rows = sqlx::query(
            r#"SELECT k, region, hh, fields, deleted, rev FROM records
               WHERE rev > $1 OR (rev = $1 AND k COLLATE "C" > $2) ORDER BY rev, k COLLATE "C" LIMIT $3"#,
        )
        .bind(rev)
        .bind(k)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        rows.iter().map(|r| Ok(RevisedRecord { record: record(r)?, rev: r.try_get(5).map_err(db)? })).collect()
    }

    async fn count_records_after(&self, rev: i64, k: &str) -> StoreResult<u64> {
        let n: i64 =
            sqlx::query_scalar(r#"SELECT COUNT(*) FROM records WHERE rev > $1 OR (rev = $1 AND k COLLATE "C" > $2)"#)
                .bind(rev)
                .bind(k)
                .fetch_one(&self.pool)
                .await
                .map_err(db)?;
        to_u64(n, "count")
    }

    async fn conflicts(&self, all: bool) -> StoreResult<Vec<ConflictRow>> {
        reads::conflicts_where(&self.pool, all, None).await
    }

    async fn year(&self, year: Year) -> StoreResult<Option<YearRow>> {
        reads::year(&self.pool, year).await
    }

    async fn years(&self) -> StoreResult<Vec<YearRow>> {
        let rows: Vec<(i64, String, Option<String>)> =
            sqlx::query_as("SELECT year, state, snapshot FROM years ORDER BY year")
                .fetch_all(&self.pool)
                .await
                .map_err(db)?;
        rows.into_iter().map(year_row).collect()
    }

    async fn reopenings(&self, year: Year) -> StoreResult<Vec<ReopeningRow>> {
        let rows: Vec<(i64, String, String, i64, Option<String>)> =
            sqlx::query_as("SELECT year, region, reason, at, until_day FROM reopenings WHERE year = $1 ORDER BY id")
                .bind(i64::from(year))
                .fetch_all(&self.pool)
                .await
                .map_err(db)?;
        rows.into_iter()
            .map(|(year, region, reason, at, until_day)| {
                Ok(ReopeningRow { year: to_year(year)?, region, reason, at, until_day })
            })
            .collect()
    }

    async fn signoffs(&self) -> StoreResult<Vec<SignOffRow>> {
        let rows = sqlx::query_as(
            r#"SELECT county, year, period, body, received_at FROM signoffs
               ORDER BY county COLLATE "C", year, period COLLATE "C""#,
        )
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        signoff_rows(rows)
    }

    async fn signoffs_of(&self, county: &str) -> StoreResult<Vec<SignOffRow>> {
        let rows = sqlx::query_as(
            r#"SELECT county, year, period, body, received_at FROM signoffs WHERE county = $1
               ORDER BY year, period COLLATE "C""#,
        )
        .bind(county)
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        signoff_rows(rows)
    }

    async fn quota_used(&self, scope: &str, year: Year) -> StoreResult<Option<u64>> {
        let people: Option<i64> = sqlx::query_scalar("SELECT people FROM quota_use WHERE scope = $1 AND year = $2")
            .bind(scope)
            .bind(i64::from(year))
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?;
        // As the quota ledger reads it: a negative count (more removed than added) is none used.
        Ok(people.map(|p| p.max(0).unsigned_abs()))
    }

    async fn allocations(&self) -> StoreResult<Vec<AllocationRow>> {
        let rows: Vec<(String, String, i64, i64, String, i64)> =
            sqlx::query_as("SELECT digest, region, year, serial, chain, at FROM allocations ORDER BY at, digest")
                .fetch_all(&self.pool)
                .await
                .map_err(db)?;
        Ok(rows
            .into_iter()
            .map(|(digest, region, year, serial, chain, at)| AllocationRow {
                digest,
                region,
                year: year.try_into().unwrap_or(0),
                serial: serial.max(0).unsigned_abs(),
                chain,
                at,
            })
            .collect())
    }

    async fn audit_log(&self) -> StoreResult<Vec<AuditRow>> {
        let rows: Vec<(i64, i64, String, String, String, String, String, String, String)> = sqlx::query_as(
            "SELECT seq, at, key_id, action, subject, old, new, prev_hash, hash FROM audit ORDER BY seq",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        Ok(rows
            .into_iter()
            .map(|(seq, at, key_id, action, subject, old, new, prev_hash, hash)| AuditRow {
                seq,
                at,
                key_id,
                action,
                subject,
                old,
                new,
                prev_hash,
                hash,
            })
            .collect())
    }
}

fn signoff_rows(rows: Vec<(String, i64, String, String, i64)>) -> StoreResult<Vec<SignOffRow>> {
    rows.into_iter()
        .map(|(county, year, period, body, received_at)| {
            Ok(SignOffRow { county, year: to_year(year)?, period, body, received_at })
        })
        .collect()
}
