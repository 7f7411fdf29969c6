//! Setup for the tests at scale: a county hub with a people ceiling, township nodes whose clerks
//! import households and move them to 县复审 offline before their first sync, and what the
//! county decided, read from its own database.
//!
//! Time is pinned with `JIANKA_NOW` to the 2014 registration (as the January-cycle test does), so
//! the workflow's notice dates lie in the past whatever day the suite runs.

use crate::generate::{Generator, write_csv};
use crate::harness::{Hub, Node};
use anyhow::{Context, ensure};
use jianka_shared::domain::{Household, Status};
use std::collections::BTreeMap;
use std::path::Path;

/// The clock of every hub and node process of these tests.
pub const REGISTRATION: &str = "2014-06-01T09:00:00+08:00";
pub const YEAR: &str = "2014";
/// 民主评议, 村公示 (7 days after the meeting), 乡镇审核, 乡镇公示 (7 days), 县复审.
pub const WORKFLOW_DATES: [&str; 5] = ["2014-05-05", "2014-05-06", "2014-05-13", "2014-05-14", "2014-05-21"];

pub fn at(time: &str) -> Vec<(String, String)> {
    vec![("JIANKA_NOW".into(), time.into())]
}

/// Province (not serving: it only issues the county's certificate) and a serving county hub
/// with the Hubei 2014 profile (scale control on) and a ceiling of `people`.
pub fn county(root: &Path, county: &str, people: u64) -> anyhow::Result<(Hub, Hub)> {
    std::fs::create_dir_all(root)?;
    let profile = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/profiles/hubei-2014.toml").canonicalize()?;
    let quotas = root.join("quotas.toml");
    std::fs::write(&quotas, format!("[[counties]]\ncounty = \"{county}\"\npeople = {people}\nvillages = 10\n"))?;
    let (p, q) = (profile.to_str().context("utf-8")?, quotas.to_str().context("utf-8")?);
    let province = Hub::init_with(&root.join("province"), &county[..2], &["--profile", p], at(REGISTRATION))?;
    let mut hub = Hub::init_with(
        &root.join("county"),
        county,
        &["--parent-url", &province.url(), "--profile", p, "--quotas", q],
        at(REGISTRATION),
    )?;
    let chain = province.enroll(county, &hub.dir.join("hub.key"))?;
    hub.cmd(&["install-chain", chain.to_str().context("utf-8")?])?;
    province.allocate_to(&hub, YEAR, people, 10)?;
    hub.start()?;
    Ok((province, hub))
}

/// A node for `township`, enrolled at `county` and trusting its chain.
pub fn township_node(dir: &Path, county: &Hub, township: &str) -> anyhow::Result<Node> {
    let node = Node::init_with(dir, township, &county.url(), at(REGISTRATION))?;
    let chain = county.enroll(township, &node.key_file())?;
    node.cmd(&["trust", chain.to_str().context("utf-8")?])?;
    Ok(node)
}

/// `n` households of `villages` in turn, numbered within their village (`<village>-0001`, …).
pub fn households(generator: &mut Generator, villages: &[&str], n: usize) -> Vec<Household> {
    let mut numbers = vec![0u32; villages.len()];
    (0..n)
        .map(|i| {
            let v = i % villages.len();
            numbers[v] += 1;
            generator.household(villages[v], numbers[v], Status::Applied)
        })
        .collect()
}

/// A copy of `template`'s directory (same key, same outbox), enrolled at and pointed to
/// `county`: the same township's work judged by another hub. The template must not be running.
pub fn copy_node(template: &Node, dir: &Path, county: &Hub) -> anyhow::Result<Node> {
    std::fs::create_dir_all(dir)?;
    for entry in std::fs::read_dir(&template.dir)? {
        let entry = entry?;
        std::fs::copy(entry.path(), dir.join(entry.file_name()))?;
    }
    let node = Node {
        township: template.township.clone(),
        dir: dir.to_path_buf(),
        config: dir.join("node.toml"),
        envs: template.envs.clone(),
    };
    node.set_hub_url(&county.url())?;
    let chain = county.enroll(&node.township, &node.key_file())?;
    node.cmd(&["trust", chain.to_str().context("utf-8")?])?;
    Ok(node)
}

/// The clerk's offline work, part one: the 扶贫手册 imported (every household at 申请).
pub fn import(node: &Node, households: &[Household]) -> anyhow::Result<()> {
    let csv = node.dir.join("扶贫手册.csv");
    write_csv(std::fs::File::create(&csv)?, households)?;
    node.cmd(&["import", csv.to_str().context("utf-8")?, "--year", YEAR])?;
    Ok(())
}

/// The clerk's offline work, part two: every one of the township's `n` households moved through
/// the five workflow steps to 县复审 (`workflow advance --all`), checking that none was left behind.
pub fn advance_to_county_review(node: &Node, n: usize) -> anyhow::Result<()> {
    for (step, date) in WORKFLOW_DATES.iter().enumerate() {
        let mut args = vec!["workflow", "advance", "--all", "--date", date, "--year", YEAR, "--json"];
        if step == 0 {
            args.extend(["--minutes", "村民代表大会评议通过"]);
        }
        let out: serde_json::Value = serde_json::from_str(&node.cmd(&args)?)?;
        let advanced = out["advanced"].as_array().map_or(0, Vec::len);
        let refused = out["refused"].as_array().map_or(0, Vec::len);
        ensure!(
            advanced == n && refused == 0,
            "{} step {}: {advanced} of {n} households advanced, {refused} refused",
            node.township,
            step + 1,
        );
    }
    Ok(())
}

