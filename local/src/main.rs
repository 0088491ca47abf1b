//! `local-export`: the quick start. Runs a complete export on embedded defaults and prints a summary.

use clap::Parser;
use local_export::quickstart::{self, Options};
use std::path::PathBuf;
use std::process::ExitCode;

/// Runs a whole Zuora export locally: the AQuA simulator, in-memory queues and a lake in a directory, with the
/// real producer and consumers. A first export (full loads), changes at Zuora, a second export (increments) and a
/// date backfill; then every file is checked and a summary printed.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    /// The lake directory: s3://BUCKET/KEY is LAKE_DIR/BUCKET/KEY. What an earlier run left there is replaced.
    #[arg(long, default_value = "lake")]
    lake_dir: PathBuf,
    /// A configuration in place of the embedded deploy/examples/local.toml (memory:// queues).
    #[arg(long)]
    config: Option<PathBuf>,
    /// A catalogue in place of the configuration's: a file, or builtin:old-export (the old export's thirteen
    /// queries, its per-object buckets and its fixed keys).
    #[arg(long)]
    catalogue: Option<PathBuf>,
    /// Consumer services in the process (each with its own part pool).
    #[arg(long, default_value_t = 2)]
    consumers: usize,
}

#[tokio::main]
async fn main() -> ExitCode {
    common::logging::init("warn");
    let cli = Cli::parse();
    let options =
        Options { lake_dir: cli.lake_dir, config: cli.config, catalogue: cli.catalogue, consumers: cli.consumers };
    match quickstart::run(&options).await {
        Ok(report) => {
            print!("{}", quickstart::summary(&report));
            println!("completion messages: {}", options.lake_dir.join(quickstart::COMPLETIONS_FILE).display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("local-export: {e:#}");
            ExitCode::FAILURE
        }
    }
}
