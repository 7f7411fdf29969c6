//! The register exported in the import columns reads back unchanged, through the real binary, for
//! CSV UTF-8, CSV GBK and XLSX: importing the export into the same node changes no record, and a
//! fresh node that imports it exports the very same file (`import(export(x)) == x`). Every part
//! of the form is filled: members of every relation, optional columns, two other causes, the
//! 登记表's facts (是否有轿车 …, 因病支出 …), phones and accounts; names with commas and quotes.

mod common;

use jianka_shared::columns::Col;
use jianka_shared::domain::{Household, Status};
use jianka_shared::{Yuan, labels::Relation};
use jianka_tests::generate::{Generator, HEADERS, member_row};
use jianka_tests::harness::Node;
use proptest::prelude::*;
use serde_json::Value;
use std::path::Path;

const FACTS: [&str; 7] = [
    "是否有轿车",
    "是否购置商品房或门面房",
    "子女是否有赡养能力",
    "是否长期不在村居住",
    "因病支出",
    "因学支出",
    "因灾支出",
];

fn now() -> Vec<(String, String)> {
    vec![("JIANKA_NOW".into(), "2014-07-15T09:00:00+08:00".into())]
}

/// `n` households over two villages, every part filled from `seed`.
fn register(seed: u64, n: u32) -> Vec<Household> {
    let mut g = Generator::new(seed, 2014);
    (0..n)
        .map(|i| {
            let village = ["420322105200", "420322105201"][i as usize % 2];
            let mut h = g.household(village, i + 1, Status::Applied);
            let s = seed.wrapping_add(u64::from(i));
            if s % 3 == 0 {
                h.helper_name = "王, \"小\"明".into();
            }
            h.phone = format!("139{:08}", s % 100_000_000);
            h.bank_account = format!("6217{:015}", s % 1_000_000_000_000_000);
            if !s.is_multiple_of(2) {
                h.helper_since = "2014-05-10".into();
            }
            let yes = |k: u64| if (s >> k) & 1 == 1 { "是" } else { "否" };
            for (k, f) in ["has_car", "bought_housing", "children_can_support", "away_from_village"].iter().enumerate()
            {
                h.facts.insert(f.to_string(), yes(k as u64).into());
            }
            h.facts.insert("spending_illness".into(), Yuan::from_yuan((s % 9000) as i64).to_string());
            if s % 2 == 0 {
                h.facts.insert("spending_schooling".into(), "1200.50".into());
            }
            h
        })
        .collect()
}

fn write_file(path: &Path, hs: &[Household]) {
    let mut w = csv::Writer::from_path(path).unwrap();
    let mut header: Vec<&str> = HEADERS.to_vec();
    header.extend(FACTS);
    header.push("帮扶起始日期");
    w.write_record(&header).unwrap();
    let fields = [
        "has_car",
        "bought_housing",
        "children_can_support",
        "away_from_village",
        "spending_illness",
        "spending_schooling",
        "spending_disaster",
    ];
    for h in hs {
        for m in &h.members {
            let mut row = member_row(h, m).to_vec();
            let head = m.relation == Relation::Head;
            row.extend(
                fields.iter().map(|f| if head { h.facts.get(*f).cloned().unwrap_or_default() } else { String::new() }),
            );
            row.push(if head { h.helper_since.clone() } else { String::new() });
            w.write_record(&row).unwrap();
        }
    }
    w.flush().unwrap();
}

