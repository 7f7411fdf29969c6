//! The profile's identification rules and flow applied at the county: the income line, seed
//! 003's exclusions and inclusions, the village criteria of both seeds — each refusal naming its
//! rule — at the county's re-examination (县复审, seed 000) or held against the township's own
//! decision (镇级审定, seed 003, where the district only files). Each test runs on both backends
//! (PostgreSQL when JIANKA_TEST_PG is set).

#[macro_use]
mod common;

use common::*;
use jianka_shared::RecordKind;
use jianka_shared::Yuan;
use jianka_shared::domain::{Household, Status};
use jianka_shared::labels::Relation;
use jianka_shared::protocol::{Feedback, RejectReason, Rejection};

both!(
    the_same_households_are_judged_by_each_profiles_rules,
    a_village_is_judged_by_its_profiles_criteria,
    the_county_decides_by_hand_within_its_ceiling_and_the_township_hears_it,
    the_province_files_what_a_county_announced_and_it_reaches_the_township,
    where_the_township_decides_the_district_cannot_and_only_files,
    where_the_township_decides_its_admissions_still_meet_the_form_and_duplicates,
);

/// Seed 003's rules with the national flow (the county decides at 县复审): the rules and the flow
/// are separate parts of a profile.
fn miyun_rules_county_decides() -> String {
    let (head, tail) = MIYUN_2016.split_once("[household_flow]").unwrap();
    let (_, villages) = tail.split_once("[village_flow]").unwrap();
    format!("{head}[village_flow]{villages}")
}

/// A household of 2 at `per_capita` yuan with the given facts of the 登记表.
fn household_at(no: u32, per_capita: i64, facts: &[(&str, &str)]) -> Household {
    household_in(Status::CountyReview, no, per_capita, facts)
}

/// The same, in `status` (the township's 镇级审定 is `CountyAnnounced`).
fn household_in(status: Status, no: u32, per_capita: i64, facts: &[(&str, &str)]) -> Household {
    let mut h = household("420322105200", no, 2, no, status);
    h.income_per_capita = Yuan::from_yuan(per_capita);
    h.income = Yuan::from_yuan(per_capita * 2);
    h.facts = facts.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    h
}

/// The households, as the township hands them in (`status`): under both lines with a car; under
/// both lines; between the lines; above both with heavy illness spending; above both without.
fn households(status: Status) -> Vec<Household> {
    vec![
        household_in(status, 1, 2000, &[("has_car", "是")]),
        household_in(status, 2, 2000, &[("has_car", "否"), ("away_from_village", "否")]),
        household_in(status, 3, 3000, &[]),
        household_in(status, 4, 12000, &[("spending_illness", "6000")]),
        household_in(status, 5, 12000, &[]),
    ]
}

async fn refusals(profile: &str, status: Status, pg: bool) -> Vec<Rejection> {
    let s = setup_profile(pg, profile, 100, Some(100), &[]).await;
    let mut node = enroll_node(&s.county, "420322105", 7).await;
    let ops = households(status).iter().flat_map(|h| ops_of(h, 5)).collect();
    let (_, rej) = accepted(&node.push(ops).await);
    rej
}

fn refused(rej: &[Rejection], no: u32) -> Option<&Rejection> {
    rej.iter().find(|r| r.key.id == format!("420322105200-{no:04}"))
}

