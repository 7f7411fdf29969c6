//! Sync against an in-process hub: push, retries, chunked resumable uploads, gap repair after the
//! hub lost data, feedback (corrections, rejections, cycle), verify, and the USB bundle.

mod common;
use jianka_node::progress::Progress;
mod mock_hub;
use common::*;
use jianka_node::import::{ImportOptions, import_households};
use jianka_node::{Node, outbox, report, store, sync};
use jianka_shared::RegionCode;
use jianka_shared::protocol::{CycleInfo, Feedback, RejectReason, Rejection, YearState};
use jianka_shared::record::{RecordKey, RecordKind};
use mock_hub::{Hub, HubState, chain_for, serve};
use std::sync::{Arc, Mutex};

const NOW: &str = "2014-06-01T09:00:00+08:00";

fn set_config(t: &TestNode, from: &str, to: &str) {
    let text = std::fs::read_to_string(&t.config).unwrap();
    assert!(text.contains(from), "{from}");
    std::fs::write(&t.config, text.replacen(from, to, 1)).unwrap();
}

async fn setup(households: u32, members: usize) -> (TestNode, Hub) {
    let t = TestNode::new();
    let key = t.open(clock_at(NOW)).keypair().unwrap().public();
    let hub = Hub {
        state: Arc::new(Mutex::new(HubState::default())),
        node_key: key,
        origin: RegionCode::parse(TOWNSHIP).unwrap(),
    };
    let url = serve(hub.clone()).await;
    set_config(&t, "hub_url = \"http://127.0.0.1:9\"", &format!("hub_url = \"{url}\""));
    // The chain the county gave at enrollment: its key signs every feedback page.
    let chain_file = t.path("chain.json");
    jianka_keyfile::write_chain(&chain_file, &chain_for(&hub.origin, &key)).unwrap();
    jianka_node::bundle::install_chain(&t.open(clock_at(NOW)), &chain_file).unwrap();
    let mut rows = Vec::new();
    for k in 0..households {
        rows.extend(household_rows(VILLAGE, &format!("{k:04}"), members, k));
    }
    let p = t.path("h.csv");
    write_csv(&p, &rows);
    let mut node = t.open(clock_at(NOW));
    let r = import_households(&mut node, &p, ImportOptions { year: 2014, dry_run: false, progress_over: usize::MAX })
        .unwrap();
    assert!(r.errors.is_empty());
    (t, hub)
}

async fn sync_now(node: &mut Node) -> sync::SyncReport {
    let client = sync::client(node).unwrap();
    sync::sync_once(node, &client, true).await.unwrap()
}

