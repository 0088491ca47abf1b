//! The `producer` command line and the wiring of real services from the configuration.

use crate::audit::{Auditor, RepairLimits};
use crate::service::{self, Producer, RequestError, TransientError};
use crate::status;
use anyhow::{Context, bail};
use chrono::{NaiveDate, Utc};
use clap::{Parser, Subcommand, ValueEnum};
use common::config::{Config, ConfigError};
use common::exit::Exit;
use common::ledger::{Ledger, LedgerError};
use common::messages::{ExportFrom, ExportRequest, MESSAGE_VERSION};
use common::queue::{OutgoingMessage, RedriveReport, dead_letters, redrive};
use common::services::Services;
use std::path::PathBuf;
use tracing::info;

/// Turns Zuora export requests into AQuA jobs for the consumers, and keeps a ledger so that no job is lost.
/// Exit codes: 0 done, 1 found (status: stale; audit: a difference), 2 usage or configuration, 3 refused,
/// 4 temporary failure (retry), 130 stopped by a second Ctrl-C.
#[derive(Debug, Parser)]
#[command(version = common::version!(), about)]
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
        #[arg(long, value_enum)]
        queue: QueueName,
        /// List each dead letter (id, receives, reason, body) and leave them all where they are.
        #[arg(long)]
        dry_run: bool,
    },
    /// Show how fresh each object is in the lake; exit 1 when any is older than the threshold.
    Status {
        /// Threshold in hours (default: producer.stale_after_hours of the configuration).
        #[arg(long)]
        stale_after_hours: Option<u64>,
        /// A JSON document instead of the table (docs/operations.md, "Automation").
        #[arg(long, conflicts_with = "metrics")]
        json: bool,
        /// Also write the count of stale objects as a CloudWatch embedded-metric line (`StaleObjects`), for the
        /// staleness alarm; the scheduled status task runs with it.
        #[arg(long)]
        metrics: bool,
    },
    /// Check the configuration (and the catalogue it names) without running anything; print it with the secret
    /// masked. Exit 2, naming the field, when it is wrong.
    CheckConfig,
    /// Compare the lake with Zuora, row by row: a stateless job of every Id and UpdatedDate per object against the
    /// lake's files merged; print a line per object; exit 1 when a row differs.
    Audit {
        /// Only these objects (comma-separated); all catalogue objects when left out.
        #[arg(long, value_delimiter = ',')]
        objects: Vec<String>,
        /// Write each differing object's rows to DIR/<object>.differences.csv (id, problem, both UpdatedDates).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Mend what is found: a backfill request for missing and differing rows, a published file of deletions
        /// for rows Zuora no longer has.
        #[arg(long)]
        repair: bool,
        /// The largest share of an object's rows in the lake, in percent, that a repair deletes; a repair that
        /// would delete more deletes nothing, lists what it would have deleted and exits 3.
        #[arg(long, default_value_t = 1.0, value_name = "PERCENT")]
        max_delete_percent: f64,
        /// Repair whatever the share of rows it deletes.
        #[arg(long, requires = "repair")]
        force: bool,
    },
}

/// The queues that have a DLQ.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum QueueName {
    /// Export requests.
    Requests,
    /// Submitted jobs.
    Jobs,
    /// Completion messages.
    Lake,
    /// The table writer's completions (`queues.tables`, when configured).
    Tables,
}

