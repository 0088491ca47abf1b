//! The producer: turns export requests into Zuora AQuA jobs on the jobs queue.
//!
//! Its commands (serve, submit, backfill, redrive, status) are being built; this binary only answers `--help`
//! and `--version` so far.

use clap::Parser;

/// Turns export requests into Zuora AQuA jobs.
#[derive(Parser)]
#[command(version, about)]
struct Cli {}

fn main() {
    Cli::parse();
    eprintln!("producer: no commands yet; see README.md for what is built");
    std::process::exit(2);
}
