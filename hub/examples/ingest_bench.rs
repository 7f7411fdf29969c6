//! Hub ingest benchmark.
//!
//!   cargo run --release -p jianka-hub --example ingest_bench -- [--members N] [--province-people N]
//!       [--counties C] [--repeat R] [--ops-per-changeset K] [--pg URL] [--only-pg] [--profile]
//!
//! 1. County ingest: member records/s through verify + decompress + merge + quota + write (the
//!    real `Hub::ingest`), beside a plain prepared-statement insert of the same rows into SQLite
//!    with the hub's own SQLite settings; R runs (default 5), hub and baselines interleaved, medians;
//!    and the CPU each of the process's threads used during the hub's ingest (the hub's own thread
//!    against the store's writer).
//!    With --pg, the same county ingest on PostgreSQL beside a `COPY` of the rows it stored.
//! 2. Province consolidation: N people from C counties (each county's records as its own change
//!    sets), time and peak RSS, on SQLite and (with --pg) on PostgreSQL.

mod common {
    pub mod pg_copy;
}

use chrono::{NaiveDate, TimeZone, Utc};
use common::pg_copy::{RecordRow, copy_records};
use ed25519_dalek::SigningKey;
use jianka_hub::{Hub, HubConfig, ManualClock, admin, auth::Sender};
use jianka_shared::{
    Hlc, RegionCode, Yuan,
    changeset::{Draft, FieldWrite, Op, envelope_hash},
    domain::{Household, Member, Status},
    labels::*,
    trust::KeyId,
};
use std::sync::Arc;
use std::time::Instant;

// The hub allocates and frees many small strings per record (field maps, statements); mimalloc
// handles that churn far better than the system allocator (measured with the ingest benchmark).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1).cloned())
}

fn households(village_prefix: &str, count: usize, members: usize, salt: u64, status: Status) -> Vec<Household> {
    let base = NaiveDate::from_ymd_opt(1950, 1, 1).unwrap();
    (0..count)
        .map(|h| {
            let village = RegionCode::parse(&format!("{village_prefix}{:03}", 200 + (h % 50))).unwrap();
            let ms: Vec<Member> = (0..members)
                .map(|i| {
                    let n = salt * 10_000_000 + (h * members + i) as u64;
                    let id = jianka_shared::IdNumber::compose(
                        &village_prefix[..6],
                        base + chrono::Days::new(n % 20000),
                        (n / 20000 % 999 + 1) as u16,
                    )
                    .unwrap();
                    Member {
                        sex: id.sex(),
                        id_number: id,
                        name: format!("成员{i}"),
                        relation: if i == 0 { Relation::Head } else { Relation::Son },
                        education: Education::Primary,
                        schooling: None,
                        health: Health::Healthy,
                        labour: Labour::Ordinary,
                        migrant_work: None,
                        medical_insurance: true,
                        pension_insurance: false,
                    }
                })
                .collect();
            Household {
                year: 2014,
                village,
                number: format!("{h:06}"),
                attribute: Attribute::General,
                standard: Standard::National,
                main_cause: Cause::Illness,
                other_causes: vec![],
                income: Yuan::from_yuan(1000 * members as i64),
                income_per_capita: Yuan::from_yuan(1000),
                unsafe_housing: false,
                water_difficulty: false,
                phone: "13800000000".into(),
                bank_account: "6217000000000000".into(),
                helper_name: "张".into(),
                helper_unit: "扶贫办".into(),
                helper_phone: "0719-0000000".into(),
                helper_since: String::new(),
                status,
                members: ms,
                facts: Default::default(),
            }
        })
        .collect()
}

fn ops(hs: &[Household]) -> Vec<Op> {
    hs.iter()
        .flat_map(|h| h.to_records())
        .map(|r| Op::Upsert {
            key: r.key,
            fields: r
                .fields
                .into_iter()
                .map(|(name, value)| FieldWrite {
                    name: name.into(),
                    value: value.into(),
                    version: Hlc(7),
                    base: Hlc::ZERO,
                })
                .collect(),
        })
        .collect()
}

