//! The `table-writer` binary: parses the command line, starts logging, runs until SIGTERM.

use clap::Parser;
use std::process::ExitCode;
use table_writer::cli::{Cli, run};

#[tokio::main]
async fn main() -> ExitCode {
    // The Delta kernel logs every snapshot it builds at info: a line per file read, more than the file itself.
    common::logging::init("info,buoyant_kernel=warn,deltalake_core=warn");
    match run(Cli::parse(), common::shutdown::signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("table-writer: {e:#}");
            common::exit::Exit::of_failure(e.chain()).into()
        }
    }
}
