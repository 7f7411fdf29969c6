//! Import of the 贫困村登记表 (one row per village): its core figures required, the items of its
//! seven parts (`village_form`) wherever the file has their columns; parsed, checked and written
//! like the households.

use super::*;
use crate::node::Node;
use crate::store::{self, Capture};
use crate::table::{self};
use anyhow::{Result, bail};
use jianka_shared::domain::{Status, Village};
use jianka_shared::village_form::Item;
use jianka_shared::{RegionCode, Tier, Year, Yuan};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum VCol {
    Code,
    Name,
    Households,
    Population,
    PoorHouseholds,
    PoorPopulation,
    IncomePerCapita,
    CollectiveIncome,
}

impl VCol {
    const ALL: [VCol; 8] = [
        VCol::Code,
        VCol::Name,
        VCol::Households,
        VCol::Population,
        VCol::PoorHouseholds,
        VCol::PoorPopulation,
        VCol::IncomePerCapita,
        VCol::CollectiveIncome,
    ];
    fn names(self) -> (&'static str, &'static str) {
        match self {
            VCol::Code => ("村代码", "village_code"),
            VCol::Name => ("村名称", "name"),
            VCol::Households => ("总户数", "households"),
            VCol::Population => ("总人口", "population"),
            VCol::PoorHouseholds => ("贫困户数", "poor_households"),
            VCol::PoorPopulation => ("贫困人口", "poor_population"),
            VCol::IncomePerCapita => ("人均纯收入", "income_per_capita"),
            VCol::CollectiveIncome => ("村集体经济收入", "collective_income"),
        }
    }
}

/// The plain facts of a village entry, as text (from a file row or command-line flags).
pub struct VillageInput<'a> {
    pub code: &'a str,
    pub name: &'a str,
    pub households: &'a str,
    pub population: &'a str,
    pub poor_households: &'a str,
    pub poor_population: &'a str,
    pub income_per_capita: &'a str,
    pub collective_income: &'a str,
}

/// Parses and checks a village entry; errors are (column header, reason).
pub fn parse_village(v: &VillageInput, year: Year, township: &RegionCode) -> Result<Village, Vec<(String, String)>> {
    let mut errs = Vec::new();
    let code = match RegionCode::parse(v.code) {
        Ok(c) if c.tier() == Tier::Village && township.contains(&c) => Some(c),
        Ok(c) if c.tier() == Tier::Village => {
            errs.push(("村代码".into(), format!("village {c} is outside township {township}, which this node serves")));
            None
        }
        Ok(c) => {
            errs.push(("村代码".into(), format!("{c} is not a 12-digit village code")));
            None
        }
        Err(e) => {
            errs.push(("村代码".into(), e.to_string()));
            None
        }
    };
    if v.name.trim().is_empty() {
        errs.push(("村名称".into(), "name is empty".into()));
    }
    let mut num = |col: &str, s: &str| -> u32 {
        s.trim().parse::<u32>().unwrap_or_else(|_| {
            errs.push((col.into(), format!("{s:?} is not a whole number of zero or more")));
            0
        })
    };
    let households = num("总户数", v.households);
    let population = num("总人口", v.population);
    let poor_households = num("贫困户数", v.poor_households);
    let poor_population = num("贫困人口", v.poor_population);
    let mut money = |col: &str, s: &str| {
        Yuan::parse(s).unwrap_or_else(|e| {
            errs.push((col.into(), e.to_string()));
            Yuan(0)
        })
    };
    let income_per_capita = money("人均纯收入", v.income_per_capita);
    let collective_income = money("村集体经济收入", v.collective_income);
    let Some(code) = code else { return Err(errs) };
    let village = Village {
        year,
        code,
        name: v.name.trim().to_string(),
        households,
        population,
        poor_households,
        poor_population,
        income_per_capita,
        collective_income,
        status: Status::Applied,
        items: BTreeMap::new(),
    };
    errs.extend(village.validate().into_iter().map(|x| (x.field, x.message)));
    if errs.is_empty() { Ok(village) } else { Err(errs) }
}

