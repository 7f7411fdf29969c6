//! The storage boundary: what the hub asks of its database, in phase-level operations (load what
//! a merge needs, write an ingest's outcome, sequence state, feedback pages, quotas, audit,
//! queries), not row-level CRUD. One implementation per backend, each with its own migrations:
//! SQLite on rusqlite ([`super::sqlite`]) and PostgreSQL on sqlx's native driver
//! ([`super::postgres`]). The contract tests (`hub/tests/store_contract.rs`) run the same
//! suite against both.
//!
//! The store knows records only as [`StoredRecord`]s and never the hub, the ingest outcome, the
//! quota ledger or [`crate::error::HubError`].
//!
//! Reads on [`Store`] see committed data only; everything a write transaction does goes through
//! its [`WriteTx`] and is applied all or nothing at [`WriteTx::commit`] (dropping it rolls back).
//! The hub holds its writer lock around every write transaction, so at most one is open.

use crate::record::StoredRecord;
use async_trait::async_trait;
use jianka_shared::Year;
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Db(String),
    #[error("migrating the database: {0}")]
    Migrate(String),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error("unsupported database URL {0:?}: use sqlite://PATH or postgres://USER@HOST/DB")]
    BadUrl(String),
    #[error("the database writer stopped: {0}")]
    WriterGone(String),
    /// Another writer (a second hub, or an officer's command) held the write lock for longer
    /// than [`crate::store::WRITE_WAIT`]; nothing was written.
    #[error("the database is busy with another writer (waited {secs}s): {0}", secs = crate::store::WRITE_WAIT.as_secs())]
    Busy(String),
}

pub type StoreResult<T> = Result<T, StoreError>;

/// Which backend a store is (for logs and the health page).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// An enrolled child's certificate row (`certs`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertRow {
    pub key_id: String,
    pub subject: String,
    /// The certificate as JSON, exactly as enrolled.
    pub cert: String,
    pub revoked: bool,
    pub revoked_reason: Option<String>,
    /// Held after sending two different change sets under one number.
    pub equivocating: bool,
}

/// One recorded equivocation with the certificate it concerns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EquivocationRow {
    pub key_id: String,
    pub subject: String,
    pub seq: u64,
    pub stored_hash: String,
    pub offered_hash: String,
    pub at: i64,
}

/// `(next expected seq, hex hash of the last applied envelope)` of one origin's stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamState {
    pub next_seq: u64,
    pub last_hash: String,
}

impl StreamState {
    /// The stream of an origin that has sent nothing yet: seq 1 next, chained to zeros.
    pub fn new() -> StreamState {
        StreamState { next_seq: 1, last_hash: "0".repeat(64) }
    }
}

impl Default for StreamState {
    fn default() -> Self {
        StreamState::new()
    }
}

/// An applied envelope, kept with its bytes (the audit's evidence for the records it created).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvelopeRow {
    pub origin: String,
    pub seq: u64,
    pub hash: String,
    pub received_at: i64,
    pub ops: u64,
    pub year: Year,
    pub bytes: Vec<u8>,
}

/// A conflict as stored (`conflicts`): a proposal held for a decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConflictRow {
    pub id: i64,
    /// `field`, `duplicate_person` or `move`.
    pub kind: String,
    pub k: String,
    pub field: String,
    pub current_value: String,
    pub current_by: String,
    pub proposed_value: String,
    pub proposed_by: String,
    pub proposal: String,
    /// `open` or `resolved`.
    pub status: String,
    pub resolution: Option<String>,
    pub at: i64,
}

/// A conflict to record (status `open`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewConflict {
    pub kind: &'static str,
    pub k: String,
    pub field: String,
    pub current_value: String,
    pub current_by: String,
    pub proposed_value: String,
    pub proposed_by: String,
    pub proposal: String,
}

/// A cross-county move the province completed (`completed_moves`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompletedMoveRow {
    pub id: String,
    pub year: Year,
    pub from_county: String,
    pub to_county: String,
    pub from_household: String,
}

