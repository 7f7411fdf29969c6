//! Shared test helpers: a node in a temp dir, 扶贫手册 rows and files.
#![allow(dead_code, clippy::new_without_default)]

use chrono::{DateTime, NaiveDate, Utc};
use jianka_node::Node;
use jianka_node::clock::Clock;
use jianka_shared::IdNumber;
use std::path::{Path, PathBuf};

pub const TOWNSHIP: &str = "420322105";
pub const VILLAGE: &str = "420322105200";
pub const VILLAGE2: &str = "420322105201";

pub const HEADERS: [&str; 26] = [
    "村代码",
    "户编号",
    "姓名",
    "身份证号",
    "与户主关系",
    "性别",
    "文化程度",
    "在校生状况",
    "健康状况",
    "劳动能力",
    "务工状况",
    "新农合",
    "养老保险",
    "贫困户属性",
    "识别标准",
    "主要致贫原因",
    "其他致贫原因",
    "家庭年纯收入",
    "人均纯收入",
    "是否危房户",
    "饮水困难",
    "联系电话",
    "开户银行账号",
    "帮扶责任人",
    "帮扶单位",
    "帮扶人电话",
];

pub fn clock_at(rfc3339: &str) -> Clock {
    Clock::starting_at(DateTime::parse_from_rfc3339(rfc3339).unwrap().with_timezone(&Utc))
}

pub struct TestNode {
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
}

impl TestNode {
    pub fn new() -> TestNode {
        TestNode::with_hub("http://127.0.0.1:9")
    }

    pub fn with_hub(hub: &str) -> TestNode {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("node");
        jianka_node::cli::init(&d, TOWNSHIP, hub, None).unwrap();
        let config = d.join("node.toml");
        TestNode { dir, config }
    }

