//! The annual cycle's corner cases (issue 5): window adjustments reaching the new year, per-region
//! reopenings that end, lateness counted per year, and the report's quota and deadline wording.
//! Time moves with the ManualClock only.

#[macro_use]
mod common;
use chrono::TimeZone;
use common::*;
use jianka_hub::audit;
use jianka_shared::{
    Hlc, RecordKey, RecordKind,
    changeset::{Draft, Op},
    domain::Status,
    protocol::*,
};

/// Beijing time `y-m-d h:00` as the hubs' clock.
fn beijing(s: &Setup, y: i32, m: u32, d: u32, h: u32) {
    let t = chrono_tz::Asia::Shanghai.with_ymd_and_hms(y, m, d, h, 0, 0).unwrap().with_timezone(&chrono::Utc);
    s.county.clock.set(t);
}

/// The version the county holds for one field (the base a township edits from).
async fn version_of(s: &Setup, key: &RecordKey, field: &str) -> u64 {
    let rows = s.county.hub.records_in(&r("420322"), key.year).await.unwrap();
    rows.iter().find(|x| &x.key == key).and_then(|x| x.fields.get(field)).map(|f| f.1).unwrap()
}

async fn live(s: &Setup, year: u16) -> Vec<RecordKey> {
    s.county.hub.records_in(&r("420322"), year).await.unwrap().into_iter().map(|x| x.key).collect()
}

async fn window_adjustments_reach_the_new_year(pg: bool) {
    let s = setup(pg, 100, &[]).await;
    let mut node = enroll_node(&s.county, "420322105", 7).await;
    let exiting = household("420322105200", 1, 2, 1, Status::CountyReview);
    let dying = household("420322105200", 2, 3, 2, Status::CountyReview);
    let mut ops = ops_of(&exiting, 5);
    ops.extend(ops_of(&dying, 5));
    let (_, rej) = accepted(&node.push(ops).await);
    assert!(rej.is_empty(), "{rej:?}");
    assert_eq!(s.county.hub.quota_in_ledger(2014).await.unwrap(), 5);

    beijing(&s, 2015, 1, 1, 0);
    let ny = s.county.hub.new_year(Some(2014)).await.unwrap();
    assert_eq!(ny.carried_households, 2);
    // The new year's ledger starts with the 5 recognised people carried into it.
    assert_eq!(s.county.hub.quota_in_ledger(2015).await.unwrap(), 5);

    // 10 January: the window's adjustments, entered against 2014.
    beijing(&s, 2015, 1, 10, 9);
    node.now = s.county.clock.now_secs();
    let hh = |h: &jianka_shared::domain::Household| RecordKey::new(RecordKind::Household, 2014, h.id());
    let status_base = version_of(&s, &hh(&exiting), "status").await;
    let dead = dying.members[2].id_number.as_str().to_string();
    let dead_key = RecordKey::new(RecordKind::Member, 2014, dead.clone());
    let dead_base = version_of(&s, &dead_key, "name").await;
    // The birth: a full member form, in the dying household.
    let baby_ops = ops_of(&household("420322105200", 9, 1, 30, Status::Applied), 1_000);
    let baby_op = baby_ops
        .into_iter()
        .find(|o| o.key().kind == RecordKind::Member)
        .map(|o| match o {
            Op::Upsert { key, mut fields } => {
                for f in fields.iter_mut().filter(|f| f.name == "household") {
                    f.value = dying.id().into();
                }
                Op::Upsert { key, fields }
            }
            other => other,
        })
        .unwrap();
    let baby = baby_op.key().id.clone();
    let new_entry = household("420322105201", 3, 2, 3, Status::CountyReview);
    let mut ops = vec![
        upsert_from(hh(&exiting), &[("status", "Exited"), ("exit_reason", "稳定脱贫")], 1_000, status_base),
        Op::Delete { key: dead_key.clone(), version: Hlc(1_000), base: Hlc(dead_base) },
        baby_op,
    ];
    ops.extend(ops_of(&new_entry, 1_000));
    let (_, rej) = accepted(&node.push(ops).await);
    assert!(rej.is_empty(), "{rej:?}");

    let y2015 = live(&s, 2015).await;
    let has = |kind, id: &str| y2015.contains(&RecordKey::new(kind, 2015, id));
    // The exit: the household and its members leave 2015.
    assert!(!has(RecordKind::Household, &exiting.id()), "exited household still in 2015");
    for m in &exiting.members {
        assert!(!has(RecordKind::Member, m.id_number.as_str()), "member of the exited household still in 2015");
    }
    // The death leaves 2015; the birth arrives there, in its household.
    assert!(!has(RecordKind::Member, &dead));
    assert!(has(RecordKind::Member, &baby));
    assert!(has(RecordKind::Household, &dying.id()));
    // The admitted new entry arrives with its members and its county decision.
    assert!(has(RecordKind::Household, &new_entry.id()));
    for m in &new_entry.members {
        assert!(has(RecordKind::Member, m.id_number.as_str()));
    }
    let rows = s.county.hub.records_in(&r("420322"), 2015).await.unwrap();
    let entry = rows.iter().find(|x| x.key.kind == RecordKind::Household && x.key.id == new_entry.id()).unwrap();
    assert_eq!(entry.fields.get("county.decision").map(|f| f.0.as_str()), Some("认定"));
    // 2015's ledger: 5 carried, 2 exited, 2 admitted.
    assert_eq!(s.county.hub.quota_in_ledger(2015).await.unwrap(), 5);
    // 2014 itself holds the adjustments; its signed snapshot at 31 December is unchanged.
    let y2014 = live(&s, 2014).await;
    assert!(y2014.contains(&hh(&exiting)) && !y2014.contains(&dead_key));
    let stored: String = sqlx::query_scalar("SELECT snapshot FROM years WHERE year = 2014")
        .fetch_one(&s.county.raw().await)
        .await
        .unwrap();
    let snap: jianka_hub::years::Snapshot = serde_json::from_str(&stored).unwrap();
    assert_eq!(snap, ny.snapshot);
    assert_eq!(snap.time_point, "2014-12-31");

    // A field 2015 changed on its own is not overwritten by a later 2014 edit of it.
    let k15 = RecordKey::new(RecordKind::Household, 2015, dying.id());
    let phone15 = version_of(&s, &k15, "phone").await;
    let mut n2015 = node_for_year(&mut node, 2015);
    accepted(&n2015.push(vec![upsert_from(k15.clone(), &[("phone", "13911112222")], 2_000, phone15)]).await);
    let phone14 = version_of(&s, &hh(&dying), "phone").await;
    accepted(
        &node
            .push(vec![upsert_from(hh(&dying), &[("phone", "13933334444"), ("helper_name", "李")], 3_000, phone14)])
            .await,
    );
    let rows = s.county.hub.records_in(&r("420322"), 2015).await.unwrap();
    let d15 = rows.iter().find(|x| x.key == k15).unwrap();
    assert_eq!(d15.fields.get("phone").unwrap().0, "13911112222", "2015's own edit stands");
    assert_eq!(d15.fields.get("helper_name").unwrap().0, "李", "an untouched field follows 2014");
    assert!(matches!(audit::verify(s.county.hub.store().as_ref()).await.unwrap(), audit::AuditCheck::Intact { .. }));
}
both_backends!(window_adjustments_reach_the_new_year, window_adjustments_sqlite, window_adjustments_postgres);

