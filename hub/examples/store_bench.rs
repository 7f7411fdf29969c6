//! SQLite store write benchmark.
//!
//!   cargo run --release -p jianka-hub --example store_bench -- [--members N] [--repeat R]
//!
//! N member-like records (12 fields each, as a township's 扶贫手册 import makes them) written
//! through `WriteTx::write_records` + commit on a fresh SQLite store, beside baseline A: the same
//! rows (fields already encoded) with one prepared rusqlite INSERT in one transaction, into the
//! same schema with the same settings, on a fresh file. R runs (default 5), alternating; medians.

use jianka_hub::merge::{FieldState, Fields, Text};
use jianka_hub::record::{StoredRecord, fields_json, shared, storage_key};
use jianka_hub::store::contract::Store;
use jianka_hub::store::sqlite::SqliteStore;
use jianka_shared::{RecordKey, RecordKind};
use std::time::Instant;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)?.parse().ok()).unwrap_or(default)
}

const SURNAMES: [&str; 8] = ["王", "李", "张", "刘", "陈", "杨", "赵", "黄"];
const GIVEN: [&str; 8] = ["秀英", "建国", "桂兰", "志强", "玉梅", "德明", "小红", "国华"];
const RELATIONS: [&str; 4] = ["户主", "配偶", "之子", "之女"];
const EDUCATION: [&str; 4] = ["小学", "初中", "高中", "文盲或半文盲"];
const HEALTH: [&str; 3] = ["健康", "长期慢性病", "残疾"];
const LABOUR: [&str; 3] = ["普通劳动力", "丧失劳动力", "无劳动力"];

