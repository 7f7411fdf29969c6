//! The hub's notion of "now", behind a trait so tests drive New Year and deadlines without sleeping.

use chrono::{DateTime, Utc};
use std::sync::{Arc, Mutex};

pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> DateTime<Utc>;
    /// How long a scheduled job sleeps before looking at the clock again: the wall clock may be
    /// set while it sleeps. `None`: sleep the whole wait computed at the start (a clock moved by
    /// hand in a test does not fire jobs behind the test's back).
    fn recheck_every(&self) -> Option<std::time::Duration> {
        None
    }
}

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
    fn recheck_every(&self) -> Option<std::time::Duration> {
        Some(std::time::Duration::from_secs(60))
    }
}

/// A clock that stands still until told to move (tests, and `JIANKA_NOW` in the binary).
#[derive(Debug, Clone)]
pub struct ManualClock(Arc<Mutex<DateTime<Utc>>>);

impl ManualClock {
    pub fn new(at: DateTime<Utc>) -> Self {
        ManualClock(Arc::new(Mutex::new(at)))
    }

    pub fn set(&self, at: DateTime<Utc>) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = at;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// `JIANKA_NOW` (RFC 3339) when set, else the system clock.
pub fn from_env() -> anyhow::Result<Arc<dyn Clock>> {
    match std::env::var("JIANKA_NOW") {
        Ok(s) if !s.trim().is_empty() => {
            let t = DateTime::parse_from_rfc3339(s.trim()).map_err(|e| {
                anyhow::anyhow!("JIANKA_NOW={s:?} is not an RFC 3339 time (e.g. 2015-01-03T09:00:00+08:00): {e}")
            })?;
            Ok(Arc::new(ManualClock::new(t.with_timezone(&Utc))))
        }
        _ => Ok(Arc::new(SystemClock)),
    }
}
