//! No link at all: a township's USB bundle (`jianka-node export-bundle`) is ingested here exactly
//! as if its change sets had come over HTTP, and the county's answer — outcomes, feedback and the
//! sync state — goes back on the same stick as a file signed with the county key.

use crate::Hub;
use crate::error::HubError;
use jianka_shared::protocol::{self, AnswerBundle, Bundle, ErrorCode, PushOutcome};

/// What happened to one bundle.
#[derive(Debug)]
pub struct BundleReport {
    pub answer: AnswerBundle,
    /// The signed answer file's bytes, for `jianka-node import-answer`.
    pub answer_file: Vec<u8>,
}

/// Verifies a bundle file (signed by an enrolled, unrevoked child), ingests its change sets in
/// order and returns the signed answer. Each change set is its own transaction, as over HTTP: a
/// bundle cut short by a bad envelope keeps what came before it, and the answer says where it stopped.
pub async fn import_bundle(hub: &Hub, file: &[u8]) -> Result<BundleReport, HubError> {
    import_bundle_with(hub, file, &|_, _| {}).await
}

/// [`import_bundle`], telling `progress` how many of the bundle's change sets are in (done, total).
pub async fn import_bundle_with(
    hub: &Hub,
    file: &[u8],
    progress: &(dyn Fn(u64, u64) + Sync),
) -> Result<BundleReport, HubError> {
    let key_id = protocol::file_key_id(file).map_err(|e| HubError::new(ErrorCode::Malformed, e.to_string()))?;
    let sender = hub.enrolled(key_id).await?;
    let bundle: Bundle = protocol::open_file(&sender.key, "bundle", file)
        .map_err(|e| HubError::new(ErrorCode::BadSignature, e.to_string()))?;
    if bundle.origin != sender.region {
        return Err(HubError::new(
            ErrorCode::OutsideRegion,
            format!("bundle says it is from {} but was signed by {}'s key", bundle.origin, sender.region),
        ));
    }
    let mut outcomes: Vec<PushOutcome> = Vec::with_capacity(bundle.envelopes.len());
    let total = bundle.envelopes.len() as u64;
    for (i, envelope) in bundle.envelopes.iter().enumerate() {
        progress(i as u64, total);
        outcomes.push(hub.ingest(&sender, envelope).await?);
    }
    progress(total, total);
    // Everything the county has for the township: the node applies each item once, by id.
    let mut feedback = hub.feedback(&sender.region, 0).await?;
    loop {
        let more = hub.feedback(&sender.region, feedback.next).await?;
        if more.items.is_empty() {
            break;
        }
        feedback.next = more.next;
        feedback.items.extend(more.items);
    }
    let answer =
        AnswerBundle { origin: sender.region.clone(), outcomes, feedback, state: hub.sync_state(&sender).await? };
    let answer_file = protocol::seal_file(&hub.key, "answer", &answer);
    Ok(BundleReport { answer, answer_file })
}
