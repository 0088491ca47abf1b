//! One job message, start to finish: look at the job; if it is not finished, put the message back with a growing
//! delay; if it is, export every batch ([`crate::batch`]: relayed, verified, published) and settle the message
//! (what each step guarantees, and the tests that prove it: docs/architecture.md, "Guarantees").
//!
//! # A job message's states
//! received -> job running: sent again with a delay (`polls` attribute + 1), the original deleted -> ... -> job
//! finished: each batch exported -> job recorded published -> message deleted. A job that failed at Zuora is asked
//! for again; one that outlived its deadline, or a batch whose failure cannot pass ([`crate::error::classify`]),
//! sends the message to the jobs DLQ with its reason. Any other failure leaves the message to be received again.

use crate::batch::{Batches, FinishedJob};
use crate::error::{Decision, WorkError};
use crate::legacy::LegacyKeys;
use crate::protection::TaskProtection;
use crate::publish::Publisher;
use crate::relay::compress::Compression;
use crate::relay::pool::PartPool;
use crate::relay::{RelaySettings, UploadTracker};
use common::catalogue::Catalogue;
use common::clock::Clock;
use common::config::{Config, ConsumerSettings, FullExportConfig};
use common::ledger::Ledger;
use common::marks::Marks;
use common::messages::{
    ExactWindow, ExportFrom, ExportRequest, JobFinished, JobKind, JobMessage, JobsQueueMessage, MAX_REQUESTS_AGAIN,
    MESSAGE_VERSION, ORIGIN_ATTRIBUTE, UnreadableJobsMessage, ends_in_the_future,
};
use common::metrics::emf_line;
use common::queue::{Inbox, OutgoingMessage, Queue, ReceivedMessage};
use common::services::Services;
use common::zuora::{Batch, Job, Phase, ZuoraClient};
use std::sync::Arc;
use std::time::Duration;
use tracing::{Instrument, info, info_span, warn};

/// Everything a worker talks to.
pub struct Worker {
    /// Zuora.
    zuora: ZuoraClient,
    /// The producer's ledger: the jobs it submitted.
    ledger: Ledger,
    /// Which files and jobs are published.
    marks: Marks,
    /// The jobs queue and its dead-letter queue.
    jobs: Inbox,
    /// Requests queue (for re-requesting a purged window).
    requests: Arc<dyn Queue>,
    /// A finished job's batches: relayed, verified and published.
    batches: Batches,
    settings: ConsumerSettings,
    /// How full exports sized by their data go on (`full_export.window_rows`).
    full_export: FullExportConfig,
    /// Where "now" comes from.
    clock: Clock,
    /// The task's scale-in protection while jobs are in flight (off outside ECS).
    protection: TaskProtection,
}

/// Who put a job's message on the jobs queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Origin {
    /// The producer (or the consumer itself, sending a job message again): the job's own message, which polls.
    Producer,
    /// The notification route: Zuora's word, which never polls.
    Notification,
}

/// How a message was settled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settled {
    /// Every file of the job is published (or was already).
    Published {
        /// Files published or re-announced.
        files: usize,
    },
    /// The job is not finished: the message comes back after `delay`.
    Waiting {
        /// The delay.
        delay: Duration,
    },
    /// The job cannot be exported as it is; the message is in the jobs DLQ with this reason.
    DeadLettered {
        /// Why.
        reason: String,
    },
    /// The job failed at Zuora: its window was asked for again (a request on the requests queue).
    AskedAgain {
        /// Why.
        reason: String,
    },
    /// Every file of the job was published by an earlier message of it (a notification's, before this poll).
    AlreadyPublished,
    /// A notification that changes nothing: not a job id, of a job the ledger does not hold, or of a job still
    /// running (its own message polls it). Deleted without a dead letter, and counted.
    Ignored {
        /// Why.
        reason: String,
    },
}

