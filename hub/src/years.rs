//! The annual cycle (domain.md §6, issue 5): per-year states, the New Year job (freeze the year
//! just ended as a signed snapshot, open the update window, carry households forward), deadlines,
//! locking and audited reopening.

use crate::audit::AuditEntry;
use crate::error::HubError;
use crate::feedback::push_feedback;
use crate::record::StoredRecord;
use crate::state::Hub;
use crate::store::{ReopeningRow, Store, YearRow};
use chrono::{Datelike, NaiveDate};
use jianka_shared::{
    RecordKey, RecordKind, RegionCode, Tier, Year,
    digest::{SetDigest, record_digest},
    domain::Status,
    profile::Profile,
    protocol::{Correction, CycleInfo, ErrorCode, Feedback, YearState},
    trust,
};
use serde::{Deserialize, Serialize};

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
        Tier::Prefecture => format!("the prefecture ({hub}) — `jianka-hub reopen` at the prefecture hub"),
        _ => format!("the county ({hub}) — `jianka-hub reopen` at the county hub, for a stated reason"),
    }
}

/// The year's state as of `today` (an update window past its deadline counts as locked), and the
/// regions for which a locked year has been reopened.
pub async fn effective_state(
    store: &dyn Store,
    year: Year,
    today: NaiveDate,
    profile: Option<&Profile>,
) -> Result<(YearState, Vec<RegionCode>), HubError> {
    let mut state = store.year(year).await?.map(|r| parse_state(&r.state)).unwrap_or(YearState::Open);
    if state == YearState::UpdateWindow && today > household_deadline(year, profile) {
        state = YearState::Locked;
    }
    if state == YearState::Reopened {
        state = YearState::Locked;
    }
    // Only reopenings still running today count: after its last day the year is locked again.
    let mut reopened = Vec::new();
    for r in store.reopenings(year).await? {
        let until = reopening_until(r.at, r.until_day.as_deref());
        if today <= until
            && let Ok(region) = RegionCode::parse(&r.region)
        {
            reopened.push(region);
        }
    }
    Ok((state, reopened))
}

/// Whether changes accepted into `year` carry into `year + 1`: `year` was frozen at New Year (so
/// the next year started as its copy) and the next year is not locked itself.
pub async fn carries_into_next(
    store: &dyn Store,
    year: Year,
    today: NaiveDate,
    profile: Option<&Profile>,
) -> Result<bool, HubError> {
    let frozen = store.year(year).await?.is_some_and(|r| r.state != "open");
    let next_exists = store.year(year + 1).await?.is_some();
    Ok(frozen && next_exists && effective_state(store, year + 1, today, profile).await?.0 != YearState::Locked)
}

/// A reopening lasts this many days unless granted with an explicit end.
pub const DEFAULT_REOPENING_DAYS: u64 = 7;

/// The last day of a reopening granted at `at` (unix seconds): its stored end, or the default
/// length for reopenings stored without one.
fn reopening_until(at: i64, until_day: Option<&str>) -> NaiveDate {
    until_day.and_then(|d| NaiveDate::parse_from_str(d, "%Y-%m-%d").ok()).unwrap_or_else(|| {
        let granted = chrono::DateTime::from_timestamp(at, 0)
            .unwrap_or_default()
            .with_timezone(&chrono_tz::Asia::Shanghai)
            .date_naive();
        granted + chrono::Days::new(DEFAULT_REOPENING_DAYS)
    })
}

/// The reopening of `year` that covers `region` today, if any: its last day.
pub async fn reopened_for(
    store: &dyn Store,
    year: Year,
    region: &RegionCode,
    today: NaiveDate,
) -> Result<Option<NaiveDate>, HubError> {
    let mut last: Option<NaiveDate> = None;
    for r in store.reopenings(year).await? {
        let until = reopening_until(r.at, r.until_day.as_deref());
        let covers = RegionCode::parse(&r.region).is_ok_and(|g| g.contains(region) || region.contains(&g));
        if covers && today <= until {
            last = last.max(Some(until));
        }
    }
    Ok(last)
}

