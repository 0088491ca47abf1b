//! `daily`: the daily run, measured on Tokio's paused clock. The thirteen objects of the old export's queries
//! (`builtin:old-export`), a day of changes at Zuora each day, the daily request each morning, Zuora taking a
//! while over the job (drawn per day); the real producer and consumer services at their default timings, on
//! in-memory queues and a local-directory lake. For each day: how long after Zuora finished the job the lake
//! received its last completion message, and the job's calls of Zuora's API (token requests, status polls,
//! Describe, downloads). Times are simulated: they are the polling schedule's doing, not this machine's speed.
//!
//! With `--push`, Zuora calls each job's `notifyUrl` when it completes, through a stand-in for the stack's
//! notification route (`test_support::NotifyRoute`), and the consumers poll as the stack's safety net does.
//!
//! Usage: `cargo run --release -p chaos --bin daily -- [--days N] [--push] [--poll-delay-secs S] [--max-poll-delay-secs S]`.

use anyhow::Context;
use chrono::{DateTime, Utc};
use clap::Parser;
use common::clock::Clock;
use common::config::Config;
use common::messages::CompletionMessage;
use common::queue::OutgoingMessage;
use common::services::Services;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::BTreeMap;
use std::time::Duration;
use tokio::sync::watch;
use zuora_sim::{Mutation, SimConfig, Simulator};

/// Measures the daily run at the default settings, or at the polling settings given.
#[derive(Debug, Parser)]
#[command(about)]
struct Cli {
    /// Days to run.
    #[arg(long, default_value_t = 30)]
    days: u32,
    /// Seed of the days' changes and job durations.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// `consumer.poll_delay_secs` (the configuration's default when absent).
    #[arg(long)]
    poll_delay_secs: Option<u64>,
    /// `consumer.max_poll_delay_secs` (the configuration's default when absent).
    #[arg(long)]
    max_poll_delay_secs: Option<u64>,
    /// Shortest time Zuora takes over a day's job, seconds.
    #[arg(long, default_value_t = 60.0)]
    min_job_secs: f64,
    /// Longest time Zuora takes over a day's job, seconds.
    #[arg(long, default_value_t = 900.0)]
    max_job_secs: f64,
    /// Completion pushed: Zuora calls the job's notifyUrl; polling at the stack's safety-net settings (60 s doubling
    /// to 900 s) unless given.
    #[arg(long)]
    push: bool,
    /// With `--push`: the share (0 to 1) of Zuora's calls that never arrive.
    #[arg(long, default_value_t = 0.0)]
    notify_lost: f64,
}

/// One day's measurement.
struct Day {
    job_secs: f64,
    /// From Zuora's job ending to the lake's last completion message of the job.
    heard_after: f64,
    files: usize,
    calls: BTreeMap<String, u64>,
}

