//! The 贫困村登记表 imported with all seven parts: the core figures required, every item of the
//! parts read by its kind and kept on the village's record, a bad cell refused naming its column
//! and part, nothing of a refused village written.

mod common;
use common::*;
use jianka_node::store;
use jianka_shared::record::{RecordKey, RecordKind};
use jianka_shared::village_form::{ITEMS, Kind};

const NOW: &str = "2014-07-15T09:00:00+08:00";
const CORE: [&str; 8] =
    ["村代码", "村名称", "总户数", "总人口", "贫困户数", "贫困人口", "人均纯收入", "村集体经济收入"];

fn sample(kind: Kind) -> &'static str {
    match kind {
        Kind::Count => "12",
        Kind::Yuan => "150000",
        Kind::Decimal => "3.5",
        Kind::Flag => "是",
        Kind::Text => "核桃种植",
    }
}

fn write(t: &TestNode, rows: &[Vec<String>]) -> std::path::PathBuf {
    let mut w = csv::Writer::from_writer(Vec::new());
    let header: Vec<&str> = CORE.iter().copied().chain(ITEMS.iter().map(|i| i.header)).collect();
    w.write_record(&header).unwrap();
    for r in rows {
        w.write_record(r).unwrap();
    }
    let p = t.path("贫困村登记表.csv");
    std::fs::write(&p, w.into_inner().unwrap()).unwrap();
    p
}

fn row(code: &str, bad: Option<(&str, &str)>) -> Vec<String> {
    let core = [code, "某村", "300", "1000", "90", "300", "2100", "0"];
    let mut r: Vec<String> = core.iter().map(|s| s.to_string()).collect();
    for item in ITEMS {
        let v = match bad {
            Some((h, v)) if h == item.header => v,
            _ => sample(item.kind),
        };
        r.push(v.to_string());
    }
    r
}

#[test]
fn every_part_of_the_village_form_is_imported_and_a_bad_cell_is_named() {
    let t = TestNode::new();
    let file = write(&t, &[row(VILLAGE, None), row(VILLAGE2, Some(("通宽带", "可能")))]);
    let out = t
        .command(NOW)
        .args(["village", "import", file.to_str().unwrap(), "--year", "2014", "--json"])
        .output()
        .unwrap();
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!("{e}: {}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
    });
    assert_eq!(report["imported"], 1, "{report}");
    let errors = report["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 1, "{report}");
    assert_eq!(errors[0]["column"], "通宽带 (基础设施状况)");
    assert!(errors[0]["reason"].as_str().unwrap().contains("是 or 否"), "{report}");

    let node = t.open(clock_at(NOW));
    let v = store::load(&node.conn, &RecordKey::new(RecordKind::Village, 2014, VILLAGE)).unwrap().unwrap();
    for item in ITEMS {
        let want = match item.kind {
            Kind::Yuan => "150000",
            k => sample(k),
        };
        assert_eq!(v.get(item.field), Some(want), "{} ({})", item.header, item.part);
    }
    assert!(store::load(&node.conn, &RecordKey::new(RecordKind::Village, 2014, VILLAGE2)).unwrap().is_none());
}
