//! A seed's plan: how faulty its world is and what happens in it, when. Everything is drawn from the seed, so a
//! seed is a replayable schedule.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::BTreeMap;
use std::time::Duration;
use zuora_sim::FaultRule;

const HOUR: u64 = 3600;
const DAY: u64 = 24 * HOUR;

/// Something that happens at a planned moment.
#[derive(Debug, Clone)]
pub enum Action {
    /// Inserts, updates and deletes rows of an object at Zuora.
    Mutate {
        /// Index into the catalogue.
        object: usize,
        /// Rows inserted.
        insert: u64,
        /// Rows updated.
        update: u64,
        /// Rows deleted.
        delete: u64,
    },
    /// The daily schedule's request.
    Daily,
    /// An operator's date backfill (`producer backfill`), from this many days back.
    Backfill {
        /// Days before today.
        days_back: u32,
    },
    /// An operator's full export of one object.
    FullExport {
        /// Index into the catalogue.
        object: usize,
    },
    /// An operator runs `producer submit` with the daily request; the process is killed after a while, if set.
    Submit {
        /// When the process dies.
        killed_after: Option<Duration>,
    },
    /// An operator redrives both dead-letter queues.
    Redrive,
    /// A service is killed outright: the producer, or a consumer.
    Kill {
        /// Which consumer (modulo the pool), or the producer when absent.
        consumer: Option<usize>,
    },
    /// A service gets SIGTERM and its grace period.
    Stop {
        /// Which consumer (modulo the pool), or the producer when absent.
        consumer: Option<usize>,
    },
    /// Every stopped service starts again.
    Restart,
    /// Zuora aborts the next batch on an object.
    AbortNextBatch {
        /// Index into the catalogue.
        object: usize,
    },
    /// Zuora's jobs wait this long in its queue before they run.
    SlowJobs {
        /// Seconds.
        queue_secs: f64,
    },
}

impl Action {
    /// The action's name in the report.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Mutate { .. } => "mutate",
            Self::Daily => "daily-request",
            Self::Backfill { .. } => "operator-backfill",
            Self::FullExport { .. } => "operator-full-export",
            Self::Submit { killed_after: None } => "operator-submit",
            Self::Submit { killed_after: Some(_) } => "operator-submit-killed",
            Self::Redrive => "operator-redrive",
            Self::Kill { .. } => "kill",
            Self::Stop { .. } => "sigterm",
            Self::Restart => "restart",
            Self::AbortNextBatch { .. } => "zuora-aborted-batch",
            Self::SlowJobs { .. } => "zuora-slow-jobs",
        }
    }
}

/// A seed's world and schedule.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The seed.
    pub seed: u64,
    /// Simulated days of activity before the faults stop.
    pub days: u32,
    /// Share of store and queue calls that fail.
    pub fault_rate: f64,
    /// Share of sends on standard queues delivered a second time, late.
    pub duplicate_rate: f64,
    /// Consumer services.
    pub consumers: usize,
    /// Jobs each consumer works on at once.
    pub jobs_in_flight: usize,
    /// Rows per object at the start.
    pub rows: BTreeMap<String, u64>,
    /// Zuora's queueing time for a job, seconds.
    pub job_queue_secs: f64,
    /// Zuora's execution time for a job, seconds.
    pub job_execution_secs: f64,
    /// Hours before Zuora purges a file.
    pub file_lifetime_hours: f64,
    /// File Segmentation (records per file of a full load).
    pub segment_rows: Option<u64>,
    /// Zuora-side faults, by rate.
    pub zuora_faults: Vec<FaultRule>,
    /// What happens, at offsets from the start, in order.
    pub actions: Vec<(Duration, Action)>,
    /// Real seconds per planned second: 1 on the paused clock (simulated time costs nothing), a small fraction
    /// against real servers, which keep real time.
    pub pace: f64,
}

