//! Edits to households and members. Each edit rebuilds the typed household, checks every rule of
//! domain.md §3 on the result, and writes only the fields that changed, through change capture.

use crate::import::{Col, split_causes, write_household};
use crate::node::Node;
use crate::store::{self, Capture};
use anyhow::{Context, Result};
use jianka_shared::domain::{Household, Member, Status};
use jianka_shared::record::{Record, RecordKey, RecordKind};
use jianka_shared::{IdNumber, Year, Yuan};
use std::collections::BTreeMap;

/// Bad input from the clerk: exit code 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Refused(pub String);

pub fn refuse<T>(msg: impl Into<String>) -> Result<T> {
    Err(Refused(msg.into()).into())
}

/// The household record and its members, as stored.
pub fn load_household(conn: &rusqlite::Connection, year: Year, id: &str) -> Result<(Record, Vec<Record>)> {
    let key = RecordKey::new(RecordKind::Household, year, id);
    let Some(s) = store::load(conn, &key)?.filter(|s| !s.deleted) else {
        return refuse(format!("no household {id} in year {year} on this node"));
    };
    let rec = Record { key, fields: s.values() };
    let members = store::members_of(conn, year, id)?;
    Ok((rec, members))
}

pub fn typed(rec: &Record, members: &[Record]) -> Result<Household> {
    Household::from_records(rec, members).map_err(|e| Refused(format!("household {}: {e}", rec.key.id)).into())
}

/// Parses `field=value` pairs; fields may be Chinese headers, English aliases or field names.
pub fn parse_sets(sets: &[String]) -> Result<Vec<(String, String)>> {
    sets.iter()
        .map(|s| {
            let Some((k, v)) = s.split_once('=') else {
                // The argument may be a phone or an ID number typed without its field: shown masked.
                let shown = crate::masking::mask(s);
                return refuse(format!("--set {shown:?}: expected FIELD=VALUE, e.g. --set 家庭年纯收入=4200"));
            };
            let field = Col::lookup(k).map(|c| c.field().to_string()).unwrap_or_else(|| k.trim().to_string());
            Ok((field, v.trim().to_string()))
        })
        .collect()
}

fn check_rules(h: &Household) -> Result<()> {
    let v = h.validate();
    if !v.is_empty() {
        let list: Vec<String> = v.iter().map(|x| x.to_string()).collect();
        return refuse(format!("household {} would break the rules: {}", h.id(), list.join("; ")));
    }
    Ok(())
}

/// Per-capita income follows the member count (rule 5): recomputed when members change.
fn recompute_per_capita(h: &mut Household) {
    let n = h.members.len().max(1) as i64;
    h.income_per_capita = Yuan((h.income.fen() + n / 2) / n);
}

fn commit(node: &mut Node, h: &Household) -> Result<usize> {
    let township = node.township().clone();
    let tx = node.conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let mut cap = Capture::begin(&tx, &township, node.clock)?;
    write_household(&tx, &mut cap, h, true)?;
    let n = cap.finish(&tx)?;
    tx.commit()?;
    Ok(n)
}

fn ensure_editable_status(h: &Household) -> Result<()> {
    if h.status > Status::CountyReview && h.status != Status::NotRecognised {
        return refuse(format!(
            "household {} is at {}; after the county's re-examination facts change only in the annual update (jianka-node adjust); contact details (phone, bank account, helper) may be corrected at any time",
            h.id(),
            crate::vocabulary::status(h.status)
        ));
    }
    Ok(())
}

pub fn household_edit(node: &mut Node, year: Year, id: &str, sets: &[String]) -> Result<usize> {
    household_edit_in(node, year, id, sets, true)
}

/// Household facts changed in the annual update (incomes, phone, causes…), whatever the
/// household's workflow status: the caller has checked the update window is open.
pub fn household_update(node: &mut Node, year: Year, id: &str, sets: &[String]) -> Result<usize> {
    household_edit_in(node, year, id, sets, false)
}

/// Contact details: correctable at any status and outside the update window (a new phone or
/// bank account does not change who is eligible); each such correction is logged.
pub const CONTACT_FIELDS: [&str; 5] = ["phone", "bank_account", "helper_name", "helper_unit", "helper_phone"];