/// Runs a command; the exit says how it ended. A failure's exit comes from what failed
/// ([`Exit::of_failure`]).
pub async fn run(cli: Cli, shutdown: impl Future<Output = ()>) -> anyhow::Result<Exit> {
    let config = Config::from_file_or_env(cli.config.as_deref())?;
    if let Command::CheckConfig = cli.command {
        print!("{}", config.checked()?);
        return Ok(Exit::Success);
    }
    info!(?config, "configuration");
    let services = Services::connect_shared(&config).await?;
    if matches!(cli.command, Command::Serve | Command::Submit { .. }) {
        let ledger = Ledger::new(services.store.clone(), &config.ledger.bucket, &config.ledger.prefix);
        ledger.prove_conditional_writes().await.context("the ledger's store (ledger.bucket)")?;
    }
    match cli.command {
        Command::CheckConfig => Ok(Exit::Success),
        Command::Serve => {
            let producer = Producer::from_config(&config, &services)?;
            service::run(&producer, &services.queues.requests_inbox(), &config.producer, shutdown).await;
            Ok(Exit::Success)
        }
        Command::Submit { request } => submit(&config, &services, &request, shutdown).await,
        Command::Backfill { from, objects } => backfill(&config, &services, from, objects).await,
        Command::Redrive { queue, dry_run } => redrive_dead_letters(&config, &services, queue, dry_run).await,
        Command::Audit { objects, out, repair, max_delete_percent, force } => {
            if !(0.0..=100.0).contains(&max_delete_percent) {
                eprintln!("producer: --max-delete-percent: {max_delete_percent} is not a percentage (0 to 100)");
                return Ok(Exit::Usage);
            }
            let limits = RepairLimits { max_delete_share: max_delete_percent / 100.0, force };
            audit(&config, &services, &objects, out, repair.then_some(limits)).await
        }
        Command::Status { stale_after_hours, json, metrics } => {
            status(&config, &services, stale_after_hours, json, metrics).await
        }
    }
}

