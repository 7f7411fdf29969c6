//! One row's cells read into the form: a member, a household's own columns and facts, and a
//! township rule's cell; every problem is (column, reason), never the value of a personal number.

use super::{Row, placeholder};
use crate::masking;
use jianka_shared::columns::Col;
use jianka_shared::domain::{Household, Member};
use jianka_shared::eligibility::{self, TownshipRule};
use jianka_shared::id_number::IdNumberError;
use jianka_shared::labels::*;
use jianka_shared::{IdNumber, Yuan};

type CellErrors = Vec<(Col, String)>;

pub(super) fn parse_member(r: &Row, today: chrono::NaiveDate) -> Result<Member, CellErrors> {
    let mut errs: CellErrors = Vec::new();
    macro_rules! label {
        ($col:expr, $ty:ty) => {
            match <$ty>::parse(r.get($col)) {
                Ok(v) => Some(v),
                Err(e) => {
                    errs.push(($col, e.to_string()));
                    None
                }
            }
        };
    }
    macro_rules! opt_label {
        ($col:expr, $ty:ty) => {
            match r.get($col) {
                "" => Some(None),
                s => match <$ty>::parse(s) {
                    Ok(v) => Some(Some(v)),
                    Err(e) => {
                        errs.push(($col, e.to_string()));
                        None
                    }
                },
            }
        };
    }
    macro_rules! yes_no {
        ($col:expr) => {
            match parse_yes_no($col.header(), r.get($col)) {
                Ok(v) => Some(v),
                Err(e) => {
                    errs.push(($col, e.to_string()));
                    None
                }
            }
        };
    }
    let name = r.get(Col::Name).to_string();
    if name.is_empty() {
        errs.push((Col::Name, "name is empty".into()));
    }
    let id = match IdNumber::parse(r.get(Col::IdNumber), today) {
        // An ID number a spreadsheet kept as a number has lost its last digits: say so rather
        // than call it mistyped.
        _ if r.lost_digits(Col::IdNumber) => {
            errs.push((
                Col::IdNumber,
                format!("{} (rule 1)", masking::lost_digits(Col::IdNumber.header(), r.get(Col::IdNumber))),
            ));
            None
        }
        Ok(id) => Some(id),
        // Written out in full from a number cell, the lost digits read as zeros.
        Err(e @ IdNumberError::WrongCheckDigit { .. }) if r.get(Col::IdNumber).ends_with("000") => {
            errs.push((
                Col::IdNumber,
                format!(
                    "{}; it ends in 000, as an ID number does that a spreadsheet stored as a number (it keeps 15 \
                     digits): format the {} column as text and enter the number again (rule 1)",
                    masking::id_number_error(&e),
                    Col::IdNumber.header()
                ),
            ));
            None
        }
        Err(e) => {
            errs.push((Col::IdNumber, format!("{} (rule 1)", masking::id_number_error(&e))));
            None
        }
    };
    let relation = label!(Col::Relation, Relation);
    let sex = label!(Col::Sex, Sex);
    let education = label!(Col::Education, Education);
    let schooling = opt_label!(Col::Schooling, Schooling);
    let health = label!(Col::Health, Health);
    let labour = label!(Col::Labour, Labour);
    let migrant = opt_label!(Col::MigrantWork, MigrantWork);
    let medical = yes_no!(Col::MedicalInsurance);
    let pension = yes_no!(Col::PensionInsurance);
    if !errs.is_empty() {
        return Err(errs);
    }
    match (id, relation, sex, education, schooling, health, labour, migrant, medical, pension) {
        (Some(id), Some(rel), Some(sex), Some(ed), Some(sc), Some(he), Some(la), Some(mw), Some(me), Some(pe)) => {
            Ok(Member {
                id_number: id,
                name,
                relation: rel,
                sex,
                education: ed,
                schooling: sc,
                health: he,
                labour: la,
                migrant_work: mw,
                medical_insurance: me,
                pension_insurance: pe,
            })
        }
        _ => Err(vec![(Col::Name, "row could not be read".into())]),
    }
}

/// Splits 其他致贫原因: at most two, separated by 、 or ; (also ；/,/，).
pub fn split_causes(s: &str) -> Vec<&str> {
    s.split(['、', ';', '；', ',', '，']).map(str::trim).filter(|c| !c.is_empty()).collect()
}

