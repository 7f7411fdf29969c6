//! Step 4 where the township decides (镇级审定, seed 003): each admission the change set carries is
//! held to what 县复审 holds a hand-in to under the national flow — the form's rules against the
//! members that arrived (rule 3: as many member rows as the household says), no open
//! duplicate-person conflict, and the county's ceiling where scale is controlled. The district
//! does not decide: an admission that fails goes back to the status the household held before
//! it, refused naming the rule, and the township hears the household as the district holds it.

use crate::allocation::Ceiling;
use crate::error::HubError;
use crate::ingest::outcome::{IngestOutcome, reject};
use crate::ingest::validate::validate_household;
use crate::merge::FieldState;
use crate::record::{audit_subject, township_of};
use crate::state::Hub;
use crate::store::WriteTx;
use jianka_shared::domain::Status;
use jianka_shared::flow::Flow;
use jianka_shared::protocol::{Feedback, RejectReason};
use jianka_shared::{Hlc, RecordKind, RegionCode};
use std::collections::BTreeMap;
use std::sync::Arc;

impl Hub {
    /// Checks the township's admissions of this change set (see the module's comment), in
    /// household order; the quota they take is written at once.
    pub(crate) async fn check_admissions(
        &self,
        tx: &mut dyn WriteTx,
        hlc: &mut Hlc,
        fx: &mut IngestOutcome,
    ) -> Result<(), HubError> {
        let mut admissions: Vec<_> = std::mem::take(&mut fx.admissions).into_iter().collect();
        if admissions.is_empty() {
            return Ok(());
        }
        admissions.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        let held = fx.held_households();
        let mut own = fx.take_own_members();
        let flow = self.flow(RecordKind::Household);
        let hub_code = self.region().to_string();
        let mut quota_news: BTreeMap<RegionCode, (u64, u64)> = BTreeMap::new();
        for (k, before) in admissions {
            let Some(row) = fx.rows.get(&k).filter(|r| !r.deleted) else { continue };
            // The merge may have kept a newer status than the township's admission.
            if row.field("status").and_then(Status::parse) != Some(Status::CountyAnnounced) {
                continue;
            }
            let Some(township) = township_of(row) else { continue };
            let (year, id) = (row.key.year, row.key.id.clone());
            let verdict = if held.contains(&id) {
                Err((
                    RejectReason::DuplicatePerson,
                    "a member is registered in another household too; an open duplicate-person conflict holds \
                     it until the county decides which household keeps the person"
                        .to_string(),
                ))
            } else {
                let household = (year, id);
                let mut members = fx.stored_members.get(&household).cloned().unwrap_or_default();
                members.extend(own.remove(&household).into_iter().flatten());
                validate_household(row, members).and_then(|n| match self.ceiling(year) {
                    Ceiling::Uncontrolled => Ok(()),
                    Ceiling::Missing(why) => Err((RejectReason::NoAllocation, why)),
                    Ceiling::Allocated(q) => fx.quota.admit(&q, &township, year, n).map(|quota| {
                        quota_news.insert(township.clone(), quota);
                    }),
                })
            };
            if let Err((reason, why)) = verdict {
                let version = self.tick(hlc);
                take_back(fx, &k, (&township, flow), before, (version, &hub_code), reason, &why);
            }
        }
        fx.quota.persist(tx).await?;
        for (township, (people, used)) in quota_news {
            fx.feedback.push((township.to_string(), Feedback::Quota { township, people, used }));
        }
        Ok(())
    }
}

/// The admission of the household under `k` taken back: its status as it was before the change
/// set (or, for a household new in it, the flow's step before the decision), at the district's
/// `version`, audited among the change set's changes, refused to `township` naming `why`, and the
/// household sent back down as the district holds it.
fn take_back(
    fx: &mut IngestOutcome,
    k: &str,
    (township, flow): (&RegionCode, &Flow),
    before: Option<FieldState>,
    (version, hub_code): (Hlc, &str),
    reason: RejectReason,
    why: &str,
) {
    let Some(row) = fx.rows.get_mut(k).map(Arc::make_mut) else { return };
    let back = before.map(|f| f.0.to_string()).unwrap_or_else(|| format!("{:?}", step_before_decision(flow)));
    row.fields.insert("status".into(), FieldState(back.as_str().into(), version.0, hub_code.into()));
    let label = flow.label(Status::CountyAnnounced).to_string();
    let shown = Status::parse(&back).map_or(back.clone(), |s| format!("{} ({s:?})", flow.label(s)));
    let old = [("status", format!("{:?}", Status::CountyAnnounced))];
    let new = [("status", back.clone()), ("not_taken", format!("{label}: {}: {why}", reason.label()))];
    fx.changes.record(&audit_subject(&row.key), &old, &new);
    let key = row.key.clone();
    fx.dirty.push(k.to_string());
    let message = format!("{key}: the township's {label} is not taken: {}: {why}; back at {shown}", reason.label());
    // The refused write, as the quarantine keeps a refusal (the op's other fields stood).
    let refused = format!(r#"{{"status":"{:?}"}}"#, Status::CountyAnnounced);
    reject(fx, township, &key, reason, message, refused);
    // `reject` sends back none of what waits for a decision (a held duplicate, over quota): the
    // status taken back is sent all the same.
    if fx.restore.last().is_none_or(|r| r != k) {
        fx.restore.push(k.to_string());
    }
}

/// The step a household passes through just before the deciding one (镇公告 under seed 003), or
/// 申请 when the flow has none.
fn step_before_decision(flow: &Flow) -> Status {
    let steps = flow.steps();
    steps
        .iter()
        .position(|s| s.status == Status::CountyAnnounced)
        .and_then(|i| i.checked_sub(1))
        .map_or(Status::Applied, |i| steps[i].status)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_step_before_the_township_decision_is_its_notice() {
        let profile: jianka_shared::profile::Profile =
            toml::from_str(include_str!("../../../config/profiles/miyun-2016.toml")).expect("the shipped profile");
        assert_eq!(step_before_decision(&profile.household_flow()), Status::TownshipNotice);
        assert_eq!(step_before_decision(&Flow::national_households(7)), Status::CountyReview);
    }
}
