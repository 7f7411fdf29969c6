//! Every township of a real county syncing in the same minute: 郧西县 (420322) has 19 townships.
//! Each registers 100 households and moves them to 县复审 offline; then all 19 `jianka-node sync`
//! processes start at the same moment against one county hub. Every one must succeed on its first
//! run, every node's `verify` must agree, and none may take much longer than one township
//! syncing alone (measured first, on a hub of its own, with the very same change set).

use jianka_shared::domain::Household;
use jianka_tests::generate::Generator;
use jianka_tests::harness::Node;
use jianka_tests::regions::Regions;
use jianka_tests::scale::{self, YEAR};
use std::process::{Command, Stdio};
use std::sync::{Barrier, Mutex};
use std::time::{Duration, Instant};

const COUNTY: &str = "420322";
const PER_TOWNSHIP: usize = 100;
/// How much longer than alone a sync in the burst may take: the hub serialises writes, so the
/// last of 19 waits for the others' merges, but never for a time-out.
const SLACK: Duration = Duration::from_secs(10);
/// A sync still running after this is killed and fails the test (the node's own retries with
/// 30 s time-outs could otherwise keep it going for many minutes).
const GIVE_UP: Duration = Duration::from_secs(120);

struct Finished {
    township: String,
    took: Duration,
    ok: bool,
    output: String,
}

/// `jianka-node sync` for `node`, timed from spawn to exit.
fn timed_sync(node: &Node) -> Finished {
    let start = Instant::now();
    let mut child = Command::new(jianka_tests::harness::binary("jianka-node"))
        .args(["--config", node.config_str(), "sync"])
        .envs(node.envs.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start jianka-node sync");
    // Poll so a hung sync is killed rather than hanging the suite; the output is small.
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break Some(status);
        }
        if start.elapsed() > GIVE_UP {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let took = start.elapsed();
    let out = child.wait_with_output().expect("output");
    Finished {
        township: node.township.clone(),
        took,
        ok: status.is_some_and(|s| s.success()),
        output: format!(
            "{}{}{}",
            if status.is_none() { "killed after the give-up time\n" } else { "" },
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    }
}

#[test]
fn all_nineteen_townships_of_a_county_sync_at_once() {
    let tmp = tempfile::tempdir().unwrap();
    let regions = Regions::load_fixture().unwrap();
    let townships: Vec<String> = regions.townships_of(COUNTY).iter().map(|t| t.code.clone()).collect();
    assert_eq!(townships.len(), 19, "郧西县 has 19 townships in the fixture");

    // One generator for all, so no person is registered in two townships.
    let mut generator = Generator::new(322, 2014);
    let households: Vec<Vec<Household>> = townships
        .iter()
        .map(|t| {
            let villages: Vec<&str> = regions.villages_of(t).iter().take(3).map(|v| v.code.as_str()).collect();
            assert!(!villages.is_empty(), "{t} has no village in the fixture");
            scale::households(&mut generator, &villages, PER_TOWNSHIP)
        })
        .collect();

    let (_province, county) = scale::county(&tmp.path().join("county"), COUNTY, 1_000_000).unwrap();
    let start = Instant::now();
    // Enrolment writes the county's database through its CLI: one at a time.
    let nodes: Vec<Node> = townships
        .iter()
        .map(|t| scale::township_node(&tmp.path().join(format!("node-{t}")), &county, t).unwrap())
        .collect();
    // The clerks' offline work is independent per node: a few at a time on two cores.
    let next = Mutex::new(0usize);
    std::thread::scope(|s| {
        for _ in 0..3 {
            s.spawn(|| {
                loop {
                    let i = {
                        let mut n = next.lock().unwrap();
                        *n += 1;
                        *n - 1
                    };
                    let Some(node) = nodes.get(i) else { break };
                    scale::register_offline(node, &households[i]).unwrap();
                }
            });
        }
    });
    eprintln!("{} townships × {PER_TOWNSHIP} households set up in {:.1?}", nodes.len(), start.elapsed());

    // Alone: a copy of the first township (same change set) on a hub of its own.
    let (_p, lone_county) = scale::county(&tmp.path().join("alone"), COUNTY, 1_000_000).unwrap();
    let lone = scale::copy_node(&nodes[0], &tmp.path().join("alone/node"), &lone_county).unwrap();
    let alone = timed_sync(&lone);
    assert!(alone.ok, "{} alone: sync failed:\n{}", alone.township, alone.output);
    scale::verify_identical(&lone, YEAR).unwrap();

    // The burst: every sync process started at the same moment.
    let barrier = Barrier::new(nodes.len());
    let mut burst: Vec<Finished> = std::thread::scope(|s| {
        let handles: Vec<_> = nodes
            .iter()
            .map(|node| {
                let barrier = &barrier;
                s.spawn(move || {
                    barrier.wait();
                    timed_sync(node)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    burst.sort_by_key(|f| f.took);
    let (min, median, max) = (burst[0].took, burst[burst.len() / 2].took, burst[burst.len() - 1].took);
    eprintln!(
        "sync of {PER_TOWNSHIP} households: alone {:.2?}; burst of {}: min {min:.2?}, median {median:.2?}, max {max:.2?}",
        alone.took,
        burst.len()
    );

    let failed: Vec<String> =
        burst.iter().filter(|f| !f.ok).map(|f| format!("{} after {:.1?}:\n{}", f.township, f.took, f.output)).collect();
    assert!(failed.is_empty(), "{} of {} first syncs failed:\n{}", failed.len(), burst.len(), failed.join("\n"));
    for node in &nodes {
        scale::verify_identical(node, YEAR).unwrap();
    }
    let decided = scale::county_households(&county, YEAR).unwrap();
    assert_eq!(decided.len(), townships.len() * PER_TOWNSHIP);
    let undecided = decided.values().filter(|d| d.decision != "认定").count();
    assert_eq!(undecided, 0, "{undecided} households not admitted under a ceiling far above the total");
    let slow: Vec<String> = burst
        .iter()
        .filter(|f| f.took > alone.took + SLACK)
        .map(|f| format!("{} {:.1?}", f.township, f.took))
        .collect();
    assert!(slow.is_empty(), "alone {:.1?}; syncs in the burst more than {SLACK:?} slower: {slow:?}", alone.took);
}
