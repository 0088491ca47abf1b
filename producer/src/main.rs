//! The `producer` binary: parses the command line, starts logging, runs the command.

use clap::Parser;
use producer::cli::{Cli, run};
use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    common::logging::init("info");
    let cli = Cli::parse();
    match run(cli, common::shutdown::signal()).await {
        Ok(exit) => exit.into(),
        Err(e) => {
            eprintln!("producer: {e:#}");
            common::exit::Exit::of_failure(e.chain()).into()
        }
    }
}
