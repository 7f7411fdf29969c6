//! The household workflow (domain.md §5) as the profile's flow lists it, up to handing over to
//! the deciding tier — or, where the township decides (seed 003's 镇级审定), up to its decision:
//! each step in order, the public notices of the flow enforced by date, objections recorded (an
//! open one stops the notice; once resolved, the notice runs its full length again from the
//! resolution date).

use crate::edit::{load_household, refuse, typed};
use crate::node::Node;
use crate::store::Capture;
use crate::vocabulary;
use anyhow::Result;
use chrono::NaiveDate;
use jianka_shared::domain::Status;
use jianka_shared::eligibility::{self, Assessment};
use jianka_shared::flow::Flow;
use jianka_shared::record::{DECISION_ADMIT, DECISION_REFUSE};
use jianka_shared::record::{RecordKey, RecordKind};
pub use jianka_shared::record::{TOWNSHIP_DECISION, TOWNSHIP_REASON};
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

pub(crate) fn last_event_date(conn: &Connection, year: Year, hid: &str) -> Result<Option<NaiveDate>> {
    let d: Option<String> = conn.query_row(
        "SELECT MAX(date) FROM workflow_events WHERE year = ?1 AND household = ?2",
        params![year, hid],
        |r| r.get(0),
    )?;
    Ok(d.and_then(|d| NaiveDate::parse_from_str(&d, "%Y-%m-%d").ok()))
}

/// Why a household may not take its next step now. A bulk advance groups households by it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Holdup {
    /// The household's status has no further step, or the next one is another tier's.
    NotTheTownships { at: Status, next: Option<(Status, Tier)> },
    /// 民主评议 records the representatives' meeting: `--minutes` is needed.
    NeedsMinutes,
    /// A public notice still runs: it may be left on `until` at the earliest.
    NoticeRunning { at: Status, began: NaiveDate, days: i64, until: NaiveDate },
    /// An objection raised during the notice stands until it is resolved.
    OpenObjection { at: Status, id: i64, raised_by: String, reason: String, raised: String },
    /// `--date` is after today.
    DateInFuture { today: NaiveDate },
    /// `--date` is before the household's last workflow step.
    DateBeforeLastStep { last: NaiveDate },
    /// The household breaks a rule of domain.md §3 and cannot go to the county.
    BreaksRules { problems: Vec<String> },
    /// The profile's rules do not admit it (income line, an exclusion): it is not appraised.
    NotEligible { assessment: String, profile: String },
    /// Above the line with spending the profile weighs (酌情纳入): only the township's recorded
    /// decision (`workflow decide`) admits it, where the township decides.
    ForDecision { assessment: String },
}

impl Holdup {
    /// The refusal for one household, as `workflow advance HOUSEHOLD` prints it.
    pub fn message(&self, hid: &str, date: NaiveDate, flow: &Flow) -> String {
        match self {
            Holdup::NotTheTownships { at, next: None } => {
                format!("household {hid} is at {}; there is no further step", vocabulary::status_in(flow, *at))
            }
            Holdup::NotTheTownships { at, next: Some((to, tier)) } => format!(
                "household {hid} is at {}; the next step ({}) is taken by the {tier}, not the township",
                vocabulary::status_in(flow, *at),
                vocabulary::status_in(flow, *to)
            ),
            Holdup::NeedsMinutes => format!(
                "{} needs the minutes of the village representatives' meeting: --minutes TEXT",
                vocabulary::status(Status::Appraised)
            ),
            Holdup::NoticeRunning { at, began, days, until } => format!(
                "the {} of household {hid} began {began} and runs {days} days: it may be left on {until} at the earliest (date given: {date})",
                vocabulary::status_in(flow, *at)
            ),
            Holdup::OpenObjection { at, id, raised_by, reason, raised } => format!(
                "the {} of household {hid} is stopped by objection #{id} from {raised_by} ({reason}) raised {raised}; \
                 resolve it first (jianka-node workflow resolve-objection {id})",
                vocabulary::status_in(flow, *at)
            ),
            Holdup::DateInFuture { today } => format!("--date {date} is in the future (today is {today})"),
            Holdup::DateBeforeLastStep { last } => {
                format!("--date {date} is before the household's last workflow step ({last})")
            }
            Holdup::BreaksRules { problems } => {
                format!("household {hid} cannot be handed in or decided: {}", problems.join("; "))
            }
            Holdup::NotEligible { assessment, profile } => {
                format!("household {hid} is {assessment} under the profile {profile}; it is not appraised")
            }
            Holdup::ForDecision { assessment } => format!(
                "household {hid}: {assessment}; only a recorded decision admits it (酌情纳入): \
                 jianka-node workflow decide {hid} --admit --reason TEXT (or --refuse)"
            ),
        }
    }

