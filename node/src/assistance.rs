//! The 扶贫手册's parts 4–6 at the township: 帮扶计划, 帮扶措施 and 帮扶成效 entries imported from a
//! file (one row per entry, `jianka_shared::assistance::headers`) or entered one at a time, each
//! for a household this node holds, written through change capture so they sync like the rest;
//! and exported in the same columns.

use crate::edit::refuse;
use crate::import::{RowError, RowsReport};
use crate::node::Node;
use crate::store::{self, Capture};
use crate::table;
use anyhow::{Result, bail};
use jianka_shared::Year;
use jianka_shared::assistance::{Entry, headers};
use jianka_shared::record::{RecordKey, RecordKind};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

/// Whether the node holds household `id` of `year`.
fn holds_household(node: &Node, year: Year, id: &str) -> Result<bool> {
    Ok(store::load(&node.conn, &RecordKey::new(RecordKind::Household, year, id))?.is_some_and(|r| !r.deleted))
}

/// Imports a 帮扶 file into `year`; a row with a problem is refused (named by line and column),
/// the rest go in one transaction.
pub fn import(node: &mut Node, path: &Path, year: Year, dry_run: bool) -> Result<RowsReport> {
    let file = path.display().to_string();
    let t = table::read(path)?;
    let cols: HashMap<&str, usize> =
        headers().into_iter().filter_map(|h| t.headers.iter().position(|x| x.trim() == h).map(|i| (h, i))).collect();
    let missing: Vec<&str> =
        ["村代码", "户编号", "部分", "序号"].into_iter().filter(|h| !cols.contains_key(h)).collect();
    if !missing.is_empty() {
        bail!("{file}:1: the header lacks {} (帮扶记录: {})", missing.join(", "), headers().join(","));
    }
    let mut report = RowsReport { file: file.clone(), rows: t.rows.len(), dry_run, ..Default::default() };
    let mut entries = Vec::new();
    let mut seen: HashMap<String, u64> = HashMap::new();
    for (line, cells) in &t.rows {
        let cell = |h: &str| cols.get(h).and_then(|&i| cells.get(i)).map_or("", String::as_str);
        let err =
            |column: &str, reason: String| RowError { file: file.clone(), line: *line, column: column.into(), reason };
        match Entry::from_row(year, cell) {
            Ok(e) if !holds_household(node, year, &e.household)? => {
                report.errors.push(err("户编号", format!("no household {} in {year} on this node", e.household)));
                report.refused += 1;
            }
            Ok(e) => match seen.insert(e.key_id(), *line) {
                Some(first) => {
                    report.errors.push(err("序号", format!("entry {} already appears at line {first}", e.key_id())));
                    report.refused += 1;
                }
                None => entries.push(e),
            },
            Err(errs) => {
                report.refused += 1;
                report.errors.extend(errs.into_iter().map(|(c, r)| err(&c, r)));
            }
        }
    }
    let township = node.township().clone();
    let tx = node.conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let mut cap = Capture::begin(&tx, &township, node.clock)?;
    for e in &entries {
        let r = e.to_record();
        report.records_changed += (cap.upsert(&tx, &r.key, &r.fields)? > 0) as usize;
        report.imported += 1;
    }
    cap.finish(&tx)?;
    if dry_run {
        tx.rollback()?;
    } else {
        tx.commit()?;
    }
    Ok(report)
}

/// Enters one entry from `cells` (column header → text, as in the file).
pub fn add(node: &mut Node, year: Year, cells: &BTreeMap<String, String>) -> Result<String> {
    let e = match Entry::from_row(year, |h| cells.get(h).map_or("", String::as_str)) {
        Ok(e) => e,
        Err(errs) => {
            let why: Vec<String> = errs.iter().map(|(c, r)| format!("{c}: {r}")).collect();
            return refuse(why.join("; "));
        }
    };
    if !holds_household(node, year, &e.household)? {
        return refuse(format!("no household {} in {year} on this node", e.household));
    }
    let township = node.township().clone();
    let tx = node.conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let mut cap = Capture::begin(&tx, &township, node.clock)?;
    let r = e.to_record();
    cap.upsert(&tx, &r.key, &r.fields)?;
    cap.finish(&tx)?;
    tx.commit()?;
    Ok(e.key_id())
}

/// The year's entries in the import columns, by key.
pub fn export_rows(node: &Node, year: Year) -> Result<(Vec<String>, Vec<Vec<String>>)> {
    let rows = store::records(&node.conn, RecordKind::Assistance, year)?
        .iter()
        .map(|r| Entry::export_row(&r.key.id, |f| r.fields.get(f).map(String::as_str)))
        .collect();
    Ok((headers().into_iter().map(String::from).collect(), rows))
}
