//! 规模控制 from above: a county enforces only the allocation its province signed. Without one
//! it admits nobody and says why; its quotas file cannot raise the number; a forged, altered or
//! self-signed allocation is refused wherever it comes from; a county splits to its townships
//! only what it received. Each test runs on both backends (PostgreSQL when JIANKA_TEST_PG is set).

#[macro_use]
mod common;

use common::*;
use jianka_hub::allocation::Ceiling;
use jianka_shared::allocation::{Allocation, SignedAllocation};
use jianka_shared::domain::Status;
use jianka_shared::protocol::{Feedback, RejectReason};
use jianka_shared::{RecordKind, trust::KeyId};
use std::collections::BTreeMap;

both!(
    a_county_without_an_allocation_admits_nobody_and_says_why,
    a_county_is_held_to_its_allocation_whatever_its_quotas_file_claims,
    forged_altered_or_self_signed_allocations_are_refused,
    an_allocation_altered_in_the_province_queue_is_not_kept_although_the_page_verifies,
    a_county_splits_to_townships_only_what_it_received,
    the_province_rechecks_what_a_county_admitted_and_the_township_hears_why,
    a_county_key_announcing_past_its_allocation_is_refused_at_the_province,
    a_village_rebalancing_takes_effect_at_the_county_through_its_new_allocation,
    household_keys_of_no_township_here_are_refused_without_a_panic,
);

fn admitted(rows: &[jianka_hub::record::StoredRecord]) -> usize {
    rows.iter()
        .filter(|r| {
            r.key.kind == RecordKind::Household && r.fields.get("county.decision").map(|f| f.0.as_str()) == Some("认定")
        })
        .count()
}

async fn a_county_without_an_allocation_admits_nobody_and_says_why(pg: bool) {
    // The county's own file claims 1,000 people: without the province's signature that is nothing.
    let s = setup_with(pg, 1000, None, &[]).await;
    assert!(matches!(s.county.hub.ceiling(2014), Ceiling::Missing(_)));
    let mut node = enroll_node(&s.county, "420322105", 7).await;
    let mut ops = Vec::new();
    for i in 1..=3 {
        ops.extend(ops_of(&household("420322105200", i, 2, i, Status::CountyReview), 5));
    }
    let (_, rej) = accepted(&node.push(ops).await);
    assert_eq!(rej.len(), 3, "{rej:?}");
    for r in &rej {
        assert_eq!(r.reason, RejectReason::NoAllocation);
        assert!(r.message.contains("no verified allocation") && r.message.contains("2014"), "{}", r.message);
    }
    let rows = s.county.hub.records_in(&r("420322"), 2014).await.unwrap();
    assert_eq!(admitted(&rows), 0);

    // Once the province allocates, the next re-examination admits within it.
    allocate(&s.province, "420322", 4, 3).await;
    assert_eq!(s.county.hub.pull_parent_feedback().await.unwrap().allocations, 1);
    let ops = ops_of(&household("420322105200", 9, 2, 9, Status::CountyReview), 6);
    let (_, rej) = accepted(&node.push(ops).await);
    assert!(rej.is_empty(), "{rej:?}");
}

async fn a_county_is_held_to_its_allocation_whatever_its_quotas_file_claims(pg: bool) {
    let s = setup_with(pg, 1000, Some(5), &[]).await;
    assert_eq!(s.county.hub.ceiling(2014).people(), Some(5));
    let mut node = enroll_node(&s.county, "420322105", 7).await;
    let mut ops = Vec::new();
    for i in 1..=4 {
        ops.extend(ops_of(&household("420322105200", i, 2, i, Status::CountyReview), 5));
    }
    let (_, rej) = accepted(&node.push(ops).await);
    assert_eq!(rej.iter().filter(|r| r.reason == RejectReason::OverQuota).count(), 2, "{rej:?}");
    assert!(rej[0].message.contains("ceiling 5 people"), "{}", rej[0].message);
    let rows = s.county.hub.records_in(&r("420322"), 2014).await.unwrap();
    assert_eq!(admitted(&rows), 2, "two households of 2 fit in 5, not the file's 1,000");
}

/// The province's allocation to 420322 as the county holds it.
fn held_chain(s: &Setup) -> Vec<SignedAllocation> {
    s.county.hub.own_allocation(2014).expect("allocated").chain
}

