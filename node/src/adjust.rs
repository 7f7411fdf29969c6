//! Adjustments of the annual update (动态调整, domain.md §5–6): exits, deaths, births, marriages,
//! moves and new entries, accepted only while the year's update window is open (or reopened).
//! Each is an ordinary captured edit plus a local log line saying what happened and why.

use crate::edit::{load_household, refuse, rewrite, typed};
use crate::import::write_household;
use crate::node::Node;
use crate::store::{self, Capture};
use anyhow::Result;
use chrono::NaiveDate;
use jianka_shared::domain::{Household, Status, household_id};
use jianka_shared::protocol::YearState;
use jianka_shared::record::{RecordKey, RecordKind};
use jianka_shared::{IdNumber, RegionCode, Tier, Year};
use rusqlite::params;

/// The year adjustments go to: `--year`, else the one year whose update window is open.
pub fn window_year(node: &Node, given: Option<Year>) -> Result<Year> {
    let open: Vec<Year> = {
        let mut stmt =
            node.conn.prepare("SELECT year FROM cycle WHERE state IN ('update_window', 'reopened') ORDER BY year")?;
        stmt.query_map([], |r| r.get::<_, i64>(0))?
            .collect::<Result<Vec<_>, _>>()?
            .into_iter()
            .map(|y| y as Year)
            .collect()
    };
    let year = match (given, open.as_slice()) {
        (Some(y), _) => y,
        (None, [y]) => *y,
        (None, []) => {
            // A clerk typing an adjustment after the window closed needs to hear that the year is
            // locked and who may reopen it, not only that no window is open.
            let last_locked: Option<i64> = node
                .conn
                .query_row("SELECT max(year) FROM cycle WHERE state = 'locked'", [], |r| r.get(0))
                .unwrap_or(None);
            if let Some(y) = last_locked {
                return locked_refusal(node, y as Year);
            }
            return refuse(
                "no update window is open: adjustments (动态调整) are entered only during the annual update, \
                 which the county opens at New Year (the node learns it at its next sync)",
            );
        }
        (None, many) => return refuse(format!("update windows are open for years {many:?}; choose one with --year")),
    };
    let (state, _, _) = store::effective_year_state(&node.conn, year, node.clock.today())?;
    match state {
        YearState::UpdateWindow | YearState::Reopened => Ok(year),
        YearState::Locked => locked_refusal(node, year),
        YearState::Open => refuse(format!(
            "year {year} has no open update window; adjustments are entered only during the annual update"
        )),
    }
}

fn locked_refusal<T>(node: &Node, year: Year) -> Result<T> {
    let (_, deadline, reopen_by) = store::year_state(&node.conn, year)?;
    refuse(format!(
        "year {year} is locked (the update window closed{}); a reopening must be granted by {}",
        deadline.map(|d| format!(" after {d}")).unwrap_or_default(),
        reopen_by.unwrap_or_else(|| format!(
            "the county ({})",
            node.township().ancestor(Tier::County).map(|c| c.to_string()).unwrap_or_default()
        ))
    ))
}

fn log(node: &Node, year: Year, kind: &str, subject: &str, reason: &str, date: NaiveDate, detail: &str) -> Result<()> {
    node.conn.execute(
        "INSERT INTO adjustments(year, kind, subject, reason, date, detail, recorded_ms) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![year, kind, subject, reason, date.to_string(), detail, node.clock.millis() as i64],
    )?;
    Ok(())
}

fn set_fields(node: &mut Node, key: &RecordKey, fields: &[(&str, String)]) -> Result<usize> {
    let township = node.township().clone();
    let tx = node.conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let mut cap = Capture::begin(&tx, &township, node.clock)?;
    let n = cap.upsert(&tx, key, &fields.iter().map(|(k, v)| (k.to_string(), v.clone())).collect())?;
    cap.finish(&tx)?;
    tx.commit()?;
    Ok(n)
}

/// 脱贫 / 退出: the household leaves the registry for the stated reason.
pub fn exit(node: &mut Node, year: Year, hid: &str, reason: &str, date: NaiveDate) -> Result<()> {
    let (rec, _) = load_household(&node.conn, year, hid)?;
    if rec.fields.get("status").and_then(|s| Status::parse(s)) == Some(Status::Exited) {
        return refuse(format!("household {hid} has already exited"));
    }
    let key = rec.key.clone();
    set_fields(
        node,
        &key,
        &[
            ("status", format!("{:?}", Status::Exited)),
            ("exit_reason", reason.to_string()),
            ("exit_date", date.to_string()),
        ],
    )?;
    log(node, year, "exit", hid, reason, date, "")
}

/// Facts of a household updated in the annual update (e.g. the year's income), logged as such.
pub fn update(node: &mut Node, year: Year, hid: &str, sets: &[String], date: NaiveDate) -> Result<usize> {
    let n = crate::edit::household_update(node, year, hid, sets)?;
    let fields: Vec<&str> = sets.iter().filter_map(|s| s.split_once('=').map(|(k, _)| k)).collect();
    log(node, year, "update", hid, "年度更新", date, &fields.join(","))?;
    Ok(n)
}

