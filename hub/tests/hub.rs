//! Black-box tests of the hub over real HTTP on loopback with real databases.
//!
//! Longer than ~600 lines on purpose: the hub's end-to-end behaviours share one setup and one
//! test binary (each file under `tests/` links its own); themed suites live beside it
//! (authority, moves, cycle, jobs, the store contract).

mod common;
use common::*;
use jianka_hub::audit;
use jianka_shared::{
    Hlc, RecordKey, RecordKind,
    changeset::{self, Draft, FieldWrite, Limits, Op},
    domain::Status,
    protocol::*,
};

async fn core_flow(pg: bool) {
    let s = setup(pg, 100, &[]).await;
    let mut node = enroll_node(&s.county, "420322105", 7).await;
    let h = household("420322105200", 1, 3, 1, Status::CountyReview);
    let (applied, rejected) = accepted(&node.push(ops_of(&h, 10)).await);
    assert_eq!(applied, 4);
    assert!(rejected.is_empty(), "{rejected:?}");
    // The county admitted it and told the node.
    let fb = node.feedback(0).await;
    let decided = fb.items.iter().find_map(|e| match &e.item {
        Feedback::Decided(d) => Some(d.corrections()),
        _ => None,
    });
    let decided = decided.expect("the decision comes down");
    assert_eq!(decided.len(), 1);
    assert_eq!(decided[0].key.id, "420322105200-0001");
    assert!(decided[0].values.contains(&("county.decision".to_string(), "认定".to_string())), "{decided:?}");
    assert!(decided[0].values.contains(&("status".to_string(), "CountyAnnounced".to_string())), "{decided:?}");
    assert!(fb.items.iter().any(|e| matches!(e.item, Feedback::Ack { seq: 1 })));
    assert!(node.feedback(fb.next).await.items.is_empty());
    // Digest covers the four records as the hub holds them.
    let d: DigestReport = node.request("GET", "/v1/digest?year=2014", vec![]).await.json();
    assert_eq!(d.count, 4);
    // Sync state chains to the last envelope.
    let st: SyncState = node.request("GET", "/v1/sync/state", vec![]).await.json();
    assert_eq!(st.expected_seq, 2);
    assert_eq!(st.last_hash, hex::encode(node.prev));
    // Replay: the same bytes again are a duplicate and change nothing.
    node.seq -= 1;
    node.prev = [0; 32];
    let again = node.seal(ops_of(&h, 10));
    let a = node.request("POST", "/v1/changesets", again).await;
    assert_eq!(a.json::<PushOutcome>(), PushOutcome::Duplicate { seq: 1 });
    // Same seq, different content: equivocation, flagged.
    node.seq = 0;
    node.prev = [0; 32];
    let other = node.seal(ops_of(&household("420322105200", 2, 1, 2, Status::Applied), 11));
    let a = node.request("POST", "/v1/changesets", other).await;
    assert_eq!((a.status, a.code()), (409, ErrorCode::Equivocation));
    // The equivocating key is held: every request is refused, saying why, until an officer clears it.
    let a = node.request("GET", "/v1/sync/state", vec![]).await;
    assert_eq!((a.status, a.code()), (409, ErrorCode::Equivocation));
    assert!(a.json::<ApiError>().message.contains("equivocations clear"), "{}", String::from_utf8_lossy(&a.body));
    let held = s.county.hub.equivocations().await.unwrap();
    assert_eq!((held.len(), held[0].region.as_str(), held[0].seq), (1, "420322105", 1));
    s.county.hub.clear_equivocation(jianka_shared::trust::KeyId::of(&node.key.verifying_key()), "test").await.unwrap();
    assert!(s.county.hub.equivocations().await.unwrap().is_empty());
    // Gap.
    node.seq = 5;
    let a = node.push(vec![]).await;
    assert_eq!(a.json::<PushOutcome>(), PushOutcome::Gap { expected: 2 });
    let d2: DigestReport = node.request("GET", "/v1/digest?year=2014", vec![]).await.json();
    assert_eq!(d2.digest, d.digest, "nothing changed");
    assert!(matches!(audit::verify(s.county.hub.store().as_ref()).await.unwrap(), audit::AuditCheck::Intact { .. }));
}

#[tokio::test]
async fn core_flow_sqlite() {
    core_flow(false).await;
}

#[tokio::test]
async fn core_flow_postgres() {
    if pg_available() {
        core_flow(true).await;
    }
}

// Each storage test runs on both backends (PostgreSQL when JIANKA_TEST_PG is set).
#[tokio::test]
async fn bad_input_is_refused_each_with_its_own_error_and_nothing_stored_sqlite() {
    bad_input_is_refused_each_with_its_own_error_and_nothing_stored(false).await;
}

