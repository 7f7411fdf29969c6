//! The annual January update cycle (issue 5) through the real binaries: province, county and
//! township nodes, each in its own directory. Time is driven with `JIANKA_NOW`: a hub's clock
//! stands still, so moving it means restarting the hub with a new time; hub CLI commands run with
//! the time of the moment. Nothing sleeps for dates.

use jianka_shared::IdNumber;
use jianka_shared::RecordKind::{self, Household as HOUSEHOLD, Member as MEMBER};
use jianka_shared::domain::{Household, Status};
use jianka_tests::generate::{Generator, write_csv};
use jianka_tests::harness::{Hub, Node};
use serde_json::Value;
use std::path::{Path, PathBuf};

const COUNTY: &str = "420322";
const TOWNSHIP: &str = "420322105";
const OTHER_TOWNSHIP: &str = "420322106";
const VILLAGES: [&str; 2] = ["420322105200", "420322105201"];

/// Registration time: the 2014 work is done by June.
const REGISTRATION: &str = "2014-06-01T09:00:00+08:00";

fn at(time: &str) -> Vec<(String, String)> {
    vec![("JIANKA_NOW".into(), time.into())]
}

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// Restarts a hub with its clock standing at `time`.
fn restart_at(hub: &mut Hub, time: &str) {
    hub.kill9();
    hub.envs = at(time);
    hub.start().unwrap();
}

/// Runs a hub CLI command at `time` while the hub is down (its server is restarted afterwards at
/// the same time), as the county's New Year job or an operator would.
fn hub_cmd_at(hub: &mut Hub, time: &str, args: &[&str]) -> String {
    hub.kill9();
    hub.envs = at(time);
    let out = hub.cmd(args).unwrap();
    hub.start().unwrap();
    out
}

struct Cycle {
    _root: tempfile::TempDir,
    province: Hub,
    county: Hub,
    nodes: Vec<Node>,
    /// The registered 2014 households, per node.
    registered: Vec<Vec<Household>>,
}

/// Province and county (with the Hubei 2014 profile and a people ceiling), one node per
/// township, each having registered `per_township` households and passed them to the county,
/// synced and recognised — all in 2014.
fn registered_2014(townships: &[&str], per_township: u32, ceiling: Option<u64>) -> Cycle {
    let root = tempfile::tempdir().unwrap();
    let profile =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/profiles/hubei-2014.toml").canonicalize().unwrap();
    let quotas = root.path().join("quotas.toml");
    let people = ceiling.unwrap_or(100_000);
    std::fs::write(&quotas, format!("[[counties]]\ncounty = \"{COUNTY}\"\npeople = {people}\nvillages = 10\n"))
        .unwrap();
    let (p, q) = (profile.to_str().unwrap(), quotas.to_str().unwrap());
    let mut province =
        Hub::init_with(&root.path().join("province"), "42", &["--profile", p], at(REGISTRATION)).unwrap();
    let mut county = Hub::init_with(
        &root.path().join("county"),
        COUNTY,
        &["--parent-url", &province.url(), "--profile", p, "--quotas", q],
        at(REGISTRATION),
    )
    .unwrap();
    let chain = province.enroll(COUNTY, &county.dir.join("hub.key")).unwrap();
    county.cmd(&["install-chain", chain.to_str().unwrap()]).unwrap();
    province.allocate_to(&county, "2014", people, 10).unwrap();
    province.start().unwrap();
    county.start().unwrap();

    let mut generator = Generator::new(2015, 2014);
    let mut nodes = Vec::new();
    let mut registered = Vec::new();
    for township in townships {
        let node =
            Node::init_with(&root.path().join(format!("node-{township}")), township, &county.url(), at(REGISTRATION))
                .unwrap();
        let chain = county.enroll(township, &node.key_file()).unwrap();
        node.cmd(&["trust", chain.to_str().unwrap()]).unwrap();
        let villages = [format!("{township}200"), format!("{township}201")];
        // Two-person households at least, so a death never empties one.
        let hs: Vec<Household> = (0..per_township)
            .map(|i| {
                loop {
                    let h = generator.household(&villages[i as usize % 2], i + 1, Status::Applied);
                    if h.members.len() >= 2 {
                        break h;
                    }
                }
            })
            .collect();
        let csv = node.dir.join("扶贫手册-2014.csv");
        write_csv(std::fs::File::create(&csv).unwrap(), &hs).unwrap();
        node.cmd(&["import", csv.to_str().unwrap(), "--year", "2014"]).unwrap();
        pass_workflow(&node, "2014", &["2014-05-05", "2014-05-06", "2014-05-13", "2014-05-14", "2014-05-21"]);
        sync(&node);
        registered.push(hs);
        nodes.push(node);
    }
    for node in &nodes {
        // A second pass pulls the county's decisions made while the first was pushing.
        sync(node);
        assert_identical(node, "2014");
    }
    Cycle { _root: root, province, county, nodes, registered }
}

