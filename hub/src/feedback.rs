//! Feedback to the tier below: items stored per region in id order and read in pages sized to
//! the line; corrections and removals batched into items of at most `CORRECTIONS_PER_ITEM` records.

use crate::error::HubError;
use crate::state::Hub;
use crate::store::records::PIPELINE_ROWS;
use crate::store::{dynamic, execute_pipelined, get_i64, is_sqlite, placeholders};
use jianka_shared::protocol::{CORRECTIONS_PER_ITEM, Correction, ErrorCode, Feedback, FeedbackEntry, FeedbackPage};
use jianka_shared::{Hlc, RecordKey, RegionCode};
use sqlx::Row;
use sqlx::{Any, Transaction};
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
        let rows = sqlx::query("SELECT id, item FROM feedback WHERE region = $1 AND id > $2 ORDER BY id LIMIT 1000")
            .bind(region.to_string())
            .bind(after)
            .fetch_all(&self.db.pool)
            .await?;
        let mut items = Vec::with_capacity(rows.len());
        let mut bytes = 0usize;
        for r in rows {
            let text: String = r.try_get(1)?;
            bytes += text.len();
            if max_bytes.is_some_and(|max| bytes > max) && !items.is_empty() {
                break;
            }
            let item: Feedback = serde_json::from_str(&text)
                .map_err(|e| HubError::new(ErrorCode::Internal, format!("stored feedback unreadable: {e}")))?;
            items.push(FeedbackEntry { id: get_i64(&r, 0) as u64, item });
        }
        let next = items.last().map(|e| e.id).unwrap_or(since);
        Ok(FeedbackPage { items, next })
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

pub async fn push_feedback(tx: &mut Transaction<'static, Any>, items: &[(String, Feedback)]) -> Result<(), HubError> {
    let sqlite = is_sqlite(tx);
    let build = |chunk: &[(String, Feedback)]| {
        let sql = format!("INSERT INTO feedback (region, item) VALUES {}", placeholders(sqlite, chunk.len(), 2));
        let mut q = sqlx::query(dynamic(sql));
        for (region, item) in chunk {
            q = q.bind(region.clone()).bind(serde_json::to_string(item).expect("in-memory encoding"));
        }
        q
    };
    execute_pipelined(tx, items.chunks(PIPELINE_ROWS * 4).map(build)).await?;
    Ok(())
}
