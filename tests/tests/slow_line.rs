//! A township on a slow line (the proxy lets 2,000 bytes/s through each way) whose requests time
//! out after 5 s: its first sync's change set is larger than the line carries in one request, so
//! sent whole it would be cut and resent from zero for ever. Sized to the measured pace it gets
//! through on the first `sync`, close to the line's own limit.

mod common;

use common::{county_with_township, households_csv};
use jianka_tests::proxy::{FaultProxy, Faults};
use std::time::Instant;

const RATE: u64 = 2_000;

#[test]
fn a_change_set_larger_than_the_line_carries_in_one_request_gets_through() {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let (_province, county, node) = county_with_township(tmp.path(), "420322105").unwrap();
    let proxy = rt
        .block_on(FaultProxy::start(county.addr, Faults { bytes_per_sec: Some(RATE), ..Faults::clean() }, 1))
        .unwrap();
    node.set_hub_url(&proxy.url()).unwrap();
    let text = std::fs::read_to_string(&node.config).unwrap();
    std::fs::write(&node.config, text.replace("request_timeout_secs = 30", "request_timeout_secs = 5")).unwrap();
    let csv = households_csv(tmp.path(), &["420322105200", "420322105201"], 300, 5);
    node.cmd(&["import", csv.to_str().unwrap(), "--year", "2014"]).unwrap();

    let started = Instant::now();
    let out = node.cmd_raw(&["sync", "--json"]).unwrap();
    let took = started.elapsed();
    assert!(out.status.success(), "the first sync must get through: {}", String::from_utf8_lossy(&out.stderr));
    let hub_db = rusqlite::Connection::open(county.dir.join("hub.db")).unwrap();
    let envelope: i64 = hub_db.query_row("SELECT MAX(LENGTH(bytes)) FROM envelopes", [], |r| r.get(0)).unwrap();
    // Larger than a 5 s request carries at this rate: sent whole it could never arrive.
    assert!(envelope as u64 > RATE * 5, "the change set ({envelope} bytes) must not fit one request");
    let wire = proxy.stats().bytes.load(std::sync::atomic::Ordering::Relaxed);
    let limit = wire as f64 / RATE as f64;
    println!(
        "slow line {RATE} B/s, 5 s timeout: change set {envelope} B, {wire} B on the wire, sync {:.1} s = {:.2} × the line's limit ({limit:.1} s), bytes sent / needed {:.2}",
        took.as_secs_f64(),
        took.as_secs_f64() / limit,
        wire as f64 / envelope as f64
    );
    // Downstream answers (a digest of every record) are the other half of the slow-line issue:
    // compare over a fast line.
    proxy.set_faults(Faults::clean());
    let v = node.cmd_raw(&["verify", "--year", "2014", "--json"]).unwrap();
    assert!(v.status.success(), "{}", String::from_utf8_lossy(&v.stdout));
}

