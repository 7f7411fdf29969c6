//! The hub's background jobs, all in one shape: a [`Worker`] does a unit of work, waits for the
//! next, backs off after an error and stops within a deadline on shutdown (the shape garage's
//! background workers use). Today every job is a cron schedule ([`scheduled`]): the county's
//! forward to its parent, the New Year freeze, and the lock of years whose update window passed.

mod scheduled;
mod worker;

pub use scheduled::{Job, ScheduledJob};
pub use worker::{Backoff, EXIT_DEADLINE, Worker, WorkerState, run_workers};

use crate::state::Hub;
use std::sync::Arc;

/// Starts the hub's scheduled jobs from its config; they run until `stop` turns true.
pub fn spawn(hub: Arc<Hub>, stop: tokio::sync::watch::Receiver<bool>) -> tokio::task::JoinHandle<()> {
    let workers: Vec<Box<dyn Worker>> =
        scheduled::from_config(&hub).into_iter().map(|j| Box::new(j) as Box<dyn Worker>).collect();
    tokio::spawn(run_workers(workers, stop, Backoff::default(), EXIT_DEADLINE))
}
