//! The registers as commands: `village` (add, import, advance through the village flow) and
//! `household` (show, list, edit).

use super::args::{HouseholdCmd, VillageCmd};
use super::{bad, open, print_json, print_rows_report, year_in_force};
use crate::clock::Clock;
use crate::edit::{self, Refused};
use crate::import::{self, VillageInput};
use crate::store::Capture;
use crate::{vocabulary, workflow};
use anyhow::Result;
use jianka_term::outln;
use std::path::Path;
use std::process::ExitCode;

pub fn village(cmd: VillageCmd, config: &Path, clock: Clock) -> Result<ExitCode> {
    let mut node = open(config, clock)?;
    match cmd {
        VillageCmd::Add {
            code,
            name,
            households,
            population,
            poor_households,
            poor_population,
            income_per_capita,
            collective_income,
            year,
        } => {
            let y = year_in_force(&node, year);
            let input = VillageInput {
                code: &code,
                name: &name,
                households: &households,
                population: &population,
                poor_households: &poor_households,
                poor_population: &poor_population,
                income_per_capita: &income_per_capita,
                collective_income: &collective_income,
            };
            let v = import::parse_village(&input, y, node.township()).map_err(|errs| {
                Refused(errs.into_iter().map(|(c, r)| format!("{c}: {r}")).collect::<Vec<_>>().join("; "))
            })?;
            let township = node.township().clone();
            let tx = node.conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let mut cap = Capture::begin(&tx, &township, node.clock)?;
            let n = import::write_village(&tx, &mut cap, &v)?;
            cap.finish(&tx)?;
            tx.commit()?;
            outln!("village {} ({}): {n} field(s) written", v.code, v.name)?;
            Ok(ExitCode::SUCCESS)
        }
        VillageCmd::Advance { code, date, year } => {
            let y = year_in_force(&node, year);
            let flow = node.cfg.village_flow().map_err(bad)?;
            let today = node.clock.today();
            let (from, to) = crate::village_flow::advance_village(&mut node, y, &code, date.unwrap_or(today), &flow)?;
            outln!("village {code}: {}", vocabulary::step_in(&flow, from, to))?;
            Ok(ExitCode::SUCCESS)
        }
        VillageCmd::Import { file, dry_run, year, json } => {
            let y = year_in_force(&node, year);
            let r = import::import_villages(&mut node, &file, y, dry_run).map_err(bad)?;
            print_rows_report(&r, json)
        }
    }
}

pub fn household(cmd: HouseholdCmd, config: &Path, clock: Clock) -> Result<ExitCode> {
    let mut node = open(config, clock)?;
    match cmd {
        HouseholdCmd::Show { id, year, json, full } => {
            let y = year_in_force(&node, year.year);
            let (rec, members) = edit::load_household(&node.conn, y, &id)?;
            let mask = |k: &str, v: &str| -> String {
                if !full && matches!(k, "bank_account" | "phone" | "helper_phone") {
                    jianka_shared::id_number::mask(v)
                } else {
                    v.to_string()
                }
            };
            let show_id = |s: &str| if full { s.to_string() } else { jianka_shared::id_number::mask(s) };
            if json {
                let v = serde_json::json!({
                    "id": rec.key.id,
                    "year": y,
                    "fields": rec.fields.iter().map(|(k, v)| (k.clone(), mask(k, v))).collect::<std::collections::BTreeMap<_, _>>(),
                    "members": members.iter().map(|m| serde_json::json!({"id_number": show_id(&m.key.id), "fields": m.fields})).collect::<Vec<_>>(),
                });
                print_json(&v)?;
            } else {
                outln!("household {} (year {y})", rec.key.id)?;
                for (k, v) in &rec.fields {
                    let shown = if k == "status" { vocabulary::stored_status(v) } else { mask(k, v) };
                    outln!("  {k}: {shown}")?;
                }
                for m in &members {
                    outln!(
                        "  member {} {} {} {}",
                        show_id(&m.key.id),
                        m.fields.get("name").map(String::as_str).unwrap_or(""),
                        m.fields.get("relation").map(String::as_str).unwrap_or(""),
                        m.fields.get("sex").map(String::as_str).unwrap_or("")
                    )?;
                }
            }
        }
        HouseholdCmd::List { year, json } => {
            let y = year_in_force(&node, year.year);
            let rows: Vec<(String, String, String)> =
                crate::store::records(&node.conn, jianka_shared::RecordKind::Household, y)?
                    .into_iter()
                    .map(|r| {
                        let st = r.fields.get("status").cloned().unwrap_or_default();
                        // The deciding tier's word: the county's, or the township's own (镇级审定).
                        let dec = r.fields.get("county.decision").or_else(|| r.fields.get(workflow::TOWNSHIP_DECISION));
                        let dec = dec.cloned().unwrap_or_default();
                        (r.key.id, st, dec)
                    })
                    .collect();
            if json {
                print_json(&rows)?;
            } else {
                for (id, st, dec) in rows {
                    outln!("{id}\t{}\t{dec}", vocabulary::stored_status(&st))?;
                }
            }
        }
        HouseholdCmd::Edit { id, sets, year } => {
            let y = year_in_force(&node, year.year);
            let n = edit::household_edit(&mut node, y, &id, &sets)?;
            outln!("{n} change(s) queued")?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
