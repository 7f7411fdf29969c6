//! The 贫困县监测表: read from the county's file (CSV, UTF-8 or GBK: 部分,项目,数值, one figure per
//! line), filed with its sign-off, and listed where it was received.

use crate::error::HubError;
use crate::state::Hub;
use anyhow::{Context, bail};
use jianka_shared::monitoring::MonitoringTable;
use jianka_shared::protocol::{ErrorCode, SignOff};
use jianka_shared::{RegionCode, Year};
use std::collections::BTreeMap;
use std::path::Path;

/// Reads a monitoring table file, naming every problem with its line.
pub fn read_monitoring_file(path: &Path) -> anyhow::Result<MonitoringTable> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(&bytes);
    let text = match std::str::from_utf8(bytes) {
        Ok(t) => t.to_string(),
        Err(_) => {
            let (t, _, bad) = encoding_rs::GBK.decode(bytes);
            if bad {
                bail!("{}: neither UTF-8 nor GBK text; save it as CSV", path.display());
            }
            t.into_owned()
        }
    };
    let mut r = csv::ReaderBuilder::new().flexible(true).comment(Some(b'#')).from_reader(text.as_bytes());
    let headers: Vec<String> = r.headers()?.iter().map(|h| h.trim().to_string()).collect();
    if headers.iter().take(3).map(String::as_str).ne(["部分", "项目", "数值"]) {
        bail!("{}:1: the header is {:?}; a monitoring table has the columns 部分,项目,数值", path.display(), headers);
    }
    let mut rows = Vec::new();
    for rec in r.records() {
        let rec = rec.with_context(|| format!("{}: malformed CSV", path.display()))?;
        let line = rec.position().map_or(0, |p| p.line());
        let cell = |i: usize| rec.get(i).unwrap_or("").to_string();
        rows.push((line, [cell(0), cell(1), cell(2)]));
    }
    MonitoringTable::from_lines(rows.iter().map(|(n, [a, b, c])| (*n, [a.as_str(), b.as_str(), c.as_str()])))
        .map_err(|errs| anyhow::anyhow!("{}: {}", path.display(), errs.join("; ")))
}

impl Hub {
    /// The monitoring tables of `year` held here (the county's own, or those its counties filed
    /// with their sign-offs), the newest per county.
    pub async fn monitoring_tables(&self, year: Year) -> Result<BTreeMap<RegionCode, MonitoringTable>, HubError> {
        let mut out = BTreeMap::new();
        let mut rows = self.store.signoffs().await?;
        rows.sort_by_key(|r| r.received_at);
        for row in rows.into_iter().filter(|r| r.year == year) {
            let s: SignOff = serde_json::from_str(&row.body).map_err(|e| {
                HubError::new(ErrorCode::Internal, format!("the stored sign-off of {} {}: {e}", row.county, row.year))
            })?;
            if let Some(t) = s.monitoring {
                out.insert(s.county, t);
            }
        }
        Ok(out)
    }
}
