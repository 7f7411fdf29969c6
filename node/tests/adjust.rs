//! Annual-update adjustments (动态调整) at the node: accepted only inside the update window the
//! county announced, refused once it closed (also while the node is offline past the deadline),
//! and each one a captured change plus a log line.

mod common;
use common::*;
use jianka_node::adjust;
use jianka_node::edit::Refused;
use jianka_node::import::{ImportOptions, import_households};
use jianka_node::{Node, feedback, report, store};
use jianka_shared::domain::Status;
use jianka_shared::protocol::{CycleInfo, Feedback, YearState};
use jianka_shared::record::{RecordKey, RecordKind};

fn d(s: &str) -> chrono::NaiveDate {
    s.parse().unwrap()
}

fn refused<T: std::fmt::Debug>(r: anyhow::Result<T>, part: &str) -> String {
    let e = r.unwrap_err();
    assert!(e.is::<Refused>() || e.to_string().contains(part), "not a refusal: {e:#}");
    assert!(e.to_string().contains(part), "{e} does not mention {part:?}");
    e.to_string()
}

fn told(node: &Node, year: u16, state: YearState, deadline: Option<&str>, reopen_by: Option<&str>) {
    let info =
        CycleInfo { year, state, deadline: deadline.map(str::to_string), reopen_by: reopen_by.map(str::to_string) };
    feedback::apply_item(&node.conn, &Feedback::Cycle(info), 0, None).unwrap();
}

/// A node with two 2014 households (3 and 1 members), the first recognised by the county.
fn node_at(t: &TestNode, now: &str) -> Node {
    let p = t.path("h.csv");
    let mut rows = household_rows(VILLAGE, "0001", 3, 7);
    rows.extend(household_rows(VILLAGE, "0002", 1, 8));
    write_csv(&p, &rows);
    let mut node = t.open(clock_at(now));
    import_households(&mut node, &p, ImportOptions { year: 2014, dry_run: false, progress_over: usize::MAX }).unwrap();
    let key = RecordKey::new(RecordKind::Household, 2014, format!("{VILLAGE}-0001"));
    store::apply_remote(&node.conn, &key, "status", "CountyAnnounced", jianka_shared::Hlc(u64::MAX / 2)).unwrap();
    node
}

fn field(node: &Node, kind: RecordKind, id: &str, name: &str) -> Option<String> {
    store::load(&node.conn, &RecordKey::new(kind, 2014, id))
        .unwrap()
        .filter(|s| !s.deleted)
        .and_then(|s| s.get(name).map(str::to_string))
}

fn logged(node: &Node, kind: &str) -> i64 {
    node.conn.query_row("SELECT COUNT(*) FROM adjustments WHERE kind = ?1", [kind], |r| r.get(0)).unwrap()
}

#[test]
fn adjustments_need_an_open_window_and_name_who_reopens_a_locked_year() {
    let t = TestNode::new();
    let node = node_at(&t, "2014-12-20T09:00:00+08:00");
    refused(adjust::window_year(&node, None), "no update window is open");

    told(&node, 2014, YearState::UpdateWindow, Some("2015-01-31"), None);
    told(&node, 2015, YearState::Open, None, None);
    assert_eq!(adjust::window_year(&node, None).unwrap(), 2014);
    refused(adjust::window_year(&node, Some(2015)), "no open update window");

    // Offline past the deadline: the node itself treats the window as closed.
    let late = t.open(clock_at("2015-02-01T08:00:00+08:00"));
    let msg = refused(adjust::window_year(&late, None), "year 2014 is locked");
    assert!(msg.contains("2015-01-31") && msg.contains("420322"), "{msg}");
    // Still open on the deadline day itself (Beijing time).
    let last_day = t.open(clock_at("2015-01-31T23:30:00+08:00"));
    assert_eq!(adjust::window_year(&last_day, None).unwrap(), 2014);

    // Locked by the county: the message carries who may reopen, even without --year.
    told(&node, 2014, YearState::Locked, Some("2015-01-31"), Some("the county (420322) — jianka-hub reopen"));
    let msg = refused(adjust::window_year(&node, None), "year 2014 is locked");
    assert!(msg.contains("jianka-hub reopen"), "{msg}");
    told(&node, 2014, YearState::Reopened, None, Some("the county (420322)"));
    assert_eq!(adjust::window_year(&node, None).unwrap(), 2014);
}

