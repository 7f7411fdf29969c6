//! Import of the 扶贫手册 (one row per member) and of the 贫困村登记表.
//!
//! Every bad row is reported with file, line, column and reason; a household with any bad row is
//! left out, every other household is written, all in one transaction (nothing half-applied).
//! Only values that differ from the replica are written, so re-importing a file changes nothing.

use crate::masking;
use crate::node::Node;
use crate::progress::Progress;
use crate::store::{self, Capture};
use crate::table::{self, Table};
use anyhow::{Result, bail};
use jianka_shared::domain::{Household, Status, household_id};
use jianka_shared::labels::*;
use jianka_shared::{RegionCode, Tier, Year, Yuan};
use serde::Serialize;
use std::collections::HashMap;
use std::path::Path;
use std::time::Instant;

mod cells;
mod villages;
pub use cells::split_causes;
use cells::{parse_household_facts, parse_member, township_fact};
pub use jianka_shared::columns::*;
pub use villages::*;

/// One bad cell or row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RowError {
    pub file: String,
    pub line: u64,
    pub column: String,
    pub reason: String,
}

impl std::fmt::Display for RowError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}: {}: {}", self.file, self.line, self.column, self.reason)
    }
}

#[derive(Debug, Default, Serialize)]
pub struct ImportReport {
    pub file: String,
    pub encoding: String,
    pub year: Year,
    pub rows: usize,
    pub households_in_file: usize,
    pub households_imported: usize,
    pub households_refused: usize,
    pub members_imported: usize,
    /// Records whose values changed (new or edited); unchanged records are not rewritten.
    pub records_changed: usize,
    pub changes_captured: usize,
    pub dry_run: bool,
    pub elapsed_ms: u128,
    pub rows_per_sec: f64,
    pub errors: Vec<RowError>,
}

/// What the import of a file of one row per record did (the village register, the 帮扶 entries).
#[derive(Debug, Default, Serialize)]
pub struct RowsReport {
    pub file: String,
    pub rows: usize,
    pub imported: usize,
    pub refused: usize,
    pub records_changed: usize,
    pub dry_run: bool,
    pub errors: Vec<RowError>,
}

#[derive(Debug, Clone, Copy)]
pub struct ImportOptions {
    pub year: Year,
    pub dry_run: bool,
    /// Show a progress bar on a terminal for files over this many rows.
    pub progress_over: usize,
}

pub(super) struct Row<'a> {
    pub(super) line: u64,
    pub(super) cells: HashMap<Col, &'a str>,
    /// The cells of the township's own rule columns, in the order of its rules ("" where absent).
    pub(super) rule_cells: Vec<&'a str>,
    /// Columns whose cell the workbook stored as a number too long to keep all its digits.
    pub(super) long_numbers: Vec<Col>,
}

impl Row<'_> {
    pub(super) fn get(&self, c: Col) -> &str {
        self.cells.get(&c).copied().unwrap_or("")
    }

    /// Whether the cell is a number that lost digits in the spreadsheet (a number cell of 16
    /// digits or more, or text in the exponent form a spreadsheet writes for one).
    pub(super) fn lost_digits(&self, c: Col) -> bool {
        self.long_numbers.contains(&c) || masking::in_exponent_form(self.get(c))
    }
}

fn map_columns(t: &Table, file: &str) -> Result<HashMap<Col, usize>> {
    let mut cols = HashMap::new();
    for (i, h) in t.headers.iter().enumerate() {
        if let Some(c) = Col::from_header(h)
            && cols.insert(c, i).is_some()
        {
            bail!("{file}:1: column {} appears twice in the header", c.header());
        }
    }
    let missing: Vec<&str> =
        Col::ALL.into_iter().filter(|c| !c.optional() && !cols.contains_key(c)).map(Col::header).collect();
    if !missing.is_empty() {
        bail!(
            "{file}:1: the header lacks required columns: {} (expected the 扶贫手册 headers: {})",
            missing.join(", "),
            Col::ALL.map(Col::header).join(", ")
        );
    }
    Ok(cols)
}

