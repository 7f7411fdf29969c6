//! Cross-county moves (跨县迁移) completed by the province: the person leaves one county and joins
//! the other — never both, never neither — whichever side syncs first, days apart (ManualClock).

mod common;
use common::*;
use jianka_hub::{Clock, audit};
use jianka_shared::{
    Hlc, RecordKey, RecordKind,
    changeset::{FieldWrite, Op},
    domain::{Household, Status},
    protocol::*,
};

const FROM: &str = "420322";
const TO: &str = "420323";

/// The counties (by village code prefix) the province holds `id` in.
async fn counties_holding(s: &Setup, id: &str) -> Vec<String> {
    counties_holding_in(s, id, 2014).await
}

async fn counties_holding_in(s: &Setup, id: &str, year: u16) -> Vec<String> {
    let rows = s.province.hub.records_in(&r("42"), year).await.unwrap();
    rows.iter()
        .filter(|r| r.key.kind == RecordKind::Member && r.key.id == id)
        .map(|r| r.region[..6].to_string())
        .collect()
}

fn days_later(s: &Setup, node: &mut [&mut Node], days: i64) {
    let now = s.province.clock.now() + chrono::Duration::days(days);
    s.province.clock.set(now);
    for n in node {
        n.now = now.timestamp();
    }
}

/// Household A (county 420322) with two members, and household B (county 420323) whose second
/// member is A's second member, arriving.
fn households() -> (Household, Household, String) {
    let a = household("420322105200", 1, 2, 1, Status::CountyAnnounced);
    let mut b = household("420323101200", 7, 2, 9, Status::CountyAnnounced);
    let mover = a.members[1].clone();
    b.members[1] = mover.clone();
    (a, b, mover.id_number.as_str().to_string())
}

fn member_op(h: &Household, id: &str, version: u64) -> Op {
    ops_of(h, version).into_iter().find(|o| o.key().kind == RecordKind::Member && o.key().id == id).unwrap()
}

fn delete(id: &str, version: u64) -> Op {
    Op::Delete { key: RecordKey::new(RecordKind::Member, 2014, id), version: Hlc(version), base: Hlc(10) }
}

async fn assert_audit_intact(s: &Setup) {
    assert!(matches!(audit::verify(s.province.hub.store().as_ref()).await.unwrap(), audit::AuditCheck::Intact { .. }));
}

async fn arrival_first_then_departure_days_later(pg: bool) {
    let s = setup(pg, 100, &[]).await;
    let mut a = enroll_node(&s.province, FROM, 31).await;
    let mut b = enroll_node(&s.province, TO, 32).await;
    let (ha, hb, id) = households();
    accepted(&a.push(ops_of(&ha, 10)).await);
    assert_eq!(counties_holding(&s, &id).await, vec![FROM]);

    // Day 2: county B forwards the arrival; county A has not synced the departure yet.
    days_later(&s, &mut [&mut a, &mut b], 2);
    let (applied, rej) = accepted(&b.push(ops_of(&hb, 20)).await);
    assert_eq!(applied, 2, "B's household and its other member are taken");
    assert_eq!(rej.len(), 1);
    assert_eq!(rej[0].reason, RejectReason::DuplicatePerson);
    assert!(rej[0].message.contains("cross-county move"), "{}", rej[0].message);
    assert!(!rej[0].message.contains(&id), "no full ID number in messages");
    assert_eq!(counties_holding(&s, &id).await, vec![FROM], "still in A only, never both");
    let open = s.province.hub.conflicts(false).await.unwrap();
    assert_eq!(open.len(), 1);

    // Day 5: A records the departure; the province completes the move in the same transaction.
    days_later(&s, &mut [&mut a, &mut b], 3);
    let (applied, rej) = accepted(&a.push(vec![delete(&id, 30)]).await);
    assert_eq!((applied, rej.len()), (1, 0));
    assert_eq!(counties_holding(&s, &id).await, vec![TO], "now in B only, never neither");
    let rows = s.province.hub.records_in(&r("42"), 2014).await.unwrap();
    let moved = rows.iter().find(|r| r.key.id == id).unwrap();
    assert_eq!(moved.hh, hb.id());
    assert!(s.province.hub.conflicts(false).await.unwrap().is_empty(), "the held move is settled");
    // Both counties are told.
    for node in [&a, &b] {
        let fb = node.feedback(0).await;
        assert!(
            fb.items.iter().any(|e| matches!(&e.item, Feedback::Resolved { field, value, .. } if field == "household" && *value == hb.id())),
            "{:?}",
            fb.items
        );
    }
    // A later, repeated departure changes nothing.
    let (applied, _) = accepted(&a.push(vec![delete(&id, 31)]).await);
    assert_eq!(applied, 0);
    assert_eq!(counties_holding(&s, &id).await, vec![TO]);
    assert_audit_intact(&s).await;
}

