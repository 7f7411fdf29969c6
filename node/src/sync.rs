//! One sync pass: seal what is pending, push unacknowledged envelopes in order (repairing gaps,
//! resuming chunked uploads), then pull and apply the county's feedback. Acknowledgements are
//! recorded only after the hub answers, so a kill anywhere leads to a resend the hub dedups.

use crate::node::Node;
use crate::outbox::{self, CutPolicy};
use crate::progress::Progress;
use crate::{db, feedback, pace};
use anyhow::{Context, Result, bail};
use indicatif::ProgressBar;
use jianka_client::{HubClient, Sizes};
use jianka_shared::protocol::{ErrorCode, Feedback, FeedbackEntry, PushOutcome};
use serde::Serialize;
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, Default, Serialize)]
pub struct SyncReport {
    pub sealed: Vec<u64>,
    pub pushed: Vec<u64>,
    pub acknowledged_through: u64,
    pub feedback_applied: usize,
    pub pending_envelopes: usize,
}

/// The client to the county; feedback is accepted only signed by the county key of the
/// installed chain (without one, pulling feedback fails and says to install it).
pub fn client(node: &Node) -> Result<HubClient> {
    let c = &node.cfg.config;
    let key = node.keypair()?;
    let clock = node.clock;
    let client = HubClient::new(
        &c.hub_url,
        key.signing().clone(),
        Arc::new(move || clock.unix_secs()),
        Duration::from_secs(c.sync.request_timeout_secs),
        c.sync.retries,
    )?;
    let county = node.chain()?.and_then(|chain| jianka_shared::trust::parent_key(&chain, node.township()));
    Ok(match county {
        Some(k) => client.verifying_feedback(k, node.township().clone()),
        None => client,
    })
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

    let state = client.sync_state().await.context("cannot read the sync state")?;
    for c in &state.cycle {
        feedback::apply_item(&node.conn, &Feedback::Cycle(c.clone()), now(), None)?;
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
    let certs = node.chain()?;
    let pages = progress.counter("feedback items", "pulling the county's feedback");
    let mut pace = pace::load(&node.conn);
    loop {
        let since = feedback::since(&node.conn)?;
        let page = client.pull_page(since, &mut pace).await.context("cannot pull feedback")?;
        pace::save(&node.conn, &pace)?;
        if page.items.is_empty() {
            break;
        }
        let items: Vec<FeedbackEntry> = page.items;
        report.feedback_applied += feedback::apply_page(&mut node.conn, &items, now(), certs.as_deref())?;
        pages.set_position(report.feedback_applied as u64);
        if feedback::since(&node.conn)? <= since {
            break;
        }
    }
    pages.finish_and_clear();
    // Cycle items in the feedback are history (e.g. the window opening, while the node was away);
    // the sync state read above is the hub's word as of now, so it has the last say.
    for c in &state.cycle {
        feedback::apply_item(&node.conn, &Feedback::Cycle(c.clone()), now(), None)?;
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
    // Every request sized to what the line carries well inside its timeout (see `Pace`).
    let mut pace = pace::load(&node.conn);
    let sizes = Sizes { threshold: s.chunk_threshold_bytes, max_piece: s.chunk_bytes };
    let r = client.push(seq, bytes, &mut pace, sizes, |received| pb.set_position(start + received)).await;
    pace::save(&node.conn, &pace)?;
    pb.set_position(start + bytes.len() as u64);
    r.map_err(|e| match e.code() {
        Some(ErrorCode::Equivocation) => anyhow::anyhow!(
            "{e}\nThe hub holds a different change set {seq} from this node. This must not happen; ask the county."
        ),
        _ => anyhow::Error::new(e).context(format!("cannot push change set {seq}")),
    })
}
