//! The hub's state and its request-independent operations: authentication through the trust
//! chain, ingest (verify → chain → sequence → decompress → validate → merge → quota → write, one
//! transaction), feedback, sync state and digests.

use crate::audit::{self, AuditEntry};
use crate::authority;
use crate::clock::Clock;
use crate::config::{HubConfig, QuotaFile};
use crate::error::HubError;
use crate::merge::{FieldOutcome, FieldState, Fields, Text, merge_field};
use crate::store::{
    Db, dynamic, execute_pipelined, get_i64, in_list, is_sqlite, placeholders, rows_per_statement, while_running,
};
use crate::years;
use anyhow::Context;
use chrono::Datelike;
use ed25519_dalek::{SigningKey, VerifyingKey};
use jianka_shared::{
    Hlc, IdNumber, Record, RecordKey, RecordKind, RegionCode, Tier, Year,
    changeset::{self, ChangeSetError, FieldWrite, Limits, Op},
    digest::{SetDigest, record_digest},
    domain::{Household, Member, Status},
    profile::{CountyQuota, Profile},
    protocol::*,
    trust::{self, Certificate, KeyId},
};
use sqlx::{Any, Row, Transaction};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

// Keyed by storage keys, tens of thousands per change set: foldhash is several times faster than
// SipHash on such short strings and still seeded per map.
type HashMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;
type HashSet<K> = std::collections::HashSet<K, foldhash::fast::RandomState>;

/// Operations one change set may carry (the node cuts at 20,000 by default).
pub const MAX_OPS_PER_CHANGESET: usize = 100_000;

pub const DECISION_ADMIT: &str = "认定";
pub const DECISION_REFUSE: &str = "不予认定";

/// An authenticated caller: a child enrolled at this hub.
#[derive(Debug, Clone)]
pub struct Sender {
    pub region: RegionCode,
    pub key_id: KeyId,
    pub key: VerifyingKey,
}

pub struct Hub {
    pub cfg: HubConfig,
    pub db: Db,
    pub clock: Arc<dyn Clock>,
    pub key: SigningKey,
    pub profile: Option<Profile>,
    pub quotas: QuotaFile,
    pub limits: Limits,
    /// Serialises every write transaction (SQLite has one writer anyway; on PostgreSQL quota rows
    /// are also locked with FOR UPDATE) and holds the hub's own HLC.
    writer: tokio::sync::Mutex<Hlc>,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Hub({}, {:?})", self.cfg.region, self.db)
    }
}

/// The storage key of a record: `kind/year/id`.
pub fn storage_key(k: &RecordKey) -> String {
    key_of(k.kind, k.year, &k.id)
}

/// [`storage_key`] from its parts (built by hand: it runs for every op of a change set).
fn key_of(kind: RecordKind, year: Year, id: &str) -> String {
    let mut s = String::with_capacity(id.len() + 10);
    push_uint(&mut s, kind.to_u8().into());
    s.push('/');
    push_uint(&mut s, year.into());
    s.push('/');
    s.push_str(id);
    s
}

fn push_uint(out: &mut String, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend(digits[i..].iter().map(|&d| d as char));
}

/// The stored text of a record's fields, `{"name":["value",version,"writer"],…}`: exactly what
/// `serde_json` writes for [`Fields`] (and what [`row_from`] reads back), written by hand
/// because it runs for every row a change set writes.
pub fn fields_json(fields: &Fields) -> String {
    let mut out = String::with_capacity(fields.len() * 40 + 2);
    out.push('{');
    for (i, (name, f)) in fields.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        push_json_str(&mut out, name);
        out.push_str(":[");
        push_json_str(&mut out, &f.0);
        out.push(',');
        push_uint(&mut out, f.1);
        out.push(',');
        push_json_str(&mut out, &f.2);
        out.push(']');
    }
    out.push('}');
    out
}

/// A JSON string literal with `serde_json`'s escapes.
fn push_json_str(out: &mut String, s: &str) {
    out.push('"');
    let mut plain = 0;
    for (i, b) in s.bytes().enumerate() {
        let escape = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0x08 => "\\b",
            0x0c => "\\f",
            0..=0x1f => "",
            _ => continue,
        };
        // `b` is ASCII, so `i` is a char boundary.
        out.push_str(&s[plain..i]);
        if escape.is_empty() {
            out.push_str("\\u00");
            out.push(char::from(b"0123456789abcdef"[usize::from(b >> 4)]));
            out.push(char::from(b"0123456789abcdef"[usize::from(b & 0xf)]));
        } else {
            out.push_str(escape);
        }
        plain = i + 1;
    }
    out.push_str(&s[plain..]);
    out.push('"');
}

pub fn parse_storage_key(s: &str) -> Option<RecordKey> {
    let mut it = s.splitn(3, '/');
    let kind = RecordKind::from_u8(it.next()?.parse().ok()?)?;
    let year = it.next()?.parse().ok()?;
    Some(RecordKey { kind, year, id: it.next()?.to_string() })
}

/// A record row as the hub holds it.
#[derive(Debug, Clone)]
pub struct Row_ {
    pub key: RecordKey,
    pub region: String,
    pub hh: String,
    pub fields: Fields,
    pub deleted: bool,
}

impl Row_ {
    pub fn to_record(&self) -> Record {
        Record {
            key: self.key.clone(),
            fields: self.fields.iter().map(|(k, v)| (k.to_string(), v.0.to_string())).collect(),
        }
    }
    fn field(&self, name: &str) -> Option<&str> {
        self.fields.get(name).map(|f| f.0.as_str())
    }
    /// A member row as a [`Member`], read in place.
    fn to_member(&self) -> Result<Member, String> {
        Member::from_fields(&self.key.id, |n| self.field(n))
    }
}