/// 民主评议 → 村公示 → 乡镇审核 → 乡镇公示 → 县复审 for every household the township works on.
fn pass_workflow(node: &Node, year: &str, dates: &[&str; 5]) {
    for (i, date) in dates.iter().enumerate() {
        let mut args = vec!["workflow", "advance", "--all", "--date", date, "--year", year, "--json"];
        if i == 0 {
            args.extend(["--minutes", "村民代表大会评议通过"]);
        }
        node.cmd(&args).unwrap();
    }
}

fn sync(node: &Node) -> Value {
    json(&node.cmd(&["sync", "--json"]).unwrap())
}

fn status(node: &Node) -> Value {
    json(&node.cmd(&["status", "--json"]).unwrap())
}

fn year_row(status: &Value, year: u64) -> Value {
    status["years"]
        .as_array()
        .and_then(|ys| ys.iter().find(|y| y["year"] == year).cloned())
        .unwrap_or_else(|| panic!("no year {year} in status: {status}"))
}

fn verify(node: &Node, year: &str) -> Value {
    let out = node.cmd_raw(&["verify", "--year", year, "--json"]).unwrap();
    json(&String::from_utf8_lossy(&out.stdout))
}

fn assert_identical(node: &Node, year: &str) {
    let v = verify(node, year);
    assert_eq!(v["identical"], true, "{} year {year}: node and county differ: {v}", node.township);
}

fn show(node: &Node, household: &str, year: &str) -> Value {
    json(&node.cmd(&["household", "show", household, "--year", year, "--json", "--full"]).unwrap())
}

/// The county's value of one field of one live record, straight from its database.
fn county_field(county: &Hub, kind: RecordKind, year: u16, id: &str, field: &str) -> Option<String> {
    let db = rusqlite::Connection::open(county.dir.join("hub.db")).unwrap();
    let fields: Option<String> = db
        .query_row(
            "SELECT fields FROM records WHERE kind = ?1 AND year = ?2 AND id = ?3 AND deleted = 0",
            rusqlite::params![kind.to_u8() as i64, year as i64, id],
            |r| r.get(0),
        )
        .ok();
    let v: Value = serde_json::from_str(&fields?).ok()?;
    jianka_tests::stored::stored_value(&v, field).map(str::to_string)
}

fn write_households(path: &Path, hs: &[Household]) -> PathBuf {
    write_csv(std::fs::File::create(path).unwrap(), hs).unwrap();
    path.to_path_buf()
}

fn audit_verify(hub: &Hub) -> String {
    let out = hub.cmd(&["audit", "verify"]).unwrap();
    assert!(out.contains("intact"), "{out}");
    out
}

