//! The `producer` command line and the wiring of real services from the configuration.

use crate::service::{self, Producer, RequestError};
use crate::status;
use anyhow::bail;
use chrono::{NaiveDate, Utc};
use clap::{Parser, Subcommand, ValueEnum};
use common::config::Config;
use common::ledger::Ledger;
use common::messages::{ExportFrom, ExportRequest, MESSAGE_VERSION};
use common::queue::{OutgoingMessage, RedriveReport, redrive};
use common::services::Services;
use common::zuora::ZuoraClient;
use std::path::PathBuf;
use std::process::ExitCode;
use tracing::info;

/// Turns Zuora export requests into AQuA jobs for the consumers, and keeps a ledger so that no job is lost.
#[derive(Debug, Parser)]
#[command(version, about)]
pub struct Cli {
    /// Configuration file (TOML, see docs/configuration.md); without it the TOML is read from ZLE_CONFIG_TOML.
    /// The Zuora client secret comes from ZUORA_CLIENT_SECRET.
    #[arg(long, env = "ZLE_CONFIG", global = true)]
    pub config: Option<PathBuf>,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The producer's commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Long-poll the requests queue and serve requests until SIGTERM or Ctrl-C.
    Serve,
    /// Serve one request given on the command line, through the same code path as `serve`.
    Submit {
        /// The request, e.g. '{"exportFromDate":"afterLastIncrement"}' or '{"exportFromDate":"2022-05-04"}'.
        request: String,
    },
    /// Put a backfill request (changes since a date) on the requests queue.
    Backfill {
        /// Export changes since 00:00 UTC of this date (yyyy-mm-dd).
        #[arg(long)]
        from: NaiveDate,
        /// Only these objects (comma-separated); all catalogue objects when left out.
        #[arg(long, value_delimiter = ',')]
        objects: Vec<String>,
    },
    /// Move a dead-letter queue's messages back to the queue they came from.
    Redrive {
        /// Which queue's dead letters.
        #[arg(long, value_enum, default_value_t = QueueName::Requests)]
        queue: QueueName,
    },
    /// Show how fresh each object is in the lake; exit 1 when any is older than the threshold.
    Status {
        /// Threshold in hours (default: producer.stale_after_hours of the configuration).
        #[arg(long)]
        stale_after_hours: Option<u64>,
    },
}

/// The three queues.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum QueueName {
    /// Export requests.
    Requests,
    /// Submitted jobs.
    Jobs,
    /// Completion messages.
    Lake,
}

/// Runs a command; the exit code says how it ended.
pub async fn run(cli: Cli, shutdown: impl Future<Output = ()>) -> anyhow::Result<ExitCode> {
    let config = Config::from_file_or_env(cli.config.as_deref())?;
    info!(?config, "configuration");
    let catalogue = config.catalogue()?;
    let services = Services::connect_shared(&config).await?;
    let queues = &services.queues;
    let ledger = Ledger::new(services.store.clone(), &config.ledger.bucket, &config.ledger.prefix);

    match cli.command {
        Command::Serve | Command::Submit { .. } => {
            let producer = producer_from(&config, &services)?;
            if let Command::Submit { request } = cli.command {
                let key = submit_key(Utc::now());
                let mut shutdown = std::pin::pin!(shutdown);
                // As `serve` does with a queued request: while Zuora is busy the same request (same key: what was
                // submitted stays submitted) is tried again.
                let served = loop {
                    match producer.serve(&request, &key).await {
                        Err(RequestError::Busy(e)) => {
                            let delay = std::time::Duration::from_secs(config.producer.busy_retry_secs);
                            eprintln!("producer: {e}; trying again in {} s (Ctrl-C to stop)", delay.as_secs());
                            tokio::select! {
                                () = tokio::time::sleep(delay) => {}
                                () = &mut shutdown => bail!("request not served: stopped while Zuora was busy"),
                            }
                        }
                        served => break served,
                    }
                };
                return match served {
                    Ok(served) => {
                        println!("request {}: jobs {}", served.request_key, served.job_ids.join(", "));
                        Ok(ExitCode::SUCCESS)
                    }
                    Err(RequestError::Rejected(reason)) => {
                        eprintln!("producer: request refused: {reason}");
                        Ok(ExitCode::from(2))
                    }
                    Err(e) => bail!("request not served: {e}"),
                };
            }
            service::run(&producer, &*queues.requests, &*queues.requests_dlq, &config.producer, shutdown).await;
            Ok(ExitCode::SUCCESS)
        }
        Command::Backfill { from, objects } => {
            let request = ExportRequest {
                version: MESSAGE_VERSION,
                export_from_date: ExportFrom::Date(from),
                objects: (!objects.is_empty()).then_some(objects),
                full_export: false,
                request_id: Some(format!("backfill-{from}-{}", Utc::now().format("%Y%m%dT%H%M%SZ"))),
                window: None,
            };
            let names: Vec<&str> = catalogue.objects.iter().map(|o| o.name.as_str()).collect();
            let body = serde_json::to_string(&request)?;
            ExportRequest::parse(&body, &names, Utc::now()).map_err(|e| anyhow::anyhow!("{e}"))?;
            let id = queues.requests.send(OutgoingMessage::new(body.clone())).await?;
            println!("queued {body} as message {id}");
            println!("it exports {}", crate::plan::backfill_explained(from, config.zuora.data_center));
            Ok(ExitCode::SUCCESS)
        }
        Command::Redrive { queue: name } => {
            let q = &config.queues;
            let (dlq, source) = match name {
                QueueName::Requests => (&q.requests_dlq, &q.requests),
                QueueName::Jobs => (&q.jobs_dlq, &q.jobs),
                QueueName::Lake => (&q.lake_dlq, &q.lake),
            };
            let queue = |url: &str| services.sqs_queue(url).ok_or_else(|| anyhow::anyhow!("{url}: not an SQS queue"));
            match redrive(&queue(dlq)?, &queue(source)?).await? {
                RedriveReport::Native { task_handle, messages } => {
                    println!("started an SQS move task for {messages} messages from {dlq} to {source} ({task_handle})");
                }
                RedriveReport::Manual { moved } => println!("moved {moved} messages from {dlq} to {source}"),
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Status { stale_after_hours } => {
            let hours = stale_after_hours.unwrap_or(config.producer.stale_after_hours);
            let now = Utc::now();
            let statuses =
                status::object_statuses(&ledger, &catalogue, now, chrono::Duration::hours(hours as i64)).await?;
            print!("{}", status::render(&statuses, now));
            let stale = statuses.iter().filter(|s| s.stale).count();
            if stale > 0 {
                eprintln!("producer: {stale} object(s) older than {hours} h");
                return Ok(ExitCode::from(1));
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Builds a producer from a configuration and the services it names (its Zuora client needs the secret).
pub fn producer_from(config: &Config, services: &Services) -> anyhow::Result<Producer> {
    Ok(Producer::new(
        ZuoraClient::new(config.zuora.clone())?,
        Ledger::new(services.store.clone(), &config.ledger.bucket, &config.ledger.prefix),
        services.queues.jobs.clone(),
        config.catalogue()?,
        config.session.clone(),
        config.full_export.clone(),
    ))
}

/// The request key of a `producer submit` run: its own each run, like a queued request's message id.
pub fn submit_key(now: chrono::DateTime<Utc>) -> String {
    format!("cli-{}", now.format("%Y%m%dT%H%M%S%.6fZ"))
}
