//! A county forwarding to its province through the fault proxy: the setup the forward test and
//! the forward benchmark share. The county is filled by a real township node (import, sync over
//! a clean link); only the county → province link goes through the proxy.

use crate::generate::{Generator, write_csv};
use crate::harness::{Hub, Node};
use crate::proxy::{FaultProxy, Faults};
use anyhow::{Context, ensure};
use jianka_shared::domain::Status;
use std::path::Path;

pub const COUNTY: &str = "420322";
pub const TOWNSHIP: &str = "420322105";

/// A serving province and the fault proxy in front of it.
pub struct Upstream {
    pub province: Hub,
    pub proxy: FaultProxy,
}

/// A fresh province in `dir`, serving behind `faults`.
pub fn province_behind_proxy(
    rt: &tokio::runtime::Runtime,
    dir: &Path,
    faults: Faults,
    seed: u64,
) -> anyhow::Result<Upstream> {
    let mut province = Hub::init(dir, &COUNTY[..2], &[])?;
    let proxy = rt.block_on(FaultProxy::start(province.addr, faults, seed))?;
    province.start()?;
    Ok(Upstream { province, proxy })
}

/// A fresh county in `dir` (not serving) whose `parent_url` is `up`'s proxy, enrolled at its province.
pub fn county_of(up: &Upstream, dir: &Path) -> anyhow::Result<Hub> {
    let county = Hub::init(dir, COUNTY, &["--parent-url", &up.proxy.url()])?;
    enroll_at(up, &county)?;
    Ok(county)
}

fn enroll_at(up: &Upstream, county: &Hub) -> anyhow::Result<()> {
    let chain = up.province.enroll(COUNTY, &county.dir.join("hub.key"))?;
    county.cmd(&["install-chain", chain.to_str().context("utf-8 path")?])?;
    Ok(())
}

/// Serves `county` while one township node imports `households` (spread over ten villages) and
/// syncs them to it; returns the records the county then holds. The county stops serving after.
pub fn fill_county(root: &Path, county: &mut Hub, households: u32, seed: u64) -> anyhow::Result<u64> {
    county.start()?;
    let node = Node::init(&root.join("node"), TOWNSHIP, &county.url())?;
    let chain = county.enroll(TOWNSHIP, &node.key_file())?;
    node.cmd(&["trust", chain.to_str().context("utf-8 path")?])?;
    let mut g = Generator::new(seed, 2014);
    let villages: Vec<String> = (200..210).map(|v| format!("{TOWNSHIP}{v}")).collect();
    let hs: Vec<_> = (0..households)
        .map(|i| g.household(&villages[i as usize % villages.len()], i / villages.len() as u32 + 1, Status::Applied))
        .collect();
    let csv = root.join("扶贫手册.csv");
    write_csv(std::fs::File::create(&csv)?, &hs)?;
    node.cmd(&["import", csv.to_str().context("utf-8 path")?, "--year", "2014"])?;
    node.cmd(&["sync"])?;
    let status: serde_json::Value = serde_json::from_str(&node.cmd(&["status", "--json"])?)?;
    ensure!(status["unacknowledged_change_sets"].as_u64() == Some(0), "the node did not drain: {status}");
    county.kill9();
    live_records(county, COUNTY)
}

/// Copies a county that is not running (its key, chain, database) to `dir`, pointed at `up`'s
/// proxy and enrolled at its province: the same data, ready to be forwarded to another province.
pub fn copy_county(template: &Hub, dir: &Path, up: &Upstream) -> anyhow::Result<Hub> {
    std::fs::create_dir_all(dir)?;
    for entry in std::fs::read_dir(&template.dir)? {
        let entry = entry?;
        if entry.file_type()?.is_file() {
            std::fs::copy(entry.path(), dir.join(entry.file_name()))?;
        }
    }
    let config = dir.join("hub.toml");
    let text = std::fs::read_to_string(&config)?;
    let mut doc: toml::Table = toml::from_str(&text)?;
    doc.insert("parent_url".into(), toml::Value::String(up.proxy.url()));
    std::fs::write(&config, toml::to_string(&doc)?)?;
    let county = Hub::existing(dir, COUNTY);
    enroll_at(up, &county)?;
    Ok(county)
}

/// Live (not deleted) records of `region` and below the hub holds.
pub fn live_records(hub: &Hub, region: &str) -> anyhow::Result<u64> {
    let db = rusqlite::Connection::open(hub.dir.join("hub.db"))?;
    let n: i64 =
        db.query_row("SELECT COUNT(*) FROM records WHERE deleted = 0 AND region LIKE ?1 || '%'", [region], |r| {
            r.get(0)
        })?;
    Ok(n.max(0) as u64)
}
