//! Writing records through the PostgreSQL store (`WriteTx::write_records` + commit) beside a
//! `COPY records FROM STDIN` of the same rows, alternately, on a fresh database that is dropped
//! at the end. Prints the median of each and the ratio copy/store (1.0: the store is as fast as
//! PostgreSQL's bulk load).
//!
//! ```text
//! cargo run --release -p jianka-hub --example store_bench_pg -- postgres://USER@HOST/DB [records] [repeats]
//! ```

mod common {
    pub mod pg_copy;
}

use common::pg_copy::{RecordRow, copy_records};
use jianka_hub::merge::{FieldState, Fields, Text};
use jianka_hub::record::{StoredRecord, fields_json, shared, storage_key};
use jianka_hub::store::contract::{Store, StoreError};
use jianka_hub::store::postgres::PgStore;
use jianka_shared::{RecordKey, RecordKind};
use std::time::{Duration, Instant};

const SURNAMES: &[&str] = &["王", "李", "张", "刘", "陈", "杨", "黄", "赵", "吴", "周"];
const GIVEN: &[&str] = &["建国", "志强", "秀英", "桂兰", "国华", "玉梅", "大山", "春花"];

/// A member row as a township sends it: 13 fields, Chinese names, HLC versions.
fn member(i: usize, year: u16) -> StoredRecord {
    let village = format!("420322{:03}{:03}", 100 + i % 12, 1 + (i / 12) % 20);
    let hh = format!("{village}-{:04}", i / 4);
    let id = format!("420322{:04}{:08}", 1950 + i % 60, i);
    let version = 0x0001_8f00_0000_0000u64 + (i as u64) * 17;
    let writer = Text::from(&village[..9]);
    let f = |name: &str, value: String| (Text::from(name), FieldState(value.into(), version, writer.clone()));
    let fields: Fields = [
        f("name", format!("{}{}", SURNAMES[i % SURNAMES.len()], GIVEN[i % GIVEN.len()])),
        f("relation", if i.is_multiple_of(4) { "Head" } else { "Child" }.into()),
        f("sex", if i.is_multiple_of(2) { "Male" } else { "Female" }.into()),
        f("education", "PrimarySchool".into()),
        f("schooling", String::new()),
        f("health", "Healthy".into()),
        f("labour", "Ordinary".into()),
        f("migrant_work", if i.is_multiple_of(3) { "OutsideProvince" } else { "" }.into()),
        f("medical_insurance", "是".into()),
        f("pension_insurance", "否".into()),
        f("household", hh.clone()),
        f("village", village.clone()),
        f("status", "CountyAnnounced".into()),
    ]
    .into_iter()
    .collect();
    StoredRecord { key: RecordKey::new(RecordKind::Member, year, id), region: village, hh, fields, deleted: false }
}

async fn by_store(store: &PgStore, records: Vec<StoredRecord>) -> Result<Duration, StoreError> {
    let start = Instant::now();
    let mut tx = store.begin().await?;
    tx.write_records(shared(records), 1).await?;
    tx.commit().await?;
    Ok(start.elapsed())
}

async fn by_copy(store: &PgStore, records: &[StoredRecord]) -> Result<Duration, sqlx::Error> {
    let start = Instant::now();
    let rows: Vec<RecordRow> = records
        .iter()
        .map(|r| {
            let (key, fields) = (storage_key(&r.key), fields_json(&r.fields));
            let (kind, year) = (i64::from(r.key.kind.to_u8()), i64::from(r.key.year));
            (key, kind, year, r.key.id.clone(), r.region.clone(), r.hh.clone(), fields, i64::from(r.deleted), 1)
        })
        .collect();
    let mut conn = store.pool().acquire().await?;
    copy_records(&mut conn, "records", &rows).await?;
    Ok(start.elapsed())
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

async fn admin(base: &str, sql: String) -> anyhow::Result<()> {
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(base).await?;
    sqlx::Executor::execute(&mut conn, sqlx::AssertSqlSafe(sql)).await?;
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let base = args
        .next()
        .ok_or_else(|| anyhow::anyhow!("usage: store_bench_pg postgres://USER@HOST/DB [records] [repeats]"))?;
    let n: usize = args.next().map(|s| s.parse()).transpose()?.unwrap_or(30_000);
    let repeats: usize = args.next().map(|s| s.parse()).transpose()?.unwrap_or(5).max(1);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_nanos();
    let name = format!("jianka_store_bench_{}_{nanos}", std::process::id());
    admin(&base, format!("CREATE DATABASE {name}")).await?;
    let (prefix, _) = base.rsplit_once('/').ok_or_else(|| anyhow::anyhow!("the URL names no database"))?;
    let outcome = run(&format!("{prefix}/{name}"), n, repeats).await;
    admin(&base, format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).await?;
    outcome
}

async fn run(url: &str, n: usize, repeats: usize) -> anyhow::Result<()> {
    let store = PgStore::open(url).await?;
    let records: Vec<StoredRecord> = (0..n).map(|i| member(i, 2014)).collect();
    let bytes: usize = records.iter().map(|r| fields_json(&r.fields).len()).sum();
    println!(
        "{n} member records, {} fields each, {} bytes of fields JSON on average",
        records.first().map_or(0, |r| r.fields.len()),
        bytes / n.max(1)
    );
    let (mut store_t, mut copy_t) = (Vec::new(), Vec::new());
    for i in 0..repeats {
        sqlx::query("TRUNCATE records").execute(store.pool()).await?;
        let s = by_store(&store, records.clone()).await?;
        sqlx::query("TRUNCATE records").execute(store.pool()).await?;
        let c = by_copy(&store, &records).await?;
        println!("run {}: store {:>7.1} ms   copy {:>7.1} ms", i + 1, s.as_secs_f64() * 1e3, c.as_secs_f64() * 1e3);
        store_t.push(s);
        copy_t.push(c);
    }
    let (s, c) = (median(store_t), median(copy_t));
    println!(
        "median: store {:.1} ms ({:.0} records/s), copy {:.1} ms ({:.0} records/s), copy/store {:.2}",
        s.as_secs_f64() * 1e3,
        n as f64 / s.as_secs_f64(),
        c.as_secs_f64() * 1e3,
        n as f64 / c.as_secs_f64(),
        c.as_secs_f64() / s.as_secs_f64()
    );
    store.close().await;
    Ok(())
}
