//! Cross-county moves (跨县迁移) at the province: an arrival held until the county the person
//! leaves records the departure, then completed in one transaction; late copies settled.

use crate::error::HubError;
use crate::ingest::outcome::IngestOutcome;
use crate::merge::{FieldState, Fields};
use crate::record::{HashMap, HashSet};
use crate::record::{MOVE_OUT, StoredRecord, audit_subject, storage_key};
use crate::state::Hub;
use crate::store::WriteTx;
use jianka_shared::changeset::Op;
use jianka_shared::protocol::{ErrorCode, Feedback};
use jianka_shared::{RecordKey, RecordKind, RegionCode, Tier};
use std::sync::Arc;

impl Hub {
    /// Completes a cross-county move in this change set's transaction: the person's record is
    /// replaced by the arriving county's, so at every commit they belong to exactly one county.
    pub(crate) fn complete_move(&self, fx: &mut IngestOutcome, key: &RecordKey, from: &StoredRecord, mv: PendingMove) {
        let Op::Upsert { fields, .. } = &mv.proposal else { return };
        let version = fx.move_version;
        let mut fields_new = Fields::new();
        for w in fields {
            fields_new.insert(
                w.name.as_str().into(),
                FieldState(w.value.as_str().into(), w.version.0.max(version), mv.to.as_str().into()),
            );
        }
        let village = fields_new.get("village").map(|f| f.0.to_string()).unwrap_or_default();
        let row = StoredRecord {
            key: key.clone(),
            region: village,
            hh: mv.household.clone(),
            fields: fields_new,
            deleted: false,
        };
        let old: Vec<(&str, &str)> = from.fields.iter().map(|(n, f)| (n.as_str(), f.value())).collect();
        let new: Vec<(&str, &str)> = row.fields.iter().map(|(n, f)| (n.as_str(), f.value())).collect();
        fx.changes.record(&format!("move {}", audit_subject(key)), &old, &new);
        let from_county = RegionCode::parse(&from.region)
            .ok()
            .and_then(|r| r.ancestor(Tier::County))
            .map(|c| c.to_string())
            .unwrap_or_default();
        let note = format!("cross-county move {from_county} → {} completed by the province", mv.to);
        for to in [from_county.clone(), mv.to.to_string()] {
            fx.feedback.push((
                to,
                Feedback::Resolved {
                    key: key.clone(),
                    field: "household".into(),
                    value: mv.household.clone(),
                    note: note.clone(),
                },
            ));
        }
        if let Some(id) = mv.conflict {
            fx.resolved.push((id, format!("{} — {note}", mv.household)));
        }
        fx.completed_moves.push(CompletedMove {
            id: key.id.clone(),
            year: key.year,
            from_county: from_county.clone(),
            to_county: mv.to.to_string(),
            from_household: from.hh.clone(),
        });
        tracing::info!(key = %key, from = %from_county, to = %mv.to, "cross-county move completed");
        let k = storage_key(key);
        fx.member_records.remove(&k);
        fx.rows.insert(k.clone(), Arc::new(row));
        fx.dirty.push(k);
        fx.applied += 1;
    }

    /// Accepts a late copy of a moved person from the county they left as already settled: the
    /// person stays with `holder`; audited, and the writer is told where the person is, so its
    /// stale copy goes the way a completed move's departure does.
    pub(crate) fn settle_late_copy(
        &self,
        fx: &mut IngestOutcome,
        key: &RecordKey,
        ex: &StoredRecord,
        writer: &RegionCode,
        holder: &RegionCode,
        why: &str,
    ) {
        let note = format!("cross-county move {writer} → {holder} already completed ({why}); late copy settled");
        fx.changes.record::<&str, _>(
            &format!("move settled {}", audit_subject(key)),
            &[],
            &[(MOVE_OUT, note.as_str())],
        );
        fx.feedback.push((
            writer.to_string(),
            Feedback::Resolved { key: key.clone(), field: "household".into(), value: ex.hh.clone(), note },
        ));
        tracing::info!(key = %key, from = %writer, to = %holder, "late copy of a completed move settled");
    }
}

