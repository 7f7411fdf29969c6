//! `jianka-bench slow-line`: a township's first sync through a line throttled in both
//! directions, measured against the line itself. For each rate, clean and lossy, it prints
//! time ÷ (bytes on the wire ÷ line rate) — 1.0 is the physical limit of what was sent — and
//! bytes on the wire ÷ bytes needed (the sealed change sets that had to go up).

use crate::bench_support::{print_proxy_log, province_and_county, sync_until_drained, township_with_households};
use crate::proxy::{FaultProxy, Faults};
use anyhow::Context;
use std::sync::atomic::Ordering;
use std::time::Instant;

/// One township's first sync at one rate and loss.
pub struct SlowLineRun {
    pub households: u32,
    pub bytes_per_sec: u64,
    pub loss: f64,
    pub secs: f64,
    pub wire_bytes: u64,
    pub needed_bytes: u64,
    pub requests: u64,
    pub lost: u64,
}

impl SlowLineRun {
    /// Time against what the line needs for the bytes that crossed it.
    pub fn time_ratio(&self) -> f64 {
        self.secs / (self.wire_bytes as f64 / self.bytes_per_sec as f64)
    }

    pub fn bytes_ratio(&self) -> f64 {
        self.wire_bytes as f64 / self.needed_bytes as f64
    }
}

/// Runs every (households, rate, loss) combination, each a fresh township of a fresh county,
/// the node's request timeout at its default (30 s).
pub fn slow_line_runs(households: &[u32], rates: &[u64], losses: &[f64]) -> anyhow::Result<Vec<SlowLineRun>> {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let mut runs = Vec::new();
    let mut township_no = 100;
    for &n in households {
        for &rate in rates {
            for &loss in losses {
                township_no += 1;
                // A fresh province and county each run: every township starts alike, and
                // generated people never meet another run's (they would be held as duplicates).
                let tmp = tempfile::tempdir()?;
                let root = tmp.path();
                let (_province, county) = province_and_county(root)?;
                let township = format!("420322{township_no}");
                let faults = Faults { bytes_per_sec: Some(rate), ..Faults::lossy(loss) };
                let proxy = rt.block_on(FaultProxy::start(county.addr, faults, township_no))?;
                let (node, _) = township_with_households(root, &county, &township, &proxy.url(), n, township_no)?;
                let started = Instant::now();
                sync_until_drained(&node, 50)
                    .with_context(|| format!("at {rate} bytes/s, losing {:.0} % of requests", loss * 100.0))?;
                let secs = started.elapsed().as_secs_f64();
                let db = rusqlite::Connection::open(node.dir.join("node.db"))?;
                let needed: i64 =
                    db.query_row("SELECT COALESCE(SUM(LENGTH(bytes)), 0) FROM envelopes", [], |r| r.get(0))?;
                let s = proxy.stats();
                print_proxy_log(&township, s);
                let run = SlowLineRun {
                    households: n,
                    bytes_per_sec: rate,
                    loss,
                    secs,
                    wire_bytes: s.bytes.load(Ordering::Relaxed),
                    needed_bytes: needed.max(1) as u64,
                    requests: s.requests.load(Ordering::Relaxed),
                    lost: s.dropped.load(Ordering::Relaxed) + s.cut.load(Ordering::Relaxed),
                };
                print_run(&run);
                runs.push(run);
            }
        }
    }
    Ok(runs)
}

/// The table's header; each run prints its own line as it finishes (slow runs take minutes).
pub fn print_header() {
    println!("township first sync through a throttled line (both directions), node → county, request timeout 30 s:");
    println!(
        "  {:>10} {:>9} {:>5} {:>8} {:>10} {:>10} {:>9} {:>11} {:>11}",
        "households", "kbit/s", "loss", "secs", "wire B", "needed B", "requests", "time/limit", "sent/needed"
    );
}

fn print_run(r: &SlowLineRun) {
    println!(
        "  {:>10} {:>9} {:>4.0}% {:>8.1} {:>10} {:>10} {:>9} {:>11.2} {:>11.2}",
        r.households,
        r.bytes_per_sec * 8 / 1000,
        r.loss * 100.0,
        r.secs,
        r.wire_bytes,
        r.needed_bytes,
        format!("{} ({} lost)", r.requests, r.lost),
        r.time_ratio(),
        r.bytes_ratio()
    );
}
