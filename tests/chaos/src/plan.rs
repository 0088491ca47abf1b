//! A seed's plan: how faulty its world is and what happens in it, when. Everything is drawn from the seed, so a
//! seed is a replayable schedule.

use common::config::{CompressionKind, FileFormat, GzipDownloads};
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
    /// An increment of a subset of the objects (`"objects": [...]`), without a request id.
    SubsetDaily {
        /// Indexes into the catalogue.
        objects: Vec<usize>,
    },
    /// An operator asks for one exact window of a full export of one object.
    ExactWindow {
        /// Index into the catalogue.
        object: usize,
        /// The window starts this many days back...
        from_days_back: u32,
        /// ...and ends this many days back.
        to_days_back: u32,
    },
    /// A deploy that changes the catalogue: an object joins it (its first load runs beside the others'
    /// increments), or a query's text changes (Zuora loads it in full again). Every service restarts.
    ChangeCatalogue(CatalogueChange),
    /// Someone puts a message on the jobs queue that no service of the stack wrote.
    Forge(Forgery),
}

/// A message no service of the stack wrote, put on the jobs queue (docs/decisions/notify-edge.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forgery {
    /// Through the notification route (its origin attribute): a whole job message, which must stay unread.
    JobThroughTheRoute,
    /// Through the notification route: a job id the ledger does not hold.
    UnknownNotification,
    /// A job message naming a job the ledger does not hold (an audit's, another integration's).
    UnknownJob,
    /// A copy of the latest job the producer recorded, with another kind.
    Relabelled,
    /// A copy of the latest job the producer recorded, its objects starting years earlier.
    EarlierStarts,
}

impl Forgery {
    const ALL: [Self; 5] =
        [Self::JobThroughTheRoute, Self::UnknownNotification, Self::UnknownJob, Self::Relabelled, Self::EarlierStarts];
}

/// A change of the catalogue in the middle of a seed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CatalogueChange {
    /// The object left out at the start joins.
    AddObject,
    /// This object's query text changes (same meaning).
    ChangeQuery {
        /// Index into the catalogue.
        object: usize,
    },
}

/// Which built-in catalogue a seed runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CatalogueChoice {
    /// The project's default.
    Default,
    /// The old export's thirteen queries, buckets and fixed keys (`builtin:old-export`).
    OldExport,
}

/// The deployment's configuration a seed runs: every option people run is a dimension drawn from the seed
/// (combinations the configuration refuses are not drawn).
#[derive(Debug, Clone)]
pub struct Configuration {
    /// The catalogue.
    pub catalogue: CatalogueChoice,
    /// `consumer.compression`.
    pub compression: CompressionKind,
    /// `session.file_format`.
    pub file_format: FileFormat,
    /// `consumer.gzip_downloads`.
    pub gzip_downloads: GzipDownloads,
    /// Objects (indexes into the catalogue) with a fixed legacy key (the old export's catalogue has one on each).
    pub legacy_keys: Vec<usize>,
    /// An object left out of the catalogue at the start (it joins with [`CatalogueChange::AddObject`]).
    pub added_later: Option<usize>,
    /// Completion pushed (`producer.notify_url`, through a stand-in for the stack's route), with the share of
    /// Zuora's calls lost; `None`: polling only.
    pub push: Option<f64>,
}

impl Configuration {
    fn draw(rng: &mut StdRng, objects: usize) -> Self {
        let catalogue = if rng.random_bool(0.3) { CatalogueChoice::OldExport } else { CatalogueChoice::Default };
        let file_format = if rng.random_bool(0.4) { FileFormat::Gzip } else { FileFormat::Csv };
        let gzip_downloads = if rng.random_bool(0.5) { GzipDownloads::Keep } else { GzipDownloads::Decompress };
        let drawn = [CompressionKind::None, CompressionKind::None, CompressionKind::Gzip, CompressionKind::Zstd];
        let mut compression = drawn[rng.random_range(0..drawn.len())];
        // Stored files are recompressed only when Zuora's are decompressed first; fixed keys hold plain CSV.
        let keeps_gzip = file_format == FileFormat::Gzip && gzip_downloads == GzipDownloads::Keep;
        if keeps_gzip || catalogue == CatalogueChoice::OldExport {
            compression = CompressionKind::None;
        }
        let plain = compression == CompressionKind::None && !keeps_gzip;
        let gzip_downloads = if catalogue == CatalogueChoice::OldExport && keeps_gzip {
            GzipDownloads::Decompress
        } else {
            gzip_downloads
        };
        let legacy_keys = match catalogue {
            CatalogueChoice::OldExport => (0..objects).collect(),
            CatalogueChoice::Default if plain && rng.random_bool(0.6) => {
                (0..objects).filter(|_| rng.random_bool(0.4)).collect()
            }
            CatalogueChoice::Default => Vec::new(),
        };
        let added_later = rng.random_bool(0.3).then(|| rng.random_range(0..objects));
        let push = rng.random_bool(0.4).then(|| [0.0, 0.0, 0.3, 1.0][rng.random_range(0..4)]);
        Self { catalogue, compression, file_format, gzip_downloads, legacy_keys, added_later, push }
    }