fn identical(node: &Node, hub: &Hub) -> report::Verify {
    report::compare(node, 2014, &hub.digest(2014)).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_retry_and_verify() {
    let (t, hub) = setup(20, 3).await;
    set_config(&t, "max_ops_per_changeset = 20000", "max_ops_per_changeset = 25");
    let mut node = t.open(clock_at(NOW));
    assert!(!identical(&node, &hub).identical);
    hub.state.lock().unwrap().fail_next = 2;
    let r = sync_now(&mut node).await;
    assert_eq!(r.sealed.len(), 4, "80 changes in change sets of 25");
    assert_eq!(r.pushed, vec![1, 2, 3, 4]);
    assert!(outbox::unacked(&node.conn).unwrap().is_empty());
    let v = identical(&node, &hub);
    assert!(v.identical, "{v:#?}");
    assert_eq!(v.local_count, 80);
    // Nothing new: nothing pushed.
    let r = sync_now(&mut node).await;
    assert!(r.sealed.is_empty() && r.pushed.is_empty());
    // A local edit makes them differ, and verify names the record.
    jianka_node::edit::household_edit(&mut node, 2014, &format!("{VILLAGE}-0003"), &["联系电话=13911112222".into()])
        .unwrap();
    let v = identical(&node, &hub);
    assert_eq!(v.differing, vec![format!("2014/household/{VILLAGE}-0003")]);
    sync_now(&mut node).await;
    assert!(identical(&node, &hub).identical);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_change_sets_go_in_chunks_and_resume_after_cut_answers() {
    let (t, hub) = setup(40, 4).await;
    set_config(&t, "chunk_threshold_bytes = 65536", "chunk_threshold_bytes = 1000");
    set_config(&t, "chunk_bytes = 32768", "chunk_bytes = 700");
    hub.state.lock().unwrap().cut_every_nth_put = 3;
    let mut node = t.open(clock_at(NOW));
    let r = sync_now(&mut node).await;
    assert_eq!(r.pushed, vec![1]);
    let s = hub.state.lock().unwrap();
    assert_eq!(s.posts, 0, "went through /v1/uploads");
    let size = s.envelopes[&1].len() as u32;
    // Each chunk was sent once; after a cut answer the node asks the hub what it holds and goes on from there, never from zero.
    let chunks = size.div_ceil(700);
    assert!(s.puts >= chunks && s.puts <= chunks + chunks / 2 + 2, "{} puts for {chunks} chunks", s.puts);
    drop(s);
    assert!(identical(&node, &hub).identical);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hub_that_lost_data_gets_it_again_byte_identical() {
    let (t, hub) = setup(10, 2).await;
    set_config(&t, "max_ops_per_changeset = 20000", "max_ops_per_changeset = 7");
    let mut node = t.open(clock_at(NOW));
    sync_now(&mut node).await;
    let before = hub.state.lock().unwrap().envelopes.clone();
    // The hub is restored from a backup that holds only the first two change sets.
    {
        let mut s = hub.state.lock().unwrap();
        let keep: Vec<u64> = s.envelopes.keys().copied().filter(|k| *k <= 2).collect();
        let bytes: Vec<Vec<u8>> = keep.iter().map(|k| s.envelopes[k].clone()).collect();
        *s = HubState::default();
        drop(s);
        for b in bytes {
            hub.ingest(&b).unwrap();
        }
    }
    assert!(!identical(&node, &hub).identical);
    let r = sync_now(&mut node).await;
    assert_eq!(r.pushed, (3..=before.len() as u64).collect::<Vec<_>>());
    assert_eq!(hub.state.lock().unwrap().envelopes, before, "resent byte-identical");
    assert!(identical(&node, &hub).identical);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn county_feedback_is_applied_without_new_changes() {
    let (t, hub) = setup(3, 2).await;
    let mut node = t.open(clock_at(NOW));
    sync_now(&mut node).await;
    let hk = RecordKey::new(RecordKind::Household, 2014, format!("{VILLAGE}-0001"));
    hub.correct(hk.clone(), "county.decision", "不予认定");
    {
        let mut s = hub.state.lock().unwrap();
        s.feedback.push(Feedback::Rejected(Rejection {
            key: hk.clone(),
            reason: RejectReason::OverQuota,
            message: "县规模数 1000 人已满".into(),
        }));
        s.feedback.push(Feedback::Quota { township: RegionCode::parse(TOWNSHIP).unwrap(), people: 500, used: 498 });
        s.cycle.push(CycleInfo { year: 2014, state: YearState::Open, deadline: None, reopen_by: None });
        s.feedback.push(Feedback::Cycle(CycleInfo {
            year: 2015,
            state: YearState::UpdateWindow,
            deadline: Some("2015-01-31".into()),
            reopen_by: None,
        }));
    }
    let r = sync_now(&mut node).await;
    assert!(r.feedback_applied >= 4);
    assert_eq!(store::pending_changes(&node.conn).unwrap(), 0);
    assert!(r.sealed.is_empty(), "a correction is not sent back");
    assert_eq!(store::load(&node.conn, &hk).unwrap().unwrap().get("county.decision"), Some("不予认定"));
    let st = report::status(&node).unwrap();
    assert_eq!(st.rejections.len(), 1);
    assert_eq!(st.quota.as_ref().unwrap().used, 498);
    assert!(st.years.iter().any(|y| y.year == 2015 && y.state == "update_window"));
    assert!(identical(&node, &hub).identical);
    // Pulling again applies nothing twice.
    let r = sync_now(&mut node).await;
    assert_eq!(r.feedback_applied, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usb_bundle_round_trip() {
    use chrono::NaiveDate;
    use jianka_shared::protocol::{AnswerBundle, Bundle, open_file, seal_file};
    use jianka_shared::trust::Certificate;
    let (t, hub) = setup(5, 2).await;
    let mut node = t.open(clock_at(NOW));
    // Trust chain: province root → county → this township's key.
    let root = ed25519_dalek::SigningKey::from_bytes(&[1; 32]);
    let county = ed25519_dalek::SigningKey::from_bytes(&[2; 32]);
    let (p, c) = (RegionCode::parse("42").unwrap(), RegionCode::parse("420322").unwrap());
    let (from, until) = (NaiveDate::from_ymd_opt(2014, 1, 1).unwrap(), NaiveDate::from_ymd_opt(2030, 1, 1).unwrap());
    let chain = vec![
        Certificate::issue(&p, &root, &p, &root.verifying_key(), from, until),
        Certificate::issue(&p, &root, &c, &county.verifying_key(), from, until),
        Certificate::issue(&c, &county, node.township(), &hub.node_key, from, until),
    ];
    let chain_file = t.path("chain.json");
    jianka_keyfile::write_chain(&chain_file, &chain).unwrap();
    jianka_node::bundle::install_chain(&node, &chain_file).unwrap();

    let out = t.path("stick.jkb");
    let rep = jianka_node::bundle::export_bundle(&mut node, &out, Progress::hidden()).unwrap();
    assert_eq!(rep.envelopes, vec![1]);
    // At the county: open, ingest, answer.
    let b: Bundle = open_file(&hub.node_key, "bundle", &std::fs::read(&out).unwrap()).unwrap();
    let outcomes: Vec<_> = b.envelopes.iter().map(|e| hub.ingest(e).unwrap()).collect();
    let answer =
        AnswerBundle { origin: b.origin.clone(), outcomes, feedback: hub.feedback_page(0), state: hub.sync_state() };
    let answer_file = t.path("answer.jkb");
    std::fs::write(&answer_file, seal_file(&county, "answer", &answer)).unwrap();
    // A forged answer (signed by another key) is refused.
    let forged = t.path("forged.jkb");
    std::fs::write(&forged, seal_file(&root, "answer", &answer)).unwrap();
    let e = jianka_node::bundle::import_answer(&mut node, &forged, Progress::hidden()).unwrap_err();
    assert!(e.to_string().contains("not by county"), "{e}");
    let r = jianka_node::bundle::import_answer(&mut node, &answer_file, Progress::hidden()).unwrap();
    assert_eq!(r.acknowledged, vec![1]);
    assert!(outbox::unacked(&node.conn).unwrap().is_empty());
    assert!(identical(&node, &hub).identical);
}

/// `jianka-node ARGS` piped, as tests and scripts run it: (exit code, stderr).
async fn piped(t: TestNode, args: Vec<String>) -> (TestNode, Option<i32>, String) {
    tokio::task::spawn_blocking(move || {
        let out = t.command(NOW).args(&args).output().unwrap();
        (t, out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
    })
    .await
    .unwrap()
}

/// `jianka-node ARGS` on a terminal: what the clerk sees, or None without a terminal to use.
async fn on_terminal(t: TestNode, args: Vec<String>) -> (TestNode, Option<String>) {
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let seen = t.run_on_terminal(NOW, &args);
        (t, seen)
    })
    .await
    .unwrap()
}

fn args(a: &[&str]) -> Vec<String> {
    a.iter().map(|s| s.to_string()).collect()
}

fn export_bundle(t: &TestNode) -> Vec<String> {
    args(&["export-bundle", "--out", t.path("stick.jkb").to_str().unwrap()])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_is_drawn_on_a_terminal_and_nowhere_else() {
    // Piped: nothing but the result lines.
    let (t, _hub) = setup(100, 4).await;
    let bundle = export_bundle(&t);
    let (t, code, err) = piped(t, bundle).await;
    assert_eq!(code, Some(0), "{err}");
    assert!(!err.contains("change sets"), "{err}");
    let (_t, code, err) = piped(t, args(&["sync"])).await;
    assert_eq!(code, Some(0), "{err}");
    assert!(!err.contains("pushing") && !err.contains("feedback"), "{err}");

    // On a terminal: what is being done, how far along.
    let (t, _hub) = setup(100, 4).await;
    let bundle = export_bundle(&t);
    let (t, seen) = on_terminal(t, bundle).await;
    let Some(seen) = seen else { return };
    assert!(seen.contains("reading change sets"), "{seen}");
    // With --json the terminal gets the JSON alone.
    let (_t, seen) = on_terminal(t, args(&["sync", "--json"])).await;
    let seen = seen.unwrap();
    assert!(seen.contains("\"pushed\"") && !seen.contains("pushing change set"), "{seen}");
    let (t, _hub) = setup(100, 4).await;
    let (_t, seen) = on_terminal(t, args(&["sync"])).await;
    let seen = seen.unwrap();
    assert!(seen.contains("pushing change set 1 of 1") && seen.contains("sync ok"), "{seen}");
}

/// Feedback the county did not sign (a man in the middle with a key of his own, or none) is
/// refused whole: nothing of it is applied, and the clerk is told why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn feedback_not_signed_by_the_county_is_refused_and_nothing_applied() {
    let (t, hub) = setup(2, 2).await;
    let mut node = t.open(clock_at(NOW));
    sync_now(&mut node).await;
    let stored = |node: &Node| store::records(&node.conn, RecordKind::Household, 2014).unwrap().len();
    let before = stored(&node);
    {
        let mut s = hub.state.lock().unwrap();
        s.forged_by = Some(ed25519_dalek::SigningKey::from_bytes(&[66; 32]));
        let keys: Vec<RecordKey> = s.records.keys().filter(|k| k.kind == RecordKind::Household).cloned().collect();
        s.feedback.push(Feedback::Removed { keys, version: jianka_shared::Hlc(u64::MAX / 2) });
    }
    let client = sync::client(&node).unwrap();
    let err = sync::sync_once(&mut node, &client, true).await.unwrap_err();
    let text = format!("{err:#}");
    assert!(text.contains("signed by key") && text.contains("not by"), "{text}");
    assert_eq!(stored(&node), before, "the forged removal was not applied");
}
