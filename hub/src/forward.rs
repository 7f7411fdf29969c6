//! Up one tier: a county forwards its accepted records to its parent (the province, or a
//! prefecture) as its own change sets (origin = the county, its own seq chain) and its
//! sign-offs; a prefecture forwards what it holds of its counties the same way, relays their
//! sign-offs, and files the allocations it issued (备案). On cron schedules and on demand.

use crate::record::storage_key;
use crate::state::Hub;
use crate::store::{RevisedRecord, SignOffRow};
use anyhow::{Context, bail};
use jianka_client::Sizes;
use jianka_shared::{
    Hlc, Tier,
    changeset::{Draft, FieldWrite, Op},
    protocol::*,
};

/// Envelopes above this go through chunked `/v1/uploads` even on a fast line (on a slow one,
/// smaller ones do too: what the line carries inside the timeout decides, see `Pace`).
pub const SMALL_ENVELOPE: usize = 256 << 10;
/// The largest piece of an upload.
const CHUNK: usize = 1 << 20;
const RECORDS_PER_CHANGESET: u32 = 20_000;

/// How far a forward is: records sent of those waiting when it began.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ForwardProgress {
    pub records_done: u64,
    pub records_total: u64,
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ForwardReport {
    pub changesets: u64,
    pub records: u64,
    pub signoffs: u64,
    /// Allocations a prefecture filed with the province (备案).
    pub filed: u64,
    /// What pulling the province's feedback afterwards applied.
    pub pulled: crate::upstream::PullReport,
}

impl Hub {
    /// Sends every record changed since the last forward, then pending sign-offs.
    pub async fn forward(&self) -> anyhow::Result<ForwardReport> {
        self.forward_with(&|_| {}).await
    }

