//! `jianka-bench`: prints Jianka's performance figures, each beside a baseline measured in the
//! same run. See BENCHMARKS.md for the latest figures and the machine they came from.

use clap::{Parser, Subcommand};
use jianka_tests::bench_support;

#[derive(Parser)]
#[command(about = "Measure Jianka and print figures beside same-run baselines", long_about = None)]
struct Cli {
    #[command(subcommand)]
    what: Option<What>,
}

#[derive(Subcommand)]
enum What {
    /// Change-set encode/decode speed and wire size against zstd -19 of the same records as CSV.
    Changeset {
        /// Member records per change set.
        #[arg(long, default_value_t = 10_000)]
        records: usize,
    },
    /// A township's first sync (node push throughput), clean and through a lossy link.
    Sync {
        #[arg(long, default_value_t = 5_000)]
        households: u32,
        /// Share of requests the lossy link loses (half dropped before the hub, half cut after).
        #[arg(long, default_value_t = 0.3)]
        loss: f64,
    },
    /// A county's forward to its province (about 100,000 records), clean and through a lossy link.
    Forward {
        /// Households of one township the county holds (with their members: ~4.16 records each; 24,100 make ~100,000).
        #[arg(long, default_value_t = 24_100)]
        households: u32,
        /// Share of requests the lossy link loses (half dropped before the province, half cut after).
        #[arg(long, default_value_t = 0.3)]
        loss: f64,
    },
    /// A township's first sync through a line throttled in both directions, clean and lossy,
    /// measured against the line's own limit (takes about a quarter of an hour at the defaults).
    SlowLine {
        /// Households of the township (one run per size).
        #[arg(long, value_delimiter = ',', default_value = "300,2000")]
        households: Vec<u32>,
        /// Line rates in kbit/s (one run per rate; 8 kbit/s = 1,000 bytes/s).
        #[arg(long, value_delimiter = ',', default_value = "8,32,128")]
        kbits: Vec<u64>,
        /// Share of requests the lossy runs lose (half cut part-way up, half cut on the way back).
        #[arg(long, default_value_t = 0.3)]
        loss: f64,
    },
    /// Import speed of a 100,000-row 扶贫手册 and the idle daemon's memory.
    Node {
        #[arg(long, default_value_t = 100_000)]
        rows: usize,
    },
    /// Hub ingest beside a plain SQLite insert of the same rows, and a province consolidation
    /// (runs the hub's `ingest_bench` example, which drives the hub library in-process).
    Hub {
        #[arg(long, default_value_t = 30_000)]
        members: usize,
        #[arg(long, default_value_t = 6_000_000)]
        province_people: usize,
        #[arg(long, default_value_t = 100)]
        counties: usize,
        /// PostgreSQL URL for the province run on PostgreSQL too (default: $JIANKA_TEST_PG if set).
        #[arg(long)]
        pg: Option<String>,
    },
    /// Everything, in one run.
    All,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.what.unwrap_or(What::All) {
        What::Changeset { records } => bench_support::print_changeset(&bench_support::changeset_figures(records)),
        What::Sync { households, loss } => bench_support::print_sync(&bench_support::sync_figures(households, loss)?),
        What::Forward { households, loss } => {
            bench_support::print_forward(&bench_support::forward_figures(households, loss)?)
        }
        What::SlowLine { households, kbits, loss } => slow_line(&households, &kbits, loss)?,
        What::Node { rows } => bench_support::print_node(&bench_support::node_figures(rows)?),
        What::Hub { members, province_people, counties, pg } => hub(members, province_people, counties, pg)?,
        What::All => {
            bench_support::print_changeset(&bench_support::changeset_figures(10_000));
            println!();
            bench_support::print_sync(&bench_support::sync_figures(5_000, 0.3)?);
            println!();
            bench_support::print_forward(&bench_support::forward_figures(24_100, 0.3)?);
            println!();
            bench_support::print_node(&bench_support::node_figures(100_000)?);
            println!();
            slow_line(&[300, 2_000], &[8, 32, 128], 0.3)?;
            println!();
            hub(30_000, 6_000_000, 100, None)?;
        }
    }
    Ok(())
}

fn slow_line(households: &[u32], kbits: &[u64], loss: f64) -> anyhow::Result<()> {
    use jianka_tests::bench_slow_line::{print_header, slow_line_runs};
    print_header();
    let rates: Vec<u64> = kbits.iter().map(|k| k * 1000 / 8).collect();
    slow_line_runs(households, &rates, &[0.0, loss])?;
    Ok(())
}

fn hub(members: usize, province_people: usize, counties: usize, pg: Option<String>) -> anyhow::Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut c = std::process::Command::new(cargo);
    c.args(["run", "--quiet", "--release", "-p", "jianka-hub", "--example", "ingest_bench", "--"]);
    c.args(["--members", &members.to_string()]);
    c.args(["--province-people", &province_people.to_string(), "--counties", &counties.to_string()]);
    if let Some(url) = pg.or_else(|| std::env::var("JIANKA_TEST_PG").ok()) {
        c.args(["--pg", &url]);
    }
    let status = c.status()?;
    anyhow::ensure!(status.success(), "the hub benchmark failed: {status}");
    Ok(())
}
