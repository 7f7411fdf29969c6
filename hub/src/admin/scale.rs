//! 规模分解 input: the weights (`region,weight`) and village lists (`region,villages,class`) an
//! officer splits a number by, read with every bad line named, and the classes' shares; the
//! splitting itself is `jianka_shared::scale` (pure).

use anyhow::{Context, bail};
use jianka_shared::scale::{ClassShare, parse_weight};
use jianka_shared::{RegionCode, Tier};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// The regions a split may name: inside `hub`, of the tier it splits to (when the split is made
/// for a hub), and listed in the official code list (when one is given, see [`read_region_list`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct Within<'a> {
    pub hub: Option<&'a RegionCode>,
    pub known: Option<&'a RegionList>,
}

/// Region codes that exist (统计用区划代码), e.g. from the 2023 tables' `areas.csv` or
/// `streets.csv`: a code not listed is an unknown region.
#[derive(Debug, Clone, Default)]
pub struct RegionList {
    path: String,
    codes: BTreeSet<String>,
}

/// Reads a region list: a CSV whose first column is `code` (further columns, such as the name,
/// are ignored).
pub fn read_region_list(path: &Path) -> anyhow::Result<RegionList> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut reader = csv::ReaderBuilder::new().has_headers(true).flexible(true).from_reader(text.as_bytes());
    let first =
        reader.headers().ok().and_then(|h| h.get(0).map(|c| c.trim().trim_start_matches('\u{feff}').to_string()));
    if first.as_deref() != Some("code") {
        bail!("{}:1: a region list's first column must be `code` (as in the 2023 tables' areas.csv)", path.display());
    }
    let mut codes = BTreeSet::new();
    for record in reader.records() {
        let record = record.with_context(|| format!("{}: not CSV", path.display()))?;
        if let Some(code) = record.get(0).map(str::trim).filter(|c| !c.is_empty()) {
            codes.insert(code.to_string());
        }
    }
    Ok(RegionList { path: path.display().to_string(), codes })
}

/// The tier a hub's numbers are split to: the province's and a prefecture's to counties (seed
/// 000: "等比例测算到县"), a county's to townships, a township's to villages.
pub fn split_tier(of: Tier) -> Option<Tier> {
    match of {
        Tier::Province | Tier::Prefecture => Some(Tier::County),
        Tier::County => Some(Tier::Township),
        Tier::Township => Some(Tier::Village),
        Tier::Village => None,
    }
}

impl Within<'_> {
    fn check(&self, region: &RegionCode) -> Result<(), String> {
        if let Some(list) = self.known
            && !list.codes.contains(region.as_str())
        {
            return Err(format!("{region} is not a known region (not in {})", list.path));
        }
        let Some(hub) = self.hub else { return Ok(()) };
        if !hub.contains(region) || region == hub {
            return Err(format!("{region} is not a region of {hub}"));
        }
        match split_tier(hub.tier()) {
            Some(t) if t == region.tier() => Ok(()),
            _ => Err(format!(
                "{region} is not a {} code: {hub} ({}) splits its numbers to {}",
                tier_name(split_tier(hub.tier())),
                hub.tier().label(),
                tier_name(split_tier(hub.tier()))
            )),
        }
    }
}

fn tier_name(t: Option<Tier>) -> &'static str {
    t.map(Tier::label).unwrap_or("region")
}

/// `region,weight` rows (a header line first), weights as decimals: each region once.
pub fn read_weights(path: &Path, within: Within) -> anyhow::Result<Vec<(RegionCode, u64)>> {
    let rows = read_rows(path, &["region", "weight"])?;
    let mut out = Vec::new();
    let mut seen = BTreeSet::new();
    for (line, cells) in rows {
        let at = || format!("{}:{line}", path.display());
        let region = region_of(&cells[0], within).map_err(|e| anyhow::anyhow!("{}: {e}", at()))?;
        let weight = parse_weight(&cells[1]).map_err(|e| anyhow::anyhow!("{}: {e}", at()))?;
        if !seen.insert(region.clone()) {
            bail!("{}: region {region} is listed twice", at());
        }
        out.push((region, weight));
    }
    if out.is_empty() {
        bail!("{}: no regions to split by (a header line `region,weight`, then one line per region)", path.display());
    }
    Ok(out)
}