fn resign(a: &Allocation, key: &ed25519_dalek::SigningKey) -> SignedAllocation {
    let mut a = a.clone();
    a.issuer_key = KeyId::of(&key.verifying_key()).to_string();
    a.sign(key)
}

async fn forged_altered_or_self_signed_allocations_are_refused(pg: bool) {
    let s = setup(pg, 5, &[]).await;
    let good = held_chain(&s);
    let base = good[0].read().unwrap();
    // One digit changed, the signature kept.
    let mut altered = good.clone();
    altered[0].statement = altered[0].statement.replace("\"people\":5", "\"people\":9000");
    // The county signing its own raise, naming itself or the province as issuer.
    let own_key = s.county.hub.signing_key().clone();
    let raised = Allocation { people: 9000, serial: 2, ..base.clone() };
    let self_signed = vec![resign(&raised, &own_key)];
    // A key nobody certified.
    let stranger = vec![resign(&raised, &ed25519_dalek::SigningKey::from_bytes(&[99; 32]))];
    // The province's real allocation, but for another county.
    let other = Allocation { region: r("420323"), ..base.clone() };
    let elsewhere = vec![other.sign(s.province.hub.signing_key())];
    for (what, chain, expect) in [
        ("altered", altered, "altered or forged"),
        ("self-signed", self_signed, "signed by key"),
        ("stranger", stranger, "signed by key"),
        ("another county's", elsewhere, "ends at 420323"),
        ("empty", Vec::new(), "no allocation"),
    ] {
        let err = s.county.hub.install_allocation(&chain).await.expect_err(what);
        assert!(format!("{err:#}").contains(expect), "{what}: {err:#}");
        assert_eq!(s.county.hub.ceiling(2014).people(), Some(5), "{what} changed nothing");
    }
    // Refused rows never reached the store: what a restart reads is the one good allocation.
    assert_eq!(s.county.hub.store().allocations().await.unwrap().len(), 1);
    // The good one delivered again (by hand, after the feedback) is kept once.
    s.county.hub.install_allocation(&good).await.unwrap();
    assert_eq!(s.county.hub.store().allocations().await.unwrap().len(), 1);
}

async fn an_allocation_altered_in_the_province_queue_is_not_kept_although_the_page_verifies(pg: bool) {
    let s = setup(pg, 5, &[]).await;
    let mut forged = held_chain(&s);
    forged[0].statement =
        forged[0].statement.replace("\"people\":5", "\"people\":9000").replace("\"serial\":1", "\"serial\":2");
    // Written straight into the province's feedback queue: the page is signed over it, so only
    // the allocation's own signature can tell.
    let mut tx = s.province.hub.store().begin().await.unwrap();
    jianka_hub::feedback::push_feedback(&mut *tx, &[("420322".into(), Feedback::Allocation { chain: forged })])
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let pulled = s.county.hub.pull_parent_feedback().await.unwrap();
    assert_eq!((pulled.items, pulled.allocations), (1, 0), "{pulled:?}");
    assert_eq!(s.county.hub.ceiling(2014).people(), Some(5));
}