async fn departure_first_then_arrival_days_later(pg: bool) {
    let s = setup(pg, 100, &[]).await;
    let mut a = enroll_node(&s.province, FROM, 33).await;
    let mut b = enroll_node(&s.province, TO, 34).await;
    let (ha, hb, id) = households();
    accepted(&a.push(ops_of(&ha, 10)).await);
    // A declares the move to B and removes the person from its household.
    let declare = Op::Upsert {
        key: RecordKey::new(RecordKind::Member, 2014, &id),
        fields: vec![FieldWrite { name: "move_out".into(), value: TO.into(), version: Hlc(40), base: Hlc::ZERO }],
    };
    let (applied, rej) = accepted(&a.push(vec![declare, delete(&id, 41)]).await);
    assert!(rej.is_empty(), "{rej:?}");
    assert_eq!(applied, 1, "the declaration applies; the removal is held");
    assert_eq!(counties_holding(&s, &id).await, vec![FROM], "held in A until B takes the person: never neither");

    // Four days later B forwards the arrival: completed at once.
    days_later(&s, &mut [&mut a, &mut b], 4);
    let (applied, rej) = accepted(&b.push(vec![member_op(&hb, &id, 50)]).await);
    assert!(rej.is_empty(), "{rej:?}");
    assert_eq!(applied, 1);
    assert_eq!(counties_holding(&s, &id).await, vec![TO]);
    let rows = s.province.hub.records_in(&r("42"), 2014).await.unwrap();
    let moved = rows.iter().find(|r| r.key.id == id).unwrap();
    assert!(!moved.fields.contains_key("move_out"), "the record is B's now");
    assert_eq!(moved.region, "420323101200");
    assert!(s.province.hub.conflicts(false).await.unwrap().is_empty());
    assert_audit_intact(&s).await;
}