fn seal_stream(origin: &RegionCode, key: &SigningKey, ops: Vec<Op>, per: usize) -> Vec<Vec<u8>> {
    let mut prev = [0u8; 32];
    let mut out = Vec::new();
    for (i, chunk) in ops.chunks(per).enumerate() {
        let d = Draft {
            origin: origin.clone(),
            seq: i as u64 + 1,
            prev_hash: prev,
            year: 2014,
            hlc: Hlc(1),
            ops: chunk.to_vec(),
        };
        let b = d.seal(key).unwrap();
        prev = envelope_hash(&b);
        out.push(b);
    }
    out
}

/// Exactly the rows a hub ended up holding in `records` (households and members, same columns,
/// same stored field text), and the statements that created that table and its indexes.
fn stored_rows_of(db: &std::path::Path) -> (Vec<RecordRow>, Vec<String>) {
    let c = rusqlite::Connection::open(db).unwrap();
    let mut st = c.prepare("SELECT k, kind, year, id, region, hh, fields, deleted, rev FROM records").unwrap();
    let rows = st
        .query_map([], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?, r.get(7)?, r.get(8)?))
        })
        .unwrap()
        .map(Result::unwrap)
        .collect();
    // The table first, then its indexes (the primary key's own index has no statement).
    let mut st = c
        .prepare("SELECT sql FROM sqlite_master WHERE tbl_name = 'records' AND sql IS NOT NULL ORDER BY type DESC")
        .unwrap();
    let schema = st.query_map([], |r| r.get(0)).unwrap().map(Result::unwrap).collect();
    (rows, schema)
}

/// Baseline A: `stored` inserted with one prepared statement in one transaction into a table
/// created by the hub's own statements (`schema`), with the hub's connection settings. Seconds.
fn baseline_same_rows(stored: &[RecordRow], schema: &[String]) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let mut c = rusqlite::Connection::open(dir.path().join("same.db")).unwrap();
    same_pragmas(&c);
    for statement in schema {
        c.execute_batch(statement).unwrap();
    }
    let t = Instant::now();
    let tx = c.transaction().unwrap();
    {
        let mut st = tx
            .prepare("INSERT INTO records (k, kind, year, id, region, hh, fields, deleted, rev) VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9)")
            .unwrap();
        for r in stored {
            st.execute((&r.0, r.1, r.2, &r.3, &r.4, &r.5, &r.6, r.7, r.8)).unwrap();
        }
    }
    tx.commit().unwrap();
    t.elapsed().as_secs_f64()
}

/// Baseline C: the same rows as A through the hub's store (`WriteTx::write_records`, one
/// transaction): what the storage path alone costs. Seconds.
async fn baseline_same_rows_store(stored: &[RecordRow]) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let store = jianka_hub::store::open(&format!("sqlite://{}", dir.path().join("store.db").display())).await.unwrap();
    let rows: Vec<_> = stored
        .iter()
        .map(|r| jianka_hub::record::row_from(&r.0, r.4.clone(), r.5.clone(), &r.6, r.7 != 0).unwrap())
        .collect();
    let t = Instant::now();
    let mut tx = store.begin().await.unwrap();
    tx.write_records(jianka_hub::record::shared(rows), 1).await.unwrap();
    tx.commit().await.unwrap();
    let secs = t.elapsed().as_secs_f64();
    store.close().await;
    secs
}

