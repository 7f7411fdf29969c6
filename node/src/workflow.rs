//! The household workflow (domain.md §5) up to handing over to the county: each step in order,
//! the public notices (7 days, or the profile's `notice_days`) enforced by date, objections recorded (an open one stops the notice;
//! once resolved, the notice runs its full length again from the resolution date).

use crate::edit::{load_household, refuse, typed};
use crate::node::Node;
use crate::store::Capture;
use anyhow::Result;
use chrono::NaiveDate;
use jianka_shared::domain::Status;
use jianka_shared::record::{RecordKey, RecordKind};
use jianka_shared::{Tier, Year};
use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;

fn status_of(fields: &std::collections::BTreeMap<String, String>) -> Result<Status> {
    match fields.get("status").and_then(|s| Status::parse(s)) {
        Some(s) => Ok(s),
        None => refuse("household has no readable workflow status"),
    }
}

/// The date the current notice (of `status`) began running: when it was entered, or when its
/// last objection was resolved.
pub fn notice_start(conn: &Connection, year: Year, hid: &str, status: Status) -> Result<Option<NaiveDate>> {
    let entered: Option<String> = conn
        .query_row(
            "SELECT date FROM workflow_events WHERE year = ?1 AND household = ?2 AND to_status = ?3 ORDER BY id DESC LIMIT 1",
            params![year, hid, format!("{status:?}")],
            |r| r.get(0),
        )
        .optional()?;
    let Some(entered) = entered else { return Ok(None) };
    let resolved: Option<String> = conn.query_row(
        "SELECT MAX(resolved_date) FROM objections WHERE year = ?1 AND household = ?2 AND resolved_date >= ?3",
        params![year, hid, entered],
        |r| r.get(0),
    )?;
    let d = resolved.unwrap_or(entered);
    Ok(NaiveDate::parse_from_str(&d, "%Y-%m-%d").ok())
}

#[derive(Debug, Serialize)]
pub struct OpenObjection {
    pub id: i64,
    pub raised_by: String,
    pub reason: String,
    pub raised_date: String,
}