fn main() -> anyhow::Result<()> {
    chaos::on_paused_clock(run(Cli::parse()))
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let start: DateTime<Utc> = "2026-03-02T05:00:00Z".parse()?;
    let mut sim_config =
        SimConfig { seed: cli.seed, clock_start: Some(start), render_inline: true, ..SimConfig::default() };
    sim_config.genesis = "2024-01-01T00:00:00Z".parse()?;
    sim_config.history_days = 700;
    sim_config.settings.notify_lost = cli.notify_lost;
    let sim = Simulator::start(sim_config).await?;
    let control = sim.control();
    let dir = std::env::temp_dir().join(format!("daily-{:016x}", rand::random::<u64>()));
    let mut config = Config::parse(local_export::quickstart::LOCAL_CONFIG, "daily", None)?;
    config.catalogue = Some("builtin:old-export".into());
    config.zuora.base_url = sim.base_url();
    config.aws.local_dir = Some(dir.clone());
    // Every timing at its default, as deployed: the embedded local configuration shortens them.
    config.producer = common::config::ProducerSettings::default();
    config.consumer = common::config::ConsumerSettings { emf_metrics: false, ..Default::default() };
    let services = Services::connect(&config).await;
    let route = match cli.push {
        true => Some(test_support::NotifyRoute::start(services.queues.jobs.clone(), "daily-notify-secret").await),
        false => None,
    };
    if let Some(route) = &route {
        config.producer.notify_url = Some(common::secret::Secret::new(route.notify_url()));
        (config.consumer.poll_delay_secs, config.consumer.max_poll_delay_secs) = (60, 900);
    }
    config.consumer.poll_delay_secs = cli.poll_delay_secs.unwrap_or(config.consumer.poll_delay_secs);
    config.consumer.max_poll_delay_secs = cli.max_poll_delay_secs.unwrap_or(config.consumer.max_poll_delay_secs);
    let clock = Clock::following_tokio(start);
    let (stop, stopped) = watch::channel(false);
    let tasks = chaos::world::spawn_services(&config, &services, clock, 1, &stopped)?;

    let objects: Vec<String> = config.catalogue()?.objects.iter().map(|o| o.name.clone()).collect();
    let mut rng = StdRng::seed_from_u64(cli.seed);
    let mut days = Vec::new();
    for day in 0..cli.days {
        // The day's changes, then the morning's request.
        tokio::time::sleep(Duration::from_secs(if day == 0 { 3600 } else { 24 * 3600 })).await;
        for object in &objects {
            let changes = Mutation {
                insert: rng.random_range(5..50),
                update: rng.random_range(10..100),
                delete: 2,
                ..Mutation::default()
            };
            // Objects the simulator keeps only ids of (journal entries, snapshots) take no changes.
            let _ = control.mutate(object, changes);
        }
        let job_secs = rng.random_range(cli.min_job_secs..=cli.max_job_secs);
        control.update_settings(|s| s.job_execution_secs = job_secs);
        let calls_before = control.calls();
        let request = r#"{"exportFromDate":"afterLastIncrement"}"#;
        services.queues.requests.send(OutgoingMessage::new(request)).await?;
        let (mut files, mut last_heard) = (0, None);
        let job = loop {
            let jobs = control.jobs();
            // One job a day.
            if let Some(job) = jobs.get(day as usize) {
                break job.clone();
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        };
        while files < job.batches.len() {
            let batch = services.queues.lake.receive(10, Duration::from_secs(20)).await?;
            for message in batch {
                let completion: CompletionMessage = serde_json::from_str(&message.body)?;
                services.queues.lake.delete(&message.receipt).await?;
                if completion.job_id == job.id {
                    files += 1;
                    last_heard = Some(clock.now());
                }
            }
            anyhow::ensure!(
                clock.now() - job.ends_at < chrono::TimeDelta::hours(6),
                "day {day}: the lake heard nothing"
            );
        }
        let heard = last_heard.context("a completion")?;
        let calls = difference(&control.calls(), &calls_before);
        let heard_after = (heard - job.ends_at).num_milliseconds() as f64 / 1e3;
        days.push(Day { job_secs, heard_after, files, calls });
    }
    let _ = stop.send(true);
    for task in tasks {
        let _ = task.await;
    }
    let _ = std::fs::remove_dir_all(&dir);
    report(&cli, &config, &days);
    Ok(())
}

fn difference(after: &BTreeMap<String, u64>, before: &BTreeMap<String, u64>) -> BTreeMap<String, u64> {
    after.iter().map(|(route, n)| (route.clone(), n - before.get(route).copied().unwrap_or(0))).collect()
}

fn report(cli: &Cli, config: &Config, days: &[Day]) {
    let c = &config.consumer;
    println!(
        "{} days, {}, poll_delay_secs {}, max_poll_delay_secs {}, Zuora's job {}-{} s",
        days.len(),
        if cli.push {
            format!("completion pushed (notifyUrl), {}% of calls lost", cli.notify_lost * 100.0)
        } else {
            "polling only".to_owned()
        },
        c.poll_delay_secs,
        c.max_poll_delay_secs,
        cli.min_job_secs,
        cli.max_job_secs
    );
    println!(
        "| day | job s | files | heard after s | token | submit | status polls | describes | downloads | notifications | polls per minute of the job |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    let count = |calls: &BTreeMap<String, u64>, what: &str| -> u64 {
        calls.iter().filter(|(route, _)| route.contains(what)).map(|(_, n)| n).sum()
    };
    for (i, day) in days.iter().enumerate() {
        let polls = count(&day.calls, "GET /v1/batch-query/jobs/{id}");
        println!(
            "| {} | {:.0} | {} | {:.1} | {} | {} | {} | {} | {} | {} | {:.2} |",
            i + 1,
            day.job_secs,
            day.files,
            day.heard_after,
            count(&day.calls, "/oauth/token"),
            count(&day.calls, "POST /v1/batch-query"),
            polls,
            count(&day.calls, "GET /v1/describe/{object}"),
            count(&day.calls, "/file"),
            count(&day.calls, "NOTIFY sent"),
            polls as f64 / ((day.job_secs + day.heard_after) / 60.0)
        );
    }
    let per_job = |what: &str| days.iter().map(|d| count(&d.calls, what)).sum::<u64>() as f64 / days.len() as f64;
    let api: f64 =
        ["/oauth/token", "POST /v1/batch-query", "GET /v1/batch-query/jobs/{id}", "GET /v1/describe/{object}", "/file"]
            .iter()
            .map(|what| per_job(what))
            .sum();
    println!(
        "per job: {:.1} status polls, {:.1} describes, {:.1} calls of Zuora's API in all (tokens, submit, polls, describes, downloads)",
        per_job("GET /v1/batch-query/jobs/{id}"),
        per_job("GET /v1/describe/{object}"),
        api
    );
    let mut heard: Vec<f64> = days.iter().map(|d| d.heard_after).collect();
    heard.sort_by(f64::total_cmp);
    let at = |q: f64| heard[((heard.len() - 1) as f64 * q).round() as usize];
    println!("heard after: median {:.1} s, p90 {:.1} s, max {:.1} s", at(0.5), at(0.9), at(1.0));
}
