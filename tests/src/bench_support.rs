//! Figures printed by `jianka-bench`: each beside a baseline measured in the same run.

use crate::generate::Generator;
use jianka_shared::{
    Hlc, RegionCode,
    changeset::{self, Draft, FieldWrite, Limits, Op},
    domain::Status,
    record::{Record, RecordKind},
};
use std::time::Instant;

/// `n` member records of one township, as a node would send them on first sync.
pub fn member_records(n: usize, seed: u64) -> Vec<Record> {
    let mut g = Generator::new(seed, 2014);
    let mut out = Vec::with_capacity(n);
    let mut number = 0;
    let villages = ["420322105200", "420322105201", "420322105202", "420322105203"];
    while out.len() < n {
        let h = g.household(villages[number as usize % villages.len()], number, Status::CountyReview);
        number += 1;
        out.extend(h.to_records().into_iter().filter(|r| r.key.kind == RecordKind::Member));
    }
    out.truncate(n);
    out
}

pub fn upserts(records: &[Record], base_hlc: u64) -> Vec<Op> {
    records
        .iter()
        .enumerate()
        .map(|(i, r)| Op::Upsert {
            key: r.key.clone(),
            fields: r
                .fields
                .iter()
                .map(|(k, v)| FieldWrite {
                    name: k.as_str().into(),
                    value: v.as_str().into(),
                    version: Hlc::new(base_hlc + i as u64, 0),
                    base: Hlc::ZERO,
                })
                .collect(),
        })
        .collect()
}

/// The same records as CSV: key, then the field values in name order.
pub fn records_csv(records: &[Record]) -> Vec<u8> {
    let mut w = csv::Writer::from_writer(Vec::new());
    if let Some(first) = records.first() {
        let mut header = vec!["id".to_string()];
        header.extend(first.fields.keys().cloned());
        w.write_record(&header).expect("in-memory write");
    }
    for r in records {
        let mut row = vec![r.key.id.clone()];
        row.extend(r.fields.values().cloned());
        w.write_record(&row).expect("in-memory write");
    }
    w.into_inner().expect("in-memory write")
}

pub struct ChangeSetFigures {
    pub records: usize,
    pub seal_per_sec: f64,
    pub open_per_sec: f64,
    pub wire_bytes: usize,
    pub csv_bytes: usize,
    pub csv_zstd19_bytes: usize,
    pub zstd19_per_sec: f64,
}

/// Times sealing and opening change sets of `n` member records on one core.
pub fn changeset_figures(n: usize) -> ChangeSetFigures {
    let records = member_records(n, 42);
    let ops = upserts(&records, 1_700_000_000_000);
    let key = ed25519_dalek::SigningKey::from_bytes(&[9; 32]);
    let draft = Draft {
        origin: RegionCode::parse("420322105").expect("valid"),
        seq: 1,
        prev_hash: [0; 32],
        year: 2014,
        hlc: Hlc::new(1_700_000_000_000, 0),
        ops,
    };
    let rounds = 10;
    let t = Instant::now();
    let mut sealed = Vec::new();
    for _ in 0..rounds {
        sealed = draft.seal(&key).expect("seal");
    }
    let seal_secs = t.elapsed().as_secs_f64() / rounds as f64;
    let vk = key.verifying_key();
    let t = Instant::now();
    for _ in 0..rounds {
        let cs = changeset::open(&sealed, &vk, Limits::default()).expect("open");
        assert_eq!(cs.ops.len(), n);
    }
    let open_secs = t.elapsed().as_secs_f64() / rounds as f64;
    let csv = records_csv(&records);
    let t = Instant::now();
    let z19 = zstd::bulk::compress(&csv, 19).expect("zstd");
    let z19_secs = t.elapsed().as_secs_f64();
    ChangeSetFigures {
        records: n,
        seal_per_sec: n as f64 / seal_secs,
        open_per_sec: n as f64 / open_secs,
        wire_bytes: sealed.len(),
        csv_bytes: csv.len(),
        csv_zstd19_bytes: z19.len(),
        zstd19_per_sec: n as f64 / z19_secs,
    }
}

