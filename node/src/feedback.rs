//! Applying what the county decided (feedback items, push outcomes) to the node's database.

use crate::{db, outbox, store};
use anyhow::Result;
use jianka_shared::Hlc;
use jianka_shared::allocation::{self, SignedAllocation};
use jianka_shared::protocol::{Correction, Feedback, FeedbackEntry, PushOutcome, Rejection};
use jianka_shared::trust::Certificate;
use rusqlite::{Connection, params};

pub fn since(conn: &Connection) -> Result<u64> {
    Ok(db::get_meta(conn, "feedback_since")?.and_then(|s| s.parse().ok()).unwrap_or(0))
}

/// Applies entries newer than the stored cursor, in one transaction, and advances the cursor.
/// Returns how many were applied. Replaying a page is harmless.
/// `certs` is the node's certificate chain: allocations are kept only when theirs verifies.
pub fn apply_page(
    conn: &mut Connection,
    items: &[FeedbackEntry],
    now_ms: u64,
    certs: Option<&[Certificate]>,
) -> Result<usize> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let mut cursor = since(&tx)?;
    let mut applied = 0;
    for entry in items {
        if entry.id <= cursor {
            continue;
        }
        apply_item(&tx, &entry.item, now_ms, certs)?;
        tx.execute(
            "INSERT OR IGNORE INTO feedback_log(id, item, applied_ms) VALUES(?1, ?2, ?3)",
            params![entry.id as i64, serde_json::to_string(&entry.item)?, now_ms as i64],
        )?;
        cursor = entry.id;
        applied += 1;
    }
    db::set_meta(&tx, "feedback_since", &cursor.to_string())?;
    tx.commit()?;
    Ok(applied)
}

pub fn apply_item(conn: &Connection, item: &Feedback, now_ms: u64, certs: Option<&[Certificate]>) -> Result<()> {
    match item {
        Feedback::Allocation { chain } => keep_allocation(conn, chain, certs, now_ms)?,
        Feedback::Ack { seq } => outbox::mark_acked(conn, *seq, "ack", now_ms)?,
        Feedback::Rejected(r) => record_rejection(conn, r, now_ms)?,
        Feedback::Corrections { items } => apply_corrections(conn, items)?,
        Feedback::Decided(decisions) => apply_corrections(conn, &decisions.corrections())?,
        Feedback::Quota { township, people, used } => {
            conn.execute(
                "INSERT INTO quota(township, people, used, received_ms) VALUES(?1, ?2, ?3, ?4)
                 ON CONFLICT(township) DO UPDATE SET people = excluded.people, used = excluded.used,
                   received_ms = excluded.received_ms",
                params![township.as_str(), *people as i64, *used as i64, now_ms as i64],
            )?;
        }
        Feedback::Cycle(c) => {
            let state = serde_json::to_value(c.state)?.as_str().unwrap_or("open").to_string();
            conn.execute(
                "INSERT INTO cycle(year, state, deadline, reopen_by) VALUES(?1, ?2, ?3, ?4)
                 ON CONFLICT(year) DO UPDATE SET state = excluded.state, deadline = excluded.deadline,
                   reopen_by = excluded.reopen_by",
                params![c.year, state, c.deadline, c.reopen_by],
            )?;
        }
        Feedback::Restored { items } => {
            for c in items {
                store::replace_remote(conn, &c.key, &c.values, c.version)?;
            }
        }
        Feedback::Removed { keys, version } => {
            for key in keys {
                store::remove_remote(conn, key, *version)?;
            }
        }
        Feedback::Resolved { key, field, value, note } => {
            // The settled value stands over any local one: give it a version newer than ours.
            let version = store::load_hlc(conn)?.tick(now_ms).max(Hlc(1));
            let local = store::load(conn, key)?;
            if local.as_ref().is_none_or(|s| s.deleted) && key.kind == jianka_shared::RecordKind::Member {
                // About a person this node does not hold (e.g. the county's carried copy of a
                // moved member in the next year): nothing to change here but the notices.
                conn.execute(
                    "UPDATE rejections SET resolved_ms = ?4 WHERE kind = ?1 AND year = ?2 AND rid = ?3 AND resolved_ms IS NULL",
                    params![key.kind.as_str(), key.year, key.id, now_ms as i64],
                )?;
                return Ok(());
            }
            let local_household = local.and_then(|s| s.get("household").map(str::to_string));
            let moved_away = key.kind == jianka_shared::RecordKind::Member
                && field == "household"
                && local_household.as_deref().is_some_and(|h| h != value);
            if moved_away {
                // The person stays in another household (拆户/空挂户 settled by the county): they leave
                // ours. The clerk is told, to correct the household's size and incomes.
                store::remove_remote(conn, key, version)?;
                let r = jianka_shared::protocol::Rejection {
                    key: key.clone(),
                    reason: jianka_shared::protocol::RejectReason::DuplicatePerson,
                    message: format!(
                        "{note}: the person belongs to household {value} and was removed from household {}; \
                         correct that household's member count and incomes",
                        local_household.unwrap_or_default()
                    ),
                };
                // The held-duplicate notice is settled; what is left to do is the new notice.
                conn.execute(
                    "UPDATE rejections SET resolved_ms = ?4 WHERE kind = ?1 AND year = ?2 AND rid = ?3 AND resolved_ms IS NULL",
                    params![key.kind.as_str(), key.year, key.id, now_ms as i64],
                )?;
                record_rejection(conn, &r, now_ms)?;
                return Ok(());
            }
            store::apply_remote(conn, key, field, value, version)?;
            conn.execute(
                "UPDATE rejections SET resolved_ms = ?4 WHERE kind = ?1 AND year = ?2 AND rid = ?3 AND resolved_ms IS NULL",
                params![key.kind.as_str(), key.year, key.id, now_ms as i64],
            )?;
        }
    }
    Ok(())
}

