//! What the township posts and files, as commands: `notice` (the lists of a notice step),
//! `export` (the register in the import columns) and `assistance` (the handbook's parts 4–6).

use super::args::{AssistanceCmd, NoticeFormat, TableFormat};
use super::{bad, open, print_rows_report, year_in_force};
use crate::clock::Clock;
use crate::node::Node;
use anyhow::{Context, Result};
use jianka_shared::Year;
use jianka_term::outln;
use std::path::Path;
use std::process::ExitCode;

/// What `notice` lists.
pub struct NoticeArgs<'a> {
    pub step: &'a str,
    pub village: Option<&'a str>,
    pub villages: bool,
    pub format: NoticeFormat,
    pub encoding: &'a str,
}

fn encoding(s: &str) -> Result<jianka_publish::Encoding> {
    s.parse().map_err(|e: String| bad(anyhow::anyhow!(e)))
}

fn write(out: &Path, bytes: Vec<u8>) -> Result<()> {
    std::fs::write(out, bytes).with_context(|| format!("cannot write {}", out.display()))
}

/// A table in the chosen format; `sheet` names an XLSX's data sheet.
fn table_bytes(table: &jianka_publish::Table, (format, enc): (TableFormat, &str), sheet: &str) -> Result<Vec<u8>> {
    match format {
        TableFormat::Csv => jianka_publish::table_csv(table, encoding(enc)?),
        TableFormat::Xlsx => jianka_publish::table_xlsx(table, sheet),
    }
}

pub fn notice(node: &Node, a: NoticeArgs, out: &Path, year: Option<Year>) -> Result<ExitCode> {
    let y = year_in_force(node, year);
    let list = if a.villages {
        let flow = node.cfg.village_flow().map_err(bad)?;
        crate::notice::village_notice_list(node, y, a.step, &flow)?
    } else {
        let flow = node.cfg.household_flow().map_err(bad)?;
        crate::notice::notice_list(node, y, a.step, a.village, &flow)?
    };
    let bytes = match a.format {
        NoticeFormat::Csv => jianka_publish::to_csv(&list, encoding(a.encoding)?)?,
        NoticeFormat::Xlsx => jianka_publish::to_xlsx(&list)?,
        NoticeFormat::Html => jianka_publish::to_html(&list).into_bytes(),
    };
    write(out, bytes)?;
    let what = if a.villages {
        format!("{} villages", list.len())
    } else {
        format!("{} households of {} villages", list.len(), list.villages.len())
    };
    outln!("{}: {what} written to {}", list.title, out.display())?;
    Ok(ExitCode::SUCCESS)
}

pub fn export(
    node: &Node,
    (village, full): (Option<&str>, bool),
    format: (TableFormat, &str),
    out: &Path,
    year: Option<Year>,
) -> Result<ExitCode> {
    let y = year_in_force(node, year);
    let reg = crate::export::register(node, y, village, full)?;
    let note = full.then_some(crate::export::INTERNAL);
    let table = jianka_publish::Table { headers: &reg.headers, rows: &reg.rows, note };
    write(out, table_bytes(&table, format, &format!("扶贫手册{y}"))?)?;
    let what = if full { "internal: identity numbers in full" } else { "identity numbers masked" };
    outln!("{} households ({} members) of {y} written to {} ({what})", reg.households, reg.rows.len(), out.display())?;
    Ok(ExitCode::SUCCESS)
}

pub fn assistance(cmd: AssistanceCmd, config: &Path, clock: Clock) -> Result<ExitCode> {
    let mut node = open(config, clock)?;
    match cmd {
        AssistanceCmd::Import { file, dry_run, json, year } => {
            let y = year_in_force(&node, year.year);
            let r = crate::assistance::import(&mut node, &file, y, dry_run).map_err(bad)?;
            print_rows_report(&r, json)
        }
        AssistanceCmd::Add { sets, year } => {
            let y = year_in_force(&node, year.year);
            let mut cells = std::collections::BTreeMap::new();
            for s in &sets {
                let Some((k, v)) = s.split_once('=') else {
                    return Err(bad(anyhow::anyhow!("--set {s:?}: write 列名=值, e.g. --set 部分=帮扶措施")));
                };
                cells.insert(k.trim().to_string(), v.to_string());
            }
            let key = crate::assistance::add(&mut node, y, &cells)?;
            outln!("entry {key} queued")?;
            Ok(ExitCode::SUCCESS)
        }
        AssistanceCmd::Export { format, encoding, out, year } => {
            let y = year_in_force(&node, year.year);
            let (headers, rows) = crate::assistance::export_rows(&node, y)?;
            let table = jianka_publish::Table { headers: &headers, rows: &rows, note: None };
            write(&out, table_bytes(&table, (format, &encoding), &format!("帮扶记录{y}"))?)?;
            outln!("{} entries of {y} written to {}", rows.len(), out.display())?;
            Ok(ExitCode::SUCCESS)
        }
    }
}
