//! Both shipped profiles end to end through the real binaries, from the same household file:
//! under hubei-2014 (seed 000) the county decides at 县复审 within the province's allocation and
//! the province files; under miyun-2016 (seed 003) a car excludes a household before 民主评议,
//! the township decides (镇级审定), and the district can only file (区直备案).

use jianka_shared::Yuan;
use jianka_shared::domain::{Household, Status};
use jianka_tests::generate::{Generator, HEADERS, member_row};
use jianka_tests::harness::{Hub, Node};
use serde_json::Value;
use std::path::{Path, PathBuf};

const COUNTY: &str = "420322";
const TOWNSHIP: &str = "420322105";
const VILLAGE: &str = "420322105200";

fn at(time: &str) -> Vec<(String, String)> {
    vec![("JIANKA_NOW".into(), time.into())]
}

fn profile(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/profiles").join(name).canonicalize().unwrap()
}

/// Three households of 2 or more: under both income lines with a car (是否有轿车 = 是); under
/// both lines; at 5,000 yuan a head, above seed 000's 2,736 and under seed 003's 11,160.
fn households() -> Vec<Household> {
    let mut g = Generator::new(17, 2014);
    let mut hs = Vec::new();
    while hs.len() < 3 {
        let mut h = g.household(VILLAGE, hs.len() as u32 + 1, Status::Applied);
        if h.members.len() < 2 {
            continue;
        }
        if hs.len() == 2 {
            h.income_per_capita = Yuan::from_yuan(5000);
            h.income = Yuan::from_yuan(5000 * h.members.len() as i64);
        }
        hs.push(h);
    }
    hs
}

/// The 扶贫手册 with the 登记表's 是否有轿车 column: 是 for the first household only.
fn write_file(path: &Path, hs: &[Household]) {
    let mut w = csv::Writer::from_path(path).unwrap();
    let mut header: Vec<&str> = HEADERS.to_vec();
    header.push("是否有轿车");
    w.write_record(&header).unwrap();
    for (i, h) in hs.iter().enumerate() {
        for m in &h.members {
            let mut row = member_row(h, m).to_vec();
            row.push(if i == 0 { "是" } else { "否" }.into());
            w.write_record(&row).unwrap();
        }
    }
    w.flush().unwrap();
}

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// A node of the township under `profile`, enrolled at `county`, with the household file imported.
fn township(root: &Path, county: &Hub, profile: &Path, hs: &[Household]) -> Node {
    let node = Node::init_with(&root.join("node"), TOWNSHIP, &county.url(), at("2014-07-15T09:00:00+08:00")).unwrap();
    let config = node.dir.join("node.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, format!("profile = {:?}\n{text}", profile.to_str().unwrap())).unwrap();
    let chain = county.enroll(TOWNSHIP, &node.key_file()).unwrap();
    node.cmd(&["trust", chain.to_str().unwrap()]).unwrap();
    let file = root.join("扶贫手册.csv");
    write_file(&file, hs);
    node.cmd(&["import", file.to_str().unwrap(), "--year", "2014"]).unwrap();
    node
}

/// Every household the township works on one step on, per date; returns the output of each.
fn advance(node: &Node, dates: &[&str]) -> Vec<String> {
    dates
        .iter()
        .enumerate()
        .map(|(i, date)| {
            let mut args = vec!["workflow", "advance", "--all", "--date", date, "--year", "2014"];
            if i == 0 {
                args.extend(["--minutes", "村民代表大会评议通过"]);
            }
            let out = node.cmd_raw(&args).unwrap();
            String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
        })
        .collect()
}

/// (status, decision) of each household on the node, by household id.
fn statuses(node: &Node) -> std::collections::BTreeMap<String, (String, String)> {
    let list = json(&node.cmd(&["household", "list", "--year", "2014", "--json"]).unwrap());
    list.as_array()
        .unwrap()
        .iter()
        .map(|r| (r[0].as_str().unwrap().to_string(), (r[1].as_str().unwrap().into(), r[2].as_str().unwrap().into())))
        .collect()
}

fn sync(node: &Node) {
    node.cmd(&["sync", "--json"]).unwrap();
}

#[test]
fn hubei_2014_the_county_decides_within_its_allocation_and_the_province_files() {
    let root = tempfile::tempdir().unwrap();
    let p = profile("hubei-2014.toml");
    let p = p.to_str().unwrap();
    let now = at("2014-07-15T09:00:00+08:00");
    let mut province = Hub::init_with(&root.path().join("province"), "42", &["--profile", p], now.clone()).unwrap();
    let mut county =
        Hub::init_with(&root.path().join("county"), COUNTY, &["--parent-url", &province.url(), "--profile", p], now)
            .unwrap();
    let chain = province.enroll(COUNTY, &county.dir.join("hub.key")).unwrap();
    county.cmd(&["install-chain", chain.to_str().unwrap()]).unwrap();
    province.allocate_to(&county, "2014", 1000, 5).unwrap();
    province.start().unwrap();
    county.start().unwrap();
    let hs = households();
    let node = township(root.path(), &county, &profile("hubei-2014.toml"), &hs);

    // No exclusion in seed 000: the car household is appraised; 5,000 a head is over 2,736 and
    // marked before it enters the workflow.
    let outs = advance(&node, &["2014-06-01", "2014-06-02", "2014-06-09", "2014-06-10", "2014-06-17"]);
    assert!(outs[0].contains("2 households: 申请 → 民主评议"), "{}", outs[0]);
    assert!(outs[0].contains("not eligible: income 5,000 ≥ 2,736 (profile hubei-2014)"), "{}", outs[0]);
    assert!(outs[4].contains("2 households: 乡镇公示 → 县复审"), "{}", outs[4]);
    // The township cannot decide under this profile.
    let out = node.cmd_raw(&["workflow", "decide", &hs[0].id(), "--admit", "--reason", "x", "--year", "2014"]).unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("the 县 (county) decides"), "{err}");
    sync(&node);
    sync(&node);
    let st = statuses(&node);
    // The car is no rule of seed 000: admitted at 县复审 within the allocation.
    assert_eq!(st[&hs[0].id()], ("CountyAnnounced".into(), "认定".into()), "{st:?}");
    assert_eq!(st[&hs[1].id()].0, "CountyAnnounced", "{st:?}");
    assert_eq!(st[&hs[2].id()].0, "Applied", "{st:?}");

    // The 县公告 for the county's portal: the two recognised, masked, from the day of the decision.
    let list = root.path().join("县公告.csv");
    let out = county
        .cmd(&["notice", "--year", "2014", "--step", "县公告", "--format", "csv", "--out", list.to_str().unwrap()])
        .unwrap();
    assert!(out.contains("2 households of 1 villages"), "{out}");
    let text = std::fs::read_to_string(&list).unwrap();
    for h in &hs[..2] {
        let head = &h.members[0];
        assert!(text.contains(&h.id()) && text.contains(&head.id_number.masked()), "{text}");
        assert!(!text.contains(head.id_number.as_str()), "in clear: {text}");
    }
    assert!(!text.contains(&hs[2].id()) && text.contains("2014-07-15,2014-07-21"), "{text}");
    let err = county.cmd(&["notice", "--year", "2014", "--step", "村公示", "--out", "x.html"]).unwrap_err();
    assert!(format!("{err:#}").contains("县公告"), "{err:#}");

    // The county cannot file; the province files what the county announced, and it comes down.
    let err = county.cmd(&["file", "--year", "2014", "--region", COUNTY]).unwrap_err();
    assert!(format!("{err:#}").contains("省备案 is the 省 (province)'s act"), "{err:#}");
    county.cmd(&["forward"]).unwrap();
    let out = province.cmd(&["file", "--year", "2014", "--region", COUNTY]).unwrap();
    assert!(out.contains("filed (省备案) 2 households"), "{out}");
    county.cmd(&["forward"]).unwrap();
    sync(&node);
    let st = statuses(&node);
    assert_eq!(st[&hs[0].id()].0, "ProvinceFiled", "{st:?}");
}

