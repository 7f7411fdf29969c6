//! Officer commands: init, enrollment and revocation, chunked uploads, conflicts, sign-off,
//! quota adjustment and reports. The CLI (`main.rs`) only parses flags and calls these.

use crate::audit::{self, AuditEntry};
use crate::auth::Sender;
use crate::config::HubConfig;
use crate::error::HubError;
use crate::feedback::push_feedback;
use crate::merge::FieldState;
use crate::record::{StoredRecord, is_recognised, parse_storage_key};
use crate::state::Hub;
use crate::store::{ConflictRow, QuotaAdjustmentRow, SignOffRow};
use crate::years;
use anyhow::{Context, bail};
use chrono::NaiveDate;
use jianka_keyfile::Keypair;
use jianka_shared::{
    RecordKind, RegionCode, Tier, Year,
    changeset::Op,
    domain::Status,
    protocol::*,
    trust::{self, Certificate, KeyId, Revocation},
};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Options of `jianka-hub init`.
#[derive(Debug, Clone)]
pub struct InitOptions {
    pub region: RegionCode,
    pub dir: PathBuf,
    pub parent_url: Option<String>,
    pub profile: Option<PathBuf>,
    pub quotas: Option<PathBuf>,
    pub database: Option<String>,
    /// Address to listen on; default by tier (see [`crate::config::default_listen_for`]).
    pub listen: Option<String>,
}

/// What `init` made: the public key hex (give it to the tier above for `enroll`), the address
/// the hub will listen on, and the files it copied into its directory (from → to).
#[derive(Debug, Clone)]
pub struct Initialised {
    pub public_key: String,
    pub listen: String,
    pub copied: Vec<(PathBuf, PathBuf)>,
}

/// Creates `DIR/hub.toml` and `DIR/hub.key`; a province also gets its self-signed root
/// `DIR/chain.json`. A profile or quotas file is read and checked first — as given (relative to
/// the current directory), or inside DIR — and copied into DIR when it lies outside, so the
/// hub's directory holds everything it runs on.
pub fn init(o: &InitOptions, today: NaiveDate) -> anyhow::Result<Initialised> {
    let mut cfg = HubConfig::new(o.region.clone(), &o.dir);
    cfg.parent_url = o.parent_url.clone();
    if let Some(l) = &o.listen {
        cfg.listen = l.clone();
    }
    if let Some(db) = &o.database {
        cfg.database = db.clone();
    }
    cfg.check()?;
    let cfg_path = o.dir.join("hub.toml");
    if cfg_path.exists() {
        bail!("{} already exists; refusing to overwrite a hub's configuration", cfg_path.display());
    }
    let profile = o.profile.as_deref().map(|p| adopt(&o.dir, p, "profile", "--profile", check_profile)).transpose()?;
    let quotas = o.quotas.as_deref().map(|p| adopt(&o.dir, p, "quotas file", "--quotas", check_quotas)).transpose()?;
    std::fs::create_dir_all(&o.dir).with_context(|| format!("creating {}", o.dir.display()))?;
    let mut copied = Vec::new();
    for (found, slot) in [(profile, &mut cfg.profile), (quotas, &mut cfg.quotas)] {
        let Some(found) = found else { continue };
        *slot = Some(found.record_as(&o.dir, &mut copied)?);
    }
    let key = Keypair::generate()?;
    key.write_new(&o.dir.join(&cfg.key_file))?;
    if o.region.tier() == Tier::Province {
        let root = Certificate::issue(
            &o.region,
            key.signing(),
            &o.region,
            &key.public(),
            today,
            today + chrono::Days::new(365 * 20),
        );
        jianka_keyfile::write_chain(&o.dir.join(&cfg.chain_file), &[root])?;
    }
    std::fs::write(&cfg_path, cfg.to_toml()).with_context(|| format!("writing {}", cfg_path.display()))?;
    Ok(Initialised { public_key: jianka_keyfile::public_hex(&key.public()), listen: cfg.listen, copied })
}

/// A file `init` was pointed at, found and checked.
struct Found {
    path: PathBuf,
    inside_dir: bool,
}