    /// The reason shared by a group of households, as `workflow advance --all` prints it.
    pub fn group(&self, date: NaiveDate, flow: &Flow) -> String {
        match self {
            Holdup::NotTheTownships { at, next: None } => {
                format!("at {}: there is no further step", vocabulary::status_in(flow, *at))
            }
            Holdup::NotTheTownships { at, next: Some((to, tier)) } => format!(
                "at {}: the next step, {}, is taken by the {tier}, not the township",
                vocabulary::status_in(flow, *at),
                vocabulary::status_in(flow, *to)
            ),
            Holdup::NeedsMinutes => format!(
                "next step {}: give the meeting's minutes with --minutes TEXT",
                vocabulary::status(Status::Appraised)
            ),
            Holdup::NoticeRunning { at, until, .. } => format!(
                "in the {} until {until}: the notice may be left on {until} at the earliest (date given: {date})",
                vocabulary::status_in(flow, *at)
            ),
            Holdup::OpenObjection { at, .. } => format!(
                "in the {} with an open objection: resolve it first (jianka-node workflow show HOUSEHOLD names it)",
                vocabulary::status_in(flow, *at)
            ),
            Holdup::DateInFuture { today } => format!("--date {date} is in the future (today is {today})"),
            Holdup::DateBeforeLastStep { .. } => {
                format!("their last workflow step is after --date {date}; give a later date")
            }
            Holdup::BreaksRules { .. } => {
                "they break a rule and cannot be handed in or decided (see each below)".into()
            }
            Holdup::NotEligible { assessment, profile } => format!("{assessment} (profile {profile})"),
            Holdup::ForDecision { .. } => {
                "above the line with spending the profile weighs: decide each (jianka-node workflow decide)".into()
            }
        }
    }
}

/// The step a household at `from` may take on `date`, or why it may not.
fn check_step(
    node: &Node,
    year: Year,
    hid: &str,
    from: Status,
    date: NaiveDate,
    minutes: Option<&str>,
    flow: &Flow,
) -> Result<std::result::Result<Status, Holdup>> {
    let to = match flow.next(from) {
        Some((to, Tier::Township)) => to,
        next => return Ok(Err(Holdup::NotTheTownships { at: from, next })),
    };
    let today = node.clock.today();
    if date > today {
        return Ok(Err(Holdup::DateInFuture { today }));
    }
    if let Some(last) = last_event_date(&node.conn, year, hid)?
        && date < last
    {
        return Ok(Err(Holdup::DateBeforeLastStep { last }));
    }
    // The township sees the profile's verdict before the household enters the workflow; the
    // deciding tier applies the same rules (and decides what is left to its judgement, 酌情纳入).
    // Where the township decides, taking the decision step admits only what the rules admit.
    if matches!(to, Status::Appraised | Status::CountyAnnounced)
        && let Some(profile) = node.cfg.profile()?
    {
        let (rec, _) = load_household(&node.conn, year, hid)?;
        let verdict =
            eligibility::assess(profile.income_line(), &profile.eligibility, |f| rec.fields.get(f).map(String::as_str));
        match verdict {
            Assessment::Excluded { .. } | Assessment::NotEligible { .. } => {
                return Ok(Err(Holdup::NotEligible { assessment: verdict.describe(), profile: profile.name }));
            }
            Assessment::ForDecision { .. } if to == Status::CountyAnnounced => {
                return Ok(Err(Holdup::ForDecision { assessment: verdict.describe() }));
            }
            _ => {}
        }
    }
    if to == Status::Appraised && minutes.is_none_or(|m| m.trim().is_empty()) {
        return Ok(Err(Holdup::NeedsMinutes));
    }
    if let Some(days) = flow.notice_days(from) {
        if let Some(o) = open_objections(&node.conn, year, hid)?.into_iter().next() {
            return Ok(Err(Holdup::OpenObjection {
                at: from,
                id: o.id,
                raised_by: o.raised_by,
                reason: o.reason,
                raised: o.raised_date,
            }));
        }
        if let Some(began) = notice_start(&node.conn, year, hid, from)? {
            let until = began + chrono::Duration::days(i64::from(days));
            if date < until {
                return Ok(Err(Holdup::NoticeRunning { at: from, began, days: i64::from(days), until }));
            }
        }
    }
    if matches!(to, Status::CountyReview | Status::CountyAnnounced) {
        let (rec, members) = load_household(&node.conn, year, hid)?;
        let problems: Vec<String> = typed(&rec, &members)?.validate().iter().map(|x| x.to_string()).collect();
        if !problems.is_empty() {
            return Ok(Err(Holdup::BreaksRules { problems }));
        }
    }
    Ok(Ok(to))
}