#[test]
fn a_normal_cycle_freezes_carries_forward_and_takes_the_adjustments() {
    // The people ceiling leaves room for exactly one of the two new entries below.
    let mut g = Generator::new(77, 2014);
    let new_entries: Vec<Household> = [101u32, 102]
        .iter()
        .map(|n| {
            loop {
                let h = g.household(VILLAGES[0], *n, Status::Applied);
                if h.members.len() >= 2 {
                    break h;
                }
            }
        })
        .collect();
    let registered_people: u64 = {
        // Same generator as registered_2014 uses, so the count is known before the hubs start.
        let mut g = Generator::new(2015, 2014);
        (0..6u32)
            .map(|i| {
                loop {
                    let h = g.household(VILLAGES[i as usize % 2], i + 1, Status::Applied);
                    if h.members.len() >= 2 {
                        break h.members.len() as u64;
                    }
                }
            })
            .sum()
    };
    let ceiling = registered_people + new_entries[0].members.len() as u64 + 1;
    let mut c = registered_2014(&[TOWNSHIP], 6, Some(ceiling));
    let node = &mut c.nodes[0];
    let hs = c.registered[0].clone();
    assert_eq!(hs.iter().map(|h| h.members.len() as u64).sum::<u64>(), registered_people);
    for h in &hs {
        let shown = show(node, &h.id(), "2014");
        assert!(shown.to_string().contains("认定"), "{} not recognised: {shown}", h.id());
    }

    // New Year (Beijing time): the county freezes 2014, carries it forward, opens the window.
    let new_year = hub_cmd_at(&mut c.county, "2015-01-01T00:00:30+08:00", &["new-year", "--year", "2014"]);
    assert!(new_year.contains("froze 2014"), "{new_year}");
    assert!(new_year.contains("carried 6 households forward"), "{new_year}");
    let again = c.county.cmd_raw(&["new-year", "--year", "2014"]).unwrap();
    assert!(!again.status.success(), "a second freeze of 2014 must be refused");

    // 2 January: the node learns the window at its sync; no warning yet (29 days left).
    restart_at(&mut c.county, "2015-01-02T09:00:00+08:00");
    node.envs = at("2015-01-02T09:00:00+08:00");
    sync(node);
    let st = status(node);
    let y2014 = year_row(&st, 2014);
    assert_eq!(y2014["state"], "update_window", "{st}");
    assert_eq!(y2014["deadline"], "2015-01-31", "{st}");
    assert_eq!(y2014["days_left"], 29, "{st}");
    assert_eq!(year_row(&st, 2015)["state"], "open", "{st}");
    assert!(st["warnings"].as_array().unwrap().iter().all(|w| !w.as_str().unwrap().contains("due")), "{st}");
    // What the county carried into 2015 came down with the sync: both hold the same 2015.
    let list = json(&node.cmd(&["household", "list", "--year", "2015", "--json"]).unwrap());
    assert_eq!(list.as_array().map(Vec::len), Some(6), "{list}");
    assert_identical(node, "2015");

    // 22 January: the clerk enters the year's adjustments into 2014 (the window year, no --year).
    restart_at(&mut c.county, "2015-01-22T09:00:00+08:00");
    node.envs = at("2015-01-22T09:00:00+08:00");
    let exited = hs[0].id();
    let out = node.cmd(&["adjust", "exit", &exited, "--reason", "稳定脱贫", "--date", "2015-01-05"]).unwrap();
    assert!(out.contains("exit recorded"), "{out}");
    let dead = hs[1].members.iter().find(|m| m.relation != jianka_shared::labels::Relation::Head).unwrap();
    node.cmd(&["adjust", "death", dead.id_number.as_str(), "--date", "2014-12-28"]).unwrap();
    let baby =
        IdNumber::compose(COUNTY, chrono::NaiveDate::from_ymd_opt(2014, 12, 20).unwrap(), 101).expect("valid number");
    node.cmd(&[
        "adjust",
        "birth",
        &hs[2].id(),
        "--id-number",
        baby.as_str(),
        "--set",
        "姓名=王小宝",
        "--set",
        "与户主关系=之子",
        "--set",
        "性别=男",
        "--set",
        "文化程度=学龄前儿童",
        "--set",
        "健康状况=健康",
        "--set",
        "劳动能力=无劳动力",
        "--date",
        "2014-12-20",
    ])
    .unwrap();
    let file = write_households(&node.dir.join("新增.csv"), &new_entries);
    let out = node.cmd(&["adjust", "new", file.to_str().unwrap()]).unwrap();
    assert!(out.contains("2 households imported"), "{out}");
    // New entries pass the whole workflow again, in January.
    pass_workflow(node, "2014", &["2015-01-05", "2015-01-06", "2015-01-13", "2015-01-14", "2015-01-21"]);
    sync(node);
    sync(node);

    // The deadline is 9 days away: the clerk is warned.
    let st = status(node);
    let warnings: Vec<&str> = st["warnings"].as_array().unwrap().iter().map(|w| w.as_str().unwrap()).collect();
    assert!(warnings.iter().any(|w| w.contains("due in 9 days")), "{st}");

    // The county holds the adjustments.
    assert_eq!(county_field(&c.county, HOUSEHOLD, 2014, &exited, "status").as_deref(), Some("Exited"));
    assert_eq!(county_field(&c.county, HOUSEHOLD, 2014, &exited, "exit_reason").as_deref(), Some("稳定脱贫"));
    assert_eq!(county_field(&c.county, MEMBER, 2014, dead.id_number.as_str(), "household"), None, "death not synced");
    assert_eq!(county_field(&c.county, MEMBER, 2014, baby.as_str(), "household").as_deref(), Some(hs[2].id().as_str()));
    // The new entries were re-examined against the ceiling: the first fits, the second does not.
    let decision = |h: &Household| county_field(&c.county, HOUSEHOLD, 2014, &h.id(), "county.decision");
    assert_eq!(decision(&new_entries[0]).as_deref(), Some("认定"), "first new entry");
    assert_eq!(decision(&new_entries[1]).as_deref(), Some("不予认定"), "second new entry is over the ceiling");
    let rejections = st["rejections"].as_array().unwrap();
    assert!(
        rejections
            .iter()
            .any(|r| r["reason"] == "over_quota" && r["key"].as_str().unwrap().contains(&new_entries[1].id())),
        "{st}"
    );
    assert_identical(node, "2014");
    // The window's adjustments reached 2015 at the county (the exit and the death leave it, the
    // birth and the admitted entry arrive) and came down to the node the same way.
    assert_eq!(county_field(&c.county, HOUSEHOLD, 2015, &exited, "status"), None, "the exit left 2015");
    assert_eq!(county_field(&c.county, MEMBER, 2015, baby.as_str(), "household").as_deref(), Some(hs[2].id().as_str()));
    assert_identical(node, "2015");
    let plain = node.cmd_raw(&["verify", "--json"]).unwrap();
    assert!(plain.status.success(), "verify with no arguments: {}", String::from_utf8_lossy(&plain.stdout));
    audit_verify(&c.county);
    let _ = &c.province;
}