/// Writes a village through change capture; an existing one keeps its status.
pub fn write_village(conn: &rusqlite::Connection, cap: &mut Capture, v: &Village) -> Result<usize> {
    let r = v.to_record();
    let mut values = r.fields.clone();
    if let Some(s) = store::load(conn, &r.key)?.filter(|s| !s.deleted)
        && let Some(st) = s.get("status")
    {
        values.insert("status".into(), st.to_string());
    }
    cap.upsert(conn, &r.key, &values)
}

pub fn import_villages(node: &mut Node, path: &Path, year: Year, dry_run: bool) -> Result<RowsReport> {
    let file = path.display().to_string();
    let table = table::read(path)?;
    let mut cols: BTreeMap<usize, usize> = BTreeMap::new();
    for (i, h) in table.headers.iter().enumerate() {
        if let Some(c) = VCol::ALL.iter().position(|c| {
            let (zh, en) = c.names();
            h == zh || h.eq_ignore_ascii_case(en)
        }) {
            cols.insert(c, i);
        }
    }
    let missing: Vec<&str> =
        VCol::ALL.iter().enumerate().filter(|(i, _)| !cols.contains_key(i)).map(|(_, c)| c.names().0).collect();
    if !missing.is_empty() {
        bail!("{file}:1: the header lacks columns: {} (贫困村登记表)", missing.join(", "));
    }
    // The form's other parts: whichever of their columns the file has.
    let items: Vec<(usize, &Item)> =
        table.headers.iter().enumerate().filter_map(|(i, h)| Item::by_header(h).map(|it| (i, it))).collect();
    let township = node.township().clone();
    let mut report = RowsReport { file: file.clone(), rows: table.rows.len(), dry_run, ..Default::default() };
    let tx = node.conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let mut cap = Capture::begin(&tx, &township, node.clock)?;
    let mut seen = HashMap::new();
    for (line, cells) in &table.rows {
        let get = |c: VCol| cells.get(cols[&(c as usize)]).map(String::as_str).unwrap_or("");
        let input = VillageInput {
            code: get(VCol::Code),
            name: get(VCol::Name),
            households: get(VCol::Households),
            population: get(VCol::Population),
            poor_households: get(VCol::PoorHouseholds),
            poor_population: get(VCol::PoorPopulation),
            income_per_capita: get(VCol::IncomePerCapita),
            collective_income: get(VCol::CollectiveIncome),
        };
        if let Some(first) = seen.insert(input.code.to_string(), *line) {
            report.errors.push(RowError {
                file: file.clone(),
                line: *line,
                column: "村代码".into(),
                reason: format!("village {} already appears at line {first}", input.code),
            });
            report.refused += 1;
            continue;
        }
        let mut read_items = BTreeMap::new();
        let mut item_errors = Vec::new();
        for (i, it) in &items {
            match it.read(cells.get(*i).map(String::as_str).unwrap_or("")) {
                Ok(Some(v)) => {
                    read_items.insert(it.field.to_string(), v);
                }
                Ok(None) => {}
                Err(e) => item_errors.push((format!("{} ({})", it.header, it.part), e)),
            }
        }
        let parsed = match parse_village(&input, year, &township) {
            Ok(v) if item_errors.is_empty() => Ok(Village { items: read_items, ..v }),
            Ok(_) => Err(item_errors),
            Err(mut errs) => {
                errs.extend(item_errors);
                Err(errs)
            }
        };
        match parsed {
            Ok(v) => {
                report.records_changed += (write_village(&tx, &mut cap, &v)? > 0) as usize;
                report.imported += 1;
            }
            Err(errs) => {
                report.refused += 1;
                report.errors.extend(errs.into_iter().map(|(column, reason)| RowError {
                    file: file.clone(),
                    line: *line,
                    column,
                    reason,
                }));
            }
        }
    }
    cap.finish(&tx)?;
    if dry_run {
        tx.rollback()?;
    } else {
        tx.commit()?;
    }
    Ok(report)
}
