//! Workflow date rules: steps in order, 7-day notices by date, objections stop a notice.

mod common;
use common::*;
use jianka_node::edit::Refused;
use jianka_node::import::{ImportOptions, import_households};
use jianka_node::workflow::{advance, object, resolve_objection};
use jianka_shared::domain::Status;
use jianka_shared::flow::Flow;

/// The 2014 national method's flow (no profile).
fn national() -> Flow {
    Flow::national_households(7)
}

fn d(s: &str) -> chrono::NaiveDate {
    s.parse().unwrap()
}

fn refused(r: anyhow::Result<impl std::fmt::Debug>, part: &str) {
    let e = r.unwrap_err();
    assert!(e.is::<Refused>(), "not a refusal: {e:#}");
    assert!(e.to_string().contains(part), "{e} does not mention {part:?}");
}

#[test]
fn full_township_workflow_with_notice_windows_and_objections() {
    let t = TestNode::new();
    let p = t.path("h.csv");
    write_csv(&p, &household_rows(VILLAGE, "0001", 3, 7));
    let mut node = t.open(clock_at("2014-07-15T09:00:00+08:00"));
    import_households(&mut node, &p, ImportOptions { year: 2014, dry_run: false, progress_over: usize::MAX }).unwrap();
    let h = format!("{VILLAGE}-0001");
    let y = 2014;

    refused(advance(&mut node, y, &h, d("2014-06-01"), None, &national()), "minutes");
    assert_eq!(
        advance(&mut node, y, &h, d("2014-06-01"), Some("村民代表大会 2014-06-01"), &national()).unwrap().1,
        Status::Appraised
    );
    assert_eq!(advance(&mut node, y, &h, d("2014-06-02"), None, &national()).unwrap().1, Status::VillageNotice);
    // The village notice began 06-02 and runs 7 days: not before 06-09.
    refused(advance(&mut node, y, &h, d("2014-06-08"), None, &national()), "2014-06-09");
    // Dates go forward only, and not past today.
    refused(advance(&mut node, y, &h, d("2014-06-01"), None, &national()), "before");
    refused(advance(&mut node, y, &h, d("2014-08-01"), None, &national()), "future");
    assert_eq!(advance(&mut node, y, &h, d("2014-06-09"), None, &national()).unwrap().1, Status::TownshipReview);
    refused(object(&mut node, y, &h, ("李某", "收入不实"), d("2014-06-10"), &national()), "public notice");
    assert_eq!(advance(&mut node, y, &h, d("2014-06-10"), None, &national()).unwrap().1, Status::TownshipNotice);

    // An objection stops the township notice…
    let o = object(&mut node, y, &h, ("李某", "家有轿车"), d("2014-06-12"), &national()).unwrap();
    refused(advance(&mut node, y, &h, d("2014-06-30"), None, &national()), "objection");
    // …and once resolved the notice runs its full 7 days again from the resolution.
    resolve_objection(&mut node, o, "核实无车", d("2014-06-20")).unwrap();
    refused(resolve_objection(&mut node, o, "again", d("2014-06-21")), "already resolved");
    refused(advance(&mut node, y, &h, d("2014-06-26"), None, &national()), "2014-06-27");
    assert_eq!(advance(&mut node, y, &h, d("2014-06-27"), None, &national()).unwrap().1, Status::CountyReview);

    // The next step is the county's.
    refused(advance(&mut node, y, &h, d("2014-07-01"), None, &national()), "county");
    // Each step was captured for the hub.
    let status_writes: i64 =
        node.conn.query_row("SELECT COUNT(*) FROM changes WHERE op LIKE '%\"status\"%'", [], |r| r.get(0)).unwrap();
    assert_eq!(status_writes, 1 + 5, "import plus five steps");
}