async fn the_same_households_are_judged_by_each_profiles_rules(pg: bool) {
    // Seed 003's rules at the county's 县复审: line 11,160, four exclusions, inclusions only by decision.
    let miyun = refusals(&miyun_rules_county_decides(), Status::CountyReview, pg).await;
    let car = refused(&miyun, 1).expect("the car excludes it");
    assert_eq!((car.reason, car.message.as_str()), (RejectReason::NotEligible, "excluded: 有轿车"));
    assert!(refused(&miyun, 2).is_none() && refused(&miyun, 3).is_none(), "{miyun:?}");
    let ill = refused(&miyun, 4).expect("above the line");
    assert!(ill.message.contains("酌情纳入") && ill.message.contains("因病支出 6,000"), "{}", ill.message);
    assert_eq!(refused(&miyun, 5).map(|r| r.message.as_str()), Some("not eligible: income 12,000 ≥ 11,160"));
    // The same rules held against the township's own 镇级审定 (miyun-2016 as shipped): the same
    // households refused, each naming the rule.
    let decided = refusals(MIYUN_2016, Status::CountyAnnounced, pg).await;
    for (no, rule) in [(1, "excluded: 有轿车"), (4, "酌情纳入"), (5, "not eligible: income 12,000 ≥ 11,160")] {
        let r = refused(&decided, no).unwrap_or_else(|| panic!("{no}: {decided:?}"));
        assert_eq!(r.reason, RejectReason::NotEligible);
        assert!(r.message.contains("镇级审定") && r.message.contains(rule), "{}", r.message);
    }
    assert!(refused(&decided, 2).is_none() && refused(&decided, 3).is_none(), "{decided:?}");
    // Seed 000 (hubei-2014): line 2,736, no exclusions: the car household is admitted.
    let hubei = refusals(HUBEI_2014, Status::CountyReview, pg).await;
    assert!(refused(&hubei, 1).is_none() && refused(&hubei, 2).is_none(), "{hubei:?}");
    for no in [3, 4, 5] {
        let r = refused(&hubei, no).unwrap_or_else(|| panic!("{no} is above 2,736: {hubei:?}"));
        assert_eq!(r.reason, RejectReason::NotEligible);
        assert!(r.message.starts_with("not eligible: income") && r.message.ends_with("≥ 2,736"), "{}", r.message);
    }
}

async fn a_village_is_judged_by_its_profiles_criteria(pg: bool) {
    let s = setup(pg, 100, &[]).await;
    let mut node = enroll_node(&s.county, "420322105", 7).await;
    // 一高一低一无 with the profile's province figures (14 %, 8,867 yuan): the test village meets all
    // three (30 %, 3,000, none); one with collective income, one with too few poor people do not.
    let mut with_income = village_op("420322105202", Status::CountyReview, 5);
    let mut thin = village_op("420322105203", Status::CountyReview, 5);
    let set = |op: &mut jianka_shared::changeset::Op, name: &str, value: &str| {
        if let jianka_shared::changeset::Op::Upsert { fields, .. } = op {
            fields.iter_mut().find(|w| w.name == name).expect("field").value = value.into();
        }
    };
    set(&mut with_income, "collective_income", "25000");
    set(&mut thin, "poor_population", "200");
    let ops = vec![village_op("420322105201", Status::CountyReview, 5), with_income, thin];
    let (_, rej) = accepted(&node.push(ops).await);
    let messages: Vec<(&str, &str)> = rej.iter().map(|r| (r.key.id.as_str(), r.message.as_str())).collect();
    assert_eq!(rej.len(), 2, "{messages:?}");
    assert!(rej.iter().all(|r| r.reason == RejectReason::NotEligible));
    assert!(
        messages.iter().any(|(id, m)| *id == "420322105202" && m.contains("一无: collective income 25000")),
        "{messages:?}"
    );
    assert!(
        messages.iter().any(|(id, m)| *id == "420322105203" && m.contains("一高: incidence 20.0%")),
        "{messages:?}"
    );
    // The county's 公告 of its poor villages lists the one it recognised, by township.
    let err = s.county.hub.village_notice_list(2014, "公告", &r("420322")).await.unwrap_err().to_string();
    assert!(err.contains("县领导小组审定公告"), "the profile's own step name: {err}");
    let list = s.county.hub.village_notice_list(2014, "县领导小组审定公告", &r("420322")).await.unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list.villages[0].rows[0].cells()[0], "420322105201");
}

