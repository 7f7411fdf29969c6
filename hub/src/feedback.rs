//! Feedback to the tier below: items stored per region in id order and read in pages sized to
//! the line; corrections and removals batched into items of at most `CORRECTIONS_PER_ITEM` records.

use crate::error::HubError;
use crate::state::Hub;
use crate::store::WriteTx;
use jianka_shared::protocol::{CORRECTIONS_PER_ITEM, Correction, ErrorCode, Feedback, FeedbackEntry, FeedbackPage};
use jianka_shared::{Hlc, RecordKey, RegionCode};
use std::collections::BTreeMap;

impl Hub {
    pub async fn feedback(&self, region: &RegionCode, since: u64) -> Result<FeedbackPage, HubError> {
        self.feedback_page(region, since, None).await
    }

    /// A page of feedback after `since`: at most 1,000 items and, when `max_bytes` is given, no
    /// more than that many bytes of items (one at least), so a slow line gets pages it can carry
    /// inside its timeout.
    pub async fn feedback_page(
        &self,
        region: &RegionCode,
        since: u64,
        max_bytes: Option<usize>,
    ) -> Result<FeedbackPage, HubError> {
        // Ids are positive i64: a `since` beyond them all is an empty page, not a wrap to negative.
        let after = i64::try_from(since).unwrap_or(i64::MAX);
        let rows = self.store.feedback_after(region.as_str(), after, 1000).await?;
        let mut items = Vec::with_capacity(rows.len());
        let mut bytes = 0usize;
        for (id, text) in rows {
            bytes += text.len();
            if max_bytes.is_some_and(|max| bytes > max) && !items.is_empty() {
                break;
            }
            let item: Feedback = serde_json::from_str(&text)
                .map_err(|e| HubError::new(ErrorCode::Internal, format!("stored feedback unreadable: {e}")))?;
            items.push(FeedbackEntry { id: id as u64, item });
        }
        let next = items.last().map(|e| e.id).unwrap_or(since);
        let mut page = FeedbackPage { items, next, signed_by: String::new(), signature: String::new() };
        page.sign(&self.key, region, since);
        Ok(page)
    }
}

/// `Removed` items for `to`, at most [`CORRECTIONS_PER_ITEM`] keys each.
pub(crate) fn removed_feedback(to: &str, keys: &[RecordKey], version: Hlc) -> Vec<(String, Feedback)> {
    keys.chunks(CORRECTIONS_PER_ITEM)
        .map(|c| (to.to_string(), Feedback::Removed { keys: c.to_vec(), version }))
        .collect()
}

/// Feedback items carrying `corrections`, grouped by the township they go to, at most
/// [`CORRECTIONS_PER_ITEM`] records per item.
pub fn corrections_feedback(corrections: impl IntoIterator<Item = (String, Correction)>) -> Vec<(String, Feedback)> {
    let mut by_township: BTreeMap<String, Vec<Correction>> = BTreeMap::new();
    for (township, c) in corrections {
        by_township.entry(township).or_default().push(c);
    }
    let mut out = Vec::new();
    for (township, items) in by_township {
        for chunk in items.chunks(CORRECTIONS_PER_ITEM) {
            out.push((township.clone(), Feedback::Corrections { items: chunk.to_vec() }));
        }
    }
    out
}

/// Appends `items` to the feedback of their regions, in order.
pub async fn push_feedback(tx: &mut dyn WriteTx, items: &[(String, Feedback)]) -> Result<(), HubError> {
    let encoded = items
        .iter()
        .map(|(region, item)| (region.clone(), serde_json::to_string(item).expect("in-memory encoding")))
        .collect();
    tx.push_feedback(encoded).await?;
    Ok(())
}
