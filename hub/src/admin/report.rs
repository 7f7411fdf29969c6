//! `report`: per year, recognised households and people by region, entries and exits, quota use,
//! the scale per child (allocated, admitted, held 不予认定, remaining) and the chain of
//! allocations, villages, sign-offs, and who is late.

use super::signoff::summarise;
use crate::error::HubError;
use crate::record::{StoredRecord, is_recognised};
use crate::state::Hub;
use crate::years;
use jianka_shared::{RecordKind, RegionCode, Tier, Year, domain::Status, protocol::*};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

impl Hub {
    pub async fn report(&self, year: Option<Year>) -> anyhow::Result<Report> {
        let years: Vec<Year> = match year {
            Some(y) => vec![y],
            None => self.store.record_years().await?,
        };
        let child_tier = if self.region().tier() == Tier::County { Tier::Township } else { Tier::County };
        self.refresh_allocations().await?;
        let mut out = Report {
            region: self.region().clone(),
            allocations: self.all_allocations().iter().map(|h| chain_line(&h.chain)).collect(),
            years: vec![],
            signoffs: vec![],
            late: vec![],
            not_yet_delivered: vec![],
        };
        for y in years {
            let rows = self.records_in(self.region(), y).await?;
            let prev = self.records_in(self.region(), y.saturating_sub(1)).await?;
            let mut by_region: BTreeMap<String, SignOffSummary> = BTreeMap::new();
            for r in &rows {
                let region = r.region.get(..child_tier.code_len()).unwrap_or(&r.region).to_string();
                by_region.entry(region).or_default();
            }
            for (region, s) in by_region.iter_mut() {
                let sub: Vec<StoredRecord> =
                    rows.iter().filter(|r| r.region.starts_with(region.as_str())).cloned().collect();
                *s = summarise(&sub, None, 0);
            }
            // One rule at every tier: the annual update describes the year just ended as of 31
            // December, so an entry or an exit recorded in Y's update window is one of Y's.
            let exited =
                |r: &StoredRecord| r.fields.get("status").is_some_and(|s| Status::parse(&s.0) == Some(Status::Exited));
            let ids = |rs: &[StoredRecord], active_only: bool| -> std::collections::BTreeSet<String> {
                rs.iter()
                    .filter(|r| r.key.kind == RecordKind::Household && is_recognised(r))
                    .filter(|r| !(active_only && exited(r)))
                    .map(|r| r.key.id.clone())
                    .collect()
            };
            let (now_ids, prev_active) = (ids(&rows, false), ids(&prev, true));
            let exits = rows.iter().filter(|r| r.key.kind == RecordKind::Household && exited(r)).count() as u64;
            let villages = rows
                .iter()
                .filter(|r| r.key.kind == RecordKind::Village)
                .map(|r| {
                    let num = |n: &str| r.fields.get(n).and_then(|f| f.0.parse::<f64>().ok()).unwrap_or(0.0);
                    let pct =
                        if num("population") > 0.0 { num("poor_population") * 100.0 / num("population") } else { 0.0 };
                    VillageLine {
                        village: r.key.id.clone(),
                        incidence_percent: (pct * 100.0).round() / 100.0,
                        in_band: self
                            .profile
                            .as_ref()
                            .and_then(|p| p.incidence_in_band(self.cfg.county_class.as_deref(), pct)),
                    }
                })
                .collect();
            out.years.push(YearReport {
                year: y,
                state: years::state_str(
                    years::effective_state(&*self.store, y, self.today(), self.profile.as_ref()).await?.0,
                )
                .to_string(),
                total: summarise(&rows, self.ceiling(y).people(), self.quota_in_ledger(y).await?),
                by_region,
                entries: now_ids.difference(&prev_active).count() as u64,
                exits,
                scale: self.scale_lines(y, &rows, child_tier),
                village_ceiling: self.ceiling(y).villages(),
                filed: rows
                    .iter()
                    .filter(|r| r.key.kind == RecordKind::Household)
                    .filter(|r| r.field("status").and_then(Status::parse) == Some(Status::ProvinceFiled))
                    .count() as u64,
                villages,
            });
            // Before the deadline nobody is late yet: those still owing are listed apart.
            if let Ok(due) = self.undelivered(y).await {
                let lines = due.missing.into_iter().map(|(r, m)| format!("{r}: {m}"));
                if due.passed { out.late.extend(lines) } else { out.not_yet_delivered.extend(lines) }
            }
        }
        for r in self.store.signoffs().await? {
            if let Ok(s) = serde_json::from_str::<SignOff>(&r.body) {
                out.signoffs.push(format!(
                    "{} {} {}: {} records, digest {}",
                    s.county,
                    s.year,
                    s.period,
                    s.record_count,
                    &s.digest[..16]
                ));
            }
        }
        Ok(out)
    }
    /// Per child (and the counties a prefecture below filed for): the people allocated for `year`,
    /// admitted (in recognised households), held 不予认定, and what is left of the allocation.
    fn scale_lines(&self, year: Year, rows: &[StoredRecord], child_tier: Tier) -> Vec<ScaleLine> {
        let status: BTreeMap<&str, Option<Status>> = rows
            .iter()
            .filter(|r| r.key.kind == RecordKind::Household)
            .map(|r| {
                let recognised = is_recognised(r).then_some(Status::CountyAnnounced);
                (r.key.id.as_str(), recognised.or_else(|| r.field("status").and_then(Status::parse)))
            })
            .collect();
        // People by child, by prefecture and by county (a prefecture child and the counties it
        // filed for are lines of their own).
        let mut people: BTreeMap<&str, (u64, u64)> = BTreeMap::new();
        for m in rows.iter().filter(|r| r.key.kind == RecordKind::Member) {
            let counted = match status.get(m.hh.as_str()).copied().flatten() {
                Some(Status::CountyAnnounced) => (1, 0),
                Some(Status::NotRecognised) => (0, 1),
                _ => (0, 0),
            };
            let mut prefixes = vec![child_tier.code_len(), Tier::Prefecture.code_len(), Tier::County.code_len()];
            prefixes.sort_unstable();
            prefixes.dedup();
            for len in prefixes {
                let Some(region) = m.region.get(..len) else { continue };
                let e = people.entry(region).or_default();
                e.0 += counted.0;
                e.1 += counted.1;
            }
        }
        let allocated: BTreeMap<String, u64> = match self.ceiling(year) {
            crate::allocation::Ceiling::Allocated(q) => q.townships.iter().map(|(r, n)| (r.to_string(), *n)).collect(),
            _ => self.issued_people(year).into_iter().map(|(r, n)| (r.to_string(), n)).collect(),
        };
        let mut regions: std::collections::BTreeSet<String> =
            people.keys().filter(|r| r.len() == child_tier.code_len()).map(|r| r.to_string()).collect();
        regions.extend(allocated.keys().cloned());
        regions
            .into_iter()
            .map(|region| {
                let (admitted, held) = people.get(region.as_str()).copied().unwrap_or_default();
                let allocated = allocated.get(&region).copied();
                ScaleLine {
                    region,
                    allocated,
                    admitted,
                    held,
                    remaining: allocated.map(|a| a.saturating_sub(admitted)),
                }
            })
            .collect()
    }