async fn the_county_decides_by_hand_within_its_ceiling_and_the_township_hears_it(pg: bool) {
    // Under seed 003's rules the household above the line with 因病支出 is left to the deciding
    // tier (酌情纳入), here the county.
    let s = setup_profile(pg, &miyun_rules_county_decides(), 100, Some(100), &[]).await;
    let mut node = enroll_node(&s.county, "420322105", 7).await;
    let ops = households(Status::CountyReview).iter().flat_map(|h| ops_of(h, 5)).collect();
    accepted(&node.push(ops).await);
    let ill = "420322105200-0004";
    let d = s.county.hub.decide(2014, ill, true, "因病支出 6,000 元, 入户核查属实").await.unwrap();
    assert!(d.admitted && d.people == 2 && d.was == "NotRecognised", "{d:?}");
    let rows = s.county.hub.records_in(&r("420322"), 2014).await.unwrap();
    let row = rows.iter().find(|r| r.key.id == ill).unwrap();
    assert_eq!(row.field("status"), Some("CountyAnnounced"));
    assert!(row.field("county.reason").unwrap().contains("入户核查属实"));
    // Decided already: not again; a reason is needed; a household not waiting cannot be decided.
    assert!(s.county.hub.decide(2014, ill, true, "again").await.is_err());
    assert!(s.county.hub.decide(2014, "420322105200-0005", true, " ").await.is_err());
    let err = s.county.hub.decide(2014, "420322105200-0002", false, "x").await.unwrap_err();
    assert!(format!("{err:#}").contains("only a household waiting"), "{err:#}");
    // The township hears the decision with its reason.
    let fb = node.feedback(0).await;
    let heard = fb.items.iter().any(|e| match &e.item {
        Feedback::Corrections { items } => items.iter().any(|c| {
            c.key.id == ill && c.values.iter().any(|(k, v)| k == "county.reason" && v.contains("入户核查属实"))
        }),
        _ => false,
    });
    assert!(heard, "the decision comes down to the township");
    // Under scale control the ceiling holds for a decision by hand too.
    let s = setup(pg, 2, &[]).await;
    let mut node = enroll_node(&s.county, "420322105", 7).await;
    let ops = [household_at(1, 2000, &[]), household_at(2, 2000, &[])].iter().flat_map(|h| ops_of(h, 5)).collect();
    let (_, rej) = accepted(&node.push(ops).await);
    assert_eq!(rej.len(), 1, "one of two fits 2 people: {rej:?}");
    let err = s.county.hub.decide(2014, &rej[0].key.id, true, "complaint upheld").await.unwrap_err();
    assert!(format!("{err:#}").contains("ceiling 2 people"), "{err:#}");
    let audit = s.county.hub.store().audit_log().await.unwrap();
    assert!(!audit.iter().any(|a| a.action == "decision_by_hand"), "nothing audited for a refused decision");
}

async fn the_province_files_what_a_county_announced_and_it_reaches_the_township(pg: bool) {
    let s = setup(pg, 100, &[]).await;
    let mut node = enroll_node(&s.county, "420322105", 7).await;
    let ops = [household_at(1, 2000, &[]), household_at(2, 2000, &[])].iter().flat_map(|h| ops_of(h, 5)).collect();
    accepted(&node.push(ops).await);
    s.county.hub.forward().await.unwrap();
    assert_eq!(s.province.hub.file_announced(2014, &r("420322")).await.unwrap().filed, 2);
    assert_eq!(s.province.hub.file_announced(2014, &r("420322")).await.unwrap().filed, 0, "filed once");
    let report = s.province.hub.report(Some(2014)).await.unwrap();
    assert_eq!(report.years[0].filed, 2);
    s.county.hub.pull_parent_feedback().await.unwrap();
    let rows = s.county.hub.records_in(&r("420322"), 2014).await.unwrap();
    let filed = rows.iter().filter(|r| r.field("status") == Some("ProvinceFiled")).count();
    assert_eq!(filed, 2, "the county holds the filing");
    let fb = node.feedback(0).await;
    let heard = fb.items.iter().any(|e| match &e.item {
        Feedback::Corrections { items } => {
            items.iter().any(|c| c.values.iter().any(|(k, v)| k == "status" && v == "ProvinceFiled"))
        }
        _ => false,
    });
    assert!(heard, "the filing reaches the township");
}

