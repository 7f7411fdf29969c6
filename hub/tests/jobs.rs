//! The hub's scheduled jobs: the lock schedule locks years whose update window passed, New Year
//! runs once, and a schedule fires on the hub's clock through the worker runner.

#[macro_use]
mod common;
use chrono::TimeZone;
use common::*;
use jianka_hub::{Clock, ManualClock, jobs};
use std::sync::Arc;
use std::time::Duration;

fn beijing(y: i32, m: u32, d: u32, h: u32, min: u32, sec: u32) -> chrono::DateTime<chrono::Utc> {
    chrono_tz::Asia::Shanghai.with_ymd_and_hms(y, m, d, h, min, sec).unwrap().with_timezone(&chrono::Utc)
}

async fn year_state(s: &Setup, year: u16) -> String {
    s.county.hub.store().year(year).await.unwrap().expect("the year is stored").state
}

async fn the_lock_job_locks_a_year_once_its_window_passed(pg: bool) {
    let s = setup(pg, 100, &[]).await;
    s.county.clock.set(beijing(2015, 1, 1, 0, 0, 0));
    s.county.hub.new_year(Some(2014)).await.unwrap();
    // Inside the window (the hubei profile's deadline is 31 January) nothing is locked.
    s.county.clock.set(beijing(2015, 1, 31, 23, 0, 0));
    assert_eq!(s.county.hub.lock_due_years().await.unwrap(), Vec::<u16>::new());
    assert_eq!(year_state(&s, 2014).await, "update_window");
    s.county.clock.set(beijing(2015, 2, 1, 1, 0, 0));
    assert_eq!(s.county.hub.lock_due_years().await.unwrap(), vec![2014]);
    assert_eq!(year_state(&s, 2014).await, "locked");
    assert_eq!(year_state(&s, 2015).await, "open", "the new year stays open");
    let log = s.county.hub.store().audit_log().await.unwrap();
    assert_eq!(log.iter().filter(|a| a.action == "lock").count(), 1, "the lock is audited");
    // The next night finds nothing more to lock.
    assert_eq!(s.county.hub.lock_due_years().await.unwrap(), Vec::<u16>::new());
}
both_backends!(the_lock_job_locks_a_year_once_its_window_passed, lock_job_sqlite, lock_job_postgres);

async fn the_new_year_schedule_freezes_once(pg: bool) {
    let s = setup(pg, 100, &[]).await;
    s.county.clock.set(beijing(2015, 1, 1, 0, 0, 0));
    let first = s.county.hub.scheduled_new_year().await.unwrap();
    assert_eq!(first.map(|r| r.frozen), Some(2014));
    assert!(s.county.hub.scheduled_new_year().await.unwrap().is_none(), "a retry after success does nothing");
    assert_eq!(year_state(&s, 2014).await, "update_window");
}
both_backends!(the_new_year_schedule_freezes_once, new_year_job_sqlite, new_year_job_postgres);

/// A manual clock that scheduled jobs look at every few milliseconds, so moving it fires them.
struct Watched(ManualClock);

impl Clock for Watched {
    fn now(&self) -> chrono::DateTime<chrono::Utc> {
        self.0.now()
    }
    fn recheck_every(&self) -> Option<Duration> {
        Some(Duration::from_millis(20))
    }
}

#[tokio::test]
async fn the_lock_schedule_fires_on_the_hubs_clock() {
    let s = setup(false, 100, &[]).await;
    s.county.clock.set(beijing(2015, 1, 1, 0, 0, 0));
    s.county.hub.new_year(Some(2014)).await.unwrap();
    // A second hub on the county's database, whose clock the jobs watch; 00:59:59 on 1 February,
    // one second before the default lock schedule (01:00 every night).
    let clock = ManualClock::new(beijing(2015, 2, 1, 0, 59, 59));
    let hub =
        Arc::new(jianka_hub::Hub::open(s.county.hub.config().clone(), Arc::new(Watched(clock.clone()))).await.unwrap());
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let run = jobs::spawn(hub.clone(), stop);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(year_state(&s, 2014).await, "update_window", "not before its time");
    clock.set(beijing(2015, 2, 1, 1, 0, 1));
    let mut state = String::new();
    for _ in 0..100 {
        state = year_state(&s, 2014).await;
        if state == "locked" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(state, "locked", "the lock schedule ran once the clock passed 01:00");
    stop_tx.send(true).unwrap();
    tokio::time::timeout(jobs::EXIT_DEADLINE + Duration::from_secs(1), run)
        .await
        .expect("jobs stop on shutdown")
        .unwrap();
}
