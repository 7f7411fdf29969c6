//! What only the PostgreSQL store has to show, against a real server (every method of the
//! contract is checked on both backends by `store_contract.rs`): migrations run once, reads
//! outside a transaction do not see it, a second write transaction waits for the first (the
//! writer's advisory lock, the quota row behind it),
//! text PostgreSQL cannot hold (NUL) is refused cleanly, and rows inserted by `COPY` round-trip
//! and survive a key stored meanwhile by another connection. Each test on a fresh database dropped at
//! its end; skipped (with a note) unless `JIANKA_TEST_PG` names a server, e.g.
//! `postgres://postgres@127.0.0.1:5432/test`.

use jianka_hub::merge::{FieldState, Fields, Text};
use jianka_hub::record::{StoredRecord, shared, storage_key};
use jianka_hub::store::contract::*;
use jianka_hub::store::postgres::PgStore;
use jianka_shared::{RecordKey, RecordKind};
use std::future::Future;
use std::time::Duration;

fn base_url() -> Option<String> {
    match std::env::var("JIANKA_TEST_PG") {
        Ok(v) if !v.is_empty() => Some(v),
        _ => {
            eprintln!("JIANKA_TEST_PG is not set: skipping the PostgreSQL store tests");
            None
        }
    }
}

/// A database name unique across test processes running at once and across runs.
fn fresh_name() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    format!("jianka_store_{}_{}_{nanos}", std::process::id(), N.fetch_add(1, Ordering::SeqCst))
}

async fn admin_sql(base: &str, sql: String) {
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(base).await.expect("connect to JIANKA_TEST_PG");
    sqlx::Executor::execute(&mut conn, sqlx::AssertSqlSafe(sql)).await.expect("admin statement");
}

/// A fresh database on the server: its URL and name.
async fn create_db(base: &str) -> (String, String) {
    let name = fresh_name();
    admin_sql(base, format!("CREATE DATABASE {name}")).await;
    let (prefix, _) = base.rsplit_once('/').expect("JIANKA_TEST_PG ends in /DATABASE");
    (format!("{prefix}/{name}"), name)
}

/// Runs `test` on a store over a fresh database, then drops the database (also when it fails).
async fn with_store<F, Fut>(test: F)
where
    F: FnOnce(PgStore) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let Some(base) = base_url() else { return };
    let (url, name) = create_db(&base).await;
    let store = PgStore::open(&url).await.expect("open");
    let outcome = tokio::spawn(test(store.clone())).await;
    store.close().await;
    admin_sql(&base, format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).await;
    if let Err(e) = outcome {
        std::panic::resume_unwind(e.into_panic());
    }
}

fn fields(pairs: &[(&str, &str)]) -> Fields {
    pairs.iter().map(|(n, v)| (Text::from(*n), FieldState(Text::from(*v), 7, Text::from("420322101")))).collect()
}

fn rec(kind: RecordKind, year: u16, id: &str, region: &str, hh: &str, deleted: bool) -> StoredRecord {
    StoredRecord {
        key: RecordKey::new(kind, year, id),
        region: region.into(),
        hh: hh.into(),
        fields: fields(&[("name", id), ("status", "Applied")]),
        deleted,
    }
}

fn member(id: &str, hh: &str) -> StoredRecord {
    rec(RecordKind::Member, 2014, id, "420322101001", hh, false)
}

/// What a record is, for comparisons (`StoredRecord` has no `PartialEq`).
fn view(r: &StoredRecord) -> (String, String, String, Fields, bool) {
    (storage_key(&r.key), r.region.clone(), r.hh.clone(), r.fields.clone(), r.deleted)
}

fn keys(rs: &[StoredRecord]) -> Vec<String> {
    rs.iter().map(|r| storage_key(&r.key)).collect()
}