pub fn print_changeset(f: &ChangeSetFigures) {
    println!("change-set format, {} member records, one core:", f.records);
    println!(
        "  encode+compress+sign   {:>12.0} records/s   (target >= 300000; zstd -19 of the CSV alone: {:.0} records/s)",
        f.seal_per_sec, f.zstd19_per_sec
    );
    println!("  verify+decompress+decode {:>10.0} records/s   (target >= 300000)", f.open_per_sec);
    let per = f.wire_bytes as f64 / f.records as f64;
    let base = f.csv_zstd19_bytes as f64 / f.records as f64;
    println!(
        "  wire size              {:>12.1} bytes/record (envelope {} B; CSV {} B raw, {} B with zstd -19 = {:.1} bytes/record)",
        per, f.wire_bytes, f.csv_bytes, f.csv_zstd19_bytes, base
    );
    println!("  wire / zstd-19 CSV     {:>12.3}           (target <= 1.25)", per / base);
}

/// One township's first full sync, clean and through a lossy link.
pub struct SyncFigures {
    pub households: u32,
    pub records: u64,
    pub clean_secs: f64,
    pub clean_bytes: u64,
    pub clean_requests: u64,
    pub lossy_secs: f64,
    pub lossy_bytes: u64,
    pub lossy_requests: u64,
    pub loss: f64,
}

/// A province and a county enrolled with it under `root`, both serving.
pub fn province_and_county(root: &std::path::Path) -> anyhow::Result<(crate::harness::Hub, crate::harness::Hub)> {
    use crate::harness::Hub;
    let mut province = Hub::init(&root.join("province"), "42", &[])?;
    let mut county = Hub::init(&root.join("county"), "420322", &["--parent-url", &province.url()])?;
    let chain = province.enroll("420322", &county.dir.join("hub.key"))?;
    county.cmd(&["install-chain", chain.to_str().unwrap_or_default()])?;
    province.start()?;
    county.start()?;
    Ok((province, county))
}

/// A township node talking to `hub_url`, enrolled at `county`, with `households` generated
/// households (from `seed`) imported into 2014; returns it and the records imported.
pub fn township_with_households(
    root: &std::path::Path,
    county: &crate::harness::Hub,
    township: &str,
    hub_url: &str,
    households: u32,
    seed: u64,
) -> anyhow::Result<(crate::harness::Node, u64)> {
    use crate::generate::write_csv;
    let node = crate::harness::Node::init(&root.join(township), township, hub_url)?;
    let chain = county.enroll(township, &node.key_file())?;
    node.cmd(&["trust", chain.to_str().unwrap_or_default()])?;
    let mut g = Generator::new(seed, 2014);
    let village = format!("{township}200");
    let hs: Vec<_> = (0..households).map(|i| g.household(&village, i + 1, Status::Applied)).collect();
    let records: u64 = hs.iter().map(|h| 1 + h.members.len() as u64).sum();
    let csv = root.join(format!("{township}.csv"));
    write_csv(std::fs::File::create(&csv)?, &hs)?;
    node.cmd(&["import", csv.to_str().unwrap_or_default(), "--year", "2014"])?;
    Ok((node, records))
}

/// The clerk's `sync`, run again until the outbox is drained (at most `passes` times).
pub fn sync_until_drained(node: &crate::harness::Node, passes: usize) -> anyhow::Result<()> {
    for _ in 0..passes {
        let _ = node.cmd_raw(&["sync"])?;
        let status: serde_json::Value = serde_json::from_str(&node.cmd(&["status", "--json"])?)?;
        if status["pending_changes"].as_u64() == Some(0) && status["unacknowledged_change_sets"].as_u64() == Some(0) {
            return Ok(());
        }
    }
    anyhow::bail!("{} never drained its outbox in {passes} runs of sync", node.township)
}

/// The proxy's per-request log on stderr, when `JIANKA_BENCH_LOG` is set.
pub fn print_proxy_log(township: &str, stats: &crate::proxy::Stats) {
    if std::env::var_os("JIANKA_BENCH_LOG").is_some() {
        for l in stats.log.lock().map(|l| l.clone()).unwrap_or_default() {
            eprintln!("  {township}: {l}");
        }
    }
}

