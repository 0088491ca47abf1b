//! One seed's world: the simulator, the in-memory queues and a local-directory store, the real producer and
//! consumer services on them (each incarnation behind its own faulty boundaries), the lake's reader, and the
//! driver that plays the seed's days: changes at Zuora, the daily request, operator actions, kills and restarts.
//! Then the faults stop, the system drains, and the oracle looks at what is left.

use crate::faults::{FaultyQueue, FaultyStore, Injector, UploadBook};
use crate::plan::{Action, CatalogueChange, CatalogueChoice, Forgery, Plan};
use anyhow::Context;
use chrono::{DateTime, Utc};
use common::catalogue::{Catalogue, ObjectSpec};
use common::clock::Clock;
use common::config::Config;
use common::ledger::Ledger;
use common::messages::{
    CompletionMessage, JobKind, JobMessage, MESSAGE_VERSION, NOTIFY_ORIGIN, ORIGIN_ATTRIBUTE, Window,
};
use common::queue::{Queue, QueueDepth, redrive_manually};
use common::secret::Secret;
use common::services::{Queues, Services};
use common::store::{LocalStore, ObjectStore};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use zuora_sim::{Control, Mutation, RunningSim, SimConfig, Simulator};

/// The simulated clock's start: every seed begins on the same morning.
pub const START: &str = "2026-03-02T05:00:00Z";

/// After the faults stop, everything must have settled within this much simulated time.
pub const DRAIN_BOUND: Duration = Duration::from_secs(3 * 24 * 3600);

/// How many times the operator redrives the dead-letter queues after the faults stopped.
const REDRIVE_ROUNDS: usize = 3;

/// Where a seed's queues and store are.
pub enum Backend {
    /// In-memory queues and a local directory, on the paused clock.
    Memory,
    /// Real servers over their protocols (SQS, S3), which keep real time: the plan must be played at a pace
    /// (`Plan::at_pace`). Every object's files and the ledger go to `bucket`.
    Servers {
        /// The six queues.
        queues: Queues,
        /// The store.
        store: Arc<dyn ObjectStore>,
        /// Its bucket.
        bucket: String,
    },
}

/// The requests the plan sent: stateful ones (daily, subset, submit, backfill) and full exports per object.
#[derive(Debug, Default)]
pub struct SentRequests {
    /// Increments and backfills.
    pub stateful: usize,
    /// Full exports, by object.
    pub full_exports: std::collections::BTreeMap<String, usize>,
    /// Exact windows of a full export, by object.
    pub exact_windows: std::collections::BTreeMap<String, usize>,
}

/// A service incarnation: its task and its stop signal.
struct Incarnation {
    id: u64,
    task: JoinHandle<()>,
    stop: watch::Sender<bool>,
}

