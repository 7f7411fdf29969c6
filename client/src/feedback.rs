//! Feedback coming down: pages sized to what the line carries inside the timeout.

use crate::error::HubError;
use crate::pace::Pace;
use crate::signed::{HubClient, decode};
use jianka_shared::protocol::FeedbackPage;
use std::time::Instant;

/// The largest feedback page asked for on a fast line.
pub const FEEDBACK_PAGE_MAX: usize = 1 << 20;

impl HubClient {
    /// One page of feedback after `since`, no larger than the line carries in a quarter of the
    /// timeout (as upload pieces are); a page cut by the timeout is asked for again, smaller. The
    /// page must be signed by the parent hub (see [`HubClient::verifying_feedback`]).
    pub async fn pull_page(&self, since: u64, pace: &mut Pace) -> Result<FeedbackPage, HubError> {
        let timeout = self.timeout();
        let mut delays = self.retry_delays();
        loop {
            let max_bytes = pace.piece(timeout, FEEDBACK_PAGE_MAX);
            let path = format!("/v1/feedback?since={since}&max_bytes={max_bytes}");
            let asked = Instant::now();
            match self.once("GET", &path, b"").await {
                Ok(body) => {
                    pace.observe(body.len(), asked.elapsed());
                    let page: FeedbackPage = decode("GET", &path, &body)?;
                    return match &self.parent {
                        Some((key, region)) => match page.verify(key, region, since) {
                            Ok(()) => Ok(page),
                            Err(message) => Err(HubError::Unverified { path, message }),
                        },
                        None => Err(HubError::Unverified {
                            path,
                            message: "no key to check the parent hub's signature with (install the certificate chain \
                                      first)"
                                .into(),
                        }),
                    };
                }
                Err(e) if e.retryable() => {
                    if e.timed_out(asked, timeout) {
                        pace.timed_out(max_bytes, timeout);
                    }
                    let Some(d) = delays.next() else { return Err(e) };
                    tracing::warn!(error = %e, retry_in_ms = d.as_millis() as u64, "feedback page failed; retrying");
                    tokio::time::sleep(d).await;
                }
                Err(e) => return Err(e),
            }
        }
    }
}