/// Writes the step of a household (or, with `kind`, a village), with the fields that record a
/// decision, and its history row in one transaction.
pub(crate) fn take_step(
    node: &mut Node,
    (kind, year, hid): (RecordKind, Year, &str),
    (from, to): (Status, Status),
    date: NaiveDate,
    minutes: Option<&str>,
    decision: &[(String, String)],
) -> Result<()> {
    let township = node.township().clone();
    let tx = node.conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let mut cap = Capture::begin(&tx, &township, node.clock)?;
    let key = RecordKey::new(kind, year, hid);
    let mut fields: std::collections::BTreeMap<String, String> = decision.iter().cloned().collect();
    fields.insert("status".to_string(), format!("{to:?}"));
    cap.upsert(&tx, &key, &fields)?;
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
    Ok(())
}

/// Moves a household one step on. Returns (from, to).
pub fn advance(
    node: &mut Node,
    year: Year,
    hid: &str,
    date: NaiveDate,
    minutes: Option<&str>,
    flow: &Flow,
) -> Result<(Status, Status)> {
    let (rec, _) = load_household(&node.conn, year, hid)?;
    let from = status_of(&rec.fields)?;
    match check_step(node, year, hid, from, date, minutes, flow)? {
        Ok(to) => {
            take_step(node, (RecordKind::Household, year, hid), (from, to), date, minutes, &admitted_by_rules(to))?;
            Ok((from, to))
        }
        Err(holdup) => refuse(holdup.message(hid, date, flow)),
    }
}

/// The decision fields of a step into `recognised` that the rules alone admit (the township's
/// 镇级审定 of an eligible household).
fn admitted_by_rules(to: Status) -> Vec<(String, String)> {
    if to != Status::CountyAnnounced {
        return Vec::new();
    }
    vec![(TOWNSHIP_DECISION.into(), DECISION_ADMIT.into()), (TOWNSHIP_REASON.into(), "符合认定标准".into())]
}

/// The township decides one household by hand (seed 003's 镇级审定), for `reason`: admits one
/// the rules leave to the deciding tier (酌情纳入) or one the rules admit, or refuses it
/// (不予认定). Only where the profile's flow has the township decide, and only at the step before
/// the decision (or for a household refused before).
pub fn decide(
    node: &mut Node,
    year: Year,
    hid: &str,
    admit: bool,
    reason: &str,
    date: NaiveDate,
    flow: &Flow,
) -> Result<(Status, Status)> {
    if flow.decides() != Tier::Township {
        return refuse(format!(
            "under this profile the {} decides ({}); the township hands households in",
            flow.decides(),
            flow.label(Status::CountyAnnounced)
        ));
    }
    let reason = reason.trim();
    if reason.is_empty() {
        return refuse("a decision needs its reason: --reason TEXT");
    }
    let (rec, members) = load_household(&node.conn, year, hid)?;
    let from = status_of(&rec.fields)?;
    let before = flow.steps().iter().position(|s| s.status == Status::CountyAnnounced).and_then(|i| i.checked_sub(1));
    let waiting = before.map(|i| flow.steps()[i].status);
    if Some(from) != waiting && from != Status::NotRecognised {
        return refuse(format!(
            "household {hid} is at {}; a household is decided at {} (or again once refused)",
            vocabulary::status_in(flow, from),
            waiting.map_or_else(|| "the step before the decision".into(), |s| vocabulary::status_in(flow, s))
        ));
    }
    if admit {
        if let Some(profile) = node.cfg.profile()? {
            let verdict = eligibility::assess(profile.income_line(), &profile.eligibility, |f| {
                rec.fields.get(f).map(String::as_str)
            });
            if matches!(verdict, Assessment::Excluded { .. } | Assessment::NotEligible { .. }) {
                return refuse(format!(
                    "household {hid} cannot be admitted: {} under the profile {}",
                    verdict.describe(),
                    profile.name
                ));
            }
        }
        let problems: Vec<String> = typed(&rec, &members)?.validate().iter().map(|x| x.to_string()).collect();
        if !problems.is_empty() {
            return refuse(format!("household {hid} cannot be admitted: {}", problems.join("; ")));
        }
    }
    let today = node.clock.today();
    if date > today {
        return refuse(format!("--date {date} is in the future (today is {today})"));
    }
    let (to, decision) =
        if admit { (Status::CountyAnnounced, DECISION_ADMIT) } else { (Status::NotRecognised, DECISION_REFUSE) };
    let fields =
        [(TOWNSHIP_DECISION.to_string(), decision.to_string()), (TOWNSHIP_REASON.to_string(), reason.to_string())];
    take_step(node, (RecordKind::Household, year, hid), (from, to), date, Some(reason), &fields)?;
    Ok((from, to))
}

