//! Down one tier: a county (or prefecture) hub pulls its parent's feedback (`GET /v1/feedback?since=N` on
//! the parent, signed with the county key) and applies it. A completed cross-county move removes
//! the person from the county they left (a tombstone on the province's authority, audited, never
//! forwarded back up) and confirms it in the county they joined; Resolved and Corrections items
//! are passed down to the townships they concern. The cursor is stored in the same transaction
//! as the effects, so applying a page twice changes nothing.

use crate::audit::AuditEntry;
use crate::error::HubError;
use crate::feedback::{corrections_feedback, push_feedback};
use crate::merge::FieldState;
use crate::record::{StoredRecord, storage_key};
use crate::state::Hub;
use crate::store::WriteTx;
use anyhow::{Context, bail};
use jianka_shared::{RecordKey, RecordKind, RegionCode, Tier, protocol::*};

/// The meta key of the last province feedback id applied.
const CURSOR: &str = "parent_feedback_since";
/// Set on a tombstone the province's completed move wrote: names the county the person joined.
/// `forward` does not send such a tombstone back up (the province wrote it).
pub const MOVED_TO: &str = "province.moved_to";

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PullReport {
    /// Feedback items newly applied.
    pub items: u64,
    /// People removed here because the province completed their move to another county.
    pub moved_out: u64,
    /// Arrivals here the province confirmed.
    pub moved_in: u64,
    /// Items passed down to townships.
    pub passed_down: u64,
    /// Allocations of the scale received and verified.
    pub allocations: u64,
}

impl Hub {
    /// Pulls and applies the province's feedback newer than the stored cursor, page by page.
    pub async fn pull_parent_feedback(&self) -> anyhow::Result<PullReport> {
        if !matches!(self.region().tier(), Tier::County | Tier::Prefecture) {
            bail!("a county or prefecture hub pulls feedback from the hub above; this hub serves {}", self.region());
        }
        let client = self.parent_client("pull its feedback")?;
        let mut pace = self.parent_pace().await?;
        let mut report = PullReport::default();
        loop {
            let since: u64 = self.store.meta(CURSOR).await?.and_then(|s| s.parse().ok()).unwrap_or(0);
            // Pages sized to the line, a cut one asked for again smaller (as the node's are).
            let page = client.pull_page(since, &mut pace).await;
            self.keep_parent_pace(&pace).await?;
            let page = page.context("pulling the province's feedback")?;
            if page.items.is_empty() {
                break;
            }
            let applied = self.apply_parent_page(&page.items, &mut report).await?;
            if applied == 0 {
                break;
            }
        }
        if report.items > 0 {
            tracing::info!(
                items = report.items,
                moved_out = report.moved_out,
                moved_in = report.moved_in,
                passed_down = report.passed_down,
                "applied the province's feedback"
            );
        }
        Ok(report)
    }