async fn write(store: &PgStore, records: Vec<StoredRecord>) -> i64 {
    let mut tx = store.begin().await.unwrap();
    let rev = tx.next_rev().await.unwrap();
    tx.write_records(shared(records), rev).await.unwrap();
    tx.commit().await.unwrap();
    rev
}

#[tokio::test]
async fn open_migrates_once_and_pings() {
    let Some(base) = base_url() else { return };
    assert!(matches!(PgStore::open("mysql://x/y").await, Err(StoreError::BadUrl(_))));
    let (url, name) = create_db(&base).await;
    let store = PgStore::open(&url).await.unwrap();
    assert_eq!(store.backend(), Backend::Postgres);
    store.ping().await.unwrap();
    let applied: Vec<(i64, String)> =
        sqlx::query_as("SELECT version, description FROM _sqlx_migrations ORDER BY version")
            .fetch_all(store.pool())
            .await
            .unwrap();
    let expect = [
        (1, "initial"),
        (2, "cycle_fixes"),
        (3, "completed_moves"),
        (4, "envelope_bytes"),
        (5, "allocations"),
        (6, "byte_order_keys"),
    ];
    assert_eq!(applied, expect.map(|(v, d)| (v, d.to_string())));
    // The key columns compare byte by byte, as on SQLite, whatever the database's locale.
    let collations: Vec<(String, Option<String>)> = sqlx::query_as(
        "SELECT column_name::text, collation_name::text FROM information_schema.columns \
         WHERE table_name = 'records' AND column_name IN ('k', 'id', 'region', 'hh') ORDER BY column_name",
    )
    .fetch_all(store.pool())
    .await
    .unwrap();
    assert_eq!(collations.len(), 4, "{collations:?}");
    assert!(collations.iter().all(|(_, c)| c.as_deref() == Some("C")), "{collations:?}");
    store.close().await;
    // A database migrated before opens unchanged.
    let again = PgStore::open(&url).await.unwrap();
    again.ping().await.unwrap();
    again.close().await;
    admin_sql(&base, format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).await;
}

#[tokio::test]
async fn store_reads_do_not_see_an_open_transaction() {
    with_store(|s| async move {
        let mut tx = s.begin().await.unwrap();
        tx.write_records(shared(vec![member("m1", "h1")]), 1).await.unwrap();
        tx.ensure_year(2014).await.unwrap();
        tx.put_cert("k1", "420322101", "{}").await.unwrap();
        assert_eq!(keys(&tx.records(&["1/2014/m1".into()]).await.unwrap()), ["1/2014/m1"]);
        assert!(tx.year(2014).await.unwrap().is_some());
        assert!(s.records_in(2014, "42", "42:").await.unwrap().is_empty());
        assert_eq!(s.count_records_after(0, "").await.unwrap(), 0);
        assert!(s.year(2014).await.unwrap().is_none());
        assert!(s.enrolled_subjects().await.unwrap().is_empty());
        tx.commit().await.unwrap();
        assert_eq!(s.count_records_after(0, "").await.unwrap(), 1);
        assert_eq!(s.enrolled_subjects().await.unwrap(), ["420322101"]);
    })
    .await;
}

#[tokio::test]
async fn a_second_write_transaction_waits_for_the_first() {
    with_store(|s| async move {
        let mut first = s.begin().await.unwrap();
        assert_eq!(first.quota_used("420322", 2014).await.unwrap(), 0);
        first.quota_add("420322", 2014, 5).await.unwrap();
        let other = s.clone();
        let second = tokio::spawn(async move {
            let mut tx = other.begin().await.unwrap();
            let used = tx.quota_used("420322", 2014).await.unwrap();
            tx.quota_add("420322", 2014, 1).await.unwrap();
            tx.commit().await.unwrap();
            used
        });
        let mut second = std::pin::pin!(second);
        assert!(
            tokio::time::timeout(Duration::from_millis(500), &mut second).await.is_err(),
            "the second transaction read the quota row while the first held it"
        );
        first.commit().await.unwrap();
        let used = tokio::time::timeout(Duration::from_secs(10), second).await.expect("unblocked").unwrap();
        assert_eq!(used, 5, "the second transaction counts from what the first committed");
        assert_eq!(s.quota_used("420322", 2014).await.unwrap(), Some(6));
    })
    .await;
}

