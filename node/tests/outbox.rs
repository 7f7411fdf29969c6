//! Change capture: after any sequence of writes the replica equals the fold of the outbox, and
//! the sealed change sets carry exactly those changes, contiguous and hash-chained.

mod common;
use common::*;
use jianka_node::outbox::{self, CutPolicy};
use jianka_node::store::{self, Capture};
use jianka_shared::changeset::{Op, open};
use jianka_shared::record::{RecordKey, RecordKind};
use jianka_shared::{Hlc, RegionCode};
use proptest::prelude::*;
use std::collections::BTreeMap;

#[derive(Debug, Clone)]
enum Action {
    Upsert { rec: u8, fields: Vec<(u8, u8)> },
    Delete { rec: u8 },
}

fn action() -> impl Strategy<Value = Action> {
    prop_oneof![
        4 => (0u8..4, proptest::collection::vec((0u8..4, 0u8..3), 0..4)).prop_map(|(rec, fields)| Action::Upsert { rec, fields }),
        1 => (0u8..4).prop_map(|rec| Action::Delete { rec }),
    ]
}

fn key(rec: u8) -> RecordKey {
    RecordKey::new(RecordKind::Village, 2014 + (rec % 2) as u16, format!("42032210520{rec}"))
}

#[derive(Debug, Default, PartialEq)]
struct Folded {
    fields: BTreeMap<String, (String, Hlc)>,
    deleted: bool,
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(40))]

    #[test]
    fn replica_equals_fold_of_outbox(actions in proptest::collection::vec(action(), 1..30), per_tx in 1usize..4, max_ops in 1usize..5) {
        let t = TestNode::new();
        let mut node = t.open(clock_at("2014-06-01T09:00:00+08:00"));
        let township = RegionCode::parse(TOWNSHIP).unwrap();
        for chunk in actions.chunks(per_tx) {
            let tx = node.conn.transaction().unwrap();
            let mut cap = Capture::begin(&tx, &township, node.clock).unwrap();
            for a in chunk {
                match a {
                    Action::Upsert { rec, fields } => {
                        let values = fields.iter().map(|(f, v)| (format!("f{f}"), format!("v{v}"))).collect();
                        cap.upsert(&tx, &key(*rec), &values).unwrap();
                    }
                    Action::Delete { rec } => {
                        cap.delete(&tx, &key(*rec)).unwrap();
                    }
                }
            }
            cap.finish(&tx).unwrap();
            tx.commit().unwrap();
        }
        // Fold the outbox.
        let ops: Vec<Op> = {
            let mut stmt = node.conn.prepare("SELECT op FROM changes ORDER BY cid").unwrap();
            stmt.query_map([], |r| r.get::<_, String>(0)).unwrap().map(|s| serde_json::from_str(&s.unwrap()).unwrap()).collect()
        };
        let mut folded: BTreeMap<RecordKey, Folded> = BTreeMap::new();
        let mut last_version = Hlc::ZERO;
        for op in &ops {
            match op {
                Op::Upsert { key, fields } => {
                    let f = folded.entry(key.clone()).or_default();
                    let revived = f.deleted;
                    if f.deleted {
                        f.fields.clear();
                        f.deleted = false;
                    }
                    for w in fields {
                        // Each write is based on the version it replaced (a revival on the tombstone).
                        let before = f.fields.get(w.name.as_str()).map(|(_, h)| *h).unwrap_or(Hlc::ZERO);
                        if !revived {
                            prop_assert_eq!(w.base, before);
                        }
                        prop_assert!(w.version > last_version);
                        f.fields.insert(w.name.to_string(), (w.value.to_string(), w.version));
                    }
                    if let Some(w) = fields.first() { last_version = w.version; }
                }
                Op::Delete { key, version, .. } => {
                    let f = folded.entry(key.clone()).or_default();
                    f.deleted = true;
                    last_version = *version;
                }
            }
        }
        for rec in 0..4u8 {
            let k = key(rec);
            let stored = store::load(&node.conn, &k).unwrap();
            match (stored, folded.get(&k)) {
                (None, None) => {}
                (Some(s), Some(f)) => {
                    prop_assert_eq!(s.deleted, f.deleted);
                    if !s.deleted {
                        prop_assert_eq!(&s.fields, &f.fields);
                    }
                }
                (s, f) => prop_assert!(false, "replica {:?} vs fold {:?}", s, f),
            }
        }
        // Seal in small change sets: contiguous seqs, hash chain, the same ops in order.
        let kp = node.keypair().unwrap();
        let sealed = outbox::seal_pending(&mut node.conn, &township, kp.signing(), node.clock,
            CutPolicy { max_ops, max_age_ms: 0, force: true }).unwrap();
        prop_assert_eq!(store::pending_changes(&node.conn).unwrap(), 0);
        let mut prev = [0u8; 32];
        let mut all = Vec::new();
        for (i, seq) in sealed.iter().enumerate() {
            prop_assert_eq!(*seq, i as u64 + 1);
            let (bytes, hash) = outbox::envelope(&node.conn, *seq).unwrap().unwrap();
            let cs = open(&bytes, &kp.public(), Default::default()).unwrap();
            prop_assert_eq!(cs.header.prev_hash, prev);
            prop_assert!(cs.ops.len() <= max_ops);
            prop_assert!(cs.ops.iter().all(|o| o.key().year == cs.header.year));
            prev = hash;
            all.extend(cs.ops);
        }
        prop_assert_eq!(all, ops);
    }
}

