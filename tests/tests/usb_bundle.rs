//! No link at all: the township's changes go to the county on a USB stick and the county's answer
//! comes back the same way. A tampered bundle is refused and changes nothing.

mod common;

use common::{county_with_township, households_csv};

#[test]
fn a_bundle_on_a_stick_gets_the_township_synced() {
    let tmp = tempfile::tempdir().unwrap();
    let (_province, county, node) = county_with_township(tmp.path(), "420322105").unwrap();
    // The link is down: the node's hub address leads nowhere.
    node.set_hub_url("http://127.0.0.1:9").unwrap();
    let csv = households_csv(tmp.path(), &["420322105200"], 40, 3);
    node.cmd(&["import", csv.to_str().unwrap(), "--year", "2014"]).unwrap();

    let stick = tmp.path().join("usb");
    std::fs::create_dir_all(&stick).unwrap();
    let bundle = stick.join("420322105.jkb");
    node.cmd(&["export-bundle", "--out", bundle.to_str().unwrap()]).unwrap();

    // A tampered copy is refused with a reason, and the county stores nothing from it.
    let mut bytes = std::fs::read(&bundle).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    let tampered = stick.join("tampered.jkb");
    std::fs::write(&tampered, &bytes).unwrap();
    let out = county
        .cmd_raw(&["import-bundle", tampered.to_str().unwrap(), "--answer", stick.join("x").to_str().unwrap()])
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("signature"), "{err}");
    let hub_db = rusqlite::Connection::open(county.dir.join("hub.db")).unwrap();
    let stored: i64 = hub_db.query_row("SELECT count(*) FROM records", [], |r| r.get(0)).unwrap();
    assert_eq!(stored, 0, "a refused bundle stored records");

    let answer = stick.join("420322105.answer");
    let said = county.cmd(&["import-bundle", bundle.to_str().unwrap(), "--answer", answer.to_str().unwrap()]).unwrap();
    assert!(said.contains("applied"), "{said}");
    // Importing the same bundle again changes nothing: every change set is already there.
    let again = county.cmd(&["import-bundle", bundle.to_str().unwrap(), "--answer", answer.to_str().unwrap()]).unwrap();
    assert!(again.contains("(0 applied"), "{again}");

    node.cmd(&["import-answer", answer.to_str().unwrap()]).unwrap();
    let status: serde_json::Value = serde_json::from_str(&node.cmd(&["status", "--json"]).unwrap()).unwrap();
    assert_eq!(status["unacknowledged_change_sets"], 0, "{status}");
    assert_eq!(status["pending_changes"], 0, "{status}");

    // When the link comes back, both sides prove they hold the same data.
    node.set_hub_url(&county.url()).unwrap();
    let v = node.cmd_raw(&["verify", "--year", "2014", "--json"]).unwrap();
    let report: serde_json::Value = serde_json::from_slice(&v.stdout).unwrap();
    assert_eq!(report["identical"], true, "{report}");
}