/// NUL: PostgreSQL TEXT refuses it. Field values are stored as JSON, where it is `\u0000`, so
/// they round-trip; in a key or another text column the write fails and keeps nothing.
#[tokio::test]
async fn nul_in_fields_round_trips_nul_in_a_key_fails_the_write() {
    with_store(|s| async move {
        let mut r = member("m1", "h1");
        r.fields = fields(&[("name", "a\0b")]);
        write(&s, vec![r.clone()]).await;
        let back = s.records_in(2014, "42", "42:").await.unwrap();
        assert_eq!(back.iter().map(view).collect::<Vec<_>>(), vec![view(&r)]);

        let mut tx = s.begin().await.unwrap();
        // The write runs behind the caller: its failure comes back by the commit at the latest.
        let queued = tx.write_records(shared(vec![member("m2", "h1"), member("m\0", "h1")]), 2).await;
        assert!(queued.is_ok(), "{queued:?}");
        let bad = tx.commit().await;
        assert!(matches!(&bad, Err(StoreError::Db(m)) if m.contains("0x00")), "{bad:?}");
        assert_eq!(s.count_records_after(0, "").await.unwrap(), 1);
    })
    .await;
}

/// Reads `records` first (absent, so the store inserts them by `COPY`), then writes them.
async fn read_then_write(store: &PgStore, records: Vec<StoredRecord>) {
    let mut tx = store.begin().await.unwrap();
    assert!(tx.records(&keys(&records)).await.unwrap().is_empty(), "these keys are new");
    let rev = tx.next_rev().await.unwrap();
    tx.write_records(shared(records), rev).await.unwrap();
    tx.commit().await.unwrap();
}

/// A key this transaction read as absent but another connection stored before the write: the
/// `COPY` fails on it, is undone to its savepoint, and the rows are upserted — the transaction's
/// version stands, the other fresh rows land, and the transaction goes on.
#[tokio::test]
async fn a_key_stored_elsewhere_after_the_read_is_upserted_not_lost() {
    with_store(|s| async move {
        let mut tx = s.begin().await.unwrap();
        let wanted = ["1/2014/m1".to_string(), "1/2014/m2".to_string()];
        assert!(tx.records(&wanted).await.unwrap().is_empty());
        // Another writer outside the hub's lock (the hub's own write transactions wait for this one).
        sqlx::query(
            "INSERT INTO records (k, kind, year, id, region, hh, fields, deleted, rev) \
             VALUES ('1/2014/m1', 1, 2014, 'm1', '420322101009', 'other', '{}', 0, 1)",
        )
        .execute(s.pool())
        .await
        .unwrap();
        let mut ours = member("m1", "h1");
        ours.fields = fields(&[("name", "ours")]);
        tx.write_records(shared(vec![ours.clone(), member("m2", "h1")]), 5).await.unwrap();
        // Still usable: a read after the failed COPY sees both rows.
        assert_eq!(keys(&tx.records(&wanted).await.unwrap()).len(), 2);
        tx.write_records(shared(vec![member("m3", "h1")]), 5).await.unwrap();
        tx.commit().await.unwrap();
        let back = s.records_in(2014, "42", "42:").await.unwrap();
        let mut want = vec![view(&ours), view(&member("m2", "h1")), view(&member("m3", "h1"))];
        want.sort_by(|a, b| a.0.cmp(&b.0));
        let mut got: Vec<_> = back.iter().map(view).collect();
        got.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(got, want);
    })
    .await;
}