/// The cycle of every year as `asker` (a child region) sees it: a locked year shows as reopened
/// only while a reopening covering the asker runs, with the reopening's last day as deadline.
pub async fn cycle_infos(
    store: &dyn Store,
    today: NaiveDate,
    profile: Option<&Profile>,
    hub: &RegionCode,
    asker: &RegionCode,
) -> Result<Vec<CycleInfo>, HubError> {
    let mut out = Vec::new();
    for YearRow { year, .. } in store.years().await? {
        let (mut state, _) = effective_state(store, year, today, profile).await?;
        let mut deadline = household_deadline(year, profile);
        if state == YearState::Locked
            && let Some(until) = reopened_for(store, year, asker, today).await?
        {
            state = YearState::Reopened;
            deadline = until;
        }
        out.push(CycleInfo {
            year,
            state,
            deadline: (state != YearState::Open).then(|| deadline.to_string()),
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
        // Read before the transaction: no connection is held while another is awaited.
        let children = child_regions(&*self.store).await?;
        let (mut hlc, mut tx) = self.begin_write().await?;
        let already = tx.year(ended).await?.map(|r| r.state);
        if already.as_deref().is_some_and(|s| s != "open") {
            return Err(HubError::new(ErrorCode::BadRequest, format!("year {ended} was already frozen")));
        }
        let snap_json = serde_json::to_string(&snap).expect("in-memory encoding");
        tx.set_year_state(ended, "update_window", Some(&snap_json)).await?;
        tx.ensure_year(next).await?;
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
        let carried: Vec<StoredRecord> = rows
            .iter()
            .filter(|r| match r.key.kind {
                RecordKind::Household => keep_hh.contains(&r.key.id),
                RecordKind::Member => keep_hh.contains(&r.hh),
                RecordKind::Village => true,
                RecordKind::Assistance => false,
            })
            .map(|r| {
                let mut c = r.clone();
                c.key = RecordKey { year: next, ..r.key.clone() };
                for (_, f) in c.fields.iter_mut() {
                    f.1 = version.0;
                }
                c
            })
            .collect();
        tx.write_new_revision(carried.clone()).await?;
        // The new year's quota ledger starts with the recognised people carried into it, so its
        // ceiling counts them (and the report and sign-off agree with the merge).
        if self.scale_controlled() {
            let mut people: std::collections::BTreeMap<String, i64> = Default::default();
            let recognised: std::collections::HashSet<&str> = carried
                .iter()
                .filter(|r| r.key.kind == RecordKind::Household && crate::record::is_recognised(r))
                .map(|r| r.key.id.as_str())
                .collect();
            for m in carried.iter().filter(|r| r.key.kind == RecordKind::Member && recognised.contains(r.hh.as_str())) {
                *people.entry(m.region.get(..9).unwrap_or(&m.region).to_string()).or_default() += 1;
            }
            let total: i64 = people.values().sum();
            people.insert(self.region().to_string(), total);
            for (scope, n) in people {
                tx.quota_used(&scope, next).await?;
                tx.quota_add(&scope, next, n).await?;
            }
        }
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
        // A county sends what it carried down, so each township starts the new year with the same
        // records (and `verify` agrees) without carrying forward by a rule of its own.
        if self.region().tier() == Tier::County {
            let corrections = carried.iter().filter_map(|r| {
                let township = r.region.get(..9)?.to_string();
                let values = r.fields.iter().map(|(n, f)| (n.to_string(), f.0.to_string())).collect();
                Some((township, Correction { key: r.key.clone(), values, version }))
            });
            fb.extend(crate::feedback::corrections_feedback(corrections));
        }
        push_feedback(&mut *tx, &fb).await?;
        self.audit(&mut *tx, &[AuditEntry::new("new_year", format!("year {ended}"), "open", &snap_json)]).await?;
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

    /// The New Year schedule's run: freezes last year unless that was done already (by hand, or
    /// by an earlier run the schedule is retrying).
    pub async fn scheduled_new_year(&self) -> Result<Option<NewYearReport>, HubError> {
        let ended = (self.today().year() - 1) as Year;
        if self.store.year(ended).await?.is_some_and(|r| r.state != "open") {
            return Ok(None);
        }
        self.new_year(Some(ended)).await.map(Some)
    }

    /// The lock schedule's run: every year whose update window has passed its deadline is
    /// locked for good (until then it only counts as locked), audited. Returns the years locked.
    pub async fn lock_due_years(&self) -> Result<Vec<Year>, HubError> {
        let today = self.today();
        let mut locked = Vec::new();
        for row in self.store.years().await? {
            if parse_state(&row.state) == YearState::UpdateWindow
                && today > household_deadline(row.year, self.profile())
            {
                self.lock_year(row.year).await?;
                tracing::info!(year = row.year, "update window passed: year locked");
                locked.push(row.year);
            }
        }
        Ok(locked)
    }

    /// Locks `year` now (normally automatic once its deadline passes).
    pub async fn lock_year(&self, year: Year) -> Result<(), HubError> {
        let (_g, mut tx) = self.begin_write().await?;
        tx.set_year_state(year, "locked", None).await?;
        self.audit(&mut *tx, &[AuditEntry::new("lock", format!("year {year}"), "", "locked")]).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Reopens a locked year for one child region until the end of `until` (default: 7 days from
    /// today), after which the year is locked again: an audited exception, for a stated reason.
    /// Returns the reopening's last day.
    pub async fn reopen(
        &self,
        year: Year,
        region: &RegionCode,
        reason: &str,
        until: Option<NaiveDate>,
    ) -> Result<NaiveDate, HubError> {
        let today = self.today();
        let until = until.unwrap_or(today + chrono::Days::new(DEFAULT_REOPENING_DAYS));
        if until < today {
            return Err(HubError::new(
                ErrorCode::BadRequest,
                format!("a reopening must last at least until today ({today}); --until {until} has passed"),
            ));
        }
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
        tx.add_reopening(ReopeningRow {
            year,
            region: region.to_string(),
            reason: reason.to_string(),
            at: self.now_secs(),
            until_day: Some(until.to_string()),
        })
        .await?;
        let info = CycleInfo {
            year,
            state: YearState::Reopened,
            deadline: Some(until.to_string()),
            reopen_by: Some(reopen_by(self.region())),
        };
        push_feedback(&mut *tx, &[(region.to_string(), Feedback::Cycle(info))]).await?;
        self.audit(
            &mut *tx,
            &[AuditEntry::new(
                "reopen",
                format!("year {year} for {region} until {until}"),
                "locked",
                format!("{reason} (until {until}, then locked again)"),
            )],
        )
        .await?;
        tx.commit().await?;
        tracing::info!(year, %region, %until, "year reopened");
        Ok(until)
    }

    /// Children that have not delivered for `year` by its deadline: townships (at a county) that
    /// sent no change set about `year` since the update window opened; counties (at a province)
    /// with no sign-off. Each message ends in "(late)" once the deadline has passed, "(not yet
    /// delivered)" before.
    pub async fn late(&self, year: Year) -> Result<Vec<(RegionCode, String)>, HubError> {
        Ok(self.undelivered(year).await?.missing)
    }

    /// The children that owe `year`'s delivery, its deadline, and whether it has passed.
    pub async fn undelivered(&self, year: Year) -> Result<Undelivered, HubError> {
        let children = child_regions(&*self.store).await?;
        let today = self.today();
        let mut late = Vec::new();
        let deadline = match self.region().tier() {
            Tier::County => household_deadline(year, self.profile.as_ref()),
            _ => county_table_deadline(year),
        };
        match self.region().tier() {
            Tier::Province | Tier::Prefecture => {
                let signoffs = self.store.signoffs().await?;
                let tables = self.monitoring_tables(year).await?;
                for c in children {
                    // A prefecture child is up to date when its counties' sign-offs came through it.
                    let n = signoffs.iter().filter(|s| s.year == year && s.county.starts_with(c.as_str())).count();
                    let table = tables.keys().any(|k| k.as_str().starts_with(c.as_str()));
                    let when = if today > deadline { "late" } else { "not yet delivered" };
                    let owed = match (n, table) {
                        (0, _) => format!("no sign-off for {year}; due {deadline} ({when})"),
                        (_, false) => {
                            format!("no 贫困县监测表 for {year} (file it with a sign-off); due {deadline} ({when})")
                        }
                        _ => continue,
                    };
                    late.push((RegionCode::parse(&c).expect("stored code"), owed));
                }
            }
            _ => {
                let opened = NaiveDate::from_ymd_opt(year as i32 + 1, 1, 1).expect("1 January");
                if today < opened {
                    // The year's update has not begun: nothing is owed yet.
                    return Ok(Undelivered { deadline, passed: false, missing: Vec::new() });
                }
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
                    let n = self.store.envelopes_received(&c, year, since, until).await?;
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
        Ok(Undelivered { deadline, passed: today > deadline, missing: late })
    }
}

/// Children that owe a year's delivery (see [`Hub::undelivered`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Undelivered {
    pub deadline: NaiveDate,
    /// The deadline has passed: the children listed are late, not merely not yet delivered.
    pub passed: bool,
    pub missing: Vec<(RegionCode, String)>,
}

/// Regions with an unrevoked certificate at this hub.
pub async fn child_regions(store: &dyn Store) -> Result<Vec<String>, HubError> {
    Ok(store.enrolled_subjects().await?)
}
