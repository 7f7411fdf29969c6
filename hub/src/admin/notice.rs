//! The notice list a hub posts (the county's 县公告, for its portal): the households the deciding
//! tier recognised in a region, each once, with the head's name (the ID number masked), size, main
//! cause and the notice's days from the day of the decision, by village.

use crate::record::{StoredRecord, is_recognised};
use crate::state::Hub;
use anyhow::bail;
use chrono::{NaiveDate, TimeZone};
use jianka_publish::{Listed, NoticeList, NoticeRow, VillageSection};
use jianka_shared::domain::Status;
use jianka_shared::flow::Step;
use jianka_shared::{IdNumber, RecordKind, RegionCode, Tier, Year};
use std::collections::BTreeMap;

/// The day (Asia/Shanghai) a field's version was written.
fn day_of(version: u64) -> Option<NaiveDate> {
    let millis = i64::try_from(jianka_shared::Hlc(version).millis()).ok()?;
    chrono_tz::Asia::Shanghai.timestamp_millis_opt(millis).single().map(|t| t.date_naive())
}

impl Hub {
    /// The notice step `step` of the `kind` flow that is posted at this hub's level, listing what
    /// was recognised, for `region` inside this hub's.
    fn posted_notice(&self, kind: RecordKind, step: &str, region: &RegionCode) -> anyhow::Result<&Step> {
        let here = self.region().tier();
        let found = self.flow(kind).find_notice(step, |s| s.notice.is_some_and(|n| n.posted_at == here));
        let found = found.map_err(|names| {
            let have = if names.is_empty() { "it has none".to_string() } else { names.join(", ") };
            anyhow::anyhow!(
                "{step:?} is not a {kind} notice posted at this hub's level ({here}) in the flow of {}: {have}",
                self.profile_name()
            )
        })?;
        if found.status != Status::CountyAnnounced {
            bail!("{} lists what was recognised; only the decision's notice is posted here", found.name);
        }
        if !self.region().contains(region) {
            bail!("{region} is not a region of {}", self.region());
        }
        Ok(found)
    }

    /// The list of the notice step `step` that this hub posts (a step of the household flow whose
    /// notice is posted at this hub's level), for `region` (this hub's, or one below) and `year`.
    pub async fn notice_list(&self, year: Year, step: &str, region: &RegionCode) -> anyhow::Result<NoticeList> {
        let found = self.posted_notice(RecordKind::Household, step, region)?;
        let days = found.notice.map_or(7, |n| n.days);
        let rows = self.records_in(region, year).await?;
        let live = |r: &&StoredRecord| !r.deleted;
        let mut heads: BTreeMap<&str, (&str, &str)> = BTreeMap::new();
        let mut sizes: BTreeMap<&str, usize> = BTreeMap::new();
        for m in rows.iter().filter(live).filter(|r| r.key.kind == RecordKind::Member) {
            *sizes.entry(m.hh.as_str()).or_default() += 1;
            if m.field("relation") == Some("户主") {
                heads.insert(m.hh.as_str(), (m.field("name").unwrap_or(""), m.key.id.as_str()));
            }
        }
        let names: BTreeMap<&str, &str> = rows
            .iter()
            .filter(live)
            .filter(|r| r.key.kind == RecordKind::Village)
            .map(|v| (v.key.id.as_str(), v.field("name").unwrap_or("")))
            .collect();
        let mut by_village: BTreeMap<String, Vec<NoticeRow>> = BTreeMap::new();
        for h in rows.iter().filter(live).filter(|r| r.key.kind == RecordKind::Household && is_recognised(r)) {
            let Some((name, id)) = heads.get(h.key.id.as_str()) else { continue };
            let Ok(id) = IdNumber::parse(id, self.today()) else { continue };
            // The notice runs from the day of the decision (the decision's field, else the status).
            let decided = h.fields.get("county.decision").or_else(|| h.fields.get("status")).map(|f| f.1);
            let Some(first) = decided.and_then(day_of) else { continue };
            let last = first + chrono::Duration::days(i64::from(days) - 1);
            let village = h.key.id.get(..12).unwrap_or_default().to_string();
            by_village.entry(village).or_default().push(NoticeRow::household(
                h.key.id.clone(),
                (*name, &id),
                sizes.get(h.key.id.as_str()).copied().unwrap_or(0),
                h.field("main_cause").unwrap_or(""),
                (first, last),
            ));
        }
        let cfg = &self.config().notice;
        let office = match self.region().tier() {
            Tier::County => "扶贫开发领导小组",
            _ => "扶贫开发办公室",
        };
        Ok(NoticeList {
            title: format!("{year}年 {} 认定名单 ({})", region, found.name),
            step: found.name.clone(),
            posted_by: cfg.posted_by.clone().unwrap_or_else(|| format!("{} {office}", self.region())),
            objections_to: cfg.objections_to.clone().unwrap_or_else(|| format!("{} 扶贫开发办公室", self.region())),
            of: Listed::Households,
            villages: by_village
                .into_iter()
                .map(|(code, rows)| {
                    let name =
                        names.get(code.as_str()).filter(|n| !n.is_empty()).map_or(code.clone(), |n| n.to_string());
                    VillageSection { code, name, rows }
                })
                .collect(),
        })
    }

    /// The village flow's notice posted at this hub's level (the county's 公告 of its poor
    /// villages): the villages recognised in `region` for `year`, by township, from the day of
    /// the decision.
    pub async fn village_notice_list(&self, year: Year, step: &str, region: &RegionCode) -> anyhow::Result<NoticeList> {
        let found = self.posted_notice(RecordKind::Village, step, region)?;
        let days = found.notice.map_or(7, |n| n.days);
        let mut by_township: BTreeMap<String, Vec<NoticeRow>> = BTreeMap::new();
        for v in self.records_in(region, year).await? {
            let recognised = matches!(
                v.field("status").and_then(Status::parse),
                Some(Status::CountyAnnounced | Status::ProvinceFiled)
            );
            if v.deleted || v.key.kind != RecordKind::Village || !recognised {
                continue;
            }
            let Some(first) = v.fields.get("status").and_then(|f| day_of(f.1)) else { continue };
            let n = |f: &str| v.field(f).and_then(|x| x.parse::<u64>().ok()).unwrap_or(0);
            by_township.entry(v.key.id.get(..9).unwrap_or_default().to_string()).or_default().push(NoticeRow::village(
                (v.key.id.clone(), v.field("name").unwrap_or("").to_string()),
                (n("households"), n("poor_households"), n("population"), n("poor_population")),
                (first, first + chrono::Duration::days(i64::from(days) - 1)),
            ));
        }
        let cfg = &self.config().notice;
        Ok(NoticeList {
            title: format!("{year}年 {region} 贫困村名单 ({})", found.name),
            step: found.name.clone(),
            posted_by: cfg.posted_by.clone().unwrap_or_else(|| format!("{} 扶贫开发领导小组", self.region())),
            objections_to: cfg.objections_to.clone().unwrap_or_else(|| format!("{} 扶贫开发办公室", self.region())),
            of: Listed::Villages,
            villages: by_township
                .into_iter()
                .map(|(code, rows)| VillageSection { name: code.clone(), code, rows })
                .collect(),
        })
    }
}
