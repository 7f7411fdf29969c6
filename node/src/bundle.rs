//! No link at all: the pending outbox as one signed file for a USB stick, the county's signed
//! answer read back the same way, and installing the county's certificate chain.

use crate::edit::Refused;
use crate::node::Node;
use crate::progress::Progress;
use crate::{feedback, outbox, sync};
use anyhow::{Context, Result};
use jianka_shared::protocol::{AnswerBundle, Bundle, PushOutcome, file_key_id, open_file, seal_file};
use jianka_shared::trust::{Certificate, KeyId, verify_chain};
use serde::Serialize;
use std::path::Path;

#[derive(Debug, Serialize)]
pub struct ExportReport {
    pub file: String,
    pub envelopes: Vec<u64>,
    pub bytes: usize,
}

/// Writes every unacknowledged envelope (after sealing what is pending) into one signed bundle.
pub fn export_bundle(node: &mut Node, out: &Path, progress: Progress) -> Result<ExportReport> {
    sync::seal(node, true)?;
    let seqs = outbox::unacked(&node.conn)?;
    let pb = progress.items(seqs.len() as u64, "change sets", "reading change sets");
    let mut envelopes = Vec::with_capacity(seqs.len());
    for &s in &seqs {
        envelopes.push(outbox::envelope(&node.conn, s)?.context("envelope vanished")?.0);
        pb.inc(1);
    }
    pb.finish_and_clear();
    let bundle = Bundle { origin: node.township().clone(), created: node.clock.now().to_rfc3339(), envelopes };
    let key = node.keypair()?;
    let writing = progress.counter("bytes", &format!("signing and writing {}", out.display()));
    let bytes = seal_file(key.signing(), "bundle", &bundle);
    // Write then rename: a half-written file never carries the final name.
    let tmp = out.with_extension("partial");
    std::fs::write(&tmp, &bytes).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, out).with_context(|| format!("cannot write {}", out.display()))?;
    writing.finish_and_clear();
    Ok(ExportReport { file: out.display().to_string(), envelopes: seqs, bytes: bytes.len() })
}

/// The county's certificate from the installed chain `[province, county, township]`.
pub fn county_certificate(node: &Node) -> Result<Certificate> {
    let Some(chain) = node.chain()? else {
        return Err(Refused(format!(
            "no certificate chain installed at {}; run `jianka-node trust CHAIN.json` with the file from the county",
            node.cfg.chain_path().display()
        ))
        .into());
    };
    let county = node.township().parent().context("township has a county")?;
    chain
        .into_iter()
        .find(|c| c.subject == county)
        .ok_or_else(|| Refused(format!("the installed chain has no certificate for county {county}")).into())
}

#[derive(Debug, Serialize)]
pub struct AnswerReport {
    pub acknowledged: Vec<u64>,
    pub feedback_applied: usize,
    pub expected_seq: u64,
}

/// Feedback items applied per transaction while an answer is read, so progress can be shown;
/// each page advances the feedback cursor, so an interrupted import resumes where it stopped.
const ANSWER_PAGE: usize = 1000;

pub fn import_answer(node: &mut Node, file: &Path, progress: Progress) -> Result<AnswerReport> {
    let bytes = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
    let cert = county_certificate(node)?;
    let key = cert.verifying_key().map_err(|e| Refused(e.to_string()))?;
    let claimed = file_key_id(&bytes).map_err(|e| Refused(format!("{}: {e}", file.display())))?;
    if claimed != KeyId::of(&key) {
        return Err(Refused(format!(
            "{}: signed by key {claimed}, not by county {}'s key {}",
            file.display(),
            cert.subject,
            KeyId::of(&key)
        ))
        .into());
    }
    let answer: AnswerBundle =
        open_file(&key, "answer", &bytes).map_err(|e| Refused(format!("{}: {e}", file.display())))?;
    if &answer.origin != node.township() {
        return Err(Refused(format!(
            "{}: this answer is for township {}, not {}",
            file.display(),
            answer.origin,
            node.township()
        ))
        .into());
    }
    let now = node.clock.millis();
    let mut acknowledged = Vec::new();
    {
        let tx = node.conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        for o in &answer.outcomes {
            let seq = match o {
                PushOutcome::Accepted { seq, .. } | PushOutcome::Duplicate { seq } => *seq,
                PushOutcome::Gap { .. } => continue,
            };
            feedback::apply_outcome(&tx, seq, o, now)?;
            acknowledged.push(seq);
        }
        let (last, _) = outbox::last_envelope(&tx)?;
        outbox::mark_acked_below(&tx, answer.state.expected_seq.min(last + 1), now)?;
        tx.commit()?;
    }
    let items = &answer.feedback.items;
    let certs = node.chain()?;
    let pb = progress.items(items.len() as u64, "feedback items", "applying the county's feedback");
    let mut applied = 0;
    for page in items.chunks(ANSWER_PAGE) {
        applied += feedback::apply_page(&mut node.conn, page, now, certs.as_deref())?;
        pb.inc(page.len() as u64);
    }
    pb.finish_and_clear();
    // The answer's state is the hub's word as of its writing; older Cycle items in the feedback
    // must not undo it (e.g. an update window opening, read after it closed).
    for c in &answer.state.cycle {
        feedback::apply_item(&node.conn, &jianka_shared::protocol::Feedback::Cycle(c.clone()), now, None)?;
    }
    crate::db::set_meta(&node.conn, "last_sync_ok", &node.clock.now().to_rfc3339())?;
    Ok(AnswerReport { acknowledged, feedback_applied: applied, expected_seq: answer.state.expected_seq })
}

/// Installs the chain from the county after checking it certifies this node's own key.
pub fn install_chain(node: &Node, file: &Path) -> Result<Vec<Certificate>> {
    let chain = jianka_keyfile::read_chain(file).map_err(|e| Refused(e.to_string()))?;
    let Some(root) = chain.first() else {
        return Err(Refused(format!("{}: the chain is empty", file.display())).into());
    };
    let root_key = root.verifying_key().map_err(|e| Refused(e.to_string()))?;
    let last = verify_chain(&root_key, &chain, node.clock.today(), |_| false)
        .map_err(|e| Refused(format!("{}: {e}", file.display())))?;
    let ours = node.keypair()?.public();
    let leaf = chain.last().expect("non-empty");
    if last != ours || &leaf.subject != node.township() {
        return Err(Refused(format!(
            "{}: the chain certifies key {} for {}, but this node is {} with key {}",
            file.display(),
            KeyId::of(&last),
            leaf.subject,
            node.township(),
            KeyId::of(&ours)
        ))
        .into());
    }
    let dest = node.cfg.chain_path();
    jianka_keyfile::write_chain(&dest, &chain)?;
    Ok(chain)
}
