//! The JSON protocol between a node (or a forwarding county) and its hub. Change sets themselves
//! travel as raw envelope bytes (`application/octet-stream`); everything else is JSON.
//!
//! Every request carries three headers: [`HEADER_KEY`] (the sender's key id), [`HEADER_TIME`]
//! (Unix seconds) and [`HEADER_SIGNATURE`] over method, path, body hash and time
//! (`trust::sign_request`).

use crate::domain::Status;
use crate::record::{COUNTY_DECISION, COUNTY_REASON, DECISION_ADMIT, DECISION_REFUSE};
use crate::{Hlc, RecordKey, RecordKind, RegionCode, Year, trust::KeyId};
use serde::{Deserialize, Serialize};

pub const HEADER_KEY: &str = "x-jianka-key";
pub const HEADER_TIME: &str = "x-jianka-time";
pub const HEADER_SIGNATURE: &str = "x-jianka-signature";
/// Requests whose time differs from the hub's by more than this are refused (replay window).
pub const MAX_CLOCK_SKEW_SECS: i64 = 24 * 3600;

/// `POST /v1/changesets` (whole envelope) or the final chunk of `PUT /v1/uploads/{origin}/{seq}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum PushOutcome {
    /// Applied. Records that could not be applied are listed; the rest are in.
    Accepted { seq: u64, applied: u64, rejected: Vec<Rejection> },
    /// Already received with identical bytes: acknowledged again, nothing changed.
    Duplicate { seq: u64 },
    /// Out of order: send `expected` first.
    Gap { expected: u64 },
}

/// `GET /v1/uploads/{origin}/{seq}`: how much of a chunked upload the hub holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadState {
    pub received: u64,
    pub total: u64,
}

/// `PUT /v1/uploads/{seq}?offset=O&total=T&hash=H` sends a piece whose bytes the hub keeps as they
/// arrive, so a piece cut by a slow or dropping line is not lost: the sender asks what arrived
/// (`GET /v1/uploads/{seq}`) and sends only the rest. Such a request is signed over its path with
/// an empty body (the hub cannot check a signature over bytes it may only partly receive); `H`,
/// the hex SHA-256 of the whole envelope, binds the bytes instead: once assembled they must hash
/// to it, and the envelope's own signature is checked when it is ingested.
pub const UPLOAD_HASH_PARAM: &str = "hash";

/// Answer to each `PUT /v1/uploads/{seq}?offset=O&total=T` chunk. `received` is the truth: the
/// sender continues from it (a chunk at the wrong offset is ignored, not an error). When the last
/// byte arrives the hub ingests the whole envelope and `outcome` is set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkAck {
    pub received: u64,
    pub total: u64,
    pub outcome: Option<PushOutcome>,
}

/// `GET /v1/sync/state`: where the sender's stream stands at the hub.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncState {
    pub origin: RegionCode,
    pub expected_seq: u64,
    /// Hex SHA-256 of the last accepted envelope; the next one must chain to it.
    pub last_hash: String,
    pub cycle: Vec<CycleInfo>,
    pub hub_time: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RejectReason {
    OverQuota,
    DuplicatePerson,
    FailedValidation,
    /// Edited from an old version while a higher tier changed the field.
    Stale,
    /// Written by a tier or region that may not write it.
    NotAuthorised,
    YearLocked,
    /// Held in the conflict queue until the tier above decides.
    Conflict,
    /// A field, or the record, is over its size or shape limit.
    TooLarge,
    /// Under scale control, no verified allocation for the year has reached the county yet.
    NoAllocation,
    /// The profile's rules do not admit it (the income line, an exclusion, a village criterion).
    NotEligible,
}