/// What one ingest produced, beyond the outcome.
#[derive(Default)]
struct Effects {
    rows: HashMap<String, Row_>,
    dirty: Vec<String>,
    rejected: Vec<Rejection>,
    quarantine: Vec<(String, Rejection, String)>,
    feedback: Vec<(String, Feedback)>,
    conflicts: Vec<ConflictRow>,
    /// Field changes of this change set, written as one audit entry (see [`ChangeLog`]).
    changes: ChangeLog,
    /// The county's decisions in this change set, one audit entry.
    decisions: ChangeLog,
    /// The decided values to send down, by township; batched into feedback items at the end.
    corrections: Vec<(String, Correction)>,
    /// Conflicts this change set settled (completed moves): id and resolution.
    resolved: Vec<(i64, String)>,
    /// Moves this change set completed, kept so later copies from the county left are settled.
    completed_moves: Vec<CompletedMove>,
    /// The version a completed move's fields get at least (the hub's clock for this change set).
    move_version: u64,
    applied: u64,
    /// Frozen years whose accepted changes are carried into the next year (see
    /// [`Hub::carry_into_next_year`]), and the field values their records had before this change set.
    carry_years: HashSet<Year>,
    before: HashMap<String, Fields>,
    /// Rows already written in this transaction (see [`Effects::unwritten`]), each with the
    /// length `dirty` had then: a later entry in `dirty` means it changed again since.
    written: HashMap<String, usize>,
    /// How much of `dirty` has been looked at for rows to write early.
    scanned: usize,
    /// Members already stored in the households this change set touches (before its own rows),
    /// by year and household, for re-examination.
    stored_members: HashMap<(Year, String), Vec<Result<Member, String>>>,
    /// Records whose change was refused outright, to send back as the county holds them.
    restore: Vec<String>,
    /// The county's village ceiling after signed 微调 adjustments (read before the transaction).
    village_ceiling: Option<u64>,
    /// Members as `check_record` parsed them from the rows this change set wrote, so
    /// re-examination does not copy every field again; dropped whenever such a row changes.
    member_records: HashMap<String, Member>,
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

struct ConflictRow {
    kind: &'static str,
    k: String,
    field: String,
    current_value: String,
    current_by: String,
    proposed_value: String,
    proposed_by: String,
    proposal: String,
}

fn reject(fx: &mut Effects, to: &RegionCode, key: &RecordKey, reason: RejectReason, message: String, payload: String) {
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

impl Hub {
    pub async fn open(cfg: HubConfig, clock: Arc<dyn Clock>) -> anyhow::Result<Hub> {
        cfg.check()?;
        let key_path = cfg.resolve(&cfg.key_file);
        let key = jianka_keyfile::Keypair::read(&key_path)
            .with_context(|| format!("reading the hub key {}", key_path.display()))?
            .signing()
            .clone();
        let profile = cfg.load_profile()?;
        let quotas = cfg.load_quotas()?;
        let db = Db::open(&cfg.database_url()).await.with_context(|| format!("opening database {}", cfg.database))?;
        Ok(Hub {
            cfg,
            db,
            clock,
            key,
            profile,
            quotas,
            // A node cuts change sets at 20,000 ops (a few MiB decompressed); these bounds leave
            // room for that and refuse a decompression bomb before it is inflated.
            limits: Limits { max_envelope: 64 << 20, max_body: 48 << 20 },
            writer: tokio::sync::Mutex::new(Hlc::ZERO),
        })
    }

    /// A real round trip to the database (for `/v1/health`).
    pub async fn check_database(&self) -> Result<(), HubError> {
        sqlx::query("SELECT 1").fetch_one(&self.db.pool).await.map_err(|e| {
            tracing::error!(error = %e, "health check: database unreachable");
            HubError::new(ErrorCode::Unavailable, "the hub's database does not answer")
        })?;
        Ok(())
    }

    pub fn region(&self) -> &RegionCode {
        &self.cfg.region
    }

    pub fn key_id(&self) -> KeyId {
        KeyId::of(&self.key.verifying_key())
    }

    pub fn now_secs(&self) -> i64 {
        self.clock.now().timestamp()
    }

    pub fn today(&self) -> chrono::NaiveDate {
        self.clock.now().with_timezone(&chrono_tz::Asia::Shanghai).date_naive()
    }

    /// Appends entries signed off by this hub's own key to the audit log, in `tx`.
    pub async fn audit(&self, tx: &mut Transaction<'static, Any>, entries: &[AuditEntry]) -> Result<(), HubError> {
        audit::append(tx, self.now_secs(), &self.key_id().to_string(), entries).await?;
        Ok(())
    }

    /// Takes the writer lock and a fresh HLC timestamp for the hub's own writes.
    pub async fn begin_write(&self) -> Result<(tokio::sync::MutexGuard<'_, Hlc>, Transaction<'static, Any>), HubError> {
        let guard = self.writer.lock().await;
        let tx = self.db.pool.begin().await?;
        Ok((guard, tx))
    }

    pub fn tick(&self, h: &mut Hlc) -> Hlc {
        *h = h.tick(self.clock.now().timestamp_millis().max(0) as u64);
        *h
    }

    // ---------------------------------------------------------------- authentication

    /// Checks the three auth headers against the children this hub enrolled.
    pub async fn authenticate(
        &self,
        method: &str,
        path_and_query: &str,
        key: Option<&str>,
        time: Option<&str>,
        signature: Option<&str>,
        body: &[u8],
    ) -> Result<Sender, HubError> {
        let (Some(key), Some(time), Some(sig)) = (key, time, signature) else {
            return Err(HubError::new(
                ErrorCode::Unauthenticated,
                format!("missing authentication headers {HEADER_KEY}, {HEADER_TIME}, {HEADER_SIGNATURE}"),
            ));
        };
        let key_id = KeyId::parse(key).ok_or_else(|| {
            HubError::new(ErrorCode::Unauthenticated, format!("{HEADER_KEY} {key:?} is not 16 hex digits"))
        })?;
        let t: i64 = time.trim().parse().map_err(|_| {
            HubError::new(ErrorCode::Unauthenticated, format!("{HEADER_TIME} {time:?} is not Unix seconds"))
        })?;
        let now = self.now_secs();
        if (t - now).abs() > MAX_CLOCK_SKEW_SECS {
            return Err(HubError::new(
                ErrorCode::ClockSkew,
                format!("request time {t} is {}s away from the hub's clock {now}; fix the node's clock", t - now),
            ));
        }
        let Sender { region, key: vk, .. } = self.enrolled(key_id).await?;
        if !trust::verify_request(&vk, method, path_and_query, body, t, sig) {
            return Err(HubError::new(
                ErrorCode::BadSignature,
                format!("request signature does not verify for key {key_id} over {method} {path_and_query}"),
            ));
        }
        Ok(Sender { region, key_id, key: vk })
    }

    /// The enrolled, unrevoked child speaking with `key_id`, its certificate checked against this
    /// hub's key: for signed requests and for files that arrive on a USB stick.
    pub async fn enrolled(&self, key_id: KeyId) -> Result<Sender, HubError> {
        let row =
            sqlx::query("SELECT subject, cert, revoked, revoked_reason, equivocating FROM certs WHERE key_id = $1")
                .bind(key_id.to_string())
                .fetch_optional(&self.db.pool)
                .await?;
        let Some(row) = row else {
            return Err(HubError::new(
                ErrorCode::UnknownKey,
                format!("key {key_id} is not enrolled at hub {}", self.region()),
            ));
        };
        // Flags read fail closed: a value that does not decode counts as set.
        let flag = |i: usize| row.try_get::<i64, _>(i).map_or(true, |v| v != 0);
        if flag(2) {
            let reason: Option<String> = row.try_get(3).ok();
            return Err(HubError::new(
                ErrorCode::RevokedKey,
                format!(
                    "key {key_id} was revoked by the {} hub {} (reason: {}); it is refused for good — the {} must \
                     enroll a new key",
                    self.region().tier(),
                    self.region(),
                    reason.unwrap_or_default(),
                    self.region().tier()
                ),
            ));
        }
        if flag(4) {
            return Err(HubError::new(
                ErrorCode::Equivocation,
                format!(
                    "key {key_id} sent two different change sets under one sequence number and is held until the \
                     county officer has looked at it (`jianka-hub equivocations list`, then `equivocations clear`); nothing sent since \
                     was applied — call the county's IT officer"
                ),
            ));
        }
        let cert: Certificate = serde_json::from_str(&row.try_get::<String, _>(1)?)
            .map_err(|e| HubError::new(ErrorCode::Internal, format!("stored certificate unreadable: {e}")))?;
        let vk = trust::verify_child(&cert, &self.key.verifying_key(), self.today())
            .map_err(|e| HubError::new(ErrorCode::UnknownKey, e.to_string()))?;
        if !self.region().contains(&cert.subject) {
            return Err(HubError::new(
                ErrorCode::OutsideRegion,
                format!("{} is outside hub region {}", cert.subject, self.region()),
            ));
        }
        Ok(Sender { region: cert.subject, key_id, key: vk })
    }

    // ---------------------------------------------------------------- ingest

    /// Ingests one envelope from `sender`. Nothing is stored unless everything up to the merge
    /// succeeded; the merge, the sequence advance, feedback and audit commit together.
    pub async fn ingest(&self, sender: &Sender, bytes: &[u8]) -> Result<PushOutcome, HubError> {
        let sealed = changeset::parse(bytes, self.limits).map_err(cs_error)?;
        if sealed.header.origin != sender.region {
            return Err(HubError::new(
                ErrorCode::OutsideRegion,
                format!(
                    "change set claims origin {} but was sent with the key of {}",
                    sealed.header.origin, sender.region
                ),
            ));
        }
        let verified = sealed.verify(&sender.key).map_err(|e| HubError::new(ErrorCode::BadSignature, e.to_string()))?;
        let header = verified.header().clone();
        if header.op_count as usize > MAX_OPS_PER_CHANGESET {
            return Err(HubError::new(
                ErrorCode::TooLarge,
                format!(
                    "change set #{} declares {} operations, over the {MAX_OPS_PER_CHANGESET} limit; cut it smaller \
                     (sync.max_ops_per_changeset)",
                    header.seq, header.op_count
                ),
            ));
        }
        if header.seq == 0 {
            return Err(HubError::new(ErrorCode::Malformed, "change-set seq starts at 1"));
        }
        let hash = hex::encode(changeset::envelope_hash(bytes));
        let origin = sender.region.to_string();
        // Decompressed and decoded before the writer lock: CPU work that needs no database.
        let cs = verified.open(self.limits).map_err(cs_error)?;
        let mut hlc = self.writer.lock().await;
        // Read before the transaction begins, so no connection is held while another is awaited.
        let villages = cs.ops.iter().any(|o| o.key().kind == RecordKind::Village);
        let years = self.year_states(cs.ops.iter().map(|o| o.key().year), villages).await?;
        let mut tx = self.db.pool.begin().await?;
        let (next_seq, last_hash) = stream_state(&mut tx, &origin).await?;
        if header.seq < next_seq {
            let stored: Option<String> = sqlx::query("SELECT hash FROM envelopes WHERE origin = $1 AND seq = $2")
                .bind(&origin)
                .bind(header.seq as i64)
                .fetch_optional(&mut *tx)
                .await?
                .map(|r| r.get(0));
            if stored.as_deref() == Some(hash.as_str()) {
                return Ok(PushOutcome::Duplicate { seq: header.seq });
            }
            sqlx::query(
                "INSERT INTO equivocations (origin, seq, stored_hash, offered_hash, at) VALUES ($1,$2,$3,$4,$5)",
            )
            .bind(&origin)
            .bind(header.seq as i64)
            .bind(stored.unwrap_or_default())
            .bind(&hash)
            .bind(self.now_secs())
            .execute(&mut *tx)
            .await?;
            sqlx::query("UPDATE certs SET equivocating = 1 WHERE key_id = $1")
                .bind(sender.key_id.to_string())
                .execute(&mut *tx)
                .await?;
            audit::append(
                &mut tx,
                self.now_secs(),
                &sender.key_id.to_string(),
                &[AuditEntry::new("equivocation", format!("{origin}#{}", header.seq), "", &hash)],
            )
            .await?;
            tx.commit().await?;
            tracing::warn!(%origin, seq = header.seq, "equivocation: same seq, different content; node flagged");
            return Err(HubError::new(
                ErrorCode::Equivocation,
                format!(
                    "{origin} already sent a different change set #{}; the node is flagged for the county officer",
                    header.seq
                ),
            ));
        }
        if header.seq > next_seq {
            return Ok(PushOutcome::Gap { expected: next_seq });
        }
        if hex::encode(header.prev_hash) != last_hash {
            return Err(HubError::new(
                ErrorCode::BrokenChain,
                format!(
                    "change set #{} does not chain to the previous envelope of {origin} (expected prev_hash {last_hash})",
                    header.seq
                ),
            ));
        }
        if let Some(max) = cs.ops.iter().flat_map(op_versions).max() {
            *hlc = hlc.observe(max, self.clock.now().timestamp_millis().max(0) as u64);
        }
        let mut fx = Effects { move_version: self.tick(&mut hlc).0, ..Effects::default() };
        self.apply_ops(&mut tx, &sender.region, &cs.ops, years, &mut fx).await?;
        let households = fx.reexam_candidates();
        if self.region().tier() == Tier::County {
            self.reexamine(&mut tx, &mut hlc, households, &mut fx).await?;
            self.reexamine_villages(&mut tx, &mut hlc, &mut fx).await?;
            self.carry_into_next_year(&mut tx, &mut fx).await?;
            restore_feedback(&mut fx, &sender.region);
        }
        fx.feedback.push((origin.clone(), Feedback::Ack { seq: header.seq }));
        self.write_effects(&mut tx, &sender.region, header.seq, &mut fx).await?;
        let now = self.now_secs();
        sqlx::query(
            "INSERT INTO envelopes (origin, seq, hash, received_at, ops, year, bytes) VALUES ($1,$2,$3,$4,$5,$6,$7)",
        )
        .bind(&origin)
        .bind(header.seq as i64)
        .bind(&hash)
        .bind(now)
        .bind(cs.ops.len() as i64)
        .bind(header.year as i64)
        .bind(bytes.to_vec())
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO streams (origin, next_seq, last_hash) VALUES ($1,$2,$3) \
             ON CONFLICT (origin) DO UPDATE SET next_seq = excluded.next_seq, last_hash = excluded.last_hash",
        )
        .bind(&origin)
        .bind(header.seq as i64 + 1)
        .bind(&hash)
        .execute(&mut *tx)
        .await?;
        // One entry per change set: the envelope's hash, and the old and new values of every record
        // it changed other than by creating it exactly as sent (those are in the envelope).
        let subject = format!("{origin}#{} envelope {hash}", header.seq);
        let (old, new) = std::mem::take(&mut fx.changes).finish();
        let mut entries = vec![AuditEntry::new("changeset", subject, old, new)];
        if !fx.decisions.is_empty() {
            let (old, new) = std::mem::take(&mut fx.decisions).finish();
            entries.push(AuditEntry::new("county_decisions", format!("{origin}#{}", header.seq), old, new));
        }
        audit::append_owned(&mut tx, now, &sender.key_id.to_string(), entries).await?;
        let (applied, rejected) = (fx.applied, std::mem::take(&mut fx.rejected));
        // Free this change set's rows while the database commits.
        while_running(tx.commit(), || drop((fx, cs))).await?;
        tracing::info!(%origin, seq = header.seq, applied, rejected = rejected.len(), "change set accepted");
        Ok(PushOutcome::Accepted { seq: header.seq, applied, rejected })
    }

    async fn load_rows(
        &self,
        tx: &mut Transaction<'static, Any>,
        keys: &[String],
        into: &mut HashMap<String, Row_>,
    ) -> Result<(), HubError> {
        let sqlite = is_sqlite(tx);
        for chunk in keys.chunks(5_000) {
            let sql = format!(
                "SELECT k, region, hh, fields, deleted FROM records WHERE k IN ({})",
                in_list(sqlite, chunk.len())
            );
            let mut q = sqlx::query(dynamic(sql));
            for k in chunk {
                q = q.bind(k.clone());
            }
            for r in q.fetch_all(&mut **tx).await? {
                let k: String = r.try_get(0)?;
                let row = row_from(&k, r.try_get(1)?, r.try_get(2)?, &r.try_get::<String, _>(3)?, get_i64(&r, 4) != 0)?;
                into.insert(k, row);
            }
        }
        Ok(())
    }

    /// Each year's state (and the regions it is reopened for) and, at a county, the frozen
    /// years whose accepted changes carry into the next year (see [`Hub::carry_into_next_year`])
    /// and the village ceiling.
    async fn year_states(&self, years: impl Iterator<Item = Year>, villages: bool) -> Result<YearStates, HubError> {
        let years: BTreeSet<Year> = years.collect();
        let mut out = YearStates::default();
        for y in years {
            let (state, reopened) = years::effective_state(&self.db, y, self.today(), self.profile.as_ref()).await?;
            if self.region().tier() == Tier::County
                && state != YearState::Open
                && years::carries_into_next(&self.db, y, self.today(), self.profile.as_ref()).await?
            {
                out.carry.insert(y);
            }
            out.states.insert(y, (state, reopened));
        }
        if villages
            && self.region().tier() == Tier::County
            && let Some(q) = self.county_quota()
        {
            let adjusted =
                self.village_quotas().await.map_err(|e| HubError::new(ErrorCode::Internal, e.to_string()))?;
            out.village_ceiling = Some(adjusted.get(&q.county).copied().unwrap_or(q.villages));
        }
        Ok(out)
    }

    async fn apply_ops(
        &self,
        tx: &mut Transaction<'static, Any>,
        writer: &RegionCode,
        ops: &[Op],
        years: YearStates,
        fx: &mut Effects,
    ) -> Result<(), HubError> {
        let keys: Vec<String> = {
            let mut seen = HashSet::default();
            ops.iter().map(|o| storage_key(o.key())).filter(|k| seen.insert(k.clone())).collect()
        };
        fx.rows.reserve(keys.len());
        fx.member_records.reserve(keys.len());
        self.load_rows(tx, &keys, &mut fx.rows).await?;
        let YearStates { states, carry, village_ceiling } = years;
        fx.carry_years = carry;
        fx.village_ceiling = village_ceiling;
        // Kept only when needed: the carry compares the next year's values with these.
        for (k, r) in &fx.rows {
            if fx.carry_years.contains(&r.key.year) {
                fx.before.insert(k.clone(), r.fields.clone());
            }
        }
        // Households the authority checks look at that the change set does not carry: those its
        // members belong to or join, and those its moved households left.
        let referenced: Vec<String> = {
            let mut seen = HashSet::default();
            let mut out = Vec::new();
            for op in ops {
                let key = op.key();
                let named = match key.kind {
                    RecordKind::Member => op_field(op, "household"),
                    RecordKind::Household => op_field(op, MOVED_FROM),
                    RecordKind::Village => None,
                };
                let stored =
                    fx.rows.get(&storage_key(key)).filter(|_| key.kind == RecordKind::Member).map(|r| r.hh.as_str());
                for hh in named.into_iter().chain(stored).filter(|h| !h.is_empty()) {
                    let hk = key_of(RecordKind::Household, key.year, hh);
                    if !fx.rows.contains_key(&hk) && seen.insert(hk.clone()) {
                        out.push(hk);
                    }
                }
            }
            out
        };
        let mut households = HashMap::default();
        self.load_rows(tx, &referenced, &mut households).await?;
        let province = self.region().tier() == Tier::Province;
        let mut ctx = MergeContext {
            today: self.today(),
            writer_code: Text::new(writer.as_str()),
            states,
            // Cross-county moves waiting at the province for the departure side, by member key.
            moves: if province { pending_moves(tx, ops).await? } else { HashMap::default() },
            completed: if province { completed_moves_of(tx, ops).await? } else { HashMap::default() },
            households,
        };
        // Members already stored in the households this change set touches, read before any of its
        // own rows are written (re-examination counts them).
        fx.stored_members = self.stored_members_of(tx, ops, fx).await?;
        // Merge a slice of the ops while the database writes the member rows of the slice before
        // (members are final after the merge: re-examination decides households only).
        let rev = next_rev(tx).await?;
        let merge = |fx: &mut Effects, slice: &[Op]| self.merge_ops(writer, slice, fx, &mut ctx);
        write_while(tx, fx, RecordKind::Member, rev, ops.chunks(MERGE_SLICE), merge).await
    }

    /// Merges `ops` into `fx` (pure: everything it reads from the database is in `ctx`).
    fn merge_ops(&self, writer: &RegionCode, ops: &[Op], fx: &mut Effects, ctx: &mut MergeContext) {
        let MergeContext { today, writer_code, states, moves, completed, households } = ctx;
        let today = *today;
        let province_tier = self.region().tier() == Tier::Province;
        for op in ops {
            let key = op.key();
            let k = storage_key(key);
            // Over a size limit: refused before anything else looks at it, and quarantined as a
            // summary (the op itself may be megabytes).
            if let Op::Upsert { fields, .. } = op
                && let Err(msg) = authority::check_limits(key, fields)
            {
                let summary =
                    format!("{} fields, {} bytes", fields.len(), fields.iter().map(|w| w.value.len()).sum::<usize>());
                reject(fx, writer, key, RejectReason::TooLarge, format!("{key}: {msg}"), summary);
                continue;
            }
            // Only a rejected op is kept whole (quarantine), so encode it only then.
            let payload = || serde_json::to_string(op).unwrap_or_default();
            let existing = fx.rows.get(&k).filter(|r| !r.deleted).cloned();
            // The village the record belongs to: from its key, or a member's `village` field.
            let village = match key.kind {
                RecordKind::Member => {
                    op_field(op, "village").map(str::to_string).or_else(|| existing.as_ref().map(|r| r.region.clone()))
                }
                _ => key.village_prefix().map(str::to_string),
            };
            let Some(village) = village.and_then(|v| RegionCode::parse(&v).ok()).filter(|v| v.tier() == Tier::Village)
            else {
                reject(
                    fx,
                    writer,
                    key,
                    RejectReason::FailedValidation,
                    format!("{key}: no valid 12-digit village code"),
                    payload(),
                );
                continue;
            };
            if !writer.contains(&village) {
                reject(
                    fx,
                    writer,
                    key,
                    RejectReason::NotAuthorised,
                    format!("{key} belongs to village {village}, outside {writer}"),
                    payload(),
                );
                continue;
            }
            // The county decides when its townships' year is locked (window, deadline, reopenings)
            // and enforced it before forwarding: the province takes a county's data for the year
            // whenever it comes, and tracks a late county by its sign-off instead.
            let locked = !province_tier
                && states.get(&key.year).is_some_and(|(state, reopened)| {
                    *state == YearState::Locked && !reopened.iter().any(|r| r.contains(&village))
                });
            if locked {
                let who = years::reopen_by(self.region());
                reject(
                    fx,
                    writer,
                    key,
                    RejectReason::YearLocked,
                    format!("year {} is locked; only {who} may reopen it", key.year),
                    payload(),
                );
                continue;
            }
            // A registry year has not begun yet: nothing may be registered in it (a node's clock
            // a little ahead at New Year is allowed for).
            if i32::from(key.year) > (today + chrono::Days::new(2)).year() {
                let msg = format!("{key}: year {} has not begun (today is {today})", key.year);
                reject(fx, writer, key, RejectReason::FailedValidation, msg, payload());
                continue;
            }
            // Past the lock check a year not open is in its update window or reopened here.
            let in_update = states.get(&key.year).is_some_and(|(state, _)| *state != YearState::Open);
            let household_row = |hh: &str| {
                let hk = key_of(RecordKind::Household, key.year, hh);
                fx.rows.get(&hk).or_else(|| households.get(&hk))
            };
            let moved_from = match check_authority(op, existing.as_ref(), writer, in_update, household_row) {
                Ok(moved_from) => moved_from,
                Err(msg) => {
                    reject(fx, writer, key, RejectReason::NotAuthorised, format!("{key}: {msg}"), payload());
                    continue;
                }
            };
            match op {
                Op::Delete { .. } => {
                    if let Some(ex) = &existing
                        && key.kind == RecordKind::Member
                        && let Some(mv) = moves.remove(&k)
                    {
                        // The departure of a person another county is waiting for: the move completes.
                        self.complete_move(fx, key, ex, mv);
                        continue;
                    }
                    if let Some(ex) = &existing
                        && key.kind == RecordKind::Member
                        && ex.field(MOVE_OUT).is_some()
                    {
                        // Declared as moving to another county that has not sent the arrival yet: the
                        // person stays where they are until it does (never in neither county).
                        fx.changes.record::<&str, _>(&audit_subject(key), &[], &[(MOVE_OUT, "departure held")]);
                        continue;
                    }
                    if let Some(mut row) = existing {
                        let old: Vec<(&str, &str)> = row.fields.iter().map(|(n, f)| (n.as_str(), f.value())).collect();
                        fx.changes.record::<_, &str>(&audit_subject(key), &old, &[]);
                        row.deleted = true;
                        fx.member_records.remove(&k);
                        fx.rows.insert(k.clone(), row);
                        fx.dirty.push(k);
                        fx.applied += 1;
                    }
                }
                Op::Upsert { fields, .. } => {
                    if key.kind == RecordKind::Member {
                        if IdNumber::parse(&key.id, today).is_err() {
                            let msg = IdNumber::parse(&key.id, today).err().map(|e| e.to_string()).unwrap_or_default();
                            let masked = jianka_shared::id_number::mask(&key.id);
                            reject(
                                fx,
                                writer,
                                key,
                                RejectReason::FailedValidation,
                                msg.replace(&key.id, &masked),
                                payload(),
                            );
                            continue;
                        }
                        if self.region().tier() == Tier::Province
                            && let Some(ex) = &existing
                            && let Some(w) = fields.iter().find(|w| w.name == "household")
                            && ex.hh != w.value
                            && let Ok(from) = RegionCode::parse(&ex.region)
                            && !writer.contains(&from)
                        {
                            // A person arriving from another county (跨县迁移), which the province completes.
                            let mv = PendingMove {
                                conflict: None,
                                to: writer.clone(),
                                household: w.value.clone(),
                                proposal: op.clone(),
                            };
                            let holder = from.ancestor(Tier::County).unwrap_or(from);
                            if ex.field(MOVE_OUT) == Some(writer.as_str()) {
                                self.complete_move(fx, key, ex, mv);
                            } else if let Some(why) =
                                settled_move(fx, completed, key, writer, &holder, op_field(op, MOVE_OUT), &w.value)
                            {
                                // A late copy from the county the person already left (e.g. its
                                // next-year carry): the move is done; nothing changes here.
                                self.settle_late_copy(fx, key, ex, writer, &holder, why);
                            } else {
                                fx.conflicts.push(ConflictRow {
                                    kind: "move",
                                    k: k.clone(),
                                    field: "household".into(),
                                    current_value: ex.hh.clone(),
                                    current_by: holder.to_string(),
                                    proposed_value: w.value.clone(),
                                    proposed_by: writer.to_string(),
                                    proposal: payload(),
                                });
                                let msg = format!(
                                    "{key} is a member of household {} in another county: held as a cross-county move, \
                                     completed by the province when that county records the departure",
                                    ex.hh
                                );
                                reject(fx, writer, key, RejectReason::DuplicatePerson, msg, payload());
                            }
                            continue;
                        }
                        if let Some(ex) = &existing
                            && let Some(w) = fields.iter().find(|w| w.name == "household")
                            && ex.hh != w.value
                            && (w.base == Hlc::ZERO
                                || !writer.contains(&RegionCode::parse(&ex.region).unwrap_or(village.clone())))
                        {
                            fx.conflicts.push(ConflictRow {
                                kind: "duplicate_person",
                                k: k.clone(),
                                field: "household".into(),
                                current_value: ex.hh.clone(),
                                current_by: ex.fields.get("household").map(|f| f.2.to_string()).unwrap_or_default(),
                                proposed_value: w.value.clone(),
                                proposed_by: writer.to_string(),
                                proposal: payload(),
                            });
                            let msg = format!(
                                "{key} is already a member of household {}; held for the county's decision",
                                ex.hh
                            );
                            reject(fx, writer, key, RejectReason::DuplicatePerson, msg, payload());
                            continue;
                        }
                    }
                    if let Some(ex) = &existing
                        && let Ok(r) = RegionCode::parse(&ex.region)
                        && !writer.contains(&r)
                    {
                        reject(
                            fx,
                            writer,
                            key,
                            RejectReason::NotAuthorised,
                            format!("{key} belongs to {r}, outside {writer}"),
                            payload(),
                        );
                        continue;
                    }
                    let mut row = existing.unwrap_or_else(|| Row_ {
                        key: key.clone(),
                        region: village.to_string(),
                        hh: String::new(),
                        fields: Fields::new(),
                        deleted: false,
                    });
                    let mut old: Vec<(&str, Text)> = Vec::new();
                    let mut new: Vec<(&str, &str)> = Vec::with_capacity(fields.len());
                    // A new record whose fields come in name order (as nodes send them) is built as
                    // its sorted vector directly; anything else goes through lookups and inserts.
                    let mut fresh = (row.fields.is_empty() && fields.windows(2).all(|p| p[0].name < p[1].name))
                        .then(|| Vec::with_capacity(fields.len()));
                    for w in fields {
                        let current = if fresh.is_some() { None } else { row.fields.get(w.name.as_str()) };
                        match merge_field(current, w, writer) {
                            FieldOutcome::Apply => {
                                new.push((&w.name, &w.value));
                                let state = FieldState(Text::new(&w.value), w.version.0, writer_code.clone());
                                match &mut fresh {
                                    Some(sorted) => sorted.push((Text::new(&w.name), state)),
                                    None => {
                                        if let Some(prev) = row.fields.insert(Text::new(&w.name), state) {
                                            old.push((&w.name, prev.0));
                                        }
                                    }
                                }
                            }
                            FieldOutcome::Same | FieldOutcome::Superseded => {}
                            FieldOutcome::Stale { by } => {
                                let msg = format!(
                                    "{key} field {}: edited from an old version; {by} has changed it since",
                                    w.name
                                );
                                reject(fx, writer, key, RejectReason::Stale, msg, field_payload(key, w));
                            }
                            FieldOutcome::NotAuthorised { owner } => {
                                let msg = format!(
                                    "{key} field {} is owned by the {owner}; a {} may not write it",
                                    w.name,
                                    writer.tier()
                                );
                                reject(fx, writer, key, RejectReason::NotAuthorised, msg, field_payload(key, w));
                            }
                            FieldOutcome::Conflict { current } => {
                                fx.conflicts.push(ConflictRow {
                                    kind: "field",
                                    k: k.clone(),
                                    field: w.name.clone(),
                                    current_value: current.0.to_string(),
                                    current_by: current.2.to_string(),
                                    proposed_value: w.value.clone(),
                                    proposed_by: writer.to_string(),
                                    proposal: field_payload(key, w),
                                });
                                let msg = format!(
                                    "{key} field {}: {} also changed it; held for the tier above",
                                    w.name, current.2
                                );
                                reject(fx, writer, key, RejectReason::Conflict, msg, field_payload(key, w));
                            }
                        }
                    }
                    if let Some(sorted) = fresh {
                        row.fields = Fields::from_sorted_store_unchecked(sorted);
                    }
                    if let Err((reason, msg)) = authority::check_references(key, writer, |n| row.field(n)) {
                        reject(fx, writer, key, reason, format!("{key}: {msg}"), payload());
                        continue;
                    }
                    let checked = match check_record(&row, today) {
                        Ok(checked) => checked,
                        Err(msg) => {
                            reject(fx, writer, key, RejectReason::FailedValidation, format!("{key}: {msg}"), payload());
                            continue;
                        }
                    };
                    if new.is_empty() {
                        continue;
                    }
                    row.deleted = false;
                    row.hh = match key.kind {
                        RecordKind::Member => row.field("household").unwrap_or_default().to_string(),
                        RecordKind::Household => key.id.clone(),
                        RecordKind::Village => String::new(),
                    };
                    if key.kind == RecordKind::Member {
                        row.region = row.field("village").unwrap_or(&row.region).to_string();
                    }
                    // A record created exactly as sent is audited by the envelope's hash (its bytes
                    // are kept with it); anything else lists its old and new values.
                    if !(old.is_empty() && new.len() == fields.len()) {
                        fx.changes.record(&audit_subject(key), &old, &new);
                    }
                    let departs_to = (key.kind == RecordKind::Member).then(|| row.field(MOVE_OUT)).flatten();
                    if let Some(to) = departs_to
                        && moves.get(&k).is_some_and(|m| m.to.as_str() == to)
                        && let Some(mv) = moves.remove(&k)
                    {
                        // The departure names the county already waiting for this person.
                        self.complete_move(fx, key, &row, mv);
                        continue;
                    }
                    match checked {
                        Some(member) => fx.member_records.insert(k.clone(), member),
                        None => fx.member_records.remove(&k),
                    };
                    fx.rows.insert(k.clone(), row);
                    fx.dirty.push(k);
                    fx.applied += 1;
                    // Accepted: the household this one moved from passes its status on once only.
                    if let Some(old) = moved_from
                        && let Some(mut left) = fx.rows.get(&old).or_else(|| households.get(&old)).cloned()
                    {
                        let by = self.region().as_str().into();
                        left.fields
                            .insert(STATUS_PASSED_TO.into(), FieldState(key.id.as_str().into(), fx.move_version, by));
                        fx.rows.insert(old.clone(), left);
                        fx.dirty.push(old);
                    }
                }
            }
        }
    }

    /// Completes a cross-county move in this change set's transaction: the person's record is
    /// replaced by the arriving county's, so at every commit they belong to exactly one county.
    fn complete_move(&self, fx: &mut Effects, key: &RecordKey, from: &Row_, mv: PendingMove) {
        let Op::Upsert { fields, .. } = &mv.proposal else { return };
        let version = fx.move_version;
        let mut fields_new = Fields::new();
        for w in fields {
            fields_new.insert(
                w.name.as_str().into(),
                FieldState(w.value.as_str().into(), w.version.0.max(version), mv.to.as_str().into()),
            );
        }
        let village = fields_new.get("village").map(|f| f.0.to_string()).unwrap_or_default();
        let row =
            Row_ { key: key.clone(), region: village, hh: mv.household.clone(), fields: fields_new, deleted: false };
        let old: Vec<(&str, &str)> = from.fields.iter().map(|(n, f)| (n.as_str(), f.value())).collect();
        let new: Vec<(&str, &str)> = row.fields.iter().map(|(n, f)| (n.as_str(), f.value())).collect();
        fx.changes.record(&format!("move {}", audit_subject(key)), &old, &new);
        let from_county = RegionCode::parse(&from.region)
            .ok()
            .and_then(|r| r.ancestor(Tier::County))
            .map(|c| c.to_string())
            .unwrap_or_default();
        let note = format!("cross-county move {from_county} → {} completed by the province", mv.to);
        for to in [from_county.clone(), mv.to.to_string()] {
            fx.feedback.push((
                to,
                Feedback::Resolved {
                    key: key.clone(),
                    field: "household".into(),
                    value: mv.household.clone(),
                    note: note.clone(),
                },
            ));
        }
        if let Some(id) = mv.conflict {
            fx.resolved.push((id, format!("{} — {note}", mv.household)));
        }
        fx.completed_moves.push(CompletedMove {
            id: key.id.clone(),
            year: key.year,
            from_county: from_county.clone(),
            to_county: mv.to.to_string(),
            from_household: from.hh.clone(),
        });
        tracing::info!(key = %key, from = %from_county, to = %mv.to, "cross-county move completed");
        let k = storage_key(key);
        fx.member_records.remove(&k);
        fx.rows.insert(k.clone(), row);
        fx.dirty.push(k);
        fx.applied += 1;
    }

    /// Accepts a late copy of a moved person from the county they left as already settled: the
    /// person stays with `holder`; audited, and the writer is told where the person is, so its
    /// stale copy goes the way a completed move's departure does.
    fn settle_late_copy(
        &self,
        fx: &mut Effects,
        key: &RecordKey,
        ex: &Row_,
        writer: &RegionCode,
        holder: &RegionCode,
        why: &str,
    ) {
        let note = format!("cross-county move {writer} → {holder} already completed ({why}); late copy settled");
        fx.changes.record::<&str, _>(
            &format!("move settled {}", audit_subject(key)),
            &[],
            &[(MOVE_OUT, note.as_str())],
        );
        fx.feedback.push((
            writer.to_string(),
            Feedback::Resolved { key: key.clone(), field: "household".into(), value: ex.hh.clone(), note },
        ));
        tracing::info!(key = %key, from = %writer, to = %holder, "late copy of a completed move settled");
    }

    /// 县复审 for households waiting at `CountyReview`, in household-id order: validation, held
    /// duplicates, then the county ceiling and the township allocation.
    ///
    /// Everything it needs is read up front in a few batched queries (members of all candidate
    /// households, open duplicate-person conflicts, quota use); quota use is then counted in memory
    /// and written back once. The caller holds the writer lock, and on PostgreSQL the quota rows
    /// are also locked `FOR UPDATE`, so concurrent merges still never pass a ceiling.
    async fn reexamine(
        &self,
        tx: &mut Transaction<'static, Any>,
        hlc: &mut Hlc,
        households: Vec<String>,
        fx: &mut Effects,
    ) -> Result<(), HubError> {
        if households.is_empty() {
            return Ok(());
        }
        let mut members = std::mem::take(&mut fx.stored_members);
        let held = held_households(tx, fx).await?;
        let county_quota = self.county_quota();
        // Quota use is read (and on PostgreSQL locked) up front: the decisions below run while the
        // database writes the households decided before, so they may not query.
        let mut ledger = QuotaLedger::default();
        if let Some(q) = &county_quota {
            let mut scopes: BTreeSet<(String, Year)> = BTreeSet::new();
            for r in households.iter().filter_map(|k| fx.rows.get(k)) {
                scopes.insert((q.county.to_string(), r.key.year));
                if let Some(township) = township_of(r) {
                    scopes.insert((township.to_string(), r.key.year));
                }
            }
            for (scope, year) in scopes {
                ledger.used(tx, &self.db, &scope, year).await?;
            }
        }
        // This change set's live members by household (its own version of each wins).
        let mut own: HashMap<(Year, String), Vec<String>> = HashMap::default();
        for (k, r) in &fx.rows {
            if r.key.kind == RecordKind::Member && !r.deleted {
                own.entry((r.key.year, r.hh.clone())).or_default().push(k.clone());
            }
        }
        let mut cached = std::mem::take(&mut fx.member_records);
        let mut quota_news: BTreeMap<RegionCode, (u64, u64)> = BTreeMap::new();
        let hub_code = self.region().to_string();
        // Households are validated and decided in code order, a slice at a time, while the
        // slice decided before is written.
        let decide = |fx: &mut Effects, slice: &[String]| {
            for k in slice {
                let Some(hrow) = fx.rows.get(k) else { continue };
                let Some(township) = township_of(hrow) else { continue };
                if held.contains(&hrow.key.id) {
                    continue;
                }
                let year = hrow.key.year;
                let mut ms = members.remove(&(year, hrow.key.id.clone())).unwrap_or_default();
                if let Some(keys) = own.get(&(year, hrow.key.id.clone())) {
                    for mk in keys {
                        match cached.remove(mk) {
                            Some(m) => ms.push(Ok(m)),
                            None => ms.extend(fx.rows.get(mk).map(Row_::to_member)),
                        }
                    }
                }
                let verdict = match (validate_household(hrow, ms), &county_quota) {
                    (Ok(n), Some(q)) => ledger.admit(q, &township, year, n).map(|quota| {
                        quota_news.insert(township.clone(), quota);
                        n
                    }),
                    (v, _) => v,
                };
                let version = self.tick(hlc);
                record_decision(fx, k.clone(), &township, &hub_code, version, verdict.map(|_| ()));
            }
        };
        let rev = next_rev(tx).await?;
        write_while(tx, fx, RecordKind::Household, rev, households.chunks(DECIDE_SLICE), decide).await?;
        ledger.persist(tx).await?;
        // The township's quota as it stands after this change set.
        for (township, (people, used)) in quota_news {
            fx.feedback.push((township.to_string(), Feedback::Quota { township, people, used }));
        }
        Ok(())
    }

    /// The county's decision on poor villages (贫困村) waiting at `CountyReview`, in village-code
    /// order: admitted while the county's village ceiling (its quota, after signed 微调
    /// adjustments) has room, held as 不予认定 (over quota) beyond it. No ceiling without scale
    /// control. Counted like people: read once under the writer lock (FOR UPDATE on PostgreSQL).
    async fn reexamine_villages(
        &self,
        tx: &mut Transaction<'static, Any>,
        hlc: &mut Hlc,
        fx: &mut Effects,
    ) -> Result<(), HubError> {
        let mut candidates: Vec<String> = fx
            .dirty
            .iter()
            .filter(|k| {
                fx.rows.get(*k).is_some_and(|r| {
                    r.key.kind == RecordKind::Village
                        && !r.deleted
                        && r.field("status").and_then(Status::parse) == Some(Status::CountyReview)
                })
            })
            .cloned()
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        if candidates.is_empty() {
            return Ok(());
        }
        candidates.sort();
        let ceiling = fx.village_ceiling;
        let scope = format!("villages:{}", self.region());
        let mut ledger = QuotaLedger::default();
        let hub_code = self.region().to_string();
        for k in candidates {
            let Some(row) = fx.rows.get(&k) else { continue };
            let year = row.key.year;
            let Some(township) = RegionCode::parse(&row.key.id[..9.min(row.key.id.len())]).ok() else { continue };
            let verdict = match ceiling {
                None => Ok(()),
                Some(max) => {
                    let used = ledger.used(tx, &self.db, &scope, year).await?;
                    if used < max {
                        ledger.add(&scope, year, 1);
                        Ok(())
                    } else {
                        Err(format!(
                            "county {} village ceiling {max} poor villages, {used} already recognised",
                            self.region()
                        ))
                    }
                }
            };
            let verdict = verdict.map_err(|m| (RejectReason::OverQuota, m));
            let version = self.tick(hlc);
            record_decision(fx, k, &township, &hub_code, version, verdict);
        }
        ledger.persist(tx).await?;
        Ok(())
    }

    /// Adjustments accepted into a frozen year (its January window, or a reopening) carry into
    /// the next year, which New Year built as a copy of it: exits and refusals leave the next year
    /// (with their members), deaths are deleted there, births, moves and admitted new entries
    /// arrive there. A field the next year has already changed on its own keeps its own value
    /// (it is the newer record); the frozen year's signed snapshot is not touched. The next
    /// year's quota ledger follows the households that become, or stop being, recognised there.
    async fn carry_into_next_year(&self, tx: &mut Transaction<'static, Any>, fx: &mut Effects) -> Result<(), HubError> {
        if fx.carry_years.is_empty() {
            return Ok(());
        }
        let version = fx.move_version;
        let mut seen = HashSet::default();
        let mut sources: Vec<String> = fx
            .dirty
            .iter()
            .filter(|k| fx.rows.get(*k).is_some_and(|r| fx.carry_years.contains(&r.key.year)))
            .filter(|k| seen.insert((*k).clone()))
            .cloned()
            .collect();
        // A member's fate follows its household's: load the households not in this change set.
        let mut households: HashMap<String, Row_> = HashMap::default();
        let missing_hh: Vec<String> = sources
            .iter()
            .filter_map(|k| fx.rows.get(k))
            .filter(|r| r.key.kind == RecordKind::Member && !r.hh.is_empty())
            .map(|r| storage_key(&RecordKey::new(RecordKind::Household, r.key.year, r.hh.clone())))
            .filter(|k| !fx.rows.contains_key(k))
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        self.load_rows(tx, &missing_hh, &mut households).await?;
        let carried_household = |h: &Row_| {
            !h.deleted
                && !matches!(h.field("status").and_then(Status::parse), Some(Status::NotRecognised | Status::Exited))
        };
        // Households that arrive in the next year bring their members, also those sent earlier.
        let next_key = |r: &Row_| RecordKey { year: r.key.year + 1, ..r.key.clone() };
        let mut next: HashMap<String, Row_> = HashMap::default();
        let next_keys: Vec<String> =
            sources.iter().filter_map(|k| fx.rows.get(k)).map(|r| storage_key(&next_key(r))).collect();
        self.load_rows(tx, &next_keys, &mut next).await?;
        let live_next = |fx: &Effects, next: &HashMap<String, Row_>, nk: &str| -> Option<Row_> {
            fx.rows.get(nk).or_else(|| next.get(nk)).filter(|r| !r.deleted).cloned()
        };
        let arriving: Vec<(Year, String)> = sources
            .iter()
            .filter_map(|k| fx.rows.get(k))
            .filter(|r| r.key.kind == RecordKind::Household && carried_household(r))
            .filter(|r| live_next(fx, &next, &storage_key(&next_key(r))).is_none())
            .map(|r| (r.key.year, r.key.id.clone()))
            .collect();
        for (year, id) in &arriving {
            for r in sqlx::query(
                "SELECT k, region, hh, fields FROM records WHERE year = $1 AND kind = $2 AND hh = $3 AND deleted = 0",
            )
            .bind(*year as i64)
            .bind(RecordKind::Member.to_u8() as i64)
            .bind(id)
            .fetch_all(&mut **tx)
            .await?
            {
                let k: String = r.try_get(0)?;
                if seen.insert(k.clone()) {
                    let row = row_from(&k, r.try_get(1)?, r.try_get(2)?, &r.try_get::<String, _>(3)?, false)?;
                    let nk = storage_key(&next_key(&row));
                    fx.rows.insert(k.clone(), row);
                    self.load_rows(tx, &[nk], &mut next).await?;
                    sources.push(k);
                }
            }
        }
        // Households first, so members see their household's fate in this same pass.
        sources.sort_by_key(|k| fx.rows.get(k).map(|r| r.key.kind != RecordKind::Household));
        let quota = self.county_quota().is_some();
        let mut ledger: Vec<(String, Year, i64)> = Vec::new();
        let mut leaving: Vec<(Year, String)> = Vec::new();
        // Next-year records the carry removes, by township, sent down as `Removed`.
        let mut removed: BTreeMap<String, Vec<RecordKey>> = BTreeMap::new();
        for k in sources {
            let Some(src) = fx.rows.get(&k).cloned() else { continue };
            let nkey = next_key(&src);
            let nk = storage_key(&nkey);
            let carried = match src.key.kind {
                RecordKind::Household => carried_household(&src),
                RecordKind::Member => {
                    let hk = storage_key(&RecordKey::new(RecordKind::Household, src.key.year, src.hh.clone()));
                    !src.deleted && fx.rows.get(&hk).or_else(|| households.get(&hk)).is_some_and(carried_household)
                }
                RecordKind::Village => !src.deleted,
            };
            let existing = live_next(fx, &next, &nk);
            let was_recognised = existing.as_ref().is_some_and(crate::admin::is_recognised);
            let people = |r: &Row_| r.field("members").and_then(|m| m.parse::<i64>().ok()).unwrap_or(0);
            let township = src.region.get(..9).unwrap_or(&src.region).to_string();
            if !carried {
                let Some(mut gone) = existing else { continue };
                let old: Vec<(&str, &str)> = gone.fields.iter().map(|(n, f)| (n.as_str(), f.value())).collect();
                fx.changes.record::<_, &str>(&audit_subject(&nkey), &old, &[]);
                removed.entry(township.clone()).or_default().push(nkey.clone());
                if src.key.kind == RecordKind::Household {
                    leaving.push((nkey.year, nkey.id.clone()));
                    if quota && was_recognised {
                        ledger.push((township, nkey.year, -people(&gone)));
                    }
                }
                gone.deleted = true;
                fx.rows.insert(nk.clone(), gone);
                fx.dirty.push(nk);
                continue;
            }
            let before = fx.before.get(&k);
            let mut row = existing.unwrap_or_else(|| Row_ {
                key: nkey.clone(),
                region: src.region.clone(),
                hh: src.hh.clone(),
                fields: Fields::new(),
                deleted: false,
            });
            let mut old: Vec<(&str, Text)> = Vec::new();
            let mut new: Vec<(&str, &str)> = Vec::new();
            for (name, f) in &src.fields {
                let cur = row.fields.get(name).map(|c| c.0.as_str());
                if cur == Some(f.0.as_str()) {
                    continue;
                }
                // Changed in the next year since New Year: that newer value stands.
                let untouched = cur.is_none() || cur == before.and_then(|b| b.get(name)).map(|b| b.0.as_str());
                if !untouched {
                    continue;
                }
                new.push((name, &f.0));
                if let Some(prev) =
                    row.fields.insert(name.clone(), FieldState(f.0.clone(), f.1.max(version), f.2.clone()))
                {
                    old.push((name, prev.0));
                }
            }
            if new.is_empty() {
                continue;
            }
            fx.changes.record(&audit_subject(&nkey), &old, &new);
            // The township holds the next year as the county carried it: send the change down.
            let values: Vec<(String, String)> = new.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect();
            let newest = new.iter().filter_map(|(n, _)| row.fields.get(*n)).map(|f| f.1).max().unwrap_or(version);
            fx.corrections.push((township.clone(), Correction { key: nkey.clone(), values, version: Hlc(newest) }));
            match src.key.kind {
                RecordKind::Member => {
                    row.hh = row.field("household").unwrap_or_default().to_string();
                    row.region = row.field("village").unwrap_or(&row.region).to_string();
                }
                RecordKind::Household => {
                    let now_recognised = crate::admin::is_recognised(&row);
                    if quota && now_recognised != was_recognised {
                        let n = people(&row);
                        ledger.push((township, nkey.year, if now_recognised { n } else { -n }));
                    }
                }
                RecordKind::Village => {}
            }
            fx.rows.insert(nk.clone(), row);
            fx.dirty.push(nk);
        }
        // Members of households that left the next year leave with them.
        for (year, id) in leaving {
            for r in sqlx::query(
                "SELECT k, region, hh, fields FROM records WHERE year = $1 AND kind = $2 AND hh = $3 AND deleted = 0",
            )
            .bind(year as i64)
            .bind(RecordKind::Member.to_u8() as i64)
            .bind(&id)
            .fetch_all(&mut **tx)
            .await?
            {
                let k: String = r.try_get(0)?;
                if fx.rows.get(&k).is_some_and(|m| m.deleted || m.hh != id) {
                    continue;
                }
                let mut m = row_from(&k, r.try_get(1)?, r.try_get(2)?, &r.try_get::<String, _>(3)?, false)?;
                m.deleted = true;
                fx.changes.record::<_, &str>(&audit_subject(&m.key), &[("household", id.as_str())], &[]);
                removed.entry(m.region.get(..9).unwrap_or(&m.region).to_string()).or_default().push(m.key.clone());
                fx.rows.insert(k.clone(), m);
                fx.dirty.push(k);
            }
        }
        for (township, keys) in removed {
            fx.feedback.extend(removed_feedback(&township, &keys, Hlc(version)));
        }
        let county = self.region().to_string();
        for (township, year, n) in ledger {
            for scope in [county.as_str(), township.as_str()] {
                quota_used(tx, &self.db, scope, year).await?;
                quota_add(tx, scope, year, n).await?;
            }
        }
        Ok(())
    }

    /// The stored live members of each candidate household `(year, household id)`, parsed (or
    /// why not), leaving out the records this change set holds (the caller adds its own versions).
    async fn stored_members_of(
        &self,
        tx: &mut Transaction<'static, Any>,
        ops: &[Op],
        fx: &Effects,
    ) -> Result<HashMap<(Year, String), Vec<Result<Member, String>>>, HubError> {
        if self.region().tier() != Tier::County {
            return Ok(HashMap::default());
        }
        // Only a household this change set writes can come up for re-examination.
        // Each household once, however many of its ops the change set carries: a household
        // listed twice would have its members loaded twice, in whichever chunks it falls.
        let mut by_year: BTreeMap<Year, BTreeSet<&str>> = BTreeMap::new();
        for op in ops.iter().filter(|o| o.key().kind == RecordKind::Household) {
            by_year.entry(op.key().year).or_default().insert(op.key().id.as_str());
        }
        let mut out: HashMap<(Year, String), Vec<Result<Member, String>>> = HashMap::default();
        let sqlite = is_sqlite(tx);
        for (year, ids) in &by_year {
            let ids: Vec<&str> = ids.iter().copied().collect();
            for chunk in ids.chunks(5_000) {
                let sql = format!(
                    "SELECT k, region, hh, fields FROM records WHERE year = {year} AND kind = {} AND deleted = 0 AND hh IN ({})",
                    RecordKind::Member.to_u8(),
                    in_list(sqlite, chunk.len())
                );
                let mut q = sqlx::query(dynamic(sql));
                for id in chunk {
                    q = q.bind(id.to_string());
                }
                for r in q.fetch_all(&mut **tx).await? {
                    let k: String = r.try_get(0)?;
                    if fx.rows.contains_key(&k) {
                        continue; // this change set's version wins, added below
                    }
                    let row = row_from(&k, r.try_get(1)?, r.try_get(2)?, &r.try_get::<String, _>(3)?, false)?;
                    out.entry((*year, row.hh.clone())).or_default().push(row.to_member());
                }
            }
        }
        Ok(out)
    }

    /// The county's ceilings when scale control is on (no profile or a profile with
    /// `scale_control = false` → none).
    pub fn county_quota(&self) -> Option<CountyQuota> {
        if self.profile.as_ref().is_some_and(|p| !p.scale_control) {
            return None;
        }
        self.quotas.counties.iter().find(|q| &q.county == self.region()).cloned()
    }

    async fn flush_rows(&self, tx: &mut Transaction<'static, Any>, fx: &mut Effects) -> Result<(), HubError> {
        // Rows written early (see `apply_ops`) are skipped unless dirtied again since.
        let mut seen: HashSet<String> = HashSet::default();
        let dirty: Vec<String> = std::mem::take(&mut fx.dirty)
            .into_iter()
            .enumerate()
            .filter(|(i, k)| fx.written.get(k).is_none_or(|upto| i >= upto))
            .map(|(_, k)| k)
            .filter(|k| seen.insert(k.clone()))
            .collect();
        let rows: Vec<&Row_> = dirty.iter().filter_map(|k| fx.rows.get(k)).collect();
        write_rows(tx, &rows).await
    }

    async fn write_effects(
        &self,
        tx: &mut Transaction<'static, Any>,
        origin: &RegionCode,
        seq: u64,
        fx: &mut Effects,
    ) -> Result<(), HubError> {
        self.flush_rows(tx, fx).await?;
        let now = self.now_secs();
        let sqlite = is_sqlite(tx);
        for chunk in fx.quarantine.chunks(rows_per_statement(7)) {
            let sql = format!(
                "INSERT INTO quarantine (origin, seq, k, reason, message, payload, at) VALUES {}",
                placeholders(sqlite, chunk.len(), 7)
            );
            let mut q = sqlx::query(dynamic(sql));
            for (_, r, payload) in chunk {
                q = q
                    .bind(origin.to_string())
                    .bind(seq as i64)
                    .bind(storage_key(&r.key))
                    .bind(serde_json::to_string(&r.reason).unwrap_or_default())
                    .bind(r.message.clone())
                    .bind(payload.clone())
                    .bind(now);
            }
            q.execute(&mut **tx).await?;
        }
        for c in &fx.conflicts {
            sqlx::query(
                "INSERT INTO conflicts (kind, k, field, current_value, current_by, proposed_value, proposed_by, proposal, status, at) \
                 VALUES ($1,$2,$3,$4,$5,$6,$7,$8,'open',$9)",
            )
            .bind(c.kind)
            .bind(&c.k)
            .bind(&c.field)
            .bind(&c.current_value)
            .bind(&c.current_by)
            .bind(&c.proposed_value)
            .bind(&c.proposed_by)
            .bind(&c.proposal)
            .bind(now)
            .execute(&mut **tx)
            .await?;
        }
        for (id, resolution) in &fx.resolved {
            sqlx::query("UPDATE conflicts SET status = 'resolved', resolution = $1 WHERE id = $2")
                .bind(resolution)
                .bind(id)
                .execute(&mut **tx)
                .await?;
        }
        for m in &fx.completed_moves {
            sqlx::query(
                "INSERT INTO completed_moves (id, year, from_county, to_county, from_household, at) \
                 VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (id, year, from_county, to_county) \
                 DO UPDATE SET from_household = excluded.from_household, at = excluded.at",
            )
            .bind(&m.id)
            .bind(m.year as i64)
            .bind(&m.from_county)
            .bind(&m.to_county)
            .bind(&m.from_household)
            .bind(now)
            .execute(&mut **tx)
            .await?;
        }
        fx.feedback.extend(corrections_feedback(fx.corrections.drain(..)));
        push_feedback(tx, &fx.feedback).await
    }

    // ---------------------------------------------------------------- queries

    pub async fn sync_state(&self, sender: &Sender) -> Result<SyncState, HubError> {
        // Every query takes a pooled connection only for itself: a handler holding one while
        // waiting for another starves the pool when townships sync in the same minute.
        let r = sqlx::query("SELECT next_seq, last_hash FROM streams WHERE origin = $1")
            .bind(sender.region.to_string())
            .fetch_optional(&self.db.pool)
            .await?;
        let (expected_seq, last_hash) = match r {
            Some(r) => (get_i64(&r, 0) as u64, r.try_get(1)?),
            None => (1, hex::encode([0u8; 32])),
        };
        Ok(SyncState {
            origin: sender.region.clone(),
            expected_seq,
            last_hash,
            cycle: years::cycle_infos(&self.db, self.today(), self.profile.as_ref(), self.region(), &sender.region)
                .await?,
            hub_time: self.now_secs(),
        })
    }

    pub async fn feedback(&self, region: &RegionCode, since: u64) -> Result<FeedbackPage, HubError> {
        self.feedback_page(region, since, None).await
    }

    /// A page of feedback after `since`: at most 1,000 items and, when `max_bytes` is given, no
    /// more than that many bytes of items (one at least), so a slow line gets pages it can carry
    /// inside its timeout.
    pub async fn feedback_page(
        &self,
        region: &RegionCode,
        since: u64,
        max_bytes: Option<usize>,
    ) -> Result<FeedbackPage, HubError> {
        // Ids are positive i64: a `since` beyond them all is an empty page, not a wrap to negative.
        let after = i64::try_from(since).unwrap_or(i64::MAX);
        let rows = sqlx::query("SELECT id, item FROM feedback WHERE region = $1 AND id > $2 ORDER BY id LIMIT 1000")
            .bind(region.to_string())
            .bind(after)
            .fetch_all(&self.db.pool)
            .await?;
        let mut items = Vec::with_capacity(rows.len());
        let mut bytes = 0usize;
        for r in rows {
            let text: String = r.try_get(1)?;
            bytes += text.len();
            if max_bytes.is_some_and(|max| bytes > max) && !items.is_empty() {
                break;
            }
            let item: Feedback = serde_json::from_str(&text)
                .map_err(|e| HubError::new(ErrorCode::Internal, format!("stored feedback unreadable: {e}")))?;
            items.push(FeedbackEntry { id: get_i64(&r, 0) as u64, item });
        }
        let next = items.last().map(|e| e.id).unwrap_or(since);
        Ok(FeedbackPage { items, next })
    }

    /// Records of `scope` for `year` (live only), sorted by key.
    pub async fn records_in(&self, scope: &RegionCode, year: Year) -> Result<Vec<Row_>, HubError> {
        let (lo, hi) = range_of(scope);
        let rows = sqlx::query("SELECT k, region, hh, fields, deleted FROM records WHERE year = $1 AND region >= $2 AND region < $3 AND deleted = 0")
            .bind(year as i64)
            .bind(lo)
            .bind(hi)
            .fetch_all(&self.db.pool)
            .await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            let k: String = r.try_get(0)?;
            out.push(row_from(&k, r.try_get(1)?, r.try_get(2)?, &r.try_get::<String, _>(3)?, false)?);
        }
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    pub async fn digest(&self, scope: &RegionCode, year: Year) -> Result<DigestReport, HubError> {
        let rows = self.records_in(scope, year).await?;
        let mut set = SetDigest::default();
        let mut records = Vec::with_capacity(rows.len());
        for r in &rows {
            let d = record_digest(&r.to_record());
            set.add(&d);
            records.push((r.key.clone(), hex::encode(d)));
        }
        Ok(DigestReport { scope: scope.clone(), year, count: set.count, digest: set.hex(), records })
    }
}

// -------------------------------------------------------------------- helpers

impl Effects {
    /// Rows of `kind` dirtied since the last call (of any kind), each once, now marked as written
    /// with their current state. Anything that changes them later dirties them again, and the
    /// final flush writes them once more.
    fn unwritten(&mut self, kind: RecordKind) -> Vec<String> {
        let upto = self.dirty.len();
        let mut out = Vec::new();
        for k in &self.dirty[self.scanned..] {
            if self.rows.get(k).is_some_and(|r| r.key.kind == kind)
                && self.written.insert(k.clone(), upto) != Some(upto)
            {
                out.push(k.clone());
            }
        }
        self.scanned = upto;
        out
    }