#[test]
fn every_write_to_a_year_past_its_window_is_refused_with_who_may_reopen() {
    let t = TestNode::new();
    let node = node_at(&t, "2015-01-10T09:00:00+08:00");
    told(&node, 2014, YearState::UpdateWindow, Some("2015-01-31"), None);
    drop(node);
    let mut late = t.open(clock_at("2015-02-03T09:00:00+08:00"));
    let hid = format!("{VILLAGE}-0002");
    let queued = store::pending_changes(&late.conn).unwrap();
    let e = jianka_node::edit::household_edit(&mut late, 2014, &hid, &["phone=13900000000".into()]).unwrap_err();
    let msg = format!("{e:#}");
    assert!(msg.contains("year 2014 is locked") && msg.contains("420322"), "{msg}");
    assert_eq!(store::pending_changes(&late.conn).unwrap(), queued, "nothing queued");
    // Status shows the deadline as passed.
    let s = report::status(&late).unwrap();
    assert!(s.warnings.iter().any(|w| w.contains("passed 3 days ago")), "{:?}", s.warnings);
}

#[test]
fn exit_death_birth_update_inside_the_window() {
    let t = TestNode::new();
    let mut node = node_at(&t, "2015-01-10T09:00:00+08:00");
    told(&node, 2014, YearState::UpdateWindow, Some("2015-01-31"), None);
    let (h1, h2) = (format!("{VILLAGE}-0001"), format!("{VILLAGE}-0002"));
    let before = store::pending_changes(&node.conn).unwrap();

    // An update of a recognised household's facts: refused as an ordinary edit, taken as an adjustment.
    refused(jianka_node::edit::household_edit(&mut node, 2014, &h1, &["income=9000".into()]), "annual update");
    adjust::update(&mut node, 2014, &h1, &["phone=13912345678".into()], d("2015-01-10")).unwrap();
    assert_eq!(field(&node, RecordKind::Household, &h1, "phone").as_deref(), Some("13912345678"));
    let detail: String =
        node.conn.query_row("SELECT detail FROM adjustments WHERE kind = 'update'", [], |r| r.get(0)).unwrap();
    assert_eq!(detail, "phone", "the log names fields, never personal values");
    refused(adjust::update(&mut node, 2014, &h1, &["status=Exited".into()], d("2015-01-10")), "workflow");

    // A death: the member leaves; the only member's death is an exit instead.
    let members = store::members_of(&node.conn, 2014, &h1).unwrap();
    let dead = members.iter().find(|m| m.fields.get("relation").is_some_and(|r| r != "户主")).unwrap().key.id.clone();
    adjust::death(&mut node, 2014, &dead, d("2014-12-28")).unwrap();
    assert_eq!(store::members_of(&node.conn, 2014, &h1).unwrap().len(), 2);
    assert_eq!(field(&node, RecordKind::Member, &dead, "household"), None);
    let only = store::members_of(&node.conn, 2014, &h2).unwrap()[0].key.id.clone();
    refused(adjust::death(&mut node, 2014, &only, d("2014-12-28")), "exit");

    // A birth joins the household.
    let baby = id(2014, 12, 20, 101);
    let sets: Vec<String> =
        ["姓名=王小宝", "与户主关系=之子", "性别=男", "文化程度=学龄前儿童", "健康状况=健康", "劳动能力=无劳动力"]
            .iter()
            .map(|s| s.to_string())
            .collect();
    adjust::birth(&mut node, 2014, &h1, &baby, &sets, d("2014-12-20")).unwrap();
    assert_eq!(field(&node, RecordKind::Member, &baby, "household").as_deref(), Some(h1.as_str()));
    refused(adjust::birth(&mut node, 2014, &h2, &baby, &sets, d("2014-12-20")), "already a member");

    // An exit, once.
    adjust::exit(&mut node, 2014, &h2, "稳定脱贫", d("2015-01-05")).unwrap();
    assert_eq!(field(&node, RecordKind::Household, &h2, "status").as_deref(), Some(&*format!("{:?}", Status::Exited)));
    assert_eq!(field(&node, RecordKind::Household, &h2, "exit_date").as_deref(), Some("2015-01-05"));
    refused(adjust::exit(&mut node, 2014, &h2, "稳定脱贫", d("2015-01-05")), "already exited");

    for kind in ["update", "death", "birth", "exit"] {
        assert_eq!(logged(&node, kind), 1, "{kind}");
    }
    assert!(store::pending_changes(&node.conn).unwrap() > before, "the adjustments are queued for the county");
}