/// A refused op kept for the officer (`quarantine`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuarantineRow {
    pub origin: String,
    pub seq: u64,
    pub k: String,
    /// The rejection reason as JSON (`"not_authorised"`, …).
    pub reason: String,
    pub message: String,
    pub payload: String,
    pub at: i64,
}

/// One entry of the hash-chained audit log, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRow {
    pub seq: i64,
    pub at: i64,
    pub key_id: String,
    pub action: String,
    pub subject: String,
    pub old: String,
    pub new: String,
    pub prev_hash: String,
    pub hash: String,
}

/// A county's sign-off as received (`signoffs`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignOffRow {
    pub county: String,
    pub year: Year,
    pub period: String,
    /// The signed sign-off as JSON.
    pub body: String,
    pub received_at: i64,
}

/// A reopening of a locked year for a region (`reopenings`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReopeningRow {
    pub year: Year,
    pub region: String,
    pub reason: String,
    pub at: i64,
    /// Last day (`YYYY-MM-DD`) it runs; older rows have none.
    pub until_day: Option<String>,
}

/// The stored state of a registry year (`years`): `open`, `update_window`, `locked`, …
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct YearRow {
    pub year: Year,
    pub state: String,
    /// The frozen year's signed snapshot (JSON), once New Year has run.
    pub snapshot: Option<String>,
}

/// A signed allocation kept with its chain from the province down (`allocations`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllocationRow {
    /// SHA-256 (hex) of the last allocation's statement: the row's identity.
    pub digest: String,
    pub region: String,
    pub year: Year,
    pub serial: u64,
    /// JSON array of `{statement, signature}`, the province's first.
    pub chain: String,
    pub at: i64,
}

/// A record with the revision it was last written at (forwarding reads by revision).
#[derive(Debug, Clone)]
pub struct RevisedRecord {
    pub record: StoredRecord,
    pub rev: i64,
}