    /// [`Hub::forward`], telling `progress` how many of the records to forward have gone up
    /// (a county's first forward of a year can be hundreds of thousands over a slow line).
    pub async fn forward_with(&self, progress: &(dyn Fn(ForwardProgress) + Sync)) -> anyhow::Result<ForwardReport> {
        if !matches!(self.region().tier(), Tier::County | Tier::Prefecture) {
            bail!("a county or prefecture hub forwards to the hub above; this hub serves {}", self.region());
        }
        let client = self.parent_client("forward")?;
        let mut pace = self.parent_pace().await?;
        let mut report = ForwardReport::default();
        let total = {
            let cursor = self.store.meta("forward_cursor").await?.unwrap_or_else(|| "0|".into());
            let (rev, k) = cursor.split_once('|').unwrap_or(("0", ""));
            self.store.count_records_after(rev.parse::<i64>().unwrap_or(0), k).await?
        };
        let mut done = 0u64;
        progress(ForwardProgress { records_done: 0, records_total: total });
        loop {
            let state = client.sync_state().await.context("cannot read the province's sync state")?;
            // A change set an earlier run sealed (and was perhaps cut or killed while sending) goes
            // again byte for byte: sealing the same number anew would be equivocation.
            let (seq, bytes, last, batch) = match self.pending_forward().await? {
                Some(p) if state.expected_seq > p.seq => {
                    self.finish_forward(&p.cursor).await?;
                    continue;
                }
                Some(p) if state.expected_seq == p.seq => (p.seq, p.bytes, p.cursor, p.records),
                Some(p) => bail!(
                    "the parent expects change set {} but this hub sealed {} already; it does not hold what \
                     came before (restored from a backup?) — call the parent's IT officer",
                    state.expected_seq,
                    p.seq
                ),
                None => match self.seal_next(&state).await? {
                    Sealed::Nothing => break,
                    Sealed::Skipped(cursor) => {
                        self.set_meta("forward_cursor", &cursor).await?;
                        continue;
                    }
                    Sealed::Envelope(p) => (p.seq, p.bytes, p.cursor, p.records),
                },
            };
            // Retried with backoff, large ones in resumable pieces: a cut request costs the
            // piece it carried, not the forward.
            let sizes = Sizes { threshold: SMALL_ENVELOPE, max_piece: CHUNK };
            let pushed = client.push(seq, &bytes, &mut pace, sizes, |_| {}).await;
            self.keep_parent_pace(&pace).await?;
            let outcome = pushed.with_context(|| format!("cannot forward change set {seq}"))?;
            match outcome {
                PushOutcome::Accepted { .. } | PushOutcome::Duplicate { .. } => {
                    self.finish_forward(&last).await?;
                    report.changesets += 1;
                    report.records += batch;
                    done += batch;
                    progress(ForwardProgress { records_done: done.min(total), records_total: total });
                }
                PushOutcome::Gap { expected } => bail!("province expects change set {expected}; retry the forward"),
            }
        }
        // Sign-offs not yet delivered: a county's own; a prefecture's counties', each with the
        // county's certificate so the province can check the county's signature.
        let signoffs = match self.region().tier() {
            Tier::County => self.store.signoffs_of(self.region().as_str()).await?,
            _ => self.store.signoffs().await?,
        };
        for SignOffRow { county, year, period, body, .. } in signoffs {
            let flag = match self.region().tier() {
                Tier::County => format!("signoff_sent:{year}:{period}"),
                _ => format!("signoff_sent:{county}:{year}:{period}"),
            };
            if self.store.meta(&flag).await?.is_some() {
                continue;
            }
            let body = match self.region().tier() {
                Tier::County => body,
                _ => self.with_certificate(&body).await?,
            };
            let _: serde_json::Value = client
                .call("POST", "/v1/signoffs", body.as_bytes())
                .await
                .with_context(|| format!("cannot send the sign-off of {county} {year} {period}"))?;
            self.set_meta(&flag, "1").await?;
            report.signoffs += 1;
        }
        // A prefecture files every allocation it issued with the province (备案).
        if self.region().tier() == Tier::Prefecture {
            report.filed = self.file_allocations(&client).await?;
        }
        // Then what the province decided since (completed moves, corrections), for the townships.
        report.pulled = self.pull_parent_feedback().await?;
        tracing::info!(
            changesets = report.changesets,
            records = report.records,
            signoffs = report.signoffs,
            "forwarded to the province"
        );
        Ok(report)
    }
}

impl Hub {
    /// A county's stored sign-off with the certificate this hub issued it attached, for relaying.
    async fn with_certificate(&self, body: &str) -> anyhow::Result<String> {
        let mut s: SignOff = serde_json::from_str(body).context("a stored sign-off")?;
        let row = self.store.cert(&s.key_id.to_string()).await?.with_context(|| {
            format!("the sign-off of {} names key {}, which this hub never enrolled", s.county, s.key_id)
        })?;
        s.certificate = Some(serde_json::from_str(&row.cert).context("a stored certificate")?);
        Ok(serde_json::to_string(&s)?)
    }

    /// Files the allocations this prefecture issued and has not filed yet with the province.
    async fn file_allocations(&self, client: &jianka_client::HubClient) -> anyhow::Result<u64> {
        let mut filed = 0;
        for held in self.all_allocations().into_iter().filter(|h| &h.allocation.issuer == self.region()) {
            let flag = format!("allocation_filed:{}", held.digest());
            if self.store.meta(&flag).await?.is_some() {
                continue;
            }
            let body = serde_json::to_vec(&held.chain)?;
            let _: serde_json::Value = client
                .call("POST", "/v1/allocations", &body)
                .await
                .with_context(|| format!("cannot file the allocation for {}", held.allocation.region))?;
            self.set_meta(&flag, "1").await?;
            filed += 1;
        }
        Ok(filed)
    }
}

/// A change set sealed for the parent and kept until the parent holds it (meta
/// `forward_pending`): its number, the forward cursor after its records, and its bytes.
struct Pending {
    seq: u64,
    cursor: String,
    records: u64,
    bytes: Vec<u8>,
}