/// Imports `households` into a fresh township node and syncs it to a fresh county through the
/// fault proxy, once on a clean link and once (another township, same data size) losing `loss`
/// of all requests. Time counts the clerk's `sync` runs until the outbox is drained.
pub fn sync_figures(households: u32, loss: f64) -> anyhow::Result<SyncFigures> {
    use crate::proxy::{FaultProxy, Faults};

    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let tmp = tempfile::tempdir()?;
    let root = tmp.path();
    let (_province, county) = province_and_county(root)?;

    let run_one = |township: &str, faults: Faults, seed: u64| -> anyhow::Result<(f64, u64, u64, u64)> {
        let proxy = rt.block_on(FaultProxy::start(county.addr, faults, seed))?;
        let (node, records) = township_with_households(root, &county, township, &proxy.url(), households, seed)?;
        let t = Instant::now();
        sync_until_drained(&node, 200)?;
        let secs = t.elapsed().as_secs_f64();
        let s = proxy.stats();
        print_proxy_log(township, s);
        Ok((
            secs,
            s.bytes.load(std::sync::atomic::Ordering::Relaxed),
            s.requests.load(std::sync::atomic::Ordering::Relaxed),
            records,
        ))
    };
    let (clean_secs, clean_bytes, clean_requests, records) = run_one("420322105", Faults::clean(), 1)?;
    let (lossy_secs, lossy_bytes, lossy_requests, _) = run_one("420322106", Faults::lossy(loss), 2)?;
    Ok(SyncFigures {
        households,
        records,
        clean_secs,
        clean_bytes,
        clean_requests,
        lossy_secs,
        lossy_bytes,
        lossy_requests,
        loss,
    })
}

pub fn print_sync(f: &SyncFigures) {
    println!("township sync, {} households ({} records), node → county over loopback HTTP:", f.households, f.records);
    println!(
        "  node push throughput   {:>12.0} records/s   (clean link, {:.2} s, {} requests, {} bytes)",
        f.records as f64 / f.clean_secs,
        f.clean_secs,
        f.clean_requests,
        f.clean_bytes
    );
    println!(
        "  link losing {:.0}% of requests: {:.2} s, {} requests, {} bytes",
        f.loss * 100.0,
        f.lossy_secs,
        f.lossy_requests,
        f.lossy_bytes
    );
    println!("  lossy / clean time     {:>12.2}           (target <= 2)", f.lossy_secs / f.clean_secs);
    println!(
        "  lossy / clean bytes    {:>12.2}           (target <= 1.5)",
        f.lossy_bytes as f64 / f.clean_bytes as f64
    );
}

/// Import speed of the clerk's importer and the idle daemon's memory.
pub struct NodeFigures {
    pub rows: usize,
    pub import_secs: f64,
    pub csv_read_secs: f64,
    pub idle_rss_kb: u64,
}

/// Times `jianka-node import` of a generated file of about `rows` member rows (one township),
/// beside just reading and parsing the same CSV (the floor any importer pays), then starts the
/// daemon on the filled database and reads its resident memory once it idles.
pub fn node_figures(rows: usize) -> anyhow::Result<NodeFigures> {
    use crate::generate::write_csv;
    use crate::harness::Node;
    let tmp = tempfile::tempdir()?;
    let node = Node::init(&tmp.path().join("node"), "420322105", "http://127.0.0.1:9")?;
    let mut g = Generator::new(3, 2014);
    let mut hs = Vec::new();
    let mut n = 0usize;
    let villages = ["420322105200", "420322105201", "420322105202", "420322105203", "420322105204"];
    while n < rows {
        let h = g.household(villages[hs.len() % villages.len()], hs.len() as u32 + 1, Status::Applied);
        n += h.members.len();
        hs.push(h);
    }
    let csv = tmp.path().join("扶贫手册.csv");
    write_csv(std::fs::File::create(&csv)?, &hs)?;
    let t = Instant::now();
    let mut r = csv::Reader::from_path(&csv)?;
    let parsed = r.records().filter_map(Result::ok).count();
    let csv_read_secs = t.elapsed().as_secs_f64();
    anyhow::ensure!(parsed == n, "CSV holds {parsed} rows, expected {n}");
    let t = Instant::now();
    node.cmd(&["import", csv.to_str().unwrap_or_default(), "--year", "2014"])?;
    let import_secs = t.elapsed().as_secs_f64();
    // The daemon with no sync window open: what a township PC carries all day.
    let text = std::fs::read_to_string(&node.config)?;
    anyhow::ensure!(text.contains("\nwindows = []"), "node.toml has no empty `windows` to set");
    std::fs::write(&node.config, text.replacen("\nwindows = []", "\nwindows = [\"0 0 3 1 1 *\"]", 1))?;
    let mut child = node.spawn(&["run"])?;
    std::thread::sleep(std::time::Duration::from_secs(3));
    let status = std::fs::read_to_string(format!("/proc/{}/status", child.id())).unwrap_or_default();
    let _ = child.kill();
    let _ = child.wait();
    let idle_rss_kb = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0);
    Ok(NodeFigures { rows: n, import_secs, csv_read_secs, idle_rss_kb })
}