/// `region,villages,class` rows: each county's administrative villages and its class.
pub fn read_villages(path: &Path, within: Within) -> anyhow::Result<Vec<(RegionCode, u64, String)>> {
    let rows = read_rows(path, &["region", "villages", "class"])?;
    let mut out = Vec::new();
    let mut seen = BTreeSet::new();
    for (line, cells) in rows {
        let at = || format!("{}:{line}", path.display());
        let region = region_of(&cells[0], within).map_err(|e| anyhow::anyhow!("{}: {e}", at()))?;
        let villages: u64 = cells[1]
            .trim()
            .parse()
            .map_err(|_| anyhow::anyhow!("{}: villages {:?} is not a whole number of 0 or more", at(), cells[1]))?;
        let class = cells[2].trim().to_string();
        if class.is_empty() {
            bail!("{}: the class is empty (e.g. 片区县)", at());
        }
        if !seen.insert(region.clone()) {
            bail!("{}: region {region} is listed twice", at());
        }
        out.push((region, villages, class));
    }
    if out.is_empty() {
        bail!("{}: no counties (a header line `region,villages,class`, then one line per county)", path.display());
    }
    Ok(out)
}

/// The classes' shares from `--share CLASS=PERCENT` and `--class-total CLASS=N`, each class once.
pub fn class_shares(shares: &[String], totals: &[String]) -> anyhow::Result<BTreeMap<String, ClassShare>> {
    let given = shares.iter().map(|s| ("--share", s)).chain(totals.iter().map(|s| ("--class-total", s)));
    let mut out = BTreeMap::new();
    for (flag, s) in given {
        let Some((class, n)) = s.split_once('=') else {
            bail!("{flag} {s:?}: expected CLASS=NUMBER, e.g. 片区县=25");
        };
        let value = if flag == "--share" {
            let p = parse_weight(n).map_err(|e| anyhow::anyhow!("{flag} {s:?}: {e}"))?;
            anyhow::ensure!(p <= 100_000_000, "{flag} {s:?}: a share is at most 100 percent");
            ClassShare::PercentMillionths(p)
        } else {
            let n = n.trim().parse().map_err(|_| anyhow::anyhow!("{flag} {s:?}: {n:?} is not a whole number"))?;
            ClassShare::Total(n)
        };
        if out.insert(class.trim().to_string(), value).is_some() {
            bail!("class {:?} is given twice", class.trim());
        }
    }
    Ok(out)
}

fn region_of(cell: &str, within: Within) -> Result<RegionCode, String> {
    let region = RegionCode::parse(cell.trim())
        .map_err(|e| format!("{:?} is not a region code: {e}", cell.chars().take(20).collect::<String>()))?;
    within.check(&region)?;
    Ok(region)
}

/// The data rows of a CSV file (UTF-8, a header naming `columns` in order), with their line
/// numbers.
fn read_rows(path: &Path, columns: &[&str]) -> anyhow::Result<Vec<(u64, Vec<String>)>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut reader = csv::ReaderBuilder::new().has_headers(true).flexible(true).from_reader(text.as_bytes());
    let header: Vec<String> = reader
        .headers()
        .with_context(|| format!("{}:1: not a CSV header", path.display()))?
        .iter()
        .map(|h| h.trim().trim_start_matches('\u{feff}').to_lowercase())
        .collect();
    if header != columns {
        bail!("{}:1: the header must be `{}` (found `{}`)", path.display(), columns.join(","), header.join(","));
    }
    let mut rows = Vec::new();
    for record in reader.records() {
        let record = record.with_context(|| format!("{}: not CSV", path.display()))?;
        let line = record.position().map(|p| p.line()).unwrap_or(0);
        if record.iter().all(|c| c.trim().is_empty()) {
            continue;
        }
        if record.len() != columns.len() {
            bail!(
                "{}:{line}: {} columns, expected {} ({})",
                path.display(),
                record.len(),
                columns.len(),
                columns.join(",")
            );
        }
        rows.push((line, record.iter().map(str::to_string).collect()));
    }
    Ok(rows)
}
