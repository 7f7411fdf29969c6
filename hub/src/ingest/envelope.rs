//! Step 1, the envelope: parse, origin, signature and size (no lock, no database), then the
//! sender's sequence as this hub holds it: fresh, a duplicate, a gap, an equivocation or a
//! broken chain.

use crate::audit::{self, AuditEntry};
use crate::auth::Sender;
use crate::error::HubError;
use crate::state::Hub;
use crate::store::{StreamState, WriteTx};
use jianka_shared::Hlc;
use jianka_shared::changeset::{self, ChangeSet, ChangeSetError, Header, Op};
use jianka_shared::protocol::ErrorCode;

/// Operations one change set may carry (the node cuts at 20,000 by default).
pub const MAX_OPS_PER_CHANGESET: usize = 100_000;

/// A change set verified as the sender's and decoded.
pub(crate) struct Opened {
    pub(crate) header: Header,
    /// Hex of the envelope's hash (what the sender's next envelope chains to).
    pub(crate) hash: String,
    pub(crate) changeset: ChangeSet,
}

/// Where an envelope stands in its sender's stream.
pub(crate) enum Sequence {
    /// The next one expected, chained to the last: to be applied.
    Fresh,
    /// Already applied (the same bytes).
    Duplicate,
    /// Beyond the next expected.
    Gap { expected: u64 },
    /// Already applied, with different bytes under the same number.
    Equivocation { stored_hash: Option<String> },
    /// The next number, but not chained to the last one applied.
    BrokenChain { last_hash: String },
}

/// Parses, authenticates and decodes `bytes` from `sender`: CPU work that needs no database,
/// done before the writer lock is taken.
pub(crate) fn open(hub: &Hub, sender: &Sender, bytes: &[u8]) -> Result<Opened, HubError> {
    let limits = hub.limits();
    let sealed = changeset::parse(bytes, limits).map_err(cs_error)?;
    if sealed.header.origin != sender.region {
        return Err(HubError::new(
            ErrorCode::OutsideRegion,
            format!("change set claims origin {} but was sent with the key of {}", sealed.header.origin, sender.region),
        ));
    }
    let verified = sealed.verify(&sender.key).map_err(|e| HubError::new(ErrorCode::BadSignature, e.to_string()))?;
    let header = verified.header().clone();
    if header.op_count as usize > MAX_OPS_PER_CHANGESET {
        return Err(HubError::new(
            ErrorCode::TooLarge,
            format!(
                "change set #{} declares {} operations, over the {MAX_OPS_PER_CHANGESET} limit; cut it smaller \
                 (sync.max_ops_per_changeset)",
                header.seq, header.op_count
            ),
        ));
    }
    if header.seq == 0 {
        return Err(HubError::new(ErrorCode::Malformed, "change-set seq starts at 1"));
    }
    let hash = hex::encode(changeset::envelope_hash(bytes));
    let changeset = verified.open(limits).map_err(cs_error)?;
    Ok(Opened { header, hash, changeset })
}

/// Where `opened` stands in the stream of `origin`, read in `tx`.
pub(crate) async fn sequence(tx: &mut dyn WriteTx, origin: &str, opened: &Opened) -> Result<Sequence, HubError> {
    let seq = opened.header.seq;
    let StreamState { next_seq, last_hash } = tx.stream(origin).await?.unwrap_or_else(StreamState::new);
    if seq < next_seq {
        let stored = tx.envelope_hash(origin, seq).await?;
        return Ok(match stored.as_deref() == Some(opened.hash.as_str()) {
            true => Sequence::Duplicate,
            false => Sequence::Equivocation { stored_hash: stored },
        });
    }
    if seq > next_seq {
        return Ok(Sequence::Gap { expected: next_seq });
    }
    if hex::encode(opened.header.prev_hash) != last_hash {
        return Ok(Sequence::BrokenChain { last_hash });
    }
    Ok(Sequence::Fresh)
}

impl Hub {
    /// Records an equivocation (flags the sender's key, audited) and commits it: the error the
    /// sender gets.
    pub(crate) async fn record_equivocation(
        &self,
        mut tx: Box<dyn WriteTx>,
        sender: &Sender,
        opened: &Opened,
        stored_hash: Option<String>,
    ) -> Result<HubError, HubError> {
        let origin = sender.region.to_string();
        let seq = opened.header.seq;
        let stored_hash = stored_hash.unwrap_or_default();
        tx.record_equivocation(&origin, seq, &stored_hash, &opened.hash, self.now_secs()).await?;
        tx.set_equivocating(&sender.key_id.to_string(), true).await?;
        audit::append(
            &mut *tx,
            self.now_secs(),
            &sender.key_id.to_string(),
            &[AuditEntry::new("equivocation", format!("{origin}#{seq}"), "", &opened.hash)],
        )
        .await?;
        tx.commit().await?;
        tracing::warn!(%origin, seq, "equivocation: same seq, different content; node flagged");
        Ok(HubError::new(
            ErrorCode::Equivocation,
            format!("{origin} already sent a different change set #{seq}; the node is flagged for the county officer"),
        ))
    }
}

/// The error a change set that cannot be read or verified gets.
pub fn cs_error(e: ChangeSetError) -> HubError {
    match e {
        ChangeSetError::TooLarge { .. } | ChangeSetError::BodyTooLarge { .. } => {
            HubError::new(ErrorCode::TooLarge, e.to_string())
        }
        ChangeSetError::BadSignature(_) | ChangeSetError::KeyMismatch { .. } => {
            HubError::new(ErrorCode::BadSignature, e.to_string())
        }
        _ => HubError::new(ErrorCode::Malformed, e.to_string()),
    }
}

/// The newest version any op of a change set carries (the hub's clock observes it). One pass
/// over every field, without a list per op.
pub(crate) fn newest_version(ops: &[Op]) -> Option<Hlc> {
    ops.iter()
        .filter_map(|op| match op {
            Op::Upsert { fields, .. } => fields.iter().map(|f| f.version).max(),
            Op::Delete { version, .. } => Some(*version),
        })
        .max()
}