#[test]
fn household_edits_keep_rules_and_member_changes_recompute_per_capita() {
    use jianka_node::edit::{household_edit, member_add, member_remove};
    let t = TestNode::new();
    let p = t.path("h.csv");
    write_csv(&p, &household_rows(VILLAGE, "0001", 2, 9));
    let mut node = t.open(clock_at("2014-07-15T09:00:00+08:00"));
    import_households(&mut node, &p, ImportOptions { year: 2014, dry_run: false, progress_over: usize::MAX }).unwrap();
    let h = format!("{VILLAGE}-0001");
    // Per-capita must follow income (rule 5).
    refused(household_edit(&mut node, 2014, &h, &["家庭年纯收入=5000".into()]), "rule 5");
    household_edit(&mut node, 2014, &h, &["家庭年纯收入=5000".into(), "income_per_capita=2500".into()]).unwrap();
    refused(household_edit(&mut node, 2014, &h, &["status=CountyAnnounced".into()]), "workflow advance");
    refused(household_edit(&mut node, 2014, &h, &["county.decision=认定".into()]), "county");
    refused(household_edit(&mut node, 2014, &h, &["其他致贫原因=因病".into()]), "main cause");
    let child = id(2010, 3, 3, 13);
    member_add(
        &mut node,
        2014,
        &h,
        &child,
        &["姓名=王小山", "与户主关系=之子", "性别=男", "文化程度=学龄前儿童", "健康状况=健康", "劳动能力=无劳动力"]
            .map(String::from),
    )
    .unwrap();
    let (rec, members) = jianka_node::edit::load_household(&node.conn, 2014, &h).unwrap();
    assert_eq!(members.len(), 3);
    assert_eq!(rec.fields["members"], "3");
    assert_eq!(rec.fields["income_per_capita"], "1666.67");
    // Sex must match the ID number.
    refused(
        member_add(
            &mut node,
            2014,
            &h,
            &id(2011, 3, 3, 13),
            &["姓名=王", "与户主关系=之女", "性别=女", "文化程度=学龄前儿童", "健康状况=健康", "劳动能力=无劳动力"]
                .map(String::from),
        ),
        "rule 1",
    );
    member_remove(&mut node, 2014, &child).unwrap();
    let (rec, _) = jianka_node::edit::load_household(&node.conn, 2014, &h).unwrap();
    assert_eq!(rec.fields["income_per_capita"], "2500");
}

// ---- through the real binary ----

/// 200 households of one village, imported on 2014-06-01.
fn two_hundred_households() -> TestNode {
    let t = TestNode::new();
    let mut rows = Vec::new();
    for k in 0..200u32 {
        rows.extend(household_rows(VILLAGE, &format!("{k:04}"), 2, k));
    }
    let p = t.path("hh.csv");
    write_csv(&p, &rows);
    let mut node = t.open(clock_at("2014-07-15T09:00:00+08:00"));
    import_households(&mut node, &p, ImportOptions { year: 2014, dry_run: false, progress_over: usize::MAX }).unwrap();
    t
}

/// `jianka-node ARGS` on 2014-07-15: (exit code, stdout, stderr).
fn node(t: &TestNode, args: &[&str]) -> (Option<i32>, String, String) {
    let out = t.command("2014-07-15T09:00:00+08:00").args(args).output().unwrap();
    (out.status.code(), String::from_utf8(out.stdout).unwrap(), String::from_utf8(out.stderr).unwrap())
}

fn advance_all(t: &TestNode, date: &str, extra: &[&str]) -> (Option<i32>, String, String) {
    let args = [&["workflow", "advance", "--all", "--year", "2014", "--date", date][..], extra].concat();
    node(t, &args)
}

