//! [`SqliteTx`]: the handle of the open write transaction. Every method sends one step to the
//! writer thread. Writes return once queued (the thread runs them in order while the caller
//! goes on); reads wait for their answer, which comes after every write queued before them.

use super::reads::{self, RECORD_COLS, all, by_keys, record, sql_u64, text};
use super::writer::{Cmd, Latch, Step, TxOp, Writer, gone};
use super::writes::{self, exec};
use crate::record::StoredRecord;
use crate::store::contract::{
    AllocationRow, AuditRow, CertRow, CompletedMoveRow, ConflictRow, EnvelopeRow, NewConflict, QuarantineRow,
    ReopeningRow, SignOffRow, StoreResult, StreamState, WriteTx, YearRow,
};
use crate::store::known_keys::{KnownKeys, OwnRevs};
use async_trait::async_trait;
use jianka_shared::{RecordKind, Year};
use rusqlite::{Connection, params};
use std::sync::Arc;
use tokio::sync::oneshot;

pub(super) struct SqliteTx {
    writer: Writer,
    id: u64,
    latch: Latch,
    /// Set once commit was sent: dropping the handle then must not roll back.
    ended: bool,
    known: KnownKeys,
    /// The revisions this transaction wrote records at.
    own: OwnRevs,
}

impl SqliteTx {
    pub(super) fn new(writer: Writer, id: u64, latch: Latch, known: KnownKeys) -> SqliteTx {
        SqliteTx { writer, id, latch, ended: false, known, own: OwnRevs::default() }
    }

    fn step(&self, step: Step) -> StoreResult<()> {
        self.writer.send(Cmd::Tx { id: self.id, op: TxOp::Step(step) })
    }

    /// Queues a write; a failure is latched and reported by a later call.
    fn queue(&self, f: impl FnOnce(&Connection) -> StoreResult<()> + Send + 'static) -> StoreResult<()> {
        if let Some(e) = self.latch.get() {
            return Err(e);
        }
        self.step(Box::new(move |conn, latch| {
            let _ = latch.guard(|| f(conn));
        }))
    }

    /// Runs `f` after everything queued before and waits for its answer.
    async fn call<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
    ) -> StoreResult<T> {
        if let Some(e) = self.latch.get() {
            return Err(e);
        }
        let (reply, answer) = oneshot::channel();
        self.step(Box::new(move |conn, latch| {
            let _ = reply.send(latch.guard(|| f(conn)));
        }))?;
        answer.await.map_err(|_| gone())?
    }
}

impl Drop for SqliteTx {
    fn drop(&mut self) {
        if !self.ended {
            // Nothing to do if the writer is gone: its connection rolled back when it closed.
            let _ = self.writer.send(Cmd::Tx { id: self.id, op: TxOp::Rollback });
        }
    }
}

#[async_trait]
impl WriteTx for SqliteTx {
    async fn commit(mut self: Box<Self>) -> StoreResult<()> {
        let (reply, answer) = oneshot::channel();
        self.writer.send(Cmd::Tx { id: self.id, op: TxOp::Commit(reply) })?;
        self.ended = true;
        answer.await.map_err(|_| gone())??;
        if let Some((lo, hi)) = self.own.range() {
            self.known.lock().committed(lo, hi);
        }
        Ok(())
    }

    async fn meta(&mut self, k: &str) -> StoreResult<Option<String>> {
        let k = k.to_string();
        self.call(move |c| reads::meta(c, &k)).await
    }

    async fn set_meta(&mut self, k: &str, v: &str) -> StoreResult<()> {
        let (k, v) = (k.to_string(), v.to_string());
        self.queue(move |c| {
            exec(c, "INSERT INTO meta (k, v) VALUES (?, ?) ON CONFLICT (k) DO UPDATE SET v = excluded.v", params![k, v])
        })
    }

    async fn cert(&mut self, key_id: &str) -> StoreResult<Option<CertRow>> {
        let key_id = key_id.to_string();
        self.call(move |c| reads::cert(c, &key_id)).await
    }

    async fn put_cert(&mut self, key_id: &str, subject: &str, cert: &str) -> StoreResult<()> {
        let (key_id, subject, cert) = (key_id.to_string(), subject.to_string(), cert.to_string());
        self.queue(move |c| {
            exec(
                c,
                "INSERT INTO certs (key_id, subject, cert) VALUES (?, ?, ?) \
                 ON CONFLICT (key_id) DO UPDATE SET subject = excluded.subject, cert = excluded.cert",
                params![key_id, subject, cert],
            )
        })
    }

    async fn revoke_cert(&mut self, key_id: &str, reason: &str) -> StoreResult<()> {
        let (key_id, reason) = (key_id.to_string(), reason.to_string());
        self.queue(move |c| {
            exec(c, "UPDATE certs SET revoked = 1, revoked_reason = ? WHERE key_id = ?", params![reason, key_id])
        })
    }

