//! The replica and its change capture. Every local write goes through [`Capture`], which writes the
//! record and appends its change to the outbox in the caller's transaction: no write without its
//! change, no change without its write. Values that arrive from the county
//! ([`apply_remote`]) touch the replica only.

use crate::clock::Clock;
use crate::db;
use anyhow::{Context, Result};
use jianka_shared::changeset::{FieldWrite, Op};
use jianka_shared::protocol::YearState;
use jianka_shared::record::{Record, RecordKey, RecordKind};
use jianka_shared::{Hlc, RegionCode, Year};
use rusqlite::{Connection, OptionalExtension, params};
use std::collections::{BTreeMap, HashSet};

/// Field name → (value, version).
pub type Versioned = BTreeMap<String, (String, Hlc)>;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    pub fields: Versioned,
    pub deleted: bool,
    pub deleted_version: Hlc,
}

impl Stored {
    pub fn values(&self) -> BTreeMap<String, String> {
        self.fields.iter().map(|(k, (v, _))| (k.clone(), v.clone())).collect()
    }

    pub fn get(&self, field: &str) -> Option<&str> {
        self.fields.get(field).map(|(v, _)| v.as_str())
    }
}

/// Why a local write was refused.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error(
        "year {year} is locked (update window closed); an edit needs a reopening granted by {reopen_by}, for a stated reason"
    )]
    YearLocked { year: Year, reopen_by: String },
    #[error("{key} is outside township {township}; this node serves only its own township")]
    OutsideTownship { key: String, township: RegionCode },
}

fn encode(fields: &Versioned) -> String {
    let m: BTreeMap<&str, (&str, u64)> = fields.iter().map(|(k, (v, h))| (k.as_str(), (v.as_str(), h.0))).collect();
    serde_json::to_string(&m).expect("in-memory encoding")
}

fn decode(s: &str) -> Result<Versioned> {
    let m: BTreeMap<String, (String, u64)> = serde_json::from_str(s).context("corrupt record data in the replica")?;
    Ok(m.into_iter().map(|(k, (v, h))| (k, (v, Hlc(h)))).collect())
}

pub fn load(conn: &Connection, key: &RecordKey) -> Result<Option<Stored>> {
    let row = conn
        .prepare_cached("SELECT data, deleted, deleted_version FROM records WHERE kind = ?1 AND year = ?2 AND id = ?3")?
        .query_row(params![key.kind.as_str(), key.year, key.id], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, bool>(1)?, r.get::<_, i64>(2)?))
        })
        .optional()?;
    row.map(|(d, deleted, dv)| Ok(Stored { fields: decode(&d)?, deleted, deleted_version: Hlc(dv as u64) })).transpose()
}

/// Live (not deleted) records of a kind and year, as plain records, sorted by id.
pub fn records(conn: &Connection, kind: RecordKind, year: Year) -> Result<Vec<Record>> {
    let mut stmt =
        conn.prepare_cached("SELECT id, data FROM records WHERE kind = ?1 AND year = ?2 AND deleted = 0 ORDER BY id")?;
    let rows =
        stmt.query_map(params![kind.as_str(), year], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
    let mut out = Vec::new();
    for row in rows {
        let (id, data) = row?;
        let fields = decode(&data)?.into_iter().map(|(k, (v, _))| (k, v)).collect();
        out.push(Record { key: RecordKey::new(kind, year, id), fields });
    }
    Ok(out)
}

/// Live member records of a household.
pub fn members_of(conn: &Connection, year: Year, household: &str) -> Result<Vec<Record>> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, data FROM records WHERE year = ?1 AND household = ?2 AND kind = 'member' AND deleted = 0 ORDER BY id",
    )?;
    let rows = stmt.query_map(params![year, household], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
    let mut out = Vec::new();
    for row in rows {
        let (id, data) = row?;
        let fields = decode(&data)?.into_iter().map(|(k, (v, _))| (k, v)).collect();
        out.push(Record { key: RecordKey::new(RecordKind::Member, year, id), fields });
    }
    Ok(out)
}