impl RejectReason {
    pub fn label(self) -> &'static str {
        match self {
            RejectReason::OverQuota => "超出规模数，不予认定 (over quota)",
            RejectReason::DuplicatePerson => "重复人员 (same ID number in another household)",
            RejectReason::FailedValidation => "逻辑校验未通过 (failed validation)",
            RejectReason::Stale => "过期修改 (edited from an old version)",
            RejectReason::NotAuthorised => "无权修改 (not authorised)",
            RejectReason::YearLocked => "年度已锁定 (year locked)",
            RejectReason::Conflict => "冲突待裁决 (conflict awaiting decision)",
            RejectReason::TooLarge => "超出长度限制 (over a size limit)",
            RejectReason::NoAllocation => "规模未下达，暂不认定 (no allocation has arrived)",
            RejectReason::NotEligible => "不符合认定标准 (not eligible under the profile)",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rejection {
    pub key: RecordKey,
    pub reason: RejectReason,
    pub message: String,
}

/// Where a year stands in the annual cycle (domain.md §6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum YearState {
    /// Registration or normal work.
    Open,
    /// The January update window (动态调整): adjustments accepted until the deadline.
    UpdateWindow,
    /// Frozen and locked; edits need a reopening by the tier above.
    Locked,
    /// Locked, then reopened as an audited exception.
    Reopened,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CycleInfo {
    pub year: Year,
    pub state: YearState,
    /// ISO date: household and village data due.
    pub deadline: Option<String>,
    /// Who may reopen when locked.
    pub reopen_by: Option<String>,
}

/// The values the county set on one record, at one version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Correction {
    pub key: RecordKey,
    /// `(field, value)` pairs.
    pub values: Vec<(String, String)>,
    pub version: Hlc,
}

/// Records per [`Feedback::Corrections`] item: a re-examination of thousands of households is a
/// few feedback rows instead of three per household, and an item stays under ~8 KB — what an
/// 8 kbit/s line carries in a few seconds, since a feedback page holds one item at least.
pub const CORRECTIONS_PER_ITEM: usize = 48;

/// The deciding tier's decisions (认定 / 不予认定) on records of one kind and year, all made at one
/// version: what [`Feedback::Decided`] carries instead of one [`Correction`] per record (the
/// status, the decision and the reason, each named again), so a county's re-examination of
/// thousands of households comes down a slow line as their ids.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decisions {
    pub kind: RecordKind,
    pub year: Year,
    pub version: Hlc,
    /// Ids of the records admitted (认定: status `CountyAnnounced`).
    pub admitted: Vec<String>,
    /// Ids of the records refused (不予认定: status `NotRecognised`), each with the reason.
    pub refused: Vec<(String, String)>,
}

/// Bytes of ids and reasons per [`Feedback::Decided`] item, for the same reason as
/// [`CORRECTIONS_PER_ITEM`]: an item stays under ~8 KB.
pub const DECISION_BYTES_PER_ITEM: usize = 6_000;

impl Decisions {
    /// The values each decision sets, as the corrections they stand for: status, decision and
    /// reason, in that order.
    pub fn corrections(&self) -> Vec<Correction> {
        let admitted = self.admitted.iter().map(|id| (id, true, ""));
        let refused = self.refused.iter().map(|(id, why)| (id, false, why.as_str()));
        admitted
            .chain(refused)
            .map(|(id, admit, why)| {
                let (status, decision) = if admit {
                    (Status::CountyAnnounced, DECISION_ADMIT)
                } else {
                    (Status::NotRecognised, DECISION_REFUSE)
                };
                Correction {
                    key: RecordKey::new(self.kind, self.year, id.clone()),
                    values: vec![
                        ("status".to_string(), format!("{status:?}")),
                        (COUNTY_DECISION.to_string(), decision.to_string()),
                        (COUNTY_REASON.to_string(), why.to_string()),
                    ],
                    version: self.version,
                }
            })
            .collect()
    }

    /// `decisions` (id, and the reason of a refusal) of one kind and year at `version`, cut into
    /// items of at most [`DECISION_BYTES_PER_ITEM`] bytes of ids and reasons (one decision at least).
    pub fn items(
        kind: RecordKind,
        year: Year,
        version: Hlc,
        decisions: impl IntoIterator<Item = (String, Option<String>)>,
    ) -> Vec<Decisions> {
        let empty = || Decisions { kind, year, version, admitted: Vec::new(), refused: Vec::new() };
        let mut out = vec![empty()];
        let mut bytes = 0;
        for (id, refusal) in decisions {
            let size = id.len() + refusal.as_ref().map_or(0, |r| r.len() + 8) + 4;
            let last = out.last_mut().expect("never empty");
            if bytes + size > DECISION_BYTES_PER_ITEM && !(last.admitted.is_empty() && last.refused.is_empty()) {
                out.push(empty());
                bytes = 0;
            }
            bytes += size;
            let last = out.last_mut().expect("never empty");
            match refusal {
                None => last.admitted.push(id),
                Some(why) => last.refused.push((id, why)),
            }
        }
        out.retain(|d| !(d.admitted.is_empty() && d.refused.is_empty()));
        out
    }
}

