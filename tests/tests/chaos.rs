//! The chaos suite: seeded rounds of SIGKILLed nodes and hubs, partitions, a node clock hours
//! off, and duplicated, delayed and reordered deliveries, with two townships pushing into one
//! county ceiling. After every round: every record a node holds is at its county exactly once
//! (same change sets, same hashes), the digests match, the ceiling holds (recounted from the
//! county's database, not from its own counter), and the audit chain verifies.
//!
//! Every third seed is a large round: the first township registers 2,000 households and moves
//! them through the workflow offline before its first sync, so one change set carries more than
//! 10,000 household ops (the node cuts change sets at `sync.max_ops_per_changeset`, 20,000 by
//! default, and the clerk's 18,000-odd ops stay in one), pushed, resumed and resent through the
//! same storm as the small ones.
//!
//! `JIANKA_CHAOS_ROUNDS=N` runs more rounds; a failing round prints its seed, and
//! `JIANKA_CHAOS_SEED=S` replays exactly that round.

use anyhow::{Context, bail, ensure};
use jianka_shared::domain::Status;
use jianka_tests::generate::{Generator, write_csv};
use jianka_tests::harness::{Hub, Node};
use jianka_tests::proxy::{FaultProxy, Faults};
use jianka_tests::scale::{Arrived, arrived_change_sets};
use jianka_tests::stored::{stored_value, stored_values};
use rand::{Rng, SeedableRng, rngs::StdRng};
use std::path::Path;
use std::time::{Duration, Instant};

const CEILING: u64 = 300;
const TOWNSHIPS: [&str; 2] = ["420322105", "420322106"];
/// Households of the first township in a large round.
const LARGE: u32 = 2_000;

fn is_large(seed: u64) -> bool {
    seed.is_multiple_of(3)
}

fn chrono_now_plus(hours: i64) -> String {
    (chrono::Utc::now() + chrono::Duration::hours(hours)).to_rfc3339()
}

struct Township {
    node: Node,
    proxy: FaultProxy,
}