/// The fact a township rule's cell holds, as stored: 是/否, or an amount in yuan; `None` when empty.
pub(super) fn township_fact(rule: &TownshipRule, cell: &str) -> std::result::Result<Option<String>, String> {
    let cell = cell.trim();
    if cell.is_empty() {
        return Ok(None);
    }
    match rule.at_least_yuan {
        Some(_) => Yuan::parse(cell)
            .map(|y| Some(y.to_string()))
            .map_err(|e| format!("{e} (the township rule {})", rule.label)),
        None if eligibility::is_yes(cell) => Ok(Some("是".into())),
        None if matches!(cell, "否" | "无" | "no" | "n" | "N" | "0" | "false") => Ok(Some("否".into())),
        None => Err(format!("{cell:?} is not 是 or 否 (the township rule {})", rule.label)),
    }
}

pub(super) fn parse_household_facts(r: &Row) -> Result<Household, CellErrors> {
    let mut errs: CellErrors = Vec::new();
    let mut h = placeholder(0);
    match Attribute::parse(r.get(Col::Attribute)) {
        Ok(v) => h.attribute = v,
        Err(e) => errs.push((Col::Attribute, e.to_string())),
    }
    match Standard::parse(r.get(Col::Standard)) {
        Ok(v) => h.standard = v,
        Err(e) => errs.push((Col::Standard, e.to_string())),
    }
    match r.get(Col::MainCause) {
        "" => errs.push((Col::MainCause, "exactly one main cause is required (rule 4)".into())),
        s if split_causes(s).len() > 1 => {
            errs.push((Col::MainCause, format!("{s:?}: exactly one main cause, not several (rule 4)")))
        }
        s => match Cause::parse(s) {
            Ok(v) => h.main_cause = v,
            Err(e) => errs.push((Col::MainCause, format!("{e} (rule 4)"))),
        },
    }
    for c in split_causes(r.get(Col::OtherCauses)) {
        match Cause::parse(c) {
            Ok(v) => h.other_causes.push(v),
            Err(e) => errs.push((Col::OtherCauses, format!("{e} (rule 4)"))),
        }
    }
    match Yuan::parse(r.get(Col::Income)) {
        Ok(v) => h.income = v,
        Err(e) => errs.push((Col::Income, format!("{e} (rule 5)"))),
    }
    match Yuan::parse(r.get(Col::IncomePerCapita)) {
        Ok(v) => h.income_per_capita = v,
        Err(e) => errs.push((Col::IncomePerCapita, format!("{e} (rule 5)"))),
    }
    match parse_yes_no(Col::UnsafeHousing.header(), r.get(Col::UnsafeHousing)) {
        Ok(v) => h.unsafe_housing = v,
        Err(e) => errs.push((Col::UnsafeHousing, e.to_string())),
    }
    match parse_yes_no(Col::WaterDifficulty.header(), r.get(Col::WaterDifficulty)) {
        Ok(v) => h.water_difficulty = v,
        Err(e) => errs.push((Col::WaterDifficulty, e.to_string())),
    }
    h.phone = r.get(Col::Phone).into();
    if r.lost_digits(Col::BankAccount) {
        errs.push((Col::BankAccount, masking::lost_digits(Col::BankAccount.header(), r.get(Col::BankAccount))));
    }
    h.bank_account = r.get(Col::BankAccount).into();
    h.helper_name = r.get(Col::HelperName).into();
    h.helper_unit = r.get(Col::HelperUnit).into();
    h.helper_phone = r.get(Col::HelperPhone).into();
    match r.get(Col::HelperSince).trim() {
        "" => {}
        d => match chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d") {
            Ok(d) => h.helper_since = d.to_string(),
            Err(_) => errs.push((Col::HelperSince, format!("{d:?} is not a date (YYYY-MM-DD)"))),
        },
    }
    // Eligibility facts, where the file has them: 是/否 as the form writes it, amounts in yuan.
    for col in Col::FACTS {
        let cell = r.get(col).trim();
        if cell.is_empty() {
            continue;
        }
        let value = if col.is_flag() {
            parse_yes_no(col.header(), cell).map(|v| if v { "是" } else { "否" }.to_string()).map_err(|e| e.to_string())
        } else {
            Yuan::parse(cell).map(|y| y.to_string()).map_err(|e| e.to_string())
        };
        match value {
            Ok(v) => {
                h.facts.insert(col.field().to_string(), v);
            }
            Err(e) => errs.push((col, e)),
        }
    }
    if errs.is_empty() { Ok(h) } else { Err(errs) }
}