/// What the county decided, pulled by the node with `GET /v1/feedback?since=N`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Feedback {
    Ack {
        seq: u64,
    },
    Rejected(Rejection),
    /// Values the county set (its decisions, or corrections), to apply to the node's replica;
    /// up to [`CORRECTIONS_PER_ITEM`] records per item.
    Corrections {
        items: Vec<Correction>,
    },
    /// The deciding tier's decisions (县复审), to apply as the corrections they stand for
    /// ([`Decisions::corrections`]).
    Decided(Decisions),
    Quota {
        township: RegionCode,
        people: u64,
        used: u64,
    },
    Cycle(CycleInfo),
    /// The county refused the township's change to these records: this is each record as the
    /// county holds it, to replace the township's copy (a record the county does not hold comes
    /// as [`Feedback::Removed`]), so the two never silently diverge.
    Restored {
        items: Vec<Correction>,
    },
    /// Records the county removed on its own (a New Year carry of an exit or a death from the
    /// year just ended), or refused and does not hold: the node removes them too.
    Removed {
        keys: Vec<RecordKey>,
        version: Hlc,
    },
    /// An allocation of the scale (规模分解) for the receiver, with every allocation above it from
    /// the province down, each signed by its issuer: the receiver checks the chain against its
    /// certificates ([`crate::allocation::verify_chain`]) and keeps only one that verifies.
    Allocation {
        chain: Vec<crate::allocation::SignedAllocation>,
    },
    /// A conflict the tier above settled: the value that stands.
    Resolved {
        key: RecordKey,
        field: String,
        value: String,
        note: String,
    },
}

/// A page of feedback, signed by the hub that sends it: a receiver checks it against the key
/// its certificate chain names for that hub and refuses a page unsigned or signed otherwise (a
/// man in the middle must not be able to inject corrections or removals).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeedbackPage {
    pub items: Vec<FeedbackEntry>,
    /// Pass as `since` next time.
    pub next: u64,
    /// Key id (hex) of the hub that signed the page.
    #[serde(default)]
    pub signed_by: String,
    /// Its signature (hex) over [`FeedbackPage::signed_bytes`].
    #[serde(default)]
    pub signature: String,
}

/// The statement kind feedback pages are signed under.
pub const FEEDBACK_PAGE_STATEMENT: &str = "feedback-page";

impl FeedbackPage {
    /// What the signature covers: the page as sent to `region` after `since`, so a page cannot
    /// be replayed to another child or at another position.
    pub fn signed_bytes(&self, region: &RegionCode, since: u64) -> Vec<u8> {
        serde_json::to_vec(&(region.as_str(), since, &self.items, self.next)).expect("in-memory encoding")
    }

    /// Signs the page for `region` after `since` with the sending hub's key.
    pub fn sign(&mut self, key: &ed25519_dalek::SigningKey, region: &RegionCode, since: u64) {
        let sig = crate::trust::sign_statement(key, FEEDBACK_PAGE_STATEMENT, &self.signed_bytes(region, since));
        self.signed_by = crate::trust::KeyId::of(&key.verifying_key()).to_string();
        self.signature = hex::encode(sig);
    }

    /// Checks the page was signed by `key` for `region` after `since`; says what is wrong if not.
    pub fn verify(&self, key: &ed25519_dalek::VerifyingKey, region: &RegionCode, since: u64) -> Result<(), String> {
        let expected = crate::trust::KeyId::of(key).to_string();
        if self.signature.is_empty() {
            return Err(format!("the feedback page is not signed (expected a signature by key {expected})"));
        }
        if self.signed_by != expected {
            return Err(format!("the feedback page is signed by key {:?}, not by {expected}", self.signed_by));
        }
        let sig = hex::decode(&self.signature).ok().and_then(|v| <[u8; 64]>::try_from(v).ok());
        match sig {
            Some(sig)
                if crate::trust::verify_statement(
                    key,
                    FEEDBACK_PAGE_STATEMENT,
                    &self.signed_bytes(region, since),
                    &sig,
                ) =>
            {
                Ok(())
            }
            _ => Err(format!("the feedback page's signature by key {expected} does not verify")),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeedbackEntry {
    pub id: u64,
    pub item: Feedback,
}

/// `GET /v1/digest?scope=REGION&year=Y`: what the hub holds for a region, for `verify`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DigestReport {
    pub scope: RegionCode,
    pub year: Year,
    pub count: u64,
    pub digest: String,
    /// Per-record digests (hex), sorted by key, so a mismatch can be named.
    pub records: Vec<(RecordKey, String)>,
}

/// A USB-stick bundle (`jianka-node export-bundle`): the pending envelopes, each signed on its own,
/// and the whole signed again so a truncated or swapped file is refused before anything is read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bundle {
    pub origin: RegionCode,
    pub created: String,
    pub envelopes: Vec<Vec<u8>>,
}

/// The county's answer to a bundle, carried back on the same stick.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnswerBundle {
    pub origin: RegionCode,
    pub outcomes: Vec<PushOutcome>,
    pub feedback: FeedbackPage,
    pub state: SyncState,
}

