//! A few seeds against the real protocols: SQS on the moto server and S3 on Garage that `tests/run.sh` starts,
//! with the same plan (played at a pace, in real time: the servers keep real time), the same faults at the same
//! boundaries and the same oracle as the in-memory seeds.

use chaos::plan::Plan;
use chaos::world::Backend;
use common::queue::Queue;
use common::services::Queues;
use common::store::{ObjectStore, S3Store};
use std::sync::Arc;
use test_support::Aws;

/// Real seconds per planned second: a planned day lasts 36 s.
const PACE: f64 = 1.0 / 2400.0;

/// Seeds with faults and kills, chosen from the in-memory set. Seed 3 found the uploads Garage ends under a
/// concurrent one (docs/reliability.md, "Found against the real servers").
const SEEDS: &[u64] = &[3, 5, 7];

async fn servers() -> Backend {
    let aws = Aws::connect_strict().await;
    let (requests, requests_dlq) = aws.queue_with_dlq("chaos-requests", 5, false, 30).await;
    let (jobs, jobs_dlq) = aws.queue_with_dlq("chaos-jobs", 5, false, 30).await;
    let (lake, lake_dlq) = aws.queue_with_dlq("chaos-lake", 5, true, 30).await;
    let queue = |q| -> Arc<dyn Queue> { Arc::new(q) };
    let queues = Queues {
        requests: queue(requests),
        requests_dlq: queue(requests_dlq),
        jobs: queue(jobs),
        jobs_dlq: queue(jobs_dlq),
        lake: queue(lake),
        lake_dlq: queue(lake_dlq),
        tables: None,
        tables_dlq: None,
    };
    let bucket = aws.bucket("chaos").await;
    let store: Arc<dyn ObjectStore> = Arc::new(S3Store::new(aws.s3.clone()));
    Backend::Servers { queues, store, bucket }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "real-protocol tier: ./tests/run.sh (moto and Garage)"]
async fn seeds_against_moto_and_garage_pass_the_oracle() {
    let _ = tracing_subscriber::fmt().with_env_filter(tracing_subscriber::EnvFilter::from_default_env()).try_init();
    let mut failures = Vec::new();
    for &seed in SEEDS {
        let plan = Plan::from_seed(seed).at_pace(PACE);
        let report = chaos::play_seed(plan, servers().await)
            .await
            .unwrap_or_else(|e| panic!("seed {seed}: the harness failed: {e:#}"));
        let injected: u64 = report.injected.values().sum();
        eprintln!(
            "seed {seed} on the servers: {} files, {} completions, {injected} faults and actions injected, drain {:?}",
            report.verdict.files, report.verdict.completions, report.drain
        );
        assert!(report.verdict.files > 0 && injected > 0);
        if !report.passed() {
            failures.push(format!("seed {seed}:\n  {}", report.verdict.failures.join("\n  ")));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
