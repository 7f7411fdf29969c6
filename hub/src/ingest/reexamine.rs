//! Step 4, 县复审: households and poor villages waiting at county review decided in code order —
//! validation, held duplicates, then the county ceiling and the township allocation.

use crate::allocation::Ceiling;
use crate::authority;
use crate::error::HubError;
use crate::ingest::outcome::{Decision, IngestOutcome};
use crate::ingest::validate::validate_household;
use crate::ingest::write::write_while;
use crate::merge::{FieldState, Text};
use crate::quota::QuotaLedger;
use crate::record::HashSet;
use crate::record::{DECISION_ADMIT, DECISION_REFUSE, township_of};
use crate::state::Hub;
use crate::store::WriteTx;
use jianka_shared::changeset::Op;
use jianka_shared::domain::Status;
use jianka_shared::eligibility::{self, Assessment};
use jianka_shared::profile::CountyQuota;
use jianka_shared::protocol::{Feedback, RejectReason, Rejection};
use jianka_shared::record::{COUNTY_DECISION, COUNTY_REASON};
use jianka_shared::{Hlc, RecordKind, RegionCode, Year};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

impl Hub {
    /// What 县复审 reads, read before the change set's first write so that no read waits for
    /// the writes queued before it: the open duplicate-person conflicts and the quota use of
    /// the county and of the townships of the households `ops` carries.
    pub(crate) async fn read_before_writes(
        &self,
        tx: &mut dyn WriteTx,
        ops: &[Op],
        fx: &mut IngestOutcome,
    ) -> Result<(), HubError> {
        if !ops.iter().any(|o| o.key().kind == RecordKind::Household) {
            return Ok(());
        }
        for c in tx.open_conflicts("duplicate_person").await? {
            fx.held_stored.insert(c.proposed_value);
            fx.held_stored.insert(c.current_value);
        }
        // The ops are not checked yet: only a township of this county is read for (a household
        // anywhere else is refused by the merge), so a change set cannot ask for more than the
        // county's 1,000 possible township codes.
        let county = self.region().as_str();
        let mut ceilings: BTreeMap<Year, Ceiling> = BTreeMap::new();
        let mut scopes: BTreeSet<(String, Year)> = BTreeSet::new();
        for key in ops.iter().map(Op::key).filter(|k| k.kind == RecordKind::Household) {
            let ceiling = ceilings.entry(key.year).or_insert_with(|| self.ceiling(key.year));
            let Ceiling::Allocated(q) = ceiling else { continue };
            scopes.insert((q.county.to_string(), key.year));
            if let Some(township) = key.id.get(..9)
                && township.starts_with(county)
                && township.bytes().all(|b| b.is_ascii_digit())
            {
                scopes.insert((township.to_string(), key.year));
            }
        }
        for (scope, year) in scopes {
            fx.quota.used(tx, &scope, year).await?;
        }
        Ok(())
    }