    pub fn open(&self, clock: Clock) -> Node {
        Node::open(&self.config, clock).unwrap()
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The real `jianka-node` binary on this node, its clock starting at `now` (RFC 3339).
    pub fn command(&self, now: &str) -> std::process::Command {
        let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_jianka-node"));
        c.env(jianka_node::config::CONFIG_ENV, &self.config)
            .env(jianka_node::clock::NOW_ENV, now)
            .env_remove("JIANKA_LOG")
            .env_remove("JIANKA_NODE_HUB_URL");
        c
    }

    /// Runs the binary with its stdout a pipe whose reader is already gone (`… | head` after
    /// `head` has read its lines).
    pub fn run_into_closed_pipe(&self, now: &str, args: &[&str]) -> std::process::Output {
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        self.command(now).args(args).stdout(writer).stderr(std::process::Stdio::piped()).output().unwrap()
    }

    /// Runs the binary on a pseudo-terminal (util-linux `script`), as a clerk at a terminal sees
    /// it: stdout and stderr with what was drawn. None where `script` is not installed.
    pub fn run_on_terminal(&self, now: &str, args: &[&str]) -> Option<String> {
        let quote = |s: &str| format!("'{}'", s.replace('\'', r"'\''"));
        let line = std::iter::once(env!("CARGO_BIN_EXE_jianka-node"))
            .chain(args.iter().copied())
            .map(quote)
            .collect::<Vec<_>>()
            .join(" ");
        let probe = std::process::Command::new("script").arg("--version").output();
        if !probe.is_ok_and(|o| o.status.success()) {
            eprintln!("skipped: util-linux `script` is not installed, no terminal to draw on");
            return None;
        }
        let cmd = self.command(now);
        let out = std::process::Command::new("script")
            .args(["-q", "-e", "-c", &line, "/dev/null"])
            .envs(cmd.get_envs().filter_map(|(k, v)| Some((k, v?))))
            .env_remove("JIANKA_LOG")
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        Some(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

/// A valid ID number: area 420322, given birth date and sequence (odd = male).
pub fn id(y: i32, m: u32, d: u32, seq: u16) -> String {
    IdNumber::compose("420322", NaiveDate::from_ymd_opt(y, m, d).unwrap(), seq).unwrap().to_string()
}

/// Rows of one valid household of `n` members (head male, spouse female, then children).
/// `k` makes the ID numbers unique across households (k < 1,000,000).
pub fn household_rows(village: &str, number: &str, n: usize, k: u32) -> Vec<Vec<String>> {
    let income = 1800 * n as u64;
    let mut rows = Vec::new();
    let birth = NaiveDate::from_ymd_opt(1940, 1, 1).unwrap() + chrono::Duration::days((k % 20_000) as i64);
    for i in 0..n {
        let (rel, male) = match i {
            0 => ("户主", true),
            1 => ("配偶", false),
            _ if i % 2 == 0 => ("之子", true),
            _ => ("之女", false),
        };
        let seq = (k / 20_000) as u16 * 20 + 2 * i as u16 + male as u16;
        let person = IdNumber::compose("420322", birth, seq).unwrap().to_string();
        let sex = if male { "男" } else { "女" };
        let mut r: Vec<String> = vec![
            village.into(),
            number.into(),
            format!("成员{k}-{i}"),
            person,
            rel.into(),
            sex.into(),
            "小学".into(),
            "".into(),
            "健康".into(),
            "普通劳动力".into(),
            "".into(),
            "是".into(),
            "否".into(),
        ];
        if i == 0 {
            r.extend(
                [
                    "一般贫困户",
                    "国家标准",
                    "因病",
                    "缺资金、缺技术",
                    &income.to_string(),
                    "1800",
                    "否",
                    "是",
                    "13800000000",
                    "6217000000000000",
                    "张帮扶",
                    "县扶贫办",
                    "0719-0000000",
                ]
                .map(String::from),
            );
        } else {
            r.extend(std::iter::repeat_n(String::new(), 13));
        }
        rows.push(r);
    }
    rows
}

pub fn csv_text(rows: &[Vec<String>]) -> String {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(HEADERS).unwrap();
    for r in rows {
        w.write_record(r).unwrap();
    }
    String::from_utf8(w.into_inner().unwrap()).unwrap()
}

pub fn write_csv(path: &Path, rows: &[Vec<String>]) {
    std::fs::write(path, csv_text(rows)).unwrap();
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

fn col_name(mut i: usize) -> String {
    let mut s = String::new();
    i += 1;
    while i > 0 {
        let r = (i - 1) % 26;
        s.insert(0, (b'A' + r as u8) as char);
        i = (i - 1) / 26;
    }
    s
}

/// A minimal XLSX workbook (one sheet, inline strings) written with the zip crate; the village
/// code is a number cell, as clerks' spreadsheets often have it.
pub fn write_xlsx(path: &Path, header: &[&str], rows: &[Vec<String>]) {
    write_xlsx_with_numbers(path, header, rows, &[0]);
}

/// As `write_xlsx`, with the cells of `number_columns` stored as numbers (`<v>`) wherever they
/// look like one (digits, or Excel's 4.20322194509167E+17).
pub fn write_xlsx_with_numbers(path: &Path, header: &[&str], rows: &[Vec<String>], number_columns: &[usize]) {
    use std::io::Write;
    let f = std::fs::File::create(path).unwrap();
    let mut z = zip::ZipWriter::new(f);
    let opt = zip::write::SimpleFileOptions::default();
    let files = [
        (
            "[Content_Types].xml",
            r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types"><Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/><Default Extension="xml" ContentType="application/xml"/><Override PartName="/xl/workbook.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/><Override PartName="/xl/worksheets/sheet1.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"/></Types>"#
                .to_string(),
        ),
        (
            "_rels/.rels",
            r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships"><Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument" Target="xl/workbook.xml"/></Relationships>"#
                .to_string(),
        ),
        (
            "xl/workbook.xml",
            r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<workbook xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships"><sheets><sheet name="扶贫手册" sheetId="1" r:id="rId1"/></sheets></workbook>"#
                .to_string(),
        ),
        (
            "xl/_rels/workbook.xml.rels",
            r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships"><Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/worksheet" Target="worksheets/sheet1.xml"/></Relationships>"#
                .to_string(),
        ),
    ];
    for (name, body) in files {
        z.start_file(name, opt).unwrap();
        z.write_all(body.as_bytes()).unwrap();
    }
    let mut sheet = String::from(
        r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?><worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"><sheetData>"#,
    );
    let all: Vec<Vec<String>> =
        std::iter::once(header.iter().map(|s| s.to_string()).collect()).chain(rows.iter().cloned()).collect();
    for (ri, r) in all.iter().enumerate() {
        sheet.push_str(&format!(r#"<row r="{}">"#, ri + 1));
        for (ci, v) in r.iter().enumerate() {
            if v.is_empty() {
                continue;
            }
            let cell = format!("{}{}", col_name(ci), ri + 1);
            let looks_numeric = v.parse::<f64>().is_ok();
            if number_columns.contains(&ci) && ri > 0 && looks_numeric {
                sheet.push_str(&format!(r#"<c r="{cell}"><v>{v}</v></c>"#));
            } else {
                sheet.push_str(&format!(r#"<c r="{cell}" t="inlineStr"><is><t>{}</t></is></c>"#, xml_escape(v)));
            }
        }
        sheet.push_str("</row>");
    }
    sheet.push_str("</sheetData></worksheet>");
    z.start_file("xl/worksheets/sheet1.xml", opt).unwrap();
    z.write_all(sheet.as_bytes()).unwrap();
    z.finish().unwrap();
}