/// `producer submit`: serves `request` at once, as `serve` does a queued one.
async fn submit(
    config: &Config,
    services: &Services,
    request: &str,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<Exit> {
    let producer = Producer::from_config(config, services)?;
    let key = submit_key(Utc::now());
    let mut shutdown = std::pin::pin!(shutdown);
    // As `serve` does with a queued request: while Zuora is busy the same request (same key: what was submitted
    // stays submitted) is tried again.
    let served = loop {
        match producer.serve(request, &key).await {
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
    match served {
        Ok(served) => {
            println!("request {}: jobs {}", served.request_key, served.job_ids.join(", "));
            Ok(Exit::Success)
        }
        Err(e) => {
            eprintln!("producer: request not served: {e}");
            Ok(exit_of(&e))
        }
    }
}

/// `producer backfill`: queues a request for `objects`' changes since `from`, checked as the producer will.
async fn backfill(config: &Config, services: &Services, from: NaiveDate, objects: Vec<String>) -> anyhow::Result<Exit> {
    let request = ExportRequest {
        version: MESSAGE_VERSION,
        export_from_date: ExportFrom::Date(from),
        objects: (!objects.is_empty()).then_some(objects),
        full_export: false,
        request_id: Some(format!("backfill-{from}-{}", Utc::now().format("%Y%m%dT%H%M%SZ"))),
        window: None,
    };
    let catalogue = config.catalogue()?;
    let names: Vec<&str> = catalogue.objects.iter().map(|o| o.name.as_str()).collect();
    let body = serde_json::to_string(&request)?;
    if let Err(refused) = ExportRequest::parse(&body, &names, Utc::now()) {
        eprintln!("producer: backfill refused: {refused}");
        return Ok(Exit::Refused);
    }
    let id = services.queues.requests.send(OutgoingMessage::new(body.clone())).await?;
    println!("queued {body} as message {id}");
    println!("it exports {}", crate::plan::backfill_explained(from, config.zuora.data_center));
    Ok(Exit::Success)
}

/// `producer redrive`: lists a DLQ's messages (`--dry-run`), or moves them back to their queue.
async fn redrive_dead_letters(
    config: &Config,
    services: &Services,
    name: QueueName,
    dry_run: bool,
) -> anyhow::Result<Exit> {
    let q = &config.queues;
    let (dlq, source) = match name {
        QueueName::Requests => (&q.requests_dlq, &q.requests),
        QueueName::Jobs => (&q.jobs_dlq, &q.jobs),
        QueueName::Lake => (&q.lake_dlq, &q.lake),
        QueueName::Tables => match (&q.tables_dlq, &q.tables) {
            (Some(dlq), Some(source)) => (dlq, source),
            _ => return Err(ConfigError::unusable("queues.tables: not configured, nothing to redrive").into()),
        },
    };
    let queue = |url: &str| services.sqs_queue(url).ok_or_else(|| anyhow::anyhow!("{url}: not an SQS queue"));
    if dry_run {
        let letters = dead_letters(&queue(dlq)?).await?;
        for letter in &letters {
            println!("{}  receives {}  reason: {}", letter.id, letter.receive_count, letter.reason);
            println!("    {}", letter.body);
        }
        println!(
            "{} dead letter(s) in {dlq}, left in place; without --dry-run they go back to {source}",
            letters.len()
        );
        return Ok(Exit::Success);
    }
    match redrive(&queue(dlq)?, &queue(source)?).await? {
        RedriveReport::Native { task_handle, messages } => {
            println!("started an SQS move task for {messages} messages from {dlq} to {source} ({task_handle})");
        }
        RedriveReport::Manual { moved } => println!("moved {moved} messages from {dlq} to {source}"),
    }
    Ok(Exit::Success)
}

/// `producer audit`: each object's Ids and dates in the lake against Zuora's; `--repair` (`repair`) mends the
/// differences within its limits.
async fn audit(
    config: &Config,
    services: &Services,
    objects: &[String],
    out: Option<PathBuf>,
    repair: Option<RepairLimits>,
) -> anyhow::Result<Exit> {
    let auditor = Auditor::from_config(config, services)?;
    let catalogue = config.catalogue()?;
    let objects = match catalogue.select(objects) {
        Ok(objects) => objects,
        Err(unknown) => {
            eprintln!("producer: --objects: not in the catalogue: {}", unknown.join(", "));
            return Ok(Exit::Usage);
        }
    };
    let (mut different, mut held_back) = (0, 0);
    for object in objects {
        let audit = auditor.audit(object).await.with_context(|| format!("auditing {}", object.name))?;
        println!("{}", audit.summary());
        if audit.is_equal() {
            continue;
        }
        different += 1;
        if let Some(dir) = &out {
            std::fs::create_dir_all(dir)?;
            let path = dir.join(format!("{}.differences.csv", object.name));
            std::fs::write(&path, audit.differences_csv())?;
            println!("  rows: {}", path.display());
        }
        if let Some(limits) = repair {
            let repaired = auditor.repair(object, &audit, limits).await?;
            for done in repaired.done {
                println!("  {done}");
            }
            held_back += usize::from(repaired.held_back);
        }
    }
    if held_back > 0 {
        eprintln!("producer: {held_back} object(s) not repaired: more rows to delete than --max-delete-percent");
        return Ok(Exit::Refused);
    }
    if different > 0 {
        eprintln!("producer: {different} object(s) differ from Zuora");
        return Ok(Exit::Found);
    }
    Ok(Exit::Success)
}

/// `producer status`: each object's latest published increment, and whether it is stale.
async fn status(
    config: &Config,
    services: &Services,
    stale_after_hours: Option<u64>,
    json: bool,
    metrics: bool,
) -> anyhow::Result<Exit> {
    let hours = stale_after_hours.unwrap_or(config.producer.stale_after_hours);
    let now = Utc::now();
    let ledger = Ledger::new(services.store.clone(), &config.ledger.bucket, &config.ledger.prefix);
    let catalogue = config.catalogue()?;
    let statuses = status::object_statuses(&ledger, &catalogue, now, chrono::Duration::hours(hours as i64))
        .await
        .context("reading the published marks")?;
    if json {
        println!("{}", status::json(&statuses, now, hours));
    } else {
        print!("{}", status::render(&statuses, now));
    }
    if metrics {
        println!("{}", status::emf_line(&statuses, now));
    }
    let stale = statuses.iter().filter(|s| s.stale).count();
    if stale > 0 {
        eprintln!("producer: {stale} object(s) older than {hours} h");
        return Ok(Exit::Found);
    }
    Ok(Exit::Success)
}

/// The exit of a request `submit` could not serve.
fn exit_of(error: &RequestError) -> Exit {
    let failed: &(dyn std::error::Error + 'static) = match error {
        RequestError::Rejected(_) => return Exit::Refused,
        RequestError::Busy(_) => return Exit::Temporary,
        RequestError::Transient(TransientError::Ledger(LedgerError::Store(e))) => e,
        RequestError::Transient(TransientError::Ledger(e)) => e,
        RequestError::Transient(TransientError::Queue(e)) => e,
        RequestError::Transient(TransientError::Zuora(e)) => e,
    };
    Exit::of_failure([failed])
}

/// The request key of a `producer submit` run: its own each run, like a queued request's message id.
pub fn submit_key(now: chrono::DateTime<Utc>) -> String {
    format!("cli-{}", now.format("%Y%m%dT%H%M%S%.6fZ"))
}
