//! The `consumer` command line and the wiring of real services from the configuration.

use crate::worker::Worker;
use clap::{Parser, Subcommand};
use common::config::Config;
use common::services::Services;
use std::path::PathBuf;
use std::sync::Arc;
use tracing::info;

/// Streams finished Zuora AQuA jobs' files into S3, verifies their records and announces them to the lake.
/// Runs until SIGTERM (ECS stopping the task) or Ctrl-C. Exit codes: 0 done, 2 usage or configuration,
/// 4 temporary failure, 130 stopped by a second Ctrl-C.
#[derive(Debug, Parser)]
#[command(version = common::version!(), about)]
pub struct Cli {
    /// Configuration file (TOML, see docs/configuration.md); without it the TOML is read from ZLE_CONFIG_TOML.
    /// The Zuora client secret comes from ZUORA_CLIENT_SECRET.
    #[arg(long, env = "ZLE_CONFIG", global = true)]
    pub config: Option<PathBuf>,
    /// Without a command, serve the jobs queue.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// The consumer's commands besides serving.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check the configuration (and the catalogue it names) without running anything; print it with the secret
    /// masked. Exit 2, naming the field, when it is wrong.
    CheckConfig,
}

/// Runs the consumer until `shutdown` resolves, or checks its configuration.
pub async fn run(cli: Cli, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    let config = Config::from_file_or_env(cli.config.as_deref())?;
    if let Some(Command::CheckConfig) = cli.command {
        print!("{}", config.checked()?);
        return Ok(());
    }
    info!(?config, "configuration");
    let services = Services::connect_shared(&config).await?;
    let worker = Arc::new(Worker::from_config(&config, &services)?);
    crate::service::run(worker, shutdown).await;
    Ok(())
}
