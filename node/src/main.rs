use clap::Parser;
use std::process::ExitCode;
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let cli = jianka_node::cli::Cli::parse();
    let default = if matches!(cli.command, jianka_node::cli::Command::Run) { "info" } else { "warn" };
    let filter = EnvFilter::try_from_env("JIANKA_LOG").unwrap_or_else(|_| EnvFilter::new(default));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(false).init();
    jianka_node::cli::main_with(cli)
}
