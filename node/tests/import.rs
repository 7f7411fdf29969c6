//! Importer: every rule of domain.md §3, both encodings, both file types, re-import, dry run,
//! and a 100,000-row file.

mod common;
use common::*;
use jianka_node::import::{ImportOptions, ImportReport, import_households};
use jianka_node::store;
use jianka_shared::IdNumber;
use jianka_shared::record::RecordKind;
use std::time::Instant;

const YEAR: u16 = 2014;
const NOW: &str = "2014-06-01T09:00:00+08:00";

fn c(name: &str) -> usize {
    HEADERS.iter().position(|h| *h == name).unwrap()
}

fn opts() -> ImportOptions {
    ImportOptions { year: YEAR, dry_run: false, progress_over: usize::MAX }
}

fn run(t: &TestNode, rows: &[Vec<String>]) -> ImportReport {
    let p = t.path("in.csv");
    write_csv(&p, rows);
    let mut node = t.open(clock_at(NOW));
    import_households(&mut node, &p, opts()).unwrap()
}

/// Three good households then whatever the test breaks in household "0002" (lines 4–5).
fn base() -> Vec<Vec<String>> {
    let mut rows = household_rows(VILLAGE, "0001", 2, 1);
    rows.extend(household_rows(VILLAGE, "0002", 2, 2));
    rows.extend(household_rows(VILLAGE, "0003", 3, 3));
    rows
}

/// The broken household is refused with the named line and column; the others are imported.
fn assert_refused(rows: Vec<Vec<String>>, line: u64, column: &str, reason_part: &str) {
    let t = TestNode::new();
    let r = run(&t, &rows);
    assert!(
        r.errors.iter().any(|e| e.line == line && e.column == column && e.reason.contains(reason_part)),
        "expected line {line} column {column} containing {reason_part:?}; got {:#?}",
        r.errors
    );
    assert_eq!(r.households_refused, 1, "{:#?}", r.errors);
    assert_eq!(r.households_imported, 2);
    let node = t.open(clock_at(NOW));
    let ids: Vec<String> =
        store::records(&node.conn, RecordKind::Household, YEAR).unwrap().into_iter().map(|r| r.key.id).collect();
    assert_eq!(ids, vec![format!("{VILLAGE}-0001"), format!("{VILLAGE}-0003")]);
    // Nothing of the refused household leaked in.
    let members = store::members_of(&node.conn, YEAR, &format!("{VILLAGE}-0002")).unwrap();
    assert!(members.is_empty());
}

#[test]
fn good_file_imports_and_reimport_changes_nothing() {
    let t = TestNode::new();
    let rows = base();
    let r = run(&t, &rows);
    assert!(r.errors.is_empty(), "{:#?}", r.errors);
    assert_eq!((r.households_imported, r.members_imported, r.records_changed), (3, 7, 10));
    let node = t.open(clock_at(NOW));
    let before = store::pending_changes(&node.conn).unwrap();
    assert_eq!(before, 10);
    drop(node);
    let again = run(&t, &rows);
    assert_eq!((again.records_changed, again.changes_captured), (0, 0));
    let node = t.open(clock_at(NOW));
    assert_eq!(store::pending_changes(&node.conn).unwrap(), before);
    let h =
        store::load(&node.conn, &jianka_shared::RecordKey::new(RecordKind::Household, YEAR, format!("{VILLAGE}-0003")))
            .unwrap()
            .unwrap();
    assert_eq!(h.get("status"), Some("Applied"));
    assert_eq!(h.get("other_causes"), Some("缺资金、缺技术"));
    assert_eq!(h.get("members"), Some("3"));
}

