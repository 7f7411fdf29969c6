//! The three-tier demo: one province hub, two county hubs (郧西县 420322, 竹山县 420323) and two
//! townships each, on loopback with SQLite everywhere. It generates realistic households, imports
//! them through the clerk's importer, syncs through a link that drops and cuts requests, runs into
//! a county ceiling, meets a duplicate person and resolves it, signs off, consolidates at the
//! province, and prints what happened at each tier and where the databases are.

use anyhow::Context;
use jianka_shared::domain::Status;
use jianka_tests::generate::{Generator, write_csv};
use jianka_tests::harness::{Hub, Node};
use jianka_tests::proxy::{FaultProxy, Faults};
use jianka_tests::regions::Regions;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::Instant;

const YEAR: &str = "2014";
/// The demo replays the 2014 registration: every process's clock reads this (JIANKA_NOW).
const NOW: &str = "2014-06-01T09:00:00+08:00";
const HOUSEHOLDS_PER_TOWNSHIP: u32 = 150;
/// 郧西县's people ceiling in the demo: below what its townships submit, so the ceiling bites.
const YUNXI_CEILING: u64 = 700;

struct Township {
    code: String,
    name: String,
    node: Node,
    households: u32,
}

struct County {
    code: String,
    name: String,
    hub: Hub,
    proxy: FaultProxy,
    townships: Vec<Township>,
}

