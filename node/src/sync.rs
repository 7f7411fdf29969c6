//! One sync pass: seal what is pending, push unacknowledged envelopes in order (repairing gaps,
//! resuming chunked uploads), then pull and apply the county's feedback. Acknowledgements are
//! recorded only after the hub answers, so a kill anywhere leads to a resend the hub dedups.

use crate::client::{HubClient, HubError};
use crate::node::Node;
use crate::outbox::{self, CutPolicy};
use crate::{db, feedback};
use anyhow::{Context, Result, bail};
use jianka_shared::protocol::{
    ChunkAck, ErrorCode, Feedback, FeedbackEntry, FeedbackPage, PushOutcome, SyncState, UploadState,
};
use serde::Serialize;
use std::time::Duration;

#[derive(Debug, Default, Serialize)]
pub struct SyncReport {
    pub sealed: Vec<u64>,
    pub pushed: Vec<u64>,
    pub acknowledged_through: u64,
    pub feedback_applied: usize,
    pub pending_envelopes: usize,
}

pub fn client(node: &Node) -> Result<HubClient> {
    let c = &node.cfg.config;
    let key = node.keypair()?;
    HubClient::new(
        &c.hub_url,
        key.signing().clone(),
        node.clock,
        Duration::from_secs(c.sync.request_timeout_secs),
        c.sync.retries,
    )
}

/// Seals pending changes per the config's cut policy (`force` seals everything now).
pub fn seal(node: &mut Node, force: bool) -> Result<Vec<u64>> {
    let key = node.keypair()?;
    let s = &node.cfg.config.sync;
    let policy = CutPolicy { max_ops: s.max_ops_per_changeset, max_age_ms: s.max_changeset_age_secs * 1000, force };
    let origin = node.township().clone();
    outbox::seal_pending(&mut node.conn, &origin, key.signing(), node.clock, policy)
}

pub async fn sync_once(node: &mut Node, client: &HubClient, force_seal: bool) -> Result<SyncReport> {
    let mut report = SyncReport { sealed: seal(node, force_seal)?, ..Default::default() };
    let now = || node.clock.millis();
    db::set_meta(&node.conn, "last_sync_attempt", &node.clock.now().to_rfc3339())?;

    let state: SyncState = client.call("GET", "/v1/sync/state", b"").await.context("cannot read the sync state")?;
    for c in &state.cycle {
        feedback::apply_item(&node.conn, &Feedback::Cycle(c.clone()), now())?;
    }
    let (last_seq, _) = outbox::last_envelope(&node.conn)?;
    if state.expected_seq > last_seq + 1 {
        bail!(
            "the hub already holds change sets up to {} but this node has sealed only {last_seq}; \
             was the node's database restored from an old copy? Ask the county before going on",
            state.expected_seq - 1
        );
    }
    if state.expected_seq > 1 {
        let (_, hash) = outbox::envelope(&node.conn, state.expected_seq - 1)?.context("envelope missing locally")?;
        if hex::encode(hash) != state.last_hash {
            bail!(
                "the hub's last change set {} differs from this node's (hash {} vs {}); the streams diverged",
                state.expected_seq - 1,
                state.last_hash,
                hex::encode(hash)
            );
        }
    }
    outbox::mark_acked_below(&node.conn, state.expected_seq, now())?;

    let mut next = state.expected_seq.max(1);
    let mut guard = 3 * (last_seq + 2);
    while next <= last_seq {
        guard = guard.saturating_sub(1);
        if guard == 0 {
            bail!("the hub keeps asking for change sets out of order; giving up this pass");
        }
        let (bytes, _) = outbox::envelope(&node.conn, next)?.with_context(|| format!("envelope {next} missing"))?;
        let outcome = push(node, client, next, &bytes).await?;
        tracing::info!(seq = next, outcome = ?outcome_name(&outcome), "pushed change set");
        match outcome {
            PushOutcome::Gap { expected } => {
                // The hub names the sequence it needs: resend from there.
                outbox::mark_acked_below(&node.conn, expected, now())?;
                if expected > last_seq + 1 {
                    bail!("the hub expects change set {expected}, beyond this node's last ({last_seq})");
                }
                next = expected;
            }
            ref o => {
                feedback::apply_outcome(&node.conn, next, o, now())?;
                report.pushed.push(next);
                next += 1;
            }
        }
    }
    report.acknowledged_through = next - 1;

    // Pull what the county decided.
    loop {
        let since = feedback::since(&node.conn)?;
        let page: FeedbackPage =
            client.call("GET", &format!("/v1/feedback?since={since}"), b"").await.context("cannot pull feedback")?;
        if page.items.is_empty() {
            break;
        }
        let items: Vec<FeedbackEntry> = page.items;
        report.feedback_applied += feedback::apply_page(&mut node.conn, &items, now())?;
        if feedback::since(&node.conn)? <= since {
            break;
        }
    }
    report.pending_envelopes = outbox::unacked(&node.conn)?.len();
    db::set_meta(&node.conn, "last_sync_ok", &node.clock.now().to_rfc3339())?;
    Ok(report)
}

fn outcome_name(o: &PushOutcome) -> &'static str {
    match o {
        PushOutcome::Accepted { .. } => "accepted",
        PushOutcome::Duplicate { .. } => "duplicate",
        PushOutcome::Gap { .. } => "gap",
    }
}

async fn push(node: &Node, client: &HubClient, seq: u64, bytes: &[u8]) -> Result<PushOutcome> {
    let s = &node.cfg.config.sync;
    let r = if bytes.len() > s.chunk_threshold_bytes {
        upload(client, seq, bytes, s.chunk_bytes).await
    } else {
        client.call::<PushOutcome>("POST", "/v1/changesets", bytes).await
    };
    r.map_err(|e| match e.code() {
        Some(ErrorCode::Equivocation) => anyhow::anyhow!(
            "{e}\nThe hub holds a different change set {seq} from this node. This must not happen; ask the county."
        ),
        _ => anyhow::Error::new(e).context(format!("cannot push change set {seq}")),
    })
}

/// Chunked, resumable upload: continue from what the hub says it holds.
async fn upload(client: &HubClient, seq: u64, bytes: &[u8], chunk: usize) -> Result<PushOutcome, HubError> {
    let total = bytes.len() as u64;
    let state: UploadState = client.call("GET", &format!("/v1/uploads/{seq}"), b"").await?;
    let mut received = if state.total == total { state.received.min(total) } else { 0 };
    loop {
        let end = (received + chunk as u64).min(total);
        let path = format!("/v1/uploads/{seq}?offset={received}&total={total}");
        let ack: ChunkAck = client.call("PUT", &path, &bytes[received as usize..end as usize]).await?;
        if let Some(outcome) = ack.outcome {
            return Ok(outcome);
        }
        if ack.received >= total {
            // Assembled but the outcome was lost (e.g. a cut answer): the sync state tells.
            let st: SyncState = client.call("GET", "/v1/sync/state", b"").await?;
            if st.expected_seq > seq {
                return Ok(PushOutcome::Duplicate { seq });
            }
            return Ok(PushOutcome::Gap { expected: st.expected_seq });
        }
        tracing::debug!(seq, received = ack.received, total, "chunk acknowledged");
        received = ack.received;
    }
}