#[test]
fn a_node_offline_across_new_year_gets_its_late_edits_in_only_while_the_window_is_open() {
    let mut c = registered_2014(&[TOWNSHIP], 4, None);
    let node = &mut c.nodes[0];
    let hs = c.registered[0].clone();

    // 30 December, offline: late 2014 registration work — one more household entered.
    node.envs = at("2014-12-30T16:00:00+08:00");
    let mut g = Generator::new(99, 2014);
    let late = g.household(VILLAGES[1], 50, Status::Applied);
    let file = write_households(&node.dir.join("补录.csv"), std::slice::from_ref(&late));
    node.cmd(&["import", file.to_str().unwrap(), "--year", "2014"]).unwrap();

    hub_cmd_at(&mut c.county, "2015-01-01T00:00:30+08:00", &["new-year", "--year", "2014"]);
    restart_at(&mut c.county, "2015-01-03T10:00:00+08:00");

    // 3 January: the node comes back; the window is open, so the old year's edit goes in.
    node.envs = at("2015-01-03T10:00:00+08:00");
    sync(node);
    let st = status(node);
    assert_eq!(st["rejections"].as_array().unwrap().len(), 0, "{st}");
    assert_eq!(county_field(&c.county, HOUSEHOLD, 2014, &late.id(), "status").as_deref(), Some("Applied"));
    assert_eq!(year_row(&st, 2014)["state"], "update_window", "{st}");
    assert_identical(node, "2014");

    // 30 January, offline again: an update of 2014, still inside the window locally...
    node.envs = at("2015-01-30T10:00:00+08:00");
    node.cmd(&["adjust", "update", &hs[1].id(), "--set", "phone=13933334444"]).unwrap();
    // ...but it reaches the county only on 3 February, after the window closed: refused, with
    // a message naming who may reopen the year.
    restart_at(&mut c.county, "2015-02-03T10:00:00+08:00");
    node.envs = at("2015-02-03T10:00:00+08:00");
    sync(node);
    let st = status(node);
    let rej = st["rejections"].as_array().unwrap();
    assert!(
        rej.iter().any(|r| r["reason"] == "year_locked"
            && r["message"].as_str().unwrap().contains("locked")
            && r["message"].as_str().unwrap().contains(COUNTY)),
        "{st}"
    );
    assert_ne!(county_field(&c.county, HOUSEHOLD, 2014, &hs[1].id(), "phone").as_deref(), Some("13933334444"));
    // The node now knows the year is locked, not still in its window.
    assert_eq!(year_row(&st, 2014)["state"], "locked", "{st}");
    let again = node.cmd_raw(&["adjust", "update", &hs[2].id(), "--set", "phone=13900000000"]).unwrap();
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("year 2014 is locked"));
}

