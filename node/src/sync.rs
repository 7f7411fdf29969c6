//! One sync pass: seal what is pending, push unacknowledged envelopes in order (repairing gaps,
//! resuming chunked uploads), then pull and apply the county's feedback. Acknowledgements are
//! recorded only after the hub answers, so a kill anywhere leads to a resend the hub dedups.

use crate::client::{HubClient, HubError};
use crate::node::Node;
use crate::outbox::{self, CutPolicy};
use crate::pace::Pace;
use crate::progress::Progress;
use crate::{db, feedback};
use anyhow::{Context, Result, bail};
use indicatif::ProgressBar;
use jianka_shared::protocol::{
    ChunkAck, ErrorCode, Feedback, FeedbackEntry, FeedbackPage, PushOutcome, SyncState, UploadState,
};
use serde::Serialize;
use std::time::{Duration, Instant};

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

/// One sync pass, silent (the daemon, tests).
pub async fn sync_once(node: &mut Node, client: &HubClient, force_seal: bool) -> Result<SyncReport> {
    sync_pass(node, client, force_seal, Progress::hidden()).await
}

/// One sync pass; `progress` draws the bytes pushed of the total (rate, time left), then the
/// feedback items pulled: a first sync over a slow line takes minutes.
pub async fn sync_pass(
    node: &mut Node,
    client: &HubClient,
    force_seal: bool,
    progress: Progress,
) -> Result<SyncReport> {
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
    // After a new key (`jianka-node new-key`): what the hub does not hold goes up under it.
    let origin = node.township().clone();
    let key = node.keypair()?;
    let resealed = outbox::reseal_from(&mut node.conn, &origin, key.signing(), state.expected_seq.max(1))?;
    if resealed > 0 {
        tracing::info!(resealed, "change sets sealed again with this node's new key");
    }

    let mut next = state.expected_seq.max(1);
    let mut guard = 3 * (last_seq + 2);
    let to_push = outbox::bytes_from(&node.conn, next)?;
    let pb = match next <= last_seq {
        true => progress.bytes(to_push, &format!("pushing change sets {next}–{last_seq}")),
        false => ProgressBar::hidden(),
    };
    while next <= last_seq {
        guard = guard.saturating_sub(1);
        if guard == 0 {
            bail!("the hub keeps asking for change sets out of order; giving up this pass");
        }
        let (bytes, _) = outbox::envelope(&node.conn, next)?.with_context(|| format!("envelope {next} missing"))?;
        pb.set_message(format!("pushing change set {next} of {last_seq}"));
        pb.set_position(to_push.saturating_sub(outbox::bytes_from(&node.conn, next)?));
        let outcome = push(node, client, next, &bytes, &pb).await?;
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
    pb.finish_and_clear();
    report.acknowledged_through = next - 1;

    // Pull what the county decided.
    let pages = progress.counter("feedback items", "pulling the county's feedback");
    let timeout = Duration::from_secs(node.cfg.config.sync.request_timeout_secs);
    let mut pace = Pace::load(&node.conn);
    loop {
        let since = feedback::since(&node.conn)?;
        let body = pull_page(client, since, &mut pace, timeout).await.context("cannot pull feedback")?;
        pace.save(&node.conn)?;
        let page: FeedbackPage = serde_json::from_slice(&body).context("the hub's feedback page is unreadable")?;
        if page.items.is_empty() {
            break;
        }
        let items: Vec<FeedbackEntry> = page.items;
        report.feedback_applied += feedback::apply_page(&mut node.conn, &items, now())?;
        pages.set_position(report.feedback_applied as u64);
        if feedback::since(&node.conn)? <= since {
            break;
        }
    }
    pages.finish_and_clear();
    // Cycle items in the feedback are history (e.g. the window opening, while the node was away);
    // the sync state read above is the hub's word as of now, so it has the last say.
    for c in &state.cycle {
        feedback::apply_item(&node.conn, &Feedback::Cycle(c.clone()), now())?;
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

/// Pushes one envelope; `pb` (positioned at its first byte) moves on as its bytes are taken.
async fn push(node: &Node, client: &HubClient, seq: u64, bytes: &[u8], pb: &ProgressBar) -> Result<PushOutcome> {
    let s = &node.cfg.config.sync;
    let start = pb.position();
    // Every request sized to what the line carries well inside its timeout (see `pace`).
    let timeout = Duration::from_secs(s.request_timeout_secs);
    let mut pace = Pace::load(&node.conn);
    let r = if pace.chunk(bytes.len(), timeout, s.chunk_threshold_bytes) {
        let sizes = Pieces { pace: &mut pace, timeout, max: s.chunk_bytes };
        upload(client, seq, bytes, sizes, |received| pb.set_position(start + received)).await
    } else {
        match post(client, seq, bytes, &mut pace, timeout).await {
            // Cut by its timeout as a whole: the line is slower than that; go on in pieces.
            Err(e) if pace.chunk(bytes.len(), timeout, s.chunk_threshold_bytes) => {
                tracing::warn!(error = %e, seq, "change set too large for the line in one request; sending it in pieces");
                let sizes = Pieces { pace: &mut pace, timeout, max: s.chunk_bytes };
                upload(client, seq, bytes, sizes, |received| pb.set_position(start + received)).await
            }
            other => other,
        }
    };
    pace.save(&node.conn)?;
    pb.set_position(start + bytes.len() as u64);
    r.map_err(|e| match e.code() {
        Some(ErrorCode::Equivocation) => anyhow::anyhow!(
            "{e}\nThe hub holds a different change set {seq} from this node. This must not happen; ask the county."
        ),
        _ => anyhow::Error::new(e).context(format!("cannot push change set {seq}")),
    })
}

/// Whether the hub already applied `seq` (its answer may have been lost on the way back).
async fn already_applied(client: &HubClient, seq: u64) -> Result<bool, HubError> {
    let st: SyncState = client.call("GET", "/v1/sync/state", b"").await?;
    Ok(st.expected_seq > seq)
}

/// Sends a whole envelope. After a failure it asks the hub what it holds before resending, so
/// a lost answer costs a small request, not the envelope again.
async fn post(
    client: &HubClient,
    seq: u64,
    bytes: &[u8],
    pace: &mut Pace,
    timeout: Duration,
) -> Result<PushOutcome, HubError> {
    let mut delays = client.retry_delays();
    loop {
        let sent = Instant::now();
        let err = match client.once("POST", "/v1/changesets", bytes).await {
            Ok(body) => {
                pace.observe(bytes.len(), sent.elapsed());
                return serde_json::from_slice(&body).map_err(|e| HubError::BadAnswer {
                    method: "POST",
                    path: "/v1/changesets".into(),
                    message: e.to_string(),
                });
            }
            Err(e) if matches!(e, HubError::Transport { .. }) && sent.elapsed() >= timeout => {
                // Resending it whole would be cut the same way: the caller goes on in pieces.
                pace.timed_out(bytes.len(), timeout);
                if already_applied(client, seq).await? {
                    return Ok(PushOutcome::Duplicate { seq });
                }
                return Err(e);
            }
            Err(e) if e.retryable() => e,
            Err(e) => return Err(e),
        };
        let Some(d) = delays.next() else { return Err(err) };
        tracing::warn!(error = %err, retry_in_ms = d.as_millis() as u64, seq, "push failed; retrying");
        tokio::time::sleep(d).await;
        if already_applied(client, seq).await? {
            return Ok(PushOutcome::Duplicate { seq });
        }
    }
}

/// One page of feedback after `since`, no larger than the line carries in a quarter of the
/// timeout (as upload pieces are); a page cut by the timeout is asked for again, smaller.
async fn pull_page(client: &HubClient, since: u64, pace: &mut Pace, timeout: Duration) -> Result<Vec<u8>, HubError> {
    let mut delays = client.retry_delays();
    loop {
        let max_bytes = pace.piece(timeout, FEEDBACK_PAGE_MAX);
        let asked = Instant::now();
        match client.once("GET", &format!("/v1/feedback?since={since}&max_bytes={max_bytes}"), b"").await {
            Ok(body) => {
                pace.observe(body.len(), asked.elapsed());
                return Ok(body);
            }
            Err(e) if e.retryable() => {
                if matches!(e, HubError::Transport { .. }) && asked.elapsed() >= timeout {
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

/// The largest feedback page asked for on a fast line.
const FEEDBACK_PAGE_MAX: usize = 1 << 20;

/// How large each piece of an upload is: sized by the link's pace, up to the config's chunk size.
struct Pieces<'a> {
    pace: &'a mut Pace,
    timeout: Duration,
    max: usize,
}

/// Chunked, resumable upload: continue from what the hub says it holds, and after a failure ask
/// it again rather than resending blindly. Each piece is as large as the line carries in a
/// quarter of the request timeout, measured as it goes.
async fn upload(
    client: &HubClient,
    seq: u64,
    bytes: &[u8],
    sizes: Pieces<'_>,
    on_received: impl Fn(u64),
) -> Result<PushOutcome, HubError> {
    let Pieces { pace, timeout, max } = sizes;
    let total = bytes.len() as u64;
    let mut delays = client.retry_delays();
    let resume = |state: UploadState| if state.total == total { state.received.min(total) } else { 0 };
    let mut received = resume(client.call("GET", &format!("/v1/uploads/{seq}"), b"").await?);
    loop {
        if received >= total {
            // Assembled but the outcome was lost (e.g. a cut answer): the sync state tells.
            if already_applied(client, seq).await? {
                return Ok(PushOutcome::Duplicate { seq });
            }
            // Whole at the hub but not applied (it stopped while merging it): the last chunk sent
            // again has the hub ingest what it holds (it ignores bytes it already has).
            received = total - (pace.piece(timeout, max) as u64).min(total);
            continue;
        }
        let piece = pace.piece(timeout, max);
        let end = (received + piece as u64).min(total);
        let path = format!("/v1/uploads/{seq}?offset={received}&total={total}");
        let sent = Instant::now();
        match client.once("PUT", &path, &bytes[received as usize..end as usize]).await {
            Ok(body) => {
                pace.observe((end - received) as usize, sent.elapsed());
                let ack: ChunkAck = serde_json::from_slice(&body).map_err(|e| HubError::BadAnswer {
                    method: "PUT",
                    path: path.clone(),
                    message: e.to_string(),
                })?;
                if let Some(outcome) = ack.outcome {
                    return Ok(outcome);
                }
                tracing::debug!(seq, received = ack.received, total, "chunk acknowledged");
                received = ack.received;
                on_received(received);
                // Progress resets the backoff: a long upload over a lossy link must not wait
                // longer and longer for failures spread over many chunks.
                delays = client.retry_delays();
            }
            Err(e) if e.retryable() => {
                if matches!(e, HubError::Transport { .. }) && sent.elapsed() >= timeout {
                    // Cut by its timeout: the next pieces are smaller.
                    pace.timed_out((end - received) as usize, timeout);
                }
                let Some(d) = delays.next() else { return Err(e) };
                tracing::warn!(error = %e, retry_in_ms = d.as_millis() as u64, seq, "chunk failed; retrying");
                tokio::time::sleep(d).await;
                // Only the last chunk can have completed the envelope; for the others the hub's
                // upload state alone says where to go on.
                if end == total && already_applied(client, seq).await? {
                    return Ok(PushOutcome::Duplicate { seq });
                }
                received = resume(client.call("GET", &format!("/v1/uploads/{seq}"), b"").await?);
            }
            Err(e) => return Err(e),
        }
    }
}