    async fn set_equivocating(&mut self, key_id: &str, held: bool) -> StoreResult<()> {
        let key_id = key_id.to_string();
        self.queue(move |c| exec(c, "UPDATE certs SET equivocating = ? WHERE key_id = ?", params![held, key_id]))
    }

    async fn record_equivocation(
        &mut self,
        origin: &str,
        seq: u64,
        stored_hash: &str,
        offered_hash: &str,
        at: i64,
    ) -> StoreResult<()> {
        let seq = sql_u64(seq)?;
        let (origin, stored, offered) = (origin.to_string(), stored_hash.to_string(), offered_hash.to_string());
        self.queue(move |c| {
            exec(
                c,
                "INSERT INTO equivocations (origin, seq, stored_hash, offered_hash, at) VALUES (?, ?, ?, ?, ?)",
                params![origin, seq, stored, offered, at],
            )
        })
    }

    async fn stream(&mut self, origin: &str) -> StoreResult<Option<StreamState>> {
        let origin = origin.to_string();
        self.call(move |c| reads::stream(c, &origin)).await
    }

    async fn envelope_hash(&mut self, origin: &str, seq: u64) -> StoreResult<Option<String>> {
        let seq = sql_u64(seq)?;
        let origin = origin.to_string();
        self.call(move |c| {
            reads::one(c, "SELECT hash FROM envelopes WHERE origin = ? AND seq = ?", params![origin, seq], |r| {
                text(r, 0)
            })
        })
        .await
    }

    async fn record_envelope(&mut self, envelope: EnvelopeRow) -> StoreResult<()> {
        self.queue(move |c| writes::envelope(c, &envelope))
    }

    async fn records(&mut self, keys: &[String]) -> StoreResult<Vec<StoredRecord>> {
        let keys = keys.to_vec();
        let (known, own) = (self.known.clone(), self.own);
        self.call(move |c| {
            // Only keys the database may hold are looked up (see `KnownKeys`).
            let maybe: Vec<String> = {
                let mut known = known.lock();
                reads::catch_up(c, &mut known, own)?;
                keys.into_iter().filter(|k| known.may_hold(k)).collect()
            };
            by_keys(c, &maybe, &[], |m| format!("SELECT {RECORD_COLS} FROM records WHERE k IN ({m})"), |r| record(r, 0))
        })
        .await
    }

    async fn live_members(&mut self, year: Year, households: &[String]) -> StoreResult<Vec<StoredRecord>> {
        let households = households.to_vec();
        self.call(move |c| {
            let kind = RecordKind::Member.to_u8();
            by_keys(
                c,
                &households,
                &[&year as &dyn rusqlite::ToSql, &kind],
                |m| {
                    format!(
                        "SELECT {RECORD_COLS} FROM records WHERE year = ? AND kind = ? AND deleted = 0 AND hh IN ({m}) \
                         ORDER BY k"
                    )
                },
                |r| record(r, 0),
            )
        })
        .await
    }

    async fn next_rev(&mut self) -> StoreResult<i64> {
        self.call(|c| {
            let max = reads::one(c, "SELECT COALESCE(MAX(rev), 0) FROM records", [], |r| reads::int(r, 0))?;
            Ok(max.unwrap_or(0).saturating_add(1))
        })
        .await
    }

    async fn write_records(&mut self, records: Vec<Arc<StoredRecord>>, rev: i64) -> StoreResult<()> {
        self.own.wrote(rev);
        let known = self.known.clone();
        self.queue(move |c| writes::records(c, &records, rev, &mut known.lock()))
    }

    async fn quarantine(&mut self, rows: Vec<QuarantineRow>) -> StoreResult<()> {
        self.queue(move |c| writes::quarantine(c, &rows))
    }

    async fn push_feedback(&mut self, items: Vec<(String, String)>) -> StoreResult<()> {
        self.queue(move |c| writes::feedback(c, &items))
    }

    async fn open_conflicts(&mut self, kind: &str) -> StoreResult<Vec<ConflictRow>> {
        let kind = kind.to_string();
        let sql =
            format!("SELECT {} FROM conflicts WHERE status = 'open' AND kind = ? ORDER BY id", reads::CONFLICT_COLS);
        self.call(move |c| all(c, &sql, [kind], reads::conflict_of)).await
    }

    async fn conflict(&mut self, id: i64) -> StoreResult<Option<ConflictRow>> {
        let sql = format!("SELECT {} FROM conflicts WHERE id = ?", reads::CONFLICT_COLS);
        self.call(move |c| reads::one(c, &sql, [id], reads::conflict_of)).await
    }

    async fn add_conflicts(&mut self, rows: Vec<NewConflict>, at: i64) -> StoreResult<()> {
        self.queue(move |c| writes::conflicts(c, &rows, at))
    }

