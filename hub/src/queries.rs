//! Read-only queries a child or an officer makes: the sender's sync state, the records of a
//! region and their digest.

use crate::auth::Sender;
use crate::error::HubError;
use crate::record::{StoredRecord, range_of, row_from};
use crate::state::Hub;
use crate::store::get_i64;
use crate::years;
use jianka_shared::digest::{SetDigest, record_digest};
use jianka_shared::protocol::{DigestReport, SyncState};
use jianka_shared::{RegionCode, Year};
use sqlx::Row;

impl Hub {
    pub async fn sync_state(&self, sender: &Sender) -> Result<SyncState, HubError> {
        // Every query takes a pooled connection only for itself: a handler holding one while
        // waiting for another starves the pool when townships sync in the same minute.
        let r = sqlx::query("SELECT next_seq, last_hash FROM streams WHERE origin = $1")
            .bind(sender.region.to_string())
            .fetch_optional(&self.db.pool)
            .await?;
        let (expected_seq, last_hash) = match r {
            Some(r) => (get_i64(&r, 0) as u64, r.try_get(1)?),
            None => (1, hex::encode([0u8; 32])),
        };
        Ok(SyncState {
            origin: sender.region.clone(),
            expected_seq,
            last_hash,
            cycle: years::cycle_infos(&self.db, self.today(), self.profile.as_ref(), self.region(), &sender.region)
                .await?,
            hub_time: self.now_secs(),
        })
    }

    /// Records of `scope` for `year` (live only), sorted by key.
    pub async fn records_in(&self, scope: &RegionCode, year: Year) -> Result<Vec<StoredRecord>, HubError> {
        let (lo, hi) = range_of(scope);
        let rows = sqlx::query("SELECT k, region, hh, fields, deleted FROM records WHERE year = $1 AND region >= $2 AND region < $3 AND deleted = 0")
            .bind(year as i64)
            .bind(lo)
            .bind(hi)
            .fetch_all(&self.db.pool)
            .await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            let k: String = r.try_get(0)?;
            out.push(row_from(&k, r.try_get(1)?, r.try_get(2)?, &r.try_get::<String, _>(3)?, false)?);
        }
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    pub async fn digest(&self, scope: &RegionCode, year: Year) -> Result<DigestReport, HubError> {
        let rows = self.records_in(scope, year).await?;
        let mut set = SetDigest::default();
        let mut records = Vec::with_capacity(rows.len());
        for r in &rows {
            let d = record_digest(&r.to_record());
            set.add(&d);
            records.push((r.key.clone(), hex::encode(d)));
        }
        Ok(DigestReport { scope: scope.clone(), year, count: set.count, digest: set.hex(), records })
    }
}