/// Baseline B (the stricter, older one): only the member rows, `(id, fields JSON)`, into a bare
/// table with a primary key and no other index. Seconds.
fn baseline_member_rows(member_rows: &[(String, String)]) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let mut c = rusqlite::Connection::open(dir.path().join("plain.db")).unwrap();
    same_pragmas(&c);
    c.execute("CREATE TABLE members (id TEXT PRIMARY KEY, fields TEXT NOT NULL)", []).unwrap();
    let t = Instant::now();
    let tx = c.transaction().unwrap();
    {
        let mut st = tx.prepare("INSERT INTO members (id, fields) VALUES (?1, ?2)").unwrap();
        for (id, f) in member_rows {
            st.execute((id, f)).unwrap();
        }
    }
    tx.commit().unwrap();
    t.elapsed().as_secs_f64()
}

/// The baselines run with the hub's own SQLite connection settings (WAL, synchronous, checkpointing).
fn same_pragmas(c: &rusqlite::Connection) {
    c.busy_timeout(std::time::Duration::from_millis(10_000)).unwrap();
    c.execute_batch(jianka_hub::store::sqlite::WRITER_SETUP).unwrap();
}

/// A fresh database on the server at `base` (a URL naming any database), for one run: its URL.
async fn create_database(base: &str, tag: &str) -> (String, String) {
    let name = format!("jianka_bench_{tag}_{}", std::process::id());
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(base).await.unwrap();
    let sql = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
    sqlx::Executor::execute(&mut conn, sqlx::AssertSqlSafe(sql)).await.unwrap();
    sqlx::Executor::execute(&mut conn, sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).await.unwrap();
    (format!("{}/{name}", base.rsplit_once('/').unwrap().0), name)
}

/// Drops what [`create_database`] made, so runs leave the server as they found it.
async fn drop_database(base: &str, name: &str) {
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(base).await.unwrap();
    let sql = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
    sqlx::Executor::execute(&mut conn, sqlx::AssertSqlSafe(sql)).await.unwrap();
}

/// County ingest on PostgreSQL beside a `COPY` of the rows it stored into a table made like
/// `records` (same columns, indexes and collations) on the same server: seconds of each.
async fn county_on_postgres(base: &str, all_ops: &[Op], per_changeset: usize) -> (f64, f64) {
    let (url, name) = create_database(base, "county").await;
    let (county, _d) = open_hub("420322", Some(url.clone()), Some((u64::MAX / 4, "420322"))).await;
    let (sender, key) = enroll(&county, "420322105", 1).await;
    let envelopes = seal_stream(&sender.region, &key, all_ops.to_vec(), per_changeset);
    let t = Instant::now();
    for e in &envelopes {
        county.ingest(&sender, e).await.unwrap();
    }
    let hub_secs = t.elapsed().as_secs_f64();
    county.store().close().await;
    drop(county);
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&url).await.unwrap();
    let rows: Vec<RecordRow> =
        sqlx::query_as("SELECT k, kind, year, id, region, hh, fields, deleted, rev FROM records")
            .fetch_all(&mut conn)
            .await
            .unwrap();
    sqlx::Executor::execute(&mut conn, "CREATE TABLE copied (LIKE records INCLUDING ALL)").await.unwrap();
    let t = Instant::now();
    copy_records(&mut conn, "copied", &rows).await.unwrap();
    let copy_secs = t.elapsed().as_secs_f64();
    drop(conn);
    drop_database(base, &name).await;
    (hub_secs, copy_secs)
}

/// `median M (lowest-highest)` of `values`.
fn median_range(values: &mut [f64]) -> String {
    values.sort_by(f64::total_cmp);
    format!("median {:.2} ({:.2}-{:.2})", values[values.len() / 2], values[0], values[values.len() - 1])
}

fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map(|kb| kb / 1024.0)
        .unwrap_or(0.0)
}

/// Clock ticks a second in /proc's CPU times (USER_HZ on Linux).
const USER_HZ: f64 = 100.0;

/// A process's or thread's name and CPU seconds (user + system) from its /proc `stat` text.
fn stat_cpu(stat: &str) -> Option<(&str, f64)> {
    let (open, close) = (stat.find('(')?, stat.rfind(')')?);
    let f: Vec<&str> = stat.get(close + 1..)?.split_whitespace().collect();
    // utime and stime, the 12th and 13th fields after the name.
    let ticks = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    Some((stat.get(open + 1..close)?, ticks / USER_HZ))
}

