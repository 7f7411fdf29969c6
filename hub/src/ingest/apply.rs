//! Step 3, the merge: each op checked (limits, region, year, authority, references, the
//! record's own rules) and merged field by field into the rows loaded before. Pure: everything
//! it reads is in the [`MergeContext`].

use super::write::write_while;
use crate::error::HubError;
use crate::store::WriteTx;
use chrono::Datelike;

use crate::authority;
use crate::ingest::load::MergeContext;
use crate::ingest::moves::{PendingMove, settled_move};
use crate::ingest::outcome::{IngestOutcome, reject};
use crate::ingest::validate::{check_authority, check_record, check_township_decision};
use crate::merge::{FieldOutcome, FieldState, Fields, Text, merge_field};
use crate::record::{MOVE_OUT, STATUS_PASSED_TO, StoredRecord, audit_subject, key_of, storage_key};
use crate::state::Hub;
use crate::store::NewConflict;
use crate::years;
use jianka_shared::changeset::{FieldWrite, Op};
use jianka_shared::protocol::{RejectReason, YearState};
use jianka_shared::{Hlc, IdNumber, RecordKey, RecordKind, RegionCode, Tier};
use std::sync::Arc;

impl Hub {
    /// Merges `ops` a slice at a time while the database writes the rows of the slice before
    /// that are final after the merge: every kind above a county, and at a county all but the
    /// households and villages its re-examination decides next.
    pub(crate) async fn apply(
        &self,
        tx: &mut dyn WriteTx,
        writer: &RegionCode,
        ops: &[Op],
        mut ctx: MergeContext,
        fx: &mut IngestOutcome,
    ) -> Result<(), HubError> {
        let merge = |fx: &mut IngestOutcome, slice: &[Op]| self.merge_ops(writer, slice, fx, &mut ctx);
        let kinds: &[RecordKind] = match self.region().tier() {
            Tier::County => &[RecordKind::Member, RecordKind::Assistance],
            _ => &RecordKind::ALL,
        };
        // One mark per row written early: sized once, not rehashed as it grows.
        fx.written.reserve(ops.len());
        write_while(tx, fx, kinds, ops.chunks(MERGE_SLICE), merge).await?;
        if let Some(recheck) = ctx.recheck.take() {
            recheck.persist(tx).await?;
        }
        Ok(())
    }