#[test]
fn writes_outside_the_township_are_refused_and_nothing_is_captured() {
    let t = TestNode::new();
    let node = t.open(clock_at("2014-06-01T09:00:00+08:00"));
    let township = RegionCode::parse(TOWNSHIP).unwrap();
    let mut cap = Capture::begin(&node.conn, &township, node.clock).unwrap();
    let foreign = RecordKey::new(RecordKind::Village, 2014, "420322106200");
    let e = cap.upsert(&node.conn, &foreign, &[("name".to_string(), "x".to_string())].into()).unwrap_err();
    assert!(e.to_string().contains("outside township"), "{e}");
    assert_eq!(store::pending_changes(&node.conn).unwrap(), 0);
}

#[test]
fn locked_year_refuses_local_edits_with_who_may_reopen() {
    use jianka_shared::protocol::{CycleInfo, Feedback, YearState};
    let t = TestNode::new();
    let node = t.open(clock_at("2015-03-01T09:00:00+08:00"));
    jianka_node::feedback::apply_item(
        &node.conn,
        &Feedback::Cycle(CycleInfo {
            year: 2014,
            state: YearState::Locked,
            deadline: Some("2015-01-31".into()),
            reopen_by: Some("郧西县扶贫办 (county 420322)".into()),
        }),
        0,
        None,
    )
    .unwrap();
    let township = RegionCode::parse(TOWNSHIP).unwrap();
    let mut cap = Capture::begin(&node.conn, &township, node.clock).unwrap();
    let e = cap.upsert(&node.conn, &key(0), &[("name".to_string(), "x".to_string())].into()).unwrap_err();
    let msg = e.to_string();
    assert!(msg.contains("year 2014 is locked") && msg.contains("郧西县扶贫办"), "{msg}");
    // Another year is open.
    cap.upsert(&node.conn, &key(1), &[("name".to_string(), "x".to_string())].into()).unwrap();
}

#[test]
fn remote_corrections_do_not_enter_the_outbox() {
    let t = TestNode::new();
    let node = t.open(clock_at("2014-06-01T09:00:00+08:00"));
    let k = key(0);
    store::apply_remote(&node.conn, &k, "county.decision", "认定", Hlc::new(1_500_000_000_000, 0)).unwrap();
    assert_eq!(store::pending_changes(&node.conn).unwrap(), 0);
    assert_eq!(store::load(&node.conn, &k).unwrap().unwrap().get("county.decision"), Some("认定"));
    // The local clock moved past the remote version: a later local edit is newer.
    assert!(store::load_hlc(&node.conn).unwrap() >= Hlc::new(1_500_000_000_000, 0));
}
