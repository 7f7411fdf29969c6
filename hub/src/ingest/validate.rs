//! The checks of one op that need stored state (the authority of ARCHITECTURE.md: status
//! transitions, the freeze of decided households, moves inside a township), a record's own
//! rules, and a household's re-examination against its members.

use crate::authority;
use crate::record::{MOVED_FROM, STATUS_PASSED_TO, StoredRecord, key_of};
use jianka_shared::changeset::{FieldWrite, Op};
use jianka_shared::domain::{Household, Member, Status};
use jianka_shared::eligibility::{self, Assessment};
use jianka_shared::flow::Flow;
use jianka_shared::profile::Profile;
use jianka_shared::protocol::RejectReason;
use jianka_shared::record::{DECISION_ADMIT, TOWNSHIP_DECISION, TOWNSHIP_REASON};
use jianka_shared::{RecordKind, RegionCode, Tier};

/// The authority checks of one op that need stored state (ARCHITECTURE.md, "Authority"): the
/// status transition in the profile's `flow` ([`Flow::check_status`]), the freeze of what the county decided (the
/// members of a decided household, the people its quota charge counts, change only in the
/// annual update), and a household
/// moved inside the township keeping its status. `household` finds a household row of the op's
/// year by id (this change set's version first; deleted ones too); `admitted_here` says whether
/// the township admitted that household in this very change set (镇级审定), whose members are
/// then part of the admission, checked with it (`admission`), not changes to a decided
/// household. `Ok(Some(k))`: the op is the arrival of a household moved from the one stored
/// under `k`.
pub(crate) fn check_authority<'r>(
    op: &Op,
    existing: Option<&StoredRecord>,
    writer: &RegionCode,
    (flow, in_update): (&Flow, bool),
    household: impl Fn(&str) -> Option<&'r StoredRecord>,
    admitted_here: impl Fn(&str) -> bool,
) -> Result<Option<String>, String> {
    let key = op.key();
    let tier = writer.tier();
    let status_of = |r: &StoredRecord| r.field("status").and_then(Status::parse);
    let decided = |hh: &str| {
        household(hh).filter(|r| !r.deleted).and_then(status_of).is_some_and(authority::is_decided)
            && !admitted_here(hh)
    };
    let changes = |fields: &[FieldWrite]| {
        fields.iter().any(|w| existing.and_then(|r| r.field(&w.name)) != Some(w.value.as_str()))
    };
    let frozen = tier == Tier::Township && !in_update;
    let refused = |what: &str, hh: &str| {
        Err(format!(
            "{what} household {hh}, which has been decided (认定): its members change only in the annual \
             update (动态调整)"
        ))
    };
    match op {
        Op::Delete { .. } => match (key.kind, existing) {
            (RecordKind::Member, Some(r))
                if frozen && decided(&r.hh) && RegionCode::parse(&r.region).is_ok_and(|v| writer.contains(&v)) =>
            {
                refused("a member of", &r.hh)
            }
            (RecordKind::Household, Some(_)) if frozen && decided(&key.id) => refused("deletes", &key.id),
            _ => Ok(None),
        },
        Op::Upsert { fields, .. } if key.kind == RecordKind::Member => {
            if frozen && changes(fields) {
                // A person held in another region's household is a duplicate for the county to
                // settle (below), not a change to that household.
                let own = existing.filter(|r| RegionCode::parse(&r.region).is_ok_and(|v| writer.contains(&v)));
                let new_hh = fields.iter().find(|w| w.name == "household").map(|w| w.value.as_str());
                if let Some(hh) = own.map(|r| r.hh.as_str()).into_iter().chain(new_hh).find(|hh| decided(hh)) {
                    return refused("a member of", hh);
                }
            }
            Ok(None)
        }
        Op::Upsert { fields, .. } => {
            let from = existing.and_then(status_of);
            let resized = fields
                .iter()
                .any(|w| w.name == "members" && existing.and_then(|r| r.field("members")) != Some(w.value.as_str()));
            if key.kind == RecordKind::Household && frozen && from.is_some_and(authority::is_decided) && resized {
                return refused("changes the size of", &key.id);
            }
            let Some(to) = fields.iter().find(|w| w.name == "status").and_then(|w| Status::parse(&w.value)) else {
                return Ok(None);
            };
            let Err(why) = flow.check_status(tier, from, to, in_update) else { return Ok(None) };
            let moved = fields.iter().find(|w| w.name == MOVED_FROM).map(|w| w.value.as_str());
            let left = moved.and_then(|m| household(m).map(|r| (m, r)));
            match left {
                Some((m, old))
                    if in_update
                        && from.is_none()
                        && key.kind == RecordKind::Household
                        && old.deleted
                        && old.field(STATUS_PASSED_TO).is_none()
                        && status_of(old) == Some(to)
                        && RegionCode::parse(&old.region).is_ok_and(|v| writer.contains(&v)) =>
                {
                    Ok(Some(key_of(RecordKind::Household, key.year, m)))
                }
                _ => Err(why),
            }
        }
    }
}

/// A household's re-examination: the people it brings, or why it is refused.
pub(crate) type Verdict = Result<u64, (RejectReason, String)>;

