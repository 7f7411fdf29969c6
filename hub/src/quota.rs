//! The quota ledger (规模控制 at merge time): people recognised per scope (county, township,
//! `villages:<county>`) and year, read once per transaction (locked FOR UPDATE on PostgreSQL),
//! counted in memory, written back once.

use crate::error::HubError;
use crate::store::WriteTx;
use jianka_shared::profile::CountyQuota;
use jianka_shared::protocol::RejectReason;
use jianka_shared::{RegionCode, Year};
use std::collections::BTreeMap;

/// Quota use counted in memory during one transaction: each scope's stored figure is read (and
/// on PostgreSQL locked) once, admissions are added in memory, and the sums written back once.
#[derive(Default)]
pub(crate) struct QuotaLedger {
    pub(crate) scopes: BTreeMap<(String, Year), (u64, u64)>,
}

impl QuotaLedger {
    pub(crate) async fn used(&mut self, tx: &mut dyn WriteTx, scope: &str, year: Year) -> Result<u64, HubError> {
        let key = (scope.to_string(), year);
        if let Some((stored, added)) = self.scopes.get(&key) {
            return Ok(stored + added);
        }
        let stored = tx.quota_used(scope, year).await?;
        self.scopes.insert(key, (stored, 0));
        Ok(stored)
    }

    /// Admits `n` people of `township` under the county's ceiling and the township's allocation,
    /// both read before with [`QuotaLedger::used`]: the township's allocation and use after, or
    /// why not. A scope not read is refused rather than counted from zero, so a ceiling can never
    /// be passed by a missed read.
    pub(crate) fn admit(
        &mut self,
        q: &CountyQuota,
        township: &RegionCode,
        year: Year,
        n: u64,
    ) -> Result<(u64, u64), (RejectReason, String)> {
        let (Some(county_used), Some(town_used)) =
            (self.cached(q.county.as_str(), year), self.cached(township.as_str(), year))
        else {
            return Err((RejectReason::OverQuota, format!("quota use of {township} for {year} was not read")));
        };
        let town_alloc = q.townships.get(township).copied();
        if county_used + n > q.people {
            return Err((
                RejectReason::OverQuota,
                format!(
                    "county {} ceiling {} people, {county_used} already recognised; this household has {n}",
                    q.county, q.people
                ),
            ));
        }
        if let Some(a) = town_alloc.filter(|a| town_used + n > *a) {
            return Err((
                RejectReason::OverQuota,
                format!(
                    "township {township} allocation {a} people, {town_used} already recognised; this household has {n}"
                ),
            ));
        }
        self.add(q.county.as_str(), year, n);
        self.add(township.as_str(), year, n);
        Ok((town_alloc.unwrap_or(q.people), town_used + n))
    }

    /// Use of a scope already read with [`QuotaLedger::used`]; `None` for one never read.
    pub(crate) fn cached(&self, scope: &str, year: Year) -> Option<u64> {
        self.scopes.get(&(scope.to_string(), year)).map(|(stored, added)| stored + added)
    }

    pub(crate) fn add(&mut self, scope: &str, year: Year, n: u64) {
        if let Some(e) = self.scopes.get_mut(&(scope.to_string(), year)) {
            e.1 += n;
        }
    }

    pub(crate) async fn persist(&mut self, tx: &mut dyn WriteTx) -> Result<(), HubError> {
        for ((scope, year), (stored, added)) in &mut self.scopes {
            if *added > 0 {
                tx.quota_add(scope, *year, *added as i64).await?;
                // Written: a later step of the same ingest counts on from here.
                *stored += std::mem::take(added);
            }
        }
        Ok(())
    }
}