    /// One label per dimension, for the run's report of the mix drawn.
    pub fn labels(&self) -> Vec<String> {
        let keys = match (self.catalogue, self.legacy_keys.len()) {
            (CatalogueChoice::OldExport, _) => "legacy keys: every object (old export)".to_owned(),
            (CatalogueChoice::Default, 0) => "legacy keys: none".to_owned(),
            (CatalogueChoice::Default, _) => "legacy keys: some objects".to_owned(),
        };
        vec![
            format!("catalogue: {:?}", self.catalogue),
            format!("stored compression: {:?}", self.compression),
            match self.file_format {
                FileFormat::Csv => "downloads: csv".to_owned(),
                FileFormat::Gzip => format!("downloads: gzip, {:?}", self.gzip_downloads),
            },
            keys,
            format!("object added mid-seed: {}", if self.added_later.is_some() { "yes" } else { "no" }),
            match self.push {
                None => "completion: polled".to_owned(),
                Some(lost) => format!("completion: pushed, {:.0}% of Zuora's calls lost", lost * 100.0),
            },
        ]
    }
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
            Self::SubsetDaily { .. } => "subset-increment",
            Self::ExactWindow { .. } => "operator-exact-window",
            Self::ChangeCatalogue(CatalogueChange::AddObject) => "catalogue-object-added",
            Self::ChangeCatalogue(CatalogueChange::ChangeQuery { .. }) => "catalogue-query-changed",
            Self::Forge(Forgery::JobThroughTheRoute) => "forged-job-through-the-route",
            Self::Forge(Forgery::UnknownNotification) => "forged-unknown-notification",
            Self::Forge(Forgery::UnknownJob) => "forged-unknown-job",
            Self::Forge(Forgery::Relabelled) => "forged-relabelled-job",
            Self::Forge(Forgery::EarlierStarts) => "forged-earlier-starts",
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
    /// The deployment's configuration.
    pub configuration: Configuration,
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
        for (endpoint, status) in [
            ("token", 500),
            ("submit", 429),
            ("submit", 503),
            ("job", 503),
            ("last", 500),
            ("describe", 503),
            ("file", 500),
        ] {
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
        // The configuration and what it brings into the schedule, from a generator of their own: the fault schedule
        // of a seed stays what it was before configurations were drawn.
        let mut drawn = StdRng::seed_from_u64(seed ^ 0xC0F1_6000);
        let configuration = Configuration::draw(&mut drawn, objects);
        for day in 0..u64::from(days) {
            let base = day * DAY;
            let mut maybe = |p: f64, action: Action, rng: &mut StdRng| {
                if rng.random_bool(p) {
                    actions.push((base + rng.random_range(0..DAY), action));
                }
            };
            let subset = (0..objects).filter(|_| drawn.random_bool(0.3)).collect::<Vec<_>>();
            if !subset.is_empty() {
                maybe(0.4, Action::SubsetDaily { objects: subset }, &mut drawn);
            }
            let from_days_back = drawn.random_range(1..400);
            let exact = Action::ExactWindow {
                object: drawn.random_range(0..objects),
                from_days_back,
                to_days_back: drawn.random_range(0..from_days_back),
            };
            maybe(0.1, exact, &mut drawn);
            // Backfills from odd dates: weeks back, not only the last days.
            maybe(0.1, Action::Backfill { days_back: drawn.random_range(3..40) }, &mut drawn);
        }
        let change_on = |rng: &mut StdRng| (rng.random_range(1..u64::from(days)) * DAY) + rng.random_range(0..DAY);
        if configuration.added_later.is_some() {
            actions.push((change_on(&mut drawn), Action::ChangeCatalogue(CatalogueChange::AddObject)));
        }
        if drawn.random_bool(0.3) {
            let change = CatalogueChange::ChangeQuery { object: drawn.random_range(0..objects) };
            actions.push((change_on(&mut drawn), Action::ChangeCatalogue(change)));
        }
        // Forged messages, from a generator of their own (the schedules drawn before them stay what they were).
        let mut forger = StdRng::seed_from_u64(seed ^ 0xF0E6_ED00);
        for day in 0..u64::from(days) {
            if forger.random_bool(0.5) {
                for _ in 0..forger.random_range(1..4) {
                    let forgery = Forgery::ALL[forger.random_range(0..Forgery::ALL.len())];
                    actions.push((day * DAY + forger.random_range(0..DAY), Action::Forge(forgery)));
                }
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
            configuration,
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