/// Rows checked and written, on a terminal, for files over `over` rows.
fn progress_bar(n: usize, over: usize, what: &str) -> indicatif::ProgressBar {
    if n <= over {
        return indicatif::ProgressBar::hidden();
    }
    Progress::on_terminal(false).items(n as u64, "rows", what)
}

/// Imports a 扶贫手册 file into the node.
pub fn import_households(node: &mut Node, path: &Path, opts: ImportOptions) -> Result<ImportReport> {
    let started = Instant::now();
    let file = path.display().to_string();
    let table = table::read(path)?;
    let cols = map_columns(&table, &file)?;
    // The township's own rules read columns of their own (where the file has them).
    let rules = node.cfg.profile()?.map(|p| p.eligibility.township).unwrap_or_default();
    let rule_cols: Vec<Option<usize>> =
        rules.iter().map(|r| table.headers.iter().position(|h| h.trim() == r.column.trim())).collect();
    // A bigger page cache for this one bulk transaction (the daemon keeps SQLite's small default).
    node.conn.pragma_update(None, "cache_size", -65536)?;
    let today = node.clock.today();
    let township = node.township().clone();
    let mut report = ImportReport {
        file: file.clone(),
        encoding: table.encoding.into(),
        year: opts.year,
        rows: table.rows.len(),
        dry_run: opts.dry_run,
        ..Default::default()
    };
    let rows: Vec<Row> = table
        .rows
        .iter()
        .map(|(line, cells)| Row {
            line: *line,
            cells: cols.iter().map(|(c, &i)| (*c, cells.get(i).map(String::as_str).unwrap_or(""))).collect(),
            rule_cells: rule_cols.iter().map(|i| i.and_then(|i| cells.get(i)).map_or("", String::as_str)).collect(),
            long_numbers: match table.long_numbers.is_empty() {
                true => Vec::new(),
                false => cols.iter().filter(|(_, i)| table.is_long_number(*line, **i)).map(|(c, _)| *c).collect(),
            },
        })
        .collect();

    // Group rows into households, in file order.
    let mut order: Vec<(String, String)> = Vec::new();
    let mut groups: HashMap<(String, String), Vec<usize>> = HashMap::new();
    for (i, r) in rows.iter().enumerate() {
        let k = (r.get(Col::Village).to_string(), r.get(Col::Number).to_string());
        groups
            .entry(k.clone())
            .or_insert_with(|| {
                order.push(k);
                Vec::new()
            })
            .push(i);
    }
    report.households_in_file = order.len();

    let err = |line: u64, col: &str, reason: String| RowError { file: file.clone(), line, column: col.into(), reason };
    let mut errors: Vec<RowError> = Vec::new();
    let mut built: Vec<(Household, Vec<u64>)> = Vec::new();
    let mut bad_households: Vec<bool> = Vec::new();
    // ID number → (index into `built`/`bad_households`, line) of its first household in the file.
    let mut seen_people: HashMap<String, (usize, u64)> = HashMap::new();
    let pb = progress_bar(rows.len() * 2, opts.progress_over.saturating_mul(2), "checking");

    for key in &order {
        let idxs = &groups[key];
        let hi = built.len();
        let mut bad = false;
        let mut e = |line: u64, col: Col, reason: String| {
            errors.push(err(line, col.header(), reason));
        };
        let first_line = rows[idxs[0]].line;
        // Village code and household number.
        let village = match RegionCode::parse(&key.0) {
            Ok(v) if v.tier() == Tier::Village => {
                if !township.contains(&v) {
                    e(
                        first_line,
                        Col::Village,
                        format!("village {v} is outside township {township}, which this node serves"),
                    );
                    bad = true;
                }
                Some(v)
            }
            Ok(v) => {
                e(first_line, Col::Village, format!("{v} is a {} code; a village code has 12 digits", v.tier()));
                bad = true;
                None
            }
            Err(er) => {
                e(first_line, Col::Village, er.to_string());
                bad = true;
                None
            }
        };
        if key.1.trim().is_empty() {
            e(first_line, Col::Number, "household number is empty".into());
            bad = true;
        }
        let hid = village.as_ref().map(|v| household_id(v, &key.1)).unwrap_or_default();

        // Members.
        let mut members = Vec::new();
        let mut lines = Vec::new();
        let mut heads = Vec::new();
        let mut unreadable_member = false;
        for &ri in idxs {
            pb.inc(1);
            let r = &rows[ri];
            match parse_member(r, today) {
                Ok(m) => {
                    if m.id_number.sex() != m.sex {
                        e(
                            r.line,
                            Col::Sex,
                            format!(
                                "{} is {} but the ID number {} says {} (rule 1)",
                                m.name,
                                m.sex,
                                m.id_number.masked(),
                                m.id_number.sex()
                            ),
                        );
                        bad = true;
                    }
                    // Rule 2: one person, one household — within the file…
                    match seen_people.get(m.id_number.as_str()) {
                        Some(&(other, other_line)) => {
                            let what = if other == hi { "this household" } else { "another household" };
                            e(
                                r.line,
                                Col::IdNumber,
                                format!(
                                    "{} already appears at line {other_line} in {what}; one person belongs to one household (rule 2)",
                                    m.id_number.masked()
                                ),
                            );
                            bad = true;
                            // The first household is refused too: it names the reason on its own line.
                            if other != hi {
                                bad_households[other] = true;
                                e(
                                    other_line,
                                    Col::IdNumber,
                                    format!(
                                        "{} appears again at line {} in household {hid}; one person belongs to one household (rule 2)",
                                        m.id_number.masked(),
                                        r.line
                                    ),
                                );
                            }
                        }
                        None => {
                            seen_people.insert(m.id_number.as_str().to_string(), (hi, r.line));
                        }
                    }
                    // …and against the node's register.
                    if let Some(other) = store::member_household(&node.conn, opts.year, m.id_number.as_str())?
                        && other != hid
                    {
                        e(
                            r.line,
                            Col::IdNumber,
                            format!(
                                "{} is already a member of household {other} in this node's register (rule 2)",
                                m.id_number.masked()
                            ),
                        );
                        bad = true;
                    }
                    if m.relation == Relation::Head {
                        heads.push(ri);
                    }
                    members.push(m);
                    lines.push(r.line);
                }
                Err(errs) => {
                    for (c, reason) in errs {
                        e(r.line, c, reason);
                    }
                    bad = true;
                    unreadable_member = true;
                }
            }
        }
        if heads.len() != 1 && !unreadable_member {
            let l = heads.get(1).map(|&i| rows[i].line).unwrap_or(first_line);
            e(
                l,
                Col::Relation,
                format!("a household has exactly one 户主; household {hid} has {} (rule 3)", heads.len()),
            );
            bad = true;
        }
        // Household columns come from the 户主's row; other rows must be empty or agree.
        let head_row = heads.first().map(|&i| &rows[i]).unwrap_or(&rows[idxs[0]]);
        for &ri in idxs {
            let r = &rows[ri];
            if r.line == head_row.line {
                continue;
            }
            for c in Col::ALL.into_iter().filter(|c| c.household_level()) {
                let v = r.get(c);
                if !v.is_empty() && v != head_row.get(c) {
                    let shown = |v: &str| if c.personal() { masking::mask(v) } else { v.to_string() };
                    e(
                        r.line,
                        c,
                        format!(
                            "{:?} differs from the 户主's row (line {}: {:?}); household columns are read from the 户主's row",
                            shown(v),
                            head_row.line,
                            shown(head_row.get(c))
                        ),
                    );
                    bad = true;
                }
            }
        }
        let facts = parse_household_facts(head_row);
        let h = match (facts, village) {
            (Ok(f), Some(village)) => Some(Household {
                year: opts.year,
                village,
                number: key.1.trim().to_string(),
                status: Status::Applied,
                members,
                ..f
            }),
            (Err(errs), _) => {
                for (c, reason) in errs {
                    e(head_row.line, c, reason);
                }
                bad = true;
                None
            }
            _ => None,
        };
        // With a member row unreadable, household-level checks would only echo that error.
        if let Some(h) = h.as_ref().filter(|_| !unreadable_member) {
            for v in h.validate() {
                // Rule 1 (sex) and 3 (heads), rule 2 inside the household were reported per row above.
                if v.rule == 1 || v.rule == 2 || v.field == "与户主关系" {
                    continue;
                }
                errors.push(err(head_row.line, &v.field, format!("{} (rule {})", v.message, v.rule)));
                bad = true;
            }
        }
        let mut h = h.unwrap_or_else(|| placeholder(opts.year));
        for (rule, cell) in rules.iter().zip(&head_row.rule_cells) {
            match township_fact(rule, cell) {
                Ok(Some(v)) => {
                    h.facts.insert(rule.stored_field(), v);
                }
                Ok(None) => {}
                Err(reason) => {
                    errors.push(err(head_row.line, &rule.column, reason));
                    bad = true;
                }
            }
        }
        built.push((h, lines));
        bad_households.push(bad);
    }

    // Write every good household in one transaction; roll back on a dry run.
    let tx = node.conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let mut cap = Capture::begin(&tx, &township, node.clock)?;
    for (i, (h, _)) in built.iter().enumerate() {
        pb.inc(h.members.len() as u64);
        if bad_households[i] {
            report.households_refused += 1;
            continue;
        }
        let (changed, _) = write_household(&tx, &mut cap, h, true)?;
        report.records_changed += changed;
        report.households_imported += 1;
        report.members_imported += h.members.len();
    }
    report.changes_captured = cap.finish(&tx)?;
    if opts.dry_run {
        tx.rollback()?;
    } else {
        tx.commit()?;
    }
    pb.finish_and_clear();
    errors.sort_by(|a, b| a.line.cmp(&b.line).then(a.column.cmp(&b.column)));
    report.errors = errors;
    report.elapsed_ms = started.elapsed().as_millis();
    report.rows_per_sec = report.rows as f64 / started.elapsed().as_secs_f64().max(1e-9);
    tracing::info!(
        rows = report.rows,
        imported = report.households_imported,
        refused = report.households_refused,
        changes = report.changes_captured,
        dry_run = opts.dry_run,
        "import finished"
    );
    Ok(report)
}