/// The hub's database. Every method is one round trip or one short read transaction, and may be
/// called while a [`WriteTx`] is open (it does not see that transaction's changes).
#[async_trait]
pub trait Store: Send + Sync + 'static {
    fn backend(&self) -> Backend;
    /// One real round trip (the health check).
    async fn ping(&self) -> StoreResult<()>;
    /// Opens the (only) write transaction; the caller holds the hub's writer lock.
    async fn begin(&self) -> StoreResult<Box<dyn WriteTx>>;
    /// Closes connections and stops the writer (pending writes of a committed transaction are
    /// durable before this returns).
    async fn close(&self);

    async fn meta(&self, k: &str) -> StoreResult<Option<String>>;

    // -- children and their streams
    async fn cert(&self, key_id: &str) -> StoreResult<Option<CertRow>>;
    /// Subjects of unrevoked certificates, sorted, each once.
    async fn enrolled_subjects(&self) -> StoreResult<Vec<String>>;
    /// Every recorded equivocation of a key still held (`equivocating`), oldest first.
    async fn equivocations(&self) -> StoreResult<Vec<EquivocationRow>>;
    async fn stream(&self, origin: &str) -> StoreResult<Option<StreamState>>;
    /// Envelopes `origin` sent for `year` received in `[from, until)` (Unix seconds).
    async fn envelopes_received(&self, origin: &str, year: Year, from: i64, until: i64) -> StoreResult<u64>;
    /// Kept envelopes (with bytes), by origin and seq, for the audit check.
    async fn kept_envelopes(&self) -> StoreResult<Vec<EnvelopeRow>>;

    // -- chunked uploads (outside any write transaction: they are resumable state, not data)
    /// `(total, bytes received so far)` of the upload of `origin`'s envelope `seq`.
    async fn upload(&self, origin: &str, seq: u64) -> StoreResult<Option<(u64, Vec<u8>)>>;
    async fn put_upload(&self, origin: &str, seq: u64, total: u64, data: &[u8]) -> StoreResult<()>;
    async fn delete_upload(&self, origin: &str, seq: u64) -> StoreResult<()>;

    // -- feedback to the tier below
    /// Up to `limit` items `(id, item JSON)` for `region` with id > `after`, in id order.
    async fn feedback_after(&self, region: &str, after: i64, limit: u32) -> StoreResult<Vec<(i64, String)>>;

    // -- records
    /// Live records of `year` whose region lies in `[lo, hi)`, in key order.
    async fn records_in(&self, year: Year, lo: &str, hi: &str) -> StoreResult<Vec<StoredRecord>>;
    /// Years any record is stored for, ascending.
    async fn record_years(&self) -> StoreResult<Vec<Year>>;
    /// Records (deleted ones too) written after `(rev, k)` in `(rev, k)` order, at most `limit`.
    async fn records_after(&self, rev: i64, k: &str, limit: u32) -> StoreResult<Vec<RevisedRecord>>;
    /// How many records [`Store::records_after`] would return without a limit.
    async fn count_records_after(&self, rev: i64, k: &str) -> StoreResult<u64>;

    // -- decisions and the cycle
    /// Conflicts, oldest first; only open ones unless `all`.
    async fn conflicts(&self, all: bool) -> StoreResult<Vec<ConflictRow>>;
    async fn year(&self, year: Year) -> StoreResult<Option<YearRow>>;
    /// Every year with a stored state, ascending.
    async fn years(&self) -> StoreResult<Vec<YearRow>>;
    async fn reopenings(&self, year: Year) -> StoreResult<Vec<ReopeningRow>>;
    /// Every sign-off, by county, year and period.
    async fn signoffs(&self) -> StoreResult<Vec<SignOffRow>>;
    async fn signoffs_of(&self, county: &str) -> StoreResult<Vec<SignOffRow>>;
    /// People recognised in `scope` for `year` (`None`: never counted).
    async fn quota_used(&self, scope: &str, year: Year) -> StoreResult<Option<u64>>;
    /// Every allocation kept (received, issued, filed), by the time it was kept, then digest.
    async fn allocations(&self) -> StoreResult<Vec<AllocationRow>>;
    /// The whole audit log in seq order.
    async fn audit_log(&self) -> StoreResult<Vec<AuditRow>>;
}

/// The one open write transaction. Reads see its own writes. Nothing is visible to
/// [`Store`] reads before [`WriteTx::commit`]; dropping it without commit rolls back.
///
/// A backend may apply writes after the call returns (SQLite queues them to its writer thread,
/// so the hub's CPU work overlaps the database's); any failure is reported by a later call of
/// the same transaction, at the latest by `commit`, and the transaction then commits nothing.
#[async_trait]
pub trait WriteTx: Send {
    async fn commit(self: Box<Self>) -> StoreResult<()>;

    async fn meta(&mut self, k: &str) -> StoreResult<Option<String>>;
    async fn set_meta(&mut self, k: &str, v: &str) -> StoreResult<()>;

    // -- children
    async fn cert(&mut self, key_id: &str) -> StoreResult<Option<CertRow>>;
    /// Enrolls (or re-enrolls) `key_id`: subject and certificate replaced, flags kept.
    async fn put_cert(&mut self, key_id: &str, subject: &str, cert: &str) -> StoreResult<()>;
    async fn revoke_cert(&mut self, key_id: &str, reason: &str) -> StoreResult<()>;
    async fn set_equivocating(&mut self, key_id: &str, held: bool) -> StoreResult<()>;
    async fn record_equivocation(
        &mut self,
        origin: &str,
        seq: u64,
        stored_hash: &str,
        offered_hash: &str,
        at: i64,
    ) -> StoreResult<()>;

    // -- the sender's stream
    async fn stream(&mut self, origin: &str) -> StoreResult<Option<StreamState>>;
    /// Hash of the envelope `origin` sent as `seq`, if applied.
    async fn envelope_hash(&mut self, origin: &str, seq: u64) -> StoreResult<Option<String>>;
    /// Keeps an applied envelope and advances its origin's stream past it.
    async fn record_envelope(&mut self, envelope: EnvelopeRow) -> StoreResult<()>;