fn round(seed: u64, root: &Path, rt: &tokio::runtime::Runtime) -> anyhow::Result<()> {
    let mut rng = StdRng::seed_from_u64(seed);
    let large = is_large(seed);
    let year = chrono::Utc::now().format("%Y").to_string();
    let profile = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/profiles/hubei-2014.toml").canonicalize()?;
    let quotas = root.join("quotas.toml");
    std::fs::write(&quotas, format!("[[counties]]\ncounty = \"420322\"\npeople = {CEILING}\nvillages = 5\n"))?;
    let (p, q) = (profile.to_str().context("utf-8")?, quotas.to_str().context("utf-8")?);

    let mut province = Hub::init(&root.join("province"), "42", &["--profile", p, "--quotas", q])?;
    let mut county =
        Hub::init(&root.join("county"), "420322", &["--parent-url", &province.url(), "--profile", p, "--quotas", q])?;
    let chain = province.enroll("420322", &county.dir.join("hub.key"))?;
    county.cmd(&["install-chain", chain.to_str().context("utf-8")?])?;
    province.allocate_to(&county, &year, CEILING, 5)?;
    province.start()?;
    county.start()?;

    let today = chrono::Utc::now().date_naive();
    let dates: Vec<String> =
        [30, 29, 22, 21, 14].iter().map(|d| (today - chrono::Duration::days(*d)).to_string()).collect();
    let mut towns = Vec::new();
    for (i, code) in TOWNSHIPS.iter().enumerate() {
        let proxy = rt.block_on(FaultProxy::start(county.addr, Faults::chaos(), seed ^ i as u64))?;
        // The second township's clock is hours ahead: versions come from the hybrid clock, not the wall.
        let envs = if i == 1 { vec![("JIANKA_NOW".to_string(), chrono_now_plus(5))] } else { vec![] };
        let node = Node::init_with(&root.join(code), code, &proxy.url(), envs)?;
        let chain = county.enroll(code, &node.key_file())?;
        node.cmd(&["trust", chain.to_str().context("utf-8")?])?;
        let mut g = Generator::new(seed.wrapping_mul(4) + i as u64, year.parse()?);
        let village = format!("{code}200");
        let n = rng.random_range(60..90);
        let n = if large && i == 0 { LARGE } else { n };
        let hs: Vec<_> = (0..n).map(|n| g.household(&village, n + 1, Status::Applied)).collect();
        let csv = root.join(format!("{code}.csv"));
        write_csv(std::fs::File::create(&csv)?, &hs)?;
        node.cmd(&["import", csv.to_str().context("utf-8")?, "--year", &year])?;
        for (step, date) in dates.iter().enumerate() {
            let mut args = vec!["workflow", "advance", "--all", "--date", date, "--year", &year];
            if step == 0 {
                args.extend(["--minutes", "评议通过"]);
            }
            node.cmd(&args)?;
        }
        towns.push(Township { node, proxy });
    }

    // The storm: both townships push at once while things break.
    let mut hub_kills = 0;
    for step in 0..8 {
        let mut children = Vec::new();
        for t in &towns {
            children.push(t.node.spawn(&["sync"])?);
        }
        // A large round's storm opens with the county SIGKILLed in the middle of merging the big
        // change set (all of it uploaded, none of it applied): the longest window a kill can hit.
        let fault = rng.random_range(0..5);
        match if large && step == 0 { 5 } else { fault } {
            0 => {
                std::thread::sleep(Duration::from_millis(rng.random_range(0..300)));
                county.kill9();
                hub_kills += 1;
                county.start()?;
            }
            5 => {
                kill_mid_merge(&mut county, TOWNSHIPS[0])?;
                hub_kills += 1;
                county.start()?;
            }
            1 => {
                let t = &towns[rng.random_range(0..towns.len())];
                t.proxy.set_partitioned(true);
                std::thread::sleep(Duration::from_millis(rng.random_range(50..300)));
                t.proxy.set_partitioned(false);
            }
            2 => {
                // A clerk's edit lands while a sync may be running.
                let t = &towns[rng.random_range(0..towns.len())];
                let hh = format!("{}200-{:04}", t.node.township, rng.random_range(1..40));
                let _ = t.node.cmd(&[
                    "household",
                    "edit",
                    &hh,
                    "--set",
                    &format!("phone=1380000{step:04}"),
                    "--year",
                    &year,
                ]);
            }
            _ => std::thread::sleep(Duration::from_millis(rng.random_range(0..400))),
        }
        for mut c in children {
            if rng.random_bool(0.5) {
                let _ = c.kill(); // SIGKILL mid-sync
            }
            let _ = c.wait();
        }
    }

    // Heal, drain, then check every invariant.
    for t in &towns {
        t.proxy.set_partitioned(false);
        t.proxy.set_faults(Faults::clean());
    }
    for t in &towns {
        let mut ok = false;
        let mut last = String::new();
        for _ in 0..20 {
            let out = t.node.cmd_raw(&["sync"])?;
            last = String::from_utf8_lossy(&out.stderr).into_owned();
            if out.status.success() {
                let s: serde_json::Value = serde_json::from_str(&t.node.cmd(&["status", "--json"])?)?;
                if s["pending_changes"] == 0 && s["unacknowledged_change_sets"] == 0 {
                    ok = true;
                    break;
                }
            }
        }
        ensure!(ok, "{} never drained after the link healed; last sync: {last}", t.node.township);
        let v = t.node.cmd_raw(&["verify", "--year", &year, "--json"])?;
        let report: serde_json::Value = serde_json::from_slice(&v.stdout).unwrap_or_default();
        ensure!(v.status.success() && report["identical"] == true, "{}: digests differ: {report}", t.node.township);
        check_change_sets_once(&t.node, &county)?;
    }
    let largest = largest_change_set(&towns[0].node, &county)?;
    if large {
        ensure!(
            largest.household_ops >= 5_000,
            "the large township's largest change set at the county: {largest:?} (not 5,000 household ops)"
        );
    }
    let admitted = admitted_people(&county, &year)?;
    ensure!(admitted <= CEILING, "ceiling {CEILING} exceeded: {admitted} people admitted");
    ensure!(admitted > 0, "nobody admitted: the round exercised nothing");
    county.cmd(&["audit", "verify"]).context("audit chain")?;

    // Upward: the county forwards while the province, or the forwarding process itself, is SIGKILLed.
    let mut province_kills = 0;
    for _ in 0..3 {
        let mut fwd = county.spawn_cmd(&["forward"])?;
        std::thread::sleep(Duration::from_millis(rng.random_range(0..150)));
        if rng.random_bool(0.5) {
            province.kill9();
            province_kills += 1;
            province.start()?;
        } else {
            let _ = fwd.kill();
        }
        let _ = fwd.wait();
    }
    county.cmd(&["signoff", "--year", &year, "--period", "chaos"])?;
    county.cmd(&["forward"]).context("forward after the storm")?;
    let county_records = live_records(&county, "420322")?;
    let province_records = live_records(&province, "420322")?;
    ensure!(
        county_records == province_records,
        "the province holds {} of the county's records, the county {}",
        province_records.len(),
        county_records.len()
    );
    let signoffs: i64 = rusqlite::Connection::open(province.dir.join("hub.db"))?.query_row(
        "SELECT count(*) FROM signoffs WHERE county = '420322'",
        [],
        |r| r.get(0),
    )?;
    ensure!(signoffs == 1, "the province holds {signoffs} sign-offs of the county");
    province.cmd(&["audit", "verify"]).context("province audit chain")?;
    let faults: u64 = towns
        .iter()
        .map(|t| {
            let s = t.proxy.stats();
            s.dropped.load(std::sync::atomic::Ordering::Relaxed)
                + s.cut.load(std::sync::atomic::Ordering::Relaxed)
                + s.duplicated.load(std::sync::atomic::Ordering::Relaxed)
        })
        .sum();
    eprintln!(
        "chaos round {seed:#x}: {admitted}/{CEILING} people admitted, county SIGKILLed {hub_kills}×, province {province_kills}×, {faults} link faults, largest change set {} ops ({} household ops)",
        largest.ops, largest.household_ops
    );
    Ok(())
}

