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
}

fn main() {
    let cli = Cli::parse();
    match cli.what.unwrap_or(What::Changeset { records: 10_000 }) {
        What::Changeset { records } => bench_support::print_changeset(&bench_support::changeset_figures(records)),
    }
}