pub(super) fn placeholder(year: Year) -> Household {
    Household {
        year,
        village: RegionCode::parse("000000000000").expect("valid shape"),
        number: String::new(),
        attribute: Attribute::General,
        standard: Standard::National,
        main_cause: Cause::Other,
        other_causes: vec![],
        income: Yuan(0),
        income_per_capita: Yuan(0),
        unsafe_housing: false,
        water_difficulty: false,
        phone: String::new(),
        bank_account: String::new(),
        helper_name: String::new(),
        helper_unit: String::new(),
        helper_phone: String::new(),
        helper_since: String::new(),
        status: Status::Applied,
        members: vec![],
        facts: Default::default(),
    }
}

/// Writes a household and its members through change capture. An existing household keeps its
/// workflow status; with `replace_members`, members no longer listed are removed.
/// Returns (records changed, fields written).
pub fn write_household(
    conn: &rusqlite::Connection,
    cap: &mut Capture,
    h: &Household,
    replace_members: bool,
) -> Result<(usize, usize)> {
    let records = h.to_records();
    let hkey = &records[0].key;
    let existing = store::load(conn, hkey)?.filter(|s| !s.deleted);
    let mut changed = 0;
    let mut written = 0;
    let mut values = records[0].fields.clone();
    if let Some(s) = &existing {
        match s.get("status") {
            Some(st) => {
                values.insert("status".into(), st.to_string());
            }
            None => {
                values.remove("status");
            }
        }
    }
    let n = cap.upsert(conn, hkey, &values)?;
    changed += (n > 0) as usize;
    written += n;
    let mut listed = std::collections::HashSet::new();
    for r in &records[1..] {
        let n = cap.upsert(conn, &r.key, &r.fields)?;
        changed += (n > 0) as usize;
        written += n;
        listed.insert(r.key.id.clone());
    }
    if replace_members && existing.is_some() {
        for m in store::members_of(conn, h.year, &hkey.id)? {
            if !listed.contains(&m.key.id) && cap.delete(conn, &m.key)? {
                changed += 1;
            }
        }
    }
    Ok((changed, written))
}