async fn a_county_splits_to_townships_only_what_it_received(pg: bool) {
    let s = setup(pg, 10, &[]).await;
    let split = |a: u64, b: u64| {
        BTreeMap::from([
            (r("420322105"), jianka_shared::allocation::Share { people: a, villages: 1 }),
            (r("420322106"), jianka_shared::allocation::Share { people: b, villages: 1 }),
        ])
    };
    let err = s.county.hub.allocate(2014, &split(6, 5), "too much").await.expect_err("over the allocation");
    assert!(format!("{err:#}").contains("more than the 10 people"), "{err:#}");
    let issued = s.county.hub.allocate(2014, &split(4, 6), "by rural population").await.unwrap();
    assert_eq!(issued.len(), 2);
    // A later split for another township counts what stays in force: 10 of 10 are given.
    let more = BTreeMap::from([(r("420322107"), jianka_shared::allocation::Share { people: 1, villages: 0 })]);
    let err = s.county.hub.allocate(2014, &more, "one more").await.expect_err("past the allocation with the others");
    assert!(format!("{err:#}").contains("with what stays in force"), "{err:#}");
    // Each township's chain runs from the province through the county, and it is enforced.
    assert_eq!(issued[0].chain.len(), 2);
    match s.county.hub.ceiling(2014) {
        Ceiling::Allocated(q) => assert_eq!(q.townships.get(&r("420322105")), Some(&4)),
        other => panic!("{other:?}"),
    }
    let mut node = enroll_node(&s.county, "420322105", 7).await;
    let mut ops = Vec::new();
    for i in 1..=3 {
        ops.extend(ops_of(&household("420322105200", i, 2, i, Status::CountyReview), 5));
    }
    let (_, rej) = accepted(&node.push(ops).await);
    assert_eq!(rej.len(), 1, "two of 2 fit the township's 4: {rej:?}");
    assert!(rej[0].message.contains("township 420322105 allocation 4"), "{}", rej[0].message);
    // The township's allocation came down to it with the county's feedback.
    let fb = node.feedback(0).await;
    let chain = fb
        .items
        .iter()
        .find_map(|e| match &e.item {
            Feedback::Allocation { chain } => Some(chain.clone()),
            _ => None,
        })
        .expect("the township's allocation is in its feedback");
    let certs = s.county.hub.chain().unwrap();
    let mut certs = certs;
    let town_cert = jianka_shared::trust::Certificate::issue(
        &r("420322"),
        s.county.hub.signing_key(),
        &r("420322105"),
        &node.key.verifying_key(),
        chrono::NaiveDate::from_ymd_opt(2014, 1, 1).unwrap(),
        chrono::NaiveDate::from_ymd_opt(2030, 1, 1).unwrap(),
    );
    certs.push(town_cert);
    let verified = jianka_shared::allocation::verify_chain(&chain, &certs, &r("420322105")).unwrap();
    assert_eq!(verified.last().unwrap().people, 4);
}

async fn the_province_rechecks_what_a_county_admitted_and_the_township_hears_why(pg: bool) {
    let s = setup(pg, 5, &[]).await;
    let mut node = enroll_node(&s.county, "420322105", 7).await;
    let mut ops = Vec::new();
    for i in 1..=2 {
        ops.extend(ops_of(&household("420322105200", i, 2, i, Status::CountyReview), 5));
    }
    let (_, rej) = accepted(&node.push(ops).await);
    assert!(rej.is_empty(), "4 people fit in 5: {rej:?}");
    // The province lowers the county's number (a new serial) before the county hears of it.
    allocate(&s.province, "420322", 3, 3).await;
    // The forward ends by pulling what the province decided.
    let pulled = s.county.hub.forward().await.unwrap().pulled;
    let rows = s.province.hub.records_in(&r("420322"), 2014).await.unwrap();
    let recognised = |id: &str| rows.iter().any(|r| r.key.id == id && r.field("status") == Some("CountyAnnounced"));
    assert!(recognised("420322105200-0001"), "the first household fits the 3 issued");
    assert!(!recognised("420322105200-0002"), "the second would pass them: not recognised at the province");
    // The province's refusal reaches the township that sent the household, through the county.
    assert!(pulled.passed_down >= 1 && pulled.allocations == 1, "{pulled:?}");
    let fb = node.feedback(0).await;
    let refusal = fb.items.iter().find_map(|e| match &e.item {
        Feedback::Rejected(r) if r.key.id == "420322105200-0002" => Some(r.clone()),
        _ => None,
    });
    let refusal = refusal.expect("the township hears the province's refusal");
    assert_eq!(refusal.reason, RejectReason::OverQuota);
    assert!(
        refusal.message.contains("re-checked at 42") && refusal.message.contains("allocated 3"),
        "{}",
        refusal.message
    );
    // And the county now enforces the lower number itself.
    assert_eq!(s.county.hub.ceiling(2014).people(), Some(3));
}

async fn a_county_key_announcing_past_its_allocation_is_refused_at_the_province(pg: bool) {
    let s = setup(pg, 5, &[]).await;
    // The county's own key, sending the province whatever it likes: four households of 2
    // announced as recognised against an allocation of 5.
    let mut county = Node {
        region: r("420322"),
        key: s.county.hub.signing_key().clone(),
        seq: 0,
        prev: [0; 32],
        url: s.province.url.clone(),
        client: reqwest::Client::new(),
        now: s.province.clock.now_secs(),
    };
    let mut ops = Vec::new();
    for i in 1..=4 {
        ops.extend(ops_of(&household("420322105200", i, 2, i, Status::CountyAnnounced), 5));
    }
    let (_, rej) = accepted(&county.push(ops).await);
    let over: Vec<_> = rej.iter().filter(|r| r.reason == RejectReason::OverQuota).map(|r| r.key.id.as_str()).collect();
    assert_eq!(over, ["420322105200-0003", "420322105200-0004"], "{rej:?}");
    // Sent again in a later change set, they are still over: the count is kept.
    let mut ops = ops_of(&household("420322105200", 5, 2, 5, Status::CountyAnnounced), 6);
    ops.extend(ops_of(&household("420322105200", 6, 1, 6, Status::CountyAnnounced), 6));
    let (_, rej) = accepted(&county.push(ops).await);
    let over: Vec<_> = rej.iter().filter(|r| r.reason == RejectReason::OverQuota).map(|r| r.key.id.as_str()).collect();
    assert_eq!(over, ["420322105200-0005"], "4 + 2 passes 5, 4 + 1 fits: {rej:?}");
}