    async fn resolve_conflict(&mut self, id: i64, resolution: &str) -> StoreResult<()> {
        let resolution = resolution.to_string();
        self.queue(move |c| {
            exec(c, "UPDATE conflicts SET status = 'resolved', resolution = ? WHERE id = ?", params![resolution, id])
        })
    }

    async fn completed_moves(&mut self, ids: &[String]) -> StoreResult<Vec<CompletedMoveRow>> {
        let ids = ids.to_vec();
        self.call(move |c| {
            // Moves are rare: while none was ever completed, thousands of ids are not bound.
            if reads::one(c, "SELECT 1 FROM completed_moves LIMIT 1", [], |r| reads::int(r, 0))?.is_none() {
                return Ok(Vec::new());
            }
            let mut rows = by_keys(
                c,
                &ids,
                &[],
                |m| {
                    format!(
                        "SELECT id, year, from_county, to_county, from_household FROM completed_moves \
                         WHERE id IN ({m}) ORDER BY id, year DESC, at DESC"
                    )
                },
                reads::completed_move_of,
            )?;
            // Chunks each come sorted; a stable sort orders across them and keeps `at DESC`.
            rows.sort_by(|a, b| a.id.cmp(&b.id).then(b.year.cmp(&a.year)));
            Ok(rows)
        })
        .await
    }

    async fn add_completed_moves(&mut self, rows: Vec<CompletedMoveRow>, at: i64) -> StoreResult<()> {
        self.queue(move |c| writes::completed_moves(c, &rows, at))
    }

    async fn quota_used(&mut self, scope: &str, year: Year) -> StoreResult<u64> {
        let scope = scope.to_string();
        self.call(move |c| writes::quota_row(c, &scope, year)).await
    }

    async fn quota_add(&mut self, scope: &str, year: Year, n: i64) -> StoreResult<()> {
        let scope = scope.to_string();
        self.queue(move |c| {
            exec(
                c,
                "INSERT INTO quota_use (scope, year, people) VALUES (?, ?, ?) \
                 ON CONFLICT (scope, year) DO UPDATE SET people = people + excluded.people",
                params![scope, year, n],
            )
        })
    }

    async fn put_allocation(&mut self, row: AllocationRow) -> StoreResult<()> {
        self.queue(move |c| {
            exec(
                c,
                "INSERT INTO allocations (digest, region, year, serial, chain, at) VALUES (?, ?, ?, ?, ?, ?) \
                 ON CONFLICT (digest) DO NOTHING",
                params![row.digest, row.region, row.year, row.serial as i64, row.chain, row.at],
            )
        })
    }

    async fn year(&mut self, year: Year) -> StoreResult<Option<YearRow>> {
        self.call(move |c| reads::year_row(c, year)).await
    }

    async fn set_year_state(&mut self, year: Year, state: &str, snapshot: Option<&str>) -> StoreResult<()> {
        let (state, snapshot) = (state.to_string(), snapshot.map(str::to_string));
        self.queue(move |c| match snapshot {
            Some(snapshot) => exec(
                c,
                "INSERT INTO years (year, state, snapshot) VALUES (?, ?, ?) \
                 ON CONFLICT (year) DO UPDATE SET state = excluded.state, snapshot = excluded.snapshot",
                params![year, state, snapshot],
            ),
            None => exec(
                c,
                "INSERT INTO years (year, state) VALUES (?, ?) ON CONFLICT (year) DO UPDATE SET state = excluded.state",
                params![year, state],
            ),
        })
    }

    async fn ensure_year(&mut self, year: Year) -> StoreResult<()> {
        self.queue(move |c| {
            exec(c, "INSERT INTO years (year, state) VALUES (?, 'open') ON CONFLICT (year) DO NOTHING", [year])
        })
    }

    async fn add_reopening(&mut self, row: ReopeningRow) -> StoreResult<()> {
        self.queue(move |c| {
            exec(
                c,
                "INSERT INTO reopenings (year, region, reason, at, until_day) VALUES (?, ?, ?, ?, ?)",
                params![row.year, row.region, row.reason, row.at, row.until_day],
            )
        })
    }

    async fn put_signoff(&mut self, row: SignOffRow) -> StoreResult<()> {
        self.queue(move |c| {
            exec(
                c,
                "INSERT INTO signoffs (county, year, period, body, received_at) VALUES (?, ?, ?, ?, ?) \
                 ON CONFLICT (county, year, period) DO UPDATE SET body = excluded.body, received_at = excluded.received_at",
                params![row.county, row.year, row.period, row.body, row.received_at],
            )
        })
    }

    async fn last_audit(&mut self) -> StoreResult<Option<(i64, String)>> {
        self.call(reads::last_audit).await
    }

    async fn append_audit(&mut self, rows: Vec<AuditRow>) -> StoreResult<()> {
        self.queue(move |c| writes::audit(c, &rows))
    }
}