#[test]
fn a_township_that_misses_the_deadline_is_warned_then_listed_late() {
    let mut c = registered_2014(&[TOWNSHIP, OTHER_TOWNSHIP], 2, None);
    hub_cmd_at(&mut c.county, "2015-01-01T00:00:30+08:00", &["new-year", "--year", "2014"]);
    restart_at(&mut c.county, "2015-01-20T10:00:00+08:00");

    // The punctual township delivers its update on 20 January.
    let punctual = &mut c.nodes[0];
    punctual.envs = at("2015-01-20T10:00:00+08:00");
    sync(punctual);
    let hs = &c.registered[0];
    punctual.cmd(&["adjust", "exit", &hs[0].id(), "--reason", "稳定脱贫", "--date", "2015-01-10"]).unwrap();
    sync(punctual);

    // The other one learned of the window (it synced, with nothing to send) but delivers nothing; its
    // status warns ahead of the deadline.
    let tardy = &mut c.nodes[1];
    tardy.envs = at("2015-01-20T10:00:00+08:00");
    sync(tardy);
    tardy.envs = at("2015-01-25T10:00:00+08:00");
    let st = status(tardy);
    let warnings = st["warnings"].to_string();
    assert!(warnings.contains("due in 6 days"), "{st}");
    assert!(warnings.contains("2015-01-31"), "{st}");

    // Before the deadline the county sees it as not yet delivered; after it, late.
    let before = hub_cmd_at(&mut c.county, "2015-01-25T10:00:00+08:00", &["late", "--year", "2014"]);
    assert!(before.contains(OTHER_TOWNSHIP) && before.contains("not yet delivered"), "{before}");
    assert!(!before.contains(TOWNSHIP_LINE), "{before}");
    let after = hub_cmd_at(&mut c.county, "2015-02-01T09:00:00+08:00", &["late", "--year", "2014"]);
    assert!(after.contains(&format!("{OTHER_TOWNSHIP}: ")) && after.contains("(late)"), "{after}");
    assert!(!after.contains(TOWNSHIP_LINE), "the punctual township is not late: {after}");

    // Its own status says so too, once past the deadline.
    tardy.envs = at("2015-02-01T09:00:00+08:00");
    let st = status(tardy);
    let text = st.to_string();
    assert!(text.contains("passed") || text.contains("locked"), "{st}");
}

/// How the punctual township would appear in `late`'s output.
const TOWNSHIP_LINE: &str = "420322105: ";

#[test]
fn an_edit_to_a_locked_year_is_refused_until_the_county_reopens_it_audited() {
    let mut c = registered_2014(&[TOWNSHIP], 3, None);
    let node = &mut c.nodes[0];
    let hs = c.registered[0].clone();
    hub_cmd_at(&mut c.county, "2015-01-01T00:00:30+08:00", &["new-year", "--year", "2014"]);
    restart_at(&mut c.county, "2015-02-10T10:00:00+08:00");

    // The node syncs after the window: it learns 2014 is locked and refuses edits itself.
    node.envs = at("2015-02-10T10:00:00+08:00");
    sync(node);
    let st = status(node);
    assert_eq!(year_row(&st, 2014)["state"], "locked", "{st}");
    let out = node.cmd_raw(&["adjust", "update", &hs[0].id(), "--set", "phone=13955556666", "--year", "2014"]).unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("year 2014 is locked"), "{err}");
    assert!(err.contains(COUNTY) && err.contains("reopen"), "the error names who may reopen: {err}");
    let adjust = node.cmd_raw(&["adjust", "exit", &hs[0].id(), "--reason", "稳定脱贫", "--year", "2014"]).unwrap();
    assert!(!adjust.status.success());
    assert!(String::from_utf8_lossy(&adjust.stderr).contains("locked"));

    // A reopening without a reason is refused; with one it is granted and audited.
    let audit_before = audit_verify(&c.county);
    c.county.kill9();
    let no_reason = c.county.cmd_raw(&["reopen", "--year", "2014", "--region", TOWNSHIP, "--reason", " "]).unwrap();
    assert!(!no_reason.status.success());
    let out = c
        .county
        .cmd(&["reopen", "--year", "2014", "--region", TOWNSHIP, "--reason", "县纪委复核：0001户收入核实有误"])
        .unwrap();
    assert!(out.contains("reopened"), "{out}");
    c.county.start().unwrap();
    let audit_after = audit_verify(&c.county);
    assert_ne!(audit_before, audit_after, "the reopening left no audit entry");
    let db = rusqlite::Connection::open(c.county.dir.join("hub.db")).unwrap();
    let reopen_entries: i64 = db
        .query_row("SELECT COUNT(*) FROM audit WHERE action = 'reopen'", [], |r| r.get(0))
        .unwrap_or_else(|e| panic!("audit table: {e}"));
    assert_eq!(reopen_entries, 1);

    // The node learns the reopening at its next sync; the edit goes through.
    sync(node);
    assert_eq!(year_row(&status(node), 2014)["state"], "reopened");
    node.cmd(&["adjust", "update", &hs[0].id(), "--set", "phone=13955556666", "--year", "2014"]).unwrap();
    sync(node);
    assert_eq!(county_field(&c.county, HOUSEHOLD, 2014, &hs[0].id(), "phone").as_deref(), Some("13955556666"));
    assert_eq!(status(node)["rejections"].as_array().unwrap().len(), 0);
    assert_identical(node, "2014");
    audit_verify(&c.county);
}

