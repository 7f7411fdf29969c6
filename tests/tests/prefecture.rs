//! Scale control through every tier, with the real binaries on loopback: province 湖北省 (42) →
//! prefecture 十堰市 (4203) → counties 郧西县 (420322) and 竹山县 (420323) → townships.
//!
//! The province splits its scale by the counties' weights and villages by class; the allocation
//! goes to the prefecture with the counties' parts, which passes them on; each county splits its
//! number to a township, whose node shows the whole signed chain. A county whose quotas file
//! claims far more is held to its allocation. A 微调 at the prefecture moves poor-village places
//! between the two counties, both enforce the new numbers, and the province has them on file. A
//! tampered allocation file and a tampered feedback page are refused at the receiver. The
//! county's sign-off reaches the province through the prefecture.

use jianka_tests::generate::Generator;
use jianka_tests::harness::Hub;
use jianka_tests::proxy::{FaultProxy, Faults};
use jianka_tests::regions::Regions;
use jianka_tests::scale::{self, REGISTRATION, YEAR, at};
use serde_json::Value;
use std::path::Path;

const PREFECTURE: &str = "4203";
const COUNTIES: [&str; 2] = ["420322", "420323"];
const TOWNSHIP: &str = "420322105";

fn write(path: &Path, text: &str) -> String {
    std::fs::write(path, text).unwrap();
    path.to_str().unwrap().to_string()
}

fn report(hub: &Hub) -> Value {
    serde_json::from_str(&hub.cmd(&["report", "--json", "--year", YEAR]).unwrap()).unwrap()
}

/// The hub's allocation lines (`report`'s chains).
fn chains(hub: &Hub) -> Vec<String> {
    report(hub)["allocations"].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_string()).collect()
}

fn village_ceiling(hub: &Hub) -> u64 {
    report(hub)["years"][0]["village_ceiling"].as_u64().unwrap()
}

