//! Identification standards and scale control as configuration (domain.md §4): a deployment
//! picks a profile file and may change its numbers without a code change.

use crate::eligibility::{Eligibility, VillageCriteria};
use crate::flow::Flow;
use crate::{RegionCode, Yuan};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    /// Short name, e.g. "hubei-2014".
    pub name: String,
    pub description: String,
    /// Households under this per-capita income (yuan per year) qualify.
    pub income_line_yuan: u32,
    /// The year the income line refers to.
    pub income_line_year: u16,
    /// When false ("不分解指标"), there are no ceilings: everyone who qualifies is in.
    pub scale_control: bool,
    /// Expected 贫困发生率 in a poor village, per cent, e.g. [25, 45] for 片区县.
    #[serde(default)]
    pub village_incidence_band: Option<[f64; 2]>,
    /// The public notices' length in days, for the national flows a profile without its own uses.
    #[serde(default = "seven")]
    pub notice_days: u32,
    /// Annual update: household and village data due by this day of January.
    #[serde(default = "jan31")]
    pub household_deadline_day_of_january: u32,
    /// Exclusions and inclusions beyond the income line (seed 003); none in seed 000.
    #[serde(default)]
    pub eligibility: Eligibility,
    /// What makes a poor village (seed 000 一高一低一无, seed 003 the low-income majority).
    #[serde(default)]
    pub village_criteria: Option<VillageCriteria>,
    /// The incidence band of a poor village by county class (seed 000: 片区县 25–45 %, 插花县
    /// 15–30 %); a county's class is its hub config's `county_class`.
    #[serde(default)]
    pub village_incidence_bands: BTreeMap<String, [f64; 2]>,
    /// The steps of the household flow, which tier acts in each and which decides; without it
    /// the 2014 national method (county decides, province files).
    #[serde(default)]
    pub household_flow: Option<Flow>,
    /// The steps of the poor-village flow; without it the 2014 national method.
    #[serde(default)]
    pub village_flow: Option<Flow>,
    /// Whether a township may add exclusion rules of its own (seed 003 "各镇可…制定…具体标准"):
    /// its node config's `[[township_rules]]`, refused at start when the profile does not allow them.
    #[serde(default)]
    pub township_rules: bool,
}

fn seven() -> u32 {
    7
}
fn jan31() -> u32 {
    31
}

impl Profile {
    /// The household flow this profile follows.
    pub fn household_flow(&self) -> Flow {
        self.household_flow.clone().unwrap_or_else(|| Flow::national_households(self.notice_days))
    }

    /// The poor-village flow this profile follows.
    pub fn village_flow(&self) -> Flow {
        self.village_flow.clone().unwrap_or_else(|| Flow::national_villages(self.notice_days))
    }

    pub fn income_line(&self) -> Yuan {
        Yuan::from_yuan(self.income_line_yuan as i64)
    }

    /// Whether a village's incidence lies in the band of its county's class (the class's band,
    /// else the profile's one band); `None` without a band.
    pub fn incidence_in_band(&self, class: Option<&str>, percent: f64) -> Option<bool> {
        let band = class.and_then(|c| self.village_incidence_bands.get(c)).copied().or(self.village_incidence_band);
        band.map(|[lo, hi]| percent >= lo && percent <= hi)
    }
}

/// A county's ceilings (set by the province) and their split to townships (set by the county).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CountyQuota {
    pub county: RegionCode,
    /// People that may be recognised in the county (规模数).
    pub people: u64,
    /// Poor villages that may be recognised in the county.
    pub villages: u64,
    /// Township allocations of `people`; their sum may not exceed it.
    #[serde(default)]
    pub townships: BTreeMap<RegionCode, u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuotaError {
    #[error("township allocations of {county} add up to {sum} people, over the county ceiling of {ceiling}")]
    AllocationsOverCeiling { county: RegionCode, sum: u64, ceiling: u64 },
    #[error("{township} is not a township of {county}")]
    ForeignTownship { county: RegionCode, township: RegionCode },
}

impl CountyQuota {
    pub fn check(&self) -> Result<(), QuotaError> {
        for t in self.townships.keys() {
            if t.parent().as_ref() != Some(&self.county) {
                return Err(QuotaError::ForeignTownship { county: self.county.clone(), township: t.clone() });
            }
        }
        let sum: u64 = self.townships.values().sum();
        if sum > self.people {
            return Err(QuotaError::AllocationsOverCeiling { county: self.county.clone(), sum, ceiling: self.people });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_shipped_profiles_read_and_an_unknown_rule_is_named() {
        for text in [
            include_str!("../../config/profiles/hubei-2014.toml"),
            include_str!("../../config/profiles/miyun-2016.toml"),
        ] {
            let p: Profile = toml::from_str(text).unwrap();
            assert!(p.village_criteria.is_some(), "{}", p.name);
        }
        let miyun: Profile = toml::from_str(include_str!("../../config/profiles/miyun-2016.toml")).unwrap();
        assert_eq!(miyun.eligibility.exclusions.len(), 4);
        let bad = include_str!("../../config/profiles/miyun-2016.toml").replace("\"owns_car\"", "\"owns_boat\"");
        let err = toml::from_str::<Profile>(&bad).unwrap_err().to_string();
        assert!(err.contains("owns_boat") && err.contains("exclusions"), "{err}");
        let bad = format!("unknown_rule = true\n{}", include_str!("../../config/profiles/hubei-2014.toml"));
        let err = toml::from_str::<Profile>(&bad).unwrap_err().to_string();
        assert!(err.contains("unknown_rule"), "{err}");
    }

    #[test]
    fn allocations_may_not_exceed_the_ceiling() {
        let c = RegionCode::parse("420322").unwrap();
        let mut q = CountyQuota { county: c.clone(), people: 100, villages: 3, townships: BTreeMap::new() };
        q.townships.insert(RegionCode::parse("420322105").unwrap(), 60);
        q.townships.insert(RegionCode::parse("420322106").unwrap(), 40);
        assert!(q.check().is_ok());
        q.townships.insert(RegionCode::parse("420322107").unwrap(), 1);
        assert!(matches!(q.check(), Err(QuotaError::AllocationsOverCeiling { sum: 101, .. })));
        q.townships.clear();
        q.townships.insert(RegionCode::parse("420323105").unwrap(), 1);
        assert!(matches!(q.check(), Err(QuotaError::ForeignTownship { .. })));
    }
}
