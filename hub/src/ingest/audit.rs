//! Step 8, the audit: one hash-chained entry per change set — the envelope's hash, and the old
//! and new values of every record it changed other than by creating it exactly as sent (those
//! are in the envelope, whose bytes are kept) — and one for the county's decisions in it.

use super::envelope::Opened;
use super::outcome::IngestOutcome;
use crate::audit::{self, AuditEntry};
use crate::auth::Sender;
use crate::error::HubError;
use crate::store::WriteTx;

pub(super) async fn audit_changeset(
    tx: &mut dyn WriteTx,
    now: i64,
    sender: &Sender,
    opened: &Opened,
    fx: &mut IngestOutcome,
) -> Result<(), HubError> {
    let (origin, seq) = (&sender.region, opened.header.seq);
    let subject = format!("{origin}#{seq} envelope {}", opened.hash);
    let (old, new) = std::mem::take(&mut fx.changes).finish();
    let mut entries = vec![AuditEntry::new("changeset", subject, old, new)];
    if !fx.decisions.is_empty() {
        let (old, new) = std::mem::take(&mut fx.decisions).finish();
        entries.push(AuditEntry::new("county_decisions", format!("{origin}#{seq}"), old, new));
    }
    audit::append_owned(tx, now, &sender.key_id.to_string(), entries).await?;
    Ok(())
}