/// The household a live member belongs to, if any (the person's one household, rule 2).
pub fn member_household(conn: &Connection, year: Year, id_number: &str) -> Result<Option<String>> {
    Ok(conn
        .prepare_cached(
            "SELECT household FROM records WHERE kind = 'member' AND year = ?1 AND id = ?2 AND deleted = 0",
        )?
        .query_row(params![year, id_number], |r| r.get::<_, Option<String>>(0))
        .optional()?
        .flatten())
}

/// Every year the replica holds records for.
pub fn years(conn: &Connection) -> Result<Vec<Year>> {
    let mut stmt = conn.prepare("SELECT DISTINCT year FROM records ORDER BY year")?;
    let ys = stmt.query_map([], |r| r.get::<_, i64>(0))?.collect::<Result<Vec<_>, _>>()?;
    Ok(ys.into_iter().map(|y| y as Year).collect())
}

fn save(conn: &Connection, key: &RecordKey, s: &Stored) -> Result<()> {
    let household = (key.kind == RecordKind::Member).then(|| s.get("household").unwrap_or("").to_string());
    conn.prepare_cached(
        "INSERT INTO records(kind, year, id, data, deleted, deleted_version, household) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7)
         ON CONFLICT(kind, year, id) DO UPDATE SET data = excluded.data, deleted = excluded.deleted,
           deleted_version = excluded.deleted_version, household = excluded.household",
    )?
    .execute(params![
        key.kind.as_str(),
        key.year,
        key.id,
        encode(&s.fields),
        s.deleted,
        s.deleted_version.0 as i64,
        household
    ])?;
    Ok(())
}

/// State of a year as last told by the county (`Open` when never told).
pub fn year_state(conn: &Connection, year: Year) -> Result<(YearState, Option<String>, Option<String>)> {
    let row = conn
        .query_row("SELECT state, deadline, reopen_by FROM cycle WHERE year = ?1", [year], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, Option<String>>(1)?, r.get::<_, Option<String>>(2)?))
        })
        .optional()?;
    Ok(match row {
        Some((s, d, r)) => (serde_json::from_value(serde_json::Value::String(s)).unwrap_or(YearState::Open), d, r),
        None => (YearState::Open, None, None),
    })
}

/// The state that governs writes on `today`: an update window whose deadline has passed counts
/// as locked, as the hub computes it at merge time, so a node offline past the deadline refuses
/// the edit itself instead of queueing one the county is bound to refuse.
pub fn effective_year_state(
    conn: &Connection,
    year: Year,
    today: chrono::NaiveDate,
) -> Result<(YearState, Option<String>, Option<String>)> {
    let (state, deadline, reopen_by) = year_state(conn, year)?;
    let past_deadline = deadline
        .as_deref()
        .and_then(|d| chrono::NaiveDate::parse_from_str(d.get(..10).unwrap_or(d), "%Y-%m-%d").ok())
        .is_some_and(|d| today > d);
    // A window or a reopening past its last day is locked, as the county enforces it.
    if matches!(state, YearState::UpdateWindow | YearState::Reopened) && past_deadline {
        return Ok((YearState::Locked, deadline, reopen_by));
    }
    Ok((state, deadline, reopen_by))
}

/// Writes local edits and their outbox entries. Create one per transaction and call
/// [`Capture::finish`] before committing (it persists the clock).
pub struct Capture {
    township: RegionCode,
    hlc: Hlc,
    clock: Clock,
    year_ok: HashSet<Year>,
    pub changes: usize,
}

pub fn load_hlc(conn: &Connection) -> Result<Hlc> {
    Ok(Hlc(db::get_meta(conn, "hlc")?.and_then(|s| s.parse().ok()).unwrap_or(0)))
}

