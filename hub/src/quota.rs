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
    /// By year, then scope: looked up by `&str` without building a key.
    scopes: BTreeMap<Year, BTreeMap<String, (u64, u64)>>,
}

impl QuotaLedger {
    pub(crate) async fn used(&mut self, tx: &mut dyn WriteTx, scope: &str, year: Year) -> Result<u64, HubError> {
        if let Some(n) = self.cached(scope, year) {
            return Ok(n);
        }
        let stored = tx.quota_used(scope, year).await?;
        self.scopes.entry(year).or_default().insert(scope.to_string(), (stored, 0));
        Ok(stored)
    }

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
        self.scopes.get(&year)?.get(scope).map(|(stored, added)| stored + added)
    }

    pub(crate) fn add(&mut self, scope: &str, year: Year, n: u64) {
        if let Some(e) = self.scopes.get_mut(&year).and_then(|s| s.get_mut(scope)) {
            e.1 += n;
        }
    }

    pub(crate) async fn persist(&mut self, tx: &mut dyn WriteTx) -> Result<(), HubError> {
        for (year, scopes) in &mut self.scopes {
            for (scope, (stored, added)) in scopes.iter_mut() {
                if *added > 0 {
                    tx.quota_add(scope, *year, *added as i64).await?;
                    // Written: a later step of the same ingest counts on from here.
                    *stored += std::mem::take(added);
                }
            }
        }
        Ok(())
    }
}
