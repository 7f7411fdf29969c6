//! One shape for background work: `work` does a unit, `wait_for_work` sleeps until there is one;
//! the runner retries a failed unit after a growing pause and, on shutdown, lets a running unit
//! finish within a deadline before dropping it (every job is safe to cut: its writes are
//! transactions, and a cut forward resumes from what the parent holds).

use async_trait::async_trait;
use std::time::Duration;
use tokio::sync::watch;

/// How long a running unit of work may go on after shutdown was asked for.
pub const EXIT_DEADLINE: Duration = Duration::from_secs(5);

/// What a worker is doing after a unit of work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkerState {
    /// More work is ready: call `work` again.
    Busy,
    /// Nothing to do now: call `wait_for_work`.
    Idle,
    /// Never again (a schedule with no next time).
    Done,
}

#[async_trait]
pub trait Worker: Send {
    fn name(&self) -> &str;
    /// Does one unit of work if one is due (else returns `Idle` at once). After an error the
    /// runner waits and calls `work` again, so a failed unit must still be due then.
    async fn work(&mut self) -> anyhow::Result<WorkerState>;
    /// Waits until there is work, then says so (`Busy`), or that there never will be (`Done`).
    async fn wait_for_work(&mut self) -> WorkerState;
}

/// The pause after consecutive errors: `first`, doubling, never over `max`.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    pub first: Duration,
    pub max: Duration,
}

impl Default for Backoff {
    /// A link down overnight is retried every half hour, not hammered and not left until the
    /// next scheduled night.
    fn default() -> Self {
        Backoff { first: Duration::from_secs(30), max: Duration::from_secs(30 * 60) }
    }
}

impl Backoff {
    pub fn after(&self, errors: u32) -> Duration {
        let factor = 1u32.checked_shl(errors.saturating_sub(1)).unwrap_or(u32::MAX);
        self.first.saturating_mul(factor).min(self.max)
    }
}

/// Runs every worker on its own task until `stop` turns true (or its sender is dropped), then
/// waits for them, each within `deadline` of the stop.
pub async fn run_workers(
    workers: Vec<Box<dyn Worker>>,
    stop: watch::Receiver<bool>,
    backoff: Backoff,
    deadline: Duration,
) {
    let tasks: Vec<_> =
        workers.into_iter().map(|w| tokio::spawn(run_worker(w, stop.clone(), backoff, deadline))).collect();
    for t in tasks {
        let _ = t.await;
    }
}

async fn run_worker(
    mut worker: Box<dyn Worker>,
    mut stop: watch::Receiver<bool>,
    backoff: Backoff,
    deadline: Duration,
) {
    let mut state = WorkerState::Busy;
    let mut errors = 0u32;
    loop {
        if *stop.borrow() {
            return;
        }
        match state {
            WorkerState::Done => return,
            WorkerState::Idle => {
                tokio::select! {
                    s = worker.wait_for_work() => state = s,
                    _ = stop.changed() => return,
                }
            }
            WorkerState::Busy => {
                let name = worker.name().to_string();
                let (result, stopping) = {
                    let unit = worker.work();
                    tokio::pin!(unit);
                    tokio::select! {
                        r = &mut unit => (Some(r), false),
                        _ = stop.changed() => match tokio::time::timeout(deadline, unit).await {
                            Ok(r) => (Some(r), true),
                            Err(_) => (None, true),
                        },
                    }
                };
                match result {
                    None => {
                        tracing::warn!(job = %name, "stopped in the middle of its work at shutdown; it resumes at its next run")
                    }
                    Some(Ok(s)) => {
                        errors = 0;
                        state = s;
                    }
                    Some(Err(e)) => {
                        errors += 1;
                        let pause = backoff.after(errors);
                        tracing::warn!(job = %name, error = %format!("{e:#}"), retry_in_s = pause.as_secs_f64(), "job failed; retrying");
                        if stopping {
                            return;
                        }
                        tokio::select! {
                            _ = tokio::time::sleep(pause) => {}
                            _ = stop.changed() => return,
                        }
                    }
                }
                if stopping {
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// Fails `failures` times, then succeeds once, then idles; records what happened.
    struct Flaky {
        failures: u32,
        log: Arc<Mutex<Vec<&'static str>>>,
        work_takes: Duration,
    }

    #[async_trait]
    impl Worker for Flaky {
        fn name(&self) -> &str {
            "flaky"
        }
        async fn work(&mut self) -> anyhow::Result<WorkerState> {
            tokio::time::sleep(self.work_takes).await;
            if self.failures > 0 {
                self.failures -= 1;
                self.log.lock().unwrap().push("failed");
                anyhow::bail!("link down");
            }
            self.log.lock().unwrap().push("done");
            Ok(WorkerState::Idle)
        }
        async fn wait_for_work(&mut self) -> WorkerState {
            std::future::pending().await
        }
    }

    #[test]
    fn backoff_doubles_up_to_its_ceiling() {
        let b = Backoff { first: Duration::from_secs(30), max: Duration::from_secs(600) };
        let pauses: Vec<u64> = (1..=7).map(|n| b.after(n).as_secs()).collect();
        assert_eq!(pauses, [30, 60, 120, 240, 480, 600, 600]);
        assert_eq!(b.after(200), Duration::from_secs(600), "no overflow after many errors");
    }

    #[tokio::test]
    async fn a_failed_unit_is_retried_after_the_pause_until_it_succeeds() {
        let log = Arc::new(Mutex::new(Vec::new()));
        let w = Flaky { failures: 2, log: log.clone(), work_takes: Duration::ZERO };
        let (stop_tx, stop) = watch::channel(false);
        let backoff = Backoff { first: Duration::from_millis(20), max: Duration::from_millis(40) };
        let started = std::time::Instant::now();
        let run = tokio::spawn(run_workers(vec![Box::new(w)], stop, backoff, Duration::from_secs(1)));
        while log.lock().unwrap().len() < 3 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert!(started.elapsed() >= Duration::from_millis(60), "paused 20 + 40 ms between tries");
        assert_eq!(*log.lock().unwrap(), ["failed", "failed", "done"]);
        stop_tx.send(true).unwrap();
        tokio::time::timeout(Duration::from_secs(1), run).await.expect("an idle worker stops at once").unwrap();
    }

    #[tokio::test]
    async fn shutdown_lets_a_running_unit_finish_within_the_deadline_and_cuts_a_longer_one() {
        for (takes, finishes) in [(Duration::from_millis(50), true), (Duration::from_secs(30), false)] {
            let log = Arc::new(Mutex::new(Vec::new()));
            let w = Flaky { failures: 0, log: log.clone(), work_takes: takes };
            let (stop_tx, stop) = watch::channel(false);
            let run =
                tokio::spawn(run_workers(vec![Box::new(w)], stop, Backoff::default(), Duration::from_millis(300)));
            tokio::time::sleep(Duration::from_millis(10)).await;
            stop_tx.send(true).unwrap();
            tokio::time::timeout(Duration::from_secs(2), run).await.expect("stops within the deadline").unwrap();
            assert_eq!(log.lock().unwrap().len(), finishes as usize, "unit of {takes:?}");
        }
    }
}