    /// 县复审 for households waiting at `CountyReview`, in household-id order: validation, held
    /// duplicates, then the county ceiling and the township allocation.
    ///
    /// Everything it needs was read before the writes began (members of all candidate households,
    /// open duplicate-person conflicts, quota use; see [`Hub::read_before_writes`]); quota use is
    /// then counted in memory and written back once. The caller holds the writer lock, and on
    /// PostgreSQL the quota rows are also locked `FOR UPDATE`, so concurrent merges still never
    /// pass a ceiling.
    pub(crate) async fn reexamine(
        &self,
        tx: &mut dyn WriteTx,
        hlc: &mut Hlc,
        households: Vec<String>,
        fx: &mut IngestOutcome,
    ) -> Result<(), HubError> {
        if households.is_empty() {
            return Ok(());
        }
        let mut members = std::mem::take(&mut fx.stored_members);
        let held = fx.held_households();
        // Each year's ceiling, from the allocation in force (held in memory, refreshed before
        // the transaction began).
        let ceilings: BTreeMap<Year, Ceiling> = households
            .iter()
            .filter_map(|k| fx.rows.get(k))
            .map(|r| r.key.year)
            .collect::<BTreeSet<_>>()
            .into_iter()
            .map(|y| (y, self.ceiling(y)))
            .collect();
        // Quota use was read (and on PostgreSQL locked) before the writes began (see
        // `read_before_writes`): the decisions below run while the database writes the households
        // decided before, so they may not query. A scope not read then is read here.
        let mut ledger = std::mem::take(&mut fx.quota);
        let mut scopes: BTreeSet<(String, Year)> = BTreeSet::new();
        for r in households.iter().filter_map(|k| fx.rows.get(k)) {
            if let Some(Ceiling::Allocated(q)) = ceilings.get(&r.key.year) {
                let year = r.key.year;
                if ledger.cached(q.county.as_str(), year).is_none() {
                    scopes.insert((q.county.to_string(), year));
                }
                if let Some(township) = township_of(r).filter(|t| ledger.cached(t.as_str(), year).is_none()) {
                    scopes.insert((township.to_string(), year));
                }
            }
        }
        for (scope, year) in scopes {
            ledger.used(tx, &scope, year).await?;
        }
        let mut own = fx.take_own_members();
        let mut quota_news: BTreeMap<RegionCode, (u64, u64)> = BTreeMap::new();
        let hub_code = self.region().to_string();
        // One version for all of this change set's decisions: they travel and are audited together.
        let version = self.tick(hlc);
        // Households are validated and decided in code order, a slice at a time, while the
        // slice decided before is written.
        let decide = |fx: &mut IngestOutcome, slice: &[String]| {
            for k in slice {
                let Some(hrow) = fx.rows.get(k) else { continue };
                let Some(township) = township_of(hrow) else { continue };
                if held.contains(&hrow.key.id) {
                    continue;
                }
                let year = hrow.key.year;
                let household = (year, hrow.key.id.clone());
                let mut ms = members.remove(&household).unwrap_or_default();
                ms.extend(own.remove(&household).into_iter().flatten());
                // The profile's rules first (income line, exclusions): refused naming the rule.
                let eligible = |n: u64| match self
                    .profile
                    .as_ref()
                    .map(|p| eligibility::assess(p.income_line(), &p.eligibility, |f| hrow.field(f)))
                {
                    None | Some(Assessment::Eligible) => Ok(n),
                    Some(other) => Err((RejectReason::NotEligible, other.describe())),
                };
                let verdict = match (validate_household(hrow, ms).and_then(eligible), ceilings.get(&year)) {
                    (Ok(n), Some(Ceiling::Allocated(q))) => ledger.admit(q, &township, year, n).map(|quota| {
                        quota_news.insert(township.clone(), quota);
                        n
                    }),
                    (Ok(_), Some(Ceiling::Missing(why))) => Err((RejectReason::NoAllocation, why.clone())),
                    (v, _) => v,
                };
                record_decision(fx, k.clone(), &township, &hub_code, version, verdict.map(|_| ()));
            }
        };
        write_while(tx, fx, &[RecordKind::Household], households.chunks(DECIDE_SLICE), decide).await?;
        ledger.persist(tx).await?;
        fx.quota = ledger;
        // The township's quota as it stands after this change set.
        for (township, (people, used)) in quota_news {
            fx.feedback.push((township.to_string(), Feedback::Quota { township, people, used }));
        }
        Ok(())
    }