/// CPU seconds so far of each of this process's threads, by thread name (threads of one name
/// summed): where an ingest's work went, the hub's thread against the database writer's.
fn thread_cpu_seconds() -> std::collections::BTreeMap<String, f64> {
    let mut out = std::collections::BTreeMap::new();
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else { return out };
    for task in tasks.flatten() {
        let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else { continue };
        if let Some((name, secs)) = stat_cpu(&stat) {
            *out.entry(name.to_string()).or_insert(0.0) += secs;
        }
    }
    out
}

/// CPU seconds so far: this process (all threads) and the whole machine (every process), from
/// /proc, so a run can say how much of its time was the hub's and how much the server's.
fn cpu_seconds() -> (f64, f64) {
    let own =
        std::fs::read_to_string("/proc/self/stat").ok().and_then(|s| stat_cpu(&s).map(|(_, secs)| secs)).unwrap_or(0.0);
    let machine = std::fs::read_to_string("/proc/stat")
        .ok()
        .and_then(|s| {
            let f: Vec<f64> = s.lines().next()?.split_whitespace().skip(1).filter_map(|v| v.parse().ok()).collect();
            // user nice system idle iowait irq softirq steal: busy is all but idle and iowait.
            Some((f.iter().take(8).sum::<f64>() - f.get(3)? - f.get(4)?) / USER_HZ)
        })
        .unwrap_or(0.0);
    (own, machine)
}

async fn open_hub(region: &str, db: Option<String>, quotas: Option<(u64, &str)>) -> (Arc<Hub>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let today = NaiveDate::from_ymd_opt(2014, 9, 1).unwrap();
    let prov = tempfile::tempdir().unwrap();
    let qpath = quotas.map(|(people, county)| {
        std::fs::write(
            dir.path().join("q.toml"),
            format!("[[counties]]\ncounty = \"{county}\"\npeople = {people}\nvillages = 1000\n"),
        )
        .unwrap();
        std::path::PathBuf::from("q.toml")
    });
    admin::init(
        &admin::InitOptions {
            region: RegionCode::parse(region).unwrap(),
            dir: dir.path().into(),
            parent_url: None,
            profile: None,
            quotas: qpath,
            database: db,
            listen: None,
        },
        today,
    )
    .unwrap();
    let cfg = HubConfig::load(&dir.path().join("hub.toml")).unwrap();
    let clock = ManualClock::new(Utc.with_ymd_and_hms(2014, 9, 1, 2, 0, 0).unwrap());
    let hub = Arc::new(Hub::open(cfg, Arc::new(clock)).await.unwrap());
    if region.len() == 6 {
        // A county needs a chain to enroll: have a throwaway province issue one.
        admin::init(
            &admin::InitOptions {
                region: RegionCode::parse(&region[..2]).unwrap(),
                dir: prov.path().into(),
                parent_url: None,
                profile: None,
                quotas: None,
                database: Some("sqlite://p.db".into()),
                listen: None,
            },
            today,
        )
        .unwrap();
        let p = Hub::open(
            HubConfig::load(&prov.path().join("hub.toml")).unwrap(),
            Arc::new(ManualClock::new(Utc.with_ymd_and_hms(2014, 9, 1, 2, 0, 0).unwrap())),
        )
        .await
        .unwrap();
        let chain = p
            .enroll(hub.region(), &jianka_keyfile::public_hex(&hub.signing_key().verifying_key()), None)
            .await
            .unwrap();
        jianka_keyfile::write_chain(&dir.path().join("chain.json"), &chain).unwrap();
        // Under scale control a county admits only within a verified allocation: the province
        // issues one as large as the quotas file says, and the county installs it.
        if let Some((people, _)) = quotas {
            let split = std::collections::BTreeMap::from([(
                hub.region().clone(),
                jianka_shared::allocation::Share { people, villages: 1000 },
            )]);
            let issued = p.allocate(2014, &split, "benchmark").await.unwrap();
            hub.install_allocation(&issued[0].chain).await.unwrap();
        }
    }
    (hub, dir)
}

