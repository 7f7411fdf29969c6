//! One change set up to the hub: whole in one request when the line carries it well inside the
//! timeout, else in resumable pieces (`/v1/uploads`); after any failure the hub is asked what it
//! holds before anything is sent again, so a lost answer costs a small request, not the envelope.

use crate::error::HubError;
use crate::pace::Pace;
use crate::signed::{HubClient, decode};
use jianka_shared::protocol::{ChunkAck, PushOutcome, SyncState, UPLOAD_HASH_PARAM, UploadState};
use std::time::Instant;

/// How a sender cuts its change sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sizes {
    /// An envelope over this goes in pieces even on a fast line.
    pub threshold: usize,
    /// The largest piece.
    pub max_piece: usize,
}

impl HubClient {
    /// The hub's view of this sender's stream: the sequence it expects next, the hash of the last
    /// one it holds, and (for a township) the year's state.
    pub async fn sync_state(&self) -> Result<SyncState, HubError> {
        self.call("GET", "/v1/sync/state", b"").await
    }

    /// Whether the hub already applied `seq` (its answer may have been lost on the way back).
    pub async fn already_applied(&self, seq: u64) -> Result<bool, HubError> {
        Ok(self.sync_state().await?.expected_seq > seq)
    }

    /// Pushes change set `seq` (its sealed `bytes`), sized by `pace`, which it updates as it
    /// measures the line; `on_received` hears how many bytes of it the hub holds as pieces go.
    pub async fn push(
        &self,
        seq: u64,
        bytes: &[u8],
        pace: &mut Pace,
        sizes: Sizes,
        on_received: impl Fn(u64),
    ) -> Result<PushOutcome, HubError> {
        let timeout = self.timeout();
        if pace.chunk(bytes.len(), timeout, sizes.threshold) {
            return self.upload(seq, bytes, pace, sizes.max_piece, on_received).await;
        }
        match self.post(seq, bytes, pace).await {
            // Cut by its timeout as a whole: the line is slower than that; go on in pieces.
            Err(e) if pace.chunk(bytes.len(), timeout, sizes.threshold) => {
                tracing::warn!(error = %e, seq, "change set too large for the line in one request; sending it in pieces");
                self.upload(seq, bytes, pace, sizes.max_piece, on_received).await
            }
            other => other,
        }
    }

    /// Sends a whole envelope. After a failure it asks the hub what it holds before resending.
    pub async fn post(&self, seq: u64, bytes: &[u8], pace: &mut Pace) -> Result<PushOutcome, HubError> {
        let timeout = self.timeout();
        let mut delays = self.retry_delays();
        loop {
            let sent = Instant::now();
            let err = match self.once("POST", "/v1/changesets", bytes).await {
                Ok(body) => {
                    pace.observe(bytes.len(), sent.elapsed());
                    return decode("POST", "/v1/changesets", &body);
                }
                Err(e) if e.timed_out(sent, timeout) => {
                    // Resending it whole would be cut the same way: the caller goes on in pieces.
                    pace.timed_out(bytes.len(), timeout);
                    if self.already_applied(seq).await? {
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
            if self.already_applied(seq).await? {
                return Ok(PushOutcome::Duplicate { seq });
            }
        }
    }

    /// Chunked, resumable upload: continue from what the hub says it holds (a cut piece counts as
    /// far as it arrived), and after a failure ask it again rather than resending blindly. Each piece is as large as the line carries in
    /// a quarter of the request timeout (at most `max_piece`), measured as it goes.
    pub async fn upload(
        &self,
        seq: u64,
        bytes: &[u8],
        pace: &mut Pace,
        max_piece: usize,
        on_received: impl Fn(u64),
    ) -> Result<PushOutcome, HubError> {
        let timeout = self.timeout();
        let total = bytes.len() as u64;
        // Pieces are signed over their path, which names the envelope's hash: the hub keeps a
        // piece's bytes as far as they arrive, so a cut piece is resumed where it was cut.
        let hash = hex::encode(jianka_shared::changeset::envelope_hash(bytes));
        let mut delays = self.retry_delays();
        let state = format!("/v1/uploads/{seq}");
        let resume = |state: UploadState| if state.total == total { state.received.min(total) } else { 0 };
        let mut received = resume(self.call("GET", &state, b"").await?);
        loop {
            if received >= total {
                // Assembled but the outcome was lost (e.g. a cut answer): the sync state tells.
                if self.already_applied(seq).await? {
                    return Ok(PushOutcome::Duplicate { seq });
                }
                // Whole at the hub but not applied (it stopped while merging it): the last piece
                // sent again has the hub ingest what it holds (it ignores bytes it already has).
                received = total - (pace.piece(timeout, max_piece) as u64).min(total);
                continue;
            }
            let piece = pace.piece(timeout, max_piece);
            let end = (received + piece as u64).min(total);
            let path = format!("/v1/uploads/{seq}?offset={received}&total={total}&{UPLOAD_HASH_PARAM}={hash}");
            let sent = Instant::now();
            // Both ends lie within `bytes`: `received < total` and `end <= total`.
            let body = &bytes[received as usize..end as usize];
            match self.once_path_signed("PUT", &path, body).await {
                Ok(answer) => {
                    pace.observe(body.len(), sent.elapsed());
                    let ack: ChunkAck = decode("PUT", &path, &answer)?;
                    if let Some(outcome) = ack.outcome {
                        return Ok(outcome);
                    }
                    if ack.received == received {
                        // Sending the same piece again would be refused the same way.
                        return Err(HubError::BadAnswer {
                            method: "PUT",
                            path,
                            message: format!("the hub took none of the piece at offset {received}"),
                        });
                    }
                    tracing::debug!(seq, received = ack.received, total, "chunk acknowledged");
                    received = ack.received;
                    on_received(received);
                    // Progress resets the backoff: a long upload over a lossy link must not wait
                    // longer and longer for failures spread over many pieces.
                    delays = self.retry_delays();
                }
                Err(e) if e.retryable() => {
                    if e.timed_out(sent, timeout) {
                        // Cut by its timeout: the next pieces are smaller.
                        pace.timed_out(body.len(), timeout);
                    }
                    let Some(d) = delays.next() else { return Err(e) };
                    tracing::warn!(error = %e, retry_in_ms = d.as_millis() as u64, seq, "chunk failed; retrying");
                    tokio::time::sleep(d).await;
                    // Only the last piece can have completed the envelope; for the others the
                    // hub's upload state alone says where to go on.
                    if end == total && self.already_applied(seq).await? {
                        return Ok(PushOutcome::Duplicate { seq });
                    }
                    received = resume(self.call("GET", &state, b"").await?);
                }
                Err(e) => return Err(e),
            }
        }
    }
}