#[tokio::main(flavor = "multi_thread", worker_threads = 4)]
async fn main() -> anyhow::Result<()> {
    // Build (or find) the two binaries first, so the timing below is the demo's own.
    let build = Instant::now();
    tokio::task::block_in_place(|| jianka_tests::harness::binary("jianka-hub"));
    println!("jianka-hub and jianka-node ready ({:.0}s)", build.elapsed().as_secs_f64());
    let started = Instant::now();
    let out = PathBuf::from(std::env::args().nth(1).unwrap_or_else(|| "demo-output".into()));
    if out.exists() {
        std::fs::remove_dir_all(&out).with_context(|| format!("clearing {}", out.display()))?;
    }
    std::fs::create_dir_all(&out)?;
    let out = out.canonicalize()?;
    let regions = Regions::load_fixture()?;
    println!("Jianka three-tier demo (建档立卡 {YEAR}); everything lives in {}", out.display());

    // Configuration: the Hubei 2014 profile (scale control) and the province's quota split.
    let profile = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/profiles/hubei-2014.toml").canonicalize()?;
    let quotas = out.join("quotas.toml");
    std::fs::write(
        &quotas,
        format!(
            "# People and poor-village ceilings set by the province (规模控制).\n\
             [[counties]]\ncounty = \"420322\"\npeople = {YUNXI_CEILING}\nvillages = 10\n\n\
             [[counties]]\ncounty = \"420323\"\npeople = 100000\nvillages = 10\n"
        ),
    )?;
    let p = profile.to_str().context("utf-8")?;
    let q = quotas.to_str().context("utf-8")?;

    tokio::task::block_in_place(|| -> anyhow::Result<()> {
        step("province hub 湖北省 (42): init and start");
        let mut province = Hub::init_with(&out.join("province-42"), "42", &["--profile", p, "--quotas", q], clock())?;
        province.start()?;

        let mut counties = Vec::new();
        for code in ["420322", "420323"] {
            let name = regions.name_of(code).to_string();
            step(&format!("county hub {name} ({code}): init, enrolled by the province, start"));
            let mut hub = Hub::init_with(
                &out.join(format!("county-{code}")),
                code,
                &["--parent-url", &province.url(), "--profile", p, "--quotas", q],
                clock(),
            )?;
            let chain = province.enroll(code, &hub.dir.join("hub.key"))?;
            hub.cmd(&["install-chain", chain.to_str().context("utf-8")?])?;
            // 规模分解: the county's ceiling is the one the province signs, not its own file.
            let people = if code == "420322" { YUNXI_CEILING } else { 100_000 };
            province.allocate_to(&hub, YEAR, people, 10)?;
            hub.start()?;
            let proxy = tokio::runtime::Handle::current().block_on(FaultProxy::start(
                hub.addr,
                Faults::lossy(0.3),
                code.parse::<u64>()?,
            ))?;
            counties.push(County { code: code.into(), name, hub, proxy, townships: Vec::new() });
        }

        // Townships: the first two of each county, households generated per village.
        let mut generator = Generator::new(2014, 2014);
        let mut first_member_elsewhere: Option<String> = None;
        for county in &mut counties {
            for t in regions.townships_of(&county.code).into_iter().take(2) {
                let node =
                    Node::init_with(&out.join(format!("township-{}", t.code)), &t.code, &county.proxy.url(), clock())?;
                let chain = county.hub.enroll(&t.code, &node.key_file())?;
                node.cmd(&["trust", chain.to_str().context("utf-8")?])?;
                let villages: Vec<String> = regions.villages_of(&t.code).iter().map(|v| v.code.clone()).collect();
                let mut hs: Vec<_> = (0..HOUSEHOLDS_PER_TOWNSHIP)
                    .map(|i| generator.household(&villages[i as usize % villages.len()], i + 1, Status::Applied))
                    .collect();
                // The same person registered in two townships (分户 / 空挂户): a duplicate the county must settle.
                match &first_member_elsewhere {
                    None if county.code == "420322" => {
                        first_member_elsewhere = Some(hs[0].members.last().expect("member").id_number.to_string())
                    }
                    Some(id) if county.code == "420322" => {
                        let mut dup = hs[0].members[0].clone();
                        dup.id_number = jianka_shared::IdNumber::parse_stored(id)?;
                        dup.relation = jianka_shared::labels::Relation::Other;
                        dup.sex = dup.id_number.sex();
                        hs[1].members.push(dup);
                        let n = hs[1].members.len() as i64;
                        hs[1].income = jianka_shared::Yuan(hs[1].income_per_capita.fen() * n);
                        first_member_elsewhere = Some(String::new());
                    }
                    _ => {}
                }
                let csv = out.join(format!("township-{}/扶贫手册-{YEAR}.csv", t.code));
                write_csv(std::fs::File::create(&csv)?, &hs)?;
                step(&format!("{} {} ({}): import {} households", county.name, t.name, t.code, hs.len()));
                let report = node.cmd(&["import", csv.to_str().context("utf-8")?, "--year", YEAR])?;
                indent(&report);
                // The village and township work: appraisal, two 7-day notices, hand-over to the county.
                for (date, extra) in [
                    ("2014-05-05", vec!["--minutes", "村民代表大会评议通过"]),
                    ("2014-05-06", vec![]),
                    ("2014-05-13", vec![]),
                    ("2014-05-14", vec![]),
                    ("2014-05-21", vec![]),
                ] {
                    let mut args = vec!["workflow", "advance", "--all", "--date", date, "--year", YEAR];
                    args.extend(extra);
                    node.cmd(&args)?;
                }
                county.townships.push(Township {
                    code: t.code.clone(),
                    name: t.name.clone(),
                    node,
                    households: hs.len() as u32,
                });
            }
        }

        step("sync every township through a link losing 30% of requests (half dropped, half cut mid-answer)");
        for county in &counties {
            for t in &county.townships {
                let passes = sync_until_drained(&t.node)?;
                println!("    {} {}: outbox drained after {passes} sync passes", county.name, t.name);
            }
            let s = county.proxy.stats();
            println!(
                "    link to {}: {} requests, {} dropped, {} cut",
                county.name,
                s.requests.load(Ordering::Relaxed),
                s.dropped.load(Ordering::Relaxed),
                s.cut.load(Ordering::Relaxed)
            );
        }

        step("郧西县 settles the duplicate person (same ID number in two townships)");
        let yunxi = &counties[0];
        let conflicts: serde_json::Value = serde_json::from_str(&yunxi.hub.cmd(&["conflicts", "list", "--json"])?)?;
        println!("    conflicts held for the county: {}", conflicts.as_array().map(|a| a.len()).unwrap_or(0));
        if let Some(c) = conflicts.as_array().and_then(|a| a.first()) {
            indent(&serde_json::to_string(c)?);
            let id = c["id"].as_i64().context("conflict id")?;
            // The person stays where the county's home visit found them: here, the first household.
            let keep = c["current_value"].as_str().context("conflict names no household")?.to_string();
            yunxi.hub.cmd(&[
                "conflicts",
                "resolve",
                &id.to_string(),
                "--keep",
                &keep,
                "--reason",
                "入户核查：常住该户",
            ])?;
            println!("    resolved: the person stays in {keep}");
        }
        for county in &counties {
            for t in &county.townships {
                sync_until_drained(&t.node)?;
                let v = t.node.cmd_raw(&["verify", "--year", YEAR, "--json"])?;
                let report: serde_json::Value = serde_json::from_slice(&v.stdout).unwrap_or_default();
                if v.status.success() {
                    println!(
                        "    {} {}: verify: {} records identical at node and county",
                        county.name, t.name, report["local_count"]
                    );
                } else {
                    println!(
                        "    {} {}: verify: DIFFERENT: only at the node {}, only at the county {}, differing {}",
                        county.name, t.name, report["only_local"], report["only_hub"], report["differing"]
                    );
                }
            }
        }

        step("what the counties decided, as each township sees it (jianka-node status)");
        for county in &counties {
            for t in &county.townships {
                let st: serde_json::Value = serde_json::from_str(&t.node.cmd(&["status", "--json"])?)?;
                let mut reasons: std::collections::BTreeMap<String, usize> = Default::default();
                for r in st["rejections"].as_array().into_iter().flatten() {
                    *reasons.entry(r["reason"].as_str().unwrap_or("?").to_string()).or_default() += 1;
                }
                println!(
                    "    {} {}: households by status {}; to act on: {}",
                    county.name,
                    t.name,
                    st["households_by_status"],
                    if reasons.is_empty() { "nothing".to_string() } else { format!("{reasons:?}") }
                );
            }
        }

        step("counties sign off and forward to the province");
        for county in &counties {
            let signoff: serde_json::Value = serde_json::from_str(&county.hub.cmd(&[
                "signoff",
                "--year",
                YEAR,
                "--period",
                "2014-registration",
            ])?)?;
            println!(
                "    {} signed off {} records: {} households, {} people, quota used {} of {}; digest {}…",
                county.name,
                signoff["record_count"],
                signoff["summary"]["households"],
                signoff["summary"]["people"],
                signoff["summary"]["quota_used"],
                signoff["summary"]["quota_people"],
                signoff["digest"].as_str().unwrap_or_default().get(..16).unwrap_or_default()
            );
            indent(&county.hub.cmd(&["forward"])?);
        }

        step("what each tier holds");
        for county in &counties {
            println!("  {} ({}) — {}", county.name, county.code, county.hub.dir.join("hub.db").display());
            indent(&county.hub.cmd(&["report"])?);
            for t in &county.townships {
                println!(
                    "    township {} ({}) — {} households imported — {}",
                    t.name,
                    t.code,
                    t.households,
                    t.node.dir.join("node.db").display()
                );
            }
        }
        println!("  湖北省 (42) — {}", province.dir.join("hub.db").display());
        indent(&province.cmd(&["report"])?);
        let audit = province.cmd(&["audit", "verify"])?;
        indent(&audit);
        province.kill9();
        for c in &mut counties {
            c.hub.kill9();
        }
        Ok(())
    })?;
    println!(
        "\ndone in {:.1}s; the databases are left in {} for you to look into (sqlite3 FILE).",
        started.elapsed().as_secs_f64(),
        out.display()
    );
    Ok(())
}

fn clock() -> Vec<(String, String)> {
    vec![("JIANKA_NOW".into(), NOW.into())]
}

fn step(s: &str) {
    println!("\n== {s}");
}

fn indent(s: &str) {
    for line in s.lines().filter(|l| !l.trim().is_empty()) {
        println!("    {line}");
    }
}

/// Runs `sync` until a pass succeeds with nothing left pending or unacknowledged; returns the passes taken.
fn sync_until_drained(node: &Node) -> anyhow::Result<u32> {
    let mut last_error = String::new();
    for pass in 1..=100 {
        let out = node.cmd_raw(&["sync"])?;
        let ok = out.status.success();
        if !ok {
            last_error = String::from_utf8_lossy(&out.stderr)
                .lines()
                .filter(|l| !l.contains(" WARN "))
                .collect::<Vec<_>>()
                .join(" | ");
        }
        let status: serde_json::Value = serde_json::from_str(&node.cmd(&["status", "--json"])?)?;
        if ok
            && status["pending_changes"].as_u64() == Some(0)
            && status["unacknowledged_change_sets"].as_u64() == Some(0)
        {
            return Ok(pass);
        }
    }
    anyhow::bail!("{} did not drain its outbox in 100 passes; last error: {last_error}", node.township)
}