pub fn print_node(f: &NodeFigures) {
    println!("township node, {} member rows (扶贫手册 CSV):", f.rows);
    println!(
        "  import                 {:>12.0} rows/s      ({:.2} s; reading and parsing the CSV alone: {:.0} rows/s)",
        f.rows as f64 / f.import_secs,
        f.import_secs,
        f.rows as f64 / f.csv_read_secs
    );
    println!("  idle daemon memory     {:>12.1} MB RSS      (target <= 20)", f.idle_rss_kb as f64 / 1024.0);
}

/// A county's forward to its province, clean and through a lossy link.
pub struct ForwardFigures {
    pub households: u32,
    pub records: u64,
    pub clean_secs: f64,
    pub clean_bytes: u64,
    pub clean_requests: u64,
    pub lossy_secs: f64,
    pub lossy_bytes: u64,
    pub lossy_requests: u64,
    pub lossy_lost: u64,
    pub loss: f64,
}

/// Fills a county with `households` (and their members) from a township node, copies it, and
/// times one `jianka-hub forward` of each copy to a fresh province through the fault proxy: once
/// clean, once losing `loss` of all requests. Each must deliver every record in that one run.
pub fn forward_figures(households: u32, loss: f64) -> anyhow::Result<ForwardFigures> {
    use crate::forwarding::{COUNTY, copy_county, county_of, fill_county, live_records, province_behind_proxy};
    use crate::proxy::Faults;
    use std::sync::atomic::Ordering;

    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let tmp = tempfile::tempdir()?;
    let root = tmp.path();
    let clean = province_behind_proxy(&rt, &root.join("province-clean"), Faults::clean(), 1)?;
    let mut county = county_of(&clean, &root.join("county-clean"))?;
    let t = Instant::now();
    let records = fill_county(root, &mut county, households, 7)?;
    eprintln!("county filled with {records} records in {:.1} s", t.elapsed().as_secs_f64());
    let lossy = province_behind_proxy(&rt, &root.join("province-lossy"), Faults::lossy(loss), 2)?;
    let lossy_county = copy_county(&county, &root.join("county-lossy"), &lossy)?;

    let forward = |county: &crate::harness::Hub, up: &crate::forwarding::Upstream| -> anyhow::Result<(f64, u64, u64)> {
        let t = Instant::now();
        county.cmd(&["forward"])?;
        let secs = t.elapsed().as_secs_f64();
        let held = live_records(&up.province, COUNTY)?;
        anyhow::ensure!(held == records, "one forward delivered {held} of {records} records");
        let s = up.proxy.stats();
        Ok((secs, s.bytes.load(Ordering::Relaxed), s.requests.load(Ordering::Relaxed)))
    };
    let (clean_secs, clean_bytes, clean_requests) = forward(&county, &clean)?;
    let (lossy_secs, lossy_bytes, lossy_requests) = forward(&lossy_county, &lossy)?;
    let s = lossy.proxy.stats();
    let lossy_lost = s.dropped.load(Ordering::Relaxed) + s.cut.load(Ordering::Relaxed);
    Ok(ForwardFigures {
        households,
        records,
        clean_secs,
        clean_bytes,
        clean_requests,
        lossy_secs,
        lossy_bytes,
        lossy_requests,
        lossy_lost,
        loss,
    })
}

pub fn print_forward(f: &ForwardFigures) {
    println!(
        "county forward, {} households ({} records), county → province over loopback HTTP, one `forward` each:",
        f.households, f.records
    );
    println!(
        "  clean link             {:>12.0} records/s   ({:.2} s, {} requests, {} bytes)",
        f.records as f64 / f.clean_secs,
        f.clean_secs,
        f.clean_requests,
        f.clean_bytes
    );
    println!(
        "  link losing {:.0}% of requests: {:.2} s, {} requests ({} lost), {} bytes",
        f.loss * 100.0,
        f.lossy_secs,
        f.lossy_requests,
        f.lossy_lost,
        f.lossy_bytes
    );
    println!("  lossy / clean time     {:>12.2}           (target <= 2)", f.lossy_secs / f.clean_secs);
    println!(
        "  lossy / clean bytes    {:>12.2}           (target <= 1.5)",
        f.lossy_bytes as f64 / f.clean_bytes as f64
    );
}