#[tokio::test]
async fn bad_input_is_refused_each_with_its_own_error_and_nothing_stored_postgres() {
    if pg_available() {
        bad_input_is_refused_each_with_its_own_error_and_nothing_stored(true).await;
    }
}

async fn bad_input_is_refused_each_with_its_own_error_and_nothing_stored(pg: bool) {
    let s = setup(pg, 100, &[]).await;
    let mut node = enroll_node(&s.county, "420322105", 7).await;
    let h = household("420322105200", 1, 2, 1, Status::Applied);
    // Forged: signed by a key the hub never enrolled.
    let mut stranger =
        Node { key: ed25519_dalek::SigningKey::from_bytes(&[99; 32]), ..enroll_node(&s.county, "420322106", 8).await };
    stranger.region = common::r("420322106");
    let a = stranger.push(ops_of(&h, 1)).await;
    assert_eq!((a.status, a.code()), (401, ErrorCode::UnknownKey));
    // Tampered body under a valid request signature over different bytes.
    let bytes = node.seal(ops_of(&h, 1));
    let mut tampered = bytes.clone();
    let n = tampered.len();
    tampered[n - 70] ^= 1;
    let a = node.request("POST", "/v1/changesets", tampered).await;
    assert_eq!((a.status, a.code()), (401, ErrorCode::BadSignature));
    // Origin not the sender's region: a township pushing another township's stream.
    let mut imposter = enroll_node(&s.county, "420322107", 9).await;
    imposter.region = common::r("420322105");
    let a = imposter.push(ops_of(&h, 1)).await;
    assert_eq!((a.status, a.code()), (403, ErrorCode::OutsideRegion));
    // A record of another township inside one's own stream: quarantined, reported.
    let mut t107 = enroll_node(&s.county, "420322107", 10).await;
    let (applied, rej) = accepted(&t107.push(ops_of(&h, 1)).await);
    assert_eq!(applied, 0);
    assert!(rej.iter().all(|r| r.reason == RejectReason::NotAuthorised), "{rej:?}");
    // A certificate issued by another county: unknown here.
    // Clock skew.
    let mut skewed = enroll_node(&s.county, "420322108", 11).await;
    skewed.now -= 3 * 24 * 3600;
    let a = skewed.push(ops_of(&h, 1)).await;
    assert_eq!((a.status, a.code()), (401, ErrorCode::ClockSkew));
    // Oversized body.
    let big = vec![0u8; s.county.hub.config().max_body_bytes + 1];
    let a = node.request("POST", "/v1/changesets", big).await;
    assert_eq!((a.status, a.code()), (413, ErrorCode::TooLarge));
    // Garbage envelope.
    let a = node.request("POST", "/v1/changesets", b"JKCS garbage".to_vec()).await;
    assert_eq!((a.status, a.code()), (400, ErrorCode::Malformed));
    // Compression bomb: small on the wire, huge declared body.
    let bomb = Draft {
        origin: node.region.clone(),
        seq: 1,
        prev_hash: [0; 32],
        year: 2014,
        hlc: Hlc(1),
        ops: vec![Op::Upsert {
            key: RecordKey::new(RecordKind::Village, 2014, "420322105200"),
            fields: vec![FieldWrite {
                name: "name".into(),
                value: "0".repeat(300 << 20).into(),
                version: Hlc(1),
                base: Hlc::ZERO,
            }],
        }],
    }
    .seal(&node.key)
    .unwrap();
    assert!(bomb.len() < 1 << 20);
    let a = node.request("POST", "/v1/changesets", bomb).await;
    assert_eq!((a.status, a.code()), (413, ErrorCode::TooLarge));
    // Malformed JSON sign-off.
    let a = node.request("POST", "/v1/signoffs", b"{not json".to_vec()).await;
    assert_eq!((a.status, a.code()), (400, ErrorCode::Malformed));
    // Revoked key.
    let kid = jianka_shared::trust::KeyId::of(&node.key.verifying_key());
    s.county.hub.revoke(kid, "laptop stolen").await.unwrap();
    let a = node.request("POST", "/v1/changesets", bytes).await;
    assert_eq!((a.status, a.code()), (401, ErrorCode::RevokedKey));
    // Nothing of all that was stored.
    let d = s.county.hub.digest(&common::r("420322"), 2014).await.unwrap();
    assert_eq!(d.count, 0);
}

