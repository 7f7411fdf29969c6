//! [`WriteTx`] over one `Transaction`. Once a statement fails PostgreSQL aborts the transaction
//! (and would answer `COMMIT` with a silent rollback), so the first failure is kept: every later
//! call, `commit` included, reports it and nothing is committed.
//!
//! The bulk row writes (records, feedback) are queued on tasks of their own, run in order while
//! the caller goes on: the hub merges and checks the next slices of a change set while the server
//! writes the last, as the SQLite backend's writer thread does. Any other call to the
//! transaction waits for the queue to empty. Records read and found absent are later inserted
//! by `COPY` (see [`bulk::RecordWrite`]).

use super::reads::{self, records};
use super::{bulk, db, to_i64};
use crate::record::{HashSet, StoredRecord, storage_key};
use crate::store::contract::*;
use crate::store::known_keys::{KnownKeys, OwnRevs};
use async_trait::async_trait;
use jianka_shared::Year;
use sqlx::{Postgres, Transaction};
use std::sync::Arc;
use tokio::task::JoinHandle;

type Tx = Transaction<'static, Postgres>;

/// A background write: the transaction back (unless a task before it was lost) and its result.
type Behind = JoinHandle<(Option<Tx>, StoreResult<()>)>;

pub struct PgWriteTx {
    /// The transaction, unless background writes hold it.
    tx: Option<Tx>,
    /// The last background write queued: each waits for the one before it, so they run in the
    /// order given, one after another, and the server never waits for the caller between them.
    writing: Option<Behind>,
    failed: Option<String>,
    /// Keys this transaction looked up and found absent, not written since: under the writer
    /// lock they stay absent, so their first write is an insert (`COPY`).
    absent: HashSet<String>,
    /// Records given to `write_records` and not yet queued, with their revision: they go to the
    /// server a batch at a time (each write is a statement or two, and each has its cost there).
    pending: Vec<(String, Arc<StoredRecord>)>,
    pending_fresh: HashSet<String>,
    pending_rev: i64,
    /// `COPY`s this transaction may still run, each in a savepoint of its own.
    copies_left: u32,
    known: KnownKeys,
    /// The revisions this transaction wrote records at.
    own: OwnRevs,
}

/// Records gathered before a write is queued while the server is busy with the last.
const WRITE_BATCH: usize = 5_000;

/// Savepoints (`COPY`s) per transaction. Each one that writes takes a subtransaction id, and
/// PostgreSQL caches only 64 per transaction: past that every other session's snapshot checks
/// slow down. Later fresh rows are upserted like the rest.
const COPIES_PER_TRANSACTION: u32 = 32;

impl PgWriteTx {
    pub(super) fn new(tx: Tx, known: KnownKeys) -> PgWriteTx {
        PgWriteTx {
            tx: Some(tx),
            writing: None,
            failed: None,
            absent: HashSet::default(),
            pending: Vec::new(),
            pending_fresh: HashSet::default(),
            pending_rev: 0,
            copies_left: COPIES_PER_TRANSACTION,
            known,
            own: OwnRevs::default(),
        }
    }

    fn check(&self) -> StoreResult<()> {
        match &self.failed {
            Some(e) => Err(StoreError::Db(format!("the transaction failed earlier and commits nothing: {e}"))),
            None => Ok(()),
        }
    }

    fn note<T>(&mut self, r: StoreResult<T>) -> StoreResult<T> {
        if let Err(e) = &r {
            self.failed.get_or_insert_with(|| e.to_string());
        }
        r
    }

    /// The transaction's connection, once every background write has finished (the first
    /// failure is kept and reported).
    async fn conn(&mut self) -> StoreResult<&mut Tx> {
        self.queue_pending()?;
        if let Some(writing) = self.writing.take() {
            let (tx, r) = finished(writing).await;
            self.tx = tx;
            self.note(r)?;
        }
        self.check()?;
        match self.tx.as_mut() {
            Some(tx) => Ok(tx),
            None => Err(StoreError::Db("the transaction was lost by an earlier failure".into())),
        }
    }

