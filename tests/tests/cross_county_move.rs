//! A cross-county move (跨县迁移, issue 5) through the real binaries: province 42, counties 420322
//! and 420323 with one township each. In the January window the receiving township records the
//! arrival first; days later the sending township records the departure; the province completes
//! the move; both counties pull it with `forward` and pass it down; both nodes sync. After every
//! step the province's database holds the person in exactly one county. Dates are driven with
//! `JIANKA_NOW` (hubs restarted at each step's time), never by sleeping.

use jianka_shared::domain::{Household, Status};
use jianka_shared::labels::Relation;
use jianka_tests::generate::{Generator, write_csv};
use jianka_tests::harness::{Hub, Node};
use serde_json::Value;
use std::path::Path;

const FROM_COUNTY: &str = "420322";
const TO_COUNTY: &str = "420323";
const FROM_TOWNSHIP: &str = "420322105";
const TO_TOWNSHIP: &str = "420323101";
const REGISTRATION: &str = "2014-06-01T09:00:00+08:00";

fn at(time: &str) -> Vec<(String, String)> {
    vec![("JIANKA_NOW".into(), time.into())]
}

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// Moves every hub's and node's clock to `time` (hubs restart with it).
fn set_time(hubs: &mut [&mut Hub], nodes: &mut [&mut Node], time: &str) {
    for h in hubs.iter_mut() {
        h.kill9();
        h.envs = at(time);
        h.start().unwrap();
    }
    for n in nodes.iter_mut() {
        n.envs = at(time);
    }
}

/// A hub command run while its server is down, at the hub's current time; restarted afterwards.
fn hub_cmd(hub: &mut Hub, args: &[&str]) -> String {
    hub.kill9();
    let out = hub.cmd(args).unwrap_or_else(|e| panic!("{args:?} at {}: {e:#}\nlog:\n{}", hub.region, hub.log()));
    hub.start().unwrap();
    out
}

fn sync(node: &Node) {
    node.cmd(&["sync", "--json"]).unwrap();
}

fn assert_identical(node: &Node, year: &str) {
    let out = node.cmd_raw(&["verify", "--year", year, "--json"]).unwrap();
    let v = json(&String::from_utf8_lossy(&out.stdout));
    assert_eq!(v["identical"], true, "{} year {year}: node and county differ: {v}", node.township);
}

/// The counties (by the member's `village` field) whose live member record for `id` the hub's
/// database holds in `year`.
fn counties_holding(hub: &Hub, year: u16, id: &str) -> Vec<String> {
    let db = rusqlite::Connection::open(hub.dir.join("hub.db")).unwrap();
    let mut stmt =
        db.prepare("SELECT fields FROM records WHERE kind = 1 AND year = ?1 AND id = ?2 AND deleted = 0").unwrap();
    let rows: Vec<String> =
        stmt.query_map(rusqlite::params![year as i64, id], |r| r.get(0)).unwrap().map(Result::unwrap).collect();
    rows.iter()
        .map(|f| {
            let v: Value = serde_json::from_str(f).unwrap();
            let village = jianka_tests::stored::stored_value(&v, "village").expect("member has a village").to_string();
            village[..6].to_string()
        })
        .collect()
}

fn member_ids_of(node: &Node, household: &str) -> Vec<String> {
    let shown = json(&node.cmd(&["household", "show", household, "--year", "2014", "--json", "--full"]).unwrap());
    shown
        .to_string()
        .split('"')
        .filter(|s| s.len() == 18 && s.as_bytes()[..17].iter().all(u8::is_ascii_digit))
        .map(str::to_string)
        .collect()
}