    /// The county's decision on poor villages (贫困村) waiting at `CountyReview`, in village-code
    /// order: admitted while the county's village ceiling (its allocation in force, which a 微调
    /// replaces) has room, held as 不予认定 (over quota) beyond it. No ceiling without scale
    /// control. Counted like people: read once under the writer lock (FOR UPDATE on PostgreSQL).
    pub(crate) async fn reexamine_villages(
        &self,
        tx: &mut dyn WriteTx,
        hlc: &mut Hlc,
        fx: &mut IngestOutcome,
    ) -> Result<(), HubError> {
        let mut candidates: Vec<String> = fx
            .dirty
            .iter()
            .filter(|k| {
                fx.rows.get(*k).is_some_and(|r| {
                    r.key.kind == RecordKind::Village
                        && !r.deleted
                        && r.field("status").and_then(Status::parse) == Some(Status::CountyReview)
                })
            })
            .cloned()
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        if candidates.is_empty() {
            return Ok(());
        }
        candidates.sort();
        let scope = format!("villages:{}", self.region());
        let mut ledger = QuotaLedger::default();
        let hub_code = self.region().to_string();
        let version = self.tick(hlc);
        for k in candidates {
            let Some(row) = fx.rows.get(&k) else { continue };
            let year = row.key.year;
            let Some(township) = RegionCode::parse(&row.key.id[..9.min(row.key.id.len())]).ok() else { continue };
            let failed = self
                .profile
                .as_ref()
                .and_then(|p| p.village_criteria.as_ref())
                .map(|c| eligibility::village_failures(c, |f| row.field(f)))
                .unwrap_or_default();
            let verdict = match self.ceiling(year) {
                _ if !failed.is_empty() => {
                    Err((RejectReason::NotEligible, format!("not a poor village: {}", failed.join("; "))))
                }
                Ceiling::Uncontrolled => Ok(()),
                Ceiling::Missing(why) => Err((RejectReason::NoAllocation, why)),
                Ceiling::Allocated(CountyQuota { villages: max, .. }) => {
                    let used = ledger.used(tx, &scope, year).await?;
                    if used < max {
                        ledger.add(&scope, year, 1);
                        Ok(())
                    } else {
                        Err((
                            RejectReason::OverQuota,
                            format!(
                                "county {} village ceiling {max} poor villages, {used} already recognised",
                                self.region()
                            ),
                        ))
                    }
                }
            };
            record_decision(fx, k, &township, &hub_code, version, verdict);
        }
        ledger.persist(tx).await?;
        Ok(())
    }
}

/// Writes the county's re-examination decision on one household or village: the decided fields,
/// the decision (sent down to the township as [`Feedback::Decided`] and audited, see
/// [`IngestOutcome::decided`]), and a Rejected item when the county refuses.
pub(crate) fn record_decision(
    fx: &mut IngestOutcome,
    k: String,
    township: &RegionCode,
    hub_code: &str,
    version: Hlc,
    verdict: Result<(), (RejectReason, String)>,
) {
    let Some(row) = fx.rows.get_mut(&k).map(Arc::make_mut) else { return };
    let (status, decision, reason) = match &verdict {
        Ok(()) => (Status::CountyAnnounced, DECISION_ADMIT, String::new()),
        Err((r, m)) => (Status::NotRecognised, DECISION_REFUSE, bounded(format!("{}: {m}", r.label()))),
    };
    let refusal = verdict.as_ref().err().map(|_| reason.clone());
    let decided = [("status", format!("{status:?}")), (COUNTY_DECISION, decision.to_string()), (COUNTY_REASON, reason)];
    let mut before: Vec<(&'static str, Text)> = Vec::new();
    for (field, value) in decided {
        if let Some(prev) = row.fields.insert(field.into(), FieldState(value.into(), version.0, hub_code.into())) {
            before.push((field, prev.0));
        }
    }
    fx.decided.push(Decision { township: township.to_string(), key: row.key.clone(), version, refusal, before });
    if let Err((reason, message)) = verdict {
        let rej = Rejection { key: row.key.clone(), reason, message };
        fx.feedback.push((township.to_string(), Feedback::Rejected(rej.clone())));
        fx.rejected.push(rej);
    }
    fx.dirty.push(k);
}

/// A decision's reason as stored and forwarded: within the limit the tier above checks
/// ([`authority::MAX_DECISION_CHARS`]), cut at a character with "…" when a refusal lists many rules.
pub(crate) fn bounded(reason: String) -> String {
    let max = authority::MAX_DECISION_CHARS - 1;
    match reason.char_indices().nth(max) {
        Some((at, _)) => format!("{}…", &reason[..at]),
        None => reason,
    }
}

/// Households validated and decided per step while the step before is written.
pub(crate) const DECIDE_SLICE: usize = 500;