/// The 帮扶 file of `hs`: each household's plan, one or two measures and its result.
fn write_assistance(path: &Path, hs: &[Household], seed: u64) {
    let mut w = csv::Writer::from_path(path).unwrap();
    w.write_record(jianka_shared::assistance::headers()).unwrap();
    let kinds = jianka_shared::assistance::MEASURE_KINDS;
    for (i, h) in hs.iter().enumerate() {
        let s = seed.wrapping_add(i as u64);
        let (v, n) = (h.village.to_string(), h.number.clone());
        let plan = [
            &v,
            &n,
            "帮扶计划",
            "1",
            "2014",
            &format!("{}、{}", kinds[(s % 7) as usize], kinds[(s / 7 % 7) as usize]),
            "3500",
            "",
            "",
            "",
            "",
            "",
            "",
            "",
            "",
        ];
        w.write_record(plan).unwrap();
        for m in 1..=(1 + s % 2) {
            let amount = format!("{}", 1000 + s % 5000);
            let row = [
                &v,
                &n,
                "帮扶措施",
                &m.to_string(),
                "",
                kinds[((s + m) % 7) as usize],
                "",
                "2014-08-01",
                &amount,
                "财政专项扶贫资金",
                "张帮扶, \"县扶贫办\"",
                "",
                "",
                "",
                "",
            ];
            w.write_record(row).unwrap();
        }
        let exited = if s.is_multiple_of(3) { "是" } else { "否" };
        let (date, basis) =
            if exited == "是" { ("2014-12-20", "人均纯收入超过国家标准") } else { ("", "") };
        let result = [&v, &n, "帮扶成效", "1", "2014", "", "", "", "", "", "", "3650.50", exited, date, basis];
        w.write_record(result).unwrap();
    }
    w.flush().unwrap();
}

fn import(node: &Node, file: &Path) -> Value {
    let out = node.cmd(&["import", file.to_str().unwrap(), "--year", "2014", "--json"]).unwrap();
    serde_json::from_str(&out).unwrap()
}

fn export(node: &Node, format: &str, encoding: &str, out: &Path) -> Vec<u8> {
    node.cmd(&[
        "export",
        "--year",
        "2014",
        "--with-id-numbers",
        "--format",
        format,
        "--encoding",
        encoding,
        "--out",
        out.to_str().unwrap(),
    ])
    .unwrap();
    std::fs::read(out).unwrap()
}

/// One round trip of `hs` in `format`/`encoding`: what each step must hold.
fn round_trip(root: &Path, hs: &[Household], format: &str, encoding: &str) {
    let original = root.join("register.csv");
    write_file(&original, hs);
    let node = Node::init_with(&root.join("a"), "420322105", "http://127.0.0.1:9", now()).unwrap();
    let first = import(&node, &original);
    assert_eq!(first["households_imported"], hs.len(), "{first}");
    let file = root.join(format!("export.{format}"));
    let bytes = export(&node, format, encoding, &file);
    if (format, encoding) == ("csv", "utf-8") {
        same_as_the_original(&original, &file);
    }
    // Back into the same node: nothing changes.
    let again = import(&node, &file);
    assert_eq!(again["errors"].as_array().map(Vec::len), Some(0), "{again}");
    assert_eq!(again["households_imported"], hs.len(), "{again}");
    assert_eq!(again["records_changed"], 0, "import(export(x)) changed records: {again}");
    // Into a fresh node: it holds the same register, byte for byte as exported.
    let fresh = Node::init_with(&root.join("b"), "420322105", "http://127.0.0.1:9", now()).unwrap();
    import(&fresh, &file);
    let file2 = root.join(format!("export2.{format}"));
    let bytes2 = export(&fresh, format, encoding, &file2);
    if format == "csv" {
        assert_eq!(bytes, bytes2, "the fresh node's register differs");
    } else {
        assert_eq!(cells(&file), cells(&file2), "the fresh node's register differs");
    }

    // Parts 4–6 (帮扶计划, 帮扶措施, 帮扶成效): the same round trip.
    let help = root.join("assistance.csv");
    write_assistance(&help, hs, hs.len() as u64);
    let r = assist(&node, &["import", help.to_str().unwrap()]);
    assert_eq!(r["refused"], 0, "{r}");
    let entries = r["imported"].as_u64().unwrap();
    assert!(entries >= 3 * hs.len() as u64, "{r}");
    let out = root.join(format!("assistance-export.{format}"));
    let help_bytes = assist_export(&node, format, encoding, &out);
    let again = assist(&node, &["import", out.to_str().unwrap()]);
    assert_eq!((again["imported"].as_u64(), again["records_changed"].as_u64()), (Some(entries), Some(0)), "{again}");
    assist(&fresh, &["import", out.to_str().unwrap()]);
    let out2 = root.join(format!("assistance-export2.{format}"));
    let help_bytes2 = assist_export(&fresh, format, encoding, &out2);
    if format == "csv" {
        assert_eq!(help_bytes, help_bytes2, "the fresh node's 帮扶 entries differ");
    } else {
        assert_eq!(cells(&out), cells(&out2), "the fresh node's 帮扶 entries differ");
    }
}