/// The county holds each of the node's change sets exactly once, byte-identical (same hash).
fn check_change_sets_once(node: &Node, county: &Hub) -> anyhow::Result<()> {
    let node_db = rusqlite::Connection::open(node.dir.join("node.db"))?;
    let mine: Vec<(i64, String)> = node_db
        .prepare("SELECT seq, lower(hex(hash)) FROM envelopes ORDER BY seq")?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()?;
    let hub_db = rusqlite::Connection::open(county.dir.join("hub.db"))?;
    let theirs: Vec<(i64, String)> = hub_db
        .prepare("SELECT seq, lower(hash) FROM envelopes WHERE origin = ?1 ORDER BY seq")?
        .query_map([&node.township], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()?;
    if mine != theirs {
        bail!("{}: node sealed {:?}, county holds {:?}", node.township, mine, theirs);
    }
    let equivocations: i64 = hub_db.query_row("SELECT count(*) FROM equivocations", [], |r| r.get(0))?;
    ensure!(equivocations == 0, "the county saw {equivocations} equivocations");
    Ok(())
}

/// SIGKILLs the county once `origin`'s first change set has arrived whole by chunked upload and
/// while it is being merged, checking that the kill landed there (nothing of it applied).
fn kill_mid_merge(county: &mut Hub, origin: &str) -> anyhow::Result<()> {
    let db = rusqlite::Connection::open(county.dir.join("hub.db"))?;
    db.busy_timeout(Duration::from_secs(5))?;
    let count = |sql: &str| db.query_row(sql, [origin], |r| r.get::<_, i64>(0));
    let deadline = Instant::now() + Duration::from_secs(120);
    while count("SELECT count(*) FROM uploads WHERE origin = ?1 AND seq = 1 AND length(data) = total")? == 0 {
        ensure!(Instant::now() < deadline, "{origin}'s first change set never arrived whole");
        ensure!(
            count("SELECT count(*) FROM envelopes WHERE origin = ?1")? == 0,
            "{origin}'s change set was sent whole"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    county.kill9();
    let merged = count("SELECT count(*) FROM envelopes WHERE origin = ?1")?;
    ensure!(merged == 0, "the county had merged {origin}'s change set before the kill");
    Ok(())
}

/// The largest change set (by household ops) the county holds from `node`, opened from its bytes.
fn largest_change_set(node: &Node, county: &Hub) -> anyhow::Result<Arrived> {
    let arrived = arrived_change_sets(county, node)?;
    arrived.into_iter().max_by_key(|a| a.household_ops).context("the county holds no change set of the node")
}

/// Keys and field values of the live records of `region` a hub holds (the writer of each field aside).
fn live_records(hub: &Hub, region: &str) -> anyhow::Result<std::collections::BTreeMap<String, Vec<String>>> {
    let db = rusqlite::Connection::open(hub.dir.join("hub.db"))?;
    let mut stmt = db.prepare("SELECT k, fields FROM records WHERE deleted = 0 AND region LIKE ?1 || '%'")?;
    let rows: Vec<(String, String)> =
        stmt.query_map([region], |r| Ok((r.get(0)?, r.get(1)?)))?.collect::<Result<_, _>>()?;
    let mut out = std::collections::BTreeMap::new();
    for (k, fields) in rows {
        let f: serde_json::Value = serde_json::from_str(&fields)?;
        out.insert(k, stored_values(&f).into_iter().map(|(name, v)| format!("{name}={v}")).collect());
    }
    Ok(out)
}

/// People in households the county admitted (county.decision = 认定), counted from its records.
fn admitted_people(county: &Hub, year: &str) -> anyhow::Result<u64> {
    let db = rusqlite::Connection::open(county.dir.join("hub.db"))?;
    let mut admitted = std::collections::HashSet::new();
    let mut stmt = db.prepare("SELECT kind, id, hh, fields FROM records WHERE year = ?1 AND deleted = 0")?;
    let rows: Vec<(i64, String, String, String)> =
        stmt.query_map([year], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?.collect::<Result<_, _>>()?;
    for (kind, id, _, fields) in &rows {
        let f: serde_json::Value = serde_json::from_str(fields)?;
        if *kind == 0 && stored_value(&f, "county.decision") == Some("认定") {
            admitted.insert(id.clone());
        }
    }
    Ok(rows.iter().filter(|(kind, _, hh, _)| *kind == 1 && admitted.contains(hh)).count() as u64)
}

#[test]
fn chaos_rounds_keep_every_invariant() {
    let rounds: u64 = std::env::var("JIANKA_CHAOS_ROUNDS").ok().and_then(|s| s.parse().ok()).unwrap_or(3);
    let seeds: Vec<u64> = match std::env::var("JIANKA_CHAOS_SEED").ok().and_then(|s| s.parse().ok()) {
        Some(s) => vec![s],
        None => (0..rounds).map(|r| 0x5eed_0000 + r).collect(),
    };
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    for seed in seeds {
        let tmp = tempfile::tempdir().unwrap();
        if let Err(e) = round(seed, tmp.path(), &rt) {
            let kept = tmp.keep();
            panic!("chaos round failed: {e:#}\nreplay with JIANKA_CHAOS_SEED={seed}; files kept in {}", kept.display());
        }
    }
}
