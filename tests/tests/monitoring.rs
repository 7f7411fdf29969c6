//! The 贫困县监测表 through the real binaries: a county files it with its sign-off, the province
//! holds it after the forward; a county without one (or without any sign-off) is listed late
//! once the end of February has passed; a table with a missing item is refused, naming it.

mod common;

use common::{county_with_township, households_csv};
use jianka_tests::harness::Hub;
use std::path::Path;

fn example() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/monitoring.example.csv")
}

#[test]
fn the_monitoring_table_goes_up_with_the_sign_off_and_a_county_without_one_is_late() {
    let tmp = tempfile::tempdir().unwrap();
    let (province, county, node) = county_with_township(tmp.path(), "420322105").unwrap();
    // A second county, enrolled, that files nothing.
    let other = Hub::init(&tmp.path().join("county2"), "420323", &["--parent-url", &province.url()]).unwrap();
    let chain = province.enroll("420323", &other.dir.join("hub.key")).unwrap();
    other.cmd(&["install-chain", chain.to_str().unwrap()]).unwrap();

    let csv = households_csv(tmp.path(), &["420322105200"], 20, 3);
    node.cmd(&["import", csv.to_str().unwrap(), "--year", "2014"]).unwrap();
    node.cmd(&["sync"]).unwrap();
    county.cmd(&["forward"]).unwrap();

    // A table with an item missing: refused, naming it; nothing signed.
    let broken = tmp.path().join("broken.csv");
    let text = std::fs::read_to_string(example()).unwrap().replace("帮扶成效,减贫人数,9800\n", "");
    std::fs::write(&broken, text).unwrap();
    let out = county
        .cmd_raw(&[
            "signoff",
            "--year",
            "2014",
            "--period",
            "2014-monitoring",
            "--monitoring",
            broken.to_str().unwrap(),
        ])
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("帮扶成效: missing 减贫人数"), "{err}");

    // Signed off without the table: the province still owes it from this county.
    county.cmd(&["signoff", "--year", "2014", "--period", "2014-annual"]).unwrap();
    county.cmd(&["forward"]).unwrap();
    let late = province.cmd(&["late", "--year", "2014"]).unwrap();
    assert!(late.contains("420322: no 贫困县监测表 for 2014") && late.contains("(late)"), "{late}");
    assert!(late.contains("420323: no sign-off for 2014"), "{late}");

    // Filed with the next sign-off, forwarded: visible at the province, and 420322 is no longer late.
    let file = example();
    county
        .cmd(&["signoff", "--year", "2014", "--period", "2014-monitoring", "--monitoring", file.to_str().unwrap()])
        .unwrap();
    county.cmd(&["forward"]).unwrap();
    let shown = province.cmd(&["monitoring", "--year", "2014"]).unwrap();
    assert!(shown.contains("420322 贫困县监测表 2014") && shown.contains("减贫人数 9800"), "{shown}");
    assert!(shown.contains("贫困发生率 14.3") && !shown.contains("420323"), "{shown}");
    let late = province.cmd(&["late", "--year", "2014"]).unwrap();
    assert!(!late.contains("420322") && late.contains("420323"), "{late}");
    let json: serde_json::Value =
        serde_json::from_str(&province.cmd(&["monitoring", "--year", "2014", "--json"]).unwrap()).unwrap();
    assert_eq!(json["420322"]["parts"]["帮扶情况"]["结对帮扶单位数"], "146", "{json}");
}
