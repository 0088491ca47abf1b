//! The chaos harness's fixed seed set, run by the test suite: each seed's faults, kills and operator actions
//! through the real services, then the oracle. `tests/chaos.sh N` runs N random seeds; a failing seed prints the
//! command that replays it.

/// Seeds that passed every oracle check in every run, debug and release, when the set was chosen
/// (docs/reliability.md).
const SEEDS: &[u64] = &[1, 2, 3, 4, 5, 7, 11, 12, 13, 14, 16, 18];

#[test]
fn every_seed_of_the_fixed_set_passes_the_oracle() {
    let mut failures = Vec::new();
    let mut injected = 0;
    for &seed in SEEDS {
        let run = || chaos::run_seed(seed).unwrap_or_else(|e| panic!("seed {seed}: the harness failed: {e:#}"));
        let mut report = run();
        injected += report.injected.values().sum::<u64>();
        if !report.passed() {
            // Replays are close, not exact (docs/reliability.md): a seed fails the suite when it fails twice.
            eprintln!("seed {seed} failed once, running it again:\n  {}", report.verdict.failures.join("\n  "));
            report = run();
        }
        if !report.passed() {
            failures.push(format!(
                "seed {seed}:\n  {}\n  replay: {}",
                report.verdict.failures.join("\n  "),
                chaos::replay_command(seed)
            ));
        }
    }
    assert!(injected > 1000 * SEEDS.len() as u64 / 10, "the seeds injected faults ({injected})");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
