//! Cron jobs as workers: each waits for its schedule's next time (in the hub's time zone, on the
//! hub's clock), then runs its job; a failed run is retried by the runner's backoff.

use super::worker::{Worker, WorkerState};
use crate::state::Hub;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use jianka_shared::Tier;
use std::sync::Arc;
use std::time::Duration;

/// What a schedule runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Job {
    /// The county's forward to its parent, then the parent's feedback.
    Forward,
    /// Freeze last year and open its update window (skipped if it was frozen already).
    NewYear,
    /// Lock for good the years whose update window has passed its deadline.
    Lock,
}

impl Job {
    pub fn name(self) -> &'static str {
        match self {
            Job::Forward => "forward",
            Job::NewYear => "new_year",
            Job::Lock => "lock",
        }
    }

    async fn run(self, hub: &Hub) -> anyhow::Result<()> {
        match self {
            Job::Forward => hub.forward().await.map(|_| ()),
            Job::NewYear => hub.scheduled_new_year().await.map(|_| ()).map_err(Into::into),
            Job::Lock => hub.lock_due_years().await.map(|_| ()).map_err(Into::into),
        }
    }
}

/// One job on one cron schedule.
pub struct ScheduledJob {
    hub: Arc<Hub>,
    job: Job,
    schedule: cron::Schedule,
    tz: chrono_tz::Tz,
    /// The scheduled time being worked on, kept until the run succeeds.
    due: Option<DateTime<Utc>>,
}

/// The hub's jobs from `[schedule]`: forward only below the province, with a parent; an empty or
/// unparsable expression (refused by `HubConfig::validate` already) runs nothing.
pub fn from_config(hub: &Arc<Hub>) -> Vec<ScheduledJob> {
    let cfg = hub.config();
    let Ok(tz) = cfg.timezone() else { return Vec::new() };
    let forwards = cfg.parent_url.is_some() && hub.region().tier() != Tier::Province;
    [(Job::Forward, &cfg.schedule.forward), (Job::NewYear, &cfg.schedule.new_year), (Job::Lock, &cfg.schedule.lock)]
        .into_iter()
        .filter(|(job, _)| *job != Job::Forward || forwards)
        .filter_map(|(job, expr)| {
            let schedule = expr.parse::<cron::Schedule>().ok()?;
            Some(ScheduledJob { hub: hub.clone(), job, schedule, tz, due: None })
        })
        .collect()
}

impl ScheduledJob {
    /// The first scheduled time after `now`.
    pub fn next_after(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.schedule.after(&now.with_timezone(&self.tz)).next().map(|t| t.with_timezone(&Utc))
    }

    pub fn job(&self) -> Job {
        self.job
    }
}

#[async_trait]
impl Worker for ScheduledJob {
    fn name(&self) -> &str {
        self.job.name()
    }

    async fn work(&mut self) -> anyhow::Result<WorkerState> {
        let Some(at) = self.due else { return Ok(WorkerState::Idle) };
        tracing::info!(job = self.job.name(), scheduled = %at, "scheduled job running");
        self.job.run(&self.hub).await?;
        self.due = None;
        Ok(WorkerState::Idle)
    }

    async fn wait_for_work(&mut self) -> WorkerState {
        let Some(at) = self.next_after(self.hub.clock().now()) else { return WorkerState::Done };
        // Sleep on the hub's clock: a clock that was set back, or does not move (tests' manual
        // clock), waits again instead of running the job early or spinning.
        loop {
            let wait = (at - self.hub.clock().now()).to_std().unwrap_or(Duration::ZERO);
            if wait.is_zero() {
                break;
            }
            let recheck = self.hub.clock().recheck_every().unwrap_or(wait);
            tokio::time::sleep(wait.min(recheck)).await;
        }
        self.due = Some(at);
        WorkerState::Busy
    }
}