    /// Households touched by this change set now waiting at county review, sorted by year and id.
    fn reexam_candidates(&self) -> Vec<String> {
        let mut seen: HashSet<(Year, &str)> = HashSet::default();
        let mut touched: Vec<(Year, &str)> = Vec::new();
        for r in self.dirty.iter().filter_map(|k| self.rows.get(k)) {
            let household = match r.key.kind {
                RecordKind::Household => (r.key.year, r.key.id.as_str()),
                RecordKind::Member => (r.key.year, r.hh.as_str()),
                RecordKind::Village => continue,
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

/// A household moved to another village of its township names the household it left
/// (`adjust move` on the node): it keeps that household's status, once.
pub const MOVED_FROM: &str = "moved_from";
/// Set by the county on the household a move left (a county field: no township writes it), so
/// its status is kept by one household only.
pub const STATUS_PASSED_TO: &str = "county.status_passed_to";

/// The authority checks of one op that need stored state (ARCHITECTURE.md, "Authority"): the
/// status transition ([`authority::check_status`]), the freeze of what the county decided (the
/// members of a decided household, the people its quota charge counts, change only in the
/// annual update), and a household
/// moved inside the township keeping its status. `household` finds a household row of the op's
/// year by id (this change set's version first; deleted ones too). `Ok(Some(k))`: the op is the
/// arrival of a household moved from the one stored under `k`.
fn check_authority<'r>(
    op: &Op,
    existing: Option<&Row_>,
    writer: &RegionCode,
    in_update: bool,
    household: impl Fn(&str) -> Option<&'r Row_>,
) -> Result<Option<String>, String> {
    let key = op.key();
    let tier = writer.tier();
    let status_of = |r: &Row_| r.field("status").and_then(Status::parse);
    let decided =
        |hh: &str| household(hh).filter(|r| !r.deleted).and_then(status_of).is_some_and(authority::is_decided);
    let changes = |fields: &[FieldWrite]| {
        fields.iter().any(|w| existing.and_then(|r| r.field(&w.name)) != Some(w.value.as_str()))
    };
    let frozen = tier == Tier::Township && !in_update;
    let refused = |what: &str, hh: &str| {
        Err(format!(
            "{what} household {hh}, which the county has decided: its members change only in the annual \
             update (动态调整)"
        ))
    };
    match op {
        Op::Delete { .. } => match (key.kind, existing) {
            (RecordKind::Member, Some(r))
                if frozen && decided(&r.hh) && RegionCode::parse(&r.region).is_ok_and(|v| writer.contains(&v)) =>
            {
                refused("a member of", &r.hh)
            }
            (RecordKind::Household, Some(_)) if frozen && decided(&key.id) => refused("deletes", &key.id),
            _ => Ok(None),
        },
        Op::Upsert { fields, .. } if key.kind == RecordKind::Member => {
            if frozen && changes(fields) {
                // A person held in another region's household is a duplicate for the county to
                // settle (below), not a change to that household.
                let own = existing.filter(|r| RegionCode::parse(&r.region).is_ok_and(|v| writer.contains(&v)));
                let new_hh = fields.iter().find(|w| w.name == "household").map(|w| w.value.as_str());
                if let Some(hh) = own.map(|r| r.hh.as_str()).into_iter().chain(new_hh).find(|hh| decided(hh)) {
                    return refused("a member of", hh);
                }
            }
            Ok(None)
        }
        Op::Upsert { fields, .. } => {
            let from = existing.and_then(status_of);
            let resized = fields
                .iter()
                .any(|w| w.name == "members" && existing.and_then(|r| r.field("members")) != Some(w.value.as_str()));
            if key.kind == RecordKind::Household && frozen && from.is_some_and(authority::is_decided) && resized {
                return refused("changes the size of", &key.id);
            }
            let Some(to) = fields.iter().find(|w| w.name == "status").and_then(|w| Status::parse(&w.value)) else {
                return Ok(None);
            };
            let Err(why) = authority::check_status(tier, from, to, in_update) else { return Ok(None) };
            let moved = fields.iter().find(|w| w.name == MOVED_FROM).map(|w| w.value.as_str());
            let left = moved.and_then(|m| household(m).map(|r| (m, r)));
            match left {
                Some((m, old))
                    if in_update
                        && from.is_none()
                        && key.kind == RecordKind::Household
                        && old.deleted
                        && old.field(STATUS_PASSED_TO).is_none()
                        && status_of(old) == Some(to)
                        && RegionCode::parse(&old.region).is_ok_and(|v| writer.contains(&v)) =>
                {
                    Ok(Some(key_of(RecordKind::Household, key.year, m)))
                }
                _ => Err(why),
            }
        }
    }
}

/// Writes the county's re-examination decision on one household or village: the decided fields
/// (also sent down to the township, see [`Effects::corrections`]), one line in the change set's
/// decision audit entry, and a Rejected item when the county refuses.
fn record_decision(
    fx: &mut Effects,
    k: String,
    township: &RegionCode,
    hub_code: &str,
    version: Hlc,
    verdict: Result<(), (RejectReason, String)>,
) {
    let Some(row) = fx.rows.get_mut(&k) else { return };
    let (status, decision, reason) = match &verdict {
        Ok(()) => (Status::CountyAnnounced, DECISION_ADMIT, String::new()),
        Err((r, m)) => (Status::NotRecognised, DECISION_REFUSE, bounded(format!("{}: {m}", r.label()))),
    };
    let decided =
        [("status", format!("{status:?}")), ("county.decision", decision.to_string()), ("county.reason", reason)];
    let mut old: Vec<(&str, Text)> = Vec::new();
    for (field, value) in &decided {
        if let Some(prev) =
            row.fields.insert((*field).into(), FieldState(value.as_str().into(), version.0, hub_code.into()))
        {
            old.push((field, prev.0));
        }
    }
    let new: Vec<(&str, &str)> = decided.iter().map(|(f, v)| (*f, v.as_str())).collect();
    fx.decisions.record(&audit_subject(&row.key), &old, &new);
    let values = decided.into_iter().map(|(f, v)| (f.to_string(), v)).collect();
    fx.corrections.push((township.to_string(), Correction { key: row.key.clone(), values, version }));
    if let Err((reason, message)) = verdict {
        let rej = Rejection { key: row.key.clone(), reason, message };
        fx.feedback.push((township.to_string(), Feedback::Rejected(rej.clone())));
        fx.rejected.push(rej);
    }
    fx.dirty.push(k);
}

/// Every record whose change the county refused outright, as the county holds it after this
/// change set, for `writer` to put in place of its own copy: a live record of the writer's own
/// region as `Restored`; one the county does not hold, or holds for another region (never sent
/// to this writer), as `Removed`.
fn restore_feedback(fx: &mut Effects, writer: &RegionCode) {
    let mut seen = HashSet::default();
    let keys: Vec<String> = std::mem::take(&mut fx.restore).into_iter().filter(|k| seen.insert(k.clone())).collect();
    let version = Hlc(fx.move_version);
    let (mut restored, mut removed) = (Vec::new(), Vec::new());
    for k in keys {
        let held = fx.rows.get(&k).filter(|r| !r.deleted);
        match held {
            Some(r) if RegionCode::parse(&r.region).is_ok_and(|g| writer.contains(&g)) => {
                let values = r.fields.iter().map(|(n, f)| (n.to_string(), f.0.to_string())).collect();
                restored.push(Correction { key: r.key.clone(), values, version });
            }
            _ => removed.extend(parse_storage_key(&k)),
        }
    }
    let to = writer.to_string();
    for chunk in restored.chunks(CORRECTIONS_PER_ITEM) {
        fx.feedback.push((to.clone(), Feedback::Restored { items: chunk.to_vec() }));
    }
    fx.feedback.extend(removed_feedback(&to, &removed, version));
}

/// `Removed` items for `to`, at most [`CORRECTIONS_PER_ITEM`] keys each.
fn removed_feedback(to: &str, keys: &[RecordKey], version: Hlc) -> Vec<(String, Feedback)> {
    keys.chunks(CORRECTIONS_PER_ITEM)
        .map(|c| (to.to_string(), Feedback::Removed { keys: c.to_vec(), version }))
        .collect()
}

/// A decision's reason as stored and forwarded: within the limit the tier above checks
/// ([`authority::MAX_DECISION_CHARS`]), cut at a character with "…" when a refusal lists many rules.
fn bounded(reason: String) -> String {
    let max = authority::MAX_DECISION_CHARS - 1;
    match reason.char_indices().nth(max) {
        Some((at, _)) => format!("{}…", &reason[..at]),
        None => reason,
    }
}

/// Feedback items carrying `corrections`, grouped by the township they go to, at most
/// [`CORRECTIONS_PER_ITEM`] records per item.
pub fn corrections_feedback(corrections: impl IntoIterator<Item = (String, Correction)>) -> Vec<(String, Feedback)> {
    let mut by_township: BTreeMap<String, Vec<Correction>> = BTreeMap::new();
    for (township, c) in corrections {
        by_township.entry(township).or_default().push(c);
    }
    let mut out = Vec::new();
    for (township, items) in by_township {
        for chunk in items.chunks(CORRECTIONS_PER_ITEM) {
            out.push((township.clone(), Feedback::Corrections { items: chunk.to_vec() }));
        }
    }
    out
}

pub fn cs_error(e: ChangeSetError) -> HubError {
    match e {
        ChangeSetError::TooLarge { .. } | ChangeSetError::BodyTooLarge { .. } => {
            HubError::new(ErrorCode::TooLarge, e.to_string())
        }
        ChangeSetError::BadSignature(_) | ChangeSetError::KeyMismatch { .. } => {
            HubError::new(ErrorCode::BadSignature, e.to_string())
        }
        _ => HubError::new(ErrorCode::Malformed, e.to_string()),
    }
}

fn op_versions(op: &Op) -> Vec<Hlc> {
    match op {
        Op::Upsert { fields, .. } => fields.iter().map(|f| f.version).collect(),
        Op::Delete { version, .. } => vec![*version],
    }
}

fn op_field<'a>(op: &'a Op, name: &str) -> Option<&'a str> {
    match op {
        Op::Upsert { fields, .. } => fields.iter().find(|f| f.name == name).map(|f| f.value.as_str()),
        Op::Delete { .. } => None,
    }
}

fn field_payload(key: &RecordKey, w: &FieldWrite) -> String {
    serde_json::to_string(&Op::Upsert { key: key.clone(), fields: vec![w.clone()] }).unwrap_or_default()
}

/// Audit subjects never carry a full ID number.
fn audit_subject(key: &RecordKey) -> String {
    key.to_string()
}

/// The township a household row belongs to (the first 9 digits of its village).
fn township_of(row: &Row_) -> Option<RegionCode> {
    RegionCode::parse(&row.region[..9.min(row.region.len())]).ok()
}

/// A household's re-examination: the people it brings, or why it is refused.
type Verdict = Result<u64, (RejectReason, String)>;

/// County re-examination of one household against its live members: the
/// number of people it would bring, or why it is refused.
fn validate_household(hrow: &Row_, members: Vec<Result<Member, String>>) -> Verdict {
    let members = members.into_iter().collect::<Result<Vec<_>, _>>();
    match members.and_then(|ms| Household::from_fields(hrow.key.year, |n| hrow.field(n), ms)) {
        Err(e) => Err((RejectReason::FailedValidation, e)),
        Ok(h) => {
            let v = h.validate();
            let count_ok = hrow.field("members").and_then(|m| m.parse::<usize>().ok()) == Some(h.members.len());
            if !v.is_empty() {
                Err((RejectReason::FailedValidation, v.iter().map(|x| x.to_string()).collect::<Vec<_>>().join("; ")))
            } else if !count_ok {
                Err((
                    RejectReason::FailedValidation,
                    format!(
                        "rule 3 (成员): household says {} members but {} member rows arrived",
                        hrow.field("members").unwrap_or("?"),
                        h.members.len()
                    ),
                ))
            } else {
                Ok(h.members.len() as u64)
            }
        }
    }
}

/// Per-record checks that need no other record: closed vocabularies and numbers. A full member
/// form is parsed as a [`Member`], which is returned for re-examination to reuse.
fn check_record(row: &Row_, _today: chrono::NaiveDate) -> Result<Option<Member>, String> {
    use jianka_shared::labels::*;
    let f = |n: &str| row.field(n);
    match row.key.kind {
        RecordKind::Member => {
            // A partial upsert of an existing member is fine; a new one needs the full form.
            if f("name").is_some() {
                return row.to_member().map(Some);
            }
        }
        RecordKind::Household => {
            if let Some(v) = f("attribute") {
                Attribute::parse(v).map_err(|e| e.to_string())?;
            }
            if let Some(v) = f("main_cause") {
                Cause::parse(v).map_err(|e| e.to_string())?;
            }
            for n in ["income", "income_per_capita"] {
                if let Some(v) = f(n) {
                    let y = jianka_shared::Yuan::parse(v).map_err(|e| format!("{n}: {e}"))?;
                    if y.fen() < 0 {
                        return Err(format!("rule 5 ({n}): income may not be negative"));
                    }
                }
            }
            if let Some(v) = f("status") {
                Status::parse(v).ok_or_else(|| format!("status {v:?} is not a workflow step"))?;
            }
        }
        RecordKind::Village => {
            for n in ["households", "population", "poor_households", "poor_population"] {
                if let Some(v) = f(n) {
                    v.parse::<u32>().map_err(|_| format!("{n} {v:?} is not a whole number"))?;
                }
            }
        }
    }
    Ok(None)
}

pub fn row_from(k: &str, region: String, hh: String, fields: &str, deleted: bool) -> Result<Row_, HubError> {
    let key = parse_storage_key(k)
        .ok_or_else(|| HubError::new(ErrorCode::Internal, format!("stored key {k:?} unreadable")))?;
    let fields: Fields = serde_json::from_str(fields)
        .map_err(|e| HubError::new(ErrorCode::Internal, format!("stored fields of {key} unreadable: {e}")))?;
    Ok(Row_ { key, region, hh, fields, deleted })
}

/// `[lo, hi)` of region codes under `scope` (digits sort below ':').
pub fn range_of(scope: &RegionCode) -> (String, String) {
    (scope.to_string(), format!("{scope}:"))
}

pub async fn write_rows(tx: &mut Transaction<'static, Any>, rows: &[&Row_]) -> Result<(), HubError> {
    if rows.is_empty() {
        return Ok(());
    }
    let rev = next_rev(tx).await?;
    let sqlite = is_sqlite(tx);
    execute_pipelined(tx, rows.chunks(PIPELINE_ROWS).map(|chunk| records_insert(sqlite, chunk, rev))).await?;
    Ok(())
}

/// Runs `step` on each of `steps` while the database writes the rows of `kind` that the steps
/// before dirtied: each statement is handed to the database (SQLite's worker thread or the
/// PostgreSQL server), the next step runs on this thread meanwhile, then the statement is
/// awaited. Rows written here are marked (see [`Effects::unwritten`]) so the final flush writes
/// them again only if they change later.
async fn write_while<S>(
    tx: &mut Transaction<'static, Any>,
    fx: &mut Effects,
    kind: RecordKind,
    rev: i64,
    mut steps: impl ExactSizeIterator<Item = S>,
    mut step: impl FnMut(&mut Effects, S),
) -> Result<(), HubError> {
    let sqlite = is_sqlite(tx);
    if let Some(first) = steps.next() {
        step(fx, first);
    }
    loop {
        let ready = fx.unwritten(kind);
        if ready.is_empty() {
            match steps.next() {
                Some(next) => {
                    step(fx, next);
                    continue;
                }
                None => return Ok(()),
            }
        }
        let query = {
            let rows: Vec<&Row_> = ready.iter().filter_map(|k| fx.rows.get(k)).collect();
            records_insert(sqlite, &rows, rev)
        };
        while_running(query.execute(&mut **tx), || {
            if let Some(next) = steps.next() {
                step(fx, next);
            }
        })
        .await?;
    }
}

/// The revision the next written rows get (forwarding reads rows by revision).
async fn next_rev(tx: &mut Transaction<'static, Any>) -> Result<i64, HubError> {
    let r = sqlx::query("SELECT COALESCE(MAX(rev), 0) FROM records").fetch_one(&mut **tx).await?;
    Ok(get_i64(&r, 0) + 1)
}

/// One multi-row upsert of `rows` into `records` at revision `rev`.
fn records_insert<'q>(sqlite: bool, rows: &[&Row_], rev: i64) -> sqlx::query::Query<'q, Any, sqlx::any::AnyArguments> {
    let sql = format!(
        "INSERT INTO records (k, kind, year, id, region, hh, fields, deleted, rev) VALUES {} \
         ON CONFLICT (k) DO UPDATE SET region = excluded.region, hh = excluded.hh, fields = excluded.fields, \
         deleted = excluded.deleted, rev = excluded.rev",
        placeholders(sqlite, rows.len(), 9)
    );
    let mut q = sqlx::query(dynamic(sql));
    for r in rows {
        q = q
            .bind(storage_key(&r.key))
            .bind(r.key.kind.to_u8() as i64)
            .bind(r.key.year as i64)
            .bind(r.key.id.clone())
            .bind(r.region.clone())
            .bind(r.hh.clone())
            .bind(fields_json(&r.fields))
            .bind(r.deleted as i64)
            .bind(rev);
    }
    q
}

/// Rows per statement when statements are pipelined (see [`execute_pipelined`]): small enough that
/// building the first one costs little, large enough that round trips stay few.
const PIPELINE_ROWS: usize = 500;

pub async fn push_feedback(tx: &mut Transaction<'static, Any>, items: &[(String, Feedback)]) -> Result<(), HubError> {
    let sqlite = is_sqlite(tx);
    let build = |chunk: &[(String, Feedback)]| {
        let sql = format!("INSERT INTO feedback (region, item) VALUES {}", placeholders(sqlite, chunk.len(), 2));
        let mut q = sqlx::query(dynamic(sql));
        for (region, item) in chunk {
            q = q.bind(region.clone()).bind(serde_json::to_string(item).expect("in-memory encoding"));
        }
        q
    };
    execute_pipelined(tx, items.chunks(PIPELINE_ROWS * 4).map(build)).await?;
    Ok(())
}

async fn stream_state(tx: &mut Transaction<'static, Any>, origin: &str) -> Result<(u64, String), HubError> {
    let r = sqlx::query("SELECT next_seq, last_hash FROM streams WHERE origin = $1")
        .bind(origin)
        .fetch_optional(&mut **tx)
        .await?;
    Ok(match r {
        Some(r) => (get_i64(&r, 0) as u64, r.try_get(1)?),
        None => (1, hex::encode([0u8; 32])),
    })
}

/// A member field a departing township sets to the 6-digit county the person moves to (跨县迁出):
/// the province then completes the move when that county's arrival comes, keeping the person
/// where they are until it does.
pub const MOVE_OUT: &str = "move_out";

/// A cross-county arrival held at the province until the departure side catches up.
struct PendingMove {
    conflict: Option<i64>,
    to: RegionCode,
    household: String,
    proposal: Op,
}

/// A cross-county move the province completed (table `completed_moves`).
struct CompletedMove {
    id: String,
    year: Year,
    from_county: String,
    to_county: String,
    from_household: String,
}

/// Whether a member copy from `writer` for a person `holder` now holds is a settled move rather
/// than a new one, and why: the copy itself names `holder` in `move_out`, or it is a stale copy
/// (the household the person left) of a move from `writer` to `holder` completed this year or
/// the year before (a New Year carry).
fn settled_move(
    fx: &Effects,
    completed: &HashMap<String, Vec<CompletedMove>>,
    key: &RecordKey,
    writer: &RegionCode,
    holder: &RegionCode,
    move_out: Option<&str>,
    household: &str,
) -> Option<&'static str> {
    if move_out == Some(holder.as_str()) {
        return Some("the copy names the county in move_out");
    }
    let same = |m: &CompletedMove| {
        (m.year == key.year || m.year + 1 == key.year)
            && m.from_county == writer.as_str()
            && m.to_county == holder.as_str()
            && m.from_household == household
    };
    if fx.completed_moves.iter().any(|m| m.id == key.id && same(m)) {
        return Some("stale copy");
    }
    // The latest completed move of this person up to this year decides (a later genuine return
    // is a newer move).
    let latest = completed.get(&key.id).and_then(|ms| ms.iter().find(|m| m.year <= key.year));
    latest.filter(|m| same(m)).map(|_| "stale copy")
}

/// Moves the province completed earlier for the people in `ops`, by person id, latest first.
async fn completed_moves_of(
    tx: &mut Transaction<'static, Any>,
    ops: &[Op],
) -> Result<HashMap<String, Vec<CompletedMove>>, HubError> {
    let ids: Vec<&str> = {
        let mut seen = HashSet::default();
        ops.iter()
            .map(Op::key)
            .filter(|k| k.kind == RecordKind::Member && seen.insert(k.id.as_str()))
            .map(|k| k.id.as_str())
            .collect()
    };
    let sqlite = is_sqlite(tx);
    let mut out: HashMap<String, Vec<CompletedMove>> = HashMap::default();
    for chunk in ids.chunks(5_000) {
        let sql = format!(
            "SELECT id, year, from_county, to_county, from_household FROM completed_moves WHERE id IN ({}) \
             ORDER BY id, year DESC, at DESC",
            in_list(sqlite, chunk.len())
        );
        let mut q = sqlx::query(dynamic(sql));
        for id in chunk {
            q = q.bind(id.to_string());
        }
        for r in q.fetch_all(&mut **tx).await? {
            let m = CompletedMove {
                id: r.try_get(0)?,
                year: Year::try_from(get_i64(&r, 1)).unwrap_or_default(),
                from_county: r.try_get(2)?,
                to_county: r.try_get(3)?,
                from_household: r.try_get(4)?,
            };
            out.entry(m.id.clone()).or_default().push(m);
        }
    }
    Ok(out)
}

/// What merging a change set reads from the database, loaded before the merge starts (the merge
/// itself runs while the database writes, so it may not query).
struct MergeContext {
    today: chrono::NaiveDate,
    writer_code: Text,
    /// Each year's state and the regions it is reopened for.
    states: HashMap<Year, (YearState, Vec<RegionCode>)>,
    moves: HashMap<String, PendingMove>,
    completed: HashMap<String, Vec<CompletedMove>>,
    /// Stored households that members in this change set belong to or join, and households
    /// that moved households name, when the change set does not carry them itself.
    households: HashMap<String, Row_>,
}

/// Year states read before an ingest's transaction (see [`Hub::year_states`]).
#[derive(Default)]
struct YearStates {
    states: HashMap<Year, (YearState, Vec<RegionCode>)>,
    carry: HashSet<Year>,
    village_ceiling: Option<u64>,
}

/// Ops merged per step while the previous step's member rows are written.
const MERGE_SLICE: usize = 1_000;

/// Households validated and decided per step while the step before is written.
const DECIDE_SLICE: usize = 500;

/// Open cross-county moves for the members this change set touches.
async fn pending_moves(
    tx: &mut Transaction<'static, Any>,
    ops: &[Op],
) -> Result<HashMap<String, PendingMove>, HubError> {
    let keys: HashSet<String> =
        ops.iter().filter(|o| o.key().kind == RecordKind::Member).map(|o| storage_key(o.key())).collect();
    let mut out = HashMap::default();
    if keys.is_empty() {
        return Ok(out);
    }
    // Open moves are few; read them all rather than bind thousands of keys.
    let rows = sqlx::query(
        "SELECT id, k, proposed_by, proposed_value, proposal FROM conflicts WHERE status = 'open' AND kind = 'move' ORDER BY id",
    )
    .fetch_all(&mut **tx)
    .await?;
    for r in rows {
        let k: String = r.try_get(1)?;
        if !keys.contains(&k) || out.contains_key(&k) {
            continue;
        }
        let to = RegionCode::parse(&r.try_get::<String, _>(2)?)
            .map_err(|e| HubError::new(ErrorCode::Internal, format!("stored move unreadable: {e}")))?;
        let proposal: Op = serde_json::from_str(&r.try_get::<String, _>(4)?)
            .map_err(|e| HubError::new(ErrorCode::Internal, format!("stored move proposal unreadable: {e}")))?;
        out.insert(k, PendingMove { conflict: Some(r.try_get(0)?), to, household: r.try_get(3)?, proposal });
    }
    Ok(out)
}

/// Households that an open duplicate-person conflict keeps waiting: one proposed for them or
/// held away from them (stored, or raised by this very change set).
async fn held_households(tx: &mut Transaction<'static, Any>, fx: &Effects) -> Result<HashSet<String>, HubError> {
    let rows = sqlx::query(
        "SELECT proposed_value, current_value FROM conflicts WHERE status = 'open' AND kind = 'duplicate_person'",
    )
    .fetch_all(&mut **tx)
    .await?;
    let mut held = HashSet::default();
    for r in rows {
        held.insert(r.try_get::<String, _>(0)?);
        held.insert(r.try_get::<String, _>(1)?);
    }
    for c in fx.conflicts.iter().filter(|c| c.kind == "duplicate_person") {
        held.insert(c.proposed_value.clone());
        held.insert(c.current_value.clone());
    }
    Ok(held)
}

/// Quota use counted in memory during one transaction: each scope's stored figure is read (and
/// on PostgreSQL locked) once, admissions are added in memory, and the sums written back once.
#[derive(Default)]
struct QuotaLedger {
    scopes: BTreeMap<(String, Year), (u64, u64)>,
}

impl QuotaLedger {
    async fn used(
        &mut self,
        tx: &mut Transaction<'static, Any>,
        db: &Db,
        scope: &str,
        year: Year,
    ) -> Result<u64, HubError> {
        let key = (scope.to_string(), year);
        if let Some((stored, added)) = self.scopes.get(&key) {
            return Ok(stored + added);
        }
        let stored = quota_used(tx, db, scope, year).await?;
        self.scopes.insert(key, (stored, 0));
        Ok(stored)
    }

