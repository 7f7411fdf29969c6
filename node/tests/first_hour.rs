//! Two places a newcomer was misled, through the real binary: the year a command works on is the
//! register's (and said), not silently this calendar year's; contact details are correctable
//! after the county's decision while facts stay behind the annual update.

mod common;
use common::*;
use jianka_node::import::{ImportOptions, import_households};
use jianka_node::store;
use jianka_shared::record::{RecordKey, RecordKind};

/// A node registered in 2014 whose first household the county recognised.
fn registered_2014() -> TestNode {
    let t = TestNode::new();
    let p = t.path("h.csv");
    let mut rows = household_rows(VILLAGE, "0001", 2, 7);
    rows.extend(household_rows(VILLAGE, "0002", 1, 8));
    write_csv(&p, &rows);
    let mut node = t.open(clock_at("2014-06-01T09:00:00+08:00"));
    import_households(&mut node, &p, ImportOptions { year: 2014, dry_run: false, progress_over: usize::MAX }).unwrap();
    let key = RecordKey::new(RecordKind::Household, 2014, format!("{VILLAGE}-0001"));
    store::apply_remote(&node.conn, &key, "status", "CountyAnnounced", jianka_shared::Hlc(u64::MAX / 2)).unwrap();
    t
}

#[test]
fn a_command_without_year_works_on_the_registers_year_and_says_so() {
    let t = registered_2014();
    // Years later by the calendar, the register still holds 2014.
    let out = t.command("2026-12-02T09:00:00+08:00").args(["household", "list", "--json"]).output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let listed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(listed.as_array().map(Vec::len), Some(2), "{listed}");
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("year 2014") && said.contains("--year"), "the year taken is said: {said}");
    // Given explicitly, nothing is said.
    let out = t.command("2026-12-02T09:00:00+08:00").args(["household", "list", "--year", "2014"]).output().unwrap();
    assert!(!String::from_utf8_lossy(&out.stderr).contains("give --year"));
}

#[test]
fn contact_details_are_correctable_after_the_decision_and_facts_are_not() {
    let t = registered_2014();
    let hid = format!("{VILLAGE}-0001");
    let now = "2014-10-01T09:00:00+08:00";
    let ok = t.command(now).args(["household", "edit", &hid, "--year", "2014", "--set", "phone=13912340000"]).output();
    let ok = ok.unwrap();
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
    let refused = t.command(now).args(["household", "edit", &hid, "--year", "2014", "--set", "income=9000"]).output();
    let refused = refused.unwrap();
    assert_eq!(refused.status.code(), Some(2));
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(err.contains("annual update") && err.contains("contact details"), "{err}");
}
