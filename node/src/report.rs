//! `status` and `verify`: what the clerk needs to act on, and proof that node and county agree.

use crate::node::Node;
use crate::{db, outbox, store};
use anyhow::Result;
use chrono::NaiveDate;
use jianka_shared::Year;
use jianka_shared::digest::{SetDigest, record_digest};
use jianka_shared::protocol::DigestReport;
use jianka_shared::record::{RecordKey, RecordKind};
use jianka_term::outln;
use rusqlite::{OptionalExtension, params};
use serde::Serialize;
use std::collections::BTreeMap;

#[derive(Debug, Serialize)]
pub struct Status {
    pub township: String,
    pub pending_changes: u64,
    pub unacknowledged_change_sets: usize,
    pub last_sync_ok: Option<String>,
    pub last_sync_attempt: Option<String>,
    pub rejections: Vec<RejectionRow>,
    pub years: Vec<YearRow>,
    pub quota: Option<QuotaRow>,
    /// The allocation of the scale in force for the year shown, as signed from the province down.
    pub allocation: Option<AllocationLine>,
    pub households_by_status: BTreeMap<String, u64>,
    pub warnings: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct RejectionRow {
    pub key: String,
    pub reason: String,
    pub message: String,
}

#[derive(Debug, Serialize)]
pub struct YearRow {
    pub year: Year,
    pub state: String,
    pub deadline: Option<String>,
    pub days_left: Option<i64>,
    pub reopen_by: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct QuotaRow {
    pub township: String,
    pub people: u64,
    pub used: u64,
}

#[derive(Debug, Serialize)]
pub struct AllocationLine {
    pub year: Year,
    pub people: u64,
    pub villages: u64,
    /// Each step from the province down: "42 → 420322: 3167 people, 10 villages".
    pub chain: Vec<String>,
}

/// The verified allocation in force in `year`: the newest year not after it, then the highest serial.
fn allocation_in_force(conn: &rusqlite::Connection, year: Year) -> Result<Option<AllocationLine>> {
    let row: Option<String> = conn
        .query_row(
            "SELECT chain FROM allocations WHERE year <= ?1 ORDER BY year DESC, serial DESC LIMIT 1",
            [year],
            |r| r.get(0),
        )
        .optional()?;
    let Some(text) = row else { return Ok(None) };
    let chain: Vec<jianka_shared::allocation::SignedAllocation> = serde_json::from_str(&text)?;
    let all: Vec<_> = chain.iter().filter_map(|s| s.read().ok()).collect();
    let Some(last) = all.last() else { return Ok(None) };
    Ok(Some(AllocationLine {
        year: last.year,
        people: last.people,
        villages: last.villages,
        chain: all
            .iter()
            .map(|a| format!("{} → {}: {} people, {} villages", a.issuer, a.region, a.people, a.villages))
            .collect(),
    }))
}

pub fn status(node: &Node) -> Result<Status> {
    let conn = &node.conn;
    let today = node.clock.today();
    let mut rejections = Vec::new();
    {
        let mut stmt = conn
            .prepare("SELECT kind, year, rid, reason, message FROM rejections WHERE resolved_ms IS NULL ORDER BY id")?;
        let rows = stmt.query_map([], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?, r.get::<_, String>(2)?, r.get(3)?, r.get(4)?))
        })?;
        for row in rows {
            let (kind, year, id, reason, message) = row?;
            let key = RecordKind::parse(&kind)
                .map(|k| RecordKey::new(k, year as Year, id.clone()).to_string())
                .unwrap_or(format!("{year}/{kind}/{id}"));
            rejections.push(RejectionRow { key, reason, message });
        }
    }
    let mut years = Vec::new();
    let mut warnings = Vec::new();
    let warn_days = node.cfg.config.sync.deadline_warning_days;
    {
        let mut stmt = conn.prepare("SELECT year, state, deadline, reopen_by FROM cycle ORDER BY year")?;
        let rows = stmt.query_map([], |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?, r.get::<_, Option<String>>(2)?, r.get(3)?))
        })?;
        for row in rows {
            let (year, state, deadline, reopen_by) = row?;
            let days_left = deadline
                .as_deref()
                .and_then(|d| NaiveDate::parse_from_str(d.get(..10).unwrap_or(d), "%Y-%m-%d").ok())
                .map(|d| (d - today).num_days());
            // Past the deadline the county counts the township late unless a change set of the
            // year reached it in the window (its rule for `late`); the node says the same.
            if let Some(left) = days_left
                && left < 0
                && matches!(state.as_str(), "update_window" | "locked")
            {
                let d = deadline.as_deref().unwrap_or("");
                match delivered_in_window(conn, year as Year, d)? {
                    Some(on) if state == "update_window" => warnings.push(format!(
                        "deadline for year {year} passed {} days ago ({d}); this township delivered its update on {on}",
                        -left
                    )),
                    Some(_) => {}
                    None => warnings.push(format!(
                        "deadline for year {year} passed {} days ago ({d}); nothing of {year} reached the county \
                         between 1 January and the deadline, so it lists this township as late",
                        -left
                    )),
                }
            } else if let Some(left) = days_left
                && state == "update_window"
                && left <= warn_days
            {
                warnings.push(format!(
                    "year {year}: household and village data due in {left} days ({}); sync before then",
                    deadline.as_deref().unwrap_or("")
                ));
            }
            years.push(YearRow { year: year as Year, state, deadline, days_left, reopen_by });
        }
    }
    let quota = conn
        .query_row("SELECT township, people, used FROM quota WHERE township = ?1", [node.township().as_str()], |r| {
            Ok(QuotaRow { township: r.get(0)?, people: r.get::<_, i64>(1)? as u64, used: r.get::<_, i64>(2)? as u64 })
        })
        .ok();
    let mut households_by_status = BTreeMap::new();
    let year = node.year(None);
    let allocation = allocation_in_force(conn, year)?;
    for r in store::records(conn, RecordKind::Household, year)? {
        *households_by_status.entry(r.fields.get("status").cloned().unwrap_or_default()).or_insert(0) += 1;
    }
    if !rejections.is_empty() {
        warnings.push(format!("{} rejection(s) from the county to act on", rejections.len()));
    }
    let pending = store::pending_changes(conn)?;
    let unacked = outbox::unacked(conn)?.len();
    Ok(Status {
        township: node.township().to_string(),
        pending_changes: pending,
        unacknowledged_change_sets: unacked,
        last_sync_ok: db::get_meta(conn, "last_sync_ok")?,
        last_sync_attempt: db::get_meta(conn, "last_sync_attempt")?,
        rejections,
        years,
        quota,
        allocation,
        households_by_status,
        warnings,
    })
}