    /// Merges `ops` into `fx` (pure: everything it reads from the database is in `ctx`).
    pub(crate) fn merge_ops(&self, writer: &RegionCode, ops: &[Op], fx: &mut IngestOutcome, ctx: &mut MergeContext) {
        let MergeContext { today, writer_code, states, moves, completed, households, recheck } = ctx;
        let today = *today;
        // Above a county (a province or prefecture) data comes from hubs that enforced their year.
        let province_tier = self.region().tier() != Tier::County;
        for op in ops {
            let key = op.key();
            let k = storage_key(key);
            // Over a size limit: refused before anything else looks at it, and quarantined as a
            // summary (the op itself may be megabytes).
            if let Op::Upsert { fields, .. } = op
                && let Err(msg) = authority::check_limits(key, fields)
            {
                let summary =
                    format!("{} fields, {} bytes", fields.len(), fields.iter().map(|w| w.value.len()).sum::<usize>());
                reject(fx, writer, key, RejectReason::TooLarge, format!("{key}: {msg}"), summary);
                continue;
            }
            // Only a rejected op is kept whole (quarantine), so encode it only then.
            let payload = || serde_json::to_string(op).unwrap_or_default();
            let existing = fx.rows.get(&k).filter(|r| !r.deleted).cloned();
            // The village the record belongs to: from its key, or a member's `village` field.
            let village = match key.kind {
                RecordKind::Member => {
                    op.field("village").map(str::to_string).or_else(|| existing.as_deref().map(|r| r.region.clone()))
                }
                _ => key.village_prefix().map(str::to_string),
            };
            let Some(village) = village.and_then(|v| RegionCode::parse(&v).ok()).filter(|v| v.tier() == Tier::Village)
            else {
                reject(
                    fx,
                    writer,
                    key,
                    RejectReason::FailedValidation,
                    format!("{key}: no valid 12-digit village code"),
                    payload(),
                );
                continue;
            };
            if !writer.contains(&village) {
                reject(
                    fx,
                    writer,
                    key,
                    RejectReason::NotAuthorised,
                    format!("{key} belongs to village {village}, outside {writer}"),
                    payload(),
                );
                continue;
            }
            // The county decides when its townships' year is locked (window, deadline, reopenings)
            // and enforced it before forwarding: the province takes a county's data for the year
            // whenever it comes, and tracks a late county by its sign-off instead.
            let locked = !province_tier
                && states.get(&key.year).is_some_and(|(state, reopened)| {
                    *state == YearState::Locked && !reopened.iter().any(|r| r.contains(&village))
                });
            if locked {
                let who = years::reopen_by(self.region());
                reject(
                    fx,
                    writer,
                    key,
                    RejectReason::YearLocked,
                    format!("year {} is locked; only {who} may reopen it", key.year),
                    payload(),
                );
                continue;
            }
            // A registry year has not begun yet: nothing may be registered in it (a node's clock
            // a little ahead at New Year is allowed for).
            if i32::from(key.year) > (today + chrono::Days::new(2)).year() {
                let msg = format!("{key}: year {} has not begun (today is {today})", key.year);
                reject(fx, writer, key, RejectReason::FailedValidation, msg, payload());
                continue;
            }
            // Past the lock check a year not open is in its update window or reopened here.
            let in_update = states.get(&key.year).is_some_and(|(state, _)| *state != YearState::Open);
            let household_row = |hh: &str| {
                let hk = key_of(RecordKind::Household, key.year, hh);
                fx.rows.get(&hk).or_else(|| households.get(&hk)).map(|r| &**r)
            };
            let admitted_here = |hh: &str| {
                !fx.admissions.is_empty() && fx.admissions.contains_key(&key_of(RecordKind::Household, key.year, hh))
            };
            let moved_from = match check_authority(
                op,
                existing.as_deref(),
                writer,
                (self.flow(key.kind), in_update),
                household_row,
                admitted_here,
            ) {
                Ok(moved_from) => moved_from,
                Err(msg) => {
                    reject(fx, writer, key, RejectReason::NotAuthorised, format!("{key}: {msg}"), payload());
                    continue;
                }
            };
            match check_township_decision(op, existing.as_deref(), writer, self.flow(key.kind), self.profile()) {
                Err((reason, msg)) => {
                    reject(fx, writer, key, reason, format!("{key}: {msg}"), payload());
                    continue;
                }
                // Checked against its members once the whole change set is merged (`admission`).
                Ok(true) => {
                    let before = existing.as_deref().and_then(|r| r.fields.get("status").cloned());
                    fx.admissions.entry(k.clone()).or_insert(before);
                }
                Ok(false) => {}
            }
            if let Some(recheck) = recheck.as_mut()
                && let Err((reason, msg)) = recheck.admit(self.region(), op, existing.as_deref())
            {
                reject(fx, writer, key, reason, format!("{key}: {msg}"), payload());
                continue;
            }
            match op {
                Op::Delete { .. } => {
                    if let Some(ex) = &existing
                        && key.kind == RecordKind::Member
                        && let Some(mv) = moves.remove(&k)
                    {
                        // The departure of a person another county is waiting for: the move completes.
                        self.complete_move(fx, key, ex, mv);
                        continue;
                    }
                    if let Some(ex) = &existing
                        && key.kind == RecordKind::Member
                        && ex.field(MOVE_OUT).is_some()
                    {
                        // Declared as moving to another county that has not sent the arrival yet: the
                        // person stays where they are until it does (never in neither county).
                        fx.changes.record::<&str, _>(&audit_subject(key), &[], &[(MOVE_OUT, "departure held")]);
                        continue;
                    }
                    if let Some(mut row) = existing {
                        let old: Vec<(&str, &str)> = row.fields.iter().map(|(n, f)| (n.as_str(), f.value())).collect();
                        fx.changes.record::<_, &str>(&audit_subject(key), &old, &[]);
                        Arc::make_mut(&mut row).deleted = true;
                        fx.member_records.remove(&k);
                        fx.rows.insert(k.clone(), row);
                        fx.dirty.push(k);
                        fx.applied += 1;
                    }
                }
                Op::Upsert { fields, .. } => {
                    if key.kind == RecordKind::Member {
                        if IdNumber::parse(&key.id, today).is_err() {
                            let msg = IdNumber::parse(&key.id, today).err().map(|e| e.to_string()).unwrap_or_default();
                            let masked = jianka_shared::id_number::mask(&key.id);
                            reject(
                                fx,
                                writer,
                                key,
                                RejectReason::FailedValidation,
                                msg.replace(&key.id, &masked),
                                payload(),
                            );
                            continue;
                        }
                        if province_tier
                            && let Some(ex) = &existing
                            && let Some(w) = fields.iter().find(|w| w.name == "household")
                            && ex.hh != w.value
                            && let Ok(from) = RegionCode::parse(&ex.region)
                            && !writer.contains(&from)
                        {
                            // A person arriving from another county (跨县迁移), which the province completes.
                            let mv = PendingMove {
                                conflict: None,
                                to: writer.clone(),
                                household: w.value.to_string(),
                                proposal: op.clone(),
                            };
                            let holder = from.ancestor(Tier::County).unwrap_or(from);
                            if ex.field(MOVE_OUT) == Some(writer.as_str()) {
                                self.complete_move(fx, key, ex, mv);
                            } else if let Some(why) =
                                settled_move(fx, completed, key, writer, &holder, op.field(MOVE_OUT), &w.value)
                            {
                                // A late copy from the county the person already left (e.g. its
                                // next-year carry): the move is done; nothing changes here.
                                self.settle_late_copy(fx, key, ex, writer, &holder, why);
                            } else {
                                fx.conflicts.push(NewConflict {
                                    kind: "move",
                                    k: k.clone(),
                                    field: "household".into(),
                                    current_value: ex.hh.clone(),
                                    current_by: holder.to_string(),
                                    proposed_value: w.value.to_string(),
                                    proposed_by: writer.to_string(),
                                    proposal: payload(),
                                });
                                let msg = format!(
                                    "{key} is a member of household {} in another county: held as a cross-county move, \
                                     completed by the province when that county records the departure",
                                    ex.hh
                                );
                                reject(fx, writer, key, RejectReason::DuplicatePerson, msg, payload());
                            }
                            continue;
                        }
                        if let Some(ex) = &existing
                            && let Some(w) = fields.iter().find(|w| w.name == "household")
                            && ex.hh != w.value
                            && (w.base == Hlc::ZERO
                                || !writer.contains(&RegionCode::parse(&ex.region).unwrap_or(village.clone())))
                        {
                            fx.conflicts.push(NewConflict {
                                kind: "duplicate_person",
                                k: k.clone(),
                                field: "household".into(),
                                current_value: ex.hh.clone(),
                                current_by: ex.fields.get("household").map(|f| f.2.to_string()).unwrap_or_default(),
                                proposed_value: w.value.to_string(),
                                proposed_by: writer.to_string(),
                                proposal: payload(),
                            });
                            let msg = format!(
                                "{key} is already a member of household {}; held for the county's decision",
                                ex.hh
                            );
                            reject(fx, writer, key, RejectReason::DuplicatePerson, msg, payload());
                            continue;
                        }
                    }
                    if let Some(ex) = &existing
                        && let Ok(r) = RegionCode::parse(&ex.region)
                        && !writer.contains(&r)
                    {
                        reject(
                            fx,
                            writer,
                            key,
                            RejectReason::NotAuthorised,
                            format!("{key} belongs to {r}, outside {writer}"),
                            payload(),
                        );
                        continue;
                    }
                    let mut row = existing.map(Arc::unwrap_or_clone).unwrap_or_else(|| StoredRecord {
                        key: key.clone(),
                        region: village.to_string(),
                        hh: String::new(),
                        fields: Fields::new(),
                        deleted: false,
                    });
                    let mut old: Vec<(&str, Text)> = Vec::new();
                    let mut new: Vec<(&str, &str)> = Vec::with_capacity(fields.len());
                    // A new record whose fields come in name order (as nodes send them) is built as
                    // its sorted vector directly; anything else goes through lookups and inserts.
                    // A household gets room for the county's decision and reason (县复审) now.
                    let room = if key.kind == RecordKind::Household { 2 } else { 0 };
                    let mut fresh = (row.fields.is_empty() && fields.windows(2).all(|p| p[0].name < p[1].name))
                        .then(|| Vec::with_capacity(fields.len() + room));
                    for w in fields {
                        let current = if fresh.is_some() { None } else { row.fields.get(w.name.as_str()) };
                        match merge_field(current, w, writer) {
                            FieldOutcome::Apply => {
                                new.push((&w.name, &w.value));
                                let state = FieldState(w.value.clone(), w.version.0, writer_code.clone());
                                match &mut fresh {
                                    Some(sorted) => sorted.push((w.name.clone(), state)),
                                    None => {
                                        if let Some(prev) = row.fields.insert(w.name.clone(), state) {
                                            old.push((&w.name, prev.0));
                                        }
                                    }
                                }
                            }
                            FieldOutcome::Same | FieldOutcome::Superseded => {}
                            FieldOutcome::Stale { by } => {
                                let msg = format!(
                                    "{key} field {}: edited from an old version; {by} has changed it since",
                                    w.name
                                );
                                reject(fx, writer, key, RejectReason::Stale, msg, field_payload(key, w));
                            }
                            FieldOutcome::NotAuthorised { owner } => {
                                let msg = format!(
                                    "{key} field {} is owned by the {owner}; a {} may not write it",
                                    w.name,
                                    writer.tier()
                                );
                                reject(fx, writer, key, RejectReason::NotAuthorised, msg, field_payload(key, w));
                            }
                            FieldOutcome::Conflict { current } => {
                                fx.conflicts.push(NewConflict {
                                    kind: "field",
                                    k: k.clone(),
                                    field: w.name.to_string(),
                                    current_value: current.0.to_string(),
                                    current_by: current.2.to_string(),
                                    proposed_value: w.value.to_string(),
                                    proposed_by: writer.to_string(),
                                    proposal: field_payload(key, w),
                                });
                                let msg = format!(
                                    "{key} field {}: {} also changed it; held for the tier above",
                                    w.name, current.2
                                );
                                reject(fx, writer, key, RejectReason::Conflict, msg, field_payload(key, w));
                            }
                        }
                    }
                    if let Some(sorted) = fresh {
                        row.fields = Fields::from_sorted_store_unchecked(sorted);
                    }
                    if let Err((reason, msg)) = authority::check_references(key, writer, |n| row.field(n)) {
                        reject(fx, writer, key, reason, format!("{key}: {msg}"), payload());
                        continue;
                    }
                    let checked = match check_record(&row, today) {
                        Ok(checked) => checked,
                        Err(msg) => {
                            reject(fx, writer, key, RejectReason::FailedValidation, format!("{key}: {msg}"), payload());
                            continue;
                        }
                    };
                    if new.is_empty() {
                        continue;
                    }
                    row.deleted = false;
                    row.hh = match key.kind {
                        RecordKind::Member => row.field("household").unwrap_or_default().to_string(),
                        RecordKind::Household => key.id.clone(),
                        RecordKind::Village => String::new(),
                        RecordKind::Assistance => {
                            jianka_shared::assistance::household_of(&key.id).unwrap_or_default().to_string()
                        }
                    };
                    if key.kind == RecordKind::Member {
                        row.region = row.field("village").unwrap_or(&row.region).to_string();
                    }
                    // A record created exactly as sent is audited by the envelope's hash (its bytes
                    // are kept with it); anything else lists its old and new values.
                    if !(old.is_empty() && new.len() == fields.len()) {
                        fx.changes.record(&audit_subject(key), &old, &new);
                    }
                    let departs_to = (key.kind == RecordKind::Member).then(|| row.field(MOVE_OUT)).flatten();
                    if let Some(to) = departs_to
                        && moves.get(&k).is_some_and(|m| m.to.as_str() == to)
                        && let Some(mv) = moves.remove(&k)
                    {
                        // The departure names the county already waiting for this person.
                        self.complete_move(fx, key, &row, mv);
                        continue;
                    }
                    match checked {
                        Some(member) => fx.member_records.insert(k.clone(), member),
                        None => fx.member_records.remove(&k),
                    };
                    fx.rows.insert(k.clone(), Arc::new(row));
                    fx.dirty.push(k);
                    fx.applied += 1;
                    // Accepted: the household this one moved from passes its status on once only.
                    if let Some(old) = moved_from
                        && let Some(mut left) =
                            fx.rows.get(&old).or_else(|| households.get(&old)).map(|r| (**r).clone())
                    {
                        let by = self.region().as_str().into();
                        left.fields
                            .insert(STATUS_PASSED_TO.into(), FieldState(key.id.as_str().into(), fx.move_version, by));
                        fx.rows.insert(old.clone(), Arc::new(left));
                        fx.dirty.push(old);
                    }
                }
            }
        }
    }
}

pub(crate) fn field_payload(key: &RecordKey, w: &FieldWrite) -> String {
    serde_json::to_string(&Op::Upsert { key: key.clone(), fields: vec![w.clone()] }).unwrap_or_default()
}

/// Ops merged per step while the previous step's member rows are written.
const MERGE_SLICE: usize = 1_000;