#[test]
fn allocations_flow_down_through_a_prefecture_and_every_tier_enforces_them() {
    let root = tempfile::tempdir().unwrap();
    let root = root.path();
    let profile =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/profiles/hubei-2014.toml").canonicalize().unwrap();
    let p = profile.to_str().unwrap();
    // 郧西县's own file claims 100,000 people: no one signed that.
    let claim = write(&root.join("quotas.toml"), "[[counties]]\ncounty = \"420322\"\npeople = 100000\nvillages = 99\n");

    let mut province = Hub::init_with(&root.join("province"), "42", &["--profile", p], at(REGISTRATION)).unwrap();
    let mut prefecture = Hub::init_with(
        &root.join("prefecture"),
        PREFECTURE,
        &["--parent-url", &province.url(), "--profile", p],
        at(REGISTRATION),
    )
    .unwrap();
    let chain = province.enroll(PREFECTURE, &prefecture.dir.join("hub.key")).unwrap();
    prefecture.cmd(&["install-chain", chain.to_str().unwrap()]).unwrap();
    province.start().unwrap();
    prefecture.start().unwrap();
    // 郧西县 reaches the prefecture through a line a man in the middle can rewrite.
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let mitm = rt.block_on(FaultProxy::start(prefecture.addr, Faults::clean(), 1)).unwrap();
    let counties: Vec<Hub> = COUNTIES
        .iter()
        .map(|c| {
            let parent = if *c == "420322" { mitm.url() } else { prefecture.url() };
            let mut extra = vec!["--parent-url", parent.as_str(), "--profile", p];
            if *c == "420322" {
                extra.extend(["--quotas", claim.as_str()]);
            }
            let mut hub = Hub::init_with(&root.join(format!("county-{c}")), c, &extra, at(REGISTRATION)).unwrap();
            let chain = prefecture.enroll(c, &hub.dir.join("hub.key")).unwrap();
            hub.cmd(&["install-chain", chain.to_str().unwrap()]).unwrap();
            hub.start().unwrap();
            hub
        })
        .collect();

    // 规模分解 at the province: 40 people by weight 3 : 1, 25 % of each county's villages.
    let weights = write(&root.join("counties.csv"), "region,weight\n420322,3\n420323,1\n");
    let village_list = write(&root.join("villages.csv"), "region,villages,class\n420322,40,片区县\n420323,20,片区县\n");
    let split = |total: &str| {
        let args = ["--total", total, "--weights", &weights, "--villages", &village_list, "--share", "片区县=25"];
        province.cmd(&[&["allocate", "--year", YEAR][..], &args[..]].concat()).unwrap()
    };
    let out = split("40");
    assert!(out.contains("4203 2014 #1: 40 people, 15 villages"), "one allocation, to the prefecture: {out}");

    // The prefecture receives it with the province's feedback and passes on the counties' parts.
    prefecture.cmd(&["forward"]).unwrap();
    let out = prefecture.cmd(&["allocate", "--year", YEAR, "--out", root.join("by-hand").to_str().unwrap()]).unwrap();
    assert!(out.contains("420322 2014 #1: 30 people, 10 villages"), "{out}");
    assert!(out.contains("420323 2014 #1: 10 people, 5 villages"), "{out}");

    // A tampered allocation file is refused, naming why; the true one is kept.
    let file = root.join("by-hand/allocation-420322.json");
    let text = std::fs::read_to_string(&file).unwrap();
    let forged = root.join("forged.json");
    std::fs::write(&forged, text.replace(r#"\"people\":30"#, r#"\"people\":90"#)).unwrap();
    assert_ne!(std::fs::read_to_string(&forged).unwrap(), text, "the forgery changed the number");
    let refused = counties[0].cmd_raw(&["install-allocation", forged.to_str().unwrap()]).unwrap();
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success() && err.contains("altered or forged"), "{err}");

    // A tampered feedback page is refused too: the man in the middle raises 郧西县's number as
    // it comes down; the county applies nothing and says why.
    mitm.set_faults(Faults {
        rewrite: Some((br#"people\":30"#.to_vec(), br#"people\":90"#.to_vec())),
        ..Faults::clean()
    });
    let cut = counties[0].cmd_raw(&["forward"]).unwrap();
    let err = String::from_utf8_lossy(&cut.stderr);
    assert!(!cut.status.success() && err.contains("refused the feedback"), "{err}");
    assert!(chains(&counties[0]).is_empty(), "nothing kept from a tampered page");
    mitm.set_faults(Faults::clean());
    for c in &counties {
        c.cmd(&["forward"]).unwrap();
    }
    let own = chains(&counties[0]);
    assert!(
        own.iter().any(|l| l.contains(
            "42 → 4203 for 2014: 40 people, 15 villages (#1); 4203 → 420322 for 2014: 30 people, 10 villages (#1)"
        )),
        "{own:?}"
    );
    // The file carried by hand is the same allocation: kept once.
    counties[0].cmd(&["install-allocation", file.to_str().unwrap()]).unwrap();

    // 郧西县 splits its 30 to 羊尾镇, whose node shows the chain from the province down.
    let towns = write(&root.join("townships.csv"), &format!("region,weight\n{TOWNSHIP},1\n"));
    counties[0].cmd(&["allocate", "--year", YEAR, "--weights", &towns]).unwrap();
    let node = scale::township_node(&root.join("town"), &counties[0], TOWNSHIP).unwrap();
    let regions = Regions::load_fixture().unwrap();
    let villages: Vec<&str> = regions.villages_of(TOWNSHIP).iter().take(3).map(|v| v.code.as_str()).collect();
    let households = scale::households(&mut Generator::new(4203, 2014), &villages, 20);
    scale::register_offline(&node, &households).unwrap();
    node.cmd(&["sync"]).unwrap();
    let status = node.cmd(&["status"]).unwrap();
    for step in ["42 → 4203: 40 people", "4203 → 420322: 30 people", "420322 → 420322105: 30 people"] {
        assert!(status.contains(step), "{step}: {status}");
    }

    // Held to the 30 people signed for it, not the 100,000 its file claims.
    let decided = scale::county_households(&counties[0], YEAR).unwrap();
    let admitted: u64 = decided.values().filter(|d| d.decision == "认定").map(|d| d.people).sum();
    let wanted: usize = households.iter().map(|h| h.members.len()).sum();
    assert!(wanted > 30 && admitted > 0 && admitted <= 30, "admitted {admitted} of {wanted} wanted");
    assert!(
        decided.values().any(|d| d.decision == "不予认定" && d.reason.contains("ceiling 30 people")),
        "the refusals name the signed ceiling"
    );

    // 微调 at the prefecture: 2 poor-village places from 郧西县 to 竹山县, in force at both.
    assert_eq!((village_ceiling(&counties[0]), village_ceiling(&counties[1])), (10, 5));
    let out = prefecture
        .cmd(&[
            "quota",
            "adjust",
            "--year",
            YEAR,
            "--from",
            "420322",
            "--to",
            "420323",
            "--villages",
            "2",
            "--reason",
            "2014 微调",
        ])
        .unwrap();
    assert!(
        out.contains("420322 2014 #2: 30 people, 8 villages") && out.contains("420323 2014 #2: 10 people, 7 villages"),
        "{out}"
    );
    for c in &counties {
        c.cmd(&["forward"]).unwrap();
    }
    assert_eq!((village_ceiling(&counties[0]), village_ceiling(&counties[1])), (8, 7));

    // 郧西县 signs off; its data, the sign-off and the prefecture's allocations (备案) reach the
    // province through the prefecture.
    counties[0].cmd(&["signoff", "--year", YEAR, "--period", "2014-annual"]).unwrap();
    counties[0].cmd(&["forward"]).unwrap();
    let up = prefecture.cmd(&["forward"]).unwrap();
    assert!(up.contains("forwarded"), "{up}");
    let at_province = report(&province);
    let filed: Vec<&str> = at_province["allocations"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
    assert!(filed.iter().any(|l| l.ends_with("4203 → 420322 for 2014: 30 people, 8 villages (#2)")), "{filed:?}");
    assert!(filed.iter().any(|l| l.ends_with("4203 → 420323 for 2014: 10 people, 7 villages (#2)")), "{filed:?}");
    let signoffs: Vec<&str> = at_province["signoffs"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
    assert!(signoffs.iter().any(|s| s.starts_with("420322 2014 2014-annual")), "{signoffs:?}");
    // The province re-checked what came up: everything 郧西县 admitted fits what was issued.
    let scale_lines = at_province["years"][0]["scale"].as_array().unwrap();
    let yunxi = scale_lines.iter().find(|l| l["region"] == "420322").expect("a line for 420322");
    assert_eq!(yunxi["allocated"].as_u64(), Some(30), "{yunxi}");
    assert_eq!(yunxi["admitted"].as_u64(), Some(admitted), "{yunxi}");

    // The province lowers the prefecture's allocation: the prefecture's earlier split no longer
    // stands at the province, which now holds 郧西县 to its part of the new one.
    let out = split("20");
    assert!(out.contains("4203 2014 #2: 20 people"), "{out}");
    let lines = report(&province)["years"][0]["scale"].as_array().unwrap().clone();
    let yunxi = lines.iter().find(|l| l["region"] == "420322").expect("a line for 420322");
    assert_eq!(yunxi["allocated"].as_u64(), Some(15), "the new part, not the filed 30: {yunxi}");
    drop(node);
    drop(province);
}
