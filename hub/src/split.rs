//! The numbers `scale split` prints and `allocate` issues, read from the officer's files (the
//! binary's own module: flags in, a split out; the splitting is `jianka_shared::scale`).

use anyhow::bail;
use jianka_hub::admin::scale::{Within, class_shares, read_region_list, read_villages, read_weights};
use jianka_hub::{Hub, HubConfig};
use jianka_shared::allocation::Share;
use jianka_shared::scale::{apportion, villages_by_class};
use jianka_shared::{RegionCode, Tier};
use jianka_term::{errln, outln};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// What a split is computed from (`scale split` and `allocate` take the same files).
pub struct Input {
    pub total: Option<u64>,
    pub weights: Option<PathBuf>,
    pub villages: Option<PathBuf>,
    pub share: Vec<String>,
    pub class_total: Vec<String>,
    /// The official code list every region must be in.
    pub regions: Option<PathBuf>,
}

impl Input {
    fn known(&self) -> anyhow::Result<Option<jianka_hub::admin::scale::RegionList>> {
        self.regions.as_deref().map(read_region_list).transpose()
    }
}

/// The split `allocate` issues: people by --weights (of --total, or of this hub's own
/// allocation), villages by class (--villages) or by the same weights; a prefecture given
/// nothing passes on the parts the province computed for its counties.
pub async fn for_allocation(hub: &Hub, year: u16, input: &Input) -> anyhow::Result<BTreeMap<RegionCode, Share>> {
    let Input { total, weights, villages, share, class_total, .. } = input;
    let total = *total;
    hub.refresh_allocations().await?;
    let known = input.known()?;
    let own = hub.own_allocation(year).map(|h| h.allocation);
    let within = Within { hub: Some(hub.region()), known: known.as_ref() };
    if hub.region().tier() != Tier::Province && own.is_none() {
        bail!(
            "{} has no verified allocation for {year}; it can split only what it received (pull the parent's \
             feedback, or `jianka-hub install-allocation FILE`)",
            hub.region()
        );
    }
    let (people_total, villages_total) = match (&own, total) {
        (Some(a), Some(t)) if t > a.people => {
            bail!("--total {t} is more than the {} people {} was allocated for {year}", a.people, hub.region())
        }
        (Some(a), t) => (t.unwrap_or(a.people), Some(a.villages)),
        (None, t) => (t.unwrap_or(0), None),
    };
    let mut split: BTreeMap<_, Share> = Default::default();
    match (&weights, &own) {
        (Some(w), _) => {
            let w = read_weights(w, within)?;
            for (r, n) in apportion(people_total, &w)? {
                split.entry(r).or_default().people = n;
            }
            if villages.is_none()
                && let Some(v) = villages_total
            {
                for (r, n) in apportion(v, &w)? {
                    split.entry(r).or_default().villages = n;
                }
            }
        }
        (None, Some(a)) if !a.parts.is_empty() => split.extend(a.parts.clone()),
        _ => bail!("give --weights FILE (CSV `region,weight`) to split the people by"),
    }
    if let Some(v) = &villages {
        let rows = read_villages(v, within)?;
        for (r, n) in villages_by_class(&rows, &class_shares(share, class_total)?)? {
            split.entry(r).or_default().villages = n;
        }
    }
    Ok(split)
}

/// `scale split`: prints the split of --total by --weights, or of the villages by class.
pub fn print(input: &Input, config: Option<PathBuf>, json: bool) -> anyhow::Result<()> {
    let Input { total, weights, villages, share, class_total, .. } = input;
    let hub_region = match &config {
        Some(path) => Some(HubConfig::load(path)?.region),
        None => None,
    };
    let known = input.known()?;
    let within = Within { hub: hub_region.as_ref(), known: known.as_ref() };
    let split = match (total, weights, villages) {
        (Some(total), Some(weights), None) => apportion(*total, &read_weights(weights, within)?)?,
        (None, None, Some(villages)) => {
            let rows = read_villages(villages, within)?;
            let shares = class_shares(share, class_total)?;
            villages_by_class(&rows, &shares)?
        }
        _ => bail!(
            "give --total N with --weights FILE (people), or --villages FILE with --share / --class-total (villages)"
        ),
    };
    if json {
        let map: serde_json::Map<String, serde_json::Value> =
            split.iter().map(|(r, n)| (r.to_string(), serde_json::Value::from(*n))).collect();
        outln!("{}", serde_json::Value::Object(map))?;
    } else {
        for (r, n) in &split {
            outln!("{r}\t{n}")?;
        }
        errln!("{} regions, {} in all", split.len(), split.values().sum::<u64>())?;
    }
    Ok(())
}
