//! The children a hub enrolls: certificates issued and revoked, keys held for equivocation.

use crate::audit::AuditEntry;
use crate::error::HubError;
use crate::state::Hub;
use anyhow::{Context, bail};
use chrono::NaiveDate;
use jianka_shared::{
    RegionCode, Tier,
    trust::{Certificate, KeyId, Revocation},
};

impl Hub {
    pub fn chain(&self) -> anyhow::Result<Vec<Certificate>> {
        let p = self.cfg.resolve(&self.cfg.chain_file);
        jianka_keyfile::read_chain(&p).with_context(|| {
            format!("{}: this hub has no certificate chain yet (a county installs the one the province issued: `jianka-hub install-chain`)", p.display())
        })
    }

    /// Issues a child certificate (province → county or prefecture, prefecture → county, county →
    /// township), stores it, and returns
    /// the child's full chain.
    pub async fn enroll(
        &self,
        subject: &RegionCode,
        public_key_hex: &str,
        valid_until: Option<NaiveDate>,
    ) -> anyhow::Result<Vec<Certificate>> {
        // Tiers are recursive: a province enrolls its counties and prefectures, a prefecture its
        // counties, a county its townships.
        if !jianka_shared::allocation::is_child(self.region(), subject) {
            let children = match self.region().tier() {
                Tier::Province => format!("a {} or a {}", Tier::County, Tier::Prefecture),
                Tier::Prefecture => format!("a {}", Tier::County),
                _ => format!("a {}", Tier::Township),
            };
            if self.region().contains(subject) {
                bail!("{subject} is a {}; a {} hub enrolls only {children}", subject.tier(), self.region().tier());
            }
        }
        if !self.region().contains(subject) {
            bail!(
                "{subject} is outside this hub's region {}; enroll it at its own {}",
                self.region(),
                self.region().tier()
            );
        }
        let pk = jianka_keyfile::parse_public_hex(public_key_hex)
            .context("--public-key is not a 64-hex-digit ed25519 public key")?;
        let mut chain = self.chain()?;
        let today = self.today();
        let until = valid_until.unwrap_or(today + chrono::Days::new(365 * 5));
        let cert = Certificate::issue(self.region(), &self.key, subject, &pk, today - chrono::Days::new(1), until);
        let key_id = KeyId::of(&pk);
        let (_g, mut tx) = self.begin_write().await?;
        if let Some(row) = tx.cert(&key_id.to_string()).await? {
            // A revoked key stays revoked: whoever holds the old key file must not get back in.
            if row.revoked {
                bail!(
                    "key {key_id} of {} was revoked and cannot be enrolled again; on the township's computer make \
                     a new key (move node.key aside, then `jianka-node init` prints the new public key) and enroll that",
                    row.subject
                );
            }
        }
        tx.put_cert(&key_id.to_string(), subject.as_str(), &serde_json::to_string(&cert)?).await?;
        self.audit(&mut *tx, &[AuditEntry::new("enroll", subject.to_string(), "", key_id.to_string())]).await?;
        tx.commit().await?;
        chain.push(cert);
        Ok(chain)
    }

    /// Keys held for equivocation (two different change sets under one sequence number): key id,
    /// region, and the sequence numbers involved with both hashes.
    pub async fn equivocations(&self) -> Result<Vec<EquivocationView>, HubError> {
        Ok(self
            .store
            .equivocations()
            .await?
            .into_iter()
            .map(|e| EquivocationView {
                key_id: e.key_id,
                region: e.subject,
                seq: e.seq,
                stored_hash: e.stored_hash,
                offered_hash: e.offered_hash,
                at: e.at,
            })
            .collect())
    }

    /// Lets a key held for equivocation speak again, with the officer's reason (audited). The
    /// change set the hub holds stands; the other one stays refused.
    pub async fn clear_equivocation(&self, key: KeyId, reason: &str) -> anyhow::Result<RegionCode> {
        let Some(row) = self.store.cert(&key.to_string()).await? else {
            bail!("key {key} was not enrolled at this hub")
        };
        let subject = RegionCode::parse(&row.subject)?;
        if !row.equivocating {
            bail!("key {key} of {subject} is not held for equivocation");
        }
        let (_g, mut tx) = self.begin_write().await?;
        tx.set_equivocating(&key.to_string(), false).await?;
        self.audit(&mut *tx, &[AuditEntry::new("equivocation_cleared", subject.to_string(), key.to_string(), reason)])
            .await?;
        tx.commit().await?;
        Ok(subject)
    }

    pub async fn revoke(&self, key: KeyId, reason: &str) -> anyhow::Result<Revocation> {
        let Some(row) = self.store.cert(&key.to_string()).await? else {
            bail!("key {key} was not enrolled at this hub")
        };
        let subject = RegionCode::parse(&row.subject)?;
        let rev = Revocation::issue(&self.key, &subject, key, self.today(), reason);
        let (_g, mut tx) = self.begin_write().await?;
        tx.revoke_cert(&key.to_string(), reason).await?;
        self.audit(&mut *tx, &[AuditEntry::new("revoke", subject.to_string(), key.to_string(), reason)]).await?;
        tx.commit().await?;
        Ok(rev)
    }
}

/// A key held for equivocation, as `jianka-hub equivocations list` shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct EquivocationView {
    pub key_id: String,
    pub region: String,
    pub seq: u64,
    pub stored_hash: String,
    pub offered_hash: String,
    pub at: i64,
}