enum Sealed {
    /// Nothing left to forward.
    Nothing,
    /// Only records the parent wrote itself: move the cursor past them.
    Skipped(String),
    Envelope(Pending),
}

const PENDING: &str = "forward_pending";

impl Hub {
    async fn pending_forward(&self) -> anyhow::Result<Option<Pending>> {
        let Some(text) = self.store.meta(PENDING).await?.filter(|t| !t.is_empty()) else { return Ok(None) };
        let v: serde_json::Value = serde_json::from_str(&text).context("the kept forward change set")?;
        let bytes = hex::decode(v["bytes"].as_str().unwrap_or_default()).context("the kept forward change set")?;
        Ok(Some(Pending {
            seq: v["seq"].as_u64().context("the kept forward change set's number")?,
            cursor: v["cursor"].as_str().unwrap_or_default().to_string(),
            records: v["records"].as_u64().unwrap_or(0),
            bytes,
        }))
    }

    /// The parent holds the pending change set: the cursor moves past it and it is dropped, together.
    async fn finish_forward(&self, cursor: &str) -> anyhow::Result<()> {
        let (_g, mut tx) = self.begin_write().await?;
        tx.set_meta("forward_cursor", cursor).await?;
        tx.set_meta(PENDING, "").await?;
        tx.commit().await?;
        Ok(())
    }

    /// Seals the records after the forward cursor as change set `state.expected_seq` and keeps
    /// it before anything is sent.
    async fn seal_next(&self, state: &SyncState) -> anyhow::Result<Sealed> {
        let cursor = self.store.meta("forward_cursor").await?.unwrap_or_else(|| "0|".into());
        let (rev, k) = cursor.split_once('|').unwrap_or(("0", ""));
        let rows = self.store.records_after(rev.parse().unwrap_or(0), k, RECORDS_PER_CHANGESET).await?;
        if rows.is_empty() {
            return Ok(Sealed::Nothing);
        }
        let records = rows.len() as u64;
        let mut ops = Vec::with_capacity(rows.len());
        let mut last = String::new();
        for RevisedRecord { record: row, rev } in rows {
            last = format!("{rev}|{}", storage_key(&row.key));
            let key = row.key.clone();
            if row.deleted && row.fields.contains_key(crate::upstream::MOVED_TO) {
                // The province's own completed move: it already holds the person elsewhere.
                continue;
            }
            if row.deleted {
                let v = row.fields.values().map(|f| f.1).max().unwrap_or(0);
                ops.push(Op::Delete { key, version: Hlc(v), base: Hlc::ZERO });
            } else {
                let fields = row
                    .fields
                    .iter()
                    .map(|(n, f)| FieldWrite {
                        name: n.clone(),
                        value: f.0.clone(),
                        version: Hlc(f.1),
                        base: Hlc::ZERO,
                    })
                    .collect();
                ops.push(Op::Upsert { key, fields });
            }
        }
        if ops.is_empty() {
            return Ok(Sealed::Skipped(last));
        }
        let prev: [u8; 32] =
            hex::decode(&state.last_hash).ok().and_then(|v| v.try_into().ok()).context("parent's last_hash")?;
        let draft = Draft {
            origin: self.region().clone(),
            seq: state.expected_seq,
            prev_hash: prev,
            year: ops.first().map(|o| o.key().year).unwrap_or(0),
            hlc: Hlc::new(self.clock.now().timestamp_millis().max(0) as u64, 0),
            ops,
        };
        let bytes = draft.seal(&self.key)?;
        let kept = serde_json::json!({"seq": state.expected_seq, "cursor": last, "records": records, "bytes": hex::encode(&bytes)});
        self.set_meta(PENDING, &kept.to_string()).await?;
        Ok(Sealed::Envelope(Pending { seq: state.expected_seq, cursor: last, records, bytes }))
    }
}
