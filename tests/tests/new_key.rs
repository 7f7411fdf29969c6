//! A township whose key the county revoked (a stolen laptop): its sync is told why and what to
//! do, `new-key` makes another, the county enrolls it, and the next sync sends what the county
//! never received — sealed again under the new key — so nothing is lost and the two agree.

mod common;

use common::{county_with_township, households_csv};

#[test]
fn a_revoked_township_gets_back_in_with_a_new_key_and_loses_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let (_province, county, node) = county_with_township(tmp.path(), "420322105").unwrap();
    let csv = households_csv(tmp.path(), &["420322105200"], 10, 3);
    node.cmd(&["import", csv.to_str().unwrap(), "--year", "2014"]).unwrap();
    node.cmd(&["sync"]).unwrap();

    // More work, then the county revokes the key before it is sent.
    std::fs::create_dir_all(tmp.path().join("more")).unwrap();
    let more = households_csv(&tmp.path().join("more"), &["420322105201"], 5, 4);
    node.cmd(&["import", more.to_str().unwrap(), "--year", "2014"]).unwrap();
    let key_id = {
        let k = jianka_keyfile::Keypair::read(&node.key_file()).unwrap();
        k.key_id().to_string()
    };
    county.cmd(&["revoke", "--key", &key_id, "--reason", "laptop stolen"]).unwrap();
    let out = node.cmd_raw(&["sync"]).unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("revoked") && err.contains("laptop stolen"), "told why: {err}");
    assert!(err.contains("jianka-node new-key"), "told what to do: {err}");

    // The old key stays revoked; a new one is enrolled and installed.
    let again = county.enroll("420322105", &node.key_file());
    assert!(again.is_err(), "a revoked key is not enrolled again");
    let made = node.cmd(&["new-key"]).unwrap();
    assert!(made.contains("public_key "), "{made}");
    let kept = std::fs::read_dir(&node.dir)
        .unwrap()
        .filter_map(Result::ok)
        .any(|e| e.file_name().to_string_lossy().starts_with("node.key.revoked-"));
    assert!(kept, "the old key is kept aside");
    let chain = county.enroll("420322105", &node.key_file()).unwrap();
    node.cmd(&["trust", chain.to_str().unwrap()]).unwrap();
    let out = node.cmd(&["sync"]).unwrap();
    assert!(out.contains("sync ok"), "{out}");
    node.cmd(&["sync"]).unwrap();
    let v = node.cmd_raw(&["verify", "--year", "2014", "--json"]).unwrap();
    assert!(v.status.success(), "{}", String::from_utf8_lossy(&v.stdout));
    let hub_db = rusqlite::Connection::open(county.dir.join("hub.db")).unwrap();
    let households: i64 =
        hub_db.query_row("SELECT COUNT(*) FROM records WHERE kind = 0 AND deleted = 0", [], |r| r.get(0)).unwrap();
    assert_eq!(households, 15, "the work done before the new key reached the county");
}
