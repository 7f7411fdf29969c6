//! The annual cycle (domain.md §6, issue 5): per-year states, the New Year job (freeze the year
//! just ended as a signed snapshot, open the update window, carry households forward), deadlines,
//! locking and audited reopening.

use crate::audit::{self, AuditEntry};
use crate::error::HubError;
use crate::hub::{Hub, Row_, push_feedback, write_rows};
use crate::store::{Db, get_i64};
use chrono::{Datelike, NaiveDate};
use jianka_shared::{
    RecordKey, RecordKind, RegionCode, Tier, Year,
    digest::{SetDigest, record_digest},
    domain::Status,
    profile::Profile,
    protocol::{CycleInfo, ErrorCode, Feedback, YearState},
    trust,
};
use serde::{Deserialize, Serialize};
use sqlx::Row;

pub fn state_str(s: YearState) -> &'static str {
    match s {
        YearState::Open => "open",
        YearState::UpdateWindow => "update_window",
        YearState::Locked => "locked",
        YearState::Reopened => "reopened",
    }
}

fn parse_state(s: &str) -> YearState {
    match s {
        "update_window" => YearState::UpdateWindow,
        "locked" => YearState::Locked,
        "reopened" => YearState::Reopened,
        _ => YearState::Open,
    }
}

/// Household and village data for `year` are due by this day (31 January of the next year by default).
pub fn household_deadline(year: Year, profile: Option<&Profile>) -> NaiveDate {
    let day = profile.map(|p| p.household_deadline_day_of_january).unwrap_or(31).clamp(1, 31);
    NaiveDate::from_ymd_opt(year as i32 + 1, 1, day).expect("a January day")
}

/// The county monitoring table for `year` is due by the end of February of the next year.
pub fn county_table_deadline(year: Year) -> NaiveDate {
    NaiveDate::from_ymd_opt(year as i32 + 1, 3, 1).expect("1 March").pred_opt().expect("end of February")
}

/// Who may reopen a locked year at this hub: the tier above the writers.
pub fn reopen_by(hub: &RegionCode) -> String {
    match hub.tier() {
        Tier::Province => format!("the province ({hub}) — `jianka-hub reopen` at the province hub"),
        _ => format!("the county ({hub}) — `jianka-hub reopen` at the county hub, for a stated reason"),
    }
}

/// The year's state as of `today` (an update window past its deadline counts as locked), and the
/// regions for which a locked year has been reopened.
pub async fn effective_state(
    db: &Db,
    year: Year,
    today: NaiveDate,
    profile: Option<&Profile>,
) -> Result<(YearState, Vec<RegionCode>), HubError> {
    let r = sqlx::query("SELECT state FROM years WHERE year = $1").bind(year as i64).fetch_optional(&db.pool).await?;
    let mut state = r.map(|r| parse_state(&r.get::<String, _>(0))).unwrap_or(YearState::Open);
    if state == YearState::UpdateWindow && today > household_deadline(year, profile) {
        state = YearState::Locked;
    }
    if state == YearState::Reopened {
        state = YearState::Locked;
    }
    let reopened = sqlx::query("SELECT region FROM reopenings WHERE year = $1")
        .bind(year as i64)
        .fetch_all(&db.pool)
        .await?
        .into_iter()
        .filter_map(|r| RegionCode::parse(&r.get::<String, _>(0)).ok())
        .collect();
    Ok((state, reopened))
}

pub async fn cycle_infos(
    db: &Db,
    today: NaiveDate,
    profile: Option<&Profile>,
    hub: &RegionCode,
) -> Result<Vec<CycleInfo>, HubError> {
    let rows = sqlx::query("SELECT year FROM years ORDER BY year").fetch_all(&db.pool).await?;
    let mut out = Vec::new();
    for r in rows {
        let year = get_i64(&r, 0) as Year;
        let (mut state, reopened) = effective_state(db, year, today, profile).await?;
        if state == YearState::Locked && !reopened.is_empty() {
            state = YearState::Reopened;
        }
        out.push(CycleInfo {
            year,
            state,
            deadline: (state != YearState::Open).then(|| household_deadline(year, profile).to_string()),
            reopen_by: matches!(state, YearState::Locked | YearState::Reopened).then(|| reopen_by(hub)),
        });
    }
    Ok(out)
}

/// The signed freeze of a year at its standard time point.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    pub region: RegionCode,
    pub year: Year,
    pub time_point: String,
    pub records: u64,
    pub digest: String,
    pub frozen_at: i64,
    pub key_id: String,
    pub signature: String,
}