pub fn open_objections(conn: &Connection, year: Year, hid: &str) -> Result<Vec<OpenObjection>> {
    let mut stmt = conn.prepare(
        "SELECT id, raised_by, reason, raised_date FROM objections
         WHERE year = ?1 AND household = ?2 AND resolved_date IS NULL ORDER BY id",
    )?;
    let v = stmt
        .query_map(params![year, hid], |r| {
            Ok(OpenObjection { id: r.get(0)?, raised_by: r.get(1)?, reason: r.get(2)?, raised_date: r.get(3)? })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(v)
}

fn last_event_date(conn: &Connection, year: Year, hid: &str) -> Result<Option<NaiveDate>> {
    let d: Option<String> = conn.query_row(
        "SELECT MAX(date) FROM workflow_events WHERE year = ?1 AND household = ?2",
        params![year, hid],
        |r| r.get(0),
    )?;
    Ok(d.and_then(|d| NaiveDate::parse_from_str(&d, "%Y-%m-%d").ok()))
}

/// Moves a household one step on. Returns (from, to).
pub fn advance(
    node: &mut Node,
    year: Year,
    hid: &str,
    date: NaiveDate,
    minutes: Option<&str>,
    notice_days: i64,
) -> Result<(Status, Status)> {
    let (rec, members) = load_household(&node.conn, year, hid)?;
    let from = status_of(&rec.fields)?;
    let Some((to, tier)) = from.next() else {
        return refuse(format!("household {hid} is at {} ({from:?}); there is no further step", from.label()));
    };
    if tier != Tier::Township {
        return refuse(format!(
            "household {hid} is at {} ({from:?}); the next step ({}) is taken by the {tier}, not the township",
            from.label(),
            to.label()
        ));
    }
    if date > node.clock.today() {
        return refuse(format!("--date {date} is in the future (today is {})", node.clock.today()));
    }
    if let Some(last) = last_event_date(&node.conn, year, hid)?
        && date < last
    {
        return refuse(format!("--date {date} is before the household's last workflow step ({last})"));
    }
    if to == Status::Appraised && minutes.is_none_or(|m| m.trim().is_empty()) {
        return refuse("民主评议 (appraisal) needs the meeting's minutes: --minutes TEXT");
    }
    if from.notice_days().is_some() {
        let open = open_objections(&node.conn, year, hid)?;
        if let Some(o) = open.first() {
            return refuse(format!(
                "the {} of household {hid} is stopped by objection #{} from {} ({}) raised {}; resolve it first \
                 (jianka-node workflow resolve-objection {})",
                from.label(),
                o.id,
                o.raised_by,
                o.reason,
                o.raised_date,
                o.id
            ));
        }
        if let Some(start) = notice_start(&node.conn, year, hid, from)? {
            let ends = start + chrono::Duration::days(notice_days);
            if date < ends {
                return refuse(format!(
                    "the {} of household {hid} began {start} and runs {notice_days} days: it may be left on {ends} at the earliest (date given: {date})",
                    from.label()
                ));
            }
        }
    }
    if to == Status::CountyReview {
        let h = typed(&rec, &members)?;
        let v = h.validate();
        if !v.is_empty() {
            let list: Vec<String> = v.iter().map(|x| x.to_string()).collect();
            return refuse(format!("household {hid} cannot go to the county: {}", list.join("; ")));
        }
    }
    let township = node.township().clone();
    let tx = node.conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let mut cap = Capture::begin(&tx, &township, node.clock)?;
    let key = RecordKey::new(RecordKind::Household, year, hid);
    cap.upsert(&tx, &key, &[("status".to_string(), format!("{to:?}"))].into())?;
    tx.execute(
        "INSERT INTO workflow_events(year, household, from_status, to_status, date, minutes, recorded_ms)
         VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![
            year,
            hid,
            format!("{from:?}"),
            format!("{to:?}"),
            date.to_string(),
            minutes,
            node.clock.millis() as i64
        ],
    )?;
    cap.finish(&tx)?;
    tx.commit()?;
    Ok((from, to))
}

/// What a bulk advance did: households moved, and those refused with the reason.
#[derive(Debug, Default, serde::Serialize)]
pub struct BulkAdvance {
    pub advanced: Vec<(String, Status, Status)>,
    pub refused: Vec<(String, String)>,
}

/// Moves every household of `year` (optionally of one village) that the township still works on
/// one step on, as a village's list goes through appraisal and notices together. Each household is
/// its own transaction; one refused (an open objection, a notice not yet over) does not stop the rest.
pub fn advance_all(
    node: &mut Node,
    year: Year,
    village: Option<&str>,
    date: NaiveDate,
    minutes: Option<&str>,
    notice_days: i64,
) -> Result<BulkAdvance> {
    let ids: Vec<String> = crate::store::records(&node.conn, RecordKind::Household, year)?
        .into_iter()
        .filter(|r| village.is_none_or(|v| r.key.id.starts_with(v)))
        .filter(|r| status_of(&r.fields).is_ok_and(|s| s.next().is_some_and(|(_, tier)| tier == Tier::Township)))
        .map(|r| r.key.id)
        .collect();
    let mut out = BulkAdvance::default();
    for hid in ids {
        match advance(node, year, &hid, date, minutes, notice_days) {
            Ok((from, to)) => out.advanced.push((hid, from, to)),
            Err(e) => out.refused.push((hid, format!("{e:#}"))),
        }
    }
    Ok(out)
}

pub fn object(node: &mut Node, year: Year, hid: &str, by: &str, reason: &str, date: NaiveDate) -> Result<i64> {
    let (rec, _) = load_household(&node.conn, year, hid)?;
    let st = status_of(&rec.fields)?;
    if st.notice_days().is_none() {
        return refuse(format!(
            "household {hid} is at {} ({st:?}); objections are raised during a public notice (村公示 or 乡镇公示)",
            st.label()
        ));
    }
    if by.trim().is_empty() || reason.trim().is_empty() {
        return refuse("an objection needs --by NAME and --reason TEXT");
    }
    node.conn.execute(
        "INSERT INTO objections(year, household, raised_by, reason, raised_date) VALUES(?1, ?2, ?3, ?4, ?5)",
        params![year, hid, by.trim(), reason.trim(), date.to_string()],
    )?;
    Ok(node.conn.last_insert_rowid())
}

pub fn resolve_objection(node: &mut Node, id: i64, resolution: &str, date: NaiveDate) -> Result<()> {
    let row: Option<(String, Option<String>)> = node
        .conn
        .query_row("SELECT raised_date, resolved_date FROM objections WHERE id = ?1", [id], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .optional()?;
    match row {
        None => refuse(format!("no objection #{id}")),
        Some((_, Some(d))) => refuse(format!("objection #{id} was already resolved on {d}")),
        Some((raised, None)) if date.to_string() < raised => {
            refuse(format!("--date {date} is before the objection was raised ({raised})"))
        }
        Some(_) => {
            node.conn.execute(
                "UPDATE objections SET resolved_date = ?2, resolution = ?3 WHERE id = ?1",
                params![id, date.to_string(), resolution],
            )?;
            Ok(())
        }
    }
}