#[tokio::test]
async fn a_certificate_from_another_county_is_unknown_here() {
    let s = setup(false, 100, &[]).await;
    // County 420323's township, certified by a key this county never saw.
    let other = ed25519_dalek::SigningKey::from_bytes(&[42; 32]);
    let node_key = ed25519_dalek::SigningKey::from_bytes(&[43; 32]);
    let today = t0().date_naive();
    let _cert = jianka_shared::trust::Certificate::issue(
        &common::r("420323"),
        &other,
        &common::r("420323105"),
        &node_key.verifying_key(),
        today,
        today + chrono::Days::new(10),
    );
    let mut n = Node {
        region: common::r("420323105"),
        key: node_key,
        seq: 0,
        prev: [0; 32],
        url: s.county.url.clone(),
        client: reqwest::Client::new(),
        now: t0().timestamp(),
    };
    let a = n.push(vec![]).await;
    assert_eq!((a.status, a.code()), (401, ErrorCode::UnknownKey));
    // And this county refuses to enroll a township of another county.
    let err = s
        .county
        .hub
        .enroll(&common::r("420323105"), &jianka_keyfile::public_hex(&n.key.verifying_key()), None)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("outside"), "{err}");
    let err = s
        .county
        .hub
        .enroll(&common::r("420322"), &jianka_keyfile::public_hex(&n.key.verifying_key()), None)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("enrolls only a 乡镇 (township)"), "{err}");
}

// Each storage test runs on both backends (PostgreSQL when JIANKA_TEST_PG is set).
#[tokio::test]
async fn many_townships_pushing_at_once_never_exceed_the_ceiling_sqlite() {
    many_townships_pushing_at_once_never_exceed_the_ceiling(false).await;
}

#[tokio::test]
async fn many_townships_pushing_at_once_never_exceed_the_ceiling_postgres() {
    if pg_available() {
        many_townships_pushing_at_once_never_exceed_the_ceiling(true).await;
    }
}

async fn many_townships_pushing_at_once_never_exceed_the_ceiling(pg: bool) {
    // Ceiling 40 people; 8 townships each push 5 households of 3 (120 people wanted).
    let s = setup(pg, 40, &[]).await;
    let mut tasks = Vec::new();
    for t in 0..8u32 {
        let mut node = enroll_node(&s.county, &format!("4203221{:02}", t), 20 + t as u8).await;
        tasks.push(tokio::spawn(async move {
            let mut ops = Vec::new();
            for i in 0..5 {
                ops.extend(ops_of(
                    &household(&format!("4203221{:02}200", t), i, 3, t * 10 + i, Status::CountyReview),
                    5,
                ));
            }
            accepted(&node.push(ops).await).1
        }));
    }
    let mut refused = 0;
    for t in tasks {
        refused += t.await.unwrap().iter().filter(|r| r.reason == RejectReason::OverQuota).count();
    }
    let rows = s.county.hub.records_in(&common::r("420322"), 2014).await.unwrap();
    let admitted_people: usize = rows
        .iter()
        .filter(|r| {
            r.key.kind == RecordKind::Household && r.fields.get("county.decision").map(|f| f.0.as_str()) == Some("认定")
        })
        .map(|r| r.fields.get("members").unwrap().0.parse::<usize>().unwrap())
        .sum();
    assert_eq!(admitted_people, 39, "13 households of 3 fit under 40");
    assert_eq!(refused, 40 - 13);
    let refusals =
        rows.iter().filter(|r| r.fields.get("county.decision").map(|f| f.0.as_str()) == Some("不予认定")).count();
    assert_eq!(refusals, 27);
}

// Each storage test runs on both backends (PostgreSQL when JIANKA_TEST_PG is set).
#[tokio::test]
async fn township_allocation_is_a_ceiling_too_and_order_is_by_household_id_sqlite() {
    township_allocation_is_a_ceiling_too_and_order_is_by_household_id(false).await;
}

#[tokio::test]
async fn township_allocation_is_a_ceiling_too_and_order_is_by_household_id_postgres() {
    if pg_available() {
        township_allocation_is_a_ceiling_too_and_order_is_by_household_id(true).await;
    }
}

async fn township_allocation_is_a_ceiling_too_and_order_is_by_household_id(pg: bool) {
    let s = setup(pg, 100, &[("420322105", 5)]).await;
    let mut node = enroll_node(&s.county, "420322105", 7).await;
    let mut ops = Vec::new();
    for i in [3u32, 1, 2] {
        ops.extend(ops_of(&household("420322105200", i, 2, i, Status::CountyReview), 5));
    }
    let (_, rej) = accepted(&node.push(ops).await);
    assert_eq!(rej.len(), 1);
    assert_eq!(rej[0].reason, RejectReason::OverQuota);
    assert_eq!(rej[0].key.id, "420322105200-0003", "households decided in id order: 0001, 0002 fit, 0003 does not");
    let fb = node.feedback(0).await;
    assert!(fb.items.iter().any(|e| matches!(&e.item, Feedback::Quota { people: 5, used: 4, .. })));
}

