//! Decisions by hand: the county admits or refuses one household for a stated reason (a
//! household its profile leaves to it, 酌情纳入, or one it re-examines on a complaint), within
//! its ceiling, audited and sent down to the township; and the province files (省备案) what a
//! county announced. Automatic re-examination at ingest stays the default.

use crate::allocation::Ceiling;
use crate::audit::AuditEntry;
use crate::feedback::{corrections_feedback, push_feedback};
use crate::ingest::validate_household;
use crate::merge::FieldState;
use crate::quota::QuotaLedger;
use crate::record::{DECISION_ADMIT, DECISION_REFUSE, StoredRecord, audit_subject, is_recognised, key_of, township_of};
use crate::state::Hub;
use anyhow::{Context, bail};
use jianka_shared::domain::Status;
use jianka_shared::protocol::{Correction, Feedback, RejectReason, Rejection};
use jianka_shared::{Hlc, RecordKind, RegionCode, Tier, Year};

/// What a decision by hand did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandDecision {
    pub household: String,
    pub admitted: bool,
    pub people: u64,
    /// The status it had before.
    pub was: String,
}

impl Hub {
    /// Admits (or refuses) household `id` of `year` by the county's own decision, for `reason`.
    /// Only a household waiting at 县复审 or refused (不予认定) can be decided; an admission must
    /// pass the form's rules and fit the ceiling in force.
    pub async fn decide(&self, year: Year, id: &str, admit: bool, reason: &str) -> anyhow::Result<HandDecision> {
        if self.region().tier() != Tier::County {
            bail!("a household is decided by its county; this hub serves {}", self.region());
        }
        let reason = reason.trim();
        if reason.is_empty() {
            bail!("a decision by hand needs its reason (--reason)");
        }
        self.refresh_allocations().await?;
        let (mut hlc, mut tx) = self.begin_write().await?;
        let key = key_of(RecordKind::Household, year, id);
        let row = tx.records(std::slice::from_ref(&key)).await?.into_iter().next().filter(|r| !r.deleted);
        let Some(mut row) = row else { bail!("no household {id} in {year} at this county") };
        let was = row.field("status").unwrap_or_default().to_string();
        if !matches!(Status::parse(&was), Some(Status::CountyReview | Status::NotRecognised)) {
            bail!(
                "household {id} is at {was}; only a household waiting at 县复审 (CountyReview) or refused (不予认定, \
                 NotRecognised) is decided by hand"
            );
        }
        let township = township_of(&row).context("the household's region")?;
        let members: Vec<_> =
            tx.live_members(year, &[id.to_string()]).await?.iter().map(StoredRecord::to_member).collect();
        let people = match validate_household(&row, members) {
            Ok(n) => n,
            Err((_, why)) if admit => bail!("household {id} cannot be admitted: {why}"),
            Err(_) => 0,
        };
        let mut ledger = QuotaLedger::default();
        if admit {
            match self.ceiling(year) {
                Ceiling::Uncontrolled => {}
                Ceiling::Missing(why) => bail!("{why}"),
                Ceiling::Allocated(q) => {
                    ledger.used(&mut *tx, q.county.as_str(), year).await?;
                    ledger.used(&mut *tx, township.as_str(), year).await?;
                    ledger.admit(&q, &township, year, people).map_err(|(_, m)| anyhow::anyhow!("{m}"))?;
                }
            }
        }
        let version = self.tick(&mut hlc);
        let (status, decision, label) = if admit {
            (Status::CountyAnnounced, DECISION_ADMIT, "认定 by decision")
        } else {
            (Status::NotRecognised, DECISION_REFUSE, "不予认定 by decision")
        };
        let text = format!("{label}: {reason}");
        let values = [
            ("status".to_string(), format!("{status:?}")),
            ("county.decision".to_string(), decision.to_string()),
            ("county.reason".to_string(), text.clone()),
        ];
        let hub_code = self.region().to_string();
        for (field, value) in &values {
            row.fields
                .insert(field.as_str().into(), FieldState(value.as_str().into(), version.0, hub_code.as_str().into()));
        }
        tx.write_new_revision(vec![row.clone()]).await?;
        ledger.persist(&mut *tx).await?;
        let mut down = corrections_feedback([(
            township.to_string(),
            Correction { key: row.key.clone(), values: values.to_vec(), version },
        )]);
        if !admit {
            let rejection =
                Rejection { key: row.key.clone(), reason: RejectReason::FailedValidation, message: text.clone() };
            down.push((township.to_string(), Feedback::Rejected(rejection)));
        }
        push_feedback(&mut *tx, &down).await?;
        self.audit(&mut *tx, &[AuditEntry::new("decision_by_hand", audit_subject(&row.key), was.clone(), text)])
            .await?;
        tx.commit().await?;
        Ok(HandDecision { household: id.to_string(), admitted: admit, people, was })
    }

    /// 省备案: the province files every household `county` announced for `year` (县公告 →
    /// 省备案), audited, and sends the filing down to the county (and so to its townships).
    /// Returns how many were filed now.
    pub async fn file_announced(&self, year: Year, county: &RegionCode) -> anyhow::Result<u64> {
        if self.region().tier() != Tier::Province {
            bail!("省备案 is the province's act; this hub serves {}", self.region());
        }
        if county.tier() != Tier::County || !self.region().contains(county) {
            bail!("{county} is not a county of {}", self.region());
        }
        let rows = self.records_in(county, year).await?;
        let announced: Vec<StoredRecord> = rows
            .into_iter()
            .filter(|r| r.key.kind == RecordKind::Household && is_recognised(r))
            .filter(|r| r.field("status").and_then(Status::parse) == Some(Status::CountyAnnounced))
            .collect();
        if announced.is_empty() {
            return Ok(0);
        }
        let (mut hlc, mut tx) = self.begin_write().await?;
        let version: Hlc = self.tick(&mut hlc);
        let hub_code = self.region().to_string();
        let mut corrections = Vec::with_capacity(announced.len());
        let mut written = Vec::with_capacity(announced.len());
        for mut row in announced {
            let values = [("status".to_string(), format!("{:?}", Status::ProvinceFiled))];
            row.fields.insert("status".into(), FieldState("ProvinceFiled".into(), version.0, hub_code.as_str().into()));
            corrections
                .push((county.to_string(), Correction { key: row.key.clone(), values: values.to_vec(), version }));
            written.push(row);
        }
        let n = written.len() as u64;
        tx.write_new_revision(written).await?;
        // Down to the child that holds the county: the county, or the prefecture it is enrolled under.
        let subjects = self.store.enrolled_subjects().await?;
        let child = subjects
            .iter()
            .find(|s| s.len() == Tier::Prefecture.code_len() && county.as_str().starts_with(s.as_str()))
            .cloned()
            .unwrap_or_else(|| county.to_string());
        let corrections = corrections.into_iter().map(|(_, c)| (child.clone(), c));
        push_feedback(&mut *tx, &corrections_feedback(corrections)).await?;
        self.audit(
            &mut *tx,
            &[AuditEntry::new("province_filed", format!("{county} {year}"), "", format!("{n} households"))],
        )
        .await?;
        tx.commit().await?;
        Ok(n)
    }
}
