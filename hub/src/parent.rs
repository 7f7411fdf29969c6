//! The county's link to its province: one client for every request up (change sets, sign-offs,
//! feedback), with the node's retries, backoff and jitter, and the line's pace kept in the hub's
//! meta table so the next run starts at it.

use crate::state::Hub;
use anyhow::Context;
use jianka_client::{HubClient, Pace};
use std::sync::Arc;
use std::time::Duration;

/// A request to the province is cut after this long without a byte moving; pieces and pages are
/// sized to a quarter of it.
pub const TIMEOUT: Duration = Duration::from_secs(120);
/// Attempts after the first for a request that may succeed later: at 30 % of requests lost, all
/// nine fail about once in 50,000 requests.
pub const RETRIES: usize = 8;
const PACE_KEY: &str = "parent_bytes_per_sec";

impl Hub {
    /// A client of the province at the config's `parent_url`; `what` names the job for the
    /// message when there is none.
    pub(crate) fn parent_client(&self, what: &str) -> anyhow::Result<HubClient> {
        let Some(base) = self.cfg.parent_url.as_deref() else {
            anyhow::bail!("no parent_url in the config: set the province hub's URL to {what}");
        };
        let clock = self.clock.clone();
        let client =
            HubClient::new(base, self.key.clone(), Arc::new(move || clock.now().timestamp()), TIMEOUT, RETRIES)
                .context("cannot set up the HTTP client to the province")?;
        // The province's feedback must be signed by the key that certified this hub.
        let parent = self.chain().ok().and_then(|chain| jianka_shared::trust::parent_key(&chain, self.region()));
        Ok(match parent {
            Some(k) => client.verifying_feedback(k, self.region().clone()),
            None => client,
        })
    }

    /// The pace measured on the link to the province by earlier runs.
    pub(crate) async fn parent_pace(&self) -> anyhow::Result<Pace> {
        let kept = self.store.meta(PACE_KEY).await?;
        Ok(Pace::from_rate(kept.and_then(|s| s.parse::<f64>().ok())))
    }

    pub(crate) async fn keep_parent_pace(&self, pace: &Pace) -> anyhow::Result<()> {
        if let Some(r) = pace.rate() {
            self.set_meta(PACE_KEY, &format!("{r:.0}")).await?;
        }
        Ok(())
    }
}