fn household_edit_in(node: &mut Node, year: Year, id: &str, sets: &[String], check_status: bool) -> Result<usize> {
    let (mut rec, members) = load_household(&node.conn, year, id)?;
    let sets = parse_sets(sets)?;
    let contact_only = !sets.is_empty() && sets.iter().all(|(f, _)| CONTACT_FIELDS.contains(&f.as_str()));
    let status = typed(&rec, &members)?.status;
    if check_status && !contact_only {
        ensure_editable_status(&typed(&rec, &members)?)?;
    }
    let fields: Vec<String> = sets.iter().map(|(f, _)| f.clone()).collect();
    for (field, value) in sets {
        match field.as_str() {
            "status" => return refuse("status moves only through `jianka-node workflow advance`"),
            "village" | "number" => {
                return refuse(format!("{field} is part of the household's key; use `jianka-node adjust move`"));
            }
            f if f.starts_with("county.") || f.starts_with("province.") => {
                return refuse(format!("{f} is decided by the county or province, not the township"));
            }
            f if !rec.fields.contains_key(f) => {
                return refuse(format!(
                    "{f:?} is not a household field; use one of: {}",
                    Col::ALL.iter().filter(|c| c.household_level()).map(|c| c.header()).collect::<Vec<_>>().join(", ")
                ));
            }
            "other_causes" => {
                let v = split_causes(&value).join("、");
                rec.fields.insert(field, v);
            }
            _ => {
                rec.fields.insert(field, value);
            }
        }
    }
    let h = typed(&rec, &members)?;
    check_rules(&h)?;
    let n = commit(node, &h)?;
    if contact_only && status > Status::CountyReview {
        let today = node.clock.today();
        log_adjustment(node, year, "contact", id, "联系信息更正", today, &fields.join(","))?;
    }
    Ok(n)
}