fn assist(node: &Node, args: &[&str]) -> Value {
    let args = [&["assistance"][..], args, &["--year", "2014", "--json"]].concat();
    serde_json::from_str(&node.cmd(&args).unwrap()).unwrap()
}

fn assist_export(node: &Node, format: &str, encoding: &str, out: &Path) -> Vec<u8> {
    let o = out.to_str().unwrap();
    node.cmd(&["assistance", "export", "--year", "2014", "--format", format, "--encoding", encoding, "--out", o])
        .unwrap();
    std::fs::read(out).unwrap()
}

/// Rows by identity number, with the header's column names.
fn rows_by_id(path: &Path) -> std::collections::BTreeMap<String, Vec<(String, String)>> {
    let mut r = csv::ReaderBuilder::new().comment(Some(b'#')).from_path(path).unwrap();
    let headers: Vec<String> =
        r.headers().unwrap().iter().map(|h| h.trim_start_matches('\u{feff}').to_string()).collect();
    r.records()
        .map(|rec| {
            let rec = rec.unwrap();
            let cells: Vec<(String, String)> = headers.iter().cloned().zip(rec.iter().map(String::from)).collect();
            let id = cells.iter().find(|(h, _)| h == "身份证号").unwrap().1.clone();
            (id, cells)
        })
        .collect()
}

/// The export holds every cell of the original file: the member's own columns on every row, the
/// household's on its head's row (and nowhere else).
fn same_as_the_original(original: &Path, export: &Path) {
    let (a, b) = (rows_by_id(original), rows_by_id(export));
    assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>(), "the same people");
    for (id, row) in &a {
        let exported: std::collections::BTreeMap<&str, &str> =
            b[id].iter().map(|(h, v)| (h.as_str(), v.as_str())).collect();
        let head = row.iter().any(|(h, v)| h == "与户主关系" && v == "户主");
        for (h, v) in row {
            let got = *exported.get(h.as_str()).unwrap_or_else(|| panic!("column {h} missing"));
            let household = Col::from_header(h).is_some_and(Col::household_level);
            let want = if household && !head { "" } else { v.as_str() };
            assert_eq!(got, want, "{h} of {} (head: {head})", jianka_shared::id_number::mask(id));
        }
    }
}

/// Every cell of the first sheet.
fn cells(path: &Path) -> Vec<Vec<String>> {
    use calamine::Reader;
    let mut book = calamine::open_workbook_auto(path).unwrap();
    let range = book.worksheet_range_at(0).unwrap().unwrap();
    range.rows().map(|r| r.iter().map(|c| c.to_string()).collect()).collect()
}

#[test]
fn two_thousand_households_round_trip_as_csv_utf8_csv_gbk_and_xlsx() {
    let hs = register(2014, 2000);
    for (format, encoding) in [("csv", "utf-8"), ("csv", "gbk"), ("xlsx", "utf-8")] {
        let root = tempfile::tempdir().unwrap();
        round_trip(root.path(), &hs, format, encoding);
    }
}

