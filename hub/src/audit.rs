//! Append-only, hash-chained audit log. Entries are written in the same transaction as the change
//! they describe; each entry's hash covers the previous hash, so editing or deleting any row
//! breaks every later link (`jianka-hub audit verify`). A change set's entry names its envelope's
//! hash and lists the old and new values of the records it changed; the records it created
//! exactly as sent are in the envelope, kept in `envelopes.bytes`, which verify checks too.

use crate::store::{Db, StoreError, dynamic, is_sqlite, placeholders, rows_per_statement};
use sha2::{Digest, Sha256};
use sqlx::{Any, Row, Transaction};
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

/// Appends entries inside the caller's transaction (the caller holds the hub's writer lock).
pub async fn append(
    tx: &mut Transaction<'static, Any>,
    at: i64,
    key_id: &str,
    entries: &[AuditEntry],
) -> Result<(), StoreError> {
    append_owned(tx, at, key_id, entries.to_vec()).await
}

/// [`append`] taking the entries by value: a change set's old and new texts run to megabytes,
/// and binding moves them into the statement instead of copying them.
pub async fn append_owned(
    tx: &mut Transaction<'static, Any>,
    at: i64,
    key_id: &str,
    entries: Vec<AuditEntry>,
) -> Result<(), StoreError> {
    if entries.is_empty() {
        return Ok(());
    }
    let last = sqlx::query("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1").fetch_optional(&mut **tx).await?;
    let (mut seq, mut prev) = match last {
        Some(r) => (r.try_get::<i64, _>(0)?, r.try_get::<String, _>(1)?),
        None => (0, GENESIS.to_string()),
    };
    let sqlite = is_sqlite(tx);
    let per_statement = rows_per_statement(9);
    let mut entries = entries.into_iter().peekable();
    while entries.peek().is_some() {
        let chunk: Vec<AuditEntry> = entries.by_ref().take(per_statement).collect();
        let sql = format!(
            "INSERT INTO audit (seq, at, key_id, action, subject, old, new, prev_hash, hash) VALUES {}",
            placeholders(sqlite, chunk.len(), 9)
        );
        let mut q = sqlx::query(dynamic(sql));
        for e in chunk {
            seq += 1;
            let hash = entry_hash(&prev, seq, at, key_id, &e);
            q = q
                .bind(seq)
                .bind(at)
                .bind(key_id.to_string())
                .bind(e.action)
                .bind(e.subject)
                .bind(e.old)
                .bind(e.new)
                .bind(std::mem::replace(&mut prev, hash.clone()))
                .bind(hash);
        }
        q.execute(&mut **tx).await?;
    }
    Ok(())
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuditCheck {
    Intact { entries: u64, head: String },
    Broken { seq: i64, reason: String },
}

/// Re-computes the whole chain.
pub async fn verify(db: &Db) -> Result<AuditCheck, StoreError> {
    let rows =
        sqlx::query("SELECT seq, at, key_id, action, subject, old, new, prev_hash, hash FROM audit ORDER BY seq")
            .fetch_all(&db.pool)
            .await?;
    let mut prev = GENESIS.to_string();
    // Subjects of change-set entries, which name the envelope's hash.
    let mut changesets: HashMap<String, i64> = HashMap::new();
    for (expect_seq, r) in (1i64..).zip(rows.iter()) {
        let seq: i64 = r.try_get(0)?;
        if seq != expect_seq {
            return Ok(AuditCheck::Broken { seq, reason: format!("entry {expect_seq} is missing") });
        }
        let e = AuditEntry { action: r.try_get(3)?, subject: r.try_get(4)?, old: r.try_get(5)?, new: r.try_get(6)? };
        let stored_prev: String = r.try_get(7)?;
        let stored: String = r.try_get(8)?;
        if stored_prev != prev {
            return Ok(AuditCheck::Broken { seq, reason: "does not link to the previous entry".into() });
        }
        let key_id: String = r.try_get(2)?;
        if entry_hash(&prev, seq, r.try_get(1)?, &key_id, &e) != stored {
            return Ok(AuditCheck::Broken { seq, reason: "contents do not match its hash (altered)".into() });
        }
        if e.action == "changeset" {
            changesets.insert(e.subject, seq);
        }
        prev = stored;
    }
    // The kept envelopes stand for the values of the records they created, so each must still
    // be the bytes its audited hash names.
    let envelopes =
        sqlx::query("SELECT origin, seq, hash, bytes FROM envelopes WHERE bytes IS NOT NULL ORDER BY origin, seq")
            .fetch_all(&db.pool)
            .await?;
    for r in envelopes {
        let (origin, seq, hash): (String, i64, String) = (r.try_get(0)?, r.try_get(1)?, r.try_get(2)?);
        let bytes: Vec<u8> = r.try_get(3)?;
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