/// The other direction: the county's decisions on 300 households come down as feedback over
/// the same slow line, in pages (and items) the line carries inside the timeout.
#[test]
fn the_countys_decisions_come_down_a_slow_line_too() {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let (_province, county, node) = county_with_township(tmp.path(), "420322105").unwrap();
    let proxy = rt.block_on(FaultProxy::start(county.addr, Faults::clean(), 2)).unwrap();
    node.set_hub_url(&proxy.url()).unwrap();
    let text = std::fs::read_to_string(&node.config).unwrap();
    std::fs::write(&node.config, text.replace("request_timeout_secs = 30", "request_timeout_secs = 5")).unwrap();
    let year = chrono::Utc::now().format("%Y").to_string();
    let csv = households_csv(tmp.path(), &["420322105200", "420322105201"], 300, 6);
    node.cmd(&["import", csv.to_str().unwrap(), "--year", &year]).unwrap();
    let today = chrono::Utc::now().date_naive();
    for (step, days) in [30, 29, 22, 21, 14].into_iter().enumerate() {
        let date = (today - chrono::Duration::days(days)).to_string();
        let mut args = vec!["workflow", "advance", "--all", "--date", &date, "--year", &year];
        if step == 0 {
            args.extend(["--minutes", "评议通过"]);
        }
        node.cmd(&args).unwrap();
    }
    // The hand-over goes up over a fast line. Then the node forgets what it pulled (as a node
    // restored from a backup would), so the county's whole answer comes down the slow line.
    node.cmd(&["sync"]).unwrap();
    let db = rusqlite::Connection::open(node.dir.join("node.db")).unwrap();
    db.execute("UPDATE meta SET value = '0' WHERE key = 'feedback_since'", []).unwrap();
    db.execute("DELETE FROM meta WHERE key = 'link_bytes_per_sec'", []).unwrap();
    drop(db);
    proxy.set_faults(Faults { bytes_per_sec: Some(RATE), ..Faults::clean() });
    let before = proxy.stats().bytes.load(std::sync::atomic::Ordering::Relaxed);
    let started = Instant::now();
    let out = node.cmd_raw(&["sync", "--json"]).unwrap();
    assert!(out.status.success(), "the decisions must come down: {}", String::from_utf8_lossy(&out.stderr));
    let took = started.elapsed().as_secs_f64();
    let wire = proxy.stats().bytes.load(std::sync::atomic::Ordering::Relaxed) - before;
    println!(
        "slow line {RATE} B/s, 5 s timeout: decisions on 300 households pulled in {took:.1} s, {wire} B on the wire = {:.2} × the line's limit",
        took / (wire as f64 / RATE as f64)
    );
    let st: serde_json::Value = serde_json::from_slice(&node.cmd_raw(&["status", "--json"]).unwrap().stdout).unwrap();
    assert_eq!(st["households_by_status"]["CountyAnnounced"], 300, "{st}");
}

/// A node killed (SIGKILL) two thirds through a slow upload resumes from what the hub holds: what it
/// sends after the restart is less than half of the change set.
#[test]
fn a_node_killed_mid_upload_resumes_from_what_the_hub_holds() {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let (_province, county, node) = county_with_township(tmp.path(), "420322105").unwrap();
    let proxy = rt
        .block_on(FaultProxy::start(county.addr, Faults { bytes_per_sec: Some(RATE), ..Faults::clean() }, 3))
        .unwrap();
    node.set_hub_url(&proxy.url()).unwrap();
    let text = std::fs::read_to_string(&node.config).unwrap();
    std::fs::write(&node.config, text.replace("request_timeout_secs = 30", "request_timeout_secs = 5")).unwrap();
    let csv = households_csv(tmp.path(), &["420322105200", "420322105201"], 300, 7);
    node.cmd(&["import", csv.to_str().unwrap(), "--year", "2014"]).unwrap();

    // Killed once two thirds of the change set are at the hub.
    let mut child = node.spawn(&["sync"]).unwrap();
    let hub_db = rusqlite::Connection::open(county.dir.join("hub.db")).unwrap();
    let held = |db: &rusqlite::Connection| -> (i64, i64) {
        db.query_row("SELECT COALESCE(MAX(total), 0), COALESCE(MAX(LENGTH(data)), 0) FROM uploads", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap_or((0, 0))
    };
    let deadline = Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let (total, got) = held(&hub_db);
        if total > 0 && got * 3 > total * 2 {
            break;
        }
        assert!(Instant::now() < deadline, "the upload never got two thirds of the way");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let (total, _) = held(&hub_db);

    let logged_before = proxy.stats().log.lock().unwrap().len();
    proxy.set_faults(Faults::clean());
    node.cmd(&["sync"]).unwrap();
    // The change-set bytes sent after the restart (upload pieces and whole pushes, headers too).
    let sent_up: u64 = {
        let log = proxy.stats().log.lock().unwrap();
        log[logged_before..]
            .iter()
            .filter(|l| l.contains("PUT /v1/uploads") || l.contains("POST /v1/changesets"))
            .filter_map(|l| l.split_whitespace().rev().nth(1).and_then(|n| n.parse::<u64>().ok()))
            .sum()
    };
    println!("killed two thirds through a {total}-byte upload: {sent_up} bytes of it sent after the restart");
    assert!(sent_up * 2 < total as u64, "after the restart {sent_up} bytes went up for a {total}-byte change set");
    let v = node.cmd_raw(&["verify", "--year", "2014", "--json"]).unwrap();
    assert!(v.status.success(), "{}", String::from_utf8_lossy(&v.stdout));
}
