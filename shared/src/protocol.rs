//! The JSON protocol between a node (or a forwarding county) and its hub. Change sets themselves
//! travel as raw envelope bytes (`application/octet-stream`); everything else is JSON.
//!
//! Every request carries three headers: [`HEADER_KEY`] (the sender's key id), [`HEADER_TIME`]
//! (Unix seconds) and [`HEADER_SIGNATURE`] over method, path, body hash and time
//! (`trust::sign_request`).

use crate::{Hlc, RecordKey, RegionCode, Year, trust::KeyId};
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

/// What the county decided, pulled by the node with `GET /v1/feedback?since=N`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Feedback {
    Ack {
        seq: u64,
    },
    Rejected(Rejection),
    /// A value the county set (a correction or a decision), to apply to the node's replica.
    Correction {
        key: RecordKey,
        field: String,
        value: String,
        version: Hlc,
    },
    Quota {
        township: RegionCode,
        people: u64,
        used: u64,
    },
    Cycle(CycleInfo),
    /// A conflict the tier above settled: the value that stands.
    Resolved {
        key: RecordKey,
        field: String,
        value: String,
        note: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeedbackPage {
    pub items: Vec<FeedbackEntry>,
    /// Pass as `since` next time.
    pub next: u64,
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
    pub key_id: KeyId,
    pub signature: String,
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
        serde_json::to_vec(&c).expect("in-memory encoding")
    }
}