impl Plan {
    /// The plan of `seed`.
    pub fn from_seed(seed: u64) -> Self {
        let mut rng = StdRng::seed_from_u64(seed ^ 0xC4A0_5EED);
        let days = rng.random_range(2..=4);
        let quiet = rng.random_bool(0.1);
        let fault_rate = if quiet { 0.0 } else { rng.random_range(0.005..0.06) };
        let rows = [
            ("Account", 40),
            ("RatePlanCharge", 30),
            ("RatePlanChargeTier", 20),
            ("RatePlan", 30),
            ("Subscription", 30),
            ("Contact", 30),
            ("PaymentMethod", 20),
            ("Amendment", 20),
            ("Invoice", 40),
            ("Payment", 30),
            ("InvoicePayment", 30),
            ("Refund", 10),
            ("InvoiceItem", rng.random_range(60..400)),
        ]
        .into_iter()
        .map(|(name, rows)| (name.to_owned(), rows))
        .collect();
        let zuora_rate = |rng: &mut StdRng, top: f64| if quiet { 0.0 } else { rng.random_range(0.0..top) };
        let mut zuora_faults = Vec::new();
        let rule = |endpoint: &str| FaultRule { endpoint: endpoint.to_owned(), ..FaultRule::default() };
        for (endpoint, status) in
            [("token", 500), ("submit", 429), ("submit", 503), ("job", 503), ("last", 500), ("file", 500)]
        {
            zuora_faults.push(FaultRule {
                status: Some(status),
                rate: Some(zuora_rate(&mut rng, 0.05)),
                ..rule(endpoint)
            });
        }
        let cut = rng.random_range(100..4000);
        zuora_faults.push(FaultRule {
            reset_after_bytes: Some(cut),
            rate: Some(zuora_rate(&mut rng, 0.05)),
            ..rule("file")
        });
        zuora_faults.push(FaultRule {
            truncate_after_bytes: Some(cut),
            rate: Some(zuora_rate(&mut rng, 0.05)),
            ..rule("file")
        });
        zuora_faults.push(FaultRule {
            latency_ms: Some(20_000),
            rate: Some(zuora_rate(&mut rng, 0.05)),
            ..rule("any")
        });

        let mut actions = Vec::new();
        let objects = 13;
        for day in 0..u64::from(days) {
            let base = day * DAY;
            actions.push((base + rng.random_range(0..HOUR), Action::Daily));
            for _ in 0..rng.random_range(3..12) {
                let action = Action::Mutate {
                    object: rng.random_range(0..objects),
                    insert: rng.random_range(0..6),
                    update: rng.random_range(0..8),
                    delete: rng.random_range(0..3),
                };
                actions.push((base + rng.random_range(0..DAY), action));
            }
            if quiet {
                continue;
            }
            let mut maybe = |p: f64, action: Action, rng: &mut StdRng| {
                if rng.random_bool(p) {
                    actions.push((base + rng.random_range(0..DAY), action));
                }
            };
            maybe(0.3, Action::Daily, &mut rng);
            maybe(0.3, Action::Backfill { days_back: rng.random_range(0..3) }, &mut rng);
            maybe(0.1, Action::FullExport { object: rng.random_range(0..objects) }, &mut rng);
            let killed_after = rng.random_bool(0.5).then(|| Duration::from_millis(rng.random_range(1..3000)));
            maybe(0.3, Action::Submit { killed_after }, &mut rng);
            maybe(0.2, Action::Redrive, &mut rng);
            maybe(0.2, Action::AbortNextBatch { object: rng.random_range(0..objects) }, &mut rng);
            maybe(0.2, Action::SlowJobs { queue_secs: rng.random_range(0.0..7200.0) }, &mut rng);
            for _ in 0..rng.random_range(0..4) {
                let consumer = rng.random_bool(0.7).then(|| rng.random_range(0..4));
                let end = if rng.random_bool(0.7) { Action::Kill { consumer } } else { Action::Stop { consumer } };
                let at = base + rng.random_range(0..DAY);
                actions.push((at, end));
                actions.push((at + rng.random_range(1..2 * HOUR), Action::Restart));
            }
        }
        let mut actions: Vec<(Duration, Action)> =
            actions.into_iter().map(|(at, action)| (Duration::from_secs(at), action)).collect();
        actions.sort_by_key(|(at, _)| *at);
        Self {
            seed,
            days,
            fault_rate,
            duplicate_rate: if quiet { 0.0 } else { rng.random_range(0.0..0.1) },
            consumers: rng.random_range(1..=3),
            jobs_in_flight: rng.random_range(1..=3),
            rows,
            job_queue_secs: rng.random_range(0.0..120.0),
            job_execution_secs: rng.random_range(1.0..600.0),
            // Zuora's own: files outlive a day, so a 404 within a day is a wrong path, not a purge.
            file_lifetime_hours: 72.0,
            segment_rows: rng.random_bool(0.2).then(|| rng.random_range(5..50)),
            zuora_faults,
            actions,
            pace: 1.0,
        }
    }

    /// The same plan played `pace` times as fast, in real time: every planned moment and Zuora's timings shrink;
    /// files are never purged (a day lasts seconds, and a 404 within a day reads as a wrong path).
    pub fn at_pace(mut self, pace: f64) -> Self {
        let shrink = |d: Duration| d.mul_f64(pace);
        self.actions = self
            .actions
            .into_iter()
            .map(|(at, action)| {
                let action = match action {
                    Action::SlowJobs { queue_secs } => Action::SlowJobs { queue_secs: queue_secs * pace },
                    other => other,
                };
                (shrink(at), action)
            })
            .collect();
        self.job_queue_secs *= pace;
        self.job_execution_secs *= pace;
        self.file_lifetime_hours = 24.0 * 365.0;
        for rule in &mut self.zuora_faults {
            rule.latency_ms = rule.latency_ms.map(|ms| ((ms as f64 * pace) as u64).max(1));
        }
        self.pace = pace;
        self
    }
}