fn member_from_sets(id: &IdNumber, sets: &[(String, String)], base: Option<&Record>) -> Result<Member> {
    let mut fields: BTreeMap<String, String> = base.map(|r| r.fields.clone()).unwrap_or_else(|| {
        [("schooling", ""), ("migrant_work", ""), ("medical_insurance", "是"), ("pension_insurance", "否")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    });
    for (k, v) in sets {
        if k == "id_number" || k == "household" || k == "village" {
            return refuse(format!("{k} cannot be set on a member; remove and re-add, or use `jianka-node adjust`"));
        }
        fields.insert(k.clone(), v.clone());
    }
    let rec = Record { key: RecordKey::new(RecordKind::Member, 0, id.as_str()), fields };
    Member::from_record(&rec).map_err(|e| Refused(format!("member {}: {e}", id.masked())).into())
}

pub fn member_add(node: &mut Node, year: Year, household: &str, id: &str, sets: &[String]) -> Result<usize> {
    let id = IdNumber::parse(id, node.clock.today()).map_err(|e| Refused(crate::masking::id_number_error(&e)))?;
    let (rec, members) = load_household(&node.conn, year, household)?;
    let mut h = typed(&rec, &members)?;
    ensure_editable_status(&h)?;
    if let Some(s) =
        store::load(&node.conn, &RecordKey::new(RecordKind::Member, year, id.as_str()))?.filter(|s| !s.deleted)
    {
        return refuse(format!(
            "{} is already a member of household {}; one person belongs to one household (rule 2)",
            id.masked(),
            s.get("household").unwrap_or("?")
        ));
    }
    let m = member_from_sets(&id, &parse_sets(sets)?, None)?;
    h.members.push(m);
    recompute_per_capita(&mut h);
    check_rules(&h)?;
    commit(node, &h)
}

fn household_of(conn: &rusqlite::Connection, year: Year, id: &IdNumber) -> Result<String> {
    let s = store::load(conn, &RecordKey::new(RecordKind::Member, year, id.as_str()))?.filter(|s| !s.deleted);
    match s.and_then(|s| s.get("household").map(str::to_string)) {
        Some(h) => Ok(h),
        None => refuse(format!("{} is not a member of any household in year {year} on this node", id.masked())),
    }
}

pub fn member_edit(node: &mut Node, year: Year, id: &str, sets: &[String]) -> Result<usize> {
    let id = IdNumber::parse_stored(id).map_err(|e| Refused(crate::masking::id_number_error(&e)))?;
    let hid = household_of(&node.conn, year, &id)?;
    let (rec, members) = load_household(&node.conn, year, &hid)?;
    let mut h = typed(&rec, &members)?;
    ensure_editable_status(&h)?;
    let base = members.iter().find(|r| r.key.id == id.as_str()).context("member record")?;
    let m = member_from_sets(&id, &parse_sets(sets)?, Some(base))?;
    for x in h.members.iter_mut().filter(|x| x.id_number == id) {
        *x = m.clone();
    }
    check_rules(&h)?;
    commit(node, &h)
}

pub fn member_remove(node: &mut Node, year: Year, id: &str) -> Result<usize> {
    let id = IdNumber::parse_stored(id).map_err(|e| Refused(crate::masking::id_number_error(&e)))?;
    let hid = household_of(&node.conn, year, &id)?;
    let (rec, members) = load_household(&node.conn, year, &hid)?;
    let mut h = typed(&rec, &members)?;
    ensure_editable_status(&h)?;
    h.members.retain(|m| m.id_number != id);
    if h.members.is_empty() {
        return refuse("the last member cannot be removed: a household is never empty (rule 3)");
    }
    recompute_per_capita(&mut h);
    check_rules(&h)?;
    commit(node, &h)
}

/// Used by adjustments: rewrites a household after a typed change, checks and commits.
pub fn rewrite(node: &mut Node, h: &mut Household, recompute: bool) -> Result<usize> {
    if recompute {
        recompute_per_capita(h);
    }
    check_rules(h)?;
    commit(node, h)
}

/// Adds a member without the workflow-status check (annual-update adjustments).
pub fn member_add_unchecked(node: &mut Node, year: Year, household: &str, id: &str, sets: &[String]) -> Result<usize> {
    let id = IdNumber::parse(id, node.clock.today()).map_err(|e| Refused(crate::masking::id_number_error(&e)))?;
    let (rec, members) = load_household(&node.conn, year, household)?;
    let mut h = typed(&rec, &members)?;
    if let Some(s) =
        store::load(&node.conn, &RecordKey::new(RecordKind::Member, year, id.as_str()))?.filter(|s| !s.deleted)
    {
        return refuse(format!(
            "{} is already a member of household {}; one person belongs to one household (rule 2)",
            id.masked(),
            s.get("household").unwrap_or("?")
        ));
    }
    h.members.push(member_from_sets(&id, &parse_sets(sets)?, None)?);
    rewrite(node, &mut h, true)
}

/// Rewrites several households in one transaction (a person moving between them).
pub fn rewrite_many(node: &mut Node, hs: &mut [&mut Household]) -> Result<usize> {
    for h in hs.iter_mut() {
        recompute_per_capita(h);
        check_rules(h)?;
    }
    let township = node.township().clone();
    let tx = node.conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let mut cap = Capture::begin(&tx, &township, node.clock)?;
    // A member gone from every listed household is deleted; one that moved is rewritten below
    // with its new household (one record per person: never in two households).
    for h in hs.iter() {
        for m in store::members_of(&tx, h.year, &h.id())? {
            let still_listed = hs.iter().any(|o| o.members.iter().any(|x| x.id_number.as_str() == m.key.id));
            if !still_listed {
                cap.delete(&tx, &m.key)?;
            }
        }
    }
    for h in hs.iter() {
        write_household(&tx, &mut cap, h, false)?;
    }
    let n = cap.finish(&tx)?;
    tx.commit()?;
    Ok(n)
}

/// Records a change of the annual update (or a contact correction) in `adjustments`, the
/// township's own log of why records changed.
pub(crate) fn log_adjustment(
    node: &Node,
    year: Year,
    kind: &str,
    subject: &str,
    reason: &str,
    date: chrono::NaiveDate,
    detail: &str,
) -> Result<()> {
    node.conn.execute(
        "INSERT INTO adjustments(year, kind, subject, reason, date, detail, recorded_ms) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        rusqlite::params![year, kind, subject, reason, date.to_string(), detail, node.clock.millis() as i64],
    )?;
    Ok(())
}