    /// People counted against this county's ceiling for `year`, as the merge's quota ledger holds
    /// them (read only; 0 at a hub without re-examination).
    pub async fn quota_in_ledger(&self, year: Year) -> Result<u64, HubError> {
        Ok(self.store.quota_used(self.region().as_str(), year).await?.unwrap_or(0))
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    pub region: RegionCode,
    /// Every allocation this hub holds (its own, issued, filed), each as its chain from the province.
    #[serde(default)]
    pub allocations: Vec<String>,
    pub years: Vec<YearReport>,
    pub signoffs: Vec<String>,
    /// Children that missed a passed deadline.
    pub late: Vec<String>,
    /// Children that still owe a delivery whose deadline has not passed yet.
    #[serde(default)]
    pub not_yet_delivered: Vec<String>,
}

/// One allocation's chain, province first: "42 → 4203: 5000 people, 40 villages (#1); 4203 → 420322: …".
fn chain_line(chain: &[jianka_shared::allocation::SignedAllocation]) -> String {
    chain
        .iter()
        .filter_map(|s| s.read().ok())
        .map(|a| {
            format!(
                "{} → {} for {}: {} people, {} villages (#{})",
                a.issuer, a.region, a.year, a.people, a.villages, a.serial
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// The scale of one child for a year.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ScaleLine {
    pub region: String,
    /// People allocated to it (none: no allocation).
    pub allocated: Option<u64>,
    /// People in its recognised households.
    pub admitted: u64,
    /// People in its households held 不予认定.
    pub held: u64,
    pub remaining: Option<u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct YearReport {
    pub year: Year,
    pub state: String,
    pub total: SignOffSummary,
    pub by_region: BTreeMap<String, SignOffSummary>,
    /// Recognised households of this year not recognised at the end of the previous one (新增),
    /// also those entered in this year's update window.
    pub entries: u64,
    /// Households of this year whose exit (退出) was recorded, in the year or its update window.
    pub exits: u64,
    /// Per child: allocated, admitted, held 不予认定, remaining.
    #[serde(default)]
    pub scale: Vec<ScaleLine>,
    /// The poor villages this county may recognise in the year (its allocation in force).
    #[serde(default)]
    pub village_ceiling: Option<u64>,
    /// Households the province has filed (省备案).
    #[serde(default)]
    pub filed: u64,
    pub villages: Vec<VillageLine>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VillageLine {
    pub village: String,
    pub incidence_percent: f64,
    /// Within the profile's band (None without a band).
    pub in_band: Option<bool>,
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "hub {}", self.region)?;
        for a in &self.allocations {
            writeln!(f, "allocation {a}")?;
        }
        for y in &self.years {
            writeln!(
                f,
                "year {} [{}]: {} households, {} people; entries {}, exits {}; filed 省备案 {}; quota {}/{}{}",
                y.year,
                y.state,
                y.total.households,
                y.total.people,
                y.entries,
                y.exits,
                y.filed,
                y.total.quota_used,
                y.total.quota_people.map(|p| p.to_string()).unwrap_or_else(|| "none".into()),
                y.village_ceiling.map(|v| format!(", {v} poor villages")).unwrap_or_default()
            )?;
            for (r, s) in &y.by_region {
                let causes: Vec<String> = s.by_cause.iter().map(|(c, n)| format!("{c} {n}")).collect();
                writeln!(f, "  {r}: {} households, {} people; {}", s.households, s.people, causes.join(", "))?;
            }
            for s in &y.scale {
                let n = |v: Option<u64>| v.map(|v| v.to_string()).unwrap_or_else(|| "none".into());
                writeln!(
                    f,
                    "  scale {}: allocated {}, admitted {}, held 不予认定 {}, remaining {}",
                    s.region,
                    n(s.allocated),
                    s.admitted,
                    s.held,
                    n(s.remaining)
                )?;
            }
            for v in &y.villages {
                let band = match v.in_band {
                    Some(true) => "in band",
                    Some(false) => "OUTSIDE band",
                    None => "no band",
                };
                writeln!(f, "  village {}: incidence {:.2}% ({band})", v.village, v.incidence_percent)?;
            }
        }
        for s in &self.signoffs {
            writeln!(f, "sign-off {s}")?;
        }
        for l in &self.late {
            writeln!(f, "late: {l}")?;
        }
        for l in &self.not_yet_delivered {
            writeln!(f, "not yet delivered: {l}")?;
        }
        Ok(())
    }
}
