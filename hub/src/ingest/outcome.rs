//! What one ingest produces and works with: the rows it holds and writes, its rejections,
//! conflicts and feedback, its audit change log.

use crate::merge::{FieldState, Fields, Text};
use crate::quota::QuotaLedger;
use crate::record::{HashMap, HashSet};
use crate::record::{StoredRecord, key_of, storage_key};
use crate::store::NewConflict;
use jianka_shared::domain::{Member, Status};
use jianka_shared::protocol::{Correction, Feedback, RejectReason, Rejection};
use jianka_shared::{Hlc, RecordKey, RecordKind, RegionCode, Year};
use std::sync::Arc;

/// One ingest's outcome as it is built, step by step, and what the steps share on the way.
#[derive(Default)]
pub(crate) struct IngestOutcome {
    // -- what the change set produced, written at the end (see `write`)
    /// Every record the ingest read or changed, by storage key (this change set's version).
    /// Shared, so a row handed to the store to write early is not copied (a later change
    /// copies it on write, `Arc::make_mut`).
    pub(crate) rows: HashMap<String, Arc<StoredRecord>>,
    /// Keys of the rows changed, in order (a key may repeat; see [`IngestOutcome::unwritten`]).
    pub(crate) dirty: Vec<String>,
    pub(crate) applied: u64,
    pub(crate) rejected: Vec<Rejection>,
    /// Rejected ops kept whole (or as a summary when over a limit), with the region they came from.
    pub(crate) quarantine: Vec<(String, Rejection, String)>,
    pub(crate) feedback: Vec<(String, Feedback)>,
    pub(crate) conflicts: Vec<NewConflict>,
    /// Field changes of this change set, written as one audit entry (see [`ChangeLog`]).
    pub(crate) changes: ChangeLog,
    /// The county's decisions in this change set: sent down as [`Feedback::Decided`] items and
    /// audited as one entry (see `audit`).
    pub(crate) decided: Vec<Decision>,
    /// The decided values to send down, by township; batched into feedback items at the end.
    pub(crate) corrections: Vec<(String, Correction)>,
    /// Conflicts this change set settled (completed moves): id and resolution.
    pub(crate) resolved: Vec<(i64, String)>,
    /// Moves this change set completed, kept so later copies from the county left are settled.
    pub(crate) completed_moves: Vec<crate::store::CompletedMoveRow>,
    /// Records whose change was refused outright, to send back as the county holds them.
    pub(crate) restore: Vec<String>,
    /// Households a township admitted in this change set where the township decides (镇级审定),
    /// by storage key, with the status each held before the change set: checked against their
    /// members after the merge.
    pub(crate) admissions: HashMap<String, Option<FieldState>>,

    // -- what the steps read once and share
    /// The revision every row of this change set is written at, read before the first write:
    /// a read inside the transaction waits for every write queued before it, so none is made
    /// after the writes begin (readers page by `(rev, k)`, so one revision may hold any number).
    pub(crate) rev: i64,
    /// Households an open duplicate-person conflict stored before this change set keeps waiting.
    pub(crate) held_stored: HashSet<String>,
    /// Quota use of the scopes this change set's households count against, read (and on
    /// PostgreSQL locked) before the writes begin; 县复审 counts admissions into it.
    pub(crate) quota: QuotaLedger,
    /// The version a completed move's fields get at least (the hub's clock for this change set).
    pub(crate) move_version: u64,
    /// Frozen years whose accepted changes are carried into the next year (see
    /// [`Hub::carry_into_next_year`]), and the field values their records had before this change set.
    pub(crate) carry_years: HashSet<Year>,
    pub(crate) before: HashMap<String, Fields>,
    /// Members already stored in the households this change set touches (before its own rows),
    /// by year and household, for re-examination.
    pub(crate) stored_members: HashMap<(Year, String), Vec<Result<Member, String>>>,
    /// Members as `check_record` parsed them from the rows this change set wrote, so
    /// re-examination does not copy every field again; dropped whenever such a row changes.
    pub(crate) member_records: HashMap<String, Member>,

    // -- bookkeeping of the rows written early (while later steps ran)
    /// Rows already written in this transaction (see [`IngestOutcome::unwritten`]), each with the
    /// length `dirty` had then: a later entry in `dirty` means it changed again since.
    pub(crate) written: HashMap<String, usize>,
    /// How much of `dirty` has been looked at for rows to write early.
    pub(crate) scanned: usize,
}

