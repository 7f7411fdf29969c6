//! Decisions by hand: the deciding tier of the profile's flow (the county under seed 000)
//! admits or refuses one household for a stated reason (a household its profile leaves to it,
//! 酌情纳入, or one it re-examines on a complaint), within its ceiling, audited and sent down to
//! the township; and the filing tier (the province's 省备案, the district's 区直备案) files what
//! was recognised. Automatic re-examination at ingest stays the default.

use crate::allocation::Ceiling;
use crate::audit::AuditEntry;
use crate::feedback::{corrections_feedback, push_feedback};
use crate::ingest::validate_household;
use crate::merge::FieldState;
use crate::quota::QuotaLedger;
use crate::record::{DECISION_ADMIT, DECISION_REFUSE, StoredRecord, audit_subject, is_recognised, key_of, township_of};
use crate::record::{HashMap, HashSet};
use crate::state::Hub;
use anyhow::{Context, bail};
use jianka_shared::domain::{Member, Status};
use jianka_shared::protocol::{Correction, Feedback, RejectReason, Rejection};
use jianka_shared::{Hlc, RecordKind, RegionCode, Year};

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
        let flow = self.flow(RecordKind::Household);
        if self.region().tier() != flow.decides() {
            bail!(
                "under {} the {} decides ({}), not this hub: it serves {}, a {}",
                self.profile_name(),
                flow.decides(),
                flow.label(Status::CountyAnnounced),
                self.region(),
                self.region().tier()
            );
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
        let waiting =
            Status::parse(&was).is_some_and(|s| s == Status::NotRecognised || flow.awaiting_decision() == Some(s));
        if !waiting {
            bail!(
                "household {id} is at {was}; only a household waiting at {} or refused (不予认定, NotRecognised) is \
                 decided by hand",
                flow.awaiting_decision().map_or("the decision", |s| flow.label(s))
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
        let version = self.tick_past(&mut hlc, std::slice::from_ref(&row));
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

    /// 备案: the profile's filing tier (the province's 省备案 under seed 000, the district's 区直备案
    /// under seed 003) files every household recognised in `region` for `year`, audited, and sends
    /// the filing down to the child that holds it (and so to its townships). `region` is a county
    /// of the province, or the district itself or one of its townships. A household is filed
    /// only as 县复审 would pass it that day: one an open duplicate-person conflict holds, or
    /// whose members fail the form's rules, is held back and listed (the deciding tier's admission
    /// may predate the conflict; a township's own may have come from a township's key alone).
    pub async fn file_announced(&self, year: Year, region: &RegionCode) -> anyhow::Result<Filing> {
        let flow = self.flow(RecordKind::Household);
        let filing = flow.label(Status::ProvinceFiled).to_string();
        match flow.files() {
            None => bail!("the flow of {} files nothing (it has no step with status filed)", self.profile_name()),
            Some(t) if t != self.region().tier() => bail!(
                "{filing} is the {t}'s act under {}; this hub serves {}, a {}",
                self.profile_name(),
                self.region(),
                self.region().tier()
            ),
            Some(_) => {}
        }
        if !self.region().contains(region) || region.tier() < flow.decides() {
            bail!("{region} is not a region of {} whose list is filed here", self.region());
        }
        let county = region;
        let rows = self.records_in(county, year).await?;
        let announced: Vec<&StoredRecord> = rows
            .iter()
            .filter(|r| r.key.kind == RecordKind::Household && is_recognised(r))
            .filter(|r| r.field("status").and_then(Status::parse) == Some(Status::CountyAnnounced))
            .collect();
        // The members of those households only (a province holds every county's people).
        let ids: HashSet<&str> = announced.iter().map(|h| h.key.id.as_str()).collect();
        let mut members: HashMap<&str, Vec<Result<Member, String>>> = HashMap::default();
        for m in rows.iter().filter(|r| r.key.kind == RecordKind::Member && !r.deleted) {
            if let Some(hh) = ids.get(m.hh.as_str()) {
                members.entry(hh).or_default().push(m.to_member());
            }
        }
        let mut filing = Filing::default();
        if announced.is_empty() {
            return Ok(filing);
        }
        let (mut hlc, mut tx) = self.begin_write().await?;
        let mut held: HashSet<String> = HashSet::default();
        for c in tx.open_conflicts("duplicate_person").await? {
            held.extend([c.proposed_value, c.current_value]);
        }
        let mut passed = Vec::with_capacity(announced.len());
        for h in announced {
            let ms = members.remove(h.key.id.as_str()).unwrap_or_default();
            if held.contains(&h.key.id) {
                let why = "a member is registered in another household too (an open duplicate-person conflict)";
                filing.held.push((h.key.id.clone(), why.to_string()));
            } else if let Err((_, why)) = validate_household(h, ms) {
                filing.held.push((h.key.id.clone(), why));
            } else {
                passed.push(h.clone());
            }
        }
        let announced = passed;
        if announced.is_empty() {
            return Ok(filing);
        }
        let version: Hlc = self.tick_past(&mut hlc, &announced);
        let hub_code = self.region().to_string();
        let mut corrections = Vec::with_capacity(announced.len());
        let mut written = Vec::with_capacity(announced.len());
        // Down to the child that holds each record: the county or the prefecture it is enrolled
        // under at a province, the township at a district.
        let subjects = self.store.enrolled_subjects().await?;
        let child_of =
            |region: &str| subjects.iter().filter(|s| region.starts_with(s.as_str())).min_by_key(|s| s.len()).cloned();
        for mut row in announced {
            let values = [("status".to_string(), format!("{:?}", Status::ProvinceFiled))];
            row.fields.insert("status".into(), FieldState("ProvinceFiled".into(), version.0, hub_code.as_str().into()));
            let child = child_of(&row.region).unwrap_or_else(|| row.region.clone());
            corrections.push((child, Correction { key: row.key.clone(), values: values.to_vec(), version }));
            written.push(row);
        }
        let n = written.len() as u64;
        tx.write_new_revision(written).await?;
        push_feedback(&mut *tx, &corrections_feedback(corrections)).await?;
        let what = match filing.held.len() {
            0 => format!("{n} households"),
            held => format!("{n} households; {held} held back"),
        };
        self.audit(&mut *tx, &[AuditEntry::new("filed", format!("{county} {year}"), "", what)]).await?;
        tx.commit().await?;
        filing.filed = n;
        Ok(filing)
    }
}

/// What a filing (备案) did: how many households it filed, and those it held back with why.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Filing {
    pub filed: u64,
    /// Household id and what keeps it from being filed.
    pub held: Vec<(String, String)>,
}