impl Found {
    /// The path hub.toml records: the file itself when it lies in DIR (relative to DIR), else a
    /// copy made in DIR under the same name.
    fn record_as(self, dir: &Path, copied: &mut Vec<(PathBuf, PathBuf)>) -> anyhow::Result<PathBuf> {
        if self.inside_dir {
            return Ok(self.path.strip_prefix(dir).map(Path::to_path_buf).unwrap_or(self.path));
        }
        let name = PathBuf::from(self.path.file_name().context("a file name")?);
        let to = dir.join(&name);
        if to.exists() {
            bail!("{} already exists; remove it or point init at it", to.display());
        }
        std::fs::copy(&self.path, &to)
            .with_context(|| format!("copying {} to {}", self.path.display(), to.display()))?;
        copied.push((self.path, to));
        Ok(name)
    }
}

/// Finds `given` relative to the current directory (as typed) or to DIR (as hub.toml would
/// resolve it), and checks its content with `check`.
fn adopt(
    dir: &Path,
    given: &Path,
    what: &str,
    flag: &str,
    check: fn(&str) -> anyhow::Result<()>,
) -> anyhow::Result<Found> {
    let in_dir = dir.join(given);
    let (path, inside_dir) = if given.is_absolute() {
        (given.to_path_buf(), given.starts_with(dir))
    } else if given.is_file() {
        (given.to_path_buf(), false)
    } else if in_dir.is_file() {
        (in_dir, true)
    } else {
        bail!(
            "{flag} {}: no such file (looked in the current directory and in {}); the shipped examples are in \
             the repository's config/ (config/profiles/hubei-2014.toml, config/quotas.example.toml)",
            given.display(),
            dir.display()
        );
    };
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {what} {}", path.display()))?;
    check(&text).with_context(|| format!("{}: not a valid {what}", path.display()))?;
    Ok(Found { path, inside_dir })
}

fn check_profile(text: &str) -> anyhow::Result<()> {
    toml::from_str::<jianka_shared::profile::Profile>(text)?;
    Ok(())
}

fn check_quotas(text: &str) -> anyhow::Result<()> {
    let q: crate::config::QuotaFile = toml::from_str(text)?;
    for c in &q.counties {
        c.check().with_context(|| format!("county {}", c.county))?;
    }
    Ok(())
}

/// Installs the chain a province issued to this county, after checking it ends in this hub's key.
pub fn install_chain(cfg: &HubConfig, chain_path: &Path, today: NaiveDate) -> anyhow::Result<()> {
    let chain = jianka_keyfile::read_chain(chain_path)?;
    let root = chain.first().context("the chain file is empty")?;
    let root_key = root.verifying_key()?;
    trust::verify_chain(&root_key, &chain, today, |_| false).context("the chain does not verify")?;
    let last = chain.last().expect("non-empty");
    let own = Keypair::read(&cfg.resolve(&cfg.key_file))?;
    if last.public_key != own.public().to_bytes() {
        bail!("the chain certifies key {}, not this hub's key {}", last.key_id(), own.key_id());
    }
    if last.subject != cfg.region {
        bail!("the chain certifies region {}, but this hub serves {}", last.subject, cfg.region);
    }
    jianka_keyfile::write_chain(&cfg.resolve(&cfg.chain_file), &chain)?;
    Ok(())
}

impl Hub {
    pub fn chain(&self) -> anyhow::Result<Vec<Certificate>> {
        let p = self.cfg.resolve(&self.cfg.chain_file);
        jianka_keyfile::read_chain(&p).with_context(|| {
            format!("{}: this hub has no certificate chain yet (a county installs the one the province issued: `jianka-hub install-chain`)", p.display())
        })
    }