impl Capture {
    pub fn begin(conn: &Connection, township: &RegionCode, clock: Clock) -> Result<Capture> {
        Ok(Capture { township: township.clone(), hlc: load_hlc(conn)?, clock, year_ok: HashSet::new(), changes: 0 })
    }

    fn tick(&mut self) -> Hlc {
        self.hlc = self.hlc.tick(self.clock.millis());
        self.hlc
    }

    fn guard(&mut self, conn: &Connection, key: &RecordKey, village: Option<&str>) -> Result<()> {
        let region = match key.kind {
            RecordKind::Household | RecordKind::Village | RecordKind::Assistance => key.id.get(..12).unwrap_or(&key.id),
            RecordKind::Member => village.unwrap_or(""),
        };
        if !region.starts_with(self.township.as_str()) {
            return Err(WriteError::OutsideTownship { key: key.to_string(), township: self.township.clone() }.into());
        }
        if !self.year_ok.contains(&key.year) {
            let (state, _, reopen_by) = effective_year_state(conn, key.year, self.clock.today())?;
            if state == YearState::Locked {
                return Err(WriteError::YearLocked {
                    year: key.year,
                    reopen_by: reopen_by.unwrap_or_else(|| format!("the county ({})", county_of(&self.township))),
                }
                .into());
            }
            self.year_ok.insert(key.year);
        }
        Ok(())
    }

    /// Sets the given fields (others are left as they are). Only values that differ are written
    /// and captured, so re-entering the same data changes nothing. Returns the fields written.
    pub fn upsert(&mut self, conn: &Connection, key: &RecordKey, values: &BTreeMap<String, String>) -> Result<usize> {
        let village = values.get("village").map(String::as_str);
        let existing = load(conn, key)?;
        let village = village.or_else(|| existing.as_ref().and_then(|s| s.get("village"))).map(str::to_string);
        self.guard(conn, key, village.as_deref())?;
        let mut stored =
            existing.unwrap_or(Stored { fields: BTreeMap::new(), deleted: false, deleted_version: Hlc::ZERO });
        let revive = stored.deleted;
        let changed: Vec<(&String, &String)> =
            values.iter().filter(|(k, v)| revive || stored.fields.get(*k).is_none_or(|(old, _)| old != *v)).collect();
        if changed.is_empty() {
            return Ok(0);
        }
        let version = self.tick();
        let mut writes = Vec::with_capacity(changed.len());
        for (name, value) in changed {
            let base = stored.fields.get(name).map(|(_, h)| *h).unwrap_or(Hlc::ZERO);
            // A revived record starts over from the tombstone.
            let base = if revive { stored.deleted_version.max(base) } else { base };
            writes.push(FieldWrite { name: name.as_str().into(), value: value.as_str().into(), version, base });
            stored.fields.insert(name.clone(), (value.clone(), version));
        }
        if revive {
            stored.fields.retain(|k, _| values.contains_key(k));
            stored.deleted = false;
        }
        save(conn, key, &stored)?;
        let n = writes.len();
        self.append(conn, key.year, &Op::Upsert { key: key.clone(), fields: writes })?;
        Ok(n)
    }

    /// Deletes a record, keeping a tombstone so the delete syncs like any change.
    pub fn delete(&mut self, conn: &Connection, key: &RecordKey) -> Result<bool> {
        let Some(mut stored) = load(conn, key)?.filter(|s| !s.deleted) else {
            return Ok(false);
        };
        let village = stored.get("village").map(str::to_string);
        self.guard(conn, key, village.as_deref())?;
        let base = stored.fields.values().map(|(_, h)| *h).max().unwrap_or(Hlc::ZERO);
        let version = self.tick();
        stored.deleted = true;
        stored.deleted_version = version;
        save(conn, key, &stored)?;
        self.append(conn, key.year, &Op::Delete { key: key.clone(), version, base })?;
        Ok(true)
    }