fn member(i: usize) -> StoredRecord {
    let village = format!("513229{:03}{:03}", 101 + i % 5, 201 + (i / 5) % 40);
    let hh = format!("{village}-{:04}", i / 4);
    // Unique for the first 60,000: the birth date from i / 1000, the sequence from i % 1000.
    let (born, seq) = (i / 1000, i % 1000);
    let id = format!("513229{:04}{:02}{:02}{seq:03}{}", 1950 + born % 60, 1 + born % 12, 1 + born % 28, i % 10);
    let pick = |list: &[&'static str], n: usize| list[n % list.len()];
    let values: [(&str, String); 12] = [
        ("education", pick(&EDUCATION, i).into()),
        ("health", pick(&HEALTH, i / 3).into()),
        ("id_number", id.clone()),
        ("labour", pick(&LABOUR, i / 2).into()),
        ("medical_insurance", if i.is_multiple_of(3) { "否" } else { "是" }.into()),
        ("migrant_work", if i % 4 == 1 { "省外务工" } else { "" }.into()),
        ("name", format!("{}{}", pick(&SURNAMES, i), pick(&GIVEN, i / 8))),
        ("pension_insurance", if i.is_multiple_of(5) { "否" } else { "是" }.into()),
        ("relation", pick(&RELATIONS, i).into()),
        ("schooling", if i % 4 >= 2 { "在校生" } else { "" }.into()),
        ("sex", if i.is_multiple_of(2) { "男" } else { "女" }.into()),
        ("status", "Applied".into()),
    ];
    let mut fields = Fields::new();
    let writer = Text::from(&village[..9]);
    for (n, (name, value)) in values.into_iter().enumerate() {
        let version = (1_409_536_800_000u64 + i as u64) << 16 | n as u64;
        fields.insert(Text::from(name), FieldState(Text::from(value), version, writer.clone()));
    }
    StoredRecord {
        key: RecordKey { kind: RecordKind::Member, year: 2014, id },
        region: village,
        hh,
        fields,
        deleted: false,
    }
}

async fn fresh_store(dir: &std::path::Path, name: &str) -> SqliteStore {
    SqliteStore::open(&format!("sqlite://{}", dir.join(name).display())).await.expect("opening the store")
}

/// Seconds for `begin` → `write_records` → `commit` on a fresh store.
async fn through_store(rows: &[StoredRecord]) -> f64 {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = fresh_store(dir.path(), "store.db").await;
    let rows = rows.to_vec();
    let t = Instant::now();
    let mut tx = store.begin().await.expect("begin");
    let rev = tx.next_rev().await.expect("next_rev");
    tx.write_records(shared(rows), rev).await.expect("write_records");
    tx.commit().await.expect("commit");
    let secs = t.elapsed().as_secs_f64();
    store.close().await;
    secs
}

/// Baseline A: the same rows, fields encoded beforehand, one prepared INSERT, one transaction,
/// into the schema the store's migrations make, with the same connection settings. Seconds.
async fn baseline(rows: &[Row]) -> f64 {
    let dir = tempfile::tempdir().expect("temp dir");
    fresh_store(dir.path(), "plain.db").await.close().await; // the schema only
    let mut c = rusqlite::Connection::open(dir.path().join("plain.db")).expect("open");
    c.busy_timeout(std::time::Duration::from_secs(10)).expect("busy_timeout");
    c.execute_batch(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON; \
         PRAGMA wal_autocheckpoint = 16384;",
    )
    .expect("pragmas");
    let t = Instant::now();
    let tx = c.transaction().expect("begin");
    {
        let mut st = tx
            .prepare(
                "INSERT INTO records (k, kind, year, id, region, hh, fields, deleted, rev) VALUES (?,?,?,?,?,?,?,?,?)",
            )
            .expect("prepare");
        for r in rows {
            st.execute((&r.0, r.1, r.2, &r.3, &r.4, &r.5, &r.6, r.7, r.8)).expect("insert");
        }
    }
    tx.commit().expect("commit");
    t.elapsed().as_secs_f64()
}

/// A `records` row as stored: k, kind, year, id, region, hh, fields, deleted, rev.
type Row = (String, i64, i64, String, String, String, String, i64, i64);

fn median(values: &mut [f64]) -> String {
    values.sort_by(f64::total_cmp);
    format!("median {:.3} ({:.3}-{:.3})", values[values.len() / 2], values[0], values[values.len() - 1])
}

#[tokio::main]
async fn main() {
    let n = arg("--members", 30_000);
    let repeat = arg("--repeat", 5).max(1);
    let rows: Vec<StoredRecord> = (0..n).map(member).collect();
    let encoded: Vec<Row> = rows
        .iter()
        .map(|r| {
            let (kind, year) = (i64::from(r.key.kind.to_u8()), i64::from(r.key.year));
            (
                storage_key(&r.key),
                kind,
                year,
                r.key.id.clone(),
                r.region.clone(),
                r.hh.clone(),
                fields_json(&r.fields),
                0,
                1,
            )
        })
        .collect();
    let bytes: usize = encoded.iter().map(|r| r.6.len()).sum();
    println!("{n} member records, fields JSON {:.0} bytes a record on average, {repeat} runs", bytes as f64 / n as f64);
    let (mut store_s, mut base_s, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    for run in 0..repeat {
        // Alternate which goes first, so drift (page cache, CPU clock) favours neither.
        let (s, b) = if run % 2 == 0 {
            let s = through_store(&rows).await;
            (s, baseline(&encoded).await)
        } else {
            let b = baseline(&encoded).await;
            (through_store(&rows).await, b)
        };
        println!("  run {}: store {s:.3} s, baseline A {b:.3} s", run + 1);
        store_s.push(s);
        base_s.push(b);
        ratios.push(b / s);
    }
    let rate = |s: &mut Vec<f64>| {
        s.sort_by(f64::total_cmp);
        format!("{:.0}", n as f64 / s[s.len() / 2])
    };
    println!("store (write_records + commit): {} s, {} records/s", median(&mut store_s.clone()), rate(&mut store_s));
    println!("baseline A (one prepared INSERT): {} s, {} records/s", median(&mut base_s.clone()), rate(&mut base_s));
    println!("ratio baseline A / store: {}", median(&mut ratios));
}
