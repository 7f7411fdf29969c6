//! Read-only queries a child or an officer makes: the sender's sync state, the records of a
//! region and their digest.

use crate::auth::Sender;
use crate::error::HubError;
use crate::record::{StoredRecord, range_of};
use crate::state::Hub;
use crate::store::StreamState;
use crate::years;
use jianka_shared::digest::{SetDigest, record_digest};
use jianka_shared::protocol::{DigestReport, SyncState};
use jianka_shared::{RegionCode, Year};

impl Hub {
    pub async fn sync_state(&self, sender: &Sender) -> Result<SyncState, HubError> {
        // Every query takes a pooled connection only for itself: a handler holding one while
        // waiting for another starves the pool when townships sync in the same minute.
        let StreamState { next_seq: expected_seq, last_hash } =
            self.store.stream(sender.region.as_str()).await?.unwrap_or_default();
        Ok(SyncState {
            origin: sender.region.clone(),
            expected_seq,
            last_hash,
            cycle: years::cycle_infos(&*self.store, self.today(), self.profile.as_ref(), self.region(), &sender.region)
                .await?,
            hub_time: self.now_secs(),
        })
    }

    /// Records of `scope` for `year` (live only), sorted by key.
    pub async fn records_in(&self, scope: &RegionCode, year: Year) -> Result<Vec<StoredRecord>, HubError> {
        let (lo, hi) = range_of(scope);
        let mut out = self.store.records_in(year, &lo, &hi).await?;
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