/// A cross-county arrival held at the province until the departure side catches up.
pub(crate) struct PendingMove {
    pub(crate) conflict: Option<i64>,
    pub(crate) to: RegionCode,
    pub(crate) household: String,
    pub(crate) proposal: Op,
}

/// A cross-county move the province completed, as the store keeps it.
pub(crate) use crate::store::CompletedMoveRow as CompletedMove;

/// Whether a member copy from `writer` for a person `holder` now holds is a settled move rather
/// than a new one, and why: the copy itself names `holder` in `move_out`, or it is a stale copy
/// (the household the person left) of a move from `writer` to `holder` completed this year or
/// the year before (a New Year carry).
pub(crate) fn settled_move(
    fx: &IngestOutcome,
    completed: &HashMap<String, Vec<CompletedMove>>,
    key: &RecordKey,
    writer: &RegionCode,
    holder: &RegionCode,
    move_out: Option<&str>,
    household: &str,
) -> Option<&'static str> {
    if move_out == Some(holder.as_str()) {
        return Some("the copy names the county in move_out");
    }
    let same = |m: &CompletedMove| {
        (m.year == key.year || m.year + 1 == key.year)
            && m.from_county == writer.as_str()
            && m.to_county == holder.as_str()
            && m.from_household == household
    };
    if fx.completed_moves.iter().any(|m| m.id == key.id && same(m)) {
        return Some("stale copy");
    }
    // The latest completed move of this person up to this year decides (a later genuine return
    // is a newer move).
    let latest = completed.get(&key.id).and_then(|ms| ms.iter().find(|m| m.year <= key.year));
    latest.filter(|m| same(m)).map(|_| "stale copy")
}

/// Moves the province completed earlier for the people in `ops`, by person id, latest first.
pub(crate) async fn completed_moves_of(
    tx: &mut dyn WriteTx,
    ops: &[Op],
) -> Result<HashMap<String, Vec<CompletedMove>>, HubError> {
    let ids: Vec<&str> = {
        let mut seen = HashSet::default();
        ops.iter()
            .map(Op::key)
            .filter(|k| k.kind == RecordKind::Member && seen.insert(k.id.as_str()))
            .map(|k| k.id.as_str())
            .collect()
    };
    let ids: Vec<String> = ids.into_iter().map(str::to_string).collect();
    let mut out: HashMap<String, Vec<CompletedMove>> = HashMap::default();
    for m in tx.completed_moves(&ids).await? {
        out.entry(m.id.clone()).or_default().push(m);
    }
    Ok(out)
}

/// Open cross-county moves for the members this change set touches.
pub(crate) async fn pending_moves(tx: &mut dyn WriteTx, ops: &[Op]) -> Result<HashMap<String, PendingMove>, HubError> {
    let mut out = HashMap::default();
    if !ops.iter().any(|o| o.key().kind == RecordKind::Member) {
        return Ok(out);
    }
    // Open moves are few; read them all rather than bind thousands of keys.
    let open = tx.open_conflicts("move").await?;
    if open.is_empty() {
        return Ok(out);
    }
    let keys: HashSet<String> =
        ops.iter().filter(|o| o.key().kind == RecordKind::Member).map(|o| storage_key(o.key())).collect();
    for c in open {
        if !keys.contains(&c.k) || out.contains_key(&c.k) {
            continue;
        }
        let to = RegionCode::parse(&c.proposed_by)
            .map_err(|e| HubError::new(ErrorCode::Internal, format!("stored move unreadable: {e}")))?;
        let proposal: Op = serde_json::from_str(&c.proposal)
            .map_err(|e| HubError::new(ErrorCode::Internal, format!("stored move proposal unreadable: {e}")))?;
        out.insert(c.k, PendingMove { conflict: Some(c.id), to, household: c.proposed_value, proposal });
    }
    Ok(out)
}
