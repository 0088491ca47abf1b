//! `full`: a full export of the catalogue, measured on Tokio's paused clock. The simulator's Zuora takes a time of
//! its own over every job (an overhead however small the job, plus a pace per record), runs at most 50 at once, and
//! the real producer and consumer services (at their defaults, as many consumer tasks as the stack runs at most)
//! export every object from `full_export.earliest`. It reports how many Zuora jobs the export took and how long it
//! took from the request to the last file published. Times are simulated: Zuora's pace and the services' waits, not
//! this machine's speed (the files' transfer takes real time and no simulated time).
//!
//! Usage: `cargo run --release -p chaos --bin full -- [--rows N] [--objects A,B] [--job-overhead-secs S]
//! [--secs-per-record S] [--window-months M]`.

use chrono::{DateTime, Utc};
use clap::Parser;
use common::clock::Clock;
use common::config::Config;
use common::messages::CompletionMessage;
use common::queue::{OutgoingMessage, QueueDepth};
use common::services::Services;
use std::collections::BTreeMap;
use std::time::Duration;
use tokio::sync::watch;
use zuora_sim::{SimConfig, Simulator};

/// Measures a full export of the catalogue.
#[derive(Debug, Parser)]
#[command(about)]
struct Cli {
    /// Rows of each exported object (the simulator's defaults, the quick start's size, when absent).
    #[arg(long)]
    rows: Option<u64>,
    /// Only these objects (comma-separated); the whole catalogue when left out.
    #[arg(long, value_delimiter = ',')]
    objects: Vec<String>,
    /// Zuora's time over any job, however small (queueing and set-up), seconds.
    #[arg(long, default_value_t = 60.0)]
    job_overhead_secs: f64,
    /// Zuora's time per record a job returns, seconds (0.00002: 50,000 records a second).
    #[arg(long, default_value_t = 0.00002)]
    secs_per_record: f64,
    /// `full_export.window_months`.
    #[arg(long, default_value_t = 1)]
    window_months: u32,
    /// Consumer tasks (the stack's default `MaxConsumerTasks`), each with its default jobs in flight.
    #[arg(long, default_value_t = 4)]
    consumers: usize,
}

fn main() -> anyhow::Result<()> {
    chaos::on_paused_clock(run(Cli::parse()))
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let start: DateTime<Utc> = "2026-11-02T05:00:00Z".parse()?;
    let mut sim_config = SimConfig { clock_start: Some(start), render_inline: true, ..SimConfig::default() };
    // Rows created from 2020 to the export's day.
    sim_config.genesis = "2020-01-01T00:00:00Z".parse()?;
    sim_config.history_days = 2496;
    sim_config.settings.job_queue_secs = 0.0;
    sim_config.settings.job_execution_secs = cli.job_overhead_secs;
    sim_config.settings.execution_secs_per_record = cli.secs_per_record;
    let dir = std::env::temp_dir().join(format!("full-{:016x}", rand::random::<u64>()));
    let mut config = Config::parse(local_export::quickstart::LOCAL_CONFIG, "full", None)?;
    config.aws.local_dir = Some(dir.clone());
    config.producer = common::config::ProducerSettings::default();
    config.consumer = common::config::ConsumerSettings { emf_metrics: false, ..Default::default() };
    config.full_export.earliest = "2020-01-01".parse()?;
    config.full_export.window_months = cli.window_months;
    let catalogue = config.catalogue()?;
    let objects: Vec<String> = match cli.objects.is_empty() {
        true => catalogue.objects.iter().map(|o| o.name.clone()).collect(),
        false => cli.objects.clone(),
    };
    if let Some(rows) = cli.rows {
        sim_config.rows = objects.iter().map(|o| (o.clone(), rows)).collect();
    }
    let sim = Simulator::start(sim_config).await?;
    let control = sim.control();
    config.zuora.base_url = sim.base_url();
    let services = Services::connect(&config).await;
    let clock = Clock::following_tokio(start);
    let (stop, stopped) = watch::channel(false);
    let tasks = chaos::world::spawn_services(&config, &services, clock, cli.consumers, &stopped)?;

    let request = serde_json::json!({"exportFromDate": "beginning", "fullExport": true, "objects": objects});
    services.queues.requests.send(OutgoingMessage::new(request.to_string())).await?;
    let (mut files, mut records, mut last) = (0u64, 0u64, start);
    let mut settled_checks = 0;
    while settled_checks < 3 {
        for message in services.queues.lake.receive(10, Duration::from_secs(20)).await? {
            let completion: CompletionMessage = serde_json::from_str(&message.body)?;
            services.queues.lake.delete(&message.receipt).await?;
            files += 1;
            records += completion.record_count;
            last = clock.now();
        }
        let queues = [&services.queues.requests, &services.queues.jobs, &services.queues.lake];
        let mut idle = control.jobs().iter().all(|j| !matches!(j.status.as_str(), "submitted" | "executing"));
        for queue in queues {
            idle &= queue.depth().await? == QueueDepth::default();
        }
        settled_checks = if idle { settled_checks + 1 } else { 0 };
        anyhow::ensure!(clock.now() - start < chrono::TimeDelta::days(30), "the export did not finish in 30 days");
    }
    let _ = stop.send(true);
    for task in tasks {
        let _ = task.await;
    }
    let _ = std::fs::remove_dir_all(&dir);
    for dlq in [&services.queues.requests_dlq, &services.queues.jobs_dlq] {
        anyhow::ensure!(dlq.depth().await? == QueueDepth::default(), "a message went to {}", dlq.name());
    }

    let jobs = control.jobs();
    let mut per_object: BTreeMap<String, usize> = BTreeMap::new();
    for job in &jobs {
        for batch in &job.batches {
            *per_object.entry(batch.name.clone().unwrap_or_default()).or_default() += 1;
        }
    }
    let hours = (last - start).num_seconds() as f64 / 3600.0;
    println!(
        "full export of {} objects ({} rows each), Zuora: {} s a job + {} s a record, window_months {}",
        objects.len(),
        cli.rows.map_or("the simulator's default".to_owned(), |r| r.to_string()),
        cli.job_overhead_secs,
        cli.secs_per_record,
        cli.window_months
    );
    println!("Zuora jobs: {} ({} aborted); files: {files}; records: {records}", jobs.len(), aborted(&jobs));
    println!("from the request to the last file published: {hours:.2} h (simulated)");
    println!("jobs per object: {per_object:?}");
    Ok(())
}

fn aborted(jobs: &[zuora_sim::JobSummary]) -> usize {
    jobs.iter().filter(|j| j.status == "aborted").count()
}
