//! The `consumer` binary: parses the command line, starts logging, runs until SIGTERM.

use clap::Parser;
use consumer::cli::{Cli, run};
use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    common::logging::init("info");
    match run(Cli::parse(), common::shutdown::signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("consumer: {e:#}");
            common::exit::Exit::of_failure(e.chain()).into()
        }
    }
}
