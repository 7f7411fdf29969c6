//! The hub's state: its config, database, clock, key, profile and quotas, and the writer lock
//! that serialises every write transaction. Fields are the crate's; outside it, accessors.

use crate::allocation::AllocationBook;
use crate::audit::{self, AuditEntry};
use crate::clock::Clock;
use crate::config::{HubConfig, QuotaFile};
use crate::error::HubError;
use crate::store::{Store, WriteTx};
use anyhow::Context;
use ed25519_dalek::SigningKey;
use jianka_shared::changeset::Limits;
use jianka_shared::flow::Flow;
use jianka_shared::profile::Profile;
use jianka_shared::protocol::ErrorCode;
use jianka_shared::trust::KeyId;
use jianka_shared::{Hlc, RecordKind, RegionCode};
use std::sync::Arc;

impl Hub {
    pub async fn open(cfg: HubConfig, clock: Arc<dyn Clock>) -> anyhow::Result<Hub> {
        cfg.check()?;
        let key_path = cfg.resolve(&cfg.key_file);
        let key = jianka_keyfile::Keypair::read(&key_path)
            .with_context(|| format!("reading the hub key {}", key_path.display()))?
            .signing()
            .clone();
        let profile = cfg.load_profile()?;
        let flows = Flows {
            households: profile.as_ref().map_or_else(|| Flow::national_households(7), Profile::household_flow),
            villages: profile.as_ref().map_or_else(|| Flow::national_villages(7), Profile::village_flow),
        };
        let quotas = cfg.load_quotas()?;
        let store = crate::store::open(&cfg.database_url())
            .await
            .with_context(|| format!("opening database {}", cfg.database))?;
        let hub = Hub {
            cfg,
            store,
            clock,
            key,
            profile,
            flows,
            quotas,
            // A node cuts change sets at 20,000 ops (a few MiB decompressed); these bounds leave
            // room for that and refuse a decompression bomb before it is inflated.
            limits: Limits { max_envelope: 64 << 20, max_body: 48 << 20 },
            writer: tokio::sync::Mutex::new(Hlc::ZERO),
            allocations: Default::default(),
        };
        hub.refresh_allocations().await?;
        Ok(hub)
    }

    /// A real round trip to the database (for `/v1/health`).
    pub async fn check_database(&self) -> Result<(), HubError> {
        self.store.ping().await.map_err(|e| {
            tracing::error!(error = %e, "health check: database unreachable");
            HubError::new(ErrorCode::Unavailable, "the hub's database does not answer")
        })?;
        Ok(())
    }

    pub fn config(&self) -> &HubConfig {
        &self.cfg
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    pub fn signing_key(&self) -> &SigningKey {
        &self.key
    }

    pub fn profile(&self) -> Option<&Profile> {
        self.profile.as_ref()
    }

    /// The profile's name, as messages give it.
    pub fn profile_name(&self) -> &str {
        self.profile.as_ref().map_or("the national method (no profile)", |p| p.name.as_str())
    }

    /// The flow records of `kind` follow (the profile's, or the national method's).
    pub fn flow(&self, kind: RecordKind) -> &Flow {
        match kind {
            RecordKind::Village => &self.flows.villages,
            _ => &self.flows.households,
        }
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// The writer lock, holding the hub's own HLC.
    pub(crate) async fn lock_writer(&self) -> tokio::sync::MutexGuard<'_, Hlc> {
        self.writer.lock().await
    }

    pub fn region(&self) -> &RegionCode {
        &self.cfg.region
    }

    pub fn key_id(&self) -> KeyId {
        KeyId::of(&self.key.verifying_key())
    }

    pub fn now_secs(&self) -> i64 {
        self.clock.now().timestamp()
    }

    pub fn today(&self) -> chrono::NaiveDate {
        self.clock.now().with_timezone(&chrono_tz::Asia::Shanghai).date_naive()
    }

    /// Appends entries signed off by this hub's own key to the audit log, in `tx`.
    pub async fn audit(&self, tx: &mut dyn WriteTx, entries: &[AuditEntry]) -> Result<(), HubError> {
        audit::append(tx, self.now_secs(), &self.key_id().to_string(), entries).await?;
        Ok(())
    }

    /// Takes the writer lock and a fresh HLC timestamp for the hub's own writes.
    pub async fn begin_write(&self) -> Result<(tokio::sync::MutexGuard<'_, Hlc>, Box<dyn WriteTx>), HubError> {
        let guard = self.writer.lock().await;
        let tx = self.store.begin().await?;
        Ok((guard, tx))
    }

    /// Sets one meta value in a write transaction of its own.
    pub async fn set_meta(&self, k: &str, v: &str) -> Result<(), HubError> {
        let (_g, mut tx) = self.begin_write().await?;
        tx.set_meta(k, v).await?;
        tx.commit().await?;
        Ok(())
    }

    pub fn tick(&self, h: &mut Hlc) -> Hlc {
        *h = h.tick(self.clock.now().timestamp_millis().max(0) as u64);
        *h
    }

    /// A version newer than every field of `rows`, for a write over them by hand (a decision, a
    /// filing): this process's clock may have started behind what the rows already carry.
    pub(crate) fn tick_past(&self, h: &mut Hlc, rows: &[crate::record::StoredRecord]) -> Hlc {
        let newest = rows.iter().flat_map(|r| r.fields.values().map(|f| f.1)).max().unwrap_or(0);
        *h = h.observe(Hlc(newest), self.clock.now().timestamp_millis().max(0) as u64);
        self.tick(h)
    }
}

pub struct Hub {
    pub(crate) cfg: HubConfig,
    pub(crate) store: Arc<dyn Store>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) key: SigningKey,
    pub(crate) profile: Option<Profile>,
    pub(crate) flows: Flows,
    pub(crate) quotas: QuotaFile,
    pub(crate) limits: Limits,
    /// Serialises every write transaction (SQLite has one writer anyway; on PostgreSQL quota rows
    /// are also locked with FOR UPDATE) and holds the hub's own HLC.
    writer: tokio::sync::Mutex<Hlc>,
    /// The allocations held, verified (see [`crate::allocation`]); refreshed from the store.
    pub(crate) allocations: std::sync::RwLock<AllocationBook>,
}

/// The steps records follow here, read once from the profile.
pub(crate) struct Flows {
    pub households: Flow,
    pub villages: Flow,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Hub({}, {:?})", self.cfg.region, self.store.backend())
    }
}
