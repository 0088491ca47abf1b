//! The `consumer` command line and the wiring of real services from the configuration.

use crate::relay::RelaySettings;
use crate::relay::compress::Compression;
use crate::relay::pool::PartPool;
use crate::worker::Worker;
use aws_sdk_s3::types::ChecksumAlgorithm;
use clap::Parser;
use common::config::Config;
use common::ledger::Ledger;
use common::queue::SqsQueue;
use common::store::S3Store;
use common::zuora::ZuoraClient;
use std::path::PathBuf;
use std::sync::Arc;
use tracing::info;

/// Streams finished Zuora AQuA jobs' files into S3, verifies their records and announces them to the lake.
/// Runs until SIGTERM (ECS stopping the task) or Ctrl-C.
#[derive(Debug, Parser)]
#[command(version, about)]
pub struct Cli {
    /// Configuration file (TOML, see docs/configuration.md); without it the TOML is read from ZLE_CONFIG_TOML.
    /// The Zuora client secret comes from ZUORA_CLIENT_SECRET.
    #[arg(long, env = "ZLE_CONFIG")]
    pub config: Option<PathBuf>,
}

/// Builds a worker from a configuration.
pub async fn worker_from(config: &Config) -> anyhow::Result<Worker> {
    let catalogue = config.catalogue()?;
    let sdk = config.aws.load().await;
    let sqs = config.aws.sqs_client(&sdk);
    let s3 = config.aws.s3_client(&sdk);
    let queue = |url: &str| -> Arc<SqsQueue> { Arc::new(SqsQueue::new(sqs.clone(), url)) };
    let store = Arc::new(S3Store::new(s3.clone()));
    let settings = config.consumer.clone();
    const MIB: u64 = 1024 * 1024;
    let checksum = match settings.checksum.as_str() {
        "CRC64NVME" => ChecksumAlgorithm::Crc64Nvme,
        _ => ChecksumAlgorithm::Crc32C,
    };
    Ok(Worker {
        zuora: ZuoraClient::new(config.zuora.clone())?,
        s3,
        store: store.clone(),
        ledger: Ledger::new(store, &config.ledger.bucket, &config.ledger.prefix),
        jobs: queue(&config.queues.jobs),
        jobs_dlq: queue(&config.queues.jobs_dlq),
        lake: queue(&config.queues.lake),
        requests: queue(&config.queues.requests),
        catalogue,
        pool: PartPool::new(settings.part_pool_mib * MIB, settings.part_size_mib * MIB),
        relay: RelaySettings {
            part_size: settings.part_size_mib * MIB,
            max_part_size: settings.max_part_size_mib * MIB,
            checksum,
            compression: Compression::from_config(&settings.compression, settings.compression_level)
                .map_err(|e| anyhow::anyhow!(e))?,
        },
        uploads: Arc::default(),
        settings,
    })
}

/// Runs the consumer until `shutdown` resolves.
pub async fn run(cli: Cli, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    let config = Config::from_file_or_env(cli.config.as_deref())?;
    info!(?config, "configuration");
    let worker = Arc::new(worker_from(&config).await?);
    crate::service::run(worker, shutdown).await;
    Ok(())
}