/// Everything a seed's run touches.
pub struct World {
    /// The seed's plan.
    pub plan: Plan,
    /// The simulator.
    pub sim: RunningSim,
    /// The stand-in for the stack's notification route, when the seed pushes completion.
    _notify_route: Option<test_support::NotifyRoute>,
    /// Its control handle.
    pub control: Control,
    /// The deployment's configuration.
    pub config: Config,
    /// The catalogue.
    pub catalogue: Catalogue,
    /// The raw queues (no faults): what the operator and the oracle see.
    pub queues: Queues,
    /// The raw store.
    pub store: Arc<dyn ObjectStore>,
    /// Its directory, removed at the end.
    pub dir: PathBuf,
    /// The faults.
    pub injector: Arc<Injector>,
    /// Open multipart uploads and their owners.
    pub uploads: Arc<UploadBook>,
    /// The services' clock.
    pub clock: Clock,
    /// Every completion message the lake received, in order.
    pub received: Arc<Mutex<Vec<CompletionMessage>>>,
    /// Every object the catalogue has or will have (an object added mid-seed is left out of `catalogue` until then).
    all_objects: Vec<ObjectSpec>,
    /// The requests the plan sent, for the oracle's bound on Zuora's jobs.
    pub sent: SentRequests,
    /// The forged job messages sent (bodies), each of which the consumers must refuse into the jobs DLQ.
    pub forged: Vec<String>,
    /// Everything must settle within this long after the faults stop.
    drain_bound: Duration,
    producer: Option<Incarnation>,
    consumers: Vec<Option<Incarnation>>,
    next_incarnation: u64,
    reader: Option<JoinHandle<()>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl World {
    /// Builds the world for `plan` on `backend`; nothing runs yet.
    pub async fn new(plan: Plan, backend: Backend) -> anyhow::Result<Self> {
        let start: DateTime<Utc> = START.parse()?;
        let mut sim_config =
            SimConfig { seed: plan.seed, clock_start: Some(start), render_inline: true, ..SimConfig::default() };
        // Every generated row lies inside every catalogue query's filter, so the whole table is the truth.
        sim_config.genesis = "2024-01-01T00:00:00Z".parse()?;
        sim_config.history_days = 700;
        sim_config.rows = plan.rows.clone();
        sim_config.settings.job_queue_secs = plan.job_queue_secs;
        sim_config.settings.job_execution_secs = plan.job_execution_secs;
        sim_config.settings.file_lifetime_hours = plan.file_lifetime_hours;
        sim_config.settings.segment_rows = plan.segment_rows;
        sim_config.settings.notify_lost = plan.configuration.push.unwrap_or(0.0);
        let sim = Simulator::start(sim_config).await?;
        let control = sim.control();
        control.set_faults(plan.zuora_faults.clone());
        let dir = std::env::temp_dir().join(format!("chaos-{}-{:016x}", plan.seed, rand::random::<u64>()));
        let mut config = Config::parse(local_export::quickstart::LOCAL_CONFIG, "chaos", None)?;
        config.zuora.base_url = sim.base_url();
        config.aws.local_dir = Some(dir.clone());
        // No jitter: a seed replays the same schedule.
        config.zuora.retry.base_delay_ms = 0;
        config.zuora.retry.max_delay_ms = 0;
        config.full_export.earliest = "2024-01-01".parse()?;
        config.full_export.window_months = 6;
        // The services' timings, at the plan's pace (whole seconds, as SQS takes them).
        let secs = |planned: f64| ((planned * plan.pace).round() as u64).max(1);
        config.producer.wait_secs = secs(20.0);
        config.producer.busy_retry_secs = secs(300.0);
        config.consumer.wait_secs = secs(20.0);
        config.consumer.poll_delay_secs = secs(30.0);
        config.consumer.max_poll_delay_secs = secs(900.0);
        config.consumer.shutdown_grace_secs = secs(30.0);
        config.consumer.visibility_secs = secs(300.0).max(6);
        config.consumer.jobs_in_flight = plan.jobs_in_flight;
        config.consumer.part_size_mib = 5;
        config.consumer.part_pool_mib = 20;
        let drawn = &plan.configuration;
        if drawn.catalogue == CatalogueChoice::OldExport {
            config.catalogue = Some("builtin:old-export".into());
        }
        config.consumer.compression = drawn.compression;
        config.session.file_format = drawn.file_format;
        config.consumer.gzip_downloads = drawn.gzip_downloads;
        let (queues, store, bucket) = match backend {
            Backend::Memory => {
                let store: Arc<dyn ObjectStore> = Arc::new(LocalStore::new(&dir));
                (Services::connect(&config).await.queues, store, None)
            }
            Backend::Servers { queues, store, bucket } => (queues, store, Some(bucket)),
        };
        if let Some(bucket) = &bucket {
            config.ledger.bucket = bucket.clone();
        }
        // Zuora's completion calls reach the jobs queue as the stack's route puts them there, past the faults.
        let notify_route = match drawn.push {
            Some(_) => Some(test_support::NotifyRoute::start(queues.jobs.clone(), "chaos-notify-secret").await),
            None => None,
        };
        config.producer.notify_url = notify_route.as_ref().map(|route| Secret::new(route.notify_url()));
        let mut all_objects = config.catalogue()?.objects;
        for (index, object) in all_objects.iter_mut().enumerate() {
            // The drawn objects keep a legacy fixed key (check (g) follows it through parallel publishing); the old
            // export's catalogue has its own on every object.
            if drawn.catalogue == CatalogueChoice::Default {
                let legacy = drawn.legacy_keys.contains(&index);
                object.target.legacy_key = legacy.then(|| format!("legacy/{}.csv", object.name));
            }
            if let Some(bucket) = &bucket {
                object.target.bucket = bucket.clone();
            }
        }
        let catalogue = Catalogue {
            objects: all_objects
                .iter()
                .enumerate()
                .filter(|(index, _)| Some(*index) != drawn.added_later)
                .map(|(_, object)| object.clone())
                .collect(),
        };
        let injector = Injector::new(plan.seed, plan.fault_rate, plan.pace);
        let drain_bound =
            if plan.pace < 1.0 { DRAIN_BOUND.mul_f64(plan.pace).max(Duration::from_secs(180)) } else { DRAIN_BOUND };
        let consumers = (0..plan.consumers).map(|_| None).collect();
        let clock = Clock::following_tokio(start);
        let _ = SIMULATED.set(clock);
        Ok(Self {
            plan,
            sim,
            _notify_route: notify_route,
            control,
            config,
            catalogue,
            queues,
            store,
            drain_bound,
            dir,
            injector,
            uploads: Arc::default(),
            clock,
            received: Arc::default(),
            all_objects,
            sent: SentRequests::default(),
            forged: Vec::new(),
            producer: None,
            consumers,
            next_incarnation: 0,
            reader: None,
        })
    }

    /// The services one incarnation sees: the shared queues and store behind its own faulty boundaries.
    fn faulty_services(&self, owner: u64) -> Services {
        let queue = |inner: &Arc<dyn Queue>| -> Arc<dyn Queue> {
            Arc::new(FaultyQueue {
                inner: inner.clone(),
                injector: self.injector.clone(),
                duplicate_rate: self.plan.duplicate_rate,
            })
        };
        let q = &self.queues;
        let store = FaultyStore {
            inner: self.store.clone(),
            injector: self.injector.clone(),
            owner,
            uploads: self.uploads.clone(),
        };
        Services::from_parts(
            Arc::new(store),
            Queues {
                requests: queue(&q.requests),
                requests_dlq: queue(&q.requests_dlq),
                jobs: queue(&q.jobs),
                jobs_dlq: queue(&q.jobs_dlq),
                lake: queue(&q.lake),
                lake_dlq: queue(&q.lake_dlq),
                tables: q.tables.as_ref().map(queue),
                tables_dlq: q.tables_dlq.as_ref().map(queue),
            },
        )
    }

    /// A producer as `producer serve` or `producer submit` builds it, on its own faulty boundaries.
    pub fn producer(&mut self) -> anyhow::Result<(u64, producer::service::Producer, Services)> {
        let owner = self.new_incarnation();
        let services = self.faulty_services(owner);
        let producer = producer::service::Producer::from_config(&self.config, &services)?
            .with_clock(self.clock)
            .with_catalogue(self.catalogue.clone());
        Ok((owner, producer, services))
    }

    fn new_incarnation(&mut self) -> u64 {
        self.next_incarnation += 1;
        self.next_incarnation
    }

    /// Starts the producer service if it is not running.
    pub fn start_producer(&mut self) -> anyhow::Result<()> {
        if self.producer.as_ref().is_some_and(|p| !p.task.is_finished()) {
            return Ok(());
        }
        let (id, producer, services) = self.producer()?;
        let settings = self.config.producer.clone();
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(async move {
            let q = &services.queues;
            producer::service::run(&producer, &q.requests_inbox(), &settings, signal(stopped)).await;
        });
        self.producer = Some(Incarnation { id, task, stop });
        Ok(())
    }

    /// Starts consumer `index` if it is not running.
    pub fn start_consumer(&mut self, index: usize) -> anyhow::Result<()> {
        if self.consumers[index].as_ref().is_some_and(|c| !c.task.is_finished()) {
            return Ok(());
        }
        let id = self.new_incarnation();
        let services = self.faulty_services(id);
        let worker = consumer::worker::Worker::from_config(&self.config, &services)?
            .with_clock(self.clock)
            .with_catalogue(self.catalogue.clone());
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(consumer::service::run(Arc::new(worker), signal(stopped)));
        self.consumers[index] = Some(Incarnation { id, task, stop });
        Ok(())
    }

    /// Starts every service that is not running, and the lake's reader.
    pub fn start_all(&mut self) -> anyhow::Result<()> {
        self.start_producer()?;
        for index in 0..self.consumers.len() {
            self.start_consumer(index)?;
        }
        if self.reader.is_none() {
            self.reader = Some(tokio::spawn(read_lake(self.queues.lake.clone(), self.received.clone())));
        }
        Ok(())
    }

    /// Kills a service outright (its task dropped at whatever await it was at) or stops it with SIGTERM's grace.
    async fn end(&mut self, which: Option<usize>, kill: bool) {
        let slot = match which {
            None => &mut self.producer,
            Some(index) => &mut self.consumers[index],
        };
        let Some(incarnation) = slot.take() else { return };
        let site = if which.is_none() { "producer" } else { "consumer" };
        if kill {
            incarnation.task.abort();
            let _ = incarnation.task.await;
            self.uploads.killed(incarnation.id);
            self.injector.record(site, "kill");
        } else {
            let _ = incarnation.stop.send(true);
            let _ = incarnation.task.await;
            self.injector.record(site, "stop");
        }
    }

    /// Plays the plan: its days of actions, then the drain. Returns when the system has settled or the drain
    /// bound has passed.
    pub async fn play(&mut self) -> anyhow::Result<Drain> {
        self.start_all()?;
        let actions = self.plan.actions.clone();
        for (at, action) in actions {
            let now = tokio::time::Instant::now();
            let due = self.started_at() + at;
            if due > now {
                tokio::time::sleep_until(due).await;
            }
            self.act(action).await?;
        }
        // The faults stop; whatever is dead comes back; the system drains.
        self.injector.disable();
        self.control.clear_faults();
        self.control.update_settings(|s| s.file_lifetime_hours = 72.0);
        self.start_all()?;
        let drain_started = tokio::time::Instant::now();
        let deadline = drain_started + self.drain_bound;
        let mut redrives = 0;
        // An operator redrives what the faults dead-lettered, and again what comes back, a few times at most.
        for _ in 0..REDRIVE_ROUNDS {
            if !self.settle(deadline).await? {
                return Ok(Drain { settled: false, took: drain_started.elapsed(), redrives });
            }
            let moved = redrive_manually(&*self.queues.jobs_dlq, &*self.queues.jobs).await?
                + redrive_manually(&*self.queues.requests_dlq, &*self.queues.requests).await?;
            if moved == 0 {
                break;
            }
            redrives += moved;
            self.injector.record("operator", "redrive-after-faults");
        }
        // The last daily request: everything changed so far reaches the lake.
        self.queues.requests.send(common::queue::OutgoingMessage::new(DAILY)).await?;
        self.sent.stateful += 1;
        let settled = self.settle(deadline).await?;
        Ok(Drain { settled, took: drain_started.elapsed(), redrives })
    }

    fn started_at(&self) -> tokio::time::Instant {
        match self.clock {
            Clock::Tokio { anchor, .. } => anchor,
            Clock::System => tokio::time::Instant::now(),
        }
    }

    /// Waits until no queue holds anything (visible, in flight or delayed) twice a minute apart (planned time);
    /// false if the deadline passes first.
    async fn settle(&self, deadline: tokio::time::Instant) -> anyhow::Result<bool> {
        let mut quiet = 0;
        let apart = Duration::from_secs(60).mul_f64(self.plan.pace).max(Duration::from_secs(1));
        while tokio::time::Instant::now() < deadline {
            tokio::time::sleep(apart).await;
            let mut empty = true;
            for queue in [&self.queues.requests, &self.queues.jobs, &self.queues.lake] {
                empty &= queue.depth().await? == QueueDepth::default();
            }
            quiet = if empty { quiet + 1 } else { 0 };
            if quiet >= 2 {
                return Ok(true);
            }
        }
        Ok(false)
    }

    async fn act(&mut self, action: Action) -> anyhow::Result<()> {
        self.injector.record("plan", action.name());
        match action {
            Action::Mutate { object, insert, update, delete } => {
                let name = self.object_name(object);
                self.control.mutate(name, Mutation { insert, update, delete, ..Mutation::default() })?;
            }
            Action::Daily => {
                self.send(DAILY).await?;
                self.sent.stateful += 1;
            }
            Action::Backfill { days_back } => {
                let date = (self.clock.now() - chrono::Duration::days(i64::from(days_back))).date_naive();
                let id = format!("backfill-{date}-{}", self.clock.now().format("%Y%m%dT%H%M%SZ"));
                self.send(&format!(r#"{{"exportFromDate":"{date}","requestId":"{id}"}}"#)).await?;
                self.sent.stateful += 1;
            }
            Action::FullExport { object } => {
                let name = self.object_name(object).to_owned();
                self.send(&format!(r#"{{"exportFromDate":"beginning","fullExport":true,"objects":["{name}"]}}"#))
                    .await?;
                *self.sent.full_exports.entry(name).or_default() += 1;
            }
            Action::SubsetDaily { objects } => {
                let names: std::collections::BTreeSet<String> =
                    objects.iter().map(|&o| format!("{:?}", self.object_name(o))).collect();
                let names: Vec<String> = names.into_iter().collect();
                self.send(&format!(r#"{{"exportFromDate":"afterLastIncrement","objects":[{}]}}"#, names.join(",")))
                    .await?;
                self.sent.stateful += 1;
            }
            Action::ExactWindow { object, from_days_back, to_days_back } => {
                let name = self.object_name(object).to_owned();
                let at = |days: u32| (self.clock.now() - chrono::Duration::days(i64::from(days))).to_rfc3339();
                let window = format!(r#"{{"from":"{}","to":"{}"}}"#, at(from_days_back), at(to_days_back));
                let body = format!(
                    r#"{{"exportFromDate":"beginning","fullExport":true,"objects":["{name}"],"window":{window}}}"#
                );
                self.send(&body).await?;
                *self.sent.exact_windows.entry(name).or_default() += 1;
            }
            Action::ChangeCatalogue(change) => self.change_catalogue(change).await?,
            Action::Submit { killed_after } => {
                self.sent.stateful += 1;
                self.submit(killed_after).await?;
            }
            Action::Redrive => {
                redrive_manually(&*self.queues.jobs_dlq, &*self.queues.jobs).await?;
                redrive_manually(&*self.queues.requests_dlq, &*self.queues.requests).await?;
            }
            Action::Kill { consumer } => self.end(consumer.map(|c| c % self.consumers.len()), true).await,
            Action::Stop { consumer } => self.end(consumer.map(|c| c % self.consumers.len()), false).await,
            Action::Restart => self.start_all()?,
            Action::AbortNextBatch { object } => {
                let name = self.object_name(object);
                self.control.abort_next_batch(name, "java.lang.RuntimeException: injected by the chaos plan");
            }
            Action::SlowJobs { queue_secs } => self.control.update_settings(|s| s.job_queue_secs = queue_secs),
            Action::Forge(forgery) => self.forge(forgery).await?,
        }
        Ok(())
    }

    /// Puts a message no service wrote on the jobs queue: through the notification route (the route's constant
    /// origin attribute, whatever the body), or as a job message from inside (then recorded: the oracle finds each
    /// one refused in the jobs DLQ). A copy of a recorded job needs one; before the first, an unknown job is sent.
    async fn forge(&mut self, forgery: Forgery) -> anyhow::Result<()> {
        let now = self.clock.now();
        let unknown_id = format!("{:016x}{:016x}", self.plan.seed, now.timestamp_millis());
        let unknown = JobMessage {
            version: MESSAGE_VERSION,
            job_id: unknown_id.clone(),
            request_id: "forged".to_owned(),
            kind: JobKind::Increment,
            objects: vec![self.object_name(0).to_owned()],
            window: Window { from: None, to: now - chrono::Duration::hours(1) },
            starts: Default::default(),
            submitted_at: now - chrono::Duration::hours(1),
            until: None,
        };
        let ledger = Ledger::new(self.store.clone(), &self.config.ledger.bucket, &self.config.ledger.prefix);
        let recorded = match ledger.session_mark().await?.and_then(|m| m.job_id) {
            Some(job_id) => ledger.job(&job_id).await?.map(|r| r.job_message()),
            None => None,
        };
        let through_the_route =
            |body: String| common::queue::OutgoingMessage::new(body).attribute(ORIGIN_ATTRIBUTE, NOTIFY_ORIGIN);
        let job = match (forgery, recorded) {
            (Forgery::JobThroughTheRoute, recorded) => {
                let body = serde_json::to_string(&recorded.unwrap_or(unknown))?;
                self.queues.jobs.send(through_the_route(body)).await?;
                return Ok(());
            }
            (Forgery::UnknownNotification, _) => {
                self.queues.jobs.send(through_the_route(unknown_id)).await?;
                return Ok(());
            }
            (Forgery::Relabelled, Some(recorded)) => {
                let kind = if recorded.kind == JobKind::Increment { JobKind::FullWindow } else { JobKind::Increment };
                JobMessage { kind, ..recorded }
            }
            (Forgery::EarlierStarts, Some(recorded)) => {
                let long_ago: chrono::DateTime<Utc> = "2020-01-01T00:00:00Z".parse()?;
                let starts = recorded.objects.iter().map(|o| (o.clone(), long_ago)).collect();
                JobMessage { starts, ..recorded }
            }
            (Forgery::UnknownJob | Forgery::Relabelled | Forgery::EarlierStarts, _) => unknown,
        };
        let body = serde_json::to_string(&job)?;
        self.queues.jobs.send(common::queue::OutgoingMessage::new(body.clone())).await?;
        self.forged.push(body);
        Ok(())
    }

    /// A deploy with another catalogue: every service stops (SIGTERM and its grace) and starts on the new one.
    async fn change_catalogue(&mut self, change: CatalogueChange) -> anyhow::Result<()> {
        match change {
            // The object joins in its place; every object keeps the query text it has now.
            CatalogueChange::AddObject => self.catalogue.objects = self.all_objects.clone(),
            CatalogueChange::ChangeQuery { object } => {
                let index = object % self.catalogue.objects.len();
                let name = self.catalogue.objects[index].name.clone();
                // The same query, written differently: Zuora compares the text, and loads the object in full.
                let changed = self.catalogue.objects[index].query.replacen(' ', "  ", 1);
                self.catalogue.objects[index].query = changed.clone();
                if let Some(all) = self.all_objects.iter_mut().find(|o| o.name == name) {
                    all.query = changed;
                }
            }
        }
        self.end(None, false).await;
        for index in 0..self.consumers.len() {
            self.end(Some(index), false).await;
        }
        self.start_all()
    }

    /// The catalogue's object at `index`, counted round the catalogue (plans draw indexes blind to its size).
    fn object_name(&self, index: usize) -> &str {
        &self.catalogue.objects[index % self.catalogue.objects.len()].name
    }

    async fn send(&self, body: &str) -> anyhow::Result<()> {
        self.queues.requests.send(common::queue::OutgoingMessage::new(body)).await.context("sending a request")?;
        Ok(())
    }

    /// `producer submit` of the daily request, as an operator runs it: its own process (killed after
    /// `killed_after` if set), a request key of its own.
    async fn submit(&mut self, killed_after: Option<Duration>) -> anyhow::Result<()> {
        let (owner, producer, _services) = self.producer()?;
        let key = producer::cli::submit_key(self.clock.now());
        let serve = producer.serve(DAILY, &key);
        match killed_after {
            Some(after) => {
                if tokio::time::timeout(after, serve).await.is_err() {
                    self.uploads.killed(owner);
                    self.injector.record("producer-submit", "kill");
                }
            }
            None => {
                let _ = serve.await;
            }
        }
        Ok(())
    }

    /// Stops every service with its grace period, then the reader.
    pub async fn shut_down(&mut self) {
        self.end(None, false).await;
        for index in 0..self.consumers.len() {
            self.end(Some(index), false).await;
        }
        if let Some(reader) = self.reader.take() {
            reader.abort();
            let _ = reader.await;
        }
    }
}

/// The clock of the first seed the process runs (logs are on only for `--seed`, one seed a process).
static SIMULATED: std::sync::OnceLock<Clock> = std::sync::OnceLock::new();

/// The simulated now of the seed being replayed, for log lines.
pub fn simulated_now() -> DateTime<Utc> {
    SIMULATED.get().map_or_else(Utc::now, Clock::now)
}

/// The daily schedule's request.
pub const DAILY: &str = r#"{"exportFromDate":"afterLastIncrement"}"#;

/// How the drain went.
#[derive(Debug, Clone, Copy)]
pub struct Drain {
    /// Everything settled within the bound.
    pub settled: bool,
    /// How long it took (simulated).
    pub took: Duration,
    /// Messages moved back from dead-letter queues after the faults stopped.
    pub redrives: u64,
}

/// Resolves once `stopped` says true: a service's shutdown signal.
pub async fn signal(mut stopped: watch::Receiver<bool>) {
    let _ = stopped.wait_for(|s| *s).await;
}

/// The real producer service and `consumers` consumer services of `config` on `services`, reading `clock`, each
/// running until `stopped` says true (the benchmarks' deployment: no faults, no kills).
pub fn spawn_services(
    config: &Config,
    services: &Services,
    clock: Clock,
    consumers: usize,
    stopped: &watch::Receiver<bool>,
) -> anyhow::Result<Vec<JoinHandle<()>>> {
    let producer = producer::service::Producer::from_config(config, services)?.with_clock(clock);
    let (q, settings) = (services.queues.clone(), config.producer.clone());
    let producer_stopped = signal(stopped.clone());
    let mut tasks = vec![tokio::spawn(async move {
        producer::service::run(&producer, &q.requests_inbox(), &settings, producer_stopped).await;
    })];
    for _ in 0..consumers {
        let worker = consumer::worker::Worker::from_config(config, services)?.with_clock(clock);
        tasks.push(tokio::spawn(consumer::service::run(Arc::new(worker), signal(stopped.clone()))));
    }
    Ok(tasks)
}

/// The lake: receives every completion message, keeps it, deletes it.
async fn read_lake(lake: Arc<dyn Queue>, received: Arc<Mutex<Vec<CompletionMessage>>>) {
    loop {
        let Ok(batch) = lake.receive(10, Duration::from_secs(20)).await else { continue };
        for message in batch {
            if let Ok(completion) = serde_json::from_str::<CompletionMessage>(&message.body) {
                lock(&received).push(completion);
                let _ = lake.delete(&message.receipt).await;
            }
        }
    }
}
