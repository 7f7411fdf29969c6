//! The notice lists a township posts (村公示, 乡镇公示 / 镇公告): the households now at a notice
//! step of the profile's household flow, each with its notice's first and last day, by village;
//! or the villages now at a notice step of its village flow (the 贫困村 乡镇公示); for
//! `jianka-publish` to write as CSV, XLSX or a printable page.

use crate::edit::{load_household, refuse, typed};
use crate::node::Node;
use crate::store;
use crate::workflow::notice_start;
use anyhow::Result;
use jianka_publish::{Listed, NoticeList, NoticeRow, VillageSection};
use jianka_shared::domain::Status;
use jianka_shared::flow::Flow;
use jianka_shared::labels::Relation;
use jianka_shared::{RecordKind, Tier, Year};
use std::collections::BTreeMap;

/// The list of the notice step named `step` (its name in the flow, 村公示, or its status,
/// VillageNotice) for `year`, optionally of one village.
pub fn notice_list(node: &Node, year: Year, step: &str, village: Option<&str>, flow: &Flow) -> Result<NoticeList> {
    let found = match flow.find_notice(step, |s| s.tier == Tier::Township) {
        Ok(found) => found,
        Err(names) => {
            return refuse(format!(
                "{step:?} is not a notice the township posts in this profile's flow ({})",
                names.join(", ")
            ));
        }
    };
    let days = found.notice.map_or(7, |n| n.days);
    let village_names: BTreeMap<String, String> = store::records(&node.conn, RecordKind::Village, year)?
        .into_iter()
        .map(|v| {
            let name = v.fields.get("name").cloned().unwrap_or_default();
            (v.key.id, name)
        })
        .collect();
    let mut by_village: BTreeMap<String, Vec<NoticeRow>> = BTreeMap::new();
    for rec in store::records(&node.conn, RecordKind::Household, year)? {
        let at = rec.fields.get("status").and_then(|s| Status::parse(s));
        if at != Some(found.status) || village.is_some_and(|v| !rec.key.id.starts_with(v)) {
            continue;
        }
        let (rec, members) = load_household(&node.conn, year, &rec.key.id)?;
        let h = typed(&rec, &members)?;
        let Some(head) = h.members.iter().find(|m| m.relation == Relation::Head) else { continue };
        let Some(first) = notice_start(&node.conn, year, &rec.key.id, found.status)? else { continue };
        let last = first + chrono::Duration::days(i64::from(days) - 1);
        by_village.entry(h.village.to_string()).or_default().push(NoticeRow::household(
            rec.key.id.clone(),
            (head.name.clone(), &head.id_number),
            h.members.len(),
            h.main_cause.label(),
            (first, last),
        ));
    }
    let level = found.notice.map_or(Tier::Township, |n| n.posted_at);
    let cfg = &node.cfg.config.notice;
    Ok(NoticeList {
        title: format!("{year}年 拟认定名单 ({})", found.name),
        step: found.name.clone(),
        posted_by: cfg.posted_by.clone().unwrap_or_else(|| match level {
            Tier::Village => "村民委员会".into(),
            _ => format!("{} 乡镇人民政府", node.township()),
        }),
        objections_to: cfg
            .objections_to
            .clone()
            .unwrap_or_else(|| format!("{} 乡镇扶贫工作站 (公示期内书面或当面提出)", node.township())),
        of: Listed::Households,
        villages: by_village
            .into_iter()
            .map(|(code, rows)| {
                let name = village_names.get(&code).filter(|n| !n.is_empty()).cloned().unwrap_or_else(|| code.clone());
                VillageSection { code, name, rows }
            })
            .collect(),
    })
}

/// The list of the village flow's notice step `step` (乡镇公示 of the poor villages) for `year`:
/// the villages now at that step, with their figures and the notice's days, in one section.
pub fn village_notice_list(node: &Node, year: Year, step: &str, flow: &Flow) -> Result<NoticeList> {
    let found = match flow.find_notice(step, |s| s.tier == Tier::Township) {
        Ok(found) => found,
        Err(names) => {
            return refuse(format!(
                "{step:?} is not a notice the township posts in this profile's village flow ({})",
                names.join(", ")
            ));
        }
    };
    let days = found.notice.map_or(7, |n| n.days);
    let mut rows = Vec::new();
    for v in store::records(&node.conn, RecordKind::Village, year)? {
        if v.fields.get("status").and_then(|s| Status::parse(s)) != Some(found.status) {
            continue;
        }
        let Some(first) = notice_start(&node.conn, year, &v.key.id, found.status)? else { continue };
        let n = |f: &str| v.fields.get(f).and_then(|x| x.parse::<u64>().ok()).unwrap_or(0);
        rows.push(NoticeRow::village(
            (v.key.id.clone(), v.fields.get("name").cloned().unwrap_or_default()),
            (n("households"), n("poor_households"), n("population"), n("poor_population")),
            (first, first + chrono::Duration::days(i64::from(days) - 1)),
        ));
    }
    let cfg = &node.cfg.config.notice;
    let township = node.township().to_string();
    Ok(NoticeList {
        title: format!("{year}年 贫困村名单 ({})", found.name),
        step: found.name.clone(),
        posted_by: cfg.posted_by.clone().unwrap_or_else(|| format!("{township} 乡镇人民政府")),
        objections_to: cfg
            .objections_to
            .clone()
            .unwrap_or_else(|| format!("{township} 乡镇扶贫工作站 (公示期内书面或当面提出)")),
        of: Listed::Villages,
        villages: vec![VillageSection { code: township.clone(), name: township, rows }],
    })
}