#[test]
fn miyun_2016_a_car_excludes_the_township_decides_and_the_district_files() {
    let root = tempfile::tempdir().unwrap();
    let p = profile("miyun-2016.toml");
    let now = at("2014-07-15T09:00:00+08:00");
    let city =
        Hub::init_with(&root.path().join("city"), "42", &["--profile", p.to_str().unwrap()], now.clone()).unwrap();
    let mut district =
        Hub::init_with(&root.path().join("district"), COUNTY, &["--profile", p.to_str().unwrap()], now).unwrap();
    let chain = city.enroll(COUNTY, &district.dir.join("hub.key")).unwrap();
    district.cmd(&["install-chain", chain.to_str().unwrap()]).unwrap();
    district.start().unwrap();
    let hs = households();
    let node = township(root.path(), &district, &p, &hs);

    let outs = advance(&node, &["2014-06-01", "2014-06-02", "2014-06-09", "2014-06-10", "2014-06-17"]);
    // The car household is marked before it enters the workflow, naming the rule.
    assert!(outs[0].contains("2 households: 申请 → 民主评议"), "{}", outs[0]);
    assert!(outs[0].contains("excluded: 有轿车 (profile miyun-2016)") && outs[0].contains(&hs[0].id()), "{}", outs[0]);
    // The flow's own steps and names: 镇入户核查, 镇公告, and the township's 镇级审定 last.
    assert!(outs[2].contains("村公示 → 镇入户核查"), "{}", outs[2]);
    assert!(outs[4].contains("2 households: 镇公告 → 镇级审定 (TownshipNotice → CountyAnnounced)"), "{}", outs[4]);
    sync(&node);
    let st = statuses(&node);
    assert_eq!(st[&hs[0].id()].0, "Applied", "{st:?}");
    assert_eq!(st[&hs[1].id()], ("CountyAnnounced".into(), "认定".into()), "{st:?}");
    assert_eq!(st[&hs[2].id()].0, "CountyAnnounced", "5,000 is under 11,160: {st:?}");

    // The district decides nothing here; it files (区直备案), and the filing comes down.
    let err = district
        .cmd(&["decide", "--year", "2014", "--household", &hs[0].id(), "--admit", "--reason", "x"])
        .unwrap_err();
    assert!(format!("{err:#}").contains("the 乡镇 (township) decides (镇级审定)"), "{err:#}");
    let out = district.cmd(&["file", "--year", "2014", "--region", COUNTY]).unwrap();
    assert!(out.contains("filed (区直备案) 2 households"), "{out}");
    sync(&node);
    let st = statuses(&node);
    assert_eq!(st[&hs[1].id()].0, "ProvinceFiled", "{st:?}");
    assert_eq!(st[&hs[2].id()].0, "ProvinceFiled", "{st:?}");

    // A profile naming a tier that does not exist stops the hub at start, naming the key.
    let bad = root.path().join("bad.toml");
    let text = std::fs::read_to_string(&p).unwrap().replace(r#"tier = "county" }"#, r#"tier = "district" }"#);
    std::fs::write(&bad, text).unwrap();
    let out = jianka_tests::harness::run(
        "jianka-hub",
        &[
            "init",
            "--region",
            "420323",
            "--dir",
            root.path().join("other").to_str().unwrap(),
            "--profile",
            bad.to_str().unwrap(),
        ],
        &[],
    )
    .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("district") && err.contains("tier"), "{err}");
}
