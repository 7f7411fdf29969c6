//! `jianka-node run`: wake at the configured sync windows (cron, Asia/Shanghai), cut change sets
//! by size and age in between, stop promptly on SIGTERM or ctrl-c. Runs on a current-thread
//! runtime with one HTTP client and no caches, to idle small.

use crate::node::Node;
use crate::sync;
use anyhow::Result;
use chrono::{DateTime, Utc};
use chrono_tz::Asia::Shanghai;
use std::future::Future;
use std::str::FromStr;
use std::time::Duration;

/// How often the daemon checks whether pending changes are old or many enough to seal.
const CUT_CHECK: Duration = Duration::from_secs(30);

fn next_window(node: &Node, schedules: &[cron::Schedule], now: DateTime<Utc>) -> DateTime<Utc> {
    if schedules.is_empty() {
        return now + chrono::Duration::seconds(node.cfg.config.sync.interval_secs.max(1) as i64);
    }
    let local = now.with_timezone(&Shanghai);
    schedules
        .iter()
        .filter_map(|s| s.after(&local).next())
        .map(|t| t.with_timezone(&Utc))
        .min()
        .unwrap_or(now + chrono::Duration::days(1))
}

pub async fn run(mut node: Node, shutdown: impl Future<Output = ()>) -> Result<()> {
    let schedules =
        node.cfg.config.sync.windows.iter().map(|w| cron::Schedule::from_str(w)).collect::<Result<Vec<_>, _>>()?;
    let client = sync::client(&node)?;
    tokio::pin!(shutdown);
    let mut next_sync = next_window(&node, &schedules, node.clock.now());
    tracing::info!(township = %node.township(), next_sync = %next_sync, "node daemon started");
    loop {
        let now = node.clock.now();
        let until_sync = (next_sync - now).to_std().unwrap_or(Duration::ZERO);
        let nap = until_sync.min(CUT_CHECK);
        tokio::select! {
            _ = &mut shutdown => break,
            _ = tokio::time::sleep(nap) => {}
        }
        if node.clock.now() < next_sync {
            if let Err(e) = sync::seal(&mut node, false) {
                tracing::warn!(error = %e, "cannot seal pending changes");
            }
            continue;
        }
        let pass = sync::sync_once(&mut node, &client, false);
        tokio::select! {
            _ = &mut shutdown => {
                // Dropping the pass is safe: acknowledgements are recorded only after the hub answers.
                tracing::info!("shutdown during a sync pass; it resumes next start");
                break;
            }
            r = pass => match r {
                Ok(rep) => tracing::info!(pushed = rep.pushed.len(), feedback = rep.feedback_applied, "sync pass done"),
                Err(e) => {
                    tracing::warn!(error = %format!("{e:#}"), "sync pass failed; will retry at the next window");
                    let _ = crate::db::set_meta(&node.conn, "last_sync_error", &format!("{e:#}"));
                }
            }
        }
        next_sync = next_window(&node, &schedules, node.clock.now());
        tracing::debug!(next_sync = %next_sync, "next sync window");
    }
    tracing::info!("node daemon stopped");
    Ok(())
}

/// Resolves on SIGTERM or ctrl-c.
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
                return;
            }
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