    /// Admits `n` people of `township` under the county's ceiling and the township's allocation,
    /// both read before with [`QuotaLedger::used`]: the township's allocation and use after, or
    /// why not. A scope not read is refused rather than counted from zero, so a ceiling can never
    /// be passed by a missed read.
    fn admit(
        &mut self,
        q: &CountyQuota,
        township: &RegionCode,
        year: Year,
        n: u64,
    ) -> Result<(u64, u64), (RejectReason, String)> {
        let (Some(county_used), Some(town_used)) =
            (self.cached(q.county.as_str(), year), self.cached(township.as_str(), year))
        else {
            return Err((RejectReason::OverQuota, format!("quota use of {township} for {year} was not read")));
        };
        let town_alloc = q.townships.get(township).copied();
        if county_used + n > q.people {
            return Err((
                RejectReason::OverQuota,
                format!(
                    "county {} ceiling {} people, {county_used} already recognised; this household has {n}",
                    q.county, q.people
                ),
            ));
        }
        if let Some(a) = town_alloc.filter(|a| town_used + n > *a) {
            return Err((
                RejectReason::OverQuota,
                format!(
                    "township {township} allocation {a} people, {town_used} already recognised; this household has {n}"
                ),
            ));
        }
        self.add(q.county.as_str(), year, n);
        self.add(township.as_str(), year, n);
        Ok((town_alloc.unwrap_or(q.people), town_used + n))
    }