/// Both parts of the clerk's offline work.
pub fn register_offline(node: &Node, households: &[Household]) -> anyhow::Result<()> {
    import(node, households)?;
    advance_to_county_review(node, households.len())
}

/// What the county holds about one household.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decided {
    pub status: String,
    pub decision: String,
    pub reason: String,
    /// Live member records the county holds for it.
    pub people: u64,
}

/// Every live household of `year` the county holds, by id, read from its SQLite file.
pub fn county_households(county: &Hub, year: &str) -> anyhow::Result<BTreeMap<String, Decided>> {
    let db = rusqlite::Connection::open(county.dir.join("hub.db"))?;
    let field =
        |f: &serde_json::Value, name: &str| crate::stored::stored_value(f, name).unwrap_or_default().to_string();
    let mut out = BTreeMap::new();
    let mut stmt = db.prepare("SELECT id, fields FROM records WHERE year = ?1 AND kind = 0 AND deleted = 0")?;
    for row in stmt.query_map([year], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))? {
        let (id, fields) = row?;
        let f: serde_json::Value = serde_json::from_str(&fields)?;
        let d = Decided {
            status: field(&f, "status"),
            decision: field(&f, "county.decision"),
            reason: field(&f, "county.reason"),
            people: 0,
        };
        out.insert(id, d);
    }
    let mut stmt =
        db.prepare("SELECT hh, count(*) FROM records WHERE year = ?1 AND kind = 1 AND deleted = 0 GROUP BY hh")?;
    for row in stmt.query_map([year], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))? {
        let (hh, n) = row?;
        if let Some(d) = out.get_mut(&hh) {
            d.people = n as u64;
        }
    }
    Ok(out)
}

/// Households of `year` the node holds an open rejection for: (reason code, message) by id.
pub fn node_rejections(node: &Node, year: &str) -> anyhow::Result<BTreeMap<String, (String, String)>> {
    let db = rusqlite::Connection::open(node.dir.join("node.db"))?;
    let mut stmt = db.prepare(
        "SELECT rid, reason, message FROM rejections WHERE kind = 'household' AND year = ?1 AND resolved_ms IS NULL",
    )?;
    let rows = stmt.query_map([year], |r| Ok((r.get::<_, String>(0)?, (r.get(1)?, r.get(2)?))))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// The status of every household of `year` in the node's replica, by id.
pub fn node_statuses(node: &Node, year: &str) -> anyhow::Result<BTreeMap<String, String>> {
    let db = rusqlite::Connection::open(node.dir.join("node.db"))?;
    let mut stmt = db.prepare("SELECT id, data FROM records WHERE kind = 'household' AND year = ?1 AND deleted = 0")?;
    let mut out = BTreeMap::new();
    for row in stmt.query_map([year], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))? {
        let (id, data) = row?;
        let f: serde_json::Value = serde_json::from_str(&data)?;
        out.insert(id, f["status"][0].as_str().unwrap_or_default().to_string());
    }
    Ok(out)
}

/// `jianka-node verify`: the node's digests and the county's agree (exit code 0, `identical`).
pub fn verify_identical(node: &Node, year: &str) -> anyhow::Result<()> {
    let out = node.cmd_raw(&["verify", "--year", year, "--json"])?;
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    ensure!(
        out.status.success() && report["identical"] == true,
        "{}: verify found differences ({}): {report}",
        node.township,
        out.status
    );
    Ok(())
}

/// Sizes of the change sets the county accepted from `origin`, in sequence order.
pub fn county_change_sets(county: &Hub, origin: &str) -> anyhow::Result<Vec<u64>> {
    let db = rusqlite::Connection::open(county.dir.join("hub.db"))?;
    let mut stmt = db.prepare("SELECT ops FROM envelopes WHERE origin = ?1 ORDER BY seq")?;
    let ops = stmt.query_map([origin], |r| r.get::<_, i64>(0))?.collect::<Result<Vec<_>, _>>()?;
    Ok(ops.into_iter().map(|n| n as u64).collect())
}

/// One change set the county accepted from `node`, opened from the bytes it kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Arrived {
    pub seq: u64,
    pub ops: u64,
    pub household_ops: u64,
}

/// The change sets the county keeps from `node`: each verified against the node's key and
/// opened, its ops counted by kind (and checked against the county's `envelopes.ops`).
pub fn arrived_change_sets(county: &Hub, node: &Node) -> anyhow::Result<Vec<Arrived>> {
    use jianka_shared::RecordKind;
    use jianka_shared::changeset::{Limits, open};
    let key = jianka_keyfile::Keypair::read(&node.key_file())?.public();
    let db = rusqlite::Connection::open(county.dir.join("hub.db"))?;
    let mut stmt = db.prepare("SELECT seq, ops, bytes FROM envelopes WHERE origin = ?1 ORDER BY seq")?;
    let rows =
        stmt.query_map([&node.township], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?, r.get::<_, Vec<u8>>(2)?)))?;
    let mut out = Vec::new();
    for row in rows {
        let (seq, ops, bytes) = row?;
        let cs =
            open(&bytes, &key, Limits::default()).with_context(|| format!("change set #{seq} kept by the county"))?;
        ensure!(cs.ops.len() as i64 == ops, "change set #{seq}: {} ops, the county counted {ops}", cs.ops.len());
        let household_ops = cs.ops.iter().filter(|o| o.key().kind == RecordKind::Household).count() as u64;
        out.push(Arrived { seq: seq as u64, ops: ops as u64, household_ops });
    }
    Ok(out)
}
