//! Village quota adjustments (微调): signed statements moving village numbers between counties.

use crate::audit::AuditEntry;
use crate::state::Hub;
use crate::store::QuotaAdjustmentRow;
use anyhow::{Context, bail};
use jianka_shared::{
    RegionCode, Tier,
    trust::{self},
};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

impl Hub {
    /// A prefecture's (or the province's) re-balancing of village quotas between two counties
    /// within their total: signed by this hub's key and audited.
    pub async fn adjust_villages(
        &self,
        from: &RegionCode,
        to: &RegionCode,
        villages: u64,
        reason: &str,
    ) -> anyhow::Result<QuotaAdjustment> {
        if self.region().tier() != Tier::Province {
            bail!("village quotas are re-balanced at the province (filed by the prefecture)");
        }
        for c in [from, to] {
            if c.tier() != Tier::County || !self.region().contains(c) {
                bail!("{c} is not a county of {}", self.region());
            }
        }
        if from.ancestor(Tier::Prefecture) != to.ancestor(Tier::Prefecture) {
            bail!(
                "{from} and {to} are in different prefectures; 微调 moves quota only between counties of one prefecture"
            );
        }
        let current = self.village_quotas().await?;
        let have = current.get(from).copied().unwrap_or(0);
        if villages > have {
            bail!("{from} has a village quota of {have}; cannot move {villages}");
        }
        let adj = QuotaAdjustment {
            from: from.clone(),
            to: to.clone(),
            villages,
            reason: reason.to_string(),
            at: self.clock.now().to_rfc3339(),
            key_id: self.key_id().to_string(),
        };
        let stmt = serde_json::to_string(&adj)?;
        let sig = hex::encode(trust::sign_statement(&self.key, "quota-adjustment", stmt.as_bytes()));
        let (_g, mut tx) = self.begin_write().await?;
        tx.add_quota_adjustment(&stmt, &sig, self.now_secs()).await?;
        self.audit(&mut *tx, &[AuditEntry::new("quota_adjust", format!("{from}->{to}"), have.to_string(), &stmt)])
            .await?;
        tx.commit().await?;
        Ok(adj)
    }

    /// Village quotas per county: the configured ones plus every signed adjustment.
    pub async fn village_quotas(&self) -> anyhow::Result<BTreeMap<RegionCode, u64>> {
        let mut q: BTreeMap<RegionCode, u64> =
            self.quotas.counties.iter().map(|c| (c.county.clone(), c.villages)).collect();
        for QuotaAdjustmentRow { statement: stmt, signature } in self.store.quota_adjustments().await? {
            let sig: [u8; 64] =
                hex::decode(&signature).ok().and_then(|v| v.try_into().ok()).context("stored signature")?;
            if !trust::verify_statement(&self.key.verifying_key(), "quota-adjustment", stmt.as_bytes(), &sig) {
                bail!("a stored quota adjustment does not verify: the table was altered");
            }
            let a: QuotaAdjustment = serde_json::from_str(&stmt)?;
            *q.entry(a.from.clone()).or_default() -= a.villages.min(q.get(&a.from).copied().unwrap_or(0));
            *q.entry(a.to).or_default() += a.villages;
        }
        Ok(q)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuotaAdjustment {
    pub from: RegionCode,
    pub to: RegionCode,
    pub villages: u64,
    pub reason: String,
    pub at: String,
    pub key_id: String,
}