async fn enroll(hub: &Hub, region: &str, seed: u8) -> (Sender, SigningKey) {
    let mut s = [seed; 32];
    s[1] = region.len() as u8;
    s[2..8].copy_from_slice(&region.as_bytes()[region.len() - 6..]);
    let key = SigningKey::from_bytes(&s);
    hub.enroll(&RegionCode::parse(region).unwrap(), &jianka_keyfile::public_hex(&key.verifying_key()), None)
        .await
        .unwrap();
    (
        Sender {
            region: RegionCode::parse(region).unwrap(),
            key_id: KeyId::of(&key.verifying_key()),
            key: key.verifying_key(),
        },
        key,
    )
}

#[tokio::main]
async fn main() {
    // RUST_LOG=info shows each change set's steps and their times.
    if std::env::var_os("RUST_LOG").is_some() {
        tracing_subscriber::fmt().with_env_filter(tracing_subscriber::EnvFilter::from_default_env()).init();
    }
    let members: usize = arg("--members").and_then(|s| s.parse().ok()).unwrap_or(150_000);
    let province_people: usize = arg("--province-people").and_then(|s| s.parse().ok()).unwrap_or(300_000);
    let counties: usize = arg("--counties").and_then(|s| s.parse().ok()).unwrap_or(10);
    let pg = arg("--pg");
    let repeat: usize = arg("--repeat").and_then(|s| s.parse().ok()).unwrap_or(5).max(1);
    // `--profile` runs only the hub's ingest, for a profiler to look at.
    let profiling = std::env::args().any(|a| a == "--profile");
    // A township node cuts its outbox into change sets of at most this many ops (its
    // `sync.max_ops_per_changeset`, 20,000 by default).
    let per_changeset: usize = arg("--ops-per-changeset").and_then(|s| s.parse().ok()).unwrap_or(20_000).max(1);

    // ---- 1. county ingest vs plain insert, repeated (hub and baselines interleaved, so drift in
    // the machine's speed falls on both) and reported as medians.
    let hs = households("420322105", members / 3, 3, 1, Status::CountyReview);
    let all_ops = ops(&hs);
    let member_rows: Vec<(String, String)> = hs
        .iter()
        .flat_map(|h| h.to_records())
        .filter(|r| r.key.kind == jianka_shared::RecordKind::Member)
        .map(|r| (r.key.id.clone(), serde_json::to_string(&r.fields).unwrap()))
        .collect();
    let (mut hub_runs, mut same_runs, mut plain_runs, mut ratios) = (vec![], vec![], vec![], vec![]);
    let (mut store_runs, mut ratios_c) = (vec![], vec![]);
    let (mut stored_rows, mut change_sets) = (0, 0);
    let mut thread_cpu: std::collections::BTreeMap<String, f64> = Default::default();
    for _ in 0..repeat {
        let (county, d) = open_hub("420322", None, Some((u64::MAX / 4, "420322"))).await;
        let (sender, key) = enroll(&county, "420322105", 1).await;
        let envelopes = seal_stream(&sender.region, &key, all_ops.clone(), per_changeset);
        change_sets = envelopes.len();
        let cpu_before = thread_cpu_seconds();
        let t = Instant::now();
        for e in &envelopes {
            county.ingest(&sender, e).await.unwrap();
        }
        let hub_secs = t.elapsed().as_secs_f64();
        for (thread, secs) in thread_cpu_seconds() {
            *thread_cpu.entry(thread.clone()).or_insert(0.0) += secs - cpu_before.get(&thread).copied().unwrap_or(0.0);
        }
        // Closed, not just dropped: the store's threads end (and SQLite checkpoints its log) now,
        // not while the baselines run beside them.
        county.store().close().await;
        drop(county);
        if profiling {
            hub_runs.push(hub_secs);
            continue;
        }
        let (stored, schema) = stored_rows_of(&d.path().join("hub.db"));
        stored_rows = stored.len();
        let same_rows_secs = baseline_same_rows(&stored, &schema);
        let store_secs = baseline_same_rows_store(&stored).await;
        store_runs.push(store_secs);
        ratios_c.push(store_secs / hub_secs);
        let plain_secs = baseline_member_rows(&member_rows);
        ratios.push(same_rows_secs / hub_secs);
        hub_runs.push(hub_secs);
        same_runs.push(same_rows_secs);
        plain_runs.push(plain_secs);
    }
    // The hub's own thread runs `main` (its name is the program's); the store's threads are named.
    let per_run = |secs: &f64| secs / hub_runs.len() as f64;
    let cpu_line = format!(
        "CPU per run during the hub's ingest (wall {:.3}s): {}",
        hub_runs.iter().sum::<f64>() / hub_runs.len() as f64,
        thread_cpu
            .iter()
            .filter(|(_, secs)| per_run(secs) >= 0.001)
            .map(|(thread, secs)| format!("{thread} {:.3}s", per_run(secs)))
            .collect::<Vec<_>>()
            .join(", ")
    );
    if profiling {
        println!("hub ingest runs: {hub_runs:.3?} s");
        println!("{cpu_line}");
        return;
    }
    let n = member_rows.len() as f64;
    let line = |runs: &mut Vec<f64>| {
        runs.sort_by(f64::total_cmp);
        let median = runs[runs.len() / 2];
        format!(
            "{:>10.0} members/s (median {median:.3}s; {:.3}-{:.3}s over {} runs)",
            n / median,
            runs[0],
            runs[runs.len() - 1],
            runs.len()
        )
    };
    println!(
        "county ingest: {} members in {} households = {stored_rows} records, as {change_sets} change sets of <= {per_changeset} records",
        member_rows.len(),
        hs.len(),
    );
    println!(
        "  hub ingest, Hub::ingest per change set (verify + decompress + merge + re-examination + quota + write + audit + feedback, one transaction each):"
    );
    println!("    {}", line(&mut hub_runs));
    println!("    {cpu_line}");
    println!(
        "  baseline A, the same {stored_rows} rows the hub stored (same table, indexes, stored text, the hub's SQLite settings), one prepared rusqlite INSERT, one transaction:"
    );
    println!("    {}", line(&mut same_runs));
    println!("    ratio hub / baseline A: {}   (target >= 0.6)", median_range(&mut ratios));
    println!("  baseline C, the same rows as A through the hub's store (write_records, one transaction):");
    println!("    {}", line(&mut store_runs));
    println!(
        "    ratio hub / baseline C: {}   (the hub's work beyond its own storage layer)",
        median_range(&mut ratios_c)
    );
    println!(
        "  baseline B, member rows only (id, fields JSON) into a bare keyed table, one prepared rusqlite INSERT, one transaction:"
    );
    println!("    {}", line(&mut plain_runs));
    if let Some(base) = &pg {
        let (mut hub_pg, mut copy_pg, mut ratios_pg) = (vec![], vec![], vec![]);
        for _ in 0..repeat {
            let (hub_secs, copy_secs) = county_on_postgres(base, &all_ops, per_changeset).await;
            hub_pg.push(hub_secs);
            copy_pg.push(copy_secs);
            ratios_pg.push(copy_secs / hub_secs);
        }
        println!("  the same county ingest on PostgreSQL:");
        println!("    {}", line(&mut hub_pg));
        println!(
            "  COPY of the rows it stored into a table made like records (same indexes and collations), same server:"
        );
        println!("    {}", line(&mut copy_pg));
        println!("    ratio hub / COPY: {}   (target >= 0.4)", median_range(&mut ratios_pg));
    }

    // ---- 2. province consolidation
    // `--only-pg` skips the SQLite run of the consolidation (it takes minutes at 6 million).
    let mut backends = if std::env::args().any(|a| a == "--only-pg") { vec![] } else { vec![("sqlite", None)] };
    if let Some(url) = pg {
        backends.push(("postgres", Some(url)));
    }
    for (name, url) in backends {
        let created = match &url {
            Some(u) => Some(create_database(u, "province").await),
            None => None,
        };
        let db = created.as_ref().map(|(db_url, _)| db_url.clone());
        let (prov, _pd) = open_hub("42", db, None).await;
        // On PostgreSQL each county's stored rows are also copied (COPY) into a table made like
        // `records`, after its ingest: the server's bulk-load rate at the same table sizes.
        let mut copying = match &created {
            Some((db_url, _)) => {
                let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(db_url).await.unwrap();
                sqlx::Executor::execute(&mut conn, "CREATE TABLE copied (LIKE records INCLUDING ALL)").await.unwrap();
                Some((conn, std::time::Duration::ZERO))
            }
            None => None,
        };
        let per_county = province_people / counties;
        let t = Instant::now();
        let mut ingesting = std::time::Duration::ZERO;
        let (mut hub_cpu, mut other_cpu) = (0.0, 0.0);
        let mut records = 0usize;
        for c in 0..counties {
            let code = format!("42{:04}", 100 + c);
            let (sender, key) = enroll(&prov, &code, 3).await;
            // Generate each county's data only when it is sent, as a county would.
            let hs = households(&format!("{code}105"), per_county / 3, 3, 100 + c as u64, Status::CountyAnnounced);
            let o = ops(&hs);
            records += o.len();
            for e in seal_stream(&sender.region, &key, o, 20_000) {
                let i = Instant::now();
                let (own, machine) = cpu_seconds();
                prov.ingest(&sender, &e).await.unwrap();
                ingesting += i.elapsed();
                let (own2, machine2) = cpu_seconds();
                hub_cpu += own2 - own;
                other_cpu += (machine2 - machine) - (own2 - own);
            }
            if let Some((conn, took)) = &mut copying {
                let rows: Vec<RecordRow> = sqlx::query_as(
                    "SELECT k, kind, year, id, region, hh, fields, deleted, rev FROM records WHERE region LIKE $1",
                )
                .bind(format!("{code}%"))
                .fetch_all(&mut *conn)
                .await
                .unwrap();
                let i = Instant::now();
                copy_records(conn, "copied", &rows).await.unwrap();
                *took += i.elapsed();
            }
        }
        let secs = t.elapsed().as_secs_f64();
        let people = per_county / 3 * 3 * counties;
        println!(
            "province consolidation [{name}]: {people} people, {records} records from {counties} counties: the province's ingest {:.1}s ({:.0} people/s); with the counties' generating and sealing in the same process {secs:.1}s; peak RSS {:.0} MB",
            ingesting.as_secs_f64(),
            people as f64 / ingesting.as_secs_f64(),
            peak_rss_mb()
        );
        println!(
            "  CPU during the ingest: the hub {hub_cpu:.1}s, every other process (the database server) {other_cpu:.1}s, of {:.1}s on 2 cores",
            ingesting.as_secs_f64() * 2.0
        );
        if let Some((conn, took)) = copying {
            println!(
                "  COPY of the same rows, county by county, into a table made like records: {:.1}s; ratio hub / COPY {:.2}",
                took.as_secs_f64(),
                took.as_secs_f64() / ingesting.as_secs_f64()
            );
            drop(conn);
        }
        prov.store().close().await;
        if let (Some(u), Some((_, name))) = (&url, &created) {
            drop_database(u, name).await;
        }
    }
}