/// Each `COPY` runs in a savepoint and PostgreSQL caches 64 subtransactions per transaction, so
/// the store stops copying after a budget; the rows past it are upserted and all of them land,
/// each at the revision it was written with.
#[tokio::test]
async fn fresh_writes_past_the_copy_budget_all_land_at_their_revisions() {
    with_store(|s| async move {
        let mut tx = s.begin().await.unwrap();
        let batches: Vec<Vec<StoredRecord>> =
            (0..80).map(|b| (0..3).map(|i| member(&format!("b{b:02}m{i}"), &format!("h{b}"))).collect()).collect();
        for (b, batch) in batches.iter().enumerate() {
            assert!(tx.records(&keys(batch)).await.unwrap().is_empty());
            tx.write_records(shared(batch.clone()), b as i64 + 1).await.unwrap();
        }
        tx.commit().await.unwrap();
        let stored = s.records_after(0, "", 1_000).await.unwrap();
        assert_eq!(stored.len(), 240);
        for r in &stored {
            let b: i64 = r.record.key.id[1..3].parse().unwrap();
            assert_eq!(r.rev, b + 1, "{}", r.record.key.id);
        }
    })
    .await;
}

#[test]
fn records_with_odd_text_round_trip() {
    use proptest::prelude::*;
    let Some(base) = base_url() else { return };
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let (url, name) = rt.block_on(create_db(&base));
    let store = rt.block_on(PgStore::open(&url)).unwrap();
    // Quotes, backslashes, control characters (not NUL), Chinese, emoji; in ids and fields.
    let text = "[\"'\\\\\u{1}-\u{1f}\u{7f}a-z中文贫困户🙂 ]{0,12}";
    let strategy = proptest::collection::vec(
        (
            "[a-z0-9\"'中-]{1,10}",
            text,
            text,
            proptest::collection::btree_map("[a-z_.]{1,8}", (text, any::<u64>()), 0..12),
        ),
        1..8,
    );
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig::with_cases(48));
    let cases = std::sync::atomic::AtomicUsize::new(0);
    let result = runner.run(&strategy, |rows| {
        // Keys new in every case, so the first write of each is a COPY.
        let case = cases.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        rt.block_on(async {
            let records: Vec<StoredRecord> = rows
                .iter()
                .enumerate()
                .map(|(i, (id, region, hh, f))| StoredRecord {
                    key: RecordKey::new(RecordKind::Member, 2014, format!("{case}.{i}{id}")),
                    region: region.clone(),
                    hh: hh.clone(),
                    fields: f
                        .iter()
                        .map(|(n, (v, ver))| (Text::from(n.as_str()), FieldState(v.as_str().into(), *ver, "中".into())))
                        .collect(),
                    deleted: !i.is_multiple_of(2),
                })
                .collect();
            // Inserted by COPY (read as absent first), then replaced by an upsert.
            read_then_write(&store, records.clone()).await;
            let mut want: Vec<_> = records.iter().map(view).collect();
            want.sort_by(|a, b| a.0.cmp(&b.0));
            for round in 0..2 {
                let mut tx = store.begin().await.unwrap();
                let back = tx.records(&keys(&records)).await.unwrap();
                drop(tx);
                let mut back: Vec<_> = back.iter().map(view).collect();
                back.sort_by(|a, b| a.0.cmp(&b.0));
                prop_assert_eq!(&back, &want, "round {}", round);
                let changed: Vec<StoredRecord> = records
                    .iter()
                    .map(|r| StoredRecord { hh: format!("{}\t\\\n", r.region), deleted: !r.deleted, ..r.clone() })
                    .collect();
                write(&store, changed.clone()).await;
                want = changed.iter().map(view).collect();
                want.sort_by(|a, b| a.0.cmp(&b.0));
            }
            Ok(())
        })
    });
    rt.block_on(store.close());
    rt.block_on(admin_sql(&base, format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")));
    if let Err(e) = result {
        panic!("{e}");
    }
}