    /// Queues the pending records' write; their `COPY` text is made here, so the queued write
    /// only sends it.
    fn queue_pending(&mut self) -> StoreResult<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let rows = std::mem::take(&mut self.pending);
        let mut fresh = std::mem::take(&mut self.pending_fresh);
        if self.copies_left == 0 {
            fresh.clear();
        } else if !fresh.is_empty() {
            self.copies_left -= 1;
        }
        let write = bulk::RecordWrite::new(rows, fresh, self.pending_rev);
        self.write_behind(move |mut tx| async move {
            let r = write.run(&mut tx).await;
            (tx, r)
        })
    }

    /// Queues `write` on the transaction behind the writes already queued and returns at once.
    fn write_behind<F>(&mut self, write: impl FnOnce(Tx) -> F + Send + 'static) -> StoreResult<()>
    where
        F: std::future::Future<Output = (Tx, StoreResult<()>)> + Send + 'static,
    {
        self.check()?;
        let before = self.writing.take();
        let idle = self.tx.take();
        self.writing = Some(tokio::spawn(async move {
            let tx = match before {
                Some(before) => match finished(before).await {
                    (Some(tx), Ok(())) => tx,
                    // A failed write: the ones queued after it do not run.
                    (tx, r) => return (tx, r),
                },
                None => match idle {
                    Some(tx) => tx,
                    None => {
                        return (None, Err(StoreError::Db("the transaction was lost by an earlier failure".into())));
                    }
                },
            };
            let (tx, r) = write(tx).await;
            (Some(tx), r)
        }));
        Ok(())
    }

    /// Runs one statement that returns no rows.
    async fn exec(&mut self, q: sqlx::query::Query<'_, Postgres, sqlx::postgres::PgArguments>) -> StoreResult<()> {
        let conn = self.conn().await?;
        let r = q.execute(&mut **conn).await.map(|_| ()).map_err(db);
        self.note(r)
    }
}

/// The outcome of a background write; one that stopped (panicked) lost the transaction.
async fn finished(writing: Behind) -> (Option<Tx>, StoreResult<()>) {
    match writing.await {
        Ok(done) => done,
        Err(e) => (None, Err(StoreError::Db(format!("a background write stopped: {e}")))),
    }
}

/// Runs `$body` (an expression using `$conn`, the transaction's connection) unless the
/// transaction failed before, and keeps its failure.
macro_rules! guarded {
    ($self:ident, |$conn:ident| $body:expr) => {{
        let $conn = &mut **$self.conn().await?;
        let r = $body.await;
        $self.note(r)
    }};
}

#[async_trait]
impl WriteTx for PgWriteTx {
    async fn commit(mut self: Box<Self>) -> StoreResult<()> {
        if let Err(e) = self.conn().await {
            // Dropping the transaction rolls back.
            return Err(StoreError::Db(format!("the transaction failed and committed nothing: {e}")));
        }
        match self.tx.take() {
            Some(tx) => tx.commit().await.map_err(db)?,
            None => return Err(StoreError::Db("the transaction was lost by an earlier failure".into())),
        }
        if let Some((lo, hi)) = self.own.range() {
            self.known.lock().committed(lo, hi);
        }
        Ok(())
    }

    async fn meta(&mut self, k: &str) -> StoreResult<Option<String>> {
        guarded!(self, |c| reads::meta(c, k))
    }

    async fn set_meta(&mut self, k: &str, v: &str) -> StoreResult<()> {
        self.exec(
            sqlx::query("INSERT INTO meta (k, v) VALUES ($1, $2) ON CONFLICT (k) DO UPDATE SET v = excluded.v")
                .bind(k)
                .bind(v),
        )
        .await
    }

    async fn cert(&mut self, key_id: &str) -> StoreResult<Option<CertRow>> {
        guarded!(self, |c| reads::cert(c, key_id))
    }

    async fn put_cert(&mut self, key_id: &str, subject: &str, cert: &str) -> StoreResult<()> {
        self.exec(
            sqlx::query(
                "INSERT INTO certs (key_id, subject, cert) VALUES ($1, $2, $3) \
                 ON CONFLICT (key_id) DO UPDATE SET subject = excluded.subject, cert = excluded.cert",
            )
            .bind(key_id)
            .bind(subject)
            .bind(cert),
        )
        .await
    }