// Each storage test runs on both backends (PostgreSQL when JIANKA_TEST_PG is set).
#[tokio::test]
async fn same_person_in_two_townships_is_a_conflict_for_the_county_sqlite() {
    same_person_in_two_townships_is_a_conflict_for_the_county(false).await;
}

#[tokio::test]
async fn same_person_in_two_townships_is_a_conflict_for_the_county_postgres() {
    if pg_available() {
        same_person_in_two_townships_is_a_conflict_for_the_county(true).await;
    }
}

async fn same_person_in_two_townships_is_a_conflict_for_the_county(pg: bool) {
    let s = setup(pg, 100, &[]).await;
    let mut a = enroll_node(&s.county, "420322105", 7).await;
    let mut b = enroll_node(&s.county, "420322106", 8).await;
    let ha = household("420322105200", 1, 2, 1, Status::CountyReview);
    accepted(&a.push(ops_of(&ha, 5)).await);
    // Township 106 registers the same head in its own household (空挂户).
    let mut hb = household("420322106200", 9, 1, 2, Status::CountyReview);
    hb.members[0] = ha.members[0].clone();
    let (_, rej) = accepted(&b.push(ops_of(&hb, 6)).await);
    assert!(rej.iter().any(|r| r.reason == RejectReason::DuplicatePerson), "{rej:?}");
    let list = s.county.hub.conflicts(false).await.unwrap();
    assert_eq!(list.len(), 1);
    assert!(!list[0].record.contains(ha.members[0].id_number.as_str()), "ID numbers masked in listings");
    s.county
        .hub
        .resolve_conflict(list[0].id, Some("420322105200-0001"), None, "lives in 105 (home visit)")
        .await
        .unwrap();
    assert!(s.county.hub.conflicts(false).await.unwrap().is_empty());
    let fb = b.feedback(0).await;
    assert!(
        fb.items.iter().any(|e| matches!(&e.item, Feedback::Resolved { value, .. } if value == "420322105200-0001"))
    );
}

// Each storage test runs on both backends (PostgreSQL when JIANKA_TEST_PG is set).
#[tokio::test]
async fn stale_township_edit_after_county_decision_is_reported_not_applied_sqlite() {
    stale_township_edit_after_county_decision_is_reported_not_applied(false).await;
}

#[tokio::test]
async fn stale_township_edit_after_county_decision_is_reported_not_applied_postgres() {
    if pg_available() {
        stale_township_edit_after_county_decision_is_reported_not_applied(true).await;
    }
}

async fn stale_township_edit_after_county_decision_is_reported_not_applied(pg: bool) {
    let s = setup(pg, 100, &[]).await;
    let mut a = enroll_node(&s.county, "420322105", 7).await;
    let h = household("420322105200", 1, 2, 1, Status::CountyReview);
    accepted(&a.push(ops_of(&h, 5)).await);
    // The township edits `status` from its old version 5; the county has changed it since.
    let key = RecordKey::new(RecordKind::Household, 2014, h.id());
    let op = Op::Upsert {
        key: key.clone(),
        fields: vec![FieldWrite { name: "status".into(), value: "Applied".into(), version: Hlc(50), base: Hlc(5) }],
    };
    let (_, rej) = accepted(&a.push(vec![op]).await);
    assert_eq!(rej.len(), 1);
    // The county holds the household now (县公告): moving it back is not the township's step.
    assert_eq!(rej[0].reason, RejectReason::NotAuthorised, "{rej:?}");
    assert!(rej[0].message.contains("county"), "{rej:?}");
    // And a township may not write the county's fields at all.
    let op = Op::Upsert {
        key,
        fields: vec![FieldWrite {
            name: "county.decision".into(),
            value: "认定".into(),
            version: Hlc(60),
            base: Hlc::ZERO,
        }],
    };
    let (_, rej) = accepted(&a.push(vec![op]).await);
    assert_eq!(rej[0].reason, RejectReason::NotAuthorised);
}

// Each storage test runs on both backends (PostgreSQL when JIANKA_TEST_PG is set).
#[tokio::test]
async fn audit_chain_detects_tampering_sqlite() {
    audit_chain_detects_tampering(false).await;
}

#[tokio::test]
async fn audit_chain_detects_tampering_postgres() {
    if pg_available() {
        audit_chain_detects_tampering(true).await;
    }
}