const BUNDLE_MAGIC: &[u8; 4] = b"JKBD";

/// Frames a signed bundle or answer: `"JKBD" | key id (8) | signature (64) | JSON`.
pub fn seal_file<T: Serialize>(key: &ed25519_dalek::SigningKey, kind: &str, value: &T) -> Vec<u8> {
    let json = serde_json::to_vec(value).expect("in-memory encoding");
    let sig = crate::trust::sign_statement(key, kind, &json);
    let mut out = BUNDLE_MAGIC.to_vec();
    out.extend_from_slice(&KeyId::of(&key.verifying_key()).0);
    out.extend_from_slice(&sig);
    out.extend_from_slice(&json);
    out
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FileError {
    #[error("not a Jianka bundle file (wrong magic bytes or too short)")]
    NotABundle,
    #[error("bundle was signed by key {0}, which is not the expected key")]
    WrongKey(KeyId),
    #[error("bundle signature does not verify: the file was altered or truncated")]
    BadSignature,
    #[error("bundle contents are malformed: {0}")]
    Malformed(String),
}

/// The key id a sealed file claims, to look up its key before [`open_file`].
pub fn file_key_id(bytes: &[u8]) -> Result<KeyId, FileError> {
    if bytes.len() < 76 || &bytes[..4] != BUNDLE_MAGIC {
        return Err(FileError::NotABundle);
    }
    Ok(KeyId(bytes[4..12].try_into().expect("8 bytes")))
}

pub fn open_file<T: serde::de::DeserializeOwned>(
    key: &ed25519_dalek::VerifyingKey,
    kind: &str,
    bytes: &[u8],
) -> Result<T, FileError> {
    let claimed = file_key_id(bytes)?;
    if claimed != KeyId::of(key) {
        return Err(FileError::WrongKey(claimed));
    }
    let sig: [u8; 64] = bytes[12..76].try_into().expect("64 bytes");
    if !crate::trust::verify_statement(key, kind, &bytes[76..], &sig) {
        return Err(FileError::BadSignature);
    }
    serde_json::from_slice(&bytes[76..]).map_err(|e| FileError::Malformed(e.to_string()))
}

/// The body of every error answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    Unauthenticated,
    UnknownKey,
    RevokedKey,
    BadSignature,
    ClockSkew,
    OutsideRegion,
    Equivocation,
    BrokenChain,
    TooLarge,
    Malformed,
    BadRequest,
    NotFound,
    YearLocked,
    /// The hub cannot serve now (its database does not answer); retry later.
    Unavailable,
    Internal,
}

/// A county's sign-off of its data for a period, forwarded to the province.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SignOff {
    pub county: RegionCode,
    pub year: Year,
    pub period: String,
    pub signed_at: String,
    pub record_count: u64,
    pub digest: String,
    pub summary: SignOffSummary,
    /// 16 hex digits, as every command prints a key id (read back from the byte array that
    /// sign-offs stored before, too).
    #[serde(with = "key_id_hex")]
    pub key_id: KeyId,
    pub signature: String,
    /// The county's certificate, attached by a prefecture that relays the sign-off to the
    /// province (which did not enroll the county itself); not signed over.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate: Option<crate::trust::Certificate>,
    /// The year's 贫困县监测表, when the county files it with this sign-off (signed over with the
    /// rest; absent from sign-offs without one, so theirs sign the same bytes as before).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub monitoring: Option<crate::monitoring::MonitoringTable>,
}