/// A year's figures at one hub, by `report --year` (households, people, entries, exits).
fn figures(hub: &mut Hub, time: &str, year: &str) -> (u64, u64, u64, u64) {
    let v = json(&hub_cmd_at(hub, time, &["report", "--year", year, "--json"]));
    let y = &v["years"][0];
    let n = |x: &Value| x.as_u64().unwrap_or_else(|| panic!("not a number in {v}"));
    (n(&y["total"]["households"]), n(&y["total"]["people"]), n(&y["entries"]), n(&y["exits"]))
}

/// The county forwards (the province's clock at the same moment), then every tier agrees on
/// both years: node and county by `verify`, county and province by `report --year`.
fn forward_and_agree(c: &mut Cycle, time: &str) -> [(u64, u64, u64, u64); 2] {
    restart_at(&mut c.province, time);
    hub_cmd_at(&mut c.county, time, &["forward"]);
    let mut out = [(0, 0, 0, 0); 2];
    for (i, year) in ["2014", "2015"].into_iter().enumerate() {
        let county = figures(&mut c.county, time, year);
        let province = figures(&mut c.province, time, year);
        assert_eq!(
            county, province,
            "{time}: county and province disagree on {year} (households, people, entries, exits)"
        );
        out[i] = county;
    }
    for node in &mut c.nodes {
        node.envs = at(time);
        sync(node);
        assert_identical(node, "2014");
        assert_identical(node, "2015");
    }
    out
}