impl Worker {
    /// A worker for `config`'s tenant, lake and queues (`services`), on the system clock, protecting its ECS task
    /// while it works when it runs in one.
    pub fn from_config(config: &Config, services: &Services) -> anyhow::Result<Self> {
        const MIB: u64 = 1024 * 1024;
        let settings = config.consumer.clone();
        let (store, clock) = (services.store.clone(), Clock::System);
        let ledger = Ledger::new(store.clone(), &config.ledger.bucket, &config.ledger.prefix);
        let marks = Marks::at(store.clone(), &config.ledger.bucket, &config.ledger.prefix);
        let zuora = ZuoraClient::new(config.zuora.clone())?;
        let relay = RelaySettings {
            part_size: settings.part_size_mib * MIB,
            max_part_size: settings.max_part_size_mib * MIB,
            checksum: settings.checksum,
            compression: Compression::from_config(settings.compression, settings.compression_level),
            gzip_source: false,
        };
        let pool = PartPool::new(settings.part_pool_mib * MIB, settings.part_size_mib * MIB);
        let uploads: Arc<UploadTracker> = Arc::default();
        let publisher = Publisher {
            store: store.clone(),
            completions: services.queues.completions(),
            marks: marks.clone(),
            clock,
            checksum: settings.checksum,
            emf_metrics: settings.emf_metrics,
        };
        // Segments joined for a legacy key are stored as plain CSV, whatever the files' compression.
        let plain = RelaySettings { compression: Compression::None, gzip_source: false, ..relay.clone() };
        let legacy = LegacyKeys {
            store: store.clone(),
            marks: marks.clone(),
            pool: pool.clone(),
            relay: plain,
            uploads: uploads.clone(),
        };
        let batches = Batches {
            zuora: zuora.clone(),
            store,
            catalogue: config.catalogue()?,
            pool,
            relay,
            uploads,
            settings: settings.clone(),
            clock,
            schemas: Default::default(),
            publisher,
            legacy,
        };
        let queues = &services.queues;
        Ok(Self {
            zuora,
            marks,
            ledger,
            jobs: queues.jobs_inbox(),
            requests: queues.requests.clone(),
            batches,
            settings,
            full_export: config.full_export.clone(),
            clock,
            protection: TaskProtection::from_env(),
        })
    }