fn member_household(node: &Node, year: Year, id: &IdNumber) -> Result<String> {
    let s = store::load(&node.conn, &RecordKey::new(RecordKind::Member, year, id.as_str()))?.filter(|s| !s.deleted);
    match s.and_then(|s| s.get("household").map(str::to_string)) {
        Some(h) => Ok(h),
        None => refuse(format!("{} is not registered in year {year} on this node", id.masked())),
    }
}

/// A death: the member leaves the household (the head's death needs a new 户主 first).
pub fn death(node: &mut Node, year: Year, id: &str, date: NaiveDate) -> Result<()> {
    let id = IdNumber::parse_stored(id).map_err(|e| crate::edit::Refused(e.to_string()))?;
    let hid = member_household(node, year, &id)?;
    let (rec, members) = load_household(&node.conn, year, &hid)?;
    let mut h = typed(&rec, &members)?;
    h.members.retain(|m| m.id_number != id);
    if h.members.is_empty() {
        return refuse(format!(
            "{} is the household's only member: record the household's exit instead (adjust exit {hid} --reason 死亡)",
            id.masked()
        ));
    }
    rewrite(node, &mut h, true)?;
    log(node, year, "death", id.as_str(), "死亡", date, &hid)
}

/// A birth (or anyone joining): a new member of a household.
pub fn birth(node: &mut Node, year: Year, hid: &str, id: &str, sets: &[String], date: NaiveDate) -> Result<()> {
    crate::edit::member_add_unchecked(node, year, hid, id, sets)?;
    log(node, year, "birth", id, "出生", date, hid)
}

/// A marriage (or any move of a person between households of this township).
pub fn marriage(node: &mut Node, year: Year, id: &str, to: &str, relation: &str, date: NaiveDate) -> Result<()> {
    let id = IdNumber::parse_stored(id).map_err(|e| crate::edit::Refused(e.to_string()))?;
    let from = member_household(node, year, &id)?;
    if from == to {
        return refuse(format!("{} is already in household {to}", id.masked()));
    }
    let (frec, fmembers) = load_household(&node.conn, year, &from)?;
    let (trec, tmembers) = load_household(&node.conn, year, to)?;
    let mut fh = typed(&frec, &fmembers)?;
    let mut th = typed(&trec, &tmembers)?;
    let Some(pos) = fh.members.iter().position(|m| m.id_number == id) else {
        return refuse("member not found in its household");
    };
    let mut m = fh.members.remove(pos);
    m.relation = jianka_shared::labels::Relation::parse(relation).map_err(|e| crate::edit::Refused(e.to_string()))?;
    if fh.members.is_empty() {
        return refuse(format!("household {from} would be left empty; record its exit instead"));
    }
    th.members.push(m);
    crate::edit::rewrite_many(node, &mut [&mut fh, &mut th])?;
    log(node, year, "marriage", id.as_str(), "婚姻", date, &format!("{from} → {to}"))
}

/// A household moves to another village of this township: its key changes with the village.
pub fn move_household(node: &mut Node, year: Year, hid: &str, to_village: &str, date: NaiveDate) -> Result<String> {
    let village = RegionCode::parse(to_village).map_err(|e| crate::edit::Refused(e.to_string()))?;
    if village.tier() != Tier::Village {
        return refuse(format!("{village} is not a 12-digit village code"));
    }
    if !node.township().contains(&village) {
        return refuse(format!(
            "{village} is outside township {}: a move to another township is entered there as a new entry \
             (adjust new) and recorded here as an exit (adjust exit --reason 迁出); a move to another county is \
             completed by the province",
            node.township()
        ));
    }
    let (rec, members) = load_household(&node.conn, year, hid)?;
    let old: Household = typed(&rec, &members)?;
    let mut moved = old.clone();
    moved.village = village.clone();
    let new_id = household_id(&village, &moved.number);
    if store::load(&node.conn, &RecordKey::new(RecordKind::Household, year, &new_id))?.is_some_and(|s| !s.deleted) {
        return refuse(format!("household {new_id} already exists; give the moved household a new number first"));
    }
    let township = node.township().clone();
    let tx = node.conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let mut cap = Capture::begin(&tx, &township, node.clock)?;
    for m in &members {
        cap.delete(&tx, &m.key)?;
    }
    cap.delete(&tx, &rec.key)?;
    write_household(&tx, &mut cap, &moved, false)?;
    // The status travels with the household.
    cap.upsert(
        &tx,
        &RecordKey::new(RecordKind::Household, year, &new_id),
        &[("status".to_string(), format!("{:?}", old.status))].into(),
    )?;
    cap.finish(&tx)?;
    tx.commit()?;
    log(node, year, "move", hid, "迁移", date, &new_id)?;
    Ok(new_id)
}