    async fn revoke_cert(&mut self, key_id: &str, reason: &str) -> StoreResult<()> {
        self.exec(
            sqlx::query("UPDATE certs SET revoked = 1, revoked_reason = $1 WHERE key_id = $2")
                .bind(reason)
                .bind(key_id),
        )
        .await
    }

    async fn set_equivocating(&mut self, key_id: &str, held: bool) -> StoreResult<()> {
        self.exec(
            sqlx::query("UPDATE certs SET equivocating = $1 WHERE key_id = $2").bind(i64::from(held)).bind(key_id),
        )
        .await
    }

    async fn record_equivocation(
        &mut self,
        origin: &str,
        seq: u64,
        stored_hash: &str,
        offered_hash: &str,
        at: i64,
    ) -> StoreResult<()> {
        let seq = self.note(to_i64(seq, "seq"))?;
        self.exec(
            sqlx::query(
                "INSERT INTO equivocations (origin, seq, stored_hash, offered_hash, at) VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(origin)
            .bind(seq)
            .bind(stored_hash)
            .bind(offered_hash)
            .bind(at),
        )
        .await
    }

    async fn stream(&mut self, origin: &str) -> StoreResult<Option<StreamState>> {
        guarded!(self, |c| reads::stream(c, origin))
    }

    async fn envelope_hash(&mut self, origin: &str, seq: u64) -> StoreResult<Option<String>> {
        guarded!(self, |c| reads::envelope_hash(c, origin, seq))
    }

    async fn record_envelope(&mut self, e: EnvelopeRow) -> StoreResult<()> {
        let seq = self.note(to_i64(e.seq, "seq"))?;
        let next =
            self.note(seq.checked_add(1).ok_or_else(|| StoreError::Db(format!("seq {seq} has no successor"))))?;
        let ops = self.note(to_i64(e.ops, "op count"))?;
        self.exec(
            sqlx::query(
                "INSERT INTO envelopes (origin, seq, hash, received_at, ops, year, bytes) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(&e.origin)
            .bind(seq)
            .bind(&e.hash)
            .bind(e.received_at)
            .bind(ops)
            .bind(i64::from(e.year))
            .bind(&e.bytes),
        )
        .await?;
        self.exec(
            sqlx::query(
                "INSERT INTO streams (origin, next_seq, last_hash) VALUES ($1, $2, $3) \
                 ON CONFLICT (origin) DO UPDATE SET next_seq = excluded.next_seq, last_hash = excluded.last_hash",
            )
            .bind(&e.origin)
            .bind(next)
            .bind(&e.hash),
        )
        .await
    }

    async fn records(&mut self, keys: &[String]) -> StoreResult<Vec<StoredRecord>> {
        let (known, own) = (self.known.clone(), self.own);
        let found = guarded!(self, |c| async {
            // Only keys the database may hold are looked up (see `KnownKeys`).
            reads::catch_up(&mut *c, &known, own).await?;
            let maybe: Vec<&str> = {
                let known = known.lock();
                super::storable(keys).into_iter().filter(|k| known.may_hold(k)).collect()
            };
            if maybe.is_empty() {
                return Ok(Vec::new());
            }
            let rows = sqlx::query("SELECT k, region, hh, fields, deleted FROM records WHERE k = ANY($1::text[])")
                .bind(maybe)
                .fetch_all(c)
                .await
                .map_err(db)?;
            records(&rows)
        })?;
        if found.len() < keys.len() {
            let present: HashSet<String> = found.iter().map(|r| storage_key(&r.key)).collect();
            self.absent.extend(keys.iter().filter(|k| !present.contains(*k) && !k.contains('\0')).cloned());
        }
        Ok(found)
    }

    async fn live_members(&mut self, year: Year, households: &[String]) -> StoreResult<Vec<StoredRecord>> {
        let member = i64::from(jianka_shared::RecordKind::Member.to_u8());
        guarded!(self, |c| async {
            let rows = sqlx::query(
                r#"SELECT k, region, hh, fields, deleted FROM records
                   WHERE year = $1 AND kind = $2 AND deleted = 0 AND hh = ANY($3::text[]) ORDER BY k COLLATE "C""#,
            )
            .bind(i64::from(year))
            .bind(member)
            .bind(super::storable(households))
            .fetch_all(c)
            .await
            .map_err(db)?;
            records(&rows)
        })
    }

    async fn next_rev(&mut self) -> StoreResult<i64> {
        guarded!(self, |c| async {
            let max: i64 =
                sqlx::query_scalar("SELECT COALESCE(MAX(rev), 0) FROM records").fetch_one(c).await.map_err(db)?;
            max.checked_add(1).ok_or_else(|| StoreError::Corrupt(format!("stored revision {max} has no successor")))
        })
    }

    async fn write_records(&mut self, records: Vec<Arc<StoredRecord>>, rev: i64) -> StoreResult<()> {
        if rev != self.pending_rev {
            self.queue_pending()?;
            self.pending_rev = rev;
        }
        self.own.wrote(rev);
        let mut known = self.known.lock();
        for r in records {
            let k = storage_key(&r.key);
            known.add([&k]);
            // Once written a key is no longer absent: a later write of it upserts.
            if self.absent.remove(&k) {
                self.pending_fresh.insert(k.clone());
            }
            self.pending.push((k, r));
        }
        drop(known);
        // Queued at once while the server has nothing to write, else gathered into a batch.
        let idle = self.writing.as_ref().is_none_or(JoinHandle::is_finished);
        if idle || self.pending.len() >= WRITE_BATCH {
            self.queue_pending()?;
        }
        Ok(())
    }

    async fn quarantine(&mut self, rows: Vec<QuarantineRow>) -> StoreResult<()> {
        guarded!(self, |c| bulk::quarantine(c, rows))
    }

    async fn push_feedback(&mut self, items: Vec<(String, String)>) -> StoreResult<()> {
        self.queue_pending()?;
        self.write_behind(move |mut tx| async move {
            let r = bulk::push_feedback(&mut tx, items).await;
            (tx, r)
        })
    }

    async fn open_conflicts(&mut self, kind: &str) -> StoreResult<Vec<ConflictRow>> {
        guarded!(self, |c| reads::conflicts_where(c, false, Some(kind)))
    }

    async fn conflict(&mut self, id: i64) -> StoreResult<Option<ConflictRow>> {
        guarded!(self, |c| async {
            let row = sqlx::query(concat!("SELECT ", reads::conflict_cols!(), " FROM conflicts WHERE id = $1"))
                .bind(id)
                .fetch_optional(c)
                .await
                .map_err(db)?;
            row.as_ref().map(reads::conflict_row).transpose()
        })
    }

    async fn add_conflicts(&mut self, rows: Vec<NewConflict>, at: i64) -> StoreResult<()> {
        guarded!(self, |c| bulk::add_conflicts(c, rows, at))
    }

    async fn resolve_conflict(&mut self, id: i64, resolution: &str) -> StoreResult<()> {
        self.exec(
            sqlx::query("UPDATE conflicts SET status = 'resolved', resolution = $1 WHERE id = $2")
                .bind(resolution)
                .bind(id),
        )
        .await
    }

    async fn completed_moves(&mut self, ids: &[String]) -> StoreResult<Vec<CompletedMoveRow>> {
        guarded!(self, |c| async {
            // Moves are rare: while none was ever completed, thousands of ids are not bound.
            let any: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM completed_moves)")
                .fetch_one(&mut *c)
                .await
                .map_err(db)?;
            if !any {
                return Ok(Vec::new());
            }
            let rows: Vec<(String, i64, String, String, String)> = sqlx::query_as(
                r#"SELECT id, year, from_county, to_county, from_household FROM completed_moves
                   WHERE id = ANY($1::text[]) ORDER BY id COLLATE "C", year DESC, at DESC"#,
            )
            .bind(super::storable(ids))
            .fetch_all(c)
            .await
            .map_err(db)?;
            rows.into_iter()
                .map(|(id, year, from_county, to_county, from_household)| {
                    Ok(CompletedMoveRow { id, year: super::to_year(year)?, from_county, to_county, from_household })
                })
                .collect()
        })
    }

    async fn add_completed_moves(&mut self, rows: Vec<CompletedMoveRow>, at: i64) -> StoreResult<()> {
        guarded!(self, |c| bulk::add_completed_moves(c, rows, at))
    }

    async fn quota_used(&mut self, scope: &str, year: Year) -> StoreResult<u64> {
        self.exec(
            sqlx::query(
                "INSERT INTO quota_use (scope, year, people) VALUES ($1, $2, 0) ON CONFLICT (scope, year) DO NOTHING",
            )
            .bind(scope)
            .bind(i64::from(year)),
        )
        .await?;
        // Locked until this transaction ends: another writer (another hub process on the same
        // database) waits here instead of counting against a stale figure.
        guarded!(self, |c| async {
            let people: i64 =
                sqlx::query_scalar("SELECT people FROM quota_use WHERE scope = $1 AND year = $2 FOR UPDATE")
                    .bind(scope)
                    .bind(i64::from(year))
                    .fetch_one(c)
                    .await
                    .map_err(db)?;
            Ok(people.max(0).unsigned_abs())
        })
    }

    async fn quota_add(&mut self, scope: &str, year: Year, n: i64) -> StoreResult<()> {
        self.exec(
            sqlx::query("UPDATE quota_use SET people = people + $1 WHERE scope = $2 AND year = $3")
                .bind(n)
                .bind(scope)
                .bind(i64::from(year)),
        )
        .await
    }

    async fn put_allocation(&mut self, row: AllocationRow) -> StoreResult<()> {
        self.exec(
            sqlx::query(
                "INSERT INTO allocations (digest, region, year, serial, chain, at) VALUES ($1, $2, $3, $4, $5, $6) \
                 ON CONFLICT (digest) DO NOTHING",
            )
            .bind(row.digest)
            .bind(row.region)
            .bind(i64::from(row.year))
            .bind(row.serial as i64)
            .bind(row.chain)
            .bind(row.at),
        )
        .await
    }

    async fn year(&mut self, year: Year) -> StoreResult<Option<YearRow>> {
        guarded!(self, |c| reads::year(c, year))
    }

    async fn set_year_state(&mut self, year: Year, state: &str, snapshot: Option<&str>) -> StoreResult<()> {
        self.exec(
            sqlx::query(
                "INSERT INTO years (year, state, snapshot) VALUES ($1, $2, $3) ON CONFLICT (year) \
                 DO UPDATE SET state = excluded.state, snapshot = COALESCE(excluded.snapshot, years.snapshot)",
            )
            .bind(i64::from(year))
            .bind(state)
            .bind(snapshot),
        )
        .await
    }

    async fn ensure_year(&mut self, year: Year) -> StoreResult<()> {
        self.exec(
            sqlx::query("INSERT INTO years (year, state) VALUES ($1, 'open') ON CONFLICT (year) DO NOTHING")
                .bind(i64::from(year)),
        )
        .await
    }

    async fn add_reopening(&mut self, row: ReopeningRow) -> StoreResult<()> {
        self.exec(
            sqlx::query("INSERT INTO reopenings (year, region, reason, at, until_day) VALUES ($1, $2, $3, $4, $5)")
                .bind(i64::from(row.year))
                .bind(row.region)
                .bind(row.reason)
                .bind(row.at)
                .bind(row.until_day),
        )
        .await
    }

    async fn put_signoff(&mut self, row: SignOffRow) -> StoreResult<()> {
        self.exec(
            sqlx::query(
                "INSERT INTO signoffs (county, year, period, body, received_at) VALUES ($1, $2, $3, $4, $5) \
                 ON CONFLICT (county, year, period) DO UPDATE SET body = excluded.body, received_at = excluded.received_at",
            )
            .bind(row.county)
            .bind(i64::from(row.year))
            .bind(row.period)
            .bind(row.body)
            .bind(row.received_at),
        )
        .await
    }

    async fn last_audit(&mut self) -> StoreResult<Option<(i64, String)>> {
        guarded!(self, |c| async {
            sqlx::query_as("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1").fetch_optional(c).await.map_err(db)
        })
    }

    async fn append_audit(&mut self, rows: Vec<AuditRow>) -> StoreResult<()> {
        guarded!(self, |c| bulk::append_audit(c, rows))
    }
}
