//! Append-only, hash-chained audit log. Entries are written in the same transaction as the change
//! they describe; each entry's hash covers the previous hash, so editing or deleting any row
//! breaks every later link (`jianka-hub audit verify`). A change set's entry names its envelope's
//! hash and lists the old and new values of the records it changed; the records it created
//! exactly as sent are in the envelope, kept in `envelopes.bytes`, which verify checks too.

use crate::store::{AuditRow, EnvelopeRow, Store, StoreError, WriteTx};
use sha2::{Digest, Sha256};
use std::collections::HashMap;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    pub action: String,
    pub subject: String,
    pub old: String,
    pub new: String,
}

impl AuditEntry {
    pub fn new(action: &str, subject: impl Into<String>, old: impl Into<String>, new: impl Into<String>) -> Self {
        AuditEntry { action: action.into(), subject: subject.into(), old: old.into(), new: new.into() }
    }
}

pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

pub fn entry_hash(prev: &str, seq: i64, at: i64, key_id: &str, e: &AuditEntry) -> String {
    let mut h = Sha256::new();
    for part in [prev, &seq.to_string(), &at.to_string(), key_id, &e.action, &e.subject, &e.old, &e.new] {
        h.update((part.len() as u64).to_le_bytes());
        h.update(part.as_bytes());
    }
    hex::encode(h.finalize())
}

pub async fn append(tx: &mut dyn WriteTx, at: i64, key_id: &str, entries: &[AuditEntry]) -> Result<(), StoreError> {
    append_owned(tx, at, key_id, entries.to_vec()).await
}

/// Appends `entries`, each chained to the one before it.
pub async fn append_owned(
    tx: &mut dyn WriteTx,
    at: i64,
    key_id: &str,
    entries: Vec<AuditEntry>,
) -> Result<(), StoreError> {
    if entries.is_empty() {
        return Ok(());
    }
    let (mut seq, mut prev) = tx.last_audit().await?.unwrap_or((0, GENESIS.to_string()));
    let mut rows = Vec::with_capacity(entries.len());
    for e in entries {
        seq += 1;
        let hash = entry_hash(&prev, seq, at, key_id, &e);
        rows.push(AuditRow {
            seq,
            at,
            key_id: key_id.to_string(),
            action: e.action,
            subject: e.subject,
            old: e.old,
            new: e.new,
            prev_hash: std::mem::replace(&mut prev, hash.clone()),
            hash,
        });
    }
    tx.append_audit(rows).await
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuditCheck {
    Intact { entries: u64, head: String },
    Broken { seq: i64, reason: String },
}

/// Re-computes the whole chain.
pub async fn verify(store: &dyn Store) -> Result<AuditCheck, StoreError> {
    let rows = store.audit_log().await?;
    let mut prev = GENESIS.to_string();
    // Subjects of change-set entries, which name the envelope's hash.
    let mut changesets: HashMap<String, i64> = HashMap::new();
    for (expect_seq, r) in (1i64..).zip(rows.iter()) {
        let seq = r.seq;
        if seq != expect_seq {
            return Ok(AuditCheck::Broken { seq, reason: format!("entry {expect_seq} is missing") });
        }
        let e =
            AuditEntry { action: r.action.clone(), subject: r.subject.clone(), old: r.old.clone(), new: r.new.clone() };
        let (stored_prev, stored) = (r.prev_hash.clone(), r.hash.clone());
        if stored_prev != prev {
            return Ok(AuditCheck::Broken { seq, reason: "does not link to the previous entry".into() });
        }
        if entry_hash(&prev, seq, r.at, &r.key_id, &e) != stored {
            return Ok(AuditCheck::Broken { seq, reason: "contents do not match its hash (altered)".into() });
        }
        if e.action == "changeset" {
            changesets.insert(e.subject, seq);
        }
        prev = stored;
    }
    // The kept envelopes stand for the values of the records they created, so each must still
    // be the bytes its audited hash names.
    for EnvelopeRow { origin, seq, hash, bytes, .. } in store.kept_envelopes().await? {
        let Some(entry) = changesets.get(&format!("{origin}#{seq} envelope {hash}")).copied() else {
            return Ok(AuditCheck::Broken {
                seq: 0,
                reason: format!("envelope {origin}#{seq} has no audit entry naming its hash {hash}"),
            });
        };
        if hex::encode(jianka_shared::changeset::envelope_hash(&bytes)) != hash {
            return Ok(AuditCheck::Broken {
                seq: entry,
                reason: format!("the kept envelope {origin}#{seq} does not match the hash its entry names (altered)"),
            });
        }
    }
    Ok(AuditCheck::Intact { entries: rows.len() as u64, head: prev })
}