/// Each correction's values, field by field (a value older than the node's own loses).
fn apply_corrections(conn: &Connection, items: &[Correction]) -> Result<()> {
    for c in items {
        for (field, value) in &c.values {
            store::apply_remote(conn, &c.key, field, value, c.version)?;
        }
    }
    Ok(())
}

pub fn record_rejection(conn: &Connection, r: &Rejection, now_ms: u64) -> Result<()> {
    let reason = serde_json::to_value(r.reason)?.as_str().unwrap_or("unknown").to_string();
    conn.execute(
        "INSERT OR IGNORE INTO rejections(kind, year, rid, reason, message, received_ms) VALUES(?1, ?2, ?3, ?4, ?5, ?6)",
        params![r.key.kind.as_str(), r.key.year, r.key.id, reason, r.message, now_ms as i64],
    )?;
    Ok(())
}

/// Records a push outcome for one envelope: acknowledged, with any per-record rejections.
pub fn apply_outcome(conn: &Connection, seq: u64, outcome: &PushOutcome, now_ms: u64) -> Result<()> {
    match outcome {
        PushOutcome::Accepted { rejected, applied, .. } => {
            for r in rejected {
                record_rejection(conn, r, now_ms)?;
            }
            outbox::mark_acked(conn, seq, &format!("accepted: {applied} applied, {} rejected", rejected.len()), now_ms)
        }
        PushOutcome::Duplicate { .. } => outbox::mark_acked(conn, seq, "duplicate (already held)", now_ms),
        PushOutcome::Gap { .. } => Ok(()),
    }
}

/// Keeps an allocation of the scale for this township when its chain from the province verifies
/// against the node's certificates; one that does not (forged, altered, or for another
/// township) changes nothing and is logged.
fn keep_allocation(
    conn: &Connection,
    chain: &[SignedAllocation],
    certs: Option<&[Certificate]>,
    now_ms: u64,
) -> Result<()> {
    let Some((certs, me)) = certs.and_then(|c| Some((c, c.last()?.subject.clone()))) else {
        tracing::warn!("an allocation came down, but this node has no certificate chain to check it with: not kept");
        return Ok(());
    };
    let verified = match allocation::verify_chain(chain, certs, &me) {
        Ok(v) => v,
        Err(e) => {
            tracing::warn!(error = %e, "an allocation that does not verify came down: not kept");
            return Ok(());
        }
    };
    let (Some(a), Some(last)) = (verified.last(), chain.last()) else { return Ok(()) };
    conn.execute(
        "INSERT OR IGNORE INTO allocations(digest, year, serial, people, villages, chain, received_ms)
         VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![
            last.digest(),
            a.year,
            a.serial as i64,
            a.people as i64,
            a.villages as i64,
            serde_json::to_string(chain)?,
            now_ms as i64
        ],
    )?;
    Ok(())
}