impl Snapshot {
    pub fn signed_bytes(&self) -> Vec<u8> {
        let mut c = self.clone();
        c.signature = String::new();
        serde_json::to_vec(&c).expect("in-memory encoding")
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewYearReport {
    pub frozen: Year,
    pub carried_households: u64,
    pub carried_records: u64,
    pub snapshot: Snapshot,
}

impl Hub {
    /// The New Year job for the year that just ended (`today.year() - 1` unless given): freeze it
    /// as a signed snapshot, put it in its update window, carry every live household, member and
    /// village forward into the new year, and tell every child through Cycle feedback. Idempotent.
    pub async fn new_year(&self, ended: Option<Year>) -> Result<NewYearReport, HubError> {
        let ended = ended.unwrap_or((self.today().year() - 1) as Year);
        let next = ended + 1;
        let rows = self.records_in(self.region(), ended).await?;
        let mut set = SetDigest::default();
        rows.iter().for_each(|r| set.add(&record_digest(&r.to_record())));
        let mut snap = Snapshot {
            region: self.region().clone(),
            year: ended,
            time_point: format!("{ended}-12-31"),
            records: set.count,
            digest: set.hex(),
            frozen_at: self.now_secs(),
            key_id: self.key_id().to_string(),
            signature: String::new(),
        };
        snap.signature = hex::encode(trust::sign_statement(&self.key, "year-snapshot", &snap.signed_bytes()));
        let (mut hlc, mut tx) = self.begin_write().await?;
        let already: Option<String> = sqlx::query("SELECT state FROM years WHERE year = $1")
            .bind(ended as i64)
            .fetch_optional(&mut *tx)
            .await?
            .map(|r| r.get(0));
        if already.as_deref().is_some_and(|s| s != "open") {
            return Err(HubError::new(ErrorCode::BadRequest, format!("year {ended} was already frozen")));
        }
        let snap_json = serde_json::to_string(&snap).expect("in-memory encoding");
        sqlx::query("INSERT INTO years (year, state, snapshot) VALUES ($1, 'update_window', $2) ON CONFLICT (year) DO UPDATE SET state = 'update_window', snapshot = excluded.snapshot")
            .bind(ended as i64)
            .bind(&snap_json)
            .execute(&mut *tx)
            .await?;
        sqlx::query("INSERT INTO years (year, state) VALUES ($1, 'open') ON CONFLICT (year) DO NOTHING")
            .bind(next as i64)
            .execute(&mut *tx)
            .await?;
        // Carry forward: recognised households (and their members and the villages) start the new
        // year as they ended the old one; refused and exited households stay behind.
        let version = self.tick(&mut hlc);
        let keep_hh: std::collections::HashSet<String> = rows
            .iter()
            .filter(|r| r.key.kind == RecordKind::Household)
            .filter(|r| {
                !matches!(
                    r.fields.get("status").and_then(|s| Status::parse(&s.0)),
                    Some(Status::NotRecognised | Status::Exited)
                )
            })
            .map(|r| r.key.id.clone())
            .collect();
        let carried: Vec<Row_> = rows
            .iter()
            .filter(|r| match r.key.kind {
                RecordKind::Household => keep_hh.contains(&r.key.id),
                RecordKind::Member => keep_hh.contains(&r.hh),
                RecordKind::Village => true,
            })
            .map(|r| {
                let mut c = r.clone();
                c.key = RecordKey { year: next, ..r.key.clone() };
                for f in c.fields.values_mut() {
                    f.1 = version.0;
                }
                c
            })
            .collect();
        let refs: Vec<&Row_> = carried.iter().collect();
        write_rows(&mut tx, &refs).await?;
        let children = child_regions(&self.db).await?;
        let deadline = household_deadline(ended, self.profile.as_ref()).to_string();
        let mut fb = Vec::new();
        for c in &children {
            fb.push((
                c.clone(),
                Feedback::Cycle(CycleInfo {
                    year: ended,
                    state: YearState::UpdateWindow,
                    deadline: Some(deadline.clone()),
                    reopen_by: None,
                }),
            ));
            fb.push((
                c.clone(),
                Feedback::Cycle(CycleInfo { year: next, state: YearState::Open, deadline: None, reopen_by: None }),
            ));
        }
        push_feedback(&mut tx, &fb).await?;
        audit::append(
            &mut tx,
            self.now_secs(),
            &self.key_id().to_string(),
            &[AuditEntry::new("new_year", format!("year {ended}"), "open", &snap_json)],
        )
        .await?;
        tx.commit().await?;
        tracing::info!(
            year = ended,
            records = snap.records,
            carried = carried.len(),
            "year frozen, update window open"
        );
        Ok(NewYearReport {
            frozen: ended,
            carried_households: keep_hh.len() as u64,
            carried_records: carried.len() as u64,
            snapshot: snap,
        })
    }

    /// Locks `year` now (normally automatic once its deadline passes).
    pub async fn lock_year(&self, year: Year) -> Result<(), HubError> {
        let (_g, mut tx) = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO years (year, state) VALUES ($1, 'locked') ON CONFLICT (year) DO UPDATE SET state = 'locked'",
        )
        .bind(year as i64)
        .execute(&mut *tx)
        .await?;
        audit::append(
            &mut tx,
            self.now_secs(),
            &self.key_id().to_string(),
            &[AuditEntry::new("lock", format!("year {year}"), "", "locked")],
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Reopens a locked year for one child region: an audited exception, for a stated reason.
    pub async fn reopen(&self, year: Year, region: &RegionCode, reason: &str) -> Result<(), HubError> {
        if !self.region().contains(region) || region == self.region() {
            return Err(HubError::new(
                ErrorCode::OutsideRegion,
                format!("{region} is not below this hub ({}); reopening is granted by the tier above", self.region()),
            ));
        }
        if reason.trim().is_empty() {
            return Err(HubError::new(ErrorCode::BadRequest, "a reopening needs a stated reason (--reason)"));
        }
        let (_g, mut tx) = self.begin_write().await?;
        sqlx::query("INSERT INTO reopenings (year, region, reason, at) VALUES ($1,$2,$3,$4)")
            .bind(year as i64)
            .bind(region.to_string())
            .bind(reason)
            .bind(self.now_secs())
            .execute(&mut *tx)
            .await?;
        let info =
            CycleInfo { year, state: YearState::Reopened, deadline: None, reopen_by: Some(reopen_by(self.region())) };
        push_feedback(&mut tx, &[(region.to_string(), Feedback::Cycle(info))]).await?;
        audit::append(
            &mut tx,
            self.now_secs(),
            &self.key_id().to_string(),
            &[AuditEntry::new("reopen", format!("year {year} for {region}"), "locked", reason)],
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Children that have not delivered for `year` by its deadline: townships (at a county) that
    /// sent nothing since the update window opened; counties (at a province) with no sign-off.
    pub async fn late(&self, year: Year) -> Result<Vec<(RegionCode, String)>, HubError> {
        let children = child_regions(&self.db).await?;
        let today = self.today();
        let mut late = Vec::new();
        match self.region().tier() {
            Tier::Province => {
                let deadline = county_table_deadline(year);
                for c in children {
                    let n: i64 = sqlx::query("SELECT COUNT(*) FROM signoffs WHERE county = $1 AND year = $2")
                        .bind(&c)
                        .bind(year as i64)
                        .fetch_one(&self.db.pool)
                        .await
                        .map(|r| get_i64(&r, 0))?;
                    if n == 0 {
                        let when = if today > deadline { "late" } else { "not yet delivered" };
                        late.push((
                            RegionCode::parse(&c).expect("stored code"),
                            format!("no sign-off for {year}; due {deadline} ({when})"),
                        ));
                    }
                }
            }
            _ => {
                let deadline = household_deadline(year, self.profile.as_ref());
                let opened = NaiveDate::from_ymd_opt(year as i32 + 1, 1, 1).expect("1 January");
                let since = opened
                    .and_hms_opt(0, 0, 0)
                    .expect("midnight")
                    .and_local_timezone(chrono_tz::Asia::Shanghai)
                    .unwrap()
                    .timestamp();
                let until = deadline
                    .succ_opt()
                    .expect("a day")
                    .and_hms_opt(0, 0, 0)
                    .expect("midnight")
                    .and_local_timezone(chrono_tz::Asia::Shanghai)
                    .unwrap()
                    .timestamp();
                for c in children {
                    let n: i64 = sqlx::query(
                        "SELECT COUNT(*) FROM envelopes WHERE origin = $1 AND received_at >= $2 AND received_at < $3",
                    )
                    .bind(&c)
                    .bind(since)
                    .bind(until)
                    .fetch_one(&self.db.pool)
                    .await
                    .map(|r| get_i64(&r, 0))?;
                    if n == 0 {
                        let when = if today > deadline { "late" } else { "not yet delivered" };
                        late.push((
                            RegionCode::parse(&c).expect("stored code"),
                            format!("no update for {year} since {opened}; due {deadline} ({when})"),
                        ));
                    }
                }
            }
        }
        Ok(late)
    }
}

/// Regions with an unrevoked certificate at this hub.
pub async fn child_regions(db: &Db) -> Result<Vec<String>, HubError> {
    let rows = sqlx::query("SELECT DISTINCT subject FROM certs WHERE revoked = 0 ORDER BY subject")
        .fetch_all(&db.pool)
        .await?;
    Ok(rows.into_iter().map(|r| r.get::<String, _>(0)).collect())
}