    /// Use of a scope already read with [`QuotaLedger::used`]; `None` for one never read.
    fn cached(&self, scope: &str, year: Year) -> Option<u64> {
        self.scopes.get(&(scope.to_string(), year)).map(|(stored, added)| stored + added)
    }

    fn add(&mut self, scope: &str, year: Year, n: u64) {
        if let Some(e) = self.scopes.get_mut(&(scope.to_string(), year)) {
            e.1 += n;
        }
    }

    async fn persist(self, tx: &mut Transaction<'static, Any>) -> Result<(), HubError> {
        for ((scope, year), (_, added)) in self.scopes {
            if added > 0 {
                quota_add(tx, &scope, year, added as i64).await?;
            }
        }
        Ok(())
    }
}

pub async fn quota_used(tx: &mut Transaction<'static, Any>, db: &Db, scope: &str, year: Year) -> Result<u64, HubError> {
    sqlx::query("INSERT INTO quota_use (scope, year, people) VALUES ($1, $2, 0) ON CONFLICT (scope, year) DO NOTHING")
        .bind(scope)
        .bind(year as i64)
        .execute(&mut **tx)
        .await?;
    let sql = db.dialect.lock_quota_sql().unwrap_or("SELECT people FROM quota_use WHERE scope = $1 AND year = $2");
    let r = sqlx::query(sql).bind(scope).bind(year as i64).fetch_one(&mut **tx).await?;
    Ok(get_i64(&r, 0).max(0) as u64)
}

pub async fn quota_add(tx: &mut Transaction<'static, Any>, scope: &str, year: Year, n: i64) -> Result<(), HubError> {
    sqlx::query("UPDATE quota_use SET people = people + $1 WHERE scope = $2 AND year = $3")
        .bind(n)
        .bind(scope)
        .bind(year as i64)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// The hand-written encoding is byte for byte what serde_json writes for the same fields
        /// as a JSON object (the stored form since the first release), and reads back.
        #[test]
        fn fields_json_is_serde_json(
            fields in proptest::collection::btree_map("\\PC{0,12}|[\"\\\\\u{0}-\u{1f}\u{7f}a-z]{0,8}", ("\\PC{0,16}|[\"\\\\\u{0}-\u{1f}é中]{0,8}", any::<u64>(), "[0-9]{2,12}"), 0..20)
        ) {
            let fields: Fields = fields
                .into_iter()
                .map(|(name, (value, version, writer))| (Text::from(name), FieldState(value.into(), version, writer.into())))
                .collect();
            let text = fields_json(&fields);
            let as_object: BTreeMap<&str, &FieldState> = fields.iter().map(|(n, f)| (n.as_str(), f)).collect();
            prop_assert_eq!(&text, &serde_json::to_string(&as_object).unwrap());
            let back: Fields = serde_json::from_str(&text).unwrap();
            prop_assert_eq!(back, fields);
        }

        #[test]
        fn storage_keys_round_trip(kind in 0u8..3, year in any::<u16>(), id in "[0-9A-Za-z-]{0,24}") {
            let key = RecordKey::new(RecordKind::from_u8(kind).unwrap(), year, id);
            let k = storage_key(&key);
            prop_assert_eq!(&k, &format!("{}/{}/{}", kind, year, key.id));
            prop_assert_eq!(parse_storage_key(&k), Some(key));
        }
    }
}
