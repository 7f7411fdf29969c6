//! Step 8, the audit: one hash-chained entry per change set — the envelope's hash, and the old
//! and new values of every record it changed other than by creating it exactly as sent (those
//! are in the envelope, whose bytes are kept) — and one for the county's decisions in it
//! (`decisions_audit`).

use super::envelope::Opened;
use super::outcome::Decision;
use super::outcome::IngestOutcome;
use crate::audit::{self, AuditEntry};
use crate::auth::Sender;
use crate::error::HubError;
use crate::store::WriteTx;
use jianka_shared::{Hlc, RecordKind, Year};
use serde::Serialize;
use std::collections::BTreeMap;

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
    if !fx.decided.is_empty() {
        let (old, new) = decisions_audit(&std::mem::take(&mut fx.decided));
        entries.push(AuditEntry::new("county_decisions", format!("{origin}#{seq}"), old, new));
    }
    audit::append_owned(tx, now, &sender.key_id.to_string(), entries).await?;
    Ok(())
}

/// The `(old, new)` of a change set's decisions entry. `new`: the decisions as they went down
/// (`[{kind, year, version, admitted: [id], refused: [[id, reason]]}]`); `old`: what the decided
/// fields held before, each set of values once with the ids that held it
/// (`[{kind, year, values: {field: value}, ids: [id]}]`) — the facts of one `[subject, {field:
/// value}]` pair per record, in a fraction of the bytes.
fn decisions_audit(decided: &[Decision]) -> (String, String) {
    #[derive(Serialize)]
    struct Made<'a> {
        kind: RecordKind,
        year: Year,
        version: Hlc,
        admitted: Vec<&'a str>,
        refused: Vec<(&'a str, &'a str)>,
    }
    #[derive(Serialize)]
    struct Held<'a> {
        kind: RecordKind,
        year: Year,
        values: BTreeMap<&'a str, &'a str>,
        ids: Vec<&'a str>,
    }
    let mut made: BTreeMap<(RecordKind, Year, Hlc), Made> = BTreeMap::new();
    // The ids that held each set of earlier values, by kind and year.
    type Values<'a> = Vec<(&'a str, &'a str)>;
    let mut held: BTreeMap<(RecordKind, Year, Values), Vec<&str>> = BTreeMap::new();
    for d in decided {
        let (kind, year) = (d.key.kind, d.key.year);
        let m = made.entry((kind, year, d.version)).or_insert_with(|| Made {
            kind,
            year,
            version: d.version,
            admitted: Vec::new(),
            refused: Vec::new(),
        });
        match &d.refusal {
            None => m.admitted.push(&d.key.id),
            Some(why) => m.refused.push((&d.key.id, why)),
        }
        if !d.before.is_empty() {
            let values = d.before.iter().map(|(f, v)| (*f, v.as_str())).collect();
            held.entry((kind, year, values)).or_default().push(&d.key.id);
        }
    }
    let old: Vec<Held> = held
        .into_iter()
        .map(|((kind, year, values), ids)| Held { kind, year, values: values.into_iter().collect(), ids })
        .collect();
    let made: Vec<Made> = made.into_values().collect();
    let old = serde_json::to_string(&old).expect("in-memory encoding");
    (old, serde_json::to_string(&made).expect("in-memory encoding"))
}