#[test]
fn changed_value_on_reimport_writes_only_that_field_with_its_base() {
    let t = TestNode::new();
    let mut rows = base();
    run(&t, &rows);
    rows[0][c("联系电话")] = "13900000000".into();
    let r = run(&t, &rows);
    assert_eq!((r.records_changed, r.changes_captured), (1, 1));
    let node = t.open(clock_at(NOW));
    let op: String = node.conn.query_row("SELECT op FROM changes ORDER BY cid DESC LIMIT 1", [], |r| r.get(0)).unwrap();
    let op: jianka_shared::changeset::Op = serde_json::from_str(&op).unwrap();
    match op {
        jianka_shared::changeset::Op::Upsert { fields, .. } => {
            assert_eq!(fields.len(), 1);
            assert_eq!(fields[0].name, "phone");
            assert!(fields[0].base > jianka_shared::Hlc::ZERO && fields[0].version > fields[0].base);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn dry_run_writes_nothing() {
    let t = TestNode::new();
    let p = t.path("in.csv");
    write_csv(&p, &base());
    let mut node = t.open(clock_at(NOW));
    let r = import_households(&mut node, &p, ImportOptions { dry_run: true, ..opts() }).unwrap();
    assert_eq!(r.households_imported, 3);
    assert_eq!(store::pending_changes(&node.conn).unwrap(), 0);
    assert!(store::records(&node.conn, RecordKind::Household, YEAR).unwrap().is_empty());
}

// ---- rule 1: ID numbers ----

#[test]
fn rule1_wrong_check_digit() {
    let mut rows = base();
    let mut id = rows[2][c("身份证号")].clone();
    let last = id.pop().unwrap();
    id.push(if last == '0' { '1' } else { '0' });
    rows[2][c("身份证号")] = id;
    assert_refused(rows, 4, "身份证号", "check digit");
}

#[test]
fn rule1_old_15_digit_number() {
    let mut rows = base();
    rows[2][c("身份证号")] = "420322600101001".into();
    assert_refused(rows, 4, "身份证号", "15-digit");
}

#[test]
fn rule1_future_and_impossible_birth_dates() {
    let mut rows = base();
    // Born after "today" (2014-06-01).
    rows[3][c("身份证号")] = id(2015, 1, 1, 2);
    assert_refused(rows, 5, "身份证号", "future");
    let mut rows = base();
    let body = "42032219490230002";
    rows[3][c("身份证号")] = format!("{body}{}", jianka_shared::id_number::check_digit(body.as_bytes()));
    assert_refused(rows, 5, "身份证号", "not a real date");
}

#[test]
fn rule1_sex_must_match_the_id_number() {
    let mut rows = base();
    rows[3][c("性别")] = "男".into();
    assert_refused(rows, 5, "性别", "ID number");
}

// ---- rule 2: one person, one household ----

#[test]
fn rule2_same_person_in_two_households_of_the_file() {
    let mut rows = base();
    // Household 0002's spouse is also household 0001's spouse: both households are refused.
    rows[3][c("身份证号")] = rows[1][c("身份证号")].clone();
    let t = TestNode::new();
    let r = run(&t, &rows);
    assert!(
        r.errors.iter().any(|e| e.line == 5 && e.column == "身份证号" && e.reason.contains("line 3")),
        "{:#?}",
        r.errors
    );
    assert_eq!((r.households_imported, r.households_refused), (1, 2));
}

#[test]
fn rule2_same_person_as_in_the_register() {
    let t = TestNode::new();
    run(&t, &household_rows(VILLAGE, "0009", 2, 2));
    // The same people re-registered under another number (分户/空挂户) are refused.
    let r = run(&t, &base());
    assert!(
        r.errors.iter().any(|e| e.line == 4 && e.reason.contains("already a member of household")),
        "{:#?}",
        r.errors
    );
    assert_eq!(r.households_refused, 1);
}

// ---- rule 3: household shape ----

#[test]
fn rule3_exactly_one_head() {
    let mut rows = base();
    rows[3][c("与户主关系")] = "户主".into();
    assert_refused(rows, 5, "与户主关系", "exactly one 户主");
    let mut rows = base();
    rows[2][c("与户主关系")] = "配偶".into();
    assert_refused(rows, 4, "与户主关系", "has 0");
}

#[test]
fn rule3_village_code_and_township() {
    let mut rows = base();
    for r in &mut rows[2..4] {
        r[c("村代码")] = "420323105200".into();
    }
    let t = TestNode::new();
    let r = run(&t, &rows);
    assert!(r.errors.iter().any(|e| e.column == "村代码" && e.reason.contains("outside township")), "{:#?}", r.errors);
    let mut rows = base();
    for r in &mut rows[2..4] {
        r[c("村代码")] = "42032210520".into();
    }
    let t = TestNode::new();
    let r = run(&t, &rows);
    assert!(r.errors.iter().any(|e| e.line == 4 && e.column == "村代码"), "{:#?}", r.errors);
}

#[test]
fn rule3_household_columns_on_other_rows_must_agree() {
    let mut rows = base();
    rows[3][c("家庭年纯收入")] = "9999".into();
    assert_refused(rows, 5, "家庭年纯收入", "differs from the 户主's row");
}

#[test]
fn rule3_member_count_is_the_rows() {
    // members is derived from the rows, so a household written has members = its rows.
    let t = TestNode::new();
    run(&t, &base());
    let node = t.open(clock_at(NOW));
    for h in store::records(&node.conn, RecordKind::Household, YEAR).unwrap() {
        let n = store::members_of(&node.conn, YEAR, &h.key.id).unwrap().len();
        assert_eq!(h.fields["members"], n.to_string());
    }
}

// ---- rule 4: causes ----

#[test]
fn rule4_main_cause_exactly_one_from_the_list() {
    let mut rows = base();
    rows[2][c("主要致贫原因")] = "".into();
    assert_refused(rows, 4, "主要致贫原因", "exactly one");
    let mut rows = base();
    rows[2][c("主要致贫原因")] = "因病、因残".into();
    assert_refused(rows, 4, "主要致贫原因", "not several");
    let mut rows = base();
    rows[2][c("主要致贫原因")] = "懒".into();
    assert_refused(rows, 4, "主要致贫原因", "allowed");
}

#[test]
fn rule4_at_most_two_other_causes_none_the_main() {
    let mut rows = base();
    rows[2][c("其他致贫原因")] = "缺资金、缺技术;缺水".into();
    assert_refused(rows, 4, "其他致贫原因", "at most two");
    let mut rows = base();
    rows[2][c("其他致贫原因")] = "因病".into();
    assert_refused(rows, 4, "其他致贫原因", "already the main cause");
}

// ---- rule 5: incomes ----

#[test]
fn rule5_incomes_non_negative_numbers() {
    let mut rows = base();
    rows[2][c("家庭年纯收入")] = "-5".into();
    assert_refused(rows, 4, "家庭年纯收入", "negative");
    let mut rows = base();
    rows[2][c("家庭年纯收入")] = "三千".into();
    assert_refused(rows, 4, "家庭年纯收入", "not an amount");
}

#[test]
fn rule5_per_capita_is_income_over_members() {
    let mut rows = base();
    rows[2][c("人均纯收入")] = "2500".into();
    assert_refused(rows, 4, "人均纯收入", "per-capita income");
}

#[test]
fn labels_are_checked_with_the_allowed_values_named() {
    let mut rows = base();
    rows[3][c("文化程度")] = "博士".into();
    assert_refused(rows, 5, "文化程度", "allowed");
    let mut rows = base();
    rows[3][c("新农合")] = "有".into();
    assert_refused(rows, 5, "新农合", "是, 否");
}

#[test]
fn missing_header_is_a_clear_error() {
    let t = TestNode::new();
    let p = t.path("bad.csv");
    std::fs::write(&p, "村代码,户编号,姓名\n420322105200,1,王\n").unwrap();
    let mut node = t.open(clock_at(NOW));
    let e = import_households(&mut node, &p, opts()).unwrap_err().to_string();
    assert!(e.contains("lacks required columns") && e.contains("身份证号"), "{e}");
}

#[test]
fn english_headers_are_accepted() {
    let t = TestNode::new();
    let p = t.path("en.csv");
    let text = csv_text(&base());
    let english = "village_code,household_number,name,id_number,relation,sex,education,schooling,health,labour,\
migrant_work,medical_insurance,pension_insurance,attribute,standard,main_cause,other_causes,income,income_per_capita,\
unsafe_housing,water_difficulty,phone,bank_account,helper_name,helper_unit,helper_phone";
    let body = text.split_once('\n').unwrap().1;
    std::fs::write(&p, format!("{english}\n{body}")).unwrap();
    let mut node = t.open(clock_at(NOW));
    let r = import_households(&mut node, &p, opts()).unwrap();
    assert!(r.errors.is_empty(), "{:#?}", r.errors);
    assert_eq!(r.households_imported, 3);
}

// ---- encodings and file types ----

#[test]
fn gbk_and_utf8_bom_files_import_the_same() {
    let text = csv_text(&base());
    for (name, bytes) in [
        ("gbk.csv", encoding_rs::GBK.encode(&text).0.into_owned()),
        ("bom.csv", [b"\xEF\xBB\xBF".as_slice(), text.as_bytes()].concat()),
    ] {
        let t = TestNode::new();
        let p = t.path(name);
        std::fs::write(&p, bytes).unwrap();
        let mut node = t.open(clock_at(NOW));
        let r = import_households(&mut node, &p, opts()).unwrap();
        assert!(r.errors.is_empty(), "{name}: {:#?}", r.errors);
        assert_eq!(r.households_imported, 3, "{name}");
        let h = store::records(&node.conn, RecordKind::Household, YEAR).unwrap();
        assert_eq!(h[0].fields["helper_unit"], "县扶贫办", "{name}");
    }
}

#[test]
fn xlsx_imports_like_csv_and_reports_sheet_rows() {
    let t = TestNode::new();
    let mut rows = base();
    let p = t.path("good.xlsx");
    write_xlsx(&p, &HEADERS, &rows);
    let mut node = t.open(clock_at(NOW));
    let r = import_households(&mut node, &p, opts()).unwrap();
    assert!(r.errors.is_empty(), "{:#?}", r.errors);
    assert_eq!(r.households_imported, 3);
    // Same data as CSV: re-importing the CSV changes nothing.
    let csv = t.path("same.csv");
    write_csv(&csv, &rows);
    let again = import_households(&mut node, &csv, opts()).unwrap();
    assert_eq!(again.changes_captured, 0);
    // A bad cell is reported at its sheet row.
    rows[3][c("性别")] = "男".into();
    let p2 = t.path("bad.xlsx");
    write_xlsx(&p2, &HEADERS, &rows);
    let r = import_households(&mut node, &p2, ImportOptions { dry_run: true, ..opts() }).unwrap();
    assert!(r.errors.iter().any(|e| e.line == 5 && e.column == "性别"), "{:#?}", r.errors);
}

#[test]
fn hundred_thousand_rows() {
    // 25,000 households of 4 = 100,000 member rows.
    let t = TestNode::new();
    let p = t.path("big.csv");
    let mut rows = Vec::with_capacity(100_000);
    for k in 0..25_000u32 {
        let village = if k % 2 == 0 { VILLAGE } else { VILLAGE2 };
        rows.extend(household_rows(village, &format!("{k:05}"), 4, k));
    }
    write_csv(&p, &rows);
    let mut node = t.open(clock_at(NOW));
    let started = Instant::now();
    let r = import_households(&mut node, &p, opts()).unwrap();
    let secs = started.elapsed().as_secs_f64();
    assert!(r.errors.is_empty(), "{:?}", &r.errors[..r.errors.len().min(5)]);
    assert_eq!((r.rows, r.households_imported, r.members_imported), (100_000, 25_000, 100_000));
    println!("import of 100,000 rows: {secs:.2} s, {:.0} rows/s (this build's profile)", 100_000.0 / secs);
    let started = Instant::now();
    let again = import_households(&mut node, &p, opts()).unwrap();
    assert_eq!(again.changes_captured, 0);
    println!("re-import (no changes): {:.2} s", started.elapsed().as_secs_f64());
}

// ---- through the real binary: what the clerk reads ----

/// The clerk's import run: (exit code, stdout, stderr).
fn import_with_binary(t: &TestNode, file: &std::path::Path, extra: &[&str]) -> (Option<i32>, String, String) {
    let out = t.command(NOW).arg("import").arg(file).args(["--year", "2014"]).args(extra).output().unwrap();
    (out.status.code(), String::from_utf8(out.stdout).unwrap(), String::from_utf8(out.stderr).unwrap())
}

#[test]
fn line_numbers_are_the_files_own_for_every_encoding_and_line_end() {
    let mut rows = base();
    // A quoted cell over two lines in the first household: every later row is one line further.
    rows[0][c("帮扶单位")] = "县扶贫办\n二组".into();
    rows[3][c("性别")] = "男".into();
    // Header line 1, household 0001 lines 2–4, household 0002 lines 5–6: the bad row is line 6.
    let lf = csv_text(&rows);
    assert!(!lf.contains('\r'));
    let crlf = lf.replace('\n', "\r\n");
    for (line_end, text) in [("LF", lf), ("CRLF", crlf)] {
        let encodings = [
            ("UTF-8", text.as_bytes().to_vec()),
            ("UTF-8 with BOM", [b"\xEF\xBB\xBF".as_slice(), text.as_bytes()].concat()),
            ("GBK", encoding_rs::GBK.encode(&text).0.into_owned()),
        ];
        for (encoding, bytes) in encodings {
            let t = TestNode::new();
            let p = t.path("hh.csv");
            std::fs::write(&p, bytes).unwrap();
            let (code, _, stderr) = import_with_binary(&t, &p, &["--dry-run"]);
            let expected = format!("{}:6: 性别:", p.display());
            assert!(stderr.contains(&expected), "{encoding}, {line_end}: expected {expected:?} in\n{stderr}");
            assert_eq!(code, Some(2), "{encoding}, {line_end}");
        }
    }
}

#[test]
fn invalid_id_numbers_are_masked_in_errors() {
    let mut rows = base();
    let good = rows[2][c("身份证号")].clone();
    let mut bad = good.clone();
    let last = bad.pop().unwrap();
    bad.push(if last == '0' { '1' } else { '0' });
    rows[2][c("身份证号")] = bad.clone();
    // A number of the wrong length and one with a letter inside are masked as well.
    rows[4][c("身份证号")] = format!("{}7", &good[..16]);
    rows[5][c("身份证号")] = format!("{}A{}", &good[..8], &good[9..]);
    let t = TestNode::new();
    let p = t.path("hh.csv");
    write_csv(&p, &rows);
    let (code, stdout, stderr) = import_with_binary(&t, &p, &["--dry-run"]);
    assert_eq!(code, Some(2));
    let masked = jianka_shared::id_number::mask(&bad);
    assert!(stderr.contains(&format!("{}:4: 身份证号: ", p.display())) && stderr.contains(&masked), "{stderr}");
    assert!(stderr.contains("check digit"), "{stderr}");
    assert!(stderr.contains(&format!("{}:6: 身份证号: ", p.display())), "{stderr}");
    assert!(stderr.contains(&format!("{}:7: 身份证号: ", p.display())), "{stderr}");
    for (what, output) in [("stderr", &stderr), ("stdout", &stdout)] {
        for number in [&bad, &rows[4][c("身份证号")], &rows[5][c("身份证号")]] {
            assert!(!output.contains(number.as_str()), "{what} shows {number} in clear:\n{output}");
        }
        // Nor its birth date: with the two ends kept, that would be most of the number.
        assert!(!output.contains(&bad[6..14]), "{what} shows the birth date of {masked}:\n{output}");
    }
    let (_, json, _) = import_with_binary(&t, &p, &["--dry-run", "--json"]);
    assert!(json.contains(&masked) && !json.contains(&bad), "{json}");
}

#[test]
fn an_id_number_stored_as_a_number_in_excel_is_named_as_such() {
    let mut rows = base();
    // What Excel keeps of an 18-digit number typed into a number cell: 15 digits.
    let typed = rows[3][c("身份证号")].clone();
    rows[3][c("身份证号")] = format!("{}.{}E+17", &typed[..1], &typed[1..15]);
    let t = TestNode::new();
    let p = t.path("hh.xlsx");
    write_xlsx_with_numbers(&p, &HEADERS, &rows, &[0, c("身份证号")]);
    let (code, _, stderr) = import_with_binary(&t, &p, &["--dry-run"]);
    assert_eq!(code, Some(2), "{stderr}");
    let line = stderr.lines().find(|l| l.contains(&format!("{}:5: 身份证号: ", p.display()))).unwrap_or_else(|| {
        panic!("no error for line 5:\n{stderr}");
    });
    for part in ["number", "15 digits", "text", "again"] {
        assert!(line.contains(part), "{part:?} missing from {line:?}");
    }
    assert!(!line.contains("mistyped"), "{line}");
    assert!(!stderr.contains(&typed[..15]), "{stderr}");
    // The column's other numbers (those without an X) were number cells too: each is named on its line.
    for (i, _) in rows.iter().enumerate().filter(|(_, r)| r[c("身份证号")].bytes().all(|b| b.is_ascii_digit())) {
        let l = i + 2;
        assert!(stderr.contains(&format!("{}:{l}: 身份证号: the cell", p.display())), "line {l}:\n{stderr}");
    }
}

#[test]
fn an_id_number_a_spreadsheet_wrote_out_from_a_number_cell_is_named_as_such() {
    // Saved as CSV from a number cell: 15 digits, then zeros (household 0001's spouse, line 3).
    let mut rows = base();
    let typed = rows[1][c("身份证号")].clone();
    let written = format!("{}000", &typed[..15]);
    let today = chrono::NaiveDate::from_ymd_opt(2014, 6, 1).unwrap();
    assert!(IdNumber::parse(&written, today).is_err(), "{written} passes its check digit: pick another row");
    rows[1][c("身份证号")] = written;
    let t = TestNode::new();
    let p = t.path("hh.csv");
    write_csv(&p, &rows);
    let (code, _, stderr) = import_with_binary(&t, &p, &["--dry-run"]);
    assert_eq!(code, Some(2));
    let line = stderr.lines().find(|l| l.contains(&format!("{}:3: 身份证号: ", p.display()))).unwrap();
    assert!(line.contains("ends in 000") && line.contains("15") && line.contains("as text"), "{line}");
}

#[test]
fn every_refused_household_names_its_reason() {
    let mut rows = base();
    // Household 0002's spouse (line 5) is also household 0001's spouse (line 3).
    rows[3][c("身份证号")] = rows[1][c("身份证号")].clone();
    let t = TestNode::new();
    let p = t.path("hh.csv");
    write_csv(&p, &rows);
    let (code, json, _) = import_with_binary(&t, &p, &["--dry-run", "--json"]);
    assert_eq!(code, Some(2));
    let report: serde_json::Value = serde_json::from_str(&json).unwrap();
    let refused = report["households_refused"].as_u64().unwrap();
    let named: std::collections::BTreeSet<&str> = report["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| rows[e["line"].as_u64().unwrap() as usize - 2][c("户编号")].as_str())
        .collect();
    assert_eq!((refused, named.len() as u64), (2, 2), "{json}");
    let (_, _, stderr) = import_with_binary(&t, &p, &["--dry-run"]);
    assert!(stderr.contains(&format!("{}:3: 身份证号: ", p.display())) && stderr.contains("line 5"), "{stderr}");
}

#[test]
fn phones_and_bank_accounts_are_masked_in_errors() {
    let mut rows = base();
    // The spouse's row repeats household columns with other values.
    rows[3][c("联系电话")] = "13912345678".into();
    rows[3][c("开户银行账号")] = "6228480012345678901".into();
    let t = TestNode::new();
    let p = t.path("hh.csv");
    write_csv(&p, &rows);
    let (code, _, stderr) = import_with_binary(&t, &p, &["--dry-run"]);
    assert_eq!(code, Some(2));
    assert!(stderr.contains(&format!("{}:5: 联系电话: ", p.display())), "{stderr}");
    assert!(stderr.contains(&format!("{}:5: 开户银行账号: ", p.display())), "{stderr}");
    for number in ["13912345678", "6228480012345678901", "13800000000", "6217000000000000"] {
        assert!(!stderr.contains(number), "{number} in clear:\n{stderr}");
    }
    assert!(stderr.contains(&jianka_shared::id_number::mask("13912345678")), "{stderr}");
}