    /// The same worker, with "now" from `clock` (the tests' and the chaos harness's paused clocks).
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self.batches.clock = clock;
        self.batches.publisher.clock = clock;
        self
    }

    /// The same worker, exporting `catalogue`'s objects (the chaos harness changes the catalogue mid-seed).
    pub fn with_catalogue(mut self, catalogue: Catalogue) -> Self {
        self.batches.catalogue = catalogue;
        self
    }

    /// The same worker, protecting its task through `protection`.
    pub fn with_protection(mut self, protection: TaskProtection) -> Self {
        self.protection = protection;
        self
    }

    /// The consumer's settings.
    pub fn settings(&self) -> &ConsumerSettings {
        &self.settings
    }

    /// The jobs queue it serves.
    pub fn jobs(&self) -> &Arc<dyn Queue> {
        &self.jobs.queue
    }

    pub(crate) fn uploads(&self) -> &UploadTracker {
        &self.batches.uploads
    }

    pub(crate) fn protection(&self) -> &TaskProtection {
        &self.protection
    }

    /// Works on one job message and settles it (deleted, re-sent with a delay, or dead-lettered). Whatever the
    /// message says, the job is worked on only as the producer's ledger records it.
    pub async fn handle(&self, message: &ReceivedMessage) -> Result<Settled, WorkError> {
        let origin = message.attributes.get(ORIGIN_ATTRIBUTE).map(String::as_str);
        match JobsQueueMessage::read(&message.body, origin) {
            Ok(JobsQueueMessage::Job(job_message)) => {
                let span = info_span!("job", job_id = %job_message.job_id, kind = ?job_message.kind);
                self.handle_job_message(message, job_message).instrument(span).await
            }
            Ok(JobsQueueMessage::Finished(finished)) => {
                let span = info_span!("job", job_id = %finished.job_id, notified = true);
                self.handle_finished(message, finished).instrument(span).await
            }
            Err(UnreadableJobsMessage::Notification(reason)) => self.ignore(message, reason).await,
            Err(UnreadableJobsMessage::Job(e)) => self.dead_letter(message, format!("not a job message: {e}")).await,
        }
    }

    /// Zuora said a job finished: its record in the ledger says what the job is, and it is published now, not at
    /// the job message's next poll (which then finds it published). A notification of a job the ledger does not
    /// hold costs nothing: no Zuora call, no dead letter.
    async fn handle_finished(&self, message: &ReceivedMessage, finished: JobFinished) -> Result<Settled, WorkError> {
        let Some(record) = self.ledger.job(&finished.job_id).await? else {
            // Not a job of this exporter's (or not recorded yet): its own job message, if any, still polls.
            let reason = format!("Zuora said job {} finished, and the ledger has no such job", finished.job_id);
            return self.ignore(message, reason).await;
        };
        self.handle_job(message, record.job_message(), Origin::Notification).await
    }

    /// A job message: refused unless the ledger holds the job, and then worked on as the ledger records it. A
    /// message that disagrees with the record (another kind, other objects, another window or starts) is
    /// dead-lettered with the fields that differ, and nothing else is done: a forgery is visible and changes
    /// nothing.
    async fn handle_job_message(
        &self,
        message: &ReceivedMessage,
        job_message: JobMessage,
    ) -> Result<Settled, WorkError> {
        if let Some(reason) = self.refused(&job_message) {
            return self.dead_letter(message, reason).await;
        }
        let Some(record) = self.ledger.job(&job_message.job_id).await? else {
            let reason = format!(
                "job {} is not in the producer's ledger (not a job this exporter submitted): refused without asking Zuora",
                job_message.job_id
            );
            return self.dead_letter(message, reason).await;
        };
        let recorded = record.job_message();
        let differences = job_message.differences_from(&recorded);
        if !differences.is_empty() {
            let reason = format!(
                "the job message disagrees with the ledger's record of job {} in {}: refused, nothing done",
                recorded.job_id,
                differences.join(", ")
            );
            return self.dead_letter(message, reason).await;
        }
        self.handle_job(message, recorded, Origin::Producer).await
    }

    /// A job as the ledger records it.
    async fn handle_job(
        &self,
        message: &ReceivedMessage,
        job_message: JobMessage,
        origin: Origin,
    ) -> Result<Settled, WorkError> {
        if self.marks.job_published(&job_message.job_id).await? {
            self.jobs.done(message).await?;
            info!("every file of the job is published already");
            return Ok(Settled::AlreadyPublished);
        }
        let job = match self.zuora.job(&job_message.job_id).await {
            Ok(job) => job,
            Err(e) if !e.is_retryable() => return self.dead_letter(message, format!("reading the job: {e}")).await,
            Err(e) => return Err(e.into()),
        };
        if !job.id.eq_ignore_ascii_case(&job_message.job_id) {
            let reason = format!("Zuora answered for job {} when asked for job {}", job.id, job_message.job_id);
            return self.dead_letter(message, reason).await;
        }
        match (job.status.phase(), origin) {
            // The job's own message polls it: a notification never becomes a second poller.
            (Phase::Running, Origin::Notification) => {
                let reason =
                    format!("Zuora said job {} finished, and it is {}: its own message polls it", job.id, job.status);
                self.ignore(message, reason).await
            }
            (Phase::Running, Origin::Producer) => self.wait(message, &job_message, &job).await,
            (Phase::Failed, _) => self.failed_at_zuora(message, &job_message, &job).await,
            (Phase::Succeeded, _) => self.publish_job(message, &job_message, &job).await,
        }
    }

    /// A notification that changes nothing (unreadable, of a job the ledger does not hold, of a job still
    /// running): deleted without a dead letter, logged, and counted (`NotificationsIgnored`, which an alarm
    /// watches: a flood of them means the route's path is known).
    async fn ignore(&self, message: &ReceivedMessage, reason: String) -> Result<Settled, WorkError> {
        warn!(%reason, "notification ignored");
        if self.settings.emf_metrics {
            println!("{}", emf_line(self.clock.now(), &[], &[("NotificationsIgnored", "Count", 1.0)]));
        }
        self.jobs.done(message).await?;
        Ok(Settled::Ignored { reason })
    }

    /// Why a job message cannot be served as it is, if it cannot.
    fn refused(&self, job_message: &JobMessage) -> Option<String> {
        if job_message.version != MESSAGE_VERSION {
            return Some(format!("job message version {} is not supported", job_message.version));
        }
        if !common::zuora::is_zuora_id(&job_message.job_id) {
            return Some(format!("jobId {:?} is not a Zuora id (32 hexadecimal digits)", job_message.job_id));
        }
        ends_in_the_future(job_message.window.to, self.clock.now()).map(|reason| format!("the job's window {reason}"))
    }

    /// The job failed at Zuora: its window is asked for again, each object by its own batch's kind (a first load in
    /// full, an increment from its window's start: a job mixing both must not become a full export of every
    /// object), unless it was asked for again too often already.
    async fn failed_at_zuora(
        &self,
        message: &ReceivedMessage,
        job_message: &JobMessage,
        job: &Job,
    ) -> Result<Settled, WorkError> {
        let details: Vec<String> = job
            .batches
            .iter()
            .filter_map(|b| b.message.as_ref().filter(|m| !m.is_empty()).map(|m| format!("{}: {m}", name_of(b))))
            .collect();
        let reason = format!("Zuora job {} ended {} {}", job.id, job.status, details.join("; "));
        let reason = reason.trim_end().to_owned();
        let objects: Vec<(String, bool)> = job_message
            .objects
            .iter()
            .map(|object| (object.clone(), was_full_load(job_message, job, object)))
            .collect();
        if self.ask_again_by_kind(job_message, &objects, "job", &reason).await? {
            self.jobs.done(message).await?;
            return Ok(Settled::AskedAgain { reason });
        }
        let reason = format!("{reason}; its window was asked for again {MAX_REQUESTS_AGAIN} times already");
        self.dead_letter(message, reason).await
    }

    /// The job succeeded: every batch exported; the job dead-lettered with every reason if any cannot be, and
    /// purged files asked for again (one request for all the job's purged objects, two if full loads and
    /// increments are mixed).
    async fn publish_job(
        &self,
        message: &ReceivedMessage,
        job_message: &JobMessage,
        job: &Job,
    ) -> Result<Settled, WorkError> {
        let finished = FinishedJob { message: job_message, job, found_completed: self.clock.now() };
        let mut files = 0;
        let mut failures = missing_batches(job_message, job).into_iter().collect::<Vec<_>>();
        let mut purged: Vec<(String, bool)> = Vec::new();
        for batch in &job.batches {
            if batch.status.phase() != Phase::Succeeded {
                let details = batch.message.clone().unwrap_or_default();
                failures.push(format!("{} ended {} {details}", name_of(batch), batch.status));
                continue;
            }
            let batch_id = batch.batch_id.clone().unwrap_or_default();
            let span = info_span!("batch", object = %name_of(batch), %batch_id);
            match self.batches.export(&finished, batch).instrument(span).await {
                Ok(n) => files += n,
                Err(Decision::Later(e)) => return Err(e),
                // `export` relays again while attempts are left; what reaches here has none.
                Err(Decision::DeadLetter(reason) | Decision::RetryNow(reason)) => {
                    failures.push(format!("{}: {reason}", name_of(batch)))
                }
                Err(Decision::AskZuoraAgain { object, full }) => {
                    warn!(%object, "files purged by Zuora");
                    purged.push((object, full))
                }
            }
        }
        if !purged.is_empty() {
            let names: Vec<&str> = purged.iter().map(|(o, _)| o.as_str()).collect();
            let reason = format!("files of {} purged by Zuora", names.join(", "));
            if !self.ask_again_by_kind(job_message, &purged, "purged", &reason).await? {
                failures
                    .push(format!("{reason}, and the window was asked for again {MAX_REQUESTS_AGAIN} times already"));
            }
        }
        if !failures.is_empty() {
            return self.dead_letter(message, failures.join("; ")).await;
        }
        // The next window before the job is recorded published: a consumer stopped in between asks for it again
        // (the same request id) when the job's message comes back.
        self.continue_full_export(job_message, job).await?;
        self.marks.record_job_published(&job.id, files).await?;
        self.jobs.done(message).await?;
        Ok(Settled::Published { files })
    }

    /// A full export sized by its data goes on: the window after this published one, as long as this one's records
    /// say (`FullExportConfig::next_window`), requested under an id that names it (object, start and end of the
    /// export), so asking twice serves it once.
    async fn continue_full_export(&self, job_message: &JobMessage, job: &Job) -> Result<(), WorkError> {
        let (JobKind::FullWindow, Some(from), Some(until)) =
            (job_message.kind, job_message.window.from, job_message.until)
        else {
            return Ok(());
        };
        let records = job.batches.iter().filter_map(|b| b.record_count).sum();
        let Some((next_from, next_to)) = self.full_export.next_window(from, job_message.window.to, records, until)
        else {
            return Ok(());
        };
        let stamp = |t: chrono::DateTime<chrono::Utc>| t.format("%Y%m%dT%H%M%S%.3fZ").to_string();
        let request = ExportRequest {
            version: MESSAGE_VERSION,
            export_from_date: ExportFrom::Beginning,
            objects: Some(job_message.objects.clone()),
            full_export: true,
            request_id: Some(format!("window-{}-{}-{}", job_message.objects.join("_"), stamp(next_from), stamp(until))),
            window: Some(ExactWindow { from: next_from, to: next_to, until: Some(until) }),
        };
        #[allow(clippy::expect_used)]
        let body = serde_json::to_string(&request).expect("a request serialises");
        self.requests.send(OutgoingMessage::new(body.clone())).await?;
        info!(records, request = %body, "full export goes on");
        Ok(())
    }

    async fn wait(&self, message: &ReceivedMessage, job_message: &JobMessage, job: &Job) -> Result<Settled, WorkError> {
        let age = self.clock.now() - job_message.submitted_at;
        let deadline = chrono::Duration::hours(self.settings.job_deadline_hours as i64);
        if age > deadline {
            let reason = format!(
                "Zuora job {} still {} {} h after submission (deadline {} h)",
                job.id,
                job.status,
                age.num_hours(),
                self.settings.job_deadline_hours
            );
            return self.dead_letter(message, reason).await;
        }
        if job.status.is_unknown() {
            warn!(job_id = %job.id, status = %job.status, "unknown job status, waiting for it like a running one");
        }
        let polls: u32 = message.attributes.get("polls").and_then(|p| p.parse().ok()).unwrap_or(0);
        let delay = Duration::from_secs(
            self.settings.poll_delay_secs.saturating_mul(1 << polls.min(16)).min(self.settings.max_poll_delay_secs),
        );
        let again = OutgoingMessage::new(message.body.clone()).attribute("polls", (polls + 1).to_string());
        self.jobs.again_after(message, again, delay).await?;
        info!(job_id = %job.id, status = %job.status, delay_secs = delay.as_secs(), "job not finished, looking again later");
        Ok(Settled::Waiting { delay })
    }

    async fn dead_letter(&self, message: &ReceivedMessage, reason: String) -> Result<Settled, WorkError> {
        warn!(%reason, "job message to the dead-letter queue");
        self.jobs.dead_letter(message, &reason).await?;
        Ok(Settled::DeadLettered { reason })
    }

    /// Asks the producer for the job's window again (its files purged, its job failed at Zuora) for `objects`,
    /// each by its kind (`true`: a first load): one request for the first loads, one for the increments of each start.
    /// Returns false when the window was asked for again too often already: it is not asked again.
    async fn ask_again_by_kind(
        &self,
        job: &JobMessage,
        objects: &[(String, bool)],
        what: &str,
        reason: &str,
    ) -> Result<bool, WorkError> {
        for full in [true, false] {
            let these: Vec<String> = objects.iter().filter(|(_, f)| *f == full).map(|(o, _)| o.clone()).collect();
            if these.is_empty() {
                continue;
            }
            let what = if full { format!("{what}-full") } else { what.to_owned() };
            let Some(requests) = job.request_again(&these, &what, full) else { return Ok(false) };
            for request in requests {
                #[allow(clippy::expect_used)]
                let body = serde_json::to_string(&request).expect("a request serialises");
                self.requests.send(OutgoingMessage::new(body.clone())).await?;
                warn!(reason, request = %body, "asked for the same window again");
            }
        }
        Ok(true)
    }
}

