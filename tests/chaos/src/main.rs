//! `chaos`: runs seeds of the chaos harness and prints what was injected and what the oracle found.

use clap::Parser;
use std::collections::BTreeMap;
use std::process::ExitCode;

/// Runs seeded fault schedules through the real producer and consumer and checks each against the oracle.
#[derive(Debug, Parser)]
#[command(about)]
struct Cli {
    /// Random seeds to run (drawn from the clock unless --first is given).
    #[arg(long, default_value_t = 1)]
    seeds: u64,
    /// The first seed; the next ones follow it.
    #[arg(long)]
    first: Option<u64>,
    /// Replays one seed with the services' logs on stderr.
    #[arg(long, conflicts_with_all = ["seeds", "first"])]
    seed: Option<u64>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let seeds: Vec<u64> = match (cli.seed, cli.first) {
        (Some(seed), _) => {
            tracing_subscriber::fmt()
                .with_env_filter(
                    tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
                )
                .with_writer(std::io::stderr)
                .with_timer(SimulatedTime)
                .with_ansi(false)
                .init();
            vec![seed]
        }
        (None, Some(first)) => (first..first + cli.seeds).collect(),
        (None, None) => {
            let first = rand::random::<u32>() as u64;
            (first..first + cli.seeds).collect()
        }
    };
    let mut totals: BTreeMap<String, u64> = BTreeMap::new();
    let mut configurations: BTreeMap<String, u64> = BTreeMap::new();
    let (mut failed, mut files, mut completions, mut duplicates, mut jobs, mut ghosts) = (Vec::new(), 0, 0, 0, 0, 0);
    let mut refused = 0;
    let started = std::time::Instant::now();
    for &seed in &seeds {
        let report = match chaos::run_seed(seed) {
            Ok(report) => report,
            Err(e) => {
                println!("seed {seed}: the harness failed: {e:#}\n  replay: {}", chaos::replay_command(seed));
                failed.push(seed);
                continue;
            }
        };
        for ((_, kind), n) in &report.injected {
            *totals.entry(kind.clone()).or_default() += n;
        }
        for label in &report.configuration {
            *configurations.entry(label.clone()).or_default() += 1;
        }
        files += report.verdict.files;
        completions += report.verdict.completions;
        duplicates += report.verdict.duplicates;
        jobs += report.zuora_jobs;
        ghosts += report.verdict.unreportable_deletions;
        refused += report.verdict.forgeries_refused;
        if !report.passed() {
            println!("seed {seed}: FAILED ({} days)", report.days);
            for failure in &report.verdict.failures {
                println!("  {failure}");
            }
            println!("  replay: {}", chaos::replay_command(seed));
            failed.push(seed);
        } else if cli.seed.is_some() {
            println!("seed {seed}: passed: {report:#?}");
        }
    }
    println!(
        "\n{} seeds in {:.1} s: {} files published, {completions} completions received ({duplicates} duplicates), \
         {jobs} Zuora jobs, {ghosts} rows deleted at Zuora that it could not report, {refused} forged job messages \
         refused",
        seeds.len(),
        started.elapsed().as_secs_f64(),
        files
    );
    println!("injected, by kind:");
    for (kind, n) in &totals {
        println!("  {kind:<24} {n}");
    }
    println!("configurations drawn, seeds by dimension:");
    for (label, n) in &configurations {
        println!("  {label:<44} {n}");
    }
    println!("{} passed, {} failed", seeds.len() - failed.len(), failed.len());
    if failed.is_empty() { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}

/// Log lines stamped with the seed's simulated time (the services' clock), not the real one.
struct SimulatedTime;

impl tracing_subscriber::fmt::time::FormatTime for SimulatedTime {
    fn format_time(&self, w: &mut tracing_subscriber::fmt::format::Writer<'_>) -> std::fmt::Result {
        write!(w, "{}", chaos::world::simulated_now().format("%Y-%m-%dT%H:%M:%S%.3fZ"))
    }
}