    /// Applies one page of the province's feedback in one transaction with the cursor; items at
    /// or below the stored cursor are skipped. Returns how many items were newly applied.
    pub async fn apply_parent_page(&self, items: &[FeedbackEntry], report: &mut PullReport) -> Result<u64, HubError> {
        let (mut hlc, mut tx) = self.begin_write().await?;
        let mut cursor: u64 = tx.meta(CURSOR).await?.and_then(|s| s.parse().ok()).unwrap_or(0);
        let mut down: Vec<(String, Feedback)> = Vec::new();
        let mut entries: Vec<AuditEntry> = Vec::new();
        let mut applied = 0;
        for entry in items {
            if entry.id <= cursor {
                continue;
            }
            cursor = entry.id;
            applied += 1;
            // A parent's decisions are taken as the corrections they stand for.
            let expanded;
            let item = match &entry.item {
                Feedback::Decided(d) => {
                    expanded = Feedback::Corrections { items: d.corrections() };
                    &expanded
                }
                other => other,
            };
            match item {
                Feedback::Resolved { key, field, value, note } => {
                    let Some(mut row) = load_row(&mut *tx, key).await? else { continue };
                    if row.deleted {
                        continue;
                    }
                    let township = child_of(self, &row.region);
                    let moved_away = key.kind == RecordKind::Member
                        && field == "household"
                        && row.hh != *value
                        && !value.starts_with(self.region().as_str());
                    if moved_away {
                        // The province completed this person's move to another county: they leave
                        // here in the same step, so the two counties agree with the province.
                        let to_county = value.get(..6).unwrap_or(value).to_string();
                        let version = self.tick(&mut hlc).0;
                        row.fields.insert(
                            MOVED_TO.into(),
                            FieldState(to_county.as_str().into(), version, parent_code(self).into()),
                        );
                        row.deleted = true;
                        tx.write_new_revision(vec![row.clone()]).await?;
                        entries.push(AuditEntry::new(
                            "move_out",
                            key.to_string(),
                            row.hh.clone(),
                            format!("{value} — {note} (tombstone on the province's authority)"),
                        ));
                        report.moved_out += 1;
                    } else if key.kind == RecordKind::Member && field == "household" && row.hh == *value {
                        entries.push(AuditEntry::new("move_in", key.to_string(), "", format!("{value} — {note}")));
                        report.moved_in += 1;
                    }
                    if let Some(t) = township {
                        down.push((t, entry.item.clone()));
                    }
                }
                Feedback::Corrections { items } => {
                    let mut passed: Vec<(String, Correction)> = Vec::new();
                    for c in items {
                        let Some(mut row) = load_row(&mut *tx, &c.key).await? else { continue };
                        if row.deleted {
                            continue;
                        }
                        let mut changed = false;
                        for (field, value) in &c.values {
                            let newer = row.fields.get(field.as_str()).is_none_or(|f| c.version.0 >= f.1);
                            if newer && row.fields.get(field.as_str()).map(|f| f.value()) != Some(value.as_str()) {
                                let old = row.fields.get(field.as_str()).map(|f| f.0.to_string()).unwrap_or_default();
                                let state = FieldState(value.into(), c.version.0, parent_code(self).into());
                                row.fields.insert(field.into(), state);
                                changed = true;
                                entries.push(AuditEntry::new(
                                    "province_correction",
                                    format!("{} {field}", c.key),
                                    old,
                                    value.clone(),
                                ));
                            }
                        }
                        if changed {
                            tx.write_new_revision(vec![row.clone()]).await?;
                        }
                        if let Some(t) = child_of(self, &row.region) {
                            passed.push((t, c.clone()));
                        }
                    }
                    down.extend(corrections_feedback(passed));
                }
                Feedback::Allocation { chain } => match self.keep_received(&mut *tx, chain).await {
                    Ok(_) => report.allocations += 1,
                    // Not kept: what is in force stays as it was, and the officer sees why.
                    Err(e) => tracing::error!(error = %e, "the parent's allocation does not verify; it is not kept"),
                },
                Feedback::Rejected(rejection) => {
                    // The province refused a forwarded record: the township that sent it hears why.
                    let region = load_row(&mut *tx, &rejection.key).await?.map(|r| r.region);
                    if let Some(t) = region.as_deref().and_then(|r| child_of(self, r)) {
                        down.push((t, entry.item.clone()));
                    }
                }
                // Acks, quota and cycle notices concern the county itself, not its townships' replicas.
                other => tracing::debug!(item = ?std::mem::discriminant(other), "province feedback noted"),
            }
        }
        if applied == 0 {
            return Ok(0);
        }
        report.passed_down += down.len() as u64;
        report.items += applied;
        push_feedback(&mut *tx, &down).await?;
        self.audit(&mut *tx, &entries).await?;
        tx.set_meta(CURSOR, &cursor.to_string()).await?;
        tx.commit().await?;
        self.refresh_allocations().await?;
        Ok(applied)
    }
}

/// The province above this county, as the writer of fields set on its authority.
fn parent_code(hub: &Hub) -> String {
    hub.region().ancestor(Tier::Province).map(|p| p.to_string()).unwrap_or_default()
}

/// The child of this hub a record of `region` belongs to, which the item is passed down to: a
/// county's township, a prefecture's county.
fn child_of(hub: &Hub, region: &str) -> Option<String> {
    let tier = if hub.region().tier() == Tier::Prefecture { Tier::County } else { Tier::Township };
    RegionCode::parse(region).ok().and_then(|r| r.ancestor(tier)).map(|t| t.to_string())
}

async fn load_row(tx: &mut dyn WriteTx, key: &RecordKey) -> Result<Option<StoredRecord>, HubError> {
    Ok(tx.records(&[storage_key(key)]).await?.into_iter().next())
}