/// What a bulk advance did: households moved, and those not moved with the reason.
#[derive(Debug, Default, serde::Serialize)]
pub struct BulkAdvance {
    /// Households of the year (or village) looked at.
    pub households: usize,
    pub advanced: Vec<(String, Status, Status)>,
    /// Households not moved, with the refusal as `workflow advance HOUSEHOLD` would print it.
    pub refused: Vec<(String, String)>,
    /// The households not moved, grouped by reason, in the order the reasons first came up.
    pub not_moved: Vec<NotMoved>,
}

#[derive(Debug, serde::Serialize)]
pub struct NotMoved {
    /// The shared reason, as printed.
    pub reason: String,
    pub holdup: Holdup,
    pub households: Vec<String>,
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
    flow: &Flow,
) -> Result<BulkAdvance> {
    let households: Vec<(String, std::result::Result<Status, String>)> =
        crate::store::records(&node.conn, RecordKind::Household, year)?
            .into_iter()
            .filter(|r| village.is_none_or(|v| r.key.id.starts_with(v)))
            .map(|r| {
                let st = status_of(&r.fields).map_err(|e| format!("{e:#}"));
                (r.key.id, st)
            })
            .collect();
    let mut out = BulkAdvance { households: households.len(), ..Default::default() };
    for (hid, from) in households {
        let from = match from {
            Ok(s) => s,
            Err(why) => {
                out.refused.push((hid, why));
                continue;
            }
        };
        match check_step(node, year, &hid, from, date, minutes, flow)? {
            Ok(to) => {
                take_step(
                    node,
                    (RecordKind::Household, year, &hid),
                    (from, to),
                    date,
                    minutes,
                    &admitted_by_rules(to),
                )?;
                out.advanced.push((hid, from, to));
            }
            Err(holdup) => {
                out.refused.push((hid.clone(), holdup.message(&hid, date, flow)));
                // Notices ending on different dates are different groups; objections of one notice are one.
                let same = |h: &Holdup| match (h, &holdup) {
                    (Holdup::OpenObjection { at: a, .. }, Holdup::OpenObjection { at: b, .. }) => a == b,
                    (Holdup::NoticeRunning { at: a, until: x, .. }, Holdup::NoticeRunning { at: b, until: y, .. }) => {
                        a == b && x == y
                    }
                    (Holdup::BreaksRules { .. }, Holdup::BreaksRules { .. }) => true,
                    (Holdup::NotEligible { assessment: a, .. }, Holdup::NotEligible { assessment: b, .. }) => a == b,
                    (Holdup::DateBeforeLastStep { .. }, Holdup::DateBeforeLastStep { .. }) => true,
                    (a, b) => a == b,
                };
                match out.not_moved.iter_mut().find(|g| same(&g.holdup)) {
                    Some(g) => g.households.push(hid),
                    None => {
                        out.not_moved.push(NotMoved { reason: holdup.group(date, flow), holdup, households: vec![hid] })
                    }
                }
            }
        }
    }
    Ok(out)
}

pub fn object(
    node: &mut Node,
    year: Year,
    hid: &str,
    (by, reason): (&str, &str),
    date: NaiveDate,
    flow: &Flow,
) -> Result<i64> {
    let (rec, _) = load_household(&node.conn, year, hid)?;
    let st = status_of(&rec.fields)?;
    // The township takes objections to the notices it posts (the village's and its own).
    let township_notice = |s: Status| flow.step(s).is_some_and(|x| x.notice.is_some() && x.tier == Tier::Township);
    if !township_notice(st) {
        let notices: Vec<String> = flow
            .steps()
            .iter()
            .filter(|x| township_notice(x.status))
            .map(|x| vocabulary::status_in(flow, x.status))
            .collect();
        return refuse(format!(
            "household {hid} is at {}; objections are raised during a public notice ({})",
            vocabulary::status_in(flow, st),
            notices.join(" or ")
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
