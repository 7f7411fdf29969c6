//! A clerk's real flow at scale: one township with 2,000 households moves them all through the
//! workflow offline (申请 → 民主评议 → 村公示 → 乡镇审核 → 乡镇公示 → 县复审) and then syncs once.
//! The county must decide every one of them as documented: in household-id order, each admitted
//! while its people still fit under the county ceiling, the others refused over quota.
//!
//! Two flows, each under a ceiling far above the total and under one about half the people fit:
//! - everything offline, then one sync: the register and the workflow reach the county together;
//! - the register synced when it was entered, the workflow offline, then one sync: that change
//!   set carries 10,000 household ops for households whose members the county already holds.
//!
//! The township's import is done once per flow; each county gets a copy of that node (same key,
//! enrolled at each county), so both ceilings judge the very same households.

use jianka_shared::domain::Household;
use jianka_shared::protocol::RejectReason;
use jianka_tests::generate::Generator;
use jianka_tests::harness::{Hub, Node};
use jianka_tests::scale::{self, Decided, YEAR};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

const COUNTY: &str = "420322";
const TOWNSHIP: &str = "420322105";
const HOUSEHOLDS: usize = 2_000;

/// The township's households, in ten real villages of 羊尾镇 (420322105).
fn households() -> Vec<Household> {
    let villages: Vec<String> = (200..210).map(|n| format!("{TOWNSHIP}{n}")).collect();
    let villages: Vec<&str> = villages.iter().map(String::as_str).collect();
    scale::households(&mut Generator::new(105, 2014), &villages, HOUSEHOLDS)
}

fn id_of(h: &Household) -> String {
    format!("{}-{}", h.village, h.number)
}

/// A node that has imported the households and never reached a hub.
fn imported(dir: &Path, households: &[Household]) -> Node {
    let node = Node::init_with(dir, TOWNSHIP, "http://127.0.0.1:9", scale::at(scale::REGISTRATION)).unwrap();
    scale::import(&node, households).unwrap();
    node
}

fn timed_sync(node: &Node, what: &str) {
    let start = Instant::now();
    node.cmd(&["sync"]).unwrap();
    eprintln!("{what}: one sync took {:.1?}", start.elapsed());
}

/// The ceilings to judge under: 10× the total, and one where the household at the halfway point
/// (in id order) has at least 4 people and is refused with room for 3 more, so later, smaller
/// households still fit after it.
fn ceilings(households: &[Household]) -> (u64, u64) {
    let mut sizes: Vec<(String, u64)> = households.iter().map(|h| (id_of(h), h.members.len() as u64)).collect();
    sizes.sort();
    let total: u64 = sizes.iter().map(|(_, n)| n).sum();
    let mut before = 0;
    for (i, (_, n)) in sizes.iter().enumerate() {
        if i >= sizes.len() / 2 && *n >= 4 {
            return (total * 10, before + n - 1);
        }
        before += n;
    }
    unreachable!("no household of 4 or more people in the second half")
}

/// The households the documented order admits under `ceiling`: by id, each if its people still fit.
fn expected_admitted(households: &[Household], ceiling: u64) -> Vec<String> {
    let mut by_id: Vec<(String, u64)> = households.iter().map(|h| (id_of(h), h.members.len() as u64)).collect();
    by_id.sort();
    let mut used = 0;
    let mut admitted = Vec::new();
    for (id, people) in by_id {
        if used + people <= ceiling {
            used += people;
            admitted.push(id);
        }
    }
    admitted
}