/// Sends `year`'s change sets on the same stream as `node` (a node seals one year per change set).
struct YearNode<'a> {
    node: &'a mut Node,
    year: u16,
}

fn node_for_year(node: &mut Node, year: u16) -> YearNode<'_> {
    YearNode { node, year }
}

impl YearNode<'_> {
    async fn push(&mut self, ops: Vec<Op>) -> Answer {
        let n = &mut *self.node;
        n.seq += 1;
        let d = Draft {
            origin: n.region.clone(),
            seq: n.seq,
            prev_hash: n.prev,
            year: self.year,
            hlc: Hlc::new(1, 0),
            ops,
        };
        let bytes = d.seal(&n.key).unwrap();
        n.prev = jianka_shared::changeset::envelope_hash(&bytes);
        n.request("POST", "/v1/changesets", bytes).await
    }
}

async fn cycle_of(node: &Node, year: u16) -> CycleInfo {
    let st: SyncState = node.request("GET", "/v1/sync/state", vec![]).await.json();
    st.cycle.into_iter().find(|c| c.year == year).unwrap()
}

async fn a_reopening_is_for_its_region_only_and_ends(pg: bool) {
    let s = setup(pg, 100, &[]).await;
    let mut a = enroll_node(&s.county, "420322105", 7).await;
    let mut b = enroll_node(&s.county, "420322106", 8).await;
    let h = household("420322105200", 1, 2, 1, Status::Applied);
    accepted(&a.push(ops_of(&h, 5)).await);
    beijing(&s, 2015, 1, 1, 0);
    s.county.hub.new_year(Some(2014)).await.unwrap();
    beijing(&s, 2015, 2, 3, 9);
    (a.now, b.now) = (s.county.clock.now_secs(), s.county.clock.now_secs());
    let until = s
        .county
        .hub
        .reopen(2014, &r("420322105"), "income re-checked", Some(chrono::NaiveDate::from_ymd_opt(2015, 2, 5).unwrap()))
        .await
        .unwrap();
    assert_eq!(until.to_string(), "2015-02-05");
    // Reopened for 105, with its end as deadline; still locked for 106.
    let ca = cycle_of(&a, 2014).await;
    assert_eq!((ca.state, ca.deadline.as_deref()), (YearState::Reopened, Some("2015-02-05")));
    assert_eq!(cycle_of(&b, 2014).await.state, YearState::Locked);
    let key = RecordKey::new(RecordKind::Household, 2014, h.id());
    let edit = |v: u64, phone: &str| upsert_from(key.clone(), &[("phone", phone)], v, 5);
    let (applied, rej) = accepted(&a.push(vec![edit(100, "13900000001")]).await);
    assert_eq!((applied, rej.len()), (1, 0));
    // The last day still counts; the day after, 2014 is locked again.
    beijing(&s, 2015, 2, 5, 23);
    a.now = s.county.clock.now_secs();
    let (applied, _) = accepted(&a.push(vec![upsert_from(key.clone(), &[("phone", "13900000002")], 200, 100)]).await);
    assert_eq!(applied, 1);
    beijing(&s, 2015, 2, 6, 9);
    a.now = s.county.clock.now_secs();
    let (_, rej) = accepted(&a.push(vec![upsert_from(key.clone(), &[("phone", "13900000003")], 300, 200)]).await);
    assert_eq!(rej[0].reason, RejectReason::YearLocked);
    assert_eq!(cycle_of(&a, 2014).await.state, YearState::Locked);
    // The default reopening lasts 7 days; the end is in the audit entry.
    s.county.hub.reopen(2014, &r("420322106"), "late census", None).await.unwrap();
    b.now = s.county.clock.now_secs();
    assert_eq!(cycle_of(&b, 2014).await.deadline.as_deref(), Some("2015-02-13"));
    let audited: Vec<String> = sqlx::query_scalar("SELECT subject FROM audit WHERE action = 'reopen' ORDER BY seq")
        .fetch_all(&s.county.raw().await)
        .await
        .unwrap();
    assert_eq!(audited, ["year 2014 for 420322105 until 2015-02-05", "year 2014 for 420322106 until 2015-02-13"]);
    // An end already past is refused.
    let past = s
        .county
        .hub
        .reopen(2014, &r("420322105"), "x", Some(chrono::NaiveDate::from_ymd_opt(2015, 2, 1).unwrap()))
        .await;
    assert_eq!(past.unwrap_err().code, ErrorCode::BadRequest);
}
both_backends!(a_reopening_is_for_its_region_only_and_ends, reopening_sqlite, reopening_postgres);