/// Under miyun-2016 as shipped the township decides (镇级审定) and the district files (区直备案):
/// the district cannot decide by hand, the township cannot hand in to a 县复审 its flow does not
/// have, its decision on a household above the line stands only with its recorded reason, and
/// `file` at the district files what the townships decided; the filing reaches the township.
async fn where_the_township_decides_the_district_cannot_and_only_files(pg: bool) {
    let s = setup_profile(pg, MIYUN_2016, 100, Some(100), &[]).await;
    let mut node = enroll_node(&s.county, "420322105", 7).await;
    let decision = [("spending_illness", "6000"), ("township.decision", "认定"), ("township.reason", "入户核查属实")];
    let mut hs = vec![
        household_in(Status::CountyAnnounced, 1, 2000, &[]),
        household_in(Status::CountyAnnounced, 2, 12000, &decision),
        household_in(Status::CountyReview, 3, 2000, &[]),
    ];
    // A township cannot file its own decision either.
    hs.push(household_in(Status::ProvinceFiled, 4, 2000, &[]));
    let ops = hs.iter().flat_map(|h| ops_of(h, 5)).collect();
    let (_, rej) = accepted(&node.push(ops).await);
    assert!(refused(&rej, 1).is_none() && refused(&rej, 2).is_none(), "{rej:?}");
    let review = refused(&rej, 3).expect("no 县复审 in seed 003's flow");
    assert_eq!(review.reason, RejectReason::NotAuthorised);
    assert!(review.message.contains("not a step"), "{}", review.message);
    let filed = refused(&rej, 4).expect("区直备案 is the district's");
    assert!(filed.message.contains("区直备案") && filed.message.contains("county"), "{}", filed.message);

    let err = s.county.hub.decide(2014, "420322105200-0001", false, "x").await.unwrap_err();
    assert!(format!("{err:#}").contains("(township) decides (镇级审定)"), "{err:#}");
    assert_eq!(s.county.hub.file_announced(2014, &r("420322")).await.unwrap().filed, 2);
    assert_eq!(s.county.hub.file_announced(2014, &r("420322")).await.unwrap().filed, 0, "filed once");
    let rows = s.county.hub.records_in(&r("420322"), 2014).await.unwrap();
    assert_eq!(rows.iter().filter(|r| r.field("status") == Some("ProvinceFiled")).count(), 2);
    let fb = node.feedback(0).await;
    let heard = fb.items.iter().any(|e| match &e.item {
        Feedback::Corrections { items } => {
            items.iter().any(|c| c.values.iter().any(|(k, v)| k == "status" && v == "ProvinceFiled"))
        }
        _ => false,
    });
    assert!(heard, "the township hears its households filed");
    // The district files its own townships only.
    let err = s.county.hub.file_announced(2014, &r("420323")).await.unwrap_err();
    assert!(format!("{err:#}").contains("420323 is not a region of 420322"), "{err:#}");
}

/// The status the county holds for household `no`.
async fn status_of(hub: &jianka_hub::Hub, no: u32) -> Option<String> {
    let id = format!("420322105200-{no:04}");
    let rows = hub.records_in(&r("420322"), 2014).await.unwrap();
    let row = rows.iter().find(|r| r.key.kind == RecordKind::Household && r.key.id == id)?;
    row.field("status").map(str::to_string)
}

