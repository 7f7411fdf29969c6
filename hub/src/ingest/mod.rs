//! Ingest: one change set from a child, in the order its steps run, one file each:
//!
//! 1. [`envelope`] — parse, origin, signature, size; then the sender's sequence
//! 2. [`load`] — everything the merge reads, before it starts
//! 3. [`apply`] — each op merged field by field (pure), [`validate`]d as it goes, with
//!    cross-county [`moves`] and, above a county, the [`recheck`] of its admissions against
//!    what was issued to it; member rows are written while the next slice merges
//! 4. [`reexamine`] — 县复审 and the quota, for households and villages (county); where the
//!    township decides, its [`admission`]s are held to the same rules instead
//! 5. [`carry`] — what an update window accepts into a frozen year goes on into the next (county)
//! 6. [`restore`] — what was refused outright goes back down as the county holds it
//! 7. [`write`] — the [`outcome`] stored: rows, quarantine, conflicts, feedback, the envelope
//! 8. [`audit`] — one hash-chained entry per change set
//!
//! Nothing is stored unless every step succeeds: steps 2–8 run in one transaction, under the
//! writer lock.

mod admission;
mod apply;
mod audit;
mod carry;
pub mod envelope;
mod load;
mod moves;
mod outcome;
mod recheck;
mod reexamine;
mod restore;
mod validate;
mod write;

pub use outcome::ChangeLog;
pub(crate) use validate::validate_household;

use crate::auth::Sender;
use crate::error::HubError;
use crate::state::Hub;
use crate::store::while_running;
use envelope::Sequence;
use jianka_shared::protocol::{ErrorCode, Feedback, PushOutcome};
use jianka_shared::{RecordKind, Tier};
use outcome::IngestOutcome;

impl Hub {
    /// Ingests one envelope from `sender`: applied whole, or not at all.
    pub async fn ingest(&self, sender: &Sender, bytes: &[u8]) -> Result<PushOutcome, HubError> {
        let mut took = StepTimes::start();
        let opened = envelope::open(self, sender, bytes)?;
        took.mark("open");
        let seq = opened.header.seq;
        let ops = &opened.changeset.ops;
        let mut hlc = self.lock_writer().await;
        // Read before the transaction begins, so no connection is held while another is awaited.
        let years = self.year_states(ops.iter().map(|o| o.key().year)).await?;
        // Allocations another process stored (`install-allocation`) are in force from here on.
        self.refresh_allocations().await?;
        let mut tx = self.store.begin().await?;
        took.mark("lock");
        match envelope::sequence(&mut *tx, sender.region.as_str(), &opened).await? {
            Sequence::Fresh => {}
            Sequence::Duplicate => return Ok(PushOutcome::Duplicate { seq }),
            Sequence::Gap { expected } => return Ok(PushOutcome::Gap { expected }),
            Sequence::Equivocation { stored_hash } => {
                return Err(self.record_equivocation(tx, sender, &opened, stored_hash).await?);
            }
            Sequence::BrokenChain { last_hash } => {
                return Err(HubError::new(
                    ErrorCode::BrokenChain,
                    format!(
                        "change set #{seq} does not chain to the previous envelope of {} (expected prev_hash \
                         {last_hash})",
                        sender.region
                    ),
                ));
            }
        }
        if let Some(max) = envelope::newest_version(ops) {
            *hlc = hlc.observe(max, self.clock().now().timestamp_millis().max(0) as u64);
        }
        let mut fx = IngestOutcome { move_version: self.tick(&mut hlc).0, ..IngestOutcome::default() };
        let ctx = self.load(&mut *tx, &sender.region, ops, years, &mut fx).await?;
        took.mark("load");
        self.apply(&mut *tx, &sender.region, ops, ctx, &mut fx).await?;
        took.mark("apply");
        if self.region().tier() == Tier::County {
            self.check_admissions(&mut *tx, &mut hlc, &mut fx).await?;
            let households = fx.reexam_candidates();
            self.reexamine(&mut *tx, &mut hlc, households, &mut fx).await?;
            if ops.iter().any(|o| o.key().kind == RecordKind::Village) {
                self.reexamine_villages(&mut *tx, &mut hlc, &mut fx).await?;
            }
            took.mark("reexamine");
            self.carry_into_next_year(&mut *tx, &mut fx).await?;
            restore::restore_feedback(&mut fx, &sender.region);
            took.mark("carry");
        }
        fx.feedback.push((sender.region.to_string(), Feedback::Ack { seq }));
        self.write_effects(&mut *tx, &sender.region, seq, &mut fx).await?;
        write::record_envelope(&mut *tx, sender, &opened, bytes, self.now_secs()).await?;
        took.mark("write");
        audit::audit_changeset(&mut *tx, self.now_secs(), sender, &opened, &mut fx).await?;
        took.mark("audit");
        let (applied, rejected) = (fx.applied, std::mem::take(&mut fx.rejected));
        // Free this change set's rows while the database commits.
        while_running(tx.commit(), || drop((fx, opened))).await?;
        took.mark("commit");
        tracing::info!(
            origin = %sender.region, seq, applied, rejected = rejected.len(), ms = %took,
            "change set accepted"
        );
        Ok(PushOutcome::Accepted { seq, applied, rejected })
    }
}

/// Wall time of each step of one ingest, logged with it: where a slow change set spent its time.
struct StepTimes {
    last: std::time::Instant,
    steps: Vec<(&'static str, std::time::Duration)>,
}

impl StepTimes {
    fn start() -> StepTimes {
        StepTimes { last: std::time::Instant::now(), steps: Vec::with_capacity(10) }
    }

    fn mark(&mut self, step: &'static str) {
        let now = std::time::Instant::now();
        self.steps.push((step, now - self.last));
        self.last = now;
    }
}

impl std::fmt::Display for StepTimes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, (step, took)) in self.steps.iter().enumerate() {
            let sep = if i == 0 { "" } else { " " };
            write!(f, "{sep}{step}={:.1}", took.as_secs_f64() * 1e3)?;
        }
        Ok(())
    }
}
