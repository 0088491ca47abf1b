//! The `producer` binary: parses the command line, starts logging, runs the command.

use clap::Parser;
use producer::cli::{Cli, run};
use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match run(cli, common::shutdown::signal()).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("producer: {e:#}");
            ExitCode::from(2)
        }
    }
}
