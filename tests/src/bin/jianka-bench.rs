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
    /// Everything, in one run.
    All,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.what.unwrap_or(What::All) {
        What::Changeset { records } => bench_support::print_changeset(&bench_support::changeset_figures(records)),
        What::Sync { households, loss } => bench_support::print_sync(&bench_support::sync_figures(households, loss)?),
        What::All => {
            bench_support::print_changeset(&bench_support::changeset_figures(10_000));
            println!();
            bench_support::print_sync(&bench_support::sync_figures(5_000, 0.3)?);
        }
    }
    Ok(())
}