async fn a_village_rebalancing_takes_effect_at_the_county_through_its_new_allocation(pg: bool) {
    // 3 poor-village places for 420322; 竹山县 (420323) gets 1 of its own, then 2 of 420322's.
    let s = setup(pg, 100, &[]).await;
    allocate(&s.province, "420323", 100, 1).await;
    let (from, to) = s.province.hub.adjust_villages(2014, &r("420322"), &r("420323"), 2, "2014 微调").await.unwrap();
    assert_eq!((from.allocation.villages, from.allocation.serial), (1, 2));
    assert_eq!((to.allocation.villages, to.allocation.serial), (3, 2));
    assert!(from.allocation.note.contains("微调"), "{}", from.allocation.note);
    // More than 420322 holds cannot move; nor between counties of two prefectures.
    let err = s.province.hub.adjust_villages(2014, &r("420322"), &r("420323"), 5, "x").await.unwrap_err();
    assert!(format!("{err:#}").contains("cannot move 5"), "{err:#}");
    assert!(s.province.hub.adjust_villages(2014, &r("420322"), &r("420102"), 1, "x").await.is_err());
    // The county enforces the new number once it arrives: one village of two.
    assert_eq!(s.county.hub.pull_parent_feedback().await.unwrap().allocations, 1);
    assert_eq!(s.county.hub.ceiling(2014).villages(), Some(1));
    let mut node = enroll_node(&s.county, "420322105", 7).await;
    let ops =
        vec![village_op("420322105201", Status::CountyReview, 5), village_op("420322105202", Status::CountyReview, 5)];
    let (_, rej) = accepted(&node.push(ops).await);
    assert_eq!(rej.len(), 1, "{rej:?}");
    assert!(rej[0].key.id == "420322105202" && rej[0].message.contains("village ceiling 1"), "{rej:?}");
    // The province's report shows each county's chain and the audit has both steps.
    let report = s.province.hub.report(Some(2014)).await.unwrap();
    assert!(
        report.allocations.iter().any(|l| l.contains("42 → 420323 for 2014: 100 people, 3 villages (#2)")),
        "{:?}",
        report.allocations
    );
}

/// Quota use is read before an op is checked (so no read waits for the writes): household keys
/// that are no township code of this county (another county's, a character across the ninth
/// byte, too short) or invented townships by the hundred must not panic the hub, and the change
/// set's valid household is still admitted beside their refusals.
async fn household_keys_of_no_township_here_are_refused_without_a_panic(pg: bool) {
    let s = setup_with(pg, 1000, Some(100), &[]).await;
    let mut node = enroll_node(&s.county, "420322105", 7).await;
    let mut ops = ops_of(&household("420322105200", 1, 2, 1, Status::CountyReview), 5);
    let fields = [("status", "CountyReview"), ("village", "420322105200")];
    for id in ["4203221€5200000001", "42032€", "€", "420323105200000001"] {
        ops.push(upsert(jianka_shared::RecordKey::new(RecordKind::Household, 2014, id), &fields, 5));
    }
    for t in (0..1000).filter(|t| *t != 105) {
        let id = format!("420322{t:03}200000001");
        ops.push(upsert(jianka_shared::RecordKey::new(RecordKind::Household, 2014, id), &fields, 5));
    }
    let (_, rej) = accepted(&node.push(ops).await);
    assert_eq!(rej.len(), 4 + 999, "every invented household refused: {} refusals", rej.len());
    let rows = s.county.hub.records_in(&r("420322"), 2014).await.unwrap();
    assert_eq!(admitted(&rows), 1, "the valid household is admitted beside the refusals");
}
