//! Step 3 (above a county), the re-check: a household a county forwards as newly recognised
//! (县公告) is counted against the allocation this hub issued for that county — or that a
//! prefecture below filed for it — and refused here when it would pass it ("上报规模数超出分解
//! 规模数的不予认定"). The county enforced the same number, so this catches only a county that did
//! not: one whose numbers were raised, or that admitted without an allocation.
//!
//! Counted like the county's own ledger: admissions into 县公告 per county and year (an exit does
//! not give a place back), read before the merge and written back once.

use crate::error::HubError;
use crate::quota::QuotaLedger;
use crate::record::{HashMap, StoredRecord};
use crate::state::Hub;
use crate::store::WriteTx;
use jianka_shared::changeset::{FieldWrite, Op};
use jianka_shared::domain::Status;
use jianka_shared::protocol::RejectReason;
use jianka_shared::{RecordKey, RecordKind, RegionCode, Tier, Year};
use std::collections::BTreeSet;

/// The scope a county's re-checked admissions are counted under.
pub(crate) fn scope(county: &RegionCode) -> String {
    format!("recheck:{county}")
}

/// What the re-check of one change set reads before the merge, and counts during it.
pub(crate) struct Recheck {
    /// Each county's ceiling per year, or why it has none.
    ceilings: HashMap<(RegionCode, Year), Result<u64, String>>,
    ledger: QuotaLedger,
}

impl Hub {
    /// Reads the ceilings and counts the re-check of `ops` needs (none at a county).
    pub(crate) async fn load_recheck(&self, tx: &mut dyn WriteTx, ops: &[Op]) -> Result<Option<Recheck>, HubError> {
        if self.region().tier() == Tier::County {
            return Ok(None);
        }
        let controlled = self.profile.as_ref().is_some_and(|p| p.scale_control);
        let wanted: BTreeSet<(RegionCode, Year)> = ops
            .iter()
            .filter(|o| sets_announced(o).is_some())
            .filter_map(|o| Some((county_of(o.key())?, o.key().year)))
            .collect();
        let mut ceilings = HashMap::default();
        let mut ledger = QuotaLedger::default();
        let mut issued: std::collections::BTreeMap<Year, _> = std::collections::BTreeMap::new();
        for (county, year) in wanted {
            let issued = issued.entry(year).or_insert_with(|| self.issued_people(year));
            let ceiling = match issued.get(&county).copied() {
                Some(n) => Ok(n),
                None if controlled => Err(format!(
                    "{} issued no allocation to county {county} for {year}: under scale control nothing it \
                     recognises is accepted here",
                    self.region()
                )),
                None => continue,
            };
            ledger.used(tx, &scope(&county), year).await?;
            ceilings.insert((county, year), ceiling);
        }
        Ok(Some(Recheck { ceilings, ledger }))
    }
}

impl Recheck {
    /// Counts a household op that recognises a household not recognised here before; refuses
    /// it when the county's allocation has no room.
    pub(crate) fn admit(
        &mut self,
        hub: &RegionCode,
        op: &Op,
        existing: Option<&StoredRecord>,
    ) -> Result<(), (RejectReason, String)> {
        let Some(fields) = sets_announced(op) else { return Ok(()) };
        if existing.and_then(|r| r.field("status")).and_then(Status::parse) == Some(Status::CountyAnnounced) {
            return Ok(()); // counted when it was first recognised here
        }
        let key = op.key();
        let (Some(county), year) = (county_of(key), key.year) else { return Ok(()) };
        let Some(ceiling) = self.ceilings.get(&(county.clone(), year)) else { return Ok(()) };
        let max = ceiling.clone().map_err(|why| (RejectReason::NoAllocation, why))?;
        let members = fields
            .iter()
            .find(|w| w.name == "members")
            .map(|w| w.value.as_str())
            .or_else(|| existing.and_then(|r| r.field("members")))
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
        let scope = scope(&county);
        let used = self.ledger.cached(&scope, year).unwrap_or(u64::MAX);
        if used.saturating_add(members) > max {
            return Err((
                RejectReason::OverQuota,
                format!(
                    "re-checked at {hub}: county {county} was allocated {max} people for {year}, {used} already \
                     recognised; this household has {members}"
                ),
            ));
        }
        self.ledger.add(&scope, year, members);
        Ok(())
    }

    pub(crate) async fn persist(mut self, tx: &mut dyn WriteTx) -> Result<(), HubError> {
        self.ledger.persist(tx).await
    }
}

/// The fields of a household upsert that sets 县公告 (CountyAnnounced).
fn sets_announced(op: &Op) -> Option<&[FieldWrite]> {
    match op {
        Op::Upsert { key, fields } if key.kind == RecordKind::Household => fields
            .iter()
            .any(|w| w.name == "status" && Status::parse(&w.value) == Some(Status::CountyAnnounced))
            .then_some(fields.as_slice()),
        _ => None,
    }
}

fn county_of(key: &RecordKey) -> Option<RegionCode> {
    RegionCode::parse(key.village_prefix()?).ok()?.ancestor(Tier::County)
}
