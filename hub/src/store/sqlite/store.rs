//! [`SqliteStore`]: opening the file, and the [`Store`] reads on the reader connections.

use super::reads::{self, RECORD_COLS, all, int, one, record, text, uint, year};
use super::tx::SqliteTx;
use super::writer::{self, Writer};
use super::{Readers, migrate, open_writer, parse_url};
use crate::record::StoredRecord;
use crate::store::contract::{
    AllocationRow, AuditRow, Backend, CertRow, ConflictRow, EnvelopeRow, EquivocationRow, ReopeningRow, RevisedRecord,
    SignOffRow, Store, StoreError, StoreResult, StreamState, WriteTx, YearRow,
};
use crate::store::known_keys::KnownKeys;
use async_trait::async_trait;
use jianka_shared::Year;
use rusqlite::{Connection, params};
use std::sync::{Arc, Mutex};

pub struct SqliteStore {
    writer: Writer,
    /// Every stored record key's fingerprint (the writer's lookups skip keys not stored).
    known: KnownKeys,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    readers: Arc<Readers>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SqliteStore({})", self.readers.path.display())
    }
}

impl SqliteStore {
    /// Opens (creating the file if missing, unless `?mode=rw`) the database at a `sqlite://PATH`
    /// or `sqlite:PATH` URL, applies pending migrations and starts the writer thread.
    pub async fn open(url: &str) -> StoreResult<SqliteStore> {
        let target = parse_url(url)?;
        let path = target.path.clone();
        let conn = tokio::task::spawn_blocking(move || -> StoreResult<Connection> {
            let mut conn = open_writer(&target)?;
            migrate::run(&mut conn)?;
            Ok(conn)
        })
        .await
        .map_err(|e| StoreError::Db(format!("opening the database: {e}")))??;
        let (cmds, thread) = writer::spawn(conn, &path)?;
        let readers = Arc::new(Readers { path, idle: Mutex::new(Vec::new()), closed: Default::default() });
        Ok(SqliteStore {
            writer: Writer::new(cmds),
            known: KnownKeys::default(),
            thread: Mutex::new(Some(thread)),
            readers,
        })
    }

    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
    ) -> StoreResult<T> {
        self.readers.run(f).await
    }
}

#[async_trait]
impl Store for SqliteStore {
    fn backend(&self) -> Backend {
        Backend::Sqlite
    }

    async fn ping(&self) -> StoreResult<()> {
        self.read(|c| one(c, "SELECT 1", [], |r| int(r, 0)).map(drop)).await
    }

    async fn begin(&self) -> StoreResult<Box<dyn WriteTx>> {
        let (id, latch) = self.writer.begin().await?;
        Ok(Box::new(SqliteTx::new(self.writer.clone(), id, latch, self.known.clone())))
    }