async fn audit_chain_detects_tampering(pg: bool) {
    let s = setup(pg, 100, &[]).await;
    let mut a = enroll_node(&s.county, "420322105", 7).await;
    accepted(&a.push(ops_of(&household("420322105200", 1, 2, 1, Status::CountyReview), 5)).await);
    // A second change set edits a field: its entry records the old and the new value.
    let edit = Op::Upsert {
        key: RecordKey::new(RecordKind::Household, 2014, "420322105200-0001"),
        fields: vec![FieldWrite { name: "phone".into(), value: "13900000000".into(), version: Hlc(90), base: Hlc(5) }],
    };
    accepted(&a.push(vec![edit]).await);
    let db = s.county.raw().await;
    assert!(
        matches!(audit::verify(s.county.hub.store().as_ref()).await.unwrap(), audit::AuditCheck::Intact { entries, .. } if entries >= 4)
    );
    let rows: Vec<(i64, String, String, String, String)> = sqlx::query_as(
        "SELECT seq, action, subject, old, new FROM audit WHERE action IN ('changeset', 'county_decisions') ORDER BY seq",
    )
    .fetch_all(&db)
    .await
    .unwrap();
    let (first, decisions, second) = (&rows[0], &rows[1], &rows[2]);
    assert_eq!(
        (first.1.as_str(), decisions.1.as_str(), second.1.as_str()),
        ("changeset", "county_decisions", "changeset")
    );
    assert!(first.2.starts_with("420322105#1 envelope "), "{}", first.2);
    // Records created exactly as sent are audited by the envelope, kept beside the log: its bytes
    // hash to the audited hash and open, under the node's key, to the new values.
    assert!(!first.4.contains("420322105200-0001"), "created as sent, not copied: {}", first.4);
    let kept: Vec<u8> = sqlx::query_scalar("SELECT bytes FROM envelopes WHERE origin = '420322105' AND seq = 1")
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(format!("420322105#1 envelope {}", hex::encode(changeset::envelope_hash(&kept))), first.2);
    let cs = changeset::open(&kept, &a.key.verifying_key(), Limits::default()).unwrap();
    let household_op = cs.ops.iter().find(|o| o.key().id == "420322105200-0001").expect("the household is in it");
    assert!(
        matches!(household_op, Op::Upsert { fields, .. } if fields.iter().any(|w| w.name == "members" && w.value == "2"))
    );
    // The decisions entry: who was admitted, and what the decided fields held before.
    assert!(decisions.4.contains(r#""admitted":["420322105200-0001"]"#), "{}", decisions.4);
    assert!(
        decisions.3.contains(r#""values":{"status":"CountyReview"},"ids":["420322105200-0001"]"#),
        "{}",
        decisions.3
    );
    assert!(second.3.contains("\"phone\":\"") && second.4.contains("\"phone\":\"13900000000\""), "{second:?}");
    assert!(!second.3.contains("13900000000"), "old value is the previous one");
    sqlx::query(sqlx::AssertSqlSafe(format!("UPDATE audit SET new = 'forged' WHERE seq = {}", first.0)))
        .execute(&db)
        .await
        .unwrap();
    assert!(
        matches!(audit::verify(s.county.hub.store().as_ref()).await.unwrap(), audit::AuditCheck::Broken { seq, .. } if seq == first.0)
    );
    // Restored, the chain holds again; an altered kept envelope is caught too.
    sqlx::query("UPDATE audit SET new = $1 WHERE seq = $2").bind(&first.4).bind(first.0).execute(&db).await.unwrap();
    assert!(matches!(audit::verify(s.county.hub.store().as_ref()).await.unwrap(), audit::AuditCheck::Intact { .. }));
    let mut altered = kept.clone();
    let last = altered.len() - 1;
    altered[last] ^= 1;
    sqlx::query("UPDATE envelopes SET bytes = $1 WHERE origin = '420322105' AND seq = 1")
        .bind(altered)
        .execute(&db)
        .await
        .unwrap();
    assert!(
        matches!(audit::verify(s.county.hub.store().as_ref()).await.unwrap(), audit::AuditCheck::Broken { seq, .. } if seq == first.0)
    );
}

// Each storage test runs on both backends (PostgreSQL when JIANKA_TEST_PG is set).
#[tokio::test]
async fn county_forwards_and_signs_off_and_the_province_verifies_sqlite() {
    county_forwards_and_signs_off_and_the_province_verifies(false).await;
}

#[tokio::test]
async fn county_forwards_and_signs_off_and_the_province_verifies_postgres() {
    if pg_available() {
        county_forwards_and_signs_off_and_the_province_verifies(true).await;
    }
}

async fn county_forwards_and_signs_off_and_the_province_verifies(pg: bool) {
    let s = setup(pg, 100, &[]).await;
    let mut a = enroll_node(&s.county, "420322105", 7).await;
    accepted(&a.push(ops_of(&household("420322105200", 1, 2, 1, Status::CountyReview), 5)).await);
    let so = s.county.hub.signoff(2014, "2014-annual", None).await.unwrap();
    assert_eq!(so.summary.households, 1);
    assert_eq!(so.summary.people, 2);
    assert_eq!(so.summary.quota_used, 2);
    let rep = s.county.hub.forward().await.unwrap();
    assert_eq!((rep.changesets, rep.records, rep.signoffs), (1, 3, 1));
    let p = s.province.hub.digest(&common::r("420322"), 2014).await.unwrap();
    assert_eq!(p.digest, so.digest);
    // Nothing new: nothing sent.
    assert_eq!(s.county.hub.forward().await.unwrap().changesets, 0);
    let report = s.province.hub.report(Some(2014)).await.unwrap();
    assert_eq!(report.signoffs.len(), 1);
    assert_eq!(report.years[0].total.people, 2);
    // Signed off, but without the year's 贫困县监测表: that is still owed.
    let late = s.province.hub.late(2014).await.unwrap();
    assert_eq!(late.len(), 1, "{late:?}");
    assert!(late[0].0.as_str() == "420322" && late[0].1.contains("no 贫困县监测表"), "{late:?}");
}

// Each storage test runs on both backends (PostgreSQL when JIANKA_TEST_PG is set).
#[tokio::test]
async fn chunked_upload_resumes_and_ingests_once_complete_sqlite() {
    chunked_upload_resumes_and_ingests_once_complete(false).await;
}

#[tokio::test]
async fn chunked_upload_resumes_and_ingests_once_complete_postgres() {
    if pg_available() {
        chunked_upload_resumes_and_ingests_once_complete(true).await;
    }
}

async fn chunked_upload_resumes_and_ingests_once_complete(pg: bool) {
    let s = setup(pg, 100, &[]).await;
    let mut a = enroll_node(&s.county, "420322105", 7).await;
    let bytes = a.seal(ops_of(&household("420322105200", 1, 2, 1, Status::Applied), 5));
    let total = bytes.len();
    let half = total / 2;
    let ack: ChunkAck =
        a.request("PUT", &format!("/v1/uploads/1?offset=0&total={total}"), bytes[..half].to_vec()).await.json();
    assert_eq!((ack.received, ack.outcome.is_none()), (half as u64, true));
    // A chunk at the wrong offset is ignored.
    let ack: ChunkAck =
        a.request("PUT", &format!("/v1/uploads/1?offset=3&total={total}"), bytes[3..].to_vec()).await.json();
    assert_eq!(ack.received, half as u64);
    let st: UploadState = a.request("GET", "/v1/uploads/1", vec![]).await.json();
    assert_eq!(st.received, half as u64);
    let ack: ChunkAck =
        a.request("PUT", &format!("/v1/uploads/1?offset={half}&total={total}"), bytes[half..].to_vec()).await.json();
    assert!(matches!(ack.outcome, Some(PushOutcome::Accepted { applied: 3, .. })), "{ack:?}");
}

// Each storage test runs on both backends (PostgreSQL when JIANKA_TEST_PG is set).
#[tokio::test]
async fn new_year_freezes_opens_window_then_locks_and_reopens_sqlite() {
    new_year_freezes_opens_window_then_locks_and_reopens(false).await;
}

#[tokio::test]
async fn new_year_freezes_opens_window_then_locks_and_reopens_postgres() {
    if pg_available() {
        new_year_freezes_opens_window_then_locks_and_reopens(true).await;
    }
}

async fn new_year_freezes_opens_window_then_locks_and_reopens(pg: bool) {
    use chrono::TimeZone;
    let s = setup(pg, 100, &[]).await;
    let mut a = enroll_node(&s.county, "420322105", 7).await;
    let h = household("420322105200", 1, 2, 1, Status::CountyReview);
    accepted(&a.push(ops_of(&h, 5)).await);
    // New Year 2015 (Beijing time).
    s.county.clock.set(chrono::Utc.with_ymd_and_hms(2014, 12, 31, 16, 0, 1).unwrap());
    let ny = s.county.hub.new_year(None).await.unwrap();
    assert_eq!(ny.frozen, 2014);
    assert_eq!(ny.carried_households, 1);
    assert_eq!(s.county.hub.records_in(&common::r("420322"), 2015).await.unwrap().len(), 3);
    // A node offline across New Year syncs on 3 January: edits to 2014 still accepted.
    s.county.clock.set(chrono::Utc.with_ymd_and_hms(2015, 1, 3, 1, 0, 0).unwrap());
    a.now = s.county.clock.now_secs();
    let st: SyncState = a.request("GET", "/v1/sync/state", vec![]).await.json();
    assert!(st.cycle.iter().any(|c| c.year == 2014 && c.state == YearState::UpdateWindow));
    let key = RecordKey::new(RecordKind::Household, 2014, h.id());
    let edit = |v: u64, val: &str| Op::Upsert {
        key: key.clone(),
        fields: vec![FieldWrite { name: "phone".into(), value: val.into(), version: Hlc(v), base: Hlc(5) }],
    };
    let (applied, _) = accepted(&a.push(vec![edit(100, "13900000000")]).await);
    assert_eq!(applied, 1);
    assert!(s.county.hub.late(2014).await.unwrap().is_empty());
    // February: the window has closed; edits to 2014 are refused, naming who may reopen.
    s.county.clock.set(chrono::Utc.with_ymd_and_hms(2015, 2, 3, 1, 0, 0).unwrap());
    a.now = s.county.clock.now_secs();
    let (_, rej) = accepted(&a.push(vec![edit(200, "13700000000")]).await);
    assert_eq!(rej[0].reason, RejectReason::YearLocked);
    assert!(rej[0].message.contains("420322"), "{}", rej[0].message);
    // The county reopens 2014 for this township, for a reason: edits go in again.
    s.county.hub.reopen(2014, &common::r("420322105"), "court ruling", None).await.unwrap();
    let (applied, rej) = accepted(&a.push(vec![edit(300, "13600000000")]).await);
    assert_eq!((applied, rej.len()), (1, 0));
    let fb = a.feedback(0).await;
    assert!(fb.items.iter().any(|e| matches!(&e.item, Feedback::Cycle(c) if c.state == YearState::Reopened)));
}

// Each storage test runs on both backends (PostgreSQL when JIANKA_TEST_PG is set).
#[tokio::test]
async fn a_township_that_misses_the_deadline_is_listed_late_sqlite() {
    a_township_that_misses_the_deadline_is_listed_late(false).await;
}

#[tokio::test]
async fn a_township_that_misses_the_deadline_is_listed_late_postgres() {
    if pg_available() {
        a_township_that_misses_the_deadline_is_listed_late(true).await;
    }
}

async fn a_township_that_misses_the_deadline_is_listed_late(pg: bool) {
    use chrono::TimeZone;
    let s = setup(pg, 100, &[]).await;
    let mut a = enroll_node(&s.county, "420322105", 7).await;
    let _b = enroll_node(&s.county, "420322106", 8).await;
    s.county.clock.set(chrono::Utc.with_ymd_and_hms(2015, 1, 10, 1, 0, 0).unwrap());
    a.now = s.county.clock.now_secs();
    s.county.hub.new_year(Some(2014)).await.unwrap();
    accepted(&a.push(vec![]).await);
    s.county.clock.set(chrono::Utc.with_ymd_and_hms(2015, 2, 2, 1, 0, 0).unwrap());
    let late = s.county.hub.late(2014).await.unwrap();
    assert_eq!(late.len(), 1);
    assert_eq!(late[0].0.as_str(), "420322106");
    assert!(late[0].1.contains("late"));
}

/// Poor villages beyond the county's village ceiling (3 in the test quotas) are held as 不予认定,
/// in village-code order whatever order they arrive in, and across townships pushing at once.
async fn village_ceiling(pg: bool) {
    let s = setup(pg, 100, &[]).await;
    let mut t105 = enroll_node(&s.county, "420322105", 7).await;
    let mut t106 = enroll_node(&s.county, "420322106", 8).await;
    let first = vec![
        village_op("420322105204", Status::CountyReview, 5),
        village_op("420322105201", Status::CountyReview, 5),
        village_op("420322105203", Status::TownshipNotice, 5),
    ];
    let second =
        vec![village_op("420322106202", Status::CountyReview, 5), village_op("420322106201", Status::CountyReview, 5)];
    let (a, b) = tokio::join!(t105.push(first), t106.push(second));
    let (_, ra) = accepted(&a);
    let (_, rb) = accepted(&b);
    let refused: Vec<_> = ra.iter().chain(rb.iter()).collect();
    assert_eq!(refused.len(), 1, "4 candidates, ceiling 3: {refused:?}");
    assert_eq!(refused[0].reason, RejectReason::OverQuota);
    let rows = s.county.hub.records_in(&common::r("420322"), 2014).await.unwrap();
    let decided: Vec<(String, String)> = rows
        .iter()
        .filter_map(|r| r.fields.get("county.decision").map(|d| (r.key.id.clone(), d.0.to_string())))
        .collect();
    assert_eq!(decided.iter().filter(|(_, d)| d == "认定").count(), 3);
    // Within each change set the order is by code: 105201 before 105204, 106201 before 106202.
    let refused_id = &refused[0].key.id;
    assert!(refused_id == "420322105204" || refused_id == "420322106202", "{refused_id}");
    // Not at county review: no decision.
    assert!(!decided.iter().any(|(id, _)| id == "420322105203"));
    // The ceiling stays full for a later village.
    let (_, r) = accepted(&t105.push(vec![village_op("420322105203", Status::CountyReview, 9)]).await);
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].reason, RejectReason::OverQuota);
}

#[tokio::test]
async fn village_ceiling_sqlite() {
    village_ceiling(false).await;
}

#[tokio::test]
async fn village_ceiling_postgres() {
    if pg_available() {
        village_ceiling(true).await;
    }
}

#[tokio::test]
async fn a_row_written_while_merging_and_changed_later_in_the_change_set_keeps_its_last_values_sqlite() {
    a_row_written_while_merging_and_changed_later_in_the_change_set_keeps_its_last_values(false).await;
}

#[tokio::test]
async fn a_row_written_while_merging_and_changed_later_in_the_change_set_keeps_its_last_values_postgres() {
    if pg_available() {
        a_row_written_while_merging_and_changed_later_in_the_change_set_keeps_its_last_values(true).await;
    }
}

/// The hub writes member rows while it merges the rest of a change set; a member the change set
/// changes again after its row was written must end up stored with its last values, and the
/// household decided with them.
async fn a_row_written_while_merging_and_changed_later_in_the_change_set_keeps_its_last_values(pg: bool) {
    let s = setup(pg, 100_000, &[]).await;
    let mut node = enroll_node(&s.county, "420322101", 41).await;
    let households: Vec<_> =
        (0..400u32).map(|i| household("420322101200", i, 3, 1000 + i, Status::CountyReview)).collect();
    let mut ops: Vec<Op> = households.iter().flat_map(|h| ops_of(h, 5)).collect();
    assert!(ops.len() > 1_500, "spans several merge slices");
    let first = &households[0].members[0];
    let renamed = "改名后";
    ops.push(Op::Upsert {
        key: RecordKey::new(RecordKind::Member, 2014, first.id_number.as_str()),
        fields: vec![FieldWrite { name: "name".into(), value: renamed.into(), version: Hlc(6), base: Hlc(5) }],
    });
    let (applied, rejected) = accepted(&node.push(ops).await);
    assert!(rejected.is_empty(), "{rejected:?}");
    assert_eq!(applied, 1_601);
    let rows = s.county.hub.records_in(&common::r("420322"), 2014).await.unwrap();
    let member = rows.iter().find(|r| r.key.id == first.id_number.as_str()).unwrap();
    assert_eq!(member.fields.get("name").unwrap().0, renamed);
    assert_eq!(member.fields.get("name").unwrap().1, 6);
    let admitted = rows
        .iter()
        .filter(|r| r.key.kind == RecordKind::Household)
        .filter(|r| r.fields.get("county.decision").map(|f| f.0.as_str()) == Some("认定"))
        .count();
    assert_eq!(admitted, 400);
    assert_eq!(rows.iter().filter(|r| r.key.kind == RecordKind::Member).count(), 1_200);
}

/// Every feedback page is signed by the hub for the child and position it was asked for: it
/// verifies with the hub's key, and not as another child's page or at another position.
#[tokio::test]
async fn feedback_pages_are_signed_for_their_child_and_position() {
    let s = setup(false, 100, &[]).await;
    let mut node = enroll_node(&s.county, "420322105", 7).await;
    let (_, rej) = accepted(&node.push(ops_of(&household("420322105200", 1, 2, 1, Status::Applied), 5)).await);
    assert!(rej.is_empty(), "{rej:?}");
    let page = node.feedback(0).await;
    assert!(!page.items.is_empty());
    let county = s.county.hub.signing_key().verifying_key();
    assert_eq!(page.verify(&county, &r("420322105"), 0), Ok(()));
    assert!(page.verify(&county, &r("420322106"), 0).is_err(), "not another township's page");
    assert!(page.verify(&county, &r("420322105"), 1).is_err(), "not a page at another position");
    let stranger = ed25519_dalek::SigningKey::from_bytes(&[9; 32]).verifying_key();
    assert!(page.verify(&stranger, &r("420322105"), 0).is_err());
    let mut tampered = page.clone();
    tampered.next += 1;
    assert!(tampered.verify(&county, &r("420322105"), 0).is_err(), "a changed page no longer verifies");
}
