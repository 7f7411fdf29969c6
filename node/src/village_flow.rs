//! The poor-village register's flow (贫困村) as the profile's `village_flow` lists it (the
//! national method: 村申请 → 乡镇审核 → 乡镇公示 → 县审核), each township step taken on a date,
//! a notice left only once it has run; the deciding tier (the county or district) decides.
//! Before a village goes to the county, the profile's village criteria are checked here too, so
//! the township sees "not a poor village: …" before the county says it.

use crate::edit::refuse;
use crate::node::Node;
use crate::store;
use crate::vocabulary;
use crate::workflow::{last_event_date, notice_start, take_step};
use anyhow::Result;
use chrono::NaiveDate;
use jianka_shared::domain::Status;
use jianka_shared::eligibility;
use jianka_shared::flow::Flow;
use jianka_shared::record::{RecordKey, RecordKind};
use jianka_shared::{Tier, Year};

/// Moves village `code` of `year` one step on, on `date`. Returns (from, to).
pub fn advance_village(
    node: &mut Node,
    year: Year,
    code: &str,
    date: NaiveDate,
    flow: &Flow,
) -> Result<(Status, Status)> {
    let key = RecordKey::new(RecordKind::Village, year, code);
    let Some(rec) = store::load(&node.conn, &key)?.filter(|r| !r.deleted) else {
        return refuse(format!(
            "no village {code} in year {year} on this node (`jianka-node village add` or `village import` first)"
        ));
    };
    let Some(from) = rec.get("status").and_then(Status::parse) else {
        return refuse(format!("village {code} has no readable workflow status"));
    };
    let to = match flow.next(from) {
        Some((to, Tier::Township)) => to,
        Some((to, tier)) => {
            return refuse(format!(
                "village {code} is at {}; the next step ({}) is taken by the {tier}, not the township",
                vocabulary::status_in(flow, from),
                vocabulary::status_in(flow, to)
            ));
        }
        None => {
            return refuse(format!(
                "village {code} is at {}; there is no further step",
                vocabulary::status_in(flow, from)
            ));
        }
    };
    let today = node.clock.today();
    if date > today {
        return refuse(format!("--date {date} is in the future (today is {today})"));
    }
    if let Some(last) = last_event_date(&node.conn, year, code)?
        && date < last
    {
        return refuse(format!("--date {date} is before the village's last workflow step ({last})"));
    }
    if let Some(days) = flow.notice_days(from)
        && let Some(began) = notice_start(&node.conn, year, code, from)?
    {
        let until = began + chrono::Duration::days(i64::from(days));
        if date < until {
            return refuse(format!(
                "the {} of village {code} began {began} and runs {days} days: not before {until}",
                flow.label(from)
            ));
        }
    }
    if matches!(to, Status::CountyReview | Status::CountyAnnounced)
        && let Some(profile) = node.cfg.profile()?
        && let Some(criteria) = &profile.village_criteria
    {
        let failed = eligibility::village_failures(criteria, |f| rec.get(f));
        if !failed.is_empty() {
            return refuse(format!(
                "village {code} is not a poor village under the profile {}: {}",
                profile.name,
                failed.join("; ")
            ));
        }
    }
    take_step(node, (RecordKind::Village, year, code), (from, to), date, None, &[])?;
    Ok((from, to))
}