#[test]
fn an_export_without_the_flag_masks_and_says_nothing_internal() {
    let root = tempfile::tempdir().unwrap();
    let hs = register(7, 20);
    let original = root.path().join("register.csv");
    write_file(&original, &hs);
    let node = Node::init_with(&root.path().join("a"), "420322105", "http://127.0.0.1:9", now()).unwrap();
    import(&node, &original);
    let out = root.path().join("public.csv");
    node.cmd(&["export", "--year", "2014", "--out", out.to_str().unwrap()]).unwrap();
    let text = std::fs::read_to_string(&out).unwrap();
    assert!(!text.contains("内部资料"));
    for h in &hs {
        assert!(!text.contains(&h.phone) && !text.contains(&h.bank_account));
        for m in &h.members {
            assert!(!text.contains(m.id_number.as_str()) && text.contains(&m.id_number.masked()));
        }
    }
    let full = String::from_utf8(export(&node, "csv", "utf-8", &root.path().join("full.csv"))).unwrap();
    assert!(full.trim_start_matches('\u{feff}').starts_with("# 内部资料"), "{}", &full[..80]);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 6, ..ProptestConfig::default() })]

    /// Any register, any format: import(export(x)) changes nothing.
    #[test]
    fn import_of_an_export_changes_nothing(seed in any::<u64>(), n in 1u32..40, which in 0usize..3) {
        let (format, encoding) = [("csv", "utf-8"), ("csv", "gbk"), ("xlsx", "utf-8")][which];
        let root = tempfile::tempdir().unwrap();
        round_trip(root.path(), &register(seed, n), format, encoding);
    }
}

/// Every line but an internal export's note.
fn without_note(bytes: &[u8]) -> String {
    let text = String::from_utf8(bytes.to_vec()).unwrap();
    text.trim_start_matches('\u{feff}').lines().filter(|l| !l.starts_with('#')).collect::<Vec<_>>().join("\n")
}

/// The county files what it holds of a township in the same columns: a fresh node imports the
/// county's export and holds the township's register exactly; the year's report is a workbook.
#[test]
fn the_countys_export_of_a_township_imports_as_the_townships_register() {
    let root = tempfile::tempdir().unwrap();
    let (_province, county, node) = common::county_with_township(root.path(), "420322105").unwrap();
    let hs = register(11, 60);
    let original = root.path().join("register.csv");
    write_file(&original, &hs);
    node.cmd(&["import", original.to_str().unwrap(), "--year", "2014"]).unwrap();
    let help = root.path().join("assistance.csv");
    write_assistance(&help, &hs, 5);
    assist(&node, &["import", help.to_str().unwrap()]);
    node.cmd(&["sync"]).unwrap();
    // Every record went up, the 帮扶 entries with the register: the county holds what the township does.
    let v: Value = serde_json::from_str(&node.cmd(&["verify", "--year", "2014", "--json"]).unwrap()).unwrap();
    assert_eq!(v["identical"], true, "{v}");
    let township = export(&node, "csv", "utf-8", &root.path().join("township.csv"));
    let at_county = root.path().join("county.csv");
    let out = county
        .cmd(&[
            "export",
            "--year",
            "2014",
            "--region",
            "420322105",
            "--with-id-numbers",
            "--out",
            at_county.to_str().unwrap(),
        ])
        .unwrap();
    assert!(out.contains("60 households"), "{out}");
    let county_bytes = std::fs::read(&at_county).unwrap();
    assert!(String::from_utf8_lossy(&county_bytes).contains("内部资料"));
    assert_eq!(without_note(&county_bytes), without_note(&township), "the county holds the township's register");
    let fresh = Node::init_with(&root.path().join("fresh"), "420322105", "http://127.0.0.1:9", now()).unwrap();
    let r = import(&fresh, &at_county);
    assert_eq!(r["households_imported"], 60, "{r}");
    assert_eq!(without_note(&export(&fresh, "csv", "utf-8", &root.path().join("fresh.csv"))), without_note(&township));

    // The year's report as a workbook: 概况, 致贫原因, 规模.
    let xlsx = root.path().join("report.xlsx");
    county.cmd(&["report", "--year", "2014", "--xlsx", xlsx.to_str().unwrap()]).unwrap();
    use calamine::{DataType, Reader};
    let mut book = calamine::open_workbook_auto(&xlsx).unwrap();
    assert_eq!(book.sheet_names(), vec!["概况".to_string(), "致贫原因".into(), "规模".into()]);
    let overview = book.worksheet_range("概况").unwrap();
    assert_eq!(overview.get((1, 2)).map(|c| c.to_string()), Some("60".into()), "households");
    let causes = book.worksheet_range("致贫原因").unwrap();
    let counted: f64 = causes.rows().skip(1).filter_map(|r| r[1].as_f64()).sum();
    assert_eq!(counted, 60.0, "every household under its main cause");
}