    // -- records
    /// The stored records (deleted ones too) under these storage keys; missing keys are absent.
    async fn records(&mut self, keys: &[String]) -> StoreResult<Vec<StoredRecord>>;
    /// Live member records of `year` whose household is one of `households`.
    async fn live_members(&mut self, year: Year, households: &[String]) -> StoreResult<Vec<StoredRecord>>;
    /// The revision the next written records get (one more than the highest stored).
    async fn next_rev(&mut self) -> StoreResult<i64>;
    /// Upserts `records` at revision `rev` (all columns replaced).
    async fn write_records(&mut self, records: Vec<Arc<StoredRecord>>, rev: i64) -> StoreResult<()>;
    /// Upserts `records` at the next revision.
    async fn write_new_revision(&mut self, records: Vec<StoredRecord>) -> StoreResult<()> {
        if records.is_empty() {
            return Ok(());
        }
        let rev = self.next_rev().await?;
        self.write_records(crate::record::shared(records), rev).await
    }

    // -- what an ingest leaves besides records
    async fn quarantine(&mut self, rows: Vec<QuarantineRow>) -> StoreResult<()>;
    /// Appends feedback items `(region, item JSON)` in order (their ids ascend in that order).
    async fn push_feedback(&mut self, items: Vec<(String, String)>) -> StoreResult<()>;
    /// Open conflicts of `kind`, oldest first.
    async fn open_conflicts(&mut self, kind: &str) -> StoreResult<Vec<ConflictRow>>;
    async fn conflict(&mut self, id: i64) -> StoreResult<Option<ConflictRow>>;
    async fn add_conflicts(&mut self, rows: Vec<NewConflict>, at: i64) -> StoreResult<()>;
    async fn resolve_conflict(&mut self, id: i64, resolution: &str) -> StoreResult<()>;
    /// Completed moves of these person ids, by id, then latest year first.
    async fn completed_moves(&mut self, ids: &[String]) -> StoreResult<Vec<CompletedMoveRow>>;
    /// Records completed moves (a repeat of the same move updates its household and time).
    async fn add_completed_moves(&mut self, rows: Vec<CompletedMoveRow>, at: i64) -> StoreResult<()>;

    // -- quota
    /// People recognised in `scope` for `year`, the row created at 0 if missing and locked for
    /// the rest of the transaction (PostgreSQL: `FOR UPDATE`).
    async fn quota_used(&mut self, scope: &str, year: Year) -> StoreResult<u64>;
    /// Adds `n` (may be negative) to a scope read with [`WriteTx::quota_used`] before.
    async fn quota_add(&mut self, scope: &str, year: Year, n: i64) -> StoreResult<()>;
    /// Keeps an allocation; one already kept (same digest) is left as it is.
    async fn put_allocation(&mut self, row: AllocationRow) -> StoreResult<()>;

    // -- the cycle and sign-offs
    async fn year(&mut self, year: Year) -> StoreResult<Option<YearRow>>;
    /// Sets a year's state, creating it; the snapshot is replaced only when `snapshot` is given.
    async fn set_year_state(&mut self, year: Year, state: &str, snapshot: Option<&str>) -> StoreResult<()>;
    /// Creates a year as `open` unless it exists.
    async fn ensure_year(&mut self, year: Year) -> StoreResult<()>;
    async fn add_reopening(&mut self, row: ReopeningRow) -> StoreResult<()>;
    /// Stores a sign-off, replacing one for the same county, year and period.
    async fn put_signoff(&mut self, row: SignOffRow) -> StoreResult<()>;

    // -- audit
    /// `(seq, hash)` of the last audit entry.
    async fn last_audit(&mut self) -> StoreResult<Option<(i64, String)>>;
    async fn append_audit(&mut self, rows: Vec<AuditRow>) -> StoreResult<()>;
}