    /// Issues a child certificate (province → county, county → township), stores it, and returns
    /// the child's full chain.
    pub async fn enroll(
        &self,
        subject: &RegionCode,
        public_key_hex: &str,
        valid_until: Option<NaiveDate>,
    ) -> anyhow::Result<Vec<Certificate>> {
        let expected = match self.region().tier() {
            Tier::Province => Tier::County,
            _ => Tier::Township,
        };
        if subject.tier() != expected {
            bail!("{subject} is a {}; a {} hub enrolls only a {expected}", subject.tier(), self.region().tier());
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

    // ------------------------------------------------------------ chunked uploads

    pub async fn upload_state(&self, sender: &Sender, seq: u64) -> Result<UploadState, HubError> {
        Ok(match self.store.upload(sender.region.as_str(), seq).await? {
            Some((total, data)) => UploadState { total, received: data.len() as u64 },
            None => UploadState { received: 0, total: 0 },
        })
    }

    /// Keeps a chunk durably; a chunk at any offset other than `received` is ignored. When the
    /// last byte arrives the assembled envelope is ingested.
    pub async fn upload_chunk(
        &self,
        sender: &Sender,
        seq: u64,
        offset: u64,
        total: u64,
        chunk: &[u8],
    ) -> Result<ChunkAck, HubError> {
        if total as usize > self.limits.max_envelope {
            return Err(HubError::new(
                ErrorCode::TooLarge,
                format!("upload of {total} bytes is over the {}-byte limit", self.limits.max_envelope),
            ));
        }
        if total == 0 {
            return Err(HubError::new(ErrorCode::BadRequest, "total must be at least 1 byte"));
        }
        let origin = sender.region.to_string();
        let mut data = match self.store.upload(&origin, seq).await? {
            Some((held, data)) if held == total => data,
            _ => Vec::new(),
        };
        if offset == data.len() as u64 && !chunk.is_empty() {
            if data.len() + chunk.len() > total as usize {
                return Err(HubError::new(
                    ErrorCode::BadRequest,
                    format!("chunk runs past the declared total of {total} bytes"),
                ));
            }
            data.extend_from_slice(chunk);
            self.store.put_upload(&origin, seq, total, &data).await?;
        }
        let received = data.len() as u64;
        if received < total {
            return Ok(ChunkAck { received, total, outcome: None });
        }
        let result = self.ingest(sender, &data).await;
        if !matches!(&result, Err(e) if e.code == ErrorCode::Internal) {
            self.store.delete_upload(&origin, seq).await?;
        }
        Ok(ChunkAck { received, total, outcome: Some(result?) })
    }

    // ------------------------------------------------------------ conflicts

    pub async fn conflicts(&self, all: bool) -> Result<Vec<ConflictView>, HubError> {
        Ok(self
            .store
            .conflicts(all)
            .await?
            .into_iter()
            .map(|c| ConflictView {
                id: c.id,
                kind: c.kind,
                record: parse_storage_key(&c.k).map(|k| k.to_string()).unwrap_or(c.k),
                field: c.field,
                current_value: c.current_value,
                current_by: c.current_by,
                proposed_value: c.proposed_value,
                proposed_by: c.proposed_by,
                status: c.status,
                resolution: c.resolution,
            })
            .collect())
    }

    /// Settles a conflict: `keep` names the household a duplicated person stays in; `value` is the
    /// value a contested field takes. Both writers get Resolved feedback; the decision is audited.
    pub async fn resolve_conflict(
        &self,
        id: i64,
        keep: Option<&str>,
        value: Option<&str>,
        reason: &str,
    ) -> Result<(), HubError> {
        if reason.trim().is_empty() {
            return Err(HubError::new(ErrorCode::BadRequest, "a resolution needs a --reason"));
        }
        let (mut hlc, mut tx) = self.begin_write().await?;
        let ConflictRow {
            kind,
            k,
            field,
            current_value: cur_v,
            current_by: cur_by,
            proposed_value: prop_v,
            proposed_by: prop_by,
            proposal,
            status,
            ..
        } = tx.conflict(id).await?.ok_or_else(|| HubError::new(ErrorCode::NotFound, format!("no conflict #{id}")))?;
        if status != "open" {
            return Err(HubError::new(ErrorCode::BadRequest, format!("conflict #{id} is already resolved")));
        }
        let key = parse_storage_key(&k)
            .ok_or_else(|| HubError::new(ErrorCode::Internal, "stored conflict key unreadable"))?;
        let existing = tx.records(std::slice::from_ref(&k)).await?.into_iter().next();
        let mut row = match existing {
            Some(e) => StoredRecord { deleted: false, ..e },
            None => StoredRecord {
                key: key.clone(),
                region: String::new(),
                hh: String::new(),
                fields: Default::default(),
                deleted: false,
            },
        };
        let version = self.tick(&mut hlc);
        let stands: String;
        if kind == "duplicate_person" {
            let keep = keep.ok_or_else(|| {
                HubError::new(ErrorCode::BadRequest, "a duplicate person is resolved with --keep <household id>")
            })?;
            if keep == prop_v {
                let op: Op = serde_json::from_str(&proposal)
                    .map_err(|e| HubError::new(ErrorCode::Internal, format!("stored proposal unreadable: {e}")))?;
                if let Op::Upsert { fields, .. } = op {
                    for w in fields {
                        row.fields
                            .insert(w.name.into(), FieldState(w.value.into(), version.0, prop_by.as_str().into()));
                    }
                }
                row.hh = prop_v.clone();
                row.region = row.fields.get("village").map(|f| f.0.to_string()).unwrap_or(row.region);
            } else if keep != cur_v {
                return Err(HubError::new(ErrorCode::BadRequest, format!("--keep must be {cur_v} or {prop_v}")));
            }
            stands = keep.to_string();
        } else {
            let v = value
                .ok_or_else(|| HubError::new(ErrorCode::BadRequest, "a field conflict is resolved with --value V"))?;
            row.fields.insert(field.as_str().into(), FieldState(v.into(), version.0, self.region().as_str().into()));
            stands = v.to_string();
        }
        if !row.region.is_empty() {
            tx.write_new_revision(vec![row.clone()]).await?;
        }
        let note = format!("conflict #{id} resolved by {}: {reason}", self.region());
        let mut fb = Vec::new();
        for by in [&cur_by, &prop_by] {
            let to = if by.len() > 9 { by[..9].to_string() } else { by.clone() };
            if fb.iter().any(|(t, _): &(String, Feedback)| *t == to) {
                continue;
            }
            fb.push((
                to,
                Feedback::Resolved {
                    key: key.clone(),
                    field: field.clone(),
                    value: stands.clone(),
                    note: note.clone(),
                },
            ));
        }
        push_feedback(&mut *tx, &fb).await?;
        tx.resolve_conflict(id, &format!("{stands} — {reason}")).await?;
        self.audit(
            &mut *tx,
            &[AuditEntry::new(
                "resolve",
                format!("conflict #{id} {key}"),
                format!("{cur_v} | {prop_v}"),
                format!("{stands}: {reason}"),
            )],
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    // ------------------------------------------------------------ sign-off

    /// The county's sign-off for a period: digest over every record of the year plus summary
    /// figures, signed with the county key, stored (and forwarded by `forward`).
    pub async fn signoff(&self, year: Year, period: &str) -> anyhow::Result<SignOff> {
        if self.region().tier() != Tier::County {
            bail!("sign-off is the county's act; this hub serves {}", self.region());
        }
        let digest = self.digest(self.region(), year).await?;
        let rows = self.records_in(self.region(), year).await?;
        let summary = summarise(&rows, self.county_quota().map(|q| q.people), {
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
        // Sign-offs go up one tier: a county signs off to its province, never a township to its county.
        if self.region().tier() != Tier::Province || sender.region.tier() != Tier::County {
            return Err(HubError::new(
                ErrorCode::OutsideRegion,
                format!(
                    "a sign-off is received by the province from a county; this hub ({}) does not take one from {}",
                    self.region(),
                    sender.region
                ),
            ));
        }
        if s.county != sender.region {
            return Err(HubError::new(
                ErrorCode::OutsideRegion,
                format!("sign-off for {} sent with the key of {}", s.county, sender.region),
            ));
        }
        let sig: [u8; 64] = hex::decode(&s.signature)
            .ok()
            .and_then(|v| v.try_into().ok())
            .ok_or_else(|| HubError::new(ErrorCode::Malformed, "sign-off signature is not 128 hex digits"))?;
        if s.key_id != sender.key_id || !trust::verify_statement(&sender.key, "signoff", &s.signed_bytes(), &sig) {
            return Err(HubError::new(
                ErrorCode::BadSignature,
                format!("sign-off of {} {} does not verify with key {}", s.county, s.period, sender.key_id),
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

    // ------------------------------------------------------------ quota adjustment (微调)

    /// A prefecture's (or the province's) re-balancing of village quotas between two counties
    /// within their total: signed by this hub's key and audited.
    pub async fn adjust_villages(
        &self,
        from: &RegionCode,
        to: &RegionCode,
        villages: u64,
        reason: &str,
    ) -> anyhow::Result<QuotaAdjustment> {
        if self.region().tier() != Tier::Province {
            bail!("village quotas are re-balanced at the province (filed by the prefecture)");
        }
        for c in [from, to] {
            if c.tier() != Tier::County || !self.region().contains(c) {
                bail!("{c} is not a county of {}", self.region());
            }
        }
        if from.ancestor(Tier::Prefecture) != to.ancestor(Tier::Prefecture) {
            bail!(
                "{from} and {to} are in different prefectures; 微调 moves quota only between counties of one prefecture"
            );
        }
        let current = self.village_quotas().await?;
        let have = current.get(from).copied().unwrap_or(0);
        if villages > have {
            bail!("{from} has a village quota of {have}; cannot move {villages}");
        }
        let adj = QuotaAdjustment {
            from: from.clone(),
            to: to.clone(),
            villages,
            reason: reason.to_string(),
            at: self.clock.now().to_rfc3339(),
            key_id: self.key_id().to_string(),
        };
        let stmt = serde_json::to_string(&adj)?;
        let sig = hex::encode(trust::sign_statement(&self.key, "quota-adjustment", stmt.as_bytes()));
        let (_g, mut tx) = self.begin_write().await?;
        tx.add_quota_adjustment(&stmt, &sig, self.now_secs()).await?;
        self.audit(&mut *tx, &[AuditEntry::new("quota_adjust", format!("{from}->{to}"), have.to_string(), &stmt)])
            .await?;
        tx.commit().await?;
        Ok(adj)
    }

    /// Village quotas per county: the configured ones plus every signed adjustment.
    pub async fn village_quotas(&self) -> anyhow::Result<BTreeMap<RegionCode, u64>> {
        let mut q: BTreeMap<RegionCode, u64> =
            self.quotas.counties.iter().map(|c| (c.county.clone(), c.villages)).collect();
        for QuotaAdjustmentRow { statement: stmt, signature } in self.store.quota_adjustments().await? {
            let sig: [u8; 64] = hex::decode(&signature)
                .ok()
                .and_then(|v| v.try_into().ok())
                .context("stored signature")?;
            if !trust::verify_statement(&self.key.verifying_key(), "quota-adjustment", stmt.as_bytes(), &sig) {
                bail!("a stored quota adjustment does not verify: the table was altered");
            }
            let a: QuotaAdjustment = serde_json::from_str(&stmt)?;
            *q.entry(a.from.clone()).or_default() -= a.villages.min(q.get(&a.from).copied().unwrap_or(0));
            *q.entry(a.to).or_default() += a.villages;
        }
        Ok(q)
    }

    // ------------------------------------------------------------ report

    pub async fn report(&self, year: Option<Year>) -> anyhow::Result<Report> {
        let years: Vec<Year> = match year {
            Some(y) => vec![y],
            None => self.store.record_years().await?,
        };
        let child_tier = if self.region().tier() == Tier::Province { Tier::County } else { Tier::Township };
        let mut out = Report {
            region: self.region().clone(),
            years: vec![],
            signoffs: vec![],
            late: vec![],
            not_yet_delivered: vec![],
        };
        for y in years {
            let rows = self.records_in(self.region(), y).await?;
            let prev = self.records_in(self.region(), y.saturating_sub(1)).await?;
            let mut by_region: BTreeMap<String, SignOffSummary> = BTreeMap::new();
            for r in &rows {
                let region = r.region.get(..child_tier.code_len()).unwrap_or(&r.region).to_string();
                by_region.entry(region).or_default();
            }
            for (region, s) in by_region.iter_mut() {
                let sub: Vec<StoredRecord> =
                    rows.iter().filter(|r| r.region.starts_with(region.as_str())).cloned().collect();
                *s = summarise(&sub, None, 0);
            }
            // One rule at every tier: the annual update describes the year just ended as of 31
            // December, so an entry or an exit recorded in Y's update window is one of Y's.
            let exited =
                |r: &StoredRecord| r.fields.get("status").is_some_and(|s| Status::parse(&s.0) == Some(Status::Exited));
            let ids = |rs: &[StoredRecord], active_only: bool| -> std::collections::BTreeSet<String> {
                rs.iter()
                    .filter(|r| r.key.kind == RecordKind::Household && is_recognised(r))
                    .filter(|r| !(active_only && exited(r)))
                    .map(|r| r.key.id.clone())
                    .collect()
            };
            let (now_ids, prev_active) = (ids(&rows, false), ids(&prev, true));
            let exits = rows.iter().filter(|r| r.key.kind == RecordKind::Household && exited(r)).count() as u64;
            let villages = rows
                .iter()
                .filter(|r| r.key.kind == RecordKind::Village)
                .map(|r| {
                    let num = |n: &str| r.fields.get(n).and_then(|f| f.0.parse::<f64>().ok()).unwrap_or(0.0);
                    let pct =
                        if num("population") > 0.0 { num("poor_population") * 100.0 / num("population") } else { 0.0 };
                    VillageLine {
                        village: r.key.id.clone(),
                        incidence_percent: (pct * 100.0).round() / 100.0,
                        in_band: self.profile.as_ref().and_then(|p| p.incidence_in_band(pct)),
                    }
                })
                .collect();
            out.years.push(YearReport {
                year: y,
                state: years::state_str(
                    years::effective_state(&*self.store, y, self.today(), self.profile.as_ref()).await?.0,
                )
                .to_string(),
                total: summarise(&rows, self.county_quota().map(|q| q.people), self.quota_in_ledger(y).await?),
                by_region,
                entries: now_ids.difference(&prev_active).count() as u64,
                exits,
                villages,
            });
            // Before the deadline nobody is late yet: those still owing are listed apart.
            if let Ok(due) = self.undelivered(y).await {
                let lines = due.missing.into_iter().map(|(r, m)| format!("{r}: {m}"));
                if due.passed { out.late.extend(lines) } else { out.not_yet_delivered.extend(lines) }
            }
        }
        for r in self.store.signoffs().await? {
            if let Ok(s) = serde_json::from_str::<SignOff>(&r.body) {
                out.signoffs.push(format!(
                    "{} {} {}: {} records, digest {}",
                    s.county,
                    s.year,
                    s.period,
                    s.record_count,
                    &s.digest[..16]
                ));
            }
        }
        Ok(out)
    }
}

impl Hub {
    /// People counted against this county's ceiling for `year`, as the merge's quota ledger holds
    /// them (read only; 0 at a hub without re-examination).
    pub async fn quota_in_ledger(&self, year: Year) -> Result<u64, HubError> {
        Ok(self.store.quota_used(self.region().as_str(), year).await?.unwrap_or(0))
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
            RecordKind::Village => {}
        }
    }
    s
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ConflictView {
    pub id: i64,
    pub kind: String,
    pub record: String,
    pub field: String,
    pub current_value: String,
    pub current_by: String,
    pub proposed_value: String,
    pub proposed_by: String,
    pub status: String,
    pub resolution: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuotaAdjustment {
    pub from: RegionCode,
    pub to: RegionCode,
    pub villages: u64,
    pub reason: String,
    pub at: String,
    pub key_id: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    pub region: RegionCode,
    pub years: Vec<YearReport>,
    pub signoffs: Vec<String>,
    /// Children that missed a passed deadline.
    pub late: Vec<String>,
    /// Children that still owe a delivery whose deadline has not passed yet.
    #[serde(default)]
    pub not_yet_delivered: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct YearReport {
    pub year: Year,
    pub state: String,
    pub total: SignOffSummary,
    pub by_region: BTreeMap<String, SignOffSummary>,
    /// Recognised households of this year not recognised at the end of the previous one (新增),
    /// also those entered in this year's update window.
    pub entries: u64,
    /// Households of this year whose exit (退出) was recorded, in the year or its update window.
    pub exits: u64,
    pub villages: Vec<VillageLine>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VillageLine {
    pub village: String,
    pub incidence_percent: f64,
    /// Within the profile's band (None without a band).
    pub in_band: Option<bool>,
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "hub {}", self.region)?;
        for y in &self.years {
            writeln!(
                f,
                "year {} [{}]: {} households, {} people; entries {}, exits {}; quota {}/{}",
                y.year,
                y.state,
                y.total.households,
                y.total.people,
                y.entries,
                y.exits,
                y.total.quota_used,
                y.total.quota_people.map(|p| p.to_string()).unwrap_or_else(|| "none".into())
            )?;
            for (r, s) in &y.by_region {
                let causes: Vec<String> = s.by_cause.iter().map(|(c, n)| format!("{c} {n}")).collect();
                writeln!(f, "  {r}: {} households, {} people; {}", s.households, s.people, causes.join(", "))?;
            }
            for v in &y.villages {
                let band = match v.in_band {
                    Some(true) => "in band",
                    Some(false) => "OUTSIDE band",
                    None => "no band",
                };
                writeln!(f, "  village {}: incidence {:.2}% ({band})", v.village, v.incidence_percent)?;
            }
        }
        for s in &self.signoffs {
            writeln!(f, "sign-off {s}")?;
        }
        for l in &self.late {
            writeln!(f, "late: {l}")?;
        }
        for l in &self.not_yet_delivered {
            writeln!(f, "not yet delivered: {l}")?;
        }
        Ok(())
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