async fn late_counts_only_deliveries_for_the_year(pg: bool) {
    let s = setup(pg, 100, &[]).await;
    let mut a = enroll_node(&s.county, "420322105", 7).await;
    let mut b = enroll_node(&s.county, "420322106", 8).await;
    beijing(&s, 2015, 1, 1, 0);
    s.county.hub.new_year(Some(2014)).await.unwrap();
    beijing(&s, 2015, 1, 20, 9);
    (a.now, b.now) = (s.county.clock.now_secs(), s.county.clock.now_secs());
    // 105 delivers its 2014 update; 106 sends only 2015 work, which is no delivery for 2014.
    accepted(&a.push(vec![]).await);
    accepted(&node_for_year(&mut b, 2015).push(vec![]).await);
    let late = s.county.hub.late(2014).await.unwrap();
    assert_eq!(late.iter().map(|(r, _)| r.as_str()).collect::<Vec<_>>(), ["420322106"]);
    assert!(late[0].1.contains("not yet delivered"));
    // Before the deadline the report does not call it late.
    let text = s.county.hub.report(Some(2014)).await.unwrap().to_string();
    assert!(text.contains("not yet delivered: 420322106"), "{text}");
    assert!(!text.contains("late:"), "{text}");
    beijing(&s, 2015, 2, 1, 9);
    let report = s.county.hub.report(Some(2014)).await.unwrap();
    assert!(report.not_yet_delivered.is_empty());
    assert_eq!(report.late.len(), 1);
    assert!(report.to_string().contains("late: 420322106"), "{report}");
}
both_backends!(late_counts_only_deliveries_for_the_year, late_sqlite, late_postgres);

async fn report_quota_agrees_with_the_ledger(pg: bool) {
    let s = setup(pg, 7, &[]).await;
    let mut a = enroll_node(&s.county, "420322105", 7).await;
    let mut ops = ops_of(&household("420322105200", 1, 3, 1, Status::CountyReview), 5);
    ops.extend(ops_of(&household("420322105200", 2, 4, 2, Status::CountyReview), 5));
    ops.extend(ops_of(&household("420322105200", 3, 2, 3, Status::CountyReview), 5));
    let (_, rej) = accepted(&a.push(ops).await);
    assert_eq!(rej.len(), 1, "the third household is over the ceiling of 7");
    let report = s.county.hub.report(Some(2014)).await.unwrap();
    assert_eq!((report.years[0].total.quota_used, report.years[0].total.quota_people), (7, Some(7)));
    assert!(report.to_string().contains("quota 7/7"), "{report}");
    let signoff = s.county.hub.signoff(2014, "2014", None).await.unwrap();
    assert_eq!(signoff.summary.quota_used, report.years[0].total.quota_used);
    // After New Year, 2015's ledger (and report) count the carried recognised people.
    beijing(&s, 2015, 1, 1, 0);
    s.county.hub.new_year(Some(2014)).await.unwrap();
    let report = s.county.hub.report(Some(2015)).await.unwrap();
    assert_eq!(report.years[0].total.quota_used, 7);
}
both_backends!(report_quota_agrees_with_the_ledger, report_quota_sqlite, report_quota_postgres);