pub fn print_status(s: &Status) -> std::io::Result<()> {
    outln!("township {}", s.township)?;
    outln!(
        "pending changes: {} (unsealed), change sets not yet acknowledged: {}",
        s.pending_changes,
        s.unacknowledged_change_sets
    )?;
    outln!("last successful sync: {}", s.last_sync_ok.as_deref().unwrap_or("never"))?;
    if let Some(q) = &s.quota {
        outln!("quota: {} of {} people used", q.used, q.people)?;
    }
    if let Some(a) = &s.allocation {
        outln!(
            "allocation (规模, signed and verified, in force since {}): {} people, {} villages",
            a.year,
            a.people,
            a.villages
        )?;
        for step in &a.chain {
            outln!("  {step}")?;
        }
    }
    for (st, n) in &s.households_by_status {
        outln!("households {}: {n}", crate::vocabulary::stored_status(st))?;
    }
    for y in &s.years {
        outln!(
            "year {}: {}{}",
            y.year,
            y.state,
            y.deadline.as_ref().map(|d| format!(", deadline {d}")).unwrap_or_default()
        )?;
    }
    for r in &s.rejections {
        outln!("REJECTED {}: {} — {}", r.key, r.reason, r.message)?;
    }
    for w in &s.warnings {
        outln!("WARNING: {w}")?;
    }
    Ok(())
}

#[derive(Debug, Serialize)]
pub struct Verify {
    pub year: Year,
    pub local_count: u64,
    pub hub_count: u64,
    pub local_digest: String,
    pub hub_digest: String,
    pub identical: bool,
    pub only_local: Vec<String>,
    pub only_hub: Vec<String>,
    pub differing: Vec<String>,
    pub pending_changes: u64,
}

