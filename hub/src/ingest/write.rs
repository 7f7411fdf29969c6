//! Step 7, the write: the outcome of a change set stored in its transaction — rows (some written
//! early, while later steps ran), quarantine, conflicts, completed moves, feedback — and the
//! envelope with the advanced stream.

use super::envelope::Opened;
use crate::auth::Sender;

use crate::error::HubError;
use crate::feedback::{corrections_feedback, push_feedback};
use crate::ingest::outcome::IngestOutcome;
use crate::record::HashSet;
use crate::record::{StoredRecord, storage_key};
use crate::state::Hub;
use crate::store::records::{records_insert, write_rows};
use crate::store::{dynamic, is_sqlite, placeholders, rows_per_statement, while_running};
use jianka_shared::{RecordKind, RegionCode};
use sqlx::{Any, Transaction};

impl Hub {
    pub(crate) async fn flush_rows(
        &self,
        tx: &mut Transaction<'static, Any>,
        fx: &mut IngestOutcome,
    ) -> Result<(), HubError> {
        // Rows written early (see `apply_ops`) are skipped unless dirtied again since.
        let mut seen: HashSet<String> = HashSet::default();
        let dirty: Vec<String> = std::mem::take(&mut fx.dirty)
            .into_iter()
            .enumerate()
            .filter(|(i, k)| fx.written.get(k).is_none_or(|upto| i >= upto))
            .map(|(_, k)| k)
            .filter(|k| seen.insert(k.clone()))
            .collect();
        let rows: Vec<&StoredRecord> = dirty.iter().filter_map(|k| fx.rows.get(k)).collect();
        write_rows(tx, &rows).await
    }

    pub(crate) async fn write_effects(
        &self,
        tx: &mut Transaction<'static, Any>,
        origin: &RegionCode,
        seq: u64,
        fx: &mut IngestOutcome,
    ) -> Result<(), HubError> {
        self.flush_rows(tx, fx).await?;
        let now = self.now_secs();
        let sqlite = is_sqlite(tx);
        for chunk in fx.quarantine.chunks(rows_per_statement(7)) {
            let sql = format!(
                "INSERT INTO quarantine (origin, seq, k, reason, message, payload, at) VALUES {}",
                placeholders(sqlite, chunk.len(), 7)
            );
            let mut q = sqlx::query(dynamic(sql));
            for (_, r, payload) in chunk {
                q = q
                    .bind(origin.to_string())
                    .bind(seq as i64)
                    .bind(storage_key(&r.key))
                    .bind(serde_json::to_string(&r.reason).unwrap_or_default())
                    .bind(r.message.clone())
                    .bind(payload.clone())
                    .bind(now);
            }
            q.execute(&mut **tx).await?;
        }
        for c in &fx.conflicts {
            sqlx::query(
                "INSERT INTO conflicts (kind, k, field, current_value, current_by, proposed_value, proposed_by, proposal, status, at) \
                 VALUES ($1,$2,$3,$4,$5,$6,$7,$8,'open',$9)",
            )
            .bind(c.kind)
            .bind(&c.k)
            .bind(&c.field)
            .bind(&c.current_value)
            .bind(&c.current_by)
            .bind(&c.proposed_value)
            .bind(&c.proposed_by)
            .bind(&c.proposal)
            .bind(now)
            .execute(&mut **tx)
            .await?;
        }
        for (id, resolution) in &fx.resolved {
            sqlx::query("UPDATE conflicts SET status = 'resolved', resolution = $1 WHERE id = $2")
                .bind(resolution)
                .bind(id)
                .execute(&mut **tx)
                .await?;
        }
        for m in &fx.completed_moves {
            sqlx::query(
                "INSERT INTO completed_moves (id, year, from_county, to_county, from_household, at) \
                 VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (id, year, from_county, to_county) \
                 DO UPDATE SET from_household = excluded.from_household, at = excluded.at",
            )
            .bind(&m.id)
            .bind(m.year as i64)
            .bind(&m.from_county)
            .bind(&m.to_county)
            .bind(&m.from_household)
            .bind(now)
            .execute(&mut **tx)
            .await?;
        }
        fx.feedback.extend(corrections_feedback(fx.corrections.drain(..)));
        push_feedback(tx, &fx.feedback).await
    }
}

/// Runs `step` on each of `steps` while the database writes the rows of `kind` that the steps
/// before dirtied: each statement is handed to the database (SQLite's worker thread or the
/// PostgreSQL server), the next step runs on this thread meanwhile, then the statement is
/// awaited. Rows written here are marked (see [`IngestOutcome::unwritten`]) so the final flush writes
/// them again only if they change later.
pub(crate) async fn write_while<S>(
    tx: &mut Transaction<'static, Any>,
    fx: &mut IngestOutcome,
    kind: RecordKind,
    rev: i64,
    mut steps: impl ExactSizeIterator<Item = S>,
    mut step: impl FnMut(&mut IngestOutcome, S),
) -> Result<(), HubError> {
    let sqlite = is_sqlite(tx);
    if let Some(first) = steps.next() {
        step(fx, first);
    }
    loop {
        let ready = fx.unwritten(kind);
        if ready.is_empty() {
            match steps.next() {
                Some(next) => {
                    step(fx, next);
                    continue;
                }
                None => return Ok(()),
            }
        }
        let query = {
            let rows: Vec<&StoredRecord> = ready.iter().filter_map(|k| fx.rows.get(k)).collect();
            records_insert(sqlite, &rows, rev)
        };
        while_running(query.execute(&mut **tx), || {
            if let Some(next) = steps.next() {
                step(fx, next);
            }
        })
        .await?;
    }
}

/// The envelope kept (its bytes are the audit's evidence for the records it created) and the
/// sender's stream advanced past it.
pub(super) async fn record_envelope(
    tx: &mut Transaction<'static, Any>,
    sender: &Sender,
    opened: &Opened,
    bytes: &[u8],
    now: i64,
) -> Result<(), HubError> {
    let origin = sender.region.as_str();
    let seq = opened.header.seq as i64;
    sqlx::query(
        "INSERT INTO envelopes (origin, seq, hash, received_at, ops, year, bytes) VALUES ($1,$2,$3,$4,$5,$6,$7)",
    )
    .bind(origin)
    .bind(seq)
    .bind(&opened.hash)
    .bind(now)
    .bind(opened.changeset.ops.len() as i64)
    .bind(opened.header.year as i64)
    .bind(bytes.to_vec())
    .execute(&mut **tx)
    .await?;
    sqlx::query(
        "INSERT INTO streams (origin, next_seq, last_hash) VALUES ($1,$2,$3) \
         ON CONFLICT (origin) DO UPDATE SET next_seq = excluded.next_seq, last_hash = excluded.last_hash",
    )
    .bind(origin)
    .bind(seq + 1)
    .bind(&opened.hash)
    .execute(&mut **tx)
    .await?;
    Ok(())
}
