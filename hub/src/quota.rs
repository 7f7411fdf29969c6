//! The quota ledger (规模控制 at merge time): people recognised per scope (county, township,
//! `villages:<county>`) and year, read once per transaction (locked FOR UPDATE on PostgreSQL),
//! counted in memory, written back once.

use crate::error::HubError;
use crate::store::{Db, get_i64};
use jianka_shared::profile::CountyQuota;
use jianka_shared::protocol::RejectReason;
use jianka_shared::{RegionCode, Year};
use sqlx::{Any, Transaction};
use std::collections::BTreeMap;

/// Quota use counted in memory during one transaction: each scope's stored figure is read (and
/// on PostgreSQL locked) once, admissions are added in memory, and the sums written back once.
#[derive(Default)]
pub(crate) struct QuotaLedger {
    pub(crate) scopes: BTreeMap<(String, Year), (u64, u64)>,
}

impl QuotaLedger {
    pub(crate) async fn used(
        &mut self,
        tx: &mut Transaction<'static, Any>,
        db: &Db,
        scope: &str,
        year: Year,
    ) -> Result<u64, HubError> {
        let key = (scope.to_string(), year);
        if let Some((stored, added)) = self.scopes.get(&key) {
            return Ok(stored + added);
        }
        let stored = quota_used(tx, db, scope, year).await?;
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
    fn cached(&self, scope: &str, year: Year) -> Option<u64> {
        self.scopes.get(&(scope.to_string(), year)).map(|(stored, added)| stored + added)
    }

    pub(crate) fn add(&mut self, scope: &str, year: Year, n: u64) {
        if let Some(e) = self.scopes.get_mut(&(scope.to_string(), year)) {
            e.1 += n;
        }
    }

    pub(crate) async fn persist(self, tx: &mut Transaction<'static, Any>) -> Result<(), HubError> {
        for ((scope, year), (_, added)) in self.scopes {
            if added > 0 {
                quota_add(tx, &scope, year, added as i64).await?;
            }
        }
        Ok(())
    }
}

pub async fn quota_used(tx: &mut Transaction<'static, Any>, db: &Db, scope: &str, year: Year) -> Result<u64, HubError> {
    sqlx::query("INSERT INTO quota_use (scope, year, people) VALUES ($1, $2, 0) ON CONFLICT (scope, year) DO NOTHING")
        .bind(scope)
        .bind(year as i64)
        .execute(&mut **tx)
        .await?;
    let sql = db.dialect.lock_quota_sql().unwrap_or("SELECT people FROM quota_use WHERE scope = $1 AND year = $2");
    let r = sqlx::query(sql).bind(scope).bind(year as i64).fetch_one(&mut **tx).await?;
    Ok(get_i64(&r, 0).max(0) as u64)
}

pub async fn quota_add(tx: &mut Transaction<'static, Any>, scope: &str, year: Year, n: i64) -> Result<(), HubError> {
    sqlx::query("UPDATE quota_use SET people = people + $1 WHERE scope = $2 AND year = $3")
        .bind(n)
        .bind(scope)
        .bind(year as i64)
        .execute(&mut **tx)
        .await?;
    Ok(())
}
