//! Cutting the outbox into sealed change sets. An envelope is sealed and stored *before* it is
//! sent, in the same transaction that marks its changes as sealed, so every resend is
//! byte-identical (the hub answers Duplicate) and a kill at any point loses nothing.

use crate::clock::Clock;
use crate::store;
use anyhow::{Context, Result};
use ed25519_dalek::SigningKey;
use jianka_shared::RegionCode;
use jianka_shared::changeset::{Draft, Op, envelope_hash};
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

#[derive(Debug, Clone, Copy)]
pub struct CutPolicy {
    pub max_ops: usize,
    pub max_age_ms: u64,
    /// Seal whatever is pending now (`sync`, `export-bundle`).
    pub force: bool,
}

/// Seals pending changes into envelopes when the policy says so. Returns the new sequence numbers.
pub fn seal_pending(
    conn: &mut Connection,
    origin: &RegionCode,
    key: &SigningKey,
    clock: Clock,
    policy: CutPolicy,
) -> Result<Vec<u64>> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let (count, oldest): (i64, Option<i64>) =
        tx.query_row("SELECT COUNT(*), MIN(created_ms) FROM changes WHERE seq IS NULL", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })?;
    if count == 0 {
        return Ok(Vec::new());
    }
    let age = clock.millis().saturating_sub(oldest.unwrap_or(0).max(0) as u64);
    if !policy.force && (count as usize) < policy.max_ops && age < policy.max_age_ms {
        return Ok(Vec::new());
    }
    let mut pending: Vec<(i64, u16, Op)> = Vec::with_capacity(count as usize);
    {
        let mut stmt = tx.prepare("SELECT cid, year, op FROM changes WHERE seq IS NULL ORDER BY cid")?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?, r.get::<_, String>(2)?)))?;
        for row in rows {
            let (cid, year, op) = row?;
            let op: Op = serde_json::from_str(&op).with_context(|| format!("outbox entry {cid} is corrupt"))?;
            pending.push((cid, year as u16, op));
        }
    }
    let (mut seq, mut prev_hash) = last_envelope(&tx)?;
    let hlc = store::load_hlc(&tx)?;
    let mut sealed = Vec::new();
    let mut start = 0;
    while start < pending.len() {
        // A change set holds one year's changes, at most max_ops of them, in outbox order.
        let year = pending[start].1;
        let mut end = start;
        while end < pending.len() && pending[end].1 == year && end - start < policy.max_ops {
            end += 1;
        }
        seq += 1;
        let run = &pending[start..end];
        let draft = Draft {
            origin: origin.clone(),
            seq,
            prev_hash,
            year,
            hlc,
            ops: run.iter().map(|(_, _, op)| op.clone()).collect(),
        };
        let bytes = draft.seal(key).context("cannot seal change set")?;
        let hash = envelope_hash(&bytes);
        tx.execute(
            "INSERT INTO envelopes(seq, year, bytes, hash, op_count, sealed_ms) VALUES(?1, ?2, ?3, ?4, ?5, ?6)",
            params![seq as i64, year, bytes, hash.to_vec(), run.len() as i64, clock.millis() as i64],
        )?;
        tx.execute(
            "UPDATE changes SET seq = ?1 WHERE cid BETWEEN ?2 AND ?3 AND seq IS NULL",
            params![seq as i64, run[0].0, run[run.len() - 1].0],
        )?;
        prev_hash = hash;
        sealed.push(seq);
        start = end;
    }
    tx.commit()?;
    Ok(sealed)
}