/// After New Year both counties carry their records into 2015. The new county's 2015 copy of the
/// moved person reaches the province first; the old county's copy comes late — still naming the
/// new county in `move_out`, or stale without it. Either is the settled move, not a reverse one.
async fn late_next_year_copy_from_the_old_county_is_settled(pg: bool) {
    let s = setup(pg, 100, &[]).await;
    let mut a = enroll_node(&s.province, FROM, 37).await;
    let mut b = enroll_node(&s.province, TO, 38).await;
    let (ha, hb, id) = households();
    accepted(&a.push(ops_of(&ha, 10)).await);
    accepted(&b.push(ops_of(&hb, 20)).await);
    days_later(&s, &mut [&mut a, &mut b], 2);
    accepted(&a.push(vec![delete(&id, 30)]).await);
    assert_eq!(counties_holding(&s, &id).await, vec![TO], "the 2014 move is complete");

    // January 2015: each county carries its households into the new year; B's arrives first.
    days_later(&s, &mut [&mut a, &mut b], 135);
    let (ha15, hb15) = (Household { year: 2015, ..ha.clone() }, Household { year: 2015, ..hb.clone() });
    let (applied, rej) = accepted(&b.push(ops_of(&hb15, 60)).await);
    assert!(rej.is_empty(), "{rej:?}");
    assert_eq!(applied, 3);
    assert_eq!(counties_holding_in(&s, &id, 2015).await, vec![TO]);

    // A's late carry still names B in `move_out`.
    let mut carried = ops_of(&ha15, 70);
    for op in &mut carried {
        if let Op::Upsert { key, fields } = op
            && key.kind == RecordKind::Member
            && key.id == id
        {
            fields.push(FieldWrite { name: "move_out".into(), value: TO.into(), version: Hlc(70), base: Hlc::ZERO });
        }
    }
    let (applied, rej) = accepted(&a.push(carried).await);
    assert!(rej.is_empty(), "settled, not refused: {rej:?}");
    assert_eq!(applied, 2, "A's household and its remaining member; the mover is settled");
    assert!(s.province.hub.conflicts(false).await.unwrap().is_empty(), "no reverse move held");
    assert_eq!(counties_holding_in(&s, &id, 2015).await, vec![TO], "the person stays in B");

    // A stale copy without `move_out` (the household the person left) is settled the same way.
    days_later(&s, &mut [&mut a, &mut b], 1);
    let (applied, rej) = accepted(&a.push(vec![member_op(&ha15, &id, 80)]).await);
    assert!(rej.is_empty(), "{rej:?}");
    assert_eq!(applied, 0);
    assert!(s.province.hub.conflicts(false).await.unwrap().is_empty());
    let rows = s.province.hub.records_in(&r("42"), 2015).await.unwrap();
    let held = rows.iter().find(|r| r.key.id == id).unwrap();
    assert_eq!((held.hh.as_str(), held.region.as_str()), (hb15.id().as_str(), "420323101200"));
    // A is told where the person is, so its county drops its stale copy.
    let fb = a.feedback(0).await;
    let told = fb
        .items
        .iter()
        .filter(|e| matches!(&e.item, Feedback::Resolved { key, value, .. } if key.year == 2015 && *value == hb15.id()))
        .count();
    assert_eq!(told, 2, "{:?}", fb.items);
    assert_audit_intact(&s).await;
}

#[tokio::test]
async fn late_next_year_copy_from_the_old_county_is_settled_sqlite() {
    late_next_year_copy_from_the_old_county_is_settled(false).await;
}

#[tokio::test]
async fn late_next_year_copy_from_the_old_county_is_settled_postgres() {
    if pg_available() {
        late_next_year_copy_from_the_old_county_is_settled(true).await;
    }
}

/// A person the departure side names for a different county is not taken by this one.
#[tokio::test]
async fn a_departure_to_another_county_does_not_complete_this_arrival() {
    let s = setup(false, 100, &[]).await;
    let mut a = enroll_node(&s.province, FROM, 35).await;
    let mut b = enroll_node(&s.province, TO, 36).await;
    let (ha, hb, id) = households();
    accepted(&a.push(ops_of(&ha, 10)).await);
    let declare = Op::Upsert {
        key: RecordKey::new(RecordKind::Member, 2014, &id),
        fields: vec![FieldWrite { name: "move_out".into(), value: "420324".into(), version: Hlc(40), base: Hlc::ZERO }],
    };
    accepted(&a.push(vec![declare]).await);
    let (_, rej) = accepted(&b.push(vec![member_op(&hb, &id, 50)]).await);
    assert_eq!(rej.len(), 1);
    assert_eq!(counties_holding(&s, &id).await, vec![FROM]);
}

#[tokio::test]
async fn arrival_first_then_departure_days_later_sqlite() {
    arrival_first_then_departure_days_later(false).await;
}

#[tokio::test]
async fn arrival_first_then_departure_days_later_postgres() {
    if pg_available() {
        arrival_first_then_departure_days_later(true).await;
    }
}

#[tokio::test]
async fn departure_first_then_arrival_days_later_sqlite() {
    departure_first_then_arrival_days_later(false).await;
}

#[tokio::test]
async fn departure_first_then_arrival_days_later_postgres() {
    if pg_available() {
        departure_first_then_arrival_days_later(true).await;
    }
}
