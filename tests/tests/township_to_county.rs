//! A township pushes to its county through a link that drops requests, cuts responses mid-body,
//! delays and duplicates; after the link heals, `verify` reports county and node identical.

mod common;

use common::{county_with_township, households_csv};
use jianka_tests::proxy::{FaultProxy, Faults};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn township_sync_survives_a_bad_link_and_verifies_identical() {
    let tmp = tempfile::tempdir().unwrap();
    let (_province, county, node) = county_with_township(tmp.path(), "420322105").unwrap();
    let proxy = FaultProxy::start(county.addr, Faults::chaos(), 7).await.unwrap();
    node.set_hub_url(&proxy.url()).unwrap();

    let csv = households_csv(tmp.path(), &["420322105200", "420322105201"], 300, 1);
    let node2 = tokio::task::block_in_place(|| node.cmd(&["import", csv.to_str().unwrap(), "--year", "2014"]));
    node2.unwrap();

    // Sync passes over the bad link until the outbox is empty (bounded: the test fails if it never drains).
    let mut drained = false;
    for _ in 0..60 {
        let _ = tokio::task::block_in_place(|| node.cmd_raw(&["sync"]));
        let status = tokio::task::block_in_place(|| node.cmd(&["status", "--json"])).unwrap();
        let v: serde_json::Value = serde_json::from_str(&status).unwrap();
        if v["pending_changes"].as_u64() == Some(0) && v["unacknowledged_change_sets"].as_u64().unwrap_or(0) == 0 {
            drained = true;
            break;
        }
    }
    let stats = proxy.stats();
    assert!(drained, "outbox never drained through the faulty link");
    assert!(stats.dropped.load(std::sync::atomic::Ordering::Relaxed) > 0, "the link never dropped anything");

    proxy.set_faults(Faults::clean());
    let _ = tokio::task::block_in_place(|| node.cmd_raw(&["sync"]));
    let out = tokio::task::block_in_place(|| node.cmd_raw(&["verify", "--year", "2014", "--json"])).unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "verify found differences:\n{text}\n{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["identical"], true, "{text}");
    assert!(v["local_count"].as_u64().unwrap() >= 300 + 600, "{text}");
}
