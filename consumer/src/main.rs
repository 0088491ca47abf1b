//! The consumer: streams finished AQuA jobs' files into S3.
//!
//! Its worker pool is being built; this binary only answers `--help`
//! and `--version` so far.

use clap::Parser;

/// Streams finished AQuA jobs' files into S3.
#[derive(Parser)]
#[command(version, about)]
struct Cli {}

fn main() {
    Cli::parse();
    eprintln!("consumer: no commands yet; see README.md for what is built");
    std::process::exit(2);
}