/// Where the township decides (镇级审定), a township's own key still cannot get past the district
/// what 县复审 holds a hand-in to elsewhere: an admission whose member rows fall short of the
/// household's count, or one holding a person registered in another household, is taken back to
/// 镇公告, refused naming why, and sent back down; and 区直备案 files only what passes, holding back
/// (and listing) a household a later duplicate claim puts in question until the claim is settled.
async fn where_the_township_decides_its_admissions_still_meet_the_form_and_duplicates(pg: bool) {
    let s = setup_profile(pg, MIYUN_2016, 100, Some(100), &[]).await;
    let mut node = enroll_node(&s.county, "420322105", 7).await;
    let kept = household_in(Status::CountyAnnounced, 1, 2000, &[]);
    // Household 2 says it has 2 members; the change set carries one of them (and an income that
    // is right for one, so only the count is wrong).
    let mut two = household_in(Status::CountyAnnounced, 2, 2000, &[]);
    two.income = Yuan::from_yuan(2000);
    let mut short = ops_of(&two, 5);
    let last_member = short.iter().rposition(|o| o.key().kind == RecordKind::Member).unwrap();
    short.remove(last_member);
    let ops = ops_of(&kept, 5).into_iter().chain(short).collect();
    let (_, rej) = accepted(&node.push(ops).await);
    assert!(refused(&rej, 1).is_none(), "{rej:?}");
    let two = refused(&rej, 2).expect("rule 3 holds at the district too");
    assert_eq!(two.reason, RejectReason::FailedValidation);
    for part in ["镇级审定 is not taken", "rule 3", "says 2 members but 1 member rows arrived", "镇公告"] {
        assert!(two.message.contains(part), "{part}: {}", two.message);
    }
    assert_eq!(status_of(&s.county.hub, 1).await.as_deref(), Some("CountyAnnounced"));
    assert_eq!(status_of(&s.county.hub, 2).await.as_deref(), Some("TownshipNotice"));

    // Township 106 admits a household holding household 1's head as a second member: the person
    // stays in 1, a duplicate-person conflict opens, and the admission waits for it.
    let mut other_node = enroll_node(&s.county, "420322106", 8).await;
    let mut other = household("420322106200", 1, 2, 9, Status::CountyAnnounced);
    other.members[1] = kept.members[0].clone();
    other.members[1].relation = Relation::Son;
    let (_, rej) = accepted(&other_node.push(ops_of(&other, 6)).await);
    let held = rej.iter().find(|r| r.key.id == "420322106200-0001").expect("held by the duplicate");
    assert_eq!(held.reason, RejectReason::DuplicatePerson);
    assert!(
        held.message.contains("镇级审定 is not taken") && held.message.contains("another household"),
        "{}",
        held.message
    );
    let rows = s.county.hub.records_in(&r("420322106"), 2014).await.unwrap();
    let status = rows.iter().find(|r| r.key.id == "420322106200-0001").and_then(|r| r.field("status"));
    assert_eq!(status, Some("TownshipNotice"));

    // The township hears the household as the district holds it.
    let fb = node.feedback(0).await;
    let restored: Vec<(String, String)> = fb
        .items
        .iter()
        .flat_map(|e| match &e.item {
            Feedback::Restored { items } => items.clone(),
            _ => vec![],
        })
        .filter(|c| c.key.kind == RecordKind::Household)
        .map(|c| {
            (c.key.id.clone(), c.values.iter().find(|(k, _)| k == "status").map(|(_, v)| v.clone()).unwrap_or_default())
        })
        .collect();
    assert!(restored.contains(&("420322105200-0002".into(), "TownshipNotice".into())), "{restored:?}");

    // Household 1 was admitted before the claim on its head: the filing holds it back until the
    // county settles the conflict, then files it.
    let filing = s.county.hub.file_announced(2014, &r("420322")).await.unwrap();
    assert_eq!(filing.filed, 0, "{filing:?}");
    assert_eq!(filing.held.len(), 1, "{filing:?}");
    assert_eq!(filing.held[0].0, "420322105200-0001");
    assert!(filing.held[0].1.contains("duplicate-person conflict"), "{filing:?}");
    let conflict =
        s.county.hub.conflicts(false).await.unwrap().into_iter().find(|c| c.kind == "duplicate_person").unwrap();
    s.county
        .hub
        .resolve_conflict(conflict.id, Some("420322105200-0001"), None, "lives in 0001 (home visit)")
        .await
        .unwrap();
    let filing = s.county.hub.file_announced(2014, &r("420322")).await.unwrap();
    assert_eq!((filing.filed, filing.held.len()), (1, 0), "{filing:?}");
    assert_eq!(status_of(&s.county.hub, 1).await.as_deref(), Some("ProvinceFiled"));
}