/// Whether the job was a first load of `object`: Zuora's flag on its batch decides; without one (no batch, or a
/// Zuora that sends no flag), a job with no lower bound was.
fn was_full_load(job_message: &JobMessage, job: &Job, object: &str) -> bool {
    let batch = job.batches.iter().find(|b| b.name.as_deref().is_some_and(|n| n.eq_ignore_ascii_case(object)));
    batch.and_then(|b| b.full).unwrap_or(job_message.window.from.is_none())
}

/// Every object the job was submitted for must come back: Zuora leaves out a query on an object the user cannot
/// read (error 90018) without failing the job.
fn missing_batches(job_message: &JobMessage, job: &Job) -> Option<String> {
    let missing: Vec<&str> = job_message
        .objects
        .iter()
        .filter(|o| !job.batches.iter().any(|b| b.name.as_deref().is_some_and(|n| n.eq_ignore_ascii_case(o))))
        .map(String::as_str)
        .collect();
    (!missing.is_empty()).then(|| {
        format!(
            "Zuora's job {} has no batch for {} (a query Zuora left out: can the API user read the object?)",
            job.id,
            missing.join(", ")
        )
    })
}

fn name_of(batch: &Batch) -> String {
    batch.name.clone().unwrap_or_else(|| "unnamed batch".to_owned())
}
