//! SIGKILL the node at random points of imports, edits and syncs, many times over; afterwards
//! nothing is lost (county and node verify identical, every edit present) and nothing doubled
//! (the hub accepted each change set once: its expected sequence is the node's last + 1).

mod common;

use common::{county_with_township, households_csv};
use rand::{Rng, SeedableRng, rngs::StdRng};
use std::time::Duration;

#[test]
fn node_killed_anywhere_loses_nothing_and_doubles_nothing() {
    let seed: u64 = std::env::var("JIANKA_KILL_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(20141231);
    let mut rng = StdRng::seed_from_u64(seed);
    let tmp = tempfile::tempdir().unwrap();
    let (_province, county, node) = county_with_township(tmp.path(), "420322105").unwrap();
    let csv = households_csv(tmp.path(), &["420322105200", "420322105201", "420322105202"], 600, seed);

    // Killed mid-import: the import is one transaction, so a re-run completes it.
    let mut child = node.spawn(&["import", csv.to_str().unwrap(), "--year", "2014"]).unwrap();
    std::thread::sleep(Duration::from_millis(rng.random_range(20..200)));
    child.kill().unwrap();
    child.wait().unwrap();
    node.cmd(&["import", csv.to_str().unwrap(), "--year", "2014"]).unwrap();

    let mut edits = Vec::new();
    for round in 0..12 {
        // An edit, then a sync killed at a random moment.
        let hh = format!("42032210520{}-{:04}", round % 3, round * 3 + 1 + round % 3);
        let income = 1000 + round * 7;
        if node
            .cmd(&["household", "edit", &hh, "--set", &format!("phone=1390000{income:04}"), "--year", "2014"])
            .is_ok()
        {
            edits.push((hh, format!("1390000{income:04}")));
        }
        let mut child = node.spawn(&["sync"]).unwrap();
        std::thread::sleep(Duration::from_millis(rng.random_range(0..400)));
        child.kill().unwrap();
        child.wait().unwrap();
    }
    assert!(!edits.is_empty(), "no edit went through");

    // Let it finish cleanly, then compare everything.
    for _ in 0..10 {
        node.cmd(&["sync"]).ok();
    }
    let out = node.cmd_raw(&["verify", "--year", "2014", "--json"]).unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("seed {seed}: {e}: {text}"));
    assert_eq!(v["identical"], true, "seed {seed}: {text}");
    assert_eq!(v["pending_changes"], 0, "seed {seed}: {text}");
    let households = v["local_count"].as_u64().unwrap();
    assert!(households >= 600, "seed {seed}: only {households} records");

    // Every edit reached the county: the county's digest equals the node's, and the node holds the edits.
    for (hh, phone) in &edits {
        let shown = node.cmd(&["household", "show", hh, "--year", "2014", "--json", "--full"]).unwrap();
        assert!(shown.contains(phone), "seed {seed}: edit of {hh} lost: {shown}");
    }

    // Nothing doubled: the county holds each of the node's change sets exactly once, with the same
    // hash, and expects the sequence after the node's last one.
    let status: serde_json::Value = serde_json::from_str(&node.cmd(&["status", "--json"]).unwrap()).unwrap();
    assert_eq!(status["unacknowledged_change_sets"], 0, "seed {seed}: {status}");
    let node_db = rusqlite::Connection::open(node.dir.join("node.db")).unwrap();
    let node_sets: Vec<(i64, String, i64)> = node_db
        .prepare("SELECT seq, lower(hex(hash)), op_count FROM envelopes ORDER BY seq")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let hub_db = rusqlite::Connection::open(county.dir.join("hub.db")).unwrap();
    let hub_sets: Vec<(i64, String, i64)> = hub_db
        .prepare("SELECT seq, lower(hash), ops FROM envelopes WHERE origin = '420322105' ORDER BY seq")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert!(node_sets.len() > 1, "seed {seed}: expected several change sets, got {}", node_sets.len());
    assert_eq!(hub_sets, node_sets, "seed {seed}: county and node disagree on the change sets applied");
    let (next_seq, equivocations): (i64, i64) = hub_db
        .query_row(
            "SELECT next_seq, (SELECT count(*) FROM equivocations) FROM streams WHERE origin = '420322105'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(next_seq, node_sets.last().unwrap().0 + 1, "seed {seed}");
    assert_eq!(equivocations, 0, "seed {seed}: a resend differed from the original");
}
