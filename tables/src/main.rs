//! The `table-writer` binary: parses the command line, starts logging, runs until SIGTERM.

use clap::Parser;
use std::process::ExitCode;
use table_writer::cli::{Cli, run};

#[tokio::main]
async fn main() -> ExitCode {
    common::logging::init("info");
    match run(Cli::parse(), common::shutdown::signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("table-writer: {e:#}");
            common::exit::Exit::of_failure(e.chain()).into()
        }
    }
}