mod key_id_hex {
    use super::KeyId;
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    pub fn serialize<S: Serializer>(k: &KeyId, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&k.to_string())
    }

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Either {
        Hex(String),
        Bytes([u8; 8]),
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<KeyId, D::Error> {
        match Either::deserialize(d)? {
            Either::Hex(h) => {
                KeyId::parse(&h).ok_or_else(|| D::Error::custom(format!("key id {h:?} is not 16 hex digits")))
            }
            Either::Bytes(b) => Ok(KeyId(b)),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SignOffSummary {
    pub households: u64,
    pub people: u64,
    pub by_cause: std::collections::BTreeMap<String, u64>,
    pub quota_people: Option<u64>,
    pub quota_used: u64,
}

impl SignOff {
    /// The bytes the county signs: everything but the signature, canonical JSON.
    pub fn signed_bytes(&self) -> Vec<u8> {
        let mut c = self.clone();
        c.signature = String::new();
        c.certificate = None;
        serde_json::to_vec(&c).expect("in-memory encoding")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        /// Cut into items and read back as corrections, every decision comes through once, in
        /// order, with its words; every item but a single oversized decision stays in its bytes.
        #[test]
        fn decisions_cut_into_items_lose_nothing(
            decisions in proptest::collection::vec(("[0-9]{12}-[0-9]{4}", proptest::option::of(".{0,300}")), 0..400)
        ) {
            let items = Decisions::items(RecordKind::Household, 2014, Hlc(9), decisions.clone());
            let mut back = Vec::new();
            for item in &items {
                let size: usize = item.admitted.iter().map(|i| i.len() + 4).sum::<usize>()
                    + item.refused.iter().map(|(i, r)| i.len() + r.len() + 12).sum::<usize>();
                proptest::prop_assert!(size <= DECISION_BYTES_PER_ITEM || item.admitted.len() + item.refused.len() == 1);
                let json = serde_json::to_string(&Feedback::Decided(item.clone())).unwrap();
                let Feedback::Decided(read) = serde_json::from_str(&json).unwrap() else { unreachable!() };
                back.extend(read.corrections());
            }
            // Within an item admissions come before refusals: compare as sets per id, and count.
            proptest::prop_assert_eq!(back.len(), decisions.len());
            for (id, refusal) in &decisions {
                let c = back.iter().find(|c| &c.key.id == id).unwrap();
                let value = |f: &str| c.values.iter().find(|(n, _)| n == f).map(|(_, v)| v.as_str());
                let (status, decision) = match refusal {
                    None => ("CountyAnnounced", DECISION_ADMIT),
                    Some(_) => ("NotRecognised", DECISION_REFUSE),
                };
                proptest::prop_assert_eq!(value("status"), Some(status));
                proptest::prop_assert_eq!(value(COUNTY_DECISION), Some(decision));
                proptest::prop_assert_eq!(value(COUNTY_REASON), Some(refusal.as_deref().unwrap_or("")));
                proptest::prop_assert_eq!(c.version, Hlc(9));
            }
        }
    }

    #[test]
    fn signoff_key_ids_are_hex_and_old_arrays_still_read() {
        let s = SignOff {
            county: RegionCode::parse("420322").unwrap(),
            year: 2014,
            period: "2014-annual".into(),
            signed_at: "x".into(),
            record_count: 0,
            digest: String::new(),
            summary: SignOffSummary::default(),
            key_id: KeyId([0xab, 1, 2, 3, 4, 5, 6, 7]),
            signature: String::new(),
            certificate: None,
            monitoring: None,
        };
        let json = serde_json::to_value(&s).unwrap();
        assert_eq!(json["key_id"], "ab01020304050607");
        let mut old = json.clone();
        old["key_id"] = serde_json::json!([0xab, 1, 2, 3, 4, 5, 6, 7]);
        assert_eq!(serde_json::from_value::<SignOff>(old).unwrap(), s);
    }

    #[test]
    fn sealed_files_refuse_tampering_and_wrong_keys() {
        let k = ed25519_dalek::SigningKey::from_bytes(&[5; 32]);
        let b = Bundle {
            origin: RegionCode::parse("420322105").unwrap(),
            created: "x".into(),
            envelopes: vec![vec![1, 2]],
        };
        let bytes = seal_file(&k, "bundle", &b);
        assert_eq!(open_file::<Bundle>(&k.verifying_key(), "bundle", &bytes).unwrap(), b);
        assert_eq!(open_file::<Bundle>(&k.verifying_key(), "answer", &bytes), Err(FileError::BadSignature));
        let other = ed25519_dalek::SigningKey::from_bytes(&[6; 32]);
        assert!(matches!(open_file::<Bundle>(&other.verifying_key(), "bundle", &bytes), Err(FileError::WrongKey(_))));
        let mut t = bytes.clone();
        *t.last_mut().unwrap() ^= 1;
        assert_eq!(open_file::<Bundle>(&k.verifying_key(), "bundle", &t), Err(FileError::BadSignature));
        assert_eq!(open_file::<Bundle>(&k.verifying_key(), "bundle", &bytes[..50]), Err(FileError::NotABundle));
    }
}