/// One decision of the deciding tier (县复审) in a change set.
pub(crate) struct Decision {
    /// The township the record is sent down to.
    pub(crate) township: String,
    pub(crate) key: RecordKey,
    /// The version of the decided fields (one for all of a change set's decisions).
    pub(crate) version: Hlc,
    /// The reason of a refusal; `None`: admitted.
    pub(crate) refusal: Option<String>,
    /// The decided fields' values before, where the record had them.
    pub(crate) before: Vec<(&'static str, Text)>,
}

/// Old and new values of every record a change set touched, accumulated as two JSON arrays of
/// `[subject, {field: value}]` — one audit entry per change set instead of one row per record
/// (the hash chain covers them the same way; `jianka-hub audit verify` re-checks it).
#[derive(Default)]
pub struct ChangeLog {
    old: Vec<u8>,
    new: Vec<u8>,
    records: usize,
}

struct Pairs<'a, V: AsRef<str>>(&'a [(&'a str, V)]);

impl<V: AsRef<str>> serde::Serialize for Pairs<'_, V> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.0.iter().map(|(k, v)| (*k, v.as_ref())))
    }
}

impl ChangeLog {
    /// Records one record's change; `new` empty means deleted.
    pub fn record<O: AsRef<str>, N: AsRef<str>>(&mut self, subject: &str, old: &[(&str, O)], new: &[(&str, N)]) {
        for (buf, pairs) in [(&mut self.old, None), (&mut self.new, Some(new))] {
            buf.push(if self.records == 0 { b'[' } else { b',' });
            let written = match pairs {
                None => serde_json::to_writer(&mut *buf, &(subject, Pairs(old))),
                Some(p) => serde_json::to_writer(&mut *buf, &(subject, Pairs(p))),
            };
            written.expect("in-memory encoding");
        }
        self.records += 1;
    }

    pub fn is_empty(&self) -> bool {
        self.records == 0
    }

    /// `(old, new)` as JSON arrays (`[]` when nothing changed).
    pub fn finish(mut self) -> (String, String) {
        if self.records == 0 {
            return ("[]".into(), "[]".into());
        }
        self.old.push(b']');
        self.new.push(b']');
        let text = |b: Vec<u8>| String::from_utf8(b).expect("serde_json writes UTF-8");
        (text(self.old), text(self.new))
    }
}

pub(crate) fn reject(
    fx: &mut IngestOutcome,
    to: &RegionCode,
    key: &RecordKey,
    reason: RejectReason,
    message: String,
    payload: String,
) {
    // What the county refused outright goes back down as the county holds it (see
    // `restore_feedback`); a duplicate person or a conflict waits for a decision instead.
    if !matches!(reason, RejectReason::DuplicatePerson | RejectReason::Conflict | RejectReason::OverQuota) {
        fx.restore.push(storage_key(key));
    }
    let r = Rejection { key: key.clone(), reason, message };
    fx.quarantine.push((to.to_string(), r.clone(), payload));
    fx.feedback.push((to.to_string(), Feedback::Rejected(r.clone())));
    fx.rejected.push(r);
}

impl IngestOutcome {
    /// Rows of `kinds` dirtied since the last call (of any kind), each once, now marked as
    /// written with their current state. Anything that changes them later dirties them again,
    /// and the final flush writes them once more.
    pub(crate) fn unwritten(&mut self, kinds: &[RecordKind]) -> Vec<Arc<StoredRecord>> {
        let upto = self.dirty.len();
        let mut out = Vec::new();
        for k in &self.dirty[self.scanned..] {
            let Some(row) = self.rows.get(k).filter(|r| kinds.contains(&r.key.kind)) else { continue };
            // Each key once per call: the first time it is seen since `upto` was taken.
            let first = match self.written.get_mut(k) {
                Some(at) => std::mem::replace(at, upto) != upto,
                None => {
                    self.written.insert(k.clone(), upto);
                    true
                }
            };
            if first {
                out.push(Arc::clone(row));
            }
        }
        self.scanned = upto;
        out
    }

    /// Households that an open duplicate-person conflict keeps waiting: one proposed for them or
    /// held away from them (stored before, or raised by this very change set).
    pub(crate) fn held_households(&self) -> HashSet<String> {
        let mut held = self.held_stored.clone();
        for c in self.conflicts.iter().filter(|c| c.kind == "duplicate_person") {
            held.insert(c.proposed_value.clone());
            held.insert(c.current_value.clone());
        }
        held
    }

    /// This change set's live members by year and household, parsed (as `check_record` left
    /// them, or parsed now), taking the parsed members out of [`IngestOutcome::member_records`]
    /// (a later call parses them from the rows again).
    pub(crate) fn take_own_members(&mut self) -> HashMap<(Year, String), Vec<Result<Member, String>>> {
        let mut own: HashMap<(Year, String), Vec<Result<Member, String>>> = HashMap::default();
        for (k, r) in &self.rows {
            if r.key.kind == RecordKind::Member && !r.deleted {
                let member = self.member_records.remove(k).map_or_else(|| r.to_member(), Ok);
                own.entry((r.key.year, r.hh.clone())).or_default().push(member);
            }
        }
        self.member_records = HashMap::default();
        own
    }

    /// Households touched by this change set now waiting at county review, sorted by year and id.
    pub(crate) fn reexam_candidates(&self) -> Vec<String> {
        let mut seen: HashSet<(Year, &str)> = HashSet::default();
        let mut touched: Vec<(Year, &str)> = Vec::new();
        for r in self.dirty.iter().filter_map(|k| self.rows.get(k)) {
            let household = match r.key.kind {
                RecordKind::Household => (r.key.year, r.key.id.as_str()),
                RecordKind::Member => (r.key.year, r.hh.as_str()),
                RecordKind::Village | RecordKind::Assistance => continue,
            };
            if seen.insert(household) {
                touched.push(household);
            }
        }
        touched.sort_unstable();
        touched
            .into_iter()
            .map(|(year, id)| key_of(RecordKind::Household, year, id))
            .filter(|k| {
                self.rows.get(k).is_some_and(|r| {
                    !r.deleted && r.field("status").and_then(Status::parse) == Some(Status::CountyReview)
                })
            })
            .collect()
    }
}
