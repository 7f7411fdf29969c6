//! The node's clock. `JIANKA_NOW` (RFC 3339) sets the start time so tests and the demo can drive
//! dates (notice windows, deadlines, New Year) without sleeping; time then runs on from there.

use anyhow::{Context, Result};
use chrono::{DateTime, NaiveDate, Utc};
use chrono_tz::Asia::Shanghai;
use std::time::Instant;

pub const NOW_ENV: &str = "JIANKA_NOW";

#[derive(Debug, Clone, Copy)]
pub struct Clock {
    fixed: Option<(DateTime<Utc>, Instant)>,
}

impl Clock {
    pub fn system() -> Clock {
        Clock { fixed: None }
    }

    /// A clock that starts at `at` and runs on in real time.
    pub fn starting_at(at: DateTime<Utc>) -> Clock {
        Clock { fixed: Some((at, Instant::now())) }
    }

    /// Honours `JIANKA_NOW` when set.
    pub fn from_env() -> Result<Clock> {
        match std::env::var(NOW_ENV) {
            Ok(s) if !s.trim().is_empty() => {
                let at = DateTime::parse_from_rfc3339(s.trim()).with_context(|| {
                    format!("{NOW_ENV}={s:?} is not an RFC 3339 time (e.g. 2015-01-03T09:00:00+08:00)")
                })?;
                Ok(Clock::starting_at(at.with_timezone(&Utc)))
            }
            _ => Ok(Clock::system()),
        }
    }

    pub fn now(&self) -> DateTime<Utc> {
        match self.fixed {
            Some((at, start)) => at + chrono::Duration::from_std(start.elapsed()).unwrap_or_default(),
            None => Utc::now(),
        }
    }

    pub fn millis(&self) -> u64 {
        self.now().timestamp_millis().max(0) as u64
    }

    pub fn unix_secs(&self) -> i64 {
        self.now().timestamp()
    }

    /// Today's date in China (Asia/Shanghai): the date the clerk sees on the wall.
    pub fn today(&self) -> NaiveDate {
        self.now().with_timezone(&Shanghai).date_naive()
    }

    /// The registry year a fresh edit defaults to.
    pub fn year(&self) -> u16 {
        use chrono::Datelike;
        self.today().year() as u16
    }
}