#[test]
fn cross_county_move_out_and_in_are_captured_inside_the_window() {
    let t = TestNode::new();
    let mut node = node_at(&t, "2015-01-10T09:00:00+08:00");
    let h1 = format!("{VILLAGE}-0001");
    let members = store::members_of(&node.conn, 2014, &h1).unwrap();
    let mover = members.iter().find(|m| m.fields.get("relation").is_some_and(|r| r != "户主")).unwrap().key.id.clone();

    // Outside the window: refused like every adjustment.
    refused(adjust::window_year(&node, None), "no update window is open");
    told(&node, 2014, YearState::UpdateWindow, Some("2015-01-31"), None);
    let before = store::pending_changes(&node.conn).unwrap();

    refused(adjust::move_out(&mut node, 2014, &mover, "420322", "投亲", d("2015-01-10")), "own county");
    refused(adjust::move_out(&mut node, 2014, &mover, "420323105", "投亲", d("2015-01-10")), "6-digit county");
    refused(adjust::move_out(&mut node, 2014, &mover, "42x", "投亲", d("2015-01-10")), "--to-county");
    refused(adjust::move_out(&mut node, 2014, &mover, "420323", " ", d("2015-01-10")), "--reason");
    let stranger = id(1980, 1, 1, 555);
    refused(adjust::move_out(&mut node, 2014, &stranger, "420323", "投亲", d("2015-01-10")), "not registered");

    adjust::move_out(&mut node, 2014, &mover, "420323", "投亲", d("2015-01-10")).unwrap();
    // Declared, not gone: the person stays here until the province completes the move.
    assert_eq!(field(&node, RecordKind::Member, &mover, "move_out").as_deref(), Some("420323"));
    assert_eq!(field(&node, RecordKind::Member, &mover, "household").as_deref(), Some(h1.as_str()));
    assert!(store::pending_changes(&node.conn).unwrap() > before, "the declaration is queued for the county");
    refused(adjust::move_out(&mut node, 2014, &mover, "420323", "投亲", d("2015-01-11")), "already moving out");
    assert_eq!(logged(&node, "move_out"), 1);

    // The completion comes down as a Resolved naming the new county's household: the member leaves.
    let key = RecordKey::new(RecordKind::Member, 2014, &mover);
    let done = Feedback::Resolved {
        key: key.clone(),
        field: "household".into(),
        value: "420323101200-0007".into(),
        note: "cross-county move 420322 → 420323 completed by the province".into(),
    };
    feedback::apply_item(&node.conn, &done, 1, None).unwrap();
    assert_eq!(field(&node, RecordKind::Member, &mover, "household"), None);
    assert_eq!(store::members_of(&node.conn, 2014, &h1).unwrap().len(), 2);

    // An arrival from another county joins a household of this township.
    let arriving = id(1990, 5, 6, 321);
    let sets: Vec<String> =
        ["姓名=李四", "与户主关系=之子", "性别=男", "文化程度=初中", "健康状况=健康", "劳动能力=普通劳动力"]
            .iter()
            .map(|s| s.to_string())
            .collect();
    refused(adjust::move_in(&mut node, 2014, &h1, &arriving, "420322", &sets, d("2015-01-12")), "own county");
    refused(adjust::move_in(&mut node, 2014, &h1, &arriving, "4203", &sets, d("2015-01-12")), "6-digit county");
    adjust::move_in(&mut node, 2014, &h1, &arriving, "420381", &sets, d("2015-01-12")).unwrap();
    assert_eq!(field(&node, RecordKind::Member, &arriving, "household").as_deref(), Some(h1.as_str()));
    refused(adjust::move_in(&mut node, 2014, &h1, &arriving, "420381", &sets, d("2015-01-12")), "already a member");
    assert_eq!(logged(&node, "move_in"), 1);
    // The settled arrival's Resolved confirms it (same household): it stays.
    let confirmed = Feedback::Resolved {
        key: RecordKey::new(RecordKind::Member, 2014, &arriving),
        field: "household".into(),
        value: h1.clone(),
        note: "cross-county move 420381 → 420322 completed by the province".into(),
    };
    feedback::apply_item(&node.conn, &confirmed, 2, None).unwrap();
    assert_eq!(field(&node, RecordKind::Member, &arriving, "household").as_deref(), Some(h1.as_str()));
    // The county's carried next-year copy is settled too; this node holds no such record, and
    // the notice must not create one.
    let next_year = RecordKey::new(RecordKind::Member, 2015, &arriving);
    let carried = Feedback::Resolved { key: next_year.clone(), field: "household".into(), value: h1, note: "x".into() };
    feedback::apply_item(&node.conn, &carried, 3, None).unwrap();
    assert!(store::load(&node.conn, &next_year).unwrap().is_none());
}

#[test]
fn contact_details_are_correctable_at_any_time_and_logged() {
    let t = TestNode::new();
    let mut node = node_at(&t, "2014-10-20T09:00:00+08:00");
    let hid = format!("{VILLAGE}-0001");
    // No update window is open, and the county has recognised the household.
    refused(adjust::window_year(&node, None), "no update window is open");
    jianka_node::edit::household_edit(
        &mut node,
        2014,
        &hid,
        &["phone=13999998888".into(), "helper_unit=镇政府".into()],
    )
    .unwrap();
    assert_eq!(field(&node, RecordKind::Household, &hid, "phone").as_deref(), Some("13999998888"));
    assert_eq!(logged(&node, "contact"), 1);
    // Facts that decide eligibility stay behind the workflow and the update window.
    refused(
        jianka_node::edit::household_edit(&mut node, 2014, &hid, &["income=9000".into(), "phone=1".into()]),
        "annual update",
    );
    assert_eq!(logged(&node, "contact"), 1);
}