    async fn close(&self) {
        self.writer.close().await;
        let thread = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(thread) = thread {
            // The thread has closed its connection already (it answered Close); this only reaps it.
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
        self.readers.close();
    }

    async fn meta(&self, k: &str) -> StoreResult<Option<String>> {
        let k = k.to_string();
        self.read(move |c| reads::meta(c, &k)).await
    }

    async fn cert(&self, key_id: &str) -> StoreResult<Option<CertRow>> {
        let key_id = key_id.to_string();
        self.read(move |c| reads::cert(c, &key_id)).await
    }

    async fn enrolled_subjects(&self) -> StoreResult<Vec<String>> {
        self.read(|c| {
            all(c, "SELECT DISTINCT subject FROM certs WHERE revoked = 0 ORDER BY subject", [], |r| text(r, 0))
        })
        .await
    }

    async fn equivocations(&self) -> StoreResult<Vec<EquivocationRow>> {
        self.read(|c| {
            all(
                c,
                "SELECT c.key_id, c.subject, e.seq, e.stored_hash, e.offered_hash, e.at FROM certs c \
                 JOIN equivocations e ON e.origin = c.subject WHERE c.equivocating <> 0 ORDER BY e.at, e.seq, e.id",
                [],
                |r| {
                    Ok(EquivocationRow {
                        key_id: text(r, 0)?,
                        subject: text(r, 1)?,
                        seq: uint(r, 2)?,
                        stored_hash: text(r, 3)?,
                        offered_hash: text(r, 4)?,
                        at: int(r, 5)?,
                    })
                },
            )
        })
        .await
    }

    async fn stream(&self, origin: &str) -> StoreResult<Option<StreamState>> {
        let origin = origin.to_string();
        self.read(move |c| reads::stream(c, &origin)).await
    }

    async fn envelopes_received(&self, origin: &str, y: Year, from: i64, until: i64) -> StoreResult<u64> {
        let origin = origin.to_string();
        self.read(move |c| {
            let n = one(
                c,
                "SELECT COUNT(*) FROM envelopes WHERE origin = ? AND received_at >= ? AND received_at < ? AND year = ?",
                params![origin, from, until, i64::from(y)],
                |r| uint(r, 0),
            )?;
            Ok(n.unwrap_or(0))
        })
        .await
    }

    async fn kept_envelopes(&self) -> StoreResult<Vec<EnvelopeRow>> {
        self.read(|c| {
            all(
                c,
                "SELECT origin, seq, hash, received_at, ops, year, bytes FROM envelopes WHERE bytes IS NOT NULL \
                 ORDER BY origin, seq",
                [],
                |r| {
                    Ok(EnvelopeRow {
                        origin: text(r, 0)?,
                        seq: uint(r, 1)?,
                        hash: text(r, 2)?,
                        received_at: int(r, 3)?,
                        ops: uint(r, 4)?,
                        // Envelopes kept with their bytes were all received after the year column
                        // was added; a missing year reads as 0 rather than failing the audit check.
                        year: match r.get::<_, Option<i64>>(5).map_err(super::db_err)? {
                            Some(_) => year(r, 5)?,
                            None => 0,
                        },
                        bytes: r.get(6).map_err(super::db_err)?,
                    })
                },
            )
        })
        .await
    }

    async fn upload(&self, origin: &str, seq: u64) -> StoreResult<Option<(u64, Vec<u8>)>> {
        let origin = origin.to_string();
        let seq = reads::sql_u64(seq)?;
        self.read(move |c| {
            one(c, "SELECT total, data FROM uploads WHERE origin = ? AND seq = ?", params![origin, seq], |r| {
                Ok((uint(r, 0)?, r.get(1).map_err(super::db_err)?))
            })
        })
        .await
    }

    async fn put_upload(&self, origin: &str, seq: u64, total: u64, data: &[u8]) -> StoreResult<()> {
        let (origin, data) = (origin.to_string(), data.to_vec());
        let (seq, total) = (reads::sql_u64(seq)?, reads::sql_u64(total)?);
        self.writer
            .alone(move |c| {
                super::writes::exec(
                    c,
                    "INSERT INTO uploads (origin, seq, total, data) VALUES (?, ?, ?, ?) \
                     ON CONFLICT (origin, seq) DO UPDATE SET total = excluded.total, data = excluded.data",
                    params![origin, seq, total, data],
                )
            })
            .await
    }

    async fn delete_upload(&self, origin: &str, seq: u64) -> StoreResult<()> {
        let origin = origin.to_string();
        let seq = reads::sql_u64(seq)?;
        self.writer
            .alone(move |c| {
                super::writes::exec(c, "DELETE FROM uploads WHERE origin = ? AND seq = ?", params![origin, seq])
            })
            .await
    }

    async fn feedback_after(&self, region: &str, after: i64, limit: u32) -> StoreResult<Vec<(i64, String)>> {
        let region = region.to_string();
        self.read(move |c| {
            all(
                c,
                "SELECT id, item FROM feedback WHERE region = ? AND id > ? ORDER BY id LIMIT ?",
                params![region, after, limit],
                |r| Ok((int(r, 0)?, text(r, 1)?)),
            )
        })
        .await
    }

    async fn records_in(&self, y: Year, lo: &str, hi: &str) -> StoreResult<Vec<StoredRecord>> {
        let (lo, hi) = (lo.to_string(), hi.to_string());
        self.read(move |c| {
            all(
                c,
                &format!(
                    "SELECT {RECORD_COLS} FROM records WHERE year = ? AND region >= ? AND region < ? AND deleted = 0 \
                     ORDER BY k"
                ),
                params![i64::from(y), lo, hi],
                |r| record(r, 0),
            )
        })
        .await
    }

    async fn record_years(&self) -> StoreResult<Vec<Year>> {
        self.read(|c| all(c, "SELECT DISTINCT year FROM records ORDER BY year", [], |r| year(r, 0))).await
    }

    async fn records_after(&self, rev: i64, k: &str, limit: u32) -> StoreResult<Vec<RevisedRecord>> {
        let k = k.to_string();
        self.read(move |c| {
            all(
                c,
                &format!(
                    "SELECT {RECORD_COLS}, rev FROM records WHERE rev > ?1 OR (rev = ?1 AND k > ?2) \
                     ORDER BY rev, k LIMIT ?3"
                ),
                params![rev, k, limit],
                |r| Ok(RevisedRecord { record: record(r, 0)?, rev: int(r, 5)? }),
            )
        })
        .await
    }

    async fn count_records_after(&self, rev: i64, k: &str) -> StoreResult<u64> {
        let k = k.to_string();
        self.read(move |c| {
            let n =
                one(c, "SELECT COUNT(*) FROM records WHERE rev > ?1 OR (rev = ?1 AND k > ?2)", params![rev, k], |r| {
                    uint(r, 0)
                })?;
            Ok(n.unwrap_or(0))
        })
        .await
    }

    async fn conflicts(&self, all_of_them: bool) -> StoreResult<Vec<ConflictRow>> {
        let filter = if all_of_them { "" } else { "WHERE status = 'open'" };
        let sql = format!("SELECT {} FROM conflicts {filter} ORDER BY id", reads::CONFLICT_COLS);
        self.read(move |c| all(c, &sql, [], reads::conflict_of)).await
    }

    async fn year(&self, y: Year) -> StoreResult<Option<YearRow>> {
        self.read(move |c| reads::year_row(c, y)).await
    }

    async fn years(&self) -> StoreResult<Vec<YearRow>> {
        self.read(|c| all(c, "SELECT year, state, snapshot FROM years ORDER BY year", [], reads::year_of)).await
    }

    async fn reopenings(&self, y: Year) -> StoreResult<Vec<ReopeningRow>> {
        self.read(move |c| {
            all(
                c,
                "SELECT year, region, reason, at, until_day FROM reopenings WHERE year = ? ORDER BY id",
                [i64::from(y)],
                reads::reopening_of,
            )
        })
        .await
    }

    async fn signoffs(&self) -> StoreResult<Vec<SignOffRow>> {
        self.read(|c| {
            all(
                c,
                "SELECT county, year, period, body, received_at FROM signoffs ORDER BY county, year, period",
                [],
                reads::signoff_of,
            )
        })
        .await
    }

    async fn signoffs_of(&self, county: &str) -> StoreResult<Vec<SignOffRow>> {
        let county = county.to_string();
        self.read(move |c| {
            all(
                c,
                "SELECT county, year, period, body, received_at FROM signoffs WHERE county = ? ORDER BY year, period",
                [county],
                reads::signoff_of,
            )
        })
        .await
    }

    async fn quota_used(&self, scope: &str, y: Year) -> StoreResult<Option<u64>> {
        let scope = scope.to_string();
        self.read(move |c| reads::quota_people(c, &scope, y)).await
    }

    async fn allocations(&self) -> StoreResult<Vec<AllocationRow>> {
        self.read(|c| {
            all(c, "SELECT digest, region, year, serial, chain, at FROM allocations ORDER BY at, digest", [], |r| {
                Ok(AllocationRow {
                    digest: text(r, 0)?,
                    region: text(r, 1)?,
                    year: year(r, 2)?,
                    serial: uint(r, 3)?,
                    chain: text(r, 4)?,
                    at: int(r, 5)?,
                })
            })
        })
        .await
    }

    async fn audit_log(&self) -> StoreResult<Vec<AuditRow>> {
        self.read(|c| {
            all(
                c,
                "SELECT seq, at, key_id, action, subject, old, new, prev_hash, hash FROM audit ORDER BY seq",
                [],
                reads::audit_of,
            )
        })
        .await
    }
}