/// Seals again, with `key`, the envelopes from `from` on that another key sealed: after the county
/// revoked the old key and enrolled a new one (`jianka-node new-key`), what the county never got
/// goes up under the new key. Only envelopes the hub does not hold (`from` = its expected
/// sequence) are touched, so nothing it holds is offered again with other bytes. Returns how many.
pub fn reseal_from(conn: &mut Connection, origin: &RegionCode, key: &SigningKey, from: u64) -> Result<usize> {
    let own = jianka_shared::trust::KeyId::of(&key.verifying_key());
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let stale: Vec<(u64, u16)> = {
        let mut stmt = tx.prepare("SELECT seq, year, bytes FROM envelopes WHERE seq >= ?1 ORDER BY seq")?;
        let rows = stmt.query_map([from as i64], |r| {
            Ok((r.get::<_, i64>(0)? as u64, r.get::<_, i64>(1)? as u16, r.get::<_, Vec<u8>>(2)?))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (seq, year, bytes) = row?;
            let signer = jianka_shared::changeset::parse(&bytes, jianka_shared::changeset::Limits::default())
                .map(|s| s.header.key_id)
                .with_context(|| format!("stored change set {seq} is unreadable"))?;
            if signer != own || !out.is_empty() {
                // Once one is sealed again, every later one chains to new bytes and is sealed again too.
                out.push((seq, year));
            }
        }
        out
    };
    if stale.is_empty() {
        return Ok(0);
    }
    let mut prev_hash = match stale[0].0 {
        1 => [0; 32],
        s => tx
            .query_row("SELECT hash FROM envelopes WHERE seq = ?1", [(s - 1) as i64], |r| r.get::<_, Vec<u8>>(0))?
            .try_into()
            .map_err(|_| anyhow::anyhow!("corrupt envelope hash"))?,
    };
    let hlc = store::load_hlc(&tx)?;
    for (seq, year) in &stale {
        let ops: Vec<Op> = {
            let mut stmt = tx.prepare("SELECT cid, op FROM changes WHERE seq = ?1 ORDER BY cid")?;
            let rows = stmt.query_map([*seq as i64], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)))?;
            let mut ops = Vec::new();
            for row in rows {
                let (cid, op) = row?;
                ops.push(serde_json::from_str(&op).with_context(|| format!("outbox entry {cid} is corrupt"))?);
            }
            ops
        };
        let draft = Draft { origin: origin.clone(), seq: *seq, prev_hash, year: *year, hlc, ops };
        let bytes = draft.seal(key).context("cannot seal change set")?;
        let hash = envelope_hash(&bytes);
        tx.execute(
            "UPDATE envelopes SET bytes = ?2, hash = ?3, op_count = ?4 WHERE seq = ?1",
            params![*seq as i64, bytes, hash.to_vec(), draft.ops.len() as i64],
        )?;
        prev_hash = hash;
    }
    tx.commit()?;
    Ok(stale.len())
}

/// The last sealed envelope's sequence number and hash (0 and zeros when none).
pub fn last_envelope(conn: &Connection) -> Result<(u64, [u8; 32])> {
    let row = conn
        .query_row("SELECT seq, hash FROM envelopes ORDER BY seq DESC LIMIT 1", [], |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, Vec<u8>>(1)?))
        })
        .optional()?;
    Ok(match row {
        Some((s, h)) => (s as u64, h.try_into().map_err(|_| anyhow::anyhow!("corrupt envelope hash"))?),
        None => (0, [0; 32]),
    })
}

/// Bytes of the sealed envelopes from `seq` on: what a push from there sends.
pub fn bytes_from(conn: &Connection, seq: u64) -> Result<u64> {
    let n: i64 =
        conn.query_row("SELECT COALESCE(SUM(length(bytes)), 0) FROM envelopes WHERE seq >= ?1", [seq as i64], |r| {
            r.get(0)
        })?;
    Ok(n as u64)
}

/// Sequence numbers of envelopes the hub has not acknowledged, in order.
pub fn unacked(conn: &Connection) -> Result<Vec<u64>> {
    let mut stmt = conn.prepare("SELECT seq FROM envelopes WHERE acked_ms IS NULL ORDER BY seq")?;
    let v = stmt.query_map([], |r| r.get::<_, i64>(0))?.collect::<Result<Vec<_>, _>>()?;
    Ok(v.into_iter().map(|s| s as u64).collect())
}

pub fn envelope(conn: &Connection, seq: u64) -> Result<Option<(Vec<u8>, [u8; 32])>> {
    let row = conn
        .query_row("SELECT bytes, hash FROM envelopes WHERE seq = ?1", [seq as i64], |r| {
            Ok((r.get::<_, Vec<u8>>(0)?, r.get::<_, Vec<u8>>(1)?))
        })
        .optional()?;
    row.map(|(b, h)| Ok((b, h.try_into().map_err(|_| anyhow::anyhow!("corrupt envelope hash"))?))).transpose()
}

/// Records the hub's acknowledgement (idempotent: the first one stands).
pub fn mark_acked(conn: &Connection, seq: u64, outcome: &str, now_ms: u64) -> Result<()> {
    conn.execute(
        "UPDATE envelopes SET acked_ms = ?2, outcome = ?3 WHERE seq = ?1 AND acked_ms IS NULL",
        params![seq as i64, now_ms as i64, outcome],
    )?;
    Ok(())
}

/// Marks every envelope below `expected` acknowledged: the hub holds them all.
pub fn mark_acked_below(conn: &Connection, expected: u64, now_ms: u64) -> Result<()> {
    conn.execute(
        "UPDATE envelopes SET acked_ms = ?2, outcome = 'acknowledged (hub expects a later seq)'
         WHERE seq < ?1 AND acked_ms IS NULL",
        params![expected as i64, now_ms as i64],
    )?;
    Ok(())
}
