//! The notice lists a township posts: every household of the step once, masked, with the
//! notice's dates and where objections go; as CSV (UTF-8 and GBK), XLSX and a printable page that
//! a real headless Chromium prints to PDF — one printed section per village, the Chinese text
//! set in a CJK font (not tofu boxes). Needs `chromium` and poppler's `pdfinfo`, `pdffonts`,
//! `pdftotext` (`.ci/run` installs them with fonts-noto-cjk).

mod common;
use common::*;
use jianka_node::import::{ImportOptions, import_households};
use std::collections::BTreeSet;
use std::process::Command;

const NOW: &str = "2014-07-15T09:00:00+08:00";

/// 120 households in one village and 8 in another, moved into the 村公示 on 2014-06-02.
fn in_village_notice() -> TestNode {
    let t = TestNode::new();
    let mut rows = Vec::new();
    for i in 0..128u32 {
        let village = if i < 120 { VILLAGE } else { VILLAGE2 };
        rows.extend(household_rows(village, &format!("{:04}", i + 1), 2, i + 1));
    }
    let p = t.path("h.csv");
    write_csv(&p, &rows);
    let mut node = t.open(clock_at(NOW));
    let r = import_households(&mut node, &p, ImportOptions { year: 2014, dry_run: false, progress_over: usize::MAX })
        .unwrap();
    assert_eq!(r.households_imported, 128, "{:?}", r.errors);
    drop(node);
    for (date, extra) in [("2014-06-01", &["--minutes", "村民代表大会评议通过"][..]), ("2014-06-02", &[])] {
        let out = t
            .command(NOW)
            .args([&["workflow", "advance", "--all", "--year", "2014", "--date", date][..], extra].concat())
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    t
}

/// `jianka-node notice --step 村公示 ARGS --out FILE`; the last of `args` names FILE in the node's dir.
fn notice(t: &TestNode, args: &[&str]) -> std::path::PathBuf {
    let (name, args) = args.split_last().unwrap();
    let out_file = t.path(name);
    let out_arg = out_file.to_str().unwrap();
    let args = [&["notice", "--step", "村公示", "--year", "2014"][..], args, &[out_arg][..]].concat();
    let out = t.command(NOW).args(&args).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    out_file
}

/// Every 18-digit ID number, 11-digit mobile phone or 16–19-digit account in clear in `text`.
fn numbers_in_clear(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut run = String::new();
    for c in text.chars().chain(std::iter::once(' ')) {
        if c.is_ascii_digit() || (c == 'X' && run.len() == 17) {
            run.push(c);
        } else {
            if run.len() == 11 && run.starts_with('1') || run.len() >= 15 {
                found.push(run.clone());
            }
            run.clear();
        }
    }
    found
}

/// The list's table rows from CSV text: (household, masked id, first day, last day).
fn table_rows(text: &str) -> Vec<Vec<String>> {
    let mut r = csv::ReaderBuilder::new().flexible(true).has_headers(false).from_reader(text.as_bytes());
    let rows: Vec<Vec<String>> = r.records().map(|x| x.unwrap().iter().map(String::from).collect()).collect();
    let start = rows.iter().position(|r| r.first().is_some_and(|c| c == "序号")).expect("the table's header") + 1;
    rows[start..].to_vec()
}

#[test]
fn a_village_notice_lists_each_household_once_masked_with_its_dates_in_every_format() {
    let t = in_village_notice();
    // CSV, UTF-8 (with the BOM spreadsheet programs want) and GBK: the same list.
    let utf8 = std::fs::read(notice(&t, &["--format", "csv", "--out", "村公示.csv"])).unwrap();
    assert!(utf8.starts_with(b"\xEF\xBB\xBF"));
    let text = String::from_utf8(utf8[3..].to_vec()).unwrap();
    let gbk = std::fs::read(notice(&t, &["--format", "csv", "--encoding", "gbk", "--out", "村公示-gbk.csv"])).unwrap();
    let (decoded, _, bad) = encoding_rs::GBK.decode(&gbk);
    assert!(!bad);
    assert_eq!(decoded, text, "GBK holds the same list");
    assert!(text.contains("拟认定名单 (村公示)") && text.contains("异议受理"), "{text}");
    let rows = table_rows(&text);
    assert_eq!(rows.len(), 128);
    let households: BTreeSet<&str> = rows.iter().map(|r| r[2].as_str()).collect();
    assert_eq!(households.len(), 128, "each household once");
    for r in &rows {
        let id = &r[4];
        assert!(
            id.len() == 18 && id[2..16].chars().all(|c| c == '*') && !id[..2].contains('*'),
            "masked as 42**************1X: {id}"
        );
        assert_eq!((r[7].as_str(), r[8].as_str()), ("2014-06-02", "2014-06-08"), "7 days from the day it began");
        assert_eq!(r[5], "2");
    }
    assert!(numbers_in_clear(&text).is_empty(), "{:?}", numbers_in_clear(&text));

    // XLSX: a sheet per village, the same rows.
    let xlsx = notice(&t, &["--format", "xlsx", "--out", "村公示.xlsx"]);
    use calamine::Reader;
    let mut book = calamine::open_workbook_auto(&xlsx).unwrap();
    assert_eq!(book.sheet_names(), vec![VILLAGE.to_string(), VILLAGE2.to_string()]);
    let mut n = 0;
    for name in book.sheet_names() {
        let range = book.worksheet_range(&name).unwrap();
        let body: Vec<String> = range.rows().skip(4).map(|r| r[4].to_string()).collect();
        assert!(body.iter().all(|id| id.contains("**************")), "{body:?}");
        n += body.len();
    }
    assert_eq!(n, 128);

    // One village only.
    let one =
        std::fs::read_to_string(notice(&t, &["--village", VILLAGE2, "--format", "csv", "--out", "one.csv"])).unwrap();
    assert_eq!(table_rows(one.trim_start_matches('\u{feff}')).len(), 8);

    // Not a notice of this flow: refused, naming the notices there are.
    let out = t.command(NOW).args(["notice", "--step", "县复审", "--year", "2014", "--out", "x.csv"]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("村公示") && err.contains("乡镇公示"), "{err}");
}

fn tool(name: &str) -> String {
    for dir in ["/usr/bin", "/usr/local/bin", "/bin"] {
        let p = format!("{dir}/{name}");
        if std::path::Path::new(&p).exists() {
            return p;
        }
    }
    panic!("{name} is needed for this test: apt-get install chromium fonts-noto-cjk poppler-utils (.ci/run does)");
}

#[test]
fn the_printable_page_prints_a_section_per_village_in_a_cjk_font() {
    let t = in_village_notice();
    let html = notice(&t, &["--format", "html", "--out", "村公示.html"]);
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(numbers_in_clear(&page).is_empty(), "{:?}", numbers_in_clear(&page));
    let pdf = t.path("村公示.pdf");
    let out = Command::new(tool("chromium"))
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--no-pdf-header-footer"])
        .arg(format!("--print-to-pdf={}", pdf.display()))
        .arg(format!("file://{}", html.display()))
        .output()
        .unwrap();
    assert!(pdf.exists(), "chromium printed nothing: {}", String::from_utf8_lossy(&out.stderr));
    let info = String::from_utf8(Command::new(tool("pdfinfo")).arg(&pdf).output().unwrap().stdout).unwrap();
    let pages: usize = info
        .lines()
        .find_map(|l| l.strip_prefix("Pages:"))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("{info}"));
    // 120 households do not fit one A4 page; the second village starts a page of its own.
    assert!(pages >= 3, "{pages} pages");
    let page_text = |n: usize| {
        let o = Command::new(tool("pdftotext"))
            .args(["-f", &n.to_string(), "-l", &n.to_string(), "-layout"])
            .arg(&pdf)
            .arg("-")
            .output()
            .unwrap();
        String::from_utf8(o.stdout).unwrap()
    };
    let first = page_text(1);
    assert!(first.contains("拟认定名单") && first.contains("户主姓名") && first.contains("异议受理"), "{first}");
    let last = page_text(pages);
    assert!(last.contains(&format!("{VILLAGE2}-0121")) && !last.contains(&format!("{VILLAGE}-0001")), "{last}");
    assert!(
        page_text(pages - 1).contains(&format!("{VILLAGE}-0120")),
        "the first village ends before the second begins"
    );
    assert!(numbers_in_clear(&(1..=pages).map(page_text).collect::<String>()).is_empty());
    // The glyphs come from a CJK font the browser has, not fallback boxes: the page's own style
    // sets the title's characters differently from characters no font has (U+E000…), which all
    // print as the same box.
    let style = &page[page.find("<style>").unwrap()..page.find("</style>").unwrap() + 8];
    let shot = |text: &str, name: &str| {
        let html = t.path(&format!("{name}.html"));
        std::fs::write(
            &html,
            format!("<html><head><meta charset=utf-8>{style}</head><body><h1>{text}</h1></body></html>"),
        )
        .unwrap();
        let png = t.path(&format!("{name}.png"));
        Command::new(tool("chromium"))
            .args(["--headless", "--no-sandbox", "--disable-gpu", "--window-size=600,120"])
            .arg(format!("--screenshot={}", png.display()))
            .arg(format!("file://{}", html.display()))
            .output()
            .unwrap();
        std::fs::read(&png).unwrap_or_else(|e| panic!("no screenshot {}: {e}", png.display()))
    };
    let boxes = shot("\u{E000}\u{E001}\u{E002}\u{E003}\u{E004}", "boxes");
    assert_eq!(boxes, shot("\u{E005}\u{E006}\u{E007}\u{E008}\u{E009}", "boxes2"), "boxes look alike");
    assert_ne!(shot("拟认定名单", "title"), boxes, "the Chinese title printed as boxes: no CJK font");
}