    fn append(&mut self, conn: &Connection, year: Year, op: &Op) -> Result<()> {
        conn.prepare_cached("INSERT INTO changes(year, op, created_ms) VALUES(?1, ?2, ?3)")?.execute(params![
            year,
            serde_json::to_string(op).expect("in-memory encoding"),
            self.clock.millis() as i64
        ])?;
        self.changes += 1;
        Ok(())
    }

    /// Persists the clock. Call inside the transaction, before commit.
    pub fn finish(self, conn: &Connection) -> Result<usize> {
        db::set_meta(conn, "hlc", &self.hlc.0.to_string())?;
        Ok(self.changes)
    }
}

/// Applies a value decided upstream (a county correction or a settled conflict) to the replica,
/// without an outbox entry: the hub already has it. Older values than the local one are ignored
/// unless the field belongs to a higher tier, whose word is final.
pub fn apply_remote(conn: &Connection, key: &RecordKey, field: &str, value: &str, version: Hlc) -> Result<bool> {
    let mut stored =
        load(conn, key)?.unwrap_or(Stored { fields: BTreeMap::new(), deleted: false, deleted_version: Hlc::ZERO });
    let upstream = jianka_shared::record::field_owner(field) != jianka_shared::Tier::Township;
    let newer = stored.fields.get(field).is_none_or(|(_, v)| version >= *v);
    if !(upstream || newer) {
        return Ok(false);
    }
    stored.fields.insert(field.to_string(), (value.to_string(), version));
    save(conn, key, &stored)?;
    // Our clock moves past what we saw, so later local edits are based on, and newer than, it.
    let hlc = load_hlc(conn)?;
    if version > hlc {
        db::set_meta(conn, "hlc", &version.0.to_string())?;
    }
    Ok(true)
}

/// Replaces a record with the county's copy (it refused the change this node made): every field
/// at `version`, live, without an outbox entry — the hub already holds exactly this. A field
/// edited here after the county answered (a version above `version`) stays: that edit is still
/// on its way up.
pub fn replace_remote(conn: &Connection, key: &RecordKey, values: &[(String, String)], version: Hlc) -> Result<()> {
    let mut fields: BTreeMap<String, (String, Hlc)> =
        values.iter().map(|(k, v)| (k.clone(), (v.clone(), version))).collect();
    if let Some(local) = load(conn, key)?.filter(|s| !s.deleted) {
        fields.extend(local.fields.into_iter().filter(|(_, (_, v))| *v > version));
    }
    save(conn, key, &Stored { fields, deleted: false, deleted_version: Hlc::ZERO })?;
    if version > load_hlc(conn)? {
        db::set_meta(conn, "hlc", &version.0.to_string())?;
    }
    Ok(())
}

/// Removes a record because the tier above decided it is not this township's (a duplicate person
/// settled in another household): a tombstone without an outbox entry, as the hub already agrees.
pub fn remove_remote(conn: &Connection, key: &RecordKey, version: Hlc) -> Result<bool> {
    let Some(mut stored) = load(conn, key)?.filter(|s| !s.deleted) else {
        return Ok(false);
    };
    stored.deleted = true;
    stored.deleted_version = version;
    save(conn, key, &stored)?;
    if version > load_hlc(conn)? {
        db::set_meta(conn, "hlc", &version.0.to_string())?;
    }
    Ok(true)
}

/// Pending (not yet sealed) outbox entries.
pub fn pending_changes(conn: &Connection) -> Result<u64> {
    Ok(conn.query_row("SELECT COUNT(*) FROM changes WHERE seq IS NULL", [], |r| r.get::<_, i64>(0))? as u64)
}

/// The county above a township, for messages naming who may reopen a year.
fn county_of(township: &RegionCode) -> String {
    township.ancestor(jianka_shared::Tier::County).map(|c| c.to_string()).unwrap_or_else(|| "county".into())
}
