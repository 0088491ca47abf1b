//! The chaos harness: thousands of seeded fault schedules through the real producer and consumer services, each
//! checked by an oracle. docs/reliability.md describes it and reports its runs.
//!
//! # Layout
//! - [`plan`]: a seed's world and schedule (faults, changes at Zuora, operator actions, kills).
//! - [`faults`]: the faulty store and queues every service incarnation sees, and the count of what they injected.
//! - [`world`]: the simulator, queues, store and services of one seed, and the driver that plays the plan.
//! - [`oracle`]: the checks after every seed.
//!
//! A seed runs on Tokio's paused clock in a single-threaded runtime: simulated days pass in about a second, and
//! the services, the simulator's clock and the queues' timers all follow it.

pub mod faults;
pub mod oracle;
pub mod plan;
pub mod world;

use std::collections::BTreeMap;
use std::time::Duration;

/// One seed's outcome.
#[derive(Debug)]
pub struct SeedReport {
    /// The seed.
    pub seed: u64,
    /// Simulated days played.
    pub days: u32,
    /// What was injected: (site, kind) -> count.
    pub injected: BTreeMap<(String, String), u64>,
    /// The oracle's verdict.
    pub verdict: oracle::Verdict,
    /// Simulated time the drain took.
    pub drain: Duration,
    /// Messages redriven after the faults stopped.
    pub redrives: u64,
    /// Jobs Zuora ran.
    pub zuora_jobs: usize,
    /// The configuration drawn, one label per dimension.
    pub configuration: Vec<String>,
}

impl SeedReport {
    /// True when every check held.
    pub fn passed(&self) -> bool {
        self.verdict.failures.is_empty()
    }
}

/// Runs one seed on its own paused-clock runtime, on in-memory queues and a local store.
pub fn run_seed(seed: u64) -> anyhow::Result<SeedReport> {
    on_paused_clock(play_seed(plan::Plan::from_seed(seed), world::Backend::Memory))
}

/// Runs `work` to its end on a runtime of its own whose clock is Tokio's paused one: simulated time that jumps
/// ahead whenever everything waits (the harness and the benchmarks of days or hours).
pub fn on_paused_clock<T>(work: impl Future<Output = anyhow::Result<T>>) -> anyhow::Result<T> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().start_paused(true).build()?;
    runtime.block_on(work)
}

/// Plays one seed's plan on `backend` (on the runtime the caller chose: paused for the in-memory backend, real
/// time for servers) and judges it.
pub async fn play_seed(plan: plan::Plan, backend: world::Backend) -> anyhow::Result<SeedReport> {
    let seed = plan.seed;
    let days = plan.days;
    let configuration = plan.configuration.labels();
    let mut world = world::World::new(plan, backend).await?;
    let played = world.play().await;
    // The services stop (SIGTERM and its grace) before the oracle looks: a consumer still relaying a file whose
    // message another consumer finished and deleted (visibility expired while both worked on it) completes or
    // aborts its upload on the way out, as it would in production; what is open after that is a leak.
    world.shut_down().await;
    let outcome = match played {
        Ok(drain) => oracle::judge(&world, drain).await.map(|verdict| (drain, verdict)),
        Err(e) => Err(e),
    };
    if std::env::var_os("CHAOS_KEEP").is_some() {
        eprintln!("chaos: the store of seed {seed} is kept in {}", world.dir.display());
    } else {
        let _ = std::fs::remove_dir_all(&world.dir);
    }
    let (drain, verdict) = outcome?;
    Ok(SeedReport {
        seed,
        days,
        injected: world.injector.counts(),
        verdict,
        drain: drain.took,
        redrives: drain.redrives,
        zuora_jobs: world.control.jobs().len(),
        configuration,
    })
}

/// The command that replays a seed.
pub fn replay_command(seed: u64) -> String {
    format!("tests/chaos.sh --seed {seed}")
}