/// Registration in 2014, each tier's New Year on its own schedule, a township adjusting in the
/// window while the other does nothing, the deadline, a reopening and its end: after every step
/// node, county and province hold the same two years.
fn every_tier_agrees_through_the_cycle(province_first: bool) {
    let mut c = registered_2014(&[TOWNSHIP, OTHER_TOWNSHIP], 3, None);
    if !province_first {
        forward_and_agree(&mut c, "2014-06-02T02:00:00+08:00");
    }
    // (With the province's New Year first, the county's first forward comes only after both.)
    let (county_ny, province_ny) = ("2015-01-01T00:00:30+08:00", "2015-01-01T00:05:00+08:00");
    let order: [(bool, &str); 2] = if province_first {
        [(true, county_ny), (false, province_ny)]
    } else {
        [(false, county_ny), (true, province_ny)]
    };
    for (province, time) in order {
        let hub = if province { &mut c.province } else { &mut c.county };
        let out = hub_cmd_at(hub, time, &["new-year", "--year", "2014"]);
        assert!(out.contains("froze 2014"), "{out}");
    }
    let [y14, y15] = forward_and_agree(&mut c, "2015-01-01T02:00:00+08:00");
    assert_eq!((y14.0, y14.2, y14.3), (6, 6, 0), "2014 after New Year");
    assert_eq!((y15.0, y15.2, y15.3), (6, 0, 0), "2015 starts as 2014 ended");

    // 3 January: township A records an exit and a new phone; B does nothing all month.
    let hs = c.registered[0].clone();
    let a = &mut c.nodes[0];
    a.envs = at("2015-01-03T10:00:00+08:00");
    restart_at(&mut c.county, "2015-01-03T10:00:00+08:00");
    a.cmd(&["adjust", "exit", &hs[0].id(), "--reason", "稳定脱贫", "--date", "2015-01-02"]).unwrap();
    a.cmd(&["adjust", "update", &hs[1].id(), "--set", "phone=13911112222"]).unwrap();
    sync(a);
    let [y14, y15] = forward_and_agree(&mut c, "2015-01-04T02:00:00+08:00");
    // One rule at every tier: the window's exit is one of 2014's (as of 31 December).
    assert_eq!((y14.0, y14.3), (6, 1), "2014: the exit counts in the year it describes");
    assert_eq!((y15.0, y15.2, y15.3), (5, 0, 0), "2015: the exited household left it, not an exit of 2015");

    // 1 February, past the deadline: A delivered and is not told it is late; B is, and the
    // county's `late` says the same.
    let time = "2015-02-01T09:00:00+08:00";
    restart_at(&mut c.county, time);
    for node in &mut c.nodes {
        node.envs = at(time);
        sync(node);
    }
    let warnings = |n: &Node| status(n)["warnings"].to_string();
    assert!(!warnings(&c.nodes[0]).contains("as late"), "{}", warnings(&c.nodes[0]));
    assert!(warnings(&c.nodes[1]).contains("as late"), "{}", warnings(&c.nodes[1]));
    let late = hub_cmd_at(&mut c.county, time, &["late", "--year", "2014"]);
    assert!(late.contains(&format!("{OTHER_TOWNSHIP}: ")) && !late.contains(TOWNSHIP_LINE), "{late}");

    // A reopening for A until 10 February: the change lands in 2014 at the county and the province.
    hub_cmd_at(
        &mut c.county,
        "2015-02-05T09:00:00+08:00",
        &["reopen", "--year", "2014", "--region", TOWNSHIP, "--reason", "复核", "--until", "2015-02-10"],
    );
    let a = &mut c.nodes[0];
    a.envs = at("2015-02-05T09:00:00+08:00");
    sync(a);
    a.cmd(&["adjust", "update", &hs[2].id(), "--set", "phone=13933334444", "--year", "2014"]).unwrap();
    sync(a);
    forward_and_agree(&mut c, "2015-02-06T02:00:00+08:00");
    let province_phone = county_field(&c.province, HOUSEHOLD, 2014, &hs[2].id(), "phone");
    assert_eq!(province_phone.as_deref(), Some("13933334444"), "the reopening's change reached the province's 2014");

    // On its last day A enters one more change but syncs only after the reopening ended: the
    // county refuses it and A's copy goes back to the county's, so the two do not diverge.
    let a = &mut c.nodes[0];
    a.envs = at("2015-02-10T17:00:00+08:00");
    a.cmd(&["adjust", "update", &hs[2].id(), "--set", "phone=13955556666", "--year", "2014"]).unwrap();
    a.envs = at("2015-02-12T09:00:00+08:00");
    restart_at(&mut c.county, "2015-02-12T09:00:00+08:00");
    sync(a);
    let st = status(a);
    assert!(st["rejections"].to_string().contains("year_locked"), "{st}");
    assert_eq!(show(a, &hs[2].id(), "2014")["fields"]["phone"], "13933334444", "rolled back to the county's copy");
    // And the node itself now refuses what the county would.
    let refused = a.cmd_raw(&["adjust", "update", &hs[2].id(), "--set", "phone=1", "--year", "2014"]).unwrap();
    assert!(!refused.status.success() && String::from_utf8_lossy(&refused.stderr).contains("locked"));
    forward_and_agree(&mut c, "2015-02-12T10:00:00+08:00");
    for node in &c.nodes {
        let plain = node.cmd_raw(&["verify", "--json"]).unwrap();
        assert!(plain.status.success(), "verify with no arguments: {}", String::from_utf8_lossy(&plain.stdout));
    }
}

#[test]
fn every_tier_agrees_through_the_cycle_county_new_year_first() {
    every_tier_agrees_through_the_cycle(false);
}

#[test]
fn every_tier_agrees_through_the_cycle_province_new_year_first() {
    every_tier_agrees_through_the_cycle(true);
}
