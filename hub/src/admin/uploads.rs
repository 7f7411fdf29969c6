//! Chunked uploads: a large envelope arrives in pieces, kept durably until whole, then ingested.

use crate::auth::Sender;
use crate::error::HubError;
use crate::state::Hub;
use jianka_shared::protocol::*;

impl Hub {
    pub async fn upload_state(&self, sender: &Sender, seq: u64) -> Result<UploadState, HubError> {
        Ok(match self.store.upload(sender.region.as_str(), seq).await? {
            Some((total, data)) => UploadState { total, received: data.len() as u64 },
            None => UploadState { received: 0, total: 0 },
        })
    }

    /// Keeps a chunk durably; a chunk at any offset other than `received` is ignored. When the
    /// last byte arrives the assembled envelope is ingested.
    pub async fn upload_chunk(
        &self,
        sender: &Sender,
        seq: u64,
        offset: u64,
        total: u64,
        chunk: &[u8],
    ) -> Result<ChunkAck, HubError> {
        self.upload_piece(sender, seq, offset, total, None, chunk).await
    }

    /// [`Hub::upload_chunk`] for a piece whose bytes were not signed with its request but are
    /// bound to `hash` (hex SHA-256 of the whole envelope): kept as far as they arrived, and when
    /// the upload is whole it must hash to `hash`, else it is dropped and the sender told to
    /// start again.
    pub async fn upload_piece(
        &self,
        sender: &Sender,
        seq: u64,
        offset: u64,
        total: u64,
        hash: Option<&str>,
        chunk: &[u8],
    ) -> Result<ChunkAck, HubError> {
        if total as usize > self.limits.max_envelope {
            return Err(HubError::new(
                ErrorCode::TooLarge,
                format!("upload of {total} bytes is over the {}-byte limit", self.limits.max_envelope),
            ));
        }
        if total == 0 {
            return Err(HubError::new(ErrorCode::BadRequest, "total must be at least 1 byte"));
        }
        let origin = sender.region.to_string();
        let mut data = match self.store.upload(&origin, seq).await? {
            Some((held, data)) if held == total => data,
            _ => Vec::new(),
        };
        if offset == data.len() as u64 && !chunk.is_empty() {
            if data.len() + chunk.len() > total as usize {
                return Err(HubError::new(
                    ErrorCode::BadRequest,
                    format!("chunk runs past the declared total of {total} bytes"),
                ));
            }
            data.extend_from_slice(chunk);
            self.store.put_upload(&origin, seq, total, &data).await?;
        }
        let received = data.len() as u64;
        if received < total {
            return Ok(ChunkAck { received, total, outcome: None });
        }
        if let Some(announced) = hash
            && hex::encode(jianka_shared::changeset::envelope_hash(&data)) != announced
        {
            self.store.delete_upload(&origin, seq).await?;
            return Err(HubError::new(
                ErrorCode::BadRequest,
                format!(
                    "the {total} bytes uploaded for change set #{seq} do not hash to {announced}, the hash its pieces \
                     were sent with (pieces of two different envelopes?); the upload was dropped, send it again \
                     from the start"
                ),
            ));
        }
        let result = self.ingest(sender, &data).await;
        if !matches!(&result, Err(e) if e.code == ErrorCode::Internal) {
            self.store.delete_upload(&origin, seq).await?;
        }
        Ok(ChunkAck { received, total, outcome: Some(result?) })
    }
}
