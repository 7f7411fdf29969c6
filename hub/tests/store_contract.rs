//! The storage contract (`jianka_hub::store::contract`), one suite for every backend: each check
//! below runs once per backend listed in [`backends`], each time on a fresh database.
//!
//! Longer than ~600 lines on purpose: it is one suite, each check written once for every backend,
//! and one test binary (each file under `tests/` links its own).

use jianka_hub::merge::{FieldState, Fields, Text};
use jianka_hub::record::{StoredRecord, shared};
use jianka_hub::store::contract::*;
use jianka_hub::store::postgres::PgStore;
use jianka_hub::store::sqlite::SqliteStore;
use jianka_shared::{RecordKey, RecordKind, Year};
use proptest::prelude::*;
use std::sync::Arc;

struct UnderTest {
    name: &'static str,
    store: Arc<dyn Store>,
    /// Where it is: a second store opened on it plays another process.
    url: String,
    _dir: Option<tempfile::TempDir>,
}

/// Every backend under test, each on a fresh, empty database.
async fn backends() -> Vec<UnderTest> {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("hub.db").display());
    let sqlite = SqliteStore::open(&url).await.unwrap();
    let mut out = vec![UnderTest { name: "sqlite", store: Arc::new(sqlite), url, _dir: Some(dir) }];
    if let Some(url) = fresh_postgres().await {
        let store = Arc::new(PgStore::open(&url).await.unwrap());
        out.push(UnderTest { name: "postgres", store, url, _dir: None });
    }
    out
}

impl UnderTest {
    /// Closes the store and drops its database when it is PostgreSQL's (each check has its own).
    async fn finish(self) {
        self.store.close().await;
        let Some(base) = std::env::var("JIANKA_TEST_PG").ok().filter(|_| self.name == "postgres") else { return };
        let name = self.url.rsplit('/').next().unwrap_or_default().to_string();
        let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&base).await.unwrap();
        let sql = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
        sqlx::Executor::execute(&mut conn, sqlx::AssertSqlSafe(sql)).await.unwrap();
    }
}

/// A new, empty PostgreSQL database when `JIANKA_TEST_PG` is set (named uniquely across test
/// processes and runs).
async fn fresh_postgres() -> Option<String> {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let base = std::env::var("JIANKA_TEST_PG").ok().filter(|v| !v.is_empty())?;
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    let name = format!("jianka_contract_{}_{}_{nanos}", std::process::id(), N.fetch_add(1, Ordering::SeqCst));
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&base).await.unwrap();
    sqlx::Executor::execute(&mut conn, sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).await.unwrap();
    let (prefix, _) = base.rsplit_once('/').unwrap();
    Some(format!("{prefix}/{name}"))
}

/// One `#[tokio::test]` per check, running it against every backend.
macro_rules! contract {
    ($($check:ident),* $(,)?) => {
        mod contract {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $check() {
                    for b in super::backends().await {
                        eprintln!("{}: {}", stringify!($check), b.name);
                        super::$check(b.store.clone()).await;
                        b.finish().await;
                    }
                }
            )*
        }
    };
}

contract!(
    ping_and_backend,
    meta_round_trip_and_commit_visibility,
    a_dropped_transaction_leaves_nothing,
    reads_in_a_transaction_see_its_queued_writes,
    write_records_upserts_every_column,
    records_by_key_many_and_missing,
    records_after_orders_by_rev_then_key,
    records_in_is_a_live_range_in_key_order,
    live_members_by_household_and_year,
    feedback_ids_ascend_and_page,
    quota_is_created_at_zero_then_added,
    allocations_kept_once_in_order,
    conflicts_open_and_resolve,
    completed_moves_by_id_then_latest_year,
    streams_and_envelopes,
    certs_and_equivocations,
    audit_append_last_and_log,
    years_reopenings_and_signoffs,
    uploads_put_get_delete,
    quarantine_is_kept_with_the_transaction,
    a_write_error_surfaces_by_commit_and_keeps_nothing,
);

fn fields(pairs: &[(&str, &str)], version: u64, writer: &str) -> Fields {
    let mut f = Fields::new();
    for (k, v) in pairs {
        f.insert(Text::from(*k), FieldState(Text::from(*v), version, Text::from(writer)));
    }
    f
}

fn rec(kind: RecordKind, year: Year, id: &str, region: &str, hh: &str, deleted: bool) -> StoredRecord {
    StoredRecord {
        key: RecordKey { kind, year, id: id.to_string() },
        region: region.to_string(),
        hh: hh.to_string(),
        fields: fields(&[("name", "张三"), ("note", id)], 7, region),
        deleted,
    }
}

fn member(year: Year, id: &str, hh: &str, deleted: bool) -> StoredRecord {
    rec(RecordKind::Member, year, id, "513229101201", hh, deleted)
}

fn key(r: &StoredRecord) -> String {
    jianka_hub::record::storage_key(&r.key)
}

/// A comparable view of a record (StoredRecord has no `PartialEq`).
type View = (String, String, String, Fields, bool);

fn view(r: &StoredRecord) -> View {
    (key(r), r.region.clone(), r.hh.clone(), r.fields.clone(), r.deleted)
}

