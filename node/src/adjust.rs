//! Adjustments of the annual update (动态调整, domain.md §5–6): exits, deaths, births, marriages,
//! moves and new entries, accepted only while the year's update window is open (or reopened).
//! Each is an ordinary captured edit plus a local log line saying what happened and why.

use crate::edit::{load_household, log_adjustment, refuse, rewrite, typed};
use crate::import::write_household;
use crate::node::Node;
use crate::store::{self, Capture};
use anyhow::Result;
use chrono::NaiveDate;
use jianka_shared::domain::{Household, Status, household_id};
use jianka_shared::protocol::YearState;
use jianka_shared::record::{RecordKey, RecordKind};
use jianka_shared::{IdNumber, RegionCode, Tier, Year};

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
    log_adjustment(node, year, "exit", hid, reason, date, "")
}

/// Facts of a household updated in the annual update (e.g. the year's income), logged as such.
pub fn update(node: &mut Node, year: Year, hid: &str, sets: &[String], date: NaiveDate) -> Result<usize> {
    let n = crate::edit::household_update(node, year, hid, sets)?;
    let fields: Vec<&str> = sets.iter().filter_map(|s| s.split_once('=').map(|(k, _)| k)).collect();
    log_adjustment(node, year, "update", hid, "年度更新", date, &fields.join(","))?;
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
    let id = IdNumber::parse_stored(id).map_err(|e| crate::edit::Refused(crate::masking::id_number_error(&e)))?;
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
    log_adjustment(node, year, "death", id.as_str(), "死亡", date, &hid)
}

/// A birth (or anyone joining): a new member of a household.
pub fn birth(node: &mut Node, year: Year, hid: &str, id: &str, sets: &[String], date: NaiveDate) -> Result<()> {
    crate::edit::member_add_unchecked(node, year, hid, id, sets)?;
    log_adjustment(node, year, "birth", id, "出生", date, hid)
}

/// A marriage (or any move of a person between households of this township).
pub fn marriage(node: &mut Node, year: Year, id: &str, to: &str, relation: &str, date: NaiveDate) -> Result<()> {
    let id = IdNumber::parse_stored(id).map_err(|e| crate::edit::Refused(crate::masking::id_number_error(&e)))?;
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
    log_adjustment(node, year, "marriage", id.as_str(), "婚姻", date, &format!("{from} → {to}"))
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
             (adjust new) and recorded here as an exit (adjust exit --reason 迁出); a person moving to another county \
             is recorded with adjust move-out (and adjust move-in there); the province completes the move",
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
    // The status travels with the household; the hub lets it keep a status the county decided
    // only because it names the household it moved from (deleted in the same change).
    cap.upsert(
        &tx,
        &RecordKey::new(RecordKind::Household, year, &new_id),
        &[("status".to_string(), format!("{:?}", old.status)), ("moved_from".to_string(), hid.to_string())].into(),
    )?;
    cap.finish(&tx)?;
    tx.commit()?;
    log_adjustment(node, year, "move", hid, "迁移", date, &new_id)?;
    Ok(new_id)
}

/// The 6-digit county a cross-county move names: a county code other than this township's own.
fn other_county(node: &Node, code: &str, flag: &str) -> Result<RegionCode> {
    let county = RegionCode::parse(code).map_err(|e| crate::edit::Refused(format!("{flag}: {e}")))?;
    if county.tier() != Tier::County {
        return refuse(format!("{flag} {county} is not a 6-digit county code"));
    }
    if node.township().ancestor(Tier::County).as_ref() == Some(&county) {
        return refuse(format!(
            "{county} is this township's own county: a move inside the county is a marriage (adjust marriage), \
             a household move (adjust move) or an exit here and a new entry there"
        ));
    }
    Ok(county)
}

/// 跨县迁出: a member leaves for another county. The member gets `move_out = <county>`; the person
/// stays here until the province completes the move with the arrival the other county sends
/// (never in both counties, never in neither); the county passes the completion down, and the
/// member then leaves this node.
pub fn move_out(node: &mut Node, year: Year, id: &str, to_county: &str, reason: &str, date: NaiveDate) -> Result<()> {
    if reason.trim().is_empty() {
        return refuse("a move out of the county needs a --reason");
    }
    let county = other_county(node, to_county, "--to-county")?;
    let id = IdNumber::parse_stored(id).map_err(|e| crate::edit::Refused(crate::masking::id_number_error(&e)))?;
    let hid = member_household(node, year, &id)?;
    let key = RecordKey::new(RecordKind::Member, year, id.as_str());
    let declared = store::load(&node.conn, &key)?.and_then(|s| s.get(MOVE_OUT).map(str::to_string));
    if let Some(c) = declared.filter(|c| !c.is_empty()) {
        return refuse(format!("{} is already moving out to county {c}; the province completes the move", id.masked()));
    }
    set_fields(node, &key, &[(MOVE_OUT, county.to_string())])?;
    log_adjustment(node, year, "move_out", id.as_str(), reason, date, &format!("{hid} → {county}"))
}

/// 跨县迁入: a person arriving from another county joins a household here (fields as for
/// `member add`). The province holds the arrival until the old county records the departure.
pub fn move_in(
    node: &mut Node,
    year: Year,
    hid: &str,
    id: &str,
    from_county: &str,
    sets: &[String],
    date: NaiveDate,
) -> Result<()> {
    let county = other_county(node, from_county, "--from-county")?;
    crate::edit::member_add_unchecked(node, year, hid, id, sets)?;
    log_adjustment(node, year, "move_in", id, "跨县迁入", date, &format!("{county} → {hid}"))
}

/// The member field naming the county a person moves to (the hub's `move_out`).
pub const MOVE_OUT: &str = "move_out";
