//! Sign-off: the county's signed digest and summary of a year's records, received and kept by
//! the province.

use crate::audit::{self, AuditEntry};
use crate::auth::Sender;
use crate::error::HubError;
use crate::record::StoredRecord;
use crate::state::Hub;
use crate::store::SignOffRow;
use anyhow::bail;
use jianka_shared::monitoring::MonitoringTable;
use jianka_shared::{
    RecordKind, Tier, Year,
    protocol::*,
    trust::{self},
};

impl Hub {
    /// The county's sign-off for a period: digest over every record of the year plus summary
    /// figures, and the year's 贫困县监测表 when it is filed with it, signed with the county key,
    /// stored (and forwarded by `forward`).
    pub async fn signoff(
        &self,
        year: Year,
        period: &str,
        monitoring: Option<MonitoringTable>,
    ) -> anyhow::Result<SignOff> {
        if self.region().tier() != Tier::County {
            bail!("sign-off is the county's act; this hub serves {}", self.region());
        }
        let digest = self.digest(self.region(), year).await?;
        let rows = self.records_in(self.region(), year).await?;
        let summary = summarise(&rows, self.ceiling(year).people(), {
            let (_g, mut tx) = self.begin_write().await?;
            let used = tx.quota_used(self.region().as_str(), year).await?;
            tx.commit().await?;
            used
        });
        let mut s = SignOff {
            county: self.region().clone(),
            year,
            period: period.to_string(),
            signed_at: self.clock.now().to_rfc3339(),
            record_count: digest.count,
            digest: digest.digest,
            summary,
            key_id: self.key_id(),
            certificate: None,
            monitoring,
            signature: String::new(),
        };
        s.signature = hex::encode(trust::sign_statement(&self.key, "signoff", &s.signed_bytes()));
        self.store_signoff(&s, "signoff").await?;
        Ok(s)
    }

    async fn store_signoff(&self, s: &SignOff, action: &str) -> Result<(), HubError> {
        let body = serde_json::to_string(s).expect("in-memory encoding");
        let (_g, mut tx) = self.begin_write().await?;
        tx.put_signoff(SignOffRow {
            county: s.county.to_string(),
            year: s.year,
            period: s.period.clone(),
            body,
            received_at: self.now_secs(),
        })
        .await?;
        audit::append(
            &mut *tx,
            self.now_secs(),
            &s.key_id.to_string(),
            &[AuditEntry::new(action, format!("{} {} {}", s.county, s.year, s.period), "", &s.digest)],
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// At the province: verify a county's sign-off (key, signature, and the digest against the
    /// records the province holds for that county) and keep it.
    pub async fn receive_signoff(&self, sender: &Sender, s: SignOff) -> Result<(), HubError> {
        // Sign-offs go up: a county signs off to the hub above it (a prefecture or the province),
        // and a prefecture relays its counties' to the province; never a township to its county.
        let outside = || {
            HubError::new(
                ErrorCode::OutsideRegion,
                format!(
                    "a sign-off is the county's, received above it; this hub ({}) does not take one for {} from {}",
                    self.region(),
                    s.county,
                    sender.region
                ),
            )
        };
        let relayed = sender.region.tier() == Tier::Prefecture && self.region().tier() == Tier::Province;
        if self.region().tier() == Tier::County || !(sender.region.tier() == Tier::County || relayed) {
            return Err(outside());
        }
        // Whose key signed it: the sender's own, or (relayed) the county's certificate, which the
        // prefecture issued and attaches.
        let (key, key_id) = if relayed {
            if !sender.region.contains(&s.county) {
                return Err(outside());
            }
            let cert = s.certificate.as_ref().filter(|c| c.subject == s.county).ok_or_else(|| {
                HubError::new(
                    ErrorCode::BadRequest,
                    format!(
                        "a sign-off of {} relayed by {} must carry the county's certificate",
                        s.county, sender.region
                    ),
                )
            })?;
            let key = trust::verify_child(cert, &sender.key, self.today())
                .map_err(|e| HubError::new(ErrorCode::BadSignature, format!("the relayed county certificate: {e}")))?;
            (key, cert.key_id())
        } else {
            if s.county != sender.region {
                return Err(HubError::new(
                    ErrorCode::OutsideRegion,
                    format!("sign-off for {} sent with the key of {}", s.county, sender.region),
                ));
            }
            (sender.key, sender.key_id)
        };
        let sig: [u8; 64] = hex::decode(&s.signature)
            .ok()
            .and_then(|v| v.try_into().ok())
            .ok_or_else(|| HubError::new(ErrorCode::Malformed, "sign-off signature is not 128 hex digits"))?;
        if s.key_id != key_id || !trust::verify_statement(&key, "signoff", &s.signed_bytes(), &sig) {
            return Err(HubError::new(
                ErrorCode::BadSignature,
                format!("sign-off of {} {} does not verify with key {key_id}", s.county, s.period),
            ));
        }
        let held = self.digest(&s.county, s.year).await?;
        if held.digest != s.digest || held.count != s.record_count {
            return Err(HubError::new(
                ErrorCode::BadRequest,
                format!(
                    "sign-off digest does not match: the county signed {} records ({}), the province holds {} ({}); forward the data first",
                    s.record_count, s.digest, held.count, held.digest
                ),
            ));
        }
        self.store_signoff(&s, "signoff_received").await
    }
}

pub fn summarise(rows: &[StoredRecord], quota_people: Option<u64>, quota_used: u64) -> SignOffSummary {
    let mut s = SignOffSummary { quota_people, quota_used, ..Default::default() };
    for r in rows {
        match r.key.kind {
            RecordKind::Household => {
                s.households += 1;
                if let Some(c) = r.fields.get("main_cause") {
                    *s.by_cause.entry(c.0.to_string()).or_default() += 1;
                }
            }
            RecordKind::Member => s.people += 1,
            RecordKind::Village | RecordKind::Assistance => {}
        }
    }
    s
}