fn views(rows: &[StoredRecord]) -> Vec<View> {
    let mut v: Vec<View> = rows.iter().map(view).collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

async fn write(store: &Arc<dyn Store>, rows: Vec<StoredRecord>) -> i64 {
    let mut tx = store.begin().await.unwrap();
    let rev = tx.next_rev().await.unwrap();
    tx.write_records(shared(rows), rev).await.unwrap();
    tx.commit().await.unwrap();
    rev
}

fn audit_row(seq: i64, prev: &str) -> AuditRow {
    AuditRow {
        seq,
        at: 1_400_000_000 + seq,
        key_id: "k1".into(),
        action: "changeset".into(),
        subject: format!("513229#{seq}"),
        old: "{}".into(),
        new: "{\"a\":\"'引号' \\\"\"}".into(),
        prev_hash: prev.into(),
        hash: format!("h{seq}"),
    }
}

async fn ping_and_backend(store: Arc<dyn Store>) {
    store.ping().await.unwrap();
    assert!(matches!(store.backend(), Backend::Sqlite | Backend::Postgres));
}

async fn meta_round_trip_and_commit_visibility(store: Arc<dyn Store>) {
    assert_eq!(store.meta("cursor").await.unwrap(), None);
    let mut tx = store.begin().await.unwrap();
    tx.set_meta("cursor", "1").await.unwrap();
    tx.set_meta("cursor", "2").await.unwrap();
    assert_eq!(tx.meta("cursor").await.unwrap().as_deref(), Some("2"));
    assert_eq!(store.meta("cursor").await.unwrap(), None, "uncommitted writes are not visible");
    tx.commit().await.unwrap();
    assert_eq!(store.meta("cursor").await.unwrap().as_deref(), Some("2"));
}

async fn a_dropped_transaction_leaves_nothing(store: Arc<dyn Store>) {
    let mut tx = store.begin().await.unwrap();
    tx.set_meta("m", "v").await.unwrap();
    tx.write_records(shared(vec![member(2014, "A", "H1", false)]), 1).await.unwrap();
    tx.push_feedback(vec![("513229".into(), "{}".into())]).await.unwrap();
    tx.append_audit(vec![audit_row(1, "genesis")]).await.unwrap();
    tx.ensure_year(2014).await.unwrap();
    assert_eq!(tx.records(&["1/2014/A".into()]).await.unwrap().len(), 1);
    drop(tx);
    // The next transaction starts clean (and is not blocked by the dropped one).
    let mut tx = store.begin().await.unwrap();
    assert_eq!(tx.meta("m").await.unwrap(), None);
    assert!(tx.records(&["1/2014/A".into()]).await.unwrap().is_empty());
    assert_eq!(tx.last_audit().await.unwrap(), None);
    tx.commit().await.unwrap();
    assert_eq!(store.meta("m").await.unwrap(), None);
    assert!(store.feedback_after("513229", 0, 10).await.unwrap().is_empty());
    assert!(store.audit_log().await.unwrap().is_empty());
    assert!(store.years().await.unwrap().is_empty());
    assert!(store.record_years().await.unwrap().is_empty());
}

async fn reads_in_a_transaction_see_its_queued_writes(store: Arc<dyn Store>) {
    let mut tx = store.begin().await.unwrap();
    let rows: Vec<_> = (0..500).map(|i| member(2014, &format!("P{i:04}"), "H1", false)).collect();
    let keys: Vec<String> = rows.iter().map(key).collect();
    tx.write_records(shared(rows.clone()), 1).await.unwrap();
    tx.quota_add("5132", 2014, 0).await.unwrap();
    assert_eq!(views(&tx.records(&keys).await.unwrap()), views(&rows));
    assert_eq!(tx.next_rev().await.unwrap(), 2);
    assert!(store.records_after(0, "", 1000).await.unwrap().is_empty(), "the store sees committed data only");
    tx.commit().await.unwrap();
    assert_eq!(store.count_records_after(0, "").await.unwrap(), 500);
}

async fn write_records_upserts_every_column(store: Arc<dyn Store>) {
    let first = member(2014, "A", "H1", false);
    assert_eq!(write(&store, vec![first.clone()]).await, 1);
    let mut second = rec(RecordKind::Member, 2014, "A", "513229101202", "H2", true);
    second.fields = fields(&[("name", "李四"), ("other", "x")], 9, "513229");
    assert_eq!(write(&store, vec![second.clone()]).await, 2);
    let mut tx = store.begin().await.unwrap();
    let got = tx.records(&[key(&first)]).await.unwrap();
    assert_eq!(views(&got), views(&[second.clone()]));
    assert_eq!(tx.next_rev().await.unwrap(), 3);
    drop(tx);
    let after = store.records_after(0, "", 10).await.unwrap();
    assert_eq!(after.len(), 1);
    assert_eq!((after[0].rev, view(&after[0].record)), (2, view(&second)));
}

async fn records_by_key_many_and_missing(store: Arc<dyn Store>) {
    // More keys than one statement binds, so the read goes in chunks.
    let rows: Vec<_> = (0..12_003).map(|i| member(2015, &format!("{i:06}"), "H", i % 7 == 0)).collect();
    write(&store, rows.clone()).await;
    let mut keys: Vec<String> = rows.iter().map(key).collect();
    keys.push("1/2015/missing".into());
    keys.push(keys[0].clone()); // a repeated key reads once
    let mut tx = store.begin().await.unwrap();
    assert_eq!(views(&tx.records(&keys).await.unwrap()), views(&rows));
    assert!(tx.records(&[]).await.unwrap().is_empty());
    assert!(tx.records(&["no such key".into()]).await.unwrap().is_empty());
}

async fn records_after_orders_by_rev_then_key(store: Arc<dyn Store>) {
    write(&store, vec![member(2014, "C", "H", false), member(2014, "A", "H", false)]).await;
    write(&store, vec![member(2014, "B", "H", true), member(2014, "A", "H", false)]).await;
    write(&store, vec![member(2014, "D", "H", false)]).await;
    let all = store.records_after(0, "", 100).await.unwrap();
    let order: Vec<(i64, String)> = all.iter().map(|r| (r.rev, key(&r.record))).collect();
    let expect = [(1, "1/2014/C"), (2, "1/2014/A"), (2, "1/2014/B"), (3, "1/2014/D")];
    assert_eq!(order, expect.map(|(r, k)| (r, k.to_string())));
    assert!(all[2].record.deleted, "deleted records are forwarded too");
    // Paging from a (rev, k) cursor.
    let page = store.records_after(2, "1/2014/A", 1).await.unwrap();
    assert_eq!(key(&page[0].record), "1/2014/B");
    assert_eq!(store.count_records_after(2, "1/2014/A").await.unwrap(), 2);
    assert_eq!(store.count_records_after(0, "").await.unwrap(), 4);
    assert_eq!(store.count_records_after(3, "1/2014/D").await.unwrap(), 0);
    assert!(store.records_after(3, "1/2014/D", 10).await.unwrap().is_empty());
}

async fn records_in_is_a_live_range_in_key_order(store: Arc<dyn Store>) {
    let r =
        |id: &str, region: &str, year: Year, deleted: bool| rec(RecordKind::Household, year, id, region, id, deleted);
    write(
        &store,
        vec![
            r("H3", "513229101201", 2014, false),
            r("H1", "513229101202", 2014, false),
            r("H2", "513229", 2014, false),
            r("H4", "513229101203", 2014, true),
            r("H5", "513230101201", 2014, false),
            r("H6", "513229101201", 2015, false),
        ],
    )
    .await;
    let got = store.records_in(2014, "513229", "513229:").await.unwrap();
    let ids: Vec<&str> = got.iter().map(|r| r.key.id.as_str()).collect();
    assert_eq!(ids, ["H1", "H2", "H3"]);
    assert_eq!(store.record_years().await.unwrap(), vec![2014, 2015]);
}

async fn live_members_by_household_and_year(store: Arc<dyn Store>) {
    write(
        &store,
        vec![
            member(2014, "M1", "H1", false),
            member(2014, "M2", "H1", true),
            member(2014, "M3", "H2", false),
            member(2014, "M4", "H3", false),
            member(2015, "M5", "H1", false),
            rec(RecordKind::Household, 2014, "H1", "513229101201", "H1", false),
        ],
    )
    .await;
    let mut tx = store.begin().await.unwrap();
    let got = tx.live_members(2014, &["H1".into(), "H2".into(), "H9".into()]).await.unwrap();
    let mut ids: Vec<&str> = got.iter().map(|r| r.key.id.as_str()).collect();
    ids.sort();
    assert_eq!(ids, ["M1", "M3"]);
    assert!(tx.live_members(2014, &[]).await.unwrap().is_empty());
}

async fn feedback_ids_ascend_and_page(store: Arc<dyn Store>) {
    let mut tx = store.begin().await.unwrap();
    let items: Vec<(String, String)> =
        (0..10).map(|i| (if i % 2 == 0 { "A" } else { "B" }.to_string(), format!("{{\"n\":{i}}}"))).collect();
    tx.push_feedback(items[..6].to_vec()).await.unwrap();
    tx.push_feedback(items[6..].to_vec()).await.unwrap();
    tx.commit().await.unwrap();
    let a = store.feedback_after("A", 0, 100).await.unwrap();
    assert_eq!(
        a.iter().map(|x| x.1.as_str()).collect::<Vec<_>>(),
        ["{\"n\":0}", "{\"n\":2}", "{\"n\":4}", "{\"n\":6}", "{\"n\":8}"]
    );
    assert!(a.windows(2).all(|w| w[0].0 < w[1].0));
    let page1 = store.feedback_after("A", 0, 2).await.unwrap();
    let page2 = store.feedback_after("A", page1[1].0, 2).await.unwrap();
    assert_eq!([page1, page2].concat(), a[..4].to_vec());
    assert_eq!(store.feedback_after("B", 0, 100).await.unwrap().len(), 5);
    assert!(store.feedback_after("C", 0, 100).await.unwrap().is_empty());
}

async fn quota_is_created_at_zero_then_added(store: Arc<dyn Store>) {
    assert_eq!(store.quota_used("5132", 2014).await.unwrap(), None);
    let mut tx = store.begin().await.unwrap();
    assert_eq!(tx.quota_used("5132", 2014).await.unwrap(), 0);
    tx.quota_add("5132", 2014, 5).await.unwrap();
    assert_eq!(tx.quota_used("5132", 2014).await.unwrap(), 5);
    tx.quota_add("5132", 2014, -2).await.unwrap();
    assert_eq!(tx.quota_used("5132", 2014).await.unwrap(), 3);
    assert_eq!(tx.quota_used("5132", 2015).await.unwrap(), 0);
    tx.commit().await.unwrap();
    assert_eq!(store.quota_used("5132", 2014).await.unwrap(), Some(3));
    assert_eq!(store.quota_used("5132", 2015).await.unwrap(), Some(0));
    assert_eq!(store.quota_used("5133", 2014).await.unwrap(), None);
}

async fn allocations_kept_once_in_order(store: Arc<dyn Store>) {
    let row = |digest: &str, serial: u64, at: i64| AllocationRow {
        digest: digest.into(),
        region: "420322".into(),
        year: 2014,
        serial,
        chain: format!("[{serial}]"),
        at,
    };
    let mut tx = store.begin().await.unwrap();
    tx.put_allocation(row("bb", 2, 20)).await.unwrap();
    tx.put_allocation(row("aa", 1, 10)).await.unwrap();
    // The same allocation delivered again is kept once, as first kept.
    tx.put_allocation(AllocationRow { chain: "again".into(), ..row("aa", 1, 30) }).await.unwrap();
    tx.commit().await.unwrap();
    let got = store.allocations().await.unwrap();
    assert_eq!(got, vec![row("aa", 1, 10), row("bb", 2, 20)]);
    assert_eq!(got[1].serial, 2);
}

fn new_conflict(kind: &'static str, k: &str) -> NewConflict {
    NewConflict {
        kind,
        k: k.into(),
        field: "name".into(),
        current_value: "张三".into(),
        current_by: "513229101".into(),
        proposed_value: "张 三".into(),
        proposed_by: "513229102".into(),
        proposal: "{}".into(),
    }
}

async fn conflicts_open_and_resolve(store: Arc<dyn Store>) {
    let mut tx = store.begin().await.unwrap();
    tx.add_conflicts(vec![new_conflict("field", "1/2014/A"), new_conflict("move", "1/2014/B")], 100).await.unwrap();
    tx.add_conflicts(vec![new_conflict("field", "1/2014/C")], 200).await.unwrap();
    let fields = tx.open_conflicts("field").await.unwrap();
    assert_eq!(fields.iter().map(|c| c.k.as_str()).collect::<Vec<_>>(), ["1/2014/A", "1/2014/C"]);
    let first = &fields[0];
    assert_eq!((first.status.as_str(), first.resolution.as_deref(), first.at), ("open", None, 100));
    assert_eq!(first.current_value, "张三");
    tx.resolve_conflict(first.id, "kept current").await.unwrap();
    let resolved = tx.conflict(first.id).await.unwrap().unwrap();
    assert_eq!((resolved.status.as_str(), resolved.resolution.as_deref()), ("resolved", Some("kept current")));
    assert_eq!(tx.open_conflicts("field").await.unwrap().len(), 1);
    assert_eq!(tx.conflict(i64::MAX).await.unwrap(), None);
    assert!(store.conflicts(true).await.unwrap().is_empty());
    tx.commit().await.unwrap();
    let open = store.conflicts(false).await.unwrap();
    assert_eq!(open.iter().map(|c| c.k.as_str()).collect::<Vec<_>>(), ["1/2014/B", "1/2014/C"]);
    let all = store.conflicts(true).await.unwrap();
    assert_eq!(all.len(), 3);
    assert!(all.windows(2).all(|w| w[0].id < w[1].id));
    assert_eq!(all[0], resolved);
}

fn moved(id: &str, year: Year, to: &str, from_household: &str) -> CompletedMoveRow {
    CompletedMoveRow {
        id: id.into(),
        year,
        from_county: "513229".into(),
        to_county: to.into(),
        from_household: from_household.into(),
    }
}

async fn completed_moves_by_id_then_latest_year(store: Arc<dyn Store>) {
    let mut tx = store.begin().await.unwrap();
    tx.add_completed_moves(vec![moved("B", 2014, "513230", "H1"), moved("A", 2014, "513230", "H2")], 1).await.unwrap();
    tx.add_completed_moves(vec![moved("A", 2015, "513231", "H3")], 2).await.unwrap();
    // The same move again: its household is replaced.
    tx.add_completed_moves(vec![moved("A", 2014, "513230", "H9")], 3).await.unwrap();
    let got = tx.completed_moves(&["A".into(), "B".into(), "Z".into()]).await.unwrap();
    assert_eq!(
        got,
        vec![moved("A", 2015, "513231", "H3"), moved("A", 2014, "513230", "H9"), moved("B", 2014, "513230", "H1")]
    );
    assert!(tx.completed_moves(&[]).await.unwrap().is_empty());
    tx.commit().await.unwrap();
    let mut tx = store.begin().await.unwrap();
    assert_eq!(tx.completed_moves(&["B".into()]).await.unwrap(), vec![moved("B", 2014, "513230", "H1")]);
}

fn envelope(origin: &str, seq: u64, year: Year, received_at: i64) -> EnvelopeRow {
    EnvelopeRow {
        origin: origin.into(),
        seq,
        hash: format!("hash-{origin}-{seq}"),
        received_at,
        ops: 3,
        year,
        bytes: vec![0, 1, 2, 255, seq as u8],
    }
}

async fn streams_and_envelopes(store: Arc<dyn Store>) {
    assert_eq!(store.stream("513229101").await.unwrap(), None);
    let mut tx = store.begin().await.unwrap();
    assert_eq!(tx.stream("513229101").await.unwrap(), None);
    tx.record_envelope(envelope("513229101", 1, 2014, 100)).await.unwrap();
    tx.record_envelope(envelope("513229101", 2, 2015, 200)).await.unwrap();
    tx.record_envelope(envelope("513229102", 1, 2014, 150)).await.unwrap();
    let expect = StreamState { next_seq: 3, last_hash: "hash-513229101-2".into() };
    assert_eq!(tx.stream("513229101").await.unwrap(), Some(expect.clone()));
    assert_eq!(tx.envelope_hash("513229101", 1).await.unwrap().as_deref(), Some("hash-513229101-1"));
    assert_eq!(tx.envelope_hash("513229101", 3).await.unwrap(), None);
    tx.commit().await.unwrap();
    assert_eq!(store.stream("513229101").await.unwrap(), Some(expect));
    assert_eq!(store.envelopes_received("513229101", 2014, 0, 1000).await.unwrap(), 1);
    assert_eq!(store.envelopes_received("513229101", 2015, 0, 200).await.unwrap(), 0, "until is exclusive");
    assert_eq!(store.envelopes_received("513229101", 2015, 200, 201).await.unwrap(), 1, "from is inclusive");
    let kept = store.kept_envelopes().await.unwrap();
    assert_eq!(
        kept,
        vec![
            envelope("513229101", 1, 2014, 100),
            envelope("513229101", 2, 2015, 200),
            envelope("513229102", 1, 2014, 150)
        ]
    );
}

async fn certs_and_equivocations(store: Arc<dyn Store>) {
    let mut tx = store.begin().await.unwrap();
    assert_eq!(tx.cert("k1").await.unwrap(), None);
    tx.put_cert("k1", "513229102", "{\"v\":1}").await.unwrap();
    tx.put_cert("k2", "513229101", "{}").await.unwrap();
    tx.put_cert("k3", "513229101", "{}").await.unwrap();
    tx.put_cert("k4", "513229103", "{}").await.unwrap();
    tx.revoke_cert("k4", "lost laptop").await.unwrap();
    tx.set_equivocating("k1", true).await.unwrap();
    tx.record_equivocation("513229102", 7, "aa", "bb", 50).await.unwrap();
    tx.record_equivocation("513229102", 3, "cc", "dd", 40).await.unwrap();
    tx.record_equivocation("513229101", 1, "ee", "ff", 10).await.unwrap();
    // Re-enrolling replaces subject and certificate and keeps the flags.
    tx.put_cert("k1", "513229102", "{\"v\":2}").await.unwrap();
    let k1 = tx.cert("k1").await.unwrap().unwrap();
    assert_eq!(
        k1,
        CertRow {
            key_id: "k1".into(),
            subject: "513229102".into(),
            cert: "{\"v\":2}".into(),
            revoked: false,
            revoked_reason: None,
            equivocating: true,
        }
    );
    tx.commit().await.unwrap();
    let k4 = store.cert("k4").await.unwrap().unwrap();
    assert!(k4.revoked && !k4.equivocating);
    assert_eq!(k4.revoked_reason.as_deref(), Some("lost laptop"));
    assert_eq!(store.enrolled_subjects().await.unwrap(), ["513229101", "513229102"]);
    let eq = store.equivocations().await.unwrap();
    assert_eq!(eq.iter().map(|e| (e.key_id.as_str(), e.seq)).collect::<Vec<_>>(), [("k1", 3), ("k1", 7)]);
    assert_eq!((eq[0].stored_hash.as_str(), eq[0].offered_hash.as_str(), eq[0].at), ("cc", "dd", 40));
    let mut tx = store.begin().await.unwrap();
    tx.set_equivocating("k1", false).await.unwrap();
    tx.commit().await.unwrap();
    assert!(store.equivocations().await.unwrap().is_empty());
    assert!(!store.cert("k1").await.unwrap().unwrap().equivocating);
}

async fn audit_append_last_and_log(store: Arc<dyn Store>) {
    let mut tx = store.begin().await.unwrap();
    assert_eq!(tx.last_audit().await.unwrap(), None);
    tx.append_audit(vec![audit_row(1, "genesis"), audit_row(2, "h1")]).await.unwrap();
    assert_eq!(tx.last_audit().await.unwrap(), Some((2, "h2".into())));
    tx.append_audit(vec![audit_row(3, "h2")]).await.unwrap();
    tx.commit().await.unwrap();
    let log = store.audit_log().await.unwrap();
    assert_eq!(log, vec![audit_row(1, "genesis"), audit_row(2, "h1"), audit_row(3, "h2")]);
}

async fn years_reopenings_and_signoffs(store: Arc<dyn Store>) {
    let mut tx = store.begin().await.unwrap();
    tx.ensure_year(2015).await.unwrap();
    tx.set_year_state(2014, "update_window", Some("{\"snap\":1}")).await.unwrap();
    tx.ensure_year(2014).await.unwrap(); // exists: unchanged
    tx.set_year_state(2014, "locked", None).await.unwrap(); // snapshot kept
    assert_eq!(
        tx.year(2014).await.unwrap(),
        Some(YearRow { year: 2014, state: "locked".into(), snapshot: Some("{\"snap\":1}".into()) })
    );
    tx.set_year_state(2016, "open", None).await.unwrap();
    let reopen = |region: &str, until: Option<&str>| ReopeningRow {
        year: 2014,
        region: region.into(),
        reason: "补录".into(),
        at: 10,
        until_day: until.map(str::to_string),
    };
    tx.add_reopening(reopen("513229101", Some("2015-04-01"))).await.unwrap();
    tx.add_reopening(reopen("513229102", None)).await.unwrap();
    let signoff = |county: &str, year: Year, period: &str, body: &str| SignOffRow {
        county: county.into(),
        year,
        period: period.into(),
        body: body.into(),
        received_at: 5,
    };
    tx.put_signoff(signoff("513230", 2014, "Q1", "{\"v\":1}")).await.unwrap();
    tx.put_signoff(signoff("513229", 2014, "Q2", "{}")).await.unwrap();
    tx.put_signoff(signoff("513229", 2014, "Q1", "{\"v\":1}")).await.unwrap();
    tx.put_signoff(signoff("513229", 2014, "Q1", "{\"v\":2}")).await.unwrap(); // replaces
    tx.commit().await.unwrap();
    let years = store.years().await.unwrap();
    assert_eq!(
        years.iter().map(|y| (y.year, y.state.as_str())).collect::<Vec<_>>(),
        [(2014, "locked"), (2015, "open"), (2016, "open")]
    );
    assert_eq!(store.year(2015).await.unwrap(), Some(YearRow { year: 2015, state: "open".into(), snapshot: None }));
    assert_eq!(store.year(2013).await.unwrap(), None);
    assert_eq!(
        store.reopenings(2014).await.unwrap(),
        vec![reopen("513229101", Some("2015-04-01")), reopen("513229102", None)]
    );
    assert!(store.reopenings(2015).await.unwrap().is_empty());
    let all = store.signoffs().await.unwrap();
    assert_eq!(
        all,
        vec![
            signoff("513229", 2014, "Q1", "{\"v\":2}"),
            signoff("513229", 2014, "Q2", "{}"),
            signoff("513230", 2014, "Q1", "{\"v\":1}")
        ]
    );
    assert_eq!(store.signoffs_of("513229").await.unwrap(), all[..2].to_vec());
    assert!(store.signoffs_of("513299").await.unwrap().is_empty());
}

async fn uploads_put_get_delete(store: Arc<dyn Store>) {
    assert_eq!(store.upload("513229101", 4).await.unwrap(), None);
    store.put_upload("513229101", 4, 10, &[1, 2, 3]).await.unwrap();
    assert_eq!(store.upload("513229101", 4).await.unwrap(), Some((10, vec![1, 2, 3])));
    store.put_upload("513229101", 4, 10, &[1, 2, 3, 4, 5]).await.unwrap();
    assert_eq!(store.upload("513229101", 4).await.unwrap(), Some((10, vec![1, 2, 3, 4, 5])));
    assert_eq!(store.upload("513229101", 5).await.unwrap(), None);
    store.delete_upload("513229101", 4).await.unwrap();
    assert_eq!(store.upload("513229101", 4).await.unwrap(), None);
    store.delete_upload("513229101", 4).await.unwrap();
}

async fn quarantine_is_kept_with_the_transaction(store: Arc<dyn Store>) {
    let mut tx = store.begin().await.unwrap();
    let row = QuarantineRow {
        origin: "513229101".into(),
        seq: 1,
        k: "1/2014/A".into(),
        reason: "\"not_authorised\"".into(),
        message: "不是你的".into(),
        payload: "{}".into(),
        at: 9,
    };
    tx.quarantine(vec![row.clone(), row]).await.unwrap();
    tx.commit().await.unwrap();
}

async fn a_write_error_surfaces_by_commit_and_keeps_nothing(store: Arc<dyn Store>) {
    let mut tx = store.begin().await.unwrap();
    tx.append_audit(vec![audit_row(1, "genesis")]).await.unwrap();
    tx.commit().await.unwrap();
    let mut tx = store.begin().await.unwrap();
    tx.set_meta("m", "v").await.unwrap();
    tx.write_records(shared(vec![member(2014, "A", "H", false)]), 1).await.unwrap();
    // seq 1 exists: the write fails, now or at the latest by commit.
    let failed = tx.append_audit(vec![audit_row(2, "h1"), audit_row(1, "genesis")]).await.is_err();
    let failed = failed || tx.push_feedback(vec![("A".into(), "{}".into())]).await.is_err();
    let failed = failed || tx.commit().await.is_err();
    assert!(failed, "a duplicate audit seq must fail the transaction");
    assert_eq!(store.meta("m").await.unwrap(), None);
    assert!(store.records_after(0, "", 10).await.unwrap().is_empty());
    assert!(store.feedback_after("A", 0, 10).await.unwrap().is_empty());
    assert_eq!(store.audit_log().await.unwrap(), vec![audit_row(1, "genesis")]);
    // The store goes on.
    let mut tx = store.begin().await.unwrap();
    tx.set_meta("m", "w").await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(store.meta("m").await.unwrap().as_deref(), Some("w"));
}

/// Odd text: quotes, backslashes, control characters, Chinese. No NUL: PostgreSQL text refuses it.
fn odd_text() -> impl Strategy<Value = String> {
    let ch = prop_oneof![
        any::<char>().prop_filter("no NUL", |c| *c != '\0'),
        Just('"'),
        Just('\\'),
        Just('\''),
        Just('\n'),
        Just('\u{1}'),
        Just('\u{1f}'),
        Just('\u{7f}'),
        Just('中'),
        Just('贫'),
    ];
    prop::collection::vec(ch, 0..12).prop_map(String::from_iter)
}

fn any_record() -> impl Strategy<Value = StoredRecord> {
    let kind = prop_oneof![Just(RecordKind::Household), Just(RecordKind::Member), Just(RecordKind::Village)];
    let field = (odd_text(), odd_text(), any::<u64>(), odd_text());
    (kind, 2000u16..2100, odd_text(), odd_text(), odd_text(), prop::collection::vec(field, 0..6), any::<bool>())
        .prop_map(|(kind, year, id, region, hh, fs, deleted)| {
            let mut fields = Fields::new();
            for (name, value, version, writer) in fs {
                fields.insert(Text::from(name), FieldState(Text::from(value), version, Text::from(writer)));
            }
            StoredRecord { key: RecordKey { kind, year, id }, region, hh, fields, deleted }
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn any_records_written_and_committed_read_back_equal(rows in prop::collection::vec(any_record(), 0..40)) {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        rt.block_on(async move {
            // The last write of a key wins.
            let mut expect = std::collections::BTreeMap::new();
            for r in &rows {
                expect.insert(key(r), view(r));
            }
            let expect: Vec<View> = expect.into_values().collect();
            for b in backends().await {
                write(&b.store, rows.clone()).await;
                let keys: Vec<String> = rows.iter().map(key).collect();
                let mut tx = b.store.begin().await.unwrap();
                assert_eq!(views(&tx.records(&keys).await.unwrap()), expect, "{}", b.name);
                drop(tx);
                let after: Vec<StoredRecord> =
                    b.store.records_after(0, "", 1000).await.unwrap().into_iter().map(|r| r.record).collect();
                assert_eq!(views(&after), expect, "{}", b.name);
                b.finish().await;
            }
        });
    }
}

/// A member record whose one field says which write made it.
fn version_of(id: &str, made_by: usize) -> StoredRecord {
    let mut r = member(2014, id, "h1", false);
    r.fields = fields(&[("made_by", &made_by.to_string())], 7, "513229101");
    r
}

/// Each store keeps the keys it knows to be stored and looks up only those: keys another process
/// stored since, and keys stored at a revision a rolled-back transaction had taken, are found.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lookups_find_what_another_process_stored() {
    for b in backends().await {
        let (ours, other) = (b.store.clone(), jianka_hub::store::open(&b.url).await.unwrap());
        let k = |id: &str| key(&member(2014, id, "h1", false));
        let mut tx = ours.begin().await.unwrap();
        assert!(tx.records(&[k("m1")]).await.unwrap().is_empty(), "{}", b.name);
        let rev = tx.next_rev().await.unwrap();
        tx.write_records(shared(vec![version_of("m1", 1)]), rev).await.unwrap();
        tx.commit().await.unwrap();
        write(&other, vec![version_of("m2", 2), version_of("m1", 2)]).await;
        let mut tx = ours.begin().await.unwrap();
        let found = tx.records(&[k("m1"), k("m2"), k("m3")]).await.unwrap();
        assert_eq!(views(&found), views(&[version_of("m1", 2), version_of("m2", 2)]), "{}", b.name);
        drop(tx);
        // Rolled back: its revision is free again, and the other store's next write takes it.
        let mut tx = ours.begin().await.unwrap();
        assert!(tx.records(&[k("m4")]).await.unwrap().is_empty(), "{}", b.name);
        let taken = tx.next_rev().await.unwrap();
        tx.write_records(shared(vec![version_of("m4", 3)]), taken).await.unwrap();
        drop(tx);
        assert_eq!(write(&other, vec![version_of("m5", 4)]).await, taken, "{}", b.name);
        let mut tx = ours.begin().await.unwrap();
        let found = tx.records(&[k("m4"), k("m5")]).await.unwrap();
        assert_eq!(views(&found), views(&[version_of("m5", 4)]), "{}", b.name);
        drop(tx);
        other.close().await;
        b.finish().await;
    }
}

/// A write transaction of another process waits for ours at most `WRITE_WAIT`, then fails as
/// busy (which the hub answers 503, retry later) having written nothing; ours commits, and the
/// other's next try goes through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_writer_waits_then_is_told_busy() {
    use jianka_hub::store::WRITE_WAIT;
    for b in backends().await {
        let (ours, other) = (b.store.clone(), jianka_hub::store::open(&b.url).await.unwrap());
        let mut tx = ours.begin().await.unwrap();
        tx.set_meta("held", "1").await.unwrap();
        let started = std::time::Instant::now();
        let busy = other.begin().await.err();
        let waited = started.elapsed();
        assert!(matches!(busy, Some(StoreError::Busy(_))), "{}: {busy:?}", b.name);
        assert!(waited >= WRITE_WAIT.mul_f32(0.9) && waited < WRITE_WAIT * 3, "{}: waited {waited:?}", b.name);
        tx.commit().await.unwrap();
        let mut tx = other.begin().await.unwrap();
        assert_eq!(tx.meta("held").await.unwrap().as_deref(), Some("1"), "{}", b.name);
        tx.set_meta("after", "2").await.unwrap();
        tx.commit().await.unwrap();
        assert_eq!(ours.meta("after").await.unwrap().as_deref(), Some("2"), "{}", b.name);
        other.close().await;
        b.finish().await;
    }
}

/// One step of two processes sharing a database: a write transaction (committed or rolled back,
/// reading its keys first or not) or a lookup, by either.
#[derive(Debug, Clone)]
enum Step {
    Write { other: bool, ids: Vec<u8>, read_first: bool, read_after: bool, commit: bool },
    Look { other: bool, ids: Vec<u8> },
}

fn any_step() -> impl Strategy<Value = Step> {
    let ids = prop::collection::vec(0u8..8, 1..4);
    prop_oneof![
        (any::<bool>(), ids.clone(), any::<bool>(), any::<bool>(), prop::bool::weighted(0.7)).prop_map(
            |(other, ids, read_first, read_after, commit)| Step::Write { other, ids, read_first, read_after, commit }
        ),
        (any::<bool>(), ids).prop_map(|(other, ids)| Step::Look { other, ids }),
    ]
}

/// Runs `steps` on every backend, two stores (processes) on each database, checking every
/// lookup against what was committed.
async fn two_processes(steps: &[Step]) {
    for b in backends().await {
        let stores = [b.store.clone(), jianka_hub::store::open(&b.url).await.unwrap()];
        let mut committed: std::collections::BTreeMap<String, View> = Default::default();
        let key_of = |i: &u8| key(&member(2014, &format!("p{i}"), "h1", false));
        for (n, step) in steps.iter().enumerate() {
            match step {
                Step::Write { other, ids, read_first, read_after, commit } => {
                    let rows: Vec<StoredRecord> = ids.iter().map(|i| version_of(&format!("p{i}"), n)).collect();
                    let mut tx = stores[usize::from(*other)].begin().await.unwrap();
                    if *read_first {
                        tx.records(&ids.iter().map(key_of).collect::<Vec<_>>()).await.unwrap();
                    }
                    let rev = tx.next_rev().await.unwrap();
                    tx.write_records(shared(rows.clone()), rev).await.unwrap();
                    if *read_after {
                        // Its own writes, and what is committed of the rest.
                        let keys: Vec<String> = (0..8).map(|i| key_of(&i)).collect();
                        let mut want = committed.clone();
                        want.extend(rows.iter().map(|r| (key(r), view(r))));
                        let found = views(&tx.records(&keys).await.unwrap());
                        assert_eq!(found, want.into_values().collect::<Vec<_>>(), "{} in step {n}", b.name);
                    }
                    if *commit {
                        tx.commit().await.unwrap();
                        committed.extend(rows.iter().map(|r| (key(r), view(r))));
                    }
                }
                Step::Look { other, ids } => {
                    let keys: Vec<String> = ids.iter().map(key_of).collect();
                    let mut tx = stores[usize::from(*other)].begin().await.unwrap();
                    let found = views(&tx.records(&keys).await.unwrap());
                    let want: Vec<View> =
                        committed.iter().filter(|(k, _)| keys.contains(k)).map(|(_, v)| v.clone()).collect();
                    assert_eq!(found, want, "{} after step {n} of {steps:?}", b.name);
                }
            }
        }
        stores[1].close().await;
        b.finish().await;
    }
}

/// The other process writes, then this one writes without having looked anything up: its
/// commit must not claim the other's revision as read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_does_not_skip_another_process_revision() {
    two_processes(&[
        Step::Write { other: true, ids: vec![2], read_first: false, read_after: false, commit: true },
        Step::Write { other: false, ids: vec![3], read_first: false, read_after: false, commit: true },
        Step::Look { other: false, ids: vec![2, 3] },
    ])
    .await;
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Whatever two processes write, commit or roll back, in any order, a lookup by either finds
    /// exactly the committed version of each key asked for: skipping keys not stored never
    /// skips one that is.
    #[test]
    fn lookups_equal_what_is_committed(steps in prop::collection::vec(any_step(), 1..20)) {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        rt.block_on(two_processes(&steps));
    }
}