/// Local digests of every live record of the year, keyed.
pub fn local_digests(node: &Node, year: Year) -> Result<(BTreeMap<RecordKey, [u8; 32]>, SetDigest)> {
    let mut map = BTreeMap::new();
    let mut set = SetDigest::default();
    for kind in RecordKind::ALL {
        for r in store::records(&node.conn, kind, year)? {
            let d = record_digest(&r);
            set.add(&d);
            map.insert(r.key, d);
        }
    }
    Ok((map, set))
}

pub fn compare(node: &Node, year: Year, hub: &DigestReport) -> Result<Verify> {
    let (local, set) = local_digests(node, year)?;
    let hub_map: BTreeMap<&RecordKey, &str> = hub.records.iter().map(|(k, d)| (k, d.as_str())).collect();
    let mut only_local = Vec::new();
    let mut differing = Vec::new();
    for (k, d) in &local {
        match hub_map.get(k) {
            None => only_local.push(k.to_string()),
            Some(h) if *h != hex::encode(d) => differing.push(k.to_string()),
            Some(_) => {}
        }
    }
    let only_hub: Vec<String> =
        hub.records.iter().filter(|(k, _)| !local.contains_key(k)).map(|(k, _)| k.to_string()).collect();
    let identical = only_local.is_empty() && only_hub.is_empty() && differing.is_empty() && set.hex() == hub.digest;
    Ok(Verify {
        year,
        local_count: set.count,
        hub_count: hub.count,
        local_digest: set.hex(),
        hub_digest: hub.digest.clone(),
        identical,
        only_local,
        only_hub,
        differing,
        pending_changes: store::pending_changes(&node.conn)? + unacked_ops(node)?,
    })
}

fn unacked_ops(node: &Node) -> Result<u64> {
    Ok(node.conn.query_row(
        "SELECT COALESCE(SUM(op_count), 0) FROM envelopes WHERE acked_ms IS NULL",
        params![],
        |r| r.get::<_, i64>(0),
    )? as u64)
}

pub fn print_verify(v: &Verify) -> std::io::Result<()> {
    if v.identical {
        outln!("year {}: identical — {} records on both sides, digest {}", v.year, v.local_count, v.local_digest)?;
        return Ok(());
    }
    outln!("year {}: DIFFERENT — node {} records, county {} records", v.year, v.local_count, v.hub_count)?;
    for k in &v.only_local {
        outln!("  only on the node:   {k}")?;
    }
    for k in &v.only_hub {
        outln!("  only at the county: {k}")?;
    }
    for k in &v.differing {
        outln!("  differs:            {k}")?;
    }
    if v.pending_changes > 0 {
        outln!("  ({} local changes are not yet acknowledged by the county; run jianka-node sync)", v.pending_changes)?;
    }
    Ok(())
}

/// The day (Beijing time) the county acknowledged the first change set of `year` that it counts
/// as this township's annual update: one received from 1 January of the next year to the end of
/// `deadline` — the county's own rule for `late`.
fn delivered_in_window(conn: &rusqlite::Connection, year: Year, deadline: &str) -> Result<Option<NaiveDate>> {
    let tz = chrono_tz::Asia::Shanghai;
    let Some(last) = NaiveDate::parse_from_str(deadline.get(..10).unwrap_or(deadline), "%Y-%m-%d").ok() else {
        return Ok(None);
    };
    let start = NaiveDate::from_ymd_opt(i32::from(year) + 1, 1, 1).and_then(|d| d.and_hms_opt(0, 0, 0));
    let end = last.succ_opt().and_then(|d| d.and_hms_opt(0, 0, 0));
    let (Some(start), Some(end)) = (start, end) else { return Ok(None) };
    let ms = |t: chrono::NaiveDateTime| t.and_local_timezone(tz).single().map(|t| t.timestamp_millis());
    let (Some(from), Some(to)) = (ms(start), ms(end)) else { return Ok(None) };
    let first: Option<i64> = conn.query_row(
        "SELECT MIN(acked_ms) FROM envelopes WHERE year = ?1 AND acked_ms >= ?2 AND acked_ms < ?3",
        rusqlite::params![year, from, to],
        |r| r.get(0),
    )?;
    Ok(first.and_then(chrono::DateTime::from_timestamp_millis).map(|t| t.with_timezone(&tz).date_naive()))
}
