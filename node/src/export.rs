//! The township's register exported in exactly the 扶贫手册 import columns (one row per member,
//! the household's columns on its head's row), so importing the file again changes nothing.
//! Without `full` the identity numbers, phones and bank accounts are masked (a file that may
//! leave the office, but not one to import); with it they are in full and the file says it is
//! internal (内部资料).

use crate::import::{Col, export_row};
use crate::node::Node;
use crate::store;
use anyhow::Result;
use jianka_shared::labels::Relation;
use jianka_shared::{Record, RecordKind, Year};
use std::collections::BTreeMap;

/// The note an export with full identity numbers carries.
pub const INTERNAL: &str =
    "内部资料: 含完整身份证号、电话和银行账号, 不得公开张贴或外传 (jianka-node export --with-id-numbers)";

/// The export's header and rows.
pub struct Register {
    pub headers: Vec<String>,
    pub rows: Vec<Vec<String>>,
    pub households: usize,
}

/// The register of `year` (optionally one village) as import rows.
pub fn register(node: &Node, year: Year, village: Option<&str>, full: bool) -> Result<Register> {
    let rules = node.cfg.profile()?.map(|p| p.eligibility.township).unwrap_or_default();
    let mut headers: Vec<String> = Col::ALL.iter().map(|c| c.header().to_string()).collect();
    headers.extend(rules.iter().map(|r| r.column.clone()));
    let in_scope = |id: &str| village.is_none_or(|v| id.starts_with(v));
    let mut members: BTreeMap<String, Vec<Record>> = BTreeMap::new();
    for m in store::records(&node.conn, RecordKind::Member, year)? {
        if let Some(hh) = m.fields.get("household").filter(|h| in_scope(h)) {
            members.entry(hh.clone()).or_default().push(m);
        }
    }
    let mut rows = Vec::new();
    let mut households = 0;
    for h in store::records(&node.conn, RecordKind::Household, year)?.into_iter().filter(|h| in_scope(&h.key.id)) {
        let Some(mut ms) = members.remove(&h.key.id) else { continue };
        households += 1;
        // The head first, then by identity number (as the importer reads a household).
        let head = Relation::Head.label();
        ms.sort_by(|a, b| {
            (a.fields.get("relation").map(String::as_str) != Some(head), &a.key.id)
                .cmp(&(b.fields.get("relation").map(String::as_str) != Some(head), &b.key.id))
        });
        for (i, m) in ms.iter().enumerate() {
            let mut row = export_row(|f| field(&h, f), (m.key.id.as_str(), |f| field(m, f)), i == 0, full);
            row.extend(rules.iter().map(|r| {
                if i == 0 { h.fields.get(&r.stored_field()).cloned().unwrap_or_default() } else { String::new() }
            }));
            rows.push(row);
        }
    }
    Ok(Register { headers, rows, households })
}

fn field<'a>(r: &'a Record, name: &str) -> Option<&'a str> {
    r.fields.get(name).map(String::as_str)
}
