//! What a hub files: its holdings of a region in exactly the 扶贫手册 import columns (a township's
//! importer reads them back), and the year's report as a workbook (概况, 致贫原因, 规模).

use crate::admin::Report;
use crate::record::StoredRecord;
use crate::state::Hub;
use jianka_shared::columns::{Col, export_row};
use jianka_shared::{RecordKind, RegionCode, Year};
use std::collections::BTreeMap;

/// The note an export with full identity numbers carries.
pub const INTERNAL: &str =
    "内部资料: 含完整身份证号、电话和银行账号, 不得公开张贴或外传 (jianka-hub export --with-id-numbers)";

impl Hub {
    /// The households of `region` in `year` as import rows (header, rows, households).
    pub async fn export_rows(
        &self,
        year: Year,
        region: &RegionCode,
        full: bool,
    ) -> anyhow::Result<(Vec<String>, Vec<Vec<String>>, usize)> {
        anyhow::ensure!(self.region().contains(region), "{region} is not a region of {}", self.region());
        let rows = self.records_in(region, year).await?;
        let mut members: BTreeMap<&str, Vec<&StoredRecord>> = BTreeMap::new();
        for m in rows.iter().filter(|r| !r.deleted && r.key.kind == RecordKind::Member) {
            members.entry(m.hh.as_str()).or_default().push(m);
        }
        let headers = Col::ALL.iter().map(|c| c.header().to_string()).collect();
        let mut out = Vec::new();
        let mut households = 0;
        for h in rows.iter().filter(|r| !r.deleted && r.key.kind == RecordKind::Household) {
            let Some(ms) = members.get_mut(h.key.id.as_str()) else { continue };
            households += 1;
            ms.sort_by(|a, b| {
                (a.field("relation") != Some("户主"), &a.key.id).cmp(&(b.field("relation") != Some("户主"), &b.key.id))
            });
            for (i, m) in ms.iter().enumerate() {
                out.push(export_row(|f| h.field(f), (m.key.id.as_str(), |f| m.field(f)), i == 0, full));
            }
        }
        Ok((headers, out, households))
    }
}

/// The report of one year as a workbook: 概况 (households, people, entries, exits, filed),
/// 致贫原因 (households by main cause) and 规模 (allocated, admitted, held, remaining per child).
pub fn report_xlsx(report: &Report, year: Year) -> anyhow::Result<Vec<u8>> {
    let y = report.years.iter().find(|y| y.year == year).ok_or_else(|| anyhow::anyhow!("no data for {year} here"))?;
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    let overview_h =
        s(&["地区", "年度", "户数", "人数", "新增户数", "退出户数", "备案户数", "规模 (人)", "已认定 (人)"]);
    let overview = vec![vec![
        report.region.to_string(),
        year.to_string(),
        y.total.households.to_string(),
        y.total.people.to_string(),
        y.entries.to_string(),
        y.exits.to_string(),
        y.filed.to_string(),
        y.total.quota_people.map(|p| p.to_string()).unwrap_or_default(),
        y.total.quota_used.to_string(),
    ]];
    let causes_h = s(&["主要致贫原因", "户数"]);
    let causes: Vec<Vec<String>> = y.total.by_cause.iter().map(|(c, n)| vec![c.clone(), n.to_string()]).collect();
    let scale_h = s(&["地区", "分配规模 (人)", "已认定 (人)", "不予认定 (人)", "剩余 (人)"]);
    let opt = |v: Option<u64>| v.map(|n| n.to_string()).unwrap_or_default();
    let scale: Vec<Vec<String>> = y
        .scale
        .iter()
        .map(|l| vec![l.region.clone(), opt(l.allocated), l.admitted.to_string(), l.held.to_string(), opt(l.remaining)])
        .collect();
    let sheet = |headers, rows| jianka_publish::Table { headers, rows, note: None };
    jianka_publish::sheets_xlsx(&[
        ("概况", sheet(&overview_h, &overview)),
        ("致贫原因", sheet(&causes_h, &causes)),
        ("规模", sheet(&scale_h, &scale)),
    ])
}
