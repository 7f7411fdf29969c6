//! Step 7, the write: the outcome of a change set stored in its transaction — rows (some written
//! early, while later steps ran), quarantine, conflicts, completed moves, feedback — and the
//! envelope with the advanced stream.

use super::envelope::Opened;
use crate::auth::Sender;
use crate::error::HubError;
use crate::feedback::{corrections_feedback, push_feedback};
use crate::ingest::outcome::Decision;
use crate::ingest::outcome::IngestOutcome;
use crate::record::{HashSet, StoredRecord, storage_key};
use crate::state::Hub;
use crate::store::{EnvelopeRow, QuarantineRow, WriteTx, while_running};
use jianka_shared::protocol::{Decisions, Feedback};
use jianka_shared::{Hlc, Year};
use jianka_shared::{RecordKind, RegionCode};
use std::collections::BTreeMap;
use std::sync::Arc;

impl Hub {
    pub(crate) async fn flush_rows(&self, tx: &mut dyn WriteTx, fx: &mut IngestOutcome) -> Result<(), HubError> {
        // Rows written early (see `write_while`) are skipped unless dirtied again since.
        let mut seen: HashSet<String> = HashSet::default();
        let dirty: Vec<String> = std::mem::take(&mut fx.dirty)
            .into_iter()
            .enumerate()
            .filter(|(i, k)| fx.written.get(k).is_none_or(|upto| i >= upto))
            .map(|(_, k)| k)
            .filter(|k| seen.insert(k.clone()))
            .collect();
        let rows: Vec<Arc<StoredRecord>> = dirty.iter().filter_map(|k| fx.rows.get(k).cloned()).collect();
        if rows.is_empty() {
            return Ok(());
        }
        Ok(tx.write_records(rows, fx.rev).await?)
    }

    pub(crate) async fn write_effects(
        &self,
        tx: &mut dyn WriteTx,
        origin: &RegionCode,
        seq: u64,
        fx: &mut IngestOutcome,
    ) -> Result<(), HubError> {
        self.flush_rows(tx, fx).await?;
        let now = self.now_secs();
        let quarantine = std::mem::take(&mut fx.quarantine)
            .into_iter()
            .map(|(_, r, payload)| QuarantineRow {
                origin: origin.to_string(),
                seq,
                // A refused id may hold what a text column cannot (a NUL): kept escaped.
                k: escape_control(&storage_key(&r.key)),
                reason: serde_json::to_string(&r.reason).unwrap_or_default(),
                message: escape_control(&r.message),
                payload,
                at: now,
            })
            .collect();
        tx.quarantine(quarantine).await?;
        tx.add_conflicts(std::mem::take(&mut fx.conflicts), now).await?;
        for (id, resolution) in &fx.resolved {
            tx.resolve_conflict(*id, resolution).await?;
        }
        tx.add_completed_moves(std::mem::take(&mut fx.completed_moves), now).await?;
        fx.feedback.extend(corrections_feedback(fx.corrections.drain(..)));
        fx.feedback.extend(decided_feedback(&fx.decided));
        push_feedback(tx, &fx.feedback).await
    }
}

/// [`Feedback::Decided`] items carrying `decisions`, by the township they go to, record kind,
/// year and version, cut to [`Decisions::items`]' size.
fn decided_feedback(decisions: &[Decision]) -> Vec<(String, Feedback)> {
    type Group<'a> = (&'a str, RecordKind, Year, Hlc);
    let mut groups: BTreeMap<Group, Vec<(String, Option<String>)>> = BTreeMap::new();
    for d in decisions {
        let group = (d.township.as_str(), d.key.kind, d.key.year, d.version);
        groups.entry(group).or_default().push((d.key.id.clone(), d.refusal.clone()));
    }
    let mut out = Vec::new();
    for ((township, kind, year, version), ids) in groups {
        out.extend(
            Decisions::items(kind, year, version, ids)
                .into_iter()
                .map(|d| (township.to_string(), Feedback::Decided(d))),
        );
    }
    out
}

/// `s` with its control characters written as `\u{…}` escapes.
fn escape_control(s: &str) -> String {
    if !s.chars().any(char::is_control) {
        return s.to_string();
    }
    s.chars().map(|c| if c.is_control() { c.escape_unicode().to_string() } else { c.to_string() }).collect()
}

/// Runs `step` on each of `steps`, writing the rows of `kinds` that each step dirtied while the
/// next one runs: the store is handed the rows (SQLite queues them to its writer thread; on
/// PostgreSQL the statement goes to the server), the next step runs meanwhile, then the write is
/// awaited. Rows written here are marked (see [`IngestOutcome::unwritten`]) so the final flush
/// writes them again only if they change later.
pub(crate) async fn write_while<S>(
    tx: &mut dyn WriteTx,
    fx: &mut IngestOutcome,
    kinds: &[RecordKind],
    mut steps: impl ExactSizeIterator<Item = S>,
    mut step: impl FnMut(&mut IngestOutcome, S),
) -> Result<(), HubError> {
    if let Some(first) = steps.next() {
        step(fx, first);
    }
    loop {
        let rows = fx.unwritten(kinds);
        if rows.is_empty() {
            match steps.next() {
                Some(next) => {
                    step(fx, next);
                    continue;
                }
                None => return Ok(()),
            }
        }
        while_running(tx.write_records(rows, fx.rev), || {
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
    tx: &mut dyn WriteTx,
    sender: &Sender,
    opened: &Opened,
    bytes: &[u8],
    now: i64,
) -> Result<(), HubError> {
    tx.record_envelope(EnvelopeRow {
        origin: sender.region.to_string(),
        seq: opened.header.seq,
        hash: opened.hash.clone(),
        received_at: now,
        ops: opened.changeset.ops.len() as u64,
        year: opened.header.year,
        bytes: bytes.to_vec(),
    })
    .await?;
    Ok(())
}