fn register(node: &Node, seed: u64, township: &str) -> Vec<Household> {
    let mut g = Generator::new(seed, 2014);
    let villages = [format!("{township}200"), format!("{township}201")];
    let hs: Vec<Household> = (0..2u32)
        .map(|i| {
            loop {
                let h = g.household(&villages[i as usize % 2], i + 1, Status::Applied);
                // Three people at least, so the one who moves leaves a household behind.
                if h.members.len() >= 3 {
                    break h;
                }
            }
        })
        .collect();
    let csv = node.dir.join("扶贫手册-2014.csv");
    write_csv(std::fs::File::create(&csv).unwrap(), &hs).unwrap();
    node.cmd(&["import", csv.to_str().unwrap(), "--year", "2014"]).unwrap();
    for (i, date) in ["2014-05-05", "2014-05-06", "2014-05-13", "2014-05-14", "2014-05-21"].iter().enumerate() {
        let mut args = vec!["workflow", "advance", "--all", "--date", date, "--year", "2014", "--json"];
        if i == 0 {
            args.extend(["--minutes", "村民代表大会评议通过"]);
        }
        node.cmd(&args).unwrap();
    }
    sync(node);
    sync(node);
    hs
}

#[test]
fn a_person_moving_between_counties_is_in_exactly_one_county_at_every_step() {
    let root = tempfile::tempdir().unwrap();
    let profile =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/profiles/hubei-2014.toml").canonicalize().unwrap();
    let quotas = root.path().join("quotas.toml");
    let mut q = String::new();
    for c in [FROM_COUNTY, TO_COUNTY] {
        q.push_str(&format!("[[counties]]\ncounty = \"{c}\"\npeople = 100000\nvillages = 10\n"));
    }
    std::fs::write(&quotas, q).unwrap();
    let (p, qs) = (profile.to_str().unwrap(), quotas.to_str().unwrap());
    let mut province =
        Hub::init_with(&root.path().join("province"), "42", &["--profile", p], at(REGISTRATION)).unwrap();
    let mut counties: Vec<Hub> = [FROM_COUNTY, TO_COUNTY]
        .iter()
        .map(|c| {
            let hub = Hub::init_with(
                &root.path().join(format!("county-{c}")),
                c,
                &["--parent-url", &province.url(), "--profile", p, "--quotas", qs],
                at(REGISTRATION),
            )
            .unwrap();
            let chain = province.enroll(c, &hub.dir.join("hub.key")).unwrap();
            hub.cmd(&["install-chain", chain.to_str().unwrap()]).unwrap();
            province.allocate_to(&hub, "2014", 100000, 10).unwrap();
            hub
        })
        .collect();
    province.start().unwrap();
    for c in counties.iter_mut() {
        c.start().unwrap();
    }
    let mut nodes: Vec<Node> = [(FROM_TOWNSHIP, 0usize), (TO_TOWNSHIP, 1)]
        .iter()
        .map(|(t, ci)| {
            let county = &counties[*ci];
            let node =
                Node::init_with(&root.path().join(format!("node-{t}")), t, &county.url(), at(REGISTRATION)).unwrap();
            let chain = county.enroll(t, &node.key_file()).unwrap();
            node.cmd(&["trust", chain.to_str().unwrap()]).unwrap();
            node
        })
        .collect();
    let from_hs = register(&nodes[0], 4201, FROM_TOWNSHIP);
    let to_hs = register(&nodes[1], 4202, TO_TOWNSHIP);
    for c in counties.iter_mut() {
        hub_cmd(c, &["forward"]);
    }
    let mover =
        from_hs[0].members.iter().find(|m| m.relation != Relation::Head && m.schooling.is_none()).unwrap().clone();
    let id = mover.id_number.as_str().to_string();
    assert_eq!(counties_holding(&province, 2014, &id), vec![FROM_COUNTY]);

    // New Year: both counties freeze 2014 and open the window; their nightly forward sends the
    // carried 2015 records up.
    let [county_from, county_to] = &mut counties[..] else { unreachable!() };
    let [node_from, node_to] = &mut nodes[..] else { unreachable!() };
    set_time(
        &mut [&mut province, &mut *county_from, &mut *county_to],
        &mut [&mut *node_from, &mut *node_to],
        "2015-01-01T00:00:30+08:00",
    );
    for c in [&mut *county_from, &mut *county_to] {
        hub_cmd(c, &["new-year", "--year", "2014"]);
        hub_cmd(c, &["forward"]);
    }
    for y in [2014, 2015] {
        assert_eq!(counties_holding(&province, y, &id), vec![FROM_COUNTY], "{y}");
    }

    // 6 January: the receiving township records the arrival; its county forwards. The province
    // holds it as a move while the person stays in the old county: never both.
    set_time(
        &mut [&mut province, &mut *county_from, &mut *county_to],
        &mut [&mut *node_from, &mut *node_to],
        "2015-01-06T10:00:00+08:00",
    );
    sync(node_to);
    let target = to_hs[0].id();
    let sets = [
        format!("姓名={}", mover.name),
        "与户主关系=其他".to_string(),
        format!("性别={}", mover.sex.label()),
        format!("文化程度={}", mover.education.label()),
        format!("健康状况={}", mover.health.label()),
        format!("劳动能力={}", mover.labour.label()),
    ];
    let mut args = vec!["adjust", "move-in", "--household", &target, "--id-number", &id, "--from-county", FROM_COUNTY];
    for s in &sets {
        args.extend(["--set", s]);
    }
    args.extend(["--date", "2015-01-05"]);
    let out = node_to.cmd(&args).unwrap();
    assert!(out.contains("arrival from county 420322"), "{out}");
    sync(node_to);
    sync(node_to);
    hub_cmd(county_to, &["forward"]);
    for y in [2014, 2015] {
        assert_eq!(counties_holding(&province, y, &id), vec![FROM_COUNTY], "{y}: the arrival is held, never both");
    }

    // 9 January, days later: the sending township records the departure; its county forwards and
    // the province completes the move in one step: never neither.
    set_time(
        &mut [&mut province, &mut *county_from, &mut *county_to],
        &mut [&mut *node_from, &mut *node_to],
        "2015-01-09T15:00:00+08:00",
    );
    sync(node_from);
    let out = node_from
        .cmd(&["adjust", "move-out", &id, "--to-county", TO_COUNTY, "--date", "2015-01-08", "--reason", "投亲"])
        .unwrap();
    assert!(out.contains("move out to county 420323"), "{out}");
    assert!(member_ids_of(node_from, &from_hs[0].id()).contains(&id), "still here until the province completes it");
    sync(node_from);
    sync(node_from);
    hub_cmd(county_from, &["forward"]);
    for y in [2014, 2015] {
        assert_eq!(counties_holding(&province, y, &id), vec![TO_COUNTY], "{y}: the move is completed");
    }

    // 10 January: both counties forward (and pull the province's feedback); both nodes sync.
    set_time(
        &mut [&mut province, &mut *county_from, &mut *county_to],
        &mut [&mut *node_from, &mut *node_to],
        "2015-01-10T09:00:00+08:00",
    );
    let out = hub_cmd(county_from, &["forward"]);
    assert!(out.contains("pulled"), "{out}");
    hub_cmd(county_to, &["forward"]);
    for y in [2014, 2015] {
        assert_eq!(counties_holding(&province, y, &id), vec![TO_COUNTY], "{y}");
        assert_eq!(counties_holding(&*county_from, y, &id), Vec::<String>::new(), "{y}: gone from the old county");
        assert_eq!(counties_holding(&*county_to, y, &id), vec![TO_COUNTY], "{y}: in the new county");
    }
    // A second pull changes nothing.
    let again = hub_cmd(county_from, &["forward"]);
    assert!(again.contains("pulled 0 province feedback items"), "{again}");
    for node in [&*node_from, &*node_to] {
        sync(node);
        sync(node);
    }
    assert!(!member_ids_of(node_from, &from_hs[0].id()).contains(&id), "the old township lets the person go");
    assert!(member_ids_of(node_to, &target).contains(&id), "the new township keeps the person");
    assert_identical(node_from, "2014");
    assert_identical(node_to, "2014");
    for hub in [&*county_from, &*county_to, &province] {
        let out = hub.cmd(&["audit", "verify"]).unwrap();
        assert!(out.contains("intact"), "{out}");
    }
    assert_eq!(counties_holding(&province, 2014, &id), vec![TO_COUNTY]);
}