/// What the county decided after the node's one sync, checked against the documented order, the
/// node's own view, its rejections and `verify`.
fn check_decisions(county: &Hub, node: &Node, households: &[Household], ceiling: u64) {
    let sizes = scale::county_change_sets(county, TOWNSHIP).unwrap();
    let decided = scale::county_households(county, YEAR).unwrap();
    assert_eq!(decided.len(), households.len(), "the county holds {} households", decided.len());
    let undecided: Vec<_> = decided.iter().filter(|(_, d)| d.decision.is_empty()).take(3).collect();
    assert!(undecided.is_empty(), "undecided after the sync (change sets of {sizes:?} ops): {undecided:?}");
    for h in households {
        let d = &decided[&id_of(h)];
        assert_eq!(d.people, h.members.len() as u64, "{}: the county holds {} members", id_of(h), d.people);
    }

    let admitted: Vec<String> =
        decided.iter().filter(|(_, d)| d.decision == "认定").map(|(id, _)| id.clone()).collect();
    let refused: BTreeMap<&String, &Decided> = decided.iter().filter(|(_, d)| d.decision != "认定").collect();
    let people: u64 = decided.values().filter(|d| d.decision == "认定").map(|d| d.people).sum();
    let expected = expected_admitted(households, ceiling);
    let first_refusals: Vec<_> = refused.iter().take(3).map(|(id, d)| format!("{id}: {}", d.reason)).collect();
    assert!(
        admitted == expected,
        "ceiling {ceiling}: {} households admitted ({people} people), {} expected; first refusals: {first_refusals:#?}",
        admitted.len(),
        expected.len()
    );
    assert!(people <= ceiling, "ceiling {ceiling} exceeded: {people} people admitted");
    if let Some(first) = refused.keys().next() {
        // The ceiling is not a cut-off: a later, smaller household still fits after a refusal.
        assert!(admitted.last().is_some_and(|last| last > *first), "nobody admitted after {first}");
    }
    for d in decided.values().filter(|d| d.decision == "认定") {
        assert_eq!((d.status.as_str(), d.reason.as_str()), ("CountyAnnounced", ""));
    }
    for (id, d) in &refused {
        assert_eq!((d.status.as_str(), d.decision.as_str()), ("NotRecognised", "不予认定"), "{id}");
        assert!(d.reason.starts_with(RejectReason::OverQuota.label()), "{id} refused, but not over quota: {d:?}");
    }

    // The node's view after its one sync: the county's decisions, and a rejection for each refusal.
    let on_node = scale::node_statuses(node, YEAR).unwrap();
    for (id, d) in &decided {
        assert_eq!(on_node.get(id), Some(&d.status), "{id}: the node's view after one sync differs from the county's");
    }
    let rejections = scale::node_rejections(node, YEAR).unwrap();
    let over_quota = serde_json::to_value(RejectReason::OverQuota).unwrap();
    assert_eq!(rejections.keys().collect::<Vec<_>>(), refused.keys().copied().collect::<Vec<_>>());
    for (id, (reason, message)) in &rejections {
        assert!(over_quota == reason.as_str() && !message.is_empty(), "{id}: rejection {reason}: {message}");
    }
    scale::verify_identical(node, YEAR).unwrap();
    eprintln!(
        "ceiling {ceiling}: {} of {} households admitted ({people} people), change sets of {sizes:?} ops",
        admitted.len(),
        households.len()
    );
}

#[test]
fn everything_offline_then_one_sync() {
    let tmp = tempfile::tempdir().unwrap();
    let households = households();
    let (high, half) = ceilings(&households);
    let start = Instant::now();
    let template = imported(&tmp.path().join("template"), &households);
    scale::advance_to_county_review(&template, households.len()).unwrap();
    eprintln!("{HOUSEHOLDS} households imported and moved to 县复审 offline in {:.1?}", start.elapsed());

    for (name, ceiling) in [("high", high), ("half", half)] {
        let root = tmp.path().join(name);
        let (_province, county) = scale::county(&root.join("hubs"), COUNTY, ceiling).unwrap();
        let node = scale::copy_node(&template, &root.join("node"), &county).unwrap();
        timed_sync(&node, &format!("offline, ceiling {ceiling}"));
        // The 18,000-odd ops of import and five steps stay under the node's cut (20,000 by
        // default): the change set carries 12,000 household ops.
        let sizes = scale::county_change_sets(&county, TOWNSHIP).unwrap();
        assert!(sizes.iter().any(|n| *n >= 5_000), "no change set of 5,000 ops or more: {sizes:?}");
        check_decisions(&county, &node, &households, ceiling);
    }
}

#[test]
fn register_synced_then_workflow_offline_then_one_sync() {
    let tmp = tempfile::tempdir().unwrap();
    let households = households();
    let (high, half) = ceilings(&households);
    let template = imported(&tmp.path().join("template"), &households);

    for (name, ceiling) in [("high", high), ("half", half)] {
        let root = tmp.path().join(name);
        let (_province, county) = scale::county(&root.join("hubs"), COUNTY, ceiling).unwrap();
        let node = scale::copy_node(&template, &root.join("node"), &county).unwrap();
        node.cmd(&["sync"]).unwrap();
        let at_county = scale::county_households(&county, YEAR).unwrap();
        assert_eq!(at_county.len(), HOUSEHOLDS);
        assert!(at_county.values().all(|d| d.decision.is_empty()), "decided before reaching 县复审");

        let start = Instant::now();
        scale::advance_to_county_review(&node, households.len()).unwrap();
        eprintln!("{HOUSEHOLDS} households moved to 县复审 offline in {:.1?}", start.elapsed());
        timed_sync(&node, &format!("workflow offline, ceiling {ceiling}"));
        // The workflow's change set: five steps of every household, nothing else.
        let sizes = scale::county_change_sets(&county, TOWNSHIP).unwrap();
        assert_eq!(sizes.last(), Some(&(5 * HOUSEHOLDS as u64)), "change sets of {sizes:?} ops");
        check_decisions(&county, &node, &households, ceiling);
    }
}
