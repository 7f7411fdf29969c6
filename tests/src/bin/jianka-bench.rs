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
            hub(30_000, 6_000_000, 100, None)?;
        }
    }
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