#[test]
fn advance_all_says_why_none_moved_and_fails() {
    let t = two_hundred_households();
    let (code, out, err) = advance_all(&t, "2014-06-01", &["--minutes", "村民代表大会 2014-06-01"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("200 households: 申请 → 民主评议 (Applied → Appraised)"), "{out}");
    assert_eq!(advance_all(&t, "2014-06-02", &[]).0, Some(0));

    // The village notice began 06-02 and runs 7 days: on 06-05 nobody may leave it.
    let (code, out, err) = advance_all(&t, "2014-06-05", &[]);
    assert_eq!(code, Some(2), "nothing moved must fail\n{out}\n{err}");
    assert!(err.contains("no household moved"), "{err}");
    assert!(err.contains("200 households in the 村公示 (VillageNotice) until 2014-06-09"), "{err}");
    // Grouped: one line for the 200, a few of them named, not 200 lines.
    assert!(err.lines().count() < 10, "{err}");

    // An objection holds one household; the other 199 move, and that one is named with its reason.
    let hid = format!("{VILLAGE}-0007");
    let (code, _, err) =
        node(&t, &["workflow", "object", &hid, "--by", "李某", "--reason", "家有轿车", "--date", "2014-06-05"]);
    assert_eq!(code, Some(0), "{err}");
    let (code, out, err) = advance_all(&t, "2014-06-09", &[]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("199 households: 村公示 → 乡镇审核 (VillageNotice → TownshipReview)"), "{out}");
    assert!(
        err.contains("1 household in the 村公示 (VillageNotice) with an open objection") && err.contains(&hid),
        "{err}"
    );

    // A village with no households: asked to move something, nothing moved.
    let (code, _, err) = advance_all(&t, "2014-06-09", &["--village", "420322105299"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("no households"), "{err}");
}

#[test]
fn advance_all_names_a_step_that_is_the_countys() {
    let t = two_hundred_households();
    for (date, extra) in [
        ("2014-06-01", &["--minutes", "评议通过"][..]),
        ("2014-06-02", &[]),
        ("2014-06-09", &[]),
        ("2014-06-10", &[]),
        ("2014-06-17", &[]),
    ] {
        let (code, _, err) = advance_all(&t, date, extra);
        assert_eq!(code, Some(0), "{date}: {err}");
    }
    let (code, _, err) = advance_all(&t, "2014-06-18", &[]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("200 households at 县复审 (CountyReview)") && err.contains("county"), "{err}");
}

/// Every English status name in `text` stands after its Chinese label, never alone or first.
fn chinese_first(what: &str, text: &str) {
    for st in Status::ALL {
        let en = format!("{st:?}");
        for line in text.lines().filter(|l| l.contains(&en)) {
            let as_status = format!("{} ({en})", st.label());
            let in_step = line.contains(&format!("→ {en})")) || line.contains(&format!("({en} →"));
            assert!(line.contains(&as_status) || in_step, "{what}: {en} without its label first: {line:?}");
        }
    }
}

#[test]
fn statuses_and_steps_are_named_chinese_first_everywhere() {
    let t = two_hundred_households();
    let hid = format!("{VILLAGE}-0001");
    let (_, out, _) = advance_all(&t, "2014-06-01", &["--minutes", "评议通过"]);
    chinese_first("advance --all", &out);
    let (_, out, _) = node(&t, &["workflow", "advance", &hid, "--year", "2014", "--date", "2014-06-02"]);
    assert!(out.contains("民主评议 → 村公示 (Appraised → VillageNotice)"), "{out}");
    let (_, out, _) = node(&t, &["status"]);
    assert!(out.contains("households 民主评议 (Appraised): 199"), "{out}");
    chinese_first("status", &out);
    let (_, out, _) = node(&t, &["household", "list", "--year", "2014"]);
    assert!(out.contains(&format!("{hid}\t村公示 (VillageNotice)")), "{out}");
    chinese_first("household list", &out);
    let (_, out, _) = node(&t, &["household", "show", &hid, "--year", "2014"]);
    assert!(out.contains("status: 村公示 (VillageNotice)"), "{out}");
    chinese_first("household show", &out);
    let (_, out, _) = node(&t, &["workflow", "show", &hid, "--year", "2014"]);
    assert!(out.contains("申请 → 民主评议 (Applied → Appraised)"), "{out}");
    chinese_first("workflow show", &out);
    let (code, _, err) = node(&t, &["workflow", "advance", &hid, "--year", "2014", "--date", "2014-06-03"]);
    assert_eq!(code, Some(2));
    assert!(err.contains("村公示 (VillageNotice)"), "{err}");
    chinese_first("a refusal", &err);
    let (_, _, err) = node(&t, &["workflow", "object", &format!("{VILLAGE}-0002"), "--by", "某", "--reason", "某"]);
    chinese_first("an objection refused", &err);
    // Stored and sent as before: the English name alone.
    let (_, json, _) = node(&t, &["household", "list", "--year", "2014", "--json"]);
    assert!(json.contains("\"VillageNotice\"") && !json.contains("村公示"), "{json}");
}

/// Under a profile with seed 003's exclusions (miyun-2016), the township sees a household with a
/// car refused before 民主评议, naming the rule; under hubei-2014 (no exclusions) it goes on.
#[test]
fn the_profile_marks_an_excluded_household_before_it_enters_the_workflow() {
    for (profile, car_refused) in [("miyun-2016.toml", true), ("hubei-2014.toml", false)] {
        let t = node_with_profile(profile);
        // Two households under both lines, the first with a car (是否有轿车 = 是).
        let mut rows = household_rows(VILLAGE, "0001", 2, 1);
        rows.extend(household_rows(VILLAGE, "0002", 2, 2));
        for (i, r) in rows.iter_mut().enumerate() {
            r.push(if i == 0 { "是" } else { "" }.into());
        }
        let mut w = csv::Writer::from_writer(Vec::new());
        let mut header: Vec<&str> = HEADERS.to_vec();
        header.push("是否有轿车");
        w.write_record(&header).unwrap();
        for r in &rows {
            w.write_record(r).unwrap();
        }
        let p = t.path("h.csv");
        std::fs::write(&p, w.into_inner().unwrap()).unwrap();
        let mut node = t.open(clock_at("2014-07-15T09:00:00+08:00"));
        import_households(&mut node, &p, ImportOptions { year: 2014, dry_run: false, progress_over: usize::MAX })
            .unwrap();
        let minutes = Some("村民代表大会 2014-06-01");
        let flow = node.cfg.household_flow().unwrap();
        let car = advance(&mut node, 2014, &format!("{VILLAGE}-0001"), d("2014-06-01"), minutes, &flow);
        if car_refused {
            refused(car, "is excluded: 有轿车 under the profile miyun-2016");
        } else {
            assert_eq!(car.unwrap().1, Status::Appraised);
        }
        let other = advance(&mut node, 2014, &format!("{VILLAGE}-0002"), d("2014-06-01"), minutes, &flow);
        assert_eq!(other.unwrap().1, Status::Appraised, "{profile}");
    }
}

/// A poor village goes through its own flow from the node (村申请 → 乡镇审核 → 乡镇公示 7 days →
/// 县审核); under hubei-2014 a village that fails 一高一低一无 stops before the county, named.
#[test]
fn a_village_moves_through_its_flow_and_one_that_fails_the_criteria_stops_at_the_township() {
    let t = node_with_profile("hubei-2014.toml");
    let now = "2014-07-15T09:00:00+08:00";
    let run = |args: &[&str]| {
        let out = t.command(now).args(args).output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
        )
    };
    for (code, collective) in [("420322105200", "0"), ("420322105201", "30000")] {
        let (ok, out) = run(&[
            "village",
            "add",
            "--code",
            code,
            "--name",
            "村",
            "--households",
            "300",
            "--population",
            "1000",
            "--poor-households",
            "90",
            "--poor-population",
            "300",
            "--income-per-capita",
            "2100",
            "--collective-income",
            collective,
            "--year",
            "2014",
        ]);
        assert!(ok, "{out}");
    }
    let good = "420322105200";
    for date in ["2014-06-01", "2014-06-02"] {
        let (ok, out) = run(&["village", "advance", good, "--date", date, "--year", "2014"]);
        assert!(ok, "{out}");
    }
    // The village list of the 乡镇公示, as the township posts it.
    let list = t.path("贫困村公示.csv");
    let (ok, out) = run(&[
        "notice",
        "--step",
        "乡镇公示",
        "--villages",
        "--format",
        "csv",
        "--year",
        "2014",
        "--out",
        list.to_str().unwrap(),
    ]);
    assert!(ok && out.contains("1 villages"), "{out}");
    let text = std::fs::read_to_string(&list).unwrap();
    assert!(text.contains("420322105200,村,300,90,300,30.0%,2014-06-02,2014-06-08"), "{text}");
    // The 乡镇公示 runs 7 days from 06-02.
    let (ok, out) = run(&["village", "advance", good, "--date", "2014-06-08", "--year", "2014"]);
    assert!(!ok && out.contains("not before 2014-06-09"), "{out}");
    let (ok, out) = run(&["village", "advance", good, "--date", "2014-06-09", "--year", "2014"]);
    assert!(ok && out.contains("乡镇公示 → 县审核"), "{out}");
    let (ok, out) = run(&["village", "advance", good, "--date", "2014-06-10", "--year", "2014"]);
    assert!(!ok && out.contains("taken by the"), "the county decides: {out}");
    // 一无 fails: collective income 30,000.
    let bad = "420322105201";
    for date in ["2014-06-01", "2014-06-02"] {
        assert!(run(&["village", "advance", bad, "--date", date, "--year", "2014"]).0);
    }
    let (ok, out) = run(&["village", "advance", bad, "--date", "2014-06-09", "--year", "2014"]);
    assert!(!ok && out.contains("not a poor village") && out.contains("一无"), "{out}");
}

/// A node whose config names one of the shipped profiles (`config/profiles/NAME`).
fn node_with_profile(name: &str) -> TestNode {
    let t = TestNode::new();
    let src = format!("{}/../config/profiles/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::copy(&src, t.config.with_file_name("profile.toml")).unwrap();
    let cfg = std::fs::read_to_string(&t.config)
        .unwrap()
        .replace("# profile = \"profile.toml\"", "profile = \"profile.toml\"");
    std::fs::write(&t.config, cfg).unwrap();
    t
}

/// Under miyun-2016 the township decides (镇级审定): an eligible household is admitted by the last
/// step, one above the line with heavy illness spending waits for the township's recorded
/// decision (酌情纳入), and the decision names its reason; under hubei-2014 the township cannot decide.
#[test]
fn where_the_township_decides_its_decision_is_recorded_with_its_reason() {
    for (profile, decides) in [("miyun-2016.toml", true), ("hubei-2014.toml", false)] {
        let t = node_with_profile(profile);
        // Household 1 under the line; household 2 at 12,000 a head with 因病支出 6,000.
        let mut rows = household_rows(VILLAGE, "0001", 2, 1);
        rows.extend(household_rows(VILLAGE, "0002", 2, 2));
        let mut w = csv::Writer::from_writer(Vec::new());
        let mut header: Vec<&str> = HEADERS.to_vec();
        header.push("因病支出");
        w.write_record(&header).unwrap();
        let per_capita = HEADERS.iter().position(|h| *h == "人均纯收入").unwrap();
        let income = HEADERS.iter().position(|h| *h == "家庭年纯收入").unwrap();
        for r in &mut rows {
            // The household columns stand on its head's row.
            let (ill, head) = (r[1] == "0002", !r[income].is_empty());
            if ill && head {
                r[per_capita] = "12000".into();
                r[income] = "24000".into();
            }
            r.push(if ill && head { "6000" } else { "" }.into());
            w.write_record(&*r).unwrap();
        }
        let p = t.path("h.csv");
        std::fs::write(&p, w.into_inner().unwrap()).unwrap();
        let mut node = t.open(clock_at("2014-07-15T09:00:00+08:00"));
        import_households(&mut node, &p, ImportOptions { year: 2014, dry_run: false, progress_over: usize::MAX })
            .unwrap();
        let flow = node.cfg.household_flow().unwrap();
        let (plain, ill) = (format!("{VILLAGE}-0001"), format!("{VILLAGE}-0002"));
        let minutes = Some("村民代表大会 2014-06-01");
        for (i, date) in ["2014-06-01", "2014-06-02", "2014-06-09", "2014-06-10"].iter().enumerate() {
            let m = if i == 0 { minutes } else { None };
            for h in [&plain, &ill] {
                let r = advance(&mut node, 2014, h, d(date), m, &flow);
                if !decides && h == &ill {
                    // Above hubei's 2,736: marked at 民主评议, it goes no further.
                    refused(r, "not eligible: income 12,000 ≥ 2,736");
                } else {
                    r.unwrap();
                }
            }
        }
        let last = advance(&mut node, 2014, &plain, d("2014-06-17"), None, &flow).unwrap();
        if !decides {
            assert_eq!(last.1, Status::CountyReview, "hubei hands in to 县复审");
            let err = jianka_node::workflow::decide(&mut node, 2014, &plain, true, "x", d("2014-06-17"), &flow);
            refused(err, "the 县 (county) decides");
            continue;
        }
        assert_eq!(last.1, Status::CountyAnnounced, "镇级审定 admits what the rules admit");
        refused(advance(&mut node, 2014, &ill, d("2014-06-17"), None, &flow), "only a recorded decision admits it");
        refused(jianka_node::workflow::decide(&mut node, 2014, &ill, true, " ", d("2014-06-17"), &flow), "reason");
        let step = jianka_node::workflow::decide(
            &mut node,
            2014,
            &ill,
            true,
            "因病支出 6,000 元, 入户核查属实",
            d("2014-06-17"),
            &flow,
        )
        .unwrap();
        assert_eq!(step, (Status::TownshipNotice, Status::CountyAnnounced));
        let rec = jianka_node::store::load(
            &node.conn,
            &jianka_shared::record::RecordKey::new(jianka_shared::RecordKind::Household, 2014, &ill),
        )
        .unwrap()
        .unwrap();
        assert_eq!(rec.get("township.decision"), Some("认定"));
        assert!(rec.get("township.reason").is_some_and(|r| r.contains("入户核查属实")));
        // Decided: not again.
        refused(jianka_node::workflow::decide(&mut node, 2014, &ill, false, "again", d("2014-06-18"), &flow), "is at");
    }
}

/// The file of `households` (numbered 0001…), two people each, under both income lines, with the
/// extra columns `extra` whose cells are `cells[household]`.
fn file_with_columns(t: &TestNode, extra: &[&str], cells: &[&[&str]]) -> std::path::PathBuf {
    let mut w = csv::Writer::from_writer(Vec::new());
    let mut header: Vec<&str> = HEADERS.to_vec();
    header.extend_from_slice(extra);
    w.write_record(&header).unwrap();
    for (i, row_cells) in cells.iter().enumerate() {
        for mut r in household_rows(VILLAGE, &format!("{:04}", i + 1), 2, i as u32 + 1) {
            r.extend(row_cells.iter().map(|c| c.to_string()));
            w.write_record(&r).unwrap();
        }
    }
    let p = t.path("h.csv");
    std::fs::write(&p, w.into_inner().unwrap()).unwrap();
    p
}

const TOWNSHIP_RULES: &str = r#"
[[township_rules]]
label = "有大型农机"
column = "是否有大型农机"
field = "machinery"

[[township_rules]]
label = "家庭存款10万元以上"
column = "家庭存款"
field = "savings"
at_least_yuan = 100000
"#;

/// Seed 003 lets each township add standards of its own (各镇可…制定…具体标准): under miyun-2016
/// the township's rules read their own columns and exclude before 民主评议, naming the rule; a bad
/// cell is refused at import, naming the column; under hubei-2014 (one standard) the same node
/// config is refused, naming the key.
#[test]
fn a_townships_own_rules_exclude_where_its_profile_allows_them() {
    let t = node_with_profile("miyun-2016.toml");
    let cfg = std::fs::read_to_string(&t.config).unwrap();
    std::fs::write(&t.config, format!("{cfg}{TOWNSHIP_RULES}")).unwrap();
    let extra = ["是否有大型农机", "家庭存款"];
    let p = file_with_columns(&t, &extra, &[&["是", ""], &["否", "150000"], &["", "5000"], &["可能", ""]]);
    let mut node = t.open(clock_at("2014-07-15T09:00:00+08:00"));
    let r = import_households(&mut node, &p, ImportOptions { year: 2014, dry_run: false, progress_over: usize::MAX })
        .unwrap();
    assert_eq!(r.households_imported, 3, "{:?}", r.errors);
    let bad = r.errors.iter().find(|e| e.column == "是否有大型农机").expect("the bad cell named");
    assert!(bad.reason.contains("\"可能\" is not 是 or 否") && bad.reason.contains("有大型农机"), "{bad}");
    let flow = node.cfg.household_flow().unwrap();
    let minutes = Some("村民代表大会 2014-06-01");
    let step = |node: &mut jianka_node::Node, no: &str| {
        advance(node, 2014, &format!("{VILLAGE}-{no}"), d("2014-06-01"), minutes, &flow)
    };
    refused(step(&mut node, "0001"), "excluded: 有大型农机 (镇定标准)");
    refused(step(&mut node, "0002"), "excluded: 家庭存款10万元以上 (镇定标准)");
    assert_eq!(step(&mut node, "0003").unwrap().1, Status::Appraised);

    // Under hubei-2014 a township adds no rules: the config is refused, naming the key.
    let t = node_with_profile("hubei-2014.toml");
    let cfg = std::fs::read_to_string(&t.config).unwrap();
    std::fs::write(&t.config, format!("{cfg}{TOWNSHIP_RULES}")).unwrap();
    let node = t.open(clock_at("2014-07-15T09:00:00+08:00"));
    let err = format!("{:#}", node.cfg.household_flow().unwrap_err());
    assert!(err.contains("township_rules") && err.contains("hubei-2014"), "{err}");
}