/// County re-examination of one household against its live members: the
/// number of people it would bring, or why it is refused.
pub(crate) fn validate_household(hrow: &StoredRecord, members: Vec<Result<Member, String>>) -> Verdict {
    let members = members.into_iter().collect::<Result<Vec<_>, _>>();
    match members.and_then(|ms| Household::from_fields(hrow.key.year, |n| hrow.field(n), ms)) {
        Err(e) => Err((RejectReason::FailedValidation, e)),
        Ok(h) => {
            let v = h.validate();
            let count_ok = hrow.field("members").and_then(|m| m.parse::<usize>().ok()) == Some(h.members.len());
            if !v.is_empty() {
                Err((RejectReason::FailedValidation, v.iter().map(|x| x.to_string()).collect::<Vec<_>>().join("; ")))
            } else if !count_ok {
                Err((
                    RejectReason::FailedValidation,
                    format!(
                        "rule 3 (成员): household says {} members but {} member rows arrived",
                        hrow.field("members").unwrap_or("?"),
                        h.members.len()
                    ),
                ))
            } else {
                Ok(h.members.len() as u64)
            }
        }
    }
}

/// Per-record checks that need no other record: closed vocabularies and numbers. A full member
/// form is parsed as a [`Member`], which is returned for re-examination to reuse.
pub(crate) fn check_record(row: &StoredRecord, _today: chrono::NaiveDate) -> Result<Option<Member>, String> {
    use jianka_shared::labels::*;
    let f = |n: &str| row.field(n);
    match row.key.kind {
        RecordKind::Member => {
            // A partial upsert of an existing member is fine; a new one needs the full form.
            if f("name").is_some() {
                return row.to_member().map(Some);
            }
        }
        RecordKind::Household => {
            if let Some(v) = f("attribute") {
                Attribute::parse(v).map_err(|e| e.to_string())?;
            }
            if let Some(v) = f("main_cause") {
                Cause::parse(v).map_err(|e| e.to_string())?;
            }
            for n in ["income", "income_per_capita"] {
                if let Some(v) = f(n) {
                    let y = jianka_shared::Yuan::parse(v).map_err(|e| format!("{n}: {e}"))?;
                    if y.fen() < 0 {
                        return Err(format!("rule 5 ({n}): income may not be negative"));
                    }
                }
            }
            if let Some(v) = f("status") {
                Status::parse(v).ok_or_else(|| format!("status {v:?} is not a workflow step"))?;
            }
        }
        RecordKind::Assistance => {
            if let Some(v) = f("part") {
                jianka_shared::assistance::Part::parse(v)
                    .ok_or_else(|| format!("part {v:?} is not a part of the handbook"))?;
            }
            for n in ["target_income", "amount", "income_after"] {
                if let Some(v) = f(n) {
                    jianka_shared::Yuan::parse(v).map_err(|e| format!("{n}: {e}"))?;
                }
            }
        }
        RecordKind::Village => {
            for n in ["households", "population", "poor_households", "poor_population"] {
                if let Some(v) = f(n) {
                    v.parse::<u32>().map_err(|_| format!("{n} {v:?} is not a whole number"))?;
                }
            }
        }
    }
    Ok(None)
}

/// Where the township decides, its admission (a household put into `recognised`) is held to the
/// profile's rules here: one the rules exclude or leave above the line is refused naming the
/// rule, unless — above the line with spending the profile weighs (酌情纳入) — the township
/// recorded its decision and the reason. `Ok(true)`: the op is such an admission, which the
/// county checks against the household's members once the change set is merged (see
/// `admission`).
pub(crate) fn check_township_decision(
    op: &Op,
    existing: Option<&StoredRecord>,
    writer: &RegionCode,
    flow: &Flow,
    profile: Option<&Profile>,
) -> Result<bool, (RejectReason, String)> {
    let Op::Upsert { fields, .. } = op else { return Ok(false) };
    let status = |v: Option<&str>| v.and_then(Status::parse);
    let merged = |f: &str| {
        fields
            .iter()
            .rev()
            .find(|w| w.name == f)
            .map(|w| w.value.as_str())
            .or_else(|| existing.and_then(|r| r.field(f)))
    };
    let admits = op.key().kind == RecordKind::Household
        && writer.tier() == Tier::Township
        && flow.decides() == Tier::Township
        && status(merged("status")) == Some(Status::CountyAnnounced)
        && status(existing.and_then(|r| r.field("status"))) != Some(Status::CountyAnnounced);
    if !admits {
        return Ok(false);
    }
    let Some(profile) = profile else { return Ok(true) };
    let decided = merged(TOWNSHIP_DECISION) == Some(DECISION_ADMIT)
        && merged(TOWNSHIP_REASON).is_some_and(|r| !r.trim().is_empty());
    match eligibility::assess(profile.income_line(), &profile.eligibility, merged) {
        Assessment::Eligible => Ok(true),
        Assessment::ForDecision { .. } if decided => Ok(true),
        verdict => Err((
            RejectReason::NotEligible,
            format!(
                "the township's {} admits a household the profile {} does not: {}",
                flow.label(Status::CountyAnnounced),
                profile.name,
                verdict.describe()
            ),
        )),
    }
}
