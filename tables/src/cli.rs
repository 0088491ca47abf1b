//! The `table-writer` command line.

use crate::glue::GlueCatalog;
use crate::service::{KEEP_VERSIONS, TableWriter, run as serve};
use clap::{Parser, Subcommand};
use common::config::Config;
use common::services::Services;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tracing::info;

/// Applies each published file, once, to its object's Delta Lake table (docs/tables.md). Runs until SIGTERM (ECS
/// stopping the task) or Ctrl-C. Exit codes: 0 done, 2 usage or configuration, 4 temporary failure.
#[derive(Debug, Parser)]
#[command(version = common::version!(), about)]
pub struct Cli {
    /// Configuration file (TOML, see docs/configuration.md); without it the TOML is read from ZLE_CONFIG_TOML.
    #[arg(long, env = "ZLE_CONFIG", global = true)]
    pub config: Option<PathBuf>,
    /// Without a command, serve the tables queue.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// The writer's commands besides serving.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check the configuration without running anything; print it with the secret masked. Exit 2, naming the
    /// field, when it is wrong.
    CheckConfig,
}

/// How long one receive waits for a completion (SQS's longest long poll).
const RECEIVE_WAIT: Duration = Duration::from_secs(20);

/// Serves the tables queue until `shutdown` resolves, or checks the configuration.
pub async fn run(cli: Cli, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    let config = Config::from_file_or_env(cli.config.as_deref())?;
    if let Some(Command::CheckConfig) = cli.command {
        TableWriter::check(&config)?;
        print!("{}", config.checked()?);
        return Ok(());
    }
    info!(?config, "configuration");
    let services = Services::connect_shared(&config).await?;
    let mut writer = TableWriter::from_config(&config, &services)?;
    if let Some(database) = config.tables.as_ref().and_then(|t| t.glue_database.as_deref()) {
        writer = writer.with_catalog(GlueCatalog::new(&config.aws, database).await);
    }
    let writer = Arc::new(writer);
    serve(writer, RECEIVE_WAIT, KEEP_VERSIONS, shutdown).await;
    Ok(())
}
